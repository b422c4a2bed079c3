/* cuda_emu: just enough of the CUDA runtime, cuBLAS and the kernel execution model to run
 * backends/native/ops/cuda/ops_cuda.cu on the CPU (g++ -std=c++20 -DFTLAB_CUDA_EMU
 * -include this). Every block runs its threads as fibers on one OS thread; blocks of a grid
 * run one after another, so `__shared__` (a function-local static) is per block;
 * __syncthreads, __syncwarp and the shuffles are barriers among those threads (fibers,
 * see below).
 * cublasGemmEx is a column-major reference GEMM that rounds inputs to TF32 or reads bf16
 * as asked. Used only by tests/unit/test_cuda_emu.c to check the kernels' indexing,
 * synchronisation and launch configurations on machines without a GPU. */
#ifndef FTLAB_CUDA_EMU_H
#define FTLAB_CUDA_EMU_H

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <memory>
#include <ucontext.h>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __shared__ static

/* the exported entry points get other names, so the emulated table can sit next to the
 * real one in a program that links libftlab.a */
#define ops_cuda_impl_probe emu_ops_cuda_impl_probe
#define ops_cuda_impl_table emu_ops_cuda_impl_table
#define ops_cuda_impl_error emu_ops_cuda_impl_error
#define ops_cuda_impl_set_tf32 emu_ops_cuda_impl_set_tf32
#define ops_cuda_impl_mem emu_ops_cuda_impl_mem
#define ops_cuda_impl_mem_peak emu_ops_cuda_impl_mem_peak
#define ops_cuda_impl_peaks emu_ops_cuda_impl_peaks
#define ops_cuda_impl_mem_reset_peak emu_ops_cuda_impl_mem_reset_peak

struct dim3 {
	unsigned x, y, z;
	dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};

inline dim3 blockDim, gridDim;

/* ---- errors ---- */

enum cudaError_t {
	cudaSuccess = 0,
	cudaErrorInvalidValue = 1,
	cudaErrorMemoryAllocation = 2,
	cudaErrorInvalidConfiguration = 9,
	cudaErrorInvalidPitchValue = 12,
	cudaErrorInvalidDevicePointer = 17,
	cudaErrorLaunchFailure = 719,
};

inline cudaError_t emu_last_error = cudaSuccess;

inline const char *cudaGetErrorName(cudaError_t e)
{
	switch (e) {
	case cudaSuccess: return "cudaSuccess";
	case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
	case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
	case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
	case cudaErrorInvalidPitchValue: return "cudaErrorInvalidPitchValue";
	case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
	default: return "cudaErrorLaunchFailure";
	}
}

inline const char *cudaGetErrorString(cudaError_t e)
{
	return e == cudaSuccess ? "no error" : cudaGetErrorName(e);
}

inline cudaError_t cudaGetLastError(void)
{
	cudaError_t e = emu_last_error;
	emu_last_error = cudaSuccess;
	return e;
}

/* ---- device, memory ---- */

struct cudaDeviceProp {
	char name[256];
	int major, minor;
	size_t totalGlobalMem;
	int multiProcessorCount;
};

inline cudaError_t cudaGetDeviceCount(int *n)
{
	*n = 1;
	return cudaSuccess;
}

inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int dev)
{
	(void)dev;
	memset(p, 0, sizeof *p);
	snprintf(p->name, sizeof p->name, "ftlab CPU emulation");
	p->major = 9;
	p->totalGlobalMem = (size_t)1 << 32;
	p->multiProcessorCount = 1;
	return cudaSuccess;
}

inline cudaError_t cudaDriverGetVersion(int *v)
{
	*v = 13000;
	return cudaSuccess;
}

inline cudaError_t cudaRuntimeGetVersion(int *v)
{
	*v = 13000;
	return cudaSuccess;
}

inline cudaError_t cudaSetDevice(int d)
{
	return d == 0 ? cudaSuccess : cudaErrorInvalidValue;
}

inline cudaError_t cudaDeviceSynchronize(void)
{
	return cudaSuccess;
}

