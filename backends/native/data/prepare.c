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
	}
	if (rc) {
		strbuf_free(&sb);
		return NULL;
	}
	return strbuf_detach(&sb);
}
