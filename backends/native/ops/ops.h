/* ops: the engine's compute interface, one table of function pointers per backend
 * (cpu: oneDNN + OpenMP; cuda: cuBLAS + own kernels). The model calls only these, so a
 * backend implements this table and nothing else. Pointers passed in are memory of that
 * backend (host memory for cpu, device memory for cuda) allocated with ops->alloc.
 * Layout conventions: row-major; activations are (N, C) with N = B*T rows; weights are
 * PyTorch (out, in). "Backward" functions ACCUMULATE (+=) into parameter gradients and
 * OVERWRITE (=) input gradients unless the comment says otherwise.
 * Thread-safety: a table is stateless from the caller's view; calls from one thread. */
#ifndef FTLAB_OPS_H
#define FTLAB_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backends/native/ops/ops_math.h" /* struct ops_adamw_hp, ops_sgd_hp and their prepare */
#include "backends/native/ops/ops_quant.h" /* storage types of weights */
#include "common/diag.h"

/* Matmul flags. */
#define OPS_TA 1u   /* use A transposed: A is stored (K, M) */
#define OPS_TB 2u   /* use B transposed: B is stored (N, K) */
#define OPS_BF16 4u /* round A and B to bf16, accumulate in fp32 (no-op where unsupported) */
/* With OPS_BF16: B is a frozen weight, unchanged since any earlier call with the same
 * address until it is freed or written through to_device; the backend may keep its bf16
 * copy instead of rounding it again on every call. */
#define OPS_CONST_B 8u

/* A weight matrix W (n, k) (PyTorch (out, in)) as the model keeps it: fp32 (GGML_F32), or a
 * frozen weight in its file's format (GGML_F16, GGML_BF16, or the blocks of GGML_Q4_0 ...
 * GGML_Q6_K along k; ops_quant.h). data is this backend's memory: n rows of
 * ggml_row_bytes(type, k) bytes each. A plain value (the model fills one per weight). */
struct ops_w {
	const void *data;
	uint32_t type;
	int n, k;
};

/* RoPE pairing: OPS_ROPE_INTERLEAVED rotates (x[2i], x[2i+1]) (GGUF / llama.cpp rows);
 * OPS_ROPE_HALF rotates (x[i], x[i + hd/2]) (Hugging Face). Same values as
 * enum rope_style in io/model_file.h (1 and 2). */
enum ops_rope_style { OPS_ROPE_INTERLEAVED = 1, OPS_ROPE_HALF = 2 };
/* Non-linearities of bottleneck adapters (AdapterHub's non_linearity names: relu, swish,
 * gelu, gelu_new, tanh); the values are ops_act's kind. */
enum ops_act { OPS_ACT_RELU = 0, OPS_ACT_SILU = 1, OPS_ACT_GELU = 2, OPS_ACT_GELU_TANH = 3,
	       OPS_ACT_TANH = 4 };

struct ops {
	const char *name; /* "cpu", "cuda" */

	/* Memory of this backend, 64-byte aligned, zero-filled. NULL when it runs out. */
	void *(*alloc)(size_t bytes);
	void (*free)(void *p);
	/* Copies between host and backend memory (plain memcpy on cpu). */
	void (*to_device)(void *dst, const void *src, size_t bytes);
	void (*to_host)(void *dst, const void *src, size_t bytes);
	/* dst = 0 for n floats. */
	void (*zero)(float *dst, size_t n);
	/* dst[r*dst_stride + j] = src[r*src_stride + j] for r < rows, j < cols (floats). */
	void (*copy_rows)(float *dst, size_t dst_stride, const float *src, size_t src_stride,
			  int rows, int cols);

	/* C(M,N) = alpha * op(A) * op(B) + beta * C. op(A) is (M,K), op(B) is (K,N).
	 * With beta == 0, C is not read (may hold garbage/NaN). */
	void (*matmul)(float *c, const float *a, const float *b, int m, int n, int k,
		       unsigned flags, float alpha, float beta);

