/* Each key of the experiment file that the native engine reads acts: a tiny llama (written
 * by tests/unit/tiny_model.c) is trained and evaluated through backend_cpu() from an
 * experiment file, once as a baseline and once per case with `-s` overrides, and each case
 * checks the effect its key must have (a different loss trace, learning-rate trace,
 * result, prediction, step count, event or artifact; or the same trace where the key must
 * not change the numbers). A key whose effect were removed would leave the case equal to
 * the baseline and fail it. Runs take a fraction of a second each. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/backend.h"
#include "common/util.h"
#include "schema/schema.h"
#include "tests/unit/tiny_model.h"
#include "common/banned.h"

#define MAX_STEPS 64

struct obs {
	int rc;
	char id[32]; /* the run's id (run_ctx.run_id) */
	char err[1024];
	int steps;
	double loss[MAX_STEPS + 1], lr[MAX_STEPS + 1];
	struct {
		char split[16], name[32];
		int64_t step;
		double v;
	} met[256];
	int n_met;
	struct {
		char model[8], split[16], metric[32];
		double v, lo, hi;
	} res[96];
	int n_res;
	struct {
		char model[8], split[16];
		int64_t ex;
		char out[96];
	} pred[64];
	int n_pred;
	struct {
		char level[8], kind[32], msg[256];
	} ev[32];
	int n_ev;
	char art[64][160];
	int n_art;
};

static int o_metric(void *ud, const char *split, const char *name, int64_t step, double v)
{
	struct obs *o = ud;
	if (strcmp(split, "train") == 0 && step >= 1 && step <= MAX_STEPS) {
		if (strcmp(name, "loss") == 0) {
			o->loss[step] = v;
			o->steps = (int)step;
		} else if (strcmp(name, "lr") == 0) {
			o->lr[step] = v;
		}
	}
	if (o->n_met < 256) {
		snprintf(o->met[o->n_met].split, sizeof o->met[0].split, "%s", split);
		snprintf(o->met[o->n_met].name, sizeof o->met[0].name, "%s", name);
		o->met[o->n_met].step = step;
		o->met[o->n_met].v = v;
		o->n_met++;
	}
	return 0;
}

static int o_result(void *ud, const char *model, const char *split, const char *metric, double v,
		    double lo, double hi)
{
	struct obs *o = ud;
	if (o->n_res < 96) {
		snprintf(o->res[o->n_res].model, sizeof o->res[0].model, "%s", model);
		snprintf(o->res[o->n_res].split, sizeof o->res[0].split, "%s", split);
		snprintf(o->res[o->n_res].metric, sizeof o->res[0].metric, "%s", metric);
		o->res[o->n_res].v = v;
		o->res[o->n_res].lo = lo;
		o->res[o->n_res].hi = hi;
		o->n_res++;
	}
	return 0;
}

static int o_pred(void *ud, const char *model, const char *split, int64_t ex, const char *p,
		  const char *ref, const char *out, double score)
{
	(void)p, (void)ref, (void)score;
	struct obs *o = ud;
	if (o->n_pred < 64) {
		snprintf(o->pred[o->n_pred].model, sizeof o->pred[0].model, "%s", model);
		snprintf(o->pred[o->n_pred].split, sizeof o->pred[0].split, "%s", split);
		o->pred[o->n_pred].ex = ex;
		snprintf(o->pred[o->n_pred].out, sizeof o->pred[0].out, "%s", out ? out : "");
		o->n_pred++;
	}
	return 0;
}

static int o_event(void *ud, const char *level, const char *kind, const char *msg)
{
	struct obs *o = ud;
	if (o->n_ev < 32) {
		snprintf(o->ev[o->n_ev].level, sizeof o->ev[0].level, "%s", level);
		snprintf(o->ev[o->n_ev].kind, sizeof o->ev[0].kind, "%s", kind);
		snprintf(o->ev[o->n_ev].msg, sizeof o->ev[0].msg, "%s", msg);
		o->n_ev++;
	}
	return 0;
}

static int o_artifact(void *ud, const char *kind, const char *path)
{
	(void)kind;
	struct obs *o = ud;
	if (o->n_art < 64)
		snprintf(o->art[o->n_art++], sizeof o->art[0], "%s", path);
	return 0;
}

/* ---- the world: a tiny model, data files, the baseline experiment ---- */

