/* selftest: the checks behind `ftlab selftest [--backend cpu|cuda]`. Builds tiny random
 * models in memory
 * (llama with both RoPE styles, GQA, LoRA with dropout; GPT-2) and runs forward, backward
 * and one AdamW step. cpu: gradients against central finite differences of the loss and
 * AdamW against a double-precision step. cuda: every result against the CPU backend
 * within stated tolerances, plus the attention kernels (probabilities stored and fused)
 * op by op. */
#include "backends/native/selftest.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/native/io/model_file.h"
#include "backends/native/model/model.h"
#include "backends/native/ops/cuda/ops_cuda.h"
#include "backends/native/ops/ops.h"
#include "common/rng.h"
#include "common/util.h"
#include "backends/native/engine.h"
#include "common/banned.h"

/* Tolerances (also in docs/cuda.md). TF32 keeps 10 mantissa bits: relative errors near
 * 1e-3 per product, which accumulate into the gradients of a 2-layer model. */
#define TOL_LOSS_REL 1e-3    /* |loss_cuda - loss_cpu| / |loss_cpu| */
#define TOL_GRAD_REL 1e-2    /* ||g_cuda - g_cpu|| / ||g_cpu|| per tensor */
#define TOL_GRAD_REL_BF16 5e-2
#define TOL_STEP_REL 5e-2    /* AdamW step: ||dp_cuda - dp_cpu|| / ||dp_cpu|| per tensor */
#define TOL_OP_REL 1e-4      /* attention op by op (no TF32 inside) */
/* With TF32 off (plain fp32 matmuls) only summation order and FMA differ. */
#define TOL_LOSS_REL_FP32 2e-5
#define TOL_GRAD_REL_FP32 1e-3
#define FD_EPS 1e-2f
#define FD_ABS 2e-4
#define FD_REL 1e-2

struct st_case {
	const char *label;
	enum model_arch arch;
	enum rope_style rope;
	enum method_type method;
	enum precision precision;
	bool prefix_projection; /* prefix: through PEFT's prefix_projection MLP */
};

static const struct st_case st_cases[] = {
	{"llama, rotate-half RoPE, GQA, full, fp32", ARCH_LLAMA, ROPE_HALF, METHOD_FULL,
	 PRECISION_FP32, false},
	{"llama, interleaved RoPE, GQA, LoRA r4 + dropout, fp32", ARCH_LLAMA, ROPE_INTERLEAVED,
	 METHOD_LORA, PRECISION_FP32, false},
	{"gpt2, LayerNorm, GELU, biases, full, fp32", ARCH_GPT2, ROPE_NONE, METHOD_FULL,
	 PRECISION_FP32, false},
	{"llama, rotate-half RoPE, GQA, DoRA r4 + dropout, fp32", ARCH_LLAMA, ROPE_HALF,
	 METHOD_DORA, PRECISION_FP32, false},
	{"llama, interleaved RoPE, GQA, IA3 (k, v, down), fp32", ARCH_LLAMA, ROPE_INTERLEAVED,
	 METHOD_IA3, PRECISION_FP32, false},
	{"llama, rotate-half RoPE, GQA, prefix (3 tokens), fp32", ARCH_LLAMA, ROPE_HALF,
	 METHOD_PREFIX, PRECISION_FP32, false},
	{"llama, interleaved RoPE, GQA, prefix + MLP, fp32", ARCH_LLAMA,
	 ROPE_INTERLEAVED, METHOD_PREFIX, PRECISION_FP32, true},
	{"llama, interleaved RoPE, adapters pfeiffer gelu, fp32", ARCH_LLAMA,
	 ROPE_INTERLEAVED, METHOD_ADAPTER, PRECISION_FP32, false},
	{"gemma3, window 4, q/k norms, GeGLU, full, fp32", ARCH_GEMMA3, ROPE_HALF, METHOD_FULL,
	 PRECISION_FP32, false},
	{"gemma3, window 4, adapters houlsby swish, fp32", ARCH_GEMMA3, ROPE_HALF,
	 METHOD_ADAPTER, PRECISION_FP32, false},
	{"gemma3, window 4, LoRA r4 all linear, fp32", ARCH_GEMMA3, ROPE_HALF, METHOD_LORA,
	 PRECISION_FP32, false},
	{"llama, rotate-half RoPE, full, bf16 matmuls", ARCH_LLAMA, ROPE_HALF, METHOD_FULL,
	 PRECISION_BF16, false},
};

