/* Unit tests for ops/ (CPU backend): matmul against a double-precision reference in every
 * transpose form (and bf16 against bf16-rounded inputs), and central finite differences
 * for the backward of every op: RMSNorm, LayerNorm, both RoPE styles, GQA attention,
 * SwiGLU, GELU, embedding, masked cross-entropy, dropout; plus AdamW against a reference
 * step. The objective is L = sum(out * R) for a fixed random R, evaluated in double. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backends/native/ops/ops.h"
#include "backends/native/ops/cpu/simd16_cpu.h"
#include "backends/native/ops/cpu/ops_cpu_internal.h"
#include "backends/native/ops/ops_math.h"
#include "common/rng.h"
#include "common/banned.h"

static const struct ops *O;

static float *rnd(size_t n, uint64_t seed, float scale)
{
	struct rng r;
	rng_seed(&r, seed, 77);
	float *x = malloc(n * sizeof(float));
	for (size_t i = 0; i < n; i++)
		x[i] = scale * (2.0f * rng_uniform_f(&r) - 1.0f);
	return x;
}

static double dot_d(const float *a, const float *b, size_t n)
{
	double s = 0;
	for (size_t i = 0; i < n; i++)
		s += (double)a[i] * b[i];
	return s;
}

/* A forward under test: writes out (n_out floats) from the current inputs in ctx. */
typedef void (*fwd_fn)(void *ctx, float *out);

/* Checks grad (analytic dL/dx) against central differences of L = <fwd(x), R>. */
static void fd_check(const char *what, float *x, size_t n, const float *grad, fwd_fn f,
		     void *ctx, const float *R, size_t n_out, float eps, double tol)
{
	float *out = malloc(n_out * sizeof(float));
	struct rng r;
	rng_seed(&r, n, 5);
	for (int s = 0; s < 24; s++) {
		size_t j = (size_t)rng_below(&r, n);
		float keep = x[j];
		x[j] = keep + eps;
		f(ctx, out);
		double lp = dot_d(out, R, n_out);
		x[j] = keep - eps;
		f(ctx, out);
		double lm = dot_d(out, R, n_out);
		x[j] = keep;
		double fd = (lp - lm) / (2.0 * eps);
		if (fabs(fd - grad[j]) > tol * (1.0 + fabs(fd)))
			fail_msg("%s[%zu]: analytic %.7g, finite difference %.7g", what, j,
				 (double)grad[j], fd);
	}
	free(out);
}

/* ---- matmul ---- */

static void ref_matmul(double *c, const float *a, const float *b, int m, int n, int k,
		       unsigned fl, bool bf16)
{
	for (int i = 0; i < m; i++)
		for (int j = 0; j < n; j++) {
			double s = 0;
			for (int p = 0; p < k; p++) {
				float av = (fl & OPS_TA) ? a[(size_t)p * m + i] : a[(size_t)i * k + p];
				float bv = (fl & OPS_TB) ? b[(size_t)j * k + p] : b[(size_t)p * n + j];
				if (bf16) {
					av = ops_bf16_to_f32(ops_f32_to_bf16(av));
					bv = ops_bf16_to_f32(ops_f32_to_bf16(bv));
				}
				s += (double)av * bv;
			}
			c[(size_t)i * n + j] = s;
		}
}

static void test_matmul(void **state)
{
	(void)state;
	int m = 13, n = 29, k = 37;
	float *a = rnd((size_t)m * k, 1, 1), *b = rnd((size_t)k * n, 2, 1);
	float *c = malloc((size_t)m * n * sizeof(float));
	double *ref = malloc((size_t)m * n * sizeof(double));
	for (unsigned fl = 0; fl < 8; fl++) {
		bool bf = (fl & OPS_BF16) != 0; /* rounded to bf16 with or without bf16 hardware */
		ref_matmul(ref, a, b, m, n, k, fl, bf);
		for (size_t i = 0; i < (size_t)m * n; i++)
			c[i] = NAN; /* beta 0 must not read C */
		O->matmul(c, a, b, m, n, k, fl, 1.0f, 0.0f);
		for (size_t i = 0; i < (size_t)m * n; i++)
			assert_float_equal(c[i], ref[i], 1e-4 * (1 + fabs(ref[i])));
		/* alpha and accumulation */
		O->matmul(c, a, b, m, n, k, fl, 0.5f, 1.0f);
		for (size_t i = 0; i < (size_t)m * n; i++)
			assert_float_equal(c[i], 1.5 * ref[i], 2e-4 * (1 + fabs(ref[i])));
	}
	free(a);
	free(b);
	free(c);
	free(ref);
}

/* OPS_CONST_B: the cached bf16 copy of a frozen B (reordered to oneDNN's blocked layout
 * where its brgemm takes one) gives the same bits as rounding B on the call, in both
 * orientations (forward x W^T and backward dy W use the same weight), for several m on the
 * same weight (the blocked copy made for the first m is reused or the plain copy taken),
 * with alpha and accumulation; writing B through to_device (or freeing it) drops the
 * copies. */
static void test_matmul_const_b(void **state)
{
	(void)state;
	/* The cached copies belong to the native bf16 path: without it both calls take the
	 * same rounding path and comparing them would prove nothing. */
	if (!ops_cpu_has_bf16()) {
		print_message("skipped: this CPU has no bf16 matmuls (the OPS_CONST_B copies are "
			      "not used)\n");
		skip();
	}
	int n = 300, k = 40, ms[] = {7, 1, 33, 7};
	float *a = rnd((size_t)33 * n, 5, 1), *h = rnd((size_t)k * n, 6, 1);
	float *b = O->alloc((size_t)k * n * sizeof(float));
	size_t cn = (size_t)33 * n;
	float *c = malloc(cn * sizeof(float)), *c1 = malloc(cn * sizeof(float));
	O->to_device(b, h, (size_t)k * n * sizeof(float));
	for (int rep = 0; rep < 2; rep++) {
		for (size_t mi = 0; mi < sizeof ms / sizeof ms[0]; mi++)
			for (unsigned tb = 0; tb <= OPS_TB; tb += OPS_TB) {
				int m = ms[mi];
				/* the weight is (n, k): x W^T with OPS_TB, else dy W (m, k) */
				int nn = tb ? n : k, kk = tb ? k : n;
				size_t mn = (size_t)m * nn;
				for (int acc = 0; acc < 2; acc++) {
					float alpha = acc ? 0.5f : 1.0f, beta = (float)acc;
					for (size_t i = 0; i < mn; i++)
						c[i] = c1[i] = acc ? (float)i * 0.25f : 0.0f;
					O->matmul(c, a, b, m, nn, kk, tb | OPS_BF16, alpha, beta);
					O->matmul(c1, a, b, m, nn, kk, tb | OPS_BF16 | OPS_CONST_B,
						  alpha, beta);
					assert_memory_equal(c, c1, mn * sizeof(float));
				}
			}
		for (size_t i = 0; i < (size_t)k * n; i++)
			h[i] = -2.0f * h[i];
		O->to_device(b, h, (size_t)k * n * sizeof(float)); /* new weights: rep 1 sees them */
	}
	O->free(b);
	free(a);
	free(h);
	free(c);
	free(c1);
}

