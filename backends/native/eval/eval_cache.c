/* eval_cache: a split's evaluation as a JSON file keyed by what it depends on
 * (eval_cache.h). Numbers are written with 17 significant digits, so a loaded result has
 * the bits of the computed one; non-finite values are written as strings. */
#include "backends/native/eval/eval_cache.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/hash.h"
#include "common/util.h"
#include "scoring/metrics.h"
#include "common/banned.h"

#define CACHE_VERSION 1

static void hash_example(struct sha256 *h, const struct tok_example *e)
{
	uint64_t n[2] = {e->n, e->n_prompt};
	sha256_update(h, n, sizeof n);
	if (e->n) {
		sha256_update(h, e->ids, e->n * sizeof *e->ids);
		sha256_update(h, e->loss, e->n);
	}
	const char *t[2] = {e->prompt, e->reference};
	for (int i = 0; i < 2; i++) {
		uint64_t len = t[i] ? strlen(t[i]) + 1 : 0; /* NULL and "" differ */
		sha256_update(h, &len, sizeof len);
		if (t[i])
			sha256_update(h, t[i], len);
	}
}

void eval_cache_key(char out[65], const char *settings, const struct tok_set *set)
{
	struct sha256 h;
	sha256_init(&h);
	uint64_t v[2] = {CACHE_VERSION, strlen(settings)};
	sha256_update(&h, v, sizeof v);
	sha256_update(&h, settings, strlen(settings));
	uint64_t n[3] = {set->n, set->choices != NULL, set->pair != NULL};
	sha256_update(&h, n, sizeof n);
	for (size_t i = 0; i < set->n; i++) {
		hash_example(&h, &set->ex[i]);
		if (set->choices) {
			const struct tok_choices *c = &set->choices[i];
			uint64_t cn[2] = {c->n, c->answer};
			sha256_update(&h, cn, sizeof cn);
			for (size_t j = 0; j < c->n; j++) {
				hash_example(&h, &c->seq[j]);
				uint64_t ch = c->chars[j];
				sha256_update(&h, &ch, sizeof ch);
			}
		}
		if (set->pair) {
			hash_example(&h, &set->pair[2 * i]);
			hash_example(&h, &set->pair[2 * i + 1]);
		}
	}
	sha256_final_hex(&h, out);
}

/* Number of choice sequences over the set (the length of choice_lp). */
static size_t n_choice_seqs(const struct tok_set *set)
{
	size_t n = 0;
	for (size_t i = 0; set->choices && i < set->n; i++)
		n += set->choices[i].n;
	return n;
}

static json_t *num(double v)
{
	if (isfinite(v))
		return json_real(v);
	return json_string(isnan(v) ? "nan" : v > 0 ? "inf" : "-inf");
}

static double num_value(const json_t *j, bool *ok)
{
	if (json_is_number(j))
		return json_number_value(j);
	const char *s = json_string_value(j);
	if (s && strcmp(s, "nan") == 0)
		return NAN;
	if (s && strcmp(s, "inf") == 0)
		return INFINITY;
	if (s && strcmp(s, "-inf") == 0)
		return -INFINITY;
	*ok = false;
	return 0.0;
}

/* Generated text can be any bytes (a cut multi-byte character, a model's noise), which a
 * JSON string cannot hold: outputs are stored in hex. */
static json_t *hex_string(const char *t)
{
	static const char digits[] = "0123456789abcdef";
	size_t n = strlen(t);
	char *h = malloc(2 * n + 1);
	if (!h)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		h[2 * i] = digits[(unsigned char)t[i] >> 4];
		h[2 * i + 1] = digits[(unsigned char)t[i] & 15];
	}
	h[2 * n] = '\0';
	json_t *j = json_string(h);
	free(h);
	return j;
}

