/* prepare: glue from config + tokenizer to tokenised splits (see prepare.h). */
#include "backends/native/data/prepare.h"

#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "schema/table.h"
#include "common/banned.h"

static int tok_encode(void *ud, const char *text, size_t len, bool parse_special, int32_t **out_ids,
		      size_t *out_n, struct diag *d)
{
	return tokenizer_encode_ex((const struct tokenizer *)ud, text, len,
				   parse_special ? TOK_PARSE_SPECIAL : 0, out_ids, out_n, d);
}

static int tok_encode_more(void *ud, const char *text, size_t len, bool parse_special,
			   int32_t **out_ids, size_t *out_n, struct diag *d)
{
	return tokenizer_encode_ex((const struct tokenizer *)ud, text, len,
				   TOK_CONTINUATION | (parse_special ? TOK_PARSE_SPECIAL : 0), out_ids,
				   out_n, d);
}

struct data_tok data_tok_from_tokenizer(const struct tokenizer *t)
{
	struct data_tok dt;
	memset(&dt, 0, sizeof dt);
	dt.ud = (void *)(uintptr_t)t;
	dt.encode = tok_encode;
	dt.encode_more = tok_encode_more;
	dt.eos_id = tokenizer_eos(t);
	dt.bos_id = tokenizer_bos(t);
	dt.add_bos = tokenizer_adds_bos(t) && dt.bos_id >= 0;
	return dt;
}

bool data_tokenizer_has_chatml(const struct tokenizer *t)
{
	return tokenizer_token_id(t, "<|im_start|>") >= 0 && tokenizer_token_id(t, "<|im_end|>") >= 0;
}

static bool has_gemma(const struct tokenizer *t)
{
	return tokenizer_token_id(t, "<start_of_turn>") >= 0 &&
	       tokenizer_token_id(t, "<end_of_turn>") >= 0;
}

enum template_kind data_tokenizer_template(const struct tokenizer *t)
{
	return has_gemma(t) ? TEMPLATE_GEMMA
	       : data_tokenizer_has_chatml(t) ? TEMPLATE_CHATML : TEMPLATE_PLAIN;
}

void data_config_one_file(struct config_data *out, const char *path, enum data_format format,
			  const char *tmpl, const char *system, int max_length, int64_t limit)
{
	memset(out, 0, sizeof *out);
	out->format = format;
	out->test.present = true;
	out->test.path = (char *)(uintptr_t)path;
	out->template_name =
		(char *)(uintptr_t)(tmpl ? tmpl : schema_enum_name("data.template", DATA_TEMPLATE_AUTO));
	out->system = (char *)(uintptr_t)system;
	out->max_length = max_length;
	out->limit_test = limit;
	out->on_bad_example = BAD_EXAMPLE_ERROR;
}

void data_prepared_free(struct data_prepared *p)
{
	if (!p)
		return;
	data_splits_free(&p->splits);
	free(p->default_system);
	tok_set_free(p->train);
	tok_set_free(p->validation);
	tok_set_free(p->test);
	memset(p, 0, sizeof *p);
}

int data_prepare(struct data_prepared *out, const struct config_data *cfg, int context,
		 const struct tokenizer *tok, struct diag *d)
{
	memset(out, 0, sizeof *out);
	bool chatml = data_tokenizer_has_chatml(tok);
	int rc = template_resolve(&out->tmpl, cfg, data_tokenizer_template(tok), d);
	if (rc)
		return rc;
	if (out->tmpl.kind == TEMPLATE_CHATML && !chatml) {
		rc = diag_set(d, FT_EINVAL, NULL, 0, 0,
			      "data.template: chatml needs <|im_start|> and <|im_end|> tokens, which this model's tokenizer lacks");
		diag_hint(d, "use template: plain, alpaca or a custom string");
		return rc;
	}
	if (out->tmpl.kind == TEMPLATE_GEMMA && !has_gemma(tok)) {
		rc = diag_set(d, FT_EINVAL, NULL, 0, 0,
			      "data.template: gemma needs <start_of_turn> and <end_of_turn> tokens, which this model's tokenizer lacks");
		diag_hint(d, "use template: plain, alpaca or a custom string");
		return rc;
	}
	if (out->tmpl.kind == TEMPLATE_CHATML) {
		out->default_system = template_chatml_default_system(tokenizer_chat_template(tok));
		out->tmpl.default_system = out->default_system;
	}
	int ml = cfg->max_length;
	if (context > 0 && (ml <= 0 || ml > context))
		ml = context;
	out->max_length = ml;
	rc = data_load_splits(&out->splits, cfg, 0, d);
	if (rc)
		goto fail;
	struct data_tok dt = data_tok_from_tokenizer(tok);
	struct dataset *sets[] = {out->splits.train, out->splits.validation, out->splits.test};
	struct tok_set **dst[] = {&out->train, &out->validation, &out->test};
	for (size_t i = 0; i < 3; i++) {
		if (!sets[i])
			continue;
		rc = data_tokenize(dst[i], sets[i], &out->tmpl, &dt, ml, cfg->train_on_inputs, d);
		if (rc)
			goto fail;
	}
	return 0;
fail:
	data_prepared_free(out);
	return rc;
}