static char g_dir[64];
static const char *g_base_eval_dir; /* run_ctx.base_eval_dir of the runs, NULL: none */

static void put(const char *name, const char *text)
{
	char *p = path_join(g_dir, name);
	struct diag d;
	diag_init(&d);
	assert_int_equal(file_write_atomic(p, text, strlen(text), &d), 0);
	free(p);
}

/* n completion examples "Question K: what is A plus B?" -> " A+B", from seed s; keys and
 * an extra field as asked. bad: a malformed line first. */
static void put_data(const char *name, int n, int s, const char *pk, const char *ck,
		     bool sys, bool bad)
{
	struct strbuf sb = {0};
	if (bad)
		assert_int_equal(strbuf_puts(&sb, "{\"prompt\": 7}\n"), 0);
	for (int i = 0; i < n; i++) {
		int a = (i * 7 + s * 13) % 50, b = (i * 3 + s * 5) % 40;
		assert_int_equal(strbuf_printf(&sb, "{\"%s\": \"Question %d: what is %d plus %d?\", "
					       "\"%s\": \" %d\"%s}\n", pk, i, a, b, ck, a + b,
					       sys ? ", \"sys\": \"Answer in digits.\"" : ""),
				 0);
	}
	put(name, sb.buf);
	strbuf_free(&sb);
}

static int setup(void **state)
{
	(void)state;
	snprintf(g_dir, sizeof g_dir, "/tmp/ftlab-keys-XXXXXX");
	if (!mkdtemp(g_dir))
		return -1;
	struct tiny_model_spec spec;
	tiny_model_spec_default(&spec, ARCH_LLAMA);
	struct diag d;
	diag_init(&d);
	char *p = path_join(g_dir, "tiny.gguf");
	if (tiny_model_write_gguf(p, &spec, &d))
		return -1;
	free(p);
	spec.seed = 77; /* another model */
	p = path_join(g_dir, "tiny2.gguf");
	if (tiny_model_write_gguf(p, &spec, &d))
		return -1;
	free(p);
	put_data("train.jsonl", 16, 1, "prompt", "completion", false, false);
	put_data("train2.jsonl", 16, 2, "prompt", "completion", false, false);
	put_data("train_qa.jsonl", 16, 1, "question", "answer", false, false);
	put_data("train_sys.jsonl", 16, 1, "prompt", "completion", true, false);
	put_data("train_bad.jsonl", 16, 1, "prompt", "completion", false, true);
	put_data("val.jsonl", 8, 3, "prompt", "completion", false, false);
	put_data("test.jsonl", 8, 4, "prompt", "completion", false, false);
	put_data("val_qa.jsonl", 8, 3, "question", "answer", false, false);
	put_data("test_qa.jsonl", 8, 4, "question", "answer", false, false);
	put("exp.yaml",
	    "name: keys\n"
	    "seed: 1\n"
	    "model: {base: tiny.gguf, context: 64}\n"
	    "data:\n  format: completion\n  train: train.jsonl\n  validation: val.jsonl\n"
	    "  test: test.jsonl\n  template: plain\n"
	    "method: {type: lora, rank: 4, alpha: 8, targets: [q_proj, v_proj]}\n"
	    "train:\n  steps: 4\n  batch_size: 2\n"
	    "  optimizer: {type: adamw, lr: 1.0e-2}\n"
	    "  schedule: {type: cosine, warmup_steps: 1, min_lr_ratio: 0.1}\n"
	    "eval:\n  metrics: [loss, token_accuracy, exact_match]\n"
	    "  generate: {max_new_tokens: 4}\n  compare_base: false\n  bootstrap: 20\n"
	    "  samples: 3\n"
	    "backend: {type: cpu, threads: 1}\n");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	return dir_remove_all(g_dir) == 0 ? 0 : -1;
}