	/* Products with a weight of any storage type (struct ops_w):
	 *   flags & OPS_TB: C (M, n) = alpha A (M, k) W^T + beta C   (a linear layer, LM head)
	 *   otherwise:      C (M, k) = alpha A (M, n) W + beta C     (their input gradient)
	 * GGML_F32 is matmul on the same memory (the same bits). Any other type is multiplied
	 * with the values ops_quant.h defines, exactly, in fp32 (activations are never
	 * quantized); only the order of accumulation differs from matmul on a dequantized
	 * copy. OPS_BF16 as for matmul; a non-F32 weight is frozen (OPS_CONST_B implied). */
	void (*matmul_w)(float *c, const float *a, const struct ops_w *w, int m, unsigned flags,
			 float alpha, float beta);

	/* Element-wise. */
	void (*add)(float *out, const float *a, const float *b, size_t n);     /* out = a + b */
	void (*axpy)(float *y, float alpha, const float *x, size_t n);         /* y += alpha*x */
	void (*scale)(float *x, float alpha, size_t n);                        /* x *= alpha */
	/* out[r, :] += bias for r < rows (bias has cols entries). */
	void (*bias_add)(float *out, const float *bias, int rows, int cols);
	/* dbias += sum over rows of dout (fixed order). */
	void (*bias_backward)(float *dbias, const float *dout, int rows, int cols);
	/* out[r, :] = in[r, :] * mask[r, :] * 1/(1-p) where mask is 0/1 drawn from
	 * (seed, stream) per element (deterministic for any thread count). mask (rows*cols)
	 * is written for the backward; p == 0 copies. */
	void (*dropout_forward)(float *out, uint8_t *mask, const float *in, size_t n, float p,
				uint64_t seed, uint64_t stream);
	/* din += dout * mask / (1-p) */
	void (*dropout_backward)(float *din, const float *dout, const uint8_t *mask, size_t n,
				 float p);

	/* out (N,C) = x / rms(x) * w; rstd (N) saved for the backward. */
	void (*rmsnorm_forward)(float *out, float *rstd, const float *x, const float *w, int n,
				int c, float eps);
	/* dx = (see ops_math.h); dw += ... (dw may be NULL when frozen). */
	void (*rmsnorm_backward)(float *dx, float *dw, const float *dout, const float *x,
				 const float *w, const float *rstd, int n, int c);
	/* out (N,C) = (x - mean) * rstd * w + b; mean, rstd (N). */
	void (*layernorm_forward)(float *out, float *mean, float *rstd, const float *x,
				  const float *w, const float *b, int n, int c, float eps);
	void (*layernorm_backward)(float *dx, float *dw, float *db, const float *dout,
				   const float *x, const float *w, const float *mean,
				   const float *rstd, int n, int c);

	/* In place on x (B, T, n_head, hd) (row stride n_head*hd). Row (b, t) sits at position
	 * pos0[b] + t (pos0 NULL: 0). inv_freq (hd/2) from ops_rope_inv_freq. The backward is
	 * the inverse rotation (apply it to dx in place). */
	void (*rope_forward)(float *x, int b, int t, int n_head, int hd, const int *pos0,
			     const float *inv_freq, enum ops_rope_style style);
	void (*rope_backward)(float *dx, int b, int t, int n_head, int hd, const int *pos0,
			      const float *inv_freq, enum ops_rope_style style);

