/* matmul_cpu: the CPU matmul on oneDNN. fp32 through dnnl_sgemm (row-major); bf16 (OPS_BF16)
 * through the matmul primitive with bf16 inputs and fp32 accumulation and output, used
 * only when the CPU has AVX512-BF16 or AMX (otherwise OPS_BF16 falls back to fp32).
 * bf16 primitives are cached by shape, and bf16 copies of frozen weights (OPS_CONST_B) by
 * address; caches and scratch buffers are process-wide and guarded by a mutex (the engine
 * calls matmul from one thread). */
#include "backends/native/ops/cpu/ops_cpu_internal.h"

#include <dnnl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/native/ops/ops.h"
#include "backends/native/ops/ops_math.h"

bool ops_cpu_has_bf16(void)
{
	static int cached = -1;
	if (cached < 0) {
		__builtin_cpu_init();
		cached = 0;
		FILE *f = fopen("/proc/cpuinfo", "r");
		if (f) {
			char line[8192];
			while (fgets(line, sizeof line, f))
				if (strncmp(line, "flags", 5) == 0) {
					if (strstr(line, " avx512_bf16") || strstr(line, " amx_bf16"))
						cached = 1;
					break;
				}
			fclose(f);
		}
		const char *env = getenv("FTLAB_NO_BF16");
		if (env && *env && strcmp(env, "0") != 0)
			cached = 0;
	}
	return cached == 1;
}

struct bf16_prim {
	int m, n, k;
	unsigned flags;
	float alpha;
	bool accumulate;
	dnnl_primitive_t prim;
	dnnl_memory_t ma, mb, mc;
};

#define BF16_CACHE 64

static pthread_mutex_t bf16_lock = PTHREAD_MUTEX_INITIALIZER;
static dnnl_engine_t bf16_engine;
static dnnl_stream_t bf16_stream;
static struct bf16_prim bf16_cache[BF16_CACHE];
static int bf16_n;
static uint16_t *bf16_buf_a, *bf16_buf_b;
static size_t bf16_cap_a, bf16_cap_b;

static bool bf16_init(void)
{
	if (bf16_engine)
		return true;
	if (dnnl_engine_create(&bf16_engine, dnnl_cpu, 0) != dnnl_success)
		return false;
	if (dnnl_stream_create(&bf16_stream, bf16_engine, dnnl_stream_default_flags) !=
	    dnnl_success)
		return false;
	return true;
}

static struct bf16_prim *bf16_get(int m, int n, int k, unsigned flags, float alpha,
				  bool accumulate)
{
	for (int i = 0; i < bf16_n; i++) {
		struct bf16_prim *p = &bf16_cache[i];
		if (p->m == m && p->n == n && p->k == k && p->flags == flags &&
		    p->alpha == alpha && p->accumulate == accumulate)
			return p;
	}
	if (bf16_n == BF16_CACHE)
		return NULL;
	dnnl_memory_desc_t da, db, dc;
	dnnl_dims_t dims_a = {m, k}, dims_b = {k, n}, dims_c = {m, n};
	/* A is (M,K) logically; stored (K,M) when transposed */
	dnnl_dims_t st_a = {k, 1}, st_at = {1, m}, st_b = {n, 1}, st_bt = {1, k}, st_c = {n, 1};
	if (dnnl_memory_desc_init_by_strides(&da, 2, dims_a, dnnl_bf16,
					     (flags & OPS_TA) ? st_at : st_a) != dnnl_success ||
	    dnnl_memory_desc_init_by_strides(&db, 2, dims_b, dnnl_bf16,
					     (flags & OPS_TB) ? st_bt : st_b) != dnnl_success ||
	    dnnl_memory_desc_init_by_strides(&dc, 2, dims_c, dnnl_f32, st_c) != dnnl_success)
		return NULL;
	dnnl_matmul_desc_t desc;
	if (dnnl_matmul_desc_init(&desc, &da, &db, NULL, &dc) != dnnl_success)
		return NULL;
	dnnl_primitive_attr_t attr = NULL;
	dnnl_post_ops_t po = NULL;
	dnnl_primitive_desc_t pd = NULL;
	struct bf16_prim *p = &bf16_cache[bf16_n];
	bool ok = dnnl_primitive_attr_create(&attr) == dnnl_success;
	if (ok && alpha != 1.0f)
		ok = dnnl_primitive_attr_set_output_scales(attr, 1, 0, &alpha) == dnnl_success;
	if (ok && accumulate) {
		ok = dnnl_post_ops_create(&po) == dnnl_success &&
		     dnnl_post_ops_append_sum(po, 1.0f) == dnnl_success &&
		     dnnl_primitive_attr_set_post_ops(attr, po) == dnnl_success;
	}
	ok = ok && dnnl_primitive_desc_create(&pd, &desc, attr, bf16_engine, NULL) == dnnl_success;
	ok = ok && dnnl_primitive_create(&p->prim, pd) == dnnl_success;
	ok = ok && dnnl_memory_create(&p->ma, &da, bf16_engine, DNNL_MEMORY_NONE) == dnnl_success;
	ok = ok && dnnl_memory_create(&p->mb, &db, bf16_engine, DNNL_MEMORY_NONE) == dnnl_success;
	ok = ok && dnnl_memory_create(&p->mc, &dc, bf16_engine, DNNL_MEMORY_NONE) == dnnl_success;
	if (pd)
		dnnl_primitive_desc_destroy(pd);
	if (po)
		dnnl_post_ops_destroy(po);
	if (attr)
		dnnl_primitive_attr_destroy(attr);
	if (!ok)
		return NULL;
	p->m = m;
	p->n = n;
	p->k = k;
	p->flags = flags;
	p->alpha = alpha;
	p->accumulate = accumulate;
	bf16_n++;
	return p;
}

