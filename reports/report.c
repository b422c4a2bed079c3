/* report: building and querying the report data model (report.h), and the config diff
 * between runs' resolved configs. Rendering lives in report_html.c, report_md.c and
 * report_charts.c; reading the store in report_load.c. */
#include "reports/report.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/util.h"
#include "common/banned.h"

struct report *report_new(const char *name)
{
	struct report *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->experiment = ft_strdup(name ? name : "");
	if (!r->experiment) {
		free(r);
		return NULL;
	}
	return r;
}

static void curve_free(struct report_curve *c)
{
	free(c->split);
	free(c->name);
	free(c->steps);
	free(c->values);
}

static void pred_free(struct report_prediction *p)
{
	free(p->split);
	free(p->prompt);
	free(p->reference);
	free(p->base_output);
	free(p->tuned_output);
}

static void run_free(struct report_run *run, size_t n_params)
{
	free(run->id);
	free(run->status);
	free(run->error);
	free(run->stopped);
	free(run->host);
	free(run->backend);
	free(run->config_json);
	if (run->param_values)
		for (size_t i = 0; i < n_params; i++)
			free(run->param_values[i]);
	free(run->param_values);
	free(run->base);
	free(run->tuned);
	free(run->delta);
	for (size_t i = 0; i < run->n_curves; i++)
		curve_free(&run->curves[i]);
	free(run->curves);
	for (size_t i = 0; i < run->n_preds; i++)
		pred_free(&run->preds[i]);
	free(run->preds);
}

void report_free(struct report *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n_runs; i++)
		run_free(&r->runs[i], r->n_params);
	free(r->runs);
	for (size_t i = 0; i < r->n_params; i++)
		free(r->params[i]);
	free(r->params);
	for (size_t i = 0; i < r->n_metrics; i++)
		free(r->metrics[i]);
	free(r->metrics);
	free(r->experiment);
	free(r->description);
	free(r->source_path);
	free(r->commit);
	free(r->branch);
	free(r->host);
	free(r->remote);
	free(r->objective);
	for (size_t i = 0; i < r->n_gates; i++)
		free(r->gates[i].metric);
	free(r->gates);
	free(r->baseline_label);
	report_free(r->baseline);
	free(r);
}

int report_set_text(char **field, const char *value)
{
	char *c = value ? ft_strdup(value) : NULL;
	if (value && !c)
		return FT_ENOMEM;
	free(*field);
	*field = c;
	return 0;
}

/* Grows an array of elem-size items to hold at least need (zeroing new space). */
static int grow(void **arr, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return 0;
	size_t nc = *cap ? *cap * 2 : 8, bytes;
	while (nc < need)
		nc *= 2;
	if (!size_mul(nc, elem, &bytes))
		return FT_ENOMEM;
	void *p = realloc(*arr, bytes);
	if (!p)
		return FT_ENOMEM;
	memset((char *)p + *cap * elem, 0, (nc - *cap) * elem);
	*arr = p;
	*cap = nc;
	return 0;
}

/* Finds key in names[0..n): *out is its index and *added false; or appends a copy of it at
 * index n (*added true; the caller counts it once the runs have room for it). */
static int name_index(char ***names, size_t n, const char *key, size_t *out, bool *added)
{
	*added = false;
	for (size_t i = 0; i < n; i++)
		if (strcmp((*names)[i], key) == 0) {
			*out = i;
			return 0;
		}
	char **p = realloc(*names, (n + 1) * sizeof(*p));
	if (!p)
		return FT_ENOMEM;
	*names = p;
	p[n] = ft_strdup(key);
	if (!p[n])
		return FT_ENOMEM;
	*out = n;
	*added = true;
	return 0;
}

int report_param_index(struct report *r, const char *key, size_t *out)
{
	bool added;
	if (name_index(&r->params, r->n_params, key, out, &added))
		return FT_ENOMEM;
	if (!added)
		return 0;
	size_t n = r->n_params + 1;
	for (size_t i = 0; i < r->n_runs; i++) {
		char **v = realloc(r->runs[i].param_values, n * sizeof(*v));
		if (!v)
			return FT_ENOMEM;
		r->runs[i].param_values = v;
		v[n - 1] = ft_strdup("");
		if (!v[n - 1])
			return FT_ENOMEM;
	}
	r->n_params = n;
	return 0;
}

