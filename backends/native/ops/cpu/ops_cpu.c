/* ops_cpu: the CPU backend's table. Element-wise and row work with OpenMP over rows using
 * the arithmetic of ops_math.h; matmuls are in matmul_cpu.c (oneDNN). Reductions run in a
 * fixed order per row or per column block, so results do not depend on the thread count
 * except where a comment says so. */
#include "backends/native/ops/ops.h"

#include <malloc.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backends/native/ops/cpu/simd16_cpu.h"
#include "backends/native/ops/cpu/ops_cpu_internal.h"
#include "backends/native/ops/cuda/ops_cuda.h"
#include "backends/native/ops/ops_math.h"
#include "common/banned.h"

static void *cpu_alloc(size_t bytes)
{
	size_t n = (bytes + 63) / 64 * 64;
	if (n == 0)
		n = 64;
	void *p = aligned_alloc(64, n);
	if (p)
		memset(p, 0, n);
	return p;
}

static void cpu_free(void *p)
{
	if (p)
		ops_cpu_bf16_forget(p, malloc_usable_size(p));
	free(p);
}

static void cpu_copy(void *dst, const void *src, size_t bytes)
{
	if (bytes)
		memcpy(dst, src, bytes);
}

static void cpu_to_device(void *dst, const void *src, size_t bytes)
{
	if (bytes)
		ops_cpu_bf16_forget(dst, bytes);
	cpu_copy(dst, src, bytes);
}

static void cpu_zero(float *dst, size_t n)
{
	if (n)
		memset(dst, 0, n * sizeof(float));
}

static void cpu_copy_rows(float *dst, size_t dst_stride, const float *src, size_t src_stride,
			  int rows, int cols)
{
#pragma omp parallel for schedule(static) if ((size_t)rows * cols > 65536)
	for (int r = 0; r < rows; r++)
		memcpy(dst + (size_t)r * dst_stride, src + (size_t)r * src_stride,
		       (size_t)cols * sizeof(float));
}

static void cpu_add(float *out, const float *a, const float *b, size_t n)
{
#pragma omp parallel for schedule(static) if (n > 65536)
	for (size_t i = 0; i < n; i++)
		out[i] = a[i] + b[i];
}

static void cpu_axpy(float *y, float alpha, const float *x, size_t n)
{
#pragma omp parallel for schedule(static) if (n > 65536)
	for (size_t i = 0; i < n; i++)
		y[i] += alpha * x[i];
}

static void cpu_scale(float *x, float alpha, size_t n)
{
#pragma omp parallel for schedule(static) if (n > 65536)
	for (size_t i = 0; i < n; i++)
		x[i] *= alpha;
}

static void cpu_bias_add(float *out, const float *bias, int rows, int cols)
{
#pragma omp parallel for schedule(static) if ((size_t)rows * cols > 65536)
	for (int r = 0; r < rows; r++) {
		float *o = out + (size_t)r * cols;
		for (int j = 0; j < cols; j++)
			o[j] += bias[j];
	}
}

static void cpu_bias_backward(float *dbias, const float *dout, int rows, int cols)
{
	/* parallel over column blocks; each column summed over rows in order */
#pragma omp parallel for schedule(static) if ((size_t)rows * cols > 65536)
	for (int j0 = 0; j0 < cols; j0 += 64) {
		int j1 = j0 + 64 < cols ? j0 + 64 : cols;
		for (int r = 0; r < rows; r++) {
			const float *d = dout + (size_t)r * cols;
			for (int j = j0; j < j1; j++)
				dbias[j] += d[j];
		}
	}
}

static void cpu_dropout_forward(float *out, uint8_t *mask, const float *in, size_t n, float p,
				uint64_t seed, uint64_t stream)
{
	if (p <= 0.0f) {
		memcpy(out, in, n * sizeof(float));
		if (mask)
			memset(mask, 1, n);
		return;
	}
	float inv = 1.0f / (1.0f - p);
#pragma omp parallel for schedule(static) if (n > 65536)
	for (size_t i = 0; i < n; i++) {
		int keep = ops_dropout_keep(seed, stream, i, p);
		mask[i] = (uint8_t)keep;
		out[i] = keep ? in[i] * inv : 0.0f;
	}
}

static void cpu_dropout_backward(float *din, const float *dout, const uint8_t *mask, size_t n,
				 float p)
{
	float inv = p > 0.0f ? 1.0f / (1.0f - p) : 1.0f;
#pragma omp parallel for schedule(static) if (n > 65536)
	for (size_t i = 0; i < n; i++)
		din[i] += mask[i] ? dout[i] * inv : 0.0f;
}

#if defined(__AVX512F__)
/* Row offsets of 16 rows of c floats (lane L: L c), for gathers down a column. */
static inline __m512i rows16(int c)
{
	return _mm512_mullo_epi32(
		_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
		_mm512_set1_epi32(c));
}

/* ops_rmsnorm_row on `rows` <= 16 rows at once: lane L sums the squares of row L in column
 * order with the same float operations (no fused multiply-add), so each row gets the
 * scalar row's bits; the output is then written along the row. */
