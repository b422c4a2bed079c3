/* Device-memory isolation of the native engine, without a GPU: whole runs (train with
 * validation, checkpoints and resume, LoRA adapter export, base and tuned evaluation with
 * generation) through native_engine_run on ops_guard(ops_cpu()), a table whose memory the
 * host cannot read or write except through to_host/to_device (PROT_NONE pages, see
 * tests/unit/ops_guard.h), exactly as with a GPU's memory. Each run's metric trace,
 * results and predictions must equal the plain CPU run's bit for bit, with no pointer-kind
 * violation and no allocation left. A forked child that reads model logits directly from
 * the host is killed by the guard, so a reintroduced host read fails this test. Tiny
 * llama (LoRA with dropout, bf16 matmuls, clipping, weight decay, grad accumulation) and
 * GPT-2 (full, gradient checkpointing) models written by tiny_model.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backends/backend.h"
#include "backends/native/model/model.h"
#include "backends/native/native_engine.h"
#include "backends/native/ops/ops.h"
#include "common/util.h"
#include "schema/schema.h"
#include "tests/unit/ops_guard.h"
#include "tests/unit/tiny_model.h"
#include "common/banned.h"

#define MAX_REC 256

struct rec {
	char line[MAX_REC][320]; /* every metric, result and prediction, in order */
	int n;
	int64_t stop_at;         /* set ctx stop after this train step (0 = never) */
	volatile sig_atomic_t stop;
};

static void add(struct rec *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(struct rec *r, const char *fmt, ...)
{
	if (r->n >= MAX_REC)
		fail_msg("too many records");
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->line[r->n++], sizeof r->line[0], fmt, ap);
	va_end(ap);
}

static int r_metric(void *ud, const char *split, const char *name, int64_t step, double v)
{
	struct rec *r = ud;
	if (strcmp(name, "tokens_per_s") == 0 || strcmp(split, "cost") == 0)
		return 0; /* a timing, or the run's cost (times and memory) */
	add(r, "metric %s %s %lld %a", split, name, (long long)step, v);
	if (r->stop_at && strcmp(split, "train") == 0 && strcmp(name, "loss") == 0 &&
	    step == r->stop_at)
		r->stop = 1;
	return 0;
}

static int r_result(void *ud, const char *model, const char *split, const char *metric,
		    double v, double lo, double hi)
{
	add(ud, "result %s %s %s %a [%a, %a]", model, split, metric, v, lo, hi);
	return 0;
}

static int r_prediction(void *ud, const char *model, const char *split, int64_t ex,
			const char *p, const char *ref, const char *out, double score)
{
	(void)p;
	(void)ref;
	add(ud, "pred %s %s %lld '%s' %a", model, split, (long long)ex, out, score);
	return 0;
}

static int r_event(void *ud, const char *level, const char *kind, const char *msg)
{
	(void)ud;
	(void)level;
	(void)kind;
	(void)msg;
	return 0;
}

static int r_artifact(void *ud, const char *kind, const char *path)
{
	add(ud, "artifact %s %s", kind, path);
	return 0;
}

static char g_dir[64];

static void write_file(const char *name, const char *text)
{
	char *p = path_join(g_dir, name);
	struct diag d;
	diag_init(&d);
	assert_int_equal(file_write_atomic(p, text, strlen(text), &d), 0);
	free(p);
}

static void write_data(void)
{
	static const char *const w[] = {"ab", "cd", "ef", "gh", "ij", "kl", "mn", "op"};
	char buf[2048];
	size_t o = 0;
	for (int i = 0; i < 8; i++)
		o += (size_t)snprintf(buf + o, sizeof buf - o,
				      "{\"prompt\": \"%s %s\", \"completion\": \"%s\"}\n", w[i],
				      w[(i + 3) % 8], w[(i + 5) % 8]);
	write_file("train.jsonl", buf);
	write_file("val.jsonl", "{\"prompt\": \"ab ef\", \"completion\": \"gh\"}\n"
				"{\"prompt\": \"cd kl\", \"completion\": \"mn\"}\n");
	write_file("test.jsonl", "{\"prompt\": \"ab gh\", \"completion\": \"kl\"}\n"
				 "{\"prompt\": \"ef ij\", \"completion\": \"ab\"}\n"
				 "{\"prompt\": \"mn op\", \"completion\": \"cd\"}\n");
}

