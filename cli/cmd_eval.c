/* cmd_eval: `ftlab eval MODEL [--adapter DIR] --data FILE ...`: evaluates a model (and
 * optionally a PEFT LoRA adapter on it) on one JSONL file without training, through the
 * native engine (engine.h), and prints a metric table with bootstrap intervals (or JSON
 * with --json). */
#include "cli/cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "backends/native/engine.h"
#include "common/util.h"
#include "schema/table.h"
#include "scoring/metrics.h"
#include "common/banned.h"

struct row {
	char metric[32];
	double value, lo, hi;
};

struct pred_ctx;

struct table {
	struct row rows[16];
	size_t n;
	const char *model;
	const struct pred_ctx *pred;
};

static int on_result(void *ud, const char *model, const char *split, const char *metric,
		     double value, double lo, double hi)
{
	(void)model;
	(void)split;
	struct table *t = ud;
	if (t->n < FT_ARRAY_LEN(t->rows)) {
		struct row *r = &t->rows[t->n++];
		snprintf(r->metric, sizeof r->metric, "%s", metric);
		r->value = value;
		r->lo = lo;
		r->hi = hi;
	}
	return 0;
}

struct pred_ctx {
	bool show;
	int primary; /* the first text metric the user named, or -1 */
};

static int on_prediction(void *ud, const char *model, const char *split, int64_t example,
			 const char *prompt, const char *reference, const char *output, double score)
{
	(void)model;
	(void)split;
	const struct table *t = ud;
	const struct pred_ctx *p = t->pred;
	score = NAN;
	if (p->primary >= 0 &&
	    metric_sentence(&score, (enum metric_kind)p->primary, output, reference))
		score = NAN;
	if (p->show)
		fprintf(stderr, "example %lld: score %.3g\n  prompt:    %s\n  reference: %s\n  output:    %s\n",
			(long long)example, score, prompt, reference, output);
	return 0;
}

static void on_progress(void *ud, const char *phase, size_t done, size_t total)
{
	const struct cli *cli = ud;
	if (cli->verbosity < 0)
		return;
	if (cli->tty)
		fprintf(stderr, "\r%s %zu/%zu", phase, done, total);
	if (done == total)
		fprintf(stderr, cli->tty ? "\n" : "%s %zu/%zu\n", phase, done, total);
}

static void on_warning(void *ud, const char *text)
{
	const struct cli *cli = ud;
	if (cli->verbosity >= 0)
		fprintf(stderr, "ftlab: warning: %s", text);
}

static void print_json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(f, "\\%c", *p);
		else if (*p < 0x20)
			fprintf(f, "\\u%04x", *p);
		else
			fputc(*p, f);
	}
	fputc('"', f);
}

static void print_num(FILE *f, double v)
{
	if (isfinite(v))
		fprintf(f, "%.10g", v);
	else
		fputs("null", f);
}

