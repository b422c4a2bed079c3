/* Unit tests for train/optim: AdamW against hand-computed values and against a
 * torch.optim.AdamW fixture (tests/reference/make_train_fixture.py optim), SGD against
 * torch.optim.SGD on a tiny model (make_train_fixture.py sgd: momentum, dampening,
 * Nesterov, weight decay), schedules against transformers' factors, global norm and
 * clipping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/native/train/optim.h"
#include "common/util.h"
#include "common/banned.h"

static void test_adamw_hand_computed(void **state)
{
	(void)state;
	/* One element, two steps, hand-computed in double:
	 * step 1: w = 1*(1-0.1*0.5) = 0.95; m = 0.1*2 = 0.2; v = 0.001*4 = 0.004;
	 *   mhat = 2, vhat = 4 -> w = 0.95 - 0.1*2/(2+1e-8) = 0.85
	 * step 2 (g = -1): w = 0.85*0.95 = 0.8075; m = 0.18 - 0.1 = 0.08;
	 *   v = 0.003996 + 0.001 = 0.004996; mhat = 0.08/0.19; vhat = 0.004996/0.001999
	 *   w = 0.8075 - 0.1 * mhat / (sqrt(vhat) + 1e-8) */
	float w = 1.0f, g = 2.0f, m = 0.0f, v = 0.0f;
	struct optim_param p = {.data = &w, .grad = &g, .m = &m, .v = &v, .numel = 1, .decay = true};
	struct adamw_hp hp = {.lr = 0.1, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
			      .weight_decay = 0.5};
	adamw_step(&p, 1, &hp, 1);
	assert_float_equal(w, 0.85, 1e-6);
	g = -1.0f;
	adamw_step(&p, 1, &hp, 2);
	double mhat = 0.08 / 0.19, vhat = 0.004996 / (1.0 - 0.999 * 0.999);
	double want = 0.8075 - 0.1 * mhat / (sqrt(vhat) + 1e-8);
	assert_float_equal(w, want, 2e-6);
	/* No decay on a 1-D tensor flagged decay=false. */
	float w2 = 1.0f, g2 = 0.0f, m2 = 0.0f, v2 = 0.0f;
	struct optim_param q = {.data = &w2, .grad = &g2, .m = &m2, .v = &v2, .numel = 1};
	adamw_step(&q, 1, &hp, 1);
	assert_true(w2 == 1.0f);
}

static void test_schedule_hand_computed(void **state)
{
	(void)state;
	/* warmup 4: 0, .25, .5, .75, then the decay starts at 1. */
	assert_float_equal(lr_schedule_factor(SCHEDULE_COSINE, 0, 14, 4, 0.0), 0.0, 1e-12);
	assert_float_equal(lr_schedule_factor(SCHEDULE_COSINE, 2, 14, 4, 0.0), 0.5, 1e-12);
	assert_float_equal(lr_schedule_factor(SCHEDULE_COSINE, 4, 14, 4, 0.0), 1.0, 1e-12);
	/* halfway through the decay: cosine 0.5, with a 0.2 floor 0.2+0.8*0.5 = 0.6 */
	assert_float_equal(lr_schedule_factor(SCHEDULE_COSINE, 9, 14, 4, 0.0), 0.5, 1e-12);
	assert_float_equal(lr_schedule_factor(SCHEDULE_COSINE, 9, 14, 4, 0.2), 0.6, 1e-12);
	assert_float_equal(lr_schedule_factor(SCHEDULE_LINEAR, 9, 14, 4, 0.2), 0.6, 1e-12);
	assert_float_equal(lr_schedule_factor(SCHEDULE_LINEAR, 14, 14, 4, 0.2), 0.2, 1e-12);
	/* past the end stays at the floor */
	assert_float_equal(lr_schedule_factor(SCHEDULE_COSINE, 40, 14, 4, 0.1), 0.1, 1e-12);
	assert_float_equal(lr_schedule_factor(SCHEDULE_CONSTANT, 40, 14, 4, 0.1), 1.0, 1e-12);
	assert_float_equal(lr_schedule_factor(SCHEDULE_CONSTANT, 0, 14, 0, 0.1), 1.0, 1e-12);
}

