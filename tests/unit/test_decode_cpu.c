/* Unit tests for the CPU decode kernels against double-precision references, with
 * identical bits for 1-3 threads:
 * - the one-row product (gemv_cpu.c, reached through ops_cpu()->matmul with m = 1 and a
 *   transposed weight): odd and decode-shaped sizes (k not a multiple of the vector
 *   width, n not a multiple of the row group or block), alpha and beta, a NaN-poisoned
 *   output for beta 0, a row computed alone gives the same bits;
 * - the few-row product (gemm_small_cpu.c, matmul with 2 <= m <= 8 and a transposed
 *   weight): every m, odd n and k, alpha and beta, NaN-poisoned output for beta 0, a
 *   misaligned a, and each row bit-identical to the one-row product of that row;
 * - single-query attention over a KV cache (attn_decode_cpu.c, through
 *   attention_forward with Tq = 1): GQA, head sizes that are not multiples of 16,
 *   different positions per sequence, short (one thread) and long (parallel) contexts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "backends/native/ops/cpu/ops_cpu_internal.h"
#include "backends/native/ops/ops.h"
#include "common/rng.h"
#include "common/banned.h"

static float *rnd(size_t n, uint64_t seed)
{
	struct rng r;
	rng_seed(&r, seed, 41);
	float *x = malloc(n * sizeof(float));
	assert_non_null(x);
	for (size_t i = 0; i < n; i++)
		x[i] = 2.0f * rng_uniform_f(&r) - 1.0f;
	return x;
}

/* c = alpha x W^T + beta c0 in double; also the sum of |terms| for the tolerance */
static void ref_gemv(double *c, double *mag, const float *x, const float *w, const float *c0,
		     int n, int k, float alpha, float beta)
{
	for (int j = 0; j < n; j++) {
		double s = 0, a = 0;
		for (int p = 0; p < k; p++) {
			double t = (double)x[p] * w[(size_t)j * k + p];
			s += t;
			a += fabs(t);
		}
		c[j] = alpha * s + (beta != 0.0f ? beta * (double)c0[j] : 0.0);
		mag[j] = fabs(alpha) * a + fabs(beta * (double)c0[j]);
	}
}

static void check_shape(int n, int k)
{
	const struct ops *o = ops_cpu();
	float *x = rnd((size_t)k, 1000 + (uint64_t)k), *w = rnd((size_t)n * k, 2000 + (uint64_t)n);
	float *c0 = rnd((size_t)n, 3), *c = malloc((size_t)n * sizeof(float));
	float *c1 = malloc((size_t)n * sizeof(float));
	double *ref = malloc((size_t)n * sizeof(double)), *mag = malloc((size_t)n * sizeof(double));
	assert_true(c && c1 && ref && mag);
	const float ab[3][2] = {{1.0f, 0.0f}, {0.5f, 1.0f}, {-2.0f, 0.25f}};
	for (int v = 0; v < 3; v++) {
		float alpha = ab[v][0], beta = ab[v][1];
		ref_gemv(ref, mag, x, w, c0, n, k, alpha, beta);
		for (int j = 0; j < n; j++)
			c[j] = beta == 0.0f ? NAN : c0[j];
		o->matmul(c, x, w, 1, n, k, OPS_TB, alpha, beta);
		/* fp32 error bound: each partial sum adds at most k/8 terms, then ~10 more
		 * roundings; a dropped or doubled term is ~1/k of mag, far above it */
		double u = 6e-8 * (k / 8 + 10);
		for (int j = 0; j < n; j++)
			if (!(fabs(c[j] - ref[j]) <= u * mag[j] + 1e-30))
				fail_msg("n %d k %d alpha %g beta %g: c[%d] = %.9g, reference %.9g",
					 n, k, (double)alpha, (double)beta, j, (double)c[j], ref[j]);
	}
	/* same bits for every thread count, and for each row computed on its own */
	int nthreads = omp_get_max_threads();
	o->matmul(c, x, w, 1, n, k, OPS_TB, 1.0f, 0.0f);
	for (int t = 1; t <= 3; t++) {
		omp_set_num_threads(t);
		memset(c1, 0xff, (size_t)n * sizeof(float));
		o->matmul(c1, x, w, 1, n, k, OPS_TB, 1.0f, 0.0f);
		assert_memory_equal(c1, c, (size_t)n * sizeof(float));
	}
	omp_set_num_threads(nthreads);
	for (int j = 0; j < n; j += 1 + n / 7) {
		float one = NAN;
		ops_cpu_gemv(&one, x, w + (size_t)j * k, 1, k, 1.0f, 0.0f);
		assert_memory_equal(&one, &c[j], sizeof(float));
	}
	free(x);
	free(w);
	free(c0);
	free(c);
	free(c1);
	free(ref);
	free(mag);
}