/* Runs the experiment with the overrides (NULL-terminated) into *o. */
static void run(struct obs *o, const char *const *ov)
{
	memset(o, 0, sizeof *o);
	size_t n = 0;
	while (ov && ov[n])
		n++;
	char *exp = path_join(g_dir, "exp.yaml");
	struct experiment *e = NULL;
	struct diag d;
	diag_init(&d);
	if (experiment_load(&e, exp, ov, n, &d) != 0) {
		o->rc = d.code;
		snprintf(o->err, sizeof o->err, "%s", d.text);
		free(exp);
		return;
	}
	free(exp);
	static int runs;
	char sub[32];
	snprintf(sub, sizeof sub, "run%d", runs++);
	snprintf(o->id, sizeof o->id, "%s", sub);
	char *run_dir = path_join(g_dir, sub);
	assert_int_equal(dir_make_all(run_dir, &d), 0);
	struct run_sink sink = {.ud = o, .metric = o_metric, .result = o_result,
				.prediction = o_pred, .event = o_event, .artifact = o_artifact};
	volatile sig_atomic_t stop = 0;
	struct run_ctx ctx = {.cfg = experiment_config(e), .experiment = "keys", .run_id = sub,
			      .run_dir = run_dir, .threads = 1, .stop = &stop, .sink = &sink,
			      .base_eval_dir = g_base_eval_dir};
	diag_init(&d);
	o->rc = backend_cpu()->run(&ctx, &d);
	snprintf(o->err, sizeof o->err, "%s", d.text);
	assert_int_equal(dir_remove_all(run_dir), 0);
	free(run_dir);
	experiment_free(e);
}

/* ---- what a case looks at ---- */

static const double *result(const struct obs *o, const char *model, const char *split,
			    const char *metric, double *lo, double *hi)
{
	for (int i = 0; i < o->n_res; i++)
		if (strcmp(o->res[i].model, model) == 0 && strcmp(o->res[i].split, split) == 0 &&
		    strcmp(o->res[i].metric, metric) == 0) {
			if (lo)
				*lo = o->res[i].lo;
			if (hi)
				*hi = o->res[i].hi;
			return &o->res[i].v;
		}
	return NULL;
}

static bool loss_differs(const struct obs *a, const struct obs *b)
{
	if (a->steps != b->steps)
		return true;
	for (int s = 1; s <= a->steps; s++)
		if (a->loss[s] != b->loss[s])
			return true;
	return false;
}

static bool lr_differs(const struct obs *a, const struct obs *b)
{
	for (int s = 1; s <= a->steps && s <= b->steps; s++)
		if (a->lr[s] != b->lr[s])
			return true;
	return false;
}

static bool outputs_differ(const struct obs *a, const struct obs *b)
{
	if (a->n_pred != b->n_pred)
		return true;
	for (int i = 0; i < a->n_pred; i++)
		if (strcmp(a->pred[i].out, b->pred[i].out) != 0)
			return true;
	return false;
}

static int count_preds(const struct obs *o, const char *split)
{
	int n = 0;
	for (int i = 0; i < o->n_pred; i++)
		n += strcmp(o->pred[i].split, split) == 0;
	return n;
}

static const char *event_msg(const struct obs *o, const char *kind)
{
	for (int i = 0; i < o->n_ev; i++)
		if (strcmp(o->ev[i].kind, kind) == 0)
			return o->ev[i].msg;
	return NULL;
}

static bool has_metric(const struct obs *o, const char *split, const char *name, int64_t step)
{
	for (int i = 0; i < o->n_met; i++)
		if (strcmp(o->met[i].split, split) == 0 && strcmp(o->met[i].name, name) == 0 &&
		    o->met[i].step == step)
			return true;
	return false;
}

static bool has_artifact(const struct obs *o, const char *sub)
{
	for (int i = 0; i < o->n_art; i++)
		if (strstr(o->art[i], sub))
			return true;
	return false;
}

static double mem_of(const struct obs *o, const char *what)
{
	const char *m = event_msg(o, "memory"), *p = m ? strstr(m, what) : NULL;
	return p ? strtod(p + strlen(what), NULL) : -1;
}

static struct obs g_base;

static void ok(const struct obs *o, const char *what)
{
	if (o->rc)
		fail_msg("%s: the run failed: %s", what, o->err);
}

#define OV(...) ((const char *const[]){__VA_ARGS__, NULL})

/* ---- the cases ---- */