/* Many distinct shapes (an evaluation sees a new m for every prompt length) all stay on
 * the bf16 path: a = 1 + 2^-10 rounds to 1 in bf16, so each bf16 product is exactly k
 * while an fp32 fallback would give k (1 + 2^-10). Frozen and plain B alike. On a CPU
 * without bf16 matmuls the rounded-input path gives the same. */
/* train.precision bf16 on a CPU without bf16 instructions: the inputs are rounded to bf16
 * and multiplied in fp32 (it multiplied fp32 before: the key did nothing there). The
 * products equal the reference with bf16-rounded inputs, not the fp32 ones. */
/* keys: train.precision */
static void test_bf16_without_bf16_hardware(void **state)
{
	(void)state;
	/* what train.precision: bf16 asks of every matmul */
	int m = 9, n = 17, k = 33;
	float *a = rnd((size_t)m * k, 31, 1), *b = rnd((size_t)k * n, 32, 1);
	float *c = malloc((size_t)m * n * sizeof(float));
	double *ref = malloc((size_t)m * n * sizeof(double));
	double *ref32 = malloc((size_t)m * n * sizeof(double));
	for (unsigned fl = 0; fl < 4; fl++) {
		ref_matmul(ref, a, b, m, n, k, fl, true);
		ref_matmul(ref32, a, b, m, n, k, fl, false);
		assert_true(ops_cpu_matmul_bf16_rounded(c, a, b, m, n, k, fl | OPS_BF16, 1.0f, 0.0f));
		double far32 = 0;
		for (size_t i = 0; i < (size_t)m * n; i++) {
			assert_float_equal(c[i], ref[i], 1e-5 * (1 + fabs(ref[i])));
			far32 = fmax(far32, fabs(c[i] - ref32[i]));
		}
		assert_true(far32 > 1e-3); /* not the fp32 product */
	}
	free(a);
	free(b);
	free(c);
	free(ref);
	free(ref32);
}

static void test_matmul_bf16_many_shapes(void **state)
{
	(void)state;
	int n = 5, k = 6;
	float *a = malloc((size_t)300 * k * sizeof(float)), *c = malloc((size_t)300 * n * sizeof(float));
	float *b = O->alloc((size_t)k * n * sizeof(float));
	for (int i = 0; i < 300 * k; i++)
		a[i] = 1.0f + 0x1.0p-10f;
	float *hb = malloc((size_t)k * n * sizeof(float));
	for (int i = 0; i < k * n; i++)
		hb[i] = 1.0f;
	O->to_device(b, hb, (size_t)k * n * sizeof(float));
	for (int rep = 0; rep < 2; rep++)
		for (int m = 1; m <= 300; m++) {
			unsigned fl = OPS_TB | OPS_BF16 | (m % 2 ? OPS_CONST_B : 0u);
			O->matmul(c, a, b, m, n, k, fl, 1.0f, 0.0f);
			for (int i = 0; i < m * n; i++)
				if (c[i] != (float)k)
					fail_msg("m = %d: c[%d] = %.9g, want %d (bf16 path)", m, i,
						 (double)c[i], k);
		}
	O->free(b);
	free(a);
	free(c);
	free(hb);
}

/* The vectorised bf16 rounding of the CPU matmul gives the bits of ops_f32_to_bf16 for
 * every kind of input (ties both ways, carries into the exponent, overflow to inf,
 * subnormals, signed zeros, quiet and signalling NaNs, random patterns) and every tail
 * length, threaded or not. */
static void test_to_bf16_bits(void **state)
{
	(void)state;
	size_t n = ((size_t)1 << 20) + 37;
	float *src = malloc(n * sizeof(float));
	uint16_t *got = malloc(n * sizeof(uint16_t));
	const uint32_t special[] = {0x00000000u, 0x80000000u, 0x00000001u, 0x00008000u,
				    0x00018000u, 0x007fffffu, 0x807fffffu, 0x3f808000u,
				    0x3f818000u, 0x3f807fffu, 0x3f808001u, 0x7f7fffffu,
				    0xff7fffffu, 0x7f800000u, 0xff800000u, 0x7f800001u,
				    0x7fc00000u, 0xffc00001u, 0x7fffffffu, 0x3fffffffu};
	size_t ns = sizeof special / sizeof special[0];
	struct rng r;
	rng_seed(&r, 2024, 5);
	for (size_t i = 0; i < n; i++) {
		uint32_t u = i < ns ? special[i] : (uint32_t)rng_next(&r);
		if (i >= ns && i % 3 == 0) /* near a rounding boundary */
			u = (u & 0xffff0000u) | (0x7ffeu + (uint32_t)(i % 5));
		memcpy(&src[i], &u, sizeof u);
	}
	ops_cpu_to_bf16(got, src, n);
	for (size_t i = 0; i < n; i++)
		if (got[i] != ops_f32_to_bf16(src[i]))
			fail_msg("element %zu: got %04x, want %04x", i, got[i],
				 ops_f32_to_bf16(src[i]));
	for (size_t len = 0; len <= 40; len++) { /* every tail length, unaligned start */
		memset(got, 0xab, 64 * sizeof(uint16_t));
		ops_cpu_to_bf16(got + 1, src + 3, len);
		for (size_t i = 0; i < len; i++)
			assert_int_equal(got[1 + i], ops_f32_to_bf16(src[3 + i]));
		assert_int_equal(got[0], 0xabab);
		assert_int_equal(got[1 + len], 0xabab); /* nothing written past the end */
	}
	free(src);
	free(got);
}

/* Few rows times a large transposed weight (the decode path: gemm_small_cpu.c): every
 * m up to 9 with n not a multiple of the block, alpha and accumulation, C poisoned for
 * beta 0, and the same bits for every thread count. */
static void test_matmul_small_m(void **state)
{
	(void)state;
	int n = 1031, k = 83;
	float *a = rnd((size_t)9 * k, 3, 1), *b = rnd((size_t)k * n, 4, 1);
	float *c = malloc((size_t)9 * n * sizeof(float)), *c1 = malloc((size_t)9 * n * sizeof(float));
	int nthreads = omp_get_max_threads();
	double *ref = malloc((size_t)9 * n * sizeof(double));
	for (int m = 1; m <= 9; m++) {
		ref_matmul(ref, a, b, m, n, k, OPS_TB, false);
		for (size_t i = 0; i < (size_t)m * n; i++)
			c[i] = NAN;
		O->matmul(c, a, b, m, n, k, OPS_TB, 1.0f, 0.0f);
		for (size_t i = 0; i < (size_t)m * n; i++)
			assert_float_equal(c[i], ref[i], 1e-4 * (1 + fabs(ref[i])));
		O->matmul(c, a, b, m, n, k, OPS_TB, 0.5f, 1.0f);
		for (size_t i = 0; i < (size_t)m * n; i++)
			assert_float_equal(c[i], 1.5 * ref[i], 2e-4 * (1 + fabs(ref[i])));
		O->matmul(c, a, b, m, n, k, OPS_TB, 1.0f, 0.0f);
		for (int t = 1; t <= 3; t++) {
			omp_set_num_threads(t);
			O->matmul(c1, a, b, m, n, k, OPS_TB, 1.0f, 0.0f);
			assert_memory_equal(c1, c, (size_t)m * n * sizeof(float));
		}
		omp_set_num_threads(nthreads);
	}
	free(a);
	free(b);
	free(c);
	free(c1);
	free(ref);
}