static void test_gemv_odd_sizes(void **state)
{
	(void)state;
	static const int sizes[][2] = {{1, 1},    {3, 5},    {7, 15},   {5, 16},  {9, 17},
				       {13, 63},  {4, 64},   {65, 65},  {67, 79}, {130, 127},
				       {131, 200}, {257, 333}};
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
		check_shape(sizes[i][0], sizes[i][1]);
}

/* SmolLM2-135M decode shapes: k/v (192 x 576), down (576 x 1536), gate/up, and a slice
 * of the LM head large enough to run on several threads */
static void test_gemv_decode_shapes(void **state)
{
	(void)state;
	check_shape(192, 576);
	check_shape(576, 1536);
	check_shape(1536, 576);
	check_shape(4099, 576);
}

/* c (m, n) = alpha a W^T + beta c0 through matmul, against ref_gemv row by row */
static void check_small(int m, int n, int k)
{
	const struct ops *o = ops_cpu();
	size_t mn = (size_t)m * n;
	/* a starts one float into its buffer: the kernel must not assume alignment */
	float *abuf = rnd((size_t)m * k + 1, 5000 + (uint64_t)(m * 131 + k)), *a = abuf + 1;
	float *w = rnd((size_t)n * k, 6000 + (uint64_t)n), *c0 = rnd(mn, 7);
	float *c = malloc(mn * sizeof(float)), *c1 = malloc(mn * sizeof(float));
	double *ref = malloc((size_t)n * sizeof(double)), *mag = malloc((size_t)n * sizeof(double));
	assert_true(c && c1 && ref && mag);
	const float ab[3][2] = {{1.0f, 0.0f}, {0.5f, 1.0f}, {-2.0f, 0.25f}};
	for (int v = 0; v < 3; v++) {
		float alpha = ab[v][0], beta = ab[v][1];
		for (size_t i = 0; i < mn; i++)
			c[i] = beta == 0.0f ? NAN : c0[i];
		o->matmul(c, a, w, m, n, k, OPS_TB, alpha, beta);
		double u = 6e-8 * (double)(k / 8 + 10); /* as in check_shape */
		for (int i = 0; i < m; i++) {
			ref_gemv(ref, mag, a + (size_t)i * k, w, c0 + (size_t)i * n, n, k, alpha,
				 beta);
			for (int j = 0; j < n; j++) {
				double got = c[(size_t)i * n + j];
				if (!(fabs(got - ref[j]) <= u * mag[j] + 1e-30))
					fail_msg("m %d n %d k %d alpha %g beta %g: c[%d][%d] = %.9g, "
						 "reference %.9g",
						 m, n, k, (double)alpha, (double)beta, i, j, got, ref[j]);
			}
			/* the same bits as the one-row product of row i */
			memcpy(c1, c0 + (size_t)i * n, (size_t)n * sizeof(float));
			if (beta == 0.0f)
				memset(c1, 0xff, (size_t)n * sizeof(float));
			ops_cpu_gemv(c1, a + (size_t)i * k, w, n, k, alpha, beta);
			assert_memory_equal(c1, c + (size_t)i * n, (size_t)n * sizeof(float));
		}
	}
	/* same bits for every thread count */
	int nthreads = omp_get_max_threads();
	o->matmul(c, a, w, m, n, k, OPS_TB, 1.0f, 0.0f);
	for (int t = 1; t <= 3; t++) {
		omp_set_num_threads(t);
		memset(c1, 0xff, mn * sizeof(float));
		o->matmul(c1, a, w, m, n, k, OPS_TB, 1.0f, 0.0f);
		assert_memory_equal(c1, c, mn * sizeof(float));
	}
	omp_set_num_threads(nthreads);
	free(abuf);
	free(w);
	free(c0);
	free(c);
	free(c1);
	free(ref);
	free(mag);
}

static void test_small_m_odd_sizes(void **state)
{
	(void)state;
	static const int sizes[][2] = {{1, 1},   {3, 5},    {7, 15},    {5, 16},  {17, 17},
				       {13, 63}, {33, 79},  {130, 127}, {257, 333}};
	for (int m = 2; m <= 8; m++)
		for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
			check_small(m, sizes[i][0], sizes[i][1]);
}

/* decode shapes with 2, 5 and 8 prompts; the 4099-row slice runs on several threads */
static void test_small_m_decode_shapes(void **state)
{
	(void)state;
	static const int ms[] = {2, 5, 8};
	for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) {
		check_small(ms[i], 192, 576);
		check_small(ms[i], 576, 1536);
		check_small(ms[i], 4099, 576);
	}
}

