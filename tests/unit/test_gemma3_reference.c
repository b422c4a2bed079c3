/* Gemma 3 against transformers, peft and llama.cpp (fixtures by
 * tests/reference/make_gemma3_fixture.py, in tests/reference/fixtures/gemma3/):
 * - a tiny random Gemma3ForCausalLM saved by transformers (HF directory) and written as a
 *   gemma3 GGUF: logits from both loaders against PyTorch's;
 * - LoRA on every linear of it: loss, gradients and five AdamW steps against peft, from
 *   the same initial A and B (a formula both sides compute); our exports of the trained
 *   run (PEFT adapter, merged safetensors, merged GGUF, llama.cpp LoRA GGUF) reproduce
 *   our logits when read back by ftlab, and the script's records say peft/transformers
 *   and llama.cpp reproduce them too (export_check.json, llamacpp_check.json);
 * - Gemma 3 270M (models/gemma-3-270m-q4_k_m.gguf from `make model`; missing, the tests
 *   fail): logits of five prompts, their greedy continuations, the per-token losses of a
 *   ~600-token text (beyond the 512-token window), and LoRA gradients.
 * FTLAB_WRITE_FIXTURE=1 writes our exports to /tmp/ftlab-gemma3-tiny-exports and (real
 * model, with the base dequantised to an F32 GGUF for llama.cpp's adapter check)
 * /tmp/ftlab-gemma3-exports for the script's `exports` and `llamacpp` steps. */
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

#include "backends/native/engine.h"
#include "backends/native/io/model_file.h"
#include "backends/native/model/model.h"
#include "backends/native/peft/adapter.h"
#include "backends/native/peft/merge.h"
#include "backends/native/train/trainer.h"
#include "common/util.h"
#include "common/banned.h"

static const char *const modules[7] = {"q_proj", "k_proj", "v_proj", "o_proj",
				       "gate_proj", "up_proj", "down_proj"};

static char *fix_path(const char *rel)
{
	const char *root = getenv("FTLAB_ROOT");
	char *base = path_join(root ? root : ".", "tests/reference/fixtures/gemma3");
	char *p = path_join(base, rel);
	free(base);
	return p;
}

static json_t *load_fix(const char *rel)
{
	char *p = fix_path(rel);
	json_error_t err;
	json_t *j = json_load_file(p, 0, &err);
	if (!j)
		fail_msg("%s: %s (tests/reference/make_gemma3_fixture.py)", p, err.text);
	free(p);
	return j;
}

static struct model_file *load_mf(const char *path)
{
	struct diag d;
	diag_init(&d);
	struct model_file *mf = NULL;
	if (model_file_load(&mf, path, &d))
		fail_msg("%s: %s", path, d.text);
	return mf;
}

static struct model *make(const struct model_file *mf, enum method_type method, int B, int T,
			  bool full)
{
	struct model_opts o = {.method = method, .lora_rank = 4, .lora_alpha = 8,
			       .all_linear = true, .layers_first = -1, .layers_last = -1,
			       .max_batch = B, .max_seq = T, .seed = 1, .full_logits = full};
	struct diag d;
	diag_init(&d);
	struct model *m = NULL;
	if (model_create(&m, mf, &o, &d))
		fail_msg("model_create: %s", d.text);
	return m;
}

/* The script's initial LoRA values (see make_gemma3_fixture.py). */
static void set_lora(struct model *m)
{
	for (size_t i = 0; i < model_n_trainable(m); i++) {
		const struct model_param *p = model_trainable(m, i);
		int layer = (int)strtol(strstr(p->name, ".layers.") + 8, NULL, 10);
		int k = -1;
		for (int j = 0; j < 7; j++) {
			char pat[32];
			snprintf(pat, sizeof pat, ".%s.", modules[j]);
			if (strstr(p->name, pat))
				k = j;
		}
		assert_true(k >= 0);
		int salt = strstr(p->name, "lora_A") ? 0 : 1;
		for (size_t e = 0; e < p->numel; e++) {
			uint64_t h = (uint64_t)e * 2654435761ull + (uint64_t)(layer * 16 + k) * 97u +
				     (uint64_t)salt * 7919u;
			int v = (int)(h % 2001) - 1000;
			p->data[e] = (float)((double)v * 1e-5 * (salt ? 2.0 : 1.0));
		}
	}
}