/* ---- norms ---- */

struct norm_ctx {
	float *x, *w, *b, *mean, *rstd;
	int n, c;
	bool layer;
};

static void norm_fwd(void *vc, float *out)
{
	struct norm_ctx *k = vc;
	if (k->layer)
		O->layernorm_forward(out, k->mean, k->rstd, k->x, k->w, k->b, k->n, k->c, 1e-5f);
	else
		O->rmsnorm_forward(out, k->rstd, k->x, k->w, k->n, k->c, 1e-5f);
}

static void check_norm(bool layer)
{
	int n = 7, c = 33;
	struct norm_ctx k = {rnd((size_t)n * c, 3, 2), rnd((size_t)c, 4, 1), rnd((size_t)c, 5, 1),
			     malloc(n * sizeof(float)), malloc(n * sizeof(float)), n, c, layer};
	float *R = rnd((size_t)n * c, 6, 1), *out = malloc((size_t)n * c * sizeof(float));
	float *dx = malloc((size_t)n * c * sizeof(float));
	float *dw = calloc((size_t)c, sizeof(float)), *db = calloc((size_t)c, sizeof(float));
	norm_fwd(&k, out);
	if (layer)
		O->layernorm_backward(dx, dw, db, R, k.x, k.w, k.mean, k.rstd, n, c);
	else
		O->rmsnorm_backward(dx, dw, R, k.x, k.w, k.rstd, n, c);
	fd_check("norm dx", k.x, (size_t)n * c, dx, norm_fwd, &k, R, (size_t)n * c, 1e-2f, 2e-3);
	fd_check("norm dw", k.w, (size_t)c, dw, norm_fwd, &k, R, (size_t)n * c, 1e-2f, 2e-3);
	if (layer)
		fd_check("norm db", k.b, (size_t)c, db, norm_fwd, &k, R, (size_t)n * c, 1e-2f, 2e-3);
	free(k.x);
	free(k.w);
	free(k.b);
	free(k.mean);
	free(k.rstd);
	free(R);
	free(out);
	free(dx);
	free(dw);
	free(db);
}

/* The CPU RMSNorm (16 rows at a time on AVX-512) has the bits of the scalar rows of
 * ops_math.h, forward and backward, for row counts around 16 and widths with tails. */
static void check_rmsnorm_bits(int n, int c)
{
	float *x = rnd((size_t)n * c, 90, 3), *w = rnd((size_t)c, 91, 1), *dy = rnd((size_t)n * c, 92, 1);
	float *out = malloc((size_t)n * c * sizeof(float)), *rstd = malloc((size_t)n * sizeof(float));
	float *dx = malloc((size_t)n * c * sizeof(float)), *want = malloc((size_t)c * sizeof(float));
	O->rmsnorm_forward(out, rstd, x, w, n, c, 1e-5f);
	O->rmsnorm_backward(dx, NULL, dy, x, w, rstd, n, c);
	for (int r = 0; r < n; r++) {
		size_t o = (size_t)r * c;
		float rs = ops_rmsnorm_row(want, x + o, w, c, 1e-5f);
		if (memcmp(&rs, &rstd[r], sizeof rs) != 0 ||
		    memcmp(want, out + o, (size_t)c * sizeof(float)) != 0)
			fail_msg("rmsnorm n %d c %d row %d: forward differs from the scalar row", n, c,
				 r);
		ops_rmsnorm_row_backward(want, NULL, dy + o, x + o, w, rs, c);
		if (memcmp(want, dx + o, (size_t)c * sizeof(float)) != 0)
			fail_msg("rmsnorm n %d c %d row %d: backward differs from the scalar row", n, c,
				 r);
	}
	free(x), free(w), free(dy), free(out), free(rstd), free(dx), free(want);
}

static void test_rmsnorm(void **state)
{
	(void)state;
	check_norm(false);
	int rows[] = {1, 15, 16, 17, 40}, cols[] = {1, 17, 576};
	for (int i = 0; i < 5; i++)
		for (int j = 0; j < 3; j++)
			check_rmsnorm_bits(rows[i], cols[j]);
}

static void test_layernorm(void **state)
{
	(void)state;
	check_norm(true);
}

/* ---- RoPE ---- */

struct rope_ctx {
	float *x, *inv;
	int b, t, nh, hd;
	int *pos0;
	enum ops_rope_style st;
};

static void rope_fwd(void *vc, float *out)
{
	struct rope_ctx *k = vc;
	size_t n = (size_t)k->b * k->t * k->nh * k->hd;
	memcpy(out, k->x, n * sizeof(float));
	O->rope_forward(out, k->b, k->t, k->nh, k->hd, k->pos0, k->inv, k->st);
}

static void test_rope(void **state)
{
	(void)state;
	int b = 2, t = 5, nh = 3, hd = 8;
	size_t n = (size_t)b * t * nh * hd;
	float inv[4];
	ops_rope_inv_freq(inv, hd, 10000.0f, 0, 1, 0, 0, 0);
	assert_float_equal(inv[1], powf(10000.0f, -2.0f / 8.0f), 1e-7);
	int pos0[2] = {3, 11};
	for (int st = 1; st <= 2; st++) {
		struct rope_ctx k = {rnd(n, 7, 1), inv, b, t, nh, hd, pos0, (enum ops_rope_style)st};
		float *R = rnd(n, 8, 1), *dx = malloc(n * sizeof(float)), *out = malloc(n * sizeof(float));
		memcpy(dx, R, n * sizeof(float));
		O->rope_backward(dx, b, t, nh, hd, pos0, inv, k.st);
		fd_check("rope", k.x, n, dx, rope_fwd, &k, R, n, 1e-2f, 1e-3);
		/* rotations keep the norm */
		rope_fwd(&k, out);
		assert_float_equal(dot_d(out, out, n), dot_d(k.x, k.x, n), 1e-3);
		/* the bits of ops_rope_head (the CUDA kernels' arithmetic) for every head */
		float *want = malloc(n * sizeof(float));
		memcpy(want, k.x, n * sizeof(float));
		for (int r = 0; r < b * t; r++)
			for (int h = 0; h < nh; h++)
				ops_rope_head(want + ((size_t)r * nh + h) * hd, hd, pos0[r / t] + r % t,
					      inv, st == OPS_ROPE_INTERLEAVED, 1.0f);
		assert_memory_equal(out, want, n * sizeof(float));
		free(want);
		free(k.x);
		free(R);
		free(dx);
		free(out);
	}
	/* interleaved on permuted rows equals rotate-half: GGUF's Q/K row permutation maps
	 * pair (i, i + hd/2) to (2i, 2i + 1) */
	float *x = rnd((size_t)hd, 9, 1), xi[8], xh[8];
	for (int i = 0; i < hd / 2; i++) {
		xi[2 * i] = x[i];
		xi[2 * i + 1] = x[i + hd / 2];
	}
	memcpy(xh, x, sizeof xh);
	int p[1] = {7};
	O->rope_forward(xh, 1, 1, 1, hd, p, inv, OPS_ROPE_HALF);
	O->rope_forward(xi, 1, 1, 1, hd, p, inv, OPS_ROPE_INTERLEAVED);
	for (int i = 0; i < hd / 2; i++) {
		assert_float_equal(xi[2 * i], xh[i], 1e-6);
		assert_float_equal(xi[2 * i + 1], xh[i + hd / 2], 1e-6);
	}
	free(x);
	/* llama3 scaling: high frequencies kept, low frequencies divided by the factor */
	float s3[32], s0[32];
	ops_rope_inv_freq(s0, 64, 500000.0f, 0, 0, 0, 0, 0);
	ops_rope_inv_freq(s3, 64, 500000.0f, 2, 8.0f, 1.0f, 4.0f, 8192);
	assert_float_equal(s3[0], s0[0], 1e-9);
	assert_float_equal(s3[31], s0[31] / 8.0f, 1e-12);
	ops_rope_inv_freq(s3, 64, 500000.0f, 1, 4.0f, 0, 0, 0);
	assert_float_equal(s3[5], s0[5] / 4.0f, 1e-9);
}

