/* report_write: index.html and report.md from a report and its charts (report_write.h).
 * Output is accumulated in a sticky-error buffer (struct out): after the first failed
 * append every later one is a no-op and the error is checked once at the end. */
#include "reports/report_write.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reports/report_bases.h"
#include "reports/report_charts.h"
#include "common/banned.h"

#define MAX_PRED_PER_SPLIT 20
#define MAX_DIFF_COLUMNS 12
#define MD_CELL_MAX 240
#define SVG_MAX_BYTES (16u << 20)

struct out {
	struct strbuf s;
	int rc;
};

static void o_puts(struct out *o, const char *text)
{
	if (!o->rc && strbuf_puts(&o->s, text))
		o->rc = FT_ENOMEM;
}

FT_PRINTF(2, 3) static void o_printf(struct out *o, const char *fmt, ...)
{
	if (o->rc)
		return;
	va_list ap;
	va_start(ap, fmt);
	char small[512];
	int n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0) {
		o->rc = FT_EINTERNAL;
		return;
	}
	if ((size_t)n < sizeof(small)) {
		o_puts(o, small);
		return;
	}
	char *big = malloc((size_t)n + 1);
	if (!big) {
		o->rc = FT_ENOMEM;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	o_puts(o, big);
	free(big);
}

int html_escape(struct strbuf *out, const char *text)
{
	for (const char *p = text ? text : ""; *p; p++) {
		unsigned char c = (unsigned char)*p;
		const char *rep = NULL;
		switch (c) {
		case '&': rep = "&amp;"; break;
		case '<': rep = "&lt;"; break;
		case '>': rep = "&gt;"; break;
		case '"': rep = "&quot;"; break;
		case '\'': rep = "&#39;"; break;
		default: break;
		}
		int rc = 0;
		if (rep)
			rc = strbuf_puts(out, rep);
		else if (c >= 0x20 || c == '\n' || c == '\t')
			rc = c == 0x7f ? 0 : strbuf_append(out, p, 1);
		if (rc)
			return FT_ENOMEM;
	}
	return 0;
}

int md_escape(struct strbuf *out, const char *text, size_t max_bytes)
{
	const char *s = text ? text : "";
	size_t n = strlen(s);
	bool cut = false;
	if (max_bytes && n > max_bytes) {
		n = max_bytes;
		while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
			n--;
		cut = true;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		int rc = 0;
		if (c == '&')
			rc = strbuf_puts(out, "&amp;");
		else if (c == '<')
			rc = strbuf_puts(out, "&lt;");
		else if (c == '>')
			rc = strbuf_puts(out, "&gt;");
		else if (c == '\n')
			rc = strbuf_puts(out, "<br>");
		else if (c < 0x20 || c == 0x7f)
			rc = strbuf_puts(out, " ");
		else if (strchr("\\`*_[]#|~@", (int)c))
			rc = strbuf_printf(out, "\\%c", c);
		else
			rc = strbuf_append(out, &s[i], 1);
		if (rc)
			return FT_ENOMEM;
	}
	if (cut && strbuf_puts(out, "…"))
		return FT_ENOMEM;
	return 0;
}

static void o_html(struct out *o, const char *text)
{
	if (!o->rc && html_escape(&o->s, text))
		o->rc = FT_ENOMEM;
}

static void o_md(struct out *o, const char *text, size_t max)
{
	if (!o->rc && md_escape(&o->s, text, max))
		o->rc = FT_ENOMEM;
}

static void fmt_value(char *buf, size_t n, const struct report_value *v, bool ci)
{
	if (!v || !v->present) {
		snprintf(buf, n, "–");
		return;
	}
	char a[32], b[32], c[32];
	report_fmt_num(a, sizeof(a), v->v);
	if (ci && v->has_ci) {
		report_fmt_num(b, sizeof(b), v->lo);
		report_fmt_num(c, sizeof(c), v->hi);
		struct strbuf t = {0};
		if (strbuf_printf(&t, "%s [%s, %s]", a, b, c) == 0)
			snprintf(buf, n, "%s", t.buf);
		strbuf_free(&t);
	} else {
		snprintf(buf, n, "%s", a);
	}
}

/* The baseline's best run, or NULL. */
static const struct report_run *baseline_best(const struct report *r)
{
	if (!r->baseline)
		return NULL;
	long b = report_best_run(r->baseline);
	return b >= 0 ? &r->baseline->runs[b] : NULL;
}

static const struct report_value *bl_value(const struct report *r, const char *metric,
					   enum report_model model)
{
	const struct report_run *run = baseline_best(r);
	if (!run)
		return NULL;
	for (size_t i = 0; i < r->baseline->n_metrics; i++)
		if (strcmp(r->baseline->metrics[i], metric) == 0) {
			const struct report_value *v = model == REPORT_BASE ? &run->base[i]
						       : model == REPORT_TUNED ? &run->tuned[i]
									       : &run->delta[i];
			return v->present ? v : NULL;
		}
	return NULL;
}

static const char *bl_label(const struct report *r)
{
	return r->baseline_label ? r->baseline_label : "baseline";
}

static bool ci_excludes_zero(const struct report_value *v)
{
	return v && v->present && v->has_ci && (v->lo > 0 || v->hi < 0);
}

/* ---- pieces shared by both formats ---- */

static void date_text(char *buf, size_t n, double t)
{
	if (t > 0)
		time_iso8601(buf, n, t);
	else
		snprintf(buf, n, "unknown");
}

static size_t n_failed(const struct report *r)
{
	size_t k = 0;
	for (size_t i = 0; i < r->n_runs; i++)
		k += report_run_failed(&r->runs[i]);
	return k;
}

/* "Early termination stopped 3 of 9 runs and saved 420 of 900 training steps (47%)." */
static void stopped_sentence(char *buf, size_t n, const struct report *r)
{
	size_t k;
	int64_t saved, planned;
	report_stopped_steps(r, &k, &saved, &planned);
	int off = snprintf(buf, n, "Early termination stopped %zu of %zu run%s", k, r->n_runs,
			   r->n_runs == 1 ? "" : "s");
	if (off > 0 && (size_t)off < n && planned > 0)
		snprintf(buf + off, n - (size_t)off, " and saved %lld of %lld training steps (%.0f%%).",
			 (long long)saved, (long long)planned, 100.0 * (double)saved / (double)planned);
	else if (off > 0 && (size_t)off < n)
		snprintf(buf + off, n - (size_t)off, ".");
}

/* Configs for the diff: the best run first, then the others in order, then the baseline. */
static size_t diff_columns(const struct report *r, long best, const struct report_run **cols,
			   size_t cap)
{
	size_t n = 0;
	if (best >= 0 && r->runs[best].config_json)
		cols[n++] = &r->runs[best];
	for (size_t i = 0; i < r->n_runs && n + 1 < cap; i++)
		if ((long)i != best && r->runs[i].config_json)
			cols[n++] = &r->runs[i];
	const struct report_run *b = baseline_best(r);
	if (b && b->config_json && n < cap)
		cols[n++] = b;
	return n;
}

