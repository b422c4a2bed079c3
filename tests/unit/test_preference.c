/* Unit tests for train/preference and the model primitives it rests on: the DPO (sigmoid
 * with label smoothing, IPO, hinge), ORPO and SimPO losses at hand-computed points and
 * their derivatives by finite differences; model_row_logprobs, model_backward_weighted
 * (uniform weights equal model_backward bit for bit) and the LoRA adapter switch (off:
 * the base model's logits exactly); and finite differences of whole tiny models through
 * pref_micro_batch for every objective under full fine-tuning and LoRA (reference: the
 * adapter switched off). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/native/model/model.h"
#include "backends/native/ops/ops.h"
#include "backends/native/train/preference.h"
#include "common/rng.h"
#include "tests/unit/tiny_weights.h"
#include "common/banned.h"

static struct pref_params params(enum train_objective o, enum pref_loss_type lt, double beta,
				 double ls)
{
	struct pref_params p = {o, lt, beta, ls, 0.7, 0.4};
	return p;
}

static void test_loss_values(void **state)
{
	(void)state;
	struct pref_out o;
	/* DPO at a zero margin: log 2 whatever the smoothing; d/dlogp_c = -beta/2 */
	struct pref_in in = {-10, -12, 3, 4, -9, -11};
	struct pref_params p = params(OBJECTIVE_DPO, PREF_LOSS_SIGMOID, 0.5, 0.0);
	pref_loss(&o, &in, &p);
	assert_float_equal(o.loss, log(2.0), 1e-12);
	assert_float_equal(o.d_c, -0.25, 1e-12);
	assert_float_equal(o.d_r, 0.25, 1e-12);
	assert_float_equal(o.reward_c, -0.5, 1e-12);
	assert_float_equal(o.reward_r, -0.5, 1e-12);
	assert_float_equal(o.logps_c, -10, 0);
	p.label_smoothing = 0.2;
	pref_loss(&o, &in, &p);
	assert_float_equal(o.loss, log(2.0), 1e-12);
	/* conservative DPO: -(1-e) log s(z) - e log s(-z) at z = beta h = 0.5 * (2 + 1) */
	in.logp_c = -7;
	pref_loss(&o, &in, &p);
	double z = 0.5 * 3.0;
	assert_float_equal(o.loss, 0.8 * log1p(exp(-z)) + 0.2 * log1p(exp(z)), 1e-12);
	/* IPO: log-ratios per token, (h - 1/(2 beta))^2 */
	struct pref_in ip = {-8, -12, 4, 4, -10, -12};
	p = params(OBJECTIVE_DPO, PREF_LOSS_IPO, 0.5, 0.0);
	pref_loss(&o, &ip, &p);
	assert_float_equal(o.loss, 0.25, 1e-12); /* h = 2/4 - 0 = 0.5 */
	assert_float_equal(o.reward_c, 1.0, 1e-12); /* beta * summed log-ratio, as TRL logs */
	/* hinge: max(0, 1 - beta h) */
	p = params(OBJECTIVE_DPO, PREF_LOSS_HINGE, 1.0, 0.0);
	pref_loss(&o, &ip, &p);
	assert_float_equal(o.loss, 0.0, 0); /* h = 2 */
	assert_float_equal(o.d_c, 0.0, 0);
	p.beta = 0.25;
	pref_loss(&o, &ip, &p);
	assert_float_equal(o.loss, 0.5, 1e-12);
	assert_float_equal(o.d_c, -0.25, 1e-12);
	/* SimPO: beta (a_c - a_r) - gamma with a = logp / length */
	struct pref_in sp = {-4, -8, 4, 4, 0, 0};
	p = params(OBJECTIVE_SIMPO, PREF_LOSS_SIGMOID, 2.0, 0.0);
	pref_loss(&o, &sp, &p);
	assert_float_equal(o.loss, log1p(exp(-(2.0 * 1.0 - 0.4))), 1e-12);
	assert_float_equal(o.reward_c, -2.0, 1e-12);
	assert_float_equal(o.logps_r, -2.0, 1e-12);
	/* ORPO: odds(0.5) = 1, odds(0.25) = 1/3: log odds ratio log 3, loss lambda log(4/3) */
	struct pref_in op = {2 * log(0.5), 3 * log(0.25), 2, 3, 0, 0};
	p = params(OBJECTIVE_ORPO, PREF_LOSS_SIGMOID, 0.1, 0.0);
	pref_loss(&o, &op, &p);
	assert_float_equal(o.log_odds, log(3.0), 1e-12);
	assert_float_equal(o.loss, 0.7 * log(4.0 / 3.0), 1e-12);
	assert_float_equal(o.reward_c, 0.7 * log(0.5), 1e-12);
	assert_true(pref_needs_reference(&(struct pref_params){OBJECTIVE_DPO, 0, 0, 0, 0, 0}));
	assert_false(pref_needs_reference(&p));
}

