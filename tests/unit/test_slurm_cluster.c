/* The Slurm launcher on a real Slurm cluster (scripts/slurm-cluster.sh: three slurmd on
 * this machine; run-tests.sh starts it and sets SLURM_CONF). Real job arrays through the
 * real binary ($FTLAB_BIN): an exec sweep spread over the three nodes, each run executed
 * and merged once; a native tiny-model run whose trace equals a local run's; a task that
 * exits 1, one cancelled, one whose node daemon is killed (requeued, resumed elsewhere);
 * the submitting ftlab killed with -9 and `ftlab sync` recovering every result; a
 * preempted native run resumed on another node with a bit-identical trace; a native run
 * that checkpoints and requeues itself on Slurm's time-limit warning; --resume, --force and
 * --only; the config, data and trainer script frozen at submission; two
 * experiments submitted at once into one workspace; a task that hits its time limit
 * (submitted first, checked last: Slurm enforces limits in whole minutes). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "common/util.h"
#include "store/store.h"
#include "tests/unit/tiny_model.h"
#include "common/banned.h"

static char g_dir[64];       /* scratch: experiments, workspaces, outputs */
static char g_cluster[512];  /* the cluster's directory (dirname of SLURM_CONF) */
static bool g_have;          /* a cluster to test on */

/* An exec trainer: `train.sh SEED STEPS DELAY`. Seed 2 fails after its first step;
 * every other seed runs STEPS steps of DELAY seconds, resuming from its own checkpoint
 * file when ftlab says it resumes. Each execution is logged in $EXECUTIONS. */
static const char *trainer =
	"seed=$1; steps=$2; delay=$3; start=0\n"
	"if [ \"$FTLAB_RESUME\" = 1 ] && [ -f \"$FTLAB_RUN_DIR/ckpt\" ]; then\n"
	"  start=$(cat \"$FTLAB_RUN_DIR/ckpt\"); fi\n"
	"echo \"$FTLAB_RUN_ID $SLURMD_NODENAME $start\" >> \"$EXECUTIONS\"\n"
	"trap 'exit 143' TERM\n"
	"i=$start\n"
	"while [ $i -lt $steps ]; do\n"
	"  i=$((i + 1))\n"
	"  echo \"{\\\"step\\\": $i, \\\"loss\\\": $((1000 - i)), \\\"total_steps\\\": $steps}\"\n"
	"  echo $i > \"$FTLAB_RUN_DIR/ckpt.tmp\"; mv \"$FTLAB_RUN_DIR/ckpt.tmp\" \"$FTLAB_RUN_DIR/ckpt\"\n"
	"  if [ \"$seed\" = 2 ]; then echo 'boom' >&2; exit 1; fi\n"
	"  [ \"$delay\" = 0 ] || sleep $delay\n"
	"done\n"
	"echo '{\"split\": \"test\", \"example\": 0, \"reference\": \"yes\", \"output\": \"yes\"}'\n";

/* ---- files and processes ---- */

static void put(const char *rel, const char *text)
{
	char *p = path_join(g_dir, rel);
	struct diag d;
	diag_init(&d);
	char *dir = path_dirname(p);
	assert_int_equal(dir_make_all(dir, &d), 0);
	free(dir);
	assert_int_equal(file_write_atomic(p, text, strlen(text), &d), 0);
	free(p);
}

static char *slurp(const char *rel)
{
	char *p = path_join(g_dir, rel), *buf = NULL;
	size_t n;
	struct diag d;
	diag_init(&d);
	if (file_read_all(&buf, &n, p, 1 << 24, &d) != 0)
		buf = ft_strdup("");
	free(p);
	return buf;
}

static void sleep_s(double s)
{
	struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
	nanosleep(&ts, NULL);
}

/* An exec experiment NAME (seeds as listed) in g_dir/NAME.yaml. */
static void exec_experiment(const char *name, const char *seeds, int steps, const char *delay,
			    const char *launcher_extra)
{
	char y[2048];
	snprintf(y, sizeof y,
		 "name: %s\nseed: 1\nmodel:\n  base: base.txt\n"
		 "data:\n  format: completion\n  train: train.jsonl\n"
		 "train:\n  steps: %d\n"
		 "eval:\n  metrics: [exact_match]\n"
		 "backend:\n  type: exec\n"
		 "  command: [/bin/sh, train.sh, \"{seed}\", \"{train.steps}\", \"%s\"]\n"
		 "launcher: {type: slurm%s}\n"
		 "sweep:\n  parameters:\n    seed: %s\n",
		 name, steps, delay, launcher_extra ? launcher_extra : "", seeds);
	char rel[128];
	snprintf(rel, sizeof rel, "%s.yaml", name);
	put(rel, y);
}

/* Starts `ftlab ARGS...` in g_dir, output in g_dir/NAME.out and NAME.err. */
static pid_t ftlab_start(const char *name, const char *const *args)
{
	const char *bin = getenv("FTLAB_BIN");
	assert_non_null(bin);
	char out[160], err[160];
	snprintf(out, sizeof out, "%s/%s.out", g_dir, name);
	snprintf(err, sizeof err, "%s/%s.err", g_dir, name);
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fo = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0666);
		int fe = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0666);
		if (fo < 0 || fe < 0 || dup2(fo, 1) < 0 || dup2(fe, 2) < 0 || chdir(g_dir) != 0)
			_exit(99);
		char *argv[40];
		int n = 0;
		argv[n++] = (char *)bin;
		for (size_t i = 0; args[i] && n < 39; i++)
			argv[n++] = (char *)args[i];
		argv[n] = NULL;
		execv(bin, argv);
		_exit(97);
	}
	return pid;
}

