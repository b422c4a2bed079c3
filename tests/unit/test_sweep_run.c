/* Sweeps through the real binary ($FTLAB_BIN) and a real store: hyperband on recorded
 * learning curves (an exec trainer replays tests/reference/hyperband_fixture.json) checked
 * against the reference rule of tests/unit/hyperband_ref.c; a native run stopped by
 * hyperband (checkpoint kept, final evaluation skipped, band and threshold recorded); a bayes
 * sweep interrupted by SIGINT that resumes with the same points; a finished bayes sweep
 * extended with more samples (its runs are cached observations); --jobs 2 with one
 * controller. */
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
#include <unistd.h>

#include <jansson.h>

#include "common/util.h"
#include "store/store.h"
#include "tests/unit/hyperband_ref.h"
#include "tests/unit/tiny_model.h"
#include "common/banned.h"

struct env {
	char dir[64];
	char ws[96];
};

static void write_file(const char *dir, const char *name, const char *text)
{
	char *p = path_join(dir, name);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	free(p);
}

static void env_init(struct env *e, const char *wsname)
{
	memset(e, 0, sizeof *e);
	snprintf(e->dir, sizeof e->dir, "/tmp/ftlab-sweep-XXXXXX");
	assert_non_null(mkdtemp(e->dir));
	snprintf(e->ws, sizeof e->ws, "%s/%s", e->dir, wsname);
	setenv("NO_COLOR", "1", 1);
}

static void env_done(struct env *e)
{
	assert_int_equal(dir_remove_all(e->dir), 0);
}

/* Runs `ftlab --workspace WS ARGS...` in the test directory; output into dir/NAME.log. */
static int ftlab(const struct env *e, const char *ws, const char *name, const char *const *args)
{
	const char *bin = getenv("FTLAB_BIN");
	assert_non_null(bin);
	char log[160];
	snprintf(log, sizeof log, "%s/%s.log", e->dir, name);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fo = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0666);
		if (fo < 0 || dup2(fo, 1) < 0 || dup2(fo, 2) < 0 || chdir(e->dir) != 0)
			_exit(99);
		char *argv[32];
		int n = 0;
		argv[n++] = (char *)bin;
		argv[n++] = (char *)"--workspace";
		argv[n++] = (char *)ws;
		for (size_t i = 0; args[i] && n < 31; i++)
			argv[n++] = (char *)args[i];
		argv[n] = NULL;
		execv(bin, argv);
		_exit(97);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	int rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	if (rc != 0 && rc != 130) {
		char *text = NULL;
		size_t len;
		struct diag d;
		diag_init(&d);
		if (file_read_all(&text, &len, log, 1 << 20, &d) == 0)
			fprintf(stderr, "--- %s (exit %d)\n%s\n", name, rc, text);
		free(text);
	}
	return rc;
}

static struct store *open_store(const char *ws)
{
	struct store *s = NULL;
	struct diag d;
	diag_init(&d);
	if (store_open(&s, ws, false, &d) != 0)
		fail_msg("store_open %s: %s", ws, d.text);
	return s;
}

static bool have_python(void)
{
	return system("python3 -c 'import json' >/dev/null 2>&1") == 0;
}

/* ---- hyperband on recorded curves ---- */

/* Replays the fixture's curve of run `seed - 1`: its finite values, one iteration each. */
static const char *replay_trainer =
	"import json, math, os, sys, time\n"
	"curves = json.load(open(os.environ['CURVES']))['runs']\n"
	"vals = [v for v in curves[int(sys.argv[1]) - 1] if v is not None]\n"
	"for k, v in enumerate(vals, 1):\n"
	"    print(json.dumps({'step': k, 'total_steps': len(vals), 'split': 'validation',\n"
	"                      'loss': v}), flush=True)\n"
	"    time.sleep(0.01)\n"
	"print(json.dumps({'metric': 'loss', 'split': 'validation', 'value': vals[-1]}))\n";

