/* Unit tests for model/: whole-model finite-difference gradient checks on tiny random
 * llama (tied and untied, GQA, qkv biases, both RoPE styles), Gemma 3 (scaled embedding,
 * the extra norms, GeGLU, sliding-window layers) and GPT-2 models under every method
 * (full, freeze, LoRA with and without dropout, rsLoRA, gradient checkpointing, DoRA, IA3,
 * prefix tuning), trainable selection, loss masking and the accumulated-batch loss scale,
 * and the LM head run only at positions with a target, in chunks, against the head over
 * every position. DoRA's norm is detached (a constant to the backward, as in PEFT): its
 * check holds the norms of the first forward fixed while differencing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/native/model/model.h"
#include "backends/native/model/model_internal.h"
#include "backends/native/ops/ops.h"
#include "common/rng.h"
#include "common/util.h"
#include "tests/unit/tiny_weights.h"
#include "common/banned.h"

static struct model_opts base_opts(enum method_type method)
{
	struct model_opts o = {0};
	o.method = method;
	o.layers_first = -1;
	o.layers_last = -1;
	o.max_batch = 2;
	o.max_seq = 6;
	o.seed = 42;
	return o;
}

#define B 2
#define T 6

static void batch(int32_t *tok, int32_t *tgt, int V, uint64_t seed)
{
	struct rng r;
	rng_seed(&r, seed, 3);
	for (int i = 0; i < B * T; i++) {
		tok[i] = (int32_t)rng_below(&r, (uint64_t)V);
		tgt[i] = (int32_t)rng_below(&r, (uint64_t)V);
	}
	tgt[0] = -1; /* masked positions */
	tgt[T + 2] = -1;
}

static float loss_at(struct model *m, const int32_t *tok, const int32_t *tgt)
{
	float loss = 0;
	model_set_rng_counter(m, 7); /* same dropout masks every time */
	assert_int_equal(model_forward(m, tok, tgt, B, T, &loss, NULL), 0);
	return loss;
}

/* Central differences on a few elements of every trainable parameter. Loss is fp32 with a
 * double-accumulated mean; eps 1e-2 on O(1) weights: tolerance 2e-3 abs + 2 % rel. */
static double gradcheck(struct model *m, int V, uint64_t seed)
{
	int32_t tok[B * T], tgt[B * T];
	batch(tok, tgt, V, seed);
	/* LoRA B starts at zero (so A's gradient would be zero): make it non-zero */
	for (size_t i = 0; i < model_n_trainable(m); i++) {
		const struct model_param *p = model_trainable(m, i);
		if (strstr(p->name, "lora_B") || strstr(p->name, "ia3_l")) {
			/* IA3 starts at ones: move it away so the check is not at a special point */
			float base = strstr(p->name, "ia3_l") ? 1.0f : 0.0f;
			struct rng r;
			rng_seed(&r, i, 9);
			for (size_t j = 0; j < p->numel; j++)
				p->data[j] = base + 0.3f * (2.0f * rng_uniform_f(&r) - 1.0f);
		}
	}
	model_zero_grad(m);
	float l0 = loss_at(m, tok, tgt);
	assert_true(isfinite(l0) && l0 > 0);
	assert_int_equal(model_backward(m, 0.0f), 0);
	m->dora_keep_norm = m->dora;
	size_t checked = 0;
	double worst = 0;
	for (size_t i = 0; i < model_n_trainable(m); i++) {
		const struct model_param *p = model_trainable(m, i);
		struct rng r;
		rng_seed(&r, seed + i, 11);
		for (int s = 0; s < 3; s++) {
			size_t j = (size_t)rng_below(&r, p->numel);
			float keep = p->data[j], eps = 1e-2f;
			p->data[j] = keep + eps;
			float lp = loss_at(m, tok, tgt);
			p->data[j] = keep - eps;
			float lm = loss_at(m, tok, tgt);
			p->data[j] = keep;
			double fd = ((double)lp - (double)lm) / (2.0 * eps);
			double an = p->grad[j];
			double err = fabs(fd - an);
			double tol = 2e-3 + 0.02 * fabs(an);
			if (err > tol)
				fail_msg("%s[%zu]: analytic %.6g, finite difference %.6g", p->name, j,
					 an, fd);
			if (err > worst)
				worst = err;
			checked++;
		}
	}
	assert_true(checked > 0);
	return worst;
}

static void check_method(struct model_file *mf, struct model_opts *o)
{
	struct diag d;
	diag_init(&d);
	struct model *m = NULL;
	int rc = model_create(&m, mf, o, &d);
	if (rc)
		fail_msg("model_create: %s", d.text);
	gradcheck(m, mf->hp.n_vocab, 5);
	model_free(m);
}

static void test_llama_full(void **state)
{
	(void)state;
	struct model_file *mf = tiny_llama_mf(true, false, ROPE_HALF, 1);
	struct model_opts o = base_opts(METHOD_FULL);
	check_method(mf, &o);
	model_file_free(mf);
}

static void test_llama_full_untied_bias_interleaved(void **state)
{
	(void)state;
	struct model_file *mf = tiny_llama_mf(false, true, ROPE_INTERLEAVED, 2);
	struct model_opts o = base_opts(METHOD_FULL);
	check_method(mf, &o);
	o.grad_checkpointing = true;
	check_method(mf, &o);
	model_file_free(mf);
}

static void test_llama_freeze(void **state)
{
	(void)state;
	struct model_file *mf = tiny_llama_mf(true, false, ROPE_HALF, 3);
	const char *tr[] = {"mlp", "o_proj"};
	struct model_opts o = base_opts(METHOD_FREEZE);
	o.trainable = tr;
	o.n_trainable = 2;
	o.layers_first = 1;
	o.layers_last = 1;
	struct diag d;
	diag_init(&d);
	struct model *m = NULL;
	assert_int_equal(model_create(&m, mf, &o, &d), 0);
	/* layer 1's mlp (3) and o_proj (1) */
	assert_int_equal(model_n_trainable(m), 4);
	for (size_t i = 0; i < model_n_trainable(m); i++)
		assert_non_null(strstr(model_trainable(m, i)->name, "layers.1."));
	assert_null(model_param_find(m, "model.layers.0.mlp.up_proj.weight")->grad);
	gradcheck(m, 37, 6);
	model_free(m);
	model_file_free(mf);
}

