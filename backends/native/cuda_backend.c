/* cuda_backend: backend_cuda(), the native engine on the CUDA ops table. Available when
 * a CUDA device of compute capability 8.0+ answers; a run records the device (name,
 * capability, memory, driver and runtime versions) as "device" events in the run's
 * provenance, then trains with the shared native engine, which picks its ops with
 * ops_get(cfg backend type) ("cuda" here). Without a device the run is FT_EUNSUPP. */
#include <stdio.h>

#include "backends/backend.h"
#include "backends/native/ops/cuda/ops_cuda.h"

static bool cuda_available(char *why, size_t why_len)
{
	return ops_cuda_probe(NULL, why, why_len) == 0;
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
	const struct backend *native = backend_cpu();
	return native->run(ctx, d);
}

static const struct backend cuda_backend = {"cuda", cuda_available, cuda_run};

const struct backend *backend_cuda(void)
{
	return &cuda_backend;
}
