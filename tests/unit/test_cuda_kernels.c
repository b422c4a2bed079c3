/* Checks the device code in the built binary with cuobjdump (no GPU needed): cubins for
 * sm_80 and sm_90 are embedded, every kernel of ops_cuda.cu is present in both, and none
 * of them uses local memory or stack beyond cosf/sinf's (register arrays of the attention kernels must stay
 * in registers). Skipped when this build has no CUDA (SAN=1, no nvcc) or cuobjdump is not
 * found ($CUOBJDUMP, PATH, $FTLAB_ROOT/.deps/cuobjdump/bin from scripts/deps.sh --test,
 * $CUDA_HOME/bin, /usr/local/cuda/bin, triton's copy). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backends/native/ops/cuda/ops_cuda.h"
#include "common/banned.h"

static const char *const kernels[] = {
	"k_f32_to_bf16",     "k_scale_or_zero",    "k_add",           "k_axpy",
	"k_scale",           "k_bias_add",         "k_bias_backward", "k_dropout_fwd",
	"k_dropout_bwd",     "k_rmsnorm_fwd",      "k_rmsnorm_bwd_dx", "k_rmsnorm_bwd_dw",
	"k_layernorm_fwd",   "k_layernorm_bwd_dx", "k_layernorm_bwd_dwdb", "k_rope",
	"k_att_fwd",         "k_att_bwd_q",        "k_att_bwd_kv",    "k_swiglu_fwd",
	"k_swiglu_bwd",      "k_gelu_fwd",         "k_gelu_bwd",      "k_geglu_fwd",
	"k_geglu_bwd",       "k_embed_fwd",
	"k_embed_bwd",       "k_ce_fwd",           "k_ce_bwd",        "k_sumsq",
	"k_adamw",           "k_fill_random",
};
#define N_KERNELS (sizeof kernels / sizeof kernels[0])

static char tool[1024];

static bool find_cuobjdump(void)
{
	const char *env = getenv("CUOBJDUMP");
	if (env && access(env, X_OK) == 0) {
		snprintf(tool, sizeof tool, "%s", env);
		return true;
	}
	FILE *f = popen("command -v cuobjdump 2>/dev/null", "r");
	if (f) {
		bool ok = fgets(tool, sizeof tool, f) != NULL;
		pclose(f);
		tool[strcspn(tool, "\n")] = '\0';
		if (ok && tool[0] && access(tool, X_OK) == 0)
			return true;
	}
	const char *root = getenv("FTLAB_ROOT"); /* scripts/deps.sh --test puts one here */
	if (root) {
		snprintf(tool, sizeof tool, "%s/.deps/cuobjdump/bin/cuobjdump", root);
		if (access(tool, X_OK) == 0)
			return true;
	}
	const char *home = getenv("CUDA_HOME");
	if (home) {
		snprintf(tool, sizeof tool, "%s/bin/cuobjdump", home);
		if (access(tool, X_OK) == 0)
			return true;
	}
	snprintf(tool, sizeof tool, "/usr/local/cuda/bin/cuobjdump");
	if (access(tool, X_OK) == 0)
		return true;
	glob_t g;
	bool found = false;
	if (glob("/usr/local/lib/python3*/dist-packages/triton/backends/nvidia/bin/cuobjdump", 0,
		 NULL, &g) == 0 && g.gl_pathc > 0) {
		snprintf(tool, sizeof tool, "%s", g.gl_pathv[0]);
		found = access(tool, X_OK) == 0;
	}
	globfree(&g);
	return found;
}

/* The program's own executable: it links libftlab.a and so the CUDA fatbin. */
static const char *binary(void)
{
	static char path[1024];
	ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
	if (n <= 0)
		return NULL;
	path[n] = '\0';
	return path;
}

static char *run(const char *args)
{
	char cmd[3072];
	snprintf(cmd, sizeof cmd, "'%s' %s '%s' 2>&1", tool, args, binary());
	FILE *f = popen(cmd, "r");
	assert_non_null(f);
	size_t cap = 1 << 20, n = 0;
	char *out = malloc(cap);
	assert_non_null(out);
	size_t r;
	while ((r = fread(out + n, 1, cap - 1 - n, f)) > 0) {
		n += r;
		if (n + 1 == cap) {
			cap *= 2;
			out = realloc(out, cap);
			assert_non_null(out);
		}
	}
	out[n] = '\0';
	int st = pclose(f);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		fail_msg("cuobjdump %s failed:\n%.2000s", args, out);
	return out;
}

static bool setup_ok(void)
{
	if (!ops_cuda_built()) {
		fprintf(stderr, "skip: this build has no CUDA\n");
		return false;
	}
	if (!find_cuobjdump()) {
		fprintf(stderr, "skip: cuobjdump not found\n");
		return false;
	}
	return true;
}

static void test_elf_arches(void **state)
{
	(void)state;
	if (!setup_ok())
		skip();
	char *out = run("--list-elf");
	assert_non_null(strstr(out, "sm_80.cubin"));
	assert_non_null(strstr(out, "sm_90.cubin"));
	free(out);
}

/* Each "Function <mangled>:" line of -res-usage under each "arch = sm_XX" header, with the
 * next line's STACK and LOCAL sizes. */
static void test_kernels_and_resources(void **state)
{
	(void)state;
	if (!setup_ok())
		skip();
	char *out = run("-res-usage");
	int seen[N_KERNELS][2];
	memset(seen, 0, sizeof seen);
	int arch = -1;
	char *save = NULL;
	char *prev_fn = NULL;
	for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (strstr(line, "arch = sm_80"))
			arch = 0;
		else if (strstr(line, "arch = sm_90"))
			arch = 1;
		else if (strstr(line, "arch = "))
			arch = -1;
		char *fn = strstr(line, "Function ");
		if (fn) {
			prev_fn = fn + 9;
			continue;
		}
		if (prev_fn && arch >= 0 && strstr(line, "REG:")) {
			for (size_t k = 0; k < N_KERNELS; k++) {
				char mangled[128];
				snprintf(mangled, sizeof mangled, "_Z%zu%s", strlen(kernels[k]),
					 kernels[k]);
				size_t ml = strlen(mangled);
				/* the length prefix makes a prefix match exact (k_scale is
				 * _Z7k_scale..., k_scale_or_zero _Z15k_scale_or_zero...) */
				if (strncmp(prev_fn, mangled, ml) != 0)
					continue;
				seen[k][arch]++;
				const char *st = strstr(line, "STACK:"), *lo = strstr(line, "LOCAL:");
				assert_non_null(st);
				assert_non_null(lo);
				/* k_rope: cosf/sinf keep a small stack buffer for the
				 * reduction of large angles (positions up to the context) */
				long max_stack = strcmp(kernels[k], "k_rope") == 0 ? 64 : 0;
				if (strtol(st + 6, NULL, 10) > max_stack ||
				    strtol(lo + 6, NULL, 10) != 0)
					fail_msg("%s (sm_%d) uses stack/local memory: %s", kernels[k],
						 arch ? 90 : 80, line);
			}
			prev_fn = NULL;
		}
	}
	for (size_t k = 0; k < N_KERNELS; k++) {
		if (seen[k][0] != 1 || seen[k][1] != 1)
			fail_msg("kernel %s: found %d times for sm_80, %d for sm_90", kernels[k],
				 seen[k][0], seen[k][1]);
	}
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_elf_arches),
		cmocka_unit_test(test_kernels_and_resources),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
