/* tok_internal: the tokenizer's data shared by the builder (tokenizer.c, GGUF metadata)
 * and the tokenizer.json reader (tokenizer_json.c). Not for use outside tok/. */
#ifndef FTLAB_TOK_INTERNAL_H
#define FTLAB_TOK_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <pthread.h>

#include "backends/native/tok/tokenizer.h"

enum tok_attr { TA_NONE = 0, TA_NORMAL = 1, TA_SPECIAL = 2, TA_ADDED = 3 };

/* How a Split step treats matches (Hugging Face SplitDelimiterBehavior). */
enum split_behavior { SB_ISOLATED, SB_REMOVED, SB_MERGED_PREV, SB_MERGED_NEXT, SB_CONTIGUOUS };

struct pre_step {
	pcre2_code *re;      /* NULL for a step that only adds a prefix space */
	enum split_behavior behavior;
	bool invert;
	bool prefix_space;   /* ByteLevel add_prefix_space */
};

struct added_tok {
	int32_t id;
	const char *text; /* borrowed from tokens[] */
	size_t len;
	bool special;
};

struct word_cache;

struct tokenizer {
	size_t n_vocab;
	char **tokens;       /* (n_vocab) text as stored; NULL for an unused id */
	size_t *token_len;
	uint8_t *attr;       /* enum tok_attr */
	/* vocabulary text -> id, open addressing, capacity a power of two */
	int32_t *vmap;
	size_t vmap_cap;
	/* merges: (left << 32 | right) -> rank and result, open addressing */
	uint64_t *mkeys;
	uint32_t *mrank;
	int32_t *mresult;
	size_t mcap;
	int32_t byte_tok[256]; /* id of the single-byte token for each byte, -1 if none */
	struct added_tok *added;
	size_t n_added;
	struct pre_step steps[8];
	size_t n_steps;
	bool ignore_merges;
	int32_t bos, eos, pad, unk;
	bool add_bos, add_eos;
	char *chat_template;
	pthread_mutex_t cache_mu;
	struct word_cache *cache;
};

/* Allocates an empty tokenizer with room for n_vocab ids. */
int tok_alloc(struct tokenizer **out, size_t n_vocab, const char *path, struct diag *d);
/* Sets token id's text (copied) and attribute; a duplicate text keeps the first id. */
int tok_set_token(struct tokenizer *t, int32_t id, const char *text, size_t len, int attr,
		  const char *path, struct diag *d);
/* Builds the vocabulary index; call after every tok_set_token. */
int tok_index_vocab(struct tokenizer *t, const char *path, struct diag *d);
/* Adds merge rank `rank` of (left, right) given as token texts. */
int tok_add_merge(struct tokenizer *t, const char *left, size_t llen, const char *right,
		  size_t rlen, uint32_t rank, const char *path, struct diag *d);
int tok_alloc_merges(struct tokenizer *t, size_t n_merges, const char *path, struct diag *d);
/* Appends a pre-tokenizer step with regex `pattern` (PCRE2, UTF + Unicode properties). */
int tok_add_step(struct tokenizer *t, const char *pattern, size_t plen, enum split_behavior b,
		 bool invert, bool prefix_space, const char *path, struct diag *d);
/* Finishes: added-token table, byte tokens. */
int tok_finish(struct tokenizer *t, const char *path, struct diag *d);
int32_t tok_lookup(const struct tokenizer *t, const char *text, size_t len);

/* The GPT-2 byte-level regex (Hugging Face ByteLevel pre-tokenizer). */
extern const char TOK_RE_GPT2[];

#endif
