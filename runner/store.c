/* store: SQLite adapter (the only file that includes sqlite3.h). Schema and migrations,
 * the atomic run claim, stale-run reaping, the batched per-run writer and the readers.
 * Every write is a short BEGIN IMMEDIATE transaction; busy waits are left to SQLite's
 * busy timeout. docs/store.md documents every table and column. */
#include "runner/store.h"

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

#include <sqlite3.h>

#include "common/sha256.h"
#include "common/util.h"

#define BUSY_TIMEOUT_MS 30000

struct store {
	sqlite3 *db;
	char *workspace;
	char *path;
};

/* Version 1: the schema of PRODUCT.md §5. Forward-only: a later version appends a new
 * entry to `migrations` and never edits an old one. */
static const char *const migrations[] = {
	/* 0 -> 1 */
	"CREATE TABLE experiments ("
	" name TEXT PRIMARY KEY,"
	" spec TEXT NOT NULL,"
	" spec_hash TEXT NOT NULL,"
	" source_path TEXT NOT NULL,"
	" created REAL NOT NULL,"
	" updated REAL NOT NULL);"
	"CREATE TABLE invocations ("
	" id INTEGER PRIMARY KEY,"
	" experiment TEXT NOT NULL,"
	" argv TEXT NOT NULL,"
	" host TEXT NOT NULL,"
	" pid INTEGER NOT NULL,"
	" git_commit TEXT, git_branch TEXT, git_dirty INTEGER, git_remote TEXT, git_root TEXT,"
	" git_changed TEXT,"
	" status TEXT NOT NULL DEFAULT 'running',"
	" started REAL NOT NULL,"
	" finished REAL);"
	"CREATE TABLE runs ("
	" id TEXT PRIMARY KEY,"
	" experiment TEXT NOT NULL,"
	" invocation INTEGER REFERENCES invocations(id),"
	" sweep_index INTEGER NOT NULL,"
	" params TEXT NOT NULL,"
	" config TEXT NOT NULL,"
	" identity TEXT NOT NULL,"
	" status TEXT NOT NULL CHECK (status IN"
	"  ('queued','running','finished','failed','killed','crashed','cached')),"
	" pid INTEGER, host TEXT, heartbeat REAL,"
	" created REAL NOT NULL, started REAL, finished REAL,"
	" backend TEXT, device TEXT, threads INTEGER, seed INTEGER, error TEXT,"
	" run_dir TEXT, step INTEGER NOT NULL DEFAULT 0, total_steps INTEGER NOT NULL DEFAULT 0,"
	" attempts INTEGER NOT NULL DEFAULT 0,"
	" git_commit TEXT, git_dirty INTEGER);"
	"CREATE INDEX runs_experiment ON runs(experiment, sweep_index);"
	"CREATE INDEX runs_status ON runs(status);"
	"CREATE TABLE invocation_runs ("
	" invocation INTEGER NOT NULL REFERENCES invocations(id),"
	" run TEXT NOT NULL REFERENCES runs(id),"
	" status TEXT NOT NULL,"
	" PRIMARY KEY (invocation, run));"
	"CREATE TABLE metrics ("
	" run TEXT NOT NULL REFERENCES runs(id),"
	" split TEXT NOT NULL,"
	" name TEXT NOT NULL,"
	" step INTEGER NOT NULL,"
	" value REAL,"
	" time REAL NOT NULL,"
	" PRIMARY KEY (run, split, name, step)) WITHOUT ROWID;"
	"CREATE TABLE results ("
	" run TEXT NOT NULL REFERENCES runs(id),"
	" model TEXT NOT NULL CHECK (model IN ('base','tuned','delta')),"
	" split TEXT NOT NULL,"
	" metric TEXT NOT NULL,"
	" value REAL,"
	" ci_low REAL, ci_high REAL,"
	" PRIMARY KEY (run, model, split, metric));"
	"CREATE TABLE predictions ("
	" run TEXT NOT NULL REFERENCES runs(id),"
	" model TEXT NOT NULL,"
	" split TEXT NOT NULL,"
	" example INTEGER NOT NULL,"
	" prompt TEXT, reference TEXT, output TEXT, score REAL,"
	" PRIMARY KEY (run, model, split, example));"
	"CREATE TABLE artifacts ("
	" run TEXT NOT NULL REFERENCES runs(id),"
	" kind TEXT NOT NULL,"
	" path TEXT NOT NULL,"
	" bytes INTEGER NOT NULL,"
	" sha256 TEXT NOT NULL,"
	" PRIMARY KEY (run, path));"
	"CREATE TABLE events ("
	" id INTEGER PRIMARY KEY,"
	" run TEXT REFERENCES runs(id),"
	" time REAL NOT NULL,"
	" level TEXT NOT NULL,"
	" kind TEXT NOT NULL,"
	" message TEXT NOT NULL);"
	"CREATE INDEX events_run ON events(run, id);",
};

_Static_assert(FT_ARRAY_LEN(migrations) == STORE_SCHEMA_VERSION,
	       "one migration per schema version");

static int db_error(struct store *s, struct diag *d, const char *what)
{
	int code = sqlite3_extended_errcode(s->db);
	const char *msg = sqlite3_errmsg(s->db);
	if ((code & 0xff) == SQLITE_READONLY)
		return diag_set(d, FT_EIO, "", 0, 0, "store %s is read-only (%s): %s", s->path,
				what, msg);
	if ((code & 0xff) == SQLITE_FULL)
		return diag_set(d, FT_EIO, "", 0, 0, "disk full while writing %s (%s)", s->path,
				what);
	return diag_set(d, FT_ESTORE, "", 0, 0, "store %s: %s: %s", s->path, what, msg);
}

static int exec_sql(struct store *s, const char *sql, struct diag *d)
{
	char *err = NULL;
	if (sqlite3_exec(s->db, sql, NULL, NULL, &err) != SQLITE_OK) {
		int r = db_error(s, d, sql);
		sqlite3_free(err);
		return r;
	}
	return 0;
}

static int begin(struct store *s, struct diag *d)
{
	return exec_sql(s, "BEGIN IMMEDIATE", d);
}

static int commit(struct store *s, struct diag *d)
{
	return exec_sql(s, "COMMIT", d);
}

