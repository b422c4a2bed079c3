/* cmd_check: `ftlab check EXP.yaml [-s K=V]... [--max-runs N] [--json]`: validates the
 * experiment (every sweep point included) and prints the resolved experiment as YAML and
 * the sweep size, or one JSON object with --json. */
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "cli/cli.h"
#include "cli/exp_args.h"
#include "runner/sweep.h"
#include "schema/schema.h"
#include "schema/table.h"
#include "common/banned.h"

int cmd_check(const struct cli *cli, int argc, char **argv)
{
	struct experiment *e = NULL;
	struct sweep_plan *plan = NULL;
	int status = exp_args_load_plan(&e, &plan, "check", argc, argv);
	if (status)
		return status;
	if ((status = exp_args_check_model(e, plan)) != 0)
		goto done;
	const struct config *c = experiment_config(e);
	if (cli->json) {
		printf("{\"experiment\":\"%s\",\"runs\":%zu,\"adaptive\":%s,\"spec_hash\":\"%s\","
		       "\"config_hash\":\"%s\",\"config\":%s,\"spec\":%s}\n",
		       experiment_name(e), plan->budget, plan->adaptive ? "true" : "false",
		       experiment_spec_hash(e), c->config_hash, c->canonical_json,
		       experiment_spec_json(e));
	} else {
		if (experiment_write_yaml(stdout, e) != 0) {
			fputs("ftlab: error: cannot write the resolved config\n", stderr);
			status = 1;
			goto done;
		}
		printf("# %zu run%s%s%s%s\n", plan->budget, plan->budget == 1 ? "" : "s",
		       plan->adaptive ? " (" : "",
		       plan->adaptive ? schema_enum_name("sweep.method", (int)plan->method) : "",
		       plan->adaptive ? ": each chosen from the results so far)" : "");
	}
done:
	sweep_plan_free(plan);
	experiment_free(e);
	return status;
}