/* ---- attention ---- */

struct att_ctx {
	float *q, *k, *v, *att;
	int b, t, nh, nkv, hd;
	float scale;
	int window;
};

static void att_fwd(void *vc, float *out)
{
	struct att_ctx *c = vc;
	O->attention_forward(out, c->att, c->q, c->k, c->v, c->b, c->t, c->t, c->nh, c->nkv,
			     c->hd, NULL, c->scale, c->window);
}

/* Attention in double from the definition: query t attends keys max(0, t-w+1)..t. */
static void ref_attention_win(double *out, const struct att_ctx *c)
{
	int grp = c->nh / c->nkv, hd = c->hd;
	size_t qs = (size_t)c->nh * hd, ks = (size_t)c->nkv * hd;
	double *s = malloc((size_t)c->t * sizeof(double));
	for (int bi = 0; bi < c->b; bi++)
		for (int h = 0; h < c->nh; h++)
			for (int t = 0; t < c->t; t++) {
				int j0 = c->window > 0 && t - c->window + 1 > 0 ? t - c->window + 1 : 0;
				const float *qr = c->q + ((size_t)bi * c->t + t) * qs + (size_t)h * hd;
				double mx = -1e300, sum = 0;
				for (int j = j0; j <= t; j++) {
					const float *kr = c->k + ((size_t)bi * c->t + j) * ks +
							  (size_t)(h / grp) * hd;
					double d = 0;
					for (int i = 0; i < hd; i++)
						d += (double)qr[i] * kr[i];
					s[j] = d * c->scale;
					mx = s[j] > mx ? s[j] : mx;
				}
				for (int j = j0; j <= t; j++)
					sum += (s[j] = exp(s[j] - mx));
				double *o = out + ((size_t)bi * c->t + t) * qs + (size_t)h * hd;
				for (int i = 0; i < hd; i++) {
					double a = 0;
					for (int j = j0; j <= t; j++)
						a += s[j] / sum *
						     c->v[((size_t)bi * c->t + j) * ks + (size_t)(h / grp) * hd + i];
					o[i] = a;
				}
			}
	free(s);
}

static void attention_case(float scale, int window)
{
	int b = 2, t = 6, nh = 4, nkv = 2, hd = 8;
	size_t nq = (size_t)b * t * nh * hd, nk = (size_t)b * t * nkv * hd;
	struct att_ctx c = {rnd(nq, 10, 1), rnd(nk, 11, 1), rnd(nk, 12, 1),
			    malloc((size_t)b * nh * t * t * sizeof(float)), b, t, nh, nkv, hd,
			    scale, window};
	float *R = rnd(nq, 13, 1), *out = malloc(nq * sizeof(float));
	float *dq = malloc(nq * sizeof(float)), *dk = malloc(nk * sizeof(float)),
	      *dv = malloc(nk * sizeof(float));
	att_fwd(&c, out);
	/* the first position attends only to itself: out = v[0] of its KV head */
	for (int i = 0; i < hd; i++)
		assert_float_equal(out[(size_t)3 * hd + i], c.v[(size_t)1 * hd + i], 1e-6);
	double *ref = malloc(nq * sizeof(double));
	ref_attention_win(ref, &c);
	for (size_t i = 0; i < nq; i++)
		assert_float_equal(out[i], ref[i], 1e-5);
	/* probabilities outside the window are exactly 0 */
	if (window > 0)
		for (int i = window; i < t; i++)
			for (int j = 0; j <= i - window; j++)
				assert_true(c.att[(size_t)i * t + j] == 0.0f);
	/* the loop form (a query block that does not start at 0) agrees */
	float *o2 = malloc(nq * sizeof(float));
	int zero[2] = {0, 0};
	float *noatt = NULL;
	O->attention_forward(o2, noatt, c.q, c.k, c.v, b, t, t, nh, nkv, hd, zero, scale, window);
	for (size_t i = 0; i < nq; i++)
		assert_float_equal(o2[i], ref[i], 1e-5);
	free(o2);
	free(ref);
	O->attention_backward(dq, dk, dv, R, c.att, c.q, c.k, c.v, b, t, nh, nkv, hd, scale, window);
	fd_check("attention dq", c.q, nq, dq, att_fwd, &c, R, nq, 1e-2f, 2e-3);
	fd_check("attention dk", c.k, nk, dk, att_fwd, &c, R, nq, 1e-2f, 2e-3);
	fd_check("attention dv", c.v, nk, dv, att_fwd, &c, R, nq, 1e-2f, 2e-3);
	/* decode form: the last query against a cache of capacity 9 at pos0 = t-1 */
	int tk = 9, pos0[2] = {t - 1, t - 1};
	float *kc = calloc((size_t)b * tk * nkv * hd, sizeof(float));
	float *vc = calloc((size_t)b * tk * nkv * hd, sizeof(float));
	float *q1 = malloc((size_t)b * nh * hd * sizeof(float)), *o1 = malloc((size_t)b * nh * hd * sizeof(float));
	for (int bi = 0; bi < b; bi++) {
		memcpy(kc + (size_t)bi * tk * nkv * hd, c.k + (size_t)bi * t * nkv * hd,
		       (size_t)t * nkv * hd * sizeof(float));
		memcpy(vc + (size_t)bi * tk * nkv * hd, c.v + (size_t)bi * t * nkv * hd,
		       (size_t)t * nkv * hd * sizeof(float));
		memcpy(q1 + (size_t)bi * nh * hd, c.q + ((size_t)bi * t + t - 1) * nh * hd,
		       (size_t)nh * hd * sizeof(float));
	}
	O->attention_forward(o1, NULL, q1, kc, vc, b, 1, tk, nh, nkv, hd, pos0, scale, window);
	for (int bi = 0; bi < b; bi++)
		for (int i = 0; i < nh * hd; i++)
			assert_float_equal(o1[(size_t)bi * nh * hd + i],
					   out[((size_t)bi * t + t - 1) * nh * hd + i], 1e-5);
	free(c.q);
	free(c.k);
	free(c.v);
	free(c.att);
	free(R);
	free(out);
	free(dq);
	free(dk);
	free(dv);
	free(kc);
	free(vc);
	free(q1);
	free(o1);
}

