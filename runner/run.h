/* run: the lifecycle of the runs of one invocation: claim each sweep point in the store,
 * prepare its run directory, drive a backend with a sink that records into the store and
 * the run directory, keep a heartbeat, handle SIGINT/SIGTERM, and (with jobs > 1) spread
 * the points over forked worker processes that claim from the same list. */
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
	const char *device;            /* recorded in runs.device ("cpu", "exec", "cuda:0") */
	int verbosity;                 /* -1 quiet, 0 normal, 1 verbose */
	bool tty, color;               /* progress line on a terminal; colour allowed */
	double heartbeat_s;            /* heartbeat period (0 = 5 s) */
};

/* What the invocation did with its points, read back from the store at the end. */
struct run_summary {
	size_t total, finished, failed, killed, crashed, cached, busy, other;
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

/* A running row whose heartbeat is older than this (seconds) is crashed, on any host. */
#define RUN_STALE_S 60.0

/* Opens the workspace's store for a command and turns stale running rows into crashed
 * (a read-only store is opened without reaping). */
int run_store_open(struct store **out, const char *workspace, bool create, struct diag *d) FT_WUR;

/* "method.rank=8 seed=1" from a params JSON object (caller frees; NULL on no memory). */
char *run_params_text(const char *params_json);

/* A JSON value as text for tables: strings verbatim, numbers in shortest round-trip form
 * (0.05, not 0.050000000000000003), other values as compact JSON. Caller frees. */
struct json_t;
char *run_json_text(const struct json_t *v);

#endif
