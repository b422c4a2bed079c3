/* CLI tests of `ftlab run` / ls / show with the real binary ($FTLAB_BIN), real child
 * processes and a real store: two concurrent runners on one workspace, --only, SIGINT
 * (killed, exit 130) and --resume, kill -9 at random moments (integrity_check, crashed),
 * read-only and missing workspaces, and provenance from clean, dirty and absent git
 * repositories (made by the test with git). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
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
#include "store/store_internal.h" /* sqlite3, to plant another host's row */
#include "common/banned.h"

static const char *trainer =
	"steps=$1; delay=${TRAIN_DELAY:-0}\n"
	"start=0\n"
	"if [ \"$FTLAB_RESUME\" = 1 ] && [ -f \"$FTLAB_RUN_DIR/ckpt\" ]; then\n"
	"  start=$(cat \"$FTLAB_RUN_DIR/ckpt\"); echo \"resumed at $start\"; fi\n"
	"trap 'echo stopping; exit 143' TERM\n"
	"i=$start\n"
	"while [ $i -lt $steps ]; do\n"
	"  echo \"{\\\"step\\\": $i, \\\"loss\\\": $((100 - i)), \\\"total_steps\\\": $steps}\"\n"
	"  i=$((i + 1)); echo $i > \"$FTLAB_RUN_DIR/ckpt.tmp\"; mv \"$FTLAB_RUN_DIR/ckpt.tmp\" \"$FTLAB_RUN_DIR/ckpt\"\n"
	"  [ -z \"$STEPLOG\" ] || echo $i >> \"$STEPLOG\"\n"
	"  [ -z \"$THREADS_LOG\" ] || echo $FTLAB_THREADS >> \"$THREADS_LOG\"\n"
	"  [ \"$delay\" = 0 ] || sleep $delay\n"
	"done\n"
	"echo '{\"split\": \"test\", \"example\": 0, \"reference\": \"yes\", \"output\": \"yes\"}'\n"
	"echo \"$FTLAB_RUN_ID\" >> \"$EXECUTIONS\"\n";

static const char *experiment =
	"name: cli-test\n"
	"seed: 1\n"
	"model:\n  base: base.txt\n"
	"data:\n  format: completion\n  train: train.jsonl\n"
	"train:\n  steps: 4\n"
	"eval:\n  metrics: [exact_match]\n"
	"backend:\n  type: exec\n  command: [/bin/sh, train.sh, \"{train.steps}\"]\n"
	"sweep:\n  parameters:\n    seed: [1, 2, 3, 4]\n";

struct env {
	char dir[64];
	char ws[96];
	char exp[128];
	char execs[128];
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

static void env_init(struct env *e)
{
	memset(e, 0, sizeof *e);
	snprintf(e->dir, sizeof e->dir, "/tmp/ftlab-cli-XXXXXX");
	assert_non_null(mkdtemp(e->dir));
	assert_int_equal(chmod(e->dir, 0755), 0);
	snprintf(e->ws, sizeof e->ws, "%s/ws", e->dir);
	snprintf(e->exp, sizeof e->exp, "%s/exp.yaml", e->dir);
	snprintf(e->execs, sizeof e->execs, "%s/executions", e->dir);
	write_file(e->dir, "train.sh", trainer);
	write_file(e->dir, "exp.yaml", experiment);
	write_file(e->dir, "base.txt", "base\n");
	write_file(e->dir, "train.jsonl", "{\"prompt\": \"q\", \"completion\": \"yes\"}\n");
	setenv("EXECUTIONS", e->execs, 1);
	setenv("NO_COLOR", "1", 1);
	setenv("TRAIN_DELAY", "0", 1);
}

static void env_done(struct env *e)
{
	assert_int_equal(dir_remove_all(e->dir), 0);
}

/* Set: ftlab is started with SIGCHLD ignored (inherited across exec, as from a parent that
 * ignores it). */
static bool start_ignoring_sigchld;

/* Starts `ftlab ARGS...` with stdout/stderr into dir/NAME.out/.err; uid >= 0 drops to it. */
static pid_t ftlab_start(const struct env *e, const char *name, int uid, const char *const *args)
{
	const char *bin = getenv("FTLAB_BIN");
	assert_non_null(bin);
	char out[160], err[160];
	snprintf(out, sizeof out, "%s/%s.out", e->dir, name);
	snprintf(err, sizeof err, "%s/%s.err", e->dir, name);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fo = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0666);
		int fe = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0666);
		if (fo < 0 || fe < 0 || dup2(fo, 1) < 0 || dup2(fe, 2) < 0)
			_exit(99);
		if (chdir(e->dir) != 0)
			_exit(99);
		if (uid >= 0 && (setgid((gid_t)uid) != 0 || setuid((uid_t)uid) != 0))
			_exit(98);
		if (start_ignoring_sigchld)
			signal(SIGCHLD, SIG_IGN);
		char *argv[32];
		int n = 0;
		argv[n++] = (char *)bin;
		for (size_t i = 0; args[i] && n < 31; i++)
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

