/* libFuzzer harness: a PEFT adapter directory (LoRA, DoRA, IA3, prefix tuning). The input
 * is adapter_config.json, a NUL byte, then adapter_model.safetensors; both are written to a
 * scratch directory and read back in both RoPE row orders. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/native/peft/adapter.h"
#include "common/util.h"
#include "common/banned.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *g_dir;

static int put(const char *name, const uint8_t *p, size_t n)
{
	char *path = path_join(g_dir, name);
	FILE *f = path ? fopen(path, "wb") : NULL;
	int ok = f && fwrite(p, 1, n, f) == n;
	if (f)
		fclose(f);
	free(path);
	return ok ? 0 : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!g_dir) {
		char tmpl[] = "/tmp/ftlab-fuzz-peft-XXXXXX";
		if (!mkdtemp(tmpl))
			return 0;
		g_dir = ft_strdup(tmpl);
		if (!g_dir)
			return 0;
	}
	const uint8_t *nul = memchr(data, 0, size);
	size_t cl = nul ? (size_t)(nul - data) : size;
	size_t off = nul ? cl + 1 : size;
	if (put("adapter_config.json", data, cl) || put("adapter_model.safetensors", data + off,
							 size - off))
		return 0;
	for (int il = 0; il < 2; il++) {
		struct lora_adapter *a = NULL;
		struct diag d;
		diag_init(&d);
		if (adapter_read_peft(&a, g_dir, il == 1, 4, 2, 4, &d) == 0)
			adapter_free(a);
	}
	return 0;
}