/* Longer sequences: the causal products run in row blocks (ATT_BLOCK) and a backward
 * without stored probabilities recomputes them; both against a double-precision reference
 * (no window), and stored and recomputed probabilities give the same bits (with and
 * without a sliding window). */
static void test_attention_blocks_and_recompute(void **state)
{
	(void)state;
	int b = 2, t = 200, nh = 4, nkv = 2, hd = 16, grp = nh / nkv;
	size_t nq = (size_t)b * t * nh * hd, nk = (size_t)b * t * nkv * hd;
	float *q = rnd(nq, 30, 1), *k = rnd(nk, 31, 1), *v = rnd(nk, 32, 1), *R = rnd(nq, 33, 1);
	float *att = malloc((size_t)b * nh * t * t * sizeof(float));
	float *o1 = malloc(nq * sizeof(float)), *o2 = malloc(nq * sizeof(float));
	float *g1[3] = {malloc(nq * 4), malloc(nk * 4), malloc(nk * 4)};
	float *g2[3] = {malloc(nq * 4), malloc(nk * 4), malloc(nk * 4)};
	float sc1 = 1.0f / sqrtf((float)hd);
	/* a sliding window (Gemma's local layers) first: stored and recomputed agree */
	for (int w = 50; w >= 0; w -= 50) {
		O->attention_forward(o1, att, q, k, v, b, t, t, nh, nkv, hd, NULL, sc1, w);
		O->attention_forward(o2, NULL, q, k, v, b, t, t, nh, nkv, hd, NULL, sc1, w);
		assert_memory_equal(o1, o2, nq * sizeof(float));
		O->attention_backward(g1[0], g1[1], g1[2], R, att, q, k, v, b, t, nh, nkv, hd, sc1,
				      w);
		O->attention_backward(g2[0], g2[1], g2[2], R, NULL, q, k, v, b, t, nh, nkv, hd, sc1,
				      w);
		for (int i = 0; i < 3; i++)
			assert_memory_equal(g1[i], g2[i], (i ? nk : nq) * sizeof(float));
	}
	/* the reference, in double */
	double *ro = calloc(nq, sizeof(double)), *rq = calloc(nq, sizeof(double));
	double *rk = calloc(nk, sizeof(double)), *rv = calloc(nk, sizeof(double));
	double *pr = malloc((size_t)t * sizeof(double)), *dp = malloc((size_t)t * sizeof(double));
	double scale = 1.0 / sqrt((double)hd);
	size_t qs = (size_t)nh * hd, ks = (size_t)nkv * hd;
	for (int bi = 0; bi < b; bi++)
		for (int h = 0; h < nh; h++)
			for (int i = 0; i < t; i++) {
				const float *qi = q + ((size_t)bi * t + i) * qs + (size_t)h * hd;
				const float *ri = R + ((size_t)bi * t + i) * qs + (size_t)h * hd;
				size_t ko = (size_t)bi * t * ks + (size_t)(h / grp) * hd;
				double mx = -1e300, sum = 0, pd = 0;
				for (int j = 0; j <= i; j++) {
					double sc = 0;
					for (int e = 0; e < hd; e++)
						sc += (double)qi[e] * k[ko + (size_t)j * ks + e];
					pr[j] = sc * scale;
					mx = fmax(mx, pr[j]);
				}
				for (int j = 0; j <= i; j++)
					sum += (pr[j] = exp(pr[j] - mx));
				for (int j = 0; j <= i; j++) {
					pr[j] /= sum;
					double d = 0;
					for (int e = 0; e < hd; e++) {
						ro[((size_t)bi * t + i) * qs + (size_t)h * hd + e] +=
							pr[j] * v[ko + (size_t)j * ks + e];
						d += (double)ri[e] * v[ko + (size_t)j * ks + e];
						rv[ko + (size_t)j * ks + e] += pr[j] * ri[e];
					}
					dp[j] = d;
					pd += pr[j] * d;
				}
				for (int j = 0; j <= i; j++) {
					double ds = pr[j] * (dp[j] - pd) * scale;
					for (int e = 0; e < hd; e++) {
						rq[((size_t)bi * t + i) * qs + (size_t)h * hd + e] +=
							ds * k[ko + (size_t)j * ks + e];
						rk[ko + (size_t)j * ks + e] += ds * qi[e];
					}
				}
			}
	const double *refs[4] = {ro, rq, rk, rv};
	const float *got[4] = {o1, g1[0], g1[1], g1[2]};
	for (int a = 0; a < 4; a++) {
		size_t n = a < 2 ? nq : nk;
		double mx = 0, err = 0;
		for (size_t i = 0; i < n; i++) {
			mx = fmax(mx, fabs(refs[a][i]));
			err = fmax(err, fabs(refs[a][i] - got[a][i]));
		}
		assert_true(err <= 1e-5 * mx);
	}
	free(q), free(k), free(v), free(R), free(att), free(o1), free(o2);
	for (int i = 0; i < 3; i++)
		free(g1[i]), free(g2[i]);
	free(ro), free(rq), free(rk), free(rv), free(pr), free(dp);
}

static double bfr(float x)
{
	return (double)ops_bf16_to_f32(ops_f32_to_bf16(x));
}

/* The bf16 training attention against a double-precision reference that rounds the same
 * operands to bf16 (q, k, v, dO, P, dS) and against the unrounded one: close to the first,
 * measurably off the second (the rounding acts); stored and recomputed probabilities and
 * 1 or 2 threads give the same bits. Odd sizes: t = 129 (blocks starting at odd rows),
 * head size 9 (a pad column), a sliding window. */
