/* LoRA training against transformers + peft (fixture: tests/reference/make_train_fixture.py
 * peft-tiny). The tiny llama of tests/unit/tiny_weights.c (seed 7, rotate-half RoPE) is
 * exported to tests/reference/fixtures/train_tiny/ together with our initial LoRA A (B = 0),
 * so peft starts from identical weights. Checked: loss and LoRA gradients of one
 * forward/backward, the loss trace of five AdamW steps (clipping, weight decay), and
 * (in the script) that peft loading our exported adapter reproduces our logits.
 * FTLAB_WRITE_FIXTURE=1 rewrites the inputs the script reads (then run the script).
 * DoRA the same way (make_train_fixture.py peft-tiny-dora, fixtures/train_tiny_dora/):
 * loss, gradients of A, B and the magnitude, the trace, peft loading our adapter, and the
 * merged model (ours and, in the script, transformers') reproducing the adapter's logits.
 * IA3 likewise with PEFT's default llama targets (peft-tiny-ia3, fixtures/train_tiny_ia3/). */
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

#include "backends/native/model/model.h"
#include "backends/native/peft/adapter.h"
#include "backends/native/peft/merge.h"
#include "backends/native/train/trainer.h"
#include "common/util.h"
#include "tests/unit/tiny_weights.h"
#include "common/banned.h"

#define B 2
#define SEQ 8
#define STEPS 5

static int32_t tokens[B * SEQ], targets[B * SEQ];

static void make_batch(void)
{
	for (int i = 0; i < B * SEQ; i++)
		tokens[i] = (int32_t)((i * 7 + 3) % 37);
	for (int b = 0; b < B; b++)
		for (int t = 0; t < SEQ; t++) {
			int i = b * SEQ + t;
			/* next token; the first 2 (row 0) / 4 (row 1) positions are masked */
			targets[i] = t + 1 < SEQ ? tokens[i + 1] : (int32_t)((t * 5) % 37);
			if (t < 2 + 2 * b)
				targets[i] = -1;
		}
}

static int same_batch(void *ud, int32_t *tok, int32_t *tgt, int max_rows, int *rows,
		      int *out_T, struct diag *d)
{
	(void)ud;
	(void)d;
	assert_int_equal(max_rows, B);
	memcpy(tok, tokens, sizeof(tokens));
	memcpy(tgt, targets, sizeof(targets));
	*rows = B;
	*out_T = SEQ;
	return 0;
}

static double losses[STEPS + 1];

static int rec_metric(void *ud, const char *split, const char *name, int64_t step, double v)
{
	(void)ud;
	if (strcmp(split, "train") == 0 && strcmp(name, "loss") == 0 && step >= 1 && step <= STEPS)
		losses[step] = v;
	return 0;
}

static struct model *make_model_method(struct model_file *mf, enum method_type method)
{
	static const char *const targets_[] = {"q_proj", "v_proj"};
	struct model_opts o = {.method = method, .lora_rank = 4, .lora_alpha = 8,
			       .prefix_tokens = 3, .targets = targets_, .n_targets = 2,
			       .layers_first = -1, .layers_last = -1, .max_batch = B,
			       .max_seq = SEQ, .seed = 11, .full_logits = true};
	struct model *m = NULL;
	struct diag d;
	diag_init(&d);
	if (model_create(&m, mf, &o, &d) != 0)
		fail_msg("model_create: %s", d.text);
	return m;
}

static struct model *make_model_from(struct model_file *mf)
{
	return make_model_method(mf, METHOD_LORA);
}

static struct model *make_model(struct model_file **mf_out)
{
	*mf_out = tiny_llama_mf(true, false, ROPE_HALF, 7);
	return make_model_from(*mf_out);
}

