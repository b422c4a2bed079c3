/* gates: gate evaluation, the JUnit XML writer and the CI Markdown summary (gates.h). */
#include "reports/gates.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "reports/report_write.h"
#include "common/banned.h"

static void gate_name(char *out, size_t n, const struct config_gate *g)
{
	char a[64] = "", b[64] = "";
	switch (g->vs) {
	case GATE_ABSOLUTE:
		if (g->has_min)
			snprintf(a, sizeof(a), " min %g", g->min);
		if (g->has_max)
			snprintf(b, sizeof(b), " max %g", g->max);
		snprintf(out, n, "%s%s%s", g->metric, a, b);
		break;
	case GATE_VS_BASE:
		snprintf(out, n, "%s vs base: min_delta %g", g->metric, g->min_delta);
		break;
	case GATE_VS_BASELINE:
		if (g->has_max_regression)
			snprintf(a, sizeof(a), " max_regression %g", g->max_regression);
		if (g->has_min_delta)
			snprintf(b, sizeof(b), " min_delta %g", g->min_delta);
		snprintf(out, n, "%s vs baseline:%s%s", g->metric, a, b);
		break;
	}
}

static void ci_text(char *out, size_t n, const struct report_value *v)
{
	if (v && v->present && v->has_ci)
		snprintf(out, n, " (CI [%.6g, %.6g])", v->lo, v->hi);
	else
		out[0] = '\0';
}

static void eval_one(struct gate_result *res, const struct config_gate *g,
		     const struct report *r)
{
	memset(res, 0, sizeof(*res));
	res->gate = g;
	res->value = NAN;
	gate_name(res->name, sizeof(res->name), g);
	long b = report_best_run(r);
	if (b < 0) {
		res->outcome = GATE_FAIL;
		snprintf(res->message, sizeof(res->message), "no finished run of %s has results",
			 r->experiment);
		return;
	}
	const struct report_run *run = &r->runs[b];
	snprintf(res->run_id, sizeof(res->run_id), "%s", run->id);
	long m = report_metric_find(r, g->metric);
	if (m < 0 || !run->tuned[m].present) {
		res->outcome = GATE_FAIL;
		snprintf(res->message, sizeof(res->message), "%s was not recorded for run %s",
			 g->metric, run->id);
		return;
	}
	double v = run->tuned[m].v;
	char ci[96];
	if (g->vs == GATE_ABSOLUTE) {
		bool ok = (!g->has_min || v >= g->min) && (!g->has_max || v <= g->max);
		ci_text(ci, sizeof(ci), &run->tuned[m]);
		res->value = v;
		res->outcome = ok && isfinite(v) ? GATE_PASS : GATE_FAIL;
		char lim[96] = "";
		if (g->has_min && (!ok || !g->has_max))
			snprintf(lim, sizeof(lim), "%s %g", v >= g->min ? ">=" : "<", g->min);
		else if (g->has_max)
			snprintf(lim, sizeof(lim), "%s %g", v <= g->max ? "<=" : ">", g->max);
		snprintf(res->message, sizeof(res->message), "%s = %.6g%s %s (run %s)", g->metric, v,
			 ci, lim, run->id);
		return;
	}
	if (g->vs == GATE_VS_BASE) {
		double delta;
		if (run->delta[m].present)
			delta = run->delta[m].v;
		else if (run->base[m].present)
			delta = v - run->base[m].v;
		else {
			res->outcome = GATE_FAIL;
			snprintf(res->message, sizeof(res->message), "the base model's %s was not "
				 "recorded for run %s (eval.compare_base)", g->metric, run->id);
			return;
		}
		ci_text(ci, sizeof(ci), &run->delta[m]);
		res->value = delta;
		bool ok = isfinite(delta) && (!g->has_min_delta || delta >= g->min_delta);
		res->outcome = ok ? GATE_PASS : GATE_FAIL;
		char base_txt[48] = "?";
		if (run->base[m].present)
			snprintf(base_txt, sizeof(base_txt), "%.6g", run->base[m].v);
		snprintf(res->message, sizeof(res->message),
			 "fine-tuned %.6g - base %s = %+.6g%s %s min_delta %g (run %s)", v, base_txt,
			 delta, ci, ok ? ">=" : "<", g->min_delta, run->id);
		return;
	}
	/* vs baseline */
	if (!r->baseline) {
		res->outcome = GATE_ERROR;
		snprintf(res->message, sizeof(res->message), "this gate compares with a baseline: "
			 "give one with --baseline EXPERIMENT|RUN|EXPERIMENT@COMMIT");
		return;
	}
	long bb = report_best_run(r->baseline);
	long bm = report_metric_find(r->baseline, g->metric);
	if (bb < 0 || bm < 0 || !r->baseline->runs[bb].tuned[bm].present) {
		res->outcome = GATE_ERROR;
		snprintf(res->message, sizeof(res->message), "the baseline %s has no %s to compare with",
			 r->baseline_label ? r->baseline_label : "", g->metric);
		return;
	}
	double bv = r->baseline->runs[bb].tuned[bm].v;
	bool maximize = report_metric_maximize(r, g->metric);
	double regression = maximize ? bv - v : v - bv;
	res->value = regression;
	bool ok = isfinite(regression) &&
		  (!g->has_max_regression || regression <= g->max_regression) &&
		  (!g->has_min_delta || -regression >= g->min_delta);
	res->outcome = ok ? GATE_PASS : GATE_FAIL;
	char lim[96] = "";
	if (g->has_max_regression)
		snprintf(lim, sizeof(lim), "; regression %+.6g %s max_regression %g", regression,
			 regression <= g->max_regression ? "<=" : ">", g->max_regression);
	if (g->has_min_delta && (!g->has_max_regression || regression <= g->max_regression))
		snprintf(lim, sizeof(lim), "; improvement %+.6g %s min_delta %g", -regression,
			 -regression >= g->min_delta ? ">=" : "<", g->min_delta);
	snprintf(res->message, sizeof(res->message), "%s = %.6g (run %s) vs baseline %.6g "
		 "(run %s, %s is better)%s", g->metric, v, run->id, bv, r->baseline->runs[bb].id,
		 maximize ? "higher" : "lower", lim);
}

