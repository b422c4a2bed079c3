/* ops_cuda: the CUDA implementation of struct ops (ops.h). Matmuls on cuBLAS (cublasGemmEx:
 * TF32 tensor cores for fp32, bf16 operands with fp32 accumulation for OPS_BF16); frozen
 * weights in their file's format (matmul_w) are dequantized with ops_quant.h's arithmetic:
 * in registers for 1-8 rows, else panel by panel into fp32 or bf16 tiles that cuBLAS
 * multiplies. Own kernels for everything else, built on ops_math.h. Everything
 * runs on the legacy default stream of device 0, so ops are ordered like the CPU's calls.
 * Reductions have a fixed order (block trees, per-column loops): no float atomics. */
#ifndef FTLAB_CUDA_EMU /* tests/cuda_emu/cuda_emu.hpp stands in for these on the CPU */
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <dlfcn.h>
#endif

#include <climits>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "backends/native/ops/cuda/gemm_map.h"
#include "backends/native/ops/cuda/ops_cuda_internal.h"
#include "backends/native/ops/ops.h"
#include "backends/native/ops/ops_math.h"

/* ---- cuBLAS, loaded when the backend starts ----
 * Linking libcublas would load it (and its 500 MB libcublasLt) into every ftlab process:
 * about a second and 200 MB before main() even for `ftlab ls`. So it is opened with
 * dlopen by the device probe, only when a device exists. */

struct blas_api {
	decltype(&cublasCreate_v2) create;
	decltype(&cublasSetPointerMode_v2) set_pointer_mode;
	decltype(&cublasSetMathMode) set_math_mode;
	/* spelled out: C++ sees an int64_t overload of cublasGemmEx too */
	cublasStatus_t (*gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int,
				  int, const void *, const void *, cudaDataType, int, const void *,
				  cudaDataType, int, const void *, void *, cudaDataType, int,
				  cublasComputeType_t, cublasGemmAlgo_t);
	decltype(&cublasGetStatusName) status_name;
	decltype(&cublasGetStatusString) status_string;
};
static blas_api g_api;

#define FT_STR2(x) #x
#define FT_STR(x) FT_STR2(x)

/* 0, or -1 with why filled. */
static int blas_load(char *why, size_t why_len)
{
	if (g_api.gemm_ex)
		return 0;
#ifdef FTLAB_CUDA_EMU
	(void)why;
	(void)why_len;
	g_api = blas_api{cublasCreate_v2, cublasSetPointerMode_v2, cublasSetMathMode,
			 cublasGemmEx,    cublasGetStatusName,     cublasGetStatusString};
	return 0;
#else
	const char *lib = "libcublas.so." FT_STR(CUBLAS_VER_MAJOR);
	void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		snprintf(why, why_len, "a CUDA device is present but cuBLAS cannot be loaded: %s",
			 dlerror());
		return -1;
	}
	blas_api a;
	const char *miss = NULL;
#define FT_SYM(field, name)                                                                   \
	do {                                                                                \
		a.field = (decltype(a.field))dlsym(h, name);                                \
		if (!a.field && !miss)                                                      \
			miss = name;                                                        \
	} while (0)
	FT_SYM(create, "cublasCreate_v2");
	FT_SYM(set_pointer_mode, "cublasSetPointerMode_v2");
	FT_SYM(set_math_mode, "cublasSetMathMode");
	FT_SYM(gemm_ex, "cublasGemmEx");
	FT_SYM(status_name, "cublasGetStatusName");
	FT_SYM(status_string, "cublasGetStatusString");
#undef FT_SYM
	if (miss) {
		snprintf(why, why_len, "%s has no %s", lib, miss);
		dlclose(h);
		return -1;
	}
	g_api = a; /* the library stays loaded for the life of the process */
	return 0;
#endif
}

static const char *blas_status_name(cublasStatus_t s)
{
	return g_api.status_name ? g_api.status_name(s) : "CUBLAS_STATUS_?";
}

static const char *blas_status_string(cublasStatus_t s)
{
	return g_api.status_string ? g_api.status_string(s) : "";
}

/* ---- error recording ---- */

static char g_err[1024];
static int g_err_kind; /* 0 none, 1 error, 2 out of memory */

static void err_record(int kind, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void err_record(int kind, const char *fmt, ...)
{
	if (g_err_kind)
		return; /* the first error wins; later ones are usually its consequences */
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(g_err, sizeof g_err, fmt, ap);
	va_end(ap);
	g_err_kind = kind;
	const char *ab = getenv("FTLAB_CUDA_ABORT");
	if (ab && *ab && strcmp(ab, "0") != 0) {
		fprintf(stderr, "ftlab: CUDA error: %s\n", g_err);
		abort();
	}
}

/* Invalid arguments are bugs of this file: abort with the call. Everything else (device
 * faults, out of memory, launch failures) is recorded for ops_cuda_check. */
static void ck_cuda(cudaError_t e, const char *call, const char *file, int line)
{
	if (e == cudaSuccess)
		return;
	if (e == cudaErrorInvalidValue || e == cudaErrorInvalidConfiguration ||
	    e == cudaErrorInvalidDevicePointer || e == cudaErrorInvalidPitchValue) {
		fprintf(stderr, "ftlab: internal error: %s failed: %s: %s (%s:%d)\n", call,
			cudaGetErrorName(e), cudaGetErrorString(e), file, line);
		abort();
	}
	err_record(e == cudaErrorMemoryAllocation ? 2 : 1, "%s failed: %s: %s (%s:%d)", call,
		   cudaGetErrorName(e), cudaGetErrorString(e), file, line);
}

static void ck_blas(cublasStatus_t s, const char *call, const char *file, int line)
{
	if (s == CUBLAS_STATUS_SUCCESS)
		return;
	if (s == CUBLAS_STATUS_INVALID_VALUE) {
		fprintf(stderr, "ftlab: internal error: %s failed: %s: %s (%s:%d)\n", call,
			blas_status_name(s), blas_status_string(s), file, line);
		abort();
	}
	err_record(s == CUBLAS_STATUS_ALLOC_FAILED ? 2 : 1, "%s failed: %s: %s (%s:%d)", call,
		   blas_status_name(s), blas_status_string(s), file, line);
}

#define CUDA_CHECK(call) ck_cuda((call), #call, __FILE__, __LINE__)
#define CUBLAS_CHECK(call) ck_blas((call), #call, __FILE__, __LINE__)
/* Every kernel launch goes through this: the launch error is checked with the kernel's
 * name (asynchronous faults surface at the next synchronising call). */
#ifndef FTLAB_CUDA_EMU
#define LAUNCH(kern, grid, block, ...)                                                        \
	do {                                                                                \
		kern<<<(grid), (block)>>>(__VA_ARGS__);                                     \
		ck_cuda(cudaGetLastError(), "launch " #kern, __FILE__, __LINE__);           \
	} while (0)
#else
#define LAUNCH(kern, grid, block, ...)                                                        \
	do {                                                                                \
		emu_launch(dim3(grid), dim3(block), [&] { kern(__VA_ARGS__); });            \
		ck_cuda(cudaGetLastError(), "launch " #kern, __FILE__, __LINE__);           \
	} while (0)
#endif

/* ---- device and memory bookkeeping ---- */

static cublasHandle_t g_blas;
static int g_state; /* 0 not started, 1 ready, -1 failed */
static bool g_tf32 = true;

struct alloc_rec {
	void *p;
	size_t bytes;
};
static struct alloc_rec *g_allocs;
static size_t g_n_allocs, g_cap_allocs;
static size_t g_alloc_bytes, g_alloc_peak, g_scratch_bytes;
static size_t g_total_peak; /* max of g_alloc_bytes + g_scratch_bytes */

static void note_peak(void)
{
	if (g_alloc_bytes + g_scratch_bytes > g_total_peak)
		g_total_peak = g_alloc_bytes + g_scratch_bytes;
}

/* Scratch buffers owned by the backend (not the model's plan). Each grows to the largest
 * size asked for (the first step), then is reused: no allocation in later steps. */
enum { SCR_BF16_A, SCR_BF16_B, SCR_ATT_STATS, SCR_PARTIAL, SCR_COUNT, SCR_WPANEL, SCR_N };
static void *g_scr[SCR_N];
static size_t g_scr_cap[SCR_N];

static void *scratch(int slot, size_t bytes)
{
	if (g_scr_cap[slot] >= bytes && g_scr[slot])
		return g_scr[slot];
	size_t want = (bytes + 255) / 256 * 256;
	if (g_scr[slot]) {
		CUDA_CHECK(cudaFree(g_scr[slot]));
		g_scratch_bytes -= g_scr_cap[slot];
		g_scr[slot] = NULL;
		g_scr_cap[slot] = 0;
	}
	void *p = NULL;
	cudaError_t e = cudaMalloc(&p, want);
	if (e != cudaSuccess) {
		(void)cudaGetLastError();
		size_t fr = 0, tot = 0;
		(void)cudaMemGetInfo(&fr, &tot);
		err_record(2, "cudaMalloc of %zu bytes of backend scratch failed: %s (%zu of %zu "
			      "bytes free)", want, cudaGetErrorString(e), fr, tot);
		return NULL;
	}
	g_scr[slot] = p;
	g_scr_cap[slot] = want;
	g_scratch_bytes += want;
	note_peak();
	return p;
}

static bool started(void)
{
	return g_state == 1;
}

static unsigned blocks_for(size_t n, int threads)
{
	size_t b = (n + (size_t)threads - 1) / (size_t)threads;
	return (unsigned)(b > (1u << 20) ? (1u << 20) : (b ? b : 1));
}

static void *cu_alloc(size_t bytes)
{
	if (!started())
		return NULL;
	size_t n = (bytes + 255) / 256 * 256;
	if (n == 0)
		n = 256;
	void *p = NULL;
	cudaError_t e = cudaMalloc(&p, n);
	if (e != cudaSuccess) {
		(void)cudaGetLastError(); /* not sticky; clear it */
		size_t fr = 0, tot = 0;
		(void)cudaMemGetInfo(&fr, &tot);
		err_record(2, "cudaMalloc of %zu bytes failed: %s (%zu of %zu bytes free, %zu "
			      "already allocated by ftlab)", n, cudaGetErrorString(e), fr, tot,
			   g_alloc_bytes + g_scratch_bytes);
		return NULL;
	}
	CUDA_CHECK(cudaMemset(p, 0, n));
	if (g_n_allocs == g_cap_allocs) {
		size_t nc = g_cap_allocs ? 2 * g_cap_allocs : 64;
		struct alloc_rec *na = (struct alloc_rec *)realloc(g_allocs, nc * sizeof *na);
		if (!na) {
			CUDA_CHECK(cudaFree(p));
			err_record(2, "out of host memory tracking a device allocation");
			return NULL;
		}
		g_allocs = na;
		g_cap_allocs = nc;
	}
	g_allocs[g_n_allocs].p = p;
	g_allocs[g_n_allocs].bytes = n;
	g_n_allocs++;
	g_alloc_bytes += n;
	if (g_alloc_bytes > g_alloc_peak)
		g_alloc_peak = g_alloc_bytes;
	note_peak();
	return p;
}

static void cu_free(void *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < g_n_allocs; i++)
		if (g_allocs[i].p == p) {
			g_alloc_bytes -= g_allocs[i].bytes;
			g_allocs[i] = g_allocs[--g_n_allocs];
			break;
		}
	CUDA_CHECK(cudaFree(p));
}

static void cu_to_device(void *dst, const void *src, size_t bytes)
{
	if (bytes)
		CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}

static void cu_to_host(void *dst, const void *src, size_t bytes)
{
	if (bytes)
		CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}

static void cu_zero(float *dst, size_t n)
{
	if (n)
		CUDA_CHECK(cudaMemsetAsync(dst, 0, n * sizeof(float), 0));
}

static void cu_copy_rows(float *dst, size_t dst_stride, const float *src, size_t src_stride,
			 int rows, int cols)
{
	if (rows <= 0 || cols <= 0)
		return;
	CUDA_CHECK(cudaMemcpy2DAsync(dst, dst_stride * sizeof(float), src,
				     src_stride * sizeof(float), (size_t)cols * sizeof(float),
				     (size_t)rows, cudaMemcpyDeviceToDevice, 0));
}

/* ---- reductions inside a block (fixed tree: deterministic) ---- */

#define WARP 32
#define FULL 0xffffffffu

template <typename T> __device__ static T warp_sum(T v)
{
	/* xor butterfly: every lane ends with the same bits (each level adds the same two
	 * operands, only swapped) */
	for (int o = 16; o > 0; o >>= 1)
		v += __shfl_xor_sync(FULL, v, o);
	return v;
}

__device__ static float warp_max(float v)
{
	for (int o = 16; o > 0; o >>= 1)
		v = fmaxf(v, __shfl_xor_sync(FULL, v, o));
	return v;
}

/* blockDim.x is a multiple of 32 and at most 1024; sh has 32 entries. */
template <typename T> __device__ static T block_sum(T v, T *sh)
{
	int lane = threadIdx.x % WARP, w = threadIdx.x / WARP, nw = blockDim.x / WARP;
	v = warp_sum(v);
	__syncthreads(); /* sh may still be read by a previous call */
	if (lane == 0)
		sh[w] = v;
	__syncthreads();
	v = lane < nw ? sh[lane] : (T)0;
	return warp_sum(v);
}

__device__ static float block_max(float v, float *sh)
{
	int lane = threadIdx.x % WARP, w = threadIdx.x / WARP, nw = blockDim.x / WARP;
	v = warp_max(v);
	__syncthreads();
	if (lane == 0)
		sh[w] = v;
	__syncthreads();
	v = lane < nw ? sh[lane] : -INFINITY;
	return warp_max(v);
}

/* The smallest v of the block (every thread gets it); sh has 32 entries. */
__device__ static int block_min_int(int v, int *sh)
{
	int lane = threadIdx.x % WARP, w = threadIdx.x / WARP, nw = blockDim.x / WARP;
	for (int o = 16; o > 0; o >>= 1) {
		int u = __shfl_xor_sync(FULL, v, o);
		v = u < v ? u : v;
	}
	__syncthreads();
	if (lane == 0)
		sh[w] = v;
	__syncthreads();
	v = lane < nw ? sh[lane] : INT_MAX;
	for (int o = 16; o > 0; o >>= 1) {
		int u = __shfl_xor_sync(FULL, v, o);
		v = u < v ? u : v;
	}
	return v;
}

#define GRID_STRIDE(i, n)                                                                     \
	for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);             \
	     i += (size_t)gridDim.x * blockDim.x)