static void test_llama_lora(void **state)
{
	(void)state;
	struct model_file *mf = tiny_llama_mf(false, true, ROPE_HALF, 4);
	const char *tg[] = {"q_proj", "v_proj", "down_proj"};
	struct model_opts o = base_opts(METHOD_LORA);
	o.lora_rank = 3;
	o.lora_alpha = 6;
	o.targets = tg;
	o.n_targets = 3;
	struct diag d;
	diag_init(&d);
	struct model *m = NULL;
	assert_int_equal(model_create(&m, mf, &o, &d), 0);
	assert_int_equal(model_n_trainable(m), 2 * 3 * 2);
	assert_float_equal(model_lora_scale(m), 2.0f, 1e-6);
	const struct model_param *a = model_param_find(m, "model.layers.0.self_attn.q_proj.lora_A.weight");
	assert_non_null(a);
	assert_int_equal(a->shape[0], 3);
	assert_int_equal(a->shape[1], 16);
	/* PEFT init: A ~ U(-1/sqrt(in), 1/sqrt(in)), B = 0 */
	float amax = 0;
	for (size_t j = 0; j < a->numel; j++)
		amax = fmaxf(amax, fabsf(a->data[j]));
	assert_true(amax > 0.1f && amax <= 0.25f);
	const struct model_param *bb = model_param_find(m, "model.layers.1.mlp.down_proj.lora_B.weight");
	for (size_t j = 0; j < bb->numel; j++)
		assert_true(bb->data[j] == 0.0f);
	gradcheck(m, 37, 7);
	model_free(m);
	/* all-linear, rsLoRA, dropout, layer range */
	o.all_linear = true;
	o.rslora = true;
	o.lora_dropout = 0.25f;
	o.lora_rank = 4;
	o.layers_first = 1;
	diag_init(&d);
	assert_int_equal(model_create(&m, mf, &o, &d), 0);
	assert_int_equal(model_n_trainable(m), 7 * 2);
	assert_float_equal(model_lora_scale(m), 3.0f, 1e-6);
	gradcheck(m, 37, 8);
	model_free(m);
	o.grad_checkpointing = true;
	check_method(mf, &o);
	model_file_free(mf);
}

/* DoRA: the magnitude starts at the row norms of W (B = 0, so the model is the base
 * model); gradients of A, B and the magnitude against finite differences, with dropout,
 * rsLoRA, on GPT-2's fused c_attn with its bias. */
static void test_dora(void **state)
{
	(void)state;
	struct model_file *mf = tiny_llama_mf(false, true, ROPE_HALF, 4);
	const char *tg[] = {"q_proj", "v_proj", "down_proj"};
	struct model_opts o = base_opts(METHOD_DORA);
	o.lora_rank = 3;
	o.lora_alpha = 6;
	o.targets = tg;
	o.n_targets = 3;
	struct diag d;
	diag_init(&d);
	struct model *m = NULL, *base = NULL;
	assert_int_equal(model_create(&m, mf, &o, &d), 0);
	assert_int_equal(model_n_trainable(m), 3 * 3 * 2);
	const struct model_param *mag =
		model_param_find(m, "model.layers.1.self_attn.v_proj.lora_magnitude_vector");
	assert_non_null(mag);
	assert_int_equal(mag->shape[0], 8);
	const struct mf_tensor *w = NULL;
	for (size_t i = 0; i < mf->n_tensors; i++)
		if (strcmp(mf->tensors[i].name, "model.layers.1.self_attn.v_proj.weight") == 0)
			w = &mf->tensors[i];
	assert_non_null(w);
	for (int r = 0; r < 8; r++) {
		double s = 0;
		for (int c = 0; c < 16; c++)
			s += (double)w->data[r * 16 + c] * w->data[r * 16 + c];
		assert_float_equal(mag->data[r], sqrt(s), 1e-5 * sqrt(s));
	}
	/* untrained DoRA == the base model */
	struct model_opts ob = base_opts(METHOD_NONE);
	assert_int_equal(model_create(&base, mf, &ob, &d), 0);
	int32_t tok[B * T], tgt[B * T];
	batch(tok, tgt, 37, 3);
	float l_dora = loss_at(m, tok, tgt), l_base = loss_at(base, tok, tgt);
	assert_float_equal(l_dora, l_base, 1e-5 * l_base);
	model_free(base);
	gradcheck(m, 37, 17);
	model_free(m);
	/* dropout and rsLoRA on every linear of layer 1 */
	o.all_linear = true;
	o.rslora = true;
	o.lora_dropout = 0.25f;
	o.layers_first = 1;
	check_method(mf, &o);
	model_file_free(mf);
	/* GPT-2: fused c_attn (Conv1D) and biases */
	mf = tiny_gpt2_mf(5);
	const char *tg2[] = {"c_attn", "c_proj"};
	o = base_opts(METHOD_DORA);
	o.lora_rank = 2;
	o.lora_alpha = 4;
	o.targets = tg2;
	o.n_targets = 2;
	check_method(mf, &o);
	o.lora_dropout = 0.1f;
	check_method(mf, &o);
	model_file_free(mf);
}

/* DoRA's loss and trainable gradients under o, after B is set non-zero (so every
 * gradient is). grads: the concatenation, malloc'ed. */
