/* journal: the record of one attempt at a run that a cluster task writes into the run
 * directory instead of the store (journal/NNNN.jsonl: JSON Lines, appended with one write
 * per line, fsynced), and the reader that merges it. No SQLite here: array tasks never open
 * the workspace's ftlab.db. docs/slurm.md describes the format. */
#ifndef FTLAB_JOURNAL_H
#define FTLAB_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/diag.h"

/* Caps on what a reader accepts (a journal is written by ftlab, but read from a shared
 * file system that other processes can write). */
#define JOURNAL_MAX_LINE (8u << 20)  /* bytes of one record */
#define JOURNAL_MAX_SEQ 9999         /* attempts per run */
#define JOURNAL_DIR "journal"

/* ---- Writing (the array task) ---- */

struct journal; /* opaque; thread-safe (one mutex around each record) */

/* What the first record of an attempt says about where it runs. Strings may be NULL. */
struct journal_start {
	const char *job_id;      /* Slurm job id of this task ("1234"), SLURM_JOB_ID */
	const char *array_job;   /* array job id ("1230"), SLURM_ARRAY_JOB_ID */
	int64_t array_task;      /* SLURM_ARRAY_TASK_ID (-1 when not an array) */
	int64_t restart;         /* SLURM_RESTART_COUNT (requeues of this task) */
	const char *node;        /* SLURMD_NODENAME */
	const char *host;        /* gethostname() of the node */
	int64_t pid;
	const char *backend, *device;
	int64_t threads;
	bool resume;             /* continues an earlier attempt's rows and checkpoint */
	const char *submission;  /* the submission directory's name */
};

/* Creates run_dir/journal/NNNN.jsonl for a new attempt, NNNN one more than the highest
 * present (O_EXCL, so two tasks never share a file), and writes the start record.
 * *out_seq receives NNNN. FT_EIO with d set when the directory cannot be written. */
int journal_open_next(struct journal **out, int *out_seq, const char *run_dir,
		      const struct journal_start *start, struct diag *d) FT_WUR;

/* One record each; 0 or FT_EIO (the first write error is kept, later writes are dropped).
 * Lines reach the file at once (one write(2) each); fsync runs at most once a second
 * for metrics and progress, and at once for everything else. */
int journal_metric(struct journal *j, const char *split, const char *name, int64_t step,
		   double value) FT_WUR;
int journal_result(struct journal *j, const char *model, const char *split,
		   const char *metric, double value, double ci_low, double ci_high) FT_WUR;
int journal_prediction(struct journal *j, const char *model, const char *split,
		       int64_t example, const char *prompt, const char *reference,
		       const char *output, double score) FT_WUR;
int journal_event(struct journal *j, const char *level, const char *kind,
		  const char *message) FT_WUR;
/* path relative to the run directory; bytes and sha256 are computed here. */
int journal_artifact(struct journal *j, const char *kind, const char *path,
		     const char *run_dir) FT_WUR;
int journal_progress(struct journal *j, int64_t step, int64_t total) FT_WUR;
/* The last record of an attempt: status "finished" | "failed" | "killed"; error may be
 * NULL. Fsynced before it returns. */
int journal_end(struct journal *j, const char *status, const char *error) FT_WUR;
/* fsync now. */
int journal_sync(struct journal *j) FT_WUR;
/* True once a later attempt's file exists (this attempt has been replaced: a requeue
 * after the node was given up for dead). */
bool journal_superseded(const struct journal *j);
/* The first write error, or NULL. */
const struct diag *journal_error(const struct journal *j);
/* Syncs and closes; NULL is fine. */
void journal_close(struct journal *j);

/* ---- Reading (the merge on the submitting host) ---- */

enum journal_kind {
	JREC_START,
	JREC_METRIC,
	JREC_RESULT,
	JREC_PREDICTION,
	JREC_EVENT,
	JREC_ARTIFACT,
	JREC_PROGRESS,
	JREC_END
};

/* One record; strings are borrowed from the batch (NULL when absent), numbers NAN when
 * absent or null. Which fields are set depends on kind. */
struct journal_rec {
	enum journal_kind kind;
	double time;                 /* unix seconds on the node */
	int64_t line;                /* 1-based line number in the file */
	/* start */
	const char *job_id, *array_job, *node, *host, *backend, *device, *submission;
	int64_t array_task, restart, pid, threads;
	bool resume;
	/* metric, result, prediction */
	const char *model, *split, *name; /* name: metric name (metric, result) */
	int64_t step, example;
	double value, ci_low, ci_high, score;
	const char *prompt, *reference, *output;
	/* event */
	const char *level, *tag, *message;
	/* artifact */
	const char *path, *sha256;
	int64_t bytes;
	/* progress */
	int64_t total;
	/* end */
	const char *status, *error;
};

struct journal_batch {
	struct journal_rec *recs;
	size_t n;
	int64_t start_offset; /* byte offset the read started at */
	int64_t end_offset;  /* byte offset after the last complete line read */
	size_t bad_lines;    /* complete lines that were not a valid record (skipped) */
	void *owner;         /* the parsed documents the strings point into */
};

/* Reads the complete lines of `path` from byte `offset` on (a partial last line is left
 * for the next read). A missing file is an empty batch. *out belongs to the caller
 * (journal_batch_free). FT_EIO, FT_ENOMEM with d set. */
int journal_read(struct journal_batch **out, const char *path, int64_t offset,
		 struct diag *d) FT_WUR;
/* The same from memory (the fuzzer's entry point); `name` is used in messages. */
int journal_parse(struct journal_batch **out, const char *name, const char *data, size_t len,
		  int64_t base_offset, struct diag *d) FT_WUR;
void journal_batch_free(struct journal_batch *b);

/* The attempt files of a run directory, as sequence numbers in ascending order.
 * *out (caller frees) may be NULL when there are none. */
int journal_list(int **out, size_t *out_n, const char *run_dir, struct diag *d) FT_WUR;
/* "journal/0003.jsonl" for seq 3 into buf (at least 32 bytes). */
void journal_file_name(char *buf, size_t n, int seq);

#endif
