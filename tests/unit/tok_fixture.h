/* tok_fixture: test support for the tokenizer fixtures of tests/reference/ (made by
 * make_sp_tokenizer_fixture.py): a header line, then per text its HF ids with BOS and
 * special tokens, its ids with special tokens as text, and HF's decode of both. */
#ifndef FTLAB_TESTS_TOK_FIXTURE_H
#define FTLAB_TESTS_TOK_FIXTURE_H

#include <jansson.h>
#include <stddef.h>

#include "backends/native/tok/tokenizer.h"

/* $FTLAB_ROOT/rel (or ./rel); caller frees. */
char *tok_fixture_path(const char *rel);
/* Encodes and decodes every text of the fixture file rel with t; returns the number of
 * mismatches (the first few are printed). *hdr: the header object (caller decrefs),
 * *n_texts the number of texts. Aborts the test on a malformed file or an encode error. */
size_t tok_fixture_run(const struct tokenizer *t, const char *rel, json_t **hdr, size_t *n_texts);
#define TOK_FIXTURE_GEMMA "models/gemma-3-270m-q4_k_m.gguf"
/* Fails the calling test, saying why, when the Gemma 3 GGUF is not there: `make model`
 * fetches it (with its checksum) before `make test`, so a missing file is a broken
 * checkout, never a reason to run fewer tests. */
void tok_fixture_need_gemma(void);
/* The tokenizer of a GGUF file (metadata only) or a model directory. Aborts on error. */
struct tokenizer *tok_fixture_load(const char *rel);
/* The tokenizer read back from dir/tokenizer.json and dir/tokenizer_config.json. */
struct tokenizer *tok_fixture_load_json_dir(const char *dir);

#endif
