/* emu_main: runs the CUDA backend's kernels against the CPU backend: every op of the
 * table on random inputs of awkward shapes (head_dim not a multiple of 32, GQA, decode
 * with pos0, masked and out-of-range targets, repeated tokens), then the whole `ftlab
 * selftest` comparison on tiny models, then (--train, or with the selftest) a whole
 * native-engine run (LoRA training with checkpoints, evaluation with generation) against
 * the same run on the CPU. Two builds of this one file:
 *   - the CPU emulation (cuda_emu.hpp), built and run by tests/unit/test_cuda_emu.c; the
 *     engine run goes through ops_guard (tests/unit/ops_guard.h: the host cannot touch its
 *     memory);
 *   - FTLAB_KERNELS_ON_DEVICE: the real kernels on a GPU (`cuda_kernels` in the GPU bundle,
 *     make gpu-bundle; scripts/gpu-check.sh runs it plainly and under compute-sanitizer);
 *     the engine run uses the device table directly (its memory is the device's anyway).
 * Prints one line per check and "emu: passed" (device: "kernels: passed") at the end. */
#ifdef FTLAB_KERNELS_ON_DEVICE
/* the real entry points of ops_cuda.cu (ops_cuda_internal.h) under the names used below */
#define emu_ops_cuda_impl_table ops_cuda_impl_table
#define emu_ops_cuda_impl_probe ops_cuda_impl_probe
#define emu_ops_cuda_impl_error ops_cuda_impl_error
#define emu_ops_cuda_impl_set_tf32 ops_cuda_impl_set_tf32
#define RESULT_NAME "kernels"
#define ON_WHAT "CUDA device"
#else
#define RESULT_NAME "emu"
#define ON_WHAT "emulated CUDA"
#endif
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stdarg.h>

#include "backends/backend.h"
#include "backends/native/io/dequant.h"
#include "backends/native/native_engine.h"
#include "backends/native/ops/cuda/ops_cuda.h"
#include "backends/native/ops/ops.h"
#include "backends/native/ops/ops_math.h"
#include "common/rng.h"
#include "common/util.h"
#include "backends/native/selftest.h"
#include "schema/schema.h"
#include "tests/unit/ops_guard.h"
#include "tests/unit/tiny_model.h"
#include "common/banned.h"

const struct ops *emu_ops_cuda_impl_table(int index);
int emu_ops_cuda_impl_probe(struct ops_cuda_device *out, int index, char *why, size_t why_len);
int emu_ops_cuda_impl_error(char *msg, size_t msg_len);
void emu_ops_cuda_impl_set_tf32(bool on);

static const struct ops *C, *G;
static int n_bad;

static float *rnd(size_t n, uint64_t seed, float scale)
{
	struct rng r;
	rng_seed(&r, seed, 17);
	float *x = malloc((n ? n : 1) * sizeof(float));
	for (size_t i = 0; i < n; i++)
		x[i] = scale * (2.0f * rng_uniform_f(&r) - 1.0f);
	return x;
}

/* device copy of a host array */
static void *dev(const void *h, size_t bytes)
{
	void *d = G->alloc(bytes);
	G->to_device(d, h, bytes);
	return d;
}

static float *host(const float *d, size_t n)
{
	float *h = malloc((n ? n : 1) * sizeof(float));
	G->to_host(h, d, n * sizeof(float));
	return h;
}

/* relative L2 error of the device array against the host reference */
static void cmp(const char *what, const float *d, const float *ref, size_t n, double tol)
{
	float *h = host(d, n);
	double num = 0, den = 0;
	bool finite = true;
	for (size_t i = 0; i < n; i++) {
		double e = (double)h[i] - ref[i];
		num += e * e;
		den += (double)ref[i] * ref[i];
		finite = finite && isfinite(h[i]);
	}
	double rel = den > 0 ? sqrt(num / den) : sqrt(num);
	bool ok = finite && rel <= tol;
	printf("  %-44s rel %.1e (tol %.0e) %s\n", what, rel, tol, ok ? "ok" : "FAIL");
	if (!ok)
		n_bad++;
	free(h);
}

static void check_errors(void)
{
	char msg[1024];
	if (emu_ops_cuda_impl_error(msg, sizeof msg)) {
		printf("  backend error: %s\n", msg);
		n_bad++;
	}
}

static void t_matmul(void)
{
	int shapes[3][3] = {{5, 7, 3}, {33, 17, 65}, {1, 40, 9}};
	for (int s = 0; s < 3; s++)
		for (unsigned fl = 0; fl < 8; fl++)
			for (int acc = 0; acc <= 1; acc++) {
				int m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
				float *a = rnd((size_t)m * k, 1 + s, 1), *b = rnd((size_t)k * n, 2 + s, 1);
				float *c = rnd((size_t)m * n, 3 + s, 1);
				float *ga = dev(a, (size_t)m * k * 4), *gb = dev(b, (size_t)k * n * 4);
				float *gc = dev(c, (size_t)m * n * 4);
				/* the reference: double sums of (bf16-rounded when asked) inputs */
				float *ref = malloc((size_t)m * n * 4);
				for (int i = 0; i < m; i++)
					for (int j = 0; j < n; j++) {
						double sum = 0;
						for (int p = 0; p < k; p++) {
							float av = (fl & OPS_TA) ? a[(size_t)p * m + i] : a[(size_t)i * k + p];
							float bv = (fl & OPS_TB) ? b[(size_t)j * k + p] : b[(size_t)p * n + j];
							if (fl & OPS_BF16) {
								av = ops_bf16_to_f32(ops_f32_to_bf16(av));
								bv = ops_bf16_to_f32(ops_f32_to_bf16(bv));
							}
							sum += (double)av * bv;
						}
						ref[(size_t)i * n + j] = (float)(0.5 * sum + (acc ? c[(size_t)i * n + j] : 0));
					}
				G->matmul(gc, ga, gb, m, n, k, fl, 0.5f, acc ? 1.0f : 0.0f);
				char what[96];
				snprintf(what, sizeof what, "matmul %dx%dx%d flags %u beta %d", m, n, k, fl, acc);
				cmp(what, gc, ref, (size_t)m * n, 1e-5);
				free(a), free(b), free(c), free(ref);
				G->free(ga), G->free(gb), G->free(gc);
			}
	/* k = 0: C = beta C */
	float c[6] = {1, 2, 3, 4, 5, 6}, z[6] = {0};
	float *gc = dev(c, sizeof c);
	G->matmul(gc, gc, gc, 2, 3, 0, 0, 1.0f, 0.0f);
	cmp("matmul k=0 beta 0", gc, z, 6, 0);
	G->free(gc);
}

