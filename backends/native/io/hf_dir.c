/* hf_dir: Hugging Face model directories (config.json, safetensors, tokenizer files). */
#include "backends/native/io/io_internal.h"

int hf_dir_load(struct model_file *m, const char *dir, struct diag *d)
{
	(void)m;
	return diag_set(d, FT_EUNSUPP, dir, 0, 0, "Hugging Face directories: not available yet");
}
