/* evaluate: the evaluation driver (see evaluate.h). Per-example sufficient statistics are
 * kept so that every corpus value can be bootstrapped and paired across models: loss and
 * token accuracy as (summed loss, tokens, correct), text metrics as metrics.h vectors. */
#include "backends/native/eval/evaluate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scoring/bootstrap.h"
#include "backends/native/ops/ops.h"
#include "backends/native/peft/adapter.h"
#include "common/util.h"
#include "common/banned.h"

static const char *const tf_names[TF_N] = {"loss", "perplexity", "token_accuracy"};
static const char *const lik_names[LIK_N] = {"choice_accuracy", "choice_accuracy_norm",
					     "preference_accuracy", "preference_margin"};

const char *tf_metric_name(enum tf_metric m)
{
	return (unsigned)m < TF_N ? tf_names[m] : "?";
}

const char *lik_metric_name(enum lik_metric m)
{
	return (unsigned)m < LIK_N ? lik_names[m] : "?";
}

bool eval_wants_choices(const struct eval_settings *s)
{
	return s->want_lik[LIK_CHOICE_ACCURACY] || s->want_lik[LIK_CHOICE_ACCURACY_NORM];
}

static bool wants_pref(const struct eval_settings *s)
{
	return s->want_lik[LIK_PREFERENCE_ACCURACY] || s->want_lik[LIK_PREFERENCE_MARGIN];
}

int eval_settings_metrics(struct eval_settings *s, const char *const *names, size_t n,
			  struct diag *d)
{
	memset(s->want_tf, 0, sizeof s->want_tf);
	memset(s->want_gen, 0, sizeof s->want_gen);
	memset(s->want_lik, 0, sizeof s->want_lik);
	for (size_t i = 0; i < n; i++) {
		bool found = false;
		for (int k = 0; k < TF_N; k++)
			if (strcmp(names[i], tf_names[k]) == 0)
				s->want_tf[k] = found = true;
		for (int k = 0; k < LIK_N; k++)
			if (strcmp(names[i], lik_names[k]) == 0)
				s->want_lik[k] = found = true;
		int g = metric_from_name(names[i]);
		if (g >= 0)
			s->want_gen[g] = found = true;
		if (!found) {
			static const char *const all[] = {"loss", "perplexity", "token_accuracy",
							  "exact_match", "f1", "bleu", "rouge_l", "chrf",
							  "choice_accuracy", "choice_accuracy_norm",
							  "preference_accuracy", "preference_margin"};
			diag_set(d, FT_EINVAL, NULL, 0, 0, "unknown metric '%s'", names[i]);
			const char *near = nearest_word(names[i], all, FT_ARRAY_LEN(all));
			if (near)
				diag_hint(d, "did you mean '%s'?", near);
			else
				diag_hint(d, "metrics: loss, perplexity, token_accuracy, exact_match, f1, "
					  "bleu, rouge_l, chrf, choice_accuracy, choice_accuracy_norm, "
					  "preference_accuracy, preference_margin");
			return FT_EINVAL;
		}
	}
	return 0;
}

int eval_settings_from_config(struct eval_settings *s, const struct config_eval *ev, uint64_t seed,
			      int batch_size, int seq_len, struct diag *d)
{
	memset(s, 0, sizeof *s);
	int rc = eval_settings_metrics(s, (const char *const *)ev->metrics.items, ev->metrics.n, d);
	if (rc)
		return rc;
	s->batch_size = batch_size > 0 ? batch_size : 8;
	s->seq_len = seq_len;
	s->max_new_tokens = ev->generate.max_new_tokens > 0 ? ev->generate.max_new_tokens : 64;
	s->temperature = ev->generate.temperature;
	s->top_k = ev->generate.top_k;
	s->top_p = ev->generate.top_p > 0 ? ev->generate.top_p : 1.0;
	s->stop = (const char *const *)ev->generate.stop.items;
	s->n_stop = ev->generate.stop.n;
	s->seed = seed;
	s->bootstrap = ev->bootstrap;
	s->level = 0.95;
	s->samples = ev->samples;
	return 0;
}

bool eval_wants_generation(const struct eval_settings *s)
{
	for (int k = 0; k < METRIC_N_KINDS; k++)
		if (s->want_gen[k])
			return true;
	return false;
}

void eval_result_free(struct eval_result *r)
{
	if (!r)
		return;
	free(r->tf_rows);
	free(r->choice_rows);
	free(r->choice_pick);
	free(r->choice_lp);
	free(r->pref_rows);
	if (r->outputs)
		for (size_t i = 0; i < r->n; i++)
			free(r->outputs[i]);
	free(r->outputs);
	for (int k = 0; k < METRIC_N_KINDS; k++)
		free(r->rows[k]);
	memset(r, 0, sizeof *r);
}