/* n rows of k elements of type t: random quants and valid fp16 scales */
static uint8_t *rnd_weight(uint32_t t, int n, int k, uint64_t seed)
{
	struct rng r;
	rng_seed(&r, seed, 9);
	size_t rb = ggml_row_bytes(t, (size_t)k), bytes = (size_t)n * rb, be = 1, bb = 1;
	uint8_t *w = malloc(bytes);
	for (size_t i = 0; i < bytes; i++)
		w[i] = (uint8_t)rng_below(&r, 256);
	ggml_type_block(t, &be, &bb);
	for (size_t b = 0; b < bytes / bb; b++) {
		uint8_t *p = w + b * bb;
		uint16_t h = f32_to_fp16((2.0f * rng_uniform_f(&r) - 1.0f) * 0.05f);
		size_t off = t == GGML_Q6_K ? 208 : 0;
		if (t == GGML_BF16)
			continue; /* any bf16 pattern but NaN/inf is a value; random is fine */
		p[off] = (uint8_t)(h & 0xff);
		p[off + 1] = (uint8_t)(h >> 8);
		if (t == GGML_Q4_1 || t == GGML_Q5_1 || t == GGML_Q4_K || t == GGML_Q5_K) {
			h = f32_to_fp16(rng_uniform_f(&r) * 0.03f);
			p[2] = (uint8_t)(h & 0xff);
			p[3] = (uint8_t)(h >> 8);
		}
	}
	if (t == GGML_BF16) /* keep exponents sane: clear the top exponent bit */
		for (size_t i = 1; i < bytes; i += 2)
			w[i] &= 0xbf;
	return w;
}

/* matmul_w for every storage type: registers (m <= 8) and panels, both orientations, fp32
 * and bf16 operands, against the CPU backend's matmul_w on the same blocks; dequant_w and
 * typed embedding rows exactly */
static void t_matmul_w(void)
{
	static const uint32_t types[] = {GGML_Q4_0, GGML_Q4_1, GGML_Q5_0, GGML_Q5_1, GGML_Q8_0,
					 GGML_Q4_K, GGML_Q5_K, GGML_Q6_K, GGML_F16,  GGML_BF16};
	static const int ms[] = {1, 3, 8, 13};
	for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
		uint32_t t = types[ti];
		size_t be = 1, bb = 1;
		ggml_type_block(t, &be, &bb);
		int n = 37, k = be == 1 ? 77 : (int)be * 2;
		size_t wb = (size_t)n * ggml_row_bytes(t, (size_t)k);
		uint8_t *w = rnd_weight(t, n, k, 300 + ti);
		struct ops_w cw = {.data = w, .type = t, .n = n, .k = k};
		struct ops_w gw = {.data = dev(w, wb), .type = t, .n = n, .k = k};
		for (size_t mi = 0; mi < sizeof ms / sizeof ms[0]; mi++)
			for (unsigned fl = 0; fl < 2; fl++)
				for (int bf = 0; bf <= (ms[mi] == 13); bf++) {
					int m = ms[mi], cols = fl ? n : k, inner = fl ? k : n;
					unsigned flags = (fl ? OPS_TB : 0u) | (bf ? OPS_BF16 : 0u);
					float beta = mi % 2 ? 1.0f : 0.0f;
					float *a = rnd((size_t)m * inner, 40 + mi, 1);
					float *c = rnd((size_t)m * cols, 41 + mi, 1);
					float *ga = dev(a, (size_t)m * inner * 4);
					float *gc = dev(c, (size_t)m * cols * 4);
					C->matmul_w(c, a, &cw, m, flags, 0.5f, beta);
					G->matmul_w(gc, ga, &gw, m, flags, 0.5f, beta);
					char what[96];
					snprintf(what, sizeof what, "matmul_w %s m %d %s%s beta %d",
						 ggml_type_name(t), m, fl ? "W^T" : "W", bf ? " bf16" : "",
						 (int)beta);
					cmp(what, gc, c, (size_t)m * cols, 1e-5);
					free(a), free(c);
					G->free(ga), G->free(gc);
				}
		/* a typed embedding table: the rows' values exactly */
		int32_t tok[5] = {3, 0, 36, 3, 11};
		float *out = malloc((size_t)5 * k * 4);
		int32_t *gtok = dev(tok, sizeof tok);
		float *go = G->alloc((size_t)5 * k * 4);
		C->embedding_forward(out, tok, NULL, &cw, NULL, 5, 5, k);
		G->embedding_forward(go, gtok, NULL, &gw, NULL, 5, 5, k);
		char what[64];
		snprintf(what, sizeof what, "embedding_forward %s", ggml_type_name(t));
		cmp(what, go, out, (size_t)5 * k, 0);
		/* the whole weight as fp32 (DoRA's and IA3's products with W): exactly */
		float *dq = malloc((size_t)n * k * 4), *gdq = G->alloc((size_t)n * k * 4);
		C->dequant_w(dq, &cw);
		G->dequant_w(gdq, &gw);
		snprintf(what, sizeof what, "dequant_w %s", ggml_type_name(t));
		cmp(what, gdq, dq, (size_t)n * k, 0);
		free(dq);
		G->free(gdq);
		free(out);
		free(w);
		G->free(gtok), G->free(go), G->free((void *)gw.data);
	}
}

