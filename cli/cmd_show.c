/* cmd_show: `ftlab show RUN [--json]`: one run's record: identity, status, provenance,
 * swept values, resolved config, final results (base, tuned, delta with intervals),
 * metric histories (summarised), artifacts and events; for a sweep point, how bayes chose
 * it and at which band and threshold early termination stopped it. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "cli/cli.h"
#include "runner/run.h"
#include "cli/run_table.h"
#include "schema/schema.h"
#include "schema/table.h"
#include "store/store.h"
#include "common/banned.h"

struct show_data {
	struct store_run *run;
	struct store_result_list *results;
	struct store_metric_list *metrics;
	struct store_artifact_list *artifacts;
	struct store_event_list *events;
	struct store_sweep_point_list *points; /* the sweep points this run was (newest first) */
};

/* How the run's point was chosen and why it was stopped, from its newest sweep point:
 * {"index", "suggestion": {...} | null, "stopped": {...} | null}, or null. */
static json_t *sweep_json(const struct show_data *x)
{
	if (!x->points || x->points->n == 0)
		return json_null();
	const struct store_sweep_point *p = &x->points->items[0];
	json_error_t je;
	json_t *sug = p->suggestion_json ? json_loads(p->suggestion_json, 0, &je) : NULL;
	json_t *stop = p->stopped_json ? json_loads(p->stopped_json, 0, &je) : NULL;
	return json_pack("{s:s, s:I, s:o, s:o}", "key", p->sweep_key, "index",
			 (json_int_t)p->sweep_index, "suggestion", sug ? sug : json_null(),
			 "stopped", stop ? stop : json_null());
}

/* The two lines `show` prints for a sweep point (nothing when there is nothing to say). */
static void print_sweep(const struct show_data *x)
{
	json_t *o = sweep_json(x);
	const json_t *stop = json_object_get(o, "stopped"), *sug = json_object_get(o, "suggestion");
	if (json_is_object(stop) && strcmp(x->run->status, "stopped") == 0)
		printf("stopped     by %s at band %lld of %s (step %lld): %.6g, worse than the "
		       "threshold %.6g of %lld runs\n",
		       json_string_value(json_object_get(stop, "type")),
		       (long long)json_integer_value(json_object_get(stop, "band")),
		       json_string_value(json_object_get(stop, "metric")),
		       (long long)json_integer_value(json_object_get(stop, "step")),
		       json_number_value(json_object_get(stop, "value")),
		       json_number_value(json_object_get(stop, "threshold")),
		       (long long)json_integer_value(json_object_get(stop, "runs_at_band")));
	const char *meth = json_string_value(json_object_get(sug, "method"));
	if (json_is_object(sug) && meth &&
	    schema_enum_index("sweep.method", meth) == (int)SWEEP_TPE) {
		if (json_is_true(json_object_get(sug, "random_start")))
			printf("chosen by   tpe: a random start point\n");
		else
			printf("chosen by   tpe: log l(x)/g(x) %.4g, the best of %lld draws from the "
			       "density of the %lld best of %lld runs\n",
			       json_number_value(json_object_get(sug, "log_ratio")),
			       (long long)json_integer_value(json_object_get(sug, "candidates")),
			       (long long)json_integer_value(json_object_get(sug, "good")),
			       (long long)json_integer_value(json_object_get(sug, "observations")));
	} else if (json_is_object(sug)) {
		if (json_is_true(json_object_get(sug, "space_filling")))
			printf("chosen by   bayes: a space-filling start point\n");
		else
			printf("chosen by   bayes: predicted %.6g +- %.3g, expected improvement %.3g "
			       "(from %lld results)\n",
			       json_number_value(json_object_get(sug, "predicted")),
			       json_number_value(json_object_get(sug, "sd")),
			       json_number_value(json_object_get(sug, "expected_improvement")),
			       (long long)json_integer_value(json_object_get(sug, "observations")));
	}
	json_decref(o);
}

static json_t *num_or_null(double v)
{
	return isfinite(v) ? json_real(v) : json_null();
}

static json_t *str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

