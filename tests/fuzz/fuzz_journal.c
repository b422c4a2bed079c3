/* libFuzzer harness for the run journal reader: arbitrary bytes parsed as a journal tail;
 * every record it accepts must have the fields its kind requires, and the offset it
 * reports must stop at a line end inside the input. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/journal.h"
#include "common/banned.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct journal_batch *b = NULL;
	struct diag d;
	diag_init(&d);
	if (journal_parse(&b, "fuzz", (const char *)data, size, 0, &d) != 0)
		return 0;
	if (b->end_offset < 0 || (size_t)b->end_offset > size ||
	    (b->end_offset > 0 && data[b->end_offset - 1] != '\n'))
		abort();
	for (size_t i = 0; i < b->n; i++) {
		const struct journal_rec *r = &b->recs[i];
		if (!isfinite(r->time))
			abort();
		switch (r->kind) {
		case JREC_METRIC:
			if (!r->split || !r->name)
				abort();
			break;
		case JREC_RESULT:
		case JREC_PREDICTION:
			if (!r->model || !r->split)
				abort();
			break;
		case JREC_EVENT:
			if (!r->level || !r->tag || !r->message)
				abort();
			break;
		case JREC_ARTIFACT:
			if (!r->path || !r->path[0] || !r->sha256 || strlen(r->sha256) != 64 || r->bytes < 0)
				abort();
			break;
		case JREC_END:
			if (!r->status)
				abort();
			break;
		case JREC_START:
		case JREC_PROGRESS:
			break;
		}
	}
	journal_batch_free(b);
	return 0;
}
