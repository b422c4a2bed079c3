/* exec backend: runs backend.command as an argv (posix_spawn, no shell) in its own process
 * group, feeds FTLAB_RUN_ID/FTLAB_RUN_DIR/FTLAB_CONFIG, parses the JSON Lines protocol from
 * stdout (or backend.metrics_file) into the run sink, enforces backend.timeout and the stop
 * flag, and scores predictions for eval.metrics the trainer did not report. */
#include "backends/exec/exec.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "backends/backend.h"
#include "scoring/metrics.h"
#include "common/util.h"
#include "common/banned.h"

extern char **environ;

#define LINE_MAX_BYTES (1u << 20)
#define STOP_GRACE_S 10.0
#define TIMEOUT_GRACE_S 2.0

/* The trainer's process group, for the async-signal-safe kill. */
static volatile sig_atomic_t child_pgid;

void backend_kill_children(void)
{
	pid_t pg = (pid_t)child_pgid;
	if (pg > 0)
		kill(-pg, SIGKILL);
}

/* ---- placeholders ---- */

static int format_json_value(struct strbuf *sb, const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_STRING:
		return strbuf_append(sb, json_string_value(v), json_string_length(v));
	case JSON_INTEGER:
		return strbuf_printf(sb, "%lld", (long long)json_integer_value(v));
	case JSON_REAL: {
		char buf[64];
		fmt_shortest(buf, sizeof buf, json_real_value(v));
		return strbuf_puts(sb, buf);
	}
	case JSON_TRUE:
		return strbuf_puts(sb, "true");
	case JSON_FALSE:
		return strbuf_puts(sb, "false");
	case JSON_NULL:
		return 0;
	default: {
		char *s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
		if (!s)
			return FT_ENOMEM;
		int r = strbuf_puts(sb, s);
		free(s);
		return r;
	}
	}
}

static const json_t *lookup_dotted(const json_t *root, const char *path, size_t len)
{
	const json_t *cur = root;
	size_t i = 0;
	while (i <= len && cur) {
		size_t j = i;
		while (j < len && path[j] != '.')
			j++;
		char key[256];
		if (j - i == 0 || j - i >= sizeof key)
			return NULL;
		memcpy(key, path + i, j - i);
		key[j - i] = '\0';
		if (json_is_object(cur)) {
			cur = json_object_get(cur, key);
		} else if (json_is_array(cur)) {
			int64_t idx;
			if (!parse_i64(key, &idx) || idx < 0)
				return NULL;
			cur = json_array_get(cur, (size_t)idx);
		} else {
			return NULL;
		}
		i = j + 1;
	}
	return cur;
}

static int substitute_with(char **out, const char *arg, const json_t *root, struct diag *d)
{
	struct strbuf sb = {0};
	int r = 0;
	*out = NULL;
	for (const char *p = arg; *p && !r;) {
		if (p[0] == '{' && p[1] == '{') {
			r = strbuf_puts(&sb, "{");
			p += 2;
		} else if (p[0] == '}' && p[1] == '}') {
			r = strbuf_puts(&sb, "}");
			p += 2;
		} else if (p[0] == '{') {
			const char *end = strchr(p, '}');
			if (!end) {
				r = diag_set(d, FT_EINVAL, "", 0, 0,
					     "backend.command: unclosed '{' in argument '%s'", arg);
				diag_hint(d, "write '{{' for a literal brace");
				break;
			}
			const json_t *v = lookup_dotted(root, p + 1, (size_t)(end - p - 1));
			if (!v) {
				r = diag_set(d, FT_EINVAL, "", 0, 0,
					     "backend.command: placeholder '%.*s' names no key of the "
					     "resolved config",
					     (int)(end - p + 1), p);
				diag_hint(d, "placeholders are dotted paths such as {train.optimizer.lr}");
				break;
			}
			r = format_json_value(&sb, v);
			p = end + 1;
		} else {
			r = strbuf_append(&sb, p, 1);
			p++;
		}
	}
	if (r) {
		strbuf_free(&sb);
		if (r == FT_ENOMEM)
			diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory substituting placeholders");
		return d && d->code ? d->code : r;
	}
	*out = strbuf_detach(&sb);
	return 0;
}