static float dora_grads(struct model_file *mf, struct model_opts *o, float **grads, size_t *n)
{
	struct diag d;
	diag_init(&d);
	struct model *m = NULL;
	if (model_create(&m, mf, o, &d))
		fail_msg("%s", d.text);
	size_t total = 0;
	for (size_t i = 0; i < model_n_trainable(m); i++) {
		const struct model_param *p = model_trainable(m, i);
		total += p->numel;
		if (strstr(p->name, "lora_B"))
			for (size_t j = 0; j < p->numel; j++)
				p->data[j] = 0.05f * (float)((int)((i * 7 + j * 13) % 11) - 5);
	}
	int32_t tok[B * T], tgt[B * T];
	batch(tok, tgt, mf->hp.n_vocab, 21);
	float loss = loss_at(m, tok, tgt);
	assert_int_equal(model_backward(m, 0.0f), 0);
	*grads = malloc(total * sizeof(float));
	assert_non_null(*grads);
	size_t off = 0;
	for (size_t i = 0; i < model_n_trainable(m); i++) {
		const struct model_param *p = model_trainable(m, i);
		memcpy(*grads + off, p->grad, p->numel * sizeof(float));
		off += p->numel;
	}
	*n = total;
	model_free(m);
	return loss;
}

/* DoRA with gradient checkpointing (the recomputed forward recomputes the norms) gives
 * the same loss and gradients; bf16 matmuls stay close to fp32. */
static void test_dora_checkpointing_bf16(void **state)
{
	(void)state;
	struct model_file *mf = tiny_llama_mf(false, true, ROPE_HALF, 13);
	const char *tg[] = {"q_proj", "k_proj", "o_proj", "up_proj", "down_proj"};
	struct model_opts o = base_opts(METHOD_DORA);
	o.lora_rank = 2;
	o.lora_alpha = 4;
	o.lora_dropout = 0.1f;
	o.targets = tg;
	o.n_targets = 5;
	float *g[3];
	size_t n[3];
	float l0 = dora_grads(mf, &o, &g[0], &n[0]);
	o.grad_checkpointing = true;
	float l1 = dora_grads(mf, &o, &g[1], &n[1]);
	o.grad_checkpointing = false;
	o.precision = PRECISION_BF16;
	float l2 = dora_grads(mf, &o, &g[2], &n[2]);
	assert_true(l0 == l1);
	assert_int_equal(n[0], n[1]);
	double mx = 0, dot = 0, n0 = 0, n2 = 0;
	for (size_t i = 0; i < n[0]; i++)
		mx = fmax(mx, fabs(g[0][i]));
	for (size_t i = 0; i < n[0]; i++) {
		if (fabs(g[0][i] - g[1][i]) > 1e-6 * mx)
			fail_msg("gradient %zu: %g without checkpointing, %g with", i, g[0][i],
				 g[1][i]);
		dot += (double)g[0][i] * g[2][i];
		n0 += (double)g[0][i] * g[0][i];
		n2 += (double)g[2][i] * g[2][i];
	}
	assert_float_equal(l2, l0, 2e-2 * l0);
	assert_true(dot / sqrt(n0 * n2) > 0.99);
	for (int k = 0; k < 3; k++)
		free(g[k]);
	model_file_free(mf);
}

/* IA3: PEFT's default targets per architecture (llama k, v and down with down scaling its
 * input; GPT-2 c_attn and mlp.c_proj), vectors starting at ones (the base model), given
 * targets and feed-forward targets, gradients against finite differences, with
 * checkpointing. */
static void test_ia3(void **state)
{
	(void)state;
	struct model_file *mf = tiny_llama_mf(false, true, ROPE_HALF, 4);
	struct model_opts o = base_opts(METHOD_IA3);
	o.ff_auto = true;
	struct diag d;
	diag_init(&d);
	struct model *m = NULL, *base = NULL;
	assert_int_equal(model_create(&m, mf, &o, &d), 0);
	assert_int_equal(model_n_trainable(m), 3 * 2);
	const struct model_param *k = model_param_find(m, "model.layers.1.self_attn.k_proj.ia3_l");
	const struct model_param *dn = model_param_find(m, "model.layers.0.mlp.down_proj.ia3_l");
	assert_non_null(k);
	assert_non_null(dn);
	assert_int_equal(k->shape[0], 8);
	assert_int_equal(k->shape[1], 1);
	assert_int_equal(dn->shape[0], 1);
	assert_int_equal(dn->shape[1], mf->hp.n_ff);
	for (size_t j = 0; j < dn->numel; j++)
		assert_true(dn->data[j] == 1.0f);
	struct model_opts ob = base_opts(METHOD_NONE);
	assert_int_equal(model_create(&base, mf, &ob, &d), 0);
	int32_t tok[B * T], tgt[B * T];
	batch(tok, tgt, 37, 3);
	float l_ia3 = loss_at(m, tok, tgt), l_base = loss_at(base, tok, tgt);
	assert_float_equal(l_ia3, l_base, 1e-6 * l_base);
	model_free(base);
	gradcheck(m, 37, 19);
	model_free(m);
	/* given targets; up_proj scales its input; o_proj (untargeted) gets nothing */
	const char *tg[] = {"q_proj", "up_proj", "gate_proj"}, *ff[] = {"up_proj"};
	o.targets = tg;
	o.n_targets = 3;
	o.ff_targets = ff;
	o.n_ff_targets = 1;
	o.ff_auto = false;
	assert_int_equal(model_create(&m, mf, &o, &d), 0);
	assert_int_equal(model_param_find(m, "model.layers.0.mlp.up_proj.ia3_l")->shape[0], 1);
	assert_int_equal(model_param_find(m, "model.layers.0.mlp.gate_proj.ia3_l")->shape[1], 1);
	assert_null(model_param_find(m, "model.layers.0.self_attn.o_proj.ia3_l"));
	gradcheck(m, 37, 20);
	model_free(m);
	o.grad_checkpointing = true;
	check_method(mf, &o);
	model_file_free(mf);
	/* GPT-2: c_attn's output and mlp.c_proj's input, biases */
	mf = tiny_gpt2_mf(5);
	o = base_opts(METHOD_IA3);
	o.ff_auto = true;
	assert_int_equal(model_create(&m, mf, &o, &d), 0);
	assert_int_equal(model_n_trainable(m), 2 * 2);
	assert_int_equal(model_param_find(m, "transformer.h.0.attn.c_attn.ia3_l")->shape[0],
			 3 * mf->hp.n_embd);
	assert_int_equal(model_param_find(m, "transformer.h.0.mlp.c_proj.ia3_l")->shape[1],
			 mf->hp.n_ff);
	assert_null(model_param_find(m, "transformer.h.0.attn.c_proj.ia3_l"));
	gradcheck(m, mf->hp.n_vocab, 21);
	model_free(m);
	model_file_free(mf);
}

