/* Unit tests for reports/gates.c: each gate kind passing and failing with the numbers in the
 * message, the JUnit XML validated by xmllint against tests/junit/junit.xsd (including
 * hostile text and invalid UTF-8), and the CI Markdown summary. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/util.h"
#include "reports/gates.h"
#include "tests/unit/report_fixture.h"
#include "common/banned.h"

static struct config_gate gate_abs(const char *metric, bool has_min, double min, bool has_max,
				   double max)
{
	struct config_gate g = {0};
	g.metric = (char *)metric;
	g.vs = GATE_ABSOLUTE;
	g.has_min = has_min;
	g.min = min;
	g.has_max = has_max;
	g.max = max;
	return g;
}

static struct config_gate gate_base(const char *metric, double min_delta)
{
	struct config_gate g = {0};
	g.metric = (char *)metric;
	g.vs = GATE_VS_BASE;
	g.has_min_delta = true;
	g.min_delta = min_delta;
	return g;
}

static struct config_gate gate_baseline(const char *metric, double max_regression)
{
	struct config_gate g = {0};
	g.metric = (char *)metric;
	g.vs = GATE_VS_BASELINE;
	g.has_max_regression = true;
	g.max_regression = max_regression;
	return g;
}

static struct gate_result eval1(const struct report *r, struct config_gate g)
{
	struct gate_result *res = NULL;
	struct diag d;
	diag_init(&d);
	assert_int_equal(gates_evaluate(&res, &g, 1, r, &d), 0);
	struct gate_result out = res[0];
	out.gate = NULL;
	free(res);
	return out;
}

static void test_gate_absolute(void **state)
{
	(void)state;
	struct report *r = fixture_report(false);
	/* best run r07: test.exact_match 0.55 [0.49, 0.61], base 0.21, delta 0.34 */
	struct gate_result g = eval1(r, gate_abs("test.exact_match", true, 0.5, false, 0));
	assert_int_equal(g.outcome, GATE_PASS);
	assert_string_equal(g.run_id, "r07");
	g = eval1(r, gate_abs("test.exact_match", true, 0.8, false, 0));
	assert_int_equal(g.outcome, GATE_FAIL);
	assert_non_null(strstr(g.message, "test.exact_match = 0.55"));
	assert_non_null(strstr(g.message, "< 0.8"));
	assert_non_null(strstr(g.message, "CI [0.49, 0.61]"));
	assert_string_equal(g.name, "test.exact_match min 0.8");
	g = eval1(r, gate_abs("test.loss", false, 0, true, 0.95));
	assert_int_equal(g.outcome, GATE_PASS);
	g = eval1(r, gate_abs("test.loss", false, 0, true, 0.5));
	assert_int_equal(g.outcome, GATE_FAIL);
	assert_non_null(strstr(g.message, "> 0.5"));
	g = eval1(r, gate_abs("test.bleu", true, 0.1, false, 0));
	assert_int_equal(g.outcome, GATE_FAIL);
	assert_non_null(strstr(g.message, "not recorded"));
	/* no finished run: every gate fails */
	for (size_t i = 0; i < r->n_runs; i++)
		assert_int_equal(report_set_text(&r->runs[i].status, "failed"), 0);
	g = eval1(r, gate_abs("test.exact_match", true, 0.1, false, 0));
	assert_int_equal(g.outcome, GATE_FAIL);
	assert_non_null(strstr(g.message, "no finished run"));
	report_free(r);
}

static void test_gate_vs_base(void **state)
{
	(void)state;
	struct report *r = fixture_report(false);
	struct gate_result g = eval1(r, gate_base("test.exact_match", 0.2));
	assert_int_equal(g.outcome, GATE_PASS);
	assert_true(fabs(g.value - 0.34) < 1e-9);
	g = eval1(r, gate_base("test.exact_match", 0.4));
	assert_int_equal(g.outcome, GATE_FAIL);
	assert_non_null(strstr(g.message, "fine-tuned 0.55 - base 0.21 = +0.34"));
	assert_non_null(strstr(g.message, "< min_delta 0.4"));
	/* validation.loss has no base result */
	g = eval1(r, gate_base("validation.loss", 0.0));
	assert_int_equal(g.outcome, GATE_FAIL);
	assert_non_null(strstr(g.message, "compare_base"));
	report_free(r);
}

