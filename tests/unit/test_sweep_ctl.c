/* Unit tests for runner/sweep_ctl.c and the adaptive parts of runner/sweep.c: the schema
 * rules of bayes and early_terminate, plan order, hyperband decisions of the controller on
 * the recorded curves of tests/reference/hyperband_fixture.json (W&B's own decisions),
 * bayes sequences (deterministic, resumable from recorded points, constant liar with
 * several points out, finite spaces that run out) and the search space mapping. */
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

#include "common/diag.h"
#include "common/util.h"
#include "runner/sweep.h"
#include "runner/sweep_ctl.h"
#include "runner/tpe.h"
#include "schema/schema.h"
#include "tests/unit/scratch.h"
#include "common/banned.h"

static const char *tmpdir;

static int setup(void **state)
{
	(void)state;
	tmpdir = scratch_open("sweep_ctl");
	scratch_put("m.gguf", "GGUF");
	scratch_put("train.jsonl", "{\"text\": \"a\"}\n");
	scratch_put("val.jsonl", "{\"text\": \"b\"}\n");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	return scratch_close();
}

#define HEAD                                                                              \
	"name: t\nmodel:\n  base: m.gguf\ndata:\n  train: train.jsonl\n  validation: "   \
	"val.jsonl\n"
#define EXEC "backend: {type: exec, command: [trainer]}\n"

static int load(struct experiment **e, const char *text, struct diag *d)
{
	static int n;
	char name[32], path[512];
	snprintf(name, sizeof name, "e%d.yaml", n++);
	scratch_put(name, text);
	snprintf(path, sizeof path, "%s/%s", tmpdir, name);
	diag_init(d);
	return experiment_load(e, path, NULL, 0, d);
}

static struct sweep_ctl *ctl_ok(struct experiment **e, const char *text)
{
	struct diag d;
	if (load(e, text, &d) != 0)
		fail_msg("load: %s:%d:%d: %s", d.file, d.line, d.col, d.text);
	struct sweep_ctl *c = NULL;
	if (sweep_ctl_create(&c, *e, 0, &d) != 0)
		fail_msg("sweep_ctl_create: %d:%d: %s", d.line, d.col, d.text);
	return c;
}

/* The file must be refused with a message containing `want`. */
static void refused(const char *text, const char *want)
{
	struct experiment *e = NULL;
	struct diag d;
	int rc = load(&e, text, &d);
	if (rc == 0) {
		struct sweep_ctl *c = NULL;
		rc = sweep_ctl_create(&c, e, 0, &d);
		sweep_ctl_free(c);
	}
	experiment_free(e);
	if (rc != FT_EINVAL)
		fail_msg("accepted (rc %d), expected an error with '%s'", rc, want);
	if (!strstr(d.text, want) && !strstr(d.hint, want))
		fail_msg("error '%s' (hint '%s') does not mention '%s'", d.text, d.hint, want);
	assert_true(d.line > 0);
}

