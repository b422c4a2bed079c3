/* The base-model comparison of a report (reports/report_bases.c) and its section in
 * index.html and report.md: per base the best run with its own untuned evaluation, the
 * pick by the objective (clear, overlapping intervals -> not distinguishable and the
 * cheaper one, no intervals), gates that rule a base out, costs from the "cost" history,
 * and no section when the runs share one base; the same comparison by method.type. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "reports/report.h"
#include "reports/report_bases.h"
#include "reports/report_write.h"
#include "tests/unit/report_fixture.h"
#include "common/banned.h"

#define SMOL "../models/SmolLM2-135M-Instruct.Q4_1.gguf"
#define GEMMA "../models/gemma-3-270m-q4_k_m.gguf"

/* One finished run of base `base`: exact match (untuned ub, tuned t with interval
 * [t - w, t + w], paired difference), loss, and its cost. */
static void add(struct report *r, const char *id, const char *base, const char *lr, double ub,
		double t, double w, double train_s, double peak)
{
	struct report_run *run;
	assert_int_equal(report_add_run(r, id, "finished", &run), 0);
	assert_int_equal(report_run_set_param(r, run, "model.base", base), 0);
	assert_int_equal(report_run_set_param(r, run, "train.optimizer.lr", lr), 0);
	assert_int_equal(report_run_set_result(r, run, REPORT_BASE, "test", "exact_match", ub,
					       true, ub - 0.05, ub + 0.05), 0);
	assert_int_equal(report_run_set_result(r, run, REPORT_TUNED, "test", "exact_match", t,
					       w >= 0, t - w, t + w), 0);
	assert_int_equal(report_run_set_result(r, run, REPORT_DELTA, "test", "exact_match", t - ub,
					       w >= 0, t - ub - w, t - ub + w), 0);
	assert_int_equal(report_run_set_result(r, run, REPORT_BASE, "test", "loss", 3.0 + ub,
					       true, 2.9 + ub, 3.1 + ub), 0);
	assert_int_equal(report_run_set_result(r, run, REPORT_TUNED, "test", "loss", 1.0 - t,
					       true, 0.9 - t, 1.1 - t), 0);
	assert_int_equal(report_run_add_point(run, "cost", "train_seconds", 24, train_s), 0);
	assert_int_equal(report_run_add_point(run, "cost", "train_peak_rss_bytes", 24, peak), 0);
	assert_int_equal(report_run_add_point(run, "cost", "tokens_per_s", 24, 1000.0 / train_s),
			 0);
}

static struct report *objective(const char *metric, bool maximize)
{
	struct report *r = report_new("choose");
	assert_non_null(r);
	assert_int_equal(report_set_text(&r->objective, metric), 0);
	r->objective_set = true;
	r->maximize = maximize;
	return r;
}

/* r's report written into a fresh directory (returned; the caller removes it). */
static char *written(const struct report *r)
{
	char *dir = fixture_tmpdir();
	struct diag d;
	diag_init(&d);
	int rc = report_write(r, dir, 30, &d);
	if (rc)
		diag_print(&d, stderr);
	assert_int_equal(rc, 0);
	return dir;
}

