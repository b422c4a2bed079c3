/* bench: the native engine's side of `ftlab bench`: speed on a real model, measured on the
 * spot together with the machine's limits (memory bandwidth, GEMM peak), so results are
 * stated as fractions of what this machine can do right now. Prints to stdout.
 *   --mode generate: prefill and decode tokens/s for 1 and 8 prompts; the decode bound is
 *                    weight bytes read per step over the measured bandwidth.
 *   --mode train:    tokens/s of forward+backward+AdamW steps, MFU against the measured
 *                    fp32 (or bf16) GEMM peak, process CPU time per step (mean and best
 *                    step: robust on a shared machine), peak resident memory.
 *   --mode tokenize: tokenizer load time and encoding MB/s and tokens/s (CPU time). */
#include "backends/native/engine.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "backends/native/io/model_file.h"
#include "backends/native/model/model.h"
#include "backends/native/ops/ops.h"
#include "backends/native/tok/tokenizer.h"
#include "common/rng.h"
#include "common/util.h"
#include "schema/config.h"
#include "schema/table.h"
#include "common/banned.h"


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

/* Best GFLOP/s of the ops matmul on training-sized shapes. */
static double measure_gemm_peak(const struct ops *ops, unsigned flags)
{
	int shapes[][3] = {{1024, 1536, 576}, {1024, 576, 1536}, {2048, 2048, 2048}};
	double best = 0;
	for (size_t s = 0; s < FT_ARRAY_LEN(shapes); s++) {
		int m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
		float *a = ops->alloc((size_t)m * k * 4), *b = ops->alloc((size_t)k * n * 4),
		      *c = ops->alloc((size_t)m * n * 4);
		if (!a || !b || !c)
			return 0;
		for (int rep = 0; rep < 8; rep++) {
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

/* Bytes of weights one decode step reads: every matmul weight once (the LM head is the
 * tied embedding for SmolLM2), plus the norm vectors; the embedding lookup reads a row. */
static double decode_weight_bytes(const struct model *m)
{
	const struct model_hparams *hp = model_hparams(m);
	double C = hp->n_embd, F = hp->n_ff, L = hp->n_layer, V = hp->n_vocab;
	double qd = (double)hp->n_head * hp->head_dim, kvd = (double)hp->n_head_kv * hp->head_dim;
	double per_layer = C * qd + 2 * C * kvd + qd * C + 3 * C * F + 2 * C;
	if (hp->arch == ARCH_GPT2)
		per_layer = 4 * C * C + 2 * C * F + 4 * C + 6 * C + F;
	return 4.0 * (L * per_layer + V * C + C);
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
	if (rc == FT_ENOMEM)
		diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
	for (int i = 0; prompts && i < n; i++)
		free(prompts[i]);
	free(prompts);
	free(lens);
	return rc;
}

static int bench_generate(struct model *m, int prompt_len, int new_tokens, struct diag *d)
{
	double bw = measure_bandwidth();
	double wbytes = decode_weight_bytes(m);
	double bound = bw / wbytes;
	printf("memory bandwidth (read, measured now): %.1f GB/s\n", bw / 1e9);
	printf("weights read per decode step: %.1f MB (fp32)\n", wbytes / 1e6);
	printf("decode bound for one prompt: %.1f tokens/s\n", bound);
	int sizes[] = {1, 8};
	double single_decode = 0;
	for (size_t si = 0; si < 2; si++) {
		int n = sizes[si];
		double cpu_one = 0.0, cpu_all = 0.0;
		/* a run that stops after the prefill, so that the CPU time of the decode steps
		 * is the difference (robust on a shared machine, unlike the wall clock) */
		int rc = new_tokens > 1 ? gen_once(m, n, prompt_len, 1, &cpu_one, d) : 0;
		if (!rc)
			rc = gen_once(m, n, prompt_len, new_tokens, &cpu_all, d);
		if (rc)
			return rc;
		struct gen_stats st = model_gen_stats(m);
		double pf = st.prefill_tokens / st.prefill_s, dc = st.decode_tokens / st.decode_s;
		if (n == 1)
			single_decode = dc;
		printf("prompts %d: prefill %ld tokens %.1f tokens/s; decode %ld tokens %.1f "
		       "tokens/s",
		       n, st.prefill_tokens, pf, st.decode_tokens, dc);
		if (n == 1)
			printf(" (%.0f %% of the bound)\n", 100.0 * dc / bound);
		else
			printf(" (%.2fx one prompt)\n", dc / single_decode);
		if (new_tokens > 1)
			printf("prompts %d: decode CPU time %.1f ms per step (all threads; the CPU "
			       "time of a prefill-only run subtracted)\n",
			       n, 1e3 * (cpu_all - cpu_one) / (new_tokens - 1));
	}
	printf("peak resident memory: %.2f GiB\n", peak_rss_gib());
	return 0;
}


/* Train mode runs the model on a copy of the CPU ops table whose matmul and attention are
 * wrapped to add up their wall and process CPU time, so the bench can print the split of a
 * step: matmuls (linear layers, LM head, LoRA: bf16 with --precision bf16), attention
 * (its fp32 GEMMs and softmax, in both precisions) and the rest (norms, activations,
 * cross-entropy, AdamW: also the same in both). */
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

static const struct ops *timed_cpu_ops(void)
{
	timed_base = ops_cpu();
	timed_ops = *timed_base;
	timed_ops.matmul = timed_matmul;
	timed_ops.attention_forward = timed_attention_forward;
	timed_ops.attention_backward = timed_attention_backward;
	return &timed_ops;
}

static int bench_train(struct model *m, int B, int T, int steps, bool bf16, int targets,
		       struct diag *d)
{
	const struct model_hparams *hp = model_hparams(m);
	const struct ops *ops = ops_cpu();
	double peak = measure_gemm_peak(ops, bf16 ? OPS_BF16 : 0);
	printf("GEMM peak (%s, measured now): %.0f GFLOP/s\n",
	       schema_enum_name("train.precision", bf16 ? PRECISION_BF16 : PRECISION_FP32), peak);
	size_t N = (size_t)B * T;
	int32_t *tok = malloc(N * sizeof(int32_t)), *tgt = malloc(N * sizeof(int32_t));
	struct rng r;
	rng_seed(&r, 99, 1);
	for (size_t i = 0; i < N; i++) {
		tok[i] = (int32_t)rng_below(&r, (uint64_t)hp->n_vocab);
		tgt[i] = (int32_t)rng_below(&r, (uint64_t)hp->n_vocab);
		if (targets > 0 && (int)(i % (size_t)T) < T - targets)
			tgt[i] = -1; /* a prompt: no target */
	}
	size_t nt = model_n_trainable(m);
	float **mom = calloc(nt, sizeof *mom), **var = calloc(nt, sizeof *var);
	for (size_t i = 0; i < nt; i++) {
		mom[i] = ops->alloc(model_trainable(m, i)->numel * sizeof(float));
		var[i] = ops->alloc(model_trainable(m, i)->numel * sizeof(float));
	}
	double t_total = 0, t_fwd = 0, t_bwd = 0, cpu_total = 0, cpu_best = 0;
	float loss = 0;
	int rc = 0;
	for (int s = 0; s <= steps && !rc; s++) { /* step 0 warms up */
		if (s == 1) { /* the split counts the timed steps only */
			memset(split_wall, 0, sizeof split_wall);
			memset(split_cpu, 0, sizeof split_cpu);
		}
		double c0 = time_process_cpu();
		double t0 = time_monotonic();
		model_zero_grad(m);
		rc = model_forward_train(m, tok, tgt, B, T, 0.0f, &loss, NULL);
		double t1 = time_monotonic();
		if (!rc)
			rc = model_backward(m, 0.0f);
		double t2 = time_monotonic();
		for (size_t i = 0; i < nt && !rc; i++) {
			const struct model_param *p = model_trainable(m, i);
			struct ops_adamw_hp ah = ops_adamw_prepare(1e-5, 0.9, 0.999, 1e-8, 0.0, s + 1);
			ops->adamw(p->data, p->grad, mom[i], var[i], p->numel, &ah);
		}
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
	for (size_t i = 0; i < nt; i++) {
		ops->free(mom[i]);
		ops->free(var[i]);
	}
	free(mom);
	free(var);
	free(tok);
	free(tgt);
	if (rc)
		return d->code ? rc : diag_set(d, rc, "", 0, 0, "training step failed (%s)",
					       diag_code_name(rc));
	double tps = (double)N * steps / t_total;
	double flops = model_flops_per_token(m, T);
	struct model_memory mm = model_memory(m);
	printf("batch %d x %d tokens, %d steps: %.1f tokens/s (forward %.0f ms, backward %.0f "
	       "ms, optimizer %.0f ms per step), loss %.3f\n",
	       B, T, steps, tps, 1e3 * t_fwd / steps, 1e3 * t_bwd / steps,
	       1e3 * (t_total - t_fwd - t_bwd) / steps, loss);
	if (targets > 0)
		printf("LM head: %s; targets: the last %d of %d positions of each row\n",
		       model_logits(m) ? "every position, (B*T, V) logits kept" : "chunked, at targets",
		       targets, T);
	else
		printf("LM head: %s; targets: every position\n",
		       model_logits(m) ? "every position, (B*T, V) logits kept" : "chunked, at targets");
	printf("process CPU time per step (all threads): mean %.3f s, best %.3f s\n",
	       cpu_total / steps, cpu_best);
	double ws = t_total / steps, cs = cpu_total / steps;
	double wm = split_wall[SPLIT_MATMUL] / steps, wa = split_wall[SPLIT_ATTENTION] / steps;
	double cm = split_cpu[SPLIT_MATMUL] / steps, ca = split_cpu[SPLIT_ATTENTION] / steps;
	printf("split per step, wall (CPU): matmuls%s %.0f ms (%.0f ms), attention %.0f ms (%.0f "
	       "ms), rest %.0f ms (%.0f ms); matmuls %.0f %% of the step\n",
	       bf16 ? " (bf16)" : "", 1e3 * wm, 1e3 * cm, 1e3 * wa, 1e3 * ca,
	       1e3 * (ws - wm - wa), 1e3 * (cs - cm - ca), 100.0 * wm / ws);
	printf("model FLOPs per token %.3g: %.0f GFLOP/s, MFU %.0f %% of the measured peak\n",
	       flops, flops * tps / 1e9, 100.0 * flops * tps / 1e9 / peak);
	printf("memory: params %.0f MB, grads %.0f MB, activations %.0f MB; peak resident %.2f "
	       "GiB\n",
	       mm.params / 1e6, mm.grads / 1e6, mm.acts / 1e6, peak_rss_gib());
	return 0;
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
	struct model_opts o = {0};
	o.layers_first = o.layers_last = -1;
	o.seed = 1;
	o.full_logits = b->all_logits && !b->generate;
	const char *qv[] = {"q_proj", "v_proj"};
	if (!b->generate) {
		o.max_batch = b->batch;
		o.max_seq = b->seq;
		o.precision = b->bf16 ? PRECISION_BF16 : PRECISION_FP32;
		o.ops = timed_cpu_ops();
		if (b->method == ENGINE_BENCH_FULL) {
			o.method = METHOD_FULL;
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
	struct model_file *mf = NULL;
	struct model *m = NULL;
	int rc = model_file_load(&mf, b->model_path, d);
	if (!rc)
		rc = model_create(&m, mf, &o, d);
	model_file_free(mf);
	if (rc)
		return rc;
	printf("ftlab bench --mode %s: model %s, backend cpu, %d threads, bf16 matmuls %s\n",
	       b->generate ? "generate" : "train", b->model_path, omp_get_max_threads(),
	       b->generate ? "off"
			   : (b->bf16 ? (ops_cpu_has_bf16() ? "on" : "requested, not supported") : "off"));
	rc = b->generate ? bench_generate(m, b->prompt_len, b->new_tokens, d)
			 : bench_train(m, b->batch, b->seq, b->steps, b->bf16, b->targets, d);
	model_free(m);
	return rc;
}