inline cudaError_t cudaMemGetInfo(size_t *fr, size_t *tot)
{
	*fr = *tot = (size_t)1 << 32;
	return cudaSuccess;
}

inline cudaError_t cudaMalloc(void **p, size_t n)
{
	/* plain malloc (not aligned_alloc) so AddressSanitizer puts redzones right after */
	*p = n ? malloc(n) : nullptr;
	return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}

inline cudaError_t cudaFree(void *p)
{
	free(p);
	return cudaSuccess;
}

enum cudaMemcpyKind {
	cudaMemcpyHostToDevice = 1,
	cudaMemcpyDeviceToHost = 2,
	cudaMemcpyDeviceToDevice = 3,
};

inline cudaError_t cudaMemcpy(void *d, const void *s, size_t n, cudaMemcpyKind k)
{
	(void)k;
	memcpy(d, s, n);
	return cudaSuccess;
}

inline cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t n, cudaMemcpyKind k, int st)
{
	(void)st;
	return cudaMemcpy(d, s, n, k);
}

inline cudaError_t cudaMemset(void *p, int v, size_t n)
{
	memset(p, v, n);
	return cudaSuccess;
}

inline cudaError_t cudaMemsetAsync(void *p, int v, size_t n, int st)
{
	(void)st;
	return cudaMemset(p, v, n);
}

inline cudaError_t cudaMemcpy2DAsync(void *d, size_t dp, const void *s, size_t sp, size_t w,
				     size_t h, cudaMemcpyKind k, int st)
{
	(void)k;
	(void)st;
	if (dp < w || sp < w)
		return cudaErrorInvalidPitchValue;
	for (size_t r = 0; r < h; r++)
		memcpy((char *)d + r * dp, (const char *)s + r * sp, w);
	return cudaSuccess;
}

/* ---- execution model ----
 * The threads of a block are fibers (ucontext) on the calling thread. Each fiber runs
 * until it reaches a barrier or returns; a block barrier releases when every live fiber
 * of the block waits on it, a warp barrier when every live lane of that warp does. So
 * the interleavings are the ones CUDA allows at barriers, deterministically, and a
 * missing barrier shows up as a wrong result or a detected deadlock. */

enum emu_state { EMU_RUN, EMU_WAIT_BLOCK, EMU_WAIT_WARP, EMU_DONE };

struct emu_fiber {
	ucontext_t ctx;
	emu_state state;
};

struct emu_exec {
	ucontext_t sched;
	std::vector<emu_fiber> fib;
	char *stacks;
	std::vector<uint64_t> slots;
	unsigned cur;
	void (*tramp)(void *);
	void *fn;
};
inline emu_exec *emu_x;
inline dim3 threadIdx, blockIdx;

#define EMU_STACK (64 * 1024)

/* fiber stacks, kept between launches (1024 threads at most) */
inline char *emu_stacks(void)
{
	static char *s = new char[(size_t)1024 * EMU_STACK];
	return s;
}

inline void emu_yield(emu_state st)
{
	emu_fiber &f = emu_x->fib[emu_x->cur];
	f.state = st;
	swapcontext(&f.ctx, &emu_x->sched);
}

inline void __syncthreads(void)
{
	emu_yield(EMU_WAIT_BLOCK);
}

inline void __syncwarp(unsigned mask = 0xffffffffu)
{
	(void)mask;
	emu_yield(EMU_WAIT_WARP);
}

template <typename T> inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask)
{
	static_assert(sizeof(T) <= 8, "shuffle of at most 8 bytes");
	(void)mask;
	unsigned me = emu_x->cur, base = me / 32 * 32;
	uint64_t b = 0;
	memcpy(&b, &v, sizeof v);
	emu_x->slots[me] = b;
	emu_yield(EMU_WAIT_WARP);
	b = emu_x->slots[base + ((me % 32) ^ (unsigned)lane_mask)];
	emu_yield(EMU_WAIT_WARP);
	T out;
	memcpy(&out, &b, sizeof out);
	return out;
}

inline unsigned long long atomicAdd(unsigned long long *p, unsigned long long v)
{
	unsigned long long o = *p;
	*p = o + v;
	return o;
}

