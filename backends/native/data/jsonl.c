/* jsonl: reads JSON Lines datasets into records. Each line is checked for length and
 * UTF-8 before jansson sees it, so messages can point at the column; fields are
 * looked up through the `fields` mapping and reported by the key the user wrote. */
#include "backends/native/data/dataset.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common/hash.h"
#include "common/util.h"
#include "schema/table.h"
#include "common/banned.h"

const char *data_format_name(enum data_format f)
{
	return schema_enum_name("data.format", (int)f);
}

int data_format_from_name(const char *name)
{
	return schema_enum_index("data.format", name);
}

void record_clear(struct record *r)
{
	free(r->text);
	free(r->prompt);
	free(r->response);
	free(r->instruction);
	free(r->input);
	free(r->system);
	for (size_t i = 0; i < r->n_msgs; i++)
		free(r->msgs[i].content);
	free(r->msgs);
	free(r->chosen);
	free(r->rejected);
	for (size_t i = 0; i < r->n_choices; i++)
		free(r->choices[i]);
	free(r->choices);
	memset(r, 0, sizeof *r);
}

const char *record_reference(const struct record *r, enum data_format f)
{
	switch (f) {
	case DATA_COMPLETION:
	case DATA_INSTRUCTION:
		return r->response;
	case DATA_CHAT:
		for (size_t i = r->n_msgs; i-- > 0;)
			if (r->msgs[i].role == ROLE_ASSISTANT)
				return r->msgs[i].content;
		return NULL;
	case DATA_PREFERENCE:
		return r->chosen;
	default:
		return NULL;
	}
}

void dataset_free(struct dataset *ds)
{
	if (!ds)
		return;
	for (size_t i = 0; i < ds->n; i++)
		record_clear(&ds->recs[i]);
	free(ds->recs);
	free(ds->path);
	free(ds);
}

/* Column (1-based) of the first invalid UTF-8 sequence, or 0 when valid. Rejects
 * overlong forms, surrogates and code points above U+10FFFF, and NUL bytes (which JSON
 * text cannot contain unescaped). */
static int utf8_bad_col(const unsigned char *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		unsigned char c = s[i];
		size_t len;
		uint32_t min;
		if (c == 0)
			return (int)i + 1;
		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xE0) == 0xC0) {
			len = 2;
			min = 0x80;
		} else if ((c & 0xF0) == 0xE0) {
			len = 3;
			min = 0x800;
		} else if ((c & 0xF8) == 0xF0) {
			len = 4;
			min = 0x10000;
		} else {
			return (int)i + 1;
		}
		if (i + len > n)
			return (int)i + 1;
		uint32_t v = c & (0x7F >> len);
		for (size_t k = 1; k < len; k++) {
			if ((s[i + k] & 0xC0) != 0x80)
				return (int)i + 1;
			v = (v << 6) | (s[i + k] & 0x3F);
		}
		if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
			return (int)i + 1;
		i += len;
	}
	return 0;
}

struct keys {
	const char *text, *prompt, *response, *instruction, *input, *messages, *system, *chosen,
		*rejected, *choices, *answer;
};

/* The key the schema table gives a field when the experiment does not map it. */
static const char *field_default(const char *path)
{
	const struct key_desc *k = schema_find(path);
	return k ? k->def : NULL;
}

static const char *pick(const char *a, const char *b, const char *dflt)
{
	if (a && *a)
		return a;
	if (b && *b)
		return b;
	return dflt;
}

/* The key of each field. The aliases of the experiment file (response for completion or
 * output, prompt for instruction) were folded into those fields by the schema
 * (schema/validate.c), so each field is read from its own key. */
static struct keys resolve_keys(const struct field_map *f)
{
	static const struct field_map none;
	if (!f)
		f = &none;
	struct keys k;
	k.text = pick(f->text, NULL, field_default("data.fields.text"));
	k.prompt = pick(f->prompt, NULL, field_default("data.fields.prompt"));
	k.response = pick(f->completion, NULL, field_default("data.fields.completion"));
	k.instruction = pick(f->instruction, NULL, field_default("data.fields.instruction"));
	k.input = pick(f->input, NULL, field_default("data.fields.input"));
	k.messages = pick(f->messages, NULL, field_default("data.fields.messages"));
	k.system = pick(f->system, NULL, field_default("data.fields.system"));
	k.chosen = pick(f->chosen, NULL, field_default("data.fields.chosen"));
	k.rejected = pick(f->rejected, NULL, field_default("data.fields.rejected"));
	k.choices = pick(f->choices, NULL, field_default("data.fields.choices"));
	k.answer = pick(f->answer, NULL, field_default("data.fields.answer"));
	return k;
}

