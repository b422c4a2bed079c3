/* Preference losses against TRL (fixture: tests/reference/make_pref_fixture.py). On the
 * tiny llama of tests/reference/fixtures/train_tiny/model (LoRA q,v r4, lora_B made
 * non-zero so that the policy differs from its reference) and on SmolLM2-135M (LoRA q,v
 * r8; skipped without models/), for DPO (sigmoid, IPO, hinge), conservative DPO, ORPO and
 * SimPO: the loss, TRL's logged statistics and the LoRA gradients of one pair batch, and
 * (tiny model) the loss trace of three AdamW steps through trainer_run. DPO's reference is
 * the model with its adapter off, as TRL's with a PEFT model. FTLAB_WRITE_FIXTURE=1
 * rewrites what the script reads (ours.json, adapter_init; for SmolLM2 also the F32 GGUF
 * /tmp/ftlab-smollm2-f32.gguf), then run the script. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/native/data/loader.h"
#include "backends/native/data/prepare.h"
#include "backends/native/io/model_file.h"
#include "backends/native/model/model.h"
#include "backends/native/peft/adapter.h"
#include "backends/native/peft/merge.h"
#include "backends/native/tok/tokenizer.h"
#include "backends/native/train/preference.h"
#include "backends/native/train/trainer.h"
#include "common/rng.h"
#include "common/util.h"
#include "tests/unit/tiny_weights.h"
#include "common/banned.h"

#define STEPS 3
#define NHEAD_PRINT 16

struct pcase {
	const char *name;
	struct pref_params p;
	bool nll_all; /* orpo: the SFT term over prompt and completion, as TRL's ORPOTrainer */
};

static const struct pcase CASES[] = {
	{"dpo_sigmoid", {OBJECTIVE_DPO, PREF_LOSS_SIGMOID, 0.5, 0.0, 0, 0}, false},
	{"dpo_cdpo", {OBJECTIVE_DPO, PREF_LOSS_SIGMOID, 0.5, 0.2, 0, 0}, false},
	{"dpo_ipo", {OBJECTIVE_DPO, PREF_LOSS_IPO, 0.5, 0.0, 0, 0}, false},
	{"dpo_hinge", {OBJECTIVE_DPO, PREF_LOSS_HINGE, 0.05, 0.0, 0, 0}, false},
	{"orpo", {OBJECTIVE_ORPO, PREF_LOSS_SIGMOID, 0, 0.0, 0.3, 0}, true},
	{"simpo", {OBJECTIVE_SIMPO, PREF_LOSS_SIGMOID, 2.0, 0.0, 0, 0.5}, false},
};
#define N_CASES (sizeof CASES / sizeof CASES[0])

/* The pair batch of a fixture: P pairs as data_pair_rows lays them out. */
struct pairs {
	struct tok_set set;
	int P, T;
	int32_t *tok, *tgt;
	uint8_t *comp;
};

static void pairs_rows(struct pairs *pr, bool nll_all)
{
	size_t idx[8];
	for (int q = 0; q < pr->P; q++)
		idx[q] = (size_t)q;
	pr->T = (int)data_pair_len(&pr->set, idx, pr->P);
	size_t n = (size_t)2 * (size_t)pr->P * (size_t)pr->T;
	free(pr->tok);
	free(pr->tgt);
	free(pr->comp);
	pr->tok = malloc(n * sizeof *pr->tok);
	pr->tgt = malloc(n * sizeof *pr->tgt);
	pr->comp = malloc(n);
	data_pair_rows(pr->tok, pr->tgt, pr->comp, &pr->set, idx, pr->P, pr->T, 0, nll_all);
}

static void pairs_free(struct pairs *pr)
{
	for (size_t i = 0; i < 2 * pr->set.n; i++)
		tok_example_clear(&pr->set.pair[i]);
	free(pr->set.pair);
	free(pr->tok);
	free(pr->tgt);
	free(pr->comp);
}

/* A source that returns the same pairs every time. */
static struct pairs *g_pairs;

static int same_pairs(void *ud, int32_t *tok, int32_t *tgt, uint8_t *comp, double *ref,
		      int max_pairs, int *out_pairs, int *out_T, bool *have_ref, struct diag *d)
{
	(void)ud, (void)ref, (void)d;
	assert_true(max_pairs >= g_pairs->P);
	size_t n = (size_t)2 * (size_t)g_pairs->P * (size_t)g_pairs->T;
	memcpy(tok, g_pairs->tok, n * sizeof *tok);
	memcpy(tgt, g_pairs->tgt, n * sizeof *tgt);
	memcpy(comp, g_pairs->comp, n);
	*out_pairs = g_pairs->P;
	*out_T = g_pairs->T;
	*have_ref = false;
	return 0;
}

