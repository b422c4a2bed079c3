/* optim: AdamW, SGD, learning-rate schedules and gradient clipping (see optim.h). The
 * update orders follow torch.optim.AdamW (decay, moments, bias-corrected step) and
 * torch.optim.SGD (L2 decay, momentum buffer, Nesterov, step) so that our trajectories
 * match PyTorch's to float rounding. */
#include "backends/native/train/optim.h"

#include <math.h>
#include <stdlib.h>

#include "backends/native/ops/ops.h"
#include "common/banned.h"

void adamw_step_ops(const struct ops *ops, struct optim_param *params, size_t n,
		    const struct adamw_hp *hp, int64_t t)
{
	const struct ops_adamw_hp dec = ops_adamw_prepare(hp->lr, hp->beta1, hp->beta2, hp->eps,
							  hp->weight_decay, (long)t);
	const struct ops_adamw_hp nodec = ops_adamw_prepare(hp->lr, hp->beta1, hp->beta2, hp->eps,
							    0.0, (long)t);
	for (size_t k = 0; k < n; k++) {
		struct optim_param *p = &params[k];
		ops->adamw(p->data, p->grad, p->m, p->v, p->numel, p->decay ? &dec : &nodec);
	}
}

void adamw_step(struct optim_param *params, size_t n, const struct adamw_hp *hp, int64_t t)
{
	adamw_step_ops(ops_cpu(), params, n, hp, t);
}

void sgd_step_ops(const struct ops *ops, struct optim_param *params, size_t n,
		  const struct sgd_hp *hp, int64_t t)
{
	const struct ops_sgd_hp dec = ops_sgd_prepare(hp->lr, hp->momentum, hp->dampening,
						      hp->weight_decay, hp->nesterov, t <= 1);
	const struct ops_sgd_hp nodec = ops_sgd_prepare(hp->lr, hp->momentum, hp->dampening, 0.0,
							hp->nesterov, t <= 1);
	for (size_t k = 0; k < n; k++) {
		struct optim_param *p = &params[k];
		ops->sgd(p->data, p->grad, p->m, p->numel, p->decay ? &dec : &nodec);
	}
}

void sgd_step(struct optim_param *params, size_t n, const struct sgd_hp *hp, int64_t t)
{
	sgd_step_ops(ops_cpu(), params, n, hp, t);
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

/* Chunks of ops->sumsq_chunk summed in order into one running total: ops->sumsq of a chunk
 * is deterministic (on cpu, chunks of 16384, each the plain sequential sum), so the
 * norm has the same bits on every run and at any thread count. */
double grad_global_norm_ops(const struct ops *ops, const struct optim_param *params, size_t n)
{
	double total = 0.0;
	for (size_t k = 0; k < n; k++) {
		const float *g = params[k].grad;
		size_t numel = params[k].numel, chunk = ops->sumsq_chunk ? ops->sumsq_chunk : numel;
		for (size_t lo = 0; lo < numel; lo += chunk)
			total += ops->sumsq(g + lo, numel - lo < chunk ? numel - lo : chunk);
	}
	return sqrt(total);
}

double grad_global_norm(const struct optim_param *params, size_t n)
{
	return grad_global_norm_ops(ops_cpu(), params, n);
}

double grad_clip_ops(const struct ops *ops, struct optim_param *params, size_t n, double norm,
		     double max_norm)
{
	if (max_norm <= 0.0 || !isfinite(norm))
		return 1.0;
	double coef = max_norm / (norm + 1e-6);
	if (coef >= 1.0)
		return 1.0;
	for (size_t k = 0; k < n; k++)
		ops->scale((float *)params[k].grad, (float)coef, params[k].numel);
	return coef;
}

double grad_clip(struct optim_param *params, size_t n, double norm, double max_norm)
{
	return grad_clip_ops(ops_cpu(), params, n, norm, max_norm);
}
