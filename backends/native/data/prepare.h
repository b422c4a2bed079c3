/* prepare: from a validated config and the model's tokenizer to tokenised splits, the one
 * call the training and evaluation code makes. Resolves the template (auto -> the
 * model's ChatML when its tokenizer has <|im_start|>/<|im_end|>, with the chat template's
 * default system message; Gemma's when it has <start_of_turn>/<end_of_turn>), tokenises
 * every split and keeps the counts for reports. */
#ifndef FTLAB_PREPARE_H
#define FTLAB_PREPARE_H

#include <stdbool.h>
#include <stddef.h>

#include "backends/native/data/dataset.h"
#include "backends/native/data/loader.h"
#include "backends/native/data/template.h"
#include "backends/native/tok/tokenizer.h"
#include "common/diag.h"
#include "schema/config.h"

/* The loader's view of a real tokenizer: segments are encoded without BOS/EOS
 * (data_tokenize_one adds them per example). t is borrowed. */
struct data_tok data_tok_from_tokenizer(const struct tokenizer *t);
/* True when the tokenizer has both <|im_start|> and <|im_end|>. */
bool data_tokenizer_has_chatml(const struct tokenizer *t);
/* The model's own template, what data.template: auto picks: gemma when the tokenizer has
 * <start_of_turn> and <end_of_turn>, chatml when it has <|im_start|> and <|im_end|>,
 * else plain. */
enum template_kind data_tokenizer_template(const struct tokenizer *t);
/* The data config of one file read as the test split (ftlab eval, ftlab tokenize --data):
 * format, template ("auto" when NULL), system prompt, max_length, limit. */
void data_config_one_file(struct config_data *out, const char *path, enum data_format format,
			  const char *tmpl, const char *system, int max_length, int64_t limit);

struct data_prepared {
	struct data_splits splits;
	struct template_spec tmpl;
	char *default_system;     /* owned; tmpl.default_system points here */
	struct tok_set *train, *validation, *test; /* NULL when the split is absent */
	int max_length;           /* min(data.max_length, model.context) (0 = context) */
};

/* Loads, splits, templates and tokenises. Errors carry file:line (data) or the config
 * key (template). Free with data_prepared_free. */
int data_prepare(struct data_prepared *out, const struct config_data *cfg, int context,
		 const struct tokenizer *tok, struct diag *d) FT_WUR;
void data_prepared_free(struct data_prepared *p);
/* Multiple choice on the named splits (splits NULL: every prepared one): each example's
 * own choices, else `labels` (with
 * its response as the answer), tokenised as its generation prompt followed by each
 * choice. As lm-evaluation-harness builds its loglikelihood requests, whitespace that ends
 * the prompt moves to the front of the choice. FT_EINVAL with file:line when an example
 * has no choices, or its response is not one of `labels`. */
int data_prepare_choices(struct data_prepared *p, const struct tokenizer *tok,
			 const char *const *labels, size_t n_labels, const char *const *splits,
			 size_t n_splits, struct diag *d) FT_WUR;
/* The tok_set of "train" | "validation" | "test", or NULL. */
const struct tok_set *data_prepared_split(const struct data_prepared *p, const char *name);
/* Warnings for the run's events: data_splits_warnings plus truncation counts. Caller frees. */
char *data_prepared_warnings(const struct data_prepared *p);

#endif