static struct experiment *load_exp(const char *model, const char *method, int ctx,
				   const char *train_extra)
{
	char yaml[4096];
	snprintf(yaml, sizeof yaml,
		 "name: isolation\nseed: 5\nmodel: {base: %s/%s, context: %d}\n"
		 "data:\n  format: completion\n  train: %s/train.jsonl\n"
		 "  validation: %s/val.jsonl\n  test: %s/test.jsonl\n  template: chatml\n"
		 "  max_length: %d\n"
		 "method: %s\n"
		 "train:\n  steps: 4\n  batch_size: 2\n  grad_accum: 2\n  max_grad_norm: 0.05\n"
		 "  optimizer: {type: adamw, lr: 1.0e-2, weight_decay: 0.1}\n"
		 "  schedule: {type: cosine, warmup_steps: 1}\n"
		 "  eval_every: 2\n  checkpoint_every: 2\n%s"
		 "eval:\n  splits: [test]\n  metrics: [loss, token_accuracy, exact_match]\n"
		 "  compare_base: true\n  generate: {max_new_tokens: 4}\n  bootstrap: 10\n",
		 g_dir, model, ctx, g_dir, g_dir, g_dir, ctx, method, train_extra);
	write_file("exp.yaml", yaml);
	char *p = path_join(g_dir, "exp.yaml");
	struct diag d;
	diag_init(&d);
	struct experiment *e = NULL;
	if (experiment_load(&e, p, NULL, 0, &d))
		fail_msg("%s", d.text);
	free(p);
	return e;
}

/* One run in a fresh run directory `sub` (or resumed in it). */
static int run_once(const struct config *cfg, const char *sub, const struct ops *ops,
		    bool resume, struct rec *r, struct diag *d)
{
	char *rd = path_join(g_dir, sub);
	assert_int_equal(dir_make_all(rd, d), 0);
	struct run_sink sink = {.ud = r, .metric = r_metric, .result = r_result,
				.prediction = r_prediction, .event = r_event,
				.artifact = r_artifact};
	struct run_ctx ctx = {.cfg = cfg, .experiment = "isolation", .run_id = "r1",
			      .run_dir = rd, .resume = resume, .threads = 2,
			      .stop = &r->stop, .sink = &sink};
	diag_init(d);
	int rc = native_engine_run(&ctx, ops, NULL, d);
	free(rd);
	return rc;
}

/* Records of a run that trained and evaluated: enough of them, train losses among them,
 * and final results (a comparison of two empty traces would pass). */
static void assert_substantial(const struct rec *r, const char *what)
{
	int losses = 0, results = 0;
	for (int i = 0; i < r->n; i++) {
		losses += strncmp(r->line[i], "metric train loss ", 18) == 0;
		results += strncmp(r->line[i], "result ", 7) == 0;
	}
	if (r->n <= 20 || losses < 1 || results < 1)
		fail_msg("%s: %d records, %d train losses, %d results: the run recorded too little "
			 "for the comparison to mean anything", what, r->n, losses, results);
}

static void assert_same(const struct rec *a, const struct rec *b)
{
	for (int i = 0; i < a->n && i < b->n; i++)
		if (strcmp(a->line[i], b->line[i]) != 0)
			fail_msg("record %d differs:\n  cpu:     %s\n  guarded: %s", i, a->line[i],
				 b->line[i]);
	assert_int_equal(a->n, b->n);
}

static void assert_guard_clean(void)
{
	struct ops_guard_stats s = ops_guard_stats();
	if (s.violations)
		fail_msg("%ld pointer-kind violations; the first: %s", s.violations, s.first);
	assert_int_equal(s.live_allocs, 0);
	assert_true(s.calls > 1000);
}

static void make_models(void)
{
	struct tiny_model_spec s;
	struct diag d;
	diag_init(&d);
	char *p = path_join(g_dir, "llama.gguf");
	tiny_model_spec_default(&s, ARCH_LLAMA);
	assert_int_equal(tiny_model_write_gguf(p, &s, &d), 0);
	free(p);
	p = path_join(g_dir, "gpt2.gguf");
	tiny_model_spec_default(&s, ARCH_GPT2);
	assert_int_equal(tiny_model_write_gguf(p, &s, &d), 0);
	free(p);
}

