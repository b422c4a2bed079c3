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
 * operands, attention statistics, reduction partials), current and peak bytes.
 * peak_bytes is the highest the two reached together (what a run needs on the device,
 * besides the CUDA context and cuBLAS's workspace); device_used and device_total are
 * cudaMemGetInfo's view of the whole device now (every process, context included);
 * both 0 before the table started or without CUDA. */
struct ops_cuda_mem {
	size_t alloc_bytes, alloc_peak, scratch_bytes;
	size_t peak_bytes;
	size_t device_used, device_total;
};
struct ops_cuda_mem ops_cuda_mem(void);
/* Starts the peaks afresh from what is allocated now (a run or a benchmark measures its
 * own peak in a process that did other work before). */
void ops_cuda_mem_reset_peak(void);
/* One line for logs: "peak 1.23 GiB (allocations 1.20, scratch 0.03); device in use 2.01
 * of 139.8 GiB". */
void ops_cuda_mem_describe(char *out, size_t out_len, const struct ops_cuda_mem *m);

/* The device's limits, measured now (ftlab bench states speeds against them): dense
 * matrix products through cuBLAS on random data (M = N = K = 8192, fp32 accumulation;
 * the best of several timed repetitions after a warm-up, timed with CUDA events) and the
 * device-to-device copy bandwidth (bytes read plus bytes written, 256 MiB copies). */
struct ops_cuda_peaks {
	double bf16_tflops; /* bf16 operands and result */
	double tf32_tflops; /* fp32 operands and result on TF32 tensor cores */
	double copy_gbs;    /* GB/s */
};
/* Starts the table if needed. 0, or FT_EUNSUPP (no device, no CUDA in this build) /
 * FT_EIO / FT_ENOMEM with the reason in d. */
int ops_cuda_measure_peaks(struct ops_cuda_peaks *out, struct diag *d) FT_WUR;

#endif