static int run_fit_metrics(struct report_run *run, size_t n)
{
	if (n <= run->cap_metrics)
		return 0;
	size_t cap = run->cap_metrics;
	size_t c1 = cap, c2 = cap;
	if (grow((void **)&run->base, &cap, n, sizeof(struct report_value)) ||
	    grow((void **)&run->tuned, &c1, n, sizeof(struct report_value)) ||
	    grow((void **)&run->delta, &c2, n, sizeof(struct report_value)))
		return FT_ENOMEM;
	run->cap_metrics = cap;
	return 0;
}

int report_metric_index(struct report *r, const char *name, size_t *out)
{
	bool added;
	if (name_index(&r->metrics, r->n_metrics, name, out, &added))
		return FT_ENOMEM;
	if (!added)
		return 0;
	size_t n = r->n_metrics + 1;
	for (size_t i = 0; i < r->n_runs; i++)
		if (run_fit_metrics(&r->runs[i], n))
			return FT_ENOMEM;
	r->n_metrics = n;
	return 0;
}

int report_add_run(struct report *r, const char *id, const char *status,
		   struct report_run **out)
{
	struct report_run *runs = realloc(r->runs, (r->n_runs + 1) * sizeof(*runs));
	if (!runs)
		return FT_ENOMEM;
	r->runs = runs;
	struct report_run *run = &runs[r->n_runs];
	memset(run, 0, sizeof(*run));
	r->n_runs++;
	run->id = ft_strdup(id);
	run->status = ft_strdup(status ? status : "unknown");
	run->param_values = calloc(r->n_params + 1, sizeof(char *));
	if (!run->id || !run->status || !run->param_values)
		return FT_ENOMEM;
	for (size_t i = 0; i < r->n_params; i++)
		if (!(run->param_values[i] = ft_strdup("")))
			return FT_ENOMEM;
	if (run_fit_metrics(run, r->n_metrics ? r->n_metrics : 1))
		return FT_ENOMEM;
	*out = run;
	return 0;
}

int report_run_set_param(struct report *r, struct report_run *run, const char *key,
			 const char *value)
{
	size_t i;
	int rc = report_param_index(r, key, &i);
	if (rc)
		return rc;
	return report_set_text(&run->param_values[i], value ? value : "");
}

int report_run_set_result(struct report *r, struct report_run *run, enum report_model model,
			  const char *split, const char *metric, double value, bool has_ci,
			  double lo, double hi)
{
	char name[256];
	snprintf(name, sizeof(name), "%s.%s", split, metric);
	size_t i;
	int rc = report_metric_index(r, name, &i);
	if (rc)
		return rc;
	rc = run_fit_metrics(run, r->n_metrics);
	if (rc)
		return rc;
	struct report_value *v = model == REPORT_BASE ? &run->base[i]
				 : model == REPORT_TUNED ? &run->tuned[i] : &run->delta[i];
	v->present = true;
	v->v = value;
	v->has_ci = has_ci;
	v->lo = has_ci ? lo : value;
	v->hi = has_ci ? hi : value;
	return 0;
}

int report_run_add_point(struct report_run *run, const char *split, const char *name,
			 int64_t step, double value)
{
	struct report_curve *c = NULL;
	for (size_t i = 0; i < run->n_curves; i++)
		if (strcmp(run->curves[i].split, split) == 0 && strcmp(run->curves[i].name, name) == 0)
			c = &run->curves[i];
	if (!c) {
		struct report_curve *cs = realloc(run->curves, (run->n_curves + 1) * sizeof(*cs));
		if (!cs)
			return FT_ENOMEM;
		run->curves = cs;
		c = &cs[run->n_curves++];
		memset(c, 0, sizeof(*c));
		c->split = ft_strdup(split);
		c->name = ft_strdup(name);
		if (!c->split || !c->name)
			return FT_ENOMEM;
	}
	if (c->n == c->cap) {
		size_t cap = c->cap, cap2 = c->cap;
		if (grow((void **)&c->steps, &cap, c->n + 1, sizeof(int64_t)) ||
		    grow((void **)&c->values, &cap2, c->n + 1, sizeof(double)))
			return FT_ENOMEM;
		c->cap = cap;
	}
	c->steps[c->n] = step;
	c->values[c->n] = value;
	c->n++;
	return 0;
}

