/* experiment: loading an experiment file: read, parse, follow `extends:` (deep merge,
 * cycle detection), apply -s overrides typed by the schema, validate and resolve, fill
 * struct config and compute the canonical JSON and hashes. Also builds the per-point
 * configs that sweeps ask for. */
#include "schema/schema.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/hash.h"
#include "schema/internal.h"
#include "common/banned.h"

struct experiment {
	char *path;            /* as given */
	char *top_dir;         /* absolute directory of the file */
	char **strs;           /* file names, directories and origins the nodes borrow */
	size_t n_strs, cap_strs;
	struct node *merged;   /* extends merged, overrides applied */
	struct node *resolved;
	struct config cfg;
	char *spec_json;
	char spec_hash[65];
};

/* Keeps s alive as long as e (takes ownership); NULL when s is NULL or memory runs out. */
static const char *keep(struct experiment *e, char *s)
{
	if (!s)
		return NULL;
	if (e->n_strs == e->cap_strs) {
		size_t cap = e->cap_strs ? e->cap_strs * 2 : 16;
		char **p = realloc(e->strs, cap * sizeof *p);
		if (!p) {
			free(s);
			return NULL;
		}
		e->strs = p;
		e->cap_strs = cap;
	}
	e->strs[e->n_strs++] = s;
	return s;
}

static int oom(struct diag *d)
{
	return diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory loading the experiment");
}

/* Loads one file (data given for the top file of a buffer load) and what it extends.
 * chain holds the absolute paths being loaded, for cycle detection. */
static int load_tree(struct experiment *e, struct node **out, const char *file, const char *data,
		     size_t len, const char **chain, const char **shown, size_t depth,
		     struct diag *d)
{
	char *buf = NULL;
	struct node *root = NULL, *base = NULL;
	int rc = 0;
	*out = NULL;
	if (!data) {
		size_t n = 0;
		if ((rc = file_read_all(&buf, &n, file, SCHEMA_MAX_FILE_BYTES, d)) != 0)
			return rc;
		data = buf;
		len = n;
	} else if (len > SCHEMA_MAX_FILE_BYTES) {
		return diag_set(d, FT_EINVAL, file, 0, 0, "file is larger than the limit of %u bytes",
				SCHEMA_MAX_FILE_BYTES);
	}
	const char *dir = keep(e, path_dirname(file));
	if (!dir) {
		rc = oom(d);
		goto done;
	}
	if ((rc = yaml_parse_nodes(&root, data, len, file, dir, NULL, d)) != 0)
		goto done;
	if (!root || root->kind != NODE_MAP) {
		struct node pos = {.file = file, .line = root ? root->line : 0,
				   .col = root ? root->col : 0};
		rc = node_error(d, &pos, NULL, "%s",
				root ? "an experiment file must be a map of keys (name, model, data, ...)"
				     : "the file is empty; expected a map of keys (name, model, data, ...)");
		goto done;
	}
	struct node *ext = node_get(root, "extends");
	if (ext) {
		if (ext->kind != NODE_SCALAR || node_is_null(ext) || !ext->text[0]) {
			rc = node_error(d, ext, NULL, "'extends' must be the path of another "
				       "experiment file");
			goto done;
		}
		const char *target = keep(e, path_join(dir, ext->text));
		const char *abs = target ? keep(e, path_normalize(target)) : NULL;
		if (!abs) {
			rc = oom(d);
			goto done;
		}
		for (size_t i = 0; i < depth; i++) {
			if (strcmp(chain[i], abs) == 0) {
				struct strbuf sb = {0};
				for (size_t j = i; j < depth; j++)
					if (strbuf_printf(&sb, "%s -> ", shown[j]) != 0)
						break;
				rc = node_error(d, ext, NULL, "'extends' makes a cycle: %s%s",
						sb.buf ? sb.buf : "", shown[i]);
				strbuf_free(&sb);
				goto done;
			}
		}
		if (depth >= SCHEMA_MAX_EXTENDS) {
			rc = node_error(d, ext, NULL, "'extends' chain is longer than %d files",
					SCHEMA_MAX_EXTENDS);
			goto done;
		}
		if (!path_exists(target)) {
			rc = node_error(d, ext, NULL, "'extends': no such file '%.300s'", ext->text);
			diag_hint(d, "the path is relative to this file's directory (%.300s)", dir);
			goto done;
		}
		chain[depth] = abs;
		shown[depth] = target;
		if ((rc = load_tree(e, &base, target, NULL, 0, chain, shown, depth + 1, d)) != 0)
			goto done;
		node_remove(root, "extends");
		rc = node_merge(base, root);
		root = base;
		base = NULL;
		if (rc) {
			rc = oom(d);
			goto done;
		}
	}
	*out = root;
	root = NULL;
done:
	free(buf);
	node_free(root);
	node_free(base);
	return rc;
}

