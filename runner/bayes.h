/* bayes: Bayesian optimisation over a box of swept parameters: a Gaussian process with a
 * Matern 5/2 kernel (one fitted length scale per encoded coordinate, fitted signal and
 * noise variances) and expected improvement, maximised over seeded candidate points.
 * Pure numerics: the caller maps parameters to and from this module's space. */
#ifndef FTLAB_BAYES_H
#define FTLAB_BAYES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/diag.h"

/* A dimension of the search space. A point holds one double per dimension:
 *   BAYES_REAL  u in [0, 1] (the caller maps log distributions through log, normal
 *               through its CDF, so that equal steps of u are equal steps of prior mass);
 *   BAYES_INT   a level index 0..levels-1 (integers, ordered lists), placed at
 *               index / (levels - 1) for the kernel;
 *   BAYES_CAT   a category index 0..levels-1, one-hot encoded for the kernel (no order).
 * Candidates are rounded to feasible values before they are scored, so the process only
 * ever sees points that can be run. */
enum bayes_kind { BAYES_REAL, BAYES_INT, BAYES_CAT };

struct bayes_dim {
	enum bayes_kind kind;
	size_t levels; /* BAYES_INT and BAYES_CAT: at least 2 */
};

/* What bayes_suggest did. Values are in the objective's units, lower is better. */
struct bayes_info {
	bool random;     /* fewer than n_init observations: a space-filling random point */
	bool exhausted;  /* a finite space whose every point is observed or pending: no point */
	double mean, sd; /* the process's prediction at the point (NAN for random points) */
	double ei;       /* its expected improvement over the best observation */
	double best;     /* the best observation */
	size_t n_obs;    /* observations the process was fitted to */
};

/* Suggests the next point (out: one value per dimension, feasible).
 * X: n_obs points (row-major, n_dims each), y: their objective values, lower is better;
 * a non-finite y (a failed run) counts as the worst finite one. pending: points being
 * evaluated, which enter as observations of the mean objective ("constant liar") so that
 * several suggestions made before any result spread out. Fewer than n_init finite
 * observations: the farthest of 64 random points from all observed and pending ones.
 * Deterministic: the same inputs, seed and stream give the same point. Never suggests an
 * observed or pending point of a finite space; when none is left, info->exhausted.
 * FT_EINVAL for a malformed space, FT_ENOMEM. Thread-safe (no shared state). */
int bayes_suggest(double *out, struct bayes_info *info, const struct bayes_dim *dims,
		  size_t n_dims, const double *X, const double *y, size_t n_obs,
		  const double *pending, size_t n_pending, size_t n_init, uint64_t seed,
		  uint64_t stream, struct diag *d) FT_WUR;

/* ---- The Gaussian process itself (exposed for tests) ----
 * Inputs are encoded coordinates in [0, 1]^de. theta (de + 2 values): the logs of the
 * de length scales, of the signal variance and of the noise variance:
 *   k(a, b) = sf2 (1 + sqrt5 r + 5/3 r^2) exp(-sqrt5 r),  r^2 = sum_i ((a_i - b_i) / l_i)^2
 * plus sn2 on the diagonal. */

/* Log marginal likelihood of y (n values, used as given) and, when grad is not NULL, its
 * gradient with respect to theta. FT_ERUN when the kernel matrix is not positive
 * definite. */
int bayes_gp_lml(double *out, double *grad, const double *X, const double *y, size_t n,
		 size_t de, const double *theta, struct diag *d) FT_WUR;

/* Posterior mean and variance of the latent function (noise excluded) at m points Xs. */
int bayes_gp_predict(double *mean, double *var, const double *X, const double *y, size_t n,
		     size_t de, const double *theta, const double *Xs, size_t m,
		     struct diag *d) FT_WUR;

/* Fits theta (maximum a posteriori: the log marginal likelihood plus weak log-normal
 * priors, within bounds) from deterministic starting points drawn with seed. */
int bayes_gp_fit(double *theta, const double *X, const double *y, size_t n, size_t de,
		 uint64_t seed, struct diag *d) FT_WUR;

/* Expected improvement below `best` of a normal prediction (mean, sd). */
double bayes_expected_improvement(double mean, double sd, double best);

#endif