static void rmsnorm_rows16(float *out, float *rstd, const float *x, const float *w, int rows,
			   int c, float eps)
{
	__mmask16 k = tail16(rows, 0);
	__m512i idx = rows16(c);
	__m512 ss = _mm512_setzero_ps();
	for (int i = 0; i < c; i++) {
		__m512 v = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), k, idx, x + i, 4);
		ss = _mm512_add_ps(ss, _mm512_mul_ps(v, v));
	}
	__m512 r = _mm512_div_ps(
		_mm512_set1_ps(1.0f),
		_mm512_sqrt_ps(_mm512_add_ps(_mm512_div_ps(ss, _mm512_set1_ps((float)c)),
					     _mm512_set1_ps(eps))));
	float rs[16];
	_mm512_storeu_ps(rs, r);
	for (int l = 0; l < rows; l++) {
		const float *xr = x + (size_t)l * c;
		float *o = out + (size_t)l * c;
		__m512 vr = _mm512_set1_ps(rs[l]);
		for (int i = 0; i < c; i += 16) {
			__mmask16 m = tail16(c, i);
			__m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, xr + i), vr);
			_mm512_mask_storeu_ps(o + i, m, _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, w + i)));
		}
		if (rstd)
			rstd[l] = rs[l];
	}
}

/* ops_rmsnorm_row_backward (without dw) on `rows` <= 16 rows at once, the same bits: lane L
 * sums (w dy) x of row L in column order; dx is then written along each row. */
static void rmsnorm_back_rows16(float *dx, const float *dy, const float *x, const float *w,
				const float *rstd, int rows, int c)
{
	__mmask16 k = tail16(rows, 0);
	__m512i idx = rows16(c);
	__m512 dot = _mm512_setzero_ps();
	for (int i = 0; i < c; i++) {
		__m512 d = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), k, idx, dy + i, 4);
		__m512 v = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), k, idx, x + i, 4);
		dot = _mm512_add_ps(dot, _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(w[i]), d), v));
	}
	float dt[16];
	_mm512_storeu_ps(dt, dot);
	for (int l = 0; l < rows; l++) {
		float r = rstd[l];
		float kk = dt[l] * r * r * r / (float)c;
		const float *xr = x + (size_t)l * c, *dr = dy + (size_t)l * c;
		float *o = dx + (size_t)l * c;
		__m512 vr = _mm512_set1_ps(r), vk = _mm512_set1_ps(kk);
		for (int i = 0; i < c; i += 16) {
			__mmask16 m = tail16(c, i);
			__m512 a = _mm512_mul_ps(_mm512_mul_ps(vr, _mm512_maskz_loadu_ps(m, w + i)),
						 _mm512_maskz_loadu_ps(m, dr + i));
			__m512 b = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, xr + i), vk);
			_mm512_mask_storeu_ps(o + i, m, _mm512_sub_ps(a, b));
		}
	}
}
#endif

static void cpu_rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, int n,
				int c, float eps)
{
#if defined(__AVX512F__)
	if (c <= (1 << 20)) { /* lane offsets 15 c fit in 32 bits */
#pragma omp parallel for schedule(static) if (n > 16)
		for (int r0 = 0; r0 < n; r0 += 16)
			rmsnorm_rows16(out + (size_t)r0 * c, rstd ? rstd + r0 : NULL,
				       x + (size_t)r0 * c, w, n - r0 < 16 ? n - r0 : 16, c, eps);
		return;
	}
#endif
#pragma omp parallel for schedule(static) if (n > 16)
	for (int r = 0; r < n; r++) {
		float s = ops_rmsnorm_row(out + (size_t)r * c, x + (size_t)r * c, w, c, eps);
		if (rstd)
			rstd[r] = s;
	}
}

/* dw: per-thread partial sums would make the result depend on the thread count, so the
 * weight gradient is accumulated by column blocks in row order instead. */
static void cpu_rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x,
				 const float *w, const float *rstd, int n, int c)
{
#if defined(__AVX512F__)
	if (c <= (1 << 20)) {
#pragma omp parallel for schedule(static) if (n > 16)
		for (int r0 = 0; r0 < n; r0 += 16)
			rmsnorm_back_rows16(dx + (size_t)r0 * c, dout + (size_t)r0 * c,
					    x + (size_t)r0 * c, w, rstd + r0, n - r0 < 16 ? n - r0 : 16,
					    c);
	} else
#endif
	{
#pragma omp parallel for schedule(static) if (n > 16)
		for (int r = 0; r < n; r++)
			ops_rmsnorm_row_backward(dx + (size_t)r * c, NULL, dout + (size_t)r * c,
						 x + (size_t)r * c, w, rstd[r], c);
	}
	if (!dw)
		return;
#pragma omp parallel for schedule(static) if (n > 16)
	for (int j0 = 0; j0 < c; j0 += 64) {
		int j1 = j0 + 64 < c ? j0 + 64 : c;
		for (int r = 0; r < n; r++) {
			const float *d = dout + (size_t)r * c, *xr = x + (size_t)r * c;
			for (int j = j0; j < j1; j++)
				dw[j] += d[j] * xr[j] * rstd[r];
		}
	}
}

static void cpu_layernorm_forward(float *out, float *mean, float *rstd, const float *x,
				  const float *w, const float *b, int n, int c, float eps)
{
#pragma omp parallel for schedule(static) if (n > 16)
	for (int r = 0; r < n; r++) {
		float m, s;
		ops_layernorm_row(out + (size_t)r * c, &m, &s, x + (size_t)r * c, w, b, c, eps);
		if (mean)
			mean[r] = m;
		if (rstd)
			rstd[r] = s;
	}
}