static bool stopped(const struct eval_settings *s)
{
	return s->stop_flag && *s->stop_flag;
}

/* ---- teacher forcing -------------------------------------------------------------- */

static int run_tf(struct eval_result *out, struct model *m, const struct tok_set *set,
		  const struct eval_settings *s, struct diag *d)
{
	int B = s->batch_size, Tmax = s->seq_len;
	size_t bt = (size_t)B * (size_t)Tmax;
	int32_t *tokens = malloc(bt * sizeof *tokens), *targets = malloc(bt * sizeof *targets);
	int rc = 0;
	if (!tokens || !targets) {
		rc = diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory for a %d x %d batch", B, Tmax);
		goto done;
	}
	double t0 = time_monotonic();
	for (size_t first = 0; first < set->n; first += (size_t)B) {
		if (stopped(s)) {
			rc = diag_set(d, FT_EINTR, NULL, 0, 0, "interrupted");
			goto done;
		}
		int b = set->n - first < (size_t)B ? (int)(set->n - first) : B;
		size_t longest = 2;
		for (int r = 0; r < b; r++) {
			size_t n = set->ex[first + (size_t)r].n;
			longest = n > longest ? n : longest;
		}
		int T = longest < (size_t)Tmax ? (int)longest : Tmax;
		for (size_t i = 0; i < (size_t)b * (size_t)T; i++) {
			tokens[i] = 0;
			targets[i] = -1;
		}
		for (int r = 0; r < b; r++) {
			const struct tok_example *e = &set->ex[first + (size_t)r];
			size_t n = e->n < (size_t)T ? e->n : (size_t)T;
			memcpy(tokens + (size_t)r * T, e->ids, n * sizeof *tokens);
			data_targets(targets + (size_t)r * T, e->ids, e->loss, n);
		}
		float loss;
		long ntok;
		rc = model_forward(m, tokens, targets, b, T, &loss, &ntok);
		if (rc) {
			diag_set(d, rc, NULL, 0, 0, "forward pass failed during evaluation");
			goto done;
		}
		/* the model scored only the positions with a target (host arrays) */
		const float *tl = model_token_losses(m);
		const int32_t *am = model_token_argmax(m);
		for (int r = 0; r < b; r++) {
			double *row = out->tf_rows + (first + (size_t)r) * 3;
			for (int t = 0; t < T; t++) {
				size_t p = (size_t)r * T + (size_t)t;
				if (targets[p] < 0)
					continue;
				row[0] += tl[p];
				row[1] += 1;
				row[2] += am[p] == targets[p];
			}
		}
		if (s->progress)
			s->progress(s->progress_ud, "forward", first + (size_t)b, set->n);
	}
	out->tf_seconds = time_monotonic() - t0;
done:
	free(tokens);
	free(targets);
	return rc;
}

/* ---- likelihood: choices and preference pairs ---------------------------------------- */

/* Rows of one likelihood forward: a sequence's tokens with targets on the scored part. */
struct lik_batch {
	int32_t *tokens, *targets; /* (B, Tmax) */
	uint8_t *comp;             /* (B, Tmax) pairs */
	double *lp;                /* (B) */
	size_t *idx;               /* (B) */
};

static void lik_batch_free(struct lik_batch *b)
{
	free(b->tokens);
	free(b->targets);
	free(b->comp);
	free(b->lp);
	free(b->idx);
	memset(b, 0, sizeof *b); /* freeing twice (after a failed alloc) is harmless */
}

static int lik_batch_alloc(struct lik_batch *b, int B, int Tmax, struct diag *d)
{
	size_t bt = (size_t)B * (size_t)Tmax;
	memset(b, 0, sizeof *b);
	b->tokens = malloc(bt * sizeof *b->tokens);
	b->targets = malloc(bt * sizeof *b->targets);
	b->comp = malloc(bt);
	b->lp = malloc((size_t)B * sizeof *b->lp);
	b->idx = malloc((size_t)B * sizeof *b->idx);
	if (b->tokens && b->targets && b->comp && b->lp && b->idx)
		return 0;
	lik_batch_free(b);
	diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory for a %d x %d batch", B, Tmax);
	return FT_ENOMEM; /* not diag_set's return: the analyzer follows this one */
}

/* The summed log-probability of every choice of every example, then per example: is the
 * argmax (first on ties, as numpy's) the answer, with and without dividing by the
 * choice's length in characters (lm-evaluation-harness's acc and acc_norm). */
