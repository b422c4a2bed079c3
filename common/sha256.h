/* sha256: FIPS 180-4 SHA-256 for content hashes (model and data files, run identity,
 * artifacts). Streaming interface; no allocation. */
#ifndef FTLAB_SHA256_H
#define FTLAB_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "diag.h"

struct sha256 {
	uint32_t h[8];
	uint64_t total; /* bytes fed so far */
	uint8_t block[64];
	size_t fill;
};

void sha256_init(struct sha256 *s);
void sha256_update(struct sha256 *s, const void *data, size_t n);
void sha256_final(struct sha256 *s, uint8_t out[32]);
/* Hex digest of a buffer into hex (65 bytes: 64 digits and a NUL). */
void sha256_hex(char hex[65], const void *data, size_t n);
/* Hex digest of a file's bytes; FT_EIO/FT_EINVAL with d set when it cannot be read. */
int sha256_file_hex(char hex[65], const char *path, struct diag *d) FT_WUR;

#endif