static int ftlab_wait(pid_t pid)
{
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static int ftlab(const char *name, const char *const *args)
{
	int rc = ftlab_wait(ftlab_start(name, args));
	if (rc != 0 && rc != 1) {
		char rel[96];
		snprintf(rel, sizeof rel, "%s.err", name);
		char *err = slurp(rel);
		fprintf(stderr, "ftlab %s exited %d:\n%s\n", name, rc, err);
		free(err);
	}
	return rc;
}

static char *ws_path(const char *ws)
{
	return path_join(g_dir, ws);
}

/* ---- the store ---- */

static struct store *open_ws(const char *ws)
{
	char *p = ws_path(ws);
	struct store *s = NULL;
	struct diag d;
	diag_init(&d);
	if (store_open(&s, p, false, &d) != 0)
		fail_msg("store %s: %s", p, d.text);
	free(p);
	return s;
}

static struct store_run_list *runs_of(const char *ws, const char *exp)
{
	struct store *s = open_ws(ws);
	struct store_run_list *l = NULL;
	struct diag d;
	diag_init(&d);
	assert_int_equal(store_runs(s, &l, exp, NULL, &d), 0);
	store_close(s);
	return l;
}

static const struct store_run *run_with_seed(const struct store_run_list *l, int64_t seed)
{
	for (size_t i = 0; i < l->n; i++)
		if (l->items[i].seed == seed)
			return &l->items[i];
	fail_msg("no run with seed %lld", (long long)seed);
	return NULL;
}

static size_t count_status(const struct store_run_list *l, const char *status)
{
	size_t n = 0;
	for (size_t i = 0; i < l->n; i++)
		n += strcmp(l->items[i].status, status) == 0;
	return n;
}

static bool active(const struct store_run *r)
{
	return strcmp(r->status, "queued") == 0 || strcmp(r->status, "running") == 0;
}

/* `ftlab sync EXP` until pred holds (or timeout_s passes: a failure). */
static struct store_run_list *sync_until(const char *ws, const char *exp, double timeout_s,
					 bool (*pred)(const struct store_run_list *, void *),
					 void *ud, const char *what)
{
	char *wsp = ws_path(ws);
	const char *args[] = {"--workspace", wsp, "sync", exp, NULL};
	double t0 = time_monotonic();
	for (;;) {
		int rc = ftlab("sync", args);
		assert_true(rc == 0 || rc == 1);
		struct store_run_list *l = runs_of(ws, exp);
		if (pred(l, ud)) {
			free(wsp);
			return l;
		}
		if (time_monotonic() - t0 > timeout_s) {
			for (size_t i = 0; i < l->n; i++)
				fprintf(stderr, "  run %s seed %lld: %s %s\n", l->items[i].id,
					(long long)l->items[i].seed, l->items[i].status,
					l->items[i].error ? l->items[i].error : "");
			fail_msg("%s: not within %.0f s", what, timeout_s);
		}
		store_run_list_free(l);
		sleep_s(0.5);
	}
}

static bool all_settled(const struct store_run_list *l, void *ud)
{
	(void)ud;
	for (size_t i = 0; i < l->n; i++)
		if (active(&l->items[i]))
			return false;
	return l->n > 0;
}

struct seed_state {
	int64_t seed;
	const char *status;
	int64_t min_step;
};

static bool seed_in(const struct store_run_list *l, void *ud)
{
	const struct seed_state *w = ud;
	for (size_t i = 0; i < l->n; i++)
		if (l->items[i].seed == w->seed)
			return strcmp(l->items[i].status, w->status) == 0 &&
			       l->items[i].step >= w->min_step;
	return false;
}

static int count_events(const char *ws, const char *run_id, const char *kind,
			const char *needle)
{
	struct store *s = open_ws(ws);
	struct store_event_list *l = NULL;
	struct diag d;
	diag_init(&d);
	assert_int_equal(store_events(s, &l, run_id, &d), 0);
	int n = 0;
	for (size_t i = 0; i < l->n; i++)
		if ((!kind || strcmp(l->items[i].kind, kind) == 0) &&
		    (!needle || strstr(l->items[i].message, needle)))
			n++;
	store_event_list_free(l);
	store_close(s);
	return n;
}

static struct store_metric_list *losses(const char *ws, const char *run_id)
{
	struct store *s = open_ws(ws);
	struct store_metric_list *l = NULL;
	struct diag d;
	diag_init(&d);
	assert_int_equal(store_metrics(s, &l, run_id, "train", "loss", &d), 0);
	store_close(s);
	return l;
}

static void integrity_ok(const char *ws)
{
	struct store *s = open_ws(ws);
	bool ok = false;
	struct diag d;
	diag_init(&d);
	assert_int_equal(store_integrity_check(s, &ok, &d), 0);
	assert_true(ok);
	store_close(s);
}

/* Lines of the executions log that name this run. */
static int executions(const char *run_id)
{
	char *t = slurp("executions");
	int n = 0;
	for (const char *p = t; (p = strstr(p, run_id)); p += strlen(run_id))
		n++;
	free(t);
	return n;
}

/* ---- the cluster ---- */

static int sh(const char *cmd)
{
	int rc = system(cmd);
	return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* The cluster's daemons are root's (slurm-cluster.sh goes through sudo when it is not). */
static const char *as_root(void)
{
	return geteuid() == 0 ? "" : "sudo -n ";
}

/* Sends sig to a node's slurmd (0 just asks whether it runs); 0 when it was delivered. Not
 * root, through `sudo -n sh -c` (a minimal Debian has no /usr/bin/kill for sudo to run). */
static int slurmd_signal(const char *node, int sig)
{
	char path[768], buf[32] = "";
	snprintf(path, sizeof path, "%s/run/slurmd.%s.pid", g_cluster, node);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	bool got = fgets(buf, sizeof buf, f) != NULL;
	fclose(f);
	long pid = got ? strtol(buf, NULL, 10) : 0;
	if (pid <= 1)
		return -1;
	if (geteuid() == 0)
		return kill((pid_t)pid, sig);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "sudo -n sh -c 'kill -%d %ld' 2>/dev/null", sig, pid);
	return sh(cmd) == 0 ? 0 : -1;
}

static void restart_slurmd(const char *node)
{
	char cmd[1024];
	snprintf(cmd, sizeof cmd, "%sslurmd -f '%s/slurm.conf' -N %s", as_root(), g_cluster, node);
	assert_int_equal(sh(cmd), 0);
	double t0 = time_monotonic();
	for (;;) {
		snprintf(cmd, sizeof cmd, "test \"$(sinfo -h -N -n %s -o %%t | sort -u)\" = idle",
			 node);
		if (sh(cmd) == 0)
			return;
		if (time_monotonic() - t0 > 60)
			fail_msg("node %s did not come back", node);
		sleep_s(0.5);
	}
}

/* Every node's slurmd running (a failed test may have left one killed). */
static void nodes_up(void)
{
	static const char *const nodes[] = {"n1", "n2", "n3"};
	for (size_t i = 0; i < 3; i++) {
		if (slurmd_signal(nodes[i], 0) != 0)
			restart_slurmd(nodes[i]);
	}
}

static void write_native(void)
{
	struct tiny_model_spec s;
	struct diag d;
	diag_init(&d);
	char *p = path_join(g_dir, "llama.gguf");
	tiny_model_spec_default(&s, ARCH_LLAMA);
	assert_int_equal(tiny_model_write_gguf(p, &s, &d), 0);
	free(p);
	static const char *const w[] = {"ab", "cd", "ef", "gh", "ij", "kl", "mn", "op"};
	char buf[2048];
	size_t o = 0;
	for (int i = 0; i < 8; i++)
		o += (size_t)snprintf(buf + o, sizeof buf - o,
				      "{\"prompt\": \"%s %s\", \"completion\": \"%s\"}\n", w[i],
				      w[(i + 3) % 8], w[(i + 5) % 8]);
	put("ntrain.jsonl", buf);
	put("ntest.jsonl", "{\"prompt\": \"ab gh\", \"completion\": \"kl\"}\n"
			   "{\"prompt\": \"ef ij\", \"completion\": \"ab\"}\n");
}

/* A native LoRA experiment on the tiny llama, one thread, checkpoints every 25 steps. */
static void native_experiment(const char *name, int steps, const char *launcher)
{
	char y[2048];
	snprintf(y, sizeof y,
		 "name: %s\nseed: 5\nmodel: {base: llama.gguf, context: 64}\n"
		 "data: {format: completion, train: ntrain.jsonl, test: ntest.jsonl, "
		 "template: chatml, max_length: 64}\n"
		 "method: {type: lora, rank: 4, alpha: 8, dropout: 0.1, targets: [q_proj, v_proj]}\n"
		 "train:\n  steps: %d\n  batch_size: 2\n  optimizer: {type: adamw, lr: 1.0e-3}\n"
		 "  checkpoint_every: 25\n"
		 "eval: {splits: [test], metrics: [loss], compare_base: false, bootstrap: 0}\n"
		 "backend: {type: cpu, threads: 1}\n"
		 "launcher: %s\n",
		 name, steps, launcher);
	char rel[128];
	snprintf(rel, sizeof rel, "%s.yaml", name);
	put(rel, y);
}

static int setup(void **state)
{
	(void)state;
	const char *conf = getenv("SLURM_CONF");
	if (!conf || !getenv("FTLAB_BIN") || access(conf, R_OK) != 0)
		return 0; /* every test skips */
	g_have = true;
	char *cd = path_dirname(conf);
	snprintf(g_cluster, sizeof g_cluster, "%s", cd);
	free(cd);
	snprintf(g_dir, sizeof g_dir, "/tmp/ftlab-slurm-XXXXXX");
	if (!mkdtemp(g_dir) || chmod(g_dir, 0755) != 0)
		return -1;
	nodes_up();
	put("train.sh", trainer);
	put("base.txt", "base\n");
	put("train.jsonl", "{\"prompt\": \"q\", \"completion\": \"yes\"}\n");
	write_native();
	char ex[128];
	snprintf(ex, sizeof ex, "%s/executions", g_dir);
	setenv("EXECUTIONS", ex, 1); /* sbatch passes the environment to the tasks */
	setenv("NO_COLOR", "1", 1);
	/* The time-limit task first: Slurm ends it 60 to 90 s from now. */
	exec_experiment("timeout", "[7]", 1000, "1", ", time: \"1\"");
	char *wsp = ws_path("ws-timeout");
	const char *args[] = {"--workspace", wsp, "run", "timeout.yaml", "--detach", NULL};
	int rc = ftlab("timeout-submit", args);
	free(wsp);
	return rc == 0 ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	if (!g_have)
		return 0;
	nodes_up();
	/* anything of ours still queued */
	char *wsp = ws_path("ws-timeout");
	const char *args[] = {"--workspace", wsp, "cancel", "timeout", NULL};
	(void)ftlab("teardown-cancel", args);
	free(wsp);
	return dir_remove_all(g_dir) == 0 ? 0 : -1;
}

/* ---- tests ---- */

/* Six exec runs as one array over the three nodes: each executed once and merged once; a
 * second sync changes nothing; a second run is all cached. */
static void test_exec_sweep(void **state)
{
	(void)state;
	if (!g_have)
		skip();
	exec_experiment("sweep", "[11, 12, 13, 14, 15, 16]", 5, "0.3", NULL);
	char *wsp = ws_path("ws-sweep");
	const char *args[] = {"--workspace", wsp, "run", "sweep.yaml", NULL};
	assert_int_equal(ftlab("sweep", args), 0);
	struct store_run_list *l = runs_of("ws-sweep", "sweep");
	assert_int_equal(l->n, 6);
	assert_int_equal(count_status(l, "finished"), 6);
	bool node[4] = {false};
	for (size_t i = 0; i < l->n; i++) {
		const struct store_run *r = &l->items[i];
		assert_string_equal(r->launcher, "slurm");
		assert_non_null(r->node);
		assert_true(strlen(r->node) == 2 && r->node[0] == 'n');
		node[r->node[1] - '0'] = true;
		assert_non_null(r->slurm_job);
		assert_true(r->slurm_task >= 0 && r->slurm_task < 6);
		assert_int_equal(r->attempts, 1);
		assert_int_equal(executions(r->id), 1);
		assert_int_equal(count_events("ws-sweep", r->id, "attempt", NULL), 1);
		struct store_metric_list *m = losses("ws-sweep", r->id);
		assert_int_equal(m->n, 5);
		store_metric_list_free(m);
	}
	assert_true(node[1] && node[2] && node[3]);
	/* merged once: another sync adds nothing */
	int ev = count_events("ws-sweep", l->items[0].id, NULL, NULL);
	const char *sync[] = {"--workspace", wsp, "sync", NULL};
	assert_int_equal(ftlab("sync-again", sync), 0);
	assert_int_equal(count_events("ws-sweep", l->items[0].id, NULL, NULL), ev);
	store_run_list_free(l);
	/* cached, nothing submitted */
	assert_int_equal(ftlab("sweep-again", args), 0);
	char *err = slurp("sweep-again.err");
	assert_null(strstr(err, "submitted"));
	free(err);
	integrity_ok("ws-sweep");
	free(wsp);
}

/* A native tiny-model run on Slurm and the same run locally: the same loss trace, bit for
 * bit, and the same results. */
static void test_native(void **state)
{
	(void)state;
	if (!g_have)
		skip();
	native_experiment("native", 60, "{type: slurm}");
	char *a = ws_path("ws-native"), *b = ws_path("ws-native-local");
	const char *sl[] = {"--workspace", a, "run", "native.yaml", NULL};
	const char *lo[] = {"--workspace", b, "run", "native.yaml", "--launcher", "local", NULL};
	assert_int_equal(ftlab("native", sl), 0);
	assert_int_equal(ftlab("native-local", lo), 0);
	struct store_run_list *ls = runs_of("ws-native", "native"),
			      *ll = runs_of("ws-native-local", "native");
	assert_int_equal(ls->n, 1);
	assert_string_equal(ls->items[0].status, "finished");
	assert_string_equal(ls->items[0].id, ll->items[0].id);
	assert_string_equal(ls->items[0].backend, "cpu");
	struct store_metric_list *ms = losses("ws-native", ls->items[0].id),
				 *ml = losses("ws-native-local", ll->items[0].id);
	assert_int_equal(ms->n, 60);
	assert_int_equal(ml->n, 60);
	for (size_t i = 0; i < ms->n; i++)
		if (ms->items[i].value != ml->items[i].value)
			fail_msg("step %lld: slurm %.17g, local %.17g", (long long)ms->items[i].step,
				 ms->items[i].value, ml->items[i].value);
	store_metric_list_free(ms);
	store_metric_list_free(ml);
	struct store *s1 = open_ws("ws-native"), *s2 = open_ws("ws-native-local");
	struct store_result_list *r1 = NULL, *r2 = NULL;
	struct diag d;
	diag_init(&d);
	assert_int_equal(store_results(s1, &r1, ls->items[0].id, &d), 0);
	assert_int_equal(store_results(s2, &r2, ll->items[0].id, &d), 0);
	assert_true(r1->n > 0);
	assert_int_equal(r1->n, r2->n);
	for (size_t i = 0; i < r1->n; i++)
		assert_true(r1->items[i].value == r2->items[i].value);
	store_result_list_free(r1);
	store_result_list_free(r2);
	struct store_artifact_list *al = NULL;
	assert_int_equal(store_artifacts(s1, &al, ls->items[0].id, &d), 0);
	bool adapter = false;
	for (size_t i = 0; i < al->n; i++)
		adapter |= strstr(al->items[i].path, "adapter_model.safetensors") != NULL;
	assert_true(adapter);
	store_artifact_list_free(al);
	store_close(s1);
	store_close(s2);
	store_run_list_free(ls);
	store_run_list_free(ll);
	free(a);
	free(b);
}

/* Seed 1 finishes, seed 2 exits 1, seed 3 is cancelled while it runs, seed 4 loses its
 * node's slurmd mid-run: Slurm requeues it and it resumes on another node. */
static void test_failures(void **state)
{
	(void)state;
	if (!g_have)
		skip();
	exec_experiment("fail", "[1, 2, 3, 4]", 60, "0.5", NULL);
	char *wsp = ws_path("ws-fail");
	const char *args[] = {"--workspace", wsp, "run", "fail.yaml", "--detach", NULL};
	assert_int_equal(ftlab("fail", args), 0);
	/* seed 3 running: cancel it; seed 4 running a few steps: kill its node's slurmd */
	struct seed_state w3 = {3, "running", 1}, w4 = {4, "running", 3};
	store_run_list_free(sync_until("ws-fail", "fail", 60, seed_in, &w3, "seed 3 running"));
	struct store_run_list *l = sync_until("ws-fail", "fail", 60, seed_in, &w4, "seed 4 running");
	const struct store_run *r4 = run_with_seed(l, 4);
	char node[16], id4[16], id3[16];
	snprintf(node, sizeof node, "%s", r4->node);
	snprintf(id4, sizeof id4, "%s", r4->id);
	snprintf(id3, sizeof id3, "%s", run_with_seed(l, 3)->id);
	store_run_list_free(l);
	assert_int_equal(slurmd_signal(node, SIGKILL), 0);
	const char *cancel[] = {"--workspace", wsp, "cancel", id3, NULL};
	assert_int_equal(ftlab("cancel", cancel), 0);

	l = sync_until("ws-fail", "fail", 120, all_settled, NULL, "every run settled");
	const struct store_run *r1 = run_with_seed(l, 1), *r2 = run_with_seed(l, 2),
			       *r3 = run_with_seed(l, 3);
	r4 = run_with_seed(l, 4);
	assert_string_equal(r1->status, "finished");
	/* exit 1: failed, with the exit status, Slurm's state and the job id */
	assert_string_equal(r2->status, "failed");
	char job[64];
	snprintf(job, sizeof job, "job %s_%lld", r2->slurm_job, (long long)r2->slurm_task);
	if (!strstr(r2->error, "status 1") || !strstr(r2->error, "Slurm FAILED") ||
	    !strstr(r2->error, job))
		fail_msg("seed 2: %s", r2->error);
	/* cancelled while running: killed, CANCELLED and the job id */
	assert_string_equal(r3->status, "killed");
	snprintf(job, sizeof job, "job %s_%lld", r3->slurm_job, (long long)r3->slurm_task);
	if (!strstr(r3->error, "CANCELLED") || !strstr(r3->error, job))
		fail_msg("seed 3: %s", r3->error);
	/* node daemon killed: requeued by Slurm, resumed on another node, finished with
	 * every step merged */
	if (strcmp(r4->status, "finished") != 0)
		fail_msg("seed 4: %s %s", r4->status, r4->error ? r4->error : "");
	assert_int_equal(r4->attempts, 2);
	assert_string_not_equal(r4->node, node);
	assert_int_equal(count_events("ws-fail", id4, "requeued", node), 1);
	assert_int_equal(count_events("ws-fail", id4, "attempt", "requeued by Slurm"), 1);
	struct store_metric_list *m = losses("ws-fail", id4);
	assert_int_equal(m->n, 60);
	store_metric_list_free(m);
	/* the abandoned attempt on the dead node stopped itself */
	assert_true(executions(id4) == 2);
	store_run_list_free(l);
	restart_slurmd(node);
	integrity_ok("ws-fail");
	free(wsp);
}

/* The submitting ftlab killed with -9 while the array runs; `ftlab sync` recovers every
 * result. */
static void test_submitter_killed(void **state)
{
	(void)state;
	if (!g_have)
		skip();
	exec_experiment("orphan", "[21, 22, 23, 24, 25, 26]", 6, "0.5", NULL);
	char *wsp = ws_path("ws-orphan");
	const char *args[] = {"--workspace", wsp, "run", "orphan.yaml", NULL};
	pid_t pid = ftlab_start("orphan", args);
	/* until some run has merged a start record, then kill -9 */
	double t0 = time_monotonic();
	for (;;) {
		sleep_s(0.3);
		char *err = slurp("orphan.err");
		bool started = strstr(err, "running: on node") != NULL;
		free(err);
		if (started)
			break;
		if (time_monotonic() - t0 > 60)
			fail_msg("no run started");
	}
	kill(pid, SIGKILL);
	assert_int_equal(ftlab_wait(pid), 128 + SIGKILL);
	struct store_run_list *l = runs_of("ws-orphan", "orphan");
	assert_int_equal(l->n, 6);
	assert_true(count_status(l, "finished") < 6);
	store_run_list_free(l);
	l = sync_until("ws-orphan", "orphan", 60, all_settled, NULL, "all settled");
	assert_int_equal(count_status(l, "finished"), 6);
	for (size_t i = 0; i < l->n; i++) {
		struct store_metric_list *m = losses("ws-orphan", l->items[i].id);
		assert_int_equal(m->n, 6);
		store_metric_list_free(m);
		assert_int_equal(executions(l->items[i].id), 1);
	}
	store_run_list_free(l);
	integrity_ok("ws-orphan");
	free(wsp);
}

/* A native run preempted by a job of a higher-priority partition: it checkpoints on
 * SIGTERM, Slurm requeues it, it resumes on another node, and its loss trace equals an
 * uninterrupted local run's bit for bit. */
static void test_preempted_native(void **state)
{
	(void)state;
	if (!g_have)
		skip();
	native_experiment("preempt", 3000, "{type: slurm, partition: debug}");
	char *a = ws_path("ws-preempt"), *b = ws_path("ws-preempt-local");
	const char *sl[] = {"--workspace", a, "run", "preempt.yaml", "--detach", NULL};
	assert_int_equal(ftlab("preempt", sl), 0);
	struct seed_state w = {5, "running", 200};
	struct store_run_list *l = sync_until("ws-preempt", "preempt", 60, seed_in, &w,
					      "the native run past step 200");
	char node[16], id[16];
	snprintf(node, sizeof node, "%s", l->items[0].node);
	snprintf(id, sizeof id, "%s", l->items[0].id);
	store_run_list_free(l);
	/* a job of the urgent partition that needs every CPU of that node */
	char cmd[512];
	snprintf(cmd, sizeof cmd, "sbatch -Q -p urgent -w %s -c 4 -o /dev/null --wrap 'sleep 15'",
		 node);
	assert_int_equal(sh(cmd), 0);
	/* meanwhile, the same run locally */
	const char *lo[] = {"--workspace", b, "run", "preempt.yaml", "--launcher", "local", NULL};
	assert_int_equal(ftlab("preempt-local", lo), 0);
	l = sync_until("ws-preempt", "preempt", 120, all_settled, NULL, "the preempted run settled");
	const struct store_run *r = &l->items[0];
	if (strcmp(r->status, "finished") != 0)
		fail_msg("preempted run: %s %s", r->status, r->error ? r->error : "");
	assert_int_equal(r->attempts, 2);
	assert_string_not_equal(r->node, node);
	assert_int_equal(count_events("ws-preempt", id, "attempt", "requeued by Slurm"), 1);
	assert_true(count_events("ws-preempt", id, "resumed", NULL) >= 1);
	struct store_metric_list *ms = losses("ws-preempt", id), *ml = losses("ws-preempt-local", id);
	assert_int_equal(ms->n, 3000);
	assert_int_equal(ml->n, 3000);
	for (size_t i = 0; i < ms->n; i++)
		if (ms->items[i].step != ml->items[i].step || ms->items[i].value != ml->items[i].value)
			fail_msg("step %lld: preempted %.17g, uninterrupted %.17g",
				 (long long)ms->items[i].step, ms->items[i].value, ml->items[i].value);
	store_metric_list_free(ms);
	store_metric_list_free(ml);
	store_run_list_free(l);
	free(a);
	free(b);
}

/* Slurm's time-limit warning (--signal=B:USR1, delivered here at once with scancel -b -s
 * USR1, the same signal to the same process) makes a native run checkpoint and requeue
 * itself; it resumes and its trace equals the uninterrupted local run's (the preempt
 * test's: the same config, so the same run id). */
static void test_time_warning_native(void **state)
{
	(void)state;
	if (!g_have)
		skip();
	char *a = ws_path("ws-warn");
	const char *sl[] = {"--workspace", a, "run", "preempt.yaml", "--detach", NULL};
	assert_int_equal(ftlab("warn", sl), 0);
	struct seed_state w = {5, "running", 200};
	struct store_run_list *l = sync_until("ws-warn", "preempt", 60, seed_in, &w,
					      "the native run past step 200");
	char id[16], cmd[256];
	snprintf(id, sizeof id, "%s", l->items[0].id);
	snprintf(cmd, sizeof cmd, "scancel -b -s USR1 %s_%lld", l->items[0].slurm_job,
		 (long long)l->items[0].slurm_task);
	store_run_list_free(l);
	assert_int_equal(sh(cmd), 0);
	l = sync_until("ws-warn", "preempt", 90, all_settled, NULL, "the requeued run settled");
	const struct store_run *r = &l->items[0];
	if (strcmp(r->status, "finished") != 0)
		fail_msg("run: %s %s", r->status, r->error ? r->error : "");
	assert_int_equal(r->attempts, 2);
	assert_int_equal(count_events("ws-warn", id, "killed", "time-limit warning"), 1);
	assert_int_equal(count_events("ws-warn", id, "attempt", "requeued by Slurm"), 1);
	struct store_metric_list *ms = losses("ws-warn", id), *ml = losses("ws-preempt-local", id);
	assert_int_equal(ms->n, ml->n);
	for (size_t i = 0; i < ms->n; i++)
		if (ms->items[i].value != ml->items[i].value)
			fail_msg("step %lld: requeued %.17g, uninterrupted %.17g",
				 (long long)ms->items[i].step, ms->items[i].value, ml->items[i].value);
	store_metric_list_free(ms);
	store_metric_list_free(ml);
	store_run_list_free(l);
	free(a);
}

/* --resume, --force and --only keep their meaning on Slurm: a cancelled run resumes from
 * its checkpoint, a finished one is cached, --force --only runs one point again from the
 * start. */
static void test_resume_force_only(void **state)
{
	(void)state;
	if (!g_have)
		skip();
	exec_experiment("again", "[51, 52]", 16, "0.3", NULL);
	char *wsp = ws_path("ws-again");
	const char *det[] = {"--workspace", wsp, "run", "again.yaml", "--detach", NULL};
	assert_int_equal(ftlab("again", det), 0);
	struct seed_state w = {51, "running", 3};
	struct store_run_list *l = sync_until("ws-again", "again", 60, seed_in, &w, "seed 51 running");
	char id51[16], id52[16];
	snprintf(id51, sizeof id51, "%s", run_with_seed(l, 51)->id);
	snprintf(id52, sizeof id52, "%s", run_with_seed(l, 52)->id);
	store_run_list_free(l);
	const char *cancel[] = {"--workspace", wsp, "cancel", id51, NULL};
	assert_int_equal(ftlab("again-cancel", cancel), 0);
	l = sync_until("ws-again", "again", 60, all_settled, NULL, "settled");
	assert_string_equal(run_with_seed(l, 51)->status, "killed");
	assert_string_equal(run_with_seed(l, 52)->status, "finished");
	store_run_list_free(l);
	/* --resume: only the killed run goes, and continues from its checkpoint */
	const char *res[] = {"--workspace", wsp, "run", "again.yaml", "--resume", NULL};
	assert_int_equal(ftlab("again-resume", res), 0);
	l = runs_of("ws-again", "again");
	const struct store_run *r51 = run_with_seed(l, 51);
	assert_string_equal(r51->status, "finished");
	assert_int_equal(r51->attempts, 2);
	assert_int_equal(executions(id51), 2);
	assert_int_equal(executions(id52), 1);
	store_run_list_free(l);
	/* its executions: one from step 0, one resumed from its checkpoint */
	char *ex = slurp("executions");
	int from0 = 0, later = 0;
	for (char *line = ex, *nl; line && *line; line = nl ? nl + 1 : NULL) {
		nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		char rid[32], node[32];
		int start;
		if (sscanf(line, "%31s %31s %d", rid, node, &start) == 3 && strcmp(rid, id51) == 0)
			start == 0 ? from0++ : later++;
	}
	free(ex);
	bool resumed = from0 == 1 && later == 1;
	assert_true(resumed);
	struct store_metric_list *m = losses("ws-again", id51);
	assert_int_equal(m->n, 16);
	store_metric_list_free(m);
	/* --force --only: that one point again, from the start */
	const char *force[] = {"--workspace", wsp, "run", "again.yaml", "--force", "--only", id52, NULL};
	assert_int_equal(ftlab("again-force", force), 0);
	l = runs_of("ws-again", "again");
	assert_int_equal(run_with_seed(l, 52)->attempts, 2);
	assert_int_equal(run_with_seed(l, 51)->attempts, 2);
	store_run_list_free(l);
	assert_int_equal(executions(id52), 2);
	assert_int_equal(executions(id51), 2);
	free(wsp);
}

/* Frozen at submission (the tasks start 3 s after it, --begin): editing the experiment
 * file changes nothing submitted (the tasks read the resolved config written into each run
 * directory); a changed data file, or a changed exec trainer script, makes the task fail
 * saying so instead of running what the run's identity does not describe. */
static void frozen_experiment(const char *name, const char *data, const char *script,
			      int steps, const char *seeds)
{
	char y[1024], rel[64];
	snprintf(y, sizeof y,
		 "name: %s\nseed: 1\nmodel:\n  base: base.txt\n"
		 "data:\n  format: completion\n  train: %s\n"
		 "train:\n  steps: %d\neval:\n  metrics: [exact_match]\n"
		 "backend:\n  type: exec\n"
		 "  command: [/bin/sh, %s, \"{seed}\", \"{train.steps}\", \"0\"]\n"
		 "launcher: {type: slurm, sbatch_args: [--begin=now+3]}\n"
		 "sweep:\n  parameters:\n    seed: %s\n",
		 name, data, steps, script, seeds);
	snprintf(rel, sizeof rel, "%s.yaml", name);
	put(rel, y);
}

static void test_frozen_at_submission(void **state)
{
	(void)state;
	if (!g_have)
		skip();
	put("fdata.jsonl", "{\"prompt\": \"q\", \"completion\": \"yes\"}\n");
	put("fcode.sh", trainer);
	frozen_experiment("frozen", "train.jsonl", "train.sh", 4, "[61, 62]");
	frozen_experiment("frozen-data", "fdata.jsonl", "train.sh", 4, "[63]");
	frozen_experiment("frozen-code", "train.jsonl", "fcode.sh", 4, "[64]");
	char *wsp = ws_path("ws-frozen");
	static const char *const names[] = {"frozen", "frozen-data", "frozen-code"};
	for (size_t i = 0; i < 3; i++) {
		char file[64];
		snprintf(file, sizeof file, "%s.yaml", names[i]);
		const char *args[] = {"--workspace", wsp, "run", file, "--detach", NULL};
		assert_int_equal(ftlab(names[i], args), 0);
	}
	/* while the tasks wait: the file asks for 2 steps, the data and the script change */
	put("frozen.yaml", "name: frozen\nseed: 1\nmodel:\n  base: base.txt\n"
			   "data:\n  format: completion\n  train: train.jsonl\n"
			   "train:\n  steps: 2\n");
	put("fdata.jsonl", "{\"prompt\": \"q\", \"completion\": \"no\"}\n");
	put("fcode.sh", "echo edited\n");
	struct store_run_list *l = sync_until("ws-frozen", "frozen", 60, all_settled, NULL, "frozen");
	assert_int_equal(l->n, 2);
	for (size_t i = 0; i < l->n; i++) {
		const struct store_run *r = &l->items[i];
		if (strcmp(r->status, "finished") != 0)
			fail_msg("run %s: %s %s", r->id, r->status, r->error ? r->error : "");
		struct store_metric_list *m = losses("ws-frozen", r->id);
		assert_int_equal(m->n, 4);
		store_metric_list_free(m);
	}
	store_run_list_free(l);
	l = sync_until("ws-frozen", "frozen-data", 60, all_settled, NULL, "frozen-data");
	assert_string_equal(l->items[0].status, "failed");
	if (!strstr(l->items[0].error, "model or data files changed since submission"))
		fail_msg("data changed: %s", l->items[0].error);
	assert_int_equal(executions(l->items[0].id), 0);
	store_run_list_free(l);
	l = sync_until("ws-frozen", "frozen-code", 60, all_settled, NULL, "frozen-code");
	assert_string_equal(l->items[0].status, "failed");
	if (!strstr(l->items[0].error, "fcode.sh changed since submission"))
		fail_msg("script changed: %s", l->items[0].error);
	assert_int_equal(executions(l->items[0].id), 0);
	store_run_list_free(l);
	free(wsp);
}

/* Two experiments submitted at once into one workspace. */
static void test_two_at_once(void **state)
{
	(void)state;
	if (!g_have)
		skip();
	exec_experiment("alpha", "[31, 32, 33]", 4, "0.2", NULL);
	exec_experiment("beta", "[41, 42, 43]", 4, "0.2", NULL);
	char *wsp = ws_path("ws-two");
	const char *a[] = {"--workspace", wsp, "run", "alpha.yaml", NULL};
	const char *b[] = {"--workspace", wsp, "run", "beta.yaml", NULL};
	pid_t pa = ftlab_start("alpha", a), pb = ftlab_start("beta", b);
	assert_int_equal(ftlab_wait(pa), 0);
	assert_int_equal(ftlab_wait(pb), 0);
	struct store_run_list *la = runs_of("ws-two", "alpha"), *lb = runs_of("ws-two", "beta");
	assert_int_equal(la->n, 3);
	assert_int_equal(lb->n, 3);
	assert_int_equal(count_status(la, "finished"), 3);
	assert_int_equal(count_status(lb, "finished"), 3);
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(executions(la->items[i].id), 1);
		assert_int_equal(executions(lb->items[i].id), 1);
	}
	store_run_list_free(la);
	store_run_list_free(lb);
	integrity_ok("ws-two");
	free(wsp);
}

