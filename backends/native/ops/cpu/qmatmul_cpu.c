/* qmatmul_cpu: products with weights kept in their file's format (ops.h matmul_w) and the
 * rows of such an embedding. One to eight activation rows (decode) read each weight block
 * once and dequantize it in registers (AVX-512): a tile of the m rows by R weight rows, one
 * 16-lane FMA chain per pair over k in order, finished by the 16-way tree of reduce16_cpu.h,
 * so row i of an m-row product has the bits of the one-row product of row i, on any thread
 * count. More rows (prefill, training) dequantize a panel of weight rows into a buffer of the
 * calling thread and hand it to oneDNN's sgemm (matmul_cpu.c), which runs at its usual
 * speed. Values are ops_quant.h's, bit for bit (test_qmatmul); without AVX-512 every product
 * takes the panel path. fp32 weights go to ops_cpu_matmul unchanged. */
#include "backends/native/ops/cpu/ops_cpu_internal.h"
#include "backends/native/ops/cpu/reduce16_cpu.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "backends/native/ops/ops.h"
#include "backends/native/ops/ops_quant.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__F16C__)
#define QM_SIMD 1
#include <immintrin.h>
#else
#define QM_SIMD 0
#endif
#include "common/banned.h"

#define QM_BLOCK 16              /* weight rows per scheduling unit */
#define QM_PAR_MIN (1 << 15)     /* below this many weights, one thread */
#define QM_PANEL_FLOATS (1u << 20) /* a panel holds at most 4 MiB of dequantized weights */

/* The calling thread's panel, grown on demand and kept (the step loop allocates nothing). */
static float *panel_get(size_t floats)
{
	static _Thread_local float *buf;
	static _Thread_local size_t cap;
	if (floats > cap) {
		float *nb = aligned_alloc(64, (floats * sizeof(float) + 63) / 64 * 64);
		if (!nb)
			return NULL;
		free(buf);
		buf = nb;
		cap = floats;
	}
	return buf;
}

#if QM_SIMD

#define AI static inline __attribute__((always_inline))

/* the fp16 at p in every lane (one broadcast load and one conversion, no scalar work) */
AI __m512 bcast_f16(const uint8_t *p)
{
	uint16_t h;
	memcpy(&h, p, 2);
	return _mm512_cvtph_ps(_mm256_set1_epi16((short)h));
}

/* the two fp16 at p (a scale and a min) in every lane of *d and *m: two scalar
 * conversions and broadcasts measured ~5 % faster in the kernels than one vector
 * conversion and two lane shuffles */
AI void bcast_f16x2(const uint8_t *p, __m512 *d, __m512 *m)
{
	*d = _mm512_set1_ps(_cvtsh_ss(ops_rd16(p)));
	*m = _mm512_set1_ps(_cvtsh_ss(ops_rd16(p + 2)));
}

AI __m512i load16_u8(const uint8_t *p)
{
	return _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)p));
}

/* 0, 1, ..., 15: the quant values a 16-entry table is built over */
AI __m512 iota16(void)
{
	return _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
}

/* Each function gives the 32 values of chunk c (elements 32c .. 32c + 31) of a row in two
 * vectors. A 4-bit type builds the table of its 16 possible values with the formula of
 * ops_block_elem (the product is exact, so mul/fma give its bits) and looks the quants up. */

AI void deq_q4_0(const uint8_t *row, int c, __m512 *v0, __m512 *v1)
{
	const uint8_t *b = row + (size_t)c * 18;
	__m512 t = _mm512_mul_ps(_mm512_sub_ps(iota16(), _mm512_set1_ps(8.0f)), bcast_f16(b));
	__m512i q = load16_u8(b + 2);
	*v0 = _mm512_permutexvar_ps(q, t); /* the lookup reads the low 4 bits of each lane */
	*v1 = _mm512_permutexvar_ps(_mm512_srli_epi32(q, 4), t);
}

AI void deq_q4_1(const uint8_t *row, int c, __m512 *v0, __m512 *v1)
{
	const uint8_t *b = row + (size_t)c * 20;
	__m512 d, m;
	bcast_f16x2(b, &d, &m);
	__m512 t = _mm512_fmadd_ps(iota16(), d, m);
	__m512i q = load16_u8(b + 4);
	*v0 = _mm512_permutexvar_ps(q, t);
	*v1 = _mm512_permutexvar_ps(_mm512_srli_epi32(q, 4), t);
}

