/* Unit tests for train/trainer on tiny random models (tests/unit/tiny_weights.c): a tiny
 * model learns a synthetic task; two runs with the same seed give identical traces; kill
 * at a step then resume gives the uninterrupted trace bit for bit (with LoRA dropout);
 * grad accumulation averages over the unmasked tokens of the whole accumulated batch;
 * non-finite policy; early stopping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/native/model/model.h"
#include "backends/native/ops/ops.h"
#include "backends/native/train/trainer.h"
#include "common/rng.h"
#include "common/util.h"
#include "tests/unit/tiny_weights.h"
#include "common/banned.h"

#define V 37
#define SEQ 8
#define MAXSTEPS 128

/* Synthetic task: row starts at a random token, each next token is (t*3 + 1) mod V.
 * The first `mask_prefix` targets of a row are masked; its state is one RNG. */
struct synth {
	struct rng r;
	int mask_prefix;
	bool vary_mask; /* row b masks b extra targets (unequal token counts per row) */
};

static int synth_next(void *ud, int32_t *tok, int32_t *tgt, int max_rows, int *out_rows,
		      int *out_T, struct diag *d)
{
	(void)d;
	struct synth *s = ud;
	for (int b = 0; b < max_rows; b++) {
		int32_t x = (int32_t)rng_below(&s->r, V);
		for (int t = 0; t < SEQ; t++) {
			tok[b * SEQ + t] = x;
			x = (x * 3 + 1) % V;
			int masked = s->mask_prefix + (s->vary_mask && (b % 2) ? 3 : 0);
			tgt[b * SEQ + t] = t < masked ? -1 : x;
		}
	}
	*out_rows = max_rows;
	*out_T = SEQ;
	return 0;
}

static int synth_save(void *ud, unsigned char **out, size_t *out_len)
{
	struct synth *s = ud;
	*out = malloc(sizeof(s->r));
	if (!*out)
		return FT_ENOMEM;
	memcpy(*out, &s->r, sizeof(s->r));
	*out_len = sizeof(s->r);
	return 0;
}

static int synth_restore(void *ud, const unsigned char *p, size_t n, struct diag *d)
{
	struct synth *s = ud;
	if (n != sizeof(s->r))
		return diag_set(d, FT_EINVAL, "", 0, 0, "bad cursor");
	memcpy(&s->r, p, n);
	return 0;
}

/* A sink that records the loss trace and events, and can raise *stop at a step. */
struct rec {
	double loss[MAXSTEPS + 1];
	double lr[MAXSTEPS + 1];
	int64_t last_step;
	int events_nonfinite, events_early, events_resume;
	int64_t stop_at;
	volatile sig_atomic_t stop;
};

static int rec_metric(void *ud, const char *split, const char *name, int64_t step, double v)
{
	struct rec *r = ud;
	if (strcmp(split, "train") == 0 && step <= MAXSTEPS) {
		if (strcmp(name, "loss") == 0) {
			r->loss[step] = v;
			r->last_step = step;
			if (step == r->stop_at)
				r->stop = 1;
		} else if (strcmp(name, "lr") == 0) {
			r->lr[step] = v;
		}
	}
	return 0;
}

static int rec_event(void *ud, const char *level, const char *kind, const char *msg)
{
	(void)level;
	(void)msg;
	struct rec *r = ud;
	r->events_nonfinite += strcmp(kind, "nonfinite") == 0;
	r->events_early += strcmp(kind, "early_stop") == 0;
	r->events_resume += strcmp(kind, "resume") == 0;
	return 0;
}

static struct config_train train_cfg(int64_t steps)
{
	struct config_train c = {0};
	c.steps = steps;
	c.batch_size = 4;
	c.grad_accum = 1;
	c.optimizer.type = OPTIMIZER_ADAMW;
	c.optimizer.lr = 1e-2;
	c.optimizer.beta1 = 0.9;
	c.optimizer.beta2 = 0.999;
	c.optimizer.eps = 1e-8;
	c.optimizer.weight_decay = 0.01;
	c.schedule.type = SCHEDULE_COSINE;
	c.schedule.warmup_steps = 2;
	c.schedule.min_lr_ratio = 0.1;
	c.max_grad_norm = 1.0;
	c.nonfinite = NONFINITE_ABORT;
	return c;
}

