/* tokenizer_json: builds a tokenizer from a Hugging Face tokenizer.json. */
#include "backends/native/tok/tok_internal.h"

int tokenizer_from_json(struct tokenizer **out, const char *json, size_t len,
			const char *config_json, const char *path, struct diag *d)
{
	(void)json, (void)len, (void)config_json;
	*out = NULL;
	return diag_set(d, FT_EUNSUPP, path, 0, 0, "tokenizer.json: not available yet");
}
