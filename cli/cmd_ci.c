/* cmd_ci: `ftlab ci EXP.yaml [-s KEY=VALUE]... [--baseline REF] [--junit FILE]
 * [--markdown FILE] [--no-run] [--jobs N] [--backend B] [--force] [--require-clean]
 * [--launcher L]`.
 * Validates the experiment and its gates, runs it through cmd_run (finished runs at the
 * same clean commit are reused), then evaluates the gates on the store's record and
 * writes JUnit XML and a Markdown summary. Exit: 0 all gates pass and no run failed,
 * 1 a gate or a run failed, 2 bad input (including a gate that cannot be evaluated),
 * 130 interrupted. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "reports/gates.h"
#include "reports/report_load.h"
#include "cli/cli.h"
#include "runner/identity.h"
#include "store/store.h"
#include "runner/sweep.h"
#include "runner/sweep_ctl.h"
#include "schema/schema.h"
#include "common/banned.h"

#define MAX_ARGS 256

struct ci_args {
	const char *path, *baseline, *junit, *markdown;
	const char *overrides[MAX_ARGS];
	size_t n_overrides;
	char *run_extra[MAX_ARGS]; /* options handed to `ftlab run` as given */
	int n_run_extra;
	bool no_run;
};

static int parse(struct ci_args *a, int argc, char **argv)
{
	static const char *const opts[] = {"--set", "--baseline", "--junit", "--markdown",
					   "--no-run", "--jobs", "--backend", "--force",
					   "--require-clean", "--launcher", "--help", NULL};
	memset(a, 0, sizeof(*a));
	for (int i = 1; i < argc; i++) {
		const char *s = argv[i];
		bool has_next = i + 1 < argc;
		const char **slot = NULL;
		const char *what = NULL;
		if (strcmp(s, "--baseline") == 0) {
			slot = &a->baseline;
			what = "EXPERIMENT, RUN or EXPERIMENT@COMMIT";
		} else if (strcmp(s, "--junit") == 0) {
			slot = &a->junit;
			what = "a file name";
		} else if (strcmp(s, "--markdown") == 0) {
			slot = &a->markdown;
			what = "a file name";
		}
		if (slot) {
			if (!has_next)
				return cli_usage_error("ci", NULL, "%s needs %s", s, what);
			*slot = argv[++i];
			continue;
		}
		if (strncmp(s, "--baseline=", 11) == 0) {
			a->baseline = s + 11;
		} else if (strncmp(s, "--junit=", 8) == 0) {
			a->junit = s + 8;
		} else if (strncmp(s, "--markdown=", 11) == 0) {
			a->markdown = s + 11;
		} else if (strcmp(s, "--no-run") == 0) {
			a->no_run = true;
		} else if (strcmp(s, "-s") == 0 || strcmp(s, "--set") == 0) {
			if (!has_next || !strchr(argv[i + 1], '='))
				return cli_usage_error("ci", NULL, "%s needs KEY=VALUE", s);
			if (a->n_overrides == MAX_ARGS)
				return cli_usage_error("ci", NULL, "too many -s options");
			a->overrides[a->n_overrides++] = argv[++i];
		} else if ((strncmp(s, "-s", 2) == 0 && s[2]) || strncmp(s, "--set=", 6) == 0) {
			const char *kv = s[1] == 's' ? s + 2 : s + 6;
			if (!strchr(kv, '='))
				return cli_usage_error("ci", NULL, "-s needs KEY=VALUE (got '%s')", kv);
			if (a->n_overrides == MAX_ARGS)
				return cli_usage_error("ci", NULL, "too many -s options");
			a->overrides[a->n_overrides++] = kv;
		} else if (strcmp(s, "--force") == 0 || strcmp(s, "--require-clean") == 0 ||
			   strncmp(s, "--jobs=", 7) == 0 || strncmp(s, "--backend=", 10) == 0 ||
			   strncmp(s, "--launcher=", 11) == 0) {
			if (a->n_run_extra + 1 >= MAX_ARGS)
				return cli_usage_error("ci", NULL, "too many options");
			a->run_extra[a->n_run_extra++] = argv[i];
		} else if (strcmp(s, "--jobs") == 0 || strcmp(s, "--backend") == 0 ||
			   strcmp(s, "--launcher") == 0) {
			if (!has_next)
				return cli_usage_error("ci", NULL, "%s needs a value", s);
			if (a->n_run_extra + 2 >= MAX_ARGS)
				return cli_usage_error("ci", NULL, "too many options");
			a->run_extra[a->n_run_extra++] = argv[i];
			a->run_extra[a->n_run_extra++] = argv[++i];
		} else if (strcmp(s, "--") == 0) {
			if (i + 1 < argc && !a->path)
				a->path = argv[++i];
		} else if (s[0] == '-' && s[1] != '\0') {
			const char *near = nearest_word(s, opts, FT_ARRAY_LEN(opts) - 1);
			if (near)
				return cli_usage_error("ci", opts, "unknown option '%s' (did you mean '%s'?)",
						       s, near);
			return cli_usage_error("ci", opts, "unknown option '%s'", s);
		} else if (!a->path) {
			a->path = s;
		} else {
			return cli_usage_error("ci", NULL, "one experiment file at a time (got '%s' and "
					       "'%s')", a->path, s);
		}
	}
	if (!a->path)
		return cli_usage_error("ci", NULL, "which experiment file? (ftlab ci EXP.yaml)");
	return 0;
}