static bool use_gemma; /* the tiny Gemma 3 (window 3) instead of the tiny llama */
static bool use_checkpointing; /* models built with gradient checkpointing */
static bool use_projection; /* prefix tuning through PEFT's prefix_projection MLP */

static struct model *make_model(enum method_type method, float dropout, int max_batch)
{
	struct model_file *mf = use_gemma ? tiny_gemma3_mf(7, 3) : tiny_llama_mf(true, false, ROPE_HALF, 7);
	static const char *const targets[] = {"q_proj", "v_proj"};
	struct model_opts o = {.method = method, .lora_rank = 4, .lora_alpha = 8,
			       .lora_dropout = dropout, .targets = targets, .n_targets = 2,
			       .prefix_tokens = 4,
			       .layers_first = -1, .layers_last = -1, .max_batch = max_batch,
			       .max_seq = SEQ, .seed = 11};
	/* bottleneck adapters: Houlsby at both positions, swish, bottleneck 16 / 4 */
	o.bn_attn = o.bn_mlp = true;
	o.bn_reduction = 4;
	o.bn_act = OPS_ACT_SILU;
	o.grad_checkpointing = use_checkpointing;
	o.prefix_projection = use_projection;
	struct model *m = NULL;
	struct diag d;
	diag_init(&d);
	if (model_create(&m, mf, &o, &d) != 0)
		fail_msg("model_create: %s", d.text);
	model_file_free(mf);
	return m;
}

static int run(struct model *m, const struct config_train *c, struct rec *r, const char *ckpt,
	       bool resume, struct synth *s, const struct validator *val, struct trainer_result *res)
{
	struct run_sink sink = {.ud = r, .metric = rec_metric, .event = rec_event};
	struct batch_source src = {.ud = s, .T = SEQ, .next = synth_next, .save = synth_save,
				   .restore = synth_restore};
	struct trainer_opts o = {.train = c, .total_steps = c->steps, .ckpt_dir = ckpt,
				 .resume = resume, .config_hash = "cfg", .data_hash = "data",
				 .stop = &r->stop, .sink = &sink};
	struct diag d;
	diag_init(&d);
	int rc = trainer_run(res, m, &src, val, &o, &d);
	if (rc && rc != FT_EINTR && rc != FT_ERUN)
		fail_msg("trainer_run: %s", d.text);
	return rc;
}

static void test_tiny_model_learns(void **state)
{
	(void)state;
	/* Full fine-tuning, 60 steps: the loss falls from ~ln(37) = 3.6 to below 0.3. */
	struct model *m = make_model(METHOD_FULL, 0.0f, 4);
	struct config_train c = train_cfg(60);
	c.optimizer.lr = 3e-2;
	struct rec r = {.stop_at = -1};
	struct synth s = {.mask_prefix = 1};
	rng_seed(&s.r, 5, 0);
	struct trainer_result res;
	assert_int_equal(run(m, &c, &r, NULL, false, &s, NULL, &res), 0);
	assert_int_equal(res.steps_done, 60);
	assert_true(r.loss[1] > 3.0);
	if (!(r.loss[60] < 0.3))
		fail_msg("loss after 60 steps %g (first %g)", r.loss[60], r.loss[1]);
	/* The schedule: warmup 0, 0.5*peak, then cosine down to the floor. */
	assert_float_equal(r.lr[1], 0.0, 1e-12);
	assert_float_equal(r.lr[2], 1.5e-2, 1e-12);
	assert_float_equal(r.lr[60], 3e-2 * (0.1 + 0.9 * 0.5 * (1 + cos(M_PI * 57.0 / 58.0))), 1e-9);
	model_free(m);

	/* LoRA on q,v of a random 2-layer model (embeddings and MLP frozen) learns more
	 * slowly; stated threshold: the loss falls below 60 % of the first step's. */
	m = make_model(METHOD_LORA, 0.0f, 4);
	memset(&r, 0, sizeof(r));
	r.stop_at = -1;
	rng_seed(&s.r, 5, 0);
	c = train_cfg(120);
	c.optimizer.lr = 1e-1;
	assert_int_equal(run(m, &c, &r, NULL, false, &s, NULL, &res), 0);
	if (!(r.loss[120] < 0.6 * r.loss[1]))
		fail_msg("LoRA loss after 120 steps %g (first %g)", r.loss[120], r.loss[1]);
	model_free(m);
}

