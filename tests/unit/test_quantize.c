/* model.quantize (quantize on load) on a tiny llama stored as a Hugging Face directory:
 * - in the model: frozen matrices become Q8_0 / Q4_0 blocks (trainable weights, norms and
 *   LoRA stay fp32; full fine-tuning quantizes nothing), the parameter memory shrinks, and
 *   the logits are those of the same model whose weights were rounded through the format
 *   beforehand (to 1e-5: only the summation order differs), not those of the unrounded
 *   model;
 * - through the native backend: the experiment key reaches the model (a q4_0 run's losses
 *   differ from the none run's, a q8_0 run's less so), so removing its effect fails here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "backends/native/io/dequant.h"
#include "backends/native/io/model_file.h"
#include "backends/native/model/model.h"
#include "backends/native/ops/ops.h"
#include "common/rng.h"
#include "common/util.h"
#include "schema/schema.h"
#include "tests/unit/tiny_model.h"
#include "common/banned.h"

#define B 2
#define T 16

static char tmpdir[64];

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof tmpdir, "/tmp/ftlab-quantize-XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	return dir_remove_all(tmpdir);
}

static struct model_file *load_hf(const char *dir)
{
	struct diag d;
	diag_init(&d);
	struct model_file *mf = NULL;
	if (model_file_load(&mf, dir, &d))
		fail_msg("%s", d.text);
	return mf;
}

static const char *write_tiny(int hf_dtype)
{
	static char dir[128];
	snprintf(dir, sizeof dir, "%s/tiny-%d", tmpdir, hf_dtype);
	struct tiny_model_spec s;
	tiny_model_spec_default(&s, ARCH_LLAMA);
	s.hf_dtype = hf_dtype;
	s.n_ctx = 256;
	struct diag d;
	diag_init(&d);
	if (tiny_model_write_hf(dir, &s, &d))
		fail_msg("%s", d.text);
	return dir;
}

static struct model_opts opts(enum method_type method, enum quantize_type q)
{
	static const char *const qv[] = {"q_proj", "v_proj"};
	static const char *const mlp[] = {"mlp"};
	struct model_opts o = {0};
	o.method = method;
	o.layers_first = o.layers_last = -1;
	o.max_batch = B;
	o.max_seq = T;
	o.seed = 7;
	o.quantize = q;
	if (method == METHOD_LORA) {
		o.lora_rank = 4;
		o.lora_alpha = 8;
		o.targets = qv;
		o.n_targets = 2;
	} else if (method == METHOD_FREEZE) {
		o.trainable = mlp;
		o.n_trainable = 1;
	}
	return o;
}

/* logits (B, T, V) of a forward on a fixed batch, in host memory */
static float *logits_of(const struct model_file *mf, const struct model_opts *o, size_t *n,
			struct model **keep)
{
	struct diag d;
	diag_init(&d);
	struct model *m = NULL;
	struct model_opts oo = *o;
	oo.full_logits = true; /* every position's logits kept, not the head's last chunk */
	if (model_create(&m, mf, &oo, &d))
		fail_msg("%s", d.text);
	int32_t tok[B * T], tgt[B * T];
	struct rng r;
	rng_seed(&r, 3, 1);
	for (int i = 0; i < B * T; i++) {
		tok[i] = (int32_t)rng_below(&r, TINY_N_VOCAB);
		tgt[i] = (int32_t)rng_below(&r, TINY_N_VOCAB);
	}
	model_set_training(m, false);
	assert_int_equal(model_forward(m, tok, tgt, B, T, NULL, NULL), 0);
	*n = (size_t)B * T * TINY_N_VOCAB;
	float *h = malloc(*n * sizeof(float));
	model_ops(m)->to_host(h, model_logits(m), *n * sizeof(float));
	if (keep)
		*keep = m;
	else
		model_free(m);
	return h;
}

/* the largest |a - b| relative to the largest |b| */
static double rel_diff(const float *a, const float *b, size_t n)
{
	double mx = 0, mb = 1e-30;
	for (size_t i = 0; i < n; i++) {
		mx = fmax(mx, fabs((double)a[i] - b[i]));
		mb = fmax(mb, fabs((double)b[i]));
	}
	return mx / mb;
}

