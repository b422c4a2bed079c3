/* bench_train: training speed of the native engine (see bench_train.h). Each step is the
 * trainer's work: zero grads, forward with fused cross-entropy, backward, global norm,
 * clipping, AdamW. The first steps warm up (allocations, oneDNN primitive caches) and are
 * not timed. MFU = model FLOPs per token (model_flops_per_token: 6N full, 4N + 2N_trainable
 * with a frozen base, plus attention) x tokens/s / measured fp32 (or bf16) GEMM peak. */
#include "runner/bench_train.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "backends/native/io/model_file.h"
#include "backends/native/model/model.h"
#include "backends/native/ops/ops.h"
#include "backends/native/train/optim.h"
#include "common/rng.h"
#include "common/util.h"

/* GFLOP/s of the ops table's matmul on an (M, K) x (K, N) product of SmolLM2-like size. */
static double gemm_peak(const struct ops *ops, bool bf16)
{
	const int M = 1024, N = 1536, K = 576;
	float *a = ops->alloc((size_t)M * K * sizeof(float));
	float *b = ops->alloc((size_t)K * N * sizeof(float));
	float *c = ops->alloc((size_t)M * N * sizeof(float));
	if (!a || !b || !c) {
		ops->free(a);
		ops->free(b);
		ops->free(c);
		return 0;
	}
	struct rng r;
	rng_seed(&r, 1, 99);
	for (size_t i = 0; i < (size_t)M * K; i++)
		a[i] = rng_uniform_f(&r) - 0.5f;
	for (size_t i = 0; i < (size_t)K * N; i++)
		b[i] = rng_uniform_f(&r) - 0.5f;
	unsigned fl = bf16 ? OPS_BF16 : 0;
	for (int i = 0; i < 3; i++)
		ops->matmul(c, a, b, M, N, K, fl, 1.0f, 0.0f);
	double best = 0;
	for (int rep = 0; rep < 5; rep++) {
		double t0 = time_monotonic();
		for (int i = 0; i < 10; i++)
			ops->matmul(c, a, b, M, N, K, fl, 1.0f, 0.0f);
		double dt = time_monotonic() - t0;
		double g = 10.0 * 2.0 * M * N * K / dt / 1e9;
		if (g > best)
			best = g;
	}
	ops->free(a);
	ops->free(b);
	ops->free(c);
	return best;
}