/* Runs config c uninterrupted twice (identical traces), then killed after step 7 and
 * resumed in a fresh model from its checkpoint (the same trace, bit for bit); the
 * uninterrupted trace goes to out (steps 1..12). method: LoRA, DoRA, IA3 or prefix. */
static void check_resume(struct config_train c, enum method_type method, double out[13])
{
	char tmpl[] = "/tmp/ftlab-train-XXXXXX";
	char *dir = ft_strdup(mkdtemp(tmpl));
	char *ck = path_join(dir, "checkpoint");
	c.steps = 12;
	c.checkpoint_every = 4;
	struct trainer_result res;

	/* Reference: uninterrupted, LoRA (or DoRA) with dropout (the mask counter must resume
	 * too). */
	struct rec a = {.stop_at = -1}, b = {.stop_at = -1};
	struct synth s;
	struct model *m = make_model(method, 0.1f, 4);
	memset(&s, 0, sizeof(s));
	rng_seed(&s.r, 9, 0);
	assert_int_equal(run(m, &c, &a, NULL, false, &s, NULL, &res), 0);
	model_free(m);
	/* Same seed, same threads: identical trace. */
	m = make_model(method, 0.1f, 4);
	rng_seed(&s.r, 9, 0);
	assert_int_equal(run(m, &c, &b, NULL, false, &s, NULL, &res), 0);
	model_free(m);
	assert_memory_equal(a.loss, b.loss, sizeof(a.loss));
	assert_int_equal(a.last_step, 12);

	/* Killed after step 7 (between checkpoints): a checkpoint is written on stop. */
	struct rec k = {.stop_at = 7};
	m = make_model(method, 0.1f, 4);
	rng_seed(&s.r, 9, 0);
	assert_int_equal(run(m, &c, &k, ck, false, &s, NULL, &res), FT_EINTR);
	assert_int_equal(res.steps_done, 7);
	model_free(m);
	/* A fresh process: new model from the same file and seed, a data source at its start;
	 * resume restores weights, moments, data cursor and dropout counter. */
	struct rec rs = {.stop_at = -1};
	m = make_model(method, 0.1f, 4);
	rng_seed(&s.r, 12345, 0); /* deliberately wrong: the cursor must be restored */
	assert_int_equal(run(m, &c, &rs, ck, true, &s, NULL, &res), 0);
	assert_int_equal(res.resumed_from, 7);
	assert_int_equal(rs.events_resume, 1);
	for (int i = 1; i <= 7; i++)
		assert_true(k.loss[i] == a.loss[i]);
	for (int i = 8; i <= 12; i++)
		if (rs.loss[i] != a.loss[i])
			fail_msg("step %d: resumed %.9g, uninterrupted %.9g", i, rs.loss[i], a.loss[i]);
	model_free(m);

	/* Resume refuses a different config. */
	m = make_model(method, 0.1f, 4);
	struct run_sink sink = {.ud = &rs, .metric = rec_metric, .event = rec_event};
	struct batch_source src = {.ud = &s, .T = SEQ, .next = synth_next, .save = synth_save,
				   .restore = synth_restore};
	struct trainer_opts o = {.train = &c, .total_steps = 12, .ckpt_dir = ck, .resume = true,
				 .config_hash = "other", .data_hash = "data", .sink = &sink};
	struct diag d;
	diag_init(&d);
	assert_int_equal(trainer_run(&res, m, &src, NULL, &o, &d), FT_EINVAL);
	assert_non_null(strstr(d.text, "different config"));
	model_free(m);
	free(ck);
	assert_int_equal(dir_remove_all(dir), 0);
	free(dir);
	memcpy(out, a.loss, 13 * sizeof(double));
}

