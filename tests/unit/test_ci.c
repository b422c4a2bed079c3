/* `ftlab ci` end to end on a store filled by a real training sweep (report_fixture.c):
 * gates passing and failing (exit 0 / 1), the numbers on stdout, JUnit XML validated by
 * xmllint against tests/junit/junit.xsd, the Markdown summary, vs: baseline gates with
 * and without --baseline, and bad input (exit 2). Uses --no-run: the runs are already in
 * the store. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/util.h"
#include "runner/identity.h"
#include "store/store.h"
#include "runner/sweep.h"
#include "schema/schema.h"
#include "tests/unit/report_fixture.h"
#include "common/banned.h"

static char *g_dir; /* experiment files and the workspace .ftlab */

static void write_file(const char *rel, const char *text)
{
	char *path = path_join(g_dir, rel);
	struct diag d;
	diag_init(&d);
	assert_int_equal(file_write_atomic(path, text, strlen(text), &d), 0);
	free(path);
}

/* The sweep the fixture records (lr-major, seed-minor), so the plan's run ids can be
 * given to the fixture and `ftlab ci --no-run` finds the runs of its plan. */
static const char *HEAD =
	"model:\n  base: m.gguf\n"
	"data:\n  format: text\n  train: train.jsonl\n  test: test.jsonl\n"
	"eval:\n  splits: [test]\n  metrics: [loss, exact_match]\n"
	"sweep:\n  parameters:\n    train.optimizer.lr: [0.01, 0.05, 0.2]\n    seed: [1, 2]\n";

static void write_exp(const char *file, const char *name, const char *gates)
{
	struct strbuf s = {0};
	assert_int_equal(strbuf_printf(&s, "name: %s\n%s%s", name, HEAD, gates), 0);
	write_file(file, s.buf);
	strbuf_free(&s);
}

static int setup(void **state)
{
	(void)state;
	g_dir = fixture_tmpdir();
	write_file("m.gguf", "GGUF");
	write_file("train.jsonl", "{\"text\": \"a\"}\n");
	write_file("test.jsonl", "{\"text\": \"b\"}\n");
	char *ws = path_join(g_dir, ".ftlab");
	struct store *s = NULL;
	struct diag d;
	diag_init(&d);
	assert_int_equal(store_open(&s, ws, true, &d), 0);
	const char *names[3] = {"linreg", "linreg-bad", "linreg-old"};
	const char *descs[3] = {"all runs finish", "one run fails", "last night"};
	const char *commits[3] = {"1111111111111111111111111111111111111111",
				  "1111111111111111111111111111111111111111",
				  "2222222222222222222222222222222222222222"};
	for (int x = 0; x < 3; x++) {
		/* the plan's run ids of an experiment file with this name */
		write_exp("plan.yaml", names[x], "");
		char *plan_path = path_join(g_dir, "plan.yaml");
		struct experiment *e = NULL;
		struct sweep_plan *plan = NULL;
		assert_int_equal(experiment_load(&e, plan_path, NULL, 0, &d), 0);
		assert_int_equal(sweep_expand(&plan, e, 0, &d), 0);
		assert_int_equal(plan->n, 6);
		char ids[6][13];
		const char *idp[6];
		for (size_t i = 0; i < 6; i++) {
			char identity[65];
			assert_int_equal(run_identity(identity, plan->points[i].cfg, &d), 0);
			run_id_from_identity(ids[i], identity);
			idp[i] = ids[i];
			/* lr-major, seed-minor, as the fixture records them */
			assert_non_null(strstr(plan->points[i].params_json,
					       i % 2 ? "\"seed\":2" : "\"seed\":1"));
		}
		sweep_plan_free(plan);
		experiment_free(e);
		free(plan_path);
		fixture_store_experiment_ids(s, names[x], descs[x], commits[x], 'a', idp, x == 1);
	}
	store_close(s);
	free(ws);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	assert_int_equal(dir_remove_all(g_dir), 0);
	free(g_dir);
	return 0;
}

