/* cmd_check: `ftlab check EXP.yaml [-s K=V]... [--max-runs N] [--json]`: validates the
 * experiment (every sweep point included) and prints the resolved experiment as YAML and
 * the sweep size, or one JSON object with --json. */
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "runner/cli.h"
#include "runner/exp_args.h"
#include "runner/sweep.h"
#include "schema/schema.h"

/* Parses --max-runs N from the leftover arguments; 2 on a usage error. */
int cmd_parse_max_runs(const char *cmd, char **rest, int n_rest, size_t *max_runs);
int cmd_parse_max_runs(const char *cmd, char **rest, int n_rest, size_t *max_runs)
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

int cmd_check(const struct cli *cli, int argc, char **argv)
{
	static const char *const valued[] = {"--max-runs", NULL};
	struct exp_args args;
	int rc = exp_args_parse(&args, "check", argc, argv, valued);
	if (rc)
		return rc;
	size_t max_runs = SWEEP_DEFAULT_MAX_RUNS;
	if ((rc = cmd_parse_max_runs("check", args.rest, args.n_rest, &max_runs)) != 0) {
		exp_args_free(&args);
		return rc;
	}
	struct diag d;
	diag_init(&d);
	struct experiment *e = NULL;
	struct sweep_plan *plan = NULL;
	int status = 0;
	if (experiment_load(&e, args.path, args.overrides, args.n_overrides, &d) != 0 ||
	    sweep_expand(&plan, e, max_runs, &d) != 0) {
		status = cli_fail(&d);
		goto done;
	}
	const struct config *c = experiment_config(e);
	if (cli->json) {
		printf("{\"experiment\":\"%s\",\"runs\":%zu,\"spec_hash\":\"%s\","
		       "\"config_hash\":\"%s\",\"config\":%s,\"spec\":%s}\n",
		       experiment_name(e), plan->n, experiment_spec_hash(e), c->config_hash,
		       c->canonical_json, experiment_spec_json(e));
	} else {
		if (experiment_write_yaml(stdout, e) != 0) {
			fputs("ftlab: error: cannot write the resolved config\n", stderr);
			status = 1;
			goto done;
		}
		printf("# %zu run%s\n", plan->n, plan->n == 1 ? "" : "s");
	}
done:
	sweep_plan_free(plan);
	experiment_free(e);
	exp_args_free(&args);
	return status;
}