static int run_choices(struct eval_result *out, struct model *m, const struct tok_set *set,
		       const struct eval_settings *s, struct diag *d)
{
	if (!set->choices)
		return diag_set(d, FT_EINVAL, NULL, 0, 0,
				"choice metrics need examples with choices (data_prepare_choices)");
	int B = s->batch_size, Tmax = s->seq_len;
	size_t total = 0;
	for (size_t i = 0; i < set->n; i++)
		total += set->choices[i].n;
	double *lp = calloc(total ? total : 1, sizeof *lp);
	struct lik_batch b;
	int rc = lik_batch_alloc(&b, B, Tmax, d);
	out->choice_rows = calloc(set->n * 2, sizeof(double));
	out->choice_pick = calloc(set->n, sizeof(size_t));
	if (!rc && (!lp || !out->choice_rows || !out->choice_pick)) {
		rc = FT_ENOMEM; /* set here: the analyzer cannot see diag_set's return */
		diag_set(d, rc, NULL, 0, 0, "out of memory");
	}
	/* sequences in order: example i, choice j */
	size_t ei = 0, cj = 0, done = 0;
	while (!rc && done < total) {
		if (stopped(s)) {
			rc = FT_EINTR;
			diag_set(d, rc, NULL, 0, 0, "interrupted");
			break;
		}
		int rows = 0;
		size_t longest = 2;
		const struct tok_example *seq[256];
		int cap = B < 256 ? B : 256;
		while (rows < cap && done + (size_t)rows < total) {
			while (cj >= set->choices[ei].n) {
				ei++;
				cj = 0;
			}
			seq[rows] = &set->choices[ei].seq[cj++];
			longest = seq[rows]->n > longest ? seq[rows]->n : longest;
			rows++;
		}
		int T = longest < (size_t)Tmax ? (int)longest : Tmax;
		for (size_t i = 0; i < (size_t)rows * (size_t)T; i++) {
			b.tokens[i] = 0;
			b.targets[i] = -1;
		}
		for (int r = 0; r < rows; r++) {
			size_t n = seq[r]->n < (size_t)T ? seq[r]->n : (size_t)T;
			memcpy(b.tokens + (size_t)r * T, seq[r]->ids, n * sizeof *b.tokens);
			data_targets(b.targets + (size_t)r * T, seq[r]->ids, seq[r]->loss, n);
		}
		if ((rc = model_forward(m, b.tokens, b.targets, rows, T, NULL, NULL)) != 0 ||
		    (rc = model_row_logprobs(m, b.lp, NULL)) != 0) {
			diag_set(d, rc, NULL, 0, 0, "forward pass failed scoring choices");
			break;
		}
		memcpy(lp + done, b.lp, (size_t)rows * sizeof *lp);
		done += (size_t)rows;
		if (s->progress)
			s->progress(s->progress_ud, "choices", done, total);
	}
	for (size_t i = 0, off = 0; !rc && i < set->n; i++) {
		const struct tok_choices *c = &set->choices[i];
		size_t best = 0, best_norm = 0;
		for (size_t j = 1; j < c->n; j++) {
			if (lp[off + j] > lp[off + best])
				best = j;
			if (lp[off + j] / (double)c->chars[j] >
			    lp[off + best_norm] / (double)c->chars[best_norm])
				best_norm = j;
		}
		out->choice_rows[2 * i] = best == c->answer;
		out->choice_rows[2 * i + 1] = best_norm == c->answer;
		out->choice_pick[i] = best;
		off += c->n;
	}
	if (rc)
		free(lp);
	else
		out->choice_lp = lp;
	lik_batch_free(&b);
	return rc;
}