/* Q5_0 / Q5_1: 32-entry table in two vectors, index nibble | high bit << 4 */
AI void deq_q5(const uint8_t *row, int c, bool has_m, __m512 *v0, __m512 *v1)
{
	const uint8_t *b = row + (size_t)c * (has_m ? 24 : 22);
	__m512 d, m, lo, hi, i16 = _mm512_set1_ps(16.0f);
	if (has_m)
		bcast_f16x2(b, &d, &m);
	else
		d = bcast_f16(b);
	if (has_m) {
		lo = _mm512_fmadd_ps(iota16(), d, m);
		hi = _mm512_fmadd_ps(_mm512_add_ps(iota16(), i16), d, m);
	} else {
		lo = _mm512_mul_ps(_mm512_sub_ps(iota16(), i16), d);
		hi = _mm512_mul_ps(iota16(), d);
	}
	uint32_t qh = ops_rd32(b + 2 + 2 * has_m);
	__m512i q = load16_u8(b + 6 + 2 * has_m), s16 = _mm512_set1_epi32(16);
	__m512i q0 = _mm512_and_si512(q, _mm512_set1_epi32(15)), q1 = _mm512_srli_epi32(q, 4);
	q0 = _mm512_mask_or_epi32(q0, (__mmask16)(qh & 0xffff), q0, s16);
	q1 = _mm512_mask_or_epi32(q1, (__mmask16)(qh >> 16), q1, s16);
	*v0 = _mm512_permutex2var_ps(lo, q0, hi);
	*v1 = _mm512_permutex2var_ps(lo, q1, hi);
}

AI void deq_q8_0(const uint8_t *row, int c, __m512 *v0, __m512 *v1)
{
	const uint8_t *b = row + (size_t)c * 34;
	__m512 d = bcast_f16(b);
	__m512i q0 = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(b + 2)));
	__m512i q1 = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(b + 18)));
	*v0 = _mm512_mul_ps(_mm512_cvtepi32_ps(q0), d);
	*v1 = _mm512_mul_ps(_mm512_cvtepi32_ps(q1), d);
}

/* Q4_K / Q5_K: chunk c is sub-block c % 8 of block c / 8 */
AI void deq_qk45(const uint8_t *row, int c, bool five, __m512 *v0, __m512 *v1)
{
	const uint8_t *b = row + (size_t)(c / 8) * (five ? 176 : 144);
	int sub = c % 8, g = sub / 2, sc, mn;
	ops_k_scale_min(sub, b + 4, &sc, &mn);
	float d = _cvtsh_ss(ops_rd16(b)), dmin = _cvtsh_ss(ops_rd16(b + 2));
	__m512 d1 = _mm512_set1_ps(d * (float)sc), o1 = _mm512_set1_ps(dmin * (float)mn);
	const uint8_t *qs = b + (five ? 48 : 16) + 32 * g;
	__m512i q0 = load16_u8(qs), q1 = load16_u8(qs + 16);
	if (sub & 1) {
		q0 = _mm512_srli_epi32(q0, 4);
		q1 = _mm512_srli_epi32(q1, 4);
	} else {
		q0 = _mm512_and_si512(q0, _mm512_set1_epi32(15));
		q1 = _mm512_and_si512(q1, _mm512_set1_epi32(15));
	}
	if (five) {
		__m512i bit = _mm512_set1_epi32(1 << sub), s16 = _mm512_set1_epi32(16);
		__mmask16 h0 = _mm512_test_epi32_mask(load16_u8(b + 16), bit);
		__mmask16 h1 = _mm512_test_epi32_mask(load16_u8(b + 32), bit);
		q0 = _mm512_mask_or_epi32(q0, h0, q0, s16);
		q1 = _mm512_mask_or_epi32(q1, h1, q1, s16);
	}
	*v0 = _mm512_fmsub_ps(_mm512_cvtepi32_ps(q0), d1, o1);
	*v1 = _mm512_fmsub_ps(_mm512_cvtepi32_ps(q1), d1, o1);
}

