/* preference: DPO (sigmoid, IPO, hinge), ORPO and SimPO as TRL's DPOTrainer,
 * ORPOTrainer and CPOTrainer (loss_type simpo, cpo_alpha 0) define them; the formulas are
 * in docs/engine.md. Everything here is double precision on the host: a step has a few
 * numbers per example, the tokens stay with the model. */
#include "backends/native/train/preference.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backends/native/data/loader.h"
#include "backends/native/model/model.h"
#include "common/banned.h"

void pref_params_from_config(struct pref_params *out, const struct config_train *t)
{
	memset(out, 0, sizeof *out);
	out->objective = t->objective;
	out->loss_type = t->preference.loss_type;
	out->beta = t->preference.beta;
	out->label_smoothing = t->preference.label_smoothing;
	out->lambda = t->preference.lambda;
	out->gamma = t->preference.gamma;
}

bool pref_needs_reference(const struct pref_params *p)
{
	return p->objective == OBJECTIVE_DPO;
}

/* log sigmoid(x) and sigmoid(x) without overflow. */
static double log_sigmoid(double x)
{
	return x < 0 ? x - log1p(exp(x)) : -log1p(exp(-x));
}

static double sigmoid(double x)
{
	if (x >= 0)
		return 1.0 / (1.0 + exp(-x));
	double e = exp(x);
	return e / (1.0 + e);
}

/* log(1 - exp(x)) for x < 0, split at -ln 2 to avoid cancellation. */
static double log1mexp(double x)
{
	return x < -0.6931471805599453 ? log1p(-exp(x)) : log(-expm1(x));
}

/* -(1 - eps) log sigmoid(z) - eps log sigmoid(-z) and its derivative by z. */
static double smoothed_sigmoid_loss(double z, double eps, double *dz)
{
	*dz = -(1.0 - eps) * sigmoid(-z) + eps * sigmoid(z);
	return -(1.0 - eps) * log_sigmoid(z) - eps * log_sigmoid(-z);
}

void pref_loss(struct pref_out *out, const struct pref_in *in, const struct pref_params *p)
{
	memset(out, 0, sizeof *out);
	double dz, dh;
	switch (p->objective) {
	case OBJECTIVE_DPO: {
		double lr_c = in->logp_c - in->ref_c, lr_r = in->logp_r - in->ref_r;
		out->reward_c = p->beta * lr_c;
		out->reward_r = p->beta * lr_r;
		out->logps_c = in->logp_c;
		out->logps_r = in->logp_r;
		if (p->loss_type == PREF_LOSS_IPO) {
			/* log-ratios per completion token, as TRL (and the IPO authors) */
			double h = lr_c / in->len_c - lr_r / in->len_r, t = h - 1.0 / (2.0 * p->beta);
			out->loss = t * t;
			out->d_c = 2.0 * t / in->len_c;
			out->d_r = -2.0 * t / in->len_r;
			return;
		}
		double h = lr_c - lr_r;
		if (p->loss_type == PREF_LOSS_HINGE) {
			double m = 1.0 - p->beta * h;
			out->loss = m > 0 ? m : 0.0;
			dh = m > 0 ? -p->beta : 0.0;
		} else {
			out->loss = smoothed_sigmoid_loss(p->beta * h, p->label_smoothing, &dz);
			dh = p->beta * dz;
		}
		out->d_c = dh;
		out->d_r = -dh;
		return;
	}
	case OBJECTIVE_SIMPO: {
		double a_c = in->logp_c / in->len_c, a_r = in->logp_r / in->len_r;
		out->reward_c = p->beta * a_c;
		out->reward_r = p->beta * a_r;
		out->logps_c = a_c;
		out->logps_r = a_r;
		out->loss = smoothed_sigmoid_loss(p->beta * (a_c - a_r) - p->gamma, p->label_smoothing,
						  &dz);
		out->d_c = p->beta * dz / in->len_c;
		out->d_r = -p->beta * dz / in->len_r;
		return;
	}
	case OBJECTIVE_ORPO: {
		double a_c = in->logp_c / in->len_c, a_r = in->logp_r / in->len_r;
		out->reward_c = p->lambda * a_c;
		out->reward_r = p->lambda * a_r;
		out->logps_c = a_c;
		out->logps_r = a_r;
		double lo = (a_c - a_r) - (log1mexp(a_c) - log1mexp(a_r));
		out->log_odds = lo;
		out->loss = -p->lambda * log_sigmoid(lo);
		double dlo = -p->lambda * sigmoid(-lo);
		/* d lo / d a = 1 / (1 - e^a) for chosen, its negative for rejected */
		out->d_c = dlo * (-1.0 / expm1(a_c)) / in->len_c;
		out->d_r = dlo * (1.0 / expm1(a_r)) / in->len_r;
		return;
	}
	case OBJECTIVE_SFT:
		return;
	}
}