static void t_elementwise(void)
{
	enum { R = 13, K = 70, N = R * K };
	float *a = rnd(N, 10, 1), *b = rnd(N, 11, 1), *bias = rnd(K, 12, 1);
	float *ref = malloc(N * 4);
	float *ga = dev(a, N * 4), *gb = dev(b, N * 4), *go = G->alloc(N * 4);
	float *gbias = dev(bias, K * 4);
	C->add(ref, a, b, N);
	G->add(go, ga, gb, N);
	cmp("add", go, ref, N, 0);
	memcpy(ref, a, N * 4);
	C->axpy(ref, 0.3f, b, N);
	G->axpy(ga, 0.3f, gb, N);
	cmp("axpy", ga, ref, N, 0);
	C->scale(ref, -1.7f, N);
	G->scale(ga, -1.7f, N);
	cmp("scale", ga, ref, N, 0);
	C->bias_add(ref, bias, R, K);
	G->bias_add(ga, gbias, R, K);
	cmp("bias_add", ga, ref, N, 0);
	float *db = rnd(K, 13, 1);
	float *gdb = dev(db, K * 4);
	C->bias_backward(db, b, R, K);
	G->bias_backward(gdb, gb, R, K);
	cmp("bias_backward (accumulates, rows in order)", gdb, db, K, 0);
	/* copy_rows, zero */
	C->copy_rows(ref, 20, a, K, R, 20);
	G->to_device(ga, a, N * 4);
	G->zero(go, N);
	G->copy_rows(go, 20, ga, K, R, 20);
	cmp("copy_rows", go, ref, (size_t)R * 20, 0);
	memset(ref, 0, N * 4);
	G->zero(go, N);
	cmp("zero", go, ref, N, 0);
	/* activations */
	float *out = malloc(N * 4), *d2 = malloc(N * 4);
	float *gd2 = G->alloc(N * 4);
	C->swiglu_forward(out, a, b, N);
	G->swiglu_forward(go, ga, gb, N);
	cmp("swiglu_forward", go, out, N, 1e-6);
	C->swiglu_backward(ref, d2, out, a, b, N);
	G->swiglu_backward(ga, gd2, go, dev(a, N * 4), gb, N);
	cmp("swiglu_backward dgate", ga, ref, N, 1e-6);
	cmp("swiglu_backward dup", gd2, d2, N, 1e-6);
	G->to_device(ga, a, N * 4);
	C->gelu_forward(out, a, N);
	G->gelu_forward(go, ga, N);
	cmp("gelu_forward", go, out, N, 1e-6);
	C->gelu_backward(ref, b, a, N);
	G->gelu_backward(gd2, gb, ga, N);
	cmp("gelu_backward", gd2, ref, N, 1e-6);
	C->geglu_forward(out, a, b, N);
	G->geglu_forward(go, ga, gb, N);
	cmp("geglu_forward", go, out, N, 1e-6);
	float *gd3 = G->alloc(N * 4);
	C->geglu_backward(ref, d2, out, a, b, N);
	G->geglu_backward(gd2, gd3, go, ga, gb, N);
	cmp("geglu_backward dgate", gd2, ref, N, 1e-6);
	cmp("geglu_backward dup", gd3, d2, N, 1e-6);
	G->free(gd3);
	/* dropout: identical masks */
	uint8_t *mask = malloc(N), *gmask = G->alloc(N), *hm = malloc(N);
	C->dropout_forward(out, mask, a, N, 0.3f, 1234, 5);
	G->dropout_forward(go, gmask, ga, N, 0.3f, 1234, 5);
	G->to_host(hm, gmask, N);
	bool same = memcmp(hm, mask, N) == 0;
	printf("  %-44s %s\n", "dropout masks identical to the cpu", same ? "ok" : "FAIL");
	n_bad += !same;
	cmp("dropout_forward", go, out, N, 0);
	memcpy(ref, b, N * 4);
	C->dropout_backward(ref, a, mask, N, 0.3f);
	G->to_device(gd2, b, N * 4);
	G->dropout_backward(gd2, ga, gmask, N, 0.3f);
	cmp("dropout_backward", gd2, ref, N, 0);
	/* sumsq, adamw */
	double s1 = C->sumsq(a, N), s2 = G->sumsq(ga, N);
	bool sok = fabs(s1 - s2) <= 1e-12 * s1;
	printf("  %-44s %.17g vs %.17g %s\n", "sumsq", s2, s1, sok ? "ok" : "FAIL");
	n_bad += !sok;
	double s3 = G->sumsq(ga, N);
	n_bad += s3 != s2; /* deterministic */
	float *m = rnd(N, 20, 0.1f), *v = rnd(N, 21, 0.1f);
	for (int i = 0; i < N; i++)
		v[i] = fabsf(v[i]);
	float *gm = dev(m, N * 4), *gv = dev(v, N * 4), *gp = dev(b, N * 4);
	memcpy(ref, b, N * 4);
	struct ops_adamw_hp ah = ops_adamw_prepare(1e-2, 0.9, 0.999, 1e-8, 0.1, 3);
	C->adamw(ref, a, m, v, N, &ah);
	G->adamw(gp, ga, gm, gv, N, &ah);
	cmp("adamw p", gp, ref, N, 1e-7);
	cmp("adamw m", gm, m, N, 1e-7);
	cmp("adamw v", gv, v, N, 1e-7);
	/* SGD: first step (the buffer set) and a later one with momentum, dampening and
	 * decay, then Nesterov; without momentum the buffer is left alone. */
	for (int k = 0; k < 4; k++) {
		struct ops_sgd_hp sh = ops_sgd_prepare(0.05, k == 3 ? 0.0 : 0.9, k == 1 ? 0.2 : 0.0,
						       k < 2 ? 0.01 : 0.0, k == 2, k == 0);
		C->sgd(ref, a, m, N, &sh);
		G->sgd(gp, ga, gm, N, &sh);
		char what[32];
		snprintf(what, sizeof what, "sgd p (case %d)", k);
		cmp(what, gp, ref, N, 1e-7);
		snprintf(what, sizeof what, "sgd buf (case %d)", k);
		cmp(what, gm, m, N, 1e-7);
	}
	free(a), free(b), free(bias), free(ref), free(db), free(out), free(d2), free(mask),
		free(hm), free(m), free(v);
}

