/* bench: the native engine's side of `ftlab bench`: speed on a real model, on the CPU or a
 * CUDA device, measured on the spot together with the machine's limits (memory bandwidth,
 * GEMM peak), so results are stated as fractions of what this machine can do right now.
 *   generate: prefill and decode tokens/s for 1 and N prompts; the decode bound is weight
 *             bytes read per step over the measured bandwidth.
 *   train:    tokens/s of forward+backward+AdamW steps, MFU against the measured GEMM peak
 *             (CUDA: the bf16 peak of cuBLAS), process CPU time per step (mean and best
 *             step: robust on a shared machine), peak resident (CPU) or device (CUDA)
 *             memory.
 *   tokenize: tokenizer load time and encoding MB/s and tokens/s (CPU time).
 * The report goes to stdout; with json (train, generate), one JSON object goes to stdout
 * and the report to stderr. */
#include "backends/native/engine.h"

#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "backends/native/io/model_file.h"
#include "backends/native/model/model.h"
#include "backends/native/ops/cuda/ops_cuda.h"
#include "backends/native/ops/ops.h"
#include "backends/native/tok/tokenizer.h"
#include "backends/native/train/preference.h"
#include "common/rng.h"
#include "common/util.h"
#include "schema/config.h"
#include "schema/table.h"
#include "common/banned.h"

/* Where the text report goes: stdout, or stderr when --json owns stdout. */
static FILE *txt;

/* The backend a bench runs on. On CUDA every timed region ends with a synchronising
 * check (ops_cuda_check), so host clocks measure device work and a failed CUDA call
 * ends the bench with its message. */
struct bench_dev {
	const struct ops *ops;
	bool cuda;
	struct ops_cuda_peaks peaks; /* cuda: measured at start */
	char device[600];            /* cuda: ops_cuda_describe */
};

static int dev_sync(const struct bench_dev *bd, struct diag *d)
{
	return bd->cuda ? ops_cuda_check(d) : 0;
}

/* Read bandwidth in bytes/s: best of several parallel passes over a buffer far larger
 * than the caches. */
static double measure_bandwidth(void)
{
	size_t n = (size_t)1 << 28; /* 1 GiB of floats */
	float *buf = aligned_alloc(64, n * sizeof(float));
	if (!buf)
		return 0;
#pragma omp parallel for schedule(static)
	for (size_t i = 0; i < n; i++)
		buf[i] = (float)(i & 7);
	double best = 0;
	volatile float sink = 0;
	for (int rep = 0; rep < 5; rep++) {
		double t0 = time_monotonic();
		float total = 0;
#pragma omp parallel for schedule(static) reduction(+ : total)
		for (size_t i0 = 0; i0 < n; i0 += 64) {
			float s[16] = {0};
			for (size_t i = i0; i < i0 + 64; i += 16)
				for (int j = 0; j < 16; j++)
					s[j] += buf[i + j];
			for (int j = 0; j < 16; j++)
				total += s[j];
		}
		double dt = time_monotonic() - t0;
		sink += total;
		best = fmax(best, (double)n * sizeof(float) / dt);
	}
	(void)sink;
	free(buf);
	return best;
}

/* Best GFLOP/s of the CPU ops matmul on training-sized shapes: the best of 15 timed calls
 * each (a shared VM's neighbours pull single calls down; fewer calls read the peak low and
 * the MFU high). */
double engine_bench_cpu_peak(bool bf16)
{
	const struct ops *ops = ops_cpu();
	unsigned flags = bf16 ? OPS_BF16 : 0;
	int shapes[][3] = {{1024, 1536, 576}, {1024, 576, 1536}, {2048, 2048, 2048}};
	double best = 0;
	for (size_t s = 0; s < FT_ARRAY_LEN(shapes); s++) {
		int m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
		float *a = ops->alloc((size_t)m * k * 4), *b = ops->alloc((size_t)k * n * 4),
		      *c = ops->alloc((size_t)m * n * 4);
		if (!a || !b || !c) {
			ops->free(a);
			ops->free(b);
			ops->free(c);
			return 0;
		}
		for (int rep = 0; rep < 16; rep++) {
			double t0 = time_monotonic();
			ops->matmul(c, a, b, m, n, k, OPS_TB | flags, 1.0f, 0.0f);
			double dt = time_monotonic() - t0;
			if (rep > 0)
				best = fmax(best, 2.0 * m * n * k / dt / 1e9);
		}
		ops->free(a);
		ops->free(b);
		ops->free(c);
	}
	return best;
}

static double peak_rss_gib(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_maxrss / (1024.0 * 1024.0);
}