int gates_evaluate(struct gate_result **out, const struct config_gate *gates, size_t n,
		   const struct report *r, struct diag *d)
{
	*out = calloc(n ? n : 1, sizeof(**out));
	if (!*out)
		return diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory evaluating gates");
	for (size_t i = 0; i < n; i++)
		eval_one(&(*out)[i], &gates[i], r);
	return 0;
}

void gates_count(const struct gate_result *res, size_t n, size_t *n_fail, size_t *n_error)
{
	*n_fail = *n_error = 0;
	for (size_t i = 0; i < n; i++) {
		*n_fail += res[i].outcome == GATE_FAIL;
		*n_error += res[i].outcome == GATE_ERROR;
	}
}

/* Length of the valid UTF-8 sequence at s (1-4), or 0 when invalid. */
static size_t utf8_len(const unsigned char *s)
{
	if (s[0] < 0x80)
		return 1;
	size_t n = (s[0] & 0xE0) == 0xC0 ? 2 : (s[0] & 0xF0) == 0xE0 ? 3
		   : (s[0] & 0xF8) == 0xF0 ? 4 : 0;
	if (n == 0 || (n == 2 && s[0] < 0xC2) || (n == 4 && s[0] > 0xF4))
		return 0;
	for (size_t i = 1; i < n; i++)
		if ((s[i] & 0xC0) != 0x80)
			return 0;
	if (n == 3 && s[0] == 0xE0 && s[1] < 0xA0)
		return 0; /* overlong */
	if (n == 3 && s[0] == 0xED && s[1] >= 0xA0)
		return 0; /* surrogates */
	if (n == 4 && s[0] == 0xF0 && s[1] < 0x90)
		return 0;
	if (n == 4 && s[0] == 0xF4 && s[1] >= 0x90)
		return 0;
	if (n == 3 && s[0] == 0xEF && s[1] == 0xBF && (s[2] == 0xBE || s[2] == 0xBF))
		return 0; /* U+FFFE, U+FFFF are not XML characters */
	return n;
}

int xml_escape(struct strbuf *out, const char *text)
{
	const unsigned char *s = (const unsigned char *)(text ? text : "");
	while (*s) {
		int rc = 0;
		size_t n = 1;
		switch (*s) {
		case '&': rc = strbuf_puts(out, "&amp;"); break;
		case '<': rc = strbuf_puts(out, "&lt;"); break;
		case '>': rc = strbuf_puts(out, "&gt;"); break;
		case '"': rc = strbuf_puts(out, "&quot;"); break;
		case '\'': rc = strbuf_puts(out, "&apos;"); break;
		case '\n': rc = strbuf_puts(out, "&#10;"); break;
		case '\t': rc = strbuf_puts(out, "&#9;"); break;
		default:
			if (*s < 0x20 || *s == 0x7f) {
				rc = strbuf_puts(out, "?");
			} else {
				n = utf8_len(s);
				if (n == 0) {
					n = 1;
					rc = strbuf_puts(out, "\xEF\xBF\xBD"); /* U+FFFD */
				} else {
					rc = strbuf_append(out, (const char *)s, n);
				}
			}
		}
		if (rc)
			return FT_ENOMEM;
		s += n;
	}
	return 0;
}

