/* model_internal: the model's structures, shared by model.c (parameters, training
 * forward/backward) and generate.c (KV-cache decode). Not for other layers. */
#ifndef FTLAB_MODEL_INTERNAL_H
#define FTLAB_MODEL_INTERNAL_H

#include "backends/native/model/model.h"
#include "backends/native/ops/ops.h"

#define MODEL_NAME_MAX 112

/* One parameter tensor of the table. */
struct mparam {
	char name[MODEL_NAME_MAX];
	struct model_param pub; /* name, data, grad (NULL when frozen), numel, shape, type */
	int layer;              /* -1 outside the blocks */
	bool trainable;
	bool matrix;            /* a matmul weight or token embedding: may keep the file's type */
	struct ops_w w;         /* the weight as matmul_w/embedding_forward read it (matrices) */
};

/* One linear map y = x W^T (+ b) (+ s B(A drop(x))), weight (out, in). For GPT-2's fused
 * c_attn, out = 3C. Indices into the parameter table; -1 when absent. IA3 (ia3, a vector
 * l): y = (x W^T + b) * l (l (out, 1)), or for a feed-forward target y = (x * l) W^T + b
 * (l (1, in)), as PEFT. With DoRA (mag, the
 * magnitude vector (out)): y = g * (x W^T + s B(A x)) + b, g = mag / ||W + s B A|| per
 * output row with the norm a constant to the backward (PEFT's detached norm); under
 * dropout the base term W x keeps the undropped input as in PEFT:
 * y = x W^T + b + g * (xd W^T + s B(A xd)) - xd W^T. */
struct lin {
	int w, b, la, lb, mag, ia3;
	bool ia3_ff;
	int in, out;
	int slot; /* index of this linear inside its layer (dropout stream) */
};

/* One bottleneck adapter: down (bn, C) + bias (bn), up (C, bn) + bias (C); -1 when absent. */
struct bneck {
	int dw, db, uw, ub;
};

struct layer {
	int ln1_w, ln1_b, ln2_w, ln2_b;
	struct bneck bn[2]; /* bottleneck adapters after attention (0) and after the MLP (1) */
	/* gemma3: ln1 = input_layernorm, ln2 = pre_feedforward_layernorm, and these */
	int post_attn_w, post_ffn_w, q_norm_w, k_norm_w;
	struct lin q, k, v, qkv, o, gate, up, down; /* llama: q,k,v,o,gate,up,down; gpt2: qkv,o,up,down */
	bool local;   /* gemma3 sliding-window layer */
};

/* LoRA activations of one linear. */
struct lora_acts {
	float *h;      /* (N, r) = drop(x) A^T */
	float *xd;     /* (N, in) dropout output, NULL without dropout */
	uint8_t *mask; /* (N, in) */
	float *z;      /* DoRA: (N, out) = xd W^T + s B(A xd), before the magnitude; IA3
			* (output scaling): x W^T + b */
	float *g, *inv; /* DoRA: (out) mag / norm and 1 / norm of this forward */
};

#define LIN_SLOTS 8

/* Activations of one layer (N = B*T rows). With checkpointing, or without training, all
 * layers share one set except x. */
struct lacts {
	float *x;                 /* (N, C) layer input (residual stream) */
	float *ln1, *mean1, *rstd1; /* (N, C), (N), (N) */
	float *q, *k, *v;         /* (N, nh*hd), (N, nkv*hd) x2, after RoPE */
	float *qkv;               /* (N, 3C) GPT-2 only */
	float *att;               /* (B, nh, T, T) softmax probabilities, training only */
	float *atty;              /* (N, nh*hd) */
	float *x2;                /* (N, C) residual after attention */
	float *ln2, *mean2, *rstd2;
	float *gate, *up, *hm;    /* (N, F): gate (llama), up/fc pre-activation, activated */
	/* gemma3: q, k before their per-head norm, the attention and MLP outputs before their
	 * post-norms, and the rstd of each */
	float *qn, *kn;           /* (N, nh*hd), (N, nkv*hd) */
	float *rstdq, *rstdk;     /* (N*nh), (N*nkv) */
	float *ao, *mo;           /* (N, C) o_proj and down_proj outputs */
	float *rstd_ao, *rstd_mo; /* (N) */
	struct lora_acts lora[LIN_SLOTS];
	/* bottleneck adapters (0 attention, 1 MLP): input u (N, C), down-projection plus
	 * bias (N, bn) and its activation (N, bn) */
	float *bn_u[2], *bn_pre[2], *bn_hid[2];
};

