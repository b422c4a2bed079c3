/* loader: segment lists -> token ids with a loss mask -> (B, T) training batches.
 * Shuffling: the order of epoch e is a Fisher-Yates permutation drawn from
 * rng_seed(seed, LOADER_STREAM + e), so a cursor (epoch, position) restores it exactly. */
#include "backends/native/data/loader.h"

#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "common/util.h"
#include "common/banned.h"

#define LOADER_STREAM 0x6c6f616465720000ULL /* "loader" */

void tok_example_clear(struct tok_example *e)
{
	free(e->ids);
	free(e->loss);
	free(e->prompt);
	free(e->reference);
	memset(e, 0, sizeof *e);
}

void tok_set_clear_choices(struct tok_set *s)
{
	for (size_t i = 0; s->choices && i < s->n; i++) {
		struct tok_choices *c = &s->choices[i];
		for (size_t j = 0; c->seq && j < c->n; j++)
			tok_example_clear(&c->seq[j]);
		free(c->seq);
		free(c->chars);
	}
	free(s->choices);
	s->choices = NULL;
	s->n_choice_truncated = 0;
}

void tok_set_free(struct tok_set *s)
{
	if (!s)
		return;
	tok_set_clear_choices(s);
	for (size_t i = 0; i < s->n; i++) {
		tok_example_clear(&s->ex[i]);
		if (s->pair) {
			tok_example_clear(&s->pair[2 * i]);
			tok_example_clear(&s->pair[2 * i + 1]);
		}
	}
	free(s->ex);
	free(s->pair);
	free(s);
}

/* The chosen and rejected sequences of preference example i, the loss on the completion. */
static int tokenize_pair(struct tok_set *s, size_t i, const struct dataset *ds,
			 const struct template_spec *ts, const struct data_tok *tok, int max_length,
			 struct diag *d)
{
	for (int k = 0; k < 2; k++) {
		struct templated t;
		int rc = template_apply_pref(&t, &ds->recs[i], k == 1, ts, ds->path, d);
		if (!rc) {
			rc = data_tokenize_one(&s->pair[2 * i + (size_t)k], &t, tok, max_length, false, d);
			templated_free(&t);
		}
		if (rc)
			return rc;
	}
	const struct tok_example *c = &s->pair[2 * i], *r = &s->pair[2 * i + 1];
	s->n_pair_truncated += c->truncated || r->truncated;
	size_t nc = 0, nr = 0;
	for (size_t k = 1; k < c->n; k++)
		nc += c->loss[k];
	for (size_t k = 1; k < r->n; k++)
		nr += r->loss[k];
	s->n_pair_empty += nc == 0 || nr == 0;
	return 0;
}

static int grow(struct tok_example *e, size_t *cap, size_t need)
{
	if (need <= *cap)
		return 0;
	size_t nc = *cap ? *cap : 64;
	while (nc < need)
		nc *= 2;
	int32_t *ids = realloc(e->ids, nc * sizeof *ids);
	if (!ids)
		return FT_ENOMEM;
	e->ids = ids;
	uint8_t *loss = realloc(e->loss, nc);
	if (!loss)
		return FT_ENOMEM;
	e->loss = loss;
	*cap = nc;
	return 0;
}

int data_tokenize_one(struct tok_example *out, const struct templated *t, const struct data_tok *tok,
		      int max_length, bool train_on_inputs, struct diag *d)
{
	memset(out, 0, sizeof *out);
	size_t cap = 0;
	int rc = 0;
	if (tok->add_bos && tok->bos_id >= 0) {
		if ((rc = grow(out, &cap, 1)))
			goto fail;
		out->ids[0] = tok->bos_id;
		out->loss[0] = 0;
		out->n = 1;
	}
	for (size_t i = 0; i < t->n; i++) {
		const struct segment *s = &t->segs[i];
		if (i == t->n_prompt)
			out->n_prompt = out->n;
		uint8_t train = (train_on_inputs || (s->flags & SEG_TRAIN)) ? 1 : 0;
		if (s->flags & SEG_EOS) {
			if (tok->eos_id < 0)
				continue;
			if ((rc = grow(out, &cap, out->n + 1)))
				goto fail;
			out->ids[out->n] = tok->eos_id;
			out->loss[out->n++] = train;
			continue;
		}
		int32_t *ids = NULL;
		size_t n = 0;
		bool more = out->n > (tok->add_bos && tok->bos_id >= 0 ? 1u : 0u) && tok->encode_more;
		rc = (more ? tok->encode_more : tok->encode)(tok->ud, s->text, strlen(s->text),
							     (s->flags & SEG_MARKUP) != 0, &ids, &n, d);
		if (rc)
			goto fail;
		if ((rc = grow(out, &cap, out->n + n))) {
			free(ids);
			goto fail;
		}
		memcpy(out->ids + out->n, ids, n * sizeof *ids);
		memset(out->loss + out->n, train, n);
		out->n += n;
		free(ids);
	}
	if (t->n_prompt >= t->n)
		out->n_prompt = out->n;
	if (max_length > 0 && out->n > (size_t)max_length) {
		out->n = (size_t)max_length;
		out->truncated = true;
		if (out->n_prompt > out->n)
			out->n_prompt = out->n;
	}
	if (t->prompt && !(out->prompt = ft_strdup(t->prompt)))
		rc = FT_ENOMEM;
	if (!rc && t->reference && !(out->reference = ft_strdup(t->reference)))
		rc = FT_ENOMEM;
	if (rc)
		goto fail;
	return 0;
fail:
	if (rc == FT_ENOMEM)
		diag_set(d, rc, NULL, 0, 0, "out of memory tokenising an example");
	tok_example_clear(out);
	return rc;
}

