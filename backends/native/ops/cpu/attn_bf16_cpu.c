/* attn_bf16_cpu: causal attention of training (all queries from position 0) with its six
 * products in bf16: S = Q K^T, O = P V and the backward's dP = dO V^T, dV = P^T dO,
 * dQ = dS K, dK = dS^T Q take operands rounded to bf16 (ops_f32_to_bf16) and accumulate in
 * fp32; the softmax and its backward stay fp32. One small GEMM, on AMX tiles where the CPU
 * has them (ops_cpu_has_amx), else on AVX512-BF16, elsewhere the same rounded products in
 * fp32; per (sequence, KV head) on one thread: thread-count free. The three kernels differ
 * only in the order of the fp32 sums. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__AVX512BF16__) && defined(__AVX512F__)
#include <immintrin.h>
#define ATT16_SIMD 1
#else
#define ATT16_SIMD 0
#endif

/* AMX tiles where the compiler knows them (gcc >= 11 on x86-64); whether they run is
 * decided at run time (ops_cpu_has_amx). */
#if ATT16_SIMD && defined(__x86_64__) && defined(__linux__) && \
	(defined(__clang__) || __GNUC__ >= 11)
#define ATT16_AMX 1
#else
#define ATT16_AMX 0
#endif

#include "backends/native/ops/cpu/simd16_cpu.h"
#include "backends/native/ops/cpu/ops_cpu_internal.h"
#include "backends/native/ops/ops.h"
#include "backends/native/ops/ops_math.h"
#include "common/banned.h"

#define MR 8 /* rows of C per kernel call */
#define ATT_BLOCK 64

/* The causal row blocks of the fp32 attention (ops_cpu.c): queries in blocks of about 64
 * rows, each multiplying only the keys up to its last row. */
static int blocks_of(int t)
{
	return t >= 2 * ATT_BLOCK ? (t + ATT_BLOCK - 1) / ATT_BLOCK : 1;
}

static void block_rows(int i, int n, int t, int *r0, int *r1)
{
	int bs = (t + n - 1) / n;
	*r0 = i * bs;
	*r1 = *r0 + bs < t ? *r0 + bs : t;
}

static int round_up(int x, int m)
{
	return (x + m - 1) / m * m;
}

static int first_key(int p, int window)
{
	return window > 0 && p - window + 1 > 0 ? p - window + 1 : 0;
}

/* ---- the GEMM: C (m, n) = alpha A B (+ C when acc). A is bf16 row-major (lda), k = 2 kp
 * columns; B is packed in pairs along k: b[p * ldb + j] holds B[2p][j] (low half) and
 * B[2p+1][j] (high half); ldb is a multiple of 32 and the columns past n are readable. ---- */

#if ATT16_SIMD
static bool simd_ok(void)
{
	return ops_cpu_has_bf16();
}

/* mr <= MR rows by nv * 16 columns (nr of them stored). */
static inline __attribute__((always_inline)) void
kern(float *c, int ldc, const uint16_t *a, int lda, const uint32_t *b, int ldb, int mr, int nr,
     int kp, float alpha, bool acc, int nv)
{
	__m512 s0[MR], s1[MR];
	const uint16_t *ar[MR];
#pragma GCC unroll 8
	for (int r = 0; r < MR; r++) {
		s0[r] = _mm512_setzero_ps();
		s1[r] = _mm512_setzero_ps();
		ar[r] = a + (size_t)(r < mr ? r : mr - 1) * lda;
	}
	for (int p = 0; p < kp; p++) {
		const uint32_t *bp = b + (size_t)p * ldb;
		__m512bh b0 = (__m512bh)_mm512_loadu_si512(bp);
		__m512bh b1 = nv > 1 ? (__m512bh)_mm512_loadu_si512(bp + 16) : b0;
#pragma GCC unroll 8
		for (int r = 0; r < MR; r++) {
			uint32_t av;
			memcpy(&av, ar[r] + 2 * p, sizeof av);
			__m512bh ab = (__m512bh)_mm512_set1_epi32((int)av);
			s0[r] = _mm512_dpbf16_ps(s0[r], ab, b0);
			if (nv > 1)
				s1[r] = _mm512_dpbf16_ps(s1[r], ab, b1);
		}
	}
	__mmask16 m0 = tail16(nr, 0), m1 = nr > 16 ? tail16(nr, 16) : (__mmask16)0;
	__m512 va = _mm512_set1_ps(alpha);
	for (int r = 0; r < mr; r++) {
		float *cr = c + (size_t)r * ldc;
		__m512 v0 = _mm512_mul_ps(s0[r], va);
		if (acc)
			v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, cr));
		_mm512_mask_storeu_ps(cr, m0, v0);
		if (nv > 1) {
			__m512 v1 = _mm512_mul_ps(s1[r], va);
			if (acc)
				v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, cr + 16));
			_mm512_mask_storeu_ps(cr + 16, m1, v1);
		}
	}
}
#endif

