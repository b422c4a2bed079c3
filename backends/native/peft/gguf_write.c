/* gguf_write: GGUF v3 writer (see gguf_write.h). Layout: magic, version, tensor count,
 * kv count, kv pairs, tensor infos (name, dims, ne, type, offset), padding to the
 * alignment, then tensor data, each tensor starting at an aligned offset. */
#include "backends/native/peft/gguf_write.h"

#include <stdlib.h>
#include <string.h>

#include "backends/native/io/gguf_format.h"
#include "backends/native/peft/st_write.h"
#include "common/util.h"
#include "common/banned.h"

#define GGUF_ALIGN GGUF_DEFAULT_ALIGNMENT

struct gguf_tensor_out {
	char *name;
	int type, ndim;
	int64_t ne[4];
	const void *data;
	size_t nbytes;
};

struct gguf_out {
	struct strbuf kv;
	uint64_t n_kv;
	struct gguf_tensor_out *t;
	size_t n_t, cap_t;
	bool failed;
};

int gguf_out_create(struct gguf_out **out)
{
	*out = calloc(1, sizeof(**out));
	return *out ? 0 : FT_ENOMEM;
}

void gguf_out_free(struct gguf_out *g)
{
	if (!g)
		return;
	strbuf_free(&g->kv);
	for (size_t i = 0; i < g->n_t; i++)
		free(g->t[i].name);
	free(g->t);
	free(g);
}

static void put(struct gguf_out *g, const void *p, size_t n)
{
	if (strbuf_append(&g->kv, p, n) != 0)
		g->failed = true;
}

static void put_u32(struct gguf_out *g, uint32_t v)
{
	unsigned char b[4];
	for (int k = 0; k < 4; k++)
		b[k] = (unsigned char)(v >> (8 * k));
	put(g, b, 4);
}

static void put_u64(struct gguf_out *g, uint64_t v)
{
	unsigned char b[8];
	for (int k = 0; k < 8; k++)
		b[k] = (unsigned char)(v >> (8 * k));
	put(g, b, 8);
}

static void put_str(struct gguf_out *g, const char *s)
{
	size_t n = strlen(s);
	put_u64(g, n);
	put(g, s, n);
}

static void key(struct gguf_out *g, const char *k, uint32_t type)
{
	put_str(g, k);
	put_u32(g, type);
	g->n_kv++;
}

void gguf_out_u32(struct gguf_out *g, const char *k, uint32_t v)
{
	key(g, k, GV_U32);
	put_u32(g, v);
}

void gguf_out_i32(struct gguf_out *g, const char *k, int32_t v)
{
	key(g, k, GV_I32);
	put_u32(g, (uint32_t)v);
}

void gguf_out_f32(struct gguf_out *g, const char *k, float v)
{
	uint32_t u;
	memcpy(&u, &v, 4);
	key(g, k, GV_F32);
	put_u32(g, u);
}

void gguf_out_bool(struct gguf_out *g, const char *k, bool v)
{
	unsigned char b = v ? 1 : 0;
	key(g, k, GV_BOOL);
	put(g, &b, 1);
}

void gguf_out_str(struct gguf_out *g, const char *k, const char *v)
{
	key(g, k, GV_STRING);
	put_str(g, v);
}

void gguf_out_arr_str(struct gguf_out *g, const char *k, char *const *v, size_t n)
{
	key(g, k, GV_ARRAY);
	put_u32(g, GV_STRING);
	put_u64(g, n);
	for (size_t i = 0; i < n; i++)
		put_str(g, v[i]);
}

void gguf_out_arr_i32(struct gguf_out *g, const char *k, const int32_t *v, size_t n)
{
	key(g, k, GV_ARRAY);
	put_u32(g, GV_I32);
	put_u64(g, n);
	for (size_t i = 0; i < n; i++)
		put_u32(g, (uint32_t)v[i]);
}