/* Device memory lines and fields (CUDA only). */
static void report_device_memory(json_t *j)
{
	struct ops_cuda_mem mem = ops_cuda_mem();
	char line[256];
	ops_cuda_mem_describe(line, sizeof line, &mem);
	fprintf(txt, "device memory: %s\n", line);
	json_object_set_new(j, "peak_device_bytes", json_integer((json_int_t)mem.peak_bytes));
	json_object_set_new(j, "device_used_bytes", json_integer((json_int_t)mem.device_used));
	json_object_set_new(j, "device_total_bytes", json_integer((json_int_t)mem.device_total));
}

/* Generates new_tokens after n random prompts of prompt_len tokens; the process CPU time
 * of the call in *cpu_s. */
static int gen_once(struct model *m, int n, int prompt_len, int new_tokens, double *cpu_s,
		    struct diag *d)
{
	const struct model_hparams *hp = model_hparams(m);
	int32_t **prompts = calloc((size_t)n, sizeof *prompts);
	size_t *lens = calloc((size_t)n, sizeof *lens);
	int rc = FT_ENOMEM;
	if (!prompts || !lens)
		goto done;
	struct rng r;
	rng_seed(&r, 1234, (uint64_t)n);
	for (int i = 0; i < n; i++) {
		prompts[i] = malloc((size_t)prompt_len * sizeof(int32_t));
		if (!prompts[i])
			goto done;
		lens[i] = (size_t)prompt_len;
		for (int j = 0; j < prompt_len; j++)
			prompts[i][j] = (int32_t)rng_below(&r, (uint64_t)hp->n_vocab);
	}
	struct gen_opts g = {.max_new_tokens = new_tokens, .top_p = 1.0f, .eos_id = -1};
	int32_t **out = NULL;
	size_t *olen = NULL;
	double c0 = time_process_cpu();
	rc = model_generate_tokens(m, (const int32_t *const *)prompts, lens, (size_t)n, &g, &out,
				   &olen, d);
	*cpu_s = time_process_cpu() - c0;
	for (int i = 0; out && i < n; i++)
		free(out[i]);
	free(out);
	free(olen);
done:
	if (rc == FT_ENOMEM && !d->code)
		diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
	for (int i = 0; prompts && i < n; i++)
		free(prompts[i]);
	free(prompts);
	free(lens);
	return rc;
}

static int bench_generate(const struct bench_dev *bd, struct model *m, int prompt_len,
			  int new_tokens, int batch, bool fp32_weights, json_t *j,
			  struct diag *d)
{
	double bw = bd->cuda ? bd->peaks.copy_gbs * 1e9 : measure_bandwidth();
	double wbytes = model_decode_weight_bytes(m);
	double bound = bw / wbytes;
	fprintf(txt, "memory bandwidth (%s, measured now): %.1f GB/s\n",
		bd->cuda ? "device copy, read + write" : "read", bw / 1e9);
	fprintf(txt, "weights read per decode step: %.1f MB (%s)\n", wbytes / 1e6,
		fp32_weights ? "dequantized to 32-bit floats" : "as stored");
	fprintf(txt, "decode bound for one prompt: %.1f tokens/s\n", bound);
	json_object_set_new(j, "bandwidth_gbs", json_real(bw / 1e9));
	json_object_set_new(j, "weight_bytes", json_real(wbytes));
	json_object_set_new(j, "decode_bound_tokens_per_s", json_real(bound));
	json_t *runs = json_array();
	json_object_set_new(j, "runs", runs);
	int sizes[] = {1, batch};
	double single_decode = 0;
	for (size_t si = 0; si < 2; si++) {
		int n = sizes[si];
		double cpu_one = 0.0, cpu_all = 0.0;
		/* a run that stops after the prefill, so that the CPU time of the decode steps
		 * is the difference (robust on a shared machine, unlike the wall clock) */
		if (new_tokens > 1 && gen_once(m, n, prompt_len, 1, &cpu_one, d))
			return d->code;
		if (gen_once(m, n, prompt_len, new_tokens, &cpu_all, d))
			return d->code;
		if (dev_sync(bd, d))
			return d->code;
		struct gen_stats st = model_gen_stats(m);
		double pf = st.prefill_tokens / st.prefill_s, dc = st.decode_tokens / st.decode_s;
		if (n == 1)
			single_decode = dc;
		fprintf(txt,
			"prompts %d: prefill %ld tokens %.1f tokens/s; decode %ld tokens %.1f "
			"tokens/s",
			n, st.prefill_tokens, pf, st.decode_tokens, dc);
		if (n == 1)
			fprintf(txt, " (%.0f %% of the bound)\n", 100.0 * dc / bound);
		else
			fprintf(txt, " (%.2fx one prompt)\n", dc / single_decode);
		json_t *r = json_object();
		json_object_set_new(r, "prompts", json_integer(n));
		json_object_set_new(r, "prefill_tokens", json_integer(st.prefill_tokens));
		json_object_set_new(r, "prefill_tokens_per_s", json_real(pf));
		json_object_set_new(r, "decode_tokens", json_integer(st.decode_tokens));
		json_object_set_new(r, "decode_tokens_per_s", json_real(dc));
		if (new_tokens > 1 && !bd->cuda) {
			double ms = 1e3 * (cpu_all - cpu_one) / (new_tokens - 1);
			fprintf(txt,
				"prompts %d: decode CPU time %.1f ms per step (all threads; the CPU "
				"time of a prefill-only run subtracted)\n",
				n, ms);
			json_object_set_new(r, "decode_cpu_ms_per_step", json_real(ms));
		}
		json_array_append_new(runs, r);
	}
	fprintf(txt, "peak resident memory: %.2f GiB\n", peak_rss_gib());
	json_object_set_new(j, "peak_resident_gib", json_real(peak_rss_gib()));
	if (bd->cuda)
		report_device_memory(j);
	return 0;
}

