/* cmd_export: `ftlab export RUN --format peft|gguf-adapter|adapters|merged-safetensors|merged-gguf
 * -o DIR`: finds the run's directory in the workspace and has the native engine rebuild and
 * write its weights (backends/native/export.c, through engine.h); prints what it wrote. */
#include "cli/cli.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/native/engine.h"
#include "common/util.h"
#include "common/banned.h"

static const char *const formats[] = {"peft", "gguf-adapter", "adapters", "merged-safetensors",
				      "merged-gguf", NULL};

/* The run directory for an id or a unique prefix of one. */
static int find_run_dir(char **out, const char *workspace, const char *run, struct diag *d)
{
	*out = NULL;
	char *runs = path_join(workspace, "runs");
	if (!runs)
		return diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
	if (strchr(run, '/') || strcmp(run, ".") == 0 || strcmp(run, "..") == 0 || !run[0]) {
		free(runs);
		return diag_set(d, FT_EINVAL, "", 0, 0, "'%s' is not a run id", run);
	}
	char *exact = path_join(runs, run);
	if (exact && path_exists(exact)) {
		*out = exact;
		free(runs);
		return 0;
	}
	free(exact);
	DIR *dir = opendir(runs);
	char *found = NULL;
	int matches = 0;
	struct dirent *e;
	while (dir && (e = readdir(dir)) != NULL) {
		if (e->d_name[0] == '.' || strncmp(e->d_name, run, strlen(run)) != 0)
			continue;
		if (++matches == 1)
			found = ft_strdup(e->d_name);
	}
	if (dir)
		closedir(dir);
	int rc = 0;
	if (matches == 1 && found)
		*out = path_join(runs, found);
	else if (matches > 1)
		rc = diag_set(d, FT_EINVAL, "", 0, 0, "run id prefix '%s' is ambiguous (%d runs)", run,
			      matches);
	else
		rc = diag_set(d, FT_EINVAL, "", 0, 0, "no run '%s' in workspace %s", run, workspace);
	free(found);
	free(runs);
	return rc;
}

int cmd_export(const struct cli *cli, int argc, char **argv)
{
	const char *run = NULL, *format = NULL, *out = NULL, *base_model = NULL;
	static const char *const opts[] = {"--format", "--output", "-o", "--base-model", "--help",
					   NULL};
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (cli_is_help(a)) {
			cli_print_usage(cli_find("export"), stdout);
			return 0;
		}
		if (strcmp(a, "--format") == 0 || strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0 ||
		    strcmp(a, "--base-model") == 0) {
			if (i + 1 >= argc)
				return cli_usage_error("export", NULL, "%s needs a value", a);
			if (strcmp(a, "--format") == 0)
				format = argv[++i];
			else if (strcmp(a, "--base-model") == 0)
				base_model = argv[++i];
			else
				out = argv[++i];
		} else if (a[0] == '-' && a[1]) {
			return cli_usage_error("export", opts, "unknown option '%s'", a);
		} else if (!run) {
			run = a;
		} else {
			return cli_usage_error("export", NULL, "unexpected argument '%s'", a);
		}
	}
	if (!run || !format || !out)
		return cli_usage_error("export", NULL, "expected RUN, --format and -o DIR");
	bool known = false;
	for (size_t i = 0; formats[i]; i++)
		known |= strcmp(formats[i], format) == 0;
	if (!known)
		return cli_usage_error("export", formats, "unknown format '%s'", format);
	struct diag d;
	diag_init(&d);
	char *run_dir = NULL, *target = NULL;
	int rc = find_run_dir(&run_dir, cli->workspace, run, &d);
	if (rc == 0)
		rc = engine_export(&target, run_dir, format, out, base_model, &d);
	if (rc == 0 && target)
		printf("%s\n", target);
	free(target);
	free(run_dir);
	return rc ? cli_fail(&d) : 0;
}
