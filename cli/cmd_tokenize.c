/* cmd_tokenize: `ftlab tokenize MODEL [--special] [--no-bos] TEXT...`, `--data FILE` and
 * `--write-hf DIR`: parses the options and has the engine print the ids and pieces a
 * model's tokenizer gives (backends/native/tokenize.c, through engine.h). Only the
 * tokenizer is loaded, so any architecture works. */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/native/engine.h"
#include "common/util.h"
#include "common/banned.h"

int cmd_tokenize(const struct cli *cli, int argc, char **argv)
{
	static const char *const opts[] = {"--special", "--no-bos", "--json", "--data", "--format",
					   "--template", "--system", "--max-length", "--limit",
					   "--train-on-inputs", "--write-hf", "--help", NULL};
	struct engine_tokenize_opts o = {.json = cli->json};
	char **texts = calloc((size_t)argc, sizeof *texts);
	int n_texts = 0;
	if (!texts)
		return cli_usage_error("tokenize", NULL, "out of memory");
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		bool *flag = NULL;
		const char **val = NULL;
		int64_t *num = NULL;
		if (cli_is_help(a)) {
			free(texts);
			cli_print_usage(cli_find("tokenize"), stdout);
			return 0;
		}
		if (strcmp(a, "--") == 0) {
			while (++i < argc)
				texts[n_texts++] = argv[i];
			break;
		}
		if (a[0] != '-' || !a[1]) {
			if (!o.model_path)
				o.model_path = a;
			else
				texts[n_texts++] = argv[i];
			continue;
		}
		if (strcmp(a, "--special") == 0)
			flag = &o.special;
		else if (strcmp(a, "--no-bos") == 0)
			flag = &o.no_bos;
		else if (strcmp(a, "--json") == 0)
			flag = &o.json;
		else if (strcmp(a, "--train-on-inputs") == 0)
			flag = &o.train_on_inputs;
		else if (strcmp(a, "--data") == 0)
			val = &o.data;
		else if (strcmp(a, "--format") == 0)
			val = &o.format;
		else if (strcmp(a, "--template") == 0)
			val = &o.template_name;
		else if (strcmp(a, "--system") == 0)
			val = &o.system;
		else if (strcmp(a, "--write-hf") == 0)
			val = &o.write_hf;
		else if (strcmp(a, "--max-length") == 0)
			num = &o.max_length;
		else if (strcmp(a, "--limit") == 0)
			num = &o.limit;
		if (flag) {
			*flag = true;
			continue;
		}
		if (!val && !num) {
			free(texts);
			return cli_usage_error("tokenize", opts, "unknown option '%s'", a);
		}
		if (i + 1 >= argc) {
			free(texts);
			return cli_usage_error("tokenize", NULL, "option '%s' needs a value", a);
		}
		const char *v = argv[++i];
		if (val)
			*val = v;
		else if (!parse_i64(v, num) || *num < 0 || *num > 100000000) {
			free(texts);
			return cli_usage_error("tokenize", NULL,
					       "option '%s' needs a non-negative integer, got '%s'", a, v);
		}
	}
	const char *usage_err = NULL;
	if (!o.model_path)
		usage_err = "missing MODEL";
	else if (o.write_hf && (o.data || n_texts))
		usage_err = "--write-hf DIR takes no TEXT or --data";
	else if (o.data && n_texts)
		usage_err = "give TEXT or --data FILE, not both";
	else if (!o.data && !n_texts && !o.write_hf)
		usage_err = "missing TEXT (or --data FILE)";
	else if (!o.data && (o.format || o.template_name || o.system || o.max_length || o.limit ||
			     o.train_on_inputs))
		usage_err = "--format, --template, --system, --max-length, --limit and "
			    "--train-on-inputs go with --data";
	else if (o.data && (o.special || o.no_bos))
		usage_err = "--special and --no-bos go with TEXT (with --data the template decides)";
	if (usage_err) {
		free(texts);
		return cli_usage_error("tokenize", NULL, "%s", usage_err);
	}
	o.texts = (const char *const *)texts;
	o.n_texts = (size_t)n_texts;
	struct diag d;
	diag_init(&d);
	int rc = engine_tokenize(&o, &d);
	free(texts);
	return rc ? cli_fail(&d) : 0;
}
