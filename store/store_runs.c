/* store_runs: experiments and invocations, and the run lifecycle: the atomic claim of a
 * sweep point (and its preview for `ftlab plan`: the same decision), heartbeats, the end
 * of a run and the reaping of runs whose process is gone. Every write is one short BEGIN
 * IMMEDIATE transaction; a run's own writes carry its claim token (store_claims.c). */
#include "store/store_internal.h"


#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "common/hash.h"
#include "common/util.h"
#include "common/banned.h"


/* ---- experiments and invocations ---- */

int store_experiment_put(struct store *s, const char *name, const char *spec_json,
			 const char *spec_hash, const char *source_path, struct diag *d)
{
	sqlite3_stmt *st = NULL;
	int r = store_begin(s, d);
	if (r)
		return r;
	r = store_prepare(s, &st,
		    "INSERT INTO experiments(name, spec, spec_hash, source_path, created, updated)"
		    " VALUES (?1, ?2, ?3, ?4, ?5, ?5) ON CONFLICT(name) DO UPDATE SET"
		    " spec = excluded.spec, spec_hash = excluded.spec_hash,"
		    " source_path = excluded.source_path, updated = excluded.updated",
		    d);
	if (r)
		goto done;
	store_bind_text(s, st, 1, name);
	store_bind_text(s, st, 2, spec_json);
	store_bind_text(s, st, 3, spec_hash);
	store_bind_text(s, st, 4, source_path);
	store_bind_double(s, st, 5, time_wall());
	r = store_step_done(s, st, d, "recording the experiment");
	if (!r)
		r = store_commit(s, d);
done:
	sqlite3_finalize(st);
	if (r)
		store_rollback(s);
	return r;
}

int store_invocation_begin(struct store *s, int64_t *out, const char *experiment,
			   const char *argv_json, const struct store_provenance *prov,
			   struct diag *d)
{
	sqlite3_stmt *st = NULL;
	*out = 0;
	int r = store_begin(s, d);
	if (r)
		return r;
	r = store_prepare(s, &st,
		    "INSERT INTO invocations(experiment, argv, host, pid, git_commit, git_branch,"
		    " git_dirty, git_remote, git_root, git_changed, started)"
		    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
		    d);
	if (r)
		goto done;
	store_bind_text(s, st, 1, experiment);
	store_bind_text(s, st, 2, argv_json);
	store_bind_text(s, st, 3, store_host());
	store_bind_int64(s, st, 4, getpid());
	if (prov && prov->is_repo) {
		store_bind_text(s, st, 5, prov->commit);
		store_bind_text(s, st, 6, prov->branch);
		store_bind_int64(s, st, 7, prov->dirty ? 1 : 0);
		store_bind_text(s, st, 8, prov->remote);
		store_bind_text(s, st, 9, prov->root);
		store_bind_text(s, st, 10, prov->changed);
	}
	store_bind_double(s, st, 11, time_wall());
	r = store_step_done(s, st, d, "recording the invocation");
	if (r)
		goto done;
	*out = sqlite3_last_insert_rowid(s->db);
	r = store_commit(s, d);
done:
	sqlite3_finalize(st);
	if (r)
		store_rollback(s);
	return r;
}

int store_invocation_end(struct store *s, int64_t id, const char *status, struct diag *d)
{
	sqlite3_stmt *st = NULL;
	int r = store_begin(s, d);
	if (r)
		return r;
	r = store_prepare(s, &st, "UPDATE invocations SET status = ?1, finished = ?2 WHERE id = ?3", d);
	if (r)
		goto done;
	store_bind_text(s, st, 1, status);
	store_bind_double(s, st, 2, time_wall());
	store_bind_int64(s, st, 3, id);
	r = store_step_done(s, st, d, "ending the invocation");
	if (!r)
		r = store_commit(s, d);
done:
	sqlite3_finalize(st);
	if (r)
		store_rollback(s);
	return r;
}

/* ---- runs ---- */