static void rollback(struct store *s)
{
	if (!sqlite3_get_autocommit(s->db))
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

static int prepare(struct store *s, sqlite3_stmt **out, const char *sql, struct diag *d)
{
	if (sqlite3_prepare_v2(s->db, sql, -1, out, NULL) != SQLITE_OK) {
		*out = NULL;
		return db_error(s, d, "prepare");
	}
	return 0;
}

static void bind_text(sqlite3_stmt *st, int i, const char *v)
{
	if (v)
		sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(st, i);
}

static void bind_real(sqlite3_stmt *st, int i, double v)
{
	if (isnan(v))
		sqlite3_bind_null(st, i);
	else
		sqlite3_bind_double(st, i, v);
}

/* Runs a statement to completion (no rows expected). */
static int step_done(struct store *s, sqlite3_stmt *st, struct diag *d, const char *what)
{
	int rc = sqlite3_step(st);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		return db_error(s, d, what);
	sqlite3_reset(st);
	return 0;
}

const char *store_host(void)
{
	static char host[256];
	if (!host[0]) {
		if (gethostname(host, sizeof host - 1) != 0 || !host[0])
			snprintf(host, sizeof host, "localhost");
		host[sizeof host - 1] = '\0';
	}
	return host;
}

static int migrate(struct store *s, struct diag *d)
{
	sqlite3_stmt *st = NULL;
	int r = begin(s, d);
	if (r)
		return r;
	r = prepare(s, &st, "PRAGMA user_version", d);
	if (r)
		goto done;
	int version = 0;
	if (sqlite3_step(st) == SQLITE_ROW)
		version = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	st = NULL;
	if (version > STORE_SCHEMA_VERSION) {
		r = diag_set(d, FT_ENEWER, "", 0, 0,
			     "store %s has schema version %d; this ftlab (%s) knows up to %d",
			     s->path, version, "0.1.0", STORE_SCHEMA_VERSION);
		diag_hint(d, "use a newer ftlab, or another --workspace");
		goto done;
	}
	for (int v = version; v < STORE_SCHEMA_VERSION; v++) {
		r = exec_sql(s, migrations[v], d);
		if (r)
			goto done;
	}
	if (version != STORE_SCHEMA_VERSION) {
		char sql[64];
		snprintf(sql, sizeof sql, "PRAGMA user_version = %d", STORE_SCHEMA_VERSION);
		r = exec_sql(s, sql, d);
		if (r)
			goto done;
	}
	r = commit(s, d);
done:
	if (r)
		rollback(s);
	return r;
}

int store_open(struct store **out, const char *workspace, bool create, struct diag *d)
{
	*out = NULL;
	struct store *s = calloc(1, sizeof *s);
	if (!s)
		return diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory opening the store");
	int r = 0;
	s->workspace = ft_strdup(workspace);
	s->path = path_join(workspace, "ftlab.db");
	if (!s->workspace || !s->path) {
		r = diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory opening the store");
		goto done;
	}
	struct stat sb;
	if (stat(workspace, &sb) != 0) {
		if (!create) {
			r = diag_set(d, FT_EINVAL, "", 0, 0,
				     "workspace '%s' does not exist (no runs recorded yet?)", workspace);
			diag_hint(d, "run 'ftlab run EXP.yaml' first, or pass --workspace DIR");
			goto done;
		}
		char *parent = path_dirname(workspace);
		bool parent_ok = parent && path_exists(parent);
		free(parent);
		if (!parent_ok) {
			r = diag_set(d, FT_EINVAL, "", 0, 0,
				     "cannot create workspace '%s': its parent directory does not exist",
				     workspace);
			goto done;
		}
		if (mkdir(workspace, 0777) != 0 && errno != EEXIST) {
			r = diag_set(d, FT_EIO, "", 0, 0, "cannot create workspace '%s': %s", workspace,
				     strerror(errno));
			goto done;
		}
	} else if (!S_ISDIR(sb.st_mode)) {
		r = diag_set(d, FT_EINVAL, "", 0, 0, "workspace '%s' is not a directory", workspace);
		goto done;
	}
	bool exists = path_exists(s->path);
	if (create && access(workspace, W_OK) != 0) {
		r = diag_set(d, FT_EIO, "", 0, 0, "workspace '%s' is not writable: %s", workspace,
			     strerror(errno));
		goto done;
	}
	if (!exists && !create) {
		r = diag_set(d, FT_EINVAL, "", 0, 0, "no store at %s (no runs recorded yet?)", s->path);
		goto done;
	}
	int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
	if (sqlite3_open_v2(s->path, &s->db, flags, NULL) != SQLITE_OK) {
		r = diag_set(d, FT_ESTORE, "", 0, 0, "cannot open store %s: %s", s->path,
			     s->db ? sqlite3_errmsg(s->db) : "out of memory");
		goto done;
	}
	sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);
	sqlite3_extended_result_codes(s->db, 1);
	/* WAL lets readers (ls, show, reports) proceed while a run writes. Switching a new
	 * database to WAL needs an exclusive lock, and SQLite answers SQLITE_BUSY at once
	 * (without the busy handler) while another process is creating the same store, so
	 * the switch is retried for as long as the busy timeout allows. */
	static const char *const open_sql = "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; "
					    "PRAGMA foreign_keys=ON;";
	for (double t0 = time_monotonic();;) {
		int er = sqlite3_exec(s->db, open_sql, NULL, NULL, NULL);
		if (er == SQLITE_OK)
			break;
		if (((er & 0xff) != SQLITE_BUSY && (er & 0xff) != SQLITE_LOCKED) ||
		    time_monotonic() - t0 > BUSY_TIMEOUT_MS / 1000.0) {
			r = db_error(s, d, open_sql);
			goto done;
		}
		struct timespec pause = {0, 20 * 1000 * 1000};
		nanosleep(&pause, NULL);
	}
	r = migrate(s, d);
done:
	if (r) {
		store_close(s);
		return r;
	}
	*out = s;
	return 0;
}

void store_close(struct store *s)
{
	if (!s)
		return;
	if (s->db)
		sqlite3_close_v2(s->db);
	free(s->workspace);
	free(s->path);
	free(s);
}

const char *store_workspace(const struct store *s)
{
	return s->workspace;
}

/* ---- experiments and invocations ---- */

int store_experiment_put(struct store *s, const char *name, const char *spec_json,
			 const char *spec_hash, const char *source_path, struct diag *d)
{
	sqlite3_stmt *st = NULL;
	int r = begin(s, d);
	if (r)
		return r;
	r = prepare(s, &st,
		    "INSERT INTO experiments(name, spec, spec_hash, source_path, created, updated)"
		    " VALUES (?1, ?2, ?3, ?4, ?5, ?5) ON CONFLICT(name) DO UPDATE SET"
		    " spec = excluded.spec, spec_hash = excluded.spec_hash,"
		    " source_path = excluded.source_path, updated = excluded.updated",
		    d);
	if (r)
		goto done;
	bind_text(st, 1, name);
	bind_text(st, 2, spec_json);
	bind_text(st, 3, spec_hash);
	bind_text(st, 4, source_path);
	sqlite3_bind_double(st, 5, time_wall());
	r = step_done(s, st, d, "recording the experiment");
	if (!r)
		r = commit(s, d);
done:
	sqlite3_finalize(st);
	if (r)
		rollback(s);
	return r;
}

