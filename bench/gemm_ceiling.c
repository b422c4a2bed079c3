/* gemm_ceiling: the fastest a bf16 LoRA training step could be if it were nothing but its
 * GEMMs. It runs the GEMMs of one step of a llama-shaped model with frozen weights (per
 * layer and linear: x W^T forward and dy W backward; the LM head's logits and dlogits W)
 * through oneDNN's bf16 matmul with every advantage ftlab's step does not have: the
 * activations already in bf16 (no rounding pass), each layer's weights reordered once into
 * the blocked layout oneDNN picks, fp32 output, nothing else between the GEMMs. Each layer
 * has its own weights, so they come from memory as in a step. It measures the GEMM peak as
 * `ftlab bench` does (engine_bench_cpu_peak) and prints the step's GEMM time and the MFU a
 * step would have if attention, LoRA's own products and every other operation took no
 * time: the ceiling of ftlab bench's MFU for that shape on this machine. Built by `make bench` ($(BUILD)/bench/gemm_ceiling),
 * run by scripts/bench.sh; not a test.
 * usage: gemm_ceiling [SHAPE.json [BATCH SEQ [ROUNDS]]]
 *        (default bench/shapes/smollm2-135m.json, 4 x 256 tokens, 3 rounds) */
#include <dnnl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/native/engine.h"
#include "common/util.h"
#include "common/banned.h"

static dnnl_engine_t eng;
static dnnl_stream_t stream;

static void die(const char *what)
{
	fprintf(stderr, "gemm_ceiling: %s\n", what);
	exit(1);
}

/* One GEMM of the step: C (m, n) fp32 = A (m, k) bf16 . B (k, n); B is a frozen weight in
 * oneDNN's blocked layout, one copy per layer. */
struct gemm {
	int m, n, k;
	const char *what;
	dnnl_primitive_t prim;
	dnnl_memory_t a, c, *b; /* b: one per layer */
};

static void fill_bf16(dnnl_memory_t mem, size_t bytes, uint16_t bits)
{
	void *h = NULL;
	if (dnnl_memory_get_data_handle(mem, &h) != dnnl_success || !h)
		die("memory handle");
	uint16_t *p = h;
	for (size_t i = 0; i < bytes / 2; i++)
		p[i] = (uint16_t)(bits ^ (i & 7)); /* values near 0.5, no denormals */
}

static void gemm_make(struct gemm *g, int layers)
{
	dnnl_memory_desc_t da, db, dc;
	dnnl_dims_t dims_a = {g->m, g->k}, dims_b = {g->k, g->n}, dims_c = {g->m, g->n};
	if (dnnl_memory_desc_init_by_tag(&da, 2, dims_a, dnnl_bf16, dnnl_ab) != dnnl_success ||
	    dnnl_memory_desc_init_by_tag(&db, 2, dims_b, dnnl_bf16, dnnl_format_tag_any) !=
		    dnnl_success ||
	    dnnl_memory_desc_init_by_tag(&dc, 2, dims_c, dnnl_f32, dnnl_ab) != dnnl_success)
		die("memory descriptors");
	dnnl_matmul_desc_t desc;
	dnnl_primitive_desc_t pd;
	if (dnnl_matmul_desc_init(&desc, &da, &db, NULL, &dc) != dnnl_success ||
	    dnnl_primitive_desc_create(&pd, &desc, NULL, eng, NULL) != dnnl_success ||
	    dnnl_primitive_create(&g->prim, pd) != dnnl_success)
		die("bf16 matmul primitive (does this CPU have AVX512-BF16 or AMX?)");
	const dnnl_memory_desc_t *wmd = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
	g->b = calloc((size_t)layers, sizeof *g->b);
	if (!g->b || dnnl_memory_create(&g->a, &da, eng, DNNL_MEMORY_ALLOCATE) != dnnl_success ||
	    dnnl_memory_create(&g->c, &dc, eng, DNNL_MEMORY_ALLOCATE) != dnnl_success)
		die("out of memory");
	fill_bf16(g->a, (size_t)g->m * g->k * 2, 0x3f00);
	for (int l = 0; l < layers; l++) {
		if (dnnl_memory_create(&g->b[l], wmd, eng, DNNL_MEMORY_ALLOCATE) != dnnl_success)
			die("out of memory");
		fill_bf16(g->b[l], dnnl_memory_desc_get_size(wmd), 0x3c00);
	}
	dnnl_primitive_desc_destroy(pd);
}

