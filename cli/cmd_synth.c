/* cmd_synth: `ftlab synth-model CONFIG -o DIR`: the options; the native engine writes a
 * Hugging Face model directory of random weights in the shape a config.json describes,
 * with a real tokenizer (backends/native/synth.c, through engine.h), so speed and device
 * checks can run on a model's shape where its weights cannot travel (the GPU check builds
 * its SmolLM2-135M-shaped model this way). Deterministic across machines. */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/native/engine.h"
#include "common/util.h"
#include "common/banned.h"

static const char *const synth_opts[] = {"-o", "--output", "--tokenizer", "--seed", "--std",
					 NULL};

int cmd_synth_model(const struct cli *cli, int argc, char **argv)
{
	(void)cli;
	const char *config = NULL, *outdir = NULL, *tok_src = NULL;
	int64_t seed = 1;
	double std = 0.0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (cli_is_help(a)) {
			cli_print_usage(cli_find("synth-model"), stdout);
			return 0;
		}
		if (a[0] != '-') {
			if (config)
				return cli_usage_error("synth-model", NULL,
						       "one CONFIG only, got '%s' and '%s'", config,
						       a);
			config = a;
			continue;
		}
		if (i + 1 >= argc)
			return cli_usage_error("synth-model", synth_opts,
					       "option '%s' needs a value", a);
		const char *v = argv[++i];
		if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) {
			outdir = v;
		} else if (strcmp(a, "--tokenizer") == 0) {
			tok_src = v;
		} else if (strcmp(a, "--seed") == 0) {
			if (!parse_i64(v, &seed) || seed < 0)
				return cli_usage_error("synth-model", NULL,
						       "--seed expects a non-negative integer, got "
						       "'%s'", v);
		} else if (strcmp(a, "--std") == 0) {
			if (!parse_f64(v, &std) || !(std > 0.0) || std > 1.0)
				return cli_usage_error("synth-model", NULL,
						       "--std expects a number in (0, 1], got '%s'",
						       v);
		} else {
			return cli_usage_error("synth-model", synth_opts, "unknown option '%s'", a);
		}
	}
	if (!config)
		return cli_usage_error("synth-model", NULL, "missing CONFIG (a config.json or a "
							    "directory holding one)");
	if (!outdir)
		return cli_usage_error("synth-model", NULL, "missing -o DIR");
	struct diag d;
	diag_init(&d);
	char *summary = NULL, sha[65];
	if (engine_synth_model(&summary, sha, config, tok_src, (uint64_t)seed, std, outdir, &d))
		return cli_fail(&d);
	printf("synth-model: wrote %s: %s\n", outdir, summary);
	printf("model.safetensors sha256 %s\n", sha);
	free(summary);
	return 0;
}
