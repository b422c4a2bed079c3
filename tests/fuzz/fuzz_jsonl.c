/* libFuzzer harness for the JSONL dataset reader: every format (preference pairs and
 * multiple-choice fields included), both on_bad_example modes, then templating and
 * tokenising with a byte-level tokenizer and batching (pairs as chosen and rejected rows);
 * nothing may crash, leak or read out of bounds, and every error must carry a message. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backends/native/data/dataset.h"
#include "backends/native/data/loader.h"
#include "backends/native/data/template.h"
#include "common/banned.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int byte_encode(void *ud, const char *text, size_t len, bool special, int32_t **out,
		       size_t *n, struct diag *d)
{
	(void)ud;
	(void)special;
	(void)d;
	int32_t *ids = malloc((len + 1) * sizeof *ids);
	if (!ids)
		return FT_ENOMEM;
	for (size_t i = 0; i < len; i++)
		ids[i] = (unsigned char)text[i];
	*out = ids;
	*n = len;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	/* The first byte picks the format, the bad-example mode and the template. */
	enum data_format f = (enum data_format)(data[0] % 4);
	if ((data[0] >> 6) & 1)
		f = DATA_PREFERENCE;
	enum on_bad_example bad = (data[0] >> 2) & 1 ? BAD_EXAMPLE_SKIP : BAD_EXAMPLE_ERROR;
	enum template_kind tk = (enum template_kind)((data[0] >> 3) % 4);
	struct dataset *ds = NULL;
	struct diag d;
	diag_init(&d);
	int rc = dataset_read_buffer(&ds, "fuzz.jsonl", (const char *)data + 1, size - 1, f, NULL, bad, &d);
	if (rc) {
		if (d.text[0] == 0)
			abort();
		return 0;
	}
	struct template_spec ts = {tk, "{system}<{prompt}>{response}!", "sys", NULL};
	struct data_tok tok = {NULL, byte_encode, 3, 1, true, NULL};
	struct tok_set *set = NULL;
	diag_init(&d);
	if (data_tokenize(&set, ds, &ts, &tok, 64, false, &d) == 0) {
		bool pairs = f == DATA_PREFERENCE;
		struct loader_opts o = {2, 32, !pairs && ((data[0] >> 5) & 1), true, false, 1, 0,
					pairs, (data[0] >> 7) & 1};
		struct loader *l = NULL;
		if (loader_create(&l, set, &o, &d) == 0) {
			struct batch b;
			for (int k = 0; k < 3; k++)
				if (loader_next(l, &b) != 0)
					abort();
			loader_free(l);
		}
		tok_set_free(set);
	} else if (d.text[0] == 0) {
		abort();
	}
	dataset_free(ds);
	return 0;
}
