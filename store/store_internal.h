/* store_internal: what the store's files share (not for other layers): the handle, the
 * statement helpers and the error mapping. Every helper that fails sets d and returns an
 * FT_E* code; the store_* names are internal despite the prefix. */
#ifndef FTLAB_STORE_INTERNAL_H
#define FTLAB_STORE_INTERNAL_H

#include <sqlite3.h>

#include "store/store.h"

#define BUSY_TIMEOUT_MS 30000

struct store {
	sqlite3 *db;
	char *workspace;
	char *path;
	/* The first failed sqlite3_bind_* since the last statement was prepared or stepped
	 * (SQLITE_OK when none), and its parameter: a statement is never stepped with a
	 * parameter that silently stayed NULL. */
	int bind_rc, bind_index;
};

/* Maps the connection's last error to FT_EIO (read-only, disk full) or FT_ESTORE. */
int store_db_error(struct store *s, struct diag *d, const char *what) FT_WUR;
int store_exec_sql(struct store *s, const char *sql, struct diag *d) FT_WUR;
/* BEGIN IMMEDIATE: the write lock up front, so a busy store waits in SQLite's timeout. */
int store_begin(struct store *s, struct diag *d) FT_WUR;
int store_commit(struct store *s, struct diag *d) FT_WUR;
/* Rolls back an open transaction (no-op without one). */
void store_rollback(struct store *s);
int store_prepare(struct store *s, sqlite3_stmt **out, const char *sql, struct diag *d) FT_WUR;
/* Every parameter is bound through these: a failed bind (out of memory, a text longer than
 * SQLite's limit) is remembered in s and reported by the next store_step_done or
 * store_step_row instead of the statement running with that parameter NULL. */
/* NULL binds SQL NULL. */
void store_bind_text(struct store *s, sqlite3_stmt *st, int i, const char *v);
/* One statement whose only parameter (?1) is the run id; `what` names it in errors. */
int store_exec_run_sql(struct store *s, const char *sql, const char *run_id, const char *what,
		       struct diag *d);
/* Deletes a run's metrics, results, predictions and artifacts (a fresh attempt). */
int store_clear_measurements(struct store *s, const char *run_id, struct diag *d);
/* Not copied: v (not NULL) must stay valid until the statement is reset (hot loops). */
void store_bind_static(struct store *s, sqlite3_stmt *st, int i, const char *v);
/* NAN binds SQL NULL. */
void store_bind_real(struct store *s, sqlite3_stmt *st, int i, double v);
void store_bind_double(struct store *s, sqlite3_stmt *st, int i, double v);
void store_bind_int64(struct store *s, sqlite3_stmt *st, int i, int64_t v);
void store_bind_null(struct store *s, sqlite3_stmt *st, int i);
/* Runs a statement to completion (no rows expected) and resets it. */
int store_step_done(struct store *s, sqlite3_stmt *st, struct diag *d, const char *what) FT_WUR;
/* One step of a statement that returns rows: 1 with a row, 0 at the end, or a negative
 * FT_E* code with d set (SQLITE_BUSY, out of memory, I/O: never taken for the end). */
int store_step_row(struct store *s, sqlite3_stmt *st, struct diag *d, const char *what) FT_WUR;

/* ---- run claims (store_claims.c) ---- */

/* Inside the caller's transaction: records a new claim of run_id by this process (a fresh
 * random token, this pid, host and process start time) and copies the token to out. */
int store_claim_record(struct store *s, const char *run_id, char out[STORE_TOKEN_SIZE],
		       struct diag *d) FT_WUR;
/* Inside the caller's transaction: 0 when run_id is running under `token`, else FT_ESTORE
 * ("no longer owns") with d set. */
int store_claim_check(struct store *s, const char *run_id, const char *token,
		      struct diag *d) FT_WUR;
/* True when pid is a live (not zombie) process of this machine; with start >= 0, only
 * when its start time (clock ticks after boot, /proc/PID/stat) is that one. */
bool store_pid_alive(int64_t pid, int64_t start);
/* This process's start time in clock ticks after boot, or -1 when unknown. */
int64_t store_self_start(void);

#endif