/* Prefix tuning: the prefix attention op equals the cached attention over the prefix rows
 * followed by the sequence (queries at np + t), and the model's gradients (prompt
 * embeddings of every layer) match finite differences, with checkpointing too. */
static void test_prefix(void **state)
{
	(void)state;
	const struct ops *ops = ops_cpu();
	enum { PB = 2, PT = 5, NP = 3, NH = 4, NKV = 2, HD = 6 };
	int kvd = NKV * HD, qd = NH * HD, tk = NP + PT;
	size_t ps = 2 * (size_t)kvd + 5; /* a wider row than the K/V pair, like a layer slice */
	float q[PB * PT * NH * HD], k[PB * PT * NKV * HD], v[PB * PT * NKV * HD];
	float pre[NP * (2 * NKV * HD + 5)];
	struct rng r;
	rng_seed(&r, 31, 1);
	float *arrs[] = {q, k, v, pre};
	size_t lens[] = {FT_ARRAY_LEN(q), FT_ARRAY_LEN(k), FT_ARRAY_LEN(v), FT_ARRAY_LEN(pre)};
	for (int a = 0; a < 4; a++)
		for (size_t i = 0; i < lens[a]; i++)
			arrs[a][i] = 2.0f * rng_uniform_f(&r) - 1.0f;
	float kc[PB * (NP + PT) * NKV * HD], vc[PB * (NP + PT) * NKV * HD];
	for (int b = 0; b < PB; b++)
		for (int t = 0; t < tk; t++)
			for (int j = 0; j < kvd; j++) {
				size_t dst = ((size_t)b * tk + t) * kvd + j;
				kc[dst] = t < NP ? pre[t * ps + j] : k[((size_t)b * PT + t - NP) * kvd + j];
				vc[dst] = t < NP ? pre[t * ps + kvd + j]
						 : v[((size_t)b * PT + t - NP) * kvd + j];
			}
	int pos0[PB] = {NP, NP};
	float o1[PB * PT * NH * HD], o2[PB * PT * NH * HD];
	ops->attention_prefix_forward(o1, q, k, v, pre, pre + kvd, ps, PB, PT, NP, NH, NKV, HD,
				      1.0f / sqrtf((float)HD), 0);
	ops->attention_forward(o2, NULL, q, kc, vc, PB, PT, tk, NH, NKV, HD, pos0,
			       1.0f / sqrtf((float)HD), 0);
	for (int i = 0; i < PB * PT * qd; i++)
		assert_float_equal(o1[i], o2[i], 1e-5);

	struct model_file *mf = tiny_llama_mf(false, true, ROPE_HALF, 4);
	struct model_opts o = base_opts(METHOD_PREFIX);
	o.prefix_tokens = 3;
	struct diag d;
	diag_init(&d);
	struct model *m = NULL;
	assert_int_equal(model_create(&m, mf, &o, &d), 0);
	assert_int_equal(model_n_trainable(m), 1);
	const struct model_param *p = model_trainable(m, 0);
	assert_string_equal(p->name, "prompt_embeddings");
	assert_int_equal(p->shape[0], 3);
	assert_int_equal(p->shape[1], 2 * 2 * 8);
	for (uint64_t s = 0; s < 4; s++)
		gradcheck(m, 37, 40 + s);
	model_free(m);
	o.grad_checkpointing = true;
	check_method(mf, &o);
	model_file_free(mf);
	mf = tiny_llama_mf(true, false, ROPE_INTERLEAVED, 8);
	o.grad_checkpointing = false;
	o.prefix_tokens = 1;
	check_method(mf, &o);
	model_file_free(mf);
	/* refused where it cannot run */
	mf = tiny_gpt2_mf(5);
	o = base_opts(METHOD_PREFIX);
	o.prefix_tokens = 2;
	assert_int_equal(model_create(&m, mf, &o, &d), FT_EUNSUPP);
	assert_non_null(strstr(d.text, "GPT-2"));
	model_file_free(mf);
}

/* The host's PEFT PrefixEncoder: table (np, O) = tanh(E W1^T + b1) W2^T + b2. */
static void prefix_mlp_host(float *tab, const struct model *m)
{
	int np = m->np, H = m->ph, K = m->kvd;
	int O = (int)m->params[m->prefix].pub.shape[1];
	const float *E = model_pdata(m, m->pe_emb), *W1 = model_pdata(m, m->pe_w1);
	const float *b1 = model_pdata(m, m->pe_b1), *W2 = model_pdata(m, m->pe_w2);
	const float *b2 = model_pdata(m, m->pe_b2);
	for (int t = 0; t < np; t++)
		for (int o = 0; o < O; o++) {
			double acc = b2[o];
			for (int h = 0; h < H; h++) {
				double z = b1[h];
				for (int k = 0; k < K; k++)
					z += (double)E[t * K + k] * W1[h * K + k];
				acc += tanh(z) * W2[(size_t)o * H + h];
			}
			tab[(size_t)t * O + o] = (float)acc;
		}
}

/* prefix_projection (PEFT's PrefixEncoder MLP): the five parameters train, the table is
 * their MLP's output (checked against a double-precision host MLP, before and after the
 * parameters change), and the gradients reach them through the MLP (finite differences),
 * with checkpointing, under GQA with interleaved RoPE, and with encoder_hidden_size set. */