static void lora_tensors(struct model *m, struct lora_tensor *lt, size_t *n)
{
	*n = model_n_trainable(m);
	for (size_t i = 0; i < *n; i++) {
		const struct model_param *p = model_trainable(m, i);
		lt[i] = (struct lora_tensor){(char *)p->name, p->data, p->shape[0], p->shape[1]};
	}
}

static const char *fixture_dir = "tests/reference/fixtures/train_tiny";

/* FTLAB_WRITE_FIXTURE=1 rewrites every fixture input, =lora or =dora only that one. */
static bool want_write(const char *what)
{
	const char *e = getenv("FTLAB_WRITE_FIXTURE");
	return e && (strcmp(e, "1") == 0 || strcmp(e, what) == 0);
}

static char *fixture_path(const char *rel)
{
	const char *root = getenv("FTLAB_ROOT");
	char *base = path_join(root ? root : ".", fixture_dir);
	char *p = path_join(base, rel);
	free(base);
	return p;
}

static void write_adapter_il(struct model *m, const char *rel, bool interleaved)
{
	struct lora_tensor lt[64];
	size_t n;
	lora_tensors(m, lt, &n);
	char *tg[] = {"q_proj", "v_proj"};
	struct lora_info info = {.rank = 4, .alpha = 8, .targets = tg, .n_targets = 2,
				 .interleaved = interleaved, .n_head = 4, .n_head_kv = 2,
				 .head_dim = 4};
	char *dir = fixture_path(rel);
	struct diag d;
	diag_init(&d);
	if (adapter_write_peft(dir, lt, n, &info, &d))
		fail_msg("%s", d.text);
	free(dir);
}

static void write_adapter(struct model *m, const char *rel)
{
	write_adapter_il(m, rel, false);
}

static json_t *farr(const float *p, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, json_real(p[i]));
	return a;
}

static json_t *iarr(const int32_t *p, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, json_integer(p[i]));
	return a;
}

/* Five AdamW steps on the same batch (constant lr, clipping, weight decay). */
static void train5(struct model *m)
{
	struct config_train c = {.steps = STEPS, .batch_size = B, .grad_accum = 1,
				 .max_grad_norm = 1.0, .nonfinite = NONFINITE_ABORT};
	c.optimizer.lr = 1e-2;
	c.optimizer.beta1 = 0.9;
	c.optimizer.beta2 = 0.999;
	c.optimizer.eps = 1e-8;
	c.optimizer.weight_decay = 0.01;
	c.schedule.type = SCHEDULE_CONSTANT;
	struct run_sink sink = {.metric = rec_metric};
	struct batch_source src = {.T = SEQ, .next = same_batch};
	struct trainer_opts o = {.train = &c, .total_steps = STEPS, .sink = &sink};
	struct trainer_result res;
	struct diag d;
	diag_init(&d);
	if (trainer_run(&res, m, &src, NULL, &o, &d) != 0)
		fail_msg("%s", d.text);
}

/* Ours against PEFT's fixture ref (fp32 in both, different summation orders): the first
 * loss within 1e-5 relative, every trainable tensor's gradient within 1e-4 of its largest
 * component, and the loss trace of STEPS steps (losses[1..]) within 1e-4 relative. */