void gguf_out_arr_f32(struct gguf_out *g, const char *k, const float *v, size_t n)
{
	key(g, k, GV_ARRAY);
	put_u32(g, GV_F32);
	put_u64(g, n);
	for (size_t i = 0; i < n; i++) {
		uint32_t u;
		memcpy(&u, &v[i], 4);
		put_u32(g, u);
	}
}

void gguf_out_tensor(struct gguf_out *g, const char *name, int type, int ndim,
		     const int64_t *ne, const void *data)
{
	if (g->n_t == g->cap_t) {
		size_t cap = g->cap_t ? 2 * g->cap_t : 64;
		struct gguf_tensor_out *t = realloc(g->t, cap * sizeof(*t));
		if (!t) {
			g->failed = true;
			return;
		}
		g->t = t;
		g->cap_t = cap;
	}
	struct gguf_tensor_out *t = &g->t[g->n_t];
	memset(t, 0, sizeof(*t));
	t->name = ft_strdup(name);
	if (!t->name || ndim < 1 || ndim > 4 || (type != GGML_F32 && type != GGML_F16)) {
		free(t->name);
		g->failed = true;
		return;
	}
	t->type = type;
	t->ndim = ndim;
	size_t numel = 1;
	for (int k = 0; k < ndim; k++) {
		t->ne[k] = ne[k];
		if (ne[k] <= 0 || !size_mul(numel, (size_t)ne[k], &numel))
			g->failed = true;
	}
	t->data = data;
	if (!size_mul(numel, type == GGML_F32 ? 4 : 2, &t->nbytes))
		g->failed = true;
	g->n_t++;
}

int gguf_out_write(struct gguf_out *g, const char *path, struct diag *d)
{
	if (g->failed)
		return diag_set(d, FT_EINVAL, path, 0, 0,
				"cannot build GGUF (out of memory or a bad tensor shape)");
	/* Header and tensor infos into a second buffer, so the data offset is known. */
	struct gguf_out h = {0};
	put(&h, GGUF_MAGIC_BYTES, 4);
	put_u32(&h, GGUF_VERSION_WRITTEN);
	put_u64(&h, g->n_t);
	put_u64(&h, g->n_kv);
	put(&h, g->kv.buf ? g->kv.buf : "", g->kv.len);
	uint64_t off = 0;
	for (size_t i = 0; i < g->n_t; i++) {
		const struct gguf_tensor_out *t = &g->t[i];
		put_str(&h, t->name);
		put_u32(&h, (uint32_t)t->ndim);
		for (int k = 0; k < t->ndim; k++)
			put_u64(&h, (uint64_t)t->ne[k]);
		put_u32(&h, (uint32_t)t->type);
		put_u64(&h, off);
		off += (t->nbytes + GGUF_ALIGN - 1) / GGUF_ALIGN * GGUF_ALIGN;
	}
	static const char zeros[GGUF_ALIGN] = {0};
	size_t pad = (GGUF_ALIGN - h.kv.len % GGUF_ALIGN) % GGUF_ALIGN;
	put(&h, zeros, pad);
	if (h.failed) {
		strbuf_free(&h.kv);
		return diag_set(d, FT_ENOMEM, path, 0, 0, "out of memory");
	}
	struct durable_file *f = NULL;
	int rc = durable_open(&f, path, d);
	if (rc) {
		strbuf_free(&h.kv);
		return rc;
	}
	FILE *fp = durable_stream(f);
	fwrite(h.kv.buf, 1, h.kv.len, fp);
	strbuf_free(&h.kv);
	for (size_t i = 0; i < g->n_t; i++) {
		const struct gguf_tensor_out *t = &g->t[i];
		fwrite(t->data, 1, t->nbytes, fp);
		fwrite(zeros, 1, (GGUF_ALIGN - t->nbytes % GGUF_ALIGN) % GGUF_ALIGN, fp);
	}
	return durable_commit(f, d);
}
