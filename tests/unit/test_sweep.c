/* Unit tests for runner/sweep.c and runner/identity.c: grid order, zip, every W&B
 * distribution, seeds as a dimension, determinism of points and run ids, --max-runs. */
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

#include "common/diag.h"
#include "common/util.h"
#include "runner/identity.h"
#include "runner/sweep.h"
#include "schema/schema.h"
#include "tests/unit/scratch.h"
#include "common/banned.h"

static const char *tmpdir; /* scratch_open */

static int setup(void **state)
{
	(void)state;
	tmpdir = scratch_open("sweep");
	scratch_put("m.gguf", "GGUF");
	scratch_put("train.jsonl", "{\"text\": \"a\"}\n");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	return scratch_close();
}

#define HEAD "name: t\nmodel:\n  base: m.gguf\ndata:\n  train: train.jsonl\n"

/* Writes HEAD + sweep text as tmpdir/name and expands it. */
static int expand(struct experiment **e, struct sweep_plan **plan, const char *name,
		  const char *sweep, size_t max_runs, struct diag *d)
{
	char text[4096];
	snprintf(text, sizeof text, HEAD "%s", sweep);
	scratch_put(name, text);
	char path[512];
	snprintf(path, sizeof path, "%s/%s", tmpdir, name);
	diag_init(d);
	*plan = NULL;
	int rc = experiment_load(e, path, NULL, 0, d);
	if (rc)
		return rc;
	return sweep_expand(plan, *e, max_runs, d);
}

static struct sweep_plan *expand_ok(struct experiment **e, const char *sweep)
{
	struct sweep_plan *plan = NULL;
	struct diag d;
	if (expand(e, &plan, "s.yaml", sweep, 0, &d) != 0)
		fail_msg("%s:%d:%d: %s (%s)", d.file, d.line, d.col, d.text, d.hint);
	return plan;
}

/* keys: sweep sweep.method sweep.parameters sweep.zip */
static void test_grid_order_and_zip(void **state)
{
	(void)state;
	struct experiment *e = NULL;
	struct sweep_plan *p = expand_ok(&e, "sweep:\n  parameters:\n"
					     "    train.optimizer.lr: [1.0e-4, 2.0e-4]\n"
					     "    method.dropout: {values: [0.0, 0.1, 0.2]}\n"
					     "  zip:\n    - {method.rank: [4, 8], method.alpha: [8, 16]}\n");
	assert_int_equal(p->n, 12);
	/* First declared dimension slowest, zip group last (fastest). */
	assert_string_equal(p->points[0].params_json,
			    "{\"method.alpha\":8.0,\"method.dropout\":0.0,\"method.rank\":4,"
			    "\"train.optimizer.lr\":0.0001}");
	assert_string_equal(p->points[1].params_json,
			    "{\"method.alpha\":16.0,\"method.dropout\":0.0,\"method.rank\":8,"
			    "\"train.optimizer.lr\":0.0001}");
	assert_string_equal(p->points[2].params_json,
			    "{\"method.alpha\":8.0,\"method.dropout\":0.1,\"method.rank\":4,"
			    "\"train.optimizer.lr\":0.0001}");
	assert_string_equal(p->points[11].params_json,
			    "{\"method.alpha\":16.0,\"method.dropout\":0.2,\"method.rank\":8,"
			    "\"train.optimizer.lr\":0.0002}");
	for (size_t i = 0; i < p->n; i++) {
		assert_int_equal(p->points[i].index, i);
		const struct config *c = p->points[i].cfg;
		assert_true(c->method.alpha == 2.0 * c->method.rank); /* zipped together */
	}
	assert_true(p->points[11].cfg->train.optimizer.lr == 2e-4);
	sweep_plan_free(p);
	experiment_free(e);

	/* No sweep: one point, the base config. */
	p = expand_ok(&e, "");
	assert_int_equal(p->n, 1);
	assert_string_equal(p->points[0].params_json, "{}");
	assert_string_equal(p->points[0].cfg->config_hash, experiment_config(e)->config_hash);
	sweep_plan_free(p);
	experiment_free(e);
}

/* Expands a random sweep over one parameter; returns the values. */
static double *draw_values(const char *param, const char *spec, int64_t samples, size_t *n)
{
	char text[1024];
	snprintf(text, sizeof text, "sweep:\n  method: random\n  samples: %lld\n  seed: 3\n"
		 "  parameters:\n    %s: %s\n", (long long)samples, param, spec);
	struct experiment *e = NULL;
	struct sweep_plan *p = expand_ok(&e, text);
	double *v = calloc(p->n, sizeof *v);
	assert_non_null(v);
	char key[128];
	snprintf(key, sizeof key, "\"%s\":", param);
	for (size_t i = 0; i < p->n; i++) {
		const char *at = strstr(p->points[i].params_json, key);
		assert_non_null(at);
		v[i] = strtod(at + strlen(key), NULL);
	}
	*n = p->n;
	sweep_plan_free(p);
	experiment_free(e);
	return v;
}