static const char *json_type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "an object";
	case JSON_ARRAY: return "an array";
	case JSON_STRING: return "a string";
	case JSON_INTEGER:
	case JSON_REAL: return "a number";
	case JSON_TRUE:
	case JSON_FALSE: return "a boolean";
	default: return "null";
	}
}

struct line_ctx {
	const char *name;
	int line;
	struct diag *d;
};

static int bad(struct line_ctx *c, int col, const char *fmt, ...) FT_PRINTF(3, 4);
static int bad(struct line_ctx *c, int col, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = diag_vset(c->d, FT_EINVAL, c->name, c->line, col, fmt, ap);
	va_end(ap);
	return rc;
}

/* Suggests the present key nearest to the missing one, or lists the keys present. */
static void hint_keys(struct line_ctx *c, json_t *obj, const char *missing)
{
	const char *cands[32];
	size_t n = 0;
	const char *k;
	json_t *v;
	json_object_foreach(obj, k, v)
	{
		(void)v;
		if (n < FT_ARRAY_LEN(cands))
			cands[n++] = k;
	}
	const char *near = nearest_word(missing, cands, n);
	if (near) {
		diag_hint(c->d, "did you mean '%s'? (map keys with data.fields)", near);
		return;
	}
	char list[256] = "";
	size_t used = 0;
	for (size_t i = 0; i < n && used < sizeof list - 8; i++) {
		int w = snprintf(list + used, sizeof list - used, "%s'%s'", i ? ", " : "", cands[i]);
		if (w < 0)
			break;
		used += (size_t)w;
	}
	if (n)
		diag_hint(c->d, "the line has %s; map keys with data.fields", list);
}

/* A string field: required or optional (absent or null -> *out = NULL). */
static int get_str(char **out, struct line_ctx *c, json_t *obj, const char *key,
		   const char *what, bool required)
{
	*out = NULL;
	json_t *v = json_object_get(obj, key);
	if (!v || (json_is_null(v) && !required)) {
		if (!required)
			return 0;
		bad(c, 0, "missing key '%s' (the %s)", key, what);
		hint_keys(c, obj, key);
		return FT_EINVAL;
	}
	if (!json_is_string(v))
		return bad(c, 0, "key '%s' must be a string, got %s", key, json_type_name(v));
	*out = ft_strndup(json_string_value(v), json_string_length(v));
	if (!*out)
		return diag_set(c->d, FT_ENOMEM, NULL, 0, 0, "out of memory reading %s", c->name);
	if (strlen(*out) != json_string_length(v)) {
		free(*out);
		*out = NULL;
		return bad(c, 0, "key '%s' contains a NUL character (\\u0000)", key);
	}
	return 0;
}

static void msgs_free(struct chat_msg *m, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(m[i].content);
	free(m);
}

/* A JSON array of {role, content} messages into *out (n), roles checked, a system message
 * only first. Empty arrays are an error. */
