/* SentencePiece tokenizers against Hugging Face (fixtures made by
 * tests/reference/make_sp_tokenizer_fixture.py): Gemma 3 from its GGUF
 * (models/gemma-3-270m-q4_k_m.gguf, `make model`) and from the tokenizer.json form HF
 * writes for it, and a tiny Llama-2-style tokenizer (GGUF and tokenizer.json). Every text
 * must give HF's ids with BOS and special tokens, HF's ids with special tokens as plain
 * text, and HF's decode byte for byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/native/data/prepare.h"
#include "backends/native/io/model_file.h"
#include "backends/native/peft/gguf_write.h"
#include "backends/native/tok/tok_internal.h"
#include "backends/native/tok/tokenizer.h"
#include "common/hash.h"
#include "common/util.h"
#include "tests/unit/tok_fixture.h"
#include "common/banned.h"

static bool same_ids(const int32_t *ids, size_t n, json_t *want)
{
	if (n != json_array_size(want))
		return false;
	for (size_t i = 0; i < n; i++)
		if (ids[i] != (int32_t)json_integer_value(json_array_get(want, i)))
			return false;
	return true;
}

/* SHA-256 of the merges as "left right" lines joined by '\n' (the fixture's form). */
static void merges_sha(const struct tokenizer *t, char hex[65], size_t *n_out)
{
	int32_t *pairs;
	size_t n;
	assert_int_equal(tok_merge_list(t, &pairs, &n), 0);
	struct sha256 h;
	sha256_init(&h);
	for (size_t i = 0; i < n; i++) {
		size_t ll, rl;
		const char *l = tokenizer_token_text(t, pairs[2 * i], &ll);
		const char *r = tokenizer_token_text(t, pairs[2 * i + 1], &rl);
		if (i)
			sha256_update(&h, "\n", 1);
		sha256_update(&h, l, ll);
		sha256_update(&h, " ", 1);
		sha256_update(&h, r, rl);
	}
	uint8_t dig[32];
	sha256_final(&h, dig);
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", dig[i]);
	free(pairs);
	*n_out = n;
}

static void test_gemma_gguf_matches_hf(void **state)
{
	(void)state;
	tok_fixture_need_gemma();
	struct tokenizer *t = tok_fixture_load(TOK_FIXTURE_GEMMA);
	assert_true(tokenizer_is_sentencepiece(t));
	assert_int_equal(tokenizer_n_vocab(t), 262144);
	json_t *hdr;
	size_t n;
	assert_int_equal(tok_fixture_run(t, "tests/reference/tokenizer_gemma3.jsonl", &hdr, &n), 0);
	assert_true(n >= 500 && n == (size_t)json_integer_value(json_object_get(hdr, "texts")));
	assert_int_equal(tokenizer_bos(t), json_integer_value(json_object_get(hdr, "bos")));
	assert_int_equal(tokenizer_eos(t), json_integer_value(json_object_get(hdr, "eos")));
	assert_true(tokenizer_adds_bos(t));
	char hex[65];
	size_t nm;
	merges_sha(t, hex, &nm);
	assert_int_equal(nm, json_integer_value(json_object_get(hdr, "n_merges")));
	assert_string_equal(hex, json_string_value(json_object_get(hdr, "merges_sha256")));
	json_decref(hdr);
	tokenizer_free(t);
}

/* HF's tokenizer.json for Gemma: the committed skeleton (everything but vocab and merges,
 * as save_pretrained wrote it) with the vocabulary and merges put back. */
static void test_gemma_tokenizer_json_matches_hf(void **state)
{
	(void)state;
	tok_fixture_need_gemma();
	struct tokenizer *g = tok_fixture_load(TOK_FIXTURE_GEMMA);
	char *p = tok_fixture_path("tests/reference/gemma3_tokenizer_skeleton.json");
	json_error_t je;
	json_t *root = json_load_file(p, 0, &je);
	assert_non_null(root);
	json_t *model = json_object_get(root, "model");
	json_t *vocab = json_object(), *merges = json_array();
	for (int32_t i = 0; i < tokenizer_n_vocab(g); i++) {
		size_t len;
		const char *s = tokenizer_token_text(g, i, &len);
		json_object_setn_new_nocheck(vocab, s, len, json_integer(i));
	}
	int32_t *pairs;
	size_t nm;
	assert_int_equal(tok_merge_list(g, &pairs, &nm), 0);
	for (size_t i = 0; i < nm; i++) {
		size_t ll, rl;
		const char *l = tokenizer_token_text(g, pairs[2 * i], &ll);
		const char *r = tokenizer_token_text(g, pairs[2 * i + 1], &rl);
		json_array_append_new(merges, json_pack("[s#,s#]", l, ll, r, rl));
	}
	free(pairs);
	json_object_set_new(model, "vocab", vocab);
	json_object_set_new(model, "merges", merges);
	char *text = json_dumps(root, JSON_COMPACT);
	assert_non_null(text);
	struct diag d;
	diag_init(&d);
	struct tokenizer *t;
	int rc = tokenizer_from_json(&t, text, strlen(text), NULL, p, &d);
	if (rc)
		diag_print(&d, stderr);
	assert_int_equal(rc, 0);
	json_t *hdr;
	size_t n;
	assert_int_equal(tok_fixture_run(t, "tests/reference/tokenizer_gemma3.jsonl", &hdr, &n), 0);
	assert_true(n >= 500);
	json_decref(hdr);
	tokenizer_free(t);
	tokenizer_free(g);
	free(text);
	json_decref(root);
	free(p);
}

