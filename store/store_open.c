/* store_open: opening a workspace's ftlab.db (WAL, busy timeout, foreign keys), the
 * forward-only schema migrations by user_version, and the statement helpers the other
 * store files share. docs/store.md documents every table and column. */
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


/* Version 1: the tables docs/store.md documents; version 2 adds the run status `stopped`
 * and sweep_points; version 3 the cluster launchers' columns and journal_merges; version 4
 * run_claims (who owns a running row: its claim token and process). Forward-only: a later
 * version appends a new entry to `migrations` and never edits an old one. */
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
	/* 1 -> 2: run status `stopped` (early termination): SQLite cannot change a CHECK, so
	 * runs is rebuilt (foreign keys are off during migrations); the points each sweep
	 * handed out, with how bayes chose them and why early termination stopped them. */
	"CREATE TABLE runs_v2 ("
	" id TEXT PRIMARY KEY,"
	" experiment TEXT NOT NULL,"
	" invocation INTEGER REFERENCES invocations(id),"
	" sweep_index INTEGER NOT NULL,"
	" params TEXT NOT NULL,"
	" config TEXT NOT NULL,"
	" identity TEXT NOT NULL,"
	" status TEXT NOT NULL CHECK (status IN"
	"  ('queued','running','finished','failed','killed','crashed','cached','stopped')),"
	" pid INTEGER, host TEXT, heartbeat REAL,"
	" created REAL NOT NULL, started REAL, finished REAL,"
	" backend TEXT, device TEXT, threads INTEGER, seed INTEGER, error TEXT,"
	" run_dir TEXT, step INTEGER NOT NULL DEFAULT 0, total_steps INTEGER NOT NULL DEFAULT 0,"
	" attempts INTEGER NOT NULL DEFAULT 0,"
	" git_commit TEXT, git_dirty INTEGER);"
	"INSERT INTO runs_v2 SELECT id, experiment, invocation, sweep_index, params, config,"
	" identity, status, pid, host, heartbeat, created, started, finished, backend, device,"
	" threads, seed, error, run_dir, step, total_steps, attempts, git_commit, git_dirty"
	" FROM runs;"
	"DROP TABLE runs;"
	"ALTER TABLE runs_v2 RENAME TO runs;"
	"CREATE INDEX runs_experiment ON runs(experiment, sweep_index);"
	"CREATE INDEX runs_status ON runs(status);"
	"CREATE TABLE sweep_points ("
	" sweep_key TEXT NOT NULL,"
	" sweep_index INTEGER NOT NULL,"
	" experiment TEXT NOT NULL,"
	" run TEXT NOT NULL,"
	" params TEXT NOT NULL,"
	" suggestion TEXT,"
	" stopped TEXT,"
	" created REAL NOT NULL,"
	" PRIMARY KEY (sweep_key, sweep_index));"
	"CREATE INDEX sweep_points_run ON sweep_points(run);",
	/* 2 -> 3: cluster launchers. Each run records where it was sent; journal_merges
	 * holds how far each attempt's journal has been merged (docs/slurm.md). */
	"ALTER TABLE runs ADD COLUMN launcher TEXT;"
	"ALTER TABLE runs ADD COLUMN submission TEXT;"
	"ALTER TABLE runs ADD COLUMN slurm_job TEXT;"
	"ALTER TABLE runs ADD COLUMN slurm_task INTEGER;"
	"ALTER TABLE runs ADD COLUMN slurm_job_id TEXT;"
	"ALTER TABLE runs ADD COLUMN node TEXT;"
	"CREATE TABLE journal_merges ("
	" run TEXT NOT NULL REFERENCES runs(id),"
	" seq INTEGER NOT NULL,"
	" offset INTEGER NOT NULL,"
	" ended INTEGER NOT NULL DEFAULT 0,"
	" started REAL,"
	" job_id TEXT, node TEXT,"
	" PRIMARY KEY (run, seq));",
	/* 3 -> 4: the claim of each run: a token only the claiming process knows (every write
	 * for the run must present it), and that process's pid, host and start time (a
	 * reused pid is not the claimer). Its own table, so nothing else about runs changes. */
	"CREATE TABLE run_claims ("
	" run TEXT PRIMARY KEY REFERENCES runs(id),"
	" token TEXT NOT NULL,"
	" pid INTEGER, host TEXT, proc_start INTEGER,"
	" claimed REAL NOT NULL);",
};

_Static_assert(FT_ARRAY_LEN(migrations) == STORE_SCHEMA_VERSION,
	       "one migration per schema version");

int store_db_error(struct store *s, struct diag *d, const char *what)
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

int store_exec_sql(struct store *s, const char *sql, struct diag *d)
{
	char *err = NULL;
	if (sqlite3_exec(s->db, sql, NULL, NULL, &err) != SQLITE_OK) {
		int r = store_db_error(s, d, sql);
		sqlite3_free(err);
		return r;
	}
	return 0;
}

int store_begin(struct store *s, struct diag *d)
{
	return store_exec_sql(s, "BEGIN IMMEDIATE", d);
}

int store_commit(struct store *s, struct diag *d)
{
	return store_exec_sql(s, "COMMIT", d);
}

