/* cli: the ftlab command line. Global options, the command table and the small helpers
 * every subcommand uses for its own options. Subcommands live in cli/cmd_*.c and
 * return a process exit status (0, 1, 2, 130). */
#ifndef FTLAB_CLI_H
#define FTLAB_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "common/diag.h"



struct cli {
	const char *workspace; /* --workspace, $FTLAB_WORKSPACE, or ".ftlab" */
	int verbosity;         /* -1 quiet, 0 normal, 1 verbose */
	bool json;             /* --json */
	bool color;            /* stderr is a terminal and NO_COLOR is unset */
	bool tty;              /* stderr is a terminal (progress lines) */
};

typedef int (*cli_command_fn)(const struct cli *cli, int argc, char **argv);

struct cli_command {
	const char *name;
	const char *summary; /* one line for `ftlab help` */
	const char *usage;   /* full text for `ftlab help NAME` and `NAME --help` */
	cli_command_fn run;  /* argv[0] is the command name */
};

/* The table, in the order `ftlab help` lists it. */
extern const struct cli_command cli_commands[];
extern const size_t cli_n_commands;

const struct cli_command *cli_find(const char *name);
/* Prints the usage of a command to out. */
void cli_print_usage(const struct cli_command *c, FILE *out);
/* Prints a usage error for command `cmd` (e.g. "unknown option '--x'"), suggesting the
 * nearest of `valid` when given (NULL-terminated), and returns exit status 2. */
int cli_usage_error(const char *cmd, const char *const *valid, const char *fmt, ...)
	FT_PRINTF(3, 4);
/* Prints a diag and returns its exit status. */
int cli_fail(const struct diag *d);
/* True when argv[i] is -h or --help. */
bool cli_is_help(const char *arg);

/* One subcommand each (cli/cmd_<name>.c). */
int cmd_check(const struct cli *cli, int argc, char **argv);
int cmd_plan(const struct cli *cli, int argc, char **argv);
int cmd_run(const struct cli *cli, int argc, char **argv);
int cmd_ls(const struct cli *cli, int argc, char **argv);
int cmd_show(const struct cli *cli, int argc, char **argv);
int cmd_compare(const struct cli *cli, int argc, char **argv);
int cmd_report(const struct cli *cli, int argc, char **argv);
int cmd_ci(const struct cli *cli, int argc, char **argv);
int cmd_eval(const struct cli *cli, int argc, char **argv);
int cmd_generate(const struct cli *cli, int argc, char **argv);
int cmd_tokenize(const struct cli *cli, int argc, char **argv);
int cmd_export(const struct cli *cli, int argc, char **argv);
int cmd_bench(const struct cli *cli, int argc, char **argv);
int cmd_selftest(const struct cli *cli, int argc, char **argv);
int cmd_synth_model(const struct cli *cli, int argc, char **argv);
int cmd_sync(const struct cli *cli, int argc, char **argv);
int cmd_cancel(const struct cli *cli, int argc, char **argv);
int cmd_task(const struct cli *cli, int argc, char **argv);

#endif