/* mf's 2-D weights (rows a multiple of 32) rounded through type t, as F32 tensors */
static void round_through(struct model_file *mf, uint32_t t)
{
	struct diag d;
	diag_init(&d);
	assert_int_equal(model_file_dequantize(mf, &d), 0);
	size_t be = 32, bb = 34;
	ggml_type_block(t, &be, &bb);
	for (size_t i = 0; i < mf->n_tensors; i++) {
		struct mf_tensor *x = &mf->tensors[i];
		if (x->ndim != 2 || x->shape[1] % 32 != 0)
			continue;
		uint8_t *q = malloc(x->numel / 32 * bb);
		assert_true(quantize_from_f32(t, x->data, q, x->numel));
		dequant_to_f32(t, q, x->data, x->numel);
		free(q);
		x->raw = NULL; /* the F32 data is the tensor now */
	}
}

static void test_model_quantizes_frozen_weights(void **state)
{
	(void)state;
	static const struct {
		enum quantize_type q;
		uint32_t type;
	} cases[] = {{QUANTIZE_Q8_0, GGML_Q8_0}, {QUANTIZE_Q4_0, GGML_Q4_0}};
	for (int dt = 0; dt < 3; dt += 2) { /* F32 and BF16 files */
		const char *dir = write_tiny(dt);
		struct model_file *mf = load_hf(dir);
		size_t n;
		struct model *m0;
		struct model_opts o = opts(METHOD_LORA, QUANTIZE_NONE);
		float *l0 = logits_of(mf, &o, &n, &m0);
		const struct model_param *w0 = model_param_find(m0, "model.layers.0.self_attn.q_proj.weight");
		assert_int_equal(w0->type, dt == 0 ? GGML_F32 : GGML_BF16); /* as stored */
		for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
			struct model *mq;
			o = opts(METHOD_LORA, cases[c].q);
			float *lq = logits_of(mf, &o, &n, &mq);
			const char *frozen[] = {"model.embed_tokens.weight", "lm_head.weight",
						"model.layers.1.self_attn.q_proj.weight",
						"model.layers.0.mlp.down_proj.weight"};
			for (size_t i = 0; i < sizeof frozen / sizeof frozen[0]; i++) {
				const struct model_param *p = model_param_find(mq, frozen[i]);
				assert_non_null(p);
				assert_int_equal(p->type, cases[c].type);
				assert_null(p->data);
			}
			assert_int_equal(model_param_find(mq, "model.norm.weight")->type, GGML_F32);
			const struct model_param *la =
				model_param_find(mq, "model.layers.0.self_attn.q_proj.lora_A.weight");
			assert_int_equal(la->type, GGML_F32);
			/* F32 -> 1.06 or 0.56 bytes per weight; BF16 (2 bytes) -> the same */
			assert_true(model_memory(mq).params < model_memory(m0).params / (dt ? 1 : 2));
			/* the same as rounding the weights beforehand */
			struct model_file *mr = load_hf(dir);
			round_through(mr, cases[c].type);
			o = opts(METHOD_LORA, QUANTIZE_NONE);
			float *lr = logits_of(mr, &o, &n, NULL);
			double same = rel_diff(lq, lr, n), moved = rel_diff(lq, l0, n);
			printf("%s from %s: vs pre-rounded %.2g, vs unquantized %.2g\n",
			       ggml_type_name(cases[c].type), dt ? "BF16" : "F32", same, moved);
			assert_true(same <= 1e-5);
			assert_true(moved > 100 * same && moved > 1e-4);
			model_file_free(mr);
			model_free(mq);
			free(lq);
			free(lr);
		}
		model_free(m0);
		free(l0);
		model_file_free(mf);
	}
}

static void test_trainable_weights_stay_fp32(void **state)
{
	(void)state;
	struct model_file *mf = load_hf(write_tiny(0));
	size_t n;
	/* full fine-tuning: everything trains, nothing is quantized, the logits are the
	 * unquantized model's bit for bit */
	struct model_opts o = opts(METHOD_FULL, QUANTIZE_Q4_0);
	struct model *m;
	float *lq = logits_of(mf, &o, &n, &m);
	assert_int_equal(model_param_find(m, "model.embed_tokens.weight")->type, GGML_F32);
	model_free(m);
	o = opts(METHOD_FULL, QUANTIZE_NONE);
	float *l0 = logits_of(mf, &o, &n, NULL);
	assert_memory_equal(lq, l0, n * sizeof(float));
	free(lq);
	free(l0);
	/* freeze: the trained MLP is fp32, the frozen attention Q4_0 */
	o = opts(METHOD_FREEZE, QUANTIZE_Q4_0);
	float *lf = logits_of(mf, &o, &n, &m);
	assert_int_equal(model_param_find(m, "model.layers.0.mlp.up_proj.weight")->type, GGML_F32);
	assert_non_null(model_param_find(m, "model.layers.0.mlp.up_proj.weight")->grad);
	assert_int_equal(model_param_find(m, "model.layers.0.self_attn.o_proj.weight")->type,
			 GGML_Q4_0);
	model_free(m);
	free(lf);
	model_file_free(mf);
}