inline void emu_fiber_main(void)
{
	emu_x->tramp(emu_x->fn);
	emu_x->fib[emu_x->cur].state = EMU_DONE; /* returns to uc_link: the scheduler */
}

template <typename F> inline void emu_tramp(void *p)
{
	(*(F *)p)();
}

template <typename F> inline void emu_launch(dim3 grid, dim3 block, F f)
{
	if (grid.x == 0 || block.x == 0 || block.x > 1024 || grid.y != 1 || block.y != 1 ||
	    block.x % 32 != 0) {
		emu_last_error = cudaErrorInvalidConfiguration;
		return;
	}
	blockDim = block;
	gridDim = grid;
	unsigned nt = block.x;
	emu_exec x;
	x.fib.resize(nt);
	x.stacks = emu_stacks();
	x.slots.resize(nt);
	x.tramp = emu_tramp<F>;
	x.fn = &f;
	emu_x = &x;
	for (unsigned b = 0; b < grid.x; b++) {
		blockIdx = dim3(b);
		for (unsigned t = 0; t < nt; t++) {
			emu_fiber &fb = x.fib[t];
			getcontext(&fb.ctx);
			fb.ctx.uc_stack.ss_sp = &x.stacks[(size_t)t * EMU_STACK];
			fb.ctx.uc_stack.ss_size = EMU_STACK;
			fb.ctx.uc_link = &x.sched;
			makecontext(&fb.ctx, emu_fiber_main, 0);
			fb.state = EMU_RUN;
		}
		for (;;) {
			bool live = false;
			for (unsigned t = 0; t < nt; t++)
				if (x.fib[t].state == EMU_RUN) {
					x.cur = t;
					threadIdx = dim3(t);
					swapcontext(&x.sched, &x.fib[t].ctx);
				}
			/* release barriers */
			bool all_block = true, any = false;
			for (unsigned t = 0; t < nt; t++) {
				emu_state st = x.fib[t].state;
				if (st == EMU_DONE)
					continue;
				live = true;
				if (st != EMU_WAIT_BLOCK)
					all_block = false;
			}
			if (!live)
				break;
			if (all_block) {
				for (unsigned t = 0; t < nt; t++)
					if (x.fib[t].state == EMU_WAIT_BLOCK)
						x.fib[t].state = EMU_RUN;
				continue;
			}
			for (unsigned w = 0; w < nt / 32; w++) {
				bool waiting = true, lane_live = false;
				for (unsigned t = w * 32; t < w * 32 + 32; t++) {
					emu_state st = x.fib[t].state;
					if (st == EMU_DONE)
						continue;
					lane_live = true;
					if (st != EMU_WAIT_WARP)
						waiting = false;
				}
				if (lane_live && waiting) {
					any = true;
					for (unsigned t = w * 32; t < w * 32 + 32; t++)
						if (x.fib[t].state == EMU_WAIT_WARP)
							x.fib[t].state = EMU_RUN;
				}
			}
			if (!any) {
				fprintf(stderr, "cuda_emu: deadlock in block %u (threads wait on "
						"different barriers)\n", b);
				abort();
			}
		}
	}
	emu_x = nullptr;
}

/* ---- cuBLAS ---- */

typedef struct emu_blas *cublasHandle_t;
enum cublasStatus_t {
	CUBLAS_STATUS_SUCCESS = 0,
	CUBLAS_STATUS_ALLOC_FAILED = 3,
	CUBLAS_STATUS_INVALID_VALUE = 7,
};
enum cublasOperation_t { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 };
enum cublasPointerMode_t { CUBLAS_POINTER_MODE_HOST = 0 };
enum cublasMath_t { CUBLAS_DEFAULT_MATH = 0, CUBLAS_TF32_TENSOR_OP_MATH = 3 };
enum cudaDataType { CUDA_R_32F = 0, CUDA_R_16BF = 14 };
enum cublasComputeType_t { CUBLAS_COMPUTE_32F = 68, CUBLAS_COMPUTE_32F_FAST_TF32 = 77 };
enum cublasGemmAlgo_t { CUBLAS_GEMM_DEFAULT = -1 };

