/* report_load: the store -> struct report (report_load.h). Uses only store/store.h's
 * readers; parses the experiment spec and run params (JSON) with jansson. */
#include "reports/report_load.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/util.h"
#include "schema/config.h"
#include "schema/table.h"
#include "common/banned.h"

/* A JSON value as display text: strings raw, everything else compact JSON. */
static char *json_text(const json_t *v)
{
	if (json_is_string(v))
		return ft_strdup(json_string_value(v));
	if (json_is_real(v)) {
		char buf[64];
		snprintf(buf, sizeof(buf), "%.10g", json_real_value(v));
		return ft_strdup(buf);
	}
	return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
}

static int oom(struct diag *d)
{
	return diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory loading a report");
}

/* Description and objective from the experiment's spec JSON (missing fields are fine). */
static int apply_spec(struct report *r, const char *spec)
{
	if (!spec)
		return 0;
	json_t *j = json_loads(spec, 0, NULL);
	if (!j)
		return 0;
	int rc = 0;
	json_t *desc = json_object_get(j, "description");
	if (json_is_string(desc))
		rc = report_set_text(&r->description, json_string_value(desc));
	json_t *obj = json_object_get(json_object_get(j, "sweep"), "objective");
	json_t *metric = json_object_get(obj, "metric");
	if (!rc && json_is_string(metric)) {
		rc = report_set_text(&r->objective, json_string_value(metric));
		json_t *goal = json_object_get(obj, "goal");
		r->objective_set = true;
		r->maximize = schema_enum_index("sweep.objective.goal", json_string_value(goal)) !=
			      GOAL_MINIMIZE;
	}
	json_t *gates = json_object_get(j, "gates"), *g;
	size_t gi;
	json_array_foreach(gates, gi, g) {
		if (rc)
			break;
		const char *gm = json_string_value(json_object_get(g, "metric"));
		const char *vs = json_string_value(json_object_get(g, "vs"));
		json_t *mn = json_object_get(g, "min"), *mx = json_object_get(g, "max");
		json_t *md = json_object_get(g, "min_delta");
		if (!gm)
			continue;
		struct report_gate rg = {
			.metric = (char *)(uintptr_t)gm,
			.vs = vs && strcmp(vs, "base") == 0       ? REPORT_GATE_BASE
			      : vs && strcmp(vs, "baseline") == 0 ? REPORT_GATE_BASELINE
								  : REPORT_GATE_ABSOLUTE,
			.has_min = json_is_number(mn), .min = json_number_value(mn),
			.has_max = json_is_number(mx), .max = json_number_value(mx),
			.has_min_delta = json_is_number(md), .min_delta = json_number_value(md)};
		rc = report_add_gate(r, &rg);
	}
	json_decref(j);
	return rc;
}

static int add_params(struct report *r, struct report_run *run, const char *params_json)
{
	if (!params_json)
		return 0;
	json_t *j = json_loads(params_json, 0, NULL);
	if (!json_is_object(j)) {
		json_decref(j);
		return 0;
	}
	int rc = 0;
	const char *key;
	json_t *v;
	json_object_foreach(j, key, v) {
		char *text = json_text(v);
		rc = text ? report_run_set_param(r, run, key, text) : FT_ENOMEM;
		free(text);
		if (rc)
			break;
	}
	json_decref(j);
	return rc;
}

static int load_predictions(struct report *r, struct store *s, size_t ri, struct diag *d)
{
	struct store_prediction_list *pl = NULL;
	int rc = store_predictions(s, &pl, r->runs[ri].id, d);
	if (rc)
		return rc;
	for (size_t i = 0; i < pl->n && !rc; i++) {
		const struct store_prediction *p = &pl->items[i];
		enum report_model m = strcmp(p->model, "base") == 0 ? REPORT_BASE : REPORT_TUNED;
		rc = report_run_add_prediction(&r->runs[ri], m, p->split, p->example, p->prompt,
					       p->reference, p->output, isfinite(p->score), p->score);
		if (rc)
			rc = oom(d);
	}
	store_prediction_list_free(pl);
	return rc;
}

/* Why early termination stopped a run, from its sweep point's verdict. */
static int add_stop_reason(struct report_run *run, struct store *s, const char *id,
			   struct diag *d)
{
	struct store_sweep_point_list *pl = NULL;
	int rc = store_sweep_points(s, &pl, NULL, id, d);
	if (rc)
		return rc;
	json_error_t je;
	json_t *v = pl->n && pl->items[0].stopped_json ? json_loads(pl->items[0].stopped_json, 0, &je)
						       : NULL;
	if (json_is_object(v)) {
		char text[256];
		snprintf(text, sizeof text, "band %lld of %s: %.4g, threshold %.4g (%lld runs)",
			 (long long)json_integer_value(json_object_get(v, "band")),
			 json_string_value(json_object_get(v, "metric")) ?
				 json_string_value(json_object_get(v, "metric")) : "?",
			 json_number_value(json_object_get(v, "value")),
			 json_number_value(json_object_get(v, "threshold")),
			 (long long)json_integer_value(json_object_get(v, "runs_at_band")));
		rc = report_set_text(&run->stopped, text);
		if (rc)
			rc = oom(d);
	}
	json_decref(v);
	store_sweep_point_list_free(pl);
	return rc;
}