/* -s sweep.parameters.PATH=VALUE: VALUE (YAML: a list, a map with values/distribution,
 * or null to drop the parameter) becomes the entry PATH of sweep.parameters, which is
 * created when absent. Validated later with the rest of the sweep. */
static int set_parameter(struct experiment *e, const char *param, const char *val,
			 const char *origin, struct diag *d)
{
	struct node *v = NULL;
	int rc = yaml_parse_nodes(&v, val, strlen(val), NULL, e->top_dir, origin, d);
	if (rc)
		return rc;
	if (!v && !(v = node_new_scalar("", true)))
		return oom(d);
	v->origin = origin;
	v->dir = e->top_dir;
	if (!(v->key = ft_strdup(param))) {
		node_free(v);
		return oom(d);
	}
	struct node *params = node_get_path(e->merged, "sweep.parameters");
	if (!params || params->kind != NODE_MAP) {
		struct node *m = node_new(NODE_MAP);
		if (!m || node_set_path(e->merged, "sweep.parameters", m) != 0) {
			node_free(v);
			return oom(d);
		}
		params = node_get_path(e->merged, "sweep.parameters");
		params->origin = origin;
	}
	/* The parameter is replaced as a whole (a distribution does not merge into a list). */
	node_remove(params, param);
	if (node_is_null(v)) {
		node_free(v);
		return 0;
	}
	return node_append(params, v) ? oom(d) : 0;
}

static int apply_override(struct experiment *e, const char *ov, struct diag *d)
{
	const char *eq = strchr(ov, '=');
	const char *origin;
	struct strbuf sb = {0};
	if (strbuf_printf(&sb, "override '-s %s'", ov) != 0)
		return oom(d);
	origin = keep(e, strbuf_detach(&sb));
	if (!origin)
		return oom(d);
	if (!eq || eq == ov) {
		diag_set(d, FT_EINVAL, NULL, 0, 0, "%s: expected KEY=VALUE", origin);
		diag_hint(d, "for example -s train.optimizer.lr=1e-4");
		return FT_EINVAL;
	}
	char *key = ft_strndup(ov, (size_t)(eq - ov));
	if (!key)
		return oom(d);
	int rc = 0;
	/* sweep.parameters.PATH=VALUES sets (or with null removes) one swept parameter; PATH
	 * is itself dotted, so it is one key of the parameters map. */
	static const char params_prefix[] = "sweep.parameters.";
	if (strncmp(key, params_prefix, sizeof params_prefix - 1) == 0 &&
	    key[sizeof params_prefix - 1]) {
		rc = set_parameter(e, key + sizeof params_prefix - 1, eq + 1, origin, d);
		free(key);
		return rc;
	}
	const struct key_desc *k = schema_find(key);
	/* Whole sections and lists of maps are edited in the file; every value below them,
	 * sweep's included, can be set (and is validated as if the file said it). */
	if (!k || strstr(key, "[]") || strcmp(key, "extends") == 0 ||
	    k->type == KT_GATES || k->type == KT_PARAMS || k->type == KT_ZIP ||
	    strcmp(key, "sweep") == 0) {
		const char *cands[256];
		size_t n = 0;
		for (size_t i = 0; i < schema_n_keys && n < FT_ARRAY_LEN(cands); i++)
			if (!strstr(schema_keys[i].path, "[]") && schema_keys[i].type != KT_MAP)
				cands[n++] = schema_keys[i].path;
		rc = diag_set(d, FT_EINVAL, NULL, 0, 0, "%s: %s '%.200s'", origin,
			      k ? "cannot override" : "unknown key", key);
		const char *near = k ? NULL : nearest_word(key, cands, n);
		if (near)
			diag_hint(d, "did you mean '%s'?", near);
		else if (k)
			diag_hint(d, "-s sets values; edit the file for extends, gates, the sweep section "
				  "as a whole and sweep.zip (one swept parameter: -s "
				  "sweep.parameters.PATH=[...])");
		free(key);
		return rc;
	}
	struct node *v = NULL;
	const char *val = eq + 1;
	bool literal = k->type == KT_STR || k->type == KT_NAME || k->type == KT_ENUM ||
		       k->type == KT_PATH || k->type == KT_TEMPLATE || k->type == KT_METRIC ||
		       k->type == KT_DURATION;
	if (literal && val[0]) {
		/* A string-typed key takes the text as it is (the shell already unquoted it):
		 * -s data.system=Answer: briefly. */
		if (!(v = node_new_scalar(val, false))) {
			free(key);
			return oom(d);
		}
	} else if ((rc = yaml_parse_nodes(&v, val, strlen(val), NULL, e->top_dir, origin, d)) != 0) {
		free(key);
		return rc;
	}
	if (!v && !(v = node_new_scalar("", true))) {
		free(key);
		return oom(d);
	}
	v->origin = origin;
	v->dir = e->top_dir;
	if ((!literal && node_is_null(v)) || (literal && strcmp(val, "null") == 0)) {
		/* -s KEY=null removes the key (its default applies), as `key: null` does in a
		 * file that extends another. */
		node_free(v);
		const char *dot = strrchr(key, '.');
		if (!dot) {
			node_remove(e->merged, key);
		} else {
			key[dot - key] = '\0';
			node_remove(node_get_path(e->merged, key), dot + 1);
		}
		free(key);
		return 0;
	}
	rc = node_set_path(e->merged, key, v);
	free(key);
	return rc ? oom(d) : 0;
}