/* bf16 copies of frozen weights (OPS_CONST_B), keyed by address and size; dropped when
 * their memory is freed or written through to_device (ops_cpu_bf16_forget). */
struct bf16_const {
	const float *p;
	size_t n;
	uint16_t *h;
};
static struct bf16_const *bf16_consts;
static size_t bf16_nconst, bf16_capconst;

void ops_cpu_bf16_forget(const void *p, size_t bytes)
{
	pthread_mutex_lock(&bf16_lock);
	const char *lo = p, *hi = lo + bytes;
	for (size_t i = 0; i < bf16_nconst;) {
		const char *q = (const char *)bf16_consts[i].p;
		if (q < hi && q + bf16_consts[i].n * sizeof(float) > lo) {
			/* swap-remove: slot i gets the last entry, so no pointer is freed twice */
			free(bf16_consts[i].h); // NOLINT(clang-analyzer-unix.Malloc)
			bf16_consts[i] = bf16_consts[--bf16_nconst];
		} else {
			i++;
		}
	}
	pthread_mutex_unlock(&bf16_lock);
}

static void to_bf16(uint16_t *dst, const float *src, size_t n);

/* The cached bf16 copy of b (n floats), made on first use; NULL when out of memory. */
static const uint16_t *bf16_const_get(const float *b, size_t n)
{
	for (size_t i = 0; i < bf16_nconst; i++)
		if (bf16_consts[i].p == b && bf16_consts[i].n == n)
			return bf16_consts[i].h;
	if (bf16_nconst == bf16_capconst) {
		size_t cap = bf16_capconst ? 2 * bf16_capconst : 64;
		struct bf16_const *nc = realloc(bf16_consts, cap * sizeof *nc);
		if (!nc)
			return NULL;
		bf16_consts = nc;
		bf16_capconst = cap;
	}
	uint16_t *h = aligned_alloc(64, (n * 2 + 63) / 64 * 64);
	if (!h)
		return NULL;
	to_bf16(h, b, n);
	bf16_consts[bf16_nconst++] = (struct bf16_const){b, n, h};
	return h;
}

static bool grow(uint16_t **buf, size_t *cap, size_t n)
{
	if (*cap >= n)
		return true;
	uint16_t *nb = aligned_alloc(64, (n * 2 + 63) / 64 * 64);
	if (!nb)
		return false;
	free(*buf);
	*buf = nb;
	*cap = n;
	return true;
}

static void to_bf16(uint16_t *dst, const float *src, size_t n)
{
#pragma omp parallel for schedule(static) if (n > 65536)
	for (size_t i = 0; i < n; i++)
		dst[i] = ops_f32_to_bf16(src[i]);
}