static int32_t *ids_of(json_t *a, int *n)
{
	*n = (int)json_array_size(a);
	int32_t *v = malloc((size_t)*n * sizeof *v + 1);
	for (int i = 0; i < *n; i++)
		v[i] = (int32_t)json_integer_value(json_array_get(a, (size_t)i));
	return v;
}

/* max |ours - ref| over a fixture entry's stored values / max |ref|. */
static double entry_error(struct model *m, json_t *e, bool check_argmax)
{
	int T;
	int32_t *tok = ids_of(json_object_get(e, "ids"), &T);
	assert_int_equal(model_forward(m, tok, NULL, 1, T, NULL, NULL), 0);
	free(tok);
	const float *lg = model_logits(m);
	int V = model_hparams(m)->n_vocab;
	const float *last = lg + (size_t)(T - 1) * V;
	double scale = 1e-30, err = 0;
	json_t *tv = json_object_get(e, "top_vals"), *ti = json_object_get(e, "top_ids");
	for (size_t i = 0; i < json_array_size(tv); i++) {
		double r = json_number_value(json_array_get(tv, i));
		scale = fmax(scale, fabs(r));
		err = fmax(err, fabs(last[json_integer_value(json_array_get(ti, i))] - r));
	}
	json_t *li = json_object_get(e, "last_idx"), *lv = json_object_get(e, "last_vals");
	for (size_t i = 0; i < json_array_size(li); i++) {
		double r = json_number_value(json_array_get(lv, i));
		scale = fmax(scale, fabs(r));
		err = fmax(err, fabs(last[json_integer_value(json_array_get(li, i))] - r));
	}
	json_t *pv = json_object_get(e, "pos_vals"), *all = json_object_get(e, "all_vals");
	for (int t = 0; t < T; t++) {
		json_t *row = json_array_get(all ? all : pv, (size_t)t);
		for (size_t i = 0; i < json_array_size(row); i++)
			err = fmax(err, fabs(lg[(size_t)t * V + i] -
					     json_number_value(json_array_get(row, i))));
	}
	if (check_argmax) {
		int best = 0;
		for (int i = 1; i < V; i++)
			if (last[i] > last[best])
				best = i;
		assert_int_equal(best, json_integer_value(json_array_get(ti, 0)));
	}
	return err / scale;
}

/* ---- the tiny model ---- */

static void test_tiny_logits(void **state)
{
	(void)state;
	json_t *ref = load_fix("logits_tiny.json");
	/* transformers read our GGUF convention (norms 1 + w) to the same logits */
	assert_true(json_number_value(json_object_get(ref, "gguf_in_transformers_max_abs_diff")) <
		    1e-5);
	const char *paths[2] = {"tiny", "tiny.gguf"};
	for (int k = 0; k < 2; k++) {
		char *p = fix_path(paths[k]);
		struct model_file *mf = load_mf(p);
		assert_int_equal(mf->hp.arch, ARCH_GEMMA3);
		assert_int_equal(mf->hp.sliding_window, 4);
		struct model *m = make(mf, METHOD_NONE, 1, 16, true);
		json_t *pr = json_object_get(ref, "prompts");
		for (size_t i = 0; i < json_array_size(pr); i++) {
			double e = entry_error(m, json_array_get(pr, i), true);
			if (e > 1e-5)
				fail_msg("%s prompt %zu: relative error %.3g", paths[k], i, e);
			print_message("%s prompt %zu: relative error %.2g\n", paths[k], i, e);
		}
		model_free(m);
		model_file_free(mf);
		free(p);
	}
	json_decref(ref);
}

static int32_t g_tok[64], g_tgt[64];
static int g_B, g_T;
static double g_trace[6];

