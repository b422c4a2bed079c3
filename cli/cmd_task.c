/* cmd_task: `ftlab task SUBMISSION_DIR INDEX`, the command a Slurm submission's batch
 * script runs on the node (runner/cluster_task.c). It never opens the store. */
#include <stdio.h>

#include "cli/cli.h"
#include "runner/cluster.h"
#include "common/banned.h"

int cmd_task(const struct cli *cli, int argc, char **argv)
{
	if (argc == 2 && cli_is_help(argv[1])) {
		cli_print_usage(cli_find("task"), stdout);
		return 0;
	}
	if (argc != 3)
		return cli_usage_error("task", NULL, "needs SUBMISSION_DIR and INDEX");
	return cluster_task(cli->workspace, argv[1], argv[2], cli->verbosity);
}