/* Runs `ftlab CMD ARGS...` in g_dir; stdout and stderr into the given buffers. */
static int ftlab(const char *cmd, const char *const *args, char *out, size_t out_n, char *err,
		 size_t err_n)
{
	const char *bin = getenv("FTLAB_BIN");
	assert_non_null(bin);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (chdir(g_dir) != 0)
			_exit(126);
		if (!freopen(".stdout", "w", stdout) || !freopen(".stderr", "w", stderr))
			_exit(126);
		const char *argv[32] = {bin, cmd};
		int n = 2;
		for (int i = 0; args[i] && n < 31; i++)
			argv[n++] = args[i];
		/* absolute: the runner hands the run directory to exec trainers, which run in
		 * the experiment's directory (a relative workspace fails there; reported) */
		char *ws = path_join(g_dir, ".ftlab");
		setenv("FTLAB_WORKSPACE", ws, 1);
		execv(bin, (char *const *)argv);
		_exit(127);
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	char *o = fixture_slurp(g_dir, ".stdout"), *e = fixture_slurp(g_dir, ".stderr");
	snprintf(out, out_n, "%s", o);
	snprintf(err, err_n, "%s", e);
	free(o);
	free(e);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static int ci(const char *const *args, char *out, size_t out_n, char *err, size_t err_n)
{
	return ftlab("ci", args, out, out_n, err, err_n);
}

static int xmllint(const char *file)
{
	char *xsd = path_join(getenv("FTLAB_ROOT") ? getenv("FTLAB_ROOT") : ".",
			      "tests/junit/junit.xsd");
	char *path = path_join(g_dir, file);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		execlp("xmllint", "xmllint", "--noout", "--schema", xsd, path, (char *)NULL);
		_exit(127);
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	free(xsd);
	free(path);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* keys: gates gates[].metric gates[].max gates[].vs gates[].min_delta */
static void test_ci_pass(void **state)
{
	(void)state;
	/* the best run (lowest test loss) fits the line well after 60 SGD steps */
	write_exp("pass.yaml", "linreg",
		  "gates:\n"
		  "  - {metric: test.loss, max: 0.5}\n"
		  "  - {metric: test.loss, vs: base, min_delta: -100}\n");
	char out[8192], err[4096];
	const char *args[] = {"pass.yaml", "--no-run", "--junit", "junit.xml", "--markdown",
			      "summary.md", NULL};
	int rc = ci(args, out, sizeof(out), err, sizeof(err));
	if (rc != 0)
		fprintf(stderr, "stdout: %s\nstderr: %s\n", out, err);
	assert_int_equal(rc, 0);
	assert_non_null(strstr(out, "ftlab ci linreg: 2 gates, 0 failed; 6 runs, 0 failed"));
	assert_non_null(strstr(out, "PASS  test.loss max 0.5: test.loss = "));
	assert_int_equal(xmllint("junit.xml"), 0);
	char *xml = fixture_slurp(g_dir, "junit.xml");
	assert_non_null(strstr(xml, "tests=\"8\" failures=\"0\" errors=\"0\""));
	free(xml);
	char *md = fixture_slurp(g_dir, "summary.md");
	assert_non_null(strstr(md, "— passed"));
	free(md);
}

/* keys: gates gates[].min */
static void test_ci_fail(void **state)
{
	(void)state;
	/* an exact-match bar no one-decimal linear fit reaches on noisy data */
	write_exp("fail.yaml", "linreg",
		  "gates:\n"
		  "  - {metric: test.exact_match, min: 0.99}\n"
		  "  - {metric: test.loss, max: 0.5}\n");
	char out[8192], err[4096];
	const char *args[] = {"fail.yaml", "--no-run", "--junit=j2.xml", NULL};
	assert_int_equal(ci(args, out, sizeof(out), err, sizeof(err)), 1);
	assert_non_null(strstr(out, "FAIL  test.exact_match min 0.99: test.exact_match = "));
	assert_non_null(strstr(out, "< 0.99"));
	assert_int_equal(xmllint("j2.xml"), 0);
	char *xml = fixture_slurp(g_dir, "j2.xml");
	assert_non_null(strstr(xml, "<failure message=\"test.exact_match = "));
	free(xml);
	/* a failed run fails ci even when every gate passes */
	write_exp("bad.yaml", "linreg-bad", "gates:\n  - {metric: test.loss, max: 100}\n");
	const char *bad[] = {"bad.yaml", "--no-run", "--junit", "j3.xml", NULL};
	assert_int_equal(ci(bad, out, sizeof(out), err, sizeof(err)), 1);
	assert_non_null(strstr(out, "6 runs, 1 failed"));
	assert_int_equal(xmllint("j3.xml"), 0);
	xml = fixture_slurp(g_dir, "j3.xml");
	assert_non_null(strstr(xml, "loss is NaN at step 30"));
	free(xml);
}

/* keys: gates[].vs gates[].max_regression */
static void test_ci_baseline(void **state)
{
	(void)state;
	write_exp("bl.yaml", "linreg",
		  "gates:\n"
		  "  - {metric: test.loss, vs: baseline, max_regression: 0.05}\n");
	char out[8192], err[4096];
	/* no --baseline: exit 2 naming the file and the gate's line, before running */
	const char *none[] = {"bl.yaml", "--no-run", NULL};
	assert_int_equal(ci(none, out, sizeof(out), err, sizeof(err)), 2);
	assert_non_null(strstr(err, "bl.yaml:16:"));
	assert_non_null(strstr(err, "--baseline"));
	/* an unknown baseline: exit 2 */
	const char *unknown[] = {"bl.yaml", "--no-run", "--baseline", "linreg-nope", NULL};
	assert_int_equal(ci(unknown, out, sizeof(out), err, sizeof(err)), 2);
	assert_non_null(strstr(err, "linreg-nope"));
	/* the same sweep and data last night: no regression */
	const char *ok[] = {"bl.yaml", "--no-run", "--baseline", "linreg-old@2222", "--markdown",
			    "bl.md", NULL};
	int rc = ci(ok, out, sizeof(out), err, sizeof(err));
	if (rc != 0)
		fprintf(stderr, "stdout: %s\nstderr: %s\n", out, err);
	assert_int_equal(rc, 0);
	assert_non_null(strstr(out, "vs baseline"));
	assert_non_null(strstr(out, "regression +0 <= max_regression 0.05"));
	char *md = fixture_slurp(g_dir, "bl.md");
	assert_non_null(strstr(md, "baseline linreg-old\\@2222"));
	free(md);
}

static void test_ci_bad_input(void **state)
{
	(void)state;
	char out[8192], err[4096];
	const char *missing[] = {"nope.yaml", "--no-run", NULL};
	assert_int_equal(ci(missing, out, sizeof(out), err, sizeof(err)), 2);
	assert_non_null(strstr(err, "nope.yaml"));
	const char *badopt[] = {"pass.yaml", "--junt", "x.xml", NULL};
	assert_int_equal(ci(badopt, out, sizeof(out), err, sizeof(err)), 2);
	assert_non_null(strstr(err, "did you mean '--junit'"));
	const char *nofile[] = {NULL};
	assert_int_equal(ci(nofile, out, sizeof(out), err, sizeof(err)), 2);
	const char *nojunit[] = {"pass.yaml", "--junit", NULL};
	assert_int_equal(ci(nojunit, out, sizeof(out), err, sizeof(err)), 2);
	/* an invalid experiment file: exit 2 with its position */
	write_file("invalid.yaml", "name: linreg\nmodel:\n  bse: m.gguf\n");
	const char *invalid[] = {"invalid.yaml", "--no-run", NULL};
	assert_int_equal(ci(invalid, out, sizeof(out), err, sizeof(err)), 2);
	assert_non_null(strstr(err, "invalid.yaml:3:"));
	/* --no-run with a sweep whose runs are not in the store: exit 2 */
	write_exp("other.yaml", "linreg", "");
	char *o = fixture_slurp(g_dir, "other.yaml");
	char *lr = strstr(o, "[0.01, 0.05, 0.2]");
	assert_non_null(lr);
	memcpy(lr, "[0.02, 0.06, 0.3]", 17);
	write_file("other.yaml", o);
	free(o);
	const char *other[] = {"other.yaml", "--no-run", NULL};
	assert_int_equal(ci(other, out, sizeof(out), err, sizeof(err)), 2);
	assert_non_null(strstr(err, "none of the 6 runs of this sweep is in the store"));
	assert_non_null(strstr(err, "leave out --no-run"));
	/* the JUnit file cannot be written */
	const char *unwritable[] = {"pass.yaml", "--no-run", "--junit", "no/such/dir/j.xml", NULL};
	assert_int_not_equal(ci(unwritable, out, sizeof(out), err, sizeof(err)), 0);
	assert_non_null(strstr(err, "j.xml"));
}

/* A real sweep: experiments/exec-example (a Python trainer, no packages) copied outside
 * any git repository, with gates appended and injection strings in the description; run
 * by `ftlab ci` itself, then again (cached) with a failing gate, then reported. */
static void test_ci_real_runs(void **state)
{
	(void)state;
	const char *root = getenv("FTLAB_ROOT");
	assert_non_null(root);
	char *src = path_join(root, "experiments/exec-example");
	char *dst = path_join(g_dir, "exec");
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		execlp("cp", "cp", "-r", src, dst, (char *)NULL);
		_exit(127);
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	char *yaml = fixture_slurp(dst, "exec-example.yaml");
	struct strbuf s = {0};
	assert_int_equal(strbuf_printf(&s, "%s\ngates:\n"
				       "  - {metric: test.exact_match, min: 0.8}\n"
				       "  - {metric: test.exact_match, vs: base, min_delta: 0.2}\n"
				       "  - {metric: test.loss, max: 0.5}\n", yaml), 0);
	write_file("exec/pass.yaml", s.buf);
	s.len = 0;
	assert_int_equal(strbuf_printf(&s, "%s\ngates:\n  - {metric: test.exact_match, min: 0.99}\n",
				       yaml), 0);
	write_file("exec/fail.yaml", s.buf);
	strbuf_free(&s);
	free(yaml);
	char out[16384], err[16384];
	const char *desc = "-sdescription=a'; system(\"touch x\"); ' `touch x` @x <x <b>";
	const char *pass[] = {"exec/pass.yaml", desc, "--junit", "real.xml", "--markdown",
			      "real.md", NULL};
	int rc = ci(pass, out, sizeof(out), err, sizeof(err));
	if (rc != 0)
		fprintf(stderr, "stdout: %s\nstderr: %s\n", out, err);
	assert_int_equal(rc, 0);
	assert_non_null(strstr(err, "6 finished, 0 cached, 0 failed"));
	assert_non_null(strstr(out, "ftlab ci exec-example: 3 gates, 0 failed; 6 runs, 0 failed"));
	assert_non_null(strstr(out, "PASS  test.exact_match vs base: min_delta 0.2: fine-tuned "));
	assert_int_equal(xmllint("real.xml"), 0);
	/* the same runs again, reused; a gate no run meets fails with exit 1 */
	const char *fail[] = {"exec/fail.yaml", desc, "--junit", "real2.xml", NULL};
	assert_int_equal(ci(fail, out, sizeof(out), err, sizeof(err)), 1);
	assert_non_null(strstr(err, "0 finished, 6 cached, 0 failed"));
	assert_non_null(strstr(out, "FAIL  test.exact_match min 0.99: test.exact_match = "));
	assert_int_equal(xmllint("real2.xml"), 0);
	char *xml = fixture_slurp(g_dir, "real2.xml");
	assert_non_null(strstr(xml, "failures=\"1\""));
	free(xml);
	/* the report of the real runs, with the hostile description in it */
	const char *rep[] = {"exec-example", "-o", "real-report", NULL};
	assert_int_equal(ftlab("report", rep, out, sizeof(out), err, sizeof(err)), 0);
	char *rdir = path_join(g_dir, "real-report");
	char *html = fixture_slurp(rdir, "index.html");
	assert_non_null(strstr(html, "a&#39;; system(&quot;touch x&quot;); &#39; `touch x` @x "
				     "&lt;x &lt;b&gt;"));
	assert_non_null(strstr(html, "fig-results_0"));
	assert_non_null(strstr(html, "fig-delta_0"));
	assert_non_null(strstr(html, "fig-loss"));
	assert_non_null(strstr(html, "fig-param_"));
	free(html);
	free(rdir);
	/* nothing ran from the hostile description, here or in the trainer's directory */
	char *x1 = path_join(g_dir, "x"), *x2 = path_join(dst, "x");
	assert_false(path_exists(x1));
	assert_false(path_exists(x2));
	free(x1);
	free(x2);
	free(src);
	free(dst);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ci_pass),
		cmocka_unit_test(test_ci_fail),
		cmocka_unit_test(test_ci_baseline),
		cmocka_unit_test(test_ci_bad_input),
		cmocka_unit_test(test_ci_real_runs),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
