/* run: the lifecycle of the runs of one invocation: claim each sweep point in the store,
 * prepare its run directory, drive a backend with a sink that records into the store and
 * the run directory, keep a heartbeat, handle SIGINT/SIGTERM, stop runs the sweep's
 * controller judges behind, and (with jobs > 1) spread the points over forked workers. */
#ifndef FTLAB_RUN_H
#define FTLAB_RUN_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backends/backend.h"
#include "common/diag.h"
#include "runner/provenance.h"
#include "store/store.h"

/* One sweep point, ready to run (borrowed strings and config). */
struct run_point {
	size_t index;
	const char *params_json;    /* swept values, JSON object */
	const struct config *cfg;   /* resolved config of this point */
	char identity[65];
	char id[13];
};

struct run_options {
	bool force, resume;
	int jobs;                      /* worker processes; <= 1 runs in this process */
	const struct backend *backend; /* what runs every point */
	enum backend_type backend_type;  /* the backend.type every point must have (sweeps) */
	const char *device;            /* recorded in runs.device ("cpu", "exec", "cuda:0") */
	int verbosity;                 /* -1 quiet, 0 normal, 1 verbose */
	bool tty, color;               /* progress line on a terminal; colour allowed */
	double heartbeat_s;            /* heartbeat period (0 = 5 s, or $FTLAB_HEARTBEAT) */
};

/* What the invocation did with its points, read back from the store at the end. */
struct run_summary {
	size_t total, finished, failed, killed, crashed, cached, stopped, busy, other;
	int64_t steps_saved; /* training steps the runs stopped early did not train */
	bool interrupted;
};

/* Set by the SIGINT/SIGTERM handler that run_signals_install() puts in place. */
extern volatile sig_atomic_t run_stop_flag;
/* Installs the handlers: the first SIGINT/SIGTERM sets run_stop_flag (the running backend
 * checkpoints and returns, the run becomes killed); a second SIGINT kills the trainer's
 * process group and exits at once with status 130. */
void run_signals_install(void);

/* Runs (or reuses) every point of `points` for invocation `invocation` of `experiment`.
 * Writes the per-invocation outcome into *out. Returns 0 when every point was handled
 * (failed runs are counted, not errors), FT_EINTR when stopped, or an error in d. */
int run_execute_plan(struct run_summary *out, const char *workspace, int64_t invocation,
		     const char *experiment, const struct run_point *points, size_t n,
		     const struct run_options *opt, const struct provenance *prov,
		     struct diag *d) FT_WUR;

/* Runs a sweep under its controller (runner/sweep_ctl.h): points come from the
 * controller as slots free up (one at a time with jobs <= 1, else up to `jobs` forked
 * workers, one per point), each run's outcome and objective go back to it, and the runs'
 * logged values of the early-termination metric reach it as they are logged: this process
 * makes every decision (workers ask over a socket). Points already in the store feed the
 * controller too (cached runs are observations; an adaptive sweep first restores the points
 * it handed out before, so an interrupted sweep continues the same sequence). `only`
 * (a run id prefix, or NULL) runs just the matching point of a fixed plan; the other
 * points' recorded runs still feed early termination. Returns as run_execute_plan. */
struct sweep_ctl;
int run_execute_sweep(struct run_summary *out, const char *workspace, int64_t invocation,
		      const char *experiment, struct sweep_ctl *ctl, const char *only,
		      const struct run_options *opt, const struct provenance *prov,
		      struct diag *d) FT_WUR;

/* The pieces of run_execute_sweep a cluster launcher's controller loop uses too. */
struct sweep_point;
/* Computes the run id of a point the controller handed out and records the point (with
 * how bayes chose it) in sweep_points. FT_EINVAL when its backend.type is not
 * backend_type. */
int run_sweep_point(struct run_point *out, struct store *s, struct sweep_ctl *ctl,
		    const char *experiment, const struct sweep_point *pt,
		    enum backend_type backend_type, struct diag *d) FT_WUR;
/* Feeds the controller what the store knows of a point's run: its history of the
 * early-termination metric, and its outcome and objective when it has ended. */
int run_sweep_feed(struct store *s, struct sweep_ctl *ctl, size_t index, const char *run_id,
		   struct diag *d) FT_WUR;
/* An adaptive sweep: hands the points it handed out before (sweep_points) back to the
 * controller first, so that an interrupted sweep continues the same sequence. */
int run_sweep_restore(struct store *s, struct sweep_ctl *ctl, struct diag *d) FT_WUR;

/* The event text of an early stop and its verdict as JSON (for sweep_points.stopped):
 * the metric split.name and the step of its last logged value. */
struct sweep_verdict;
void run_stop_texts(char *msg, size_t n, char *json, size_t jn, const struct sweep_verdict *v,
		    const char *split, const char *name, int64_t step);

/* The objective of a recorded run: the tuned model's result for `metric` ("test.loss"),
 * else the best value of its logged history, else NAN. */
double run_objective(struct store *s, const char *run_id, const char *metric, bool maximize);

/* A running row of another host whose heartbeat is older than this (seconds) is
 * crashed. On this host a row is crashed only when its process is gone, whatever its
 * heartbeat (a stopped or busy process still owns its run). */
#define RUN_STALE_S 60.0
/* RUN_STALE_S, or $FTLAB_STALE_AFTER (seconds) when set to a positive number (tests use a
 * short window). */
double run_stale_after(void);

/* Opens the workspace's store for a command and turns stale running rows into crashed
 * (a read-only store is opened without reaping). */
int run_store_open(struct store **out, const char *workspace, bool create, struct diag *d) FT_WUR;

/* backend.threads resolved: the configured count, else the CPUs Slurm gave the task
 * (SLURM_CPUS_PER_TASK), else the machine's online cores. */
int run_threads(const struct config *cfg);
/* Writes config.json (canonical) and config.yaml (resolved, schema order) into run_dir. */
int run_write_config(const char *run_dir, const struct config *cfg, struct diag *d) FT_WUR;
/* The backend for backend.type, or FT_EUNSUPP naming why it cannot run here. */
int run_backend_pick(const struct backend **out, enum backend_type type, struct diag *d) FT_WUR;

/* "method.rank=8 seed=1" from a params JSON object (caller frees; NULL on no memory). */
char *run_params_text(const char *params_json);

/* A JSON value as text for tables: strings verbatim, numbers in shortest round-trip form
 * (0.05, not 0.050000000000000003), other values as compact JSON. Caller frees. */
struct json_t;
char *run_json_text(const struct json_t *v);

#endif
