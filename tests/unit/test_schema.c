/* Unit tests for schema/: canonical numbers and hashes, extends merging, overrides,
 * struct config filling, the untrusted-input rules, and round trips of the YAML dump. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/diag.h"
#include "common/util.h"
#include "schema/internal.h"
#include "schema/schema.h"
#include "tests/unit/scratch.h"
#include "common/banned.h"

static const char *tmpdir; /* scratch_open */

static int setup(void **state)
{
	(void)state;
	tmpdir = scratch_open("schema");
	scratch_put("m.gguf", "GGUF");
	scratch_put("train.jsonl", "{\"text\": \"a\"}\n");
	scratch_put("test.jsonl", "{\"text\": \"b\"}\n");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	return scratch_close();
}

/* Loads tmpdir/rel with overrides; returns the code and leaves the message in d. */
static int load(struct experiment **e, const char *rel, const char *const *ov, size_t n,
		struct diag *d)
{
	char path[512];
	snprintf(path, sizeof path, "%s/%s", tmpdir, rel);
	diag_init(d);
	return experiment_load(e, path, ov, n, d);
}

static struct experiment *load_ok(const char *rel, const char *const *ov, size_t n)
{
	struct experiment *e = NULL;
	struct diag d;
	int rc = load(&e, rel, ov, n, &d);
	if (rc)
		fail_msg("load %s: %s:%d:%d: %s (%s)", rel, d.file, d.line, d.col, d.text, d.hint);
	return e;
}

/* Loads text as tmpdir/x.yaml expecting an error whose text contains want. */
static void expect_error(const char *text, const char *want, int line, int col)
{
	scratch_put("x.yaml", text);
	struct experiment *e = NULL;
	struct diag d;
	int rc = load(&e, "x.yaml", NULL, 0, &d);
	assert_int_equal(rc, FT_EINVAL);
	assert_null(e);
	if (!strstr(d.text, want))
		fail_msg("message '%s' lacks '%s'", d.text, want);
	if (line)
		assert_int_equal(d.line, line);
	if (col)
		assert_int_equal(d.col, col);
}

/* Five lines; what tests append starts on line 6 (and may continue the data map). */
#define HEAD "name: t\nmodel:\n  base: m.gguf\ndata:\n  train: train.jsonl\n"

