/* tok_fixture: shared checks against the tokenizer fixtures (see tok_fixture.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/unit/tok_fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/native/io/model_file.h"
#include "common/util.h"
#include "common/banned.h"

char *tok_fixture_path(const char *rel)
{
	const char *root = getenv("FTLAB_ROOT");
	return path_join(root ? root : ".", rel);
}

static bool same_ids(const int32_t *ids, size_t n, json_t *want)
{
	if (n != json_array_size(want))
		return false;
	for (size_t i = 0; i < n; i++)
		if (ids[i] != (int32_t)json_integer_value(json_array_get(want, i)))
			return false;
	return true;
}

static void show(const char *what, size_t line, const char *text, const int32_t *ids, size_t n)
{
	fprintf(stderr, "%s mismatch on line %zu: %s\n  got:", what, line, text);
	for (size_t i = 0; i < n; i++)
		fprintf(stderr, " %d", ids[i]);
	fprintf(stderr, "\n");
}

static bool same_text(const char *got, size_t glen, json_t *want)
{
	return glen == json_string_length(want) && memcmp(got, json_string_value(want), glen) == 0;
}

/* Checks every fixture line; returns the number of mismatches, header in *hdr (owned). */
size_t tok_fixture_run(const struct tokenizer *t, const char *rel, json_t **hdr, size_t *n_out)
{
	char *p = tok_fixture_path(rel);
	FILE *f = fopen(p, "r");
	assert_non_null(f);
	char *line = NULL;
	size_t cap = 0, bad = 0, n_lines = 0;
	ssize_t got;
	*hdr = NULL;
	while ((got = getline(&line, &cap, f)) > 0) {
		json_error_t je;
		json_t *o = json_loadb(line, (size_t)got, 0, &je);
		assert_non_null(o);
		if (!*hdr) {
			*hdr = o;
			continue;
		}
		n_lines++;
		json_t *jt = json_object_get(o, "text");
		const char *text = json_string_value(jt);
		size_t tlen = json_string_length(jt);
		struct diag d;
		diag_init(&d);
		int32_t *ids;
		size_t n;
		assert_int_equal(tokenizer_encode_ex(t, text, tlen, TOK_ADD_SPECIAL | TOK_PARSE_SPECIAL,
						     &ids, &n, &d), 0);
		if (!same_ids(ids, n, json_object_get(o, "ids"))) {
			if (bad < 5)
				show("ids", n_lines, text, ids, n);
			bad++;
		}
		char *back;
		size_t blen;
		assert_int_equal(tokenizer_decode(t, ids, n, false, &back, &blen), 0);
		if (!same_text(back, blen, json_object_get(o, "decoded_ids"))) {
			fprintf(stderr, "decode (with specials) mismatch on line %zu: [%s]\n", n_lines, back);
			bad++;
		}
		free(back);
		free(ids);
		assert_int_equal(tokenizer_encode_ex(t, text, tlen, 0, &ids, &n, &d), 0);
		if (!same_ids(ids, n, json_object_get(o, "ids_text"))) {
			if (bad < 5)
				show("ids_text", n_lines, text, ids, n);
			bad++;
		}
		assert_int_equal(tokenizer_decode(t, ids, n, false, &back, &blen), 0);
		if (!same_text(back, blen, json_object_get(o, "decoded"))) {
			fprintf(stderr, "decode mismatch on line %zu: [%s]\n", n_lines, back);
			bad++;
		}
		free(back);
		free(ids);
		json_decref(o);
	}
	free(line);
	fclose(f);
	free(p);
	*n_out = n_lines;
	return bad;
}

struct tokenizer *tok_fixture_load(const char *rel)
{
	char *p = tok_fixture_path(rel);
	struct diag d;
	diag_init(&d);
	struct model_file *m;
	int rc = model_file_load_tokenizer(&m, p, &d);
	if (rc)
		diag_print(&d, stderr);
	assert_int_equal(rc, 0);
	struct tokenizer *t;
	rc = tokenizer_from_model_file(&t, m, &d);
	if (rc)
		diag_print(&d, stderr);
	assert_int_equal(rc, 0);
	model_file_free(m);
	free(p);
	return t;
}


void tok_fixture_need_gemma(void)
{
	char *p = tok_fixture_path(TOK_FIXTURE_GEMMA);
	bool ok = path_exists(p);
	if (!ok)
		fprintf(stderr, "%s is missing: `make model` fetches it\n", p);
	free(p);
	if (!ok)
		fail_msg("the Gemma 3 GGUF is missing (run `make model`)");
}

struct tokenizer *tok_fixture_load_json_dir(const char *dir)
{
	char *p = path_join(dir, "tokenizer.json"), *c = path_join(dir, "tokenizer_config.json");
	char *text = NULL, *cfg = NULL;
	size_t len, clen;
	struct diag d;
	diag_init(&d);
	assert_int_equal(file_read_all(&text, &len, p, 256u << 20, &d), 0);
	assert_int_equal(file_read_all(&cfg, &clen, c, 16u << 20, &d), 0);
	struct tokenizer *t;
	int rc = tokenizer_from_json(&t, text, len, cfg, p, &d);
	if (rc)
		diag_print(&d, stderr);
	assert_int_equal(rc, 0);
	free(text);
	free(cfg);
	free(p);
	free(c);
	return t;
}
