/* template: turns a record into text segments, each marked trainable or not and as
 * template markup (special tokens parsed) or user content (special tokens left as text).
 * Templates: chatml, gemma, alpaca, plain, and custom strings with {system} {prompt}
 * {response}. The segments before the final response form the generation prompt. */
#ifndef FTLAB_TEMPLATE_H
#define FTLAB_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>

#include "backends/native/data/dataset.h"
#include "common/diag.h"

enum template_kind { TEMPLATE_CHATML, TEMPLATE_ALPACA, TEMPLATE_PLAIN, TEMPLATE_CUSTOM,
		     TEMPLATE_GEMMA };

struct template_spec {
	enum template_kind kind;
	const char *custom;         /* TEMPLATE_CUSTOM: the string (borrowed) */
	const char *system;         /* config system prompt or NULL (borrowed) */
	const char *default_system; /* the model template's own default system text, or NULL */
};

/* Resolves data.template ("chatml" | "gemma" | "alpaca" | "plain" | "auto" | NULL +
 * custom) for a model. "auto" and an unset template give auto_kind (the model's own
 * template: see data_tokenizer_template). Custom strings are checked: {response} must
 * occur once, only {system} {prompt} {response} are placeholders and "{{" "}}" are
 * literal braces. FT_EINVAL names data.template. */
int template_resolve(struct template_spec *out, const struct config_data *cfg,
		     enum template_kind auto_kind, struct diag *d) FT_WUR;
/* "chatml", "gemma", ... */
const char *template_kind_name(enum template_kind k);

/* The generation prompt of a one-message conversation in the chatml or gemma template
 * (system may be NULL). Caller frees; NULL when out of memory. */
char *template_chat_prompt(enum template_kind k, const char *system, const char *user);

/* Extracts the default system message from a ChatML Jinja chat template (the literal
 * text of "<|im_start|>system\n...<|im_end|>" that the template inserts when the
 * conversation has none), or NULL. Caller frees. */
char *template_chatml_default_system(const char *jinja);

enum {
	SEG_TRAIN = 1,   /* loss is taken on these tokens (with train_on_inputs: all) */
	SEG_MARKUP = 2,  /* template text: special tokens such as <|im_end|> are parsed */
	SEG_EOS = 4      /* not text: the tokenizer's end-of-sequence token */
};

struct segment {
	char *text;      /* "" for SEG_EOS */
	unsigned flags;
};

struct templated {
	struct segment *segs;
	size_t n;
	size_t n_prompt;  /* the first n_prompt segments are the generation prompt */
	char *prompt;     /* the user-facing input (for reports): prompt, instruction+input, last user turn */
	char *reference;  /* the expected output (last assistant turn / response), or NULL for text */
};

/* Applies a template to one record of the given format. FT_EINVAL (with the record's
 * line) when the template cannot express the record (e.g. multi-turn chat with
 * alpaca). `file` is used in messages. A preference record is templated as its prompt
 * with the chosen completion as the response. */
int template_apply(struct templated *out, const struct record *r, enum data_format format,
		   const struct template_spec *t, const char *file, struct diag *d) FT_WUR;
/* A preference record with its chosen (rejected false) or rejected completion as the
 * response: a string prompt is templated as completion data, a message prompt as a chat
 * ending with the completion as the assistant's reply. */
int template_apply_pref(struct templated *out, const struct record *r, bool rejected,
			const struct template_spec *t, const char *file, struct diag *d) FT_WUR;
void templated_free(struct templated *t);

/* The segments concatenated (for tests and docs); flags ignored, EOS shown as eos_text. */
char *templated_text(const struct templated *t, size_t first, size_t count, const char *eos_text);

#endif