/* Bottleneck adapters (method adapter): killed and resumed, the uninterrupted trace bit
 * for bit, with and without gradient checkpointing (the same trace both ways). */
static void test_adapter_resume_bit_identical(void **state)
{
	(void)state;
	double plain[13], ck[13];
	struct config_train c = train_cfg(12);
	check_resume(c, METHOD_ADAPTER, plain);
	use_checkpointing = true;
	check_resume(c, METHOD_ADAPTER, ck);
	use_checkpointing = false;
	assert_memory_equal(plain, ck, sizeof plain);
	assert_true(plain[12] < plain[1]);
}

/* The default config (AdamW, the method with dropout where it has one): see check_resume. */
static void resume_case(enum method_type method)
{
	double trace[13];
	check_resume(train_cfg(12), method, trace);
}

static void test_deterministic_and_resume(void **state)
{
	(void)state;
	resume_case(METHOD_LORA);
}

/* DoRA: the magnitude vectors are trainables like A and B; the norm is recomputed from
 * the weights at every forward, so nothing else has to be saved. */
static void test_deterministic_and_resume_dora(void **state)
{
	(void)state;
	resume_case(METHOD_DORA);
}

static void test_deterministic_and_resume_ia3(void **state)
{
	(void)state;
	resume_case(METHOD_IA3);
}

static void test_deterministic_and_resume_prefix(void **state)
{
	(void)state;
	resume_case(METHOD_PREFIX);
}

/* prefix_projection: the MLP's five parameters and their AdamW moments are the checkpoint
 * (the table is recomputed at every forward): killed and resumed, the uninterrupted trace
 * bit for bit, with and without gradient checkpointing (the same trace both ways), and not
 * plain prefix tuning's trace. */
static void test_prefix_projection_resume_bit_identical(void **state)
{
	(void)state;
	double plain[13], ck[13], direct[13];
	struct config_train c = train_cfg(12);
	check_resume(c, METHOD_PREFIX, direct);
	use_projection = true;
	check_resume(c, METHOD_PREFIX, plain);
	use_checkpointing = true;
	check_resume(c, METHOD_PREFIX, ck);
	use_checkpointing = use_projection = false;
	assert_memory_equal(plain, ck, sizeof plain);
	assert_true(plain[1] != direct[1] && plain[12] != direct[12]);
}

/* SGD with momentum, Nesterov and weight decay: its momentum buffers are part of the
 * checkpoint (named momentum/...), so kill and resume repeat the uninterrupted trace bit
 * for bit; and the trace is SGD's, not AdamW's. */
/* keys: train.optimizer.type train.optimizer.momentum train.optimizer.nesterov */
static void test_sgd_resume_bit_identical(void **state)
{
	(void)state;
	double adamw[13], sgd[13];
	struct config_train c = train_cfg(12);
	check_resume(c, METHOD_LORA, adamw);
	c.optimizer.type = OPTIMIZER_SGD;
	c.optimizer.lr = 0.2;
	c.optimizer.momentum = 0.9;
	c.optimizer.nesterov = true;
	c.optimizer.weight_decay = 0.01;
	check_resume(c, METHOD_LORA, sgd);
	assert_true(sgd[12] != adamw[12]);
	assert_true(sgd[12] < sgd[1]); /* it trains */
}


/* Gemma 3 (sliding window, the extra norms): learns under full fine-tuning, and a killed
 * LoRA run resumes to the uninterrupted trace bit for bit. */
static void test_gemma3_learns_and_resumes(void **state)
{
	(void)state;
	use_gemma = true;
	struct model *m = make_model(METHOD_FULL, 0.0f, 4);
	struct config_train c = train_cfg(60);
	c.optimizer.lr = 3e-2;
	struct rec r = {.stop_at = -1};
	struct synth s = {.mask_prefix = 1};
	rng_seed(&s.r, 5, 0);
	struct trainer_result res;
	assert_int_equal(run(m, &c, &r, NULL, false, &s, NULL, &res), 0);
	if (!(r.loss[60] < 0.3 * r.loss[1]))
		fail_msg("Gemma loss after 60 steps %g (first %g)", r.loss[60], r.loss[1]);
	model_free(m);
	resume_case(METHOD_LORA);
	use_gemma = false;
}