static void cpu_layernorm_backward(float *dx, float *dw, float *db, const float *dout,
				   const float *x, const float *w, const float *mean,
				   const float *rstd, int n, int c)
{
#pragma omp parallel for schedule(static) if (n > 16)
	for (int r = 0; r < n; r++)
		ops_layernorm_row_backward(dx + (size_t)r * c, NULL, NULL, dout + (size_t)r * c,
					   x + (size_t)r * c, w, mean[r], rstd[r], c);
	if (!dw && !db)
		return;
#pragma omp parallel for schedule(static) if (n > 16)
	for (int j0 = 0; j0 < c; j0 += 64) {
		int j1 = j0 + 64 < c ? j0 + 64 : c;
		for (int r = 0; r < n; r++) {
			const float *d = dout + (size_t)r * c, *xr = x + (size_t)r * c;
			for (int j = j0; j < j1; j++) {
				if (dw)
					dw[j] += d[j] * (xr[j] - mean[r]) * rstd[r];
				if (db)
					db[j] += d[j];
			}
		}
	}
}

#define ROPE_MAX_HALF 512

/* The rotation of every head of one row by the angles of its position, cos and sin taken
 * once per row (the values ops_rope_head computes for each head: the same bits). */
static void rope_row(float *row, int nh, int hd, int pos, const float *inv_freq, int inter,
		     float sign)
{
	int half = hd / 2;
	if (half > ROPE_MAX_HALF) {
		for (int h = 0; h < nh; h++)
			ops_rope_head(row + (size_t)h * hd, hd, pos, inv_freq, inter, sign);
		return;
	}
	float cs[ROPE_MAX_HALF], sn[ROPE_MAX_HALF];
	for (int i = 0; i < half; i++) {
		float ang = (float)pos * inv_freq[i];
		cs[i] = cosf(ang);
		sn[i] = sign * sinf(ang);
	}
	int st = inter ? 2 : 1, off = inter ? 1 : half;
	for (int h = 0; h < nh; h++) {
		float *x = row + (size_t)h * hd;
		OPS_SIMD
		for (int i = 0; i < half; i++) {
			size_t at = (size_t)i * (size_t)st;
			float a = x[at], b = x[at + (size_t)off];
			x[at] = a * cs[i] - b * sn[i];
			x[at + (size_t)off] = a * sn[i] + b * cs[i];
		}
	}
}

static void rope_apply(float *x, int b, int t, int nh, int hd, const int *pos0,
		       const float *inv_freq, enum ops_rope_style style, float sign)
{
	int inter = style == OPS_ROPE_INTERLEAVED;
#pragma omp parallel for schedule(static) collapse(2) if ((size_t)b * t * nh * hd > 65536)
	for (int bi = 0; bi < b; bi++)
		for (int ti = 0; ti < t; ti++) {
			int pos = (pos0 ? pos0[bi] : 0) + ti;
			rope_row(x + ((size_t)bi * t + ti) * nh * hd, nh, hd, pos, inv_freq, inter,
				 sign);
		}
}

static void cpu_rope_forward(float *x, int b, int t, int nh, int hd, const int *pos0,
			     const float *inv_freq, enum ops_rope_style style)
{
	rope_apply(x, b, t, nh, hd, pos0, inv_freq, style, 1.0f);
}

static void cpu_rope_backward(float *dx, int b, int t, int nh, int hd, const int *pos0,
			      const float *inv_freq, enum ops_rope_style style)
{
	rope_apply(dx, b, t, nh, hd, pos0, inv_freq, style, -1.0f);
}

static float dotf(const float *a, const float *b, int n)
{
	float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
	int i = 0;
	for (; i + 4 <= n; i += 4) {
		s0 += a[i] * b[i];
		s1 += a[i + 1] * b[i + 1];
		s2 += a[i + 2] * b[i + 2];
		s3 += a[i + 3] * b[i + 3];
	}
	for (; i < n; i++)
		s0 += a[i] * b[i];
	return (s0 + s1) + (s2 + s3);
}

/* First key a query at position p attends (window 0: all keys from 0). */
static inline int win_start(int p, int window)
{
	return window > 0 && p - window + 1 > 0 ? p - window + 1 : 0;
}

static void attention_forward_loops(float *out, float *att, const float *q, const float *k,
				  const float *v, int b, int tq, int tk, int nh, int nkv, int hd,
				  const int *pos0, float scale, int window)
{
	int grp = nh / nkv;
	size_t qs = (size_t)nh * hd, ks = (size_t)nkv * hd;
#pragma omp parallel
	{
		float *sc = att ? NULL : malloc((size_t)tk * sizeof(float));
#pragma omp for schedule(dynamic, 1) collapse(3)
		for (int bi = 0; bi < b; bi++)
			for (int h = 0; h < nh; h++)
				for (int t = 0; t < tq; t++) {
					int p = (pos0 ? pos0[bi] : 0) + t;
					int kh = h / grp;
					const float *qr = q + ((size_t)bi * tq + t) * qs + (size_t)h * hd;
					const float *kb = k + (size_t)bi * tk * ks + (size_t)kh * hd;
					const float *vb = v + (size_t)bi * tk * ks + (size_t)kh * hd;
					float *s = att ? att + (((size_t)bi * nh + h) * tq + t) * tq : sc;
					int j0 = win_start(p, window);
					float mx = -INFINITY;
					for (int j = j0; j <= p; j++) {
						s[j] = dotf(qr, kb + (size_t)j * ks, hd) * scale;
						mx = s[j] > mx ? s[j] : mx;
					}
					float sum = 0.0f;
					for (int j = j0; j <= p; j++) {
						s[j] = expf(s[j] - mx);
						sum += s[j];
					}
					float inv = 1.0f / sum;
					float *o = out + ((size_t)bi * tq + t) * qs + (size_t)h * hd;
					for (int i = 0; i < hd; i++)
						o[i] = 0.0f;
					if (att)
						for (int j = 0; j < j0; j++)
							s[j] = 0.0f;
					for (int j = j0; j <= p; j++) {
						s[j] *= inv;
						const float *vr = vb + (size_t)j * ks;
						for (int i = 0; i < hd; i++)
							o[i] += s[j] * vr[i];
					}
					if (att)
						for (int j = p + 1; j < tq; j++)
							s[j] = 0.0f;
				}
		free(sc);
	}
}

