/* cmd_bench: `ftlab bench`. Not built yet in this version: says so and exits 2. */
#include "runner/cli.h"

int cmd_bench(const struct cli *cli, int argc, char **argv)
{
	(void)cli;
	(void)argc;
	(void)argv;
	fputs("ftlab: error: 'bench' is not available in this build yet\n", stderr);
	return 2;
}
