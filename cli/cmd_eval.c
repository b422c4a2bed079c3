/* cmd_eval: `ftlab eval MODEL [--adapter DIR] --data FILE ...`: evaluates a model (and
 * optionally a PEFT LoRA adapter on it) on one JSONL file without training, and prints a
 * metric table with bootstrap intervals (or JSON with --json). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "backends/native/data/prepare.h"
#include "backends/native/eval/evaluate.h"
#include "backends/native/io/model_file.h"
#include "backends/native/model/model.h"
#include "backends/native/tok/tokenizer.h"
#include "common/util.h"
#include "cli/cli.h"

struct row {
	char metric[32];
	double value, lo, hi;
};

struct table {
	struct row rows[16];
	size_t n;
	const char *model;
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
};

static int on_prediction(void *ud, const char *model, const char *split, int64_t example,
			 const char *prompt, const char *reference, const char *output, double score)
{
	(void)model;
	(void)split;
	struct pred_ctx *p = ud;
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

/* The format from the first non-empty line's keys. */
static int sniff_format(const char *path, struct diag *d)
{
	char *buf = NULL;
	size_t len = 0;
	if (file_read_all(&buf, &len, path, DATA_FILE_MAX, d))
		return -1;
	int f = -1;
	const char *keys[] = {"\"messages\"", "\"instruction\"", "\"prompt\"", "\"text\""};
	const int fmts[] = {DATA_CHAT, DATA_INSTRUCTION, DATA_COMPLETION, DATA_TEXT};
	char *nl = strchr(buf, '\n');
	if (nl)
		*nl = 0;
	for (size_t i = 0; i < FT_ARRAY_LEN(keys) && f < 0; i++)
		if (strstr(buf, keys[i]))
			f = fmts[i];
	free(buf);
	if (f < 0) {
		diag_set(d, FT_EINVAL, path, 1, 0,
			 "cannot tell the data format from the first line (no messages, instruction, prompt or text key)");
		diag_hint(d, "pass --format text|completion|instruction|chat");
	}
	return f;
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
					   "--samples", "--predictions", "--json", "--help", NULL};
	const char *model_path = NULL, *adapter = NULL, *data = NULL, *format = NULL,
		   *metrics = "loss,perplexity,token_accuracy,exact_match,f1", *tmpl = "auto",
		   *system = NULL, *pred_path = NULL;
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
	struct model_file *mf = NULL;
	struct tokenizer *tok = NULL;
	struct model *m = NULL;
	struct data_prepared prep;
	memset(&prep, 0, sizeof prep);
	struct eval_result res;
	memset(&res, 0, sizeof res);
	char **mnames = NULL;
	size_t n_m = 0;
	char *mlist = NULL;
	int rc = 0;

	/* metrics list */
	mlist = ft_strdup(metrics);
	mnames = calloc(strlen(metrics) + 1, sizeof *mnames);
	if (!mlist || !mnames) {
		rc = diag_set(&d, FT_ENOMEM, NULL, 0, 0, "out of memory");
		goto done;
	}
	for (char *save = NULL, *t = strtok_r(mlist, ",", &save); t; t = strtok_r(NULL, ",", &save))
		mnames[n_m++] = t;
	struct eval_settings s;
	memset(&s, 0, sizeof s);
	rc = eval_settings_metrics(&s, (const char *const *)mnames, n_m, &d);
	if (rc)
		goto done;
	struct config_data cd;
	memset(&cd, 0, sizeof cd);
	int f = format ? data_format_from_name(format) : sniff_format(data, &d);
	if (format && f < 0) {
		free(mnames);
		free(mlist);
		return cli_usage_error("eval", NULL, "--format must be text, completion, instruction or chat, got '%s'", format);
	}
	if (f < 0) {
		rc = FT_EINVAL;
		goto done;
	}
	cd.format = (enum data_format)f;
	cd.test.present = true;
	cd.test.path = (char *)data;
	cd.template_name = (char *)tmpl;
	cd.system = (char *)system;
	cd.max_length = (int)max_length;
	cd.limit_test = limit;
	cd.on_bad_example = BAD_EXAMPLE_ERROR;

	s.batch_size = (int)batch;
	s.seq_len = (int)max_length;
	s.max_new_tokens = (int)max_new;
	s.temperature = 0;
	s.top_p = 1.0;
	static const char *const stop_nl[] = {"\n\n"};
	s.stop = stop_nl;
	s.n_stop = 1;
	s.seed = (uint64_t)seed;
	s.bootstrap = (int)bootstrap;
	s.level = 0.95;
	s.samples = (int)samples;
	s.progress = on_progress;
	s.progress_ud = (void *)(uintptr_t)cli;

	if ((rc = model_file_load(&mf, model_path, &d)) || (rc = tokenizer_from_model_file(&tok, mf, &d)))
		goto done;
	rc = data_prepare(&prep, &cd, 0, tok, &d);
	if (rc)
		goto done;
	char *warn = data_prepared_warnings(&prep);
	if (warn && *warn && cli->verbosity >= 0)
		fprintf(stderr, "ftlab: warning: %s", warn);
	free(warn);
	rc = eval_model_create(&m, mf, adapter, (int)batch, (int)max_length, &d);
	if (rc)
		goto done;
	rc = eval_split(&res, m, tok, prep.test, &s, &d);
	if (rc)
		goto done;
	struct table tbl;
	memset(&tbl, 0, sizeof tbl);
	struct pred_ctx pc = {samples > 0 && !json};
	struct run_sink sink;
	memset(&sink, 0, sizeof sink);
	sink.ud = &tbl;
	sink.result = on_result;
	const char *mname = adapter ? "tuned" : "base";
	rc = eval_emit(&sink, "test", mname, NULL, &res, prep.test, &s, pred_path, &d);
	for (size_t i = 0; !rc && pc.show && res.outputs && i < (size_t)samples && i < prep.test->n; i++) {
		double score = NAN;
		int primary = metric_from_name(mnames[0]);
		for (size_t k = 0; k < n_m && primary < 0; k++)
			primary = metric_from_name(mnames[k]);
		if (primary >= 0 && metric_sentence(&score, (enum metric_kind)primary, res.outputs[i],
						    prep.test->ex[i].reference))
			score = NAN;
		on_prediction(&pc, mname, "test", (int64_t)i, prep.test->ex[i].prompt,
			      prep.test->ex[i].reference, res.outputs[i], score);
	}
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
		printf(", \"format\": \"%s\", \"examples\": %zu, \"metrics\": {", data_format_name(cd.format),
		       prep.test->n);
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
		       adapter ? adapter : "", data, prep.test->n, data_format_name(cd.format));
		printf("%-16s %12s   %s\n", "metric", "value", "95% interval");
		for (size_t i = 0; i < tbl.n; i++) {
			const struct row *r = &tbl.rows[i];
			if (isnan(r->lo))
				printf("%-16s %12.4f\n", r->metric, r->value);
			else
				printf("%-16s %12.4f   [%.4f, %.4f]\n", r->metric, r->value, r->lo, r->hi);
		}
		if (res.gen_tokens && cli->verbosity > 0)
			printf("generated %ld tokens in %.1fs\n", res.gen_tokens, res.gen_seconds);
	}
done:
	eval_result_free(&res);
	model_free(m);
	data_prepared_free(&prep);
	tokenizer_free(tok);
	model_file_free(mf);
	free(mnames);
	free(mlist);
	return rc ? cli_fail(&d) : 0;
}