int data_tokenize(struct tok_set **out, const struct dataset *ds, const struct template_spec *ts,
		  const struct data_tok *tok, int max_length, bool train_on_inputs, struct diag *d)
{
	*out = NULL;
	struct tok_set *s = calloc(1, sizeof *s);
	bool pairs = ds->format == DATA_PREFERENCE;
	if (!s || (ds->n && !(s->ex = calloc(ds->n, sizeof *s->ex))) ||
	    (pairs && ds->n && !(s->pair = calloc(2 * ds->n, sizeof *s->pair)))) {
		if (s)
			free(s->ex);
		free(s);
		return diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory tokenising %s", ds->path);
	}
	for (size_t i = 0; i < ds->n; i++) {
		struct templated t;
		int rc = template_apply(&t, &ds->recs[i], ds->format, ts, ds->path, d);
		if (!rc) {
			rc = data_tokenize_one(&s->ex[i], &t, tok, max_length, train_on_inputs, d);
			templated_free(&t);
		}
		if (!rc && pairs)
			rc = tokenize_pair(s, i, ds, ts, tok, max_length, d);
		if (rc) {
			if (d->code && !d->line && ds->recs[i].line && d->file[0] == 0) {
				/* Tokenizer errors carry no position: name the example. */
				snprintf(d->file, sizeof d->file, "%s", ds->path);
				d->line = ds->recs[i].line;
			}
			tok_set_free(s);
			return rc;
		}
		struct tok_example *e = &s->ex[i];
		e->record = i;
		s->n = i + 1;
		s->n_truncated += e->truncated;
		size_t nl = 0;
		/* Position 0 is never a target (nothing predicts it). */
		for (size_t k = 1; k < e->n; k++)
			nl += e->loss[k];
		s->n_no_loss += nl == 0;
		s->n_tokens += e->n;
		s->n_loss_tokens += nl;
	}
	*out = s;
	return 0;
}

void data_targets(int32_t *t, const int32_t *ids, const uint8_t *loss, size_t n)
{
	for (size_t i = 0; i + 1 < n; i++)
		t[i] = loss[i + 1] ? ids[i + 1] : -1;
	if (n)
		t[n - 1] = -1;
}

size_t data_pair_len(const struct tok_set *set, const size_t *idx, int P)
{
	size_t longest = 0;
	for (int p = 0; p < P; p++)
		for (size_t k = 0; k < 2; k++) {
			size_t n = set->pair[2 * idx[p] + k].n;
			longest = n > longest ? n : longest;
		}
	return longest;
}

void data_pair_rows(int32_t *tokens, int32_t *targets, uint8_t *comp, const struct tok_set *set,
		    const size_t *idx, int P, int T, int32_t pad_id, bool nll_all)
{
	size_t bt = (size_t)2 * (size_t)P * (size_t)T;
	for (size_t i = 0; i < bt; i++) {
		tokens[i] = pad_id;
		targets[i] = -1;
		comp[i] = 0;
	}
	for (int p = 0; p < P; p++)
		for (int k = 0; k < 2; k++) {
			const struct tok_example *e = &set->pair[2 * idx[p] + (size_t)k];
			size_t row = (size_t)k * (size_t)P + (size_t)p, n = e->n < (size_t)T ? e->n : (size_t)T;
			int32_t *tk = tokens + row * (size_t)T, *tg = targets + row * (size_t)T;
			uint8_t *cm = comp + row * (size_t)T;
			memcpy(tk, e->ids, n * sizeof *tk);
			data_targets(tg, e->ids, e->loss, n);
			for (size_t t = 0; t < n; t++)
				cm[t] = tg[t] >= 0;
			if (nll_all && k == 0)
				for (size_t t = 0; t + 1 < n; t++)
					tg[t] = e->ids[t + 1];
		}
}