/* Q6_K: chunk c is quarter (c % 8) % 4 of half (c % 8) / 4 of block c / 8; two scales */
AI void deq_q6_k(const uint8_t *row, int c, __m512 *v0, __m512 *v1)
{
	const uint8_t *b = row + (size_t)(c / 8) * 210;
	int sub = c % 8, h = sub / 4, quarter = sub % 4;
	const uint8_t *ql = b + 64 * h + 32 * (quarter & 1), *qh = b + 128 + 32 * h;
	const int8_t *sc = (const int8_t *)(b + 192 + 8 * h + 2 * quarter);
	float d = _cvtsh_ss(ops_rd16(b + 208));
	__m512i l0 = load16_u8(ql), l1 = load16_u8(ql + 16);
	if (quarter < 2) {
		l0 = _mm512_and_si512(l0, _mm512_set1_epi32(15));
		l1 = _mm512_and_si512(l1, _mm512_set1_epi32(15));
	} else {
		l0 = _mm512_srli_epi32(l0, 4);
		l1 = _mm512_srli_epi32(l1, 4);
	}
	__m512i three = _mm512_set1_epi32(3), s32 = _mm512_set1_epi32(32);
	__m512i h0 = _mm512_and_si512(_mm512_srli_epi32(load16_u8(qh), 2 * quarter), three);
	__m512i h1 = _mm512_and_si512(_mm512_srli_epi32(load16_u8(qh + 16), 2 * quarter), three);
	__m512i q0 = _mm512_sub_epi32(_mm512_or_si512(l0, _mm512_slli_epi32(h0, 4)), s32);
	__m512i q1 = _mm512_sub_epi32(_mm512_or_si512(l1, _mm512_slli_epi32(h1, 4)), s32);
	*v0 = _mm512_mul_ps(_mm512_cvtepi32_ps(q0), _mm512_set1_ps(d * (float)sc[0]));
	*v1 = _mm512_mul_ps(_mm512_cvtepi32_ps(q1), _mm512_set1_ps(d * (float)sc[1]));
}

/* F16 / BF16: masked where the row ends inside the chunk (any k) */
AI void deq_f16(const uint8_t *row, int c, __mmask16 m0, __mmask16 m1, __m512 *v0, __m512 *v1)
{
	const uint16_t *p = (const uint16_t *)(const void *)row + (size_t)c * 32;
	*v0 = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m0, p));
	*v1 = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m1, p + 16));
}

AI void deq_bf16(const uint8_t *row, int c, __mmask16 m0, __mmask16 m1, __m512 *v0, __m512 *v1)
{
	const uint16_t *p = (const uint16_t *)(const void *)row + (size_t)c * 32;
	__m512i x0 = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m0, p));
	__m512i x1 = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m1, p + 16));
	*v0 = _mm512_castsi512_ps(_mm512_slli_epi32(x0, 16));
	*v1 = _mm512_castsi512_ps(_mm512_slli_epi32(x1, 16));
}

/* Chunk c of a row of type T (a constant at every call, so the switch folds away). */
AI void deq32(uint32_t T, const uint8_t *row, int c, __mmask16 m0, __mmask16 m1, __m512 *v0,
	      __m512 *v1)
{
	switch (T) {
	case GGML_Q4_0: deq_q4_0(row, c, v0, v1); break;
	case GGML_Q4_1: deq_q4_1(row, c, v0, v1); break;
	case GGML_Q5_0: deq_q5(row, c, false, v0, v1); break;
	case GGML_Q5_1: deq_q5(row, c, true, v0, v1); break;
	case GGML_Q8_0: deq_q8_0(row, c, v0, v1); break;
	case GGML_Q4_K: deq_qk45(row, c, false, v0, v1); break;
	case GGML_Q5_K: deq_qk45(row, c, true, v0, v1); break;
	case GGML_Q6_K: deq_q6_k(row, c, v0, v1); break;
	case GGML_F16: deq_f16(row, c, m0, m1, v0, v1); break;
	case GGML_BF16: deq_bf16(row, c, m0, m1, v0, v1); break;
	default: *v0 = *v1 = _mm512_setzero_ps(); break;
	}
}

/* lanes of chunk c that lie inside a row of k elements (all of them for block types) */
AI void chunk_masks(uint32_t T, int c, int k, __mmask16 *m0, __mmask16 *m1)
{
	*m0 = *m1 = (__mmask16)0xffff;
	if (T != GGML_F16 && T != GGML_BF16)
		return;
	int rem = k - 32 * c;
	if (rem < 32) {
		*m0 = rem >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << rem) - 1u);
		*m1 = rem > 16 ? (__mmask16)((1u << (rem - 16)) - 1u) : (__mmask16)0;
	}
}