#define ST_B 2
#define ST_T 9
#define ST_C 32
#define ST_V 53

/* ---- a tiny random model_file ---- */

static int st_tensor(struct model_file *mf, struct rng *r, const char *name, int64_t d0,
		     int64_t d1, float scale, float offset)
{
	struct mf_tensor *t = &mf->tensors[mf->n_tensors];
	t->name = strdup(name);
	t->ndim = d1 > 1 ? 2 : 1;
	t->shape[0] = d0;
	t->shape[1] = d1 > 1 ? d1 : 0;
	t->numel = (size_t)d0 * (size_t)d1;
	t->data = malloc(t->numel * sizeof(float));
	if (!t->name || !t->data) {
		free(t->name);
		free(t->data);
		return FT_ENOMEM;
	}
	mf->n_tensors++;
	for (size_t i = 0; i < t->numel; i++)
		t->data[i] = offset + scale * (2.0f * rng_uniform_f(r) - 1.0f);
	snprintf(t->src_type, sizeof t->src_type, "F32");
	return 0;
}

static struct model_file *st_model_file(const struct st_case *c)
{
	struct model_file *mf = calloc(1, sizeof *mf);
	if (!mf)
		return NULL;
	struct model_hparams *hp = &mf->hp;
	bool g3 = c->arch == ARCH_GEMMA3, llama = c->arch == ARCH_LLAMA || g3;
	int C = ST_C, V = ST_V, F = llama ? 48 : 4 * ST_C, kvd = g3 ? 32 : llama ? 16 : ST_C;
	int qd = g3 ? 64 : C; /* gemma3: 4 heads of 16 (not C / heads) */
	hp->arch = c->arch;
	hp->n_layer = 2;
	hp->n_embd = C;
	hp->n_head = 4;
	hp->n_head_kv = llama ? 2 : 4;
	hp->head_dim = g3 ? 16 : 8;
	hp->n_ff = F;
	hp->n_vocab = V;
	hp->n_ctx_train = 16;
	hp->norm_eps = 1e-5f;
	hp->rope_theta = 10000.0f;
	hp->rope_style = c->rope;
	hp->tied_embeddings = !llama || g3;
	if (g3) { /* layer 0 local (window 4 < ST_T), layer 1 global */
		hp->sliding_window = 4;
		hp->swa_pattern = 2;
		hp->rope_theta = 1e6f;
		hp->rope_theta_local = 10000.0f;
		hp->attn_scale = 1.0f / sqrtf(12.0f);
	}
	mf->path = strdup(g3 ? "selftest-gemma3" : llama ? "selftest-llama" : "selftest-gpt2");
	mf->tensors = calloc(64, sizeof *mf->tensors);
	if (!mf->path || !mf->tensors) {
		model_file_free(mf);
		return NULL;
	}
	struct rng r;
	rng_seed(&r, 20240607, (uint64_t)c->arch * 4 + (uint64_t)c->rope);
	char nm[128];
	int rc = 0;
#define ST_T2(fmt, a, b, s, o)                                                                \
	do {                                                                                \
		snprintf(nm, sizeof nm, fmt, l);                                            \
		rc = rc ? rc : st_tensor(mf, &r, nm, a, b, s, o);                           \
	} while (0)
	if (llama) {
		rc = st_tensor(mf, &r, "model.embed_tokens.weight", V, C, 0.5f, 0);
		for (int l = 0; l < 2; l++) {
			ST_T2("model.layers.%d.input_layernorm.weight", C, 1, 0.2f, 1.0f);
			ST_T2("model.layers.%d.self_attn.q_proj.weight", qd, C, 0.3f, 0);
			ST_T2("model.layers.%d.self_attn.k_proj.weight", kvd, C, 0.3f, 0);
			ST_T2("model.layers.%d.self_attn.v_proj.weight", kvd, C, 0.3f, 0);
			ST_T2("model.layers.%d.self_attn.o_proj.weight", C, qd, 0.3f, 0);
			ST_T2("model.layers.%d.post_attention_layernorm.weight", C, 1, 0.2f, 1.0f);
			if (g3) {
				ST_T2("model.layers.%d.self_attn.q_norm.weight", 16, 1, 0.2f, 1.0f);
				ST_T2("model.layers.%d.self_attn.k_norm.weight", 16, 1, 0.2f, 1.0f);
				ST_T2("model.layers.%d.pre_feedforward_layernorm.weight", C, 1, 0.2f, 1.0f);
				ST_T2("model.layers.%d.post_feedforward_layernorm.weight", C, 1, 0.2f,
				      1.0f);
			}
			ST_T2("model.layers.%d.mlp.gate_proj.weight", F, C, 0.3f, 0);
			ST_T2("model.layers.%d.mlp.up_proj.weight", F, C, 0.3f, 0);
			ST_T2("model.layers.%d.mlp.down_proj.weight", C, F, 0.3f, 0);
		}
		rc = rc ? rc : st_tensor(mf, &r, "model.norm.weight", C, 1, 0.2f, 1.0f);
		if (!g3)
			rc = rc ? rc : st_tensor(mf, &r, "lm_head.weight", V, C, 0.5f, 0);
	} else {
		rc = st_tensor(mf, &r, "transformer.wte.weight", V, C, 0.5f, 0);
		rc = rc ? rc : st_tensor(mf, &r, "transformer.wpe.weight", 16, C, 0.3f, 0);
		for (int l = 0; l < 2; l++) {
			ST_T2("transformer.h.%d.ln_1.weight", C, 1, 0.2f, 1.0f);
			ST_T2("transformer.h.%d.ln_1.bias", C, 1, 0.2f, 0);
			ST_T2("transformer.h.%d.attn.c_attn.weight", (int64_t)3 * C, C, 0.3f, 0);
			ST_T2("transformer.h.%d.attn.c_attn.bias", (int64_t)3 * C, 1, 0.2f, 0);
			ST_T2("transformer.h.%d.attn.c_proj.weight", C, C, 0.3f, 0);
			ST_T2("transformer.h.%d.attn.c_proj.bias", C, 1, 0.2f, 0);
			ST_T2("transformer.h.%d.ln_2.weight", C, 1, 0.2f, 1.0f);
			ST_T2("transformer.h.%d.ln_2.bias", C, 1, 0.2f, 0);
			ST_T2("transformer.h.%d.mlp.c_fc.weight", F, C, 0.3f, 0);
			ST_T2("transformer.h.%d.mlp.c_fc.bias", F, 1, 0.2f, 0);
			ST_T2("transformer.h.%d.mlp.c_proj.weight", C, F, 0.3f, 0);
			ST_T2("transformer.h.%d.mlp.c_proj.bias", C, 1, 0.2f, 0);
		}
		rc = rc ? rc : st_tensor(mf, &r, "transformer.ln_f.weight", C, 1, 0.2f, 1.0f);
		rc = rc ? rc : st_tensor(mf, &r, "transformer.ln_f.bias", C, 1, 0.2f, 0);
	}
#undef ST_T2
	if (rc) {
		model_file_free(mf);
		return NULL;
	}
	return mf;
}

