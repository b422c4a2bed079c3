/* gemv_cpu: one row times a transposed fp32 weight, y = alpha x W^T + beta y (decode with
 * one prompt: every linear layer and the LM head). Memory-bound, so W is streamed once,
 * row after row (interleaving rows, or software prefetch, measured slower), and groups of
 * rows share one horizontal sum. AVX-512 (16 rows per group) or AVX2 + FMA (4 rows) when
 * the compiler targets them (-march=native), plain C otherwise. Each output is one dot
 * product in a fixed order (whichever thread computes it): the bits do not depend on the
 * thread count or the schedule. */
#include "backends/native/ops/cpu/ops_cpu_internal.h"
#include "backends/native/ops/cpu/reduce16_cpu.h"

#include <omp.h>
#include <stddef.h>

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#endif
#include "common/banned.h"

#define GEMV_BLOCK 16 /* rows per scheduling unit; a multiple of GEMV_ROWS */
#define GEMV_PAR_MIN (1 << 16) /* below this many weights, one thread */

#if !defined(__AVX512F__)
static inline float finish(float dot, float old, float alpha, float beta)
{
	return beta == 0.0f ? alpha * dot : alpha * dot + beta * old;
}
#endif

#if defined(__AVX512F__)

/* rows [j0, j0 + nr) of w (n, k), nr <= 16, one after the other (a single stream through
 * memory: interleaving rows, or software prefetch, measured slower). Each row is one
 * 16-lane FMA chain over k in order (masked tail), then reduce16 for all 16 together:
 * the arithmetic of a row does not depend on nr or its slot. */
static void rows_dot(float *y, const float *x, const float *w, int j0, int nr, int k,
		     float alpha, float beta)
{
	__m512 acc[16];
	__mmask16 tail = (__mmask16)((1u << (k % 16)) - 1u);
#pragma GCC unroll 16
	for (int r = 0; r < 16; r++) {
		acc[r] = _mm512_setzero_ps();
		if (r >= nr)
			continue;
		const float *wr = w + (size_t)(j0 + r) * k;
		int p = 0;
		for (; p + 16 <= k; p += 16)
			acc[r] = _mm512_fmadd_ps(_mm512_loadu_ps(wr + p), _mm512_loadu_ps(x + p),
						 acc[r]);
		if (p < k)
			acc[r] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, wr + p),
						 _mm512_maskz_loadu_ps(tail, x + p), acc[r]);
	}
	__m512 v[16];
#pragma GCC unroll 16
	for (int r = 0; r < 16; r++)
		v[r / 4 + 4 * (r % 4)] = acc[r];
	__m512 d = _mm512_mul_ps(_mm512_set1_ps(alpha), reduce16(v));
	__mmask16 mk = (__mmask16)((1u << nr) - 1u);
	if (beta != 0.0f) /* alpha dot + beta old */
		d = _mm512_add_ps(d, _mm512_mul_ps(_mm512_set1_ps(beta),
						   _mm512_maskz_loadu_ps(mk, y + j0)));
	_mm512_mask_storeu_ps(y + j0, mk, d);
}

#define GEMV_ROWS 16

#elif defined(__AVX2__) && defined(__FMA__)

#define GEMV_ROWS 4

static inline __m128 row_dot(const float *a, const float *x, int k)
{
	__m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
	int p = 0;
	for (; p + 32 <= k; p += 32) {
		s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + p), _mm256_loadu_ps(x + p), s0);
		s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + p + 8), _mm256_loadu_ps(x + p + 8), s1);
		s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + p + 16), _mm256_loadu_ps(x + p + 16), s2);
		s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + p + 24), _mm256_loadu_ps(x + p + 24), s3);
	}
	for (; p + 8 <= k; p += 8)
		s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + p), _mm256_loadu_ps(x + p), s0);
	__m256 s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
	if (p < k) { /* tail through a zero-padded copy, added as its own 8 lanes */
		float ta[8] = {0}, tx[8] = {0};
		for (int i = 0; p + i < k; i++) {
			ta[i] = a[p + i];
			tx[i] = x[p + i];
		}
		s = _mm256_fmadd_ps(_mm256_loadu_ps(ta), _mm256_loadu_ps(tx), s);
	}
	return _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
}


/* rows [j0, j0 + nr) of w (n, k), nr <= GEMV_ROWS; the 4-lane partial sums of up to four
 * rows are finished together: hadd(hadd(f0, f1), hadd(f2, f3)) gives row r as
 * (l0 + l1) + (l2 + l3), the same for every nr. */
static void rows_dot(float *y, const float *x, const float *w, int j0, int nr, int k,
		     float alpha, float beta)
{
	__m128 f[GEMV_ROWS];
	for (int r = 0; r < GEMV_ROWS; r++)
		f[r] = r < nr ? row_dot(w + (size_t)(j0 + r) * k, x, k) : _mm_setzero_ps();
	__m128 s = _mm_hadd_ps(_mm_hadd_ps(f[0], f[1]), _mm_hadd_ps(f[2], f[3]));
	float out[GEMV_ROWS];
	_mm_storeu_ps(out, s);
	for (int r = 0; r < nr; r++)
		y[j0 + r] = finish(out[r], y[j0 + r], alpha, beta);
}

#else

#define GEMV_ROWS 4

/* portable: 8 partial sums per row, added pairwise at the end */
static void rows_dot(float *y, const float *x, const float *w, int j0, int nr, int k,
		     float alpha, float beta)
{
	for (int r = 0; r < nr; r++) {
		const float *wr = w + (size_t)(j0 + r) * k;
		float s[8] = {0};
		int p = 0;
		for (; p + 8 <= k; p += 8)
			for (int i = 0; i < 8; i++)
				s[i] += wr[p + i] * x[p + i];
		for (int i = 0; p + i < k; i++)
			s[i] += wr[p + i] * x[p + i];
		float t = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
		y[j0 + r] = finish(t, y[j0 + r], alpha, beta);
	}
}

#endif

/* rows of one block (m = 1) */
static void block_dot(float *y, const float *x, const float *w, int blk, int n, int k,
		      float alpha, float beta)
{
	int j0 = blk * GEMV_BLOCK, j1 = j0 + GEMV_BLOCK < n ? j0 + GEMV_BLOCK : n;
	for (int j = j0; j < j1; j += GEMV_ROWS)
		rows_dot(y, x, w, j, j1 - j < GEMV_ROWS ? j1 - j : GEMV_ROWS, k, alpha, beta);
}

/* blocks per dynamic chunk: ~8 chunks per thread */
static int chunk_of(int nblocks)
{
	int per = nblocks / (8 * omp_get_max_threads());
	return per > 1 ? per : 1;
}

void ops_cpu_gemv(float *y, const float *x, const float *w, int n, int k, float alpha,
		  float beta)
{
	int nblocks = (n + GEMV_BLOCK - 1) / GEMV_BLOCK;
	if ((size_t)n * (size_t)k < GEMV_PAR_MIN) {
		for (int b = 0; b < nblocks; b++)
			block_dot(y, x, w, b, n, k, alpha, beta);
		return;
	}
	/* dynamic: a thread that wakes late (OMP_WAIT_POLICY=passive) takes fewer chunks
	 * instead of holding up the others; ~8 chunks per thread keep the atomics cheap */
#pragma omp parallel for schedule(dynamic, chunk_of(nblocks))
	for (int b = 0; b < nblocks; b++)
		block_dot(y, x, w, b, n, k, alpha, beta);
}
