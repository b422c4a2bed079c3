/* gemm_small_cpu: a few rows times a transposed fp32 weight, c (m, n) = alpha a (m, k) W^T +
 * beta c with 2 <= m <= 8 (batched decode). AVX-512: a tile of all m rows by R weight rows,
 * one 16-lane FMA chain per pair, every loaded vector used m or R times (the weight is read
 * once), the weight prefetched into L2 ahead of the FMAs, the m R chains finished by the
 * shared 16-way tree of reduce16_cpu.h. Each output is one chain in k order plus that tree,
 * as in gemv_cpu.c, so row i equals the one-row product of a's row i, bit for bit, on any
 * thread count. Without AVX-512: one gemv per row (the weight read m times). */
#include "backends/native/ops/cpu/ops_cpu_internal.h"
#include "backends/native/ops/cpu/reduce16_cpu.h"

#include <omp.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif
#include "common/banned.h"
#if defined(__AVX512F__)

#define SMALL_BLOCK 16 /* weight rows per scheduling unit */
#define SMALL_PAR_MIN (1 << 15) /* below this many weights, one thread */
/* software prefetch of the weight rows PF_TILES tiles ahead into L2 (T1): without it the
 * weight stream stalls the FMAs (2x slower); into L1 (T0) or non-temporal, no better */
#define PF_TILES 4
#define PF_HINT _MM_HINT_T1

/* rows [j0, j0 + nr) of w (n, k), nr <= R, against all M rows of a; M and R are constants
 * at every call (M R <= 16). A short tile repeats its last row instead of branching. */
static inline __attribute__((always_inline)) void
tile(float *c, const float *a, const float *w, int M, int R, int j0, int nr, int n, int k,
     float alpha, float beta)
{
	__m512 acc[16];
	const float *wr[8];
	__mmask16 tail = (__mmask16)((1u << (k % 16)) - 1u);
#pragma GCC unroll 16
	for (int q = 0; q < 16; q++)
		acc[q] = _mm512_setzero_ps();
#pragma GCC unroll 8
	for (int r = 0; r < R; r++)
		wr[r] = w + (size_t)(j0 + (r < nr ? r : nr - 1)) * k;
	int p = 0;
	for (; p + 16 <= k; p += 16) {
		__m512 wv[8];
#pragma GCC unroll 8
		for (int r = 0; r < R; r++)
			wv[r] = _mm512_loadu_ps(wr[r] + p);
#pragma GCC unroll 8
		for (int r = 0; r < R; r++)
			_mm_prefetch((const char *)(wr[r] + PF_TILES * R * (size_t)k + p), PF_HINT);
#pragma GCC unroll 8
		for (int i = 0; i < M; i++) {
			__m512 av = _mm512_loadu_ps(a + (size_t)i * k + p);
			__asm__("" : "+v"(av)); /* one load per vector, not one per FMA */
#pragma GCC unroll 8
			for (int r = 0; r < R; r++)
				acc[i * R + r] = _mm512_fmadd_ps(wv[r], av, acc[i * R + r]);
		}
	}
	if (p < k) {
		__m512 wv[8];
#pragma GCC unroll 8
		for (int r = 0; r < R; r++)
			wv[r] = _mm512_maskz_loadu_ps(tail, wr[r] + p);
#pragma GCC unroll 8
		for (int i = 0; i < M; i++) {
			__m512 av = _mm512_maskz_loadu_ps(tail, a + (size_t)i * k + p);
#pragma GCC unroll 8
			for (int r = 0; r < R; r++)
				acc[i * R + r] = _mm512_fmadd_ps(wv[r], av, acc[i * R + r]);
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
			} else { /* two statements: never contracted to an FMA (gemv rounds twice) */
				float old = beta * *o;
				*o = out[i * R + r] + old;
			}
		}
}

/* weight rows of one block, M and R constant */
#define BLOCK_FN(M, R)                                                                       \
	static void block_##M(float *c, const float *a, const float *w, int blk, int n, int k,  \
			      float alpha, float beta)                                         \
	{                                                                                    \
		int j0 = blk * SMALL_BLOCK;                                                  \
		int j1 = j0 + SMALL_BLOCK < n ? j0 + SMALL_BLOCK : n;                        \
		for (int j = j0; j < j1; j += (R))                                           \
			tile(c, a, w, M, R, j, j1 - j < (R) ? j1 - j : (R), n, k, alpha, beta); \
	}
BLOCK_FN(2, 4)
BLOCK_FN(3, 4)
BLOCK_FN(4, 4)
BLOCK_FN(5, 2)
BLOCK_FN(6, 2)
BLOCK_FN(7, 2)
BLOCK_FN(8, 2)

typedef void (*block_fn)(float *c, const float *a, const float *w, int blk, int n, int k,
			 float alpha, float beta);

/* blocks per dynamic chunk: ~8 chunks per thread */
static int chunk_of(int nblocks)
{
	int per = nblocks / (8 * omp_get_max_threads());
	return per > 1 ? per : 1;
}

void ops_cpu_gemm_small(float *c, const float *a, const float *w, int m, int n, int k,
			float alpha, float beta)
{
	static const block_fn fns[9] = {0, 0, block_2, block_3, block_4,
					block_5, block_6, block_7, block_8};
	block_fn f = fns[m];
	int nblocks = (n + SMALL_BLOCK - 1) / SMALL_BLOCK;
	/* a 64-byte aligned copy of a (at most 8 x k floats): its 8 loads per step of k then
	 * never straddle cache lines (the same values in the same order: the same bits) */
	/* kept per thread and grown on demand, so the decode loop allocates nothing */
	static _Thread_local float *al;
	static _Thread_local size_t al_cap;
	size_t abytes = ((size_t)m * k * sizeof(float) + 63) & ~(size_t)63;
	if (abytes > al_cap) {
		float *nb = aligned_alloc(64, abytes);
		if (nb) {
			free(al);
			al = nb;
			al_cap = abytes;
		}
	}
	if (al && abytes <= al_cap) {
		memcpy(al, a, (size_t)m * k * sizeof(float));
		a = al;
	}
	if ((size_t)n * (size_t)k < SMALL_PAR_MIN) {
		for (int b = 0; b < nblocks; b++)
			f(c, a, w, b, n, k, alpha, beta);
	} else {
#pragma omp parallel for schedule(dynamic, chunk_of(nblocks))
		for (int b = 0; b < nblocks; b++)
			f(c, a, w, b, n, k, alpha, beta);
	}
}

#else

void ops_cpu_gemm_small(float *c, const float *a, const float *w, int m, int n, int k,
			float alpha, float beta)
{
	for (int i = 0; i < m; i++)
		ops_cpu_gemv(c + (size_t)i * n, a + (size_t)i * k, w, n, k, alpha, beta);
}

#endif
