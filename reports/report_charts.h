/* report_charts: the charts of a report. For each chart it writes the data (.tsv under
 * DIR/data/) and a gnuplot script (DIR/charts/NAME.gp) that draws NAME.svg (inlined by the
 * HTML report) and NAME.png (linked from report.md), then runs gnuplot on it. Chart and
 * file names come from indices and run ids, never from user text; user text appears in
 * scripts only through gnuplot_quote(). */
#ifndef FTLAB_REPORT_CHARTS_H
#define FTLAB_REPORT_CHARTS_H

#include <stddef.h>

#include "common/diag.h"
#include "reports/report.h"

/* CHART_BASES: untuned and tuned values per base model; CHART_COST: training time and
 * peak memory per base (report_bases.h; only when the runs use two or more bases). */
enum report_chart_kind { CHART_RESULTS, CHART_DELTA, CHART_LOSS, CHART_PARAM, CHART_BASES,
			 CHART_COST };

struct report_chart {
	enum report_chart_kind kind;
	char name[96];     /* file stem: charts/NAME.{gp,svg,png}, data/NAME*.tsv */
	char *title;       /* plain text (escape before printing) */
	char *caption;     /* plain text */
	long metric;       /* metric index for CHART_PARAM, -1 otherwise */
	long param;        /* parameter index for CHART_PARAM, -1 otherwise */
	bool key;          /* shown in report.md too (the headline charts) */
};

struct report_charts {
	struct report_chart *items;
	size_t n;
};

/* Writes data and scripts for every chart of r into dir (which must exist) and draws
 * them with gnuplot (timeout_s each). On error *out holds the charts made so far. */
int report_charts_make(struct report_charts *out, const struct report *r, const char *dir,
		       double timeout_s, struct diag *d) FT_WUR;
void report_charts_free(struct report_charts *c);

/* Groups of ok runs for a parameter chart: see report_charts.c. Exposed for tests:
 * the mean and the min/max over seeds of metric m at each value of parameter p, for runs
 * whose other non-seed parameters equal those of run `like` (or all runs when like < 0).
 * Returns the number of points written (at most cap) into xs (display text index into
 * out_labels), mean, lo, hi, count. */
size_t report_param_points(const struct report *r, size_t p, size_t m, long like,
			   const char **out_labels, double *mean, double *lo, double *hi,
			   size_t *count, size_t cap);

#endif
