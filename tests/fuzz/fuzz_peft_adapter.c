/* libFuzzer harness: a PEFT adapter directory (LoRA, DoRA, IA3, prefix tuning). The input
 * is adapter_config.json, a NUL byte, then adapter_model.safetensors; both are written to a
 * scratch directory and read back in both RoPE row orders. */
#include <stdint.h>

#include "backends/native/peft/adapter.h"
#include "tests/fuzz/fuzz_adapter_dir.h"
#include "common/banned.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *dir = fuzz_adapter_dir("/tmp/ftlab-fuzz-peft-XXXXXX", "adapter_config.json",
					   "adapter_model.safetensors", data, size);
	if (!dir)
		return 0;
	for (int il = 0; il < 2; il++) {
		struct lora_adapter *a = NULL;
		struct diag d;
		diag_init(&d);
		if (adapter_read_peft(&a, dir, il == 1, 4, 2, 4, &d) == 0)
			adapter_free(a);
	}
	return 0;
}