/* The state of a run row that the claim and the reaper decide on. */
struct claim_row {
	char status[16];
	char host[256];
	bool has_host;
	int64_t pid, proc_start; /* proc_start -1: not recorded */
	double heartbeat;
	bool has_invocation;
	int64_t invocation;
	char commit[64];
	bool has_commit, dirty_null;
	int dirty;
	char identity[65];
	bool cluster; /* sent to a cluster launcher: no process of this machine holds it */
};

/* A running row's process is gone: on this host, when its pid no longer runs (or is
 * another process now), whatever the heartbeat says: a stopped or busy process is alive
 * and still owns its run; on another host, when its heartbeat is older than max_age_s
 * (0: never, since nothing else can be known from here). */
static bool row_is_stale(const struct claim_row *row, double max_age_s)
{
	if (row->has_host && strcmp(row->host, store_host()) == 0)
		return !store_pid_alive(row->pid, row->proc_start);
	return max_age_s > 0 && time_wall() - row->heartbeat > max_age_s;
}

/* Copies text column i; false when SQLite could not produce a value that is there (out
 * of memory: a missing host must not be read as "another host"). */
static bool copy_col(char *dst, size_t n, sqlite3_stmt *st, int i, bool *present)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	if (present)
		*present = t != NULL;
	snprintf(dst, n, "%s", t ? (const char *)t : "");
	return t || sqlite3_column_type(st, i) == SQLITE_NULL;
}

#define CLAIM_ROW_COLUMNS                                                                     \
	"r.id, r.status, r.pid, r.host, r.heartbeat, r.invocation, r.git_commit, r.git_dirty,"\
	" r.identity, c.proc_start, c.pid, c.host, r.launcher"
#define CLAIM_ROW_FROM " FROM runs r LEFT JOIN run_claims c ON c.run = r.id"

/* Decodes a row selected with CLAIM_ROW_COLUMNS (column 0 is the id). The pid and host of
 * the claim are those of the row; the start time is the claim's when it is of that pid.
 * FT_ENOMEM when SQLite could not produce a text value. */
static int claim_row_read(struct claim_row *row, sqlite3_stmt *st, struct diag *d)
{
	memset(row, 0, sizeof *row);
	char chost[256];
	bool ok = copy_col(row->status, sizeof row->status, st, 1, NULL);
	row->pid = sqlite3_column_int64(st, 2);
	ok &= copy_col(row->host, sizeof row->host, st, 3, &row->has_host);
	row->heartbeat = sqlite3_column_double(st, 4);
	row->has_invocation = sqlite3_column_type(st, 5) != SQLITE_NULL;
	row->invocation = sqlite3_column_int64(st, 5);
	ok &= copy_col(row->commit, sizeof row->commit, st, 6, &row->has_commit);
	row->dirty_null = sqlite3_column_type(st, 7) == SQLITE_NULL;
	row->dirty = sqlite3_column_int(st, 7);
	ok &= copy_col(row->identity, sizeof row->identity, st, 8, NULL);
	bool has_chost;
	ok &= copy_col(chost, sizeof chost, st, 11, &has_chost);
	if (!ok)
		return diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory reading a run");
	bool same_proc = sqlite3_column_type(st, 9) != SQLITE_NULL &&
			 sqlite3_column_int64(st, 10) == row->pid && has_chost && row->has_host &&
			 strcmp(chost, row->host) == 0;
	row->proc_start = same_proc ? sqlite3_column_int64(st, 9) : -1;
	row->cluster = sqlite3_column_type(st, 12) != SQLITE_NULL;
	return 0;
}

