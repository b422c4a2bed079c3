/* matmul_cpu: the CPU matmul on oneDNN. fp32 through dnnl_sgemm (row-major); bf16 (OPS_BF16)
 * through the matmul primitive with bf16 inputs and fp32 accumulation and output when the
 * CPU has AVX512-BF16 or AMX, otherwise by rounding the inputs to bf16 and multiplying in
 * fp32 (the same numerics, slower), so precision: bf16 means the same on every CPU.
 * bf16 primitives are cached by shape, and bf16 copies of frozen weights (OPS_CONST_B) by
 * address, reordered once into the blocked layout oneDNN's brgemm asks for (one copy per
 * orientation: x W^T forward, dy W backward); caches and scratch buffers are process-wide
 * and guarded by a mutex (the engine calls matmul from one thread). */
#include "backends/native/ops/cpu/ops_cpu_internal.h"

#include <dnnl.h>
#include <immintrin.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "backends/native/ops/ops.h"
#include "backends/native/ops/ops_math.h"
#include "common/banned.h"

bool ops_cpu_has_bf16(void)
{
	static int cached = -1;
	if (cached < 0) {
		/* Ask oneDNN which instruction set it will run, not /proc/cpuinfo: the two
		 * differ under DNNL_MAX_CPU_ISA, valgrind (its CPU has no AVX-512) or a VM
		 * that hides features, and only oneDNN's answer decides the bf16 kernels.
		 * The ISA values are bit masks that contain the lower levels. */
		unsigned isa = (unsigned)dnnl_get_effective_cpu_isa();
		unsigned want = (unsigned)dnnl_cpu_isa_avx512_core_bf16;
		cached = (isa & want) == want;
		const char *env = getenv("FTLAB_NO_BF16");
		if (env && *env && strcmp(env, "0") != 0)
			cached = 0;
	}
	return cached == 1;
}

static int amx_state; /* 1 when AMX runs, 0 when not (set once by amx_decide) */
static _Atomic int amx_allowed = 1;
static pthread_once_t amx_once = PTHREAD_ONCE_INIT;

static void amx_decide(void)
{
	amx_state = 0;
#if defined(__x86_64__) && defined(__linux__)
	unsigned isa = (unsigned)dnnl_get_effective_cpu_isa();
	unsigned want = (unsigned)dnnl_cpu_isa_avx512_core_amx;
	const char *env = getenv("FTLAB_NO_AMX");
	if ((isa & want) != want || (env && *env && strcmp(env, "0") != 0) || !ops_cpu_has_bf16())
		return;
	/* Linux hands out the tile state per process on request (ARCH_REQ_XCOMP_PERM for
	 * XTILEDATA, feature 18); without it the first tile instruction faults. */
	amx_state = syscall(SYS_arch_prctl, 0x1023, 18) == 0;
#endif
}

bool ops_cpu_has_amx(void)
{
	pthread_once(&amx_once, amx_decide);
	return amx_state == 1 && amx_allowed;
}

void ops_cpu_amx_allow(bool allow)
{
	amx_allowed = allow;
}

/* A cached bf16 primitive. With OPS_CONST_B in flags its weights are in the blocked layout
 * oneDNN chose (wmd); otherwise every operand is plain row-major. failed: creation failed,
 * remembered so the caller falls back at once. */
struct bf16_prim {
	int m, n, k;
	unsigned flags; /* OPS_TA | OPS_TB | OPS_CONST_B */
	float alpha;
	bool accumulate, failed;
	unsigned long used; /* bf16_tick at the last use: the least recently used is evicted */
	dnnl_memory_desc_t wmd;
	dnnl_primitive_t prim;
	dnnl_memory_t ma, mb, mc;
};

#define BF16_CACHE 96 /* training needs ~40; evaluation adds a few per prompt length */

static pthread_mutex_t bf16_lock = PTHREAD_MUTEX_INITIALIZER;
static dnnl_engine_t bf16_engine;
static dnnl_stream_t bf16_stream;
static struct bf16_prim bf16_cache[BF16_CACHE];
static int bf16_n;
static unsigned long bf16_tick;
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

/* The plain (row-major) bf16 layout of B, (K,N) logically; stored (N,K) when transposed. */
static bool plain_b_md(dnnl_memory_desc_t *out, int n, int k, bool tb)
{
	dnnl_dims_t dims = {k, n}, st = {n, 1}, st_t = {1, k};
	return dnnl_memory_desc_init_by_strides(out, 2, dims, dnnl_bf16, tb ? st_t : st) ==
	       dnnl_success;
}

