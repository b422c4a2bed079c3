/* slurm: sbatch/squeue/scancel/scontrol as child processes (no shell), the batch script of
 * a job array, the queue parser, and the meaning of Slurm's states and log lines for a
 * run. What to submit and when is the launcher's (launch_slurm.c). */
#include "runner/slurm.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "common/banned.h"

extern char **environ;

#define SLURM_CMD_TIMEOUT_S 120.0
#define SLURM_OUT_CAP (16u << 20)

/* ---- child processes ---- */

static int drain(int fd, struct strbuf *sb, bool *open_)
{
	char buf[65536];
	ssize_t k = read(fd, buf, sizeof buf);
	if (k > 0) {
		if (sb->len + (size_t)k <= SLURM_OUT_CAP && strbuf_append(sb, buf, (size_t)k))
			return FT_ENOMEM;
		return 0;
	}
	if (k == 0 || (errno != EINTR && errno != EAGAIN))
		*open_ = false;
	return 0;
}

int slurm_run(int *out_status, char **out_stdout, char **out_stderr, char *const *argv,
	      double timeout_s, struct diag *d)
{
	*out_status = -1;
	if (out_stdout)
		*out_stdout = NULL;
	if (out_stderr)
		*out_stderr = NULL;
	int po[2] = {-1, -1}, pe[2] = {-1, -1};
	struct strbuf so = {0}, se = {0};
	posix_spawn_file_actions_t fa;
	bool fa_on = false;
	pid_t pid = -1;
	int r = 0;
	if (pipe2(po, O_CLOEXEC) != 0 || pipe2(pe, O_CLOEXEC) != 0) {
		r = diag_set(d, FT_EIO, "", 0, 0, "pipe: %s", strerror(errno));
		goto done;
	}
	posix_spawn_file_actions_init(&fa);
	fa_on = true;
	posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, po[1], STDOUT_FILENO);
	posix_spawn_file_actions_adddup2(&fa, pe[1], STDERR_FILENO);
	int e = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
	close(po[1]);
	close(pe[1]);
	po[1] = pe[1] = -1;
	if (e != 0) {
		pid = -1;
		r = diag_set(d, FT_EIO, "", 0, 0, "cannot run %s: %s", argv[0], strerror(e));
		goto done;
	}
	bool oo = true, eo = true, timed_out = false;
	double t0 = time_monotonic();
	while (oo || eo) {
		struct pollfd p[2] = {{.fd = oo ? po[0] : -1, .events = POLLIN},
				      {.fd = eo ? pe[0] : -1, .events = POLLIN}};
		double left = timeout_s - (time_monotonic() - t0);
		if (left <= 0) {
			timed_out = true;
			kill(pid, SIGKILL);
			break;
		}
		int k = poll(p, 2, (int)(left * 1000) + 1);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			r = diag_set(d, FT_EIO, "", 0, 0, "poll: %s", strerror(errno));
			kill(pid, SIGKILL);
			break;
		}
		if (oo && (p[0].revents & (POLLIN | POLLHUP | POLLERR)) && drain(po[0], &so, &oo))
			r = diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory reading %s", argv[0]);
		if (eo && (p[1].revents & (POLLIN | POLLHUP | POLLERR)) && drain(pe[0], &se, &eo))
			r = diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory reading %s", argv[0]);
		if (r) {
			kill(pid, SIGKILL);
			break;
		}
	}
	int st = 0;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
	}
	pid = -1;
	if (!r) {
		if (timed_out)
			*out_status = 124;
		else if (WIFEXITED(st))
			*out_status = WEXITSTATUS(st);
		else
			*out_status = 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
		/* posix_spawnp may report a failed exec as exit status 127. */
		if (*out_status == 127 && !so.len && !se.len)
			r = diag_set(d, FT_EIO, "", 0, 0, "cannot run %s: not found", argv[0]);
	}
done:
	if (fa_on)
		posix_spawn_file_actions_destroy(&fa);
	for (int i = 0; i < 2; i++) {
		if (po[i] >= 0)
			close(po[i]);
		if (pe[i] >= 0)
			close(pe[i]);
	}
	if (!r && out_stdout)
		*out_stdout = strbuf_detach(&so);
	if (!r && out_stderr)
		*out_stderr = strbuf_detach(&se);
	strbuf_free(&so);
	strbuf_free(&se);
	return r;
}