int exec_substitute(char **out, const char *arg, const char *config_json, struct diag *d)
{
	json_error_t je;
	json_t *root = json_loads(config_json ? config_json : "{}", 0, &je);
	if (!root)
		return diag_set(d, FT_EINTERNAL, "", 0, 0, "resolved config is not JSON: %s", je.text);
	int r = substitute_with(out, arg, root, d);
	json_decref(root);
	return r;
}

/* ---- protocol parsing ---- */

/* Predictions kept to score metrics the trainer does not report. */
struct kept_pred {
	char *model, *split, *reference, *output;
};

struct reported {
	char *model, *split, *metric;
};

struct exec_state {
	const struct run_ctx *ctx;
	FILE *log;
	struct kept_pred *preds;
	size_t n_preds, cap_preds;
	struct reported *rep;
	size_t n_rep, cap_rep;
	bool warned_unknown;
	int sink_err;
};

static void log_line(struct exec_state *st, const char *line, size_t n)
{
	if (st->log) {
		fwrite(line, 1, n, st->log);
		fputc('\n', st->log);
		fflush(st->log);
	}
}

static void sink_check(struct exec_state *st, int r)
{
	if (r && !st->sink_err)
		st->sink_err = r;
}

static const char *str_or(const json_t *o, const char *key, const char *dflt)
{
	const json_t *v = json_object_get(o, key);
	return json_is_string(v) ? json_string_value(v) : dflt;
}

static void keep_reported(struct exec_state *st, const char *model, const char *split,
			  const char *metric)
{
	if (st->n_rep == st->cap_rep) {
		size_t cap = st->cap_rep ? st->cap_rep * 2 : 16;
		struct reported *g = realloc(st->rep, cap * sizeof *g);
		if (!g)
			return;
		st->rep = g;
		st->cap_rep = cap;
	}
	struct reported *e = &st->rep[st->n_rep];
	e->model = ft_strdup(model);
	e->split = ft_strdup(split);
	e->metric = ft_strdup(metric);
	if (e->model && e->split && e->metric)
		st->n_rep++;
	else {
		free(e->model);
		free(e->split);
		free(e->metric);
	}
}

static void keep_pred(struct exec_state *st, const char *model, const char *split,
		      const char *reference, const char *output)
{
	if (st->n_preds == st->cap_preds) {
		size_t cap = st->cap_preds ? st->cap_preds * 2 : 64;
		struct kept_pred *g = realloc(st->preds, cap * sizeof *g);
		if (!g)
			return;
		st->preds = g;
		st->cap_preds = cap;
	}
	struct kept_pred *e = &st->preds[st->n_preds];
	e->model = ft_strdup(model);
	e->split = ft_strdup(split);
	e->reference = ft_strdup(reference ? reference : "");
	e->output = ft_strdup(output ? output : "");
	if (e->model && e->split && e->reference && e->output) {
		st->n_preds++;
	} else {
		free(e->model);
		free(e->split);
		free(e->reference);
		free(e->output);
	}
}

static bool is_number(const json_t *v)
{
	return json_is_integer(v) || json_is_real(v);
}

