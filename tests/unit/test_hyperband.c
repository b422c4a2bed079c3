/* Unit tests for runner/hyperband.c: bands from min_iter and max_iter/s (W&B's doc
 * examples), the decisions of W&B's docstring example, a replay of recorded learning curves
 * against the decisions W&B's sweeps library made on them (tests/reference/
 * hyperband_fixture.json) and against a reference implementation written here, and a
 * randomised comparison with that reference. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/rng.h"
#include "common/util.h"
#include "runner/hyperband.h"
#include "tests/unit/hyperband_ref.h"
#include "common/banned.h"

/* ---- helpers ---- */

static struct hyperband make(const struct ref_cfg *c)
{
	struct hyperband_spec s = {.min_iter = c->min_iter, .max_iter = c->max_iter, .s = c->s,
				   .eta = c->eta, .strict = c->strict, .maximize = c->maximize};
	struct hyperband hb;
	struct diag d;
	diag_init(&d);
	assert_int_equal(hyperband_init(&hb, &s, &d), 0);
	return hb;
}

static struct hyperband_decision decide(const struct hyperband *hb, double **hist,
					const size_t *len, size_t n_runs, size_t self)
{
	struct hyperband_history h[64];
	assert_true(n_runs <= 64);
	for (size_t i = 0; i < n_runs; i++)
		h[i] = (struct hyperband_history){hist[i], len[i]};
	struct hyperband_decision out;
	struct diag d;
	diag_init(&d);
	assert_int_equal(hyperband_decide(&out, hb, h, n_runs, self, &d), 0);
	return out;
}

/* ---- tests ---- */

static void test_bands(void **state)
{
	(void)state;
	/* W&B's docs: min_iter 3 (eta 3) gives brackets 3, 9, 27, 81; max_iter 27 with s 2
	 * gives 9 and 3. */
	struct ref_cfg a = {.min_iter = 3, .eta = 3};
	struct hyperband hb = make(&a);
	assert_true(hb.n_bands >= 30); /* W&B lists 100; bands past 2^53 are left out */
	assert_int_equal(hb.bands[0], 3);
	assert_int_equal(hb.bands[1], 9);
	assert_int_equal(hb.bands[2], 27);
	assert_int_equal(hb.bands[3], 81);
	struct ref_cfg b = {.max_iter = 27, .s = 2, .eta = 3};
	hb = make(&b);
	assert_int_equal(hb.n_bands, 2);
	assert_int_equal(hb.bands[0], 3);
	assert_int_equal(hb.bands[1], 9);
	/* W&B's tests: max_iter 81, s 3 -> 3, 9, 27; max_iter 18, s 2 -> 2, 6. */
	struct ref_cfg c = {.max_iter = 81, .s = 3, .eta = 3};
	hb = make(&c);
	assert_int_equal(hb.n_bands, 3);
	assert_int_equal(hb.bands[2], 27);
	struct ref_cfg e = {.max_iter = 18, .s = 2, .eta = 3};
	hb = make(&e);
	assert_int_equal(hb.n_bands, 2);
	assert_int_equal(hb.bands[0], 2);
	assert_int_equal(hb.bands[1], 6);
	/* A band below one iteration ends the list: max_iter 5, eta 2, s 4 -> 2.5, 1.25, stop. */
	struct ref_cfg f = {.max_iter = 5, .s = 4, .eta = 2};
	hb = make(&f);
	assert_int_equal(hb.n_bands, 2);
	assert_int_equal(hb.bands[0], 1);
	assert_int_equal(hb.bands[1], 2);
	/* Non-integer eta: int(2 * 2.5^k) = 2, 5, 12, 31. */
	struct ref_cfg g = {.min_iter = 2, .eta = 2.5};
	hb = make(&g);
	assert_int_equal(hb.bands[1], 5);
	assert_int_equal(hb.bands[2], 12);
	assert_int_equal(hb.bands[3], 31);
	/* Errors. */
	struct hyperband_spec bad[] = {
		{.min_iter = 3, .eta = 1.0},
		{.max_iter = 2, .s = 1, .eta = 3},
		{.max_iter = 27, .s = 0, .eta = 3},
		{.eta = 3},
	};
	for (size_t i = 0; i < FT_ARRAY_LEN(bad); i++) {
		struct diag d;
		diag_init(&d);
		assert_int_equal(hyperband_init(&hb, &bad[i], &d), FT_EINVAL);
		assert_true(d.text[0] != '\0');
	}
}

