/* Unit tests for runner/tpe.c: the Parzen estimator's log density and the good/bad split
 * against Optuna 5.0.0 (tests/reference/tpe_fixture.json), sampling that follows the
 * density, and tpe_suggest: the random start, feasibility, determinism, running and failed
 * points, finite spaces that run out, and that it beats random draws on a small problem. */
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
#include "runner/tpe.h"
#include "common/banned.h"

static json_t *load_fixture(void)
{
	const char *root = getenv("FTLAB_ROOT");
	char *p = path_join(root ? root : ".", "tests/reference/tpe_fixture.json");
	assert_non_null(p);
	json_error_t je;
	json_t *j = json_load_file(p, 0, &je);
	if (!j)
		fail_msg("cannot read %s: %s", p, je.text);
	free(p);
	return j;
}

static double *json_doubles(const json_t *a)
{
	size_t n = json_array_size(a);
	double *v = calloc(n ? n : 1, sizeof *v);
	assert_non_null(v);
	for (size_t i = 0; i < n; i++) {
		const json_t *x = json_array_get(a, i);
		v[i] = json_is_null(x) ? NAN : json_number_value(x);
	}
	return v;
}

static size_t fixture_dims(const json_t *cs, struct bayes_dim *dims)
{
	const json_t *ds = json_object_get(cs, "dims");
	for (size_t j = 0; j < json_array_size(ds); j++) {
		const json_t *o = json_array_get(ds, j);
		const char *k = json_string_value(json_object_get(o, "kind"));
		dims[j].kind = strcmp(k, "real") == 0 ? BAYES_REAL : strcmp(k, "int") == 0
									  ? BAYES_INT : BAYES_CAT;
		dims[j].levels = (size_t)json_integer_value(json_object_get(o, "levels"));
	}
	return json_array_size(ds);
}

static void test_parzen_matches_optuna(void **state)
{
	(void)state;
	json_t *root = load_fixture();
	const json_t *cases = json_object_get(root, "parzen");
	assert_true(json_array_size(cases) >= 5);
	for (size_t c = 0; c < json_array_size(cases); c++) {
		const json_t *cs = json_array_get(cases, c);
		struct bayes_dim dims[8];
		size_t nd = fixture_dims(cs, dims);
		size_t n = (size_t)json_integer_value(json_object_get(cs, "n"));
		size_t m = (size_t)json_integer_value(json_object_get(cs, "m"));
		double *X = json_doubles(json_object_get(cs, "X"));
		double *Q = json_doubles(json_object_get(cs, "Q"));
		double *want = json_doubles(json_object_get(cs, "log_pdf"));
		struct tpe_parzen *p;
		struct diag d;
		diag_init(&d);
		assert_int_equal(tpe_parzen_create(&p, dims, nd, X, n, &d), 0);
		for (size_t i = 0; i < m; i++) {
			double got = tpe_parzen_log_pdf(p, Q + i * nd);
			if (!(fabs(got - want[i]) <= 1e-9 * (1.0 + fabs(want[i]))))
				fail_msg("case %zu point %zu: log_pdf %.15g, optuna %.15g", c, i, got,
					 want[i]);
		}
		tpe_parzen_free(p);
		free(X);
		free(Q);
		free(want);
	}
	json_decref(root);
}

static void test_split_matches_optuna(void **state)
{
	(void)state;
	json_t *root = load_fixture();
	const json_t *cases = json_object_get(root, "split");
	assert_true(json_array_size(cases) >= 4);
	for (size_t c = 0; c < json_array_size(cases); c++) {
		const json_t *cs = json_array_get(cases, c);
		const json_t *st = json_object_get(cs, "states"), *sp = json_object_get(cs, "steps");
		size_t n = json_array_size(st);
		enum tpe_state *s = calloc(n, sizeof *s);
		int64_t *steps = calloc(n, sizeof *steps);
		bool *good = calloc(n, sizeof *good), *want = calloc(n, sizeof *want);
		size_t *order = calloc(n, sizeof *order);
		double *y = json_doubles(json_object_get(cs, "y"));
		assert_true(s && steps && good && want && order);
		for (size_t i = 0; i < n; i++) {
			const char *t = json_string_value(json_array_get(st, i));
			s[i] = strcmp(t, "complete") == 0 ? TPE_COMPLETE : strcmp(t, "pruned") == 0
									? TPE_PRUNED : TPE_RUNNING;
			steps[i] = json_integer_value(json_array_get(sp, i));
		}
		const json_t *g = json_object_get(cs, "good");
		for (size_t k = 0; k < json_array_size(g); k++)
			want[json_integer_value(json_array_get(g, k))] = true;
		tpe_split(good, s, y, steps, n, order);
		for (size_t i = 0; i < n; i++)
			if (good[i] != want[i])
				fail_msg("case %zu: point %zu is %s in ftlab, %s in optuna", c, i,
					 good[i] ? "good" : "bad", want[i] ? "good" : "bad");
		free(s);
		free(steps);
		free(good);
		free(want);
		free(order);
		free(y);
	}
	json_decref(root);
}

