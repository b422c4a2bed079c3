/* validate: the schema table applied to a merged node tree. Checks types, ranges,
 * choices, unknown keys (with the nearest valid key), fills defaults and computed
 * defaults, checks the cross-field rules, and produces the resolved, normalised tree
 * that the canonical JSON, the YAML dump and struct config are made from. */
#include "schema/internal.h"

#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "schema/schema.h"
#include "common/banned.h"

struct vstate {
	const char *top_dir; /* absolute */
	const char *ctx;
	struct diag *d;
	const struct node *src_root;
};

/* ---- defaults, parsed once ------------------------------------------------------- */

static struct node *default_nodes[256];
static pthread_once_t defaults_once = PTHREAD_ONCE_INIT;

static void defaults_init(void)
{
	for (size_t i = 0; i < schema_n_keys && i < FT_ARRAY_LEN(default_nodes); i++) {
		const char *def = schema_keys[i].def;
		if (!def)
			continue;
		struct diag d;
		diag_init(&d);
		struct node *n = NULL;
		if (yaml_parse_nodes(&n, def, strlen(def), NULL, NULL, "default", &d) == 0)
			default_nodes[i] = n;
	}
}

static const struct node *default_node(const struct key_desc *k)
{
	pthread_once(&defaults_once, defaults_init);
	size_t i = (size_t)(k - schema_keys);
	return i < FT_ARRAY_LEN(default_nodes) ? default_nodes[i] : NULL;
}

/* ---- paths ----------------------------------------------------------------------- */

char *path_normalize(const char *path)
{
	struct strbuf sb = {0};
	char *joined = NULL;
	if (path[0] != '/') {
		char cwd[4096];
		if (!getcwd(cwd, sizeof cwd))
			snprintf(cwd, sizeof cwd, "/");
		joined = path_join(cwd, path);
	} else {
		joined = ft_strdup(path);
	}
	if (!joined)
		return NULL;
	/* Segments kept so far: offsets into sb. */
	size_t stack[512];
	size_t depth = 0;
	char *save = NULL;
	for (char *seg = strtok_r(joined, "/", &save); seg; seg = strtok_r(NULL, "/", &save)) {
		if (strcmp(seg, ".") == 0)
			continue;
		if (strcmp(seg, "..") == 0) {
			if (depth > 0)
				sb.len = stack[--depth];
			if (sb.buf)
				sb.buf[sb.len] = '\0';
			continue;
		}
		if (depth < FT_ARRAY_LEN(stack))
			stack[depth++] = sb.len;
		if (strbuf_puts(&sb, "/") != 0 || strbuf_puts(&sb, seg) != 0) {
			free(joined);
			strbuf_free(&sb);
			return NULL;
		}
	}
	free(joined);
	if (sb.len == 0 && strbuf_puts(&sb, "/") != 0) {
		strbuf_free(&sb);
		return NULL;
	}
	return strbuf_detach(&sb);
}

char *path_relative(const char *target, const char *dir)
{
	/* Longest common prefix of whole segments. */
	size_t common = 0, i = 0;
	for (; target[i] && dir[i] && target[i] == dir[i]; i++)
		if (target[i] == '/')
			common = i;
	if (!dir[i] && (target[i] == '/' || !target[i]))
		common = i;
	if (strcmp(dir, "/") == 0)
		common = 0;
	struct strbuf sb = {0};
	int rc = 0;
	for (const char *p = dir + common; *p; p++)
		if (*p == '/')
			rc |= strbuf_puts(&sb, "../");
	const char *rest = target + common;
	if (*rest == '/')
		rest++;
	rc |= strbuf_puts(&sb, rest);
	if (sb.len > 1 && sb.buf[sb.len - 1] == '/')
		sb.buf[--sb.len] = '\0';
	if (rc) {
		strbuf_free(&sb);
		return NULL;
	}
	if (sb.len == 0 && strbuf_puts(&sb, ".") != 0) {
		strbuf_free(&sb);
		return NULL;
	}
	return strbuf_detach(&sb);
}

/* ---- numbers ---------------------------------------------------------------------- */

static bool is_int_text(const char *s)
{
	if (*s == '-' || *s == '+')
		s++;
	if (!isdigit((unsigned char)*s))
		return false;
	while (isdigit((unsigned char)*s))
		s++;
	return *s == '\0';
}

/* YAML 1.2 core-schema decimal float (no .inf/.nan, no hex). */
static bool is_float_text(const char *s)
{
	if (*s == '-' || *s == '+')
		s++;
	bool digits = false;
	while (isdigit((unsigned char)*s)) {
		s++;
		digits = true;
	}
	if (*s == '.') {
		s++;
		while (isdigit((unsigned char)*s)) {
			s++;
			digits = true;
		}
	}
	if (!digits)
		return false;
	if (*s == 'e' || *s == 'E') {
		s++;
		if (*s == '-' || *s == '+')
			s++;
		if (!isdigit((unsigned char)*s))
			return false;
		while (isdigit((unsigned char)*s))
			s++;
	}
	return *s == '\0';
}

void schema_format_double(char *buf, size_t n, double v)
{
	if (!isfinite(v)) {
		snprintf(buf, n, "null");
		return;
	}
	if (v == 0) {
		snprintf(buf, n, "0.0");
		return;
	}
	char e[40];
	int prec = 1;
	for (; prec <= 17; prec++) {
		snprintf(e, sizeof e, "%.*e", prec - 1, v);
		if (strtod(e, NULL) == v)
			break;
	}
	/* e = [-]d[.ddd]e[+-]XX: split into sign, digits and exponent. */
	char digits[32];
	size_t nd = 0;
	const char *p = e;
	bool neg = false;
	if (*p == '-') {
		neg = true;
		p++;
	}
	for (; *p && *p != 'e'; p++)
		if (isdigit((unsigned char)*p) && nd + 1 < sizeof digits)
			digits[nd++] = *p;
	digits[nd] = '\0';
	while (nd > 1 && digits[nd - 1] == '0')
		digits[--nd] = '\0';
	int exp10 = (int)strtol(*p == 'e' ? p + 1 : "0", NULL, 10);
	struct strbuf sb = {0};
	int rc = 0;
	if (neg)
		rc |= strbuf_puts(&sb, "-");
	if (exp10 >= -5 && exp10 < 17) {
		if (exp10 < 0) {
			rc |= strbuf_puts(&sb, "0.");
			for (int k = -1; k > exp10; k--)
				rc |= strbuf_puts(&sb, "0");
			rc |= strbuf_puts(&sb, digits);
		} else {
			for (int k = 0; k <= exp10; k++)
				rc |= strbuf_append(&sb, (size_t)k < nd ? &digits[k] : "0", 1);
			rc |= strbuf_puts(&sb, ".");
			if ((size_t)exp10 + 1 < nd)
				rc |= strbuf_puts(&sb, digits + exp10 + 1);
			else
				rc |= strbuf_puts(&sb, "0");
		}
	} else {
		rc |= strbuf_append(&sb, digits, 1);
		if (nd > 1) {
			rc |= strbuf_puts(&sb, ".");
			rc |= strbuf_puts(&sb, digits + 1);
		}
		rc |= strbuf_printf(&sb, "e%d", exp10);
	}
	snprintf(buf, n, "%s", rc ? "null" : sb.buf);
	strbuf_free(&sb);
}

/* ---- errors ----------------------------------------------------------------------- */

#define VERR(S, n, ...) node_error((S)->d, (n), (S)->ctx, __VA_ARGS__)
#define VKERR(S, n, ...) node_key_error((S)->d, (n), (S)->ctx, __VA_ARGS__)

static const char *kind_name(const struct node *n)
{
	return n->kind == NODE_MAP ? "a map" : n->kind == NODE_SEQ ? "a list" : "a value";
}

static bool is_yaml11_bool(const char *t)
{
	static const char *const words[] = {"y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No",
					    "NO", "on", "On", "ON", "off", "Off", "OFF", "True",
					    "TRUE", "False", "FALSE"};
	for (size_t i = 0; i < FT_ARRAY_LEN(words); i++)
		if (strcmp(t, words[i]) == 0)
			return true;
	return false;
}

/* Common checks for a scalar of key k: a scalar, not null, not a YAML 1.1 boolean word. */
static int need_scalar(struct vstate *S, const struct key_desc *k, const struct node *v,
		       const char *what)
{
	if (v->kind != NODE_SCALAR)
		return VERR(S, v, "'%s' must be %s, not %s", k->path, what, kind_name(v));
	if (node_is_null(v)) {
		int rc = VERR(S, v, "'%s' has no value (expected %s)", k->path, what);
		diag_hint(S->d, "remove the key to use its default");
		return rc;
	}
	if (v->plain && is_yaml11_bool(v->text) && k->type != KT_BOOL) {
		int rc = VERR(S, v, "'%s' is a YAML 1.1 boolean, not %s", v->text, what);
		diag_hint(S->d, "quote it ('%s') if you mean the text; booleans are true/false",
			  v->text);
		return rc;
	}
	return 0;
}

static struct node *out_scalar(const struct node *v, const char *text, bool plain)
{
	struct node *r = node_new_scalar(text, plain);
	if (!r)
		return NULL;
	r->file = v->file;
	r->dir = v->dir;
	r->origin = v->origin;
	r->line = v->line;
	r->col = v->col;
	return r;
}

static int range_check(struct vstate *S, const struct key_desc *k, const struct node *v,
		       double x)
{
	char lo[32], hi[32];
	if (k->type == KT_INT || k->type == KT_METRIC) {
		snprintf(lo, sizeof lo, "%.0f", k->lo);
		snprintf(hi, sizeof hi, "%.0f", k->hi);
	} else {
		schema_format_double(lo, sizeof lo, k->lo);
		schema_format_double(hi, sizeof hi, k->hi);
	}
	bool bad_lo = (k->flags & KF_LO) && ((k->flags & KF_LO_OPEN) ? !(x > k->lo) : !(x >= k->lo));
	bool bad_hi = (k->flags & KF_HI) && ((k->flags & KF_HI_OPEN) ? !(x < k->hi) : !(x <= k->hi));
	if (!bad_lo && !bad_hi)
		return 0;
	if ((k->flags & KF_LO) && (k->flags & KF_HI))
		return VERR(S, v, "'%s' is %s, out of range: expected %s%s, %s%s", k->path, v->text,
			    (k->flags & KF_LO_OPEN) ? "(" : "[", lo, hi,
			    (k->flags & KF_HI_OPEN) ? ")" : "]");
	if (bad_lo)
		return VERR(S, v, "'%s' is %s; expected a value %s %s", k->path, v->text,
			    (k->flags & KF_LO_OPEN) ? ">" : ">=", lo);
	return VERR(S, v, "'%s' is %s; expected a value %s %s", k->path, v->text,
		    (k->flags & KF_HI_OPEN) ? "<" : "<=", hi);
}