/* keys: sweep.run_cap */
static void test_schema_rules(void **state)
{
	(void)state;
	refused(HEAD "sweep: {method: bayes, samples: 4, parameters: {train.optimizer.lr: "
		     "{min: 0.001, max: 0.01}}}\n", "needs sweep.objective");
	refused(HEAD "sweep: {method: bayes, parameters: {train.optimizer.lr: {min: 0.001, max: "
		     "0.01}}, objective: {metric: test.loss}}\n", "needs sweep.samples");
	refused(HEAD "sweep: {method: bayes, samples: 4, run_cap: 5, parameters: "
		     "{train.optimizer.lr: {min: 0.001, max: 0.01}}, objective: {metric: "
		     "test.loss}}\n", "disagree");
	refused(HEAD "sweep: {run_cap: 5, parameters: {method.rank: [4, 8]}}\n",
		"only to sweep.method random, bayes or tpe");
	refused(HEAD "sweep: {method: bayes, samples: 4, parameters: {seed: [1, 2]}, "
		     "objective: {metric: test.loss}}\n", "does not search over 'seed'");
	refused(HEAD "sweep: {method: tpe, samples: 4, parameters: {train.optimizer.lr: "
		     "{min: 0.001, max: 0.01}}}\n", "sweep.method tpe needs sweep.objective");
	refused(HEAD "sweep: {method: tpe, samples: 4, parameters: {seed: [1, 2]}, "
		     "objective: {metric: test.loss}}\n", "a tpe sweep does not search over");
	refused(HEAD "sweep: {method: bayes, samples: 4, parameters: {method.rank: [8]}, "
		     "objective: {metric: test.loss}}\n", "at least one parameter");
	/* early_terminate */
	refused(HEAD EXEC "sweep: {parameters: {method.rank: [4, 8]}, early_terminate: {type: "
			  "successive_halving, min_steps: 50}}\n", "successive_halving");
	refused(HEAD EXEC "sweep: {parameters: {method.rank: [4, 8]}, early_terminate: {type: "
			  "hyperband, min_steps: 50}}\n", "min_iter");
	refused(HEAD EXEC "sweep: {parameters: {method.rank: [4, 8]}, early_terminate: {type: "
			  "hyperband, metric: validation.loss}}\n", "needs min_iter, or max_iter");
	refused(HEAD EXEC "sweep: {parameters: {method.rank: [4, 8]}, early_terminate: {"
			  "metric: validation.loss, min_iter: 3, max_iter: 27, s: 2}}\n", "not both");
	refused(HEAD EXEC "sweep: {parameters: {method.rank: [4, 8]}, early_terminate: {"
			  "metric: validation.loss, max_iter: 27}}\n", "needs s");
	refused(HEAD EXEC "sweep: {parameters: {method.rank: [4, 8]}, early_terminate: {"
			  "metric: validation.loss, max_iter: 2, s: 1}}\n", "no band");
	refused(HEAD EXEC "sweep: {parameters: {method.rank: [4, 8]}, early_terminate: {"
			  "metric: validation.loss, min_iter: 2, eta: 1}}\n", "eta");
	refused(HEAD EXEC "sweep: {parameters: {method.rank: [4, 8]}, early_terminate: {"
			  "min_iter: 2}}\n", "needs a metric");
	refused(HEAD EXEC "sweep: {parameters: {method.rank: [4, 8]}, objective: {metric: "
			  "test.exact_match}, early_terminate: {min_iter: 2}}\n", "test split");
	/* The native engine logs validation.loss only with eval_every. */
	refused(HEAD "sweep: {parameters: {method.rank: [4, 8]}, early_terminate: {metric: "
		     "validation.loss, min_iter: 2}}\n", "eval_every");
	refused(HEAD "sweep: {parameters: {method.rank: [4, 8]}, early_terminate: {metric: "
		     "validation.exact_match, min_iter: 2}}\n", "does not log");
	/* Accepted: the metric and goal default to the objective's. */
	struct experiment *e = NULL;
	struct sweep_ctl *c = ctl_ok(&e, HEAD "train: {eval_every: 5}\nsweep: {parameters: "
					 "{method.rank: [4, 8]}, objective: {metric: "
					 "validation.loss, goal: minimize}, early_terminate: "
					 "{min_iter: 2}}\n");
	assert_string_equal(sweep_ctl_stop_metric(c), "validation.loss");
	bool max = true;
	assert_string_equal(sweep_ctl_objective(c, &max), "validation.loss");
	assert_false(max);
	assert_false(sweep_ctl_adaptive(c));
	assert_int_equal(sweep_ctl_budget(c), 2);
	sweep_ctl_free(c);
	experiment_free(e);
	/* run_cap is samples. */
	c = ctl_ok(&e, HEAD "sweep: {method: random, run_cap: 3, parameters: {method.rank: [4, "
			    "8]}}\n");
	assert_int_equal(sweep_ctl_budget(c), 3);
	sweep_ctl_free(c);
	experiment_free(e);
}

static void test_plan_order(void **state)
{
	(void)state;
	struct experiment *e = NULL;
	struct sweep_ctl *c = ctl_ok(&e, HEAD "sweep: {parameters: {method.rank: [4, 8, 16]}}\n");
	struct diag d;
	diag_init(&d);
	const struct sweep_point *p[4];
	size_t n;
	assert_int_equal(sweep_ctl_suggest(c, p, 4, &n, &d), 0);
	assert_int_equal(n, 3);
	for (size_t i = 0; i < 3; i++)
		assert_int_equal(p[i]->index, i);
	assert_string_equal(p[2]->params_json, "{\"method.rank\":16}");
	assert_false(sweep_ctl_suggestion(c, 0).adaptive);
	sweep_ctl_free(c);
	experiment_free(e);
}

