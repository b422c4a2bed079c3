/* cuda_backend: backend_cuda(), the native engine on the CUDA ops table. It probes for
 * a CUDA device of compute capability 8.0+; a run would record the device (name,
 * capability, memory, driver and runtime versions) as "device" events in the run's
 * provenance. Runs are declined for now (CUDA_RUN_GAP below); without a device the
 * reason is the probe's. */
#include <stdio.h>

#include "backends/backend.h"
#include "backends/native/ops/cuda/ops_cuda.h"

/* Why a present device still cannot train: the CUDA ops table is complete and checked by
 * `ftlab selftest --backend cuda`, but the trainer keeps AdamW moments and clips gradients
 * in host memory and the evaluator reads logits from host memory, so a run would touch
 * device pointers from the CPU. Until those move onto the ops table, CUDA declines runs
 * (auto falls back to the CPU) instead of crashing. */
#define CUDA_RUN_GAP                                                                      \
	"training on CUDA is not wired yet (the optimizer state and the evaluation read "  \
	"host memory); the ops are checked by 'ftlab selftest --backend cuda' (docs/cuda.md)"

static bool cuda_available(char *why, size_t why_len)
{
	if (ops_cuda_probe(NULL, why, why_len) != 0)
		return false;
	snprintf(why, why_len, "%s", CUDA_RUN_GAP);
	return false;
}

static int cuda_run(const struct run_ctx *ctx, struct diag *d)
{
	char why[512] = "";
	struct ops_cuda_device dev;
	if (ops_cuda_probe(&dev, why, sizeof why) != 0)
		return diag_set(d, FT_EUNSUPP, NULL, 0, 0, "%s", why);
	char line[600];
	ops_cuda_describe(line, sizeof line, &dev);
	if (ctx->sink && ctx->sink->event) {
		int rc = ctx->sink->event(ctx->sink->ud, "info", "device", line);
		if (rc)
			return diag_set(d, rc, NULL, 0, 0, "could not record the CUDA device");
	}
	return diag_set(d, FT_EUNSUPP, NULL, 0, 0, "%s", CUDA_RUN_GAP);
}

static const struct backend cuda_backend = {"cuda", cuda_available, cuda_run};

const struct backend *backend_cuda(void)
{
	return &cuda_backend;
}
