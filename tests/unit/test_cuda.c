/* Unit tests for the CUDA backend's host side, on whatever machine runs them: the device
 * probe (no driver, no device, or a real device), ops_get's choice for "auto" and "cuda",
 * backend_cuda() availability and its run refusing without a device, the device line for
 * provenance, and `ftlab selftest` (cpu passes; cuda passes on a device, else exit 2
 * with "no CUDA device: ..."; bad arguments exit 2). On a machine with a GPU the cuda
 * selftest here is the full comparison against the CPU backend. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "backends/backend.h"
#include "backends/native/ops/cuda/gemm_map.h"
#include "backends/native/ops/cuda/ops_cuda.h"
#include "backends/native/ops/ops.h"
#include "common/rng.h"
#include "common/banned.h"

static bool have_device(char *why, size_t len)
{
	return ops_cuda_probe(NULL, why, len) == 0;
}

static void test_probe_and_selection(void **state)
{
	(void)state;
#ifdef FTLAB_HAVE_CUDA
	assert_true(ops_cuda_built());
#else
	assert_false(ops_cuda_built());
#endif
	char why[512] = "";
	struct ops_cuda_device dev;
	int rc = ops_cuda_probe(&dev, why, sizeof why);
	if (rc == 0) {
		/* a device: the table exists and auto picks it */
		assert_true(dev.count >= 1);
		assert_true(dev.cc_major >= 8);
		assert_true(dev.total_mem > 0);
		assert_true(strlen(dev.name) > 0);
		assert_non_null(ops_cuda());
		assert_string_equal(ops_cuda()->name, "cuda");
		assert_ptr_equal(ops_get("auto"), ops_cuda());
		assert_ptr_equal(ops_get("cuda"), ops_cuda());
		assert_true(backend_cuda()->available(why, sizeof why));
	} else {
		assert_int_equal(rc, FT_EUNSUPP);
		assert_true(strncmp(why, "no CUDA device: ", 16) == 0 ||
			    strstr(why, "compute capability") != NULL ||
			    strstr(why, "cuBLAS cannot be loaded") != NULL);
		assert_true(strlen(why) > 16); /* carries the runtime's reason */
		assert_null(ops_cuda());
		assert_null(ops_get("cuda"));
		assert_ptr_equal(ops_get("auto"), ops_cpu()); /* the fallback */
		char why2[512] = "";
		assert_false(backend_cuda()->available(why2, sizeof why2));
		assert_string_equal(why, why2);
		/* a run is refused with the same reason */
		struct diag d;
		diag_init(&d);
		struct run_ctx ctx;
		memset(&ctx, 0, sizeof ctx);
		assert_int_equal(backend_cuda()->run(&ctx, &d), FT_EUNSUPP);
		assert_string_equal(d.text, why);
		assert_int_equal(diag_exit_status(d.code), 2);
		/* nothing failed inside the backend */
		diag_init(&d);
		assert_int_equal(ops_cuda_check(&d), 0);
	}
	assert_string_equal(ops_get("cpu")->name, "cpu");
	assert_null(ops_get("tpu"));
	assert_string_equal(backend_name(backend_cuda()), "cuda");
	/* the probe is cached and stable */
	char again[512] = "";
	assert_int_equal(ops_cuda_probe(NULL, again, sizeof again), rc);
	if (rc)
		assert_string_equal(why, again);
}

static void test_describe(void **state)
{
	(void)state;
	struct ops_cuda_device dev;
	memset(&dev, 0, sizeof dev);
	snprintf(dev.name, sizeof dev.name, "NVIDIA H100 80GB HBM3");
	dev.cc_major = 9;
	dev.sm_count = 132;
	dev.total_mem = (size_t)80 << 30;
	dev.free_mem = (size_t)79 << 30;
	dev.driver_version = 12040;
	dev.runtime_version = 13000;
	char line[600];
	ops_cuda_describe(line, sizeof line, &dev);
	assert_string_equal(line, "NVIDIA H100 80GB HBM3, compute capability 9.0, 132 SMs, "
				  "80.0 GiB (79.0 free), driver 12.4, runtime 13.0");
	/* the device memory line of a CUDA run's "device_memory" event and of ftlab bench */
	struct ops_cuda_mem mem = {0, (size_t)5 << 29, (size_t)1 << 29, (size_t)3 << 30, (size_t)4 << 30,
				   (size_t)80 << 30};
	ops_cuda_mem_describe(line, sizeof line, &mem);
	assert_string_equal(line, "peak 3.00 GiB (allocations 2.50, scratch 0.50); device in use "
				  "4.00 of 80.0 GiB");
}

