/* Unit tests for the one-row product (gemv_cpu.c, reached through ops_cpu()->matmul with
 * m = 1 and a transposed weight): against a double-precision reference for odd and
 * decode-shaped sizes (k not a multiple of the vector width, n not a multiple of the row
 * group or block), alpha and beta, a NaN-poisoned output for beta 0, and identical bits
 * for 1-3 threads and for a row computed alone. */
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gemv_odd_sizes),
		cmocka_unit_test(test_gemv_decode_shapes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
