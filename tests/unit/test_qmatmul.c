/* Products with weights in their storage types (ops matmul_w, qmatmul_cpu.c) and the rows
 * of a typed embedding, for every type (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K,
 * F16, BF16) on random blocks:
 * - the vector dequantization equals ops_quant.h's scalar values bit for bit (ops_block_elem
 *   is checked against gguf-py in test_gguf_dequant), and the F16 conversion on all 65536
 *   halves;
 * - 1..8 rows (registers) and 9+ rows (panels + sgemm), transposed (forward) and not (the
 *   input gradient), alpha and beta, NaN-poisoned outputs for beta 0, rows of up to 70
 *   blocks, against a double reference over the dequantized values;
 * - each row of an m-row product has the bits of the one-row product of that row, and the
 *   bits do not depend on the thread count (1-3);
 * - close to the fp32 matmul on a dequantized copy (only the summation order differs), and
 *   bit for bit equal to it with OPS_BF16 (the same bf16-rounded values, the same primitive);
 * - the Q8_0 / Q4_0 quantizers of quantize-on-load against gguf-py
 *   (tests/reference/quantize_fixture.json). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/native/io/dequant.h"
#include "backends/native/ops/cpu/ops_cpu_internal.h"
#include "backends/native/ops/ops.h"
#include "backends/native/ops/ops_quant.h"
#include "common/rng.h"
#include "common/util.h"
#include "common/banned.h"

static const uint32_t all_types[] = {GGML_Q4_0, GGML_Q4_1, GGML_Q5_0, GGML_Q5_1, GGML_Q8_0,
				     GGML_Q4_K, GGML_Q5_K, GGML_Q6_K, GGML_F16,  GGML_BF16};
#define N_TYPES (sizeof all_types / sizeof all_types[0])

static float *rnd(size_t n, uint64_t seed)
{
	struct rng r;
	rng_seed(&r, seed, 41);
	float *x = malloc(n * sizeof(float));
	assert_non_null(x);
	for (size_t i = 0; i < n; i++)
		x[i] = 2.0f * rng_uniform_f(&r) - 1.0f;
	return x;
}

static void put16(uint8_t *p, uint16_t h)
{
	p[0] = (uint8_t)(h & 0xff);
	p[1] = (uint8_t)(h >> 8);
}

/* n rows of k elements of type t: random quants, scales of moderate size (a few of them
 * fp16 subnormals), so every code path of the layouts is exercised */
static uint8_t *rnd_weight(uint32_t t, int n, int k, uint64_t seed)
{
	struct rng r;
	rng_seed(&r, seed, 7);
	size_t rb = ggml_row_bytes(t, (size_t)k), bytes = (size_t)n * rb;
	uint8_t *w = malloc(bytes);
	assert_non_null(w);
	for (size_t i = 0; i < bytes; i++)
		w[i] = (uint8_t)rng_below(&r, 256);
	size_t be = 1, bb = 1;
	assert_true(ggml_type_block(t, &be, &bb));
	size_t nb = bytes / bb;
	for (size_t b = 0; b < nb; b++) {
		uint8_t *p = w + b * bb;
		float s = (2.0f * rng_uniform_f(&r) - 1.0f) * 0.05f;
		if (rng_below(&r, 16) == 0)
			s = 3e-6f; /* an fp16 subnormal scale */
		float s2 = rng_uniform_f(&r) * 0.03f;
		switch (t) {
		case GGML_F16:
			put16(p, f32_to_fp16(s * 20.0f));
			break;
		case GGML_BF16: {
			uint32_t u;
			float f = s * 20.0f;
			memcpy(&u, &f, 4);
			put16(p, (uint16_t)(u >> 16));
			break;
		}
		case GGML_Q4_0: case GGML_Q5_0: case GGML_Q8_0:
			put16(p, f32_to_fp16(s));
			break;
		case GGML_Q4_1: case GGML_Q5_1: case GGML_Q4_K: case GGML_Q5_K:
			put16(p, f32_to_fp16(s));
			put16(p + 2, f32_to_fp16(t == GGML_Q4_1 || t == GGML_Q5_1 ? -s2 : s2));
			break;
		case GGML_Q6_K:
			put16(p + 208, f32_to_fp16(s * 0.01f));
			break;
		default:
			break;
		}
	}
	return w;
}

