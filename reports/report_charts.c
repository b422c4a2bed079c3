/* report_charts: data files, gnuplot scripts and the gnuplot runs behind every chart
 * (see report_charts.h). Every script draws an SVG (for index.html) and a PNG (for
 * report.md); pngcairo is used when this gnuplot has it, else the libgd png terminal. */
#include "reports/report_charts.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "reports/gnuplot.h"
#include "reports/report_bases.h"
#include "common/banned.h"

#define MAX_LOSS_RUNS 12
#define MAX_SERIES 8
#define MAX_POINTS 256
#define LABEL_MAX 80 /* bytes of user text in a chart label */
#define MAX_PANELS 12 /* metrics per results chart */

void report_charts_free(struct report_charts *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++) {
		free(c->items[i].title);
		free(c->items[i].caption);
	}
	free(c->items);
	c->items = NULL;
	c->n = 0;
}

static int chart_add(struct report_charts *c, enum report_chart_kind kind, const char *name,
		     const char *title, const char *caption, bool key)
{
	struct report_chart *items = realloc(c->items, (c->n + 1) * sizeof(*items));
	if (!items)
		return FT_ENOMEM;
	c->items = items;
	struct report_chart *ch = &items[c->n++];
	memset(ch, 0, sizeof(*ch));
	ch->kind = kind;
	snprintf(ch->name, sizeof(ch->name), "%s", name);
	ch->title = ft_strdup(title);
	ch->caption = ft_strdup(caption);
	ch->metric = ch->param = -1;
	ch->key = key;
	return ch->title && ch->caption ? 0 : FT_ENOMEM;
}

/* A TSV cell: tabs, newlines and other control characters become spaces. */
static int tsv_text(struct strbuf *s, const char *text)
{
	for (const char *p = text ? text : ""; *p; p++) {
		char c = (unsigned char)*p < 0x20 || *p == 0x7f ? ' ' : *p;
		if (strbuf_append(s, &c, 1))
			return FT_ENOMEM;
	}
	return 0;
}

static int tsv_num(struct strbuf *s, double v, bool present)
{
	if (!present || !isfinite(v))
		return strbuf_puts(s, "\t?");
	return strbuf_printf(s, "\t%.10g", v);
}

static int write_file(const char *dir, const char *rel, const struct strbuf *s, struct diag *d)
{
	char *path = path_join(dir, rel);
	if (!path)
		return diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
	int rc = file_write_atomic(path, s->buf ? s->buf : "", s->len, d);
	free(path);
	return rc;
}

/* Chart body head: common settings and the title. The body is emitted twice by
 * run_script, once per terminal, so it must not depend on the terminal. */
static int script_head(struct strbuf *g, const char *name, const char *title)
{
	(void)name;
	int rc = strbuf_puts(g,
		"set datafile separator '\\t'\n"
		"set datafile missing '?'\n"
		"set grid lc rgb '#dddddd'\n"
		"set border lc rgb '#555555'\n"
		"set key outside right top noenhanced\n"
		"set title ");
	if (!rc)
		rc = gnuplot_quote(g, title, 160);
	if (!rc)
		rc = strbuf_puts(g, "\n");
	return rc;
}

/* Head of a chart of one panel per metric: rows x cols panels under `title`, with room
 * above and below each panel's intervals. */
static int multiplot_head(struct strbuf *g, const char *name, const char *title, size_t rows,
			  size_t cols)
{
	int rc = script_head(g, name, title);
	if (!rc)
		rc = strbuf_printf(g, "unset title\nunset key\nset multiplot layout %zu,%zu title ",
				   rows, cols);
	if (!rc)
		rc = gnuplot_quote(g, title, 160);
	if (!rc)
		rc = strbuf_puts(g, "\nset offsets 0, 0, graph 0.08, graph 0.08\n");
	return rc;
}

/* Ends panel k's plot command: with `baseline`, adds the baseline's interval (columns col,
 * col+1, col+2 of rel, red squares at x). */
static int panel_end(struct strbuf *g, const char *rel, size_t k, bool baseline, int x, int col)
{
	int rc = 0;
	if (baseline)
		rc = strbuf_printf(g, ", \\\n     '%s' every ::%zu::%zu using (%d):%d:%d:%d "
				   "with yerrorbars pt 5 ps 1 lw 1.5 lc rgb '#d62728' notitle",
				   rel, k, k, x, col, col + 1, col + 2);
	if (!rc)
		rc = strbuf_puts(g, "\n");
	return rc;
}

/* Writes charts/NAME.gp: the body drawn as SVG (for index.html) and as PNG (report.md),
 * then runs gnuplot on it in dir. */