inline const char *cublasGetStatusName(cublasStatus_t s)
{
	return s == CUBLAS_STATUS_SUCCESS ? "CUBLAS_STATUS_SUCCESS"
	       : s == CUBLAS_STATUS_INVALID_VALUE ? "CUBLAS_STATUS_INVALID_VALUE"
						  : "CUBLAS_STATUS_ALLOC_FAILED";
}

inline const char *cublasGetStatusString(cublasStatus_t s)
{
	return cublasGetStatusName(s);
}

inline cublasStatus_t cublasCreate(cublasHandle_t *h)
{
	static int dummy;
	*h = (cublasHandle_t)&dummy;
	return CUBLAS_STATUS_SUCCESS;
}

inline cublasStatus_t cublasCreate_v2(cublasHandle_t *h)
{
	return cublasCreate(h);
}

inline cublasStatus_t cublasSetPointerMode_v2(cublasHandle_t, cublasPointerMode_t)
{
	return CUBLAS_STATUS_SUCCESS;
}

inline cublasStatus_t cublasSetMathMode(cublasHandle_t, cublasMath_t)
{
	return CUBLAS_STATUS_SUCCESS;
}

/* TF32: 10 explicit mantissa bits, round to nearest (ties away, as the tensor cores'
 * conversion is specified loosely; the error bound is what matters here) */
inline float emu_tf32(float x)
{
	uint32_t u;
	memcpy(&u, &x, 4);
	if ((u & 0x7f800000u) != 0x7f800000u)
		u = (u + 0x1000u) & 0xffffe000u;
	memcpy(&x, &u, 4);
	return x;
}

inline float emu_load(const void *p, cudaDataType t, size_t i, bool tf32)
{
	if (t == CUDA_R_16BF) {
		uint32_t u = (uint32_t)((const uint16_t *)p)[i] << 16;
		float f;
		memcpy(&f, &u, 4);
		return f;
	}
	float f = ((const float *)p)[i];
	return tf32 ? emu_tf32(f) : f;
}

/* Column-major C(m,n) = alpha op(A)(m,k) op(B)(k,n) + beta C, with cuBLAS's argument
 * checks (leading dimensions too small are CUBLAS_STATUS_INVALID_VALUE). */
inline cublasStatus_t cublasGemmEx(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb,
				   int m, int n, int k, const void *alpha, const void *A,
				   cudaDataType at, int lda, const void *B, cudaDataType bt, int ldb,
				   const void *beta, void *C, cudaDataType ct, int ldc,
				   cublasComputeType_t comp, cublasGemmAlgo_t)
{
	if (m < 0 || n < 0 || k < 0 || ct != CUDA_R_32F || ldc < (m > 1 ? m : 1) ||
	    lda < ((ta == CUBLAS_OP_N ? m : k) > 1 ? (ta == CUBLAS_OP_N ? m : k) : 1) ||
	    ldb < ((tb == CUBLAS_OP_N ? k : n) > 1 ? (tb == CUBLAS_OP_N ? k : n) : 1) ||
	    (at == CUDA_R_16BF && comp != CUBLAS_COMPUTE_32F))
		return CUBLAS_STATUS_INVALID_VALUE;
	bool tf32 = comp == CUBLAS_COMPUTE_32F_FAST_TF32;
	float al = *(const float *)alpha, be = *(const float *)beta;
	float *c = (float *)C;
	for (int j = 0; j < n; j++)
		for (int i = 0; i < m; i++) {
			float s = 0.0f;
			for (int p = 0; p < k; p++) {
				size_t ia = ta == CUBLAS_OP_N ? i + (size_t)p * lda : p + (size_t)i * lda;
				size_t ib = tb == CUBLAS_OP_N ? p + (size_t)j * ldb : j + (size_t)p * ldb;
				s += emu_load(A, at, ia, tf32) * emu_load(B, bt, ib, tf32);
			}
			float *cij = &c[i + (size_t)j * ldc];
			*cij = be == 0.0f ? al * s : al * s + be * *cij;
		}
	return CUBLAS_STATUS_SUCCESS;
}

#endif
