/* store_runs: experiments and invocations, and the run lifecycle: the atomic claim of a
 * sweep point, heartbeats, the end of a run and the reaping of runs whose process is gone.
 * Every write is one short BEGIN IMMEDIATE transaction. */
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
	store_bind_text(st, 1, name);
	store_bind_text(st, 2, spec_json);
	store_bind_text(st, 3, spec_hash);
	store_bind_text(st, 4, source_path);
	sqlite3_bind_double(st, 5, time_wall());
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
	store_bind_text(st, 1, experiment);
	store_bind_text(st, 2, argv_json);
	store_bind_text(st, 3, store_host());
	sqlite3_bind_int64(st, 4, getpid());
	if (prov && prov->is_repo) {
		store_bind_text(st, 5, prov->commit);
		store_bind_text(st, 6, prov->branch);
		sqlite3_bind_int(st, 7, prov->dirty ? 1 : 0);
		store_bind_text(st, 8, prov->remote);
		store_bind_text(st, 9, prov->root);
		store_bind_text(st, 10, prov->changed);
	}
	sqlite3_bind_double(st, 11, time_wall());
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
	store_bind_text(st, 1, status);
	sqlite3_bind_double(st, 2, time_wall());
	sqlite3_bind_int64(st, 3, id);
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

/* True when a process with this pid exists on this machine and is not a zombie. */
static bool pid_alive(int64_t pid)
{
	if (pid <= 0 || pid > INT32_MAX)
		return false;
	if (kill((pid_t)pid, 0) != 0 && errno == ESRCH)
		return false;
	char path[64], buf[512];
	snprintf(path, sizeof path, "/proc/%lld/stat", (long long)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return true; /* no /proc: trust kill() */
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	const char *p = strrchr(buf, ')');
	if (p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X'))
		return false;
	return true;
}

static bool row_is_stale(const char *host, int64_t pid, double heartbeat, double max_age_s)
{
	if (host && strcmp(host, store_host()) == 0 && !pid_alive(pid))
		return true;
	return max_age_s > 0 && time_wall() - heartbeat > max_age_s;
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
	store_bind_text(st, 1, run_id);
	sqlite3_bind_double(st, 2, time_wall());
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
	store_bind_text(st, 1, run_id);
	sqlite3_bind_double(st, 2, time_wall());
	r = store_step_done(s, st, d, "recording a crash");
	sqlite3_finalize(st);
	return r;
}

int store_reap_stale(struct store *s, double max_age_s, int *out_n, struct diag *d)
{
	sqlite3_stmt *st = NULL;
	int n = 0;
	if (out_n)
		*out_n = 0;
	int r = store_begin(s, d);
	if (r)
		return r;
	/* Cluster runs have no process on this machine to watch: `ftlab sync` settles them
	 * from their journals and Slurm's queue. */
	r = store_prepare(s, &st,
			  "SELECT id, host, pid, heartbeat FROM runs WHERE status = 'running'"
			  " AND launcher IS NULL",
			  d);
	if (r)
		goto done;
	char **ids = NULL;
	size_t nids = 0;
	while (sqlite3_step(st) == SQLITE_ROW) {
		const char *host = (const char *)sqlite3_column_text(st, 1);
		if (!row_is_stale(host, sqlite3_column_int64(st, 2), sqlite3_column_double(st, 3),
				  max_age_s))
			continue;
		char **grown = realloc(ids, (nids + 1) * sizeof *ids);
		if (!grown)
			break;
		ids = grown;
		ids[nids] = ft_strdup((const char *)sqlite3_column_text(st, 0));
		if (ids[nids])
			nids++;
	}
	sqlite3_finalize(st);
	st = NULL;
	for (size_t i = 0; i < nids; i++) {
		if (!r)
			r = mark_crashed(s, ids[i], d);
		if (!r)
			n++;
		free(ids[i]);
	}
	free(ids);
	if (!r)
		r = store_commit(s, d);
done:
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
	sqlite3_bind_int64(st, 1, invocation);
	store_bind_text(st, 2, run_id);
	store_bind_text(st, 3, status);
	r = store_step_done(s, st, d, "recording the run of an invocation");
	sqlite3_finalize(st);
	return r;
}

/* Deletes what an earlier attempt of the run measured (a fresh start). */
static int reset_run_rows(struct store *s, const char *run_id, struct diag *d)
{
	static const char *const sqls[] = {
		"DELETE FROM metrics WHERE run = ?1",     "DELETE FROM results WHERE run = ?1",
		"DELETE FROM predictions WHERE run = ?1", "DELETE FROM artifacts WHERE run = ?1",
		"DELETE FROM events WHERE run = ?1",     "DELETE FROM journal_merges WHERE run = ?1",
	};
	for (size_t i = 0; i < FT_ARRAY_LEN(sqls); i++) {
		sqlite3_stmt *st = NULL;
		int r = store_prepare(s, &st, sqls[i], d);
		if (r)
			return r;
		store_bind_text(st, 1, run_id);
		r = store_step_done(s, st, d, "resetting a run");
		sqlite3_finalize(st);
		if (r)
			return r;
	}
	return 0;
}

static bool same_clean_commit(const char *row_commit, int row_dirty, bool row_dirty_null,
			      const struct store_run_spec *spec)
{
	/* Outside a repository on both sides there is no commit to compare: the identity
	 * alone decides. */
	if (!row_commit && row_dirty_null && !spec->git_commit)
		return true;
	if (!row_commit || !spec->git_commit)
		return false;
	return row_dirty == 0 && !spec->git_dirty && strcmp(row_commit, spec->git_commit) == 0;
}

int store_run_claim(struct store *s, enum store_claim *out, int64_t invocation,
		    const struct store_run_spec *spec, unsigned flags, struct diag *d)
{
	sqlite3_stmt *st = NULL;
	*out = STORE_CLAIM_BUSY;
	int r = store_begin(s, d);
	if (r)
		return r;
	r = store_prepare(s, &st,
		    "SELECT status, pid, host, heartbeat, invocation, git_commit, git_dirty,"
		    " identity, launcher FROM runs WHERE id = ?1",
		    d);
	if (r)
		goto done;
	store_bind_text(st, 1, spec->id);
	int rc = sqlite3_step(st);
	enum store_claim decision;
	bool exists = rc == SQLITE_ROW;
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		r = store_db_error(s, d, "reading a run");
		goto done;
	}
	if (!exists) {
		decision = STORE_CLAIM_RUN;
	} else {
		char status[16];
		snprintf(status, sizeof status, "%s", (const char *)sqlite3_column_text(st, 0));
		const char *ident = (const char *)sqlite3_column_text(st, 7);
		if (ident && strcmp(ident, spec->identity) != 0) {
			r = diag_set(d, FT_ESTORE, "", 0, 0,
				     "run id %s already belongs to another identity (%.12s...)",
				     spec->id, ident);
			goto done;
		}
		int64_t row_inv = sqlite3_column_int64(st, 4);
		bool ours = sqlite3_column_type(st, 4) != SQLITE_NULL && row_inv == invocation;
		bool cluster = sqlite3_column_type(st, 8) != SQLITE_NULL; /* NULL: this machine */
		if (cluster && (strcmp(status, "running") == 0 || strcmp(status, "queued") == 0)) {
			/* Its task may still run on a node; only its journal or Slurm can say
			 * otherwise (ftlab sync). */
			decision = ours ? STORE_CLAIM_DONE : STORE_CLAIM_BUSY;
		} else if (strcmp(status, "running") == 0) {
			const char *host = (const char *)sqlite3_column_text(st, 2);
			if (row_is_stale(host, sqlite3_column_int64(st, 1),
					 sqlite3_column_double(st, 3), 0)) {
				sqlite3_reset(st);
				r = mark_crashed(s, spec->id, d);
				if (r)
					goto done;
				snprintf(status, sizeof status, "crashed");
				decision = (flags & STORE_FLAG_RESUME) ? STORE_CLAIM_RESUME
									: STORE_CLAIM_RUN;
			} else {
				decision = ours ? STORE_CLAIM_DONE : STORE_CLAIM_BUSY;
			}
		} else if (ours) {
			decision = STORE_CLAIM_DONE;
		} else if (strcmp(status, "finished") == 0 || strcmp(status, "stopped") == 0) {
			/* A run early termination stopped is reused like a finished one: the
			 * decision stands until --force. */
			const char *commit_txt = (const char *)sqlite3_column_text(st, 5);
			bool dirty_null = sqlite3_column_type(st, 6) == SQLITE_NULL;
			int dirty = sqlite3_column_int(st, 6);
			decision = !(flags & STORE_FLAG_FORCE) &&
						   same_clean_commit(commit_txt, dirty, dirty_null, spec)
					   ? STORE_CLAIM_CACHED
					   : STORE_CLAIM_RUN;
		} else if (strcmp(status, "killed") == 0 || strcmp(status, "crashed") == 0) {
			decision = (flags & STORE_FLAG_RESUME) ? STORE_CLAIM_RESUME : STORE_CLAIM_RUN;
		} else {
			decision = STORE_CLAIM_RUN; /* queued, failed */
		}
	}
	sqlite3_finalize(st);
	st = NULL;

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
		store_bind_text(st, 1, spec->id);
		store_bind_text(st, 2, spec->experiment);
		sqlite3_bind_int64(st, 3, invocation);
		sqlite3_bind_int64(st, 4, spec->sweep_index);
		store_bind_text(st, 5, spec->params_json ? spec->params_json : "{}");
		store_bind_text(st, 6, spec->config_json ? spec->config_json : "{}");
		store_bind_text(st, 7, spec->identity);
		if (cl) { /* no process here: the journal's start record names node and pid */
			sqlite3_bind_null(st, 8);
			sqlite3_bind_null(st, 9);
		} else {
			sqlite3_bind_int64(st, 8, getpid());
			store_bind_text(st, 9, store_host());
		}
		sqlite3_bind_double(st, 10, now);
		store_bind_text(st, 11, spec->backend);
		store_bind_text(st, 12, spec->device);
		sqlite3_bind_int(st, 13, spec->threads);
		sqlite3_bind_int64(st, 14, spec->seed);
		store_bind_text(st, 15, spec->run_dir);
		store_bind_text(st, 16, spec->git_commit);
		if (spec->git_commit)
			sqlite3_bind_int(st, 17, spec->git_dirty ? 1 : 0);
		else
			sqlite3_bind_null(st, 17);
		sqlite3_bind_int(st, 18, decision == STORE_CLAIM_RESUME);
		store_bind_text(st, 19, cl ? "queued" : "running");
		store_bind_text(st, 20, spec->launcher);
		if (cl)
			sqlite3_bind_null(st, 21);
		else
			sqlite3_bind_double(st, 21, now);
		sqlite3_bind_int(st, 22, cl ? 0 : 1); /* a cluster attempt counts when it starts */
		store_bind_text(st, 23, cl ? spec->submission : NULL);
		r = store_step_done(s, st, d, "claiming a run");
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
	if (r)
		store_rollback(s);
	return r;
}

int store_run_end(struct store *s, const char *run_id, int64_t invocation, const char *status,
		  const char *error, struct diag *d)
{
	sqlite3_stmt *st = NULL;
	int r = store_begin(s, d);
	if (r)
		return r;
	r = store_prepare(s, &st,
		    "UPDATE runs SET status = ?2, error = ?3, finished = ?4, heartbeat = ?4"
		    " WHERE id = ?1",
		    d);
	if (r)
		goto done;
	store_bind_text(st, 1, run_id);
	store_bind_text(st, 2, status);
	store_bind_text(st, 3, error);
	sqlite3_bind_double(st, 4, time_wall());
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

int store_run_heartbeat(struct store *s, const char *run_id, int64_t step, int64_t total,
			struct diag *d)
{
	sqlite3_stmt *st = NULL;
	int r = store_begin(s, d);
	if (r)
		return r;
	r = store_prepare(s, &st,
		    "UPDATE runs SET heartbeat = ?2, step = ?3, total_steps = ?4"
		    " WHERE id = ?1 AND status = 'running' AND pid = ?5 AND host = ?6",
		    d);
	if (r)
		goto done;
	store_bind_text(st, 1, run_id);
	sqlite3_bind_double(st, 2, time_wall());
	sqlite3_bind_int64(st, 3, step);
	sqlite3_bind_int64(st, 4, total);
	sqlite3_bind_int64(st, 5, getpid());
	store_bind_text(st, 6, store_host());
	r = store_step_done(s, st, d, "heartbeat");
	if (!r)
		r = store_commit(s, d);
done:
	sqlite3_finalize(st);
	if (r)
		store_rollback(s);
	return r;
}
