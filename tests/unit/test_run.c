/* Unit tests for the run lifecycle with the exec backend and a real store: run
 * directories, caching and --force, --jobs workers and two concurrent runner processes
 * (each run executed exactly once), kill -9 at random moments (integrity_check passes, the
 * run shows crashed), SIGTERM (killed), and --resume continuing from a checkpoint. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "runner/run.h"
#include "schema/schema.h"
#include "store/store.h"
#include "common/banned.h"

/* The trainer: logs STEPS steps (sleeping DELAY s each) with a checkpoint file holding the
 * next step, resumes from it when FTLAB_RESUME=1 (re-logging the last two steps, which may
 * have been in flight in the pipe when its runner died), appends its run id to ../../executions
 * (the workspace) when it finishes, and reports predictions for exact_match. */
static const char *trainer =
	"steps=${1:-5}; delay=${2:-0}\n"
	"start=0\n"
	"if [ \"$FTLAB_RESUME\" = 1 ] && [ -f \"$FTLAB_RUN_DIR/ckpt\" ]; then\n"
	"  start=$(cat \"$FTLAB_RUN_DIR/ckpt\"); echo \"resumed at $start\";\n"
	"  start=$((start > 2 ? start - 2 : 0)); fi\n"
	"i=$start\n"
	"while [ $i -lt $steps ]; do\n"
	"  echo \"{\\\"step\\\": $i, \\\"loss\\\": $((100 - i)), \\\"total_steps\\\": $steps}\"\n"
	"  i=$((i + 1)); echo $i > \"$FTLAB_RUN_DIR/ckpt.tmp\"; mv \"$FTLAB_RUN_DIR/ckpt.tmp\" \"$FTLAB_RUN_DIR/ckpt\"\n"
	"  [ \"$delay\" = 0 ] || sleep $delay\n"
	"done\n"
	"echo '{\"split\": \"test\", \"example\": 0, \"reference\": \"a\", \"output\": \"a\"}'\n"
	"echo '{\"split\": \"test\", \"example\": 1, \"reference\": \"b\", \"output\": \"c\"}'\n"
	"echo \"$FTLAB_RUN_ID\" >> \"$FTLAB_RUN_DIR/../../executions\"\n";

#define MAXP 8

struct world {
	char dir[64];
	char ws[96];
	char script[128];
	char steps[16], delay[16];
	struct config cfgs[MAXP];
	char cj[MAXP][128];
	char params[MAXP][64];
	char *argv[4];
	char *metrics[1];
	struct run_point pts[MAXP];
	size_t n;
};

static void world_init(struct world *w, size_t n, int steps, const char *delay)
{
	memset(w, 0, sizeof *w);
	snprintf(w->dir, sizeof w->dir, "/tmp/ftlab-run-XXXXXX");
	assert_non_null(mkdtemp(w->dir));
	snprintf(w->ws, sizeof w->ws, "%s/ws", w->dir);
	snprintf(w->script, sizeof w->script, "%s/train.sh", w->dir);
	FILE *f = fopen(w->script, "w");
	assert_non_null(f);
	fputs(trainer, f);
	fclose(f);
	snprintf(w->steps, sizeof w->steps, "%d", steps);
	snprintf(w->delay, sizeof w->delay, "%s", delay);
	w->argv[0] = "/bin/sh";
	w->argv[1] = w->script;
	w->argv[2] = "{train.steps}";
	w->argv[3] = w->delay;
	w->metrics[0] = "exact_match";
	w->n = n;
	for (size_t i = 0; i < n; i++) {
		struct config *c = &w->cfgs[i];
		c->name = "exp";
		snprintf(w->cj[i], sizeof w->cj[i], "{\"name\":\"exp\",\"seed\":%zu,\"train\":{\"steps\":%d}}",
			 i, steps);
		c->canonical_json = w->cj[i];
		c->seed = i;
		c->backend.type = BACKEND_EXEC;
		c->backend.threads = 1;
		c->backend.command.items = w->argv;
		c->backend.command.n = 4;
		c->eval.metrics.items = w->metrics;
		c->eval.metrics.n = 1;
		snprintf(w->params[i], sizeof w->params[i], "{\"seed\":%zu}", i);
		struct run_point *p = &w->pts[i];
		p->index = i;
		p->params_json = w->params[i];
		p->cfg = c;
		snprintf(p->identity, sizeof p->identity, "%064zx", i + 0xabc000);
		memcpy(p->id, p->identity + 52, 12);
		p->id[12] = '\0';
	}
}

