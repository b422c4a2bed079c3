/* store_cluster: the store's side of cluster runs. Records where a submitted run went,
 * and merges the journals that array tasks write into their run directories (they never
 * open ftlab.db): each batch of records and the new read position commit together, so a
 * record is merged exactly once however often `ftlab sync` runs or is killed. */
#include "store/store_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "store/journal.h"
#include "common/banned.h"

int store_cluster_submitted(struct store *s, const char *const *run_ids, size_t n,
			    int64_t first_task, const char *array_job, struct diag *d)
{
	sqlite3_stmt *st = NULL;
	int r = store_begin(s, d);
	if (r)
		return r;
	r = store_prepare(s, &st,
			  "UPDATE runs SET slurm_job = ?2, slurm_task = ?3 WHERE id = ?1", d);
	for (size_t i = 0; !r && i < n; i++) {
		store_bind_text(s, st, 1, run_ids[i]);
		store_bind_text(s, st, 2, array_job);
		store_bind_int64(s, st, 3, first_task + (int64_t)i);
		r = store_step_done(s, st, d, "recording a submission");
	}
	if (!r)
		r = store_commit(s, d);
	sqlite3_finalize(st);
	if (r)
		store_rollback(s);
	return r;
}

int store_journal_position(struct store *s, const char *run_id, int seq, int64_t *out_offset,
			   bool *out_ended, double *out_started, struct diag *d)
{
	*out_offset = 0;
	*out_ended = false;
	if (out_started)
		*out_started = NAN;
	sqlite3_stmt *st = NULL;
	int r = store_prepare(s, &st,
			      "SELECT offset, ended, started FROM journal_merges WHERE run = ?1"
			      " AND seq = ?2",
			      d);
	if (r)
		return r;
	store_bind_text(s, st, 1, run_id);
	store_bind_int64(s, st, 2, seq);
	r = store_step_row(s, st, d, "reading a journal position");
	if (r == 1) {
		*out_offset = sqlite3_column_int64(st, 0);
		*out_ended = sqlite3_column_int(st, 1) != 0;
		if (out_started && sqlite3_column_type(st, 2) != SQLITE_NULL)
			*out_started = sqlite3_column_double(st, 2);
		r = 0;
	}
	sqlite3_finalize(st);
	return r;
}

/* The statements one merge uses, prepared once per batch. */
enum {
	M_METRIC,
	M_RESULT,
	M_PRED,
	M_EVENT,
	M_ARTIFACT,
	M_PROGRESS,
	M_START,
	M_END,
	M_INV,
	M_POS,
	M_N
};

static const char *const merge_sql[M_N] = {
	[M_METRIC] = "INSERT OR REPLACE INTO metrics(run, split, name, step, value, time)"
		     " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
	[M_RESULT] = "INSERT OR REPLACE INTO results(run, model, split, metric, value, ci_low,"
		     " ci_high) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
	[M_PRED] = "INSERT OR REPLACE INTO predictions(run, model, split, example, prompt,"
		   " reference, output, score) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
	[M_EVENT] = "INSERT INTO events(run, time, level, kind, message) VALUES (?1, ?2, ?3, ?4, ?5)",
	[M_ARTIFACT] = "INSERT OR REPLACE INTO artifacts(run, kind, path, bytes, sha256)"
		       " VALUES (?1, ?2, ?3, ?4, ?5)",
	[M_PROGRESS] = "UPDATE runs SET step = ?2, total_steps = ?3,"
		       " heartbeat = max(coalesce(heartbeat, 0), ?4) WHERE id = ?1",
	[M_START] = "UPDATE runs SET status = 'running', started = coalesce(started, ?2),"
		    " heartbeat = ?2, finished = NULL, error = NULL, attempts = attempts + 1,"
		    " host = ?3, node = ?4, pid = ?5, slurm_job_id = ?6,"
		    " backend = coalesce(?7, backend), device = coalesce(?8, device),"
		    " threads = coalesce(?9, threads),"
		    " step = CASE WHEN ?10 THEN step ELSE 0 END,"
		    " total_steps = CASE WHEN ?10 THEN total_steps ELSE 0 END WHERE id = ?1",
	[M_END] = "UPDATE runs SET status = ?2, error = ?3, finished = ?4, heartbeat = ?4"
		  " WHERE id = ?1",
	[M_INV] = "INSERT INTO invocation_runs(invocation, run, status)"
		  " SELECT invocation, id, ?2 FROM runs WHERE id = ?1 AND invocation IS NOT NULL"
		  " ON CONFLICT(invocation, run) DO UPDATE SET status = excluded.status",
	[M_POS] = "INSERT INTO journal_merges(run, seq, offset, ended, started, job_id, node)"
		  " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(run, seq) DO UPDATE SET"
		  " offset = excluded.offset, ended = max(ended, excluded.ended),"
		  " started = coalesce(started, excluded.started),"
		  " job_id = coalesce(excluded.job_id, job_id), node = coalesce(excluded.node, node)",
};


