/* node: tree operations on parsed YAML (clone, dotted-path lookup and update, deep merge)
 * and position-carrying error helpers. Parsing itself is in yaml_load.c. */
#include "schema/node.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "common/banned.h"

struct node *node_new(enum node_kind kind)
{
	struct node *n = calloc(1, sizeof *n);
	if (n)
		n->kind = kind;
	return n;
}

struct node *node_new_scalar(const char *text, bool plain)
{
	struct node *n = node_new(NODE_SCALAR);
	if (!n)
		return NULL;
	n->text = ft_strdup(text);
	if (!n->text) {
		free(n);
		return NULL;
	}
	n->plain = plain;
	return n;
}

void node_free(struct node *n)
{
	if (!n)
		return;
	for (size_t i = 0; i < n->n; i++)
		node_free(n->items[i]);
	free(n->items);
	free(n->text);
	free(n->key);
	free(n);
}

struct node *node_clone(const struct node *n)
{
	struct node *c = node_new(n->kind);
	if (!c)
		return NULL;
	c->file = n->file;
	c->dir = n->dir;
	c->origin = n->origin;
	c->line = n->line;
	c->col = n->col;
	c->plain = n->plain;
	c->key_line = n->key_line;
	c->key_col = n->key_col;
	if ((n->text && !(c->text = ft_strdup(n->text))) || (n->key && !(c->key = ft_strdup(n->key))))
		goto fail;
	for (size_t i = 0; i < n->n; i++) {
		struct node *k = node_clone(n->items[i]);
		if (!k || node_append(c, k) != 0)
			goto fail;
	}
	return c;
fail:
	node_free(c);
	return NULL;
}

int node_append(struct node *parent, struct node *child)
{
	if (parent->n == parent->cap) {
		size_t cap = parent->cap ? parent->cap * 2 : 4;
		struct node **p = realloc(parent->items, cap * sizeof *p);
		if (!p) {
			node_free(child);
			return FT_ENOMEM;
		}
		parent->items = p;
		parent->cap = cap;
	}
	parent->items[parent->n++] = child;
	return 0;
}

struct node *node_get(const struct node *m, const char *key)
{
	if (!m || m->kind != NODE_MAP)
		return NULL;
	for (size_t i = 0; i < m->n; i++)
		if (strcmp(m->items[i]->key, key) == 0)
			return m->items[i];
	return NULL;
}

struct node *node_get_path(const struct node *m, const char *path)
{
	const char *p = path;
	const struct node *cur = m;
	char part[256];
	while (cur) {
		const char *dot = strchr(p, '.');
		size_t len = dot ? (size_t)(dot - p) : strlen(p);
		if (len >= sizeof part)
			return NULL;
		memcpy(part, p, len);
		part[len] = '\0';
		cur = node_get(cur, part);
		if (!dot)
			return (struct node *)cur;
		p = dot + 1;
	}
	return NULL;
}

void node_remove(struct node *m, const char *key)
{
	for (size_t i = 0; m && m->kind == NODE_MAP && i < m->n; i++) {
		if (strcmp(m->items[i]->key, key) == 0) {
			node_free(m->items[i]);
			memmove(&m->items[i], &m->items[i + 1], (m->n - i - 1) * sizeof *m->items);
			m->n--;
			return;
		}
	}
}

/* Puts v into map m under key (replacing an existing entry in place). */
static int map_put(struct node *m, const char *key, struct node *v)
{
	free(v->key);
	v->key = ft_strdup(key);
	if (!v->key) {
		node_free(v);
		return FT_ENOMEM;
	}
	for (size_t i = 0; i < m->n; i++) {
		if (strcmp(m->items[i]->key, key) == 0) {
			if (!v->key_line) {
				v->key_line = m->items[i]->key_line;
				v->key_col = m->items[i]->key_col;
			}
			node_free(m->items[i]);
			m->items[i] = v;
			return 0;
		}
	}
	return node_append(m, v);
}

