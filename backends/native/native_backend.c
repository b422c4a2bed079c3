/* native backend (placeholder): backend_cpu() exists so the runner can name it, but
 * reports itself unavailable until the C engine lands (the training work replaces this
 * file). backend_cuda() lives in cuda_backend.c. */
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

const struct backend *backend_cpu(void)
{
	return &cpu_backend;
}