static void test_prefix_projection(void **state)
{
	(void)state;
	struct model_file *mf = tiny_llama_mf(false, true, ROPE_HALF, 4);
	struct model_opts o = base_opts(METHOD_PREFIX);
	o.prefix_tokens = 3;
	o.prefix_projection = true;
	struct diag d;
	diag_init(&d);
	struct model *m = NULL;
	assert_int_equal(model_create(&m, mf, &o, &d), 0);
	int kvd = m->kvd, L = mf->hp.n_layer;
	static const char *const names[] = {
		"prompt_encoder.embedding.weight", "prompt_encoder.transform.0.weight",
		"prompt_encoder.transform.0.bias", "prompt_encoder.transform.2.weight",
		"prompt_encoder.transform.2.bias"};
	const int64_t shapes[5][2] = {{3, kvd}, {kvd, kvd}, {kvd, 1},
				      {2 * L * kvd, kvd}, {2 * L * kvd, 1}};
	assert_int_equal(model_n_trainable(m), 5);
	for (size_t i = 0; i < 5; i++) {
		const struct model_param *p = model_trainable(m, i);
		assert_string_equal(p->name, names[i]);
		assert_int_equal(p->shape[0], shapes[i][0]);
		assert_int_equal(p->shape[1], shapes[i][1]);
	}
	const struct model_param *tab = model_param_find(m, "prompt_embeddings");
	assert_non_null(tab);
	assert_int_equal(tab->shape[0], 3);
	assert_int_equal(tab->shape[1], 2 * L * kvd);
	float *want = malloc(tab->numel * sizeof(float));
	assert_non_null(want);
	prefix_mlp_host(want, m);
	for (size_t j = 0; j < tab->numel; j++)
		assert_float_equal(tab->data[j], want[j], 1e-5);
	double worst = 0;
	for (uint64_t s = 0; s < 4; s++)
		worst = fmax(worst, gradcheck(m, 37, 60 + s));
	/* gradcheck moved the parameters: a forward recomputes the table */
	model_prefix_update(m);
	prefix_mlp_host(want, m);
	for (size_t j = 0; j < tab->numel; j++)
		assert_float_equal(tab->data[j], want[j], 1e-5);
	free(want);
	model_free(m);
	o.grad_checkpointing = true;
	o.prefix_hidden = 5;
	assert_int_equal(model_create(&m, mf, &o, &d), 0);
	assert_int_equal(model_trainable(m, 1)->shape[0], 5);
	worst = fmax(worst, gradcheck(m, 37, 70));
	model_free(m);
	model_file_free(mf);
	mf = tiny_llama_mf(true, false, ROPE_INTERLEAVED, 8);
	o.grad_checkpointing = false;
	o.prefix_tokens = 2;
	assert_int_equal(model_create(&m, mf, &o, &d), 0);
	worst = fmax(worst, gradcheck(m, 37, 80));
	model_free(m);
	print_message("prefix projection: worst |analytic - finite difference| %.3g\n", worst);
	o.prefix_hidden = 70000;
	assert_int_equal(model_create(&m, mf, &o, &d), FT_EUNSUPP);
	assert_non_null(strstr(d.text, "encoder_hidden_size"));
	model_file_free(mf);
}

static void test_gpt2_methods(void **state)
{
	(void)state;
	struct model_file *mf = tiny_gpt2_mf(5);
	struct model_opts o = base_opts(METHOD_FULL);
	check_method(mf, &o);
	const char *tr[] = {"attn", "ln_f"};
	o = base_opts(METHOD_FREEZE);
	o.trainable = tr;
	o.n_trainable = 2;
	check_method(mf, &o);
	const char *tg[] = {"c_attn", "c_proj"};
	o = base_opts(METHOD_LORA);
	o.lora_rank = 2;
	o.lora_alpha = 4;
	o.lora_dropout = 0.1f;
	o.targets = tg;
	o.n_targets = 2;
	check_method(mf, &o);
	model_file_free(mf);
}

static void test_gemma3_methods(void **state)
{
	(void)state;
	struct model_file *mf = tiny_gemma3_mf(21, 3); /* T = 6 > window 3: the window acts */
	struct model_opts o = base_opts(METHOD_FULL);
	check_method(mf, &o); /* every parameter: the scaled, tied embedding included */
	o.grad_checkpointing = true;
	o.head_chunk_rows = 2; /* the LM head in chunks of 2 rows (recomputed in the backward) */
	check_method(mf, &o);
	const char *tr[] = {"q_norm", "k_norm", "post_attention_layernorm",
			    "pre_feedforward_layernorm", "post_feedforward_layernorm", "model.norm",
			    "embed_tokens"};
	o = base_opts(METHOD_FREEZE);
	o.trainable = tr;
	o.n_trainable = FT_ARRAY_LEN(tr);
	check_method(mf, &o);
	o = base_opts(METHOD_LORA);
	o.all_linear = true;
	o.lora_rank = 2;
	o.lora_alpha = 4;
	o.lora_dropout = 0.1f;
	struct diag d;
	diag_init(&d);
	struct model *m = NULL;
	assert_int_equal(model_create(&m, mf, &o, &d), 0);
	assert_int_equal(model_n_trainable(m), 3 * 7 * 2); /* all 7 linears of 3 layers */
	gradcheck(m, 37, 22);
	model_free(m);
	model_file_free(mf);
}

/* The sliding window: positions closer than the window see the same keys with a window
 * of 3 as with one wider than the sequence; later ones differ. Layer 1 (global) attends
 * everything either way. */
static void test_gemma3_window(void **state)
{
	(void)state;
	float *lg[2];
	int32_t tok[B * T], tgt[B * T];
	batch(tok, tgt, 37, 8);
	for (int k = 0; k < 2; k++) {
		struct model_file *mf = tiny_gemma3_mf(23, k ? 3 : 100);
		struct model_opts o = base_opts(METHOD_NONE);
		o.full_logits = true;
		struct diag d;
		diag_init(&d);
		struct model *m = NULL;
		assert_int_equal(model_create(&m, mf, &o, &d), 0);
		assert_int_equal(model_forward(m, tok, NULL, B, T, NULL, NULL), 0);
		lg[k] = malloc((size_t)B * T * 37 * sizeof(float));
		memcpy(lg[k], model_logits(m), (size_t)B * T * 37 * sizeof(float));
		model_free(m);
		model_file_free(mf);
	}
	for (int b = 0; b < B; b++)
		for (int t = 0; t < T; t++) {
			const float *x = lg[0] + ((size_t)b * T + t) * 37, *y = lg[1] + ((size_t)b * T + t) * 37;
			bool same = memcmp(x, y, 37 * sizeof(float)) == 0;
			assert_true(t < 3 ? same : !same);
		}
	free(lg[0]);
	free(lg[1]);
}