int store_invocation_begin(struct store *s, int64_t *out, const char *experiment,
			   const char *argv_json, const struct store_provenance *prov,
			   struct diag *d)
{
	sqlite3_stmt *st = NULL;
	*out = 0;
	int r = begin(s, d);
	if (r)
		return r;
	r = prepare(s, &st,
		    "INSERT INTO invocations(experiment, argv, host, pid, git_commit, git_branch,"
		    " git_dirty, git_remote, git_root, git_changed, started)"
		    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
		    d);
	if (r)
		goto done;
	bind_text(st, 1, experiment);
	bind_text(st, 2, argv_json);
	bind_text(st, 3, store_host());
	sqlite3_bind_int64(st, 4, getpid());
	if (prov && prov->is_repo) {
		bind_text(st, 5, prov->commit);
		bind_text(st, 6, prov->branch);
		sqlite3_bind_int(st, 7, prov->dirty ? 1 : 0);
		bind_text(st, 8, prov->remote);
		bind_text(st, 9, prov->root);
		bind_text(st, 10, prov->changed);
	}
	sqlite3_bind_double(st, 11, time_wall());
	r = step_done(s, st, d, "recording the invocation");
	if (r)
		goto done;
	*out = sqlite3_last_insert_rowid(s->db);
	r = commit(s, d);
done:
	sqlite3_finalize(st);
	if (r)
		rollback(s);
	return r;
}

int store_invocation_end(struct store *s, int64_t id, const char *status, struct diag *d)
{
	sqlite3_stmt *st = NULL;
	int r = begin(s, d);
	if (r)
		return r;
	r = prepare(s, &st, "UPDATE invocations SET status = ?1, finished = ?2 WHERE id = ?3", d);
	if (r)
		goto done;
	bind_text(st, 1, status);
	sqlite3_bind_double(st, 2, time_wall());
	sqlite3_bind_int64(st, 3, id);
	r = step_done(s, st, d, "ending the invocation");
	if (!r)
		r = commit(s, d);
done:
	sqlite3_finalize(st);
	if (r)
		rollback(s);
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
	int r = prepare(s, &st,
			"UPDATE runs SET status = 'crashed', finished = ?2,"
			" error = 'the process running it is gone (pid gone or heartbeat stale)'"
			" WHERE id = ?1 AND status = 'running'",
			d);
	if (r)
		return r;
	bind_text(st, 1, run_id);
	sqlite3_bind_double(st, 2, time_wall());
	r = step_done(s, st, d, "marking a run crashed");
	sqlite3_finalize(st);
	if (r)
		return r;
	r = prepare(s, &st,
		    "INSERT INTO events(run, time, level, kind, message) VALUES (?1, ?2, 'error',"
		    " 'crashed', 'run marked crashed: its process is gone')",
		    d);
	if (r)
		return r;
	bind_text(st, 1, run_id);
	sqlite3_bind_double(st, 2, time_wall());
	r = step_done(s, st, d, "recording a crash");
	sqlite3_finalize(st);
	return r;
}

int store_reap_stale(struct store *s, double max_age_s, int *out_n, struct diag *d)
{
	sqlite3_stmt *st = NULL;
	int n = 0;
	if (out_n)
		*out_n = 0;
	int r = begin(s, d);
	if (r)
		return r;
	r = prepare(s, &st, "SELECT id, host, pid, heartbeat FROM runs WHERE status = 'running'", d);
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
		r = commit(s, d);
done:
	sqlite3_finalize(st);
	if (r)
		rollback(s);
	else if (out_n)
		*out_n = n;
	return r;
}

static int record_invocation_run(struct store *s, int64_t invocation, const char *run_id,
				 const char *status, struct diag *d)
{
	sqlite3_stmt *st = NULL;
	int r = prepare(s, &st,
			"INSERT INTO invocation_runs(invocation, run, status) VALUES (?1, ?2, ?3)"
			" ON CONFLICT(invocation, run) DO UPDATE SET status = excluded.status",
			d);
	if (r)
		return r;
	sqlite3_bind_int64(st, 1, invocation);
	bind_text(st, 2, run_id);
	bind_text(st, 3, status);
	r = step_done(s, st, d, "recording the run of an invocation");
	sqlite3_finalize(st);
	return r;
}