double pref_stats_loss(const struct pref_stats *s, const struct pref_params *p)
{
	double l = s->n > 0 ? s->loss / s->n : 0.0;
	if (p->objective == OBJECTIVE_ORPO && s->nll_tokens > 0)
		l += s->nll / s->nll_tokens;
	return l;
}

void pref_stats_each(const struct pref_stats *s, const struct pref_params *p,
		     void (*emit)(void *ud, const char *name, double value), void *ud)
{
	double n = s->n > 0 ? s->n : 1.0;
	emit(ud, "rewards/chosen", s->reward_c / n);
	emit(ud, "rewards/rejected", s->reward_r / n);
	emit(ud, "rewards/accuracies", s->acc / n);
	emit(ud, "rewards/margins", s->margin / n);
	emit(ud, "logps/chosen", s->logps_c / n);
	emit(ud, "logps/rejected", s->logps_r / n);
	if (p->objective == OBJECTIVE_ORPO) {
		emit(ud, "nll_loss", s->nll_tokens > 0 ? s->nll / s->nll_tokens : 0.0);
		emit(ud, "log_odds_ratio", s->log_odds_ratio / n);
		emit(ud, "log_odds_chosen", s->log_odds / n);
	}
}

/* Completion tokens of a row. */
static double row_count(const uint8_t *comp, int row, int T)
{
	double c = 0;
	for (int t = 0; t < T; t++)
		c += comp[(size_t)row * (size_t)T + (size_t)t];
	return c;
}

void pref_batch_counts(double *out_examples, double *out_nll_tokens, const int32_t *targets,
		       const uint8_t *comp, int P, int T)
{
	double e = 0, nt = 0;
	for (int q = 0; q < P; q++) {
		if (row_count(comp, q, T) == 0 || row_count(comp, P + q, T) == 0)
			continue;
		e += 1;
		for (int t = 0; t < T; t++)
			nt += targets[(size_t)q * (size_t)T + (size_t)t] >= 0;
	}
	*out_examples = e;
	*out_nll_tokens = nt;
}

int pref_micro_batch(struct model *m, const int32_t *tokens, const int32_t *targets,
		     const uint8_t *comp, int P, int T, const double *ref,
		     const struct pref_params *p, double n_examples, double nll_tokens,
		     bool backward, struct pref_stats *st, struct diag *d)
{
	int R = 2 * P;
	size_t N = (size_t)R * (size_t)T;
	double *lp = malloc((size_t)R * sizeof *lp), *rl = malloc((size_t)R * sizeof *rl);
	double *all = malloc((size_t)R * sizeof *all);
	float *w = backward ? calloc(N, sizeof *w) : NULL;
	int rc = 0;
	if (!lp || !rl || !all || (backward && !w)) {
		rc = diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory for a batch of %d pairs", P);
		goto done;
	}
	if (pref_needs_reference(p)) {
		if (ref) {
			memcpy(rl, ref, (size_t)R * sizeof *rl);
		} else {
			/* the reference is the base model: the policy with its adapter off */
			model_set_adapter_enabled(m, false);
			rc = model_forward(m, tokens, targets, R, T, NULL, NULL);
			if (!rc)
				rc = model_row_logprobs(m, rl, comp);
			model_set_adapter_enabled(m, true);
			if (rc) {
				diag_set(d, rc, NULL, 0, 0, "the reference forward failed");
				goto done;
			}
		}
	}
	if ((rc = model_forward(m, tokens, targets, R, T, NULL, NULL)) != 0 ||
	    (rc = model_row_logprobs(m, lp, comp)) != 0 ||
	    (p->objective == OBJECTIVE_ORPO && (rc = model_row_logprobs(m, all, NULL)) != 0)) {
		diag_set(d, rc, NULL, 0, 0, "the policy forward failed");
		goto done;
	}
	double scale = n_examples > 0 ? 1.0 / n_examples : 0.0;
	double nll_w = nll_tokens > 0 ? 1.0 / nll_tokens : 0.0;
	for (int q = 0; q < P; q++) {
		struct pref_in in = {.logp_c = lp[q], .logp_r = lp[P + q],
				     .len_c = row_count(comp, q, T), .len_r = row_count(comp, P + q, T),
				     .ref_c = rl[q], .ref_r = rl[P + q]};
		if (in.len_c == 0 || in.len_r == 0)
			continue; /* nothing to compare: no loss, no gradient */
		struct pref_out o;
		pref_loss(&o, &in, p);
		st->n += 1;
		st->loss += o.loss;
		st->reward_c += o.reward_c;
		st->reward_r += o.reward_r;
		st->acc += o.reward_c > o.reward_r;
		st->margin += o.reward_c - o.reward_r;
		st->logps_c += o.logps_c;
		st->logps_r += o.logps_r;
		bool orpo = p->objective == OBJECTIVE_ORPO;
		if (orpo) {
			st->log_odds += o.log_odds;
			st->log_odds_ratio += log_sigmoid(o.log_odds);
			for (int t = 0; t < T; t++)
				st->nll_tokens += targets[(size_t)q * (size_t)T + (size_t)t] >= 0;
			st->nll += -all[q];
		}
		if (!backward)
			continue;
		/* d loss / d (token loss) = -(d loss / d logp) at the completion's positions */
		for (int k = 0; k < 2; k++) {
			int row = k ? P + q : q;
			float wc = (float)(-(k ? o.d_r : o.d_c) * scale);
			size_t off = (size_t)row * (size_t)T;
			for (int t = 0; t < T; t++) {
				float x = comp[off + (size_t)t] ? wc : 0.0f;
				if (orpo && k == 0 && targets[off + (size_t)t] >= 0)
					x += (float)nll_w;
				w[off + (size_t)t] = x;
			}
		}
	}
	if (backward && (rc = model_backward_weighted(m, w)) != 0)
		diag_set(d, rc, NULL, 0, 0, "the preference backward failed");
done:
	free(lp);
	free(rl);
	free(all);
	free(w);
	return rc;
}

