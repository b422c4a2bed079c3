/* Runs the CUDA kernels of backends/native/ops/cuda/ops_cuda.cu on the CPU: builds them
 * with g++ against tests/cuda_emu/cuda_emu.hpp (threads of a block as fibers, real barrier
 * semantics, a reference GEMM for cuBLAS) under AddressSanitizer and UBSan, links the
 * driver tests/cuda_emu/emu_main.c with libftlab.a, and runs every op against the CPU
 * backend. FTLAB_EMU_TRAIN=1 also runs a whole native-engine run (LoRA training with
 * checkpoints, evaluation with generation) on the emulated table behind ops_guard (the
 * host cannot touch its memory) against the CPU run (about 2 minutes here);
 * FTLAB_EMU_FULL=1 runs that and the whole selftest comparison on tiny models (minutes).
 * The binary is cached in BUILD/cuda_emu and rebuilt when a source is newer. Skipped without g++ or in builds without CUDA (SAN=1: its libftlab.a would need
 * the sanitizer flags of that build). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "backends/native/ops/cuda/ops_cuda.h"
#include "common/banned.h"

static double mtime(const char *path)
{
	struct stat st;
	if (stat(path, &st) != 0)
		return -1;
	return (double)st.st_mtim.tv_sec + st.st_mtim.tv_nsec * 1e-9;
}

static int sh(const char *cmd, char *out, size_t out_len)
{
	FILE *f = popen(cmd, "r");
	if (!f)
		return -1;
	size_t n = fread(out, 1, out_len - 1, f);
	out[n] = '\0';
	int st = pclose(f);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_kernels_on_cpu(void **state)
{
	(void)state;
	const char *root = getenv("FTLAB_ROOT"), *bin = getenv("FTLAB_BIN");
	if (!root || !bin || !ops_cuda_built()) {
		fprintf(stderr, "skip: needs FTLAB_ROOT, FTLAB_BIN and a build with CUDA\n");
		skip();
	}
	static char out[1 << 20];
	if (sh("command -v g++ >/dev/null 2>&1", out, sizeof out) != 0) {
		fprintf(stderr, "skip: g++ not found\n");
		skip();
	}
	char bdir[1024], tmp[1024];
	snprintf(tmp, sizeof tmp, "%s", bin);
	snprintf(bdir, sizeof bdir, "%s", dirname(tmp)); /* the build dir of FTLAB_BIN */
	char lib[1200], emu[1200], cu[1200], hdr[1200], drv[1200];
	snprintf(lib, sizeof lib, "%s/libftlab.a", bdir);
	snprintf(emu, sizeof emu, "%s/cuda_emu/emu", bdir);
	snprintf(cu, sizeof cu, "%s/backends/native/ops/cuda/ops_cuda.cu", root);
	snprintf(hdr, sizeof hdr, "%s/tests/cuda_emu/cuda_emu.hpp", root);
	snprintf(drv, sizeof drv, "%s/tests/cuda_emu/emu_main.c", root);
	char guard[1200], tiny[1200];
	snprintf(guard, sizeof guard, "%s/tests/unit/ops_guard.c", root);
	snprintf(tiny, sizeof tiny, "%s/tests/unit/tiny_model.c", root);
	double t = mtime(emu);
	if (t < 0 || t < mtime(lib) || t < mtime(cu) || t < mtime(hdr) || t < mtime(drv) ||
	    t < mtime(guard) || t < mtime(tiny)) {
		char cmd[8192];
		snprintf(cmd, sizeof cmd,
			 "set -e; cd '%s'; d='%s/cuda_emu'; mkdir -p \"$d\"; "
			 "san='-fsanitize=address,undefined -fno-omit-frame-pointer'; "
			 "g++ -std=c++20 -O1 -g -DFTLAB_CUDA_EMU -include tests/cuda_emu/cuda_emu.hpp "
			 "-I. -Wall -Wextra -Wno-unknown-pragmas -Wno-clobbered $san -x c++ "
			 "-c backends/native/ops/cuda/ops_cuda.cu -o \"$d/ops.o\" 2>&1; "
			 "for f in tests/cuda_emu/emu_main.c tests/unit/ops_guard.c "
			 "tests/unit/tiny_model.c; do gcc -std=c11 -D_GNU_SOURCE -O1 -g -I. -Wall "
			 "-Wextra $san -c $f -o \"$d/$(basename $f .c).o\" 2>&1; done; "
			 "g++ $san -o \"$d/emu.tmp\" \"$d/emu_main.o\" \"$d/ops_guard.o\" "
			 "\"$d/tiny_model.o\" \"$d/ops.o\" '%s' -fopenmp -lgit2 "
			 "-ljansson -lpcre2-8 -lyaml -lsqlite3 -ldnnl -lz -lm -lpthread "
			 "-L/usr/local/cuda/lib64 -Wl,-rpath,/usr/local/cuda/lib64 -lcublasLt "
			 "-lcublas -lcudart 2>&1; mv \"$d/emu.tmp\" \"$d/emu\"",
			 root, bdir, lib);
		int rc = sh(cmd, out, sizeof out);
		if (rc != 0)
			fail_msg("building the CUDA emulation failed:\n%s", out);
	}
	const char *full = getenv("FTLAB_EMU_FULL"), *train = getenv("FTLAB_EMU_TRAIN");
	bool all = full && strcmp(full, "1") == 0;
	bool tr = train && strcmp(train, "1") == 0;
	char cmd[2048];
	snprintf(cmd, sizeof cmd,
		 "ASAN_OPTIONS=detect_leaks=0 OMP_NUM_THREADS=1 '%s' %s 2>&1", emu,
		 all ? "" : tr ? "--train" : "--ops-only");
	int rc = sh(cmd, out, sizeof out);
	printf("%s", out);
	if (rc != 0 || !strstr(out, "emu: passed (0 failed)"))
		fail_msg("the emulated CUDA kernels differ from the CPU backend (exit %d)", rc);
	assert_non_null(strstr(out, "attention decode"));
	assert_non_null(strstr(out, "dropout masks identical to the cpu"));
	assert_null(strstr(out, "FAIL"));
	if (all || tr)
		assert_non_null(strstr(out, "train + eval run (guarded)"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kernels_on_cpu),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