/* Marks one running row crashed, inside the caller's transaction. */
static int mark_crashed(struct store *s, const char *run_id, struct diag *d)
{
	sqlite3_stmt *st = NULL;
	int r = store_prepare(s, &st,
			"UPDATE runs SET status = 'crashed', finished = ?2,"
			" error = 'the process running it is gone (pid gone or heartbeat stale)'"
			" WHERE id = ?1 AND status = 'running'",
			d);
	if (r)
		return r;
	store_bind_text(s, st, 1, run_id);
	store_bind_double(s, st, 2, time_wall());
	r = store_step_done(s, st, d, "marking a run crashed");
	sqlite3_finalize(st);
	if (r)
		return r;
	r = store_prepare(s, &st,
		    "INSERT INTO events(run, time, level, kind, message) VALUES (?1, ?2, 'error',"
		    " 'crashed', 'run marked crashed: its process is gone')",
		    d);
	if (r)
		return r;
	store_bind_text(s, st, 1, run_id);
	store_bind_double(s, st, 2, time_wall());
	r = store_step_done(s, st, d, "recording a crash");
	sqlite3_finalize(st);
	return r;
}

int store_reap_stale(struct store *s, double max_age_s, int *out_n, struct diag *d)
{
	sqlite3_stmt *st = NULL;
	int n = 0;
	char **ids = NULL;
	size_t nids = 0;
	if (out_n)
		*out_n = 0;
	int r = store_begin(s, d);
	if (r)
		return r;
	/* Cluster runs have no process on this machine to watch: `ftlab sync` settles them
	 * from their journals and Slurm's queue. */
	r = store_prepare(s, &st,
			  "SELECT " CLAIM_ROW_COLUMNS CLAIM_ROW_FROM " WHERE r.status = 'running'"
			  " AND r.launcher IS NULL",
			  d);
	if (r)
		goto done;
	int step;
	while ((step = store_step_row(s, st, d, "reading running runs")) == 1) {
		struct claim_row row = {0};
		if ((r = claim_row_read(&row, st, d)) != 0)
			goto done;
		if (!row_is_stale(&row, max_age_s))
			continue;
		const unsigned char *id = sqlite3_column_text(st, 0);
		char **grown = realloc(ids, (nids + 1) * sizeof *ids);
		if (!grown || !id || !(grown[nids] = ft_strdup((const char *)id))) {
			ids = grown ? grown : ids;
			r = diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory reaping runs");
			goto done;
		}
		ids = grown;
		nids++;
	}
	if (step < 0) {
		r = step;
		goto done;
	}
	sqlite3_finalize(st);
	st = NULL;
	for (size_t i = 0; i < nids && !r; i++)
		if (!(r = mark_crashed(s, ids[i], d)))
			n++;
	if (!r)
		r = store_commit(s, d);
done:
	for (size_t i = 0; i < nids; i++)
		free(ids[i]);
	free(ids);
	sqlite3_finalize(st);
	if (r)
		store_rollback(s);
	else if (out_n)
		*out_n = n;
	return r;
}

static int record_invocation_run(struct store *s, int64_t invocation, const char *run_id,
				 const char *status, struct diag *d)
{
	sqlite3_stmt *st = NULL;
	int r = store_prepare(s, &st,
			"INSERT INTO invocation_runs(invocation, run, status) VALUES (?1, ?2, ?3)"
			" ON CONFLICT(invocation, run) DO UPDATE SET status = excluded.status",
			d);
	if (r)
		return r;
	store_bind_int64(s, st, 1, invocation);
	store_bind_text(s, st, 2, run_id);
	store_bind_text(s, st, 3, status);
	r = store_step_done(s, st, d, "recording the run of an invocation");
	sqlite3_finalize(st);
	return r;
}

/* Runs one statement whose only parameter is the run id; `what` names it in errors. */
int store_exec_run_sql(struct store *s, const char *sql, const char *run_id, const char *what,
		       struct diag *d)
{
	sqlite3_stmt *st = NULL;
	int r = store_prepare(s, &st, sql, d);
	if (r)
		return r;
	store_bind_text(s, st, 1, run_id);
	r = store_step_done(s, st, d, what);
	sqlite3_finalize(st);
	return r;
}

int store_clear_measurements(struct store *s, const char *run_id, struct diag *d)
{
	static const char *const sqls[] = {
		"DELETE FROM metrics WHERE run = ?1", "DELETE FROM results WHERE run = ?1",
		"DELETE FROM predictions WHERE run = ?1", "DELETE FROM artifacts WHERE run = ?1",
	};
	for (size_t i = 0; i < FT_ARRAY_LEN(sqls); i++) {
		int r = store_exec_run_sql(s, sqls[i], run_id, "clearing a run's measurements", d);
		if (r)
			return r;
	}
	return 0;
}