/* ---- HTML ---- */

static const char *CSS =
	"body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;"
	"max-width:1200px;padding:0 1rem;color:#222;line-height:1.4}"
	"h1{margin-bottom:.2rem}h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;"
	"margin-top:2rem}table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}"
	"th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top}"
	"th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}"
	"tr.best td{background:#eaf6ea;font-weight:600}tr.baseline td{background:#fdeeee}"
	".badge{display:inline-block;padding:0 .4rem;border-radius:.3rem;font-size:.8rem;"
	"background:#eee}.dirty{background:#fde2b6}.clean{background:#d5f0d5}"
	".st-failed,.st-crashed,.st-killed{color:#b00020;font-weight:600}"
	"dl.prov{display:grid;grid-template-columns:max-content auto;gap:.1rem 1rem}"
	"dl.prov dt{font-weight:600}dl.prov dd{margin:0}"
	"figure{margin:1rem 0}figure svg{max-width:100%;height:auto;border:1px solid #eee}"
	"figcaption{font-size:.85rem;color:#555}"
	".text{white-space:pre-wrap;max-width:28rem;font-family:ui-monospace,monospace;"
	"font-size:.8rem}.sig{color:#0a7d2c}.nosig{color:#777}"
	"pre.err{white-space:pre-wrap;background:#fff4f4;padding:.4rem;margin:0}";

/* Inlines charts/NAME.svg with element ids prefixed so several charts can share a page. */
static int html_svg(struct out *o, const char *dir, const struct report_chart *ch,
		    size_t chart_no, struct diag *d)
{
	char rel[160];
	snprintf(rel, sizeof(rel), "charts/%s.svg", ch->name);
	char *path = path_join(dir, rel), *svg = NULL;
	size_t len = 0;
	if (!path)
		return diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
	int rc = file_read_all(&svg, &len, path, SVG_MAX_BYTES, d);
	free(path);
	if (rc)
		return rc;
	const char *p = strstr(svg, "<svg");
	if (!p) {
		free(svg);
		return diag_set(d, FT_EIO, NULL, 0, 0, "gnuplot wrote no SVG into %s", rel);
	}
	char prefix[32];
	snprintf(prefix, sizeof(prefix), "c%zu_", chart_no);
	static const char *const pats[] = {"id='", "id=\"", "href='#", "href=\"#", "url(#"};
	while (*p && !o->rc) {
		size_t best_k = FT_ARRAY_LEN(pats);
		const char *best_at = NULL;
		for (size_t k = 0; k < FT_ARRAY_LEN(pats); k++) {
			const char *at = strstr(p, pats[k]);
			if (at && (!best_at || at < best_at)) {
				best_at = at;
				best_k = k;
			}
		}
		if (!best_at) {
			o_puts(o, p);
			break;
		}
		size_t pl = strlen(pats[best_k]);
		if (strbuf_append(&o->s, p, (size_t)(best_at - p) + pl) ||
		    strbuf_puts(&o->s, prefix))
			o->rc = FT_ENOMEM;
		p = best_at + pl;
	}
	free(svg);
	return 0;
}

static void html_figure(struct out *o, const char *dir, const struct report_charts *charts,
			size_t i, struct diag *d)
{
	if (o->rc)
		return;
	o_printf(o, "<figure id=\"fig-%s\">\n", charts->items[i].name);
	int rc = html_svg(o, dir, &charts->items[i], i, d);
	if (rc && !o->rc)
		o->rc = rc;
	o_puts(o, "\n<figcaption>");
	o_html(o, charts->items[i].caption);
	o_puts(o, "</figcaption></figure>\n");
}

static void html_run_cells(struct out *o, const struct report *r, const struct report_run *run,
			   const struct report *owner)
{
	/* parameters are looked up by key so a baseline run lines up with this report */
	for (size_t p = 0; p < r->n_params; p++) {
		const char *v = "";
		for (size_t q = 0; q < owner->n_params; q++)
			if (strcmp(owner->params[q], r->params[p]) == 0)
				v = run->param_values[q];
		o_puts(o, "<td>");
		o_html(o, v);
		o_puts(o, "</td>");
	}
	for (size_t m = 0; m < r->n_metrics; m++) {
		const struct report_value *v = NULL;
		for (size_t q = 0; q < owner->n_metrics; q++)
			if (strcmp(owner->metrics[q], r->metrics[m]) == 0 && run->tuned[q].present)
				v = &run->tuned[q];
		char buf[64];
		fmt_value(buf, sizeof(buf), v, false);
		o_printf(o, "<td class=\"num\">%s</td>", buf);
	}
}

static void html_header(struct out *o, const struct report *r)
{
	char date[40];
	date_text(date, sizeof(date), r->date);
	o_puts(o, "<h1>");
	o_html(o, r->experiment);
	o_puts(o, "</h1>\n");
	if (r->description) {
		o_puts(o, "<p class=\"desc\">");
		o_html(o, r->description);
		o_puts(o, "</p>\n");
	}
	o_puts(o, "<dl class=\"prov\" id=\"provenance\">\n");
	if (r->source_path) {
		o_puts(o, "<dt>Experiment file</dt><dd>");
		o_html(o, r->source_path);
		o_puts(o, "</dd>\n");
	}
	o_puts(o, "<dt>Commit</dt><dd>");
	if (r->is_repo && r->commit) {
		o_puts(o, "<code>");
		o_html(o, r->commit);
		o_puts(o, "</code>");
		if (r->branch) {
			o_puts(o, " on ");
			o_html(o, r->branch);
		}
		o_printf(o, " <span class=\"badge %s\">%s</span>", r->dirty ? "dirty" : "clean",
			 r->dirty ? "dirty: uncommitted changes (diff.patch kept)" : "clean");
	} else {
		o_puts(o, "not a git repository");
	}
	o_puts(o, "</dd>\n");
	if (r->remote) {
		o_puts(o, "<dt>Remote</dt><dd>");
		o_html(o, r->remote);
		o_puts(o, "</dd>\n");
	}
	o_puts(o, "<dt>Host</dt><dd>");
	o_html(o, r->host ? r->host : "unknown");
	o_printf(o, "</dd>\n<dt>Date</dt><dd>%s</dd>\n", date);
	o_printf(o, "<dt>Runs</dt><dd>%zu (%zu failed)</dd>\n", r->n_runs, n_failed(r));
	if (r->baseline) {
		o_puts(o, "<dt>Baseline</dt><dd>");
		o_html(o, bl_label(r));
		o_puts(o, "</dd>\n");
	}
	o_puts(o, "</dl>\n");
}

