/* Unit tests for reports/: the data model, escaping, config diffs, the gnuplot child
 * (quoting, missing program, timeout) and whole report directories, including the gnuplot
 * and HTML injection strings of docs/reports.md in every user-controlled field. */
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
#include <unistd.h>

#include "common/util.h"
#include "reports/gnuplot.h"
#include "reports/report.h"
#include "reports/report_charts.h"
#include "reports/report_write.h"
#include "tests/unit/report_fixture.h"
#include "common/banned.h"

/* keys: sweep.objective.metric */
static void test_model_best_and_metrics(void **state)
{
	(void)state;
	struct report *r = fixture_report(false);
	assert_int_equal(r->n_runs, 8);
	assert_int_equal(r->n_params, 3);
	assert_int_equal(r->n_metrics, 3);
	assert_string_equal(r->metrics[0], "test.exact_match");
	/* em = 0.35 + 0.1a + 0.08b + 0.02s: the best is a=1, b=1, s=1 -> run 7 */
	assert_int_equal(report_best_run(r), 7);
	/* minimising a loss objective picks a run with a = 1 */
	free(r->objective);
	r->objective = ft_strdup("test.loss");
	r->maximize = false;
	long b = report_best_run(r);
	assert_true(b >= 4);
	assert_string_equal(r->runs[b].param_values[0], "8");
	/* without an objective: the first metric, maximised (not a loss) */
	free(r->objective);
	r->objective = NULL;
	r->objective_set = false;
	assert_int_equal(report_best_run(r), 7);
	assert_true(report_param_is_seed("seed"));
	assert_true(report_param_is_seed("data.validation.seed"));
	assert_false(report_param_is_seed("seedling"));
	char tok[80];
	report_run_token(tok, sizeof(tok), r, 2);
	assert_string_equal(tok, "r02");
	report_free(r);
}

static void test_param_points_over_seeds(void **state)
{
	(void)state;
	struct report *r = fixture_report(false);
	const char *labels[8];
	double mean[8], lo[8], hi[8];
	size_t count[8];
	/* method.rank (p 0) against test.exact_match (m 0), runs like run 0 (lr 1e-4):
	 * rank 4: seeds 0.35, 0.37; rank 8: 0.45, 0.47 */
	size_t n = report_param_points(r, 0, 0, 0, labels, mean, lo, hi, count, 8);
	assert_int_equal(n, 2);
	assert_string_equal(labels[0], "4");
	assert_int_equal(count[0], 2);
	assert_true(fabs(mean[0] - 0.36) < 1e-12);
	assert_true(fabs(lo[0] - 0.35) < 1e-12 && fabs(hi[0] - 0.37) < 1e-12);
	assert_int_equal(count[1], 1); /* run 5 (rank 8, lr 1e-4, seed 2) failed */
	/* rank 8 with lr 3e-4: both seeds */
	n = report_param_points(r, 0, 0, 2, labels, mean, lo, hi, count, 8);
	assert_int_equal(n, 2);
	assert_int_equal(count[1], 2);
	assert_true(fabs(mean[1] - 0.54) < 1e-12);
	report_free(r);
}

static void test_config_diff(void **state)
{
	(void)state;
	const char *cfgs[3] = {"{\"a\":{\"b\":1,\"c\":\"x\"},\"d\":[1,2]}",
			       "{\"a\":{\"b\":2,\"c\":\"x\"},\"d\":[1,2],\"e\":true}", NULL};
	struct report_diff diff;
	struct diag d;
	diag_init(&d);
	assert_int_equal(report_config_diff(&diff, cfgs, 3, &d), 0);
	assert_int_equal(diff.n_keys, 2);
	assert_string_equal(diff.keys[0], "a.b");
	assert_string_equal(diff.values[0], "1");
	assert_string_equal(diff.values[1], "2");
	assert_string_equal(diff.keys[1], "e");
	assert_string_equal(diff.values[3], "");
	assert_string_equal(diff.values[4], "true");
	report_diff_free(&diff);
	const char *bad[2] = {"{", "{}"};
	assert_int_equal(report_config_diff(&diff, bad, 2, &d), FT_EINVAL);
	assert_non_null(strstr(d.text, "not JSON"));
}