/* keys: sweep.early_terminate sweep.early_terminate.type */
static void test_hyperband_exec_replay(void **state)
{
	(void)state;
	if (!have_python())
		skip();
	struct env e;
	env_init(&e, "ws");
	const char *root = getenv("FTLAB_ROOT");
	char *curves = path_join(root ? root : ".", "tests/reference/hyperband_fixture.json");
	char *abs = realpath(curves, NULL);
	assert_non_null(abs);
	setenv("CURVES", abs, 1);
	write_file(e.dir, "trainer.py", replay_trainer);
	write_file(e.dir, "data.jsonl", "{\"text\": \"x\"}\n");
	write_file(e.dir, "exp.yaml",
		   "name: hb-replay\nmodel: {base: data.jsonl}\ndata: {train: data.jsonl}\n"
		   "backend: {type: exec, command: [python3, trainer.py, \"{seed}\"]}\n"
		   "sweep:\n  parameters:\n    seed: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]\n"
		   "  early_terminate: {type: hyperband, metric: validation.loss, min_iter: 2, "
		   "eta: 3}\n");
	assert_int_equal(ftlab(&e, e.ws, "run", (const char *[]){"run", "exp.yaml", NULL}), 0);
	/* The runs in sweep order (--jobs 1: one after another) with what the store kept. */
	struct store *s = open_store(e.ws);
	struct store_run_list *runs = NULL;
	struct diag d;
	diag_init(&d);
	assert_int_equal(store_runs(s, &runs, "hb-replay", NULL, &d), 0);
	assert_int_equal(runs->n, 14);
	double *hist[14];
	size_t len[14] = {0};
	size_t stopped = 0, finished = 0;
	struct ref_cfg cfg = {.min_iter = 2, .eta = 3, .strict = true};
	for (size_t i = 0; i < 14; i++) {
		const struct store_run *r = &runs->items[i];
		assert_int_equal(r->sweep_index, i);
		struct store_metric_list *ml = NULL;
		assert_int_equal(store_metrics(s, &ml, r->id, "validation", "loss", &d), 0);
		hist[i] = calloc(ml->n + 1, sizeof(double));
		for (size_t k = 0; k < ml->n; k++)
			hist[i][len[i]++] = ml->items[k].value;
		store_metric_list_free(ml);
		/* The reference, value by value, against the runs before this one. */
		size_t stop_at = 0;
		for (size_t k = 1; k <= len[i] && !stop_at; k++) {
			size_t save = len[i];
			len[i] = k;
			struct ref_decision rd = ref_decide(&cfg, hist, len, i + 1, i);
			len[i] = save;
			if (rd.stop)
				stop_at = k;
		}
		struct store_sweep_point_list *pl = NULL;
		assert_int_equal(store_sweep_points(s, &pl, NULL, r->id, &d), 0);
		assert_int_equal(pl->n, 1);
		if (strcmp(r->status, "stopped") == 0) {
			stopped++;
			if (!stop_at)
				fail_msg("run %zu was stopped; the reference never stops it", i);
			json_error_t je;
			json_t *v = json_loads(pl->items[0].stopped_json, 0, &je);
			assert_non_null(v);
			assert_int_equal(json_integer_value(json_object_get(v, "step")), stop_at);
			size_t save = len[i];
			len[i] = stop_at;
			struct ref_decision rd = ref_decide(&cfg, hist, len, i + 1, i);
			len[i] = save;
			assert_int_equal(json_integer_value(json_object_get(v, "band")), rd.band);
			assert_true(json_number_value(json_object_get(v, "threshold")) == rd.threshold);
			json_decref(v);
		} else {
			assert_string_equal(r->status, "finished");
			finished++;
			if (stop_at) {
				/* Only when the trainer finished before the stop reached it: then
				 * the run says so, at the reference's band. */
				size_t save = len[i];
				len[i] = stop_at;
				struct ref_decision rd = ref_decide(&cfg, hist, len, i + 1, i);
				len[i] = save;
				char want[64];
				snprintf(want, sizeof want, "at band %lld ", (long long)rd.band);
				struct store_event_list *ev = NULL;
				assert_int_equal(store_events(s, &ev, r->id, &d), 0);
				bool late = false;
				for (size_t k = 0; k < ev->n; k++)
					late |= strcmp(ev->items[k].kind, "stop_late") == 0 &&
						strstr(ev->items[k].message, want);
				store_event_list_free(ev);
				if (!late)
					fail_msg("run %zu finished; the reference stops it at value %zu",
						 i, stop_at);
			}
		}
		store_sweep_point_list_free(pl);
	}
	assert_true(stopped >= 3);
	assert_true(finished >= 2);
	/* `ls --status stopped` and `show` say so. */
	assert_int_equal(ftlab(&e, e.ws, "ls", (const char *[]){"ls", "--status", "stopped", NULL}),
			 0);
	for (size_t i = 0; i < 14; i++)
		free(hist[i]);
	store_run_list_free(runs);
	store_close(s);
	free(curves);
	free(abs);
	env_done(&e);
}

