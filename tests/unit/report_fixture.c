/* report_fixture: test support shared by the report, gate and JUnit tests: a realistic
 * sweep report built through the report API (and the injection strings docs/reports.md lists),
 * temporary directories and whole-file reads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/unit/report_fixture.h"

#include "scoring/bootstrap.h"
#include "common/rng.h"
#include "common/util.h"
#include "store/store.h"
#include "common/banned.h"

/* The injection strings of docs/reports.md, each trying to run `touch x` in the report directory. */
const char *const FIXTURE_INJECT[6] = {
	"`touch x`",
	"a'; system(\"touch x\"); '",
	"ok\nsystem(\"touch x\")",
	"@x",
	"<x",
	"<script>alert(1)</script> & \"q\"",
};

char *fixture_tmpdir(void)
{
	char tmpl[] = "/tmp/ftlab-report-XXXXXX";
	char *d = mkdtemp(tmpl);
	assert_non_null(d);
	return ft_strdup(d);
}

char *fixture_slurp(const char *dir, const char *rel)
{
	char *path = path_join(dir, rel), *text = NULL;
	size_t n = 0;
	struct diag d;
	diag_init(&d);
	int rc = file_read_all(&text, &n, path, 64u << 20, &d);
	free(path);
	assert_int_equal(rc, 0);
	return text;
}

/* A sweep: rank x lr x seed, 2 x 2 x 2 runs, one failed, with curves, results, predictions
 * and configs; `evil` puts injection strings into every user-controlled text. */