static int put_event(struct store *s, sqlite3_stmt *st, const char *run_id, double t,
		     const char *level, const char *kind, const char *msg, struct diag *d)
{
	store_bind_text(s, st, 1, run_id);
	store_bind_double(s, st, 2, t);
	store_bind_text(s, st, 3, level);
	store_bind_text(s, st, 4, kind);
	store_bind_text(s, st, 5, msg);
	return store_step_done(s, st, d, "merging an event");
}

/* The previous attempt of a run that is starting again: did it end with a record? */
static int previous_attempt(struct store *s, const char *run_id, int seq, bool *out_found,
			    bool *out_ended, char *job, size_t jn, char *node, size_t nn,
			    struct diag *d)
{
	*out_found = *out_ended = false;
	job[0] = node[0] = '\0';
	sqlite3_stmt *st = NULL;
	int r = store_prepare(s, &st,
			      "SELECT ended, coalesce(job_id, ''), coalesce(node, '') FROM"
			      " journal_merges WHERE run = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT 1",
			      d);
	if (r)
		return r;
	store_bind_text(s, st, 1, run_id);
	store_bind_int64(s, st, 2, seq);
	r = store_step_row(s, st, d, "reading a journal position");
	if (r == 1) {
		*out_found = true;
		*out_ended = sqlite3_column_int(st, 0) != 0;
		const unsigned char *jt = sqlite3_column_text(st, 1), *nt = sqlite3_column_text(st, 2);
		if (!jt || !nt)
			r = diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory reading a journal position");
		else {
			snprintf(job, jn, "%s", (const char *)jt);
			snprintf(node, nn, "%s", (const char *)nt);
			r = 0;
		}
	}
	sqlite3_finalize(st);
	return r;
}

static int merge_start(struct store *s, sqlite3_stmt **q, const char *run_id, int seq,
		       const struct journal_rec *rec, struct diag *d)
{
	bool found, ended;
	char pjob[64], pnode[96], msg[512];
	int r = previous_attempt(s, run_id, seq, &found, &ended, pjob, sizeof pjob, pnode,
				 sizeof pnode, d);
	if (r)
		return r;
	if (!rec->resume)
		r = store_clear_measurements(s, run_id, d);
	if (r)
		return r;
	sqlite3_stmt *st = q[M_START];
	store_bind_text(s, st, 1, run_id);
	store_bind_double(s, st, 2, rec->time);
	store_bind_text(s, st, 3, rec->host ? rec->host : rec->node);
	store_bind_text(s, st, 4, rec->node);
	if (rec->pid > 0)
		store_bind_int64(s, st, 5, rec->pid);
	else
		store_bind_null(s, st, 5);
	store_bind_text(s, st, 6, rec->job_id);
	store_bind_text(s, st, 7, rec->backend);
	store_bind_text(s, st, 8, rec->device);
	if (rec->threads > 0)
		store_bind_int64(s, st, 9, rec->threads);
	else
		store_bind_null(s, st, 9);
	store_bind_int64(s, st, 10, rec->resume ? 1 : 0);
	r = store_step_done(s, st, d, "merging a start record");
	if (!r && found && !ended) {
		snprintf(msg, sizeof msg,
			 "attempt %d (Slurm job %s on node %s) ended without a record: its node "
			 "failed or it was killed; attempt %d %s",
			 seq - 1, pjob[0] ? pjob : "?", pnode[0] ? pnode : "?", seq,
			 rec->resume ? "continues from the last checkpoint"
				     : "starts over (the backend cannot resume)");
		r = put_event(s, q[M_EVENT], run_id, rec->time, "warning", "requeued", msg, d);
	}
	if (!r) {
		snprintf(msg, sizeof msg, "attempt %d started on node %s (Slurm job %s_%lld, job id %s%s)",
			 seq, rec->node ? rec->node : "?", rec->array_job ? rec->array_job : "?",
			 (long long)rec->array_task, rec->job_id ? rec->job_id : "?",
			 rec->restart > 0 ? ", requeued by Slurm" : "");
		r = put_event(s, q[M_EVENT], run_id, rec->time, "info", "attempt", msg, d);
	}
	if (!r) {
		store_bind_text(s, q[M_INV], 1, run_id);
		store_bind_text(s, q[M_INV], 2, "running");
		r = store_step_done(s, q[M_INV], d, "merging a start record");
	}
	return r;
}