static void check_against_peft(const json_t *ref, double loss0, const json_t *grads,
			       const struct model *m)
{
	double rl = json_number_value(json_object_get((json_t *)ref, "loss0"));
	assert_float_equal(loss0, rl, 1e-5 * fabs(rl));
	json_t *rg = json_object_get((json_t *)ref, "grads");
	const char *name;
	json_t *arr;
	size_t n_checked = 0;
	json_object_foreach(rg, name, arr) {
		json_t *mine = json_object_get((json_t *)grads, name);
		if (!mine)
			fail_msg("reference has %s, we do not", name);
		double gmax = 1e-12;
		for (size_t i = 0; i < json_array_size(arr); i++)
			gmax = fmax(gmax, fabs(json_number_value(json_array_get(arr, i))));
		assert_int_equal(json_array_size(arr), json_array_size(mine));
		for (size_t i = 0; i < json_array_size(arr); i++) {
			double a = json_number_value(json_array_get(mine, i));
			double b = json_number_value(json_array_get(arr, i));
			if (fabs(a - b) > 1e-4 * gmax + 1e-9)
				fail_msg("%s[%zu]: ours %g, peft %g (max |g| %g)", name, i, a, b, gmax);
		}
		n_checked++;
	}
	assert_int_equal(n_checked, model_n_trainable(m));
	json_t *rt = json_object_get((json_t *)ref, "trace");
	for (int i = 0; i < STEPS; i++) {
		double want = json_number_value(json_array_get(rt, (size_t)i));
		if (fabs(losses[i + 1] - want) > 1e-4 * fabs(want))
			fail_msg("step %d: loss %.8g, peft %.8g", i + 1, losses[i + 1], want);
	}
}

static void test_lora_matches_peft(void **state)
{
	(void)state;
	make_batch();
	fixture_dir = "tests/reference/fixtures/train_tiny";
	bool write = want_write("lora");
	struct model_file *mf;
	struct model *m = make_model(&mf);
	struct diag d;
	diag_init(&d);
	if (write) {
		char *dir = fixture_path("model");
		if (merged_write_hf(dir, mf, &d))
			fail_msg("%s", d.text);
		free(dir);
		write_adapter(m, "adapter_init");
	}
	/* One forward/backward: loss and gradients. */
	float loss0;
	long nt;
	assert_int_equal(model_forward(m, tokens, targets, B, SEQ, &loss0, &nt), 0);
	assert_int_equal(model_backward(m, 0.0f), 0);
	json_t *ours = json_object();
	json_t *grads = json_object();
	for (size_t i = 0; i < model_n_trainable(m); i++) {
		const struct model_param *p = model_trainable(m, i);
		json_object_set_new(grads, p->name, farr(p->grad, p->numel));
	}
	json_object_set_new(ours, "loss0", json_real(loss0));
	json_object_set_new(ours, "grads", grads);
	model_zero_grad(m);

	train5(m);
	json_object_set_new(ours, "trace", json_pack("[fffff]", losses[1], losses[2], losses[3],
						     losses[4], losses[5]));
	/* Logits after training, for the export check in the script. */
	model_set_training(m, false);
	assert_int_equal(model_forward(m, tokens, NULL, B, SEQ, NULL, NULL), 0);
	json_object_set_new(ours, "logits_after", farr(model_logits(m), (size_t)B * SEQ * 37));

	if (write) {
		write_adapter(m, "adapter_final");
		json_object_set_new(ours, "tokens", iarr(tokens, B * SEQ));
		json_object_set_new(ours, "targets", iarr(targets, B * SEQ));
		json_object_set_new(ours, "B", json_integer(B));
		json_object_set_new(ours, "T", json_integer(SEQ));
		char *p = fixture_path("ours.json");
		assert_int_equal(json_dump_file(ours, p, JSON_INDENT(1) | JSON_REAL_PRECISION(9)), 0);
		free(p);
	}
	/* Compare with the reference. */
	char *rp = fixture_path("reference.json");
	json_error_t err;
	json_t *ref = json_load_file(rp, 0, &err);
	if (!ref)
		fail_msg("%s: %s (run tests/reference/make_train_fixture.py peft-tiny)", rp, err.text);
	check_against_peft(ref, loss0, grads, m);
	/* The script loaded our exported adapter into peft and compared logits. */
	json_t *ld = json_object_get(ref, "export_logits_max_abs_diff");
	assert_true(json_is_number(ld) && json_number_value(ld) < 1e-4);
	json_decref(ref);
	json_decref(ours);
	free(rp);
	model_free(m);
	model_file_free(mf);
}