static void test_norm_and_clip(void **state)
{
	(void)state;
	/* 3-4-12 triangle split over two tensors: norm 13; one big tensor crosses blocks. */
	float a[2] = {3.0f, 4.0f}, b[1] = {12.0f};
	struct optim_param ps[2] = {{.grad = a, .numel = 2}, {.grad = b, .numel = 1}};
	double n = grad_global_norm(ps, 2);
	assert_float_equal(n, 13.0, 1e-12);
	double c = grad_clip(ps, 2, n, 1.3);
	assert_float_equal(c, 1.3 / (13.0 + 1e-6), 1e-12);
	assert_float_equal(a[0], 0.3, 1e-6);
	assert_float_equal(b[0], 1.2, 1e-6);
	assert_float_equal(grad_clip(ps, 2, 1.0, 5.0), 1.0, 0);
	assert_float_equal(grad_clip(ps, 2, 100.0, 0.0), 1.0, 0);

	size_t big = 100003;
	float *g = malloc(big * sizeof(float));
	assert_non_null(g);
	double want = 0;
	for (size_t i = 0; i < big; i++) {
		g[i] = (float)((i % 7) - 3) * 0.5f;
		want += (double)g[i] * g[i];
	}
	struct optim_param p = {.grad = g, .numel = big};
	assert_float_equal(grad_global_norm(&p, 1), sqrt(want), 1e-9 * sqrt(want));
	free(g);
}

static json_t *load_named(const char *name)
{
	const char *root = getenv("FTLAB_ROOT");
	char path[4096];
	snprintf(path, sizeof(path), "%s/tests/reference/fixtures/%s", root ? root : ".", name);
	json_error_t err;
	json_t *j = json_load_file(path, 0, &err);
	if (!j)
		fail_msg("cannot read %s: %s", path, err.text);
	return j;
}

static json_t *load_fixture(void)
{
	return load_named("train_optim.json");
}

static void fill(float *out, json_t *arr, size_t n)
{
	assert_int_equal(json_array_size(arr), n);
	for (size_t i = 0; i < n; i++)
		out[i] = (float)json_number_value(json_array_get(arr, i));
}

static void test_adamw_matches_torch(void **state)
{
	(void)state;
	json_t *j = load_fixture();
	float w[12], b[5], gw[12], gb[5], mw[12] = {0}, vw[12] = {0}, mb[5] = {0}, vb[5] = {0};
	fill(w, json_object_get(j, "w0"), 12);
	fill(b, json_object_get(j, "b0"), 5);
	struct optim_param ps[2] = {
		{.data = w, .grad = gw, .m = mw, .v = vw, .numel = 12, .decay = true},
		{.data = b, .grad = gb, .m = mb, .v = vb, .numel = 5, .decay = false},
	};
	json_t *betas = json_object_get(j, "betas");
	double peak = json_number_value(json_object_get(j, "lr"));
	struct adamw_hp hp = {
		.beta1 = json_number_value(json_array_get(betas, 0)),
		.beta2 = json_number_value(json_array_get(betas, 1)),
		.eps = json_number_value(json_object_get(j, "eps")),
		.weight_decay = json_number_value(json_object_get(j, "weight_decay")),
	};
	double max_norm = json_number_value(json_object_get(j, "max_norm"));
	int64_t total = json_integer_value(json_object_get(j, "total"));
	int64_t warmup = json_integer_value(json_object_get(j, "warmup"));
	double min_ratio = json_number_value(json_object_get(j, "min_ratio"));
	json_t *steps = json_object_get(j, "steps");
	size_t n_steps = json_array_size(steps);
	assert_int_equal(n_steps, 5);
	for (size_t s = 0; s < n_steps; s++) {
		json_t *st = json_array_get(steps, s);
		fill(gw, json_object_get(st, "grad_w"), 12);
		fill(gb, json_object_get(st, "grad_b"), 5);
		hp.lr = peak * lr_schedule_factor(SCHEDULE_COSINE, (int64_t)s, total, warmup,
						  min_ratio);
		assert_float_equal(hp.lr, json_number_value(json_object_get(st, "lr")), 1e-12);
		double norm = grad_global_norm(ps, 2);
		/* torch accumulates the norm in fp32 */
		assert_float_equal(norm, json_number_value(json_object_get(st, "norm")),
				   1e-6 * norm);
		grad_clip(ps, 2, norm, max_norm);
		adamw_step(ps, 2, &hp, (int64_t)s + 1);
		float ew[12], eb[5];
		fill(ew, json_object_get(st, "w"), 12);
		fill(eb, json_object_get(st, "b"), 5);
		/* Tolerance: a few fp32 ulps of |w| ~ 1 per step. */
		for (int i = 0; i < 12; i++)
			assert_float_equal(w[i], ew[i], 2e-6);
		for (int i = 0; i < 5; i++)
			assert_float_equal(b[i], eb[i], 2e-6);
	}
	json_decref(j);
}