/* Deletes what an earlier attempt of the run measured (a fresh start). */
static int reset_run_rows(struct store *s, const char *run_id, struct diag *d)
{
	static const char *const sqls[] = {
		"DELETE FROM metrics WHERE run = ?1",     "DELETE FROM results WHERE run = ?1",
		"DELETE FROM predictions WHERE run = ?1", "DELETE FROM artifacts WHERE run = ?1",
		"DELETE FROM events WHERE run = ?1",
	};
	for (size_t i = 0; i < FT_ARRAY_LEN(sqls); i++) {
		sqlite3_stmt *st = NULL;
		int r = prepare(s, &st, sqls[i], d);
		if (r)
			return r;
		bind_text(st, 1, run_id);
		r = step_done(s, st, d, "resetting a run");
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
	int r = begin(s, d);
	if (r)
		return r;
	r = prepare(s, &st,
		    "SELECT status, pid, host, heartbeat, invocation, git_commit, git_dirty,"
		    " identity FROM runs WHERE id = ?1",
		    d);
	if (r)
		goto done;
	bind_text(st, 1, spec->id);
	int rc = sqlite3_step(st);
	enum store_claim decision;
	bool exists = rc == SQLITE_ROW;
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		r = db_error(s, d, "reading a run");
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
		if (strcmp(status, "running") == 0) {
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
		} else if (strcmp(status, "finished") == 0) {
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
		r = prepare(s, &st,
			    "INSERT INTO runs(id, experiment, invocation, sweep_index, params, config,"
			    " identity, status, pid, host, heartbeat, created, started, backend, device,"
			    " threads, seed, run_dir, attempts, git_commit, git_dirty, step, total_steps)"
			    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'running', ?8, ?9, ?10, ?10, ?10, ?11,"
			    " ?12, ?13, ?14, ?15, 1, ?16, ?17, 0, 0)"
			    " ON CONFLICT(id) DO UPDATE SET experiment = excluded.experiment,"
			    " invocation = excluded.invocation, sweep_index = excluded.sweep_index,"
			    " params = excluded.params, config = excluded.config, status = 'running',"
			    " pid = excluded.pid, host = excluded.host, heartbeat = excluded.heartbeat,"
			    " started = excluded.started, finished = NULL, error = NULL,"
			    " backend = excluded.backend, device = excluded.device,"
			    " threads = excluded.threads, seed = excluded.seed, run_dir = excluded.run_dir,"
			    " attempts = attempts + 1, git_commit = excluded.git_commit,"
			    " git_dirty = excluded.git_dirty,"
			    " step = CASE WHEN ?18 THEN step ELSE 0 END,"
			    " total_steps = CASE WHEN ?18 THEN total_steps ELSE 0 END",
			    d);
		if (r)
			goto done;
		bind_text(st, 1, spec->id);
		bind_text(st, 2, spec->experiment);
		sqlite3_bind_int64(st, 3, invocation);
		sqlite3_bind_int64(st, 4, spec->sweep_index);
		bind_text(st, 5, spec->params_json ? spec->params_json : "{}");
		bind_text(st, 6, spec->config_json ? spec->config_json : "{}");
		bind_text(st, 7, spec->identity);
		sqlite3_bind_int64(st, 8, getpid());
		bind_text(st, 9, store_host());
		sqlite3_bind_double(st, 10, now);
		bind_text(st, 11, spec->backend);
		bind_text(st, 12, spec->device);
		sqlite3_bind_int(st, 13, spec->threads);
		sqlite3_bind_int64(st, 14, spec->seed);
		bind_text(st, 15, spec->run_dir);
		bind_text(st, 16, spec->git_commit);
		if (spec->git_commit)
			sqlite3_bind_int(st, 17, spec->git_dirty ? 1 : 0);
		else
			sqlite3_bind_null(st, 17);
		sqlite3_bind_int(st, 18, decision == STORE_CLAIM_RESUME);
		r = step_done(s, st, d, "claiming a run");
		if (!r)
			r = record_invocation_run(s, invocation, spec->id, "running", d);
	}
	if (!r)
		r = commit(s, d);
	if (!r)
		*out = decision;
done:
	sqlite3_finalize(st);
	if (r)
		rollback(s);
	return r;
}

int store_run_end(struct store *s, const char *run_id, int64_t invocation, const char *status,
		  const char *error, struct diag *d)
{
	sqlite3_stmt *st = NULL;
	int r = begin(s, d);
	if (r)
		return r;
	r = prepare(s, &st,
		    "UPDATE runs SET status = ?2, error = ?3, finished = ?4, heartbeat = ?4"
		    " WHERE id = ?1",
		    d);
	if (r)
		goto done;
	bind_text(st, 1, run_id);
	bind_text(st, 2, status);
	bind_text(st, 3, error);
	sqlite3_bind_double(st, 4, time_wall());
	r = step_done(s, st, d, "ending a run");
	if (!r)
		r = record_invocation_run(s, invocation, run_id, status, d);
	if (!r)
		r = commit(s, d);
done:
	sqlite3_finalize(st);
	if (r)
		rollback(s);
	return r;
}

int store_run_heartbeat(struct store *s, const char *run_id, int64_t step, int64_t total,
			struct diag *d)
{
	sqlite3_stmt *st = NULL;
	int r = begin(s, d);
	if (r)
		return r;
	r = prepare(s, &st,
		    "UPDATE runs SET heartbeat = ?2, step = ?3, total_steps = ?4"
		    " WHERE id = ?1 AND status = 'running' AND pid = ?5 AND host = ?6",
		    d);
	if (r)
		goto done;
	bind_text(st, 1, run_id);
	sqlite3_bind_double(st, 2, time_wall());
	sqlite3_bind_int64(st, 3, step);
	sqlite3_bind_int64(st, 4, total);
	sqlite3_bind_int64(st, 5, getpid());
	bind_text(st, 6, store_host());
	r = step_done(s, st, d, "heartbeat");
	if (!r)
		r = commit(s, d);
done:
	sqlite3_finalize(st);
	if (r)
		rollback(s);
	return r;
}

/* ---- the batched writer ---- */

struct pending_metric {
	char *split, *name;
	int64_t step;
	double value, time;
};

struct pending_prediction {
	char *model, *split, *prompt, *reference, *output;
	int64_t example;
	double score;
};

struct store_writer {
	struct store *s;
	char *run_id;
	double flush_interval_s, last_flush;
	struct pending_metric *metrics;
	size_t n_metrics, cap_metrics;
	struct pending_prediction *preds;
	size_t n_preds, cap_preds;
	sqlite3_stmt *ins_metric, *ins_pred;
	struct diag err;
};

int store_writer_open(struct store_writer **out, struct store *s, const char *run_id,
		      double flush_interval_s, struct diag *d)
{
	*out = NULL;
	struct store_writer *w = calloc(1, sizeof *w);
	if (!w || !(w->run_id = ft_strdup(run_id))) {
		free(w);
		return diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
	}
	w->s = s;
	w->flush_interval_s = flush_interval_s;
	w->last_flush = time_monotonic();
	diag_init(&w->err);
	int r = prepare(s, &w->ins_metric,
			"INSERT OR REPLACE INTO metrics(run, split, name, step, value, time)"
			" VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
			d);
	if (!r)
		r = prepare(s, &w->ins_pred,
			    "INSERT OR REPLACE INTO predictions(run, model, split, example, prompt,"
			    " reference, output, score) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
			    d);
	if (r) {
		store_writer_free(w);
		return r;
	}
	*out = w;
	return 0;
}

static void clear_pending(struct store_writer *w)
{
	for (size_t i = 0; i < w->n_metrics; i++) {
		free(w->metrics[i].split);
		free(w->metrics[i].name);
	}
	w->n_metrics = 0;
	for (size_t i = 0; i < w->n_preds; i++) {
		struct pending_prediction *p = &w->preds[i];
		free(p->model);
		free(p->split);
		free(p->prompt);
		free(p->reference);
		free(p->output);
	}
	w->n_preds = 0;
}

int store_writer_flush(struct store_writer *w)
{
	if (w->err.code) {
		clear_pending(w);
		return w->err.code;
	}
	w->last_flush = time_monotonic();
	if (w->n_metrics == 0 && w->n_preds == 0)
		return 0;
	struct store *s = w->s;
	int r = begin(s, &w->err);
	if (r)
		goto done;
	sqlite3_bind_text(w->ins_metric, 1, w->run_id, -1, SQLITE_STATIC);
	for (size_t i = 0; i < w->n_metrics && !r; i++) {
		const struct pending_metric *m = &w->metrics[i];
		sqlite3_bind_text(w->ins_metric, 2, m->split, -1, SQLITE_STATIC);
		sqlite3_bind_text(w->ins_metric, 3, m->name, -1, SQLITE_STATIC);
		sqlite3_bind_int64(w->ins_metric, 4, m->step);
		bind_real(w->ins_metric, 5, isfinite(m->value) ? m->value : NAN);
		sqlite3_bind_double(w->ins_metric, 6, m->time);
		r = step_done(s, w->ins_metric, &w->err, "writing metrics");
	}
	sqlite3_bind_text(w->ins_pred, 1, w->run_id, -1, SQLITE_STATIC);
	for (size_t i = 0; i < w->n_preds && !r; i++) {
		const struct pending_prediction *p = &w->preds[i];
		sqlite3_bind_text(w->ins_pred, 2, p->model, -1, SQLITE_STATIC);
		sqlite3_bind_text(w->ins_pred, 3, p->split, -1, SQLITE_STATIC);
		sqlite3_bind_int64(w->ins_pred, 4, p->example);
		bind_text(w->ins_pred, 5, p->prompt);
		bind_text(w->ins_pred, 6, p->reference);
		bind_text(w->ins_pred, 7, p->output);
		bind_real(w->ins_pred, 8, p->score);
		r = step_done(s, w->ins_pred, &w->err, "writing predictions");
	}
	sqlite3_clear_bindings(w->ins_metric);
	sqlite3_clear_bindings(w->ins_pred);
	if (!r)
		r = commit(s, &w->err);
done:
	if (r)
		rollback(s);
	clear_pending(w);
	return r;
}

static int maybe_flush(struct store_writer *w)
{
	if (w->n_metrics + w->n_preds >= STORE_BATCH ||
	    time_monotonic() - w->last_flush >= w->flush_interval_s)
		return store_writer_flush(w);
	return 0;
}

static int writer_nomem(struct store_writer *w)
{
	return diag_set(&w->err, FT_ENOMEM, "", 0, 0, "out of memory buffering run records");
}

int store_writer_metric(struct store_writer *w, const char *split, const char *name,
			int64_t step, double value)
{
	if (w->err.code)
		return w->err.code;
	if (w->n_metrics == w->cap_metrics) {
		size_t cap = w->cap_metrics ? w->cap_metrics * 2 : 256;
		struct pending_metric *g = realloc(w->metrics, cap * sizeof *g);
		if (!g)
			return writer_nomem(w);
		w->metrics = g;
		w->cap_metrics = cap;
	}
	struct pending_metric *m = &w->metrics[w->n_metrics];
	m->split = ft_strdup(split);
	m->name = ft_strdup(name);
	if (!m->split || !m->name) {
		free(m->split);
		free(m->name);
		return writer_nomem(w);
	}
	m->step = step;
	m->value = value;
	m->time = time_wall();
	w->n_metrics++;
	return maybe_flush(w);
}

static char *dup_or_null(const char *s, bool *fail)
{
	if (!s)
		return NULL;
	char *c = ft_strdup(s);
	if (!c)
		*fail = true;
	return c;
}

int store_writer_prediction(struct store_writer *w, const char *model, const char *split,
			    int64_t example, const char *prompt, const char *reference,
			    const char *output, double score)
{
	if (w->err.code)
		return w->err.code;
	if (w->n_preds == w->cap_preds) {
		size_t cap = w->cap_preds ? w->cap_preds * 2 : 64;
		struct pending_prediction *g = realloc(w->preds, cap * sizeof *g);
		if (!g)
			return writer_nomem(w);
		w->preds = g;
		w->cap_preds = cap;
	}
	bool fail = false;
	struct pending_prediction *p = &w->preds[w->n_preds];
	p->model = dup_or_null(model ? model : "tuned", &fail);
	p->split = dup_or_null(split, &fail);
	p->prompt = dup_or_null(prompt, &fail);
	p->reference = dup_or_null(reference, &fail);
	p->output = dup_or_null(output, &fail);
	p->example = example;
	p->score = score;
	w->n_preds++;
	if (fail)
		return writer_nomem(w);
	return maybe_flush(w);
}

int store_writer_result(struct store_writer *w, const char *model, const char *split,
			const char *metric, double value, double ci_low, double ci_high)
{
	if (w->err.code)
		return w->err.code;
	struct store *s = w->s;
	sqlite3_stmt *st = NULL;
	int r = begin(s, &w->err);
	if (r)
		return r;
	r = prepare(s, &st,
		    "INSERT OR REPLACE INTO results(run, model, split, metric, value, ci_low, ci_high)"
		    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
		    &w->err);
	if (r)
		goto done;
	bind_text(st, 1, w->run_id);
	bind_text(st, 2, model ? model : "tuned");
	bind_text(st, 3, split);
	bind_text(st, 4, metric);
	bind_real(st, 5, isfinite(value) ? value : NAN);
	bind_real(st, 6, ci_low);
	bind_real(st, 7, ci_high);
	r = step_done(s, st, &w->err, "writing a result");
	if (!r)
		r = commit(s, &w->err);
done:
	sqlite3_finalize(st);
	if (r)
		rollback(s);
	return r;
}

int store_writer_event(struct store_writer *w, const char *level, const char *kind,
		       const char *message)
{
	if (w->err.code)
		return w->err.code;
	struct store *s = w->s;
	sqlite3_stmt *st = NULL;
	int r = begin(s, &w->err);
	if (r)
		return r;
	r = prepare(s, &st,
		    "INSERT INTO events(run, time, level, kind, message) VALUES (?1, ?2, ?3, ?4, ?5)",
		    &w->err);
	if (r)
		goto done;
	bind_text(st, 1, w->run_id);
	sqlite3_bind_double(st, 2, time_wall());
	bind_text(st, 3, level);
	bind_text(st, 4, kind);
	bind_text(st, 5, message);
	r = step_done(s, st, &w->err, "writing an event");
	if (!r)
		r = commit(s, &w->err);
done:
	sqlite3_finalize(st);
	if (r)
		rollback(s);
	return r;
}

/* sha256 and size of a file, streamed. */
static int hash_file(const char *path, char hex[65], int64_t *out_bytes)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return FT_EIO;
	struct sha256 h;
	sha256_init(&h);
	unsigned char buf[65536];
	size_t n;
	int64_t total = 0;
	while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
		sha256_update(&h, buf, n);
		total += (int64_t)n;
	}
	int err = ferror(f);
	fclose(f);
	if (err)
		return FT_EIO;
	uint8_t dig[32];
	sha256_final(&h, dig);
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", dig[i]);
	*out_bytes = total;
	return 0;
}

