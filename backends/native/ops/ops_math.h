/* ops_math: the element-wise and per-row arithmetic of the engine as static inline
 * functions, shared by the CPU backend and (under nvcc, via FT_HD) CUDA kernels, so the
 * CPU tests cover the arithmetic both run. Row functions work on one row of length c;
 * the backends decide how rows are spread over threads. */
#ifndef FTLAB_OPS_MATH_H
#define FTLAB_OPS_MATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "common/rng.h" /* FT_HD */

/* Loops over elements that the CPU compiler may run in SIMD lanes (OpenMP simd; nvcc and
 * builds without OpenMP see a plain loop). OPS_SIMD_SUM_S also lets the lanes keep partial
 * sums of a variable named s: a fixed order for a given build, whatever the thread count.
 * GCC only (the release build): clang turns a simd loop it cannot vectorise (-O1 with
 * sanitizers, the fuzz build) into a -Wpass-failed warning, an error under -Werror. */
#if defined(_OPENMP) && !defined(__CUDACC__) && !defined(__clang__)
#define OPS_SIMD_ON 1
#define OPS_SIMD _Pragma("omp simd")
#define OPS_SIMD_SUM_S _Pragma("omp simd reduction(+ : s)")
#else
#define OPS_SIMD_ON 0
#define OPS_SIMD
#define OPS_SIMD_SUM_S
#endif

/* ---- exp ---- */

/* exp(x) in float without a libm call, branch-free so that loops over it vectorise:
 * x = n ln2 + r with |r| <= ln2/2 (ln2 in two parts), exp(r) by its degree-7 Taylor
 * polynomial (truncation < 6e-9 relative), times 2^n built in the exponent bits. Within
 * 2 ulp of a correctly rounded expf over the normal range (test_ops_math checks every
 * float in [-87.3, 88.7] against libm). exp(+inf) and x > 88.72 give inf; x < -87.33
 * (results below the smallest normal float) and -inf give 0; NaN stays NaN. */
FT_HD static inline float ops_expf(float x)
{
	/* clamped; NaN fails the first test and becomes the low end (no NaN reaches the cast) */
	float xc = x > -87.33654f ? (x < 88.72283f ? x : 88.72283f) : -87.33654f;
	float n = rintf(xc * 1.44269504088896341f);
	float r = fmaf(n, -0.693145751953125f, xc); /* ln2, high part (exact product) */
	r = fmaf(n, -1.428606765330187e-6f, r);     /* ln2, low part */
	float p = 1.0f / 5040.0f;
	p = fmaf(p, r, 1.0f / 720.0f);
	p = fmaf(p, r, 1.0f / 120.0f);
	p = fmaf(p, r, 1.0f / 24.0f);
	p = fmaf(p, r, 1.0f / 6.0f);
	p = fmaf(p, r, 0.5f);
	p = fmaf(p, r, 1.0f);
	p = fmaf(p, r, 1.0f);
	int32_t ni = (int32_t)n; /* -126 .. 128 */
	float twice = ni > 127 ? 2.0f : 1.0f;
	ni = ni > 127 ? 127 : ni;
	uint32_t bits = (uint32_t)(ni + 127) << 23;
	float scale;
	memcpy(&scale, &bits, sizeof scale);
	float y = p * scale * twice;
	y = x > 88.72283f ? INFINITY : y;
	y = x < -87.33654f ? 0.0f : y;
	return x != x ? x : y;
}

/* ---- activations ---- */

FT_HD static inline float ops_silu(float x)
{
	return x / (1.0f + ops_expf(-x));
}

/* d silu / dx = s (1 + x (1 - s)), s = sigmoid(x) */
FT_HD static inline float ops_silu_grad(float x)
{
	float s = 1.0f / (1.0f + ops_expf(-x));
	return s * (1.0f + x * (1.0f - s));
}

/* tanh(x) = 1 - 2 / (exp(2x) + 1) with ops_expf: branch-free, so loops over it vectorise
 * (libm's tanhf does not, and Gemma's GeGLU calls it for every MLP element); within 2e-7
 * of tanh absolutely (test_ops_math), +-1 in the tails, NaN stays NaN. */
FT_HD static inline float ops_tanhf(float x)
{
	return 1.0f - 2.0f / (ops_expf(2.0f * x) + 1.0f);
}

#define OPS_GELU_K 0.7978845608028654f /* sqrt(2/pi) */

/* GELU, tanh approximation (GPT-2's "gelu_new", Gemma's "gelu_pytorch_tanh"). */
FT_HD static inline float ops_gelu(float x)
{
	float u = OPS_GELU_K * (x + 0.044715f * x * x * x);
	return 0.5f * x * (1.0f + ops_tanhf(u));
}

FT_HD static inline float ops_gelu_grad(float x)
{
	float u = OPS_GELU_K * (x + 0.044715f * x * x * x);
	float th = ops_tanhf(u);
	float sech2 = 1.0f - th * th;
	return 0.5f * (1.0f + th) + 0.5f * x * sech2 * OPS_GELU_K * (1.0f + 3.0f * 0.044715f * x * x);
}