static int same_batch(void *ud, int32_t *tok, int32_t *tgt, int max_rows, int *rows, int *out_T,
		      struct diag *d)
{
	(void)ud;
	(void)d;
	(void)max_rows;
	memcpy(tok, g_tok, sizeof(int32_t) * (size_t)(g_B * g_T));
	memcpy(tgt, g_tgt, sizeof(int32_t) * (size_t)(g_B * g_T));
	*rows = g_B;
	*out_T = g_T;
	return 0;
}

static int rec_metric(void *ud, const char *split, const char *name, int64_t step, double v)
{
	(void)ud;
	if (strcmp(split, "train") == 0 && strcmp(name, "loss") == 0 && step >= 1 && step <= 5)
		g_trace[step] = v;
	return 0;
}

static void train5(struct model *m)
{
	struct config_train c = {.steps = 5, .batch_size = g_B, .grad_accum = 1,
				 .max_grad_norm = 1.0, .nonfinite = NONFINITE_ABORT};
	c.optimizer.lr = 1e-2;
	c.optimizer.beta1 = 0.9;
	c.optimizer.beta2 = 0.999;
	c.optimizer.eps = 1e-8;
	c.optimizer.weight_decay = 0.01;
	c.schedule.type = SCHEDULE_CONSTANT;
	struct run_sink sink = {.metric = rec_metric};
	struct batch_source src = {.T = g_T, .next = same_batch};
	struct trainer_opts o = {.train = &c, .total_steps = 5, .sink = &sink};
	struct trainer_result res;
	struct diag d;
	diag_init(&d);
	if (trainer_run(&res, m, &src, NULL, &o, &d) != 0)
		fail_msg("%s", d.text);
}

/* Our gradient of every LoRA tensor against peft's norm and sampled values. */
static void check_grads(struct model *m, json_t *grads, double tol)
{
	size_t checked = 0;
	for (size_t i = 0; i < model_n_trainable(m); i++) {
		const struct model_param *p = model_trainable(m, i);
		json_t *g = json_object_get(grads, p->name);
		if (!g)
			fail_msg("peft has no gradient for %s", p->name);
		double sq = 0;
		for (size_t k = 0; k < p->numel; k++)
			sq += (double)p->grad[k] * p->grad[k];
		double rn = json_number_value(json_object_get(g, "norm"));
		if (fabs(sqrt(sq) - rn) > tol * rn + 1e-12)
			fail_msg("%s: |g| ours %.7g, peft %.7g", p->name, sqrt(sq), rn);
		json_t *vals = json_object_get(g, "vals");
		if (!vals)
			vals = json_object_get(g, "head");
		size_t step = json_object_get(g, "step")
				      ? (size_t)json_integer_value(json_object_get(g, "step"))
				      : 1;
		for (size_t k = 0; k < json_array_size(vals); k++) {
			double b = json_number_value(json_array_get(vals, k));
			double a = p->grad[k * step];
			if (fabs(a - b) > 2 * tol * rn + 1e-12)
				fail_msg("%s[%zu]: ours %g, peft %g", p->name, k * step, a, b);
		}
		checked++;
	}
	assert_int_equal(checked, json_object_size(grads));
}

/* Runs `ftlab export` for every format on a run directory holding our adapter. */
static void export_all(const char *out, const char *base, struct model *m)
{
	struct diag d;
	diag_init(&d);
	char *run = path_join(out, "run");
	char *ad = path_join(run, "adapter");
	assert_int_equal(dir_make_all(ad, &d), 0);
	char meta[1024];
	snprintf(meta, sizeof meta, "{\"base_model\": \"%s\", \"method\": \"lora\", \"version\": 1}",
		 base);
	char *mp = path_join(run, "export.json");
	assert_int_equal(file_write_atomic(mp, meta, strlen(meta), &d), 0);
	struct lora_tensor lt[256];
	size_t n = model_n_trainable(m);
	assert_true(n <= 256);
	for (size_t i = 0; i < n; i++) {
		const struct model_param *p = model_trainable(m, i);
		lt[i] = (struct lora_tensor){(char *)p->name, p->data, p->shape[0], p->shape[1]};
	}
	char *tg[7];
	for (int i = 0; i < 7; i++)
		tg[i] = (char *)modules[i];
	const struct model_hparams *hp = model_hparams(m);
	struct lora_info info = {.rank = 4, .alpha = 8, .targets = tg, .n_targets = 7,
				 .n_head = hp->n_head, .n_head_kv = hp->n_head_kv,
				 .head_dim = hp->head_dim};
	if (adapter_write_peft(ad, lt, n, &info, &d))
		fail_msg("%s", d.text);
	static const char *const fmts[4][2] = {{"peft", "peft"},
					       {"merged-safetensors", "merged"},
					       {"merged-gguf", "merged_gguf"},
					       {"gguf-adapter", "adapter_gguf"}};
	for (int f = 0; f < 4; f++) {
		char *dir = path_join(out, fmts[f][1]), *target = NULL;
		if (engine_export(&target, run, fmts[f][0], dir, NULL, &d))
			fail_msg("export %s: %s", fmts[f][0], d.text);
		free(target);
		free(dir);
	}
	free(mp);
	free(ad);
	free(run);
}