/* ---- casts ---- */

__global__ static void k_f32_to_bf16(uint16_t *dst, const float *src, size_t n)
{
	GRID_STRIDE(i, n)
	dst[i] = ops_f32_to_bf16(src[i]);
}

__global__ static void k_scale_or_zero(float *c, size_t n, float beta)
{
	GRID_STRIDE(i, n)
	c[i] = beta == 0.0f ? 0.0f : c[i] * beta;
}

/* ---- matmul ---- */

/* Row-major C(M,N) = op(A) op(B) as one column-major cuBLAS call (gemm_map.h). */
static void cu_matmul(float *c, const float *a, const float *b, int m, int n, int k,
		      unsigned flags, float alpha, float beta)
{
	if (m <= 0 || n <= 0)
		return;
	size_t mn = (size_t)m * n;
	if (k <= 0) {
		LAUNCH(k_scale_or_zero, blocks_for(mn, 256), 256, c, mn, beta);
		return;
	}
	struct gemm_map g = gemm_map_rowmajor(flags, m, n, k);
	cublasOperation_t op1 = g.trans_first ? CUBLAS_OP_T : CUBLAS_OP_N;
	cublasOperation_t op2 = g.trans_second ? CUBLAS_OP_T : CUBLAS_OP_N;
	if (flags & OPS_BF16) {
		size_t na = (size_t)m * k, nb = (size_t)k * n;
		uint16_t *ab = (uint16_t *)scratch(SCR_BF16_A, na * 2);
		uint16_t *bb = (uint16_t *)scratch(SCR_BF16_B, nb * 2);
		if (!ab || !bb)
			return;
		LAUNCH(k_f32_to_bf16, blocks_for(na, 256), 256, ab, a, na);
		LAUNCH(k_f32_to_bf16, blocks_for(nb, 256), 256, bb, b, nb);
		CUBLAS_CHECK(g_api.gemm_ex(g_blas, op1, op2, g.m, g.n, g.k, &alpha, bb, CUDA_R_16BF,
					  g.ld_first, ab, CUDA_R_16BF, g.ld_second, &beta, c,
					  CUDA_R_32F, g.ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
		return;
	}
	CUBLAS_CHECK(g_api.gemm_ex(g_blas, op1, op2, g.m, g.n, g.k, &alpha, b, CUDA_R_32F,
				  g.ld_first, a, CUDA_R_32F, g.ld_second, &beta, c, CUDA_R_32F,
				  g.ldc, g_tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F,
				  CUBLAS_GEMM_DEFAULT));
}

/* ---- products with a frozen weight in its storage type (matmul_w) ---- */

/* out (nr, k) = rows [r0, r0 + nr) of w as fp32 (or bf16-rounded when out16), one thread
 * per element, the values of ops_row_elem */
__global__ static void k_dequant_rows(float *out, uint16_t *out16, const uint8_t *w, size_t rb,
				      uint32_t type, int r0, int nr, int k)
{
	size_t total = (size_t)nr * k;
	GRID_STRIDE(i, total)
	{
		size_t r = i / (size_t)k, j = i % (size_t)k;
		float v = ops_row_elem(type, w + (size_t)(r0 + r) * rb, j);
		if (out16)
			out16[i] = ops_f32_to_bf16(v);
		else
			out[i] = v;
	}
}

#define QGEMV_MAXM 8

/* c (m, n) = alpha a (m, k) W^T + beta c for m <= 8: one warp per weight row, its lanes
 * striding over k, each weight element dequantized once for the m rows; the warp tree
 * finishes each dot product (a fixed order). */
__global__ static void k_qgemv(float *c, const float *a, const uint8_t *w, size_t rb,
			       uint32_t type, int m, int n, int k, float alpha, float beta)
{
	int warp = (int)(blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32);
	int lane = (int)(threadIdx.x % 32);
	if (warp >= n)
		return;
	const uint8_t *row = w + (size_t)warp * rb;
	float acc[QGEMV_MAXM];
	for (int i = 0; i < QGEMV_MAXM; i++)
		acc[i] = 0.0f;
	for (int p = lane; p < k; p += 32) {
		float wv = ops_row_elem(type, row, (size_t)p);
		for (int i = 0; i < m; i++)
			acc[i] += wv * a[(size_t)i * k + p];
	}
	for (int i = 0; i < m; i++) {
		float s = warp_sum(acc[i]);
		if (lane == 0) {
			float *o = c + (size_t)i * n + warp;
			*o = beta == 0.0f ? alpha * s : alpha * s + beta * *o;
		}
	}
}

/* One cuBLAS call on explicit leading dimensions (row-major views: a panel of the weight,
 * a column block of C), fp32 (TF32 as configured) or bf16 operands. */
static void gemm_rowmajor(bool ta, bool tb, int m, int n, int k, float alpha, const void *a,
			  int lda, const void *b, int ldb, float beta, float *c, int ldc, bool bf16)
{
	cublasOperation_t op1 = tb ? CUBLAS_OP_T : CUBLAS_OP_N, op2 = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
	cudaDataType dt = bf16 ? CUDA_R_16BF : CUDA_R_32F;
	cublasComputeType_t ct = bf16 || !g_tf32 ? CUBLAS_COMPUTE_32F : CUBLAS_COMPUTE_32F_FAST_TF32;
	CUBLAS_CHECK(g_api.gemm_ex(g_blas, op1, op2, n, m, k, &alpha, b, dt, ldb, a, dt, lda, &beta,
				  c, CUDA_R_32F, ldc, ct, CUBLAS_GEMM_DEFAULT));
}

#define WPANEL_ELEMS ((size_t)1 << 24) /* a panel holds at most 16 M weights (64 MB fp32) */

static void cu_matmul_w(float *c, const float *a, const struct ops_w *w, int m, unsigned flags,
			float alpha, float beta)
{
	bool tb = (flags & OPS_TB) != 0, bf16 = (flags & OPS_BF16) != 0;
	int n = w->n, k = w->k;
	if (w->type == GGML_F32) {
		cu_matmul(c, a, (const float *)w->data, m, tb ? n : k, tb ? k : n,
			  flags & (OPS_TB | OPS_BF16), alpha, beta);
		return;
	}
	if (m <= 0 || n <= 0 || k <= 0)
		return;
	size_t rb = ggml_row_bytes(w->type, (size_t)k);
	const uint8_t *wd = (const uint8_t *)w->data;
	if (tb && m <= QGEMV_MAXM && !bf16) {
		LAUNCH(k_qgemv, (unsigned)((n + 3) / 4), 128, c, a, wd, rb, w->type, m, n, k, alpha,
		       beta);
		return;
	}
	int rows = (int)(WPANEL_ELEMS / (size_t)k);
	rows = rows < 1 ? 1 : rows > n ? n : rows;
	void *panel = scratch(SCR_WPANEL, (size_t)rows * k * (bf16 ? 2 : 4));
	if (!panel)
		return;
	const void *ab = a;
	size_t na = (size_t)m * (tb ? k : n);
	if (bf16) { /* A rounded once, viewed per panel */
		uint16_t *a16 = (uint16_t *)scratch(SCR_BF16_A, na * 2);
		if (!a16)
			return;
		LAUNCH(k_f32_to_bf16, blocks_for(na, 256), 256, a16, a, na);
		ab = a16;
	}
	size_t es = bf16 ? 2 : 4;
	for (int j0 = 0; j0 < n; j0 += rows) {
		int nr = j0 + rows < n ? rows : n - j0;
		LAUNCH(k_dequant_rows, blocks_for((size_t)nr * k, 256), 256,
		       bf16 ? (float *)NULL : (float *)panel, bf16 ? (uint16_t *)panel : (uint16_t *)NULL,
		       wd, rb, w->type, j0, nr, k);
		if (tb) /* C[:, j0:j0+nr] = alpha A P^T + beta C */
			gemm_rowmajor(false, true, m, nr, k, alpha, ab, k, panel, k, beta, c + j0, n,
				      bf16);
		else /* C += alpha A[:, j0:j0+nr] P (beta on the first panel) */
			gemm_rowmajor(false, false, m, k, nr, alpha, (const char *)ab + (size_t)j0 * es,
				      n, panel, k, j0 == 0 ? beta : 1.0f, c, k, bf16);
	}
}

/* ---- element-wise ---- */

__global__ static void k_add(float *out, const float *a, const float *b, size_t n)
{
	GRID_STRIDE(i, n)
	out[i] = a[i] + b[i];
}

__global__ static void k_axpy(float *y, float alpha, const float *x, size_t n)
{
	GRID_STRIDE(i, n)
	y[i] += alpha * x[i];
}

__global__ static void k_scale(float *x, float alpha, size_t n)
{
	GRID_STRIDE(i, n)
	x[i] *= alpha;
}

__global__ static void k_bias_add(float *out, const float *bias, size_t n, int cols)
{
	GRID_STRIDE(i, n)
	out[i] += bias[i % (size_t)cols];
}

/* One thread per column, rows in order (the CPU's order). */
__global__ static void k_bias_backward(float *dbias, const float *dout, int rows, int cols)
{
	int j = blockIdx.x * blockDim.x + threadIdx.x;
	if (j >= cols)
		return;
	float acc = dbias[j];
	for (int r = 0; r < rows; r++)
		acc += dout[(size_t)r * cols + j];
	dbias[j] = acc;
}

static void cu_add(float *out, const float *a, const float *b, size_t n)
{
	if (n)
		LAUNCH(k_add, blocks_for(n, 256), 256, out, a, b, n);
}

static void cu_axpy(float *y, float alpha, const float *x, size_t n)
{
	if (n)
		LAUNCH(k_axpy, blocks_for(n, 256), 256, y, alpha, x, n);
}

static void cu_scale(float *x, float alpha, size_t n)
{
	if (n)
		LAUNCH(k_scale, blocks_for(n, 256), 256, x, alpha, n);
}

static void cu_bias_add(float *out, const float *bias, int rows, int cols)
{
	size_t n = (size_t)(rows > 0 ? rows : 0) * (size_t)(cols > 0 ? cols : 0);
	if (n)
		LAUNCH(k_bias_add, blocks_for(n, 256), 256, out, bias, n, cols);
}

static void cu_bias_backward(float *dbias, const float *dout, int rows, int cols)
{
	if (rows > 0 && cols > 0)
		LAUNCH(k_bias_backward, blocks_for((size_t)cols, 128), 128, dbias, dout, rows,
		       cols);
}

/* ---- dropout (the CPU's counter-based keep decisions: identical masks) ---- */

__global__ static void k_dropout_fwd(float *out, uint8_t *mask, const float *in, size_t n,
				     float p, float inv, uint64_t seed, uint64_t stream)
{
	GRID_STRIDE(i, n)
	{
		int keep = ops_dropout_keep(seed, stream, i, p);
		mask[i] = (uint8_t)keep;
		out[i] = keep ? in[i] * inv : 0.0f;
	}
}

__global__ static void k_dropout_bwd(float *din, const float *dout, const uint8_t *mask,
				     size_t n, float inv)
{
	GRID_STRIDE(i, n)
	din[i] += mask[i] ? dout[i] * inv : 0.0f;
}

static void cu_dropout_forward(float *out, uint8_t *mask, const float *in, size_t n, float p,
			       uint64_t seed, uint64_t stream)
{
	if (!n)
		return;
	if (p <= 0.0f) {
		CUDA_CHECK(cudaMemcpyAsync(out, in, n * sizeof(float), cudaMemcpyDeviceToDevice, 0));
		if (mask)
			CUDA_CHECK(cudaMemsetAsync(mask, 1, n, 0));
		return;
	}
	LAUNCH(k_dropout_fwd, blocks_for(n, 256), 256, out, mask, in, n, p, 1.0f / (1.0f - p),
	       seed, stream);
}

static void cu_dropout_backward(float *din, const float *dout, const uint8_t *mask, size_t n,
				float p)
{
	if (n)
		LAUNCH(k_dropout_bwd, blocks_for(n, 256), 256, din, dout, mask, n,
		       p > 0.0f ? 1.0f / (1.0f - p) : 1.0f);
}

/* ---- norms: one block per row for the row statistics, one thread per column for the
 * weight gradients (rows in order, as on the CPU) ---- */

#define ROW_THREADS 256

__global__ static void k_rmsnorm_fwd(float *out, float *rstd, const float *x, const float *w,
				     int c, float eps)
{
	__shared__ float sh[32];
	const float *xr = x + (size_t)blockIdx.x * c;
	float *o = out + (size_t)blockIdx.x * c;
	float ss = 0.0f;
	for (int i = threadIdx.x; i < c; i += blockDim.x)
		ss += xr[i] * xr[i];
	ss = block_sum(ss, sh);
	float r = 1.0f / sqrtf(ss / (float)c + eps); /* as ops_rmsnorm_row */
	for (int i = threadIdx.x; i < c; i += blockDim.x)
		o[i] = xr[i] * r * w[i];
	if (rstd && threadIdx.x == 0)
		rstd[blockIdx.x] = r;
}

/* dx = r (w dy) - x r^3/c sum(w dy x)   (as ops_rmsnorm_row_backward) */
__global__ static void k_rmsnorm_bwd_dx(float *dx, const float *dout, const float *x,
					const float *w, const float *rstd, int c)
{
	__shared__ float sh[32];
	size_t off = (size_t)blockIdx.x * c;
	float r = rstd[blockIdx.x];
	float dot = 0.0f;
	for (int i = threadIdx.x; i < c; i += blockDim.x)
		dot += w[i] * dout[off + i] * x[off + i];
	dot = block_sum(dot, sh);
	float k = dot * r * r * r / (float)c;
	for (int i = threadIdx.x; i < c; i += blockDim.x)
		dx[off + i] = r * w[i] * dout[off + i] - x[off + i] * k;
}

__global__ static void k_rmsnorm_bwd_dw(float *dw, const float *dout, const float *x,
					const float *rstd, int n, int c)
{
	int j = blockIdx.x * blockDim.x + threadIdx.x;
	if (j >= c)
		return;
	float acc = dw[j];
	for (int r = 0; r < n; r++) {
		size_t o = (size_t)r * c + j;
		acc += dout[o] * x[o] * rstd[r];
	}
	dw[j] = acc;
}

__global__ static void k_layernorm_fwd(float *out, float *mean, float *rstd, const float *x,
				       const float *w, const float *b, int c, float eps)
{
	__shared__ float sh[32];
	const float *xr = x + (size_t)blockIdx.x * c;
	float *o = out + (size_t)blockIdx.x * c;
	float s = 0.0f;
	for (int i = threadIdx.x; i < c; i += blockDim.x)
		s += xr[i];
	float m = block_sum(s, sh) / (float)c;
	float v = 0.0f;
	for (int i = threadIdx.x; i < c; i += blockDim.x)
		v += (xr[i] - m) * (xr[i] - m);
	v = block_sum(v, sh) / (float)c;
	float r = 1.0f / sqrtf(v + eps); /* as ops_layernorm_row */
	for (int i = threadIdx.x; i < c; i += blockDim.x)
		o[i] = (xr[i] - m) * r * w[i] + (b ? b[i] : 0.0f);
	if (threadIdx.x == 0) {
		if (mean)
			mean[blockIdx.x] = m;
		if (rstd)
			rstd[blockIdx.x] = r;
	}
}

/* dx = r (g - mean(g) - xh mean(g xh)), g = w dy   (as ops_layernorm_row_backward) */
__global__ static void k_layernorm_bwd_dx(float *dx, const float *dout, const float *x,
					  const float *w, const float *mean, const float *rstd,
					  int c)
{
	__shared__ float sh[32];
	size_t off = (size_t)blockIdx.x * c;
	float m = mean[blockIdx.x], r = rstd[blockIdx.x];
	float gm = 0.0f, gxm = 0.0f;
	for (int i = threadIdx.x; i < c; i += blockDim.x) {
		float xh = (x[off + i] - m) * r;
		float g = w[i] * dout[off + i];
		gm += g;
		gxm += g * xh;
	}
	gm = block_sum(gm, sh) / (float)c;
	gxm = block_sum(gxm, sh) / (float)c;
	for (int i = threadIdx.x; i < c; i += blockDim.x) {
		float xh = (x[off + i] - m) * r;
		dx[off + i] = r * (w[i] * dout[off + i] - gm - xh * gxm);
	}
}

__global__ static void k_layernorm_bwd_dwdb(float *dw, float *db, const float *dout,
					    const float *x, const float *mean, const float *rstd,
					    int n, int c)
{
	int j = blockIdx.x * blockDim.x + threadIdx.x;
	if (j >= c)
		return;
	float aw = dw ? dw[j] : 0.0f, ab = db ? db[j] : 0.0f;
	for (int r = 0; r < n; r++) {
		size_t o = (size_t)r * c + j;
		aw += dout[o] * (x[o] - mean[r]) * rstd[r];
		ab += dout[o];
	}
	if (dw)
		dw[j] = aw;
	if (db)
		db[j] = ab;
}

static void cu_rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, int n,
			       int c, float eps)
{
	if (n > 0 && c > 0)
		LAUNCH(k_rmsnorm_fwd, (unsigned)n, ROW_THREADS, out, rstd, x, w, c, eps);
}

static void cu_rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x,
				const float *w, const float *rstd, int n, int c)
{
	if (n <= 0 || c <= 0)
		return;
	LAUNCH(k_rmsnorm_bwd_dx, (unsigned)n, ROW_THREADS, dx, dout, x, w, rstd, c);
	if (dw)
		LAUNCH(k_rmsnorm_bwd_dw, blocks_for((size_t)c, 128), 128, dw, dout, x, rstd, n, c);
}

