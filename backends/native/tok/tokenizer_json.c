/* tokenizer_json: builds a BPE tokenizer from a Hugging Face tokenizer.json (model.vocab,
 * model.merges as "a b" strings or ["a", "b"] pairs, byte_fallback, added_tokens,
 * normalizer NFC/Replace/Prepend, pre_tokenizer Sequence/Split/ByteLevel/Digits/Metaspace,
 * decoder ByteLevel or the SentencePiece chain, TemplateProcessing BOS/EOS) and an optional
 * tokenizer_config.json (bos/eos/pad tokens, chat_template). Anything that would change
 * ids and is not implemented is FT_EUNSUPP rather than silently ignored. */
#include "backends/native/tok/tok_internal.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "common/banned.h"

#define MAX_DEPTH 8

static int bad(struct diag *d, const char *path, const char *fmt, const char *what)
	FT_PRINTF(3, 0);
static int bad(struct diag *d, const char *path, const char *fmt, const char *what)
{
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
	return diag_set(d, FT_EINVAL, path, 0, 0, fmt, what);
#pragma GCC diagnostic pop
}

/* Regex text for a literal string: ASCII punctuation escaped. Caller frees. */
static char *regex_quote(const char *s, size_t n)
{
	struct strbuf sb = {0};
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		bool punct = c < 0x80 && !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
					   (c >= 'A' && c <= 'Z') || c == ' ');
		if ((punct && strbuf_append(&sb, "\\", 1)) || strbuf_append(&sb, s + i, 1)) {
			strbuf_free(&sb);
			return NULL;
		}
	}
	return strbuf_detach(&sb);
}

static int add_pre(struct tokenizer *t, json_t *p, int depth, bool *byte_level, bool *spm,
		   const char *path, struct diag *d)
{
	if (!p || json_is_null(p))
		return 0;
	if (depth > MAX_DEPTH)
		return bad(d, path, "%s nests too deeply", "pre_tokenizer");
	const char *type = json_string_value(json_object_get(p, "type"));
	if (!json_is_object(p) || !type)
		return bad(d, path, "%s: expected an object with a \"type\"", "pre_tokenizer");
	int rc;
	if (strcmp(type, "Sequence") == 0) {
		json_t *list = json_object_get(p, "pretokenizers");
		if (!json_is_array(list))
			return bad(d, path, "%s: Sequence without a \"pretokenizers\" array",
				   "pre_tokenizer");
		for (size_t i = 0; i < json_array_size(list); i++)
			if ((rc = add_pre(t, json_array_get(list, i), depth + 1, byte_level, spm,
					  path, d)) != 0)
				return rc;
		return 0;
	}
	if (strcmp(type, "ByteLevel") == 0) {
		json_t *ur = json_object_get(p, "use_regex");
		bool use_regex = !ur || json_is_true(ur);
		bool prefix = json_is_true(json_object_get(p, "add_prefix_space"));
		*byte_level = true;
		return tok_add_step(t, use_regex ? TOK_RE_GPT2 : NULL, PCRE2_ZERO_TERMINATED,
				    SB_ISOLATED, false, prefix, path, d);
	}
	if (strcmp(type, "Metaspace") == 0) {
		const char *repl = json_string_value(json_object_get(p, "replacement"));
		const char *scheme = json_string_value(json_object_get(p, "prepend_scheme"));
		json_t *aps = json_object_get(p, "add_prefix_space"), *split = json_object_get(p, "split");
		if (!repl || strcmp(repl, TOK_META) != 0)
			return diag_set(d, FT_EUNSUPP, path, 0, 0,
					"pre_tokenizer Metaspace: only the replacement \"\u2581\" is supported");
		enum tok_prepend pp = TP_ALWAYS; /* tokenizers' default */
		if (scheme && strcmp(scheme, "first") == 0)
			pp = TP_FIRST;
		else if (scheme && strcmp(scheme, "never") == 0)
			pp = TP_NEVER;
		else if (scheme && strcmp(scheme, "always") != 0)
			return bad(d, path, "pre_tokenizer Metaspace: unknown prepend_scheme '%s'", scheme);
		if (json_is_false(aps))
			pp = TP_NEVER;
		*spm = true;
		return tok_add_metaspace(t, pp, !json_is_false(split), path, d);
	}
	if (strcmp(type, "Digits") == 0) {
		bool each = json_is_true(json_object_get(p, "individual_digits"));
		return tok_add_step(t, each ? "\\p{N}" : "\\p{N}+", PCRE2_ZERO_TERMINATED,
				    SB_ISOLATED, false, false, path, d);
	}
	if (strcmp(type, "Split") == 0) {
		json_t *pat = json_object_get(p, "pattern");
		json_t *re = json_object_get(pat, "Regex"), *str = json_object_get(pat, "String");
		const char *beh = json_string_value(json_object_get(p, "behavior"));
		static const struct {
			const char *name;
			enum split_behavior b;
		} behaviors[] = {{"Isolated", SB_ISOLATED}, {"Removed", SB_REMOVED},
				 {"MergedWithPrevious", SB_MERGED_PREV},
				 {"MergedWithNext", SB_MERGED_NEXT}, {"Contiguous", SB_CONTIGUOUS}};
		int bi = -1;
		for (size_t i = 0; beh && i < FT_ARRAY_LEN(behaviors); i++)
			if (strcmp(beh, behaviors[i].name) == 0)
				bi = (int)i;
		if (bi < 0)
			return bad(d, path, "pre_tokenizer Split: unknown behavior '%s'",
				   beh ? beh : "(missing)");
		bool invert = json_is_true(json_object_get(p, "invert"));
		if (json_is_string(re))
			return tok_add_step(t, json_string_value(re), json_string_length(re),
					    behaviors[bi].b, invert, false, path, d);
		if (json_is_string(str)) {
			char *q = regex_quote(json_string_value(str), json_string_length(str));
			if (!q)
				return diag_set(d, FT_ENOMEM, path, 0, 0, "out of memory");
			rc = tok_add_step(t, q, PCRE2_ZERO_TERMINATED, behaviors[bi].b, invert, false,
					  path, d);
			free(q);
			return rc;
		}
		return bad(d, path, "%s: Split needs pattern.Regex or pattern.String", "pre_tokenizer");
	}
	diag_set(d, FT_EUNSUPP, path, 0, 0, "pre_tokenizer type '%s' is not supported", type);
	diag_hint(d, "supported: Sequence, ByteLevel, Split, Digits, Metaspace");
	return FT_EUNSUPP;
}