static int parse_msg_array(struct chat_msg **out, size_t *out_n, struct line_ctx *c, json_t *arr,
			   const char *key)
{
	*out = NULL;
	*out_n = 0;
	size_t n = json_array_size(arr);
	if (n == 0)
		return bad(c, 0, "key '%s' is an empty array", key);
	struct chat_msg *msgs = calloc(n, sizeof *msgs);
	if (!msgs)
		return diag_set(c->d, FT_ENOMEM, NULL, 0, 0, "out of memory reading %s", c->name);
	*out = msgs;
	for (size_t i = 0; i < n; i++) {
		json_t *m = json_array_get(arr, i);
		if (!json_is_object(m))
			return bad(c, 0, "%s[%zu] must be an object with 'role' and 'content', got %s",
				   key, i, json_type_name(m));
		json_t *role = json_object_get(m, "role"), *content = json_object_get(m, "content");
		if (!role || !json_is_string(role))
			return bad(c, 0, "%s[%zu].role must be a string (system, user or assistant)",
				   key, i);
		const char *rs = json_string_value(role);
		enum chat_role ro;
		if (strcmp(rs, "system") == 0)
			ro = ROLE_SYSTEM;
		else if (strcmp(rs, "user") == 0)
			ro = ROLE_USER;
		else if (strcmp(rs, "assistant") == 0)
			ro = ROLE_ASSISTANT;
		else
			return bad(c, 0, "%s[%zu].role is '%s'; expected system, user or assistant", key,
				   i, rs);
		if (!content || !json_is_string(content))
			return bad(c, 0, "%s[%zu].content must be a string, got %s", key, i,
				   content ? json_type_name(content) : "nothing");
		if (ro == ROLE_SYSTEM && i != 0)
			return bad(c, 0, "%s[%zu]: a system message may only come first", key, i);
		msgs[i].role = ro;
		msgs[i].content = ft_strndup(json_string_value(content), json_string_length(content));
		if (!msgs[i].content)
			return diag_set(c->d, FT_ENOMEM, NULL, 0, 0, "out of memory reading %s", c->name);
		*out_n = i + 1;
		if (strlen(msgs[i].content) != json_string_length(content))
			return bad(c, 0, "%s[%zu].content contains a NUL character (\\u0000)", key, i);
	}
	return 0;
}

static int parse_messages(struct record *r, struct line_ctx *c, json_t *obj, const char *key)
{
	json_t *arr = json_object_get(obj, key);
	if (!arr) {
		bad(c, 0, "missing key '%s' (the chat messages)", key);
		hint_keys(c, obj, key);
		return FT_EINVAL;
	}
	if (!json_is_array(arr))
		return bad(c, 0, "key '%s' must be an array of messages, got %s", key,
			   json_type_name(arr));
	int rc = parse_msg_array(&r->msgs, &r->n_msgs, c, arr, key);
	if (rc)
		return rc;
	bool any_assistant = false;
	for (size_t i = 0; i < r->n_msgs; i++)
		any_assistant |= r->msgs[i].role == ROLE_ASSISTANT;
	if (!any_assistant)
		return bad(c, 0, "key '%s' has no assistant message (nothing to learn or score)", key);
	return 0;
}

/* One completion of a preference pair, given as a string or as a list of messages (TRL's
 * conversational layout); *msgs receives the list (caller frees), *text the string. */
static int pref_side(char **text, struct chat_msg **msgs, size_t *n, struct line_ctx *c,
		     json_t *obj, const char *key, const char *what)
{
	*text = NULL;
	*msgs = NULL;
	*n = 0;
	json_t *v = json_object_get(obj, key);
	if (!v) {
		bad(c, 0, "missing key '%s' (the %s completion)", key, what);
		hint_keys(c, obj, key);
		return FT_EINVAL;
	}
	if (json_is_array(v))
		return parse_msg_array(msgs, n, c, v, key);
	if (!json_is_string(v))
		return bad(c, 0, "key '%s' must be a string or an array of messages, got %s", key,
			   json_type_name(v));
	return get_str(text, c, obj, key, what, true);
}

/* The completion after the prompt: exactly one assistant message. Takes the content. */
static int pref_completion(char **out, struct line_ctx *c, struct chat_msg *m, size_t n,
			   const char *key)
{
	if (n != 1 || m[0].role != ROLE_ASSISTANT)
		return bad(c, 0, "key '%s': the completion after the prompt must be one assistant "
			   "message (found %zu message%s%s)", key, n, n == 1 ? ", a " : "s",
			   n == 1 ? (m[0].role == ROLE_USER ? "user one" : "system one") : "");
	*out = m[0].content;
	m[0].content = NULL;
	return 0;
}

/* {prompt, chosen, rejected}: prompt a string or messages (ending with a user message);
 * chosen and rejected strings or messages. Without a prompt key, two message lists share
 * their prompt as a common prefix (TRL's implicit prompt). */
