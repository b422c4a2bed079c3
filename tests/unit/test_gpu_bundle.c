/* The GPU bundle without a GPU (make gpu-bundle, scripts/gpu-check.sh, docs/cuda.md): make
 * test builds BUILD/gpu-bundle-test from the main build's objects; this test checks its
 * parts (MANIFEST, none over 60 MiB), that every library the programs need is in the
 * bundle or is glibc's/the driver's (readelf's NEEDED entries, followed through lib/),
 * then runs gpu-check.sh in quick mode: its CPU half must pass and it must exit 2 with
 * the device probe's "no CUDA device" reason, leaving at most 8 files in $OUT; and its
 * rehearsal (the CPU backend standing in for CUDA) tests the device half's plumbing. A
 * bundle missing a library and a corrupted payload must be refused. On a machine with a
 * CUDA device the check itself is left to the user (it runs minutes of GPU work). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backends/native/ops/cuda/ops_cuda.h"
#include "common/banned.h"

static char bundle[1024], tmp[1024];
static char out[1 << 20];

/* Runs a shell command; its stdout+stderr in out; returns the exit status. */
static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
	char cmd[8192];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof cmd, fmt, ap);
	va_end(ap);
	FILE *f = popen(cmd, "r");
	if (!f)
		return -1;
	size_t n = fread(out, 1, sizeof out - 1, f);
	out[n] = '\0';
	int st = pclose(f);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int setup(void **state)
{
	(void)state;
	const char *bin = getenv("FTLAB_BIN");
	if (!bin)
		return 0;
	char b[1024];
	snprintf(b, sizeof b, "%s", bin);
	snprintf(bundle, sizeof bundle, "%s/gpu-bundle-test", dirname(b));
	snprintf(tmp, sizeof tmp, "/tmp/ftlab-gpu-bundle-XXXXXX");
	if (!mkdtemp(tmp))
		return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	if (tmp[0] && strncmp(tmp, "/tmp/ftlab-gpu-bundle-", 22) == 0)
		(void)sh("rm -rf '%s'", tmp);
	return 0;
}

/* The bundle make test builds must exist in the default build (skip in check/valgrind
 * builds, which do not make one). */
static bool have_bundle(void)
{
	if (!getenv("FTLAB_BIN"))
		return false;
	struct stat st;
	char m[1200];
	snprintf(m, sizeof m, "%s/MANIFEST", bundle);
	if (stat(m, &st) == 0)
		return true;
	char b[1024];
	snprintf(b, sizeof b, "%s", getenv("FTLAB_BIN"));
	char *dir = dirname(b);
	if (strcmp(basename(dir), "build") == 0)
		fail_msg("%s is missing: `make test` builds it (make gpu-bundle-test)", m);
	fprintf(stderr, "skip: no GPU bundle beside this build (%s)\n", bundle);
	return false;
}

static void test_parts_and_manifest(void **state)
{
	(void)state;
	if (!have_bundle())
		skip();
	assert_int_equal(sh("cat '%s/MANIFEST'", bundle), 0);
	const char *keys[] = {"commit ", "host_arch ", "cuda ", "glibc_min ",
			      "synth_sha256_tiny ", "libs ", "part "};
	for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
		if (!strstr(out, keys[i]))
			fail_msg("MANIFEST lacks '%s':\n%s", keys[i], out);
	assert_non_null(strstr(out, ops_cuda_built() ? "cuda yes" : "cuda no"));
	/* no file of the bundle over 60 MiB (a transfer's limit) */
	assert_int_equal(sh("find '%s' -maxdepth 1 -type f -size +61440k | wc -l", bundle), 0);
	assert_string_equal(out, "0\n");
	/* the parts are what MANIFEST says */
	assert_int_equal(sh("cd '%s' && grep '^part ' MANIFEST | sed 's/^part //' | "
			    "sha256sum -c --quiet -",
			    bundle),
			 0);
}

/* Every NEEDED entry of every program and bundled library is in lib/ (or lib/fallback),
 * or is glibc's, the CUDA driver's or cuBLAS: the bundle does not lean on the -dev
 * libraries of the machine that built it. */
