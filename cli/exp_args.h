/* exp_args: the command-line options shared by check, plan, run and ci: the experiment
 * path (one positional argument) and repeated `-s KEY=VALUE` / `--set KEY=VALUE`
 * (also `-sKEY=VALUE`, `--set=KEY=VALUE`). Everything else is handed back in order so
 * each command parses its own flags. check and plan, whose only flag is --max-runs, load
 * their sweep plan through exp_args_load_plan. */
#ifndef FTLAB_EXP_ARGS_H
#define FTLAB_EXP_ARGS_H

#include <stddef.h>

struct experiment;
struct sweep_plan;

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

/* For check and plan: parses argv of command `cmd` (the path, -s overrides and
 * `--max-runs N`, nothing else), loads the experiment and expands its sweep. 0 with *out_e
 * and *out_plan set (the caller frees them), or the exit status after printing the error:
 * 2 for a usage error, cli_fail's status when the experiment does not load or expand. */
int exp_args_load_plan(struct experiment **out_e, struct sweep_plan **out_plan,
		       const char *cmd, int argc, char **argv);

/* For check and run: every sweep point checked against its model's header
 * (engine_check_config: a readable model, LoRA targets and freeze names that exist, a
 * layer range inside the model), the error pointing at the value in the file. 0, or the
 * exit status after printing the error. */
int exp_args_check_model(const struct experiment *e, const struct sweep_plan *plan);

#endif