/* A directory artifact (a checkpoint, an adapter) is hashed as the sha256 over its entries
 * in name order: "name\0" + the entry's own hex digest + "\n", recursively; its size is
 * the sum of its files' sizes. */
static int hash_dir(const char *path, char hex[65], int64_t *out_bytes, int depth)
{
	if (depth > 16)
		return FT_EIO;
	struct dirent **names = NULL;
	int n = scandir(path, &names, NULL, alphasort);
	if (n < 0)
		return FT_EIO;
	struct sha256 h;
	sha256_init(&h);
	int64_t total = 0;
	int rc = 0;
	for (int i = 0; i < n; i++) {
		const char *nm = names[i]->d_name;
		if (rc == 0 && strcmp(nm, ".") != 0 && strcmp(nm, "..") != 0) {
			char *child = path_join(path, nm);
			char sub[65];
			int64_t bytes = 0;
			struct stat st;
			if (!child || stat(child, &st) != 0)
				rc = FT_EIO;
			else if (S_ISDIR(st.st_mode))
				rc = hash_dir(child, sub, &bytes, depth + 1);
			else
				rc = hash_file(child, sub, &bytes);
			free(child);
			if (rc == 0) {
				sha256_update(&h, nm, strlen(nm) + 1);
				sha256_update(&h, sub, 64);
				sha256_update(&h, "\n", 1);
				total += bytes;
			}
		}
		free(names[i]);
	}
	free(names);
	if (rc)
		return rc;
	uint8_t dig[32];
	sha256_final(&h, dig);
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", dig[i]);
	*out_bytes = total;
	return 0;
}

static int hash_path(const char *path, char hex[65], int64_t *out_bytes)
{
	struct stat st;
	if (stat(path, &st) != 0)
		return FT_EIO;
	return S_ISDIR(st.st_mode) ? hash_dir(path, hex, out_bytes, 0)
				   : hash_file(path, hex, out_bytes);
}

