/* Token ids against Hugging Face tokenizers: tests/reference/tokenizer_smollm2.jsonl (made by
 * tests/reference/make_tokenizer_fixture.py) must be reproduced exactly from the GGUF
 * metadata and from the exported tokenizer.json, and decode must give the text back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/native/io/model_file.h"
#include "backends/native/tok/tokenizer.h"
#include "common/util.h"
#include "common/banned.h"

static char *root_path(const char *rel)
{
	const char *root = getenv("FTLAB_ROOT");
	return path_join(root ? root : ".", rel);
}

/* Encodes every fixture text with t and compares; returns the number of mismatches.
 * *out_checked counts the lines. A line without a text string or an ids array, or with no
 * ids for a non-empty text, fails the test: a fixture of such lines (or an empty one)
 * would otherwise match anything. */
static size_t run_fixture(const struct tokenizer *t, size_t *out_checked)
{
	char *p = root_path("tests/reference/tokenizer_smollm2.jsonl");
	FILE *f = fopen(p, "r");
	assert_non_null(f);
	char *line = NULL;
	size_t cap = 0, bad = 0, n_lines = 0, total_ids = 0;
	ssize_t got;
	while ((got = getline(&line, &cap, f)) > 0) {
		json_error_t je;
		json_t *o = json_loadb(line, (size_t)got, 0, &je);
		assert_non_null(o);
		json_t *jt = json_object_get(o, "text"), *jids = json_object_get(o, "ids");
		if (!json_is_string(jt) || !json_is_array(jids) ||
		    (json_string_length(jt) > 0 && json_array_size(jids) == 0))
			fail_msg("fixture line %zu has no text, no ids, or no ids for its text",
				 n_lines + 1);
		total_ids += json_array_size(jids);
		const char *text = json_string_value(jt);
		size_t tlen = json_string_length(jt);
		struct diag d;
		diag_init(&d);
		int32_t *ids;
		size_t n;
		assert_int_equal(tokenizer_encode(t, text, tlen, true, &ids, &n, &d), 0);
		bool same = n == json_array_size(jids);
		for (size_t i = 0; same && i < n; i++)
			same = ids[i] == (int32_t)json_integer_value(json_array_get(jids, i));
		if (!same) {
			if (bad < 5) {
				fprintf(stderr, "mismatch on line %zu: %s\n  got:", n_lines + 1, text);
				for (size_t i = 0; i < n; i++)
					fprintf(stderr, " %d", ids[i]);
				fprintf(stderr, "\n");
			}
			bad++;
		}
		char *back;
		size_t blen;
		assert_int_equal(tokenizer_decode(t, ids, n, false, &back, &blen), 0);
		if (blen != tlen || memcmp(back, text, tlen) != 0) {
			fprintf(stderr, "decode round trip failed on line %zu\n", n_lines + 1);
			bad++;
		}
		free(back);
		free(ids);
		json_decref(o);
		n_lines++;
	}
	free(line);
	fclose(f);
	free(p);
	if (total_ids < n_lines)
		fail_msg("the fixture's %zu lines hold only %zu ids", n_lines, total_ids);
	*out_checked = n_lines;
	return bad;
}

static void test_gguf_tokenizer_matches_hf(void **state)
{
	(void)state;
	char *p = root_path("models/SmolLM2-135M-Instruct.Q4_1.gguf");
	struct diag d;
	diag_init(&d);
	struct model_file *m;
	assert_int_equal(model_file_load(&m, p, &d), 0);
	struct tokenizer *t;
	assert_int_equal(tokenizer_from_model_file(&t, m, &d), 0);
	size_t n;
	assert_int_equal(run_fixture(t, &n), 0);
	assert_true(n >= 500);
	tokenizer_free(t);
	model_file_free(m);
	free(p);
}

static void test_tokenizer_json_matches_hf(void **state)
{
	(void)state;
	char *p = root_path("tests/reference/smollm2_tokenizer.json");
	char *text;
	size_t len;
	struct diag d;
	diag_init(&d);
	assert_int_equal(file_read_all(&text, &len, p, 64u << 20, &d), 0);
	struct tokenizer *t;
	int rc = tokenizer_from_json(&t, text, len, NULL, p, &d);
	if (rc)
		diag_print(&d, stderr);
	assert_int_equal(rc, 0);
	assert_int_equal(tokenizer_n_vocab(t), 49152);
	assert_int_equal(tokenizer_eos(t), 0); /* <|endoftext|> without tokenizer_config.json */
	size_t n;
	assert_int_equal(run_fixture(t, &n), 0);
	assert_true(n >= 500);
	tokenizer_free(t);
	free(text);
	free(p);
}

/* Many threads encode the fixture at once with one tokenizer (shared word cache). */
static void test_parallel_encode(void **state)
{
	(void)state;
	char *p = root_path("tests/reference/smollm2_tokenizer.json");
	char *text;
	size_t len;
	struct diag d;
	diag_init(&d);
	assert_int_equal(file_read_all(&text, &len, p, 64u << 20, &d), 0);
	struct tokenizer *t;
	assert_int_equal(tokenizer_from_json(&t, text, len, NULL, p, &d), 0);
	char *fp = root_path("tests/reference/tokenizer_smollm2.jsonl");
	FILE *f = fopen(fp, "r");
	assert_non_null(f);
	json_t *items = json_array();
	char *line = NULL;
	size_t cap = 0;
	ssize_t got;
	while ((got = getline(&line, &cap, f)) > 0)
		json_array_append_new(items, json_loadb(line, (size_t)got, 0, NULL));
	fclose(f);
	free(line);
	size_t n_items = json_array_size(items);
	int bad = 0;
	#pragma omp parallel for num_threads(4) schedule(dynamic) reduction(+ : bad)
	for (size_t k = 0; k < 4 * n_items; k++) {
		json_t *o = json_array_get(items, k % n_items);
		json_t *jt = json_object_get(o, "text"), *jids = json_object_get(o, "ids");
		struct diag dl;
		diag_init(&dl);
		int32_t *ids;
		size_t n;
		if (tokenizer_encode(t, json_string_value(jt), json_string_length(jt), true, &ids, &n,
				     &dl) != 0) {
			bad++;
			continue;
		}
		bool same = n == json_array_size(jids);
		for (size_t i = 0; same && i < n; i++)
			same = ids[i] == (int32_t)json_integer_value(json_array_get(jids, i));
		bad += !same;
		free(ids);
	}
	assert_int_equal(bad, 0);
	json_decref(items);
	tokenizer_free(t);
	free(text);
	free(fp);
	free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gguf_tokenizer_matches_hf),
		cmocka_unit_test(test_tokenizer_json_matches_hf),
		cmocka_unit_test(test_parallel_encode),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