int report_run_add_prediction(struct report_run *run, enum report_model model,
			      const char *split, int64_t example, const char *prompt,
			      const char *reference, const char *output, bool has_score,
			      double score)
{
	struct report_prediction *p = NULL;
	for (size_t i = 0; i < run->n_preds; i++)
		if (run->preds[i].example == example && strcmp(run->preds[i].split, split) == 0)
			p = &run->preds[i];
	if (!p) {
		struct report_prediction *ps = realloc(run->preds, (run->n_preds + 1) * sizeof(*ps));
		if (!ps)
			return FT_ENOMEM;
		run->preds = ps;
		p = &ps[run->n_preds++];
		memset(p, 0, sizeof(*p));
		p->example = example;
		if (!(p->split = ft_strdup(split)))
			return FT_ENOMEM;
	}
	if (!p->prompt && prompt && report_set_text(&p->prompt, prompt))
		return FT_ENOMEM;
	if (!p->reference && reference && report_set_text(&p->reference, reference))
		return FT_ENOMEM;
	struct report_value *sc = model == REPORT_BASE ? &p->base_score : &p->tuned_score;
	if (report_set_text(model == REPORT_BASE ? &p->base_output : &p->tuned_output,
			    output ? output : ""))
		return FT_ENOMEM;
	sc->present = has_score;
	sc->v = sc->lo = sc->hi = score;
	return 0;
}

bool report_run_ok(const struct report_run *run)
{
	return strcmp(run->status, "finished") == 0 || strcmp(run->status, "cached") == 0;
}

bool report_run_failed(const struct report_run *run)
{
	return !report_run_ok(run) && strcmp(run->status, "queued") != 0 &&
	       strcmp(run->status, "running") != 0 && strcmp(run->status, "stopped") != 0;
}

void report_stopped_steps(const struct report *r, size_t *out_n, int64_t *out_saved,
			  int64_t *out_planned)
{
	*out_n = 0;
	*out_saved = *out_planned = 0;
	for (size_t i = 0; i < r->n_runs; i++) {
		const struct report_run *run = &r->runs[i];
		bool stopped = strcmp(run->status, "stopped") == 0;
		*out_n += stopped;
		if (run->total_steps <= 0 || !(stopped || report_run_ok(run)))
			continue;
		*out_planned += run->total_steps;
		if (stopped && run->total_steps > run->step)
			*out_saved += run->total_steps - run->step;
	}
}

static bool name_minimizes(const char *m)
{
	size_t n = strlen(m);
	return (n >= 4 && strcmp(m + n - 4, "loss") == 0) ||
	       (n >= 10 && strcmp(m + n - 10, "perplexity") == 0);
}

long report_rank_metric(const struct report *r, bool *out_maximize)
{
	if (r->objective)
		for (size_t i = 0; i < r->n_metrics; i++)
			if (strcmp(r->metrics[i], r->objective) == 0) {
				*out_maximize = r->objective_set ? r->maximize
								 : !name_minimizes(r->objective);
				return (long)i;
			}
	if (r->n_metrics == 0)
		return -1;
	*out_maximize = !name_minimizes(r->metrics[0]);
	return 0;
}

bool report_metric_maximize(const struct report *r, const char *metric)
{
	if (r->objective && r->objective_set && strcmp(r->objective, metric) == 0)
		return r->maximize;
	return !name_minimizes(metric);
}

long report_metric_find(const struct report *r, const char *metric)
{
	for (size_t i = 0; i < r->n_metrics; i++)
		if (strcmp(r->metrics[i], metric) == 0)
			return (long)i;
	return -1;
}