/* On the CPU, train mode runs the model on a copy of the CPU ops table whose matmul and
 * attention are wrapped to add up their wall and process CPU time, so the bench can print
 * the split of a step: matmuls (linear layers, LM head, LoRA: bf16 with --precision bf16),
 * attention (its GEMMs, bf16 under --precision bf16, and softmax) and the rest (norms,
 * activations, cross-entropy, AdamW: also the same in both). On CUDA the ops return
 * before the device finishes, so there is no such split. */
enum { SPLIT_MATMUL, SPLIT_ATTENTION, SPLIT_N };
static struct ops timed_ops;
static const struct ops *timed_base;
static double split_wall[SPLIT_N], split_cpu[SPLIT_N];

static void split_add(int what, double w0, double c0)
{
	split_wall[what] += time_monotonic() - w0;
	split_cpu[what] += time_process_cpu() - c0;
}

static void timed_matmul(float *c, const float *a, const float *b, int m, int n, int k,
			 unsigned flags, float alpha, float beta)
{
	double w0 = time_monotonic(), c0 = time_process_cpu();
	timed_base->matmul(c, a, b, m, n, k, flags, alpha, beta);
	split_add(SPLIT_MATMUL, w0, c0);
}

static void timed_matmul_w(float *c, const float *a, const struct ops_w *w, int m,
			   unsigned flags, float alpha, float beta)
{
	double w0 = time_monotonic(), c0 = time_process_cpu();
	timed_base->matmul_w(c, a, w, m, flags, alpha, beta);
	split_add(SPLIT_MATMUL, w0, c0);
}

static void timed_attention_forward(float *out, float *att, const float *q, const float *k,
				    const float *v, int b, int tq, int tk, int nh, int nkv,
				    int hd, const int *pos0, float scale, int window)
{
	double w0 = time_monotonic(), c0 = time_process_cpu();
	timed_base->attention_forward(out, att, q, k, v, b, tq, tk, nh, nkv, hd, pos0, scale,
				      window);
	split_add(SPLIT_ATTENTION, w0, c0);
}

static void timed_attention_backward(float *dq, float *dk, float *dv, const float *dout,
				     const float *att, const float *q, const float *k,
				     const float *v, int b, int t, int nh, int nkv, int hd,
				     float scale, int window)
{
	double w0 = time_monotonic(), c0 = time_process_cpu();
	timed_base->attention_backward(dq, dk, dv, dout, att, q, k, v, b, t, nh, nkv, hd, scale,
				       window);
	split_add(SPLIT_ATTENTION, w0, c0);
}

static void timed_attention_forward_bf16(float *out, float *att, const float *q,
					 const float *k, const float *v, int b, int t, int nh,
					 int nkv, int hd, float scale, int window)
{
	double w0 = time_monotonic(), c0 = time_process_cpu();
	timed_base->attention_forward_bf16(out, att, q, k, v, b, t, nh, nkv, hd, scale, window);
	split_add(SPLIT_ATTENTION, w0, c0);
}

static void timed_attention_backward_bf16(float *dq, float *dk, float *dv, const float *dout,
					  const float *att, const float *q, const float *k,
					  const float *v, int b, int t, int nh, int nkv, int hd,
					  float scale, int window)
{
	double w0 = time_monotonic(), c0 = time_process_cpu();
	timed_base->attention_backward_bf16(dq, dk, dv, dout, att, q, k, v, b, t, nh, nkv, hd,
					    scale, window);
	split_add(SPLIT_ATTENTION, w0, c0);
}