/* ---- adaptive sweeps: this ftlab run is the controller ---- */

/* `bayes.sh LR`: four validation losses of a smooth function of the learning rate, then
 * its value as the result; each execution logged in $EXECUTIONS. */
static const char *bayes_trainer =
	"echo \"$FTLAB_RUN_ID $SLURMD_NODENAME 0\" >> \"$EXECUTIONS\"\n"
	"f=$(awk -v lr=\"$1\" 'BEGIN { printf \"%.9g\", (lr * 1000 - 1) ^ 2 }')\n"
	"for k in 1 2 3 4; do\n"
	"  v=$(awk -v f=\"$f\" -v k=$k 'BEGIN { printf \"%.9g\", f + 1 / k }')\n"
	"  echo \"{\\\"step\\\": $k, \\\"total_steps\\\": 4, \\\"split\\\": \\\"validation\\\", "
	"\\\"loss\\\": $v}\"\n"
	"  sleep ${BAYES_PAUSE:-0.1}\n"
	"done\n"
	"echo \"{\\\"metric\\\": \\\"loss\\\", \\\"split\\\": \\\"validation\\\", \\\"value\\\": $f}\"\n";

/* A bayes sweep of six runs, two out at a time: several arrays, each point after the
 * space-filling start chosen from the results that had arrived; --detach is refused. */
