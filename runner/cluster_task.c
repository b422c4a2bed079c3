/* cluster_task: one Slurm array task on its node (`ftlab task`, started by the batch
 * script). It reads its run from the submission's manifest and the run's frozen config,
 * checks the files' identity, and runs the backend with a sink that writes the attempt's
 * journal, metrics.jsonl and log.txt; it never opens the store. SIGTERM (scancel,
 * preemption) checkpoints and stops; SIGUSR1 (Slurm's warning before the time limit)
 * checkpoints and requeues a run that can resume; SIGUSR2 (the sweep controller's early
 * termination) checkpoints and ends the run stopped. */
#include "runner/cluster.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "common/hash.h"
#include "common/util.h"
#include "runner/identity.h"
#include "runner/slurm.h"
#include "schema/schema.h"
#include "store/journal.h"
#include "common/banned.h"

#define MANIFEST_MAX (64u << 20)
#define HEARTBEAT_S 1.0

static volatile sig_atomic_t task_warned;      /* SIGUSR1 arrived */
static volatile sig_atomic_t task_warn_stops;  /* ... and the backend can checkpoint */

static volatile sig_atomic_t task_halted;      /* SIGUSR2: stop early (hyperband) */

static void on_usr2(int sig)
{
	(void)sig;
	task_halted = 1;
	run_stop_flag = 1;
}

static void on_usr1(int sig)
{
	(void)sig;
	task_warned = 1;
	if (task_warn_stops)
		run_stop_flag = 1;
}

struct task_state {
	struct journal *j;
	const char *run_dir;
	FILE *metrics, *log;
	_Atomic int64_t step, total, first_step;
	atomic_bool superseded;
	/* heartbeat */
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool quit, started;
};

static void logf_(FILE *f, const char *fmt, ...) FT_PRINTF(2, 3);
static void logf_(FILE *f, const char *fmt, ...)
{
	char ts[32];
	time_iso8601(ts, sizeof ts, time_wall());
	va_list ap;
	if (f) {
		fprintf(f, "%s ftlab: ", ts);
		va_start(ap, fmt);
		vfprintf(f, fmt, ap);
		va_end(ap);
		fputc('\n', f);
		fflush(f);
	}
	/* the same line in the task's Slurm output */
	printf("%s ftlab-task: ", ts);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static void json_line(FILE *f, json_t *o)
{
	if (f && o) {
		char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(17));
		if (s) {
			fputs(s, f);
			fputc('\n', f);
			fflush(f);
			free(s);
		}
	}
	json_decref(o);
}

static json_t *num(double x)
{
	return isfinite(x) ? json_real(x) : json_null();
}

static int t_metric(void *ud, const char *split, const char *name, int64_t step, double value)
{
	struct task_state *t = ud;
	json_line(t->metrics, json_pack("{s:s, s:s, s:I, s:o}", "split", split, "name", name,
					"step", (json_int_t)step, "value", num(value)));
	return journal_metric(t->j, split, name, step, value);
}

static int t_result(void *ud, const char *model, const char *split, const char *metric,
		    double value, double lo, double hi)
{
	struct task_state *t = ud;
	json_line(t->metrics, json_pack("{s:s, s:s, s:s, s:o, s:o, s:o}", "model", model, "split",
					split, "metric", metric, "value", num(value), "ci_low",
					num(lo), "ci_high", num(hi)));
	return journal_result(t->j, model, split, metric, value, lo, hi);
}

static int t_prediction(void *ud, const char *model, const char *split, int64_t example,
			const char *prompt, const char *reference, const char *output, double score)
{
	struct task_state *t = ud;
	return journal_prediction(t->j, model, split, example, prompt, reference, output, score);
}

static int t_event(void *ud, const char *level, const char *kind, const char *message)
{
	struct task_state *t = ud;
	logf_(t->log, "%s [%s] %s", level, kind, message);
	return journal_event(t->j, level, kind, message);
}

static int t_artifact(void *ud, const char *kind, const char *path)
{
	struct task_state *t = ud;
	return journal_artifact(t->j, kind, path, t->run_dir);
}

