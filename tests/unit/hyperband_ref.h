/* hyperband_ref: a reference of W&B's hyperband stopping rule for the tests, written
 * independently of runner/hyperband.c: bands as W&B builds them, the threshold by rank
 * counting instead of sorting, goals by flipping comparisons instead of negating values. */
#ifndef FTLAB_HYPERBAND_REF_H
#define FTLAB_HYPERBAND_REF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ref_cfg {
	int64_t min_iter, max_iter, s;
	double eta;
	bool strict, maximize;
};

struct ref_decision {
	bool stop;
	int64_t band;      /* 0: no band passed yet */
	double threshold;
};

/* W&B's bands (at most 100), ascending; returns how many. */
size_t ref_bands(const struct ref_cfg *c, int64_t *out);
/* The decision for run `self` of n_runs histories (hist[i] has len[i] finite values). */
struct ref_decision ref_decide(const struct ref_cfg *c, double **hist, const size_t *len,
			       size_t n_runs, size_t self);

#endif