/* logits (B, T, V) of a model with the exported weights, read back by ftlab */
static float *exported_logits(const char *path, const char *adapter, int B, int T)
{
	struct model_file *mf = load_mf(path);
	struct model *m = NULL;
	struct diag d;
	diag_init(&d);
	m = make(mf, adapter ? METHOD_LORA : METHOD_NONE, B, T, true);
	if (adapter) { /* the adapter's values into a LoRA model of the same layout */
		struct lora_adapter *a = NULL;
		if (adapter_read_peft(&a, adapter, false, 0, 0, 0, &d))
			fail_msg("%s", d.text);
		for (size_t i = 0; i < a->n; i++) {
			const struct model_param *p = model_param_find(m, a->t[i].name);
			assert_non_null(p);
			memcpy(p->data, a->t[i].data, p->numel * sizeof(float));
		}
		adapter_free(a);
		model_set_training(m, false);
	}
	assert_int_equal(model_forward(m, g_tok, NULL, B, T, NULL, NULL), 0);
	size_t n = (size_t)B * T * (size_t)model_hparams(m)->n_vocab;
	float *out = malloc(n * sizeof *out);
	memcpy(out, model_logits(m), n * sizeof *out);
	model_free(m);
	model_file_free(mf);
	return out;
}

static double max_abs_diff(const float *a, const float *b, size_t n, double *amax)
{
	double e = 0;
	*amax = 1e-30;
	for (size_t i = 0; i < n; i++) {
		e = fmax(e, fabs((double)a[i] - b[i]));
		*amax = fmax(*amax, fabs((double)b[i]));
	}
	return e;
}

/* ours.json for the script: the batch and our logits after training */
static void write_ours(const char *dir, const float *lg, size_t n)
{
	json_t *tk = json_array(), *l = json_array();
	for (int i = 0; i < g_B * g_T; i++)
		json_array_append_new(tk, json_integer(g_tok[i]));
	for (size_t i = 0; i < n; i++)
		json_array_append_new(l, json_real(lg[i]));
	json_t *o = json_pack("{s:i,s:i,s:o,s:o}", "B", g_B, "T", g_T, "tokens", tk, "logits_after",
			      l);
	char *p = path_join(dir, "ours.json");
	assert_int_equal(json_dump_file(o, p, JSON_REAL_PRECISION(9)), 0);
	json_decref(o);
	free(p);
}

/* The script's record of a check, relative to the largest logit: transformers and peft
 * within 1e-4; llama.cpp (GELU through an fp16 table) within 2e-3. */
static void check_record(const char *file, const char *tag, const char *key)
{
	double tol = strstr(file, "llamacpp") ? 2e-3 : 1e-4;
	json_t *j = load_fix(file);
	json_t *t = json_object_get(j, tag);
	if (!t)
		fail_msg("%s has no '%s' entry", file, tag);
	double v = json_number_value(json_object_get(t, key));
	double mx = json_number_value(json_object_get(t, "max_abs_logit"));
	if (!json_is_number(json_object_get(t, key)) || !(v <= tol * mx))
		fail_msg("%s %s %s = %g (largest logit %g)", file, tag, key, v, mx);
	print_message("%s %s: %s %.2g (largest logit %.3g)\n", file, tag, key, v, mx);
	json_decref(j);
}

