/* plan: what `ftlab plan` shows for each sweep point, shared with run and ci: the run id
 * and the status the store knows. */
#ifndef FTLAB_PLAN_H
#define FTLAB_PLAN_H

#include "common/diag.h"

/* The status of run `identity_hex` of experiment `experiment` in the store of
 * `workspace`: "new" when the store has no such run, else its status ("finished",
 * "failed", ..., "cached" when a finished run would be reused). *out is a static string.
 * Returns 0 or an FT_E* code with d set. Without a store in the workspace: "new". */
int plan_lookup_status(const char **out, const char *workspace, const char *experiment,
		       const char *identity_hex, struct diag *d) FT_WUR;

#endif