/* rows [r0, r1) of w, dequantized into out ((r1 - r0) rows of k floats) */
AI void deq_rows(uint32_t T, float *out, const uint8_t *w, size_t rb, int r0, int r1, int k)
{
	int nc = (k + 31) / 32;
	for (int r = r0; r < r1; r++) {
		const uint8_t *row = w + (size_t)r * rb;
		float *o = out + (size_t)(r - r0) * k;
		for (int c = 0; c < nc; c++) {
			__mmask16 m0, m1;
			__m512 v0, v1;
			chunk_masks(T, c, k, &m0, &m1);
			deq32(T, row, c, m0, m1, &v0, &v1);
			_mm512_mask_storeu_ps(o + 32 * c, m0, v0);
			_mm512_mask_storeu_ps(o + 32 * c + 16, m1, v1);
		}
	}
}

/* the byte offset of chunk c in a row of type T (for the prefetch) */
AI size_t chunk_off(uint32_t T, int c)
{
	size_t e = 32, b = 128;
	ggml_type_block(T, &e, &b);
	return e == 1 ? (size_t)c * 32 * b : (size_t)c * 32 / e * b;
}

/* software prefetch of the weight rows QM_PF_TILES tiles ahead into L2: the hardware
 * prefetchers alone leave the dequantizing FMAs waiting on memory */
#define QM_PF_TILES 4
#define QM_PF_BYTES(R, rb) ((size_t)QM_PF_TILES * (size_t)(R) * (rb))

/* Weight rows [j0, j0 + nr) (nr <= R) against all M rows of a: one FMA chain per pair over
 * the chunks in k order (the chunk's two vectors in turn), then reduce16. M and R are
 * constants at every call (M R <= 16); a short tile repeats its last row. */
AI void qtile(uint32_t T, int M, int R, float *c, const float *a, const uint8_t *w, size_t rb,
	      int j0, int nr, int n, int k, float alpha, float beta)
{
	__m512 acc[16];
	const uint8_t *wr[8];
#pragma GCC unroll 16
	for (int q = 0; q < 16; q++)
		acc[q] = _mm512_setzero_ps();
#pragma GCC unroll 8
	for (int r = 0; r < R; r++)
		wr[r] = w + (size_t)(j0 + (r < nr ? r : nr - 1)) * rb;
	int nc = (k + 31) / 32;
	for (int cc = 0; cc < nc; cc++) {
		__mmask16 m0, m1;
		chunk_masks(T, cc, k, &m0, &m1);
		__m512 w0[8], w1[8];
#pragma GCC unroll 8
		for (int r = 0; r < R; r++)
			_mm_prefetch((const char *)(wr[r] + QM_PF_BYTES(R, rb) + chunk_off(T, cc)),
				     _MM_HINT_T1);
#pragma GCC unroll 8
		for (int r = 0; r < R; r++)
			deq32(T, wr[r], cc, m0, m1, &w0[r], &w1[r]);
#pragma GCC unroll 8
		for (int i = 0; i < M; i++) {
			const float *ai = a + (size_t)i * k + 32 * cc;
			__m512 a0 = _mm512_maskz_loadu_ps(m0, ai), a1 = _mm512_maskz_loadu_ps(m1, ai + 16);
			__asm__("" : "+v"(a0), "+v"(a1)); /* one load per vector, not one per FMA */
#pragma GCC unroll 8
			for (int r = 0; r < R; r++) {
				acc[i * R + r] = _mm512_fmadd_ps(w0[r], a0, acc[i * R + r]);
				acc[i * R + r] = _mm512_fmadd_ps(w1[r], a1, acc[i * R + r]);
			}
		}
	}
	__m512 v[16];
#pragma GCC unroll 16
	for (int q = 0; q < 16; q++)
		v[q / 4 + 4 * (q % 4)] = acc[q];
	float out[16];
	_mm512_storeu_ps(out, _mm512_mul_ps(_mm512_set1_ps(alpha), reduce16(v)));
	for (int i = 0; i < M; i++)
		for (int r = 0; r < nr; r++) {
			float *o = c + (size_t)i * n + j0 + r;
			if (beta == 0.0f) {
				*o = out[i * R + r];
			} else { /* two statements: never contracted (as gemv_cpu.c rounds) */
				float old = beta * *o;
				*o = out[i * R + r] + old;
			}
		}
}

