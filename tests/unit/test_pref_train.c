/* Preference training end to end through backend_cpu() on a tiny random llama written as
 * GGUF (byte-level vocabulary, ChatML tokens): DPO with LoRA learns to prefer the chosen
 * completions (TRL's statistics logged each step, tuned preference accuracy and margin
 * above the base model's, with paired deltas); full fine-tuning computes DPO's reference
 * once (reference_logps.json), and a run killed after step 2 and resumed reloads it and
 * repeats the uninterrupted loss trace bit for bit (a tampered file is used when its hashes
 * match, recomputed when they do not); SimPO and ORPO run and log their statistics;
 * validation loss during training is the preference loss; every train.preference key
 * reaches the loss (config and a changed trace); and `eval.choices` on completion data
 * scores the base model by likelihood beside generation. */
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

#include "backends/backend.h"
#include "backends/native/train/preference.h"
#include "common/util.h"
#include "schema/schema.h"
#include "tests/unit/scratch.h"
#include "tests/unit/tiny_model.h"
#include "common/banned.h"

#define MAXM 4096

struct mrec {
	char split[16], name[32];
	int64_t step;
	double v;
};
struct rres {
	char model[8], split[16], metric[32];
	double v;
};

struct rec {
	struct mrec m[MAXM];
	size_t n_m;
	struct rres r[128];
	size_t n_r;
	char events[4096];
	int n_ref_artifacts;
	int64_t stop_at;
	volatile sig_atomic_t stop;
};

static int r_metric(void *ud, const char *split, const char *name, int64_t step, double v)
{
	struct rec *r = ud;
	assert_true(r->n_m < MAXM);
	struct mrec *m = &r->m[r->n_m++];
	snprintf(m->split, sizeof m->split, "%s", split);
	snprintf(m->name, sizeof m->name, "%s", name);
	m->step = step;
	m->v = v;
	if (strcmp(split, "train") == 0 && strcmp(name, "loss") == 0 && step == r->stop_at)
		r->stop = 1;
	return 0;
}

static int r_result(void *ud, const char *model, const char *split, const char *metric,
		    double v, double lo, double hi)
{
	(void)lo, (void)hi;
	struct rec *r = ud;
	assert_true(r->n_r < 128);
	struct rres *x = &r->r[r->n_r++];
	snprintf(x->model, sizeof x->model, "%s", model);
	snprintf(x->split, sizeof x->split, "%s", split);
	snprintf(x->metric, sizeof x->metric, "%s", metric);
	x->v = v;
	return 0;
}

static int r_prediction(void *ud, const char *model, const char *split, int64_t ex,
			const char *p, const char *ref, const char *out, double score)
{
	(void)ud, (void)model, (void)split, (void)ex, (void)p, (void)ref, (void)out, (void)score;
	return 0;
}

static int r_event(void *ud, const char *level, const char *kind, const char *msg)
{
	struct rec *r = ud;
	size_t used = strlen(r->events);
	snprintf(r->events + used, sizeof r->events - used, "%s/%s: %s\n", level, kind, msg);
	return 0;
}

static int r_artifact(void *ud, const char *kind, const char *path)
{
	(void)path;
	struct rec *r = ud;
	r->n_ref_artifacts += strcmp(kind, "reference") == 0;
	return 0;
}

/* The value of split/name at step (NAN when absent). */
static double metric_at(const struct rec *r, const char *split, const char *name, int64_t step)
{
	for (size_t i = 0; i < r->n_m; i++)
		if (strcmp(r->m[i].split, split) == 0 && strcmp(r->m[i].name, name) == 0 &&
		    r->m[i].step == step)
			return r->m[i].v;
	return NAN;
}

static double result(const struct rec *r, const char *model, const char *metric)
{
	for (size_t i = 0; i < r->n_r; i++)
		if (strcmp(r->r[i].model, model) == 0 && strcmp(r->r[i].metric, metric) == 0)
			return r->r[i].v;
	fail_msg("no %s result for %s", model, metric);
	return NAN;
}

static const char *g_dir;

/* A generated preference set: the chosen completion is "good", the rejected one "bad". */
static void write_data(void)
{
	char line[256];
	struct strbuf tr = {0}, te = {0};
	for (int i = 0; i < 24; i++) {
		snprintf(line, sizeof line,
			 "{\"prompt\": \"item %d\", \"chosen\": \"good\", \"rejected\": \"bad\"}\n", i);
		assert_int_equal(strbuf_puts(i < 16 ? &tr : &te, line), 0);
	}
	scratch_put("train.jsonl", tr.buf);
	scratch_put("test.jsonl", te.buf);
	strbuf_free(&tr);
	strbuf_free(&te);
}

