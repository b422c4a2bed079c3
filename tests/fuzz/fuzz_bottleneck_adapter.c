/* libFuzzer harness: an AdapterHub bottleneck adapter directory (bottleneck_read). The
 * input is adapter_config.json, a NUL byte, then adapter.safetensors; both are written to
 * a scratch directory and read back. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/native/peft/bottleneck.h"
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
		char tmpl[] = "/tmp/ftlab-fuzz-bn-XXXXXX";
		if (!mkdtemp(tmpl))
			return 0;
		g_dir = ft_strdup(tmpl);
		if (!g_dir)
			return 0;
	}
	const uint8_t *nul = memchr(data, 0, size);
	size_t cl = nul ? (size_t)(nul - data) : size;
	size_t off = nul ? cl + 1 : size;
	if (put("adapter_config.json", data, cl) ||
	    put("adapter.safetensors", data + off, size - off))
		return 0;
	struct bn_adapter *a = NULL;
	struct diag d;
	diag_init(&d);
	if (bottleneck_read(&a, g_dir, &d) == 0)
		bottleneck_free(a);
	return 0;
}
