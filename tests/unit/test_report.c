/* Unit tests for reports/: the data model, escaping, config diffs, the gnuplot child
 * (quoting, missing program, timeout) and whole report directories, including the gnuplot
 * and HTML injection strings of RELIABILITY.md in every user-controlled field. */
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

/* The strings RELIABILITY.md names, each trying to run `touch x` in the report directory. */
static const char *const INJECT[] = {
	"`touch x`",
	"a'; system(\"touch x\"); '",
	"ok\nsystem(\"touch x\")",
	"@x",
	"<x",
	"<script>alert(1)</script> & \"q\"",
};

static char *tmpdir(void)
{
	char tmpl[] = "/tmp/ftlab-report-XXXXXX";
	char *d = mkdtemp(tmpl);
	assert_non_null(d);
	return ft_strdup(d);
}

static char *slurp(const char *dir, const char *rel)
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
static struct report *make_report(bool evil)
{
	struct report *r = report_new(evil ? INJECT[1] : "support-lora");
	assert_non_null(r);
	assert_int_equal(report_set_text(&r->description,
					 evil ? INJECT[2] : "LoRA rank and learning-rate sweep"), 0);
	assert_int_equal(report_set_text(&r->commit, "0123456789abcdef0123456789abcdef01234567"), 0);
	assert_int_equal(report_set_text(&r->branch, evil ? INJECT[0] : "main"), 0);
	assert_int_equal(report_set_text(&r->host, evil ? INJECT[4] : "build-1"), 0);
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
				assert_int_equal(report_run_set_param(r, run, evil ? INJECT[3] : "method.rank",
								      ranks[a]), 0);
				assert_int_equal(report_run_set_param(r, run, "train.optimizer.lr",
								      evil && k == 0 ? INJECT[0] : lrs[b]), 0);
				assert_int_equal(report_run_set_param(r, run, "seed", s ? "2" : "1"), 0);
				char cfg[256];
				snprintf(cfg, sizeof(cfg), "{\"method\":{\"rank\":%s,\"type\":\"lora\"},"
					 "\"train\":{\"optimizer\":{\"lr\":%s}},\"seed\":%d,\"tag\":\"%s%d\"}",
					 ranks[a], lrs[b], s + 1, evil ? "<b>x</b>" : "t", k);
				assert_int_equal(report_set_text(&run->config_json, cfg), 0);
				if (failed) {
					assert_int_equal(report_set_text(&run->error, evil ? INJECT[5]
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
					const char *p = evil && e == 0 ? INJECT[5] : prompt;
					assert_int_equal(report_run_add_prediction(run, REPORT_BASE, "test", e, p,
						"Use the reset link.", evil ? INJECT[1] : "I am a model.", true, 0),
						0);
					assert_int_equal(report_run_add_prediction(run, REPORT_TUNED, "test", e,
						p, "Use the reset link.", evil && e == 1 ? INJECT[2]
						: "Use the reset link.", true, 1), 0);
				}
			}
	return r;
}

static void test_model_best_and_metrics(void **state)
{
	(void)state;
	struct report *r = make_report(false);
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
	struct report *r = make_report(false);
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
	char *dir = tmpdir();
	struct strbuf g = {0};
	assert_int_equal(strbuf_puts(&g, "set print '-'\nprint 1\n"), 0);
	char *script = path_join(dir, "s.gp");
	struct diag d;
	diag_init(&d);
	assert_int_equal(file_write_atomic(script, g.buf, g.len, &d), 0);
	setenv("FTLAB_GNUPLOT", "/nonexistent/gnuplot", 1);
	assert_int_equal(gnuplot_run(dir, "s.gp", 10, &d), FT_EUNSUPP);
	assert_non_null(strstr(d.hint, "gnuplot-nox"));
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
	char *html = slurp(dir, "index.html");
	char *md = slurp(dir, "report.md");
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
	char *png = path_join(dir, "charts/results_0.png");
	struct stat st;
	assert_int_equal(stat(png, &st), 0);
	assert_true(st.st_size > 1000);
	free(png);
	char *tsv = slurp(dir, "data/results_0.tsv");
	assert_non_null(strstr(tsv, "test.exact_match"));
	free(tsv);
	char *gp = slurp(dir, "charts/loss.gp");
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
		char *gpl = slurp(dir, "charts/loss.gp");
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
	char *dir = tmpdir();
	struct report *r = make_report(false);
	struct diag d;
	diag_init(&d);
	int rc = report_write(r, dir, 30, &d);
	if (rc)
		diag_print(&d, stderr);
	assert_int_equal(rc, 0);
	check_report_dir(dir, false);
	report_free(r);
	if (getenv("FTLAB_KEEP_REPORT")) /* for looking at it: scripts/test-browser.sh */
		fprintf(stderr, "report kept in %s\n", dir);
	else
		assert_int_equal(dir_remove_all(dir), 0);
	free(dir);
}

static void test_write_report_injection(void **state)
{
	(void)state;
	char *dir = tmpdir();
	char *cwd = getcwd(NULL, 0);
	assert_int_equal(chdir(dir), 0); /* a relative `touch x` would land here too */
	struct report *r = make_report(true);
	/* a baseline whose label is hostile as well */
	r->baseline = make_report(true);
	assert_int_equal(report_set_text(&r->baseline_label, INJECT[2]), 0);
	struct diag d;
	diag_init(&d);
	int rc = report_write(r, dir, 30, &d);
	if (rc)
		diag_print(&d, stderr);
	assert_int_equal(rc, 0);
	check_report_dir(dir, true);
	char *html = slurp(dir, "index.html");
	assert_non_null(strstr(html, "tr class=\"baseline\""));
	free(html);
	assert_false(path_exists("x"));
	assert_int_equal(chdir(cwd), 0);
	free(cwd);
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
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
