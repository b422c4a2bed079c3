/* exp_args: parsing of the experiment path and -s/--set overrides shared by check, plan,
 * run and ci, and the plan loading (--max-runs, load, expand) of check and plan. */
#include "cli/exp_args.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/diag.h"
#include "common/util.h"
#include "cli/cli.h"
#include "backends/native/engine.h"
#include "runner/bayes.h"
#include "runner/sweep.h"
#include "schema/node.h"
#include "schema/schema.h"
#include "common/banned.h"

static bool is_valued(const char *arg, const char *const *valued)
{
	for (size_t i = 0; valued && valued[i]; i++)
		if (strcmp(arg, valued[i]) == 0)
			return true;
	return false;
}

int exp_args_parse(struct exp_args *out, const char *cmd, int argc, char **argv,
		   const char *const *valued)
{
	memset(out, 0, sizeof *out);
	size_t cap = argc > 0 ? (size_t)argc : 1;
	out->overrides = calloc(cap, sizeof *out->overrides);
	out->rest = calloc(cap, sizeof *out->rest);
	if (!out->overrides || !out->rest) {
		exp_args_free(out);
		fputs("ftlab: error: out of memory\n", stderr);
		return 2;
	}
	bool positional_only = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *ov = NULL;
		if (!positional_only && strcmp(a, "--") == 0) {
			positional_only = true;
			continue;
		}
		if (!positional_only && (strcmp(a, "-s") == 0 || strcmp(a, "--set") == 0)) {
			if (i + 1 >= argc) {
				exp_args_free(out);
				return cli_usage_error(cmd, NULL, "%s needs KEY=VALUE", a);
			}
			ov = argv[++i];
		} else if (!positional_only && strncmp(a, "--set=", 6) == 0) {
			ov = a + 6;
		} else if (!positional_only && strncmp(a, "-s", 2) == 0 && a[2]) {
			ov = a + 2;
		}
		if (ov) {
			const char *eq = strchr(ov, '=');
			if (!eq || eq == ov) {
				exp_args_free(out);
				return cli_usage_error(cmd, NULL,
						       "-s needs KEY=VALUE (got '%s'), e.g. -s "
						       "method.rank=16", ov);
			}
			out->overrides[out->n_overrides++] = ov;
			continue;
		}
		if (!positional_only && a[0] == '-' && a[1]) {
			out->rest[out->n_rest++] = argv[i];
			if (is_valued(a, valued) && i + 1 < argc)
				out->rest[out->n_rest++] = argv[++i];
			continue;
		}
		if (out->path) {
			exp_args_free(out);
			return cli_usage_error(cmd, NULL, "one experiment file expected, got '%s' "
					       "and '%s'", out->path ? out->path : "", a);
		}
		out->path = a;
	}
	if (!out->path) {
		exp_args_free(out);
		return cli_usage_error(cmd, NULL, "missing the experiment file (EXP.yaml)");
	}
	return 0;
}

void exp_args_free(struct exp_args *a)
{
	free(a->overrides);
	free(a->rest);
	a->overrides = NULL;
	a->rest = NULL;
	a->n_overrides = 0;
	a->n_rest = 0;
}

/* Parses --max-runs N from the leftover arguments; 2 on a usage error. */
static int parse_max_runs(const char *cmd, char **rest, int n_rest, size_t *max_runs)
{
	static const char *const valid[] = {"--max-runs", "--set", NULL};
	for (int i = 0; i < n_rest; i++) {
		const char *a = rest[i], *val = NULL;
		if (strcmp(a, "--max-runs") == 0) {
			if (i + 1 >= n_rest)
				return cli_usage_error(cmd, NULL, "--max-runs needs a number");
			val = rest[++i];
		} else if (strncmp(a, "--max-runs=", 11) == 0) {
			val = a + 11;
		} else {
			const char *near = nearest_word(a, (const char *const *)valid, 2);
			fprintf(stderr, "ftlab %s: error: unknown option '%s'\n", cmd, a);
			if (near)
				fprintf(stderr, "note: did you mean '%s'?\n", near);
			fprintf(stderr, "Try 'ftlab %s --help'.\n", cmd);
			return 2;
		}
		int64_t v;
		if (!parse_i64(val, &v) || v < 1)
			return cli_usage_error(cmd, NULL, "--max-runs needs a positive number, not '%s'",
					       val);
		*max_runs = (size_t)v;
	}
	return 0;
}

