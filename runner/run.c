/* run: claim loop, per-run directory and sink, heartbeat thread, signals, progress and
 * --jobs worker processes. Backends see only struct run_ctx; everything they report goes
 * through the sink into the store (batched) and into the run directory. */
#include "runner/run.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "common/util.h"
#include "runner/identity.h"
#include "runner/sweep_ctl.h"
#include "runner/tpe.h"
#include "store/store.h"
#include "schema/schema.h"
#include "common/banned.h"

volatile sig_atomic_t run_stop_flag;
/* What the running backend polls: set by a signal (with run_stop_flag) or by an
 * early-termination decision for the run in progress. */
static volatile sig_atomic_t run_halt;

static void on_signal(int sig)
{
	if (run_stop_flag && sig == SIGINT) {
		backend_kill_children();
		_exit(130);
	}
	run_stop_flag = 1;
	run_halt = 1;
}

void run_signals_install(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	/* A trainer that closes its stdout must not kill the runner. */
	signal(SIGPIPE, SIG_IGN);
}

/* ---- text forms ---- */

char *run_json_text(const json_t *v)
{
	if (json_is_string(v))
		return ft_strdup(json_string_value(v));
	if (json_is_real(v)) {
		char buf[64];
		fmt_shortest(buf, sizeof buf, json_real_value(v));
		/* Keep reals recognisable as reals: 2 -> 2.0 */
		if (!strpbrk(buf, ".eEn") && strlen(buf) + 3 < sizeof buf)
			memcpy(buf + strlen(buf), ".0", 3);
		return ft_strdup(buf);
	}
	return json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
}

/* ---- progress ---- */

struct progress {
	const struct run_options *opt;
	size_t done, total;   /* runs handled by this process / points */
	const char *run_id;
	double run_t0, last_draw;
	bool drawn;           /* a \r line is on the terminal */
};

static const char *status_color(const char *status)
{
	if (strcmp(status, "finished") == 0 || strcmp(status, "cached") == 0)
		return "\033[32m";
	if (strcmp(status, "failed") == 0 || strcmp(status, "crashed") == 0)
		return "\033[31m";
	return "\033[33m";
}

static void progress_clear(struct progress *p)
{
	if (p->drawn) {
		fputs("\r\033[K", stderr);
		p->drawn = false;
	}
}

static void fmt_duration(char *buf, size_t n, double s)
{
	if (!isfinite(s) || s < 0)
		snprintf(buf, n, "?");
	else if (s >= 3600)
		snprintf(buf, n, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
	else
		snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
}

static void progress_step(struct progress *p, int64_t step, int64_t total, double loss)
{
	const struct run_options *o = p->opt;
	if (!o->tty || o->verbosity < 0 || o->jobs > 1)
		return;
	double now = time_monotonic();
	if (now - p->last_draw < 0.1)
		return;
	p->last_draw = now;
	char eta[32] = "?";
	double el = now - p->run_t0;
	if (total > 0 && step > 0)
		fmt_duration(eta, sizeof eta, el / (double)step * (double)(total - step));
	fprintf(stderr, "\r\033[K[%zu/%zu] %s step %lld", p->done + 1, p->total, p->run_id,
		(long long)step);
	if (total > 0)
		fprintf(stderr, "/%lld", (long long)total);
	if (isfinite(loss))
		fprintf(stderr, "  loss %.4f", loss);
	fprintf(stderr, "  ETA %s", eta);
	fflush(stderr);
	p->drawn = true;
}

static void progress_line(struct progress *p, const char *run_id, const char *status,
			  const char *detail)
{
	const struct run_options *o = p->opt;
	if (o->verbosity < 0 && strcmp(status, "failed") != 0)
		return;
	progress_clear(p);
	if (o->color)
		fprintf(stderr, "ftlab: run %s %s%s\033[0m%s%s\n", run_id, status_color(status),
			status, detail && detail[0] ? ": " : "", detail ? detail : "");
	else
		fprintf(stderr, "ftlab: run %s %s%s%s\n", run_id, status,
			detail && detail[0] ? ": " : "", detail ? detail : "");
}

/* ---- heartbeat ---- */

struct heartbeat {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool quit, started;
	const char *workspace, *run_id, *token;
	FILE *log;            /* the run's log.txt (stdio locks each call) */
	bool quiet;
	double period;
	_Atomic int64_t step, total;
	atomic_bool lost;     /* the store says another process owns the run now */
};

/* One line on stderr and in the run's log (the heartbeat thread's own messages). */
static void hb_say(const struct heartbeat *h, const char *level, const char *text)
{
	if (!h->quiet || strcmp(level, "error") == 0)
		fprintf(stderr, "ftlab: run %s: %s: %s\n", h->run_id, level, text);
	if (h->log) {
		char ts[32];
		time_iso8601(ts, sizeof ts, time_wall());
		fprintf(h->log, "%s ftlab: %s [heartbeat] %s\n", ts, level, text);
		fflush(h->log);
	}
}

static void *heartbeat_main(void *arg)
{
	struct heartbeat *h = arg;
	struct store *s = NULL;
	struct diag d;
	diag_init(&d);
	bool failing = false;
	char msg[sizeof d.text + 64];
	if (store_open(&s, h->workspace, false, &d) != 0) {
		snprintf(msg, sizeof msg, "no heartbeat will be recorded for this run: %s", d.text);
		hb_say(h, "warning", msg);
	}
	pthread_mutex_lock(&h->mu);
	while (!h->quit && s) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		double sec = h->period;
		ts.tv_sec += (time_t)sec;
		ts.tv_nsec += (long)((sec - (double)(time_t)sec) * 1e9);
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&h->cv, &h->mu, &ts);
		if (h->quit)
			break;
		pthread_mutex_unlock(&h->mu);
		diag_init(&d);
		int r = store_run_heartbeat(s, h->run_id, h->token, atomic_load(&h->step),
					    atomic_load(&h->total), &d);
		if (r && strstr(d.text, "no longer owns")) {
			/* Another process has the run: stop working on it. */
			atomic_store(&h->lost, true);
			run_stop_flag = 1;
			hb_say(h, "error", d.text);
			pthread_mutex_lock(&h->mu);
			break;
		}
		if (r && !failing) {
			/* Said once; a busy store only delays the heartbeat and the next one
			 * retries, but a store that keeps refusing lets the run look dead. */
			snprintf(msg, sizeof msg, "heartbeat not recorded: %s", d.text);
			hb_say(h, "warning", msg);
		} else if (!r && failing) {
			hb_say(h, "info", "heartbeat recorded again");
		}
		failing = r != 0;
		pthread_mutex_lock(&h->mu);
	}
	pthread_mutex_unlock(&h->mu);
	store_close(s);
	return NULL;
}

static void heartbeat_start(struct heartbeat *h, const char *workspace, const char *run_id,
			    const char *token, FILE *log, bool quiet, double period)
{
	memset(h, 0, sizeof *h);
	pthread_mutex_init(&h->mu, NULL);
	pthread_cond_init(&h->cv, NULL);
	h->workspace = workspace;
	h->run_id = run_id;
	h->token = token;
	h->log = log;
	h->quiet = quiet;
	double env_period;
	const char *e = getenv("FTLAB_HEARTBEAT");
	if (period <= 0 && e && parse_f64(e, &env_period) && env_period > 0)
		period = env_period;
	h->period = period > 0 ? period : 5.0;
	h->started = pthread_create(&h->thread, NULL, heartbeat_main, h) == 0;
	if (!h->started)
		hb_say(h, "warning", "cannot start the heartbeat thread: the run may be taken "
		       "for crashed by other ftlab processes on other hosts");
}

