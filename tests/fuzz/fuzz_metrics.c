/* libFuzzer harness for the text metrics: arbitrary bytes (any UTF-8 validity) split at
 * the first NUL into prediction and reference, scored with every metric; values must be
 * finite and in range. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "scoring/metrics.h"
#include "common/banned.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size + 2);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	buf[size] = 0;
	buf[size + 1] = 0;
	const char *pred = buf, *ref = buf + strlen(buf) + 1;
	if (ref > buf + size)
		ref = buf + size + 1;
	for (int k = 0; k < METRIC_N_KINDS; k++) {
		double v;
		if (metric_sentence(&v, (enum metric_kind)k, pred, ref) != 0)
			continue;
		double hi = (k == METRIC_BLEU || k == METRIC_CHRF) ? 100.0 + 1e-9 : 1.0 + 1e-12;
		if (!isfinite(v) || v < 0 || v > hi)
			abort();
	}
	free(metric_tokenize_13a(pred));
	free(metric_rouge_tokens(pred));
	free(metric_squad_normalize(pred));
	free(buf);
	return 0;
}