/* SGD by hand: momentum's buffer starts as the first gradient (no dampening on that step),
 * then buf = m*buf + (1-d)*g; Nesterov steps along g + m*buf; weight decay is L2 (added
 * to the gradient). */
static void test_sgd_hand_computed(void **state)
{
	(void)state;
	float w = 1.0f, g = 2.0f, buf = 0.0f;
	struct optim_param p = {.data = &w, .grad = &g, .m = &buf, .numel = 1, .decay = true};
	struct sgd_hp hp = {.lr = 0.1, .momentum = 0.5, .dampening = 0.5, .weight_decay = 0.25};
	/* step 1: d = 2 + 0.25*1 = 2.25; buf = 2.25; w = 1 - 0.225 = 0.775 */
	sgd_step(&p, 1, &hp, 1);
	assert_float_equal(buf, 2.25f, 1e-7);
	assert_float_equal(w, 0.775f, 1e-7);
	/* step 2 (g = 2): d = 2 + 0.19375 = 2.19375; buf = 1.125 + 1.096875 = 2.221875;
	 * w = 0.775 - 0.2221875 = 0.5528125 */
	sgd_step(&p, 1, &hp, 2);
	assert_float_equal(buf, 2.221875f, 1e-6);
	assert_float_equal(w, 0.5528125f, 1e-6);
	/* Nesterov, no decay: d = 2; buf = 2 (first); step along 2 + 0.5*2 = 3 */
	w = 1.0f;
	buf = 0.0f;
	hp = (struct sgd_hp){.lr = 0.1, .momentum = 0.5, .nesterov = true};
	sgd_step(&p, 1, &hp, 1);
	assert_float_equal(w, 0.7f, 1e-7);
	/* no momentum: the buffer is not touched */
	buf = 42.0f;
	hp = (struct sgd_hp){.lr = 0.1};
	sgd_step(&p, 1, &hp, 5);
	assert_float_equal(buf, 42.0f, 0);
	assert_float_equal(w, 0.5f, 1e-7);
}

/* torch.optim.SGD's trajectory on a tiny MLP, replayed from its gradients in five settings
 * (plain, momentum, momentum with dampening and decay, Nesterov with decay, decay alone):
 * eight steps each, weights within a few fp32 ulps. */
