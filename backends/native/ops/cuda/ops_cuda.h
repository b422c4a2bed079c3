/* ops_cuda: the CUDA backend's table (cuBLAS for matmuls, own kernels for the rest) and
 * device queries. Plain C; compiled everywhere: without CUDA support in the build (no
 * nvcc, SAN=1, fuzzers) every function reports "not built with CUDA" and ops_cuda() is
 * NULL, so callers need no #ifdef. Works without a driver: the probe reports the error. */
#ifndef FTLAB_OPS_CUDA_H
#define FTLAB_OPS_CUDA_H

#include <stdbool.h>
#include <stddef.h>

#include "common/diag.h"

struct ops;

/* What the run's provenance records about the device. */
struct ops_cuda_device {
	int index;             /* device ordinal used (backend.device; 0 by default) */
	int count;             /* devices visible */
	char name[256];        /* "NVIDIA H100 80GB HBM3" */
	int cc_major, cc_minor; /* compute capability */
	size_t total_mem, free_mem; /* bytes */
	int driver_version;    /* cudaDriverGetVersion: 12040 = 12.4 */
	int runtime_version;   /* cudaRuntimeGetVersion */
	int sm_count;
};

/* True when this binary was built with CUDA support. */
bool ops_cuda_built(void);
/* Fills out for the selected device (0 unless ops_cuda_select chose another). 0 when a usable device (compute capability 8.0+) exists;
 * otherwise FT_EUNSUPP with why = "no CUDA device: <cudaGetErrorString>" (or "this
 * build has no CUDA support", or the capability it found). Cheap after the first call. */
int ops_cuda_probe(struct ops_cuda_device *out, char *why, size_t why_len) FT_WUR;
/* Makes device `index` (an ordinal among the visible devices) the one this process uses,
 * then probes it as ops_cuda_probe does. Call before the first ops_cuda(): once the table
 * has started on one device, asking for another is FT_EUNSUPP with why saying so. */
int ops_cuda_select(int index, struct ops_cuda_device *out, char *why, size_t why_len) FT_WUR;
/* The table, or NULL when ops_cuda_probe fails or cuBLAS cannot start. */
const struct ops *ops_cuda(void);

/* One line for logs and provenance: "NVIDIA H100 80GB HBM3, compute capability 9.0,
 * 132 SMs, 79.1 GiB (78.5 free), driver 12.4, runtime 13.0". */
void ops_cuda_describe(char *out, size_t out_len, const struct ops_cuda_device *dev);

/* The ops table cannot return errors, so the backend records the first failed CUDA or
 * cuBLAS call (call text, error name and message, file:line; for allocation failures
 * the bytes asked for and free). The step loop calls this once per step (it syncs the
 * device): 0 when nothing failed, else FT_EIO (FT_ENOMEM for out of memory) into d. */
int ops_cuda_check(struct diag *d) FT_WUR;
/* TF32 tensor cores for fp32 matmuls (default on; FTLAB_CUDA_TF32=0 turns it off). */
void ops_cuda_set_tf32(bool on);
/* Device memory the backend holds: through ops->alloc, and its own scratch (bf16
 * operands, attention statistics, reduction partials), current and peak bytes. */
struct ops_cuda_mem {
	size_t alloc_bytes, alloc_peak, scratch_bytes;
};
struct ops_cuda_mem ops_cuda_mem(void);

#endif