/* The same training on the tiny model written as GGUF (llama.cpp interleaved q/k rows)
 * and loaded back: the loss trace agrees, and the adapter exported for PEFT (lora_B of
 * q/k un-permuted) equals the one trained on the Hugging Face layout; peft loading it on
 * the HF model reproduces our logits (adapter_final_gguf in the script). */
static void gguf_roundtrip(enum method_type method)
{
	make_batch();
	fixture_dir = "tests/reference/fixtures/train_tiny";
	bool lora = method == METHOD_LORA;
	bool write = lora && want_write("lora");
	struct model_file *hf = tiny_llama_mf(true, false, ROPE_HALF, 7);
	char tmpl[] = "/tmp/ftlab-ggufrt-XXXXXX";
	char *dir = ft_strdup(mkdtemp(tmpl));
	char *gp = path_join(dir, "tiny.gguf");
	struct diag d;
	diag_init(&d);
	if (merged_write_gguf(gp, hf, &d))
		fail_msg("%s", d.text);
	struct model_file *gg = NULL;
	if (model_file_load(&gg, gp, &d))
		fail_msg("%s", d.text);
	assert_int_equal(gg->hp.rope_style, ROPE_INTERLEAVED);

	struct model *mh = make_model_method(hf, method), *mg = make_model_method(gg, method);
	if (method == METHOD_PREFIX) {
		/* the same initial prefix: the GGUF model's keys in its interleaved order */
		const struct model_param *ph = model_trainable(mh, 0), *pg = model_trainable(mg, 0);
		memcpy(pg->data, ph->data, ph->numel * sizeof(float));
		for (int64_t r = 0; r < ph->shape[0]; r++)
			for (int64_t k = 0; k < ph->shape[1]; k += 16) {
				size_t off = (size_t)(r * ph->shape[1] + k);
				rope_rows_permute(pg->data + off, ph->data + off, 2, 4, 1, true);
			}
	}
	train5(mh);
	double th[STEPS + 1];
	memcpy(th, losses, sizeof(th));
	train5(mg);
	for (int i = 1; i <= STEPS; i++)
		assert_float_equal(losses[i], th[i], 1e-5 * th[i]);
	/* Export from the GGUF run; read back in HF order; compare with the HF run. */
	char *ad = path_join(dir, "adapter");
	struct lora_tensor lt[64];
	size_t n;
	lora_tensors(mg, lt, &n);
	char *tg[] = {"q_proj", "v_proj"};
	struct lora_info info = {.rank = 4, .alpha = 8, .targets = tg, .n_targets = 2,
				 .use_dora = method == METHOD_DORA, .ia3 = method == METHOD_IA3,
				 .prefix = method == METHOD_PREFIX, .num_virtual_tokens = 3,
				 .num_layers = 2, .interleaved = true, .n_head = 4,
				 .n_head_kv = 2, .head_dim = 4};
	if (adapter_write_peft(ad, lt, n, &info, &d))
		fail_msg("%s", d.text);
	struct lora_adapter *a = NULL;
	if (adapter_read_peft(&a, ad, false, 4, 2, 4, &d))
		fail_msg("%s", d.text);
	assert_int_equal(a->n, model_n_trainable(mh));
	for (size_t i = 0; i < a->n; i++) {
		const struct model_param *p = model_param_find(mh, a->t[i].name);
		assert_non_null(p);
		double mx = 1e-12;
		for (size_t k = 0; k < p->numel; k++)
			mx = fmax(mx, fabs(p->data[k]));
		for (size_t k = 0; k < p->numel; k++)
			if (fabs(p->data[k] - a->t[i].data[k]) > 1e-4 * mx)
				fail_msg("%s[%zu]: HF run %g, GGUF run exported %g", a->t[i].name, k,
					 p->data[k], a->t[i].data[k]);
	}
	adapter_free(a);
	if (write)
		write_adapter_il(mg, "adapter_final_gguf", true);
	if (lora) {
		char *rp = fixture_path("reference.json");
		json_error_t err;
		json_t *ref = json_load_file(rp, 0, &err);
		if (!ref)
			fail_msg("%s: %s", rp, err.text);
		json_t *gd = json_object_get(ref, "export_gguf_logits_max_abs_diff");
		assert_true(json_is_number(gd) && json_number_value(gd) < 1e-4);
		json_decref(ref);
		free(rp);
	}
	model_free(mh);
	model_free(mg);
	model_file_free(hf);
	model_file_free(gg);
	free(ad);
	free(gp);
	assert_int_equal(dir_remove_all(dir), 0);
	free(dir);
}

