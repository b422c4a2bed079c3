/* loader: tokenises templated examples into ids and a loss mask (truncation counted),
 * and batches them for training: (B, T) tokens and next-token targets (-1 = no loss),
 * padded or packed, or preference pairs as chosen and rejected rows, shuffled per epoch
 * from the seed, with a cursor that a checkpoint saves and restores. The tokenizer is reached through struct data_tok so that this
 * layer does not depend on tok/ (data_tok_from_tokenizer adapts the real one). */
#ifndef FTLAB_LOADER_H
#define FTLAB_LOADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backends/native/data/dataset.h"
#include "backends/native/data/template.h"
#include "common/diag.h"

/* What the loader needs from a tokenizer. encode returns malloc'd ids (caller frees);
 * parse_special: text such as "<|im_end|>" becomes its special token. */
struct data_tok {
	void *ud;
	int (*encode)(void *ud, const char *text, size_t len, bool parse_special, int32_t **out_ids,
		      size_t *out_n, struct diag *d);
	int32_t eos_id; /* -1 when the tokenizer has none: SEG_EOS segments add nothing */
	int32_t bos_id; /* prepended when add_bos */
	bool add_bos;
	/* Optional: the same for a segment that continues an example (every segment but the
	 * first); NULL uses encode. SentencePiece tokenizers put no "▁" prefix there. */
	int (*encode_more)(void *ud, const char *text, size_t len, bool parse_special,
			   int32_t **out_ids, size_t *out_n, struct diag *d);
};

/* One tokenised example. */
struct tok_example {
	int32_t *ids;      /* (n) */
	uint8_t *loss;     /* (n) 1 where the token is a training target */
	size_t n;
	size_t n_prompt;   /* ids[0..n_prompt) is the generation prompt (<= n) */
	bool truncated;    /* cut to max_length */
	size_t record;     /* index of the record in its dataset */
	char *prompt;      /* user-facing input, for predictions */
	char *reference;   /* expected output, or NULL (text format) */
};

/* The multiple-choice sequences of one example: its generation prompt followed by each
 * choice (data_prepare_choices). */
struct tok_choices {
	struct tok_example *seq; /* (n): loss marks the choice's own tokens */
	size_t n;
	size_t answer;           /* index of the right choice */
	size_t *chars;           /* (n) length of each choice in characters (Unicode code points) */
};

struct tok_set {
	struct tok_example *ex;
	size_t n;
	size_t n_truncated;   /* examples cut to max_length */
	size_t n_no_loss;     /* examples left without any loss token (after truncation) */
	size_t n_tokens, n_loss_tokens;
	/* Preference data: (2n) the chosen [2i] and rejected [2i+1] sequence of example i, the
	 * loss marking the completion (whatever train_on_inputs says; ex holds the chosen one
	 * as SFT sees it). NULL for other formats. */
	struct tok_example *pair;
	size_t n_pair_truncated; /* examples with a chosen or rejected sequence cut */
	size_t n_pair_empty;     /* examples whose chosen or rejected completion has no token left */
	struct tok_choices *choices; /* (n) or NULL: multiple choice, when prepared */
	size_t n_choice_truncated;   /* choice sequences cut to max_length */
};

/* Templates and tokenises every record. max_length > 0 truncates from the right.
 * train_on_inputs: every token is a target, not only SEG_TRAIN ones. */
int data_tokenize(struct tok_set **out, const struct dataset *ds, const struct template_spec *ts,
		  const struct data_tok *tok, int max_length, bool train_on_inputs,
		  struct diag *d) FT_WUR;
/* One templated example (used by data_tokenize and by tests). */
int data_tokenize_one(struct tok_example *out, const struct templated *t, const struct data_tok *tok,
		      int max_length, bool train_on_inputs, struct diag *d) FT_WUR;
void tok_example_clear(struct tok_example *e);
void tok_set_free(struct tok_set *s);
/* Frees the set's choice sequences (choices becomes NULL). */
void tok_set_clear_choices(struct tok_set *s);

struct loader_opts {
	int batch_size;   /* B (with pairs: B examples, 2B rows) */
	int seq_len;      /* longest T (model.context / max_length) */
	bool packing;     /* several examples per row (attention is NOT masked between them) */
	bool shuffle;     /* a new permutation each epoch */
	bool fixed_len;   /* T = seq_len always; otherwise T = longest row of the batch, rounded up to 8 */
	uint64_t seed;
	int32_t pad_id;   /* token used for padding (its targets are -1) */
	bool pairs;       /* preference pairs (the set has them): rows as data_pair_rows */
	bool nll_all;     /* pairs: chosen rows have a target at every position (orpo with
			   * train_on_inputs) */
};

/* Where the loader is: epoch (0-based) and the next position in that epoch's order. */
struct data_cursor {
	uint64_t epoch;
	uint64_t position;
	uint64_t seed;    /* checked on restore */
	uint64_t n_examples;
};

struct batch {
	int B, T;
	int32_t *tokens;  /* (B, T), borrowed until the next loader_next */
	int32_t *targets; /* (B, T): the next token where it is a training target, else -1 */
	int64_t n_targets; /* targets that are not -1 */
	int rows;         /* rows holding data (the rest is padding at the end of an epoch) */
	int examples;     /* examples in this batch */
	const size_t *idx; /* (examples) their indices in the set (pairs only; else NULL) */
	const uint8_t *comp; /* (rows, T) pairs: 1 where the target is a completion token */
	uint64_t epoch;   /* epoch this batch belongs to */
	bool last_of_epoch;
};

struct loader;

int loader_create(struct loader **out, const struct tok_set *set, const struct loader_opts *o,
		  struct diag *d) FT_WUR;
/* Fills b with the next batch, starting a new epoch (new permutation) when the current
 * one is done. FT_EINVAL when the set is empty. */
int loader_next(struct loader *l, struct batch *b) FT_WUR;
/* Batches in one epoch (with packing: of the current epoch's order). */
size_t loader_batches_per_epoch(struct loader *l);
void loader_get_cursor(const struct loader *l, struct data_cursor *out);
/* Restores a saved cursor; FT_EINVAL when it belongs to other data or another seed. */
int loader_set_cursor(struct loader *l, const struct data_cursor *c, struct diag *d) FT_WUR;
void loader_free(struct loader *l);

/* Fills t[0..n) with targets for one example: t[i] = ids[i+1] when loss[i+1], else -1;
 * the last position is -1. */
void data_targets(int32_t *t, const int32_t *ids, const uint8_t *loss, size_t n);

/* Preference pairs as (2P, T) rows: row p is the chosen sequence of example idx[p] of set
 * (which has pairs), row P + p its rejected one, cut to T tokens and padded with pad_id.
 * targets as data_targets on the completion (nll_all: every next token of the chosen
 * rows); comp marks the positions whose target is a completion token, i.e. those summed
 * into the completion's log-probability. */
void data_pair_rows(int32_t *tokens, int32_t *targets, uint8_t *comp, const struct tok_set *set,
		    const size_t *idx, int P, int T, int32_t pad_id, bool nll_all);
/* The longest sequence of those pairs, in tokens. */
size_t data_pair_len(const struct tok_set *set, const size_t *idx, int P);

#endif
