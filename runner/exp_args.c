/* exp_args: parsing of the experiment path and -s/--set overrides shared by check, plan,
 * run and ci. */
#include "runner/exp_args.h"

#include <stdlib.h>
#include <string.h>

#include "runner/cli.h"

static bool is_valued(const char *arg, const char *const *valued)
{
	for (size_t i = 0; valued && valued[i]; i++)
		if (strcmp(arg, valued[i]) == 0)
			return true;
	return false;
}

int exp_args_parse(struct exp_args *out, const char *cmd, int argc, char **argv,
		   const char *const *valued)
{
	memset(out, 0, sizeof *out);
	size_t cap = argc > 0 ? (size_t)argc : 1;
	out->overrides = calloc(cap, sizeof *out->overrides);
	out->rest = calloc(cap, sizeof *out->rest);
	if (!out->overrides || !out->rest) {
		exp_args_free(out);
		fputs("ftlab: error: out of memory\n", stderr);
		return 2;
	}
	bool positional_only = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *ov = NULL;
		if (!positional_only && strcmp(a, "--") == 0) {
			positional_only = true;
			continue;
		}
		if (!positional_only && (strcmp(a, "-s") == 0 || strcmp(a, "--set") == 0)) {
			if (i + 1 >= argc) {
				exp_args_free(out);
				return cli_usage_error(cmd, NULL, "%s needs KEY=VALUE", a);
			}
			ov = argv[++i];
		} else if (!positional_only && strncmp(a, "--set=", 6) == 0) {
			ov = a + 6;
		} else if (!positional_only && strncmp(a, "-s", 2) == 0 && a[2]) {
			ov = a + 2;
		}
		if (ov) {
			const char *eq = strchr(ov, '=');
			if (!eq || eq == ov) {
				exp_args_free(out);
				return cli_usage_error(cmd, NULL,
						       "-s needs KEY=VALUE (got '%s'), e.g. -s "
						       "method.rank=16", ov);
			}
			out->overrides[out->n_overrides++] = ov;
			continue;
		}
		if (!positional_only && a[0] == '-' && a[1]) {
			out->rest[out->n_rest++] = argv[i];
			if (is_valued(a, valued) && i + 1 < argc)
				out->rest[out->n_rest++] = argv[++i];
			continue;
		}
		if (out->path) {
			exp_args_free(out);
			return cli_usage_error(cmd, NULL, "one experiment file expected, got '%s' "
					       "and '%s'", out->path ? out->path : "", a);
		}
		out->path = a;
	}
	if (!out->path) {
		exp_args_free(out);
		return cli_usage_error(cmd, NULL, "missing the experiment file (EXP.yaml)");
	}
	return 0;
}

void exp_args_free(struct exp_args *a)
{
	free(a->overrides);
	free(a->rest);
	a->overrides = NULL;
	a->rest = NULL;
	a->n_overrides = 0;
	a->n_rest = 0;
}