static char *fixture_path(void)
{
	const char *root = getenv("FTLAB_ROOT");
	return path_join(root ? root : ".", "tests/reference/hyperband_fixture.json");
}

/* The controller's decisions on the recorded curves equal W&B's (see test_hyperband.c for
 * the rule itself). */
/* keys: sweep.early_terminate.metric sweep.early_terminate.goal sweep.early_terminate.min_iter sweep.early_terminate.max_iter sweep.early_terminate.s sweep.early_terminate.eta sweep.early_terminate.strict */
static void test_hyperband_replay(void **state)
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
	size_t n_runs = json_array_size(runs), stops = 0;
	for (size_t ci = 0; ci < json_array_size(cases); ci++) {
		const json_t *cs = json_object_get(json_array_get(cases, ci), "early_terminate");
		const char *goal = json_string_value(
			json_object_get(json_array_get(cases, ci), "goal"));
		char et[256], text[2048], seeds[256] = "";
		size_t off = 0;
		for (size_t i = 0; i < n_runs; i++)
			off += (size_t)snprintf(seeds + off, sizeof seeds - off, "%s%zu", i ? ", " : "",
						i + 1);
		const json_t *mi = json_object_get(cs, "min_iter"), *st = json_object_get(cs, "strict");
		if (mi)
			snprintf(et, sizeof et, "{metric: validation.loss, goal: %s, min_iter: %lld, "
				 "eta: %g%s}", goal, (long long)json_integer_value(mi),
				 json_number_value(json_object_get(cs, "eta")),
				 st && !json_is_true(st) ? ", strict: false" : "");
		else
			snprintf(et, sizeof et, "{metric: validation.loss, goal: %s, max_iter: %lld, "
				 "s: %lld, eta: %g%s}", goal,
				 (long long)json_integer_value(json_object_get(cs, "max_iter")),
				 (long long)json_integer_value(json_object_get(cs, "s")),
				 json_number_value(json_object_get(cs, "eta")),
				 st && !json_is_true(st) ? ", strict: false" : "");
		snprintf(text, sizeof text, HEAD EXEC "sweep:\n  parameters: {seed: [%s]}\n"
			 "  early_terminate: %s\n", seeds, et);
		struct experiment *e = NULL;
		struct sweep_ctl *c = ctl_ok(&e, text);
		assert_int_equal(sweep_ctl_budget(c), n_runs);
		double hist[64][32];
		size_t len[64] = {0};
		bool stopped[64] = {false};
		const json_t *dec = json_object_get(json_array_get(cases, ci), "decisions");
		size_t k = 0;
		bool maximize = strcmp(goal, "maximize") == 0;
		for (size_t ei = 0; ei < json_array_size(events); ei++) {
			size_t r = (size_t)json_integer_value(json_array_get(events, ei));
			if (stopped[r])
				continue;
			const json_t *v = json_array_get(json_array_get(runs, r), len[r]);
			hist[r][len[r]++] = json_is_number(v) ? (maximize ? -1 : 1) * json_number_value(v)
							      : NAN;
			struct sweep_verdict vd;
			struct diag d;
			diag_init(&d);
			assert_int_equal(sweep_ctl_observe(c, &vd, r, hist[r], len[r], true, &d), 0);
			const json_t *w = json_array_get(dec, k++);
			bool w_stop = json_is_true(json_object_get(w, "stop"));
			if (vd.stop != w_stop ||
			    vd.band != json_integer_value(json_object_get(w, "band")))
				fail_msg("case %zu event %zu run %zu: W&B stop %d band %lld, controller "
					 "stop %d band %lld", ci, ei, r, w_stop,
					 (long long)json_integer_value(json_object_get(w, "band")),
					 vd.stop, (long long)vd.band);
			if (vd.checked)
				assert_true(vd.threshold ==
					    (maximize ? -1 : 1) *
						    json_number_value(json_object_get(w, "threshold")));
			if (w_stop) {
				stopped[r] = true;
				stops++;
				sweep_ctl_result(c, r, SWEEP_RUN_STOPPED, NAN);
				assert_int_equal(sweep_ctl_observe(c, &vd, r, hist[r], len[r], false,
								   &d), 0);
				assert_false(vd.stop); /* only running runs are stopped */
			}
		}
		assert_int_equal(k, json_array_size(dec));
		sweep_ctl_free(c);
		experiment_free(e);
	}
	assert_true(stops > 50);
	json_decref(root);
}