/* A full cache gives up its least recently used primitive (its slot is returned empty), so
 * every shape keeps running in bf16 however many an evaluation brings. */
static struct bf16_prim *bf16_evict(void)
{
	struct bf16_prim *p = &bf16_cache[0];
	for (int i = 1; i < BF16_CACHE; i++)
		if (bf16_cache[i].used < p->used)
			p = &bf16_cache[i];
	if (p->prim)
		dnnl_primitive_destroy(p->prim);
	if (p->ma)
		dnnl_memory_destroy(p->ma);
	if (p->mb)
		dnnl_memory_destroy(p->mb);
	if (p->mc)
		dnnl_memory_destroy(p->mc);
	*p = (struct bf16_prim){0};
	return p;
}

/* The primitive for this shape, created on first use; NULL when it cannot run. With
 * OPS_CONST_B the weights layout is oneDNN's choice (format any) or want_w when given (a
 * weight already blocked for another m); an implementation other than brgemm, or a layout
 * other than want_w, gives NULL, and the caller uses plain layouts. */
static struct bf16_prim *bf16_get(int m, int n, int k, unsigned flags, float alpha,
				  bool accumulate, const dnnl_memory_desc_t *want_w)
{
	for (int i = 0; i < bf16_n; i++) {
		struct bf16_prim *p = &bf16_cache[i];
		if (p->m == m && p->n == n && p->k == k && p->flags == flags &&
		    p->alpha == alpha && p->accumulate == accumulate) {
			p->used = ++bf16_tick;
			if (p->failed || (want_w && !dnnl_memory_desc_equal(want_w, &p->wmd)))
				return NULL;
			return p;
		}
	}
	struct bf16_prim *p = bf16_n < BF16_CACHE ? &bf16_cache[bf16_n++] : bf16_evict();
	*p = (struct bf16_prim){.m = m, .n = n, .k = k, .flags = flags, .alpha = alpha,
				.accumulate = accumulate, .failed = true, .used = ++bf16_tick};
	dnnl_memory_desc_t da, db, dc;
	dnnl_dims_t dims_a = {m, k}, dims_b = {k, n}, dims_c = {m, n};
	/* A is (M,K) logically; stored (K,M) when transposed */
	dnnl_dims_t st_a = {k, 1}, st_at = {1, m}, st_c = {n, 1};
	if (dnnl_memory_desc_init_by_strides(&da, 2, dims_a, dnnl_bf16,
					     (flags & OPS_TA) ? st_at : st_a) != dnnl_success ||
	    dnnl_memory_desc_init_by_strides(&dc, 2, dims_c, dnnl_f32, st_c) != dnnl_success)
		return NULL;
	if (!(flags & OPS_CONST_B)) {
		if (!plain_b_md(&db, n, k, flags & OPS_TB))
			return NULL;
	} else if (want_w) {
		db = *want_w;
	} else if (dnnl_memory_desc_init_by_tag(&db, 2, dims_b, dnnl_bf16, dnnl_format_tag_any) !=
		   dnnl_success) {
		return NULL;
	}
	dnnl_matmul_desc_t desc;
	if (dnnl_matmul_desc_init(&desc, &da, &db, NULL, &dc) != dnnl_success)
		return NULL;
	dnnl_primitive_attr_t attr = NULL;
	dnnl_post_ops_t po = NULL;
	dnnl_primitive_desc_t pd = NULL;
	bool ok = dnnl_primitive_attr_create(&attr) == dnnl_success;
	if (ok && alpha != 1.0f)
		ok = dnnl_primitive_attr_set_output_scales(attr, 1, 0, &alpha) == dnnl_success;
	if (ok && accumulate) {
		ok = dnnl_post_ops_create(&po) == dnnl_success &&
		     dnnl_post_ops_append_sum(po, 1.0f) == dnnl_success &&
		     dnnl_primitive_attr_set_post_ops(attr, po) == dnnl_success;
	}
	ok = ok && dnnl_primitive_desc_create(&pd, &desc, attr, bf16_engine, NULL) == dnnl_success;
	if (ok && (flags & OPS_CONST_B)) {
		const char *impl = NULL;
		const dnnl_memory_desc_t *w = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
		ok = dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) ==
			     dnnl_success &&
		     impl && strncmp(impl, "brg", 3) == 0 && w &&
		     (!want_w || dnnl_memory_desc_equal(want_w, w));
		if (ok)
			p->wmd = *w;
	} else {
		p->wmd = db;
	}
	ok = ok && dnnl_primitive_create(&p->prim, pd) == dnnl_success;
	ok = ok && dnnl_memory_create(&p->ma, &da, bf16_engine, DNNL_MEMORY_NONE) == dnnl_success;
	ok = ok && dnnl_memory_create(&p->mb, &p->wmd, bf16_engine, DNNL_MEMORY_NONE) ==
			   dnnl_success;
	ok = ok && dnnl_memory_create(&p->mc, &dc, bf16_engine, DNNL_MEMORY_NONE) == dnnl_success;
	if (pd)
		dnnl_primitive_desc_destroy(pd);
	if (po)
		dnnl_post_ops_destroy(po);
	if (attr)
		dnnl_primitive_attr_destroy(attr);
	p->failed = !ok;
	return ok ? p : NULL;
}