/* One forward + backward on a batch whose first positions carry no target (prompts under
 * train_on_inputs: false); copies the per-token losses and every trainable gradient. */
struct fb_result {
	float loss;
	float tl[B * T];
	int32_t am[B * T];
	float *grads;
	size_t n;
};

static void run_fb(struct fb_result *r, struct model_file *mf, struct model_opts o, bool fused)
{
	int32_t tok[B * T], tgt[B * T];
	batch(tok, tgt, 37, 31);
	for (int b = 0; b < B; b++)
		for (int t = 0; t < 3 + b; t++)
			tgt[b * T + t] = -1;
	struct diag d;
	diag_init(&d);
	struct model *m = NULL;
	assert_int_equal(model_create(&m, mf, &o, &d), 0);
	model_set_rng_counter(m, 3);
	long n;
	if (fused)
		assert_int_equal(model_forward_train(m, tok, tgt, B, T, 0.0f, &r->loss, &n), 0);
	else
		assert_int_equal(model_forward(m, tok, tgt, B, T, &r->loss, &n), 0);
	assert_int_equal(n, B * T - 7);
	memcpy(r->tl, model_token_losses(m), sizeof r->tl);
	memcpy(r->am, model_token_argmax(m), sizeof r->am);
	assert_int_equal(model_backward(m, 0.0f), 0);
	r->n = 0;
	for (size_t i = 0; i < model_n_trainable(m); i++)
		r->n += model_trainable(m, i)->numel;
	r->grads = malloc(r->n * sizeof(float));
	size_t off = 0;
	for (size_t i = 0; i < model_n_trainable(m); i++) {
		const struct model_param *p = model_trainable(m, i);
		memcpy(r->grads + off, p->grad, p->numel * sizeof(float));
		off += p->numel;
	}
	model_free(m);
}

/* The LM head only at positions with a target, in chunks of 2 rows, fused into the
 * forward or recomputed in the backward, against the head over every position in one
 * product (the way it was computed before): the same losses and argmaxes (evaluation's
 * forward; the fused one computes none) to the bit, the
 * same LoRA gradients to the bit (each row's sums are the same); the head weight's own
 * gradient sums its rows in another order (full fine-tuning: within 1e-6). */
static void test_head_rows_only(void **state)
{
	(void)state;
	struct model_file *mfs[2] = {tiny_llama_mf(false, false, ROPE_HALF, 13),
				     tiny_gemma3_mf(14, 3)};
	for (int k = 0; k < 2; k++)
		for (int method = 0; method < 2; method++) {
			struct model_opts o = base_opts(method ? METHOD_FULL : METHOD_LORA);
			o.all_linear = true;
			o.lora_rank = 2;
			o.lora_alpha = 4;
			o.full_logits = true;
			struct fb_result ref, r;
			run_fb(&ref, mfs[k], o, false);
			o.full_logits = false;
			for (int variant = 0; variant < 3; variant++) {
				o.head_chunk_rows = variant == 2 ? 0 : 2; /* 0: one chunk */
				run_fb(&r, mfs[k], o, variant != 1);
				assert_true(memcmp(&r.loss, &ref.loss, sizeof r.loss) == 0);
				assert_memory_equal(r.tl, ref.tl, sizeof r.tl);
				if (variant == 1) /* the fused forward computes no argmax */
					assert_memory_equal(r.am, ref.am, sizeof r.am);
				else
					for (int i = 0; i < B * T; i++)
						assert_int_equal(r.am[i], -1);
				assert_int_equal(r.n, ref.n);
				if (method == 0) {
					assert_memory_equal(r.grads, ref.grads, r.n * sizeof(float));
				} else {
					double mx = 0;
					for (size_t i = 0; i < r.n; i++)
						mx = fmax(mx, fabs(ref.grads[i]));
					for (size_t i = 0; i < r.n; i++)
						assert_true(fabs(r.grads[i] - ref.grads[i]) <= 1e-6 * mx);
				}
				free(r.grads);
			}
			free(ref.grads);
		}
	model_file_free(mfs[0]);
	model_file_free(mfs[1]);
}

/* Masked targets contribute nothing; loss_scale composes across micro-batches. */
static void test_loss_mask_and_scale(void **state)
{
	(void)state;
	struct model_file *mf = tiny_llama_mf(true, false, ROPE_HALF, 9);
	struct model_opts o = base_opts(METHOD_FULL);
	struct diag d;
	diag_init(&d);
	struct model *m = NULL;
	assert_int_equal(model_create(&m, mf, &o, &d), 0);
	int32_t tok[B * T], tgt[B * T];
	batch(tok, tgt, 37, 3);
	float loss;
	long n;
	assert_int_equal(model_forward(m, tok, tgt, B, T, &loss, &n), 0);
	assert_int_equal(n, B * T - 2);
	const float *tl = model_token_losses(m);
	double s = 0;
	for (int i = 0; i < B * T; i++)
		s += tl[i];
	assert_true(tl[0] == 0.0f);
	assert_float_equal(loss, s / n, 1e-5);
	/* changing a masked target does not change the loss */
	tgt[0] = -100;
	float loss2;
	assert_int_equal(model_forward(m, tok, tgt, B, T, &loss2, NULL), 0);
	assert_true(loss == loss2);
	/* two backward passes with scale 1/(2n) equal one with 1/n */
	const struct model_param *w = model_param_find(m, "model.layers.0.mlp.up_proj.weight");
	model_zero_grad(m);
	assert_int_equal(model_forward(m, tok, tgt, B, T, NULL, NULL), 0);
	assert_int_equal(model_backward(m, 1.0f / (float)n), 0);
	float g1 = w->grad[5];
	model_zero_grad(m);
	for (int k = 0; k < 2; k++) {
		assert_int_equal(model_forward(m, tok, tgt, B, T, NULL, NULL), 0);
		assert_int_equal(model_backward(m, 0.5f / (float)n), 0);
	}
	assert_float_equal(w->grad[5], g1, 1e-6 + 1e-4 * fabsf(g1));
	/* backward twice without a forward is an error */
	assert_int_equal(model_backward(m, 0), FT_EINVAL);
	model_free(m);
	model_file_free(mf);
}