static void test_bayes(void **state)
{
	(void)state;
	if (!g_have)
		skip();
	put("bayes.sh", bayes_trainer);
	put("bayes.yaml",
	    "name: bayes\nseed: 1\nmodel: {base: base.txt}\n"
	    "data: {format: completion, train: train.jsonl}\n"
	    "backend: {type: exec, command: [/bin/sh, bayes.sh, \"{train.optimizer.lr}\"]}\n"
	    "launcher: {type: slurm, array_parallelism: 2}\n"
	    "sweep:\n  method: bayes\n  run_cap: 6\n  seed: 5\n"
	    "  objective: {metric: validation.loss, goal: minimize}\n"
	    "  parameters:\n"
	    "    train.optimizer.lr: {distribution: log_uniform_values, min: 1.0e-5, max: 1.0e-1}\n");
	char *wsp = ws_path("ws-bayes");
	const char *det[] = {"--workspace", wsp, "run", "bayes.yaml", "--detach", NULL};
	assert_int_equal(ftlab("bayes-detach", det), 2);
	char *err = slurp("bayes-detach.err");
	assert_non_null(strstr(err, "needs its controller to stay"));
	free(err);
	const char *args[] = {"--workspace", wsp, "run", "bayes.yaml", NULL};
	assert_int_equal(ftlab("bayes", args), 0);
	struct store_run_list *l = runs_of("ws-bayes", "bayes");
	assert_int_equal(l->n, 6);
	assert_int_equal(count_status(l, "finished"), 6);
	/* one array per free slot or two: at least three submissions */
	size_t jobs = 0;
	for (size_t i = 0; i < l->n; i++) {
		bool seen = false;
		for (size_t j = 0; j < i; j++)
			seen |= strcmp(l->items[j].slurm_job, l->items[i].slurm_job) == 0;
		jobs += !seen;
		assert_int_equal(executions(l->items[i].id), 1);
	}
	if (jobs < 3)
		fail_msg("6 bayes points went out in %zu arrays", jobs);
	/* the later points were fitted to results that had arrived */
	struct store *s = open_ws("ws-bayes");
	struct diag d;
	diag_init(&d);
	size_t fitted = 0, most = 0;
	for (size_t i = 0; i < l->n; i++) {
		struct store_sweep_point_list *pl = NULL;
		assert_int_equal(store_sweep_points(s, &pl, NULL, l->items[i].id, &d), 0);
		assert_int_equal(pl->n, 1);
		json_t *j = json_loads(pl->items[0].suggestion_json ? pl->items[0].suggestion_json : "{}",
				       0, NULL);
		assert_non_null(j);
		if (json_is_false(json_object_get(j, "space_filling"))) {
			fitted++;
			size_t n = (size_t)json_integer_value(json_object_get(j, "observations"));
			most = n > most ? n : most;
		}
		json_decref(j);
		store_sweep_point_list_free(pl);
	}
	store_close(s);
	if (fitted == 0 || most < 3)
		fail_msg("%zu points fitted, to at most %zu results", fitted, most);
	store_run_list_free(l);
	integrity_ok("ws-bayes");
	free(wsp);
}