/* log p(chosen) and log p(rejected) (summed over each completion) of every pair. */
static int run_pref(struct eval_result *out, struct model *m, const struct tok_set *set,
		    const struct eval_settings *s, struct diag *d)
{
	if (!set->pair)
		return diag_set(d, FT_EINVAL, NULL, 0, 0,
				"preference metrics need preference data (chosen and rejected)");
	int P = s->batch_size / 2 > 0 ? s->batch_size / 2 : 1, Tmax = s->seq_len;
	struct lik_batch b;
	int rc = lik_batch_alloc(&b, 2 * P, Tmax, d);
	out->pref_rows = calloc(set->n * 2, sizeof(double));
	if (!rc && !out->pref_rows) {
		rc = FT_ENOMEM;
		diag_set(d, rc, NULL, 0, 0, "out of memory");
	}
	for (size_t first = 0; !rc && first < set->n; first += (size_t)P) {
		if (stopped(s)) {
			rc = FT_EINTR;
			diag_set(d, rc, NULL, 0, 0, "interrupted");
			break;
		}
		int np = set->n - first < (size_t)P ? (int)(set->n - first) : P;
		for (int q = 0; q < np; q++)
			b.idx[q] = first + (size_t)q;
		size_t len = data_pair_len(set, b.idx, np);
		int T = len < 2 ? 2 : len > (size_t)Tmax ? Tmax : (int)len;
		data_pair_rows(b.tokens, b.targets, b.comp, set, b.idx, np, T, 0, false);
		if ((rc = model_forward(m, b.tokens, b.targets, 2 * np, T, NULL, NULL)) != 0 ||
		    (rc = model_row_logprobs(m, b.lp, b.comp)) != 0) {
			diag_set(d, rc, NULL, 0, 0, "forward pass failed scoring preference pairs");
			break;
		}
		for (int q = 0; q < np; q++) {
			double margin = b.lp[q] - b.lp[np + q];
			out->pref_rows[2 * (first + (size_t)q)] = margin > 0;
			out->pref_rows[2 * (first + (size_t)q) + 1] = margin;
		}
		if (s->progress)
			s->progress(s->progress_ud, "pairs", first + (size_t)np, set->n);
	}
	lik_batch_free(&b);
	return rc;
}

/* ---- generation ------------------------------------------------------------------- */

int eval_output_text(char **out, const struct tokenizer *tok, const int32_t *ids, size_t n,
		     const char *const *stop, size_t n_stop)
{
	char *text = NULL;
	size_t len = 0;
	int rc = tokenizer_decode(tok, ids, n, true, &text, &len);
	if (rc)
		return rc;
	size_t cut = len;
	for (size_t i = 0; i < n_stop; i++) {
		if (!stop[i] || !*stop[i])
			continue;
		char *p = strstr(text, stop[i]);
		if (p && (size_t)(p - text) < cut)
			cut = (size_t)(p - text);
	}
	size_t a = 0, b = cut;
	while (a < b && (text[a] == ' ' || text[a] == '\n' || text[a] == '\t' || text[a] == '\r'))
		a++;
	while (b > a && (text[b - 1] == ' ' || text[b - 1] == '\n' || text[b - 1] == '\t' ||
			 text[b - 1] == '\r'))
		b--;
	*out = ft_strndup(text + a, b - a);
	free(text);
	return *out ? 0 : FT_ENOMEM;
}

struct stop_ctx {
	const struct tokenizer *tok;
	const char *const *stop;
	size_t n_stop;
};

/* Stops a sequence once its decoded text contains a stop string. */
static bool stop_cb(void *ud, size_t i, const int32_t *gen, size_t n_gen)
{
	(void)i;
	const struct stop_ctx *c = ud;
	char *text = NULL;
	size_t len = 0;
	if (tokenizer_decode(c->tok, gen, n_gen, true, &text, &len) != 0)
		return false;
	bool hit = false;
	for (size_t k = 0; k < c->n_stop && !hit; k++)
		hit = c->stop[k] && *c->stop[k] && strstr(text, c->stop[k]);
	free(text);
	return hit;
}

