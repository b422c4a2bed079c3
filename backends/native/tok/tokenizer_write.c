/* tokenizer_write: a tokenizer as the Hugging Face files that load it as it is:
 * tokenizer.json (vocabulary, merges in rank order, added tokens, normalizer,
 * pre-tokenizer, BOS/EOS post-processor, decoder), tokenizer_config.json (special tokens,
 * add_bos/eos_token, chat template) and special_tokens_map.json. Used by merged exports of
 * GGUF bases, whose files carry no tokenizer.json. */
#include "backends/native/tok/tok_internal.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "common/banned.h"

/* The chat template written for Gemma models (their GGUF files carry none): ftlab's gemma
 * template (docs/data.md) in Jinja. */
static const char GEMMA_JINJA[] =
	"{{ bos_token }}{% set sys = '' %}{% set msgs = messages %}"
	"{% if messages and messages[0]['role'] == 'system' %}"
	"{% set sys = messages[0]['content'] + '\\n\\n' %}{% set msgs = messages[1:] %}{% endif %}"
	"{% for m in msgs %}"
	"{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}"
	"{{ raise_exception('roles must alternate user, assistant, user, ...') }}{% endif %}"
	"{{ '<start_of_turn>' + ('model' if m['role'] == 'assistant' else m['role']) + '\\n' + "
	"(sys if loop.first else '') + (m['content'] | trim) + '<end_of_turn>\\n' }}"
	"{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}";

static json_t *token_str(const struct tokenizer *t, int32_t id)
{
	if (id < 0 || (size_t)id >= t->n_vocab || !t->tokens[id])
		return json_null();
	return json_stringn_nocheck(t->tokens[id], t->token_len[id]);
}

static const char *behavior_name(enum split_behavior b)
{
	switch (b) {
	case SB_ISOLATED: return "Isolated";
	case SB_REMOVED: return "Removed";
	case SB_MERGED_PREV: return "MergedWithPrevious";
	case SB_MERGED_NEXT: return "MergedWithNext";
	case SB_CONTIGUOUS: return "Contiguous";
	}
	return "Isolated";
}

static const char *prepend_name(enum tok_prepend p)
{
	return p == TP_FIRST ? "first" : p == TP_NEVER ? "never" : "always";
}

static json_t *pre_tokenizer(const struct tokenizer *t)
{
	json_t *list = json_array();
	bool byte_level = false;
	for (size_t i = 0; i < t->n_steps; i++) {
		const struct pre_step *s = &t->steps[i];
		json_t *j;
		bool iso = s->behavior == SB_ISOLATED && !s->invert;
		if (s->metaspace) {
			j = json_pack("{s:s,s:s,s:s,s:b}", "type", "Metaspace", "replacement", TOK_META,
				      "prepend_scheme", prepend_name(s->prepend), "split", s->split);
		} else if (t->model == TM_BYTE_LEVEL && iso &&
			   (!s->re || strcmp(s->pattern, TOK_RE_GPT2) == 0)) {
			j = json_pack("{s:s,s:b,s:b,s:b}", "type", "ByteLevel", "add_prefix_space",
				      s->prefix_space, "trim_offsets", 1, "use_regex", s->re != NULL);
			byte_level = true;
		} else if (iso && s->re && (strcmp(s->pattern, "\\p{N}") == 0 ||
					    strcmp(s->pattern, "\\p{N}+") == 0)) {
			j = json_pack("{s:s,s:b}", "type", "Digits", "individual_digits",
				      s->pattern[5] == 0);
		} else if (s->re) {
			j = json_pack("{s:s,s:{s:s},s:s,s:b}", "type", "Split", "pattern", "Regex",
				      s->pattern, "behavior", behavior_name(s->behavior), "invert",
				      s->invert);
		} else {
			continue;
		}
		json_array_append_new(list, j);
	}
	if (t->model == TM_BYTE_LEVEL && !byte_level) /* the byte alphabet itself */
		json_array_append_new(list, json_pack("{s:s,s:b,s:b,s:b}", "type", "ByteLevel",
						      "add_prefix_space", 0, "trim_offsets", 1,
						      "use_regex", 0));
	if (json_array_size(list) == 0) {
		json_decref(list);
		return json_null();
	}
	if (json_array_size(list) == 1) {
		json_t *one = json_incref(json_array_get(list, 0));
		json_decref(list);
		return one;
	}
	return json_pack("{s:s,s:o}", "type", "Sequence", "pretokenizers", list);
}