static void print_json(const struct show_data *x)
{
	const struct store_run *r = x->run;
	json_error_t je;
	json_t *params = json_loads(r->params_json ? r->params_json : "{}", 0, &je);
	json_t *config = json_loads(r->config_json ? r->config_json : "{}", 0, &je);
	json_t *prov = r->git_dirty < 0 && !r->git_commit
			       ? json_null()
			       : json_pack("{s:o, s:o, s:o, s:o}", "commit", str_or_null(r->git_commit),
					   "branch", str_or_null(r->git_branch), "dirty",
					   json_boolean(r->git_dirty == 1), "remote",
					   str_or_null(r->git_remote));
	json_t *results = json_array(), *metrics = json_object(), *artifacts = json_array(),
	       *events = json_array();
	for (size_t i = 0; i < x->results->n; i++) {
		const struct store_result *e = &x->results->items[i];
		json_array_append_new(results,
				      json_pack("{s:s, s:s, s:s, s:o, s:o, s:o}", "model", e->model,
						"split", e->split, "metric", e->metric, "value",
						num_or_null(e->value), "ci_low", num_or_null(e->ci_low),
						"ci_high", num_or_null(e->ci_high)));
	}
	for (size_t i = 0; i < x->metrics->n; i++) {
		const struct store_metric *m = &x->metrics->items[i];
		char key[256];
		snprintf(key, sizeof key, "%s.%s", m->split, m->name);
		json_t *series = json_object_get(metrics, key);
		if (!series) {
			series = json_array();
			json_object_set_new(metrics, key, series);
		}
		json_array_append_new(series, json_pack("[I, o]", (json_int_t)m->step,
							num_or_null(m->value)));
	}
	for (size_t i = 0; i < x->artifacts->n; i++) {
		const struct store_artifact *a = &x->artifacts->items[i];
		json_array_append_new(artifacts, json_pack("{s:s, s:s, s:I, s:s}", "kind", a->kind,
							   "path", a->path, "bytes",
							   (json_int_t)a->bytes, "sha256", a->sha256));
	}
	for (size_t i = 0; i < x->events->n; i++) {
		const struct store_event *e = &x->events->items[i];
		json_array_append_new(events, json_pack("{s:f, s:s, s:s, s:s}", "time", e->time,
							"level", e->level, "kind", e->kind,
							"message", e->message));
	}
	json_t *o = json_pack(
		"{s:s, s:s, s:s, s:I, s:o, s:s, s:o, s:o, s:o, s:I, s:o, s:I, s:I, s:I, s:I, s:o,"
		" s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}",
		"id", r->id, "experiment", r->experiment, "status", r->status, "sweep_index",
		(json_int_t)r->sweep_index, "params", params ? params : json_object(), "identity",
		r->identity ? r->identity : "", "backend", str_or_null(r->backend), "device",
		str_or_null(r->device), "host", str_or_null(r->host), "pid", (json_int_t)r->pid,
		"threads", json_integer(r->threads), "seed", (json_int_t)r->seed, "attempts",
		(json_int_t)r->attempts, "step", (json_int_t)r->step, "total_steps",
		(json_int_t)r->total_steps, "started", r->started > 0 ? json_real(r->started) : json_null(),
		"finished", r->finished > 0 ? json_real(r->finished) : json_null(), "error",
		str_or_null(r->error), "run_dir", str_or_null(r->run_dir), "provenance", prov,
		"config", config ? config : json_object(), "results", results, "metrics", metrics,
		"artifacts", artifacts, "events", events, "invocation", json_integer(r->invocation));
	/* Where a Slurm run went: its array job, index, the current attempt's job id, node. */
	json_t *sl = json_null();
	if (r->launcher)
		sl = json_pack("{s:s, s:o, s:I, s:o, s:o, s:o}", "launcher", r->launcher,
			       "array_job", str_or_null(r->slurm_job),
			       "array_task", (json_int_t)r->slurm_task, "job_id",
			       str_or_null(r->slurm_job_id), "node", str_or_null(r->node),
			       "submission", str_or_null(r->submission));
	json_object_set_new(o, "cluster", sl ? sl : json_null());
	json_object_set_new(o, "sweep", sweep_json(x));
	json_dumpf(o, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
	fputc('\n', stdout);
	json_decref(o);
}

static void print_text(const struct cli *cli, const struct show_data *x)
{
	const struct store_run *r = x->run;
	char t1[32], t2[32], dur[32];
	run_format_time(t1, sizeof t1, r->started);
	run_format_time(t2, sizeof t2, r->finished);
	run_format_duration(dur, sizeof dur,
			    r->started > 0 && r->finished > 0 ? r->finished - r->started : NAN);
	char *params = run_params_text(r->params_json);
	const char *color = "", *reset = "";
	if (cli->color) {
		reset = "\033[0m";
		color = strcmp(r->status, "finished") == 0 ? "\033[32m"
			: strcmp(r->status, "failed") == 0 || strcmp(r->status, "crashed") == 0
				? "\033[31m"
				: "\033[33m";
	}
	printf("run         %s\n", r->id);
	printf("experiment  %s (sweep index %lld)\n", r->experiment, (long long)r->sweep_index);
	printf("status      %s%s%s\n", color, r->status, reset);
	if (r->error)
		printf("error       %s\n", r->error);
	print_sweep(x);
	printf("params      %s\n", params && params[0] ? params : "(no sweep)");
	printf("identity    %s\n", r->identity ? r->identity : "-");
	printf("backend     %s on %s, %d threads, seed %lld\n", r->backend ? r->backend : "-",
	       r->device ? r->device : "-", r->threads, (long long)r->seed);
	printf("host        %s (pid %lld), attempts %lld\n", r->host ? r->host : "-",
	       (long long)r->pid, (long long)r->attempts);
	if (r->launcher)
		printf("%-11s job %s_%lld (job id %s) on node %s, submission %s\n",
		       r->launcher, r->slurm_job ? r->slurm_job : "?", (long long)r->slurm_task,
		       r->slurm_job_id ? r->slurm_job_id : "-", r->node ? r->node : "-",
		       r->submission ? r->submission : "-");
	printf("started     %s UTC, finished %s UTC (%s)\n", t1, t2, dur);
	if (r->total_steps > 0 || r->step > 0)
		printf("step        %lld of %lld\n", (long long)r->step, (long long)r->total_steps);
	if (r->git_commit)
		printf("git         %s%s on %s%s%s\n", r->git_commit, r->git_dirty == 1 ? " (dirty)" : "",
		       r->git_branch ? r->git_branch : "(detached)", r->git_remote ? ", " : "",
		       r->git_remote ? r->git_remote : "");
	else
		printf("git         not a git repository\n");
	printf("directory   %s\n", r->run_dir ? r->run_dir : "-");
	free(params);

	if (x->results->n) {
		printf("\nresults\n");
		static const char *const h[] = {"  MODEL", "SPLIT", "METRIC", "VALUE", "CI"};
		struct run_table *t = run_table_new(5, h);
		if (t) {
			run_table_align_right(t, 3);
			for (size_t i = 0; i < x->results->n; i++) {
				const struct store_result *e = &x->results->items[i];
				char model[40], v[32], lo[32], hi[32], ci[80] = "-";
				snprintf(model, sizeof model, "  %s", e->model);
				run_format_number(v, sizeof v, e->value);
				if (!isnan(e->ci_low) && !isnan(e->ci_high)) {
					run_format_number(lo, sizeof lo, e->ci_low);
					run_format_number(hi, sizeof hi, e->ci_high);
					snprintf(ci, sizeof ci, "[%s, %s]", lo, hi);
				}
				const char *cells[] = {model, e->split, e->metric, v, ci};
				if (run_table_add(t, cells) != 0)
					break;
			}
			run_table_print(t, stdout);
			run_table_free(t);
		}
	}
	if (x->metrics->n) {
		printf("\nmetric history\n");
		static const char *const h[] = {"  SERIES", "POINTS", "STEPS", "FIRST", "LAST"};
		struct run_table *t = run_table_new(5, h);
		if (t) {
			run_table_align_right(t, 1);
			run_table_align_right(t, 3);
			run_table_align_right(t, 4);
			size_t i = 0;
			while (i < x->metrics->n) {
				size_t j = i;
				const struct store_metric *a = &x->metrics->items[i];
				while (j < x->metrics->n && strcmp(x->metrics->items[j].split, a->split) == 0 &&
				       strcmp(x->metrics->items[j].name, a->name) == 0)
					j++;
				const struct store_metric *b = &x->metrics->items[j - 1];
				char series[200], pts[24], steps[64], first[32], last[32];
				snprintf(series, sizeof series, "  %s.%s", a->split, a->name);
				snprintf(pts, sizeof pts, "%zu", j - i);
				snprintf(steps, sizeof steps, "%lld..%lld", (long long)a->step,
					 (long long)b->step);
				run_format_number(first, sizeof first, a->value);
				run_format_number(last, sizeof last, b->value);
				const char *cells[] = {series, pts, steps, first, last};
				if (run_table_add(t, cells) != 0)
					break;
				i = j;
			}
			run_table_print(t, stdout);
			run_table_free(t);
		}
	}
	if (x->artifacts->n) {
		printf("\nartifacts\n");
		static const char *const h[] = {"  PATH", "KIND", "BYTES", "SHA256"};
		struct run_table *t = run_table_new(4, h);
		if (t) {
			run_table_align_right(t, 2);
			for (size_t i = 0; i < x->artifacts->n; i++) {
				const struct store_artifact *a = &x->artifacts->items[i];
				char path[600], bytes[32], sha[16];
				snprintf(path, sizeof path, "  %s", a->path);
				snprintf(bytes, sizeof bytes, "%lld", (long long)a->bytes);
				snprintf(sha, sizeof sha, "%.12s", a->sha256 ? a->sha256 : "-");
				const char *cells[] = {path, a->kind, bytes, sha};
				if (run_table_add(t, cells) != 0)
					break;
			}
			run_table_print(t, stdout);
			run_table_free(t);
		}
	}
	if (x->events->n) {
		printf("\nevents\n");
		for (size_t i = 0; i < x->events->n; i++) {
			const struct store_event *e = &x->events->items[i];
			char ts[32];
			run_format_time(ts, sizeof ts, e->time);
			printf("  %s  %-7s %-10s %s\n", ts, e->level, e->kind, e->message);
		}
	}
	if (r->config_json) {
		char *yaml = NULL;
		struct diag d;
		diag_init(&d);
		if (schema_json_to_yaml(&yaml, r->config_json, &d) == 0) {
			printf("\nconfig\n");
			for (char *line = yaml, *nl; line && *line; line = nl ? nl + 1 : NULL) {
				nl = strchr(line, '\n');
				printf("  %.*s\n", nl ? (int)(nl - line) : (int)strlen(line), line);
			}
		}
		free(yaml);
	}
}

int cmd_show(const struct cli *cli, int argc, char **argv)
{
	const char *id = NULL;
	for (int i = 1; i < argc; i++) {
		if (argv[i][0] == '-' && argv[i][1]) {
			static const char *const opts[] = {"--json", NULL};
			return cli_usage_error("show", opts, "unknown option '%s'", argv[i]);
		}
		if (id)
			return cli_usage_error("show", NULL, "one run at a time ('%s' is extra)", argv[i]);
		id = argv[i];
	}
	if (!id)
		return cli_usage_error("show", NULL, "which run? (give a run id from 'ftlab ls')");
	struct diag d;
	diag_init(&d);
	struct store *s = NULL;
	struct show_data x = {0};
	int rc = 0;
	if (run_store_open(&s, cli->workspace, false, &d) != 0 ||
	    store_run_get(s, &x.run, id, &d) != 0 ||
	    store_results(s, &x.results, x.run->id, &d) != 0 ||
	    store_metrics(s, &x.metrics, x.run->id, NULL, NULL, &d) != 0 ||
	    store_artifacts(s, &x.artifacts, x.run->id, &d) != 0 ||
	    store_events(s, &x.events, x.run->id, &d) != 0 ||
	    store_sweep_points(s, &x.points, NULL, x.run->id, &d) != 0) {
		rc = cli_fail(&d);
		goto done;
	}
	if (cli->json)
		print_json(&x);
	else
		print_text(cli, &x);
done:
	store_run_free(x.run);
	store_result_list_free(x.results);
	store_metric_list_free(x.metrics);
	store_artifact_list_free(x.artifacts);
	store_event_list_free(x.events);
	store_sweep_point_list_free(x.points);
	store_close(s);
	return rc;
}