/* Adds one stored run with its results and metric history. */
static int add_run(struct report *r, struct store *s, const struct store_run *sr, struct diag *d)
{
	struct report_run *run;
	int rc = report_add_run(r, sr->id, sr->status, &run);
	if (!rc)
		rc = report_set_text(&run->error, sr->error);
	if (!rc)
		rc = report_set_text(&run->host, sr->host);
	if (!rc)
		rc = report_set_text(&run->backend, sr->backend);
	if (!rc)
		rc = report_set_text(&run->config_json, sr->config_json);
	if (!rc)
		rc = add_params(r, run, sr->params_json);
	if (rc)
		return oom(d);
	size_t ri = (size_t)(run - r->runs);
	run->sweep_index = sr->sweep_index;
	run->started = sr->started;
	run->finished = sr->finished;
	run->step = sr->step;
	run->total_steps = sr->total_steps;
	if (strcmp(sr->status, "stopped") == 0 && (rc = add_stop_reason(run, s, sr->id, d)) != 0)
		return rc;

	struct store_result_list *rl = NULL;
	rc = store_results(s, &rl, sr->id, d);
	for (size_t i = 0; !rc && i < rl->n; i++) {
		const struct store_result *x = &rl->items[i];
		enum report_model m = strcmp(x->model, "base") == 0    ? REPORT_BASE
				      : strcmp(x->model, "delta") == 0 ? REPORT_DELTA
								       : REPORT_TUNED;
		bool ci = isfinite(x->ci_low) && isfinite(x->ci_high);
		rc = report_run_set_result(r, &r->runs[ri], m, x->split, x->metric, x->value, ci,
					   x->ci_low, x->ci_high);
		if (rc)
			rc = oom(d);
	}
	store_result_list_free(rl);
	if (rc)
		return rc;
	/* No recorded paired difference (e.g. an exec trainer): the point estimate is still
	 * tuned - base on the same examples; only its interval is unknown. */
	struct report_run *lr = &r->runs[ri];
	for (size_t m = 0; m < r->n_metrics; m++)
		if (!lr->delta[m].present && lr->base[m].present && lr->tuned[m].present) {
			lr->delta[m].present = true;
			lr->delta[m].has_ci = false;
			lr->delta[m].v = lr->delta[m].lo = lr->delta[m].hi = lr->tuned[m].v - lr->base[m].v;
		}

	struct store_metric_list *ml = NULL;
	rc = store_metrics(s, &ml, sr->id, NULL, NULL, d);
	for (size_t i = 0; !rc && i < ml->n; i++) {
		const struct store_metric *x = &ml->items[i];
		if (!isfinite(x->value))
			continue;
		rc = report_run_add_point(&r->runs[ri], x->split, x->name, x->step, x->value);
		if (rc)
			rc = oom(d);
	}
	store_metric_list_free(ml);
	return rc;
}

/* Provenance, host and date from the most recently finished (else started) run. */
static int apply_provenance(struct report *r, const struct store_run *const *runs, size_t n)
{
	const struct store_run *latest = NULL;
	for (size_t i = 0; i < n; i++) {
		double t = runs[i]->finished > 0 ? runs[i]->finished : runs[i]->started;
		double lt = latest ? (latest->finished > 0 ? latest->finished : latest->started) : -1;
		if (t > lt)
			latest = runs[i];
	}
	if (!latest)
		return 0;
	r->date = latest->finished > 0 ? latest->finished : latest->started;
	r->is_repo = latest->git_dirty >= 0 && latest->git_commit != NULL;
	r->dirty = latest->git_dirty == 1;
	if (report_set_text(&r->commit, latest->git_commit) ||
	    report_set_text(&r->branch, latest->git_branch) ||
	    report_set_text(&r->remote, latest->git_remote) ||
	    report_set_text(&r->host, latest->host))
		return FT_ENOMEM;
	return 0;
}

static int not_found(struct store *s, const char *ref, struct diag *d)
{
	struct store_experiment_list *el = NULL;
	struct diag ignore;
	diag_init(&ignore);
	int rc = diag_set(d, FT_EINVAL, NULL, 0, 0, "no experiment or run '%s' in the store %s",
			  ref, store_workspace(s));
	if (store_experiments(s, &el, &ignore) == 0) {
		const char **names = calloc(el->n + 1, sizeof(char *));
		struct strbuf list = {0};
		for (size_t i = 0; names && i < el->n; i++) {
			names[i] = el->items[i].name;
			if (i < 20)
				if (strbuf_printf(&list, "%s%s", i ? ", " : "", names[i]))
					break;
		}
		const char *near = names ? nearest_word(ref, names, el->n) : NULL;
		if (near)
			diag_hint(d, "did you mean '%s'?", near);
		else if (el->n)
			diag_hint(d, "experiments in the store: %s", list.buf);
		else
			diag_hint(d, "the store is empty: run `ftlab run EXP.yaml` first");
		strbuf_free(&list);
		free(names);
		store_experiment_list_free(el);
	}
	return rc;
}

