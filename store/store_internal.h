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
/* NULL binds SQL NULL. */
void store_bind_text(sqlite3_stmt *st, int i, const char *v);
/* NAN binds SQL NULL. */
void store_bind_real(sqlite3_stmt *st, int i, double v);
/* Runs a statement to completion (no rows expected) and resets it. */
int store_step_done(struct store *s, sqlite3_stmt *st, struct diag *d, const char *what) FT_WUR;

#endif
