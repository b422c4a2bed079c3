/* model_random: a model_file of random weights holding exactly the tensors the engine
 * reads for given hyperparameters (llama/Qwen2 or GPT-2; Hugging Face names and PyTorch
 * shapes), for benchmarks and device checks on a model's shape when its weights are not at
 * hand. Portable: the same hyperparameters and seed give the same bits on every machine
 * (integer random numbers, no libm). The tokenizer is left empty for the caller. */
#ifndef FTLAB_MODEL_RANDOM_H
#define FTLAB_MODEL_RANDOM_H

#include <stdint.h>

#include "backends/native/io/model_file.h"
#include "common/diag.h"

/* Weights of matrices and embeddings uniform with mean 0 and standard deviation std
 * (transformers initialises them normal with std = initializer_range); norm weights 1,
 * biases 0. Tensor i draws from stream i of seed. hp must pass the engine's shape checks
 * (FT_EINVAL otherwise); FT_ENOMEM names the bytes. path names the model in messages.
 * Caller frees with model_file_free. */
int model_file_random(struct model_file **out, const struct model_hparams *hp, uint64_t seed,
		      float std, const char *path, struct diag *d) FT_WUR;

/* The same from a Hugging Face config.json (llama, qwen2 or gpt2): config is the file or
 * a directory holding it. std <= 0 takes the config's initializer_range (0.02 when it has
 * none). The tokenizer source is tokenizer.json read from `tokenizer` (a file or a
 * directory holding one; NULL: config's directory), with tokenizer_config.json when that
 * directory has one. FT_EINVAL names the file for a missing or malformed config or a
 * missing tokenizer.json. */
int model_file_random_from_config(struct model_file **out, const char *config,
				  const char *tokenizer, uint64_t seed, float std,
				  struct diag *d) FT_WUR;

#endif