static void params_copy(struct model *m, float *out, size_t cap)
{
	size_t off = 0;
	for (size_t i = 0; i < model_n_trainable(m); i++) {
		const struct model_param *p = model_trainable(m, i);
		assert_true(off + p->numel <= cap);
		memcpy(out + off, p->data, p->numel * sizeof(float));
		off += p->numel;
	}
}

static void test_grad_accum_whole_batch_mean(void **state)
{
	(void)state;
	/* Two steps of batch 4 equal two steps of 2 micro-batches of 2 on the same rows.
	 * vary_mask masks 0 or 3 extra targets by row parity, so the two micro-batches hold
	 * different numbers of unmasked tokens: only the mean over the unmasked tokens of the
	 * whole accumulated batch gives the same loss and update. */
	struct config_train c = train_cfg(2);
	c.schedule.type = SCHEDULE_CONSTANT;
	c.schedule.warmup_steps = 0;
	c.max_grad_norm = 0.0;
	struct trainer_result res;
	struct synth s = {.mask_prefix = 1, .vary_mask = true};
	static float w1[200000], w2[200000];
	struct rec r1 = {.stop_at = -1}, r2 = {.stop_at = -1};

	struct model *m = make_model(METHOD_FULL, 0.0f, 4);
	rng_seed(&s.r, 3, 0);
	assert_int_equal(run(m, &c, &r1, NULL, false, &s, NULL, &res), 0);
	params_copy(m, w1, 200000);
	model_free(m);

	c.batch_size = 2;
	c.grad_accum = 2;
	m = make_model(METHOD_FULL, 0.0f, 2);
	rng_seed(&s.r, 3, 0);
	assert_int_equal(run(m, &c, &r2, NULL, false, &s, NULL, &res), 0);
	params_copy(m, w2, 200000);
	size_t total = 0;
	for (size_t i = 0; i < model_n_trainable(m); i++)
		total += model_trainable(m, i)->numel;
	model_free(m);
	assert_float_equal(r1.loss[1], r2.loss[1], 1e-6);
	assert_float_equal(r1.loss[2], r2.loss[2], 1e-5);
	for (size_t i = 0; i < total; i++)
		assert_float_equal(w1[i], w2[i], 1e-5);
}

/* keys: train.nonfinite */
static void test_nonfinite_policy(void **state)
{
	(void)state;
	struct config_train c = train_cfg(10);
	struct trainer_result res;
	struct synth s = {.mask_prefix = 1};
	for (int policy = 0; policy < 2; policy++) {
		c.nonfinite = policy ? NONFINITE_SKIP_STEP : NONFINITE_ABORT;
		struct model *m = make_model(METHOD_FULL, 0.0f, 4);
		/* A NaN in a trainable weight: every step is non-finite. */
		model_trainable(m, 0)->data[0] = NAN;
		struct rec r = {.stop_at = -1};
		rng_seed(&s.r, 1, 0);
		assert_int_equal(run(m, &c, &r, NULL, false, &s, NULL, &res), FT_ERUN);
		if (policy == 0) {
			assert_int_equal(r.events_nonfinite, 1);
			assert_int_equal(res.steps_done, 0);
		} else {
			/* three skipped steps, the fourth in a row ends the run */
			assert_int_equal(r.events_nonfinite, 4);
			assert_int_equal(res.skipped_steps, 4);
		}
		model_free(m);
	}
}

struct fake_val {
	int calls;
	const double *metric; /* the watched metric's values, one per evaluation */
	size_t n;
};

static int fake_val(void *ud, struct model *m, double *out_loss, double *out_metric,
		    struct diag *d)
{
	(void)m;
	(void)d;
	struct fake_val *f = ud;
	size_t i = (size_t)f->calls < f->n ? (size_t)f->calls : f->n - 1;
	*out_loss = 10.0 - f->calls; /* always improving: only the watched metric decides */
	*out_metric = f->metric[i];
	f->calls++;
	return 0;
}