static bool is_string_pattern(json_t *pat, const char *want)
{
	const char *s = json_string_value(json_object_get(pat, "String"));
	return s && strcmp(s, want) == 0;
}

static int add_normalizer(struct tokenizer *t, json_t *n, int depth, const char *path,
			  struct diag *d)
{
	if (!n || json_is_null(n))
		return 0;
	const char *type = json_string_value(json_object_get(n, "type"));
	if (!type || depth > MAX_DEPTH)
		return bad(d, path, "%s: expected an object with a \"type\"", "normalizer");
	if (strcmp(type, "Sequence") == 0) {
		json_t *list = json_object_get(n, "normalizers");
		for (size_t i = 0; i < json_array_size(list); i++) {
			int rc = add_normalizer(t, json_array_get(list, i), depth + 1, path, d);
			if (rc)
				return rc;
		}
		return 0;
	}
	if (strcmp(type, "NFC") == 0) { /* documented: input is expected to be NFC already */
		t->norm_nfc = true;
		return 0;
	}
	const char *content = json_string_value(json_object_get(n, "content"));
	if (strcmp(type, "Replace") == 0 && is_string_pattern(json_object_get(n, "pattern"), " ") &&
	    content && strcmp(content, TOK_META) == 0) {
		t->norm_replace = true;
		return 0;
	}
	const char *pre = json_string_value(json_object_get(n, "prepend"));
	if (strcmp(type, "Prepend") == 0 && pre && strcmp(pre, TOK_META) == 0) {
		t->norm_prepend = true;
		return 0;
	}
	diag_set(d, FT_EUNSUPP, path, 0, 0, "normalizer '%s' (with these settings) is not supported",
		 type);
	diag_hint(d, "supported: NFC (not applied), Replace \" \" -> \"\u2581\", Prepend \"\u2581\", "
		     "Sequence of these");
	return FT_EUNSUPP;
}

/* The decoder: ByteLevel, or SentencePiece's Replace("▁", " ") + ByteFallback + Fuse
 * (+ Strip(" ", n, 0)), or Metaspace. *spm says which. */
