/* tiny_weights: small random llama, Gemma 3 and GPT-2 models built in memory as struct
 * model_file (no file I/O), for the model, ops and generation tests. */
#ifndef FTLAB_TINY_WEIGHTS_H
#define FTLAB_TINY_WEIGHTS_H

#include <stdbool.h>
#include <stdint.h>

#include "backends/native/io/model_file.h"

/* 2 layers, C 16, 4 heads (2 KV heads), head_dim 4, ff 24, vocab 37. Free with
 * model_file_free. */
struct model_file *tiny_llama_mf(bool tied, bool bias, enum rope_style rs, uint64_t seed);
/* Gemma 3: 3 layers (0 and 2 local with this window of keys, 0: none; 1 global), C 16,
 * 4 heads (2 KV heads) of 8, ff 24, vocab 37, tied, query scale 1/sqrt(5). */
struct model_file *tiny_gemma3_mf(uint64_t seed, int window);
/* 2 layers, C 16, 4 heads, ff 64, vocab 37, 16 positions; "wte.weight" without prefix. */
struct model_file *tiny_gpt2_mf(uint64_t seed);

#endif