static bool id_wanted(const char *id, const char *const *ids, size_t n)
{
	if (!ids)
		return true;
	for (size_t i = 0; i < n; i++)
		if (strcmp(ids[i], id) == 0)
			return true;
	return false;
}

int report_load(struct report **out, struct store *s, const char *ref, struct diag *d)
{
	return report_load_only(out, s, ref, NULL, 0, d);
}

int report_load_only(struct report **out, struct store *s, const char *ref,
		     const char *const *ids, size_t n_ids, struct diag *d)
{
	*out = NULL;
	char *exp_name = NULL;
	const char *commit = NULL;
	const char *at = strchr(ref, '@');
	struct store_experiment_list *el = NULL;
	struct store_run_list *rl = NULL;
	struct store_run *single = NULL;
	struct report *r = NULL;
	const struct store_run **chosen = NULL;
	size_t n_chosen = 0;
	int rc;
	exp_name = at ? ft_strndup(ref, (size_t)(at - ref)) : ft_strdup(ref);
	if (!exp_name)
		return oom(d);
	if (at) {
		commit = at + 1;
		if (strlen(commit) < 4) {
			rc = diag_set(d, FT_EINVAL, NULL, 0, 0, "'%s': give at least 4 characters of "
				      "the commit after '@'", ref);
			goto done;
		}
	}
	rc = store_experiments(s, &el, d);
	if (rc)
		goto done;
	const struct store_experiment *exp = NULL;
	for (size_t i = 0; i < el->n; i++)
		if (strcmp(el->items[i].name, exp_name) == 0)
			exp = &el->items[i];
	if (!exp && !at) {
		/* a run id? */
		struct diag rd;
		diag_init(&rd);
		if (strlen(ref) >= 4 && store_run_get(s, &single, ref, &rd) == 0) {
			free(exp_name);
			exp_name = ft_strdup(single->experiment);
			for (size_t i = 0; exp_name && i < el->n; i++)
				if (strcmp(el->items[i].name, exp_name) == 0)
					exp = &el->items[i];
		} else if (rd.code == FT_EINVAL && strstr(rd.text, "ambiguous")) {
			rc = diag_set(d, FT_EINVAL, NULL, 0, 0, "%s", rd.text);
			goto done;
		}
	}
	if (!exp && !single) {
		rc = not_found(s, exp_name, d);
		goto done;
	}
	r = report_new(exp_name);
	if (!r) {
		rc = oom(d);
		goto done;
	}
	if (exp && (report_set_text(&r->source_path, exp->source_path) ||
		    apply_spec(r, exp->spec_json))) {
		rc = oom(d);
		goto done;
	}
	if (single) {
		chosen = calloc(1, sizeof(const struct store_run *));
		if (!chosen) {
			rc = oom(d);
			goto done;
		}
		chosen[n_chosen++] = single;
	} else {
		rc = store_runs(s, &rl, exp_name, NULL, d);
		if (rc)
			goto done;
		chosen = calloc(rl->n + 1, sizeof(const struct store_run *));
		if (!chosen) {
			rc = oom(d);
			goto done;
		}
		for (size_t i = 0; i < rl->n; i++) {
			const struct store_run *sr = &rl->items[i];
			if (commit && (!sr->git_commit ||
				       strncmp(sr->git_commit, commit, strlen(commit)) != 0))
				continue;
			if (!id_wanted(sr->id, ids, n_ids))
				continue;
			chosen[n_chosen++] = sr;
		}
		if (commit && n_chosen == 0) {
			rc = diag_set(d, FT_EINVAL, NULL, 0, 0, "experiment '%s' has no runs executed at "
				      "a commit starting with '%s'", exp_name, commit);
			goto done;
		}
	}
	for (size_t i = 0; i < n_chosen && !rc; i++)
		rc = add_run(r, s, chosen[i], d);
	if (!rc && apply_provenance(r, chosen, n_chosen))
		rc = oom(d);
	long best = rc ? -1 : report_best_run(r);
	if (best >= 0)
		rc = load_predictions(r, s, (size_t)best, d);
	if (!rc) {
		*out = r;
		r = NULL;
	}
done:
	report_free(r);
	free(chosen);
	free(exp_name);
	store_run_list_free(rl);
	store_run_free(single);
	store_experiment_list_free(el);
	return rc;
}

int report_load_baseline(struct report *r, struct store *s, const char *ref, struct diag *d)
{
	struct report *b = NULL;
	int rc = report_load(&b, s, ref, d);
	if (rc)
		return rc;
	if (report_set_text(&r->baseline_label, ref)) {
		report_free(b);
		return oom(d);
	}
	report_free(r->baseline);
	r->baseline = b;
	return 0;
}
