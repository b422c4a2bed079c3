/* ops_cuda_internal: the seam between ops_cuda.cu (nvcc, C++) and ops_cuda.c (C): the
 * .cu side has no diag, the .c side has no CUDA headers. Only those two files use it. */
#ifndef FTLAB_OPS_CUDA_INTERNAL_H
#define FTLAB_OPS_CUDA_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "backends/native/ops/cuda/ops_cuda.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ops_cuda_probe without caching: 0 or FT_EUNSUPP with why. */
int ops_cuda_impl_probe(struct ops_cuda_device *out, int index, char *why, size_t why_len);
/* Starts cuBLAS on device index and returns the table (NULL and a recorded error on
 * failure). Only the first call chooses the device. */
const struct ops *ops_cuda_impl_table(int index);
/* Synchronises the device; copies the first recorded error (if any) into msg and returns
 * 0 (none), 1 (an error) or 2 (out of memory). */
int ops_cuda_impl_error(char *msg, size_t msg_len);
void ops_cuda_impl_set_tf32(bool on);
void ops_cuda_impl_mem(size_t *alloc_bytes, size_t *alloc_peak, size_t *scratch_bytes);
/* Peak of allocations + scratch, and cudaMemGetInfo's used and total (0 when not started). */
void ops_cuda_impl_mem_peak(size_t *peak_bytes, size_t *device_used, size_t *device_total);
void ops_cuda_impl_mem_reset_peak(void);
/* ops_cuda_measure_peaks on the started table: 0, or 1 with why filled (an error is also
 * recorded for ops_cuda_impl_error). */
int ops_cuda_impl_peaks(double *bf16_tflops, double *tf32_tflops, double *copy_gbs, char *why,
			size_t why_len);

#ifdef __cplusplus
}
#endif

#endif
