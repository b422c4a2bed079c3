/* preference: the losses of train.objective dpo, orpo and simpo (docs/engine.md) from the
 * summed log-probabilities of each example's chosen and rejected completions: the loss,
 * its derivatives by those log-probabilities (which become per-position weights of
 * model_backward_weighted), and the statistics TRL logs; and the forward/backward of one
 * micro-batch of pairs (rows as data_pair_rows: P chosen rows, then P rejected rows). */
#ifndef FTLAB_TRAIN_PREFERENCE_H
#define FTLAB_TRAIN_PREFERENCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/diag.h"
#include "schema/config.h"

struct model;
struct tok_set;

struct pref_params {
	enum train_objective objective; /* OBJECTIVE_DPO, _ORPO or _SIMPO */
	enum pref_loss_type loss_type;  /* dpo */
	double beta;                    /* dpo, simpo */
	double label_smoothing;         /* dpo sigmoid, simpo */
	double lambda;                  /* orpo */
	double gamma;                   /* simpo */
};

void pref_params_from_config(struct pref_params *out, const struct config_train *t);
/* True for the objectives that compare against a reference model (dpo). */
bool pref_needs_reference(const struct pref_params *p);

/* One example: the policy's summed log-probabilities of its completions, their lengths in
 * tokens (> 0), and the reference model's (dpo). */
struct pref_in {
	double logp_c, logp_r;
	double len_c, len_r;
	double ref_c, ref_r;
};

struct pref_out {
	double loss;               /* the example's loss (orpo: the odds-ratio term only) */
	double d_c, d_r;           /* d loss / d logp_c, d loss / d logp_r */
	double reward_c, reward_r; /* TRL's rewards/chosen and rewards/rejected */
	double logps_c, logps_r;   /* TRL's logps/chosen and logps/rejected */
	double log_odds;           /* orpo: log odds(chosen) - log odds(rejected) */
};

void pref_loss(struct pref_out *out, const struct pref_in *in, const struct pref_params *p);

/* Sums over the examples of a step or an evaluation. */
struct pref_stats {
	double n;                  /* examples counted */
	double loss;               /* summed per-example losses */
	double reward_c, reward_r, acc, margin, logps_c, logps_r;
	double log_odds, log_odds_ratio;       /* orpo: log odds and log sigmoid(log odds) */
	double nll, nll_tokens;    /* orpo: summed chosen-row token losses and their count */
};

/* The mean loss: loss / n, plus nll / nll_tokens for orpo. */
double pref_stats_loss(const struct pref_stats *s, const struct pref_params *p);
/* The mean of each logged statistic, named as TRL logs them ("rewards/chosen", ...; orpo
 * adds "nll_loss", "log_odds_ratio", "log_odds_chosen"): calls emit for each. */
void pref_stats_each(const struct pref_stats *s, const struct pref_params *p,
		     void (*emit)(void *ud, const char *name, double value), void *ud);

/* Examples of a pair batch that have a completion token on both sides (the others
 * contribute nothing), and the target tokens of their chosen rows (orpo's NLL). */
void pref_batch_counts(double *out_examples, double *out_nll_tokens, const int32_t *targets,
		       const uint8_t *comp, int P, int T);

/* One micro-batch of P pairs: the reference log-probabilities (ref (2P), or NULL: for dpo
 * the model with its LoRA adapter off), the policy forward, and with backward the
 * gradient of (sum of the batch's example losses) / n_examples + (orpo) the chosen rows'
 * token losses / nll_tokens, accumulated into the model's gradients. Adds to st. */
int pref_micro_batch(struct model *m, const int32_t *tokens, const int32_t *targets,
		     const uint8_t *comp, int P, int T, const double *ref,
		     const struct pref_params *p, double n_examples, double nll_tokens,
		     bool backward, struct pref_stats *st, struct diag *d) FT_WUR;

/* Summed log-probabilities of the chosen and rejected completions of every example of set
 * (out (2n): [2i] chosen, [2i + 1] rejected) under m in evaluation mode, max_pairs pairs
 * (2 max_pairs rows of at most T tokens) per forward. Used as DPO's reference with full
 * and freeze fine-tuning, computed once before training. */
int pref_set_logps(double *out, struct model *m, const struct tok_set *set, int max_pairs, int T,
		   int32_t pad_id, struct diag *d) FT_WUR;

/* The preference statistics of m on set (evaluation mode, no gradient); ref (2n, as
 * pref_set_logps) or NULL as in pref_micro_batch. */
int pref_evaluate(struct pref_stats *out, struct model *m, const struct tok_set *set,
		  const double *ref, const struct pref_params *p, int max_pairs, int T,
		  int32_t pad_id, bool nll_all, struct diag *d) FT_WUR;

#endif
