/* Unit tests for ops_math.h, the arithmetic the CPU backend and the CUDA kernels share:
 * activations and their derivatives (double-precision formulas and central differences),
 * bf16 rounding (round-to-nearest-even, ties, NaN, overflow, every bf16 value round trips),
 * RMSNorm/LayerNorm rows and their backward (double reference, finite differences), RoPE
 * (angles from cos/sin in double, pairing of both styles, inverse), logsumexp (no
 * overflow, 50k columns), cross-entropy row backward, dropout keep decisions (determinism,
 * rate, independence of streams) and the AdamW element update against a double step. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "backends/native/ops/ops_math.h"
#include "common/rng.h"
#include "common/banned.h"

static double gelu_d(double x)
{
	double k = sqrt(2.0 / M_PI);
	return 0.5 * x * (1.0 + tanh(k * (x + 0.044715 * x * x * x)));
}

static double silu_d(double x)
{
	return x / (1.0 + exp(-x));
}

static void test_activations(void **state)
{
	(void)state;
	for (double x = -8.0; x <= 8.0; x += 0.173) {
		float xf = (float)x;
		assert_true(fabs(ops_silu(xf) - silu_d(xf)) <= 1e-6 * (1.0 + fabs(x)));
		assert_true(fabs(ops_gelu(xf) - gelu_d(xf)) <= 1e-6 * (1.0 + fabs(x)));
		double h = 1e-4;
		double ds = (silu_d(xf + h) - silu_d(xf - h)) / (2 * h);
		double dg = (gelu_d(xf + h) - gelu_d(xf - h)) / (2 * h);
		assert_true(fabs(ops_silu_grad(xf) - ds) <= 2e-6);
		assert_true(fabs(ops_gelu_grad(xf) - dg) <= 2e-6);
	}
	/* tails: no NaN from exp overflow */
	assert_true(ops_silu(-100.0f) == -0.0f || fabsf(ops_silu(-100.0f)) < 1e-30f);
	assert_float_equal(ops_silu(100.0f), 100.0f, 1e-4);
	assert_false(isnan(ops_silu_grad(-100.0f)));
	assert_float_equal(ops_gelu(20.0f), 20.0f, 1e-5);
	assert_float_equal(ops_gelu_grad(20.0f), 1.0f, 1e-6);
}

static uint32_t bits(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	return u;
}

static float from_bits(uint32_t u)
{
	float f;
	memcpy(&f, &u, 4);
	return f;
}

/* ops_expf against libm's expf (correctly rounded in glibc): every 61st float pattern
 * of the normal-result range, both signs, within 2 ulp; the edges exactly. */
static void test_expf(void **state)
{
	(void)state;
	int worst = 0;
	float worst_x = 0.0f;
	for (int sign = 0; sign < 2; sign++)
		for (uint32_t u = 0; u < 0x42b20000u; u += 61) { /* |x| < 89 */
			uint32_t b = u | (sign ? 0x80000000u : 0u);
			float x;
			memcpy(&x, &b, sizeof x);
			if (x < -87.33654f || x > 88.72283f)
				continue;
			float got = ops_expf(x), want = expf(x);
			int32_t gi, wi;
			memcpy(&gi, &got, sizeof gi);
			memcpy(&wi, &want, sizeof wi);
			int d = gi > wi ? gi - wi : wi - gi;
			if (d > worst) {
				worst = d;
				worst_x = x;
			}
		}
	print_message("ops_expf: worst %d ulp at x = %.9g\n", worst, (double)worst_x);
	assert_true(worst <= 2);
	assert_true(ops_expf(0.0f) == 1.0f);
	assert_true(ops_expf(-INFINITY) == 0.0f);
	assert_true(isinf(ops_expf(INFINITY)) && ops_expf(INFINITY) > 0.0f);
	assert_true(isinf(ops_expf(89.0f)));
	assert_true(ops_expf(-88.0f) == 0.0f); /* below the normal range: flushed */
	assert_true(isnan(ops_expf(NAN)));
	assert_true(isfinite(ops_expf(88.7f)) && ops_expf(88.7f) > 3.3e38f);
}

