/* The launcher keys reach Slurm: `ftlab run --detach` with a stand-in `sbatch` first on
 * PATH (it records its arguments and the batch script, and answers a job id) shows each key
 * as the option or script line it becomes, and a run without them shows none of those.
 * The cluster tests run the real Slurm; this one needs none. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/util.h"
#include "tests/unit/scratch.h"
#include "common/banned.h"

static const char *const fake_sbatch =
	"#!/bin/sh\n"
	"for a in \"$@\"; do printf '%s\\n' \"$a\"; done > \"$SBATCH_LOG\"\n"
	"for a in \"$@\"; do last=$a; done\n"
	"cp \"$last\" \"$SBATCH_LOG.script\"\n"
	"echo 4242\n";

static const char *const head =
	"name: sl\nmodel: {base: base.bin}\ndata: {train: data.jsonl}\n"
	"backend: {type: exec, command: [sh, t.sh]}\n";

static const char *const bare = "launcher: {type: slurm}\nsweep:\n  parameters:\n    seed: [1, 2]\n";

/* Runs `ftlab run exp.yaml --detach` in dir with the stand-in sbatch; returns what it
 * recorded (arguments, then the script), or NULL when sbatch was not called. */
static char *submit(const char *dir, const char *ws, const char *tail)
{
	char text[1024];
	snprintf(text, sizeof text, "%s%s", head, tail);
	scratch_put("exp.yaml", text);
	char log[512], cmd[2048];
	snprintf(log, sizeof log, "%s/sbatch.log", dir);
	remove(log);
	snprintf(cmd, sizeof cmd,
		 "cd '%s' && PATH='%s/bin':\"$PATH\" SBATCH_LOG='%s' '%s' --workspace '%s' run "
		 "exp.yaml --detach >out.txt 2>err.txt",
		 dir, dir, log, getenv("FTLAB_BIN"), ws);
	if (system(cmd) != 0) {
		snprintf(cmd, sizeof cmd, "cat '%s/err.txt' >&2", dir);
		(void)!system(cmd);
		fail_msg("ftlab run --detach failed");
	}
	struct diag d;
	diag_init(&d);
	char *args = NULL, *script = NULL;
	size_t n;
	if (file_read_all(&args, &n, log, 1u << 20, &d) != 0)
		return NULL;
	char sp[600];
	snprintf(sp, sizeof sp, "%s.script", log);
	assert_int_equal(file_read_all(&script, &n, sp, 1u << 20, &d), 0);
	char *both = NULL;
	assert_true(asprintf(&both, "%s\n----\n%s", args, script) > 0);
	free(args);
	free(script);
	return both;
}

/* keys: launcher launcher.type launcher.partition launcher.account launcher.qos launcher.time launcher.cpus_per_task launcher.mem launcher.gpus_per_task launcher.array_parallelism launcher.sbatch_args launcher.setup */
static void test_launcher_keys_reach_sbatch(void **state)
{
	(void)state;
	const char *dir = scratch_open("launcher-keys");
	scratch_put("bin/sbatch", fake_sbatch);
	char bin[512];
	snprintf(bin, sizeof bin, "%s/bin/sbatch", dir);
	assert_int_equal(chmod(bin, 0755), 0);
	scratch_put("data.jsonl", "{\"text\": \"a\"}\n");
	scratch_put("base.bin", "x");
	char ws[512];
	static const char *const keys =
		"launcher:\n  type: slurm\n  partition: gpu-a\n  account: proj-7\n  qos: high\n"
		"  time: 90m\n  cpus_per_task: 6\n  mem: 12G\n  gpus_per_task: 2\n"
		"  array_parallelism: 3\n  sbatch_args: [--constraint=a100]\n"
		"  setup: [\"module load cuda/12.4\"]\n"
		"sweep:\n  parameters:\n    seed: [1, 2]\n";
	static const char *const want[] = {
		"--partition=gpu-a\n", "--account=proj-7\n", "--qos=high\n",
		"--time=0-01:30:00\n", "--cpus-per-task=6\n", "--mem=12G\n",
		"--gpus-per-task=2\n", "--array=0-1%3\n", "--constraint=a100\n",
		"module load cuda/12.4\n"};

	snprintf(ws, sizeof ws, "%s/ws1", dir);
	char *got = submit(dir, ws, keys);
	assert_non_null(got);
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
		if (!strstr(got, want[i]))
			fail_msg("sbatch did not get '%.*s':\n%s", (int)strlen(want[i]) - 1, want[i],
				 got);
	free(got);

	/* Without the keys: Slurm's defaults, none of those options. */
	snprintf(ws, sizeof ws, "%s/ws2", dir);
	got = submit(dir, ws, bare);
	assert_non_null(got);
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
		if (strstr(got, want[i]))
			fail_msg("'%s' without the key that asks for it:\n%s", want[i], got);
	assert_non_null(strstr(got, "--array=0-1\n"));
	free(got);

	/* launcher.type local: no sbatch at all (the exec trainer runs here and fails, which
	 * `run` reports with its exit status). */
	snprintf(ws, sizeof ws, "%s/ws3", dir);
	char cmd[2048];
	snprintf(cmd, sizeof cmd,
		 "cd '%s' && PATH='%s/bin':\"$PATH\" SBATCH_LOG='%s/sbatch.log' '%s' --workspace "
		 "'%s' run exp.yaml -s launcher.type=local >out.txt 2>err.txt",
		 dir, dir, dir, getenv("FTLAB_BIN"), ws);
	char log[512];
	snprintf(log, sizeof log, "%s/sbatch.log", dir);
	remove(log);
	(void)!system(cmd);
	struct stat sb;
	assert_int_not_equal(stat(log, &sb), 0);
	assert_int_equal(scratch_close(), 0);
}

int main(void)
{
	if (!getenv("FTLAB_BIN")) {
		fprintf(stderr, "FTLAB_BIN is not set (run through scripts/run-tests.sh)\n");
		return 1;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_launcher_keys_reach_sbatch),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
