/* yaml_load: YAML bytes -> node tree through libyaml's event API (the only file that
 * includes yaml.h). Rejects what an experiment file must not contain: anchors, aliases,
 * tags, several documents, duplicate or non-scalar keys, deep nesting. Never trusts the
 * input: every failure is a positioned FT_EINVAL. */
#include "schema/node.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <yaml.h>

#include "common/util.h"
#include "schema/schema.h"
#include "common/banned.h"

struct loader {
	yaml_parser_t parser;
	const char *data;
	size_t len;
	const char *file, *dir, *origin;
	struct diag *d;
};

static int err_at(struct loader *L, yaml_mark_t m, const char *fmt, ...) FT_PRINTF(3, 4);
static int err_at(struct loader *L, yaml_mark_t m, const char *fmt, ...)
{
	char msg[DIAG_TEXT_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	struct node pos = {0};
	pos.file = L->file;
	pos.origin = L->origin;
	pos.line = (int)m.line + 1;
	pos.col = (int)m.column + 1;
	return node_error(L->d, &pos, NULL, "%s", msg);
}

static int parse_error(struct loader *L)
{
	yaml_parser_t *p = &L->parser;
	char msg[512];
	if (p->error == YAML_MEMORY_ERROR)
		return diag_set(L->d, FT_ENOMEM, L->file, 0, 0, "out of memory parsing YAML");
	yaml_mark_t m = p->problem_mark;
	if (p->context)
		snprintf(msg, sizeof msg, "invalid YAML: %s %s", p->problem ? p->problem : "error",
			 p->context);
	else
		snprintf(msg, sizeof msg, "invalid YAML: %s", p->problem ? p->problem : "error");
	if (p->error == YAML_READER_ERROR) {
		/* Reader errors (bad UTF-8, control characters) carry a byte offset, not a
		 * mark: count lines and columns (in bytes) up to it. */
		size_t off = p->problem_offset < L->len ? p->problem_offset : L->len;
		m.line = 0;
		m.column = 0;
		for (size_t i = 0; i < off; i++) {
			if (L->data[i] == '\n') {
				m.line++;
				m.column = 0;
			} else {
				m.column++;
			}
		}
		if (p->problem_value != -1)
			snprintf(msg, sizeof msg, "invalid YAML: %s (byte 0x%02x)",
				 p->problem ? p->problem : "error", (unsigned)p->problem_value & 0xff);
		else
			snprintf(msg, sizeof msg, "invalid YAML: %s", p->problem ? p->problem : "error");
		int rc = err_at(L, m, "%s", msg);
		if (strstr(msg, "UTF-8"))
			diag_hint(L->d, "experiment files are UTF-8 text");
		return rc;
	}
	return err_at(L, m, "%s", msg);
}

static int next(struct loader *L, yaml_event_t *ev)
{
	if (!yaml_parser_parse(&L->parser, ev))
		return parse_error(L);
	return 0;
}

static int check_props(struct loader *L, const yaml_event_t *ev, const yaml_char_t *anchor,
		       const yaml_char_t *tag, bool implicit_tag)
{
	if (anchor)
		return err_at(L, ev->start_mark,
			      "anchors and aliases are not allowed ('&%s'); repeat the value or "
			      "use extends:", (const char *)anchor);
	if (tag && !implicit_tag)
		return err_at(L, ev->start_mark, "YAML tags are not allowed ('%s')",
			      (const char *)tag);
	return 0;
}

static void set_pos(struct loader *L, struct node *n, yaml_mark_t m)
{
	n->file = L->file;
	n->dir = L->dir;
	n->origin = L->origin;
	n->line = (int)m.line + 1;
	n->col = (int)m.column + 1;
}

static int parse_node(struct loader *L, yaml_event_t *ev, int depth, struct node **out);

/* Parses the rest of a mapping whose start event has been consumed. */
static int parse_map(struct loader *L, struct node *m, int depth)
{
	for (;;) {
		yaml_event_t kev;
		int rc = next(L, &kev);
		if (rc)
			return rc;
		if (kev.type == YAML_MAPPING_END_EVENT) {
			yaml_event_delete(&kev);
			return 0;
		}
		if (kev.type != YAML_SCALAR_EVENT) {
			if (kev.type == YAML_ALIAS_EVENT)
				rc = err_at(L, kev.start_mark, "%s",
					    "anchors and aliases are not allowed; repeat the value");
			else
				rc = err_at(L, kev.start_mark, "%s",
					    "a key must be a plain name, not a list or map");
			yaml_event_delete(&kev);
			return rc;
		}
		rc = check_props(L, &kev, kev.data.scalar.anchor, kev.data.scalar.tag,
				 kev.data.scalar.plain_implicit || kev.data.scalar.quoted_implicit);
		if (rc) {
			yaml_event_delete(&kev);
			return rc;
		}
		const char *key = (const char *)kev.data.scalar.value;
		if (strlen(key) != kev.data.scalar.length) {
			rc = err_at(L, kev.start_mark, "%s", "a key contains a NUL character");
			yaml_event_delete(&kev);
			return rc;
		}
		struct node *dup = node_get(m, key);
		if (dup) {
			struct node pos = {0};
			set_pos(L, &pos, kev.start_mark);
			rc = node_error(L->d, &pos, NULL, "duplicate key '%.200s' (first at %d:%d)", key,
					dup->key_line, dup->key_col);
			diag_hint(L->d, "'%.200s' is first defined at line %d, column %d; a key may "
				  "appear once per map", key, dup->key_line, dup->key_col);
			yaml_event_delete(&kev);
			return rc;
		}
		char *keycopy = ft_strdup(key);
		yaml_mark_t kmark = kev.start_mark;
		yaml_event_delete(&kev);
		if (!keycopy)
			return FT_ENOMEM;
		yaml_event_t vev;
		if ((rc = next(L, &vev)) != 0) {
			free(keycopy);
			return rc;
		}
		struct node *v = NULL;
		rc = parse_node(L, &vev, depth + 1, &v);
		if (rc || !v) {
			free(keycopy);
			return rc ? rc : FT_ENOMEM;
		}
		v->key = keycopy;
		v->key_line = (int)kmark.line + 1;
		v->key_col = (int)kmark.column + 1;
		if ((rc = node_append(m, v)) != 0)
			return rc;
	}
}

static int parse_seq(struct loader *L, struct node *s, int depth)
{
	for (;;) {
		yaml_event_t ev;
		int rc = next(L, &ev);
		if (rc)
			return rc;
		if (ev.type == YAML_SEQUENCE_END_EVENT) {
			yaml_event_delete(&ev);
			return 0;
		}
		struct node *v = NULL;
		if ((rc = parse_node(L, &ev, depth + 1, &v)) != 0)
			return rc;
		if ((rc = node_append(s, v)) != 0)
			return rc;
	}
}

/* Builds the node that starts with event ev (consumed and deleted here). */
static int parse_node(struct loader *L, yaml_event_t *ev, int depth, struct node **out)
{
	int rc = 0;
	struct node *n = NULL;
	*out = NULL;
	if (depth > SCHEMA_MAX_DEPTH) {
		rc = err_at(L, ev->start_mark, "nesting is deeper than the limit of %d levels",
			    SCHEMA_MAX_DEPTH);
		goto done;
	}
	switch (ev->type) {
	case YAML_ALIAS_EVENT:
		rc = err_at(L, ev->start_mark,
			    "anchors and aliases are not allowed ('*%s'); repeat the value or use "
			    "extends:", (const char *)ev->data.alias.anchor);
		goto done;
	case YAML_SCALAR_EVENT:
		if ((rc = check_props(L, ev, ev->data.scalar.anchor, ev->data.scalar.tag,
				      ev->data.scalar.plain_implicit ||
					      ev->data.scalar.quoted_implicit)) != 0)
			goto done;
		if (strlen((const char *)ev->data.scalar.value) != ev->data.scalar.length) {
			rc = err_at(L, ev->start_mark, "%s", "a value contains a NUL character");
			goto done;
		}
		n = node_new_scalar((const char *)ev->data.scalar.value,
				    ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE);
		if (!n) {
			rc = FT_ENOMEM;
			goto done;
		}
		set_pos(L, n, ev->start_mark);
		break;
	case YAML_MAPPING_START_EVENT:
	case YAML_SEQUENCE_START_EVENT: {
		bool map = ev->type == YAML_MAPPING_START_EVENT;
		if ((rc = check_props(L, ev, map ? ev->data.mapping_start.anchor
						  : ev->data.sequence_start.anchor,
				      map ? ev->data.mapping_start.tag : ev->data.sequence_start.tag,
				      map ? ev->data.mapping_start.implicit
					  : ev->data.sequence_start.implicit)) != 0)
			goto done;
		n = node_new(map ? NODE_MAP : NODE_SEQ);
		if (!n) {
			rc = FT_ENOMEM;
			goto done;
		}
		set_pos(L, n, ev->start_mark);
		rc = map ? parse_map(L, n, depth) : parse_seq(L, n, depth);
		break;
	}
	default:
		rc = err_at(L, ev->start_mark, "%s", "unexpected YAML event");
		break;
	}
done:
	yaml_event_delete(ev);
	if (rc) {
		node_free(n);
		return rc;
	}
	*out = n;
	return 0;
}

int yaml_parse_nodes(struct node **out, const char *data, size_t len, const char *file,
		     const char *dir, const char *origin, struct diag *d)
{
	struct loader L = {.data = data, .len = len, .file = file, .dir = dir, .origin = origin,
			   .d = d};
	struct node *root = NULL;
	int rc = 0;
	*out = NULL;
	if (!yaml_parser_initialize(&L.parser))
		return diag_set(d, FT_ENOMEM, file, 0, 0, "out of memory starting the YAML parser");
	yaml_parser_set_input_string(&L.parser, (const unsigned char *)data, len);
	yaml_event_t ev;
	bool in_doc = false;
	int docs = 0;
	for (;;) {
		if ((rc = next(&L, &ev)) != 0)
			goto done;
		yaml_event_type_t t = ev.type;
		if (t == YAML_STREAM_END_EVENT) {
			yaml_event_delete(&ev);
			break;
		}
		if (t == YAML_STREAM_START_EVENT || t == YAML_DOCUMENT_END_EVENT) {
			in_doc = false;
			yaml_event_delete(&ev);
			continue;
		}
		if (t == YAML_DOCUMENT_START_EVENT) {
			if (++docs > 1) {
				rc = err_at(&L, ev.start_mark, "%s",
					    "a second YAML document: an experiment file holds one "
					    "document (remove the '---' separator)");
				yaml_event_delete(&ev);
				goto done;
			}
			in_doc = true;
			yaml_event_delete(&ev);
			continue;
		}
		if (!in_doc || root) {
			rc = err_at(&L, ev.start_mark, "%s", "unexpected content after the document");
			yaml_event_delete(&ev);
			goto done;
		}
		if ((rc = parse_node(&L, &ev, 1, &root)) != 0)
			goto done;
	}
done:
	yaml_parser_delete(&L.parser);
	if (rc) {
		node_free(root);
		return rc;
	}
	*out = root;
	return 0;
}