/* The model's trainables as adapter tensors, copied (the caller frees with adapter_free). */
static struct lora_adapter *adapter_of(struct model *m, const struct lora_info *info)
{
	struct lora_adapter *a = calloc(1, sizeof(*a));
	assert_non_null(a);
	a->info = *info;
	a->info.targets = NULL;
	a->info.n_targets = 0;
	a->n = model_n_trainable(m);
	a->t = calloc(a->n, sizeof(*a->t));
	assert_non_null(a->t);
	for (size_t i = 0; i < a->n; i++) {
		const struct model_param *p = model_trainable(m, i);
		a->t[i].name = ft_strdup(p->name);
		a->t[i].data = malloc(p->numel * sizeof(float));
		assert_non_null(a->t[i].data);
		memcpy(a->t[i].data, p->data, p->numel * sizeof(float));
		a->t[i].rows = p->shape[0];
		a->t[i].cols = p->shape[1];
	}
	return a;
}

/* The adapter tensors PEFT saves: the trainables, or with prefix_projection the computed
 * prompt_embeddings alone. */
static void saved_tensors(struct model *m, struct lora_tensor *lt, size_t *n, bool proj)
{
	if (!proj) {
		lora_tensors(m, lt, n);
		return;
	}
	model_prefix_update(m);
	const struct model_param *p = model_param_find(m, "prompt_embeddings");
	assert_non_null(p);
	lt[0] = (struct lora_tensor){(char *)p->name, p->data, p->shape[0], p->shape[1]};
	*n = 1;
}

/* DoRA (q, v, down), IA3 (PEFT's default targets for llama) or prefix tuning (proj: with
 * PEFT's prefix_projection MLP, encoder_hidden_size 6) against peft. */