long report_best_run(const struct report *r)
{
	bool maximize = true;
	long m = report_rank_metric(r, &maximize);
	if (m < 0)
		return -1;
	long best = -1;
	double bv = 0;
	for (size_t i = 0; i < r->n_runs; i++) {
		const struct report_run *run = &r->runs[i];
		if (!report_run_ok(run) || !run->tuned[m].present || !isfinite(run->tuned[m].v))
			continue;
		double v = run->tuned[m].v;
		if (best < 0 || (maximize ? v > bv : v < bv)) {
			best = (long)i;
			bv = v;
		}
	}
	return best;
}

int report_add_gate(struct report *r, const struct report_gate *g)
{
	struct report_gate *p = realloc(r->gates, (r->n_gates + 1) * sizeof *p);
	if (!p)
		return FT_ENOMEM;
	r->gates = p;
	p[r->n_gates] = *g;
	p[r->n_gates].metric = ft_strdup(g->metric ? g->metric : "");
	if (!p[r->n_gates].metric)
		return FT_ENOMEM;
	r->n_gates++;
	return 0;
}

int report_gate_check(const struct report *r, const struct report_run *run,
		      const struct report_gate *g)
{
	if (g->vs == REPORT_GATE_BASELINE)
		return -1;
	long m = report_metric_find(r, g->metric);
	if (m < 0 || !run->tuned[m].present || !isfinite(run->tuned[m].v))
		return 0;
	double v = run->tuned[m].v;
	if (g->vs == REPORT_GATE_ABSOLUTE)
		return (!g->has_min || v >= g->min) && (!g->has_max || v <= g->max);
	double delta = run->delta[m].present ? run->delta[m].v
		       : run->base[m].present ? v - run->base[m].v : NAN;
	return isfinite(delta) && (!g->has_min_delta || delta >= g->min_delta);
}

double report_run_last(const struct report_run *run, const char *split, const char *name)
{
	const struct report_curve *c = report_run_curve(run, split, name);
	return c && c->n ? c->values[c->n - 1] : NAN;
}

bool report_param_is_seed(const char *key)
{
	size_t n = strlen(key);
	return strcmp(key, "seed") == 0 || (n > 5 && strcmp(key + n - 5, ".seed") == 0);
}

void report_run_token(char *out, size_t n, const struct report *r, size_t run_index)
{
	const char *id = r->runs[run_index].id;
	size_t len = strlen(id);
	bool ok = len > 0 && len <= 64;
	for (size_t i = 0; ok && i < len; i++) {
		char c = id[i];
		ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		     c == '_' || c == '-';
	}
	if (ok)
		snprintf(out, n, "%s", id);
	else
		snprintf(out, n, "run%zu", run_index);
}

const struct report_curve *report_run_curve(const struct report_run *run, const char *split,
					    const char *name)
{
	for (size_t i = 0; i < run->n_curves; i++)
		if (strcmp(run->curves[i].split, split) == 0 && strcmp(run->curves[i].name, name) == 0)
			return &run->curves[i];
	return NULL;
}

void report_fmt_num(char *out, size_t n, double v)
{
	if (isnan(v))
		snprintf(out, n, "nan");
	else if (isinf(v))
		snprintf(out, n, v > 0 ? "inf" : "-inf");
	else
		snprintf(out, n, "%.4g", v);
}

/* ---- config diff ---- */

struct flat {
	char **keys, **vals;
	size_t n, cap;
};

static int flat_add(struct flat *f, const char *key, const char *val)
{
	if (f->n == f->cap) {
		size_t c1 = f->cap, c2 = f->cap;
		if (grow((void **)&f->keys, &c1, f->n + 1, sizeof(char *)) ||
		    grow((void **)&f->vals, &c2, f->n + 1, sizeof(char *)))
			return FT_ENOMEM;
		f->cap = c1;
	}
	f->keys[f->n] = ft_strdup(key);
	f->vals[f->n] = ft_strdup(val);
	f->n++;
	return f->keys[f->n - 1] && f->vals[f->n - 1] ? 0 : FT_ENOMEM;
}

static void flat_free(struct flat *f)
{
	for (size_t i = 0; i < f->n; i++) {
		free(f->keys[i]);
		free(f->vals[i]);
	}
	free(f->keys);
	free(f->vals);
}

