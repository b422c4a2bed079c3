/* tok_internal: the tokenizer's data shared by the builder (tokenizer.c, GGUF metadata),
 * the SentencePiece builder (spm.c), the tokenizer.json reader (tokenizer_json.c) and
 * writer (tokenizer_write.c). Not for use outside tok/. */
#ifndef FTLAB_TOK_INTERNAL_H
#define FTLAB_TOK_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <pthread.h>

#include "backends/native/io/model_file.h"
#include "backends/native/tok/tokenizer.h"

enum tok_attr { TA_NONE = 0, TA_NORMAL = 1, TA_SPECIAL = 2, TA_ADDED = 3 };

/* Byte-level BPE (GPT-2 alphabet) or SentencePiece-style BPE (text kept as UTF-8, spaces
 * as U+2581 "▁", characters missing from the vocabulary as <0xNN> byte tokens). */
enum tok_model { TM_BYTE_LEVEL, TM_SPM };
/* When a "▁" is put before a piece (Hugging Face Metaspace prepend_scheme). */
enum tok_prepend { TP_NEVER, TP_FIRST, TP_ALWAYS };

#define TOK_META "\xe2\x96\x81" /* U+2581, SentencePiece's space */
/* Bounds that keep hostile files cheap: an added token longer than this is refused (the
 * trie walk at each text position is at most this long), and a token longer than this
 * is not cut into merges (recovering merges costs its length squared). Real vocabularies
 * stay far below (Gemma: 48 bytes). */
#define TOK_MAX_ADDED_LEN 1024
#define TOK_MAX_MERGE_LEN 1024
#define TOK_META_LEN 3

/* How a Split step treats matches (Hugging Face SplitDelimiterBehavior). */
enum split_behavior { SB_ISOLATED, SB_REMOVED, SB_MERGED_PREV, SB_MERGED_NEXT, SB_CONTIGUOUS };

struct pre_step {
	pcre2_code *re;      /* NULL for a step that only adds a prefix space */
	char *pattern;       /* the regex as given (for writing tokenizer.json) */
	enum split_behavior behavior;
	bool invert;
	bool prefix_space;   /* ByteLevel add_prefix_space */
	bool metaspace;      /* Metaspace: ' ' -> "▁", prefix per `prepend`, split per `split` */
	enum tok_prepend prepend;
	bool split;
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
	size_t n_merges;
	int32_t byte_tok[256]; /* id of the single-byte token for each byte, -1 if none */
	struct added_tok *added;
	size_t n_added;
	struct pre_step steps[8];
	size_t n_steps;
	bool ignore_merges;
	enum tok_model model;
	bool byte_fallback;  /* characters missing from the vocabulary become <0xNN> tokens */
	bool fuse_unk;       /* consecutive unknown characters give one unk */
	/* normalizer, applied to every piece between added tokens, before the steps */
	bool norm_replace;   /* ' ' -> "▁" (Replace) */
	bool norm_prepend;   /* "▁" before every non-empty piece (Prepend) */
	bool norm_nfc;       /* declared NFC (not applied: input is expected to be NFC) */
	/* decoder (TM_SPM): "▁" -> ' ', <0xNN> -> byte, then strip_left leading spaces of
	 * the whole text (Strip), or one space of the first token (Metaspace decoder) */
	int strip_left;
	bool strip_first_meta;
	int32_t fb_tok[256]; /* <0xNN> token of each byte, -1 if none */
	int16_t *tok_byte;   /* (n_vocab) byte value of a <0xNN> token, -1 otherwise; TM_SPM */
	/* added-token trie: (node << 8 | byte) -> child, open addressing */
	uint64_t *trie_keys;
	int32_t *trie_child;
	size_t trie_cap;
	int32_t *trie_term;  /* (nodes) index into added[], -1 when no token ends there */
	size_t trie_nodes;
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
/* Adds a merge by ids (left, right -> result); an existing pair keeps its rank. */
void tok_add_merge_ids(struct tokenizer *t, int32_t a, int32_t b, uint32_t rank, int32_t result);
/* Appends a pre-tokenizer step with regex `pattern` (PCRE2, UTF + Unicode properties). */
int tok_add_step(struct tokenizer *t, const char *pattern, size_t plen, enum split_behavior b,
		 bool invert, bool prefix_space, const char *path, struct diag *d);
/* Appends a Metaspace step. */
int tok_add_metaspace(struct tokenizer *t, enum tok_prepend prepend, bool split, const char *path,
		      struct diag *d);
/* Builds merges from the vocabulary as Hugging Face's generate_merges does: every split
 * of a token into two vocabulary tokens is a merge, ordered by the score of the merged
 * token (highest first; scores[i] belongs to id i), then by the longer left part, then
 * by the longer right part, then by the ids of left and right. */
int tok_merges_from_scores(struct tokenizer *t, const float *scores, const char *path,
			   struct diag *d);
/* Finishes: added-token table, byte tokens. */
int tok_finish(struct tokenizer *t, const char *path, struct diag *d);
int32_t tok_lookup(const struct tokenizer *t, const char *text, size_t len);
/* Merges in rank order as (left, right) id pairs; caller frees. */
int tok_merge_list(const struct tokenizer *t, int32_t **out_pairs, size_t *out_n);
/* From GGUF metadata with tokenizer.ggml.model = "llama" (spm.c). */
int tok_from_gguf_spm(struct tokenizer **out, const struct model_file *mf, struct diag *d);

/* The GPT-2 byte-level regex (Hugging Face ByteLevel pre-tokenizer). */
extern const char TOK_RE_GPT2[];

#endif
