/* Unit tests for the likelihood metrics of eval/evaluate on a tiny random llama: choice
 * accuracy (argmax of the summed log-probabilities of the choices, first on ties) and its
 * per-character form, and preference accuracy and margin, each equal to a direct
 * computation from model_forward one sequence at a time, batched over uneven lengths;
 * results with bootstrap intervals and paired deltas through a run_sink; the errors for
 * sets without choices or pairs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/native/eval/evaluate.h"
#include "common/rng.h"
#include "tests/unit/tiny_weights.h"
#include "common/banned.h"

/* A sequence of n ids with the last `scored` positions as the scored part. */
static void make_seq(struct tok_example *e, size_t n, size_t scored, struct rng *r)
{
	memset(e, 0, sizeof *e);
	e->n = n;
	e->ids = malloc(n * sizeof *e->ids);
	e->loss = malloc(n);
	for (size_t k = 0; k < n; k++) {
		e->ids[k] = (int32_t)rng_below(r, 37);
		e->loss[k] = k >= n - scored;
	}
	e->n_prompt = n - scored;
}

/* 5 examples: 2-4 choices each, and a chosen/rejected pair each. */
static struct tok_set *make_set(void)
{
	struct rng r;
	rng_seed(&r, 3, 4);
	struct tok_set *s = calloc(1, sizeof *s);
	s->n = 5;
	s->ex = calloc(s->n, sizeof *s->ex);
	s->choices = calloc(s->n, sizeof *s->choices);
	s->pair = calloc(2 * s->n, sizeof *s->pair);
	for (size_t i = 0; i < s->n; i++) {
		make_seq(&s->ex[i], 6 + i, 2, &r);
		struct tok_choices *c = &s->choices[i];
		c->n = 2 + i % 3;
		c->seq = calloc(c->n, sizeof *c->seq);
		c->chars = calloc(c->n, sizeof *c->chars);
		c->answer = i % c->n;
		for (size_t j = 0; j < c->n; j++) {
			make_seq(&c->seq[j], 5 + (i + j) % 4, 1 + j % 3, &r);
			c->chars[j] = 1 + 7 * (j % 3);
		}
		make_seq(&s->pair[2 * i], 5 + i, 2, &r);
		make_seq(&s->pair[2 * i + 1], 7 + i % 2, 3, &r);
	}
	return s;
}

static double direct_logp(struct model *m, const struct tok_example *e)
{
	int32_t tg[32];
	data_targets(tg, e->ids, e->loss, e->n);
	assert_int_equal(model_forward(m, e->ids, tg, 1, (int)e->n, NULL, NULL), 0);
	const float *tl = model_token_losses(m);
	double s = 0;
	for (size_t t = 0; t < e->n; t++)
		s += tl[t];
	return -s;
}

struct sink_log {
	char model[16][8], metric[16][32];
	double v[16], lo[16], hi[16];
	size_t n;
};

static int log_result(void *ud, const char *model, const char *split, const char *metric,
		      double v, double lo, double hi)
{
	(void)split;
	struct sink_log *l = ud;
	assert_true(l->n < 16);
	snprintf(l->model[l->n], 8, "%s", model);
	snprintf(l->metric[l->n], 32, "%s", metric);
	l->v[l->n] = v;
	l->lo[l->n] = lo;
	l->hi[l->n] = hi;
	l->n++;
	return 0;
}

static double found(const struct sink_log *l, const char *model, const char *metric)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->model[i], model) == 0 && strcmp(l->metric[i], metric) == 0)
			return l->v[i];
	fail_msg("no %s %s", model, metric);
	return NAN;
}

