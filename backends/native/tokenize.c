/* tokenize: the engine's side of `ftlab tokenize`: loads only the tokenizer (GGUF
 * metadata or tokenizer.json) and prints the ids and pieces of texts, or of each example
 * of a data file templated and tokenized as training does with its loss mask, or writes
 * the tokenizer as Hugging Face files. */
#include "backends/native/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/native/data/prepare.h"
#include "backends/native/io/model_file.h"
#include "backends/native/tok/tokenizer.h"
#include "common/util.h"
#include "common/banned.h"

/* A piece as a JSON string body or as terminal text: control bytes escaped, the rest as
 * stored (UTF-8 passes through). */
static void put_escaped(FILE *f, const char *s, size_t n, bool json)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\n')
			fputs("\\n", f);
		else if (c == '\t')
			fputs("\\t", f);
		else if (c == '\r')
			fputs("\\r", f);
		else if (c == '\\')
			fputs("\\\\", f);
		else if (json && c == '"')
			fputs("\\\"", f);
		else if (c < 0x20 || c == 0x7f)
			fprintf(f, json ? "\\u%04x" : "\\x%02x", c);
		else
			fputc(c, f);
	}
}

static void put_piece(FILE *f, const struct tokenizer *t, int32_t id, bool json)
{
	size_t n;
	const char *s = tokenizer_token_text(t, id, &n);
	put_escaped(f, s ? s : "", s ? n : 0, json);
}

/* One token per line: position, id, loss mark (when loss is given) and piece. */
static void print_tokens(const struct tokenizer *t, const int32_t *ids, const uint8_t *loss,
			 size_t n, size_t n_prompt)
{
	for (size_t i = 0; i < n; i++) {
		if (loss && i == n_prompt && n_prompt < n)
			printf("  ---- generation prompt ends here ----\n");
		printf("%6zu %8d  %s  ", i, ids[i], loss ? (loss[i] ? "loss" : "    ") : "");
		put_piece(stdout, t, ids[i], false);
		fputc('\n', stdout);
	}
}

static void json_ids(const struct tokenizer *t, const int32_t *ids, size_t n)
{
	printf("\"ids\": [");
	for (size_t i = 0; i < n; i++)
		printf("%s%d", i ? ", " : "", ids[i]);
	printf("], \"pieces\": [");
	for (size_t i = 0; i < n; i++) {
		printf("%s\"", i ? ", " : "");
		put_piece(stdout, t, ids[i], true);
		printf("\"");
	}
	printf("]");
}

static int tokenize_texts(const struct tokenizer *t, const struct engine_tokenize_opts *o,
			  const char *const *texts, size_t n_texts, struct diag *d)
{
	int flags = (o->special ? TOK_PARSE_SPECIAL : 0) | (o->no_bos ? 0 : TOK_ADD_SPECIAL);
	if (o->json)
		printf("[");
	for (size_t k = 0; k < n_texts; k++) {
		int32_t *ids;
		size_t n;
		int rc = tokenizer_encode_ex(t, texts[k], strlen(texts[k]), flags, &ids, &n, d);
		if (rc) {
			if (o->json)
				printf("]\n");
			return rc;
		}
		if (o->json) {
			printf("%s{\"text\": \"", k ? ", " : "");
			put_escaped(stdout, texts[k], strlen(texts[k]), true);
			printf("\", ");
			json_ids(t, ids, n);
			printf("}");
		} else {
			if (n_texts > 1)
				printf("%stext %zu:\n", k ? "\n" : "", k + 1);
			printf("%zu token%s\n", n, n == 1 ? "" : "s");
			print_tokens(t, ids, NULL, n, 0);
		}
		free(ids);
	}
	if (o->json)
		printf("]\n");
	return 0;
}

