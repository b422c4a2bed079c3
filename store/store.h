/* store: the SQLite record of experiments, invocations, runs and everything a run
 * measures (docs/store.md). The only file that includes sqlite3.h is
 * store.c. Writes use BEGIN IMMEDIATE and short transactions; metric and prediction
 * writes are buffered and flushed in batches. Several processes may share one store.
 * Thread-safety: one struct store per thread (the heartbeat opens its own). */
#ifndef FTLAB_STORE_H
#define FTLAB_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/diag.h"

/* The schema version this binary writes (PRAGMA user_version). */
#define STORE_SCHEMA_VERSION 4

struct store;

/* Opens (creating when `create`) workspace/ftlab.db, migrating an older schema forward.
 * A missing workspace without `create`, a read-only workspace or file, or a store from a
 * newer ftlab (FT_ENEWER) are errors with a clear message in d. */
int store_open(struct store **out, const char *workspace, bool create, struct diag *d) FT_WUR;
void store_close(struct store *s);
const char *store_workspace(const struct store *s);
/* This machine's name as recorded in runs.host. */
const char *store_host(void);

/* ---- Writing: experiments and invocations ---- */

/* Inserts or updates the experiment row `name`. */
int store_experiment_put(struct store *s, const char *name, const char *spec_json,
			 const char *spec_hash, const char *source_path, struct diag *d) FT_WUR;

/* Git provenance of an invocation (strings may be NULL; is_repo false = not a repository). */
struct store_provenance {
	bool is_repo;
	const char *commit, *branch, *remote, *root;
	bool dirty;
	const char *changed; /* newline-separated changed paths, or NULL */
};

/* Records the start of an `ftlab run`; *out is its id. argv_json is a JSON array. */
int store_invocation_begin(struct store *s, int64_t *out, const char *experiment,
			   const char *argv_json, const struct store_provenance *prov,
			   struct diag *d) FT_WUR;
/* status: "finished" | "failed" | "killed". */
int store_invocation_end(struct store *s, int64_t id, const char *status, struct diag *d) FT_WUR;

/* ---- Runs: claiming and lifecycle ---- */

/* What store_run_claim decided for one sweep point. */
enum store_claim {
	STORE_CLAIM_RUN,     /* this process owns the run: train from scratch (rows reset) */
	STORE_CLAIM_RESUME,  /* this process owns a killed/crashed run: continue it */
	STORE_CLAIM_CACHED,  /* an identical finished (or stopped) run at the same clean commit */
	STORE_CLAIM_BUSY,    /* another live process is running it */
	STORE_CLAIM_DONE     /* already handled by this invocation (another worker) */
};

#define STORE_FLAG_FORCE 1u  /* re-run finished runs */
#define STORE_FLAG_RESUME 2u /* continue killed/crashed runs instead of restarting */

struct store_run_spec {
	const char *id;          /* run id (12 hex) */
	const char *experiment;
	int64_t sweep_index;
	const char *params_json; /* the swept values of this point, JSON object */
	const char *config_json; /* resolved canonical config */
	const char *identity;    /* 64 hex */
	const char *backend;     /* "cpu" | "cuda" | "exec" */
	const char *device;      /* "cpu", "cuda:0", "exec" ... */
	int threads;
	int64_t seed;
	const char *run_dir;
	/* Provenance of the claiming invocation: caching needs the same clean commit. */
	const char *git_commit;  /* NULL outside a repository */
	bool git_dirty;
	/* NULL: this process runs the point (status running, its pid and host). A cluster
	 * launcher's name (launcher.type): a task there will (status queued until its journal
	 * says it started). */
	const char *launcher;
	const char *submission;  /* cluster: the submission directory's name */
};

/* A claim token: 32 hex digits and a NUL. Only the process that claimed a run knows it;
 * every write for the run (heartbeat, metrics, results, predictions, events, artifacts,
 * its end) must present it and is refused once the run is no longer running under it
 * (another process took it over, or it was marked crashed). */
#define STORE_TOKEN_SIZE 33