/* The first line of a command's stderr, for messages. */
static void first_line(char *buf, size_t n, const char *text)
{
	const char *p = text ? text : "";
	while (*p == '\n' || *p == ' ')
		p++;
	size_t len = strcspn(p, "\n");
	snprintf(buf, n, "%.*s", (int)len, p);
}

/* ---- times and sizes ---- */

void slurm_format_time(char *buf, size_t n, double seconds)
{
	int64_t min = (int64_t)ceil(seconds / 60.0);
	if (min < 1)
		min = 1;
	snprintf(buf, n, "%lld-%02lld:%02lld:00", (long long)(min / 1440),
		 (long long)(min / 60 % 24), (long long)(min % 60));
}

/* ---- the script and the command line ---- */

/* 'text' for the shell: single quotes, each ' as '\''. */
static int sh_quote(struct strbuf *sb, const char *text)
{
	int r = strbuf_puts(sb, "'");
	for (const char *p = text; !r && *p; p++)
		r = *p == '\'' ? strbuf_puts(sb, "'\\''") : strbuf_append(sb, p, 1);
	return r ? r : strbuf_puts(sb, "'");
}

int slurm_script(char **out, const struct slurm_array *a, struct diag *d)
{
	*out = NULL;
	struct strbuf sb = {0};
	int r = strbuf_puts(&sb, "#!/bin/bash\n"
				 "# Written by ftlab: one array task runs one run of the experiment.\n"
				 "# sbatch options are on the command line recorded in manifest.json.\n");
	if (!r && a->n_setup)
		r = strbuf_puts(&sb, "# launcher.setup\n");
	for (size_t i = 0; !r && i < a->n_setup; i++)
		r = strbuf_printf(&sb, "%s\n", a->setup[i]);
	if (!r)
		r = strbuf_puts(&sb, "exec ");
	if (!r)
		r = sh_quote(&sb, a->ftlab_bin);
	if (!r)
		r = strbuf_puts(&sb, " --workspace ");
	if (!r)
		r = sh_quote(&sb, a->workspace);
	if (!r)
		r = strbuf_puts(&sb, " task ");
	if (!r)
		r = sh_quote(&sb, a->submission_dir);
	if (!r)
		r = strbuf_puts(&sb, " \"$SLURM_ARRAY_TASK_ID\"\n");
	if (r) {
		strbuf_free(&sb);
		return diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
	}
	*out = strbuf_detach(&sb);
	return 0;
}

void slurm_argv_free(char **argv)
{
	if (!argv)
		return;
	for (char **p = argv; *p; p++)
		free(*p);
	free(argv);
}

struct argv_b {
	char **v;
	size_t n, cap;
	bool oom;
};

static void argv_add(struct argv_b *b, const char *fmt, ...) FT_PRINTF(2, 3);
static void argv_add(struct argv_b *b, const char *fmt, ...)
{
	if (b->oom)
		return;
	if (b->n + 2 > b->cap) {
		size_t nc = b->cap ? b->cap * 2 : 32;
		char **nv = realloc(b->v, nc * sizeof *nv);
		if (!nv) {
			b->oom = true;
			return;
		}
		b->v = nv;
		b->cap = nc;
	}
	va_list ap;
	va_start(ap, fmt);
	char *s = NULL;
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	if (!s) {
		b->oom = true;
		return;
	}
	b->v[b->n++] = s;
	b->v[b->n] = NULL;
}

int slurm_sbatch_argv(char ***out, const struct slurm_array *a, const char *script_path,
		      struct diag *d)
{
	*out = NULL;
	struct argv_b b = {0};
	argv_add(&b, "sbatch");
	argv_add(&b, "--parsable");
	argv_add(&b, "--job-name=%s", a->job_name);
	if (a->array_parallelism > 0)
		argv_add(&b, "--array=0-%zu%%%d", a->n_tasks - 1, a->array_parallelism);
	else
		argv_add(&b, "--array=0-%zu", a->n_tasks - 1);
	argv_add(&b, "--output=%s", a->output);
	argv_add(&b, "--open-mode=append");
	/* Preemption and node failure put the task back in the queue; it resumes from its
	 * checkpoint. */
	argv_add(&b, "--requeue");
	if (a->warn_s > 0)
		argv_add(&b, "--signal=B:USR1@%d", a->warn_s);
	if (a->partition)
		argv_add(&b, "--partition=%s", a->partition);
	if (a->account)
		argv_add(&b, "--account=%s", a->account);
	if (a->qos)
		argv_add(&b, "--qos=%s", a->qos);
	if (a->time_s > 0) {
		char t[64];
		slurm_format_time(t, sizeof t, a->time_s);
		argv_add(&b, "--time=%s", t);
	}
	if (a->cpus_per_task > 0)
		argv_add(&b, "--cpus-per-task=%d", a->cpus_per_task);
	if (a->mem)
		argv_add(&b, "--mem=%s", a->mem);
	if (a->gpus_per_task > 0)
		argv_add(&b, "--gpus-per-task=%d", a->gpus_per_task);
	for (size_t i = 0; i < a->n_sbatch_args; i++)
		argv_add(&b, "%s", a->sbatch_args[i]);
	argv_add(&b, "%s", script_path);
	if (b.oom) {
		slurm_argv_free(b.v);
		return diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
	}
	*out = b.v;
	return 0;
}