static void test_likelihood_metrics(void **state)
{
	(void)state;
	struct model_file *mf = tiny_llama_mf(false, false, ROPE_HALF, 8);
	struct model_opts o;
	memset(&o, 0, sizeof o);
	o.method = METHOD_NONE;
	o.layers_first = o.layers_last = -1;
	o.max_batch = 4;
	o.max_seq = 16;
	struct model *m = NULL;
	struct diag d;
	diag_init(&d);
	assert_int_equal(model_create(&m, mf, &o, &d), 0);
	struct tok_set *set = make_set();
	struct eval_settings s;
	memset(&s, 0, sizeof s);
	const char *names[] = {"choice_accuracy", "choice_accuracy_norm", "preference_accuracy",
			       "preference_margin"};
	assert_int_equal(eval_settings_metrics(&s, names, 4, &d), 0);
	assert_true(eval_wants_choices(&s));
	s.batch_size = 3; /* choice sequences of different examples share batches */
	s.seq_len = 16;
	s.bootstrap = 100;
	s.level = 0.95;
	s.seed = 2;
	struct eval_result r;
	assert_int_equal(eval_split(&r, m, NULL, set, &s, &d), 0);
	double acc = 0, accn = 0, pacc = 0, margin = 0;
	int differ = 0;
	for (size_t i = 0; i < set->n; i++) {
		const struct tok_choices *c = &set->choices[i];
		size_t best = 0, bestn = 0;
		double lp[8];
		for (size_t j = 0; j < c->n; j++) {
			lp[j] = direct_logp(m, &c->seq[j]);
			if (lp[j] > lp[best])
				best = j;
			if (lp[j] / (double)c->chars[j] > lp[bestn] / (double)c->chars[bestn])
				bestn = j;
		}
		differ += best != bestn;
		assert_int_equal(r.choice_pick[i], best);
		assert_float_equal(r.choice_rows[2 * i], best == c->answer, 0);
		assert_float_equal(r.choice_rows[2 * i + 1], bestn == c->answer, 0);
		acc += best == c->answer;
		accn += bestn == c->answer;
		double lc = direct_logp(m, &set->pair[2 * i]), lr = direct_logp(m, &set->pair[2 * i + 1]);
		assert_float_equal(r.pref_rows[2 * i + 1], lc - lr, 1e-4);
		assert_float_equal(r.pref_rows[2 * i], lc > lr, 0);
		pacc += lc > lr;
		margin += lc - lr;
	}
	assert_true(differ > 0); /* the per-character form picks differently somewhere */
	struct sink_log log = {0};
	struct run_sink sink = {&log, NULL, log_result, NULL, NULL, NULL, NULL};
	assert_int_equal(eval_emit(&sink, "test", "base", NULL, &r, set, &s, NULL, &d), 0);
	assert_float_equal(found(&log, "base", "choice_accuracy"), acc / 5, 1e-12);
	assert_float_equal(found(&log, "base", "choice_accuracy_norm"), accn / 5, 1e-12);
	assert_float_equal(found(&log, "base", "preference_accuracy"), pacc / 5, 1e-12);
	assert_float_equal(found(&log, "base", "preference_margin"), margin / 5, 1e-4);
	/* paired with itself: zero deltas */
	log.n = 0;
	assert_int_equal(eval_emit(&sink, "test", NULL, &r, &r, set, &s, NULL, &d), 0);
	assert_float_equal(found(&log, "delta", "preference_margin"), 0.0, 0);
	assert_float_equal(found(&log, "tuned", "choice_accuracy"), acc / 5, 1e-12);
	eval_result_free(&r);

	/* choices and pairs are needed */
	struct tok_choices *ch = set->choices;
	set->choices = NULL;
	diag_init(&d);
	assert_int_equal(eval_split(&r, m, NULL, set, &s, &d), FT_EINVAL);
	set->choices = ch;
	struct tok_example *pr = set->pair;
	set->pair = NULL;
	diag_init(&d);
	assert_int_equal(eval_split(&r, m, NULL, set, &s, &d), FT_EINVAL);
	assert_non_null(strstr(d.text, "preference data"));
	set->pair = pr;
	tok_set_free(set);
	model_free(m);
	model_file_free(mf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_likelihood_metrics),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
