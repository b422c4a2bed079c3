/* store_sweep: the sweep_points table: one row per point a sweep handed out (its key and
 * index, the run it became, its values), how a bayes search chose it and why early
 * termination stopped it. Written by the one process that controls the sweep. */
#include "store/store_internal.h"

#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "common/banned.h"

int store_sweep_point_put(struct store *s, const struct store_sweep_point *p, struct diag *d)
{
	sqlite3_stmt *st = NULL;
	int r = store_begin(s, d);
	if (r)
		return r;
	r = store_prepare(s, &st,
			  "INSERT INTO sweep_points(sweep_key, sweep_index, experiment, run, params,"
			  " suggestion, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
			  " ON CONFLICT(sweep_key, sweep_index) DO UPDATE SET"
			  " experiment = excluded.experiment, run = excluded.run,"
			  " params = excluded.params,"
			  " suggestion = coalesce(excluded.suggestion, suggestion),"
			  " stopped = CASE WHEN run = excluded.run THEN stopped END",
			  d);
	if (r)
		goto done;
	store_bind_text(s, st, 1, p->sweep_key);
	store_bind_int64(s, st, 2, p->sweep_index);
	store_bind_text(s, st, 3, p->experiment);
	store_bind_text(s, st, 4, p->run);
	store_bind_text(s, st, 5, p->params_json ? p->params_json : "{}");
	store_bind_text(s, st, 6, p->suggestion_json);
	store_bind_double(s, st, 7, time_wall());
	r = store_step_done(s, st, d, "recording a sweep point");
	if (!r)
		r = store_commit(s, d);
done:
	sqlite3_finalize(st);
	if (r)
		store_rollback(s);
	return r;
}

int store_sweep_point_stop(struct store *s, const char *sweep_key, int64_t sweep_index,
			   const char *stopped_json, struct diag *d)
{
	sqlite3_stmt *st = NULL;
	int r = store_begin(s, d);
	if (r)
		return r;
	r = store_prepare(s, &st,
			  "UPDATE sweep_points SET stopped = ?3 WHERE sweep_key = ?1 AND"
			  " sweep_index = ?2",
			  d);
	if (r)
		goto done;
	store_bind_text(s, st, 1, sweep_key);
	store_bind_int64(s, st, 2, sweep_index);
	store_bind_text(s, st, 3, stopped_json);
	r = store_step_done(s, st, d, "recording an early stop");
	if (!r)
		r = store_commit(s, d);
done:
	sqlite3_finalize(st);
	if (r)
		store_rollback(s);
	return r;
}

static char *col_text(sqlite3_stmt *st, int i, bool *oom)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	if (!t) {
		/* NULL for a value that is there: SQLite ran out of memory converting it. */
		if (sqlite3_column_type(st, i) != SQLITE_NULL)
			*oom = true;
		return NULL;
	}
	char *c = ft_strdup((const char *)t);
	if (!c)
		*oom = true;
	return c;
}

int store_sweep_points(struct store *s, struct store_sweep_point_list **out,
		       const char *sweep_key, const char *run_id, struct diag *d)
{
	*out = NULL;
	struct store_sweep_point_list *l = calloc(1, sizeof *l);
	sqlite3_stmt *st = NULL;
	if (!l)
		return diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
	int r = store_prepare(s, &st,
			      sweep_key ? "SELECT sweep_key, experiment, run, params, suggestion,"
					  " stopped, sweep_index, created FROM sweep_points"
					  " WHERE sweep_key = ?1 ORDER BY sweep_index"
					: "SELECT sweep_key, experiment, run, params, suggestion,"
					  " stopped, sweep_index, created FROM sweep_points"
					  " WHERE run = ?1 ORDER BY created DESC",
			      d);
	if (r)
		goto done;
	store_bind_text(s, st, 1, sweep_key ? sweep_key : run_id);
	size_t cap = 0;
	bool oom = false;
	while (!oom && (r = store_step_row(s, st, d, "reading sweep points")) == 1) {
		if (l->n == cap) {
			size_t nc = cap ? 2 * cap : 16;
			struct store_sweep_point *g = realloc(l->items, nc * sizeof *g);
			if (!g) {
				oom = true;
				break;
			}
			l->items = g;
			cap = nc;
		}
		struct store_sweep_point *p = &l->items[l->n++];
		memset(p, 0, sizeof *p);
		p->sweep_key = col_text(st, 0, &oom);
		p->experiment = col_text(st, 1, &oom);
		p->run = col_text(st, 2, &oom);
		p->params_json = col_text(st, 3, &oom);
		p->suggestion_json = col_text(st, 4, &oom);
		p->stopped_json = col_text(st, 5, &oom);
		p->sweep_index = sqlite3_column_int64(st, 6);
		p->created = sqlite3_column_double(st, 7);
	}
	if (oom)
		r = diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory reading sweep points");
	else if (r > 0)
		r = 0;
done:
	sqlite3_finalize(st);
	if (r) {
		store_sweep_point_list_free(l);
		return r;
	}
	*out = l;
	return 0;
}

void store_sweep_point_list_free(struct store_sweep_point_list *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->n; i++) {
		struct store_sweep_point *p = &l->items[i];
		free(p->sweep_key);
		free(p->experiment);
		free(p->run);
		free(p->params_json);
		free(p->suggestion_json);
		free(p->stopped_json);
	}
	free(l->items);
	free(l);
}