static int run_script(const char *dir, const char *name, const struct strbuf *body,
		      double timeout_s, struct diag *d)
{
	struct strbuf g = {0};
	const char *b = body->buf ? body->buf : "";
	int rc = strbuf_printf(&g,
		"# ftlab report chart %s: draws charts/%s.svg and charts/%s.png from data/*.tsv.\n"
		"# Run from the report directory: gnuplot charts/%s.gp\n"
		"reset\n"
		"set terminal svg size 860,480 noenhanced font 'sans,11' background '#ffffff'\n"
		"set output 'charts/%s.svg'\n"
		"%s"
		"unset multiplot\n"
		"set output\n"
		"reset\n"
		"if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
		"  set terminal pngcairo size 900,520 noenhanced font 'sans,10' background '#ffffff'\n"
		"} else {\n"
		"  set terminal png size 900,520 noenhanced background '#ffffff'\n"
		"}\n"
		"set output 'charts/%s.png'\n"
		"%s"
		"unset multiplot\n"
		"set output\n",
		name, name, name, name, name, b, name, b);
	char rel[160];
	snprintf(rel, sizeof(rel), "charts/%s.gp", name);
	if (rc)
		rc = diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory writing %s", rel);
	if (!rc)
		rc = write_file(dir, rel, &g, d);
	if (!rc)
		rc = gnuplot_run(dir, rel, timeout_s, d);
	strbuf_free(&g);
	return rc;
}

/* ---- base vs tuned, and paired differences, for one split ---- */

static const char *metric_split_end(const char *m)
{
	const char *dot = strchr(m, '.');
	return dot ? dot : m + strlen(m);
}

static bool same_split(const char *a, const char *b)
{
	size_t la = (size_t)(metric_split_end(a) - a), lb = (size_t)(metric_split_end(b) - b);
	return la == lb && strncmp(a, b, la) == 0;
}

static const struct report_value *baseline_value(const struct report *r, const char *metric,
						 enum report_model model)
{
	if (!r->baseline)
		return NULL;
	long b = report_best_run(r->baseline);
	if (b < 0)
		return NULL;
	for (size_t i = 0; i < r->baseline->n_metrics; i++)
		if (strcmp(r->baseline->metrics[i], metric) == 0) {
			const struct report_run *run = &r->baseline->runs[b];
			const struct report_value *v = model == REPORT_BASE ? &run->base[i]
						       : model == REPORT_TUNED ? &run->tuned[i]
									       : &run->delta[i];
			return v->present ? v : NULL;
		}
	return NULL;
}

/* One panel per metric (metrics have different scales): `layout` for n panels. */
static void panel_layout(size_t n, size_t *rows, size_t *cols)
{
	*cols = n <= 4 ? n : 4;
	*rows = (n + *cols - 1) / *cols;
}

/* Appends the short metric name (without the split) as a quoted panel title. */
static int panel_title(struct strbuf *g, const char *metric)
{
	const char *name = metric_split_end(metric);
	name = *name == '.' ? name + 1 : metric;
	int rc = strbuf_puts(g, "set title ");
	if (!rc)
		rc = gnuplot_quote(g, name, LABEL_MAX);
	return rc ? rc : strbuf_puts(g, "\n");
}

