/* tpe: the tree-structured Parzen estimator with Optuna 5's default settings (joint
 * kernels over all dimensions, 10 random start points, 24 candidates, the best
 * min(ceil(n / 10), 25) runs as the "good" group, running points as "bad"). Pure numerics
 * over the same search space as bayes (runner/bayes.h); the caller maps parameters. */
#ifndef FTLAB_TPE_H
#define FTLAB_TPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/diag.h"
#include "runner/bayes.h"

#define TPE_N_STARTUP 10    /* finished or stopped runs before the estimator leads */
#define TPE_N_CANDIDATES 24 /* draws from the good group's density per suggestion */

/* A point the estimator knows, in sweep-index order. */
enum tpe_state {
	TPE_COMPLETE, /* finished: y is its objective */
	TPE_PRUNED,   /* stopped early: ranked after every finished run, by steps then y */
	TPE_RUNNING,  /* being evaluated: always in the bad group, y unused */
	TPE_FAILED    /* failed or crashed: in the bad group too (Optuna leaves such trials
		       * out; kept here so that the search does not go back there) */
};

struct tpe_info {
	bool random;      /* fewer than TPE_N_STARTUP finished or stopped runs: a random point */
	bool exhausted;   /* a finite space whose every point is observed or pending */
	double score;     /* log l(x) - log g(x) of the chosen point (NAN for random points) */
	size_t n_good, n_bad; /* points in the two groups */
};

/* Suggests the next point (out: one value per dimension, feasible). X: n points
 * (row-major, n_dims each) with their state, objective y (lower is better; a non-finite
 * value ranks last) and, for TPE_PRUNED, steps (how many values of the early-termination
 * metric it logged; more ranks better). In a finite space an observed or pending point is never
 * suggested again; when none is left, info->exhausted. Deterministic in seed and stream.
 * FT_EINVAL for a malformed space, FT_ENOMEM. */
int tpe_suggest(double *out, struct tpe_info *info, const struct bayes_dim *dims,
		size_t n_dims, const double *X, const enum tpe_state *state, const double *y,
		const int64_t *steps, size_t n, uint64_t seed, uint64_t stream,
		struct diag *d) FT_WUR;

/* The good group (good[i] true) of the n points: the best min(ceil(n_fin / 10), 25) of
 * the n_fin finished or stopped ones, finished runs first (exposed for tests). */
void tpe_split(bool *good, const enum tpe_state *state, const double *y,
	       const int64_t *steps, size_t n, size_t *order);

/* ---- The Parzen estimator itself (exposed for tests) ----
 * A mixture with one kernel per observation (weights 1, the oldest ramped down beyond 25)
 * plus a prior kernel of weight 1: REAL dims a normal truncated to [0, 1] with the spread
 * of Optuna's rule (the larger gap to a neighbour, clipped to [1/min(100, n + 2), 1]);
 * INT dims the same on levels -0.5 .. levels - 0.5 with the mass of each level;
 * CAT dims a categorical of 1 at the observed value plus 1/(n + 1) everywhere. */
struct tpe_parzen;

int tpe_parzen_create(struct tpe_parzen **out, const struct bayes_dim *dims, size_t n_dims,
		      const double *X, size_t n, struct diag *d) FT_WUR;
void tpe_parzen_free(struct tpe_parzen *p);
/* Log density (log probability mass over discrete dims) at a feasible point. */
double tpe_parzen_log_pdf(const struct tpe_parzen *p, const double *x);

#endif