static int read_decoder(struct tokenizer *t, json_t *dec, int depth, bool *byte_level, bool *spm,
			const char *path, struct diag *d)
{
	if (!dec || json_is_null(dec))
		return 0;
	const char *type = json_string_value(json_object_get(dec, "type"));
	if (!type || depth > MAX_DEPTH)
		return bad(d, path, "%s: expected an object with a \"type\"", "decoder");
	if (strcmp(type, "Sequence") == 0) {
		json_t *list = json_object_get(dec, "decoders");
		for (size_t i = 0; i < json_array_size(list); i++) {
			int rc = read_decoder(t, json_array_get(list, i), depth + 1, byte_level, spm,
					      path, d);
			if (rc)
				return rc;
		}
		return 0;
	}
	if (strcmp(type, "ByteLevel") == 0) {
		*byte_level = true;
		return 0;
	}
	if (strcmp(type, "ByteFallback") == 0 || strcmp(type, "Fuse") == 0)
		return 0;
	const char *content = json_string_value(json_object_get(dec, "content"));
	if (strcmp(type, "Replace") == 0 &&
	    is_string_pattern(json_object_get(dec, "pattern"), TOK_META) && content &&
	    strcmp(content, " ") == 0) {
		*spm = true;
		return 0;
	}
	json_t *start = json_object_get(dec, "start"), *stop = json_object_get(dec, "stop");
	if (strcmp(type, "Strip") == 0 && content && strcmp(content, " ") == 0 &&
	    json_is_integer(start) && json_integer_value(start) >= 0 &&
	    json_integer_value(start) <= 16 && json_integer_value(stop) == 0) {
		t->strip_left = (int)json_integer_value(start);
		return 0;
	}
	const char *repl = json_string_value(json_object_get(dec, "replacement"));
	if (strcmp(type, "Metaspace") == 0 && repl && strcmp(repl, TOK_META) == 0) {
		const char *scheme = json_string_value(json_object_get(dec, "prepend_scheme"));
		*spm = true;
		t->strip_first_meta = !(scheme && strcmp(scheme, "never") == 0) &&
				      !json_is_false(json_object_get(dec, "add_prefix_space"));
		return 0;
	}
	diag_set(d, FT_EUNSUPP, path, 0, 0, "decoder '%s' (with these settings) is not supported",
		 type);
	diag_hint(d, "supported: ByteLevel; Replace \"\u2581\" -> \" \", ByteFallback, Fuse, Strip; "
		     "Metaspace");
	return FT_EUNSUPP;
}

/* BOS/EOS from a TemplateProcessing post-processor (possibly inside a Sequence). */
static void post_processor(struct tokenizer *t, json_t *p, int depth)
{
	const char *type = json_string_value(json_object_get(p, "type"));
	if (!type || depth > MAX_DEPTH)
		return;
	if (strcmp(type, "Sequence") == 0) {
		json_t *list = json_object_get(p, "processors");
		for (size_t i = 0; i < json_array_size(list); i++)
			post_processor(t, json_array_get(list, i), depth + 1);
		return;
	}
	if (strcmp(type, "TemplateProcessing") != 0)
		return;
	json_t *single = json_object_get(p, "single");
	size_t n = json_array_size(single);
	for (size_t k = 0; k < n; k++) {
		if (k != 0 && k != n - 1)
			continue;
		json_t *st = json_object_get(json_array_get(single, k), "SpecialToken");
		const char *name = json_string_value(json_object_get(st, "id"));
		if (!name)
			continue;
		int32_t id = tok_lookup(t, name, strlen(name));
		if (id < 0)
			continue;
		if (k == 0) {
			t->add_bos = true;
			t->bos = id;
		} else {
			t->add_eos = true;
			t->eos = id;
		}
	}
}

/* An added token with normalized: true is matched in the normalized text by HF; that is
 * the raw text unless the normalizer rewrites its characters. */
static int check_added_normalized(const struct tokenizer *t, json_t *added, const char *path,
				  struct diag *d)
{
	for (size_t i = 0; i < json_array_size(added); i++) {
		json_t *a = json_array_get(added, i);
		const char *c = json_string_value(json_object_get(a, "content"));
		if (!json_is_true(json_object_get(a, "normalized")) || !c)
			continue;
		if (t->norm_prepend || (t->norm_replace && strchr(c, ' ')))
			return diag_set(d, FT_EUNSUPP, path, 0, 0,
					"added token '%s' is normalized and the normalizer changes it: "
					"not supported", c);
	}
	return 0;
}

static int32_t config_token(const struct tokenizer *t, json_t *cfg, const char *key)
{
	json_t *v = json_object_get(cfg, key);
	if (json_is_object(v))
		v = json_object_get(v, "content");
	const char *s = json_string_value(v);
	return s ? tok_lookup(t, s, json_string_length(v)) : -1;
}