static int enum_error(struct vstate *S, const struct key_desc *k, const struct node *v,
		      const char *choices)
{
	char list[512], near[64];
	snprintf(list, sizeof list, "%s", choices);
	struct strbuf sb = {0};
	for (char *p = list, *save = NULL, *w = strtok_r(p, "|", &save); w;
	     w = strtok_r(NULL, "|", &save))
		if (strbuf_printf(&sb, "%s%s", sb.len ? ", " : "", w) != 0)
			break;
	int rc = VERR(S, v, "'%s' is '%.100s'; expected one of: %s", k->path, v->text,
		      sb.buf ? sb.buf : "");
	strbuf_free(&sb);
	if (schema_choice_nearest(choices, v->text, near, sizeof near))
		diag_hint(S->d, "did you mean '%s'?", near);
	return rc;
}

/* ---- typed values ----------------------------------------------------------------- */

static int resolve_map(struct vstate *S, const char *prefix, const struct node *src,
		       struct node *out);

static int scalar_int(struct vstate *S, const struct key_desc *k, const struct node *v,
		      struct node **out)
{
	int rc = need_scalar(S, k, v, "an integer");
	if (rc)
		return rc;
	int64_t x;
	if (!v->plain || !is_int_text(v->text)) {
		double f;
		if (v->plain && is_float_text(v->text) && parse_f64(v->text, &f))
			return VERR(S, v, "'%s' must be a whole number, not %s", k->path, v->text);
		return VERR(S, v, "'%s' must be an integer, not '%.100s'", k->path, v->text);
	}
	if (!parse_i64(v->text, &x))
		return VERR(S, v, "'%s' is %s, too large for an integer", k->path, v->text);
	if ((rc = range_check(S, k, v, (double)x)) != 0)
		return rc;
	char buf[32];
	snprintf(buf, sizeof buf, "%lld", (long long)x);
	*out = out_scalar(v, buf, true);
	return *out ? 0 : FT_ENOMEM;
}

static int scalar_float(struct vstate *S, const struct key_desc *k, const struct node *v,
			double *value, struct node **out)
{
	int rc = need_scalar(S, k, v, "a number");
	if (rc)
		return rc;
	double x;
	if (!v->plain || !is_float_text(v->text))
		return VERR(S, v, "'%s' must be a number, not '%.100s'", k->path, v->text);
	if (!parse_f64(v->text, &x) || !isfinite(x))
		return VERR(S, v, "'%s' is %s, out of the range of a number", k->path, v->text);
	if ((rc = range_check(S, k, v, x)) != 0)
		return rc;
	if (value)
		*value = x;
	char buf[40];
	schema_format_double(buf, sizeof buf, x);
	*out = out_scalar(v, buf, true);
	return *out ? 0 : FT_ENOMEM;
}

static int scalar_string(struct vstate *S, const struct key_desc *k, const struct node *v,
			 const char *what, struct node **out)
{
	int rc = need_scalar(S, k, v, what);
	if (rc)
		return rc;
	*out = out_scalar(v, v->text, false);
	return *out ? 0 : FT_ENOMEM;
}

static int check_metric(struct vstate *S, const struct key_desc *k, const struct node *v)
{
	const char *t = v->text;
	const char *dot = strchr(t, '.');
	bool ok = dot && dot != t && dot[1];
	for (const char *p = dot ? dot + 1 : t; ok && *p; p++)
		ok = islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '_';
	if (!ok)
		return VERR(S, v, "'%s' is '%.100s'; expected split.metric such as test.exact_match",
			    k->path, t);
	char split[32];
	size_t len = (size_t)(dot - t);
	snprintf(split, sizeof split, "%.*s", (int)(len < 31 ? len : 31), t);
	if (len >= 31 || !schema_choice_ok("train|validation|test", split)) {
		int rc = VERR(S, v, "'%s' names split '%.40s'; expected train, validation or test",
			      k->path, split);
		char near[32];
		if (schema_choice_nearest("train|validation|test", split, near, sizeof near))
			diag_hint(S->d, "did you mean '%s%s'?", near, dot);
		return rc;
	}
	return 0;
}

static int resolve_path(struct vstate *S, const struct key_desc *k, const struct node *v,
			struct node **out)
{
	int rc = scalar_string(S, k, v, "a path", out);
	if (rc)
		return rc;
	node_free(*out);
	*out = NULL;
	if (!v->text[0])
		return VERR(S, v, "'%s' is an empty path", k->path);
	const char *dir = v->dir ? v->dir : S->top_dir;
	char *joined = path_join(dir, v->text);
	char *abs = joined ? path_normalize(joined) : NULL;
	char *rel = abs ? path_relative(abs, S->top_dir) : NULL;
	free(joined);
	if (!rel) {
		free(abs);
		return FT_ENOMEM;
	}
	if ((k->flags & KF_EXISTS) && !path_exists(abs)) {
		rc = VERR(S, v, "'%s': no such file or directory '%.300s'", k->path, v->text);
		diag_hint(S->d, "paths are relative to the file that names them (here %.300s)",
			  v->dir ? v->dir : S->top_dir);
	} else {
		*out = out_scalar(v, rel, false);
		rc = *out ? 0 : FT_ENOMEM;
	}
	free(abs);
	free(rel);
	return rc;
}

static int resolve_strlist(struct vstate *S, const struct key_desc *k, const struct node *v,
			   struct node **out)
{
	if (v->kind != NODE_SEQ)
		return VERR(S, v, "'%s' must be a list of strings, not %s", k->path,
			    v->kind == NODE_MAP ? "a map" : "a single value");
	struct node *r = node_new(NODE_SEQ);
	if (!r)
		return FT_ENOMEM;
	r->file = v->file;
	r->line = v->line;
	r->col = v->col;
	r->origin = v->origin;
	int rc = 0;
	for (size_t i = 0; i < v->n && !rc; i++) {
		const struct node *it = v->items[i];
		struct node *ri = NULL;
		if ((rc = scalar_string(S, k, it, "a string", &ri)) != 0)
			break;
		if (k->choices && !schema_choice_ok(k->choices, it->text)) {
			node_free(ri);
			rc = enum_error(S, k, it, k->choices);
			break;
		}
		for (size_t j = 0; j < i && !rc; j++)
			if (strcmp(v->items[j]->text, it->text) == 0) {
				rc = VERR(S, it, "'%s' lists '%.100s' twice", k->path, it->text);
			}
		if (rc) {
			node_free(ri);
			break;
		}
		rc = node_append(r, ri);
	}
	if (rc) {
		node_free(r);
		return rc;
	}
	*out = r;
	return 0;
}

static int resolve_value(struct vstate *S, const struct key_desc *k, const struct node *v,
			 struct node **out);

static int resolve_list_of_maps(struct vstate *S, const struct key_desc *k, const struct node *v,
				const char *prefix, struct node **out)
{
	if (v->kind != NODE_SEQ)
		return VERR(S, v, "'%s' must be a list of maps, not %s", k->path, kind_name(v));
	struct node *r = node_new(NODE_SEQ);
	if (!r)
		return FT_ENOMEM;
	int rc = 0;
	for (size_t i = 0; i < v->n && !rc; i++) {
		const struct node *it = v->items[i];
		if (it->kind != NODE_MAP) {
			rc = VERR(S, it, "each entry of '%s' must be a map, not %s", k->path,
				  kind_name(it));
			break;
		}
		struct node *m = node_new(NODE_MAP);
		if (!m) {
			rc = FT_ENOMEM;
			break;
		}
		m->file = it->file;
		m->line = it->line;
		m->col = it->col;
		if ((rc = resolve_map(S, prefix, it, m)) != 0) {
			node_free(m);
			break;
		}
		rc = node_append(r, m);
	}
	if (rc) {
		node_free(r);
		return rc;
	}
	*out = r;
	return 0;
}

/* Sweep parameters and zip groups are validated by runner/sweep.c; here they are only
 * copied with generic scalar typing so the spec JSON is canonical. */
static int generic_copy(struct vstate *S, const struct node *v, int depth, struct node **out)
{
	if (depth > SCHEMA_MAX_DEPTH)
		return VERR(S, v, "nesting is too deep");
	if (v->kind == NODE_SCALAR) {
		char buf[40];
		const char *text = v->text;
		bool plain = false;
		double f;
		int64_t i;
		if (v->plain) {
			if (is_yaml11_bool(text)) {
				int rc = VERR(S, v, "'%s' is a YAML 1.1 boolean", text);
				diag_hint(S->d, "write true or false, or quote it ('%s') for text", text);
				return rc;
			}
			if (node_is_null(v))
				return VERR(S, v, "a value is missing here");
			if (is_int_text(text) && parse_i64(text, &i)) {
				snprintf(buf, sizeof buf, "%lld", (long long)i);
				text = buf;
				plain = true;
			} else if (is_float_text(text) && parse_f64(text, &f) && isfinite(f)) {
				schema_format_double(buf, sizeof buf, f);
				text = buf;
				plain = true;
			} else if (strcmp(text, "true") == 0 || strcmp(text, "false") == 0) {
				plain = true;
			}
		}
		*out = out_scalar(v, text, plain);
		return *out ? 0 : FT_ENOMEM;
	}
	struct node *r = node_new(v->kind);
	if (!r)
		return FT_ENOMEM;
	r->file = v->file;
	r->line = v->line;
	r->col = v->col;
	r->origin = v->origin;
	int rc = 0;
	for (size_t i = 0; i < v->n && !rc; i++) {
		struct node *c = NULL;
		if ((rc = generic_copy(S, v->items[i], depth + 1, &c)) != 0)
			break;
		if (!c) {
			rc = FT_ENOMEM;
			break;
		}
		if (v->items[i]->key) {
			c->key = ft_strdup(v->items[i]->key);
			c->key_line = v->items[i]->key_line;
			c->key_col = v->items[i]->key_col;
			if (!c->key) {
				node_free(c);
				rc = FT_ENOMEM;
				break;
			}
		}
		rc = node_append(r, c);
	}
	if (rc) {
		node_free(r);
		return rc;
	}
	*out = r;
	return 0;
}

