/* Bottleneck adapters (method adapter): whole-model finite-difference gradient checks on
 * tiny random llama, Gemma 3 and GPT-2 models in both placements (Pfeiffer, Houlsby), at
 * both positions, every non-linearity; gradient checkpointing gives the same gradient
 * bits; bf16 close to fp32; the forward against AdapterHub's `adapters` library on the
 * tiny HF llama (fixtures of tests/reference/make_adapter_fixture.py read with
 * bottleneck_read); the AdapterHub directory written and read back, unsupported configs
 * refused; a trained export whose logits the `adapters` library reproduces
 * (tests/reference/check_adapter_export.py); `ftlab export` of an adapter run. */
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
#include <sys/wait.h>
#include <unistd.h>

#include "backends/native/engine.h"
#include "backends/native/io/model_file.h"
#include "backends/native/model/model.h"
#include "backends/native/ops/ops.h"
#include "backends/native/peft/bottleneck.h"
#include "backends/native/train/trainer.h"
#include "common/rng.h"
#include "common/util.h"
#include "tests/unit/tiny_weights.h"
#include "common/banned.h"

#define BB 2
#define TT 6

static struct model_opts bn_opts(bool pfeiffer, bool attn, bool mlp, int act, double rf)
{
	struct model_opts o = {0};
	o.method = METHOD_ADAPTER;
	o.layers_first = o.layers_last = -1;
	o.max_batch = BB;
	o.max_seq = TT;
	o.seed = 42;
	o.bn_pfeiffer = pfeiffer;
	o.bn_attn = attn;
	o.bn_mlp = mlp;
	o.bn_act = act;
	o.bn_reduction = rf;
	return o;
}

static void batch(int32_t *tok, int32_t *tgt, int V, uint64_t seed)
{
	struct rng r;
	rng_seed(&r, seed, 3);
	for (int i = 0; i < BB * TT; i++) {
		tok[i] = (int32_t)rng_below(&r, (uint64_t)V);
		tgt[i] = (int32_t)rng_below(&r, (uint64_t)V);
	}
	tgt[0] = -1;
}

static float loss_at(struct model *m, const int32_t *tok, const int32_t *tgt)
{
	float loss = 0;
	assert_int_equal(model_forward(m, tok, tgt, BB, TT, &loss, NULL), 0);
	return loss;
}

/* Adapter weights and biases of a size that moves the loss (the init is N(0, 0.02^2)
 * weights and zero biases). */
static void randomize(struct model *m, uint64_t seed, float scale)
{
	for (size_t i = 0; i < model_n_trainable(m); i++) {
		const struct model_param *p = model_trainable(m, i);
		struct rng r;
		rng_seed(&r, seed + i, 9);
		for (size_t j = 0; j < p->numel; j++)
			p->data[j] = scale * (2.0f * rng_uniform_f(&r) - 1.0f);
	}
}

static struct model *make(struct model_file *mf, const struct model_opts *o)
{
	struct diag d;
	diag_init(&d);
	struct model *m = NULL;
	if (model_create(&m, mf, o, &d))
		fail_msg("model_create: %s", d.text);
	return m;
}

/* Central differences on every element of the first layer's adapter parameters (their
 * gradient flows through the second layer's adapters) and a few of the others. */
static void gradcheck(struct model *m, int V, uint64_t seed)
{
	int32_t tok[BB * TT], tgt[BB * TT];
	batch(tok, tgt, V, seed);
	randomize(m, seed, 0.4f);
	model_zero_grad(m);
	float l0 = loss_at(m, tok, tgt);
	assert_true(isfinite(l0) && l0 > 0);
	assert_int_equal(model_backward(m, 0.0f), 0);
	size_t checked = 0;
	for (size_t i = 0; i < model_n_trainable(m); i++) {
		const struct model_param *p = model_trainable(m, i);
		bool all = strncmp(p->name, "model.layers.0.", 15) == 0 && p->numel <= 64;
		struct rng r;
		rng_seed(&r, seed + i, 11);
		for (size_t s = 0; s < (all ? p->numel : 4); s++) {
			size_t j = all ? s : (size_t)rng_below(&r, p->numel);
			float keep = p->data[j], eps = 3e-3f;
			p->data[j] = keep + eps;
			float lp = loss_at(m, tok, tgt);
			p->data[j] = keep - eps;
			float lm = loss_at(m, tok, tgt);
			p->data[j] = keep;
			double fd = ((double)lp - (double)lm) / (2.0 * eps);
			double an = p->grad[j];
			if (fabs(fd - an) > 2e-3 + 0.02 * fabs(an))
				fail_msg("%s[%zu]: analytic %.6g, finite difference %.6g", p->name, j,
					 an, fd);
			checked++;
		}
	}
	assert_true(checked > 16);
}