static int read_config(struct tokenizer *t, const char *config_json, const char *path,
		       struct diag *d)
{
	/* integers as reals: transformers writes model_max_length as int(1e30) */
	json_error_t je;
	json_t *cfg = json_loads(config_json, JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, &je);
	if (!cfg || !json_is_object(cfg)) {
		int rc = diag_set(d, FT_EINVAL, path, je.line > 0 ? je.line : 0,
				  je.column > 0 ? je.column : 0, "tokenizer_config.json: %s",
				  cfg ? "expected an object" : je.text);
		json_decref(cfg);
		return rc;
	}
	int32_t id;
	if ((id = config_token(t, cfg, "bos_token")) >= 0 && !t->add_bos)
		t->bos = id;
	if ((id = config_token(t, cfg, "eos_token")) >= 0 && !t->add_eos)
		t->eos = id;
	if ((id = config_token(t, cfg, "pad_token")) >= 0)
		t->pad = id;
	json_t *ct = json_object_get(cfg, "chat_template");
	const char *tmpl = json_string_value(ct);
	for (size_t i = 0; !tmpl && i < json_array_size(ct); i++) {
		json_t *e = json_array_get(ct, i);
		const char *name = json_string_value(json_object_get(e, "name"));
		if (name && strcmp(name, "default") == 0)
			tmpl = json_string_value(json_object_get(e, "template"));
	}
	int rc = 0;
	if (tmpl && !(t->chat_template = ft_strdup(tmpl)))
		rc = diag_set(d, FT_ENOMEM, path, 0, 0, "out of memory");
	json_decref(cfg);
	return rc;
}