static int chart_results(struct report_charts *out, const struct report *r, long best,
			 size_t split_no, const char *split_metric, const char *dir,
			 double timeout_s, struct diag *d)
{
	const struct report_run *run = &r->runs[best];
	size_t ms[MAX_PANELS], n = 0;
	for (size_t i = 0; i < r->n_metrics && n < MAX_PANELS; i++)
		if (same_split(r->metrics[i], split_metric) &&
		    (run->base[i].present || run->tuned[i].present))
			ms[n++] = i;
	if (n == 0)
		return 0;
	char split[64];
	snprintf(split, sizeof(split), "%.*s",
		 (int)(metric_split_end(split_metric) - split_metric), split_metric);
	struct strbuf t = {0}, g = {0};
	int rc = strbuf_puts(&t, "# metric\tbase\tbase_lo\tbase_hi\ttuned\ttuned_lo\t"
			      "tuned_hi\tdelta\tdelta_lo\tdelta_hi\tbaseline\tbaseline_lo\t"
			      "baseline_hi\tbaseline_delta\tbaseline_delta_lo\tbaseline_delta_hi\n");
	bool have_bl = false, have_bl_d = false, have_delta = false;
	for (size_t k = 0; k < n && !rc; k++) {
		size_t i = ms[k];
		have_delta = have_delta || run->delta[i].present;
		const struct report_value *vals[3] = {&run->base[i], &run->tuned[i], &run->delta[i]};
		rc = tsv_text(&t, r->metrics[i]);
		for (int j = 0; j < 3 && !rc; j++) {
			rc = tsv_num(&t, vals[j]->v, vals[j]->present);
			if (!rc)
				rc = tsv_num(&t, vals[j]->lo, vals[j]->present);
			if (!rc)
				rc = tsv_num(&t, vals[j]->hi, vals[j]->present);
		}
		const struct report_value *bt = baseline_value(r, r->metrics[i], REPORT_TUNED);
		const struct report_value *bd = baseline_value(r, r->metrics[i], REPORT_DELTA);
		have_bl = have_bl || bt;
		have_bl_d = have_bl_d || bd;
		const struct report_value *bls[2] = {bt, bd};
		for (int j = 0; j < 2 && !rc; j++) {
			rc = tsv_num(&t, bls[j] ? bls[j]->v : 0, bls[j] != NULL);
			if (!rc)
				rc = tsv_num(&t, bls[j] ? bls[j]->lo : 0, bls[j] != NULL);
			if (!rc)
				rc = tsv_num(&t, bls[j] ? bls[j]->hi : 0, bls[j] != NULL);
		}
		if (!rc)
			rc = strbuf_puts(&t, "\n");
	}
	char name[96], rel[160], title[256], caption[512];
	snprintf(name, sizeof(name), "results_%zu", split_no);
	snprintf(rel, sizeof(rel), "data/%s.tsv", name);
	if (!rc)
		rc = write_file(dir, rel, &t, d);
	const char *bl = r->baseline_label ? r->baseline_label : "baseline";
	size_t rows, cols;
	panel_layout(n, &rows, &cols);

	/* values: base, fine-tuned and the baseline's best run, one panel per metric */
	snprintf(title, sizeof(title), "Base vs fine-tuned on %s (best run %s)", split, run->id);
	if (!rc)
		rc = multiplot_head(&g, name, title, rows, cols);
	if (!rc)
		rc = strbuf_puts(&g, "set xrange [-0.6:2.6]\nset xtics (");
	if (!rc)
		rc = strbuf_printf(&g, "'base' 0, 'fine-tuned' 1%s", have_bl ? ", " : "");
	if (!rc && have_bl)
		rc = gnuplot_quote(&g, bl, 24);
	if (!rc)
		rc = strbuf_printf(&g, "%s)\n", have_bl ? " 2" : "");
	for (size_t k = 0; k < n && !rc; k++) {
		rc = panel_title(&g, r->metrics[ms[k]]);
		if (!rc)
			rc = strbuf_printf(&g,
				"plot '%s' every ::%zu::%zu using (0):2:3:4 with yerrorbars pt 7 ps 1 "
				"lw 1.5 lc rgb '#888888' notitle, \\\n"
				"     '%s' every ::%zu::%zu using (1):5:6:7 with yerrorbars pt 7 ps 1 "
				"lw 1.5 lc rgb '#1f77b4' notitle", rel, k, k, rel, k, k);
		if (!rc)
			rc = panel_end(&g, rel, k, have_bl, 2, 11);
	}
	if (!rc)
		rc = run_script(dir, name, &g, timeout_s, d);
	snprintf(caption, sizeof(caption), "Metric values of the base model and the best "
		 "fine-tuned run on the %s split, one panel per metric; bars are the bootstrap "
		 "confidence intervals%s.", split,
		 have_bl ? "; red: the baseline's best run" : "");
	if (!rc)
		rc = chart_add(out, CHART_RESULTS, name, title, caption, true);

	/* paired differences: fine-tuned minus base, and the baseline's, per metric */
	g.len = 0;
	if (!have_delta)
		goto done;
	snprintf(name, sizeof(name), "delta_%zu", split_no);
	snprintf(title, sizeof(title), "Fine-tuned minus base on %s (paired, best run %s)", split,
		 run->id);
	if (!rc)
		rc = multiplot_head(&g, name, title, rows, cols);
	if (!rc)
		rc = strbuf_printf(&g, "set xzeroaxis lt 1 lw 1.5 lc rgb '#333333'\n"
				   "set xrange [-0.6:%s]\nset xtics ('this run' 0", have_bl_d ? "1.6" : "0.6");
	if (!rc && have_bl_d) {
		rc = strbuf_puts(&g, ", ");
		if (!rc)
			rc = gnuplot_quote(&g, bl, 24);
		if (!rc)
			rc = strbuf_puts(&g, " 1");
	}
	if (!rc)
		rc = strbuf_puts(&g, ")\n");
	for (size_t k = 0; k < n && !rc; k++) {
		rc = panel_title(&g, r->metrics[ms[k]]);
		/* keep zero in view so the reader sees whether the interval excludes it */
		if (!rc)
			rc = strbuf_printf(&g,
				"plot '%s' every ::%zu::%zu using (0):8:9:10 with yerrorbars pt 7 ps 1 "
				"lw 1.5 lc rgb '#1f77b4' notitle, \\\n"
				"     0 with lines lc rgb '#333333' notitle", rel, k, k);
		if (!rc)
			rc = panel_end(&g, rel, k, have_bl_d, 1, 14);
	}
	if (!rc)
		rc = run_script(dir, name, &g, timeout_s, d);
	snprintf(caption, sizeof(caption), "Paired differences (fine-tuned minus base on the same "
		 "examples) on the %s split, one panel per metric; an interval that excludes zero "
		 "is a real difference%s.", split, have_bl_d ? "; red: the baseline's" : "");
	if (!rc)
		rc = chart_add(out, CHART_DELTA, name, title, caption, true);
done:
	strbuf_free(&t);
	strbuf_free(&g);
	if (rc == FT_ENOMEM)
		diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory writing a chart");
	return rc;
}

/* ---- loss curves ---- */

/* The last component of a dotted key, for legends ("train.optimizer.lr" -> "lr"). */
static const char *short_key(const char *key)
{
	const char *dot = strrchr(key, '.');
	return dot && dot[1] ? dot + 1 : key;
}

static int run_label(struct strbuf *s, const struct report *r, const struct report_run *run,
		     const char *suffix)
{
	int rc = strbuf_puts(s, run->id);
	for (size_t p = 0; p < r->n_params && !rc; p++)
		if (run->param_values[p][0])
			rc = strbuf_printf(s, " %s=%s", short_key(r->params[p]), run->param_values[p]);
	if (!rc && suffix)
		rc = strbuf_printf(s, " %s", suffix);
	return rc;
}