static void test_distributions(void **state)
{
	(void)state;
	size_t n;
	double *v;
	/* values (plain list and map form) and categorical with probabilities. */
	v = draw_values("method.rank", "[4, 8, 16]", 300, &n);
	int seen[3] = {0};
	for (size_t i = 0; i < n; i++)
		seen[v[i] == 4 ? 0 : v[i] == 8 ? 1 : v[i] == 16 ? 2 : (fail(), 0)]++;
	assert_true(seen[0] > 60 && seen[1] > 60 && seen[2] > 60);
	free(v);
	v = draw_values("method.rank", "{distribution: categorical, values: [4, 8], "
					"probabilities: [0.9, 0.1]}", 1000, &n);
	size_t fours = 0;
	for (size_t i = 0; i < n; i++)
		fours += v[i] == 4;
	assert_true(fours > 850 && fours < 950);
	free(v);
	v = draw_values("method.rank", "{value: 12}", 5, &n);
	for (size_t i = 0; i < n; i++)
		assert_true(v[i] == 12);
	free(v);
	/* int_uniform: integers, inclusive bounds, both ends reached. */
	v = draw_values("method.rank", "{distribution: int_uniform, min: 2, max: 5}", 400, &n);
	int lo = 0, hi = 0;
	for (size_t i = 0; i < n; i++) {
		assert_true(v[i] >= 2 && v[i] <= 5 && v[i] == floor(v[i]));
		lo += v[i] == 2;
		hi += v[i] == 5;
	}
	assert_true(lo > 50 && hi > 50);
	free(v);
	/* uniform: in [min, max), mean near the middle. */
	v = draw_values("method.dropout", "{distribution: uniform, min: 0.1, max: 0.3}", 2000, &n);
	double sum = 0;
	for (size_t i = 0; i < n; i++) {
		assert_true(v[i] >= 0.1 && v[i] < 0.3);
		sum += v[i];
	}
	assert_true(fabs(sum / (double)n - 0.2) < 0.01);
	free(v);
	/* log_uniform_values: log is uniform, so the median is the geometric mean. */
	v = draw_values("train.optimizer.lr",
			"{distribution: log_uniform_values, min: 1.0e-5, max: 1.0e-3}", 2000, &n);
	size_t below = 0;
	for (size_t i = 0; i < n; i++) {
		assert_true(v[i] >= 1e-5 && v[i] <= 1e-3);
		below += v[i] < 1e-4;
	}
	assert_true(below > 900 && below < 1100);
	free(v);
	/* q_uniform: multiples of q, printed without binary noise. */
	v = draw_values("method.dropout", "{distribution: q_uniform, min: 0, max: 0.5, q: 0.05}",
			500, &n);
	for (size_t i = 0; i < n; i++) {
		double k = v[i] / 0.05;
		assert_true(fabs(k - floor(k + 0.5)) < 1e-9);
		assert_true(v[i] >= 0 && v[i] < 0.5 + 1e-12);
	}
	free(v);
	/* q_log_uniform_values: rounded to q, within the range (after rounding). */
	v = draw_values("train.batch_size",
			"{distribution: q_log_uniform_values, min: 4, max: 256, q: 4}", 500, &n);
	for (size_t i = 0; i < n; i++)
		assert_true(fmod(v[i], 4) == 0 && v[i] >= 4 && v[i] <= 256);
	free(v);
	/* normal: mean and spread. */
	v = draw_values("train.optimizer.weight_decay", "{distribution: normal, mu: 2, sigma: 0.1}",
			4000, &n);
	double m = 0, s2 = 0;
	for (size_t i = 0; i < n; i++)
		m += v[i];
	m /= (double)n;
	for (size_t i = 0; i < n; i++)
		s2 += (v[i] - m) * (v[i] - m);
	assert_true(fabs(m - 2) < 0.01);
	assert_true(fabs(sqrt(s2 / (double)n) - 0.1) < 0.01);
	free(v);
	/* min/max without a distribution: int_uniform for integers, uniform otherwise. */
	v = draw_values("method.rank", "{min: 1, max: 3}", 50, &n);
	for (size_t i = 0; i < n; i++)
		assert_true(v[i] == floor(v[i]));
	free(v);
}