/* The PEFT ops: per-column scaling (with accumulation), its column-sum backward (with and
 * without a weight, odd shapes), DoRA's row norms. */
static void t_peft(void)
{
	const int R = 37, K = 70;
	size_t n = (size_t)R * K;
	float *x = rnd(n, 31, 1.0f), *s = rnd(K, 32, 1.0f), *dy = rnd(n, 33, 1.0f);
	float *w = rnd(K, 34, 1.0f), *mag = rnd(R, 35, 1.0f), *out = rnd(n, 36, 1.0f);
	float *gx = dev(x, n * 4), *gs = dev(s, K * 4), *gdy = dev(dy, n * 4);
	float *gw = dev(w, K * 4), *gout = dev(out, n * 4), *gmag = dev(mag, R * 4);
	C->col_mul(out, x, s, R, K, true);
	G->col_mul(gout, gx, gs, R, K, true);
	cmp("col_mul acc", gout, out, n, 1e-7);
	C->col_mul(out, x, s, R, K, false);
	G->col_mul(gout, gx, gs, R, K, false);
	cmp("col_mul", gout, out, n, 0);
	float ds[70] = {0}, ds2[70] = {0};
	float *gds = dev(ds, K * 4), *gds2 = dev(ds2, K * 4);
	C->col_mul_backward(ds, dy, x, w, R, K);
	G->col_mul_backward(gds, gdy, gx, gw, R, K);
	cmp("col_mul_backward (weighted)", gds, ds, K, 1e-6);
	C->col_mul_backward(ds2, dy, x, NULL, R, K);
	G->col_mul_backward(gds2, gdy, gx, NULL, R, K);
	cmp("col_mul_backward", gds2, ds2, K, 1e-6);
	float g[37], inv[37];
	float *gg = G->alloc(R * 4), *ginv = G->alloc(R * 4);
	C->dora_scale(g, inv, mag, x, R, K);
	G->dora_scale(gg, ginv, gmag, gx, R, K);
	cmp("dora_scale g", gg, g, R, 1e-6);
	cmp("dora_scale 1/norm", ginv, inv, R, 1e-6);
	G->free(gx), G->free(gs), G->free(gdy), G->free(gw), G->free(gout), G->free(gmag);
	G->free(gds), G->free(gds2), G->free(gg), G->free(ginv);
	free(x), free(s), free(dy), free(w), free(mag), free(out);
}

/* Prefix attention (prefix tuning): forward and backward against the cpu, GQA, head dim
 * 6, a prefix row stride wider than the layer's K/V pair, accumulating prefix gradients. */
static void t_prefix(void)
{
	const int B = 2, T = 5, NP = 3, NH = 4, NKV = 2, HD = 6;
	size_t ps = 2 * (size_t)NKV * HD + 7, nq = (size_t)B * T * NH * HD;
	size_t nk = (size_t)B * T * NKV * HD, npre = (size_t)NP * ps;
	float *q = rnd(nq, 41, 1.0f), *k = rnd(nk, 42, 1.0f), *v = rnd(nk, 43, 1.0f);
	float *pre = rnd(npre, 44, 1.0f), *dout = rnd(nq, 45, 1.0f), *g0 = rnd(npre, 46, 0.1f);
	float *gq = dev(q, nq * 4), *gk = dev(k, nk * 4), *gv = dev(v, nk * 4);
	float *gpre = dev(pre, npre * 4), *gdout = dev(dout, nq * 4), *gg = dev(g0, npre * 4);
	float scale = 1.0f / sqrtf((float)HD);
	float *out = malloc(nq * 4), *gout = G->alloc(nq * 4);
	C->attention_prefix_forward(out, q, k, v, pre, pre + NKV * HD, ps, B, T, NP, NH, NKV, HD,
				    scale, 0);
	G->attention_prefix_forward(gout, gq, gk, gv, gpre, gpre + NKV * HD, ps, B, T, NP, NH,
				    NKV, HD, scale, 0);
	cmp("attention_prefix_forward", gout, out, nq, 1e-5);
	float *dq = malloc(nq * 4), *dk = malloc(nk * 4), *dv = malloc(nk * 4);
	float *gdq = G->alloc(nq * 4), *gdk = G->alloc(nk * 4), *gdv = G->alloc(nk * 4);
	C->attention_prefix_backward(dq, dk, dv, g0, g0 + NKV * HD, dout, q, k, v, pre,
				     pre + NKV * HD, ps, B, T, NP, NH, NKV, HD, scale, 0);
	G->attention_prefix_backward(gdq, gdk, gdv, gg, gg + NKV * HD, gdout, gq, gk, gv, gpre,
				     gpre + NKV * HD, ps, B, T, NP, NH, NKV, HD, scale, 0);
	cmp("attention_prefix_backward dq", gdq, dq, nq, 1e-5);
	cmp("attention_prefix_backward dk", gdk, dk, nk, 1e-5);
	cmp("attention_prefix_backward dv", gdv, dv, nk, 1e-5);
	cmp("attention_prefix_backward dprefix", gg, g0, npre, 1e-5);
	G->free(gq), G->free(gk), G->free(gv), G->free(gpre), G->free(gdout), G->free(gg);
	G->free(gout), G->free(gdq), G->free(gdk), G->free(gdv);
	free(q), free(k), free(v), free(pre), free(dout), free(g0), free(out), free(dq), free(dk),
		free(dv);
}