static int loss_series(struct strbuf *g, struct strbuf *t, const struct report *r, size_t ri,
		       const char *token_prefix, const char *dir, int color, bool dashed,
		       bool *first, size_t *n_series, struct diag *d)
{
	const struct report_run *run = &r->runs[ri];
	char token[80];
	report_run_token(token, sizeof(token), r, ri);
	int rc = 0;
	for (size_t c = 0; c < run->n_curves && !rc; c++) {
		const struct report_curve *cv = &run->curves[c];
		if (strcmp(cv->name, "loss") != 0 || cv->n == 0)
			continue;
		char rel[200];
		snprintf(rel, sizeof(rel), "data/loss_%s%s_%zu.tsv", token_prefix, token, c);
		t->len = 0;
		rc = strbuf_puts(t, "# step\tloss\t(split: ");
		if (!rc)
			rc = tsv_text(t, cv->split);
		if (!rc)
			rc = strbuf_puts(t, ")\n");
		for (size_t k = 0; k < cv->n && !rc; k++)
			rc = strbuf_printf(t, "%lld", (long long)cv->steps[k]) ||
					     tsv_num(t, cv->values[k], true) || strbuf_puts(t, "\n")
				     ? FT_ENOMEM : 0;
		if (!rc)
			rc = write_file(dir, rel, t, d);
		bool train = strcmp(cv->split, "train") == 0;
		if (!rc)
			rc = strbuf_printf(g, "%s'%s' using 1:2 with %s lw %s dt %d lc %d title ",
					   *first ? "plot " : ", \\\n     ", rel,
					   train ? "lines" : "linespoints pt 7 ps 0.5",
					   dashed ? "2" : "1.5", dashed ? 2 : (train ? 1 : 3), color);
		struct strbuf label = {0};
		if (!rc)
			rc = run_label(&label, r, run, cv->split);
		if (!rc && dashed)
			rc = strbuf_printf(&label, " (%s)", r->baseline_label ? r->baseline_label
									     : "baseline");
		if (!rc)
			rc = gnuplot_quote(g, label.buf ? label.buf : "", LABEL_MAX);
		strbuf_free(&label);
		*first = false;
		(*n_series)++;
	}
	return rc;
}

static int chart_loss(struct report_charts *out, const struct report *r, long best,
		      const char *dir, double timeout_s, struct diag *d)
{
	struct strbuf g = {0}, t = {0};
	size_t n_series = 0, shown = 0;
	bool first = true;
	struct strbuf title = {0};
	int rc = strbuf_printf(&title, "Training and validation loss: %s", r->experiment);
	if (!rc)
		rc = script_head(&g, "loss", title.buf);
	strbuf_free(&title);
	if (!rc)
		rc = strbuf_puts(&g, "set xlabel 'step'\nset ylabel 'loss'\n"
				     "set key below font ',9' noenhanced\n");
	/* the best run first, then the others in sweep order, up to MAX_LOSS_RUNS */
	for (long pass = 0; pass < 2 && !rc; pass++)
		for (size_t i = 0; i < r->n_runs && !rc && shown < MAX_LOSS_RUNS; i++) {
			if ((pass == 0) != ((long)i == best))
				continue;
			size_t before = n_series;
			rc = loss_series(&g, &t, r, i, "", dir, (int)(shown % 8) + 1, false, &first,
					 &n_series, d);
			shown += n_series > before;
		}
	if (!rc && r->baseline) {
		long b = report_best_run(r->baseline);
		if (b >= 0)
			rc = loss_series(&g, &t, r->baseline, (size_t)b, "baseline_", dir, 7, true,
					 &first, &n_series, d);
	}
	if (!rc && n_series > 0) {
		rc = strbuf_puts(&g, "\n");
		if (!rc)
			rc = run_script(dir, "loss", &g, timeout_s, d);
		char caption[256];
		snprintf(caption, sizeof(caption), "Loss against training step: solid lines are "
			 "training loss, points validation loss%s%s.",
			 shown >= MAX_LOSS_RUNS ? "; the best run and the first runs of the sweep "
						  "are shown" : "",
			 r->baseline ? "; dashed: the baseline's best run" : "");
		if (!rc)
			rc = chart_add(out, CHART_LOSS, "loss", "Training and validation loss",
				       caption, true);
	}
	strbuf_free(&g);
	strbuf_free(&t);
	return rc;
}

/* ---- each metric against each swept parameter ---- */

static bool all_numeric(const struct report *r, size_t p)
{
	for (size_t i = 0; i < r->n_runs; i++) {
		double v;
		if (report_run_ok(&r->runs[i]) && !parse_f64(r->runs[i].param_values[p], &v))
			return false;
	}
	return true;
}

static bool others_equal(const struct report *r, size_t p, size_t a, size_t b)
{
	for (size_t q = 0; q < r->n_params; q++)
		if (q != p && !report_param_is_seed(r->params[q]) &&
		    strcmp(r->runs[a].param_values[q], r->runs[b].param_values[q]) != 0)
			return false;
	return true;
}

static int cmp_label_num(const void *a, const void *b)
{
	double x = 0, y = 0;
	(void)parse_f64(*(const char *const *)a, &x);
	(void)parse_f64(*(const char *const *)b, &y);
	return x < y ? -1 : x > y;
}

