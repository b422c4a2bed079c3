/* Unit tests for runner/bayes.c: the Gaussian process against scikit-learn
 * (tests/reference/gp_fixture.json: log marginal likelihood, its gradient, posterior mean
 * and variance), the gradient against finite differences, length-scale fitting (ARD),
 * expected improvement, and bayes_suggest: feasibility of integer and categorical values,
 * determinism, the random start, constant-liar batches, finite spaces that run out, and
 * that it finds minima faster than random draws on small problems. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/rng.h"
#include "common/util.h"
#include "runner/bayes.h"
#include "common/banned.h"

static char *fixture_path(void)
{
	const char *root = getenv("FTLAB_ROOT");
	return path_join(root ? root : ".", "tests/reference/gp_fixture.json");
}

static double *json_doubles(const json_t *a)
{
	size_t n = json_array_size(a);
	double *v = calloc(n ? n : 1, sizeof *v);
	assert_non_null(v);
	for (size_t i = 0; i < n; i++)
		v[i] = json_number_value(json_array_get(a, i));
	return v;
}

static void close_rel(double got, double want, double tol, const char *what, size_t i)
{
	if (!(fabs(got - want) <= tol * (1.0 + fabs(want))))
		fail_msg("%s[%zu]: got %.15g want %.15g", what, i, got, want);
}

static void test_gp_matches_sklearn(void **state)
{
	(void)state;
	char *p = fixture_path();
	json_error_t je;
	json_t *root = json_load_file(p, 0, &je);
	if (!root)
		fail_msg("cannot read %s: %s", p, je.text);
	free(p);
	const json_t *cases = json_object_get(root, "cases");
	assert_true(json_array_size(cases) >= 3);
	for (size_t c = 0; c < json_array_size(cases); c++) {
		const json_t *cs = json_array_get(cases, c);
		size_t n = (size_t)json_integer_value(json_object_get(cs, "n"));
		size_t de = (size_t)json_integer_value(json_object_get(cs, "de"));
		size_t m = (size_t)json_integer_value(json_object_get(cs, "m"));
		double *X = json_doubles(json_object_get(cs, "X"));
		double *y = json_doubles(json_object_get(cs, "y"));
		double *Xs = json_doubles(json_object_get(cs, "Xs"));
		double *theta = json_doubles(json_object_get(cs, "theta"));
		double *grad_w = json_doubles(json_object_get(cs, "grad"));
		double *mean_w = json_doubles(json_object_get(cs, "mean"));
		double *var_w = json_doubles(json_object_get(cs, "var"));
		double lml, grad[16], mean[16], var[16];
		struct diag d;
		diag_init(&d);
		assert_int_equal(bayes_gp_lml(&lml, grad, X, y, n, de, theta, &d), 0);
		close_rel(lml, json_number_value(json_object_get(cs, "lml")), 1e-9, "lml", c);
		for (size_t i = 0; i < de + 2; i++)
			close_rel(grad[i], grad_w[i], 1e-7, "grad", i);
		assert_int_equal(bayes_gp_predict(mean, var, X, y, n, de, theta, Xs, m, &d), 0);
		for (size_t i = 0; i < m; i++) {
			close_rel(mean[i], mean_w[i], 1e-8, "mean", i);
			assert_true(fabs(var[i] - var_w[i]) < 1e-8);
		}
		free(X);
		free(y);
		free(Xs);
		free(theta);
		free(grad_w);
		free(mean_w);
		free(var_w);
	}
	json_decref(root);
}

static void test_gp_gradient_finite_differences(void **state)
{
	(void)state;
	struct rng r;
	rng_seed(&r, 3, 0);
	enum { N = 15, DE = 4 };
	double X[N * DE], y[N], theta[DE + 2], grad[DE + 2];
	for (size_t i = 0; i < N * DE; i++)
		X[i] = rng_uniform(&r);
	for (size_t i = 0; i < N; i++)
		y[i] = sin(4 * X[i * DE]) + X[i * DE + 1] * X[i * DE + 2] + 0.1 * rng_uniform(&r);
	for (int trial = 0; trial < 5; trial++) {
		for (size_t i = 0; i < DE; i++)
			theta[i] = log(0.1 + 2.0 * rng_uniform(&r));
		theta[DE] = log(0.3 + 2.0 * rng_uniform(&r));
		theta[DE + 1] = log(1e-3 + 0.1 * rng_uniform(&r));
		struct diag d;
		diag_init(&d);
		double f0;
		assert_int_equal(bayes_gp_lml(&f0, grad, X, y, N, DE, theta, &d), 0);
		for (size_t k = 0; k < DE + 2; k++) {
			double h = 1e-5, fp, fm, t = theta[k];
			theta[k] = t + h;
			assert_int_equal(bayes_gp_lml(&fp, NULL, X, y, N, DE, theta, &d), 0);
			theta[k] = t - h;
			assert_int_equal(bayes_gp_lml(&fm, NULL, X, y, N, DE, theta, &d), 0);
			theta[k] = t;
			double fd = (fp - fm) / (2 * h);
			if (fabs(fd - grad[k]) > 1e-5 * (1.0 + fabs(fd)))
				fail_msg("theta[%zu]: analytic %.10g, finite differences %.10g", k,
					 grad[k], fd);
		}
	}
}

/* Automatic relevance: a function of x0 alone gets a much longer length scale for x1. */
static void test_gp_fit_length_scales(void **state)
{
	(void)state;
	struct rng r;
	rng_seed(&r, 11, 0);
	enum { N = 30 };
	double X[N * 2], y[N], theta[4];
	for (size_t i = 0; i < N; i++) {
		X[2 * i] = rng_uniform(&r);
		X[2 * i + 1] = rng_uniform(&r);
		y[i] = sin(6.0 * X[2 * i]);
	}
	struct diag d;
	diag_init(&d);
	assert_int_equal(bayes_gp_fit(theta, X, y, N, 2, 1, &d), 0);
	assert_true(exp(theta[1]) > 4.0 * exp(theta[0]));
	assert_true(exp(theta[0]) > 0.05 && exp(theta[0]) < 1.0);
	/* Noise-free data: a small fitted noise. */
	assert_true(exp(theta[3]) < 1e-2);
	/* The fit beats the starting point (the prior means) on the likelihood. */
	double start[4] = {log(0.5), log(0.5), 0.0, log(1e-3)}, l0, l1;
	assert_int_equal(bayes_gp_lml(&l0, NULL, X, y, N, 2, start, &d), 0);
	assert_int_equal(bayes_gp_lml(&l1, NULL, X, y, N, 2, theta, &d), 0);
	assert_true(l1 > l0);
	/* Deterministic. */
	double again[4];
	assert_int_equal(bayes_gp_fit(again, X, y, N, 2, 1, &d), 0);
	assert_memory_equal(again, theta, sizeof theta);
}