static void test_clear_pick_and_own_base(void **state)
{
	(void)state;
	struct report *r = objective("test.exact_match", true);
	add(r, "s1", SMOL, "0.001", 0.40, 0.70, 0.05, 60, 0.8e9);
	add(r, "s2", SMOL, "0.003", 0.40, 0.75, 0.05, 65, 0.8e9);
	add(r, "g1", GEMMA, "0.001", 0.00, 0.20, 0.05, 30, 1.2e9);
	add(r, "g2", GEMMA, "0.003", 0.00, 0.95, 0.03, 31, 1.2e9);
	struct report_bases b;
	assert_int_equal(report_bases_make(&b, r), 0);
	assert_int_equal(b.n, 2);
	assert_string_equal(b.items[0].name, SMOL);
	assert_string_equal(b.items[1].name, GEMMA);
	/* each base's best run: its own untuned value comes with it */
	assert_string_equal(r->runs[b.items[0].run].id, "s2");
	assert_string_equal(r->runs[b.items[1].run].id, "g2");
	long m = report_metric_find(r, "test.exact_match");
	assert_true(r->runs[b.items[1].run].base[m].v == 0.0);
	assert_true(r->runs[b.items[0].run].base[m].v == 0.40);
	assert_int_equal(b.items[0].n_runs, 2);
	assert_int_equal(b.verdict, BASES_CLEAR);
	assert_int_equal(b.pick, 1);
	assert_true(b.items[1].cost[COST_TRAIN_S] == 31);
	assert_true(b.items[0].cost[COST_TRAIN_PEAK] == 0.8e9);
	assert_true(isnan(b.items[0].cost[COST_PEAK_RSS])); /* not recorded */
	char *s = report_bases_sentence(&b, r);
	assert_non_null(s);
	assert_non_null(strstr(s, "Pick gemma-3-270m-q4_k_m.gguf: its fine-tuned test.exact_match "
				  "(higher is better), 0.95 [0.92, 0.98], is the best"));
	assert_non_null(strstr(s, "SmolLM2-135M-Instruct.Q4_1.gguf: 0.75 [0.7, 0.8]"));
	free(s);
	report_bases_free(&b);
	/* the goal decides: by the loss (lower is better) the same runs pick the same base */
	assert_int_equal(report_set_text(&r->objective, "test.loss"), 0);
	r->maximize = false;
	assert_int_equal(report_bases_make(&b, r), 0);
	assert_string_equal(r->runs[b.items[0].run].id, "s2");
	assert_int_equal(b.pick, 1);
	report_bases_free(&b);
	/* maximizing the loss takes each base's other run */
	r->maximize = true;
	assert_int_equal(report_bases_make(&b, r), 0);
	assert_string_equal(r->runs[b.items[0].run].id, "s1");
	assert_string_equal(r->runs[b.items[1].run].id, "g1");
	report_bases_free(&b);
	report_free(r);
}

static void test_overlap_is_not_distinguishable(void **state)
{
	(void)state;
	struct report *r = objective("test.exact_match", true);
	add(r, "s1", SMOL, "0.001", 0.40, 0.80, 0.10, 60, 0.8e9);
	add(r, "g1", GEMMA, "0.001", 0.00, 0.75, 0.10, 30, 1.2e9);
	struct report_bases b;
	assert_int_equal(report_bases_make(&b, r), 0);
	assert_int_equal(b.verdict, BASES_OVERLAP);
	assert_int_equal(b.best, 0);     /* SmolLM2 has the better point estimate */
	assert_int_equal(b.cheapest, 1); /* Gemma trains in half the time */
	assert_int_equal(b.pick, 1);
	char *s = report_bases_sentence(&b, r);
	assert_non_null(strstr(s, "Not distinguishable on test.exact_match"));
	assert_non_null(strstr(s, "SmolLM2-135M-Instruct.Q4_1.gguf has the better point estimate"));
	assert_non_null(strstr(s, "pick gemma-3-270m-q4_k_m.gguf, the cheaper to train (training "
				  "30 s against 60, peak memory in training 1.12 GiB against 0.75 GiB)"));
	free(s);
	report_bases_free(&b);
	/* CPU seconds, where both runs have them, decide instead of wall seconds */
	assert_int_equal(report_run_add_point(&r->runs[0], "cost", "train_cpu_seconds", 24, 50), 0);
	assert_int_equal(report_run_add_point(&r->runs[1], "cost", "train_cpu_seconds", 24, 58), 0);
	assert_int_equal(report_bases_make(&b, r), 0);
	assert_int_equal(b.cheapest, 0);
	assert_int_equal(b.pick, 0);
	s = report_bases_sentence(&b, r);
	assert_non_null(strstr(s, "is no dearer to train: pick it"));
	free(s);
	report_bases_free(&b);
	/* without intervals nothing can be said about noise */
	report_free(r);
	r = objective("test.exact_match", true);
	add(r, "s1", SMOL, "0.001", 0.40, 0.80, -1, 60, 0.8e9);
	add(r, "g1", GEMMA, "0.001", 0.00, 0.75, -1, 30, 1.2e9);
	assert_int_equal(report_bases_make(&b, r), 0);
	assert_int_equal(b.verdict, BASES_NO_INTERVAL);
	assert_int_equal(b.pick, 0);
	s = report_bases_sentence(&b, r);
	assert_non_null(strstr(s, "no confidence intervals were recorded"));
	free(s);
	report_bases_free(&b);
	report_free(r);
}

