/* model_file: a model loaded from disk (GGUF file or Hugging Face directory): tensors with
 * Hugging Face names and PyTorch shapes, kept as the file stores them (F32, F16, BF16 or
 * GGUF blocks; fp32 copies on request), plus hyperparameters and the tokenizer's source
 * data. The engine (model/) builds its parameters from this; tok/ builds the tokenizer. */
#ifndef FTLAB_MODEL_FILE_H
#define FTLAB_MODEL_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/diag.h"

enum model_arch { ARCH_LLAMA, ARCH_GPT2, ARCH_GEMMA3 };
/* How RoPE pairs dimensions: GGUF llama Q/K rows are permuted for interleaved pairs
 * (llama.cpp's convention); Hugging Face weights use rotate-half. */
enum rope_style { ROPE_NONE, ROPE_INTERLEAVED, ROPE_HALF };
enum rope_scaling { ROPE_SCALING_NONE, ROPE_SCALING_LINEAR, ROPE_SCALING_LLAMA3 };

struct model_hparams {
	enum model_arch arch;
	int n_layer;
	int n_embd;        /* C */
	int n_head;
	int n_head_kv;     /* GQA; == n_head without grouping */
	int head_dim;      /* usually n_embd / n_head */
	int n_ff;          /* MLP hidden size */
	int n_vocab;
	int n_ctx_train;   /* trained context length (learned positions for GPT-2) */
	float norm_eps;
	float rope_theta;
	enum rope_style rope_style;
	enum rope_scaling rope_scaling;
	float rope_scaling_factor;
	float rope_low_freq_factor, rope_high_freq_factor; /* llama3 scaling */
	int rope_orig_ctx;
	bool tied_embeddings; /* LM head is the token embedding */
	bool qkv_bias;        /* Qwen2-style biases on q/k/v */
	/* Gemma 3. Its RMSNorm weights are held as the multiplier 1 + w (GGUF's convention; a
	 * Hugging Face checkpoint's w gets 1 added on load). The embedding is scaled by
	 * sqrt(n_embd); GeGLU MLP; norms after attention and MLP and on q/k per head. */
	float attn_scale;       /* query scale of the attention scores; 0: 1/sqrt(head_dim) */
	int sliding_window;     /* keys a local layer attends (itself included); 0: none */
	int swa_pattern;        /* layer l is local iff l % swa_pattern < swa_pattern - 1;
				 * 0 with a window: every layer local */
	float rope_theta_local; /* RoPE base of the local layers (scaling applies to global) */
	char name[128];       /* general.name or config.json _name_or_path, for reports */
};

/* One tensor, Hugging Face name ("model.layers.0.self_attn.q_proj.weight",
 * "transformer.h.0.attn.c_attn.weight"), PyTorch shape order (out, in); GPT-2 Conv1D
 * weights are already transposed to (out, in). Row-major, contiguous: raw holds rows of
 * shape[ndim-1] elements in the blocks of `type` (GGUF llama q/k rows in llama.cpp's
 * permuted order). data is the fp32 copy, NULL until model_file_dequantize. A model_file
 * built in memory (tests) may set only data: such a tensor is F32 (see mf_tensor_raw). */
struct mf_tensor {
	char *name;
	int ndim;
	int64_t shape[4];
	size_t numel;
	uint32_t type;     /* GGML type id of raw (ops/ops_quant.h): GGML_F32, GGML_Q4_1, ... */
	const void *raw;   /* raw_bytes bytes: inside the file's mapping, or raw_owned */
	size_t raw_bytes;
	void *raw_owned;   /* the allocation raw points into when the tensor owns it */
	float *data;
	char src_type[16]; /* "F32", "Q4_1", ... as stored in the file */
};

