/* cmd_ls: `ftlab ls [EXPERIMENT] [--status S] [--json]`: the runs in the store, one row
 * each (id, experiment, status, progress, swept values, tuned results, start, duration). */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "cli/cli.h"
#include "runner/run.h"
#include "cli/run_table.h"
#include "store/store.h"
#include "common/banned.h"

static const char *const statuses[] = {"queued", "running", "finished", "failed",
				       "killed", "crashed", "cached", "stopped", NULL};

static json_t *results_json(const struct store_result_list *l)
{
	json_t *o = json_object();
	for (size_t i = 0; o && i < l->n; i++) {
		const struct store_result *r = &l->items[i];
		char key[256];
		/* "test.exact_match" for the tuned model, "base:test.exact_match" otherwise. */
		if (strcmp(r->model, "tuned") == 0)
			snprintf(key, sizeof key, "%s.%s", r->split, r->metric);
		else
			snprintf(key, sizeof key, "%s:%s.%s", r->model, r->split, r->metric);
		json_object_set_new(o, key, isnan(r->value) ? json_null() : json_real(r->value));
	}
	return o;
}

static char *results_text(const struct store_result_list *l)
{
	struct strbuf sb = {0};
	int e = 0, shown = 0;
	for (size_t i = 0; i < l->n && shown < 3; i++) {
		const struct store_result *r = &l->items[i];
		if (strcmp(r->model, "tuned") != 0)
			continue;
		char num[32];
		run_format_number(num, sizeof num, r->value);
		e |= strbuf_printf(&sb, "%s%s.%s=%s", sb.len ? " " : "", r->split, r->metric, num);
		shown++;
	}
	if (e) {
		strbuf_free(&sb);
		return NULL;
	}
	return strbuf_detach(&sb);
}

int cmd_ls(const struct cli *cli, int argc, char **argv)
{
	const char *experiment = NULL, *status = NULL;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--status") == 0) {
			if (i + 1 >= argc)
				return cli_usage_error("ls", NULL, "--status needs a value");
			status = argv[++i];
		} else if (strncmp(a, "--status=", 9) == 0) {
			status = a + 9;
		} else if (a[0] == '-' && a[1]) {
			static const char *const opts[] = {"--status", "--json", NULL};
			return cli_usage_error("ls", opts, "unknown option '%s'", a);
		} else if (!experiment) {
			experiment = a;
		} else {
			return cli_usage_error("ls", NULL, "more than one experiment given ('%s')", a);
		}
	}
	if (status) {
		bool ok = false;
		for (size_t i = 0; statuses[i]; i++)
			ok |= strcmp(statuses[i], status) == 0;
		if (!ok) {
			const char *near = nearest_word(status, statuses, FT_ARRAY_LEN(statuses) - 1);
			fprintf(stderr, "ftlab ls: error: unknown status '%s' (expected queued, running, "
					"finished, failed, killed, crashed, cached or stopped)\n", status);
			if (near)
				fprintf(stderr, "note: did you mean '%s'?\n", near);
			return 2;
		}
	}
	struct diag d;
	diag_init(&d);
	struct store *s = NULL;
	struct store_run_list *runs = NULL;
	struct run_table *t = NULL;
	json_t *arr = NULL;
	int rc = 0;
	if (run_store_open(&s, cli->workspace, false, &d) != 0 ||
	    store_runs(s, &runs, experiment, status, &d) != 0) {
		rc = cli_fail(&d);
		goto done;
	}
	if (experiment && runs->n == 0 && !status) {
		/* An experiment the store does not know: say so, with the nearest name. */
		struct store_experiment_list *el = NULL;
		if (store_experiments(s, &el, &d) != 0) {
			rc = cli_fail(&d);
			goto done;
		}
		const char **names = calloc(el->n + 1, sizeof *names);
		for (size_t i = 0; names && i < el->n; i++)
			names[i] = el->items[i].name;
		const char *near = names ? nearest_word(experiment, names, el->n) : NULL;
		diag_set(&d, FT_EINVAL, "", 0, 0, "no experiment '%s' in the store", experiment);
		if (near)
			diag_hint(&d, "did you mean '%s'?", near);
		else
			diag_hint(&d, "'ftlab ls' lists every run");
		rc = cli_fail(&d);
		free(names);
		store_experiment_list_free(el);
		goto done;
	}
	if (cli->json) {
		arr = json_array();
	} else {
		static const char *const header[] = {"RUN",    "EXPERIMENT", "STATUS",  "STEP",
						     "PARAMS", "RESULTS",    "STARTED", "TIME"};
		t = run_table_new(FT_ARRAY_LEN(header), header);
		if (!t) {
			rc = 1;
			goto done;
		}
		run_table_align_right(t, 3);
	}
	for (size_t i = 0; i < runs->n; i++) {
		const struct store_run *r = &runs->items[i];
		struct store_result_list *res = NULL;
		if (store_results(s, &res, r->id, &d) != 0) {
			rc = cli_fail(&d);
			goto done;
		}
		double end = r->finished > 0 ? r->finished : r->heartbeat;
		if (cli->json) {
			json_error_t je;
			json_t *params = json_loads(r->params_json ? r->params_json : "{}", 0, &je);
			json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:o, s:I, s:I, s:o, s:o, s:o, s:o}",
					      "id", r->id, "experiment", r->experiment, "status",
					      r->status, "sweep_index", (json_int_t)r->sweep_index,
					      "params", params ? params : json_object(), "step",
					      (json_int_t)r->step, "total_steps",
					      (json_int_t)r->total_steps, "results", results_json(res),
					      "started", r->started > 0 ? json_real(r->started) : json_null(),
					      "finished",
					      r->finished > 0 ? json_real(r->finished) : json_null(),
					      "error", r->error ? json_string(r->error) : json_null());
			json_array_append_new(arr, o);
		} else {
			char step[48] = "-", started[32], dur[32];
			if (r->total_steps > 0)
				snprintf(step, sizeof step, "%lld/%lld", (long long)r->step,
					 (long long)r->total_steps);
			else if (r->step > 0)
				snprintf(step, sizeof step, "%lld", (long long)r->step);
			run_format_time(started, sizeof started, r->started);
			run_format_duration(dur, sizeof dur, r->started > 0 ? end - r->started : NAN);
			char *params = run_params_text(r->params_json);
			char *rtext = results_text(res);
			const char *cells[] = {r->id,  r->experiment, r->status, step,
					       params && params[0] ? params : "-",
					       rtext && rtext[0] ? rtext : "-", started, dur};
			int e = run_table_add(t, cells);
			free(params);
			free(rtext);
			if (e) {
				store_result_list_free(res);
				rc = 1;
				goto done;
			}
		}
		store_result_list_free(res);
	}
	if (cli->json) {
		json_dumpf(arr, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
		fputc('\n', stdout);
	} else if (runs->n == 0) {
		if (cli->verbosity >= 0)
			fprintf(stderr, "ftlab: no runs%s%s%s%s\n", experiment ? " of experiment '" : "",
				experiment ? experiment : "", experiment ? "'" : "",
				status ? " with that status" : "");
	} else {
		run_table_print(t, stdout);
	}
done:
	json_decref(arr);
	run_table_free(t);
	store_run_list_free(runs);
	store_close(s);
	return rc;
}