/* d loss / d logp by central differences for every objective at random points. */
static void test_loss_derivatives(void **state)
{
	(void)state;
	struct pref_params ps[] = {
		params(OBJECTIVE_DPO, PREF_LOSS_SIGMOID, 0.3, 0.0),
		params(OBJECTIVE_DPO, PREF_LOSS_SIGMOID, 0.3, 0.15),
		params(OBJECTIVE_DPO, PREF_LOSS_IPO, 0.3, 0.0),
		params(OBJECTIVE_DPO, PREF_LOSS_HINGE, 0.05, 0.0),
		params(OBJECTIVE_SIMPO, PREF_LOSS_SIGMOID, 2.5, 0.0),
		params(OBJECTIVE_SIMPO, PREF_LOSS_SIGMOID, 2.5, 0.1),
		params(OBJECTIVE_ORPO, PREF_LOSS_SIGMOID, 0.1, 0.0),
	};
	struct rng r;
	rng_seed(&r, 11, 0);
	for (size_t k = 0; k < sizeof ps / sizeof ps[0]; k++)
		for (int t = 0; t < 20; t++) {
			struct pref_in in = {-1 - 30 * rng_uniform(&r), -1 - 30 * rng_uniform(&r),
					     1 + (double)rng_below(&r, 12), 1 + (double)rng_below(&r, 12),
					     -1 - 30 * rng_uniform(&r), -1 - 30 * rng_uniform(&r)};
			struct pref_out o, a, b;
			pref_loss(&o, &in, &ps[k]);
			double h = 1e-5;
			for (int side = 0; side < 2; side++) {
				struct pref_in x = in, y = in;
				double *px = side ? &x.logp_r : &x.logp_c, *py = side ? &y.logp_r : &y.logp_c;
				*px += h;
				*py -= h;
				pref_loss(&a, &x, &ps[k]);
				pref_loss(&b, &y, &ps[k]);
				double fd = (a.loss - b.loss) / (2 * h), an = side ? o.d_r : o.d_c;
				if (fabs(fd - an) > 1e-6 + 1e-5 * fabs(an))
					fail_msg("params %zu point %d side %d: analytic %.9g, finite "
						 "difference %.9g", k, t, side, an, fd);
			}
		}
}

static struct model_opts opts(enum method_type method, int max_batch, int max_seq)
{
	struct model_opts o;
	memset(&o, 0, sizeof o);
	o.method = method;
	o.layers_first = o.layers_last = -1;
	o.max_batch = max_batch;
	o.max_seq = max_seq;
	o.seed = 42;
	return o;
}

/* Non-zero LoRA B (it starts at 0, which would make A's gradient 0). */
static void perturb_lora_b(struct model *m)
{
	for (size_t i = 0; i < model_n_trainable(m); i++) {
		const struct model_param *p = model_trainable(m, i);
		if (!strstr(p->name, "lora_B"))
			continue;
		struct rng r;
		rng_seed(&r, i, 9);
		for (size_t j = 0; j < p->numel; j++)
			p->data[j] = 0.3f * (2.0f * rng_uniform_f(&r) - 1.0f);
	}
}