static const struct ops *timed_cpu_ops(void)
{
	timed_base = ops_cpu();
	timed_ops = *timed_base;
	timed_ops.matmul = timed_matmul;
	timed_ops.matmul_w = timed_matmul_w;
	timed_ops.attention_forward = timed_attention_forward;
	timed_ops.attention_backward = timed_attention_backward;
	if (timed_base->attention_forward_bf16) {
		timed_ops.attention_forward_bf16 = timed_attention_forward_bf16;
		timed_ops.attention_backward_bf16 = timed_attention_backward_bf16;
	}
	return &timed_ops;
}

/* A preference step of B pairs: 2B rows of T tokens, the second half of each row the
 * completion; DPO with LoRA adds the reference forward (adapter off), with full
 * fine-tuning its reference log-probabilities are precomputed (fixed numbers here). */
static int pref_bench_step(struct model *m, const int32_t *tok, const int32_t *tgt,
			   const uint8_t *comp, const double *ref, int B, int T,
			   const struct pref_params *pp, struct diag *d)
{
	struct pref_stats st;
	memset(&st, 0, sizeof st);
	double ex, nll;
	pref_batch_counts(&ex, &nll, tgt, comp, B, T);
	return pref_micro_batch(m, tok, tgt, comp, B, T, ref, pp, ex, nll, true, &st, d);
}