/* keys: seed model.base model.context data.format data.train data.template data.system data.max_length data.train_on_inputs data.packing data.limit.train data.limit.validation data.limit.test data.on_bad_example data.validation data.test method.type method.rank method.alpha method.dropout method.targets method.rslora method.placement method.positions method.reduction_factor method.non_linearity method.trainable method.layers method.layers.first method.layers.last train.epochs train.steps train.batch_size train.grad_accum train.optimizer.type train.optimizer.lr train.optimizer.betas train.optimizer.eps train.optimizer.weight_decay train.optimizer.momentum train.optimizer.dampening train.optimizer.nesterov train.schedule.type train.schedule.warmup_steps train.schedule.min_lr_ratio train.max_grad_norm train.precision train.grad_checkpointing train.eval_every train.checkpoint_every train.early_stopping.metric eval.splits eval.metrics eval.generate.max_new_tokens eval.generate.temperature eval.generate.top_k eval.generate.top_p eval.generate.stop eval.compare_base eval.bootstrap eval.samples data.fields.system data.fields.prompt data.fields.response */
static void test_keys_change_the_run(void **state)
{
	(void)state;
	struct obs *o = calloc(1, sizeof *o), *o2 = calloc(1, sizeof *o2);
	const struct obs *b = &g_base;
	run(&g_base, NULL);
	ok(b, "baseline");
	assert_int_equal(b->steps, 4);
	assert_non_null(result(b, "tuned", "validation", "loss", NULL, NULL));
	assert_non_null(result(b, "tuned", "test", "exact_match", NULL, NULL));
	assert_null(result(b, "base", "test", "loss", NULL, NULL));

	/* Keys that change the training trace. */
	static const struct {
		const char *ov[8];
	} loss_cases[] = {
		{{"seed=2"}},
		{{"model.base=tiny2.gguf"}},
		{{"model.context=24"}},
		{{"data.max_length=20"}},
		{{"data.format=text", "data.fields.text=completion", "eval.metrics=[loss]",
		  "eval.generate=null", "eval.samples=null", "data.template=null"}},
		{{"data.train=train2.jsonl"}},
		{{"data.template=chatml"}},
		{{"data.system=Answer in digits."}},
		{{"data.train_on_inputs=true"}},
		{{"data.limit.train=3"}},
		{{"data.validation={from: train, fraction: 0.25}"}},
		{{"method={type: full}"}},
		{{"method={type: freeze}"}},
		{{"method={type: adapter}"}},
		{{"method.rank=2"}},
		{{"method.alpha=64"}},
		{{"method.dropout=0.3"}},
		{{"method.targets=[q_proj]"}},
		{{"method.rslora=true"}},
		{{"train.batch_size=3"}},
		{{"train.grad_accum=2"}},
		{{"train.optimizer.type=sgd", "train.optimizer.lr=0.5"}},
		{{"train.optimizer.lr=0.05"}},
		{{"train.optimizer.betas=[0.5, 0.9]"}},
		{{"train.optimizer.eps=0.5"}},
		{{"train.optimizer.weight_decay=5.0"}},
		{{"train.max_grad_norm=0.001"}},
		{{"train.precision=bf16"}},
	};
	for (size_t i = 0; i < sizeof loss_cases / sizeof loss_cases[0]; i++) {
		run(o, loss_cases[i].ov);
		ok(o, loss_cases[i].ov[0]);
		if (!loss_differs(o, b))
			fail_msg("%s: the loss trace is the baseline's: the key did nothing",
				 loss_cases[i].ov[0]);
	}
	/* Two settings of one key against each other (both differ from the default). */
	static const struct {
		const char *a[5], *b[5];
	} pairs[] = {
		{{"train.optimizer.type=sgd", "train.optimizer.lr=0.5", "train.optimizer.momentum=0.9"},
		 {"train.optimizer.type=sgd", "train.optimizer.lr=0.5"}},
		{{"train.optimizer.type=sgd", "train.optimizer.lr=0.5", "train.optimizer.momentum=0.9",
		  "train.optimizer.dampening=0.5"},
		 {"train.optimizer.type=sgd", "train.optimizer.lr=0.5", "train.optimizer.momentum=0.9"}},
		{{"train.optimizer.type=sgd", "train.optimizer.lr=0.5", "train.optimizer.momentum=0.9",
		  "train.optimizer.nesterov=true"},
		 {"train.optimizer.type=sgd", "train.optimizer.lr=0.5", "train.optimizer.momentum=0.9"}},
		{{"train.optimizer.type=sgd", "train.optimizer.lr=0.5",
		  "train.optimizer.weight_decay=0.5"},
		 {"train.optimizer.type=sgd", "train.optimizer.lr=0.5"}},
		{{"method={type: freeze, trainable: [mlp]}"}, {"method={type: freeze}"}},
		{{"method={type: freeze, layers: {first: 1}}"}, {"method={type: freeze}"}},
		{{"method={type: freeze, layers: {first: 0, last: 0}}"}, {"method={type: freeze}"}},
		{{"data.train=train_sys.jsonl", "data.fields.system=sys"}, {"data.train=train_sys.jsonl"}},
		/* bottleneck adapters: each key against the defaults (pfeiffer, mlp, 16, relu) */
		{{"method={type: adapter, placement: houlsby, positions: mlp, non_linearity: relu}",
		  "seed=1"},
		 {"method={type: adapter}"}},
		{{"method={type: adapter, positions: both}", "seed=1"}, {"method={type: adapter}"}},
		{{"method={type: adapter, reduction_factor: 4}", "seed=1"},
		 {"method={type: adapter}"}},
		{{"method={type: adapter, non_linearity: tanh}", "seed=1"},
		 {"method={type: adapter}"}},
		/* rows of 128 tokens hold several examples of about 35 */
		{{"model.context=128", "data.packing=true"}, {"model.context=128"}},
	};
	for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
		run(o, pairs[i].a);
		ok(o, pairs[i].a[2] ? pairs[i].a[2] : pairs[i].a[1]);
		run(o2, pairs[i].b);
		ok(o2, pairs[i].b[0]);
		if (!loss_differs(o, o2))
			fail_msg("pair %zu (%s ...): both settings give the same trace", i,
				 pairs[i].a[pairs[i].a[2] ? 2 : 1]);
	}

	/* Mapped keys read the same data: the trace is the baseline's. */
	run(o, OV("data.train=train_qa.jsonl", "data.validation=val_qa.jsonl",
		  "data.test=test_qa.jsonl", "data.fields.prompt=question",
		  "data.fields.response=answer"));
	ok(o, "fields");
	assert_false(loss_differs(o, b));
	run(o, OV("data.train=train_qa.jsonl")); /* without the mapping: missing keys */
	assert_int_equal(o->rc, FT_EINVAL);
	assert_non_null(strstr(o->err, "missing key 'prompt'"));
	/* Malformed lines: an error, or skipped and counted. */
	run(o, OV("data.train=train_bad.jsonl"));
	assert_int_equal(o->rc, FT_EINVAL);
	run(o, OV("data.train=train_bad.jsonl", "data.on_bad_example=skip"));
	ok(o, "on_bad_example");
	assert_non_null(event_msg(o, "data"));
	assert_false(loss_differs(o, b)); /* the same good examples */

	/* Length of training. */
	run(o, OV("train.steps=6"));
	ok(o, "steps");
	assert_int_equal(o->steps, 6);
	run(o, OV("train.steps=null", "train.epochs=2"));
	ok(o, "epochs");
	assert_int_equal(o->steps, 16); /* 2 epochs of 16 examples in batches of 2 */

	/* The schedule. */
	static const char *const lr_cases[][3] = {{"train.schedule.type=constant",
						   "train.schedule.min_lr_ratio=null", NULL},
						  {"train.schedule.warmup_steps=2", NULL},
						  {"train.schedule.min_lr_ratio=0.9", NULL},
						  {"train.schedule.type=linear", NULL}};
	for (size_t i = 0; i < sizeof lr_cases / sizeof lr_cases[0]; i++) {
		run(o, lr_cases[i]);
		ok(o, lr_cases[i][0]);
		if (!lr_differs(o, b))
			fail_msg("%s: the learning rates are the baseline's", lr_cases[i][0]);
	}

	/* Gradient checkpointing: the same numbers, smaller activations. */
	run(o, OV("train.grad_checkpointing=true"));
	ok(o, "grad_checkpointing");
	assert_false(loss_differs(o, b));
	assert_true(mem_of(b, "activations ") > 0);
	assert_true(mem_of(o, "activations ") < mem_of(b, "activations "));

	/* A bottleneck adapter run writes its adapters in AdapterHub's layout. */
	run(o, OV("method={type: adapter}"));
	ok(o, "adapter");
	assert_true(has_artifact(o, "adapter/adapter.safetensors"));
	assert_true(has_artifact(o, "adapter/adapter_config.json"));

	/* Validation during training, checkpoints, early stopping. */
	run(o, OV("train.eval_every=2"));
	ok(o, "eval_every");
	assert_true(has_metric(o, "validation", "loss", 2) && has_metric(o, "validation", "loss", 4));
	assert_false(has_metric(b, "validation", "loss", 2));
	run(o, OV("train.checkpoint_every=2"));
	ok(o, "checkpoint_every");
	assert_true(has_artifact(o, "step-000000002"));
	assert_false(has_artifact(b, "step-000000002"));
	run(o, OV("train.steps=10", "train.eval_every=1",
		  "train.early_stopping={metric: validation.token_accuracy, patience: 1, min_delta: 1.0}"));
	ok(o, "early_stopping");
	assert_int_equal(o->steps, 2); /* nothing improves by more than 1.0 */
	assert_non_null(event_msg(o, "early_stop"));
	assert_true(has_metric(o, "validation", "token_accuracy", 2));

	/* Data splits and limits. */
	run(o, OV("data.validation=null"));
	ok(o, "no validation");
	assert_null(result(o, "tuned", "validation", "loss", NULL, NULL));
	run(o, OV("data.test={from: validation, fraction: 0.5}"));
	ok(o, "test from validation");
	assert_true(*result(o, "tuned", "test", "loss", NULL, NULL) !=
		    *result(b, "tuned", "test", "loss", NULL, NULL));
	run(o, OV("data.limit.validation=2"));
	ok(o, "limit validation");
	assert_true(*result(o, "tuned", "validation", "loss", NULL, NULL) !=
		    *result(b, "tuned", "validation", "loss", NULL, NULL));
	run(o, OV("data.limit.test=2"));
	ok(o, "limit test");
	assert_int_equal(count_preds(o, "test"), 2);
	assert_int_equal(count_preds(b, "test"), 3);

	/* Evaluation. */
	run(o, OV("eval.splits=[test]"));
	ok(o, "splits");
	assert_null(result(o, "tuned", "validation", "loss", NULL, NULL));
	run(o, OV("eval.metrics=[loss]", "eval.generate=null", "eval.samples=null"));
	ok(o, "metrics");
	assert_null(result(o, "tuned", "test", "exact_match", NULL, NULL));
	assert_null(result(o, "tuned", "test", "token_accuracy", NULL, NULL));
	run(o, OV("eval.compare_base=true"));
	ok(o, "compare_base");
	assert_non_null(result(o, "base", "test", "loss", NULL, NULL));
	assert_non_null(result(o, "delta", "test", "loss", NULL, NULL));
	double lo = 0, hi = 0;
	run(o, OV("eval.bootstrap=0"));
	ok(o, "bootstrap");
	assert_non_null(result(o, "tuned", "test", "loss", &lo, &hi));
	assert_true(isnan(lo) && isnan(hi));
	assert_non_null(result(b, "tuned", "test", "loss", &lo, &hi));
	assert_true(isfinite(lo) && isfinite(hi) && lo < hi);
	run(o, OV("eval.samples=1"));
	ok(o, "samples");
	assert_int_equal(count_preds(o, "test"), 1);
	run(o, OV("eval.generate.max_new_tokens=1"));
	ok(o, "max_new_tokens");
	assert_true(outputs_differ(o, b));
	run(o, OV("eval.generate.temperature=1.5"));
	ok(o, "temperature");
	assert_true(outputs_differ(o, b));
	/* top_k 1 and a tiny top_p leave one candidate: sampling becomes greedy again. */
	run(o, OV("eval.generate.temperature=1.5", "eval.generate.top_k=1"));
	ok(o, "top_k");
	assert_false(outputs_differ(o, b));
	run(o, OV("eval.generate.temperature=1.5", "eval.generate.top_p=0.000001"));
	ok(o, "top_p");
	assert_false(outputs_differ(o, b));
	/* A stop string taken from a baseline output cuts it. */
	char stop[64] = "";
	for (int i = 0; i < b->n_pred && !stop[0]; i++)
		for (const char *c = b->pred[i].out; *c && !stop[0]; c++)
			if ((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9'))
				snprintf(stop, sizeof stop, "eval.generate.stop=[\"%c\"]", *c);
	assert_true(stop[0]); /* the baseline generated some letter or digit */
	run(o, OV(stop));
	ok(o, "stop");
	assert_true(outputs_differ(o, b));
	free(o);
	free(o2);
}

/* The keys of IA3 and prefix tuning: two settings of each against each other, and each
 * method's trace against LoRA's (the baseline). */
/* keys: method.feedforward_targets method.num_virtual_tokens */
static void test_peft_method_keys_act(void **state)
{
	(void)state;
	struct obs *o = calloc(1, sizeof *o), *o2 = calloc(1, sizeof *o2);
	run(&g_base, NULL);
	ok(&g_base, "baseline");
	static const struct {
		const char *a[3], *b[3];
	} pairs[] = {
		{{"method={type: ia3, targets: [k_proj, v_proj, down_proj], "
		  "feedforward_targets: [down_proj]}"},
		 {"method={type: ia3, targets: [k_proj, v_proj, down_proj], "
		  "feedforward_targets: []}"}},
		{{"method={type: prefix, num_virtual_tokens: 2}"},
		 {"method={type: prefix, num_virtual_tokens: 5}"}},
		{{"method={type: dora}"}, {"method={type: lora}"}},
	};
	for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
		run(o, pairs[i].a);
		ok(o, pairs[i].a[0]);
		run(o2, pairs[i].b);
		ok(o2, pairs[i].b[0]);
		if (!loss_differs(o, o2))
			fail_msg("%s: the same trace as %s", pairs[i].a[0], pairs[i].b[0]);
		if (!loss_differs(o, &g_base))
			fail_msg("%s: the baseline's trace", pairs[i].a[0]);
	}
	free(o);
	free(o2);
}