static int finish_config(struct config *c, const struct node *resolved, const char *path,
			 const char *top_dir, struct diag *d)
{
	int rc = schema_fill_config(c, resolved, top_dir);
	struct strbuf sb = {0};
	if (!rc)
		rc = schema_json(&sb, resolved, true);
	if (rc) {
		strbuf_free(&sb);
		return oom(d);
	}
	c->canonical_json = strbuf_detach(&sb);
	sha256_hex(c->config_hash, c->canonical_json, strlen(c->canonical_json));
	c->source_path = ft_strdup(path);
	c->base_dir = ft_strdup(top_dir);
	if (!c->source_path || !c->base_dir)
		return oom(d);
	return 0;
}

static int load(struct experiment **out, const char *path, const char *data, size_t len,
		const char *const *overrides, size_t n_overrides, struct diag *d)
{
	*out = NULL;
	struct experiment *e = calloc(1, sizeof *e);
	if (!e)
		return oom(d);
	int rc = 0;
	const char *chain[SCHEMA_MAX_EXTENDS + 1], *shown[SCHEMA_MAX_EXTENDS + 1];
	char *dir = path_dirname(path);
	e->path = ft_strdup(path);
	e->top_dir = dir ? path_normalize(dir) : NULL;
	free(dir);
	const char *file = keep(e, ft_strdup(path));
	const char *abs = keep(e, path_normalize(path));
	if (!e->path || !e->top_dir || !file || !abs) {
		rc = oom(d);
		goto done;
	}
	chain[0] = abs;
	shown[0] = file;
	if ((rc = load_tree(e, &e->merged, file, data, len, chain, shown, 1, d)) != 0)
		goto done;
	for (size_t i = 0; i < n_overrides; i++)
		if ((rc = apply_override(e, overrides[i], d)) != 0)
			goto done;
	if ((rc = schema_resolve(&e->resolved, e->merged, e->top_dir, NULL, d)) != 0)
		goto done;
	if ((rc = finish_config(&e->cfg, e->resolved, path, e->top_dir, d)) != 0)
		goto done;
	struct strbuf sb = {0};
	if ((rc = schema_json(&sb, e->resolved, false)) != 0) {
		strbuf_free(&sb);
		rc = oom(d);
		goto done;
	}
	e->spec_json = strbuf_detach(&sb);
	sha256_hex(e->spec_hash, e->spec_json, strlen(e->spec_json));
done:
	if (rc) {
		experiment_free(e);
		return rc;
	}
	*out = e;
	return 0;
}

int experiment_load(struct experiment **out, const char *path, const char *const *overrides,
		    size_t n_overrides, struct diag *d)
{
	return load(out, path, NULL, 0, overrides, n_overrides, d);
}

int experiment_load_buffer(struct experiment **out, const char *name, const char *data,
			   size_t len, const char *const *overrides, size_t n_overrides,
			   struct diag *d)
{
	return load(out, name, data ? data : "", data ? len : 0, overrides, n_overrides, d);
}

void experiment_free(struct experiment *e)
{
	if (!e)
		return;
	node_free(e->merged);
	node_free(e->resolved);
	config_free(&e->cfg);
	for (size_t i = 0; i < e->n_strs; i++)
		free(e->strs[i]);
	free(e->strs);
	free(e->spec_json);
	free(e->path);
	free(e->top_dir);
	free(e);
}

const struct config *experiment_config(const struct experiment *e) { return &e->cfg; }
const char *experiment_name(const struct experiment *e) { return e->cfg.name; }
const char *experiment_path(const struct experiment *e) { return e->path; }
const char *experiment_spec_json(const struct experiment *e) { return e->spec_json; }
const char *experiment_spec_hash(const struct experiment *e) { return e->spec_hash; }
const struct node *experiment_node(const struct experiment *e, const char *path)
{
	return node_get_path(e->merged, path);
}