/* bf16 matmuls (fp32 accumulation) give nearly the fp32 loss and gradient direction. */
static void test_bf16_close_to_fp32(void **state)
{
	(void)state;
	struct model_file *mf = tiny_llama_mf(false, true, ROPE_HALF, 12);
	int32_t tok[B * T], tgt[B * T];
	batch(tok, tgt, 37, 4);
	float loss[2];
	float *g[2];
	size_t n = 0;
	for (int k = 0; k < 2; k++) {
		struct model_opts o = base_opts(METHOD_FULL);
		o.precision = k ? PRECISION_BF16 : PRECISION_FP32;
		struct diag d;
		diag_init(&d);
		struct model *m = NULL;
		assert_int_equal(model_create(&m, mf, &o, &d), 0);
		assert_int_equal(model_forward(m, tok, tgt, B, T, &loss[k], NULL), 0);
		assert_int_equal(model_backward(m, 0), 0);
		const struct model_param *w = model_param_find(m, "model.layers.0.self_attn.q_proj.weight");
		n = w->numel;
		g[k] = malloc(n * sizeof(float));
		memcpy(g[k], w->grad, n * sizeof(float));
		model_free(m);
	}
	assert_float_equal(loss[1], loss[0], 2e-2 * loss[0]);
	/* bf16 acted (natively, or by rounding the inputs on CPUs without bf16 matmuls) */
	assert_true(loss[1] != loss[0]);
	double dot = 0, n0 = 0, n1 = 0;
	for (size_t i = 0; i < n; i++) {
		dot += (double)g[0][i] * g[1][i];
		n0 += (double)g[0][i] * g[0][i];
		n1 += (double)g[1][i] * g[1][i];
	}
	assert_true(dot / sqrt(n0 * n1) > 0.99);
	free(g[0]);
	free(g[1]);
	model_file_free(mf);
}

/* prefix_projection under train.precision bf16: the MLP's matmuls round their inputs like
 * the other adapters' (the table moves), loss and the MLP's gradients stay close to
 * fp32's. */
static void test_prefix_projection_bf16(void **state)
{
	(void)state;
	struct model_file *mf = tiny_llama_mf(false, true, ROPE_HALF, 12);
	int32_t tok[B * T], tgt[B * T];
	batch(tok, tgt, 37, 4);
	float loss[2], *g[2], *tab[2];
	size_t n = 0, nt = 0;
	for (int k = 0; k < 2; k++) {
		struct model_opts o = base_opts(METHOD_PREFIX);
		o.prefix_tokens = 3;
		o.prefix_projection = true;
		o.precision = k ? PRECISION_BF16 : PRECISION_FP32;
		struct diag d;
		diag_init(&d);
		struct model *m = NULL;
		assert_int_equal(model_create(&m, mf, &o, &d), 0);
		assert_int_equal(model_forward(m, tok, tgt, B, T, &loss[k], NULL), 0);
		assert_int_equal(model_backward(m, 0), 0);
		const struct model_param *w =
			model_param_find(m, "prompt_encoder.transform.0.weight");
		const struct model_param *t = model_param_find(m, "prompt_embeddings");
		n = w->numel;
		nt = t->numel;
		g[k] = malloc(n * sizeof(float));
		tab[k] = malloc(nt * sizeof(float));
		assert_non_null(g[k] && tab[k]);
		memcpy(g[k], w->grad, n * sizeof(float));
		memcpy(tab[k], t->data, nt * sizeof(float));
		model_free(m);
	}
	assert_float_equal(loss[1], loss[0], 2e-2 * loss[0]);
	assert_true(memcmp(tab[0], tab[1], nt * sizeof(float)) != 0);
	double dot = 0, n0 = 0, n1 = 0;
	for (size_t i = 0; i < n; i++) {
		dot += (double)g[0][i] * g[1][i];
		n0 += (double)g[0][i] * g[0][i];
		n1 += (double)g[1][i] * g[1][i];
	}
	assert_true(n0 > 0 && dot / sqrt(n0 * n1) > 0.99);
	for (int k = 0; k < 2; k++) {
		free(g[k]);
		free(tab[k]);
	}
	model_file_free(mf);
}

/* IA3 and plain prefix tuning under train.precision bf16: the matmuls round their inputs
 * (the loss moves), the loss stays within 2 % of fp32's and the method's gradients point
 * the same way. */
static void test_ia3_prefix_bf16(void **state)
{
	(void)state;
	struct model_file *mf = tiny_llama_mf(false, true, ROPE_HALF, 14);
	int32_t tok[B * T], tgt[B * T];
	batch(tok, tgt, 37, 5);
	static const struct {
		enum method_type method;
		const char *param;
	} cases[] = {
		{METHOD_IA3, "model.layers.0.mlp.down_proj.ia3_l"},
		{METHOD_PREFIX, "prompt_embeddings"},
	};
	for (size_t c = 0; c < FT_ARRAY_LEN(cases); c++) {
		float loss[2], *g[2];
		size_t n = 0;
		for (int k = 0; k < 2; k++) {
			struct model_opts o = base_opts(cases[c].method);
			if (cases[c].method == METHOD_IA3)
				o.ff_auto = true;
			else
				o.prefix_tokens = 3;
			o.precision = k ? PRECISION_BF16 : PRECISION_FP32;
			struct diag d;
			diag_init(&d);
			struct model *m = NULL;
			if (model_create(&m, mf, &o, &d) != 0)
				fail_msg("%s: %s", cases[c].param, d.text);
			int frc = model_forward(m, tok, tgt, B, T, &loss[k], NULL);
			if (frc)
				fail_msg("%s: forward %d", cases[c].param, frc);
			assert_int_equal(model_backward(m, 0), 0);
			const struct model_param *w = model_param_find(m, cases[c].param);
			assert_non_null(w);
			n = w->numel;
			g[k] = malloc(n * sizeof(float));
			assert_non_null(g[k]);
			memcpy(g[k], w->grad, n * sizeof(float));
			model_free(m);
		}
		assert_true(loss[1] != loss[0]);
		assert_float_equal(loss[1], loss[0], 2e-2 * loss[0]);
		double dot = 0, n0 = 0, n1 = 0;
		for (size_t i = 0; i < n; i++) {
			dot += (double)g[0][i] * g[1][i];
			n0 += (double)g[0][i] * g[0][i];
			n1 += (double)g[1][i] * g[1][i];
		}
		print_message("%s bf16: loss %.6f (fp32 %.6f), gradient cosine %.5f\n",
			      cases[c].param, (double)loss[1], (double)loss[0], dot / sqrt(n0 * n1));
		assert_true(n0 > 0 && dot / sqrt(n0 * n1) > 0.99);
		free(g[0]);
		free(g[1]);
	}
	model_file_free(mf);
}