/* The bayes sweep's controller killed with -9 while runs are out: a second `ftlab run`
 * hands out the recorded points first, waits for the runs the first one left under Slurm
 * (not submitted again), and completes the sweep. */
static void test_bayes_controller_killed(void **state)
{
	(void)state;
	if (!g_have)
		skip();
	put("bayes.sh", bayes_trainer);
	put("bayes2.yaml",
	    "name: bayes2\nseed: 1\nmodel: {base: base.txt}\n"
	    "data: {format: completion, train: train.jsonl}\n"
	    "backend: {type: exec, command: [/bin/sh, bayes.sh, \"{train.optimizer.lr}\"]}\n"
	    "launcher: {type: slurm, array_parallelism: 2}\n"
	    "sweep:\n  method: bayes\n  run_cap: 5\n  seed: 7\n"
	    "  objective: {metric: validation.loss, goal: minimize}\n"
	    "  parameters:\n"
	    "    train.optimizer.lr: {distribution: log_uniform_values, min: 1.0e-5, max: 1.0e-1}\n");
	setenv("BAYES_PAUSE", "0.5", 1); /* two seconds a run */
	char *wsp = ws_path("ws-bayes2");
	const char *args[] = {"--workspace", wsp, "run", "bayes2.yaml", NULL};
	pid_t pid = ftlab_start("bayes2-first", args);
	/* until the second array is out and one of its runs runs, then kill -9 */
	double t0 = time_monotonic();
	for (;;) {
		sleep_s(0.2);
		char *err = slurp("bayes2-first.err");
		const char *second = strstr(err, "submitted ");
		second = second ? strstr(second + 1, "submitted ") : NULL;
		bool running = second && strstr(second, "running: on node");
		free(err);
		if (running)
			break;
		if (time_monotonic() - t0 > 90)
			fail_msg("the second array never ran");
	}
	kill(pid, SIGKILL);
	assert_int_equal(ftlab_wait(pid), 128 + SIGKILL);
	struct store *s = open_ws("ws-bayes2");
	struct store_sweep_point_list *before = NULL;
	struct diag d;
	diag_init(&d);
	struct store_run_list *l = runs_of("ws-bayes2", "bayes2");
	assert_true(l->n >= 3 && l->n < 5);
	assert_true(count_status(l, "finished") < l->n);
	/* the sweep's key, from one of its runs' points */
	struct store_sweep_point_list *any = NULL;
	assert_int_equal(store_sweep_points(s, &any, NULL, l->items[0].id, &d), 0);
	assert_int_equal(any->n, 1);
	char key[64];
	snprintf(key, sizeof key, "%s", any->items[0].sweep_key);
	store_sweep_point_list_free(any);
	store_run_list_free(l);
	assert_int_equal(store_sweep_points(s, &before, key, NULL, &d), 0);
	store_close(s);
	assert_int_equal(ftlab("bayes2-second", args), 0);
	unsetenv("BAYES_PAUSE");
	l = runs_of("ws-bayes2", "bayes2");
	assert_int_equal(l->n, 5);
	assert_int_equal(count_status(l, "finished"), 5);
	for (size_t i = 0; i < l->n; i++)
		assert_int_equal(executions(l->items[i].id), 1);
	store_run_list_free(l);
	s = open_ws("ws-bayes2");
	struct store_sweep_point_list *after = NULL;
	assert_int_equal(store_sweep_points(s, &after, key, NULL, &d), 0);
	assert_int_equal(after->n, 5);
	for (size_t i = 0; i < before->n; i++) {
		assert_int_equal(after->items[i].sweep_index, before->items[i].sweep_index);
		assert_string_equal(after->items[i].run, before->items[i].run);
	}
	store_sweep_point_list_free(before);
	store_sweep_point_list_free(after);
	store_close(s);
	integrity_ok("ws-bayes2");
	free(wsp);
}