static void test_expected_improvement(void **state)
{
	(void)state;
	/* At the incumbent with sd 1: sd * pdf(0). */
	assert_true(fabs(bayes_expected_improvement(0, 1, 0) - 0.3989422804014327) < 1e-15);
	/* (best - mean) Phi(z) + sd phi(z), z = 1 */
	double want = 1.0 * 0.8413447460685429 + 1.0 * 0.24197072451914337;
	assert_true(fabs(bayes_expected_improvement(-1, 1, 0) - want) < 1e-14);
	/* No uncertainty: the plain improvement, never negative. */
	assert_true(bayes_expected_improvement(-2, 0, 0) == 2.0);
	assert_true(bayes_expected_improvement(2, 0, 0) == 0.0);
	/* Monotone: lower mean or (below the incumbent... any) more sd -> more EI. */
	assert_true(bayes_expected_improvement(0.5, 1, 0) < bayes_expected_improvement(0.4, 1, 0));
	assert_true(bayes_expected_improvement(0.5, 1, 0) < bayes_expected_improvement(0.5, 2, 0));
}

/* ---- suggestions ---- */

typedef double (*objective)(const double *x);

/* A smooth bowl in the unit square with its minimum 0 at (0.3, 0.7), plus a ridge. */
static double bowl(const double *x)
{
	double a = x[0] - 0.3, b = x[1] - 0.7;
	return 4 * a * a + 3 * b * b + 0.3 * (1 - cos(8 * a));
}