static void test_gates_rule_a_base_out(void **state)
{
	(void)state;
	struct report *r = objective("test.exact_match", true);
	/* Gemma is best, but gains only 0.15 over its own base; the gate asks for 0.2 */
	add(r, "s1", SMOL, "0.001", 0.40, 0.70, 0.02, 60, 0.8e9);
	add(r, "g1", GEMMA, "0.001", 0.70, 0.85, 0.02, 30, 1.2e9);
	struct report_gate g = {.metric = "test.exact_match", .vs = REPORT_GATE_BASE,
				.has_min_delta = true, .min_delta = 0.2};
	assert_int_equal(report_add_gate(r, &g), 0);
	struct report_gate bl = {.metric = "test.loss", .vs = REPORT_GATE_BASELINE};
	assert_int_equal(report_add_gate(r, &bl), 0); /* not judged by a report */
	struct report_bases b;
	assert_int_equal(report_bases_make(&b, r), 0);
	assert_true(b.gated);
	assert_int_equal(b.items[0].gates_judged, 1);
	assert_int_equal(b.items[0].gates_passed, 1);
	assert_int_equal(b.items[1].gates_passed, 0);
	assert_int_equal(b.items[1].gate_failed, 0);
	assert_int_equal(b.verdict, BASES_ONE_LEFT);
	assert_int_equal(b.pick, 0);
	char *s = report_bases_sentence(&b, r);
	assert_non_null(strstr(s, "Pick SmolLM2-135M-Instruct.Q4_1.gguf: it is the only base"));
	assert_non_null(strstr(s, "gemma-3-270m-q4_k_m.gguf fails the gate on test.exact_match "
				  "(vs base) and is not a candidate"));
	free(s);
	report_bases_free(&b);
	report_free(r);
}

static void test_one_base_no_section(void **state)
{
	(void)state;
	struct report *r = objective("test.exact_match", true);
	add(r, "s1", SMOL, "0.001", 0.40, 0.70, 0.05, 60, 0.8e9);
	add(r, "s2", SMOL, "0.003", 0.40, 0.75, 0.05, 60, 0.8e9);
	struct report_bases b;
	assert_int_equal(report_bases_make(&b, r), 0);
	assert_int_equal(b.n, 0);
	report_bases_free(&b);
	report_free(r);
	/* not swept: the base comes from each run's config */
	r = objective("test.exact_match", true);
	struct report_run *run;
	const char *cfg[2] = {"{\"model\": {\"base\": \"a/x.gguf\"}}",
			      "{\"model\": {\"base\": \"b/y\"}}"};
	for (int i = 0; i < 2; i++) {
		assert_int_equal(report_add_run(r, i ? "r2" : "r1", "finished", &run), 0);
		assert_int_equal(report_set_text(&run->config_json, cfg[i]), 0);
		assert_int_equal(report_run_set_result(r, run, REPORT_TUNED, "test", "exact_match",
						       0.5, false, 0, 0), 0);
	}
	assert_int_equal(report_bases_make(&b, r), 0);
	assert_int_equal(b.n, 2);
	assert_string_equal(report_base_short(b.items[0].name), "x.gguf");
	assert_string_equal(report_base_short(b.items[1].name), "y");
	report_bases_free(&b);
	report_free(r);
}