static void attention_bf16_case(int t, int hd, int window)
{
	int b = 2, nh = 4, nkv = 2, grp = nh / nkv;
	size_t nq = (size_t)b * t * nh * hd, nk = (size_t)b * t * nkv * hd;
	float *q = rnd(nq, 40, 1), *k = rnd(nk, 41, 1), *v = rnd(nk, 42, 1), *R = rnd(nq, 43, 1);
	float *att = malloc((size_t)b * nh * t * t * sizeof(float));
	float *o1 = malloc(nq * 4), *o2 = malloc(nq * 4);
	float *g1[3] = {malloc(nq * 4), malloc(nk * 4), malloc(nk * 4)};
	float *g2[3] = {malloc(nq * 4), malloc(nk * 4), malloc(nk * 4)};
	float sc1 = 1.0f / sqrtf((float)hd);
	assert_non_null(O->attention_forward_bf16);
	O->attention_forward_bf16(o1, att, q, k, v, b, t, nh, nkv, hd, sc1, window);
	O->attention_backward_bf16(g1[0], g1[1], g1[2], R, att, q, k, v, b, t, nh, nkv, hd, sc1,
				   window);
	int nthreads = omp_get_max_threads();
	omp_set_num_threads(nthreads > 1 ? 1 : 2);
	O->attention_forward_bf16(o2, NULL, q, k, v, b, t, nh, nkv, hd, sc1, window);
	O->attention_backward_bf16(g2[0], g2[1], g2[2], R, NULL, q, k, v, b, t, nh, nkv, hd, sc1,
				   window);
	omp_set_num_threads(nthreads);
	assert_memory_equal(o1, o2, nq * sizeof(float));
	for (int i = 0; i < 3; i++)
		assert_memory_equal(g1[i], g2[i], (i ? nk : nq) * sizeof(float));
	/* references: r = 0 rounds where the bf16 path does, r = 1 does not */
	double err[2][4] = {{0}}, mx[4] = {0};
	size_t qs = (size_t)nh * hd, ks = (size_t)nkv * hd;
	double *pr = malloc((size_t)t * sizeof(double)), *dp = malloc((size_t)t * sizeof(double));
	for (int r = 0; r < 2; r++) {
		double *ref[4] = {calloc(nq, 8), calloc(nq, 8), calloc(nk, 8), calloc(nk, 8)};
#define RB(x) (r ? (double)(x) : bfr(x))
		for (int bi = 0; bi < b; bi++)
			for (int h = 0; h < nh; h++)
				for (int i = 0; i < t; i++) {
					size_t qo = ((size_t)bi * t + i) * qs + (size_t)h * hd;
					size_t ko = (size_t)bi * t * ks + (size_t)(h / grp) * hd;
					int j0 = window > 0 && i - window + 1 > 0 ? i - window + 1 : 0;
					double m = -1e300, sum = 0, pd = 0;
					for (int j = j0; j <= i; j++) {
						double sc = 0;
						for (int e = 0; e < hd; e++)
							sc += RB(q[qo + e]) * RB(k[ko + (size_t)j * ks + e]);
						pr[j] = sc * sc1;
						m = fmax(m, pr[j]);
					}
					for (int j = j0; j <= i; j++)
						sum += (pr[j] = exp(pr[j] - m));
					for (int j = j0; j <= i; j++) {
						pr[j] /= sum;
						double d = 0, pj = RB((float)pr[j]);
						for (int e = 0; e < hd; e++) {
							size_t kj = ko + (size_t)j * ks + e;
							ref[0][qo + e] += pj * RB(v[kj]);
							d += RB(R[qo + e]) * RB(v[kj]);
							ref[3][kj] += pj * RB(R[qo + e]);
						}
						dp[j] = d;
						pd += pr[j] * d;
					}
					for (int j = j0; j <= i; j++) {
						double ds = RB((float)(pr[j] * (dp[j] - pd) * sc1));
						for (int e = 0; e < hd; e++) {
							size_t kj = ko + (size_t)j * ks + e;
							ref[1][qo + e] += ds * RB(k[kj]);
							ref[2][kj] += ds * RB(q[qo + e]);
						}
					}
				}
#undef RB
		const float *got[4] = {o1, g1[0], g1[1], g1[2]};
		for (int a = 0; a < 4; a++) {
			size_t n = a < 2 ? nq : nk;
			for (size_t i = 0; i < n; i++) {
				mx[a] = fmax(mx[a], fabs(ref[a][i]));
				err[r][a] = fmax(err[r][a], fabs(ref[a][i] - got[a][i]));
			}
			free(ref[a]);
		}
	}
	for (int a = 0; a < 4; a++) {
		if (err[0][a] > 1e-3 * mx[a] || err[1][a] < 2.0 * err[0][a])
			fail_msg("t %d hd %d window %d, output %d: off the rounded reference by %g, "
				 "off the fp32 one by %g (max %g)",
				 t, hd, window, a, err[0][a], err[1][a], mx[a]);
	}
	free(q), free(k), free(v), free(R), free(att), free(o1), free(o2), free(pr), free(dp);
	for (int i = 0; i < 3; i++)
		free(g1[i]), free(g2[i]);
}

/* Whether a fresh process of this test (main answers the probe at once) would run the
 * attention on AMX with FTLAB_NO_AMX set to no_amx (NULL: unset): 1 yes, 0 no, -1 failed. */
static int amx_in_child(const char *no_amx)
{
	pid_t pid = fork();
	if (pid == 0) {
		setenv("FTLAB_TEST_AMX_PROBE", "1", 1);
		if (no_amx)
			setenv("FTLAB_NO_AMX", no_amx, 1);
		else
			unsetenv("FTLAB_NO_AMX");
		execl("/proc/self/exe", "test_ops", (char *)NULL);
		_exit(3);
	}
	int st = 0;
	if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st))
		return -1;
	return WEXITSTATUS(st) == 10 ? 1 : WEXITSTATUS(st) == 11 ? 0 : -1;
}

/* FTLAB_NO_AMX=1 turns the AMX attention off (decided once per process, so each setting
 * is asked of a new one); 0 leaves it as unset. Where the CPU has no AMX all answer no. */
static void test_no_amx_env(void **state)
{
	(void)state;
	int unset = amx_in_child(NULL), off = amx_in_child("1"), zero = amx_in_child("0");
	assert_true(unset >= 0 && off >= 0 && zero >= 0);
	assert_int_equal(off, 0);
	assert_int_equal(zero, unset);
	if (!unset)
		print_message("this CPU runs no AMX: FTLAB_NO_AMX changes nothing here\n");
}

/* Every kernel this CPU has: AMX tiles (where present), the AVX512-BF16 kernel, and the
 * portable one (without bf16 instructions); sizes with full 16 x 32 tiles (SmolLM2's head
 * size 64 over 256 positions) and with tails in every direction. */
static void test_attention_bf16(void **state)
{
	(void)state;
	bool amx = ops_cpu_has_amx();
	for (int pass = 0; pass < (amx ? 2 : 1); pass++) {
		ops_cpu_amx_allow(pass == 0);
		print_message("bf16 attention on %s\n",
			      pass == 0 && amx	      ? "AMX tiles"
			      : ops_cpu_has_bf16() ? "the AVX512-BF16 kernel"
						   : "the portable kernel");
		attention_bf16_case(129, 20, 0);
		attention_bf16_case(129, 20, 50);
		attention_bf16_case(40, 9, 0);
		attention_bf16_case(256, 64, 0);
		attention_bf16_case(47, 36, 0); /* 18 pairs: a k tail of 2 past one full tile */
	}
	ops_cpu_amx_allow(true);
}

static void test_attention(void **state)
{
	(void)state;
	attention_case(1.0f / sqrtf(8.0f), 0);
	attention_case(0.3f, 3); /* a query scale of its own and a sliding window of 3 keys */
	attention_case(0.3f, 1); /* each query sees itself only */
}

/* ---- activations, embedding ---- */

struct act_ctx {
	float *g, *u;
	size_t n;
	int kind; /* 0 swiglu, 1 gelu, 2 geglu */
};

static void act_fwd(void *vc, float *out)
{
	struct act_ctx *c = vc;
	if (c->kind == 1)
		O->gelu_forward(out, c->g, c->n);
	else if (c->kind == 2)
		O->geglu_forward(out, c->g, c->u, c->n);
	else
		O->swiglu_forward(out, c->g, c->u, c->n);
}