static int write_text(const char *path, struct strbuf *s, int rc, struct diag *d)
{
	if (rc)
		return diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory writing %s", path);
	return file_write_atomic(path, s->buf ? s->buf : "", s->len, d);
}

static bool run_never_ran(const struct report_run *run)
{
	return strcmp(run->status, "queued") == 0;
}

/* A run stopped by early termination did what the sweep asked: not a failure. */
static bool run_failed(const struct report_run *run)
{
	return !report_run_ok(run) && !run_never_ran(run) && strcmp(run->status, "stopped") != 0;
}

#define X(text) (rc = rc ? rc : xml_escape(&s, (text)))
#define P(...) (rc = rc ? rc : strbuf_printf(&s, __VA_ARGS__))

int gates_write_junit(const char *path, const struct report *r, const struct gate_result *res,
		      size_t n, double elapsed_s, struct diag *d)
{
	struct strbuf s = {0};
	int rc = 0;
	size_t n_fail, n_error;
	gates_count(res, n, &n_fail, &n_error);
	size_t runs_failed = 0, runs_skipped = 0;
	for (size_t i = 0; i < r->n_runs; i++) {
		runs_failed += run_failed(&r->runs[i]);
		runs_skipped += run_never_ran(&r->runs[i]);
	}
	char stamp[40];
	time_iso8601(stamp, sizeof(stamp), r->date > 0 ? r->date : time_wall());
	stamp[strlen(stamp) ? strlen(stamp) - 1 : 0] = '\0'; /* xs:dateTime without 'Z' in Ant */
	P("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"ftlab ci ");
	X(r->experiment);
	P("\" tests=\"%zu\" failures=\"%zu\" errors=\"%zu\" time=\"%.3f\">\n", n + r->n_runs,
	  n_fail + runs_failed, n_error, elapsed_s);
	/* gates */
	P("  <testsuite name=\"");
	X(r->experiment);
	P(".gates\" tests=\"%zu\" failures=\"%zu\" errors=\"%zu\" skipped=\"0\" time=\"0\" "
	  "timestamp=\"%s\" hostname=\"", n, n_fail, n_error, stamp);
	X(r->host ? r->host : "localhost");
	P("\">\n    <properties>\n");
	P("      <property name=\"experiment\" value=\"");
	X(r->experiment);
	P("\"/>\n      <property name=\"commit\" value=\"");
	X(r->commit ? r->commit : "");
	P("\"/>\n      <property name=\"dirty\" value=\"%s\"/>\n", r->dirty ? "true" : "false");
	if (r->baseline) {
		P("      <property name=\"baseline\" value=\"");
		X(r->baseline_label ? r->baseline_label : "");
		P("\"/>\n");
	}
	P("    </properties>\n");
	for (size_t i = 0; i < n; i++) {
		P("    <testcase name=\"");
		X(res[i].name);
		P("\" classname=\"ftlab.");
		X(r->experiment);
		P(".gates\" time=\"0\">\n");
		if (res[i].outcome != GATE_PASS) {
			const char *tag = res[i].outcome == GATE_FAIL ? "failure" : "error";
			P("      <%s message=\"", tag);
			X(res[i].message);
			P("\" type=\"%s\">", res[i].outcome == GATE_FAIL ? "GateFailed" : "GateError");
			X(res[i].message);
			P("</%s>\n", tag);
		} else {
			P("      <system-out>");
			X(res[i].message);
			P("</system-out>\n");
		}
		P("    </testcase>\n");
	}
	P("  </testsuite>\n");
	/* runs */
	P("  <testsuite name=\"");
	X(r->experiment);
	P(".runs\" tests=\"%zu\" failures=\"%zu\" errors=\"0\" skipped=\"%zu\" time=\"%.3f\" "
	  "timestamp=\"%s\" hostname=\"", r->n_runs, runs_failed, runs_skipped, elapsed_s, stamp);
	X(r->host ? r->host : "localhost");
	P("\">\n");
	for (size_t i = 0; i < r->n_runs; i++) {
		const struct report_run *run = &r->runs[i];
		struct strbuf label = {0};
		int lrc = strbuf_printf(&label, "run %s", run->id);
		for (size_t p = 0; p < r->n_params && !lrc; p++)
			if (run->param_values[p][0])
				lrc = strbuf_printf(&label, " %s=%s", r->params[p], run->param_values[p]);
		if (lrc)
			rc = rc ? rc : FT_ENOMEM;
		double t = run->finished > run->started && run->started > 0
				   ? run->finished - run->started : 0;
		P("    <testcase name=\"");
		X(label.buf ? label.buf : "");
		strbuf_free(&label);
		P("\" classname=\"ftlab.");
		X(r->experiment);
		P(".runs\" time=\"%.3f\">\n", t);
		if (run_failed(run)) {
			P("      <failure message=\"run ");
			X(run->status);
			P("\" type=\"Run");
			X(run->status);
			P("\">");
			X(run->error ? run->error : "(no error recorded)");
			P("</failure>\n");
		} else if (run_never_ran(run)) {
			P("      <skipped message=\"run ");
			X(run->status);
			P("\"/>\n");
		} else {
			P("      <system-out>status ");
			X(run->status);
			for (size_t m = 0; m < r->n_metrics; m++)
				if (run->tuned[m].present) {
					P("; ");
					X(r->metrics[m]);
					P(" = %.6g", run->tuned[m].v);
				}
			P("</system-out>\n");
		}
		P("    </testcase>\n");
	}
	P("  </testsuite>\n</testsuites>\n");
	rc = write_text(path, &s, rc, d);
	strbuf_free(&s);
	return rc;
}

#define M(text, max) (rc = rc ? rc : md_escape(&s, (text), (max)))

int gates_write_markdown(const char *path, const struct report *r,
			 const struct gate_result *res, size_t n, struct diag *d)
{
	struct strbuf s = {0};
	int rc = 0;
	size_t n_fail, n_error, runs_failed = 0;
	gates_count(res, n, &n_fail, &n_error);
	for (size_t i = 0; i < r->n_runs; i++)
		runs_failed += run_failed(&r->runs[i]);
	P("## ftlab ci: ");
	M(r->experiment, 200);
	if (n_fail + n_error == 0)
		P(" — passed\n\n%zu of %zu gates passed", n, n);
	else
		P(" — **failed**\n\n%zu of %zu gates failed%s", n_fail + n_error, n,
		  n_error ? " or could not be evaluated" : "");
	P("; %zu runs, %zu failed", r->n_runs, runs_failed);
	if (r->commit) {
		P("; commit `");
		M(r->commit, 64);
		P("`%s", r->dirty ? " (dirty)" : "");
	}
	if (r->baseline) {
		P("; baseline ");
		M(r->baseline_label ? r->baseline_label : "", 200);
	}
	P(".\n\n");
	if (n > 0) {
		P("| | gate | result |\n|---|---|---|\n");
		for (size_t i = 0; i < n; i++) {
			P("| %s | ", res[i].outcome == GATE_PASS ? "✅ pass"
				     : res[i].outcome == GATE_FAIL ? "❌ fail" : "⚠️ error");
			M(res[i].name, 300);
			P(" | ");
			M(res[i].message, 700);
			P(" |\n");
		}
		P("\n");
	} else {
		P("No gates are declared in the experiment file.\n\n");
	}
	bool maximize = true;
	long m = report_rank_metric(r, &maximize);
	long best = report_best_run(r);
	P("| run | status |");
	if (m >= 0) {
		P(" ");
		M(r->metrics[m], 100);
		P(" |");
	}
	P(" error |\n|---|---|%s---|\n", m >= 0 ? "---|" : "");
	for (size_t i = 0; i < r->n_runs; i++) {
		const struct report_run *run = &r->runs[i];
		P("| ");
		M(run->id, 64);
		P("%s | ", (long)i == best ? " ★" : "");
		M(run->status, 20);
		P(" |");
		if (m >= 0) {
			if (run->tuned[m].present)
				P(" %.4g |", run->tuned[m].v);
			else
				P(" – |");
		}
		P(" ");
		M(run->error ? run->error : "", 300);
		P(" |\n");
	}
	rc = write_text(path, &s, rc, d);
	strbuf_free(&s);
	return rc;
}