static double g_trace[STEPS + 1];

static int rec_metric(void *ud, const char *split, const char *name, int64_t step, double v)
{
	(void)ud;
	if (strcmp(split, "train") == 0 && strcmp(name, "loss") == 0 && step >= 1 && step <= STEPS)
		g_trace[step] = v;
	return 0;
}

static void emit_json(void *ud, const char *name, double v)
{
	json_object_set_new((json_t *)ud, name, json_real(v));
}

static char *root_path(const char *rel)
{
	const char *root = getenv("FTLAB_ROOT");
	return path_join(root ? root : ".", rel);
}

/* lora_B non-zero (deterministic) so the policy is not its own reference. */
static void perturb_b(struct model *m, float scale)
{
	for (size_t i = 0; i < model_n_trainable(m); i++) {
		const struct model_param *p = model_trainable(m, i);
		if (!strstr(p->name, "lora_B"))
			continue;
		struct rng r;
		rng_seed(&r, 1000 + i, 5);
		for (size_t j = 0; j < p->numel; j++)
			p->data[j] = scale * (2.0f * rng_uniform_f(&r) - 1.0f);
	}
}

/* Saves or restores every trainable parameter (the start of each case). */
static void params_copy(struct model *m, float **store, bool save)
{
	for (size_t i = 0; i < model_n_trainable(m); i++) {
		const struct model_param *p = model_trainable(m, i);
		if (save) {
			store[i] = malloc(p->numel * sizeof(float));
			memcpy(store[i], p->data, p->numel * sizeof(float));
		} else {
			memcpy(p->data, store[i], p->numel * sizeof(float));
		}
	}
}

static json_t *iarr(const int32_t *p, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, json_integer(p[i]));
	return a;
}

/* The pairs as TRL's collator takes them: prompt_ids, chosen_ids, rejected_ids. */
static json_t *pairs_json(const struct pairs *pr)
{
	json_t *a = json_array();
	for (size_t i = 0; i < pr->set.n; i++) {
		const struct tok_example *c = &pr->set.pair[2 * i], *r = &pr->set.pair[2 * i + 1];
		assert_int_equal(c->n_prompt, r->n_prompt);
		json_array_append_new(a, json_pack("{s:o,s:o,s:o}", "prompt_ids", iarr(c->ids, c->n_prompt),
						   "chosen_ids", iarr(c->ids + c->n_prompt, c->n - c->n_prompt),
						   "rejected_ids", iarr(r->ids + r->n_prompt, r->n - r->n_prompt)));
	}
	return a;
}

/* Gradients in Hugging Face row order: all values (tiny) or norm and head (SmolLM2). */
static json_t *grads_json(struct model *m, const struct model_hparams *hp, bool interleaved,
			  bool full)
{
	json_t *g = json_object();
	for (size_t i = 0; i < model_n_trainable(m); i++) {
		const struct model_param *p = model_trainable(m, i);
		float *v = malloc(p->numel * sizeof(float));
		memcpy(v, p->grad, p->numel * sizeof(float));
		if (interleaved && strstr(p->name, "q_proj.lora_B"))
			rope_rows_permute(v, p->grad, hp->n_head, hp->head_dim, p->shape[1], false);
		double sq = 0;
		json_t *arr = json_array();
		for (size_t k = 0; k < p->numel; k++) {
			sq += (double)v[k] * v[k];
			if (full || k < NHEAD_PRINT)
				json_array_append_new(arr, json_real(v[k]));
		}
		json_object_set_new(g, p->name, json_pack("{s:f,s:o}", "norm", sqrt(sq), "values", arr));
		free(v);
	}
	return g;
}