static void test_section_written(void **state)
{
	(void)state;
	struct report *r = objective("test.exact_match", true);
	add(r, "s1", SMOL, "0.001", 0.40, 0.70, 0.05, 60, 0.8e9);
	add(r, "g2", GEMMA, "0.003", 0.00, 0.95, 0.03, 31, 1.25e9);
	char *dir = written(r);
	char *html = fixture_slurp(dir, "index.html"), *md = fixture_slurp(dir, "report.md");
	assert_non_null(strstr(html, "<h2 id=\"bases\">Base models</h2>"));
	assert_non_null(strstr(html, "href=\"#bases\""));
	assert_non_null(strstr(html, "Pick gemma-3-270m-q4_k_m.gguf"));
	/* each base with its own untuned value, tuned value and paired difference */
	assert_non_null(strstr(html, "<td>test.exact_match</td><td title=\"" SMOL "\">"
				     "SmolLM2-135M-Instruct.Q4_1.gguf</td><td><code>s1</code></td>"
				     "<td class=\"num\">0.4 [0.35, 0.45]</td><td class=\"num\">0.7 "
				     "[0.65, 0.75]</td><td class=\"num sig\">0.3 [0.25, 0.35]</td>"));
	assert_non_null(strstr(html, "gemma-3-270m-q4_k_m.gguf ★</td><td><code>g2</code></td>"
				     "<td class=\"num\">0 [-0.05, 0.05]</td><td class=\"num\">0.95 "
				     "[0.92, 0.98]</td><td class=\"num sig\">0.95 [0.92, 0.98]</td>"));
	assert_non_null(strstr(html, "<td class=\"num\">31.0</td><td class=\"num\">–</td>"
				     "<td class=\"num\">32.3</td><td class=\"num\">1.16</td>"));
	assert_non_null(strstr(html, "fig-bases\""));
	assert_non_null(strstr(html, "fig-bases_cost\""));
	assert_non_null(strstr(md, "## Base models\n\nPick gemma-3-270m-q4\\_k\\_m.gguf"));
	assert_non_null(strstr(md, "| test.exact\\_match | SmolLM2-135M-Instruct.Q4\\_1.gguf | s1 | "
				   "0.4 [0.35, 0.45] | 0.7 [0.65, 0.75] | **0.3 [0.25, 0.35]** |"));
	assert_non_null(strstr(md, "| gemma-3-270m-q4\\_k\\_m.gguf | g2 | 1 | 31.0 | – | 32.3 | "
				   "1.16 |"));
	assert_non_null(strstr(md, "](charts/bases.png)"));
	assert_non_null(strstr(md, "](charts/bases_cost.png)"));
	char *tsv = fixture_slurp(dir, "data/bases.tsv");
	assert_non_null(strstr(tsv, "1\tgemma-3-270m-q4_k_m.gguf\t0\t-0.05\t0.05\t0.95\t0.92\t0.98"));
	free(tsv);
	tsv = fixture_slurp(dir, "data/bases_cost.tsv");
	assert_non_null(strstr(tsv, "0\tSmolLM2-135M-Instruct.Q4_1.gguf\t60\t?\t16.66666667"));
	free(tsv);
	free(html);
	free(md);
	assert_int_equal(dir_remove_all(dir), 0);
	free(dir);
	report_free(r);
}

/* A sweep over method.type gets the same comparison, grouped by method: each method's
 * best run, its paired difference against the untuned base, its cost, and which method to
 * pick (here LoRA and IA3 overlap, so the cheaper IA3); one base: no base-model section.
 * A run whose method is not swept is grouped by its config's method.type. */
