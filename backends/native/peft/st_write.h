/* st_write: a safetensors writer (format: 8-byte little-endian header length, a JSON
 * header naming each tensor's dtype, shape and byte range, then the raw data). Written
 * to a temporary file in the same directory, fsynced and renamed, so a reader never sees
 * a half-written file. The model reader lives in io/; the adapter readers (PEFT and
 * AdapterHub directories) share st_read_whole, adapter_config_read and st_ranges_check
 * below. */
#ifndef FTLAB_PEFT_ST_WRITE_H
#define FTLAB_PEFT_ST_WRITE_H

#include <stddef.h>
#include <stdint.h>

#include "common/diag.h"

struct st_tensor {
	const char *name;
	const char *dtype;   /* "F32", "F16", "BF16", "I64", "U8", ... (bytes given by nbytes) */
	int ndim;            /* 0..4 */
	int64_t shape[4];    /* PyTorch order */
	const void *data;    /* little-endian element bytes, borrowed */
	size_t nbytes;       /* must equal numel * dtype size */
};

/* Writes n tensors in the given order. meta: NULL or a NULL-terminated list of
 * key, value string pairs for "__metadata__" ({"format": "pt"} is always added).
 * FT_EINVAL for a tensor whose byte count does not match its shape, FT_EIO on I/O. */
int st_write_file(const char *path, const struct st_tensor *t, size_t n,
		  const char *const *meta, struct diag *d) FT_WUR;

/* A small safetensors file read whole: its header (a JSON object, jansson's json_t) and the
 * data section after it. */
struct json_t;
struct st_file {
	char *buf;
	size_t len;
	struct json_t *header;
	const unsigned char *data; /* into buf */
	size_t data_len;
};
/* Reads path (at most max_file bytes, a header of at most max_header) into *f; FT_EINVAL
 * naming path for a file that is not safetensors. Free with st_file_free (also on error). */
int st_read_whole(struct st_file *f, const char *path, size_t max_file, uint64_t max_header,
		  struct diag *d) FT_WUR;
void st_file_free(struct st_file *f);

/* An adapter directory's adapter_config.json (at most 1 MiB, duplicate keys refused) parsed
 * into *out, a JSON object the caller frees with json_decref; FT_EINVAL naming path, line
 * and column when it is not JSON or not an object. */
int adapter_config_read(struct json_t **out, const char *path, struct diag *d) FT_WUR;

/* A tensor's byte range [lo, hi) in the data section. */
struct st_range {
	uint64_t lo, hi;
};
/* Sorts the n ranges; FT_EINVAL naming path when two overlap. */
int st_ranges_check(struct st_range *r, size_t n, const char *path, struct diag *d) FT_WUR;

/* Bytes of one element of a safetensors dtype, 0 when unknown. */
size_t st_dtype_size(const char *dtype);

/* Durable file creation shared by the writers: open `path.tmp-XXXXXX` for writing, and
 * finish (fflush, fsync, rename onto path, fsync the directory) or abandon it. */
struct durable_file;
int durable_open(struct durable_file **out, const char *path, struct diag *d) FT_WUR;
FILE *durable_stream(struct durable_file *f);
int durable_commit(struct durable_file *f, struct diag *d) FT_WUR; /* frees f */
void durable_abort(struct durable_file *f);                         /* frees f */
/* fsync a directory (after creating or renaming entries in it). */
int fsync_dir(const char *dir, struct diag *d) FT_WUR;

#endif