static void attention_backward_loops(float *dq, float *dk, float *dv, const float *dout,
				   const float *att, const float *q, const float *k,
				   const float *v, int b, int t, int nh, int nkv, int hd,
				   float scale, int window)
{
	int grp = nh / nkv;
	size_t qs = (size_t)nh * hd, ks = (size_t)nkv * hd;
#pragma omp parallel
	{
		float *dp = malloc((size_t)t * sizeof(float));
#pragma omp for schedule(dynamic, 1) collapse(2)
		for (int bi = 0; bi < b; bi++)
			for (int kh = 0; kh < nkv; kh++) {
				float *dkb = dk + (size_t)bi * t * ks + (size_t)kh * hd;
				float *dvb = dv + (size_t)bi * t * ks + (size_t)kh * hd;
				const float *kb = k + (size_t)bi * t * ks + (size_t)kh * hd;
				const float *vb = v + (size_t)bi * t * ks + (size_t)kh * hd;
				for (int j = 0; j < t; j++)
					for (int i = 0; i < hd; i++) {
						dkb[(size_t)j * ks + i] = 0.0f;
						dvb[(size_t)j * ks + i] = 0.0f;
					}
				for (int h = kh * grp; h < (kh + 1) * grp; h++)
					for (int ti = 0; ti < t; ti++) {
						const float *pr = att + (((size_t)bi * nh + h) * t + ti) * t;
						const float *dor = dout + ((size_t)bi * t + ti) * qs + (size_t)h * hd;
						const float *qr = q + ((size_t)bi * t + ti) * qs + (size_t)h * hd;
						float *dqr = dq + ((size_t)bi * t + ti) * qs + (size_t)h * hd;
						float acc = 0.0f;
						int j0 = win_start(ti, window);
						for (int j = j0; j <= ti; j++) {
							dp[j] = dotf(dor, vb + (size_t)j * ks, hd);
							acc += pr[j] * dp[j];
							float *dvr = dvb + (size_t)j * ks;
							for (int i = 0; i < hd; i++)
								dvr[i] += pr[j] * dor[i];
						}
						for (int i = 0; i < hd; i++)
							dqr[i] = 0.0f;
						for (int j = j0; j <= ti; j++) {
							float ds = pr[j] * (dp[j] - acc) * scale;
							const float *kr = kb + (size_t)j * ks;
							float *dkr = dkb + (size_t)j * ks;
							for (int i = 0; i < hd; i++) {
								dqr[i] += ds * kr[i];
								dkr[i] += ds * qr[i];
							}
						}
					}
			}
		free(dp);
	}
}

/* Causal products in row blocks of ATT_BLOCK queries: block i needs keys 0 .. its last row
 * only, so the GEMMs skip the blocks above the diagonal (5/8 of the full T x T work at
 * four blocks) instead of computing them and zeroing the result. */
#define ATT_BLOCK 64
static int att_blocks(int t)
{
	return t >= 2 * ATT_BLOCK ? (t + ATT_BLOCK - 1) / ATT_BLOCK : 1;
}

/* rows [*r0, *r1) of block i of n over t rows */
static void att_block(int i, int n, int t, int *r0, int *r1)
{
	int bs = (t + n - 1) / n;
	*r0 = i * bs;
	*r1 = *r0 + bs < t ? *r0 + bs : t;
}

/* s (T, T) = the causal softmax of scale Q K^T for one (sequence, head): GEMMs on the
 * calling thread over strided head views (the blocks at or below the diagonal), then each
 * row's softmax over keys win_start(i)..i (the rest of the row zeroed). The forward and a backward
 * without stored probabilities both call this, so they see the same bits. */
static void attention_probs(float *s, const float *qb, int qs, const float *kb, int ks, int t,
			    int hd, float scale, int window)
{
	int nb = att_blocks(t);
	for (int ib = 0; ib < nb; ib++) {
		int r0, r1;
		att_block(ib, nb, t, &r0, &r1);
		ops_cpu_gemm_ld(false, true, r1 - r0, r1, hd, scale, qb + (size_t)r0 * qs, qs, kb,
				ks, 0.0f, s + (size_t)r0 * t, t);
	}
	for (int i = 0; i < t; i++) {
		float *r = s + (size_t)i * t;
		int j0 = win_start(i, window);
		float mx = -INFINITY;
		for (int j = j0; j <= i; j++)
			mx = r[j] > mx ? r[j] : mx;
		float sum = 0.0f;
#if OPS_SIMD_ON
#pragma omp simd reduction(+ : sum)
#endif
		for (int j = j0; j <= i; j++) {
			r[j] = ops_expf(r[j] - mx);
			sum += r[j];
		}
		float inv = 1.0f / sum;
		for (int j = 0; j < j0; j++)
			r[j] = 0.0f;
		for (int j = j0; j <= i; j++)
			r[j] *= inv;
		for (int j = i + 1; j < t; j++)
			r[j] = 0.0f;
	}
}

