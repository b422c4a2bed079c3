/* identity: a run's identity hash = sha256 over the config's canonical JSON plus the
 * content sha256 of the model (every file of a Hugging Face directory) and of each data
 * file. The run id is its first 12 hex digits. Content hashes are cached per process
 * (one hash per path); the cache is thread-safe. */
#ifndef FTLAB_IDENTITY_H
#define FTLAB_IDENTITY_H

#include "common/diag.h"
#include "schema/config.h"

/* out_hex: 64 hex digits and a NUL. Errors: FT_EINVAL/FT_EIO naming the unreadable file. */
int run_identity(char out_hex[65], const struct config *cfg, struct diag *d) FT_WUR;
/* The first 12 hex digits. */
void run_id_from_identity(char out[13], const char *identity_hex);
/* Content hash of a file, or of a directory (sorted relative names and file hashes),
 * cached by path. */
int content_hash(char out_hex[65], const char *path, struct diag *d) FT_WUR;

#endif