/* keys: sweep.method sweep.samples sweep.seed */
static void test_random_deterministic_and_seeds(void **state)
{
	(void)state;
	const char *sw = "sweep:\n  method: random\n  samples: 4\n  seed: 99\n  parameters:\n"
			 "    train.optimizer.lr: {distribution: log_uniform_values, min: 1.0e-5, "
			 "max: 1.0e-3}\n    seed: [1, 2, 3]\n";
	struct experiment *e1 = NULL, *e2 = NULL;
	struct sweep_plan *a = expand_ok(&e1, sw), *b = expand_ok(&e2, sw);
	assert_int_equal(a->n, 12); /* 4 draws x 3 seeds */
	for (size_t i = 0; i < a->n; i++) {
		assert_string_equal(a->points[i].params_json, b->points[i].params_json);
		assert_string_equal(a->points[i].cfg->config_hash, b->points[i].cfg->config_hash);
		char ia[65], ib[65], ida[13];
		struct diag d;
		diag_init(&d);
		assert_int_equal(run_identity(ia, a->points[i].cfg, &d), 0);
		assert_int_equal(run_identity(ib, b->points[i].cfg, &d), 0);
		assert_string_equal(ia, ib);
		run_id_from_identity(ida, ia);
		assert_int_equal(strlen(ida), 12);
		assert_memory_equal(ida, ia, 12);
	}
	/* Seeds repeat each draw: same lr, seeds 1, 2, 3. */
	assert_int_equal(a->points[0].cfg->seed, 1);
	assert_int_equal(a->points[2].cfg->seed, 3);
	assert_true(a->points[0].cfg->train.optimizer.lr == a->points[2].cfg->train.optimizer.lr);
	assert_true(a->points[0].cfg->train.optimizer.lr != a->points[3].cfg->train.optimizer.lr);
	/* Pinned first draw: the same on every machine (xoshiro256** and IEEE log/exp). */
	assert_string_equal(a->points[0].params_json,
			    "{\"seed\":1,\"train.optimizer.lr\":0.00004258401977333378}");
	sweep_plan_free(a);
	sweep_plan_free(b);
	experiment_free(e2);
	/* Another sweep seed gives other draws. */
	const char *sw2 = "sweep:\n  method: random\n  samples: 4\n  seed: 100\n  parameters:\n"
			  "    train.optimizer.lr: {distribution: log_uniform_values, min: 1.0e-5, "
			  "max: 1.0e-3}\n";
	b = expand_ok(&e2, sw2);
	assert_string_not_equal(b->points[0].params_json,
				"{\"train.optimizer.lr\":0.00004258401977333378}");
	sweep_plan_free(b);
	experiment_free(e2);
	experiment_free(e1);
}