static int parse_preference(struct record *r, struct line_ctx *c, json_t *obj, const struct keys *k)
{
	struct chat_msg *cm = NULL, *rm = NULL;
	size_t cn = 0, rn = 0;
	int rc = pref_side(&r->chosen, &cm, &cn, c, obj, k->chosen, "chosen");
	if (!rc)
		rc = pref_side(&r->rejected, &rm, &rn, c, obj, k->rejected, "rejected");
	if (rc)
		goto done;
	json_t *p = json_object_get(obj, k->prompt);
	size_t skip = 0; /* leading messages of chosen/rejected that are the prompt */
	if (!p || json_is_null(p)) {
		if (!cm || !rm) {
			bad(c, 0, "missing key '%s' (the prompt)", k->prompt);
			hint_keys(c, obj, k->prompt);
			rc = FT_EINVAL;
			goto done;
		}
		while (skip < cn && skip < rn && cm[skip].role == rm[skip].role &&
		       strcmp(cm[skip].content, rm[skip].content) == 0)
			skip++;
		if (skip == 0) {
			rc = bad(c, 0, "no key '%s', and '%s' and '%s' share no leading messages to "
				 "take as the prompt", k->prompt, k->chosen, k->rejected);
			goto done;
		}
		r->msgs = calloc(skip, sizeof *r->msgs);
		if (!r->msgs) {
			rc = diag_set(c->d, FT_ENOMEM, NULL, 0, 0, "out of memory reading %s", c->name);
			goto done;
		}
		for (size_t i = 0; i < skip; i++) {
			r->msgs[i] = cm[i];
			cm[i].content = NULL;
		}
		r->n_msgs = skip;
	} else if (json_is_array(p)) {
		if ((rc = parse_msg_array(&r->msgs, &r->n_msgs, c, p, k->prompt)) != 0)
			goto done;
	} else if (json_is_string(p)) {
		if ((rc = get_str(&r->prompt, c, obj, k->prompt, "prompt", true)) != 0 ||
		    (rc = get_str(&r->system, c, obj, k->system, "system prompt", false)) != 0)
			goto done;
	} else {
		rc = bad(c, 0, "key '%s' must be a string or an array of messages, got %s", k->prompt,
			 json_type_name(p));
		goto done;
	}
	if (r->msgs && r->msgs[r->n_msgs - 1].role != ROLE_USER) {
		rc = bad(c, 0, "the prompt must end with a user message (its last message is %s)",
			 r->msgs[r->n_msgs - 1].role == ROLE_ASSISTANT ? "an assistant one"
								       : "a system one");
		goto done;
	}
	if (cm && (rc = pref_completion(&r->chosen, c, cm + skip, cn - skip, k->chosen)) != 0)
		goto done;
	if (rm && (rc = pref_completion(&r->rejected, c, rm + skip, rn - skip, k->rejected)) != 0)
		goto done;
done:
	msgs_free(cm, cn);
	msgs_free(rm, rn);
	return rc;
}

/* Optional multiple-choice fields: choices (distinct non-empty strings, at least two) and
 * answer (an index, or one of the choices; absent: the example's response must be one). */
static int parse_choices(struct record *r, struct line_ctx *c, json_t *obj, const struct keys *k,
			 enum data_format f)
{
	json_t *arr = json_object_get(obj, k->choices);
	if (!arr || json_is_null(arr))
		return 0; /* the answer key is read only with choices: it may be another field */
	if (!json_is_array(arr))
		return bad(c, 0, "key '%s' must be an array of strings, got %s", k->choices,
			   json_type_name(arr));
	size_t n = json_array_size(arr);
	if (n < 2)
		return bad(c, 0, "key '%s' needs at least two choices, got %zu", k->choices, n);
	r->choices = calloc(n, sizeof *r->choices);
	if (!r->choices)
		return diag_set(c->d, FT_ENOMEM, NULL, 0, 0, "out of memory reading %s", c->name);
	for (size_t i = 0; i < n; i++) {
		json_t *v = json_array_get(arr, i);
		if (!json_is_string(v))
			return bad(c, 0, "%s[%zu] must be a string, got %s", k->choices, i,
				   json_type_name(v));
		if (json_string_length(v) == 0)
			return bad(c, 0, "%s[%zu] is empty", k->choices, i);
		r->choices[i] = ft_strndup(json_string_value(v), json_string_length(v));
		if (!r->choices[i])
			return diag_set(c->d, FT_ENOMEM, NULL, 0, 0, "out of memory reading %s", c->name);
		r->n_choices = i + 1;
		if (strlen(r->choices[i]) != json_string_length(v))
			return bad(c, 0, "%s[%zu] contains a NUL character (\\u0000)", k->choices, i);
		for (size_t j = 0; j < i; j++)
			if (strcmp(r->choices[j], r->choices[i]) == 0)
				return bad(c, 0, "%s[%zu] repeats %s[%zu] ('%.60s')", k->choices, i,
					   k->choices, j, r->choices[i]);
	}
	json_t *a = json_object_get(obj, k->answer);
	const char *want = NULL;
	if (!a || json_is_null(a)) {
		want = record_reference(r, f);
		for (size_t i = 0; want && i < n; i++)
			if (strcmp(r->choices[i], want) == 0) {
				r->answer = i;
				return 0;
			}
		return bad(c, 0, "no key '%s', and the response ('%.60s') is not one of '%s'",
			   k->answer, want ? want : "", k->choices);
	}
	if (json_is_integer(a)) {
		json_int_t i = json_integer_value(a);
		if (i < 0 || (size_t)i >= n)
			return bad(c, 0, "key '%s' is %lld; expected an index from 0 to %zu", k->answer,
				   (long long)i, n - 1);
		r->answer = (size_t)i;
		return 0;
	}
	if (!json_is_string(a))
		return bad(c, 0, "key '%s' must be the index of a choice or its text, got %s", k->answer,
			   json_type_name(a));
	for (size_t i = 0; i < n; i++)
		if (strcmp(r->choices[i], json_string_value(a)) == 0) {
			r->answer = i;
			return 0;
		}
	return bad(c, 0, "key '%s' is '%.60s', which is not one of '%s'", k->answer,
		   json_string_value(a), k->choices);
}

