/* model: llama-family, Gemma 3 and GPT-2 decoder transformers on the ops interface:
 * parameter table (which parameters train: none/full/freeze/LoRA), activation plan for
 * (B, T), forward with the LM head and cross-entropy fused and chunked (only at positions
 * with a target), backward into fp32 gradients, KV-cache generation.
 * Loading is io/'s job (struct model_file); tokenisation is tok/'s; the optimizer and the
 * step loop are train/'s, which sees the trainable parameters through model_trainable().
 * Thread-safety: a struct model is used by one thread at a time (ops use OpenMP inside). */
#ifndef FTLAB_MODEL_H
#define FTLAB_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backends/native/io/model_file.h"
#include "common/diag.h"
#include "schema/config.h"

struct model;
struct ops;

struct model_opts {
	enum method_type method; /* METHOD_NONE: inference only, no gradients */
	/* lora */
	int lora_rank;
	float lora_alpha, lora_dropout;
	bool rslora;               /* scale alpha/sqrt(r) instead of alpha/r */
	const char *const *targets; /* module names ("q_proj", "c_attn", ...) */
	size_t n_targets;
	bool all_linear;           /* every linear inside the blocks (not lm_head), as PEFT */
	/* adapter: bottleneck adapters as AdapterHub's `adapters` library builds them: after
	 * the attention (bn_attn, its mh_adapter) and/or after the MLP (bn_mlp, its
	 * output_adapter) of every block, y = u + up(act(down(u))) with biases, down
	 * (C / bn_reduction rounded down, at least 1, C), act bn_act (enum ops_act).
	 * bn_pfeiffer: u is the residual stream after the sublayer's residual add (SeqBn,
	 * original_ln_before); otherwise u is the sublayer's output before the add (Houlsby,
	 * DoubleSeqBn). Gemma 3: the sublayer's output after its post-norm. */
	bool bn_attn, bn_mlp, bn_pfeiffer;
	double bn_reduction;
	int bn_act;
	/* ia3: n_targets 0 (and not all_linear) = PEFT's default for the architecture;
	 * ff_targets: the targets whose input is scaled; ff_auto = PEFT's feed-forward
	 * modules for the architecture that are targets (ff_targets ignored) */
	const char *const *ff_targets;
	size_t n_ff_targets;
	bool ff_auto;
	/* prefix: num_virtual_tokens key/value rows per layer ("prompt_embeddings",
	 * (n, 2 * n_layer * n_head_kv * head_dim), PEFT's layout) */
	int prefix_tokens;
	/* prefix_projection: the table is not trained itself but computed, as PEFT's
	 * PrefixEncoder with prefix_projection, from "prompt_encoder.embedding.weight"
	 * (prefix_tokens, kvd) through "prompt_encoder.transform.0" (Linear(kvd,
	 * prefix_hidden)), tanh and "prompt_encoder.transform.2" (Linear(prefix_hidden,
	 * 2 * n_layer * kvd)); those five tensors train (kvd = n_head_kv * head_dim, PEFT's
	 * token_dim; prefix_hidden 0 = kvd, PEFT's default encoder_hidden_size). */
	bool prefix_projection;
	int prefix_hidden;
	/* freeze: parameters whose name has one of these as a dotted component ("mlp",
	 * "q_proj", "self_attn", "input_layernorm", "embed_tokens", "lm_head", "model.norm");
	 * n_trainable 0 = every parameter of the selected layers. */
	const char *const *trainable;
	size_t n_trainable;
	int layers_first, layers_last; /* freeze/lora layer range, inclusive; -1 = all */
	enum precision precision;  /* PRECISION_BF16: matmuls take bf16 inputs (fp32 accum) */
	/* Frozen weight matrices (every one with method none; the base under LoRA and freeze)
	 * stay in the file's format (F16, BF16, GGUF blocks) unless: quantize Q8_0/Q4_0 turns
	 * those the file stores as F32/F16/BF16 into Q8_0/Q4_0 blocks (rows whose length is a
	 * multiple of 32); frozen_f32 dequantizes every weight to fp32 instead (the engine's
	 * layout before frozen weights kept their blocks: for comparisons). Trainable weights,
	 * norms, biases and position tables are always fp32. */
	enum quantize_type quantize;
	bool frozen_f32;
	int max_batch, max_seq;    /* activation plan for training/teacher forcing; 0 = none */
	uint64_t seed;             /* LoRA A init and dropout masks */
	bool grad_checkpointing;   /* keep only each layer's input; recompute in backward */
	/* The LM head normally runs only on positions with a target, a chunk of rows at a
	 * time, and no (B*T, V) logits exist. full_logits plans them and computes the head at
	 * every position in one product (model_logits; tests, and forwards without targets). */
	bool full_logits;
	int head_chunk_rows;       /* rows per head chunk; 0 = 64 MiB of logits, >= 256 rows */
	const struct ops *ops;     /* NULL = ops_cpu() */
};