static void cu_layernorm_forward(float *out, float *mean, float *rstd, const float *x,
				 const float *w, const float *b, int n, int c, float eps)
{
	if (n > 0 && c > 0)
		LAUNCH(k_layernorm_fwd, (unsigned)n, ROW_THREADS, out, mean, rstd, x, w, b, c, eps);
}

static void cu_layernorm_backward(float *dx, float *dw, float *db, const float *dout,
				  const float *x, const float *w, const float *mean,
				  const float *rstd, int n, int c)
{
	if (n <= 0 || c <= 0)
		return;
	LAUNCH(k_layernorm_bwd_dx, (unsigned)n, ROW_THREADS, dx, dout, x, w, mean, rstd, c);
	if (dw || db)
		LAUNCH(k_layernorm_bwd_dwdb, blocks_for((size_t)c, 128), 128, dw, db, dout, x, mean,
		       rstd, n, c);
}

/* ---- RoPE: one thread per (b, t, head), ops_rope_head on each ---- */

__global__ static void k_rope(float *x, int b, int t, int nh, int hd, const int *pos0,
			      const float *inv_freq, int interleaved, float sign)
{
	size_t n = (size_t)b * t * nh;
	GRID_STRIDE(idx, n)
	{
		int bi = (int)(idx / ((size_t)t * nh));
		int ti = (int)((idx / (size_t)nh) % (size_t)t);
		int pos = (pos0 ? pos0[bi] : 0) + ti;
		ops_rope_head(x + idx * (size_t)hd, hd, pos, inv_freq, interleaved, sign);
	}
}