/* Early stopping watches the metric of train.early_stopping.metric at every
 * train.eval_every: lower is better for loss, higher for token_accuracy and the text
 * metrics; min_delta is the smallest change that counts; patience evaluations without
 * improvement stop the run. */
/* keys: train.early_stopping train.early_stopping.metric train.early_stopping.patience train.early_stopping.min_delta train.eval_every */
static void test_early_stopping(void **state)
{
	(void)state;
	static const double loss_seq[] = {2.0, 1.5, 1.6, 1.7, 1.8, 1.9, 2.0, 2.1};
	static const double acc_seq[] = {0.50, 0.60, 0.62, 0.63, 0.64, 0.70, 0.71, 0.72};
	struct {
		const char *metric;
		const double *seq;
		double min_delta;
		int patience, eval_every;
		int64_t steps; /* where it stops */
		int calls;
	} cases[] = {
		/* loss: evals at 2,4 improve; 6,8,10 do not -> stop at 10 */
		{"validation.loss", loss_seq, 0.0, 3, 2, 10, 5},
		{"validation.loss", loss_seq, 0.0, 1, 2, 6, 3},
		{"validation.loss", loss_seq, 0.0, 2, 3, 12, 4},
		/* higher is better: with min_delta 0 each of the 8 values improves, then the
		 * last repeats 3 times (stop at eval 11, step 22); with 0.05, 0.62..0.64 do
		 * not count: stop at the fifth */
		{"validation.token_accuracy", acc_seq, 0.0, 3, 2, 22, 11},
		{"validation.token_accuracy", acc_seq, 0.05, 3, 2, 10, 5},
		{"validation.exact_match", acc_seq, 0.05, 2, 2, 8, 4},
	};
	for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
		struct config_train c = train_cfg(40);
		c.eval_every = cases[k].eval_every;
		c.early_stopping.enabled = true;
		c.early_stopping.metric = (char *)cases[k].metric;
		c.early_stopping.patience = cases[k].patience;
		c.early_stopping.min_delta = cases[k].min_delta;
		struct fake_val fv = {.metric = cases[k].seq, .n = 8};
		struct validator val = {.ud = &fv, .evaluate = fake_val};
		struct synth s = {.mask_prefix = 1};
		rng_seed(&s.r, 1, 0);
		struct rec r = {.stop_at = -1};
		struct trainer_result res;
		struct model *m = make_model(METHOD_LORA, 0.0f, 4);
		assert_int_equal(run(m, &c, &r, NULL, false, &s, &val, &res), 0);
		if (res.steps_done != cases[k].steps || fv.calls != cases[k].calls)
			fail_msg("case %zu (%s, min_delta %g, patience %d): stopped at %lld after %d "
				 "evaluations, expected %lld after %d", k, cases[k].metric,
				 cases[k].min_delta, cases[k].patience, (long long)res.steps_done,
				 fv.calls, (long long)cases[k].steps, cases[k].calls);
		assert_int_equal(res.early_stopped, cases[k].steps < 40);
		assert_int_equal(r.events_early, cases[k].steps < 40 ? 1 : 0);
		model_free(m);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tiny_model_learns),
		cmocka_unit_test(test_deterministic_and_resume),
		cmocka_unit_test(test_deterministic_and_resume_dora),
		cmocka_unit_test(test_deterministic_and_resume_ia3),
		cmocka_unit_test(test_deterministic_and_resume_prefix),
		cmocka_unit_test(test_prefix_projection_resume_bit_identical),
		cmocka_unit_test(test_sgd_resume_bit_identical),
		cmocka_unit_test(test_adapter_resume_bit_identical),
		cmocka_unit_test(test_gemma3_learns_and_resumes),
		cmocka_unit_test(test_grad_accum_whole_batch_mean),
		cmocka_unit_test(test_nonfinite_policy),
		cmocka_unit_test(test_early_stopping),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