/* ---- the native engine ---- */

static void test_native_run_stopped(void **state)
{
	(void)state;
	struct env e;
	env_init(&e, "ws");
	struct tiny_model_spec spec;
	tiny_model_spec_default(&spec, ARCH_LLAMA);
	char *gguf = path_join(e.dir, "tiny.gguf");
	struct diag d;
	diag_init(&d);
	assert_int_equal(tiny_model_write_gguf(gguf, &spec, &d), 0);
	free(gguf);
	write_file(e.dir, "train.jsonl",
		   "{\"text\": \"the cat sat on the mat\"}\n{\"text\": \"the dog sat on the log\"}\n"
		   "{\"text\": \"a cat and a dog\"}\n{\"text\": \"the mat and the log\"}\n");
	write_file(e.dir, "val.jsonl", "{\"text\": \"the cat sat on the log\"}\n");
	/* lr 1e-2 learns; 1e-9 does not, so its first validation loss is the worse one. */
	write_file(e.dir, "exp.yaml",
		   "name: native-hb\nseed: 1\nmodel: {base: tiny.gguf, context: 32}\n"
		   "data: {format: text, train: train.jsonl, validation: val.jsonl, test: val.jsonl}\n"
		   "method: {type: full}\n"
		   "train: {steps: 6, batch_size: 2, eval_every: 2, optimizer: {lr: 0.01}}\n"
		   "eval: {metrics: [loss], bootstrap: 0}\n"
		   "backend: {type: cpu, threads: 1}\n"
		   "sweep:\n  parameters: {train.optimizer.lr: [1.0e-2, 1.0e-9]}\n"
		   "  early_terminate: {metric: validation.loss, min_iter: 1, eta: 3}\n");
	assert_int_equal(ftlab(&e, e.ws, "run", (const char *[]){"run", "exp.yaml", NULL}), 0);
	struct store *s = open_store(e.ws);
	struct store_run_list *runs = NULL;
	assert_int_equal(store_runs(s, &runs, "native-hb", NULL, &d), 0);
	assert_int_equal(runs->n, 2);
	assert_string_equal(runs->items[0].status, "finished");
	const struct store_run *r = &runs->items[1];
	assert_string_equal(r->status, "stopped");
	/* Stopped after its first evaluation (step 2 of 6), with a checkpoint of that step. */
	assert_int_equal(r->step, 2);
	assert_int_equal(r->total_steps, 6);
	char *ck = path_join(r->run_dir, "checkpoint");
	struct stat sb;
	assert_int_equal(stat(ck, &sb), 0);
	assert_true(S_ISDIR(sb.st_mode));
	free(ck);
	/* No final evaluation: the finished run has test results, the stopped one none. */
	struct store_result_list *res = NULL;
	assert_int_equal(store_results(s, &res, runs->items[0].id, &d), 0);
	assert_true(res->n > 0);
	store_result_list_free(res);
	assert_int_equal(store_results(s, &res, r->id, &d), 0);
	assert_int_equal(res->n, 0);
	store_result_list_free(res);
	/* The event says at which band and against which threshold. */
	struct store_event_list *ev = NULL;
	assert_int_equal(store_events(s, &ev, r->id, &d), 0);
	bool said = false;
	for (size_t i = 0; i < ev->n; i++)
		said |= strcmp(ev->items[i].kind, "stopped") == 0 &&
			strstr(ev->items[i].message, "band 1") &&
			strstr(ev->items[i].message, "threshold");
	assert_true(said);
	store_event_list_free(ev);
	/* Rerunning reuses the stopped run (the decision stands). */
	assert_int_equal(ftlab(&e, e.ws, "again", (const char *[]){"run", "exp.yaml", NULL}), 0);
	/* show prints the verdict. */
	char id[16];
	snprintf(id, sizeof id, "%.12s", r->id);
	assert_int_equal(ftlab(&e, e.ws, "show", (const char *[]){"show", id, NULL}), 0);
	char *log = NULL, *lp = path_join(e.dir, "show.log");
	size_t n;
	assert_int_equal(file_read_all(&log, &n, lp, 1 << 20, &d), 0);
	assert_non_null(strstr(log, "stopped     by hyperband at band 1 of validation.loss"));
	free(log);
	free(lp);
	store_run_list_free(runs);
	assert_int_equal(store_runs(s, &runs, "native-hb", NULL, &d), 0);
	assert_string_equal(runs->items[1].status, "stopped");
	assert_int_equal(runs->items[1].attempts, 1);
	store_run_list_free(runs);
	store_close(s);
	env_done(&e);
}