/* The density integrates to 1 over [0, 1] (the truncation is accounted for) and the level
 * masses of an integer dimension sum to 1. */
static void test_parzen_normalised(void **state)
{
	(void)state;
	const double Xr[] = {0.02, 0.1, 0.45, 0.9, 0.97};
	const struct bayes_dim real[] = {{BAYES_REAL, 0}};
	struct tpe_parzen *p;
	struct diag d;
	diag_init(&d);
	assert_int_equal(tpe_parzen_create(&p, real, 1, Xr, 5, &d), 0);
	double s = 0, h = 1e-4;
	for (double x = h / 2; x < 1; x += h)
		s += exp(tpe_parzen_log_pdf(p, &x)) * h;
	assert_true(fabs(s - 1) < 1e-6);
	tpe_parzen_free(p);
	const double Xi[] = {0, 3, 4, 19};
	const struct bayes_dim lv[] = {{BAYES_INT, 20}};
	assert_int_equal(tpe_parzen_create(&p, lv, 1, Xi, 4, &d), 0);
	s = 0;
	for (int k = 0; k < 20; k++) {
		double x = k;
		s += exp(tpe_parzen_log_pdf(p, &x));
	}
	assert_true(fabs(s - 1) < 1e-12);
	tpe_parzen_free(p);
}

typedef double (*objective)(const double *x);

static double bowl(const double *x)
{
	double a = x[0] - 0.3, b = x[1] - 0.7;
	return 4 * a * a + 3 * b * b + 0.3 * (1 - cos(8 * a));
}

/* Runs n sequential suggestions; returns the best value. */
static double optimise(const struct bayes_dim *dims, size_t nd, objective f, size_t n,
		       uint64_t seed)
{
	double *X = calloc(n * nd, sizeof *X), *y = calloc(n, sizeof *y), best = INFINITY;
	enum tpe_state *st = calloc(n, sizeof *st);
	assert_true(X && y && st);
	for (size_t k = 0; k < n; k++) {
		struct tpe_info info;
		struct diag d;
		diag_init(&d);
		assert_int_equal(tpe_suggest(X + k * nd, &info, dims, nd, X, st, y, NULL, k, seed,
					     k, &d), 0);
		assert_false(info.exhausted);
		assert_int_equal(info.random, k < TPE_N_STARTUP);
		st[k] = TPE_COMPLETE;
		y[k] = f(X + k * nd);
		if (y[k] < best)
			best = y[k];
	}
	free(X);
	free(y);
	free(st);
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
	enum { SEEDS = 9, BUDGET = 60 };
	double t[SEEDS], rs[SEEDS];
	for (int s = 0; s < SEEDS; s++) {
		t[s] = optimise(dims, 2, bowl, BUDGET, (uint64_t)s);
		rs[s] = random_search(2, bowl, BUDGET, (uint64_t)s);
	}
	qsort(t, SEEDS, sizeof *t, cmp_d);
	qsort(rs, SEEDS, sizeof *rs, cmp_d);
	print_message("bowl, %d evaluations, median best: tpe %.5f, random %.5f\n", BUDGET,
		      t[SEEDS / 2], rs[SEEDS / 2]);
	assert_true(t[SEEDS / 2] < rs[SEEDS / 2] / 2);
}