/* ops_tanhf against tanh in double: every 37th float pattern with |x| < 20, both signs. */
static void test_tanhf(void **state)
{
	(void)state;
	double worst = 0;
	for (int sign = 0; sign < 2; sign++)
		for (uint32_t u = 0; u < 0x41a00000u; u += 37) {
			float x = from_bits(u | (sign ? 0x80000000u : 0u));
			worst = fmax(worst, fabs((double)ops_tanhf(x) - tanh((double)x)));
		}
	print_message("ops_tanhf: worst absolute error %.3g\n", worst);
	assert_true(worst < 2e-7);
	assert_true(ops_tanhf(100.0f) == 1.0f && ops_tanhf(-100.0f) == -1.0f);
	assert_true(ops_tanhf(INFINITY) == 1.0f && ops_tanhf(-INFINITY) == -1.0f);
	assert_true(isnan(ops_tanhf(NAN)));
	assert_true(ops_tanhf(0.0f) == 0.0f);
}

static void test_bf16(void **state)
{
	(void)state;
	assert_int_equal(ops_f32_to_bf16(1.0f), 0x3f80);
	assert_int_equal(ops_f32_to_bf16(-2.0f), 0xc000);
	/* exact ties go to even */
	assert_int_equal(ops_f32_to_bf16(from_bits(0x3f808000u)), 0x3f80);
	assert_int_equal(ops_f32_to_bf16(from_bits(0x3f818000u)), 0x3f82);
	/* above / below the tie */
	assert_int_equal(ops_f32_to_bf16(from_bits(0x3f808001u)), 0x3f81);
	assert_int_equal(ops_f32_to_bf16(from_bits(0x3f807fffu)), 0x3f80);
	/* infinities stay, the largest floats round to infinity, NaN stays NaN */
	assert_int_equal(ops_f32_to_bf16(INFINITY), 0x7f80);
	assert_int_equal(ops_f32_to_bf16(-INFINITY), 0xff80);
	assert_int_equal(ops_f32_to_bf16(from_bits(0x7f7fffffu)), 0x7f80);
	uint16_t n = ops_f32_to_bf16(NAN);
	assert_true((n & 0x7f80) == 0x7f80 && (n & 0x7f) != 0);
	uint16_t sn = ops_f32_to_bf16(from_bits(0x7f800001u)); /* would round to inf */
	assert_true((sn & 0x7f80) == 0x7f80 && (sn & 0x7f) != 0);
	/* every bf16 value converts to float and back unchanged */
	for (uint32_t h = 0; h < 65536; h++) {
		float f = ops_bf16_to_f32((uint16_t)h);
		if (isnan(f))
			continue;
		assert_int_equal(ops_f32_to_bf16(f), h);
		assert_int_equal(bits(f), h << 16);
	}
	/* rounding error is at most half a bf16 ulp (8 mantissa bits) */
	struct rng r;
	rng_seed(&r, 1, 1);
	for (int i = 0; i < 10000; i++) {
		float x = (float)((rng_uniform(&r) * 2 - 1) * 1e3);
		float y = ops_bf16_to_f32(ops_f32_to_bf16(x));
		assert_true(fabsf(y - x) <= fabsf(x) * 0x1.0p-8f);
	}
}

#define NC 37

static void fill(float *x, int n, uint64_t seed, float scale, float off)
{
	struct rng r;
	rng_seed(&r, seed, 3);
	for (int i = 0; i < n; i++)
		x[i] = off + scale * (2.0f * rng_uniform_f(&r) - 1.0f);
}

/* L = sum(out * R) of one normalisation row, in double. */
static double norm_loss(bool layer, const float *x, const float *w, const float *b,
			const float *R)
{
	float out[NC], m, s;
	if (layer)
		ops_layernorm_row(out, &m, &s, x, w, b, NC, 1e-5f);
	else
		ops_rmsnorm_row(out, x, w, NC, 1e-5f);
	double l = 0;
	for (int i = 0; i < NC; i++)
		l += (double)out[i] * R[i];
	return l;
}