static void rope_apply(float *x, int b, int t, int nh, int hd, const int *pos0,
		       const float *inv_freq, enum ops_rope_style style, float sign)
{
	size_t n = (size_t)(b > 0 ? b : 0) * (t > 0 ? t : 0) * (nh > 0 ? nh : 0);
	if (n && hd > 1)
		LAUNCH(k_rope, blocks_for(n, 128), 128, x, b, t, nh, hd, pos0, inv_freq,
		       style == OPS_ROPE_INTERLEAVED ? 1 : 0, sign);
}

static void cu_rope_forward(float *x, int b, int t, int nh, int hd, const int *pos0,
			    const float *inv_freq, enum ops_rope_style style)
{
	rope_apply(x, b, t, nh, hd, pos0, inv_freq, style, 1.0f);
}

static void cu_rope_backward(float *dx, int b, int t, int nh, int hd, const int *pos0,
			     const float *inv_freq, enum ops_rope_style style)
{
	rope_apply(dx, b, t, nh, hd, pos0, inv_freq, style, -1.0f);
}

/* ---- attention ----
 * One warp per query row; each lane holds head-dim elements lane, lane+32, ... (head_dim
 * up to 32*HD_REG). Scores are warp dot products (butterfly sums, identical in every
 * lane). Without `att` the forward is fused: online softmax over the keys, nothing of
 * size T x T is stored (the flash-attention recurrence; K/V stream through L1/L2, no
 * shared-memory tiling yet). The backward recomputes probabilities from q, k and each
 * row's logsumexp when `att` is NULL, so long sequences need O(T) memory per head. */

#define HD_REG 8
#define ATT_WARPS 4

__device__ static float warp_dot(const float (&qv)[HD_REG], const float *kr, int hd)
{
	int lane = threadIdx.x % WARP;
	float s = 0.0f;
#pragma unroll
	for (int u = 0; u < HD_REG; u++) {
		int i = lane + WARP * u;
		if (i < hd)
			s += qv[u] * kr[i];
	}
	return warp_sum(s);
}

__device__ static void load_head(float (&r)[HD_REG], const float *src, int hd)
{
	int lane = threadIdx.x % WARP;
#pragma unroll
	for (int u = 0; u < HD_REG; u++) {
		int i = lane + WARP * u;
		r[u] = i < hd ? src[i] : 0.0f;
	}
}

/* First key a query at position p attends (window 0: all keys from 0). */
__device__ static int win_start(int p, int window)
{
	return window > 0 && p - window + 1 > 0 ? p - window + 1 : 0;
}

__global__ static void k_att_fwd(float *out, float *att, const float *q, const float *k,
				 const float *v, int b, int tq, int tk, int nh, int nkv, int hd,
				 const int *pos0, float scale, int window)
{
	int lane = threadIdx.x % WARP;
	size_t wid = (size_t)blockIdx.x * ATT_WARPS + threadIdx.x / WARP;
	if (wid >= (size_t)b * nh * tq)
		return; /* whole warps leave together */
	int t = (int)(wid % (size_t)tq);
	int h = (int)((wid / (size_t)tq) % (size_t)nh);
	int bi = (int)(wid / ((size_t)tq * nh));
	int kh = h / (nh / nkv);
	size_t qs = (size_t)nh * hd, ks = (size_t)nkv * hd;
	int p = (pos0 ? pos0[bi] : 0) + t;
	if (p > tk - 1)
		p = tk - 1;
	int j0 = win_start(p, window);
	const float *kb = k + (size_t)bi * tk * ks + (size_t)kh * hd;
	const float *vb = v + (size_t)bi * tk * ks + (size_t)kh * hd;
	float qv[HD_REG], ov[HD_REG];
	load_head(qv, q + ((size_t)bi * tq + t) * qs + (size_t)h * hd, hd);
#pragma unroll
	for (int u = 0; u < HD_REG; u++)
		ov[u] = 0.0f;
	if (att) {
		/* probabilities wanted: scores into the att row, softmax, then P V */
		float *s = att + (((size_t)bi * nh + h) * tq + t) * tq;
		float mx = -INFINITY;
		for (int j = j0; j <= p; j++) {
			float d = warp_dot(qv, kb + (size_t)j * ks, hd) * scale;
			if (lane == 0)
				s[j] = d;
			mx = fmaxf(mx, d);
		}
		__syncwarp();
		float sum = 0.0f;
		for (int j = j0 + lane; j <= p; j += WARP) {
			float e = expf(s[j] - mx);
			s[j] = e;
			sum += e;
		}
		float inv = 1.0f / warp_sum(sum);
		for (int j = j0 + lane; j <= p; j += WARP)
			s[j] *= inv;
		for (int j = lane; j < j0; j += WARP)
			s[j] = 0.0f;
		for (int j = p + 1 + lane; j < tq; j += WARP)
			s[j] = 0.0f;
		__syncwarp();
		for (int j = j0; j <= p; j++) {
			float pj = s[j];
			const float *vr = vb + (size_t)j * ks;
#pragma unroll
			for (int u = 0; u < HD_REG; u++) {
				int i = lane + WARP * u;
				if (i < hd)
					ov[u] += pj * vr[i];
			}
		}
	} else {
		float m = -INFINITY, l = 0.0f;
		for (int j = j0; j <= p; j++) {
			float d = warp_dot(qv, kb + (size_t)j * ks, hd) * scale;
			float mn = fmaxf(m, d);
			float corr = expf(m - mn); /* 0 on the first key (m = -inf) */
			float e = expf(d - mn);
			l = l * corr + e;
			const float *vr = vb + (size_t)j * ks;
#pragma unroll
			for (int u = 0; u < HD_REG; u++) {
				int i = lane + WARP * u;
				ov[u] = ov[u] * corr + (i < hd ? e * vr[i] : 0.0f);
			}
			m = mn;
		}
		float inv = 1.0f / l;
#pragma unroll
		for (int u = 0; u < HD_REG; u++)
			ov[u] *= inv;
	}
	float *o = out + ((size_t)bi * tq + t) * qs + (size_t)h * hd;
#pragma unroll
	for (int u = 0; u < HD_REG; u++) {
		int i = lane + WARP * u;
		if (i < hd)
			o[i] = ov[u];
	}
}

/* Backward, pass 1: one warp per query row i of head h. With P = softmax row,
 * dP_j = dO_i . V_j, D_i = sum_j P_j dP_j, dS_j = P_j (dP_j - D_i) scale,
 * dQ_i = sum_j dS_j K_j. Writes dQ, D_i and the row's logsumexp (stats = [D | lse]). */
__global__ static void k_att_bwd_q(float *dq, float *stats, const float *dout,
				   const float *att, const float *q, const float *k,
				   const float *v, int b, int t, int nh, int nkv, int hd, float scale,
				   int window)
{
	int lane = threadIdx.x % WARP;
	size_t rows = (size_t)b * nh * t;
	size_t wid = (size_t)blockIdx.x * ATT_WARPS + threadIdx.x / WARP;
	if (wid >= rows)
		return;
	int i = (int)(wid % (size_t)t);
	int h = (int)((wid / (size_t)t) % (size_t)nh);
	int bi = (int)(wid / ((size_t)t * nh));
	int kh = h / (nh / nkv);
	int j0 = win_start(i, window);
	size_t qs = (size_t)nh * hd, ks = (size_t)nkv * hd;
	const float *kb = k + (size_t)bi * t * ks + (size_t)kh * hd;
	const float *vb = v + (size_t)bi * t * ks + (size_t)kh * hd;
	float qv[HD_REG], dov[HD_REG], acc[HD_REG];
	load_head(qv, q + ((size_t)bi * t + i) * qs + (size_t)h * hd, hd);
	load_head(dov, dout + ((size_t)bi * t + i) * qs + (size_t)h * hd, hd);
	const float *pr = att ? att + (((size_t)bi * nh + h) * t + i) * t : NULL;
	float lse = 0.0f;
	if (!pr) {
		float m = -INFINITY, l = 0.0f;
		for (int j = j0; j <= i; j++) {
			float d = warp_dot(qv, kb + (size_t)j * ks, hd) * scale;
			float mn = fmaxf(m, d);
			l = l * expf(m - mn) + expf(d - mn);
			m = mn;
		}
		lse = m + logf(l);
	}
	float dsum = 0.0f;
	for (int j = j0; j <= i; j++) {
		float pj = pr ? pr[j] : expf(warp_dot(qv, kb + (size_t)j * ks, hd) * scale - lse);
		dsum += pj * warp_dot(dov, vb + (size_t)j * ks, hd);
	}
#pragma unroll
	for (int u = 0; u < HD_REG; u++)
		acc[u] = 0.0f;
	for (int j = j0; j <= i; j++) {
		float pj = pr ? pr[j] : expf(warp_dot(qv, kb + (size_t)j * ks, hd) * scale - lse);
		float ds = pj * (warp_dot(dov, vb + (size_t)j * ks, hd) - dsum) * scale;
		const float *kr = kb + (size_t)j * ks;
#pragma unroll
		for (int u = 0; u < HD_REG; u++) {
			int e = lane + WARP * u;
			if (e < hd)
				acc[u] += ds * kr[e];
		}
	}
	float *dqr = dq + ((size_t)bi * t + i) * qs + (size_t)h * hd;
#pragma unroll
	for (int u = 0; u < HD_REG; u++) {
		int e = lane + WARP * u;
		if (e < hd)
			dqr[e] = acc[u];
	}
	if (lane == 0) {
		stats[wid] = dsum;
		stats[rows + wid] = lse;
	}
}