static struct experiment *load(const char *yaml_body)
{
	char yaml[4096];
	snprintf(yaml, sizeof yaml,
		 "name: pref-test\nseed: 5\nmodel: {base: tiny.gguf, context: 32}\n"
		 "data:\n  format: preference\n  train: train.jsonl\n  test: test.jsonl\n"
		 "  template: chatml\n%s",
		 yaml_body);
	scratch_put("exp.yaml", yaml);
	char *p = path_join(g_dir, "exp.yaml");
	struct experiment *e = NULL;
	struct diag d;
	diag_init(&d);
	if (experiment_load(&e, p, NULL, 0, &d))
		fail_msg("%s:%d:%d: %s", d.file, d.line, d.col, d.text);
	free(p);
	return e;
}

static int run_once(const struct config *cfg, const char *sub, bool resume, struct rec *r,
		    struct diag *d)
{
	struct run_sink sink = {.ud = r, .metric = r_metric, .result = r_result,
				.prediction = r_prediction, .event = r_event,
				.artifact = r_artifact};
	char *run_dir = path_join(g_dir, sub);
	assert_int_equal(dir_make_all(run_dir, d), 0);
	struct run_ctx ctx = {.cfg = cfg, .experiment = "pref-test", .run_id = "r1",
			      .run_dir = run_dir, .resume = resume, .threads = 2,
			      .stop = &r->stop, .sink = &sink};
	diag_init(d);
	int rc = backend_cpu()->run(&ctx, d);
	free(run_dir);
	return rc;
}

static struct rec *new_rec(void)
{
	struct rec *r = calloc(1, sizeof *r);
	r->stop_at = -1;
	return r;
}

static int setup(void **state)
{
	(void)state;
	g_dir = scratch_open("preftrain");
	struct tiny_model_spec spec;
	tiny_model_spec_default(&spec, ARCH_LLAMA);
	char *p = path_join(g_dir, "tiny.gguf");
	struct diag d;
	diag_init(&d);
	assert_int_equal(tiny_model_write_gguf(p, &spec, &d), 0);
	free(p);
	write_data();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	return scratch_close();
}

static const char LORA_DPO[] =
	"method: {type: lora, rank: 4, alpha: 8, targets: all-linear}\n"
	"train:\n  steps: 12\n  batch_size: 4\n  objective: dpo\n  preference: {beta: 0.5}\n"
	"  optimizer: {lr: 1.0e-2}\n  schedule: {type: constant}\n"
	"eval:\n  metrics: [loss, preference_accuracy, preference_margin]\n  bootstrap: 20\n";

static void test_dpo_lora_learns(void **state)
{
	(void)state;
	struct experiment *e = load(LORA_DPO);
	struct rec *r = new_rec();
	struct diag d;
	if (run_once(experiment_config(e), "lora", false, r, &d))
		fail_msg("%s", d.text);
	static const char *const names[] = {"rewards/chosen", "rewards/rejected",
					    "rewards/accuracies", "rewards/margins",
					    "logps/chosen", "logps/rejected"};
	for (int64_t s = 1; s <= 12; s++)
		for (size_t k = 0; k < 6; k++)
			assert_true(isfinite(metric_at(r, "train", names[k], s)));
	/* step 1: the policy is the reference (LoRA B = 0): zero rewards, loss log 2 */
	assert_float_equal(metric_at(r, "train", "rewards/margins", 1), 0.0, 1e-6);
	assert_float_equal(metric_at(r, "train", "loss", 1), log(2.0), 1e-6);
	/* TRL's definitions: margins = chosen - rejected */
	assert_float_equal(metric_at(r, "train", "rewards/margins", 12),
			   metric_at(r, "train", "rewards/chosen", 12) -
				   metric_at(r, "train", "rewards/rejected", 12),
			   1e-9);
	assert_true(metric_at(r, "train", "loss", 12) < 0.5 * log(2.0));
	assert_float_equal(metric_at(r, "train", "rewards/accuracies", 12), 1.0, 0);
	assert_int_equal(r->n_ref_artifacts, 0); /* LoRA: no precomputed reference */
	/* the tuned model prefers "good" on unseen prompts; the base model is the reference */
	assert_float_equal(result(r, "tuned", "preference_accuracy"), 1.0, 0);
	assert_true(result(r, "tuned", "preference_margin") > result(r, "base", "preference_margin"));
	assert_float_equal(result(r, "delta", "preference_margin"),
			   result(r, "tuned", "preference_margin") -
				   result(r, "base", "preference_margin"),
			   1e-9);
	free(r);
	experiment_free(e);
}