/* The run ids of the points a bayes sweep handed out, from the store. */
static int adaptive_ids(char ***out_ids, size_t *out_n, const struct experiment *e,
			const char *workspace, struct diag *d)
{
	struct sweep_ctl *ctl = NULL;
	struct store *s = NULL;
	struct store_sweep_point_list *pl = NULL;
	int rc = sweep_ctl_create(&ctl, e, 0, d);
	if (!rc)
		rc = store_open(&s, workspace, false, d);
	if (!rc)
		rc = store_sweep_points(s, &pl, sweep_ctl_key(ctl), NULL, d);
	char **ids = NULL;
	if (!rc && !(ids = calloc(pl->n ? pl->n : 1, sizeof(char *))))
		rc = diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
	for (size_t i = 0; !rc && ids && i < pl->n; i++) {
		ids[i] = ft_strdup(pl->items[i].run);
		if (!ids[i])
			rc = diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
		else
			(*out_n)++;
	}
	*out_ids = ids;
	store_sweep_point_list_free(pl);
	store_close(s);
	sweep_ctl_free(ctl);
	return rc;
}

/* The run ids of the experiment's current sweep plan (the runs `ftlab run` just did or
 * reused), so runs of earlier sweep definitions stay out of the gates. *out_ids is a
 * NULL-free array of n strings; free each and the array. */
static int plan_ids(char ***out_ids, size_t *out_n, const struct experiment *e,
		    const char *workspace, struct diag *d)
{
	struct sweep_plan *plan = NULL;
	*out_ids = NULL;
	*out_n = 0;
	int rc = sweep_expand(&plan, e, 0, d);
	if (rc)
		return rc;
	if (plan->adaptive) {
		/* A bayes sweep: the runs of the points it handed out (the store keeps them). */
		sweep_plan_free(plan);
		return adaptive_ids(out_ids, out_n, e, workspace, d);
	}
	char **ids = calloc(plan->n ? plan->n : 1, sizeof(char *));
	if (!ids) {
		sweep_plan_free(plan);
		return diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
	}
	for (size_t i = 0; !rc && i < plan->n; i++) {
		char identity[65], id[13];
		rc = run_identity(identity, plan->points[i].cfg, d);
		if (rc)
			break;
		run_id_from_identity(id, identity);
		ids[i] = ft_strdup(id);
		if (!ids[i])
			rc = diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
		else
			(*out_n)++;
	}
	sweep_plan_free(plan);
	*out_ids = ids;
	return rc;
}

/* Runs the experiment through `ftlab run` in this process; returns its exit status. */
static int run_experiment(const struct cli *cli, const struct ci_args *a)
{
	char *argv[2 * MAX_ARGS + 8];
	int n = 0;
	argv[n++] = (char *)"run";
	argv[n++] = (char *)a->path;
	for (size_t i = 0; i < a->n_overrides; i++) {
		argv[n++] = (char *)"-s";
		argv[n++] = (char *)a->overrides[i];
	}
	for (int i = 0; i < a->n_run_extra; i++)
		argv[n++] = a->run_extra[i];
	argv[n] = NULL;
	return cmd_run(cli, n, argv);
}

