/* tiny_weights: small random models in memory (see tiny_weights.h). */
#include "tests/unit/tiny_weights.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "common/banned.h"

/* ---- a tiny random model_file in memory ---- */

static void add_tensor(struct model_file *mf, struct rng *r, const char *name, int64_t d0,
		       int64_t d1, float scale, float offset)
{
	struct mf_tensor *t = &mf->tensors[mf->n_tensors++];
	t->name = strdup(name);
	t->ndim = d1 > 1 ? 2 : 1;
	t->shape[0] = d0;
	t->shape[1] = d1 > 1 ? d1 : 0;
	t->numel = (size_t)d0 * (size_t)d1;
	t->data = malloc(t->numel * sizeof(float));
	for (size_t i = 0; i < t->numel; i++)
		t->data[i] = offset + scale * (2.0f * rng_uniform_f(r) - 1.0f);
	snprintf(t->src_type, sizeof t->src_type, "F32");
}

struct model_file *tiny_llama_mf(bool tied, bool bias, enum rope_style rs, uint64_t seed)
{
	struct model_file *mf = calloc(1, sizeof *mf);
	struct model_hparams *hp = &mf->hp;
	hp->arch = ARCH_LLAMA;
	hp->n_layer = 2;
	hp->n_embd = 16;
	hp->n_head = 4;
	hp->n_head_kv = 2;
	hp->head_dim = 4;
	hp->n_ff = 24;
	hp->n_vocab = 37;
	hp->n_ctx_train = 64;
	hp->norm_eps = 1e-5f;
	hp->rope_theta = 10000.0f;
	hp->rope_style = rs;
	hp->tied_embeddings = tied;
	hp->qkv_bias = bias;
	mf->path = strdup("tiny-llama");
	mf->tensors = calloc(64, sizeof *mf->tensors);
	struct rng r;
	rng_seed(&r, seed, 1);
	int C = 16, F = 24, V = 37, qd = 16, kvd = 8;
	char nm[128];
	add_tensor(mf, &r, "model.embed_tokens.weight", V, C, 0.5f, 0);
	for (int l = 0; l < 2; l++) {
#define T2(sub, a, b, s, o)                                                                   \
	do {                                                                                \
		snprintf(nm, sizeof nm, "model.layers.%d.%s", l, sub);                      \
		add_tensor(mf, &r, nm, a, b, s, o);                                         \
	} while (0)
		T2("input_layernorm.weight", C, 1, 0.2f, 1.0f);
		T2("self_attn.q_proj.weight", qd, C, 0.4f, 0);
		T2("self_attn.k_proj.weight", kvd, C, 0.4f, 0);
		T2("self_attn.v_proj.weight", kvd, C, 0.4f, 0);
		if (bias) {
			T2("self_attn.q_proj.bias", qd, 1, 0.2f, 0);
			T2("self_attn.k_proj.bias", kvd, 1, 0.2f, 0);
			T2("self_attn.v_proj.bias", kvd, 1, 0.2f, 0);
		}
		T2("self_attn.o_proj.weight", C, qd, 0.3f, 0);
		T2("post_attention_layernorm.weight", C, 1, 0.2f, 1.0f);
		T2("mlp.gate_proj.weight", F, C, 0.4f, 0);
		T2("mlp.up_proj.weight", F, C, 0.4f, 0);
		T2("mlp.down_proj.weight", C, F, 0.3f, 0);
	}
	add_tensor(mf, &r, "model.norm.weight", C, 1, 0.2f, 1.0f);
	if (!tied)
		add_tensor(mf, &r, "lm_head.weight", V, C, 0.5f, 0);
	return mf;
}

