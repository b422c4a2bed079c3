/* libFuzzer harness: arbitrary bytes as a GGUF image, read by the header probe (what
 * `ftlab check` reads) and by the full load; when it loads, its tokenizer is built and
 * used, and the probe must have accepted it too. Must never crash, leak or read out of
 * bounds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backends/native/io/io_internal.h"
#include "backends/native/tok/tokenizer.h"
#include "common/util.h"
#include "common/banned.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct model_file *m = calloc(1, sizeof *m);
	if (!m)
		return 0;
	m->path = ft_strdup("fuzz.gguf");
	struct diag d;
	diag_init(&d);
	struct model_file *p = calloc(1, sizeof *p);
	int probed = p ? gguf_probe_buffer(p, data, size, "fuzz.gguf", &d) : -1;
	model_file_free(p);
	diag_init(&d);
	if (gguf_load_buffer(m, data, size, "fuzz.gguf", &d) == 0) {
		if (probed != 0)
			abort(); /* the probe refused a file the load accepts */
		struct tokenizer *t;
		if (tokenizer_from_model_file(&t, m, &d) == 0) {
			static const char text[] = "<|im_start|>user\nHello 123 wörld 🙂<|im_end|>";
			int32_t *ids;
			size_t n;
			if (tokenizer_encode(t, text, sizeof text - 1, true, &ids, &n, &d) == 0) {
				char *back;
				if (tokenizer_decode(t, ids, n, false, &back, NULL) == 0)
					free(back);
				free(ids);
			}
			tokenizer_free(t);
		}
	}
	model_file_free(m);
	return 0;
}