static int resolve_value(struct vstate *S, const struct key_desc *k, const struct node *v,
			 struct node **out)
{
	int rc;
	*out = NULL;
	switch (k->type) {
	case KT_MAP:
		if (v->kind != NODE_MAP)
			return VERR(S, v, "'%s' must be a map of keys, not %s", k->path, kind_name(v));
		if (!(*out = node_new(NODE_MAP)))
			return FT_ENOMEM;
		(*out)->file = v->file;
		(*out)->line = v->line;
		(*out)->col = v->col;
		(*out)->origin = v->origin;
		return resolve_map(S, k->path, v, *out);
	case KT_INT:
		return scalar_int(S, k, v, out);
	case KT_FLOAT:
		return scalar_float(S, k, v, NULL, out);
	case KT_BOOL:
		if ((rc = need_scalar(S, k, v, "true or false")) != 0)
			return rc;
		if (v->plain && (strcmp(v->text, "true") == 0 || strcmp(v->text, "false") == 0)) {
			*out = out_scalar(v, v->text, true);
			return *out ? 0 : FT_ENOMEM;
		}
		rc = VERR(S, v, "'%s' must be true or false, not '%.100s'", k->path, v->text);
		if (v->plain && is_yaml11_bool(v->text))
			diag_hint(S->d, "YAML 1.1 booleans (yes/no/on/off/y/n) are not accepted; "
				  "write %s", (v->text[0] == 'y' || v->text[0] == 'Y' ||
					       strcmp(v->text, "on") == 0 || strcmp(v->text, "On") == 0 ||
					       strcmp(v->text, "ON") == 0 || v->text[0] == 'T')
						      ? "true"
						      : "false");
		return rc;
	case KT_STR:
		return scalar_string(S, k, v, "a string", out);
	case KT_NAME: {
		if ((rc = scalar_string(S, k, v, "a name", out)) != 0)
			return rc;
		size_t len = strlen(v->text);
		bool ok = len > 0 && len <= 100;
		for (const char *p = v->text; ok && *p; p++)
			ok = islower((unsigned char)*p) || isdigit((unsigned char)*p) ||
			     *p == '.' || *p == '_' || *p == '-';
		if (!ok) {
			node_free(*out);
			*out = NULL;
			return VERR(S, v, "'%s' is '%.100s'; expected 1 to 100 characters of "
				    "[a-z0-9._-]", k->path, v->text);
		}
		return 0;
	}
	case KT_ENUM:
		if ((rc = scalar_string(S, k, v, "a string", out)) != 0)
			return rc;
		if (!schema_choice_ok(k->choices, v->text)) {
			node_free(*out);
			*out = NULL;
			if (strcmp(k->path, "sweep.early_terminate.type") == 0 &&
			    strcmp(v->text, "successive_halving") == 0) {
				rc = VERR(S, v, "sweep.early_terminate.type successive_halving was "
					  "replaced by hyperband (W&B's rule)");
				diag_hint(S->d, "write {type: hyperband, metric: validation.loss, "
					  "min_iter: N, eta: 3}; min_iter counts logged values of the "
					  "metric, not steps");
				return rc;
			}
			return enum_error(S, k, v, k->choices);
		}
		return 0;
	case KT_TEMPLATE:
		if ((rc = scalar_string(S, k, v, "a string", out)) != 0)
			return rc;
		if (!schema_choice_ok(k->choices, v->text) && !strstr(v->text, "{prompt}")) {
			node_free(*out);
			*out = NULL;
			rc = VERR(S, v, "'%s' is '%.100s': neither a template name (auto, chatml, "
				  "gemma, alpaca, plain) nor a custom template with {prompt}", k->path,
				  v->text);
			char near[32];
			if (schema_choice_nearest(k->choices, v->text, near, sizeof near))
				diag_hint(S->d, "did you mean '%s'?", near);
			return rc;
		}
		return 0;
	case KT_METRIC:
		if ((rc = scalar_string(S, k, v, "split.metric", out)) != 0)
			return rc;
		if ((rc = check_metric(S, k, v)) != 0) {
			node_free(*out);
			*out = NULL;
		}
		return rc;
	case KT_PATH:
		return resolve_path(S, k, v, out);
	case KT_DURATION: {
		if ((rc = need_scalar(S, k, v, "a duration")) != 0)
			return rc;
		double secs;
		if (!parse_duration(v->text, &secs) || !isfinite(secs))
			return VERR(S, v, "'%s' is '%.100s'; expected a duration such as 90, 90s, "
				    "15m, 2h or 1d", k->path, v->text);
		char buf[40];
		schema_format_double(buf, sizeof buf, secs);
		*out = out_scalar(v, buf, true);
		return *out ? 0 : FT_ENOMEM;
	}
	case KT_STRLIST:
		return resolve_strlist(S, k, v, out);
	case KT_FLOATLIST: {
		if (v->kind != NODE_SEQ || v->n != 2)
			return VERR(S, v, "'%s' must be a list of 2 numbers", k->path);
		struct node *r = node_new(NODE_SEQ);
		if (!r)
			return FT_ENOMEM;
		for (size_t i = 0; i < v->n; i++) {
			struct node *ri = NULL;
			if ((rc = scalar_float(S, k, v->items[i], NULL, &ri)) != 0 ||
			    (rc = node_append(r, ri)) != 0) {
				node_free(r);
				return rc;
			}
		}
		*out = r;
		return 0;
	}
	case KT_SPLIT:
		if (v->kind == NODE_SCALAR)
			return resolve_path(S, k, v, out);
		if (v->kind != NODE_MAP)
			return VERR(S, v, "'%s' must be a path or a map {from, fraction}, not a list",
				    k->path);
		if (!(*out = node_new(NODE_MAP)))
			return FT_ENOMEM;
		(*out)->file = v->file;
		(*out)->line = v->line;
		(*out)->col = v->col;
		return resolve_map(S, k->path, v, *out);
	case KT_TARGETS:
		if (v->kind == NODE_SCALAR) {
			if ((rc = scalar_string(S, k, v, "a list or all-linear", out)) != 0)
				return rc;
			if (strcmp(v->text, "all-linear") != 0) {
				node_free(*out);
				*out = NULL;
				rc = VERR(S, v, "'%s' is '%.100s'; expected a list of module names or "
					  "all-linear", k->path, v->text);
				if (edit_distance(v->text, "all-linear", 3) <= 3)
					diag_hint(S->d, "did you mean 'all-linear'?");
				else
					diag_hint(S->d, "write a list: [%.100s]", v->text);
			}
			return rc;
		}
		if ((rc = resolve_strlist(S, k, v, out)) != 0)
			return rc;
		if (v->n == 0) {
			node_free(*out);
			*out = NULL;
			return VERR(S, v, "'%s' is empty; name at least one module", k->path);
		}
		return 0;
	case KT_GATES:
		return resolve_list_of_maps(S, k, v, "gates[]", out);
	case KT_PARAMS:
		if (v->kind != NODE_MAP)
			return VERR(S, v, "'%s' must be a map of dotted paths, not %s", k->path,
				    kind_name(v));
		return generic_copy(S, v, 0, out);
	case KT_ZIP:
		if (v->kind != NODE_SEQ)
			return VERR(S, v, "'%s' must be a list of maps, not %s", k->path, kind_name(v));
		for (size_t i = 0; i < v->n; i++)
			if (v->items[i]->kind != NODE_MAP)
				return VERR(S, v->items[i], "each entry of '%s' must be a map of "
					    "dotted paths to lists", k->path);
		return generic_copy(S, v, 0, out);
	}
	return VERR(S, v, "internal: unknown key type");
}

/* True when desc is a direct child of prefix ("" for the top level). */
static const char *child_name(const struct key_desc *k, const char *prefix)
{
	size_t pl = strlen(prefix);
	const char *rest;
	if (pl == 0) {
		rest = k->path;
	} else {
		if (strncmp(k->path, prefix, pl) != 0 || k->path[pl] != '.')
			return NULL;
		rest = k->path + pl + 1;
	}
	if (strchr(rest, '.') || strstr(rest, "[]"))
		return NULL;
	return rest;
}

static int unknown_key(struct vstate *S, const char *prefix, const struct node *e)
{
	const char *cands[64];
	size_t n = 0;
	for (size_t i = 0; i < schema_n_keys && n < FT_ARRAY_LEN(cands); i++) {
		const char *c = child_name(&schema_keys[i], prefix);
		if (c)
			cands[n++] = c;
	}
	const char *where = prefix[0] ? prefix : NULL;
	if (strncmp(prefix, "gates[]", 7) == 0)
		where = "a gate";
	int rc;
	if (where)
		rc = VKERR(S, e, "unknown key '%.100s' in '%s'", e->key, where);
	else
		rc = VKERR(S, e, "unknown key '%.100s'", e->key);
	const char *near = nearest_word(e->key, cands, n);
	if (strcmp(prefix, "sweep.early_terminate") == 0 && strcmp(e->key, "min_steps") == 0) {
		diag_hint(S->d, "min_steps belonged to successive_halving; hyperband's first band "
			  "is min_iter, counted in logged values of the metric");
	} else if (near) {
		diag_hint(S->d, "did you mean '%s'?", near);
	} else if (!prefix[0] && strchr(e->key, '.') && schema_find(e->key)) {
		diag_hint(S->d, "write nested keys as maps ('%.100s' is a key inside a section), "
			  "or use -s %.100s=VALUE", e->key, e->key);
	} else {
		struct strbuf sb = {0};
		for (size_t i = 0; i < n; i++)
			if (strbuf_printf(&sb, "%s%s", i ? ", " : "", cands[i]) != 0)
				break;
		diag_hint(S->d, "valid keys here: %s", sb.buf ? sb.buf : "");
		strbuf_free(&sb);
	}
	return rc;
}

