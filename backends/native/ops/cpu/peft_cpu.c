/* peft_cpu: the CPU ops of the PEFT methods beyond LoRA: per-column scaling (DoRA's
 * magnitude, IA3's vectors) with its backward, DoRA's row norms, and causal attention after
 * a shared prefix (prefix tuning) as GEMMs over strided head views like the training
 * attention. Every reduction has a fixed order that does not depend on the thread count. */
#include "backends/native/ops/cpu/ops_cpu_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/native/ops/ops.h"
#include "common/banned.h"

void ops_cpu_col_mul(float *out, const float *x, const float *s, int rows, int cols, bool acc)
{
#pragma omp parallel for schedule(static) if ((size_t)rows * cols > 65536)
	for (int r = 0; r < rows; r++) {
		float *o = out + (size_t)r * cols;
		const float *xr = x + (size_t)r * cols;
		if (acc) {
			OPS_SIMD
			for (int c = 0; c < cols; c++)
				o[c] += xr[c] * s[c];
		} else {
			OPS_SIMD
			for (int c = 0; c < cols; c++)
				o[c] = xr[c] * s[c];
		}
	}
}

void ops_cpu_col_mul_backward(float *ds, const float *dout, const float *x, const float *w,
			      int rows, int cols)
{
	/* column blocks in parallel; each column's sum runs over the rows in order */
#pragma omp parallel for schedule(static) if ((size_t)rows * cols > 65536)
	for (int j0 = 0; j0 < cols; j0 += 64) {
		int j1 = j0 + 64 < cols ? j0 + 64 : cols;
		float acc[64] = {0};
		for (int r = 0; r < rows; r++) {
			const float *d = dout + (size_t)r * cols, *xr = x + (size_t)r * cols;
			for (int j = j0; j < j1; j++)
				acc[j - j0] += d[j] * xr[j];
		}
		for (int j = j0; j < j1; j++)
			ds[j] += w ? w[j] * acc[j - j0] : acc[j - j0];
	}
}

void ops_cpu_dora_scale(float *g, float *inv_norm, const float *m, const float *w, int rows,
			int cols)
{
#pragma omp parallel for schedule(static) if ((size_t)rows * cols > 65536)
	for (int r = 0; r < rows; r++)
		ops_dora_row(&g[r], &inv_norm[r], m[r], w + (size_t)r * cols, cols);
}

/* Probabilities of one (sequence, head): s (t, np + t) holds the prefix scores in columns
 * 0..np-1 and the sequence's own in np..np+t-1; row i keeps the keys it may attend
 * (prefix key j at position j, own key j at np + j; query at np + i) and is softmaxed. */
static void prefix_softmax(float *s, int t, int np, int window)
{
	int ld = np + t;
	for (int i = 0; i < t; i++) {
		float *r = s + (size_t)i * ld;
		int qp = np + i;
		/* visible keys: positions lo..qp (lo from the window), i.e. columns lo..np+i */
		int lo = window > 0 && qp - window + 1 > 0 ? qp - window + 1 : 0;
		float mx = -INFINITY;
		for (int j = lo; j <= np + i; j++)
			mx = r[j] > mx ? r[j] : mx;
		float sum = 0.0f;
		for (int j = lo; j <= np + i; j++) {
			r[j] = ops_expf(r[j] - mx);
			sum += r[j];
		}
		float inv = 1.0f / sum;
		for (int j = 0; j < lo; j++)
			r[j] = 0.0f;
		for (int j = lo; j <= np + i; j++)
			r[j] *= inv;
		for (int j = np + i + 1; j < ld; j++)
			r[j] = 0.0f;
	}
}

/* s = scale * [q pk^T, q k^T] for one (sequence, head). */
static void prefix_scores(float *s, const float *qb, int qs, const float *pkb, int ps,
			  const float *kb, int ks, int t, int np, int hd, float scale)
{
	int ld = np + t;
	if (np > 0)
		ops_cpu_gemm_ld(false, true, t, np, hd, scale, qb, qs, pkb, ps, 0.0f, s, ld);
	ops_cpu_gemm_ld(false, true, t, t, hd, scale, qb, qs, kb, ks, 0.0f, s + np, ld);
}

void ops_cpu_attention_prefix_forward(float *out, const float *q, const float *k,
				      const float *v, const float *pk, const float *pv,
				      size_t pstride, int b, int t, int np, int nh, int nkv,
				      int hd, float scale, int window)
{
	int grp = nh / nkv, qs = nh * hd, ks = nkv * hd, ps = (int)pstride;
	size_t ld = (size_t)np + (size_t)t;
#pragma omp parallel
	{
		float *s = malloc((size_t)t * ld * sizeof(float));
		if (!s) {
			fprintf(stderr, "ftlab: out of memory in prefix attention\n");
			abort();
		}
#pragma omp for schedule(dynamic, 1) collapse(2)
		for (int bi = 0; bi < b; bi++)
			for (int h = 0; h < nh; h++) {
				int kh = h / grp;
				const float *qb = q + (size_t)bi * t * qs + (size_t)h * hd;
				const float *kb = k + (size_t)bi * t * ks + (size_t)kh * hd;
				const float *vb = v + (size_t)bi * t * ks + (size_t)kh * hd;
				float *ob = out + (size_t)bi * t * qs + (size_t)h * hd;
				prefix_scores(s, qb, qs, np > 0 ? pk + (size_t)kh * hd : NULL, ps, kb,
					      ks, t, np, hd, scale);
				prefix_softmax(s, t, np, window);
				if (np > 0)
					ops_cpu_gemm_ld(false, false, t, hd, np, 1.0f, s, (int)ld,
							pv + (size_t)kh * hd, ps, 0.0f, ob, qs);
				ops_cpu_gemm_ld(false, false, t, hd, t, 1.0f, s + np, (int)ld, vb, ks,
						np > 0 ? 1.0f : 0.0f, ob, qs);
			}
		free(s);
	}
}

