/* report_fixture: test support shared by the report, gate and JUnit tests: a realistic
 * sweep report built through the report API (and the injection strings of RELIABILITY.md),
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

#include "common/util.h"

/* The strings RELIABILITY.md names, each trying to run `touch x` in the report directory. */
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