int bench_train(const struct cli *cli, int argc, char **argv)
{
	(void)cli;
	const char *model_path = "models/SmolLM2-135M-Instruct.Q4_1.gguf", *method = "lora";
	const char *precision = "fp32";
	int64_t B = 4, T = 256, steps = 5, warmup = 2, threads = 2;
	static const char *const opts[] = {"--model", "--method", "--batch", "--seq", "--steps",
					   "--warmup", "--threads", "--precision", "--mode", NULL};
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (cli_is_help(a)) {
			cli_print_usage(cli_find("bench"), stdout);
			return 0;
		}
		if (i + 1 >= argc)
			return cli_usage_error("bench", opts, "option '%s' needs a value", a);
		const char *v = argv[++i];
		int64_t *num = strcmp(a, "--batch") == 0	? &B
			       : strcmp(a, "--seq") == 0	? &T
			       : strcmp(a, "--steps") == 0	? &steps
			       : strcmp(a, "--warmup") == 0	? &warmup
			       : strcmp(a, "--threads") == 0 ? &threads
							       : NULL;
		if (num) {
			if (!parse_i64(v, num) || *num < (num == &warmup ? 0 : 1) || *num > 65536)
				return cli_usage_error("bench", NULL, "%s: expected a positive integer, got '%s'",
						       a, v);
		} else if (strcmp(a, "--model") == 0) {
			model_path = v;
		} else if (strcmp(a, "--method") == 0) {
			method = v;
		} else if (strcmp(a, "--precision") == 0) {
			precision = v;
		} else if (strcmp(a, "--mode") != 0) {
			return cli_usage_error("bench", opts, "unknown option '%s'", a);
		}
	}
	static const char *const methods[] = {"lora", "lora-all", "full", NULL};
	if (strcmp(method, "lora") && strcmp(method, "lora-all") && strcmp(method, "full"))
		return cli_usage_error("bench", methods, "unknown method '%s'", method);
	if (strcmp(precision, "fp32") && strcmp(precision, "bf16"))
		return cli_usage_error("bench", NULL, "--precision: fp32 or bf16");
	bool bf16 = strcmp(precision, "bf16") == 0;
	omp_set_num_threads((int)threads);

	struct diag d;
	diag_init(&d);
	struct model_file *mf = NULL;
	struct model *m = NULL;
	int32_t *tok = NULL, *tgt = NULL;
	int rc = model_file_load(&mf, model_path, &d);
	if (rc)
		goto done;
	static const char *const qv[] = {"q_proj", "v_proj"};
	struct model_opts o = {.method = strcmp(method, "full") == 0 ? METHOD_FULL : METHOD_LORA,
			       .lora_rank = 8, .lora_alpha = 16, .targets = qv, .n_targets = 2,
			       .all_linear = strcmp(method, "lora-all") == 0, .layers_first = -1,
			       .layers_last = -1, .precision = bf16 ? PRECISION_BF16 : PRECISION_FP32,
			       .max_batch = (int)B, .max_seq = (int)T, .seed = 1,
			       .ops = ops_cpu()};
	if ((rc = model_create(&m, mf, &o, &d)) != 0)
		goto done;
	const int V = mf->hp.n_vocab;
	tok = malloc((size_t)(B * T) * sizeof(int32_t));
	tgt = malloc((size_t)(B * T) * sizeof(int32_t));
	if (!tok || !tgt) {
		rc = diag_set(&d, FT_ENOMEM, "", 0, 0, "out of memory");
		goto done;
	}
	struct rng r;
	rng_seed(&r, 7, 0);
	for (int64_t i = 0; i < B * T; i++)
		tok[i] = (int32_t)rng_below(&r, (uint64_t)V);
	for (int64_t i = 0; i < B * T; i++)
		tgt[i] = (i + 1) % T ? tok[i + 1] : (int32_t)rng_below(&r, (uint64_t)V);
	size_t n = model_n_trainable(m), total = 0;
	struct optim_param *op = calloc(n, sizeof(*op));
	for (size_t i = 0; i < n; i++)
		total += model_trainable(m, i)->numel;
	float *mv = calloc(2 * total, sizeof(float));
	if (!op || !mv) {
		free(op);
		free(mv);
		rc = diag_set(&d, FT_ENOMEM, "", 0, 0, "out of memory for optimizer state");
		goto done;
	}
	float *q = mv;
	for (size_t i = 0; i < n; i++) {
		const struct model_param *p = model_trainable(m, i);
		op[i] = (struct optim_param){p->data, p->grad, q, q + p->numel, p->numel,
					     p->shape[0] > 1 && p->shape[1] > 1};
		q += 2 * p->numel;
	}
	double peak = gemm_peak(ops_cpu(), bf16);
	double t_sum = 0, loss_last = 0;
	struct adamw_hp hp = {.lr = 1e-4, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
			      .weight_decay = 0.0};
	for (int64_t s = 0; s < warmup + steps && rc == 0; s++) {
		double t0 = time_monotonic();
		model_zero_grad(m);
		float loss;
		long nt;
		rc = model_forward(m, tok, tgt, (int)B, (int)T, &loss, &nt);
		if (rc == 0)
			rc = model_backward(m, 0.0f);
		if (rc) {
			diag_set(&d, rc, "", 0, 0, "training step failed");
			break;
		}
		double norm = grad_global_norm(op, n);
		grad_clip(op, n, norm, 1.0);
		adamw_step(op, n, &hp, s + 1);
		double dt = time_monotonic() - t0;
		if (s >= warmup)
			t_sum += dt;
		loss_last = loss;
	}
	free(op);
	free(mv);
	if (rc)
		goto done;
	double tps = (double)(B * T) * (double)steps / t_sum;
	double flops = model_flops_per_token(m, (int)T);
	double mfu = peak > 0 ? flops * tps / (peak * 1e9) : 0;
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	struct model_memory mm = model_memory(m);
	printf("train %-8s %s B=%lld T=%lld threads=%lld: %.0f tokens/s, step %.3f s, "
	       "%.2f GFLOP/token, MFU %.1f%% of a %.0f GFLOP/s GEMM peak, peak RSS %.0f MiB "
	       "(params %.0f, grads %.0f, activations %.0f MiB), trainable %zu, loss %.3f\n",
	       method, precision, (long long)B, (long long)T, (long long)threads, tps,
	       t_sum / (double)steps, flops / 1e9, 100.0 * mfu, peak, (double)ru.ru_maxrss / 1024.0,
	       (double)mm.params / 1048576.0, (double)mm.grads / 1048576.0,
	       (double)mm.acts / 1048576.0, total, loss_last);
done:
	free(tok);
	free(tgt);
	model_free(m);
	model_file_free(mf);
	return rc ? cli_fail(&d) : 0;
}
