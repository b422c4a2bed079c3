/* libFuzzer harness: arbitrary bytes as tokenizer.json; when it loads, a fixed text and a
 * slice of the input are encoded and decoded. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backends/native/tok/tokenizer.h"
#include "common/banned.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void roundtrip(const struct tokenizer *t, const char *text, size_t len, int flags)
{
	struct diag d;
	diag_init(&d);
	int32_t *ids;
	size_t n;
	if (tokenizer_encode_ex(t, text, len, flags, &ids, &n, &d) != 0)
		return;
	char *back;
	if (tokenizer_decode(t, ids, n, flags == 0, &back, NULL) == 0)
		free(back);
	free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct diag d;
	diag_init(&d);
	struct tokenizer *t;
	if (tokenizer_from_json(&t, (const char *)data, size, NULL, "tokenizer.json", &d) != 0)
		return 0;
	static const char text[] = "<s>Hello  world\t123 ünï 😀 <|endoftext|> ab abc";
	roundtrip(t, text, sizeof text - 1, TOK_PARSE_SPECIAL | TOK_ADD_SPECIAL);
	roundtrip(t, text, sizeof text - 1, 0);
	roundtrip(t, (const char *)data, size < 256 ? size : 256, TOK_PARSE_SPECIAL);
	tokenizer_free(t);
	return 0;
}