#if ATT16_AMX
/* The AMX tile configuration (palette 1): 64 bytes, loaded per thread. */
struct amx_cfg {
	uint8_t palette, start_row, reserved[14];
	uint16_t colsb[16];
	uint8_t rows[16];
};

/* Tiles: 0, 1 C (mr rows of 16 floats); 2 A (mr rows, 16 pairs); 3, 4 B (16 pairs of rows,
 * 16 columns each); 5 A and 6, 7 B of the k tail (kt < 16 pairs). */
__attribute__((target("amx-tile,amx-bf16"))) static void amx_config(int mr, int kt)
{
	struct amx_cfg cfg;
	memset(&cfg, 0, sizeof cfg);
	cfg.palette = 1;
	for (int i = 0; i < 2; i++) {
		cfg.rows[i] = (uint8_t)mr;
		cfg.colsb[i] = 64;
	}
	cfg.rows[2] = (uint8_t)mr;
	cfg.colsb[2] = 64;
	cfg.rows[3] = cfg.rows[4] = 16;
	cfg.colsb[3] = cfg.colsb[4] = 64;
	if (kt > 0) {
		cfg.rows[5] = (uint8_t)mr;
		cfg.colsb[5] = (uint16_t)(4 * kt);
		cfg.rows[6] = cfg.rows[7] = (uint8_t)kt;
		cfg.colsb[6] = cfg.colsb[7] = 64;
	}
	_tile_loadconfig(&cfg);
}

/* One block of mr <= 16 rows of gemm16 (below) on AMX: C columns in steps of 32 (two tiles;
 * B is readable up to a multiple of 32 columns), stored through buf and masked to n. The
 * products are those of the AVX512-BF16 kernel (bf16 pairs, fp32 accumulation) in another
 * order of summation. */
__attribute__((target("amx-tile,amx-bf16"))) static void
amx_rows(float *c, int ldc, const uint16_t *a, int lda, const uint32_t *b, int ldb, int mr, int n,
	 int kp, float alpha, bool acc)
{
	float buf[2][16][16];
	int kf = kp / 16 * 16, kt = kp - kf;
	amx_config(mr, kt);
	size_t sa = (size_t)lda * sizeof(uint16_t), sb = (size_t)ldb * sizeof(uint32_t);
	for (int j0 = 0; j0 < n; j0 += 32) {
		_tile_zero(0);
		_tile_zero(1);
		for (int p0 = 0; p0 < kf; p0 += 16) {
			_tile_loadd(2, a + 2 * (size_t)p0, sa);
			_tile_loadd(3, b + (size_t)p0 * ldb + j0, sb);
			_tile_loadd(4, b + (size_t)p0 * ldb + j0 + 16, sb);
			_tile_dpbf16ps(0, 2, 3);
			_tile_dpbf16ps(1, 2, 4);
		}
		if (kt > 0) {
			_tile_loadd(5, a + 2 * (size_t)kf, sa);
			_tile_loadd(6, b + (size_t)kf * ldb + j0, sb);
			_tile_loadd(7, b + (size_t)kf * ldb + j0 + 16, sb);
			_tile_dpbf16ps(0, 5, 6);
			_tile_dpbf16ps(1, 5, 7);
		}
		_tile_stored(0, buf[0], 64);
		_tile_stored(1, buf[1], 64);
		int nr = n - j0 < 32 ? n - j0 : 32;
		__mmask16 m0 = tail16(nr, 0), m1 = nr > 16 ? tail16(nr, 16) : (__mmask16)0;
		__m512 va = _mm512_set1_ps(alpha);
		for (int r = 0; r < mr; r++) {
			float *cr = c + (size_t)r * ldc + j0;
			__m512 v0 = _mm512_mul_ps(_mm512_loadu_ps(buf[0][r]), va);
			__m512 v1 = _mm512_mul_ps(_mm512_loadu_ps(buf[1][r]), va);
			if (acc) {
				v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, cr));
				v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, cr + 16));
			}
			_mm512_mask_storeu_ps(cr, m0, v0);
			_mm512_mask_storeu_ps(cr + 16, m1, v1);
		}
	}
	_tile_release();
}
#endif

