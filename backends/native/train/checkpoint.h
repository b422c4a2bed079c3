/* checkpoint: resumable training state under RUN_DIR/checkpoint/step-NNNNNNNNN/:
 * state.safetensors (trainable weights and AdamW moments, fp32) and meta.json (step,
 * schedule position, RNG states, data cursor, early-stopping and non-finite counters,
 * config and data hashes, the sha256 of state.safetensors). Written into a temporary
 * directory, fsynced, renamed; the newest that verifies is loaded, so a truncated or
 * corrupted newest checkpoint falls back to the previous one. */
#ifndef FTLAB_TRAIN_CHECKPOINT_H
#define FTLAB_TRAIN_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/diag.h"
#include "common/rng.h"

#define CKPT_MAX_RNG 4
#define CKPT_KEEP 2 /* checkpoints kept on disk (the newest and its predecessor) */

struct ops;

/* A named fp32 buffer saved and restored in place (weights, m, v). With ops, data is that
 * backend's memory, read through ops->to_host and written through ops->to_device; NULL:
 * host memory. */
struct ckpt_tensor {
	const char *name;
	float *data;
	size_t numel;
	const struct ops *ops;
};

struct ckpt_state {
	int64_t step;             /* optimizer steps completed */
	int64_t tokens;           /* training tokens consumed so far */
	int64_t skipped;          /* steps skipped by the non-finite policy (AdamW's t excludes them) */
	uint64_t model_rng;       /* the model's dropout counter (model_rng_counter) */
	int n_rng;
	struct rng rng[CKPT_MAX_RNG];
	unsigned char *cursor;    /* the data iterator's saved cursor (owned; free()) */
	size_t cursor_len;
	double best_metric;       /* early stopping: best validation value so far */
	int64_t bad_evals;        /* early stopping: evaluations without improvement */
	int64_t nonfinite_streak; /* consecutive skipped steps */
	char config_hash[65];
	char data_hash[65];
};

/* Saves a checkpoint for st->step under ckpt_dir (created when absent) and removes all
 * but the newest CKPT_KEEP. *out_path (may be NULL) receives the final directory
 * (caller frees). */
int ckpt_save(char **out_path, const char *ckpt_dir, const struct ckpt_state *st,
	      const struct ckpt_tensor *t, size_t n, struct diag *d) FT_WUR;

/* Loads the newest valid checkpoint: fills *st (st->cursor allocated) and the tensors in
 * place (each must be present with the same numel). Returns 0 and sets *found; *found is
 * false when there is no checkpoint at all. A checkpoint that does not verify is skipped
 * with a note appended to `notes` (may be NULL; caller frees). When the hashes in the
 * checkpoint differ from expect_config_hash/expect_data_hash (non-NULL), FT_EINVAL:
 * resume refuses a changed config or data. Tensors are untouched on any error. */
int ckpt_load(bool *found, struct ckpt_state *st, char **notes, const char *ckpt_dir,
	      const char *expect_config_hash, const char *expect_data_hash,
	      struct ckpt_tensor *t, size_t n, struct diag *d) FT_WUR;

void ckpt_state_clear(struct ckpt_state *st);

/* Calls fn for every trainable weight ("param/<name>", passed without the prefix) of the
 * newest checkpoint that verifies (for export of full/freeze runs). FT_EINVAL when there
 * is none; fn's non-zero return stops and is returned. */
int ckpt_read_params(const char *ckpt_dir,
		     int (*fn)(void *ud, const char *name, const float *data, size_t numel),
		     void *ud, struct diag *d) FT_WUR;

#endif