/* W&B's docstring example (hyperband_stopping.py): max_iter 5, eta 2, s 2 -> bands 1, 2;
 * thresholds 10 and 8; only run b is stopped (10 > 8); c (8) is not, 8 is not worse than 8. */
static void test_wandb_doc_example(void **state)
{
	(void)state;
	double a[] = {10, 9}, b[] = {10, 10}, c[] = {10, 8, 8}, dd[] = {10, 7, 7}, e[] = {10, 6, 6};
	double *hist[] = {a, b, c, dd, e};
	size_t len[] = {2, 2, 3, 3, 3};
	for (int strict = 0; strict < 2; strict++) {
		struct ref_cfg cfg = {.max_iter = 5, .s = 2, .eta = 2, .strict = strict};
		struct hyperband hb = make(&cfg);
		struct hyperband_decision db = decide(&hb, hist, len, 5, 1);
		assert_true(db.checked);
		assert_true(db.stop);
		assert_int_equal(db.band, 2);
		assert_true(db.threshold == 8.0);
		assert_true(db.value == 10.0);
		assert_int_equal(db.n_at_band, 5);
		struct hyperband_decision dc = decide(&hb, hist, len, 5, 2);
		assert_false(dc.stop);
		assert_true(dc.value == 8.0);
		assert_false(decide(&hb, hist, len, 5, 3).stop);
		double t;
		size_t n;
		struct diag d;
		diag_init(&d);
		assert_int_equal(hyperband_threshold(&t, &n, &hb, 0, (struct hyperband_history[]){
			{a, 2}, {b, 2}, {c, 3}, {dd, 3}, {e, 3}}, 5, &d), 0);
		assert_true(t == 10.0);
		assert_int_equal(n, 5);
	}
	/* Before its first band a run is not checked. */
	struct ref_cfg cfg = {.min_iter = 3, .eta = 3, .strict = true};
	struct hyperband hb = make(&cfg);
	assert_false(decide(&hb, hist, len, 5, 0).checked);
	assert_true(decide(&hb, hist, len, 5, 4).checked);
	/* Maximize: the same numbers as accuracies; now the lower ones lose. */
	cfg = (struct ref_cfg){.max_iter = 5, .s = 2, .eta = 2, .strict = true, .maximize = true};
	hb = make(&cfg);
	struct hyperband_decision de = decide(&hb, hist, len, 5, 4);
	assert_true(de.stop); /* 6 is below the threshold 8 (the 3rd best of 10, 9, 8, 7, 6) */
	assert_true(de.threshold == 8.0);
	assert_false(decide(&hb, hist, len, 5, 1).stop); /* 10 is the best at band 2 */
}

static char *fixture_path(void)
{
	const char *root = getenv("FTLAB_ROOT");
	return path_join(root ? root : ".", "tests/reference/hyperband_fixture.json");
}

/* Replays the recorded timeline for every configuration: after each logged value, the
 * module's decision for that run must equal the reference's and the one W&B's library
 * made (stop, band, threshold). */
