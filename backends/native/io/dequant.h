/* dequant: the GGML tensor types ftlab reads from GGUF files (block sizes, byte sizes) and
 * their conversion to fp32. Pure functions; thread-safe. Block layouts follow the public
 * GGML definitions (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K,
 * Q6_K). */
#ifndef FTLAB_DEQUANT_H
#define FTLAB_DEQUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum ggml_type_id {
	GGML_F32 = 0, GGML_F16 = 1, GGML_Q4_0 = 2, GGML_Q4_1 = 3, GGML_Q5_0 = 6, GGML_Q5_1 = 7,
	GGML_Q8_0 = 8,
	GGML_Q4_K = 12, GGML_Q5_K = 13, GGML_Q6_K = 14, GGML_BF16 = 30
};

struct ggml_type_desc {
	uint32_t id;
	const char *name;   /* "Q4_1" */
	size_t block_elems; /* elements per block (1 for F32/F16/BF16) */
	size_t block_bytes; /* bytes per block */
};

/* The description of a supported type, or NULL for an unknown/unsupported id. */
const struct ggml_type_desc *ggml_type_find(uint32_t id);
/* Name of any GGML type id known to GGML (for messages), "?" when unknown. */
const char *ggml_type_name(uint32_t id);
/* Dequantises n elements (a multiple of the block size) of type id from src to dst. */
void dequant_to_f32(uint32_t id, const void *src, float *dst, size_t n);

/* IEEE half and bfloat16 to float, exact. */
float fp16_to_f32(uint16_t h);
float bf16_to_f32(uint16_t h);
uint16_t f32_to_fp16(float f); /* round to nearest even; used by test writers */

#endif
