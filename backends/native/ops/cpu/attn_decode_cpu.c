/* attn_decode_cpu: attention of one new query per sequence against its KV cache (decode).
 * Per (sequence, head): scores against cached keys 0..p, softmax, weighted sum of cached
 * values; vectorised over the head dimension with AVX-512 (masked when hd is not a
 * multiple of 16), plain C otherwise, exp from ops_math.h. The (sequence, head) pairs are
 * split over the threads unless the context is very short; each pair is computed the same
 * way on any thread. */
#include "backends/native/ops/cpu/ops_cpu_internal.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif
#include "backends/native/ops/ops_math.h"
#include "common/banned.h"

#define ATTN_PAR_MIN 16384.0 /* multiply-adds below which one thread does all heads */

/* Every thread's score row is also held here, so that the rows of threads still alive at
 * exit stay reachable (no leak reported) and each is freed when its thread grows it. */
#define SCORE_ROWS 256
static float *score_rows[SCORE_ROWS];
static pthread_mutex_t score_mu = PTHREAD_MUTEX_INITIALIZER;

/* the calling thread's score row, grown on demand and kept (a step allocates nothing) */
static float *scores_get(size_t n)
{
	static _Thread_local float *buf;
	static _Thread_local size_t cap;
	if (n > cap) {
		float *nb = malloc(n * sizeof(float));
		if (!nb)
			return NULL;
		pthread_mutex_lock(&score_mu);
		size_t k = 0;
		while (k < SCORE_ROWS && score_rows[k] != buf && (buf || score_rows[k]))
			k++;
		if (k < SCORE_ROWS)
			score_rows[k] = nb;
		pthread_mutex_unlock(&score_mu);
		free(buf);
		buf = nb;
		cap = n;
	}
	return buf;
}

/* one (sequence, head): q (hd), cached k/v rows 0..p at stride ks, out (hd); s scratch */
static void one_head(float *o, const float *q, const float *kb, const float *vb, size_t ks,
		     int j0, int p, int hd, float scale, float *s)
{
	float mx = -INFINITY;
#if defined(__AVX512F__)
	int nc = (hd + 15) / 16;
	__mmask16 last = (hd % 16) ? (__mmask16)((1u << (hd % 16)) - 1u) : (__mmask16)0xffff;
	for (int j = j0; j <= p; j++) {
		const float *kr = kb + (size_t)j * ks;
		__m512 acc = _mm512_setzero_ps();
		for (int c = 0; c < nc; c++) {
			__mmask16 m = c == nc - 1 ? last : (__mmask16)0xffff;
			acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q + 16 * c),
					      _mm512_maskz_loadu_ps(m, kr + 16 * c), acc);
		}
		s[j] = _mm512_reduce_add_ps(acc) * scale;
		mx = s[j] > mx ? s[j] : mx;
	}
#else
	for (int j = j0; j <= p; j++) {
		const float *kr = kb + (size_t)j * ks;
		float a = 0.0f;
		for (int i = 0; i < hd; i++)
			a += q[i] * kr[i];
		s[j] = a * scale;
		mx = s[j] > mx ? s[j] : mx;
	}
#endif
	/* exp without libm (ops_math.h), a loop GCC vectorises; the sum in j order */
	float sum = 0.0f;
	OPS_SIMD
	for (int j = j0; j <= p; j++)
		s[j] = ops_expf(s[j] - mx);
	for (int j = j0; j <= p; j++)
		sum += s[j];
	float inv = 1.0f / sum;
#if defined(__AVX512F__)
	for (int c = 0; c < nc; c++) {
		__mmask16 m = c == nc - 1 ? last : (__mmask16)0xffff;
		const float *vc = vb + 16 * c;
		__m512 a0 = _mm512_setzero_ps(), a1 = a0;
		int j = j0;
		for (; j + 2 <= p + 1; j += 2) {
			a0 = _mm512_fmadd_ps(_mm512_set1_ps(s[j]),
					     _mm512_maskz_loadu_ps(m, vc + (size_t)j * ks), a0);
			a1 = _mm512_fmadd_ps(_mm512_set1_ps(s[j + 1]),
					     _mm512_maskz_loadu_ps(m, vc + (size_t)(j + 1) * ks), a1);
		}
		if (j <= p)
			a0 = _mm512_fmadd_ps(_mm512_set1_ps(s[j]),
					     _mm512_maskz_loadu_ps(m, vc + (size_t)j * ks), a0);
		_mm512_mask_storeu_ps(o + 16 * c, m,
				      _mm512_mul_ps(_mm512_add_ps(a0, a1), _mm512_set1_ps(inv)));
	}
#else
	for (int i = 0; i < hd; i++)
		o[i] = 0.0f;
	for (int j = j0; j <= p; j++) {
		const float *vr = vb + (size_t)j * ks;
		for (int i = 0; i < hd; i++)
			o[i] += s[j] * vr[i];
	}
	for (int i = 0; i < hd; i++)
		o[i] *= inv;
#endif
}

void ops_cpu_attention_decode(float *out, const float *q, const float *k, const float *v,
			      int b, int tk, int nh, int nkv, int hd, const int *pos0, float scale,
			      int window)
{
	int grp = nh / nkv;
	size_t qs = (size_t)nh * hd, ks = (size_t)nkv * hd;
	double work = 0.0;
	for (int bi = 0; bi < b; bi++)
		work += 2.0 * nh * (pos0[bi] + 1) * hd;
#pragma omp parallel if (work > ATTN_PAR_MIN && b * nh > 1)
	{
		float *s = scores_get((size_t)tk);
		if (!s) {
			fprintf(stderr, "ftlab: out of memory in attention\n");
			abort();
		}
#pragma omp for schedule(static) collapse(2)
		for (int bi = 0; bi < b; bi++)
			for (int h = 0; h < nh; h++) {
				size_t kv = (size_t)bi * tk * ks + (size_t)(h / grp) * hd;
				size_t qo = (size_t)bi * qs + (size_t)h * hd;
				int p = pos0[bi];
				int j0 = window > 0 && p - window + 1 > 0 ? p - window + 1 : 0;
				one_head(out + qo, q + qo, k + kv, v + kv, ks, j0, p, hd, scale, s);
			}
	}
}