static void t_norms(void)
{
	int shapes[2][2] = {{7, 70}, {3, 600}};
	for (int s = 0; s < 2; s++) {
		int n = shapes[s][0], c = shapes[s][1];
		size_t nc = (size_t)n * c;
		float *x = rnd(nc, 30, 2), *w = rnd(c, 31, 1), *b = rnd(c, 32, 1), *dy = rnd(nc, 33, 1);
		float *out = malloc(nc * 4), *rs = malloc(n * 4), *mu = malloc(n * 4);
		float *dx = malloc(nc * 4), *dw = rnd(c, 34, 1), *dbb = rnd(c, 35, 1);
		float *gx = dev(x, nc * 4), *gw = dev(w, c * 4), *gb = dev(b, c * 4), *gdy = dev(dy, nc * 4);
		float *go = G->alloc(nc * 4), *grs = G->alloc(n * 4), *gmu = G->alloc(n * 4);
		float *gdx = G->alloc(nc * 4), *gdw = dev(dw, c * 4), *gdb = dev(dbb, c * 4);
		char what[96];
		C->rmsnorm_forward(out, rs, x, w, n, c, 1e-5f);
		G->rmsnorm_forward(go, grs, gx, gw, n, c, 1e-5f);
		snprintf(what, sizeof what, "rmsnorm_forward %dx%d", n, c);
		cmp(what, go, out, nc, 1e-6);
		cmp("  rstd", grs, rs, n, 1e-6);
		C->rmsnorm_backward(dx, dw, dy, x, w, rs, n, c);
		G->rmsnorm_backward(gdx, gdw, gdy, gx, gw, grs, n, c);
		cmp("rmsnorm_backward dx", gdx, dx, nc, 1e-5);
		cmp("rmsnorm_backward dw", gdw, dw, c, 1e-6);
		C->layernorm_forward(out, mu, rs, x, w, b, n, c, 1e-5f);
		G->layernorm_forward(go, gmu, grs, gx, gw, gb, n, c, 1e-5f);
		snprintf(what, sizeof what, "layernorm_forward %dx%d", n, c);
		cmp(what, go, out, nc, 1e-6);
		cmp("  mean", gmu, mu, n, 1e-5); /* near 0: relative error is large */
		C->layernorm_backward(dx, dw, dbb, dy, x, w, mu, rs, n, c);
		G->layernorm_backward(gdx, gdw, gdb, gdy, gx, gw, gmu, grs, n, c);
		cmp("layernorm_backward dx", gdx, dx, nc, 1e-5);
		cmp("layernorm_backward dw", gdw, dw, c, 1e-6);
		cmp("layernorm_backward db", gdb, dbb, c, 1e-6);
		free(x), free(w), free(b), free(dy), free(out), free(rs), free(mu), free(dx),
			free(dw), free(dbb);
	}
}

static void t_rope(void)
{
	enum { B = 2, T = 5, NH = 3, HD = 10 };
	size_t n = (size_t)B * T * NH * HD;
	float inv[HD / 2];
	ops_rope_inv_freq(inv, HD, 10000.0f, 0, 1, 1, 1, 0);
	float *ginv = dev(inv, sizeof inv);
	int pos0[B] = {3, 17};
	int *gpos = dev(pos0, sizeof pos0);
	for (int style = 1; style <= 2; style++)
		for (int usepos = 0; usepos <= 1; usepos++) {
			float *x = rnd(n, 40, 1);
			float *gx = dev(x, n * 4);
			C->rope_forward(x, B, T, NH, HD, usepos ? pos0 : NULL, inv, style);
			G->rope_forward(gx, B, T, NH, HD, usepos ? gpos : NULL, ginv, style);
			char what[96];
			snprintf(what, sizeof what, "rope_forward style %d pos0 %d", style, usepos);
			cmp(what, gx, x, n, 1e-6);
			C->rope_backward(x, B, T, NH, HD, usepos ? pos0 : NULL, inv, style);
			G->rope_backward(gx, B, T, NH, HD, usepos ? gpos : NULL, ginv, style);
			cmp("rope_backward", gx, x, n, 1e-6);
			free(x);
			G->free(gx);
		}
}

static void t_attention(void)
{
	/* the last shape: a query scale of its own and a sliding window of 3 keys (Gemma 3's
	 * local layers); head_dim 256 as Gemma's */
	int shapes[4][4] = {{2, 7, 4, 2}, {1, 9, 4, 4}, {2, 6, 6, 2}, {2, 7, 4, 1}};
	int hds[4] = {8, 40, 64, 256}, wins[4] = {0, 0, 0, 3};
	for (int s = 0; s < 4; s++) {
		int B = shapes[s][0], T = shapes[s][1], NH = shapes[s][2], NKV = shapes[s][3];
		int HD = hds[s], W = wins[s];
		float SC = W ? 0.07f : 1.0f / sqrtf((float)HD);
		size_t nq = (size_t)B * T * NH * HD, nk = (size_t)B * T * NKV * HD;
		size_t na = (size_t)B * NH * T * T;
		float *q = rnd(nq, 50, 1), *k = rnd(nk, 51, 1), *v = rnd(nk, 52, 1), *dout = rnd(nq, 53, 1);
		float *out = malloc(nq * 4), *att = malloc(na * 4);
		float *dq = malloc(nq * 4), *dk = malloc(nk * 4), *dv = malloc(nk * 4);
		float *gq = dev(q, nq * 4), *gk = dev(k, nk * 4), *gv = dev(v, nk * 4);
		float *gdo = dev(dout, nq * 4), *go = G->alloc(nq * 4), *gatt = G->alloc(na * 4);
		float *gdq = G->alloc(nq * 4), *gdk = G->alloc(nk * 4), *gdv = G->alloc(nk * 4);
		C->attention_forward(out, att, q, k, v, B, T, T, NH, NKV, HD, NULL, SC, W);
		C->attention_backward(dq, dk, dv, dout, att, q, k, v, B, T, NH, NKV, HD, SC, W);
		for (int fused = 0; fused <= 1; fused++) {
			char what[96];
			snprintf(what, sizeof what, "attention B%d T%d h%d/%d hd%d w%d %s", B, T, NH,
				 NKV, HD, W, fused ? "fused" : "stored P");
			G->attention_forward(go, fused ? NULL : gatt, gq, gk, gv, B, T, T, NH, NKV, HD,
					     NULL, SC, W);
			cmp(what, go, out, nq, 1e-6);
			if (!fused)
				cmp("  probabilities", gatt, att, na, 1e-6);
			G->attention_backward(gdq, gdk, gdv, gdo, fused ? NULL : gatt, gq, gk, gv, B, T,
					      NH, NKV, HD, SC, W);
			cmp("  dq", gdq, dq, nq, 1e-5);
			cmp("  dk", gdk, dk, nk, 1e-5);
			cmp("  dv", gdv, dv, nk, 1e-5);
		}
		free(q), free(k), free(v), free(dout), free(out), free(att), free(dq), free(dk), free(dv);
	}
	/* decode: one new query per sequence against a KV cache of 12 rows at pos0 */
	enum { B = 2, TQ = 2, TK = 12, NH = 4, NKV = 2, HD = 16 };
	int pos0[B] = {4, 10};
	size_t nq = (size_t)B * TQ * NH * HD, nk = (size_t)B * TK * NKV * HD;
	float *q = rnd(nq, 60, 1), *k = rnd(nk, 61, 1), *v = rnd(nk, 62, 1), *out = malloc(nq * 4);
	float *gq = dev(q, nq * 4), *gk = dev(k, nk * 4), *gv = dev(v, nk * 4), *go = G->alloc(nq * 4);
	int *gpos = dev(pos0, sizeof pos0);
	for (int w = 0; w <= 4; w += 4) {
		float sc = 1.0f / sqrtf((float)HD);
		C->attention_forward(out, NULL, q, k, v, B, TQ, TK, NH, NKV, HD, pos0, sc, w);
		G->attention_forward(go, NULL, gq, gk, gv, B, TQ, TK, NH, NKV, HD, gpos, sc, w);
		cmp(w ? "attention decode (pos0, cache 12, window 4)" : "attention decode (pos0, KV cache 12)",
		    go, out, nq, 1e-6);
	}
	free(q), free(k), free(v), free(out);
}

