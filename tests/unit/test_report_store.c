/* Reports from a real store: a small real training (a linear model y = 2x + 1 fitted by
 * SGD on noisy data, one run per learning rate and seed) is recorded through the store API
 * exactly as the runner's sink does (metric history, base/tuned/delta results with
 * bootstrap intervals from backends/native/eval/bootstrap, predictions, a failed run),
 * then loaded with report_load and rendered; `ftlab report` is run on the same store. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backends/native/eval/bootstrap.h"
#include "common/rng.h"
#include "common/util.h"
#include "reports/report_load.h"
#include "reports/report_write.h"
#include "runner/store.h"
#include "tests/unit/report_fixture.h"

#define N_TRAIN 64
#define N_TEST 40
#define STEPS 60

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
	assert_int_equal(store_run_claim(s, &c, inv, &sp, STORE_FLAG_FORCE, &d), 0);
	assert_int_equal(c, STORE_CLAIM_RUN);
	struct store_writer *w = NULL;
	assert_int_equal(store_writer_open(&w, s, id, 1.0, &d), 0);
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
		assert_int_equal(store_run_end(s, id, inv, "failed", error, &d), 0);
		return;
	}
	/* per-example squared error and "within 0.5" accuracy, base and tuned */
	double base_se[N_TEST], tuned_se[N_TEST], base_acc[N_TEST], tuned_acc[N_TEST];
	for (int i = 0; i < N_TEST; i++) {
		double eb = 0 - test[i].y, et = w0 * test[i].x + b0 - test[i].y;
		base_se[i] = eb * eb;
		tuned_se[i] = et * et;
		base_acc[i] = fabs(eb) < 0.5;
		tuned_acc[i] = fabs(et) < 0.5;
		char prompt[64], ref[32], out_b[32], out_t[32];
		snprintf(prompt, sizeof(prompt), "x = %.3f", test[i].x);
		snprintf(ref, sizeof(ref), "%.3f", test[i].y);
		snprintf(out_b, sizeof(out_b), "%.3f", 0.0);
		snprintf(out_t, sizeof(out_t), "%.3f", w0 * test[i].x + b0);
		if (i < 5) {
			assert_int_equal(store_writer_prediction(w, "base", "test", i, prompt, ref, out_b,
								 base_acc[i]), 0);
			assert_int_equal(store_writer_prediction(w, "tuned", "test", i, prompt, ref,
								 out_t, tuned_acc[i]), 0);
		}
	}
	const char *names[2] = {"mse", "accuracy"};
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
	assert_int_equal(store_run_end(s, id, inv, "finished", NULL, &d), 0);
}

/* One experiment: lr in {0.01, 0.05, 0.2} x seed {1, 2}, the last run failed. */
static void record_experiment(struct store *s, const char *exp, const char *description,
			      const char *commit, char id_prefix)
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
	assert_int_equal(strbuf_puts(&spec, "\",\"sweep\":{\"objective\":{\"metric\":\"test.mse\","
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
			snprintf(id, sizeof(id), "%c0000000000%d", id_prefix, k);
			bool fail = k == 5;
			record_run(s, inv, exp, id, k, lrs[a], seed, commit, fail,
				   "trainer exited with status 1: loss is NaN at step 30");
		}
	assert_int_equal(store_invocation_end(s, inv, "finished", &d), 0);
}

static char *g_ws;

static int setup(void **state)
{
	(void)state;
	g_ws = fixture_tmpdir();
	struct store *s = NULL;
	struct diag d;
	diag_init(&d);
	assert_int_equal(store_open(&s, g_ws, true, &d), 0);
	record_experiment(s, "linreg", "SGD learning-rate sweep\n`touch x` a'; system(\"touch x\"); '",
			  "1111111111111111111111111111111111111111", 'a');
	record_experiment(s, "linreg-old", "last night", "2222222222222222222222222222222222222222",
			  'b');
	store_close(s);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	assert_int_equal(dir_remove_all(g_ws), 0);
	free(g_ws);
	return 0;
}

static void test_load_experiment(void **state)
{
	(void)state;
	struct store *s = NULL;
	struct diag d;
	diag_init(&d);
	assert_int_equal(store_open(&s, g_ws, false, &d), 0);
	struct report *r = NULL;
	assert_int_equal(report_load(&r, s, "linreg", &d), 0);
	assert_int_equal(r->n_runs, 6);
	assert_string_equal(r->objective, "test.mse");
	assert_false(r->maximize);
	assert_true(r->is_repo && r->dirty);
	assert_string_equal(r->commit, "1111111111111111111111111111111111111111");
	assert_non_null(strstr(r->description, "`touch x`"));
	assert_int_equal(r->n_params, 2);
	assert_int_equal(r->n_metrics, 2);
	assert_string_equal(r->runs[5].status, "failed");
	assert_non_null(strstr(r->runs[5].error, "NaN"));
	/* the curves hold the real history: 60 training points, falling */
	const struct report_curve *c = report_run_curve(&r->runs[2], "train", "loss");
	assert_non_null(c);
	assert_int_equal(c->n, STEPS);
	assert_true(c->values[c->n - 1] < c->values[0]);
	assert_non_null(report_run_curve(&r->runs[2], "validation", "loss"));
	/* the best run minimises test.mse; with 60 steps the largest stable lr wins */
	long best = report_best_run(r);
	assert_true(best >= 0);
	long m = report_metric_find(r, "test.mse");
	for (size_t i = 0; i < r->n_runs; i++)
		if (report_run_ok(&r->runs[i]))
			assert_true(r->runs[best].tuned[m].v <= r->runs[i].tuned[m].v);
	/* tuned beats base with an interval that excludes zero */
	assert_true(r->runs[best].delta[m].has_ci);
	assert_true(r->runs[best].delta[m].hi < 0);
	assert_int_equal(r->runs[best].n_preds, 5);
	assert_non_null(r->runs[best].preds[0].base_output);
	assert_non_null(r->runs[best].preds[0].tuned_output);
	/* baseline */
	assert_int_equal(report_load_baseline(r, s, "linreg-old", &d), 0);
	assert_int_equal(r->baseline->n_runs, 6);
	report_free(r);
	/* by run id (prefix) and by EXPERIMENT@COMMIT */
	assert_int_equal(report_load(&r, s, "a00000000002", &d), 0);
	assert_int_equal(r->n_runs, 1);
	assert_string_equal(r->experiment, "linreg");
	report_free(r);
	assert_int_equal(report_load(&r, s, "linreg-old@2222", &d), 0);
	assert_int_equal(r->n_runs, 6);
	report_free(r);
	assert_int_equal(report_load(&r, s, "linreg@2222", &d), FT_EINVAL);
	assert_non_null(strstr(d.text, "no runs executed at a commit"));
	diag_init(&d);
	assert_int_equal(report_load(&r, s, "linreq", &d), FT_EINVAL);
	assert_non_null(strstr(d.hint, "did you mean 'linreg'"));
	store_close(s);
}

