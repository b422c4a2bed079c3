/* dequant: GGML block formats to fp32. Written from the block layouts (scale, min,
 * packed quants); verified against the gguf Python package's dequantize in
 * tests/unit/test_gguf_dequant.c with a committed fixture. */
#include "backends/native/io/dequant.h"

#include <string.h>
#include "common/banned.h"

static const struct ggml_type_desc types[] = {
	{GGML_F32, "F32", 1, 4},      {GGML_F16, "F16", 1, 2},
	{GGML_BF16, "BF16", 1, 2},    {GGML_Q4_0, "Q4_0", 32, 18},
	{GGML_Q4_1, "Q4_1", 32, 20},  {GGML_Q5_0, "Q5_0", 32, 22},
	{GGML_Q5_1, "Q5_1", 32, 24},  {GGML_Q8_0, "Q8_0", 32, 34},
	{GGML_Q4_K, "Q4_K", 256, 144}, {GGML_Q5_K, "Q5_K", 256, 176},
	{GGML_Q6_K, "Q6_K", 256, 210},
};

const struct ggml_type_desc *ggml_type_find(uint32_t id)
{
	for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
		if (types[i].id == id)
			return &types[i];
	return NULL;
}

const char *ggml_type_name(uint32_t id)
{
	static const char *const names[] = {
		"F32", "F16", "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0", "Q5_1", "Q8_0", "Q8_1",
		"Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS",
		"IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS", "I8", "I16", "I32", "I64", "F64",
		"IQ1_M", "BF16"};
	return id < sizeof names / sizeof names[0] ? names[id] : "?";
}

float fp16_to_f32(uint16_t h)
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

float bf16_to_f32(uint16_t h)
{
	uint32_t bits = (uint32_t)h << 16;
	float f;
	memcpy(&f, &bits, 4);
	return f;
}

uint16_t f32_to_fp16(float f)
{
	uint32_t x;
	memcpy(&x, &f, 4);
	uint32_t sign = (x >> 16) & 0x8000;
	uint32_t exp = (x >> 23) & 0xff, man = x & 0x7fffff;
	if (exp == 0xff)
		return (uint16_t)(sign | 0x7c00 | (man ? 0x200 : 0));
	int e = (int)exp - 127 + 15;
	if (e >= 0x1f)
		return (uint16_t)(sign | 0x7c00);
	if (e <= 0) {
		if (e < -10)
			return (uint16_t)sign;
		man |= 0x800000;
		int shift = 14 - e;
		uint32_t half = man >> shift, rem = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
		if (rem > mid || (rem == mid && (half & 1)))
			half++;
		return (uint16_t)(sign | half);
	}
	uint32_t half = ((uint32_t)e << 10) | (man >> 13), rem = man & 0x1fff;
	if (rem > 0x1000 || (rem == 0x1000 && (half & 1)))
		half++; /* may carry into the exponent, which is the right result */
	return (uint16_t)(sign | half);
}

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
	       ((uint32_t)p[3] << 24);
}

/* The 6-bit scale and min of sub-block j from the 12 packed bytes of a K-quant block. */
static void k_scale_min(int j, const uint8_t *s, int *sc, int *mn)
{
	if (j < 4) {
		*sc = s[j] & 63;
		*mn = s[j + 4] & 63;
	} else {
		*sc = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
		*mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
	}
}

