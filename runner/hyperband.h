/* hyperband: W&B's hyperband early-termination rule as a pure function of the runs'
 * metric histories: the bands (from min_iter and eta, or max_iter, s and eta), the
 * threshold of each band, and the continue/stop decision for one running run. It knows
 * nothing of the store or the run loop; the sweep controller (runner/sweep_ctl.h) feeds it. */
#ifndef FTLAB_HYPERBAND_H
#define FTLAB_HYPERBAND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/diag.h"

/* W&B computes 100 bands from min_iter; a band past any history is never reached. */
#define HYPERBAND_MAX_BANDS 100

struct hyperband_spec {
	int64_t min_iter; /* > 0: bands int(min_iter * eta^k), k = 0..99 */
	int64_t max_iter; /* when min_iter is 0: bands int(max_iter / eta^k), k = 1..s, >= 1 */
	int64_t s;
	double eta;       /* > 1; a band keeps the best 1/eta of the runs that reached it */
	bool strict;      /* compare the run's value at the band, not its best value so far */
	bool maximize;    /* the metric's goal */
};

struct hyperband {
	struct hyperband_spec spec;
	int64_t bands[HYPERBAND_MAX_BANDS]; /* ascending; band b = the b-th logged value */
	size_t n_bands;
};

/* Computes the bands. FT_EINVAL (no file position: the caller adds it) when eta <= 1,
 * neither min_iter nor max_iter and s are set, or no band is >= 1. */
int hyperband_init(struct hyperband *out, const struct hyperband_spec *spec,
		   struct diag *d) FT_WUR;

/* One run's history of the metric: its finite values in the order they were logged
 * (borrowed). */
struct hyperband_history {
	const double *values;
	size_t n;
};

struct hyperband_decision {
	bool checked;      /* the run has passed at least one band */
	bool stop;         /* the run is worse than the threshold of the last band it passed */
	int64_t band;      /* that band (its values are the band-th logged ones), or 0 */
	double threshold;  /* the band's threshold, in the metric's own sign */
	double value;      /* the run's compared value (strict: at the band; else its best) */
	size_t n_at_band;  /* runs with a value at that band (the threshold's sample) */
};

/* The decision for runs[self] given every run's history (any state, self included).
 * Only the caller knows whether the run is still running; finished runs are never
 * stopped. FT_ENOMEM when the scratch for the threshold cannot be allocated. */
int hyperband_decide(struct hyperband_decision *out, const struct hyperband *hb,
		     const struct hyperband_history *runs, size_t n_runs, size_t self,
		     struct diag *d) FT_WUR;

/* The threshold of band index k (0-based into hb->bands) over the runs, in the metric's
 * own sign; *out_n is the number of runs with a value there (0: no threshold, *out is
 * +inf for minimize and -inf for maximize). */
int hyperband_threshold(double *out, size_t *out_n, const struct hyperband *hb, size_t k,
			const struct hyperband_history *runs, size_t n_runs,
			struct diag *d) FT_WUR;

#endif