static void test_llama_fd(void **state)
{
	(void)state;
	struct model_file *mf = tiny_llama_mf(false, true, ROPE_HALF, 4);
	/* Houlsby at both positions, Pfeiffer after the MLP only and at both, every
	 * non-linearity (relu's kink is not crossed: central differences of 1e-2 at
	 * pre-activations away from 0 for these seeds; eps 3e-3) */
	struct {
		bool pf, attn, mlp;
		int act;
		double rf;
	} cs[] = {{false, true, true, OPS_ACT_SILU, 4},     {true, false, true, OPS_ACT_GELU, 2},
		  {true, true, true, OPS_ACT_TANH, 8},       {false, true, false, OPS_ACT_GELU_TANH, 3},
		  {true, true, true, OPS_ACT_RELU, 4}};
	for (size_t c = 0; c < FT_ARRAY_LEN(cs); c++) {
		struct model_opts o = bn_opts(cs[c].pf, cs[c].attn, cs[c].mlp, cs[c].act, cs[c].rf);
		struct model *m = make(mf, &o);
		size_t per = (size_t)(cs[c].attn + cs[c].mlp) * 4;
		assert_int_equal(model_n_trainable(m), 2 * per);
		const struct model_param *dw = model_trainable(m, 0);
		/* C = 16: floor(16 / rf) rows */
		assert_int_equal(dw->shape[0], (int64_t)floor(16.0 / cs[c].rf));
		gradcheck(m, 37, 20 + c);
		model_free(m);
	}
	model_file_free(mf);
}

static void test_positions(void **state)
{
	(void)state;
	struct model_file *mf = tiny_llama_mf(false, false, ROPE_HALF, 4);
	struct model_opts o = bn_opts(false, true, false, OPS_ACT_RELU, 4);
	struct model *m = make(mf, &o);
	assert_non_null(model_param_find(m, "model.layers.1.attention_adapters.adapter_up.bias"));
	assert_null(model_param_find(m, "model.layers.1.output_adapters.adapter_up.bias"));
	model_free(m);
	o = bn_opts(true, false, true, OPS_ACT_RELU, 4);
	m = make(mf, &o);
	assert_null(model_param_find(m, "model.layers.1.attention_adapters.adapter_up.bias"));
	const struct model_param *w =
		model_param_find(m, "model.layers.0.output_adapters.adapter_down.weight");
	assert_non_null(w);
	/* AdapterHub's "bert" init: N(0, 0.02^2) weights, zero biases */
	double ss = 0;
	for (size_t j = 0; j < w->numel; j++)
		ss += (double)w->data[j] * w->data[j];
	double sd = sqrt(ss / (double)w->numel);
	assert_true(sd > 0.01 && sd < 0.03);
	const struct model_param *b =
		model_param_find(m, "model.layers.0.output_adapters.adapter_down.bias");
	for (size_t j = 0; j < b->numel; j++)
		assert_true(b->data[j] == 0.0f);
	model_free(m);
	/* no position: refused */
	o = bn_opts(true, false, false, OPS_ACT_RELU, 4);
	struct diag d;
	diag_init(&d);
	assert_int_equal(model_create(&m, mf, &o, &d), FT_EINVAL);
	assert_non_null(strstr(d.text, "no adapter position"));
	model_file_free(mf);
}

