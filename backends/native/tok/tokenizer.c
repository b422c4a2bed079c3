/* tokenizer: BPE, byte-level or SentencePiece-style. Text is split at added/special tokens
 * (a trie, longest match), each piece is normalized (SentencePiece: ' ' -> "▁", prefix),
 * split by the pre-tokenizer's steps (PCRE2 regexes, Metaspace), turned into symbols (bytes
 * of the GPT-2 alphabet, or UTF-8 characters with <0xNN> byte fallback) and merged lowest
 * rank first, leftmost on ties, with a heap (as Hugging Face tokenizers does). Merge ranks
 * live in a hash table; encoded words are cached. */
#include "backends/native/tok/tok_internal.h"

#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "common/banned.h"

const char TOK_RE_GPT2[] =
	"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char RE_LLAMA3[] =
	"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}|"
	" ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char RE_QWEN2[] =
	"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}|"
	" ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

#define CACHE_CAP (1u << 16)
#define TOK_MATCH_LIMIT 1000000u /* PCRE2 backtracking steps per match */
#define CACHE_MAX_KEY 256

struct centry {
	char *key;
	size_t klen;
	uint64_t h;
	int32_t *ids;
	size_t n;
};
struct word_cache {
	struct centry *e; /* CACHE_CAP slots */
	size_t count;
};

/* ---- byte-level mapping (GPT-2): every byte is a printable code point ---------------- */

static uint16_t byte_cp[256];
static int16_t cp_byte[512];
static pthread_once_t map_once = PTHREAD_ONCE_INIT;

static void map_init(void)
{
	int extra = 0;
	for (int i = 0; i < 512; i++)
		cp_byte[i] = -1;
	for (int b = 0; b < 256; b++) {
		bool keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
		byte_cp[b] = (uint16_t)(keep ? b : 256 + extra++);
		cp_byte[byte_cp[b]] = (int16_t)b;
	}
}

static size_t utf8_put(char *o, uint32_t cp)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xc0 | (cp >> 6));
		o[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	o[0] = (char)(0xe0 | (cp >> 12));
	o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
	o[2] = (char)(0x80 | (cp & 0x3f));
	return 3;
}

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	unsigned c = s[0];
	if (c < 0x80)
		return 1;
	size_t k;
	uint32_t cp, min;
	if ((c & 0xe0) == 0xc0) {
		k = 2, cp = c & 0x1f, min = 0x80;
	} else if ((c & 0xf0) == 0xe0) {
		k = 3, cp = c & 0x0f, min = 0x800;
	} else if ((c & 0xf8) == 0xf0) {
		k = 4, cp = c & 0x07, min = 0x10000;
	} else {
		return 0;
	}
	if (k > n)
		return 0;
	for (size_t i = 1; i < k; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return k;
}

/* ---- construction -------------------------------------------------------------------- */

static uint64_t hash_bytes(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
	return h;
}

static uint64_t hash_u64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	return x ^ (x >> 33);
}

static size_t pow2_at_least(size_t n)
{
	size_t c = 16;
	while (c < n)
		c <<= 1;
	return c;
}

int tok_alloc(struct tokenizer **out, size_t n_vocab, const char *path, struct diag *d)
{
	pthread_once(&map_once, map_init);
	*out = NULL;
	if (n_vocab == 0 || n_vocab > (1u << 24)) {
		diag_set(d, FT_EINVAL, path, 0, 0, "vocabulary size %zu (1 to %u allowed)", n_vocab,
			 1u << 24);
		return FT_EINVAL;
	}
	struct tokenizer *t = calloc(1, sizeof *t);
	if (!t) {
		diag_set(d, FT_ENOMEM, path, 0, 0, "out of memory");
		return FT_ENOMEM;
	}
	t->n_vocab = n_vocab;
	t->tokens = calloc(n_vocab, sizeof *t->tokens);
	t->token_len = calloc(n_vocab, sizeof *t->token_len);
	t->attr = calloc(n_vocab, 1);
	t->cache = calloc(1, sizeof *t->cache);
	if (t->cache)
		t->cache->e = calloc(CACHE_CAP, sizeof *t->cache->e);
	pthread_mutex_init(&t->cache_mu, NULL);
	t->bos = t->eos = t->pad = t->unk = -1;
	for (int b = 0; b < 256; b++)
		t->fb_tok[b] = t->byte_tok[b] = -1;
	if (!t->tokens || !t->token_len || !t->attr || !t->cache || !t->cache->e) {
		tokenizer_free(t);
		diag_set(d, FT_ENOMEM, path, 0, 0, "out of memory for %zu tokens", n_vocab);
		return FT_ENOMEM;
	}
	*out = t;
	return 0;
}

int tok_set_token(struct tokenizer *t, int32_t id, const char *text, size_t len, int attr,
		  const char *path, struct diag *d)
{
	if (id < 0 || (size_t)id >= t->n_vocab)
		return diag_set(d, FT_EINVAL, path, 0, 0, "token id %d outside the vocabulary", id);
	if (len == 0)
		return diag_set(d, FT_EINVAL, path, 0, 0, "token %d is empty", id);
	char *c = ft_strndup(text, len);
	if (!c)
		return diag_set(d, FT_ENOMEM, path, 0, 0, "out of memory");
	free(t->tokens[id]);
	t->tokens[id] = c;
	t->token_len[id] = len;
	t->attr[id] = (uint8_t)attr;
	return 0;
}

int32_t tok_lookup(const struct tokenizer *t, const char *text, size_t len)
{
	if (!t->vmap)
		return -1;
	size_t mask = t->vmap_cap - 1;
	for (size_t i = hash_bytes(text, len) & mask;; i = (i + 1) & mask) {
		int32_t id = t->vmap[i];
		if (id < 0)
			return -1;
		if (t->token_len[id] == len && memcmp(t->tokens[id], text, len) == 0)
			return id;
	}
}

int tok_index_vocab(struct tokenizer *t, const char *path, struct diag *d)
{
	free(t->vmap);
	t->vmap_cap = pow2_at_least(2 * t->n_vocab);
	t->vmap = malloc(t->vmap_cap * sizeof *t->vmap);
	if (!t->vmap)
		return diag_set(d, FT_ENOMEM, path, 0, 0, "out of memory");
	memset(t->vmap, 0xff, t->vmap_cap * sizeof *t->vmap);
	size_t mask = t->vmap_cap - 1;
	for (size_t id = 0; id < t->n_vocab; id++) {
		if (!t->tokens[id])
			continue;
		if (tok_lookup(t, t->tokens[id], t->token_len[id]) >= 0)
			continue; /* a duplicate text keeps the first id */
		size_t i = hash_bytes(t->tokens[id], t->token_len[id]) & mask;
		while (t->vmap[i] >= 0)
			i = (i + 1) & mask;
		t->vmap[i] = (int32_t)id;
	}
	return 0;
}