static void test_bad_inputs(void **state)
{
	(void)state;
	struct model_file *mf = tiny_llama_mf(true, false, ROPE_HALF, 10);
	struct diag d;
	diag_init(&d);
	struct model *m = NULL;
	struct model_opts o = base_opts(METHOD_LORA);
	const char *tg[] = {"nonexistent"};
	o.lora_rank = 2;
	o.targets = tg;
	o.n_targets = 1;
	assert_int_equal(model_create(&m, mf, &o, &d), FT_EINVAL);
	assert_non_null(strstr(d.text, "LoRA target 'nonexistent' matches no module"));
	/* One target of two matching nothing is refused too (PEFT refuses it; training only
	 * q_proj would be a different experiment than the one asked for), naming the target,
	 * the modules the model has and the nearest. */
	const char *tg2[] = {"q_proj", "vv_proj"};
	o.targets = tg2;
	o.n_targets = 2;
	diag_init(&d);
	assert_int_equal(model_create(&m, mf, &o, &d), FT_EINVAL);
	assert_non_null(strstr(d.text, "'vv_proj'"));
	assert_non_null(strstr(d.text, "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj"));
	assert_non_null(strstr(d.hint, "'v_proj'"));
	int bad = -1;
	diag_init(&d);
	assert_int_equal(model_check_method(&mf->hp, &o, &bad, &d), FT_EINVAL);
	assert_int_equal(bad, 1);
	/* A dotted component and a layer are names too; all-linear always matches. */
	const char *tg3[] = {"self_attn", "1.mlp"};
	o.targets = tg3;
	diag_init(&d);
	assert_int_equal(model_check_method(&mf->hp, &o, &bad, &d), 0);
	const char *tg4[] = {"7.mlp"};
	o.targets = tg4;
	o.n_targets = 1;
	diag_init(&d);
	assert_int_equal(model_check_method(&mf->hp, &o, &bad, &d), FT_EINVAL);
	/* freeze: names and layers */
	o = base_opts(METHOD_FREEZE);
	const char *tr[] = {"mlp", "lm_haed"};
	o.trainable = tr;
	o.n_trainable = 2;
	diag_init(&d);
	assert_int_equal(model_create(&m, mf, &o, &d), FT_EINVAL);
	assert_non_null(strstr(d.text, "'lm_haed' matches no parameter"));
	assert_non_null(strstr(d.hint, "'lm_head'"));
	o.n_trainable = 1;
	o.layers_first = 0;
	o.layers_last = 5;
	diag_init(&d);
	assert_int_equal(model_create(&m, mf, &o, &d), FT_EINVAL);
	assert_non_null(strstr(d.text, "method.layers.last is 5"));
	o.layers_first = 1;
	o.layers_last = 0;
	diag_init(&d);
	assert_int_equal(model_check_method(&mf->hp, &o, &bad, &d), FT_EINVAL);
	/* GPT-2 names its own modules */
	struct model_file *g = tiny_gpt2_mf(5);
	o = base_opts(METHOD_LORA);
	o.lora_rank = 2;
	const char *tg5[] = {"c_attn", "q_proj"};
	o.targets = tg5;
	o.n_targets = 2;
	diag_init(&d);
	assert_int_equal(model_create(&m, g, &o, &d), FT_EINVAL);
	assert_non_null(strstr(d.text, "'q_proj' matches no module of this GPT-2 model"));
	assert_non_null(strstr(d.text, "c_attn, c_proj, c_fc"));
	model_file_free(g);
	/* a missing tensor is named */
	free(mf->tensors[3].name);
	mf->tensors[3].name = strdup("renamed");
	diag_init(&d);
	o = base_opts(METHOD_NONE);
	assert_int_equal(model_create(&m, mf, &o, &d), FT_EINVAL);
	assert_non_null(strstr(d.text, "model.layers.0.self_attn.k_proj.weight"));
	model_file_free(mf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_llama_full),
		cmocka_unit_test(test_llama_full_untied_bias_interleaved),
		cmocka_unit_test(test_llama_freeze),
		cmocka_unit_test(test_llama_lora),
		cmocka_unit_test(test_dora),
		cmocka_unit_test(test_dora_checkpointing_bf16),
		cmocka_unit_test(test_ia3),
		cmocka_unit_test(test_prefix),
		cmocka_unit_test(test_prefix_projection),
		cmocka_unit_test(test_prefix_projection_bf16),
		cmocka_unit_test(test_ia3_prefix_bf16),
		cmocka_unit_test(test_gpt2_methods),
		cmocka_unit_test(test_gemma3_methods),
		cmocka_unit_test(test_gemma3_window),
		cmocka_unit_test(test_head_rows_only),
		cmocka_unit_test(test_loss_mask_and_scale),
		cmocka_unit_test(test_bf16_close_to_fp32),
		cmocka_unit_test(test_bad_inputs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