/* Without a device the peaks are not measured and the memory counters stay 0; with one
 * they are real numbers and the peak covers what was allocated. */
static void test_peaks_and_memory(void **state)
{
	(void)state;
	char why[512] = "";
	struct diag d;
	diag_init(&d);
	struct ops_cuda_peaks pk;
	if (!have_device(why, sizeof why)) {
		assert_int_equal(ops_cuda_measure_peaks(&pk, &d), FT_EUNSUPP);
		assert_string_equal(d.text, why);
		assert_true(pk.bf16_tflops == 0 && pk.tf32_tflops == 0 && pk.copy_gbs == 0);
		struct ops_cuda_mem m = ops_cuda_mem();
		assert_int_equal(m.peak_bytes, 0);
		assert_int_equal(m.device_total, 0);
		return;
	}
	assert_int_equal(ops_cuda_measure_peaks(&pk, &d), 0);
	assert_true(pk.bf16_tflops > 1 && pk.tf32_tflops > 1 && pk.copy_gbs > 10);
	ops_cuda_mem_reset_peak();
	const struct ops *cu = ops_cuda();
	float *p = cu->alloc((size_t)64 << 20);
	assert_non_null(p);
	struct ops_cuda_mem m = ops_cuda_mem();
	assert_true(m.peak_bytes >= ((size_t)64 << 20));
	assert_true(m.device_used >= ((size_t)64 << 20) && m.device_total > m.device_used);
	cu->free(p);
	assert_int_equal(ops_cuda_check(&d), 0);
}

/* Column-major GEMM with BLAS semantics (what cublasSgemm/GemmEx compute):
 * C(i,j) = alpha sum_p opA(i,p) opB(p,j) + beta C(i,j), X(r,c) = X[r + c*ld]. */
static void colmajor_gemm(int ta, int tb, int m, int n, int k, float alpha, const float *a,
			  int lda, const float *b, int ldb, float beta, float *c, int ldc)
{
	for (int j = 0; j < n; j++)
		for (int i = 0; i < m; i++) {
			double s = 0;
			for (int p = 0; p < k; p++) {
				double av = ta ? a[p + (size_t)i * lda] : a[i + (size_t)p * lda];
				double bv = tb ? b[j + (size_t)p * ldb] : b[p + (size_t)j * ldb];
				s += av * bv;
			}
			float *cij = &c[i + (size_t)j * ldc];
			*cij = (float)(alpha * s + (beta != 0.0f ? beta * *cij : 0.0));
		}
}

/* The arguments ops_cuda.cu hands cuBLAS (gemm_map.h), run through a column-major
 * reference, give the CPU backend's row-major result for every transpose form. */
