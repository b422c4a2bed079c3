/* Unit tests for train/optim: AdamW against hand-computed values and against a
 * torch.optim.AdamW fixture (tests/reference/make_train_fixture.py optim), schedules
 * against transformers' factors, global norm and clipping. */
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

static json_t *load_fixture(void)
{
	const char *root = getenv("FTLAB_ROOT");
	char path[4096];
	snprintf(path, sizeof(path), "%s/tests/reference/fixtures/train_optim.json",
		 root ? root : ".");
	json_error_t err;
	json_t *j = json_load_file(path, 0, &err);
	if (!j)
		fail_msg("cannot read %s: %s", path, err.text);
	return j;
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
		cmocka_unit_test(test_schedules_match_transformers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