void store_rollback(struct store *s)
{
	if (!sqlite3_get_autocommit(s->db))
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

int store_prepare(struct store *s, sqlite3_stmt **out, const char *sql, struct diag *d)
{
	s->bind_rc = SQLITE_OK;
	if (sqlite3_prepare_v2(s->db, sql, -1, out, NULL) != SQLITE_OK) {
		*out = NULL;
		return store_db_error(s, d, "prepare");
	}
	return 0;
}

static void bind_note(struct store *s, int rc, int i)
{
	if (rc != SQLITE_OK && s->bind_rc == SQLITE_OK) {
		s->bind_rc = rc;
		s->bind_index = i;
	}
}

void store_bind_text(struct store *s, sqlite3_stmt *st, int i, const char *v)
{
	bind_note(s, v ? sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(st, i),
		  i);
}

void store_bind_static(struct store *s, sqlite3_stmt *st, int i, const char *v)
{
	bind_note(s, sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC), i);
}

void store_bind_real(struct store *s, sqlite3_stmt *st, int i, double v)
{
	bind_note(s, isnan(v) ? sqlite3_bind_null(st, i) : sqlite3_bind_double(st, i, v), i);
}

void store_bind_double(struct store *s, sqlite3_stmt *st, int i, double v)
{
	bind_note(s, sqlite3_bind_double(st, i, v), i);
}

void store_bind_int64(struct store *s, sqlite3_stmt *st, int i, int64_t v)
{
	bind_note(s, sqlite3_bind_int64(st, i, v), i);
}

void store_bind_null(struct store *s, sqlite3_stmt *st, int i)
{
	bind_note(s, sqlite3_bind_null(st, i), i);
}

/* The error of a failed bind since the statement was prepared, if any (and forgets it). */
static int binds_ok(struct store *s, sqlite3_stmt *st, struct diag *d, const char *what)
{
	if (s->bind_rc == SQLITE_OK)
		return 0;
	int rc = s->bind_rc;
	s->bind_rc = SQLITE_OK;
	sqlite3_reset(st);
	if ((rc & 0xff) == SQLITE_NOMEM)
		return diag_set(d, FT_ENOMEM, "", 0, 0, "store %s: %s: out of memory", s->path, what);
	return diag_set(d, FT_ESTORE, "", 0, 0, "store %s: %s: parameter %d: %s", s->path, what,
			s->bind_index, sqlite3_errstr(rc));
}

/* Runs a statement to completion (no rows expected). */
int store_step_done(struct store *s, sqlite3_stmt *st, struct diag *d, const char *what)
{
	int r = binds_ok(s, st, d, what);
	if (r)
		return r;
	int rc = sqlite3_step(st);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
		r = store_db_error(s, d, what);
		sqlite3_reset(st);
		return r;
	}
	sqlite3_reset(st);
	return 0;
}

int store_step_row(struct store *s, sqlite3_stmt *st, struct diag *d, const char *what)
{
	int r = binds_ok(s, st, d, what);
	if (r)
		return r;
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE)
		return 0;
	return store_db_error(s, d, what);
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
	/* A migration may rebuild a table that others reference; foreign keys are checked
	 * once it is done (PRAGMA foreign_key_check) and turned back on after. */
	int r = store_exec_sql(s, "PRAGMA foreign_keys=OFF", d);
	if (r)
		return r;
	r = store_begin(s, d);
	if (r)
		goto fk_on;
	r = store_prepare(s, &st, "PRAGMA user_version", d);
	if (r)
		goto done;
	int version = 0;
	int rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		/* Not "version 0": that would run every migration again on a busy store. */
		r = store_db_error(s, d, "reading the schema version");
		goto done;
	}
	version = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	st = NULL;
	if (version > STORE_SCHEMA_VERSION) {
		r = diag_set(d, FT_ENEWER, "", 0, 0,
			     "store %s has schema version %d; this ftlab (%s) knows up to %d",
			     s->path, version, FTLAB_VERSION, STORE_SCHEMA_VERSION);
		diag_hint(d, "use a newer ftlab, or another --workspace");
		goto done;
	}
	for (int v = version; v < STORE_SCHEMA_VERSION; v++) {
		r = store_exec_sql(s, migrations[v], d);
		if (r)
			goto done;
	}
	if (version != STORE_SCHEMA_VERSION) {
		r = store_prepare(s, &st, "PRAGMA foreign_key_check", d);
		if (r)
			goto done;
		bool broken = sqlite3_step(st) == SQLITE_ROW;
		sqlite3_finalize(st);
		st = NULL;
		if (broken) {
			r = diag_set(d, FT_ESTORE, "", 0, 0, "store %s: migrating to schema version "
				     "%d broke a reference between tables", s->path,
				     STORE_SCHEMA_VERSION);
			goto done;
		}
		char sql[64];
		snprintf(sql, sizeof sql, "PRAGMA user_version = %d", STORE_SCHEMA_VERSION);
		r = store_exec_sql(s, sql, d);
		if (r)
			goto done;
	}
	r = store_commit(s, d);
done:
	sqlite3_finalize(st);
	if (r)
		store_rollback(s);
fk_on:;
	struct diag d2;
	diag_init(&d2);
	int r2 = store_exec_sql(s, "PRAGMA foreign_keys=ON", r ? &d2 : d);
	return r ? r : r2;
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
			r = store_db_error(s, d, open_sql);
			goto done;
		}
		struct timespec pause = {0, 20L * 1000 * 1000};
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