/* Deletes what an earlier attempt of the run recorded (a fresh start): its measurements,
 * events and journal positions. */
static int reset_run_rows(struct store *s, const char *run_id, struct diag *d)
{
	int r = store_clear_measurements(s, run_id, d);
	if (!r)
		r = store_exec_run_sql(s, "DELETE FROM events WHERE run = ?1", run_id,
				       "resetting a run", d);
	if (!r)
		r = store_exec_run_sql(s, "DELETE FROM journal_merges WHERE run = ?1", run_id,
				       "resetting a run", d);
	return r;
}

static bool same_clean_commit(const struct claim_row *row, const struct store_run_spec *spec)
{
	/* Outside a repository on both sides there is no commit to compare: the identity
	 * alone decides. */
	if (!row->has_commit && row->dirty_null && !spec->git_commit)
		return true;
	if (!row->has_commit || !spec->git_commit)
		return false;
	return row->dirty == 0 && !spec->git_dirty && strcmp(row->commit, spec->git_commit) == 0;
}

/* Reads the row of spec->id: 1 with *row filled, 0 when there is none, or an error. A row
 * of another identity under the same id is an error. */
static int claim_row_get(struct store *s, struct claim_row *row, const struct store_run_spec *spec,
			 struct diag *d)
{
	sqlite3_stmt *st = NULL;
	int r = store_prepare(s, &st, "SELECT " CLAIM_ROW_COLUMNS CLAIM_ROW_FROM " WHERE r.id = ?1",
			      d);
	if (r)
		return r;
	store_bind_text(s, st, 1, spec->id);
	r = store_step_row(s, st, d, "reading a run");
	if (r == 1) {
		int e = claim_row_read(row, st, d);
		if (e)
			r = e;
		else if (row->identity[0] && strcmp(row->identity, spec->identity) != 0)
			r = diag_set(d, FT_ESTORE, "", 0, 0,
				     "run id %s already belongs to another identity (%.12s...)",
				     spec->id, row->identity);
	}
	sqlite3_finalize(st);
	return r;
}

/* The one decision of store_run_claim and store_run_preview. *out_stale: a running row
 * whose process is gone (the claim marks it crashed first). */
static enum store_claim claim_decide(const struct claim_row *row, bool exists, int64_t invocation,
				     unsigned flags, const struct store_run_spec *spec,
				     bool *out_stale)
{
	*out_stale = false;
	if (!exists)
		return STORE_CLAIM_RUN;
	bool ours = row->has_invocation && invocation > 0 && row->invocation == invocation;
	const char *status = row->status;
	if (row->cluster && (strcmp(status, "running") == 0 || strcmp(status, "queued") == 0))
		/* Its task may still run on a node; only its journal or Slurm can say
		 * otherwise (ftlab sync). */
		return ours ? STORE_CLAIM_DONE : STORE_CLAIM_BUSY;
	if (strcmp(status, "running") == 0) {
		if (!row_is_stale(row, 0))
			return ours ? STORE_CLAIM_DONE : STORE_CLAIM_BUSY;
		*out_stale = true;
		return (flags & STORE_FLAG_RESUME) ? STORE_CLAIM_RESUME : STORE_CLAIM_RUN;
	}
	if (ours)
		return STORE_CLAIM_DONE;
	/* A run early termination stopped is reused like a finished one: the decision stands
	 * until --force. */
	if (strcmp(status, "finished") == 0 || strcmp(status, "stopped") == 0)
		return !(flags & STORE_FLAG_FORCE) && same_clean_commit(row, spec) ? STORE_CLAIM_CACHED
										   : STORE_CLAIM_RUN;
	if (strcmp(status, "killed") == 0 || strcmp(status, "crashed") == 0)
		return (flags & STORE_FLAG_RESUME) ? STORE_CLAIM_RESUME : STORE_CLAIM_RUN;
	return STORE_CLAIM_RUN; /* queued, failed */
}