static void test_escapes(void **state)
{
	(void)state;
	struct strbuf s = {0};
	assert_int_equal(gnuplot_quote(&s, "a'; system(\"touch x\"); '\n`b`\x7f", 0), 0);
	assert_string_equal(s.buf, "'a''; system(\"touch x\"); ''`b`'");
	s.len = 0;
	assert_int_equal(gnuplot_quote(&s, "h\xc3\xa9llo", 2), 0); /* never split "é" */
	assert_string_equal(s.buf, "'h...'");
	strbuf_free(&s);
	assert_int_equal(html_escape(&s, "<a href=\"x\">'&'</a>\x01"), 0);
	assert_string_equal(s.buf, "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
	strbuf_free(&s);
	assert_int_equal(md_escape(&s, "a|b\n*c* <d>", 0), 0);
	assert_string_equal(s.buf, "a\\|b<br>\\*c\\* &lt;d&gt;");
	strbuf_free(&s);
}

static void test_gnuplot_missing_and_timeout(void **state)
{
	(void)state;
	char *dir = fixture_tmpdir();
	struct strbuf g = {0};
	assert_int_equal(strbuf_puts(&g, "set print '-'\nprint 1\n"), 0);
	char *script = path_join(dir, "s.gp");
	struct diag d;
	diag_init(&d);
	assert_int_equal(file_write_atomic(script, g.buf, g.len, &d), 0);
	setenv("FTLAB_GNUPLOT", "/nonexistent/gnuplot", 1);
	assert_int_equal(gnuplot_run(dir, "s.gp", 10, &d), FT_EUNSUPP);
	assert_non_null(strstr(d.hint, "gnuplot-nox"));
	/* POSIX lets posix_spawn succeed and the child exit 127 when the exec fails (glibc
	 * under valgrind does): a silent exit status 127 is "not found" as well */
	char *fake = path_join(dir, "fake-gnuplot");
	assert_int_equal(file_write_atomic(fake, "#!/bin/sh\nexit 127\n", 19, &d), 0);
	assert_int_equal(chmod(fake, 0755), 0);
	setenv("FTLAB_GNUPLOT", fake, 1);
	diag_init(&d);
	assert_int_equal(gnuplot_run(dir, "s.gp", 10, &d), FT_EUNSUPP);
	assert_non_null(strstr(d.text, "gnuplot not found"));
	free(fake);
	unsetenv("FTLAB_GNUPLOT");
	/* a script that fails: the message carries gnuplot's stderr */
	diag_init(&d);
	g.len = 0;
	assert_int_equal(strbuf_puts(&g, "plot 'no-such-file.tsv'\n"), 0);
	assert_int_equal(file_write_atomic(script, g.buf, g.len, &d), 0);
	assert_int_equal(gnuplot_run(dir, "s.gp", 10, &d), FT_EIO);
	assert_non_null(strstr(d.text, "no-such-file"));
	/* a script that hangs is stopped at the timeout */
	diag_init(&d);
	g.len = 0;
	assert_int_equal(strbuf_puts(&g, "pause 30\n"), 0);
	assert_int_equal(file_write_atomic(script, g.buf, g.len, &d), 0);
	double t0 = time_monotonic();
	assert_int_equal(gnuplot_run(dir, "s.gp", 0.5, &d), FT_EIO);
	assert_true(time_monotonic() - t0 < 10);
	assert_non_null(strstr(d.text, "longer than"));
	strbuf_free(&g);
	free(script);
	assert_int_equal(dir_remove_all(dir), 0);
	free(dir);
}

static void check_report_dir(const char *dir, bool evil)
{
	char *html = fixture_slurp(dir, "index.html");
	char *md = fixture_slurp(dir, "report.md");
	/* every section is present */
	const char *ids[] = {"id=\"provenance\"", "id=\"runs\"", "id=\"base-vs-tuned\"",
			     "id=\"curves\"", "id=\"params\"", "id=\"predictions\"",
			     "id=\"config-diff\"", "id=\"failed\""};
	for (size_t i = 0; i < FT_ARRAY_LEN(ids); i++)
		assert_non_null(strstr(html, ids[i]));
	assert_non_null(strstr(html, "<svg"));
	assert_non_null(strstr(html, "fig-results_0"));
	assert_non_null(strstr(html, "fig-delta_0"));
	assert_non_null(strstr(html, "fig-loss"));
	assert_non_null(strstr(html, "fig-param_"));
	assert_non_null(strstr(html, "★ best"));
	assert_non_null(strstr(html, "dirty"));
	/* no external resources */
	assert_null(strstr(html, "src=\"http"));
	assert_null(strstr(html, "href=\"http"));
	assert_null(strstr(html, "<script"));
	assert_null(strstr(html, "<link"));
	assert_non_null(strstr(md, "charts/results_0.png"));
	assert_non_null(strstr(md, "## Runs"));
	/* one base model: no base-model comparison */
	assert_null(strstr(html, "id=\"bases\""));
	assert_null(strstr(md, "## Base models"));
	char *png = path_join(dir, "charts/results_0.png");
	struct stat st;
	assert_int_equal(stat(png, &st), 0);
	assert_true(st.st_size > 1000);
	free(png);
	char *tsv = fixture_slurp(dir, "data/results_0.tsv");
	assert_non_null(strstr(tsv, "test.exact_match"));
	free(tsv);
	char *gp = fixture_slurp(dir, "charts/loss.gp");
	assert_non_null(strstr(gp, "set terminal svg"));
	free(gp);
	if (evil) {
		/* the text shows, escaped, and nothing ran */
		assert_non_null(strstr(html, "&lt;script&gt;alert(1)&lt;/script&gt;"));
		assert_non_null(strstr(html, "a&#39;; system(&quot;touch x&quot;); &#39;"));
		assert_non_null(strstr(html, "`touch x`"));
		assert_non_null(strstr(html, "&lt;b&gt;x&lt;/b&gt;1"));
		assert_non_null(strstr(md, "&lt;script&gt;"));
		char *x = path_join(dir, "x");
		assert_false(path_exists(x));
		free(x);
		/* the run id with a slash never became a file name */
		char *gpl = fixture_slurp(dir, "charts/loss.gp");
		assert_null(strstr(gpl, "data/loss_r03"));
		assert_non_null(strstr(gpl, "data/loss_run3_0.tsv"));
		/* user text in scripts only inside single quotes, quotes doubled */
		assert_non_null(strstr(gpl, "a''; system(\"touch x\"); ''"));
		assert_non_null(strstr(gpl, " lr=`touch x`"));
		free(gpl);
	}
	free(html);
	free(md);
}

static void test_write_report(void **state)
{
	(void)state;
	char *dir = fixture_tmpdir();
	struct report *r = fixture_report(false);
	struct diag d;
	diag_init(&d);
	int rc = report_write(r, dir, 30, &d);
	if (rc)
		diag_print(&d, stderr);
	assert_int_equal(rc, 0);
	check_report_dir(dir, false);
	report_free(r);
	assert_int_equal(dir_remove_all(dir), 0);
	free(dir);
}

static void test_write_report_injection(void **state)
{
	(void)state;
	char *dir = fixture_tmpdir();
	char *cwd = getcwd(NULL, 0);
	assert_int_equal(chdir(dir), 0); /* a relative `touch x` would land here too */
	struct report *r = fixture_report(true);
	/* a baseline whose label is hostile as well */
	r->baseline = fixture_report(true);
	assert_int_equal(report_set_text(&r->baseline_label, FIXTURE_INJECT[2]), 0);
	struct diag d;
	diag_init(&d);
	int rc = report_write(r, dir, 30, &d);
	if (rc)
		diag_print(&d, stderr);
	assert_int_equal(rc, 0);
	check_report_dir(dir, true);
	char *html = fixture_slurp(dir, "index.html");
	assert_non_null(strstr(html, "tr class=\"baseline\""));
	free(html);
	assert_false(path_exists("x"));
	/* scripts/test-browser.sh: the hostile report goes through the browser check too */
	const char *keep = getenv("FTLAB_KEEP_REPORT");
	if (keep) {
		char *kept = path_join(keep, "injection-report");
		diag_init(&d);
		assert_int_equal(report_write(r, kept, 30, &d), 0);
		assert_false(path_exists("x"));
		free(kept);
	}
	assert_int_equal(chdir(cwd), 0);
	free(cwd);
	report_free(r);
	assert_int_equal(dir_remove_all(dir), 0);
	free(dir);
}

/* Runs stopped by early termination: their own section with the verdict and the steps the
 * sweep saved; they are neither failed nor the best run. */
static void test_stopped_runs(void **state)
{
	(void)state;
	char *dir = fixture_tmpdir();
	struct report *r = fixture_report(false);
	long best_before = report_best_run(r);
	for (size_t i = 0; i < r->n_runs; i++) {
		r->runs[i].step = 100;
		r->runs[i].total_steps = i == 5 ? 0 : 100; /* run 5 failed: no plan known */
	}
	struct report_run *st = &r->runs[2];
	free(st->status);
	st->status = ft_strdup("stopped");
	st->step = 10;
	assert_int_equal(report_set_text(&st->stopped, "band 3 of validation.loss: 2.5, "
					 "threshold 1.9 (4 runs)"), 0);
	size_t n;
	int64_t saved, planned;
	report_stopped_steps(r, &n, &saved, &planned);
	assert_int_equal(n, 1);
	assert_int_equal(saved, 90);
	assert_int_equal(planned, 700); /* 7 runs with a known plan of 100 steps */
	assert_false(report_run_failed(st));
	assert_true(report_run_failed(&r->runs[5]));
	if (best_before != 2)
		assert_int_equal(report_best_run(r), best_before);
	struct diag d;
	diag_init(&d);
	assert_int_equal(report_write(r, dir, 30, &d), 0);
	char *md = fixture_slurp(dir, "report.md"), *html = fixture_slurp(dir, "index.html");
	assert_non_null(strstr(md, "## Stopped early"));
	assert_non_null(strstr(md, "Early termination stopped 1 of 8 runs and saved 90 of 700 "
			       "training steps (13%)."));
	assert_non_null(strstr(md, "| 10 of 100 | band 3 of validation.loss: 2.5, threshold 1.9"));
	assert_non_null(strstr(md, "(1 failed, 1 stopped early)"));
	assert_non_null(strstr(html, "<h2 id=\"stopped\">Stopped early</h2>"));
	/* The failed-runs tables list run 5 only. */
	const char *failed = strstr(md, "## Failed runs");
	assert_non_null(failed);
	assert_null(strstr(failed, r->runs[2].id));
	free(md);
	free(html);
	report_free(r);
	assert_int_equal(dir_remove_all(dir), 0);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_model_best_and_metrics),
		cmocka_unit_test(test_param_points_over_seeds),
		cmocka_unit_test(test_config_diff),
		cmocka_unit_test(test_escapes),
		cmocka_unit_test(test_gnuplot_missing_and_timeout),
		cmocka_unit_test(test_write_report),
		cmocka_unit_test(test_write_report_injection),
		cmocka_unit_test(test_stopped_runs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