/* One case: loss, statistics and gradients of one batch; with steps, the loss trace. */
static json_t *run_case(struct model *m, const struct pcase *c, struct pairs *pr,
			const struct model_hparams *hp, bool interleaved, bool full, int steps)
{
	pairs_rows(pr, c->nll_all);
	double n_ex, nll;
	pref_batch_counts(&n_ex, &nll, pr->tgt, pr->comp, pr->P, pr->T);
	assert_float_equal(n_ex, pr->P, 0);
	struct pref_stats st;
	memset(&st, 0, sizeof st);
	struct diag d;
	diag_init(&d);
	model_zero_grad(m);
	if (pref_micro_batch(m, pr->tok, pr->tgt, pr->comp, pr->P, pr->T, NULL, &c->p, n_ex, nll,
			     true, &st, &d))
		fail_msg("%s: %s", c->name, d.text);
	json_t *o = json_object();
	json_object_set_new(o, "loss", json_real(pref_stats_loss(&st, &c->p)));
	json_t *stats = json_object();
	pref_stats_each(&st, &c->p, emit_json, stats);
	json_object_set_new(o, "metrics", stats);
	json_object_set_new(o, "grads", grads_json(m, hp, interleaved, full));
	if (steps > 0) {
		model_zero_grad(m);
		g_pairs = pr;
		struct config_train ct = {.steps = steps, .batch_size = pr->P, .grad_accum = 1,
					  .max_grad_norm = 1.0, .nonfinite = NONFINITE_ABORT};
		ct.optimizer.lr = 1e-2;
		ct.optimizer.beta1 = 0.9;
		ct.optimizer.beta2 = 0.999;
		ct.optimizer.eps = 1e-8;
		ct.schedule.type = SCHEDULE_CONSTANT;
		struct run_sink sink = {.metric = rec_metric};
		struct batch_source src = {.T = pr->T, .next_pairs = same_pairs};
		struct trainer_opts to = {.train = &ct, .total_steps = steps, .sink = &sink,
					  .pref = &c->p};
		struct trainer_result res;
		if (trainer_run(&res, m, &src, NULL, &to, &d))
			fail_msg("%s: %s", c->name, d.text);
		json_t *tr = json_array();
		for (int s = 1; s <= steps; s++)
			json_array_append_new(tr, json_real(g_trace[s]));
		json_object_set_new(o, "trace", tr);
	}
	return o;
}

/* Compares ours with the reference: loss and statistics 2e-5 relative (+1e-6 absolute on
 * the tiny model, +5e-5 on SmolLM2: its log-probabilities of about -30 agree with torch's
 * to ~1e-6 relative after 30 float32 layers, and rewards and IPO's h are differences of
 * them), gradients 2e-4 of the tensor's largest component (tiny) or norms 1e-3 relative
 * and heads 1e-3 of the norm (SmolLM2), the trace 1e-4 relative. */
static void compare(const json_t *ours, const json_t *ref, const char *what, bool full)
{
	const char *cname;
	json_t *rc;
	size_t n_cases = 0;
	double atol = full ? 1e-6 : 5e-5;
	json_object_foreach((json_t *)ref, cname, rc) {
		json_t *oc = json_object_get(ours, cname);
		if (!oc)
			fail_msg("%s: reference case %s missing here", what, cname);
		n_cases++;
		double rl = json_number_value(json_object_get(rc, "loss"));
		double ol = json_number_value(json_object_get(oc, "loss"));
		if (fabs(ol - rl) > 2e-5 * fabs(rl) + atol)
			fail_msg("%s %s: loss %.9g, TRL %.9g", what, cname, ol, rl);
		const char *mn;
		json_t *mv;
		json_object_foreach(json_object_get(rc, "metrics"), mn, mv) {
			json_t *x = json_object_get(json_object_get(oc, "metrics"), mn);
			if (!x)
				fail_msg("%s %s: TRL logs %s, we do not", what, cname, mn);
			double a = json_number_value(x), b = json_number_value(mv);
			if (fabs(a - b) > 2e-5 * fabs(b) + atol)
				fail_msg("%s %s: %s %.9g, TRL %.9g", what, cname, mn, a, b);
		}
		const char *gn;
		json_t *gv;
		size_t n_g = 0;
		json_object_foreach(json_object_get(rc, "grads"), gn, gv) {
			json_t *mine = json_object_get(json_object_get(oc, "grads"), gn);
			if (!mine)
				fail_msg("%s %s: TRL has %s, we do not", what, cname, gn);
			json_t *ra = json_object_get(gv, "values"), *oa = json_object_get(mine, "values");
			double rn = json_number_value(json_object_get(gv, "norm"));
			double on = json_number_value(json_object_get(mine, "norm"));
			double scale = 1e-12;
			for (size_t i = 0; i < json_array_size(ra); i++)
				scale = fmax(scale, fabs(json_number_value(json_array_get(ra, i))));
			double tol = full ? 2e-4 * scale : 1e-3 * rn;
			if (!full && fabs(on - rn) > 1e-3 * rn + 1e-9)
				fail_msg("%s %s %s: gradient norm %.9g, TRL %.9g", what, cname, gn, on, rn);
			assert_int_equal(json_array_size(ra), json_array_size(oa));
			for (size_t i = 0; i < json_array_size(ra); i++) {
				double a = json_number_value(json_array_get(oa, i));
				double b = json_number_value(json_array_get(ra, i));
				if (fabs(a - b) > tol + 1e-9)
					fail_msg("%s %s %s[%zu]: ours %.9g, TRL %.9g", what, cname, gn, i, a, b);
			}
			n_g++;
		}
		assert_true(n_g > 0);
		json_t *rt = json_object_get(rc, "trace");
		for (size_t s = 0; rt && s < json_array_size(rt); s++) {
			double a = json_number_value(json_array_get(json_object_get(oc, "trace"), s));
			double b = json_number_value(json_array_get(rt, s));
			if (fabs(a - b) > 1e-4 * fabs(b) + 1e-6)
				fail_msg("%s %s: step %zu loss %.9g, TRL %.9g", what, cname, s + 1, a, b);
		}
	}
	assert_int_equal(n_cases, N_CASES);
}