int store_run_preview(struct store *s, enum store_claim *out, char out_status[16],
		      const struct store_run_spec *spec, unsigned flags, struct diag *d)
{
	struct claim_row row = {0};
	*out = STORE_CLAIM_RUN;
	out_status[0] = '\0';
	int r = claim_row_get(s, &row, spec, d);
	if (r < 0)
		return r;
	bool stale;
	*out = claim_decide(&row, r == 1, 0, flags, spec, &stale);
	if (r == 1)
		snprintf(out_status, 16, "%s", stale ? "crashed" : row.status);
	return 0;
}

int store_run_claim(struct store *s, enum store_claim *out, char *token, int64_t invocation,
		    const struct store_run_spec *spec, unsigned flags, struct diag *d)
{
	sqlite3_stmt *st = NULL;
	*out = STORE_CLAIM_BUSY;
	token[0] = '\0';
	int r = store_begin(s, d);
	if (r)
		return r;
	struct claim_row row = {0};
	r = claim_row_get(s, &row, spec, d);
	if (r < 0)
		goto done;
	bool exists = r == 1, stale;
	r = 0;
	enum store_claim decision = claim_decide(&row, exists, invocation, flags, spec, &stale);
	if (stale && (r = mark_crashed(s, spec->id, d)) != 0)
		goto done;

	if (decision == STORE_CLAIM_CACHED) {
		r = record_invocation_run(s, invocation, spec->id, "cached", d);
	} else if (decision == STORE_CLAIM_RUN || decision == STORE_CLAIM_RESUME) {
		if (decision == STORE_CLAIM_RUN && exists)
			r = reset_run_rows(s, spec->id, d);
		if (r)
			goto done;
		double now = time_wall();
		r = store_prepare(s, &st,
			    "INSERT INTO runs(id, experiment, invocation, sweep_index, params, config,"
			    " identity, status, pid, host, heartbeat, created, started, backend, device,"
			    " threads, seed, run_dir, attempts, git_commit, git_dirty, step, total_steps,"
			    " launcher, submission)"
			    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?19, ?8, ?9, ?10, ?10, ?21, ?11,"
			    " ?12, ?13, ?14, ?15, ?22, ?16, ?17, 0, 0, ?20, ?23)"
			    " ON CONFLICT(id) DO UPDATE SET experiment = excluded.experiment,"
			    " invocation = excluded.invocation, sweep_index = excluded.sweep_index,"
			    " params = excluded.params, config = excluded.config, status = ?19,"
			    " pid = excluded.pid, host = excluded.host, heartbeat = excluded.heartbeat,"
			    " started = excluded.started, finished = NULL, error = NULL,"
			    " backend = excluded.backend, device = excluded.device,"
			    " threads = excluded.threads, seed = excluded.seed, run_dir = excluded.run_dir,"
			    " attempts = attempts + ?22, git_commit = excluded.git_commit,"
			    " git_dirty = excluded.git_dirty,"
			    " step = CASE WHEN ?18 THEN step ELSE 0 END,"
			    " total_steps = CASE WHEN ?18 THEN total_steps ELSE 0 END,"
			    " launcher = ?20, submission = ?23, slurm_job = NULL, slurm_task = NULL,"
			    " slurm_job_id = NULL, node = NULL",
			    d);
		if (r)
			goto done;
		bool cl = spec->launcher != NULL;
		store_bind_text(s, st, 1, spec->id);
		store_bind_text(s, st, 2, spec->experiment);
		store_bind_int64(s, st, 3, invocation);
		store_bind_int64(s, st, 4, spec->sweep_index);
		store_bind_text(s, st, 5, spec->params_json ? spec->params_json : "{}");
		store_bind_text(s, st, 6, spec->config_json ? spec->config_json : "{}");
		store_bind_text(s, st, 7, spec->identity);
		if (cl) { /* no process here: the journal's start record names node and pid */
			store_bind_null(s, st, 8);
			store_bind_null(s, st, 9);
		} else {
			store_bind_int64(s, st, 8, getpid());
			store_bind_text(s, st, 9, store_host());
		}
		store_bind_double(s, st, 10, now);
		store_bind_text(s, st, 11, spec->backend);
		store_bind_text(s, st, 12, spec->device);
		store_bind_int64(s, st, 13, spec->threads);
		store_bind_int64(s, st, 14, spec->seed);
		store_bind_text(s, st, 15, spec->run_dir);
		store_bind_text(s, st, 16, spec->git_commit);
		if (spec->git_commit)
			store_bind_int64(s, st, 17, spec->git_dirty ? 1 : 0);
		else
			store_bind_null(s, st, 17);
		store_bind_int64(s, st, 18, decision == STORE_CLAIM_RESUME);
		store_bind_text(s, st, 19, cl ? "queued" : "running");
		store_bind_text(s, st, 20, spec->launcher);
		if (cl)
			store_bind_null(s, st, 21);
		else
			store_bind_double(s, st, 21, now);
		store_bind_int64(s, st, 22, cl ? 0 : 1); /* a cluster attempt counts when it starts */
		store_bind_text(s, st, 23, cl ? spec->submission : NULL);
		r = store_step_done(s, st, d, "claiming a run");
		/* A cluster task writes a journal, which `ftlab sync` merges: no process here
		 * holds the run, so it gets no claim token. */
		if (!r && !cl)
			r = store_claim_record(s, spec->id, token, d);
		else if (!r) /* an earlier local claim's token must not write for it */
			r = store_exec_run_sql(s, "DELETE FROM run_claims WHERE run = ?1", spec->id,
					       "resetting a run", d);
		if (!r)
			r = record_invocation_run(s, invocation, spec->id, cl ? "queued" : "running",
						  d);
	}
	if (!r)
		r = store_commit(s, d);
	if (!r)
		*out = decision;
done:
	sqlite3_finalize(st);
	if (r) {
		token[0] = '\0';
		store_rollback(s);
	}
	return r;
}