static void check_norm(bool layer)
{
	float x[NC], w[NC], b[NC], R[NC], out[NC], dx[NC], dw[NC], db[NC];
	fill(x, NC, 1, 2.0f, 0.3f);
	fill(w, NC, 2, 0.5f, 1.0f);
	fill(b, NC, 3, 0.5f, 0.0f);
	fill(R, NC, 4, 1.0f, 0.0f);
	/* forward against double */
	double mean = 0, ss = 0;
	for (int i = 0; i < NC; i++) {
		mean += x[i];
		ss += (double)x[i] * x[i];
	}
	mean /= NC;
	double var = 0;
	for (int i = 0; i < NC; i++)
		var += (x[i] - mean) * (x[i] - mean);
	var /= NC;
	float m = 0, s;
	if (layer) {
		ops_layernorm_row(out, &m, &s, x, w, b, NC, 1e-5f);
		assert_true(fabs(m - mean) < 1e-6);
		assert_true(fabs(s - 1.0 / sqrt(var + 1e-5)) < 1e-5 * s);
		for (int i = 0; i < NC; i++)
			assert_true(fabs(out[i] - ((x[i] - mean) * s * w[i] + b[i])) < 1e-5);
		/* b may be NULL */
		float o2[NC], m2, s2;
		ops_layernorm_row(o2, &m2, &s2, x, w, NULL, NC, 1e-5f);
		assert_float_equal(o2[3], out[3] - b[3], 1e-5);
	} else {
		s = ops_rmsnorm_row(out, x, w, NC, 1e-5f);
		double rd = 1.0 / sqrt(ss / NC + 1e-5);
		assert_true(fabs(s - rd) < 1e-6 * rd);
		for (int i = 0; i < NC; i++)
			assert_true(fabs(out[i] - x[i] * rd * w[i]) < 1e-5);
	}
	/* backward against central differences; dw/db accumulate */
	for (int i = 0; i < NC; i++)
		dw[i] = db[i] = 1.0f;
	if (layer)
		ops_layernorm_row_backward(dx, dw, db, R, x, w, m, s, NC);
	else
		ops_rmsnorm_row_backward(dx, dw, R, x, w, s, NC);
	float eps = 1e-2f;
	for (int i = 0; i < NC; i++) {
		float keep = x[i];
		x[i] = keep + eps;
		double lp = norm_loss(layer, x, w, b, R);
		x[i] = keep - eps;
		double lm = norm_loss(layer, x, w, b, R);
		x[i] = keep;
		double fd = (lp - lm) / (2 * eps);
		assert_true(fabs(fd - dx[i]) < 2e-3 * (1 + fabs(fd)));
		keep = w[i];
		w[i] = keep + eps;
		lp = norm_loss(layer, x, w, b, R);
		w[i] = keep - eps;
		lm = norm_loss(layer, x, w, b, R);
		w[i] = keep;
		fd = (lp - lm) / (2 * eps);
		assert_true(fabs(fd - (dw[i] - 1.0f)) < 2e-3 * (1 + fabs(fd)));
		if (layer)
			assert_float_equal(db[i] - 1.0f, R[i], 1e-6);
	}
	/* NULL weight gradients are allowed */
	if (layer)
		ops_layernorm_row_backward(dx, NULL, NULL, R, x, w, m, s, NC);
	else
		ops_rmsnorm_row_backward(dx, NULL, R, x, w, s, NC);
}

static void test_rmsnorm_row(void **state)
{
	(void)state;
	check_norm(false);
}

static void test_layernorm_row(void **state)
{
	(void)state;
	check_norm(true);
}

static void test_rope_head(void **state)
{
	(void)state;
	enum { HD = 8 };
	float inv[HD / 2] = {1.0f, 0.1f, 0.01f, 0.001f};
	float x0[HD], x[HD];
	fill(x0, HD, 9, 1.0f, 0.0f);
	for (int inter = 0; inter <= 1; inter++) {
		for (int pos = 0; pos < 50; pos += 7) {
			memcpy(x, x0, sizeof x);
			ops_rope_head(x, HD, pos, inv, inter, 1.0f);
			double n0 = 0, n1 = 0;
			for (int i = 0; i < HD / 2; i++) {
				int a = inter ? 2 * i : i, b = inter ? 2 * i + 1 : i + HD / 2;
				double ang = (double)pos * inv[i], c = cos(ang), s = sin(ang);
				double ra = x0[a] * c - x0[b] * s, rb = x0[a] * s + x0[b] * c;
				assert_true(fabs(x[a] - ra) < 2e-5);
				assert_true(fabs(x[b] - rb) < 2e-5);
				n0 += (double)x0[a] * x0[a] + (double)x0[b] * x0[b];
				n1 += (double)x[a] * x[a] + (double)x[b] * x[b];
			}
			assert_true(fabs(n0 - n1) < 1e-5 * n0); /* a rotation */
			ops_rope_head(x, HD, pos, inv, inter, -1.0f); /* the backward: inverse */
			for (int i = 0; i < HD; i++)
				assert_float_equal(x[i], x0[i], 1e-5);
		}
	}
	/* position 0 is the identity */
	memcpy(x, x0, sizeof x);
	ops_rope_head(x, HD, 0, inv, 0, 1.0f);
	assert_memory_equal(x, x0, sizeof x);
}