int slurm_submit(char out[32], const struct slurm_array *a, const char *script_path,
		 struct diag *d)
{
	out[0] = '\0';
	char *script = NULL, **argv = NULL, *so = NULL, *se = NULL;
	int st = -1;
	int r = slurm_script(&script, a, d);
	if (!r && script)
		r = file_write_atomic(script_path, script, strlen(script), d);
	if (!r)
		r = slurm_sbatch_argv(&argv, a, script_path, d);
	if (!r)
		r = slurm_run(&st, &so, &se, argv, SLURM_CMD_TIMEOUT_S, d);
	if (r)
		goto done;
	if (st != 0) {
		char line[512];
		first_line(line, sizeof line, se);
		r = diag_set(d, FT_EIO, "", 0, 0, "sbatch refused the job array (exit status %d): %s",
			     st, line[0] ? line : "no message");
		goto done;
	}
	/* --parsable: "1234" or "1234;cluster" */
	size_t n = strspn(so, "0123456789");
	if (n == 0 || n >= 32 || (so[n] && so[n] != ';' && so[n] != '\n')) {
		char line[256];
		first_line(line, sizeof line, so);
		r = diag_set(d, FT_EIO, "", 0, 0, "sbatch printed no job id: '%s'", line);
		goto done;
	}
	memcpy(out, so, n);
	out[n] = '\0';
done:
	free(script);
	slurm_argv_free(argv);
	free(so);
	free(se);
	return r;
}

/* ---- the queue ---- */

static bool copy_field(char *dst, size_t n, const char *src, size_t len)
{
	if (len >= n)
		return false;
	memcpy(dst, src, len);
	dst[len] = '\0';
	return true;
}

static int push_task(struct slurm_task **v, size_t *n, size_t *cap, const struct slurm_task *t)
{
	if (*n == *cap) {
		size_t nc = *cap ? *cap * 2 : 64;
		struct slurm_task *nv = realloc(*v, nc * sizeof *nv);
		if (!nv)
			return FT_ENOMEM;
		*v = nv;
		*cap = nc;
	}
	(*v)[(*n)++] = *t;
	return 0;
}

/* "5-9,12%2" (pending tasks on one line) -> one entry each; non-zero when malformed. */
static int expand_range(struct slurm_task **v, size_t *n, size_t *cap, struct slurm_task *t,
			const char *spec, size_t len)
{
	if (len > 1 && spec[0] == '[' && spec[len - 1] == ']') {
		spec++;
		len -= 2;
	}
	const char *p = spec, *end = spec + len;
	const char *pct = memchr(p, '%', (size_t)(end - p));
	if (pct)
		end = pct;
	size_t count = 0;
	while (p < end) {
		char *e;
		long a = strtol(p, &e, 10), b = a;
		if (e == p || a < 0 || a > 100000000)
			return 1;
		p = e;
		if (p < end && *p == '-') {
			b = strtol(p + 1, &e, 10);
			if (e == p + 1 || b < a || b > 100000000)
				return 1;
			p = e;
		}
		if (p < end && *p == ':') { /* step */
			strtol(p + 1, &e, 10);
			p = e;
		}
		if (p < end && *p != ',')
			return 1;
		if (p < end)
			p++;
		for (long i = a; i <= b; i++) {
			if (++count > 1000000)
				return 1;
			t->task = i;
			if (push_task(v, n, cap, t))
				return FT_ENOMEM;
		}
	}
	return 0;
}