int store_run_end(struct store *s, const char *run_id, const char *token, int64_t invocation,
		  const char *status, const char *error, struct diag *d)
{
	sqlite3_stmt *st = NULL;
	int r = store_begin(s, d);
	if (r)
		return r;
	r = store_claim_check(s, run_id, token, d);
	if (r)
		goto done;
	r = store_prepare(s, &st,
		    "UPDATE runs SET status = ?2, error = ?3, finished = ?4, heartbeat = ?4"
		    " WHERE id = ?1",
		    d);
	if (r)
		goto done;
	store_bind_text(s, st, 1, run_id);
	store_bind_text(s, st, 2, status);
	store_bind_text(s, st, 3, error);
	store_bind_double(s, st, 4, time_wall());
	r = store_step_done(s, st, d, "ending a run");
	if (!r)
		r = record_invocation_run(s, invocation, run_id, status, d);
	if (!r)
		r = store_commit(s, d);
done:
	sqlite3_finalize(st);
	if (r)
		store_rollback(s);
	return r;
}

int store_run_heartbeat(struct store *s, const char *run_id, const char *token, int64_t step,
			int64_t total, struct diag *d)
{
	sqlite3_stmt *st = NULL;
	int r = store_begin(s, d);
	if (r)
		return r;
	r = store_claim_check(s, run_id, token, d);
	if (r)
		goto done;
	r = store_prepare(s, &st,
		    "UPDATE runs SET heartbeat = ?2, step = ?3, total_steps = ?4 WHERE id = ?1",
		    d);
	if (r)
		goto done;
	store_bind_text(s, st, 1, run_id);
	store_bind_double(s, st, 2, time_wall());
	store_bind_int64(s, st, 3, step);
	store_bind_int64(s, st, 4, total);
	r = store_step_done(s, st, d, "heartbeat");
	if (!r)
		r = store_commit(s, d);
done:
	sqlite3_finalize(st);
	if (r)
		store_rollback(s);
	return r;
}