int tok_alloc_merges(struct tokenizer *t, size_t n_merges, const char *path, struct diag *d)
{
	t->mcap = pow2_at_least(2 * n_merges + 1);
	t->mkeys = malloc(t->mcap * sizeof *t->mkeys);
	t->mrank = malloc(t->mcap * sizeof *t->mrank);
	t->mresult = malloc(t->mcap * sizeof *t->mresult);
	if (!t->mkeys || !t->mrank || !t->mresult)
		return diag_set(d, FT_ENOMEM, path, 0, 0, "out of memory for %zu merges", n_merges);
	memset(t->mkeys, 0xff, t->mcap * sizeof *t->mkeys);
	return 0;
}

static bool merge_find(const struct tokenizer *t, int32_t a, int32_t b, uint32_t *rank,
		       int32_t *result)
{
	if (!t->mcap)
		return false;
	uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
	size_t mask = t->mcap - 1;
	for (size_t i = hash_u64(key) & mask;; i = (i + 1) & mask) {
		if (t->mkeys[i] == UINT64_MAX)
			return false;
		if (t->mkeys[i] == key) {
			*rank = t->mrank[i];
			*result = t->mresult[i];
			return true;
		}
	}
}

int tok_add_merge(struct tokenizer *t, const char *left, size_t llen, const char *right,
		  size_t rlen, uint32_t rank, const char *path, struct diag *d)
{
	int32_t a = tok_lookup(t, left, llen), b = tok_lookup(t, right, rlen);
	char buf[1024];
	if (a < 0 || b < 0 || llen + rlen > sizeof buf)
		return diag_set(d, FT_EINVAL, path, 0, 0,
				"merge %u ('%.*s' '%.*s') uses a token missing from the vocabulary",
				rank, (int)(llen > 64 ? 64 : llen), left, (int)(rlen > 64 ? 64 : rlen),
				right);
	memcpy(buf, left, llen);
	memcpy(buf + llen, right, rlen);
	int32_t r = tok_lookup(t, buf, llen + rlen);
	if (r < 0)
		return diag_set(d, FT_EINVAL, path, 0, 0,
				"merge %u ('%.*s' '%.*s'): the merged token is missing from the vocabulary",
				rank, (int)(llen > 64 ? 64 : llen), left, (int)(rlen > 64 ? 64 : rlen),
				right);
	tok_add_merge_ids(t, a, b, rank, r);
	return 0;
}

void tok_add_merge_ids(struct tokenizer *t, int32_t a, int32_t b, uint32_t rank, int32_t result)
{
	uint32_t old_rank;
	int32_t old;
	if (merge_find(t, a, b, &old_rank, &old))
		return; /* the first (lowest) rank wins */
	uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
	size_t mask = t->mcap - 1, i = hash_u64(key) & mask;
	while (t->mkeys[i] != UINT64_MAX)
		i = (i + 1) & mask;
	t->mkeys[i] = key;
	t->mrank[i] = rank;
	t->mresult[i] = result;
	t->n_merges++;
}

struct rank_pair {
	uint32_t rank;
	int32_t l, r;
};

static int cmp_rank_pair(const void *a, const void *b)
{
	const struct rank_pair *x = a, *y = b;
	return x->rank < y->rank ? -1 : x->rank > y->rank;
}

int tok_merge_list(const struct tokenizer *t, int32_t **out_pairs, size_t *out_n)
{
	*out_pairs = NULL;
	*out_n = 0;
	struct rank_pair *v = malloc((t->n_merges ? t->n_merges : 1) * sizeof *v);
	int32_t *p = malloc((t->n_merges ? 2 * t->n_merges : 1) * sizeof *p);
	if (!v || !p) {
		free(v);
		free(p);
		return FT_ENOMEM;
	}
	size_t n = 0;
	for (size_t i = 0; i < t->mcap && n < t->n_merges; i++)
		if (t->mkeys[i] != UINT64_MAX)
			v[n++] = (struct rank_pair){t->mrank[i], (int32_t)(t->mkeys[i] >> 32),
						    (int32_t)(uint32_t)t->mkeys[i]};
	qsort(v, n, sizeof *v, cmp_rank_pair);
	for (size_t i = 0; i < n; i++) {
		p[2 * i] = v[i].l;
		p[2 * i + 1] = v[i].r;
	}
	free(v);
	*out_pairs = p;
	*out_n = n;
	return 0;
}