size_t report_param_points(const struct report *r, size_t p, size_t m, long like,
			   const char **out_labels, double *mean, double *lo, double *hi,
			   size_t *count, size_t cap)
{
	size_t n = 0;
	for (size_t i = 0; i < r->n_runs; i++) {
		const struct report_run *run = &r->runs[i];
		if (!report_run_ok(run) || !run->tuned[m].present || !isfinite(run->tuned[m].v))
			continue;
		if (like >= 0 && !others_equal(r, p, i, (size_t)like))
			continue;
		size_t k = 0;
		while (k < n && strcmp(out_labels[k], run->param_values[p]) != 0)
			k++;
		if (k == n) {
			if (n == cap)
				continue;
			out_labels[n] = run->param_values[p];
			mean[n] = 0;
			count[n] = 0;
			lo[n] = hi[n] = run->tuned[m].v;
			n++;
		}
		double v = run->tuned[m].v;
		mean[k] += v;
		count[k]++;
		lo[k] = v < lo[k] ? v : lo[k];
		hi[k] = v > hi[k] ? v : hi[k];
	}
	for (size_t k = 0; k < n; k++)
		mean[k] /= (double)count[k];
	return n;
}

static int chart_param(struct report_charts *out, const struct report *r, size_t p, size_t m,
		       const char *dir, double timeout_s, struct diag *d)
{
	/* the parameter's distinct values among ok runs: x positions */
	const char *labels[MAX_POINTS];
	double mean[MAX_POINTS], lo[MAX_POINTS], hi[MAX_POINTS];
	size_t count[MAX_POINTS];
	size_t nx = report_param_points(r, p, m, -1, labels, mean, lo, hi, count, MAX_POINTS);
	if (nx < 2)
		return 0;
	bool numeric = all_numeric(r, p);
	if (numeric)
		qsort(labels, nx, sizeof(labels[0]), cmp_label_num);
	double xmin = INFINITY, xmax = -INFINITY;
	for (size_t k = 0; numeric && k < nx; k++) {
		double v = 0;
		(void)parse_f64(labels[k], &v);
		xmin = v < xmin ? v : xmin;
		xmax = v > xmax ? v : xmax;
	}
	bool logx = numeric && xmin > 0 && xmax / xmin >= 20;

	/* series: one per combination of the other non-seed parameters */
	long reps[MAX_SERIES];
	size_t ns = 0;
	bool too_many = false;
	for (size_t i = 0; i < r->n_runs; i++) {
		if (!report_run_ok(&r->runs[i]) || !r->runs[i].tuned[m].present)
			continue;
		size_t s = 0;
		while (s < ns && !others_equal(r, p, i, (size_t)reps[s]))
			s++;
		if (s == ns) {
			if (ns == MAX_SERIES) {
				too_many = true;
				break;
			}
			reps[ns++] = (long)i;
		}
	}
	if (too_many) { /* aggregate over everything rather than draw a tangle */
		ns = 1;
		reps[0] = -1;
	}
	char name[96], rel[160];
	snprintf(name, sizeof(name), "param_%zu_%zu", p, m);
	snprintf(rel, sizeof(rel), "data/%s.tsv", name);
	struct strbuf t = {0}, g = {0};
	int rc = strbuf_puts(&t, "# x\tmean\tmin\tmax\truns\tvalue (one block per series; "
			     "min/max over seeds)\n");
	for (size_t s = 0; s < ns && !rc; s++) {
		const char *sl[MAX_POINTS];
		double sm[MAX_POINTS], slo[MAX_POINTS], shi[MAX_POINTS];
		size_t sc[MAX_POINTS];
		size_t np = report_param_points(r, p, m, reps[s], sl, sm, slo, shi, sc, MAX_POINTS);
		if (s > 0)
			rc = strbuf_puts(&t, "\n\n");
		for (size_t k = 0; k < nx && !rc; k++) { /* in x order */
			size_t j = 0;
			while (j < np && strcmp(sl[j], labels[k]) != 0)
				j++;
			if (j == np)
				continue;
			double x = (double)k;
			if (numeric)
				(void)parse_f64(labels[k], &x);
			rc = strbuf_printf(&t, "%.10g\t%.10g\t%.10g\t%.10g\t%zu\t", x, sm[j], slo[j],
					   shi[j], sc[j]);
			if (!rc)
				rc = tsv_text(&t, labels[k]);
			if (!rc)
				rc = strbuf_puts(&t, "\n");
		}
	}
	if (!rc)
		rc = write_file(dir, rel, &t, d);
	char title[300];
	snprintf(title, sizeof(title), "%s against %s", r->metrics[m], r->params[p]);
	if (!rc)
		rc = script_head(&g, name, title);
	if (!rc)
		rc = strbuf_puts(&g, "set xlabel ");
	if (!rc)
		rc = gnuplot_quote(&g, r->params[p], LABEL_MAX);
	if (!rc)
		rc = strbuf_puts(&g, "\nset ylabel ");
	if (!rc)
		rc = gnuplot_quote(&g, r->metrics[m], LABEL_MAX);
	if (!rc)
		rc = strbuf_puts(&g, "\nset offsets 0, 0, graph 0.05, graph 0.05\n");
	if (!rc && logx)
		rc = strbuf_printf(&g, "set logscale x\nset xrange [%.10g:%.10g]\n", xmin / 1.4,
				   xmax * 1.4);
	else if (!rc && numeric)
		rc = strbuf_printf(&g, "set xrange [%.10g:%.10g]\n", xmin - 0.06 * (xmax - xmin),
				   xmax + 0.06 * (xmax - xmin));
	else if (!rc)
		rc = strbuf_printf(&g, "set xrange [-0.5:%zu.5]\n", nx - 1);
	if (!rc)
		rc = strbuf_puts(&g, "set key below noenhanced\n");
	if (!rc && !numeric) {
		rc = strbuf_puts(&g, "set xtics (");
		for (size_t k = 0; k < nx && !rc; k++) {
			rc = gnuplot_quote(&g, labels[k], 40);
			if (!rc)
				rc = strbuf_printf(&g, " %zu%s", k, k + 1 < nx ? ", " : "");
		}
		if (!rc)
			rc = strbuf_puts(&g, ")\n");
	}
	for (size_t s = 0; s < ns && !rc; s++) {
		rc = strbuf_printf(&g, "%s'%s' index %zu using 1:2:3:4 with yerrorlines pt 7 ps 0.8 "
				   "lw 1.5 lc %zu title ", s == 0 ? "plot " : ", \\\n     ", rel, s,
				   s + 1);
		struct strbuf label = {0};
		for (size_t q = 0; q < r->n_params && !rc && reps[s] >= 0; q++)
			if (q != p && !report_param_is_seed(r->params[q]))
				rc = strbuf_printf(&label, "%s%s=%s", label.len ? " " : "",
						   short_key(r->params[q]),
						   r->runs[reps[s]].param_values[q]);
		if (!rc)
			rc = gnuplot_quote(&g, label.len ? label.buf : "mean over seeds", LABEL_MAX);
		strbuf_free(&label);
	}
	const struct report_value *bl = baseline_value(r, r->metrics[m], REPORT_TUNED);
	if (!rc && bl) {
		rc = strbuf_printf(&g, ", \\\n     %.10g with lines dt 2 lw 2 lc rgb '#d62728' title ",
				   bl->v);
		if (!rc)
			rc = gnuplot_quote(&g, r->baseline_label ? r->baseline_label : "baseline",
					   LABEL_MAX);
	}
	if (!rc)
		rc = strbuf_puts(&g, "\n");
	if (!rc)
		rc = run_script(dir, name, &g, timeout_s, d);
	char caption[512];
	snprintf(caption, sizeof(caption), "Points are the mean over seeds, bars the minimum and "
		 "maximum; one line per combination of the other parameters%s.",
		 bl ? "; dashed: the baseline's best run" : "");
	if (!rc)
		rc = chart_add(out, CHART_PARAM, name, title, caption, false);
	if (!rc) {
		out->items[out->n - 1].metric = (long)m;
		out->items[out->n - 1].param = (long)p;
	}
	strbuf_free(&t);
	strbuf_free(&g);
	return rc;
}