static void world_done(struct world *w)
{
	assert_int_equal(dir_remove_all(w->dir), 0);
}

static struct run_options opts(int jobs)
{
	return (struct run_options){.jobs = jobs, .backend = backend_exec(), .device = "exec",
				    .verbosity = -1, .heartbeat_s = 0.2};
}

static int64_t new_invocation(const struct world *w)
{
	struct store *s = NULL;
	struct diag d;
	diag_init(&d);
	assert_int_equal(store_open(&s, w->ws, true, &d), 0);
	struct store_provenance p = {0};
	int64_t inv;
	assert_int_equal(store_invocation_begin(s, &inv, "exp", "[]", &p, &d), 0);
	store_close(s);
	return inv;
}

static int run_plan(const struct world *w, const struct run_options *o, struct run_summary *sum)
{
	int64_t inv = new_invocation(w);
	struct diag d;
	diag_init(&d);
	run_stop_flag = 0;
	int r = run_execute_plan(sum, w->ws, inv, "exp", w->pts, w->n, o, NULL, &d);
	if (r && r != FT_EINTR)
		fprintf(stderr, "run_execute_plan: %s\n", d.text);
	return r;
}

/* Lines of the executions file: how many times each run's trainer finished. */
static int executions(const struct world *w, const char *id)
{
	char path[160], line[64];
	snprintf(path, sizeof path, "%s/executions", w->ws);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	int n = 0;
	while (fgets(line, sizeof line, f)) {
		line[strcspn(line, "\n")] = '\0';
		if (!id || strcmp(line, id) == 0)
			n++;
	}
	fclose(f);
	return n;
}

static struct store *open_store(const struct world *w)
{
	struct store *s = NULL;
	struct diag d;
	diag_init(&d);
	assert_int_equal(store_open(&s, w->ws, false, &d), 0);
	return s;
}

static void test_run_cache_force(void **state)
{
	(void)state;
	struct world w;
	world_init(&w, 3, 4, "0");
	struct run_options o = opts(1);
	struct run_summary sum;
	assert_int_equal(run_plan(&w, &o, &sum), 0);
	assert_int_equal(sum.finished, 3);
	assert_int_equal(executions(&w, NULL), 3);
	/* The run directory. */
	char path[256];
	const char *files[] = {"config.yaml", "config.json", "log.txt", "metrics.jsonl",
			       "stderr.txt"};
	for (size_t i = 0; i < FT_ARRAY_LEN(files); i++) {
		snprintf(path, sizeof path, "%s/runs/%s/%s", w.ws, w.pts[0].id, files[i]);
		assert_true(path_exists(path));
	}
	struct store *s = open_store(&w);
	struct diag d;
	diag_init(&d);
	struct store_metric_list *ml = NULL;
	assert_int_equal(store_metrics(s, &ml, w.pts[1].id, "train", "loss", &d), 0);
	assert_int_equal(ml->n, 4);
	assert_true(ml->items[3].value == 97);
	store_metric_list_free(ml);
	struct store_result_list *rl = NULL;
	assert_int_equal(store_results(s, &rl, w.pts[1].id, &d), 0);
	assert_int_equal(rl->n, 1);
	assert_string_equal(rl->items[0].metric, "exact_match");
	assert_true(rl->items[0].value == 0.5);
	store_result_list_free(rl);
	struct store_artifact_list *al = NULL;
	assert_int_equal(store_artifacts(s, &al, w.pts[1].id, &d), 0);
	assert_true(al->n >= 4);
	store_artifact_list_free(al);
	store_close(s);
	/* Again: cached. With force: executed again. */
	assert_int_equal(run_plan(&w, &o, &sum), 0);
	assert_int_equal(sum.cached, 3);
	assert_int_equal(executions(&w, NULL), 3);
	o.force = true;
	assert_int_equal(run_plan(&w, &o, &sum), 0);
	assert_int_equal(sum.finished, 3);
	assert_int_equal(executions(&w, NULL), 6);
	world_done(&w);
}