static int tokenize_data(const struct tokenizer *t, const struct engine_tokenize_opts *o, struct diag *d)
{
	int f = o->format ? data_format_from_name(o->format) : DATA_CHAT;
	if (f < 0) {
		diag_set(d, FT_EINVAL, NULL, 0, 0, "unknown data format '%s'", o->format);
		diag_hint(d, "formats: text, completion, instruction, chat");
		return FT_EINVAL;
	}
	struct config_data cd;
	data_config_one_file(&cd, o->data, (enum data_format)f, o->template_name, o->system,
			     (int)o->max_length, o->limit);
	cd.train_on_inputs = o->train_on_inputs;
	if (!o->format) {
		/* the format from the first example's keys, as ftlab eval does */
		char *buf = NULL;
		size_t len = 0;
		int rc = file_read_all(&buf, &len, o->data, DATA_FILE_MAX, d);
		if (rc)
			return rc;
		char *nl = strchr(buf, '\n');
		if (nl)
			*nl = 0;
		cd.format = strstr(buf, "\"messages\"") ? DATA_CHAT
			    : strstr(buf, "\"instruction\"") ? DATA_INSTRUCTION
			    : strstr(buf, "\"prompt\"") ? DATA_COMPLETION : DATA_TEXT;
		bool known = strstr(buf, "\"messages\"") || strstr(buf, "\"instruction\"") ||
			     strstr(buf, "\"prompt\"") || strstr(buf, "\"text\"");
		free(buf);
		if (!known) {
			diag_set(d, FT_EINVAL, o->data, 1, 0,
				 "cannot tell the data format from the first line (no messages, instruction, prompt or text key)");
			diag_hint(d, "pass --format text|completion|instruction|chat");
			return FT_EINVAL;
		}
	}
	struct data_prepared prep;
	int rc = data_prepare(&prep, &cd, 0, t, d);
	if (rc)
		return rc;
	const struct tok_set *s = prep.test;
	if (o->json) {
		printf("{\"data\": \"");
		put_escaped(stdout, o->data, strlen(o->data), true);
		printf("\", \"format\": \"%s\", \"template\": \"%s\", \"examples\": [",
		       data_format_name(cd.format), template_kind_name(prep.tmpl.kind));
	} else {
		printf("%s: %zu example%s, format %s, template %s%s\n", o->data, s->n,
		       s->n == 1 ? "" : "s", data_format_name(cd.format),
		       template_kind_name(prep.tmpl.kind),
		       o->train_on_inputs ? ", loss on every token (train_on_inputs)" : "");
	}
	for (size_t i = 0; i < s->n; i++) {
		const struct tok_example *e = &s->ex[i];
		size_t n_loss = 0;
		for (size_t k = 0; k < e->n; k++)
			n_loss += e->loss[k];
		size_t line = prep.splits.test ? prep.splits.test->recs[e->record].line : 0;
		if (o->json) {
			printf("%s{\"line\": %zu, ", i ? ", " : "", line);
			json_ids(t, e->ids, e->n);
			printf(", \"loss\": [");
			for (size_t k = 0; k < e->n; k++)
				printf("%s%d", k ? ", " : "", e->loss[k]);
			printf("], \"n_prompt\": %zu, \"truncated\": %s}", e->n_prompt,
			       e->truncated ? "true" : "false");
			continue;
		}
		printf("\nexample %zu (line %zu): %zu tokens, %zu with loss%s\n", i + 1, line, e->n,
		       n_loss, e->truncated ? ", truncated" : "");
		print_tokens(t, e->ids, e->loss, e->n, e->n_prompt);
	}
	if (o->json)
		printf("]}\n");
	char *warn = data_prepared_warnings(&prep);
	if (warn && *warn)
		fprintf(stderr, "ftlab: warning: %s", warn);
	free(warn);
	data_prepared_free(&prep);
	return 0;
}

int engine_tokenize(const struct engine_tokenize_opts *o, struct diag *d)
{
	struct model_file *mf = NULL;
	struct tokenizer *tok = NULL;
	int rc = model_file_load_tokenizer(&mf, o->model_path, d);
	if (!rc)
		rc = tokenizer_from_model_file(&tok, mf, d);
	if (!rc && o->write_hf) {
		if ((rc = tokenizer_write_hf(o->write_hf, tok, 0, d)) == 0)
			printf("%s\n", o->write_hf);
	} else if (!rc) {
		rc = o->data ? tokenize_data(tok, o, d) : tokenize_texts(tok, o, o->texts, o->n_texts, d);
	}
	tokenizer_free(tok);
	model_file_free(mf);
	return rc;
}
