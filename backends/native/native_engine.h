/* native_engine: the native engine's run of one sweep point on a given ops table, shared
 * by backend_cpu() (ops_cpu) and backend_cuda() (the CUDA table). Everything the model,
 * trainer and evaluator hand to the table is that backend's memory; the host reads and
 * writes it only through ops->to_host/to_device, so the same code runs on either. */
#ifndef FTLAB_NATIVE_ENGINE_H
#define FTLAB_NATIVE_ENGINE_H

#include "backends/backend.h"
#include "common/diag.h"

#include "schema/config.h"

struct ops;
struct model_opts;

/* The model options of a run of cfg: method (METHOD_NONE for the base model of an
 * evaluation), LoRA and freeze settings, precision, seed, and the activation plan. */
void native_model_opts(struct model_opts *o, const struct config *cfg, int max_batch,
		       int max_seq, enum method_type method, const struct ops *ops);

/* check (may be NULL): the backend's deferred error check (ops_cuda_check), called once per
 * optimizer step and after each evaluation; non-zero ends the run with its message in d. */
int native_engine_run(const struct run_ctx *ctx, const struct ops *ops,
		      int (*check)(struct diag *d), struct diag *d) FT_WUR;

#endif