static void test_activations(void **state)
{
	(void)state;
	size_t n = 301;
	struct act_ctx c = {rnd(n, 14, 4), rnd(n, 15, 2), n, 0};
	float *R = rnd(n, 16, 1), *dg = malloc(n * sizeof(float)), *du = malloc(n * sizeof(float));
	O->swiglu_backward(dg, du, R, c.g, c.u, n);
	fd_check("swiglu dgate", c.g, n, dg, act_fwd, &c, R, n, 1e-3f, 2e-3);
	fd_check("swiglu dup", c.u, n, du, act_fwd, &c, R, n, 1e-3f, 2e-3);
	c.kind = 1;
	O->gelu_backward(dg, R, c.g, n);
	fd_check("gelu", c.g, n, dg, act_fwd, &c, R, n, 1e-3f, 2e-3);
	c.kind = 2;
	O->geglu_backward(dg, du, R, c.g, c.u, n);
	fd_check("geglu dgate", c.g, n, dg, act_fwd, &c, R, n, 1e-3f, 2e-3);
	fd_check("geglu dup", c.u, n, du, act_fwd, &c, R, n, 1e-3f, 2e-3);
	float o3[1], g3 = 1.0f, u3 = -2.0f;
	O->geglu_forward(o3, &g3, &u3, 1);
	assert_float_equal(o3[0], -2.0f * 0.8411920f, 1e-6);
	/* GELU tanh: known values */
	assert_float_equal(ops_gelu(1.0f), 0.8411920f, 1e-6);
	assert_float_equal(ops_silu(1.0f), 0.7310586f, 1e-6);
	free(c.g);
	free(c.u);
	free(R);
	free(dg);
	free(du);
}

static void test_embedding(void **state)
{
	(void)state;
	int V = 11, C = 70, n = 6, t = 3;
	float *wte = rnd((size_t)V * C, 17, 1), *wpe = rnd((size_t)t * C, 18, 1);
	int32_t tok[6] = {4, 0, 4, 10, 4, 2};
	float *out = malloc((size_t)n * C * sizeof(float));
	struct ops_w we = {.data = wte, .type = GGML_F32, .n = V, .k = C};
	O->embedding_forward(out, tok, NULL, &we, wpe, n, t, C);
	assert_float_equal(out[(size_t)4 * C + 5], wte[(size_t)4 * C + 5] + wpe[(size_t)1 * C + 5], 1e-6);
	float *dout = rnd((size_t)n * C, 19, 1);
	float *dwte = calloc((size_t)V * C, sizeof(float)), *dwpe = calloc((size_t)t * C, sizeof(float));
	O->embedding_backward(dwte, dwpe, dout, tok, NULL, n, t, C);
	/* token 4 appears at rows 0, 2, 4: gradients add */
	assert_float_equal(dwte[(size_t)4 * C + 9],
			   dout[9] + dout[(size_t)2 * C + 9] + dout[(size_t)4 * C + 9], 1e-6);
	assert_float_equal(dwte[(size_t)5 * C], 0.0f, 0);
	assert_float_equal(dwpe[(size_t)2 * C + 1], dout[(size_t)2 * C + 1] + dout[(size_t)5 * C + 1], 1e-6);
	free(wte);
	free(wpe);
	free(out);
	free(dout);
	free(dwte);
	free(dwpe);
}

/* ---- cross-entropy ---- */

struct ce_ctx {
	float *logits;
	int32_t *tg;
	int n, v;
};

static void ce_fwd(void *vc, float *out)
{
	struct ce_ctx *c = vc;
	float *lse = malloc((size_t)c->n * sizeof(float));
	O->crossentropy_forward(out, lse, NULL, c->logits, c->tg, c->n, c->v);
	free(lse);
}

/* exp16 (the AVX-512 ops_expf of the cross-entropy rows and the bf16 attention's softmax)
 * gives ops_expf's bits: on the clamps and past them, infinities, NaN, subnormal results
 * and a million values spread over the whole range. */
static void test_exp16_bits(void **state)
{
	(void)state;
#if defined(__AVX512F__)
	float special[16] = {-INFINITY, INFINITY,    NAN,	  -87.33654f, 88.72283f, -87.4f,
			     88.8f,	0.0f,	     -0.0f,	  -103.9f,    -110.0f,	 1e-30f,
			     88.72282f, -87.33653f, 0.69314718f, -0.69314718f};
	struct rng r;
	rng_seed(&r, 99, 1);
	long bad = 0;
	for (int it = 0; it < 65536; it++) {
		float in[16], got[16];
		for (int l = 0; l < 16; l++)
			in[l] = it == 0 ? special[l] : 200.0f * (rng_uniform_f(&r) - 0.5f);
		_mm512_storeu_ps(got, exp16(_mm512_loadu_ps(in)));
		for (int l = 0; l < 16; l++) {
			float want = ops_expf(in[l]);
			if (memcmp(&want, &got[l], sizeof want) != 0 && bad++ < 5)
				print_message("exp16(%.9g) = %.9g, ops_expf %.9g\n", in[l], got[l],
					      want);
		}
	}
	assert_int_equal(bad, 0);
#else
	skip();
#endif
}

/* The CPU cross-entropy rows (AVX-512 where the CPU has it) against the scalar row
 * functions of ops_math.h: the backward's bits equal ops_crossentropy_row_backward's for
 * the same lse, and lse equals ops_logsumexp_row's up to the order of its double sum
 * (1 ulp of float at most); rows of every length mod 16, a NaN, infinities, -inf everywhere
 * but the target, and a 49152-wide row of SmolLM2's vocabulary. */
static void test_crossentropy_rows(void **state)
{
	(void)state;
	int lens[] = {1, 15, 16, 17, 33, 1000, 49152};
	for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
		int v = lens[li], n = 4;
		float *x = rnd((size_t)n * v, 70 + (uint64_t)li, 8);
		x[(size_t)1 * v + (size_t)(v / 2)] = NAN; /* row 1: one NaN logit */
		for (int i = 0; i < v; i++) /* row 2: -inf but the target's */
			x[(size_t)2 * v + i] = i == v - 1 ? 0.5f : -INFINITY;
		x[(size_t)3 * v] = 90.0f; /* row 3: past ops_expf's clamp after the shift */
		int32_t tg[4] = {0, v - 1, v - 1, v / 3};
		float *loss = malloc((size_t)n * sizeof(float)), *lse = malloc((size_t)n * sizeof(float));
		float *g = malloc((size_t)n * v * sizeof(float)), *want = malloc((size_t)v * sizeof(float));
		O->crossentropy_forward(loss, lse, NULL, x, tg, n, v);
		memcpy(g, x, (size_t)n * v * sizeof(float));
		O->crossentropy_backward(g, lse, tg, n, v, 0.25f, NULL);
		for (int r = 0; r < n; r++) {
			const float *xr = x + (size_t)r * v;
			float ref = ops_logsumexp_row(xr, v);
			if (r == 1) { /* NaN skipped by the max, carried by the sum: as the scalar */
				assert_true(isnan(ref) == isnan(lse[r]));
			} else {
				float ulp = nextafterf(fabsf(ref), INFINITY) - fabsf(ref);
				if (!(fabsf(lse[r] - ref) <= ulp))
					fail_msg("v %d row %d: lse %.9g, scalar %.9g", v, r, lse[r], ref);
			}
			memcpy(want, xr, (size_t)v * sizeof(float));
			ops_crossentropy_row_backward(want, lse[r], tg[r], v, 0.25f);
			if (memcmp(want, g + (size_t)r * v, (size_t)v * sizeof(float)) != 0)
				fail_msg("v %d row %d: the backward differs from the scalar row's bits", v, r);
		}
		free(x), free(loss), free(lse), free(g), free(want);
	}
}

