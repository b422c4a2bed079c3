/* eval_cache: one evaluation of a split kept as a file, so the runs of a sweep that share a
 * base model evaluate that base once (native_backend.c). The key covers everything the
 * evaluation depends on: the caller's settings text (model content hash, evaluation and
 * numerics settings) and the tokenised examples themselves (ids, loss marks, prompts,
 * references, choices, pairs). Files are JSON written atomically; a file that does not
 * match its key or the set is ignored, never trusted. */
#ifndef FTLAB_EVAL_CACHE_H
#define FTLAB_EVAL_CACHE_H

#include <stdbool.h>

#include "backends/native/data/loader.h"
#include "backends/native/eval/evaluate.h"
#include "common/diag.h"

/* sha256 hex of settings and the set's content. */
void eval_cache_key(char out[65], const char *settings, const struct tok_set *set);

/* Reads the result stored at path for key: *found false (and *out untouched) when the file
 * is missing, unreadable, made for another key, or does not fit set (running out of memory
 * while reading counts as not found: the caller evaluates). origin (may be NULL) receives
 * the run id that computed it. Returns 0. */
int eval_cache_load(struct eval_result *out, bool *found, char *origin, size_t origin_len,
		    const char *path, const char *key, const struct tok_set *set) FT_WUR;

/* eval_cache_load on the bytes of a file (the fuzzer's entry point). */
int eval_cache_parse(struct eval_result *out, bool *found, char *origin, size_t origin_len,
		     const char *text, size_t len, const char *key, const struct tok_set *set) FT_WUR;
/* A larger file is not read (ignored as not matching). */
#define EVAL_CACHE_MAX_BYTES ((size_t)1 << 30)

/* Writes r for key to path (atomically), naming the run that computed it. */
int eval_cache_save(const char *path, const char *key, const char *origin,
		    const struct eval_result *r, const struct tok_set *set, struct diag *d) FT_WUR;

#endif