/* Runs build/ftlab with args in dir; returns the exit status; stderr into err (may be NULL). */
static int ftlab(const char *dir, const char *const *args, char *err, size_t err_n)
{
	const char *bin = getenv("FTLAB_BIN");
	assert_non_null(bin);
	char errpath[256];
	snprintf(errpath, sizeof(errpath), "%s/.stderr", dir);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (chdir(dir) != 0)
			_exit(126);
		FILE *f = freopen(errpath, "w", stderr);
		(void)f;
		FILE *o = freopen("/dev/null", "w", stdout);
		(void)o;
		const char *argv[16] = {bin};
		for (int i = 0; args[i] && i < 14; i++)
			argv[i + 1] = args[i];
		setenv("FTLAB_WORKSPACE", g_ws, 1);
		execv(bin, (char *const *)argv);
		_exit(127);
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	if (err) {
		char *path = errpath, *text = NULL;
		size_t n = 0;
		struct diag d;
		diag_init(&d);
		if (file_read_all(&text, &n, path, 1 << 20, &d) == 0) {
			snprintf(err, err_n, "%s", text);
			free(text);
		}
	}
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void test_cli_report(void **state)
{
	(void)state;
	char *dir = fixture_tmpdir();
	char err[2048] = "";
	const char *ok[] = {"report", "linreg", "--baseline", "linreg-old", "-o", "out", NULL};
	assert_int_equal(ftlab(dir, ok, err, sizeof(err)), 0);
	char *out = path_join(dir, "out");
	char *html = fixture_slurp(out, "index.html");
	assert_non_null(strstr(html, "fig-loss"));
	assert_non_null(strstr(html, "fig-results_0"));
	assert_non_null(strstr(html, "fig-delta_0"));
	assert_non_null(strstr(html, "fig-param_"));
	assert_non_null(strstr(html, "tr class=\"baseline\""));
	assert_non_null(strstr(html, "a&#39;; system(&quot;touch x&quot;); &#39;"));
	assert_non_null(strstr(html, "loss is NaN at step 30"));
	free(html);
	char *md = fixture_slurp(out, "report.md");
	assert_non_null(strstr(md, "![Base vs fine-tuned on test"));
	free(md);
	char *x = path_join(dir, "x"), *x2 = path_join(out, "x");
	assert_false(path_exists(x));
	assert_false(path_exists(x2));
	free(x);
	free(x2);
	/* the default output directory */
	const char *dflt[] = {"report", "linreg", NULL};
	assert_int_equal(ftlab(dir, dflt, err, sizeof(err)), 0);
	char *def = path_join(dir, "report-linreg/index.html");
	assert_true(path_exists(def));
	free(def);
	/* unknown experiment and bad options: exit 2 */
	const char *unknown[] = {"report", "linreq", NULL};
	assert_int_equal(ftlab(dir, unknown, err, sizeof(err)), 2);
	assert_non_null(strstr(err, "did you mean 'linreg'"));
	const char *badopt[] = {"report", "linreg", "--basline", "x", NULL};
	assert_int_equal(ftlab(dir, badopt, err, sizeof(err)), 2);
	assert_non_null(strstr(err, "--baseline"));
	const char *none[] = {"report", NULL};
	assert_int_equal(ftlab(dir, none, err, sizeof(err)), 2);
	/* gnuplot missing: exit 2 naming the package */
	setenv("FTLAB_GNUPLOT", "/nonexistent/gnuplot", 1);
	assert_int_equal(ftlab(dir, ok, err, sizeof(err)), 2);
	unsetenv("FTLAB_GNUPLOT");
	assert_non_null(strstr(err, "gnuplot-nox"));
	free(out);
	/* scripts/test-browser.sh: keep a copy for the headless-browser check */
	const char *keep = getenv("FTLAB_KEEP_REPORT");
	if (keep) {
		char *kept = path_join(keep, "store-report");
		const char *k[] = {"report", "linreg", "--baseline", "linreg-old", "-o", kept, NULL};
		assert_int_equal(ftlab(dir, k, err, sizeof(err)), 0);
		free(kept);
	}
	assert_int_equal(dir_remove_all(dir), 0);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_load_experiment),
		cmocka_unit_test(test_cli_report),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