static void test_errors_and_max_runs(void **state)
{
	(void)state;
	struct experiment *e = NULL;
	struct sweep_plan *p = NULL;
	struct diag d;
	/* 101 x 100 = 10,100 > 10,000. */
	const char *big = "sweep:\n  parameters:\n"
			  "    method.rank: {distribution: int_uniform, min: 1, max: 101}\n"
			  "    train.batch_size: {distribution: int_uniform, min: 1, max: 100}\n";
	assert_int_equal(expand(&e, &p, "big.yaml", big, 0, &d), FT_EINVAL);
	assert_string_equal(d.text, "the sweep expands to 10100 runs, more than the limit of 10000");
	assert_non_null(strstr(d.hint, "--max-runs 10100"));
	size_t n = 0;
	assert_int_equal(sweep_count(&n, e, &d), 0);
	assert_int_equal(n, 10100);
	experiment_free(e);
	/* A raised limit is honoured (small sizes to keep the test short). */
	const char *twelve = "sweep:\n  parameters:\n    method.rank: {distribution: int_uniform, "
			     "min: 1, max: 12}\n";
	assert_int_equal(expand(&e, &p, "t.yaml", twelve, 11, &d), FT_EINVAL);
	experiment_free(e);
	assert_int_equal(expand(&e, &p, "t.yaml", twelve, 12, &d), 0);
	assert_int_equal(p->n, 12);
	sweep_plan_free(p);
	experiment_free(e);
	/* Products that overflow size_t saturate and are refused. */
	char huge[2048] = "sweep:\n  parameters:\n";
	const char *paths[] = {"method.rank", "train.batch_size", "train.grad_accum",
			       "train.eval_every", "train.checkpoint_every", "eval.samples"};
	for (size_t i = 0; i < 6; i++) {
		size_t used = strlen(huge);
		snprintf(huge + used, sizeof huge - used,
			 "    %s: {distribution: int_uniform, min: 1, max: 4000}\n", paths[i]);
	}
	assert_int_equal(expand(&e, &p, "h.yaml", huge, 0, &d), FT_EINVAL);
	assert_non_null(strstr(d.text, "more than the limit"));
	experiment_free(e);
	/* Values are validated as if written in the file, naming the entry and value. */
	assert_int_equal(expand(&e, &p, "v.yaml", "sweep:\n  parameters:\n    train.batch_size: "
						  "[8, -1]\n", 0, &d), FT_EINVAL);
	assert_string_equal(d.text, "sweep entry 'train.batch_size' value -1: 'train.batch_size' "
				    "is -1, out of range: expected [1, 65536]");
	assert_int_equal(d.line, 8);
	assert_int_equal(d.col, 27);
	experiment_free(e);
	assert_int_equal(expand(&e, &p, "v.yaml", "sweep:\n  parameters:\n    method.type: [lora, "
						  "full]\n", 0, &d), 0); /* full with defaults only */
	assert_int_equal(p->n, 2);
	assert_int_equal(p->points[1].cfg->method.type, METHOD_FULL);
	sweep_plan_free(p);
	experiment_free(e);
	assert_int_equal(expand(&e, &p, "v.yaml", "sweep:\n  parameters:\n    data.format: [chat, "
						  "chatml]\n", 0, &d), FT_EINVAL);
	assert_string_equal(d.hint, "did you mean 'chat'?");
	experiment_free(e);
	assert_int_equal(expand(&e, &p, "v.yaml", "sweep:\n  parameters:\n    gates: [1]\n", 0, &d),
			 FT_EINVAL);
	assert_non_null(strstr(d.text, "not a key a sweep can set"));
	experiment_free(e);
	assert_int_equal(expand(&e, &p, "v.yaml", "sweep:\n  parameters:\n    method.rank: [4]\n"
						  "  zip:\n    - {method.rank: [4]}\n", 0, &d),
			 FT_EINVAL);
	assert_non_null(strstr(d.text, "swept twice"));
	experiment_free(e);
	assert_int_equal(expand(&e, &p, "v.yaml", "sweep:\n  method: random\n  samples: 2\n"
						  "  parameters:\n    method.rank: {distribution: uniform, "
						  "min: 1, max: 2.5}\n", 0, &d), FT_EINVAL);
	assert_non_null(strstr(d.text, "must be a whole number"));
	experiment_free(e);
}

/* A sweep over method.type compares methods on the same file: each point keeps only the
 * file's keys of its own method (LoRA's rank does not make the IA3 point invalid, and the
 * IA3 point's canonical config holds no rank), a key that applies to none of the swept
 * methods is refused where it is written, and without the sweep the same key is refused
 * for the wrong method. */
/* keys: method.type */
static void test_method_type_sweep(void **state)
{
	(void)state;
	struct experiment *e = NULL;
	struct sweep_plan *p = NULL;
	struct diag d;
	const char *cmp = "method:\n  type: lora\n  rank: 4\n  alpha: 8\n"
			  "  num_virtual_tokens: 3\n  reduction_factor: 8\n"
			  "sweep:\n  parameters:\n    method.type: [lora, ia3, prefix, adapter]\n";
	p = expand_ok(&e, cmp);
	assert_int_equal(p->n, 4);
	const enum method_type want[] = {METHOD_LORA, METHOD_IA3, METHOD_PREFIX, METHOD_ADAPTER};
	for (size_t i = 0; i < 4; i++)
		assert_int_equal(p->points[i].cfg->method.type, want[i]);
	assert_int_equal(p->points[0].cfg->method.rank, 4);
	assert_true(p->points[0].cfg->method.alpha == 8);
	assert_null(strstr(p->points[1].cfg->canonical_json, "\"rank\""));
	assert_null(strstr(p->points[1].cfg->canonical_json, "num_virtual_tokens"));
	assert_non_null(strstr(p->points[2].cfg->canonical_json, "\"num_virtual_tokens\":3"));
	assert_null(strstr(p->points[2].cfg->canonical_json, "\"alpha\""));
	assert_true(p->points[3].cfg->method.reduction_factor == 8);
	assert_null(strstr(p->points[3].cfg->canonical_json, "\"rank\""));
	sweep_plan_free(p);
	experiment_free(e);
	/* a method sweep zipped with another key (each entry is also checked alone) */
	p = expand_ok(&e, "method:\n  type: lora\n  rank: 4\n  num_virtual_tokens: 3\n"
			  "sweep:\n  zip:\n    - method.type: [lora, prefix]\n"
			  "      train.optimizer.lr: [0.001, 0.01]\n");
	assert_int_equal(p->n, 2);
	assert_int_equal(p->points[1].cfg->method.type, METHOD_PREFIX);
	assert_true(p->points[1].cfg->train.optimizer.lr == 0.01);
	assert_null(strstr(p->points[1].cfg->canonical_json, "\"rank\""));
	sweep_plan_free(p);
	experiment_free(e);
	/* a key that no swept method reads */
	assert_int_equal(expand(&e, &p, "m.yaml", "method:\n  type: ia3\n  rank: 4\n"
						  "sweep:\n  parameters:\n    method.type: [ia3, prefix]\n",
				0, &d), FT_EINVAL);
	assert_non_null(strstr(d.text, "'method.rank' applies only to method.type lora|dora"));
	assert_int_equal(d.line, 8);
	experiment_free(e);
	/* a point that sets another method's key itself is refused */
	assert_int_equal(expand(&e, &p, "z.yaml", "sweep:\n  zip:\n    - method.type: [lora, ia3]\n"
						  "      method.rank: [4, 8]\n", 0, &d), FT_EINVAL);
	assert_string_equal(d.text, "sweep point 1 (method.type=ia3, method.rank=8): 'method.rank' "
				    "applies only to method.type lora or dora, but method.type is ia3");
	experiment_free(e);
	/* without a method sweep, the wrong method's key is refused */
	assert_int_equal(expand(&e, &p, "n.yaml", "method:\n  type: ia3\n  rank: 4\n", 0, &d),
			 FT_EINVAL);
	assert_non_null(strstr(d.text, "method.rank"));
	experiment_free(e);
}