/* All queries from position 0 (training, teacher forcing, prefill; k/v rows of sequence b
 * start at row b*tk): per (sequence, head) two
 * GEMMs over strided head views, S = scale Q K^T and out = softmax(S) V, each GEMM on one
 * thread so the result does not depend on the thread count. The full T x T score matrix
 * is computed and the upper triangle zeroed (twice the causal work, at GEMM speed). */
static void attention_forward_gemm(float *out, float *att, const float *q, const float *k,
				   const float *v, int b, int t, int tk, int nh, int nkv, int hd,
				   float scale, int window)
{
	int grp = nh / nkv, qs = nh * hd, ks = nkv * hd;
#pragma omp parallel
	{
		float *sc = att ? NULL : malloc((size_t)t * t * sizeof(float));
#pragma omp for schedule(dynamic, 1) collapse(2)
		for (int bi = 0; bi < b; bi++)
			for (int h = 0; h < nh; h++) {
				int kh = h / grp;
				float *s = att ? att + ((size_t)bi * nh + h) * t * t : sc;
				const float *qb = q + (size_t)bi * t * qs + (size_t)h * hd;
				const float *kb = k + (size_t)bi * tk * ks + (size_t)kh * hd;
				const float *vb = v + (size_t)bi * tk * ks + (size_t)kh * hd;
				attention_probs(s, qb, qs, kb, ks, t, hd, scale, window);
				float *ob = out + (size_t)bi * t * qs + (size_t)h * hd;
				int nb = att_blocks(t);
				for (int ib = 0; ib < nb; ib++) { /* rows of P are zero past the block */
					int r0, r1;
					att_block(ib, nb, t, &r0, &r1);
					ops_cpu_gemm_ld(false, false, r1 - r0, hd, r1, 1.0f,
							s + (size_t)r0 * t, t, vb, ks, 0.0f,
							ob + (size_t)r0 * qs, qs);
				}
			}
		free(sc);
	}
}

/* dP = dO V^T, dV += P^T dO, dS = P (dP - rowsum(P dP)) scale, dQ = dS K, dK += dS^T Q;
 * parallel over (sequence, KV head), the heads of a group in order. Without att, P is
 * recomputed from q and k by the forward's own code (the same bits as stored ones). */
static void attention_backward_gemm(float *dq, float *dk, float *dv, const float *dout,
				    const float *att, const float *q, const float *k,
				    const float *v, int b, int t, int nh, int nkv, int hd,
				    float scale, int window)
{
	int grp = nh / nkv, qs = nh * hd, ks = nkv * hd;
#pragma omp parallel
	{
		float *dp = malloc((size_t)t * t * sizeof(float));
		float *pb = att ? NULL : malloc((size_t)t * t * sizeof(float));
#pragma omp for schedule(dynamic, 1) collapse(2)
		for (int bi = 0; bi < b; bi++)
			for (int kh = 0; kh < nkv; kh++) {
				size_t ko = (size_t)bi * t * ks + (size_t)kh * hd;
				for (int j = 0; j < t; j++) {
					memset(dk + ko + (size_t)j * ks, 0, (size_t)hd * sizeof(float));
					memset(dv + ko + (size_t)j * ks, 0, (size_t)hd * sizeof(float));
				}
				for (int h = kh * grp; h < (kh + 1) * grp; h++) {
					size_t qo = (size_t)bi * t * qs + (size_t)h * hd;
					const float *p = att ? att + ((size_t)bi * nh + h) * t * t : pb;
					if (!att)
						attention_probs(pb, q + qo, qs, k + ko, ks, t, hd,
								scale, window);
					int nb = att_blocks(t);
					for (int ib = 0; ib < nb; ib++) { /* dP, where P is not zero */
						int r0, r1;
						att_block(ib, nb, t, &r0, &r1);
						ops_cpu_gemm_ld(false, true, r1 - r0, r1, hd, 1.0f,
								dout + qo + (size_t)r0 * qs, qs, v + ko,
								ks, 0.0f, dp + (size_t)r0 * t, t);
					}
					for (int jb = 0; jb < nb; jb++) { /* dV_j += P[j.., j]^T dO[j..] */
						int c0, c1;
						att_block(jb, nb, t, &c0, &c1);
						ops_cpu_gemm_ld(true, false, c1 - c0, hd, t - c0, 1.0f,
								p + (size_t)c0 * t + c0, t,
								dout + qo + (size_t)c0 * qs, qs, 1.0f,
								dv + ko + (size_t)c0 * ks, ks);
					}
					for (int i = 0; i < t; i++) {
						const float *pr = p + (size_t)i * t;
						float *r = dp + (size_t)i * t;
						float acc = 0.0f;
						int j0 = win_start(i, window);
						for (int j = j0; j <= i; j++)
							acc += pr[j] * r[j];
						for (int j = 0; j < j0; j++)
							r[j] = 0.0f;
						for (int j = j0; j <= i; j++)
							r[j] = pr[j] * (r[j] - acc) * scale;
						for (int j = i + 1; j < t; j++)
							r[j] = 0.0f;
					}
					for (int ib = 0; ib < nb; ib++) { /* dQ_i = dS[i, ..i] K[..i] */
						int r0, r1;
						att_block(ib, nb, t, &r0, &r1);
						ops_cpu_gemm_ld(false, false, r1 - r0, hd, r1, 1.0f,
								dp + (size_t)r0 * t, t, k + ko, ks, 0.0f,
								dq + qo + (size_t)r0 * qs, qs);
					}
					for (int jb = 0; jb < nb; jb++) { /* dK_j += dS[j.., j]^T Q[j..] */
						int c0, c1;
						att_block(jb, nb, t, &c0, &c1);
						ops_cpu_gemm_ld(true, false, c1 - c0, hd, t - c0, 1.0f,
								dp + (size_t)c0 * t + c0, t,
								q + qo + (size_t)c0 * qs, qs, 1.0f,
								dk + ko + (size_t)c0 * ks, ks);
					}
				}
			}
		free(dp);
		free(pb);
	}
}