/* Tokens and targets (next token; a few masked, as a prompt would be). */
static void st_batch(int32_t *tok, int32_t *tgt)
{
	struct rng r;
	rng_seed(&r, 99, 3);
	for (int i = 0; i < ST_B * ST_T; i++)
		tok[i] = (int32_t)rng_below(&r, ST_V);
	for (int b = 0; b < ST_B; b++)
		for (int t = 0; t < ST_T; t++) {
			int i = b * ST_T + t;
			tgt[i] = t + 1 < ST_T ? tok[i + 1] : (int32_t)((tok[i] * 7 + 3) % ST_V);
			if (t < 2 + b)
				tgt[i] = -1;
		}
}

static const char *const st_lora_targets[] = {"q_proj", "k_proj", "v_proj", "o_proj",
					      "gate_proj", "up_proj", "down_proj"};

static int st_model(struct model **out, const struct model_file *mf, const struct st_case *c,
		    const struct ops *ops, struct diag *d)
{
	struct model_opts o;
	memset(&o, 0, sizeof o);
	o.method = c->method;
	o.layers_first = o.layers_last = -1;
	o.precision = c->precision;
	o.max_batch = ST_B;
	o.max_seq = ST_T;
	o.seed = 7;
	o.ops = ops;
	if (c->method == METHOD_LORA || c->method == METHOD_DORA) {
		o.lora_rank = 4;
		o.lora_alpha = 8.0f;
		o.lora_dropout = 0.25f;
		o.targets = st_lora_targets;
		o.n_targets = FT_ARRAY_LEN(st_lora_targets);
	}
	o.ff_auto = c->method == METHOD_IA3; /* PEFT's default targets for llama */
	/* bottleneck adapters: llama pfeiffer with gelu, Gemma 3 houlsby with swish; both at
	 * both positions, bottleneck 32 / 4 */
	o.bn_pfeiffer = c->arch != ARCH_GEMMA3;
	o.bn_attn = o.bn_mlp = true;
	o.bn_reduction = 4;
	o.bn_act = c->arch == ARCH_GEMMA3 ? OPS_ACT_SILU : OPS_ACT_GELU;
	o.prefix_tokens = 3;
	o.prefix_projection = c->prefix_projection;
	o.prefix_hidden = c->prefix_projection ? 12 : 0;
	int rc = model_create(out, mf, &o, d);
	if (rc)
		return rc;
	if (c->method == METHOD_IA3 || c->method == METHOD_ADAPTER) {
		/* IA3 starts at ones, adapters near zero: move them to a general point */
		struct rng r;
		rng_seed(&r, 6, 6);
		for (size_t i = 0; i < model_n_trainable(*out); i++) {
			const struct model_param *p = model_trainable(*out, i);
			float *h = malloc(p->numel * sizeof(float));
			if (!h)
				return diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
			for (size_t j = 0; j < p->numel; j++)
				h[j] = (c->method == METHOD_IA3 ? 1.0f : 0.0f) +
				       0.3f * (2.0f * rng_uniform_f(&r) - 1.0f);
			ops->to_device(p->data, h, p->numel * sizeof(float));
			free(h);
		}
	}
	if (c->method == METHOD_LORA || c->method == METHOD_DORA) {
		/* PEFT starts B at 0, which makes dA = 0: give B values so both are checked */
		struct rng r;
		rng_seed(&r, 5, 5);
		for (size_t i = 0; i < model_n_trainable(*out); i++) {
			const struct model_param *p = model_trainable(*out, i);
			if (!strstr(p->name, "lora_B"))
				continue;
			float *h = malloc(p->numel * sizeof(float));
			if (!h)
				return diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
			for (size_t j = 0; j < p->numel; j++)
				h[j] = 0.2f * (2.0f * rng_uniform_f(&r) - 1.0f);
			ops->to_device(p->data, h, p->numel * sizeof(float));
			free(h);
		}
	}
	return 0;
}

