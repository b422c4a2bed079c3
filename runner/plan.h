/* plan: what `ftlab plan` shows for each sweep point, shared with run and ci: the run id
 * and what `ftlab run` would do with it, decided by the store exactly as run decides. */
#ifndef FTLAB_PLAN_H
#define FTLAB_PLAN_H

#include <stdbool.h>

#include "common/diag.h"

/* The status of run `identity_hex` of experiment `experiment` in the store of
 * `workspace`, as `ftlab run` at git commit `git_commit` (NULL outside a repository,
 * `git_dirty` for uncommitted changes) would find it, without --force or --resume:
 * "new" (no such run), "cached" (reused), "running" (another live process has it),
 * "outdated" (finished, but at another commit or with uncommitted changes: run repeats
 * it), or the row's own status ("failed", "killed", "crashed", "queued"). *out is a
 * static string. Returns 0 or an FT_E* code with d set. Without a store: "new". */
int plan_lookup_status(const char **out, const char *workspace, const char *experiment,
		       const char *identity_hex, const char *git_commit, bool git_dirty,
		       struct diag *d) FT_WUR;

#endif