static void cpu_attention_forward(float *out, float *att, const float *q, const float *k,
				  const float *v, int b, int tq, int tk, int nh, int nkv, int hd,
				  const int *pos0, float scale, int window)
{
	if (tq == 1 && pos0 && !att) { /* decode: attn_decode_cpu.c */
		ops_cpu_attention_decode(out, q, k, v, b, tk, nh, nkv, hd, pos0, scale, window);
		return;
	}
	/* all queries from position 0 (training, or a prefill into an empty cache): GEMMs */
	bool from0 = tq > 1 && tq <= tk;
	for (int bi = 0; pos0 && from0 && bi < b; bi++)
		from0 = pos0[bi] == 0;
	if (from0 && (!pos0 || !att))
		attention_forward_gemm(out, att, q, k, v, b, tq, tk, nh, nkv, hd, scale, window);
	else
		attention_forward_loops(out, att, q, k, v, b, tq, tk, nh, nkv, hd, pos0, scale,
					window);
}

static void cpu_attention_backward(float *dq, float *dk, float *dv, const float *dout,
				   const float *att, const float *q, const float *k,
				   const float *v, int b, int t, int nh, int nkv, int hd,
				   float scale, int window)
{
	if (t > 1 || !att)
		attention_backward_gemm(dq, dk, dv, dout, att, q, k, v, b, t, nh, nkv, hd, scale,
					window);
	else
		attention_backward_loops(dq, dk, dv, dout, att, q, k, v, b, t, nh, nkv, hd, scale,
					 window);
}

static void cpu_swiglu_forward(float *out, const float *gate, const float *up, size_t n)
{
#if OPS_SIMD_ON
#pragma omp parallel for simd schedule(static) if (n > 16384)
#else
#pragma omp parallel for schedule(static) if (n > 16384)
#endif
	for (size_t i = 0; i < n; i++)
		out[i] = ops_silu(gate[i]) * up[i];
}

static void cpu_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
				const float *up, size_t n)
{
#if OPS_SIMD_ON
#pragma omp parallel for simd schedule(static) if (n > 16384)
#else
#pragma omp parallel for schedule(static) if (n > 16384)
#endif
	for (size_t i = 0; i < n; i++) {
		float d = dout[i];
		float g = gate[i];
		dup[i] = d * ops_silu(g);
		dgate[i] = d * up[i] * ops_silu_grad(g);
	}
}

static void cpu_geglu_forward(float *out, const float *gate, const float *up, size_t n)
{
#if OPS_SIMD_ON
#pragma omp parallel for simd schedule(static) if (n > 16384)
#else
#pragma omp parallel for schedule(static) if (n > 16384)
#endif
	for (size_t i = 0; i < n; i++)
		out[i] = ops_gelu(gate[i]) * up[i];
}

static void cpu_geglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
			       const float *up, size_t n)
{
#if OPS_SIMD_ON
#pragma omp parallel for simd schedule(static) if (n > 16384)
#else
#pragma omp parallel for schedule(static) if (n > 16384)
#endif
	for (size_t i = 0; i < n; i++) {
		float d = dout[i], g = gate[i];
		dup[i] = d * ops_gelu(g);
		dgate[i] = d * up[i] * ops_gelu_grad(g);
	}
}

static void cpu_gelu_forward(float *out, const float *x, size_t n)
{
#if OPS_SIMD_ON
#pragma omp parallel for simd schedule(static) if (n > 16384)
#else
#pragma omp parallel for schedule(static) if (n > 16384)
#endif
	for (size_t i = 0; i < n; i++)
		out[i] = ops_gelu(x[i]);
}

static void cpu_gelu_backward(float *dx, const float *dout, const float *x, size_t n)
{
#if OPS_SIMD_ON
#pragma omp parallel for simd schedule(static) if (n > 16384)
#else
#pragma omp parallel for schedule(static) if (n > 16384)
#endif
	for (size_t i = 0; i < n; i++)
		dx[i] = dout[i] * ops_gelu_grad(x[i]);
}

