/* peft_cpu: the CPU ops of the PEFT methods beyond LoRA: per-column scaling (DoRA's
 * magnitude, IA3's vectors) with its backward, and DoRA's row norms. Every reduction has a
 * fixed order that does not depend on the thread count. */
#include "backends/native/ops/cpu/ops_cpu_internal.h"

#include <math.h>

#include "backends/native/ops/ops.h"
#include "common/banned.h"

void ops_cpu_col_mul(float *out, const float *x, const float *s, int rows, int cols, bool acc)
{
#pragma omp parallel for schedule(static) if ((size_t)rows * cols > 65536)
	for (int r = 0; r < rows; r++) {
		float *o = out + (size_t)r * cols;
		const float *xr = x + (size_t)r * cols;
		if (acc) {
			OPS_SIMD
			for (int c = 0; c < cols; c++)
				o[c] += xr[c] * s[c];
		} else {
			OPS_SIMD
			for (int c = 0; c < cols; c++)
				o[c] = xr[c] * s[c];
		}
	}
}

void ops_cpu_col_mul_backward(float *ds, const float *dout, const float *x, const float *w,
			      int rows, int cols)
{
	/* column blocks in parallel; each column's sum runs over the rows in order */
#pragma omp parallel for schedule(static) if ((size_t)rows * cols > 65536)
	for (int j0 = 0; j0 < cols; j0 += 64) {
		int j1 = j0 + 64 < cols ? j0 + 64 : cols;
		float acc[64] = {0};
		for (int r = 0; r < rows; r++) {
			const float *d = dout + (size_t)r * cols, *xr = x + (size_t)r * cols;
			for (int j = j0; j < j1; j++)
				acc[j - j0] += d[j] * xr[j];
		}
		for (int j = j0; j < j1; j++)
			ds[j] += w ? w[j] * acc[j - j0] : acc[j - j0];
	}
}

void ops_cpu_dora_scale(float *g, float *inv_norm, const float *m, const float *w, int rows,
			int cols)
{
#pragma omp parallel for schedule(static) if ((size_t)rows * cols > 65536)
	for (int r = 0; r < rows; r++)
		ops_dora_row(&g[r], &inv_norm[r], m[r], w + (size_t)r * cols, cols);
}