static void test_gate_vs_baseline(void **state)
{
	(void)state;
	struct report *r = fixture_report(false);
	struct gate_result g = eval1(r, gate_baseline("test.exact_match", 0.02));
	assert_int_equal(g.outcome, GATE_ERROR);
	assert_non_null(strstr(g.message, "--baseline"));
	r->baseline = fixture_report(false);
	assert_int_equal(report_set_text(&r->baseline_label, "nightly@abc123"), 0);
	/* last night's best was 0.60: today's 0.55 regresses by 0.05 */
	r->baseline->runs[7].tuned[0].v = 0.60;
	g = eval1(r, gate_baseline("test.exact_match", 0.02));
	assert_int_equal(g.outcome, GATE_FAIL);
	assert_true(fabs(g.value - 0.05) < 1e-9);
	assert_non_null(strstr(g.message, "regression +0.05 > max_regression 0.02"));
	g = eval1(r, gate_baseline("test.exact_match", 0.1));
	assert_int_equal(g.outcome, GATE_PASS);
	/* test.loss is lower-is-better: a baseline loss of 0.8 against today's 0.9 regresses */
	long m = report_metric_find(r->baseline, "test.loss");
	assert_true(m >= 0);
	r->baseline->runs[7].tuned[m].v = 0.8;
	g = eval1(r, gate_baseline("test.loss", 0.05));
	assert_int_equal(g.outcome, GATE_FAIL);
	assert_non_null(strstr(g.message, "lower is better"));
	r->baseline->runs[7].tuned[m].v = 1.2; /* today is better */
	g = eval1(r, gate_baseline("test.loss", 0.0));
	assert_int_equal(g.outcome, GATE_PASS);
	/* the baseline lacks a metric today's run has: cannot compare */
	m = report_metric_find(r->baseline, "validation.loss");
	r->baseline->runs[7].tuned[m].present = false;
	g = eval1(r, gate_baseline("validation.loss", 0.0));
	assert_int_equal(g.outcome, GATE_ERROR);
	assert_non_null(strstr(g.message, "nightly@abc123 has no validation.loss"));
	report_free(r);
}

/* xmllint --noout --schema XSD FILE; returns its exit status. */
static int xmllint(const char *xsd, const char *file)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		execlp("xmllint", "xmllint", "--noout", "--schema", xsd, file, (char *)NULL);
		_exit(127);
	}
	int st = 0;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void write_junit_for(struct report *r, const char *dir, char **out_path)
{
	struct config_gate gates[4] = {
		gate_abs("test.exact_match", true, 0.8, false, 0),
		gate_base("test.exact_match", 0.2),
		gate_baseline("test.loss", 0.02),
		gate_abs("test.loss", false, 0, true, 2.0),
	};
	struct gate_result *res = NULL;
	struct diag d;
	diag_init(&d);
	assert_int_equal(gates_evaluate(&res, gates, 4, r, &d), 0);
	size_t nf, ne;
	gates_count(res, 4, &nf, &ne);
	assert_int_equal(nf, 1);
	assert_int_equal(ne, 1);
	*out_path = path_join(dir, "junit.xml");
	assert_int_equal(gates_write_junit(*out_path, r, res, 4, 12.5, &d), 0);
	char *md = path_join(dir, "summary.md");
	assert_int_equal(gates_write_markdown(md, r, res, 4, &d), 0);
	free(md);
	free(res);
}

static void test_junit_validates(void **state)
{
	(void)state;
	char *xsd = path_join(getenv("FTLAB_ROOT") ? getenv("FTLAB_ROOT") : ".",
			      "tests/junit/junit.xsd");
	char *dir = fixture_tmpdir();
	struct report *r = fixture_report(false);
	char *path = NULL;
	write_junit_for(r, dir, &path);
	assert_int_equal(xmllint(xsd, path), 0);
	char *xml = fixture_slurp(dir, "junit.xml");
	assert_non_null(strstr(xml, "tests=\"12\" failures=\"2\" errors=\"1\""));
	assert_non_null(strstr(xml, "<failure message=\"test.exact_match = 0.55"));
	assert_non_null(strstr(xml, "type=\"Runfailed\">trainer exited with status 1"));
	assert_non_null(strstr(xml, "<testcase name=\"run r07 method.rank=8"));
	free(xml);
	char *md = fixture_slurp(dir, "summary.md");
	assert_non_null(strstr(md, "**failed**"));
	assert_non_null(strstr(md, "❌ fail"));
	assert_non_null(strstr(md, "⚠️ error"));
	assert_non_null(strstr(md, "| r07 ★ | finished | 0.55 |"));
	free(md);
	free(path);
	report_free(r);

	/* hostile text, a control character and invalid UTF-8 stay well-formed and valid */
	r = fixture_report(true);
	assert_int_equal(report_set_text(&r->runs[5].error, "bad \x01 byte \xff\xfe <x> ]]>"), 0);
	write_junit_for(r, dir, &path);
	assert_int_equal(xmllint(xsd, path), 0);
	xml = fixture_slurp(dir, "junit.xml");
	assert_non_null(strstr(xml, "bad ? byte \xEF\xBF\xBD\xEF\xBF\xBD &lt;x&gt; ]]&gt;"));
	assert_non_null(strstr(xml, "a&apos;; system(&quot;touch x&quot;); &apos;"));
	free(xml);

	/* the schema check can fail: a test case without a name is rejected */
	struct diag d;
	diag_init(&d);
	const char *bad = "<?xml version=\"1.0\"?><testsuites><testsuite name=\"s\" tests=\"1\">"
			  "<testcase classname=\"c\"/></testsuite></testsuites>";
	assert_int_equal(file_write_atomic(path, bad, strlen(bad), &d), 0);
	assert_int_not_equal(xmllint(xsd, path), 0);
	free(path);
	report_free(r);
	assert_int_equal(dir_remove_all(dir), 0);
	free(dir);
	free(xsd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gate_absolute),
		cmocka_unit_test(test_gate_vs_base),
		cmocka_unit_test(test_gate_vs_baseline),
		cmocka_unit_test(test_junit_validates),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