/* Backward, pass 2: one warp per key row j of KV head kh; sums over the heads of its
 * group and the queries i >= j in order: dV_j = sum P_ij dO_i, dK_j = sum dS_ij Q_i.
 * No atomics: each dK/dV row has exactly one writer. */
__global__ static void k_att_bwd_kv(float *dk, float *dv, const float *stats,
				    const float *dout, const float *att, const float *q,
				    const float *k, const float *v, int b, int t, int nh, int nkv,
				    int hd, float scale, int window)
{
	int lane = threadIdx.x % WARP;
	size_t rows = (size_t)b * nh * t;
	size_t wid = (size_t)blockIdx.x * ATT_WARPS + threadIdx.x / WARP;
	if (wid >= (size_t)b * nkv * t)
		return;
	int j = (int)(wid % (size_t)t);
	int kh = (int)((wid / (size_t)t) % (size_t)nkv);
	int bi = (int)(wid / ((size_t)t * nkv));
	int grp = nh / nkv;
	size_t qs = (size_t)nh * hd, ks = (size_t)nkv * hd;
	float kv_[HD_REG], vv[HD_REG], adk[HD_REG], adv[HD_REG];
	size_t krow = ((size_t)bi * t + j) * ks + (size_t)kh * hd;
	load_head(kv_, k + krow, hd);
	load_head(vv, v + krow, hd);
#pragma unroll
	for (int u = 0; u < HD_REG; u++)
		adk[u] = adv[u] = 0.0f;
	/* the queries that see key j: i >= j, and i < j + window with a window */
	int i1 = window > 0 && j + window < t ? j + window : t;
	for (int h = kh * grp; h < (kh + 1) * grp; h++)
		for (int i = j; i < i1; i++) {
			size_t srow = ((size_t)bi * nh + h) * t + i;
			const float *qr = q + ((size_t)bi * t + i) * qs + (size_t)h * hd;
			const float *dor = dout + ((size_t)bi * t + i) * qs + (size_t)h * hd;
			float pij = att ? att[srow * t + j]
					: expf(warp_dot(kv_, qr, hd) * scale - stats[rows + srow]);
			float ds = pij * (warp_dot(vv, dor, hd) - stats[srow]) * scale;
#pragma unroll
			for (int u = 0; u < HD_REG; u++) {
				int e = lane + WARP * u;
				if (e < hd) {
					adv[u] += pij * dor[e];
					adk[u] += ds * qr[e];
				}
			}
		}
#pragma unroll
	for (int u = 0; u < HD_REG; u++) {
		int e = lane + WARP * u;
		if (e < hd) {
			dk[krow + e] = adk[u];
			dv[krow + e] = adv[u];
		}
	}
}

static bool att_shape_ok(int nh, int nkv, int hd)
{
	if (hd <= 0 || hd > WARP * HD_REG || nkv <= 0 || nh % nkv != 0) {
		fprintf(stderr, "ftlab: internal error: CUDA attention supports head_dim 1..%d and "
				"n_head a multiple of n_head_kv (got head_dim %d, %d/%d heads)\n",
			WARP * HD_REG, hd, nh, nkv);
		abort();
	}
	return true;
}

static void cu_attention_forward(float *out, float *att, const float *q, const float *k,
				 const float *v, int b, int tq, int tk, int nh, int nkv, int hd,
				 const int *pos0, float scale, int window)
{
	if (b <= 0 || tq <= 0 || nh <= 0 || !att_shape_ok(nh, nkv, hd))
		return;
	size_t rows = (size_t)b * nh * tq;
	LAUNCH(k_att_fwd, (unsigned)((rows + ATT_WARPS - 1) / ATT_WARPS), ATT_WARPS * WARP, out,
	       att, q, k, v, b, tq, tk, nh, nkv, hd, pos0, scale, window);
}

static void cu_attention_backward(float *dq, float *dk, float *dv, const float *dout,
				  const float *att, const float *q, const float *k,
				  const float *v, int b, int t, int nh, int nkv, int hd,
				  float scale, int window)
{
	if (b <= 0 || t <= 0 || nh <= 0 || !att_shape_ok(nh, nkv, hd))
		return;
	size_t rows = (size_t)b * nh * t, kvrows = (size_t)b * nkv * t;
	float *stats = (float *)scratch(SCR_ATT_STATS, 2 * rows * sizeof(float));
	if (!stats)
		return;
	LAUNCH(k_att_bwd_q, (unsigned)((rows + ATT_WARPS - 1) / ATT_WARPS), ATT_WARPS * WARP,
	       dq, stats, dout, att, q, k, v, b, t, nh, nkv, hd, scale, window);
	LAUNCH(k_att_bwd_kv, (unsigned)((kvrows + ATT_WARPS - 1) / ATT_WARPS), ATT_WARPS * WARP,
	       dk, dv, stats, dout, att, q, k, v, b, t, nh, nkv, hd, scale, window);
}

/* ---- PEFT methods: per-column scaling, DoRA's row norms ---- */

__global__ static void k_col_mul(float *out, const float *x, const float *s, size_t n, int cols,
				 bool acc)
{
	GRID_STRIDE(i, n)
	{
		float v = x[i] * s[i % (size_t)cols];
		out[i] = acc ? out[i] + v : v;
	}
}

/* One thread per column; the rows in order (the CPU's order). */
__global__ static void k_col_mul_bwd(float *ds, const float *dout, const float *x,
				     const float *w, int rows, int cols)
{
	GRID_STRIDE(c, (size_t)cols)
	{
		float acc = 0.0f;
		for (int r = 0; r < rows; r++)
			acc += dout[(size_t)r * cols + c] * x[(size_t)r * cols + c];
		ds[c] += w ? w[c] * acc : acc;
	}
}

__global__ static void k_dora_scale(float *g, float *inv_norm, const float *m, const float *w,
				    int rows, int cols)
{
	GRID_STRIDE(r, (size_t)rows)
	ops_dora_row(&g[r], &inv_norm[r], m[r], w + r * (size_t)cols, cols);
}

static void cu_dequant_w(float *out, const struct ops_w *w)
{
	size_t n = (size_t)w->n * (size_t)w->k;
	if (!n)
		return;
	if (w->type == GGML_F32) {
		CUDA_CHECK(cudaMemcpyAsync(out, w->data, n * sizeof(float), cudaMemcpyDeviceToDevice,
					   0));
		return;
	}
	LAUNCH(k_dequant_rows, blocks_for(n, 256), 256, out, (uint16_t *)NULL,
	       (const uint8_t *)w->data, ggml_row_bytes(w->type, (size_t)w->k), w->type, 0, w->n,
	       w->k);
}

static void cu_col_mul(float *out, const float *x, const float *s, int rows, int cols, bool acc)
{
	size_t n = (size_t)rows * (size_t)cols;
	if (n)
		LAUNCH(k_col_mul, blocks_for(n, 256), 256, out, x, s, n, cols, acc);
}

static void cu_col_mul_backward(float *ds, const float *dout, const float *x, const float *w,
				int rows, int cols)
{
	if (rows > 0 && cols > 0)
		LAUNCH(k_col_mul_bwd, blocks_for((size_t)cols, 128), 128, ds, dout, x, w, rows,
		       cols);
}

static void cu_dora_scale(float *g, float *inv_norm, const float *m, const float *w, int rows,
			  int cols)
{
	if (rows > 0)
		LAUNCH(k_dora_scale, blocks_for((size_t)rows, 128), 128, g, inv_norm, m, w, rows,
		       cols);
}

/* ---- prefix tuning: causal attention after a shared prefix ----
 * A first version: one thread per output element, each recomputing the scores it needs
 * (correct and deterministic, not fast). Row r = (b, h, i): query i of sequence b at
 * position np + i; key j < np is prefix row j (pk/pv, stride ps), key j >= np is the
 * sequence's key j - np. */

struct pfx_shape {
	const float *q, *k, *v, *pk, *pv;
	size_t ps;
	int b, t, np, nh, nkv, hd, window;
	float scale;
};

__device__ static const float *pfx_kv(const struct pfx_shape *s, const float *pre,
				      const float *seq, int bi, int kh, int j)
{
	return j < s->np ? pre + (size_t)j * s->ps + (size_t)kh * s->hd
			 : seq + ((size_t)bi * s->t + (j - s->np)) * (size_t)s->nkv * s->hd +
				   (size_t)kh * s->hd;
}

__device__ static float pfx_score(const struct pfx_shape *s, int bi, int h, int i, int j)
{
	const float *qr = s->q + (((size_t)bi * s->t + i) * s->nh + h) * s->hd;
	const float *kr = pfx_kv(s, s->pk, s->k, bi, h / (s->nh / s->nkv), j);
	float acc = 0.0f;
	for (int d = 0; d < s->hd; d++)
		acc += qr[d] * kr[d];
	return s->scale * acc;
}

/* the keys row (b, h, i) sees: [lo, np + i] */
__device__ static int pfx_lo(const struct pfx_shape *s, int i)
{
	int qp = s->np + i;
	return s->window > 0 && qp - s->window + 1 > 0 ? qp - s->window + 1 : 0;
}

/* max and sum of exp over the row's scores */
__device__ static void pfx_stats(const struct pfx_shape *s, int bi, int h, int i, float *m,
				 float *l)
{
	float mx = -INFINITY, sum = 0.0f;
	for (int j = pfx_lo(s, i); j <= s->np + i; j++)
		mx = fmaxf(mx, pfx_score(s, bi, h, i, j));
	for (int j = pfx_lo(s, i); j <= s->np + i; j++)
		sum += ops_expf(pfx_score(s, bi, h, i, j) - mx);
	*m = mx;
	*l = sum;
}

