/* node: the parsed YAML document as a small tree with source positions. Scalars keep
 * their text (typing is the schema's job); maps keep key order and key positions.
 * yaml_load.c is the only file that sees libyaml. Nodes own their children. */
#ifndef FTLAB_NODE_H
#define FTLAB_NODE_H

#include <stdbool.h>
#include <stddef.h>

#include "common/diag.h"

enum node_kind { NODE_SCALAR, NODE_MAP, NODE_SEQ };

struct node {
	enum node_kind kind;
	const char *file;   /* file for messages (borrowed, lives as long as the experiment);
			       NULL for values from the command line or generated ones */
	const char *dir;    /* directory relative paths are resolved against (borrowed) */
	const char *origin; /* set when file is NULL: "override '-s a=b'" (borrowed) */
	int line, col;      /* 1-based; 0 when unknown */
	/* scalar */
	char *text;
	bool plain;         /* unquoted scalar: may be a number, bool or null */
	/* map entries (key != NULL) or list items */
	struct node **items;
	size_t n, cap;
	/* set on a map's entries */
	char *key;
	int key_line, key_col;
};

struct node *node_new(enum node_kind kind);
struct node *node_new_scalar(const char *text, bool plain);
void node_free(struct node *n);
/* Deep copy (keeps positions and borrowed strings). NULL when memory runs out. */
struct node *node_clone(const struct node *n);
/* Appends child (taking ownership); FT_ENOMEM on failure (child is freed). */
int node_append(struct node *parent, struct node *child) FT_WUR;
/* The entry of map m named key, or NULL. */
struct node *node_get(const struct node *m, const char *key);
/* The node at a dotted path under map m ("train.optimizer.lr"), or NULL. */
struct node *node_get_path(const struct node *m, const char *path);
/* Replaces or creates the entry at a dotted path, creating intermediate maps; takes
 * ownership of v (and sets its key). A non-map on the way is replaced by a map. */
int node_set_path(struct node *m, const char *path, struct node *v) FT_WUR;
/* Removes (and frees) map entry `key` when present. */
void node_remove(struct node *m, const char *key);
/* Deep merge: entries of over replace or merge into base (maps merge, everything else
 * replaces). Takes ownership of over. */
int node_merge(struct node *base, struct node *over) FT_WUR;
/* True for a plain scalar that means null in YAML 1.2 ("", "~", "null", "Null", "NULL"). */
bool node_is_null(const struct node *n);
/* Records an error at n (or naming n->origin when it has no file); ctx, when not NULL,
 * is prefixed to the message ("sweep entry 'x' value 3: ..."). Returns FT_EINVAL. */
int node_error(struct diag *d, const struct node *n, const char *ctx, const char *fmt, ...)
	FT_PRINTF(4, 5);
/* The same at a map entry's key position. */
int node_key_error(struct diag *d, const struct node *n, const char *ctx, const char *fmt,
		   ...) FT_PRINTF(4, 5);

/* Parses YAML bytes into a node tree (a single document; anchors, aliases, tags,
 * duplicate keys, non-scalar keys and nesting deeper than SCHEMA_MAX_DEPTH are errors).
 * `file` and `dir` are stored in every node (borrowed: keep them alive). `origin`, when
 * file is NULL, names the source in messages. An empty document gives *out == NULL. */
int yaml_parse_nodes(struct node **out, const char *data, size_t len, const char *file,
		     const char *dir, const char *origin, struct diag *d) FT_WUR;

#endif