/* ---- bayes ---- */

#define BAYES                                                                             \
	HEAD EXEC "sweep:\n  method: bayes\n  samples: %d\n  seed: %d\n  objective: {metric: " \
		  "validation.loss, goal: %s}\n  parameters:\n"                              \
		  "    train.optimizer.lr: {distribution: log_uniform_values, min: 1.0e-5, "    \
		  "max: 1.0e-1}\n    method.rank: [16, 4, 8, 32]\n"                            \
		  "    train.optimizer.type: [adamw, sgd]\n"

/* A synthetic loss with its minimum at lr 1e-3, rank 16, adamw. */
static double synthetic(const char *params_json)
{
	json_error_t je;
	json_t *o = json_loads(params_json, 0, &je);
	assert_non_null(o);
	double lr = json_number_value(json_object_get(o, "train.optimizer.lr"));
	double rank = json_number_value(json_object_get(o, "method.rank"));
	const char *opt = json_string_value(json_object_get(o, "train.optimizer.type"));
	assert_true(lr >= 1e-5 && lr <= 1e-1);
	assert_true(rank == 4 || rank == 8 || rank == 16 || rank == 32);
	assert_non_null(opt);
	double a = log10(lr) + 3, b = log2(rank) - 4;
	double v = a * a + 0.3 * b * b + (strcmp(opt, "adamw") == 0 ? 0 : 1.0);
	json_decref(o);
	return v;
}

/* Runs a bayes sweep to its end one point at a time; params of each index into out. */
static double run_bayes(const char *text, char **out, size_t n, bool maximize)
{
	struct experiment *e = NULL;
	struct sweep_ctl *c = ctl_ok(&e, text);
	assert_true(sweep_ctl_adaptive(c));
	assert_int_equal(sweep_ctl_budget(c), n);
	double best = INFINITY;
	for (size_t k = 0; k < n; k++) {
		const struct sweep_point *p;
		struct diag d;
		diag_init(&d);
		assert_int_equal(sweep_ctl_next(c, &p, &d), 0);
		assert_non_null(p);
		assert_int_equal(p->index, k);
		assert_non_null(p->cfg);
		double v = synthetic(p->params_json);
		out[k] = ft_strdup(p->params_json);
		struct sweep_suggestion s = sweep_ctl_suggestion(c, k);
		assert_true(s.adaptive);
		assert_int_equal(s.random, k < 4); /* 3 dimensions: 4 space-filling points */
		sweep_ctl_result(c, k, SWEEP_RUN_FINISHED, maximize ? -v : v);
		best = v < best ? v : best;
	}
	const struct sweep_point *p;
	struct diag d;
	diag_init(&d);
	assert_int_equal(sweep_ctl_next(c, &p, &d), 0);
	assert_null(p);
	sweep_ctl_free(c);
	experiment_free(e);
	return best;
}

static void test_bayes_sequence(void **state)
{
	(void)state;
	char text[2048];
	enum { N = 14 };
	char *a[N], *b[N], *m[N];
	snprintf(text, sizeof text, BAYES, N, 7, "minimize");
	double best = run_bayes(text, a, N, false);
	/* The same file and results: the same points. */
	run_bayes(text, b, N, false);
	for (size_t i = 0; i < N; i++) {
		assert_string_equal(a[i], b[i]);
		free(b[i]);
	}
	/* maximize with the negated objective: the same search. */
	snprintf(text, sizeof text, BAYES, N, 7, "maximize");
	run_bayes(text, m, N, true);
	for (size_t i = 0; i < N; i++)
		assert_string_equal(a[i], m[i]);
	/* It found the region of the optimum (adamw, lr near 1e-3). */
	assert_true(best < 0.5);
	/* Another seed: other points. */
	snprintf(text, sizeof text, BAYES, N, 8, "minimize");
	run_bayes(text, b, N, false);
	assert_string_not_equal(a[0], b[0]);
	for (size_t i = 0; i < N; i++) {
		free(a[i]);
		free(b[i]);
		free(m[i]);
	}
}

/* An interrupted sweep: a new controller restores the first points from their params and
 * outcomes and continues with the same points as the uninterrupted one. */
