/* report_bases: the comparison of base models in a report whose runs use more than one
 * model.base: per base its best run by the rank metric, that run's untuned and tuned values
 * and paired differences (each run is paired with the evaluation of its own base), its cost,
 * the experiment's gates, and which base to pick. The same comparison groups runs by
 * method.type (a sweep over fine-tuning methods: which method to pick, at what cost).
 * A pure function of struct report. */
#ifndef FTLAB_REPORT_BASES_H
#define FTLAB_REPORT_BASES_H

#include <stdbool.h>
#include <stddef.h>

#include "reports/report.h"

/* A run's cost, from its history of split "cost" (NAN when not recorded). */
enum report_cost {
	COST_TRAIN_S,      /* train_seconds: wall seconds of training */
	COST_TRAIN_CPU_S,  /* train_cpu_seconds: process CPU seconds of training */
	COST_TOKENS_S,     /* tokens_per_s: training tokens processed per wall second */
	COST_TRAIN_PEAK,   /* train_peak_rss_bytes: peak resident memory up to the end of training */
	COST_PEAK_RSS,     /* peak_rss_bytes: peak resident memory of the whole run */
	COST_BASE_EVAL_S,  /* base_eval_seconds: wall seconds evaluating the untuned base */
	COST_TUNED_EVAL_S, /* tuned_eval_seconds: wall seconds evaluating the tuned model */
	COST_N
};
/* The metric name of a cost ("train_seconds", ...). */
const char *report_cost_name(enum report_cost c);

/* What the runs are grouped by, and how the report names it. */
struct report_group_kind {
	const char *key;   /* the experiment key: "model.base", "method.type" */
	const char *id;    /* section anchor and chart file stem: "bases", "methods" */
	const char *title; /* section heading: "Base models" */
	const char *noun;  /* one of them in a sentence: "base model", "method" */
};
extern const struct report_group_kind REPORT_GROUP_BASES, REPORT_GROUP_METHODS;

struct report_base {
	char *name;          /* model.base as the runs spell it */
	long run;            /* best finished run of this base by the rank metric, or -1 */
	size_t n_runs;       /* runs of this base, any status */
	double cost[COST_N]; /* of that run */
	size_t gates_judged, gates_passed; /* absolute and vs-base gates on that run */
	long gate_failed;    /* index into report.gates of the first failed gate, or -1 */
};

enum report_bases_verdict {
	BASES_NO_RESULT,   /* no base has a fine-tuned value of the rank metric */
	BASES_CLEAR,       /* the pick's interval is apart from every other candidate's */
	BASES_OVERLAP,     /* another candidate's interval overlaps the pick's */
	BASES_NO_INTERVAL, /* intervals are missing: the difference cannot be judged */
	BASES_ONE_LEFT     /* only one base has a result (or passes the gates) */
};

struct report_bases {
	const struct report_group_kind *kind;
	struct report_base *items; /* in first-seen run order */
	size_t n;                  /* 0 when the runs use fewer than two bases */
	long metric;               /* the rank metric (report_rank_metric), -1 without one */
	bool maximize;
	bool gated;                /* the experiment has absolute or vs-base gates */
	long pick;                 /* the base to pick, or -1 */
	long best;                 /* the best point estimate among the candidates, or -1 */
	long cheapest;             /* the candidate (overlapping the best) cheapest to train:
				    * training CPU seconds where both have them, else wall */
	enum report_bases_verdict verdict;
	bool candidate[64];        /* bases that compete (have a result and pass the gates);
				    * bases beyond 64 never do */
};

/* Fills *out for r, grouped by model.base. 0 or FT_ENOMEM (then *out is empty). Free with
 * report_bases_free. */
int report_bases_make(struct report_bases *out, const struct report *r) FT_WUR;
/* The same, grouped by kind's key. */
int report_groups_make(struct report_bases *out, const struct report *r,
		       const struct report_group_kind *kind) FT_WUR;
void report_bases_free(struct report_bases *b);

/* The model.base of a run: its swept parameter, else its resolved config's, else NULL.
 * The pointer is owned by the caller (free()). */
char *report_run_base(const struct report *r, const struct report_run *run);
/* The same for any scalar key ("method.type"). */
char *report_run_key(const struct report *r, const struct report_run *run, const char *key);

/* The short display name of a base: the last path component ("x/y.gguf" -> "y.gguf";
 * a directory's own name). Points into name. */
const char *report_base_short(const char *name);

/* The recommendation as one plain-text paragraph (the reasons, the numbers, honest about
 * overlapping intervals). Caller frees; NULL on FT_ENOMEM. */
char *report_bases_sentence(const struct report_bases *b, const struct report *r);

#endif