/* ---- DoRA ---- */

/* One row of DoRA's scale: n = ||w||_2 of the row (w = W + s B A, summed in double),
 * *inv_norm = 1/n, *g = m/n. */
FT_HD static inline void ops_dora_row(float *g, float *inv_norm, float m, const float *w, int c)
{
	double s = 0.0;
	for (int i = 0; i < c; i++)
		s += (double)w[i] * (double)w[i];
	float n = (float)sqrt(s);
	*inv_norm = 1.0f / n;
	*g = m / n;
}

/* ---- bf16 ---- */

/* Round to nearest even; NaN stays NaN. */
FT_HD static inline uint16_t ops_f32_to_bf16(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	if ((u & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)((u >> 16) | 0x40u);
	u += 0x7fffu + ((u >> 16) & 1u);
	return (uint16_t)(u >> 16);
}

FT_HD static inline float ops_bf16_to_f32(uint16_t h)
{
	uint32_t u = (uint32_t)h << 16;
	float f;
	memcpy(&f, &u, 4);
	return f;
}

/* ---- normalisation rows ---- */

/* out = x * rstd * w; returns rstd = 1/sqrt(mean(x^2) + eps). */
FT_HD static inline float ops_rmsnorm_row(float *out, const float *x, const float *w, int c,
					  float eps)
{
	float ss = 0.0f;
	for (int i = 0; i < c; i++)
		ss += x[i] * x[i];
	float rstd = 1.0f / sqrtf(ss / (float)c + eps);
	for (int i = 0; i < c; i++)
		out[i] = x[i] * rstd * w[i];
	return rstd;
}

/* y = x r w with r = (mean(x^2)+eps)^-1/2:
 * dx = r (w dy) - x r^3 / c * sum(w dy x);  dw += dy x r (dw may be NULL). */
FT_HD static inline void ops_rmsnorm_row_backward(float *dx, float *dw, const float *dy,
						  const float *x, const float *w, float rstd,
						  int c)
{
	float dot = 0.0f;
	for (int i = 0; i < c; i++)
		dot += w[i] * dy[i] * x[i];
	float k = dot * rstd * rstd * rstd / (float)c;
	for (int i = 0; i < c; i++)
		dx[i] = rstd * w[i] * dy[i] - x[i] * k;
	if (dw)
		for (int i = 0; i < c; i++)
			dw[i] += dy[i] * x[i] * rstd;
}

/* out = (x - mean) rstd w + b; stores mean, rstd. b may be NULL. */
FT_HD static inline void ops_layernorm_row(float *out, float *mean_out, float *rstd_out,
					   const float *x, const float *w, const float *b,
					   int c, float eps)
{
	float m = 0.0f;
	for (int i = 0; i < c; i++)
		m += x[i];
	m /= (float)c;
	float var = 0.0f;
	for (int i = 0; i < c; i++)
		var += (x[i] - m) * (x[i] - m);
	var /= (float)c;
	float r = 1.0f / sqrtf(var + eps);
	for (int i = 0; i < c; i++)
		out[i] = (x[i] - m) * r * w[i] + (b ? b[i] : 0.0f);
	*mean_out = m;
	*rstd_out = r;
}

/* xh = (x-m) r, g = w dy: dx = r (g - mean(g) - xh mean(g xh)). dw += dy xh; db += dy. */
FT_HD static inline void ops_layernorm_row_backward(float *dx, float *dw, float *db,
						    const float *dy, const float *x,
						    const float *w, float mean, float rstd, int c)
{
	float gm = 0.0f, gxm = 0.0f;
	for (int i = 0; i < c; i++) {
		float xh = (x[i] - mean) * rstd;
		float g = w[i] * dy[i];
		gm += g;
		gxm += g * xh;
	}
	gm /= (float)c;
	gxm /= (float)c;
	for (int i = 0; i < c; i++) {
		float xh = (x[i] - mean) * rstd;
		dx[i] = rstd * (w[i] * dy[i] - gm - xh * gxm);
		if (dw)
			dw[i] += dy[i] * xh;
		if (db)
			db[i] += dy[i];
	}
}

/* ---- RoPE ---- */

/* Rotates one head vector (hd) at position pos; sign -1 applies the inverse rotation
 * (the backward). interleaved: pairs (2i, 2i+1); otherwise (i, i + hd/2). */
FT_HD static inline void ops_rope_head(float *x, int hd, int pos, const float *inv_freq,
				       int interleaved, float sign)
{
	int half = hd / 2;
	for (int i = 0; i < half; i++) {
		float ang = (float)pos * inv_freq[i];
		float cs = cosf(ang), sn = sign * sinf(ang);
		int i0 = interleaved ? 2 * i : i;
		int i1 = interleaved ? 2 * i + 1 : i + half;
		float a = x[i0], b = x[i1];
		x[i0] = a * cs - b * sn;
		x[i1] = a * sn + b * cs;
	}
}

/* ---- cross-entropy rows ---- */

/* Returns logsumexp of a row (max-shifted, accumulated in double for v ~ 50k). */
FT_HD static inline float ops_logsumexp_row(const float *x, int v)
{
	if (v <= 0)
		return -INFINITY;
	float mx = -INFINITY;
	for (int i = 0; i < v; i++)
		mx = x[i] > mx ? x[i] : mx;
	double s = 0.0;
	OPS_SIMD_SUM_S
	for (int i = 0; i < v; i++)
		s += (double)ops_expf(x[i] - mx);
	return mx + (float)log(s > 0.0 ? s : 1.0); /* s >= 1: the max term is exp(0) */
}

/* In place: x becomes scale * (softmax(x) - onehot(target)). */
FT_HD static inline void ops_crossentropy_row_backward(float *x, float lse, int target, int v,
						       float scale)
{
	OPS_SIMD
	for (int i = 0; i < v; i++)
		x[i] = scale * ops_expf(x[i] - lse);
	x[target] -= scale;
}

/* ---- dropout ---- */

/* Keep-decision of element i for a dropout of probability p, from (seed, stream): a
 * counter-based hash so any thread (or GPU lane) gets the same mask. */
FT_HD static inline int ops_dropout_keep(uint64_t seed, uint64_t stream, uint64_t i, float p)
{
	uint64_t x = seed ^ (stream * 0xd1342543de82ef95ULL) ^ (i * 0x9e3779b97f4a7c15ULL);
	uint64_t z = rng_splitmix64(&x);
	float u = (float)(z >> 40) * 0x1.0p-24f;
	return u >= p;
}

/* ---- AdamW ---- */

/* The constants of one AdamW step, prepared on the host in double and rounded once, in
 * torch.optim.AdamW's order (decoupled decay first, then the bias-corrected step). */
struct ops_adamw_hp {
	float b1, b2, eps;
	float decay;     /* 1 - lr*wd (1 for a parameter without weight decay) */
	float step_size; /* lr / (1 - b1^t) */
	float bc2_sqrt;  /* sqrt(1 - b2^t) */
};

/* t is the 1-based count of applied updates. */
static inline struct ops_adamw_hp ops_adamw_prepare(double lr, double b1, double b2, double eps,
						    double wd, long t)
{
	struct ops_adamw_hp h;
	h.b1 = (float)b1;
	h.b2 = (float)b2;
	h.eps = (float)eps;
	h.decay = (float)(1.0 - lr * wd);
	h.step_size = (float)(lr / (1.0 - pow(b1, (double)t)));
	h.bc2_sqrt = (float)sqrt(1.0 - pow(b2, (double)t));
	return h;
}

/* p = p*decay - step_size * m / (sqrt(v)/bc2_sqrt + eps) after m = lerp(m, g, 1-b1),
 * v = b2 v + (1-b2) g^2 (torch's expressions, so trajectories match PyTorch's). */
FT_HD static inline void ops_adamw_elem(float *p, float g, float *m, float *v,
					const struct ops_adamw_hp *h)
{
	float wi = *p * h->decay;
	float mi = *m + (1.0f - h->b1) * (g - *m);
	float vi = h->b2 * *v + (1.0f - h->b2) * g * g;
	*m = mi;
	*v = vi;
	float denom = sqrtf(vi) / h->bc2_sqrt + h->eps;
	*p = wi - h->step_size * (mi / denom);
}

/* ---- SGD ---- */

/* The constants of one SGD step, as torch.optim.SGD defines it: L2 weight decay added to
 * the gradient, momentum with dampening (the buffer starts as the first step's gradient),
 * optionally Nesterov. */
struct ops_sgd_hp {
	float lr, momentum, damp1; /* damp1 = 1 - dampening */
	float wd;                  /* 0 for a parameter without weight decay */
	int nesterov;
	int first;                 /* the buffer is set, not updated (torch's buf is None) */
};

static inline struct ops_sgd_hp ops_sgd_prepare(double lr, double momentum, double dampening,
						double wd, int nesterov, int first)
{
	struct ops_sgd_hp h;
	h.lr = (float)lr;
	h.momentum = (float)momentum;
	h.damp1 = (float)(1.0 - dampening);
	h.wd = (float)wd;
	h.nesterov = nesterov;
	h.first = first;
	return h;
}

/* torch's expressions in its order: d = g + wd*p; buf = d (first) or buf*momentum +
 * (1-dampening)*d; d = d + momentum*buf (Nesterov) or buf; p = p - lr*d. buf is not read
 * or written without momentum. */
FT_HD static inline void ops_sgd_elem(float *p, float g, float *buf, const struct ops_sgd_hp *h)
{
	float d = g;
	if (h->wd != 0.0f) {
		float decay = h->wd * *p;
		d = d + decay;
	}
	if (h->momentum != 0.0f && buf) { /* callers pass buf whenever momentum != 0 */
		float b;
		if (h->first) {
			b = d;
		} else {
			float kept = *buf * h->momentum;
			float add = h->damp1 * d;
			b = kept + add;
		}
		*buf = b;
		if (h->nesterov) {
			float look = h->momentum * b;
			d = d + look;
		} else {
			d = b;
		}
	}
	float step = h->lr * d;
	*p = *p - step;
}

#endif
