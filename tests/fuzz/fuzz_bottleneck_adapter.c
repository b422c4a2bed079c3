/* libFuzzer harness: an AdapterHub bottleneck adapter directory (bottleneck_read). The
 * input is adapter_config.json, a NUL byte, then adapter.safetensors; both are written to
 * a scratch directory and read back. */
#include <stdint.h>

#include "backends/native/peft/bottleneck.h"
#include "tests/fuzz/fuzz_adapter_dir.h"
#include "common/banned.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *dir = fuzz_adapter_dir("/tmp/ftlab-fuzz-bn-XXXXXX", "adapter_config.json",
					   "adapter.safetensors", data, size);
	if (!dir)
		return 0;
	struct bn_adapter *a = NULL;
	struct diag d;
	diag_init(&d);
	if (bottleneck_read(&a, dir, &d) == 0)
		bottleneck_free(a);
	return 0;
}
