/* Logits against reference fixtures (tests/reference/make_logits_fixture.py):
 * SmolLM2-135M-Instruct (Q4_1 GGUF dequantised; transformers' LlamaForCausalLM in fp32)
 * on several prompts, and tiny random llama and GPT-2 models loaded from GGUF and from
 * safetensors directories, against their PyTorch logits. Error measure: max |ours - ref|
 * over the stored values divided by max |ref| of that prompt, <= 1e-4. */
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
#include <unistd.h>

#include "backends/native/io/model_file.h"
#include "backends/native/model/generate_text.h"
#include "backends/native/model/model.h"
#include "backends/native/peft/adapter.h"
#include "backends/native/tok/tokenizer.h"
#include "common/banned.h"

static char *root_path(const char *rel)
{
	const char *root = getenv("FTLAB_ROOT");
	size_t n = strlen(root ? root : ".") + strlen(rel) + 2;
	char *p = malloc(n);
	snprintf(p, n, "%s/%s", root ? root : ".", rel);
	return p;
}

static json_t *load_json(const char *rel)
{
	char *p = root_path(rel);
	json_error_t err;
	json_t *j = json_load_file(p, 0, &err);
	if (!j)
		fail_msg("%s: %s", p, err.text);
	free(p);
	return j;
}

static struct model *load_model(const char *rel, int max_seq, int *out_rc)
{
	char *p = root_path(rel);
	struct diag d;
	diag_init(&d);
	struct model_file *mf = NULL;
	*out_rc = model_file_load(&mf, p, &d);
	free(p);
	if (*out_rc) {
		print_message("%s: %s\n", rel, d.text);
		return NULL;
	}
	struct model_opts o = {0};
	o.method = METHOD_NONE;
	o.layers_first = o.layers_last = -1;
	o.max_batch = 1;
	o.max_seq = max_seq;
	o.full_logits = true;
	struct model *m = NULL;
	if (model_create(&m, mf, &o, &d))
		fail_msg("model_create %s: %s", rel, d.text);
	model_file_free(mf);
	return m;
}

/* The comparison of one prompt: max |ours - ref| over the values compared, the scale
 * (max |ref|) and how many values were compared. A NaN or infinity on either side makes
 * the error infinite (fmax would drop a NaN and `rel > tol` is false for NaN). */
struct logit_cmp {
	double err, scale;
	size_t compared;
};

static void cmp_value(struct logit_cmp *c, double ours, double ref, bool scales)
{
	double e = fabs(ours - ref);
	if (!isfinite(ours) || !isfinite(ref) || isnan(e))
		e = INFINITY;
	c->err = e > c->err ? e : c->err;
	if (scales && fabs(ref) > c->scale)
		c->scale = fabs(ref);
	c->compared++;
}

/* A fixture entry against the logits lg (T rows of V) of its ids; the argmax of the last
 * row must agree. */
static struct logit_cmp compare_logits(const float *lg, int T, int V, json_t *e)
{
	struct logit_cmp c = {0, 0, 0};
	const float *last = lg + (size_t)(T - 1) * V;
	json_t *tv = json_object_get(e, "top_vals"), *ti = json_object_get(e, "top_ids");
	for (size_t i = 0; i < json_array_size(tv); i++) {
		int64_t id = json_integer_value(json_array_get(ti, i));
		if (id < 0 || id >= V)
			fail_msg("fixture top id %lld outside the vocabulary", (long long)id);
		cmp_value(&c, last[id], json_real_value(json_array_get(tv, i)), true);
	}
	json_t *li = json_object_get(e, "last_idx"), *lv = json_object_get(e, "last_vals");
	for (size_t i = 0; i < json_array_size(li); i++) {
		int64_t id = json_integer_value(json_array_get(li, i));
		if (id < 0 || id >= V)
			fail_msg("fixture index %lld outside the vocabulary", (long long)id);
		cmp_value(&c, last[id], json_real_value(json_array_get(lv, i)), true);
	}
	json_t *pv = json_object_get(e, "pos_vals");
	for (int t = 0; t < T; t++) {
		json_t *row = json_array_get(pv, (size_t)t);
		for (size_t i = 0; i < json_array_size(row) && i < (size_t)V; i++)
			cmp_value(&c, lg[(size_t)t * V + i], json_real_value(json_array_get(row, i)),
				  false);
	}
	json_t *all = json_object_get(e, "all_vals");
	for (int t = 0; all && t < T; t++) {
		json_t *row = json_array_get(all, (size_t)t);
		for (size_t i = 0; i < json_array_size(row) && i < (size_t)V; i++)
			cmp_value(&c, lg[(size_t)t * V + i], json_real_value(json_array_get(row, i)),
				  true);
	}
	if (json_array_size(ti) > 0) {
		int best = 0;
		for (int i = 1; i < V; i++)
			if (last[i] > last[best])
				best = i;
		if (best != json_integer_value(json_array_get(ti, 0)))
			c.err = INFINITY;
	}
	return c;
}