static void cpu_embedding_forward(float *out, const int32_t *tokens, const int *pos,
				  const struct ops_w *wte, const float *wpe, int n, int t, int c)
{
	const float *wf = wte->type == GGML_F32 ? wte->data : NULL;
#pragma omp parallel for schedule(static) if ((size_t)n * c > 65536)
	for (int r = 0; r < n; r++) {
		float *o = out + (size_t)r * c;
		if (wf)
			memcpy(o, wf + (size_t)tokens[r] * c, (size_t)c * sizeof(float));
		else /* one row, single-threaded inside this loop */
			ops_cpu_dequant_rows(o, wte, tokens[r], tokens[r] + 1);
		if (wpe) {
			const float *p = wpe + (size_t)(pos ? pos[r] : r % t) * c;
			for (int j = 0; j < c; j++)
				o[j] += p[j];
		}
	}
}

static void cpu_embedding_backward(float *dwte, float *dwpe, const float *dout,
				   const int32_t *tokens, const int *pos, int n, int t, int c)
{
	/* column blocks in parallel, rows in order: deterministic for any thread count */
#pragma omp parallel for schedule(static) if ((size_t)n * c > 65536)
	for (int j0 = 0; j0 < c; j0 += 32) {
		int j1 = j0 + 32 < c ? j0 + 32 : c;
		for (int r = 0; r < n; r++) {
			const float *d = dout + (size_t)r * c;
			if (dwte) {
				float *w = dwte + (size_t)tokens[r] * c;
				for (int j = j0; j < j1; j++)
					w[j] += d[j];
			}
			if (dwpe) {
				float *w = dwpe + (size_t)(pos ? pos[r] : r % t) * c;
				for (int j = j0; j < j1; j++)
					w[j] += d[j];
			}
		}
	}
}

#if defined(__AVX512F__)
/* ops_logsumexp_row on 16 lanes: the same maximum (NaN skipped), the same terms
 * ops_expf(x - max) summed in double, in another order (two accumulators of 8 lanes). */
static float lse_row16(const float *x, int v)
{
	if (v <= 0)
		return -INFINITY;
	__m512 vm = _mm512_set1_ps(-INFINITY);
	for (int i = 0; i < v; i += 16) {
		__mmask16 k = tail16(v, i);
		/* max_ps returns its second operand when one is NaN: a NaN logit is skipped */
		vm = _mm512_mask_max_ps(vm, k, _mm512_maskz_loadu_ps(k, x + i), vm);
	}
	float mx = _mm512_reduce_max_ps(vm);
	vm = _mm512_set1_ps(mx);
	__m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
	for (int i = 0; i < v; i += 16) {
		__mmask16 k = tail16(v, i);
		__m512 e = _mm512_maskz_mov_ps(
			k, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), vm)));
		s0 = _mm512_add_pd(s0, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
		s1 = _mm512_add_pd(s1, _mm512_cvtps_pd(_mm256_castpd_ps(
					       _mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
	}
	double s = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
	return mx + (float)log(s > 0.0 ? s : 1.0); /* s >= 1: the max term is exp(0) */
}

/* ops_crossentropy_row_backward on 16 lanes: the same bits. */
static void ce_row_backward16(float *x, float lse, int target, int v, float scale)
{
	__m512 vl = _mm512_set1_ps(lse), vs = _mm512_set1_ps(scale);
	for (int i = 0; i < v; i += 16) {
		__mmask16 k = tail16(v, i);
		__m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), vl));
		_mm512_mask_storeu_ps(x + i, k, _mm512_mul_ps(vs, e));
	}
	x[target] -= scale;
}
#define CE_LSE lse_row16
#define CE_ROW_BACKWARD ce_row_backward16
#else
#define CE_LSE ops_logsumexp_row
#define CE_ROW_BACKWARD ops_crossentropy_row_backward
#endif

static long cpu_crossentropy_forward(float *losses, float *lse, int32_t *argmax,
				     const float *logits, const int32_t *targets, int n, int v)
{
	long cnt = 0;
#pragma omp parallel for schedule(static) reduction(+ : cnt)
	for (int r = 0; r < n; r++) {
		const float *x = logits + (size_t)r * v;
		float l = CE_LSE(x, v);
		if (lse)
			lse[r] = l;
		int tg = targets ? targets[r] : -1;
		if (tg >= 0 && tg < v) {
			losses[r] = l - x[tg];
			cnt++;
		} else {
			losses[r] = 0.0f;
		}
		if (argmax) {
			int32_t best = -1;
			if (tg >= 0 && tg < v) {
				best = 0;
				for (int i = 1; i < v; i++)
					if (x[i] > x[best])
						best = i;
			}
			argmax[r] = best;
		}
	}
	return cnt;
}

static void cpu_crossentropy_backward(float *logits, const float *lse, const int32_t *targets,
				      int n, int v, float scale, const float *row_scale)
{
#pragma omp parallel for schedule(static)
	for (int r = 0; r < n; r++) {
		float *x = logits + (size_t)r * v;
		int tg = targets[r];
		if (tg >= 0 && tg < v)
			CE_ROW_BACKWARD(x, lse[r], tg, v, row_scale ? scale * row_scale[r] : scale);
		else
			memset(x, 0, (size_t)v * sizeof(float));
	}
}