/* Host copy of a backend buffer (caller frees). */
static float *st_host(const struct ops *ops, const float *dev, size_t n)
{
	float *h = malloc((n ? n : 1) * sizeof(float));
	if (h)
		ops->to_host(h, dev, n * sizeof(float));
	return h;
}

static double st_rel(const float *a, const float *b, size_t n)
{
	double num = 0, den = 0;
	for (size_t i = 0; i < n; i++) {
		double e = (double)a[i] - b[i];
		num += e * e;
		den += (double)b[i] * b[i];
	}
	return den > 0 ? sqrt(num / den) : sqrt(num);
}

#define ADAM_LR 1e-2f
#define ADAM_B1 0.9f
#define ADAM_B2 0.999f
#define ADAM_EPS 1e-8f
#define ADAM_WD 0.01f

/* Every forward draws the same LoRA dropout masks (the counter advances per forward). */
static float st_forward(struct model *m, const int32_t *tok, const int32_t *tgt, int *rc)
{
	model_set_rng_counter(m, 0);
	float loss = 0;
	long nt = 0;
	*rc = model_forward(m, tok, tgt, ST_B, ST_T, &loss, &nt);
	return loss;
}

/* ---- cpu: finite differences and a double-precision AdamW step ---- */

static int st_cpu_case(const struct st_case *c, bool *ok, struct diag *d)
{
	struct model_file *mf = st_model_file(c);
	if (!mf)
		return diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory building a tiny model");
	struct model *m = NULL;
	int32_t tok[ST_B * ST_T], tgt[ST_B * ST_T];
	st_batch(tok, tgt);
	int rc = st_model(&m, mf, c, ops_cpu(), d);
	if (rc)
		goto done;
	float loss = st_forward(m, tok, tgt, &rc);
	if (!rc)
		rc = model_backward(m, 0.0f);
	if (rc) {
		rc = diag_set(d, rc, NULL, 0, 0, "the tiny model's forward/backward failed");
		goto done;
	}
	int checked = 0, bad = 0;
	double worst = 0;
	struct rng r;
	rng_seed(&r, 11, 11);
	for (size_t i = 0; i < model_n_trainable(m); i++) {
		const struct model_param *p = model_trainable(m, i);
		/* DoRA's A and B gradients treat the weight norm as a constant (PEFT's detach),
		 * which a finite difference of the loss does not: only the magnitude is
		 * differenced here (the unit tests difference A and B with the norm held) */
		if (c->method == METHOD_DORA && !strstr(p->name, "lora_magnitude_vector"))
			continue;
		size_t jmax = 0;
		for (size_t j = 1; j < p->numel; j++)
			if (fabsf(p->grad[j]) > fabsf(p->grad[jmax]))
				jmax = j;
		size_t picks[2] = {jmax, (size_t)rng_below(&r, p->numel)};
		for (int s = 0; s < 2; s++) {
			size_t j = picks[s];
			float keep = p->data[j], g = p->grad[j];
			p->data[j] = keep + FD_EPS;
			float lp = st_forward(m, tok, tgt, &rc);
			p->data[j] = keep - FD_EPS;
			float lm = rc ? 0 : st_forward(m, tok, tgt, &rc);
			p->data[j] = keep;
			if (rc) {
				rc = diag_set(d, rc, NULL, 0, 0, "forward failed");
				goto done;
			}
			double fd = ((double)lp - lm) / (2.0 * FD_EPS);
			double err = fabs(fd - g), lim = FD_ABS + FD_REL * fmax(fabs(fd), fabs(g));
			worst = fmax(worst, err / lim);
			checked++;
			if (err > lim) {
				bad++;
				printf("    %s[%zu]: gradient %.6g, finite difference %.6g\n", p->name, j,
				       (double)g, fd);
			}
		}
	}
	/* AdamW on the first trainable tensor against a step computed in double */
	const struct model_param *p = model_trainable(m, 0);
	size_t n = p->numel;
	float *mm = calloc(n, sizeof(float)), *vv = calloc(n, sizeof(float));
	double *ref = malloc(n * sizeof(double));
	double adam_err = 0;
	if (!mm || !vv || !ref) {
		free(mm);
		free(vv);
		free(ref);
		rc = diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
		goto done;
	}
	for (size_t j = 0; j < n; j++) {
		double g = p->grad[j], mo = (1.0 - ADAM_B1) * g, vo = (1.0 - ADAM_B2) * g * g;
		double mh = mo / (1.0 - ADAM_B1), vh = vo / (1.0 - ADAM_B2);
		ref[j] = p->data[j] - ADAM_LR * (mh / (sqrt(vh) + ADAM_EPS) + ADAM_WD * p->data[j]);
	}
	struct ops_adamw_hp ah = ops_adamw_prepare(ADAM_LR, ADAM_B1, ADAM_B2, ADAM_EPS, ADAM_WD, 1);
	ops_cpu()->adamw(p->data, p->grad, mm, vv, n, &ah);
	for (size_t j = 0; j < n; j++)
		adam_err = fmax(adam_err, fabs(p->data[j] - ref[j]));
	free(mm);
	free(vv);
	free(ref);
	bool adam_ok = adam_err <= 1e-5; /* lr 1e-2: 1e-3 of the step */
	printf("  %-54s loss %.5f, %d gradients vs finite differences: %s (worst %.2f of "
	       "tolerance), AdamW vs double: %s (max err %.1e)\n",
	       c->label, (double)loss, checked, bad ? "FAIL" : "ok", worst,
	       adam_ok ? "ok" : "FAIL", adam_err);
	if (bad || !adam_ok)
		*ok = false;
done:
	model_free(m);
	model_file_free(mf);
	return rc;
}

