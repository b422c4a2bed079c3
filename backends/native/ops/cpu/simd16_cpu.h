/* simd16_cpu: what the AVX-512 kernels of the CPU backend share: the lane mask of a row's
 * tail, and ops_expf (ops_math.h) on 16 lanes, the same operations in the same order, so
 * the same bits for every input (NaN included). */
#ifndef FTLAB_SIMD16_CPU_H
#define FTLAB_SIMD16_CPU_H

#if defined(__AVX512F__)
#include <immintrin.h>
#include <math.h>

/* The lanes of elements i .. i + 15 of a row of n (all 16 but in the tail); i <= n. */
static inline __mmask16 tail16(int n, int i)
{
	return n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1u);
}

static inline __m512 exp16(__m512 x)
{
	const __m512 lo = _mm512_set1_ps(-87.33654f), hi = _mm512_set1_ps(88.72283f);
	__mmask16 gt_lo = _mm512_cmp_ps_mask(x, lo, _CMP_GT_OQ);
	__mmask16 lt_hi = _mm512_cmp_ps_mask(x, hi, _CMP_LT_OQ);
	__m512 xc = _mm512_mask_blend_ps(gt_lo, lo, _mm512_mask_blend_ps(lt_hi, hi, x));
	__m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f)),
					_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	__m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(-0.693145751953125f), xc);
	r = _mm512_fmadd_ps(n, _mm512_set1_ps(-1.428606765330187e-6f), r);
	__m512 p = _mm512_set1_ps(1.0f / 5040.0f);
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
	__m512i ni = _mm512_cvttps_epi32(n);
	__mmask16 big = _mm512_cmpgt_epi32_mask(ni, _mm512_set1_epi32(127));
	__m512 twice = _mm512_mask_blend_ps(big, _mm512_set1_ps(1.0f), _mm512_set1_ps(2.0f));
	ni = _mm512_min_epi32(ni, _mm512_set1_epi32(127));
	__m512 scale = _mm512_castsi512_ps(
		_mm512_slli_epi32(_mm512_add_epi32(ni, _mm512_set1_epi32(127)), 23));
	__m512 y = _mm512_mul_ps(_mm512_mul_ps(p, scale), twice);
	y = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, hi, _CMP_GT_OQ), y,
				 _mm512_set1_ps(INFINITY));
	y = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ), y, _mm512_setzero_ps());
	return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), y, x); /* NaN stays */
}

#endif

#endif