static const char FULL_DPO[] =
	"method: {type: full}\n"
	"train:\n  steps: 4\n  batch_size: 4\n  objective: dpo\n  preference: {beta: 0.3}\n"
	"  optimizer: {lr: 1.0e-3}\n  checkpoint_every: 1\n"
	"eval:\n  metrics: [preference_accuracy]\n  bootstrap: 0\n";

/* Rewrites the reference file: every value shifted, and the config hash replaced when
 * new_hash is set. */
static void tamper(const char *sub, const char *new_hash)
{
	char rel[128];
	snprintf(rel, sizeof rel, "%s/reference_logps.json", sub);
	char *p = path_join(g_dir, rel);
	json_error_t err;
	json_t *j = json_load_file(p, 0, &err);
	assert_non_null(j);
	json_t *t = json_object_get(j, "train");
	for (size_t i = 0; i < json_array_size(t); i++)
		json_array_set_new(t, i, json_real(json_real_value(json_array_get(t, i)) + 3.0 * (i % 2)));
	if (new_hash)
		json_object_set_new(j, "config_hash", json_string(new_hash));
	assert_int_equal(json_dump_file(j, p, 0), 0);
	json_decref(j);
	free(p);
}

static void test_full_dpo_reference_and_resume(void **state)
{
	(void)state;
	struct experiment *e = load(FULL_DPO);
	const struct config *cfg = experiment_config(e);
	struct diag d;
	struct rec *a = new_rec();
	if (run_once(cfg, "a", false, a, &d))
		fail_msg("%s", d.text);
	assert_int_equal(a->n_ref_artifacts, 1);
	char *rf = path_join(g_dir, "a/reference_logps.json");
	assert_true(path_exists(rf));
	free(rf);
	/* at step 1 the policy is the reference */
	assert_float_equal(metric_at(a, "train", "rewards/chosen", 1), 0.0, 1e-6);
	assert_float_equal(metric_at(a, "train", "loss", 1), log(2.0), 1e-6);
	for (int s = 1; s < 4; s++) /* it learns */
		assert_true(metric_at(a, "train", "loss", s + 1) < metric_at(a, "train", "loss", s));

	/* killed after step 2, resumed: the reference is loaded, the trace is the same */
	struct rec *k = new_rec();
	k->stop_at = 2;
	assert_int_equal(run_once(cfg, "b", false, k, &d), FT_EINTR);
	struct rec *b = new_rec();
	if (run_once(cfg, "b", true, b, &d))
		fail_msg("%s", d.text);
	assert_non_null(strstr(b->events, "loaded from reference_logps.json"));
	assert_int_equal(b->n_ref_artifacts, 0);
	for (int s = 3; s <= 4; s++)
		if (metric_at(b, "train", "loss", s) != metric_at(a, "train", "loss", s))
			fail_msg("step %d: resumed %.17g, uninterrupted %.17g", s,
				 metric_at(b, "train", "loss", s), metric_at(a, "train", "loss", s));

	/* the saved values are what a resume uses: shifted ones change the trace ... */
	memset(k, 0, sizeof *k);
	k->stop_at = 2;
	assert_int_equal(run_once(cfg, "c", false, k, &d), FT_EINTR);
	tamper("c", NULL);
	struct rec *c = new_rec();
	if (run_once(cfg, "c", true, c, &d))
		fail_msg("%s", d.text);
	assert_true(metric_at(c, "train", "loss", 3) != metric_at(a, "train", "loss", 3));
	/* ... unless the file was made for another config: then it is recomputed */
	memset(k, 0, sizeof *k);
	k->stop_at = 2;
	assert_int_equal(run_once(cfg, "f", false, k, &d), FT_EINTR);
	tamper("f", "0000");
	struct rec *f = new_rec();
	if (run_once(cfg, "f", true, f, &d))
		fail_msg("%s", d.text);
	assert_null(strstr(f->events, "loaded from"));
	assert_int_equal(f->n_ref_artifacts, 1);
	assert_true(metric_at(f, "train", "loss", 3) == metric_at(a, "train", "loss", 3));
	free(a);
	free(b);
	free(c);
	free(f);
	free(k);
	experiment_free(e);
}

