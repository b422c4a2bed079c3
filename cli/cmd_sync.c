/* cmd_sync: `ftlab sync [EXPERIMENT]`: merges the journals of Slurm runs into the store
 * and settles runs whose task has left the queue (runner/cluster.c), then says what it
 * found. Exit 0, 1 when a run it settled failed or crashed, 2 for bad input. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "common/util.h"
#include "runner/cluster.h"
#include "common/banned.h"

/* Counts the runs this sync settled as failed or crashed. */
static void on_record(void *ud, const char *run_id, const struct journal_rec *rec,
		      const char *status)
{
	(void)run_id;
	size_t *bad = ud;
	if (!rec && status && (strcmp(status, "failed") == 0 || strcmp(status, "crashed") == 0))
		(*bad)++;
}

int cmd_sync(const struct cli *cli, int argc, char **argv)
{
	const char *experiment = NULL;
	for (int i = 1; i < argc; i++) {
		if (cli_is_help(argv[i])) {
			cli_print_usage(cli_find("sync"), stdout);
			return 0;
		}
		if (argv[i][0] == '-')
			return cli_usage_error("sync", NULL, "unknown option '%s'", argv[i]);
		if (experiment)
			return cli_usage_error("sync", NULL, "one experiment at most");
		experiment = argv[i];
	}
	struct diag d;
	diag_init(&d);
	struct cluster *c = NULL;
	struct cluster_options o = {.workspace = cli->workspace, .experiment = experiment,
				    .verbosity = cli->verbosity, .tty = false,
				    .color = cli->color};
	if (cluster_open(&c, &o, &d) != 0 || cluster_follow_unsettled(c, &d) != 0) {
		cluster_free(c);
		return cli_fail(&d);
	}
	size_t bad = 0;
	run_signals_install();
	/* While a task is gone without its end record, wait out the grace period (bounded)
	 * so that a journal a shared file system shows late still counts. */
	int r = cluster_sync(c, on_record, &bad, 30, &d);
	if (r) {
		cluster_free(c);
		return cli_fail(&d);
	}
	struct cluster_counts k;
	cluster_counts(c, &k);
	if (cli->verbosity >= 0)
		fprintf(stderr,
			"ftlab: sync: %zu record%s merged; %zu run%s followed: %zu finished, %zu "
			"failed, %zu killed, %zu crashed, %zu running, %zu queued\n",
			k.records, k.records == 1 ? "" : "s", k.followed, k.followed == 1 ? "" : "s",
			k.finished, k.failed, k.killed, k.crashed, k.running, k.queued);
	cluster_free(c);
	return bad ? 1 : 0;
}