/* Mixed space: an integer level 0..5, a category of 3 and a real. */
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
	enum { N = 30 };
	double X[N * 3], y[N];
	enum tpe_state st[N];
	for (size_t k = 0; k < N; k++) {
		struct tpe_info info;
		struct diag d;
		diag_init(&d);
		assert_int_equal(tpe_suggest(X + k * 3, &info, dims, 3, X, st, y, NULL, k, 7, k, &d),
				 0);
		double *x = X + k * 3;
		assert_true(x[0] == floor(x[0]) && x[0] >= 0 && x[0] <= 5);
		assert_true(x[1] == 0 || x[1] == 1 || x[1] == 2);
		assert_true(x[2] >= 0 && x[2] <= 1);
		if (!info.random) {
			assert_true(isfinite(info.score));
			assert_int_equal(info.n_good + info.n_bad, k);
			assert_int_equal(info.n_good, (k + 9) / 10);
		}
		/* The same inputs give the same point; another stream another one. */
		double again[3], other[3];
		assert_int_equal(tpe_suggest(again, &info, dims, 3, X, st, y, NULL, k, 7, k, &d), 0);
		assert_memory_equal(again, x, sizeof again);
		assert_int_equal(tpe_suggest(other, &info, dims, 3, X, st, y, NULL, k, 7, k + 100,
					     &d), 0);
		assert_true(memcmp(other, x, sizeof other) != 0);
		st[k] = TPE_COMPLETE;
		y[k] = mixed(x);
	}
	/* After the start, the search concentrates on the best category. */
	int best_cat = 0;
	for (size_t k = N - 10; k < N; k++)
		best_cat += X[k * 3 + 1] == 2;
	assert_true(best_cat >= 6);
}

/* Running and failed points are in the bad group: with the good region occupied by them,
 * the density ratio there drops, and they never count toward the random start. */
static void test_suggest_running_and_failed(void **state)
{
	(void)state;
	const struct bayes_dim dims[] = {{BAYES_REAL, 0}};
	enum { N = 24 };
	double X[N], y[N];
	enum tpe_state st[N];
	for (size_t i = 0; i < 12; i++) {
		X[i] = (double)i / 11.0;
		y[i] = fabs(X[i] - 0.5);
		st[i] = TPE_COMPLETE;
	}
	struct tpe_info info;
	struct diag d;
	diag_init(&d);
	double x, x2;
	assert_int_equal(tpe_suggest(&x, &info, dims, 1, X, st, y, NULL, 12, 1, 12, &d), 0);
	assert_false(info.random);
	assert_int_equal(info.n_good, 2);
	assert_int_equal(info.n_bad, 10);
	double s_free = info.score;
	/* Twelve running points around the good region. */
	for (size_t i = 12; i < N; i++) {
		X[i] = 0.45 + 0.1 * (double)(i - 12) / 11.0;
		st[i] = i % 2 ? TPE_RUNNING : TPE_FAILED;
		y[i] = NAN;
	}
	assert_int_equal(tpe_suggest(&x2, &info, dims, 1, X, st, y, NULL, N, 1, 12, &d), 0);
	assert_int_equal(info.n_good, 2);
	assert_int_equal(info.n_bad, 22);
	assert_true(info.score < s_free);
	/* Only running and failed points: still the random start. */
	for (size_t i = 0; i < 12; i++)
		st[i] = TPE_FAILED;
	assert_int_equal(tpe_suggest(&x2, &info, dims, 1, X, st, y, NULL, N, 1, 12, &d), 0);
	assert_true(info.random);
}

/* A finite space: every point once, then exhausted. */
static void test_suggest_finite_space(void **state)
{
	(void)state;
	const struct bayes_dim dims[] = {{BAYES_INT, 4}, {BAYES_CAT, 3}};
	enum { TOTAL = 12 };
	double X[(TOTAL + 1) * 2], y[TOTAL + 1];
	enum tpe_state st[TOTAL + 1];
	for (size_t k = 0; k < TOTAL; k++) {
		struct tpe_info info;
		struct diag d;
		diag_init(&d);
		assert_int_equal(tpe_suggest(X + k * 2, &info, dims, 2, X, st, y, NULL, k, 3, k, &d),
				 0);
		assert_false(info.exhausted);
		for (size_t j = 0; j < k; j++)
			assert_false(X[j * 2] == X[k * 2] && X[j * 2 + 1] == X[k * 2 + 1]);
		st[k] = k % 3 ? TPE_COMPLETE : TPE_RUNNING;
		y[k] = X[k * 2] + X[k * 2 + 1];
	}
	struct tpe_info info;
	struct diag d;
	diag_init(&d);
	assert_int_equal(tpe_suggest(X + TOTAL * 2, &info, dims, 2, X, st, y, NULL, TOTAL, 3,
				     TOTAL, &d), 0);
	assert_true(info.exhausted);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parzen_matches_optuna),
		cmocka_unit_test(test_split_matches_optuna),
		cmocka_unit_test(test_parzen_normalised),
		cmocka_unit_test(test_suggest_beats_random),
		cmocka_unit_test(test_suggest_feasible_and_deterministic),
		cmocka_unit_test(test_suggest_running_and_failed),
		cmocka_unit_test(test_suggest_finite_space),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
