/* bootstrap: percentile bootstrap confidence intervals for a corpus statistic computed
 * from per-example sufficient statistics (a mean, a ratio such as loss per token, or
 * corpus BLEU/chrF from summed n-gram counts), and for the paired difference of two
 * models scored on the same examples. Deterministic from the seed (common/rng.h). */
#ifndef FTLAB_BOOTSTRAP_H
#define FTLAB_BOOTSTRAP_H

#include <stddef.h>
#include <stdint.h>

#include "common/diag.h"

/* The statistic from the sum of the per-example vectors of n examples. */
typedef double (*boot_agg_fn)(const double *sum, size_t n, void *ud);

/* Per-example statistics: n rows of dim doubles (row-major), and how to aggregate. */
struct boot_stat {
	const double *rows; /* (n, dim) */
	size_t dim;         /* 1..BOOT_DIM_MAX */
	boot_agg_fn agg;
	void *ud;
};
#define BOOT_DIM_MAX 32

struct boot_ci {
	double value;     /* the statistic on all n examples */
	double low, high; /* percentile interval; NAN when resamples == 0 or n == 0 */
};

/* Interval at `level` (e.g. 0.95) from `resamples` resamples of n examples with
 * replacement. Returns 0, FT_EINVAL (bad dim or level), FT_ENOMEM. */
int bootstrap_ci(struct boot_ci *out, const struct boot_stat *s, size_t n, int resamples,
		 double level, uint64_t seed) FT_WUR;

/* Base, tuned and tuned-minus-base over the same resampled example indices. */
int bootstrap_paired(struct boot_ci *out_base, struct boot_ci *out_tuned,
		     struct boot_ci *out_delta, const struct boot_stat *base,
		     const struct boot_stat *tuned, size_t n, int resamples, double level,
		     uint64_t seed) FT_WUR;

/* Percentile of sorted values with linear interpolation (numpy's default). */
double bootstrap_percentile(const double *sorted, size_t n, double q);

/* Ready-made aggregators: the mean of column 0; sum[0] / sum[1] (e.g. loss per token). */
double boot_agg_mean(const double *sum, size_t n, void *ud);
double boot_agg_ratio(const double *sum, size_t n, void *ud);

#endif
