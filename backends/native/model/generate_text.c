/* generate_text: chat formatting, stop strings and decoding around the token-level
 * generator (see generate_text.h). */
#include "backends/native/model/generate_text.h"

#include <stdlib.h>
#include <string.h>

#include "backends/native/data/template.h"
#include "common/util.h"
#include "common/banned.h"

bool gen_has_chatml(const struct tokenizer *tok)
{
	return tokenizer_token_id(tok, "<|im_start|>") >= 0 &&
	       tokenizer_token_id(tok, "<|im_end|>") >= 0;
}

static bool has_gemma(const struct tokenizer *tok)
{
	return tokenizer_token_id(tok, "<start_of_turn>") >= 0 &&
	       tokenizer_token_id(tok, "<end_of_turn>") >= 0;
}

char *gen_chatml_prompt(const struct tokenizer *tok, const char *system, const char *user)
{
	char *def = NULL;
	if (!system) {
		const char *jinja = tokenizer_chat_template(tok);
		def = jinja ? template_chatml_default_system(jinja) : NULL;
		system = def;
	}
	struct strbuf sb = {0};
	int rc = 0;
	if (system && *system)
		rc |= strbuf_printf(&sb, "<|im_start|>system\n%s<|im_end|>\n", system);
	rc |= strbuf_printf(&sb, "<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n", user);
	free(def);
	if (rc) {
		strbuf_free(&sb);
		return NULL;
	}
	return strbuf_detach(&sb);
}

struct stop_ctx {
	const struct tokenizer *tok;
	const struct gen_text_opts *o;
};

/* Position of the first stop string in s, or -1. */
static long find_stop(const char *s, const struct gen_text_opts *o)
{
	long best = -1;
	for (size_t k = 0; k < o->n_stop_strings; k++) {
		if (!o->stop_strings[k][0])
			continue;
		const char *p = strstr(s, o->stop_strings[k]);
		if (p && (best < 0 || p - s < best))
			best = p - s;
	}
	return best;
}

static bool stop_cb(void *ud, size_t i, const int32_t *gen, size_t n)
{
	(void)i;
	struct stop_ctx *c = ud;
	char *text = NULL;
	size_t len;
	if (tokenizer_decode(c->tok, gen, n, true, &text, &len))
		return false;
	bool hit = find_stop(text, c->o) >= 0;
	free(text);
	return hit;
}

int model_generate_text(struct model *m, const struct tokenizer *tok,
			const char *const *prompts, size_t n, const struct gen_text_opts *o,
			char ***out_texts, struct diag *d)
{
	*out_texts = NULL;
	int rc = 0;
	int32_t **ids = calloc(n ? n : 1, sizeof *ids);
	size_t *lens = calloc(n ? n : 1, sizeof *lens);
	char **texts = calloc(n ? n : 1, sizeof *texts);
	int32_t **gen = NULL;
	size_t *glen = NULL;
	if (!ids || !lens || !texts) {
		rc = diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
		goto done;
	}
	bool gemma = o->chat && has_gemma(tok);
	bool chat = gemma || (o->chat && gen_has_chatml(tok));
	for (size_t i = 0; i < n; i++) {
		char *p = gemma ? template_chat_prompt(TEMPLATE_GEMMA, o->system, prompts[i])
			  : chat ? gen_chatml_prompt(tok, o->system, prompts[i]) : NULL;
		const char *text = chat ? p : prompts[i];
		if (!text) {
			rc = diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
			goto done;
		}
		rc = tokenizer_encode(tok, text, strlen(text), chat, &ids[i], &lens[i], d);
		free(p);
		if (rc)
			goto done;
	}
	struct gen_opts g = o->g;
	int32_t extra[1];
	g.eos_id = tokenizer_eos(tok);
	if (chat) {
		extra[0] = tokenizer_token_id(tok, gemma ? "<end_of_turn>" : "<|im_end|>");
		g.extra_stop_ids = extra;
		g.n_extra_stop_ids = 1;
	}
	struct stop_ctx sc = {tok, o};
	if (o->n_stop_strings) {
		g.stop = stop_cb;
		g.stop_ud = &sc;
	}
	rc = model_generate_tokens(m, (const int32_t *const *)ids, lens, n, &g, &gen, &glen, d);
	if (rc)
		goto done;
	for (size_t i = 0; i < n; i++) {
		size_t len;
		if (tokenizer_decode(tok, gen[i], glen[i], true, &texts[i], &len)) {
			rc = diag_set(d, FT_EINTERNAL, NULL, 0, 0, "generated ids do not decode");
			goto done;
		}
		long cut = find_stop(texts[i], o);
		if (cut >= 0)
			texts[i][cut] = '\0';
	}
	*out_texts = texts;
	texts = NULL;
done:
	for (size_t i = 0; i < n; i++) {
		if (ids)
			free(ids[i]);
		if (texts)
			free(texts[i]);
		if (gen)
			free(gen[i]);
	}
	free(ids);
	free(lens);
	free(texts);
	free(gen);
	free(glen);
	return rc;
}
