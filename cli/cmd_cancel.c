/* cmd_cancel: `ftlab cancel EXPERIMENT|RUN`: scancel for the array tasks of an
 * experiment's unsettled Slurm runs or of one run; waits briefly for running tasks to
 * record their end and merges it. Exit 0, 2 when nothing matches. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "common/util.h"
#include "runner/cluster.h"
#include "schema/table.h"
#include "store/store.h"
#include "common/banned.h"

#define CANCEL_WAIT_S 20.0

int cmd_cancel(const struct cli *cli, int argc, char **argv)
{
	const char *what = NULL;
	for (int i = 1; i < argc; i++) {
		if (cli_is_help(argv[i])) {
			cli_print_usage(cli_find("cancel"), stdout);
			return 0;
		}
		if (argv[i][0] == '-')
			return cli_usage_error("cancel", NULL, "unknown option '%s'", argv[i]);
		if (what)
			return cli_usage_error("cancel", NULL, "one experiment or run at most");
		what = argv[i];
	}
	if (!what)
		return cli_usage_error("cancel", NULL, "name an experiment or a run");
	struct diag d;
	diag_init(&d);
	struct store *s = NULL;
	struct store_experiment_list *el = NULL;
	struct store_run *run = NULL;
	char *experiment = NULL, run_id[13] = "";
	int r = store_open(&s, cli->workspace, false, &d);
	if (!r)
		r = store_experiments(s, &el, &d);
	for (size_t i = 0; !r && i < el->n; i++)
		if (strcmp(el->items[i].name, what) == 0)
			experiment = ft_strdup(what);
	if (!r && !experiment) {
		r = store_run_get(s, &run, what, &d);
		if (r) {
			diag_init(&d);
			r = diag_set(&d, FT_EINVAL, "", 0, 0,
				     "'%s' is neither an experiment nor a run in %s", what,
				     cli->workspace);
		} else if (!run->launcher ||
			   schema_enum_index("launcher.type", run->launcher) != LAUNCHER_SLURM) {
			r = diag_set(&d, FT_EINVAL, "", 0, 0,
				     "run %s did not go to Slurm; a local run stops with Ctrl-C or "
				     "SIGTERM to its process (pid %lld on %s)",
				     run->id, (long long)run->pid, run->host ? run->host : "?");
		} else {
			experiment = ft_strdup(run->experiment);
			snprintf(run_id, sizeof run_id, "%s", run->id);
		}
	}
	store_run_free(run);
	store_experiment_list_free(el);
	store_close(s);
	if (r) {
		free(experiment);
		return cli_fail(&d);
	}
	struct cluster *c = NULL;
	struct cluster_options o = {.workspace = cli->workspace, .experiment = experiment,
				    .verbosity = cli->verbosity, .color = cli->color};
	size_t n = 0;
	r = cluster_open(&c, &o, &d);
	if (!r)
		r = cluster_follow_unsettled(c, &d);
	if (!r)
		r = cluster_cancel(c, run_id[0] ? run_id : NULL, &n, &d);
	/* Running tasks checkpoint and write their end; merge it when it comes. */
	double t0 = time_monotonic();
	while (!r && n && !cluster_settled(c) && time_monotonic() - t0 < CANCEL_WAIT_S) {
		r = cluster_poll(c, NULL, NULL, &d);
		struct timespec ts = {0, 250000000L};
		nanosleep(&ts, NULL);
	}
	if (r) {
		cluster_free(c);
		free(experiment);
		return cli_fail(&d);
	}
	struct cluster_counts k;
	cluster_counts(c, &k);
	if (cli->verbosity >= 0) {
		if (n == 0)
			fprintf(stderr, "ftlab: cancel: no queued or running Slurm run of %s\n",
				run_id[0] ? run_id : experiment);
		else
			fprintf(stderr, "ftlab: cancel: %zu array task%s cancelled; %zu killed, %zu "
					"still ending (ftlab sync merges them)\n",
				n, n == 1 ? "" : "s", k.killed, k.running + k.queued);
	}
	cluster_free(c);
	free(experiment);
	return 0;
}