/* ---- cuda: against the cpu backend ---- */

static int st_cuda_case(const struct st_case *c, const struct selftest_target *tg, bool tf32,
			bool *ok, struct diag *d)
{
	const struct ops *cu = tg->ops;
	struct model_file *mf = st_model_file(c);
	if (!mf)
		return diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory building a tiny model");
	struct model *mc = NULL, *mg = NULL;
	int32_t tok[ST_B * ST_T], tgt[ST_B * ST_T];
	st_batch(tok, tgt);
	int rc = st_model(&mc, mf, c, ops_cpu(), d);
	if (!rc)
		rc = st_model(&mg, mf, c, cu, d);
	if (rc)
		goto done;
	float lc = st_forward(mc, tok, tgt, &rc);
	float lg = rc ? 0 : st_forward(mg, tok, tgt, &rc);
	if (!rc)
		rc = model_backward(mc, 0.0f);
	if (!rc)
		rc = model_backward(mg, 0.0f);
	if (!rc)
		rc = tg->check(d);
	if (rc) {
		if (!d->code)
			diag_set(d, rc, NULL, 0, 0, "the tiny model's forward/backward failed");
		goto done;
	}
	bool bf = c->precision == PRECISION_BF16;
	double loss_rel = fabs((double)lg - lc) / fabs((double)lc);
	double tol_loss = bf ? 1e-2 : tf32 ? TOL_LOSS_REL : TOL_LOSS_REL_FP32;
	double tol_grad = bf ? TOL_GRAD_REL_BF16 : tf32 ? TOL_GRAD_REL : TOL_GRAD_REL_FP32;
	double worst_grad = 0, worst_step = 0;
	const char *worst_name = "";
	bool case_ok = loss_rel <= tol_loss;
	for (size_t i = 0; i < model_n_trainable(mc); i++) {
		const struct model_param *pc = model_trainable(mc, i);
		const struct model_param *pg = model_trainable(mg, i);
		size_t n = pc->numel;
		float *gg = st_host(cu, pg->grad, n);
		float *mm = calloc(n, sizeof(float)), *vv = calloc(n, sizeof(float));
		float *before = malloc(n * sizeof(float));
		float *dm = cu->alloc(2 * n * sizeof(float));
		if (!gg || !mm || !vv || !before || !dm) {
			free(gg);
			free(mm);
			free(vv);
			free(before);
			cu->free(dm);
			rc = tg->check(d);
			if (!rc)
				rc = diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
			goto done;
		}
		double gr = st_rel(gg, pc->grad, n);
		if (gr > worst_grad) {
			worst_grad = gr;
			worst_name = pc->name;
		}
		if (gr > tol_grad) {
			case_ok = false;
			printf("    %s: gradient relative error %.2e > %.0e\n", pc->name, gr, tol_grad);
		}
		/* one AdamW step on both; compare the steps taken */
		memcpy(before, pc->data, n * sizeof(float));
		struct ops_adamw_hp ah = ops_adamw_prepare(ADAM_LR, ADAM_B1, ADAM_B2, ADAM_EPS,
							   ADAM_WD, 1);
		ops_cpu()->adamw(pc->data, pc->grad, mm, vv, n, &ah);
		cu->adamw(pg->data, pg->grad, dm, dm + n, n, &ah);
		float *pgh = st_host(cu, pg->data, n);
		if (pgh) {
			/* steps where |g| is tiny are sign(g) lr either way: compare where
			 * the gradient is not negligible */
			double gmax = 0;
			for (size_t j = 0; j < n; j++)
				gmax = fmax(gmax, fabs(pc->grad[j]));
			double num = 0, den = 0;
			for (size_t j = 0; j < n; j++) {
				if (fabs(pc->grad[j]) < 1e-2 * gmax)
					continue;
				double sc = (double)pc->data[j] - before[j];
				double sg = (double)pgh[j] - before[j];
				num += (sg - sc) * (sg - sc);
				den += sc * sc;
			}
			double sr = den > 0 ? sqrt(num / den) : 0;
			worst_step = fmax(worst_step, sr);
			if (sr > TOL_STEP_REL) {
				case_ok = false;
				printf("    %s: AdamW step relative error %.2e > %.0e\n", pc->name, sr,
				       TOL_STEP_REL);
			}
		}
		free(pgh);
		free(gg);
		free(mm);
		free(vv);
		free(before);
		cu->free(dm);
	}
	rc = tg->check(d);
	if (rc)
		goto done;
	printf("  %-54s %-10s loss cpu %.6f cuda %.6f (rel %.1e, tol %.0e); gradients worst rel "
	       "%.1e (%s, tol %.0e); AdamW step worst rel %.1e (tol %.0e): %s\n",
	       c->label, bf ? "" : tf32 ? "TF32" : "TF32 off", (double)lc, (double)lg, loss_rel, tol_loss, worst_grad, worst_name,
	       tol_grad, worst_step, TOL_STEP_REL, case_ok ? "ok" : "FAIL");
	if (!case_ok)
		*ok = false;
done:
	model_free(mg);
	model_free(mc);
	model_file_free(mf);
	return rc;
}