/* Gradient scratch for the backward (one layer's worth, reused). */
struct gacts {
	float *dres, *dln, *dtmp;  /* (N, C) */
	float *dq, *dk, *dv, *datty, *dqkv;
	float *dq2, *dk2;          /* gemma3: gradients before the q/k norms */
	float *dgate, *dup, *dh;   /* (N, F) */
	float *dlh;                /* (N, r) LoRA */
	float *ddy;                /* (N, max out) DoRA: g * dy; IA3: l * dy */
	float *dxd;                /* (N, max in) LoRA dropout */
	float *dbn;                /* (N, C) bottleneck adapter: gradient of the sublayer output */
	float *dbh;                /* (N, bn) bottleneck adapter: gradient of its hidden layer */
};

struct model {
	struct model_hparams hp;
	struct model_opts o;
	const struct ops *ops;
	unsigned mmflags;     /* OPS_BF16 or 0 */
	bool training;
	bool adapter_off;     /* LoRA switched off: the base model (model_set_adapter_enabled) */
	bool fwd_adapter_off; /* ... as it was during the last forward */
	int kvd;              /* n_head_kv * head_dim */
	int qd;               /* n_head * head_dim */
	float attn_scale;     /* query scale of the attention scores */
	float embed_scale;    /* gemma3: the embedding times sqrt(C); 0 = none */
	float lora_s;
	int lora_r;
	int bn;               /* bottleneck adapters: their width; 0 = none */
	bool dora;
	float *peft_w;        /* DoRA: (max out*in) scratch for W + s B A; IA3: W * l */
	int prefix;           /* prefix tuning: "prompt_embeddings" (np, 2 L kvd), or -1 */
	int np;               /* its rows (num_virtual_tokens) */
	int *prefix_pos;      /* (max_b) np each: the sequences' first position */
	float *prefix_dtab;   /* dL/d(table) (np, 2 L kvd): the table's gradient, or the
			       * projection's scratch for it */
	/* prefix_projection (PEFT's PrefixEncoder): parameters, or -1 */
	int pe_emb, pe_w1, pe_b1, pe_w2, pe_b2;
	int ph;               /* its hidden width */
	void *pe_mem;         /* one allocation: */
	float *pe_pre, *pe_hid, *pe_dh; /* (np, ph) hidden pre-activation, tanh, gradient */
	bool dora_keep_norm;  /* tests only: reuse each layer's last 1/norm (g = mag/norm is
			       * recomputed), so finite differences see the detached norm */

	struct mparam *params;
	size_t n_params;
	size_t *trainable;    /* indices into params */
	size_t n_trainable;
	int wte, wpe, lnf_w, lnf_b, head; /* head == wte when tied */
	struct layer *layers;
	int bw_stop_layer;    /* backward goes down to this layer */
	bool embed_trains;

	float *param_mem, *grad_mem;
	size_t param_bytes, grad_bytes;
	float *inv_freq;      /* (hd/2) host copy */
	float *inv_freq_dev;  /* backend copy */
	float *inv_freq_local_dev; /* gemma3 sliding-window layers (own RoPE base), or NULL */

