/* Unit tests for the exec backend: placeholder substitution, argv without a shell, the
 * environment, the JSON Lines protocol, metrics_file, scoring of unreported metrics,
 * exit status, and timeouts that kill the whole process group. Real child processes. */
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
#include <sys/stat.h>
#include <unistd.h>

#include "backends/backend.h"
#include "backends/exec/exec.h"
#include "common/util.h"
#include "common/banned.h"

/* A sink that remembers what it was told. */
struct rec {
	int n_metrics, n_results, n_preds, n_events, n_artifacts;
	double last_loss;
	int64_t last_step;
	char results[16][96];
	double result_values[16];
	char events[8][256];
};

static int r_metric(void *ud, const char *split, const char *name, int64_t step, double v)
{
	struct rec *r = ud;
	r->n_metrics++;
	if (strcmp(split, "train") == 0 && strcmp(name, "loss") == 0) {
		r->last_loss = v;
		r->last_step = step;
	}
	return 0;
}

static int r_result(void *ud, const char *model, const char *split, const char *metric,
		    double v, double lo, double hi)
{
	struct rec *r = ud;
	(void)lo;
	(void)hi;
	if (r->n_results < 16) {
		snprintf(r->results[r->n_results], sizeof r->results[0], "%s/%s/%s", model, split,
			 metric);
		r->result_values[r->n_results] = v;
	}
	r->n_results++;
	return 0;
}

static int r_pred(void *ud, const char *model, const char *split, int64_t ex, const char *p,
		  const char *ref, const char *out, double score)
{
	struct rec *r = ud;
	(void)model, (void)split, (void)ex, (void)p, (void)ref, (void)out, (void)score;
	r->n_preds++;
	return 0;
}

static int r_event(void *ud, const char *level, const char *kind, const char *msg)
{
	struct rec *r = ud;
	if (r->n_events < 8)
		snprintf(r->events[r->n_events], sizeof r->events[0], "%s %s %s", level, kind, msg);
	r->n_events++;
	return 0;
}

static int r_artifact(void *ud, const char *kind, const char *path)
{
	struct rec *r = ud;
	(void)kind, (void)path;
	r->n_artifacts++;
	return 0;
}

static double find_result(const struct rec *r, const char *key)
{
	for (int i = 0; i < r->n_results && i < 16; i++)
		if (strcmp(r->results[i], key) == 0)
			return r->result_values[i];
	return NAN;
}

struct fixture {
	char dir[64];
	struct config cfg;
	char *argv[8];
	char *metrics[3];
	struct rec rec;
	struct run_sink sink;
	volatile sig_atomic_t stop;
	struct run_ctx ctx;
};