static void test_tiny_lora(void **state)
{
	(void)state;
	json_t *ref = load_fix("lora_tiny.json");
	int n;
	g_B = (int)json_integer_value(json_object_get(ref, "B"));
	g_T = (int)json_integer_value(json_object_get(ref, "T"));
	int32_t *t = ids_of(json_object_get(ref, "tokens"), &n);
	memcpy(g_tok, t, (size_t)n * sizeof *t);
	free(t);
	t = ids_of(json_object_get(ref, "targets"), &n);
	memcpy(g_tgt, t, (size_t)n * sizeof *t);
	free(t);
	bool write = getenv("FTLAB_WRITE_FIXTURE") != NULL;
	const char *paths[2] = {"tiny", "tiny.gguf"};
	for (int k = 0; k < 2; k++) {
		char *p = fix_path(paths[k]);
		struct model_file *mf = load_mf(p);
		struct model *m = make(mf, METHOD_LORA, g_B, g_T, false);
		assert_int_equal(model_n_trainable(m), 7 * 7 * 2);
		set_lora(m);
		float loss;
		long nt;
		assert_int_equal(model_forward_train(m, g_tok, g_tgt, g_B, g_T, 0.0f, &loss, &nt), 0);
		assert_int_equal(model_backward(m, 0.0f), 0);
		double rl = json_number_value(json_object_get(ref, "loss0"));
		if (fabs(loss - rl) > 1e-5 * rl)
			fail_msg("%s: loss %.8g, peft %.8g", paths[k], loss, rl);
		check_grads(m, json_object_get(ref, "grads"), 1e-4);
		model_zero_grad(m);
		train5(m);
		json_t *rt = json_object_get(ref, "trace");
		for (int i = 0; i < 5; i++) {
			double w = json_number_value(json_array_get(rt, (size_t)i));
			if (fabs(g_trace[i + 1] - w) > 1e-4 * w)
				fail_msg("%s step %d: loss %.8g, peft %.8g", paths[k], i + 1,
					 g_trace[i + 1], w);
		}
		if (k == 1) {
			/* exports of the GGUF-based run (its tokenizer metadata goes into the merged
			 * GGUF), read back by ftlab: the trained model's logits */
			char tmpl[] = "/tmp/ftlab-g3exp-XXXXXX";
			char *out = write ? ft_strdup("/tmp/ftlab-gemma3-tiny-exports")
					  : ft_strdup(mkdtemp(tmpl));
			if (write && path_exists(out))
				assert_int_equal(dir_remove_all(out), 0);
			export_all(out, p, m);
			char *peft = path_join(out, "peft");
			char *merged = path_join(out, "merged");
			char *mg = path_join(out, "merged_gguf/model.gguf");
			float *ours = exported_logits(p, peft, g_B, g_T);
			size_t nl = (size_t)g_B * g_T * (size_t)mf->hp.n_vocab;
			/* peft's logits after its five steps */
			json_t *la = json_object_get(ref, "logits_after");
			assert_int_equal(json_array_size(la), nl);
			double mx = 1e-30, e = 0;
			for (size_t i = 0; i < nl; i++) {
				double r = json_number_value(json_array_get(la, i));
				mx = fmax(mx, fabs(r));
				e = fmax(e, fabs(ours[i] - r));
			}
			if (e > 1e-3 * mx)
				fail_msg("logits after training: max |ours - peft| %g (max %g)", e, mx);
			const char *back[2] = {merged, mg};
			for (int b = 0; b < 2; b++) {
				float *lg = exported_logits(back[b], NULL, g_B, g_T);
				double amax;
				double d = max_abs_diff(lg, ours, nl, &amax);
				if (d > 1e-5 * amax)
					fail_msg("%s: logits differ by %g", back[b], d);
				free(lg);
			}
			if (write)
				write_ours(out, ours, nl);
			else
				assert_int_equal(dir_remove_all(out), 0);
			free(ours);
			free(peft);
			free(merged);
			free(mg);
			free(out);
		}
		model_free(m);
		model_file_free(mf);
		free(p);
	}
	json_decref(ref);
	/* what transformers/peft and llama.cpp made of the same exports */
	check_record("export_check.json", "tiny", "peft_logits_max_abs_diff");
	check_record("export_check.json", "tiny", "merged_safetensors_logits_max_abs_diff");
	check_record("export_check.json", "tiny", "merged_gguf_logits_max_abs_diff");
	check_record("llamacpp_check.json", "tiny", "merged_gguf_logits_max_abs_diff");
	check_record("llamacpp_check.json", "tiny", "base_plus_adapter_gguf_logits_max_abs_diff");
}

