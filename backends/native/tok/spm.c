/* spm: the SentencePiece BPE tokenizer of GGUF files with tokenizer.ggml.model = "llama"
 * (Llama 2, TinyLlama, Mistral, Gemma), built the way Hugging Face transformers builds it
 * from the same file, which is the reference for its ids: merges recovered from the
 * vocabulary and scores, byte fallback, Metaspace (Llama) or a plain ' ' -> "▁" (Gemma). */
#include "backends/native/tok/tok_internal.h"

#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "common/banned.h"

struct cand {
	float score;
	uint32_t llen, rlen; /* in characters */
	int32_t l, r, res;
	uint32_t seq;
};

static int cmp_cand(const void *a, const void *b)
{
	const struct cand *x = a, *y = b;
	if (x->score != y->score)
		return x->score > y->score ? -1 : 1;
	if (x->llen != y->llen)
		return x->llen > y->llen ? -1 : 1;
	if (x->rlen != y->rlen)
		return x->rlen > y->rlen ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static bool cand_before(const struct cand *x, const struct cand *y)
{
	return cmp_cand(x, y) <= 0;
}

static uint32_t utf8_chars(const char *s, size_t n)
{
	uint32_t c = 0;
	for (size_t i = 0; i < n; i++)
		c += ((unsigned char)s[i] & 0xc0) != 0x80;
	return c;
}

int tok_merges_from_scores(struct tokenizer *t, const float *scores, const char *path,
			   struct diag *d)
{
	size_t cap = 0, n = 0;
	struct cand *c = NULL;
	int rc = 0;
	for (size_t id = 0; id < t->n_vocab; id++) {
		const char *s = t->tokens[id];
		size_t len = t->token_len[id];
		if (!s || len > TOK_MAX_MERGE_LEN || tok_lookup(t, s, len) != (int32_t)id)
			continue; /* unused id, a duplicate text (the first id owns it), too long */
		uint32_t nch = utf8_chars(s, len), ci = nch;
		/* right to left: the longer left part first, the order the ranks want */
		for (size_t k = len; k-- > 1;) {
			if (((unsigned char)s[k] & 0xc0) == 0x80)
				continue;
			ci--;
			int32_t l = tok_lookup(t, s, k), r = tok_lookup(t, s + k, len - k);
			if (l < 0 || r < 0)
				continue;
			if (n == cap) {
				size_t nc = cap ? 2 * cap : 4096;
				struct cand *v = realloc(c, nc * sizeof *v);
				if (!v) {
					rc = diag_set(d, FT_ENOMEM, path, 0, 0, "out of memory for merges");
					goto done;
				}
				c = v;
				cap = nc;
			}
			c[n] = (struct cand){scores[id], ci, nch - ci, l, r, (int32_t)id, (uint32_t)n};
			n++;
		}
	}
	bool sorted = true;
	for (size_t i = 1; i < n && sorted; i++)
		sorted = cand_before(&c[i - 1], &c[i]);
	if (!sorted)
		qsort(c, n, sizeof *c, cmp_cand);
	if ((rc = tok_alloc_merges(t, n, path, d)) != 0)
		goto done;
	for (size_t i = 0; i < n; i++)
		tok_add_merge_ids(t, c[i].l, c[i].r, (uint32_t)i, c[i].res);
done:
	free(c);
	return rc;
}

/* Gemma stores its tokens of two or more spaces as spaces; its merges spell them "▁". */
static bool all_blank_with_space(const char *s)
{
	bool space = false;
	for (; *s; s++) {
		if (*s == ' ')
			space = true;
		else if (!(*s == '\t' || *s == '\n' || *s == '\r' || *s == '\v' || *s == '\f'))
			return false;
	}
	return space;
}

static bool is_gemma(const char *arch)
{
	return arch && (strcmp(arch, "gemma") == 0 || strcmp(arch, "gemma2") == 0 ||
			strcmp(arch, "gemma3") == 0 || strcmp(arch, "gemma3n") == 0);
}

int tok_from_gguf_spm(struct tokenizer **out, const struct model_file *mf, struct diag *d)
{
	const struct mf_tokenizer_src *src = &mf->tok;
	const char *path = mf->path;
	bool gemma = is_gemma(src->arch);
	float *pos = NULL;
	struct tokenizer *t;
	*out = NULL;
	if (!src->merges && !src->scores && !gemma)
		return diag_set(d, FT_EINVAL, path, 0, 0,
				"a SentencePiece tokenizer needs tokenizer.ggml.scores or "
				"tokenizer.ggml.merges");
	int rc = tok_alloc(&t, src->n_tokens, path, d);
	if (rc)
		return rc;
	t->model = TM_SPM;
	t->byte_fallback = true;
	t->fuse_unk = true;
	const int64_t ids[] = {src->bos_id, src->eos_id, src->unk_id, src->pad_id};
	for (size_t i = 0; i < src->n_tokens && !rc; i++) {
		const char *s = src->tokens[i];
		int32_t ty = src->token_type ? src->token_type[i] : 1;
		int attr = ty == 3 ? TA_SPECIAL : ty == 4 ? TA_ADDED : TA_NORMAL;
		for (size_t k = 0; k < FT_ARRAY_LEN(ids); k++)
			if (ids[k] == (int64_t)i)
				attr = TA_SPECIAL; /* the named specials are special whatever their type */
		if (!s[0])
			continue;
		if (gemma && all_blank_with_space(s)) {
			size_t nch = strlen(s); /* ASCII blanks: one character per byte */
			char *m = malloc(nch * TOK_META_LEN + 1);
			if (!m) {
				rc = diag_set(d, FT_ENOMEM, path, 0, 0, "out of memory");
				break;
			}
			for (size_t k = 0; k < nch; k++)
				memcpy(m + k * TOK_META_LEN, TOK_META, TOK_META_LEN);
			m[nch * TOK_META_LEN] = 0;
			rc = tok_set_token(t, (int32_t)i, m, nch * TOK_META_LEN,
					   attr == TA_ADDED ? TA_NORMAL : attr, path, d);
			free(m);
			continue;
		}
		rc = tok_set_token(t, (int32_t)i, s, strlen(s), attr, path, d);
	}
	if (rc || (rc = tok_index_vocab(t, path, d)) != 0)
		goto done;
	if (src->merges) {
		if ((rc = tok_alloc_merges(t, src->n_merges, path, d)) != 0)
			goto done;
		for (size_t i = 0; i < src->n_merges; i++) {
			const char *m = src->merges[i];
			const char *sp = strchr(m, ' ');
			if (!sp || sp == m || !sp[1]) {
				rc = diag_set(d, FT_EINVAL, path, 0, 0,
					      "tokenizer.ggml.merges[%zu] is not two tokens separated by a space",
					      i);
				goto done;
			}
			if ((rc = tok_add_merge(t, m, (size_t)(sp - m), sp + 1, strlen(sp + 1),
						(uint32_t)i, path, d)) != 0)
				goto done;
		}
	} else {
		/* Gemma's scores do not follow its merge order; its token order does. */
		const float *sc = src->scores;
		if (gemma) {
			if (!(pos = calloc(src->n_tokens, sizeof *pos))) {
				rc = diag_set(d, FT_ENOMEM, path, 0, 0, "out of memory");
				goto done;
			}
			for (size_t i = 0; i < src->n_tokens; i++)
				pos[i] = -(float)i;
			sc = pos;
		}
		if ((rc = tok_merges_from_scores(t, sc, path, d)) != 0)
			goto done;
	}
	bool prefix = !gemma && (!src->add_space_prefix_set || src->add_space_prefix);
	if (gemma) {
		t->norm_replace = true;
		rc = tok_add_step(t, " ", 1, SB_MERGED_PREV, false, false, path, d);
	} else {
		rc = tok_add_metaspace(t, prefix ? TP_FIRST : TP_NEVER, false, path, d);
		t->strip_left = prefix ? 1 : 0;
	}
	if (rc || (rc = tok_finish(t, path, d)) != 0)
		goto done;
	t->bos = (int32_t)src->bos_id;
	t->eos = (int32_t)src->eos_id;
	t->pad = (int32_t)src->pad_id;
	t->unk = src->unk_id >= 0 ? (int32_t)src->unk_id : tok_lookup(t, "<unk>", 5);
	/* llama.cpp and transformers add BOS to a SentencePiece vocabulary that does not say */
	t->add_bos = src->add_bos_set ? src->add_bos : true;
	t->add_eos = src->add_eos;
	if (src->chat_template && !(t->chat_template = ft_strdup(src->chat_template)))
		rc = diag_set(d, FT_ENOMEM, path, 0, 0, "out of memory");
done:
	free(pos);
	if (rc) {
		tokenizer_free(t);
		return rc;
	}
	*out = t;
	return 0;
}