static void hash_field(struct sha256 *h, const char *tag, const char *s)
{
	uint64_t n = s ? strlen(s) : 0;
	uint8_t len[8];
	for (int i = 0; i < 8; i++)
		len[i] = (uint8_t)(n >> (8 * i));
	sha256_update(h, tag, strlen(tag) + 1);
	sha256_update(h, len, sizeof len);
	if (s)
		sha256_update(h, s, n);
}

/* Content hash: the format and each logical field, length-prefixed, so key names,
 * key order and JSON whitespace do not change an example's identity. */
static void record_hash(struct record *r, enum data_format f)
{
	struct sha256 h;
	sha256_init(&h);
	sha256_update(&h, data_format_name(f), strlen(data_format_name(f)) + 1);
	hash_field(&h, "text", r->text);
	hash_field(&h, "prompt", r->prompt);
	hash_field(&h, "response", r->response);
	hash_field(&h, "instruction", r->instruction);
	hash_field(&h, "input", r->input);
	hash_field(&h, "system", r->system);
	for (size_t i = 0; i < r->n_msgs; i++)
		hash_field(&h, r->msgs[i].role == ROLE_SYSTEM ? "s" : r->msgs[i].role == ROLE_USER ? "u" : "a",
			   r->msgs[i].content);
	/* fields that older formats never have are hashed only when present, so the
	 * hashes (and splits) of existing datasets do not change */
	if (r->chosen)
		hash_field(&h, "chosen", r->chosen);
	if (r->rejected)
		hash_field(&h, "rejected", r->rejected);
	if (r->choices) {
		for (size_t i = 0; i < r->n_choices; i++)
			hash_field(&h, "choice", r->choices[i]);
		char a[32];
		snprintf(a, sizeof a, "%zu", r->answer);
		hash_field(&h, "answer", a);
	}
	sha256_final(&h, r->hash);
}

static int parse_line(struct record *r, struct line_ctx *c, const char *s, size_t n,
		      enum data_format format, const struct keys *k)
{
	if (n > DATA_LINE_MAX)
		return bad(c, 0, "line is %zu bytes long; the limit is %zu bytes", n, DATA_LINE_MAX);
	int col = utf8_bad_col((const unsigned char *)s, n);
	if (col)
		return bad(c, col, "invalid UTF-8 (the file must be UTF-8 text)");
	json_error_t err;
	json_t *obj = json_loadb(s, n, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &err);
	int rc = 0;
	if (!obj)
		return bad(c, err.column > 0 ? err.column : 0, "invalid JSON: %s", err.text);
	if (!json_is_object(obj)) {
		rc = bad(c, 1, "each line must be a JSON object, got %s", json_type_name(obj));
		goto done;
	}
	switch (format) {
	case DATA_TEXT:
		rc = get_str(&r->text, c, obj, k->text, "training text", true);
		break;
	case DATA_COMPLETION:
		rc = get_str(&r->prompt, c, obj, k->prompt, "prompt", true);
		if (!rc)
			rc = get_str(&r->response, c, obj, k->response, "completion", true);
		if (!rc)
			rc = get_str(&r->system, c, obj, k->system, "system prompt", false);
		break;
	case DATA_INSTRUCTION:
		rc = get_str(&r->instruction, c, obj, k->instruction, "instruction", true);
		if (!rc)
			rc = get_str(&r->input, c, obj, k->input, "input", false);
		if (!rc)
			rc = get_str(&r->response, c, obj, k->response, "output", true);
		if (!rc)
			rc = get_str(&r->system, c, obj, k->system, "system prompt", false);
		break;
	case DATA_CHAT:
		rc = parse_messages(r, c, obj, k->messages);
		break;
	case DATA_PREFERENCE:
		rc = parse_preference(r, c, obj, k);
		break;
	default:
		rc = bad(c, 0, "unknown data format %d", (int)format);
	}
	if (!rc && (format == DATA_COMPLETION || format == DATA_INSTRUCTION || format == DATA_CHAT))
		rc = parse_choices(r, c, obj, k, format);
done:
	json_decref(obj);
	return rc;
}