static void html_summary(struct out *o, const struct report *r, long best)
{
	bool maximize = true;
	long m = report_rank_metric(r, &maximize);
	o_puts(o, "<p id=\"summary\">");
	if (best < 0 || m < 0) {
		o_puts(o, "No run finished with results.</p>\n");
		return;
	}
	const struct report_run *run = &r->runs[best];
	char v[96], dv[96];
	fmt_value(v, sizeof(v), &run->tuned[m], true);
	fmt_value(dv, sizeof(dv), &run->delta[m], true);
	o_puts(o, "Best run <strong>");
	o_html(o, run->id);
	o_puts(o, "</strong> by <code>");
	o_html(o, r->metrics[m]);
	o_printf(o, "</code> (%s): %s", maximize ? "higher is better" : "lower is better", v);
	if (run->delta[m].present) {
		o_printf(o, "; fine-tuned minus base %s", dv);
		if (run->delta[m].has_ci)
			o_puts(o, ci_excludes_zero(&run->delta[m])
					  ? ", <span class=\"sig\">the interval excludes zero</span>"
					  : ", <span class=\"nosig\">the interval includes zero</span>");
		else
			o_puts(o, " (no interval recorded)");
	}
	const struct report_value *b = bl_value(r, r->metrics[m], REPORT_TUNED);
	if (b) {
		char bv[96];
		fmt_value(bv, sizeof(bv), b, true);
		o_puts(o, "; baseline ");
		o_html(o, bl_label(r));
		o_printf(o, ": %s", bv);
	}
	o_puts(o, ".</p>\n");
}

static void html_runs(struct out *o, const struct report *r, long best)
{
	o_puts(o, "<h2 id=\"runs\">Runs</h2>\n<table class=\"runs\"><thead><tr><th></th>"
		  "<th>run</th><th>status</th>");
	for (size_t p = 0; p < r->n_params; p++) {
		o_puts(o, "<th>");
		o_html(o, r->params[p]);
		o_puts(o, "</th>");
	}
	for (size_t m = 0; m < r->n_metrics; m++) {
		o_puts(o, "<th>");
		o_html(o, r->metrics[m]);
		o_puts(o, "</th>");
	}
	o_puts(o, "</tr></thead><tbody>\n");
	for (size_t i = 0; i < r->n_runs; i++) {
		const struct report_run *run = &r->runs[i];
		bool is_best = (long)i == best;
		o_printf(o, "<tr%s><td>%s</td><td><code>", is_best ? " class=\"best\"" : "",
			 is_best ? "★ best" : "");
		o_html(o, run->id);
		o_puts(o, "</code></td><td class=\"st-");
		o_html(o, run->status);
		o_puts(o, "\">");
		o_html(o, run->status);
		o_puts(o, "</td>");
		html_run_cells(o, r, run, r);
		o_puts(o, "</tr>\n");
	}
	const struct report_run *b = baseline_best(r);
	if (b) {
		o_puts(o, "<tr class=\"baseline\"><td>baseline</td><td><code>");
		o_html(o, b->id);
		o_puts(o, "</code> ");
		o_html(o, bl_label(r));
		o_puts(o, "</td><td>");
		o_html(o, b->status);
		o_puts(o, "</td>");
		html_run_cells(o, r, b, r->baseline);
		o_puts(o, "</tr>\n");
	}
	o_puts(o, "</tbody></table>\n<p>Metric columns are the fine-tuned model's values; ★ marks "
		  "the best run.</p>\n");
}

static void html_results(struct out *o, const struct report *r, long best,
			 const char *dir, const struct report_charts *charts, struct diag *d)
{
	o_puts(o, "<h2 id=\"base-vs-tuned\">Base vs fine-tuned</h2>\n");
	if (best < 0) {
		o_puts(o, "<p>No finished run has results.</p>\n");
		return;
	}
	const struct report_run *run = &r->runs[best];
	o_puts(o, "<p>Best run <code>");
	o_html(o, run->id);
	o_puts(o, "</code>. Intervals are bootstrap confidence intervals; the difference is "
		  "paired (the same examples scored by both models).</p>\n");
	o_puts(o, "<table class=\"results\"><thead><tr><th>metric</th><th>base</th>"
		  "<th>fine-tuned</th><th>difference</th>");
	if (r->baseline) {
		o_puts(o, "<th>baseline: ");
		o_html(o, bl_label(r));
		o_puts(o, "</th><th>fine-tuned − baseline</th>");
	}
	o_puts(o, "</tr></thead><tbody>\n");
	for (size_t m = 0; m < r->n_metrics; m++) {
		if (!run->base[m].present && !run->tuned[m].present && !run->delta[m].present)
			continue;
		char a[96], b[96], c[96];
		fmt_value(a, sizeof(a), &run->base[m], true);
		fmt_value(b, sizeof(b), &run->tuned[m], true);
		fmt_value(c, sizeof(c), &run->delta[m], true);
		o_puts(o, "<tr><td>");
		o_html(o, r->metrics[m]);
		o_printf(o, "</td><td class=\"num\">%s</td><td class=\"num\">%s</td>"
			 "<td class=\"num %s\">%s</td>", a, b,
			 ci_excludes_zero(&run->delta[m]) ? "sig" : "nosig", c);
		if (r->baseline) {
			const struct report_value *bv = bl_value(r, r->metrics[m], REPORT_TUNED);
			char e[96], f[64] = "–";
			fmt_value(e, sizeof(e), bv, true);
			if (bv && run->tuned[m].present) {
				char t[32];
				report_fmt_num(t, sizeof(t), run->tuned[m].v - bv->v);
				snprintf(f, sizeof(f), "%s%s", run->tuned[m].v - bv->v >= 0 ? "+" : "", t);
			}
			o_printf(o, "<td class=\"num\">%s</td><td class=\"num\">%s</td>", e, f);
		}
		o_puts(o, "</tr>\n");
	}
	o_puts(o, "</tbody></table>\n");
	for (size_t i = 0; i < charts->n; i++)
		if (charts->items[i].kind == CHART_RESULTS || charts->items[i].kind == CHART_DELTA)
			html_figure(o, dir, charts, i, d);
}

static void md_image(struct out *o, const struct report_chart *ch);

/* ---- base models side by side (both formats) ---- */

/* Cost cells: seconds with one decimal, GiB with two, "–" when not recorded. */
static void cost_cell(char *buf, size_t n, double v, enum report_cost c)
{
	if (!isfinite(v))
		snprintf(buf, n, "–");
	else if (c == COST_PEAK_RSS || c == COST_TRAIN_PEAK)
		snprintf(buf, n, "%.2f", v / 1073741824.0);
	else
		snprintf(buf, n, "%.1f", v);
}