static void test_bayes_resume(void **state)
{
	(void)state;
	char text[2048];
	enum { N = 10, CUT = 6 };
	char *a[N];
	snprintf(text, sizeof text, BAYES, N, 3, "minimize");
	run_bayes(text, a, N, false);
	struct experiment *e = NULL;
	struct sweep_ctl *c = ctl_ok(&e, text);
	struct diag d;
	diag_init(&d);
	for (size_t k = 0; k < CUT; k++)
		assert_int_equal(sweep_ctl_restore(c, k, a[k], &d), 0);
	/* A point of another sweep is refused. */
	assert_int_equal(sweep_ctl_restore(c, CUT, "{\"method.rank\":5}", &d), FT_EINVAL);
	diag_init(&d);
	for (size_t k = 0; k < N; k++) {
		const struct sweep_point *p;
		assert_int_equal(sweep_ctl_next(c, &p, &d), 0);
		assert_non_null(p);
		assert_int_equal(p->index, k);
		assert_string_equal(p->params_json, a[k]);
		assert_int_equal(sweep_ctl_suggestion(c, k).adaptive, k >= CUT);
		sweep_ctl_result(c, k, SWEEP_RUN_FINISHED, synthetic(p->params_json));
	}
	sweep_ctl_free(c);
	experiment_free(e);
	for (size_t i = 0; i < N; i++)
		free(a[i]);
}

/* Several points out at once (--jobs N): all different; failed runs count as worst. */
static void test_bayes_batch(void **state)
{
	(void)state;
	char text[2048];
	snprintf(text, sizeof text, BAYES, 12, 5, "minimize");
	struct experiment *e = NULL;
	struct sweep_ctl *c = ctl_ok(&e, text);
	struct diag d;
	diag_init(&d);
	const struct sweep_point *p[12];
	size_t n;
	assert_int_equal(sweep_ctl_suggest(c, p, 5, &n, &d), 0);
	assert_int_equal(n, 5);
	for (size_t i = 0; i < 5; i++) {
		assert_true(sweep_ctl_suggestion(c, p[i]->index).random);
		sweep_ctl_result(c, p[i]->index, i == 4 ? SWEEP_RUN_FAILED : SWEEP_RUN_FINISHED,
				 synthetic(p[i]->params_json));
	}
	/* Three at once after the start: distinct points. */
	assert_int_equal(sweep_ctl_suggest(c, p, 3, &n, &d), 0);
	assert_int_equal(n, 3);
	assert_string_not_equal(p[0]->params_json, p[1]->params_json);
	assert_string_not_equal(p[1]->params_json, p[2]->params_json);
	assert_string_not_equal(p[0]->params_json, p[2]->params_json);
	assert_false(sweep_ctl_suggestion(c, p[2]->index).random);
	sweep_ctl_free(c);
	experiment_free(e);
}

/* A finite space of 4 points with samples 6: four runs, then nothing. */
static void test_bayes_finite(void **state)
{
	(void)state;
	struct experiment *e = NULL;
	struct sweep_ctl *c = ctl_ok(&e, HEAD EXEC "sweep:\n  method: bayes\n  samples: 6\n  "
					 "objective: {metric: validation.loss, goal: minimize}\n"
					 "  parameters: {method.rank: [4, 8], "
					 "train.optimizer.type: [adamw, sgd]}\n");
	struct diag d;
	diag_init(&d);
	char *seen[4];
	for (size_t k = 0; k < 4; k++) {
		const struct sweep_point *p;
		assert_int_equal(sweep_ctl_next(c, &p, &d), 0);
		assert_non_null(p);
		seen[k] = ft_strdup(p->params_json);
		for (size_t j = 0; j < k; j++)
			assert_string_not_equal(seen[j], seen[k]);
		sweep_ctl_result(c, k, SWEEP_RUN_FINISHED, (double)k);
	}
	const struct sweep_point *p;
	assert_int_equal(sweep_ctl_next(c, &p, &d), 0);
	assert_null(p);
	for (size_t k = 0; k < 4; k++)
		free(seen[k]);
	sweep_ctl_free(c);
	experiment_free(e);
}

/* ---- tpe ---- */

#define TPE                                                                               \
	HEAD EXEC "sweep:\n  method: tpe\n  samples: %d\n  seed: %d\n  objective: {metric: "   \
		  "validation.loss, goal: minimize}\n  parameters:\n"                        \
		  "    train.optimizer.lr: {distribution: log_uniform_values, min: 1.0e-5, "    \
		  "max: 1.0e-1}\n    method.rank: [16, 4, 8, 32]\n"                            \
		  "    train.optimizer.type: [adamw, sgd]\n"