int store_writer_artifact(struct store_writer *w, const char *kind, const char *path,
			  const char *run_dir)
{
	if (w->err.code)
		return w->err.code;
	char *full = path[0] == '/' || !run_dir ? ft_strdup(path) : path_join(run_dir, path);
	if (!full)
		return writer_nomem(w);
	char hex[65] = "";
	int64_t bytes = 0;
	if (hash_path(full, hex, &bytes) != 0) {
		int r = diag_set(&w->err, FT_EIO, "", 0, 0, "cannot read artifact %s: %s", full,
				 strerror(errno));
		free(full);
		return r;
	}
	free(full);
	struct store *s = w->s;
	sqlite3_stmt *st = NULL;
	int r = begin(s, &w->err);
	if (r)
		return r;
	r = prepare(s, &st,
		    "INSERT OR REPLACE INTO artifacts(run, kind, path, bytes, sha256)"
		    " VALUES (?1, ?2, ?3, ?4, ?5)",
		    &w->err);
	if (r)
		goto done;
	/* Paths inside the run directory are stored relative to it (as docs/store.md says). */
	size_t rl = run_dir ? strlen(run_dir) : 0;
	const char *stored = path;
	if (rl && path[0] == '/' && strncmp(path, run_dir, rl) == 0 && path[rl] == '/' && path[rl + 1])
		stored = path + rl + 1;
	bind_text(st, 1, w->run_id);
	bind_text(st, 2, kind);
	bind_text(st, 3, stored);
	sqlite3_bind_int64(st, 4, bytes);
	bind_text(st, 5, hex);
	r = step_done(s, st, &w->err, "writing an artifact");
	if (!r)
		r = commit(s, &w->err);
done:
	sqlite3_finalize(st);
	if (r)
		rollback(s);
	return r;
}

const struct diag *store_writer_error(const struct store_writer *w)
{
	return w->err.code ? &w->err : NULL;
}

void store_writer_free(struct store_writer *w)
{
	if (!w)
		return;
	if (w->ins_metric && w->ins_pred)
		if (store_writer_flush(w) != 0) {
			/* reported through store_writer_error before the free */
		}
	clear_pending(w);
	sqlite3_finalize(w->ins_metric);
	sqlite3_finalize(w->ins_pred);
	free(w->metrics);
	free(w->preds);
	free(w->run_id);
	free(w);
}

/* ---- readers ---- */

static char *col_text(sqlite3_stmt *st, int i)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	return t ? ft_strdup((const char *)t) : NULL;
}

static double col_real_or_nan(sqlite3_stmt *st, int i)
{
	return sqlite3_column_type(st, i) == SQLITE_NULL ? NAN : sqlite3_column_double(st, i);
}

/* Grows a list's items array by one zeroed element; returns it or NULL. */
static void *list_push(void **items, size_t *n, size_t elem)
{
	size_t bytes;
	if (!size_mul(*n + 1, elem, &bytes))
		return NULL;
	void *g = realloc(*items, bytes);
	if (!g)
		return NULL;
	*items = g;
	char *e = (char *)g + *n * elem;
	memset(e, 0, elem);
	(*n)++;
	return e;
}

/* How one result column becomes a field of an item. */
enum col_type {
	COL_TEXT,     /* char *, NULL when the value is NULL */
	COL_KEY,      /* char * of a NOT NULL column: NULL means out of memory */
	COL_INT,      /* int */
	COL_INT64,    /* int64_t */
	COL_REAL,     /* double, 0 when NULL */
	COL_REAL_NAN, /* double, NAN when NULL */
	COL_TRISTATE  /* int: 0, 1, or -1 when NULL */
};

/* Column i of a row is stored at byte offset cols[i].at of the item. */
struct col {
	enum col_type type;
	size_t at;
};

/* One list reader: its query, the item it fills column by column, and what it reads (for
 * messages). The same table frees the item's strings. */
struct list_kind {
	const char *sql;
	size_t elem;
	const struct col *cols;
	size_t n_cols;
	const char *what; /* "reading runs" */
};

#define COL(type, T, field) {type, offsetof(T, field)}
#define KIND(sql, T, cols, what) {sql, sizeof(T), cols, sizeof(cols) / sizeof((cols)[0]), what}

/* Decodes the current row into the zeroed item; 0, or FT_ENOMEM. */
static int decode_row(sqlite3_stmt *st, const struct list_kind *k, void *item)
{
	char *base = item;
	int r = 0;
	for (size_t i = 0; i < k->n_cols; i++) {
		int c = (int)i;
		void *f = base + k->cols[i].at;
		switch (k->cols[i].type) {
		case COL_TEXT:
		case COL_KEY:
			*(char **)f = col_text(st, c);
			if (!*(char **)f && k->cols[i].type == COL_KEY)
				r = FT_ENOMEM;
			break;
		case COL_INT:
			*(int *)f = sqlite3_column_int(st, c);
			break;
		case COL_INT64:
			*(int64_t *)f = sqlite3_column_int64(st, c);
			break;
		case COL_REAL:
			*(double *)f = sqlite3_column_double(st, c);
			break;
		case COL_REAL_NAN:
			*(double *)f = col_real_or_nan(st, c);
			break;
		case COL_TRISTATE:
			*(int *)f = sqlite3_column_type(st, c) == SQLITE_NULL
					    ? -1
					    : sqlite3_column_int(st, c);
			break;
		}
	}
	return r;
}

/* Frees the strings of one item. */
static void clear_item(const struct list_kind *k, void *item)
{
	char *base = item;
	for (size_t i = 0; i < k->n_cols; i++)
		if (k->cols[i].type == COL_TEXT || k->cols[i].type == COL_KEY)
			free(*(char **)(base + k->cols[i].at));
}

/* Clears and frees n items of kind k. */
static void items_free(const struct list_kind *k, void *items, size_t n)
{
	for (size_t i = 0; i < n; i++)
		clear_item(k, (char *)items + i * k->elem);
	free(items);
}

/* The parameters of a list query: `text[0..n_text)` bound as ?1.. (NULL binds SQL NULL),
 * or, with `by_id`, the integer `id` bound as ?1. */
struct list_args {
	const char *text[3];
	int n_text;
	bool by_id;
	int64_t id;
};

/* The one skeleton of every list reader: prepares k->sql, binds a, decodes each row into a
 * new zeroed item of *items, finalizes. On error *items is NULL and *n 0. */
static int list_read(struct store *s, const struct list_kind *k, const struct list_args *a,
		     void **items, size_t *n, struct diag *d)
{
	*items = NULL;
	*n = 0;
	sqlite3_stmt *st = NULL;
	int r = prepare(s, &st, k->sql, d);
	if (r)
		goto done;
	if (a->by_id)
		sqlite3_bind_int64(st, 1, a->id);
	for (int i = 0; i < a->n_text; i++)
		bind_text(st, i + 1, a->text[i]);
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		void *e = list_push(items, n, k->elem);
		if (!e || decode_row(st, k, e)) {
			r = diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory %s", k->what);
			goto done;
		}
	}
	if (rc != SQLITE_DONE)
		r = db_error(s, d, k->what);
done:
	sqlite3_finalize(st);
	if (r) {
		items_free(k, *items, *n);
		*items = NULL;
		*n = 0;
	}
	return r;
}

/* Returns list, or frees it and returns NULL when r is an error. */
static void *list_keep(void *list, int r)
{
	if (!r)
		return list;
	free(list);
	return NULL;
}

static int list_nomem(struct diag *d)
{
	return diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
}

/* The run columns; the status (column 5) is given separately so that a run of one
 * invocation can read its per-invocation status there instead. */
