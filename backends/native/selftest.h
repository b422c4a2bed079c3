/* selftest: the checks behind `ftlab selftest`, callable with any table that claims to be
 * the CUDA backend (ops_cuda(), or the CPU emulation of its kernels in the unit tests).
 * Results go to stdout, one line per check with the error and its tolerance. */
#ifndef FTLAB_SELFTEST_H
#define FTLAB_SELFTEST_H

#include <stdbool.h>

#include "common/diag.h"

struct ops;

struct selftest_target {
	const struct ops *ops;
	void (*set_tf32)(bool on);         /* TF32 matmuls on/off */
	int (*check)(struct diag *d);      /* the backend's first recorded error, or 0 */
};

/* The CPU backend against finite differences and a double-precision AdamW step. */
int selftest_cpu(bool *ok, struct diag *d) FT_WUR;
/* t against the CPU backend: tiny models (forward, backward, one AdamW step) with TF32 on
 * and off and bf16 matmuls, and attention op by op. *ok false when a tolerance is missed;
 * the return is non-zero when the backend itself failed (message in d). */
int selftest_against_cpu(const struct selftest_target *t, bool *ok, struct diag *d) FT_WUR;

#endif