static void test_gemma3_gpt2_fd(void **state)
{
	(void)state;
	struct model_file *mf = tiny_gemma3_mf(3, 0);
	struct model_opts o = bn_opts(false, true, true, OPS_ACT_GELU_TANH, 4);
	struct model *m = make(mf, &o);
	gradcheck(m, mf->hp.n_vocab, 31);
	model_free(m);
	o = bn_opts(true, true, true, OPS_ACT_SILU, 4);
	m = make(mf, &o);
	gradcheck(m, mf->hp.n_vocab, 32);
	model_free(m);
	model_file_free(mf);
	mf = tiny_gpt2_mf(5);
	o = bn_opts(true, true, true, OPS_ACT_GELU, 4);
	m = make(mf, &o);
	gradcheck(m, mf->hp.n_vocab, 33);
	model_free(m);
	o = bn_opts(false, true, true, OPS_ACT_TANH, 4);
	m = make(mf, &o);
	gradcheck(m, mf->hp.n_vocab, 34);
	model_free(m);
	model_file_free(mf);
}

/* Gradient checkpointing recomputes each layer's adapters from its input: the same
 * loss and gradient bits. */
static void test_checkpointing_same_bits(void **state)
{
	(void)state;
	struct model_file *mf = tiny_llama_mf(false, false, ROPE_HALF, 6);
	int32_t tok[BB * TT], tgt[BB * TT];
	batch(tok, tgt, 37, 3);
	float *g[2][16] = {{0}};
	float loss[2];
	size_t nt = 0;
	for (int ck = 0; ck < 2; ck++) {
		struct model_opts o = bn_opts(ck == 0, true, true, OPS_ACT_SILU, 4);
		o.bn_pfeiffer = false;
		o.grad_checkpointing = ck == 1;
		struct model *m = make(mf, &o);
		randomize(m, 5, 0.3f);
		model_zero_grad(m);
		loss[ck] = loss_at(m, tok, tgt);
		assert_int_equal(model_backward(m, 0.0f), 0);
		nt = model_n_trainable(m);
		assert_true(nt <= 16);
		for (size_t i = 0; i < nt; i++) {
			const struct model_param *p = model_trainable(m, i);
			g[ck][i] = malloc(p->numel * sizeof(float));
			memcpy(g[ck][i], p->grad, p->numel * sizeof(float));
			if (ck == 1)
				assert_memory_equal(g[0][i], g[1][i], p->numel * sizeof(float));
		}
		model_free(m);
	}
	assert_true(loss[0] == loss[1]);
	for (size_t i = 0; i < nt; i++) {
		free(g[0][i]);
		free(g[1][i]);
	}
	model_file_free(mf);
}

/* bf16 matmuls: loss and gradients within bf16's rounding of the fp32 ones. */
static void test_bf16_close(void **state)
{
	(void)state;
	struct model_file *mf = tiny_llama_mf(false, false, ROPE_HALF, 6);
	int32_t tok[BB * TT], tgt[BB * TT];
	batch(tok, tgt, 37, 4);
	float loss[2];
	double gn[2] = {0}, dot = 0;
	float *g0 = NULL;
	for (int bf = 0; bf < 2; bf++) {
		struct model_opts o = bn_opts(true, true, true, OPS_ACT_GELU, 4);
		o.precision = bf ? PRECISION_BF16 : PRECISION_FP32;
		struct model *m = make(mf, &o);
		randomize(m, 6, 0.3f);
		model_zero_grad(m);
		loss[bf] = loss_at(m, tok, tgt);
		assert_int_equal(model_backward(m, 0.0f), 0);
		const struct model_param *p = model_trainable(m, 0);
		if (!bf) {
			g0 = malloc(p->numel * sizeof(float));
			memcpy(g0, p->grad, p->numel * sizeof(float));
		}
		for (size_t j = 0; j < p->numel; j++) {
			gn[bf] += (double)p->grad[j] * p->grad[j];
			if (bf)
				dot += (double)p->grad[j] * g0[j];
		}
		model_free(m);
	}
	assert_true(fabsf(loss[0] - loss[1]) < 0.02f * loss[0]);
	assert_true(gn[0] > 0 && dot / sqrt(gn[0] * gn[1]) > 0.99);
	free(g0);
	model_file_free(mf);
}