/* Runs a tpe sweep one point at a time, restoring the first `restored` points from
 * `prev`; params of each index into out; returns the best value. */
static double run_tpe(const char *text, char **out, size_t n, char **prev, size_t restored)
{
	struct experiment *e = NULL;
	struct sweep_ctl *c = ctl_ok(&e, text);
	assert_true(sweep_ctl_adaptive(c));
	struct diag d;
	diag_init(&d);
	for (size_t k = 0; k < restored; k++)
		assert_int_equal(sweep_ctl_restore(c, k, prev[k], &d), 0);
	double best = INFINITY;
	for (size_t k = 0; k < n; k++) {
		const struct sweep_point *p;
		assert_int_equal(sweep_ctl_next(c, &p, &d), 0);
		assert_non_null(p);
		assert_int_equal(p->index, k);
		double v = synthetic(p->params_json);
		out[k] = ft_strdup(p->params_json);
		struct sweep_suggestion s = sweep_ctl_suggestion(c, k);
		assert_int_equal(s.adaptive, k >= restored);
		if (s.adaptive) {
			assert_true(s.tpe);
			assert_int_equal(s.random, k < TPE_N_STARTUP);
			if (!s.random) {
				assert_int_equal(s.n_obs, k);
				assert_int_equal(s.n_good, (k + 9) / 10);
				assert_true(isfinite(s.score));
			}
		}
		sweep_ctl_result(c, k, SWEEP_RUN_FINISHED, v);
		best = v < best ? v : best;
	}
	sweep_ctl_free(c);
	experiment_free(e);
	return best;
}

/* The same file and results give the same points; an interrupted sweep continues them;
 * the search finds the optimum's region. */
static void test_tpe_sequence(void **state)
{
	(void)state;
	char text[2048];
	enum { N = 30, CUT = 17 };
	char *a[N], *b[N], *r[N];
	snprintf(text, sizeof text, TPE, N, 7);
	double best = run_tpe(text, a, N, NULL, 0);
	run_tpe(text, b, N, NULL, 0);
	run_tpe(text, r, N, a, CUT);
	for (size_t i = 0; i < N; i++) {
		assert_string_equal(a[i], b[i]);
		assert_string_equal(a[i], r[i]);
		free(b[i]);
		free(r[i]);
	}
	assert_true(best < 0.5);
	snprintf(text, sizeof text, TPE, N, 8);
	run_tpe(text, b, N, NULL, 0);
	assert_string_not_equal(a[0], b[0]);
	for (size_t i = 0; i < N; i++) {
		free(a[i]);
		free(b[i]);
	}
}

/* Eleven runs, the last ending `last` with objective `v` (or still running when
 * `pending`); the point tpe suggests next. */
static char *tpe_after(enum sweep_outcome last, double v, bool pending)
{
	char text[2048];
	snprintf(text, sizeof text, TPE, 13, 4);
	struct experiment *e = NULL;
	struct sweep_ctl *c = ctl_ok(&e, text);
	struct diag d;
	diag_init(&d);
	const struct sweep_point *p;
	for (size_t k = 0; k < 11; k++) {
		assert_int_equal(sweep_ctl_next(c, &p, &d), 0);
		if (k < 10 || !pending)
			sweep_ctl_result(c, k, k == 10 ? last : SWEEP_RUN_FINISHED,
					 k == 10 ? v : 5.0 + (double)k);
	}
	assert_int_equal(sweep_ctl_next(c, &p, &d), 0);
	assert_non_null(p);
	assert_false(sweep_ctl_suggestion(c, 11).random);
	char *out = ft_strdup(p->params_json);
	sweep_ctl_free(c);
	experiment_free(e);
	return out;
}

/* A stopped run ranks after every finished one, whatever value it reached (Optuna's
 * pruned trials): stopped at 0 chooses like finished at 100, not like finished at 0. A
 * failed run is in the bad group and no observation, like a run still going. */
