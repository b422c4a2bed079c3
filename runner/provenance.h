/* provenance: where an experiment file came from, read with libgit2 (the only file that
 * includes git2.h is provenance.c): the repository's HEAD commit, branch, dirty flag,
 * changed files and uncommitted diff, and the remote URL without credentials. */
#ifndef FTLAB_PROVENANCE_H
#define FTLAB_PROVENANCE_H

#include <stdbool.h>
#include <stddef.h>

#include "common/diag.h"

struct provenance {
	bool is_repo;  /* false: the file is not inside a git repository (other fields NULL) */
	char *commit;  /* 40 hex, or NULL for a repository without commits */
	char *branch;  /* short branch name, NULL when HEAD is detached */
	char *remote;  /* URL of the remote "origin", credentials removed; or NULL */
	char *root;    /* the working directory of the repository */
	bool dirty;    /* tracked files differ from HEAD (index or working tree) */
	char *changed; /* the changed paths, one per line ("" when clean) */
	char *diff;    /* the uncommitted changes as a patch against HEAD ("" when clean) */
};

/* Fills *out for the repository that contains `path` (a file or directory). Not being in
 * a repository is not an error (is_repo false). Errors: FT_EIO when the repository cannot
 * be read. The caller clears *out with provenance_clear. Not thread-safe on first use. */
int provenance_collect(struct provenance *out, const char *path, struct diag *d) FT_WUR;
void provenance_clear(struct provenance *p);

/* Copies url into out (out_len bytes) without any "user:password@" part of a URL with a
 * scheme ("https://tok@host/x" -> "https://host/x"). scp-style "git@host:x" is kept. */
void provenance_strip_credentials(char *out, size_t out_len, const char *url);

#endif