static void t_embedding_ce(void)
{
	enum { N = 11, T = 4, Cc = 40, V = 9, P = 6 };
	int32_t tok[N] = {1, 3, 3, 0, 8, 3, 1, 2, 2, 7, 3}; /* repeats */
	int pos[N] = {0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4};
	float *wte = rnd((size_t)V * Cc, 70, 1), *wpe = rnd((size_t)P * Cc, 71, 1);
	float *out = malloc((size_t)N * Cc * 4), *dout = rnd((size_t)N * Cc, 72, 1);
	float *dwte = rnd((size_t)V * Cc, 73, 1), *dwpe = rnd((size_t)P * Cc, 74, 1);
	int32_t *gtok = dev(tok, sizeof tok);
	int *gpos = dev(pos, sizeof pos);
	float *gwte = dev(wte, (size_t)V * Cc * 4), *gwpe = dev(wpe, (size_t)P * Cc * 4);
	float *go = G->alloc((size_t)N * Cc * 4), *gdo = dev(dout, (size_t)N * Cc * 4);
	float *gdwte = dev(dwte, (size_t)V * Cc * 4), *gdwpe = dev(dwpe, (size_t)P * Cc * 4);
	struct ops_w cw = {.data = wte, .type = GGML_F32, .n = V, .k = Cc};
	struct ops_w gw = {.data = gwte, .type = GGML_F32, .n = V, .k = Cc};
	for (int usepos = 0; usepos <= 1; usepos++) {
		C->embedding_forward(out, tok, usepos ? pos : NULL, &cw, wpe, N, T, Cc);
		G->embedding_forward(go, gtok, usepos ? gpos : NULL, &gw, gwpe, N, T, Cc);
		cmp(usepos ? "embedding_forward (pos)" : "embedding_forward (r % t)", go, out,
		    (size_t)N * Cc, 0);
		C->embedding_backward(dwte, dwpe, dout, tok, usepos ? pos : NULL, N, T, Cc);
		G->embedding_backward(gdwte, gdwpe, gdo, gtok, usepos ? gpos : NULL, N, T, Cc);
		cmp("embedding_backward dwte (repeated tokens)", gdwte, dwte, (size_t)V * Cc, 0);
		cmp("embedding_backward dwpe", gdwpe, dwpe, (size_t)P * Cc, 0);
	}
	/* cross-entropy: masked (-1) and out-of-range targets contribute nothing */
	enum { R = 6, VV = 1000 };
	int32_t tg[R] = {5, -1, 999, 1000, 0, 17};
	float *lg = rnd((size_t)R * VV, 80, 6), *loss = malloc(R * 4), *lse = malloc(R * 4);
	float *glg = dev(lg, (size_t)R * VV * 4), *gloss = G->alloc(R * 4), *glse = G->alloc(R * 4);
	int32_t *gtg = dev(tg, sizeof tg);
	lg[(size_t)5 * VV + 3] = lg[(size_t)5 * VV + 700] = 40.0f; /* a tie: the first wins */
	G->to_device(glg, lg, (size_t)R * VV * 4);
	int32_t am[R], gam_h[R], *gam = G->alloc(sizeof am);
	long c1 = C->crossentropy_forward(loss, lse, am, lg, tg, R, VV);
	long c2 = G->crossentropy_forward(gloss, glse, gam, glg, gtg, R, VV);
	printf("  %-44s %ld vs %ld %s\n", "crossentropy count", c2, c1, c1 == c2 ? "ok" : "FAIL");
	n_bad += c1 != c2;
	G->to_host(gam_h, gam, sizeof gam_h);
	bool amok = memcmp(am, gam_h, sizeof am) == 0 && am[5] == 3;
	printf("  %-44s %s\n", "crossentropy argmax (first of a tie)", amok ? "ok" : "FAIL");
	n_bad += !amok;
	G->free(gam);
	cmp("crossentropy losses", gloss, loss, R, 1e-6);
	cmp("crossentropy lse", glse, lse, R, 1e-6);
	float *lg2 = malloc((size_t)R * VV * 4);
	memcpy(lg2, lg, (size_t)R * VV * 4);
	float *glg2 = dev(lg, (size_t)R * VV * 4);
	C->crossentropy_backward(lg, lse, tg, R, VV, 0.25f, NULL);
	G->crossentropy_backward(glg, glse, gtg, R, VV, 0.25f, NULL);
	cmp("crossentropy_backward", glg, lg, (size_t)R * VV, 1e-6);
	float rs[R] = {2.0f, 1.0f, -0.5f, 3.0f, 0.25f, -4.0f};
	float *grs = dev(rs, sizeof rs);
	C->crossentropy_backward(lg2, lse, tg, R, VV, 0.25f, rs);
	G->crossentropy_backward(glg2, glse, gtg, R, VV, 0.25f, grs);
	cmp("crossentropy_backward (row weights)", glg2, lg2, (size_t)R * VV, 1e-6);
	free(lg2);
	free(wte), free(wpe), free(out), free(dout), free(dwte), free(dwpe), free(lg), free(loss),
		free(lse);
}