typedef void (*qblock_fn)(float *c, const float *a, const uint8_t *w, size_t rb, int blk, int n,
			  int k, float alpha, float beta);
typedef void (*qrows_fn)(float *out, const uint8_t *w, size_t rb, int r0, int r1, int k);

/* one scheduling block of weight rows for type T and M rows (R weight rows per tile) */
#define QBLOCK(TN, T, M, R)                                                                   \
	static void qblock_##TN##_##M(float *c, const float *a, const uint8_t *w, size_t rb,  \
				      int blk, int n, int k, float alpha, float beta)         \
	{                                                                                     \
		int j0 = blk * QM_BLOCK, j1 = j0 + QM_BLOCK < n ? j0 + QM_BLOCK : n;          \
		for (int j = j0; j < j1; j += (R))                                            \
			qtile(T, M, R, c, a, w, rb, j, j1 - j < (R) ? j1 - j : (R), n, k,     \
			      alpha, beta);                                                   \
	}
#define QTYPE(TN, T)                                                                          \
	QBLOCK(TN, T, 1, 8)                                                                   \
	QBLOCK(TN, T, 2, 4)                                                                   \
	QBLOCK(TN, T, 3, 4)                                                                   \
	QBLOCK(TN, T, 4, 4)                                                                   \
	QBLOCK(TN, T, 5, 2)                                                                   \
	QBLOCK(TN, T, 6, 2)                                                                   \
	QBLOCK(TN, T, 7, 2)                                                                   \
	QBLOCK(TN, T, 8, 2)                                                                   \
	static void qrows_##TN(float *out, const uint8_t *w, size_t rb, int r0, int r1, int k) \
	{                                                                                     \
		deq_rows(T, out, w, rb, r0, r1, k);                                           \
	}                                                                                     \
	static const qblock_fn qblocks_##TN[9] = {0,             qblock_##TN##_1,             \
						  qblock_##TN##_2, qblock_##TN##_3,           \
						  qblock_##TN##_4, qblock_##TN##_5,           \
						  qblock_##TN##_6, qblock_##TN##_7,           \
						  qblock_##TN##_8};

QTYPE(q4_0, GGML_Q4_0)
QTYPE(q4_1, GGML_Q4_1)
QTYPE(q5_0, GGML_Q5_0)
QTYPE(q5_1, GGML_Q5_1)
QTYPE(q8_0, GGML_Q8_0)
QTYPE(q4_k, GGML_Q4_K)
QTYPE(q5_k, GGML_Q5_K)
QTYPE(q6_k, GGML_Q6_K)
QTYPE(f16, GGML_F16)
QTYPE(bf16, GGML_BF16)

/* the kernels of a type, false when it has none (F32 and unknown ids) */
static bool kernels_of(uint32_t type, const qblock_fn **blocks, qrows_fn *rows)
{
	switch (type) {
#define K(TN, T)                                                                              \
	case T:                                                                               \
		*blocks = qblocks_##TN;                                                       \
		*rows = qrows_##TN;                                                           \
		return true;
		K(q4_0, GGML_Q4_0)
		K(q4_1, GGML_Q4_1)
		K(q5_0, GGML_Q5_0)
		K(q5_1, GGML_Q5_1)
		K(q8_0, GGML_Q8_0)
		K(q4_k, GGML_Q4_K)
		K(q5_k, GGML_Q5_K)
		K(q6_k, GGML_Q6_K)
		K(f16, GGML_F16)
		K(bf16, GGML_BF16)
#undef K
	default:
		return false;
	}
}