static int resolve_map(struct vstate *S, const char *prefix, const struct node *src,
		       struct node *out)
{
	int rc = 0;
	char path[256];
	if (src) {
		if (src->kind != NODE_MAP)
			return VERR(S, src, "'%s' must be a map, not %s", prefix, kind_name(src));
		for (size_t i = 0; i < src->n; i++) {
			const struct node *e = src->items[i];
			snprintf(path, sizeof path, "%s%s%s", prefix, prefix[0] ? "." : "", e->key);
			const struct key_desc *k = schema_find(path);
			if (!k || !child_name(k, prefix))
				return unknown_key(S, prefix, e);
		}
	}
	for (size_t i = 0; i < schema_n_keys; i++) {
		const struct key_desc *k = &schema_keys[i];
		const char *name = child_name(k, prefix);
		if (!name)
			continue;
		const struct node *v = src ? node_get(src, name) : NULL;
		struct node *r = NULL;
		if (v) {
			rc = resolve_value(S, k, v, &r);
		} else if (k->def) {
			const struct node *dv = default_node(k);
			if (!dv)
				return diag_set(S->d, FT_EINTERNAL, NULL, 0, 0,
						"internal: bad default for %s", k->path);
			rc = resolve_value(S, k, dv, &r);
		} else if (k->type == KT_MAP && !(k->flags & KF_OPTMAP)) {
			if (!(r = node_new(NODE_MAP)))
				return FT_ENOMEM;
			rc = resolve_map(S, k->path, NULL, r);
		} else if (k->flags & KF_REQUIRED) {
			const struct node *at = src ? src : S->src_root;
			if (prefix[0])
				rc = VKERR(S, at, "missing required key '%s' in '%s'", name, prefix);
			else
				rc = VKERR(S, at, "missing required key '%s'", name);
			if (strcmp(k->path, "model.base") == 0)
				diag_hint(S->d, "model.base names a .gguf file or a Hugging Face "
					  "model directory");
			return rc;
		} else {
			continue;
		}
		if (rc) {
			node_free(r);
			return rc;
		}
		r->key = ft_strdup(name);
		if (v) {
			r->key_line = v->key_line;
			r->key_col = v->key_col;
		}
		if (!r->key) {
			node_free(r);
			return FT_ENOMEM;
		}
		if ((rc = node_append(out, r)) != 0)
			return rc;
	}
	return 0;
}

/* ---- cross-field rules and computed defaults -------------------------------------- */

static const char *rtext(const struct node *res, const char *path)
{
	const struct node *n = node_get_path(res, path);
	return n && n->kind == NODE_SCALAR ? n->text : NULL;
}

/* Sets (or replaces) path in the resolved tree to a scalar. */
static int rset(struct node *res, const char *path, const char *text, bool plain)
{
	struct node *n = node_new_scalar(text, plain);
	if (!n)
		return FT_ENOMEM;
	n->origin = "default";
	return node_set_path(res, path, n);
}

static void rdel(struct node *res, const char *path)
{
	const char *dot = strrchr(path, '.');
	if (!dot) {
		node_remove(res, path);
		return;
	}
	char parent[128];
	snprintf(parent, sizeof parent, "%.*s", (int)(dot - path), path);
	node_remove(node_get_path(res, parent), dot + 1);
}

/* want is one value or several separated by '|'. */
static bool bar_list_has(const char *want, const char *have)
{
	size_t hl = strlen(have);
	for (const char *p = want; *p;) {
		size_t l = strcspn(p, "|");
		if (l == hl && strncmp(p, have, l) == 0)
			return true;
		p += l;
		if (*p == '|')
			p++;
	}
	return false;
}

static int only_with(struct vstate *S, struct node *res, const char *const *keys, size_t n,
		     const char *sel_path, const char *want)
{
	const char *have = rtext(res, sel_path);
	bool match = have && bar_list_has(want, have);
	for (size_t i = 0; i < n; i++) {
		const struct node *e = node_get_path(S->src_root, keys[i]);
		if (e && have && !match) {
			int wl = (int)strcspn(want, "|");
			char alts[64] = ""; /* "lora|dora" -> "lora or dora" */
			for (const char *q = want; *q; q++) {
				size_t al = strlen(alts);
				snprintf(alts + al, sizeof alts - al, *q == '|' ? " or " : "%c", *q);
			}
			int rc = VKERR(S, e, "'%s' applies only to %s %s, but %s is %s", keys[i],
				       sel_path, alts, sel_path, have);
			diag_hint(S->d, "remove '%s' or set %s: %.*s", keys[i], sel_path, wl, want);
			return rc;
		}
		if (!match)
			rdel(res, keys[i]);
	}
	return 0;
}

static bool split_declared(const struct node *res, const char *split)
{
	char path[64];
	snprintf(path, sizeof path, "data.%s", split);
	return node_get_path(res, path) != NULL;
}

static int check_split_from(struct vstate *S, struct node *res, const char *split)
{
	char path[64];
	snprintf(path, sizeof path, "data.%s", split);
	struct node *sp = node_get_path(res, path);
	if (!sp || sp->kind != NODE_MAP)
		return 0;
	struct node *from = node_get(sp, "from");
	const char *f = from ? from->text : "train";
	const struct node *at = node_get_path(S->src_root, path);
	const struct node *fsrc = at ? node_get(at, "from") : NULL;
	if (!fsrc)
		fsrc = at;
	if (strcmp(f, split) == 0)
		return VERR(S, fsrc, "data.%s.from names the split itself", split);
	char fpath[64];
	snprintf(fpath, sizeof fpath, "data.%s", f);
	const struct node *fs = node_get_path(res, fpath);
	if (!fs) {
		int rc = VERR(S, fsrc, "data.%s.from names '%s', which is not declared", split, f);
		diag_hint(S->d, "declare data.%s, or carve from a split that is declared", f);
		return rc;
	}
	if (fs->kind == NODE_MAP)
		return VERR(S, fsrc, "data.%s.from names '%s', which is itself carved from "
			    "another split; carve from a split that is a file", split, f);
	/* Split seed defaults to the experiment seed. */
	if (!node_get(sp, "seed")) {
		const char *seed = rtext(res, "seed");
		char spath[64];
		snprintf(spath, sizeof spath, "data.%s.seed", split);
		return rset(res, spath, seed ? seed : "0", true);
	}
	return 0;
}

static const struct node *src_or(const struct vstate *S, const char *path, const struct node *r)
{
	const struct node *n = node_get_path(S->src_root, path);
	return n ? n : r;
}

/* Validation during training: train.eval_every evaluates data.validation, and early
 * stopping watches one metric of it at those evaluations. A setting that could never act
 * is refused. */
static int check_evaluation_during_training(struct vstate *S, struct node *res)
{
	int rc;
	const struct node *ee = node_get_path(res, "train.eval_every");
	bool evaluates = ee && strtoll(ee->text, NULL, 10) > 0;
	if (evaluates && !split_declared(res, "validation")) {
		rc = VERR(S, src_or(S, "train.eval_every", ee),
			  "train.eval_every %s evaluates data.validation, which is not declared",
			  ee->text);
		diag_hint(S->d, "declare data.validation (a file or {from: train, fraction: "
			  "0.1}), or remove train.eval_every");
		return rc;
	}
	const struct node *es_map = node_get_path(S->src_root, "train.early_stopping");
	struct node *es = node_get_path(res, "train.early_stopping.metric");
	if (!es)
		return 0;
	const struct node *at = src_or(S, "train.early_stopping.metric", es);
	const char *dot = strchr(es->text, '.');
	char split[32];
	snprintf(split, sizeof split, "%.*s", (int)(strcspn(es->text, ".") & 31), es->text);
	if (strcmp(split, "validation") != 0) {
		rc = VERR(S, at, "train.early_stopping.metric '%s' watches split '%s'; early "
			  "stopping watches the validation split", es->text, split);
		diag_hint(S->d, "write validation.%s (and declare data.validation)",
			  dot ? dot + 1 : "loss");
		return rc;
	}
	if (!split_declared(res, "validation")) {
		rc = VERR(S, at, "train.early_stopping.metric '%s' needs data.validation, which is "
			  "not declared", es->text);
		diag_hint(S->d, "declare data.validation (a file or {from: train, fraction: 0.1})");
		return rc;
	}
	const struct key_desc *mk = schema_find("eval.metrics");
	if (dot && !schema_choice_ok(mk->choices, dot + 1)) {
		rc = VERR(S, at, "train.early_stopping.metric '%s': '%s' is not a metric the "
			  "validation split computes", es->text, dot + 1);
		char near[32];
		if (schema_choice_nearest(mk->choices, dot + 1, near, sizeof near))
			diag_hint(S->d, "did you mean 'validation.%s'? (one of %s)", near, mk->choices);
		return rc;
	}
	bool generated = dot && strcmp(dot + 1, "loss") != 0 && strcmp(dot + 1, "perplexity") != 0 &&
			 strcmp(dot + 1, "token_accuracy") != 0;
	const char *fmt = rtext(res, "data.format");
	if (generated && fmt && strcmp(fmt, "text") == 0) {
		rc = VERR(S, at, "train.early_stopping.metric '%s' scores generated answers, but "
			  "data.format text has no references", es->text);
		diag_hint(S->d, "watch validation.loss, validation.perplexity or "
			  "validation.token_accuracy");
		return rc;
	}
	const char *obj = rtext(res, "train.objective");
	if (obj && strcmp(obj, "sft") != 0 && dot && strcmp(dot + 1, "loss") != 0) {
		rc = VERR(S, at, "train.early_stopping.metric '%s': with train.objective %s the "
			  "validation split computes its preference loss only", es->text, obj);
		diag_hint(S->d, "watch validation.loss");
		return rc;
	}
	if (!evaluates) {
		rc = VKERR(S, es_map ? es_map : at, "train.early_stopping needs train.eval_every > 0: "
			   "the metric is evaluated every eval_every steps, and with eval_every 0 "
			   "(only at the end) it could never stop anything");
		diag_hint(S->d, "set train.eval_every (for example 50)");
		return rc;
	}
	return 0;
}

/* data.fields: each key applies to some formats only (a key of another format would be
 * read by nothing), and the aliases name their format's own field: response is the
 * completion (completion format) or the output (instruction format), prompt the
 * instruction (instruction format). The alias's value moves to the field it names, so
 * the resolved config says what is read. */