static void fixture_init(struct fixture *f, const char *script, const char *config_json)
{
	memset(f, 0, sizeof *f);
	snprintf(f->dir, sizeof f->dir, "/tmp/ftlab-exec-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	char path[128];
	snprintf(path, sizeof path, "%s/train.sh", f->dir);
	FILE *fp = fopen(path, "w");
	assert_non_null(fp);
	fputs(script, fp);
	fclose(fp);
	f->cfg.name = "t";
	f->cfg.canonical_json = (char *)config_json;
	f->cfg.backend.type = BACKEND_EXEC;
	f->argv[0] = "/bin/sh";
	f->argv[1] = "train.sh";
	f->cfg.backend.command.items = f->argv;
	f->cfg.backend.command.n = 2;
	f->cfg.backend.workdir = f->dir;
	f->metrics[0] = "exact_match";
	f->metrics[1] = "loss";
	f->metrics[2] = "f1";
	f->cfg.eval.metrics.items = f->metrics;
	f->cfg.eval.metrics.n = 3;
	f->sink = (struct run_sink){&f->rec, r_metric, r_result, r_pred, r_event, r_artifact, NULL};
	f->ctx = (struct run_ctx){.cfg = &f->cfg, .experiment = "t", .run_id = "0123456789ab",
				  .run_dir = f->dir, .threads = 1, .stop = &f->stop,
				  .sink = &f->sink};
}

static void fixture_done(struct fixture *f)
{
	assert_int_equal(dir_remove_all(f->dir), 0);
}

static char *read_in(const struct fixture *f, const char *name)
{
	char *p = path_join(f->dir, name), *buf = NULL;
	size_t n;
	struct diag d;
	diag_init(&d);
	if (file_read_all(&buf, &n, p, 1 << 20, &d) != 0)
		buf = NULL;
	free(p);
	return buf;
}

/* True when pid exists and is not a zombie (a killed orphan may wait for its reaper). */
static bool process_running(int64_t pid)
{
	if (kill((pid_t)pid, 0) != 0)
		return false;
	char path[64], buf[256] = "";
	snprintf(path, sizeof path, "/proc/%lld/stat", (long long)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return false;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	const char *p = strrchr(buf, ')');
	return !(p && (p[2] == 'Z' || p[2] == 'X'));
}

static void test_substitute(void **state)
{
	(void)state;
	const char *cfg = "{\"method\":{\"rank\":8,\"targets\":[\"q\",\"v\"]},"
			  "\"train\":{\"optimizer\":{\"lr\":0.0002}},\"name\":\"x y\",\"flag\":true}";
	struct diag d;
	diag_init(&d);
	char *out = NULL;
	assert_int_equal(exec_substitute(&out, "--lr={train.optimizer.lr}", cfg, &d), 0);
	assert_string_equal(out, "--lr=0.0002");
	free(out);
	assert_int_equal(exec_substitute(&out, "{method.rank}/{name}/{flag}", cfg, &d), 0);
	assert_string_equal(out, "8/x y/true");
	free(out);
	assert_int_equal(exec_substitute(&out, "{method.targets}", cfg, &d), 0);
	assert_string_equal(out, "[\"q\",\"v\"]");
	free(out);
	assert_int_equal(exec_substitute(&out, "{method.targets.1}{{x}}", cfg, &d), 0);
	assert_string_equal(out, "v{x}");
	free(out);
	assert_int_equal(exec_substitute(&out, "{method.rnak}", cfg, &d), FT_EINVAL);
	assert_non_null(strstr(d.text, "{method.rnak}"));
	diag_init(&d);
	assert_int_equal(exec_substitute(&out, "{method.rank", cfg, &d), FT_EINVAL);
	assert_non_null(strstr(d.text, "unclosed"));
}

/* A value with shell metacharacters stays one argv element and runs nothing. */
/* keys: backend.command */
static void test_no_shell(void **state)
{
	(void)state;
	struct fixture f;
	fixture_init(&f,
		     "printf '%s\\n' \"$#\" \"$1\" > argv.txt\n"
		     "printf '%s|%s|%s\\n' \"$FTLAB_RUN_ID\" \"$FTLAB_RUN_DIR\" \"$FTLAB_CONFIG\" > env.txt\n",
		     "{\"data\":{\"x\":\"a; touch pwned $(touch pwned2) `touch pwned3`\"}}");
	f.argv[2] = "{data.x}";
	f.cfg.backend.command.n = 3;
	struct diag d;
	diag_init(&d);
	assert_int_equal(backend_exec()->run(&f.ctx, &d), 0);
	char *argv_txt = read_in(&f, "argv.txt");
	assert_non_null(argv_txt);
	assert_string_equal(argv_txt, "1\na; touch pwned $(touch pwned2) `touch pwned3`\n");
	free(argv_txt);
	char p[128];
	snprintf(p, sizeof p, "%s/pwned", f.dir);
	assert_false(path_exists(p));
	snprintf(p, sizeof p, "%s/pwned2", f.dir);
	assert_false(path_exists(p));
	char *env = read_in(&f, "env.txt");
	char want[256];
	snprintf(want, sizeof want, "0123456789ab|%s|%s/config.json\n", f.dir, f.dir);
	assert_string_equal(env, want);
	free(env);
	char *cj = read_in(&f, "config.json");
	assert_non_null(strstr(cj, "touch pwned"));
	free(cj);
	fixture_done(&f);
}

static void test_protocol(void **state)
{
	(void)state;
	struct fixture f;
	fixture_init(&f,
		     "echo 'hello from the trainer'\n"
		     "echo '{\"step\": 1, \"split\": \"train\", \"loss\": 2.5, \"lr\": 0.1}'\n"
		     "echo '{\"step\": 2, \"loss\": 1.5}'\n"
		     "echo '{\"split\": \"test\", \"metric\": \"loss\", \"value\": 0.7}'\n"
		     "echo '{\"split\": \"test\", \"model\": \"base\", \"metric\": \"loss\", \"value\": 0.9}'\n"
		     "echo '{\"split\": \"test\", \"example\": 0, \"prompt\": \"p\", \"reference\": \"x\", \"output\": \" x \"}'\n"
		     "echo '{\"split\": \"test\", \"example\": 1, \"prompt\": \"p\", \"reference\": \"b\", \"output\": \"c\"}'\n"
		     "echo '{\"split\": \"test\", \"example\": 2, \"reference\": \"d\", \"output\": \"d\"}'\n"
		     "echo '{\"split\": \"test\", \"model\": \"base\", \"example\": 0, \"reference\": \"x\", \"output\": \"z\"}'\n"
		     "echo '{\"unknown\": 1}'\n"
		     "echo 'oops' >&2\n",
		     "{}");
	struct diag d;
	diag_init(&d);
	assert_int_equal(backend_exec()->run(&f.ctx, &d), 0);
	assert_int_equal(f.rec.n_metrics, 3);
	assert_int_equal(f.rec.last_step, 2);
	assert_true(f.rec.last_loss == 1.5);
	assert_int_equal(f.rec.n_preds, 4);
	assert_true(find_result(&f.rec, "tuned/test/loss") == 0.7);
	assert_true(find_result(&f.rec, "base/test/loss") == 0.9);
	/* exact_match was not reported: computed from predictions (2 of 3; base 0 of 1). */
	assert_true(fabs(find_result(&f.rec, "tuned/test/exact_match") - 2.0 / 3.0) < 1e-12);
	assert_true(find_result(&f.rec, "base/test/exact_match") == 0.0);
	assert_true(fabs(find_result(&f.rec, "tuned/test/f1") - 2.0 / 3.0) < 1e-12);
	/* loss cannot be computed from predictions and was reported anyway. */
	assert_int_equal(f.rec.n_results, 2 + 4);
	char *log = read_in(&f, "log.txt");
	assert_non_null(strstr(log, "hello from the trainer"));
	assert_non_null(strstr(log, "{\"unknown\": 1}"));
	assert_null(strstr(log, "\"loss\": 2.5"));
	free(log);
	char *err = read_in(&f, "stderr.txt");
	assert_string_equal(err, "oops\n");
	free(err);
	assert_true(f.rec.n_events >= 1);
	fixture_done(&f);
}

/* keys: backend.metrics_file */
static void test_metrics_file_and_failure(void **state)
{
	(void)state;
	struct fixture f;
	fixture_init(&f,
		     "echo '{\"step\": 1, \"loss\": 9}'\n"
		     "echo '{\"step\": 1, \"loss\": 3}' >> \"$FTLAB_RUN_DIR/m.jsonl\"\n"
		     "echo '{\"split\": \"test\", \"metric\": \"exact_match\", \"value\": 0.5}' >> \"$FTLAB_RUN_DIR/m.jsonl\"\n"
		     "exit 3\n",
		     "{}");
	f.cfg.backend.metrics_file = "m.jsonl";
	struct diag d;
	diag_init(&d);
	assert_int_equal(backend_exec()->run(&f.ctx, &d), FT_ERUN);
	assert_non_null(strstr(d.text, "exited with status 3"));
	assert_int_equal(f.rec.n_metrics, 1);
	assert_true(f.rec.last_loss == 3);
	assert_true(find_result(&f.rec, "tuned/test/exact_match") == 0.5);
	char *log = read_in(&f, "log.txt");
	assert_non_null(strstr(log, "\"loss\": 9")); /* stdout is only a log now */
	free(log);
	fixture_done(&f);
}

/* The timeout kills the trainer and the grandchild it started in its group. */
/* keys: backend.timeout */
static void test_timeout_kills_group(void **state)
{
	(void)state;
	struct fixture f;
	fixture_init(&f,
		     "sh -c 'echo $$ > grandchild.pid; exec sleep 30' &\n"
		     "trap '' TERM\n"
		     "sleep 30\n",
		     "{}");
	f.cfg.backend.timeout_s = 0.5;
	struct diag d;
	diag_init(&d);
	double t0 = time_monotonic();
	assert_int_equal(backend_exec()->run(&f.ctx, &d), FT_ERUN);
	double el = time_monotonic() - t0;
	assert_true(el < 10);
	assert_non_null(strstr(d.text, "timeout"));
	char *pid_txt = read_in(&f, "grandchild.pid");
	assert_non_null(pid_txt);
	int64_t pid;
	pid_txt[strcspn(pid_txt, "\n")] = '\0';
	assert_true(parse_i64(pid_txt, &pid));
	free(pid_txt);
	usleep(200000);
	assert_false(process_running(pid));
	fixture_done(&f);
}

static void test_stop_flag(void **state)
{
	(void)state;
	struct fixture f;
	fixture_init(&f, "echo '{\"step\": 1, \"loss\": 1}'\nexec sleep 30\n", "{}");
	f.stop = 1;
	struct diag d;
	diag_init(&d);
	assert_int_equal(backend_exec()->run(&f.ctx, &d), FT_EINTR);
	fixture_done(&f);
}

static void test_missing_program(void **state)
{
	(void)state;
	struct fixture f;
	fixture_init(&f, "", "{}");
	f.argv[0] = "/nonexistent/trainer";
	struct diag d;
	diag_init(&d);
	assert_int_equal(backend_exec()->run(&f.ctx, &d), FT_ERUN);
	assert_non_null(strstr(d.text, "/nonexistent/trainer"));
	fixture_done(&f);
}

/* A runner whose children cannot be waited for (SIGCHLD ignored: the kernel reaps them, and
 * waitpid() fails with ECHILD) fails the run saying so, instead of reading an exit status
 * it never got or polling for ever. alarm() turns a hang into a failed test. */
static void test_unwaitable_child(void **state)
{
	(void)state;
	struct fixture f;
	fixture_init(&f, "echo '{\"step\": 1, \"loss\": 2.0}'\nexit 3\n", "{}");
	struct sigaction ign = {.sa_handler = SIG_IGN}, old;
	sigemptyset(&ign.sa_mask);
	assert_int_equal(sigaction(SIGCHLD, &ign, &old), 0);
	alarm(60);
	struct diag d;
	diag_init(&d);
	int r = backend_exec()->run(&f.ctx, &d);
	alarm(0);
	assert_int_equal(sigaction(SIGCHLD, &old, NULL), 0);
	assert_int_equal(r, FT_ERUN);
	assert_non_null(strstr(d.text, "cannot wait for trainer"));
	fixture_done(&f);
}

/* backend.workdir: the trainer runs in it (its relative paths start there). */
/* keys: backend.workdir */
static void test_workdir(void **state)
{
	(void)state;
	struct fixture f;
	fixture_init(&f, "pwd > \"$FTLAB_RUN_DIR/where\"\n", "{}");
	char sub[128];
	snprintf(sub, sizeof sub, "%s/work", f.dir);
	assert_int_equal(mkdir(sub, 0755), 0);
	char script[160];
	snprintf(script, sizeof script, "%s/train.sh", f.dir);
	f.argv[1] = script; /* absolute: the workdir is not where the script is */
	f.cfg.backend.workdir = sub;
	struct diag d;
	diag_init(&d);
	assert_int_equal(backend_exec()->run(&f.ctx, &d), 0);
	char *where = read_in(&f, "where");
	assert_non_null(where);
	assert_int_equal(strncmp(where, sub, strlen(sub)), 0);
	free(where);
	fixture_done(&f);
}

/* Preference data reaches an external trainer like any other: its path and format through
 * placeholders and FTLAB_CONFIG; the preference statistics it logs are history, the
 * preference metrics it reports are results (ftlab cannot compute them from predictions:
 * they need the model, like loss). */
static void test_preference_data(void **state)
{
	(void)state;
	struct fixture f;
	fixture_init(&f,
		     "grep -q '\"rejected\"' \"$1\" || exit 3\n"
		     "test \"$2\" = preference || exit 4\n"
		     "test \"$3\" = 0.25 || exit 5\n"
		     "grep -q '\"objective\":\"dpo\"' \"$FTLAB_CONFIG\" || exit 6\n"
		     "echo '{\"step\": 1, \"split\": \"train\", \"loss\": 0.6, "
		     "\"rewards/margins\": 0.1}'\n"
		     "echo '{\"split\": \"test\", \"metric\": \"preference_accuracy\", \"value\": 0.75}'\n"
		     "echo '{\"split\": \"test\", \"model\": \"base\", \"metric\": "
		     "\"preference_accuracy\", \"value\": 0.5}'\n"
		     "echo '{\"split\": \"test\", \"example\": 0, \"prompt\": \"p\", "
		     "\"reference\": \"a\", \"output\": \"a\"}'\n",
		     "{\"data\":{\"format\":\"preference\",\"train\":\"pref.jsonl\"},"
		     "\"train\":{\"objective\":\"dpo\",\"preference\":{\"beta\":0.25}}}");
	char *pref = path_join(f.dir, "pref.jsonl");
	struct diag d;
	diag_init(&d);
	const char line[] = "{\"prompt\": \"p\", \"chosen\": \"a\", \"rejected\": \"b\"}\n";
	assert_int_equal(file_write_atomic(pref, line, strlen(line), &d), 0);
	free(pref);
	f.argv[2] = "{data.train}";
	f.argv[3] = "{data.format}";
	f.argv[4] = "{train.preference.beta}";
	f.cfg.backend.command.n = 5;
	f.metrics[0] = "preference_accuracy";
	f.metrics[1] = "exact_match";
	f.cfg.eval.metrics.n = 2;
	if (backend_exec()->run(&f.ctx, &d) != 0)
		fail_msg("%s", d.text);
	assert_float_equal(find_result(&f.rec, "tuned/test/preference_accuracy"), 0.75, 0);
	assert_float_equal(find_result(&f.rec, "base/test/preference_accuracy"), 0.5, 0);
	assert_float_equal(find_result(&f.rec, "tuned/test/exact_match"), 1.0, 0);
	assert_int_equal(f.rec.n_metrics, 2); /* loss and rewards/margins at step 1 */
	fixture_done(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_substitute),
		cmocka_unit_test(test_no_shell),
		cmocka_unit_test(test_protocol),
		cmocka_unit_test(test_metrics_file_and_failure),
		cmocka_unit_test(test_timeout_kills_group),
		cmocka_unit_test(test_stop_flag),
		cmocka_unit_test(test_missing_program),
		cmocka_unit_test(test_unwaitable_child),
		cmocka_unit_test(test_workdir),
		cmocka_unit_test(test_preference_data),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