/* ---- base models side by side ---- */

/* xtics: one short base name per base (without .gguf), at 0..n-1; rotated where the
 * panels are narrow. */
static int base_xtics(struct strbuf *g, const struct report_bases *b, bool rotate)
{
	int rc = strbuf_printf(g, "set xrange [-0.6:%zu.6]\n%sset xtics (", b->n - 1,
			       rotate ? "set xtics rotate by 30 right\n" : "");
	for (size_t k = 0; k < b->n && !rc; k++) {
		const char *name = report_base_short(b->items[k].name);
		size_t len = strlen(name);
		char label[64];
		if (len > 5 && strcmp(name + len - 5, ".gguf") == 0)
			len -= 5;
		snprintf(label, sizeof label, "%.*s%s", (int)(len < 22 ? len : 21), name,
			 len > 22 ? "…" : "");
		rc = gnuplot_quote(g, label, 40);
		if (!rc)
			rc = strbuf_printf(g, " %zu%s", k, k + 1 < b->n ? ", " : ")\n");
	}
	return rc;
}

/* Per metric of the rank metric's split, one panel: each base's untuned (grey) and tuned
 * (blue) value with its interval, from the best run of that base. */
static int chart_bases_values(struct report_charts *out, const struct report *r,
			      const struct report_bases *b, const char *dir, double timeout_s,
			      struct diag *d)
{
	size_t ms[MAX_PANELS], n = 0;
	for (size_t i = 0; i < r->n_metrics && n < MAX_PANELS; i++)
		if (same_split(r->metrics[i], r->metrics[b->metric]))
			ms[n++] = i;
	struct strbuf t = {0}, g = {0};
	char rel[64], name[48];
	snprintf(rel, sizeof rel, "data/%s.tsv", b->kind->id);
	snprintf(name, sizeof name, "%s", b->kind->id);
	int rc = strbuf_printf(&t, "# one block per metric; x\t%s\tuntuned\tuntuned_lo\t"
			      "untuned_hi\ttuned\ttuned_lo\ttuned_hi\tdelta\tdelta_lo\tdelta_hi\trun\n",
			       b->kind == &REPORT_GROUP_BASES ? "base" : "method");
	for (size_t k = 0; k < n && !rc; k++) {
		rc = strbuf_puts(&t, "# ");
		if (!rc)
			rc = tsv_text(&t, r->metrics[ms[k]]);
		if (!rc)
			rc = strbuf_puts(&t, "\n");
		for (size_t q = 0; q < b->n && !rc; q++) {
			const struct report_run *run = b->items[q].run >= 0 ? &r->runs[b->items[q].run]
									   : NULL;
			rc = strbuf_printf(&t, "%zu\t", q);
			if (!rc)
				rc = tsv_text(&t, report_base_short(b->items[q].name));
			const struct report_value *vals[3] = {
				run ? &run->base[ms[k]] : NULL, run ? &run->tuned[ms[k]] : NULL,
				run ? &run->delta[ms[k]] : NULL};
			for (int j = 0; j < 3 && !rc; j++) {
				bool have = vals[j] && vals[j]->present;
				bool ci = have && vals[j]->has_ci;
				rc = tsv_num(&t, have ? vals[j]->v : 0, have);
				if (!rc)
					rc = tsv_num(&t, ci ? vals[j]->lo : 0, ci);
				if (!rc)
					rc = tsv_num(&t, ci ? vals[j]->hi : 0, ci);
			}
			if (!rc)
				rc = strbuf_puts(&t, "\t");
			if (!rc)
				rc = tsv_text(&t, run ? run->id : "");
			if (!rc)
				rc = strbuf_puts(&t, "\n");
		}
		if (!rc)
			rc = strbuf_puts(&t, "\n\n");
	}
	if (!rc)
		rc = write_file(dir, rel, &t, d);
	char split[64], title[160], caption[512];
	const char *sm = r->metrics[b->metric];
	snprintf(split, sizeof split, "%.*s", (int)(metric_split_end(sm) - sm), sm);
	snprintf(title, sizeof title, "%s on %s: untuned and fine-tuned", b->kind->title, split);
	/* two panels a row, so that the base names fit under each */
	size_t cols = n < 2 ? (n ? n : 1) : 2, rows = (n + cols - 1) / cols;
	if (!rc)
		rc = multiplot_head(&g, name, title, rows, cols);
	if (!rc)
		rc = base_xtics(&g, b, b->n > 2);
	/* missing intervals (a trainer without them) draw as points: lo = hi = value */
	for (size_t k = 0; k < n && !rc; k++) {
		rc = panel_title(&g, r->metrics[ms[k]]);
		if (!rc)
			rc = strbuf_printf(&g,
				"plot '%s' index %zu using ($1-0.12):3:(valid(4)?$4:$3):(valid(5)?$5:$3) "
				"with yerrorbars pt 7 ps 1 lw 1.5 lc rgb '#888888' notitle, \\\n"
				"     '%s' index %zu using ($1+0.12):6:(valid(7)?$7:$6):(valid(8)?$8:$6) "
				"with yerrorbars pt 7 ps 1 lw 1.5 lc rgb '#1f77b4' notitle\n",
				rel, k, rel, k);
	}
	if (!rc)
		rc = run_script(dir, name, &g, timeout_s, d);
	snprintf(caption, sizeof caption, "Each %s's untuned value (grey, left) and the "
		 "value of its best fine-tuned run (blue, right) on the %s split, one panel per "
		 "metric; bars are the bootstrap confidence intervals. Where the blue intervals "
		 "overlap, the %ss are not distinguishable on that metric.", b->kind->noun, split,
		 b->kind->noun);
	if (!rc)
		rc = chart_add(out, CHART_BASES, name, title, caption, false);
	strbuf_free(&t);
	strbuf_free(&g);
	return rc;
}