static void test_methods_section(void **state)
{
	(void)state;
	struct report *r = objective("test.exact_match", true);
	static const struct {
		const char *id, *method, *lr;
		double t, train_s;
	} runs[] = {
		{"l1", "lora", "0.001", 0.70, 60}, {"l2", "lora", "0.003", 0.60, 61},
		{"i1", "ia3", "0.01", 0.68, 40},   {"p1", "prefix", "0.01", 0.30, 30},
	};
	for (size_t i = 0; i < FT_ARRAY_LEN(runs); i++) {
		add(r, runs[i].id, SMOL, runs[i].lr, 0.40, runs[i].t, 0.05, runs[i].train_s, 0.9e9);
		assert_int_equal(report_run_set_param(r, &r->runs[r->n_runs - 1], "method.type",
						      runs[i].method), 0);
	}
	struct report_run *run;
	assert_int_equal(report_add_run(r, "d1", "finished", &run), 0);
	assert_int_equal(report_set_text(&run->config_json, "{\"method\": {\"type\": \"dora\", "
				       "\"rank\": 8}, \"model\": {\"base\": \"" SMOL "\"}}"), 0);
	struct report_bases b;
	assert_int_equal(report_bases_make(&b, r), 0);
	assert_int_equal(b.n, 0); /* one base model */
	report_bases_free(&b);
	assert_int_equal(report_groups_make(&b, r, &REPORT_GROUP_METHODS), 0);
	assert_int_equal(b.n, 4);
	assert_string_equal(b.items[0].name, "lora");
	assert_string_equal(b.items[3].name, "dora");
	assert_int_equal(b.items[3].run, -1); /* no result */
	assert_string_equal(r->runs[b.items[0].run].id, "l1");
	assert_int_equal(b.items[0].n_runs, 2);
	assert_int_equal(b.verdict, BASES_OVERLAP);
	assert_int_equal(b.best, 0);
	assert_int_equal(b.pick, 1);
	char *s = report_bases_sentence(&b, r);
	assert_non_null(s);
	assert_non_null(strstr(s, "Not distinguishable on test.exact_match (higher is better): "
				  "the intervals overlap (lora: 0.7 [0.65, 0.75]; ia3: 0.68 [0.63, "
				  "0.73]). lora has the better point estimate; pick ia3, the cheaper "
				  "to train (training 40 s against 60"));
	free(s);
	report_bases_free(&b);
	char *dir = written(r);
	char *html = fixture_slurp(dir, "index.html"), *md = fixture_slurp(dir, "report.md");
	assert_non_null(strstr(html, "<h2 id=\"methods\">Methods</h2>"));
	assert_null(strstr(html, "<h2 id=\"bases\">"));
	assert_non_null(strstr(html, "href=\"#methods\""));
	assert_non_null(strstr(html, "<th>metric</th><th>method</th><th>run</th>"));
	assert_non_null(strstr(html, "ia3 ★</td><td><code>i1</code></td>"));
	assert_non_null(strstr(html, "fig-methods\""));
	assert_non_null(strstr(html, "fig-methods_cost\""));
	assert_non_null(strstr(md, "## Methods\n\nNot distinguishable"));
	assert_non_null(strstr(md, "| prefix | p1 | 1 | 30.0 |"));
	assert_non_null(strstr(md, "](charts/methods_cost.png)"));
	char *tsv = fixture_slurp(dir, "data/methods.tsv");
	assert_non_null(strstr(tsv, "x\tmethod\tuntuned"));
	assert_non_null(strstr(tsv, "2\tprefix\t0.4\t0.35\t0.45\t0.3\t0.25\t0.35"));
	free(tsv);
	free(html);
	free(md);
	assert_int_equal(dir_remove_all(dir), 0);
	free(dir);
	report_free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_clear_pick_and_own_base),
		cmocka_unit_test(test_overlap_is_not_distinguishable),
		cmocka_unit_test(test_gates_rule_a_base_out),
		cmocka_unit_test(test_one_base_no_section),
		cmocka_unit_test(test_section_written),
		cmocka_unit_test(test_methods_section),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
