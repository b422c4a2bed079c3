/* optim: AdamW with decoupled weight decay (PyTorch's torch.optim.AdamW update), SGD with
 * momentum, dampening, Nesterov and L2 weight decay (torch.optim.SGD), learning
 * rate schedules (constant/linear/cosine with warmup and a floor, as transformers'
 * schedulers), and the global gradient norm with clipping, over fp32 arrays in the memory of
 * an ops table (the *_ops forms: device memory for cuda, touched only through the table) or
 * in host memory (the plain forms, which are the *_ops forms on ops_cpu(): the same bits).
 * Which parameters train and where gradients come from is the caller's business. */
#ifndef FTLAB_TRAIN_OPTIM_H
#define FTLAB_TRAIN_OPTIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "schema/config.h"

struct ops;

/* One trainable tensor as the optimizer sees it. m and v are the caller's fp32 moment
 * buffers of numel elements (zeroed before the first step); SGD uses m as its momentum
 * buffer and never touches v (which may be NULL). decay: apply weight decay
 * (the trainer decays matrices and not 1-D tensors such as norms and biases, as the
 * Hugging Face Trainer does). */
struct optim_param {
	float *data;
	const float *grad;
	float *m, *v;
	size_t numel;
	bool decay;
};

struct adamw_hp {
	double lr;           /* learning rate for this step (after the schedule) */
	double beta1, beta2, eps, weight_decay;
};

/* One AdamW update of every parameter. t is the 1-based step count after this update
 * (bias corrections use beta^t). Elementwise, so it is deterministic at any thread count. */
void adamw_step(struct optim_param *params, size_t n, const struct adamw_hp *hp, int64_t t);

struct sgd_hp {
	double lr;           /* learning rate for this step (after the schedule) */
	double momentum, dampening, weight_decay;
	bool nesterov;
};

/* One SGD update of every parameter. t is the 1-based count of applied updates: at t == 1
 * the momentum buffer is set to the step's gradient (torch's first step), later it is
 * updated. */
void sgd_step(struct optim_param *params, size_t n, const struct sgd_hp *hp, int64_t t);

/* The multiplier on the peak learning rate for optimizer step `step` (0-based) of
 * `total`: linear warmup from 0 over warmup_steps, then constant, linear or cosine decay
 * towards min_ratio (transformers' schedules; min_ratio 0 gives their exact curves). */
double lr_schedule_factor(enum schedule_type type, int64_t step, int64_t total,
			  int64_t warmup_steps, double min_ratio);

/* Global L2 norm of all gradients, accumulated in double in a fixed order (fixed-size
 * blocks summed left to right), so it is bit-identical at any thread count. */
double grad_global_norm(const struct optim_param *params, size_t n);

/* Scales every gradient by min(1, max_norm / (norm + 1e-6)) like
 * torch.nn.utils.clip_grad_norm_; returns the scale applied. max_norm <= 0: no clipping.
 * Gradients are written through params[i].grad cast to mutable: the caller owns them. */
double grad_clip(struct optim_param *params, size_t n, double norm, double max_norm);

/* The same on memory of `ops` (ops->adamw, ops->sgd, ops->sumsq per ops->sumsq_chunk,
 * ops->scale): data, grad, m and v are that backend's memory. */
void adamw_step_ops(const struct ops *ops, struct optim_param *params, size_t n,
		    const struct adamw_hp *hp, int64_t t);
void sgd_step_ops(const struct ops *ops, struct optim_param *params, size_t n,
		  const struct sgd_hp *hp, int64_t t);
double grad_global_norm_ops(const struct ops *ops, const struct optim_param *params, size_t n);
double grad_clip_ops(const struct ops *ops, struct optim_param *params, size_t n, double norm,
		     double max_norm);

#endif
