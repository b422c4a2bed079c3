/* tiny_model: test support that writes tiny random llama, Gemma 3 and GPT-2 models, the
 * same weights as a GGUF file and as a Hugging Face directory (config.json, safetensors,
 * tokenizer.json, tokenizer_config.json), with a small byte-level BPE vocabulary.
 * GGUF llama q/k rows are permuted the way llama.cpp's converter does; Gemma's norm
 * weights are w in the HF files and 1 + w in GGUF, as its converter writes. Deterministic. */
#ifndef FTLAB_TINY_MODEL_H
#define FTLAB_TINY_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "backends/native/io/model_file.h"
#include "common/diag.h"

/* The tiny vocabulary: ids 0-2 "<|endoftext|>", "<|im_start|>", "<|im_end|>" (special),
 * 3-258 the 256 byte tokens, then TINY_N_MERGES merged tokens. */
#define TINY_N_MERGES 12
#define TINY_N_VOCAB (3 + 256 + TINY_N_MERGES)

struct tiny_model_spec {
	enum model_arch arch;
	int n_layer, n_embd, n_head, n_head_kv, n_ff, n_ctx;
	bool tied;          /* llama: no lm_head (GPT-2 is always tied) */
	bool qkv_bias;      /* llama: q/k/v biases (Qwen2 style) */
	float rope_theta, norm_eps;
	uint64_t seed;
	uint32_t gguf_type; /* GGML type of 2-D weights in GGUF: 0 F32, 1 F16, 8 Q8_0, 30 BF16 */
	/* gemma3 */
	int head_dim;       /* 0: n_embd / n_head */
	int sliding_window, swa_pattern; /* window 0: none; pattern as model_hparams */
	float rope_theta_local, query_pre_attn_scalar;
	/* GGUF variations for the loader's tests: a final logit softcapping key (0: none),
	 * the layer pattern as one bool per layer (NULL: the integer period), a value length
	 * of its own (0: head_dim) */
	float final_softcap;
	const bool *swa_layers;
	int value_length;
	int hf_dtype;       /* safetensors dtype of every tensor: 0 F32, 1 F16, 2 BF16 */
	int hf_shards;      /* 1: model.safetensors; 2+: an index and that many shards */
};

/* llama: 2 layers, C=64, 4 heads, 2 kv heads, F=128, ctx 64, untied; GPT-2: 2 layers, C=64,
 * 4 heads, F=256, ctx 32; gemma3: 3 layers, C=48, 4 heads of 16, 1 kv head, F=96, ctx 64,
 * window 5 with pattern 2 (layers 0 and 2 local), RoPE bases 1e6 and 1e4, query scale
 * 1/sqrt(16). fp32 everywhere, one shard, seed 1. */
void tiny_model_spec_default(struct tiny_model_spec *s, enum model_arch arch);

/* Writes the model as a GGUF v3 file. */
int tiny_model_write_gguf(const char *path, const struct tiny_model_spec *s, struct diag *d);
/* Writes the model as a Hugging Face directory (created if needed). */
int tiny_model_write_hf(const char *dir, const struct tiny_model_spec *s, struct diag *d);

/* The HF-order value of a weight (as written to safetensors, before the GGUF q/k permutation
 * and in PyTorch (out, in) order for GPT-2 Conv1D too), for tests that compare loaders.
 * Returns the tensor's element count through *out_numel; caller frees the array. NULL when
 * the spec has no such tensor. */
float *tiny_model_tensor(const struct tiny_model_spec *s, const char *hf_name, size_t *out_numel);

#endif