/* Returns true when the line was a protocol record. */
static bool handle_json(struct exec_state *st, const json_t *o)
{
	struct run_sink *sink = st->ctx->sink;
	const json_t *metric = json_object_get(o, "metric");
	const json_t *example = json_object_get(o, "example");
	const json_t *step = json_object_get(o, "step");
	if (json_is_string(metric) && is_number(json_object_get(o, "value"))) {
		const char *model = str_or(o, "model", "tuned");
		const char *split = str_or(o, "split", "test");
		if (strcmp(model, "base") != 0 && strcmp(model, "tuned") != 0 &&
		    strcmp(model, "delta") != 0)
			return false;
		const json_t *lo = json_object_get(o, "ci_low"), *hi = json_object_get(o, "ci_high");
		sink_check(st, sink->result(sink->ud, model, split, json_string_value(metric),
					    json_number_value(json_object_get(o, "value")),
					    is_number(lo) ? json_number_value(lo) : NAN,
					    is_number(hi) ? json_number_value(hi) : NAN));
		keep_reported(st, model, split, json_string_value(metric));
		return true;
	}
	if (json_is_integer(example)) {
		const char *model = str_or(o, "model", "tuned");
		const char *split = str_or(o, "split", "test");
		const char *ref = str_or(o, "reference", NULL);
		const char *outp = str_or(o, "output", NULL);
		const json_t *score = json_object_get(o, "score");
		sink_check(st, sink->prediction(sink->ud, model, split, json_integer_value(example),
						str_or(o, "prompt", NULL), ref, outp,
						is_number(score) ? json_number_value(score) : NAN));
		keep_pred(st, model, split, ref, outp);
		return true;
	}
	if (is_number(step)) {
		int64_t s = (int64_t)json_number_value(step);
		const char *split = str_or(o, "split", "train");
		const json_t *total = json_object_get(o, "total_steps");
		double loss = NAN;
		const char *key;
		const json_t *v;
		json_object_foreach((json_t *)o, key, v)
		{
			if (!is_number(v) || strcmp(key, "step") == 0 || strcmp(key, "total_steps") == 0)
				continue;
			double x = json_number_value(v);
			sink_check(st, sink->metric(sink->ud, split, key, s, x));
			if (strcmp(key, "loss") == 0)
				loss = x;
		}
		if (sink->progress)
			sink->progress(sink->ud, s, json_is_integer(total) ? json_integer_value(total) : 0,
				       loss);
		return true;
	}
	return false;
}

static void handle_line(struct exec_state *st, char *line, size_t n, bool log_only)
{
	while (n && (line[n - 1] == '\r' || line[n - 1] == '\n'))
		line[--n] = '\0';
	size_t k = 0;
	while (k < n && (line[k] == ' ' || line[k] == '\t'))
		k++;
	if (!log_only && k < n && line[k] == '{') {
		json_error_t je;
		json_t *o = json_loadb(line + k, n - k, 0, &je);
		bool ok = json_is_object(o) && handle_json(st, o); /* json_is_object(NULL) is false */
		json_decref(o);
		if (ok)
			return;
		if (!st->warned_unknown) {
			st->warned_unknown = true;
			char msg[200];
			snprintf(msg, sizeof msg,
				 "a JSON line matched no protocol record and was kept in the log: %.120s",
				 line + k);
			sink_check(st, st->ctx->sink->event(st->ctx->sink->ud, "warning", "protocol",
							     msg));
		}
	}
	log_line(st, line, n);
}

/* Splits buffered bytes into lines; keeps the unfinished tail in buf. */
struct linebuf {
	char *buf;
	size_t len, cap;
	bool overlong; /* dropping the rest of a line longer than LINE_MAX_BYTES */
};

static void feed(struct exec_state *st, struct linebuf *lb, const char *data, size_t n,
		 bool log_only)
{
	for (size_t i = 0; i < n; i++) {
		char c = data[i];
		if (c == '\n') {
			if (!lb->overlong) {
				if (lb->len + 1 > lb->cap) {
					size_t cap = lb->cap ? lb->cap * 2 : 4096;
					char *g = realloc(lb->buf, cap);
					if (!g)
						return;
					lb->buf = g;
					lb->cap = cap;
				}
				lb->buf[lb->len] = '\0';
				handle_line(st, lb->buf, lb->len, log_only);
			}
			lb->len = 0;
			lb->overlong = false;
			continue;
		}
		if (lb->overlong)
			continue;
		if (lb->len + 2 > lb->cap) {
			size_t cap = lb->cap ? lb->cap * 2 : 4096;
			char *g = realloc(lb->buf, cap);
			if (!g)
				return;
			lb->buf = g;
			lb->cap = cap;
		}
		lb->buf[lb->len++] = c;
		if (lb->len >= LINE_MAX_BYTES) {
			lb->buf[lb->len] = '\0';
			log_line(st, lb->buf, lb->len);
			sink_check(st, st->ctx->sink->event(st->ctx->sink->ud, "warning", "long-line",
							     "an output line over 1 MiB was cut"));
			lb->len = 0;
			lb->overlong = true;
		}
	}
}