/* ---- Gemma 3 270M ---- */

/* The real model, loaded once for both of its tests (NULL without the file: they fail). */
static char *real_mp;
static struct model_file *real_mf;

static int real_setup(void **state)
{
	(void)state;
	const char *root = getenv("FTLAB_ROOT");
	real_mp = path_join(root ? root : ".", "models/gemma-3-270m-q4_k_m.gguf");
	if (real_mp && path_exists(real_mp))
		real_mf = load_mf(real_mp);
	return 0;
}

static int real_teardown(void **state)
{
	(void)state;
	model_file_free(real_mf);
	free(real_mp);
	return 0;
}

static void test_real_logits_and_greedy(void **state)
{
	(void)state;
	if (!real_mf) /* `make model` fetches it before `make test` */
		fail_msg("%s is missing or unreadable (run `make model`)", real_mp);
	json_t *ref = load_fix("real.json");
	const struct model_file *mf = real_mf;
	struct model *m = make(mf, METHOD_NONE, 1, 64, true);
	json_t *pr = json_object_get(ref, "prompts");
	for (size_t i = 0; i < json_array_size(pr); i++) {
		json_t *e = json_array_get(pr, i);
		double err = entry_error(m, e, true);
		print_message("prompt %zu: relative error %.2g\n", i, err);
		if (err > 1e-4)
			fail_msg("prompt %zu: relative error %.3g > 1e-4", i, err);
		/* the greedy continuation is transformers' token for token */
		int T, G;
		int32_t *tok = ids_of(json_object_get(e, "ids"), &T);
		int32_t *want = ids_of(json_object_get(e, "greedy"), &G);
		const int32_t *prompts[1] = {tok};
		size_t lens[1] = {(size_t)T};
		struct gen_opts g = {.max_new_tokens = G, .eos_id = -1, .top_p = 1.0f};
		int32_t **out;
		size_t *olen;
		struct diag d;
		diag_init(&d);
		assert_int_equal(model_generate_tokens(m, prompts, lens, 1, &g, &out, &olen, &d), 0);
		assert_int_equal(olen[0], (size_t)G);
		assert_memory_equal(out[0], want, (size_t)G * sizeof(int32_t));
		free(out[0]);
		free(out);
		free(olen);
		free(tok);
		free(want);
	}
	model_free(m);
	/* ~600 tokens: local layers see only the last 512 keys; the head runs in chunks */
	json_t *lj = json_object_get(ref, "long");
	int T;
	int32_t *tok = ids_of(json_object_get(lj, "ids"), &T);
	assert_true(T > 560);
	int32_t *tgt = malloc((size_t)T * sizeof *tgt);
	for (int t = 0; t < T; t++)
		tgt[t] = t + 1 < T ? tok[t + 1] : -1;
	m = make(mf, METHOD_NONE, 1, T, false);
	float loss;
	long nt;
	assert_int_equal(model_forward(m, tok, tgt, 1, T, &loss, &nt), 0);
	const float *tl = model_token_losses(m);
	const int32_t *am = model_token_argmax(m);
	json_t *rl = json_object_get(lj, "losses"), *ra = json_object_get(lj, "argmax");
	double worst = 0;
	int same = 0;
	for (int t = 0; t < T - 1; t++) {
		worst = fmax(worst, fabs(tl[t] - json_number_value(json_array_get(rl, (size_t)t))));
		same += am[t] == json_integer_value(json_array_get(ra, (size_t)t));
	}
	print_message("long text (%d tokens): max |loss - transformers| %.2g, argmax equal at %d "
		      "of %d\n", T, worst, same, T - 1);
	assert_true(worst < 2e-3);
	assert_true(same >= T - 1 - 2); /* near-ties may flip */
	free(tok);
	free(tgt);
	model_free(m);
	json_decref(ref);
}

