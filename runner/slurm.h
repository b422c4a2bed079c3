/* slurm: the Slurm side of the cluster launcher. Builds the batch script and the sbatch
 * command line of one job array, submits it, reads the queue (squeue), cancels (scancel),
 * and says what Slurm's job states and its last words in a task's output mean for a run.
 * Commands run without a shell (posix_spawnp, argv), with a time limit. No state. */
#ifndef FTLAB_SLURM_H
#define FTLAB_SLURM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/diag.h"

/* One job array to submit. Strings are borrowed; NULL or 0 leaves the choice to Slurm
 * (the partition's defaults). */
struct slurm_array {
	const char *job_name;
	const char *partition, *account, *qos, *mem;
	double time_s;             /* time limit in seconds, 0 = the partition's */
	int cpus_per_task;         /* 0 = not given */
	int gpus_per_task;         /* 0 = none asked */
	int array_parallelism;     /* tasks running at once, 0 = no limit */
	size_t n_tasks;            /* array indices 0 .. n_tasks-1 */
	int warn_s;                /* SIGUSR1 this long before the time limit (--signal) */
	const char *const *sbatch_args; /* extra sbatch options, after ftlab's (they win) */
	size_t n_sbatch_args;
	const char *const *setup;  /* shell lines run before ftlab on the node */
	size_t n_setup;
	/* The array task's command: ftlab_bin --workspace WORKSPACE task SUBMISSION INDEX */
	const char *ftlab_bin, *workspace, *submission_dir;
	const char *output;        /* sbatch --output pattern (%A_%a) */
};

/* The batch script's text (caller frees): #!/bin/bash, the setup lines, and an exec of
 * ftlab's task command with every path single-quoted. FT_ENOMEM. */
int slurm_script(char **out, const struct slurm_array *a, struct diag *d) FT_WUR;
/* The sbatch argv for the array, ending with script_path and NULL (caller frees the
 * vector and each string: slurm_argv_free). FT_ENOMEM. */
int slurm_sbatch_argv(char ***out, const struct slurm_array *a, const char *script_path,
		      struct diag *d) FT_WUR;
void slurm_argv_free(char **argv);
/* Writes the script to script_path and runs sbatch --parsable; *out receives the array's
 * job id ("1234"). FT_EIO when sbatch is missing or refuses (its message in d), or when
 * it prints no job id. */
int slurm_submit(char out[32], const struct slurm_array *a, const char *script_path,
		 struct diag *d) FT_WUR;

/* One line of the queue: an array task (or a plain job, task -1). */
struct slurm_task {
	char array_job[32]; /* "1234" */
	int64_t task;       /* array index, -1 for a job that is not an array task */
	char job_id[32];    /* the task's own job id ("1237") */
	char state[32];     /* PENDING, RUNNING, COMPLETED, TIMEOUT, ... */
	char node[64];      /* "" while pending */
	char reason[64];
};

/* The squeue format string slurm_queue_parse reads. */
#define SLURM_QUEUE_FORMAT "%F|%K|%A|%T|%N|%r"
/* Parses squeue's output in SLURM_QUEUE_FORMAT: array job id, index ("N/A" for a plain
 * job; a range such as "5-9%2" for pending tasks not listed one per line becomes one entry
 * per index), the task's own job id, state, node, reason. Lines that are not in
 * the format are skipped. *out (caller frees) may be NULL when empty. */
int slurm_queue_parse(struct slurm_task **out, size_t *out_n, const char *text,
		      struct diag *d) FT_WUR;
/* Runs squeue for this user's jobs in every state Slurm still remembers. */
int slurm_queue(struct slurm_task **out, size_t *out_n, struct diag *d) FT_WUR;
/* scancel for these job specs ("1234_5", "1234"). FT_EIO with scancel's message. */
int slurm_cancel(const char *const *specs, size_t n, struct diag *d) FT_WUR;
/* scancel --batch --signal=USR2 for one job spec: the array task's ftlab (the batch
 * script execs it) stops its run early, checkpointed (an adaptive sweep's early stop). */
int slurm_signal_stop(const char *spec, struct diag *d) FT_WUR;
/* scontrol requeue of one job id (a task requeueing itself at its time limit). */
int slurm_requeue(const char *job_id, struct diag *d) FT_WUR;

/* What a Slurm job state means for a run. */
enum slurm_phase {
	SLURM_QUEUED,  /* PENDING, REQUEUED, held ... */
	SLURM_RUNNING, /* RUNNING, COMPLETING, SUSPENDED ... */
	SLURM_ENDED,   /* a final state */
	SLURM_UNKNOWN  /* a state this ftlab does not know */
};
/* The phase of `state` and, when ended, the run status it stands for: COMPLETED
 * finished; FAILED, OUT_OF_MEMORY, SPECIAL_EXIT failed; TIMEOUT, CANCELLED, PREEMPTED,
 * DEADLINE killed; NODE_FAIL, BOOT_FAIL crashed. *out_status is NULL unless ended. */
enum slurm_phase slurm_state_phase(const char *state, const char **out_status);

/* Slurm's own verdict in a task's output, after the last line that starts with `marker`
 * (the attempt's first line; NULL = the whole text): "TIMEOUT", "PREEMPTED", "NODE_FAIL",
 * "CANCELLED", "REQUEUED" or "OUT_OF_MEMORY" from slurmstepd's "*** JOB ... CANCELLED AT
 * ... ***" and oom-kill lines; NULL when there is none. */
const char *slurm_log_verdict(const char *text, size_t n, const char *marker);

/* "D-HH:MM:SS" for sbatch --time (seconds rounded up to whole minutes: Slurm's unit). */
void slurm_format_time(char *buf, size_t n, double seconds);

/* Runs argv (no shell) with a time limit, collecting stdout and stderr (each capped at
 * 16 MiB). *out_status is the exit status, or -1 when the program could not start
 * (FT_EIO naming it in d), 124 when it ran out of time. Caller frees the outputs. */
int slurm_run(int *out_status, char **out_stdout, char **out_stderr, char *const *argv,
	      double timeout_s, struct diag *d) FT_WUR;

#endif