/* Atomically decides and records who runs `spec` (one BEGIN IMMEDIATE transaction):
 * a claimed run (RUN or RESUME) becomes `running` with this pid, host and a fresh
 * heartbeat (`queued` for a cluster launcher), and token (STORE_TOKEN_SIZE bytes) receives
 * its new claim token ("" for the other decisions, and for a cluster launcher's run, whose
 * task writes a journal that `ftlab sync` merges). Also records the point in
 * invocation_runs (status `cached` for a cache hit). A running row is taken over only
 * when its process is gone: on this host when its pid no longer runs (a stopped or busy
 * process is alive, whatever its heartbeat); never when it runs on another host
 * (store_reap_stale settles those). A queued or running row of a cluster launcher is busy
 * for every claimer until `ftlab sync` has settled it. */
int store_run_claim(struct store *s, enum store_claim *out, char *token, int64_t invocation,
		    const struct store_run_spec *spec, unsigned flags, struct diag *d) FT_WUR;
/* What store_run_claim would decide for spec now, without recording anything (the same
 * decision, so `ftlab plan` shows what `ftlab run` will do). invocation 0: a new one.
 * *out_status is the row's status ("" when there is no row). */
int store_run_preview(struct store *s, enum store_claim *out, char out_status[16],
		      const struct store_run_spec *spec, unsigned flags, struct diag *d) FT_WUR;
/* Ends a claimed run: status "finished" | "failed" | "killed" | "stopped" (by early
 * termination); error may be NULL. Refused (FT_ESTORE, nothing written) without the run's
 * current claim token.
 * Flushes nothing by itself: flush the writer first. */
int store_run_end(struct store *s, const char *run_id, const char *token, int64_t invocation,
		  const char *status, const char *error, struct diag *d) FT_WUR;
/* Heartbeat of a running run (also records step/total). FT_ESTORE "no longer owns" when
 * the run is not running under this token. */
int store_run_heartbeat(struct store *s, const char *run_id, const char *token, int64_t step,
			int64_t total, struct diag *d) FT_WUR;
/* Turns running rows whose process is gone into crashed: on this host when the pid no
 * longer exists (or is another process now), whatever the heartbeat's age; on another
 * host when the heartbeat is older than max_age_s (0: never). *out_n counts them. */
int store_reap_stale(struct store *s, double max_age_s, int *out_n, struct diag *d) FT_WUR;

/* ---- Writing what a run measures (batched) ---- */

/* A per-run buffered writer. Metrics and predictions are buffered and written in one
 * transaction when the buffer holds STORE_BATCH rows or `flush_interval_s` has passed;
 * results, events and artifacts are written at once (they are few). Re-writing the same
 * (run, split, name, step) replaces the value, so a resumed run may log a step again. */
#define STORE_BATCH 4096
struct store_writer;
/* token: the run's claim token; every batch is refused (FT_ESTORE, the first error kept)
 * once the run is no longer running under it. */
int store_writer_open(struct store_writer **out, struct store *s, const char *run_id,
		      const char *token, double flush_interval_s, struct diag *d) FT_WUR;
int store_writer_metric(struct store_writer *w, const char *split, const char *name,
			int64_t step, double value) FT_WUR;
/* model: "base" | "tuned" | "delta"; NAN bounds are stored as NULL. */
int store_writer_result(struct store_writer *w, const char *model, const char *split,
			const char *metric, double value, double ci_low, double ci_high) FT_WUR;
int store_writer_prediction(struct store_writer *w, const char *model, const char *split,
			    int64_t example, const char *prompt, const char *reference,
			    const char *output, double score) FT_WUR;
int store_writer_event(struct store_writer *w, const char *level, const char *kind,
		       const char *message) FT_WUR;
/* path relative to the run directory; bytes and sha256 are computed from run_dir/path. */
int store_writer_artifact(struct store_writer *w, const char *kind, const char *path,
			  const char *run_dir) FT_WUR;
int store_writer_flush(struct store_writer *w) FT_WUR;
/* The first write error (after which writes are dropped), or NULL. */
const struct diag *store_writer_error(const struct store_writer *w);
/* Flushes (errors are reported by store_writer_error before) and frees. */
void store_writer_free(struct store_writer *w);

/* ---- Cluster runs: submission and the merge of their journals (store_cluster.c) ---- */

/* Records that runs[i] is index first_task + i of array job `array_job` (after sbatch
 * answered). */