static void test_jobs_no_lost_or_duplicated(void **state)
{
	(void)state;
	struct world w;
	world_init(&w, 8, 3, "0.01");
	struct run_options o = opts(3);
	struct run_summary sum;
	assert_int_equal(run_plan(&w, &o, &sum), 0);
	assert_int_equal(sum.finished, 8);
	for (size_t i = 0; i < w.n; i++)
		assert_int_equal(executions(&w, w.pts[i].id), 1);
	world_done(&w);
}

/* Two runner processes on one store at once, each with its own invocation. */
static void test_two_runners_one_store(void **state)
{
	(void)state;
	struct world w;
	world_init(&w, 6, 3, "0.02");
	(void)new_invocation(&w); /* creates the store */
	pid_t pids[2];
	for (int k = 0; k < 2; k++) {
		pids[k] = fork();
		assert_true(pids[k] >= 0);
		if (pids[k] == 0) {
			struct run_options o = opts(1);
			struct run_summary sum;
			_exit(run_plan(&w, &o, &sum) == 0 ? 0 : 1);
		}
	}
	for (int k = 0; k < 2; k++) {
		int status;
		assert_int_equal(waitpid(pids[k], &status, 0), pids[k]);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	for (size_t i = 0; i < w.n; i++)
		assert_int_equal(executions(&w, w.pts[i].id), 1);
	struct store *s = open_store(&w);
	struct diag d;
	diag_init(&d);
	struct store_run_list *l = NULL;
	assert_int_equal(store_runs(s, &l, "exp", NULL, &d), 0);
	assert_int_equal(l->n, 6);
	for (size_t i = 0; i < l->n; i++) {
		assert_string_equal(l->items[i].status, "finished");
		assert_int_equal(l->items[i].attempts, 1);
	}
	store_run_list_free(l);
	store_close(s);
	world_done(&w);
}

/* kill -9 of a runner at random moments: the store stays intact and the run that was
 * running shows as crashed on the next reap; --resume then finishes it from its
 * checkpoint without re-running the finished steps. */
static void test_kill9_then_resume(void **state)
{
	(void)state;
	struct world w;
	world_init(&w, 2, 6, "0.03");
	(void)new_invocation(&w);
	srand((unsigned)time(NULL));
	int crashed_seen = 0;
	for (int iter = 0; iter < 12; iter++) {
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			struct run_options o = opts(1);
			o.resume = true;
			struct run_summary sum;
			_exit(run_plan(&w, &o, &sum) == 0 ? 0 : 1);
		}
		usleep((useconds_t)(rand() % 250000));
		kill(pid, SIGKILL);
		int status;
		assert_int_equal(waitpid(pid, &status, 0), pid);
		struct store *s = open_store(&w);
		struct diag d;
		diag_init(&d);
		int n = 0;
		assert_int_equal(store_reap_stale(s, 60, &n, &d), 0);
		bool ok = false;
		assert_int_equal(store_integrity_check(s, &ok, &d), 0);
		assert_true(ok);
		struct store_run_list *l = NULL;
		assert_int_equal(store_runs(s, &l, "exp", "running", &d), 0);
		assert_int_equal(l->n, 0);
		store_run_list_free(l);
		assert_int_equal(store_runs(s, &l, "exp", "crashed", &d), 0);
		assert_true(l->n >= (size_t)n); /* earlier crashes may not be resumed yet */
		crashed_seen += n;
		store_run_list_free(l);
		store_close(s);
	}
	/* At least one kill landed mid-run in 12 tries (each run takes ~0.2 s). */
	assert_true(crashed_seen > 0);
	struct run_options o = opts(1);
	o.resume = true;
	struct run_summary sum;
	assert_int_equal(run_plan(&w, &o, &sum), 0);
	assert_int_equal(sum.failed, 0);
	struct store *s = open_store(&w);
	struct diag d;
	diag_init(&d);
	for (size_t i = 0; i < w.n; i++) {
		struct store_run *run = NULL;
		assert_int_equal(store_run_get(s, &run, w.pts[i].id, &d), 0);
		assert_string_equal(run->status, "finished");
		store_run_free(run);
		struct store_metric_list *ml = NULL;
		assert_int_equal(store_metrics(s, &ml, w.pts[i].id, "train", "loss", &d), 0);
		assert_int_equal(ml->n, 6); /* every step once, across the attempts */
		store_metric_list_free(ml);
	}
	store_close(s);
	world_done(&w);
}