static void gemm_run(const struct gemm *g, int layer)
{
	dnnl_exec_arg_t args[3] = {
		{DNNL_ARG_SRC, g->a}, {DNNL_ARG_WEIGHTS, g->b[layer]}, {DNNL_ARG_DST, g->c}};
	if (dnnl_primitive_execute(g->prim, stream, 3, args) != dnnl_success ||
	    dnnl_stream_wait(stream) != dnnl_success)
		die("bf16 matmul failed");
}

struct shape {
	int n, k;
	const char *what;
};

/* Times the GEMMs of one step (each but the last two once per layer, on that layer's
 * weights; the last two, the head, once), best of rounds after one warm-up; prints each
 * GEMM's share and returns the step's seconds. flops (when not NULL) gets the FLOPs. */
static double run_set(const struct shape *sh, int n, int M, int L, int rounds, double *flops,
		      const char *name)
{
	struct gemm *g = calloc((size_t)n, sizeof *g);
	double *part = calloc((size_t)n, sizeof *part), *tp = calloc((size_t)n, sizeof *tp);
	if (!g || !part || !tp)
		die("out of memory");
	double fl = 0;
	for (int i = 0; i < n; i++) {
		int reps = i >= n - 2 ? 1 : L;
		g[i] = (struct gemm){.m = M, .n = sh[i].n, .k = sh[i].k, .what = sh[i].what};
		gemm_make(&g[i], reps);
		fl += 2.0 * M * sh[i].n * (double)sh[i].k * reps;
	}
	double best = 1e30;
	for (int r = 0; r <= rounds; r++) { /* round 0 warms up */
		memset(tp, 0, (size_t)n * sizeof *tp);
		double t0 = time_monotonic();
		for (int l = 0; l < L; l++)
			for (int i = 0; i < n - 2; i++) {
				double t1 = time_monotonic();
				gemm_run(&g[i], l);
				tp[i] += time_monotonic() - t1;
			}
		for (int i = n - 2; i < n; i++) {
			double t1 = time_monotonic();
			gemm_run(&g[i], 0);
			tp[i] += time_monotonic() - t1;
		}
		double dt = time_monotonic() - t0;
		if (r > 0 && dt < best) {
			best = dt;
			memcpy(part, tp, (size_t)n * sizeof *tp);
		}
	}
	printf("%s: %.1f ms per step, %.0f GFLOP/s\n", name, 1e3 * best, fl / best / 1e9);
	for (int i = 0; i < n; i++)
		printf("  %-12s %5d x %5d x %5d: %6.1f ms, %5.0f GFLOP/s\n", g[i].what, g[i].m,
		       g[i].n, g[i].k, 1e3 * part[i],
		       2.0 * M * g[i].n * (double)g[i].k * (i >= n - 2 ? 1 : L) / part[i] / 1e9);
	for (int i = 0; i < n; i++) {
		int reps = i >= n - 2 ? 1 : L;
		for (int l = 0; l < reps; l++)
			dnnl_memory_destroy(g[i].b[l]);
		free(g[i].b);
		dnnl_memory_destroy(g[i].a);
		dnnl_memory_destroy(g[i].c);
		dnnl_primitive_destroy(g[i].prim);
	}
	free(g);
	free(part);
	free(tp);
	if (flops)
		*flops = fl;
	return best;
}

static int shape_int(json_t *cfg, const char *key, int dflt)
{
	json_t *v = json_object_get(cfg, key);
	return json_is_integer(v) ? (int)json_integer_value(v) : dflt;
}