static json_t *normalizer(const struct tokenizer *t)
{
	json_t *list = json_array();
	if (t->norm_nfc)
		json_array_append_new(list, json_pack("{s:s}", "type", "NFC"));
	if (t->norm_prepend)
		json_array_append_new(list, json_pack("{s:s,s:s}", "type", "Prepend", "prepend", TOK_META));
	if (t->norm_replace)
		json_array_append_new(list, json_pack("{s:s,s:{s:s},s:s}", "type", "Replace", "pattern",
						      "String", " ", "content", TOK_META));
	if (json_array_size(list) == 0) {
		json_decref(list);
		return json_null();
	}
	if (json_array_size(list) == 1) {
		json_t *one = json_incref(json_array_get(list, 0));
		json_decref(list);
		return one;
	}
	return json_pack("{s:s,s:o}", "type", "Sequence", "normalizers", list);
}

static json_t *decoder(const struct tokenizer *t)
{
	if (t->model == TM_BYTE_LEVEL)
		return json_pack("{s:s,s:b,s:b,s:b}", "type", "ByteLevel", "add_prefix_space", 1,
				 "trim_offsets", 1, "use_regex", 1);
	if (t->strip_first_meta)
		return json_pack("{s:s,s:s,s:s,s:b}", "type", "Metaspace", "replacement", TOK_META,
				 "prepend_scheme", "always", "split", 1);
	json_t *list = json_pack("[{s:s,s:{s:s},s:s},{s:s},{s:s}]", "type", "Replace", "pattern",
				 "String", TOK_META, "content", " ", "type", "ByteFallback", "type",
				 "Fuse");
	if (t->strip_left > 0)
		json_array_append_new(list, json_pack("{s:s,s:s,s:i,s:i}", "type", "Strip", "content",
						      " ", "start", t->strip_left, "stop", 0));
	return json_pack("{s:s,s:o}", "type", "Sequence", "decoders", list);
}

/* BOS/EOS as transformers writes them: single = [BOS] A [EOS], pair = [BOS] A [EOS] [BOS] B [EOS]. */
static json_t *post_processor(const struct tokenizer *t)
{
	bool bos = t->add_bos && t->bos >= 0, eos = t->add_eos && t->eos >= 0;
	if (!bos && !eos)
		return json_null();
	json_t *single = json_array(), *pair = json_array(), *specials = json_object();
	for (int seq = 0; seq < 2; seq++) {
		const char *name = seq ? "B" : "A";
		for (int part = 0; part < 3; part++) {
			int32_t id = part == 0 ? (bos ? t->bos : -1) : part == 2 ? (eos ? t->eos : -1) : -2;
			json_t *e = id == -2
				? json_pack("{s:{s:s,s:i}}", "Sequence", "id", name, "type_id", seq)
				: id >= 0 ? json_pack("{s:{s:o,s:i}}", "SpecialToken", "id", token_str(t, id),
						      "type_id", seq)
					  : NULL;
			if (!e)
				continue;
			if (seq == 0)
				json_array_append(single, e);
			json_array_append_new(pair, e);
		}
	}
	int32_t ids[2] = {bos ? t->bos : -1, eos ? t->eos : -1};
	for (int k = 0; k < 2; k++)
		if (ids[k] >= 0) {
			json_t *s = token_str(t, ids[k]);
			json_object_set_new(specials, json_string_value(s),
					    json_pack("{s:O,s:[i],s:[O]}", "id", s, "ids", ids[k],
						      "tokens", s));
			json_decref(s);
		}
	return json_pack("{s:s,s:o,s:o,s:o}", "type", "TemplateProcessing", "single", single, "pair",
			 pair, "special_tokens", specials);
}

static json_t *model_json(const struct tokenizer *t, struct diag *d)
{
	json_t *vocab = json_object(), *merges = json_array();
	for (size_t i = 0; i < t->n_vocab; i++) {
		if (!t->tokens[i] || tok_lookup(t, t->tokens[i], t->token_len[i]) != (int32_t)i)
			continue; /* unused id, or a duplicate text (the first id owns it) */
		json_object_setn_new_nocheck(vocab, t->tokens[i], t->token_len[i],
					     json_integer((json_int_t)i));
	}
	int32_t *pairs = NULL;
	size_t n = 0;
	if (tok_merge_list(t, &pairs, &n)) {
		json_decref(vocab);
		json_decref(merges);
		diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
		return NULL;
	}
	for (size_t i = 0; i < n; i++)
		json_array_append_new(merges, json_pack("[o,o]", token_str(t, pairs[2 * i]),
							token_str(t, pairs[2 * i + 1])));
	free(pairs);
	return json_pack("{s:s,s:n,s:o,s:n,s:n,s:b,s:b,s:b,s:o,s:o}", "type", "BPE", "dropout",
			 "unk_token", token_str(t, t->unk), "continuing_subword_prefix",
			 "end_of_word_suffix", "fuse_unk", t->fuse_unk, "byte_fallback",
			 t->byte_fallback, "ignore_merges", t->ignore_merges, "vocab", vocab, "merges",
			 merges);
}