static const struct {
	enum report_cost c;
	const char *head;
} COST_COLS[] = {
	{COST_TRAIN_S, "training (s)"},      {COST_TRAIN_CPU_S, "training CPU (s)"},
	{COST_TOKENS_S, "tokens/s"},         {COST_TRAIN_PEAK, "peak memory, training (GiB)"},
	{COST_PEAK_RSS, "peak memory, run (GiB)"},
	{COST_BASE_EVAL_S, "base eval (s)"}, {COST_TUNED_EVAL_S, "tuned eval (s)"},
};

static void gates_cell(char *buf, size_t n, const struct report_base *e)
{
	if (e->gates_judged == 0)
		snprintf(buf, n, "–");
	else
		snprintf(buf, n, "%zu of %zu", e->gates_passed, e->gates_judged);
}

/* The metrics shown per base: the rank metric first, then the others. */
static size_t base_metrics(const struct report *r, long rank, size_t *ms, size_t cap)
{
	size_t n = 0;
	if (rank >= 0)
		ms[n++] = (size_t)rank;
	for (size_t i = 0; i < r->n_metrics && n < cap; i++)
		if ((long)i != rank)
			ms[n++] = i;
	return n;
}

/* The three cells of base e's run for metric m. */
static void base_cells(char a[96], char b[96], char c[96], const struct report_run *run,
		       size_t m)
{
	fmt_value(a, 96, run ? &run->base[m] : NULL, true);
	fmt_value(b, 96, run ? &run->tuned[m] : NULL, true);
	fmt_value(c, 96, run ? &run->delta[m] : NULL, true);
}

/* true for the charts of group b (file stems "<id>" and "<id>_cost") */
static bool group_chart(const struct report_chart *c, const struct report_bases *b)
{
	size_t n = strlen(b->kind->id);
	return (c->kind == CHART_BASES || c->kind == CHART_COST) &&
	       strncmp(c->name, b->kind->id, n) == 0 && (c->name[n] == 0 || c->name[n] == '_');
}

static bool is_bases(const struct report_bases *b)
{
	return b->kind == &REPORT_GROUP_BASES;
}

static void html_bases(struct out *o, const struct report *r, const struct report_bases *b,
		       const char *dir, const struct report_charts *charts, struct diag *d)
{
	const char *id = b->kind->id, *noun = b->kind->noun;
	o_printf(o, "<h2 id=\"%s\">%s</h2>\n<p id=\"%s-pick\">", id, b->kind->title, id);
	char *sentence = report_bases_sentence(b, r);
	if (!sentence && !o->rc)
		o->rc = FT_ENOMEM;
	if (sentence)
		o_html(o, sentence);
	free(sentence);
	if (is_bases(b))
		o_puts(o, "</p>\n<p>Each base model's best run by the ranking metric (★: the "
			  "pick). <em>Untuned</em> is that base evaluated before fine-tuning on the "
			  "same examples; the difference is paired: fine-tuned minus its own base. "
			  "Intervals are bootstrap confidence intervals. Token-level metrics (loss, "
			  "perplexity, token accuracy) count each base's own tokens: compare them "
			  "within a base; text metrics (exact match, F1, ...) compare across "
			  "bases.</p>\n");
	else
		o_printf(o, "</p>\n<p>Each %s's best run by the ranking metric (★: the pick). "
			 "<em>Untuned</em> is the run's base model evaluated before fine-tuning on "
			 "the same examples; the difference is paired: fine-tuned minus untuned. "
			 "Intervals are bootstrap confidence intervals.</p>\n", noun);
	o_printf(o, "<table class=\"results\" id=\"%s-table\"><thead><tr><th>metric</th>"
		 "<th>%s</th><th>run</th><th>untuned</th><th>fine-tuned</th><th>difference</th>"
		 "</tr></thead><tbody>\n", id, noun);
	size_t ms[256];
	size_t nm = base_metrics(r, b->metric, ms, FT_ARRAY_LEN(ms));
	for (size_t k = 0; k < nm; k++)
		for (size_t q = 0; q < b->n; q++) {
			const struct report_base *e = &b->items[q];
			const struct report_run *run = e->run >= 0 ? &r->runs[e->run] : NULL;
			char a[96], bb[96], c[96];
			base_cells(a, bb, c, run, ms[k]);
			o_printf(o, "<tr%s><td>", (long)q == b->pick && (long)ms[k] == b->metric
							 ? " class=\"best\"" : "");
			o_html(o, r->metrics[ms[k]]);
			o_puts(o, "</td><td title=\"");
			o_html(o, e->name);
			o_puts(o, "\">");
			o_html(o, report_base_short(e->name));
			o_puts(o, (long)q == b->pick ? " ★" : "");
			o_puts(o, "</td><td><code>");
			o_html(o, run ? run->id : "–");
			o_printf(o, "</code></td><td class=\"num\">%s</td><td class=\"num\">%s</td>"
				 "<td class=\"num %s\">%s</td></tr>\n", a, bb,
				 run && ci_excludes_zero(&run->delta[ms[k]]) ? "sig" : "nosig", c);
		}
	o_printf(o, "</tbody></table>\n<table class=\"results\" id=\"%s-cost\"><thead><tr>"
		 "<th>%s</th><th>run</th><th>runs</th>", id, noun);
	for (size_t c = 0; c < FT_ARRAY_LEN(COST_COLS); c++)
		o_printf(o, "<th>%s</th>", COST_COLS[c].head);
	o_puts(o, "<th>gates passed</th></tr></thead><tbody>\n");
	for (size_t q = 0; q < b->n; q++) {
		const struct report_base *e = &b->items[q];
		o_puts(o, "<tr><td title=\"");
		o_html(o, e->name);
		o_puts(o, "\">");
		o_html(o, report_base_short(e->name));
		o_puts(o, "</td><td><code>");
		o_html(o, e->run >= 0 ? r->runs[e->run].id : "–");
		o_printf(o, "</code></td><td class=\"num\">%zu</td>", e->n_runs);
		for (size_t c = 0; c < FT_ARRAY_LEN(COST_COLS); c++) {
			char buf[48];
			cost_cell(buf, sizeof buf, e->cost[COST_COLS[c].c], COST_COLS[c].c);
			o_printf(o, "<td class=\"num\">%s</td>", buf);
		}
		char g[48];
		gates_cell(g, sizeof g, e);
		o_printf(o, "<td class=\"num\">%s</td></tr>\n", g);
	}
	o_printf(o, "</tbody></table>\n<p>The cost of each %s's best run as the store "
		 "recorded it (its <code>cost</code> metrics): wall and CPU seconds of training, "
		 "training tokens per second, the run's peak resident memory, and the time spent "
		 "evaluating the base and the tuned model. Wall times depend on the machine's "
		 "load.</p>\n", noun);
	for (size_t i = 0; i < charts->n; i++)
		if (group_chart(&charts->items[i], b))
			html_figure(o, dir, charts, i, d);
}