static int bench_train(const struct bench_dev *bd, struct model *m, int B, int T, int steps,
		       bool bf16, int targets, enum train_objective objective, json_t *j,
		       struct diag *d)
{
	const struct model_hparams *hp = model_hparams(m);
	const struct ops *ops = bd->ops;
	double peak; /* GFLOP/s */
	if (bd->cuda) {
		peak = 1e3 * (bf16 ? bd->peaks.bf16_tflops : bd->peaks.tf32_tflops);
		fprintf(txt,
			"GEMM peak (cuBLAS 8192^3 on random data, measured now): bf16 %.1f "
			"TFLOP/s, TF32 %.1f TFLOP/s; device copy %.0f GB/s\n",
			bd->peaks.bf16_tflops, bd->peaks.tf32_tflops, bd->peaks.copy_gbs);
		json_object_set_new(j, "peak_bf16_tflops", json_real(bd->peaks.bf16_tflops));
		json_object_set_new(j, "peak_tf32_tflops", json_real(bd->peaks.tf32_tflops));
		json_object_set_new(j, "copy_gbs", json_real(bd->peaks.copy_gbs));
	} else {
		peak = engine_bench_cpu_peak(bf16);
		fprintf(txt, "GEMM peak (%s, measured now): %.0f GFLOP/s\n",
			schema_enum_name("train.precision", bf16 ? PRECISION_BF16 : PRECISION_FP32),
			peak);
		json_object_set_new(j, "peak_gflops", json_real(peak));
	}
	bool pref = objective != OBJECTIVE_SFT;
	int rows = pref ? 2 * B : B;
	size_t N = (size_t)rows * T;
	int32_t *tok = malloc(N * sizeof(int32_t)), *tgt = malloc(N * sizeof(int32_t));
	uint8_t *comp = malloc(N);
	double *ref = malloc((size_t)rows * sizeof(double));
	size_t nt = model_n_trainable(m);
	float **mom = calloc(nt ? nt : 1, sizeof *mom), **var = calloc(nt ? nt : 1, sizeof *var);
	int rc = 0;
	if (!tok || !tgt || !comp || !ref || !mom || !var) {
		rc = diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
		goto done;
	}
	struct rng r;
	rng_seed(&r, 99, 1);
	for (size_t i = 0; i < N; i++) {
		tok[i] = (int32_t)rng_below(&r, (uint64_t)hp->n_vocab);
		tgt[i] = (int32_t)rng_below(&r, (uint64_t)hp->n_vocab);
		/* targets > 0: the last `targets` positions of each row carry one (the rest is a
		 * prompt); a preference row's completion is its last `targets` positions, or its
		 * second half */
		int first = targets > 0 ? T - targets : pref ? T / 2 : 0;
		comp[i] = pref && (int)(i % (size_t)T) >= first;
		if ((int)(i % (size_t)T) < first)
			tgt[i] = -1; /* a prompt: no target */
	}
	for (int i = 0; i < rows; i++)
		ref[i] = -1.0 * T;
	struct pref_params pp = {objective, PREF_LOSS_SIGMOID, 0.1, 0.0, 0.1, 0.5};
	bool own_ref = pref && model_lora_scale(m) == 0.0f; /* full: precomputed reference */
	for (size_t i = 0; i < nt; i++) {
		size_t bytes = model_trainable(m, i)->numel * sizeof(float);
		mom[i] = ops->alloc(bytes);
		var[i] = ops->alloc(bytes);
		if (!mom[i] || !var[i]) {
			if (dev_sync(bd, d) == 0)
				diag_set(d, FT_ENOMEM, NULL, 0, 0,
					 "out of memory: the AdamW moments need %zu bytes", 2 * bytes);
			rc = d->code;
			goto done;
		}
		if (!bd->cuda) { /* the CPU table's alloc does not clear */
			memset(mom[i], 0, bytes);
			memset(var[i], 0, bytes);
		}
	}
	double t_total = 0, t_fwd = 0, t_bwd = 0, cpu_total = 0, cpu_best = 0;
	float loss = 0;
	for (int s = 0; s <= steps && !rc; s++) { /* step 0 warms up */
		if (s == 1) { /* the split counts the timed steps only */
			memset(split_wall, 0, sizeof split_wall);
			memset(split_cpu, 0, sizeof split_cpu);
		}
		double c0 = time_process_cpu();
		double t0 = time_monotonic();
		model_zero_grad(m);
		double t1, t2;
		if (pref) {
			rc = pref_bench_step(m, tok, tgt, comp, own_ref ? ref : NULL, B, T, &pp, d);
			if (!rc)
				rc = dev_sync(bd, d);
			t1 = t2 = time_monotonic();
		} else {
			rc = model_forward_train(m, tok, tgt, B, T, 0.0f, &loss, NULL);
			if (!rc)
				rc = dev_sync(bd, d);
			t1 = time_monotonic();
			if (!rc)
				rc = model_backward(m, 0.0f);
			if (!rc)
				rc = dev_sync(bd, d);
			t2 = time_monotonic();
		}
		for (size_t i = 0; i < nt && !rc; i++) {
			const struct model_param *p = model_trainable(m, i);
			struct ops_adamw_hp ah = ops_adamw_prepare(1e-5, 0.9, 0.999, 1e-8, 0.0, s + 1);
			ops->adamw(p->data, p->grad, mom[i], var[i], p->numel, &ah);
		}
		if (!rc)
			rc = dev_sync(bd, d);
		double t3 = time_monotonic();
		double c3 = time_process_cpu() - c0;
		if (s > 0) {
			cpu_total += c3;
			if (s == 1 || c3 < cpu_best)
				cpu_best = c3;
			t_total += t3 - t0;
			t_fwd += t1 - t0;
			t_bwd += t2 - t1;
		}
	}
	if (rc) {
		if (!d->code)
			diag_set(d, rc, NULL, 0, 0, "training step failed");
		goto done;
	}
	double tps = (double)N * steps / t_total;
	double flops = model_flops_per_token(m, T);
	struct model_memory mm = model_memory(m);
	if (pref)
		fprintf(txt,
			"batch %d pairs (%d x %d tokens%s), %d steps: %.1f tokens/s, %.2f examples/s "
			"(step %.0f ms: forward%s and backward %.0f ms, optimizer %.0f ms)\n",
			B, rows, T,
			own_ref || objective != OBJECTIVE_DPO ? "" : " and the reference pass", steps,
			tps, (double)B * steps / t_total, 1e3 * t_total / steps,
			own_ref || objective != OBJECTIVE_DPO ? "" : "s", 1e3 * t_fwd / steps,
			1e3 * (t_total - t_fwd) / steps);
	else
		fprintf(txt,
			"batch %d x %d tokens, %d steps: %.1f tokens/s, %.2f examples/s (forward %.0f "
			"ms, backward %.0f ms, optimizer %.0f ms per step), loss %.3f\n",
			B, T, steps, tps, (double)B * steps / t_total, 1e3 * t_fwd / steps,
			1e3 * t_bwd / steps, 1e3 * (t_total - t_fwd - t_bwd) / steps, loss);
	const char *head = model_logits(m) ? "every position, (B*T, V) logits kept"
					    : "chunked, at targets";
	if (targets > 0)
		fprintf(txt, "LM head: %s; targets: the last %d of %d positions of each row\n", head,
			targets, T);
	else
		fprintf(txt, "LM head: %s; targets: %s\n", head,
			pref ? "the second half of each row" : "every position");
	fprintf(txt, "process CPU time per step (all threads): mean %.3f s, best %.3f s\n",
		cpu_total / steps, cpu_best);
	if (!bd->cuda) {
		double ws = t_total / steps, cs = cpu_total / steps;
		double wm = split_wall[SPLIT_MATMUL] / steps, wa = split_wall[SPLIT_ATTENTION] / steps;
		double cm = split_cpu[SPLIT_MATMUL] / steps, ca = split_cpu[SPLIT_ATTENTION] / steps;
		fprintf(txt,
			"split per step, wall (CPU): matmuls%s %.0f ms (%.0f ms), attention %.0f "
			"ms (%.0f ms), rest %.0f ms (%.0f ms); matmuls %.0f %% of the step\n",
			bf16 ? " (bf16)" : "", 1e3 * wm, 1e3 * cm, 1e3 * wa, 1e3 * ca,
			1e3 * (ws - wm - wa), 1e3 * (cs - cm - ca), 100.0 * wm / ws);
	}
	if (!bd->cuda) {
		/* once more after the steps: a neighbour on a shared machine can pull one
		 * measurement down, and a low peak reads as a high MFU; the higher one counts */
		double again = engine_bench_cpu_peak(bf16);
		fprintf(txt, "GEMM peak measured again after the steps: %.0f GFLOP/s (the MFU uses "
			     "the higher)\n",
			again);
		if (again > peak) {
			peak = again;
			json_object_set_new(j, "peak_gflops", json_real(peak));
		}
	}
	double mfu = peak > 0 ? flops * tps / 1e9 / peak : 0;
	if (bd->cuda) {
		/* MFU against the bf16 peak in both precisions: the chip's rate for this work */
		double mfu_bf16 = flops * tps / 1e12 / bd->peaks.bf16_tflops;
		fprintf(txt,
			"model FLOPs per token %.3g: %.1f TFLOP/s, MFU %.1f %% of the measured bf16 "
			"peak",
			flops, flops * tps / 1e12, 100.0 * mfu_bf16);
		if (!bf16)
			fprintf(txt, " (%.1f %% of the TF32 peak)", 100.0 * mfu);
		fputc('\n', txt);
		json_object_set_new(j, "mfu", json_real(mfu_bf16));
		if (!bf16)
			json_object_set_new(j, "mfu_tf32", json_real(mfu));
	} else {
		fprintf(txt,
			"model FLOPs per token %.3g: %.0f GFLOP/s, MFU %.0f %% of the measured peak\n",
			flops, flops * tps / 1e9, 100.0 * mfu);
		json_object_set_new(j, "mfu", json_real(mfu));
	}
	fprintf(txt,
		"memory: params %.0f MB, grads %.0f MB, activations %.0f MB; peak resident %.2f "
		"GiB\n",
		mm.params / 1e6, mm.grads / 1e6, mm.acts / 1e6, peak_rss_gib());
	json_object_set_new(j, "tokens_per_s", json_real(tps));
	json_object_set_new(j, "step_s", json_real(t_total / steps));
	json_object_set_new(j, "forward_s", json_real(t_fwd / steps));
	json_object_set_new(j, "backward_s", json_real(t_bwd / steps));
	json_object_set_new(j, "optimizer_s", json_real((t_total - t_fwd - t_bwd) / steps));
	json_object_set_new(j, "cpu_s_per_step", json_real(cpu_total / steps));
	json_object_set_new(j, "cpu_s_best_step", json_real(cpu_best));
	json_object_set_new(j, "loss", json_real(loss));
	json_object_set_new(j, "flops_per_token", json_real(flops));
	json_object_set_new(j, "achieved_tflops", json_real(flops * tps / 1e12));
	json_object_set_new(j, "params_bytes", json_integer((json_int_t)mm.params));
	json_object_set_new(j, "grads_bytes", json_integer((json_int_t)mm.grads));
	json_object_set_new(j, "activations_bytes", json_integer((json_int_t)mm.acts));
	json_object_set_new(j, "peak_resident_gib", json_real(peak_rss_gib()));
	if (bd->cuda)
		report_device_memory(j);
done:
	for (size_t i = 0; mom && var && i < nt; i++) {
		ops->free(mom[i]);
		ops->free(var[i]);
	}
	free(mom);
	free(var);
	free(tok);
	free(tgt);
	free(comp);
	free(ref);
	return rc;
}