/* The source node of path when the file sets it to something other than its default (a
 * field mapped to its own default name maps nothing: a resolved config written back as a
 * file still loads), else NULL. */
static const struct node *set_to_non_default(struct vstate *S, struct node *res,
					     const char *path)
{
	const struct node *e = node_get_path(S->src_root, path);
	const struct key_desc *k = schema_find(path);
	const char *v = rtext(res, path);
	if (!e || (k && k->def && v && strcmp(k->def, v) == 0))
		return NULL;
	return e;
}

static int check_fields(struct vstate *S, struct node *res)
{
	static const struct {
		const char *field, *formats;
	} applies[] = {
		{"text", "text"},
		{"prompt", "completion|instruction|preference"},
		{"completion", "completion"},
		{"response", "completion|instruction"},
		{"instruction", "instruction"},
		{"input", "instruction"},
		{"output", "instruction"},
		{"messages", "chat"},
		{"system", "completion|instruction|preference"},
		{"chosen", "preference"},
		{"rejected", "preference"},
		{"choices", "completion|instruction|chat"},
		{"answer", "completion|instruction|chat"},
	};
	const char *fmt = rtext(res, "data.format");
	if (!fmt)
		return 0;
	char path[64];
	for (size_t i = 0; i < FT_ARRAY_LEN(applies); i++) {
		snprintf(path, sizeof path, "data.fields.%s", applies[i].field);
		const struct node *e = set_to_non_default(S, res, path);
		if (e && !schema_choice_ok(applies[i].formats, fmt)) {
			/* "a|b|c" as "a, b or c" */
			char formats[96];
			size_t w = 0;
			const char *last = strrchr(applies[i].formats, '|');
			for (const char *f = applies[i].formats; *f && w + 5 < sizeof formats; f++) {
				if (*f != '|') {
					formats[w++] = *f;
					continue;
				}
				const char *sep = f == last ? " or " : ", ";
				size_t n = strlen(sep);
				memcpy(formats + w, sep, n);
				w += n;
			}
			formats[w] = '\0';
			int rc = VKERR(S, e, "data.fields.%s is read by data.format %s only, but "
				       "data.format is %s", applies[i].field, formats, fmt);
			diag_hint(S->d, "remove it, or map the fields data.format %s reads", fmt);
			return rc;
		}
	}
	/* The aliases. */
	static const struct {
		const char *format, *alias, *field;
	} aliases[] = {
		{"completion", "response", "completion"},
		{"instruction", "response", "output"},
		{"instruction", "prompt", "instruction"},
	};
	for (size_t i = 0; i < FT_ARRAY_LEN(aliases); i++) {
		if (strcmp(fmt, aliases[i].format) != 0)
			continue;
		snprintf(path, sizeof path, "data.fields.%s", aliases[i].alias);
		const struct node *a = set_to_non_default(S, res, path);
		if (!a)
			continue;
		char fpath[64];
		snprintf(fpath, sizeof fpath, "data.fields.%s", aliases[i].field);
		const struct node *f = set_to_non_default(S, res, fpath);
		const char *av = rtext(res, path);
		if (f && av && strcmp(rtext(res, fpath), av) != 0) {
			int rc = VKERR(S, a, "data.fields.%s and data.fields.%s name the same field of "
				       "data.format %s, with different keys ('%s', '%s')",
				       aliases[i].alias, aliases[i].field, fmt, av, rtext(res, fpath));
			diag_hint(S->d, "keep one of them");
			return rc;
		}
		if (av) {
			int rc = rset(res, fpath, av, false);
			if (rc)
				return rc;
		}
	}
	return 0;
}

/* train.objective and train.preference: a preference objective needs preference data and
 * a trained method; each key of train.preference belongs to the objectives (and loss
 * types) it acts in and is refused elsewhere; sft has no train.preference at all. */
static int preference_rules(struct vstate *S, struct node *res)
{
	static const struct {
		const char *key, *objectives;
	} owner[] = {
		{"beta", "dpo|simpo"},
		{"loss_type", "dpo"},
		{"label_smoothing", "dpo|simpo"},
		{"lambda", "orpo"},
		{"gamma", "simpo"},
	};
	const char *obj = rtext(res, "train.objective");
	const char *fmt = rtext(res, "data.format");
	const struct node *obj_src = node_get_path(S->src_root, "train.objective");
	const struct node *at = obj_src ? obj_src : node_get_path(res, "train.objective");
	int rc;
	if (!obj || strcmp(obj, "sft") == 0) {
		const struct node *p = node_get_path(S->src_root, "train.preference");
		if (p && p->kind == NODE_MAP && p->n) {
			rc = VKERR(S, p->items[0], "'train.preference.%s' applies only to train.objective "
				   "dpo, orpo or simpo, but train.objective is %s", p->items[0]->key,
				   obj ? obj : "sft");
			diag_hint(S->d, "remove train.preference, or set train.objective");
			return rc;
		}
		rdel(res, "train.preference");
		return 0;
	}
	if (!fmt || strcmp(fmt, "preference") != 0) {
		rc = VERR(S, at, "train.objective %s trains on preference pairs, so data.format must be "
			  "preference (it is %s)", obj, fmt ? fmt : "text");
		diag_hint(S->d, "preference data has {\"prompt\", \"chosen\", \"rejected\"} per line; "
			  "or set train.objective: sft");
		return rc;
	}
	const char *mtype = rtext(res, "method.type");
	if (mtype && strcmp(mtype, "none") == 0) {
		rc = VERR(S, at, "train.objective %s trains a model, but method.type is none", obj);
		diag_hint(S->d, "set method.type (lora, full or freeze), or remove train.objective");
		return rc;
	}
	const char *pack = rtext(res, "data.packing");
	if (pack && strcmp(pack, "true") == 0) {
		const struct node *pk = src_or(S, "data.packing", at);
		rc = VERR(S, pk, "data.packing does not apply to train.objective %s: each chosen and "
			  "rejected completion is a row of its own", obj);
		diag_hint(S->d, "remove data.packing");
		return rc;
	}
	const struct node *toi = node_get_path(S->src_root, "data.train_on_inputs");
	if (toi && strcmp(toi->text, "true") == 0 && strcmp(obj, "orpo") != 0) {
		rc = VERR(S, toi, "data.train_on_inputs has no effect with train.objective %s: its "
			  "loss compares the completions' log-probabilities", obj);
		diag_hint(S->d, "remove it (with orpo it extends the SFT term to the prompt)");
		return rc;
	}
	char path[64];
	for (size_t i = 0; i < FT_ARRAY_LEN(owner); i++) {
		snprintf(path, sizeof path, "train.preference.%s", owner[i].key);
		if (schema_choice_ok(owner[i].objectives, obj))
			continue;
		const struct node *e = node_get_path(S->src_root, path);
		if (e) {
			char list[32];
			snprintf(list, sizeof list, "%s", owner[i].objectives);
			for (char *q = strchr(list, '|'); q; q = strchr(q, '|'))
				*q = '/';
			rc = VKERR(S, e, "'%s' applies only to train.objective %s, but train.objective is "
				   "%s", path, list, obj);
			diag_hint(S->d, "remove '%s'", path);
			return rc;
		}
		rdel(res, path);
	}
	const char *lt = rtext(res, "train.preference.loss_type");
	const char *ls = rtext(res, "train.preference.label_smoothing");
	if (lt && strcmp(lt, "sigmoid") != 0 && ls && strtod(ls, NULL) != 0.0) {
		const struct node *e = src_or(S, "train.preference.label_smoothing",
					      node_get_path(res, "train.preference.label_smoothing"));
		rc = VERR(S, e, "train.preference.label_smoothing applies to loss_type sigmoid, not %s",
			  lt);
		diag_hint(S->d, "remove label_smoothing or set loss_type: sigmoid");
		return rc;
	}
	return 0;
}

/* Metrics that need a data format: the preference metrics compare chosen and rejected
 * completions, the choice metrics score a prompt's choices; eval.choices feeds them. */
static int metric_rules(struct vstate *S, struct node *res)
{
	const char *fmt = rtext(res, "data.format");
	const struct node *metrics = node_get_path(res, "eval.metrics");
	bool pref = fmt && strcmp(fmt, "preference") == 0;
	bool choice_fmt = fmt && schema_choice_ok("completion|instruction|chat", fmt);
	bool want_choice = false;
	int rc;
	for (size_t i = 0; metrics && i < metrics->n; i++) {
		const struct node *m = metrics->items[i];
		bool is_pref = strncmp(m->text, "preference_", 11) == 0;
		bool is_choice = strncmp(m->text, "choice_", 7) == 0;
		want_choice |= is_choice;
		if (is_pref && !pref) {
			rc = VERR(S, m, "eval.metrics: %s compares chosen and rejected completions, so "
				  "data.format must be preference (it is %s)", m->text, fmt ? fmt : "text");
			diag_hint(S->d, "remove %s, or use preference data", m->text);
			return rc;
		}
		if (is_choice && !choice_fmt) {
			rc = VERR(S, m, "eval.metrics: %s scores a prompt's choices, which data.format %s "
				  "does not have (completion, instruction or chat data do)", m->text,
				  fmt ? fmt : "text");
			diag_hint(S->d, "remove %s", m->text);
			return rc;
		}
	}
	const struct node *ch = node_get_path(res, "eval.choices");
	if (ch) {
		const struct node *at = src_or(S, "eval.choices", ch);
		if (!choice_fmt) {
			rc = VERR(S, at, "eval.choices labels the responses of completion, instruction or "
				  "chat data, not data.format %s", fmt ? fmt : "text");
			diag_hint(S->d, "remove eval.choices");
			return rc;
		}
		if (!want_choice) {
			rc = VERR(S, at, "eval.choices is used by the choice metrics, and eval.metrics has "
				  "none");
			diag_hint(S->d, "add choice_accuracy (and choice_accuracy_norm) to eval.metrics");
			return rc;
		}
		if (ch->n < 2)
			return VERR(S, at, "eval.choices needs at least two labels");
	}
	return 0;
}

