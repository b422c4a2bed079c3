/* sweep: expands an experiment's `sweep:` section into run points: grid (product in
 * declared order, then zip groups), random (samples, seed) with W&B distributions, and
 * `seed` as a dimension. Deterministic on every machine (common/rng.h only). Every point's
 * config is validated as if its values were written in the file. */
#ifndef FTLAB_SWEEP_H
#define FTLAB_SWEEP_H

#include <stddef.h>

#include "common/diag.h"
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

#endif