/* bf16 copies of frozen weights (OPS_CONST_B, and every non-fp32 weight of matmul_w), keyed
 * by the address of the weight's memory and its element count: the plain row-major copy
 * (blocked false) and the copies reordered to oneDNN's blocked layout md for B as is and B
 * transposed (tb); all dropped when the key's bytes [p, p + bytes) are freed or written
 * through to_device (ops_cpu_bf16_forget). */
struct bf16_const {
	const void *p;
	size_t n, bytes;
	bool blocked, tb;
	dnnl_memory_desc_t md;
	void *h;
};

/* Where a frozen weight's values come from when its copies are made: fp32 memory (b), or
 * a weight in a storage type (w, dequantized by rows). */
struct bf16_src {
	const float *b;
	const struct ops_w *w;
};

static const void *src_key(const struct bf16_src *s)
{
	return s->w ? s->w->data : (const void *)s->b;
}

static size_t src_bytes(const struct bf16_src *s, size_t n)
{
	return s->w ? (size_t)s->w->n * ggml_row_bytes(s->w->type, (size_t)s->w->k)
		    : n * sizeof(float);
}

/* dst (n bf16) = the source's values rounded to bf16 (n = all of its elements); false when
 * out of memory */
static bool src_to_bf16(uint16_t *dst, const struct bf16_src *s, size_t n)
{
	if (!s->w) {
		ops_cpu_to_bf16(dst, s->b, n);
		return true;
	}
	int k = s->w->k, rows = (int)((1u << 20) / (unsigned)k);
	rows = rows < 1 ? 1 : rows;
	float *tmp = aligned_alloc(64, ((size_t)rows * k * sizeof(float) + 63) / 64 * 64);
	if (!tmp)
		return false;
	for (int r0 = 0; r0 < s->w->n; r0 += rows) {
		int r1 = r0 + rows < s->w->n ? r0 + rows : s->w->n;
		ops_cpu_dequant_rows(tmp, s->w, r0, r1);
		ops_cpu_to_bf16(dst + (size_t)r0 * k, tmp, (size_t)(r1 - r0) * k);
	}
	free(tmp);
	return true;
}
static struct bf16_const *bf16_consts;
static size_t bf16_nconst, bf16_capconst;

void ops_cpu_bf16_forget(const void *p, size_t bytes)
{
	pthread_mutex_lock(&bf16_lock);
	const char *lo = p, *hi = lo + bytes;
	for (size_t i = 0; i < bf16_nconst;) {
		const char *q = (const char *)bf16_consts[i].p;
		if (q < hi && q + bf16_consts[i].bytes > lo) {
			/* swap-remove: slot i gets the last entry, so no pointer is freed twice */
			free(bf16_consts[i].h); // NOLINT(clang-analyzer-unix.Malloc)
			bf16_consts[i] = bf16_consts[--bf16_nconst];
		} else {
			i++;
		}
	}
	pthread_mutex_unlock(&bf16_lock);
}

static struct bf16_const *const_find(const void *b, size_t n, bool blocked, bool tb)
{
	for (size_t i = 0; i < bf16_nconst; i++) {
		struct bf16_const *e = &bf16_consts[i];
		if (e->p == b && e->n == n && e->blocked == blocked && (!blocked || e->tb == tb))
			return e;
	}
	return NULL;
}

static struct bf16_const *const_add(struct bf16_const e)
{
	if (bf16_nconst == bf16_capconst) {
		size_t cap = bf16_capconst ? 2 * bf16_capconst : 64;
		struct bf16_const *nc = realloc(bf16_consts, cap * sizeof *nc);
		if (!nc)
			return NULL;
		bf16_consts = nc;
		bf16_capconst = cap;
	}
	bf16_consts[bf16_nconst] = e;
	return &bf16_consts[bf16_nconst++];
}