static void test_tiny_spm_gguf_matches_hf(void **state)
{
	(void)state;
	struct tokenizer *t = tok_fixture_load("tests/reference/fixtures/tiny-spm.gguf");
	json_t *hdr;
	size_t n;
	assert_int_equal(tok_fixture_run(t, "tests/reference/tokenizer_tiny_spm.jsonl", &hdr, &n), 0);
	assert_true(n >= 500);
	assert_int_equal(tokenizer_n_vocab(t), json_integer_value(json_object_get(hdr, "n_vocab")));
	json_decref(hdr);
	tokenizer_free(t);
}

static void test_tiny_spm_tokenizer_json_matches_hf(void **state)
{
	(void)state;
	char *p = tok_fixture_path("tests/reference/tiny_spm_tokenizer.json");
	char *text;
	size_t len;
	struct diag d;
	diag_init(&d);
	assert_int_equal(file_read_all(&text, &len, p, 1 << 24, &d), 0);
	struct tokenizer *t;
	int rc = tokenizer_from_json(&t, text, len, NULL, p, &d);
	if (rc)
		diag_print(&d, stderr);
	assert_int_equal(rc, 0);
	assert_true(tokenizer_is_sentencepiece(t));
	json_t *hdr;
	size_t n;
	assert_int_equal(tok_fixture_run(t, "tests/reference/tokenizer_tiny_spm.jsonl", &hdr, &n), 0);
	assert_true(n >= 500);
	json_decref(hdr);
	tokenizer_free(t);
	free(text);
	free(p);
}

/* Gemma's chat template: ftlab's segments give the text and (through the loader, one
 * segment at a time, BOS first) the ids of HF's apply_chat_template with Gemma 3's Jinja
 * template; the generation prompt is the text up to the last model turn. */