static json_t *load_reference(const char *dir)
{
	char *p = path_join(dir, "reference.json");
	json_error_t err;
	json_t *ref = json_load_file(p, 0, &err);
	if (!ref)
		fail_msg("%s: %s (run tests/reference/make_pref_fixture.py)", p, err.text);
	free(p);
	return ref;
}

static void write_json(const char *dir, const char *name, json_t *j)
{
	char *p = path_join(dir, name);
	assert_int_equal(json_dump_file(j, p, JSON_INDENT(1) | JSON_REAL_PRECISION(12)), 0);
	free(p);
}

static void write_adapter(struct model *m, const char *dir, int rank, double alpha,
			  const struct model_hparams *hp, bool interleaved)
{
	struct lora_tensor lt[128];
	size_t n = model_n_trainable(m);
	assert_true(n <= 128);
	for (size_t i = 0; i < n; i++) {
		const struct model_param *p = model_trainable(m, i);
		lt[i] = (struct lora_tensor){(char *)p->name, p->data, p->shape[0], p->shape[1]};
	}
	char *tg[] = {"q_proj", "v_proj"};
	struct lora_info info = {.rank = rank, .alpha = alpha, .targets = tg, .n_targets = 2,
				 .interleaved = interleaved, .n_head = hp->n_head,
				 .n_head_kv = hp->n_head_kv, .head_dim = hp->head_dim};
	char *ad = path_join(dir, "adapter_init");
	struct diag d;
	diag_init(&d);
	if (adapter_write_peft(ad, lt, n, &info, &d))
		fail_msg("%s", d.text);
	free(ad);
}

/* One sequence of a pair: prompt ids then completion ids, the loss on the completion. */
static void set_seq(struct tok_example *e, const int32_t *prompt, size_t np, const int32_t *comp,
		    size_t nc)
{
	memset(e, 0, sizeof *e);
	e->n = np + nc;
	e->n_prompt = np;
	e->ids = malloc(e->n * sizeof *e->ids);
	e->loss = malloc(e->n);
	memcpy(e->ids, prompt, np * sizeof *prompt);
	memcpy(e->ids + np, comp, nc * sizeof *comp);
	for (size_t k = 0; k < e->n; k++)
		e->loss[k] = k >= np;
}

static void test_tiny(void **state)
{
	(void)state;
	bool write = getenv("FTLAB_WRITE_FIXTURE") != NULL;
	char *fix = root_path("tests/reference/fixtures/pref_tiny");
	struct model_file *mf = tiny_llama_mf(true, false, ROPE_HALF, 7); /* train_tiny/model */
	static const char *const tg[] = {"q_proj", "v_proj"};
	struct model_opts o = {.method = METHOD_LORA, .lora_rank = 4, .lora_alpha = 8,
			       .targets = tg, .n_targets = 2, .layers_first = -1,
			       .layers_last = -1, .max_batch = 4, .max_seq = 16, .seed = 11};
	struct model *m = NULL;
	struct diag d;
	diag_init(&d);
	if (model_create(&m, mf, &o, &d))
		fail_msg("%s", d.text);
	model_set_training(m, false); /* no dropout: TRL's model.train() has none either here */
	perturb_b(m, 0.2f);
	float *init[64];
	params_copy(m, init, true);
	/* two pairs: prompts of 3 and 4 tokens, completions of uneven lengths */
	static const int32_t p0[] = {5, 17, 9}, c0[] = {30, 2, 11, 8}, r0[] = {4, 22};
	static const int32_t p1[] = {12, 3, 3, 25}, c1[] = {6, 19}, r1[] = {33, 1, 14, 20, 7};
	struct pairs pr = {.P = 2};
	pr.set.n = 2;
	pr.set.pair = calloc(4, sizeof *pr.set.pair);
	set_seq(&pr.set.pair[0], p0, 3, c0, 4);
	set_seq(&pr.set.pair[1], p0, 3, r0, 2);
	set_seq(&pr.set.pair[2], p1, 4, c1, 2);
	set_seq(&pr.set.pair[3], p1, 4, r1, 5);
	json_t *ours = json_object();
	for (size_t k = 0; k < N_CASES; k++) {
		params_copy(m, init, false);
		json_object_set_new(ours, CASES[k].name,
				    run_case(m, &CASES[k], &pr, &mf->hp, false, true, STEPS));
	}
	if (write) {
		params_copy(m, init, false);
		write_adapter(m, fix, 4, 8, &mf->hp, false);
		json_t *in = json_pack("{s:o,s:s}", "pairs", pairs_json(&pr), "model",
				       "tests/reference/fixtures/train_tiny/model");
		write_json(fix, "pairs.json", in);
		json_decref(in);
		write_json(fix, "ours.json", ours);
	}
	json_t *ref = load_reference(fix);
	compare(ours, json_object_get(ref, "cases"), "tiny", true);
	json_decref(ref);
	json_decref(ours);
	for (size_t i = 0; i < model_n_trainable(m); i++)
		free(init[i]);
	pairs_free(&pr);
	model_free(m);
	model_file_free(mf);
	free(fix);
}