static bool grow(uint16_t **buf, size_t *cap, size_t n);

/* The cached plain bf16 copy of a source of n values, made on first use; NULL when out of
 * memory. */
static const uint16_t *bf16_const_get(const struct bf16_src *s, size_t n)
{
	struct bf16_const *e = const_find(src_key(s), n, false, false);
	if (e)
		return e->h;
	uint16_t *h = aligned_alloc(64, (n * 2 + 63) / 64 * 64);
	if (!h)
		return NULL;
	if (!src_to_bf16(h, s, n) ||
	    !const_add((struct bf16_const){.p = src_key(s), .n = n, .bytes = src_bytes(s, n),
					   .h = h})) {
		free(h);
		return NULL;
	}
	return h;
}

/* The copy of weight s as the (k, n) B operand (stored (n, k) when tb) in the blocked layout
 * md: rounded to bf16 (from the plain copy when there is one, else in scratch) and
 * reordered by oneDNN, once; NULL when that fails. */
static const void *bf16_blocked_make(const struct bf16_src *s, int n, int k, bool tb,
				     const dnnl_memory_desc_t *md)
{
	size_t nb = (size_t)k * n, bytes = dnnl_memory_desc_get_size(md);
	struct bf16_const *plain = const_find(src_key(s), nb, false, false);
	const uint16_t *src = plain ? plain->h : NULL;
	if (!src) {
		if (!grow(&bf16_buf_b, &bf16_cap_b, nb) || !src_to_bf16(bf16_buf_b, s, nb))
			return NULL;
		src = bf16_buf_b;
	}
	void *h = bytes ? aligned_alloc(64, (bytes + 63) / 64 * 64) : NULL;
	if (!h)
		return NULL;
	dnnl_memory_desc_t pmd;
	dnnl_memory_t from = NULL, to = NULL;
	dnnl_primitive_desc_t rpd = NULL;
	dnnl_primitive_t r = NULL;
	bool ok = plain_b_md(&pmd, n, k, tb) &&
		  dnnl_memory_create(&from, &pmd, bf16_engine, (void *)src) == dnnl_success &&
		  dnnl_memory_create(&to, md, bf16_engine, h) == dnnl_success &&
		  dnnl_reorder_primitive_desc_create(&rpd, &pmd, bf16_engine, md, bf16_engine,
						     NULL) == dnnl_success &&
		  dnnl_primitive_create(&r, rpd) == dnnl_success;
	if (ok) {
		dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
		ok = dnnl_primitive_execute(r, bf16_stream, 2, args) == dnnl_success &&
		     dnnl_stream_wait(bf16_stream) == dnnl_success;
	}
	if (r)
		dnnl_primitive_destroy(r);
	if (rpd)
		dnnl_primitive_desc_destroy(rpd);
	if (to)
		dnnl_memory_destroy(to);
	if (from)
		dnnl_memory_destroy(from);
	if (ok && !const_add((struct bf16_const){.p = src_key(s), .n = nb,
						 .bytes = src_bytes(s, nb), .blocked = true,
						 .tb = tb, .md = *md, .h = h}))
		ok = false;
	if (!ok) {
		free(h);
		return NULL;
	}
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

/* dst = bf16 of src, the bits of ops_f32_to_bf16 (round to nearest even, NaN kept quiet):
 * done with integer AVX-512 (16 lanes, masked tail) where the compiler targets it. The
 * hardware vcvtneps2bf16 is not used: it flushes subnormal inputs to zero. */
static void to_bf16_range(uint16_t *dst, const float *src, size_t n)
{
	size_t i = 0;
#ifdef __AVX512F__
	const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
	const __m512i bias = _mm512_set1_epi32(0x7fff), one = _mm512_set1_epi32(1),
		      quiet = _mm512_set1_epi32(0x40);
	for (; i < n; i += 16) {
		__mmask16 lanes = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1u);
		__m512i u = _mm512_maskz_loadu_epi32(lanes, src + i);
		__mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, abs_mask), inf);
		__m512i hi = _mm512_srli_epi32(u, 16);
		__m512i r = _mm512_add_epi32(_mm512_add_epi32(u, bias), _mm512_and_si512(hi, one));
		r = _mm512_mask_or_epi32(_mm512_srli_epi32(r, 16), nan, hi, quiet);
		_mm512_mask_cvtepi32_storeu_epi16(dst + i, lanes, r);
	}