static void test_replay_wandb_fixture(void **state)
{
	(void)state;
	char *p = fixture_path();
	json_error_t je;
	json_t *root = json_load_file(p, 0, &je);
	if (!root)
		fail_msg("cannot read %s: %s", p, je.text);
	free(p);
	const json_t *runs = json_object_get(root, "runs"), *events = json_object_get(root, "events");
	const json_t *cases = json_object_get(root, "cases");
	size_t n_runs = json_array_size(runs);
	assert_true(n_runs > 10 && n_runs <= 64);
	assert_true(json_array_size(cases) >= 10);
	size_t checked = 0, stops = 0;
	for (size_t ci = 0; ci < json_array_size(cases); ci++) {
		const json_t *cs = json_array_get(cases, ci);
		const json_t *et = json_object_get(cs, "early_terminate");
		bool maximize = strcmp(json_string_value(json_object_get(cs, "goal")), "maximize") == 0;
		const json_t *strict = json_object_get(et, "strict");
		struct ref_cfg cfg = {
			.min_iter = json_integer_value(json_object_get(et, "min_iter")),
			.max_iter = json_integer_value(json_object_get(et, "max_iter")),
			.s = json_integer_value(json_object_get(et, "s")),
			.eta = json_number_value(json_object_get(et, "eta")),
			.strict = strict ? json_is_true(strict) : true, /* W&B's default */
			.maximize = maximize,
		};
		struct hyperband hb = make(&cfg);
		double *hist[64];
		size_t len[64] = {0}, logged[64] = {0};
		bool stopped[64] = {false};
		for (size_t i = 0; i < n_runs; i++) {
			hist[i] = calloc(json_array_size(json_array_get(runs, i)) + 1, sizeof(double));
			assert_non_null(hist[i]);
		}
		const json_t *dec = json_object_get(cs, "decisions");
		size_t k = 0;
		for (size_t ei = 0; ei < json_array_size(events); ei++) {
			size_t r = (size_t)json_integer_value(json_array_get(events, ei));
			if (stopped[r])
				continue;
			const json_t *v = json_array_get(json_array_get(runs, r), logged[r]++);
			if (json_is_number(v)) /* null: a non-finite value, which W&B ignores */
				hist[r][len[r]++] = (maximize ? -1.0 : 1.0) * json_number_value(v);
			const json_t *w = json_array_get(dec, k++);
			assert_non_null(w);
			assert_int_equal(json_integer_value(json_object_get(w, "run")), r);
			assert_int_equal(json_integer_value(json_object_get(w, "n")), logged[r]);
			bool w_stop = json_is_true(json_object_get(w, "stop"));
			int64_t w_band = json_integer_value(json_object_get(w, "band"));
			struct hyperband_decision m = decide(&hb, hist, len, n_runs, r);
			struct ref_decision f = ref_decide(&cfg, hist, len, n_runs, r);
			if (m.stop != w_stop || f.stop != w_stop || m.band != w_band || f.band != w_band)
				fail_msg("case %zu event %zu run %zu: W&B stop=%d band=%lld, module "
					 "stop=%d band=%lld, reference stop=%d band=%lld", ci, ei, r,
					 w_stop, (long long)w_band, m.stop, (long long)m.band, f.stop,
					 (long long)f.band);
			if (w_band) {
				/* W&B prints thresholds in its negated form for maximize. */
				double wt = (maximize ? -1.0 : 1.0) *
					    json_number_value(json_object_get(w, "threshold"));
				assert_true(m.threshold == wt);
				assert_true(f.threshold == wt);
				checked++;
			}
			stops += w_stop;
			if (w_stop)
				stopped[r] = true;
		}
		assert_int_equal(k, json_array_size(dec));
		for (size_t i = 0; i < n_runs; i++)
			free(hist[i]);
	}
	/* The fixture exercises both outcomes many times. */
	assert_true(checked > 200);
	assert_true(stops > 50);
	json_decref(root);
}

/* Random histories and configurations: the module and the reference agree everywhere. */
static void test_random_against_reference(void **state)
{
	(void)state;
	struct rng r;
	rng_seed(&r, 7, 1);
	for (int trial = 0; trial < 400; trial++) {
		struct ref_cfg c = {.eta = 1.5 + 2.5 * rng_uniform(&r),
				    .strict = rng_below(&r, 2) != 0,
				    .maximize = rng_below(&r, 2) != 0};
		if (rng_below(&r, 2))
			c.min_iter = 1 + (int64_t)rng_below(&r, 4);
		else {
			c.max_iter = 4 + (int64_t)rng_below(&r, 40);
			c.s = 1 + (int64_t)rng_below(&r, 4);
			if ((double)c.max_iter / c.eta < 1)
				c.max_iter = 8;
		}
		struct hyperband hb = make(&c);
		size_t n_runs = 1 + (size_t)rng_below(&r, 20);
		double *hist[64], store[64][30];
		size_t len[64];
		for (size_t i = 0; i < n_runs; i++) {
			hist[i] = store[i];
			len[i] = (size_t)rng_below(&r, 30);
			for (size_t k = 0; k < len[i]; k++) /* coarse values: many ties */
				store[i][k] = (double)rng_below(&r, 8) / 4.0;
		}
		for (size_t self = 0; self < n_runs; self++) {
			struct hyperband_decision m = decide(&hb, hist, len, n_runs, self);
			struct ref_decision f = ref_decide(&c, hist, len, n_runs, self);
			assert_int_equal(m.stop, f.stop);
			assert_int_equal(m.band, f.band);
			if (m.band)
				assert_true(m.threshold == f.threshold);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bands),
		cmocka_unit_test(test_wandb_doc_example),
		cmocka_unit_test(test_replay_wandb_fixture),
		cmocka_unit_test(test_random_against_reference),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
