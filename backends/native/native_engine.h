/* native_engine: the native engine's run of one sweep point on a given ops table, shared
 * by backend_cpu() (ops_cpu) and backend_cuda() (the CUDA table). Everything the model,
 * trainer and evaluator hand to the table is that backend's memory; the host reads and
 * writes it only through ops->to_host/to_device, so the same code runs on either. */
#ifndef FTLAB_NATIVE_ENGINE_H
#define FTLAB_NATIVE_ENGINE_H

#include "backends/backend.h"
#include "common/diag.h"

struct ops;

/* check (may be NULL): the backend's deferred error check (ops_cuda_check), called once per
 * optimizer step and after each evaluation; non-zero ends the run with its message in d. */
int native_engine_run(const struct run_ctx *ctx, const struct ops *ops,
		      int (*check)(struct diag *d), struct diag *d) FT_WUR;

#endif
