/* libFuzzer harness: arbitrary bytes as a safetensors image and as a config.json text. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backends/native/io/io_internal.h"
#include "common/util.h"
#include "common/banned.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct model_file *m = calloc(1, sizeof *m);
	if (!m)
		return 0;
	struct diag d;
	diag_init(&d);
	(void)safetensors_load_buffer(m, data, size, "fuzz.safetensors", &d);
	model_file_free(m);
	struct model_hparams hp;
	diag_init(&d);
	(void)hf_config_parse(&hp, (const char *)data, size, "config.json", &d);
	return 0;
}