static void t_progress(void *ud, int64_t step, int64_t total, double loss)
{
	(void)loss;
	struct task_state *t = ud;
	int64_t none = -1;
	atomic_compare_exchange_strong(&t->first_step, &none, step);
	atomic_store(&t->step, step);
	atomic_store(&t->total, total);
}

/* Every second: progress into the journal (when it moved), and the check that no later
 * attempt of this run has taken over (a requeue after this node was given up for dead). */
static void *heartbeat_main(void *arg)
{
	struct task_state *t = arg;
	int64_t last = -1;
	pthread_mutex_lock(&t->mu);
	while (!t->quit) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += (time_t)HEARTBEAT_S;
		pthread_cond_timedwait(&t->cv, &t->mu, &ts);
		if (t->quit)
			break;
		pthread_mutex_unlock(&t->mu);
		int64_t step = atomic_load(&t->step);
		if (step != last) {
			if (journal_progress(t->j, step, atomic_load(&t->total)) == 0)
				last = step;
		}
		/* metric lines written since the last fsync reach the disk within a second,
		 * also while the run is quiet */
		if (journal_sync(t->j) != 0) {
			/* kept as the journal's error; the end record reports it */
		}
		if (journal_superseded(t->j)) {
			atomic_store(&t->superseded, true);
			run_stop_flag = 1;
		}
		pthread_mutex_lock(&t->mu);
	}
	pthread_mutex_unlock(&t->mu);
	return NULL;
}

static const char *env_or(const char *name, const char *def)
{
	const char *v = getenv(name);
	return v && v[0] ? v : def;
}

static int64_t env_int(const char *name, int64_t def)
{
	int64_t v;
	const char *s = getenv(name);
	return s && parse_i64(s, &v) ? v : def;
}

/* Reads the manifest entry of array index `index`. */
static int read_entry(json_t **out_man, const json_t **out_entry, const char *subdir,
		      int64_t index, struct diag *d)
{
	*out_man = NULL;
	*out_entry = NULL;
	char *path = path_join(subdir, "manifest.json");
	char *text = NULL;
	size_t n = 0;
	int r = path ? file_read_all(&text, &n, path, MANIFEST_MAX, d)
		     : diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
	if (r) {
		free(path);
		return r;
	}
	json_error_t je;
	json_t *m = json_loadb(text, n, JSON_REJECT_DUPLICATES, &je);
	free(text);
	const json_t *runs = json_object_get(m, "runs");
	const json_t *e = json_is_array(runs) ? json_array_get(runs, (size_t)index) : NULL;
	if (!m || index < 0 || !e || !json_is_string(json_object_get(e, "run")) ||
	    !json_is_string(json_object_get(e, "identity")) ||
	    !json_is_string(json_object_get(m, "experiment_path"))) {
		r = diag_set(d, FT_EINVAL, path, m ? 0 : je.line, m ? 0 : je.column,
			     "not a submission manifest with an array index %lld", (long long)index);
		json_decref(m);
		free(path);
		return r;
	}
	free(path);
	*out_man = m;
	*out_entry = e;
	return 0;
}