#endif
	for (; i < n; i++)
		dst[i] = ops_f32_to_bf16(src[i]);
}

#define BF16_CHUNK 16384

void ops_cpu_to_bf16(uint16_t *dst, const float *src, size_t n)
{
	size_t nchunks = (n + BF16_CHUNK - 1) / BF16_CHUNK;
#pragma omp parallel for schedule(static) if (nchunks > 4)
	for (size_t c = 0; c < nchunks; c++) {
		size_t i0 = c * BF16_CHUNK;
		to_bf16_range(dst + i0, src + i0, n - i0 < BF16_CHUNK ? n - i0 : BF16_CHUNK);
	}
}

/* Returns false when the bf16 path cannot run (caller falls back to fp32). beta is 0 or 1.
 * A frozen weight (OPS_CONST_B; always for a source with w) is used from its blocked copy
 * when oneDNN's brgemm takes one for this shape, else from its plain copy. */
static bool matmul_bf16(float *c, const float *a, const struct bf16_src *s, int m, int n, int k,
			unsigned flags, float alpha, float beta)
{
	const float *b = s->b;
	if (beta != 0.0f && beta != 1.0f)
		return false;
	bool ok = false, acc = beta != 0.0f, tb = (flags & OPS_TB) != 0;
	unsigned key = flags & (OPS_TA | OPS_TB);
	pthread_mutex_lock(&bf16_lock);
	if (!bf16_init())
		goto done;
	size_t na = (size_t)m * k, nb = (size_t)k * n;
	struct bf16_prim *p = NULL;
	const void *hb = NULL;
	if (flags & OPS_CONST_B) {
		struct bf16_const *e = const_find(src_key(s), nb, true, tb);
		p = bf16_get(m, n, k, key | OPS_CONST_B, alpha, acc, e ? &e->md : NULL);
		if (p)
			hb = e ? e->h : bf16_blocked_make(s, n, k, tb, &p->wmd);
		if (!hb)
			p = NULL;
	}
	if (!p) {
		p = bf16_get(m, n, k, key, alpha, acc, NULL);
		if (!p)
			goto done;
		hb = (flags & OPS_CONST_B) ? bf16_const_get(s, nb) : NULL;
		if ((flags & OPS_CONST_B) && !hb && s->w)
			goto done; /* no fp32 source to round per call */
	}
	if (!grow(&bf16_buf_a, &bf16_cap_a, na) ||
	    (!hb && !grow(&bf16_buf_b, &bf16_cap_b, nb)))
		goto done;
	ops_cpu_to_bf16(bf16_buf_a, a, na);
	if (!hb) {
		ops_cpu_to_bf16(bf16_buf_b, b, nb);
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
	struct bf16_src src = {.b = b};
	if ((flags & OPS_BF16) && ops_cpu_has_bf16() &&
	    matmul_bf16(c, a, &src, m, n, k, flags, alpha, beta))
		return;
	if ((flags & OPS_BF16) && ops_cpu_matmul_bf16_rounded(c, a, b, m, n, k, flags, alpha, beta))
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

bool ops_cpu_matmul_bf16_rounded(float *c, const float *a, const float *b, int m, int n,
				 int k, unsigned flags, float alpha, float beta)
{
	size_t na = (size_t)m * (size_t)k, nb = (size_t)k * (size_t)n;
	float *ra = malloc(na * sizeof(float)), *rb = malloc(nb * sizeof(float));
	if (!ra || !rb) {
		free(ra);
		free(rb);
		return false;
	}
	for (size_t i = 0; i < na; i++)
		ra[i] = ops_bf16_to_f32(ops_f32_to_bf16(a[i]));
	for (size_t i = 0; i < nb; i++)
		rb[i] = ops_bf16_to_f32(ops_f32_to_bf16(b[i]));
	ops_cpu_matmul(c, ra, rb, m, n, k, flags & (OPS_TA | OPS_TB), alpha, beta);
	free(ra);
	free(rb);
	return true;
}

bool ops_cpu_matmul_bf16_w(float *c, const float *a, const struct ops_w *w, int m,
			   unsigned flags, float alpha, float beta)
{
	bool tb = (flags & OPS_TB) != 0;
	struct bf16_src src = {.w = w};
	return matmul_bf16(c, a, &src, m, tb ? w->n : w->k, tb ? w->k : w->n,
			   (flags & OPS_TB) | OPS_CONST_B, alpha, beta);
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