static void test_model_primitives(void **state)
{
	(void)state;
	struct model_file *mf = tiny_llama_mf(false, true, ROPE_HALF, 21);
	struct diag d;
	diag_init(&d);
	enum { B = 3, T = 7 };
	int32_t tok[B * T], tgt[B * T];
	uint8_t mask[B * T];
	struct rng r;
	rng_seed(&r, 5, 1);
	for (int i = 0; i < B * T; i++) {
		tok[i] = (int32_t)rng_below(&r, 37);
		tgt[i] = i % 3 == 0 ? -1 : (int32_t)rng_below(&r, 37);
		mask[i] = i % 2;
	}
	/* row log-probabilities are minus the summed token losses */
	struct model_opts o = opts(METHOD_FULL, B, T);
	struct model *m = NULL;
	assert_int_equal(model_create(&m, mf, &o, &d), 0);
	double lp[B], lpm[B];
	assert_int_equal(model_row_logprobs(m, lp, NULL), FT_EINVAL); /* no forward yet */
	assert_int_equal(model_forward(m, tok, tgt, B, T, NULL, NULL), 0);
	assert_int_equal(model_row_logprobs(m, lp, NULL), 0);
	assert_int_equal(model_row_logprobs(m, lpm, mask), 0);
	const float *tl = model_token_losses(m);
	for (int b = 0; b < B; b++) {
		double s = 0, sm = 0;
		for (int t = 0; t < T; t++) {
			s += tl[b * T + t];
			sm += mask[b * T + t] ? tl[b * T + t] : 0.0f;
		}
		assert_float_equal(lp[b], -s, 1e-9);
		assert_float_equal(lpm[b], -sm, 1e-9);
		assert_true(lp[b] < 0);
	}
	/* uniform weights are model_backward's scale, bit for bit */
	const struct model_param *w = model_param_find(m, "model.layers.1.mlp.up_proj.weight");
	float *g1 = malloc(w->numel * sizeof *g1);
	model_zero_grad(m);
	assert_int_equal(model_backward(m, 0.125f), 0);
	memcpy(g1, w->grad, w->numel * sizeof *g1);
	float wt[B * T];
	for (int i = 0; i < B * T; i++)
		wt[i] = 0.125f;
	model_zero_grad(m);
	assert_int_equal(model_forward(m, tok, tgt, B, T, NULL, NULL), 0);
	assert_int_equal(model_backward_weighted(m, wt), 0);
	assert_memory_equal(w->grad, g1, w->numel * sizeof *g1);
	/* weights of zero on a row remove it: equal to the backward of the other rows alone */
	for (int i = 0; i < T; i++)
		wt[i] = 0.0f;
	model_zero_grad(m);
	assert_int_equal(model_forward(m, tok, tgt, B, T, NULL, NULL), 0);
	assert_int_equal(model_backward_weighted(m, wt), 0);
	memcpy(g1, w->grad, w->numel * sizeof *g1);
	model_zero_grad(m);
	assert_int_equal(model_forward(m, tok + T, tgt + T, B - 1, T, NULL, NULL), 0);
	assert_int_equal(model_backward(m, 0.125f), 0);
	for (size_t j = 0; j < w->numel; j++)
		assert_float_equal(w->grad[j], g1[j], 1e-6 + 1e-5 * fabsf(g1[j]));
	assert_int_equal(model_backward_weighted(m, NULL), FT_EINVAL);
	free(g1);
	model_free(m);

	/* LoRA with the adapter off is the base model, logit for logit */
	const char *tg[] = {"q_proj", "v_proj", "down_proj"};
	o = opts(METHOD_LORA, B, T);
	o.lora_rank = 2;
	o.lora_alpha = 4;
	o.targets = tg;
	o.n_targets = 3;
	o.full_logits = true; /* the logits of every position, to compare */
	assert_int_equal(model_create(&m, mf, &o, &d), 0);
	perturb_lora_b(m);
	struct model *base = NULL;
	struct model_opts ob = opts(METHOD_NONE, B, T);
	ob.full_logits = true;
	assert_int_equal(model_create(&base, mf, &ob, &d), 0);
	size_t nl = (size_t)B * T * 37;
	float *lb = malloc(nl * sizeof *lb), *ll = malloc(nl * sizeof *ll);
	assert_int_equal(model_forward(base, tok, tgt, B, T, NULL, NULL), 0);
	memcpy(lb, model_logits(base), nl * sizeof *lb);
	assert_int_equal(model_forward(m, tok, tgt, B, T, NULL, NULL), 0);
	memcpy(ll, model_logits(m), nl * sizeof *ll);
	assert_memory_not_equal(ll, lb, nl * sizeof *lb); /* the adapter acts */
	model_set_adapter_enabled(m, false);
	assert_int_equal(model_forward(m, tok, tgt, B, T, NULL, NULL), 0);
	assert_memory_equal(model_logits(m), lb, nl * sizeof *lb);
	/* no backward of an adapter-off forward (its LoRA activations are stale) */
	model_set_adapter_enabled(m, true);
	assert_int_equal(model_backward(m, 0.0f), FT_EINVAL);
	assert_int_equal(model_forward(m, tok, tgt, B, T, NULL, NULL), 0);
	assert_memory_equal(model_logits(m), ll, nl * sizeof *ll);
	assert_int_equal(model_backward(m, 0.0f), 0);
	free(lb);
	free(ll);
	model_free(base);
	model_free(m);
	model_file_free(mf);
}