static int flatten(struct flat *f, const char *prefix, json_t *v, int depth)
{
	if (depth > 64)
		return FT_EINVAL;
	if (json_is_object(v)) {
		const char *k;
		json_t *child;
		json_object_foreach(v, k, child) {
			struct strbuf key = {0};
			int rc = *prefix ? strbuf_printf(&key, "%s.%s", prefix, k)
					 : strbuf_puts(&key, k);
			if (!rc)
				rc = flatten(f, key.buf ? key.buf : "", child, depth + 1);
			strbuf_free(&key);
			if (rc)
				return rc;
		}
		return 0;
	}
	char *text = json_is_string(v) ? ft_strdup(json_string_value(v))
				       : json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY |
							       JSON_REAL_PRECISION(10));
	if (!text)
		return FT_ENOMEM;
	int rc = flat_add(f, prefix, text);
	free(text);
	return rc;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static const char *flat_get(const struct flat *f, const char *key)
{
	for (size_t i = 0; i < f->n; i++)
		if (strcmp(f->keys[i], key) == 0)
			return f->vals[i];
	return NULL;
}

int report_config_diff(struct report_diff *out, const char *const *configs, size_t n,
		       struct diag *d)
{
	memset(out, 0, sizeof(*out));
	out->n_configs = n;
	int rc = 0;
	struct flat *flats = calloc(n ? n : 1, sizeof(*flats));
	struct flat all = {0};
	if (!flats)
		return FT_ENOMEM;
	for (size_t i = 0; i < n && !rc; i++) {
		if (!configs[i])
			continue;
		json_error_t err;
		json_t *j = json_loads(configs[i], JSON_DECODE_ANY, &err);
		if (!j) {
			rc = diag_set(d, FT_EINVAL, NULL, 0, 0, "a run's resolved config is not JSON: %s",
				      err.text);
			break;
		}
		rc = flatten(&flats[i], "", j, 0);
		json_decref(j);
		for (size_t k = 0; !rc && k < flats[i].n; k++)
			if (!flat_get(&all, flats[i].keys[k]))
				rc = flat_add(&all, flats[i].keys[k], "");
	}
	if (rc)
		goto done;
	if (all.n > 1)
		qsort(all.keys, all.n, sizeof(char *), cmp_str);
	for (size_t k = 0; k < all.n; k++) {
		const char *first = NULL;
		bool differ = false, seen = false;
		for (size_t i = 0; i < n; i++) {
			if (!configs[i])
				continue;
			const char *v = flat_get(&flats[i], all.keys[k]);
			if (!seen) {
				first = v;
				seen = true;
			} else if ((v == NULL) != (first == NULL) || (v && strcmp(v, first) != 0)) {
				differ = true;
			}
		}
		if (!differ)
			continue;
		char **keys = realloc(out->keys, (out->n_keys + 1) * sizeof(char *));
		char **vals = keys ? realloc(out->values, (out->n_keys + 1) * n * sizeof(char *)
							  + sizeof(char *))
				   : NULL;
		if (keys)
			out->keys = keys;
		if (!vals) {
			rc = FT_ENOMEM;
			goto done;
		}
		out->values = vals;
		out->keys[out->n_keys] = ft_strdup(all.keys[k]);
		for (size_t i = 0; i < n; i++) {
			const char *v = configs[i] ? flat_get(&flats[i], all.keys[k]) : NULL;
			vals[out->n_keys * n + i] = ft_strdup(v ? v : "");
		}
		out->n_keys++;
	}
done:
	for (size_t i = 0; i < n; i++)
		flat_free(&flats[i]);
	free(flats);
	flat_free(&all);
	if (rc)
		report_diff_free(out);
	return rc;
}

void report_diff_free(struct report_diff *diff)
{
	if (!diff)
		return;
	for (size_t k = 0; k < diff->n_keys; k++) {
		free(diff->keys[k]);
		for (size_t i = 0; i < diff->n_configs; i++)
			free(diff->values[k * diff->n_configs + i]);
	}
	free(diff->keys);
	free(diff->values);
	memset(diff, 0, sizeof(*diff));
}