static void flush_tail(struct exec_state *st, struct linebuf *lb, bool log_only)
{
	if (lb->len && !lb->overlong) {
		static const char nl = '\n';
		feed(st, lb, &nl, 1, log_only);
	}
}

/* ---- scoring predictions the trainer did not score ---- */

static bool was_reported(const struct exec_state *st, const char *model, const char *split,
			 const char *metric)
{
	for (size_t i = 0; i < st->n_rep; i++)
		if (strcmp(st->rep[i].model, model) == 0 && strcmp(st->rep[i].split, split) == 0 &&
		    strcmp(st->rep[i].metric, metric) == 0)
			return true;
	return false;
}

/* Computes a metric named in eval.metrics over one (model, split) group of predictions
 * with the shared metric library (scoring/metrics.h), so exec and native runs
 * are scored by the same code: corpus value from summed sufficient statistics. Returns
 * false when the name is not a text metric (loss, perplexity need the model). */
static bool score_group(const struct exec_state *st, size_t first, const char *metric,
			double *out, size_t *out_count)
{
	int kind = metric_from_name(metric);
	if (kind < 0)
		return false;
	size_t dim = metric_stats_dim((enum metric_kind)kind);
	double sum[METRIC_STATS_MAX] = {0}, one[METRIC_STATS_MAX];
	size_t count = 0;
	const char *model = st->preds[first].model, *split = st->preds[first].split;
	for (size_t j = first; j < st->n_preds; j++) {
		if (strcmp(st->preds[j].model, model) != 0 || strcmp(st->preds[j].split, split) != 0)
			continue;
		if (metric_pair_stats(one, (enum metric_kind)kind, st->preds[j].output,
				      st->preds[j].reference) != 0)
			return false;
		for (size_t k = 0; k < dim; k++)
			sum[k] += one[k];
		count++;
	}
	if (count == 0)
		return false;
	*out = metric_from_stats((enum metric_kind)kind, sum, count);
	*out_count = count;
	return true;
}

static void score_missing(struct exec_state *st)
{
	const struct strlist *metrics = &st->ctx->cfg->eval.metrics;
	struct run_sink *sink = st->ctx->sink;
	for (size_t i = 0; i < st->n_preds; i++) {
		const char *model = st->preds[i].model, *split = st->preds[i].split;
		/* Score each (model, split) group once, at its first prediction. */
		bool first = true;
		for (size_t j = 0; j < i && first; j++)
			if (strcmp(st->preds[j].model, model) == 0 &&
			    strcmp(st->preds[j].split, split) == 0)
				first = false;
		if (!first)
			continue;
		for (size_t m = 0; m < metrics->n; m++) {
			const char *name = metrics->items[m];
			double value;
			size_t count;
			if (was_reported(st, model, split, name) ||
			    !score_group(st, i, name, &value, &count))
				continue;
			sink_check(st, sink->result(sink->ud, model, split, name, value, NAN, NAN));
			char msg[160];
			snprintf(msg, sizeof msg, "%s.%s (%s) computed by ftlab from %zu predictions",
				 split, name, model, count);
			sink_check(st, sink->event(sink->ud, "info", "scored", msg));
		}
	}
}

static void exec_state_free(struct exec_state *st)
{
	for (size_t i = 0; i < st->n_preds; i++) {
		free(st->preds[i].model);
		free(st->preds[i].split);
		free(st->preds[i].reference);
		free(st->preds[i].output);
	}
	free(st->preds);
	for (size_t i = 0; i < st->n_rep; i++) {
		free(st->rep[i].model);
		free(st->rep[i].split);
		free(st->rep[i].metric);
	}
	free(st->rep);
	if (st->log)
		fclose(st->log);
}