int cmd_ci(const struct cli *cli, int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
		if (cli_is_help(argv[i])) {
			cli_print_usage(cli_find("ci"), stdout);
			return 0;
		}
	struct ci_args a;
	int st = parse(&a, argc, argv);
	if (st)
		return st;
	double t0 = time_monotonic();
	struct diag d;
	diag_init(&d);
	struct experiment *e = NULL;
	struct store *s = NULL;
	struct report *r = NULL, *baseline = NULL;
	struct gate_result *res = NULL;
	char **ids = NULL;
	size_t n_ids = 0;
	int run_status = 0;
	int rc = experiment_load(&e, a.path, a.overrides, a.n_overrides, &d);
	if (rc)
		goto fail;
	const struct config *cfg = experiment_config(e);
	/* a vs: baseline gate needs --baseline: say so before hours of training */
	for (size_t i = 0; i < cfg->n_gates && !a.baseline; i++)
		if (cfg->gates[i].vs == GATE_VS_BASELINE) {
			diag_set(&d, FT_EINVAL, a.path, cfg->gates[i].line, 0, "gate on %s compares "
				 "with a baseline, but no --baseline was given", cfg->gates[i].metric);
			diag_hint(&d, "name one: --baseline EXPERIMENT, RUN or EXPERIMENT@COMMIT "
				      "(for example last night's commit)");
			goto fail;
		}
	if (a.baseline) {
		/* Loaded before running: an unknown baseline is bad input, and a fresh run of the
		 * same experiment replaces its rows (EXPERIMENT@COMMIT of last night would be
		 * gone afterwards). */
		rc = store_open(&s, cli->workspace, false, &d);
		if (!rc)
			rc = report_load(&baseline, s, a.baseline, &d);
		store_close(s);
		s = NULL;
		if (rc) {
			diag_hint(&d, "--baseline names an experiment, a run id or EXPERIMENT@COMMIT "
				      "already in the store");
			goto fail;
		}
	}
	if (!a.no_run) {
		run_status = run_experiment(cli, &a);
		if (run_status == 2 || run_status == 130)
			goto done;
	}
	rc = plan_ids(&ids, &n_ids, e, cli->workspace, &d);
	if (!rc)
		rc = store_open(&s, cli->workspace, false, &d);
	if (!rc)
		rc = report_load_only(&r, s, experiment_name(e), (const char *const *)ids, n_ids,
				      &d);
	if (!rc && r->n_runs == 0)
		rc = diag_set(&d, FT_EINVAL, a.path, 0, 0, "none of the %zu runs of this sweep is in "
			      "the store %s", n_ids, cli->workspace);
	if (rc && a.no_run && r && r->n_runs == 0)
		diag_hint(&d, "run it first (ftlab run %s), or leave out --no-run", a.path);
	if (!rc && baseline) {
		if (report_set_text(&r->baseline_label, a.baseline))
			rc = diag_set(&d, FT_ENOMEM, NULL, 0, 0, "out of memory");
		r->baseline = baseline;
		baseline = NULL;
	}
	if (!rc)
		rc = gates_evaluate(&res, cfg->gates, cfg->n_gates, r, &d);
	if (rc)
		goto fail;
	size_t n_fail, n_error, runs_failed = 0;
	gates_count(res, cfg->n_gates, &n_fail, &n_error);
	for (size_t i = 0; i < r->n_runs; i++)
		runs_failed += !report_run_ok(&r->runs[i]) && strcmp(r->runs[i].status, "queued") != 0 &&
			       strcmp(r->runs[i].status, "stopped") != 0;
	if (a.junit)
		rc = gates_write_junit(a.junit, r, res, cfg->n_gates, time_monotonic() - t0, &d);
	if (!rc && a.markdown)
		rc = gates_write_markdown(a.markdown, r, res, cfg->n_gates, &d);
	if (rc)
		goto fail;
	if (cli->verbosity >= 0) {
		printf("ftlab ci %s: %zu gate%s, %zu failed; %zu run%s, %zu failed\n", r->experiment,
		       cfg->n_gates, cfg->n_gates == 1 ? "" : "s", n_fail + n_error, r->n_runs,
		       r->n_runs == 1 ? "" : "s", runs_failed);
		for (size_t i = 0; i < cfg->n_gates; i++)
			printf("  %-5s %s: %s\n", res[i].outcome == GATE_PASS ? "PASS"
						  : res[i].outcome == GATE_FAIL ? "FAIL" : "ERROR",
			       res[i].name, res[i].message);
	}
	run_status = n_error ? 2 : (n_fail || runs_failed || run_status == 1) ? 1 : 0;
	goto done;
fail:
	run_status = cli_fail(&d);
done:
	for (size_t i = 0; i < n_ids; i++)
		free(ids[i]);
	free(ids);
	free(res);
	report_free(r);
	report_free(baseline);
	store_close(s);
	experiment_free(e);
	return run_status;
}
