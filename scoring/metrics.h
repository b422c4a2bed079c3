/* metrics: text metrics over (prediction, reference) pairs, pure C, no model: exact
 * match and token F1 (SQuAD-style normalisation), BLEU (sacreBLEU 2.4 defaults, 13a
 * tokenisation), ROUGE-L F (rouge-score defaults, no stemmer) and chrF (sacreBLEU CHRF
 * defaults). Exact definitions: docs/data.md. Bootstrap resampling lives in bootstrap.h. */
#ifndef FTLAB_METRICS_H
#define FTLAB_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/diag.h"

enum metric_kind {
	METRIC_EXACT_MATCH, /* 0..1, mean over examples */
	METRIC_F1,          /* 0..1, mean of SQuAD token F1 */
	METRIC_BLEU,        /* 0..100, corpus BLEU from summed statistics */
	METRIC_ROUGE_L,     /* 0..1, mean of ROUGE-L F */
	METRIC_CHRF,        /* 0..100, corpus chrF from summed statistics */
	METRIC_N_KINDS
};

/* "exact_match", "f1", "bleu", "rouge_l", "chrf". */
const char *metric_name(enum metric_kind k);
/* The kind for a name; -1 when the name is not a text metric. */
int metric_from_name(const char *name);

/* Sufficient statistics: a metric's corpus value is a function of the sum of these
 * vectors over examples, which is what the bootstrap resamples.
 * mean metrics: {score}; BLEU: {hyp_len, ref_len, correct[1..4], total[1..4]};
 * chrF: {hyp, ref, match} for each char order 1..6. */
#define METRIC_STATS_MAX 18
size_t metric_stats_dim(enum metric_kind k);

/* Statistics of one pair into out[metric_stats_dim(k)]. Strings are UTF-8 (invalid
 * bytes count as one character each). Returns 0 or FT_ENOMEM. */
int metric_pair_stats(double *out, enum metric_kind k, const char *prediction,
		      const char *reference) FT_WUR;
/* The corpus value from summed statistics over n examples (n > 0). */
double metric_from_stats(enum metric_kind k, const double *sum, size_t n);

/* Per-example score: EM, F1, ROUGE-L F as above; sentence BLEU as sacrebleu's
 * sentence_bleu (effective order); sentence chrF as sacrebleu's sentence_chrf. */
int metric_sentence(double *out, enum metric_kind k, const char *prediction,
		    const char *reference) FT_WUR;
/* Corpus value over n pairs (sacrebleu corpus_bleu / corpus_chrf; means otherwise). */
int metric_corpus(double *out, enum metric_kind k, const char *const *predictions,
		  const char *const *references, size_t n) FT_WUR;

/* Exposed for tests and docs: the SQuAD-normalised text (caller frees), the 13a
 * tokenisation (space-joined, caller frees), rouge-score tokens (space-joined). */
char *metric_squad_normalize(const char *s);
char *metric_tokenize_13a(const char *s);
char *metric_rouge_tokens(const char *s);

#endif