/* Two panels: training wall seconds and peak resident memory (GiB) of each base's best
 * run, as bars. */
static int chart_bases_cost(struct report_charts *out, const struct report_bases *b,
			    const char *dir, double timeout_s, struct diag *d)
{
	bool have_time = false, have_peak = false;
	for (size_t q = 0; q < b->n; q++) {
		have_time = have_time || isfinite(b->items[q].cost[COST_TRAIN_S]);
		have_peak = have_peak || isfinite(b->items[q].cost[COST_TRAIN_PEAK]);
	}
	if (!have_time && !have_peak)
		return 0;
	struct strbuf t = {0}, g = {0};
	char rel[64], name[48], title[96], caption[400];
	snprintf(rel, sizeof rel, "data/%s_cost.tsv", b->kind->id);
	snprintf(name, sizeof name, "%s_cost", b->kind->id);
	snprintf(title, sizeof title, "%s: cost of the best fine-tuned run", b->kind->title);
	snprintf(caption, sizeof caption, "Training wall time and peak resident memory in "
		 "training (model load included) of each %s's best fine-tuned run (%s also has "
		 "CPU seconds, tokens/s and evaluation times). Wall times depend on the machine's "
		 "load.", b->kind->noun, rel);
	int rc = strbuf_printf(&t, "# x\t%s\ttrain_seconds\ttrain_cpu_seconds\ttokens_per_s\t"
			      "train_peak_rss_gib\tpeak_rss_gib\tbase_eval_seconds\ttuned_eval_seconds\n",
			       b->kind == &REPORT_GROUP_BASES ? "base" : "method");
	for (size_t q = 0; q < b->n && !rc; q++) {
		const double *c = b->items[q].cost;
		rc = strbuf_printf(&t, "%zu\t", q);
		if (!rc)
			rc = tsv_text(&t, report_base_short(b->items[q].name));
		double vals[7] = {c[COST_TRAIN_S], c[COST_TRAIN_CPU_S], c[COST_TOKENS_S],
				  c[COST_TRAIN_PEAK] / 1073741824.0, c[COST_PEAK_RSS] / 1073741824.0,
				  c[COST_BASE_EVAL_S], c[COST_TUNED_EVAL_S]};
		for (int j = 0; j < 7 && !rc; j++)
			rc = tsv_num(&t, vals[j], isfinite(vals[j]));
		if (!rc)
			rc = strbuf_puts(&t, "\n");
	}
	if (!rc)
		rc = write_file(dir, rel, &t, d);
	if (!rc)
		rc = multiplot_head(&g, name, title, 1, (size_t)have_time + have_peak);
	if (!rc)
		rc = base_xtics(&g, b, false);
	if (!rc)
		rc = strbuf_puts(&g, "set yrange [0:*]\nset style fill solid 0.6 border\n"
				 "set boxwidth 0.5\n");
	if (!rc && have_time)
		rc = strbuf_printf(&g,
			"set title 'training time: wall s (dark), CPU s (light)'\n"
			"set boxwidth 0.3\n"
			"plot '%s' using ($1-0.16):3 with boxes lc rgb '#1f77b4' notitle, \\\n"
			"     '' using ($1-0.16):3:(sprintf('%%.0f', $3)) with labels offset 0,0.8 "
			"notitle, \\\n"
			"     '' using ($1+0.16):4 with boxes lc rgb '#9ecae1' notitle, \\\n"
			"     '' using ($1+0.16):4:(sprintf('%%.0f', $4)) with labels offset 0,0.8 "
			"notitle\nset boxwidth 0.5\n",
			rel);
	if (!rc && have_peak)
		rc = strbuf_printf(&g,
			"set title 'peak resident memory in training (GiB)'\n"
			"plot '%s' using 1:6 with boxes lc rgb '#ff7f0e' notitle, \\\n"
			"     '' using 1:6:(sprintf('%%.2f GiB', $6)) with labels offset 0,0.8 notitle\n",
			rel);
	if (!rc)
		rc = run_script(dir, name, &g, timeout_s, d);
	if (!rc)
		rc = chart_add(out, CHART_COST, name, title, caption, false);
	strbuf_free(&t);
	strbuf_free(&g);
	return rc;
}

