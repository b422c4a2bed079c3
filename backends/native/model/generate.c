/* generate: KV-cache generation for many prompts at once. Each prompt is prefilled on its
 * own (its rows of the cache), then all sequences decode together one token per step
 * (a (n, C) x (C, out) matmul per linear instead of n matrix-vector products). Sampling
 * (greedy, temperature, top-k, top-p) runs on the host with one RNG stream per prompt, so
 * a prompt's output does not depend on which other prompts share the batch. */
#include "backends/native/model/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backends/native/model/model_internal.h"
#include "backends/native/ops/ops.h"
#include "common/rng.h"
#include "common/util.h"
#include "common/banned.h"

struct cand {
	float logit;
	int32_t id;
};

static int cand_desc(const void *a, const void *b)
{
	const struct cand *x = a, *y = b;
	if (x->logit != y->logit)
		return x->logit < y->logit ? 1 : -1;
	return x->id < y->id ? -1 : x->id > y->id;
}

/* Picks the next token from one row of logits (V). cand is scratch (V). */
static int32_t sample(const float *logits, int v, const struct gen_opts *g, struct rng *r,
		      struct cand *cand)
{
	if (g->temperature <= 0.0f) {
		int32_t best = 0;
		for (int i = 1; i < v; i++)
			if (logits[i] > logits[best])
				best = i;
		return best;
	}
	for (int i = 0; i < v; i++) {
		cand[i].logit = logits[i] / g->temperature;
		cand[i].id = i;
	}
	int n = v;
	qsort(cand, (size_t)v, sizeof *cand, cand_desc);
	if (g->top_k > 0 && g->top_k < n)
		n = g->top_k;
	double mx = cand[0].logit, sum = 0.0;
	for (int i = 0; i < n; i++)
		sum += exp((double)cand[i].logit - mx);
	if (g->top_p > 0.0f && g->top_p < 1.0f) {
		double cum = 0.0;
		int keep = n;
		for (int i = 0; i < n; i++) {
			cum += exp((double)cand[i].logit - mx) / sum;
			if (cum >= g->top_p) {
				keep = i + 1;
				break;
			}
		}
		n = keep;
		sum = 0.0;
		for (int i = 0; i < n; i++)
			sum += exp((double)cand[i].logit - mx);
	}
	double u = rng_uniform(r) * sum, acc = 0.0;
	for (int i = 0; i < n; i++) {
		acc += exp((double)cand[i].logit - mx);
		if (u < acc)
			return cand[i].id;
	}
	return cand[n - 1].id;
}

struct gen_buf {
	struct lacts a;
	float *x, *xo, *tmp, *lnf, *meanf, *rstdf, *logits; /* (R,C) x4, (R), (R), (n,V) */
	float *kc, *vc; /* (L, n, tmax, kvd) */
	int32_t *tok;   /* (R) */
	int *pos;       /* (n) */
};

static bool is_stop_id(const struct gen_opts *g, int32_t id)
{
	if (g->eos_id >= 0 && id == g->eos_id)
		return true;
	for (size_t i = 0; i < g->n_extra_stop_ids; i++)
		if (g->extra_stop_ids[i] == id)
			return true;
	return false;
}

/* Runs the layers over rows of buf->x (B sequences of T tokens at positions pos: pos_dev
 * in backend memory, pos_host the same on the host) with the cache at kc/vc (stride tmax
 * per sequence), leaving the result in buf->x. */
static void run_layers(struct model *m, struct gen_buf *gb, int B, int T, const int *pos_dev,
		       const int *pos_host, size_t seq0, int tmax, size_t n)
{
	int L = m->hp.n_layer;
	for (int l = 0; l < L; l++) {
		size_t lay = (size_t)l * n * tmax * m->kvd + seq0 * tmax * m->kvd;
		gb->a.x = gb->x;
		model_layer_forward(m, l, &gb->a, gb->xo, gb->tmp, B, T, pos_dev, pos_host,
				    gb->kc + lay, gb->vc + lay, tmax, false);
		float *t = gb->x;
		gb->x = gb->xo;
		gb->xo = t;
	}
}