struct report *fixture_report(bool evil)
{
	struct report *r = report_new(evil ? FIXTURE_INJECT[1] : "support-lora");
	assert_non_null(r);
	assert_int_equal(report_set_text(&r->description,
					 evil ? FIXTURE_INJECT[2] : "LoRA rank and learning-rate sweep"), 0);
	assert_int_equal(report_set_text(&r->commit, "0123456789abcdef0123456789abcdef01234567"), 0);
	assert_int_equal(report_set_text(&r->branch, evil ? FIXTURE_INJECT[0] : "main"), 0);
	assert_int_equal(report_set_text(&r->host, evil ? FIXTURE_INJECT[4] : "build-1"), 0);
	r->is_repo = true;
	r->dirty = true;
	r->date = 1795000000.0;
	assert_int_equal(report_set_text(&r->objective, "test.exact_match"), 0);
	r->objective_set = true;
	r->maximize = true;
	const char *ranks[2] = {"4", "8"}, *lrs[2] = {"1e-4", "3e-4"};
	int k = 0;
	for (int a = 0; a < 2; a++)
		for (int b = 0; b < 2; b++)
			for (int s = 0; s < 2; s++, k++) {
				char id[32];
				snprintf(id, sizeof(id), "r%02d%s", k, evil && k == 3 ? "/../x" : "");
				bool failed = k == 5;
				struct report_run *run;
				assert_int_equal(report_add_run(r, id, failed ? "failed" : "finished", &run), 0);
				assert_int_equal(report_run_set_param(r, run, evil ? FIXTURE_INJECT[3] : "method.rank",
								      ranks[a]), 0);
				assert_int_equal(report_run_set_param(r, run, "train.optimizer.lr",
								      evil && k == 0 ? FIXTURE_INJECT[0] : lrs[b]), 0);
				assert_int_equal(report_run_set_param(r, run, "seed", s ? "2" : "1"), 0);
				char cfg[256];
				snprintf(cfg, sizeof(cfg), "{\"method\":{\"rank\":%s,\"type\":\"lora\"},"
					 "\"train\":{\"optimizer\":{\"lr\":%s}},\"seed\":%d,\"tag\":\"%s%d\"}",
					 ranks[a], lrs[b], s + 1, evil ? "<b>x</b>" : "t", k);
				assert_int_equal(report_set_text(&run->config_json, cfg), 0);
				if (failed) {
					assert_int_equal(report_set_text(&run->error, evil ? FIXTURE_INJECT[5]
						: "trainer exited with status 1: CUDA out of memory"), 0);
					continue;
				}
				/* the curve: loss decays faster with a larger lr and rank */
				double rate = (a ? 0.030 : 0.020) * (b ? 1.6 : 1.0);
				for (int step = 0; step <= 60; step += 5) {
					double loss = 2.2 * exp(-rate * step) + 0.6 + 0.01 * s;
					assert_int_equal(report_run_add_point(run, "train", "loss", step, loss), 0);
					if (step % 20 == 0)
						assert_int_equal(report_run_add_point(run, "validation", "loss",
										      step, loss + 0.08), 0);
				}
				double em = 0.35 + 0.1 * a + 0.08 * b + 0.02 * s;
				assert_int_equal(report_run_set_result(r, run, REPORT_BASE, "test",
					"exact_match", 0.21, true, 0.15, 0.27), 0);
				assert_int_equal(report_run_set_result(r, run, REPORT_TUNED, "test",
					"exact_match", em, true, em - 0.06, em + 0.06), 0);
				assert_int_equal(report_run_set_result(r, run, REPORT_DELTA, "test",
					"exact_match", em - 0.21, true, em - 0.28, em - 0.14), 0);
				assert_int_equal(report_run_set_result(r, run, REPORT_BASE, "test", "loss",
					2.9, true, 2.8, 3.0), 0);
				assert_int_equal(report_run_set_result(r, run, REPORT_TUNED, "test", "loss",
					1.0 - 0.1 * a, true, 0.95 - 0.1 * a, 1.05 - 0.1 * a), 0);
				assert_int_equal(report_run_set_result(r, run, REPORT_DELTA, "test", "loss",
					-1.9 + 0.1 * a, true, -2.0, -1.8), 0);
				assert_int_equal(report_run_set_result(r, run, REPORT_TUNED, "validation",
					"loss", 1.1, false, 0, 0), 0);
				for (int e = 0; e < 3; e++) {
					char prompt[64];
					snprintf(prompt, sizeof(prompt), "How do I reset my password? (%d)", e);
					const char *p = evil && e == 0 ? FIXTURE_INJECT[5] : prompt;
					assert_int_equal(report_run_add_prediction(run, REPORT_BASE, "test", e, p,
						"Use the reset link.", evil ? FIXTURE_INJECT[1] : "I am a model.", true, 0),
						0);
					assert_int_equal(report_run_add_prediction(run, REPORT_TUNED, "test", e,
						p, "Use the reset link.", evil && e == 1 ? FIXTURE_INJECT[2]
						: "Use the reset link.", true, 1), 0);
				}
			}
	return r;
}


/* ---- a store filled by a real (small) training sweep ---- */

#define N_TRAIN 64
#define N_TEST 40
#define STEPS FIXTURE_STEPS

struct example {
	double x, y;
};

static void make_data(struct example *ex, size_t n, uint64_t stream)
{
	struct rng r;
	rng_seed(&r, 1234, stream);
	for (size_t i = 0; i < n; i++) {
		ex[i].x = rng_uniform(&r) * 4 - 2;
		ex[i].y = 2 * ex[i].x + 1 + (rng_uniform(&r) - 0.5) * 0.6;
	}
}

static double mse(double w, double b, const struct example *ex, size_t n)
{
	double s = 0;
	for (size_t i = 0; i < n; i++) {
		double e = w * ex[i].x + b - ex[i].y;
		s += e * e;
	}
	return s / (double)n;
}

/* Records one run of the sweep: trains with SGD (lr, seed) and evaluates base (w = b = 0)
 * and tuned models on the test split with paired bootstrap intervals. */
