/* The native backend end to end on SmolLM2-135M (skipped when models/ lacks it): a short
 * LoRA run on experiments/data/topics through backend_cpu()->run with a recording sink
 * (train metrics per step, adapter/ written, base and tuned results), and kill + resume
 * through ctx->stop (after step 2 of 4, between checkpoints): the resumed run's loss trace equals the uninterrupted one bit for
 * bit. */
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
#include "common/util.h"
#include "schema/schema.h"
#include "common/banned.h"

#define STEPS 4

struct rec {
	double loss[STEPS + 1];
	int n_loss, n_lr, n_gn, n_tps;
	int results_base, results_tuned;
	int artifacts_adapter, artifacts_ckpt;
	int64_t stop_at;
	volatile sig_atomic_t stop;
};

static int r_metric(void *ud, const char *split, const char *name, int64_t step, double v)
{
	struct rec *r = ud;
	if (strcmp(split, "train") != 0)
		return 0;
	if (strcmp(name, "loss") == 0 && step >= 1 && step <= STEPS) {
		r->loss[step] = v;
		r->n_loss++;
		if (step == r->stop_at)
			r->stop = 1;
	}
	r->n_lr += strcmp(name, "lr") == 0;
	r->n_gn += strcmp(name, "grad_norm") == 0;
	r->n_tps += strcmp(name, "tokens_per_s") == 0;
	return 0;
}

static int r_result(void *ud, const char *model, const char *split, const char *metric,
		    double v, double lo, double hi)
{
	(void)split;
	(void)metric;
	(void)lo;
	(void)hi;
	(void)v;
	struct rec *r = ud;
	r->results_base += strcmp(model, "base") == 0;
	r->results_tuned += strcmp(model, "tuned") == 0;
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

static const char *g_run_dir;

static int r_artifact(void *ud, const char *kind, const char *path)
{
	struct rec *r = ud;
	/* Like the runner: a file, relative to the run directory. */
	char *full = path_join(g_run_dir, path);
	FILE *f = full ? fopen(full, "rb") : NULL;
	if (!f)
		fail_msg("artifact %s (%s) is not a readable file under the run directory", path, kind);
	fclose(f);
	free(full);
	r->artifacts_adapter += strcmp(kind, "adapter") == 0;
	r->artifacts_ckpt += strcmp(kind, "checkpoint") == 0;
	return 0;
}

static char *root_path(const char *rel)
{
	const char *root = getenv("FTLAB_ROOT");
	return path_join(root ? root : ".", rel);
}

static struct experiment *load_exp(const char *dir)
{
	char *model = root_path("models/SmolLM2-135M-Instruct.Q4_1.gguf");
	char *data = root_path("experiments/data/topics/train.jsonl");
	char *test = root_path("experiments/data/topics/test.jsonl");
	char yaml[4096];
	snprintf(yaml, sizeof(yaml),
		 "name: backend-test\nseed: 3\nmodel: {base: %s, context: 128}\n"
		 "data:\n  format: completion\n  train: %s\n  test: %s\n  template: chatml\n"
		 "  max_length: 128\n  limit: {train: 12, test: 4}\n"
		 "method: {type: lora, rank: 4, alpha: 8, dropout: 0.1, targets: [q_proj, v_proj]}\n"
		 "train:\n  steps: %d\n  batch_size: 2\n  grad_accum: 2\n"
		 "  optimizer: {type: adamw, lr: 1.0e-3}\n"
		 "  schedule: {type: cosine, warmup_steps: 2, min_lr_ratio: 0.1}\n"
		 "  checkpoint_every: 3\n"
		 "eval:\n  splits: [test]\n  metrics: [loss]\n  compare_base: true\n"
		 "  bootstrap: 10\n",
		 model, data, test, STEPS);
	char *p = path_join(dir, "exp.yaml");
	struct diag d;
	diag_init(&d);
	assert_int_equal(file_write_atomic(p, yaml, strlen(yaml), &d), 0);
	struct experiment *e = NULL;
	if (experiment_load(&e, p, NULL, 0, &d))
		fail_msg("%s", d.text);
	free(p);
	free(model);
	free(data);
	free(test);
	return e;
}

static int run_once(const struct config *cfg, const char *run_dir, bool resume, struct rec *r,
		    struct diag *d)
{
	struct run_sink sink = {.ud = r, .metric = r_metric, .result = r_result,
				.prediction = r_prediction, .event = r_event,
				.artifact = r_artifact};
	g_run_dir = run_dir;
	struct run_ctx ctx = {.cfg = cfg, .experiment = "backend-test", .run_id = "r1",
			      .run_dir = run_dir, .resume = resume, .threads = 2,
			      .stop = &r->stop, .sink = &sink};
	diag_init(d);
	return backend_cpu()->run(&ctx, d);
}

static void test_backend_train_and_resume(void **state)
{
	(void)state;
	char *mp = root_path("models/SmolLM2-135M-Instruct.Q4_1.gguf");
	bool have = path_exists(mp);
	free(mp);
	if (!have)
		skip();
	char tmpl[] = "/tmp/ftlab-backend-XXXXXX";
	char *dir = ft_strdup(mkdtemp(tmpl));
	struct experiment *e = load_exp(dir);
	const struct config *cfg = experiment_config(e);
	struct diag d;

	char *a_dir = path_join(dir, "a");
	assert_int_equal(dir_make_all(a_dir, &d), 0);
	struct rec a = {.stop_at = -1};
	if (run_once(cfg, a_dir, false, &a, &d))
		fail_msg("%s", d.text);
	assert_int_equal(a.n_loss, STEPS);
	assert_int_equal(a.n_lr, STEPS);
	assert_int_equal(a.n_gn, STEPS);
	assert_int_equal(a.n_tps, STEPS);
	assert_true(a.results_base > 0 && a.results_tuned > 0);
	assert_int_equal(a.artifacts_adapter, 2);
	/* The data fit the context: the loss is taken on real tokens. */
	for (int i = 1; i <= STEPS; i++)
		assert_true(a.loss[i] > 0.01);
	char *ad = path_join(a_dir, "adapter/adapter_model.safetensors");
	assert_true(path_exists(ad));
	free(ad);

	/* Killed after step 2, then resumed in a fresh call. */
	char *b_dir = path_join(dir, "b");
	assert_int_equal(dir_make_all(b_dir, &d), 0);
	struct rec k = {.stop_at = 2};
	assert_int_equal(run_once(cfg, b_dir, false, &k, &d), FT_EINTR);
	assert_int_equal(k.results_tuned, 0);
	struct rec rs = {.stop_at = -1};
	if (run_once(cfg, b_dir, true, &rs, &d))
		fail_msg("%s", d.text);
	assert_int_equal(rs.n_loss, STEPS - 2);
	for (int i = 1; i <= 2; i++)
		assert_true(k.loss[i] == a.loss[i]);
	for (int i = 3; i <= STEPS; i++)
		if (rs.loss[i] != a.loss[i])
			fail_msg("step %d: resumed %.9g, uninterrupted %.9g", i, rs.loss[i], a.loss[i]);
	experiment_free(e);
	free(a_dir);
	free(b_dir);
	assert_int_equal(dir_remove_all(dir), 0);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_backend_train_and_resume),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
