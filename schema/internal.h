/* schema internals shared by experiment.c, validate.c and emit.c (not for other layers). */
#ifndef FTLAB_SCHEMA_INTERNAL_H
#define FTLAB_SCHEMA_INTERNAL_H

#include <stdbool.h>
#include <stdio.h>

#include "common/diag.h"
#include "common/util.h"
#include "schema/config.h"
#include "schema/node.h"
#include "schema/table.h"

/* Validates the merged tree `src` against the schema and builds the resolved tree:
 * defaults filled, computed defaults set, values normalised (scalars: plain = number or
 * boolean, text in canonical form; not plain = string), paths relative to top_dir.
 * Cross-field rules are checked. ctx prefixes messages (sweep points). */
int schema_resolve(struct node **out, const struct node *src, const char *top_dir,
		   const char *ctx, struct diag *d) FT_WUR;
/* Fills c (zeroed by the caller) from a resolved tree; base_dir is the experiment's
 * directory (paths are joined to it). */
int schema_fill_config(struct config *c, const struct node *resolved, const char *base_dir) FT_WUR;
/* Canonical JSON of a resolved (sub)tree; keys sorted. skip_noncanon leaves out rows
 * flagged KF_NOCANON at the top level. */
int schema_json(struct strbuf *out, const struct node *n, bool skip_noncanon) FT_WUR;
/* The resolved config as YAML (map order kept) from a resolved tree. */
int schema_yaml(struct strbuf *out, const struct node *n, int indent) FT_WUR;
/* Lexical path helpers. */
char *path_normalize(const char *path);          /* absolute, no . or .. segments */
char *path_relative(const char *abs_target, const char *abs_dir);

#endif