static int emu_check(struct diag *d)
{
	char msg[1024];
	int k = emu_ops_cuda_impl_error(msg, sizeof msg);
	return k ? diag_set(d, FT_EIO, NULL, 0, 0, "CUDA (" ON_WHAT "): %s", msg) : 0;
}

/* ---- a whole run on the emulated table behind the guard ---- */

#define TR_MAX 128

struct trec {
	char kind[TR_MAX][96]; /* "metric train loss 1", "result tuned test loss", ... */
	double v[TR_MAX];
	int n;
};

static void trec_add(struct trec *r, double v, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void trec_add(struct trec *r, double v, const char *fmt, ...)
{
	if (r->n >= TR_MAX)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->kind[r->n], sizeof r->kind[0], fmt, ap);
	va_end(ap);
	r->v[r->n++] = v;
}

static int tr_metric(void *ud, const char *split, const char *name, int64_t step, double v)
{
	if (strcmp(name, "tokens_per_s") != 0)
		trec_add(ud, v, "metric %s %s %lld", split, name, (long long)step);
	return 0;
}

static int tr_result(void *ud, const char *model, const char *split, const char *metric,
		     double v, double lo, double hi)
{
	(void)lo;
	(void)hi;
	trec_add(ud, v, "result %s %s %s", model, split, metric);
	return 0;
}

static int tr_prediction(void *ud, const char *model, const char *split, int64_t ex,
			 const char *p, const char *ref, const char *out, double score)
{
	(void)p, (void)ref, (void)out, (void)score;
	trec_add(ud, 0, "prediction %s %s %lld", model, split, (long long)ex);
	return 0;
}

static int tr_event(void *ud, const char *level, const char *kind, const char *msg)
{
	(void)ud, (void)level, (void)kind, (void)msg;
	return 0;
}

static int tr_artifact(void *ud, const char *kind, const char *path)
{
	trec_add(ud, 0, "artifact %s %s", kind, path);
	return 0;
}

static int put(const char *dir, const char *name, const char *text, struct diag *d)
{
	char *p = path_join(dir, name);
	int rc = p ? file_write_atomic(p, text, strlen(text), d) : FT_ENOMEM;
	free(p);
	return rc;
}

static int tr_run(const struct config *cfg, const char *dir, const char *sub,
		  const struct ops *ops, int (*check)(struct diag *), struct trec *r,
		  struct diag *d)
{
	char *rd = path_join(dir, sub);
	int rc = dir_make_all(rd, d);
	struct run_sink sink = {.ud = r, .metric = tr_metric, .result = tr_result,
				.prediction = tr_prediction, .event = tr_event,
				.artifact = tr_artifact};
	volatile sig_atomic_t stop = 0;
	struct run_ctx ctx = {.cfg = cfg, .experiment = "emu", .run_id = "r1", .run_dir = rd,
			      .threads = 1, .stop = &stop, .sink = &sink};
	if (rc == 0)
		rc = native_engine_run(&ctx, ops, check, d);
	free(rd);
	return rc;
}

