/* plan_status: the run status column of `ftlab plan`, read from the store. A finished run
 * recorded at a clean commit (or outside any repository) shows as "cached": `ftlab run`
 * reuses it as long as the tree is still at that commit. No store or no row: "new". */
#include "runner/plan.h"

#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "runner/identity.h"
#include "store/store.h"
#include "common/banned.h"

int plan_lookup_status(const char **out, const char *workspace, const char *experiment,
		       const char *identity_hex, struct diag *d)
{
	/* One connection for the whole plan (closed at exit). */
	static struct store *s;
	static bool tried;
	*out = "new";
	(void)experiment;
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
	struct store_run *run = NULL;
	struct diag q;
	diag_init(&q);
	if (store_run_get(s, &run, id, &q) != 0)
		return q.code == FT_EINVAL ? 0 : diag_set(d, q.code, "", 0, 0, "%s", q.text);
	static const char *const names[] = {"queued", "running", "finished", "failed",
					    "killed", "crashed", "cached", "stopped"};
	for (size_t i = 0; i < FT_ARRAY_LEN(names); i++)
		if (strcmp(run->status, names[i]) == 0)
			*out = names[i];
	if (strcmp(run->status, "finished") == 0 && run->git_dirty <= 0)
		*out = "cached";
	store_run_free(run);
	return 0;
}
