/* sweep: expands an experiment's `sweep:` section into run points: grid (product in
 * declared order, then zip groups), random (samples, seed) with W&B distributions, and
 * `seed` as a dimension. Deterministic on every machine (common/rng.h only). Every point's
 * config is validated as if its values were written in the file. */
#ifndef FTLAB_SWEEP_H
#define FTLAB_SWEEP_H

#include <stdbool.h>
#include <stddef.h>

#include "common/diag.h"
#include "runner/bayes.h"
#include "schema/config.h"
#include "schema/schema.h"

#define SWEEP_DEFAULT_MAX_RUNS 10000

struct sweep_point {
	size_t index;       /* 0-based position in the plan */
	char *params_json;  /* {"method.rank":8,"train.optimizer.lr":0.0002} sorted keys; "{}" */
	struct config *cfg; /* validated config of this point (owned) */
};

struct sweep_plan {
	struct sweep_point *points;
	size_t n;
	/* bayes, tpe: no points yet; they are chosen as results arrive (runner/sweep_ctl.h) */
	bool adaptive;
	enum sweep_method method; /* of an adaptive sweep: SWEEP_BAYES or SWEEP_TPE */
	size_t budget; /* runs of the sweep: n, or the adaptive sweep's samples */
};

/* Expands the experiment's sweep (no sweep: one point with the base config).
 * max_runs 0 means SWEEP_DEFAULT_MAX_RUNS; a larger sweep is FT_EINVAL naming the size
 * and --max-runs. *out belongs to the caller (sweep_plan_free). */
int sweep_expand(struct sweep_plan **out, const struct experiment *e, size_t max_runs,
		 struct diag *d) FT_WUR;
/* The number of runs the sweep expands to, without building configs (saturates at
 * SIZE_MAX). FT_EINVAL for a malformed sweep. */
int sweep_count(size_t *out, const struct experiment *e, struct diag *d) FT_WUR;
void sweep_plan_free(struct sweep_plan *p);

/* ---- The search space of an adaptive (bayes) sweep ----
 * One search dimension per parameter or zip group that varies: a continuous distribution
 * is BAYES_REAL on the scale its draws are uniform on (log for log distributions, the CDF
 * for normal), int_uniform is BAYES_INT, a list of numbers is BAYES_INT by value, other
 * lists, categorical and zip groups are BAYES_CAT. */
struct sweep_space;
/* FT_EINVAL for a malformed sweep or one with nothing to search. *out is the caller's;
 * it borrows e. */
int sweep_space_create(struct sweep_space **out, const struct experiment *e,
		       struct diag *d) FT_WUR;
void sweep_space_free(struct sweep_space *s);
/* The search dimensions (borrowed), *n of them. */
const struct bayes_dim *sweep_space_dims(const struct sweep_space *s, size_t *n);
/* The point of search vector x (one value per search dimension), validated like any
 * sweep point; out->index = index. The caller frees out's fields (params_json, cfg). */
int sweep_space_point(struct sweep_point *out, const struct sweep_space *s, const double *x,
		      size_t index, struct diag *d) FT_WUR;
/* The point recorded with params_json, with exactly its values (FT_EINVAL when they are
 * not values of this sweep). */
int sweep_space_restore(struct sweep_point *out, const struct sweep_space *s,
			const char *params_json, size_t index, struct diag *d) FT_WUR;
/* The search vector of a recorded point from its params JSON; false when the point does
 * not lie in this space (another sweep's run). */
bool sweep_space_locate(double *x, const struct sweep_space *s, const char *params_json);
/* Frees a point's fields (not the point). */
void sweep_point_clear(struct sweep_point *p);

#endif