int cluster_task(const char *workspace, const char *subdir, const char *index_text,
		 int verbosity)
{
	(void)verbosity;
	struct diag d;
	diag_init(&d);
	int64_t index;
	if (!parse_i64(index_text, &index) || index < 0) {
		fprintf(stderr, "ftlab task: error: '%s' is not an array index\n", index_text);
		return 2;
	}
	json_t *man = NULL;
	const json_t *entry = NULL;
	struct experiment *e = NULL;
	char *yaml = NULL, *run_dir = NULL, *runs = NULL, *host = NULL;
	struct task_state t;
	memset(&t, 0, sizeof t);
	atomic_store(&t.first_step, -1);
	int rc = 2;
	if (read_entry(&man, &entry, subdir, index, &d) != 0) {
		diag_print(&d, stderr);
		goto done;
	}
	const char *run_id = json_string_value(json_object_get(entry, "run"));
	const char *identity = json_string_value(json_object_get(entry, "identity"));
	const char *exp_path = json_string_value(json_object_get(man, "experiment_path"));
	runs = path_join(workspace, "runs");
	run_dir = runs ? path_join(runs, run_id) : NULL;
	if (!run_dir) {
		fputs("ftlab task: error: out of memory\n", stderr);
		goto done;
	}
	/* A requeued attempt, or a submission that resumes, continues the run. */
	int64_t restart = env_int("SLURM_RESTART_COUNT", 0);
	bool resume = json_is_true(json_object_get(entry, "resume")) || restart > 0;
	int *seqs = NULL;
	size_t nseq = 0;
	if (journal_list(&seqs, &nseq, run_dir, &d) == 0 && nseq > 0)
		resume = true;
	free(seqs);

	char hostbuf[256] = "";
	if (gethostname(hostbuf, sizeof hostbuf - 1) != 0)
		snprintf(hostbuf, sizeof hostbuf, "?");
	const char *node = env_or("SLURMD_NODENAME", hostbuf);
	const char *sub_name = strrchr(subdir, '/') ? strrchr(subdir, '/') + 1 : subdir;

	/* The frozen config, read relative to the experiment file's directory as at
	 * submission; the experiment file itself is not read again. */
	size_t ylen = 0;
	char *yp = path_join(run_dir, "config.yaml");
	int lr = yp ? file_read_all(&yaml, &ylen, yp, SCHEMA_MAX_FILE_BYTES, &d) : FT_ENOMEM;
	free(yp);
	const struct backend *be = NULL;
	struct diag fail;
	diag_init(&fail);
	if (!lr)
		lr = experiment_load_buffer(&e, exp_path, yaml, ylen, NULL, 0, &d);
	const struct config *cfg = lr ? NULL : experiment_config(e);
	if (cfg) {
		char now_id[65];
		if (run_identity(now_id, cfg, &fail) == 0 && strcmp(now_id, identity) != 0)
			diag_set(&fail, FT_EINVAL, "", 0, 0,
				 "the model or data files changed since submission (identity %.12s "
				 "then, %.12s now); resubmit to run on the new files",
				 identity, now_id);
		/* the exec trainer's files as they were at submission */
		const char *path;
		const json_t *want;
		json_object_foreach((json_t *)json_object_get(entry, "pinned"), path, want)
		{
			char hex[65];
			struct diag hd;
			diag_init(&hd);
			if (fail.code || !json_is_string(want))
				continue;
			if (sha256_file_hex(hex, path, &hd) != 0)
				diag_set(&fail, FT_EINVAL, "", 0, 0, "the trainer file %s is gone since "
					 "submission: %s", path, hd.text);
			else if (strcmp(hex, json_string_value(want)) != 0)
				diag_set(&fail, FT_EINVAL, "", 0, 0,
					 "the trainer file %s changed since submission; resubmit to run "
					 "the new version", path);
		}
		if (!fail.code && run_backend_pick(&be, cfg->backend.type, &fail) != 0)
			be = NULL; /* the reason is in fail */
	} else {
		diag_set(&fail, d.code ? d.code : FT_EINVAL, "", 0, 0,
			 "cannot read the frozen config of run %s: %s", run_id, d.text);
	}
	int threads = cfg ? run_threads(cfg) : 0;
	char device[32] = "";
	if (be && be->type == BACKEND_CUDA)
		snprintf(device, sizeof device, "cuda:%d", cfg->backend.device);
	else if (be)
		snprintf(device, sizeof device, "%s", backend_name(be));
	struct journal_start st = {
		.job_id = getenv("SLURM_JOB_ID"),
		.array_job = getenv("SLURM_ARRAY_JOB_ID"),
		.array_task = env_int("SLURM_ARRAY_TASK_ID", index),
		.restart = restart,
		.node = node,
		.host = hostbuf,
		.pid = getpid(),
		.backend = be ? backend_name(be) : NULL,
		.device = be ? device : NULL,
		.threads = threads,
		.resume = resume,
		.submission = sub_name,
	};
	int seq = 0;
	diag_init(&d);
	if (journal_open_next(&t.j, &seq, run_dir, &st, &d) != 0) {
		diag_print(&d, stderr);
		rc = 1;
		goto done;
	}
	t.run_dir = run_dir;
	char *mp = path_join(run_dir, "metrics.jsonl"), *lp = path_join(run_dir, "log.txt");
	t.metrics = mp ? fopen(mp, resume ? "a" : "w") : NULL;
	t.log = lp ? fopen(lp, "a") : NULL;
	free(mp);
	free(lp);
	logf_(t.log, "attempt %d of run %s on node %s (Slurm job %s_%lld, job id %s, restart %lld), "
		     "%s, backend %s, %d threads",
	      seq, run_id, node, env_or("SLURM_ARRAY_JOB_ID", "?"),
	      (long long)env_int("SLURM_ARRAY_TASK_ID", index), env_or("SLURM_JOB_ID", "?"),
	      (long long)restart, resume ? "resuming" : "from the start", be ? backend_name(be) : "-",
	      threads);
	/* the marker slurm_log_verdict looks for, alone on a line */
	printf("ftlab-task: attempt %d\n", seq);
	fflush(stdout);
	if (fail.code) {
		logf_(t.log, "run %s failed: %s", run_id, fail.text);
		if (journal_end(t.j, "failed", fail.text) != 0)
			fprintf(stderr, "ftlab task: error: %s\n", journal_error(t.j)->text);
		rc = fail.code == FT_EINVAL ? 2 : 1;
		goto done;
	}

	run_signals_install();
	/* the native engine checkpoints on a stop; an exec trainer cannot be asked to */
	task_warn_stops = be->type != BACKEND_EXEC;
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr1;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	sa.sa_handler = on_usr2;
	sigaction(SIGUSR2, &sa, NULL);

	pthread_mutex_init(&t.mu, NULL);
	pthread_cond_init(&t.cv, NULL);
	t.started = pthread_create(&t.thread, NULL, heartbeat_main, &t) == 0;

	struct run_sink sink = {.ud = &t,
				.metric = t_metric,
				.result = t_result,
				.prediction = t_prediction,
				.event = t_event,
				.artifact = t_artifact,
				.progress = t_progress};
	if (path_exists(run_dir) && resume && seq > 1 &&
	    journal_event(t.j, "info", "resumed", "continuing an earlier attempt") != 0) {
		/* kept in the journal's error */
	}
	struct run_ctx ctx = {.cfg = cfg, .experiment = cfg->name, .run_id = run_id,
			      .run_dir = run_dir, .resume = resume, .threads = threads,
			      .stop = &run_stop_flag, .sink = &sink};
	struct diag rd;
	diag_init(&rd);
	int br = be->run(&ctx, &rd);
	/* Slurm signals every process of the job; when the trainer died first, the task's
	 * own SIGTERM is a moment behind: give it that moment before calling it a failure. */
	for (int i = 0; br != 0 && br != FT_EINTR && !run_stop_flag && i < 10; i++) {
		struct timespec pause = {0, 50000000L};
		nanosleep(&pause, NULL);
	}
	if (t.started) {
		pthread_mutex_lock(&t.mu);
		t.quit = true;
		pthread_cond_signal(&t.cv);
		pthread_mutex_unlock(&t.mu);
		pthread_join(t.thread, NULL);
	}
	pthread_mutex_destroy(&t.mu);
	pthread_cond_destroy(&t.cv);
	if (t.metrics)
		fflush(t.metrics);
	int64_t first = atomic_load(&t.first_step), last = atomic_load(&t.step);
	if (journal_progress(t.j, last, atomic_load(&t.total)) != 0) {
		/* reported with the end below */
	}
	const char *status = br == 0 ? "finished" : br == FT_EINTR ? "killed" : "failed";
	char err[DIAG_TEXT_MAX + 256] = "";
	bool requeue = false;
	bool late_stop = false;
	if (br != 0 && task_halted && !atomic_load(&t.superseded)) {
		/* the sweep controller's early termination: a checkpointed, chosen end */
		status = "stopped";
	} else if (br == FT_EINTR && atomic_load(&t.superseded)) {
		snprintf(err, sizeof err, "attempt %d stopped: attempt %d of this run took over", seq,
			 seq + 1);
	} else if (br == FT_EINTR && task_warned && task_warn_stops) {
		requeue = last > first && getenv("SLURM_JOB_ID");
		snprintf(err, sizeof err,
			 "Slurm's time-limit warning (SIGUSR1): checkpointed at step %lld; %s", (long long)last,
			 requeue ? "requeued to continue" : "no progress in this attempt, not requeued");
	} else if (br == FT_EINTR) {
		snprintf(err, sizeof err, "%s", rd.text[0] ? rd.text : "stopped by a signal");
	} else if (br != 0 && run_stop_flag) {
		/* Slurm signals every process of the job: an exec trainer may die of the same
		 * SIGTERM before the backend notices the stop. Killed, not failed. */
		status = "killed";
		snprintf(err, sizeof err, "stopped by a signal (%s)", rd.text[0] ? rd.text : "failed");
	} else if (br != 0) {
		snprintf(err, sizeof err, "%s", rd.text[0] ? rd.text : "failed");
		if (!rd.text[0] && journal_error(t.j))
			snprintf(err, sizeof err, "%s", journal_error(t.j)->text);
	}
	if (br == 0 && task_halted)
		late_stop = true;
	if (late_stop &&
	    journal_event(t.j, "info", "stop_late",
			  "the sweep controller's stop arrived after the run had finished") != 0) {
	}
	if (br == 0 && journal_error(t.j)) {
		status = "failed";
		snprintf(err, sizeof err, "recording the run failed: %s", journal_error(t.j)->text);
	}
	if (task_warned && !task_warn_stops &&
	    journal_event(t.j, "warning", "time-limit",
			  "Slurm's time-limit warning arrived; an exec run cannot checkpoint") != 0) {
	}
	logf_(t.log, "run %s %s%s%s", run_id, status, err[0] ? ": " : "", err);
	if (t.log) {
		fclose(t.log);
		t.log = NULL;
	}
	if (t.metrics) {
		fclose(t.metrics);
		t.metrics = NULL;
	}
	static const char *const files[][2] = {
		{"config", "config.yaml"}, {"config", "config.json"}, {"log", "log.txt"},
		{"metrics", "metrics.jsonl"}, {"diff", "diff.patch"},
	};
	for (size_t i = 0; i < FT_ARRAY_LEN(files); i++) {
		char *p = path_join(run_dir, files[i][1]);
		bool there = p && path_exists(p);
		free(p);
		if (there && journal_artifact(t.j, files[i][0], files[i][1], run_dir) != 0)
			break;
	}
	/* As a local run records them; a write error here shows in journal_end below. */
	const char *level = strcmp(status, "failed") == 0 ? "error" : "warning";
	bool note = strcmp(status, "failed") == 0 ||
		    (strcmp(status, "killed") == 0 && !atomic_load(&t.superseded));
	if (note && journal_event(t.j, level, status, err) != 0)
		fprintf(stderr, "ftlab task: warning: %s\n", journal_error(t.j)->text);
	if (journal_end(t.j, status, err[0] ? err : NULL) != 0) {
		fprintf(stderr, "ftlab task: error: %s\n", journal_error(t.j)->text);
		rc = 1;
		goto done;
	}
	rc = strcmp(status, "finished") == 0 || strcmp(status, "stopped") == 0 ? 0
	     : strcmp(status, "failed") == 0				     ? 1
									     : 130;
	if (requeue) {
		/* The end is on disk; now ask Slurm to run this task again (it stops this
		 * process). A refusal is recorded for the merge to show. */
		struct diag qd;
		diag_init(&qd);
		if (slurm_requeue(getenv("SLURM_JOB_ID"), &qd) != 0) {
			if (journal_event(t.j, "error", "requeue", qd.text) != 0) {
			}
		} else {
			rc = 0;
		}
	}
	if (atomic_load(&t.superseded))
		rc = 0;
done:
	journal_close(t.j);
	if (t.log)
		fclose(t.log);
	if (t.metrics)
		fclose(t.metrics);
	experiment_free(e);
	json_decref(man);
	free(yaml);
	free(run_dir);
	free(runs);
	free(host);
	return rc;
}