static void test_gemma_chat_template_matches_hf(void **state)
{
	(void)state;
	tok_fixture_need_gemma();
	struct tokenizer *t = tok_fixture_load(TOK_FIXTURE_GEMMA);
	assert_int_equal(data_tokenizer_template(t), TEMPLATE_GEMMA);
	char *p = tok_fixture_path("tests/reference/chat_gemma3.jsonl");
	FILE *f = fopen(p, "r");
	assert_non_null(f);
	char *line = NULL;
	size_t cap = 0, rows = 0;
	ssize_t got;
	struct data_tok dt = data_tok_from_tokenizer(t);
	struct template_spec ts = {TEMPLATE_GEMMA, NULL, NULL, NULL};
	assert_true(getline(&line, &cap, f) > 0); /* header */
	while ((got = getline(&line, &cap, f)) > 0) {
		json_t *o = json_loadb(line, (size_t)got, 0, NULL);
		assert_non_null(o);
		json_t *jm = json_object_get(o, "messages");
		struct chat_msg msgs[8];
		struct record r;
		memset(&r, 0, sizeof r);
		r.line = 1;
		r.msgs = msgs;
		r.n_msgs = json_array_size(jm);
		assert_true(r.n_msgs <= 8);
		for (size_t i = 0; i < r.n_msgs; i++) {
			const char *role = json_string_value(json_object_get(json_array_get(jm, i), "role"));
			msgs[i].role = strcmp(role, "system") == 0 ? ROLE_SYSTEM
				       : strcmp(role, "user") == 0 ? ROLE_USER : ROLE_ASSISTANT;
			msgs[i].content = (char *)json_string_value(
				json_object_get(json_array_get(jm, i), "content"));
		}
		struct templated tt;
		struct diag d;
		diag_init(&d);
		assert_int_equal(template_apply(&tt, &r, DATA_CHAT, &ts, "chat", &d), 0);
		char *text = templated_text(&tt, 0, tt.n, "");
		char *prompt = templated_text(&tt, 0, tt.n_prompt, "");
		const char *want = json_string_value(json_object_get(o, "text"));
		const char *want_prompt = json_string_value(json_object_get(o, "prompt"));
		assert_true(strncmp(want, "<bos>", 5) == 0 && strncmp(want_prompt, "<bos>", 5) == 0);
		assert_string_equal(text, want + 5);
		assert_string_equal(prompt, want_prompt + 5);
		struct tok_example ex;
		assert_int_equal(data_tokenize_one(&ex, &tt, &dt, 0, false, &d), 0);
		json_t *ids = json_object_get(o, "ids");
		if (!json_is_true(json_object_get(o, "specials_in_content"))) {
			assert_true(same_ids(ex.ids, ex.n, ids));
		} else {
			/* HF turns "<end_of_turn>" inside a message into the control token; ftlab
			 * keeps it as text, so there are fewer control tokens here */
			size_t ours = 0, hf = 0;
			for (size_t i = 0; i < ex.n; i++)
				ours += ex.ids[i] == 106;
			for (size_t i = 0; i < json_array_size(ids); i++)
				hf += json_integer_value(json_array_get(ids, i)) == 106;
			assert_true(ours < hf);
		}
		/* loss on the model turns only: the trained ids decode to the replies + markers */
		size_t n_loss = 0;
		for (size_t i = 0; i < ex.n; i++)
			n_loss += ex.loss[i];
		assert_true(n_loss > 0 && n_loss < ex.n);
		assert_int_equal(ex.ids[0], tokenizer_bos(t));
		assert_int_equal(ex.loss[0], 0);
		tok_example_clear(&ex);
		templated_free(&tt);
		free(text);
		free(prompt);
		json_decref(o);
		rows++;
	}
	assert_true(rows >= 4);
	free(line);
	fclose(f);
	free(p);
	tokenizer_free(t);
}

/* add_space_prefix = false: no "▁" in front (llama.cpp and the model's own tokenizer;
 * transformers 5.25 ignores the key for non-Gemma GGUF files, docs/engine.md says so). */
static void test_no_space_prefix(void **state)
{
	(void)state;
	char *p = tok_fixture_path("tests/reference/fixtures/tiny-spm.gguf");
	struct diag d;
	diag_init(&d);
	struct model_file *m;
	assert_int_equal(model_file_load_tokenizer(&m, p, &d), 0);
	assert_true(m->tok.add_space_prefix_set && m->tok.add_space_prefix);
	m->tok.add_space_prefix = false;
	struct tokenizer *t;
	assert_int_equal(tokenizer_from_model_file(&t, m, &d), 0);
	int32_t *ids;
	size_t n, len;
	assert_int_equal(tokenizer_encode_ex(t, "Hello world", 11, 0, &ids, &n, &d), 0);
	assert_true(n >= 2);
	const char *first = tokenizer_token_text(t, ids[0], &len);
	assert_true(len < 3 || memcmp(first, "\xe2\x96\x81", 3) != 0);
	char *back;
	assert_int_equal(tokenizer_decode(t, ids, n, false, &back, &len), 0);
	assert_string_equal(back, "Hello world"); /* and no leading space is stripped */
	free(back);
	free(ids);
	tokenizer_free(t);
	model_file_free(m);
	free(p);
}

/* The loader tokenizes an example one segment at a time; with a Llama-style tokenizer only
 * the start of the example gets the "▁" prefix, so its ids are those of the whole text. */
static void test_segments_like_whole_text(void **state)
{
	(void)state;
	struct tokenizer *t = tok_fixture_load("tests/reference/fixtures/tiny-spm.gguf");
	struct data_tok dt = data_tok_from_tokenizer(t);
	struct template_spec ts = {TEMPLATE_PLAIN, NULL, NULL, NULL};
	struct record r;
	memset(&r, 0, sizeof r);
	r.line = 1;
	r.prompt = "What is the theory?";
	r.response = "the quick brown fox";
	struct templated tt;
	struct diag d;
	diag_init(&d);
	assert_int_equal(template_apply(&tt, &r, DATA_COMPLETION, &ts, "x", &d), 0);
	struct tok_example ex;
	assert_int_equal(data_tokenize_one(&ex, &tt, &dt, 0, false, &d), 0);
	const char *whole = "What is the theory?\nthe quick brown fox";
	int32_t *ids;
	size_t n;
	assert_int_equal(tokenizer_encode_ex(t, whole, strlen(whole), TOK_ADD_SPECIAL, &ids, &n, &d),
			 0);
	/* BOS + the text, then the EOS the template adds */
	assert_int_equal(ex.n, n + 1);
	assert_memory_equal(ex.ids, ids, n * sizeof *ids);
	assert_int_equal(ex.ids[n], tokenizer_eos(t));
	free(ids);
	tok_example_clear(&ex);
	templated_free(&tt);
	tokenizer_free(t);
}