static int merge_one(struct store *s, sqlite3_stmt **q, const char *run_id, int seq,
		     const struct journal_rec *rec, const char **status, struct diag *d)
{
	sqlite3_stmt *st;
	switch (rec->kind) {
	case JREC_START:
		*status = "running";
		return merge_start(s, q, run_id, seq, rec, d);
	case JREC_METRIC:
		st = q[M_METRIC];
		store_bind_text(s, st, 1, run_id);
		store_bind_text(s, st, 2, rec->split);
		store_bind_text(s, st, 3, rec->name);
		store_bind_int64(s, st, 4, rec->step);
		store_bind_real(s, st, 5, rec->value);
		store_bind_double(s, st, 6, rec->time);
		return store_step_done(s, st, d, "merging a metric");
	case JREC_RESULT:
		st = q[M_RESULT];
		store_bind_text(s, st, 1, run_id);
		store_bind_text(s, st, 2, rec->model);
		store_bind_text(s, st, 3, rec->split);
		store_bind_text(s, st, 4, rec->name);
		store_bind_real(s, st, 5, rec->value);
		store_bind_real(s, st, 6, rec->ci_low);
		store_bind_real(s, st, 7, rec->ci_high);
		return store_step_done(s, st, d, "merging a result");
	case JREC_PREDICTION:
		st = q[M_PRED];
		store_bind_text(s, st, 1, run_id);
		store_bind_text(s, st, 2, rec->model);
		store_bind_text(s, st, 3, rec->split);
		store_bind_int64(s, st, 4, rec->example);
		store_bind_text(s, st, 5, rec->prompt);
		store_bind_text(s, st, 6, rec->reference);
		store_bind_text(s, st, 7, rec->output);
		store_bind_real(s, st, 8, rec->score);
		return store_step_done(s, st, d, "merging a prediction");
	case JREC_EVENT:
		return put_event(s, q[M_EVENT], run_id, rec->time, rec->level, rec->tag,
				 rec->message, d);
	case JREC_ARTIFACT:
		st = q[M_ARTIFACT];
		store_bind_text(s, st, 1, run_id);
		store_bind_text(s, st, 2, rec->tag);
		store_bind_text(s, st, 3, rec->path);
		store_bind_int64(s, st, 4, rec->bytes);
		store_bind_text(s, st, 5, rec->sha256);
		return store_step_done(s, st, d, "merging an artifact");
	case JREC_PROGRESS:
		st = q[M_PROGRESS];
		store_bind_text(s, st, 1, run_id);
		store_bind_int64(s, st, 2, rec->step);
		store_bind_int64(s, st, 3, rec->total);
		store_bind_double(s, st, 4, rec->time);
		return store_step_done(s, st, d, "merging progress");
	case JREC_END: {
		st = q[M_END];
		store_bind_text(s, st, 1, run_id);
		store_bind_text(s, st, 2, rec->status);
		store_bind_text(s, st, 3, rec->error);
		store_bind_double(s, st, 4, rec->time);
		int r = store_step_done(s, st, d, "merging an end record");
		if (!r) {
			store_bind_text(s, q[M_INV], 1, run_id);
			store_bind_text(s, q[M_INV], 2, rec->status);
			r = store_step_done(s, q[M_INV], d, "merging an end record");
		}
		*status = rec->status;
		return r;
	}
	}
	return 0;
}

/* A static copy of a status string (the batch's strings die with it). */
static const char *static_status(const char *st)
{
	static const char *const known[] = {"queued",  "running", "finished", "failed",
					    "killed",  "crashed", "cached", "stopped"};
	for (size_t i = 0; st && i < FT_ARRAY_LEN(known); i++)
		if (strcmp(st, known[i]) == 0)
			return known[i];
	return NULL;
}

