/* reduce16_cpu: the 16-way horizontal sum shared by the one-row and few-row products
 * (gemv_cpu.c, gemm_small_cpu.c). Both finish their dot products with this one tree, which
 * is what makes a row of the few-row product bit-identical to the one-row product. */
#ifndef FTLAB_REDUCE16_CPU_H
#define FTLAB_REDUCE16_CPU_H

#if defined(__AVX512F__)
#include <immintrin.h>

/* 16 vectors -> one vector whose lane L is the sum of the 16 lanes of v[perm(L)],
 * perm(L) = L / 4 + 4 (L % 4) (an involution). Every source is added by the same tree:
 * with P_i = (x_i + x_{i+8}) + (x_{i+4} + x_{i+12}), the sum is (P_0 + P_2) + (P_1 + P_3). */
static inline __m512 reduce16(const __m512 *v)
{
	__m512 t[8], u[4], w0, w1;
#pragma GCC unroll 8
	for (int i = 0; i < 8; i++)
		t[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0x44),
				     _mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0xee));
#pragma GCC unroll 4
	for (int i = 0; i < 4; i++)
		u[i] = _mm512_add_ps(_mm512_shuffle_f32x4(t[2 * i], t[2 * i + 1], 0x88),
				     _mm512_shuffle_f32x4(t[2 * i], t[2 * i + 1], 0xdd));
	w0 = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(u[0]),
								 _mm512_castps_pd(u[1]))),
			   _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(u[0]),
								 _mm512_castps_pd(u[1]))));
	w1 = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(u[2]),
								 _mm512_castps_pd(u[3]))),
			   _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(u[2]),
								 _mm512_castps_pd(u[3]))));
	return _mm512_add_ps(_mm512_shuffle_ps(w0, w1, 0x88), _mm512_shuffle_ps(w0, w1, 0xdd));
}

#endif

#endif
