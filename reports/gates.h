/* gates: evaluates an experiment's CI gates (schema/config.h struct config_gate) against a
 * report, and writes the results as JUnit XML (one test case per gate and per run) and as
 * a Markdown summary. The gated run is the report's best run (sweep objective, else the
 * first metric). Pure functions of their inputs; no store access. */
#ifndef FTLAB_GATES_H
#define FTLAB_GATES_H

#include <stdbool.h>
#include <stddef.h>

#include "common/diag.h"
#include "common/util.h"
#include "reports/report.h"
#include "schema/config.h"

enum gate_outcome {
	GATE_PASS,
	GATE_FAIL,  /* the numbers miss the threshold, or the metric was not recorded */
	GATE_ERROR  /* the gate cannot be evaluated: vs: baseline without a baseline */
};

struct gate_result {
	const struct config_gate *gate; /* borrowed */
	enum gate_outcome outcome;
	char name[320];     /* "test.exact_match vs base: min_delta 0.2" */
	char message[768];  /* the numbers: "0.55 - base 0.21 = +0.34 >= 0.2 (CI [0.27, 0.41])" */
	char run_id[128];   /* the gated run ("" when none) */
	double value;       /* the gated quantity (value, difference or regression); NaN if none */
};

/* Evaluates n gates against r (and r->baseline for vs: baseline gates). *out (n entries)
 * belongs to the caller (free()). Returns 0 or FT_ENOMEM; gate failures are outcomes. */
int gates_evaluate(struct gate_result **out, const struct config_gate *gates, size_t n,
		   const struct report *r, struct diag *d) FT_WUR;

/* Counts: *n_fail and *n_error over n results. */
void gates_count(const struct gate_result *res, size_t n, size_t *n_fail, size_t *n_error);

/* JUnit XML in the Jenkins/Ant layout: <testsuites> with a suite "<exp>.gates" (one case per
 * gate, <failure> with the numbers, <error> for gates that cannot be evaluated) and a suite
 * "<exp>.runs" (one case per run, <failure> for failed/crashed/killed runs with the error,
 * <skipped> for runs that never ran). Text is XML-escaped; bytes that XML forbids (control
 * characters, invalid UTF-8) are replaced. */
int gates_write_junit(const char *path, const struct report *r, const struct gate_result *res,
		      size_t n, double elapsed_s, struct diag *d) FT_WUR;

/* A Markdown summary: verdict line, gate table, run table (status and the rank metric). */
int gates_write_markdown(const char *path, const struct report *r,
			 const struct gate_result *res, size_t n, struct diag *d) FT_WUR;

/* Appends text escaped for XML attribute and element content (exposed for tests). */
int xml_escape(struct strbuf *out, const char *text) FT_WUR;

#endif