/* The Slurm formats of launcher.time and launcher.mem; sbatch_args are options. */
static int launcher_rules(struct vstate *S, struct node *res)
{
	double sec;
	const struct node *t = node_get_path(res, "launcher.time");
	if (t && t->kind == NODE_SCALAR && !schema_slurm_time(t->text, &sec)) {
		int rc = VERR(S, src_or(S, "launcher.time", t),
			      "launcher.time '%.100s' is not a time limit", t->text);
		diag_hint(S->d, "Slurm's forms: 90 (minutes), 30:00, 04:00:00, 1-12:00:00; or 90m, "
			  "4h, 1d");
		return rc;
	}
	const struct node *m = node_get_path(res, "launcher.mem");
	if (m && m->kind == NODE_SCALAR && !schema_slurm_mem_ok(m->text)) {
		int rc = VERR(S, src_or(S, "launcher.mem", m),
			      "launcher.mem '%.100s' is not a memory size", m->text);
		diag_hint(S->d, "digits with K, M, G or T, as sbatch --mem takes them: 16G, 500M");
		return rc;
	}
	static const char *const names[] = {"launcher.partition", "launcher.account",
					    "launcher.qos"};
	for (size_t i = 0; i < FT_ARRAY_LEN(names); i++) {
		const struct node *n = node_get_path(res, names[i]);
		if (!n || n->kind != NODE_SCALAR)
			continue;
		bool ok = n->text[0] != '\0';
		for (const char *p = n->text; *p; p++)
			if ((unsigned char)*p <= ' ' || *p == 0x7f)
				ok = false;
		if (!ok)
			return VERR(S, src_or(S, names[i], n),
				    "%s must be a name without spaces or control characters",
				    names[i]);
	}
	const struct node *sa = node_get_path(res, "launcher.sbatch_args");
	for (size_t i = 0; sa && sa->kind == NODE_SEQ && i < sa->n; i++)
		if (sa->items[i]->text[0] != '-') {
			int rc = VERR(S, sa->items[i],
				      "launcher.sbatch_args entry '%.100s' is not an sbatch option",
				      sa->items[i]->text);
			diag_hint(S->d, "give options with their leading dashes, e.g. "
				  "--constraint=a100; the batch script is ftlab's");
			return rc;
		}
	return 0;
}

/* sweep.early_terminate: min_iter, or max_iter with s; the metric and goal default to the
 * objective's; the metric must be one that is logged while a run trains. */
static int early_terminate_rules(struct vstate *S, struct node *res)
{
	struct node *et = node_get_path(res, "sweep.early_terminate");
	if (!et)
		return 0;
	int rc;
	const struct node *mi = node_get(et, "min_iter"), *mx = node_get(et, "max_iter");
	const struct node *sn = node_get(et, "s");
	const struct node *at = src_or(S, "sweep.early_terminate", et);
	if (mi && (mx || sn)) {
		rc = VKERR(S, src_or(S, mx ? "sweep.early_terminate.max_iter" :
				     "sweep.early_terminate.s", mx ? mx : sn),
			   "sweep.early_terminate takes min_iter, or max_iter and s, not both");
		diag_hint(S->d, "min_iter sets the first band; max_iter and s set the last band and "
			  "how many come before it");
		return rc;
	}
	if (!mi && !(mx && sn)) {
		if (mx)
			return VKERR(S, src_or(S, "sweep.early_terminate.max_iter", mx),
				     "sweep.early_terminate.max_iter needs s, the number of bands");
		if (sn)
			return VKERR(S, src_or(S, "sweep.early_terminate.s", sn),
				     "sweep.early_terminate.s needs max_iter");
		rc = VKERR(S, at, "sweep.early_terminate needs min_iter, or max_iter and s");
		diag_hint(S->d, "for example {type: hyperband, min_iter: 3, eta: 3}");
		return rc;
	}
	double eta = strtod(rtext(res, "sweep.early_terminate.eta"), NULL);
	if (mx && strtod(mx->text, NULL) / eta < 1.0)
		return VKERR(S, src_or(S, "sweep.early_terminate.max_iter", mx),
			     "sweep.early_terminate: max_iter %s / eta %g is below one iteration, so "
			     "there is no band", mx->text, eta);
	const char *obj = rtext(res, "sweep.objective.metric");
	const char *metric = rtext(res, "sweep.early_terminate.metric");
	if (!metric && !obj) {
		rc = VKERR(S, at, "sweep.early_terminate needs a metric, or a sweep.objective whose "
			   "metric it watches");
		diag_hint(S->d, "add metric: validation.loss");
		return rc;
	}
	if (!metric) {
		if ((rc = rset(res, "sweep.early_terminate.metric", obj, false)) != 0)
			return rc;
		metric = obj;
	}
	if (!node_get(et, "goal")) {
		const char *goal = obj && strcmp(obj, metric) == 0
					   ? rtext(res, "sweep.objective.goal") : "minimize";
		if ((rc = rset(res, "sweep.early_terminate.goal", goal, false)) != 0)
			return rc;
	}
	const struct node *mn = node_get_path(res, "sweep.early_terminate.metric");
	const struct node *mat = src_or(S, "sweep.early_terminate.metric",
					mn->origin && strcmp(mn->origin, "default") == 0 ? at : mn);
	if (strncmp(metric, "test.", 5) == 0) {
		rc = VERR(S, mat, "sweep.early_terminate watches '%s', but the test split is "
			  "evaluated once, after training; hyperband compares values logged while a "
			  "run trains", metric);
		diag_hint(S->d, "set sweep.early_terminate.metric: validation.loss");
		return rc;
	}
	const char *btype = rtext(res, "backend.type");
	if (btype && strcmp(btype, "exec") == 0)
		return 0;
	if (strcmp(metric, "validation.loss") != 0 && strcmp(metric, "train.loss") != 0) {
		rc = VERR(S, mat, "sweep.early_terminate watches '%s', which the native engine does "
			  "not log while it trains", metric);
		diag_hint(S->d, "the engine logs validation.loss (every train.eval_every steps) and "
			  "train.loss (every step)");
		return rc;
	}
	if (strcmp(metric, "validation.loss") == 0) {
		const char *ev = rtext(res, "train.eval_every");
		if (!split_declared(res, "validation"))
			return VERR(S, mat, "sweep.early_terminate watches validation.loss, which needs "
				    "data.validation");
		if (!ev || strcmp(ev, "0") == 0) {
			rc = VERR(S, mat, "sweep.early_terminate watches validation.loss, which is "
				  "logged only with train.eval_every > 0");
			diag_hint(S->d, "set train.eval_every: N (an evaluation every N steps is one "
				  "hyperband iteration)");
			return rc;
		}
	}
	return 0;
}

bool schema_method_type_swept(const struct node *res)
{
	const struct node *sw = node_get(res, "sweep");
	if (!sw || sw->kind != NODE_MAP)
		return false;
	const struct node *pa = node_get(sw, "parameters"), *zip = node_get(sw, "zip");
	if (pa && pa->kind == NODE_MAP && node_get(pa, "method.type"))
		return true;
	for (size_t i = 0; zip && zip->kind == NODE_SEQ && i < zip->n; i++)
		if (zip->items[i]->kind == NODE_MAP && node_get(zip->items[i], "method.type"))
			return true;
	return false;
}

/* Each key of some methods only (schema_method_keys) with method.type one of them. The
 * file of a sweep over method.type may hold the keys of every swept method: each point
 * keeps its own method's (schema/experiment.c) and is checked here, and the sweep refuses
 * a key no swept method reads (runner/sweep.c). */
static int method_key_rules(struct vstate *S, struct node *res)
{
	if (!S->ctx && schema_method_type_swept(res))
		return 0;
	for (size_t i = 0; i < schema_n_method_keys; i++) {
		int rc = only_with(S, res, &schema_method_keys[i].path, 1, "method.type",
				   schema_method_keys[i].methods);
		if (rc)
			return rc;
	}
	return 0;
}

/* prefix: encoder_hidden_size sizes the projection, so only with prefix_projection true. */
static int prefix_rules(struct vstate *S, struct node *res)
{
	static const char *const keys[] = {"method.encoder_hidden_size"};
	const char *mt = rtext(res, "method.type");
	if (!mt || strcmp(mt, "prefix") != 0)
		return 0;
	return only_with(S, res, keys, 1, "method.prefix_projection", "true");
}

/* ia3: targets and feedforward_targets left out when not given (the engine uses PEFT's
 * defaults for the architecture); given feed-forward targets must be targets. */
static int ia3_rules(struct vstate *S, struct node *res)
{
	const char *mt = rtext(res, "method.type");
	if (!mt || strcmp(mt, "ia3") != 0)
		return 0;
	const struct node *tg = node_get_path(S->src_root, "method.targets");
	const struct node *ff = node_get_path(S->src_root, "method.feedforward_targets");
	if (!tg)
		rdel(res, "method.targets");
	if (!ff) {
		rdel(res, "method.feedforward_targets");
		return 0;
	}
	const struct node *rt = node_get_path(res, "method.targets");
	if (!tg || !rt || rt->kind != NODE_SEQ || ff->kind != NODE_SEQ)
		return 0; /* all-linear, or the default targets: checked by the engine */
	for (size_t i = 0; i < ff->n; i++) {
		bool found = false;
		for (size_t k = 0; k < rt->n && !found; k++)
			found = strcmp(ff->items[i]->text, rt->items[k]->text) == 0;
		if (!found) {
			int rc = VKERR(S, ff, "method.feedforward_targets names '%s', which is not "
				       "among method.targets", ff->items[i]->text);
			diag_hint(S->d, "add it to method.targets, or remove it");
			return rc;
		}
	}
	return 0;
}

/* Settings that nothing would read in this experiment are refused (when set to something
 * other than their default, so a resolved config written back still loads): a CUDA
 * device for a backend that is not CUDA, and for the native engine: training keys
 * without training, prompt keys of plain text, the final learning rate of a constant
 * schedule, evaluation keys when no split is evaluated, generation keys without a
 * generation metric, top_k/top_p with greedy decoding, limits of undeclared splits. */