static void test_logsumexp_ce(void **state)
{
	(void)state;
	float big[3] = {1000.0f, 1000.0f, -INFINITY};
	assert_float_equal(ops_logsumexp_row(big, 3), 1000.0f + (float)log(2.0), 1e-3);
	float neg[2] = {-1000.0f, -1001.0f};
	assert_float_equal(ops_logsumexp_row(neg, 2), -1000.0f + (float)log1p(exp(-1.0)), 1e-3);
	/* 50k equal logits: log(50000) + c, accumulated without drift */
	enum { V = 50000 };
	float *row = malloc(V * sizeof(float));
	assert_non_null(row);
	for (int i = 0; i < V; i++)
		row[i] = 0.25f;
	assert_float_equal(ops_logsumexp_row(row, V), 0.25f + (float)log((double)V), 1e-5);
	/* backward: scale * (softmax - onehot) sums to 0 over the row */
	fill(row, 1000, 21, 4.0f, 0.0f);
	double ref = 0, mx = -INFINITY;
	for (int i = 0; i < 1000; i++)
		mx = fmax(mx, row[i]);
	for (int i = 0; i < 1000; i++)
		ref += exp(row[i] - mx);
	float lse = ops_logsumexp_row(row, 1000);
	assert_true(fabs(lse - (mx + log(ref))) < 1e-5);
	float p17 = (float)(exp(row[17] - mx) / ref);
	ops_crossentropy_row_backward(row, lse, 17, 1000, 0.5f);
	double sum = 0;
	for (int i = 0; i < 1000; i++)
		sum += row[i];
	assert_true(fabs(sum) < 1e-5);
	assert_float_equal(row[17], 0.5f * (p17 - 1.0f), 1e-6);
	free(row);
}

static void test_dropout_keep(void **state)
{
	(void)state;
	const float p = 0.1f;
	long kept = 0, same = 0;
	const long n = 200000;
	for (long i = 0; i < n; i++) {
		int a = ops_dropout_keep(42, 7, (uint64_t)i, p);
		assert_int_equal(a, ops_dropout_keep(42, 7, (uint64_t)i, p)); /* pure function */
		kept += a;
		same += a == ops_dropout_keep(42, 8, (uint64_t)i, p);
		assert_int_equal(ops_dropout_keep(42, 7, (uint64_t)i, 0.0f), 1);
	}
	/* rate 0.9 within 5 standard deviations (sd = sqrt(n p (1-p)) = 134) */
	assert_true(labs(kept - (long)(0.9 * n)) < 5 * 134);
	/* another stream is a different mask: agreement 0.82 if independent */
	double agree = (double)same / n;
	assert_true(agree > 0.81 && agree < 0.83);
}

static void test_adamw_elem(void **state)
{
	(void)state;
	float p = 0.5f, m = 0.0f, v = 0.0f;
	double pd = 0.5, md = 0.0, vd = 0.0;
	const float lr = 1e-2f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f, wd = 0.1f;
	float g[5] = {0.3f, -0.2f, 0.05f, 1.5f, -0.7f};
	for (int t = 1; t <= 5; t++) {
		struct ops_adamw_hp h = ops_adamw_prepare(lr, b1, b2, eps, wd, t);
		ops_adamw_elem(&p, g[t - 1], &m, &v, &h);
		md = b1 * md + (1 - b1) * g[t - 1];
		vd = b2 * vd + (1 - b2) * (double)g[t - 1] * g[t - 1];
		double mh = md / (1 - pow(b1, t)), vh = vd / (1 - pow(b2, t));
		pd -= lr * (mh / (sqrt(vh) + eps) + wd * pd);
		assert_true(fabs(p - pd) < 1e-6);
		assert_true(fabs(m - md) < 1e-6);
		assert_true(fabs(v - vd) < 1e-7);
	}
	/* first step with bias correction moves by about lr (plus decay) */
	p = 1.0f;
	m = v = 0.0f;
	struct ops_adamw_hp h1 = ops_adamw_prepare(lr, b1, b2, eps, 0.0, 1);
	ops_adamw_elem(&p, 1e-3f, &m, &v, &h1);
	assert_float_equal(p, 1.0f - lr, 1e-6);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_activations),  cmocka_unit_test(test_bf16), cmocka_unit_test(test_expf),
		cmocka_unit_test(test_tanhf),
		cmocka_unit_test(test_rmsnorm_row),  cmocka_unit_test(test_layernorm_row),
		cmocka_unit_test(test_rope_head),    cmocka_unit_test(test_logsumexp_ce),
		cmocka_unit_test(test_dropout_keep), cmocka_unit_test(test_adamw_elem),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