int pref_set_logps(double *out, struct model *m, const struct tok_set *set, int max_pairs, int T,
		   int32_t pad_id, struct diag *d)
{
	size_t cap = (size_t)2 * (size_t)max_pairs * (size_t)T;
	int32_t *tok = malloc(cap * sizeof *tok), *tgt = malloc(cap * sizeof *tgt);
	uint8_t *comp = malloc(cap);
	size_t *idx = malloc((size_t)max_pairs * sizeof *idx);
	double *lp = malloc((size_t)2 * (size_t)max_pairs * sizeof *lp);
	int rc = 0;
	if (!tok || !tgt || !comp || !idx || !lp) {
		rc = diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
		goto done;
	}
	model_set_training(m, false);
	for (size_t first = 0; first < set->n; first += (size_t)max_pairs) {
		int P = set->n - first < (size_t)max_pairs ? (int)(set->n - first) : max_pairs;
		for (int q = 0; q < P; q++)
			idx[q] = first + (size_t)q;
		size_t len = data_pair_len(set, idx, P);
		int t = len < 2 ? 2 : len > (size_t)T ? T : (int)len;
		data_pair_rows(tok, tgt, comp, set, idx, P, t, pad_id, false);
		if ((rc = model_forward(m, tok, tgt, 2 * P, t, NULL, NULL)) != 0 ||
		    (rc = model_row_logprobs(m, lp, comp)) != 0) {
			diag_set(d, rc, NULL, 0, 0, "forward failed computing log-probabilities");
			goto done;
		}
		for (int q = 0; q < P; q++) {
			out[2 * (first + (size_t)q)] = lp[q];
			out[2 * (first + (size_t)q) + 1] = lp[P + q];
		}
	}
done:
	free(tok);
	free(tgt);
	free(comp);
	free(idx);
	free(lp);
	return rc;
}

int pref_evaluate(struct pref_stats *out, struct model *m, const struct tok_set *set,
		  const double *ref, const struct pref_params *p, int max_pairs, int T,
		  int32_t pad_id, bool nll_all, struct diag *d)
{
	memset(out, 0, sizeof *out);
	size_t cap = (size_t)2 * (size_t)max_pairs * (size_t)T;
	int32_t *tok = malloc(cap * sizeof *tok), *tgt = malloc(cap * sizeof *tgt);
	uint8_t *comp = malloc(cap);
	size_t *idx = malloc((size_t)max_pairs * sizeof *idx);
	double *rr = malloc((size_t)2 * (size_t)max_pairs * sizeof *rr);
	int rc = 0;
	if (!tok || !tgt || !comp || !idx || !rr) {
		rc = diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
		goto done;
	}
	model_set_training(m, false);
	for (size_t first = 0; first < set->n && !rc; first += (size_t)max_pairs) {
		int P = set->n - first < (size_t)max_pairs ? (int)(set->n - first) : max_pairs;
		for (int q = 0; q < P; q++) {
			idx[q] = first + (size_t)q;
			if (ref) {
				rr[q] = ref[2 * idx[q]];
				rr[P + q] = ref[2 * idx[q] + 1];
			}
		}
		size_t len = data_pair_len(set, idx, P);
		int t = len < 2 ? 2 : len > (size_t)T ? T : (int)len;
		data_pair_rows(tok, tgt, comp, set, idx, P, t, pad_id, nll_all);
		rc = pref_micro_batch(m, tok, tgt, comp, P, t, ref ? rr : NULL, p, 0, 0, false, out, d);
	}
done:
	free(tok);
	free(tgt);
	free(comp);
	free(idx);
	free(rr);
	return rc;
}