static void test_crossentropy(void **state)
{
	(void)state;
	int n = 5, v = 1000;
	int32_t tg[5] = {3, -1, 999, 0, -100};
	struct ce_ctx c = {rnd((size_t)n * v, 20, 5), tg, n, v};
	float *losses = malloc((size_t)n * sizeof(float)), *lse = malloc((size_t)n * sizeof(float));
	int32_t am[5];
	c.logits[(size_t)3 * v + 17] = c.logits[(size_t)3 * v + 600] = 50.0f; /* a tie: the first */
	long cnt = O->crossentropy_forward(losses, lse, am, c.logits, tg, n, v);
	assert_int_equal(cnt, 3);
	for (int r = 0; r < n; r++) {
		int32_t best = 0;
		for (int i = 1; i < v; i++)
			if (c.logits[(size_t)r * v + i] > c.logits[(size_t)r * v + best])
				best = i;
		assert_int_equal(am[r], tg[r] >= 0 ? best : -1);
	}
	assert_int_equal(am[3], 17);
	for (int r = 0; r < n; r++) {
		double mx = -1e30, s = 0;
		for (int i = 0; i < v; i++)
			mx = fmax(mx, c.logits[(size_t)r * v + i]);
		for (int i = 0; i < v; i++)
			s += exp(c.logits[(size_t)r * v + i] - mx);
		double ref = tg[r] >= 0 ? mx + log(s) - c.logits[(size_t)r * v + tg[r]] : 0.0;
		assert_float_equal(losses[r], ref, 1e-5 * (1 + ref));
	}
	/* d(sum of losses * R_r)/dlogits with R_r = 0.5 on every row */
	float R[5] = {0.5f, 0.5f, 0.5f, 0.5f, 0.5f};
	float *g = malloc((size_t)n * v * sizeof(float));
	memcpy(g, c.logits, (size_t)n * v * sizeof(float));
	O->crossentropy_backward(g, lse, tg, n, v, 0.5f, NULL);
	for (int i = 0; i < v; i++)
		assert_true(g[(size_t)1 * v + i] == 0.0f); /* masked row */
	fd_check("crossentropy", c.logits, (size_t)n * v, g, ce_fwd, &c, R, (size_t)n, 1e-2f, 1e-3);
	/* a weight per row (negative ones too: a preference loss pushes rejected rows down):
	 * d(sum of losses * 0.5 w_r)/dlogits */
	float w[5] = {2.0f, 7.0f, -1.5f, 0.25f, 3.0f}, Rw[5];
	for (int r = 0; r < n; r++)
		Rw[r] = 0.5f * w[r];
	memcpy(g, c.logits, (size_t)n * v * sizeof(float));
	O->crossentropy_backward(g, lse, tg, n, v, 0.5f, w);
	for (int i = 0; i < v; i++)
		assert_true(g[(size_t)1 * v + i] == 0.0f); /* masked rows stay 0 whatever their weight */
	fd_check("crossentropy (row weights)", c.logits, (size_t)n * v, g, ce_fwd, &c, Rw, (size_t)n,
		 1e-2f, 1e-3);
	free(c.logits);
	free(losses);
	free(lse);
	free(g);
}

/* ---- dropout, sums, AdamW ---- */

static void test_dropout_sumsq_adamw(void **state)
{
	(void)state;
	size_t n = 200000;
	float *x = rnd(n, 21, 1), *y1 = malloc(n * sizeof(float)), *y2 = malloc(n * sizeof(float));
	uint8_t *m1 = malloc(n), *m2 = malloc(n);
	omp_set_num_threads(1);
	O->dropout_forward(y1, m1, x, n, 0.25f, 5, 6);
	double s1 = O->sumsq(x, n);
	omp_set_num_threads(2);
	O->dropout_forward(y2, m2, x, n, 0.25f, 5, 6);
	double s2 = O->sumsq(x, n);
	assert_memory_equal(m1, m2, n); /* same mask for any thread count */
	assert_true(s1 == s2);
	size_t kept = 0;
	for (size_t i = 0; i < n; i++) {
		kept += m1[i];
		assert_float_equal(y1[i], m1[i] ? x[i] / 0.75f : 0.0f, 1e-6);
	}
	assert_true(fabs((double)kept / n - 0.75) < 0.01);
	float *dx = calloc(n, sizeof(float));
	O->dropout_backward(dx, x, m1, n, 0.25f);
	assert_float_equal(dx[7], m1[7] ? x[7] / 0.75f : 0.0f, 1e-6);
	/* AdamW step 3 against the formula in double */
	float p = 0.5f, g = -0.2f, m = 0.01f, v = 0.002f;
	double md = 0.9 * 0.01 + 0.1 * -0.2, vd = 0.999 * 0.002 + 0.001 * 0.04;
	double pd = 0.5 - 1e-2 * ((md / (1 - pow(0.9, 3))) / (sqrt(vd / (1 - pow(0.999, 3))) + 1e-8) + 0.1 * 0.5);
	struct ops_adamw_hp h = ops_adamw_prepare(1e-2, 0.9, 0.999, 1e-8, 0.1, 3);
	O->adamw(&p, &g, &m, &v, 1, &h);
	assert_float_equal(p, pd, 1e-6);
	free(x);
	free(y1);
	free(y2);
	free(m1);
	free(m2);
	free(dx);
}

int main(void)
{
	if (getenv("FTLAB_TEST_AMX_PROBE")) /* test_no_amx_env's child */
		return ops_cpu_has_amx() ? 10 : 11;
	O = ops_cpu();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_matmul),
		cmocka_unit_test(test_matmul_small_m),
		cmocka_unit_test(test_matmul_const_b),
		cmocka_unit_test(test_bf16_without_bf16_hardware),
		cmocka_unit_test(test_to_bf16_bits),
		cmocka_unit_test(test_matmul_bf16_many_shapes),
		cmocka_unit_test(test_rmsnorm),
		cmocka_unit_test(test_layernorm),
		cmocka_unit_test(test_rope),
		cmocka_unit_test(test_attention),
		cmocka_unit_test(test_attention_blocks_and_recompute),
		cmocka_unit_test(test_attention_bf16),
		cmocka_unit_test(test_activations),
		cmocka_unit_test(test_embedding),
		cmocka_unit_test(test_crossentropy),
		cmocka_unit_test(test_crossentropy_rows),
		cmocka_unit_test(test_exp16_bits),
		cmocka_unit_test(test_no_amx_env),
		cmocka_unit_test(test_dropout_sumsq_adamw),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