static void md_bases(struct out *o, const struct report *r, const struct report_bases *b,
		     const struct report_charts *charts)
{
	const char *noun = b->kind->noun;
	o_printf(o, "## %s\n\n", b->kind->title);
	char *sentence = report_bases_sentence(b, r);
	if (!sentence && !o->rc)
		o->rc = FT_ENOMEM;
	if (sentence)
		o_md(o, sentence, 0);
	free(sentence);
	o_printf(o, "\n\n| metric | %s | run | untuned | fine-tuned | difference |\n"
		 "|---|---|---|---|---|---|\n", noun);
	size_t ms[256];
	size_t nm = base_metrics(r, b->metric, ms, FT_ARRAY_LEN(ms));
	for (size_t k = 0; k < nm; k++)
		for (size_t q = 0; q < b->n; q++) {
			const struct report_base *e = &b->items[q];
			const struct report_run *run = e->run >= 0 ? &r->runs[e->run] : NULL;
			char a[96], bb[96], c[96];
			base_cells(a, bb, c, run, ms[k]);
			bool sig = run && ci_excludes_zero(&run->delta[ms[k]]);
			o_puts(o, "| ");
			o_md(o, r->metrics[ms[k]], 80);
			o_puts(o, " | ");
			o_md(o, report_base_short(e->name), 120);
			o_puts(o, (long)q == b->pick ? " ★ | " : " | ");
			o_md(o, run ? run->id : "–", 64);
			o_printf(o, " | %s | %s | %s%s%s |\n", a, bb, sig ? "**" : "", c,
				 sig ? "**" : "");
		}
	if (is_bases(b))
		o_puts(o, "\nUntuned: each base before fine-tuning, on the same examples; the "
			  "difference is paired with its own base (**bold**: the interval excludes "
			  "zero). Token-level metrics (loss, perplexity, token accuracy) count each "
			  "base's own tokens: compare them within a base.\n\n");
	else
		o_puts(o, "\nUntuned: the base model before fine-tuning, on the same examples; the "
			  "difference is paired (**bold**: the interval excludes zero).\n\n");
	o_printf(o, "| %s | run | runs |", noun);
	for (size_t c = 0; c < FT_ARRAY_LEN(COST_COLS); c++)
		o_printf(o, " %s |", COST_COLS[c].head);
	o_puts(o, " gates passed |\n|---|---|---|");
	for (size_t c = 0; c <= FT_ARRAY_LEN(COST_COLS); c++)
		o_puts(o, "---|");
	o_puts(o, "\n");
	for (size_t q = 0; q < b->n; q++) {
		const struct report_base *e = &b->items[q];
		o_puts(o, "| ");
		o_md(o, report_base_short(e->name), 120);
		o_puts(o, " | ");
		o_md(o, e->run >= 0 ? r->runs[e->run].id : "–", 64);
		o_printf(o, " | %zu |", e->n_runs);
		for (size_t c = 0; c < FT_ARRAY_LEN(COST_COLS); c++) {
			char buf[48];
			cost_cell(buf, sizeof buf, e->cost[COST_COLS[c].c], COST_COLS[c].c);
			o_printf(o, " %s |", buf);
		}
		char g[48];
		gates_cell(g, sizeof g, e);
		o_printf(o, " %s |\n", g);
	}
	o_puts(o, "\n");
	for (size_t i = 0; i < charts->n; i++)
		if (group_chart(&charts->items[i], b))
			md_image(o, &charts->items[i]);
}

static void html_predictions(struct out *o, const struct report *r, long best)
{
	o_puts(o, "<h2 id=\"predictions\">Sample predictions</h2>\n");
	if (best < 0 || r->runs[best].n_preds == 0) {
		o_puts(o, "<p>No predictions were recorded.</p>\n");
		return;
	}
	const struct report_run *run = &r->runs[best];
	const struct report_run *b = baseline_best(r);
	o_puts(o, "<p>From the best run <code>");
	o_html(o, run->id);
	o_printf(o, "</code>, at most %d per split.</p>\n", MAX_PRED_PER_SPLIT);
	o_puts(o, "<table class=\"preds\"><thead><tr><th>split</th><th>#</th><th>prompt</th>"
		  "<th>reference</th><th>base output</th><th>fine-tuned output</th>");
	if (b) {
		o_puts(o, "<th>baseline output</th>");
	}
	o_puts(o, "</tr></thead><tbody>\n");
	for (size_t i = 0; i < run->n_preds; i++) {
		const struct report_prediction *p = &run->preds[i];
		size_t k = 0;
		for (size_t j = 0; j < i; j++)
			k += strcmp(run->preds[j].split, p->split) == 0;
		if (k >= MAX_PRED_PER_SPLIT)
			continue;
		o_puts(o, "<tr><td>");
		o_html(o, p->split);
		o_printf(o, "</td><td class=\"num\">%lld</td>", (long long)p->example);
		const char *cells[4] = {p->prompt, p->reference, p->base_output, p->tuned_output};
		const struct report_value *scores[4] = {NULL, NULL, &p->base_score, &p->tuned_score};
		for (int c = 0; c < 4; c++) {
			o_puts(o, "<td><div class=\"text\">");
			o_html(o, cells[c] ? cells[c] : "–");
			o_puts(o, "</div>");
			if (scores[c] && scores[c]->present) {
				char s[32];
				report_fmt_num(s, sizeof(s), scores[c]->v);
				o_printf(o, "<small>score %s</small>", s);
			}
			o_puts(o, "</td>");
		}
		if (b) {
			const char *bo = NULL;
			for (size_t j = 0; j < b->n_preds; j++)
				if (b->preds[j].example == p->example &&
				    strcmp(b->preds[j].split, p->split) == 0)
					bo = b->preds[j].tuned_output;
			o_puts(o, "<td><div class=\"text\">");
			o_html(o, bo ? bo : "–");
			o_puts(o, "</div></td>");
		}
		o_puts(o, "</tr>\n");
	}
	o_puts(o, "</tbody></table>\n");
}

