/* Tokenizer files for merged exports of GGUF bases (tokenizer_write_hf): read back by ftlab
 * they give Hugging Face's ids on the whole tokenizer corpus (SmolLM2 byte-level BPE,
 * Gemma 3 and a tiny Llama-2-style SentencePiece); merged-safetensors from a GGUF base
 * writes them, so the directory loads with its tokenizer; a model directory without
 * tokenizer files is an error that names the files. (That transformers loads the same files
 * with the same ids is checked by tests/reference/check_exported_tokenizers.py, result in
 * tests/reference/exported_tokenizers_check.json.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/native/export.h"
#include "backends/native/io/model_file.h"
#include "backends/native/peft/gguf_write.h"
#include "backends/native/tok/tokenizer.h"
#include "common/util.h"
#include "tests/unit/tiny_model.h"
#include "tests/unit/tok_fixture.h"
#include "common/banned.h"

static char *tmpdir(void)
{
	char tmpl[] = "/tmp/ftlab-tokexport-XXXXXX";
	char *d = mkdtemp(tmpl);
	assert_non_null(d);
	return ft_strdup(d);
}

/* Writes the GGUF's tokenizer as HF files and checks the files against the fixture. */
static void roundtrip(const char *gguf, const char *fixture, bool smollm_form)
{
	struct tokenizer *g = tok_fixture_load(gguf);
	char *dir = tmpdir();
	struct diag d;
	diag_init(&d);
	assert_int_equal(tokenizer_write_hf(dir, g, 0, &d), 0);
	const char *files[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"};
	for (size_t i = 0; i < FT_ARRAY_LEN(files); i++) {
		char *p = path_join(dir, files[i]);
		assert_true(path_exists(p));
		free(p);
	}
	struct tokenizer *t = tok_fixture_load_json_dir(dir);
	assert_int_equal(tokenizer_n_vocab(t), tokenizer_n_vocab(g));
	assert_int_equal(tokenizer_bos(t), tokenizer_bos(g));
	assert_int_equal(tokenizer_eos(t), tokenizer_eos(g));
	assert_int_equal(tokenizer_adds_bos(t), tokenizer_adds_bos(g));
	assert_int_equal(tokenizer_is_sentencepiece(t), tokenizer_is_sentencepiece(g));
	if (smollm_form) {
		/* {"text", "ids"} lines: ids with special tokens parsed and the model's BOS rule */
		char *p = tok_fixture_path(fixture);
		FILE *f = fopen(p, "r");
		assert_non_null(f);
		char *line = NULL;
		size_t cap = 0, n = 0, bad = 0;
		ssize_t got;
		while ((got = getline(&line, &cap, f)) > 0) {
			json_t *o = json_loadb(line, (size_t)got, 0, NULL);
			json_t *jt = json_object_get(o, "text"), *jids = json_object_get(o, "ids");
			int32_t *ids;
			size_t k;
			assert_int_equal(tokenizer_encode(t, json_string_value(jt), json_string_length(jt),
							  true, &ids, &k, &d), 0);
			bool same = k == json_array_size(jids);
			for (size_t i = 0; same && i < k; i++)
				same = ids[i] == (int32_t)json_integer_value(json_array_get(jids, i));
			bad += !same;
			free(ids);
			json_decref(o);
			n++;
		}
		free(line);
		fclose(f);
		free(p);
		assert_true(n >= 500);
		assert_int_equal(bad, 0);
	} else {
		json_t *hdr;
		size_t n;
		assert_int_equal(tok_fixture_run(t, fixture, &hdr, &n), 0);
		assert_true(n >= 500);
		json_decref(hdr);
	}
	/* the chat template goes along: the GGUF's own, or Gemma's for Gemma */
	char *cp = path_join(dir, "tokenizer_config.json");
	json_t *cfg = json_load_file(cp, 0, NULL);
	assert_non_null(cfg);
	const char *tmpl = json_string_value(json_object_get(cfg, "chat_template"));
	if (tokenizer_chat_template(g))
		assert_string_equal(tmpl, tokenizer_chat_template(g));
	if (tokenizer_token_id(g, "<start_of_turn>") >= 0)
		assert_non_null(tmpl && strstr(tmpl, "<start_of_turn>model"));
	json_decref(cfg);
	free(cp);
	tokenizer_free(t);
	tokenizer_free(g);
	assert_int_equal(dir_remove_all(dir), 0);
	free(dir);
}

static void test_smollm2_files(void **state)
{
	(void)state;
	roundtrip("models/SmolLM2-135M-Instruct.Q4_1.gguf", "tests/reference/tokenizer_smollm2.jsonl",
		  true);
}

static void test_tiny_spm_files(void **state)
{
	(void)state;
	roundtrip("tests/reference/fixtures/tiny-spm.gguf", "tests/reference/tokenizer_tiny_spm.jsonl",
		  false);
}

static void test_gemma_files(void **state)
{
	(void)state;
	tok_fixture_need_gemma();
	roundtrip(TOK_FIXTURE_GEMMA, "tests/reference/tokenizer_gemma3.jsonl", false);
}

/* merged-safetensors of a GGUF base: the directory has the tokenizer files and loads as a
 * model with the same tokenizer (what `ftlab generate DIR` does). */
static void test_merged_safetensors_has_tokenizer(void **state)
{
	(void)state;
	char *dir = tmpdir();
	char *gguf = path_join(dir, "base.gguf"), *out = path_join(dir, "merged");
	struct tiny_model_spec s;
	tiny_model_spec_default(&s, ARCH_LLAMA);
	struct diag d;
	diag_init(&d);
	assert_int_equal(tiny_model_write_gguf(gguf, &s, &d), 0);
	struct model_file *mf = NULL, *back = NULL;
	assert_int_equal(model_file_load(&mf, gguf, &d), 0);
	assert_int_equal(model_file_dequantize(mf, &d), 0); /* the writer takes fp32 copies */
	assert_int_equal(export_merged_hf(out, mf, &d), 0);
	const char *files[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"};
	for (size_t i = 0; i < FT_ARRAY_LEN(files); i++) {
		char *p = path_join(out, files[i]);
		if (!path_exists(p))
			fail_msg("merged-safetensors from a GGUF base wrote no %s", files[i]);
		free(p);
	}
	int rc = model_file_load(&back, out, &d);
	if (rc)
		diag_print(&d, stderr);
	assert_int_equal(rc, 0);
	struct tokenizer *a = NULL, *b = NULL;
	assert_int_equal(tokenizer_from_model_file(&a, mf, &d), 0);
	assert_int_equal(tokenizer_from_model_file(&b, back, &d), 0);
	const char *texts[] = {"hello world", "<|im_start|>user\nhi<|im_end|>", " 12 3.5  x\t\n"};
	for (size_t i = 0; i < FT_ARRAY_LEN(texts); i++) {
		int32_t *x, *y;
		size_t nx, ny;
		assert_int_equal(tokenizer_encode(a, texts[i], strlen(texts[i]), true, &x, &nx, &d), 0);
		assert_int_equal(tokenizer_encode(b, texts[i], strlen(texts[i]), true, &y, &ny, &d), 0);
		assert_int_equal(nx, ny);
		assert_memory_equal(x, y, nx * sizeof *x);
		free(x);
		free(y);
	}
	assert_int_equal(tokenizer_eos(a), tokenizer_eos(b));
	tokenizer_free(a);
	tokenizer_free(b);
	model_file_free(mf);
	model_file_free(back);
	assert_int_equal(dir_remove_all(dir), 0);
	free(gguf);
	free(out);
	free(dir);
}

/* A model directory without tokenizer.json: the error names the files, not GGUF keys. */
static void test_missing_tokenizer_files_named(void **state)
{
	(void)state;
	char *dir = tmpdir();
	struct tiny_model_spec s;
	tiny_model_spec_default(&s, ARCH_LLAMA);
	struct diag d;
	diag_init(&d);
	assert_int_equal(tiny_model_write_hf(dir, &s, &d), 0);
	char *tj = path_join(dir, "tokenizer.json"), *tc = path_join(dir, "tokenizer_config.json");
	assert_int_equal(remove(tj), 0);
	remove(tc);
	struct model_file *mf = NULL;
	assert_int_equal(model_file_load(&mf, dir, &d), 0);
	struct tokenizer *t = NULL;
	assert_int_equal(tokenizer_from_model_file(&t, mf, &d), FT_EINVAL);
	assert_non_null(strstr(d.text, "tokenizer.json"));
	assert_non_null(strstr(d.text, "tokenizer_config.json"));
	assert_null(strstr(d.text, "tokenizer.ggml"));
	model_file_free(mf);
	diag_init(&d);
	assert_int_equal(model_file_load_tokenizer(&mf, dir, &d), FT_EINVAL);
	assert_non_null(strstr(d.text, "tokenizer.json"));
	assert_int_equal(dir_remove_all(dir), 0);
	free(tj);
	free(tc);
	free(dir);
}

/* The Hugging Face repository named in GGUF metadata (for base_model_name_or_path). */
static void test_hf_repo_from_metadata(void **state)
{
	(void)state;
	static const struct {
		const char *key, *value, *want;
	} cases[] = {
		{"general.source.huggingface.repository", "google/gemma-3-270m", "google/gemma-3-270m"},
		{"general.source.url", "https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct",
		 "HuggingFaceTB/SmolLM2-135M-Instruct"},
		{"general.source.repo_url", "https://huggingface.co/org/name/tree/main", "org/name"},
		{"general.repo_url", "https://hf.co/org/m.v1?x=1", "org/m.v1"},
		{"general.source.url", "https://github.com/org/name", NULL},
		{"general.source.huggingface.repository", "not a repo", NULL},
		{"general.source.huggingface.repository", "org/", NULL},
		{"general.base_model.0.repo_url", "https://huggingface.co/org/parent", NULL},
	};
	char *dir = tmpdir();
	char *p = path_join(dir, "m.gguf");
	for (size_t i = 0; i < FT_ARRAY_LEN(cases); i++) {
		struct gguf_out *g = NULL;
		struct diag d;
		diag_init(&d);
		assert_int_equal(gguf_out_create(&g), 0);
		gguf_out_str(g, "general.architecture", "llama");
		gguf_out_str(g, cases[i].key, cases[i].value);
		assert_int_equal(gguf_out_write(g, p, &d), 0);
		gguf_out_free(g);
		struct model_file *mf = NULL;
		assert_int_equal(model_file_load_tokenizer(&mf, p, &d), 0);
		if (cases[i].want)
			assert_string_equal(mf->hf_repo, cases[i].want);
		else
			assert_null(mf->hf_repo);
		model_file_free(mf);
	}
	assert_int_equal(dir_remove_all(dir), 0);
	free(p);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_smollm2_files),
		cmocka_unit_test(test_tiny_spm_files),
		cmocka_unit_test(test_gemma_files),
		cmocka_unit_test(test_merged_safetensors_has_tokenizer),
		cmocka_unit_test(test_missing_tokenizer_files_named),
		cmocka_unit_test(test_hf_repo_from_metadata),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