/* Tokenizer source: either GGUF metadata arrays or the text of tokenizer.json. */
struct mf_tokenizer_src {
	char *tokenizer_json;   /* HF directory: whole tokenizer.json text, else NULL */
	char *tokenizer_config_json; /* HF: tokenizer_config.json text when present */
	char *chat_template_jinja; /* HF: chat_template.jinja text when present (transformers
				    * writes the template there instead of tokenizer_config) */
	/* GGUF: tokenizer.ggml.* */
	char *model;            /* "gpt2" (byte-level BPE) or another value (unsupported) */
	char *pre;              /* pre-tokenizer name ("smollm", "llama-bpe", "gpt2", ...) */
	char **tokens;
	size_t n_tokens;
	int32_t *token_type;    /* may be NULL */
	char **merges;
	size_t n_merges;
	int64_t bos_id, eos_id, pad_id, unk_id; /* -1 when absent */
	bool add_bos, add_eos;
	bool add_bos_set;       /* tokenizer.ggml.add_bos_token is present */
	float *scores;          /* tokenizer.ggml.scores (n_tokens) or NULL */
	bool add_space_prefix;  /* tokenizer.ggml.add_space_prefix (SentencePiece) */
	bool add_space_prefix_set;
	char *arch;             /* general.architecture: some tokenizer rules are per family */
	char *chat_template;    /* tokenizer.chat_template or NULL */
};

struct model_file {
	char *path;             /* as given */
	bool is_gguf;
	struct model_hparams hp;
	struct mf_tensor *tensors;
	size_t n_tensors;
	struct mf_tokenizer_src tok;
	char content_hash[65];  /* sha256 of the file (GGUF) or of the weight files (HF) */
	void *map;              /* GGUF: the file, mapped read-only (raw points into it) */
	size_t map_bytes;
	/* The Hugging Face repository ("org/name") the GGUF metadata says the file was
	 * converted from (general.source.huggingface.repository, or a huggingface.co
	 * general.source.repo_url / general.source.url / general.repo_url), else NULL. */
	char *hf_repo;
};

/* Loads a .gguf file or a Hugging Face directory. Every malformed input is FT_EINVAL
 * with the file and the offending field in d. Tensors keep the file's types (raw); no
 * fp32 copy is made. Caller frees with model_file_free. */
int model_file_load(struct model_file **out, const char *path, struct diag *d) FT_WUR;
/* Gives every tensor its fp32 copy (data), for the code that needs fp32 everywhere:
 * merges, exports, tests. FT_ENOMEM naming the tensor and bytes. Idempotent. */
int model_file_dequantize(struct model_file *m, struct diag *d) FT_WUR;
/* The message for a model directory without tokenizer files (one text for every caller). */
#define TOKENIZER_FILES_MISSING                                                                 \
	"no tokenizer.json in this model directory (a Hugging Face model directory holds "      \
	"tokenizer.json, and tokenizer_config.json for the special tokens and chat template)"

/* Loads only what the tokenizer needs: the GGUF metadata (no tensors, no checksum, any
 * architecture) or a directory's tokenizer.json and tokenizer_config.json. FT_EINVAL
 * names the missing files when a directory has no tokenizer.json. */
int model_file_load_tokenizer(struct model_file **out, const char *path, struct diag *d) FT_WUR;
void model_file_free(struct model_file *m);
/* The hyperparameters of a model without reading its weights: a GGUF file's header (every
 * check of model_file_load up to the tensors' data), or a directory's config.json. For
 * `ftlab check`. Facts only the weights tell (a directory's optional biases) are taken as
 * present. Errors as model_file_load's. */
int model_file_probe(struct model_hparams *out, const char *path, struct diag *d) FT_WUR;
/* The tensor with that name, or NULL (borrowed). */
const struct mf_tensor *model_file_tensor(const struct model_file *m, const char *name);
/* The tensor's values as stored: raw and its type, or data as F32 when a tensor built in
 * memory has no raw. NULL when it has neither. */
const void *mf_tensor_raw(const struct mf_tensor *t, uint32_t *type);
/* A hint that t's raw bytes will not be read soon (a model has copied them): when they lie
 * in the file's mapping, its pages leave this process's resident memory (a later read
 * brings them back from the page cache). Changes nothing else; thread-compatible. */
void mf_tensor_release(const struct model_file *m, const struct mf_tensor *t);

#endif
