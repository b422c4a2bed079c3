/* optim: AdamW, learning-rate schedules and gradient clipping (see optim.h). The update
 * order follows torch.optim.AdamW (decay, moments, bias-corrected step) so that our
 * trajectories match PyTorch's to float rounding. */
#include "backends/native/train/optim.h"

#include <math.h>
#include <stdlib.h>

#define NORM_BLOCK 16384

void adamw_step(struct optim_param *params, size_t n, const struct adamw_hp *hp, int64_t t)
{
	const double bc1 = 1.0 - pow(hp->beta1, (double)t);
	const double bc2 = 1.0 - pow(hp->beta2, (double)t);
	const float b1 = (float)hp->beta1, b2 = (float)hp->beta2;
	const float step_size = (float)(hp->lr / bc1);
	const float bc2_sqrt = (float)sqrt(bc2);
	const float eps = (float)hp->eps;
	for (size_t k = 0; k < n; k++) {
		struct optim_param *p = &params[k];
		const float decay = p->decay ? (float)(1.0 - hp->lr * hp->weight_decay) : 1.0f;
		float *w = p->data, *m = p->m, *v = p->v;
		const float *g = p->grad;
		const long long numel = (long long)p->numel;
#pragma omp parallel for schedule(static) if (numel > 65536)
		for (long long i = 0; i < numel; i++) {
			float gi = g[i];
			float wi = w[i] * decay;
			/* torch: exp_avg.lerp_(grad, 1 - beta1) */
			float mi = m[i] + (1.0f - b1) * (gi - m[i]);
			float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
			m[i] = mi;
			v[i] = vi;
			float denom = sqrtf(vi) / bc2_sqrt + eps;
			w[i] = wi - step_size * (mi / denom);
		}
	}
}

double lr_schedule_factor(enum schedule_type type, int64_t step, int64_t total,
			  int64_t warmup_steps, double min_ratio)
{
	if (warmup_steps > 0 && step < warmup_steps)
		return (double)step / (double)warmup_steps;
	if (type == SCHEDULE_CONSTANT)
		return 1.0;
	int64_t span = total - warmup_steps;
	if (span <= 0)
		return 1.0;
	double progress = (double)(step - warmup_steps) / (double)span;
	if (progress > 1.0)
		progress = 1.0;
	double f;
	if (type == SCHEDULE_LINEAR)
		f = 1.0 - progress;
	else
		f = 0.5 * (1.0 + cos(M_PI * progress));
	return min_ratio + (1.0 - min_ratio) * f;
}

double grad_global_norm(const struct optim_param *params, size_t n)
{
	double total = 0.0;
	for (size_t k = 0; k < n; k++) {
		const float *g = params[k].grad;
		size_t numel = params[k].numel;
		size_t nblocks = (numel + NORM_BLOCK - 1) / NORM_BLOCK;
		if (nblocks <= 1) {
			double s = 0.0;
			for (size_t i = 0; i < numel; i++)
				s += (double)g[i] * (double)g[i];
			total += s;
			continue;
		}
		/* Per-block partials in parallel, summed in block order. */
		double partial_stack[64];
		double *partial = partial_stack;
		double *heap = NULL;
		if (nblocks > sizeof(partial_stack) / sizeof(partial_stack[0])) {
			heap = malloc(nblocks * sizeof(double));
			if (!heap)
				return NAN;
			partial = heap;
		}
#pragma omp parallel for schedule(static)
		for (long long b = 0; b < (long long)nblocks; b++) {
			size_t lo = (size_t)b * NORM_BLOCK;
			size_t hi = lo + NORM_BLOCK < numel ? lo + NORM_BLOCK : numel;
			double s = 0.0;
			for (size_t i = lo; i < hi; i++)
				s += (double)g[i] * (double)g[i];
			partial[b] = s;
		}
		for (size_t b = 0; b < nblocks; b++)
			total += partial[b];
		free(heap);
	}
	return sqrt(total);
}

double grad_clip(struct optim_param *params, size_t n, double norm, double max_norm)
{
	if (max_norm <= 0.0 || !isfinite(norm))
		return 1.0;
	double coef = max_norm / (norm + 1e-6);
	if (coef >= 1.0)
		return 1.0;
	const float c = (float)coef;
	for (size_t k = 0; k < n; k++) {
		float *g = (float *)params[k].grad;
		const long long numel = (long long)params[k].numel;
#pragma omp parallel for schedule(static) if (numel > 65536)
		for (long long i = 0; i < numel; i++)
			g[i] *= c;
	}
	return coef;
}