static void record_run(struct store *s, int64_t inv, const char *exp, const char *id,
		       int64_t index, double lr, int seed, const char *commit, bool fail,
		       const char *error)
{
	struct diag d;
	diag_init(&d);
	char params[128], config[256];
	snprintf(params, sizeof(params), "{\"seed\":%d,\"train.optimizer.lr\":%g}", seed, lr);
	snprintf(config, sizeof(config), "{\"name\":\"%s\",\"seed\":%d,\"train\":{\"optimizer\":"
		 "{\"lr\":%g,\"type\":\"sgd\"},\"steps\":%d}}", exp, seed, lr, STEPS);
	struct store_run_spec sp = {
		.id = id, .experiment = exp, .sweep_index = index, .params_json = params,
		.config_json = config, .identity = "0000000000000000000000000000000000000000000000000000000000000000",
		.backend = "exec", .device = "exec", .threads = 1, .seed = seed, .run_dir = "/tmp",
		.git_commit = commit, .git_dirty = true,
	};
	enum store_claim c;
	char token[STORE_TOKEN_SIZE];
	assert_int_equal(store_run_claim(s, &c, token, inv, &sp, STORE_FLAG_FORCE, &d), 0);
	assert_int_equal(c, STORE_CLAIM_RUN);
	struct store_writer *w = NULL;
	assert_int_equal(store_writer_open(&w, s, id, token, 1.0, &d), 0);
	struct example train[N_TRAIN], val[16], test[N_TEST];
	make_data(train, N_TRAIN, 1);
	make_data(val, 16, 2);
	make_data(test, N_TEST, 3);
	struct rng r;
	rng_seed(&r, (uint64_t)seed, 7);
	double w0 = 0, b0 = 0;
	for (int step = 1; step <= STEPS; step++) {
		/* minibatch of 8 */
		double gw = 0, gb = 0, loss = 0;
		for (int k = 0; k < 8; k++) {
			const struct example *e = &train[rng_next(&r) % N_TRAIN];
			double err = w0 * e->x + b0 - e->y;
			loss += err * err / 8;
			gw += 2 * err * e->x / 8;
			gb += 2 * err / 8;
		}
		w0 -= lr * gw;
		b0 -= lr * gb;
		assert_int_equal(store_writer_metric(w, "train", "loss", step, loss), 0);
		if (step % 10 == 0)
			assert_int_equal(store_writer_metric(w, "validation", "loss", step,
							     mse(w0, b0, val, 16)), 0);
		if (fail && step == 30)
			break;
	}
	if (fail) {
		assert_int_equal(store_writer_flush(w), 0);
		store_writer_free(w);
		assert_int_equal(store_run_end(s, id, token, inv, "failed", error, &d), 0);
		return;
	}
	/* per-example squared error and "within 0.5" accuracy, base and tuned */
	double base_se[N_TEST], tuned_se[N_TEST], base_acc[N_TEST], tuned_acc[N_TEST];
	for (int i = 0; i < N_TEST; i++) {
		double eb = 0 - test[i].y, et = w0 * test[i].x + b0 - test[i].y;
		base_se[i] = eb * eb;
		tuned_se[i] = et * et;
		char prompt[64], ref[32], out_b[32], out_t[32];
		snprintf(prompt, sizeof(prompt), "x = %.2f", test[i].x);
		snprintf(ref, sizeof(ref), "%.1f", test[i].y);
		snprintf(out_b, sizeof(out_b), "%.1f", 0.0);
		snprintf(out_t, sizeof(out_t), "%.1f", w0 * test[i].x + b0);
		/* exact match of the one-decimal answers */
		base_acc[i] = strcmp(out_b, ref) == 0;
		tuned_acc[i] = strcmp(out_t, ref) == 0;
		if (i < 5) {
			assert_int_equal(store_writer_prediction(w, "base", "test", i, prompt, ref, out_b,
								 base_acc[i]), 0);
			assert_int_equal(store_writer_prediction(w, "tuned", "test", i, prompt, ref,
								 out_t, tuned_acc[i]), 0);
		}
	}
	const char *names[2] = {"loss", "exact_match"};
	const double *rows[2][2] = {{base_se, tuned_se}, {base_acc, tuned_acc}};
	for (int m = 0; m < 2; m++) {
		struct boot_stat sb = {.rows = rows[m][0], .dim = 1, .agg = boot_agg_mean};
		struct boot_stat st = {.rows = rows[m][1], .dim = 1, .agg = boot_agg_mean};
		struct boot_ci cb, ct, cd;
		assert_int_equal(bootstrap_paired(&cb, &ct, &cd, &sb, &st, N_TEST, 500, 0.95, 42), 0);
		assert_int_equal(store_writer_result(w, "base", "test", names[m], cb.value, cb.low,
						     cb.high), 0);
		assert_int_equal(store_writer_result(w, "tuned", "test", names[m], ct.value, ct.low,
						     ct.high), 0);
		assert_int_equal(store_writer_result(w, "delta", "test", names[m], cd.value, cd.low,
						     cd.high), 0);
	}
	assert_int_equal(store_writer_flush(w), 0);
	assert_null(store_writer_error(w));
	store_writer_free(w);
	assert_int_equal(store_run_end(s, id, token, inv, "finished", NULL, &d), 0);
}