/* ---- bayes: resume and extension ---- */

/* A trainer of a smooth objective of two swept values; INTERRUPT=N makes the N-th run it
 * starts interrupt ftlab (SIGINT to its parent) halfway; the count of starts is taken under a
 * lock, as parallel workers start trainers at the same moment. */
static const char *bayes_trainer =
	"import fcntl, json, os, signal, sys, time\n"
	"lr, wd = float(sys.argv[1]), float(sys.argv[2])\n"
	"with open('starts.lock', 'w') as lk:  # two workers start at once with --jobs 2\n"
	"    fcntl.flock(lk, fcntl.LOCK_EX)\n"
	"    n = int(open('starts').read()) + 1 if os.path.exists('starts') else 1\n"
	"    open('starts', 'w').write(str(n))\n"
	"f = (lr * 1000 - 1) ** 2 + (wd - 0.3) ** 2\n"
	"for k in range(1, 5):\n"
	"    print(json.dumps({'step': k, 'total_steps': 4, 'split': 'validation',\n"
	"                      'loss': f + 1.0 / k}), flush=True)\n"
	"    time.sleep(float(os.environ.get('PACE', '0')))  # time for a stop decision\n"
	"    if k == 2 and os.environ.get('INTERRUPT') == str(n):\n"
	"        os.kill(os.getppid(), signal.SIGINT)\n"
	"        time.sleep(5)\n"
	"print(json.dumps({'metric': 'loss', 'split': 'validation', 'value': f}))\n";

static void adaptive_files(const struct env *e, const char *method, int samples)
{
	char text[1024];
	snprintf(text, sizeof text,
		 "name: bayes-cli\nmodel: {base: data.jsonl}\ndata: {train: data.jsonl}\n"
		 "backend: {type: exec, command: [python3, trainer.py, \"{train.optimizer.lr}\", "
		 "\"{train.optimizer.weight_decay}\"]}\n"
		 "sweep:\n  method: %s\n  run_cap: %d\n  seed: 5\n"
		 "  objective: {metric: validation.loss, goal: minimize}\n"
		 "  parameters:\n"
		 "    train.optimizer.lr: {distribution: log_uniform_values, min: 1.0e-5, max: "
		 "1.0e-1}\n"
		 "    train.optimizer.weight_decay: {min: 0.0, max: 1.0}\n", method, samples);
	write_file(e->dir, "exp.yaml", text);
}

static void bayes_files(const struct env *e, int samples)
{
	adaptive_files(e, "bayes", samples);
}

/* index -> "run params" lines of a workspace's sweep points. */
static char *sequence(const char *ws)
{
	struct store *s = open_store(ws);
	struct diag d;
	diag_init(&d);
	struct strbuf sb = {0};
	struct store_run_list *runs = NULL;
	assert_int_equal(store_runs(s, &runs, "bayes-cli", NULL, &d), 0);
	assert_true(runs->n > 0);
	struct store_sweep_point_list *pl = NULL;
	assert_int_equal(store_sweep_points(s, &pl, NULL, runs->items[0].id, &d), 0);
	assert_int_equal(pl->n, 1);
	char key[32];
	snprintf(key, sizeof key, "%s", pl->items[0].sweep_key);
	store_sweep_point_list_free(pl);
	assert_int_equal(store_sweep_points(s, &pl, key, NULL, &d), 0);
	for (size_t i = 0; i < pl->n; i++)
		assert_int_equal(strbuf_printf(&sb, "%lld %s %s\n",
					       (long long)pl->items[i].sweep_index, pl->items[i].run,
					       pl->items[i].params_json), 0);
	store_sweep_point_list_free(pl);
	store_run_list_free(runs);
	store_close(s);
	return strbuf_detach(&sb);
}

