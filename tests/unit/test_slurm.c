/* The Slurm interface without a cluster: the queue parser (one line per task, ranges of
 * pending tasks, junk), what each job state means for a run, slurmstepd's last words in a
 * task's output, the batch script (quoting, setup lines; checked by bash -n) and the
 * sbatch command line, Slurm's time and memory forms. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "common/util.h"
#include "runner/slurm.h"
#include "schema/schema.h"
#include "common/banned.h"

static void test_queue_parse(void **state)
{
	(void)state;
	const char *text = "12|0|15|RUNNING|n1|None\n"
			   "12|1|12|PENDING||Priority\n"
			   "12|2-4%2|12|PENDING||JobArrayTaskLimit\n"
			   "13|N/A|13|CANCELLED by 0|n2|None\n"
			   "garbage line\n"
			   "14|x|14|RUNNING|n3|None\n"
			   "15|7|16|COMPLETED|n3|None|extra\n"
			   "|1|1|RUNNING|n1|None\n"
			   "16|3|17|TIMEOUT|n2|TimeLimit";
	struct slurm_task *t = NULL;
	size_t n = 0;
	struct diag d;
	diag_init(&d);
	assert_int_equal(slurm_queue_parse(&t, &n, text, &d), 0);
	assert_int_equal(n, 7);
	assert_string_equal(t[0].array_job, "12");
	assert_int_equal(t[0].task, 0);
	assert_string_equal(t[0].job_id, "15");
	assert_string_equal(t[0].state, "RUNNING");
	assert_string_equal(t[0].node, "n1");
	assert_string_equal(t[1].node, "");
	assert_string_equal(t[1].reason, "Priority");
	for (int i = 0; i < 3; i++) {
		assert_int_equal(t[2 + i].task, 2 + i);
		assert_string_equal(t[2 + i].state, "PENDING");
	}
	assert_int_equal(t[5].task, -1);
	assert_string_equal(t[5].job_id, "13");
	assert_string_equal(t[6].state, "TIMEOUT");
	assert_int_equal(t[6].task, 3);
	free(t);
	assert_int_equal(slurm_queue_parse(&t, &n, "", &d), 0);
	assert_int_equal(n, 0);
	free(t);
}

static void test_states(void **state)
{
	(void)state;
	static const struct {
		const char *state;
		enum slurm_phase phase;
		const char *status;
	} cases[] = {
		{"PENDING", SLURM_QUEUED, NULL},        {"REQUEUED", SLURM_QUEUED, NULL},
		{"RUNNING", SLURM_RUNNING, NULL},       {"COMPLETING", SLURM_RUNNING, NULL},
		{"COMPLETED", SLURM_ENDED, "finished"}, {"FAILED", SLURM_ENDED, "failed"},
		{"OUT_OF_MEMORY", SLURM_ENDED, "failed"}, {"TIMEOUT", SLURM_ENDED, "killed"},
		{"CANCELLED", SLURM_ENDED, "killed"},   {"CANCELLED by 1000", SLURM_ENDED, "killed"},
		{"PREEMPTED", SLURM_ENDED, "killed"},   {"NODE_FAIL", SLURM_ENDED, "crashed"},
		{"BOOT_FAIL", SLURM_ENDED, "crashed"},  {"WEIRD", SLURM_UNKNOWN, NULL},
		{"FAILEDX", SLURM_UNKNOWN, NULL},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const char *st = "x";
		assert_int_equal(slurm_state_phase(cases[i].state, &st), cases[i].phase);
		if (cases[i].status)
			assert_string_equal(st, cases[i].status);
		else
			assert_null(st);
	}
}

static void test_log_verdict(void **state)
{
	(void)state;
	const char *log =
		"ftlab-task: attempt 1\n"
		"slurmstepd: error: *** JOB 12 ON n1 CANCELLED AT 2026-12-04T10:00:00 DUE TO "
		"PREEMPTION ***\n"
		"ftlab-task: attempt 2\n"
		"step 4\n"
		"slurmstepd: error: *** JOB 12 ON n2 CANCELLED AT 2026-12-04T10:05:00 DUE TO TIME "
		"LIMIT ***\n";
	assert_string_equal(slurm_log_verdict(log, strlen(log), NULL), "TIMEOUT");
	assert_string_equal(slurm_log_verdict(log, strlen(log), "ftlab-task: attempt "), "TIMEOUT");
	/* only what follows the last attempt's marker counts */
	const char *l2 = "ftlab-task: attempt 1\n"
			 "slurmstepd: error: *** JOB 12 ON n1 CANCELLED AT 2026 DUE TO PREEMPTION ***\n"
			 "ftlab-task: attempt 2\nrunning\n";
	assert_null(slurm_log_verdict(l2, strlen(l2), "ftlab-task: attempt "));
	assert_string_equal(slurm_log_verdict(l2, strlen(l2), NULL), "PREEMPTED");
	const char *l3 = "slurmstepd: error: *** JOB 9 ON n3 CANCELLED AT 2026-12-04T10:00:00 ***\n";
	assert_string_equal(slurm_log_verdict(l3, strlen(l3), NULL), "CANCELLED");
	const char *l4 = "x\nslurmstepd: error: *** JOB 9 ON n3 CANCELLED AT 2026 DUE TO NODE "
			 "FAILURE, SEE SLURMCTLD LOG FOR DETAILS ***\n";
	assert_string_equal(slurm_log_verdict(l4, strlen(l4), NULL), "NODE_FAIL");
	const char *l5 = "slurmstepd: error: Detected 1 oom-kill event(s) in StepId=9.batch.\n";
	assert_string_equal(slurm_log_verdict(l5, strlen(l5), NULL), "OUT_OF_MEMORY");
	const char *l6 = "*** JOB 1 ON n1 CANCELLED AT x DUE TO JOB REQUEUE ***";
	assert_string_equal(slurm_log_verdict(l6, strlen(l6), NULL), "REQUEUED");
	assert_null(slurm_log_verdict("all fine\n", 9, NULL));
}