/* Runs n sequential bayes suggestions (n_init random first); returns the best value. */
static double optimise(const struct bayes_dim *dims, size_t nd, objective f, size_t n,
		       size_t n_init, uint64_t seed)
{
	double *X = calloc(n * nd, sizeof *X), *y = calloc(n, sizeof *y), best = INFINITY;
	assert_non_null(X);
	assert_non_null(y);
	for (size_t k = 0; k < n; k++) {
		struct bayes_info info;
		struct diag d;
		diag_init(&d);
		assert_int_equal(bayes_suggest(X + k * nd, &info, dims, nd, X, y, k, NULL, 0, n_init,
					       seed, k, &d), 0);
		assert_false(info.exhausted);
		assert_int_equal(info.random, k < n_init);
		y[k] = f(X + k * nd);
		if (y[k] < best)
			best = y[k];
	}
	free(X);
	free(y);
	return best;
}

static double random_search(size_t nd, objective f, size_t n, uint64_t seed)
{
	struct rng r;
	rng_seed(&r, seed, 99);
	double best = INFINITY, x[8];
	for (size_t k = 0; k < n; k++) {
		for (size_t i = 0; i < nd; i++)
			x[i] = rng_uniform(&r);
		double v = f(x);
		if (v < best)
			best = v;
	}
	return best;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static void test_suggest_beats_random(void **state)
{
	(void)state;
	const struct bayes_dim dims[] = {{BAYES_REAL, 0}, {BAYES_REAL, 0}};
	enum { SEEDS = 5, BUDGET = 20 };
	double b[SEEDS], rs[SEEDS];
	for (int s = 0; s < SEEDS; s++) {
		b[s] = optimise(dims, 2, bowl, BUDGET, 4, (uint64_t)s);
		rs[s] = random_search(2, bowl, BUDGET, (uint64_t)s);
	}
	qsort(b, SEEDS, sizeof *b, cmp_d);
	qsort(rs, SEEDS, sizeof *rs, cmp_d);
	print_message("bowl, %d evaluations, median best: bayes %.5f, random %.5f\n", BUDGET,
		      b[SEEDS / 2], rs[SEEDS / 2]);
	assert_true(b[SEEDS / 2] < 0.01);
	assert_true(b[SEEDS / 2] < rs[SEEDS / 2] / 5);
}

/* Mixed space: an integer level, a category and a real; the best is category 2, level 3
 * of 0..5 and u = 0.25. */
static double mixed(const double *x)
{
	double cat = x[1] == 2 ? 0 : x[1] == 0 ? 1.0 : 2.0;
	double lv = (x[0] - 3) / 5.0, u = x[2] - 0.25;
	return cat + 4 * lv * lv + 4 * u * u;
}

static void test_suggest_feasible_and_deterministic(void **state)
{
	(void)state;
	const struct bayes_dim dims[] = {{BAYES_INT, 6}, {BAYES_CAT, 3}, {BAYES_REAL, 0}};
	enum { N = 16 };
	double X[N * 3], y[N];
	for (size_t k = 0; k < N; k++) {
		struct bayes_info info;
		struct diag d;
		diag_init(&d);
		assert_int_equal(bayes_suggest(X + 3 * k, &info, dims, 3, X, y, k, NULL, 0, 5, 42, k,
					       &d), 0);
		const double *x = X + 3 * k;
		assert_true(x[0] == floor(x[0]) && x[0] >= 0 && x[0] <= 5);
		assert_true(x[1] == floor(x[1]) && x[1] >= 0 && x[1] <= 2);
		assert_true(x[2] >= 0 && x[2] <= 1);
		if (!info.random) {
			assert_true(isfinite(info.mean) && info.sd >= 0 && info.ei >= 0);
			assert_int_equal(info.n_obs, k);
		}
		/* The same inputs give the same point; another stream another one. */
		double again[3], other[3];
		assert_int_equal(bayes_suggest(again, &info, dims, 3, X, y, k, NULL, 0, 5, 42, k, &d), 0);
		assert_memory_equal(again, x, sizeof again);
		assert_int_equal(bayes_suggest(other, &info, dims, 3, X, y, k, NULL, 0, 5, 43, k, &d), 0);
		if (k < 5)
			assert_true(memcmp(other, x, sizeof other) != 0);
		y[k] = mixed(x);
	}
	double best = INFINITY;
	for (size_t k = 0; k < N; k++)
		best = y[k] < best ? y[k] : best;
	assert_true(best < 0.1); /* found category 2, level 3 */
}

/* A failed run (NAN) counts as the worst observation: the search leaves its region. */
static void test_suggest_failed_runs(void **state)
{
	(void)state;
	const struct bayes_dim dims[] = {{BAYES_REAL, 0}};
	double X[] = {0.1, 0.5, 0.9, 0.15}, y[] = {1.0, 0.5, 0.2, NAN}, x;
	struct bayes_info info;
	struct diag d;
	diag_init(&d);
	assert_int_equal(bayes_suggest(&x, &info, dims, 1, X, y, 4, NULL, 0, 3, 1, 4, &d), 0);
	assert_false(info.random);
	assert_true(x > 0.5);
	assert_true(info.best == 0.2);
}

/* Constant liar: a pending point is not suggested again, nor its close neighbourhood. */
static void test_suggest_pending(void **state)
{
	(void)state;
	const struct bayes_dim dims[] = {{BAYES_REAL, 0}};
	double X[] = {0.1, 0.3, 0.6, 0.9}, y[4], x1, x2, x3;
	for (int i = 0; i < 4; i++)
		y[i] = (X[i] - 0.45) * (X[i] - 0.45);
	struct bayes_info info;
	struct diag d;
	diag_init(&d);
	assert_int_equal(bayes_suggest(&x1, &info, dims, 1, X, y, 4, NULL, 0, 3, 5, 4, &d), 0);
	assert_true(fabs(x1 - 0.45) < 0.1);
	assert_int_equal(bayes_suggest(&x2, &info, dims, 1, X, y, 4, &x1, 1, 3, 5, 4, &d), 0);
	assert_true(fabs(x2 - x1) > 0.02);
	double both[] = {x1, x2};
	assert_int_equal(bayes_suggest(&x3, &info, dims, 1, X, y, 4, both, 2, 3, 5, 4, &d), 0);
	assert_true(fabs(x3 - x1) > 0.02 && fabs(x3 - x2) > 0.02);
	/* In the random phase the pending points count as taken too (farthest point). */
	double p0 = 0.0, r1;
	assert_int_equal(bayes_suggest(&r1, &info, dims, 1, NULL, NULL, 0, &p0, 1, 3, 5, 0, &d), 0);
	assert_true(info.random);
	assert_true(r1 > 0.8);
}

/* A finite space: every point once, then exhausted; never a repeat. */
static void test_suggest_finite_space(void **state)
{
	(void)state;
	const struct bayes_dim dims[] = {{BAYES_INT, 3}, {BAYES_CAT, 2}};
	double X[6 * 2], y[6];
	for (size_t k = 0; k < 6; k++) {
		struct bayes_info info;
		struct diag d;
		diag_init(&d);
		assert_int_equal(bayes_suggest(X + 2 * k, &info, dims, 2, X, y, k, NULL, 0, 2, 9, k,
					       &d), 0);
		assert_false(info.exhausted);
		for (size_t j = 0; j < k; j++)
			assert_false(X[2 * j] == X[2 * k] && X[2 * j + 1] == X[2 * k + 1]);
		y[k] = X[2 * k] + X[2 * k + 1];
	}
	double x[2];
	struct bayes_info info;
	struct diag d;
	diag_init(&d);
	assert_int_equal(bayes_suggest(x, &info, dims, 2, X, y, 6, NULL, 0, 2, 9, 6, &d), 0);
	assert_true(info.exhausted);
	/* Pending points count: 5 observed + 1 pending also fills it. */
	assert_int_equal(bayes_suggest(x, &info, dims, 2, X, y, 5, X + 10, 1, 2, 9, 6, &d), 0);
	assert_true(info.exhausted);
	/* Malformed spaces. */
	const struct bayes_dim bad[] = {{BAYES_INT, 1}};
	assert_int_equal(bayes_suggest(x, &info, bad, 1, NULL, NULL, 0, NULL, 0, 2, 9, 0, &d),
			 FT_EINVAL);
	diag_init(&d);
	assert_int_equal(bayes_suggest(x, &info, dims, 0, NULL, NULL, 0, NULL, 0, 2, 9, 0, &d),
			 FT_EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gp_matches_sklearn),
		cmocka_unit_test(test_gp_gradient_finite_differences),
		cmocka_unit_test(test_gp_fit_length_scales),
		cmocka_unit_test(test_expected_improvement),
		cmocka_unit_test(test_suggest_beats_random),
		cmocka_unit_test(test_suggest_feasible_and_deterministic),
		cmocka_unit_test(test_suggest_failed_runs),
		cmocka_unit_test(test_suggest_pending),
		cmocka_unit_test(test_suggest_finite_space),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