int tok_add_step(struct tokenizer *t, const char *pattern, size_t plen, enum split_behavior b,
		 bool invert, bool prefix_space, const char *path, struct diag *d)
{
	if (t->n_steps == FT_ARRAY_LEN(t->steps))
		return diag_set(d, FT_EUNSUPP, path, 0, 0, "more than %zu pre-tokenizer steps",
				FT_ARRAY_LEN(t->steps));
	struct pre_step *s = &t->steps[t->n_steps];
	memset(s, 0, sizeof *s);
	s->behavior = b;
	s->invert = invert;
	s->prefix_space = prefix_space;
	if (pattern) {
		if (!(s->pattern = ft_strndup(pattern, plen == PCRE2_ZERO_TERMINATED ? strlen(pattern)
										   : plen)))
			return diag_set(d, FT_ENOMEM, path, 0, 0, "out of memory");
		int err;
		PCRE2_SIZE eoff;
		s->re = pcre2_compile((PCRE2_SPTR)pattern, plen, PCRE2_UTF | PCRE2_UCP, &err, &eoff,
				      NULL);
		if (!s->re) {
			free(s->pattern);
			s->pattern = NULL;
			PCRE2_UCHAR msg[256];
			pcre2_get_error_message(err, msg, sizeof msg);
			return diag_set(d, FT_EINVAL, path, 0, 0,
					"pre-tokenizer regex does not compile at offset %zu: %s",
					(size_t)eoff, (const char *)msg);
		}
		(void)pcre2_jit_compile(s->re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter */
	}
	t->n_steps++;
	return 0;
}

int tok_add_metaspace(struct tokenizer *t, enum tok_prepend prepend, bool split, const char *path,
		      struct diag *d)
{
	int rc = tok_add_step(t, NULL, 0, SB_ISOLATED, false, false, path, d);
	if (rc)
		return rc;
	struct pre_step *s = &t->steps[t->n_steps - 1];
	s->metaspace = true;
	s->prepend = prepend;
	s->split = split;
	return 0;
}

static int cmp_added(const void *a, const void *b)
{
	const struct added_tok *x = a, *y = b;
	if (x->len != y->len)
		return x->len > y->len ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

/* The byte of a "<0xNN>" token (as Hugging Face's ByteFallback decoder reads it), -1. */
static int16_t byte_token_value(const char *s, size_t n)
{
	if (!s || n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>')
		return -1;
	int v = 0;
	for (int i = 3; i < 5; i++) {
		char c = s[i];
		int x = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
			: c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
		if (x < 0)
			return -1;
		v = v * 16 + x;
	}
	return (int16_t)v;
}

static int32_t trie_get(const struct tokenizer *t, int32_t node, unsigned char b)
{
	uint64_t key = ((uint64_t)(uint32_t)node << 8) | b;
	size_t mask = t->trie_cap - 1;
	for (size_t i = hash_u64(key) & mask;; i = (i + 1) & mask) {
		if (t->trie_keys[i] == UINT64_MAX)
			return -1;
		if (t->trie_keys[i] == key)
			return t->trie_child[i];
	}
}

/* The trie of added tokens: one node per distinct prefix. */
static int trie_build(struct tokenizer *t, const char *path, struct diag *d)
{
	size_t bytes = 1;
	for (size_t i = 0; i < t->n_added; i++) {
		if (t->added[i].len > TOK_MAX_ADDED_LEN)
			return diag_set(d, FT_EUNSUPP, path, 0, 0,
					"added token %d is %zu bytes long (at most %d)", t->added[i].id,
					t->added[i].len, TOK_MAX_ADDED_LEN);
		bytes += t->added[i].len;
	}
	t->trie_cap = pow2_at_least(2 * bytes);
	t->trie_keys = malloc(t->trie_cap * sizeof *t->trie_keys);
	t->trie_child = malloc(t->trie_cap * sizeof *t->trie_child);
	t->trie_term = malloc(bytes * sizeof *t->trie_term);
	if (!t->trie_keys || !t->trie_child || !t->trie_term)
		return diag_set(d, FT_ENOMEM, path, 0, 0, "out of memory");
	memset(t->trie_keys, 0xff, t->trie_cap * sizeof *t->trie_keys);
	t->trie_nodes = 1;
	t->trie_term[0] = -1;
	size_t mask = t->trie_cap - 1;
	for (size_t a = 0; a < t->n_added; a++) {
		int32_t node = 0;
		for (size_t k = 0; k < t->added[a].len; k++) {
			unsigned char b = (unsigned char)t->added[a].text[k];
			int32_t c = trie_get(t, node, b);
			if (c < 0) {
				uint64_t key = ((uint64_t)(uint32_t)node << 8) | b;
				size_t i = hash_u64(key) & mask;
				while (t->trie_keys[i] != UINT64_MAX)
					i = (i + 1) & mask;
				c = (int32_t)t->trie_nodes++;
				t->trie_keys[i] = key;
				t->trie_child[i] = c;
				t->trie_term[c] = -1;
			}
			node = c;
		}
		if (t->trie_term[node] < 0) /* a duplicate text keeps the first (longest-sorted) */
			t->trie_term[node] = (int32_t)a;
	}
	return 0;
}

int tok_finish(struct tokenizer *t, const char *path, struct diag *d)
{
	size_t n = 0;
	for (size_t i = 0; i < t->n_vocab; i++)
		n += t->tokens[i] && (t->attr[i] == TA_SPECIAL || t->attr[i] == TA_ADDED);
	t->added = calloc(n ? n : 1, sizeof *t->added);
	if (!t->added)
		return diag_set(d, FT_ENOMEM, path, 0, 0, "out of memory");
	for (size_t i = 0; i < t->n_vocab; i++)
		if (t->tokens[i] && (t->attr[i] == TA_SPECIAL || t->attr[i] == TA_ADDED))
			t->added[t->n_added++] = (struct added_tok){(int32_t)i, t->tokens[i],
				t->token_len[i], t->attr[i] == TA_SPECIAL};
	qsort(t->added, t->n_added, sizeof *t->added, cmp_added); /* longest first */
	int rc = trie_build(t, path, d);
	if (rc)
		return rc;
	for (int b = 0; b < 256; b++) {
		char buf[8];
		size_t k = utf8_put(buf, byte_cp[b]);
		t->byte_tok[b] = t->model == TM_BYTE_LEVEL ? tok_lookup(t, buf, k) : -1;
		snprintf(buf, sizeof buf, "<0x%02X>", b);
		t->fb_tok[b] = t->byte_fallback ? tok_lookup(t, buf, 6) : -1;
	}
	if (t->model == TM_SPM) {
		t->tok_byte = malloc(t->n_vocab * sizeof *t->tok_byte);
		if (!t->tok_byte)
			return diag_set(d, FT_ENOMEM, path, 0, 0, "out of memory");
		for (size_t i = 0; i < t->n_vocab; i++)
			t->tok_byte[i] = byte_token_value(t->tokens[i], t->token_len[i]);
	}
	return 0;
}

/* ---- encoding ------------------------------------------------------------------------ */

struct ids {
	int32_t *v;
	size_t n, cap;
};

static int ids_push(struct ids *a, int32_t id)
{
	if (a->n == a->cap) {
		size_t cap = a->cap ? 2 * a->cap : 64;
		int32_t *v = realloc(a->v, cap * sizeof *v);
		if (!v)
			return FT_ENOMEM;
		a->v = v;
		a->cap = cap;
	}
	a->v[a->n++] = id;
	return 0;
}

struct piece {
	size_t off, len;
	bool at0; /* starts at offset 0 of the text given to encode (Metaspace "first") */
};
struct pieces {
	struct piece *v;
	size_t n, cap;
};

static int pieces_push(struct pieces *p, size_t off, size_t len)
{
	if (len == 0)
		return 0;
	if (p->n == p->cap) {
		size_t cap = p->cap ? 2 * p->cap : 64;
		struct piece *v = realloc(p->v, cap * sizeof *v);
		if (!v)
			return FT_ENOMEM;
		p->v = v;
		p->cap = cap;
	}
	p->v[p->n++] = (struct piece){off, len, false};
	return 0;
}

static void cache_clear(struct word_cache *c)
{
	for (size_t i = 0; i < CACHE_CAP; i++) {
		free(c->e[i].key);
		free(c->e[i].ids);
	}
	memset(c->e, 0, CACHE_CAP * sizeof *c->e);
	c->count = 0;
}

/* Copies the cached ids of word w into out; false when absent. */
static bool cache_get(const struct tokenizer *t, const char *w, size_t n, uint64_t h,
		      struct ids *out, int *rc)
{
	struct tokenizer *mt = (struct tokenizer *)t; /* the cache is internally locked */
	bool hit = false;
	pthread_mutex_lock(&mt->cache_mu);
	struct word_cache *c = mt->cache;
	for (size_t i = h & (CACHE_CAP - 1); c->e[i].key; i = (i + 1) & (CACHE_CAP - 1)) {
		struct centry *e = &c->e[i];
		if (e->h == h && e->klen == n && memcmp(e->key, w, n) == 0) {
			for (size_t k = 0; k < e->n && !*rc; k++)
				*rc = ids_push(out, e->ids[k]);
			hit = true;
			break;
		}
	}
	pthread_mutex_unlock(&mt->cache_mu);
	return hit;
}

static void cache_put(const struct tokenizer *t, const char *w, size_t n, uint64_t h,
		      const int32_t *ids, size_t n_ids)
{
	struct tokenizer *mt = (struct tokenizer *)t;
	char *key = malloc(n);
	int32_t *v = malloc((n_ids ? n_ids : 1) * sizeof *v);
	if (!key || !v) {
		free(key);
		free(v);
		return;
	}
	memcpy(key, w, n);
	memcpy(v, ids, n_ids * sizeof *v);
	pthread_mutex_lock(&mt->cache_mu);
	struct word_cache *c = mt->cache;
	if (c->count >= CACHE_CAP / 2)
		cache_clear(c);
	size_t i = h & (CACHE_CAP - 1);
	while (c->e[i].key) {
		if (c->e[i].h == h && c->e[i].klen == n && memcmp(c->e[i].key, w, n) == 0)
			break; /* another thread added it */
		i = (i + 1) & (CACHE_CAP - 1);
	}
	if (c->e[i].key) {
		free(key);
		free(v);
	} else {
		c->e[i] = (struct centry){key, n, h, v, n_ids};
		c->count++;
	}
	pthread_mutex_unlock(&mt->cache_mu);
}

/* One pending merge: the pair starting at symbol pos gives res with this rank. */
struct hent {
	uint32_t rank;
	uint32_t pos;
	int32_t res;
};

static bool hent_less(const struct hent *a, const struct hent *b)
{
	return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(struct hent *h, size_t *n, struct hent e)
{
	size_t i = (*n)++;
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (!hent_less(&e, &h[p]))
			break;
		h[i] = h[p];
		i = p;
	}
	h[i] = e;
}

static struct hent heap_pop(struct hent *h, size_t *n)
{
	struct hent top = h[0], last = h[--(*n)];
	size_t i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= *n)
			break;
		if (c + 1 < *n && hent_less(&h[c + 1], &h[c]))
			c++;
		if (!hent_less(&h[c], &last))
			break;
		h[i] = h[c];
		i = c;
	}
	if (*n)
		h[i] = last;
	return top;
}

/* Applies merges to sym[0..*m): lowest rank first, leftmost among equal ranks, with a heap
 * of candidate pairs and a linked list of live symbols (O(m log m), as Hugging Face's
 * Word::merge_all). A stale heap entry is recognised by the pair no longer giving res. */
static int bpe_merge(const struct tokenizer *t, int32_t *sym, size_t *m)
{
	size_t n = *m;
	if (n < 2 || !t->mcap)
		return 0;
	int32_t *prev = malloc(n * sizeof *prev), *next = malloc(n * sizeof *next);
	struct hent *h = malloc(3 * n * sizeof *h);
	if (!prev || !next || !h) {
		free(prev);
		free(next);
		free(h);
		return FT_ENOMEM;
	}
	size_t hn = 0;
	uint32_t rank;
	int32_t r;
	for (size_t i = 0; i < n; i++) {
		prev[i] = (int32_t)i - 1;
		next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
		if (i + 1 < n && merge_find(t, sym[i], sym[i + 1], &rank, &r))
			heap_push(h, &hn, (struct hent){rank, (uint32_t)i, r});
	}
	while (hn) {
		struct hent e = heap_pop(h, &hn);
		int32_t p = (int32_t)e.pos, q = next[p];
		if (sym[p] < 0 || q < 0 || !merge_find(t, sym[p], sym[q], &rank, &r) || r != e.res)
			continue;
		sym[p] = r;
		sym[q] = -1;
		next[p] = next[q];
		if (next[q] >= 0)
			prev[next[q]] = p;
		if (prev[p] >= 0 && merge_find(t, sym[prev[p]], sym[p], &rank, &r))
			heap_push(h, &hn, (struct hent){rank, (uint32_t)prev[p], r});
		if (next[p] >= 0 && merge_find(t, sym[p], sym[next[p]], &rank, &r))
			heap_push(h, &hn, (struct hent){rank, (uint32_t)p, r});
	}
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (sym[i] >= 0)
			sym[k++] = sym[i];
	*m = k;
	free(prev);
	free(next);
	free(h);
	return 0;
}

/* SentencePiece-style symbols: one per UTF-8 character found in the vocabulary, else its
 * bytes as <0xNN> tokens (byte_fallback), else unk (consecutive ones fused with fuse_unk). */
static size_t spm_symbols(const struct tokenizer *t, const char *w, size_t n, int32_t *sym)
{
	size_t m = 0;
	bool prev_unk = false;
	for (size_t i = 0; i < n;) {
		size_t k = utf8_len((const unsigned char *)w + i, n - i);
		if (!k)
			k = 1; /* not reached: text is checked; keeps the loop finite */
		int32_t id = tok_lookup(t, w + i, k);
		if (id >= 0) {
			sym[m++] = id;
			prev_unk = false;
		} else {
			bool all = t->byte_fallback;
			for (size_t j = 0; j < k && all; j++)
				all = t->fb_tok[(unsigned char)w[i + j]] >= 0;
			if (all) {
				for (size_t j = 0; j < k; j++)
					sym[m++] = t->fb_tok[(unsigned char)w[i + j]];
				prev_unk = false;
			} else if (t->unk >= 0 && !(prev_unk && t->fuse_unk)) {
				sym[m++] = t->unk;
				prev_unk = true;
			}
		}
		i += k;
	}
	return m;
}

/* BPE over one pre-tokenized piece (bytes as they are in the normalized text). */
static int bpe_word(const struct tokenizer *t, const char *w, size_t n, struct ids *out)
{
	uint64_t h = hash_bytes(w, n);
	int rc = 0;
	if (n <= CACHE_MAX_KEY && cache_get(t, w, n, h, out, &rc))
		return rc;
	int32_t *sym = malloc(n * sizeof *sym);
	if (!sym)
		return FT_ENOMEM;
	size_t m = 0;
	if (t->model == TM_SPM) {
		if (t->ignore_merges && (sym[0] = tok_lookup(t, w, n)) >= 0)
			m = 1;
		else
			m = spm_symbols(t, w, n, sym);
	} else if (t->ignore_merges) {
		char *mapped = malloc(3 * n);
		if (!mapped) {
			free(sym);
			return FT_ENOMEM;
		}
		size_t k = 0;
		for (size_t i = 0; i < n; i++)
			k += utf8_put(mapped + k, byte_cp[(unsigned char)w[i]]);
		int32_t id = tok_lookup(t, mapped, k);
		free(mapped);
		if (id >= 0)
			sym[m++] = id;
	}
	if (m == 0 && t->model == TM_BYTE_LEVEL) {
		for (size_t i = 0; i < n; i++) {
			int32_t id = t->byte_tok[(unsigned char)w[i]];
			if (id < 0)
				id = t->unk;
			if (id >= 0)
				sym[m++] = id;
		}
	}
	if (m > 1 && (rc = bpe_merge(t, sym, &m)) != 0) {
		free(sym);
		return rc;
	}
	for (size_t i = 0; i < m && !rc; i++)
		rc = ids_push(out, sym[i]);
	if (!rc && n <= CACHE_MAX_KEY)
		cache_put(t, w, n, h, sym, m);
	free(sym);
	return rc;
}

/* Splits piece p of the arena by step s, appending to out. */
static int split_piece(const struct pre_step *s, const char *base, struct piece p,
		       pcre2_match_data *md, pcre2_match_context *mc, struct pieces *out)
{
	const char *subj = base + p.off;
	size_t start = 0, gap = 0;
	int rc = 0;
	/* segments: alternating gaps and matches, reported through emit() */
	size_t pend_off = 0, pend_len = 0; /* MERGED_NEXT: a match waiting for the next piece */
	bool have_pend = false, prev_match = false;
	size_t last_idx = (size_t)-1;
#define EMIT(o, l, is_m)                                                                        \
	do {                                                                                    \
		size_t eo = (o), el = (l);                                                      \
		bool em = (is_m) != s->invert;                                                  \
		if (el == 0)                                                                    \
			break;                                                                  \
		switch (s->behavior) {                                                          \
		case SB_ISOLATED:                                                               \
			rc = pieces_push(out, p.off + eo, el);                                  \
			break;                                                                  \
		case SB_REMOVED:                                                                \
			if (!em)                                                                \
				rc = pieces_push(out, p.off + eo, el);                          \
			break;                                                                  \
		case SB_MERGED_PREV:                                                            \
			if (em && last_idx != (size_t)-1 && !prev_match)                        \
				out->v[last_idx].len += el;                                     \
			else {                                                                  \
				rc = pieces_push(out, p.off + eo, el);                          \
				last_idx = out->n - 1;                                          \
			}                                                                       \
			break;                                                                  \
		case SB_MERGED_NEXT:                                                            \
			if (em) {                                                               \
				if (have_pend)                                                  \
					rc = pieces_push(out, p.off + pend_off, pend_len);      \
				pend_off = eo, pend_len = el, have_pend = true;                 \
			} else if (have_pend) {                                                 \
				rc = pieces_push(out, p.off + pend_off, pend_len + el);         \
				have_pend = false;                                              \
			} else                                                                  \
				rc = pieces_push(out, p.off + eo, el);                          \
			break;                                                                  \
		case SB_CONTIGUOUS:                                                             \
			if (em && prev_match && out->n)                                         \
				out->v[out->n - 1].len += el;                                   \
			else                                                                    \
				rc = pieces_push(out, p.off + eo, el);                          \
			break;                                                                  \
		}                                                                               \
		prev_match = em;                                                                \
	} while (0)
	while (start <= p.len && !rc) {
		int m = pcre2_match(s->re, (PCRE2_SPTR)subj, p.len, start, PCRE2_NO_UTF_CHECK, md,
				    mc);
		if (m < 0) {
			if (m != PCRE2_ERROR_NOMATCH)
				rc = FT_EINVAL; /* match limit: treat the rest as a gap */
			break;
		}
		PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
		size_t ms = ov[0], me = ov[1];
		if (me == ms) { /* empty match: step over one character */
			if (ms >= p.len)
				break;
			start = ms + 1;
			while (start < p.len && ((unsigned char)subj[start] & 0xc0) == 0x80)
				start++;
			continue;
		}
		EMIT(gap, ms - gap, false);
		if (rc)
			break;
		EMIT(ms, me - ms, true);
		gap = start = me;
	}
	if (rc == FT_EINVAL)
		rc = 0;
	if (!rc)
		EMIT(gap, p.len - gap, false);
	if (!rc && have_pend)
		rc = pieces_push(out, p.off + pend_off, pend_len);
#undef EMIT
	return rc;
}

/* Appends text to the arena with ' ' written as "▁" (when replace) and a "▁" in front
 * (when prefix); returns the new piece. */
static int meta_copy(struct strbuf *arena, size_t off, size_t len, bool replace, bool prefix,
		     struct piece *out)
{
	size_t start = arena->len;
	if (prefix && strbuf_append(arena, TOK_META, TOK_META_LEN))
		return FT_ENOMEM;
	for (size_t k = 0; k < len; k++) {
		/* byte by byte: appending may move the arena we copy from */
		char c = arena->buf[off + k];
		int rc = (replace && c == ' ') ? strbuf_append(arena, TOK_META, TOK_META_LEN)
					       : strbuf_append(arena, &c, 1);
		if (rc)
			return FT_ENOMEM;
	}
	out->off = start;
	out->len = arena->len - start;
	return 0;
}

static bool starts_meta(const char *s, size_t n)
{
	return n >= TOK_META_LEN && memcmp(s, TOK_META, TOK_META_LEN) == 0;
}

/* Metaspace: ' ' -> "▁", a "▁" in front per the prepend scheme (unless the piece already
 * starts with one), then with split a new piece before every "▁". */
static int metaspace_step(const struct pre_step *s, struct strbuf *arena, struct piece p,
			  struct pieces *out)
{
	struct piece q;
	bool prefix = s->prepend == TP_ALWAYS || (s->prepend == TP_FIRST && p.at0);
	if (meta_copy(arena, p.off, p.len, true, false, &q))
		return FT_ENOMEM;
	if (prefix && !starts_meta(arena->buf + q.off, q.len)) {
		struct piece r;
		if (meta_copy(arena, q.off, q.len, false, true, &r))
			return FT_ENOMEM;
		q = r;
	}
	size_t first = out->n;
	if (!s->split) {
		if (pieces_push(out, q.off, q.len))
			return FT_ENOMEM;
	} else {
		size_t st = q.off, end = q.off + q.len;
		for (size_t i = q.off + 1; i + TOK_META_LEN <= end; i++)
			if (starts_meta(arena->buf + i, end - i)) {
				if (pieces_push(out, st, i - st))
					return FT_ENOMEM;
				st = i;
			}
		if (pieces_push(out, st, end - st))
			return FT_ENOMEM;
	}
	if (out->n > first)
		out->v[first].at0 = p.at0;
	return 0;
}

/* Normalizes, pre-tokenizes and BPE-encodes a text segment without added tokens. at0: the
 * segment starts the text given to encode. */
static int encode_segment(const struct tokenizer *t, const char *text, size_t len, bool at0,
			  bool no_prefix, pcre2_match_data *md, pcre2_match_context *mc,
			  struct strbuf *arena, struct pieces *a, struct pieces *b, struct ids *out)
{
	arena->len = 0;
	a->n = 0;
	if (strbuf_append(arena, text, len) || pieces_push(a, 0, len))
		return FT_ENOMEM;
	a->v[0].at0 = at0;
	int rc;
	if (t->norm_replace || (t->norm_prepend && !no_prefix)) {
		struct piece q;
		if (meta_copy(arena, 0, len, t->norm_replace, t->norm_prepend && !no_prefix, &q))
			return FT_ENOMEM;
		a->v[0].off = q.off;
		a->v[0].len = q.len;
	}
	for (size_t si = 0; si < t->n_steps; si++) {
		const struct pre_step *s = &t->steps[si];
		if (s->metaspace) {
			b->n = 0;
			for (size_t i = 0; i < a->n; i++)
				if ((rc = metaspace_step(s, arena, a->v[i], b)) != 0)
					return rc;
			struct pieces tmp = *a;
			*a = *b;
			*b = tmp;
			continue;
		}
		if (s->prefix_space) {
			for (size_t i = 0; i < a->n; i++) {
				if (arena->buf[a->v[i].off] == ' ')
					continue;
				size_t off = arena->len;
				if (strbuf_append(arena, " ", 1))
					return FT_ENOMEM;
				/* byte by byte: appending may move the arena we copy from */
				for (size_t k = 0; k < a->v[i].len; k++) {
					char c = arena->buf[a->v[i].off + k];
					if (strbuf_append(arena, &c, 1))
						return FT_ENOMEM;
				}
				a->v[i].off = off;
				a->v[i].len++;
			}
		}
		if (!s->re)
			continue;
		b->n = 0;
		for (size_t i = 0; i < a->n; i++) {
			size_t first = b->n;
			if ((rc = split_piece(s, arena->buf, a->v[i], md, mc, b)) != 0)
				return rc;
			if (b->n > first && b->v[first].off == a->v[i].off)
				b->v[first].at0 = a->v[i].at0;
		}
		struct pieces tmp = *a;
		*a = *b;
		*b = tmp;
	}
	for (size_t i = 0; i < a->n; i++)
		if ((rc = bpe_word(t, arena->buf + a->v[i].off, a->v[i].len, out)) != 0)
			return rc;
	return 0;
}

/* The added token at text[pos] (the longest that may match), NULL when none. */
static const struct added_tok *added_at(const struct tokenizer *t, const char *text, size_t len,
					size_t pos, bool parse_special)
{
	const struct added_tok *best = NULL;
	int32_t node = 0;
	for (size_t k = pos; k < len; k++) {
		node = trie_get(t, node, (unsigned char)text[k]);
		if (node < 0)
			break;
		int32_t a = t->trie_term[node];
		if (a >= 0 && (parse_special || !t->added[a].special))
			best = &t->added[a];
	}
	return best;
}

int tokenizer_encode_ex(const struct tokenizer *t, const char *text, size_t len, int flags,
			int32_t **out_ids, size_t *out_n, struct diag *d)
{
	*out_ids = NULL;
	*out_n = 0;
	for (size_t i = 0; i < len;) {
		size_t k = utf8_len((const unsigned char *)text + i, len - i);
		if (!k)
			return diag_set(d, FT_EINVAL, NULL, 0, 0,
					"text is not valid UTF-8 (byte %zu)", i);
		i += k;
	}
	bool special = flags & TOK_PARSE_SPECIAL, cont = flags & TOK_CONTINUATION;
	struct ids out = {0};
	struct strbuf arena = {0};
	struct pieces a = {0}, b = {0};
	pcre2_match_data *md = NULL;
	pcre2_match_context *mc = NULL;
	int rc = 0;
	if (t->n_steps) {
		md = pcre2_match_data_create(3, NULL);
		mc = pcre2_match_context_create(NULL);
		if (mc) /* a pathological regex from a tokenizer.json must not hang */
			pcre2_set_match_limit(mc, TOK_MATCH_LIMIT);
		if (!md || !mc) {
			rc = FT_ENOMEM;
			goto done;
		}
	}
	if ((flags & TOK_ADD_SPECIAL) && t->add_bos && t->bos >= 0 && (rc = ids_push(&out, t->bos)))
		goto done;
	size_t seg = 0;
	for (size_t pos = 0; pos < len;) {
		const struct added_tok *at = added_at(t, text, len, pos, special);
		if (!at) {
			pos++;
			continue;
		}
		if (pos > seg && (rc = encode_segment(t, text + seg, pos - seg, seg == 0 && !cont,
						      seg == 0 && cont, md, mc, &arena, &a, &b,
						      &out)) != 0)
			goto done;
		if ((rc = ids_push(&out, at->id)) != 0)
			goto done;
		pos += at->len;
		seg = pos;
	}
	if (len > seg && (rc = encode_segment(t, text + seg, len - seg, seg == 0 && !cont,
					      seg == 0 && cont, md, mc, &arena, &a, &b, &out)))
		goto done;
	if ((flags & TOK_ADD_SPECIAL) && t->add_eos && t->eos >= 0 && (rc = ids_push(&out, t->eos)))
		goto done;
	*out_ids = out.v ? out.v : malloc(sizeof(int32_t));
	*out_n = out.n;
	out.v = NULL;
	if (!*out_ids)
		rc = FT_ENOMEM;
done:
	if (rc == FT_ENOMEM)
		diag_set(d, rc, NULL, 0, 0, "out of memory tokenizing %zu bytes", len);
	free(out.v);
	strbuf_free(&arena);
	free(a.v);
	free(b.v);
	pcre2_match_data_free(md);
	pcre2_match_context_free(mc);
	return rc;
}

int tokenizer_encode(const struct tokenizer *t, const char *text, size_t len, bool parse_special,
		     int32_t **out_ids, size_t *out_n, struct diag *d)
{
	return tokenizer_encode_ex(t, text, len,
				   TOK_ADD_SPECIAL | (parse_special ? TOK_PARSE_SPECIAL : 0), out_ids,
				   out_n, d);
}

/* One SentencePiece token: a <0xNN> token is its byte, "▁" is a space (dropped in the first
 * token with the Metaspace decoder), as Hugging Face's Replace + ByteFallback + Fuse. */
static int spm_decode_token(const struct tokenizer *t, int32_t id, bool first, struct strbuf *sb)
{
	if (t->tok_byte[id] >= 0 && t->attr[id] == TA_NORMAL) {
		char c = (char)t->tok_byte[id];
		return strbuf_append(sb, &c, 1);
	}
	const char *s = t->tokens[id];
	size_t len = t->token_len[id], from = 0;
	for (size_t j = 0; j + TOK_META_LEN <= len; j++) {
		if (!starts_meta(s + j, len - j))
			continue;
		if (strbuf_append(sb, s + from, j - from) ||
		    (!(first && t->strip_first_meta) && strbuf_append(sb, " ", 1)))
			return FT_ENOMEM;
		j += TOK_META_LEN - 1;
		from = j + 1;
	}
	return strbuf_append(sb, s + from, len - from);
}

int tokenizer_decode(const struct tokenizer *t, const int32_t *ids, size_t n, bool skip_special,
		     char **out, size_t *out_len)
{
	struct strbuf sb = {0};
	*out = NULL;
	if (out_len)
		*out_len = 0;
	int rc = 0;
	bool spm_started = false;
	for (size_t i = 0; i < n && !rc; i++) {
		int32_t id = ids[i];
		if (id < 0 || (size_t)id >= t->n_vocab || !t->tokens[id]) {
			rc = FT_EINVAL;
			break;
		}
		const char *s = t->tokens[id];
		size_t len = t->token_len[id];
		if (t->model == TM_SPM) {
			if (skip_special && t->attr[id] == TA_SPECIAL)
				continue;
			rc = spm_decode_token(t, id, sb.len == 0 && !spm_started, &sb);
			spm_started = true;
			continue;
		}
		if (t->attr[id] == TA_SPECIAL || t->attr[id] == TA_ADDED) {
			if (!(skip_special && t->attr[id] == TA_SPECIAL))
				rc = strbuf_append(&sb, s, len);
			continue;
		}
		for (size_t j = 0; j < len && !rc;) {
			size_t k = utf8_len((const unsigned char *)s + j, len - j);
			uint32_t cp = 0x10000;
			if (k == 2)
				cp = ((uint32_t)(s[j] & 0x1f) << 6) | (s[j + 1] & 0x3f);
			else if (k == 1)
				cp = (unsigned char)s[j];
			if (k == 0)
				k = 1;
			if (cp < 512 && cp_byte[cp] >= 0) {
				char c = (char)cp_byte[cp];
				rc = strbuf_append(&sb, &c, 1);
			} else {
				rc = strbuf_append(&sb, s + j, k);
			}
			j += k;
		}
	}
	if (rc) {
		strbuf_free(&sb);
		return rc;
	}
	if (t->model == TM_SPM && t->strip_left > 0 && sb.len) {
		size_t cut = 0;
		while (cut < sb.len && cut < (size_t)t->strip_left && sb.buf[cut] == ' ')
			cut++;
		memmove(sb.buf, sb.buf + cut, sb.len - cut + 1);
		sb.len -= cut;
	}
	size_t len = sb.len;
	*out = strbuf_detach(&sb);
	if (!*out)
		return FT_ENOMEM;
	if (out_len)
		*out_len = len;
	return 0;
}

/* ---- from GGUF metadata -------------------------------------------------------------- */

static int pre_from_name(struct tokenizer *t, const char *pre, const char *path, struct diag *d)
{
	static const char *const smollm[] = {"smollm", "starcoder", "refact", "codeshell",
		"command-r", "exaone", "minerva-7b"};
	static const char *const llama3[] = {"llama-bpe", "llama3", "llama-v3", "falcon3",
		"pixtral", "dbrx", "smaug-bpe"};
	int rc;
	if (!pre || strcmp(pre, "gpt2") == 0 || strcmp(pre, "default") == 0 ||
	    strcmp(pre, "gpt-2") == 0)
		return tok_add_step(t, TOK_RE_GPT2, PCRE2_ZERO_TERMINATED, SB_ISOLATED, false, false,
				    path, d);
	for (size_t i = 0; i < FT_ARRAY_LEN(smollm); i++)
		if (strcmp(pre, smollm[i]) == 0) { /* digits one by one, then GPT-2's regex */
			if ((rc = tok_add_step(t, "\\p{N}", PCRE2_ZERO_TERMINATED, SB_ISOLATED, false,
					       false, path, d)) != 0)
				return rc;
			return tok_add_step(t, TOK_RE_GPT2, PCRE2_ZERO_TERMINATED, SB_ISOLATED, false,
					    false, path, d);
		}
	for (size_t i = 0; i < FT_ARRAY_LEN(llama3); i++)
		if (strcmp(pre, llama3[i]) == 0)
			return tok_add_step(t, RE_LLAMA3, PCRE2_ZERO_TERMINATED, SB_ISOLATED, false,
					    false, path, d);
	if (strcmp(pre, "qwen2") == 0 || strcmp(pre, "deepseek-r1-qwen") == 0)
		return tok_add_step(t, RE_QWEN2, PCRE2_ZERO_TERMINATED, SB_ISOLATED, false, false,
				    path, d);
	diag_set(d, FT_EUNSUPP, path, 0, 0, "tokenizer.ggml.pre '%s' is not supported", pre);
	diag_hint(d, "supported: gpt2, smollm (and starcoder-style), llama-bpe, qwen2");
	return FT_EUNSUPP;
}

static int from_gguf(struct tokenizer **out, const struct model_file *mf, struct diag *d)
{
	const struct mf_tokenizer_src *src = &mf->tok;
	const char *path = mf->path;
	*out = NULL;
	if (!mf->is_gguf)
		return diag_set(d, FT_EINVAL, path, 0, 0, "%s", TOKENIZER_FILES_MISSING);
	if (!src->model || !src->tokens)
		return diag_set(d, FT_EINVAL, path, 0, 0, "the model file has no tokenizer "
				"(tokenizer.ggml.model and tokenizer.ggml.tokens)");
	if (strcmp(src->model, "llama") == 0)
		return tok_from_gguf_spm(out, mf, d);
	if (strcmp(src->model, "gpt2") != 0)
		return diag_set(d, FT_EUNSUPP, path, 0, 0,
				"tokenizer.ggml.model '%s' is not supported (byte-level BPE 'gpt2' and "
				"SentencePiece BPE 'llama')", src->model);
	struct tokenizer *t;
	int rc = tok_alloc(&t, src->n_tokens, path, d);
	if (rc)
		return rc;
	for (size_t i = 0; i < src->n_tokens && !rc; i++) {
		int32_t ty = src->token_type ? src->token_type[i] : 1;
		int attr = ty == 3 ? TA_SPECIAL : ty == 4 ? TA_ADDED : TA_NORMAL;
		if (src->tokens[i][0])
			rc = tok_set_token(t, (int32_t)i, src->tokens[i], strlen(src->tokens[i]), attr,
					   path, d);
	}
	if (rc || (rc = tok_index_vocab(t, path, d)) != 0 ||
	    (rc = tok_alloc_merges(t, src->n_merges, path, d)) != 0)
		goto done;
	for (size_t i = 0; i < src->n_merges; i++) {
		const char *m = src->merges[i];
		const char *sp = strchr(m, ' ');
		if (!sp || sp == m || !sp[1]) {
			rc = diag_set(d, FT_EINVAL, path, 0, 0,
				      "tokenizer.ggml.merges[%zu] is not two tokens separated by a space", i);
			goto done;
		}
		if ((rc = tok_add_merge(t, m, (size_t)(sp - m), sp + 1, strlen(sp + 1), (uint32_t)i,
					path, d)) != 0)
			goto done;
	}
	if ((rc = pre_from_name(t, src->pre, path, d)) != 0 || (rc = tok_finish(t, path, d)) != 0)
		goto done;
	t->bos = (int32_t)src->bos_id;
	t->eos = (int32_t)src->eos_id;
	t->pad = (int32_t)src->pad_id;
	t->unk = (int32_t)src->unk_id;
	t->add_bos = src->add_bos;
	t->add_eos = src->add_eos;
	if (src->chat_template && !(t->chat_template = ft_strdup(src->chat_template)))
		rc = diag_set(d, FT_ENOMEM, path, 0, 0, "out of memory");
done:
	if (rc) {
		tokenizer_free(t);
		return rc;
	}
	*out = t;
	return 0;
}

int tokenizer_from_model_file(struct tokenizer **out, const struct model_file *mf,
			      struct diag *d)
{
	*out = NULL;
	if (mf->tok.tokenizer_json) {
		char *p = path_join(mf->path, "tokenizer.json");
		int rc = tokenizer_from_json(out, mf->tok.tokenizer_json,
					     strlen(mf->tok.tokenizer_json),
					     mf->tok.tokenizer_config_json, p ? p : mf->path, d);
		if (!rc && !(*out)->chat_template && mf->tok.chat_template &&
		    !((*out)->chat_template = ft_strdup(mf->tok.chat_template))) {
			tokenizer_free(*out);
			*out = NULL;
			rc = diag_set(d, FT_ENOMEM, mf->path, 0, 0, "out of memory");
		}
		free(p);
		return rc;
	}
	return from_gguf(out, mf, d);
}

/* ---- accessors ----------------------------------------------------------------------- */

int32_t tokenizer_token_id(const struct tokenizer *t, const char *token_text)
{
	return tok_lookup(t, token_text, strlen(token_text));
}
int32_t tokenizer_bos(const struct tokenizer *t) { return t->bos; }
bool tokenizer_is_sentencepiece(const struct tokenizer *t) { return t->model == TM_SPM; }

const char *tokenizer_token_text(const struct tokenizer *t, int32_t id, size_t *len)
{
	if (id < 0 || (size_t)id >= t->n_vocab || !t->tokens[id]) {
		*len = 0;
		return NULL;
	}
	*len = t->token_len[id];
	return t->tokens[id];
}
int32_t tokenizer_eos(const struct tokenizer *t) { return t->eos; }
int32_t tokenizer_pad(const struct tokenizer *t) { return t->pad; }
int tokenizer_n_vocab(const struct tokenizer *t) { return (int)t->n_vocab; }
bool tokenizer_adds_bos(const struct tokenizer *t) { return t->add_bos && t->bos >= 0; }
bool tokenizer_adds_eos(const struct tokenizer *t) { return t->add_eos && t->eos >= 0; }
const char *tokenizer_chat_template(const struct tokenizer *t) { return t->chat_template; }

bool tokenizer_is_special(const struct tokenizer *t, int32_t id)
{
	return id >= 0 && (size_t)id < t->n_vocab && t->attr[id] == TA_SPECIAL;
}

void tokenizer_free(struct tokenizer *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n_vocab && t->tokens; i++)
		free(t->tokens[i]);
	free(t->tokens);
	free(t->token_len);
	free(t->attr);
	free(t->vmap);
	free(t->mkeys);
	free(t->mrank);
	free(t->mresult);
	free(t->added);
	for (size_t i = 0; i < t->n_steps; i++) {
		pcre2_code_free(t->steps[i].re);
		free(t->steps[i].pattern);
	}
	free(t->tok_byte);
	free(t->trie_keys);
	free(t->trie_child);
	free(t->trie_term);
	if (t->cache) {
		if (t->cache->e)
			cache_clear(t->cache);
		free(t->cache->e);
		free(t->cache);
	}
	pthread_mutex_destroy(&t->cache_mu);
	free(t->chat_template);
	free(t);
}
