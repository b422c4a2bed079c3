/* cluster: an experiment's runs as Slurm array tasks, seen from the submitting host. A
 * session claims points and submits them as job arrays (one per cluster_submit), merges
 * the journals the tasks write into their run directories (tasks never open ftlab.db),
 * follows Slurm's queue, settles runs whose task is gone, and cancels runs. `ftlab run
 * --launcher slurm` waits on a session, `ftlab sync` and `ftlab cancel` open one on what
 * is not settled yet, and an adaptive sweep's controller submits points one array at a
 * time and reads every merged record through cluster_poll's callback. Not thread-safe. */
#ifndef FTLAB_CLUSTER_H
#define FTLAB_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/diag.h"
#include "runner/provenance.h"
#include "runner/run.h"
#include "schema/config.h"
#include "store/journal.h"

struct cluster; /* opaque */

/* The workspace's directory of submissions (WORKSPACE/slurm/<submission>/). */
#define CLUSTER_SUBMISSIONS "slurm"

struct cluster_options {
	const char *workspace;
	int64_t invocation;           /* the submitting `ftlab run`; 0 for sync and cancel */
	const char *experiment;       /* name; NULL: every experiment (sync without one) */
	const char *experiment_path;  /* the experiment file (submit only) */
	const struct config_launcher *launcher; /* submit only */
	const struct provenance *prov; /* submit only; NULL outside a repository */
	const char *backend, *device; /* recorded when a point is claimed */
	bool force, resume;           /* as for local runs */
	int verbosity;                /* -1 quiet, 0 normal, 1 verbose */
	bool tty, color;              /* a progress line on a terminal */
	double grace_s;               /* how long a task may be gone before its journal ends
					 (shared file systems lag); 0 = 5 s */
};

int cluster_open(struct cluster **out, const struct cluster_options *o, struct diag *d) FT_WUR;
void cluster_free(struct cluster *c);

/* Claims the points like a local run (cached, busy and already-done points are skipped
 * and reported), freezes each claimed run's resolved config in its run directory, writes
 * the submission directory (manifest.json, the batch script, logs/) under
 * WORKSPACE/slurm/, and submits one job array for the claimed runs. *out_n counts them
 * (0: nothing submitted). When sbatch refuses, the claimed runs end failed with its
 * message and the error is returned. */
int cluster_submit(struct cluster *c, const struct run_point *pts, size_t n, size_t *out_n,
		   struct diag *d) FT_WUR;

/* Follows every cluster run of the session's experiment (or all) that is not settled:
 * queued or running in the store, or with journal records not merged yet. */
int cluster_follow_unsettled(struct cluster *c, struct diag *d) FT_WUR;

/* Called for each journal record as it is merged (metric histories as they arrive,
 * results, the end of an attempt), and once per run when it is settled (rec NULL; status
 * is the run's final status). */
typedef void (*cluster_record_fn)(void *ud, const char *run_id, const struct journal_rec *rec,
				  const char *status);

/* One round: reads Slurm's queue when due (every 1 s, slower while nothing changes),
 * merges new journal records of the followed runs, requeued runs become queued again,
 * and runs whose task is gone are settled: from their journal's end record, else from
 * Slurm's state or its last words in the task's output (with state and job id in the
 * error). Prints progress per the options. fn may be NULL. */
int cluster_poll(struct cluster *c, cluster_record_fn fn, void *ud, struct diag *d) FT_WUR;
/* cluster_poll, then more polls while a run waits for its grace period or for a fresh
 * read of the queue, for at most max_s seconds: what `ftlab sync` does once. */
int cluster_sync(struct cluster *c, cluster_record_fn fn, void *ud, double max_s,
		 struct diag *d) FT_WUR;
/* True when every followed run is settled. */
bool cluster_settled(const struct cluster *c);
/* True when some followed run waits for the grace period (its task is gone but its
 * journal has not ended yet). */
bool cluster_waiting(const struct cluster *c);

/* Cancels the tasks of the followed runs (all, or the one run_id) with scancel; a run
 * that has not started yet ends killed at once, a running one records its own end. */
int cluster_cancel(struct cluster *c, const char *run_id, size_t *out_n, struct diag *d) FT_WUR;

/* True when this session follows run_id (it submitted the run, or follows it unsettled). */
bool cluster_following(const struct cluster *c, const char *run_id);
/* The workspace's store this session opened (for the sweep controller's records). */
struct store *cluster_store(struct cluster *c);
/* Stops one followed run early (the sweep controller's early termination): its task gets
 * SIGUSR2 through scancel, checkpoints, and ends the run `stopped`. FT_EINVAL when the
 * run is not followed or not running. */
int cluster_stop_run(struct cluster *c, const char *run_id, struct diag *d) FT_WUR;

/* An adaptive sweep (bayes, or early termination) with this process as its controller:
 * restores the points an earlier invocation handed out (bayes), then submits the points
 * the controller hands out as job arrays, at most `slots` runs out at once (a bayes sweep
 * chooses each from the results so far; a fixed plan goes out whole when slots is 0),
 * feeds it each run's logged values of the early-termination metric as they are merged,
 * stops the runs it judges behind, and feeds each settled run's outcome and objective.
 * Runs an earlier controller left queued or running are followed and waited for; other
 * points whose run is already recorded (cached, busy elsewhere) are fed from the store.
 * `only` as for run_execute_sweep. Returns when every point was handed out and every
 * submitted run settled, or FT_EINTR on SIGINT/SIGTERM (the runs go on under Slurm). */
struct sweep_ctl;
int cluster_run_sweep(struct cluster *c, struct sweep_ctl *ctl, const char *only, size_t slots,
		      enum backend_type backend_type, cluster_record_fn fn, void *ud,
		      struct diag *d) FT_WUR;

struct cluster_counts {
	size_t followed, queued, running, finished, failed, killed, crashed, stopped;
	size_t records; /* journal records merged by this session */
};
void cluster_counts(const struct cluster *c, struct cluster_counts *out);

/* ---- the array task (on a node) ---- */

/* Runs array index `index` of the submission directory `submission_dir`: reads the frozen
 * config of its run, checks that the model and data files still have the identity they
 * had at submission, writes a new attempt's journal (never the store), checkpoints and
 * requeues itself on Slurm's time-limit warning (SIGUSR1) when its backend can resume,
 * and stops when a later attempt of the same run has taken over. Returns the process exit
 * status: 0 finished (or requeued), 1 failed, 130 killed, 2 bad input. */
int cluster_task(const char *workspace, const char *submission_dir, const char *index,
		 int verbosity);

#endif
