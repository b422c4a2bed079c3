/* Reports from a real store: a small real training (a linear model y = 2x + 1 fitted by
 * SGD on noisy data, one run per learning rate and seed) is recorded through the store API
 * exactly as the runner's sink does (metric history, base/tuned/delta results with
 * bootstrap intervals from scoring/bootstrap, predictions, a failed run),
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

#include "common/util.h"
#include "reports/report_load.h"
#include "reports/report_write.h"
#include "store/store.h"
#include "tests/unit/report_fixture.h"
#include "common/banned.h"

static char *g_ws;

static int setup(void **state)
{
	(void)state;
	g_ws = fixture_tmpdir();
	struct store *s = NULL;
	struct diag d;
	diag_init(&d);
	assert_int_equal(store_open(&s, g_ws, true, &d), 0);
	fixture_store_experiment(s, "linreg", "SGD learning-rate sweep\n`touch x` a'; system(\"touch x\"); '",
				 "1111111111111111111111111111111111111111", 'a', true);
	fixture_store_experiment(s, "linreg-old", "last night",
				 "2222222222222222222222222222222222222222", 'b', true);
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

/* keys: description sweep.objective sweep.objective.metric sweep.objective.goal */
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
	/* the spec's sweep.objective {metric: test.loss, goal: minimize} */
	assert_string_equal(r->objective, "test.loss");
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
	assert_int_equal(c->n, FIXTURE_STEPS);
	assert_true(c->values[c->n - 1] < c->values[0]);
	assert_non_null(report_run_curve(&r->runs[2], "validation", "loss"));
	/* the best run minimises test.mse; with 60 steps the largest stable lr wins */
	long best = report_best_run(r);
	assert_true(best >= 0);
	long m = report_metric_find(r, "test.loss");
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
