/* ops_quant: the storage types of weight matrices — fp32, and the GGUF formats a frozen
 * weight keeps in memory (F16, BF16, the 32-element blocks Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 and the
 * 256-element k-quants Q4_K/Q5_K/Q6_K): ids (GGML's), block sizes and the value of each
 * element, as static inline functions shared by io/ (loading, exports), the CPU kernels
 * and (FT_HD) the CUDA kernels, so every path dequantizes to the same fp32 bits. */
#ifndef FTLAB_OPS_QUANT_H
#define FTLAB_OPS_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "backends/native/ops/ops_math.h" /* ops_bf16_to_f32 */
#include "common/rng.h"                    /* FT_HD */

/* GGML's type ids (the values GGUF files store). */
enum ggml_type_id {
	GGML_F32 = 0, GGML_F16 = 1, GGML_Q4_0 = 2, GGML_Q4_1 = 3, GGML_Q5_0 = 6, GGML_Q5_1 = 7,
	GGML_Q8_0 = 8, GGML_Q4_K = 12, GGML_Q5_K = 13, GGML_Q6_K = 14, GGML_BF16 = 30
};

/* Elements and bytes per block of a supported type; false for any other id. */
FT_HD static inline bool ggml_type_block(uint32_t id, size_t *elems, size_t *bytes)
{
	size_t e = 32, b;
	switch (id) {
	case GGML_F32: e = 1; b = 4; break;
	case GGML_F16: e = 1; b = 2; break;
	case GGML_BF16: e = 1; b = 2; break;
	case GGML_Q4_0: b = 18; break;
	case GGML_Q4_1: b = 20; break;
	case GGML_Q5_0: b = 22; break;
	case GGML_Q5_1: b = 24; break;
	case GGML_Q8_0: b = 34; break;
	case GGML_Q4_K: e = 256; b = 144; break;
	case GGML_Q5_K: e = 256; b = 176; break;
	case GGML_Q6_K: e = 256; b = 210; break;
	default: return false;
	}
	*elems = e;
	*bytes = b;
	return true;
}

/* Bytes of a row of k elements (k a multiple of the block size); 0 for an unknown type. */
FT_HD static inline size_t ggml_row_bytes(uint32_t id, size_t k)
{
	size_t e, b;
	return ggml_type_block(id, &e, &b) ? k / e * b : 0;
}

/* IEEE half to float, exact (subnormal halves included); bf16 is ops_math.h's. */
FT_HD static inline float ops_f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h >> 15) << 31;
	uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
	if (exp == 0x1f) {
		bits = sign | 0x7f800000u | (man << 13);
	} else if (exp == 0) {
		if (man == 0) {
			bits = sign;
		} else { /* subnormal: normalise */
			int e = -1;
			do {
				man <<= 1;
				e++;
			} while (!(man & 0x400));
			bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
		}
	} else {
		bits = sign | ((exp + 112) << 23) | (man << 13);
	}
	float f;
	memcpy(&f, &bits, 4);
	return f;
}

FT_HD static inline uint16_t ops_rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

FT_HD static inline uint32_t ops_rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
	       ((uint32_t)p[3] << 24);
}

/* The 6-bit scale and min of sub-block j (0..7) from the 12 packed bytes of a Q4_K/Q5_K
 * block. */
FT_HD static inline void ops_k_scale_min(int j, const uint8_t *s, int *sc, int *mn)
{
	if (j < 4) {
		*sc = s[j] & 63;
		*mn = s[j + 4] & 63;
	} else {
		*sc = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
		*mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
	}
}

/* Element j of one block b of a quantized type (j < the block's elements). Every product
 * below is exact in fp32 (at most 24 significant bits: an fp16 scale times a 4-8 bit
 * integer, or times a 6-bit sub-block scale and then a 5-6 bit quant), so the only rounding
 * is the one addition of Q4_1/Q5_1/Q4_K/Q5_K: a fused multiply-add gives the same bits,
 * and so does any vector form of these formulas. Layouts:
 *   Q4_0 (18 B): d, 16 bytes of nibbles: element j < 16 is the low nibble of byte j, j >= 16
 *        the high nibble of byte j - 16; value (q - 8) d.
 *   Q4_1 (20 B): d, m, nibbles as Q4_0; value q d + m.
 *   Q5_0 (22 B): d, 32 high bits (bit j for element j), nibbles; value (q - 16) d.
 *   Q5_1 (24 B): d, m, high bits, nibbles; value q d + m.
 *   Q8_0 (34 B): d, 32 int8; value q d.
 *   Q4_K (144 B): d, dmin, 12 bytes of 6-bit scales/mins for 8 sub-blocks of 32, 128 bytes
 *        of nibbles: 4 groups of 64 elements share 32 bytes (low nibbles: sub-block 2g,
 *        high: 2g + 1); value (d sc) q - (dmin mn).
 *   Q5_K (176 B): as Q4_K with 32 bytes of high bits after the scales (bit 2g / 2g + 1 of
 *        byte l for element l of sub-block 2g / 2g + 1).
 *   Q6_K (210 B): 128 bytes low nibbles, 64 bytes 2-bit highs, 16 int8 scales, d; value
 *        (d sc) (q - 32). */
