/* hyperband_ref: W&B's hyperband stopping rule, the tests' own version (see the header). */
#include "tests/unit/hyperband_ref.h"

#include <stdlib.h>
#include "common/banned.h"

size_t ref_bands(const struct ref_cfg *c, int64_t *out)
{
	size_t n = 0;
	if (c->min_iter > 0) {
		double b = (double)c->min_iter;
		for (int k = 0; k < 100 && b < 1e15; k++, b *= c->eta)
			out[n++] = (int64_t)b;
		return n;
	}
	int64_t desc[100];
	double b = (double)c->max_iter;
	for (int64_t k = 0; k < c->s && k < 100; k++) {
		b = b / c->eta;
		if (b < 1)
			break;
		desc[n++] = (int64_t)b;
	}
	for (size_t i = 0; i < n; i++)
		out[i] = desc[n - 1 - i];
	return n;
}

/* a is better than b for the goal. */
static bool ref_better(const struct ref_cfg *c, double a, double b)
{
	return c->maximize ? a > b : a < b;
}

/* The value at sorted position int(len / eta) of the values at band `band`, "sorted"
 * from best to worst. */
static bool ref_threshold(const struct ref_cfg *c, double **hist, const size_t *len,
			  size_t n_runs, int64_t band, double *out)
{
	size_t m = 0;
	for (size_t i = 0; i < n_runs; i++)
		m += len[i] >= (size_t)band;
	if (m == 0)
		return false;
	size_t pos = (size_t)((1.0 / c->eta) * (double)m);
	for (size_t i = 0; i < n_runs; i++) {
		if (len[i] < (size_t)band)
			continue;
		double v = hist[i][band - 1];
		size_t better = 0, same = 0;
		for (size_t j = 0; j < n_runs; j++) {
			if (len[j] < (size_t)band)
				continue;
			double w = hist[j][band - 1];
			better += ref_better(c, w, v);
			same += w == v;
		}
		if (better <= pos && pos < better + same) {
			*out = v;
			return true;
		}
	}
	return false;
}

struct ref_decision ref_decide(const struct ref_cfg *c, double **hist, const size_t *len,
				      size_t n_runs, size_t self)
{
	struct ref_decision r = {0};
	int64_t bands[100];
	size_t nb = ref_bands(c, bands);
	for (size_t k = 0; k < nb; k++)
		if (bands[k] <= (int64_t)len[self])
			r.band = bands[k];
	if (r.band == 0)
		return r;
	if (!ref_threshold(c, hist, len, n_runs, r.band, &r.threshold))
		abort(); /* the run itself has a value at its band */
	double v = hist[self][r.band - 1];
	if (!c->strict)
		for (size_t i = 0; i < len[self]; i++)
			if (ref_better(c, hist[self][i], v))
				v = hist[self][i];
	r.stop = ref_better(c, r.threshold, v);
	return r;
}