int slurm_queue_parse(struct slurm_task **out, size_t *out_n, const char *text,
		      struct diag *d)
{
	*out = NULL;
	*out_n = 0;
	struct slurm_task *v = NULL;
	size_t n = 0, cap = 0;
	for (const char *p = text; p && *p;) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		const char *f[6];
		size_t fl[6];
		int nf = 0;
		const char *q = p, *lend = p + len;
		while (nf < 6) {
			const char *bar = nf < 5 ? memchr(q, '|', (size_t)(lend - q)) : NULL;
			f[nf] = q;
			fl[nf] = bar ? (size_t)(bar - q) : (size_t)(lend - q);
			nf++;
			if (!bar)
				break;
			q = bar + 1;
		}
		p = nl ? nl + 1 : p + len;
		if (nf != 6 || memchr(f[5], '|', fl[5]))
			continue;
		struct slurm_task t;
		memset(&t, 0, sizeof t);
		if (!copy_field(t.array_job, sizeof t.array_job, f[0], fl[0]) ||
		    strspn(t.array_job, "0123456789") != fl[0] || fl[0] == 0 ||
		    !copy_field(t.state, sizeof t.state, f[3], fl[3]) || fl[3] == 0 ||
		    !copy_field(t.node, sizeof t.node, f[4], fl[4]) ||
		    !copy_field(t.reason, sizeof t.reason, f[5], fl[5]))
			continue;
		if (strcmp(t.node, "(null)") == 0)
			t.node[0] = '\0';
		char idx[64];
		if (!copy_field(idx, sizeof idx, f[1], fl[1]))
			continue;
		int64_t ti;
		if (strcmp(idx, "N/A") == 0) {
			t.task = -1;
			if (!copy_field(t.job_id, sizeof t.job_id, f[2], fl[2]))
				continue;
		} else if (parse_i64(idx, &ti) && ti >= 0) {
			t.task = ti;
			if (!copy_field(t.job_id, sizeof t.job_id, f[2], fl[2]))
				continue;
		} else {
			int e = expand_range(&v, &n, &cap, &t, idx, strlen(idx));
			if (e == FT_ENOMEM) {
				free(v);
				return diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
			}
			continue;
		}
		if (push_task(&v, &n, &cap, &t)) {
			free(v);
			return diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
		}
	}
	*out = v;
	*out_n = n;
	return 0;
}

int slurm_queue(struct slurm_task **out, size_t *out_n, struct diag *d)
{
	*out = NULL;
	*out_n = 0;
	char user[128];
	struct passwd *pw = getpwuid(getuid());
	if (pw && pw->pw_name)
		snprintf(user, sizeof user, "%s", pw->pw_name);
	else
		snprintf(user, sizeof user, "%u", (unsigned)getuid());
	char *argv[] = {"squeue", "-h", "-r", "--states=all", "-u", user, "-o",
			SLURM_QUEUE_FORMAT, NULL};
	char *so = NULL, *se = NULL;
	int st;
	int r = slurm_run(&st, &so, &se, argv, SLURM_CMD_TIMEOUT_S, d);
	if (!r && st != 0) {
		char line[512];
		first_line(line, sizeof line, se);
		r = diag_set(d, FT_EIO, "", 0, 0, "squeue failed (exit status %d): %s", st,
			     line[0] ? line : "no message");
	}
	if (!r)
		r = slurm_queue_parse(out, out_n, so, d);
	free(so);
	free(se);
	return r;
}

static int simple_cmd(char **argv, const char *what, struct diag *d)
{
	char *so = NULL, *se = NULL;
	int st;
	int r = slurm_run(&st, &so, &se, argv, SLURM_CMD_TIMEOUT_S, d);
	if (!r && st != 0) {
		char line[512];
		first_line(line, sizeof line, se);
		r = diag_set(d, FT_EIO, "", 0, 0, "%s failed (exit status %d): %s", what, st,
			     line[0] ? line : "no message");
	}
	free(so);
	free(se);
	return r;
}

int slurm_cancel(const char *const *specs, size_t n, struct diag *d)
{
	if (n == 0)
		return 0;
	char **argv = calloc(n + 2, sizeof *argv);
	if (!argv)
		return diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
	argv[0] = "scancel";
	for (size_t i = 0; i < n; i++)
		argv[i + 1] = (char *)specs[i];
	int r = simple_cmd(argv, "scancel", d);
	free(argv);
	return r;
}

int slurm_signal_stop(const char *spec, struct diag *d)
{
	char *argv[] = {"scancel", "--batch", "--signal=USR2", (char *)spec, NULL};
	return simple_cmd(argv, "scancel --signal=USR2", d);
}