static void method_matches_peft(enum method_type method, bool proj)
{
	bool ia3 = method == METHOD_IA3, prefix = method == METHOD_PREFIX;
	const char *what = proj ? "prefix_proj" : prefix ? "prefix" : ia3 ? "ia3" : "dora";
	char fdir[96];
	snprintf(fdir, sizeof fdir, "tests/reference/fixtures/train_tiny_%s", what);
	fixture_dir = fdir;
	make_batch();
	bool write = want_write(what);
	struct model_file *mf = tiny_llama_mf(true, false, ROPE_HALF, 7);
	static const char *const tg[] = {"q_proj", "v_proj", "down_proj"};
	struct model_opts o = {.method = method, .lora_rank = 4, .lora_alpha = 8,
			       .targets = ia3 ? NULL : tg, .n_targets = ia3 ? 0 : 3,
			       .ff_auto = true, .prefix_tokens = 3, .prefix_projection = proj,
			       .prefix_hidden = proj ? 6 : 0, .layers_first = -1,
			       .layers_last = -1, .max_batch = B, .max_seq = SEQ, .seed = 11,
			       .full_logits = true};
	struct model *m = NULL;
	struct diag d;
	diag_init(&d);
	if (model_create(&m, mf, &o, &d) != 0)
		fail_msg("model_create: %s", d.text);
	char *tgs[] = {"q_proj", "v_proj", "down_proj"};
	struct lora_info info = {.rank = 4, .alpha = 8, .use_dora = method == METHOD_DORA,
				 .ia3 = ia3, .prefix = prefix, .num_virtual_tokens = 3,
				 .num_layers = 2, .prefix_projection = proj,
				 .encoder_hidden_size = proj ? 6 : 0, .targets = tgs, .n_targets = 3,
				 .n_head = 4, .n_head_kv = 2, .head_dim = 4};
	/* prefix_projection: the MLP's initial parameters, for the script to start from */
	json_t *init = json_object();
	for (size_t i = 0; proj && i < model_n_trainable(m); i++) {
		const struct model_param *p = model_trainable(m, i);
		json_object_set_new(init, p->name, farr(p->data, p->numel));
	}
	struct lora_tensor lt[64];
	size_t n;
	if (write) {
		char *dir = fixture_path("model");
		if (merged_write_hf(dir, mf, &d))
			fail_msg("%s", d.text);
		free(dir);
		saved_tensors(m, lt, &n, proj);
		dir = fixture_path("adapter_init");
		if (adapter_write_peft(dir, lt, n, &info, &d))
			fail_msg("%s", d.text);
		free(dir);
	}
	float loss0;
	long nt;
	assert_int_equal(model_forward(m, tokens, targets, B, SEQ, &loss0, &nt), 0);
	assert_int_equal(model_backward(m, 0.0f), 0);
	json_t *ours = json_object(), *grads = json_object();
	for (size_t i = 0; i < model_n_trainable(m); i++) {
		const struct model_param *p = model_trainable(m, i);
		json_object_set_new(grads, p->name, farr(p->grad, p->numel));
	}
	json_object_set_new(ours, "loss0", json_real(loss0));
	json_object_set_new(ours, "grads", grads);
	if (proj)
		json_object_set_new(ours, "init", init);
	else
		json_decref(init);
	model_zero_grad(m);
	train5(m);
	json_object_set_new(ours, "trace", json_pack("[fffff]", losses[1], losses[2], losses[3],
						     losses[4], losses[5]));
	model_set_training(m, false);
	assert_int_equal(model_forward(m, tokens, NULL, B, SEQ, NULL, NULL), 0);
	size_t nl = (size_t)B * SEQ * 37;
	float *after = malloc(nl * sizeof(float));
	assert_non_null(after);
	memcpy(after, model_logits(m), nl * sizeof(float));
	json_object_set_new(ours, "logits_after", farr(after, nl));

	/* Merged: W' = mag / ||W + s B A|| (W + s B A); the base model on it reproduces the
	 * adapter's logits. */
	struct lora_adapter *ad = adapter_of(m, &info);
	if (prefix) {
		/* a prefix does not merge */
		assert_int_equal(merge_lora(mf, ad, &d), FT_EINVAL);
		adapter_free(ad);
	} else {
		if (merge_lora(mf, ad, &d))
			fail_msg("%s", d.text);
		adapter_free(ad);
		struct model_opts on = {.method = METHOD_NONE, .layers_first = -1,
					.layers_last = -1, .max_batch = B, .max_seq = SEQ,
					.full_logits = true};
		struct model *merged = NULL;
		if (model_create(&merged, mf, &on, &d))
			fail_msg("%s", d.text);
		assert_int_equal(model_forward(merged, tokens, NULL, B, SEQ, NULL, NULL), 0);
		double worst = 0;
		for (size_t i = 0; i < nl; i++)
			worst = fmax(worst, fabs(model_logits(merged)[i] - after[i]));
		if (worst > 1e-4)
			fail_msg("merged logits differ from the adapter's by %g", worst);
		model_free(merged);
	}

	if (write) {
		saved_tensors(m, lt, &n, proj);
		char *dir = fixture_path("adapter_final");
		if (adapter_write_peft(dir, lt, n, &info, &d))
			fail_msg("%s", d.text);
		free(dir);
		if (!prefix) {
			dir = fixture_path("merged");
			if (merged_write_hf(dir, mf, &d))
				fail_msg("%s", d.text);
			free(dir);
		}
		json_object_set_new(ours, "tokens", iarr(tokens, B * SEQ));
		json_object_set_new(ours, "targets", iarr(targets, B * SEQ));
		json_object_set_new(ours, "B", json_integer(B));
		json_object_set_new(ours, "T", json_integer(SEQ));
		char *p = fixture_path("ours.json");
		assert_int_equal(json_dump_file(ours, p, JSON_INDENT(1) | JSON_REAL_PRECISION(9)), 0);
		free(p);
	}
	char *rp = fixture_path("reference.json");
	json_error_t err;
	json_t *ref = json_load_file(rp, 0, &err);
	if (!ref)
		fail_msg("%s: %s (run tests/reference/make_train_fixture.py peft-tiny-%s)", rp,
			 err.text, proj ? "prefix-proj" : what);
	check_against_peft(ref, loss0, grads, m);
	json_t *ld = json_object_get(ref, "export_logits_max_abs_diff");
	json_t *md = json_object_get(ref, "merged_logits_max_abs_diff");
	assert_true(json_is_number(ld) && json_number_value(ld) < 1e-4);
	assert_true(prefix || (json_is_number(md) && json_number_value(md) < 1e-4));
	json_decref(ref);
	json_decref(ours);
	free(rp);
	free(after);
	model_free(m);
	model_file_free(mf);
	fixture_dir = "tests/reference/fixtures/train_tiny";
}