int main(int argc, char **argv)
{
	const char *path = argc > 1 ? argv[1] : "bench/shapes/smollm2-135m.json";
	int64_t batch = 4, seq = 256, rounds = 3;
	if ((argc > 2 && (argc < 4 || !parse_i64(argv[2], &batch) || batch < 1 ||
			  batch > 256 || !parse_i64(argv[3], &seq) || seq < 2 ||
			  seq > 65536 || batch * seq > 65536)) ||
	    (argc > 4 && (!parse_i64(argv[4], &rounds) || rounds < 1 || rounds > 100))) {
		fprintf(stderr, "usage: gemm_ceiling [SHAPE.json [BATCH SEQ [ROUNDS]]]\n");
		return 2;
	}
	json_error_t err;
	json_t *cfg = json_load_file(path, 0, &err);
	if (!cfg) {
		fprintf(stderr, "gemm_ceiling: %s:%d:%d: %s\n", path, err.line, err.column, err.text);
		return 2;
	}
	int C = shape_int(cfg, "hidden_size", 0), F = shape_int(cfg, "intermediate_size", 0);
	int L = shape_int(cfg, "num_hidden_layers", 0), H = shape_int(cfg, "num_attention_heads", 0);
	int KV = shape_int(cfg, "num_key_value_heads", H), V = shape_int(cfg, "vocab_size", 0);
	int hd = shape_int(cfg, "head_dim", H > 0 ? C / H : 0);
	json_decref(cfg);
	if (C <= 0 || F <= 0 || L <= 0 || H <= 0 || KV <= 0 || V <= 0 || hd <= 0) {
		fprintf(stderr, "gemm_ceiling: %s: not a llama-shaped config\n", path);
		return 2;
	}
	if (dnnl_engine_create(&eng, dnnl_cpu, 0) != dnnl_success ||
	    dnnl_stream_create(&stream, eng, dnnl_stream_default_flags) != dnnl_success)
		die("oneDNN engine");
	int M = (int)(batch * seq), q = H * hd, kv = KV * hd;
	/* forward x W^T (n = out, k = in) and backward dx = dy W (n = in, k = out) */
	/* forward x W^T (n = out, k = in) and backward dx = dy W (n = in, k = out); the head
	 * last. Two decompositions: ftlab's (one GEMM per linear), and q,k,v and gate,up each
	 * fused into one wider GEMM (concatenated weights: fewer, larger GEMMs) */
	struct shape apart[] = {
		{q, C, "q fwd"},    {kv, C, "k fwd"},	{kv, C, "v fwd"},    {C, q, "o fwd"},
		{F, C, "gate fwd"}, {F, C, "up fwd"},	{C, F, "down fwd"},  {C, q, "q bwd"},
		{C, kv, "k bwd"},   {C, kv, "v bwd"},	{q, C, "o bwd"},     {C, F, "gate bwd"},
		{C, F, "up bwd"},   {F, C, "down bwd"}, {V, C, "head fwd"},  {C, V, "head bwd"},
	};
	struct shape fused[] = {
		{q + 2 * kv, C, "qkv fwd"}, {C, q, "o fwd"},	      {2 * F, C, "gate+up fwd"},
		{C, F, "down fwd"},	    {C, q + 2 * kv, "qkv bwd"}, {q, C, "o bwd"},
		{C, 2 * F, "gate+up bwd"},  {F, C, "down bwd"},	      {V, C, "head fwd"},
		{C, V, "head bwd"},
	};
	printf("gemm_ceiling: %s, %d x %d tokens, %d layers; operands in bf16, nothing between "
	       "the GEMMs\n",
	       path, (int)batch, (int)seq, L);
	double flops = 0;
	double t_apart = run_set(apart, 16, M, L, (int)rounds, &flops, "one GEMM per linear");
	double t_fused = run_set(fused, 10, M, L, (int)rounds, NULL, "q,k,v and gate,up fused");
	double best = t_apart < t_fused ? t_apart : t_fused;
	double peak = engine_bench_cpu_peak(true);
	/* model FLOPs as ftlab bench counts them for LoRA (rank-r products left out: they
	 * only lower the ceiling): forward and input-gradient GEMMs, causal attention
	 * forward once and backward twice */
	double attn = 2.0 * 2.0 * L * (double)q * (double)seq / 2.0 * M;
	double model = flops + 3.0 * attn;
	printf("the step's GEMMs alone, the faster decomposition: %.1f ms, %.0f GFLOP/s; model "
	       "FLOPs per step %.1f G (GEMMs %.1f G)\n",
	       1e3 * best, flops / best / 1e9, model / 1e9, flops / 1e9);
	printf("GEMM peak (as ftlab bench measures it): %.0f GFLOP/s\n", peak);
	printf("ceiling of ftlab bench's MFU for this step (attention and every other operation "
	       "free): %.0f %%\n",
	       100.0 * model / best / 1e9 / peak);
	return 0;
}
