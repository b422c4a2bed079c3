/* Unit tests for scoring/bootstrap: coverage on synthetic data with a known answer
 * (Bernoulli means and a paired difference), determinism, interpolation, and corpus
 * BLEU resampled from summed statistics. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>

#include "scoring/bootstrap.h"
#include "scoring/metrics.h"
#include "common/rng.h"
#include "common/banned.h"

enum { N = 100, TRIALS = 400, RESAMPLES = 400 };

/* Share of TRIALS data sets (each N Bernoulli(p) draws) whose interval at `level`
 * contains p. */
static double coverage(double p, double level)
{
	double rows[N];
	int hit = 0;
	for (int t = 0; t < TRIALS; t++) {
		struct rng r;
		rng_seed(&r, 1000 + (uint64_t)t, 1);
		for (int i = 0; i < N; i++)
			rows[i] = rng_uniform(&r) < p ? 1.0 : 0.0;
		struct boot_stat s = {rows, 1, boot_agg_mean, NULL};
		struct boot_ci ci;
		assert_int_equal(bootstrap_ci(&ci, &s, N, RESAMPLES, level, (uint64_t)t), 0);
		assert_true(ci.low <= ci.value && ci.value <= ci.high);
		hit += ci.low <= p && p <= ci.high;
	}
	return (double)hit / TRIALS;
}

static void test_coverage_bernoulli(void **state)
{
	(void)state;
	/* Percentile intervals for a mean at n=100 cover close to nominal; the binomial
	 * sd of the estimate over 400 trials is about 0.011, so these ranges can fail. */
	double c95 = coverage(0.3, 0.95);
	print_message("coverage at 95%%: %.3f\n", c95);
	assert_true(c95 >= 0.91 && c95 <= 0.98);
	double c50 = coverage(0.3, 0.50);
	print_message("coverage at 50%%: %.3f\n", c50);
	assert_true(c50 >= 0.42 && c50 <= 0.58);
}

static void test_paired_difference_coverage(void **state)
{
	(void)state;
	/* base ~ Bernoulli(0.4); tuned = base OR Bernoulli(0.25): E[tuned - base] = 0.15. */
	const double delta = 0.6 * 0.25;
	double xb[N], xt[N];
	int hit = 0;
	double wsum_paired = 0, wsum_unpaired = 0;
	for (int t = 0; t < TRIALS; t++) {
		struct rng r;
		rng_seed(&r, 5000 + (uint64_t)t, 2);
		for (int i = 0; i < N; i++) {
			xb[i] = rng_uniform(&r) < 0.4 ? 1.0 : 0.0;
			xt[i] = (xb[i] == 1.0 || rng_uniform(&r) < 0.25) ? 1.0 : 0.0;
		}
		struct boot_stat sb = {xb, 1, boot_agg_mean, NULL}, st = {xt, 1, boot_agg_mean, NULL};
		struct boot_ci cb, ct, cd;
		assert_int_equal(bootstrap_paired(&cb, &ct, &cd, &sb, &st, N, RESAMPLES, 0.95,
						  (uint64_t)t), 0);
		assert_true(fabs(cd.value - (ct.value - cb.value)) < 1e-12);
		hit += cd.low <= delta && delta <= cd.high;
		wsum_paired += cd.high - cd.low;
		wsum_unpaired += sqrt(pow(cb.high - cb.low, 2) + pow(ct.high - ct.low, 2));
	}
	double c = (double)hit / TRIALS;
	print_message("paired coverage: %.3f, mean width %.3f vs unpaired %.3f\n", c,
		      wsum_paired / TRIALS, wsum_unpaired / TRIALS);
	assert_true(c >= 0.91 && c <= 0.98);
	/* Pairing removes the shared variance: the difference interval is much narrower. */
	assert_true(wsum_paired < 0.8 * wsum_unpaired);
}

static void test_deterministic_and_edges(void **state)
{
	(void)state;
	double rows[10] = {1.3, 0.2, 0.9, 1.1, 0.05, 0.4, 0.7, 0.15, 0.8, 0.4};
	struct boot_stat s = {rows, 1, boot_agg_mean, NULL};
	struct boot_ci a, b, c;
	assert_int_equal(bootstrap_ci(&a, &s, 10, 200, 0.95, 7), 0);
	assert_int_equal(bootstrap_ci(&b, &s, 10, 200, 0.95, 7), 0);
	assert_int_equal(bootstrap_ci(&c, &s, 10, 200, 0.95, 8), 0);
	assert_true(a.low == b.low && a.high == b.high);
	assert_true(fabs(a.value - 0.6) < 1e-9);
	assert_true(a.low != c.low || a.high != c.high);
	assert_int_equal(bootstrap_ci(&a, &s, 10, 0, 0.95, 7), 0);
	assert_true(isnan(a.low) && isnan(a.high) && fabs(a.value - 0.6) < 1e-9);
	assert_int_equal(bootstrap_ci(&a, &s, 10, 10, 1.5, 7), FT_EINVAL);
	double sorted[] = {1, 2, 3, 4, 5};
	assert_true(bootstrap_percentile(sorted, 5, 0.0) == 1);
	assert_true(bootstrap_percentile(sorted, 5, 1.0) == 5);
	assert_true(fabs(bootstrap_percentile(sorted, 5, 0.1) - 1.4) < 1e-12);
	/* ratio aggregator: loss per token. */
	double lt[4] = {2.0, 1.0, 6.0, 3.0};
	struct boot_stat sr = {lt, 2, boot_agg_ratio, NULL};
	assert_int_equal(bootstrap_ci(&a, &sr, 2, 50, 0.9, 1), 0);
	assert_true(fabs(a.value - 2.0) < 1e-12 && fabs(a.low - 2.0) < 1e-12);
}

static double agg_bleu(const double *sum, size_t n, void *ud)
{
	(void)ud;
	return metric_from_stats(METRIC_BLEU, sum, n);
}

static void test_corpus_bleu_resampled(void **state)
{
	(void)state;
	const char *h[] = {"the cat sat on the mat", "a quick brown fox", "hello world again",
			   "nothing matches here", "one two three four five"};
	const char *r[] = {"the cat sat on a mat", "the quick brown fox", "hello world",
			   "completely different words", "one two three four five"};
	double rows[5 * 10];
	for (int i = 0; i < 5; i++)
		assert_int_equal(metric_pair_stats(rows + i * 10, METRIC_BLEU, h[i], r[i]), 0);
	struct boot_stat s = {rows, 10, agg_bleu, NULL};
	struct boot_ci ci;
	assert_int_equal(bootstrap_ci(&ci, &s, 5, 300, 0.95, 3), 0);
	double corpus;
	assert_int_equal(metric_corpus(&corpus, METRIC_BLEU, h, r, 5), 0);
	assert_true(fabs(ci.value - corpus) < 1e-9);
	assert_true(ci.low <= corpus && corpus <= ci.high && ci.low < ci.high);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_coverage_bernoulli),
		cmocka_unit_test(test_paired_difference_coverage),
		cmocka_unit_test(test_deterministic_and_edges),
		cmocka_unit_test(test_corpus_bleu_resampled),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