static void html_config_diff(struct out *o, const struct report *r, long best, struct diag *d)
{
	o_puts(o, "<h2 id=\"config-diff\">Config differences</h2>\n");
	const struct report_run *cols[MAX_DIFF_COLUMNS];
	size_t n = diff_columns(r, best, cols, MAX_DIFF_COLUMNS);
	const char *texts[MAX_DIFF_COLUMNS];
	for (size_t i = 0; i < n; i++)
		texts[i] = cols[i]->config_json;
	struct report_diff diff;
	if (n < 2) {
		o_puts(o, "<p>Fewer than two runs have a recorded config.</p>\n");
		return;
	}
	int rc = report_config_diff(&diff, texts, n, d);
	if (rc) {
		o->rc = o->rc ? o->rc : rc;
		return;
	}
	if (diff.n_keys == 0) {
		o_puts(o, "<p>All runs share the same resolved config.</p>\n");
	} else {
		o_puts(o, "<p>Resolved-config keys whose values differ between runs");
		if (r->n_runs + (r->baseline != NULL) > n)
			o_printf(o, " (the best run and the first %zu others)", n - 1);
		o_puts(o, ".</p>\n<table class=\"diff\"><thead><tr><th>key</th>");
		for (size_t i = 0; i < n; i++) {
			bool is_bl = r->baseline && cols[i] == baseline_best(r);
			o_puts(o, "<th><code>");
			o_html(o, cols[i]->id);
			o_printf(o, "</code>%s</th>", is_bl ? " (baseline)"
						       : cols[i] == &r->runs[best] ? " ★" : "");
		}
		o_puts(o, "</tr></thead><tbody>\n");
		for (size_t k = 0; k < diff.n_keys; k++) {
			o_puts(o, "<tr><td><code>");
			o_html(o, diff.keys[k]);
			o_puts(o, "</code></td>");
			for (size_t i = 0; i < n; i++) {
				o_puts(o, "<td>");
				o_html(o, diff.values[k * n + i]);
				o_puts(o, "</td>");
			}
			o_puts(o, "</tr>\n");
		}
		o_puts(o, "</tbody></table>\n");
	}
	report_diff_free(&diff);
}

static void html_stopped(struct out *o, const struct report *r)
{
	size_t k;
	int64_t saved, planned;
	report_stopped_steps(r, &k, &saved, &planned);
	if (k == 0)
		return;
	char sentence[256];
	stopped_sentence(sentence, sizeof sentence, r);
	o_puts(o, "<h2 id=\"stopped\">Stopped early</h2>\n<p>");
	o_html(o, sentence);
	o_puts(o, "</p>\n<table class=\"stopped\"><thead><tr><th>run</th><th>parameters</th>"
		  "<th>step</th><th>why</th></tr></thead><tbody>\n");
	for (size_t i = 0; i < r->n_runs; i++) {
		const struct report_run *run = &r->runs[i];
		if (strcmp(run->status, "stopped") != 0)
			continue;
		o_puts(o, "<tr><td><code>");
		o_html(o, run->id);
		o_puts(o, "</code></td><td>");
		for (size_t p = 0; p < r->n_params; p++)
			if (run->param_values[p][0]) {
				o_html(o, r->params[p]);
				o_puts(o, "=");
				o_html(o, run->param_values[p]);
				o_puts(o, " ");
			}
		o_printf(o, "</td><td>%lld of %lld</td><td>", (long long)run->step,
			 (long long)run->total_steps);
		o_html(o, run->stopped ? run->stopped : "(no verdict recorded)");
		o_puts(o, "</td></tr>\n");
	}
	o_puts(o, "</tbody></table>\n");
}

static void html_failed(struct out *o, const struct report *r)
{
	o_puts(o, "<h2 id=\"failed\">Failed runs</h2>\n");
	if (n_failed(r) == 0) {
		o_puts(o, "<p>None.</p>\n");
		return;
	}
	o_puts(o, "<table class=\"failed\"><thead><tr><th>run</th><th>status</th>"
		  "<th>parameters</th><th>error</th></tr></thead><tbody>\n");
	for (size_t i = 0; i < r->n_runs; i++) {
		const struct report_run *run = &r->runs[i];
		if (!report_run_failed(run))
			continue;
		o_puts(o, "<tr><td><code>");
		o_html(o, run->id);
		o_puts(o, "</code></td><td class=\"st-");
		o_html(o, run->status);
		o_puts(o, "\">");
		o_html(o, run->status);
		o_puts(o, "</td><td>");
		for (size_t p = 0; p < r->n_params; p++)
			if (run->param_values[p][0]) {
				o_html(o, r->params[p]);
				o_puts(o, "=");
				o_html(o, run->param_values[p]);
				o_puts(o, " ");
			}
		o_puts(o, "</td><td><pre class=\"err\">");
		o_html(o, run->error ? run->error : "(no error recorded)");
		o_puts(o, "</pre></td></tr>\n");
	}
	o_puts(o, "</tbody></table>\n");
}

static int write_html(const struct report *r, const char *dir,
		      const struct report_charts *charts, const struct report_bases *groups,
		      size_t n_groups, struct diag *d)
{
	struct out o = {0};
	long best = report_best_run(r);
	o_puts(&o, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
		   "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
		   "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
		   "style-src 'unsafe-inline'; img-src data:\">\n<title>");
	o_html(&o, r->experiment);
	o_puts(&o, " — ftlab report</title>\n<style>");
	o_puts(&o, CSS);
	o_puts(&o, "</style></head><body>\n");
	html_header(&o, r);
	html_summary(&o, r, best);
	o_puts(&o, "<nav><a href=\"#runs\">Runs</a> · ");
	for (size_t k = 0; k < n_groups; k++)
		if (groups[k].n >= 2)
			o_printf(&o, "<a href=\"#%s\">%s</a> · ", groups[k].kind->id,
				 groups[k].kind->title);
	o_puts(&o, "<a href=\"#base-vs-tuned\">Base vs "
		   "fine-tuned</a> · <a href=\"#curves\">Loss curves</a> · <a href=\"#params\">"
		   "Metrics vs parameters</a> · <a href=\"#predictions\">Predictions</a> · "
		   "<a href=\"#config-diff\">Config differences</a> · <a href=\"#failed\">Failed "
		   "runs</a></nav>\n");
	html_runs(&o, r, best);
	for (size_t k = 0; k < n_groups; k++)
		if (groups[k].n >= 2)
			html_bases(&o, r, &groups[k], dir, charts, d);
	html_results(&o, r, best, dir, charts, d);
	o_puts(&o, "<h2 id=\"curves\">Loss curves</h2>\n");
	bool any = false;
	for (size_t i = 0; i < charts->n; i++)
		if (charts->items[i].kind == CHART_LOSS) {
			html_figure(&o, dir, charts, i, d);
			any = true;
		}
	if (!any)
		o_puts(&o, "<p>No loss history was recorded.</p>\n");
	o_puts(&o, "<h2 id=\"params\">Metrics vs parameters</h2>\n");
	any = false;
	for (size_t i = 0; i < charts->n; i++)
		if (charts->items[i].kind == CHART_PARAM) {
			html_figure(&o, dir, charts, i, d);
			any = true;
		}
	if (!any)
		o_puts(&o, "<p>No swept parameter takes two or more values in finished runs.</p>\n");
	html_predictions(&o, r, best);
	html_config_diff(&o, r, best, d);
	html_stopped(&o, r);
	html_failed(&o, r);
	o_puts(&o, "<footer><p><small>Made by ftlab " "report; data behind every chart in "
		   "<code>data/</code>, gnuplot scripts in <code>charts/</code>.</small></p>"
		   "</footer>\n</body></html>\n");
	int rc = o.rc;
	if (!rc) {
		char *path = path_join(dir, "index.html");
		rc = path ? file_write_atomic(path, o.s.buf, o.s.len, d) : FT_ENOMEM;
		free(path);
	}
	if (rc && !d->code)
		diag_set(d, rc, NULL, 0, 0, "cannot write index.html (%s)", diag_code_name(rc));
	strbuf_free(&o.s);
	return rc;
}