FT_HD static inline float ops_block_elem(uint32_t id, const uint8_t *b, int j)
{
	switch (id) {
	case GGML_Q4_0: {
		float d = ops_f16_to_f32(ops_rd16(b));
		int q = j < 16 ? (b[2 + j] & 0x0f) : (b[2 + j - 16] >> 4);
		return (float)(q - 8) * d;
	}
	case GGML_Q4_1: {
		float d = ops_f16_to_f32(ops_rd16(b)), m = ops_f16_to_f32(ops_rd16(b + 2));
		int q = j < 16 ? (b[4 + j] & 0x0f) : (b[4 + j - 16] >> 4);
		return (float)q * d + m;
	}
	case GGML_Q5_0:
	case GGML_Q5_1: {
		int has_m = id == GGML_Q5_1;
		float d = ops_f16_to_f32(ops_rd16(b));
		uint32_t qh = ops_rd32(b + 2 + 2 * has_m);
		const uint8_t *qs = b + 6 + 2 * has_m;
		int q = (j < 16 ? (qs[j] & 0x0f) : (qs[j - 16] >> 4)) | (int)(((qh >> j) & 1u) << 4);
		if (has_m)
			return (float)q * d + ops_f16_to_f32(ops_rd16(b + 2));
		return (float)(q - 16) * d;
	}
	case GGML_Q8_0:
		return (float)(int8_t)b[2 + j] * ops_f16_to_f32(ops_rd16(b));
	case GGML_Q4_K:
	case GGML_Q5_K: {
		float d = ops_f16_to_f32(ops_rd16(b)), dmin = ops_f16_to_f32(ops_rd16(b + 2));
		int g = j / 64, l = j % 64, hi = l >= 32, sub = 2 * g + hi;
		int sc, mn;
		ops_k_scale_min(sub, b + 4, &sc, &mn);
		const uint8_t *qs = b + (id == GGML_Q4_K ? 16 : 48) + 32 * g;
		int q = hi ? qs[l - 32] >> 4 : qs[l] & 0x0f;
		if (id == GGML_Q5_K)
			q += ((b[16 + l % 32] >> sub) & 1) << 4;
		float d1 = d * (float)sc, o1 = dmin * (float)mn;
		return d1 * (float)q - o1;
	}
	case GGML_Q6_K: {
		int h = j / 128, r = j % 128, quarter = r / 32, l = r % 32;
		const uint8_t *ql = b + 64 * h, *qh = b + 128 + 32 * h;
		const int8_t *sc = (const int8_t *)(b + 192 + 8 * h);
		int lo = (quarter & 1) ? ql[l + 32] : ql[l];
		lo = quarter < 2 ? lo & 0x0f : lo >> 4;
		int q = (lo | (((qh[l] >> (2 * quarter)) & 3) << 4)) - 32;
		float d = ops_f16_to_f32(ops_rd16(b + 208));
		return d * (float)sc[l / 16 + 2 * quarter] * (float)q;
	}
	default:
		return 0.0f;
	}
}

/* Element j of a row stored as id (any supported type, F32 included). */
FT_HD static inline float ops_row_elem(uint32_t id, const void *row, size_t j)
{
	const uint8_t *p = (const uint8_t *)row;
	switch (id) {
	case GGML_F32: {
		float f;
		memcpy(&f, p + 4 * j, 4);
		return f;
	}
	case GGML_F16:
		return ops_f16_to_f32(ops_rd16(p + 2 * j));
	case GGML_BF16:
		return ops_bf16_to_f32(ops_rd16(p + 2 * j));
	default: {
		size_t e, bb;
		if (!ggml_type_block(id, &e, &bb))
			return 0.0f;
		return ops_block_elem(id, p + j / e * bb, (int)(j % e));
	}
	}
}

/* dst[i] = element i of n elements stored as id from src (n a multiple of the block size).
 * The scalar reference every faster path is tested against. */
static inline void ops_dequant_row(uint32_t id, const void *src, float *dst, size_t n)
{
	const uint8_t *s = (const uint8_t *)src;
	size_t e, bb;
	if (!ggml_type_block(id, &e, &bb))
		return;
	if (id == GGML_F32) {
		memcpy(dst, s, n * 4);
		return;
	}
	if (e == 1) {
		for (size_t i = 0; i < n; i++)
			dst[i] = ops_row_elem(id, s, i);
		return;
	}
	for (size_t blk = 0; blk < n / e; blk++)
		for (size_t j = 0; j < e; j++)
			dst[blk * e + j] = ops_block_elem(id, s + blk * bb, (int)j);
}

#endif
