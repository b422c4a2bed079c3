/* plan_status: the run status column of `ftlab plan`, read from the store with
 * store_run_preview, the same decision store_run_claim makes for `ftlab run`: "cached"
 * only when run would reuse the finished run at the current commit. No store or no row:
 * "new". */
#include "runner/plan.h"

#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "runner/identity.h"
#include "store/store.h"
#include "common/banned.h"

int plan_lookup_status(const char **out, const char *workspace, const char *experiment,
		       const char *identity_hex, const char *git_commit, bool git_dirty,
		       struct diag *d)
{
	/* One connection for the whole plan (closed at exit). */
	static struct store *s;
	static bool tried;
	*out = "new";
	if (!tried) {
		tried = true;
		char *db = path_join(workspace, "ftlab.db");
		bool exists = db && path_exists(db);
		free(db);
		if (exists) {
			int r = store_open(&s, workspace, false, d);
			if (r)
				return r;
		}
	}
	if (!s)
		return 0;
	char id[13];
	run_id_from_identity(id, identity_hex);
	struct store_run_spec spec = {.id = id, .experiment = experiment, .identity = identity_hex,
				      .git_commit = git_commit, .git_dirty = git_dirty};
	enum store_claim c;
	char row_status[16];
	int r = store_run_preview(s, &c, row_status, &spec, 0, d);
	if (r)
		return r;
	static const char *const names[] = {"queued", "running", "finished", "failed",
					    "killed", "crashed", "cached", "stopped"};
	if (!row_status[0])
		*out = "new";
	else if (c == STORE_CLAIM_CACHED)
		/* Reused as it is; a run early termination stopped keeps saying so. */
		*out = strcmp(row_status, "stopped") == 0 ? "stopped" : "cached";
	else if (c == STORE_CLAIM_BUSY)
		*out = "running";
	else if (strcmp(row_status, "finished") == 0 || strcmp(row_status, "stopped") == 0)
		*out = "outdated";
	else
		for (size_t i = 0; i < FT_ARRAY_LEN(names); i++)
			if (strcmp(row_status, names[i]) == 0)
				*out = names[i];
	return 0;
}
