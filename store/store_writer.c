/* store_writer: the per-run batched writer. Metrics and predictions are buffered and
 * written in one transaction per batch; results, events and artifacts at once. Each
 * transaction first checks the run's claim token (a process that lost its run writes
 * nothing). The first error is kept and later writes are dropped (the runner reports it). */
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
	char token[STORE_TOKEN_SIZE];
	double flush_interval_s, last_flush;
	struct pending_metric *metrics;
	size_t n_metrics, cap_metrics;
	struct pending_prediction *preds;
	size_t n_preds, cap_preds;
	sqlite3_stmt *ins_metric, *ins_pred;
	struct diag err;
};

int store_writer_open(struct store_writer **out, struct store *s, const char *run_id,
		      const char *token, double flush_interval_s, struct diag *d)
{
	*out = NULL;
	struct store_writer *w = calloc(1, sizeof *w);
	if (!w || !(w->run_id = ft_strdup(run_id))) {
		free(w);
		return diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
	}
	snprintf(w->token, sizeof w->token, "%s", token ? token : "");
	w->s = s;
	w->flush_interval_s = flush_interval_s;
	w->last_flush = time_monotonic();
	diag_init(&w->err);
	int r = store_prepare(s, &w->ins_metric,
			"INSERT OR REPLACE INTO metrics(run, split, name, step, value, time)"
			" VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
			d);
	if (!r)
		r = store_prepare(s, &w->ins_pred,
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
	int r = store_begin(s, &w->err);
	if (r)
		goto done;
	r = store_claim_check(s, w->run_id, w->token, &w->err);
	for (size_t i = 0; i < w->n_metrics && !r; i++) {
		const struct pending_metric *m = &w->metrics[i];
		store_bind_static(s, w->ins_metric, 1, w->run_id);
		store_bind_static(s, w->ins_metric, 2, m->split);
		store_bind_static(s, w->ins_metric, 3, m->name);
		store_bind_int64(s, w->ins_metric, 4, m->step);
		store_bind_real(s, w->ins_metric, 5, isfinite(m->value) ? m->value : NAN);
		store_bind_double(s, w->ins_metric, 6, m->time);
		r = store_step_done(s, w->ins_metric, &w->err, "writing metrics");
	}
	for (size_t i = 0; i < w->n_preds && !r; i++) {
		const struct pending_prediction *p = &w->preds[i];
		store_bind_text(s, w->ins_pred, 1, w->run_id);
		store_bind_text(s, w->ins_pred, 2, p->model);
		store_bind_text(s, w->ins_pred, 3, p->split);
		store_bind_int64(s, w->ins_pred, 4, p->example);
		store_bind_text(s, w->ins_pred, 5, p->prompt);
		store_bind_text(s, w->ins_pred, 6, p->reference);
		store_bind_text(s, w->ins_pred, 7, p->output);
		store_bind_real(s, w->ins_pred, 8, p->score);
		r = store_step_done(s, w->ins_pred, &w->err, "writing predictions");
	}
	sqlite3_clear_bindings(w->ins_metric);
	sqlite3_clear_bindings(w->ins_pred);
	if (!r)
		r = store_commit(s, &w->err);
done:
	if (r)
		store_rollback(s);
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
	int r = store_begin(s, &w->err);
	if (r)
		return r;
	r = store_claim_check(s, w->run_id, w->token, &w->err);
	if (!r)
		r = store_prepare(s, &st,
			    "INSERT OR REPLACE INTO results(run, model, split, metric, value, ci_low,"
			    " ci_high) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
			    &w->err);
	if (r)
		goto done;
	store_bind_text(s, st, 1, w->run_id);
	store_bind_text(s, st, 2, model ? model : "tuned");
	store_bind_text(s, st, 3, split);
	store_bind_text(s, st, 4, metric);
	store_bind_real(s, st, 5, isfinite(value) ? value : NAN);
	store_bind_real(s, st, 6, ci_low);
	store_bind_real(s, st, 7, ci_high);
	r = store_step_done(s, st, &w->err, "writing a result");
	if (!r)
		r = store_commit(s, &w->err);
done:
	sqlite3_finalize(st);
	if (r)
		store_rollback(s);
	return r;
}

int store_writer_event(struct store_writer *w, const char *level, const char *kind,
		       const char *message)
{
	if (w->err.code)
		return w->err.code;
	struct store *s = w->s;
	sqlite3_stmt *st = NULL;
	int r = store_begin(s, &w->err);
	if (r)
		return r;
	r = store_claim_check(s, w->run_id, w->token, &w->err);
	if (!r)
		r = store_prepare(s, &st,
			    "INSERT INTO events(run, time, level, kind, message)"
			    " VALUES (?1, ?2, ?3, ?4, ?5)",
			    &w->err);
	if (r)
		goto done;
	store_bind_text(s, st, 1, w->run_id);
	store_bind_double(s, st, 2, time_wall());
	store_bind_text(s, st, 3, level);
	store_bind_text(s, st, 4, kind);
	store_bind_text(s, st, 5, message);
	r = store_step_done(s, st, &w->err, "writing an event");
	if (!r)
		r = store_commit(s, &w->err);
done:
	sqlite3_finalize(st);
	if (r)
		store_rollback(s);
	return r;
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
	struct diag hd;
	diag_init(&hd);
	if (hash_path_hex(hex, &bytes, full, &hd) != 0) {
		int r = diag_set(&w->err, FT_EIO, "", 0, 0, "cannot read artifact %s: %s", full,
				 hd.text);
		free(full);
		return r;
	}
	free(full);
	struct store *s = w->s;
	sqlite3_stmt *st = NULL;
	int r = store_begin(s, &w->err);
	if (r)
		return r;
	r = store_claim_check(s, w->run_id, w->token, &w->err);
	if (!r)
		r = store_prepare(s, &st,
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
	store_bind_text(s, st, 1, w->run_id);
	store_bind_text(s, st, 2, kind);
	store_bind_text(s, st, 3, stored);
	store_bind_int64(s, st, 4, bytes);
	store_bind_text(s, st, 5, hex);
	r = store_step_done(s, st, &w->err, "writing an artifact");
	if (!r)
		r = store_commit(s, &w->err);
done:
	sqlite3_finalize(st);
	if (r)
		store_rollback(s);
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
