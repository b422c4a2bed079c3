/* exp_args: the command-line options shared by check, plan, run and ci: the experiment
 * path (one positional argument) and repeated `-s KEY=VALUE` / `--set KEY=VALUE`
 * (also `-sKEY=VALUE`, `--set=KEY=VALUE`). Everything else is handed back in order so
 * each command parses its own flags. */
#ifndef FTLAB_EXP_ARGS_H
#define FTLAB_EXP_ARGS_H

#include <stddef.h>

struct exp_args {
	const char *path;          /* the experiment file; NULL when absent */
	const char **overrides;    /* "KEY=VALUE" strings (borrowed from argv) */
	size_t n_overrides;
	char **rest;               /* the other arguments, in order (borrowed) */
	int n_rest;
};

/* Parses argv[1..argc-1] of command `cmd`. `valued` (NULL-terminated, may be NULL) lists
 * the command's own options that take a separate value ("--max-runs"), so their values
 * are kept in rest and not taken for the path; `--opt=value` needs no listing.
 * Arguments after "--" are positional. A missing or second path, or a -s without
 * KEY=VALUE, prints a usage error and returns 2; 0 on success. Free with exp_args_free. */
int exp_args_parse(struct exp_args *out, const char *cmd, int argc, char **argv,
		   const char *const *valued);
void exp_args_free(struct exp_args *a);

#endif