static void test_smollm2(void **state)
{
	(void)state;
	char *mp = root_path("models/SmolLM2-135M-Instruct.Q4_1.gguf");
	if (!path_exists(mp)) {
		free(mp);
		skip(); /* `make model` fetches it */
	}
	bool write = getenv("FTLAB_WRITE_FIXTURE") != NULL;
	char *fix = root_path("tests/reference/fixtures/pref_smollm2");
	struct diag d;
	diag_init(&d);
	struct model_file *mf = NULL;
	struct tokenizer *tok = NULL;
	if (model_file_load(&mf, mp, &d) || tokenizer_from_model_file(&tok, mf, &d))
		fail_msg("%s", d.text);
	/* two real pairs, plain template (the completion ends the sequence with EOS) */
	char *data = path_join(fix, "pairs.jsonl");
	struct config_data cd;
	memset(&cd, 0, sizeof cd);
	cd.format = DATA_PREFERENCE;
	cd.test.present = true;
	cd.test.path = data;
	cd.template_name = "plain";
	cd.max_length = 64;
	struct data_prepared prep;
	if (data_prepare(&prep, &cd, 64, tok, &d))
		fail_msg("%s", d.text);
	struct pairs pr = {.P = 2};
	pr.set = *prep.test;
	assert_int_equal(pr.set.n, 2);
	static const char *const tg[] = {"q_proj", "v_proj"};
	struct model_opts o = {.method = METHOD_LORA, .lora_rank = 8, .lora_alpha = 16,
			       .targets = tg, .n_targets = 2, .layers_first = -1,
			       .layers_last = -1, .max_batch = 4, .max_seq = 64, .seed = 3};
	struct model *m = NULL;
	if (model_create(&m, mf, &o, &d))
		fail_msg("%s", d.text);
	model_set_training(m, false);
	perturb_b(m, 0.02f);
	float *init[128];
	params_copy(m, init, true);
	const struct model_hparams *hp = &mf->hp;
	bool il = hp->rope_style == ROPE_INTERLEAVED;
	json_t *ours = json_object();
	for (size_t k = 0; k < N_CASES; k++) {
		params_copy(m, init, false);
		json_object_set_new(ours, CASES[k].name, run_case(m, &CASES[k], &pr, hp, il, false, 0));
	}
	if (write) {
		params_copy(m, init, false);
		write_adapter(m, fix, 8, 16, hp, il);
		json_t *in = json_pack("{s:o}", "pairs", pairs_json(&pr));
		write_json(fix, "pairs.json", in);
		json_decref(in);
		write_json(fix, "ours.json", ours);
		if (merged_write_gguf("/tmp/ftlab-smollm2-f32.gguf", mf, &d))
			fail_msg("%s", d.text);
	}
	json_t *ref = load_reference(fix);
	compare(ours, json_object_get(ref, "cases"), "smollm2", false);
	json_decref(ref);
	json_decref(ours);
	for (size_t i = 0; i < model_n_trainable(m); i++)
		free(init[i]);
	free(pr.tok);
	free(pr.tgt);
	free(pr.comp);
	data_prepared_free(&prep);
	model_free(m);
	tokenizer_free(tok);
	model_file_free(mf);
	free(data);
	free(fix);
	free(mp);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tiny),
		cmocka_unit_test(test_smollm2),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
