/* adapter: LoRA adapters on disk. Writes and reads the Hugging Face PEFT layout
 * (adapter_model.safetensors with keys "base_model.model.<module>.lora_A.weight" (r, in)
 * and ".lora_B.weight" (out, r), and adapter_config.json), and writes llama.cpp's LoRA
 * adapter GGUF. Handles the RoPE row order: a model loaded from GGUF keeps llama.cpp's
 * interleaved q/k rows, so lora_B of q_proj/k_proj is un-permuted on the way to PEFT and
 * permuted on the way back. */
#ifndef FTLAB_PEFT_ADAPTER_H
#define FTLAB_PEFT_ADAPTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/diag.h"

/* One LoRA matrix with its model-level name ("model.layers.0.self_attn.q_proj.lora_A.weight",
 * "transformer.h.0.attn.c_attn.lora_B.weight"), row-major (rows, cols). DoRA's magnitude
 * vectors ("...q_proj.lora_magnitude_vector") are (out, 1) here and 1-D on disk. */
struct lora_tensor {
	char *name;
	float *data;
	int64_t rows, cols;
};

struct lora_info {
	int rank;
	double alpha, dropout;
	bool rslora;
	bool use_dora;           /* DoRA: "<module>.lora_magnitude_vector" (out) per module */
	/* IA3 (peft_type "IA3"): one "<module>.ia3_l" per module, (out, 1), or (1, in) for
	 * the feed-forward modules; rank/alpha/dropout unused. On write, target_modules and
	 * feedforward_modules come from the tensors (layer-relative names such as
	 * "mlp.down_proj"); on read, ff_targets holds feedforward_modules. */
	bool ia3;
	char **ff_targets;
	size_t n_ff_targets;
	/* Prefix tuning (peft_type "PREFIX_TUNING"): one tensor "prompt_embeddings"
	 * (num_virtual_tokens, 2 * num_layers * n_head_kv * head_dim), saved under that key
	 * as PEFT does; on a GGUF base the key halves are un-permuted per head. */
	bool prefix;
	int num_virtual_tokens, num_layers;
	/* prefix_projection: the adapter was trained through PEFT's MLP (the tensor is still
	 * its computed table, as PEFT saves it); encoder_hidden_size its width (0: token_dim).
	 * token_dim and prefix_heads: read from the config, written when n_head_kv and
	 * head_dim are not known (0). */
	bool prefix_projection;
	int encoder_hidden_size;
	int token_dim, prefix_heads;
	char **targets;          /* module names, e.g. "q_proj" (owned by the caller on write) */
	size_t n_targets;
	bool fan_in_fan_out;     /* GPT-2 Conv1D bases */
	const char *base_model;  /* base_model_name_or_path; may be NULL */
	/* Row order of q_proj/k_proj outputs in our weights: true = llama.cpp interleaved
	 * (model loaded from GGUF). n_head/n_head_kv/head_dim are needed then. */
	bool interleaved;
	int n_head, n_head_kv, head_dim;
	/* The base's llama.cpp architecture for adapter_write_gguf: "llama" (NULL) wants
	 * interleaved q/k rows, "gemma3" keeps the Hugging Face order. */
	const char *gguf_arch;
};

/* Writes dir/adapter_model.safetensors and dir/adapter_config.json (dir is created).
 * The tensors are not modified (un-permuting works on copies). */
int adapter_write_peft(const char *dir, const struct lora_tensor *t, size_t n,
		       const struct lora_info *info, struct diag *d) FT_WUR;

/* Writes a llama.cpp LoRA adapter GGUF (general.type "adapter", adapter.type "lora",
 * adapter.lora.alpha; tensors "blk.N.attn_q.weight.lora_a" ne {in, r} and ".lora_b"
 * ne {r, out}), with q/k rows in llama.cpp's order for info->gguf_arch (llama:
 * interleaved). Llama family and Gemma 3; a DoRA, IA3 or prefix adapter is refused
 * (llama.cpp's adapters are LoRA only). */
int adapter_write_gguf(const char *path, const struct lora_tensor *t, size_t n,
		       const struct lora_info *info, struct diag *d) FT_WUR;

/* A PEFT adapter read back: tensors with model-level names (prefix "base_model.model."
 * removed), q/k lora_B permuted to interleaved order when want_interleaved (needs
 * n_head, n_head_kv, head_dim). Every malformed input is FT_EINVAL naming the file. */
struct lora_adapter {
	struct lora_info info;
	struct lora_tensor *t;
	size_t n;
};
int adapter_read_peft(struct lora_adapter **out, const char *dir, bool want_interleaved,
		      int n_head, int n_head_kv, int head_dim, struct diag *d) FT_WUR;
void adapter_free(struct lora_adapter *a);

/* Row permutations between Hugging Face rotate-half order and llama.cpp interleaved
 * order for a (n_head*head_dim, cols) matrix: out-of-place, out and in distinct.
 * to_interleaved: HF row h*hd + j*hd/2 + i  ->  row h*hd + 2*i + j. */
void rope_rows_permute(float *out, const float *in, int n_head, int head_dim, int64_t cols,
		       bool to_interleaved);

/* "q_proj" for "model.layers.3.self_attn.q_proj.lora_A.weight" (or ".ia3_l") into buf;
 * false when the name has no module component before ".lora_"/".ia3_l". */
bool lora_module_name(char *buf, size_t n, const char *name);
/* "model.layers.<int>." at the start of name: true with the layer number and the offset
 * just past that dot; false for other names and for out-of-range numbers. */
bool peft_layer_prefix(const char *name, int *out_layer, size_t *out_off);

#endif