	/* Causal attention with grouped-query heads. q (B, Tq, nh, hd); k, v (B, Tk, nkv, hd)
	 * (Tk = row capacity per sequence, e.g. the KV cache length); query t of sequence b is
	 * at absolute position p = pos0[b] + t and attends keys 0..p (pos0 NULL: 0, Tq == Tk),
	 * or with window > 0 only the last `window` of them, keys p-window+1..p (sliding-window
	 * layers). Scores are scale * q.k (1/sqrt(hd) for most models). out (B, Tq, nh, hd).
	 * att (B, nh, Tq, Tq) receives the probabilities when non-NULL (training, pos0 NULL
	 * only; 0 outside the causal window). */
	void (*attention_forward)(float *out, float *att, const float *q, const float *k,
				  const float *v, int b, int tq, int tk, int nh, int nkv, int hd,
				  const int *pos0, float scale, int window);
	/* Training form (pos0 NULL, Tq == Tk == T), the forward's scale and window. dq, dk, dv
	 * overwritten. */
	void (*attention_backward)(float *dq, float *dk, float *dv, const float *dout,
				   const float *att, const float *q, const float *k,
				   const float *v, int b, int t, int nh, int nkv, int hd,
				   float scale, int window);
	/* The training forms above (pos0 NULL, Tq == Tk == T) with the products in bf16: Q K^T,
	 * P V and the backward's dO V^T, P^T dO, dS K, dS^T Q round their operands to bf16
	 * (as OPS_BF16) and accumulate in fp32; softmax and its backward stay fp32. The model
	 * calls them under train.precision bf16; NULL where a backend has none (the fp32
	 * forms are used). */
	void (*attention_forward_bf16)(float *out, float *att, const float *q, const float *k,
				       const float *v, int b, int t, int nh, int nkv, int hd,
				       float scale, int window);
	void (*attention_backward_bf16)(float *dq, float *dk, float *dv, const float *dout,
					const float *att, const float *q, const float *k,
					const float *v, int b, int t, int nh, int nkv, int hd,
					float scale, int window);

	/* out (N) = silu(gate) * up; backward: dgate, dup overwritten. */
	void (*swiglu_forward)(float *out, const float *gate, const float *up, size_t n);
	void (*swiglu_backward)(float *dgate, float *dup, const float *dout, const float *gate,
				const float *up, size_t n);
	/* GELU, tanh approximation. dx overwritten. */
	void (*gelu_forward)(float *out, const float *x, size_t n);
	void (*gelu_backward)(float *dx, const float *dout, const float *x, size_t n);
	/* GeGLU: out (N) = gelu(gate) * up (tanh GELU); backward: dgate, dup overwritten. */
	void (*geglu_forward)(float *out, const float *gate, const float *up, size_t n);
	void (*geglu_backward)(float *dgate, float *dup, const float *dout, const float *gate,
			       const float *up, size_t n);

	/* Bottleneck adapters' non-linearity (enum ops_act, ops_act in ops_math.h):
	 * out = act(x); dx = dout * act'(x) (overwritten). */
	void (*act_forward)(float *out, const float *x, size_t n, int kind);
	void (*act_backward)(float *dx, const float *dout, const float *x, size_t n, int kind);

	/* out (N, C) = wte[tokens[r]] (+ wpe[pos[r]] when wpe). pos NULL: r % t. wte (V, C) is
	 * any storage type (its rows dequantized as matmul_w reads them); wpe is fp32. */
	void (*embedding_forward)(float *out, const int32_t *tokens, const int *pos,
				  const struct ops_w *wte, const float *wpe, int n, int t, int c);
	/* dwte[tokens[r]] += dout[r] (dwte may be NULL); dwpe likewise. Deterministic. */
	void (*embedding_backward)(float *dwte, float *dwpe, const float *dout,
				   const int32_t *tokens, const int *pos, int n, int t, int c);

	/* Fused softmax + cross-entropy. logits (N, V); targets (N), < 0 = masked.
	 * losses[r] = logsumexp - logit[target] (0 when masked); lse[r] saved; argmax[r] (may
	 * be NULL) the index of the row's first largest logit (-1 when masked), for token
	 * accuracy. Returns the number of unmasked rows. Probabilities are never stored. */
	long (*crossentropy_forward)(float *losses, float *lse, int32_t *argmax,
				     const float *logits, const int32_t *targets, int n, int v);
	/* In place: logits (N, V) become dlogits = scale * w[r] * (softmax - onehot) on unmasked
	 * rows, 0 on masked rows; row_scale w (N, backend memory) weighs each row (preference
	 * losses weigh each sequence's tokens by its own d loss / d log p), NULL = 1. */
	void (*crossentropy_backward)(float *logits, const float *lse, const int32_t *targets,
				      int n, int v, float scale, const float *row_scale);