static float bf(uint16_t h)
{
	return ops_bf16_to_f32(h);
}

static void gemm16(float *c, int ldc, const uint16_t *a, int lda, const uint32_t *b, int ldb,
		   int m, int n, int kp, float alpha, bool acc)
{
#if ATT16_AMX
	if (ops_cpu_has_amx()) {
		for (int i0 = 0; i0 < m; i0 += 16)
			amx_rows(c + (size_t)i0 * ldc, ldc, a + (size_t)i0 * lda, lda, b, ldb,
				 m - i0 < 16 ? m - i0 : 16, n, kp, alpha, acc);
		return;
	}
#endif
#if ATT16_SIMD
	if (simd_ok()) {
		for (int i0 = 0; i0 < m; i0 += MR) {
			int mr = m - i0 < MR ? m - i0 : MR;
			for (int j0 = 0; j0 < n; j0 += 32) {
				int nr = n - j0 < 32 ? n - j0 : 32;
				float *cc = c + (size_t)i0 * ldc + j0;
				const uint16_t *aa = a + (size_t)i0 * lda;
				if (nr > 16)
					kern(cc, ldc, aa, lda, b + j0, ldb, mr, nr, kp, alpha, acc, 2);
				else
					kern(cc, ldc, aa, lda, b + j0, ldb, mr, nr, kp, alpha, acc, 1);
			}
		}
		return;
	}
#endif
	for (int i = 0; i < m; i++)
		for (int j = 0; j < n; j++) {
			float s = 0.0f;
			const uint16_t *ai = a + (size_t)i * lda;
			for (int p = 0; p < kp; p++) {
				uint32_t w = b[(size_t)p * ldb + j];
				s += bf(ai[2 * (size_t)p]) * bf((uint16_t)(w & 0xffffu)) +
				     bf(ai[2 * (size_t)p + 1]) * bf((uint16_t)(w >> 16));
			}
			float *cij = c + (size_t)i * ldc + j;
			*cij = alpha * s + (acc ? *cij : 0.0f);
		}
}

/* ---- packing (every value rounded with ops_f32_to_bf16's bits) ---- */

#if ATT16_SIMD
/* 16 floats rounded to bf16, the bits in the low half of each 32-bit lane (as
 * ops_f32_to_bf16: nearest even, NaN kept quiet). */
static inline __m512i bf16_lanes(__m512 x)
{
	__m512i u = _mm512_castps_si512(x);
	__mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
						 _mm512_set1_epi32(0x7f800000));
	__m512i hi = _mm512_srli_epi32(u, 16);
	__m512i r = _mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)),
				     _mm512_and_si512(hi, _mm512_set1_epi32(1)));
	return _mm512_mask_or_epi32(_mm512_srli_epi32(r, 16), nan, hi, _mm512_set1_epi32(0x40));
}
#endif

/* dst (rows, cols rounded up to even; ld) = x (rows, cols; ldx) in bf16, the pad column 0. */
static void pack_rows(uint16_t *dst, int ld, const float *x, int ldx, int rows, int cols)
{
	for (int i = 0; i < rows; i++) {
		const float *xr = x + (size_t)i * ldx;
		uint16_t *d = dst + (size_t)i * ld;
		int j = 0;
#if ATT16_SIMD
		for (; j + 16 <= cols; j += 16)
			_mm256_storeu_si256((__m256i *)(d + j),
					    _mm512_cvtepi32_epi16(bf16_lanes(_mm512_loadu_ps(xr + j))));
#endif
		for (; j < cols; j++)
			d[j] = ops_f32_to_bf16(xr[j]);
		if (cols % 2)
			d[cols] = 0;
	}
}