static void heartbeat_stop(struct heartbeat *h)
{
	if (h->started) {
		pthread_mutex_lock(&h->mu);
		h->quit = true;
		pthread_cond_signal(&h->cv);
		pthread_mutex_unlock(&h->mu);
		pthread_join(h->thread, NULL);
	}
	pthread_mutex_destroy(&h->mu);
	pthread_cond_destroy(&h->cv);
}

/* ---- early termination of the running run ----
 * The watched metric's values by step (a resumed run replays the ones it had); each new
 * value asks the sweep's controller whether the run goes on. The controller is in this
 * process (--jobs 1) or in the parent, over a socket: "M step value" asks, "R step value"
 * only records; the answer is "C" (continue) or "S band threshold value n_at_band". */

struct watch {
	char split[32], name[64];
	size_t index;            /* sweep index */
	const char *sweep_key;
	int64_t *steps;
	double *values;
	size_t n, cap;
	struct sweep_ctl *ctl;   /* decides in this process, or NULL */
	int fd;                  /* else the controller's end of the socket */
	bool stopped;
	struct sweep_verdict verdict;
};

static bool watch_matches(const struct watch *w, const char *split, const char *name)
{
	return w && strcmp(w->split, split) == 0 && strcmp(w->name, name) == 0;
}

/* Inserts (or replaces) the value of one step, keeping steps ascending. */
static int watch_put(struct watch *w, int64_t step, double value)
{
	size_t i = w->n;
	while (i > 0 && w->steps[i - 1] > step)
		i--;
	if (i > 0 && w->steps[i - 1] == step) {
		w->values[i - 1] = value;
		return 0;
	}
	if (w->n == w->cap) {
		size_t cap = w->cap ? 2 * w->cap : 64;
		int64_t *st = realloc(w->steps, cap * sizeof *st);
		if (!st)
			return FT_ENOMEM;
		w->steps = st;
		double *v = realloc(w->values, cap * sizeof *v);
		if (!v)
			return FT_ENOMEM;
		w->values = v;
		w->cap = cap;
	}
	memmove(w->steps + i + 1, w->steps + i, (w->n - i) * sizeof *w->steps);
	memmove(w->values + i + 1, w->values + i, (w->n - i) * sizeof *w->values);
	w->steps[i] = step;
	w->values[i] = value;
	w->n++;
	return 0;
}

static void watch_free(struct watch *w)
{
	free(w->steps);
	free(w->values);
	w->steps = NULL;
	w->values = NULL;
	w->n = w->cap = 0;
}