/* The ops table for the backend: cpu, cuda (FT_EUNSUPP without a device) or auto. */
static int bench_device(struct bench_dev *bd, enum backend_type backend, bool train,
			struct diag *d)
{
	memset(bd, 0, sizeof *bd);
	char why[512] = "";
	struct ops_cuda_device dev;
	bool want_cuda = backend == BACKEND_CUDA;
	bool have_cuda = backend != BACKEND_CPU && ops_cuda_probe(&dev, why, sizeof why) == 0;
	if (want_cuda && !have_cuda)
		return diag_set(d, FT_EUNSUPP, NULL, 0, 0, "%s", why);
	if (!have_cuda) {
		bd->ops = train ? timed_cpu_ops() : ops_cpu();
		return 0;
	}
	bd->cuda = true;
	ops_cuda_describe(bd->device, sizeof bd->device, &dev);
	if ((bd->ops = ops_cuda()) == NULL) {
		int rc = ops_cuda_check(d);
		return rc ? rc : diag_set(d, FT_EIO, NULL, 0, 0, "the CUDA backend did not start");
	}
	int rc = ops_cuda_measure_peaks(&bd->peaks, d);
	ops_cuda_mem_reset_peak(); /* the measurement's buffers are not the bench's */
	return rc;
}

/* Tokenizer speed: load time, then every line of a text file encoded once (cold word
 * cache), then the whole file as one text. CPU seconds of this process. */
