/* libFuzzer harness for what ftlab reads from Slurm: squeue's output (the queue parser)
 * and a task's output file (slurmstepd's verdict). Parsed entries must be well formed. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runner/slurm.h"
#include "common/banned.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	struct slurm_task *t = NULL;
	size_t n = 0;
	struct diag d;
	diag_init(&d);
	if (slurm_queue_parse(&t, &n, text, &d) == 0) {
		for (size_t i = 0; i < n; i++)
			if (!t[i].array_job[0] || !t[i].state[0] || t[i].task < -1 ||
			    strchr(t[i].state, '|') || strchr(t[i].node, '\n'))
				abort();
		free(t);
	}
	const char *v = slurm_log_verdict((const char *)data, size, "ftlab-task: attempt ");
	if (v && slurm_state_phase(v, NULL) == SLURM_UNKNOWN && strcmp(v, "REQUEUED") != 0)
		abort();
	free(text);
	return 0;
}