#define RUN_COLUMNS_HEAD "r.id, r.experiment, r.params, r.config, r.identity, "
#define RUN_COLUMNS_TAIL                                                                      \
	", r.host, r.backend, r.device, r.error, r.run_dir, r.invocation, r.sweep_index,"     \
	" r.pid, r.seed, r.step, r.total_steps, r.attempts, r.threads, r.heartbeat,"          \
	" r.started, r.finished, r.created, r.git_commit, i.git_branch, i.git_remote,"        \
	" r.git_dirty"
#define RUN_COLUMNS RUN_COLUMNS_HEAD "r.status" RUN_COLUMNS_TAIL

#define RUN_FROM " FROM runs r LEFT JOIN invocations i ON i.id = r.invocation"

static const struct col RUN_COLS[] = {
	COL(COL_KEY, struct store_run, id),
	COL(COL_KEY, struct store_run, experiment),
	COL(COL_TEXT, struct store_run, params_json),
	COL(COL_TEXT, struct store_run, config_json),
	COL(COL_TEXT, struct store_run, identity),
	COL(COL_KEY, struct store_run, status),
	COL(COL_TEXT, struct store_run, host),
	COL(COL_TEXT, struct store_run, backend),
	COL(COL_TEXT, struct store_run, device),
	COL(COL_TEXT, struct store_run, error),
	COL(COL_TEXT, struct store_run, run_dir),
	COL(COL_INT64, struct store_run, invocation),
	COL(COL_INT64, struct store_run, sweep_index),
	COL(COL_INT64, struct store_run, pid),
	COL(COL_INT64, struct store_run, seed),
	COL(COL_INT64, struct store_run, step),
	COL(COL_INT64, struct store_run, total_steps),
	COL(COL_INT64, struct store_run, attempts),
	COL(COL_INT, struct store_run, threads),
	COL(COL_REAL, struct store_run, heartbeat),
	COL(COL_REAL, struct store_run, started),
	COL(COL_REAL, struct store_run, finished),
	COL(COL_REAL, struct store_run, created),
	COL(COL_TEXT, struct store_run, git_commit),
	COL(COL_TEXT, struct store_run, git_branch),
	COL(COL_TEXT, struct store_run, git_remote),
	COL(COL_TRISTATE, struct store_run, git_dirty),
};

static const struct list_kind RUNS = KIND(
	"SELECT " RUN_COLUMNS RUN_FROM
	" WHERE (?1 IS NULL OR r.experiment = ?1) AND (?2 IS NULL OR r.status = ?2)"
	" ORDER BY r.experiment, r.sweep_index, r.id",
	struct store_run, RUN_COLS, "reading runs");

int store_runs(struct store *s, struct store_run_list **out, const char *experiment,
	       const char *status, struct diag *d)
{
	struct store_run_list *l = calloc(1, sizeof *l);
	const struct list_args a = {.text = {experiment, status}, .n_text = 2};
	int r = l ? list_read(s, &RUNS, &a, (void **)&l->items, &l->n, d) : list_nomem(d);
	*out = list_keep(l, r);
	return r;
}

static const struct list_kind INVOCATION_RUNS = KIND(
	"SELECT " RUN_COLUMNS_HEAD "ir.status" RUN_COLUMNS_TAIL " FROM invocation_runs ir"
	" JOIN runs r ON r.id = ir.run LEFT JOIN invocations i ON i.id = r.invocation"
	" WHERE ir.invocation = ?1 ORDER BY r.sweep_index, r.id",
	struct store_run, RUN_COLS, "reading runs");

int store_invocation_runs(struct store *s, struct store_run_list **out, int64_t invocation,
			  struct diag *d)
{
	struct store_run_list *l = calloc(1, sizeof *l);
	const struct list_args a = {.by_id = true, .id = invocation};
	int r = l ? list_read(s, &INVOCATION_RUNS, &a, (void **)&l->items, &l->n, d)
		  : list_nomem(d);
	*out = list_keep(l, r);
	return r;
}

int store_run_get(struct store *s, struct store_run **out, const char *id_or_prefix,
		  struct diag *d)
{
	*out = NULL;
	size_t len = strlen(id_or_prefix);
	if (len < 4 || len > 64 || strspn(id_or_prefix, "0123456789abcdef") != len)
		return diag_set(d, FT_EINVAL, "", 0, 0,
				"'%s' is not a run id (expected at least 4 hex digits, as `ftlab ls` "
				"prints them)",
				id_or_prefix);
	sqlite3_stmt *st = NULL;
	struct store_run *run = calloc(1, sizeof *run);
	if (!run)
		return diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
	int r = prepare(s, &st,
			"SELECT " RUN_COLUMNS RUN_FROM
			" WHERE substr(r.id, 1, ?2) = ?1 ORDER BY r.id LIMIT 2",
			d);
	if (r)
		goto done;
	bind_text(st, 1, id_or_prefix);
	sqlite3_bind_int(st, 2, (int)len);
	int n = 0;
	char first[80] = "";
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (n == 0) {
			if (decode_row(st, &RUNS, run)) {
				r = diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
				goto done;
			}
			snprintf(first, sizeof first, "%s", run->id);
		} else {
			r = diag_set(d, FT_EINVAL, "", 0, 0,
				     "run id prefix '%s' is ambiguous (%s, %s, ...)", id_or_prefix,
				     first, (const char *)sqlite3_column_text(st, 0));
			diag_hint(d, "give more digits of the run id");
			goto done;
		}
		n++;
	}
	if (rc != SQLITE_DONE) {
		r = db_error(s, d, "reading a run");
		goto done;
	}
	if (n == 0) {
		r = diag_set(d, FT_EINVAL, "", 0, 0, "no run '%s' in the store", id_or_prefix);
		diag_hint(d, "'ftlab ls' lists the recorded runs");
	}
done:
	sqlite3_finalize(st);
	if (r) {
		store_run_free(run);
		return r;
	}
	*out = run;
	return 0;
}

static const struct col EXPERIMENT_COLS[] = {
	COL(COL_TEXT, struct store_experiment, name),
	COL(COL_TEXT, struct store_experiment, spec_json),
	COL(COL_TEXT, struct store_experiment, spec_hash),
	COL(COL_TEXT, struct store_experiment, source_path),
	COL(COL_REAL, struct store_experiment, created),
	COL(COL_REAL, struct store_experiment, updated),
	COL(COL_INT64, struct store_experiment, n_runs),
};

static const struct list_kind EXPERIMENTS = KIND(
	"SELECT e.name, e.spec, e.spec_hash, e.source_path, e.created, e.updated,"
	" (SELECT count(*) FROM runs r WHERE r.experiment = e.name)"
	" FROM experiments e ORDER BY e.name",
	struct store_experiment, EXPERIMENT_COLS, "reading experiments");

int store_experiments(struct store *s, struct store_experiment_list **out, struct diag *d)
{
	struct store_experiment_list *l = calloc(1, sizeof *l);
	const struct list_args a = {.n_text = 0};
	int r = l ? list_read(s, &EXPERIMENTS, &a, (void **)&l->items, &l->n, d)
		  : list_nomem(d);
	*out = list_keep(l, r);
	return r;
}