static int bench_tokenize(const char *model_path, const char *text_path, struct diag *d)
{
	struct model_file *mf = NULL;
	struct tokenizer *t = NULL;
	char *buf = NULL;
	size_t len = 0;
	double w0 = time_monotonic(), c0 = time_process_cpu();
	int rc = model_file_load_tokenizer(&mf, model_path, d);
	if (!rc)
		rc = tokenizer_from_model_file(&t, mf, d);
	double w1 = time_monotonic(), c1 = time_process_cpu();
	if (!rc)
		rc = file_read_all(&buf, &len, text_path, 1u << 30, d);
	size_t lines = 0, toks = 0, whole = 0;
	double c2 = time_process_cpu();
	for (char *p = buf; !rc && p && p < buf + len;) {
		char *e = memchr(p, '\n', (size_t)(buf + len - p));
		if (!e)
			e = buf + len;
		int32_t *ids;
		size_t n = 0;
		rc = tokenizer_encode_ex(t, p, (size_t)(e - p), 0, &ids, &n, d);
		if (!rc)
			free(ids);
		toks += n;
		lines++;
		p = e + 1;
	}
	double c3 = time_process_cpu();
	int32_t *ids = NULL;
	if (!rc)
		rc = tokenizer_encode_ex(t, buf, len, 0, &ids, &whole, d);
	double c4 = time_process_cpu();
	free(ids);
	if (!rc) {
		printf("ftlab bench --mode tokenize: model %s (%s, %d tokens), text %s (%.2f MB)\n",
		       model_path, tokenizer_is_sentencepiece(t) ? "SentencePiece BPE" : "byte-level BPE",
		       tokenizer_n_vocab(t), text_path, (double)len / 1e6);
		printf("load: %.3f s wall, %.3f s CPU\n", w1 - w0, c1 - c0);
		printf("%zu lines, %zu tokens: %.3f s CPU, %.2f MB/s, %.0f k tokens/s\n", lines, toks,
		       c3 - c2, (double)len / 1e6 / (c3 - c2), (double)toks / 1e3 / (c3 - c2));
		printf("whole file as one text (warm cache), %zu tokens: %.3f s CPU, %.2f MB/s\n",
		       whole, c4 - c3, (double)len / 1e6 / (c4 - c3));
	}
	free(buf);
	tokenizer_free(t);
	model_file_free(mf);
	return rc;
}