static int run_gen(struct eval_result *out, struct model *m, const struct tokenizer *tok,
		   const struct tok_set *set, const struct eval_settings *s, struct diag *d)
{
	for (size_t i = 0; i < set->n; i++)
		if (!set->ex[i].reference || set->ex[i].n_prompt == 0)
			return diag_set(d, FT_EINVAL, NULL, 0, 0,
					"generation metrics need examples with a prompt and a reference (example %zu has none; the text format has no reference)",
					i + 1);
	out->outputs = calloc(set->n, sizeof *out->outputs);
	if (!out->outputs)
		return diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
	int32_t extra[3];
	size_t n_extra = 0;
	int32_t id = tokenizer_token_id(tok, "<|im_end|>");
	if (id >= 0)
		extra[n_extra++] = id;
	if ((id = tokenizer_token_id(tok, "<end_of_turn>")) >= 0) /* Gemma */
		extra[n_extra++] = id;
	id = tokenizer_token_id(tok, "<|endoftext|>");
	if (id >= 0 && id != tokenizer_eos(tok))
		extra[n_extra++] = id;
	struct stop_ctx sc = {tok, s->stop, s->n_stop};
	struct gen_opts g;
	memset(&g, 0, sizeof g);
	g.max_new_tokens = s->max_new_tokens;
	g.temperature = (float)s->temperature;
	g.top_k = s->top_k;
	g.top_p = (float)s->top_p;
	g.seed = s->seed;
	g.eos_id = tokenizer_eos(tok);
	g.extra_stop_ids = extra;
	g.n_extra_stop_ids = n_extra;
	g.stop = s->n_stop ? stop_cb : NULL;
	g.stop_ud = &sc;
	size_t G = s->batch_size > 0 ? (size_t)s->batch_size : 8;
	const int32_t **prompts = calloc(G, sizeof *prompts);
	size_t *lens = calloc(G, sizeof *lens);
	int rc = 0;
	if (!prompts || !lens) {
		rc = diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
		goto done;
	}
	double t0 = time_monotonic();
	for (size_t first = 0; first < set->n; first += G) {
		if (stopped(s)) {
			rc = diag_set(d, FT_EINTR, NULL, 0, 0, "interrupted");
			goto done;
		}
		size_t b = set->n - first < G ? set->n - first : G;
		for (size_t r = 0; r < b; r++) {
			prompts[r] = set->ex[first + r].ids;
			lens[r] = set->ex[first + r].n_prompt;
		}
		int32_t **gen = NULL;
		size_t *glen = NULL;
		rc = model_generate_tokens(m, prompts, lens, b, &g, &gen, &glen, d);
		if (rc)
			goto done;
		for (size_t r = 0; r < b && !rc; r++) {
			out->gen_tokens += (long)glen[r];
			rc = eval_output_text(&out->outputs[first + r], tok, gen[r], glen[r], s->stop, s->n_stop);
		}
		for (size_t r = 0; r < b; r++)
			free(gen[r]);
		free(gen);
		free(glen);
		if (rc) {
			diag_set(d, rc, NULL, 0, 0, "could not decode generated tokens");
			goto done;
		}
		if (s->progress)
			s->progress(s->progress_ud, "generate", first + b, set->n);
	}
	out->gen_seconds = time_monotonic() - t0;
	for (int k = 0; k < METRIC_N_KINDS && !rc; k++) {
		if (!s->want_gen[k])
			continue;
		size_t dim = metric_stats_dim((enum metric_kind)k);
		out->rows[k] = calloc(set->n * dim, sizeof(double));
		if (!out->rows[k]) {
			rc = diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
			break;
		}
		for (size_t i = 0; i < set->n && !rc; i++)
			rc = metric_pair_stats(out->rows[k] + i * dim, (enum metric_kind)k, out->outputs[i],
					       set->ex[i].reference);
		if (rc)
			diag_set(d, rc, NULL, 0, 0, "out of memory scoring outputs");
	}
done:
	free(prompts);
	free(lens);
	return rc;
}

int eval_split(struct eval_result *out, struct model *m, const struct tokenizer *tok,
	       const struct tok_set *set, const struct eval_settings *s, struct diag *d)
{
	memset(out, 0, sizeof *out);
	out->n = set->n;
	if (set->n == 0)
		return diag_set(d, FT_EINVAL, NULL, 0, 0, "no examples to evaluate");
	model_set_training(m, false);
	int rc = 0;
	bool tf = s->want_tf[TF_LOSS] || s->want_tf[TF_PERPLEXITY] || s->want_tf[TF_TOKEN_ACCURACY];
	if (tf) {
		out->tf_rows = calloc(set->n * 3, sizeof(double));
		if (!out->tf_rows)
			rc = diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
		if (!rc)
			rc = run_tf(out, m, set, s, d);
	}
	if (!rc && eval_wants_choices(s))
		rc = run_choices(out, m, set, s, d);
	if (!rc && wants_pref(s))
		rc = run_pref(out, m, set, s, d);
	if (!rc && eval_wants_generation(s))
		rc = run_gen(out, m, tok, set, s, d);
	if (rc)
		eval_result_free(out);
	return rc;
}

/* ---- reporting -------------------------------------------------------------------- */

static double agg_loss(const double *sum, size_t n, void *ud)
{
	(void)n;
	(void)ud;
	return sum[1] > 0 ? sum[0] / sum[1] : NAN;
}

static double agg_ppl(const double *sum, size_t n, void *ud)
{
	return exp(agg_loss(sum, n, ud));
}

static double agg_acc(const double *sum, size_t n, void *ud)
{
	(void)n;
	(void)ud;
	return sum[1] > 0 ? sum[2] / sum[1] : NAN;
}

static double agg_col1(const double *sum, size_t n, void *ud)
{
	(void)ud;
	return n ? sum[1] / (double)n : NAN;
}

static double agg_text(const double *sum, size_t n, void *ud)
{
	return metric_from_stats(*(const enum metric_kind *)ud, sum, n);
}

static const enum metric_kind kinds[METRIC_N_KINDS] = {METRIC_EXACT_MATCH, METRIC_F1, METRIC_BLEU,
						       METRIC_ROUGE_L, METRIC_CHRF};

