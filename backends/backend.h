/* backend: what executes one run, behind one interface. The runner owns the store and
 * the run directory; a backend trains and evaluates and reports everything through the
 * run_sink callbacks (which the runner batches into SQLite). Backends never include
 * store or runner headers. */
#ifndef FTLAB_BACKEND_H
#define FTLAB_BACKEND_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/diag.h"
#include "schema/config.h"
#include "schema/table.h"

/* Where a backend records what it measures. All callbacks return 0 or an FT_E* code;
 * a non-zero return should end the run. Strings are copied before return.
 * `model` is "base", "tuned" or "delta" (tuned minus base, paired over examples). */
struct run_sink {
	void *ud;
	/* One point of a metric history ("train"/"loss"/step 10/1.23). */
	int (*metric)(void *ud, const char *split, const char *name, int64_t step, double value);
	/* A final result with its confidence interval (NAN bounds when there is none). */
	int (*result)(void *ud, const char *model, const char *split, const char *metric,
		      double value, double ci_low, double ci_high);
	/* One example's prediction; score is the example's primary metric or NAN. */
	int (*prediction)(void *ud, const char *model, const char *split, int64_t example,
			  const char *prompt, const char *reference, const char *output,
			  double score);
	/* level: "info" | "warning" | "error"; kind: a short tag ("nonfinite", "truncated"). */
	int (*event)(void *ud, const char *level, const char *kind, const char *message);
	/* A file written under the run directory (path relative to it, or absolute). */
	int (*artifact)(void *ud, const char *kind, const char *path);
	/* Progress for the terminal and the heartbeat: step of total (total 0 = unknown). */
	void (*progress)(void *ud, int64_t step, int64_t total, double loss);
};

struct run_ctx {
	const struct config *cfg;   /* resolved config of this sweep point */
	const char *experiment;     /* experiment name */
	const char *run_id;
	const char *run_dir;        /* absolute; exists; the backend may write anything here */
	bool resume;                /* continue from run_dir/checkpoint when present */
	int threads;                /* resolved thread count (never 0) */
	/* Set asynchronously by SIGINT/SIGTERM. A backend polls it, checkpoints if it can,
	 * and returns FT_EINTR. */
	volatile sig_atomic_t *stop;
	struct run_sink *sink;
	/* Where runs of this workspace keep the base model's evaluations, so that runs sharing
	 * a base model, examples and evaluation settings evaluate it once (the native engine);
	 * NULL: evaluate the base in this run (ftlab run --force, cluster tasks, tests). */
	const char *base_eval_dir;
};

struct backend {
	enum backend_type type; /* BACKEND_CPU, BACKEND_CUDA or BACKEND_EXEC; backend_name() */
	/* True when this backend can run here (for `auto`); may set a reason. */
	bool (*available)(char *why, size_t why_len);
	/* Runs one sweep point to the end. 0 = finished, FT_EINTR = stopped after a
	 * checkpoint, anything else = failed with the message in d. */
	int (*run)(const struct run_ctx *ctx, struct diag *d);
};

/* Kills (SIGKILL) the child process trees the backends of this process started (the exec
 * trainer's process group), if any. Async-signal-safe: the runner calls it from its
 * second-SIGINT handler before _exit. */
void backend_kill_children(void);

/* The backend's name as backend.type spells it ("cpu", "cuda", "exec"): runs.backend. */
static inline const char *backend_name(const struct backend *b)
{
	return schema_enum_name("backend.type", (int)b->type);
}

/* The backends compiled into this binary (NULL when not built). */
const struct backend *backend_exec(void);
const struct backend *backend_cpu(void);
const struct backend *backend_cuda(void);

#endif