/* A batch of P = 2 pairs of T = 8 tokens: completions at positions 3..6 of varied length,
 * random targets there. */
enum { P = 2, PT = 8 };
struct pbatch {
	int32_t tok[2 * P * PT], tgt[2 * P * PT];
	uint8_t comp[2 * P * PT];
	double ref[2 * P];
};

static void make_pairs(struct pbatch *b, bool nll_all)
{
	struct rng r;
	rng_seed(&r, 77, 2);
	for (int row = 0; row < 2 * P; row++) {
		int start = 2 + row % 2, end = 5 + row % 3;
		for (int t = 0; t < PT; t++) {
			int i = row * PT + t;
			b->tok[i] = (int32_t)rng_below(&r, 37);
			bool c = t >= start && t < end;
			b->comp[i] = c;
			b->tgt[i] = c || (nll_all && row < P && t + 1 < PT) ? (int32_t)rng_below(&r, 37) : -1;
		}
	}
	for (int i = 0; i < 2 * P; i++)
		b->ref[i] = -8.0 - i;
}

static double pref_J(struct model *m, const struct pbatch *b, const double *ref,
		     const struct pref_params *p)
{
	struct pref_stats st;
	memset(&st, 0, sizeof st);
	struct diag d;
	diag_init(&d);
	assert_int_equal(pref_micro_batch(m, b->tok, b->tgt, b->comp, P, PT, ref, p, 0, 0, false,
					  &st, &d), 0);
	return pref_stats_loss(&st, p);
}

/* Central differences on a few elements of every trainable parameter against the
 * gradient pref_micro_batch accumulates (tolerance as test_model's). */