static int emit_one(struct run_sink *sink, const char *split, const char *model, const char *name,
		    const struct eval_result *base, const struct eval_result *tuned,
		    const struct boot_stat *sb, const struct boot_stat *st, size_t n,
		    const struct eval_settings *s, uint64_t seed, struct diag *d)
{
	struct boot_ci cb, ct, cd;
	int rc;
	if (base) {
		rc = bootstrap_paired(&cb, &ct, &cd, sb, st, n, s->bootstrap, s->level, seed);
		if (rc)
			return diag_set(d, rc, NULL, 0, 0, "bootstrap failed for %s", name);
		if ((rc = sink->result(sink->ud, "base", split, name, cb.value, cb.low, cb.high)) ||
		    (rc = sink->result(sink->ud, "tuned", split, name, ct.value, ct.low, ct.high)) ||
		    (rc = sink->result(sink->ud, "delta", split, name, cd.value, cd.low, cd.high)))
			return diag_set(d, rc, NULL, 0, 0, "could not record the %s result", name);
		return 0;
	}
	(void)tuned;
	rc = bootstrap_ci(&ct, st, n, s->bootstrap, s->level, seed);
	if (rc)
		return diag_set(d, rc, NULL, 0, 0, "bootstrap failed for %s", name);
	rc = sink->result(sink->ud, model, split, name, ct.value, ct.low, ct.high);
	if (rc)
		return diag_set(d, rc, NULL, 0, 0, "could not record the %s result", name);
	return 0;
}

/* Length of the valid UTF-8 sequence at p (RFC 3629: no overlong forms, no surrogates,
 * at most U+10FFFF), or 0 when the bytes there are not one. */
static size_t utf8_seq(const unsigned char *p)
{
	if (p[0] < 0x80)
		return 1;
	size_t n = p[0] >= 0xF0 ? 4 : p[0] >= 0xE0 ? 3 : p[0] >= 0xC2 ? 2 : 0;
	if (n == 0 || p[0] > 0xF4)
		return 0;
	for (size_t i = 1; i < n; i++)
		if ((p[i] & 0xC0) != 0x80)
			return 0;
	if ((p[0] == 0xE0 && p[1] < 0xA0) || (p[0] == 0xED && p[1] >= 0xA0) ||
	    (p[0] == 0xF0 && p[1] < 0x90) || (p[0] == 0xF4 && p[1] >= 0x90))
		return 0;
	return n;
}

/* s as a JSON string. Generated text may end inside a character or hold byte tokens that
 * are no UTF-8: such bytes become U+FFFD, so every line stays valid JSON. */
static int json_str(struct strbuf *sb, const char *s)
{
	int rc = strbuf_append(sb, "\"", 1);
	for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p && !rc;) {
		size_t n = utf8_seq(p);
		if (n == 0) {
			rc = strbuf_puts(sb, "\xEF\xBF\xBD");
			p++;
		} else if (*p == '"' || *p == '\\') {
			rc = strbuf_printf(sb, "\\%c", *p);
			p++;
		} else if (*p < 0x20) {
			rc = strbuf_printf(sb, "\\u%04x", *p);
			p++;
		} else {
			rc = strbuf_append(sb, (const char *)p, n);
			p += n;
		}
	}
	if (!rc)
		rc = strbuf_append(sb, "\"", 1);
	return rc;
}

/* One line per example and model: the prompt, the reference, the output (null without
 * generation) and its score, and the teacher-forced numbers of that example (null without
 * them): its mean loss over the response tokens, how many tokens that is, and how many
 * of them the model ranked first. A user finds the examples where the tuned model is
 * worse by comparing the lines of one example. */