static void test_library_closure(void **state)
{
	(void)state;
	if (!have_bundle())
		skip();
	assert_int_equal(sh("cd '%s' && xz -dc '%s'/payload.tar.xz* | tar -xf - 2>&1", tmp, bundle),
			 0);
	int rc = sh(
		"cd '%s/ftlab-gpu' && for f in bin/* tests/* lib/*.so* lib/fallback/*; do "
		"  readelf -d \"$f\" | sed -n 's/.*Shared library: \\[\\(.*\\)\\]/\\1/p' | "
		"  while read -r n; do case \"$n\" in "
		"    libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|libresolv.so*|"
		"    ld-linux*|libcuda.so*|libcublas*) ;; "
		"    *) [ -e lib/\"$n\" ] || [ -e lib/fallback/\"$n\" ] || "
		"       echo \"$f needs $n, not in the bundle\";; esac; done; done",
		tmp);
	assert_int_equal(rc, 0);
	if (out[0])
		fail_msg("%s", out);
	/* the programs find lib/ through their run path */
	assert_int_equal(sh("readelf -d '%s/ftlab-gpu/bin/ftlab' | grep -c 'RPATH.*ORIGIN/../lib'",
			    tmp),
			 0);
	/* and the dynamic loader agrees: ldd resolves ftlab's libraries inside the bundle */
	assert_int_equal(sh("cd '%s/ftlab-gpu' && ldd bin/ftlab | "
			    "grep -c \"$(readlink -f lib)\\|bin/../lib/\"",
			    tmp),
			 0);
	assert_true(strtol(out, NULL, 10) >= 6);
	/* the CUDA runtime is linked in: a machine needs only the driver */
	assert_int_equal(sh("readelf -d '%s/ftlab-gpu/bin/ftlab' | grep -c 'libcudart'", tmp), 1);
	assert_string_equal(out, "0\n");
}

static int count_files(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return -1;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static void test_check_without_device(void **state)
{
	(void)state;
	if (!have_bundle())
		skip();
	char why[512] = "";
	if (ops_cuda_probe(NULL, why, sizeof why) == 0) {
		fprintf(stderr, "skip: a CUDA device is present: run %s/gpu-check.sh for the "
				"whole check\n",
			bundle);
		skip();
	}
	int rc = sh("cd '%s' && cp -r '%s' b && OUT='%s/out' GPU_CHECK_WORK='%s/work' "
		    "GPU_CHECK_QUICK=1 b/gpu-check.sh 2>&1",
		    tmp, bundle, tmp, tmp);
	if (rc != 2)
		fail_msg("gpu-check.sh exited %d, want 2:\n%s", rc, out);
	/* the last lines: the table, then the reason */
	const char *last = strrchr(out, '\n');
	assert_non_null(last);
	assert_non_null(strstr(out, "gpu-check: no CUDA device: "));
	assert_non_null(strstr(out, "the CPU half ran"));
	const char *rows[] = {"| 0 libraries ", "| 0 synthetic model ", "| 0 selftest cpu ",
			      "| 2 cpu run lora-qv ", "| 2 cpu run full-bf16 "};
	for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
		const char *r = strstr(out, rows[i]);
		if (!r)
			fail_msg("no row '%s':\n%s", rows[i], out);
		const char *bar = strchr(r + 1, '|');
		if (!bar || strncmp(bar, "| ok ", 5) != 0)
			fail_msg("row '%s' did not pass:\n%s", rows[i], out);
	}
	assert_non_null(strstr(out, "| 1 cuda device "));
	assert_null(strstr(out, "FAIL"));
	/* what comes back from a device machine: at most 8 files, the table among them */
	char o[1200];
	snprintf(o, sizeof o, "%s/out", tmp);
	int n = count_files(o);
	assert_true(n >= 4 && n <= 8);
	assert_int_equal(sh("grep -c '2 cpu run full-bf16 *| ok' '%s/out/summary.txt'", tmp), 0);
	assert_int_equal(sh("python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); "
			    "print(r[\"exit\"], len(r[\"rows\"]))' '%s/out/results.json'",
			    tmp),
			 0);
	assert_int_equal(strncmp(out, "2 ", 2), 0);
	/* the runs' metrics are in the logs: loss and gradient norm of every step */
	assert_int_equal(sh("tar -tzf '%s/out/logs.tar.gz' | grep -c 'ws-cpu-full-bf16/runs/.*/metrics.jsonl'",
			    tmp),
			 0);
	assert_int_equal(sh("grep -h '\"grad_norm\"' %s/work/ws-cpu-*/runs/*/metrics.jsonl | wc -l",
			    tmp),
			 0);
	assert_int_equal(strtol(out, NULL, 10), 2 * 2); /* 2 configurations, 2 steps each */
}

