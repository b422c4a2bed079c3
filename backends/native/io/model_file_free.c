/* model_file_free: releases everything model_file_load allocated (and the file mapping);
 * model_file_dequantize and the small accessors live here too. */
#include "backends/native/io/model_file.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "backends/native/io/dequant.h"
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
		free(m->tensors[i].raw_owned);
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
	free(m->tok.chat_template_jinja);
	free(m->tok.scores);
	free(m->tok.arch);
	free(m->hf_repo);
	free(m->path);
	if (m->map)
		munmap(m->map, m->map_bytes);
	free(m);
}

const struct mf_tensor *model_file_tensor(const struct model_file *m, const char *name)
{
	for (size_t i = 0; i < m->n_tensors; i++)
		if (strcmp(m->tensors[i].name, name) == 0)
			return &m->tensors[i];
	return NULL;
}

const void *mf_tensor_raw(const struct mf_tensor *t, uint32_t *type)
{
	if (t->raw) {
		*type = t->type;
		return t->raw;
	}
	*type = GGML_F32;
	return t->data;
}

void mf_tensor_release(const struct model_file *m, const struct mf_tensor *t)
{
	if (!m->map || !t->raw)
		return;
	const char *lo = m->map, *hi = lo + m->map_bytes, *r = t->raw;
	if (r < lo || r + t->raw_bytes > hi)
		return;
	uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t a = ((uintptr_t)r + pg - 1) / pg * pg, b = ((uintptr_t)r + t->raw_bytes) / pg * pg;
	if (b > a) /* the whole pages inside the tensor; read-only and never written: no loss */
		madvise((void *)a, b - a, MADV_DONTNEED);
}

int model_file_dequantize(struct model_file *m, struct diag *d)
{
	for (size_t i = 0; i < m->n_tensors; i++) {
		struct mf_tensor *t = &m->tensors[i];
		if (t->data || !t->raw)
			continue;
		t->data = malloc(t->numel ? t->numel * sizeof(float) : 1);
		if (!t->data)
			return diag_set(d, FT_ENOMEM, m->path, 0, 0,
					"out of memory: tensor '%s' needs %zu bytes as fp32", t->name,
					t->numel * sizeof(float));
		dequant_to_f32(t->type, t->raw, t->data, t->numel);
	}
	return 0;
}