static int ftlab(const struct env *e, const char *name, const char *const *args)
{
	return ftlab_wait(ftlab_start(e, name, -1, args));
}

static char *slurp(const struct env *e, const char *name)
{
	char *p = path_join(e->dir, name), *buf = NULL;
	size_t n;
	struct diag d;
	diag_init(&d);
	if (file_read_all(&buf, &n, p, 1 << 22, &d) != 0)
		buf = ft_strdup("");
	free(p);
	return buf;
}

static int count_lines(const char *text, const char *needle)
{
	int n = 0;
	for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

/* `ftlab ls --json` as a JSON array. */
static json_t *ls_json(const struct env *e)
{
	const char *args[] = {"--workspace", e->ws, "ls", "--json", NULL};
	assert_int_equal(ftlab(e, "ls", args), 0);
	char *out = slurp(e, "ls.out");
	json_error_t je;
	json_t *a = json_loads(out, 0, &je);
	free(out);
	assert_true(json_is_array(a));
	return a;
}

static int count_status(json_t *runs, const char *status)
{
	int n = 0;
	for (size_t i = 0; i < json_array_size(runs); i++)
		n += strcmp(json_string_value(json_object_get(json_array_get(runs, i), "status")),
			    status) == 0;
	return n;
}

static void test_two_concurrent_runners(void **state)
{
	(void)state;
	struct env e;
	env_init(&e);
	setenv("TRAIN_DELAY", "0.02", 1);
	const char *args[] = {"--workspace", e.ws, "run", "exp.yaml", NULL};
	pid_t a = ftlab_start(&e, "a", -1, args);
	pid_t b = ftlab_start(&e, "b", -1, args);
	assert_int_equal(ftlab_wait(a), 0);
	assert_int_equal(ftlab_wait(b), 0);
	char *ex = slurp(&e, "executions");
	assert_int_equal(count_lines(ex, "\n"), 4); /* each run executed exactly once */
	free(ex);
	json_t *runs = ls_json(&e);
	assert_int_equal(json_array_size(runs), 4);
	assert_int_equal(count_status(runs, "finished"), 4);
	json_decref(runs);
	/* --only runs exactly the one point; --jobs on a finished sweep reuses everything. */
	const char *force[] = {"--workspace", e.ws, "run", "exp.yaml", "--force", "--only", NULL,
			       NULL};
	runs = ls_json(&e);
	force[6] = json_string_value(json_object_get(json_array_get(runs, 2), "id"));
	assert_int_equal(ftlab(&e, "only", force), 0);
	json_decref(runs);
	ex = slurp(&e, "executions");
	assert_int_equal(count_lines(ex, "\n"), 5);
	free(ex);
	const char *typo[] = {"--workspace", e.ws, "ls", "cli-tset", NULL};
	assert_int_equal(ftlab(&e, "typo", typo), 2);
	char *terr = slurp(&e, "typo.err");
	assert_non_null(strstr(terr, "did you mean 'cli-test'?"));
	free(terr);
	const char *jobs[] = {"--workspace", e.ws, "run", "exp.yaml", "--jobs", "3", NULL};
	assert_int_equal(ftlab(&e, "jobs", jobs), 0);
	char *out = slurp(&e, "jobs.out");
	assert_int_equal(count_lines(out, " cached "), 4);
	free(out);
	env_done(&e);
}

static void test_sigint_killed_then_resume(void **state)
{
	(void)state;
	struct env e;
	env_init(&e);
	setenv("TRAIN_DELAY", "0.1", 1);
	const char *args[] = {"--workspace", e.ws, "run", "exp.yaml", "-s", "train.steps=30",
			      "--only", NULL, NULL};
	/* The run id of the first point, from plan. */
	const char *plan[] = {"--workspace", e.ws, "plan", "exp.yaml", "-s", "train.steps=30",
			      "--json", NULL};
	assert_int_equal(ftlab(&e, "plan", plan), 0);
	char *pj = slurp(&e, "plan.out");
	json_error_t je;
	json_t *p = json_loads(pj, 0, &je);
	free(pj);
	assert_non_null(p);
	char id[13];
	snprintf(id, sizeof id, "%s",
		 json_string_value(json_object_get(json_array_get(json_object_get(p, "runs"), 0),
						   "run_id")));
	json_decref(p);
	args[7] = id;
	pid_t pid = ftlab_start(&e, "int", -1, args);
	char ck[256];
	snprintf(ck, sizeof ck, "%s/runs/%s/ckpt", e.ws, id);
	for (int i = 0; i < 1500 && !path_exists(ck); i++)
		usleep(10000);
	usleep(250000);
	kill(pid, SIGINT);
	assert_int_equal(ftlab_wait(pid), 130);
	json_t *runs = ls_json(&e);
	assert_int_equal(count_status(runs, "killed"), 1);
	json_decref(runs);
	setenv("TRAIN_DELAY", "0", 1);
	const char *resume[] = {"--workspace", e.ws, "run", "exp.yaml", "-s", "train.steps=30",
				"--only", id, "--resume", NULL};
	assert_int_equal(ftlab(&e, "resume", resume), 0);
	char lp[64];
	snprintf(lp, sizeof lp, "ws/runs/%s/log.txt", id);
	char *log = slurp(&e, lp);
	assert_non_null(strstr(log, "resumed at"));
	free(log);
	runs = ls_json(&e);
	assert_int_equal(count_status(runs, "finished"), 1);
	json_decref(runs);
	env_done(&e);
}

static void test_kill9_integrity(void **state)
{
	(void)state;
	struct env e;
	env_init(&e);
	setenv("TRAIN_DELAY", "0.02", 1);
	srand((unsigned)time(NULL) ^ (unsigned)getpid());
	const char *args[] = {"--workspace", e.ws, "run", "exp.yaml", "-s", "train.steps=15",
			      "--resume", NULL};
	int crashed = 0;
	/* At least 6 kills, more until one lands while a run is running (a loaded machine
	 * may start slowly). */
	char steplog[160];
	snprintf(steplog, sizeof steplog, "%s/steplog", e.dir);
	setenv("STEPLOG", steplog, 1);
	for (int iter = 0; iter < 20 && (iter < 6 || crashed == 0); iter++) {
		unlink(steplog);
		pid_t pid = ftlab_start(&e, "k9", -1, args);
		/* The binary may start slowly on a loaded machine: kill at a random moment after
		 * its first trainer step (so inside a run, a claim, a write or a heartbeat). */
		for (int i = 0; i < 1000 && !path_exists(steplog); i++)
			usleep(10000);
		usleep((useconds_t)(rand() % 400000));
		kill(pid, SIGKILL);
		ftlab_wait(pid);
		char db[160];
		snprintf(db, sizeof db, "%s/ftlab.db", e.ws);
		if (!path_exists(db))
			continue; /* killed before it created the store */
		json_t *runs = ls_json(&e); /* reaps: running rows of dead pids become crashed */
		assert_int_equal(count_status(runs, "running"), 0);
		crashed += count_status(runs, "crashed");
		json_decref(runs);
		char cmd[256];
		snprintf(cmd, sizeof cmd, "sqlite3 %s/ftlab.db 'PRAGMA integrity_check' > %s/ic.out",
			 e.ws, e.dir);
		if (system(cmd) == 0) {
			char *ic = slurp(&e, "ic.out");
			assert_string_equal(ic, "ok\n");
			free(ic);
		}
	}
	assert_true(crashed > 0);
	unsetenv("STEPLOG");
	setenv("TRAIN_DELAY", "0", 1);
	assert_int_equal(ftlab(&e, "final", args), 0);
	json_t *runs = ls_json(&e);
	assert_int_equal(count_status(runs, "finished"), 4);
	json_decref(runs);
	env_done(&e);
}

static void test_workspace_errors(void **state)
{
	(void)state;
	struct env e;
	env_init(&e);
	const char *missing[] = {"--workspace", "/nonexistent/dir/ws", "run", "exp.yaml", NULL};
	assert_int_equal(ftlab(&e, "missing", missing), 2);
	char *err = slurp(&e, "missing.err");
	assert_non_null(strstr(err, "parent directory does not exist"));
	free(err);
	/* A read-only workspace (as an unprivileged user when the tests run as root). */
	char ro[128];
	snprintf(ro, sizeof ro, "%s/ro", e.dir);
	assert_int_equal(mkdir(ro, 0555), 0);
	assert_int_equal(chmod(ro, 0555), 0);
	const char *args[] = {"--workspace", ro, "run", "exp.yaml", NULL};
	pid_t pid = ftlab_start(&e, "ro", geteuid() == 0 ? 65534 : -1, args);
	int rc = ftlab_wait(pid);
	err = slurp(&e, "ro.err");
	assert_true(rc == 1 || rc == 2);
	assert_non_null(strstr(err, "not writable"));
	free(err);
	/* ls of a workspace that does not exist. */
	const char *ls[] = {"--workspace", "/nonexistent/ws", "ls", NULL};
	assert_int_equal(ftlab(&e, "ls-missing", ls), 2);
	assert_int_equal(chmod(ro, 0755), 0);
	env_done(&e);
}

static void git(const struct env *e, const char *cmd)
{
	char buf[1024];
	snprintf(buf, sizeof buf,
		 "cd '%s' && export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1 "
		 "GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@x GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@x"
		 " && (%s) >/dev/null 2>&1",
		 e->dir, cmd);
	assert_int_equal(system(buf), 0);
}

static json_t *show_json(const struct env *e, const char *id)
{
	const char *args[] = {"--workspace", e->ws, "show", id, "--json", NULL};
	assert_int_equal(ftlab(e, "show", args), 0);
	char *out = slurp(e, "show.out");
	json_error_t je;
	json_t *o = json_loads(out, 0, &je);
	free(out);
	assert_non_null(o);
	return o;
}

static void test_provenance_cli(void **state)
{
	(void)state;
	struct env e;
	env_init(&e);
	/* Not a repository: one warning for the whole sweep. */
	const char *run1[] = {"--workspace", e.ws, "run", "exp.yaml", NULL};
	assert_int_equal(ftlab(&e, "nr", run1), 0);
	char *err = slurp(&e, "nr.err");
	assert_int_equal(count_lines(err, "not in a git repository"), 1);
	free(err);
	json_t *runs = ls_json(&e);
	char id[13];
	snprintf(id, sizeof id, "%s", json_string_value(json_object_get(json_array_get(runs, 0), "id")));
	json_decref(runs);
	json_t *o = show_json(&e, id);
	assert_true(json_is_null(json_object_get(o, "provenance")));
	json_decref(o);
	/* A clean repository (the workspace inside it is ignored: untracked). */
	git(&e, "git init -q -b main . && git add exp.yaml train.sh base.txt train.jsonl && "
		"git commit -qm init && git remote add origin https://me:tok@example.com/r.git");
	const char *clean[] = {"--workspace", e.ws, "run", "exp.yaml", "--require-clean", NULL};
	assert_int_equal(ftlab(&e, "clean", clean), 0);
	o = show_json(&e, id);
	json_t *prov = json_object_get(o, "provenance");
	assert_true(json_is_object(prov));
	assert_int_equal(strlen(json_string_value(json_object_get(prov, "commit"))), 40);
	assert_true(json_is_false(json_object_get(prov, "dirty")));
	assert_string_equal(json_string_value(json_object_get(prov, "branch")), "main");
	assert_string_equal(json_string_value(json_object_get(prov, "remote")),
			    "https://example.com/r.git");
	json_decref(o);
	/* Same clean commit: cached, and plan says so. */
	const char *plan[] = {"--workspace", e.ws, "plan", "exp.yaml", NULL};
	assert_int_equal(ftlab(&e, "plan1", plan), 0);
	char *out = slurp(&e, "plan1.out");
	assert_int_equal(count_lines(out, " cached "), 4);
	free(out);
	assert_int_equal(ftlab(&e, "again", clean), 0);
	out = slurp(&e, "again.out");
	assert_int_equal(count_lines(out, " cached "), 4);
	free(out);
	/* Another commit: plan says what run does (repeats them), not "cached". */
	git(&e, "echo more >> base.txt.notes && git add base.txt.notes && git commit -qm two");
	assert_int_equal(ftlab(&e, "plan2", plan), 0);
	out = slurp(&e, "plan2.out");
	assert_int_equal(count_lines(out, " cached "), 0);
	assert_int_equal(count_lines(out, " outdated "), 4);
	free(out);
	assert_int_equal(ftlab(&e, "rerun", clean), 0);
	out = slurp(&e, "rerun.out");
	assert_int_equal(count_lines(out, " cached "), 0);
	free(out);
	assert_int_equal(ftlab(&e, "plan3", plan), 0);
	out = slurp(&e, "plan3.out");
	assert_int_equal(count_lines(out, " cached "), 4);
	free(out);
	/* Dirty: --require-clean refuses naming the file; without it the diff is kept. */
	write_file(e.dir, "train.sh", trainer);
	git(&e, "echo '# changed' >> train.sh");
	assert_int_equal(ftlab(&e, "dirty", clean), 2);
	err = slurp(&e, "dirty.err");
	assert_non_null(strstr(err, "uncommitted changes"));
	assert_non_null(strstr(err, "  train.sh"));
	free(err);
	assert_int_equal(ftlab(&e, "dirty2", run1), 0);
	o = show_json(&e, id);
	assert_true(json_is_true(json_object_get(json_object_get(o, "provenance"), "dirty")));
	json_t *arts = json_object_get(o, "artifacts");
	bool has_diff = false;
	for (size_t i = 0; i < json_array_size(arts); i++)
		has_diff |= strcmp(json_string_value(json_object_get(json_array_get(arts, i), "path")),
				   "diff.patch") == 0;
	assert_true(has_diff);
	json_decref(o);
	char dp[64];
	snprintf(dp, sizeof dp, "ws/runs/%s/diff.patch", id);
	char *diff = slurp(&e, dp);
	assert_non_null(strstr(diff, "+# changed"));
	free(diff);
	env_done(&e);
}

/* The run id of sweep point `index` of exp.yaml with the given overrides, from plan --json. */
static void plan_id(const struct env *e, const char *set, size_t index, char id[13])
{
	const char *plan[] = {"--workspace", e->ws, "plan", "exp.yaml", "-s", set, "--json", NULL};
	assert_int_equal(ftlab(e, "plan", plan), 0);
	char *pj = slurp(e, "plan.out");
	json_error_t je;
	json_t *p = json_loads(pj, 0, &je);
	free(pj);
	assert_non_null(p);
	snprintf(id, 13, "%s",
		 json_string_value(json_object_get(
			 json_array_get(json_object_get(p, "runs"), index), "run_id")));
	json_decref(p);
}

static json_t *run_of(json_t *runs, const char *id)
{
	for (size_t i = 0; i < json_array_size(runs); i++)
		if (strcmp(json_string_value(json_object_get(json_array_get(runs, i), "id")), id) == 0)
			return json_array_get(runs, i);
	fail_msg("run %s not listed", id);
	return NULL;
}

static void sql(const struct env *e, const char *text)
{
	char db[160];
	snprintf(db, sizeof db, "%s/ftlab.db", e->ws);
	sqlite3 *h = NULL;
	assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
	sqlite3_busy_timeout(h, 10000);
	char *err = NULL;
	if (sqlite3_exec(h, text, NULL, NULL, &err) != SQLITE_OK)
		fail_msg("%s: %s", text, err ? err : "?");
	sqlite3_close(h);
}

/* Runs keep their owner. A runner stopped (SIGSTOP) far past the staleness window is alive:
 * `ftlab ls` does not mark its run crashed and `ftlab run --resume` does not take it over
 * (one writer, one attempt, finished when it continues). The window itself is in effect:
 * a row of another host whose heartbeat is older than it is reaped by the same `ls`. */
static void test_stopped_runner_keeps_its_run(void **state)
{
	(void)state;
	struct env e;
	env_init(&e);
	setenv("FTLAB_HEARTBEAT", "0.2", 1);
	setenv("FTLAB_STALE_AFTER", "1", 1);
	setenv("TRAIN_DELAY", "0.05", 1);
	char id[13], other[13];
	plan_id(&e, "train.steps=40", 0, id);
	plan_id(&e, "train.steps=40", 1, other);
	const char *args[] = {"--workspace", e.ws, "run", "exp.yaml", "-s", "train.steps=40",
			      "--only", id, NULL};
	pid_t pid = ftlab_start(&e, "first", -1, args);
	char ck[256];
	snprintf(ck, sizeof ck, "%s/runs/%s/ckpt", e.ws, id);
	for (int i = 0; i < 3000 && !path_exists(ck); i++)
		usleep(10000);
	assert_true(path_exists(ck));
	assert_int_equal(kill(pid, SIGSTOP), 0);
	/* A row of another host, running, its heartbeat 5 s old (older than the window). */
	char plant[512];
	snprintf(plant, sizeof plant,
		 "INSERT INTO runs(id, experiment, sweep_index, params, config, identity, status,"
		 " pid, host, heartbeat, created) SELECT '%s', experiment, 1, params, config,"
		 " 'x', 'running', 1, 'elsewhere.example', strftime('%%s', 'now') - 5, created"
		 " FROM runs WHERE id = '%s'", other, id);
	sql(&e, plant);
	sleep(3); /* three windows without a heartbeat */
	json_t *runs = ls_json(&e);
	assert_string_equal(json_string_value(json_object_get(run_of(runs, id), "status")),
			    "running");
	assert_string_equal(json_string_value(json_object_get(run_of(runs, other), "status")),
			    "crashed");
	json_decref(runs);
	const char *resume[] = {"--workspace", e.ws, "run", "exp.yaml", "-s", "train.steps=40",
				"--only", id, "--resume", NULL};
	assert_int_equal(ftlab(&e, "second", resume), 0);
	char *err = slurp(&e, "second.err");
	assert_non_null(strstr(err, "running elsewhere"));
	free(err);
	assert_int_equal(kill(pid, SIGCONT), 0);
	assert_int_equal(ftlab_wait(pid), 0);
	const char *show[] = {"--workspace", e.ws, "show", id, "--json", NULL};
	assert_int_equal(ftlab(&e, "show", show), 0);
	char *sj = slurp(&e, "show.out");
	json_error_t je;
	json_t *r = json_loads(sj, 0, &je);
	free(sj);
	assert_non_null(r);
	assert_string_equal(json_string_value(json_object_get(r, "status")), "finished");
	assert_int_equal(json_integer_value(json_object_get(r, "attempts")), 1);
	json_decref(r);
	char *ex = slurp(&e, "executions");
	assert_int_equal(count_lines(ex, "\n"), 1); /* one trainer, one writer */
	free(ex);
	unsetenv("FTLAB_HEARTBEAT");
	unsetenv("FTLAB_STALE_AFTER");
	env_done(&e);
}

/* A heartbeat thread that cannot write says so: here the run's claim is taken from under
 * it (the token changed in the store); the runner reports the lost claim on stderr and in
 * the run's log, stops, and records nothing more for the run. */
static void test_lost_claim_is_reported(void **state)
{
	(void)state;
	struct env e;
	env_init(&e);
	setenv("FTLAB_HEARTBEAT", "0.2", 1);
	setenv("TRAIN_DELAY", "0.05", 1);
	char id[13];
	plan_id(&e, "train.steps=200", 0, id);
	const char *args[] = {"--workspace", e.ws, "run", "exp.yaml", "-s", "train.steps=200",
			      "--only", id, NULL};
	pid_t pid = ftlab_start(&e, "lost", -1, args);
	char ck[256];
	snprintf(ck, sizeof ck, "%s/runs/%s/ckpt", e.ws, id);
	for (int i = 0; i < 3000 && !path_exists(ck); i++)
		usleep(10000);
	assert_true(path_exists(ck));
	char q[256];
	snprintf(q, sizeof q, "UPDATE run_claims SET token = 'taken' WHERE run = '%s'", id);
	sql(&e, q);
	int rc = ftlab_wait(pid);
	assert_int_not_equal(rc, 0);
	char *err = slurp(&e, "lost.err");
	assert_non_null(strstr(err, "no longer owns run"));
	assert_non_null(strstr(err, "lost its claim"));
	free(err);
	char lp[64];
	snprintf(lp, sizeof lp, "ws/runs/%s/log.txt", id);
	char *log = slurp(&e, lp);
	assert_non_null(strstr(log, "[heartbeat] this process no longer owns run"));
	free(log);
	json_t *runs = ls_json(&e);
	/* The lost owner did not end the run (it would say killed): the row stays the other
	 * owner's, here one whose pid (the planted claim kept it) has gone, so ls reaps it. */
	assert_string_equal(json_string_value(json_object_get(run_of(runs, id), "status")),
			    "crashed");
	json_decref(runs);
	unsetenv("FTLAB_HEARTBEAT");
	env_done(&e);
}

/* ftlab started by a parent that ignores SIGCHLD (inherited across exec): workers and
 * trainers are still waited for, so statuses are right: every run finishes with --jobs 2,
 * and a trainer that exits 3 makes its run failed. A hang (waiting for a status that never
 * comes) is a failure after 120 s. */
static void test_inherited_ignored_sigchld(void **state)
{
	(void)state;
	struct env e;
	env_init(&e);
	start_ignoring_sigchld = true;
	const char *args[] = {"--workspace", e.ws, "run", "exp.yaml", "--jobs", "2", NULL};
	pid_t pid = ftlab_start(&e, "ign", -1, args);
	int status = 0;
	pid_t w = 0;
	for (int i = 0; i < 1200 && (w = waitpid(pid, &status, WNOHANG)) == 0; i++)
		usleep(100000);
	if (w == 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		fail_msg("ftlab run with SIGCHLD ignored did not end in 120 s");
	}
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	json_t *runs = ls_json(&e);
	assert_int_equal(count_status(runs, "finished"), 4);
	json_decref(runs);
	write_file(e.dir, "train.sh", "exit 3\n");
	const char *fail[] = {"--workspace", e.ws, "run", "exp.yaml", "--force", NULL};
	assert_int_equal(ftlab(&e, "ign-fail", fail), 1);
	start_ignoring_sigchld = false;
	runs = ls_json(&e);
	assert_int_equal(count_status(runs, "failed"), 4);
	json_t *r0 = json_array_get(runs, 0);
	assert_non_null(strstr(json_string_value(json_object_get(r0, "error")), "status 3"));
	json_decref(runs);
	env_done(&e);
}

/* backend.type picks what runs a point (exec here: the trainer script; cpu: the native
 * engine, which refuses a file that is not a model before anything is recorded), and
 * backend.threads is the thread count the run gets (recorded, and given to an exec
 * trainer as FTLAB_THREADS). */
/* keys: backend.type backend.threads */
static void test_backend_type_and_threads(void **state)
{
	(void)state;
	struct env e;
	env_init(&e);
	char tl[160];
	snprintf(tl, sizeof tl, "%s/threads", e.dir);
	setenv("THREADS_LOG", tl, 1);
	char id[13];
	plan_id(&e, "backend.threads=3", 0, id);
	const char *args[] = {"--workspace", e.ws, "run", "exp.yaml", "-s", "backend.threads=3",
			      "--only", id, NULL};
	assert_int_equal(ftlab(&e, "threads", args), 0);
	unsetenv("THREADS_LOG");
	char *t = slurp(&e, "threads");
	assert_true(t[0] == '3' && strspn(t, "3\n") == strlen(t)); /* every step saw 3 */
	free(t);
	const char *show[] = {"--workspace", e.ws, "show", id, "--json", NULL};
	assert_int_equal(ftlab(&e, "show", show), 0);
	char *sj = slurp(&e, "show.out");
	json_error_t je;
	json_t *r = json_loads(sj, 0, &je);
	free(sj);
	assert_non_null(r);
	assert_int_equal(json_integer_value(json_object_get(r, "threads")), 3);
	assert_string_equal(json_string_value(json_object_get(r, "backend")), "exec");
	json_decref(r);
	/* The same experiment on the native engine: base.txt is no model. (Its exact_match
	 * has no split to evaluate there, which the native engine would refuse first.) */
	const char *cpu[] = {"--workspace", e.ws, "run", "exp.yaml", "-s", "backend={type: cpu}",
			     "-s", "eval.metrics=null", NULL};
	assert_int_equal(ftlab(&e, "cpu", cpu), 2);
	char *err = slurp(&e, "cpu.err");
	assert_non_null(strstr(err, "base.txt"));
	free(err);
	env_done(&e);
}

int main(void)
{
	if (!getenv("FTLAB_BIN")) {
		fprintf(stderr, "FTLAB_BIN is not set (run through scripts/run-tests.sh)\n");
		return 1;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_two_concurrent_runners),
		cmocka_unit_test(test_sigint_killed_then_resume),
		cmocka_unit_test(test_kill9_integrity),
		cmocka_unit_test(test_workspace_errors),
		cmocka_unit_test(test_provenance_cli),
		cmocka_unit_test(test_stopped_runner_keeps_its_run),
		cmocka_unit_test(test_lost_claim_is_reported),
		cmocka_unit_test(test_inherited_ignored_sigchld),
		cmocka_unit_test(test_backend_type_and_threads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
