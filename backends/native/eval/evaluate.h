/* evaluate: scores a model on a tokenised split. Teacher-forced loss, perplexity and token
 * accuracy on the loss-masked (response) tokens; batched generation from each example's
 * prompt, cut at stop strings, scored with the text metrics. eval_emit reports values,
 * bootstrap intervals, paired base-vs-tuned differences and predictions to a run_sink.
 * The model is borrowed and left in evaluation mode (model_set_training(m, false)). */
#ifndef FTLAB_EVALUATE_H
#define FTLAB_EVALUATE_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backends/backend.h"
#include "backends/native/data/loader.h"
#include "scoring/metrics.h"
#include "backends/native/model/model.h"
#include "backends/native/tok/tokenizer.h"
#include "common/diag.h"
#include "schema/config.h"

/* Teacher-forced metrics (computed from one forward pass per batch). */
enum tf_metric { TF_LOSS, TF_PERPLEXITY, TF_TOKEN_ACCURACY, TF_N };
/* Likelihood metrics: the summed log-probability of each choice after the prompt
 * (lm-evaluation-harness's acc and acc_norm), and of the chosen against the rejected
 * completion of preference pairs. */
enum lik_metric {
	LIK_CHOICE_ACCURACY, LIK_CHOICE_ACCURACY_NORM, LIK_PREFERENCE_ACCURACY,
	LIK_PREFERENCE_MARGIN, LIK_N
};

struct eval_settings {
	bool want_tf[TF_N];
	bool want_gen[METRIC_N_KINDS];
	bool want_lik[LIK_N];
	int batch_size;          /* examples per forward / per generation batch (<= model max_batch) */
	int seq_len;             /* the model's max_seq: longer examples are cut for the forward */
	/* generation (eval.generate) */
	int max_new_tokens;
	double temperature;
	int top_k;
	double top_p;
	const char *const *stop; /* stop strings (borrowed) */
	size_t n_stop;
	uint64_t seed;           /* sampling and bootstrap */
	int bootstrap;           /* resamples (0 = no intervals) */
	double level;            /* interval level, 0.95 */
	int samples;             /* predictions sent to the sink per model (-1 = all) */
	volatile sig_atomic_t *stop_flag; /* polled between batches; NULL = never */
	/* Progress: examples done of total, per phase ("forward" | "generate"). */
	void (*progress)(void *ud, const char *phase, size_t done, size_t total);
	void *progress_ud;
};

/* Fills s from the config's eval section. FT_EINVAL names an unknown metric. */
int eval_settings_from_config(struct eval_settings *s, const struct config_eval *ev, uint64_t seed,
			      int batch_size, int seq_len, struct diag *d) FT_WUR;
/* Parses "loss,exact_match,..." into s->want_*; FT_EINVAL naming the unknown one. */
int eval_settings_metrics(struct eval_settings *s, const char *const *names, size_t n,
			  struct diag *d) FT_WUR;
bool eval_wants_generation(const struct eval_settings *s);

struct eval_result {
	size_t n;
	double *tf_rows;        /* (n, 3): summed token loss, loss tokens, argmax-correct tokens */
	double *choice_rows;    /* (n, 2): argmax of the log-probabilities is the answer; of the
				 * log-probabilities per character */
	size_t *choice_pick;    /* (n) the choice with the highest log-probability */
	double *choice_lp;      /* the summed log-probability of every choice, example by
				 * example (choices[0].n values, then choices[1].n, ...) */
	double *pref_rows;      /* (n, 2): log p(chosen) > log p(rejected); their difference */
	char **outputs;         /* (n) generated text, NULL without generation */
	double *rows[METRIC_N_KINDS]; /* (n, metric_stats_dim) per requested text metric */
	double tf_seconds, gen_seconds;
	long gen_tokens;
};

/* Evaluates m on set. FT_EINVAL when generation metrics are asked for data without
 * references (text format), choice metrics for a set without prepared choices
 * (data_prepare_choices) or preference metrics for one without pairs; FT_EINTR when
 * stop_flag was raised. */
int eval_split(struct eval_result *out, struct model *m, const struct tokenizer *tok,
	       const struct tok_set *set, const struct eval_settings *s, struct diag *d) FT_WUR;
void eval_result_free(struct eval_result *r);

/* The value of one computed metric over all examples of r (the point estimate eval_emit
 * reports), by name ("loss", "token_accuracy", "exact_match", ...). FT_EINVAL when s did
 * not ask for it. */
int eval_value(double *out, const struct eval_result *r, const struct eval_settings *s,
	       const char *metric, struct diag *d) FT_WUR;

/* The value of every requested metric, with bootstrap intervals, reported through
 * sink->result. With base != NULL: "base", "tuned" and "delta" (tuned - base over the
 * same resampled examples); otherwise `model` names the one result. Predictions: the
 * first s->samples examples of each model through sink->prediction, scored with the
 * first requested text metric. pred_path (may be NULL): every prediction as JSON Lines. */
int eval_emit(struct run_sink *sink, const char *split, const char *model,
	      const struct eval_result *base, const struct eval_result *tuned,
	      const struct tok_set *set, const struct eval_settings *s, const char *pred_path,
	      struct diag *d) FT_WUR;

/* The output text from generated ids: decoded without special tokens, cut at the first
 * stop string, leading and trailing whitespace removed. Caller frees. */
int eval_output_text(char **out, const struct tokenizer *tok, const int32_t *ids, size_t n,
		     const char *const *stop, size_t n_stop) FT_WUR;

/* A model for evaluation from a loaded file: inference only, or with a PEFT LoRA adapter
 * directory (rank, alpha, targets from its adapter_config.json; q/k rows reordered for
 * GGUF bases) whose tensors are copied into the LoRA parameters. Activations are planned
 * for (batch, seq). FT_EINVAL names an adapter tensor that does not fit the model. */
int eval_model_create(struct model **out, const struct model_file *mf, const char *adapter_dir,
		      int batch, int seq, struct diag *d) FT_WUR;

/* "loss" | "perplexity" | "token_accuracy". */
const char *tf_metric_name(enum tf_metric m);
/* "choice_accuracy" | "choice_accuracy_norm" | "preference_accuracy" | "preference_margin". */
const char *lik_metric_name(enum lik_metric m);
/* True when a choice metric is asked for (the caller prepares the choices). */
bool eval_wants_choices(const struct eval_settings *s);

#endif