int store_cluster_submitted(struct store *s, const char *const *run_ids, size_t n,
			    int64_t first_task, const char *array_job, struct diag *d) FT_WUR;
/* How far the merge has read attempt `seq` of a run: byte offset, whether its end record
 * was merged, and its start time. 0, false and NAN for an attempt never read. */
int store_journal_position(struct store *s, const char *run_id, int seq, int64_t *out_offset,
			   bool *out_ended, double *out_started, struct diag *d) FT_WUR;
/* What merging one batch changed. */
struct store_merge_info {
	size_t applied, skipped; /* records merged; records after a later attempt took over */
	const char *status;      /* the run's status after the merge (static string) */
};
struct journal_batch;
/* Merges the records of attempt `seq` of a cluster run and moves its read position to
 * b->end_offset, in one transaction, so that every record is merged once however often
 * the merge runs or is interrupted. Records timed at or after `taken_over` (the start of
 * a later attempt; INFINITY when none) are skipped. A start record makes the run running
 * (and, unless it resumes, clears what earlier attempts measured); an end record sets
 * the final status, the error and the invocation's status of the run. */
int store_journal_merge(struct store *s, const char *run_id, int seq,
			const struct journal_batch *b, double taken_over,
			struct store_merge_info *out, struct diag *d) FT_WUR;
/* Ends a queued or running cluster run whose task is gone without an end record (or
 * could not be submitted): status "failed" | "killed" | "crashed", error says why. A run
 * that is no longer queued or running is left as it is (*out_changed false). */
int store_cluster_end(struct store *s, const char *run_id, const char *status,
		      const char *error, bool *out_changed, struct diag *d) FT_WUR;

/* A cluster run whose last attempt ended (killed, failed, crashed) and whose task Slurm
 * has put back in its queue (preemption, node failure, a requeue at the time limit):
 * queued again, with an event saying why. *out_changed false when its status was not one
 * of those. */
int store_cluster_requeued(struct store *s, const char *run_id, const char *why,
			   bool *out_changed, struct diag *d) FT_WUR;
/* Adds Slurm's verdict (" [Slurm TIMEOUT, job 12_3]") to the error of a run that ended
 * other than finished, once. When `killed` is true, a run that ended failed becomes killed
 * (Slurm ended the task: TIMEOUT, CANCELLED, PREEMPTED; its trainer died of that signal
 * before the task noticed the stop). */
int store_cluster_note(struct store *s, const char *run_id, const char *note, bool killed,
		       struct diag *d) FT_WUR;
/* An event of a cluster run recorded by the submitting host (the sweep controller's
 * early stop, with its verdict). */
int store_cluster_event(struct store *s, const char *run_id, const char *level,
			const char *kind, const char *message, struct diag *d) FT_WUR;

/* ---- Reading (ls, show, compare, reports) ---- */

struct store_experiment {
	char *name, *spec_json, *spec_hash, *source_path;
	double created, updated; /* unix seconds */
	int64_t n_runs;
};

struct store_run {
	char *id, *experiment, *params_json, *config_json, *identity, *status;
	char *host, *backend, *device, *error, *run_dir;
	int64_t invocation, sweep_index, pid, seed, step, total_steps, attempts;
	int threads;
	double heartbeat, started, finished, created; /* unix seconds; 0 = not set */
	/* Provenance of the invocation that last executed the run. */
	char *git_commit, *git_branch, *git_remote; /* NULL outside a repository */
	int git_dirty;                              /* 0, 1, or -1 outside a repository */
	/* Cluster runs (NULL/-1 otherwise): the launcher's name (launcher.type), the
	 * submission directory, the array job id and index, the current attempt's own job id
	 * and Slurm node. A local run's launcher is NULL. */
	char *launcher, *submission, *slurm_job, *slurm_job_id, *node;
	int64_t slurm_task;
};

struct store_result {
	char *model, *split, *metric;
	double value, ci_low, ci_high; /* NAN bounds when none */
};

struct store_metric {
	char *split, *name;
	int64_t step;
	double value, time;
};

struct store_prediction {
	char *model, *split, *prompt, *reference, *output;
	int64_t example;
	double score; /* NAN when none */
};

