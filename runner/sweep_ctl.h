/* sweep_ctl: the controller of one sweep. It hands out the sweep's points (grid and random
 * in plan order; bayes suggested from the results so far), takes each run's outcome, and
 * decides early termination (hyperband) from the runs' metric histories. It owns no store
 * and no process: the local runner calls it in the one process that makes decisions, and a
 * cluster launcher can feed it results as they arrive. Not thread-safe. */
#ifndef FTLAB_SWEEP_CTL_H
#define FTLAB_SWEEP_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/diag.h"
#include "runner/sweep.h"
#include "schema/schema.h"

struct sweep_ctl;

/* How a run ended, as the controller counts it. */
enum sweep_outcome {
	SWEEP_RUN_FINISHED, /* finished or cached: its objective is an observation */
	SWEEP_RUN_STOPPED,  /* stopped by early termination: observed with what it measured */
	SWEEP_RUN_FAILED    /* failed or crashed: observed as the worst value (bayes) */
};

/* An early-termination decision, with what it was based on. */
struct sweep_verdict {
	bool checked;     /* the run has passed a band */
	bool stop;        /* stop it now */
	int64_t band;     /* the last band passed: the band-th logged value of the metric */
	double threshold; /* that band's threshold (the metric's own sign) */
	double value;     /* the run's compared value */
	size_t n_at_band; /* runs with a value at the band */
};

/* What a bayes or tpe suggestion was based on (for events and `ftlab show`). */
struct sweep_suggestion {
	bool adaptive;    /* chosen by bayes or tpe (false: a plan point or a restored one) */
	bool tpe;         /* by tpe (else bayes) */
	bool random;      /* bayes' space-filling start, tpe's random start */
	double mean, sd;  /* bayes: predicted objective (its own sign) */
	double ei;        /* bayes: expected improvement */
	double score;     /* tpe: log l(x) - log g(x) */
	size_t n_good;    /* tpe: points in the good group */
	size_t n_obs;     /* bayes: observations it was fitted to; tpe: points it knew */
};

/* Parses the experiment's sweep (expanding grid and random plans, at most max_runs; 0 is
 * the default limit) and early_terminate. *out borrows e. */
int sweep_ctl_create(struct sweep_ctl **out, const struct experiment *e, size_t max_runs,
		     struct diag *d) FT_WUR;
void sweep_ctl_free(struct sweep_ctl *c);

/* The fixed plan of a grid or random sweep (an adaptive sweep's has no points). */
const struct sweep_plan *sweep_ctl_plan(const struct sweep_ctl *c);
/* Whether points are chosen as results arrive (bayes). */
bool sweep_ctl_adaptive(const struct sweep_ctl *c);
/* Runs the sweep has: the plan's size, or an adaptive sweep's samples. */
size_t sweep_ctl_budget(const struct sweep_ctl *c);
/* The early-termination metric ("validation.loss"), or NULL without early termination. */
const char *sweep_ctl_stop_metric(const struct sweep_ctl *c);
/* The objective metric (NULL when none) and its direction. */
const char *sweep_ctl_objective(const struct sweep_ctl *c, bool *maximize);
/* A hash naming this search: the sweep section without samples/run_cap and the base
 * config, so raising the budget (or editing a description or a gate) continues the same
 * sweep (16 hex digits). */
const char *sweep_ctl_key(const struct sweep_ctl *c);

/* Resuming: the point at `index` was handed out by an earlier invocation with these
 * values. It is handed out again (before any new one) so that its run is reused, resumed
 * or rerun. A grid or random plan needs no restore. FT_EINVAL when the values do not
 * belong to this sweep (the point is then ignored by the caller). */
int sweep_ctl_restore(struct sweep_ctl *c, size_t index, const char *params_json,
		      struct diag *d) FT_WUR;

/* The next point to run, or *out = NULL when the sweep has handed out all of them (or a
 * finite bayes space has no untried point left). The point belongs to the controller.
 * Bayes: suggestion k is made from the outcomes known now; points handed out without an
 * outcome count as pending (constant liar). */
int sweep_ctl_next(struct sweep_ctl *c, const struct sweep_point **out,
		   struct diag *d) FT_WUR;
/* Up to n points at once (n calls of sweep_ctl_next); *out_n may be smaller at the end. */
int sweep_ctl_suggest(struct sweep_ctl *c, const struct sweep_point **out, size_t n,
		      size_t *out_n, struct diag *d) FT_WUR;
/* What the suggestion of point `index` was based on. */
struct sweep_suggestion sweep_ctl_suggestion(const struct sweep_ctl *c, size_t index);

/* The run of point `index` ended. objective: its value of the objective metric (its own
 * sign; NAN when it has none, which counts as the worst). */
void sweep_ctl_result(struct sweep_ctl *c, size_t index, enum sweep_outcome outcome,
		      double objective);

/* The run of point `index` has logged `history` (all values of the early-termination
 * metric, in order; non-finite ones are ignored as W&B does). Runs that are not running
 * any more (cached, finished, stopped) are fed too: their histories set the thresholds.
 * For a running run the decision is in *out (never a stop for the others). FT_ENOMEM. */
int sweep_ctl_observe(struct sweep_ctl *c, struct sweep_verdict *out, size_t index,
		      const double *history, size_t n, bool running, struct diag *d) FT_WUR;

#endif
