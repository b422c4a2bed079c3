/* st_write: safetensors writer and the durable temp-file-then-rename helper that the
 * GGUF writer and checkpoints share. The header is built with jansson so names are
 * escaped correctly, and padded with spaces to a multiple of 8 bytes. */
#include "backends/native/peft/st_write.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"
#include "common/banned.h"

struct durable_file {
	char *path, *tmp;
	FILE *fp;
};

int fsync_dir(const char *dir, struct diag *d)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY);
	if (fd < 0)
		return diag_set(d, FT_EIO, dir, 0, 0, "cannot open directory: %s", strerror(errno));
	int rc = fsync(fd);
	close(fd);
	if (rc != 0 && errno != EINVAL)
		return diag_set(d, FT_EIO, dir, 0, 0, "fsync failed: %s", strerror(errno));
	return 0;
}

int durable_open(struct durable_file **out, const char *path, struct diag *d)
{
	*out = NULL;
	struct durable_file *f = calloc(1, sizeof(*f));
	size_t n = strlen(path) + 16;
	if (!f || !(f->path = ft_strdup(path)) || !(f->tmp = malloc(n))) {
		if (f) {
			free(f->path);
			free(f);
		}
		return diag_set(d, FT_ENOMEM, path, 0, 0, "out of memory");
	}
	snprintf(f->tmp, n, "%s.tmp-XXXXXX", path);
	int fd = mkstemp(f->tmp);
	if (fd < 0) {
		int rc = diag_set(d, FT_EIO, path, 0, 0, "cannot create file: %s", strerror(errno));
		free(f->tmp);
		free(f->path);
		free(f);
		return rc;
	}
	/* mkstemp creates 0600; artifacts are ordinary files (0644 less the umask). */
	mode_t um = umask(0);
	umask(um);
	if (fchmod(fd, 0644 & ~um) != 0) {
		int rc = diag_set(d, FT_EIO, path, 0, 0, "chmod failed: %s", strerror(errno));
		close(fd);
		unlink(f->tmp);
		free(f->tmp);
		free(f->path);
		free(f);
		return rc;
	}
	f->fp = fdopen(fd, "wb");
	if (!f->fp) {
		close(fd);
		unlink(f->tmp);
		free(f->tmp);
		free(f->path);
		free(f);
		return diag_set(d, FT_EIO, path, 0, 0, "cannot open file: %s", strerror(errno));
	}
	*out = f;
	return 0;
}

FILE *durable_stream(struct durable_file *f)
{
	return f->fp;
}

void durable_abort(struct durable_file *f)
{
	if (!f)
		return;
	if (f->fp)
		fclose(f->fp);
	unlink(f->tmp);
	free(f->tmp);
	free(f->path);
	free(f);
}

int durable_commit(struct durable_file *f, struct diag *d)
{
	int rc = 0;
	if (fflush(f->fp) != 0 || ferror(f->fp) || fsync(fileno(f->fp)) != 0) {
		rc = diag_set(d, FT_EIO, f->path, 0, 0, "write failed: %s", strerror(errno));
		goto done;
	}
	if (fclose(f->fp) != 0) {
		f->fp = NULL;
		rc = diag_set(d, FT_EIO, f->path, 0, 0, "write failed: %s", strerror(errno));
		goto done;
	}
	f->fp = NULL;
	if (rename(f->tmp, f->path) != 0) {
		rc = diag_set(d, FT_EIO, f->path, 0, 0, "cannot rename into place: %s",
			      strerror(errno));
		goto done;
	}
	char *dir = path_dirname(f->path);
	if (!dir) {
		rc = diag_set(d, FT_ENOMEM, f->path, 0, 0, "out of memory");
		goto done_renamed;
	}
	rc = fsync_dir(dir, d);
	free(dir);
done_renamed:
	free(f->tmp);
	free(f->path);
	free(f);
	return rc;
done:
	durable_abort(f);
	return rc;
}