static void test_simpo_orpo_and_validation(void **state)
{
	(void)state;
	scratch_put("val.jsonl", "{\"prompt\": \"v1\", \"chosen\": \"good\", \"rejected\": \"bad\"}\n"
				 "{\"prompt\": \"v2\", \"chosen\": \"good\", \"rejected\": \"bad\"}\n");
	struct experiment *e = load(
		"  validation: val.jsonl\n"
		"method: {type: lora, rank: 4, alpha: 8, targets: all-linear}\n"
		"train:\n  steps: 3\n  batch_size: 4\n  objective: simpo\n"
		"  preference: {beta: 2.0, gamma: 0.5}\n  optimizer: {lr: 1.0e-2}\n"
		"  eval_every: 1\n  early_stopping: {patience: 5}\n"
		"eval:\n  splits: [test]\n  metrics: [preference_accuracy]\n  bootstrap: 0\n");
	struct rec *r = new_rec();
	struct diag d;
	if (run_once(experiment_config(e), "simpo", false, r, &d))
		fail_msg("%s", d.text);
	/* SimPO's rewards are beta times the mean token log-probability */
	double rc = metric_at(r, "train", "rewards/chosen", 1), lc = metric_at(r, "train", "logps/chosen", 1);
	assert_float_equal(rc, 2.0 * lc, 1e-9);
	assert_true(lc < 0 && lc > -20); /* a per-token mean, not a sum */
	/* the loss at step 1: softplus(-(beta (a_c - a_r) - gamma)) averaged; validation loss
	 * is the same preference loss on the validation pairs */
	double v1 = metric_at(r, "validation", "loss", 1);
	assert_true(isfinite(v1) && v1 > 0);
	assert_true(isfinite(metric_at(r, "validation", "loss", 3)));
	free(r);
	experiment_free(e);

	e = load("  train_on_inputs: true\n"
		 "method: {type: lora, rank: 4, alpha: 8}\n"
		 "train:\n  steps: 2\n  batch_size: 4\n  objective: orpo\n"
		 "  preference: {lambda: 0.2}\n"
		 "eval:\n  metrics: [loss]\n  bootstrap: 0\n");
	r = new_rec();
	if (run_once(experiment_config(e), "orpo", false, r, &d))
		fail_msg("%s", d.text);
	double nll = metric_at(r, "train", "nll_loss", 1), lor = metric_at(r, "train", "log_odds_ratio", 1);
	assert_true(nll > 0 && lor < 0);
	assert_true(isfinite(metric_at(r, "train", "log_odds_chosen", 1)));
	/* ORPO's loss = NLL - lambda * mean log sigmoid(log odds) */
	assert_float_equal(metric_at(r, "train", "loss", 1), nll - 0.2 * lor, 1e-9);
	assert_float_equal(metric_at(r, "train", "rewards/chosen", 1),
			   0.2 * metric_at(r, "train", "logps/chosen", 1), 1e-9);
	free(r);
	experiment_free(e);
}

/* Every train.preference key reaches the loss: the config and pref_params carry it, and
 * changing it changes the first step's loss. */