/* ---- Markdown ---- */

static void md_image(struct out *o, const struct report_chart *ch)
{
	o_puts(o, "![");
	o_md(o, ch->title, 200);
	o_printf(o, "](charts/%s.png)\n\n", ch->name);
	o_md(o, ch->caption, 0);
	o_puts(o, "\n\n");
}

static int write_md(const struct report *r, const char *dir,
		    const struct report_charts *charts, const struct report_bases *groups,
		    size_t n_groups, struct diag *d)
{
	struct out o = {0};
	long best = report_best_run(r);
	bool maximize = true;
	long rank = report_rank_metric(r, &maximize);
	char date[40];
	date_text(date, sizeof(date), r->date);
	o_puts(&o, "# ");
	o_md(&o, r->experiment, 200);
	o_puts(&o, "\n\n");
	if (r->description) {
		o_md(&o, r->description, 0);
		o_puts(&o, "\n\n");
	}
	o_puts(&o, "| | |\n|---|---|\n| commit | ");
	if (r->is_repo && r->commit) {
		o_md(&o, r->commit, 64);
		if (r->branch) {
			o_puts(&o, " on ");
			o_md(&o, r->branch, 100);
		}
		o_puts(&o, r->dirty ? " **(dirty)**" : " (clean)");
	} else {
		o_puts(&o, "not a git repository");
	}
	o_puts(&o, " |\n| host | ");
	o_md(&o, r->host ? r->host : "unknown", 100);
	o_printf(&o, " |\n| date | %s |\n| runs | %zu (%zu failed", date, r->n_runs, n_failed(r));
	{
		size_t ns;
		int64_t sv, pl;
		report_stopped_steps(r, &ns, &sv, &pl);
		if (ns)
			o_printf(&o, ", %zu stopped early", ns);
	}
	o_puts(&o, ") |\n");
	if (r->baseline) {
		o_puts(&o, "| baseline | ");
		o_md(&o, bl_label(r), 200);
		o_puts(&o, " |\n");
	}
	o_puts(&o, "\n");
	if (best >= 0 && rank >= 0) {
		const struct report_run *run = &r->runs[best];
		char v[96], dv[96];
		fmt_value(v, sizeof(v), &run->tuned[rank], true);
		fmt_value(dv, sizeof(dv), &run->delta[rank], true);
		o_puts(&o, "**Best run** `");
		o_md(&o, run->id, 64);
		o_puts(&o, "` by ");
		o_md(&o, r->metrics[rank], 100);
		o_printf(&o, ": %s", v);
		if (run->delta[rank].present)
			o_printf(&o, "; fine-tuned − base %s (%s)", dv,
				 !run->delta[rank].has_ci ? "no interval recorded"
				 : ci_excludes_zero(&run->delta[rank]) ? "interval excludes zero"
								       : "interval includes zero");
		o_puts(&o, ".\n\n");
	}
	/* runs */
	o_puts(&o, "## Runs\n\n| | run | status |");
	for (size_t p = 0; p < r->n_params; p++) {
		o_puts(&o, " ");
		o_md(&o, r->params[p], 80);
		o_puts(&o, " |");
	}
	for (size_t m = 0; m < r->n_metrics; m++) {
		o_puts(&o, " ");
		o_md(&o, r->metrics[m], 80);
		o_puts(&o, " |");
	}
	o_puts(&o, "\n|---|---|---|");
	for (size_t k = 0; k < r->n_params + r->n_metrics; k++)
		o_puts(&o, "---|");
	o_puts(&o, "\n");
	for (size_t i = 0; i < r->n_runs; i++) {
		const struct report_run *run = &r->runs[i];
		o_printf(&o, "| %s | ", (long)i == best ? "★" : "");
		o_md(&o, run->id, 64);
		o_puts(&o, " | ");
		o_md(&o, run->status, 20);
		o_puts(&o, " |");
		for (size_t p = 0; p < r->n_params; p++) {
			o_puts(&o, " ");
			o_md(&o, run->param_values[p], 80);
			o_puts(&o, " |");
		}
		for (size_t m = 0; m < r->n_metrics; m++) {
			char buf[64];
			fmt_value(buf, sizeof(buf), &run->tuned[m], false);
			o_printf(&o, " %s |", buf);
		}
		o_puts(&o, "\n");
	}
	const struct report_run *b = baseline_best(r);
	if (b) {
		o_puts(&o, "| baseline | ");
		o_md(&o, b->id, 64);
		o_puts(&o, " | ");
		o_md(&o, b->status, 20);
		o_puts(&o, " |");
		for (size_t p = 0; p < r->n_params; p++)
			o_puts(&o, " |");
		for (size_t m = 0; m < r->n_metrics; m++) {
			char buf[64];
			fmt_value(buf, sizeof(buf), bl_value(r, r->metrics[m], REPORT_TUNED), false);
			o_printf(&o, " %s |", buf);
		}
		o_puts(&o, "\n");
	}
	o_puts(&o, "\n");
	for (size_t k = 0; k < n_groups; k++)
		if (groups[k].n >= 2)
			md_bases(&o, r, &groups[k], charts);
	o_puts(&o, "## Base vs fine-tuned\n\n");
	if (best >= 0) {
		const struct report_run *run = &r->runs[best];
		o_puts(&o, "| metric | base | fine-tuned | difference |");
		if (r->baseline)
			o_puts(&o, " baseline |");
		o_puts(&o, r->baseline ? "\n|---|---|---|---|---|\n" : "\n|---|---|---|---|\n");
		for (size_t m = 0; m < r->n_metrics; m++) {
			if (!run->base[m].present && !run->tuned[m].present)
				continue;
			char a[96], bb[96], c[96], e[96];
			fmt_value(a, sizeof(a), &run->base[m], true);
			fmt_value(bb, sizeof(bb), &run->tuned[m], true);
			fmt_value(c, sizeof(c), &run->delta[m], true);
			o_puts(&o, "| ");
			o_md(&o, r->metrics[m], 80);
			o_printf(&o, " | %s | %s | %s%s%s |", a, bb,
				 ci_excludes_zero(&run->delta[m]) ? "**" : "", c,
				 ci_excludes_zero(&run->delta[m]) ? "**" : "");
			if (r->baseline) {
				fmt_value(e, sizeof(e), bl_value(r, r->metrics[m], REPORT_TUNED), true);
				o_printf(&o, " %s |", e);
			}
			o_puts(&o, "\n");
		}
		o_puts(&o, "\nIntervals are bootstrap confidence intervals; **bold** differences "
			   "exclude zero.\n\n");
	} else {
		o_puts(&o, "No finished run has results.\n\n");
	}
	for (size_t i = 0; i < charts->n; i++)
		if (charts->items[i].key)
			md_image(&o, &charts->items[i]);
	bool any_param = false;
	for (size_t i = 0; i < charts->n; i++)
		if (charts->items[i].kind == CHART_PARAM && charts->items[i].metric == rank) {
			if (!any_param)
				o_puts(&o, "## Metrics vs parameters\n\n");
			any_param = true;
			md_image(&o, &charts->items[i]);
		}
	if (best >= 0 && r->runs[best].n_preds > 0) {
		const struct report_run *run = &r->runs[best];
		o_puts(&o, "## Sample predictions\n\n| split | # | prompt | reference | base | "
			   "fine-tuned |\n|---|---|---|---|---|---|\n");
		for (size_t i = 0; i < run->n_preds && i < 10; i++) {
			const struct report_prediction *p = &run->preds[i];
			o_puts(&o, "| ");
			o_md(&o, p->split, 40);
			o_printf(&o, " | %lld | ", (long long)p->example);
			const char *cells[4] = {p->prompt, p->reference, p->base_output,
						p->tuned_output};
			for (int c = 0; c < 4; c++) {
				o_md(&o, cells[c] ? cells[c] : "–", MD_CELL_MAX);
				o_puts(&o, " | ");
			}
			o_puts(&o, "\n");
		}
		o_puts(&o, "\n");
	}
	size_t n_stop;
	int64_t saved, planned;
	report_stopped_steps(r, &n_stop, &saved, &planned);
	if (n_stop > 0) {
		char sentence[256];
		stopped_sentence(sentence, sizeof sentence, r);
		o_puts(&o, "## Stopped early\n\n");
		o_md(&o, sentence, 256);
		o_puts(&o, "\n\n| run | step | why |\n|---|---|---|\n");
		for (size_t i = 0; i < r->n_runs; i++) {
			const struct report_run *run = &r->runs[i];
			if (strcmp(run->status, "stopped") != 0)
				continue;
			o_puts(&o, "| ");
			o_md(&o, run->id, 64);
			o_printf(&o, " | %lld of %lld | ", (long long)run->step,
				 (long long)run->total_steps);
			o_md(&o, run->stopped ? run->stopped : "(no verdict recorded)", 300);
			o_puts(&o, " |\n");
		}
		o_puts(&o, "\n");
	}
	if (n_failed(r) > 0) {
		o_puts(&o, "## Failed runs\n\n| run | status | error |\n|---|---|---|\n");
		for (size_t i = 0; i < r->n_runs; i++) {
			const struct report_run *run = &r->runs[i];
			if (!report_run_failed(run))
				continue;
			o_puts(&o, "| ");
			o_md(&o, run->id, 64);
			o_puts(&o, " | ");
			o_md(&o, run->status, 20);
			o_puts(&o, " | ");
			o_md(&o, run->error ? run->error : "(no error recorded)", 400);
			o_puts(&o, " |\n");
		}
		o_puts(&o, "\n");
	}
	o_puts(&o, "Full report with config differences: `index.html`.\n");
	int rc = o.rc;
	if (!rc) {
		char *path = path_join(dir, "report.md");
		rc = path ? file_write_atomic(path, o.s.buf, o.s.len, d) : FT_ENOMEM;
		free(path);
	}
	if (rc && !d->code)
		diag_set(d, rc, NULL, 0, 0, "cannot write report.md (%s)", diag_code_name(rc));
	strbuf_free(&o.s);
	return rc;
}