static char *root_path(const char *rel)
{
	const char *root = getenv("FTLAB_ROOT");
	struct strbuf b = {0};
	if (strbuf_printf(&b, "%s/%s", root ? root : ".", rel) != 0)
		fail_msg("out of memory");
	return strbuf_detach(&b);
}

/* Copies an adapter's tensors into the model's parameters of the same names. */
static void load_into(struct model *m, const struct bn_adapter *a)
{
	assert_int_equal(a->n, model_n_trainable(m));
	for (size_t i = 0; i < a->n; i++) {
		const struct model_param *p = model_param_find(m, a->t[i].name);
		if (!p)
			fail_msg("no parameter %s", a->t[i].name);
		assert_int_equal((size_t)(a->t[i].rows * a->t[i].cols), p->numel);
		assert_int_equal(a->t[i].rows, p->shape[0]);
		memcpy(p->data, a->t[i].data, p->numel * sizeof(float));
	}
}

/* The forward against AdapterHub: every case of the fixture, every position's logits,
 * max |ours - ref| / max |ref| <= 1e-5. */
static void test_reference_forward(void **state)
{
	(void)state;
	static const char *const cases[] = {"pfeiffer_relu", "houlsby_swish", "houlsby_gelu",
					    "pfeiffer_tanh_both"};
	char *mp = root_path("tests/reference/fixtures/tiny-llama");
	struct diag d;
	diag_init(&d);
	struct model_file *mf = NULL;
	if (model_file_load(&mf, mp, &d))
		fail_msg("%s: %s", mp, d.text);
	free(mp);
	for (size_t c = 0; c < FT_ARRAY_LEN(cases); c++) {
		char rel[160];
		snprintf(rel, sizeof rel, "tests/reference/fixtures/adapter_tiny/%s", cases[c]);
		char *dir = root_path(rel);
		struct bn_adapter *a = NULL;
		if (bottleneck_read(&a, dir, &d))
			fail_msg("%s", d.text);
		snprintf(rel, sizeof rel, "tests/reference/fixtures/adapter_tiny/%s/logits.json",
			 cases[c]);
		char *lp = root_path(rel);
		json_error_t err;
		json_t *j = json_load_file(lp, 0, &err);
		if (!j)
			fail_msg("%s: %s", lp, err.text);
		json_t *toks = json_object_get(j, "tokens"), *lg = json_object_get(j, "logits");
		int nb = (int)json_array_size(toks), nt = (int)json_array_size(json_array_get(toks, 0));
		assert_true(nb >= 1 && nt >= 2 && nb * nt <= 64);
		struct model_opts o = bn_opts(a->info.pfeiffer, a->info.attn, a->info.mlp,
					      a->info.act, a->info.reduction);
		o.method = METHOD_ADAPTER;
		o.max_batch = nb;
		o.max_seq = nt;
		o.full_logits = true;
		struct model *m = make(mf, &o);
		load_into(m, a);
		int32_t tok[64];
		for (int b = 0; b < nb; b++)
			for (int t = 0; t < nt; t++)
				tok[b * nt + t] = (int32_t)json_integer_value(
					json_array_get(json_array_get(toks, (size_t)b), (size_t)t));
		assert_int_equal(model_forward(m, tok, NULL, nb, nt, NULL, NULL), 0);
		const float *ours = model_logits(m);
		int V = model_hparams(m)->n_vocab;
		double err_max = 0, scale = 0;
		for (int b = 0; b < nb; b++)
			for (int t = 0; t < nt; t++) {
				json_t *row = json_array_get(json_array_get(lg, (size_t)b), (size_t)t);
				assert_int_equal(json_array_size(row), (size_t)V);
				for (int v = 0; v < V; v++) {
					double ref = json_number_value(json_array_get(row, (size_t)v));
					double e = fabs(ours[((size_t)b * nt + t) * V + v] - ref);
					err_max = e > err_max || isnan(e) ? e : err_max;
					scale = fabs(ref) > scale ? fabs(ref) : scale;
				}
			}
		print_message("%-20s max |ours - adapters| / max |ref| = %.2e\n", cases[c],
			      err_max / scale);
		assert_true(scale > 0 && err_max / scale <= 1e-5);
		/* the adapter moves the logits: without it they differ */
		model_set_adapter_enabled(m, false);
		assert_int_equal(model_forward(m, tok, NULL, nb, nt, NULL, NULL), 0);
		double moved = 0;
		for (int v = 0; v < V; v++) {
			double ref = json_number_value(
				json_array_get(json_array_get(json_array_get(lg, 0), 0), (size_t)v));
			moved = fmax(moved, fabs(model_logits(m)[v] - ref));
		}
		assert_true(moved > 0.05);
		model_free(m);
		json_decref(j);
		free(lp);
		bottleneck_free(a);
		free(dir);
	}
	model_file_free(mf);
}