/* w as fp32 through the scalar reference */
static float *deq_ref(uint32_t t, const uint8_t *w, int n, int k)
{
	float *f = malloc((size_t)n * k * sizeof(float));
	size_t rb = ggml_row_bytes(t, (size_t)k);
	for (int r = 0; r < n; r++)
		ops_dequant_row(t, w + (size_t)r * rb, f + (size_t)r * k, (size_t)k);
	return f;
}

static int k_for(uint32_t t, int variant)
{
	size_t be = 1, bb = 1;
	ggml_type_block(t, &be, &bb);
	if (be == 1) { /* any length: vector tails */
		static const int ks[] = {77, 16, 45, 576};
		return ks[variant % 4];
	}
	return (int)be * (variant % 2 ? 3 : 1) + (be == 32 ? 32 * (variant % 4) : 0);
}

static void test_dequant_rows_bits(void **state)
{
	(void)state;
	for (size_t ti = 0; ti < N_TYPES; ti++)
		for (int v = 0; v < 4; v++) {
			uint32_t t = all_types[ti];
			int n = 19, k = k_for(t, v);
			uint8_t *w = rnd_weight(t, n, k, 100 + ti * 10 + (uint64_t)v);
			float *ref = deq_ref(t, w, n, k), *got = malloc((size_t)n * k * sizeof(float));
			struct ops_w ow = {.data = w, .type = t, .n = n, .k = k};
			ops_cpu_dequant_rows(got, &ow, 0, n);
			if (memcmp(ref, got, (size_t)n * k * sizeof(float)) != 0)
				fail_msg("%s k=%d: vector dequantization differs from ops_block_elem",
					 ggml_type_name(t), k);
			/* rows from the middle */
			ops_cpu_dequant_rows(got, &ow, 5, 9);
			assert_memory_equal(got, ref + (size_t)5 * k, (size_t)4 * k * sizeof(float));
			free(w);
			free(ref);
			free(got);
		}
	/* every half through the vector F16 path */
	uint16_t *h = malloc(65536 * 2);
	for (int i = 0; i < 65536; i++)
		h[i] = (uint16_t)i;
	float *o = malloc(65536 * sizeof(float));
	struct ops_w ow = {.data = h, .type = GGML_F16, .n = 1, .k = 65536};
	ops_cpu_dequant_rows(o, &ow, 0, 1);
	for (int i = 0; i < 65536; i++) {
		float want = ops_f16_to_f32((uint16_t)i);
		if (memcmp(&o[i], &want, 4) != 0 && !(isnan(want) && isnan(o[i])))
			fail_msg("half 0x%04x: %a, want %a", i, (double)o[i], (double)want);
	}
	free(h);
	free(o);
}

/* c (m, cols) = alpha a op(W) + beta c0 in double, and the sum of |terms| */
static void ref_product(double *c, double *mag, const float *a, const float *wf, const float *c0,
			int m, int n, int k, bool tb, float alpha, float beta)
{
	int cols = tb ? n : k, inner = tb ? k : n;
	for (int i = 0; i < m; i++)
		for (int j = 0; j < cols; j++) {
			double s = 0, g = 0;
			for (int p = 0; p < inner; p++) {
				double wv = tb ? wf[(size_t)j * k + p] : wf[(size_t)p * k + j];
				double tv = (double)a[(size_t)i * inner + p] * wv;
				s += tv;
				g += fabs(tv);
			}
			size_t o = (size_t)i * cols + j;
			c[o] = alpha * s + (beta != 0.0f ? beta * (double)c0[o] : 0.0);
			mag[o] = fabs(alpha) * g + fabs(beta * (double)c0[o]) + 1e-30;
		}
}

