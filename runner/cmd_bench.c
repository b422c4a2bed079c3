/* cmd_bench: `ftlab bench`. Not built yet in this version: says so and exits 2. */
#include <string.h>

#include "runner/bench_train.h"
#include "runner/cli.h"

int cmd_bench(const struct cli *cli, int argc, char **argv)
{
	/* --mode train: runner/bench_train.c */
	for (int i = 1; i + 1 < argc; i++)
		if (strcmp(argv[i], "--mode") == 0 && strcmp(argv[i + 1], "train") == 0)
			return bench_train(cli, argc, argv);
	(void)cli;
	(void)argc;
	(void)argv;
	fputs("ftlab: error: 'bench' is not available in this build yet\n", stderr);
	return 2;
}
