/* cmd_generate: `ftlab generate MODEL [--adapter DIR] [options] PROMPT...`: generates for
 * all prompts in one batch with the native engine (engine.h). Instruct models get their
 * chat template unless --raw. */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/native/engine.h"
#include "common/util.h"
#include "common/banned.h"

static const char *const gen_opts_names[] = {
	"--adapter", "--max-new-tokens", "--temperature", "--top-k", "--top-p", "--seed",
	"--stop", "--system", "--raw", "--threads", NULL};

int cmd_generate(const struct cli *cli, int argc, char **argv)
{
	(void)cli;
	const char *model_path = NULL, *adapter = NULL, *system = NULL;
	const char **prompts = calloc((size_t)argc, sizeof *prompts);
	const char **stops = calloc((size_t)argc, sizeof *stops);
	size_t n_prompts = 0, n_stops = 0;
	struct engine_generate_opts go = {0};
	go.max_new_tokens = 64;
	go.top_p = 1.0f;
	int status = 2;
	char **texts = NULL;
	struct diag d;
	diag_init(&d);
	if (!prompts || !stops)
		goto done;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (cli_is_help(a)) {
			cli_print_usage(cli_find("generate"), stdout);
			status = 0;
			goto done;
		}
		bool has_val = i + 1 < argc;
		int64_t iv;
		double fv;
		if (strcmp(a, "--raw") == 0) {
			go.raw = true;
		} else if (a[0] == '-' && a[1] == '-' && !has_val) {
			status = cli_usage_error("generate", gen_opts_names, "option '%s' needs a value", a);
			goto done;
		} else if (strcmp(a, "--adapter") == 0) {
			adapter = argv[++i];
		} else if (strcmp(a, "--system") == 0) {
			system = argv[++i];
		} else if (strcmp(a, "--stop") == 0) {
			stops[n_stops++] = argv[++i];
		} else if (strcmp(a, "--max-new-tokens") == 0 || strcmp(a, "--top-k") == 0 ||
			   strcmp(a, "--seed") == 0 || strcmp(a, "--threads") == 0) {
			if (!parse_i64(argv[++i], &iv) || iv < 0 || (iv > 1000000 && a[2] != 's')) {
				status = cli_usage_error("generate", NULL, "%s expects a non-negative integer, got '%s'", a, argv[i]);
				goto done;
			}
			if (a[2] == 'm')
				go.max_new_tokens = (int)iv;
			else if (a[2] == 't' && a[3] == 'o')
				go.top_k = (int)iv;
			else if (a[2] == 's')
				go.seed = (uint64_t)iv;
			else
				go.threads = (int)iv;
		} else if (strcmp(a, "--temperature") == 0 || strcmp(a, "--top-p") == 0) {
			if (!parse_f64(argv[++i], &fv) || fv < 0 || (a[2] == 't' && a[3] == 'o' && fv > 1)) {
				status = cli_usage_error("generate", NULL, "%s: invalid value '%s'", a, argv[i]);
				goto done;
			}
			if (a[2] == 't' && a[3] == 'e')
				go.temperature = (float)fv;
			else
				go.top_p = fv > 0 ? (float)fv : 1.0f;
		} else if (a[0] == '-' && a[1] == '-') {
			status = cli_usage_error("generate", gen_opts_names, "unknown option '%s'", a);
			goto done;
		} else if (!model_path) {
			model_path = a;
		} else {
			prompts[n_prompts++] = a;
		}
	}
	if (!model_path || n_prompts == 0) {
		status = cli_usage_error("generate", NULL, "expected MODEL and at least one PROMPT");
		goto done;
	}
	go.model_path = model_path;
	go.adapter = adapter;
	go.system = system;
	go.prompts = prompts;
	go.n_prompts = n_prompts;
	go.stops = stops;
	go.n_stops = n_stops;
	int rc = engine_generate(&texts, &go, &d);
	if (rc) {
		status = cli_fail(&d);
		goto done;
	}
	for (size_t i = 0; i < n_prompts; i++) {
		if (n_prompts > 1)
			printf("--- %zu ---\n", i + 1);
		printf("%s\n", texts[i]);
	}
	status = 0;
done:
	if (texts)
		for (size_t i = 0; i < n_prompts; i++)
			free(texts[i]);
	free(texts);
	free(prompts);
	free(stops);
	return status;
}