/* The relative error of a comparison, failing when it exceeds 1e-4, is not a number,
 * or when nothing (or no scale) was compared: an empty fixture proves nothing. */
static double check_err(struct logit_cmp c, const char *what, size_t k)
{
	if (c.compared == 0 || !(c.scale > 0))
		fail_msg("%s prompt %zu: the fixture entry has no values to compare", what, k);
	double rel = c.err / c.scale;
	if (!(rel <= 1e-4))
		fail_msg("%s prompt %zu: relative error %.3g > 1e-4", what, k, rel);
	return rel;
}

/* Compares one prompt's logits with a fixture entry. */
static double compare(struct model *m, json_t *e, const char *what, size_t k)
{
	json_t *ids = json_object_get(e, "ids");
	int T = (int)json_array_size(ids);
	if (T == 0)
		fail_msg("%s prompt %zu: the fixture entry has no ids", what, k);
	int32_t *tok = malloc((size_t)T * sizeof(int32_t));
	for (int i = 0; i < T; i++)
		tok[i] = (int32_t)json_integer_value(json_array_get(ids, (size_t)i));
	assert_int_equal(model_forward(m, tok, NULL, 1, T, NULL, NULL), 0);
	struct logit_cmp c = compare_logits(model_logits(m), T, model_hparams(m)->n_vocab, e);
	free(tok);
	return check_err(c, what, k);
}

/* The comparison itself cannot pass vacuously: a NaN logit (where the top values are
 * compared or elsewhere), an entry with nothing to compare and a wrong argmax all fail.
 * (JSON has no NaN, so a fixture cannot hold one.) */
static void test_comparison_not_vacuous(void **state)
{
	(void)state;
	float lg[2 * 4] = {0.1f, 0.2f, 0.3f, 0.4f, 1.0f, 2.0f, 3.0f, 4.0f};
	json_error_t je;
	json_t *good = json_loads("{\"ids\": [1, 2], \"top_ids\": [3, 2], \"top_vals\": [4.0, 3.0],"
				  " \"pos_vals\": [[0.1, 0.2], [1.0, 2.0]]}", 0, &je);
	struct logit_cmp c = compare_logits(lg, 2, 4, good);
	assert_true(c.compared == 6 && c.err < 1e-6 && c.scale == 4.0);
	lg[7] = NAN; /* the model's argmax logit */
	c = compare_logits(lg, 2, 4, good);
	assert_false(c.err / c.scale <= 1e-4);
	lg[7] = 4.0f;
	lg[4] = NAN; /* a position logit, outside the top values */
	c = compare_logits(lg, 2, 4, good);
	assert_false(c.err / c.scale <= 1e-4);
	lg[4] = 1.0f;
	json_t *empty = json_loads("{\"ids\": [1, 2]}", 0, &je);
	c = compare_logits(lg, 2, 4, empty);
	assert_int_equal(c.compared, 0); /* check_err fails this */
	json_t *wrong = json_loads("{\"ids\": [1, 2], \"top_ids\": [2], \"top_vals\": [4.0]}", 0,
				   &je);
	c = compare_logits(lg, 2, 4, wrong); /* argmax is 3, not 2 */
	assert_false(c.err / c.scale <= 1e-4);
	json_decref(good);
	json_decref(empty);
	json_decref(wrong);
}

