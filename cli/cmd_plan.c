/* cmd_plan: `ftlab plan EXP.yaml [-s K=V]... [--max-runs N] [--json]`: one row per run of
 * the sweep: index, run id, status in the store (plan_lookup_status) and swept values. */
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "cli/cli.h"
#include "cli/exp_args.h"
#include "runner/identity.h"
#include "runner/plan.h"
#include "runner/sweep.h"
#include "schema/node.h"
#include "schema/schema.h"
#include "common/banned.h"

/* Prints the plan as a table: columns sized to their widest cell. */
static void print_table(const struct experiment *e, const struct sweep_plan *plan,
			char (*ids)[13], const char **status, struct node **params)
{
	/* Column names: the swept paths of the first point (every point has the same). */
	const struct node *p0 = plan->n ? params[0] : NULL;
	size_t ncol = p0 ? p0->n : 0;
	size_t w[66];
	w[0] = strlen("#");
	w[1] = 12;
	w[2] = strlen("status");
	for (size_t c = 0; c < ncol && c < 63; c++)
		w[3 + c] = strlen(p0->items[c]->key);
	char buf[64];
	for (size_t i = 0; i < plan->n; i++) {
		size_t l = (size_t)snprintf(buf, sizeof buf, "%zu", i);
		if (l > w[0])
			w[0] = l;
		if (strlen(status[i]) > w[2])
			w[2] = strlen(status[i]);
		for (size_t c = 0; c < ncol && c < 63 && c < params[i]->n; c++) {
			const struct node *v = params[i]->items[c];
			size_t vl = v->kind == NODE_SCALAR ? strlen(v->text) : 5;
			if (vl > w[3 + c])
				w[3 + c] = vl;
		}
	}
	printf("experiment %s: %zu run%s (spec %.12s)\n", experiment_name(e), plan->n,
	       plan->n == 1 ? "" : "s", experiment_spec_hash(e));
	/* The last column is not padded (no trailing blanks). */
	size_t last = ncol < 63 ? ncol : 63;
	printf("%*s  %-*s  %-*s", (int)w[0], "#", (int)w[1], "run", last ? (int)w[2] : 0,
	       "status");
	for (size_t c = 0; c < last; c++)
		printf("  %-*s", c + 1 < last ? (int)w[3 + c] : 0, p0->items[c]->key);
	printf("\n");
	for (size_t i = 0; i < plan->n; i++) {
		printf("%*zu  %-*s  %-*s", (int)w[0], i, (int)w[1], ids[i], last ? (int)w[2] : 0,
		       status[i]);
		for (size_t c = 0; c < last && c < params[i]->n; c++) {
			const struct node *v = params[i]->items[c];
			printf("  %-*s", c + 1 < last ? (int)w[3 + c] : 0,
			       v->kind == NODE_SCALAR ? v->text : "[...]");
		}
		printf("\n");
	}
}

int cmd_plan(const struct cli *cli, int argc, char **argv)
{
	struct experiment *e = NULL;
	struct sweep_plan *plan = NULL;
	int exit_status = exp_args_load_plan(&e, &plan, "plan", argc, argv);
	if (exit_status)
		return exit_status;
	struct diag d;
	diag_init(&d);
	char (*ids)[13] = NULL;
	char (*idents)[65] = NULL;
	const char **status = NULL;
	struct node **params = NULL;
	ids = calloc(plan->n, sizeof *ids);
	idents = calloc(plan->n, sizeof *idents);
	status = calloc(plan->n, sizeof *status);
	params = calloc(plan->n, sizeof *params);
	if (!ids || !idents || !status || !params) {
		fprintf(stderr, "ftlab: error: out of memory for %zu runs\n", plan->n);
		exit_status = 1;
		goto done;
	}
	for (size_t i = 0; i < plan->n; i++) {
		const struct sweep_point *pt = &plan->points[i];
		if (run_identity(idents[i], pt->cfg, &d) != 0 ||
		    plan_lookup_status(&status[i], cli->workspace, experiment_name(e), idents[i], &d) != 0 ||
		    yaml_parse_nodes(&params[i], pt->params_json, strlen(pt->params_json), NULL,
				     NULL, "sweep parameters", &d) != 0) {
			exit_status = cli_fail(&d);
			goto done;
		}
		run_id_from_identity(ids[i], idents[i]);
	}
	if (cli->json) {
		printf("{\"experiment\":\"%s\",\"spec_hash\":\"%s\",\"runs\":[", experiment_name(e),
		       experiment_spec_hash(e));
		for (size_t i = 0; i < plan->n; i++)
			printf("%s\n{\"index\":%zu,\"run_id\":\"%s\",\"identity\":\"%s\","
			       "\"status\":\"%s\",\"params\":%s}",
			       i ? "," : "", i, ids[i], idents[i], status[i],
			       plan->points[i].params_json);
		printf("\n]}\n");
	} else {
		print_table(e, plan, ids, status, params);
	}
done:
	for (size_t i = 0; params && plan && i < plan->n; i++)
		node_free(params[i]);
	free(params);
	free(status);
	free(ids);
	free(idents);
	sweep_plan_free(plan);
	experiment_free(e);
	return exit_status;
}