/* dst (t rounded up to even) = row r of P or dS in bf16, whose entries from n on are 0. */
static void pack_row_causal(uint16_t *dst, const float *r, int n, int t)
{
	pack_rows(dst, t + 1, r, t, 1, n);
	int z = n + n % 2; /* pack_rows wrote the pad of an odd n */
	memset(dst + z, 0, (size_t)(round_up(t, 2) - z) * sizeof(uint16_t));
}

/* Pairs along rows: dst[p * ld + j] = (x[2p][j], x[2p+1][j]) for p < (rows + 1) / 2,
 * j < cols (a row past rows reads as 0). */
static void pack_pairs(uint32_t *dst, int ld, const float *x, int ldx, int rows, int cols)
{
	for (int p = 0; p < (rows + 1) / 2; p++) {
		const float *x0 = x + (size_t)(2 * p) * ldx;
		const float *x1 = 2 * p + 1 < rows ? x0 + ldx : NULL;
		uint32_t *d = dst + (size_t)p * ld;
		int j = 0;
#if ATT16_SIMD
		for (; j + 16 <= cols; j += 16) {
			__m512i lo = bf16_lanes(_mm512_loadu_ps(x0 + j));
			__m512i hi = x1 ? bf16_lanes(_mm512_loadu_ps(x1 + j)) : _mm512_setzero_si512();
			_mm512_storeu_si512(d + j, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
		}
#endif
		for (; j < cols; j++)
			d[j] = (uint32_t)ops_f32_to_bf16(x0[j]) |
			       (x1 ? (uint32_t)ops_f32_to_bf16(x1[j]) << 16 : 0u);
	}
}

/* Pairs along columns, transposed: dst[p * ld + j] = (x[j][2p], x[j][2p+1]) for j < rows
 * (x^T as the B operand); tmp holds one row of cols + 1 bf16. */
static void pack_pairs_t(uint32_t *dst, int ld, const float *x, int ldx, int rows, int cols,
			 uint16_t *tmp)
{
	int kp = (cols + 1) / 2;
	for (int j = 0; j < rows; j++) {
		pack_rows(tmp, cols + 1, x + (size_t)j * ldx, ldx, 1, cols);
		for (int p = 0; p < kp; p++) {
			uint32_t w;
			memcpy(&w, tmp + 2 * (size_t)p, sizeof w);
			dst[(size_t)p * ld + j] = w;
		}
	}
}

/* dst (cols, ld) = x^T in bf16 (x rows, cols; ldx); columns rows.. of dst zero up to ld. */
static void pack_t(uint16_t *dst, int ld, const float *x, int ldx, int rows, int cols,
		   uint16_t *tmp)
{
	for (int i = 0; i < rows; i++) {
		pack_rows(tmp, cols + 1, x + (size_t)i * ldx, ldx, 1, cols);
		for (int d = 0; d < cols; d++)
			dst[(size_t)d * ld + i] = tmp[d];
	}
	for (int d = 0; d < cols; d++)
		for (int i = rows; i < ld; i++)
			dst[(size_t)d * ld + i] = 0;
}

/* ---- rows of P and dS ---- */

#if ATT16_SIMD
#endif

/* r[j0..n) = softmax of r[j0..n) (max-shifted, ops_expf), the rest of the row's t to 0. */
static void softmax_row(float *r, int j0, int n, int t)
{
	float mx = -INFINITY, sum = 0.0f;
#if ATT16_SIMD
	__m512 vm = _mm512_set1_ps(-INFINITY), vs = _mm512_setzero_ps();
	for (int j = j0; j < n; j += 16)
		vm = _mm512_max_ps(vm, _mm512_mask_loadu_ps(vm, tail16(n, j), r + j));
	mx = _mm512_reduce_max_ps(vm);
	vm = _mm512_set1_ps(mx);
	for (int j = j0; j < n; j += 16) {
		__mmask16 k = tail16(n, j);
		__m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, r + j), vm));
		_mm512_mask_storeu_ps(r + j, k, e);
		vs = _mm512_mask_add_ps(vs, k, vs, e);
	}
	sum = _mm512_reduce_add_ps(vs);
	__m512 vi = _mm512_set1_ps(1.0f / sum);
	for (int j = j0; j < n; j += 16) {
		__mmask16 k = tail16(n, j);
		_mm512_mask_storeu_ps(r + j, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, r + j), vi));
	}