static int chart_bases(struct report_charts *out, const struct report *r, const char *dir,
		       double timeout_s, const struct report_group_kind *kind, struct diag *d)
{
	struct report_bases b;
	int rc = report_groups_make(&b, r, kind);
	if (rc)
		return rc;
	if (b.n >= 2 && b.metric >= 0)
		rc = chart_bases_values(out, r, &b, dir, timeout_s, d);
	if (!rc && b.n >= 2)
		rc = chart_bases_cost(out, &b, dir, timeout_s, d);
	report_bases_free(&b);
	return rc;
}

int report_charts_make(struct report_charts *out, const struct report *r, const char *dir,
		       double timeout_s, struct diag *d)
{
	memset(out, 0, sizeof(*out));
	char *data = path_join(dir, "data"), *charts = path_join(dir, "charts");
	int rc = data && charts ? 0 : diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
	if (!rc)
		rc = dir_make_all(data, d);
	if (!rc)
		rc = dir_make_all(charts, d);
	free(data);
	free(charts);
	long best = report_best_run(r);
	bool maximize = true;
	long rank = report_rank_metric(r, &maximize);
	if (!rc && best >= 0) {
		/* one results/delta pair per split, the rank metric's split first */
		size_t split_no = 0;
		const char *splits[64];
		size_t n_splits = 0;
		if (rank >= 0)
			splits[n_splits++] = r->metrics[rank];
		for (size_t i = 0; i < r->n_metrics && n_splits < FT_ARRAY_LEN(splits); i++) {
			bool seen = false;
			for (size_t s = 0; s < n_splits; s++)
				seen = seen || same_split(splits[s], r->metrics[i]);
			if (!seen)
				splits[n_splits++] = r->metrics[i];
		}
		for (size_t s = 0; s < n_splits && !rc; s++)
			rc = chart_results(out, r, best, split_no++, splits[s], dir, timeout_s, d);
	}
	if (!rc)
		rc = chart_bases(out, r, dir, timeout_s, &REPORT_GROUP_BASES, d);
	if (!rc)
		rc = chart_bases(out, r, dir, timeout_s, &REPORT_GROUP_METHODS, d);
	if (!rc)
		rc = chart_loss(out, r, best, dir, timeout_s, d);
	/* the rank metric's split: each metric against each non-seed parameter */
	for (size_t p = 0; p < r->n_params && !rc; p++) {
		if (report_param_is_seed(r->params[p]))
			continue;
		for (size_t m = 0; m < r->n_metrics && !rc; m++)
			if (rank < 0 || same_split(r->metrics[m], r->metrics[rank]))
				rc = chart_param(out, r, p, m, dir, timeout_s, d);
	}
	if (rc == FT_ENOMEM)
		diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory writing charts");
	return rc;
}