int store_journal_merge(struct store *s, const char *run_id, int seq,
			const struct journal_batch *b, double taken_over,
			struct store_merge_info *out, struct diag *d)
{
	memset(out, 0, sizeof *out);
	sqlite3_stmt *q[M_N] = {0};
	int r = store_begin(s, d);
	if (r)
		return r;
	for (int i = 0; i < M_N && !r; i++)
		r = store_prepare(s, &q[i], merge_sql[i], d);
	if (r)
		goto done;
	/* The position first, under the write lock: when another merger moved it since this
	 * batch was read, the batch is stale and merging it again would duplicate events. */
	int64_t off;
	bool ended;
	r = store_journal_position(s, run_id, seq, &off, &ended, NULL, d);
	if (r)
		goto done;
	if (off != b->start_offset)
		goto commit;
	bool ends = false;
	double started = NAN;
	const char *job = NULL, *node = NULL, *status = NULL;
	for (size_t i = 0; i < b->n && !r; i++) {
		const struct journal_rec *rec = &b->recs[i];
		if (rec->time >= taken_over) {
			out->skipped++;
			continue;
		}
		if (rec->kind == JREC_START) {
			started = rec->time;
			job = rec->job_id;
			node = rec->node;
		}
		if (rec->kind == JREC_END)
			ends = true;
		r = merge_one(s, q, run_id, seq, rec, &status, d);
		if (!r)
			out->applied++;
	}
	if (!r && out->skipped) {
		char msg[256];
		snprintf(msg, sizeof msg,
			 "attempt %d wrote %zu record%s after attempt %d took over; not merged", seq,
			 out->skipped, out->skipped == 1 ? "" : "s", seq + 1);
		r = put_event(s, q[M_EVENT], run_id, taken_over, "warning", "superseded", msg, d);
	}
	if (!r && b->bad_lines) {
		char msg[256];
		snprintf(msg, sizeof msg, "attempt %d: %zu journal line%s could not be read; skipped",
			 seq, b->bad_lines, b->bad_lines == 1 ? "" : "s");
		r = put_event(s, q[M_EVENT], run_id, time_wall(), "warning", "journal", msg, d);
	}
	if (r)
		goto done;
	sqlite3_stmt *st = q[M_POS];
	store_bind_text(s, st, 1, run_id);
	store_bind_int64(s, st, 2, seq);
	store_bind_int64(s, st, 3, b->end_offset);
	store_bind_int64(s, st, 4, ends ? 1 : 0);
	store_bind_real(s, st, 5, started);
	store_bind_text(s, st, 6, job);
	store_bind_text(s, st, 7, node);
	r = store_step_done(s, st, d, "recording a journal position");
	if (r)
		goto done;
	out->status = static_status(status);
commit:
	r = store_commit(s, d);
done:
	for (int i = 0; i < M_N; i++)
		sqlite3_finalize(q[i]);
	if (r)
		store_rollback(s);
	return r;
}

int store_cluster_end(struct store *s, const char *run_id, const char *status,
		      const char *error, bool *out_changed, struct diag *d)
{
	*out_changed = false;
	sqlite3_stmt *st = NULL;
	int r = store_begin(s, d);
	if (r)
		return r;
	double now = time_wall();
	r = store_prepare(s, &st,
			  "UPDATE runs SET status = ?2, error = ?3, finished = ?4"
			  " WHERE id = ?1 AND status IN ('queued', 'running')",
			  d);
	if (r)
		goto done;
	store_bind_text(s, st, 1, run_id);
	store_bind_text(s, st, 2, status);
	store_bind_text(s, st, 3, error);
	store_bind_double(s, st, 4, now);
	r = store_step_done(s, st, d, "ending a cluster run");
	if (r || sqlite3_changes(s->db) == 0)
		goto commit;
	*out_changed = true;
	sqlite3_finalize(st);
	st = NULL;
	r = store_prepare(s, &st,
			  "INSERT INTO events(run, time, level, kind, message) VALUES (?1, ?2,"
			  " 'error', ?3, ?4)",
			  d);
	if (r)
		goto done;
	store_bind_text(s, st, 1, run_id);
	store_bind_double(s, st, 2, now);
	store_bind_text(s, st, 3, status);
	store_bind_text(s, st, 4, error);
	r = store_step_done(s, st, d, "recording the end of a cluster run");
	if (r)
		goto done;
	sqlite3_finalize(st);
	st = NULL;
	r = store_prepare(s, &st, merge_sql[M_INV], d);
	if (r)
		goto done;
	store_bind_text(s, st, 1, run_id);
	store_bind_text(s, st, 2, status);
	r = store_step_done(s, st, d, "recording the end of a cluster run");
commit:
	if (!r)
		r = store_commit(s, d);
done:
	sqlite3_finalize(st);
	if (r)
		store_rollback(s);
	return r;
}

