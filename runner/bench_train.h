/* bench_train: `ftlab bench --mode train`: times training steps of the native engine on a
 * model shape and prints tokens/s, MFU against a GEMM peak measured on the spot, and peak
 * memory. The generation mode lives in cmd_bench.c. */
#ifndef FTLAB_BENCH_TRAIN_H
#define FTLAB_BENCH_TRAIN_H

#include "runner/cli.h"

/* argv as given to cmd_bench (argv[0] = "bench"); returns the exit status. */
int bench_train(const struct cli *cli, int argc, char **argv);

#endif