int exec_parse_output(const struct run_ctx *ctx, const char *data, size_t n, FILE *log)
{
	struct exec_state st = {.ctx = ctx, .log = log};
	struct linebuf lb = {0};
	feed(&st, &lb, data, n, false);
	flush_tail(&st, &lb, false);
	score_missing(&st);
	free(lb.buf);
	st.log = NULL; /* the caller's */
	int r = st.sink_err;
	exec_state_free(&st);
	return r;
}

/* ---- the child ---- */

static char **build_env(const struct run_ctx *ctx, const char *config_path)
{
	size_t n = 0;
	while (environ[n])
		n++;
	char **env = calloc(n + 8, sizeof *env);
	if (!env)
		return NULL;
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], "FTLAB_", 6) != 0)
			env[k++] = environ[i];
	struct strbuf b[5] = {{0}};
	int r = strbuf_printf(&b[0], "FTLAB_RUN_ID=%s", ctx->run_id);
	r |= strbuf_printf(&b[1], "FTLAB_RUN_DIR=%s", ctx->run_dir);
	r |= strbuf_printf(&b[2], "FTLAB_CONFIG=%s", config_path);
	r |= strbuf_printf(&b[3], "FTLAB_RESUME=%d", ctx->resume ? 1 : 0);
	r |= strbuf_printf(&b[4], "FTLAB_THREADS=%d", ctx->threads);
	for (int i = 0; i < 5; i++)
		env[k++] = strbuf_detach(&b[i]);
	env[k] = NULL;
	if (r) {
		for (int i = 0; i < 5; i++)
			free(env[k - 5 + (size_t)i]);
		free(env);
		return NULL;
	}
	return env;
}

static void free_env(char **env)
{
	if (!env)
		return;
	size_t n = 0;
	while (env[n])
		n++;
	for (size_t i = n >= 5 ? n - 5 : 0; i < n; i++)
		free(env[i]);
	free(env);
}

/* Sends sig to the group, waits up to grace seconds for the child, then SIGKILLs. A child
 * that cannot be waited for (ECHILD) leaves *status as it was. */
static int stop_child(pid_t pid, int sig, double grace, int *status)
{
	kill(-pid, sig);
	double t0 = time_monotonic();
	while (time_monotonic() - t0 < grace) {
		pid_t w = waitpid(pid, status, WNOHANG);
		if (w == pid || (w < 0 && errno != EINTR))
			goto reap_group;
		usleep(20000);
	}
	kill(-pid, SIGKILL);
	while (waitpid(pid, status, 0) < 0 && errno == EINTR)
		;
reap_group:
	/* Whatever the trainer started in its group goes too. */
	kill(-pid, SIGKILL);
	return 0;
}

