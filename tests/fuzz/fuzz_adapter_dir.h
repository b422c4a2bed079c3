/* fuzz_adapter_dir: what the adapter-directory harnesses share. One scratch directory per
 * process; an input is a config file's bytes, a NUL byte, then a safetensors file's bytes,
 * written under the two names the reader looks for. */
#ifndef FTLAB_FUZZ_ADAPTER_DIR_H
#define FTLAB_FUZZ_ADAPTER_DIR_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"

static inline int fuzz_put(const char *dir, const char *name, const uint8_t *p, size_t n)
{
	char *path = path_join(dir, name);
	FILE *f = path ? fopen(path, "wb") : NULL;
	int ok = f && fwrite(p, 1, n, f) == n;
	if (f)
		fclose(f);
	free(path);
	return ok ? 0 : -1;
}

/* Writes data (config NUL tensors) as dir/config_name and dir/tensors_name, dir made once
 * from tmpl (a mkdtemp template); the directory, or NULL when it cannot be written. */
static inline const char *fuzz_adapter_dir(const char *tmpl, const char *config_name,
					   const char *tensors_name, const uint8_t *data, size_t size)
{
	static char *dir;
	if (!dir) {
		char t[64];
		snprintf(t, sizeof t, "%s", tmpl);
		if (!mkdtemp(t) || !(dir = ft_strdup(t)))
			return NULL;
	}
	const uint8_t *nul = memchr(data, 0, size);
	size_t cl = nul ? (size_t)(nul - data) : size;
	size_t off = nul ? cl + 1 : size;
	if (fuzz_put(dir, config_name, data, cl) ||
	    fuzz_put(dir, tensors_name, data + off, size - off))
		return NULL;
	return dir;
}

#endif
