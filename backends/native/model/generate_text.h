/* generate_text: text in, text out on top of model_generate_tokens: chat formatting
 * (Gemma's template when the tokenizer has <start_of_turn>, else ChatML when it has
 * <|im_start|>), EOS and the end-of-turn token as stop ids, stop strings (the text is cut
 * before the first one), decode. */
#ifndef FTLAB_GENERATE_TEXT_H
#define FTLAB_GENERATE_TEXT_H

#include <stdbool.h>
#include <stddef.h>

#include "backends/native/model/model.h"
#include "backends/native/tok/tokenizer.h"

struct gen_text_opts {
	struct gen_opts g;          /* eos_id/extra_stop_ids/stop are filled in here */
	const char *const *stop_strings;
	size_t n_stop_strings;
	bool chat;                  /* wrap each prompt as a user turn of the chat template */
	const char *system;         /* chat system message; NULL = the template's default */
};

/* True when the tokenizer knows ChatML (<|im_start|> and <|im_end|>). */
bool gen_has_chatml(const struct tokenizer *tok);
/* The ChatML generation prompt for one user message (caller frees). */
char *gen_chatml_prompt(const struct tokenizer *tok, const char *system, const char *user);

/* Generates for n prompts at once. out_texts[i] (caller frees each and the array) is the
 * decoded continuation without special tokens, cut before the first stop string. */
int model_generate_text(struct model *m, const struct tokenizer *tok,
			const char *const *prompts, size_t n, const struct gen_text_opts *o,
			char ***out_texts, struct diag *d) FT_WUR;

#endif