static double cpu_sumsq(const float *x, size_t n)
{
	/* fixed blocks summed in order: the same result for any thread count */
	size_t nb = (n + 65535) / 65536;
	double *part = malloc((nb ? nb : 1) * sizeof(double));
	if (!part)
		abort();
#pragma omp parallel for schedule(static)
	for (size_t blk = 0; blk < nb; blk++) {
		size_t i0 = blk * 65536, i1 = i0 + 65536 < n ? i0 + 65536 : n;
		double s = 0.0;
		for (size_t i = i0; i < i1; i++)
			s += (double)x[i] * x[i];
		part[blk] = s;
	}
	double s = 0.0;
	for (size_t blk = 0; blk < nb; blk++)
		s += part[blk];
	free(part);
	return s;
}

static void cpu_adamw(float *p, const float *g, float *m, float *v, size_t n,
		      const struct ops_adamw_hp *h)
{
	const struct ops_adamw_hp hp = *h;
#pragma omp parallel for schedule(static) if (n > 65536)
	for (size_t i = 0; i < n; i++)
		ops_adamw_elem(&p[i], g[i], &m[i], &v[i], &hp);
}

static void cpu_dequant_w(float *out, const struct ops_w *w)
{
	ops_cpu_dequant_rows(out, w, 0, w->n);
}

static void cpu_sgd(float *p, const float *g, float *buf, size_t n, const struct ops_sgd_hp *h)
{
	const struct ops_sgd_hp hp = *h;
#pragma omp parallel for schedule(static) if (n > 65536)
	for (size_t i = 0; i < n; i++)
		ops_sgd_elem(&p[i], g[i], buf ? &buf[i] : NULL, &hp);
}

static const struct ops cpu_ops = {
	.name = "cpu",
	.alloc = cpu_alloc,
	.free = cpu_free,
	.to_device = cpu_to_device,
	.to_host = cpu_copy,
	.zero = cpu_zero,
	.copy_rows = cpu_copy_rows,
	.matmul = ops_cpu_matmul,
	.matmul_w = ops_cpu_matmul_w,
	.add = cpu_add,
	.axpy = cpu_axpy,
	.scale = cpu_scale,
	.bias_add = cpu_bias_add,
	.bias_backward = cpu_bias_backward,
	.dropout_forward = cpu_dropout_forward,
	.dropout_backward = cpu_dropout_backward,
	.rmsnorm_forward = cpu_rmsnorm_forward,
	.rmsnorm_backward = cpu_rmsnorm_backward,
	.layernorm_forward = cpu_layernorm_forward,
	.layernorm_backward = cpu_layernorm_backward,
	.rope_forward = cpu_rope_forward,
	.rope_backward = cpu_rope_backward,
	.attention_forward = cpu_attention_forward,
	.attention_backward = cpu_attention_backward,
	.attention_forward_bf16 = ops_cpu_attention_forward_bf16,
	.attention_backward_bf16 = ops_cpu_attention_backward_bf16,
	.swiglu_forward = cpu_swiglu_forward,
	.swiglu_backward = cpu_swiglu_backward,
	.gelu_forward = cpu_gelu_forward,
	.geglu_forward = cpu_geglu_forward,
	.geglu_backward = cpu_geglu_backward,
	.gelu_backward = cpu_gelu_backward,
	.act_forward = ops_cpu_act_forward,
	.act_backward = ops_cpu_act_backward,
	.embedding_forward = cpu_embedding_forward,
	.embedding_backward = cpu_embedding_backward,
	.crossentropy_forward = cpu_crossentropy_forward,
	.crossentropy_backward = cpu_crossentropy_backward,
	.sumsq = cpu_sumsq,
	.sumsq_chunk = 16384,
	.adamw = cpu_adamw,
	.sgd = cpu_sgd,
	.dequant_w = cpu_dequant_w,
	.col_mul = ops_cpu_col_mul,
	.col_mul_backward = ops_cpu_col_mul_backward,
	.dora_scale = ops_cpu_dora_scale,
	.attention_prefix_forward = ops_cpu_attention_prefix_forward,
	.attention_prefix_backward = ops_cpu_attention_prefix_backward,
};

const struct ops *ops_cpu(void)
{
	return &cpu_ops;
}

const struct ops *ops_get(const char *name)
{
	if (!name || strcmp(name, "cpu") == 0)
		return &cpu_ops;
	if (strcmp(name, "cuda") == 0)
		return ops_cuda(); /* NULL without a device or without CUDA in the build */
	if (strcmp(name, "auto") == 0) {
		const struct ops *c = ops_cuda();
		return c ? c : &cpu_ops;
	}
	return NULL;
}

void ops_rope_inv_freq(float *out, int hd, float theta, int scaling, float factor,
		       float low_freq_factor, float high_freq_factor, int orig_ctx)
{
	for (int i = 0; i < hd / 2; i++) {
		double f = 1.0 / pow((double)theta, (double)(2 * i) / (double)hd);
		if (scaling == 1 && factor > 0.0f) {
			f /= factor;
		} else if (scaling == 2 && factor > 0.0f) {
			double lo_wl = (double)orig_ctx / low_freq_factor;
			double hi_wl = (double)orig_ctx / high_freq_factor;
			double wl = 2.0 * M_PI / f;
			if (wl > lo_wl) {
				f /= factor;
			} else if (wl >= hi_wl) {
				double sm = ((double)orig_ctx / wl - low_freq_factor) /
					    (high_freq_factor - low_freq_factor);
				f = (1.0 - sm) * f / factor + sm * f;
			}
		}
		out[i] = (float)f;
	}
}
