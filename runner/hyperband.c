/* hyperband: bands, thresholds and decisions of W&B's hyperband stopping rule. Values are
 * compared in "lower is better" form (negated for maximize), as W&B does, so that ties
 * and the threshold position match its decisions exactly; reported values are turned
 * back into the metric's own sign. */
#include "runner/hyperband.h"

#include <math.h>
#include <stdlib.h>
#include "common/banned.h"

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int hyperband_init(struct hyperband *out, const struct hyperband_spec *spec, struct diag *d)
{
	out->spec = *spec;
	out->n_bands = 0;
	if (!(spec->eta > 1.0) || !isfinite(spec->eta))
		return diag_set(d, FT_EINVAL, "", 0, 0, "hyperband needs eta > 1, not %g", spec->eta);
	if (spec->min_iter > 0) {
		/* int(min_iter * eta^k) by repeated multiplication, as W&B computes it; bands
		 * past 2^53 are never reached by any history and would overflow int64. */
		double band = (double)spec->min_iter;
		for (size_t k = 0; k < HYPERBAND_MAX_BANDS && band < 9007199254740992.0; k++) {
			out->bands[out->n_bands++] = (int64_t)band;
			band *= spec->eta;
		}
		return 0;
	}
	if (spec->max_iter <= 0 || spec->s <= 0)
		return diag_set(d, FT_EINVAL, "", 0, 0,
				"hyperband needs min_iter, or max_iter and s (both at least 1)");
	double band = (double)spec->max_iter;
	for (int64_t k = 0; k < spec->s && out->n_bands < HYPERBAND_MAX_BANDS; k++) {
		band /= spec->eta;
		if (band < 1.0)
			break;
		out->bands[out->n_bands++] = (int64_t)band;
	}
	if (out->n_bands == 0)
		return diag_set(d, FT_EINVAL, "", 0, 0,
				"hyperband with max_iter %lld and eta %g has no band of at least one "
				"iteration", (long long)spec->max_iter, spec->eta);
	/* Computed descending (truncation keeps the order); W&B sorts them ascending. */
	for (size_t i = 0, j = out->n_bands - 1; i < j; i++, j--) {
		int64_t t = out->bands[i];
		out->bands[i] = out->bands[j];
		out->bands[j] = t;
	}
	return 0;
}

/* "Lower is better" form of a value. */
static double lower(const struct hyperband *hb, double v)
{
	return hb->spec.maximize ? -v : v;
}

/* Threshold in lower-is-better form: the sorted values at the band, at position
 * int(len / eta) (computed as int((1/eta) * len), W&B's float arithmetic). */
static int threshold_lower(double *out, size_t *out_n, const struct hyperband *hb, int64_t band,
			   const struct hyperband_history *runs, size_t n_runs, struct diag *d)
{
	double *vals = malloc((n_runs ? n_runs : 1) * sizeof *vals);
	if (!vals)
		return diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory for %zu hyperband values",
				n_runs);
	size_t n = 0;
	for (size_t i = 0; i < n_runs; i++)
		if (runs[i].n >= (size_t)band)
			vals[n++] = lower(hb, runs[i].values[band - 1]);
	*out_n = n;
	if (n == 0) {
		*out = INFINITY;
	} else {
		qsort(vals, n, sizeof *vals, cmp_double);
		double r = 1.0 / hb->spec.eta;
		size_t at = (size_t)(r * (double)n);
		*out = vals[at < n ? at : n - 1];
	}
	free(vals);
	return 0;
}

int hyperband_threshold(double *out, size_t *out_n, const struct hyperband *hb, size_t k,
			const struct hyperband_history *runs, size_t n_runs, struct diag *d)
{
	double t = INFINITY;
	int rc = threshold_lower(&t, out_n, hb, hb->bands[k], runs, n_runs, d);
	if (rc)
		return rc;
	*out = lower(hb, t);
	return 0;
}

int hyperband_decide(struct hyperband_decision *out, const struct hyperband *hb,
		     const struct hyperband_history *runs, size_t n_runs, size_t self,
		     struct diag *d)
{
	*out = (struct hyperband_decision){0};
	const struct hyperband_history *h = &runs[self];
	/* The last band the run has passed: bands ascend, so the last one that fits. */
	int64_t band = 0;
	for (size_t k = 0; k < hb->n_bands; k++)
		if ((size_t)hb->bands[k] <= h->n)
			band = hb->bands[k];
	if (band <= 0)
		return 0;
	double thr = INFINITY;
	size_t n_at = 0;
	int rc = threshold_lower(&thr, &n_at, hb, band, runs, n_runs, d);
	if (rc)
		return rc;
	double cond;
	if (hb->spec.strict) {
		cond = lower(hb, h->values[band - 1]);
	} else {
		cond = lower(hb, h->values[0]);
		for (size_t i = 1; i < h->n; i++)
			if (lower(hb, h->values[i]) < cond)
				cond = lower(hb, h->values[i]);
	}
	out->checked = true;
	out->band = band;
	out->threshold = lower(hb, thr);
	out->value = lower(hb, cond);
	out->n_at_band = n_at;
	out->stop = cond > thr;
	return 0;
}
