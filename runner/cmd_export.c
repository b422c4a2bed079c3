/* cmd_export: `ftlab export`. Not built yet in this version: says so and exits 2. */
#include "runner/cli.h"

int cmd_export(const struct cli *cli, int argc, char **argv)
{
	(void)cli;
	(void)argc;
	(void)argv;
	fputs("ftlab: error: 'export' is not available in this build yet\n", stderr);
	return 2;
}