static int check_unread(struct vstate *S, struct node *res)
{
	int rc;
	const struct node *e;
	const char *bt = rtext(res, "backend.type");
	if (bt && (strcmp(bt, "cpu") == 0 || strcmp(bt, "exec") == 0) &&
	    (e = set_to_non_default(S, res, "backend.device")) != NULL) {
		rc = VKERR(S, e, "'backend.device' chooses a CUDA device, but backend.type is %s",
			   bt);
		diag_hint(S->d, "remove it, or set backend.type: cuda (or auto)");
		return rc;
	}
	/* An external trainer gets the whole config: which keys it reads is its business
	 * (docs/exec-backend.md). What follows is what the native engine would not read. */
	if (bt && strcmp(bt, "exec") == 0)
		return 0;
	const char *mtype = rtext(res, "method.type");
	if (mtype && strcmp(mtype, "none") == 0) {
		/* Every train key set to something else than what it resolves to by default
		 * (epochs' computed default is 1; early stopping is off unless written). */
		for (size_t i = 0; i < schema_n_keys; i++) {
			const struct key_desc *kd = &schema_keys[i];
			if (strncmp(kd->path, "train.", 6) != 0 ||
			    (kd->type == KT_MAP && !(kd->flags & KF_OPTMAP)))
				continue;
			const char *v = rtext(res, kd->path);
			if (strcmp(kd->path, "train.epochs") == 0 && v && strcmp(v, "1") == 0)
				continue;
			e = kd->def ? set_to_non_default(S, res, kd->path)
				    : node_get_path(S->src_root, kd->path);
			if (!e)
				continue;
			rc = VKERR(S, e, "'%s' is a training setting, but method.type none trains "
				   "nothing", kd->path);
			diag_hint(S->d, "remove it, or choose a method that trains");
			return rc;
		}
		if ((e = set_to_non_default(S, res, "data.packing")) != NULL) {
			rc = VKERR(S, e, "'data.packing' packs training rows, but method.type none "
				   "trains nothing");
			return rc;
		}
		if ((e = set_to_non_default(S, res, "eval.compare_base")) != NULL) {
			rc = VKERR(S, e, "'eval.compare_base' compares the tuned model with the base "
				   "model, but method.type none evaluates the base model only");
			return rc;
		}
		/* The training split is read only when it is evaluated or carved from. */
		bool train_read = false;
		const struct node *sl = node_get_path(res, "eval.splits");
		for (size_t i = 0; sl && i < sl->n; i++)
			train_read |= strcmp(sl->items[i]->text, "train") == 0;
		static const char *const froms[] = {"data.validation.from", "data.test.from"};
		for (size_t i = 0; i < FT_ARRAY_LEN(froms); i++) {
			const char *f = rtext(res, froms[i]);
			train_read |= f && strcmp(f, "train") == 0;
		}
		static const char *const train_keys[] = {"data.train", "data.limit.train"};
		for (size_t i = 0; i < FT_ARRAY_LEN(train_keys) && !train_read; i++) {
			if (!(e = node_get_path(S->src_root, train_keys[i])))
				continue;
			rc = VKERR(S, e, "'%s' is about the training split, but method.type none "
				   "trains nothing and nothing else reads that split", train_keys[i]);
			diag_hint(S->d, "remove it, evaluate the split with eval.splits: [train], or "
				  "choose a method that trains");
			return rc;
		}
	}
	/* Plain text trains on every token as it is: no template, system prompt or prompt
	 * part to leave out. */
	const char *fmt = rtext(res, "data.format");
	static const char *const prompt_keys[] = {"data.template", "data.system",
						  "data.train_on_inputs"};
	for (size_t i = 0; fmt && strcmp(fmt, "text") == 0 && i < FT_ARRAY_LEN(prompt_keys); i++) {
		bool set = schema_find(prompt_keys[i])->def
				   ? set_to_non_default(S, res, prompt_keys[i]) != NULL
				   : node_get_path(S->src_root, prompt_keys[i]) != NULL;
		if (set) {
			e = node_get_path(S->src_root, prompt_keys[i]);
			rc = VKERR(S, e, "'%s' shapes prompts and responses, but data.format text has "
				   "neither (every token is trained on as it is)", prompt_keys[i]);
			diag_hint(S->d, "remove it, or use data.format completion, instruction or chat");
			return rc;
		}
	}
	/* The learning rate of a constant schedule never decays. */
	const char *sched = rtext(res, "train.schedule.type");
	if (sched && strcmp(sched, "constant") == 0 &&
	    (e = set_to_non_default(S, res, "train.schedule.min_lr_ratio")) != NULL) {
		rc = VKERR(S, e, "'train.schedule.min_lr_ratio' is where a decaying schedule ends, "
			   "but train.schedule.type constant keeps the learning rate at lr");
		diag_hint(S->d, "remove it, or set train.schedule.type: linear or cosine");
		return rc;
	}
	/* The evaluation after training needs a split to evaluate (during training only
	 * the validation loss and the early-stopping metric are computed). */
	const struct node *splits = node_get_path(res, "eval.splits");
	const struct node *metrics = node_get_path(res, "eval.metrics");
	bool evaluates = splits && splits->n > 0;
	if (!evaluates) {
		bool only_loss = metrics && metrics->n == 1 && strcmp(metrics->items[0]->text, "loss") == 0;
		const char *what = NULL;
		if (!only_loss && (e = node_get_path(S->src_root, "eval.metrics")) != NULL)
			what = "eval.metrics";
		else if ((e = set_to_non_default(S, res, "eval.bootstrap")) != NULL)
			what = "eval.bootstrap";
		else if ((e = set_to_non_default(S, res, "eval.compare_base")) != NULL)
			what = "eval.compare_base";
		if (what) {
			rc = VKERR(S, e, "'%s' applies to the evaluation after training, but no split "
				   "is evaluated (eval.splits is empty)", what);
			diag_hint(S->d, "declare data.test or data.validation (evaluated by default), "
				  "or remove it");
			return rc;
		}
	}
	/* Generation settings need a generation metric to act on. */
	bool generates = false;
	for (size_t i = 0; evaluates && metrics && i < metrics->n; i++) {
		const char *m = metrics->items[i]->text;
		generates |= strcmp(m, "loss") != 0 && strcmp(m, "perplexity") != 0 &&
			     strcmp(m, "token_accuracy") != 0;
	}
	const char *es = rtext(res, "train.early_stopping.metric");
	if (es && strchr(es, '.')) {
		const char *m = strchr(es, '.') + 1;
		generates |= strcmp(m, "loss") != 0 && strcmp(m, "perplexity") != 0 &&
			     strcmp(m, "token_accuracy") != 0;
	}
	static const char *const gen_keys[] = {"eval.generate.max_new_tokens",
					       "eval.generate.temperature", "eval.generate.top_k",
					       "eval.generate.top_p", "eval.generate.stop",
					       "eval.samples"};
	for (size_t i = 0; i < FT_ARRAY_LEN(gen_keys) && !generates; i++) {
		e = node_get_path(S->src_root, gen_keys[i]);
		const struct key_desc *kd = schema_find(gen_keys[i]);
		bool non_default = e && (kd->type == KT_STRLIST
						 ? e->kind != NODE_SEQ || e->n > 0
						 : set_to_non_default(S, res, gen_keys[i]) != NULL);
		if (non_default) {
			rc = VKERR(S, e, "'%s' applies to generated answers, but no metric generates "
				   "(eval.metrics has none of exact_match, f1, bleu, rouge_l, chrf)",
				   gen_keys[i]);
			diag_hint(S->d, "add a generation metric to eval.metrics, or remove it");
			return rc;
		}
	}
	/* Greedy decoding takes the most likely token: nothing is sampled to filter. */
	const char *temp = rtext(res, "eval.generate.temperature");
	static const char *const samplers[] = {"eval.generate.top_k", "eval.generate.top_p"};
	for (size_t i = 0; temp && strtod(temp, NULL) == 0.0 && i < FT_ARRAY_LEN(samplers); i++)
		if ((e = set_to_non_default(S, res, samplers[i])) != NULL) {
			rc = VKERR(S, e, "'%s' filters the tokens sampling draws from, but "
				   "eval.generate.temperature 0 decodes greedily (nothing is sampled)",
				   samplers[i]);
			diag_hint(S->d, "set eval.generate.temperature above 0 to sample, or remove it");
			return rc;
		}
	static const char *const limits[][2] = {{"data.limit.train", "train"},
						{"data.limit.validation", "validation"},
						{"data.limit.test", "test"}};
	for (size_t i = 0; i < FT_ARRAY_LEN(limits); i++)
		if (!split_declared(res, limits[i][1]) &&
		    (e = set_to_non_default(S, res, limits[i][0])) != NULL) {
			rc = VKERR(S, e, "'%s' limits data.%s, which is not declared", limits[i][0],
				   limits[i][1]);
			return rc;
		}
	return 0;
}

