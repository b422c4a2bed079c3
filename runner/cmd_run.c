/* cmd_run: `ftlab run`. Not built yet in this version: says so and exits 2. */
#include "runner/cli.h"

int cmd_run(const struct cli *cli, int argc, char **argv)
{
	(void)cli;
	(void)argc;
	(void)argv;
	fputs("ftlab: error: 'run' is not available in this build yet\n", stderr);
	return 2;
}