size_t st_dtype_size(const char *dtype)
{
	static const struct {
		const char *name;
		size_t size;
	} tab[] = {{"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4},
		   {"I16", 2}, {"I8", 1},  {"U8", 1},  {"BOOL", 1}, {"U64", 8}, {"U32", 4},
		   {"U16", 2}};
	for (size_t i = 0; i < FT_ARRAY_LEN(tab); i++)
		if (strcmp(tab[i].name, dtype) == 0)
			return tab[i].size;
	return 0;
}

int st_write_file(const char *path, const struct st_tensor *t, size_t n,
		  const char *const *meta, struct diag *d)
{
	int rc = 0;
	struct durable_file *f = NULL;
	char *hdr = NULL;
	json_t *root = json_object();
	json_t *md = json_object();
	if (!root || !md) {
		json_decref(md);
		rc = diag_set(d, FT_ENOMEM, path, 0, 0, "out of memory");
		goto done;
	}
	json_object_set_new(md, "format", json_string("pt"));
	for (size_t i = 0; meta && meta[i] && meta[i + 1]; i += 2)
		json_object_set_new(md, meta[i], json_string(meta[i + 1]));
	json_object_set_new(root, "__metadata__", md);
	size_t off = 0;
	for (size_t i = 0; i < n; i++) {
		size_t es = st_dtype_size(t[i].dtype), numel = 1;
		if (es == 0 || t[i].ndim < 0 || t[i].ndim > 4) {
			rc = diag_set(d, FT_EINVAL, path, 0, 0, "tensor '%s': bad dtype or rank",
				      t[i].name);
			goto done;
		}
		json_t *shape = json_array();
		for (int k = 0; k < t[i].ndim; k++) {
			if (t[i].shape[k] < 0 || !size_mul(numel, (size_t)t[i].shape[k], &numel)) {
				json_decref(shape);
				rc = diag_set(d, FT_EINVAL, path, 0, 0, "tensor '%s': bad shape",
					      t[i].name);
				goto done;
			}
			json_array_append_new(shape, json_integer(t[i].shape[k]));
		}
		size_t bytes;
		if (!size_mul(numel, es, &bytes) || bytes != t[i].nbytes) {
			json_decref(shape);
			rc = diag_set(d, FT_EINVAL, path, 0, 0,
				      "tensor '%s': %zu bytes given, shape needs %zu", t[i].name,
				      t[i].nbytes, bytes);
			goto done;
		}
		json_t *e = json_object();
		json_object_set_new(e, "dtype", json_string(t[i].dtype));
		json_object_set_new(e, "shape", shape);
		json_t *offs = json_array();
		json_array_append_new(offs, json_integer((json_int_t)off));
		json_array_append_new(offs, json_integer((json_int_t)off + (json_int_t)bytes));
		json_object_set_new(e, "data_offsets", offs);
		if (json_object_get(root, t[i].name)) {
			json_decref(e);
			rc = diag_set(d, FT_EINVAL, path, 0, 0, "duplicate tensor '%s'", t[i].name);
			goto done;
		}
		json_object_set_new(root, t[i].name, e);
		off += bytes;
	}
	hdr = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (!hdr) {
		rc = diag_set(d, FT_ENOMEM, path, 0, 0, "out of memory");
		goto done;
	}
	size_t hlen = strlen(hdr), padded = (hlen + 7) & ~(size_t)7;
	rc = durable_open(&f, path, d);
	if (rc || !f) /* !f: durable_open sets f whenever it returns 0 */
		goto done;
	FILE *fp = durable_stream(f);
	unsigned char len8[8];
	for (int k = 0; k < 8; k++)
		len8[k] = (unsigned char)((uint64_t)padded >> (8 * k));
	fwrite(len8, 1, 8, fp);
	fwrite(hdr, 1, hlen, fp);
	for (size_t k = hlen; k < padded; k++)
		fputc(' ', fp);
	for (size_t i = 0; i < n; i++)
		if (t[i].nbytes && fwrite(t[i].data, 1, t[i].nbytes, fp) != t[i].nbytes)
			break;
	rc = durable_commit(f, d);
	f = NULL;
done:
	durable_abort(f);
	free(hdr);
	json_decref(root);
	return rc;
}

int adapter_config_read(json_t **out, const char *path, struct diag *d)
{
	*out = NULL;
	char *text = NULL;
	size_t len;
	int rc = file_read_all(&text, &len, path, 1 << 20, d);
	if (rc)
		return rc;
	json_error_t err;
	json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
	free(text);
	if (!j)
		return diag_set(d, FT_EINVAL, path, err.line > 0 ? err.line : 0,
				err.column > 0 ? err.column : 0, "invalid JSON: %s", err.text);
	if (!json_is_object(j)) {
		json_decref(j);
		return diag_set(d, FT_EINVAL, path, 0, 0, "invalid JSON: not an object");
	}
	*out = j;
	return 0;
}

int st_read_whole(struct st_file *f, const char *path, size_t max_file, uint64_t max_header,
		  struct diag *d)
{
	memset(f, 0, sizeof *f);
	int rc = file_read_all(&f->buf, &f->len, path, max_file, d);
	if (rc)
		return rc;
	uint64_t hl = 0;
	if (f->len >= 8)
		for (int k = 7; k >= 0; k--)
			hl = (hl << 8) | (unsigned char)f->buf[k];
	if (f->len < 8 || hl > max_header || hl > f->len - 8 || hl < 2 || f->buf[8] != '{')
		return diag_set(d, FT_EINVAL, path, 0, 0,
				"not a safetensors file (header length %llu, file %zu bytes)",
				(unsigned long long)hl, f->len);
	json_error_t err;
	f->header = json_loadb(f->buf + 8, (size_t)hl, JSON_REJECT_DUPLICATES, &err);
	if (!f->header || !json_is_object(f->header))
		return diag_set(d, FT_EINVAL, path, 0, 0, "safetensors header: %s",
				f->header ? "not an object" : err.text);
	f->data = (const unsigned char *)f->buf + 8 + hl;
	f->data_len = f->len - 8 - (size_t)hl;
	return 0;
}

void st_file_free(struct st_file *f)
{
	json_decref(f->header);
	free(f->buf);
	memset(f, 0, sizeof *f);
}

static int cmp_range(const void *a, const void *b)
{
	const struct st_range *x = a, *y = b;
	return x->lo < y->lo ? -1 : x->lo > y->lo;
}

int st_ranges_check(struct st_range *r, size_t n, const char *path, struct diag *d)
{
	if (n > 1)
		qsort(r, n, sizeof(*r), cmp_range);
	for (size_t i = 1; i < n; i++)
		if (r[i].lo < r[i - 1].hi)
			return diag_set(d, FT_EINVAL, path, 0, 0, "tensor byte ranges overlap");
	return 0;
}