/* `hb.sh SEED`: seeds 1-3 learn (loss 1 + 1/k, quickly), seeds 4-6 do not (loss 100 + 1/k,
 * a second a step): eight steps each. */
static const char *hb_trainer =
	"echo \"$FTLAB_RUN_ID $SLURMD_NODENAME 0\" >> \"$EXECUTIONS\"\n"
	"trap 'exit 143' TERM\n"
	"base=1; pause=0.1\n"
	"if [ \"$1\" -ge 4 ]; then base=100; pause=1; fi\n"
	"for k in 1 2 3 4 5 6 7 8; do\n"
	"  v=$(awk -v b=$base -v k=$k 'BEGIN { printf \"%.9g\", b + 1 / k }')\n"
	"  echo \"{\\\"step\\\": $k, \\\"total_steps\\\": 8, \\\"split\\\": \\\"validation\\\", "
	"\\\"loss\\\": $v}\"\n"
	"  sleep $pause\n"
	"done\n";

/* Hyperband over a grid on Slurm: the runs that do not learn are stopped early by the
 * controller (SIGUSR2 to their task), end `stopped` with the verdict recorded; the others
 * finish. */
static void test_hyperband(void **state)
{
	(void)state;
	if (!g_have)
		skip();
	put("hb.sh", hb_trainer);
	put("hb.yaml",
	    "name: hb\nseed: 1\nmodel: {base: base.txt}\n"
	    "data: {format: completion, train: train.jsonl}\n"
	    "backend: {type: exec, command: [/bin/sh, hb.sh, \"{seed}\"]}\n"
	    "launcher: {type: slurm, array_parallelism: 3}\n"
	    "sweep:\n  parameters:\n    seed: [1, 2, 3, 4, 5, 6]\n"
	    "  early_terminate: {type: hyperband, metric: validation.loss, min_iter: 1, eta: 2}\n");
	char *wsp = ws_path("ws-hb");
	const char *det[] = {"--workspace", wsp, "run", "hb.yaml", "--detach", NULL};
	assert_int_equal(ftlab("hb-detach", det), 2);
	const char *args[] = {"--workspace", wsp, "run", "hb.yaml", NULL};
	assert_int_equal(ftlab("hb", args), 0);
	struct store_run_list *l = runs_of("ws-hb", "hb");
	assert_int_equal(l->n, 6);
	struct store *s = open_ws("ws-hb");
	struct diag d;
	diag_init(&d);
	for (size_t i = 0; i < l->n; i++) {
		const struct store_run *r = &l->items[i];
		assert_int_equal(executions(r->id), 1);
		struct store_metric_list *ml = NULL;
		assert_int_equal(store_metrics(s, &ml, r->id, "validation", "loss", &d), 0);
		struct store_sweep_point_list *pl = NULL;
		assert_int_equal(store_sweep_points(s, &pl, NULL, r->id, &d), 0);
		assert_int_equal(pl->n, 1);
		if (r->seed <= 3) {
			assert_string_equal(r->status, "finished");
			assert_int_equal(ml->n, 8);
			assert_null(pl->items[0].stopped_json);
		} else {
			if (strcmp(r->status, "stopped") != 0)
				fail_msg("seed %lld: %s (%s)", (long long)r->seed, r->status,
					 r->error ? r->error : "");
			if (ml->n >= 8)
				fail_msg("seed %lld stopped after all %zu values", (long long)r->seed,
					 ml->n);
			assert_non_null(pl->items[0].stopped_json);
			assert_non_null(strstr(pl->items[0].stopped_json, "\"type\":\"hyperband\""));
		}
		store_sweep_point_list_free(pl);
		store_metric_list_free(ml);
	}
	store_close(s);
	for (size_t i = 0; i < l->n; i++)
		if (l->items[i].seed > 3)
			assert_int_equal(count_events("ws-hb", l->items[i].id, "stopped",
						      "stopped by hyperband"), 1);
	store_run_list_free(l);
	/* a stopped run is reused like a finished one: nothing is submitted again */
	assert_int_equal(ftlab("hb-again", args), 0);
	char *err = slurp("hb-again.err");
	assert_null(strstr(err, "submitted"));
	free(err);
	integrity_ok("ws-hb");
	free(wsp);
}