struct model_file *tiny_gemma3_mf(uint64_t seed, int window)
{
	struct model_file *mf = calloc(1, sizeof *mf);
	struct model_hparams *hp = &mf->hp;
	hp->arch = ARCH_GEMMA3;
	hp->n_layer = 3;
	hp->n_embd = 16;
	hp->n_head = 4;
	hp->n_head_kv = 2;
	hp->head_dim = 8; /* not n_embd / n_head, as Gemma's 256 */
	hp->n_ff = 24;
	hp->n_vocab = 37;
	hp->n_ctx_train = 64;
	hp->norm_eps = 1e-6f;
	hp->rope_theta = 1e6f;
	hp->rope_theta_local = 10000.0f;
	hp->rope_style = ROPE_HALF;
	hp->tied_embeddings = true;
	hp->attn_scale = 1.0f / sqrtf(5.0f); /* a query_pre_attn_scalar of its own */
	hp->sliding_window = window;
	hp->swa_pattern = 2;                 /* layers 0 and 2 local, 1 global */
	mf->path = strdup("tiny-gemma3");
	mf->tensors = calloc(64, sizeof *mf->tensors);
	struct rng r;
	rng_seed(&r, seed, 3);
	int C = 16, F = 24, V = 37, qd = 32, kvd = 16, hd = 8;
	char nm[128];
	add_tensor(mf, &r, "model.embed_tokens.weight", V, C, 0.3f, 0);
	for (int l = 0; l < 3; l++) {
#undef T2
#define T2(sub, a, b, s, o)                                                                   \
	do {                                                                                \
		snprintf(nm, sizeof nm, "model.layers.%d.%s", l, sub);                      \
		add_tensor(mf, &r, nm, a, b, s, o);                                         \
	} while (0)
		/* norm weights are the multiplier 1 + w */
		T2("input_layernorm.weight", C, 1, 0.3f, 1.0f);
		T2("self_attn.q_proj.weight", qd, C, 0.4f, 0);
		T2("self_attn.k_proj.weight", kvd, C, 0.4f, 0);
		T2("self_attn.v_proj.weight", kvd, C, 0.4f, 0);
		T2("self_attn.q_norm.weight", hd, 1, 0.3f, 1.0f);
		T2("self_attn.k_norm.weight", hd, 1, 0.3f, 1.0f);
		T2("self_attn.o_proj.weight", C, qd, 0.3f, 0);
		T2("post_attention_layernorm.weight", C, 1, 0.3f, 0.5f);
		T2("pre_feedforward_layernorm.weight", C, 1, 0.3f, 1.0f);
		T2("mlp.gate_proj.weight", F, C, 0.5f, 0);
		T2("mlp.up_proj.weight", F, C, 0.4f, 0);
		T2("mlp.down_proj.weight", C, F, 0.3f, 0);
		T2("post_feedforward_layernorm.weight", C, 1, 0.3f, 0.5f);
	}
	add_tensor(mf, &r, "model.norm.weight", C, 1, 0.3f, 1.0f);
	return mf;
}

struct model_file *tiny_gpt2_mf(uint64_t seed)
{
	struct model_file *mf = calloc(1, sizeof *mf);
	struct model_hparams *hp = &mf->hp;
	hp->arch = ARCH_GPT2;
	hp->n_layer = 2;
	hp->n_embd = 16;
	hp->n_head = 4;
	hp->n_head_kv = 4;
	hp->head_dim = 4;
	hp->n_ff = 64;
	hp->n_vocab = 37;
	hp->n_ctx_train = 16;
	hp->norm_eps = 1e-5f;
	hp->tied_embeddings = true;
	mf->path = strdup("tiny-gpt2");
	mf->tensors = calloc(64, sizeof *mf->tensors);
	struct rng r;
	rng_seed(&r, seed, 2);
	int C = 16, F = 64, V = 37;
	char nm[128];
	add_tensor(mf, &r, "wte.weight", V, C, 0.5f, 0); /* no prefix: exercises the fallback */
	add_tensor(mf, &r, "transformer.wpe.weight", 16, C, 0.3f, 0);
	for (int l = 0; l < 2; l++) {
#undef T2
#define T2(sub, a, b, s, o)                                                                   \
	do {                                                                                \
		snprintf(nm, sizeof nm, "transformer.h.%d.%s", l, sub);                     \
		add_tensor(mf, &r, nm, a, b, s, o);                                         \
	} while (0)
		T2("ln_1.weight", C, 1, 0.2f, 1.0f);
		T2("ln_1.bias", C, 1, 0.2f, 0);
		T2("attn.c_attn.weight", 3 * C, C, 0.4f, 0);
		T2("attn.c_attn.bias", 3 * C, 1, 0.2f, 0);
		T2("attn.c_proj.weight", C, C, 0.3f, 0);
		T2("attn.c_proj.bias", C, 1, 0.2f, 0);
		T2("ln_2.weight", C, 1, 0.2f, 1.0f);
		T2("ln_2.bias", C, 1, 0.2f, 0);
		T2("mlp.c_fc.weight", F, C, 0.4f, 0);
		T2("mlp.c_fc.bias", F, 1, 0.2f, 0);
		T2("mlp.c_proj.weight", C, F, 0.3f, 0);
		T2("mlp.c_proj.bias", C, 1, 0.2f, 0);
	}
	add_tensor(mf, &r, "transformer.ln_f.weight", C, 1, 0.2f, 1.0f);
	add_tensor(mf, &r, "transformer.ln_f.bias", C, 1, 0.2f, 0);
	return mf;
}