int engine_bench(const struct engine_bench_opts *b, struct diag *d)
{
	if (b->tokenize)
		return bench_tokenize(b->model_path, b->text_path ? b->text_path : "docs/engine.md", d);
	bool gen = b->generate;
	const char *mode = gen ? "generate" : "train";
	struct model_opts o = {0};
	o.layers_first = o.layers_last = -1;
	o.seed = 1;
	o.frozen_f32 = b->weights_f32;
	o.full_logits = b->all_logits && !b->generate;
	const char *qv[] = {"q_proj", "v_proj"};
	if (!gen) {
		if (b->method == ENGINE_BENCH_FULL) {
			o.method = METHOD_FULL;
		} else if (b->method == ENGINE_BENCH_ADAPTER ||
			   b->method == ENGINE_BENCH_ADAPTER_HOULSBY) {
			/* AdapterHub's defaults: pfeiffer (seq_bn) after the MLP with relu, or
			 * houlsby (double_seq_bn) at both positions with swish; factor 16 */
			bool h = b->method == ENGINE_BENCH_ADAPTER_HOULSBY;
			o.method = METHOD_ADAPTER;
			o.bn_pfeiffer = !h;
			o.bn_attn = h;
			o.bn_mlp = true;
			o.bn_reduction = 16;
			o.bn_act = h ? OPS_ACT_SILU : OPS_ACT_RELU;
		} else if (b->method == ENGINE_BENCH_PREFIX) {
			o.method = METHOD_PREFIX;
			o.prefix_tokens = 20;
		} else if (b->method == ENGINE_BENCH_IA3) {
			o.method = METHOD_IA3; /* PEFT's llama default: k, v, down (input) */
			o.ff_auto = true;
		} else {
			o.method = b->method == ENGINE_BENCH_DORA ? METHOD_DORA : METHOD_LORA;
			o.lora_rank = 8;
			o.lora_alpha = 16;
			o.all_linear = b->method == ENGINE_BENCH_LORA_ALL;
			o.targets = qv;
			o.n_targets = 2;
		}
	}
	if (b->threads > 0)
		omp_set_num_threads(b->threads);
	txt = b->json ? stderr : stdout;
	struct bench_dev bd;
	struct model_file *mf = NULL;
	struct model *m = NULL;
	json_t *j = NULL;
	int rc = bench_device(&bd, b->backend, !gen, d);
	if (rc)
		return rc;
	int steps = b->steps > 0 ? b->steps : bd.cuda ? 10 : 3;
	if (!gen) {
		o.max_batch = b->objective != OBJECTIVE_SFT ? 2 * b->batch : b->batch;
		o.max_seq = b->seq;
		o.precision = b->bf16 ? PRECISION_BF16 : PRECISION_FP32;
	}
	o.ops = bd.ops;
	rc = model_file_load(&mf, b->model_path, d);
	if (!rc)
		rc = model_create(&m, mf, &o, d);
	model_file_free(mf);
	if (!rc && bd.cuda)
		rc = ops_cuda_check(d);
	if (rc) {
		model_free(m);
		return rc;
	}
	const char *be = schema_enum_name("backend.type", bd.cuda ? BACKEND_CUDA : BACKEND_CPU);
	const char *bf16_state = gen || !b->bf16			? "off"
				 : (bd.cuda || ops_cpu_has_bf16()) ? "on"
								   : "emulated (inputs rounded)";
	fprintf(txt,
		"ftlab bench --mode %s: model %s, backend %s, %d threads, bf16 matmuls %s, frozen "
		"weights %s\n",
		mode, b->model_path, be, omp_get_max_threads(), bf16_state,
		b->weights_f32 ? "fp32 (--weights f32)" : "as the file stores them");
	if (bd.cuda)
		fprintf(txt, "device: %s\n", bd.device);
	j = json_object();
	json_object_set_new(j, "mode", json_string(mode));
	json_object_set_new(j, "backend", json_string(be));
	if (bd.cuda)
		json_object_set_new(j, "device", json_string(bd.device));
	json_object_set_new(j, "model", json_string(b->model_path));
	json_object_set_new(j, "threads", json_integer(omp_get_max_threads()));
	if (gen) {
		json_object_set_new(j, "prompt_len", json_integer(b->prompt_len));
		json_object_set_new(j, "new_tokens", json_integer(b->new_tokens));
		rc = bench_generate(&bd, m, b->prompt_len, b->new_tokens, b->batch, b->weights_f32, j,
				    d);
	} else {
		const char *method = b->method == ENGINE_BENCH_FULL ? schema_enum_name("method.type",
											       METHOD_FULL)
				     : b->method == ENGINE_BENCH_LORA_ALL ? "lora-all"
				     : b->method == ENGINE_BENCH_ADAPTER   ? "adapter"
				     : b->method == ENGINE_BENCH_ADAPTER_HOULSBY
					     ? "adapter-houlsby"
					     : schema_enum_name("method.type", METHOD_LORA);
		json_object_set_new(j, "method", json_string(method));
		json_object_set_new(j, "precision",
				    json_string(schema_enum_name("train.precision",
								 b->bf16 ? PRECISION_BF16
									 : PRECISION_FP32)));
		json_object_set_new(j, "bf16_matmuls", json_string(bf16_state));
		json_object_set_new(j, "batch", json_integer(b->batch));
		json_object_set_new(j, "seq", json_integer(b->seq));
		json_object_set_new(j, "steps", json_integer(steps));
		json_object_set_new(j, "targets", json_integer(b->targets));
		json_object_set_new(j, "all_logits", json_boolean(b->all_logits));
		json_object_set_new(j, "objective",
				    json_string(schema_enum_name("train.objective", (int)b->objective)));
		rc = bench_train(&bd, m, b->batch, b->seq, steps, b->bf16, b->targets, b->objective,
				 j, d);
	}
	model_free(m);
	if (!rc && b->json) {
		char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
		if (s)
			printf("%s\n", s);
		free(s);
	}
	json_decref(j);
	return rc;
}