static void test_dora_matches_peft(void **state)
{
	(void)state;
	method_matches_peft(METHOD_DORA, false);
}

static void test_ia3_matches_peft(void **state)
{
	(void)state;
	method_matches_peft(METHOD_IA3, false);
}

static void test_prefix_matches_peft(void **state)
{
	(void)state;
	method_matches_peft(METHOD_PREFIX, false);
}

/* prefix_projection (make_train_fixture.py peft-tiny-prefix-proj,
 * fixtures/train_tiny_prefix_proj/): PEFT's PrefixEncoder MLP (embedding, Linear(8, 6),
 * tanh, Linear(6, 32)) from our initial parameters: loss, the gradients of the MLP's five
 * tensors, the trace (weight decay on the matrices only, as our trainer), and PEFT loading
 * our exported adapter (the computed table, inference mode) reproducing our logits. */
static void test_prefix_projection_matches_peft(void **state)
{
	(void)state;
	method_matches_peft(METHOD_PREFIX, true);
}

static void test_gguf_base_roundtrip(void **state)
{
	(void)state;
	gguf_roundtrip(METHOD_LORA);
}

/* DoRA on the GGUF base: q_proj's magnitude rows are un-permuted like its lora_B. */
static void test_gguf_base_roundtrip_dora(void **state)
{
	(void)state;
	gguf_roundtrip(METHOD_DORA);
}

/* IA3 on the GGUF base: q_proj's output vector is un-permuted like lora_B. */
static void test_gguf_base_roundtrip_ia3(void **state)
{
	(void)state;
	gguf_roundtrip(METHOD_IA3);
}

/* Prefix tuning on the GGUF base: the key halves of prompt_embeddings are un-permuted per
 * head (the values are not). */
static void test_gguf_base_roundtrip_prefix(void **state)
{
	(void)state;
	gguf_roundtrip(METHOD_PREFIX);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lora_matches_peft),
		cmocka_unit_test(test_dora_matches_peft),
		cmocka_unit_test(test_ia3_matches_peft),
		cmocka_unit_test(test_prefix_matches_peft),
		cmocka_unit_test(test_prefix_projection_matches_peft),
		cmocka_unit_test(test_gguf_base_roundtrip),
		cmocka_unit_test(test_gguf_base_roundtrip_dora),
		cmocka_unit_test(test_gguf_base_roundtrip_ia3),
		cmocka_unit_test(test_gguf_base_roundtrip_prefix),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