/* One experiment: lr in {0.01, 0.05, 0.2} x seed {1, 2}, the last run failed. */
void fixture_store_experiment(struct store *s, const char *exp, const char *description,
			      const char *commit, char id_prefix, bool with_failure)
{
	fixture_store_experiment_ids(s, exp, description, commit, id_prefix, NULL, with_failure);
}

void fixture_store_experiment_ids(struct store *s, const char *exp, const char *description,
				  const char *commit, char id_prefix, const char *const *ids,
				  bool with_failure)
{
	struct diag d;
	diag_init(&d);
	struct strbuf spec = {0};
	assert_int_equal(strbuf_puts(&spec, "{\"name\":\""), 0);
	assert_int_equal(strbuf_puts(&spec, exp), 0);
	assert_int_equal(strbuf_puts(&spec, "\",\"description\":\""), 0);
	for (const char *p = description; *p; p++) {
		if (*p == '"' || *p == '\\')
			assert_int_equal(strbuf_printf(&spec, "\\%c", *p), 0);
		else if (*p == '\n')
			assert_int_equal(strbuf_puts(&spec, "\\n"), 0);
		else
			assert_int_equal(strbuf_append(&spec, p, 1), 0);
	}
	assert_int_equal(strbuf_puts(&spec, "\",\"sweep\":{\"objective\":{\"metric\":\"test.loss\","
				     "\"goal\":\"minimize\"}}}"), 0);
	assert_int_equal(store_experiment_put(s, exp, spec.buf, "hash", "experiments/x.yaml", &d), 0);
	strbuf_free(&spec);
	struct store_provenance prov = {.is_repo = true, .commit = commit, .branch = "main",
					.remote = "https://example.com/repo.git", .dirty = true};
	int64_t inv;
	assert_int_equal(store_invocation_begin(s, &inv, exp, "[\"ftlab\",\"run\"]", &prov, &d), 0);
	const double lrs[3] = {0.01, 0.05, 0.2};
	int k = 0;
	for (int a = 0; a < 3; a++)
		for (int seed = 1; seed <= 2; seed++, k++) {
			char id[16];
			if (ids)
				snprintf(id, sizeof(id), "%s", ids[k]);
			else
				snprintf(id, sizeof(id), "%c0000000000%d", id_prefix, k);
			bool fail = with_failure && k == 5;
			record_run(s, inv, exp, id, k, lrs[a], seed, commit, fail,
				   "trainer exited with status 1: loss is NaN at step 30");
		}
	assert_int_equal(store_invocation_end(s, inv, "finished", &d), 0);
}