static void test_smollm2_logits(void **state)
{
	(void)state;
	json_t *fx = load_json("tests/reference/fixtures/logits_smollm2.json");
	json_t *prompts = json_object_get(fx, "prompts");
	if (json_array_size(prompts) < 3)
		fail_msg("logits_smollm2.json holds %zu prompts (expected several)",
			 json_array_size(prompts));
	int rc;
	struct model *m = load_model("models/SmolLM2-135M-Instruct.Q4_1.gguf", 64, &rc);
	assert_int_equal(rc, 0);
	double worst = 0;
	for (size_t k = 0; k < json_array_size(prompts); k++)
		worst = fmax(worst, compare(m, json_array_get(prompts, k), "smollm2", k));
	print_message("SmolLM2: worst relative error %.3g over %zu prompts\n", worst,
		      json_array_size(prompts));
	model_free(m);
	json_decref(fx);
}

static void check_tiny(const char *name, const char *file)
{
	json_t *fx = load_json("tests/reference/fixtures/logits_tiny.json");
	json_t *seqs = json_object_get(json_object_get(fx, "models"), name);
	assert_true(json_array_size(seqs) > 0);
	int rc;
	struct model *m = load_model(file, 16, &rc);
	if (!m)
		fail_msg("%s does not load", file);
	double worst = 0;
	for (size_t k = 0; k < json_array_size(seqs); k++)
		worst = fmax(worst, compare(m, json_array_get(seqs, k), file, k));
	print_message("%s: worst relative error %.3g\n", file, worst);
	model_free(m);
	json_decref(fx);
}

static void test_tiny_llama_gguf(void **state)
{
	(void)state;
	check_tiny("tiny-llama", "tests/reference/fixtures/tiny-llama.gguf");
}

static void test_tiny_gpt2_gguf(void **state)
{
	(void)state;
	check_tiny("tiny-gpt2", "tests/reference/fixtures/tiny-gpt2.gguf");
}

static void test_tiny_llama_safetensors(void **state)
{
	(void)state;
	check_tiny("tiny-llama", "tests/reference/fixtures/tiny-llama");
}

static void test_tiny_gpt2_safetensors(void **state)
{
	(void)state;
	check_tiny("tiny-gpt2", "tests/reference/fixtures/tiny-gpt2");
}

/* The CI smoke test: a short greedy answer through the chat template. */
static void test_smollm2_generate(void **state)
{
	(void)state;
	char *p = root_path("models/SmolLM2-135M-Instruct.Q4_1.gguf");
	struct diag d;
	diag_init(&d);
	struct model_file *mf = NULL;
	struct tokenizer *tok = NULL;
	struct model *m = NULL;
	assert_int_equal(model_file_load(&mf, p, &d), 0);
	assert_int_equal(tokenizer_from_model_file(&tok, mf, &d), 0);
	struct model_opts o = {0};
	o.layers_first = o.layers_last = -1;
	assert_int_equal(model_create(&m, mf, &o, &d), 0);
	assert_true(gen_has_chatml(tok));
	const char *prompts[] = {"What is the capital of France?",
				 "What is 2 + 2? Answer with a number."};
	struct gen_text_opts go = {0};
	go.g.max_new_tokens = 24;
	go.g.top_p = 1.0f;
	go.chat = true;
	char **texts = NULL;
	assert_int_equal(model_generate_text(m, tok, prompts, 2, &go, &texts, &d), 0);
	print_message("> %s\n%s\n> %s\n%s\n", prompts[0], texts[0], prompts[1], texts[1]);
	assert_non_null(strstr(texts[0], "Paris"));
	assert_non_null(strstr(texts[1], "4"));
	/* a stop string cuts the text before it */
	const char *stops[] = {"Paris"};
	go.stop_strings = stops;
	go.n_stop_strings = 1;
	char **cut = NULL;
	assert_int_equal(model_generate_text(m, tok, prompts, 1, &go, &cut, &d), 0);
	assert_null(strstr(cut[0], "Paris"));
	assert_int_equal(strncmp(cut[0], texts[0], strlen(cut[0])), 0);
	for (int i = 0; i < 2; i++)
		free(texts[i]);
	free(texts);
	free(cut[0]);
	free(cut);
	model_free(m);
	tokenizer_free(tok);
	model_file_free(mf);
	free(p);
}