static int hex_value(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The text of a hex string (NULL when malformed, or out of memory; a NUL byte is refused). */
static char *unhex(const char *h)
{
	size_t n = strlen(h);
	if (n % 2)
		return NULL;
	char *t = malloc(n / 2 + 1);
	for (size_t i = 0; t && i < n / 2; i++) {
		int a = hex_value(h[2 * i]), b = hex_value(h[2 * i + 1]);
		if (a < 0 || b < 0 || (a == 0 && b == 0)) {
			free(t);
			return NULL;
		}
		t[i] = (char)(a * 16 + b);
	}
	if (t)
		t[n / 2] = '\0';
	return t;
}

/* Adds key: [v...] (n values) to o; a NULL array is left out. */
static int put_array(json_t *o, const char *key, const double *v, size_t n)
{
	if (!v)
		return 0;
	json_t *a = json_array();
	if (!a || json_object_set_new(o, key, a))
		return FT_ENOMEM;
	for (size_t i = 0; i < n; i++)
		if (json_array_append_new(a, num(v[i])))
			return FT_ENOMEM;
	return 0;
}

/* *out = a copy of o[key] when it has exactly n numbers; NULL when absent. */
static bool get_array(double **out, const json_t *o, const char *key, size_t n)
{
	*out = NULL;
	const json_t *a = json_object_get(o, key);
	if (!a)
		return true;
	if (!json_is_array(a) || json_array_size(a) != n)
		return false;
	double *v = malloc((n ? n : 1) * sizeof *v);
	if (!v)
		return false;
	bool ok = true;
	for (size_t i = 0; i < n && ok; i++)
		v[i] = num_value(json_array_get(a, i), &ok);
	if (!ok) {
		free(v);
		return false;
	}
	*out = v;
	return true;
}

int eval_cache_save(const char *path, const char *key, const char *origin,
		    const struct eval_result *r, const struct tok_set *set, struct diag *d)
{
	json_t *o = json_pack("{s:i,s:s,s:s,s:I,s:o,s:o,s:I}", "version", CACHE_VERSION, "key",
			      key, "origin", origin ? origin : "", "n", (json_int_t)r->n,
			      "tf_seconds", num(r->tf_seconds), "gen_seconds", num(r->gen_seconds),
			      "gen_tokens", (json_int_t)r->gen_tokens);
	int rc = o ? 0 : FT_ENOMEM;
	if (!rc)
		rc = put_array(o, "tf_rows", r->tf_rows, 3 * r->n);
	if (!rc)
		rc = put_array(o, "choice_rows", r->choice_rows, 2 * r->n);
	if (!rc)
		rc = put_array(o, "choice_lp", r->choice_lp, n_choice_seqs(set));
	if (!rc)
		rc = put_array(o, "pref_rows", r->pref_rows, 2 * r->n);
	if (!rc && r->choice_pick) {
		json_t *a = json_array();
		rc = !a || json_object_set_new(o, "choice_pick", a) ? FT_ENOMEM : 0;
		for (size_t i = 0; !rc && i < r->n; i++)
			rc = json_array_append_new(a, json_integer((json_int_t)r->choice_pick[i]))
				     ? FT_ENOMEM : 0;
	}
	if (!rc && r->outputs) {
		json_t *a = json_array();
		rc = !a || json_object_set_new(o, "outputs", a) ? FT_ENOMEM : 0;
		for (size_t i = 0; !rc && i < r->n; i++)
			rc = json_array_append_new(a, r->outputs[i] ? hex_string(r->outputs[i])
								     : json_null())
				     ? FT_ENOMEM : 0;
	}
	for (int k = 0; !rc && k < METRIC_N_KINDS; k++) {
		char name[32];
		snprintf(name, sizeof name, "rows_%d", k);
		rc = put_array(o, name, r->rows[k], r->n * metric_stats_dim((enum metric_kind)k));
	}
	char *text = rc ? NULL : json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(17));
	json_decref(o);
	if (!text)
		return diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory writing %s", path);
	rc = file_write_atomic(path, text, strlen(text), d);
	free(text);
	return rc;
}