static int setup(void **state)
{
	(void)state;
	snprintf(g_dir, sizeof g_dir, "/tmp/ftlab-iso-XXXXXX");
	if (!mkdtemp(g_dir))
		return -1;
	write_data();
	make_models();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* LoRA on llama: uninterrupted CPU run vs the guarded run, then a guarded run stopped
 * after step 1 (it checkpoints before step 2) and resumed from that checkpoint: all the
 * same records. */
static void test_lora_llama_guarded(void **state)
{
	(void)state;
	struct experiment *e = load_exp(
		"llama.gguf",
		"{type: lora, rank: 4, alpha: 8, dropout: 0.1, targets: [q_proj, v_proj, down_proj]}",
		48, "  precision: bf16\n");
	const struct config *cfg = experiment_config(e);
	const struct ops *guard = ops_guard(ops_cpu());
	static struct rec cpu, gd, part, resumed;
	struct diag d;
	assert_int_equal(run_once(cfg, "cpu", ops_cpu(), false, &cpu, &d), 0);
	ops_guard_reset();
	if (run_once(cfg, "guarded", guard, false, &gd, &d) != 0)
		fail_msg("guarded run: %s", d.text);
	assert_guard_clean();
	print_message("lora llama: %d records, %ld guarded op calls\n", cpu.n,
		      ops_guard_stats().calls);
	assert_substantial(&cpu, "lora llama");
	assert_same(&cpu, &gd);

	ops_guard_reset();
	part.stop_at = 1;
	assert_int_equal(run_once(cfg, "resume", guard, false, &part, &d), FT_EINTR);
	assert_int_equal(run_once(cfg, "resume", guard, true, &resumed, &d), 0);
	assert_guard_clean();
	/* the trace of step 1 from the first part, steps 2-4 and the evaluation resumed */
	struct rec joined = {0};
	for (int i = 0; i < part.n; i++)
		if (strncmp(part.line[i], "metric", 6) == 0)
			add(&joined, "%s", part.line[i]);
	for (int i = 0; i < resumed.n; i++)
		add(&joined, "%s", resumed.line[i]);
	struct rec want = {0};
	for (int i = 0; i < cpu.n; i++)
		if (strncmp(cpu.line[i], "artifact checkpoint", 19) != 0)
			add(&want, "%s", cpu.line[i]);
	struct rec got = {0};
	for (int i = 0; i < joined.n; i++)
		if (strncmp(joined.line[i], "artifact checkpoint", 19) != 0)
			add(&got, "%s", joined.line[i]);
	assert_same(&want, &got);
	experiment_free(e);
}

/* Full fine-tuning of GPT-2 (layernorm, GELU, biases, learned positions, tied head) with
 * gradient checkpointing (layers recomputed in the backward). */
static void test_full_gpt2_guarded(void **state)
{
	(void)state;
	struct experiment *e = load_exp("gpt2.gguf", "{type: full}", 32,
					"  grad_checkpointing: true\n");
	const struct config *cfg = experiment_config(e);
	const struct ops *guard = ops_guard(ops_cpu());
	static struct rec cpu, gd;
	struct diag d;
	assert_int_equal(run_once(cfg, "gcpu", ops_cpu(), false, &cpu, &d), 0);
	ops_guard_reset();
	if (run_once(cfg, "gguarded", guard, false, &gd, &d) != 0)
		fail_msg("guarded run: %s", d.text);
	assert_guard_clean();
	print_message("full gpt2: %d records, %ld guarded op calls\n", cpu.n,
		      ops_guard_stats().calls);
	assert_substantial(&cpu, "full gpt2");
	assert_same(&cpu, &gd);
	experiment_free(e);
}

/* The guard is not vacuous: a host read of backend memory kills the process, and a host
 * pointer handed to an op is counted. */
static void test_guard_catches_host_access(void **state)
{
	(void)state;
	char *p = path_join(g_dir, "llama.gguf");
	struct diag d;
	diag_init(&d);
	struct model_file *mf = NULL;
	assert_int_equal(model_file_load(&mf, p, &d), 0);
	free(p);
	const struct ops *guard = ops_guard(ops_cpu());
	struct model_opts o;
	memset(&o, 0, sizeof o);
	o.method = METHOD_NONE;
	o.layers_first = o.layers_last = -1;
	o.max_batch = 1;
	o.max_seq = 8;
	o.full_logits = true;
	o.ops = guard;
	struct model *m = NULL;
	assert_int_equal(model_create(&m, mf, &o, &d), 0);
	int32_t tok[8] = {5, 6, 7, 8, 9, 10, 11, 12}, tg[8] = {6, 7, 8, 9, 10, 11, 12, -1};
	float loss = 0;
	assert_int_equal(model_forward(m, tok, tg, 1, 8, &loss, NULL), 0);
	assert_true(isfinite(loss));
	float first = 0;
	guard->to_host(&first, model_logits(m), sizeof first); /* the sanctioned way */
	assert_true(isfinite(first));
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		volatile float x = model_logits(m)[0]; /* a host read of device memory */
		(void)x;
		_exit(0);
	}
	int st = 0;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV);
	/* a host buffer where backend memory belongs */
	ops_guard_reset();
	float host[4] = {1, 2, 3, 4};
	(void)guard->sumsq(host, 4);
	struct ops_guard_stats s = ops_guard_stats();
	assert_int_equal(s.violations, 1);
	assert_non_null(strstr(s.first, "not memory of this ops table"));
	model_free(m);
	model_file_free(mf);
	assert_int_equal(ops_guard_stats().live_allocs, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_guard_catches_host_access),
		cmocka_unit_test(test_lora_llama_guarded),
		cmocka_unit_test(test_full_gpt2_guarded),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
