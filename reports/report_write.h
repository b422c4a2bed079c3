/* report_write: renders a report directory from the report data model: index.html
 * (self-contained, inline SVG charts, every user string HTML-escaped, no external
 * resources), report.md (PNG charts, fit for a pull-request comment), data/NAME.tsv and the
 * gnuplot scripts charts/NAME.gp. Reads nothing but the report and the chart files it drew. */
#ifndef FTLAB_REPORT_WRITE_H
#define FTLAB_REPORT_WRITE_H

#include "common/diag.h"
#include "common/util.h"
#include "reports/report.h"

/* Writes the report into dir (created when missing). timeout_s bounds each gnuplot run.
 * Errors: FT_EUNSUPP when gnuplot is missing (names the package), FT_EIO, FT_ENOMEM. */
int report_write(const struct report *r, const char *dir, double timeout_s,
		 struct diag *d) FT_WUR;

/* Escapers (exposed for tests and for the CI summary). html: & < > " ' become entities and
 * control characters other than newline and tab are dropped. md: for a Markdown table cell:
 * HTML-escaped, | and Markdown punctuation backslash-escaped, newlines as <br>; at most
 * max_bytes of input (0 = all), cut on a UTF-8 boundary with an ellipsis. */
int html_escape(struct strbuf *out, const char *text) FT_WUR;
int md_escape(struct strbuf *out, const char *text, size_t max_bytes) FT_WUR;

#endif
