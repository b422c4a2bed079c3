/* dequant: the GGML tensor types ftlab reads from GGUF files (names, block sizes) and their
 * conversion to fp32, on top of ops/ops_quant.h (the one definition of the block layouts,
 * shared with the compute kernels). Pure functions; thread-safe. Supported: F32, F16, BF16,
 * Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K. */
#ifndef FTLAB_DEQUANT_H
#define FTLAB_DEQUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backends/native/ops/ops_quant.h" /* enum ggml_type_id */

struct ggml_type_desc {
	uint32_t id;
	const char *name;   /* "Q4_1" */
	size_t block_elems; /* elements per block (1 for F32/F16/BF16) */
	size_t block_bytes; /* bytes per block */
};

/* The description of a supported type, or NULL for an unknown/unsupported id. */
const struct ggml_type_desc *ggml_type_find(uint32_t id);
/* The supported type with that name ("Q8_0"), or NULL. */
const struct ggml_type_desc *ggml_type_by_name(const char *name);
/* Name of any GGML type id known to GGML (for messages), "?" when unknown. */
const char *ggml_type_name(uint32_t id);
/* Dequantises n elements (a multiple of the block size) of type id from src to dst
 * (threaded for large n; the values of ops_dequant_row). */
void dequant_to_f32(uint32_t id, const void *src, float *dst, size_t n);

/* Quantises n floats (a multiple of 32) to Q8_0 or Q4_0 blocks as llama.cpp's reference
 * quantizer does (per block: d = absmax / 127, q = round(x / d) for Q8_0; d = max / -8 of
 * the value with the largest magnitude, q = min(15, (int)(x / d + 8.5)) for Q4_0; d stored
 * as fp16). dst holds n / 32 blocks. Other ids: false, nothing written. */
bool quantize_from_f32(uint32_t id, const float *src, void *dst, size_t n);

/* IEEE half and bfloat16 to float, exact. */
float fp16_to_f32(uint16_t h);
float bf16_to_f32(uint16_t h);
uint16_t f32_to_fp16(float f); /* round to nearest even */

#endif