/* dout_i . v_j for row (b, h, i) */
__device__ static float pfx_dp(const struct pfx_shape *s, const float *dout, int bi, int h,
			       int i, int j)
{
	const float *dr = dout + (((size_t)bi * s->t + i) * s->nh + h) * s->hd;
	const float *vr = pfx_kv(s, s->pv, s->v, bi, h / (s->nh / s->nkv), j);
	float acc = 0.0f;
	for (int d = 0; d < s->hd; d++)
		acc += dr[d] * vr[d];
	return acc;
}

__global__ static void k_pfx_fwd(float *out, struct pfx_shape s)
{
	size_t n = (size_t)s.b * s.t * s.nh * s.hd;
	GRID_STRIDE(e, n)
	{
		int d = (int)(e % s.hd), h = (int)(e / s.hd % s.nh), i = (int)(e / s.hd / s.nh % s.t);
		int bi = (int)(e / s.hd / s.nh / s.t);
		float m, l;
		pfx_stats(&s, bi, h, i, &m, &l);
		float acc = 0.0f;
		for (int j = pfx_lo(&s, i); j <= s.np + i; j++)
			acc += ops_expf(pfx_score(&s, bi, h, i, j) - m) *
			       pfx_kv(&s, s.pv, s.v, bi, h / (s.nh / s.nkv), j)[d];
		out[e] = acc / l;
	}
}

/* per row: m, l and D = sum_j p_j dP_j */
__global__ static void k_pfx_rowstats(float *st, const float *dout, struct pfx_shape s)
{
	size_t n = (size_t)s.b * s.t * s.nh;
	GRID_STRIDE(r, n)
	{
		int h = (int)(r % s.nh), i = (int)(r / s.nh % s.t), bi = (int)(r / s.nh / s.t);
		float m, l, dsum = 0.0f;
		pfx_stats(&s, bi, h, i, &m, &l);
		for (int j = pfx_lo(&s, i); j <= s.np + i; j++)
			dsum += ops_expf(pfx_score(&s, bi, h, i, j) - m) / l *
				pfx_dp(&s, dout, bi, h, i, j);
		st[3 * r] = m;
		st[3 * r + 1] = l;
		st[3 * r + 2] = dsum;
	}
}

/* dS_ij = p_ij (dP_ij - D_i) scale and p_ij for row (b, h, i), key j */
__device__ static void pfx_ds(const struct pfx_shape *s, const float *st, const float *dout,
			      int bi, int h, int i, int j, float *p, float *ds)
{
	size_t r = ((size_t)bi * s->t + i) * s->nh + h;
	*p = ops_expf(pfx_score(s, bi, h, i, j) - st[3 * r]) / st[3 * r + 1];
	*ds = *p * (pfx_dp(s, dout, bi, h, i, j) - st[3 * r + 2]) * s->scale;
}

__global__ static void k_pfx_bwd_q(float *dq, const float *st, const float *dout,
				   struct pfx_shape s)
{
	size_t n = (size_t)s.b * s.t * s.nh * s.hd;
	GRID_STRIDE(e, n)
	{
		int d = (int)(e % s.hd), h = (int)(e / s.hd % s.nh), i = (int)(e / s.hd / s.nh % s.t);
		int bi = (int)(e / s.hd / s.nh / s.t);
		float acc = 0.0f;
		for (int j = pfx_lo(&s, i); j <= s.np + i; j++) {
			float p, ds;
			pfx_ds(&s, st, dout, bi, h, i, j, &p, &ds);
			acc += ds * pfx_kv(&s, s.pk, s.k, bi, h / (s.nh / s.nkv), j)[d];
		}
		dq[e] = acc;
	}
}

/* dk, dv of the sequence keys (overwritten): element (b, j, kh, d) */
__global__ static void k_pfx_bwd_kv(float *dk, float *dv, const float *st, const float *dout,
				    struct pfx_shape s)
{
	size_t n = (size_t)s.b * s.t * s.nkv * s.hd;
	int grp = s.nh / s.nkv;
	GRID_STRIDE(e, n)
	{
		int d = (int)(e % s.hd), kh = (int)(e / s.hd % s.nkv);
		int j = (int)(e / s.hd / s.nkv % s.t), bi = (int)(e / s.hd / s.nkv / s.t);
		float ak = 0.0f, av = 0.0f;
		for (int h = kh * grp; h < (kh + 1) * grp; h++)
			for (int i = j; i < s.t; i++) {
				if (pfx_lo(&s, i) > s.np + j)
					continue;
				float p, ds;
				pfx_ds(&s, st, dout, bi, h, i, s.np + j, &p, &ds);
				size_t qo = (((size_t)bi * s.t + i) * s.nh + h) * s.hd + d;
				ak += ds * s.q[qo];
				av += p * dout[qo];
			}
		dk[e] = ak;
		dv[e] = av;
	}
}

/* prefix gradients, accumulated: element (p, kh, d), sequences in order */
__global__ static void k_pfx_bwd_prefix(float *dpk, float *dpv, const float *st,
					const float *dout, struct pfx_shape s)
{
	size_t n = (size_t)s.np * s.nkv * s.hd;
	int grp = s.nh / s.nkv;
	GRID_STRIDE(e, n)
	{
		int d = (int)(e % s.hd), kh = (int)(e / s.hd % s.nkv), pj = (int)(e / s.hd / s.nkv);
		float ak = 0.0f, av = 0.0f;
		for (int bi = 0; bi < s.b; bi++)
			for (int h = kh * grp; h < (kh + 1) * grp; h++)
				for (int i = 0; i < s.t; i++) {
					if (pfx_lo(&s, i) > pj)
						continue;
					float p, ds;
					pfx_ds(&s, st, dout, bi, h, i, pj, &p, &ds);
					size_t qo = (((size_t)bi * s.t + i) * s.nh + h) * s.hd + d;
					ak += ds * s.q[qo];
					av += p * dout[qo];
				}
		size_t o = (size_t)pj * s.ps + (size_t)kh * s.hd + d;
		dpk[o] += ak;
		dpv[o] += av;
	}
}

static struct pfx_shape pfx_make(const float *q, const float *k, const float *v,
				 const float *pk, const float *pv, size_t ps, int b, int t, int np,
				 int nh, int nkv, int hd, float scale, int window)
{
	struct pfx_shape s = {q, k, v, pk, pv, ps, b, t, np, nh, nkv, hd, window, scale};
	return s;
}

static void cu_attention_prefix_forward(float *out, const float *q, const float *k,
					const float *v, const float *pk, const float *pv,
					size_t pstride, int b, int t, int np, int nh, int nkv,
					int hd, float scale, int window)
{
	if (b <= 0 || t <= 0 || nh <= 0 || nkv <= 0 || nh % nkv || hd <= 0)
		return;
	struct pfx_shape s = pfx_make(q, k, v, pk, pv, pstride, b, t, np, nh, nkv, hd, scale,
				      window);
	size_t n = (size_t)b * t * nh * hd;
	LAUNCH(k_pfx_fwd, blocks_for(n, 128), 128, out, s);
}

static void cu_attention_prefix_backward(float *dq, float *dk, float *dv, float *dpk,
					 float *dpv, const float *dout, const float *q,
					 const float *k, const float *v, const float *pk,
					 const float *pv, size_t pstride, int b, int t, int np,
					 int nh, int nkv, int hd, float scale, int window)
{
	if (b <= 0 || t <= 0 || nh <= 0 || nkv <= 0 || nh % nkv || hd <= 0)
		return;
	size_t rows = (size_t)b * t * nh;
	float *st = (float *)scratch(SCR_ATT_STATS, 3 * rows * sizeof(float));
	if (!st)
		return;
	struct pfx_shape s = pfx_make(q, k, v, pk, pv, pstride, b, t, np, nh, nkv, hd, scale,
				      window);
	LAUNCH(k_pfx_rowstats, blocks_for(rows, 128), 128, st, dout, s);
	size_t nq = rows * hd, nkvel = (size_t)b * t * nkv * hd, npel = (size_t)np * nkv * hd;
	LAUNCH(k_pfx_bwd_q, blocks_for(nq, 128), 128, dq, st, dout, s);
	LAUNCH(k_pfx_bwd_kv, blocks_for(nkvel, 128), 128, dk, dv, st, dout, s);
	if (npel)
		LAUNCH(k_pfx_bwd_prefix, blocks_for(npel, 128), 128, dpk, dpv, st, dout, s);
}

/* ---- activations ---- */

__global__ static void k_swiglu_fwd(float *out, const float *gate, const float *up, size_t n)
{
	GRID_STRIDE(i, n)
	out[i] = ops_silu(gate[i]) * up[i];
}

__global__ static void k_swiglu_bwd(float *dgate, float *dup, const float *dout,
				    const float *gate, const float *up, size_t n)
{
	GRID_STRIDE(i, n)
	{
		float d = dout[i], g = gate[i];
		dup[i] = d * ops_silu(g);
		dgate[i] = d * up[i] * ops_silu_grad(g);
	}
}

__global__ static void k_gelu_fwd(float *out, const float *x, size_t n)
{
	GRID_STRIDE(i, n)
	out[i] = ops_gelu(x[i]);
}

__global__ static void k_gelu_bwd(float *dx, const float *dout, const float *x, size_t n)
{
	GRID_STRIDE(i, n)
	dx[i] = dout[i] * ops_gelu_grad(x[i]);
}

__global__ static void k_geglu_fwd(float *out, const float *gate, const float *up, size_t n)
{
	GRID_STRIDE(i, n)
	out[i] = ops_gelu(gate[i]) * up[i];
}

__global__ static void k_geglu_bwd(float *dgate, float *dup, const float *dout,
				   const float *gate, const float *up, size_t n)
{
	GRID_STRIDE(i, n)
	{
		float d = dout[i], g = gate[i];
		dup[i] = d * ops_gelu(g);
		dgate[i] = d * up[i] * ops_gelu_grad(g);
	}
}

static void cu_geglu_forward(float *out, const float *gate, const float *up, size_t n)
{
	if (n)
		LAUNCH(k_geglu_fwd, blocks_for(n, 256), 256, out, gate, up, n);
}

static void cu_geglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
			      const float *up, size_t n)
{
	if (n)
		LAUNCH(k_geglu_bwd, blocks_for(n, 256), 256, dgate, dup, dout, gate, up, n);
}

static void cu_swiglu_forward(float *out, const float *gate, const float *up, size_t n)
{
	if (n)
		LAUNCH(k_swiglu_fwd, blocks_for(n, 256), 256, out, gate, up, n);
}

static void cu_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
			       const float *up, size_t n)
{
	if (n)
		LAUNCH(k_swiglu_bwd, blocks_for(n, 256), 256, dgate, dup, dout, gate, up, n);
}