/* Attention op by op, head_dim 64 and 37 positions: stored probabilities and the fused
 * (att NULL) forward and backward against the CPU. */
static int st_cuda_attention(const struct selftest_target *tg, bool *ok, struct diag *d)
{
	const struct ops *cu = tg->ops;
	enum { B = 2, T = 37, NH = 4, NKV = 2, HD = 64 };
	size_t nq = (size_t)B * T * NH * HD, nk = (size_t)B * T * NKV * HD;
	size_t na = (size_t)B * NH * T * T;
	size_t host_n = 6 * nq + 6 * nk + na;
	float *h = malloc(host_n * sizeof(float));
	float *dv_ = cu->alloc((4 * nq + 4 * nk + na) * sizeof(float));
	int rc = 0;
	if (!h || !dv_) {
		free(h);
		cu->free(dv_);
		rc = tg->check(d);
		return rc ? rc : diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
	}
	float *q = h, *k = q + nq, *v = k + nk, *dout = v + nk, *out = dout + nq, *att = out + nq;
	float *dq = att + na, *dk = dq + nq, *dv = dk + nk, *g_out = dv + nk, *g_dq = g_out + nq,
	      *g_dk = g_dq + nq, *g_dv = g_dk + nk;
	struct rng r;
	rng_seed(&r, 3, 9);
	for (size_t i = 0; i < nq; i++) {
		q[i] = 2.0f * rng_uniform_f(&r) - 1.0f;
		dout[i] = 2.0f * rng_uniform_f(&r) - 1.0f;
	}
	for (size_t i = 0; i < nk; i++) {
		k[i] = 2.0f * rng_uniform_f(&r) - 1.0f;
		v[i] = 2.0f * rng_uniform_f(&r) - 1.0f;
	}
	float sc = 1.0f / sqrtf((float)HD);
	ops_cpu()->attention_forward(out, att, q, k, v, B, T, T, NH, NKV, HD, NULL, sc, 0);
	ops_cpu()->attention_backward(dq, dk, dv, dout, att, q, k, v, B, T, NH, NKV, HD, sc, 0);
	float *Q = dv_, *K = Q + nq, *V = K + nk, *DO = V + nk, *O = DO + nq, *DQ = O + nq;
	float *DK = DQ + nq, *DV = DK + nk, *ATT = DV + nk;
	cu->to_device(Q, q, nq * sizeof(float));
	cu->to_device(K, k, nk * sizeof(float));
	cu->to_device(V, v, nk * sizeof(float));
	cu->to_device(DO, dout, nq * sizeof(float));
	const char *names[2] = {"stored probabilities", "fused (no T x T buffer)"};
	for (int mode = 0; mode < 2; mode++) {
		float *A = mode == 0 ? ATT : NULL;
		cu->attention_forward(O, A, Q, K, V, B, T, T, NH, NKV, HD, NULL, sc, 0);
		cu->attention_backward(DQ, DK, DV, DO, A, Q, K, V, B, T, NH, NKV, HD, sc, 0);
		cu->to_host(g_out, O, nq * sizeof(float));
		cu->to_host(g_dq, DQ, nq * sizeof(float));
		cu->to_host(g_dk, DK, nk * sizeof(float));
		cu->to_host(g_dv, DV, nk * sizeof(float));
		rc = tg->check(d);
		if (rc)
			break;
		double eo = st_rel(g_out, out, nq), eq = st_rel(g_dq, dq, nq);
		double ek = st_rel(g_dk, dk, nk), ev = st_rel(g_dv, dv, nk);
		bool good = eo <= TOL_OP_REL && eq <= TOL_OP_REL && ek <= TOL_OP_REL &&
			    ev <= TOL_OP_REL;
		printf("  attention B2 T37 heads 4/2 hd64, %-24s out %.1e dq %.1e dk %.1e dv %.1e "
		       "(rel, tol %.0e): %s\n",
		       names[mode], eo, eq, ek, ev, TOL_OP_REL, good ? "ok" : "FAIL");
		if (!good)
			*ok = false;
	}
	free(h);
	cu->free(dv_);
	return rc;
}

