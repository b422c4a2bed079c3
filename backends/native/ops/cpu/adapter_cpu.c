/* adapter_cpu: the CPU backend's ops for bottleneck adapters: the element-wise
 * non-linearity between the down- and up-projection (ops_act) and its backward.
 * Element-wise, so every thread count gives the same bits. */
#include <stddef.h>

#include "backends/native/ops/cpu/ops_cpu_internal.h"
#include "backends/native/ops/ops_math.h"
#include "common/banned.h"

void ops_cpu_act_forward(float *out, const float *x, size_t n, int kind)
{
#pragma omp parallel for schedule(static) if (n > 16384)
	for (size_t i = 0; i < n; i++)
		out[i] = ops_act(kind, x[i]);
}

void ops_cpu_act_backward(float *dx, const float *dout, const float *x, size_t n, int kind)
{
#pragma omp parallel for schedule(static) if (n > 16384)
	for (size_t i = 0; i < n; i++)
		dx[i] = dout[i] * ops_act_grad(kind, x[i]);
}