/* ---- batching --------------------------------------------------------------------- */

struct loader {
	const struct tok_set *set;
	struct loader_opts o;
	size_t *order;     /* (n) this epoch's permutation */
	uint64_t epoch, position;
	bool have_order;
	int32_t *tokens, *targets; /* (B, seq_len); with pairs (2B, seq_len) */
	uint8_t *comp;     /* pairs: (2B, seq_len) completion positions */
	/* packing: first example index (into order) of each batch of this epoch */
	size_t *pack_starts;
	size_t n_pack;
};

void loader_free(struct loader *l)
{
	if (!l)
		return;
	free(l->order);
	free(l->tokens);
	free(l->targets);
	free(l->comp);
	free(l->pack_starts);
	free(l);
}

static size_t ex_len(const struct loader *l, size_t i)
{
	size_t n = l->set->ex[i].n;
	return n > (size_t)l->o.seq_len ? (size_t)l->o.seq_len : n;
}

/* Rows a packed batch takes from order[pos...]: returns how many examples fit in B rows. */
static size_t pack_count(const struct loader *l, size_t pos)
{
	size_t n = l->set->n, used = 0, row = 0, fill = 0;
	while (pos + used < n) {
		size_t len = ex_len(l, l->order[pos + used]);
		if (fill + len > (size_t)l->o.seq_len) {
			row++;
			fill = 0;
			if (row == (size_t)l->o.batch_size)
				break;
		}
		fill += len;
		used++;
	}
	return used;
}

static void start_epoch(struct loader *l)
{
	size_t n = l->set->n;
	for (size_t i = 0; i < n; i++)
		l->order[i] = i;
	if (l->o.shuffle && n > 1) {
		struct rng r;
		rng_seed(&r, l->o.seed, LOADER_STREAM + l->epoch);
		for (size_t i = n - 1; i > 0; i--) {
			size_t j = (size_t)rng_below(&r, i + 1);
			size_t t = l->order[i];
			l->order[i] = l->order[j];
			l->order[j] = t;
		}
	}
	l->n_pack = 0;
	if (l->o.packing) {
		size_t pos = 0;
		while (pos < n) {
			l->pack_starts[l->n_pack++] = pos;
			pos += pack_count(l, pos);
		}
	}
	l->have_order = true;
}

int loader_create(struct loader **out, const struct tok_set *set, const struct loader_opts *o,
		  struct diag *d)
{
	*out = NULL;
	if (o->batch_size <= 0 || o->seq_len <= 1)
		return diag_set(d, FT_EINVAL, NULL, 0, 0,
				"batch size (%d) and sequence length (%d) must be positive", o->batch_size,
				o->seq_len);
	if (!set || set->n == 0)
		return diag_set(d, FT_EINVAL, NULL, 0, 0, "no examples to train on");
	if (o->pairs && (!set->pair || o->packing))
		return diag_set(d, FT_EINVAL, NULL, 0, 0, "preference pairs need pair data and no packing");
	size_t bt;
	if (!size_mul((size_t)o->batch_size * (o->pairs ? 2u : 1u), (size_t)o->seq_len, &bt))
		return diag_set(d, FT_EINVAL, NULL, 0, 0, "batch size times sequence length overflows");
	struct loader *l = calloc(1, sizeof *l);
	if (!l)
		return diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
	l->set = set;
	l->o = *o;
	l->order = malloc(set->n * sizeof *l->order);
	l->pack_starts = malloc((set->n + 1) * sizeof *l->pack_starts);
	l->tokens = malloc(bt * sizeof *l->tokens);
	l->targets = malloc(bt * sizeof *l->targets);
	l->comp = o->pairs ? malloc(bt) : NULL;
	if (!l->order || !l->pack_starts || !l->tokens || !l->targets || (o->pairs && !l->comp)) {
		loader_free(l);
		return diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory for a %d x %d batch",
				o->batch_size, o->seq_len);
	}
	*out = l;
	return 0;
}

size_t loader_batches_per_epoch(struct loader *l)
{
	if (!l->have_order)
		start_epoch(l);
	if (l->o.packing)
		return l->n_pack;
	return (l->set->n + (size_t)l->o.batch_size - 1) / (size_t)l->o.batch_size;
}

