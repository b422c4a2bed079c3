/* store_read: the readers behind ls, show, compare and reports. One table-driven list
 * reader (query, item layout, column decoders) serves every list; the lists' frees share
 * the same tables. */
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
			/* NULL for a value that is there: SQLite or the copy ran out of memory
			 * (never read as an absent value). */
			if (!*(char **)f && (k->cols[i].type == COL_KEY ||
					     sqlite3_column_type(st, c) != SQLITE_NULL))
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
	int r = store_prepare(s, &st, k->sql, d);
	if (r)
		goto done;
	if (a->by_id)
		store_bind_int64(s, st, 1, a->id);
	for (int i = 0; i < a->n_text; i++)
		store_bind_text(s, st, i + 1, a->text[i]);
	int rc;
	while ((rc = store_step_row(s, st, d, k->what)) == 1) {
		void *e = list_push(items, n, k->elem);
		if (!e || decode_row(st, k, e)) {
			r = diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory %s", k->what);
			goto done;
		}
	}
	if (rc < 0)
		r = rc;
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
	" r.git_dirty, r.launcher, r.submission, r.slurm_job, r.slurm_job_id, r.node,"        \
	" coalesce(r.slurm_task, -1)"
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
	COL(COL_TEXT, struct store_run, launcher),
	COL(COL_TEXT, struct store_run, submission),
	COL(COL_TEXT, struct store_run, slurm_job),
	COL(COL_TEXT, struct store_run, slurm_job_id),
	COL(COL_TEXT, struct store_run, node),
	COL(COL_INT64, struct store_run, slurm_task),
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
	int r = store_prepare(s, &st,
			"SELECT " RUN_COLUMNS RUN_FROM
			" WHERE substr(r.id, 1, ?2) = ?1 ORDER BY r.id LIMIT 2",
			d);
	if (r)
		goto done;
	store_bind_text(s, st, 1, id_or_prefix);
	store_bind_int64(s, st, 2, (int64_t)len);
	int n = 0;
	char first[80] = "";
	int rc;
	while ((rc = store_step_row(s, st, d, "reading a run")) == 1) {
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
	if (rc < 0) {
		r = rc;
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
	int r = store_prepare(s, &st, "PRAGMA integrity_check", d);
	if (r)
		return r;
	bool ok = true;
	int rows = 0, rc;
	while ((rc = store_step_row(s, st, d, "integrity check")) == 1) {
		const char *t = (const char *)sqlite3_column_text(st, 0);
		rows++;
		if (!t || strcmp(t, "ok") != 0)
			ok = false;
	}
	if (rc < 0)
		r = rc;
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
