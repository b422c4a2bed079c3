/* search_problems: the optimisation problems and random-search yardstick shared by the
 * search-method tests, and reading their fixtures' number arrays (search_problems.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>

#include "common/rng.h"
#include "tests/unit/search_problems.h"
#include "common/banned.h"

double search_bowl(const double *x)
{
	double a = x[0] - 0.3, b = x[1] - 0.7;
	return 4 * a * a + 3 * b * b + 0.3 * (1 - cos(8 * a));
}

double search_mixed(const double *x)
{
	double cat = x[1] == 2 ? 0 : x[1] == 0 ? 1.0 : 2.0;
	double lv = (x[0] - 3) / 5.0, u = x[2] - 0.25;
	return cat + 4 * lv * lv + 4 * u * u;
}

double search_random_best(size_t nd, search_objective f, size_t n, uint64_t seed)
{
	struct rng r;
	rng_seed(&r, seed, 99);
	double best = INFINITY, x[8];
	assert_true(nd <= 8);
	for (size_t k = 0; k < n; k++) {
		for (size_t i = 0; i < nd; i++)
			x[i] = rng_uniform(&r);
		double v = f(x);
		if (v < best)
			best = v;
	}
	return best;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

double search_median(double *v, size_t n)
{
	assert_true(n > 0);
	qsort(v, n, sizeof *v, cmp_double);
	return v[n / 2];
}

double *search_json_doubles(const json_t *a)
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