/* Written, read back: the same tensors, bits and settings. */
static void test_write_read(void **state)
{
	(void)state;
	struct model_file *mf = tiny_llama_mf(false, false, ROPE_HALF, 6);
	struct model_opts o = bn_opts(false, true, true, OPS_ACT_GELU_TANH, 5);
	struct model *m = make(mf, &o);
	randomize(m, 8, 0.3f);
	size_t n = model_n_trainable(m);
	struct lora_tensor *t = calloc(n, sizeof *t);
	for (size_t i = 0; i < n; i++) {
		const struct model_param *p = model_trainable(m, i);
		t[i] = (struct lora_tensor){.name = (char *)p->name, .data = p->data,
					    .rows = p->shape[0], .cols = p->shape[1]};
	}
	char tmpl[] = "/tmp/ftlab-bn-XXXXXX";
	assert_non_null(mkdtemp(tmpl));
	struct bn_info info = {.attn = true, .mlp = true, .pfeiffer = false, .reduction = 5,
			       .act = OPS_ACT_GELU_TANH, .hidden_size = 16, .model_type = "llama"};
	struct diag d;
	diag_init(&d);
	if (bottleneck_write(tmpl, t, n, &info, &d))
		fail_msg("%s", d.text);
	struct bn_adapter *a = NULL;
	if (bottleneck_read(&a, tmpl, &d))
		fail_msg("%s", d.text);
	assert_int_equal(a->n, n);
	assert_true(a->info.attn && a->info.mlp && !a->info.pfeiffer);
	assert_int_equal(a->info.act, OPS_ACT_GELU_TANH);
	assert_true(a->info.reduction == 5.0);
	assert_int_equal(a->info.hidden_size, 16);
	for (size_t i = 0; i < n; i++) {
		const struct model_param *p = model_param_find(m, a->t[i].name);
		assert_non_null(p);
		assert_memory_equal(p->data, a->t[i].data, p->numel * sizeof(float));
	}
	bottleneck_free(a);
	/* configurations ftlab does not build */
	char *cfp = path_join(tmpl, "adapter_config.json");
	static const char *const bad[] = {
		"{\"config\": {\"mh_adapter\": true, \"output_adapter\": true, \"reduction_factor\": "
		"16, \"non_linearity\": \"relu\", \"ln_after\": true}, \"hidden_size\": 16}",
		"{\"config\": {\"mh_adapter\": true, \"output_adapter\": true, \"reduction_factor\": "
		"16, \"non_linearity\": \"relu\", \"is_parallel\": true}, \"hidden_size\": 16}",
		"{\"config\": {\"mh_adapter\": true, \"output_adapter\": true, \"reduction_factor\": "
		"{\"default\": 16}, \"non_linearity\": \"relu\"}, \"hidden_size\": 16}",
		"{\"config\": {\"mh_adapter\": true, \"output_adapter\": true, \"reduction_factor\": "
		"16, \"non_linearity\": \"elu\"}, \"hidden_size\": 16}",
		"{\"config\": {\"mh_adapter\": true, \"output_adapter\": true, \"reduction_factor\": "
		"16, \"non_linearity\": \"relu\", \"scaling\": \"learned\"}, \"hidden_size\": 16}",
		"[1, 2"};
	for (size_t i = 0; i < FT_ARRAY_LEN(bad); i++) {
		FILE *f = fopen(cfp, "w");
		fputs(bad[i], f);
		fclose(f);
		diag_init(&d);
		assert_int_equal(bottleneck_read(&a, tmpl, &d), FT_EINVAL);
		assert_non_null(strstr(d.file, "adapter_config.json"));
	}
	char cmd[256];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpl);
	assert_int_equal(system(cmd), 0);
	free(cfp);
	free(t);
	model_free(m);
	model_file_free(mf);
}