/* prefix_projection: PEFT's MLP in front of the prefix trains another trace than the
 * table trained directly, and its width (encoder_hidden_size) changes it again. */
/* keys: method.prefix_projection method.encoder_hidden_size */
static void test_prefix_projection_keys_act(void **state)
{
	(void)state;
	struct obs *o = calloc(1, sizeof *o), *o2 = calloc(1, sizeof *o2);
	assert_non_null(o && o2);
	static const struct {
		const char *a[3], *b[3];
	} pairs[] = {
		{{"method={type: prefix, num_virtual_tokens: 2, prefix_projection: true}"},
		 {"method={type: prefix, num_virtual_tokens: 2, prefix_projection: false}"}},
		{{"method={type: prefix, num_virtual_tokens: 2, prefix_projection: true, "
		  "encoder_hidden_size: 3}"},
		 {"method={type: prefix, num_virtual_tokens: 2, prefix_projection: true}"}},
	};
	for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
		run(o, pairs[i].a);
		ok(o, pairs[i].a[0]);
		run(o2, pairs[i].b);
		ok(o2, pairs[i].b[0]);
		if (!loss_differs(o, o2))
			fail_msg("%s: the same trace as %s", pairs[i].a[0], pairs[i].b[0]);
	}
	free(o);
	free(o2);
}