static int exec_run(const struct run_ctx *ctx, struct diag *d)
{
	const struct config *cfg = ctx->cfg;
	const struct config_backend *be = &cfg->backend;
	struct exec_state st = {.ctx = ctx};
	char **argv = NULL, **env = NULL;
	char *config_path = NULL, *stderr_path = NULL, *log_path = NULL, *mfile = NULL;
	json_t *root = NULL;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	bool fa_init = false, attr_init = false;
	int out_pipe[2] = {-1, -1};
	int mfd = -1;
	pid_t pid = -1;
	int r = 0;
	struct linebuf lb_out = {0}, lb_m = {0};

	if (be->command.n == 0) {
		return diag_set(d, FT_EINVAL, cfg->source_path, 0, 0,
				"backend.type is exec but backend.command is empty");
	}
	json_error_t je;
	root = json_loads(cfg->canonical_json ? cfg->canonical_json : "{}", 0, &je);
	if (!root) {
		r = diag_set(d, FT_EINTERNAL, "", 0, 0, "resolved config is not JSON: %s", je.text);
		goto done;
	}
	argv = calloc(be->command.n + 1, sizeof *argv);
	if (!argv) {
		r = diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
		goto done;
	}
	for (size_t i = 0; i < be->command.n; i++) {
		r = substitute_with(&argv[i], be->command.items[i], root, d);
		if (r)
			goto done;
	}
	config_path = path_join(ctx->run_dir, "config.json");
	stderr_path = path_join(ctx->run_dir, "stderr.txt");
	log_path = path_join(ctx->run_dir, "log.txt");
	if (!config_path || !stderr_path || !log_path) {
		r = diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
		goto done;
	}
	if (!path_exists(config_path)) {
		const char *cj = cfg->canonical_json ? cfg->canonical_json : "{}";
		r = file_write_atomic(config_path, cj, strlen(cj), d);
		if (r)
			goto done;
	}
	st.log = fopen(log_path, "a");
	env = build_env(ctx, config_path);
	if (!env) {
		r = diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
		goto done;
	}
	if (pipe2(out_pipe, O_CLOEXEC) != 0) {
		r = diag_set(d, FT_EIO, "", 0, 0, "pipe: %s", strerror(errno));
		goto done;
	}
	if (be->metrics_file) {
		mfile = be->metrics_file[0] == '/' ? ft_strdup(be->metrics_file)
						   : path_join(ctx->run_dir, be->metrics_file);
		if (!mfile) {
			r = diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
			goto done;
		}
		/* Start from an empty file so an earlier attempt's lines are not read again. */
		mfd = open(mfile, O_RDONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (mfd < 0) {
			r = diag_set(d, FT_EIO, "", 0, 0, "cannot create backend.metrics_file %s: %s",
				     mfile, strerror(errno));
			goto done;
		}
	}
	posix_spawn_file_actions_init(&fa);
	fa_init = true;
	posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, out_pipe[1], STDOUT_FILENO);
	posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, stderr_path,
					 O_WRONLY | O_CREAT | O_APPEND, 0644);
	if (be->workdir)
		posix_spawn_file_actions_addchdir_np(&fa, be->workdir);
	posix_spawnattr_init(&attr);
	attr_init = true;
	sigset_t defs, none;
	sigemptyset(&defs);
	sigaddset(&defs, SIGINT);
	sigaddset(&defs, SIGTERM);
	sigaddset(&defs, SIGPIPE);
	sigaddset(&defs, SIGHUP);
	sigemptyset(&none);
	posix_spawnattr_setsigdefault(&attr, &defs);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setpgroup(&attr, 0);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF |
						POSIX_SPAWN_SETSIGMASK);
	int se = posix_spawnp(&pid, argv[0], &fa, &attr, argv, env);
	if (se != 0) {
		pid = -1;
		r = diag_set(d, FT_ERUN, "", 0, 0, "cannot start '%s': %s", argv[0], strerror(se));
		if (se == ENOENT)
			diag_hint(d, "backend.command[0] must be a program on PATH or a path");
		goto done;
	}
	child_pgid = pid;
	close(out_pipe[1]);
	out_pipe[1] = -1;

	double t0 = time_monotonic();
	bool open_out = true, timed_out = false, stopped = false;
	int status = 0;
	bool exited = false;
	int wait_errno = 0; /* waitpid failed: no exit status to read */
	char buf[65536];
	while (!exited) {
		if (ctx->stop && *ctx->stop) {
			stopped = true;
			stop_child(pid, SIGTERM, STOP_GRACE_S, &status);
			break;
		}
		if (be->timeout_s > 0 && time_monotonic() - t0 > be->timeout_s) {
			timed_out = true;
			stop_child(pid, SIGTERM, TIMEOUT_GRACE_S, &status);
			break;
		}
		if (open_out) {
			struct pollfd pfd = {.fd = out_pipe[0], .events = POLLIN};
			int pr = poll(&pfd, 1, 100);
			if (pr > 0) {
				ssize_t got = read(out_pipe[0], buf, sizeof buf);
				if (got > 0)
					feed(&st, &lb_out, buf, (size_t)got, be->metrics_file != NULL);
				else if (got == 0 || (errno != EINTR && errno != EAGAIN))
					open_out = false;
			}
		} else {
			usleep(50000);
		}
		if (mfd >= 0) {
			ssize_t got;
			while ((got = read(mfd, buf, sizeof buf)) > 0)
				feed(&st, &lb_m, buf, (size_t)got, false);
		}
		pid_t w = waitpid(pid, &status, WNOHANG);
		if (w == pid) {
			exited = true;
			kill(-pid, SIGKILL); /* leftovers of the group */
		} else if (w < 0 && errno != EINTR) {
			/* ECHILD: the child was reaped elsewhere (SIGCHLD ignored by whoever
			 * started this process): its exit status is lost for good. */
			wait_errno = errno;
			exited = true;
			kill(-pid, SIGKILL);
		}
	}
	child_pgid = 0;
	/* Drain what is left in the pipe and the metrics file. */
	if (open_out) {
		int fl = fcntl(out_pipe[0], F_GETFL);
		fcntl(out_pipe[0], F_SETFL, fl | O_NONBLOCK);
		ssize_t got;
		while ((got = read(out_pipe[0], buf, sizeof buf)) > 0)
			feed(&st, &lb_out, buf, (size_t)got, be->metrics_file != NULL);
	}
	flush_tail(&st, &lb_out, be->metrics_file != NULL);
	if (mfd >= 0) {
		ssize_t got;
		while ((got = read(mfd, buf, sizeof buf)) > 0)
			feed(&st, &lb_m, buf, (size_t)got, false);
		flush_tail(&st, &lb_m, false);
	}
	pid = -1;
	if (stopped) {
		r = diag_set(d, FT_EINTR, "", 0, 0, "stopped by a signal");
		goto done;
	}
	if (timed_out) {
		char msg[128];
		snprintf(msg, sizeof msg, "backend.timeout of %gs reached: the trainer's process "
					  "group was killed", be->timeout_s);
		sink_check(&st, ctx->sink->event(ctx->sink->ud, "error", "timeout", msg));
		r = diag_set(d, FT_ERUN, "", 0, 0, "%s", msg);
		goto done;
	}
	if (wait_errno) {
		r = diag_set(d, FT_ERUN, "", 0, 0,
			     "cannot wait for trainer '%s': %s; its exit status is unknown",
			     argv[0], strerror(wait_errno));
		diag_hint(d, "SIGCHLD must not be ignored in the process that starts ftlab");
		goto done;
	}
	if (WIFSIGNALED(status)) {
		r = diag_set(d, FT_ERUN, "", 0, 0, "trainer '%s' was killed by signal %d (see %s)",
			     argv[0], WTERMSIG(status), stderr_path);
		goto done;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
		r = diag_set(d, FT_ERUN, "", 0, 0, "trainer '%s' exited with status %d (see %s)",
			     argv[0], WEXITSTATUS(status), stderr_path);
		goto done;
	}
	score_missing(&st);
	if (st.sink_err)
		r = diag_set(d, st.sink_err, "", 0, 0, "recording the trainer's output failed");
	if (!r)
		(void)ctx->sink->artifact(ctx->sink->ud, "stderr", "stderr.txt");
done:
	if (pid > 0) {
		int status2;
		stop_child(pid, SIGKILL, 0, &status2);
		child_pgid = 0;
	}
	if (out_pipe[0] >= 0)
		close(out_pipe[0]);
	if (out_pipe[1] >= 0)
		close(out_pipe[1]);
	if (mfd >= 0)
		close(mfd);
	if (fa_init)
		posix_spawn_file_actions_destroy(&fa);
	if (attr_init)
		posix_spawnattr_destroy(&attr);
	if (argv)
		for (size_t i = 0; i < be->command.n; i++)
			free(argv[i]);
	free(argv);
	free_env(env);
	free(config_path);
	free(stderr_path);
	free(log_path);
	free(mfile);
	free(lb_out.buf);
	free(lb_m.buf);
	json_decref(root);
	exec_state_free(&st);
	return r;
}

static bool exec_available(char *why, size_t why_len)
{
	if (why && why_len)
		why[0] = '\0';
	return true;
}

static const struct backend exec_backend = {
	.type = BACKEND_EXEC,
	.available = exec_available,
	.run = exec_run,
};

const struct backend *backend_exec(void)
{
	return &exec_backend;
}