/* ---- through the native backend ---- */

struct rec {
	double train_loss1, base_loss;
};

static int r_metric(void *ud, const char *split, const char *name, int64_t step, double v)
{
	struct rec *r = ud;
	if (strcmp(split, "train") == 0 && strcmp(name, "loss") == 0 && step == 1)
		r->train_loss1 = v;
	return 0;
}

static int r_result(void *ud, const char *model, const char *split, const char *metric,
		    double v, double lo, double hi)
{
	(void)split, (void)lo, (void)hi;
	struct rec *r = ud;
	if (strcmp(model, "base") == 0 && strcmp(metric, "loss") == 0)
		r->base_loss = v;
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
	(void)ud, (void)level, (void)kind, (void)msg;
	return 0;
}

static int r_artifact(void *ud, const char *kind, const char *path)
{
	(void)ud, (void)kind, (void)path;
	return 0;
}

static struct rec run_quantized(const char *model_dir, const char *q)
{
	char *data = path_join(tmpdir, "data.jsonl");
	static const char lines[] = "{\"text\": \"the cat sat on the mat\"}\n"
				    "{\"text\": \"a dog ran in the park\"}\n"
				    "{\"text\": \"two birds sang a song\"}\n"
				    "{\"text\": \"the sun is warm today\"}\n";
	char yaml[2048], name[64];
	snprintf(yaml, sizeof yaml,
		 "name: quantize-test\nseed: 3\nmodel: {base: %s, context: 64, quantize: %s}\n"
		 "data:\n  format: text\n  train: %s\n  test: %s\n  max_length: 64\n"
		 "  limit: {train: 8, test: 4}\n"
		 "method: {type: lora, rank: 4, alpha: 8, targets: [q_proj, v_proj]}\n"
		 "train: {steps: 2, batch_size: 2, optimizer: {type: adamw, lr: 1.0e-3}}\n"
		 "eval: {splits: [test], metrics: [loss], compare_base: true, bootstrap: 10}\n",
		 model_dir, q, data, data);
	snprintf(name, sizeof name, "exp-%s.yaml", q);
	char *p = path_join(tmpdir, name);
	char *run_dir = path_join(tmpdir, q);
	struct diag d;
	diag_init(&d);
	assert_int_equal(file_write_atomic(data, lines, sizeof lines - 1, &d), 0);
	assert_int_equal(file_write_atomic(p, yaml, strlen(yaml), &d), 0);
	assert_int_equal(dir_make_all(run_dir, &d), 0);
	struct experiment *e = NULL;
	if (experiment_load(&e, p, NULL, 0, &d))
		fail_msg("%s", d.text);
	struct rec r = {0};
	struct run_sink sink = {.ud = &r, .metric = r_metric, .result = r_result,
				.prediction = r_prediction, .event = r_event,
				.artifact = r_artifact};
	volatile sig_atomic_t stop = 0;
	struct run_ctx ctx = {.cfg = experiment_config(e), .experiment = "quantize-test",
			      .run_id = q, .run_dir = run_dir, .threads = 1, .stop = &stop,
			      .sink = &sink};
	if (backend_cpu()->run(&ctx, &d))
		fail_msg("%s", d.text);
	experiment_free(e);
	free(p);
	free(data);
	free(run_dir);
	return r;
}

/* host logits (B, T, V) of m on the fixed batch of logits_of */
static float *forward_logits(struct model *m, size_t n)
{
	int32_t tok[B * T], tgt[B * T];
	struct rng r;
	rng_seed(&r, 3, 1);
	for (int i = 0; i < B * T; i++) {
		tok[i] = (int32_t)rng_below(&r, TINY_N_VOCAB);
		tgt[i] = (int32_t)rng_below(&r, TINY_N_VOCAB);
	}
	model_set_training(m, false);
	assert_int_equal(model_forward(m, tok, tgt, B, T, NULL, NULL), 0);
	float *h = malloc(n * sizeof(float));
	model_ops(m)->to_host(h, model_logits(m), n * sizeof(float));
	return h;
}

/* every trainable parameter moved by a seeded amount (so DoRA's B A, IA3's vectors and
 * the prefix act) */
static void perturb(struct model *m)
{
	struct rng r;
	rng_seed(&r, 11, 2);
	for (size_t i = 0; i < model_n_trainable(m); i++) {
		const struct model_param *p = model_trainable(m, i);
		float *h = malloc(p->numel * sizeof(float));
		model_ops(m)->to_host(h, p->data, p->numel * sizeof(float));
		for (size_t j = 0; j < p->numel; j++)
			h[j] += 0.2f * (2.0f * rng_uniform_f(&r) - 1.0f);
		model_ops(m)->to_device(p->data, h, p->numel * sizeof(float));
		free(h);
	}
}