static void test_real_lora(void **state)
{
	(void)state;
	if (!real_mf)
		fail_msg("%s is missing or unreadable (run `make model`)", real_mp);
	const char *mp = real_mp;
	json_t *ref = load_fix("real.json");
	json_t *lj = json_object_get(ref, "lora");
	int n;
	int32_t *t = ids_of(json_object_get(lj, "tokens"), &n);
	g_B = 1;
	g_T = n;
	memcpy(g_tok, t, (size_t)n * sizeof *t);
	free(t);
	t = ids_of(json_object_get(lj, "targets"), &n);
	memcpy(g_tgt, t, (size_t)n * sizeof *t);
	free(t);
	const struct model_file *mf = real_mf;
	struct model *m = make(mf, METHOD_LORA, 1, g_T, false);
	set_lora(m);
	float loss;
	long nt;
	assert_int_equal(model_forward_train(m, g_tok, g_tgt, 1, g_T, 0.0f, &loss, &nt), 0);
	assert_int_equal(model_backward(m, 0.0f), 0);
	double rl = json_number_value(json_object_get(lj, "loss"));
	print_message("LoRA loss ours %.7f, peft %.7f\n", loss, rl);
	if (fabs(loss - rl) > 1e-4 * rl)
		fail_msg("loss %.7g, peft %.7g", loss, rl);
	check_grads(m, json_object_get(lj, "grads"), 1e-3);
	if (getenv("FTLAB_WRITE_FIXTURE")) { /* the real model's exports, for the script */
		const char *out = "/tmp/ftlab-gemma3-exports";
		if (path_exists(out))
			assert_int_equal(dir_remove_all(out), 0);
		model_zero_grad(m);
		train5(m);
		export_all(out, mp, m);
		/* the base dequantised to an F32 GGUF: llama.cpp applies our LoRA GGUF to it
		 * (on the Q4_K_M file it would also quantise the activations) */
		struct diag d;
		diag_init(&d);
		char *bdir = path_join(out, "base_f32");
		char *bp = path_join(bdir, "model.gguf");
		if (dir_make_all(bdir, &d) || merged_write_gguf(bp, mf, &d))
			fail_msg("%s", d.text);
		free(bp);
		free(bdir);
		model_set_training(m, false);
		struct model *f = make(mf, METHOD_LORA, 1, g_T, true);
		for (size_t i = 0; i < model_n_trainable(m); i++)
			memcpy(model_trainable(f, i)->data, model_trainable(m, i)->data,
			       model_trainable(m, i)->numel * sizeof(float));
		model_set_training(f, false);
		assert_int_equal(model_forward(f, g_tok, NULL, 1, g_T, NULL, NULL), 0);
		write_ours(out, model_logits(f), (size_t)g_T * (size_t)mf->hp.n_vocab);
		model_free(f);
	}
	json_t *ec = load_fix("export_check.json");
	bool have_real = json_object_get(ec, "real") != NULL;
	json_decref(ec);
	if (have_real) { /* the one-off check of the real model's exports, when recorded */
		check_record("export_check.json", "real", "peft_logits_max_abs_diff");
		check_record("export_check.json", "real", "merged_safetensors_logits_max_abs_diff");
		check_record("llamacpp_check.json", "real", "merged_gguf_logits_max_abs_diff");
		check_record("llamacpp_check.json", "real",
			     "base_plus_adapter_gguf_logits_max_abs_diff");
	}
	model_free(m);
	json_decref(ref);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tiny_logits),
		cmocka_unit_test(test_tiny_lora),
		cmocka_unit_test(test_real_logits_and_greedy),
		cmocka_unit_test(test_real_lora),
	};
	return cmocka_run_group_tests(tests, real_setup, real_teardown);
}