static int write_predictions(const char *path, const struct eval_result *base,
			     const struct eval_result *tuned, const char *model,
			     const struct tok_set *set, int primary, struct diag *d)
{
	struct strbuf sb = {0};
	int rc = 0;
	const struct eval_result *rs[2] = {base, tuned};
	const char *names[2] = {"base", base ? "tuned" : model};
	for (int k = 0; k < 2 && !rc; k++) {
		const struct eval_result *r = rs[k];
		if (!r || (!r->outputs && !r->tf_rows))
			continue;
		for (size_t i = 0; i < r->n && !rc; i++) {
			double score = NAN;
			const char *out = r->outputs ? r->outputs[i] : NULL;
			if (out && primary >= 0 &&
			    metric_sentence(&score, kinds[primary], out, set->ex[i].reference))
				score = NAN;
			rc = strbuf_printf(&sb, "{\"model\": \"%s\", \"example\": %zu, \"prompt\": ", names[k], i);
			if (!rc)
				rc = json_str(&sb, set->ex[i].prompt);
			if (!rc)
				rc = strbuf_puts(&sb, ", \"reference\": ");
			if (!rc)
				rc = json_str(&sb, set->ex[i].reference);
			if (!rc)
				rc = strbuf_puts(&sb, ", \"output\": ");
			if (!rc)
				rc = out ? json_str(&sb, out) : strbuf_puts(&sb, "null");
			if (!rc)
				rc = isnan(score) ? strbuf_puts(&sb, ", \"score\": null")
						  : strbuf_printf(&sb, ", \"score\": %.17g", score);
			const double *tf = r->tf_rows ? &r->tf_rows[3 * i] : NULL;
			if (!rc && tf && tf[1] > 0)
				rc = strbuf_printf(&sb, ", \"loss\": %.17g, \"tokens\": %.0f, "
						   "\"correct_tokens\": %.0f}\n", tf[0] / tf[1], tf[1],
						   tf[2]);
			else if (!rc && tf)
				rc = strbuf_puts(&sb, ", \"loss\": null, \"tokens\": 0, "
						      "\"correct_tokens\": 0}\n");
			else if (!rc)
				rc = strbuf_puts(&sb, ", \"loss\": null, \"tokens\": null, "
						      "\"correct_tokens\": null}\n");
		}
	}
	if (rc) {
		strbuf_free(&sb);
		return diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory writing predictions");
	}
	rc = file_write_atomic(path, sb.buf ? sb.buf : "", sb.len, d);
	strbuf_free(&sb);
	return rc;
}

int eval_value(double *out, const struct eval_result *r, const struct eval_settings *s,
	       const char *metric, struct diag *d)
{
	*out = NAN;
	boot_agg_fn tf_agg[TF_N] = {agg_loss, agg_ppl, agg_acc};
	for (int k = 0; k < TF_N; k++) {
		if (strcmp(metric, tf_names[k]) != 0)
			continue;
		if (!s->want_tf[k] || !r->tf_rows)
			break;
		double sum[3] = {0, 0, 0};
		for (size_t i = 0; i < r->n; i++)
			for (int c = 0; c < 3; c++)
				sum[c] += r->tf_rows[3 * i + (size_t)c];
		*out = tf_agg[k](sum, r->n, NULL);
		return 0;
	}
	for (int k = 0; k < METRIC_N_KINDS; k++) {
		if (strcmp(metric, metric_name(kinds[k])) != 0)
			continue;
		if (!s->want_gen[k] || !r->rows[k])
			break;
		size_t dim = metric_stats_dim(kinds[k]);
		double *sum = calloc(dim, sizeof *sum);
		if (!sum)
			return diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
		for (size_t i = 0; i < r->n; i++)
			for (size_t c = 0; c < dim; c++)
				sum[c] += r->rows[k][i * dim + c];
		*out = metric_from_stats(kinds[k], sum, r->n);
		free(sum);
		return 0;
	}
	return diag_set(d, FT_EINVAL, NULL, 0, 0, "metric '%s' was not computed", metric);
}

