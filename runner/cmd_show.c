/* cmd_show: `ftlab show`. Not built yet in this version: says so and exits 2. */
#include "runner/cli.h"

int cmd_show(const struct cli *cli, int argc, char **argv)
{
	(void)cli;
	(void)argc;
	(void)argv;
	fputs("ftlab: error: 'show' is not available in this build yet\n", stderr);
	return 2;
}