static void test_bayes_resume_and_extend(void **state)
{
	(void)state;
	if (!have_python())
		skip();
	struct env e;
	env_init(&e, "a");
	write_file(e.dir, "trainer.py", bayes_trainer);
	write_file(e.dir, "data.jsonl", "{\"text\": \"x\"}\n");
	bayes_files(&e, 6);
	/* A: uninterrupted. */
	unsetenv("INTERRUPT");
	assert_int_equal(ftlab(&e, e.ws, "a", (const char *[]){"run", "exp.yaml", NULL}), 0);
	char *a = sequence(e.ws);
	/* B: the 4th run interrupts ftlab (status killed, exit 130), then a plain rerun
	 * continues: the same points, in the same order. */
	char wsb[128];
	snprintf(wsb, sizeof wsb, "%s/b", e.dir);
	char starts[128];
	snprintf(starts, sizeof starts, "%s/starts", e.dir);
	unlink(starts);
	setenv("INTERRUPT", "4", 1);
	assert_int_equal(ftlab(&e, wsb, "b1", (const char *[]){"run", "exp.yaml", NULL}), 130);
	unsetenv("INTERRUPT");
	struct store *s = open_store(wsb);
	struct store_run_list *runs = NULL;
	struct diag d;
	diag_init(&d);
	assert_int_equal(store_runs(s, &runs, "bayes-cli", "killed", &d), 0);
	assert_int_equal(runs->n, 1);
	store_run_list_free(runs);
	store_close(s);
	assert_int_equal(ftlab(&e, wsb, "b2", (const char *[]){"run", "exp.yaml", NULL}), 0);
	char *b = sequence(wsb);
	assert_string_equal(a, b);
	/* C: 4 samples, then 6 in the same workspace: the 4 are cached observations and
	 * the 2 new points are the ones the 6-run sweep chose. */
	char wsc[128];
	snprintf(wsc, sizeof wsc, "%s/c", e.dir);
	bayes_files(&e, 4);
	assert_int_equal(ftlab(&e, wsc, "c1", (const char *[]){"run", "exp.yaml", NULL}), 0);
	bayes_files(&e, 6);
	assert_int_equal(ftlab(&e, wsc, "c2", (const char *[]){"run", "exp.yaml", NULL}), 0);
	char *c = sequence(wsc);
	assert_string_equal(a, c);
	char *log = NULL;
	size_t n;
	char *p = path_join(e.dir, "c2.log");
	assert_int_equal(file_read_all(&log, &n, p, 1 << 20, &d), 0);
	assert_non_null(strstr(log, "2 finished, 4 cached"));
	free(log);
	free(p);
	/* plan lists the known points of the adaptive sweep. */
	assert_int_equal(ftlab(&e, wsc, "plan", (const char *[]){"plan", "exp.yaml", NULL}), 0);
	p = path_join(e.dir, "plan.log");
	assert_int_equal(file_read_all(&log, &n, p, 1 << 20, &d), 0);
	assert_non_null(strstr(log, "bayes sweep of 6 runs"));
	assert_non_null(strstr(log, "6 known"));
	free(log);
	free(p);
	free(a);
	free(b);
	free(c);
	env_done(&e);
}

/* A tpe sweep through the binary: 12 runs (10 random, 2 chosen by the estimator), show
 * says how, plan lists them, and a second invocation reuses all of them. */