struct store_artifact {
	char *kind, *path, *sha256;
	int64_t bytes;
};

struct store_event {
	double time;
	char *level, *kind, *message;
};

/* Lists returned through **out belong to the caller: free with the matching _free. */
struct store_experiment_list { struct store_experiment *items; size_t n; };
struct store_run_list { struct store_run *items; size_t n; };
struct store_result_list { struct store_result *items; size_t n; };
struct store_metric_list { struct store_metric *items; size_t n; };
struct store_prediction_list { struct store_prediction *items; size_t n; };
struct store_artifact_list { struct store_artifact *items; size_t n; };
struct store_event_list { struct store_event *items; size_t n; };

int store_experiments(struct store *s, struct store_experiment_list **out, struct diag *d) FT_WUR;
/* Runs ordered by experiment, sweep index; experiment/status NULL = all. */
int store_runs(struct store *s, struct store_run_list **out, const char *experiment,
	       const char *status, struct diag *d) FT_WUR;
/* One run by id or unique id prefix (at least 4 characters). FT_EINVAL when none or
 * ambiguous. */
int store_run_get(struct store *s, struct store_run **out, const char *id_or_prefix,
		  struct diag *d) FT_WUR;
int store_results(struct store *s, struct store_result_list **out, const char *run_id,
		  struct diag *d) FT_WUR;
/* split/name NULL = all; ordered by split, name, step. */
int store_metrics(struct store *s, struct store_metric_list **out, const char *run_id,
		  const char *split, const char *name, struct diag *d) FT_WUR;
int store_predictions(struct store *s, struct store_prediction_list **out, const char *run_id,
		      struct diag *d) FT_WUR;
int store_artifacts(struct store *s, struct store_artifact_list **out, const char *run_id,
		    struct diag *d) FT_WUR;
int store_events(struct store *s, struct store_event_list **out, const char *run_id,
		 struct diag *d) FT_WUR;
/* Statuses recorded for each run of one invocation ("cached", "finished", ...), as a
 * run list whose `status` is the per-invocation status. */
int store_invocation_runs(struct store *s, struct store_run_list **out, int64_t invocation,
			  struct diag *d) FT_WUR;
/* PRAGMA integrity_check; *out_ok false when it reports anything but "ok". */
int store_integrity_check(struct store *s, bool *out_ok, struct diag *d) FT_WUR;

void store_experiment_list_free(struct store_experiment_list *l);
void store_run_free(struct store_run *r);
void store_run_list_free(struct store_run_list *l);
void store_result_list_free(struct store_result_list *l);
void store_metric_list_free(struct store_metric_list *l);
void store_prediction_list_free(struct store_prediction_list *l);
void store_artifact_list_free(struct store_artifact_list *l);
void store_event_list_free(struct store_event_list *l);

/* ---- Sweep points: what each sweep handed out (sweep_ctl), so that an adaptive sweep
 * resumes with the same points and `show` can say how a point was chosen and why it was
 * stopped. Keyed by the sweep's key and index. ---- */
struct store_sweep_point {
	char *sweep_key, *experiment, *run, *params_json;
	char *suggestion_json; /* how bayes chose it, or NULL */
	char *stopped_json;    /* the early-termination verdict that stopped it, or NULL */
	int64_t sweep_index;
	double created;
};
struct store_sweep_point_list { struct store_sweep_point *items; size_t n; };

/* Records (or replaces, keeping a recorded stop) point sweep_index of sweep sweep_key.
 * p->stopped_json is ignored; see store_sweep_point_stop. */
int store_sweep_point_put(struct store *s, const struct store_sweep_point *p,
			  struct diag *d) FT_WUR;
/* Records why early termination stopped the run of a recorded point. */
int store_sweep_point_stop(struct store *s, const char *sweep_key, int64_t sweep_index,
			   const char *stopped_json, struct diag *d) FT_WUR;
/* The points of one sweep by index (sweep_key set), or those that ran `run_id` (newest
 * first). */
int store_sweep_points(struct store *s, struct store_sweep_point_list **out,
		       const char *sweep_key, const char *run_id, struct diag *d) FT_WUR;
void store_sweep_point_list_free(struct store_sweep_point_list *l);

#endif