/* ---- the export the `adapters` library loads ---- */

#define XB 2
#define XT 10
static int32_t x_tok[XB * XT], x_tgt[XB * XT];

static int x_batch(void *ud, int32_t *tok, int32_t *tgt, int max_rows, int *rows, int *out_T,
		   struct diag *d)
{
	(void)ud, (void)d, (void)max_rows;
	memcpy(tok, x_tok, sizeof x_tok);
	memcpy(tgt, x_tgt, sizeof x_tgt);
	*rows = XB;
	*out_T = XT;
	return 0;
}

/* Houlsby adapters (gelu_new, reduction 8) trained for 5 AdamW steps on the tiny HF llama,
 * exported with bottleneck_write, with the trained model's logits:
 * tests/reference/fixtures/adapter_tiny/ftlab_export/ (adapter_config.json,
 * adapter.safetensors, ftlab_logits.json). tests/reference/check_adapter_export.py loads
 * that directory with the `adapters` library and compares its logits with ours (result in
 * adapter_export_check.json). This test rebuilds the export and checks the committed one
 * is what ftlab writes (UPDATE_FIXTURES=1 rewrites it). */
static void test_export_for_adapters_library(void **state)
{
	(void)state;
	for (int i = 0; i < XB * XT; i++)
		x_tok[i] = (int32_t)((i * 7 + 3) % 64);
	for (int i = 0; i < XB * XT; i++)
		x_tgt[i] = (i + 1) % XT ? x_tok[i + 1] : -1;
	char *mp = root_path("tests/reference/fixtures/tiny-llama");
	struct diag d;
	diag_init(&d);
	struct model_file *mf = NULL;
	if (model_file_load(&mf, mp, &d))
		fail_msg("%s: %s", mp, d.text);
	free(mp);
	struct model_opts o = bn_opts(false, true, true, OPS_ACT_GELU_TANH, 8);
	o.max_batch = XB;
	o.max_seq = XT;
	o.full_logits = true;
	o.seed = 3;
	struct model *m = make(mf, &o);
	struct config_train c = {.steps = 5, .batch_size = XB, .grad_accum = 1,
				 .nonfinite = NONFINITE_ABORT};
	c.optimizer.lr = 5e-2;
	c.optimizer.beta1 = 0.9;
	c.optimizer.beta2 = 0.999;
	c.optimizer.eps = 1e-8;
	c.schedule.type = SCHEDULE_CONSTANT;
	struct batch_source src = {.T = XT, .next = x_batch};
	struct trainer_opts to = {.train = &c, .total_steps = 5};
	struct trainer_result res;
	if (trainer_run(&res, m, &src, NULL, &to, &d))
		fail_msg("%s", d.text);
	model_set_training(m, false);
	assert_int_equal(model_forward(m, x_tok, NULL, XB, XT, NULL, NULL), 0);
	const float *lg = model_logits(m);
	int V = model_hparams(m)->n_vocab;
	size_t n = model_n_trainable(m);
	struct lora_tensor *t = calloc(n, sizeof *t);
	for (size_t i = 0; i < n; i++) {
		const struct model_param *p = model_trainable(m, i);
		t[i] = (struct lora_tensor){.name = (char *)p->name, .data = p->data,
					    .rows = p->shape[0], .cols = p->shape[1]};
	}
	struct bn_info info = {.attn = true, .mlp = true, .pfeiffer = false, .reduction = 8,
			       .act = OPS_ACT_GELU_TANH, .hidden_size = 32, .model_type = "llama"};
	const char *upd = getenv("UPDATE_FIXTURES");
	char *fix = root_path("tests/reference/fixtures/adapter_tiny/ftlab_export");
	char tmpl[] = "/tmp/ftlab-bnx-XXXXXX";
	bool update = upd && strcmp(upd, "1") == 0;
	const char *dir = update ? fix : mkdtemp(tmpl);
	assert_non_null(dir);
	if (bottleneck_write(dir, t, n, &info, &d))
		fail_msg("%s", d.text);
	if (update) {
		json_t *j = json_object(), *tk = json_array(), *rows = json_array();
		for (int b = 0; b < XB; b++) {
			json_t *r = json_array(), *seq = json_array();
			for (int i = 0; i < XT; i++) {
				json_array_append_new(r, json_integer(x_tok[b * XT + i]));
				json_t *row = json_array();
				for (int v = 0; v < V; v++)
					json_array_append_new(
						row, json_real(lg[((size_t)b * XT + i) * V + v]));
				json_array_append_new(seq, row);
			}
			json_array_append_new(tk, r);
			json_array_append_new(rows, seq);
		}
		json_object_set_new(j, "made_by", json_string("tests/unit/test_bottleneck.c "
							      "(UPDATE_FIXTURES=1)"));
		json_object_set_new(j, "tokens", tk);
		json_object_set_new(j, "logits", rows);
		char *lp = path_join(fix, "ftlab_logits.json");
		assert_int_equal(json_dump_file(j, lp, JSON_COMPACT), 0);
		free(lp);
		json_decref(j);
	}
	/* the committed export: our weights (to fp32 rounding across machines) and logits */
	struct bn_adapter *ours = NULL, *committed = NULL;
	if (bottleneck_read(&ours, dir, &d) || bottleneck_read(&committed, fix, &d))
		fail_msg("%s", d.text);
	assert_int_equal(ours->n, committed->n);
	for (size_t i = 0; i < ours->n; i++) {
		assert_string_equal(ours->t[i].name, committed->t[i].name);
		size_t k = (size_t)(ours->t[i].rows * ours->t[i].cols);
		for (size_t j = 0; j < k; j++)
			assert_true(fabsf(ours->t[i].data[j] - committed->t[i].data[j]) <= 1e-5f);
	}
	char *lp = path_join(fix, "ftlab_logits.json");
	json_t *j = json_load_file(lp, 0, NULL);
	assert_non_null(j);
	json_t *rows = json_object_get(j, "logits");
	for (int b = 0; b < XB; b++)
		for (int i = 0; i < XT; i++)
			for (int v = 0; v < V; v++) {
				double ref = json_number_value(json_array_get(
					json_array_get(json_array_get(rows, (size_t)b), (size_t)i),
					(size_t)v));
				assert_true(fabs(lg[((size_t)b * XT + i) * V + v] - ref) <= 1e-4);
			}
	/* and the adapters library's logits on that export (check_adapter_export.py) */
	char *cp = root_path("tests/reference/fixtures/adapter_tiny/adapter_export_check.json");
	json_t *chk = json_load_file(cp, 0, NULL);
	assert_non_null(chk);
	double rel = json_number_value(json_object_get(chk, "max_abs_diff_over_max_abs_logit"));
	print_message("adapters library on ftlab's export: max |diff| / max |logit| = %.2e\n",
		      rel);
	assert_true(json_is_number(json_object_get(chk, "max_abs_diff_over_max_abs_logit")) &&
		    rel <= 1e-5);
	json_decref(chk);
	free(cp);
	json_decref(j);
	free(lp);
	bottleneck_free(ours);
	bottleneck_free(committed);
	if (!update) {
		char cmd[256];
		snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
		assert_int_equal(system(cmd), 0);
	}
	free(fix);
	free(t);
	model_free(m);
	model_file_free(mf);
}