#else
	for (int j = j0; j < n; j++)
		mx = r[j] > mx ? r[j] : mx;
	for (int j = j0; j < n; j++) {
		r[j] = ops_expf(r[j] - mx);
		sum += r[j];
	}
	float inv = 1.0f / sum;
	for (int j = j0; j < n; j++)
		r[j] *= inv;
#endif
	memset(r, 0, (size_t)j0 * sizeof(float));
	memset(r + n, 0, (size_t)(t - n) * sizeof(float));
}

/* r[j0..n) = p (r - sum_j p r) scale (dS from dP and P), the rest of the row's t to 0. */
static void dsoftmax_row(float *r, const float *pr, int j0, int n, int t, float scale)
{
	float acc = 0.0f;
#if ATT16_SIMD
	__m512 va = _mm512_setzero_ps();
	for (int j = j0; j < n; j += 16) {
		__mmask16 k = tail16(n, j);
		va = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, pr + j), _mm512_maskz_loadu_ps(k, r + j),
				     va);
	}
	acc = _mm512_reduce_add_ps(va);
	__m512 vc = _mm512_set1_ps(acc), vsc = _mm512_set1_ps(scale);
	for (int j = j0; j < n; j += 16) {
		__mmask16 k = tail16(n, j);
		__m512 d = _mm512_sub_ps(_mm512_maskz_loadu_ps(k, r + j), vc);
		d = _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(k, pr + j), d), vsc);
		_mm512_mask_storeu_ps(r + j, k, d);
	}
#else
	for (int j = j0; j < n; j++)
		acc += pr[j] * r[j];
	for (int j = j0; j < n; j++)
		r[j] = pr[j] * (r[j] - acc) * scale;
#endif
	memset(r, 0, (size_t)j0 * sizeof(float));
	memset(r + n, 0, (size_t)(t - n) * sizeof(float));
}

/* ---- attention ---- */

/* Per-thread buffers for sequences of t keys and head size hd. */
struct att16 {
	int t, hd, hdp, tp, ldt, ldh; /* hdp, tp: hd, t even; ldt, ldh: t, hd to 32 */
	float *s, *dp, *dkt, *dvt;
	uint16_t *pa, *qa, *qt, *oa, *ot, *tmp;
	uint32_t *pv, *bk, *bv, *bkj;
	void *mem;
};

static bool att16_init(struct att16 *w, int t, int hd)
{
	w->t = t;
	w->hd = hd;
	w->hdp = round_up(hd, 2);
	w->tp = round_up(t, 2);
	w->ldt = round_up(t, 32);
	w->ldh = round_up(hd, 32);
	size_t tt = (size_t)t * t, th = (size_t)w->tp * w->hdp;
	size_t f32 = 2 * tt + 2 * (size_t)hd * t;
	size_t u16 = 2 * (size_t)t * w->tp + 4 * th + (size_t)hd + 2;
	size_t u32 = (size_t)(w->tp / 2) * w->ldt + 2 * (size_t)(w->hdp / 2) * w->ldt +
		     2 * (size_t)(w->tp / 2) * w->ldh;
	size_t bytes = (f32 + u32) * 4 + u16 * 2 + (size_t)64 * 16;
	char *m = calloc(1, bytes);
	w->mem = m;
	if (!m)
		return false;
	size_t off = 0;
#define TAKE(ptr, type, count)                                                                 \
	do {                                                                                   \
		(ptr) = (type *)(void *)(m + off);                                             \
		off += ((count) * sizeof(type) + 63) / 64 * 64;                                \
	} while (0)
	TAKE(w->s, float, tt);
	TAKE(w->dp, float, tt);
	TAKE(w->dkt, float, (size_t)hd * t);
	TAKE(w->dvt, float, (size_t)hd * t);
	TAKE(w->pv, uint32_t, (size_t)(w->tp / 2) * w->ldt);
	TAKE(w->bk, uint32_t, (size_t)(w->hdp / 2) * w->ldt);
	TAKE(w->bv, uint32_t, (size_t)(w->hdp / 2) * w->ldt);
	TAKE(w->bkj, uint32_t, (size_t)(w->tp / 2) * w->ldh);
	TAKE(w->pa, uint16_t, (size_t)t * w->tp);
	TAKE(w->qa, uint16_t, th);
	TAKE(w->qt, uint16_t, th);
	TAKE(w->oa, uint16_t, th);
	TAKE(w->ot, uint16_t, th);
	TAKE(w->tmp, uint16_t, (size_t)hd + 2);
#undef TAKE
	return true;
}