/* SIGTERM: the backend stops the trainer, the run becomes killed, the plan returns
 * FT_EINTR; --resume continues it ("resumed at" in its log). */
static void test_sigterm_killed_then_resume(void **state)
{
	(void)state;
	struct world w;
	world_init(&w, 1, 20, "0.05");
	(void)new_invocation(&w);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		run_signals_install();
		struct run_options o = opts(1);
		struct run_summary sum;
		int r = run_plan(&w, &o, &sum);
		_exit(r == FT_EINTR && sum.killed == 1 ? 130 : 1);
	}
	/* Wait until a few steps are checkpointed. */
	char ck[256];
	snprintf(ck, sizeof ck, "%s/runs/%s/ckpt", w.ws, w.pts[0].id);
	for (int i = 0; i < 1500 && !path_exists(ck); i++)
		usleep(10000);
	usleep(150000);
	kill(pid, SIGTERM);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 130);
	struct store *s = open_store(&w);
	struct diag d;
	diag_init(&d);
	struct store_run *run = NULL;
	assert_int_equal(store_run_get(s, &run, w.pts[0].id, &d), 0);
	assert_string_equal(run->status, "killed");
	store_run_free(run);
	store_close(s);
	struct run_options o = opts(1);
	o.resume = true;
	struct run_summary sum;
	assert_int_equal(run_plan(&w, &o, &sum), 0);
	assert_int_equal(sum.finished, 1);
	char *log = NULL;
	size_t n;
	char lp[256];
	snprintf(lp, sizeof lp, "%s/runs/%s/log.txt", w.ws, w.pts[0].id);
	assert_int_equal(file_read_all(&log, &n, lp, 1 << 20, &d), 0);
	assert_non_null(strstr(log, "resumed at"));
	free(log);
	world_done(&w);
}

static void test_failed_run_and_yaml(void **state)
{
	(void)state;
	struct world w;
	world_init(&w, 1, 2, "0");
	w.argv[0] = "/bin/false";
	struct run_options o = opts(1);
	struct run_summary sum;
	assert_int_equal(run_plan(&w, &o, &sum), 0);
	assert_int_equal(sum.failed, 1);
	struct store *s = open_store(&w);
	struct diag d;
	diag_init(&d);
	struct store_run *run = NULL;
	assert_int_equal(store_run_get(s, &run, w.pts[0].id, &d), 0);
	assert_string_equal(run->status, "failed");
	assert_non_null(strstr(run->error, "exited with status 1"));
	store_run_free(run);
	store_close(s);
	char *yaml = NULL;
	/* config.yaml and `ftlab show` use the schema's one emitter: known keys in schema
	 * order (train before eval), other keys after them in their JSON order. */
	assert_int_equal(schema_json_to_yaml(&yaml,
					     "{\"eval\":{\"samples\":3},\"train\":{\"steps\":2},"
					     "\"b\":{\"x\":[1,\"a b\"],\"e\":[]},\"a\":0.5}",
					     &d),
			 0);
	assert_string_equal(yaml, "train:\n  steps: 2\neval:\n  samples: 3\nb:\n  x: [1, a b]\n"
				  "  e: []\na: 0.5\n");
	free(yaml);
	world_done(&w);
}

