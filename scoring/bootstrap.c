/* bootstrap: resample example indices with replacement, sum the chosen rows, aggregate,
 * and take percentiles of the aggregated values. The paired variant draws one index set
 * per resample and applies it to both models. */
#include "scoring/bootstrap.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "common/banned.h"

double boot_agg_mean(const double *sum, size_t n, void *ud)
{
	(void)ud;
	return n ? sum[0] / (double)n : NAN;
}

double boot_agg_ratio(const double *sum, size_t n, void *ud)
{
	(void)n;
	(void)ud;
	return sum[1] != 0 ? sum[0] / sum[1] : NAN;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	/* NaN sorts last so percentiles of finite values stay meaningful. */
	if (isnan(x) || isnan(y))
		return isnan(x) - isnan(y);
	return (x > y) - (x < y);
}

double bootstrap_percentile(const double *sorted, size_t n, double q)
{
	if (n == 0)
		return NAN;
	double h = (double)(n - 1) * q;
	size_t lo = (size_t)floor(h);
	if (lo >= n - 1)
		return sorted[n - 1];
	return sorted[lo] + (h - (double)lo) * (sorted[lo + 1] - sorted[lo]);
}

static double full_value(const struct boot_stat *s, size_t n)
{
	double sum[BOOT_DIM_MAX] = {0};
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < s->dim; j++)
			sum[j] += s->rows[i * s->dim + j];
	return s->agg(sum, n, s->ud);
}

static void finish(struct boot_ci *out, double *vals, size_t b, double level)
{
	qsort(vals, b, sizeof *vals, cmp_double);
	double a = (1.0 - level) / 2.0;
	out->low = bootstrap_percentile(vals, b, a);
	out->high = bootstrap_percentile(vals, b, 1.0 - a);
}

/* One routine for both: with tuned == NULL only base is resampled. */
static int run(struct boot_ci *ob, struct boot_ci *ot, struct boot_ci *od,
	       const struct boot_stat *base, const struct boot_stat *tuned, size_t n,
	       int resamples, double level, uint64_t seed)
{
	if (!base || base->dim == 0 || base->dim > BOOT_DIM_MAX || !base->agg ||
	    (tuned && (tuned->dim == 0 || tuned->dim > BOOT_DIM_MAX || !tuned->agg)) ||
	    !(level > 0 && level < 1) || resamples < 0)
		return FT_EINVAL;
	ob->value = n ? full_value(base, n) : NAN;
	ob->low = ob->high = NAN;
	if (tuned) {
		ot->value = n ? full_value(tuned, n) : NAN;
		od->value = ot->value - ob->value;
		ot->low = ot->high = od->low = od->high = NAN;
	}
	if (resamples == 0 || n == 0)
		return 0;
	size_t b = (size_t)resamples;
	double *vb = malloc(b * sizeof *vb), *vt = malloc(b * sizeof *vt),
	       *vd = malloc(b * sizeof *vd);
	if (!vb || !vt || !vd) {
		free(vb);
		free(vt);
		free(vd);
		return FT_ENOMEM;
	}
	struct rng r;
	rng_seed(&r, seed, 0x626f6f74 /* "boot" */);
	for (size_t k = 0; k < b; k++) {
		double sb[BOOT_DIM_MAX] = {0}, st[BOOT_DIM_MAX] = {0};
		for (size_t i = 0; i < n; i++) {
			size_t idx = (size_t)rng_below(&r, n);
			const double *rb = base->rows + idx * base->dim;
			for (size_t j = 0; j < base->dim; j++)
				sb[j] += rb[j];
			if (tuned) {
				const double *rt = tuned->rows + idx * tuned->dim;
				for (size_t j = 0; j < tuned->dim; j++)
					st[j] += rt[j];
			}
		}
		vb[k] = base->agg(sb, n, base->ud);
		if (tuned) {
			vt[k] = tuned->agg(st, n, tuned->ud);
			vd[k] = vt[k] - vb[k];
		}
	}
	finish(ob, vb, b, level);
	if (tuned) {
		finish(ot, vt, b, level);
		finish(od, vd, b, level);
	}
	free(vb);
	free(vt);
	free(vd);
	return 0;
}

int bootstrap_ci(struct boot_ci *out, const struct boot_stat *s, size_t n, int resamples,
		 double level, uint64_t seed)
{
	return run(out, NULL, NULL, s, NULL, n, resamples, level, seed);
}

int bootstrap_paired(struct boot_ci *out_base, struct boot_ci *out_tuned,
		     struct boot_ci *out_delta, const struct boot_stat *base,
		     const struct boot_stat *tuned, size_t n, int resamples, double level,
		     uint64_t seed)
{
	if (!tuned)
		return FT_EINVAL;
	return run(out_base, out_tuned, out_delta, base, tuned, n, resamples, level, seed);
}