/* s (t, t) = the causal softmax of scale Q K^T (Q = w->qa, K^T packed in w->bk), the row
 * blocks at or below the diagonal; pa (when not NULL) the rows in bf16 (ld tp). The forward
 * and a backward without stored probabilities both call this: the same bits. */
static void probs16(const struct att16 *w, float *s, uint16_t *pa, float scale, int window)
{
	int t = w->t, nb = blocks_of(t);
	for (int ib = 0; ib < nb; ib++) {
		int r0, r1;
		block_rows(ib, nb, t, &r0, &r1);
		gemm16(s + (size_t)r0 * t, t, w->qa + (size_t)r0 * w->hdp, w->hdp, w->bk, w->ldt,
		       r1 - r0, r1, w->hdp / 2, scale, false);
	}
	for (int i = 0; i < t; i++) {
		float *r = s + (size_t)i * t;
		softmax_row(r, first_key(i, window), i + 1, t);
		if (pa)
			pack_row_causal(pa + (size_t)i * w->tp, r, i + 1, t);
	}
}

void ops_cpu_attention_forward_bf16(float *out, float *att, const float *q, const float *k,
				    const float *v, int b, int t, int nh, int nkv, int hd,
				    float scale, int window)
{
	int grp = nh / nkv, qs = nh * hd, ks = nkv * hd;
	bool failed = false;
#pragma omp parallel reduction(|| : failed)
	{
		struct att16 w;
		bool ok = att16_init(&w, t, hd);
		failed = !ok;
#pragma omp for schedule(dynamic, 1) collapse(2)
		for (int bi = 0; bi < b; bi++)
			for (int kh = 0; kh < nkv; kh++) {
				if (!ok)
					continue;
				const float *kb = k + (size_t)bi * t * ks + (size_t)kh * hd;
				const float *vb = v + (size_t)bi * t * ks + (size_t)kh * hd;
				pack_pairs_t(w.bk, w.ldt, kb, ks, t, hd, w.tmp);
				pack_pairs(w.bkj, w.ldh, vb, ks, t, hd); /* V as B, pairs of keys */
				for (int h = kh * grp; h < (kh + 1) * grp; h++) {
					size_t qo = (size_t)bi * t * qs + (size_t)h * hd;
					float *s = att ? att + ((size_t)bi * nh + h) * t * t : w.s;
					pack_rows(w.qa, w.hdp, q + qo, qs, t, hd);
					probs16(&w, s, w.pa, scale, window);
					int nb = blocks_of(t);
					for (int ib = 0; ib < nb; ib++) {
						int r0, r1;
						block_rows(ib, nb, t, &r0, &r1);
						gemm16(out + qo + (size_t)r0 * qs, qs,
						       w.pa + (size_t)r0 * w.tp, w.tp, w.bkj, w.ldh,
						       r1 - r0, hd, (r1 + 1) / 2, 1.0f, false);
					}
				}
			}
		free(w.mem);
	}
	if (failed) /* out of memory for the buffers: the fp32 products */
		ops_cpu()->attention_forward(out, att, q, k, v, b, t, t, nh, nkv, hd, NULL, scale,
					     window);
}

/* dT (cols c0.. of a (hd, t) fp32 sum) += A (hd, t; bf16 ld tp) B for the causal column
 * blocks: B's column j has rows i >= j only, so block [c0, c1) starts at row c0. */
static void acc_t(const struct att16 *w, float *dt, const uint16_t *at, const uint32_t *bpk)
{
	int t = w->t, nb = blocks_of(t);
	for (int jb = 0; jb < nb; jb++) {
		int c0, c1;
		block_rows(jb, nb, t, &c0, &c1);
		int e0 = c0 & ~1; /* pairs start at an even row (row c0-1 is 0 in these columns) */
		gemm16(dt + c0, t, at + e0, w->tp, bpk + (size_t)(e0 / 2) * w->ldt + c0, w->ldt,
		       w->hd, c1 - c0, (w->tp - e0) / 2, 1.0f, true);
	}
}