static bool is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static size_t utf8_chars(const char *s)
{
	size_t n = 0;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		n += (*p & 0xC0) != 0x80;
	return n;
}

/* The sequences prompt + choice of one example into c. */
static int choice_seqs(struct tok_choices *c, const struct templated *t, const char *const *choices,
		       const struct data_tok *dt, int max_length, size_t *n_trunc, struct diag *d)
{
	size_t np = t->n_prompt < t->n ? t->n_prompt : t->n;
	struct segment *segs = calloc(np + 1, sizeof *segs);
	char *cut = NULL, *text = NULL;
	struct strbuf ws = {0};
	int rc = 0;
	if (!segs) {
		rc = FT_ENOMEM;
		goto done;
	}
	/* trailing whitespace of the prompt, possibly over several segments: the prompt keeps
	 * segments [0, keep) with the last one cut to keep_len bytes */
	size_t keep = np, keep_len = 0;
	while (keep > 0 && !(t->segs[keep - 1].flags & SEG_EOS)) {
		const char *x = t->segs[keep - 1].text;
		size_t e = strlen(x);
		while (e > 0 && is_ws(x[e - 1]))
			e--;
		if (e > 0) {
			keep_len = e;
			break;
		}
		keep--;
	}
	for (size_t k = keep; k < np; k++) {
		if (strbuf_puts(&ws, t->segs[k].text) != 0) {
			rc = FT_ENOMEM;
			goto done;
		}
	}
	if (keep > 0 && keep_len > 0) {
		const char *x = t->segs[keep - 1].text;
		struct strbuf w2 = {0};
		if (strbuf_puts(&w2, x + keep_len) || strbuf_append(&w2, ws.buf ? ws.buf : "", ws.len)) {
			strbuf_free(&w2);
			rc = FT_ENOMEM;
			goto done;
		}
		strbuf_free(&ws);
		ws = w2;
	}
	for (size_t k = 0; k < keep; k++)
		segs[k] = t->segs[k];
	if (keep > 0 && keep_len > 0 && keep_len < strlen(t->segs[keep - 1].text)) {
		if (!(cut = ft_strndup(t->segs[keep - 1].text, keep_len))) {
			rc = FT_ENOMEM;
			goto done;
		}
		segs[keep - 1].text = cut;
	}
	c->seq = calloc(c->n, sizeof *c->seq);
	c->chars = calloc(c->n, sizeof *c->chars);
	if (!c->seq || !c->chars) {
		rc = FT_ENOMEM;
		goto done;
	}
	for (size_t j = 0; j < c->n && !rc; j++) {
		free(text);
		text = NULL;
		struct strbuf sb = {0};
		if (strbuf_append(&sb, ws.buf ? ws.buf : "", ws.len) || strbuf_puts(&sb, choices[j])) {
			strbuf_free(&sb);
			rc = FT_ENOMEM;
			break;
		}
		text = strbuf_detach(&sb);
		segs[keep] = (struct segment){text, SEG_TRAIN};
		struct templated ct = {.segs = segs, .n = keep + 1, .n_prompt = keep};
		rc = data_tokenize_one(&c->seq[j], &ct, dt, max_length, false, d);
		if (!rc) {
			*n_trunc += c->seq[j].truncated;
			c->chars[j] = utf8_chars(choices[j]);
		}
	}
done:
	free(text);
	free(cut);
	free(segs);
	strbuf_free(&ws);
	if (rc == FT_ENOMEM && !d->code)
		diag_set(d, rc, NULL, 0, 0, "out of memory tokenising choices");
	return rc;
}