int selftest_cpu(bool *ok, struct diag *d)
{
	int rc = 0;
	for (size_t i = 0; i < FT_ARRAY_LEN(st_cases) && !rc; i++)
		if (st_cases[i].precision == PRECISION_FP32)
			rc = st_cpu_case(&st_cases[i], ok, d);
	return rc;
}

int selftest_against_cpu(const struct selftest_target *t, bool *ok, struct diag *d)
{
	int rc = 0;
	/* every case with the default TF32 matmuls, then the fp32 ones with TF32 off under
	 * tighter tolerances */
	for (size_t i = 0; i < FT_ARRAY_LEN(st_cases) && !rc; i++)
		rc = st_cuda_case(&st_cases[i], t, true, ok, d);
	t->set_tf32(false);
	for (size_t i = 0; i < FT_ARRAY_LEN(st_cases) && !rc; i++)
		if (st_cases[i].precision == PRECISION_FP32)
			rc = st_cuda_case(&st_cases[i], t, false, ok, d);
	t->set_tf32(true);
	if (!rc)
		rc = st_cuda_attention(t, ok, d);
	return rc;
}

int engine_selftest(const char *want, bool *ok, struct diag *d)
{
	*ok = true;
	char why[512] = "";
	struct ops_cuda_device dev;
	bool have_cuda = ops_cuda_probe(&dev, why, sizeof why) == 0;
	if (want && strcmp(want, "cuda") == 0 && !have_cuda)
		return diag_set(d, FT_EINVAL, "", 0, 0, "%s", why);
	bool use_cuda = want ? strcmp(want, "cuda") == 0 : have_cuda;
	if (!use_cuda) {
		printf("selftest: cpu backend against finite differences and a double-precision "
		       "AdamW step (%s)\n",
		       have_cuda ? "a CUDA device is present: --backend cuda compares it" : why);
		return selftest_cpu(ok, d);
	}
	char line[600];
	ops_cuda_describe(line, sizeof line, &dev);
	printf("selftest: cuda backend against the cpu backend on %s\n", line);
	struct selftest_target t = {ops_cuda(), ops_cuda_set_tf32, ops_cuda_check};
	if (!t.ops) {
		int rc = ops_cuda_check(d);
		return rc ? rc : diag_set(d, FT_EIO, NULL, 0, 0, "the CUDA backend did not start");
	}
	return selftest_against_cpu(&t, ok, d);
}
