/* provenance: libgit2 adapter (the only file that includes git2.h). Reads HEAD, branch,
 * status and the diff of the working tree against HEAD; untracked files do not make a tree
 * dirty (the workspace itself often lives in the repository). */
#include "runner/provenance.h"

#include <stdlib.h>
#include <string.h>

#include <git2.h>

#include "common/util.h"
#include "common/banned.h"

void provenance_strip_credentials(char *out, size_t out_len, const char *url)
{
	const char *scheme = strstr(url, "://");
	if (!scheme) {
		snprintf(out, out_len, "%s", url);
		return;
	}
	const char *host = scheme + 3;
	const char *slash = strchr(host, '/');
	const char *at = NULL;
	for (const char *p = host; *p && (!slash || p < slash); p++)
		if (*p == '@')
			at = p; /* the last '@' before the path ends the user info */
	if (!at) {
		snprintf(out, out_len, "%s", url);
		return;
	}
	snprintf(out, out_len, "%.*s%s", (int)(host - url), url, at + 1);
}

static int git_fail(struct diag *d, const char *what, const char *path)
{
	const git_error *e = git_error_last();
	return diag_set(d, FT_EIO, "", 0, 0, "git: %s for '%s': %s", what, path,
			e && e->message ? e->message : "unknown error");
}

static int collect_status(struct provenance *out, git_repository *repo, struct diag *d,
			  const char *path)
{
	git_status_options opts;
	git_status_options_init(&opts, GIT_STATUS_OPTIONS_VERSION);
	opts.show = GIT_STATUS_SHOW_INDEX_AND_WORKDIR;
	opts.flags = GIT_STATUS_OPT_EXCLUDE_SUBMODULES | GIT_STATUS_OPT_RENAMES_HEAD_TO_INDEX;
	git_status_list *list = NULL;
	if (git_status_list_new(&list, repo, &opts) != 0)
		return git_fail(d, "cannot read the status", path);
	struct strbuf changed = {0};
	int r = 0;
	size_t n = git_status_list_entrycount(list);
	for (size_t i = 0; i < n && !r; i++) {
		const git_status_entry *e = git_status_byindex(list, i);
		if (e->status == GIT_STATUS_CURRENT || (e->status & GIT_STATUS_IGNORED))
			continue;
		const git_diff_delta *dd = e->index_to_workdir ? e->index_to_workdir : e->head_to_index;
		const char *p = dd ? (dd->new_file.path ? dd->new_file.path : dd->old_file.path) : NULL;
		if (!p)
			continue;
		r = strbuf_printf(&changed, "%s\n", p);
	}
	git_status_list_free(list);
	if (r) {
		strbuf_free(&changed);
		return diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory reading git status");
	}
	out->dirty = changed.len > 0;
	out->changed = strbuf_detach(&changed);
	return 0;
}

static int collect_diff(struct provenance *out, git_repository *repo, git_tree *head_tree,
			struct diag *d, const char *path)
{
	git_diff_options opts;
	git_diff_options_init(&opts, GIT_DIFF_OPTIONS_VERSION);
	opts.flags = GIT_DIFF_SHOW_BINARY;
	git_diff *diff = NULL;
	git_buf buf = {0};
	int r = 0;
	if (git_diff_tree_to_workdir_with_index(&diff, repo, head_tree, &opts) != 0) {
		r = git_fail(d, "cannot diff the working tree", path);
		goto done;
	}
	if (git_diff_to_buf(&buf, diff, GIT_DIFF_FORMAT_PATCH) != 0) {
		r = git_fail(d, "cannot format the diff", path);
		goto done;
	}
	out->diff = ft_strndup(buf.ptr ? buf.ptr : "", buf.size);
	if (!out->diff)
		r = diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory holding the git diff");
done:
	git_buf_dispose(&buf);
	git_diff_free(diff);
	return r;
}

/* The URL of "origin", read as the config value remote.origin.url: libgit2 1.5's remote
 * lookup and listing match config names with pcre2 and leak its match data. */
static int collect_remote(struct provenance *out, git_repository *repo)
{
	git_config *cfg = NULL;
	const char *url = NULL;
	if (git_repository_config_snapshot(&cfg, repo) == 0 &&
	    git_config_get_string(&url, cfg, "remote.origin.url") == 0 && url) {
		size_t n = strlen(url) + 1;
		out->remote = malloc(n);
		if (out->remote)
			provenance_strip_credentials(out->remote, n, url);
	}
	git_config_free(cfg);
	git_error_clear();
	return 0;
}

int provenance_collect(struct provenance *out, const char *path, struct diag *d)
{
	memset(out, 0, sizeof *out);
	git_libgit2_init();
	git_repository *repo = NULL;
	git_reference *head = NULL;
	git_object *head_obj = NULL;
	git_tree *tree = NULL;
	int r = 0;
	char *dir = path_dirname(path);
	if (!dir) {
		r = diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
		goto done;
	}
	int g = git_repository_open_ext(&repo, dir, 0, NULL);
	if (g == GIT_ENOTFOUND) {
		git_error_clear();
		goto done; /* not a repository */
	}
	if (g != 0) {
		r = git_fail(d, "cannot open the repository", dir);
		goto done;
	}
	out->is_repo = true;
	if (git_repository_workdir(repo))
		out->root = ft_strdup(git_repository_workdir(repo));
	g = git_repository_head(&head, repo);
	if (g == 0) {
		const git_oid *oid = git_reference_target(head);
		if (!oid) {
			git_reference *resolved = NULL;
			if (git_reference_resolve(&resolved, head) == 0) {
				git_reference_free(head);
				head = resolved;
				oid = git_reference_target(head);
			}
		}
		if (oid) {
			char hex[GIT_OID_HEXSZ + 1];
			git_oid_tostr(hex, sizeof hex, oid);
			out->commit = ft_strdup(hex);
		}
		if (git_reference_is_branch(head)) {
			const char *bn = NULL;
			if (git_branch_name(&bn, head) == 0 && bn)
				out->branch = ft_strdup(bn);
		}
		if (git_reference_peel(&head_obj, head, GIT_OBJECT_TREE) == 0)
			tree = (git_tree *)head_obj;
	} else if (g != GIT_EUNBORNBRANCH && g != GIT_ENOTFOUND) {
		r = git_fail(d, "cannot read HEAD", dir);
		goto done;
	}
	git_error_clear();
	r = collect_status(out, repo, d, dir);
	if (!r)
		r = collect_diff(out, repo, tree, d, dir);
	if (!r)
		r = collect_remote(out, repo);
done:
	git_object_free(head_obj);
	git_reference_free(head);
	git_repository_free(repo);
	free(dir);
	/* init/shutdown are reference counted; the last shutdown frees libgit2's caches. */
	git_libgit2_shutdown();
	if (r)
		provenance_clear(out);
	return r;
}

void provenance_clear(struct provenance *p)
{
	if (!p)
		return;
	free(p->commit);
	free(p->branch);
	free(p->remote);
	free(p->root);
	free(p->changed);
	free(p->diff);
	memset(p, 0, sizeof *p);
}