/* data/runs.tsv: the run table as data. */
static int write_runs_tsv(const struct report *r, const char *dir, struct diag *d)
{
	struct out o = {0};
	o_puts(&o, "run\tstatus");
	for (size_t p = 0; p < r->n_params; p++) {
		o_puts(&o, "\t");
		o_puts(&o, r->params[p]);
	}
	for (size_t m = 0; m < r->n_metrics; m++)
		o_printf(&o, "\tbase.%s\ttuned.%s\tdelta.%s", r->metrics[m], r->metrics[m],
			 r->metrics[m]);
	o_puts(&o, "\n");
	for (size_t i = 0; i < r->n_runs; i++) {
		const struct report_run *run = &r->runs[i];
		o_printf(&o, "%s\t%s", run->id, run->status);
		for (size_t p = 0; p < r->n_params; p++) {
			o_puts(&o, "\t");
			o_puts(&o, run->param_values[p]);
		}
		for (size_t m = 0; m < r->n_metrics; m++) {
			const struct report_value *vs[3] = {&run->base[m], &run->tuned[m],
							    &run->delta[m]};
			for (int k = 0; k < 3; k++)
				if (vs[k]->present)
					o_printf(&o, "\t%.10g", vs[k]->v);
				else
					o_puts(&o, "\t");
		}
		o_puts(&o, "\n");
	}
	/* tabs and newlines inside user text would break the columns */
	for (size_t i = 0; !o.rc && i < o.s.len; i++)
		if ((unsigned char)o.s.buf[i] < 0x20 && o.s.buf[i] != '\t' && o.s.buf[i] != '\n')
			o.s.buf[i] = ' ';
	int rc = o.rc;
	if (!rc) {
		char *path = path_join(dir, "data/runs.tsv");
		rc = path ? file_write_atomic(path, o.s.buf, o.s.len, d) : FT_ENOMEM;
		free(path);
	}
	strbuf_free(&o.s);
	return rc;
}

int report_write(const struct report *r, const char *dir, double timeout_s, struct diag *d)
{
	struct report_charts charts = {0};
	struct report_bases groups[2];
	if (report_groups_make(&groups[0], r, &REPORT_GROUP_BASES))
		return diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory comparing base models");
	if (report_groups_make(&groups[1], r, &REPORT_GROUP_METHODS)) {
		report_bases_free(&groups[0]);
		return diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory comparing methods");
	}
	int rc = dir_make_all(dir, d);
	if (!rc)
		rc = report_charts_make(&charts, r, dir, timeout_s, d);
	if (!rc)
		rc = write_runs_tsv(r, dir, d);
	if (!rc)
		rc = write_html(r, dir, &charts, groups, 2, d);
	if (!rc)
		rc = write_md(r, dir, &charts, groups, 2, d);
	report_charts_free(&charts);
	report_bases_free(&groups[0]);
	report_bases_free(&groups[1]);
	return rc;
}