static const struct col RESULT_COLS[] = {
	COL(COL_TEXT, struct store_result, model),
	COL(COL_TEXT, struct store_result, split),
	COL(COL_TEXT, struct store_result, metric),
	COL(COL_REAL_NAN, struct store_result, value),
	COL(COL_REAL_NAN, struct store_result, ci_low),
	COL(COL_REAL_NAN, struct store_result, ci_high),
};

static const struct list_kind RESULTS = KIND(
	"SELECT model, split, metric, value, ci_low, ci_high FROM results"
	" WHERE run = ?1 ORDER BY split, metric,"
	" CASE model WHEN 'base' THEN 0 WHEN 'tuned' THEN 1 ELSE 2 END",
	struct store_result, RESULT_COLS, "reading results");

int store_results(struct store *s, struct store_result_list **out, const char *run_id,
		  struct diag *d)
{
	struct store_result_list *l = calloc(1, sizeof *l);
	const struct list_args a = {.text = {run_id}, .n_text = 1};
	int r = l ? list_read(s, &RESULTS, &a, (void **)&l->items, &l->n, d) : list_nomem(d);
	*out = list_keep(l, r);
	return r;
}

static const struct col METRIC_COLS[] = {
	COL(COL_TEXT, struct store_metric, split),
	COL(COL_TEXT, struct store_metric, name),
	COL(COL_INT64, struct store_metric, step),
	COL(COL_REAL_NAN, struct store_metric, value),
	COL(COL_REAL, struct store_metric, time),
};

static const struct list_kind METRICS = KIND(
	"SELECT split, name, step, value, time FROM metrics WHERE run = ?1"
	" AND (?2 IS NULL OR split = ?2) AND (?3 IS NULL OR name = ?3)"
	" ORDER BY split, name, step",
	struct store_metric, METRIC_COLS, "reading metrics");

int store_metrics(struct store *s, struct store_metric_list **out, const char *run_id,
		  const char *split, const char *name, struct diag *d)
{
	struct store_metric_list *l = calloc(1, sizeof *l);
	const struct list_args a = {.text = {run_id, split, name}, .n_text = 3};
	int r = l ? list_read(s, &METRICS, &a, (void **)&l->items, &l->n, d) : list_nomem(d);
	*out = list_keep(l, r);
	return r;
}

static const struct col PREDICTION_COLS[] = {
	COL(COL_TEXT, struct store_prediction, model),
	COL(COL_TEXT, struct store_prediction, split),
	COL(COL_INT64, struct store_prediction, example),
	COL(COL_TEXT, struct store_prediction, prompt),
	COL(COL_TEXT, struct store_prediction, reference),
	COL(COL_TEXT, struct store_prediction, output),
	COL(COL_REAL_NAN, struct store_prediction, score),
};

static const struct list_kind PREDICTIONS = KIND(
	"SELECT model, split, example, prompt, reference, output, score"
	" FROM predictions WHERE run = ?1 ORDER BY split, example, model",
	struct store_prediction, PREDICTION_COLS, "reading predictions");

int store_predictions(struct store *s, struct store_prediction_list **out, const char *run_id,
		      struct diag *d)
{
	struct store_prediction_list *l = calloc(1, sizeof *l);
	const struct list_args a = {.text = {run_id}, .n_text = 1};
	int r = l ? list_read(s, &PREDICTIONS, &a, (void **)&l->items, &l->n, d)
		  : list_nomem(d);
	*out = list_keep(l, r);
	return r;
}

static const struct col ARTIFACT_COLS[] = {
	COL(COL_TEXT, struct store_artifact, kind),
	COL(COL_TEXT, struct store_artifact, path),
	COL(COL_INT64, struct store_artifact, bytes),
	COL(COL_TEXT, struct store_artifact, sha256),
};

static const struct list_kind ARTIFACTS = KIND(
	"SELECT kind, path, bytes, sha256 FROM artifacts WHERE run = ?1 ORDER BY path",
	struct store_artifact, ARTIFACT_COLS, "reading artifacts");

int store_artifacts(struct store *s, struct store_artifact_list **out, const char *run_id,
		    struct diag *d)
{
	struct store_artifact_list *l = calloc(1, sizeof *l);
	const struct list_args a = {.text = {run_id}, .n_text = 1};
	int r = l ? list_read(s, &ARTIFACTS, &a, (void **)&l->items, &l->n, d) : list_nomem(d);
	*out = list_keep(l, r);
	return r;
}

static const struct col EVENT_COLS[] = {
	COL(COL_REAL, struct store_event, time),
	COL(COL_TEXT, struct store_event, level),
	COL(COL_TEXT, struct store_event, kind),
	COL(COL_TEXT, struct store_event, message),
};

static const struct list_kind EVENTS = KIND(
	"SELECT time, level, kind, message FROM events WHERE run = ?1 ORDER BY id",
	struct store_event, EVENT_COLS, "reading events");

int store_events(struct store *s, struct store_event_list **out, const char *run_id,
		 struct diag *d)
{
	struct store_event_list *l = calloc(1, sizeof *l);
	const struct list_args a = {.text = {run_id}, .n_text = 1};
	int r = l ? list_read(s, &EVENTS, &a, (void **)&l->items, &l->n, d) : list_nomem(d);
	*out = list_keep(l, r);
	return r;
}

int store_integrity_check(struct store *s, bool *out_ok, struct diag *d)
{
	sqlite3_stmt *st = NULL;
	*out_ok = false;
	int r = prepare(s, &st, "PRAGMA integrity_check", d);
	if (r)
		return r;
	bool ok = true;
	int rows = 0, rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *t = (const char *)sqlite3_column_text(st, 0);
		rows++;
		if (!t || strcmp(t, "ok") != 0)
			ok = false;
	}
	if (rc != SQLITE_DONE)
		r = db_error(s, d, "integrity check");
	sqlite3_finalize(st);
	*out_ok = ok && rows > 0;
	return r;
}

/* ---- frees ---- */

void store_run_free(struct store_run *r)
{
	if (!r)
		return;
	clear_item(&RUNS, r);
	free(r);
}

/* The typed list frees: each clears its items through its kind's column table. */
/* list_type is a type name, which cannot be parenthesised. */
#define LIST_FREE(fn, list_type, kind)                                                        \
	void fn(list_type *l) /* NOLINT(bugprone-macro-parentheses) */                        \
	{                                                                                     \
		if (l)                                                                        \
			items_free(&(kind), l->items, l->n);                                  \
		free(l);                                                                      \
	}

LIST_FREE(store_run_list_free, struct store_run_list, RUNS)
LIST_FREE(store_experiment_list_free, struct store_experiment_list, EXPERIMENTS)
LIST_FREE(store_result_list_free, struct store_result_list, RESULTS)
LIST_FREE(store_metric_list_free, struct store_metric_list, METRICS)
LIST_FREE(store_prediction_list_free, struct store_prediction_list, PREDICTIONS)
LIST_FREE(store_artifact_list_free, struct store_artifact_list, ARTIFACTS)
LIST_FREE(store_event_list_free, struct store_event_list, EVENTS)