int cmd_eval(const struct cli *cli, int argc, char **argv)
{
	static const char *const opts[] = {"--adapter", "--data", "--format", "--metrics",
					   "--template", "--system", "--limit", "--max-length",
					   "--max-new-tokens", "--batch", "--bootstrap", "--seed",
					   "--samples", "--predictions", "--choices", "--json", "--help",
					   NULL};
	const char *model_path = NULL, *adapter = NULL, *data = NULL, *format = NULL,
		   *metrics = "loss,perplexity,token_accuracy,exact_match,f1", *tmpl = NULL,
		   *system = NULL, *pred_path = NULL, *choices = NULL;
	int64_t limit = 0, max_length = 256, max_new = 64, batch = 8, bootstrap = 1000, seed = 0,
		samples = 0;
	bool json = cli->json;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (cli_is_help(a)) {
			cli_print_usage(cli_find("eval"), stdout);
			return 0;
		}
		if (strcmp(a, "--json") == 0) {
			json = true;
			continue;
		}
		if (a[0] != '-') {
			if (model_path)
				return cli_usage_error("eval", NULL, "unexpected argument '%s'", a);
			model_path = a;
			continue;
		}
		if (i + 1 >= argc)
			return cli_usage_error("eval", opts, "option '%s' needs a value", a);
		const char *v = argv[++i];
		int64_t *num = NULL;
		if (strcmp(a, "--adapter") == 0)
			adapter = v;
		else if (strcmp(a, "--data") == 0)
			data = v;
		else if (strcmp(a, "--format") == 0)
			format = v;
		else if (strcmp(a, "--metrics") == 0)
			metrics = v;
		else if (strcmp(a, "--template") == 0)
			tmpl = v;
		else if (strcmp(a, "--system") == 0)
			system = v;
		else if (strcmp(a, "--predictions") == 0)
			pred_path = v;
		else if (strcmp(a, "--choices") == 0)
			choices = v;
		else if (strcmp(a, "--limit") == 0)
			num = &limit;
		else if (strcmp(a, "--max-length") == 0)
			num = &max_length;
		else if (strcmp(a, "--max-new-tokens") == 0)
			num = &max_new;
		else if (strcmp(a, "--batch") == 0)
			num = &batch;
		else if (strcmp(a, "--bootstrap") == 0)
			num = &bootstrap;
		else if (strcmp(a, "--seed") == 0)
			num = &seed;
		else if (strcmp(a, "--samples") == 0)
			num = &samples;
		else
			return cli_usage_error("eval", opts, "unknown option '%s'", a);
		if (num && (!parse_i64(v, num) || *num < 0 || *num > 100000000))
			return cli_usage_error("eval", NULL, "option '%s' needs a non-negative integer, got '%s'", a, v);
	}
	if (!model_path)
		return cli_usage_error("eval", NULL, "missing MODEL");
	if (!data)
		return cli_usage_error("eval", NULL, "missing --data FILE");
	if (batch < 1 || max_length < 2)
		return cli_usage_error("eval", NULL, "--batch must be >= 1 and --max-length >= 2");

	struct diag d;
	diag_init(&d);
	char **mnames = NULL, **cnames = NULL;
	size_t n_m = 0, n_c = 0;
	char *mlist = NULL, *clist = NULL;
	int rc = 0;

	/* label set: comma-separated */
	if (choices) {
		clist = ft_strdup(choices);
		cnames = calloc(strlen(choices) + 1, sizeof *cnames);
		if (!clist || !cnames) {
			rc = diag_set(&d, FT_ENOMEM, NULL, 0, 0, "out of memory");
			goto done;
		}
		for (char *save = NULL, *t = strtok_r(clist, ",", &save); t;
		     t = strtok_r(NULL, ",", &save))
			cnames[n_c++] = t;
		if (n_c < 2) {
			free(clist);
			free(cnames);
			return cli_usage_error("eval", NULL, "--choices needs at least two labels, "
					       "comma-separated");
		}
	}

	/* metrics list */
	mlist = ft_strdup(metrics);
	mnames = calloc(strlen(metrics) + 1, sizeof *mnames);
	if (!mlist || !mnames) {
		rc = diag_set(&d, FT_ENOMEM, NULL, 0, 0, "out of memory");
		goto done;
	}
	for (char *save = NULL, *t = strtok_r(mlist, ",", &save); t; t = strtok_r(NULL, ",", &save))
		mnames[n_m++] = t;
	const struct key_desc *fk = schema_find("data.format");
	if (format && !schema_choice_ok(fk->choices, format)) {
		free(mnames);
		free(mlist);
		free(cnames);
		free(clist);
		return cli_usage_error("eval", NULL, "--format must be text, completion, instruction, "
				       "chat or preference, got '%s'", format);
	}
	struct engine_eval_opts eo = {
		.model_path = model_path,
		.adapter = adapter,
		.data = data,
		.format = format,
		.metrics = (const char *const *)mnames,
		.n_metrics = n_m,
		.template_name = tmpl,
		.system = system,
		.choices = (const char *const *)cnames,
		.n_choices = n_c,
		.predictions_path = pred_path,
		.limit = limit,
		.max_length = max_length,
		.max_new_tokens = max_new,
		.batch = batch,
		.bootstrap = bootstrap,
		.seed = seed,
		.samples = samples,
		.progress = on_progress,
		.warning = on_warning,
		.progress_ud = (void *)(uintptr_t)cli,
	};
	struct pred_ctx pc = {samples > 0 && !json, -1};
	for (size_t k = 0; k < n_m && pc.primary < 0; k++)
		pc.primary = metric_from_name(mnames[k]);
	struct table tbl;
	memset(&tbl, 0, sizeof tbl);
	tbl.pred = &pc;
	struct run_sink sink;
	memset(&sink, 0, sizeof sink);
	sink.ud = &tbl;
	sink.result = on_result;
	sink.prediction = on_prediction;
	struct engine_eval_info info;
	rc = engine_eval(&info, &eo, &sink, &d);
	if (rc)
		goto done;
	if (json) {
		printf("{\"model\": ");
		print_json_str(stdout, model_path);
		printf(", \"adapter\": ");
		if (adapter)
			print_json_str(stdout, adapter);
		else
			printf("null");
		printf(", \"data\": ");
		print_json_str(stdout, data);
		printf(", \"format\": \"%s\", \"examples\": %zu, \"metrics\": {", info.format,
		       info.examples);
		for (size_t i = 0; i < tbl.n; i++) {
			printf("%s\"%s\": {\"value\": ", i ? ", " : "", tbl.rows[i].metric);
			print_num(stdout, tbl.rows[i].value);
			printf(", \"ci_low\": ");
			print_num(stdout, tbl.rows[i].lo);
			printf(", \"ci_high\": ");
			print_num(stdout, tbl.rows[i].hi);
			printf("}");
		}
		printf("}}\n");
	} else {
		printf("%s%s%s on %s (%zu examples, %s)\n", model_path, adapter ? " + " : "",
		       adapter ? adapter : "", data, info.examples, info.format);
		printf("%-16s %12s   %s\n", "metric", "value", "95% interval");
		for (size_t i = 0; i < tbl.n; i++) {
			const struct row *r = &tbl.rows[i];
			if (isnan(r->lo))
				printf("%-16s %12.4f\n", r->metric, r->value);
			else
				printf("%-16s %12.4f   [%.4f, %.4f]\n", r->metric, r->value, r->lo, r->hi);
		}
		if (info.gen_tokens && cli->verbosity > 0)
			printf("generated %ld tokens in %.1fs\n", info.gen_tokens, info.gen_seconds);
	}
done:
	free(mnames);
	free(mlist);
	free(cnames);
	free(clist);
	return rc ? cli_fail(&d) : 0;
}
