/* cmd_compare: `ftlab compare RUN|EXPERIMENT... [--metric M] [--json]`: the config keys
 * whose values differ between the runs (an experiment name stands for all its runs), and
 * a table of their final results, one row per run, columns aligned. */
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

/* The runs being compared: owned copies. */
struct pick {
	struct store_run **runs;
	size_t n;
};

static int pick_add(struct pick *p, struct store_run *r)
{
	for (size_t i = 0; i < p->n; i++)
		if (strcmp(p->runs[i]->id, r->id) == 0) {
			store_run_free(r);
			return 0;
		}
	struct store_run **g = realloc(p->runs, (p->n + 1) * sizeof *g);
	if (!g) {
		store_run_free(r);
		return FT_ENOMEM;
	}
	p->runs = g;
	p->runs[p->n++] = r;
	return 0;
}

/* Flattens a JSON document into dotted keys -> compact values (into `flat`). */
static void flatten(json_t *flat, const char *prefix, json_t *v)
{
	if (json_is_object(v) && json_object_size(v) > 0) {
		const char *key;
		json_t *child;
		json_object_foreach(v, key, child)
		{
			char path[512];
			snprintf(path, sizeof path, "%s%s%s", prefix, prefix[0] ? "." : "", key);
			flatten(flat, path, child);
		}
		return;
	}
	char *s = run_json_text(v);
	json_object_set_new(flat, prefix, json_string(s ? s : "?"));
	free(s);
}

static bool metric_wanted(const char *want, const struct store_result *r)
{
	if (!want)
		return strcmp(r->model, "tuned") == 0;
	char full[256];
	snprintf(full, sizeof full, "%s.%s", r->split, r->metric);
	return strcmp(want, r->metric) == 0 || strcmp(want, full) == 0;
}

static void result_key(char *buf, size_t n, const struct store_result *r)
{
	if (strcmp(r->model, "tuned") == 0)
		snprintf(buf, n, "%s.%s", r->split, r->metric);
	else
		snprintf(buf, n, "%s:%s.%s", r->model, r->split, r->metric);
}

