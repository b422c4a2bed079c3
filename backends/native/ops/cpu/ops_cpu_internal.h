/* ops_cpu_internal: what the CPU backend's files share (not for other layers). */
#ifndef FTLAB_OPS_CPU_INTERNAL_H
#define FTLAB_OPS_CPU_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ops_w;

/* The matmul of struct ops (see ops.h), on oneDNN. */
void ops_cpu_matmul(float *c, const float *a, const float *b, int m, int n, int k,
		    unsigned flags, float alpha, float beta);

/* The matmul_w of struct ops (see ops.h): products with a weight of any storage type
 * (qmatmul_cpu.c). */
void ops_cpu_matmul_w(float *c, const float *a, const struct ops_w *w, int m, unsigned flags,
		      float alpha, float beta);

/* out ((r1 - r0), k) = rows [r0, r1) of w as fp32, the values of ops_quant.h (vectorised and
 * threaded where the CPU allows). */
void ops_cpu_dequant_rows(float *out, const struct ops_w *w, int r0, int r1);

/* The bf16 product of matmul_w (matmul_cpu.c): the frozen weight's bf16 copies are made
 * once from its dequantized values and cached by its address, like OPS_CONST_B weights.
 * false when the bf16 path cannot run (the caller computes in fp32). */
bool ops_cpu_matmul_bf16_w(float *c, const float *a, const struct ops_w *w, int m,
			   unsigned flags, float alpha, float beta);

/* One row times a transposed weight: y (n) = alpha x (k) W^T + beta y, W (n, k) row-major
 * (decode). beta 0 does not read y. Same bits for every thread count. */
/* The bf16 product without bf16 instructions: a and b rounded to bf16 (ops_f32_to_bf16)
 * into copies, multiplied in fp32 (exact products, fp32 accumulation: the numerics of the
 * bf16 path up to summation order). ops_cpu_matmul's OPS_BF16 on CPUs without
 * AVX512-BF16. false when the copies cannot be allocated (nothing written). */
bool ops_cpu_matmul_bf16_rounded(float *c, const float *a, const float *b, int m, int n,
				 int k, unsigned flags, float alpha, float beta);
void ops_cpu_gemv(float *y, const float *x, const float *w, int n, int k, float alpha,
		  float beta);

/* A few rows times a transposed weight, 2 <= m <= 8: c (m, n) = alpha a (m, k) W^T + beta c,
 * W (n, k) row-major (batched decode). beta 0 does not read c. Row i has the bits of
 * ops_cpu_gemv on a's row i, for every thread count. */
void ops_cpu_gemm_small(float *c, const float *a, const float *w, int m, int n, int k,
			float alpha, float beta);

/* Attention of one query per sequence (Tq = 1) at positions pos0 against the KV cache
 * (see ops.h attention_forward: scale, window); out (B, nh, hd). Same bits for every
 * thread count. */
void ops_cpu_attention_decode(float *out, const float *q, const float *k, const float *v,
			      int b, int tk, int nh, int nkv, int hd, const int *pos0, float scale,
			      int window);

/* Whether the bf16 training attention multiplies on AMX tiles: the CPU has them (oneDNN's
 * answer, as ops_cpu_has_bf16), Linux granted this process their state, and FTLAB_NO_AMX
 * is unset or 0 (then the AVX512-BF16 kernel runs: the same products, another order of
 * summation). Decided once, at the first call. */
bool ops_cpu_has_amx(void);

/* Tests: force the AMX path off (on false) or back to what ops_cpu_has_amx decided. */
void ops_cpu_amx_allow(bool allow);

/* The attention_forward_bf16 / attention_backward_bf16 of struct ops (attn_bf16_cpu.c). */
void ops_cpu_attention_forward_bf16(float *out, float *att, const float *q, const float *k,
				    const float *v, int b, int t, int nh, int nkv, int hd,
				    float scale, int window);
void ops_cpu_attention_backward_bf16(float *dq, float *dk, float *dv, const float *dout,
				     const float *att, const float *q, const float *k,
				     const float *v, int b, int t, int nh, int nkv, int hd,
				     float scale, int window);

/* Row-major sgemm with leading dimensions (oneDNN), for strided head views:
 * C = alpha op(A) op(B) + beta C. Single-threaded when called inside a parallel region. */
void ops_cpu_gemm_ld(bool ta, bool tb, int m, int n, int k, float alpha, const float *a,
		     int lda, const float *b, int ldb, float beta, float *c, int ldc);

/* dst[i] = ops_f32_to_bf16(src[i]) for i < n, the same bits, vectorised and threaded. */
void ops_cpu_to_bf16(uint16_t *dst, const float *src, size_t n);

/* Drops the bf16 copies of frozen weights that overlap [p, p + bytes) (memory freed or
 * overwritten). */
void ops_cpu_bf16_forget(const void *p, size_t bytes);

/* The act_forward / act_backward of struct ops (adapter_cpu.c). */
void ops_cpu_act_forward(float *out, const float *x, size_t n, int kind);
void ops_cpu_act_backward(float *dx, const float *dout, const float *x, size_t n, int kind);

/* The PEFT methods' ops (peft_cpu.c; see ops.h). */
void ops_cpu_col_mul(float *out, const float *x, const float *s, int rows, int cols, bool acc);
void ops_cpu_col_mul_backward(float *ds, const float *dout, const float *x, const float *w,
			      int rows, int cols);
void ops_cpu_dora_scale(float *g, float *inv_norm, const float *m, const float *w, int rows,
			int cols);
void ops_cpu_attention_prefix_forward(float *out, const float *q, const float *k,
				      const float *v, const float *pk, const float *pv,
				      size_t pstride, int b, int t, int np, int nh, int nkv,
				      int hd, float scale, int window);
void ops_cpu_attention_prefix_backward(float *dq, float *dk, float *dv, float *dpk,
				       float *dpv, const float *dout, const float *q,
				       const float *k, const float *v, const float *pk,
				       const float *pv, size_t pstride, int b, int t, int np,
				       int nh, int nkv, int hd, float scale, int window);

#endif