/* The device half's plumbing (runs, comparisons, bench rows, the table) with the CPU
 * backend standing in for CUDA: a run compared with itself agrees bit for bit. */
static void test_check_rehearsal(void **state)
{
	(void)state;
	if (!have_bundle())
		skip();
	char why[512] = "";
	if (ops_cuda_probe(NULL, why, sizeof why) == 0)
		skip();
	int rc = sh("cd '%s' && rm -rf r && cp -r '%s' r && OUT='%s/out-r' GPU_CHECK_WORK='%s/work-r' "
		    "GPU_CHECK_QUICK=1 GPU_CHECK_REHEARSE=1 r/gpu-check.sh 2>&1",
		    tmp, bundle, tmp, tmp);
	if (rc != 2 || !strstr(out, "REHEARSAL passed"))
		fail_msg("rehearsal: exit %d:\n%s", rc, out);
	const char *rows[] = {"| 2 cuda vs cpu lora-qv ", "| 2 cuda vs cpu full-bf16 ",
			      "| 3 bench lora ", "| 3 bench full ", "| 3 bench decode "};
	for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
		const char *r = strstr(out, rows[i]);
		if (!r)
			fail_msg("no row '%s':\n%s", rows[i], out);
		const char *bar = strchr(r + 1, '|');
		if (!bar || (strncmp(bar, "| ok ", 5) != 0 && strncmp(bar, "| info ", 7) != 0))
			fail_msg("row '%s' neither ok nor info:\n%s", rows[i], out);
	}
	assert_non_null(strstr(out, "worst step rel 0.0e+00"));
	assert_non_null(strstr(out, "generations identical 2/2"));
	assert_non_null(strstr(out, "tokens/s, MFU"));
	assert_null(strstr(out, "FAIL"));
}

/* A library missing from the bundle is found (ftlab would load the build machine's copy
 * here, which a GPU machine does not have), and a damaged payload is refused. */
static void test_check_refuses_broken_bundles(void **state)
{
	(void)state;
	if (!have_bundle())
		skip();
	int rc = sh("cd '%s' && rm -rf u && mkdir u && xz -dc '%s'/payload.tar.xz* | tar -C u -xf - "
		    "&& cp '%s/MANIFEST' u/ && rm u/ftlab-gpu/lib/libyaml-0.so.2 && "
		    "OUT='%s/out-u' GPU_CHECK_WORK='%s/work-u' u/ftlab-gpu/scripts/gpu-check.sh 2>&1",
		    tmp, bundle, bundle, tmp, tmp);
	if (rc != 1 || !strstr(out, "libyaml-0.so.2 from outside the bundle"))
		fail_msg("a bundle without libyaml: exit %d\n%s", rc, out);
	assert_non_null(strstr(out, "| 0 libraries "));
	rc = sh("cd '%s' && rm -rf c && cp -r '%s' c && "
		"printf 'x' | dd of=\"$(ls c/payload.tar.xz* | head -n 1)\" bs=1 seek=1000 "
		"conv=notrunc 2>/dev/null && OUT='%s/out-c' c/gpu-check.sh 2>&1",
		tmp, bundle, tmp);
	if (rc != 2 || !strstr(out, "does not match its MANIFEST"))
		fail_msg("a damaged payload: exit %d\n%s", rc, out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parts_and_manifest),
		cmocka_unit_test(test_library_closure),
		cmocka_unit_test(test_check_without_device),
		cmocka_unit_test(test_check_rehearsal),
		cmocka_unit_test(test_check_refuses_broken_bundles),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