int exp_args_load_plan(struct experiment **out_e, struct sweep_plan **out_plan,
		       const char *cmd, int argc, char **argv)
{
	*out_e = NULL;
	*out_plan = NULL;
	static const char *const valued[] = {"--max-runs", NULL};
	struct exp_args args;
	int rc = exp_args_parse(&args, cmd, argc, argv, valued);
	if (rc)
		return rc;
	size_t max_runs = SWEEP_DEFAULT_MAX_RUNS;
	rc = parse_max_runs(cmd, args.rest, args.n_rest, &max_runs);
	if (rc)
		goto done;
	struct diag d;
	diag_init(&d);
	if (experiment_load(out_e, args.path, args.overrides, args.n_overrides, &d) != 0 ||
	    sweep_expand(out_plan, *out_e, max_runs, &d) != 0) {
		rc = cli_fail(&d);
		sweep_plan_free(*out_plan);
		experiment_free(*out_e);
		*out_e = NULL;
		*out_plan = NULL;
	}
done:
	exp_args_free(&args);
	return rc;
}

/* One point against its model's header; label names it in the error when the failing
 * value is one the sweep set ("sweep point 3"). 0 or the exit status. */
static int check_point(const struct experiment *e, const struct sweep_point *pt,
		       const char *label)
{
	struct diag tmp;
	diag_init(&tmp);
	const char *field;
	int index;
	if (engine_check_config(pt->cfg, &field, &index, &tmp) == 0)
		return 0;
	/* Point at the value: the swept one when this point sets it, else the file's. */
	char quoted[64];
	snprintf(quoted, sizeof quoted, "\"%s\"", field ? field : "");
	const struct node *at = NULL, *sweep = experiment_sweep(e);
	const char *ctx = NULL;
	bool swept = field && pt->params_json && strstr(pt->params_json, quoted);
	if (swept) {
		at = node_get(node_get(sweep, "parameters"), field);
		ctx = label;
	} else if (field) {
		at = experiment_node(e, field);
		if (at && at->kind == NODE_SEQ && index >= 0 && (size_t)index < at->n)
			at = at->items[index];
	}
	if (!at || strcmp(field, "model.base") == 0) {
		if (tmp.file[0] || !at)
			return cli_fail(&tmp); /* the model file's own error names the file */
	}
	struct diag d;
	diag_init(&d);
	node_error(&d, at, ctx, "%s", tmp.text);
	if (tmp.hint[0])
		diag_hint(&d, "%s", tmp.hint);
	return cli_fail(&d);
}

/* A bayes sweep has no plan to check: its points are chosen as results arrive. Every
 * value a point can take is checked instead, one dimension at a time from the lowest
 * point of the space: each category and list item, and both ends of a number range (a
 * model check depends on the values of targets, trainable names and layer ranges, not on
 * their combinations). */
static int check_space(const struct experiment *e)
{
	struct sweep_space *sp = NULL;
	struct diag d;
	diag_init(&d);
	if (sweep_space_create(&sp, e, &d) != 0)
		return cli_fail(&d);
	size_t nd = 0;
	const struct bayes_dim *dims = sweep_space_dims(sp, &nd);
	double x[64] = {0};
	int rc = 0;
	for (size_t k = 0; k <= nd && !rc && nd <= FT_ARRAY_LEN(x); k++) {
		/* k == nd: the lowest point itself; else the other values of dimension k. */
		size_t n_alt = k == nd ? 1 : dims[k].kind == BAYES_CAT ? dims[k].levels - 1 : 1;
		for (size_t v = 0; v < n_alt && !rc; v++) {
			if (k < nd)
				x[k] = dims[k].kind == BAYES_CAT   ? (double)(v + 1)
				       : dims[k].kind == BAYES_INT ? (double)(dims[k].levels - 1)
								   : 1.0;
			struct sweep_point pt;
			if (sweep_space_point(&pt, sp, x, 0, &d) != 0) {
				rc = cli_fail(&d);
				break;
			}
			rc = check_point(e, &pt, "a value of the bayes sweep");
			sweep_point_clear(&pt);
		}
		if (k < nd)
			x[k] = 0;
	}
	sweep_space_free(sp);
	return rc;
}

int exp_args_check_model(const struct experiment *e, const struct sweep_plan *plan)
{
	if (plan->adaptive)
		return check_space(e);
	char label[48];
	for (size_t i = 0; i < plan->n; i++) {
		snprintf(label, sizeof label, "sweep point %zu", i);
		int rc = check_point(e, &plan->points[i], label);
		if (rc)
			return rc;
	}
	return 0;
}