static void cu_gelu_forward(float *out, const float *x, size_t n)
{
	if (n)
		LAUNCH(k_gelu_fwd, blocks_for(n, 256), 256, out, x, n);
}

static void cu_gelu_backward(float *dx, const float *dout, const float *x, size_t n)
{
	if (n)
		LAUNCH(k_gelu_bwd, blocks_for(n, 256), 256, dx, dout, x, n);
}

/* ---- embedding ---- */

__global__ static void k_embed_fwd(float *out, const int32_t *tokens, const int *pos,
				   const uint8_t *wte, uint32_t type, size_t rb, const float *wpe,
				   int n, int t, int c)
{
	size_t total = (size_t)n * c;
	GRID_STRIDE(idx, total)
	{
		int r = (int)(idx / (size_t)c), j = (int)(idx % (size_t)c);
		float o = ops_row_elem(type, wte + (size_t)tokens[r] * rb, (size_t)j);
		if (wpe)
			o += wpe[(size_t)(pos ? pos[r] : r % t) * c + j];
		out[idx] = o;
	}
}

/* One thread per column; rows in order: a token that occurs twice gets its two rows added
 * in row order, exactly as on the CPU, with no atomics. */
__global__ static void k_embed_bwd(float *dwte, float *dwpe, const float *dout,
				   const int32_t *tokens, const int *pos, int n, int t, int c)
{
	int j = blockIdx.x * blockDim.x + threadIdx.x;
	if (j >= c)
		return;
	for (int r = 0; r < n; r++) {
		float d = dout[(size_t)r * c + j];
		if (dwte)
			dwte[(size_t)tokens[r] * c + j] += d;
		if (dwpe)
			dwpe[(size_t)(pos ? pos[r] : r % t) * c + j] += d;
	}
}

static void cu_embedding_forward(float *out, const int32_t *tokens, const int *pos,
				 const struct ops_w *wte, const float *wpe, int n, int t, int c)
{
	if (n > 0 && c > 0)
		LAUNCH(k_embed_fwd, blocks_for((size_t)n * c, 256), 256, out, tokens, pos,
		       (const uint8_t *)wte->data, wte->type, ggml_row_bytes(wte->type, (size_t)c),
		       wpe, n, t, c);
}

static void cu_embedding_backward(float *dwte, float *dwpe, const float *dout,
				  const int32_t *tokens, const int *pos, int n, int t, int c)
{
	if (n > 0 && c > 0 && (dwte || dwpe))
		LAUNCH(k_embed_bwd, blocks_for((size_t)c, 64), 64, dwte, dwpe, dout, tokens, pos, n,
		       t, c);
}

/* ---- fused softmax + cross-entropy: one block per row ---- */

__global__ static void k_ce_fwd(float *losses, float *lse, int32_t *argmax,
				unsigned long long *count, const float *logits,
				const int32_t *targets, int v)
{
	__shared__ float shf[32];
	__shared__ double shd[32];
	__shared__ int shi[32];
	const float *x = logits + (size_t)blockIdx.x * v;
	float mx = -INFINITY;
	for (int i = threadIdx.x; i < v; i += blockDim.x)
		mx = fmaxf(mx, x[i]);
	mx = block_max(mx, shf);
	if (argmax) { /* the first index holding the maximum */
		int first = INT_MAX;
		for (int i = threadIdx.x; i < v && first == INT_MAX; i += blockDim.x)
			if (x[i] == mx)
				first = i;
		first = block_min_int(first, shi);
		if (threadIdx.x == 0) {
			int tgm = targets ? targets[blockIdx.x] : -1;
			argmax[blockIdx.x] = tgm >= 0 && tgm < v && first < v ? first : -1;
		}
	}
	double s = 0.0; /* as ops_logsumexp_row: exp in float, sum in double */
	for (int i = threadIdx.x; i < v; i += blockDim.x)
		s += (double)expf(x[i] - mx);
	s = block_sum(s, shd);
	if (threadIdx.x == 0) {
		float l = mx + (float)log(s);
		if (lse)
			lse[blockIdx.x] = l;
		int tg = targets ? targets[blockIdx.x] : -1;
		if (tg >= 0 && tg < v) {
			losses[blockIdx.x] = l - x[tg];
			atomicAdd(count, 1ull); /* an integer count: order does not matter */
		} else {
			losses[blockIdx.x] = 0.0f;
		}
	}
}

/* dlogits = scale w[r] (softmax - onehot) on unmasked rows, 0 on masked ones (as
 * ops_crossentropy_row_backward, element by element); w NULL = 1. */
__global__ static void k_ce_bwd(float *logits, const float *lse, const int32_t *targets, int n,
				int v, float scale, const float *row_scale)
{
	size_t total = (size_t)n * v;
	GRID_STRIDE(idx, total)
	{
		int r = (int)(idx / (size_t)v), i = (int)(idx % (size_t)v);
		int tg = targets[r];
		if (tg >= 0 && tg < v) {
			float sc = row_scale ? scale * row_scale[r] : scale;
			float p = sc * expf(logits[idx] - lse[r]);
			logits[idx] = i == tg ? p - sc : p;
		} else {
			logits[idx] = 0.0f;
		}
	}
}

static long cu_crossentropy_forward(float *losses, float *lse, int32_t *argmax,
				    const float *logits, const int32_t *targets, int n, int v)
{
	if (n <= 0 || v <= 0)
		return 0;
	unsigned long long *cnt = (unsigned long long *)scratch(SCR_COUNT, sizeof *cnt);
	if (!cnt)
		return 0;
	CUDA_CHECK(cudaMemsetAsync(cnt, 0, sizeof *cnt, 0));
	LAUNCH(k_ce_fwd, (unsigned)n, ROW_THREADS, losses, lse, argmax, cnt, logits, targets, v);
	unsigned long long h = 0;
	CUDA_CHECK(cudaMemcpy(&h, cnt, sizeof h, cudaMemcpyDeviceToHost));
	return (long)h;
}

static void cu_crossentropy_backward(float *logits, const float *lse, const int32_t *targets,
				     int n, int v, float scale, const float *row_scale)
{
	if (n > 0 && v > 0)
		LAUNCH(k_ce_bwd, blocks_for((size_t)n * v, 256), 256, logits, lse, targets, n, v,
		       scale, row_scale);
}

/* ---- optimizer support ---- */

#define SUMSQ_BLOCKS 256

/* Fixed grid: each block sums a fixed set of elements in double, the host adds the
 * block partials in order. Same bits on every run with the same n. */
__global__ static void k_sumsq(double *part, const float *x, size_t n)
{
	__shared__ double sh[32];
	double s = 0.0;
	GRID_STRIDE(i, n)
	s += (double)x[i] * x[i];
	s = block_sum(s, sh);
	if (threadIdx.x == 0)
		part[blockIdx.x] = s;
}

static double cu_sumsq(const float *x, size_t n)
{
	if (!n)
		return 0.0;
	double *part = (double *)scratch(SCR_PARTIAL, SUMSQ_BLOCKS * sizeof(double));
	if (!part)
		return NAN;
	LAUNCH(k_sumsq, SUMSQ_BLOCKS, 256, part, x, n);
	double h[SUMSQ_BLOCKS];
	CUDA_CHECK(cudaMemcpy(h, part, sizeof h, cudaMemcpyDeviceToHost));
	double s = 0.0;
	for (int i = 0; i < SUMSQ_BLOCKS; i++)
		s += h[i];
	return s;
}

__global__ static void k_adamw(float *p, const float *g, float *m, float *v, size_t n,
			       struct ops_adamw_hp h)
{
	GRID_STRIDE(i, n)
	ops_adamw_elem(&p[i], g[i], &m[i], &v[i], &h);
}

static void cu_adamw(float *p, const float *g, float *m, float *v, size_t n,
		     const struct ops_adamw_hp *h)
{
	if (!n)
		return;
	LAUNCH(k_adamw, blocks_for(n, 256), 256, p, g, m, v, n, *h);
}

__global__ static void k_sgd(float *p, const float *g, float *buf, size_t n,
			     struct ops_sgd_hp h)
{
	GRID_STRIDE(i, n)
	ops_sgd_elem(&p[i], g[i], buf ? &buf[i] : NULL, &h);
}

static void cu_sgd(float *p, const float *g, float *buf, size_t n, const struct ops_sgd_hp *h)
{
	if (!n)
		return;
	LAUNCH(k_sgd, blocks_for(n, 256), 256, p, g, buf, n, *h);
}

/* ---- the table ---- */

static struct ops g_ops;

static void fill_table(void)
{
	g_ops.name = "cuda";
	g_ops.alloc = cu_alloc;
	g_ops.free = cu_free;
	g_ops.to_device = cu_to_device;
	g_ops.to_host = cu_to_host;
	g_ops.zero = cu_zero;
	g_ops.copy_rows = cu_copy_rows;
	g_ops.matmul = cu_matmul;
	g_ops.matmul_w = cu_matmul_w;
	g_ops.add = cu_add;
	g_ops.axpy = cu_axpy;
	g_ops.scale = cu_scale;
	g_ops.bias_add = cu_bias_add;
	g_ops.bias_backward = cu_bias_backward;
	g_ops.dropout_forward = cu_dropout_forward;
	g_ops.dropout_backward = cu_dropout_backward;
	g_ops.rmsnorm_forward = cu_rmsnorm_forward;
	g_ops.rmsnorm_backward = cu_rmsnorm_backward;
	g_ops.layernorm_forward = cu_layernorm_forward;
	g_ops.layernorm_backward = cu_layernorm_backward;
	g_ops.rope_forward = cu_rope_forward;
	g_ops.rope_backward = cu_rope_backward;
	g_ops.attention_forward = cu_attention_forward;
	g_ops.attention_backward = cu_attention_backward;
	g_ops.swiglu_forward = cu_swiglu_forward;
	g_ops.swiglu_backward = cu_swiglu_backward;
	g_ops.gelu_forward = cu_gelu_forward;
	g_ops.geglu_forward = cu_geglu_forward;
	g_ops.geglu_backward = cu_geglu_backward;
	g_ops.gelu_backward = cu_gelu_backward;
	g_ops.embedding_forward = cu_embedding_forward;
	g_ops.embedding_backward = cu_embedding_backward;
	g_ops.crossentropy_forward = cu_crossentropy_forward;
	g_ops.crossentropy_backward = cu_crossentropy_backward;
	g_ops.sumsq = cu_sumsq;
	g_ops.sumsq_chunk = 0;
	g_ops.adamw = cu_adamw;
	g_ops.sgd = cu_sgd;
	g_ops.dequant_w = cu_dequant_w;
	g_ops.col_mul = cu_col_mul;
	g_ops.col_mul_backward = cu_col_mul_backward;
	g_ops.dora_scale = cu_dora_scale;
	g_ops.attention_prefix_forward = cu_attention_prefix_forward;
	g_ops.attention_prefix_backward = cu_attention_prefix_backward;
}