	/* training / teacher-forcing plan */
	int max_b, max_t;
	void *act_mem;
	size_t act_bytes;
	struct lacts *acts;   /* (L + 1): acts[L].x is the last layer's output */
	struct gacts g;
	/* LM head over the rows that carry a target ("head rows", in position order), head_rows
	 * of them per chunk; full_logits: every row in one chunk of N */
	float *hx;            /* (N, C) the last layer's output at the head rows */
	float *lnf, *meanf, *rstdf; /* (N, C) (N) (N) final norm of the head rows */
	float *logits;        /* (head_rows, V): one chunk ((N, V) with full_logits) */
	float *hloss, *hlse;  /* (N) per head row */
	float *wrow;          /* (N) per head row: loss weights (model_backward_weighted) */
	int32_t *hargmax;     /* (N) */
	int32_t *tok_dev, *tgt_dev; /* (N) tokens; targets of the head rows */
	float *tmp;           /* (N, C) forward scratch */
	int head_rows;
	int *runs;            /* host (2N): head rows as runs (first position, count) */
	int n_runs, n_head;   /* runs, head rows of the current forward */
	float *host_loss;     /* host (N): per position, 0 when masked */
	int32_t *host_argmax; /* host (N): -1 when masked */
	bool head_fused;      /* the forward already did the head's backward (model_forward_train) */
	float fused_scale;
	int cur_b, cur_t;
	bool have_targets;
	long cur_ntok;
	uint64_t n_forward;   /* dropout stream counter */
	uint64_t fwd_stream;  /* the counter value of the last forward (used by recompute) */

	/* generation */
	struct gen_stats gstats;
};

/* Size tables: entries (pointer to set, bytes) carved from one allocation. */
struct mplan_entry {
	void **ptr;
	size_t bytes;
};
struct mplan {
	struct mplan_entry *e;
	size_t n, cap;
	bool oom;
};
void mplan_add(struct mplan *p, void **ptr, size_t bytes);
#define PLAN_F(p, field, count) mplan_add((p), (void **)&(field), (size_t)(count) * sizeof(float))
/* One allocation of ops memory for the whole table (FT_ENOMEM names the bytes). */
int mplan_alloc(struct mplan *p, const struct ops *ops, void **out_mem, size_t *out_bytes,
	       const char *what, struct diag *d);
void mplan_free(struct mplan *p);
/* Activations a layer's backward may not need: the input of a linear that has no trainable
 * weight and no LoRA is read only by its forward (dx = dy W needs no x). */
enum {
	KEEP_LN1 = 1u << 0,  /* input of q, k, v (GPT-2: c_attn) */
	KEEP_QKV = 1u << 1,  /* GPT-2's fused q|k|v output (copied into q, k, v) */
	KEEP_ATTY = 1u << 2, /* input of o */
	KEEP_LN2 = 1u << 3,  /* input of gate, up (GPT-2: c_fc) */
	KEEP_HM = 1u << 4,   /* input of down (GPT-2: c_proj) */
	KEEP_ALL = 0x1f
};
/* Adds one layer's activation set for (B, T) to p (x excluded; att when save_att; the
 * buffers of `keep` only, the others are left NULL); LoRA activations as layer l has
 * them. */
void model_plan_layer(struct model *m, struct mplan *p, struct lacts *a, int l, size_t B,
		      size_t T, bool save_att, unsigned keep);

/* A layer with LoRA (every selected layer has the same LoRA slots), or 0. */
int model_lora_rep_layer(const struct model *m);

/* Forward of layer l over acts a -> out (N, C). With kc/vc (KV cache (B, tk, kvd)), k/v
 * rows go into the cache at pos0[b] + t and attention reads the cache; pos0 is backend
 * memory (for the ops), pos0_host the same B values in host memory (for the copy
 * offsets). */
void model_layer_forward(struct model *m, int l, struct lacts *a, float *out, float *tmp,
			 int B, int T, const int *pos0, const int *pos0_host, float *kc,
			 float *vc, int tk, bool dropout);
/* Final norm + LM head over rows (n) of x into logits (n, V). */
void model_head_forward(struct model *m, float *logits, float *lnf, float *meanf,
			float *rstdf, const float *x, int n);
/* Token embedding of n rows into out (n, C) (learned positions from pos, NULL: r % t),
 * times sqrt(C) for Gemma. */
void model_embed(struct model *m, float *out, const int32_t *tok, const int *pos, int n,
		 int t);
float *model_pdata(const struct model *m, int idx);
/* The weight of parameter idx (a matrix) for matmul_w / embedding_forward. */
const struct ops_w *model_pw(const struct model *m, int idx);

#endif