static bool write_all(int fd, const char *buf, size_t n)
{
	while (n) {
		ssize_t k = write(fd, buf, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return false;
		buf += k;
		n -= (size_t)k;
	}
	return true;
}

/* Reads one line (without the newline) from fd into buf. */
static bool read_line(int fd, char *buf, size_t cap)
{
	size_t n = 0;
	while (n + 1 < cap) {
		char c;
		ssize_t k = read(fd, &c, 1);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return false;
		if (c == '\n')
			break;
		buf[n++] = c;
	}
	buf[n] = '\0';
	return true;
}

/* One logged value of the watched metric; decide: ask whether the run goes on. A failure
 * to reach the controller lets the run go on (the decision is an optimisation). */
static int watch_metric(struct watch *w, int64_t step, double value, bool decide)
{
	if (w->stopped)
		return 0;
	struct sweep_verdict v = {0};
	if (w->ctl) {
		if (watch_put(w, step, value) != 0)
			return FT_ENOMEM;
		if (!decide)
			return 0;
		struct diag d;
		diag_init(&d);
		int r = sweep_ctl_observe(w->ctl, &v, w->index, w->values, w->n, true, &d);
		if (r)
			return r;
	} else {
		char line[160];
		int k = snprintf(line, sizeof line, "%c %lld %.17g\n", decide ? 'M' : 'R',
				 (long long)step, value);
		if (!write_all(w->fd, line, (size_t)k) || !decide)
			return 0;
		if (!read_line(w->fd, line, sizeof line))
			return 0;
		/* "S band threshold value n_at_band" */
		char *p = line + 1, *end;
		long long band = strtoll(p, &end, 10);
		bool ok = line[0] == 'S' && end != p;
		v.threshold = ok ? strtod(p = end, &end) : 0;
		ok = ok && end != p;
		v.value = ok ? strtod(p = end, &end) : 0;
		ok = ok && end != p;
		unsigned long long n_at = ok ? strtoull(p = end, &end, 10) : 0;
		if (ok && end != p) {
			v.stop = v.checked = true;
			v.band = band;
			v.n_at_band = (size_t)n_at;
		}
	}
	if (v.stop) {
		w->stopped = true;
		w->verdict = v;
		run_halt = 1;
	}
	return 0;
}

/* ---- the sink ---- */

struct sink_state {
	struct store_writer *w;
	const char *run_dir;
	FILE *metrics;        /* metrics.jsonl */
	FILE *log;            /* log.txt (runner lines) */
	struct heartbeat *hb;
	struct progress *prog;
	double last_loss;
	struct diag file_err; /* the first failed write of metrics.jsonl */
	struct watch *watch;  /* early termination, or NULL */
};

/* One line of metrics.jsonl, flushed at once: after a kill -9 the file holds every point
 * the runner had received, and a resume replays it into the store. It is the run's
 * crash-recovery record, so a line that cannot be written fails the run: the first
 * error is kept in s->file_err and returned (FT_EIO) by this and every later line. */
static int json_line(struct sink_state *s, json_t *o)
{
	if (s->file_err.code) {
		json_decref(o);
		return s->file_err.code;
	}
	char *text = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
	json_decref(o);
	if (!text)
		return diag_set(&s->file_err, FT_ENOMEM, "", 0, 0,
				"out of memory writing metrics.jsonl of %s", s->run_dir);
	errno = 0;
	bool ok = fputs(text, s->metrics) >= 0 && fputc('\n', s->metrics) != EOF &&
		  fflush(s->metrics) == 0 && !ferror(s->metrics);
	int e = errno;
	free(text);
	if (ok)
		return 0;
	return diag_set(&s->file_err, FT_EIO, "", 0, 0, "cannot write %s/metrics.jsonl: %s",
			s->run_dir, e ? strerror(e) : "write error");
}

/* Replays the metric history of metrics.jsonl (an interrupted attempt) into the store;
 * points already there are replaced by the same values. */
static int replay_metrics(struct store_writer *w, const char *run_dir, struct watch *wt,
			  struct diag *d)
{
	char *p = path_join(run_dir, "metrics.jsonl");
	if (!p)
		return diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
	FILE *f = fopen(p, "r");
	free(p);
	if (!f)
		return 0;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int r = 0;
	while (!r && (n = getline(&line, &cap, f)) > 0) {
		json_error_t je;
		json_t *o = json_loadb(line, (size_t)n, 0, &je);
		const json_t *split = json_object_get(o, "split"), *name = json_object_get(o, "name");
		const json_t *step = json_object_get(o, "step"), *value = json_object_get(o, "value");
		if (json_is_string(split) && json_is_string(name) && json_is_integer(step) &&
		    (json_is_number(value) || json_is_null(value))) {
			double v = json_is_number(value) ? json_number_value(value) : NAN;
			r = store_writer_metric(w, json_string_value(split), json_string_value(name),
						json_integer_value(step), v);
			if (!r && watch_matches(wt, json_string_value(split), json_string_value(name)))
				r = watch_metric(wt, json_integer_value(step), v, false);
		}
		json_decref(o);
	}
	free(line);
	fclose(f);
	if (r)
		return diag_set(d, r, "", 0, 0, "replaying metrics.jsonl: %s",
				store_writer_error(w) ? store_writer_error(w)->text : "store error");
	return 0;
}

static json_t *json_num_or_null(double x)
{
	return isfinite(x) ? json_real(x) : json_null();
}

static void log_printf(FILE *f, const char *fmt, ...) FT_PRINTF(2, 3);
static void log_printf(FILE *f, const char *fmt, ...)
{
	if (!f)
		return;
	char ts[32];
	time_iso8601(ts, sizeof ts, time_wall());
	fprintf(f, "%s ftlab: ", ts);
	va_list ap;
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fputc('\n', f);
	fflush(f);
}

static int sink_metric(void *ud, const char *split, const char *name, int64_t step, double value)
{
	struct sink_state *s = ud;
	int r = json_line(s, json_pack("{s:s, s:s, s:I, s:o}", "split", split, "name", name,
				       "step", (json_int_t)step, "value", json_num_or_null(value)));
	int w = store_writer_metric(s->w, split, name, step, value);
	if (!w && watch_matches(s->watch, split, name))
		w = watch_metric(s->watch, step, value, true);
	return r ? r : w;
}

static int sink_result(void *ud, const char *model, const char *split, const char *metric,
		       double value, double lo, double hi)
{
	struct sink_state *s = ud;
	int r = json_line(s, json_pack("{s:s, s:s, s:s, s:o, s:o, s:o}", "model", model, "split",
				       split, "metric", metric, "value", json_num_or_null(value),
				       "ci_low", json_num_or_null(lo), "ci_high",
				       json_num_or_null(hi)));
	int w = store_writer_result(s->w, model, split, metric, value, lo, hi);
	return r ? r : w;
}

static int sink_prediction(void *ud, const char *model, const char *split, int64_t example,
			   const char *prompt, const char *reference, const char *output,
			   double score)
{
	struct sink_state *s = ud;
	return store_writer_prediction(s->w, model, split, example, prompt, reference, output,
				       score);
}

static int sink_event(void *ud, const char *level, const char *kind, const char *message)
{
	struct sink_state *s = ud;
	log_printf(s->log, "%s [%s] %s", level, kind, message);
	if (strcmp(level, "info") != 0 && s->prog->opt->verbosity >= 0) {
		progress_clear(s->prog);
		fprintf(stderr, "ftlab: run %s: %s: %s\n", s->prog->run_id, level, message);
	}
	return store_writer_event(s->w, level, kind, message);
}

static int sink_artifact(void *ud, const char *kind, const char *path)
{
	struct sink_state *s = ud;
	return store_writer_artifact(s->w, kind, path, s->run_dir);
}

static void sink_progress(void *ud, int64_t step, int64_t total, double loss)
{
	struct sink_state *s = ud;
	atomic_store(&s->hb->step, step);
	atomic_store(&s->hb->total, total);
	progress_step(s->prog, step, total, loss);
}

/* ---- one run ---- */

static int write_text(const char *dir, const char *name, const char *text, struct diag *d)
{
	char *p = path_join(dir, name);
	if (!p)
		return diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
	/* text is never NULL: yaml is set whenever r == 0 (the analyzer loses that) */
	int r = file_write_atomic(p, text, strlen(text), d); // NOLINT(clang-analyzer-core.NonNullParamChecker)
	free(p);
	return r;
}

static FILE *open_in(const char *dir, const char *name, const char *mode)
{
	char *p = path_join(dir, name);
	FILE *f = p ? fopen(p, mode) : NULL;
	free(p);
	return f;
}

/* Short "test.exact_match=0.8 test.loss=0.41" summary of a run's tuned results. */
static void results_summary(struct store *s, const char *run_id, char *buf, size_t n)
{
	struct store_result_list *l = NULL;
	struct diag d;
	diag_init(&d);
	buf[0] = '\0';
	if (store_results(s, &l, run_id, &d) != 0)
		return;
	size_t used = 0;
	for (size_t i = 0; i < l->n && used + 1 < n; i++) {
		if (strcmp(l->items[i].model, "tuned") != 0)
			continue;
		int k = snprintf(buf + used, n - used, "%s%s.%s=%.4g", used ? " " : "",
				 l->items[i].split, l->items[i].metric, l->items[i].value);
		if (k < 0 || (size_t)k >= n - used)
			break;
		used += (size_t)k;
	}
	store_result_list_free(l);
}

int run_threads(const struct config *cfg)
{
	if (cfg->backend.threads > 0)
		return cfg->backend.threads;
	/* Under Slurm, the CPUs the task was given (the same on every node it may be
	 * requeued to, which keeps a resumed trace bit-identical), not the node's cores. */
	const char *spt = getenv("SLURM_CPUS_PER_TASK");
	int64_t v;
	if (spt && parse_i64(spt, &v) && v > 0 && v <= 4096)
		return (int)v;
	long nc = sysconf(_SC_NPROCESSORS_ONLN);
	return nc > 0 ? (int)nc : 1;
}

int run_write_config(const char *run_dir, const struct config *cfg, struct diag *d)
{
	char *yaml = NULL;
	const char *cj = cfg->canonical_json ? cfg->canonical_json : "{}";
	int r = write_text(run_dir, "config.json", cj, d);
	if (!r) {
		/* The schema's own YAML form (keys in schema order); the generic form when the
		 * config did not come from the schema loader. */
		size_t ylen = 0;
		FILE *mem = open_memstream(&yaml, &ylen);
		bool ok = mem && config_write_yaml(mem, cfg) == 0;
		if (mem)
			fclose(mem);
		if (!ok) {
			free(yaml);
			yaml = NULL;
			r = schema_json_to_yaml(&yaml, cj, d);
		}
	}
	if (!r)
		r = write_text(run_dir, "config.yaml", yaml, d);
	free(yaml);
	return r;
}

int run_backend_pick(const struct backend **out, enum backend_type type, struct diag *d)
{
	char why[256] = "";
	*out = NULL;
	switch (type) {
	case BACKEND_EXEC:
		*out = backend_exec();
		return 0;
	case BACKEND_AUTO: {
		const struct backend *c = backend_cuda();
		if (c && c->available(why, sizeof why)) {
			*out = c;
			return 0;
		}
		c = backend_cpu();
		if (c && c->available(why, sizeof why)) {
			*out = c;
			return 0;
		}
		return diag_set(d, FT_EUNSUPP, "", 0, 0, "no backend can run here: %s",
				why[0] ? why : "none built");
	}
	case BACKEND_CPU:
	case BACKEND_CUDA: {
		const struct backend *b = type == BACKEND_CPU ? backend_cpu() : backend_cuda();
		const char *name = schema_enum_name("backend.type", (int)type);
		if (!b || !b->available(why, sizeof why))
			return diag_set(d, FT_EUNSUPP, "", 0, 0, "backend '%s' cannot run here: %s",
					name, why[0] ? why : "not built into this binary");
		*out = b;
		return 0;
	}
	}
	return diag_set(d, FT_EINTERNAL, "", 0, 0, "unknown backend type");
}

/* Executes one claimed point. Returns 0 when the run reached an end state that was
 * recorded (finished, failed or killed), or a store/system error. */
/* The early-termination event of a stopped run, and its verdict as JSON. */
static void stop_texts(char *msg, size_t n, char *json, size_t jn, const struct watch *w)
{
	run_stop_texts(msg, n, json, jn, &w->verdict, w->split, w->name,
		       w->n ? w->steps[w->n - 1] : 0);
}

void run_stop_texts(char *msg, size_t n, char *json, size_t jn, const struct sweep_verdict *v,
		    const char *split, const char *name, int64_t step)
{
	snprintf(msg, n, "stopped by hyperband at band %lld (the %lld%s logged value of %s.%s): "
		 "%.6g is worse than the band's threshold %.6g (from %zu run%s)",
		 (long long)v->band, (long long)v->band,
		 v->band % 10 == 1 && v->band % 100 != 11 ? "st" :
		 v->band % 10 == 2 && v->band % 100 != 12 ? "nd" :
		 v->band % 10 == 3 && v->band % 100 != 13 ? "rd" : "th",
		 split, name, v->value, v->threshold, v->n_at_band, v->n_at_band == 1 ? "" : "s");
	snprintf(json, jn, "{\"type\":\"hyperband\",\"metric\":\"%s.%s\",\"band\":%lld,"
		 "\"value\":%.17g,\"threshold\":%.17g,\"runs_at_band\":%zu,\"step\":%lld}",
		 split, name, (long long)v->band, v->value, v->threshold, v->n_at_band,
		 (long long)step);
}

static int run_one(struct store *s, const char *workspace, int64_t invocation,
		   const struct run_point *pt, const char *token, bool resume,
		   const struct run_options *opt, const struct provenance *prov,
		   struct progress *prog, struct watch *wt, struct diag *d)
{
	char *runs_dir = path_join(workspace, "runs");
	char *run_dir = runs_dir ? path_join(runs_dir, pt->id) : NULL;
	char *base_eval_dir = path_join(workspace, "base-eval");
	struct store_writer *w = NULL;
	FILE *metrics = NULL, *log = NULL;
	struct heartbeat hb;
	bool hb_on = false;
	int r = 0;
	struct diag rd; /* the run's own failure */
	diag_init(&rd);
	if (!run_dir) {
		r = diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
		goto done;
	}
	if (!resume && dir_remove_all(run_dir) != 0) {
		r = diag_set(d, FT_EIO, "", 0, 0, "cannot clear run directory %s", run_dir);
		goto done;
	}
	r = dir_make_all(run_dir, d);
	if (r)
		goto done;
	r = run_write_config(run_dir, pt->cfg, d);
	if (r)
		goto done;
	metrics = open_in(run_dir, "metrics.jsonl", resume ? "a" : "w");
	log = open_in(run_dir, "log.txt", "a");
	if (!metrics || !log) {
		r = diag_set(d, FT_EIO, "", 0, 0, "cannot write in run directory %s: %s", run_dir,
			     strerror(errno));
		goto done;
	}
	r = store_writer_open(&w, s, pt->id, token, 1.0, d);
	if (!r && resume)
		r = replay_metrics(w, run_dir, wt, d);
	if (r)
		goto done;
	heartbeat_start(&hb, workspace, pt->id, token, log, opt->verbosity < 0, opt->heartbeat_s);
	hb_on = true; // NOLINT(clang-analyzer-deadcode.DeadStores): keeps the cleanup right for any later goto

	struct sink_state ss = {.w = w, .run_dir = run_dir, .metrics = metrics, .log = log,
				.hb = &hb, .prog = prog, .watch = wt};
	diag_init(&ss.file_err);
	struct run_sink sink = {
		.ud = &ss,
		.metric = sink_metric,
		.result = sink_result,
		.prediction = sink_prediction,
		.event = sink_event,
		.artifact = sink_artifact,
		.progress = sink_progress,
	};
	log_printf(log, "%s run %s (sweep index %zu, params %s) with backend %s, pid %d",
		   resume ? "resuming" : "starting", pt->id, pt->index, pt->params_json,
		   backend_name(opt->backend), (int)getpid());
	if (resume && store_writer_event(w, "info", "resumed",
					 "continuing a killed or crashed attempt") != 0) {
		/* kept in the writer's error; the run itself goes on */
	}
	if (prov && prov->is_repo && prov->dirty && prov->diff) {
		if (write_text(run_dir, "diff.patch", prov->diff, d) == 0)
			(void)sink_artifact(&ss, "diff", "diff.patch");
	}
	int threads = run_threads(pt->cfg);
	struct run_ctx ctx = {
		.cfg = pt->cfg,
		.experiment = pt->cfg->name,
		.run_id = pt->id,
		.run_dir = run_dir,
		.resume = resume,
		.threads = threads,
		.stop = &run_halt,
		.sink = &sink,
		.base_eval_dir = opt->force ? NULL : base_eval_dir,
	};
	run_halt = run_stop_flag;
	prog->run_id = pt->id;
	prog->run_t0 = time_monotonic();
	if (!opt->tty || opt->jobs > 1)
		progress_line(prog, pt->id, resume ? "resuming" : "started", pt->params_json);
	int br = opt->backend->run(&ctx, &rd);
	/* The heartbeat thread writes into the log: it ends before the files close. */
	int64_t last_step = atomic_load(&hb.step), last_total = atomic_load(&hb.total);
	heartbeat_stop(&hb);
	hb_on = false;
	bool lost = atomic_load(&hb.lost);
	if (fflush(metrics) != 0 && !ss.file_err.code)
		diag_set(&ss.file_err, FT_EIO, "", 0, 0, "cannot write %s/metrics.jsonl: %s", run_dir,
			 strerror(errno));
	int fr = store_writer_flush(w);
	bool stopped = wt && wt->stopped && br == FT_EINTR;
	const char *status = br == 0 ? "finished" : stopped ? "stopped"
				     : br == FT_EINTR ? "killed" : "failed";
	if (ss.file_err.code && br != FT_EINTR) {
		/* The crash-recovery record is incomplete: the run cannot be trusted as done. */
		status = "failed";
		diag_set(&rd, ss.file_err.code, "", 0, 0, "%s", ss.file_err.text);
	} else if (br == 0 && fr != 0) {
		status = "failed";
		diag_set(&rd, fr, "", 0, 0, "recording the run failed: %s",
			 store_writer_error(w) ? store_writer_error(w)->text : "store error");
	}
	const char *err = strcmp(status, "finished") == 0 ? NULL : rd.text;
	/* A sink callback that failed (the store refusing a write) ends the run with the
	 * writer's message; a backend need not copy it into its own diag. */
	if (br != 0 && br != FT_EINTR && store_writer_error(w) &&
	    (!rd.text[0] || br == store_writer_error(w)->code))
		err = store_writer_error(w)->text;
	if (br == FT_EINTR && !rd.text[0])
		err = "stopped by a signal";
	char stop_msg[512] = "", stop_json[512] = "";
	/* A trainer can finish before the stop reaches it (an exec trainer that printed its
	 * last lines already): the run keeps its results and says what was decided. */
	bool late = wt && wt->stopped && br == 0;
	if (stopped || late) {
		stop_texts(stop_msg, sizeof stop_msg, stop_json, sizeof stop_json, wt);
		err = stopped ? NULL : err;
	}
	log_printf(log, "run %s %s%s%s", pt->id, status, err ? ": " : "", err ? err : "");
	fclose(metrics);
	metrics = NULL;
	fclose(log);
	log = NULL;
	if (lost) {
		/* Nothing more is ours to record: every write would be refused. */
		r = diag_set(d, FT_ESTORE, "", 0, 0,
			     "run %s: this process lost its claim while running (another process "
			     "owns the run now); its outcome (%s) is not recorded", pt->id, status);
		progress_line(prog, pt->id, "lost", "another process owns the run now");
		goto done;
	}
	static const char *const files[][2] = {
		{"config", "config.yaml"}, {"config", "config.json"}, {"log", "log.txt"},
		{"metrics", "metrics.jsonl"},
	};
	for (size_t i = 0; i < FT_ARRAY_LEN(files); i++)
		if (store_writer_artifact(w, files[i][0], files[i][1], run_dir) != 0)
			break; /* the writer keeps the error; the run's status is what matters here */
	if (stopped) {
		if (store_writer_event(w, "info", "stopped", stop_msg) != 0) {
		}
	} else if (late) {
		char late_msg[600];
		snprintf(late_msg, sizeof late_msg, "%s; the run had already finished and keeps its "
			 "results", stop_msg);
		if (store_writer_event(w, "info", "stop_late", late_msg) != 0) {
		}
	} else if (strcmp(status, "killed") == 0) {
		if (store_writer_event(w, "warning", "killed", "stopped by SIGINT/SIGTERM") != 0) {
		}
	} else if (strcmp(status, "failed") == 0) {
		if (store_writer_event(w, "error", "failed", err ? err : "failed") != 0) {
		}
	}
	/* The last progress, so `ls` shows how far a run got even when it was shorter than
	 * one heartbeat. */
	if (last_step || last_total)
		r = store_run_heartbeat(s, pt->id, token, last_step, last_total, d);
	if (r)
		goto done;
	r = store_run_end(s, pt->id, token, invocation, status, err, d);
	if (!r && stopped && wt->sweep_key)
		r = store_sweep_point_stop(s, wt->sweep_key, (int64_t)wt->index, stop_json, d);
	if (r)
		goto done;
	char summary[512] = "";
	if (stopped)
		snprintf(summary, sizeof summary, "%s", stop_msg);
	if (strcmp(status, "finished") == 0) {
		char res[400];
		results_summary(s, pt->id, res, sizeof res);
		snprintf(summary, sizeof summary, "%.1fs%s%s", time_monotonic() - prog->run_t0,
			 res[0] ? "  " : "", res);
	}
	progress_line(prog, pt->id, status, err ? err : summary);
done:
	if (hb_on)
		heartbeat_stop(&hb);
	if (metrics)
		fclose(metrics);
	if (log)
		fclose(log);
	store_writer_free(w);
	free(run_dir);
	free(runs_dir);
	free(base_eval_dir);
	return r;
}

/* ---- the claim loop ---- */

static int claim_loop(struct store *s, const char *workspace, int64_t invocation,
		      const char *experiment, const struct run_point *points, size_t n,
		      size_t start, const struct run_options *opt, const struct provenance *prov,
		      struct diag *d)
{
	struct progress prog = {.opt = opt, .total = n};
	for (size_t k = 0; k < n && !run_stop_flag; k++) {
		const struct run_point *pt = &points[(start + k) % n];
		struct store_run_spec spec = {
			.id = pt->id,
			.experiment = experiment,
			.sweep_index = (int64_t)pt->index,
			.params_json = pt->params_json,
			.config_json = pt->cfg->canonical_json,
			.identity = pt->identity,
			.backend = backend_name(opt->backend),
			.device = opt->device ? opt->device : backend_name(opt->backend),
			.threads = run_threads(pt->cfg),
			.seed = (int64_t)pt->cfg->seed,
			.run_dir = NULL,
			.git_commit = prov && prov->is_repo ? prov->commit : NULL,
			.git_dirty = prov && prov->is_repo && prov->dirty,
		};
		char *runs_dir = path_join(workspace, "runs");
		char *run_dir = runs_dir ? path_join(runs_dir, pt->id) : NULL;
		char *abs = run_dir ? realpath(workspace, NULL) : NULL;
		char *abs_dir = abs ? path_join(abs, "runs") : NULL;
		char *abs_run = abs_dir ? path_join(abs_dir, pt->id) : NULL;
		spec.run_dir = abs_run ? abs_run : run_dir;
		enum store_claim c;
		char token[STORE_TOKEN_SIZE];
		int r = store_run_claim(s, &c, token, invocation, &spec,
					(opt->force ? STORE_FLAG_FORCE : 0) |
						(opt->resume ? STORE_FLAG_RESUME : 0),
					d);
		free(runs_dir);
		free(run_dir);
		free(abs);
		free(abs_dir);
		free(abs_run);
		if (r)
			return r;
		if (c == STORE_CLAIM_CACHED) {
			if (opt->verbosity > 0 || !opt->tty)
				progress_line(&prog, pt->id, "cached", pt->params_json);
			prog.done++;
			continue;
		}
		if (c == STORE_CLAIM_BUSY) {
			if (opt->verbosity >= 0)
				progress_line(&prog, pt->id, "running elsewhere", "left to that process");
			continue;
		}
		if (c == STORE_CLAIM_DONE)
			continue;
		r = run_one(s, workspace, invocation, pt, token, c == STORE_CLAIM_RESUME, opt, prov,
			    &prog, NULL, d);
		if (r)
			return r;
		prog.done++;
	}
	progress_clear(&prog);
	return run_stop_flag ? FT_EINTR : 0;
}

static int summarise(struct run_summary *out, struct store *s, int64_t invocation, size_t n,
		     struct diag *d)
{
	struct store_run_list *l = NULL;
	int r = store_invocation_runs(s, &l, invocation, d);
	if (r)
		return r;
	out->total = n;
	for (size_t i = 0; i < l->n; i++) {
		const char *st = l->items[i].status;
		if (strcmp(st, "finished") == 0)
			out->finished++;
		else if (strcmp(st, "failed") == 0)
			out->failed++;
		else if (strcmp(st, "killed") == 0)
			out->killed++;
		else if (strcmp(st, "crashed") == 0)
			out->crashed++;
		else if (strcmp(st, "cached") == 0)
			out->cached++;
		else if (strcmp(st, "stopped") == 0) {
			out->stopped++;
			/* The steps it did not train (when its trainer said how many it would). */
			const struct store_run *rr = &l->items[i];
			if (rr->total_steps > rr->step)
				out->steps_saved += rr->total_steps - rr->step;
		} else
			out->other++;
	}
	size_t seen = out->finished + out->failed + out->killed + out->crashed + out->cached +
		      out->stopped + out->other;
	out->busy = n > seen ? n - seen : 0;
	store_run_list_free(l);
	return 0;
}

int run_execute_plan(struct run_summary *out, const char *workspace, int64_t invocation,
		     const char *experiment, const struct run_point *points, size_t n,
		     const struct run_options *opt, const struct provenance *prov, struct diag *d)
{
	memset(out, 0, sizeof *out);
	struct store *s = NULL;
	int r = 0;
	int jobs = opt->jobs > 1 ? opt->jobs : 1;
	if ((size_t)jobs > n)
		jobs = n > 0 ? (int)n : 1;
	char *runs_dir = path_join(workspace, "runs");
	if (!runs_dir)
		return diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
	r = dir_make_all(runs_dir, d);
	free(runs_dir);
	if (r)
		return r;
	if (jobs <= 1) {
		r = store_open(&s, workspace, false, d);
		if (!r)
			r = claim_loop(s, workspace, invocation, experiment, points, n, 0, opt, prov, d);
	} else {
		/* Workers are forked before any thread or store connection exists in this
		 * process's run loop; each opens its own connection and claims from the list. */
		pid_t *pids = calloc((size_t)jobs, sizeof *pids);
		if (!pids)
			return diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
		fflush(NULL);
		int started = 0;
		for (int j = 0; j < jobs; j++) {
			pid_t pid = fork();
			if (pid < 0) {
				r = diag_set(d, FT_EIO, "", 0, 0, "fork: %s", strerror(errno));
				break;
			}
			if (pid == 0) {
				struct store *cs = NULL;
				struct diag cd;
				diag_init(&cd);
				int cr = store_open(&cs, workspace, false, &cd);
				if (!cr)
					cr = claim_loop(cs, workspace, invocation, experiment, points, n,
							(size_t)j * n / (size_t)jobs, opt, prov, &cd);
				if (cr && cr != FT_EINTR)
					diag_print(&cd, stderr);
				store_close(cs);
				fflush(NULL);
				_exit(cr == 0 ? 0 : cr == FT_EINTR ? 130 : 3);
			}
			pids[started++] = pid;
		}
		bool forwarded = false;
		int bad = 0;
		for (int j = 0; j < started; j++) {
			int status = 0;
			pid_t w;
			while ((w = waitpid(pids[j], &status, 0)) < 0) {
				if (errno != EINTR)
					break;
				if (run_stop_flag && !forwarded) {
					forwarded = true;
					for (int k = 0; k < started; k++)
						kill(pids[k], SIGTERM);
				}
			}
			if (w < 0) {
				/* No status to read (ECHILD: someone else reaped it). The store
				 * still says what the worker recorded. */
				if (!r)
					r = diag_set(d, FT_EIO, "", 0, 0,
						     "cannot wait for worker process %d: %s",
						     (int)pids[j], strerror(errno));
				continue;
			}
			if (!WIFEXITED(status) || (WEXITSTATUS(status) != 0 && WEXITSTATUS(status) != 130))
				bad++;
		}
		free(pids);
		if (!r && bad)
			r = diag_set(d, FT_ESTORE, "", 0, 0, "%d of %d worker processes failed", bad,
				     started);
		if (!r && run_stop_flag)
			r = FT_EINTR;
		int orr = store_open(&s, workspace, false, d);
		if (!r)
			r = orr;
	}
	if (s) {
		struct diag sd;
		diag_init(&sd);
		if (summarise(out, s, invocation, n, &sd) != 0 && !r)
			r = diag_set(d, sd.code, "", 0, 0, "%s", sd.text);
	}
	out->interrupted = run_stop_flag != 0;
	store_close(s);
	return r;
}

double run_stale_after(void)
{
	const char *e = getenv("FTLAB_STALE_AFTER");
	double v;
	return e && parse_f64(e, &v) && v > 0 ? v : RUN_STALE_S;
}

int run_store_open(struct store **out, const char *workspace, bool create, struct diag *d)
{
	int r = store_open(out, workspace, create, d);
	if (r)
		return r;
	struct diag rd;
	diag_init(&rd);
	int n = 0;
	if (store_reap_stale(*out, run_stale_after(), &n, &rd) != 0 && rd.code != FT_EIO) {
		store_close(*out);
		*out = NULL;
		return diag_set(d, rd.code, "", 0, 0, "%s", rd.text);
	}
	return 0;
}

char *run_params_text(const char *params_json)
{
	json_error_t je;
	json_t *o = json_loads(params_json ? params_json : "{}", 0, &je);
	struct strbuf sb = {0};
	int e = 0;
	if (json_is_object(o)) {
		const char *key;
		json_t *v;
		json_object_foreach(o, key, v)
		{
			char *val = run_json_text(v);
			e |= strbuf_printf(&sb, "%s%s=%s", sb.len ? " " : "", key, val ? val : "?");
			free(val);
		}
	}
	json_decref(o);
	if (e) {
		strbuf_free(&sb);
		return NULL;
	}
	return strbuf_detach(&sb);
}

/* ---- sweeps under a controller ---- */

double run_objective(struct store *s, const char *run_id, const char *metric, bool maximize)
{
	char split[32];
	const char *dot = metric ? strchr(metric, '.') : NULL;
	if (!dot || (size_t)(dot - metric) >= sizeof split)
		return NAN;
	snprintf(split, sizeof split, "%.*s", (int)(dot - metric), metric);
	const char *name = dot + 1;
	struct diag d;
	diag_init(&d);
	double v = NAN;
	struct store_result_list *rl = NULL;
	if (store_results(s, &rl, run_id, &d) == 0) {
		for (size_t i = 0; i < rl->n; i++) {
			const struct store_result *x = &rl->items[i];
			if (strcmp(x->model, "tuned") == 0 && strcmp(x->split, split) == 0 &&
			    strcmp(x->metric, name) == 0 && isfinite(x->value))
				v = x->value;
		}
		store_result_list_free(rl);
	}
	if (isfinite(v))
		return v;
	struct store_metric_list *ml = NULL;
	diag_init(&d);
	if (store_metrics(s, &ml, run_id, split, name, &d) == 0) {
		for (size_t i = 0; i < ml->n; i++) {
			double x = ml->items[i].value;
			if (isfinite(x) && (!isfinite(v) || (maximize ? x > v : x < v)))
				v = x;
		}
		store_metric_list_free(ml);
	}
	return v;
}

/* A point handed out by the controller, with its run id; with jobs > 1 also its worker. */
struct live {
	const struct sweep_point *pt;
	struct run_point rp;
	pid_t pid;
	int fd;
	struct watch watch;   /* the worker's metric history, kept here for the decisions */
	char buf[512];
	size_t len;
};

struct sweep_exec {
	const char *workspace, *experiment;
	int64_t invocation;
	struct sweep_ctl *ctl;
	const struct run_options *opt;
	const struct provenance *prov;
	struct store *s;
	char split[32], name[64]; /* the early-termination metric, split "" when none */
	const char *objective;
	bool maximize;
	size_t handed;            /* points handed out and claimed (or peeked) */
};

static void split_metric(char *split, size_t sn, char *name, size_t nn, const char *metric)
{
	const char *dot = metric ? strchr(metric, '.') : NULL;
	split[0] = name[0] = '\0';
	if (dot) {
		snprintf(split, sn, "%.*s", (int)(dot - metric), metric);
		snprintf(name, nn, "%s", dot + 1);
	}
}

int run_sweep_feed(struct store *s, struct sweep_ctl *ctl, size_t index, const char *run_id,
		   struct diag *d)
{
	char split[32], name[64];
	split_metric(split, sizeof split, name, sizeof name, sweep_ctl_stop_metric(ctl));
	bool maximize = false;
	const char *objective = sweep_ctl_objective(ctl, &maximize);
	struct store_run *row = NULL;
	struct diag q;
	diag_init(&q);
	if (store_run_get(s, &row, run_id, &q) != 0)
		return q.code == FT_EINVAL ? 0 : diag_set(d, q.code, "", 0, 0, "%s", q.text);
	int r = 0;
	if (split[0]) {
		struct store_metric_list *ml = NULL;
		if ((r = store_metrics(s, &ml, run_id, split, name, d)) != 0)
			goto done;
		double *h = malloc((ml->n ? ml->n : 1) * sizeof *h);
		if (!h) {
			store_metric_list_free(ml);
			r = diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
			goto done;
		}
		for (size_t i = 0; i < ml->n; i++) /* ordered by step */
			h[i] = ml->items[i].value;
		struct sweep_verdict v;
		r = sweep_ctl_observe(ctl, &v, index, h, ml->n, false, d);
		free(h);
		store_metric_list_free(ml);
		if (r)
			goto done;
	}
	const char *st = row->status;
	enum sweep_outcome o;
	if (strcmp(st, "finished") == 0)
		o = SWEEP_RUN_FINISHED;
	else if (strcmp(st, "stopped") == 0)
		o = SWEEP_RUN_STOPPED;
	else if (strcmp(st, "failed") == 0 || strcmp(st, "crashed") == 0)
		o = SWEEP_RUN_FAILED;
	else
		goto done; /* killed, running elsewhere: no outcome yet */
	double obj = objective && o != SWEEP_RUN_FAILED ? run_objective(s, run_id, objective, maximize)
							: NAN;
	sweep_ctl_result(ctl, index, o, obj);
done:
	store_run_free(row);
	return r;
}

int run_sweep_restore(struct store *s, struct sweep_ctl *ctl, struct diag *d)
{
	/* The points this sweep handed out before, in index order. */
	struct store_sweep_point_list *pl = NULL;
	int r = store_sweep_points(s, &pl, sweep_ctl_key(ctl), NULL, d);
	for (size_t i = 0; !r && i < pl->n; i++) {
		struct diag q;
		diag_init(&q);
		if (sweep_ctl_restore(ctl, (size_t)pl->items[i].sweep_index,
				      pl->items[i].params_json, &q) != 0 &&
		    q.code != FT_EINVAL)
			r = diag_set(d, q.code, "", 0, 0, "%s", q.text);
	}
	store_sweep_point_list_free(pl);
	return r;
}

static int feed_recorded(struct sweep_exec *X, size_t index, const char *run_id, struct diag *d)
{
	return run_sweep_feed(X->s, X->ctl, index, run_id, d);
}

int run_sweep_point(struct run_point *out, struct store *s, struct sweep_ctl *ctl,
		    const char *experiment, const struct sweep_point *pt,
		    enum backend_type backend_type, struct diag *d)
{
	memset(out, 0, sizeof *out);
	out->index = pt->index;
	out->params_json = pt->params_json;
	out->cfg = pt->cfg;
	int r = run_identity(out->identity, pt->cfg, d);
	if (r)
		return r;
	run_id_from_identity(out->id, out->identity);
	if (pt->cfg->backend.type != backend_type)
		return diag_set(d, FT_EINVAL, "", 0, 0, "sweep point %zu has another backend.type; "
				"all runs of one invocation use the same backend", pt->index);
	struct sweep_suggestion why = sweep_ctl_suggestion(ctl, pt->index);
	char sug[256] = "";
	if (why.adaptive && why.tpe) {
		if (why.random)
			snprintf(sug, sizeof sug, "{\"method\":\"tpe\",\"random_start\":true}");
		else
			snprintf(sug, sizeof sug, "{\"method\":\"tpe\",\"random_start\":false,"
				 "\"log_ratio\":%.17g,\"candidates\":%d,\"good\":%zu,"
				 "\"observations\":%zu}", why.score, TPE_N_CANDIDATES, why.n_good,
				 why.n_obs);
	} else if (why.adaptive) {
		if (why.random)
			snprintf(sug, sizeof sug, "{\"method\":\"bayes\",\"space_filling\":true}");
		else
			snprintf(sug, sizeof sug, "{\"method\":\"bayes\",\"space_filling\":false,"
				 "\"predicted\":%.17g,\"sd\":%.17g,\"expected_improvement\":%.17g,"
				 "\"observations\":%zu}", why.mean, why.sd, why.ei, why.n_obs);
	}
	struct store_sweep_point sp = {
		.sweep_key = (char *)sweep_ctl_key(ctl),
		.experiment = (char *)experiment,
		.run = out->id,
		.params_json = (char *)pt->params_json,
		.suggestion_json = sug[0] ? sug : NULL,
		.sweep_index = (int64_t)pt->index,
	};
	return store_sweep_point_put(s, &sp, d);
}

/* Computes the run id of a handed-out point and records the point. */
static int prepare_point(struct sweep_exec *X, struct live *L, const struct sweep_point *pt,
			 struct diag *d)
{
	memset(L, 0, sizeof *L);
	L->pt = pt;
	L->fd = -1;
	return run_sweep_point(&L->rp, X->s, X->ctl, X->experiment, pt, X->opt->backend_type, d);
}

static void watch_init(struct watch *w, const struct sweep_exec *X, size_t index)
{
	memset(w, 0, sizeof *w);
	snprintf(w->split, sizeof w->split, "%s", X->split);
	snprintf(w->name, sizeof w->name, "%s", X->name);
	w->index = index;
	w->sweep_key = sweep_ctl_key(X->ctl);
	w->fd = -1;
}

/* Claims and runs one point in this process (with `s`); wt NULL: no early termination. */
static int claim_and_run(struct store *s, const struct sweep_exec *X, const struct run_point *pt,
			 struct progress *prog, struct watch *wt, enum store_claim *out,
			 struct diag *d)
{
	const struct run_options *opt = X->opt;
	const struct provenance *prov = X->prov;
	char *abs = realpath(X->workspace, NULL);
	char *abs_dir = abs ? path_join(abs, "runs") : NULL;
	char *abs_run = abs_dir ? path_join(abs_dir, pt->id) : NULL;
	struct store_run_spec spec = {
		.id = pt->id,
		.experiment = X->experiment,
		.sweep_index = (int64_t)pt->index,
		.params_json = pt->params_json,
		.config_json = pt->cfg->canonical_json,
		.identity = pt->identity,
		.backend = backend_name(opt->backend),
		.device = opt->device ? opt->device : backend_name(opt->backend),
		.threads = run_threads(pt->cfg),
		.seed = (int64_t)pt->cfg->seed,
		.run_dir = abs_run,
		.git_commit = prov && prov->is_repo ? prov->commit : NULL,
		.git_dirty = prov && prov->is_repo && prov->dirty,
	};
	char token[STORE_TOKEN_SIZE];
	int r = abs_run ? store_run_claim(s, out, token, X->invocation, &spec,
					  (opt->force ? STORE_FLAG_FORCE : 0) |
						  (opt->resume ? STORE_FLAG_RESUME : 0),
					  d)
			: diag_set(d, FT_EIO, "", 0, 0, "cannot resolve workspace %s", X->workspace);
	free(abs);
	free(abs_dir);
	free(abs_run);
	if (r)
		return r;
	if (*out == STORE_CLAIM_CACHED) {
		if (opt->verbosity > 0 || !opt->tty)
			progress_line(prog, pt->id, "cached", pt->params_json);
		return 0;
	}
	if (*out == STORE_CLAIM_BUSY) {
		if (opt->verbosity >= 0)
			progress_line(prog, pt->id, "running elsewhere", "left to that process");
		return 0;
	}
	if (*out == STORE_CLAIM_DONE)
		return 0;
	return run_one(s, X->workspace, X->invocation, pt, token, *out == STORE_CLAIM_RESUME, opt,
		       prov, prog, wt, d);
}

static bool only_matches(const char *only, const char *id)
{
	return !only || strncmp(id, only, strlen(only)) == 0;
}

/* A worker: claims and runs one point, asking the parent over fd about early stops. */
static void worker_main(struct sweep_exec *X, struct live *L, int fd)
{
	struct store *cs = NULL;
	struct diag cd;
	diag_init(&cd);
	int cr = store_open(&cs, X->workspace, false, &cd);
	struct progress prog = {.opt = X->opt, .total = sweep_ctl_budget(X->ctl)};
	struct watch w;
	watch_init(&w, X, L->rp.index);
	w.fd = fd;
	enum store_claim c = STORE_CLAIM_BUSY;
	if (!cr)
		cr = claim_and_run(cs, X, &L->rp, &prog, X->split[0] ? &w : NULL, &c, &cd);
	if (cr && cr != FT_EINTR)
		diag_print(&cd, stderr);
	watch_free(&w);
	store_close(cs);
	fflush(NULL);
	_exit(cr == 0 ? (run_stop_flag ? 130 : 0) : cr == FT_EINTR ? 130 : 3);
}

/* Handles the complete lines a worker sent: records values, answers decisions. */
static int serve_worker(struct sweep_exec *X, struct live *L, struct diag *d)
{
	for (;;) {
		char *nl = memchr(L->buf, '\n', L->len);
		if (!nl)
			return 0;
		*nl = '\0';
		char kind = L->buf[0], *end, *vend;
		long long step = strtoll(L->buf + 1, &end, 10);
		double value = strtod(end, &vend);
		if ((kind == 'M' || kind == 'R') && end != L->buf + 1 && vend != end) {
			if (watch_put(&L->watch, step, value) != 0)
				return diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
			if (kind == 'M') {
				struct sweep_verdict v;
				int r = sweep_ctl_observe(X->ctl, &v, L->rp.index, L->watch.values,
							  L->watch.n, true, d);
				if (r)
					return r;
				char reply[160];
				int k = v.stop ? snprintf(reply, sizeof reply, "S %lld %.17g %.17g %zu\n",
							  (long long)v.band, v.threshold, v.value,
							  v.n_at_band)
					       : snprintf(reply, sizeof reply, "C\n");
				(void)write_all(L->fd, reply, (size_t)k);
			}
		}
		size_t used = (size_t)(nl - L->buf) + 1;
		memmove(L->buf, L->buf + used, L->len - used);
		L->len -= used;
	}
}

static int sweep_parallel(struct sweep_exec *X, const char *only, int jobs, struct diag *d)
{
	struct live *lv = calloc((size_t)jobs, sizeof *lv);
	if (!lv)
		return diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
	int active = 0, bad = 0, r = 0;
	bool more = true, forwarded = false;
	fflush(NULL);
	while (!r && (active > 0 || (more && !run_stop_flag))) {
		/* Fill the free slots. */
		for (int j = 0; j < jobs && more && !run_stop_flag && !r; j++) {
			if (lv[j].pid > 0)
				continue;
			const struct sweep_point *pt = NULL;
			if ((r = sweep_ctl_next(X->ctl, &pt, d)) != 0)
				break;
			if (!pt) {
				more = false;
				break;
			}
			struct live *L = &lv[j];
			if ((r = prepare_point(X, L, pt, d)) != 0)
				break;
			watch_init(&L->watch, X, pt->index);
			if (!only_matches(only, L->rp.id)) {
				r = feed_recorded(X, pt->index, L->rp.id, d);
				continue;
			}
			X->handed++;
			int sv[2];
			if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
				r = diag_set(d, FT_EIO, "", 0, 0, "socketpair: %s", strerror(errno));
				break;
			}
			fflush(NULL);
			pid_t pid = fork();
			if (pid < 0) {
				close(sv[0]);
				close(sv[1]);
				r = diag_set(d, FT_EIO, "", 0, 0, "fork: %s", strerror(errno));
				break;
			}
			if (pid == 0) {
				close(sv[0]);
				worker_main(X, L, sv[1]);
			}
			close(sv[1]);
			L->pid = pid;
			L->fd = sv[0];
			active++;
		}
		if (run_stop_flag && !forwarded) {
			forwarded = true;
			for (int j = 0; j < jobs; j++)
				if (lv[j].pid > 0)
					kill(lv[j].pid, SIGTERM);
		}
		if (r || active == 0)
			continue;
		/* Serve the workers' questions; notice the ones that ended. */
		struct pollfd pfd[256];
		int map[256], np = 0;
		for (int j = 0; j < jobs && np < 256; j++)
			if (lv[j].pid > 0 && lv[j].fd >= 0) {
				pfd[np] = (struct pollfd){.fd = lv[j].fd, .events = POLLIN};
				map[np++] = j;
			}
		int pr = poll(pfd, (nfds_t)np, 100);
		for (int k = 0; pr > 0 && k < np && !r; k++) {
			if (!(pfd[k].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			struct live *L = &lv[map[k]];
			ssize_t got = read(L->fd, L->buf + L->len, sizeof L->buf - 1 - L->len);
			if (got > 0) {
				L->len += (size_t)got;
				r = serve_worker(X, L, d);
				if (L->len == sizeof L->buf - 1)
					L->len = 0; /* an over-long line: drop it */
			} else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
				close(L->fd);
				L->fd = -1;
			}
		}
		for (int j = 0; j < jobs && !r; j++) {
			struct live *L = &lv[j];
			int status;
			if (L->pid <= 0 || waitpid(L->pid, &status, WNOHANG) != L->pid)
				continue;
			if (!WIFEXITED(status) || (WEXITSTATUS(status) != 0 && WEXITSTATUS(status) != 130))
				bad++;
			if (L->fd >= 0)
				close(L->fd);
			L->fd = -1;
			L->pid = 0;
			active--;
			r = feed_recorded(X, L->rp.index, L->rp.id, d);
			watch_free(&L->watch);
		}
	}
	/* An error: stop and reap every worker still running. */
	for (int j = 0; j < jobs; j++) {
		struct live *L = &lv[j];
		if (L->pid > 0) {
			kill(L->pid, SIGTERM);
			int status;
			while (waitpid(L->pid, &status, 0) < 0 && errno == EINTR)
				;
		}
		if (L->fd >= 0)
			close(L->fd);
		watch_free(&L->watch);
	}
	free(lv);
	if (!r && bad)
		r = diag_set(d, FT_ESTORE, "", 0, 0, "%d worker process%s failed", bad,
			     bad == 1 ? "" : "es");
	return r;
}

static int sweep_serial(struct sweep_exec *X, const char *only, struct diag *d)
{
	struct progress prog = {.opt = X->opt, .total = sweep_ctl_budget(X->ctl)};
	int r = 0;
	while (!r && !run_stop_flag) {
		const struct sweep_point *pt = NULL;
		if ((r = sweep_ctl_next(X->ctl, &pt, d)) != 0 || !pt)
			break;
		struct live L;
		if ((r = prepare_point(X, &L, pt, d)) != 0)
			break;
		if (!only_matches(only, L.rp.id)) {
			r = feed_recorded(X, pt->index, L.rp.id, d);
			continue;
		}
		X->handed++;
		struct watch w;
		watch_init(&w, X, pt->index);
		w.ctl = X->ctl;
		enum store_claim c = STORE_CLAIM_BUSY;
		r = claim_and_run(X->s, X, &L.rp, &prog, X->split[0] ? &w : NULL, &c, d);
		watch_free(&w);
		if (!r)
			r = feed_recorded(X, pt->index, L.rp.id, d);
		if (c != STORE_CLAIM_BUSY && c != STORE_CLAIM_DONE)
			prog.done++;
	}
	progress_clear(&prog);
	return r;
}

int run_execute_sweep(struct run_summary *out, const char *workspace, int64_t invocation,
		      const char *experiment, struct sweep_ctl *ctl, const char *only,
		      const struct run_options *opt, const struct provenance *prov,
		      struct diag *d)
{
	memset(out, 0, sizeof *out);
	struct sweep_exec X = {.workspace = workspace, .experiment = experiment,
			       .invocation = invocation, .ctl = ctl, .opt = opt, .prov = prov};
	split_metric(X.split, sizeof X.split, X.name, sizeof X.name, sweep_ctl_stop_metric(ctl));
	X.objective = sweep_ctl_objective(ctl, &X.maximize);
	char *runs_dir = path_join(workspace, "runs");
	if (!runs_dir)
		return diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
	int r = dir_make_all(runs_dir, d);
	free(runs_dir);
	if (!r)
		r = store_open(&X.s, workspace, false, d);
	if (r)
		return r;
	if (sweep_ctl_adaptive(ctl))
		r = run_sweep_restore(X.s, ctl, d);
	int jobs = opt->jobs > 1 ? opt->jobs : 1;
	if (jobs > 256)
		jobs = 256;
	if (!r)
		r = jobs <= 1 ? sweep_serial(&X, only, d) : sweep_parallel(&X, only, jobs, d);
	if (!r && run_stop_flag)
		r = FT_EINTR;
	struct diag sd;
	diag_init(&sd);
	if (summarise(out, X.s, invocation, X.handed, &sd) != 0 && !r)
		r = diag_set(d, sd.code, "", 0, 0, "%s", sd.text);
	out->interrupted = run_stop_flag != 0;
	store_close(X.s);
	return r;
}