const struct node *experiment_sweep(const struct experiment *e)
{
	return node_get(e->resolved, "sweep");
}

bool schema_sweepable(const char *path)
{
	const struct key_desc *k = schema_find(path);
	if (!k || (k->flags & KF_NOSWEEP) || strstr(path, "[]") || strncmp(path, "sweep", 5) == 0)
		return false;
	return k->type != KT_MAP && k->type != KT_GATES && k->type != KT_PARAMS &&
	       k->type != KT_ZIP;
}

static const char *sweepable_list[256];
static size_t sweepable_count;

static void sweepable_init(void)
{
	for (size_t i = 0; i < schema_n_keys && sweepable_count < FT_ARRAY_LEN(sweepable_list); i++)
		if (schema_sweepable(schema_keys[i].path))
			sweepable_list[sweepable_count++] = schema_keys[i].path;
}

const char *const *schema_sweepable_paths(size_t *n)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, sweepable_init);
	*n = sweepable_count;
	return sweepable_list;
}
/* true when assignment path a sets `key` or a key inside it */
static bool assigns(const char *a, const char *key)
{
	size_t n = strlen(key);
	return strncmp(a, key, n) == 0 && (a[n] == 0 || a[n] == '.');
}

/* A point that sets method.type (a sweep over methods) drops the keys of tree that apply
 * only to other methods, unless the point sets them itself: LoRA's rank does not make an
 * IA3 point of the same sweep invalid. */
static void drop_other_method_keys(struct node *tree, const struct schema_assign *assign,
				   size_t n)
{
	/* the point's method: its own assignment, else (one entry of a method sweep checked
	 * alone) the file's */
	const char *t = NULL;
	for (size_t i = 0; i < n; i++)
		if (strcmp(assign[i].path, "method.type") == 0 && assign[i].value)
			t = assign[i].value->text;
	if (!t && schema_method_type_swept(tree)) {
		const struct node *ft = node_get_path(tree, "method.type");
		t = ft && ft->text ? ft->text : schema_find("method.type")->def;
	}
	if (!t)
		return;
	for (size_t k = 0; k < schema_n_method_keys; k++) {
		const struct method_key *mk = &schema_method_keys[k];
		bool own = false;
		for (size_t j = 0; j < n; j++)
			own |= assigns(assign[j].path, mk->path);
		if (!own && !schema_choice_ok(mk->methods, t))
			node_remove(node_get(tree, "method"), mk->path + strlen("method."));
	}
}

int experiment_config_with(struct config **out, char **params_json,
			   const struct experiment *e, const struct schema_assign *assign,
			   size_t n, const char *ctx, struct diag *d)
{
	*out = NULL;
	if (params_json)
		*params_json = NULL;
	struct node *tree = node_clone(e->merged);
	struct node *res = NULL;
	struct config *c = calloc(1, sizeof *c);
	struct strbuf sb = {0};
	int rc = 0;
	if (!tree || !c) {
		rc = oom(d);
		goto done;
	}
	for (size_t i = 0; i < n; i++) {
		struct node *v = node_clone(assign[i].value);
		if (!v || node_set_path(tree, assign[i].path, v) != 0) {
			rc = oom(d);
			goto done;
		}
	}
	drop_other_method_keys(tree, assign, n);
	if ((rc = schema_resolve(&res, tree, e->top_dir, ctx, d)) != 0)
		goto done;
	if ((rc = finish_config(c, res, e->path, e->top_dir, d)) != 0)
		goto done;
	if (params_json) {
		/* Sorted by path: a small insertion sort over indices. */
		size_t idx[64];
		size_t m = n < FT_ARRAY_LEN(idx) ? n : FT_ARRAY_LEN(idx);
		for (size_t i = 0; i < m; i++) {
			size_t j = i;
			while (j > 0 && strcmp(assign[idx[j - 1]].path, assign[i].path) > 0) {
				idx[j] = idx[j - 1];
				j--;
			}
			idx[j] = i;
		}
		rc = strbuf_puts(&sb, "{");
		for (size_t i = 0; i < m && !rc; i++) {
			const struct node *v = node_get_path(res, assign[idx[i]].path);
			rc = strbuf_printf(&sb, "%s\"%s\":", i ? "," : "", assign[idx[i]].path);
			if (!rc)
				rc = v ? schema_json(&sb, v, false) : strbuf_puts(&sb, "null");
		}
		if (!rc)
			rc = strbuf_puts(&sb, "}");
		if (rc) {
			rc = oom(d);
			goto done;
		}
		*params_json = strbuf_detach(&sb);
	}
	*out = c;
	c = NULL;
done:
	strbuf_free(&sb);
	node_free(tree);
	node_free(res);
	if (c) {
		config_free(c);
		free(c);
	}
	return rc;
}