static bool blank(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
			return false;
	return true;
}

int dataset_read_buffer(struct dataset **out, const char *name, const char *buf, size_t len,
			enum data_format format, const struct field_map *fields,
			enum on_bad_example on_bad, struct diag *d)
{
	*out = NULL;
	struct keys k = resolve_keys(fields);
	if (format == DATA_INSTRUCTION)
		k.response = pick(fields ? fields->output : NULL, NULL,
				  field_default("data.fields.output"));
	struct dataset *ds = calloc(1, sizeof *ds);
	if (!ds || !(ds->path = ft_strdup(name))) {
		free(ds);
		return diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory reading %s", name);
	}
	ds->format = format;
	sha256_hex(ds->file_hash, buf, len);
	size_t pos = 0, cap = 0;
	int line = 0, rc = 0;
	if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0)
		pos = 3;
	while (pos < len) {
		const char *nl = memchr(buf + pos, '\n', len - pos);
		size_t end = nl ? (size_t)(nl - buf) : len, n = end - pos;
		const char *s = buf + pos;
		pos = nl ? end + 1 : len;
		line++;
		if (n && s[n - 1] == '\r')
			n--;
		if (blank(s, n))
			continue;
		if (ds->n == cap) {
			size_t ncap = cap ? cap * 2 : 64, bytes;
			struct record *nr;
			if (!size_mul(ncap, sizeof *nr, &bytes) || !(nr = realloc(ds->recs, bytes))) {
				rc = diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory reading %s", name);
				goto done;
			}
			ds->recs = nr;
			cap = ncap;
		}
		struct record *r = &ds->recs[ds->n];
		memset(r, 0, sizeof *r);
		r->line = line;
		struct diag ld;
		diag_init(&ld);
		struct line_ctx c = {name, line, &ld};
		int lrc = parse_line(r, &c, s, n, format, &k);
		if (lrc == 0) {
			record_hash(r, format);
			ds->n++;
			continue;
		}
		record_clear(r);
		if (lrc != FT_EINVAL || on_bad == BAD_EXAMPLE_ERROR) {
			if (!d->code)
				*d = ld;
			rc = lrc;
			goto done;
		}
		if (ds->n_skipped++ == 0)
			snprintf(ds->first_skip, sizeof ds->first_skip, "%s:%d: %s", name, line, ld.text);
	}
	ds->n_lines = (size_t)line;
	if (ds->n == 0) {
		rc = diag_set(d, FT_EINVAL, name, 0, 0, "no usable examples%s",
			      ds->n_skipped ? " (every example was skipped as bad)" : " (the file is empty)");
		if (ds->n_skipped)
			diag_hint(d, "first problem: %s", ds->first_skip);
		goto done;
	}
done:
	if (rc) {
		dataset_free(ds);
		return rc;
	}
	*out = ds;
	return 0;
}

int dataset_read_file(struct dataset **out, const char *path, enum data_format format,
		      const struct field_map *fields, enum on_bad_example on_bad, struct diag *d)
{
	*out = NULL;
	char *buf = NULL;
	size_t len = 0;
	int rc = file_read_all(&buf, &len, path, DATA_FILE_MAX, d);
	if (rc)
		return rc;
	rc = dataset_read_buffer(out, path, buf, len, format, fields, on_bad, d);
	free(buf);
	return rc;
}