/* Submitted by setup: an exec run past its one-minute limit ends killed with TIMEOUT. */
static void test_time_limit(void **state)
{
	(void)state;
	if (!g_have)
		skip();
	struct store_run_list *l = sync_until("ws-timeout", "timeout", 150, all_settled, NULL,
					      "the time-limited run settled");
	const struct store_run *r = &l->items[0];
	char job[64];
	snprintf(job, sizeof job, "job %s_%lld", r->slurm_job, (long long)r->slurm_task);
	assert_string_equal(r->status, "killed");
	if (!strstr(r->error, "TIMEOUT") || !strstr(r->error, job))
		fail_msg("time-limited run: %s", r->error);
	assert_int_equal(count_events("ws-timeout", r->id, "time-limit", NULL), 1);
	store_run_list_free(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exec_sweep),       cmocka_unit_test(test_native),
		cmocka_unit_test(test_failures),         cmocka_unit_test(test_submitter_killed),
		cmocka_unit_test(test_preempted_native), cmocka_unit_test(test_time_warning_native),
		cmocka_unit_test(test_resume_force_only), cmocka_unit_test(test_frozen_at_submission),
		cmocka_unit_test(test_two_at_once),      cmocka_unit_test(test_bayes),
		cmocka_unit_test(test_bayes_controller_killed),
		cmocka_unit_test(test_hyperband),        cmocka_unit_test(test_time_limit),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