/* Returns false when the bf16 path cannot run (caller falls back to fp32). beta is 0 or 1. */
static bool matmul_bf16(float *c, const float *a, const float *b, int m, int n, int k,
			unsigned flags, float alpha, float beta)
{
	if (beta != 0.0f && beta != 1.0f)
		return false;
	bool ok = false;
	pthread_mutex_lock(&bf16_lock);
	if (!bf16_init())
		goto done;
	struct bf16_prim *p = bf16_get(m, n, k, flags & (OPS_TA | OPS_TB), alpha, beta != 0.0f);
	if (!p)
		goto done;
	size_t na = (size_t)m * k, nb = (size_t)k * n;
	const uint16_t *hb = (flags & OPS_CONST_B) ? bf16_const_get(b, nb) : NULL;
	if (!grow(&bf16_buf_a, &bf16_cap_a, na) ||
	    (!hb && !grow(&bf16_buf_b, &bf16_cap_b, nb)))
		goto done;
	to_bf16(bf16_buf_a, a, na);
	if (!hb) {
		to_bf16(bf16_buf_b, b, nb);
		hb = bf16_buf_b;
	}
	if (dnnl_memory_set_data_handle(p->ma, bf16_buf_a) != dnnl_success ||
	    dnnl_memory_set_data_handle(p->mb, (void *)hb) != dnnl_success ||
	    dnnl_memory_set_data_handle(p->mc, c) != dnnl_success)
		goto done;
	dnnl_exec_arg_t args[3] = {
		{DNNL_ARG_SRC, p->ma}, {DNNL_ARG_WEIGHTS, p->mb}, {DNNL_ARG_DST, p->mc}};
	ok = dnnl_primitive_execute(p->prim, bf16_stream, 3, args) == dnnl_success &&
	     dnnl_stream_wait(bf16_stream) == dnnl_success;
done:
	pthread_mutex_unlock(&bf16_lock);
	return ok;
}

void ops_cpu_matmul(float *c, const float *a, const float *b, int m, int n, int k,
		    unsigned flags, float alpha, float beta)
{
	if (m <= 0 || n <= 0)
		return;
	if (k <= 0) {
		for (size_t i = 0; i < (size_t)m * n; i++)
			c[i] = beta == 0.0f ? 0.0f : c[i] * beta;
		return;
	}
	if ((flags & OPS_BF16) && ops_cpu_has_bf16() &&
	    matmul_bf16(c, a, b, m, n, k, flags, alpha, beta))
		return;
	if (m == 1 && (flags & (OPS_TA | OPS_TB)) == OPS_TB) { /* one row: gemv_cpu.c */
		ops_cpu_gemv(c, a, b, n, k, alpha, beta);
		return;
	}
	if (m >= 2 && m <= 8 && (flags & (OPS_TA | OPS_TB)) == OPS_TB) { /* gemm_small_cpu.c */
		ops_cpu_gemm_small(c, a, b, m, n, k, alpha, beta);
		return;
	}
	if (beta == 0.0f) /* sgemm may read C even with beta 0; NaN * 0 would leak through */
		memset(c, 0, (size_t)m * n * sizeof(float));
	char ta = (flags & OPS_TA) ? 'T' : 'N', tb = (flags & OPS_TB) ? 'T' : 'N';
	dnnl_dim_t lda = (flags & OPS_TA) ? m : k, ldb = (flags & OPS_TB) ? k : n;
	dnnl_status_t st = dnnl_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, n);
	if (st != dnnl_success) {
		fprintf(stderr, "ftlab: internal error: dnnl_sgemm failed (%d)\n", (int)st);
		abort();
	}
}

void ops_cpu_gemm_ld(bool ta, bool tb, int m, int n, int k, float alpha, const float *a,
		     int lda, const float *b, int ldb, float beta, float *c, int ldc)
{
	dnnl_status_t st = dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, alpha, a, lda, b,
				      ldb, beta, c, ldc);
	if (st != dnnl_success) {
		fprintf(stderr, "ftlab: internal error: dnnl_sgemm failed (%d)\n", (int)st);
		abort();
	}
}