static void test_gemm_mapping(void **state)
{
	(void)state;
	const int m = 5, n = 7, k = 3;
	struct rng r;
	rng_seed(&r, 4, 4);
	float a[5 * 3], b[3 * 7], c0[5 * 7];
	for (size_t i = 0; i < 15; i++)
		a[i] = 2.0f * rng_uniform_f(&r) - 1.0f;
	for (size_t i = 0; i < 21; i++)
		b[i] = 2.0f * rng_uniform_f(&r) - 1.0f;
	for (size_t i = 0; i < 35; i++)
		c0[i] = 2.0f * rng_uniform_f(&r) - 1.0f;
	for (unsigned fl = 0; fl < 4; fl++)
		for (int acc = 0; acc <= 1; acc++) {
			float want[35], got[35];
			memcpy(want, c0, sizeof want);
			memcpy(got, c0, sizeof got);
			float beta = acc ? 1.0f : 0.0f;
			ops_cpu()->matmul(want, a, b, m, n, k, fl, 0.5f, beta);
			struct gemm_map g = gemm_map_rowmajor(fl, m, n, k);
			assert_int_equal(g.first_is_b, 1);
			colmajor_gemm(g.trans_first, g.trans_second, g.m, g.n, g.k, 0.5f, b,
				      g.ld_first, a, g.ld_second, beta, got, g.ldc);
			for (int i = 0; i < 35; i++)
				if (fabsf(got[i] - want[i]) > 1e-5f)
					fail_msg("flags %u beta %g: C[%d] = %g, cpu %g", fl,
						 (double)beta, i, (double)got[i], (double)want[i]);
		}
}

/* Runs the ftlab binary with args; returns the exit status, output (stdout+stderr) in out. */
static int run_ftlab(const char *args, char *out, size_t out_len)
{
	const char *bin = getenv("FTLAB_BIN");
	if (!bin)
		return -1;
	char cmd[1024];
	snprintf(cmd, sizeof cmd, "OMP_NUM_THREADS=1 '%s' %s 2>&1", bin, args);
	FILE *f = popen(cmd, "r");
	if (!f)
		return -1;
	size_t n = fread(out, 1, out_len - 1, f);
	out[n] = '\0';
	int st = pclose(f);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_selftest_cli(void **state)
{
	(void)state;
	if (!getenv("FTLAB_BIN"))
		skip();
	static char out[65536];
	char why[512] = "";
	bool dev = have_device(why, sizeof why);

	assert_int_equal(run_ftlab("selftest --backend cpu", out, sizeof out), 0);
	assert_non_null(strstr(out, "selftest: cpu backend"));
	assert_non_null(strstr(out, "gradients vs finite differences: ok"));
	assert_non_null(strstr(out, "selftest: passed"));
	assert_null(strstr(out, "FAIL"));

	int rc = run_ftlab("selftest --backend cuda", out, sizeof out);
	if (dev) {
		if (rc != 0)
			fail_msg("selftest --backend cuda on a device failed:\n%s", out);
		assert_non_null(strstr(out, "selftest: passed"));
	} else {
		assert_int_equal(rc, 2);
		char want[600];
		snprintf(want, sizeof want, "ftlab: error: %s\n", why);
		assert_string_equal(out, want);
	}

	/* no --backend: cuda when present, else cpu, saying why */
	assert_int_equal(run_ftlab("selftest", out, sizeof out), 0);
	assert_non_null(strstr(out, dev ? "selftest: cuda backend" : "selftest: cpu backend"));
	if (!dev)
		assert_non_null(strstr(out, why));

	/* cuBLAS is dlopen'ed by the CUDA backend, never loaded by every ftlab process
	 * (linking it costs ~1 s and 200 MB at each start) */
	char cmd[1200];
	snprintf(cmd, sizeof cmd, "readelf -d '%s' 2>/dev/null | grep -c 'NEEDED.*libcublas'",
		 getenv("FTLAB_BIN"));
	FILE *f = popen(cmd, "r");
	assert_non_null(f);
	char cnt[32] = "";
	if (!fgets(cnt, sizeof cnt, f))
		cnt[0] = '\0';
	pclose(f);
	assert_string_equal(cnt, "0\n");

	assert_int_equal(run_ftlab("selftest --backend tpu", out, sizeof out), 2);
	assert_non_null(strstr(out, "--backend must be cpu or cuda"));
	assert_int_equal(run_ftlab("selftest --fast", out, sizeof out), 2);
	assert_non_null(strstr(out, "usage: ftlab selftest"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_probe_and_selection),
		cmocka_unit_test(test_describe),
		cmocka_unit_test(test_peaks_and_memory),
		cmocka_unit_test(test_gemm_mapping),
		cmocka_unit_test(test_selftest_cli),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
