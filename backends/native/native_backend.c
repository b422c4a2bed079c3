/* native backends (placeholder): backend_cpu() and backend_cuda() exist so the runner can
 * name them, but report themselves unavailable until the C engine lands (the training
 * work replaces this file). */
#include <stdio.h>

#include "backends/backend.h"

static bool native_available(char *why, size_t why_len)
{
	if (why && why_len)
		snprintf(why, why_len, "native engine not built yet");
	return false;
}

static int native_run(const struct run_ctx *ctx, struct diag *d)
{
	(void)ctx;
	return diag_set(d, FT_EUNSUPP, "", 0, 0, "native engine not built yet");
}

static const struct backend cpu_backend = {"cpu", native_available, native_run};
static const struct backend cuda_backend = {"cuda", native_available, native_run};

const struct backend *backend_cpu(void)
{
	return &cpu_backend;
}

const struct backend *backend_cuda(void)
{
	return &cuda_backend;
}
