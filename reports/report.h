/* report: the data a report shows, independent of where it came from (the store loader in
 * report_load.c, or tests) and of how it is drawn (HTML, Markdown, gnuplot charts).
 * Plain owned values built with the report_* builder functions below; report_free() frees
 * everything, including a baseline. Not thread-safe; one report belongs to one thread. */
#ifndef FTLAB_REPORT_H
#define FTLAB_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/diag.h"

/* One number with an optional confidence interval. */
struct report_value {
	bool present;
	bool has_ci;
	double v, lo, hi;
};

enum report_model { REPORT_BASE, REPORT_TUNED, REPORT_DELTA };

/* One metric's history (e.g. split "train", name "loss"): steps ascending as recorded. */
struct report_curve {
	char *split, *name;
	int64_t *steps;
	double *values;
	size_t n, cap;
};

/* One example evaluated by the base and the tuned model. */
struct report_prediction {
	char *split;
	int64_t example;
	char *prompt, *reference;
	char *base_output, *tuned_output; /* NULL when that model's prediction is missing */
	struct report_value base_score, tuned_score;
};

struct report_run {
	char *id;                /* run id (safe characters only are used for file names) */
	char *status;            /* queued running finished failed killed crashed cached stopped */
	char *error;             /* NULL unless the run failed */
	char *stopped;           /* stopped runs: why early termination stopped it, or NULL */
	int64_t step, total_steps; /* training steps done and planned (0 when unknown) */
	char *host, *backend;
	int64_t sweep_index;
	double started, finished; /* wall seconds, 0 when unknown */
	char **param_values;     /* [report.n_params] display text ("" when not swept here) */
	char *config_json;       /* resolved config (canonical JSON) or NULL */
	/* [report.n_metrics] each: base model, tuned model, paired difference tuned - base */
	struct report_value *base, *tuned, *delta;
	size_t cap_metrics;
	struct report_curve *curves;
	size_t n_curves;
	struct report_prediction *preds;
	size_t n_preds;
};

/* A gate of the experiment file (gates[]), as far as a report judges it: absolute
 * (min/max on the fine-tuned value) and vs base (min_delta on the paired difference);
 * vs baseline gates are kept but only `ftlab ci --baseline` evaluates them. */
enum report_gate_vs { REPORT_GATE_ABSOLUTE, REPORT_GATE_BASE, REPORT_GATE_BASELINE };
struct report_gate {
	char *metric; /* "split.metric" */
	enum report_gate_vs vs;
	bool has_min, has_max, has_min_delta;
	double min, max, min_delta;
};

struct report {
	char *experiment, *description, *source_path;
	/* Provenance of the newest invocation that produced these runs. */
	char *commit, *branch, *host, *remote;
	bool is_repo, dirty;
	double date;             /* wall seconds */
	char *objective;         /* "test.exact_match" or NULL */
	bool objective_set, maximize;
	struct report_gate *gates; /* the experiment's gates (from its spec) */
	size_t n_gates;
	char **params;           /* swept parameter keys (dotted paths) */
	size_t n_params;
	char **metrics;          /* "split.metric", in first-seen order */
	size_t n_metrics;
	struct report_run *runs;
	size_t n_runs;
	/* --baseline: another experiment's report (or a single run of one), and its label. */
	struct report *baseline;
	char *baseline_label;
};

/* Allocates an empty report for experiment `name`. NULL when memory runs out. */
struct report *report_new(const char *name);
void report_free(struct report *r);

/* Setters copy their strings. All return 0 or FT_ENOMEM. */
int report_set_text(char **field, const char *value) FT_WUR;
/* Index of parameter key (added when new) in *out. */
int report_param_index(struct report *r, const char *key, size_t *out) FT_WUR;
/* Index of metric "split.metric" (added when new; every run grows with it). */
int report_metric_index(struct report *r, const char *split_metric, size_t *out) FT_WUR;
/* Appends a run; *out points into r->runs and is valid until the next report_add_run. */
int report_add_run(struct report *r, const char *id, const char *status,
		   struct report_run **out) FT_WUR;