static void check_product(uint32_t t, int m, int n, int k, bool tb, float alpha, float beta)
{
	const struct ops *o = ops_cpu();
	uint8_t *w = rnd_weight(t, n, k, 500 + (uint64_t)(m * 131 + n * 7 + k));
	float *wf = deq_ref(t, w, n, k);
	int cols = tb ? n : k, inner = tb ? k : n;
	size_t cn = (size_t)m * cols;
	float *a = rnd((size_t)m * inner, 900 + (uint64_t)m), *c0 = rnd(cn, 77);
	float *c = malloc(cn * sizeof(float)), *cf = malloc(cn * sizeof(float));
	double *ref = malloc(cn * sizeof(double)), *mag = malloc(cn * sizeof(double));
	struct ops_w ow = {.data = w, .type = t, .n = n, .k = k};
	unsigned fl = tb ? OPS_TB : 0;
	for (size_t i = 0; i < cn; i++)
		c[i] = beta == 0.0f ? NAN : c0[i];
	o->matmul_w(c, a, &ow, m, fl, alpha, beta);
	ref_product(ref, mag, a, wf, c0, m, n, k, tb, alpha, beta);
	for (size_t i = 0; i < cn; i++)
		if (!(fabs((double)c[i] - ref[i]) <= 2e-6 * mag[i]))
			fail_msg("%s m=%d n=%d k=%d tb=%d: c[%zu] = %.9g, reference %.9g (scale %g)",
				 ggml_type_name(t), m, n, k, tb, i, (double)c[i], ref[i], mag[i]);
	/* against the fp32 matmul on the dequantized copy: the same values, summed in another
	 * order (1e-5 relative to the row's magnitude, the bound on logits) */
	memcpy(cf, c0, cn * sizeof(float));
	o->matmul(cf, a, wf, m, cols, inner, fl, alpha, beta);
	for (size_t i = 0; i < cn; i++)
		assert_true(fabs((double)cf[i] - (double)c[i]) <= 1e-5 * mag[i]);
	free(w);
	free(wf);
	free(a);
	free(c0);
	free(c);
	free(cf);
	free(ref);
	free(mag);
}

static void test_products(void **state)
{
	(void)state;
	static const int ms[] = {1, 2, 3, 4, 5, 7, 8, 9, 40};
	for (size_t ti = 0; ti < N_TYPES; ti++)
		for (size_t mi = 0; mi < sizeof ms / sizeof ms[0]; mi++) {
			uint32_t t = all_types[ti];
			int k = k_for(t, (int)mi);
			check_product(t, ms[mi], 37, k, true, 1.0f, 0.0f);
			check_product(t, ms[mi], 21, k, true, 0.5f, 1.0f);
			if (ms[mi] == 3 || ms[mi] == 40)
				check_product(t, ms[mi], 37, k, false, 1.0f, mi % 2 ? 1.0f : 0.0f);
		}
	/* a weight larger than one panel: the panels split the rows (and, untransposed, the
	 * reduction) */
	check_product(GGML_Q4_1, 12, 1900, 576, true, 1.0f, 0.0f);
	check_product(GGML_Q8_0, 12, 1900, 576, false, 1.0f, 1.0f);
	/* long rows of 32-element blocks (17 and 70 blocks) through the 1-8 row kernels */
	static const int kb[] = {17, 70}, mr[] = {1, 4, 8};
	for (size_t ti = 0; ti < N_TYPES; ti++) {
		size_t be = 1, bb = 1;
		ggml_type_block(all_types[ti], &be, &bb);
		for (size_t i = 0; be == 32 && i < 2; i++)
			for (size_t j = 0; j < 3; j++)
				check_product(all_types[ti], mr[j], 21, 32 * kb[i], true, 1.0f,
					      j == 1 ? 1.0f : 0.0f);
	}
}