static void test_script_and_argv(void **state)
{
	(void)state;
	const char *const setup[] = {"module load cuda/12.4", "export X='a b'"};
	const char *const extra[] = {"--constraint=a100", "--exclusive"};
	struct slurm_array a = {
		.job_name = "ftlab-exp",
		.partition = "gpu",
		.mem = "16G",
		.time_s = 3601,
		.cpus_per_task = 8,
		.gpus_per_task = 1,
		.array_parallelism = 4,
		.n_tasks = 30,
		.warn_s = 120,
		.sbatch_args = extra,
		.n_sbatch_args = 2,
		.setup = setup,
		.n_setup = 2,
		.ftlab_bin = "/opt/ft lab/ftlab",
		.workspace = "/w/it's",
		.submission_dir = "/w/it's/slurm/i1-1",
		.output = "/w/logs/%A_%a.out",
	};
	char *script = NULL;
	struct diag d;
	diag_init(&d);
	assert_int_equal(slurm_script(&script, &a, &d), 0);
	assert_non_null(strstr(script, "#!/bin/bash\n"));
	assert_non_null(strstr(script, "\nmodule load cuda/12.4\nexport X='a b'\n"));
	assert_non_null(strstr(script, "exec '/opt/ft lab/ftlab' --workspace '/w/it'\\''s' task "
				       "'/w/it'\\''s/slurm/i1-1' \"$SLURM_ARRAY_TASK_ID\"\n"));
	/* bash reads it, and the quoted words come out as written */
	char path[] = "/tmp/ftlab-script-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(file_write_atomic(path, script, strlen(script), &d), 0);
	char cmd[256];
	snprintf(cmd, sizeof cmd, "bash -n %s", path);
	assert_int_equal(system(cmd), 0);
	remove(path);
	free(script);

	char **argv = NULL;
	assert_int_equal(slurm_sbatch_argv(&argv, &a, "/w/job.sh", &d), 0);
	const char *want[] = {"sbatch", "--parsable", "--job-name=ftlab-exp", "--array=0-29%4",
			      "--output=/w/logs/%A_%a.out", "--open-mode=append", "--requeue",
			      "--signal=B:USR1@120", "--partition=gpu", "--time=0-01:01:00",
			      "--cpus-per-task=8", "--mem=16G", "--gpus-per-task=1",
			      "--constraint=a100", "--exclusive", "/w/job.sh", NULL};
	for (size_t i = 0; want[i]; i++) {
		assert_non_null(argv[i]);
		assert_string_equal(argv[i], want[i]);
	}
	assert_null(argv[sizeof want / sizeof want[0] - 1]);
	slurm_argv_free(argv);
}

static void test_times_and_sizes(void **state)
{
	(void)state;
	static const struct {
		const char *s;
		double sec;
	} ok[] = {{"90", 5400},      {"30:00", 1800},     {"04:00:00", 14400}, {"1-12", 129600},
		  {"1-12:30", 131400}, {"2-00:00:01", 172801}, {"90m", 5400},   {"4h", 14400},
		  {"1d", 86400},     {"45s", 45},         {"0:30", 30}};
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		double v = 0;
		if (!schema_slurm_time(ok[i].s, &v) || v != ok[i].sec)
			fail_msg("'%s': %g", ok[i].s, v);
	}
	static const char *const bad[] = {"",  "0",   "00:00:00", "-1",   "1-",    "a",  "1:2:3:4",
					  "2 hours", "1h30m", "1-2-3", "12:x", ":30", "1.5"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		double v;
		if (schema_slurm_time(bad[i], &v))
			fail_msg("'%s' accepted", bad[i]);
	}
	char b[32];
	slurm_format_time(b, sizeof b, 30);
	assert_string_equal(b, "0-00:01:00");
	slurm_format_time(b, sizeof b, 86400 + 3600 + 61);
	assert_string_equal(b, "1-01:02:00");
	assert_true(schema_slurm_mem_ok("16G"));
	assert_true(schema_slurm_mem_ok("500"));
	assert_true(schema_slurm_mem_ok("1T"));
	assert_false(schema_slurm_mem_ok("16GB"));
	assert_false(schema_slurm_mem_ok("G"));
	assert_false(schema_slurm_mem_ok("-1G"));
	assert_false(schema_slurm_mem_ok(""));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_queue_parse),
		cmocka_unit_test(test_states),
		cmocka_unit_test(test_log_verdict),
		cmocka_unit_test(test_script_and_argv),
		cmocka_unit_test(test_times_and_sizes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