/* DoRA, IA3 and prefix tuning over frozen weights kept as Q4_0 blocks read the values of
 * the blocks: at initialisation DoRA and IA3 are the quantized base model (DoRA's magnitude
 * is the norm of the stored rows, not of the file's fp32 rows), after their parameters
 * move they equal the same method on weights rounded through Q4_0 beforehand (DoRA's
 * norm of W + s B A and IA3's scaled columns dequantize W), and with the adapter switched
 * off each is the quantized base model. */
static void test_peft_methods_read_stored_weights(void **state)
{
	(void)state;
	const char *dir = write_tiny(0);
	struct model_file *mf = load_hf(dir), *mr = load_hf(dir);
	round_through(mr, GGML_Q4_0);
	static const char *const tg[] = {"q_proj", "v_proj", "down_proj"};
	static const enum method_type methods[] = {METHOD_DORA, METHOD_IA3, METHOD_PREFIX};
	size_t n;
	struct model_opts o = opts(METHOD_NONE, QUANTIZE_Q4_0);
	float *lb = logits_of(mf, &o, &n, NULL);
	for (size_t k = 0; k < sizeof methods / sizeof methods[0]; k++) {
		o = opts(methods[k], QUANTIZE_Q4_0);
		o.lora_rank = 4;
		o.lora_alpha = 8;
		o.targets = methods[k] == METHOD_DORA ? tg : NULL;
		o.n_targets = methods[k] == METHOD_DORA ? 3 : 0;
		o.ff_auto = methods[k] == METHOD_IA3;
		o.prefix_tokens = 3;
		struct model *mq, *mp;
		float *l0 = logits_of(mf, &o, &n, &mq);
		assert_int_equal(model_param_find(mq, "model.layers.0.self_attn.v_proj.weight")->type,
				 GGML_Q4_0);
		assert_int_equal(model_param_find(mq, "model.layers.0.mlp.down_proj.weight")->type,
				 GGML_Q4_0);
		double init = rel_diff(l0, lb, n);
		if (methods[k] != METHOD_PREFIX && init > 1e-6)
			fail_msg("method %zu at initialisation: %.3g from the quantized base", k, init);
		perturb(mq);
		float *lq = forward_logits(mq, n);
		struct model_opts op = o;
		op.quantize = QUANTIZE_NONE;
		free(logits_of(mr, &op, &n, &mp));
		perturb(mp);
		float *lr = forward_logits(mp, n);
		double same = rel_diff(lq, lr, n), moved = rel_diff(lq, lb, n);
		printf("method %zu on Q4_0: vs pre-rounded %.2g, vs the base %.2g\n", k, same, moved);
		assert_true(same <= 1e-5);
		assert_true(moved > 1e-3);
		model_set_adapter_enabled(mq, false);
		float *loff = forward_logits(mq, n);
		assert_true(rel_diff(loff, lb, n) <= 1e-6);
		model_free(mq);
		model_free(mp);
		free(l0);
		free(lq);
		free(lr);
		free(loff);
	}
	free(lb);
	model_file_free(mf);
	model_file_free(mr);
}

/* keys: model.quantize */
static void test_experiment_key_reaches_the_model(void **state)
{
	(void)state;
	const char *dir = write_tiny(0);
	struct rec none = run_quantized(dir, "none"), q8 = run_quantized(dir, "q8_0"),
		   q4 = run_quantized(dir, "q4_0");
	printf("base test loss: none %.6f, q8_0 %.6f, q4_0 %.6f; first train loss: %.6f, %.6f, "
	       "%.6f\n", none.base_loss, q8.base_loss, q4.base_loss, none.train_loss1,
	       q8.train_loss1, q4.train_loss1);
	assert_true(none.base_loss > 0 && none.train_loss1 > 0);
	double d8 = fabs(q8.base_loss - none.base_loss), d4 = fabs(q4.base_loss - none.base_loss);
	assert_true(d4 > 1e-5 * none.base_loss);
	assert_true(d8 > 0 && d8 < d4);
	assert_true(fabs(q4.train_loss1 - none.train_loss1) > 1e-5 * none.train_loss1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_model_quantizes_frozen_weights),
		cmocka_unit_test(test_trainable_weights_stay_fp32),
		cmocka_unit_test(test_peft_methods_read_stored_weights),
		cmocka_unit_test(test_experiment_key_reaches_the_model),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