/* keys: train.objective train.preference.beta train.preference.loss_type train.preference.label_smoothing train.preference.lambda train.preference.gamma */
static void test_keys_act(void **state)
{
	(void)state;
	struct experiment *e = load(
		"method: {type: lora, rank: 4, alpha: 8}\n"
		"train:\n  objective: dpo\n  preference: {beta: 0.25, loss_type: sigmoid, "
		"label_smoothing: 0.125}\n");
	struct pref_params p;
	pref_params_from_config(&p, &experiment_config(e)->train);
	assert_int_equal(p.objective, OBJECTIVE_DPO);
	assert_int_equal(p.loss_type, PREF_LOSS_SIGMOID);
	assert_float_equal(p.beta, 0.25, 0);
	assert_float_equal(p.label_smoothing, 0.125, 0);
	experiment_free(e);
	e = load("method: {type: lora, rank: 4, alpha: 8}\n"
		 "train:\n  objective: dpo\n  preference: {loss_type: ipo}\n");
	pref_params_from_config(&p, &experiment_config(e)->train);
	assert_int_equal(p.loss_type, PREF_LOSS_IPO);
	experiment_free(e);
	e = load("method: {type: lora, rank: 4, alpha: 8}\n"
		 "train:\n  objective: simpo\n  preference: {gamma: 1.5, beta: 2.0}\n");
	pref_params_from_config(&p, &experiment_config(e)->train);
	assert_int_equal(p.objective, OBJECTIVE_SIMPO);
	assert_float_equal(p.gamma, 1.5, 0);
	assert_float_equal(p.beta, 2.0, 0);
	experiment_free(e);
	e = load("method: {type: lora, rank: 4, alpha: 8}\n"
		 "train:\n  objective: orpo\n  preference: {lambda: 0.5}\n");
	pref_params_from_config(&p, &experiment_config(e)->train);
	assert_float_equal(p.lambda, 0.5, 0);
	experiment_free(e);

	/* two settings of each key: different losses after one update (step 2) */
	static const char *const variants[][2] = {
		{"objective: dpo\n  preference: {beta: 0.1}", "objective: dpo\n  preference: {beta: 1.0}"},
		{"objective: dpo\n  preference: {loss_type: sigmoid}",
		 "objective: dpo\n  preference: {loss_type: hinge}"},
		{"objective: dpo\n  preference: {label_smoothing: 0.0}",
		 "objective: dpo\n  preference: {label_smoothing: 0.3}"},
		{"objective: simpo\n  preference: {gamma: 0.0}", "objective: simpo\n  preference: {gamma: 2.0}"},
		{"objective: orpo\n  preference: {lambda: 0.0}", "objective: orpo\n  preference: {lambda: 1.0}"},
	};
	for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
		double l[2];
		for (int k = 0; k < 2; k++) {
			char body[512];
			snprintf(body, sizeof body,
				 "method: {type: lora, rank: 4, alpha: 8}\n"
				 "train:\n  steps: 2\n  batch_size: 4\n  %s\n  optimizer: {lr: 1.0e-2}\n"
				 "eval: {splits: []}\n",
				 variants[v][k]);
			e = load(body);
			struct rec *r = new_rec();
			struct diag d;
			char sub[32];
			snprintf(sub, sizeof sub, "keys-%zu-%d", v, k);
			if (run_once(experiment_config(e), sub, false, r, &d))
				fail_msg("%s", d.text);
			l[k] = metric_at(r, "train", "loss", 2);
			free(r);
			experiment_free(e);
		}
		if (!(l[0] != l[1]))
			fail_msg("variant %zu: %s and %s give the same loss %.9g", v, variants[v][0],
				 variants[v][1], l[0]);
	}
}

/* keys: eval.choices */
static void test_choices_beside_generation(void **state)
{
	(void)state;
	scratch_put("cls.jsonl", "{\"prompt\": \"ball\", \"completion\": \"sports\"}\n"
				 "{\"prompt\": \"rain\", \"completion\": \"weather\"}\n"
				 "{\"prompt\": \"atom\", \"completion\": \"science\"}\n");
	scratch_put("exp.yaml",
		    "name: cls\nmodel: {base: tiny.gguf, context: 32}\n"
		    "data: {format: completion, test: cls.jsonl, template: plain}\n"
		    "method: {type: none}\n"
		    "eval:\n  metrics: [exact_match, choice_accuracy, choice_accuracy_norm]\n"
		    "  choices: [sports, weather, science]\n  bootstrap: 10\n"
		    "  generate: {max_new_tokens: 4}\n");
	char *p = path_join(g_dir, "exp.yaml");
	struct experiment *e = NULL;
	struct diag d;
	diag_init(&d);
	if (experiment_load(&e, p, NULL, 0, &d))
		fail_msg("%s", d.text);
	free(p);
	struct rec *r = new_rec();
	if (run_once(experiment_config(e), "cls", false, r, &d))
		fail_msg("%s", d.text);
	double em = result(r, "base", "exact_match"), ca = result(r, "base", "choice_accuracy");
	double can = result(r, "base", "choice_accuracy_norm");
	/* accuracies over 3 examples */
	assert_true(em >= 0 && em <= 1 && ca >= 0 && ca <= 1 && can >= 0 && can <= 1);
	assert_float_equal(ca * 3, round(ca * 3), 1e-12);
	free(r);
	experiment_free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dpo_lora_learns),
		cmocka_unit_test(test_full_dpo_reference_and_resume),
		cmocka_unit_test(test_simpo_orpo_and_validation),
		cmocka_unit_test(test_keys_act),
		cmocka_unit_test(test_choices_beside_generation),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
