/* safetensors: one .safetensors image -> tensors (as stored) appended to a model_file. Checks the
 * header (length <= 100 MB and inside the file, JSON object, valid UTF-8, no duplicate
 * keys), dtypes (F32, F16, BF16), sizes (end - begin == numel * dtype size) and that the
 * offsets tile the data buffer with no holes or overlaps. Renaming is hf_dir's job. */
#include "backends/native/io/io_internal.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "backends/native/io/dequant.h"
#include "common/util.h"
#include "common/banned.h"

struct st_entry {
	const char *name;
	int dtype; /* 0 F32, 1 F16, 2 BF16 */
	int ndim;
	int64_t shape[4];
	size_t numel, begin, end;
};

static int cmp_begin(const void *a, const void *b)
{
	const struct st_entry *x = a, *y = b;
	if (x->begin != y->begin)
		return x->begin < y->begin ? -1 : 1;
	return x->end < y->end ? -1 : x->end > y->end;
}

static int parse_entry(struct st_entry *e, const char *name, json_t *v, const char *path,
		       struct diag *d)
{
	static const char *const dtypes[] = {"F32", "F16", "BF16"};
	static const size_t dsize[] = {4, 2, 2};
	e->name = name;
	const char *dt = json_string_value(json_object_get(v, "dtype"));
	json_t *shape = json_object_get(v, "shape"), *offs = json_object_get(v, "data_offsets");
	if (!json_is_object(v) || !dt || !json_is_array(shape) || !json_is_array(offs) ||
	    json_array_size(offs) != 2)
		return diag_set(d, FT_EINVAL, path, 0, 0,
				"tensor '%s': needs \"dtype\", \"shape\" and two \"data_offsets\"", name);
	e->dtype = -1;
	for (int i = 0; i < 3; i++)
		if (strcmp(dt, dtypes[i]) == 0)
			e->dtype = i;
	if (e->dtype < 0)
		return diag_set(d, FT_EINVAL, path, 0, 0,
				"tensor '%s': dtype '%s' is not supported (F32, F16, BF16)", name, dt);
	if (json_array_size(shape) > 4)
		return diag_set(d, FT_EINVAL, path, 0, 0, "tensor '%s': %zu dimensions (at most 4)",
				name, json_array_size(shape));
	e->ndim = (int)json_array_size(shape);
	e->numel = 1;
	for (int i = 0; i < e->ndim; i++) {
		json_t *s = json_array_get(shape, (size_t)i);
		if (!json_is_integer(s) || json_integer_value(s) < 0)
			return diag_set(d, FT_EINVAL, path, 0, 0,
					"tensor '%s': shape[%d] is not a non-negative integer", name, i);
		e->shape[i] = json_integer_value(s);
		if (!size_mul(e->numel, (size_t)e->shape[i], &e->numel))
			return diag_set(d, FT_EINVAL, path, 0, 0, "tensor '%s': element count overflows",
					name);
	}
	size_t nbytes;
	if (!size_mul(e->numel, dsize[e->dtype], &nbytes) ||
	    !size_mul(e->numel, sizeof(float), &(size_t){0}))
		return diag_set(d, FT_EINVAL, path, 0, 0, "tensor '%s': byte size overflows", name);
	json_t *b = json_array_get(offs, 0), *en = json_array_get(offs, 1);
	if (!json_is_integer(b) || !json_is_integer(en) || json_integer_value(b) < 0 ||
	    json_integer_value(en) < json_integer_value(b))
		return diag_set(d, FT_EINVAL, path, 0, 0, "tensor '%s': data_offsets are not [begin, end]",
				name);
	e->begin = (size_t)json_integer_value(b);
	e->end = (size_t)json_integer_value(en);
	if (e->end - e->begin != nbytes)
		return diag_set(d, FT_EINVAL, path, 0, 0,
				"tensor '%s': data_offsets span %zu bytes, shape and dtype need %zu",
				name, e->end - e->begin, nbytes);
	return 0;
}