int store_cluster_requeued(struct store *s, const char *run_id, const char *why,
			   bool *out_changed, struct diag *d)
{
	*out_changed = false;
	sqlite3_stmt *st = NULL;
	int r = store_begin(s, d);
	if (r)
		return r;
	r = store_prepare(s, &st,
			  "UPDATE runs SET status = 'queued', finished = NULL"
			  " WHERE id = ?1 AND status IN ('killed', 'failed', 'crashed')",
			  d);
	if (r)
		goto done;
	store_bind_text(s, st, 1, run_id);
	r = store_step_done(s, st, d, "requeueing a cluster run");
	if (r || sqlite3_changes(s->db) == 0)
		goto commit;
	*out_changed = true;
	sqlite3_finalize(st);
	st = NULL;
	r = store_prepare(s, &st, merge_sql[M_EVENT], d);
	if (!r)
		r = put_event(s, st, run_id, time_wall(), "info", "requeued", why, d);
	sqlite3_finalize(st);
	st = NULL;
	if (!r)
		r = store_prepare(s, &st, merge_sql[M_INV], d);
	if (!r) {
		store_bind_text(s, st, 1, run_id);
		store_bind_text(s, st, 2, "queued");
		r = store_step_done(s, st, d, "requeueing a cluster run");
	}
commit:
	if (!r)
		r = store_commit(s, d);
done:
	sqlite3_finalize(st);
	if (r)
		store_rollback(s);
	return r;
}

int store_cluster_note(struct store *s, const char *run_id, const char *note, bool killed,
		       struct diag *d)
{
	sqlite3_stmt *st = NULL;
	int r = store_begin(s, d);
	if (r)
		return r;
	r = store_prepare(s, &st,
			  "UPDATE runs SET error = CASE WHEN error IS NULL OR error = '' THEN"
			  " ltrim(?2) ELSE error || ?2 END,"
			  " status = CASE WHEN ?3 AND status = 'failed' THEN 'killed' ELSE status END"
			  " WHERE id = ?1"
			  " AND status NOT IN ('finished', 'cached', 'stopped', 'queued', 'running')"
			  " AND instr(coalesce(error, ''), '[Slurm ') = 0",
			  d);
	if (!r) {
		store_bind_text(s, st, 1, run_id);
		store_bind_text(s, st, 2, note);
		store_bind_int64(s, st, 3, killed ? 1 : 0);
		r = store_step_done(s, st, d, "noting Slurm's verdict");
	}
	if (!r && killed) {
		sqlite3_finalize(st);
		st = NULL;
		/* the invocation's view follows the run's status, whatever it is now */
		r = store_prepare(s, &st,
				  "INSERT INTO invocation_runs(invocation, run, status)"
				  " SELECT invocation, id, status FROM runs WHERE id = ?1"
				  " AND invocation IS NOT NULL ON CONFLICT(invocation, run)"
				  " DO UPDATE SET status = excluded.status",
				  d);
		if (!r) {
			store_bind_text(s, st, 1, run_id);
			r = store_step_done(s, st, d, "noting Slurm's verdict");
		}
	}
	if (!r)
		r = store_commit(s, d);
	sqlite3_finalize(st);
	if (r)
		store_rollback(s);
	return r;
}

int store_cluster_event(struct store *s, const char *run_id, const char *level,
			const char *kind, const char *message, struct diag *d)
{
	sqlite3_stmt *st = NULL;
	int r = store_prepare(s, &st,
			      "INSERT INTO events(run, time, level, kind, message) VALUES (?1, ?2,"
			      " ?3, ?4, ?5)",
			      d);
	if (r)
		return r;
	store_bind_text(s, st, 1, run_id);
	sqlite3_bind_double(st, 2, time_wall());
	store_bind_text(s, st, 3, level);
	store_bind_text(s, st, 4, kind);
	store_bind_text(s, st, 5, message);
	r = store_step_done(s, st, d, "recording an event of a cluster run");
	sqlite3_finalize(st);
	return r;
}