/* Runs `ftlab generate` and returns its stdout (caller frees). */
static char *run_generate(const char *model, const char *adapter, const char *prompt)
{
	const char *bin = getenv("FTLAB_BIN");
	assert_non_null(bin);
	char cmd[4096];
	snprintf(cmd, sizeof cmd, "OMP_NUM_THREADS=1 '%s' generate '%s' %s%s%s --max-new-tokens 12 '%s'",
		 bin, model, adapter ? "--adapter '" : "", adapter ? adapter : "",
		 adapter ? "'" : "", prompt);
	FILE *f = popen(cmd, "r");
	assert_non_null(f);
	char *buf = calloc(1, 65536);
	size_t n = fread(buf, 1, 65535, f);
	buf[n] = '\0';
	assert_int_equal(pclose(f), 0);
	return buf;
}

/* A PEFT adapter written from a LoRA model (q/k rows un-permuted for the HF layout) and
 * loaded by `ftlab generate --adapter` (re-permuted for the GGUF base) generates what the
 * in-memory model generates. */
static void test_smollm2_adapter_generate(void **state)
{
	(void)state;
	char *p = root_path("models/SmolLM2-135M-Instruct.Q4_1.gguf");
	struct diag d;
	diag_init(&d);
	struct model_file *mf = NULL;
	struct tokenizer *tok = NULL;
	struct model *m = NULL;
	assert_int_equal(model_file_load(&mf, p, &d), 0);
	assert_int_equal(tokenizer_from_model_file(&tok, mf, &d), 0);
	const char *targets[] = {"q_proj", "k_proj", "v_proj"};
	struct model_opts o = {0};
	o.method = METHOD_LORA;
	o.lora_rank = 4;
	o.lora_alpha = 8;
	o.targets = targets;
	o.n_targets = 3;
	o.layers_first = o.layers_last = -1;
	o.seed = 5;
	assert_int_equal(model_create(&m, mf, &o, &d), 0);
	model_set_training(m, false);
	size_t nt = model_n_trainable(m);
	struct lora_tensor *lt = calloc(nt, sizeof *lt);
	for (size_t i = 0; i < nt; i++) {
		const struct model_param *mp = model_trainable(m, i);
		if (strstr(mp->name, "lora_B"))
			for (size_t j = 0; j < mp->numel; j++)
				mp->data[j] = 0.05f * sinf((float)(j % 97) + (float)i);
		lt[i].name = (char *)mp->name;
		lt[i].data = mp->data;
		lt[i].rows = mp->shape[0];
		lt[i].cols = mp->shape[1];
	}
	char *names[] = {"q_proj", "k_proj", "v_proj"};
	struct lora_info info = {.rank = 4, .alpha = 8, .targets = names, .n_targets = 3,
				 .interleaved = true, .n_head = mf->hp.n_head,
				 .n_head_kv = mf->hp.n_head_kv, .head_dim = mf->hp.head_dim};
	char dir[] = "/tmp/ftlab-adapter-XXXXXX";
	assert_non_null(mkdtemp(dir));
	assert_int_equal(adapter_write_peft(dir, lt, nt, &info, &d), 0);
	const char *prompt = "Write a short poem about the sea.";
	struct gen_text_opts go = {0};
	go.g.max_new_tokens = 12;
	go.g.top_p = 1.0f;
	go.chat = true;
	char **texts = NULL;
	assert_int_equal(model_generate_text(m, tok, &prompt, 1, &go, &texts, &d), 0);
	char *with = run_generate(p, dir, prompt), *without = run_generate(p, NULL, prompt);
	print_message("adapter: %s\nbase:    %s", with, without);
	assert_int_equal(strncmp(with, texts[0], strlen(texts[0])), 0);
	assert_string_not_equal(with, without);
	free(with);
	free(without);
	free(texts[0]);
	free(texts);
	free(lt);
	char rm[256];
	snprintf(rm, sizeof rm, "rm -rf '%s'", dir);
	assert_int_equal(system(rm), 0);
	model_free(m);
	tokenizer_free(tok);
	model_file_free(mf);
	free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_comparison_not_vacuous),
		cmocka_unit_test(test_tiny_llama_gguf),
		cmocka_unit_test(test_tiny_gpt2_gguf),
		cmocka_unit_test(test_tiny_llama_safetensors),
		cmocka_unit_test(test_tiny_gpt2_safetensors),
		cmocka_unit_test(test_smollm2_logits),
		cmocka_unit_test(test_smollm2_generate),
		cmocka_unit_test(test_smollm2_adapter_generate),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