int data_prepare_choices(struct data_prepared *p, const struct tokenizer *tok,
			 const char *const *labels, size_t n_labels, const char *const *splits,
			 size_t n_splits, struct diag *d)
{
	struct data_tok dt = data_tok_from_tokenizer(tok);
	struct dataset *sets[] = {p->splits.train, p->splits.validation, p->splits.test};
	struct tok_set *ts[] = {p->train, p->validation, p->test};
	static const char *const names[] = {"train", "validation", "test"};
	for (size_t k = 0; k < 3; k++) {
		if (!sets[k] || !ts[k] || ts[k]->choices)
			continue;
		bool wanted = !splits;
		for (size_t i = 0; i < n_splits && !wanted; i++)
			wanted = strcmp(splits[i], names[k]) == 0;
		if (!wanted)
			continue;
		const struct dataset *ds = sets[k];
		struct tok_set *set = ts[k];
		if (ds->format == DATA_TEXT || ds->format == DATA_PREFERENCE)
			return diag_set(d, FT_EINVAL, ds->path, 0, 0,
					"choice metrics need completion, instruction or chat data "
					"(this file is %s data)", data_format_name(ds->format));
		if (!(set->choices = calloc(set->n ? set->n : 1, sizeof *set->choices)))
			return diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
		size_t n_trunc = 0;
		int rc = 0;
		for (size_t i = 0; i < set->n && !rc; i++) {
			const struct record *r = &ds->recs[set->ex[i].record];
			struct tok_choices *c = &set->choices[i];
			const char *const *ch = (const char *const *)r->choices;
			c->n = r->n_choices;
			c->answer = r->answer;
			if (!r->choices) {
				const char *ref = record_reference(r, ds->format);
				ch = labels;
				c->n = n_labels;
				c->answer = n_labels;
				for (size_t j = 0; ref && j < n_labels; j++)
					if (strcmp(labels[j], ref) == 0)
						c->answer = j;
				if (n_labels == 0) {
					rc = diag_set(d, FT_EINVAL, ds->path, r->line, 0,
						      "the example has no choices (add \"choices\" to it, "
						      "or declare the label set: eval.choices, or ftlab eval "
						      "--choices)");
					break;
				}
				if (c->answer == n_labels) {
					rc = diag_set(d, FT_EINVAL, ds->path, r->line, 0,
						      "the response '%.80s' is not one of eval.choices",
						      ref ? ref : "");
					diag_hint(d, "every response of choice-scored data must be one of "
						  "the labels, written exactly");
					break;
				}
			}
			struct templated t;
			if ((rc = template_apply(&t, r, ds->format, &p->tmpl, ds->path, d)) != 0)
				break;
			rc = choice_seqs(c, &t, ch, &dt, p->max_length, &n_trunc, d);
			templated_free(&t);
			if (rc && d->code && !d->line && d->file[0] == 0) {
				snprintf(d->file, sizeof d->file, "%s", ds->path);
				d->line = r->line;
			}
		}
		if (rc) {
			tok_set_clear_choices(set);
			return rc;
		}
		set->n_choice_truncated = n_trunc;
	}
	return 0;
}

const struct tok_set *data_prepared_split(const struct data_prepared *p, const char *name)
{
	if (strcmp(name, "train") == 0)
		return p->train;
	if (strcmp(name, "validation") == 0)
		return p->validation;
	if (strcmp(name, "test") == 0)
		return p->test;
	return NULL;
}

char *data_prepared_warnings(const struct data_prepared *p)
{
	char *base = data_splits_warnings(&p->splits);
	if (!base)
		return NULL;
	struct strbuf sb = {0};
	int rc = strbuf_puts(&sb, base);
	free(base);
	const struct tok_set *sets[] = {p->train, p->validation, p->test};
	const char *names[] = {"train", "validation", "test"};
	for (size_t i = 0; i < 3 && !rc; i++) {
		if (!sets[i])
			continue;
		if (sets[i]->n_truncated)
			rc = strbuf_printf(&sb, "%s: %zu of %zu example(s) truncated to %d tokens\n", names[i],
					   sets[i]->n_truncated, sets[i]->n, p->max_length);
		if (!rc && sets[i]->n_no_loss)
			rc = strbuf_printf(&sb, "%s: %zu example(s) have no loss tokens left after truncation\n",
					   names[i], sets[i]->n_no_loss);
		if (!rc && sets[i]->n_pair_truncated)
			rc = strbuf_printf(&sb, "%s: %zu preference pair(s) with a chosen or rejected "
					   "sequence truncated to %d tokens\n", names[i],
					   sets[i]->n_pair_truncated, p->max_length);
		if (!rc && sets[i]->n_pair_empty)
			rc = strbuf_printf(&sb, "%s: %zu preference pair(s) have no completion token "
					   "left in the chosen or rejected sequence (left out of "
					   "preference training)\n", names[i], sets[i]->n_pair_empty);
		if (!rc && sets[i]->n_choice_truncated)
			rc = strbuf_printf(&sb, "%s: %zu choice sequence(s) truncated to %d tokens\n",
					   names[i], sets[i]->n_choice_truncated, p->max_length);
	}
	if (rc) {
		strbuf_free(&sb);
		return NULL;
	}
	return strbuf_detach(&sb);
}