int safetensors_load_buffer(struct model_file *m, const uint8_t *buf, size_t n,
			    const char *path, struct diag *d)
{
	if (n < 8)
		return diag_set(d, FT_EINVAL, path, 0, 0, "truncated safetensors: no header length");
	uint64_t hlen = 0;
	for (int i = 7; i >= 0; i--)
		hlen = (hlen << 8) | buf[i];
	if (hlen > ST_MAX_HEADER)
		return diag_set(d, FT_EINVAL, path, 0, 0,
				"safetensors header length %" PRIu64 " exceeds the limit of %zu bytes",
				hlen, ST_MAX_HEADER);
	if (hlen > n - 8)
		return diag_set(d, FT_EINVAL, path, 0, 0,
				"safetensors header length %" PRIu64 " is beyond the end of the file (%zu bytes)",
				hlen, n);
	if (hlen < 2 || buf[8] != '{')
		return diag_set(d, FT_EINVAL, path, 0, 0, "safetensors header does not start with '{'");
	const uint8_t *data = buf + 8 + hlen;
	size_t data_len = n - 8 - (size_t)hlen;
	json_error_t je;
	json_t *root = json_loadb((const char *)buf + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &je);
	if (!root)
		return diag_set(d, FT_EINVAL, path, 0, 0, "safetensors header: %s (byte %d)", je.text,
				je.position);
	int rc = 0;
	struct st_entry *es = NULL;
	size_t ne = 0;
	if (!json_is_object(root)) {
		rc = diag_set(d, FT_EINVAL, path, 0, 0, "safetensors header is not a JSON object");
		goto done;
	}
	es = calloc(json_object_size(root) + 1, sizeof *es);
	if (!es) {
		rc = diag_set(d, FT_ENOMEM, path, 0, 0, "out of memory");
		goto done;
	}
	const char *key;
	json_t *v;
	json_object_foreach(root, key, v) {
		if (strcmp(key, "__metadata__") == 0) {
			if (!json_is_object(v)) {
				rc = diag_set(d, FT_EINVAL, path, 0, 0, "__metadata__ is not an object");
				goto done;
			}
			continue;
		}
		if ((rc = parse_entry(&es[ne], key, v, path, d)) != 0)
			goto done;
		ne++;
	}
	qsort(es, ne, sizeof *es, cmp_begin);
	size_t at = 0;
	for (size_t i = 0; i < ne; i++) {
		if (es[i].begin != at) {
			rc = diag_set(d, FT_EINVAL, path, 0, 0,
				      es[i].begin > at ? "tensor '%s': hole in the data before offset %zu"
						       : "tensor '%s': data overlaps the previous tensor at offset %zu",
				      es[i].name, es[i].begin);
			goto done;
		}
		at = es[i].end;
	}
	if (at != data_len) {
		rc = diag_set(d, FT_EINVAL, path, 0, 0,
			      "tensor data covers %zu bytes but the file holds %zu after the header", at,
			      data_len);
		goto done;
	}
	struct mf_tensor *grown = realloc(m->tensors, (m->n_tensors + ne + 1) * sizeof *grown);
	if (!grown) {
		rc = diag_set(d, FT_ENOMEM, path, 0, 0, "out of memory");
		goto done;
	}
	m->tensors = grown;
	for (size_t i = 0; i < ne; i++) {
		const struct st_entry *e = &es[i];
		struct mf_tensor *t = &m->tensors[m->n_tensors];
		memset(t, 0, sizeof *t);
		t->name = ft_strdup(e->name);
		static const uint32_t gtype[] = {GGML_F32, GGML_F16, GGML_BF16};
		size_t nbytes = e->end - e->begin;
		t->raw_owned = malloc(nbytes ? nbytes : 1);
		m->n_tensors++;
		if (!t->name || !t->raw_owned) {
			rc = diag_set(d, FT_ENOMEM, path, 0, 0, "out of memory: tensor '%s' needs %zu bytes",
				      e->name, nbytes);
			goto done;
		}
		t->ndim = e->ndim;
		memcpy(t->shape, e->shape, sizeof t->shape);
		t->numel = e->numel;
		static const char *const names[] = {"F32", "F16", "BF16"};
		snprintf(t->src_type, sizeof t->src_type, "%s", names[e->dtype]);
		t->type = gtype[e->dtype];
		memcpy(t->raw_owned, data + e->begin, nbytes);
		t->raw = t->raw_owned;
		t->raw_bytes = nbytes;
	}
done:
	free(es);
	json_decref(root);
	return rc;
}