int cmd_compare(const struct cli *cli, int argc, char **argv)
{
	const char *metric = NULL;
	const char **refs = calloc((size_t)argc, sizeof *refs);
	size_t n_refs = 0;
	if (!refs)
		return 1;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--metric") == 0) {
			if (i + 1 >= argc) {
				free(refs);
				return cli_usage_error("compare", NULL, "--metric needs a metric name");
			}
			metric = argv[++i];
		} else if (strncmp(a, "--metric=", 9) == 0) {
			metric = a + 9;
		} else if (a[0] == '-' && a[1]) {
			free(refs);
			static const char *const opts[] = {"--metric", "--json", NULL};
			return cli_usage_error("compare", opts, "unknown option '%s'", a);
		} else {
			refs[n_refs++] = a;
		}
	}
	if (n_refs == 0) {
		free(refs);
		return cli_usage_error("compare", NULL, "give runs or experiments to compare");
	}
	struct diag d;
	diag_init(&d);
	struct store *s = NULL;
	struct store_experiment_list *exps = NULL;
	struct pick p = {0};
	json_t *flats = json_array(), *results = json_array(), *columns = json_array();
	struct run_table *t = NULL;
	int rc = 0;
	if (run_store_open(&s, cli->workspace, false, &d) != 0 || store_experiments(s, &exps, &d) != 0) {
		rc = cli_fail(&d);
		goto done;
	}
	for (size_t k = 0; k < n_refs; k++) {
		bool is_exp = false;
		for (size_t e = 0; e < exps->n; e++)
			is_exp |= strcmp(exps->items[e].name, refs[k]) == 0;
		if (is_exp) {
			struct store_run_list *l = NULL;
			if (store_runs(s, &l, refs[k], NULL, &d) != 0) {
				rc = cli_fail(&d);
				goto done;
			}
			/* Take ownership of each row: move it out of the list. */
			for (size_t i = 0; i < l->n; i++) {
				struct store_run *r = malloc(sizeof *r);
				if (!r || (*r = l->items[i], memset(&l->items[i], 0, sizeof *r), pick_add(&p, r))) {
					free(r);
					store_run_list_free(l);
					rc = 1;
					goto done;
				}
			}
			store_run_list_free(l);
		} else {
			struct store_run *r = NULL;
			if (store_run_get(s, &r, refs[k], &d) != 0) {
				if (strspn(refs[k], "0123456789abcdef") != strlen(refs[k])) {
					diag_init(&d);
					diag_set(&d, FT_EINVAL, "", 0, 0,
						 "'%s' is neither an experiment in the store nor a run id",
						 refs[k]);
					diag_hint(&d, "'ftlab ls' lists experiments and runs");
				}
				rc = cli_fail(&d);
				goto done;
			}
			if (pick_add(&p, r)) {
				rc = 1;
				goto done;
			}
		}
	}
	/* Config differences. */
	json_t *all_keys = json_object();
	for (size_t i = 0; i < p.n; i++) {
		json_error_t je;
		json_t *cfg = json_loads(p.runs[i]->config_json ? p.runs[i]->config_json : "{}", 0, &je);
		json_t *flat = json_object();
		if (cfg)
			flatten(flat, "", cfg);
		json_decref(cfg);
		json_array_append_new(flats, flat);
		json_object_update(all_keys, flat);
	}
	json_t *diff = json_object();
	const char *key;
	json_t *unused;
	json_object_foreach(all_keys, key, unused)
	{
		json_t *vals = json_array();
		bool differ = false;
		const char *first = NULL;
		for (size_t i = 0; i < p.n; i++) {
			json_t *v = json_object_get(json_array_get(flats, i), key);
			const char *sv = v ? json_string_value(v) : NULL;
			json_array_append_new(vals, sv ? json_string(sv) : json_null());
			if (i == 0)
				first = sv;
			else if ((first == NULL) != (sv == NULL) || (first && sv && strcmp(first, sv)))
				differ = true;
		}
		if (differ)
			json_object_set_new(diff, key, vals);
		else
			json_decref(vals);
	}
	json_decref(all_keys);
	/* Result columns, in first-seen order. */
	for (size_t i = 0; i < p.n; i++) {
		struct store_result_list *rl = NULL;
		if (store_results(s, &rl, p.runs[i]->id, &d) != 0) {
			json_decref(diff);
			rc = cli_fail(&d);
			goto done;
		}
		json_t *row = json_object();
		for (size_t k = 0; k < rl->n; k++) {
			const struct store_result *r = &rl->items[k];
			if (!metric_wanted(metric, r))
				continue;
			char ck[256];
			result_key(ck, sizeof ck, r);
			json_object_set_new(row, ck, isnan(r->value) ? json_null() : json_real(r->value));
			bool seen = false;
			for (size_t c = 0; c < json_array_size(columns); c++)
				seen |= strcmp(json_string_value(json_array_get(columns, c)), ck) == 0;
			if (!seen)
				json_array_append_new(columns, json_string(ck));
		}
		json_array_append_new(results, row);
		store_result_list_free(rl);
	}
	if (cli->json) {
		json_t *ids = json_array();
		for (size_t i = 0; i < p.n; i++)
			json_array_append_new(
				ids, json_pack("{s:s, s:s, s:s}", "id", p.runs[i]->id, "experiment",
					       p.runs[i]->experiment, "status", p.runs[i]->status));
		json_t *o = json_pack("{s:o, s:o, s:O, s:O}", "runs", ids, "config_diff", diff,
				      "metrics", columns, "results", results);
		json_dumpf(o, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
		fputc('\n', stdout);
		json_decref(o);
		goto done;
	}
	/* Text: config differences (rows: keys, columns: runs), then the metric table. */
	size_t nc = p.n + 1;
	const char **cells = calloc(nc + json_array_size(columns) + 4, sizeof *cells);
	if (!cells) {
		json_decref(diff);
		rc = 1;
		goto done;
	}
	if (p.n > 1) {
		if (json_object_size(diff) == 0) {
			printf("config: identical\n\n");
		} else {
			cells[0] = "CONFIG";
			for (size_t i = 0; i < p.n; i++)
				cells[i + 1] = p.runs[i]->id;
			t = run_table_new(nc, cells);
			json_object_foreach(diff, key, unused)
			{
				cells[0] = key;
				for (size_t i = 0; i < p.n; i++) {
					const char *v = json_string_value(json_array_get(unused, i));
					cells[i + 1] = v ? v : "(unset)";
				}
				if (t && run_table_add(t, cells) != 0)
					break;
			}
			if (t)
				run_table_print(t, stdout);
			run_table_free(t);
			t = NULL;
			fputc('\n', stdout);
		}
	}
	json_decref(diff);
	size_t ncol = 4 + json_array_size(columns);
	cells[0] = "RUN";
	cells[1] = "EXPERIMENT";
	cells[2] = "STATUS";
	cells[3] = "PARAMS";
	for (size_t c = 0; c < json_array_size(columns); c++)
		cells[4 + c] = json_string_value(json_array_get(columns, c));
	t = run_table_new(ncol, cells);
	char (*nums)[32] = calloc(json_array_size(columns) + 1, sizeof *nums);
	if (!t || !nums) {
		free(nums);
		free(cells);
		rc = 1;
		goto done;
	}
	for (size_t c = 4; c < ncol; c++)
		run_table_align_right(t, c);
	for (size_t i = 0; i < p.n; i++) {
		char *params = run_params_text(p.runs[i]->params_json);
		cells[0] = p.runs[i]->id;
		cells[1] = p.runs[i]->experiment;
		cells[2] = p.runs[i]->status;
		cells[3] = params && params[0] ? params : "-";
		json_t *row = json_array_get(results, i);
		for (size_t c = 0; c < json_array_size(columns); c++) {
			json_t *v = json_object_get(row, json_string_value(json_array_get(columns, c)));
			run_format_number(nums[c], sizeof nums[c], json_is_number(v) ? json_number_value(v) : NAN);
			cells[4 + c] = nums[c];
		}
		int e = run_table_add(t, cells);
		free(params);
		if (e)
			break;
	}
	run_table_print(t, stdout);
	if (metric && json_array_size(columns) == 0)
		fprintf(stderr, "ftlab compare: warning: no run has a result named '%s'\n", metric);
	free(nums);
	free(cells);
done:
	run_table_free(t);
	json_decref(flats);
	json_decref(results);
	json_decref(columns);
	for (size_t i = 0; i < p.n; i++)
		store_run_free(p.runs[i]);
	free(p.runs);
	store_experiment_list_free(exps);
	store_close(s);
	free(refs);
	return rc;
}