static json_t *tokenizer_json(const struct tokenizer *t, struct diag *d)
{
	json_t *added = json_array();
	for (size_t i = 0; i < t->n_vocab; i++) {
		if (!t->tokens[i] || (t->attr[i] != TA_SPECIAL && t->attr[i] != TA_ADDED))
			continue;
		json_array_append_new(added, json_pack("{s:i,s:o,s:b,s:b,s:b,s:b,s:b}", "id", (int)i,
						       "content", token_str(t, (int32_t)i),
						       "single_word", 0, "lstrip", 0, "rstrip", 0,
						       "normalized", 0, "special",
						       t->attr[i] == TA_SPECIAL));
	}
	json_t *model = model_json(t, d);
	if (!model) {
		json_decref(added);
		return NULL;
	}
	return json_pack("{s:s,s:n,s:n,s:o,s:o,s:o,s:o,s:o,s:o}", "version", "1.0", "truncation",
			 "padding", "added_tokens", added, "normalizer", normalizer(t),
			 "pre_tokenizer", pre_tokenizer(t), "post_processor", post_processor(t),
			 "decoder", decoder(t), "model", model);
}

static bool is_gemma_vocab(const struct tokenizer *t)
{
	return tok_lookup(t, "<start_of_turn>", 15) >= 0 && tok_lookup(t, "<end_of_turn>", 13) >= 0;
}

static int write_json(const char *dir, const char *name, json_t *j, size_t flags, struct diag *d)
{
	char *text = j ? json_dumps(j, flags) : NULL;
	char *p = path_join(dir, name);
	int rc = text && p ? file_write_atomic(p, text, strlen(text), d)
			   : diag_set(d, FT_ENOMEM, dir, 0, 0, "out of memory writing %s", name);
	free(text);
	free(p);
	return rc;
}

int tokenizer_write_hf(const char *dir, const struct tokenizer *t, int model_max_length,
		       struct diag *d)
{
	int rc = dir_make_all(dir, d);
	if (rc)
		return rc;
	json_t *tj = tokenizer_json(t, d);
	if (!tj)
		return d->code ? d->code : diag_set(d, FT_ENOMEM, dir, 0, 0, "out of memory");
	rc = write_json(dir, "tokenizer.json", tj, JSON_COMPACT, d);
	json_decref(tj);
	if (rc)
		return rc;
	const char *tmpl = t->chat_template ? t->chat_template
			   : is_gemma_vocab(t) ? GEMMA_JINJA : NULL;
	json_t *cfg = json_pack("{s:b,s:b,s:o,s:o,s:o,s:o,s:b,s:s}", "add_bos_token",
				t->add_bos && t->bos >= 0, "add_eos_token", t->add_eos && t->eos >= 0,
				"bos_token", token_str(t, t->bos), "eos_token", token_str(t, t->eos),
				"pad_token", token_str(t, t->pad), "unk_token", token_str(t, t->unk),
				"clean_up_tokenization_spaces", 0, "tokenizer_class",
				"PreTrainedTokenizerFast");
	if (cfg && model_max_length > 0)
		json_object_set_new(cfg, "model_max_length", json_integer(model_max_length));
	if (cfg && tmpl)
		json_object_set_new(cfg, "chat_template", json_string(tmpl));
	rc = write_json(dir, "tokenizer_config.json", cfg, JSON_INDENT(2) | JSON_PRESERVE_ORDER, d);
	json_decref(cfg);
	if (rc)
		return rc;
	json_t *map = json_object();
	const char *names[] = {"bos_token", "eos_token", "pad_token", "unk_token"};
	int32_t ids[] = {t->bos, t->eos, t->pad, t->unk};
	for (size_t k = 0; k < FT_ARRAY_LEN(ids); k++)
		if (ids[k] >= 0 && (size_t)ids[k] < t->n_vocab && t->tokens[ids[k]])
			json_object_set_new(map, names[k], token_str(t, ids[k]));
	rc = write_json(dir, "special_tokens_map.json", map, JSON_INDENT(2) | JSON_PRESERVE_ORDER, d);
	json_decref(map);
	return rc;
}