static void t_train(void)
{
#ifdef FTLAB_KERNELS_ON_DEVICE
	printf("a native-engine run on the CUDA device vs the cpu:\n");
#else
	printf("a native-engine run on the emulated kernels behind ops_guard vs the cpu:\n");
#endif
	char dir[] = "/tmp/ftlab-emutrain-XXXXXX";
	struct diag d;
	diag_init(&d);
	struct experiment *e = NULL;
	if (!mkdtemp(dir)) {
		n_bad++;
		return;
	}
	struct tiny_model_spec spec;
	tiny_model_spec_default(&spec, ARCH_LLAMA);
	char *gguf = path_join(dir, "llama.gguf");
	char yaml[2048];
	snprintf(yaml, sizeof yaml,
		 "name: emu\nseed: 5\nmodel: {base: %s, context: 24}\n"
		 "data:\n  format: completion\n  train: %s/train.jsonl\n"
		 "  test: %s/test.jsonl\n  template: chatml\n  max_length: 24\n"
		 "method: {type: lora, rank: 2, alpha: 4, dropout: 0.1, targets: [q_proj, v_proj]}\n"
		 "train:\n  steps: 3\n  batch_size: 2\n  max_grad_norm: 0.05\n"
		 "  optimizer: {type: adamw, lr: 1.0e-2, weight_decay: 0.1}\n"
		 "  checkpoint_every: 2\n"
		 "eval:\n  splits: [test]\n  metrics: [loss, token_accuracy, exact_match]\n"
		 "  compare_base: true\n  generate: {max_new_tokens: 2}\n  bootstrap: 10\n",
		 gguf, dir, dir);
	char *ey = path_join(dir, "exp.yaml");
	int rc = tiny_model_write_gguf(gguf, &spec, &d);
	if (!rc)
		rc = put(dir, "train.jsonl",
			 "{\"prompt\": \"ab cd\", \"completion\": \"ef\"}\n"
			 "{\"prompt\": \"gh ij\", \"completion\": \"kl\"}\n"
			 "{\"prompt\": \"mn op\", \"completion\": \"ab\"}\n"
			 "{\"prompt\": \"cd ef\", \"completion\": \"gh\"}\n", &d);
	if (!rc)
		rc = put(dir, "test.jsonl",
			 "{\"prompt\": \"ab ef\", \"completion\": \"gh\"}\n"
			 "{\"prompt\": \"ij mn\", \"completion\": \"op\"}\n", &d);
	if (!rc)
		rc = put(dir, "exp.yaml", yaml, &d);
	if (!rc)
		rc = experiment_load(&e, ey, NULL, 0, &d);
	static struct trec rc_cpu, rc_emu;
	if (!rc)
		rc = tr_run(experiment_config(e), dir, "cpu", C, NULL, &rc_cpu, &d);
#ifdef FTLAB_KERNELS_ON_DEVICE
	const struct ops *guard = G; /* device memory: the host cannot read it anyway */
#else
	const struct ops *guard = ops_guard(G);
#endif
	emu_ops_cuda_impl_set_tf32(false);
	if (!rc)
		rc = tr_run(experiment_config(e), dir, "emu", guard, emu_check, &rc_emu, &d);
	if (rc) {
		printf("  run failed: %s\n", d.text);
		n_bad++;
		goto done;
	}
#ifdef FTLAB_KERNELS_ON_DEVICE
	struct ops_guard_stats gs = {0, 0, 0, 0, ""};
#else
	struct ops_guard_stats gs = ops_guard_stats();
#endif
	bool same = rc_cpu.n == rc_emu.n && rc_cpu.n > 10;
	double worst = 0;
	for (int i = 0; same && i < rc_cpu.n; i++) {
		same = strcmp(rc_cpu.kind[i], rc_emu.kind[i]) == 0;
		double a = rc_cpu.v[i], b = rc_emu.v[i];
		double rel = fabs(a - b) / (fabs(a) > 1e-3 ? fabs(a) : 1e-3);
		if (strstr(rc_cpu.kind[i], "exact_match") || strstr(rc_cpu.kind[i], "accuracy"))
			continue; /* argmax ties may differ */
		worst = rel > worst ? rel : worst;
		if (rel > 1e-3) {
			printf("  %-44s %.9g vs %.9g FAIL\n", rc_cpu.kind[i], b, a);
			same = false;
		}
	}
	bool ok = same && gs.violations == 0 && gs.live_allocs == 0;
#ifdef FTLAB_KERNELS_ON_DEVICE
	printf("  %-44s %d records, worst rel %.1e %s\n", "train + eval run (device)", rc_emu.n,
	       worst, ok ? "ok" : "FAIL");
#else
	printf("  %-44s %d records, worst rel %.1e, %ld guarded calls, %ld violations %s\n",
	       "train + eval run (guarded)", rc_emu.n, worst, gs.calls, gs.violations,
	       ok ? "ok" : "FAIL");
#endif
	if (gs.violations)
		printf("  first violation: %s\n", gs.first);
	n_bad += !ok;
done:
	experiment_free(e);
	free(gguf);
	free(ey);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		printf("  could not remove %s\n", dir);
}

/* backend.device: the probe looks at the ordinal it is given and reports a missing one by
 * number (the emulator has one device; a real machine may have more). */
static void t_device_select(void)
{
	struct ops_cuda_device dev;
	char why[256] = "", want[96];
	int ok0 = emu_ops_cuda_impl_probe(&dev, 0, why, sizeof why) == 0 && dev.index == 0;
	int n = dev.count;
	snprintf(want, sizeof want, "no CUDA device %d: %d visible", n, n);
	int bad1 = emu_ops_cuda_impl_probe(&dev, n, why, sizeof why) != 0 &&
		   strstr(why, want) != NULL;
	printf("  %-28s %s\n", "device selection", ok0 && bad1 ? "ok" : "FAILED");
	if (!(ok0 && bad1))
		printf("  (device 0 %s; device %d: %s)\n", ok0 ? "ok" : "refused", n, why);
	n_bad += !(ok0 && bad1);
}

int main(int argc, char **argv)
{
	C = ops_cpu();
	t_device_select();
	G = emu_ops_cuda_impl_table(0);
	if (!G) {
		char msg[1024] = "";
		(void)emu_ops_cuda_impl_error(msg, sizeof msg);
		fprintf(stderr, RESULT_NAME ": no table: %s\n", msg);
		return 1;
	}
	emu_ops_cuda_impl_set_tf32(false); /* op checks compare plain fp32 */
	printf("ops, " ON_WHAT " kernels against the cpu backend:\n");
	t_matmul();
	t_matmul_w();
	t_elementwise();
	t_norms();
	t_rope();
	t_attention();
	t_embedding_ce();
	t_peft();
	t_prefix();
	check_errors();
	if (argc > 1 && strcmp(argv[1], "--ops-only") == 0)
		goto out;
	t_train();
	if (argc > 1 && strcmp(argv[1], "--train") == 0)
		goto out;
#ifdef FTLAB_KERNELS_ON_DEVICE
	printf("selftest on the CUDA device (TF32 tensor cores):\n");
#else
	printf("selftest on the emulated kernels (TF32 emulated by rounding inputs):\n");
#endif
	emu_ops_cuda_impl_set_tf32(true);
	struct selftest_target t = {G, emu_ops_cuda_impl_set_tf32, emu_check};
	struct diag d;
	diag_init(&d);
	bool ok = true;
	if (selftest_against_cpu(&t, &ok, &d)) {
		diag_print(&d, stdout);
		n_bad++;
	}
	n_bad += !ok;
out:
	printf(RESULT_NAME ": %s (%d failed)\n", n_bad ? "FAILED" : "passed", n_bad);
	return n_bad ? 1 : 0;
}