static void test_tpe_cli(void **state)
{
	(void)state;
	if (!have_python())
		skip();
	struct env e;
	env_init(&e, "ws");
	write_file(e.dir, "trainer.py", bayes_trainer);
	write_file(e.dir, "data.jsonl", "{\"text\": \"x\"}\n");
	adaptive_files(&e, "tpe", 12);
	unsetenv("INTERRUPT");
	assert_int_equal(ftlab(&e, e.ws, "run", (const char *[]){"run", "exp.yaml", NULL}), 0);
	char *a = sequence(e.ws);
	assert_int_equal(ftlab(&e, e.ws, "again", (const char *[]){"run", "exp.yaml", NULL}), 0);
	char *b = sequence(e.ws);
	assert_string_equal(a, b);
	struct diag d;
	diag_init(&d);
	char *log = NULL, *p = path_join(e.dir, "again.log");
	size_t n;
	assert_int_equal(file_read_all(&log, &n, p, 1 << 20, &d), 0);
	assert_non_null(strstr(log, "(tpe: each chosen from the results so far)"));
	assert_non_null(strstr(log, "12 cached"));
	free(log);
	free(p);
	assert_int_equal(ftlab(&e, e.ws, "plan", (const char *[]){"plan", "exp.yaml", NULL}), 0);
	p = path_join(e.dir, "plan.log");
	assert_int_equal(file_read_all(&log, &n, p, 1 << 20, &d), 0);
	assert_non_null(strstr(log, "tpe sweep of 12 runs"));
	assert_non_null(strstr(log, "12 known"));
	free(log);
	free(p);
	/* The last point (index 11) was chosen by the estimator, the first at random. */
	char run[32] = "", first[32] = "";
	assert_int_equal(sscanf(a, "0 %31s", first), 1);
	const char *last = strstr(a, "\n11 ");
	assert_non_null(last);
	assert_int_equal(sscanf(last + 1, "11 %31s", run), 1);
	assert_int_equal(ftlab(&e, e.ws, "show", (const char *[]){"show", run, NULL}), 0);
	p = path_join(e.dir, "show.log");
	assert_int_equal(file_read_all(&log, &n, p, 1 << 20, &d), 0);
	assert_non_null(strstr(log, "chosen by   tpe: log l(x)/g(x) "));
	assert_non_null(strstr(log, "the best of 24 draws from the density of the 2 best of 11 "
				    "runs"));
	free(log);
	free(p);
	assert_int_equal(ftlab(&e, e.ws, "show0", (const char *[]){"show", first, NULL}), 0);
	p = path_join(e.dir, "show0.log");
	assert_int_equal(file_read_all(&log, &n, p, 1 << 20, &d), 0);
	assert_non_null(strstr(log, "chosen by   tpe: a random start point"));
	free(log);
	free(p);
	free(a);
	free(b);
	env_done(&e);
}

/* --jobs 2: one controller decides for both workers; every point is handed out once. */
static void test_jobs_two(void **state)
{
	(void)state;
	if (!have_python())
		skip();
	struct env e;
	env_init(&e, "ws");
	write_file(e.dir, "trainer.py", bayes_trainer);
	write_file(e.dir, "data.jsonl", "{\"text\": \"x\"}\n");
	bayes_files(&e, 8);
	/* Add early termination to the bayes sweep. */
	char *p = path_join(e.dir, "exp.yaml"), *text = NULL;
	size_t n;
	struct diag d;
	diag_init(&d);
	assert_int_equal(file_read_all(&text, &n, p, 1 << 20, &d), 0);
	struct strbuf sb = {0};
	assert_int_equal(strbuf_printf(&sb, "%s  early_terminate: {min_iter: 1, eta: 2}\n", text),
			 0);
	write_file(e.dir, "exp.yaml", sb.buf);
	strbuf_free(&sb);
	free(text);
	free(p);
	unsetenv("INTERRUPT");
	/* each step waits a little, so that a stop decided after a step reaches the trainer
	 * before its next step even on a loaded machine */
	setenv("PACE", "0.5", 1);
	int rc = ftlab(&e, e.ws, "run", (const char *[]){"run", "--jobs", "2", "exp.yaml", NULL});
	unsetenv("PACE");
	assert_int_equal(rc, 0);
	struct store *s = open_store(e.ws);
	struct store_run_list *runs = NULL;
	assert_int_equal(store_runs(s, &runs, "bayes-cli", NULL, &d), 0);
	assert_int_equal(runs->n, 8);
	size_t stopped = 0;
	for (size_t i = 0; i < runs->n; i++) {
		const char *st = runs->items[i].status;
		assert_true(strcmp(st, "finished") == 0 || strcmp(st, "stopped") == 0);
		stopped += strcmp(st, "stopped") == 0;
	}
	assert_true(stopped >= 1);
	store_run_list_free(runs);
	store_close(s);
	/* ftlab ci finds the runs of the points the bayes sweep handed out. */
	p = path_join(e.dir, "exp.yaml");
	assert_int_equal(file_read_all(&text, &n, p, 1 << 20, &d), 0);
	sb = (struct strbuf){0};
	assert_int_equal(strbuf_printf(&sb, "%sgates:\n  - {metric: validation.loss, max: 100}\n",
				       text), 0);
	write_file(e.dir, "exp.yaml", sb.buf);
	strbuf_free(&sb);
	free(text);
	free(p);
	assert_int_equal(ftlab(&e, e.ws, "ci", (const char *[]){"ci", "exp.yaml", "--no-run", NULL}),
			 0);
	env_done(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hyperband_exec_replay),
		cmocka_unit_test(test_native_run_stopped),
		cmocka_unit_test(test_bayes_resume_and_extend),
		cmocka_unit_test(test_jobs_two),
		cmocka_unit_test(test_tpe_cli),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