/* Checks the method's names against the architecture without building anything: every
 * LoRA target must name at least one linear module of the chosen layers, every freeze
 * name at least one parameter, and freeze's layer range must lie inside the model.
 * FT_EINVAL names the first that does not, the modules the model has and the nearest
 * (*out_bad: its index in o->targets or o->trainable; -1 for other errors). Only hp's
 * architecture and sizes are read (model_file_probe gives them without the weights).
 * model_create makes the same check. */
int model_check_method(const struct model_hparams *hp, const struct model_opts *o, int *out_bad,
		       struct diag *d) FT_WUR;

/* Builds the model from a loaded file (tensors are copied; mf may be freed afterwards).
 * Missing or mis-shaped tensors are FT_EINVAL naming the tensor; allocation failures are
 * FT_ENOMEM with the bytes asked for. Caller frees with model_free. */
int model_create(struct model **out, const struct model_file *mf, const struct model_opts *o,
		 struct diag *d) FT_WUR;
void model_free(struct model *m);
const struct model_hparams *model_hparams(const struct model *m);
/* The ops table the model runs on: its parameters, gradients and activations are that
 * backend's memory, which the host reads and writes only through ops->to_host/to_device. */
const struct ops *model_ops(const struct model *m);

/* Forward over tokens (B, T) (B <= max_batch, T <= max_seq). targets (B, T), < 0 =
 * masked; NULL (logits only) needs full_logits. The LM head and cross-entropy run only
 * at positions with a target (all positions with full_logits). out_loss: mean
 * cross-entropy over unmasked tokens (0 when none), out_ntokens: their count; both may be
 * NULL. */
int model_forward(struct model *m, const int32_t *tokens, const int32_t *targets, int B,
		  int T, float *out_loss, long *out_ntokens) FT_WUR;
/* model_forward for training: the LM head's part of the backward runs in the same pass
 * (each chunk's logits become dlogits and the head's input gradient at once), so the
 * head is computed once per step. model_backward must follow with the same loss_scale
 * (see there). */
int model_forward_train(struct model *m, const int32_t *tokens, const int32_t *targets, int B,
			int T, float loss_scale, float *out_loss, long *out_ntokens) FT_WUR;
/* Logits (B, T, V) of the last model_forward with full_logits (NULL otherwise), valid
 * until model_backward (which turns them into dlogits in place) or the next forward;
 * backend memory: read them with model_ops(m)->to_host. */
const float *model_logits(const struct model *m);
/* Per-position results of the last forward with targets, HOST memory (B*T): the loss (0
 * when masked) and the argmax of the logits (-1 when masked, and everywhere after
 * model_forward_train, which does not compute it). */
const float *model_token_losses(const struct model *m);
const int32_t *model_token_argmax(const struct model *m);
/* Log-probabilities of sequences under the last forward with targets: out[b] (HOST memory,
 * B of that forward) = minus the summed token losses of row b at the positions where mask
 * (B*T, host) is non-zero and the forward had a target (mask NULL: every position with a
 * target), summed in double in position order. The summed log-probability of a
 * completion given its prompt, the quantity preference losses and likelihood scoring
 * compare. FT_EINVAL without such a forward, FT_ENOMEM. */
int model_row_logprobs(const struct model *m, double *out, const uint8_t *mask) FT_WUR;

/* Backward of the last model_forward (which must have had targets). Gradients of
 * trainable parameters ACCUMULATE (call model_zero_grad between optimizer steps).
 * dloss/dlogit uses loss_scale per unmasked token: pass 1/(unmasked tokens of the whole
 * accumulated batch); loss_scale <= 0 means 1/(unmasked tokens of this forward). After
 * model_forward_train the scale must be that forward's. FT_EINVAL when nothing trains,
 * the forward had no targets, or the scale differs from model_forward_train's. */
