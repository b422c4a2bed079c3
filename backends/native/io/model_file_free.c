/* model_file_free: releases everything model_file_load allocated. */
#include "backends/native/io/model_file.h"

#include <stdlib.h>
#include <string.h>
#include "common/banned.h"

static void free_strs(char **v, size_t n)
{
	if (!v)
		return;
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

void model_file_free(struct model_file *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->n_tensors; i++) {
		free(m->tensors[i].name);
		free(m->tensors[i].data);
	}
	free(m->tensors);
	free(m->tok.tokenizer_json);
	free(m->tok.tokenizer_config_json);
	free(m->tok.model);
	free(m->tok.pre);
	free_strs(m->tok.tokens, m->tok.n_tokens);
	free(m->tok.token_type);
	free_strs(m->tok.merges, m->tok.n_merges);
	free(m->tok.chat_template);
	free(m->tok.scores);
	free(m->tok.arch);
	free(m->hf_repo);
	free(m->path);
	free(m);
}

const struct mf_tensor *model_file_tensor(const struct model_file *m, const char *name)
{
	for (size_t i = 0; i < m->n_tensors; i++)
		if (strcmp(m->tensors[i].name, name) == 0)
			return &m->tensors[i];
	return NULL;
}