static int atoi_or(const char *t)
{
	int64_t v;
	return parse_i64(t, &v) && v >= 0 && v < 1 << 20 ? (int)v : -1;
}

/* A backend whose run dir's metrics.jsonl fills the disk: the runner's descriptor of that
 * file is replaced (dup2) by /dev/full, so the runner's next line fails with ENOSPC as on a
 * full disk. It then reports a few metrics and says it finished. */
static int full_results[3];

static int full_disk_run(const struct run_ctx *ctx, struct diag *d)
{
	(void)d;
	char link[300], target[512];
	DIR *dir = opendir("/proc/self/fd");
	assert_non_null(dir);
	int fd = -1;
	struct dirent *e;
	while ((e = readdir(dir)) != NULL) {
		snprintf(link, sizeof link, "/proc/self/fd/%s", e->d_name);
		ssize_t n = readlink(link, target, sizeof target - 1);
		if (n <= 0)
			continue;
		target[n] = '\0';
		size_t tl = strlen(target), wl = strlen("/metrics.jsonl");
		if (tl > wl && strcmp(target + tl - wl, "/metrics.jsonl") == 0 &&
		    strstr(target, ctx->run_id))
			fd = atoi_or(e->d_name);
	}
	closedir(dir);
	assert_true(fd >= 0);
	int full = open("/dev/full", O_WRONLY);
	assert_true(full >= 0);
	assert_int_equal(dup2(full, fd), fd);
	close(full);
	for (int i = 0; i < 3; i++)
		full_results[i] = ctx->sink->metric(ctx->sink->ud, "train", "loss", i + 1, 1.0);
	return 0;
}

static bool full_available(char *why, size_t n)
{
	(void)why;
	(void)n;
	return true;
}

/* metrics.jsonl is the run's crash-recovery record: a line that cannot be written fails
 * the metric and, at the end, the run, with the file and the reason. */
static void test_metrics_jsonl_write_error_fails_run(void **state)
{
	(void)state;
	struct world w;
	world_init(&w, 1, 1, "0");
	static const struct backend full = {BACKEND_EXEC, full_available, full_disk_run};
	struct run_options o = opts(1);
	o.backend = &full;
	struct run_summary sum;
	assert_int_equal(run_plan(&w, &o, &sum), 0);
	assert_int_equal(sum.failed, 1);
	for (int i = 0; i < 3; i++)
		assert_int_equal(full_results[i], FT_EIO);
	struct store *s = open_store(&w);
	struct diag d;
	diag_init(&d);
	struct store_run *run = NULL;
	assert_int_equal(store_run_get(s, &run, w.pts[0].id, &d), 0);
	assert_string_equal(run->status, "failed");
	assert_non_null(strstr(run->error, "metrics.jsonl"));
	assert_non_null(strstr(run->error, "No space left on device"));
	store_run_free(run);
	store_close(s);
	world_done(&w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_run_cache_force),
		cmocka_unit_test(test_jobs_no_lost_or_duplicated),
		cmocka_unit_test(test_two_runners_one_store),
		cmocka_unit_test(test_kill9_then_resume),
		cmocka_unit_test(test_sigterm_killed_then_resume),
		cmocka_unit_test(test_failed_run_and_yaml),
		cmocka_unit_test(test_metrics_jsonl_write_error_fails_run),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