int model_backward(struct model *m, float loss_scale) FT_WUR;
/* model_backward with a weight per position instead of one scale: dloss/dlogit at position
 * i = b*T + t of the last forward is weights[i] * (softmax - onehot) where that forward had
 * a target there (weights: HOST memory, B*T values of any sign). A preference loss weighs
 * each sequence's completion tokens by d loss / d log p of that sequence. Errors as
 * model_backward's. */
int model_backward_weighted(struct model *m, const float *weights) FT_WUR;
void model_zero_grad(struct model *m);
/* prefix_projection: recomputes "prompt_embeddings" from the projection's parameters (every
 * forward and generation does this first; call it after changing them, e.g. an optimizer
 * step, before reading the table). No-op for every other method. */
void model_prefix_update(struct model *m);
/* Training mode applies LoRA dropout in model_forward; off for evaluation. Default: on
 * for methods other than none. */
void model_set_training(struct model *m, bool on);
/* The adapter (LoRA, DoRA, IA3 or the prefix) on (the default) or off: off, every linear
 * is its base weight alone and no prefix is attended, so the model is its frozen base
 * (DPO's reference model without a second copy of the weights) for forwards and
 * generation. A backward needs a forward made with the adapter on (FT_EINVAL otherwise).
 * No effect on a model without an adapter. */
void model_set_adapter_enabled(struct model *m, bool on);
/* LoRA dropout masks are a function of (seed, counter, layer, linear); the counter
 * advances by one per model_forward. Read it for checkpoints, set it on resume. */
uint64_t model_rng_counter(const struct model *m);
void model_set_rng_counter(struct model *m, uint64_t c);

/* The trainable parameters (for the optimizer, checkpoints and export). Pointers are
 * backend memory owned by the model (see model_ops). LoRA parameters are named like PEFT:
 * "model.layers.0.self_attn.q_proj.lora_A.weight" (r, in) and ".lora_B.weight" (out, r). */
struct model_param {
	const char *name;
	float *data, *grad; /* data NULL for a frozen weight kept in another type */
	size_t numel;
	int64_t shape[2]; /* (out, in), or (n, 1) for vectors */
	uint32_t type;    /* storage: GGML_F32 (data), or the GGML type of a frozen weight */
};
size_t model_n_trainable(const struct model *m);
const struct model_param *model_trainable(const struct model *m, size_t i);
/* Any parameter by HF name (base weights too), or NULL (borrowed; grad NULL if frozen). */
const struct model_param *model_param_find(const struct model *m, const char *name);
/* LoRA scale s (0 without LoRA). */
float model_lora_scale(const struct model *m);
/* Bytes of weights one decode step reads: every matmul weight (linear layers, LM head) in
 * its storage type, plus the norm vectors (for bench's bandwidth bound). */
double model_decode_weight_bytes(const struct model *m);
/* Bytes of the parameter, gradient and activation groups (for reports and bench). */
struct model_memory {
	size_t params, grads, acts, kv_cache;
};
struct model_memory model_memory(const struct model *m);
/* Model FLOPs per trained token (forward+backward, 2 per multiply-add, attention for T
 * included) under this model's method: 6N for full, 4N + 2N_trainable otherwise. */
double model_flops_per_token(const struct model *m, int T);

/* ---- generation (KV cache) ---- */

struct gen_opts {
	int max_new_tokens;
	float temperature;  /* 0 = greedy */
	int top_k;          /* 0 = off */
	float top_p;        /* 1 = off */
	uint64_t seed;
	int32_t eos_id;     /* -1 = none */
	const int32_t *extra_stop_ids; /* more ids that end a sequence (e.g. <|im_end|>) */
	size_t n_extra_stop_ids;
	/* Called after each new token of sequence i with all tokens generated so far; return
	 * true to stop that sequence (stop strings live here). NULL = none. */
	bool (*stop)(void *ud, size_t i, const int32_t *gen, size_t n_gen);
	void *stop_ud;
};

/* Generates for n prompts together (batched decode). prompts[i] has lens[i] tokens.
 * out_tokens[i] (caller frees each and the array) receives the generated ids without
 * the prompt, ending before EOS/stop ids; out_lens[i] their count. */
int model_generate_tokens(struct model *m, const int32_t *const *prompts, const size_t *lens,
			  size_t n, const struct gen_opts *g, int32_t ***out_tokens,
			  size_t **out_lens, struct diag *d) FT_WUR;

/* Timing of the last model_generate_tokens (for bench). */
struct gen_stats {
	double prefill_s, decode_s;
	long prefill_tokens, decode_tokens;
};
struct gen_stats model_gen_stats(const struct model *m);

#endif