/* rows of m-row products equal the one-row product; 1-3 threads give the same bits */
static void test_rows_and_threads(void **state)
{
	(void)state;
	const struct ops *o = ops_cpu();
	int nthreads = omp_get_max_threads(), n = 2051;
	for (size_t ti = 0; ti < N_TYPES; ti++) {
		uint32_t t = all_types[ti];
		int k = k_for(t, 1);
		uint8_t *w = rnd_weight(t, n, k, 4242 + ti);
		struct ops_w ow = {.data = w, .type = t, .n = n, .k = k};
		float *a = rnd((size_t)8 * k, 17), *c1 = malloc((size_t)8 * n * sizeof(float));
		float *cm = malloc((size_t)8 * n * sizeof(float)), *ct = malloc((size_t)8 * n * sizeof(float));
		for (int i = 0; i < 8; i++)
			o->matmul_w(c1 + (size_t)i * n, a + (size_t)i * k, &ow, 1, OPS_TB, 0.75f, 0.0f);
		for (int m = 2; m <= 8; m++) {
			o->matmul_w(cm, a, &ow, m, OPS_TB, 0.75f, 0.0f);
			if (memcmp(cm, c1, (size_t)m * n * sizeof(float)) != 0)
				fail_msg("%s: rows of the %d-row product differ from one-row products",
					 ggml_type_name(t), m);
			for (int th = 1; th <= 3; th++) {
				omp_set_num_threads(th);
				o->matmul_w(ct, a, &ow, m, OPS_TB, 0.75f, 0.0f);
				assert_memory_equal(ct, cm, (size_t)m * n * sizeof(float));
			}
			omp_set_num_threads(nthreads);
		}
		free(w);
		free(a);
		free(c1);
		free(cm);
		free(ct);
	}
}

/* With OPS_BF16 the weight's values are rounded to bf16 from the same fp32 values as the
 * dequantized copy: the same bits as matmul on that copy. */
static void test_bf16_same_as_dequantized(void **state)
{
	(void)state;
	if (!ops_cpu_has_bf16()) {
		fprintf(stderr, "skip: no native bf16 matmul on this CPU\n");
		skip();
	}
	const struct ops *o = ops_cpu();
	int m = 33, n = 96, k = 256;
	for (size_t ti = 0; ti < N_TYPES; ti++) {
		uint32_t t = all_types[ti];
		uint8_t *w = rnd_weight(t, n, k, 77 + ti);
		float *wf = deq_ref(t, w, n, k), *a = rnd((size_t)m * k, 5); /* k > n */
		float *c = malloc((size_t)m * k * sizeof(float)), *cf = malloc((size_t)m * k * sizeof(float));
		struct ops_w ow = {.data = w, .type = t, .n = n, .k = k};
		for (int tb = 0; tb < 2; tb++) {
			unsigned fl = (tb ? OPS_TB : 0u) | OPS_BF16;
			int cols = tb ? n : k;
			o->matmul_w(c, a, &ow, m, fl, 1.0f, 0.0f);
			o->matmul(cf, a, wf, m, cols, tb ? k : n, fl | OPS_CONST_B, 1.0f, 0.0f);
			if (memcmp(c, cf, (size_t)m * cols * sizeof(float)) != 0)
				fail_msg("%s tb=%d: bf16 product differs from the dequantized copy's",
					 ggml_type_name(t), tb);
			o->matmul_w(c, a, &ow, m, fl, 1.0f, 1.0f); /* accumulate: twice the product */
			for (int i = 0; i < m * cols; i++)
				assert_true(fabsf(c[i] - 2.0f * cf[i]) <= 1e-5f * fabsf(cf[i]) + 1e-6f);
		}
		/* the cached copies go with the memory */
		ops_cpu_bf16_forget(w, (size_t)n * ggml_row_bytes(t, (size_t)k));
		ops_cpu_bf16_forget(wf, (size_t)n * k * sizeof(float));
		free(w);
		free(wf);
		free(a);
		free(c);
		free(cf);
	}
}