static void pref_gradcheck(struct model *m, const struct pref_params *p, bool nll_all,
			   bool use_ref)
{
	struct pbatch b;
	make_pairs(&b, nll_all);
	const double *ref = use_ref ? b.ref : NULL;
	double n_ex, nll_tok;
	pref_batch_counts(&n_ex, &nll_tok, b.tgt, b.comp, P, PT);
	assert_float_equal(n_ex, P, 0);
	struct pref_stats st;
	memset(&st, 0, sizeof st);
	struct diag d;
	diag_init(&d);
	model_zero_grad(m);
	assert_int_equal(pref_micro_batch(m, b.tok, b.tgt, b.comp, P, PT, ref, p, n_ex, nll_tok, true,
					  &st, &d), 0);
	double l0 = pref_stats_loss(&st, p);
	assert_true(isfinite(l0));
	assert_float_equal(pref_J(m, &b, ref, p), l0, 1e-6);
	size_t checked = 0;
	for (size_t i = 0; i < model_n_trainable(m); i++) {
		const struct model_param *pa = model_trainable(m, i);
		struct rng r;
		rng_seed(&r, 100 + i, 11);
		for (int s = 0; s < 3; s++) {
			size_t j = (size_t)rng_below(&r, pa->numel);
			float keep = pa->data[j], eps = 1e-2f;
			pa->data[j] = keep + eps;
			double lp = pref_J(m, &b, ref, p);
			pa->data[j] = keep - eps;
			double lm = pref_J(m, &b, ref, p);
			pa->data[j] = keep;
			double fd = (lp - lm) / (2.0 * eps), an = pa->grad[j];
			if (fabs(fd - an) > 2e-3 + 0.02 * fabs(an))
				fail_msg("objective %d loss_type %d: %s[%zu]: analytic %.6g, finite "
					 "difference %.6g", (int)p->objective, (int)p->loss_type, pa->name, j,
					 an, fd);
			checked++;
		}
	}
	assert_true(checked > 0);
}

static void test_model_gradients(void **state)
{
	(void)state;
	struct model_file *mf = tiny_llama_mf(true, false, ROPE_HALF, 31);
	struct diag d;
	diag_init(&d);
	struct pref_params ps[] = {
		params(OBJECTIVE_DPO, PREF_LOSS_SIGMOID, 0.5, 0.1),
		params(OBJECTIVE_DPO, PREF_LOSS_IPO, 0.5, 0.0),
		params(OBJECTIVE_DPO, PREF_LOSS_HINGE, 0.05, 0.0),
		params(OBJECTIVE_SIMPO, PREF_LOSS_SIGMOID, 2.0, 0.0),
		params(OBJECTIVE_ORPO, PREF_LOSS_SIGMOID, 0.1, 0.0),
	};
	/* full fine-tuning against given reference log-probabilities */
	for (size_t k = 0; k < sizeof ps / sizeof ps[0]; k++) {
		struct model_opts o = opts(METHOD_FULL, 2 * P, PT);
		struct model *m = NULL;
		assert_int_equal(model_create(&m, mf, &o, &d), 0);
		model_set_training(m, false);
		pref_gradcheck(m, &ps[k], false, true);
		model_free(m);
	}
	/* ORPO with the SFT term over every position of the chosen rows */
	struct model_opts o = opts(METHOD_FULL, 2 * P, PT);
	struct model *m = NULL;
	assert_int_equal(model_create(&m, mf, &o, &d), 0);
	pref_gradcheck(m, &ps[4], true, false);
	model_free(m);
	/* LoRA: DPO's reference is the same model with its adapter off (constant in the
	 * adapter's parameters), with gradient checkpointing too */
	const char *tg[] = {"q_proj", "v_proj", "up_proj"};
	for (int ck = 0; ck < 2; ck++) {
		o = opts(METHOD_LORA, 2 * P, PT);
		o.lora_rank = 2;
		o.lora_alpha = 4;
		o.targets = tg;
		o.n_targets = 3;
		o.grad_checkpointing = ck;
		assert_int_equal(model_create(&m, mf, &o, &d), 0);
		perturb_lora_b(m);
		model_set_training(m, false);
		pref_gradcheck(m, &ps[0], false, false);
		pref_gradcheck(m, &ps[1], false, false);
		model_free(m);
	}
	model_file_free(mf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_loss_values),
		cmocka_unit_test(test_loss_derivatives),
		cmocka_unit_test(test_model_primitives),
		cmocka_unit_test(test_model_gradients),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