static void test_tpe_stopped_and_failed(void **state)
{
	(void)state;
	char *stopped = tpe_after(SWEEP_RUN_STOPPED, 0.0, false);
	char *worst = tpe_after(SWEEP_RUN_FINISHED, 100.0, false);
	char *best = tpe_after(SWEEP_RUN_FINISHED, 0.0, false);
	char *failed = tpe_after(SWEEP_RUN_FAILED, 0.0, false);
	char *running = tpe_after(SWEEP_RUN_FINISHED, 0.0, true);
	assert_string_equal(stopped, worst);
	assert_string_not_equal(stopped, best);
	assert_string_equal(failed, running);
	assert_string_not_equal(failed, worst);
	free(stopped);
	free(worst);
	free(best);
	free(failed);
	free(running);
}

/* The space: log scale, integers, normal, categorical; points land in range and a
 * recorded point maps back to its place. */
static void test_space_mapping(void **state)
{
	(void)state;
	struct experiment *e = NULL;
	struct diag d;
	assert_int_equal(load(&e, HEAD EXEC "sweep:\n  method: bayes\n  samples: 3\n  objective: "
				  "{metric: test.loss}\n  parameters:\n"
				  "    train.optimizer.lr: {distribution: log_uniform_values, min: "
				  "1.0e-4, max: 1.0e-2}\n"
				  "    method.rank: {distribution: int_uniform, min: 2, max: 9}\n"
				  "    method.dropout: {distribution: normal, mu: 0.1, sigma: 0.02}\n"
				  "    train.batch_size: {distribution: q_uniform, min: 2, max: 16, q: 2}\n"
				  "    data.format: {distribution: categorical, values: [text, chat]}\n"
				  "    method.alpha: {value: 16}\n", &d), 0);
	struct sweep_space *sp = NULL;
	assert_int_equal(sweep_space_create(&sp, e, &d), 0);
	size_t n;
	const struct bayes_dim *dims = sweep_space_dims(sp, &n);
	assert_int_equal(n, 5); /* alpha is a constant */
	assert_int_equal(dims[0].kind, BAYES_REAL);
	assert_int_equal(dims[1].kind, BAYES_INT);
	assert_int_equal(dims[1].levels, 8);
	assert_int_equal(dims[4].kind, BAYES_CAT);
	double x[5] = {0.5, 3, 0.5, 1.0, 1};
	struct sweep_point pt;
	assert_int_equal(sweep_space_point(&pt, sp, x, 4, &d), 0);
	assert_int_equal(pt.index, 4);
	json_error_t je;
	json_t *o = json_loads(pt.params_json, 0, &je);
	/* log scale: the middle of 1e-4..1e-2 is 1e-3 */
	assert_true(fabs(json_number_value(json_object_get(o, "train.optimizer.lr")) - 1e-3) < 1e-12);
	assert_int_equal(json_integer_value(json_object_get(o, "method.rank")), 5);
	assert_true(fabs(json_number_value(json_object_get(o, "method.dropout")) - 0.1) < 1e-12);
	assert_true(json_number_value(json_object_get(o, "train.batch_size")) == 16);
	assert_string_equal(json_string_value(json_object_get(o, "data.format")), "chat");
	assert_true(json_number_value(json_object_get(o, "method.alpha")) == 16);
	json_decref(o);
	double back[5];
	assert_true(sweep_space_locate(back, sp, pt.params_json));
	assert_true(fabs(back[0] - 0.5) < 1e-12 && back[1] == 3 && back[4] == 1);
	assert_true(fabs(back[2] - 0.5) < 1e-9 && back[3] == 1.0);
	/* Restoring gives the identical point. */
	struct sweep_point again;
	assert_int_equal(sweep_space_restore(&again, sp, pt.params_json, 4, &d), 0);
	assert_string_equal(again.params_json, pt.params_json);
	assert_string_equal(again.cfg->canonical_json, pt.cfg->canonical_json);
	/* Values outside the space are not located. */
	assert_false(sweep_space_locate(back, sp, "{\"train.optimizer.lr\":1.0}"));
	sweep_point_clear(&pt);
	sweep_point_clear(&again);
	sweep_space_free(sp);
	experiment_free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_schema_rules),
		cmocka_unit_test(test_plan_order),
		cmocka_unit_test(test_hyperband_replay),
		cmocka_unit_test(test_bayes_sequence),
		cmocka_unit_test(test_bayes_resume),
		cmocka_unit_test(test_bayes_batch),
		cmocka_unit_test(test_bayes_finite),
		cmocka_unit_test(test_space_mapping),
		cmocka_unit_test(test_tpe_sequence),
		cmocka_unit_test(test_tpe_stopped_and_failed),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
