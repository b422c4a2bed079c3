/* main: global options, then dispatch to a subcommand from the table in cli.c. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"
#include "cli/cli.h"
#include "common/banned.h"

static void print_help(FILE *out)
{
	fputs("usage: ftlab [--workspace DIR] [--quiet|--verbose] [--json] COMMAND [ARGS]\n\n"
	      "Declarative fine-tuning experiments: sweep, train, evaluate, report, gate.\n\n"
	      "Commands:\n",
	      out);
	for (size_t i = 0; i < cli_n_commands; i++)
		fprintf(out, "  %-10s %s\n", cli_commands[i].name, cli_commands[i].summary);
	fputs("  version    print the version\n"
	      "  help       show help for a command\n\n"
	      "Exit codes: 0 success, 1 a run or gate failed, 2 invalid input, 130 interrupted.\n"
	      "Run 'ftlab help COMMAND' for a command's options.\n",
	      out);
}

static int unknown_command(const char *name)
{
	const char *names[64];
	size_t n = 0;
	for (size_t i = 0; i < cli_n_commands && n < 62; i++)
		names[n++] = cli_commands[i].name;
	names[n++] = "version";
	names[n++] = "help";
	const char *near = nearest_word(name, names, n);
	fprintf(stderr, "ftlab: error: unknown command '%s'\n", name);
	if (near)
		fprintf(stderr, "note: did you mean '%s'?\n", near);
	fputs("Run 'ftlab help' for the list of commands.\n", stderr);
	return 2;
}

int main(int argc, char **argv)
{
	/* An ignored SIGCHLD is inherited across exec (a parent that ignores it starts us):
	 * the kernel would then reap every child itself and waitpid() could never report a
	 * trainer's, worker's or gnuplot's exit status. */
	signal(SIGCHLD, SIG_DFL);
	struct cli cli = {0};
	cli.workspace = getenv("FTLAB_WORKSPACE");
	if (!cli.workspace || !cli.workspace[0])
		cli.workspace = ".ftlab";
	cli.tty = isatty(STDERR_FILENO);
	const char *nc = getenv("NO_COLOR");
	cli.color = cli.tty && !(nc && nc[0]);

	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--workspace") == 0) {
			if (i + 1 >= argc) {
				fputs("ftlab: error: --workspace needs a directory\n", stderr);
				return 2;
			}
			cli.workspace = argv[++i];
		} else if (strncmp(a, "--workspace=", 12) == 0) {
			cli.workspace = a + 12;
		} else if (strcmp(a, "--quiet") == 0 || strcmp(a, "-q") == 0) {
			cli.verbosity = -1;
		} else if (strcmp(a, "--verbose") == 0 || strcmp(a, "-v") == 0) {
			cli.verbosity = 1;
		} else if (strcmp(a, "--json") == 0) {
			cli.json = true;
		} else if (cli_is_help(a)) {
			print_help(stdout);
			return 0;
		} else if (strcmp(a, "--version") == 0) {
			printf("ftlab %s\n", FTLAB_VERSION);
			return 0;
		} else {
			fprintf(stderr, "ftlab: error: unknown global option '%s'\n", a);
			fputs("Run 'ftlab help' for usage.\n", stderr);
			return 2;
		}
	}
	if (i >= argc) {
		print_help(stderr);
		return 2;
	}
	const char *name = argv[i];
	if (strcmp(name, "version") == 0) {
		printf("ftlab %s\n", FTLAB_VERSION);
		return 0;
	}
	if (strcmp(name, "help") == 0) {
		if (i + 1 >= argc) {
			print_help(stdout);
			return 0;
		}
		const struct cli_command *c = cli_find(argv[i + 1]);
		if (!c)
			return unknown_command(argv[i + 1]);
		cli_print_usage(c, stdout);
		return 0;
	}
	const struct cli_command *c = cli_find(name);
	if (!c)
		return unknown_command(name);
	/* Global flags may also follow the command name; subcommands see the rest. */
	char **sub = argv + i;
	int subc = argc - i;
	for (int k = 1; k < subc; k++) {
		if (cli_is_help(sub[k])) {
			cli_print_usage(c, stdout);
			return 0;
		}
		if (strcmp(sub[k], "--") == 0)
			break;
	}
	int kept = 1;
	for (int k = 1; k < subc; k++) {
		if (strcmp(sub[k], "--json") == 0) {
			cli.json = true;
		} else if (strcmp(sub[k], "--quiet") == 0) {
			cli.verbosity = -1;
		} else if (strcmp(sub[k], "--verbose") == 0) {
			cli.verbosity = 1;
		} else if (strcmp(sub[k], "--workspace") == 0 && k + 1 < subc) {
			cli.workspace = sub[++k];
		} else {
			sub[kept++] = sub[k];
		}
	}
	/* Run directories handed to backends (and to exec trainers, which start in the
	 * experiment's directory) must be absolute, so the workspace is made absolute once. */
	char *abs_ws = NULL;
	if (cli.workspace[0] != '/') {
		char *cwd = getcwd(NULL, 0);
		abs_ws = cwd ? path_join(cwd, cli.workspace) : NULL;
		free(cwd);
		if (!abs_ws) {
			fputs("ftlab: error: cannot resolve the workspace directory\n", stderr);
			return 2;
		}
		cli.workspace = abs_ws;
	}
	int status = c->run(&cli, kept, sub);
	free(abs_ws);
	return status;
}