/* Per (sequence, KV head), the heads of the group in order: the probabilities are
 * recomputed, then dP = dO [pv; v]^T, dV += P^T dO, dS = P (dP - rowsum(P dP)) scale,
 * dQ = dS [pk; k], dK += dS^T Q. The prefix gradients of sequence b go to a slice of
 * its own and are added into dpk/dpv in sequence order afterwards. */
void ops_cpu_attention_prefix_backward(float *dq, float *dk, float *dv, float *dpk,
				       float *dpv, const float *dout, const float *q,
				       const float *k, const float *v, const float *pk,
				       const float *pv, size_t pstride, int b, int t, int np,
				       int nh, int nkv, int hd, float scale, int window)
{
	int grp = nh / nkv, qs = nh * hd, ks = nkv * hd, ps = (int)pstride;
	size_t ld = (size_t)np + (size_t)t;
	size_t pn = (size_t)b * (size_t)np * (size_t)ks;
	float *part = calloc(2 * pn + 1, sizeof(float)); /* (2, B, np, nkv*hd) */
	if (!part) {
		fprintf(stderr, "ftlab: out of memory in prefix attention\n");
		abort();
	}
#pragma omp parallel
	{
		float *s = malloc((size_t)t * ld * sizeof(float));
		float *dp = malloc((size_t)t * ld * sizeof(float));
		if (!s || !dp) {
			fprintf(stderr, "ftlab: out of memory in prefix attention\n");
			abort();
		}
#pragma omp for schedule(dynamic, 1) collapse(2)
		for (int bi = 0; bi < b; bi++)
			for (int kh = 0; kh < nkv; kh++) {
				size_t ko = (size_t)bi * t * ks + (size_t)kh * hd;
				float *pdk = part + (size_t)bi * np * ks + (size_t)kh * hd;
				float *pdv = pdk + pn;
				for (int j = 0; j < t; j++) {
					memset(dk + ko + (size_t)j * ks, 0, (size_t)hd * sizeof(float));
					memset(dv + ko + (size_t)j * ks, 0, (size_t)hd * sizeof(float));
				}
				const float *pkb = np > 0 ? pk + (size_t)kh * hd : NULL;
				const float *pvb = np > 0 ? pv + (size_t)kh * hd : NULL;
				for (int h = kh * grp; h < (kh + 1) * grp; h++) {
					size_t qo = (size_t)bi * t * qs + (size_t)h * hd;
					prefix_scores(s, q + qo, qs, pkb, ps, k + ko, ks, t, np, hd,
						      scale);
					prefix_softmax(s, t, np, window);
					if (np > 0) {
						ops_cpu_gemm_ld(false, true, t, np, hd, 1.0f, dout + qo,
								qs, pvb, ps, 0.0f, dp, (int)ld);
						ops_cpu_gemm_ld(true, false, np, hd, t, 1.0f, s, (int)ld,
								dout + qo, qs, 1.0f, pdv, ks);
					}
					ops_cpu_gemm_ld(false, true, t, t, hd, 1.0f, dout + qo, qs,
							v + ko, ks, 0.0f, dp + np, (int)ld);
					ops_cpu_gemm_ld(true, false, t, hd, t, 1.0f, s + np, (int)ld,
							dout + qo, qs, 1.0f, dv + ko, ks);
					for (int i = 0; i < t; i++) {
						const float *pr = s + (size_t)i * ld;
						float *r = dp + (size_t)i * ld;
						float acc = 0.0f;
						for (size_t j = 0; j < ld; j++)
							acc += pr[j] * r[j];
						for (size_t j = 0; j < ld; j++)
							r[j] = pr[j] * (r[j] - acc) * scale;
					}
					if (np > 0) {
						ops_cpu_gemm_ld(false, false, t, hd, np, 1.0f, dp, (int)ld,
								pkb, ps, 0.0f, dq + qo, qs);
						ops_cpu_gemm_ld(true, false, np, hd, t, 1.0f, dp, (int)ld,
								q + qo, qs, 1.0f, pdk, ks);
					}
					ops_cpu_gemm_ld(false, false, t, hd, t, 1.0f, dp + np, (int)ld,
							k + ko, ks, np > 0 ? 1.0f : 0.0f, dq + qo, qs);
					ops_cpu_gemm_ld(true, false, t, hd, t, 1.0f, dp + np, (int)ld,
							q + qo, qs, 1.0f, dk + ko, ks);
				}
			}
		free(s);
		free(dp);
	}
	/* prefix gradients: sequences in order, rows in parallel */
#pragma omp parallel for schedule(static) if (pn > 65536)
	for (int p = 0; p < np; p++)
		for (int bi = 0; bi < b; bi++) {
			const float *src = part + ((size_t)bi * np + p) * ks;
			float *gk = dpk + (size_t)p * pstride, *gv = dpv + (size_t)p * pstride;
			for (int i = 0; i < ks; i++) {
				gk[i] += src[i];
				gv[i] += src[pn + i];
			}
		}
	free(part);
}