int loader_next(struct loader *l, struct batch *b)
{
	size_t n = l->set->n;
	if (n == 0)
		return FT_EINVAL;
	if (!l->have_order)
		start_epoch(l);
	if (l->position >= n) {
		l->epoch++;
		l->position = 0;
		start_epoch(l);
	}
	int B = l->o.batch_size, Tmax = l->o.seq_len;
	if (l->o.pairs) {
		size_t take = n - l->position < (size_t)B ? n - l->position : (size_t)B;
		const size_t *idx = l->order + l->position;
		size_t t8 = (data_pair_len(l->set, idx, (int)take) + 7) / 8 * 8;
		int T = l->o.fixed_len || t8 > (size_t)Tmax ? Tmax : t8 < 2 ? 2 : (int)t8;
		if (T > Tmax)
			T = Tmax;
		data_pair_rows(l->tokens, l->targets, l->comp, l->set, idx, (int)take, T, l->o.pad_id,
			       l->o.nll_all);
		int64_t nt = 0;
		for (size_t i = 0; i < 2 * take * (size_t)T; i++)
			nt += l->targets[i] >= 0;
		l->position += take;
		*b = (struct batch){.B = 2 * B, .T = T, .tokens = l->tokens, .targets = l->targets,
				    .n_targets = nt, .rows = 2 * (int)take, .examples = (int)take,
				    .idx = idx, .comp = l->comp, .epoch = l->epoch,
				    .last_of_epoch = l->position >= n};
		return 0;
	}
	/* Rows: lists of examples (order indices) per row. */
	size_t take;
	if (l->o.packing)
		take = pack_count(l, (size_t)l->position);
	else
		take = n - l->position < (size_t)B ? n - l->position : (size_t)B;
	/* Longest row, to choose T. */
	size_t longest = 0, row = 0, fill = 0;
	for (size_t k = 0; k < take; k++) {
		size_t len = ex_len(l, l->order[l->position + k]);
		if (l->o.packing) {
			if (fill + len > (size_t)Tmax) {
				row++;
				fill = 0;
			}
			fill += len;
			if (fill > longest)
				longest = fill;
		} else if (len > longest) {
			longest = len;
		}
	}
	int rows = l->o.packing ? (int)row + 1 : (int)take;
	int T = Tmax;
	if (!l->o.fixed_len) {
		size_t t8 = (longest + 7) / 8 * 8;
		T = t8 < (size_t)Tmax ? (int)t8 : Tmax;
		if (T < 2)
			T = 2 <= Tmax ? 2 : Tmax;
	}
	size_t bt = (size_t)B * (size_t)T;
	for (size_t i = 0; i < bt; i++) {
		l->tokens[i] = l->o.pad_id;
		l->targets[i] = -1;
	}
	int64_t nt = 0;
	row = 0;
	fill = 0;
	for (size_t k = 0; k < take; k++) {
		const struct tok_example *e = &l->set->ex[l->order[l->position + k]];
		size_t len = ex_len(l, l->order[l->position + k]);
		if (l->o.packing) {
			if (fill + len > (size_t)Tmax) {
				row++;
				fill = 0;
			}
		} else {
			row = k;
			fill = 0;
		}
		int32_t *tk = l->tokens + row * (size_t)T + fill, *tg = l->targets + row * (size_t)T + fill;
		memcpy(tk, e->ids, len * sizeof *tk);
		data_targets(tg, e->ids, e->loss, len);
		for (size_t i = 0; i < len; i++)
			nt += tg[i] >= 0;
		fill += len;
	}
	l->position += take;
	b->B = B;
	b->T = T;
	b->tokens = l->tokens;
	b->targets = l->targets;
	b->n_targets = nt;
	b->rows = rows;
	b->examples = (int)take;
	b->idx = NULL;
	b->comp = NULL;
	b->epoch = l->epoch;
	b->last_of_epoch = l->position >= n;
	return 0;
}

void loader_get_cursor(const struct loader *l, struct data_cursor *out)
{
	out->epoch = l->epoch;
	out->position = l->position;
	out->seed = l->o.seed;
	out->n_examples = l->set->n;
}

int loader_set_cursor(struct loader *l, const struct data_cursor *c, struct diag *d)
{
	if (c->seed != l->o.seed || c->n_examples != l->set->n || c->position > l->set->n)
		return diag_set(d, FT_EINVAL, NULL, 0, 0,
				"the checkpoint's data cursor (seed %llu, %llu examples) does not match this data (seed %llu, %zu examples)",
				(unsigned long long)c->seed, (unsigned long long)c->n_examples,
				(unsigned long long)l->o.seed, l->set->n);
	l->epoch = c->epoch;
	l->position = c->position;
	start_epoch(l);
	return 0;
}
