/* cmd_plan: `ftlab plan EXP.yaml [-s K=V]... [--max-runs N] [--json]`: one row per run of
 * the sweep: index, run id, status in the store (plan_lookup_status) and swept values. A
 * bayes sweep has no fixed plan: it says so and lists the points it handed out so far. */
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "cli/cli.h"
#include "cli/exp_args.h"
#include "runner/identity.h"
#include "runner/plan.h"
#include "runner/provenance.h"
#include "runner/sweep.h"
#include "runner/sweep_ctl.h"
#include "store/store.h"
#include "schema/node.h"
#include "schema/schema.h"
#include "schema/table.h"
#include "common/banned.h"

/* Prints the plan as a table: columns sized to their widest cell. */
static void print_table(size_t n, const size_t *index, char (*ids)[13], const char **status,
			struct node **params)
{
	/* Column names: the swept paths of the first point (every point has the same). */
	const struct node *p0 = n ? params[0] : NULL;
	size_t ncol = p0 ? p0->n : 0;
	size_t w[66];
	w[0] = strlen("#");
	w[1] = 12;
	w[2] = strlen("status");
	for (size_t c = 0; c < ncol && c < 63; c++)
		w[3 + c] = strlen(p0->items[c]->key);
	char buf[64];
	for (size_t i = 0; i < n; i++) {
		size_t l = (size_t)snprintf(buf, sizeof buf, "%zu", index[i]);
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
	/* The last column is not padded (no trailing blanks). */
	size_t last = ncol < 63 ? ncol : 63;
	printf("%*s  %-*s  %-*s", (int)w[0], "#", (int)w[1], "run", last ? (int)w[2] : 0,
	       "status");
	for (size_t c = 0; c < last; c++)
		printf("  %-*s", c + 1 < last ? (int)w[3 + c] : 0, p0->items[c]->key);
	printf("\n");
	for (size_t i = 0; i < n; i++) {
		printf("%*zu  %-*s  %-*s", (int)w[0], index[i], (int)w[1], ids[i],
		       last ? (int)w[2] : 0, status[i]);
		for (size_t c = 0; c < last && c < params[i]->n; c++) {
			const struct node *v = params[i]->items[c];
			printf("  %-*s", c + 1 < last ? (int)w[3 + c] : 0,
			       v->kind == NODE_SCALAR ? v->text : "[...]");
		}
		printf("\n");
	}
}

/* The points an adaptive sweep handed out so far, from the store (none without one). */
static int known_points(struct store_sweep_point_list **out, const struct cli *cli,
			const struct experiment *e, struct diag *d)
{
	*out = NULL;
	struct sweep_ctl *ctl = NULL;
	int rc = sweep_ctl_create(&ctl, e, 0, d);
	char *db = rc ? NULL : path_join(cli->workspace, "ftlab.db");
	if (!rc && db && path_exists(db)) {
		struct store *s = NULL;
		rc = store_open(&s, cli->workspace, false, d);
		if (!rc)
			rc = store_sweep_points(s, out, sweep_ctl_key(ctl), NULL, d);
		store_close(s);
	}
	free(db);
	sweep_ctl_free(ctl);
	return rc;
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
	struct provenance prov = {0};
	struct store_sweep_point_list *known = NULL;
	char (*ids)[13] = NULL;
	char (*idents)[65] = NULL;
	const char **status = NULL, **pjs = NULL;
	size_t *index = NULL;
	struct node **params = NULL;
	size_t n = plan->n;
	if (plan->adaptive) {
		if (known_points(&known, cli, e, &d) != 0) {
			exit_status = cli_fail(&d);
			goto done;
		}
		n = known ? known->n : 0;
	}
	ids = calloc(n + 1, sizeof *ids);
	idents = calloc(n + 1, sizeof *idents);
	status = calloc(n + 1, sizeof *status);
	pjs = calloc(n + 1, sizeof *pjs);
	index = calloc(n + 1, sizeof *index);
	params = calloc(n + 1, sizeof *params);
	if (!ids || !idents || !status || !pjs || !index || !params) {
		fprintf(stderr, "ftlab: error: out of memory for %zu runs\n", n);
		exit_status = 1;
		goto done;
	}
	/* "cached" depends on the commit, exactly as for `ftlab run`. */
	if (provenance_collect(&prov, experiment_config(e)->source_path, &d) != 0) {
		exit_status = cli_fail(&d);
		goto done;
	}
	const char *commit = prov.is_repo ? prov.commit : NULL;
	bool dirty = prov.is_repo && prov.dirty;
	for (size_t i = 0; i < n; i++) {
		if (plan->adaptive) {
			/* A recorded point: its run's identity and status, if it was claimed. */
			const struct store_sweep_point *kp = &known->items[i];
			index[i] = (size_t)kp->sweep_index;
			pjs[i] = kp->params_json;
			snprintf(ids[i], sizeof ids[i], "%s", kp->run);
			status[i] = "new";
			struct store *s = NULL;
			struct store_run *row = NULL;
			struct diag q;
			diag_init(&q);
			if (store_open(&s, cli->workspace, false, &q) == 0 &&
			    store_run_get(s, &row, kp->run, &q) == 0) {
				snprintf(idents[i], sizeof idents[i], "%s", row->identity);
				if (plan_lookup_status(&status[i], cli->workspace, experiment_name(e),
						       row->identity, commit, dirty, &d) != 0) {
					store_run_free(row);
					store_close(s);
					exit_status = cli_fail(&d);
					goto done;
				}
			}
			store_run_free(row);
			store_close(s);
		} else {
			const struct sweep_point *pt = &plan->points[i];
			index[i] = i;
			pjs[i] = pt->params_json;
			if (run_identity(idents[i], pt->cfg, &d) != 0 ||
			    plan_lookup_status(&status[i], cli->workspace, experiment_name(e),
					       idents[i], commit, dirty, &d) != 0) {
				exit_status = cli_fail(&d);
				goto done;
			}
			run_id_from_identity(ids[i], idents[i]);
		}
		if (yaml_parse_nodes(&params[i], pjs[i], strlen(pjs[i]), NULL, NULL,
				     "sweep parameters", &d) != 0) {
			exit_status = cli_fail(&d);
			goto done;
		}
	}
	if (cli->json) {
		printf("{\"experiment\":\"%s\",\"spec_hash\":\"%s\",\"adaptive\":%s,"
		       "\"budget\":%zu,\"runs\":[", experiment_name(e), experiment_spec_hash(e),
		       plan->adaptive ? "true" : "false", plan->budget);
		for (size_t i = 0; i < n; i++)
			printf("%s\n{\"index\":%zu,\"run_id\":\"%s\",\"identity\":\"%s\","
			       "\"status\":\"%s\",\"params\":%s}",
			       i ? "," : "", index[i], ids[i], idents[i], status[i], pjs[i]);
		printf("\n]}\n");
	} else {
		if (plan->adaptive)
			printf("experiment %s: %s sweep of %zu runs, each chosen from the results "
			       "so far; %zu known (spec %.12s)\n", experiment_name(e),
			       schema_enum_name("sweep.method", (int)plan->method), plan->budget, n,
			       experiment_spec_hash(e));
		else
			printf("experiment %s: %zu run%s (spec %.12s)\n", experiment_name(e), n,
			       n == 1 ? "" : "s", experiment_spec_hash(e));
		if (n)
			print_table(n, index, ids, status, params);
	}
done:
	provenance_clear(&prov);
	for (size_t i = 0; params && i < n; i++)
		node_free(params[i]);
	free(params);
	free(status);
	free(pjs);
	free(index);
	free(ids);
	free(idents);
	store_sweep_point_list_free(known);
	sweep_plan_free(plan);
	experiment_free(e);
	return exit_status;
}