static void test_format_double(void **state)
{
	(void)state;
	char b[40];
	struct { double v; const char *want; } cases[] = {
		{2.0e-4, "0.0002"}, {0.0002, "0.0002"}, {1e-8, "1e-8"}, {16, "16.0"},
		{0.1 + 0.2, "0.30000000000000004"}, {-3.5, "-3.5"}, {1e20, "1e20"},
		{123456789012345678.0, "1.2345678901234568e17"}, {0.00001, "0.00001"},
		{0.000001, "1e-6"}, {1.5e300, "1.5e300"}, {0, "0.0"}, {100, "100.0"},
		{2.5e-7, "2.5e-7"}, {1e16, "10000000000000000.0"}, {1e17, "1e17"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		schema_format_double(b, sizeof b, cases[i].v);
		assert_string_equal(b, cases[i].want);
		assert_true(strtod(b, NULL) == cases[i].v);
	}
}

static void test_canonical_hash_stable(void **state)
{
	(void)state;
	/* Same config written differently: order, number spelling, flow vs block, comments,
	 * defaults written out, description changed. */
	scratch_put("a.yaml",
		    "name: t\ndescription: one\nmodel: {base: m.gguf}\ndata: {train: train.jsonl}\n"
		    "train:\n  optimizer: {lr: 2.0e-4, eps: 1.0e-8}\n  batch_size: 8\n");
	scratch_put("b.yaml",
		    "# a comment\ntrain:\n  batch_size: 8\n  optimizer:\n    eps: 0.00000001\n"
		    "    lr: 0.0002\n    type: adamw\ndata:\n  train: ./train.jsonl\n"
		    "model:\n  base: sub/../m.gguf\n  context: 512\nname: t\ndescription: two\n"
		    "method: {rank: 8, alpha: 16.0}\n");
	scratch_put("c.yaml", "name: t\nmodel: {base: m.gguf}\ndata: {train: train.jsonl}\n"
			      "train: {optimizer: {lr: 3.0e-4}}\n");
	struct experiment *a = load_ok("a.yaml", NULL, 0), *b = load_ok("b.yaml", NULL, 0);
	struct experiment *c = load_ok("c.yaml", NULL, 0);
	const struct config *ca = experiment_config(a), *cb = experiment_config(b);
	assert_string_equal(ca->canonical_json, cb->canonical_json);
	assert_string_equal(ca->config_hash, cb->config_hash);
	assert_string_not_equal(ca->config_hash, experiment_config(c)->config_hash);
	/* The spec (whole file) includes the description, so it differs. */
	assert_string_not_equal(experiment_spec_hash(a), experiment_spec_hash(b));
	/* Canonical JSON: sorted keys, normalised numbers, ints as ints. */
	assert_non_null(strstr(ca->canonical_json, "\"lr\":0.0002"));
	assert_non_null(strstr(ca->canonical_json, "\"eps\":1e-8"));
	assert_non_null(strstr(ca->canonical_json, "\"batch_size\":8,"));
	assert_non_null(strstr(ca->canonical_json, "\"alpha\":16.0"));
	assert_null(strstr(ca->canonical_json, "description"));
	assert_true(strncmp(ca->canonical_json, "{\"backend\":", 11) == 0);
	/* Pinned: a change of the canonical form changes every run id; make it deliberate.
	 * (Changed by train.objective and data.fields.chosen/rejected/choices/answer.) */
	assert_string_equal(ca->config_hash,
			    "7446b52a4ed63156782587e4a29e4e91bab97c16a39f84324944fb8f34acd776");
	experiment_free(a);
	experiment_free(b);
	experiment_free(c);
}

static void test_yaml_dump_round_trip(void **state)
{
	(void)state;
	scratch_put("r.yaml",
		    HEAD "  format: completion\n  test: {from: train, fraction: 0.25}\n"
		    "  system: \"Say: yes, #1\"\n"
		    "  template: \"<s>{prompt}\\n{response}\"\n"
		    "eval: {metrics: [loss, exact_match], generate: {stop: [\"\\n\\n\", \"yes\", \"\"]}}\n"
		    "gates:\n  - {metric: test.loss, max: 2.5}\n"
		    "sweep: {parameters: {method.rank: [4, 8]}}\n");
	struct experiment *e = load_ok("r.yaml", NULL, 0);
	char path[512];
	snprintf(path, sizeof path, "%s/dump.yaml", tmpdir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(experiment_write_yaml(f, e), 0);
	fclose(f);
	struct experiment *r = load_ok("dump.yaml", NULL, 0);
	assert_string_equal(experiment_spec_json(e), experiment_spec_json(r));
	assert_string_equal(experiment_config(e)->config_hash, experiment_config(r)->config_hash);
	experiment_free(r);
	/* The config alone also reloads once it has a name again. */
	f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(config_write_yaml(f, experiment_config(e)), 0);
	fclose(f);
	r = load_ok("dump.yaml", NULL, 0);
	assert_string_equal(experiment_config(e)->config_hash, experiment_config(r)->config_hash);
	experiment_free(r);
	experiment_free(e);
}

/* keys: extends */
static void test_extends_merge(void **state)
{
	(void)state;
	scratch_put("base/common.yaml",
	    "name: base\nseed: 5\nmodel:\n  base: ../m.gguf\n  context: 256\n"
	    "data:\n  train: ../train.jsonl\n  test: ../test.jsonl\n"
	    "method:\n  rank: 4\n  targets: [q_proj, k_proj, v_proj]\n"
	    "eval: {metrics: [loss, f1]}\n");
	scratch_put("child.yaml", "extends: base/common.yaml\nname: child\nmethod:\n  alpha: 32\n"
				  "  targets: [o_proj]\ndata:\n  test: null\n  validation: test.jsonl\n");
	struct experiment *e = load_ok("child.yaml", NULL, 0);
	const struct config *c = experiment_config(e);
	assert_string_equal(c->name, "child");
	assert_int_equal(c->seed, 5);
	assert_int_equal(c->model.context, 256);
	assert_int_equal(c->method.rank, 4);                 /* kept from the base */
	assert_true(c->method.alpha == 32.0);                /* added by the child */
	assert_int_equal(c->method.targets.n, 1);            /* lists replace */
	assert_string_equal(c->method.targets.items[0], "o_proj");
	assert_false(c->data.test.present);                  /* null removes */
	assert_int_equal(c->eval.metrics.n, 2);
	/* Paths in the base resolve against the base's directory. */
	char want[512];
	snprintf(want, sizeof want, "%s/m.gguf", tmpdir);
	char *norm = path_normalize(want);
	assert_string_equal(c->model.base, norm);
	free(norm);
	experiment_free(e);

	/* A cycle is named with the files in it. */
	scratch_put("cyc1.yaml", "extends: cyc2.yaml\n" HEAD);
	scratch_put("cyc2.yaml", "extends: cyc1.yaml\nseed: 1\n");
	struct diag d;
	assert_int_equal(load(&e, "cyc1.yaml", NULL, 0, &d), FT_EINVAL);
	assert_non_null(strstr(d.text, "cycle"));
	assert_non_null(strstr(d.text, "cyc1.yaml -> "));
	assert_int_equal(d.line, 1);
	/* A self-extension is a cycle too. */
	scratch_put("self.yaml", "extends: self.yaml\n" HEAD);
	assert_int_equal(load(&e, "self.yaml", NULL, 0, &d), FT_EINVAL);
	assert_non_null(strstr(d.text, "cycle"));
	/* An error inside the base names the base file. */
	scratch_put("bad/base.yaml", "method: {rank: zero}\n");
	scratch_put("usebad.yaml", "extends: bad/base.yaml\n" HEAD);
	assert_int_equal(load(&e, "usebad.yaml", NULL, 0, &d), FT_EINVAL);
	assert_non_null(strstr(d.file, "bad/base.yaml"));
	assert_int_equal(d.line, 1);
	assert_int_equal(d.col, 16);
}

static void test_overrides(void **state)
{
	(void)state;
	scratch_put("o.yaml", HEAD "  format: completion\nmethod: {rank: 8}\n");
	const char *ov[] = {"method.rank=32", "train.optimizer.lr=5e-5", "data.packing=true",
			    "method.targets=[q_proj, o_proj]", "data.system=Be brief: always.",
			    "data.validation={from: train, fraction: 0.2}", "method.rank=16"};
	struct experiment *e = load_ok("o.yaml", ov, 7);
	const struct config *c = experiment_config(e);
	assert_int_equal(c->method.rank, 16); /* the last one wins */
	assert_true(c->train.optimizer.lr == 5e-5);
	assert_true(c->data.packing);
	assert_int_equal(c->method.targets.n, 2);
	assert_string_equal(c->data.system, "Be brief: always.");
	assert_true(c->data.validation.present);
	assert_true(c->data.validation.fraction == 0.2);
	experiment_free(e);

	struct diag d;
	const char *bad1[] = {"method.rank=abc"};
	assert_int_equal(load(&e, "o.yaml", bad1, 1, &d), FT_EINVAL);
	assert_string_equal(d.text, "override '-s method.rank=abc': 'method.rank' must be an "
				    "integer, not 'abc'");
	const char *bad2[] = {"train.optimizr.lr=1"};
	assert_int_equal(load(&e, "o.yaml", bad2, 1, &d), FT_EINVAL);
	assert_non_null(strstr(d.text, "unknown key 'train.optimizr.lr'"));
	assert_string_equal(d.hint, "did you mean 'train.optimizer.lr'?");
	const char *bad3[] = {"data.packing=yes"};
	assert_int_equal(load(&e, "o.yaml", bad3, 1, &d), FT_EINVAL);
	assert_non_null(strstr(d.hint, "write true"));
	const char *bad4[] = {"=3"};
	assert_int_equal(load(&e, "o.yaml", bad4, 1, &d), FT_EINVAL);
	const char *bad5[] = {"method.rank=[1"};
	assert_int_equal(load(&e, "o.yaml", bad5, 1, &d), FT_EINVAL);
	assert_non_null(strstr(d.text, "override '-s method.rank=[1'"));
	const char *bad6[] = {"method.type=full"}; /* rank is written in the file */
	assert_int_equal(load(&e, "o.yaml", bad6, 1, &d), FT_EINVAL);
	assert_non_null(strstr(d.text, "applies only to method.type lora"));
}

static void test_config_fill(void **state)
{
	(void)state;
	scratch_put("p.yaml",
	    "name: support-lora\nseed: 42\nmodel: {base: m.gguf, context: 512}\n"
	    "data:\n  format: completion\n  train: train.jsonl\n  validation: {from: train, fraction: 0.1}\n"
	    "  test: test.jsonl\n  fields: {prompt: question, response: answer}\n"
	    "  template: chatml\n  max_length: 256\n  limit: {train: 2000, test: 200}\n"
	    "method: {type: lora, rank: 8, alpha: 16, dropout: 0.05, targets: [q_proj, v_proj]}\n"
	    "train:\n  epochs: 2\n  optimizer: {lr: 2.0e-4, betas: [0.9, 0.999]}\n"
	    "  schedule: {type: linear, warmup_steps: 10}\n  eval_every: 50\n"
	    "  early_stopping: {metric: validation.loss, patience: 3}\n  nonfinite: skip_step\n"
	    "eval:\n  metrics: [loss, exact_match]\n  generate: {max_new_tokens: 48, stop: [\"\\n\"]}\n"
	    "backend: {type: exec, command: [python3, t.py, \"{method.rank}\"], timeout: 2h}\n"
	    "sweep: {objective: {metric: test.exact_match, goal: minimize}}\n"
	    "gates:\n  - {metric: test.exact_match, min: 0.8}\n"
	    "  - {metric: test.loss, vs: baseline, max_regression: 0.02}\n");
	struct experiment *e = load_ok("p.yaml", NULL, 0);
	const struct config *c = experiment_config(e);
	assert_string_equal(experiment_name(e), "support-lora");
	assert_int_equal(c->seed, 42);
	assert_int_equal(c->data.format, DATA_COMPLETION);
	assert_true(c->data.validation.present);
	assert_null(c->data.validation.path);
	assert_string_equal(c->data.validation.from, "train");
	assert_true(c->data.validation.fraction == 0.1);
	assert_int_equal(c->data.validation.seed, 42);
	assert_non_null(strstr(c->data.test.path, "/test.jsonl"));
	assert_true(c->data.test.path[0] == '/');
	assert_string_equal(c->data.fields.prompt, "question");
	assert_string_equal(c->data.fields.completion, "answer"); /* the response alias */
	assert_string_equal(c->data.fields.messages, "messages");
	assert_string_equal(c->data.template_name, "chatml");
	assert_null(c->data.template_custom);
	assert_int_equal(c->data.max_length, 256);
	assert_int_equal(c->data.limit_train, 2000);
	assert_int_equal(c->data.limit_validation, 0);
	assert_int_equal(c->method.type, METHOD_LORA);
	assert_true(c->method.dropout == 0.05);
	assert_false(c->method.all_linear);
	assert_int_equal(c->train.epochs, 2);
	assert_int_equal(c->train.steps, 0);
	assert_true(c->train.optimizer.beta2 == 0.999);
	assert_int_equal(c->train.schedule.type, SCHEDULE_LINEAR);
	assert_true(c->train.early_stopping.enabled);
	assert_string_equal(c->train.early_stopping.metric, "validation.loss");
	assert_int_equal(c->train.nonfinite, NONFINITE_SKIP_STEP);
	/* eval.splits defaults to the declared of validation and test. */
	assert_int_equal(c->eval.splits.n, 2);
	assert_string_equal(c->eval.generate.stop.items[0], "\n");
	assert_int_equal(c->backend.type, BACKEND_EXEC);
	assert_int_equal(c->backend.command.n, 3);
	assert_string_equal(c->backend.command.items[2], "{method.rank}");
	assert_true(c->backend.timeout_s == 7200.0);
	assert_non_null(c->backend.workdir);
	assert_int_equal(c->n_gates, 2);
	assert_int_equal(c->gates[0].vs, GATE_ABSOLUTE);
	assert_true(c->gates[0].has_min && c->gates[0].min == 0.8);
	assert_int_equal(c->gates[1].vs, GATE_VS_BASELINE);
	assert_true(c->gates[1].has_max_regression);
	assert_int_equal(c->gates[1].line, 28);
	assert_string_equal(c->objective_metric, "test.exact_match");
	assert_int_equal(c->objective_goal, GOAL_MINIMIZE);
	assert_int_equal((int)strlen(c->config_hash), 64);
	experiment_free(e);

	/* Defaults: epochs 1, max_length = context, no early stopping, lora keys only
	 * in lora, steps instead of epochs. */
	expect_error("name: t\nname: u\n", "duplicate key 'name' (first at 1:1)", 2, 1);
	scratch_put("q.yaml",
		    "name: t\nmodel: {base: m.gguf, context: 300}\ndata: {train: train.jsonl}\n"
		    "method: {type: full}\ntrain: {steps: 50}\n");
	e = load_ok("q.yaml", NULL, 0);
	c = experiment_config(e);
	assert_int_equal(c->data.max_length, 300);
	assert_int_equal(c->train.steps, 50);
	assert_int_equal(c->train.epochs, 0);
	assert_false(c->train.early_stopping.enabled);
	assert_int_equal(c->method.rank, 0);
	assert_null(strstr(c->canonical_json, "rank"));
	assert_int_equal(c->eval.splits.n, 0);
	experiment_free(e);
}

static void test_untrusted_input(void **state)
{
	(void)state;
	expect_error(HEAD "x: &a 1\ny: *a\n", "anchors and aliases", 6, 4);
	expect_error(HEAD "---\nname: u\n", "second YAML document", 6, 1);
	expect_error(HEAD "method:\n  rank: 1\n  rank: 2\n", "first at 7:3", 8, 3);
	expect_error(HEAD "  packing: on\n", "must be true or false", 6, 12);
	expect_error(HEAD "  packing: Y\n", "must be true or false", 6, 12);
	expect_error(HEAD "description: off\n", "YAML 1.1 boolean", 6, 14);
	expect_error(HEAD "rank: !!str 8\n", "tags are not allowed", 6, 7);
	expect_error("", "empty", 0, 0);
	expect_error("[1, 2]\n", "must be a map", 1, 1);
	expect_error("name: t\x01\n", "invalid YAML", 0, 0);
	expect_error("name: \"\\xff\"\n" "x: \xff\n", "invalid YAML", 0, 0);
	/* Depth cap. */
	char deep[200];
	size_t k = 0;
	k += (size_t)snprintf(deep, sizeof deep, "name: ");
	for (int i = 0; i < 40; i++)
		deep[k++] = '[';
	for (int i = 0; i < 40; i++)
		deep[k++] = ']';
	deep[k] = '\0';
	expect_error(deep, "nesting is deeper", 1, 0);
	/* Size cap, from a buffer too. */
	size_t big = SCHEMA_MAX_FILE_BYTES + 10;
	char *buf = malloc(big);
	assert_non_null(buf);
	memset(buf, '#', big);
	struct diag d;
	diag_init(&d);
	struct experiment *e = NULL;
	assert_int_equal(experiment_load_buffer(&e, "big.yaml", buf, big, NULL, 0, &d), FT_EINVAL);
	assert_non_null(strstr(d.text, "larger than the limit"));
	/* NUL bytes and garbage from a buffer: an error, never a crash. */
	const char garbage[] = "name: t\0\x80\x81{{{:::\n";
	diag_init(&d);
	assert_int_equal(experiment_load_buffer(&e, "g.yaml", garbage, sizeof garbage, NULL, 0, &d),
			 FT_EINVAL);
	free(buf);
}

static void test_unknown_key_suggestions(void **state)
{
	(void)state;
	expect_error(HEAD "trian: {}\n", "unknown key 'trian'", 6, 1);
	scratch_put("x.yaml", HEAD "train: {optimiser: {lr: 1}}\n");
	struct experiment *e = NULL;
	struct diag d;
	assert_int_equal(load(&e, "x.yaml", NULL, 0, &d), FT_EINVAL);
	assert_string_equal(d.text, "unknown key 'optimiser' in 'train'");
	assert_string_equal(d.hint, "did you mean 'optimizer'?");
	scratch_put("x.yaml", HEAD "method: {type: lora, zzzzzz: 1}\n");
	assert_int_equal(load(&e, "x.yaml", NULL, 0, &d), FT_EINVAL);
	assert_non_null(strstr(d.hint, "valid keys here: type, rank, alpha"));
}

static void test_cross_field_rules(void **state)
{
	(void)state;
	expect_error(HEAD "method: {type: none, alpha: 3}\n", "applies only to method.type lora", 6, 22);
	expect_error(HEAD "method: {type: lora, trainable: [mlp]}\n", "applies only to method.type freeze", 0, 0);
	expect_error(HEAD "train: {steps: 10, epochs: 1}\n", "not both", 6, 9);
	expect_error(HEAD "train: {steps: 10, schedule: {warmup_steps: 20}}\n", "more than train.steps", 0, 0);
	expect_error("name: t\nmodel: {base: m.gguf}\ndata: {train: train.jsonl, test: {from: validation, fraction: 0.1}}\n",
		     "names 'validation', which is not declared", 3, 41);
	expect_error("name: t\nmodel: {base: m.gguf}\ndata: {train: train.jsonl, test: {from: test, fraction: 0.1}}\n",
		     "the split itself", 0, 0);
	expect_error("name: t\nmodel: {base: m.gguf}\ndata: {train: train.jsonl, validation: {fraction: 0.1}, "
		     "test: {from: validation, fraction: 0.5}}\n", "itself carved", 0, 0);
	expect_error(HEAD "backend: {timeout: 1h}\n", "applies only to backend.type exec", 0, 0);
	expect_error(HEAD "  test: train.jsonl\ngates: [{metric: test.f1, vs: base, min_delta: 0.1}]\n"
		     "eval: {compare_base: false}\n",
		     "needs eval.compare_base", 0, 0);
	expect_error(HEAD "gates: [{metric: test.f1, vs: base, min: 0.1}]\n", "not min or max", 0, 0);
	expect_error(HEAD "sweep: {samples: 3}\n", "applies only to sweep.method random", 0, 0);
	/* prefix tuning's projection width needs the projection, and both need prefix */
	expect_error(HEAD "method: {type: prefix, encoder_hidden_size: 16}\n",
		     "'method.encoder_hidden_size' applies only to method.prefix_projection true, "
		     "but method.prefix_projection is false", 6, 24);
	expect_error(HEAD "method: {type: lora, prefix_projection: true}\n",
		     "applies only to method.type prefix", 0, 0);
	expect_error(HEAD "method: {type: prefix, prefix_projection: true, encoder_hidden_size: 0}\n",
		     "out of range", 0, 0);
	scratch_put("pp.yaml", HEAD "method: {type: prefix, prefix_projection: true, "
				    "encoder_hidden_size: 16}\n");
	struct experiment *pe = load_ok("pp.yaml", NULL, 0);
	assert_true(experiment_config(pe)->method.prefix_projection);
	assert_int_equal(experiment_config(pe)->method.encoder_hidden_size, 16);
	experiment_free(pe);
	scratch_put("pp.yaml", HEAD "method: {type: prefix}\n");
	pe = load_ok("pp.yaml", NULL, 0);
	assert_false(experiment_config(pe)->method.prefix_projection);
	assert_int_equal(experiment_config(pe)->method.encoder_hidden_size, 0);
	experiment_free(pe);
	/* Evaluation-only experiments need no train split. */
	scratch_put("ev.yaml",
		    "name: t\nmodel: {base: m.gguf}\ndata: {test: test.jsonl}\nmethod: {type: none}\n");
	struct experiment *e = load_ok("ev.yaml", NULL, 0);
	assert_null(experiment_config(e)->data.train);
	experiment_free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_format_double),
		cmocka_unit_test(test_canonical_hash_stable),
		cmocka_unit_test(test_yaml_dump_round_trip),
		cmocka_unit_test(test_extends_merge),
		cmocka_unit_test(test_overrides),
		cmocka_unit_test(test_config_fill),
		cmocka_unit_test(test_untrusted_input),
		cmocka_unit_test(test_unknown_key_suggestions),
		cmocka_unit_test(test_cross_field_rules),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