/* c (m, n) = alpha a (m, k) W^T + beta c for 1 <= m <= 8, dequantizing in registers */
static void small_product(float *c, const float *a, const struct ops_w *w, int m, float alpha,
			  float beta, const qblock_fn *blocks)
{
	qblock_fn f = blocks[m];
	int n = w->n, k = w->k, nblocks = (n + QM_BLOCK - 1) / QM_BLOCK;
	size_t rb = ggml_row_bytes(w->type, (size_t)k);
	const uint8_t *wd = w->data;
	if ((size_t)n * (size_t)k < QM_PAR_MIN) {
		for (int b = 0; b < nblocks; b++)
			f(c, a, wd, rb, b, n, k, alpha, beta);
		return;
	}
	/* static: each thread streams one contiguous range of rows (one synchronisation, and
	 * prefetches that stay in its own range, where dynamic chunks cost ~20 % more) */
#pragma omp parallel for schedule(static)
	for (int b = 0; b < nblocks; b++)
		f(c, a, wd, rb, b, n, k, alpha, beta);
}

#endif /* QM_SIMD */

void ops_cpu_dequant_rows(float *out, const struct ops_w *w, int r0, int r1)
{
	size_t rb = ggml_row_bytes(w->type, (size_t)w->k);
	const uint8_t *wd = w->data;
	int k = w->k;
	bool par = (size_t)(r1 - r0) * (size_t)k > 65536;
#if QM_SIMD
	const qblock_fn *blocks;
	qrows_fn rows;
	if (kernels_of(w->type, &blocks, &rows)) {
		int step = 8;
#pragma omp parallel for schedule(static) if (par)
		for (int r = r0; r < r1; r += step)
			rows(out + (size_t)(r - r0) * k, wd, rb, r, r + step < r1 ? r + step : r1, k);
		return;
	}
#endif
#pragma omp parallel for schedule(static) if (par)
	for (int r = r0; r < r1; r++)
		ops_dequant_row(w->type, wd + (size_t)r * rb, out + (size_t)(r - r0) * k,
				(size_t)k);
}

/* Many rows: panels of weight rows dequantized into the calling thread's buffer, each
 * multiplied by oneDNN's sgemm (threaded inside). TB: C[:, j0:j1] = alpha A P^T (+ beta C);
 * otherwise the panels split the reduction: C = alpha sum_j A[:, j0:j1] P + beta C. */
static void panel_product(float *c, const float *a, const struct ops_w *w, int m, unsigned flags,
			  float alpha, float beta)
{
	int n = w->n, k = w->k;
	bool tb = (flags & OPS_TB) != 0;
	int rows = (int)(QM_PANEL_FLOATS / (unsigned)k);
	rows = rows < 1 ? 1 : rows > n ? n : rows;
	float *p = panel_get((size_t)rows * (size_t)k);
	if (!p) { /* cannot happen for sane shapes; one row at a time needs k floats */
		rows = 1;
		p = panel_get((size_t)k);
		if (!p)
			abort();
	}
	size_t cn = (size_t)m * (size_t)(tb ? n : k);
	if (beta == 0.0f) /* sgemm may read C even with beta 0; NaN * 0 would leak through */
		memset(c, 0, cn * sizeof(float));
	for (int j0 = 0; j0 < n; j0 += rows) {
		int j1 = j0 + rows < n ? j0 + rows : n, nr = j1 - j0;
		ops_cpu_dequant_rows(p, w, j0, j1);
		if (tb)
			ops_cpu_gemm_ld(false, true, m, nr, k, alpha, a, k, p, k, beta, c + j0, n);
		else
			ops_cpu_gemm_ld(false, false, m, k, nr, alpha, a + j0, n, p, k,
					j0 == 0 ? beta : 1.0f, c, k);
	}
}

void ops_cpu_matmul_w(float *c, const float *a, const struct ops_w *w, int m, unsigned flags,
		      float alpha, float beta)
{
	bool tb = (flags & OPS_TB) != 0;
	if (w->type == GGML_F32) {
		ops_cpu_matmul(c, a, w->data, m, tb ? w->n : w->k, tb ? w->k : w->n,
			       flags & (OPS_TB | OPS_BF16 | OPS_CONST_B), alpha, beta);
		return;
	}
	if (m <= 0)
		return;
	if ((flags & OPS_BF16) && ops_cpu_has_bf16() &&
	    ops_cpu_matmul_bf16_w(c, a, w, m, flags, alpha, beta))
		return;
#if QM_SIMD
	const qblock_fn *blocks;
	qrows_fn rows;
	if (tb && m <= 8 && kernels_of(w->type, &blocks, &rows)) {
		small_product(c, a, w, m, alpha, beta, blocks);
		return;
	}
#endif
	panel_product(c, a, w, m, flags, alpha, beta);
}
