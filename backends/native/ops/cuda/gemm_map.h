/* gemm_map: how a row-major ops matmul, C(M,N) = alpha op(A) op(B) + beta C, becomes one
 * column-major BLAS call (cuBLAS). A row-major matrix is the column-major view of its
 * transpose, so C^T = op(B)^T op(A)^T: B goes first, the transposes stay as they are and
 * the leading dimensions are the row-major row strides. Plain C, used by ops_cuda.cu and
 * tested on the CPU against a column-major reference GEMM (tests/unit/test_cuda.c). */
#ifndef FTLAB_GEMM_MAP_H
#define FTLAB_GEMM_MAP_H

#include "backends/native/ops/ops.h"

struct gemm_map {
	int trans_first, trans_second; /* 1 = transpose (CUBLAS_OP_T) */
	int m, n, k;                   /* column-major sizes of the call */
	int ld_first, ld_second, ldc;
	int first_is_b;                /* always 1: the first operand is ops' B */
};

static inline struct gemm_map gemm_map_rowmajor(unsigned flags, int m, int n, int k)
{
	struct gemm_map g;
	g.first_is_b = 1;
	g.trans_first = (flags & OPS_TB) ? 1 : 0;
	g.trans_second = (flags & OPS_TA) ? 1 : 0;
	g.m = n;
	g.n = m;
	g.k = k;
	g.ld_first = (flags & OPS_TB) ? k : n;  /* B stored (N,K) when transposed, else (K,N) */
	g.ld_second = (flags & OPS_TA) ? m : k; /* A stored (K,M) when transposed, else (M,K) */
	g.ldc = n;
	return g;
}

#endif