/* Malformed SentencePiece metadata: a clear error, never a crash. */
static void test_spm_gguf_malformed(void **state)
{
	(void)state;
	char tmpl[] = "/tmp/ftlab-spmbad-XXXXXX";
	char *dir = mkdtemp(tmpl);
	assert_non_null(dir);
	char *p = path_join(dir, "m.gguf");
	char *toks[] = {"<unk>", "<s>", "</s>", "a", "b", "ab"};
	float scores[] = {0, 0, 0, -1, -2, -3}, nan_scores[] = {0, 0, 0, -1, NAN, -3};
	int32_t types[] = {2, 3, 3, 1, 1, 1};
	static const struct {
		int variant;
		const char *msg;
	} cases[] = {
		{0, "needs tokenizer.ggml.scores or tokenizer.ggml.merges"},
		{1, "tokenizer.ggml.scores[4] is not finite"},
		{2, "tokenizer.ggml.scores has 5 entries for 6 tokens"},
		{3, "metadata 'tokenizer.ggml.add_space_prefix' has type u32, expected bool"},
		{4, "metadata 'tokenizer.ggml.scores' has type array of i32, expected array of f32"},
		{5, NULL}, /* well-formed */
	};
	for (size_t i = 0; i < FT_ARRAY_LEN(cases); i++) {
		int v = cases[i].variant;
		struct gguf_out *g = NULL;
		struct diag d;
		diag_init(&d);
		assert_int_equal(gguf_out_create(&g), 0);
		gguf_out_str(g, "general.architecture", "llama");
		gguf_out_str(g, "tokenizer.ggml.model", "llama");
		gguf_out_arr_str(g, "tokenizer.ggml.tokens", toks, 6);
		gguf_out_arr_i32(g, "tokenizer.ggml.token_type", types, 6);
		if (v == 1)
			gguf_out_arr_f32(g, "tokenizer.ggml.scores", nan_scores, 6);
		else if (v == 2)
			gguf_out_arr_f32(g, "tokenizer.ggml.scores", scores, 5);
		else if (v == 4)
			gguf_out_arr_i32(g, "tokenizer.ggml.scores", types, 6);
		else if (v != 0)
			gguf_out_arr_f32(g, "tokenizer.ggml.scores", scores, 6);
		if (v == 3)
			gguf_out_u32(g, "tokenizer.ggml.add_space_prefix", 1);
		assert_int_equal(gguf_out_write(g, p, &d), 0);
		gguf_out_free(g);
		struct model_file *m = NULL;
		struct tokenizer *t = NULL;
		int rc = model_file_load_tokenizer(&m, p, &d);
		if (!rc)
			rc = tokenizer_from_model_file(&t, m, &d);
		if (!cases[i].msg) {
			assert_int_equal(rc, 0);
			int32_t *ids;
			size_t n;
			assert_int_equal(tokenizer_encode_ex(t, "ab", 2, 0, &ids, &n, &d), 0);
			/* "▁ab": no "▁" in this vocabulary and no byte tokens: <unk>, then "ab" */
			assert_int_equal(n, 2);
			assert_int_equal(ids[0], 0);
			assert_int_equal(ids[1], 5);
			free(ids);
		} else {
			assert_int_equal(rc, FT_EINVAL);
			if (!strstr(d.text, cases[i].msg))
				fail_msg("case %zu: '%s', want '%s'", i, d.text, cases[i].msg);
		}
		tokenizer_free(t);
		model_file_free(m);
	}
	assert_int_equal(dir_remove_all(dir), 0);
	free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tiny_spm_gguf_matches_hf),
		cmocka_unit_test(test_tiny_spm_tokenizer_json_matches_hf),
		cmocka_unit_test(test_no_space_prefix),
		cmocka_unit_test(test_segments_like_whole_text),
		cmocka_unit_test(test_spm_gguf_malformed),
		cmocka_unit_test(test_gemma_gguf_matches_hf),
		cmocka_unit_test(test_gemma_tokenizer_json_matches_hf),
		cmocka_unit_test(test_gemma_chat_template_matches_hf),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