int tokenizer_from_json(struct tokenizer **out, const char *json, size_t len,
			const char *config_json, const char *path, struct diag *d)
{
	*out = NULL;
	json_error_t je;
	struct tokenizer *t = NULL;
	int rc = 0;
	json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
	if (!root) {
		return diag_set(d, FT_EINVAL, path, je.line > 0 ? je.line : 0,
				je.column > 0 ? je.column : 0, "%s", je.text);
	}
	json_t *model = json_object_get(root, "model");
	json_t *vocab = json_object_get(model, "vocab");
	json_t *merges = json_object_get(model, "merges");
	json_t *added = json_object_get(root, "added_tokens");
	const char *mtype = json_string_value(json_object_get(model, "type"));
	if (!json_is_object(root) || !json_is_object(vocab) || !json_is_array(merges)) {
		rc = bad(d, path, "%s: expected model.vocab (object) and model.merges (array)",
			 "tokenizer.json");
		goto done;
	}
	if (mtype && strcmp(mtype, "BPE") != 0) {
		rc = diag_set(d, FT_EUNSUPP, path, 0, 0, "model.type '%s' is not supported (BPE only)",
			      mtype);
		goto done;
	}
	if (added && !json_is_array(added)) {
		rc = bad(d, path, "%s must be an array", "added_tokens");
		goto done;
	}
	json_t *dp = json_object_get(model, "dropout");
	const char *cont = json_string_value(json_object_get(model, "continuing_subword_prefix"));
	const char *eow = json_string_value(json_object_get(model, "end_of_word_suffix"));
	if ((json_is_number(dp) && json_number_value(dp) > 0) || (cont && *cont) || (eow && *eow)) {
		rc = diag_set(d, FT_EUNSUPP, path, 0, 0,
			      "BPE options dropout, continuing_subword_prefix and end_of_word_suffix "
			      "are not supported");
		goto done;
	}
	/* vocabulary size: the largest id + 1 over vocab and added_tokens */
	int64_t max_id = -1;
	const char *key;
	json_t *val;
	json_object_foreach(vocab, key, val) {
		if (!json_is_integer(val) || json_integer_value(val) < 0 ||
		    json_integer_value(val) >= (1 << 24)) {
			rc = bad(d, path, "model.vocab['%s']: id is not an integer in [0, 2^24)", key);
			goto done;
		}
		if (json_integer_value(val) > max_id)
			max_id = json_integer_value(val);
	}
	for (size_t i = 0; i < json_array_size(added); i++) {
		json_t *id = json_object_get(json_array_get(added, i), "id");
		if (!json_is_integer(id) || json_integer_value(id) < 0 ||
		    json_integer_value(id) >= (1 << 24)) {
			rc = bad(d, path, "%s: id is not an integer in [0, 2^24)", "added_tokens");
			goto done;
		}
		if (json_integer_value(id) > max_id)
			max_id = json_integer_value(id);
	}
	if ((rc = tok_alloc(&t, (size_t)(max_id + 1), path, d)) != 0)
		goto done;
	json_object_foreach(vocab, key, val) {
		int32_t id = (int32_t)json_integer_value(val);
		if (t->tokens[id]) {
			rc = diag_set(d, FT_EINVAL, path, 0, 0, "model.vocab: id %d used twice", id);
			goto done;
		}
		if ((rc = tok_set_token(t, id, key, strlen(key), TA_NORMAL, path, d)) != 0)
			goto done;
	}
	for (size_t i = 0; i < json_array_size(added); i++) {
		json_t *a = json_array_get(added, i);
		json_t *content = json_object_get(a, "content");
		if (!json_is_string(content)) {
			rc = bad(d, path, "%s: content must be a string", "added_tokens");
			goto done;
		}
		int attr = json_is_true(json_object_get(a, "special")) ? TA_SPECIAL : TA_ADDED;
		if ((rc = tok_set_token(t, (int32_t)json_integer_value(json_object_get(a, "id")),
					json_string_value(content), json_string_length(content), attr,
					path, d)) != 0)
			goto done;
	}
	if ((rc = tok_index_vocab(t, path, d)) != 0 ||
	    (rc = tok_alloc_merges(t, json_array_size(merges), path, d)) != 0)
		goto done;
	for (size_t i = 0; i < json_array_size(merges); i++) {
		json_t *m = json_array_get(merges, i);
		const char *l, *r;
		size_t ll, rl;
		if (json_is_string(m)) {
			l = json_string_value(m);
			const char *sp = strchr(l, ' ');
			if (!sp || sp == l || !sp[1] || strchr(sp + 1, ' ')) {
				rc = diag_set(d, FT_EINVAL, path, 0, 0,
					      "model.merges[%zu] is not two tokens separated by a space", i);
				goto done;
			}
			ll = (size_t)(sp - l);
			r = sp + 1;
			rl = strlen(r);
		} else if (json_is_array(m) && json_array_size(m) == 2 &&
			   json_is_string(json_array_get(m, 0)) && json_is_string(json_array_get(m, 1))) {
			l = json_string_value(json_array_get(m, 0));
			ll = json_string_length(json_array_get(m, 0));
			r = json_string_value(json_array_get(m, 1));
			rl = json_string_length(json_array_get(m, 1));
		} else {
			rc = diag_set(d, FT_EINVAL, path, 0, 0,
				      "model.merges[%zu] is neither \"a b\" nor [\"a\", \"b\"]", i);
			goto done;
		}
		if ((rc = tok_add_merge(t, l, ll, r, rl, (uint32_t)i, path, d)) != 0)
			goto done;
	}
	t->ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));
	const char *unk = json_string_value(json_object_get(model, "unk_token"));
	if (unk)
		t->unk = tok_lookup(t, unk, strlen(unk));
	if ((rc = add_normalizer(t, json_object_get(root, "normalizer"), 0, path, d)) != 0)
		goto done;
	bool byte_level = false, spm = false;
	if ((rc = add_pre(t, json_object_get(root, "pre_tokenizer"), 0, &byte_level, &spm, path,
			  d)) != 0 ||
	    (rc = read_decoder(t, json_object_get(root, "decoder"), 0, &byte_level, &spm, path,
			       d)) != 0)
		goto done;
	spm = spm || t->norm_replace || t->norm_prepend;
	if (byte_level == spm) {
		rc = diag_set(d, FT_EUNSUPP, path, 0, 0,
			      byte_level ? "the tokenizer mixes byte-level and SentencePiece parts"
					 : "neither a byte-level BPE (ByteLevel pre-tokenizer or decoder) "
					   "nor a SentencePiece-style BPE (Metaspace, or \"\u2581\" "
					   "normalizer and decoder)");
		goto done;
	}
	t->model = spm ? TM_SPM : TM_BYTE_LEVEL;
	t->byte_fallback = json_is_true(json_object_get(model, "byte_fallback"));
	t->fuse_unk = json_is_true(json_object_get(model, "fuse_unk"));
	if (byte_level && (t->norm_replace || t->norm_prepend || t->byte_fallback)) {
		rc = diag_set(d, FT_EUNSUPP, path, 0, 0,
			      "a byte-level BPE with byte_fallback or a \"\u2581\" normalizer is not "
			      "supported");
		goto done;
	}
	if (spm && (rc = check_added_normalized(t, added, path, d)) != 0)
		goto done;
	if ((rc = tok_finish(t, path, d)) != 0)
		goto done;
	post_processor(t, json_object_get(root, "post_processor"), 0);
	if (config_json && (rc = read_config(t, config_json, path, d)) != 0)
		goto done;
	if (t->eos < 0)
		t->eos = tok_lookup(t, "<|endoftext|>", 13);
done:
	json_decref(root);
	if (rc) {
		tokenizer_free(t);
		return rc;
	}
	*out = t;
	return 0;
}