/* keys: train.optimizer.type train.optimizer.momentum train.optimizer.dampening train.optimizer.nesterov train.optimizer.weight_decay */
static void test_sgd_matches_torch(void **state)
{
	(void)state;
	/* train.optimizer.type sgd: sgd_step, with the run's settings */
	json_t *j = load_named("train_sgd.json");
	double lr = json_number_value(json_object_get(j, "lr"));
	double max_norm = json_number_value(json_object_get(j, "max_norm"));
	json_t *runs = json_object_get(j, "runs");
	assert_int_equal(json_array_size(runs), 5);
	for (size_t r = 0; r < json_array_size(runs); r++) {
		json_t *run = json_array_get(runs, r);
		json_t *init = json_object_get(run, "init");
		assert_int_equal(json_array_size(init), 4);
		float *data[4], *grad[4], *buf[4];
		struct optim_param ps[4];
		for (size_t k = 0; k < 4; k++) {
			size_t n = json_array_size(json_array_get(init, k));
			data[k] = calloc(n, sizeof(float));
			grad[k] = calloc(n, sizeof(float));
			buf[k] = calloc(n, sizeof(float));
			fill(data[k], json_array_get(init, k), n);
			/* weight decay on the matrices only: tensors 0 and 2 */
			ps[k] = (struct optim_param){.data = data[k], .grad = grad[k], .m = buf[k],
						     .numel = n, .decay = k % 2 == 0};
		}
		struct sgd_hp hp = {
			.lr = lr,
			.momentum = json_number_value(json_object_get(run, "momentum")),
			.dampening = json_number_value(json_object_get(run, "dampening")),
			.weight_decay = json_number_value(json_object_get(run, "weight_decay")),
			.nesterov = json_is_true(json_object_get(run, "nesterov")),
		};
		json_t *steps = json_object_get(run, "steps");
		assert_int_equal(json_array_size(steps), 8);
		double worst = 0;
		for (size_t s = 0; s < json_array_size(steps); s++) {
			json_t *st = json_array_get(steps, s);
			for (size_t k = 0; k < 4; k++)
				fill(grad[k], json_array_get(json_object_get(st, "grads"), k),
				     ps[k].numel);
			double norm = grad_global_norm(ps, 4);
			assert_float_equal(norm, json_number_value(json_object_get(st, "norm")),
					   1e-6 * norm);
			grad_clip(ps, 4, norm, max_norm);
			sgd_step(ps, 4, &hp, (int64_t)s + 1);
			for (size_t k = 0; k < 4; k++) {
				json_t *want = json_array_get(json_object_get(st, "params"), k);
				for (size_t i = 0; i < ps[k].numel; i++) {
					double e = json_number_value(json_array_get(want, i));
					double err = fabs(data[k][i] - e);
					worst = err > worst ? err : worst;
					if (err > 2e-6 * (1 + fabs(e)))
						fail_msg("run %zu step %zu tensor %zu[%zu]: %.9g, torch %.9g",
							 r, s, k, i, data[k][i], e);
				}
			}
		}
		print_message("sgd run %zu (momentum %g, dampening %g, nesterov %d, weight_decay "
			      "%g): worst |diff| %.3g\n", r, hp.momentum, hp.dampening, hp.nesterov,
			      hp.weight_decay, worst);
		for (size_t k = 0; k < 4; k++) {
			free(data[k]);
			free(grad[k]);
			free(buf[k]);
		}
	}
	json_decref(j);
}

static void test_schedules_match_transformers(void **state)
{
	(void)state;
	json_t *j = load_fixture();
	json_t *sc = json_object_get(j, "schedules");
	struct {
		const char *key;
		enum schedule_type type;
		int64_t warmup, total;
		double min_ratio;
	} cases[] = {
		{"constant_w3", SCHEDULE_CONSTANT, 3, 10, 0.0},
		{"linear_w3_t10", SCHEDULE_LINEAR, 3, 10, 0.0},
		{"cosine_w2_t10", SCHEDULE_COSINE, 2, 10, 0.0},
		{"cosine_min0.1_w2_t10", SCHEDULE_COSINE, 2, 10, 0.1},
	};
	for (size_t c = 0; c < FT_ARRAY_LEN(cases); c++) {
		json_t *arr = json_object_get(sc, cases[c].key);
		assert_non_null(arr);
		for (size_t i = 0; i < json_array_size(arr); i++) {
			double want = json_number_value(json_array_get(arr, i));
			double got = lr_schedule_factor(cases[c].type, (int64_t)i, cases[c].total,
							cases[c].warmup, cases[c].min_ratio);
			/* transformers' cosine keeps oscillating past the end; we hold the floor */
			if ((int64_t)i > cases[c].total)
				continue;
			assert_float_equal(got, want, 1e-12);
		}
	}
	json_decref(j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_adamw_hand_computed),
		cmocka_unit_test(test_schedule_hand_computed),
		cmocka_unit_test(test_norm_and_clip),
		cmocka_unit_test(test_adamw_matches_torch),
		cmocka_unit_test(test_sgd_hand_computed),
		cmocka_unit_test(test_sgd_matches_torch),
		cmocka_unit_test(test_schedules_match_transformers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