/* out (B, nh, hd) in double for queries at pos0 against k/v caches (B, tk, nkv, hd) */
static void ref_attention(double *out, const float *q, const float *k, const float *v, int b,
			  int tk, int nh, int nkv, int hd, const int *pos0)
{
	size_t qs = (size_t)nh * hd, ks = (size_t)nkv * hd;
	double *s = malloc((size_t)tk * sizeof(double));
	assert_non_null(s);
	for (int bi = 0; bi < b; bi++)
		for (int h = 0; h < nh; h++) {
			const float *qr = q + bi * qs + (size_t)h * hd;
			const float *kb = k + (size_t)bi * tk * ks + (size_t)(h / (nh / nkv)) * hd;
			const float *vb = v + (size_t)bi * tk * ks + (size_t)(h / (nh / nkv)) * hd;
			double mx = -INFINITY, sum = 0;
			for (int j = 0; j <= pos0[bi]; j++) {
				double d = 0;
				for (int i = 0; i < hd; i++)
					d += (double)qr[i] * kb[(size_t)j * ks + i];
				s[j] = d / sqrt((double)hd);
				mx = s[j] > mx ? s[j] : mx;
			}
			for (int j = 0; j <= pos0[bi]; j++)
				sum += (s[j] = exp(s[j] - mx));
			for (int i = 0; i < hd; i++) {
				double o = 0;
				for (int j = 0; j <= pos0[bi]; j++)
					o += s[j] / sum * vb[(size_t)j * ks + i];
				out[bi * qs + (size_t)h * hd + i] = o;
			}
		}
	free(s);
}

static void check_attention(int b, int tk, int nh, int nkv, int hd, const int *pos0)
{
	const struct ops *o = ops_cpu();
	size_t nq = (size_t)b * nh * hd, nc = (size_t)b * tk * nkv * hd;
	float *q = rnd(nq, 11), *k = rnd(nc, 12), *v = rnd(nc, 13);
	/* scaled so that the softmax is neither uniform nor one-hot */
	for (size_t i = 0; i < nq; i++)
		q[i] *= 2.0f;
	float *out = malloc(nq * sizeof(float)), *o1 = malloc(nq * sizeof(float));
	double *ref = malloc(nq * sizeof(double));
	assert_true(out && o1 && ref);
	ref_attention(ref, q, k, v, b, tk, nh, nkv, hd, pos0);
	o->attention_forward(out, NULL, q, k, v, b, 1, tk, nh, nkv, hd, pos0, 1.0f / sqrtf((float)hd),
			     0);
	for (size_t i = 0; i < nq; i++)
		if (!(fabs(out[i] - ref[i]) <= 2e-6 * (1.0 + fabs(ref[i]))))
			fail_msg("attention b %d nh %d nkv %d hd %d: out[%zu] = %.9g, reference "
				 "%.9g", b, nh, nkv, hd, i, (double)out[i], ref[i]);
	int nthreads = omp_get_max_threads();
	for (int t = 1; t <= 3; t++) {
		omp_set_num_threads(t);
		memset(o1, 0xff, nq * sizeof(float));
		o->attention_forward(o1, NULL, q, k, v, b, 1, tk, nh, nkv, hd, pos0,
				     1.0f / sqrtf((float)hd), 0);
		assert_memory_equal(o1, out, nq * sizeof(float));
	}
	omp_set_num_threads(nthreads);
	free(q);
	free(k);
	free(v);
	free(out);
	free(o1);
	free(ref);
}

static void test_attention_decode(void **state)
{
	(void)state;
	int p1[1] = {0}, p3[3] = {0, 6, 12}, p2[2] = {40, 17};
	check_attention(1, 1, 2, 1, 16, p1);    /* one key: the output is that value */
	check_attention(3, 13, 9, 3, 64, p3);   /* SmolLM2 heads, GQA 3 */
	check_attention(3, 13, 4, 4, 17, p3);   /* masked head tail */
	check_attention(2, 41, 6, 2, 80, p2);   /* 5 vectors per head */
	int pl[4] = {700, 650, 699, 3};         /* long: runs in parallel */
	check_attention(4, 701, 9, 3, 64, pl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gemv_odd_sizes),
		cmocka_unit_test(test_gemv_decode_shapes),
		cmocka_unit_test(test_small_m_odd_sizes),
		cmocka_unit_test(test_small_m_decode_shapes),
		cmocka_unit_test(test_attention_decode),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