int report_run_set_param(struct report *r, struct report_run *run, const char *key,
			 const char *value) FT_WUR;
/* Records a result; ci bounds are used when has_ci. */
int report_run_set_result(struct report *r, struct report_run *run, enum report_model model,
			  const char *split, const char *metric, double value, bool has_ci,
			  double lo, double hi) FT_WUR;
int report_run_add_point(struct report_run *run, const char *split, const char *name,
			 int64_t step, double value) FT_WUR;
/* Adds or completes the prediction for (split, example) of one model (base or tuned). */
int report_run_add_prediction(struct report_run *run, enum report_model model,
			      const char *split, int64_t example, const char *prompt,
			      const char *reference, const char *output, bool has_score,
			      double score) FT_WUR;

/* Appends a gate (metric copied). 0 or FT_ENOMEM. */
int report_add_gate(struct report *r, const struct report_gate *g) FT_WUR;
/* Whether run passes gate g: 1 pass, 0 fail (or the metric was not recorded), -1 when a
 * report cannot judge it (vs baseline). */
int report_gate_check(const struct report *r, const struct report_run *run,
		      const struct report_gate *g);
/* The last recorded value of a run's metric history (split, name), or NAN. The cost of a
 * run is its history of split "cost" (train_seconds, tokens_per_s, peak_rss_bytes, ...). */
double report_run_last(const struct report_run *run, const char *split, const char *name);

/* Derived views. */
/* True for finished and cached runs. */
bool report_run_ok(const struct report_run *run);
/* True for runs that ended otherwise: failed, killed, crashed (not stopped, not active). */
bool report_run_failed(const struct report_run *run);
/* Early termination: how many runs it stopped, the training steps they did not train,
 * and the steps all runs planned (runs whose plan is unknown count for neither). */
void report_stopped_steps(const struct report *r, size_t *out_n, int64_t *out_saved,
			  int64_t *out_planned);
/* The metric index the best run is chosen by (the objective when it is a known metric,
 * else the first metric); -1 when there are no metrics. *out_maximize tells the goal
 * (objective goal, else minimize for loss/perplexity and maximize otherwise). */
long report_rank_metric(const struct report *r, bool *out_maximize);
/* Whether higher is better for metric "split.metric": the objective's goal for the
 * objective, else false for names ending in loss or perplexity and true otherwise. */
bool report_metric_maximize(const struct report *r, const char *metric);
/* Index of metric "split.metric", or -1. */
long report_metric_find(const struct report *r, const char *metric);
/* Index of the best finished/cached run by the rank metric; -1 when none has it. */
long report_best_run(const struct report *r);
/* True when parameter key names a seed (the reports aggregate over it). */
bool report_param_is_seed(const char *key);
/* A file-name-safe token for a run: the id when it is [A-Za-z0-9_-]{1,64}, else "runN". */
void report_run_token(char *out, size_t n, const struct report *r, size_t run_index);
/* Curve (split, name) of a run, or NULL. */
const struct report_curve *report_run_curve(const struct report_run *run, const char *split,
					    const char *name);

/* Config differences: the flattened keys (dotted, sorted) whose values are not all equal
 * across the given config JSON texts (NULL entries are skipped). *out_values is a row-major
 * [n_keys][n_configs] table of display values ("" when absent). All owned by the caller:
 * free with report_diff_free. Returns 0, FT_ENOMEM, or FT_EINVAL when a text is not JSON. */
struct report_diff {
	char **keys;
	size_t n_keys, n_configs;
	char **values;
};
int report_config_diff(struct report_diff *out, const char *const *configs, size_t n,
		       struct diag *d) FT_WUR;
void report_diff_free(struct report_diff *diff);

/* Formats a number compactly (%.4g, "—" style placeholders are the caller's). */
void report_fmt_num(char *out, size_t n, double v);

#endif
