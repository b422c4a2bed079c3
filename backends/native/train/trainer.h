/* trainer: the step loop. Pulls micro-batches from a batch source, runs forward/backward
 * on the model with the loss averaged over the unmasked tokens of the whole accumulated
 * batch, clips, schedules, applies AdamW, applies the non-finite policy, validates and
 * early-stops, checkpoints, and resumes bit for bit. Where batches come from (data/) and
 * how validation is scored (eval/) are the caller's, through the callbacks below. */
#ifndef FTLAB_TRAIN_TRAINER_H
#define FTLAB_TRAIN_TRAINER_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backends/backend.h"
#include "common/diag.h"
#include "schema/config.h"

struct model;
struct pref_params;

/* Where training batches come from. next() fills tokens and targets (out_rows rows of
 * out_T tokens, row-major, targets < 0 masked) for at most max_rows rows of at most T
 * tokens; the source wraps around epochs itself. save()/restore() capture its position
 * (cursor and shuffle RNG) as opaque bytes for checkpoints. */
struct batch_source {
	void *ud;
	int T;        /* longest row */
	int (*next)(void *ud, int32_t *tokens, int32_t *targets, int max_rows, int *out_rows,
		    int *out_T, struct diag *d);
	int (*save)(void *ud, unsigned char **out, size_t *out_len);
	int (*restore)(void *ud, const unsigned char *p, size_t n, struct diag *d);
	/* Preference objectives call this instead of next(): at most max_pairs pairs as
	 * data_pair_rows lays them out (tokens, targets, comp: 2 * out_pairs rows of out_T),
	 * and, when the source holds them (*out_have_ref), each row's reference
	 * log-probability in ref (2 * out_pairs); otherwise the trainer computes the
	 * reference with the model's adapter off. */
	int (*next_pairs)(void *ud, int32_t *tokens, int32_t *targets, uint8_t *comp, double *ref,
			  int max_pairs, int *out_pairs, int *out_T, bool *out_have_ref,
			  struct diag *d);
};

/* Validation during training, every train.eval_every steps: the loss of the model on the
 * validation split, and the value of the metric early stopping watches (the name after
 * "validation." in train.early_stopping.metric; out_metric may equal the loss). May be
 * NULL when there is no validation split. */
struct validator {
	void *ud;
	int (*evaluate)(void *ud, struct model *m, double *out_loss, double *out_metric,
			struct diag *d);
};

struct trainer_opts {
	const struct config_train *train;   /* optimizer, schedule, batch, accumulation, ... */
	int64_t total_steps;                /* optimizer steps of the whole run (> 0) */
	const char *ckpt_dir;               /* NULL = no checkpoints */
	bool resume;                        /* continue from the newest valid checkpoint */
	const char *config_hash, *data_hash;
	volatile sig_atomic_t *stop;        /* polled before every step; may be NULL */
	struct run_sink *sink;              /* metrics, events, artifacts, progress; may be NULL */
	/* The backend's deferred error check (ops_cuda_check), once per step after the
	 * update; non-zero ends the run with its message in d. May be NULL. */
	int (*check)(struct diag *d);
	/* A preference objective (train/preference.h): batches come from next_pairs, each
	 * micro-batch holds train.batch_size pairs, and the step logs TRL's statistics
	 * (rewards/..., logps/...). NULL or OBJECTIVE_SFT: cross-entropy. */
	const struct pref_params *pref;
};

struct trainer_result {
	int64_t steps_done;     /* optimizer steps completed (including skipped ones) */
	int64_t resumed_from;   /* step of the loaded checkpoint, -1 when started fresh */
	double last_loss;       /* mean loss of the last step */
	double tokens_per_s;    /* tokens processed (rows x length) per second over this process's steps */
	bool early_stopped;
	int64_t skipped_steps;  /* non-finite steps skipped */
};

/* Trains until total_steps, early stopping, or *stop. 0 = finished (or early-stopped),
 * FT_EINTR = stopped after writing a checkpoint, FT_ERUN = the non-finite policy ended
 * the run (an event says why), other codes with the message in d. */
int trainer_run(struct trainer_result *out, struct model *m, const struct batch_source *src,
		const struct validator *val, const struct trainer_opts *o, struct diag *d) FT_WUR;

#endif