/* `ftlab export` of a method adapter run: --format adapters writes the run's adapters
 * (the same bits, the base's model_type); merged and LoRA formats are refused with a
 * message that says why (exit 2 from the command line); a LoRA run cannot be exported as
 * adapters. */
static void test_engine_export(void **state)
{
	(void)state;
	char tmpl[] = "/tmp/ftlab-bnexp-XXXXXX";
	assert_non_null(mkdtemp(tmpl));
	char *run = path_join(tmpl, "runs/adapter-run-1");
	char *ad = path_join(run, "adapter");
	char *base = root_path("tests/reference/fixtures/tiny-llama");
	struct model_file *mf = NULL;
	struct diag d;
	diag_init(&d);
	if (model_file_load(&mf, base, &d))
		fail_msg("%s", d.text);
	struct model_opts o = bn_opts(true, false, true, OPS_ACT_RELU, 16);
	struct model *m = make(mf, &o);
	randomize(m, 4, 0.2f);
	size_t n = model_n_trainable(m);
	struct lora_tensor t[8];
	assert_true(n <= 8);
	for (size_t i = 0; i < n; i++) {
		const struct model_param *p = model_trainable(m, i);
		t[i] = (struct lora_tensor){.name = (char *)p->name, .data = p->data,
					    .rows = p->shape[0], .cols = p->shape[1]};
	}
	struct bn_info info = {.mlp = true, .pfeiffer = true, .reduction = 16, .hidden_size = 32,
			       .model_type = "llama"};
	assert_int_equal(bottleneck_write(ad, t, n, &info, &d), 0);
	char meta[1024];
	snprintf(meta, sizeof meta,
		 "{\"base_model\": \"%s\", \"method\": \"adapter\", \"version\": 1}", base);
	char *mp = path_join(run, "export.json");
	assert_int_equal(file_write_atomic(mp, meta, strlen(meta), &d), 0);
	char *out = path_join(tmpl, "out"), *target = NULL;
	if (engine_export(&target, run, "adapters", out, NULL, &d))
		fail_msg("%s", d.text);
	assert_string_equal(target, out);
	free(target);
	struct bn_adapter *a = NULL;
	assert_int_equal(bottleneck_read(&a, out, &d), 0);
	assert_int_equal(a->n, n);
	assert_true(a->info.pfeiffer && a->info.mlp && !a->info.attn);
	for (size_t i = 0; i < n; i++) {
		const struct model_param *p = model_param_find(m, a->t[i].name);
		assert_non_null(p);
		assert_memory_equal(p->data, a->t[i].data, p->numel * sizeof(float));
	}
	bottleneck_free(a);
	static const char *const refused[] = {"merged-safetensors", "merged-gguf", "peft",
					      "gguf-adapter"};
	for (size_t i = 0; i < FT_ARRAY_LEN(refused); i++) {
		diag_init(&d);
		assert_int_equal(engine_export(&target, run, refused[i], out, NULL, &d), FT_EINVAL);
		assert_non_null(strstr(d.text, "do not merge"));
		assert_non_null(strstr(d.text, "--format adapters"));
	}
	const char *bin = getenv("FTLAB_BIN");
	if (bin) {
		char cmd[1024];
		snprintf(cmd, sizeof cmd,
			 "'%s' --workspace '%s' export adapter-run-1 --format merged-gguf -o '%s/x' "
			 "2>/dev/null", bin, tmpl, tmpl);
		int st = system(cmd);
		assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 2);
		snprintf(cmd, sizeof cmd,
			 "'%s' --workspace '%s' export adapter-run-1 --format adapters -o '%s/y' "
			 ">/dev/null", bin, tmpl, tmpl);
		st = system(cmd);
		assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	/* a LoRA run's metadata: --format adapters is refused */
	snprintf(meta, sizeof meta, "{\"base_model\": \"%s\", \"method\": \"lora\", \"version\": 1}",
		 base);
	assert_int_equal(file_write_atomic(mp, meta, strlen(meta), &d), 0);
	diag_init(&d);
	assert_int_equal(engine_export(&target, run, "adapters", out, NULL, &d), FT_EINVAL);
	assert_non_null(strstr(d.text, "needs a bottleneck adapter run"));
	char cmd[256];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpl);
	assert_int_equal(system(cmd), 0);
	free(out);
	free(mp);
	free(base);
	free(ad);
	free(run);
	model_free(m);
	model_file_free(mf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_llama_fd),
		cmocka_unit_test(test_positions),
		cmocka_unit_test(test_gemma3_gpt2_fd),
		cmocka_unit_test(test_checkpointing_same_bits),
		cmocka_unit_test(test_bf16_close),
		cmocka_unit_test(test_reference_forward),
		cmocka_unit_test(test_write_read),
		cmocka_unit_test(test_export_for_adapters_library),
		cmocka_unit_test(test_engine_export),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