static void test_embedding_rows(void **state)
{
	(void)state;
	const struct ops *o = ops_cpu();
	int32_t tok[5] = {3, 0, 3, 12, 7};
	for (size_t ti = 0; ti < N_TYPES; ti++) {
		uint32_t t = all_types[ti];
		int V = 13, C = k_for(t, 0);
		uint8_t *w = rnd_weight(t, V, C, 31 + ti);
		float *wf = deq_ref(t, w, V, C), *wpe = rnd((size_t)2 * C, 3);
		float *out = malloc((size_t)5 * C * sizeof(float));
		struct ops_w ow = {.data = w, .type = t, .n = V, .k = C};
		o->embedding_forward(out, tok, NULL, &ow, NULL, 5, 5, C);
		for (int r = 0; r < 5; r++)
			assert_memory_equal(out + (size_t)r * C, wf + (size_t)tok[r] * C, (size_t)C * 4);
		o->embedding_forward(out, tok, NULL, &ow, wpe, 5, 2, C);
		for (int j = 0; j < C; j++)
			assert_true(out[(size_t)3 * C + j] == wf[(size_t)12 * C + j] + wpe[(size_t)1 * C + j]);
		free(w);
		free(wf);
		free(wpe);
		free(out);
	}
}

static int hexval(char c)
{
	return c <= '9' ? c - '0' : (c | 32) - 'a' + 10;
}

static void test_quantize_fixture(void **state)
{
	(void)state;
	const char *root = getenv("FTLAB_ROOT");
	char *p = path_join(root ? root : ".", "tests/reference/quantize_fixture.json");
	json_error_t je;
	json_t *all = json_load_file(p, 0, &je);
	free(p);
	assert_non_null(all);
	size_t cases = 0;
	for (size_t c = 0; c < json_array_size(all); c++) {
		json_t *e = json_array_get(all, c);
		const struct ggml_type_desc *td =
			ggml_type_by_name(json_string_value(json_object_get(e, "type")));
		assert_non_null(td);
		json_t *in = json_object_get(e, "input");
		const char *hex = json_string_value(json_object_get(e, "hex"));
		size_t n = json_array_size(in), nbytes = strlen(hex) / 2;
		float *x = malloc(n * sizeof(float));
		uint8_t *want = malloc(nbytes), *got = malloc(nbytes);
		for (size_t i = 0; i < n; i++)
			x[i] = (float)json_number_value(json_array_get(in, i));
		for (size_t i = 0; i < nbytes; i++)
			want[i] = (uint8_t)(hexval(hex[2 * i]) * 16 + hexval(hex[2 * i + 1]));
		assert_int_equal(nbytes, n / 32 * td->block_bytes);
		assert_true(quantize_from_f32(td->id, x, got, n));
		for (size_t i = 0; i < nbytes; i++)
			if (got[i] != want[i])
				fail_msg("%s case %zu byte %zu: 0x%02x, gguf-py 0x%02x", td->name, c, i,
					 got[i], want[i]);
		cases++;
		free(x);
		free(want);
		free(got);
	}
	assert_true(cases >= 2);
	float z[32] = {0};
	uint8_t b[34];
	assert_false(quantize_from_f32(GGML_Q4_1, z, b, 32)); /* only Q8_0 and Q4_0 */
	json_decref(all);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dequant_rows_bits),
		cmocka_unit_test(test_products),
		cmocka_unit_test(test_rows_and_threads),
		cmocka_unit_test(test_bf16_same_as_dequantized),
		cmocka_unit_test(test_embedding_rows),
		cmocka_unit_test(test_quantize_fixture),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
