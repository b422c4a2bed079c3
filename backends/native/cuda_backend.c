/* cuda_backend: backend_cuda(), the native engine (native_engine_run) on the CUDA ops
 * table. It probes for a CUDA device of compute capability 8.0+; a run records the device
 * (name, capability, memory, driver and runtime versions) as an info event of kind
 * "device" in the run's provenance, then trains and evaluates exactly as the CPU backend
 * does, checking the device for deferred CUDA/cuBLAS errors once per optimizer step and
 * after each evaluated split; a finished run records the peak device memory it used as an
 * info event of kind "device_memory". Without a device, `available` gives the probe's
 * reason. */
#include <stdio.h>

#include "backends/backend.h"
#include "backends/native/native_engine.h"
#include "backends/native/ops/cuda/ops_cuda.h"
#include "common/banned.h"

static bool cuda_available(char *why, size_t why_len)
{
	return ops_cuda_probe(NULL, why, why_len) == 0;
}

static int cuda_run(const struct run_ctx *ctx, struct diag *d)
{
	char why[512] = "";
	struct ops_cuda_device dev;
	if (ops_cuda_select(ctx->cfg ? ctx->cfg->backend.device : 0, &dev, why, sizeof why) != 0)
		return diag_set(d, FT_EUNSUPP, NULL, 0, 0, "%s", why);
	const struct ops *ops = ops_cuda();
	if (!ops)
		return diag_set(d, FT_EUNSUPP, NULL, 0, 0,
				"the CUDA device was found but its ops table could not start "
				"(cuBLAS initialisation failed)");
	char line[600];
	ops_cuda_describe(line, sizeof line, &dev);
	ops_cuda_mem_reset_peak();
	if (ctx->sink && ctx->sink->event) {
		int rc = ctx->sink->event(ctx->sink->ud, "info", "device", line);
		if (rc)
			return diag_set(d, rc, NULL, 0, 0, "could not record the CUDA device");
	}
	int rc = native_engine_run(ctx, ops, ops_cuda_check, d);
	if (rc == 0)
		rc = ops_cuda_check(d);
	if (rc == 0 && ctx->sink && ctx->sink->event) {
		struct ops_cuda_mem mem = ops_cuda_mem();
		ops_cuda_mem_describe(line, sizeof line, &mem);
		rc = ctx->sink->event(ctx->sink->ud, "info", "device_memory", line);
		if (rc)
			rc = diag_set(d, rc, NULL, 0, 0, "could not record the device memory");
	}
	return rc;
}

static const struct backend cuda_backend = {BACKEND_CUDA, cuda_available, cuda_run};

const struct backend *backend_cuda(void)
{
	return &cuda_backend;
}