int model_generate_tokens(struct model *m, const int32_t *const *prompts, const size_t *lens,
			  size_t n, const struct gen_opts *g, int32_t ***out_tokens,
			  size_t **out_lens, struct diag *d)
{
	const struct ops *ops = m->ops;
	const struct model_hparams *hp = &m->hp;
	int C = hp->n_embd, V = hp->n_vocab;
	*out_tokens = NULL;
	*out_lens = NULL;
	memset(&m->gstats, 0, sizeof m->gstats);
	if (n == 0)
		return 0;
	size_t maxlen = 0;
	for (size_t i = 0; i < n; i++) {
		if (lens[i] == 0)
			return diag_set(d, FT_EINVAL, NULL, 0, 0, "prompt %zu is empty", i + 1);
		for (size_t j = 0; j < lens[i]; j++)
			if (prompts[i][j] < 0 || prompts[i][j] >= V)
				return diag_set(d, FT_EINVAL, NULL, 0, 0,
						"prompt %zu has token id %d outside the vocabulary",
						i + 1, prompts[i][j]);
		maxlen = lens[i] > maxlen ? lens[i] : maxlen;
	}
	int max_new = g->max_new_tokens > 0 ? g->max_new_tokens : 0;
	/* prefix tuning: every sequence's cache starts with the np prefix rows */
	size_t np = m->prefix >= 0 && !m->adapter_off ? (size_t)m->np : 0;
	size_t tmax = np + maxlen + (size_t)max_new;
	if (hp->arch == ARCH_GPT2 && tmax > (size_t)hp->n_ctx_train) {
		if (maxlen >= (size_t)hp->n_ctx_train)
			return diag_set(d, FT_EINVAL, NULL, 0, 0,
					"a prompt of %zu tokens does not fit the model's %d positions",
					maxlen, hp->n_ctx_train);
		tmax = (size_t)hp->n_ctx_train;
	}
	if (tmax > (1u << 20))
		return diag_set(d, FT_EINVAL, NULL, 0, 0, "prompt plus max_new_tokens too long");
	size_t R = maxlen > n ? maxlen : n;
	struct gen_buf gb;
	memset(&gb, 0, sizeof gb);
	struct mplan p = {0};
	void *mem = NULL;
	size_t bytes = 0;
	int32_t **res = calloc(n, sizeof *res);
	size_t *rlen = calloc(n, sizeof *rlen);
	bool *done = calloc(n, sizeof *done);
	int *pos = calloc(n, sizeof *pos);
	int32_t *next = calloc(n, sizeof *next);
	float *hlog = malloc(n * (size_t)V * sizeof(float));
	struct cand *cand = malloc((size_t)V * sizeof *cand);
	struct rng *rngs = calloc(n, sizeof *rngs);
	int rc = 0;
	if (!res || !rlen || !done || !pos || !next || !hlog || !cand || !rngs) {
		rc = diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
		goto done;
	}
	for (size_t i = 0; i < n; i++) {
		res[i] = malloc(((size_t)max_new + 1) * sizeof(int32_t));
		if (!res[i]) {
			rc = diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
			goto done;
		}
		rng_seed(&rngs[i], g->seed, 0x6e0000 + i);
	}
	size_t cache = (size_t)hp->n_layer * n * tmax * m->kvd;
	model_plan_layer(m, &p, &gb.a, model_lora_rep_layer(m), 1, R, false, KEEP_ALL);
	PLAN_F(&p, gb.x, R * C);
	PLAN_F(&p, gb.xo, R * C);
	PLAN_F(&p, gb.tmp, R * C);
	PLAN_F(&p, gb.lnf, R * C);
	PLAN_F(&p, gb.meanf, R);
	PLAN_F(&p, gb.rstdf, R);
	PLAN_F(&p, gb.logits, n * V);
	PLAN_F(&p, gb.kc, cache);
	PLAN_F(&p, gb.vc, cache);
	mplan_add(&p, (void **)&gb.tok, R * sizeof(int32_t));
	mplan_add(&p, (void **)&gb.pos, n * sizeof(int));
	rc = mplan_alloc(&p, ops, &mem, &bytes, "generation buffers (KV cache)", d);
	if (rc)
		goto done;
	if (np)
		model_prefix_update(m);
	for (int l = 0; np && l < hp->n_layer; l++) {
		const float *pk = model_pdata(m, m->prefix) + (size_t)2 * l * m->kvd;
		size_t ps = (size_t)2 * hp->n_layer * m->kvd;
		for (size_t i = 0; i < n; i++) {
			size_t off = (size_t)l * n * tmax * m->kvd + i * tmax * m->kvd;
			ops->copy_rows(gb.kc + off, m->kvd, pk, ps, (int)np, m->kvd);
			ops->copy_rows(gb.vc + off, m->kvd, pk + m->kvd, ps, (int)np, m->kvd);
		}
	}

	/* prefill, one prompt at a time */
	double t0 = time_monotonic();
	for (size_t i = 0; i < n; i++) {
		int T = (int)lens[i];
		int zero = (int)np; /* the first position after the prefix */
		ops->to_device(gb.tok, prompts[i], (size_t)T * sizeof(int32_t));
		ops->to_device(gb.pos, &zero, sizeof(int));
		model_embed(m, gb.x, gb.tok, NULL, T, T);
		run_layers(m, &gb, 1, T, gb.pos, &zero, i, (int)tmax, n);
		model_head_forward(m, gb.logits + i * V, gb.lnf, gb.meanf, gb.rstdf,
				   gb.x + (size_t)(T - 1) * C, 1);
		pos[i] = (int)np + T;
		m->gstats.prefill_tokens += T;
	}
	ops->to_host(hlog, gb.logits, n * (size_t)V * sizeof(float));
	double t1 = time_monotonic();
	m->gstats.prefill_s = t1 - t0;

	/* decode */
	size_t active = n;
	for (int step = 0; active > 0 && step < max_new; step++) {
		for (size_t i = 0; i < n; i++) {
			if (done[i])
				continue;
			int32_t id = sample(hlog + i * V, V, g, &rngs[i], cand);
			next[i] = id;
			if (is_stop_id(g, id)) {
				done[i] = true;
				active--;
				continue;
			}
			res[i][rlen[i]++] = id;
			if ((g->stop && g->stop(g->stop_ud, i, res[i], rlen[i])) ||
			    (size_t)pos[i] >= tmax || rlen[i] >= (size_t)max_new) {
				done[i] = true;
				active--;
			}
		}
		if (active == 0)
			break;
		/* every sequence steps (finished ones on a harmless token) */
		for (size_t i = 0; i < n; i++)
			if (done[i]) {
				next[i] = 0;
				if ((size_t)pos[i] >= tmax)
					pos[i] = (int)tmax - 1;
			}
		ops->to_device(gb.tok, next, n * sizeof(int32_t));
		ops->to_device(gb.pos, pos, n * sizeof(int));
		model_embed(m, gb.x, gb.tok, gb.pos, (int)n, 1);
		run_layers(m, &gb, (int)n, 1, gb.pos, pos, 0, (int)tmax, n);
		model_head_forward(m, gb.logits, gb.lnf, gb.meanf, gb.rstdf, gb.x, (int)n);
		ops->to_host(hlog, gb.logits, n * (size_t)V * sizeof(float));
		for (size_t i = 0; i < n; i++)
			if (!done[i])
				pos[i]++;
		m->gstats.decode_tokens += (long)active;
	}
	m->gstats.decode_s = time_monotonic() - t1;
	*out_tokens = res;
	*out_lens = rlen;
	res = NULL;
	rlen = NULL;
done:
	if (mem)
		ops->free(mem);
	mplan_free(&p);
	if (res)
		for (size_t i = 0; i < n; i++)
			free(res[i]);
	free(res);
	free(rlen);
	free(done);
	free(pos);
	free(next);
	free(hlog);
	free(cand);
	free(rngs);
	return rc;
}

struct gen_stats model_gen_stats(const struct model *m)
{
	return m->gstats;
}