extern "C" int ops_cuda_impl_probe(struct ops_cuda_device *out, int index, char *why,
				   size_t why_len)
{
	memset(out, 0, sizeof *out);
	int n = 0;
	cudaError_t e = cudaGetDeviceCount(&n);
	if (e != cudaSuccess) {
		(void)cudaGetLastError();
		snprintf(why, why_len, "no CUDA device: %s", cudaGetErrorString(e));
		return FT_EUNSUPP;
	}
	if (n <= 0) {
		snprintf(why, why_len, "no CUDA device: cudaGetDeviceCount found none");
		return FT_EUNSUPP;
	}
	out->count = n;
	out->index = index;
	if (index < 0 || index >= n) {
		snprintf(why, why_len, "no CUDA device %d: %d visible (backend.device counts from "
				       "0 among CUDA_VISIBLE_DEVICES)", index, n);
		return FT_EUNSUPP;
	}
	cudaDeviceProp p;
	e = cudaGetDeviceProperties(&p, index);
	if (e != cudaSuccess) {
		(void)cudaGetLastError();
		snprintf(why, why_len, "no CUDA device: cudaGetDeviceProperties: %s",
			 cudaGetErrorString(e));
		return FT_EUNSUPP;
	}
	snprintf(out->name, sizeof out->name, "%s", p.name);
	out->cc_major = p.major;
	out->cc_minor = p.minor;
	out->total_mem = p.totalGlobalMem;
	out->sm_count = p.multiProcessorCount;
	(void)cudaDriverGetVersion(&out->driver_version);
	(void)cudaRuntimeGetVersion(&out->runtime_version);
	size_t fr = 0, tot = 0;
	if (cudaSetDevice(index) == cudaSuccess && cudaMemGetInfo(&fr, &tot) == cudaSuccess)
		out->free_mem = fr;
	(void)cudaGetLastError();
	if (p.major < 8) {
		snprintf(why, why_len, "CUDA device %d (%s) has compute capability %d.%d; ftlab "
				       "needs 8.0 or newer", index, p.name, p.major, p.minor);
		return FT_EUNSUPP;
	}
	if (blas_load(why, why_len) != 0)
		return FT_EUNSUPP;
	return 0;
}

extern "C" const struct ops *ops_cuda_impl_table(int index)
{
	if (g_state)
		return g_state == 1 ? &g_ops : NULL;
	g_state = -1;
	const char *tf = getenv("FTLAB_CUDA_TF32");
	if (tf && strcmp(tf, "0") == 0)
		g_tf32 = false;
	char why[256];
	if (blas_load(why, sizeof why) != 0) {
		err_record(1, "%s", why);
		return NULL;
	}
	cudaError_t e = cudaSetDevice(index);
	if (e != cudaSuccess) {
		ck_cuda(e, "cudaSetDevice(backend.device)", __FILE__, __LINE__);
		return NULL;
	}
	cublasStatus_t s = g_api.create(&g_blas);
	if (s != CUBLAS_STATUS_SUCCESS) {
		ck_blas(s, "cublasCreate", __FILE__, __LINE__);
		return NULL;
	}
	CUBLAS_CHECK(g_api.set_pointer_mode(g_blas, CUBLAS_POINTER_MODE_HOST));
	/* the compute type of each call decides TF32; the math mode allows it for cuBLAS's
	 * own choices too, and the default mode keeps fp32 otherwise */
	CUBLAS_CHECK(g_api.set_math_mode(g_blas, g_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH
						      : CUBLAS_DEFAULT_MATH));
	fill_table();
	g_state = 1;
	return &g_ops;
}

extern "C" int ops_cuda_impl_error(char *msg, size_t msg_len)
{
	if (g_state == 1)
		CUDA_CHECK(cudaDeviceSynchronize());
	if (!g_err_kind)
		return 0;
	snprintf(msg, msg_len, "%s", g_err);
	return g_err_kind;
}

extern "C" void ops_cuda_impl_set_tf32(bool on)
{
	g_tf32 = on;
	if (g_state == 1)
		CUBLAS_CHECK(g_api.set_math_mode(g_blas, on ? CUBLAS_TF32_TENSOR_OP_MATH
							  : CUBLAS_DEFAULT_MATH));
}

extern "C" void ops_cuda_impl_mem(size_t *alloc_bytes, size_t *alloc_peak,
				  size_t *scratch_bytes)
{
	*alloc_bytes = g_alloc_bytes;
	*alloc_peak = g_alloc_peak;
	*scratch_bytes = g_scratch_bytes;
}

extern "C" void ops_cuda_impl_mem_peak(size_t *peak_bytes, size_t *device_used,
				       size_t *device_total)
{
	*peak_bytes = g_total_peak;
	*device_used = *device_total = 0;
	size_t fr = 0, tot = 0;
	if (started() && cudaMemGetInfo(&fr, &tot) == cudaSuccess) {
		*device_used = tot - fr;
		*device_total = tot;
	}
	(void)cudaGetLastError();
}

extern "C" void ops_cuda_impl_mem_reset_peak(void)
{
	g_alloc_peak = g_alloc_bytes;
	g_total_peak = g_alloc_bytes + g_scratch_bytes;
}

/* ---- the device's limits, for ftlab bench ---- */

#ifndef FTLAB_CUDA_EMU
/* Uniform values in [-1, 1) from a hash of the index: random data, because a product of
 * zeros can run faster than real data. */
__global__ static void k_fill_random(float *x, size_t n, uint32_t seed)
{
	GRID_STRIDE(i, n)
	{
		uint64_t h = (uint64_t)i * 0x9e3779b97f4a7c15ULL + seed;
		h ^= h >> 31;
		h *= 0xbf58476d1ce4e5b9ULL;
		h ^= h >> 29;
		x[i] = (float)(h >> 40) * 0x1.0p-23f - 1.0f;
	}
}

/* Best rate of `reps` timed products after two untimed ones, in TFLOP/s (0 on failure). */
static double time_gemm(int n, const void *a, const void *b, void *c, cudaDataType ty,
			cublasComputeType_t ct)
{
	cudaEvent_t e0, e1;
	cudaError_t ce = cudaEventCreate(&e0);
	if (ce == cudaSuccess && (ce = cudaEventCreate(&e1)) != cudaSuccess)
		(void)cudaEventDestroy(e0);
	if (ce != cudaSuccess) {
		ck_cuda(ce, "cudaEventCreate", __FILE__, __LINE__);
		return 0;
	}
	float one = 1.0f, zero = 0.0f;
	double best = 0;
	for (int rep = 0; rep < 12; rep++) {
		CUDA_CHECK(cudaEventRecord(e0, 0));
		CUBLAS_CHECK(g_api.gemm_ex(g_blas, CUBLAS_OP_T, CUBLAS_OP_N, n, n, n, &one, a, ty, n,
					  b, ty, n, &zero, c, ty, n, ct, CUBLAS_GEMM_DEFAULT));
		CUDA_CHECK(cudaEventRecord(e1, 0));
		CUDA_CHECK(cudaEventSynchronize(e1));
		float ms = 0;
		CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
		if (rep >= 2 && ms > 0)
			best = fmax(best, 2.0 * n * (double)n * n / (ms * 1e-3) / 1e12);
	}
	CUDA_CHECK(cudaEventDestroy(e0));
	CUDA_CHECK(cudaEventDestroy(e1));
	return g_err_kind ? 0 : best;
}
#endif

extern "C" int ops_cuda_impl_peaks(double *bf16_tflops, double *tf32_tflops, double *copy_gbs,
				   char *why, size_t why_len)
{
	*bf16_tflops = *tf32_tflops = *copy_gbs = 0;
#ifdef FTLAB_CUDA_EMU
	snprintf(why, why_len, "the CUDA emulation has no timing");
	return 1;
#else
	if (!started()) {
		snprintf(why, why_len, "the CUDA backend has not started");
		return 1;
	}
	const int n = 8192;
	size_t nn = (size_t)n * n;
	float *a = (float *)cu_alloc(nn * 4), *b = (float *)cu_alloc(nn * 4);
	float *c = (float *)cu_alloc(nn * 4);
	uint16_t *ab = (uint16_t *)cu_alloc(nn * 2), *bb = (uint16_t *)cu_alloc(nn * 2);
	uint16_t *cb = (uint16_t *)cu_alloc(nn * 2);
	if (a && b && c && ab && bb && cb) {
		LAUNCH(k_fill_random, blocks_for(nn, 256), 256, a, nn, 1u);
		LAUNCH(k_fill_random, blocks_for(nn, 256), 256, b, nn, 2u);
		LAUNCH(k_f32_to_bf16, blocks_for(nn, 256), 256, ab, a, nn);
		LAUNCH(k_f32_to_bf16, blocks_for(nn, 256), 256, bb, b, nn);
		*bf16_tflops = time_gemm(n, ab, bb, cb, CUDA_R_16BF, CUBLAS_COMPUTE_32F);
		*tf32_tflops = time_gemm(n, a, b, c, CUDA_R_32F, CUBLAS_COMPUTE_32F_FAST_TF32);
		/* copy: 256 MiB from a to c; read plus written bytes over the time */
		cudaEvent_t e0, e1;
		CUDA_CHECK(cudaEventCreate(&e0));
		CUDA_CHECK(cudaEventCreate(&e1));
		for (int rep = 0; rep < 8 && !g_err_kind; rep++) {
			CUDA_CHECK(cudaEventRecord(e0, 0));
			CUDA_CHECK(cudaMemcpyAsync(c, a, nn * 4, cudaMemcpyDeviceToDevice, 0));
			CUDA_CHECK(cudaEventRecord(e1, 0));
			CUDA_CHECK(cudaEventSynchronize(e1));
			float ms = 0;
			CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
			if (rep >= 2 && ms > 0)
				*copy_gbs = fmax(*copy_gbs, 2.0 * nn * 4 / (ms * 1e-3) / 1e9);
		}
		CUDA_CHECK(cudaEventDestroy(e0));
		CUDA_CHECK(cudaEventDestroy(e1));
	}
	cu_free(a), cu_free(b), cu_free(c), cu_free(ab), cu_free(bb), cu_free(cb);
	CUDA_CHECK(cudaDeviceSynchronize());
	if (g_err_kind) {
		snprintf(why, why_len, "%s", g_err);
		return 1;
	}
	return 0;
#endif
}