void ops_cpu_attention_backward_bf16(float *dq, float *dk, float *dv, const float *dout,
				     const float *att, const float *q, const float *k,
				     const float *v, int b, int t, int nh, int nkv, int hd,
				     float scale, int window)
{
	int grp = nh / nkv, qs = nh * hd, ks = nkv * hd;
	bool failed = false;
#pragma omp parallel reduction(|| : failed)
	{
		struct att16 w;
		bool ok = att16_init(&w, t, hd);
		failed = !ok;
#pragma omp for schedule(dynamic, 1) collapse(2)
		for (int bi = 0; bi < b; bi++)
			for (int kh = 0; kh < nkv; kh++) {
				if (!ok)
					continue;
				size_t ko = (size_t)bi * t * ks + (size_t)kh * hd;
				pack_pairs_t(w.bk, w.ldt, k + ko, ks, t, hd, w.tmp);  /* K^T */
				pack_pairs_t(w.bv, w.ldt, v + ko, ks, t, hd, w.tmp);  /* V^T */
				pack_pairs(w.bkj, w.ldh, k + ko, ks, t, hd); /* K, pairs of keys */
				memset(w.dkt, 0, (size_t)hd * t * sizeof(float));
				memset(w.dvt, 0, (size_t)hd * t * sizeof(float));
				for (int h = kh * grp; h < (kh + 1) * grp; h++) {
					size_t qo = (size_t)bi * t * qs + (size_t)h * hd;
					const float *p = att ? att + ((size_t)bi * nh + h) * t * t : w.s;
					if (!att) {
						pack_rows(w.qa, w.hdp, q + qo, qs, t, hd);
						probs16(&w, w.s, NULL, scale, window);
					}
					pack_rows(w.oa, w.hdp, dout + qo, qs, t, hd);
					pack_t(w.ot, w.tp, dout + qo, qs, t, hd, w.tmp);
					pack_t(w.qt, w.tp, q + qo, qs, t, hd, w.tmp);
					int nb = blocks_of(t);
					for (int ib = 0; ib < nb; ib++) { /* dP = dO V^T where P is not 0 */
						int r0, r1;
						block_rows(ib, nb, t, &r0, &r1);
						gemm16(w.dp + (size_t)r0 * t, t,
						       w.oa + (size_t)r0 * w.hdp, w.hdp, w.bv, w.ldt,
						       r1 - r0, r1, w.hdp / 2, 1.0f, false);
					}
					pack_pairs(w.pv, w.ldt, p, t, t, t); /* dV^T += dO^T P */
					acc_t(&w, w.dvt, w.ot, w.pv);
					for (int i = 0; i < t; i++) {
						const float *pr = p + (size_t)i * t;
						float *r = w.dp + (size_t)i * t;
						dsoftmax_row(r, pr, first_key(i, window), i + 1, t,
							     scale);
						pack_row_causal(w.pa + (size_t)i * w.tp, r, i + 1, t);
					}
					for (int ib = 0; ib < nb; ib++) { /* dQ = dS K */
						int r0, r1;
						block_rows(ib, nb, t, &r0, &r1);
						gemm16(dq + qo + (size_t)r0 * qs, qs,
						       w.pa + (size_t)r0 * w.tp, w.tp, w.bkj, w.ldh,
						       r1 - r0, hd, (r1 + 1) / 2, 1.0f, false);
					}
					pack_pairs(w.pv, w.ldt, w.dp, t, t, t); /* dK^T += Q^T dS */
					acc_t(&w, w.dkt, w.qt, w.pv);
				}
				for (int j = 0; j < t; j++)
					for (int d = 0; d < hd; d++) {
						dk[ko + (size_t)j * ks + d] = w.dkt[(size_t)d * t + j];
						dv[ko + (size_t)j * ks + d] = w.dvt[(size_t)d * t + j];
					}
			}
		free(w.mem);
	}
	if (failed)
		ops_cpu()->attention_backward(dq, dk, dv, dout, att, q, k, v, b, t, nh, nkv, hd,
					      scale, window);
}