static void deq_block(uint32_t id, const uint8_t *b, float *y)
{
	switch (id) {
	case GGML_Q4_0: {
		float d = fp16_to_f32(rd16(b));
		for (int j = 0; j < 16; j++) {
			y[j] = (float)((b[2 + j] & 0x0f) - 8) * d;
			y[j + 16] = (float)((b[2 + j] >> 4) - 8) * d;
		}
		break;
	}
	case GGML_Q4_1: {
		float d = fp16_to_f32(rd16(b)), m = fp16_to_f32(rd16(b + 2));
		for (int j = 0; j < 16; j++) {
			y[j] = (float)(b[4 + j] & 0x0f) * d + m;
			y[j + 16] = (float)(b[4 + j] >> 4) * d + m;
		}
		break;
	}
	case GGML_Q5_0:
	case GGML_Q5_1: { /* d, (m), 32 high bits, 16 bytes of low nibbles; Q5_0 is centred */
		size_t has_m = id == GGML_Q5_1;
		float d = fp16_to_f32(rd16(b)), m = has_m ? fp16_to_f32(rd16(b + 2)) : 0.0f;
		uint32_t qh = rd32(b + 2 + 2 * has_m);
		const uint8_t *qs = b + 6 + 2 * has_m;
		int off = has_m ? 0 : 16;
		for (int j = 0; j < 16; j++) {
			int q0 = (int)((qs[j] & 0x0f) | (((qh >> j) & 1u) << 4)) - off;
			int q1 = (int)((qs[j] >> 4) | (((qh >> (j + 16)) & 1u) << 4)) - off;
			if (has_m) {
				y[j] = (float)q0 * d + m;
				y[j + 16] = (float)q1 * d + m;
			} else {
				y[j] = (float)q0 * d;
				y[j + 16] = (float)q1 * d;
			}
		}
		break;
	}
	case GGML_Q8_0: {
		float d = fp16_to_f32(rd16(b));
		for (int j = 0; j < 32; j++)
			y[j] = (float)(int8_t)b[2 + j] * d;
		break;
	}
	case GGML_Q4_K: {
		float d = fp16_to_f32(rd16(b)), dmin = fp16_to_f32(rd16(b + 2));
		const uint8_t *sc = b + 4, *q = b + 16;
		for (int g = 0; g < 4; g++) { /* 4 groups of 64: low nibbles, then high */
			int s1, m1, s2, m2;
			k_scale_min(2 * g, sc, &s1, &m1);
			k_scale_min(2 * g + 1, sc, &s2, &m2);
			float d1 = d * (float)s1, o1 = dmin * (float)m1;
			float d2 = d * (float)s2, o2 = dmin * (float)m2;
			for (int l = 0; l < 32; l++) {
				y[l] = d1 * (float)(q[l] & 0x0f) - o1;
				y[32 + l] = d2 * (float)(q[l] >> 4) - o2;
			}
			y += 64;
			q += 32;
		}
		break;
	}
	case GGML_Q5_K: {
		float d = fp16_to_f32(rd16(b)), dmin = fp16_to_f32(rd16(b + 2));
		const uint8_t *sc = b + 4, *qh = b + 16, *ql = b + 48;
		for (int g = 0; g < 4; g++) {
			int s1, m1, s2, m2;
			k_scale_min(2 * g, sc, &s1, &m1);
			k_scale_min(2 * g + 1, sc, &s2, &m2);
			float d1 = d * (float)s1, o1 = dmin * (float)m1;
			float d2 = d * (float)s2, o2 = dmin * (float)m2;
			uint8_t u1 = (uint8_t)(1u << (2 * g)), u2 = (uint8_t)(2u << (2 * g));
			for (int l = 0; l < 32; l++) {
				y[l] = d1 * (float)((ql[l] & 0x0f) + ((qh[l] & u1) ? 16 : 0)) - o1;
				y[32 + l] = d2 * (float)((ql[l] >> 4) + ((qh[l] & u2) ? 16 : 0)) - o2;
			}
			y += 64;
			ql += 32;
		}
		break;
	}
	case GGML_Q6_K: {
		const uint8_t *ql = b, *qh = b + 128;
		const int8_t *sc = (const int8_t *)(b + 192);
		float d = fp16_to_f32(rd16(b + 208));
		for (int h = 0; h < 2; h++) { /* two halves of 128 */
			for (int l = 0; l < 32; l++) {
				int is = l / 16;
				int q1 = ((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32;
				int q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
				int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
				int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
				y[l] = d * (float)sc[is] * (float)q1;
				y[l + 32] = d * (float)sc[is + 2] * (float)q2;
				y[l + 64] = d * (float)sc[is + 4] * (float)q3;
				y[l + 96] = d * (float)sc[is + 6] * (float)q4;
			}
			y += 128;
			ql += 64;
			qh += 32;
			sc += 8;
		}
		break;
	}
	default:
		break;
	}
}

void dequant_to_f32(uint32_t id, const void *src, float *dst, size_t n)
{
	const uint8_t *s = src;
	const struct ggml_type_desc *t = ggml_type_find(id);
	if (!t)
		return;
	if (id == GGML_F32) {
		memcpy(dst, s, n * 4);
		return;
	}
	if (id == GGML_F16 || id == GGML_BF16) {
		#pragma omp parallel for schedule(static) if (n > (1u << 16))
		for (size_t i = 0; i < n; i++)
			dst[i] = id == GGML_F16 ? fp16_to_f32(rd16(s + 2 * i)) : bf16_to_f32(rd16(s + 2 * i));
		return;
	}
	size_t nb = n / t->block_elems;
	#pragma omp parallel for schedule(static) if (nb > 256)
	for (size_t i = 0; i < nb; i++)
		deq_block(id, s + i * t->block_bytes, dst + i * t->block_elems);
}
