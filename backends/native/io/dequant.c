/* dequant: GGML block formats to fp32 (the values of ops/ops_quant.h, threaded) and the
 * Q8_0/Q4_0 quantizers of quantize-on-load. The fp32 values are verified against the gguf
 * Python package (tests/unit/test_gguf_dequant.c, committed fixtures). */
#include "backends/native/io/dequant.h"

#include <math.h>
#include <pthread.h>
#include <string.h>
#include "common/banned.h"

static const uint32_t type_ids[] = {GGML_F32,  GGML_F16,  GGML_BF16, GGML_Q4_0,
				    GGML_Q4_1, GGML_Q5_0, GGML_Q5_1, GGML_Q8_0,
				    GGML_Q4_K, GGML_Q5_K, GGML_Q6_K};
#define N_TYPES (sizeof type_ids / sizeof type_ids[0])
static struct ggml_type_desc type_table[N_TYPES];
static pthread_once_t type_once = PTHREAD_ONCE_INIT;

static void types_init(void) /* sizes from ops_quant.h, the one place they are written */
{
	for (size_t i = 0; i < N_TYPES; i++) {
		type_table[i].id = type_ids[i];
		type_table[i].name = ggml_type_name(type_ids[i]);
		ggml_type_block(type_ids[i], &type_table[i].block_elems, &type_table[i].block_bytes);
	}
}

static const struct ggml_type_desc *types(size_t *n)
{
	pthread_once(&type_once, types_init);
	*n = N_TYPES;
	return type_table;
}

const struct ggml_type_desc *ggml_type_find(uint32_t id)
{
	size_t n;
	const struct ggml_type_desc *t = types(&n);
	for (size_t i = 0; i < n; i++)
		if (t[i].id == id)
			return &t[i];
	return NULL;
}

const struct ggml_type_desc *ggml_type_by_name(const char *name)
{
	size_t n;
	const struct ggml_type_desc *t = types(&n);
	for (size_t i = 0; i < n; i++)
		if (strcmp(t[i].name, name) == 0)
			return &t[i];
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
	return ops_f16_to_f32(h);
}

float bf16_to_f32(uint16_t h)
{
	return ops_bf16_to_f32(h);
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

void dequant_to_f32(uint32_t id, const void *src, float *dst, size_t n)
{
	const uint8_t *s = src;
	size_t be, bb;
	if (!ggml_type_block(id, &be, &bb))
		return;
	/* chunks of whole blocks, threaded when large; each element's value is
	 * ops_block_elem's, whichever thread computes it */
	size_t chunk = be * 1024, nc = (n + chunk - 1) / chunk;
	#pragma omp parallel for schedule(static) if (nc > 16)
	for (size_t c = 0; c < nc; c++) {
		size_t i0 = c * chunk, len = n - i0 < chunk ? n - i0 : chunk;
		ops_dequant_row(id, s + i0 / be * bb, dst + i0, len);
	}
}

/* Q8_0: d = absmax / 127, q = round(x / d) (half away from zero), d as fp16. */
static void quant_q8_0(const float *x, uint8_t *y)
{
	float amax = 0.0f;
	for (int j = 0; j < 32; j++)
		amax = fmaxf(amax, fabsf(x[j]));
	float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
	uint16_t h = f32_to_fp16(d);
	y[0] = (uint8_t)(h & 0xff);
	y[1] = (uint8_t)(h >> 8);
	for (int j = 0; j < 32; j++)
		y[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
}

/* Q4_0: d = -(the value of largest magnitude) / 8, q = min(15, trunc(x / d + 8.5)). */
static void quant_q4_0(const float *x, uint8_t *y)
{
	float amax = 0.0f, mx = 0.0f;
	for (int j = 0; j < 32; j++)
		if (amax < fabsf(x[j])) {
			amax = fabsf(x[j]);
			mx = x[j];
		}
	float d = mx / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
	uint16_t h = f32_to_fp16(d);
	y[0] = (uint8_t)(h & 0xff);
	y[1] = (uint8_t)(h >> 8);
	for (int j = 0; j < 16; j++) {
		int q0 = (int)(int8_t)(x[j] * id + 8.5f), q1 = (int)(int8_t)(x[j + 16] * id + 8.5f);
		q0 = q0 < 15 ? q0 : 15;
		q1 = q1 < 15 ? q1 : 15;
		y[2 + j] = (uint8_t)(q0 | (q1 << 4));
	}
}

bool quantize_from_f32(uint32_t id, const float *src, void *dst, size_t n)
{
	if ((id != GGML_Q8_0 && id != GGML_Q4_0) || n % 32 != 0)
		return false;
	size_t bb = id == GGML_Q8_0 ? 34 : 18, nb = n / 32;
	uint8_t *y = dst;
	#pragma omp parallel for schedule(static) if (nb > 4096)
	for (size_t i = 0; i < nb; i++) {
		if (id == GGML_Q8_0)
			quant_q8_0(src + 32 * i, y + bb * i);
		else
			quant_q4_0(src + 32 * i, y + bb * i);
	}
	return true;
}