static int cross_rules(struct vstate *S, struct node *res)
{
	int rc;
	static const char *const exec_keys[] = {"backend.command", "backend.timeout",
						"backend.metrics_file", "backend.workdir"};
	static const char *const adamw_keys[] = {"train.optimizer.betas", "train.optimizer.eps"};
	static const char *const sgd_keys[] = {"train.optimizer.momentum",
					       "train.optimizer.dampening",
					       "train.optimizer.nesterov"};
	static const char *const slurm_keys[] = {
		"launcher.partition", "launcher.account", "launcher.qos", "launcher.time",
		"launcher.cpus_per_task", "launcher.mem", "launcher.gpus_per_task",
		"launcher.array_parallelism", "launcher.sbatch_args", "launcher.setup"};
	if ((rc = only_with(S, res, slurm_keys, FT_ARRAY_LEN(slurm_keys), "launcher.type",
			    "slurm")) ||
	    (rc = launcher_rules(S, res)) ||
	    (rc = method_key_rules(S, res)) ||
	    (rc = ia3_rules(S, res)) ||
	    (rc = prefix_rules(S, res)) ||
	    (rc = only_with(S, res, exec_keys, FT_ARRAY_LEN(exec_keys), "backend.type", "exec")) ||
	    (rc = only_with(S, res, adamw_keys, FT_ARRAY_LEN(adamw_keys), "train.optimizer.type",
			    "adamw")) ||
	    (rc = only_with(S, res, sgd_keys, FT_ARRAY_LEN(sgd_keys), "train.optimizer.type",
			    "sgd")))
		return rc;
	/* Nesterov momentum as PyTorch allows it: momentum > 0 and no dampening. */
	const char *nest = rtext(res, "train.optimizer.nesterov");
	if (nest && strcmp(nest, "true") == 0) {
		const char *mo = rtext(res, "train.optimizer.momentum");
		const char *da = rtext(res, "train.optimizer.dampening");
		const struct node *at = src_or(S, "train.optimizer.nesterov",
					       node_get_path(res, "train.optimizer.nesterov"));
		if (!mo || strtod(mo, NULL) <= 0 || (da && strtod(da, NULL) != 0)) {
			rc = VKERR(S, at, "train.optimizer.nesterov needs momentum > 0 and dampening 0 "
				   "(momentum is %s, dampening %s)", mo ? mo : "0.0", da ? da : "0.0");
			diag_hint(S->d, "set train.optimizer.momentum (for example 0.9), or remove "
				  "nesterov");
			return rc;
		}
	}

	if ((rc = preference_rules(S, res)) != 0 || (rc = metric_rules(S, res)) != 0)
		return rc;

	/* epochs xor steps. */
	const struct node *steps = node_get_path(S->src_root, "train.steps");
	const struct node *epochs = node_get_path(S->src_root, "train.epochs");
	if (steps && epochs) {
		rc = VKERR(S, steps, "give train.steps or train.epochs, not both (epochs at %d:%d)",
			   epochs->key_line, epochs->key_col);
		diag_hint(S->d, "remove one of them");
		return rc;
	}
	if (!node_get_path(res, "train.steps") && !node_get_path(res, "train.epochs") &&
	    (rc = rset(res, "train.epochs", "1", true)) != 0)
		return rc;

	/* Training needs a train split. */
	const char *mtype = rtext(res, "method.type");
	if (mtype && strcmp(mtype, "none") != 0 && !split_declared(res, "train")) {
		const struct node *at = src_or(S, "method.type", node_get_path(res, "method.type"));
		const struct node *data = node_get_path(S->src_root, "data");
		rc = data ? VKERR(S, data, "method.type %s trains a model, so data.train is required",
				  mtype)
			  : VKERR(S, at, "method.type %s trains a model, so data.train is required",
				  mtype);
		diag_hint(S->d, "add data.train, or set method.type: none to evaluate the base "
			  "model only");
		return rc;
	}
	if ((rc = check_split_from(S, res, "validation")) != 0 ||
	    (rc = check_split_from(S, res, "test")) != 0)
		return rc;

	/* eval.splits: declared splits; default: the declared of validation, test. */
	struct node *splits = node_get_path(res, "eval.splits");
	if (splits) {
		for (size_t i = 0; i < splits->n; i++)
			if (!split_declared(res, splits->items[i]->text)) {
				rc = VERR(S, splits->items[i], "eval.splits names '%s', which is not "
					  "declared in data", splits->items[i]->text);
				diag_hint(S->d, "declare data.%s or remove it from eval.splits",
					  splits->items[i]->text);
				return rc;
			}
	} else {
		struct node *list = node_new(NODE_SEQ);
		if (!list)
			return FT_ENOMEM;
		list->origin = "default";
		static const char *const cands[] = {"validation", "test"};
		for (size_t i = 0; i < 2; i++) {
			if (!split_declared(res, cands[i]))
				continue;
			struct node *s = node_new_scalar(cands[i], false);
			if (!s || node_append(list, s) != 0) {
				node_free(list);
				return FT_ENOMEM;
			}
		}
		if ((rc = node_set_path(res, "eval.splits", list)) != 0)
			return rc;
	}

	/* data.max_length defaults to and is bounded by model.context. */
	const char *ctxlen = rtext(res, "model.context");
	struct node *ml = node_get_path(res, "data.max_length");
	if (!ml) {
		if ((rc = rset(res, "data.max_length", ctxlen ? ctxlen : "512", true)) != 0)
			return rc;
	} else if (ctxlen && strtoll(ml->text, NULL, 10) > strtoll(ctxlen, NULL, 10)) {
		rc = VERR(S, ml, "data.max_length %s is longer than model.context %s", ml->text,
			  ctxlen);
		diag_hint(S->d, "raise model.context or lower data.max_length");
		return rc;
	}

	/* Warmup within the run when its length is known. */
	const char *st = rtext(res, "train.steps");
	struct node *wu = node_get_path(res, "train.schedule.warmup_steps");
	if (st && wu && strtoll(wu->text, NULL, 10) > strtoll(st, NULL, 10))
		return VERR(S, wu, "train.schedule.warmup_steps %s is more than train.steps %s",
			    wu->text, st);

	if ((rc = check_evaluation_during_training(S, res)) != 0 ||
	    (rc = check_fields(S, res)) != 0 || (rc = check_unread(S, res)) != 0)
		return rc;

	/* exec needs a command; the working directory defaults to the experiment's. */
	const char *btype = rtext(res, "backend.type");
	if (btype && strcmp(btype, "exec") == 0) {
		struct node *cmd = node_get_path(res, "backend.command");
		if (!cmd || cmd->n == 0) {
			const struct node *at = src_or(S, "backend.type", NULL);
			rc = at ? VERR(S, at, "backend.type exec needs backend.command")
				: VERR(S, S->src_root, "backend.type exec needs backend.command");
			diag_hint(S->d, "backend.command is the trainer's argv, e.g. [python3, "
				  "train.py, --lr, \"{train.optimizer.lr}\"]");
			return rc;
		}
		if (!node_get_path(res, "backend.workdir") &&
		    (rc = rset(res, "backend.workdir", ".", false)) != 0)
			return rc;
	}

	/* Sweep: samples (or W&B's run_cap) with random, bayes and tpe; bayes and tpe optimise
	 * an objective; the seed defaults; early termination's metric, goal and bands. */
	struct node *sw = node_get(res, "sweep");
	if (sw) {
		const char *method = rtext(res, "sweep.method");
		bool random = method && strcmp(method, "random") == 0;
		bool bayes = method && (strcmp(method, "bayes") == 0 || strcmp(method, "tpe") == 0);
		struct node *samples = node_get(sw, "samples"), *cap = node_get(sw, "run_cap");
		const struct node *given = samples ? samples : cap;
		const char *given_key = samples ? "sweep.samples" : "sweep.run_cap";
		if (samples && cap && strcmp(samples->text, cap->text) != 0) {
			rc = VKERR(S, src_or(S, "sweep.run_cap", cap), "sweep.run_cap (%s) and "
				   "sweep.samples (%s) disagree", cap->text, samples->text);
			diag_hint(S->d, "run_cap is W&B's name for samples; keep one of them");
			return rc;
		}
		if (given && !random && !bayes) {
			rc = VKERR(S, src_or(S, given_key, given), "%s applies only to sweep.method "
				   "random, bayes or tpe", given_key);
			diag_hint(S->d, "grid sweeps run every combination; remove %s or set "
				  "method: random", given_key + 6);
			return rc;
		}
		if ((random || bayes) && !given) {
			const struct node *at = src_or(S, "sweep.method", sw);
			return VERR(S, at, "sweep.method %s needs sweep.samples (the number of runs; "
				    "W&B's run_cap is accepted too)", method);
		}
		if (cap && !samples && (rc = rset(res, "sweep.samples", cap->text, true)) != 0)
			return rc;
		if (bayes && !node_get(sw, "objective")) {
			rc = VERR(S, src_or(S, "sweep.method", sw), "sweep.method %s needs "
				  "sweep.objective, the metric it optimises", method);
			diag_hint(S->d, "add objective: {metric: validation.loss, goal: minimize}");
			return rc;
		}
		const char *top_seed = rtext(res, "seed");
		const struct node *sseed = node_get_path(S->src_root, "sweep.seed");
		if (!random && !bayes && sseed &&
		    strcmp(sseed->text, top_seed ? top_seed : "0") != 0) {
			/* (Equal to its default, as a resolved config says, it is harmless.) */
			rc = VKERR(S, sseed, "sweep.seed seeds random draws and the bayes search, but "
				   "a grid sweep draws nothing");
			diag_hint(S->d, "remove it, or set method: random; to repeat runs with other "
				  "seeds, sweep the top-level seed (parameters: {seed: [1, 2, 3]})");
			return rc;
		}
		if (!node_get(sw, "seed")) {
			if ((rc = rset(res, "sweep.seed", top_seed ? top_seed : "0", true)) != 0)
				return rc;
		}
		if ((rc = early_terminate_rules(S, res)) != 0)
			return rc;
	}

	/* Gates: absolute (min/max) or relative (vs with min_delta/max_regression). */
	struct node *gates = node_get(res, "gates");
	for (size_t i = 0; gates && i < gates->n; i++) {
		struct node *g = gates->items[i];
		bool vs = node_get(g, "vs") != NULL;
		bool absol = node_get(g, "min") || node_get(g, "max");
		bool rel = node_get(g, "min_delta") || node_get(g, "max_regression");
		if (!absol && !rel)
			return VERR(S, g, "a gate needs a bound: min or max, or vs with min_delta or "
				    "max_regression");
		if (vs && absol)
			return VERR(S, g, "a gate with 'vs' takes min_delta or max_regression, not "
				    "min or max");
		if (!vs && rel) {
			rc = VERR(S, g, "min_delta and max_regression compare against a reference: "
				  "add vs: base or vs: baseline");
			return rc;
		}
		struct node *vsn = node_get(g, "vs");
		const char *cb = rtext(res, "eval.compare_base");
		if (vsn && strcmp(vsn->text, "base") == 0 && cb && strcmp(cb, "false") == 0)
			return VERR(S, vsn, "a gate against the base model needs eval.compare_base: "
				    "true");
	}
	return 0;
}

int schema_resolve(struct node **out, const struct node *src, const char *top_dir,
		   const char *ctx, struct diag *d)
{
	struct vstate S = {.top_dir = top_dir, .ctx = ctx, .d = d, .src_root = src};
	*out = NULL;
	struct node *res = node_new(NODE_MAP);
	if (!res)
		return diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
	int rc = resolve_map(&S, "", src, res);
	if (!rc)
		rc = cross_rules(&S, res);
	if (rc) {
		if (d && !d->code)
			diag_set(d, rc, NULL, 0, 0, "out of memory validating the experiment");
		node_free(res);
		return rc;
	}
	*out = res;
	return 0;
}