int node_set_path(struct node *m, const char *path, struct node *v)
{
	const char *dot = strchr(path, '.');
	if (!dot)
		return map_put(m, path, v);
	char *part = ft_strndup(path, (size_t)(dot - path));
	if (!part) {
		node_free(v);
		return FT_ENOMEM;
	}
	struct node *child = node_get(m, part);
	int rc;
	if (!child || child->kind != NODE_MAP) {
		struct node *nm = node_new(NODE_MAP);
		if (!nm) {
			free(part);
			node_free(v);
			return FT_ENOMEM;
		}
		nm->file = v->file;
		nm->dir = v->dir;
		nm->origin = v->origin;
		if ((rc = map_put(m, part, nm)) != 0) {
			free(part);
			node_free(v);
			return rc;
		}
		child = node_get(m, part);
	}
	free(part);
	return node_set_path(child, dot + 1, v);
}

int node_merge(struct node *base, struct node *over)
{
	int rc = 0;
	for (size_t i = 0; i < over->n; i++) {
		struct node *o = over->items[i];
		over->items[i] = NULL;
		struct node *b = node_get(base, o->key);
		if (node_is_null(o)) {
			/* `key: null` in an extending file removes the inherited key. */
			node_remove(base, o->key);
			node_free(o);
			continue;
		}
		if (b && b->kind == NODE_MAP && o->kind == NODE_MAP) {
			if ((rc = node_merge(b, o)) != 0)
				break;
		} else {
			char *key = ft_strdup(o->key);
			if (!key) {
				node_free(o);
				rc = FT_ENOMEM;
				break;
			}
			int kl = o->key_line, kc = o->key_col;
			rc = map_put(base, key, o);
			free(key);
			if (rc != 0)
				break;
			struct node *put = node_get(base, o->key);
			if (put) {
				put->key_line = kl;
				put->key_col = kc;
			}
		}
	}
	node_free(over);
	return rc;
}

bool node_is_null(const struct node *n)
{
	if (n->kind != NODE_SCALAR || !n->plain)
		return false;
	const char *t = n->text;
	return !t[0] || strcmp(t, "~") == 0 || strcmp(t, "null") == 0 || strcmp(t, "Null") == 0 ||
	       strcmp(t, "NULL") == 0;
}

static int node_verror(struct diag *d, const struct node *n, int line, int col, const char *ctx,
		       const char *fmt, va_list ap) FT_PRINTF(6, 0);
static int node_verror(struct diag *d, const struct node *n, int line, int col, const char *ctx,
		       const char *fmt, va_list ap)
{
	char msg[DIAG_TEXT_MAX];
	vsnprintf(msg, sizeof msg, fmt, ap);
	if (n && n->file)
		return diag_set(d, FT_EINVAL, n->file, line, col, "%s%s%s", ctx ? ctx : "",
				ctx ? ": " : "", msg);
	const char *origin = n && n->origin ? n->origin : NULL;
	if (origin && ctx)
		return diag_set(d, FT_EINVAL, NULL, 0, 0, "%s: %s: %s", origin, ctx, msg);
	if (origin || ctx)
		return diag_set(d, FT_EINVAL, NULL, 0, 0, "%s: %s", origin ? origin : ctx, msg);
	return diag_set(d, FT_EINVAL, NULL, 0, 0, "%s", msg);
}

int node_error(struct diag *d, const struct node *n, const char *ctx, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = node_verror(d, n, n ? n->line : 0, n ? n->col : 0, ctx, fmt, ap);
	va_end(ap);
	return rc;
}

int node_key_error(struct diag *d, const struct node *n, const char *ctx, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int line = n ? (n->key_line ? n->key_line : n->line) : 0;
	int col = n ? (n->key_line ? n->key_col : n->col) : 0;
	int rc = node_verror(d, n, line, col, ctx, fmt, ap);
	va_end(ap);
	return rc;
}
