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
#include "runner/sweep.h"
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