int slurm_requeue(const char *job_id, struct diag *d)
{
	char *argv[] = {"scontrol", "requeue", (char *)job_id, NULL};
	return simple_cmd(argv, "scontrol requeue", d);
}

/* ---- what states mean ---- */

enum slurm_phase slurm_state_phase(const char *state, const char **out_status)
{
	static const struct {
		const char *state;
		enum slurm_phase phase;
		const char *status;
	} map[] = {
		{"PENDING", SLURM_QUEUED, NULL},       {"REQUEUED", SLURM_QUEUED, NULL},
		{"REQUEUE_HOLD", SLURM_QUEUED, NULL},  {"REQUEUE_FED", SLURM_QUEUED, NULL},
		{"RESV_DEL_HOLD", SLURM_QUEUED, NULL}, {"CONFIGURING", SLURM_QUEUED, NULL},
		{"RUNNING", SLURM_RUNNING, NULL},      {"COMPLETING", SLURM_RUNNING, NULL},
		{"SIGNALING", SLURM_RUNNING, NULL},    {"STAGE_OUT", SLURM_RUNNING, NULL},
		{"SUSPENDED", SLURM_RUNNING, NULL},    {"STOPPED", SLURM_RUNNING, NULL},
		{"RESIZING", SLURM_RUNNING, NULL},     {"COMPLETED", SLURM_ENDED, "finished"},
		{"FAILED", SLURM_ENDED, "failed"},     {"OUT_OF_MEMORY", SLURM_ENDED, "failed"},
		{"SPECIAL_EXIT", SLURM_ENDED, "failed"}, {"TIMEOUT", SLURM_ENDED, "killed"},
		{"CANCELLED", SLURM_ENDED, "killed"},  {"PREEMPTED", SLURM_ENDED, "killed"},
		{"DEADLINE", SLURM_ENDED, "killed"},   {"REVOKED", SLURM_ENDED, "killed"},
		{"NODE_FAIL", SLURM_ENDED, "crashed"}, {"BOOT_FAIL", SLURM_ENDED, "crashed"},
	};
	if (out_status)
		*out_status = NULL;
	for (size_t i = 0; state && i < FT_ARRAY_LEN(map); i++) {
		/* squeue may add " by UID" to CANCELLED */
		size_t n = strlen(map[i].state);
		if (strncmp(state, map[i].state, n) == 0 && (state[n] == '\0' || state[n] == ' ')) {
			if (out_status)
				*out_status = map[i].status;
			return map[i].phase;
		}
	}
	return SLURM_UNKNOWN;
}

static const char *memfind(const char *h, size_t hn, const char *needle)
{
	size_t nn = strlen(needle);
	if (nn == 0 || nn > hn)
		return NULL;
	return memmem(h, hn, needle, nn);
}

const char *slurm_log_verdict(const char *text, size_t n, const char *marker)
{
	const char *p = text, *end = text + n;
	if (marker && *marker) {
		/* after the last line that starts with marker */
		const char *q = text, *last = NULL;
		while (q < end) {
			const char *f = memfind(q, (size_t)(end - q), marker);
			if (!f)
				break;
			if (f == text || f[-1] == '\n')
				last = f;
			q = f + 1;
		}
		if (last)
			p = last;
	}
	const char *verdict = NULL;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
		const char *star = memfind(p, len, "*** JOB ");
		if (!star)
			star = memfind(p, len, "*** STEP ");
		if (star && memfind(p, len, " CANCELLED AT ")) {
			size_t rest = len - (size_t)(star - p);
			if (memfind(star, rest, "DUE TO TIME LIMIT"))
				verdict = "TIMEOUT";
			else if (memfind(star, rest, "DUE TO PREEMPTION"))
				verdict = "PREEMPTED";
			else if (memfind(star, rest, "DUE TO NODE FAILURE"))
				verdict = "NODE_FAIL";
			else if (memfind(star, rest, "DUE TO JOB REQUEUE"))
				verdict = "REQUEUED";
			else
				verdict = "CANCELLED";
		} else if (memfind(p, len, "oom-kill event") || memfind(p, len, "oom_kill event") ||
			   memfind(p, len, "Exceeded job memory limit")) {
			verdict = "OUT_OF_MEMORY";
		}
		p = nl ? nl + 1 : end;
	}
	return verdict;
}