static void test_identity_content_hashes(void **state)
{
	(void)state;
	scratch_put("hf/config.json", "{}");
	scratch_put("hf/model.safetensors", "weights");
	scratch_put("hf/sub/extra.txt", "x");
	scratch_put("i1.yaml", "name: t\nmodel:\n  base: hf\ndata:\n  train: train.jsonl\n");
	scratch_put("data2/train.jsonl", "{\"text\": \"other\"}\n");
	scratch_put("i2.yaml", "name: t\nmodel:\n  base: hf\ndata:\n  train: data2/train.jsonl\n");
	char p1[512], p2[512];
	snprintf(p1, sizeof p1, "%s/i1.yaml", tmpdir);
	snprintf(p2, sizeof p2, "%s/i2.yaml", tmpdir);
	struct experiment *a = NULL, *b = NULL;
	struct diag d;
	diag_init(&d);
	assert_int_equal(experiment_load(&a, p1, NULL, 0, &d), 0);
	assert_int_equal(experiment_load(&b, p2, NULL, 0, &d), 0);
	char ia[65], ib[65], again[65];
	assert_int_equal(run_identity(ia, experiment_config(a), &d), 0);
	assert_int_equal(run_identity(ib, experiment_config(b), &d), 0);
	assert_string_not_equal(ia, ib);
	assert_int_equal(run_identity(again, experiment_config(a), &d), 0);
	assert_string_equal(ia, again);
	/* A directory hash covers every file, by name and content. */
	char h1[65], h2[65], dir[512];
	snprintf(dir, sizeof dir, "%s/hf", tmpdir);
	assert_int_equal(content_hash(h1, dir, &d), 0);
	scratch_put("hf2/config.json", "{}");
	scratch_put("hf2/model.safetensors", "weights");
	scratch_put("hf2/sub/extra.txt", "y");
	snprintf(dir, sizeof dir, "%s/hf2", tmpdir);
	assert_int_equal(content_hash(h2, dir, &d), 0);
	assert_string_not_equal(h1, h2);
	/* Cached per path: a second call does not read the file again. */
	snprintf(dir, sizeof dir, "%s/hf2/sub/extra.txt", tmpdir);
	assert_int_equal(content_hash(h1, dir, &d), 0);
	scratch_put("hf2/sub/extra.txt", "changed");
	assert_int_equal(content_hash(h2, dir, &d), 0);
	assert_string_equal(h1, h2);
	/* A missing file is an error naming it. */
	snprintf(dir, sizeof dir, "%s/nothere.gguf", tmpdir);
	assert_int_equal(content_hash(h1, dir, &d), FT_EINVAL);
	assert_non_null(strstr(d.file, "nothere.gguf"));
	experiment_free(a);
	experiment_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_grid_order_and_zip),
		cmocka_unit_test(test_distributions),
		cmocka_unit_test(test_random_deterministic_and_seeds),
		cmocka_unit_test(test_errors_and_max_runs),
		cmocka_unit_test(test_method_type_sweep),
		cmocka_unit_test(test_identity_content_hashes),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