	/* Optimizer support. sum of squares in double, fixed order (the same bits on every
	 * call with the same n; on cpu: one sequential sum for n <= 65536). */
	double (*sumsq)(const float *x, size_t n);
	/* The global gradient norm (train/optim.c) calls sumsq on chunks of this many elements
	 * of each tensor, adding the results in order; 0: one call per tensor. The cpu's 16384
	 * keeps its historical summation order (bit-identical runs); cuda uses 0 (one
	 * synchronising call per tensor instead of one per 16384 elements). */
	size_t sumsq_chunk;
	/* AdamW with decoupled weight decay, constants from ops_adamw_prepare (ops_math.h),
	 * element-wise ops_adamw_elem on both backends. */
	void (*adamw)(float *p, const float *g, float *m, float *v, size_t n,
		      const struct ops_adamw_hp *h);
	/* SGD as torch.optim.SGD (momentum buffer buf, n floats; untouched without momentum),
	 * constants from ops_sgd_prepare, element-wise ops_sgd_elem on both backends. */
	void (*sgd)(float *p, const float *g, float *buf, size_t n, const struct ops_sgd_hp *h);

	/* ---- PEFT methods beyond LoRA: DoRA, IA3, prefix tuning ---- */
	/* out (w->n, w->k) = W as fp32, the values matmul_w multiplies with (a copy for
	 * GGML_F32): DoRA's and IA3's products of the frozen weight with their vectors. */
	void (*dequant_w)(float *out, const struct ops_w *w);
	/* out[r, c] = x[r, c] * s[c], plus out[r, c] when acc (out may be x). */
	void (*col_mul)(float *out, const float *x, const float *s, int rows, int cols,
			bool acc);
	/* ds[c] += w[c] * sum over r of dout[r, c] * x[r, c] (w NULL: 1), rows in order. */
	void (*col_mul_backward)(float *ds, const float *dout, const float *x, const float *w,
				 int rows, int cols);
	/* DoRA, per row r of w (rows, cols): n = ||w[r, :]||_2 summed in double,
	 * inv_norm[r] = 1/n, g[r] = m[r]/n. */
	void (*dora_scale)(float *g, float *inv_norm, const float *m, const float *w, int rows,
			   int cols);
	/* Causal attention after a prefix shared by every sequence (prefix tuning). q (B, T,
	 * nh, hd); k, v (B, T, nkv, hd); pk, pv the np prefix rows (nkv*hd used of each, row
	 * stride pstride floats). Query t sits at position np + t and attends the prefix keys
	 * (positions 0..np-1) and keys 0..t of its sequence; window > 0 keeps only the keys
	 * less than `window` positions behind it. Scores are scale * q.k. out (B, T, nh, hd).
	 * The backward recomputes the probabilities: dq, dk, dv overwritten; dpk, dpv
	 * (stride pstride) ACCUMULATE the prefix gradients summed over sequences in order.
	 * NULL on backends without them (prefix tuning is refused there). */
	void (*attention_prefix_forward)(float *out, const float *q, const float *k,
					 const float *v, const float *pk, const float *pv,
					 size_t pstride, int b, int t, int np, int nh, int nkv,
					 int hd, float scale, int window);
	void (*attention_prefix_backward)(float *dq, float *dk, float *dv, float *dpk,
					  float *dpv, const float *dout, const float *q,
					  const float *k, const float *v, const float *pk,
					  const float *pv, size_t pstride, int b, int t, int np,
					  int nh, int nkv, int hd, float scale, int window);
};

/* The CPU backend (always available). */
const struct ops *ops_cpu(void);
/* "cpu" or "cuda" (NULL when not built or no device); "auto" picks cuda when present. */
const struct ops *ops_get(const char *name);

/* RoPE inverse frequencies (hd/2 of them) with the model's base and scaling:
 * scaling 0 none, 1 linear (factor), 2 llama3 (factor, low, high, orig_ctx). */
void ops_rope_inv_freq(float *out, int hd, float theta, int scaling, float factor,
		       float low_freq_factor, float high_freq_factor, int orig_ctx);

/* True when this CPU runs bf16 matmuls natively (AVX512-BF16 or AMX). */
bool ops_cpu_has_bf16(void);

#endif