/* The base model is evaluated once per base model: with the workspace's base-eval
 * directory, a second run of the same base (another learning rate) reuses the first run's
 * evaluation, bit for bit what it would compute itself, while a run of another base
 * evaluates that base: every run's base results and paired differences are its own
 * base's. A cache file that does not match is recomputed, never trusted. Every run records
 * its cost (split "cost"). */
static void test_base_eval_once_per_base(void **state)
{
	(void)state;
	struct obs *ra = malloc(sizeof *ra), *rb = malloc(sizeof *rb), *a1 = malloc(sizeof *a1),
		   *a2 = malloc(sizeof *a2), *b1 = malloc(sizeof *b1);
	assert_non_null(ra && rb && a1 && a2 && b1);
	char *cache = path_join(g_dir, "base-eval");
	/* without the directory every run evaluates its own base */
	run(ra, OV("eval.compare_base=true"));
	ok(ra, "reference A");
	run(rb, OV("eval.compare_base=true", "model.base=tiny2.gguf"));
	ok(rb, "reference B");
	assert_null(event_msg(ra, "base_eval"));
	g_base_eval_dir = cache;
	run(a1, OV("eval.compare_base=true"));
	ok(a1, "A, first run");
	run(a2, OV("eval.compare_base=true", "train.optimizer.lr=0.03"));
	ok(a2, "A, second run");
	run(b1, OV("eval.compare_base=true", "model.base=tiny2.gguf"));
	ok(b1, "B");
	if (event_msg(a1, "base_eval"))
		fail_msg("first run of A: %s", event_msg(a1, "base_eval"));
	const char *reuse = event_msg(a2, "base_eval");
	assert_non_null(reuse);
	char from[64];
	snprintf(from, sizeof from, "reused from run %s ", a1->id);
	assert_non_null(strstr(reuse, from));
	assert_null(event_msg(b1, "base_eval")); /* another base: evaluated, not reused */
	assert_true(loss_differs(a1, a2));       /* the second run trained differently */
	const char *metrics[] = {"loss", "token_accuracy", "exact_match"};
	const char *splits[] = {"validation", "test"};
	for (size_t s = 0; s < 2; s++)
		for (size_t m = 0; m < 3; m++) {
			double lo[5], hi[5];
			const double *v[5] = {
				result(ra, "base", splits[s], metrics[m], &lo[0], &hi[0]),
				result(a1, "base", splits[s], metrics[m], &lo[1], &hi[1]),
				result(a2, "base", splits[s], metrics[m], &lo[2], &hi[2]),
				result(rb, "base", splits[s], metrics[m], &lo[3], &hi[3]),
				result(b1, "base", splits[s], metrics[m], &lo[4], &hi[4])};
			for (int k = 0; k < 5; k++)
				assert_non_null(v[k]);
			for (int k = 1; k < 3; k++) { /* A's runs: A's own base, bit for bit */
				assert_true(*v[k] == *v[0] && lo[k] == lo[0] && hi[k] == hi[0]);
			}
			assert_true(*v[4] == *v[3] && lo[4] == lo[3] && hi[4] == hi[3]);
			if (m == 0) /* the two bases really differ */
				assert_true(*v[0] != *v[3]);
			/* the paired difference is against the run's own base */
			const double *t2 = result(a2, "tuned", splits[s], metrics[m], NULL, NULL);
			const double *d2 = result(a2, "delta", splits[s], metrics[m], NULL, NULL);
			assert_non_null(t2);
			assert_non_null(d2);
			assert_true(fabs(*d2 - (*t2 - *v[2])) < 1e-9);
		}
	/* the base's predictions come back with its evaluation */
	for (int i = 0; i < a1->n_pred; i++)
		if (strcmp(a1->pred[i].model, "base") == 0) {
			bool found = false;
			for (int j = 0; j < a2->n_pred; j++)
				found = found || (strcmp(a2->pred[j].model, "base") == 0 &&
						  strcmp(a2->pred[j].split, a1->pred[i].split) == 0 &&
						  a2->pred[j].ex == a1->pred[i].ex &&
						  strcmp(a2->pred[j].out, a1->pred[i].out) == 0);
			assert_true(found);
		}
	/* the cost of each run */
	const char *cost[] = {"train_seconds", "train_cpu_seconds", "tokens_per_s",
			      "train_peak_rss_bytes", "peak_rss_bytes", "base_eval_seconds",
			      "tuned_eval_seconds"};
	for (size_t c = 0; c < FT_ARRAY_LEN(cost); c++) {
		assert_true(has_metric(a1, "cost", cost[c], 4));
		assert_true(has_metric(b1, "cost", cost[c], 4));
	}
	/* a cache file that does not match (here: every file emptied) is not trusted */
	DIR *dir = opendir(cache);
	assert_non_null(dir);
	int n_files = 0;
	for (struct dirent *de; (de = readdir(dir)) != NULL;) {
		if (de->d_name[0] == '.')
			continue;
		char *p = path_join(cache, de->d_name);
		struct diag d;
		diag_init(&d);
		assert_int_equal(file_write_atomic(p, "{\"version\": 1, \"n\": 8}", 22, &d), 0);
		free(p);
		n_files++;
	}
	closedir(dir);
	assert_int_equal(n_files, 4); /* two splits of two bases */
	run(a2, OV("eval.compare_base=true", "train.optimizer.lr=0.03"));
	ok(a2, "A after the cache was spoilt");
	assert_null(event_msg(a2, "base_eval"));
	for (size_t m = 0; m < 3; m++)
		assert_true(*result(a2, "base", "test", metrics[m], NULL, NULL) ==
			    *result(ra, "base", "test", metrics[m], NULL, NULL));
	g_base_eval_dir = NULL;
	free(cache);
	free(ra);
	free(rb);
	free(a1);
	free(a2);
	free(b1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_keys_change_the_run),
		cmocka_unit_test(test_peft_method_keys_act),
		cmocka_unit_test(test_prefix_projection_keys_act),
		cmocka_unit_test(test_base_eval_once_per_base),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