int eval_emit(struct run_sink *sink, const char *split, const char *model,
	      const struct eval_result *base, const struct eval_result *tuned,
	      const struct tok_set *set, const struct eval_settings *s, const char *pred_path,
	      struct diag *d)
{
	size_t n = tuned->n;
	if (base && base->n != n)
		return diag_set(d, FT_EINTERNAL, NULL, 0, 0, "base and tuned were scored on different examples");
	int rc = 0;
	boot_agg_fn tf_agg[TF_N] = {agg_loss, agg_ppl, agg_acc};
	for (int k = 0; k < TF_N && !rc; k++) {
		if (!s->want_tf[k] || !tuned->tf_rows)
			continue;
		struct boot_stat st = {tuned->tf_rows, 3, tf_agg[k], NULL};
		struct boot_stat sb = {base ? base->tf_rows : NULL, 3, tf_agg[k], NULL};
		rc = emit_one(sink, split, model, tf_names[k], base, tuned, &sb, &st, n, s, s->seed + 1, d);
	}
	for (int k = 0; k < LIK_N && !rc; k++) {
		bool choice = k == LIK_CHOICE_ACCURACY || k == LIK_CHOICE_ACCURACY_NORM;
		const double *rt = choice ? tuned->choice_rows : tuned->pref_rows;
		const double *rb = !base ? NULL : choice ? base->choice_rows : base->pref_rows;
		if (!s->want_lik[k] || !rt)
			continue;
		/* a mean over examples of one column of the (n, 2) rows */
		int col = k == LIK_CHOICE_ACCURACY_NORM || k == LIK_PREFERENCE_MARGIN;
		struct boot_stat st = {rt, 2, col ? agg_col1 : boot_agg_mean, NULL};
		struct boot_stat sb = {rb, 2, col ? agg_col1 : boot_agg_mean, NULL};
		rc = emit_one(sink, split, model, lik_names[k], base, tuned, &sb, &st, n, s,
			      s->seed + 1, d);
	}
	int primary = -1;
	for (int k = 0; k < METRIC_N_KINDS && !rc; k++) {
		if (!s->want_gen[k] || !tuned->rows[k])
			continue;
		if (primary < 0)
			primary = k;
		size_t dim = metric_stats_dim(kinds[k]);
		struct boot_stat st = {tuned->rows[k], dim, agg_text, (void *)&kinds[k]};
		struct boot_stat sb = {base ? base->rows[k] : NULL, dim, agg_text, (void *)&kinds[k]};
		rc = emit_one(sink, split, model, metric_name(kinds[k]), base, tuned, &sb, &st, n, s,
			      s->seed + 1, d);
	}
	if (rc)
		return rc;
	/* Predictions for reports: the first `samples` examples of each model. */
	const struct eval_result *rs[2] = {base, tuned};
	const char *names[2] = {"base", base ? "tuned" : model};
	size_t keep = s->samples < 0 ? n : (size_t)s->samples < n ? (size_t)s->samples : n;
	for (int m = 0; m < 2 && !rc; m++) {
		const struct eval_result *r = rs[m];
		if (!r || !r->outputs || !sink->prediction)
			continue;
		for (size_t i = 0; i < keep && !rc; i++) {
			double score = NAN;
			if (primary >= 0 && metric_sentence(&score, kinds[primary], r->outputs[i],
							    set->ex[i].reference))
				score = NAN;
			rc = sink->prediction(sink->ud, names[m], split, (int64_t)i, set->ex[i].prompt,
					      set->ex[i].reference, r->outputs[i], score);
			if (rc)
				diag_set(d, rc, NULL, 0, 0, "could not record a prediction");
		}
	}
	if (!rc && pred_path && (tuned->outputs || tuned->tf_rows))
		rc = write_predictions(pred_path, base, tuned, model, set, primary, d);
	return rc;
}

/* Model for evaluation: METHOD_NONE, or LoRA/DoRA/IA3 with the adapter's tensors copied in. */
int eval_model_create(struct model **out, const struct model_file *mf, const char *adapter_dir,
		       int batch, int seq, struct diag *d)
{
	struct model_opts o;
	memset(&o, 0, sizeof o);
	o.method = METHOD_NONE;
	o.layers_first = o.layers_last = -1;
	o.max_batch = batch;
	o.max_seq = seq;
	struct lora_adapter *ad = NULL;
	int rc = 0;
	if (adapter_dir) {
		const struct model_hparams *hp = &mf->hp;
		rc = adapter_read_peft(&ad, adapter_dir, mf->is_gguf && hp->rope_style == ROPE_INTERLEAVED,
				       hp->n_head, hp->n_head_kv, hp->head_dim, d);
		if (rc)
			return rc;
		o.method = ad->info.prefix ? METHOD_PREFIX
			   : ad->info.ia3  ? METHOD_IA3
			   : ad->info.use_dora ? METHOD_DORA
					       : METHOD_LORA;
		o.prefix_tokens = ad->info.num_virtual_tokens;
		o.ff_targets = (const char *const *)ad->info.ff_targets;
		o.n_ff_targets = ad->info.n_ff_targets;
		o.lora_rank = ad->info.rank;
		o.lora_alpha = (float)ad->info.alpha;
		o.rslora = ad->info.rslora;
		o.targets = (const char *const *)ad->info.targets;
		o.n_targets = ad->info.n_targets;
	}
	rc = model_create(out, mf, &o, d);
	for (size_t i = 0; !rc && ad && i < ad->n; i++) {
		const struct model_param *p = model_param_find(*out, ad->t[i].name);
		size_t numel = (size_t)ad->t[i].rows * (size_t)ad->t[i].cols;
		if (!p || p->numel != numel) {
			rc = diag_set(d, FT_EINVAL, adapter_dir, 0, 0,
				      "adapter tensor '%s' does not match the model (%s)", ad->t[i].name,
				      p ? "shape differs" : "no such parameter");
			break;
		}
		model_ops(*out)->to_device(p->data, ad->t[i].data, numel * sizeof(float));
	}
	if (rc && *out) {
		model_free(*out);
		*out = NULL;
	}
	adapter_free(ad);
	return rc;
}

