/* hash: the one hashing module. FIPS 180-4 SHA-256 (streaming, no allocation), hex
 * encoding, and content hashes of files and directory trees (model and data files, run
 * identity, artifacts, checkpoints). Thread-safe: no shared state. */
#ifndef FTLAB_HASH_H
#define FTLAB_HASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/diag.h"

struct sha256 {
	uint32_t h[8];
	uint64_t total; /* bytes fed so far */
	uint8_t block[64];
	size_t fill;
};

void sha256_init(struct sha256 *s);
void sha256_update(struct sha256 *s, const void *data, size_t n);
void sha256_final(struct sha256 *s, uint8_t out[32]);
/* sha256_final, as 64 lower-case hex digits and a NUL. */
void sha256_final_hex(struct sha256 *s, char hex[65]);
/* Hex digest of a buffer into hex (65 bytes: 64 digits and a NUL). */
void sha256_hex(char hex[65], const void *data, size_t n);
/* Hex digest of a file's bytes; FT_EIO/FT_EINVAL with d set when it cannot be read. */
int sha256_file_hex(char hex[65], const char *path, struct diag *d) FT_WUR;
/* Content hash of a path. A file: sha256 of its bytes. A directory: sha256 over
 * "name\0" + file hash + "\n" for every regular file below it (relative names, sorted,
 * hidden entries skipped, at most 8 levels). *out_bytes (may be NULL) receives the total
 * size. FT_EINVAL/FT_EIO/FT_ENOMEM with d set. */
int hash_path_hex(char hex[65], int64_t *out_bytes, const char *path, struct diag *d) FT_WUR;

/* n bytes as 2n lower-case hex digits and a NUL (out holds 2n + 1 bytes). */
void hex_encode(char *out, const void *bytes, size_t n);
/* 2n hex digits (either case) into n bytes; false on a non-hex digit. */
bool hex_decode(void *out, const char *hex, size_t n);

#endif