int eval_cache_load(struct eval_result *out, bool *found, char *origin, size_t origin_len,
		    const char *path, const char *key, const struct tok_set *set)
{
	*found = false;
	char *text = NULL;
	size_t len = 0;
	struct diag d;
	diag_init(&d);
	if (!path_exists(path) || file_read_all(&text, &len, path, EVAL_CACHE_MAX_BYTES, &d) != 0)
		return 0; /* missing or unreadable: evaluate */
	int rc = eval_cache_parse(out, found, origin, origin_len, text, len, key, set);
	free(text);
	return rc;
}

int eval_cache_parse(struct eval_result *out, bool *found, char *origin, size_t origin_len,
		     const char *text, size_t len, const char *key, const struct tok_set *set)
{
	*found = false;
	json_t *o = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
	if (!o)
		return 0;
	struct eval_result r;
	memset(&r, 0, sizeof r);
	const char *k = json_string_value(json_object_get(o, "key"));
	const json_t *jn = json_object_get(o, "n");
	bool ok = json_integer_value(json_object_get(o, "version")) == CACHE_VERSION && k &&
		  strcmp(k, key) == 0 && json_is_integer(jn) &&
		  json_integer_value(jn) == (json_int_t)set->n;
	r.n = set->n;
	ok = ok && get_array(&r.tf_rows, o, "tf_rows", 3 * r.n) &&
	     get_array(&r.choice_rows, o, "choice_rows", 2 * r.n) &&
	     get_array(&r.choice_lp, o, "choice_lp", n_choice_seqs(set)) &&
	     get_array(&r.pref_rows, o, "pref_rows", 2 * r.n);
	for (int m = 0; ok && m < METRIC_N_KINDS; m++) {
		char name[32];
		snprintf(name, sizeof name, "rows_%d", m);
		ok = get_array(&r.rows[m], o, name, r.n * metric_stats_dim((enum metric_kind)m));
	}
	const json_t *picks = json_object_get(o, "choice_pick");
	if (ok && picks) {
		ok = json_is_array(picks) && json_array_size(picks) == r.n &&
		     (r.choice_pick = calloc(r.n ? r.n : 1, sizeof *r.choice_pick)) != NULL;
		for (size_t i = 0; ok && i < r.n; i++) {
			const json_t *p = json_array_get(picks, i);
			ok = json_is_integer(p) && json_integer_value(p) >= 0 && set->choices &&
			     (size_t)json_integer_value(p) < set->choices[i].n;
			if (ok)
				r.choice_pick[i] = (size_t)json_integer_value(p);
		}
	}
	const json_t *outs = json_object_get(o, "outputs");
	if (ok && outs) {
		ok = json_is_array(outs) && json_array_size(outs) == r.n &&
		     (r.outputs = calloc(r.n ? r.n : 1, sizeof *r.outputs)) != NULL;
		for (size_t i = 0; ok && i < r.n; i++) {
			const json_t *t = json_array_get(outs, i);
			if (json_is_null(t))
				continue;
			ok = json_is_string(t) && (r.outputs[i] = unhex(json_string_value(t))) != NULL;
		}
	}
	bool tok_ = true;
	r.tf_seconds = num_value(json_object_get(o, "tf_seconds"), &tok_);
	r.gen_seconds = num_value(json_object_get(o, "gen_seconds"), &tok_);
	r.gen_tokens = (long)json_integer_value(json_object_get(o, "gen_tokens"));
	if (ok && origin && origin_len)
		snprintf(origin, origin_len, "%s",
			 json_string_value(json_object_get(o, "origin")) ?
				 json_string_value(json_object_get(o, "origin")) : "");
	json_decref(o);
	if (!ok) {
		eval_result_free(&r);
		return 0;
	}
	*out = r;
	*found = true;
	return 0;
}
