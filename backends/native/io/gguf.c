/* gguf: reads GGUF v2/v3 images into a model_file. Every count, length, type, dimension
 * and offset from the file is checked against the bytes that are really there before it
 * is used (docs/engine.md, "Untrusted model files"); tensors keep their blocks (pointers
 * into the image) and get Hugging Face names. Reading the file and hashing it is
 * model_file_load's job. */
#include "backends/native/io/io_internal.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backends/native/io/dequant.h"
#include "backends/native/io/gguf_format.h"
#include "common/util.h"
#include "common/banned.h"

static const char *const vtype_names[GV_COUNT] = {"u8", "i8", "u16", "i16", "u32", "i32",
	"f32", "bool", "string", "array", "u64", "i64", "f64"};
static const size_t vtype_size[GV_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

struct kv {
	char *key;
	uint32_t type;     /* enum gguf_vtype */
	uint32_t arr_type; /* element type when type == GV_ARRAY */
	uint64_t count;    /* array length */
	size_t off;        /* offset of the value (of the first element for arrays) */
};

struct tinfo {
	char *name;
	uint32_t n_dims;
	uint64_t ne[4];
	uint32_t type;
	uint64_t off;
	size_t numel, nbytes;
};

struct rd {
	const uint8_t *p;
	size_t n, off;
	const char *path;
	struct diag *d;
	struct kv *kvs;
	size_t n_kv;
	const struct kv **by_key; /* kvs sorted by key (kv_find's binary search), or NULL */
	struct tinfo *ti;
	size_t n_ti;
};

static int need(struct rd *r, size_t k, const char *what)
{
	if (k > r->n - r->off)
		return diag_set(r->d, FT_EINVAL, r->path, 0, 0,
				"truncated GGUF: %s at offset %zu needs %zu bytes, %zu left", what,
				r->off, k, r->n - r->off);
	return 0;
}

static uint64_t le(const uint8_t *p, int k)
{
	uint64_t v = 0;
	for (int i = k - 1; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static int get_u32(struct rd *r, uint32_t *out, const char *what)
{
	*out = 0;
	int rc = need(r, 4, what);
	if (rc)
		return rc;
	*out = (uint32_t)le(r->p + r->off, 4);
	r->off += 4;
	return 0;
}

static int get_u64(struct rd *r, uint64_t *out, const char *what)
{
	*out = 0;
	int rc = need(r, 8, what);
	if (rc)
		return rc;
	*out = le(r->p + r->off, 8);
	r->off += 8;
	return 0;
}

/* A string: u64 length then bytes. Checks the length against the bytes left; returns a
 * pointer into the image (not NUL-terminated). */
static int get_str(struct rd *r, const uint8_t **out, size_t *out_len, const char *what)
{
	uint64_t len;
	size_t at = r->off;
	*out = NULL;
	*out_len = 0;
	int rc = get_u64(r, &len, what);
	if (rc)
		return rc;
	if (len > r->n - r->off)
		return diag_set(r->d, FT_EINVAL, r->path, 0, 0,
				"%s at offset %zu: string length %" PRIu64
				" exceeds the %zu bytes left in the file", what, at, len,
				r->n - r->off);
	*out = r->p + r->off;
	*out_len = (size_t)len;
	r->off += (size_t)len;
	return 0;
}

static int get_name(struct rd *r, char **out, const char *what)
{
	const uint8_t *s;
	size_t len;
	size_t at = r->off;
	int rc = get_str(r, &s, &len, what);
	if (rc)
		return rc;
	if (len == 0 || len > GGUF_MAX_NAME || memchr(s, 0, len))
		return diag_set(r->d, FT_EINVAL, r->path, 0, 0,
				"%s at offset %zu: empty, longer than %d bytes or containing NUL",
				what, at, GGUF_MAX_NAME);
	*out = ft_strndup((const char *)s, len);
	return *out ? 0 : diag_set(r->d, FT_ENOMEM, r->path, 0, 0, "out of memory");
}

/* Skips one value of type t, checking it lies inside the file. */
static int skip_value(struct rd *r, uint32_t t, const char *key)
{
	if (t == GV_STRING) {
		const uint8_t *s;
		size_t len;
		return get_str(r, &s, &len, key);
	}
	int rc = need(r, vtype_size[t], key);
	if (rc == 0)
		r->off += vtype_size[t];
	return rc;
}

static int read_kv(struct rd *r, struct kv *kv)
{
	int rc = get_name(r, &kv->key, "metadata key");
	if (rc)
		return rc;
	if ((rc = get_u32(r, &kv->type, kv->key)) != 0)
		return rc;
	if (kv->type >= GV_COUNT)
		return diag_set(r->d, FT_EINVAL, r->path, 0, 0,
				"metadata '%s': unknown value type %" PRIu32, kv->key, kv->type);
	if (kv->type != GV_ARRAY) {
		kv->off = r->off;
		return skip_value(r, kv->type, kv->key);
	}
	if ((rc = get_u32(r, &kv->arr_type, kv->key)) != 0 ||
	    (rc = get_u64(r, &kv->count, kv->key)) != 0)
		return rc;
	if (kv->arr_type >= GV_COUNT || kv->arr_type == GV_ARRAY)
		return diag_set(r->d, FT_EINVAL, r->path, 0, 0,
				"metadata '%s': invalid array element type %" PRIu32, kv->key,
				kv->arr_type);
	/* Bound the count by the bytes left before walking it (a string is >= 8 bytes). */
	size_t min_el = kv->arr_type == GV_STRING ? 8 : vtype_size[kv->arr_type];
	if (kv->count > (r->n - r->off) / min_el)
		return diag_set(r->d, FT_EINVAL, r->path, 0, 0,
				"metadata '%s': array count %" PRIu64
				" exceeds the %zu bytes left in the file", kv->key, kv->count,
				r->n - r->off);
	kv->off = r->off;
	if (kv->arr_type != GV_STRING) {
		r->off += (size_t)kv->count * min_el;
		return 0;
	}
	for (uint64_t i = 0; i < kv->count; i++)
		if ((rc = skip_value(r, GV_STRING, kv->key)) != 0)
			return rc;
	return 0;
}

static int cmp_kv_key(const void *a, const void *b)
{
	return strcmp((*(const struct kv *const *)a)->key, (*(const struct kv *const *)b)->key);
}

static int cmp_key_kv(const void *key, const void *e)
{
	return strcmp(key, (*(const struct kv *const *)e)->key);
}

static const struct kv *kv_find(const struct rd *r, const char *key)
{
	if (r->by_key) {
		const struct kv *const *e = bsearch(key, r->by_key, r->n_kv, sizeof *r->by_key,
						    cmp_key_kv);
		return e ? *e : NULL;
	}
	for (size_t i = 0; i < r->n_kv; i++)
		if (strcmp(r->kvs[i].key, key) == 0)
			return &r->kvs[i];
	return NULL;
}

/* Duplicate metadata keys, by sorting (O(n log n): a file may hold hundreds of thousands
 * of keys in a few megabytes). Leaves r->by_key sorted for kv_find. */
static int check_unique_keys(struct rd *r)
{
	r->by_key = malloc((r->n_kv ? r->n_kv : 1) * sizeof *r->by_key);
	if (!r->by_key)
		return diag_set(r->d, FT_ENOMEM, r->path, 0, 0, "out of memory");
	for (size_t i = 0; i < r->n_kv; i++)
		r->by_key[i] = &r->kvs[i];
	qsort(r->by_key, r->n_kv, sizeof *r->by_key, cmp_kv_key);
	for (size_t i = 1; i < r->n_kv; i++)
		if (strcmp(r->by_key[i - 1]->key, r->by_key[i]->key) == 0)
			return diag_set(r->d, FT_EINVAL, r->path, 0, 0, "duplicate metadata key '%s'",
					r->by_key[i]->key);
	return 0;
}

static int cmp_ti_name(const void *a, const void *b)
{
	return strcmp((*(const struct tinfo *const *)a)->name,
		      (*(const struct tinfo *const *)b)->name);
}

/* Duplicate tensor names, by sorting. */
static int check_unique_tensors(struct rd *r)
{
	const struct tinfo **order = malloc((r->n_ti ? r->n_ti : 1) * sizeof *order);
	if (!order)
		return diag_set(r->d, FT_ENOMEM, r->path, 0, 0, "out of memory");
	for (size_t i = 0; i < r->n_ti; i++)
		order[i] = &r->ti[i];
	qsort(order, r->n_ti, sizeof *order, cmp_ti_name);
	int rc = 0;
	for (size_t i = 1; i < r->n_ti && !rc; i++)
		if (strcmp(order[i - 1]->name, order[i]->name) == 0)
			rc = diag_set(r->d, FT_EINVAL, r->path, 0, 0, "duplicate tensor '%s'",
				      order[i]->name);
	free(order);
	return rc;
}

static int type_err(struct rd *r, const struct kv *kv, const char *want)
{
	return diag_set(r->d, FT_EINVAL, r->path, 0, 0, "metadata '%s' has type %s%s, expected %s",
			kv->key, kv->type == GV_ARRAY ? "array of " : "",
			vtype_names[kv->type == GV_ARRAY ? kv->arr_type : kv->type], want);
}

static int64_t int_at(const uint8_t *p, uint32_t t)
{
	switch (t) {
	case GV_U8: return p[0];
	case GV_I8: return (int8_t)p[0];
	case GV_U16: return (uint16_t)le(p, 2);
	case GV_I16: return (int16_t)le(p, 2);
	case GV_U32: return (uint32_t)le(p, 4);
	case GV_I32: return (int32_t)le(p, 4);
	default: return (int64_t)le(p, 8); /* GV_I64, GV_U64 (range-checked by the caller) */
	}
}

static bool is_int_type(uint32_t t)
{
	return t == GV_U8 || t == GV_I8 || t == GV_U16 || t == GV_I16 || t == GV_U32 ||
	       t == GV_I32 || t == GV_U64 || t == GV_I64;
}

/* Integer metadata (any integer type, read as declared). *found false when absent. */
static int meta_int(struct rd *r, const char *key, int64_t lo, int64_t hi, int64_t *out,
		    bool *found)
{
	const struct kv *kv = kv_find(r, key);
	*found = kv != NULL;
	if (!kv)
		return 0;
	if (!is_int_type(kv->type))
		return type_err(r, kv, "an integer");
	if (kv->type == GV_U64 && le(r->p + kv->off, 8) > (uint64_t)INT64_MAX)
		return diag_set(r->d, FT_EINVAL, r->path, 0, 0, "metadata '%s' out of range", key);
	int64_t v = int_at(r->p + kv->off, kv->type);
	if (v < lo || v > hi)
		return diag_set(r->d, FT_EINVAL, r->path, 0, 0,
				"metadata '%s' = %" PRId64 " is outside [%" PRId64 ", %" PRId64 "]",
				key, v, lo, hi);
	*out = v;
	return 0;
}

static int meta_float(struct rd *r, const char *key, double *out, bool *found)
{
	const struct kv *kv = kv_find(r, key);
	*found = kv != NULL;
	if (!kv)
		return 0;
	if (kv->type == GV_F32) {
		uint32_t b = (uint32_t)le(r->p + kv->off, 4);
		float f;
		memcpy(&f, &b, 4);
		*out = f;
	} else if (kv->type == GV_F64) {
		uint64_t b = le(r->p + kv->off, 8);
		memcpy(out, &b, 8);
	} else {
		return type_err(r, kv, "f32 or f64");
	}
	if (!(*out == *out) || *out > 1e30 || *out < -1e30)
		return diag_set(r->d, FT_EINVAL, r->path, 0, 0, "metadata '%s' is not finite", key);
	return 0;
}

static int meta_bool(struct rd *r, const char *key, bool *out, bool *found)
{
	const struct kv *kv = kv_find(r, key);
	*found = kv != NULL;
	if (!kv)
		return 0;
	if (kv->type != GV_BOOL)
		return type_err(r, kv, "bool");
	*out = r->p[kv->off] != 0;
	return 0;
}

/* A string value copied and NUL-terminated; NULL when absent. */
static int meta_str(struct rd *r, const char *key, char **out)
{
	const struct kv *kv = kv_find(r, key);
	*out = NULL;
	if (!kv)
		return 0;
	if (kv->type != GV_STRING)
		return type_err(r, kv, "string");
	size_t len = (size_t)le(r->p + kv->off, 8);
	if (memchr(r->p + kv->off + 8, 0, len))
		return diag_set(r->d, FT_EINVAL, r->path, 0, 0, "metadata '%s' contains NUL", key);
	*out = ft_strndup((const char *)r->p + kv->off + 8, len);
	return *out ? 0 : diag_set(r->d, FT_ENOMEM, r->path, 0, 0, "out of memory");
}

static int meta_str_array(struct rd *r, const char *key, char ***out, size_t *out_n)
{
	const struct kv *kv = kv_find(r, key);
	*out = NULL;
	*out_n = 0;
	if (!kv)
		return 0;
	if (kv->type != GV_ARRAY || kv->arr_type != GV_STRING)
		return type_err(r, kv, "array of string");
	char **v = calloc(kv->count ? (size_t)kv->count : 1, sizeof *v);
	if (!v)
		return diag_set(r->d, FT_ENOMEM, r->path, 0, 0, "out of memory for '%s'", key);
	size_t off = kv->off;
	for (size_t i = 0; i < kv->count; i++) {
		size_t len = (size_t)le(r->p + off, 8);
		if (memchr(r->p + off + 8, 0, len)) {
			*out = v;
			*out_n = i;
			return diag_set(r->d, FT_EINVAL, r->path, 0, 0,
					"metadata '%s'[%zu] contains NUL", key, i);
		}
		v[i] = ft_strndup((const char *)r->p + off + 8, len);
		if (!v[i]) {
			*out = v;
			*out_n = i;
			return diag_set(r->d, FT_ENOMEM, r->path, 0, 0, "out of memory");
		}
		off += 8 + len;
	}
	*out = v;
	*out_n = (size_t)kv->count;
	return 0;
}

/* ---- tensor names: GGUF -> Hugging Face ---------------------------------------------- */

struct name_map {
	const char *gguf, *hf;
};
static const struct name_map llama_top[] = {
	{"token_embd", "model.embed_tokens"}, {"output_norm", "model.norm"}, {"output", "lm_head"}};
static const struct name_map llama_blk[] = {
	{"attn_norm", "input_layernorm"}, {"attn_q", "self_attn.q_proj"},
	{"attn_k", "self_attn.k_proj"}, {"attn_v", "self_attn.v_proj"},
	{"attn_output", "self_attn.o_proj"}, {"ffn_norm", "post_attention_layernorm"},
	{"ffn_gate", "mlp.gate_proj"}, {"ffn_up", "mlp.up_proj"}, {"ffn_down", "mlp.down_proj"}};
static const struct name_map gemma3_blk[] = {
	{"attn_norm", "input_layernorm"}, {"attn_q", "self_attn.q_proj"},
	{"attn_k", "self_attn.k_proj"}, {"attn_v", "self_attn.v_proj"},
	{"attn_q_norm", "self_attn.q_norm"}, {"attn_k_norm", "self_attn.k_norm"},
	{"attn_output", "self_attn.o_proj"}, {"post_attention_norm", "post_attention_layernorm"},
	{"ffn_norm", "pre_feedforward_layernorm"}, {"post_ffw_norm", "post_feedforward_layernorm"},
	{"ffn_gate", "mlp.gate_proj"}, {"ffn_up", "mlp.up_proj"}, {"ffn_down", "mlp.down_proj"}};
static const struct name_map gpt2_top[] = {
	{"token_embd", "transformer.wte"}, {"position_embd", "transformer.wpe"},
	{"output_norm", "transformer.ln_f"}, {"output", "lm_head"}};
static const struct name_map gpt2_blk[] = {
	{"attn_norm", "ln_1"}, {"attn_qkv", "attn.c_attn"}, {"attn_output", "attn.c_proj"},
	{"ffn_norm", "ln_2"}, {"ffn_up", "mlp.c_fc"}, {"ffn_down", "mlp.c_proj"}};

/* The HF name for a GGUF tensor name; unknown names are kept as they are. */
static char *hf_name(const char *g, enum model_arch arch)
{
	const struct name_map *top = arch == ARCH_GPT2 ? gpt2_top : llama_top;
	size_t n_top = arch == ARCH_GPT2 ? FT_ARRAY_LEN(gpt2_top) : FT_ARRAY_LEN(llama_top);
	const struct name_map *blk = arch == ARCH_GPT2 ? gpt2_blk
				     : arch == ARCH_GEMMA3 ? gemma3_blk : llama_blk;
	size_t n_blk = arch == ARCH_GPT2 ? FT_ARRAY_LEN(gpt2_blk)
		       : arch == ARCH_GEMMA3 ? FT_ARRAY_LEN(gemma3_blk) : FT_ARRAY_LEN(llama_blk);
	const char *dot = strrchr(g, '.');
	const char *suffix = dot ? dot : "";
	size_t stem_len = dot ? (size_t)(dot - g) : strlen(g);
	char buf[GGUF_MAX_NAME + 128];
	for (size_t i = 0; i < n_top; i++)
		if (strlen(top[i].gguf) == stem_len && memcmp(g, top[i].gguf, stem_len) == 0) {
			snprintf(buf, sizeof buf, "%s%s", top[i].hf, suffix);
			return ft_strdup(buf);
		}
	if (strncmp(g, "blk.", 4) == 0) {
		char *end;
		long layer = strtol(g + 4, &end, 10);
		if (end != g + 4 && *end == '.' && layer >= 0 && layer < 100000) {
			const char *part = end + 1;
			size_t part_len = stem_len - (size_t)(part - g);
			if (part > g + stem_len)
				return ft_strdup(g);
			for (size_t i = 0; i < n_blk; i++)
				if (strlen(blk[i].gguf) == part_len &&
				    memcmp(part, blk[i].gguf, part_len) == 0) {
					snprintf(buf, sizeof buf, "%s.%ld.%s%s",
						 arch == ARCH_GPT2 ? "transformer.h" : "model.layers",
						 layer, blk[i].hf, suffix);
					return ft_strdup(buf);
				}
		}
	}
	return ft_strdup(g);
}

/* ---- the file ------------------------------------------------------------------------ */

static int read_tensor_info(struct rd *r, struct tinfo *t, size_t idx)
{
	(void)idx;
	int rc = get_name(r, &t->name, "tensor name");
	if (rc)
		return rc;
	if ((rc = get_u32(r, &t->n_dims, t->name)) != 0)
		return rc;
	if (t->n_dims == 0 || t->n_dims > 4)
		return diag_set(r->d, FT_EINVAL, r->path, 0, 0,
				"tensor '%s': %" PRIu32 " dimensions (1 to 4 allowed)", t->name,
				t->n_dims);
	size_t numel = 1;
	for (uint32_t j = 0; j < t->n_dims; j++) {
		if ((rc = get_u64(r, &t->ne[j], t->name)) != 0)
			return rc;
		if (t->ne[j] == 0 || t->ne[j] > (uint64_t)INT64_MAX)
			return diag_set(r->d, FT_EINVAL, r->path, 0, 0,
					"tensor '%s': dimension %" PRIu32 " is %" PRIu64, t->name, j,
					t->ne[j]);
		if (!size_mul(numel, (size_t)t->ne[j], &numel))
			return diag_set(r->d, FT_EINVAL, r->path, 0, 0,
					"tensor '%s': element count overflows", t->name);
	}
	if ((rc = get_u32(r, &t->type, t->name)) != 0 || (rc = get_u64(r, &t->off, t->name)) != 0)
		return rc;
	const struct ggml_type_desc *td = ggml_type_find(t->type);
	if (!td)
		return diag_set(r->d, FT_EINVAL, r->path, 0, 0,
				"tensor '%s': unsupported type %" PRIu32 " (%s)", t->name, t->type,
				ggml_type_name(t->type));
	if (t->ne[0] % td->block_elems != 0)
		return diag_set(r->d, FT_EINVAL, r->path, 0, 0,
				"tensor '%s': row length %" PRIu64
				" is not a multiple of the %s block size %zu", t->name, t->ne[0],
				td->name, td->block_elems);
	t->numel = numel;
	if (!size_mul(numel / td->block_elems, td->block_bytes, &t->nbytes) ||
	    !size_mul(numel, sizeof(float), &(size_t){0}))
		return diag_set(r->d, FT_EINVAL, r->path, 0, 0, "tensor '%s': byte size overflows",
				t->name);
	return 0;
}

static int cmp_off(const void *a, const void *b)
{
	const struct tinfo *x = *(const struct tinfo *const *)a, *y = *(const struct tinfo *const *)b;
	return x->off < y->off ? -1 : x->off > y->off;
}

/* Data inside the file, aligned, no two tensors overlapping. */
static int check_layout(struct rd *r, size_t data_start, size_t align)
{
	size_t avail = r->n - data_start;
	const struct tinfo **order = malloc((r->n_ti ? r->n_ti : 1) * sizeof(const struct tinfo *));
	if (!order)
		return diag_set(r->d, FT_ENOMEM, r->path, 0, 0, "out of memory");
	int rc = 0;
	for (size_t i = 0; i < r->n_ti; i++) {
		const struct tinfo *t = &r->ti[i];
		order[i] = t;
		if (t->off % align != 0) {
			rc = diag_set(r->d, FT_EINVAL, r->path, 0, 0,
				      "tensor '%s': data offset %" PRIu64 " is not aligned to %zu",
				      t->name, t->off, align);
			goto done;
		}
		if (t->off > avail || t->nbytes > avail - t->off) {
			rc = diag_set(r->d, FT_EINVAL, r->path, 0, 0,
				      "tensor '%s': data [%" PRIu64 ", +%zu) lies outside the %zu data bytes of the file",
				      t->name, t->off, t->nbytes, avail);
			goto done;
		}
	}
	qsort(order, r->n_ti, sizeof(const struct tinfo *), cmp_off);
	for (size_t i = 1; i < r->n_ti; i++)
		if (order[i - 1]->off + order[i - 1]->nbytes > order[i]->off) {
			rc = diag_set(r->d, FT_EINVAL, r->path, 0, 0,
				      "tensors '%s' and '%s' overlap", order[i - 1]->name,
				      order[i]->name);
			goto done;
		}
done:
	free(order);
	return rc;
}

/* Gemma 3's keys beyond llama's (as llama.cpp reads them): the sliding window, the layer
 * pattern (an integer period or one flag per layer; llama.cpp's default period is 6), the
 * local layers' RoPE base (default 10000), and the softcapping keys, which are refused. */
static int read_gemma3(struct rd *r, struct model_hparams *hp, const char *arch)
{
	char key[160];
	int64_t v = 0;
	double f = 0;
	bool found;
	int rc;
	snprintf(key, sizeof key, "%s.attention.value_length", arch);
	if ((rc = meta_int(r, key, 1, 1 << 24, &v, &found)) != 0)
		return rc;
	if (found && v != hp->head_dim)
		return diag_set(r->d, FT_EUNSUPP, r->path, 0, 0,
				"metadata '%s' = %" PRId64 " differs from the key length %d "
				"(not supported)", key, v, hp->head_dim);
	snprintf(key, sizeof key, "%s.rope.dimension_count", arch);
	if ((rc = meta_int(r, key, 1, 1 << 24, &v, &found)) != 0)
		return rc;
	if (found && v != hp->head_dim)
		return diag_set(r->d, FT_EUNSUPP, r->path, 0, 0,
				"metadata '%s' = %" PRId64 ": RoPE on part of a head of %d is not "
				"supported", key, v, hp->head_dim);
	static const char *const caps[] = {"final_logit_softcapping", "attn_logit_softcapping"};
	for (size_t i = 0; i < FT_ARRAY_LEN(caps); i++) {
		snprintf(key, sizeof key, "%s.%s", arch, caps[i]);
		if ((rc = meta_float(r, key, &f, &found)) != 0)
			return rc;
		if (found && f != 0.0)
			return diag_set(r->d, FT_EUNSUPP, r->path, 0, 0,
					"metadata '%s' = %g: logit softcapping is not supported", key,
					f);
	}
	snprintf(key, sizeof key, "%s.attention.sliding_window", arch);
	if ((rc = meta_int(r, key, 0, 1 << 24, &v, &found)) != 0)
		return rc;
	hp->sliding_window = found ? (int)v : 0;
	hp->swa_pattern = 6;
	snprintf(key, sizeof key, "%s.attention.sliding_window_pattern", arch);
	const struct kv *kv = kv_find(r, key);
	if (kv && kv->type == GV_ARRAY) {
		if (kv->arr_type != GV_BOOL)
			return type_err(r, kv, "an integer or an array of bool");
		if (kv->count != (uint64_t)hp->n_layer)
			return diag_set(r->d, FT_EINVAL, r->path, 0, 0,
					"metadata '%s' has %" PRIu64 " entries for %d layers", key,
					kv->count, hp->n_layer);
		bool *local = malloc((size_t)hp->n_layer * sizeof *local);
		if (!local)
			return diag_set(r->d, FT_ENOMEM, r->path, 0, 0, "out of memory");
		for (int l = 0; l < hp->n_layer; l++)
			local[l] = r->p[kv->off + (size_t)l] != 0;
		int p = swa_pattern_of(local, hp->n_layer);
		free(local);
		if (p == -1)
			return diag_set(r->d, FT_EUNSUPP, r->path, 0, 0,
					"metadata '%s': sliding-window layers that do not repeat with "
					"a period are not supported", key);
		if (p == -2)
			hp->sliding_window = 0;
		hp->swa_pattern = p < 0 ? 0 : p;
	} else if (kv) {
		if ((rc = meta_int(r, key, 0, 1 << 24, &v, &found)) != 0)
			return rc;
		hp->swa_pattern = (int)v;
		if (v == 1) /* llama.cpp: no layer is local */
			hp->sliding_window = 0;
	}
	snprintf(key, sizeof key, "%s.rope.freq_base_swa", arch);
	if ((rc = meta_float(r, key, &f, &found)) != 0)
		return rc;
	hp->rope_theta_local = found ? (float)f : 10000.0f;
	/* llama.cpp's query scale: 1/sqrt(key length), except for the 62-layer 27B model
	 * (query_pre_attn_scalar = hidden / heads) */
	hp->attn_scale = hp->n_layer == 62 ? 1.0f / sqrtf((float)hp->n_embd / (float)hp->n_head)
					   : 1.0f / sqrtf((float)hp->head_dim);
	return 0;
}

static int read_hparams(struct rd *r, struct model_file *m, const char *arch_name)
{
	struct model_hparams *hp = &m->hp;
	char key[160];
	int64_t v = 0;
	double f = 0;
	bool found;
	int rc;
	bool is_gpt2 = strcmp(arch_name, "gpt2") == 0;
	bool is_qwen2 = strcmp(arch_name, "qwen2") == 0;
	bool is_gemma3 = strcmp(arch_name, "gemma3") == 0;
	if (!is_gpt2 && !is_qwen2 && !is_gemma3 && strcmp(arch_name, "llama") != 0)
		return diag_set(r->d, FT_EUNSUPP, r->path, 0, 0,
				"general.architecture '%s' is not supported (llama, qwen2, gemma3, "
				"gpt2)", arch_name);
	hp->arch = is_gpt2 ? ARCH_GPT2 : is_gemma3 ? ARCH_GEMMA3 : ARCH_LLAMA;
	/* llama.cpp permutes Q/K rows only for llama; qwen2 and gemma3 keep the HF
	 * (rotate-half) order. */
	hp->rope_style = is_gpt2 ? ROPE_NONE : is_qwen2 || is_gemma3 ? ROPE_HALF : ROPE_INTERLEAVED;
	struct {
		const char *suffix;
		int *dst;
		bool required;
	} ints[] = {
		{"block_count", &hp->n_layer, true},
		{"embedding_length", &hp->n_embd, true},
		{"attention.head_count", &hp->n_head, true},
		{"feed_forward_length", &hp->n_ff, true},
		{"context_length", &hp->n_ctx_train, true},
		{"attention.head_count_kv", &hp->n_head_kv, false},
		{"vocab_size", &hp->n_vocab, false},
		{"attention.key_length", &hp->head_dim, false},
		{"rope.scaling.original_context_length", &hp->rope_orig_ctx, false},
	};
	for (size_t i = 0; i < FT_ARRAY_LEN(ints); i++) {
		snprintf(key, sizeof key, "%s.%s", arch_name, ints[i].suffix);
		if ((rc = meta_int(r, key, 1, 1 << 24, &v, &found)) != 0)
			return rc;
		if (!found && ints[i].required)
			return diag_set(r->d, FT_EINVAL, r->path, 0, 0, "metadata '%s' is missing", key);
		if (found)
			*ints[i].dst = (int)v;
	}
	if (!hp->n_head_kv)
		hp->n_head_kv = hp->n_head;
	if (hp->n_embd % hp->n_head != 0 || hp->n_head % hp->n_head_kv != 0)
		return diag_set(r->d, FT_EINVAL, r->path, 0, 0,
				"inconsistent heads: embedding %d, heads %d, kv heads %d", hp->n_embd,
				hp->n_head, hp->n_head_kv);
	if (!hp->head_dim)
		hp->head_dim = hp->n_embd / hp->n_head;
	snprintf(key, sizeof key, "%s.%s", arch_name,
		 is_gpt2 ? "attention.layer_norm_epsilon" : "attention.layer_norm_rms_epsilon");
	if ((rc = meta_float(r, key, &f, &found)) != 0)
		return rc;
	hp->norm_eps = found ? (float)f : is_gemma3 ? 1e-6f : 1e-5f;
	snprintf(key, sizeof key, "%s.rope.freq_base", arch_name);
	if ((rc = meta_float(r, key, &f, &found)) != 0)
		return rc;
	hp->rope_theta = found ? (float)f : is_gemma3 ? 1e6f : 10000.0f;
	if (is_gemma3 && (rc = read_gemma3(r, hp, arch_name)) != 0)
		return rc;
	char *stype = NULL;
	snprintf(key, sizeof key, "%s.rope.scaling.type", arch_name);
	if ((rc = meta_str(r, key, &stype)) != 0)
		return rc;
	hp->rope_scaling = ROPE_SCALING_NONE;
	hp->rope_scaling_factor = 1.0f;
	if (stype && strcmp(stype, "linear") == 0) {
		hp->rope_scaling = ROPE_SCALING_LINEAR;
		snprintf(key, sizeof key, "%s.rope.scaling.factor", arch_name);
		if ((rc = meta_float(r, key, &f, &found)) != 0) {
			free(stype);
			return rc;
		}
		if (found)
			hp->rope_scaling_factor = (float)f;
	} else if (stype && strcmp(stype, "none") != 0) {
		rc = diag_set(r->d, FT_EUNSUPP, r->path, 0, 0, "rope scaling '%s' is not supported",
			      stype);
		free(stype);
		return rc;
	}
	free(stype);
	char *name = NULL;
	if ((rc = meta_str(r, "general.name", &name)) != 0)
		return rc;
	snprintf(hp->name, sizeof hp->name, "%s", name ? name : arch_name);
	free(name);
	return 0;
}

static int read_tokenizer(struct rd *r, struct model_file *m)
{
	struct mf_tokenizer_src *tk = &m->tok;
	int rc;
	int64_t v = 0;
	bool found;
	tk->bos_id = tk->eos_id = tk->pad_id = tk->unk_id = -1;
	if ((rc = meta_str(r, "tokenizer.ggml.model", &tk->model)) != 0 ||
	    (rc = meta_str(r, "tokenizer.ggml.pre", &tk->pre)) != 0 ||
	    (rc = meta_str(r, "tokenizer.chat_template", &tk->chat_template)) != 0 ||
	    (rc = meta_str_array(r, "tokenizer.ggml.tokens", &tk->tokens, &tk->n_tokens)) != 0 ||
	    (rc = meta_str_array(r, "tokenizer.ggml.merges", &tk->merges, &tk->n_merges)) != 0)
		return rc;
	const struct kv *kv = kv_find(r, "tokenizer.ggml.token_type");
	if (kv) {
		if (kv->type != GV_ARRAY || kv->arr_type != GV_I32)
			return type_err(r, kv, "array of i32");
		if (kv->count != tk->n_tokens)
			return diag_set(r->d, FT_EINVAL, r->path, 0, 0,
					"tokenizer.ggml.token_type has %" PRIu64 " entries for %zu tokens",
					kv->count, tk->n_tokens);
		tk->token_type = malloc((tk->n_tokens ? tk->n_tokens : 1) * sizeof(int32_t));
		if (!tk->token_type)
			return diag_set(r->d, FT_ENOMEM, r->path, 0, 0, "out of memory");
		for (size_t i = 0; i < tk->n_tokens; i++)
			tk->token_type[i] = (int32_t)le(r->p + kv->off + 4 * i, 4);
	}
	kv = kv_find(r, "tokenizer.ggml.scores");
	if (kv && (kv->type != GV_ARRAY || kv->arr_type != GV_F32))
		return type_err(r, kv, "array of f32");
	if (kv && kv->count != tk->n_tokens)
		return diag_set(r->d, FT_EINVAL, r->path, 0, 0,
				"tokenizer.ggml.scores has %" PRIu64 " entries for %zu tokens", kv->count,
				tk->n_tokens);
	if (kv) {
		tk->scores = malloc((tk->n_tokens ? tk->n_tokens : 1) * sizeof(float));
		if (!tk->scores)
			return diag_set(r->d, FT_ENOMEM, r->path, 0, 0, "out of memory");
		for (size_t i = 0; i < tk->n_tokens; i++) {
			uint32_t b = (uint32_t)le(r->p + kv->off + 4 * i, 4);
			memcpy(&tk->scores[i], &b, 4);
			if (!(tk->scores[i] == tk->scores[i]) || tk->scores[i] > 1e30f ||
			    tk->scores[i] < -1e30f)
				return diag_set(r->d, FT_EINVAL, r->path, 0, 0,
						"tokenizer.ggml.scores[%zu] is not finite", i);
		}
	}
	struct {
		const char *key;
		int64_t *dst;
	} ids[] = {{"tokenizer.ggml.bos_token_id", &tk->bos_id},
		   {"tokenizer.ggml.eos_token_id", &tk->eos_id},
		   {"tokenizer.ggml.padding_token_id", &tk->pad_id},
		   {"tokenizer.ggml.unknown_token_id", &tk->unk_id}};
	for (size_t i = 0; i < FT_ARRAY_LEN(ids); i++) {
		if ((rc = meta_int(r, ids[i].key, 0, INT32_MAX, &v, &found)) != 0)
			return rc;
		if (found && (size_t)v >= tk->n_tokens)
			return diag_set(r->d, FT_EINVAL, r->path, 0, 0,
					"metadata '%s' = %" PRId64 " is not a token id (%zu tokens)",
					ids[i].key, v, tk->n_tokens);
		if (found)
			*ids[i].dst = v;
	}
	if ((rc = meta_bool(r, "tokenizer.ggml.add_bos_token", &tk->add_bos, &tk->add_bos_set)) != 0 ||
	    (rc = meta_bool(r, "tokenizer.ggml.add_eos_token", &tk->add_eos, &found)) != 0 ||
	    (rc = meta_bool(r, "tokenizer.ggml.add_space_prefix", &tk->add_space_prefix,
			    &tk->add_space_prefix_set)) != 0 ||
	    (rc = meta_str(r, "general.architecture", &tk->arch)) != 0)
		return rc;
	return 0;
}

/* "org/name" from a huggingface.co URL or a bare repository name; NULL when s is neither. */
static char *hf_repo_from(const char *s)
{
	static const char *const prefixes[] = {"https://huggingface.co/", "http://huggingface.co/",
					       "huggingface.co/", "hf.co/", "https://hf.co/"};
	bool url = false;
	if (!s)
		return NULL;
	for (size_t i = 0; i < FT_ARRAY_LEN(prefixes); i++)
		if (strncmp(s, prefixes[i], strlen(prefixes[i])) == 0) {
			s += strlen(prefixes[i]);
			url = true;
			break;
		}
	if (!url && strstr(s, "://"))
		return NULL;
	/* org/name: two components of [A-Za-z0-9._-], nothing but an optional '/...' after */
	size_t n = 0;
	int slashes = 0;
	for (; s[n] && s[n] != '?' && s[n] != '#'; n++) {
		char c = s[n];
		if (c == '/') {
			if (++slashes == 2)
				break;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return NULL;
	}
	if (slashes < 1 || n < 3 || s[0] == '/' || s[n - 1] == '/' || n > 200)
		return NULL;
	return ft_strndup(s, n);
}

/* The Hugging Face repository this file was converted from, when the metadata names one.
 * general.base_model.* names the model this one was tuned from, not this one: not used. */
static int read_hf_repo(struct rd *r, struct model_file *m)
{
	static const char *const keys[] = {"general.source.huggingface.repository",
					   "general.source.repo_url", "general.source.url",
					   "general.repo_url"};
	for (size_t i = 0; i < FT_ARRAY_LEN(keys) && !m->hf_repo; i++) {
		const struct kv *kv = kv_find(r, keys[i]);
		char *v = NULL;
		if (!kv || kv->type != GV_STRING)
			continue; /* informational keys: a wrong type is ignored, not fatal */
		int rc = meta_str(r, keys[i], &v);
		if (rc)
			return rc;
		m->hf_repo = hf_repo_from(v);
		free(v);
	}
	return 0;
}

static int load_tensors(struct rd *r, struct model_file *m, size_t data_start)
{
	m->tensors = calloc(r->n_ti ? r->n_ti : 1, sizeof *m->tensors);
	if (!m->tensors)
		return diag_set(r->d, FT_ENOMEM, r->path, 0, 0, "out of memory");
	for (size_t i = 0; i < r->n_ti; i++) {
		const struct tinfo *t = &r->ti[i];
		struct mf_tensor *mt = &m->tensors[i];
		mt->name = hf_name(t->name, m->hp.arch);
		if (!mt->name)
			return diag_set(r->d, FT_ENOMEM, r->path, 0, 0, "out of memory");
		m->n_tensors = i + 1;
		mt->ndim = (int)t->n_dims;
		for (uint32_t j = 0; j < t->n_dims; j++) /* ne is innermost-first: reverse */
			mt->shape[j] = (int64_t)t->ne[t->n_dims - 1 - j];
		mt->numel = t->numel;
		snprintf(mt->src_type, sizeof mt->src_type, "%s", ggml_type_name(t->type));
		mt->type = t->type;
		mt->raw = r->p + data_start + t->off;
		mt->raw_bytes = t->nbytes;
	}
	return 0;
}

static const struct tinfo *ti_find(const struct rd *r, const char *name)
{
	for (size_t i = 0; i < r->n_ti; i++)
		if (strcmp(r->ti[i].name, name) == 0)
			return &r->ti[i];
	return NULL;
}

/* What a parse reads: the whole file; the metadata only (the tokenizer, for `ftlab
 * tokenize`); or the header (every check up to the hyperparameters, then the facts the
 * tensor names give, no tokenizer and no tensor data: `ftlab check`). */
enum gguf_mode { GGUF_WHOLE, GGUF_METADATA, GGUF_HEADER };

static int gguf_parse(struct model_file *m, const uint8_t *buf, size_t n, const char *path,
		      enum gguf_mode mode, struct diag *d)
{
	struct rd r = {.p = buf, .n = n, .path = path, .d = d};
	uint32_t magic, version;
	uint64_t n_ti, n_kv;
	int rc;
	m->is_gguf = true;
	if ((rc = get_u32(&r, &magic, "magic")) != 0)
		goto done;
	if (magic != GGUF_MAGIC) {
		rc = diag_set(d, FT_EINVAL, path, 0, 0, "not a GGUF file (bad magic)");
		goto done;
	}
	if ((rc = get_u32(&r, &version, "version")) != 0)
		goto done;
	if (version != 2 && version != 3) {
		rc = diag_set(d, FT_EINVAL, path, 0, 0,
			      "GGUF version %" PRIu32 " is not supported (2 or 3)", version);
		goto done;
	}
	if ((rc = get_u64(&r, &n_ti, "tensor count")) != 0 ||
	    (rc = get_u64(&r, &n_kv, "metadata count")) != 0)
		goto done;
	/* A key-value pair takes at least 13 bytes, a tensor info at least 28. */
	if (n_kv > (r.n - r.off) / 13 || n_ti > (r.n - r.off) / 28) {
		rc = diag_set(d, FT_EINVAL, path, 0, 0,
			      "tensor count %" PRIu64 " or metadata count %" PRIu64
			      " exceeds what the %zu bytes left can hold", n_ti, n_kv, r.n - r.off);
		goto done;
	}
	r.kvs = calloc(n_kv ? (size_t)n_kv : 1, sizeof *r.kvs);
	if (!r.kvs) {
		rc = diag_set(d, FT_ENOMEM, path, 0, 0, "out of memory");
		goto done;
	}
	for (size_t i = 0; i < n_kv; i++) {
		r.n_kv = i + 1;
		if ((rc = read_kv(&r, &r.kvs[i])) != 0)
			goto done;
	}
	if ((rc = check_unique_keys(&r)) != 0)
		goto done;
	if (mode == GGUF_METADATA) {
		if ((rc = read_tokenizer(&r, m)) == 0)
			rc = read_hf_repo(&r, m);
		goto done;
	}
	r.ti = calloc(n_ti ? (size_t)n_ti : 1, sizeof *r.ti);
	if (!r.ti) {
		rc = diag_set(d, FT_ENOMEM, path, 0, 0, "out of memory");
		goto done;
	}
	for (size_t i = 0; i < n_ti; i++) {
		r.n_ti = i + 1;
		if ((rc = read_tensor_info(&r, &r.ti[i], i)) != 0)
			goto done;
	}
	if ((rc = check_unique_tensors(&r)) != 0)
		goto done;
	int64_t align = GGUF_DEFAULT_ALIGNMENT;
	bool found;
	if ((rc = meta_int(&r, "general.alignment", 1, GGUF_MAX_ALIGNMENT, &align, &found)) != 0)
		goto done;
	if (align & (align - 1)) {
		rc = diag_set(d, FT_EINVAL, path, 0, 0,
			      "general.alignment %" PRId64 " is not a power of two", align);
		goto done;
	}
	size_t data_start = r.off + ((size_t)align - r.off % (size_t)align) % (size_t)align;
	if (data_start > n) {
		rc = diag_set(d, FT_EINVAL, path, 0, 0, "truncated GGUF: no data section");
		goto done;
	}
	if ((rc = check_layout(&r, data_start, (size_t)align)) != 0)
		goto done;
	char *arch = NULL;
	if ((rc = meta_str(&r, "general.architecture", &arch)) != 0)
		goto done;
	if (!arch) {
		rc = diag_set(d, FT_EINVAL, path, 0, 0, "metadata 'general.architecture' is missing");
		goto done;
	}
	rc = read_hparams(&r, m, arch);
	free(arch);
	if (!rc && mode == GGUF_HEADER) {
		const struct tinfo *te = ti_find(&r, "token_embd.weight");
		if (!te || te->n_dims != 2 || te->ne[0] != (uint64_t)m->hp.n_embd ||
		    te->ne[1] > INT32_MAX) {
			rc = diag_set(d, FT_EINVAL, path, 0, 0,
				      "no 2-D token embedding 'token_embd.weight' of width %d",
				      m->hp.n_embd);
			goto done;
		}
		if (ti_find(&r, "rope_freqs.weight")) {
			rc = diag_set(d, FT_EUNSUPP, path, 0, 0, "tensor 'rope_freqs.weight' (RoPE "
				      "frequency factors) is not supported");
			goto done;
		}
		if (!m->hp.n_vocab)
			m->hp.n_vocab = (int)te->ne[1];
		m->hp.tied_embeddings = ti_find(&r, "output.weight") == NULL;
		m->hp.qkv_bias = m->hp.arch == ARCH_LLAMA && ti_find(&r, "blk.0.attn_q.bias");
		goto done;
	}
	if (rc || (rc = read_tokenizer(&r, m)) != 0 || (rc = read_hf_repo(&r, m)) != 0 ||
	    (rc = load_tensors(&r, m, data_start)) != 0)
		goto done;
	const char *embd = m->hp.arch == ARCH_GPT2 ? "transformer.wte.weight" : "model.embed_tokens.weight";
	const struct mf_tensor *te = model_file_tensor(m, embd);
	if (!te || te->ndim != 2) {
		rc = diag_set(d, FT_EINVAL, path, 0, 0, "no 2-D token embedding 'token_embd.weight'");
		goto done;
	}
	if (te->shape[1] != m->hp.n_embd) {
		rc = diag_set(d, FT_EINVAL, path, 0, 0,
			      "token_embd.weight has width %" PRId64 ", embedding_length is %d",
			      te->shape[1], m->hp.n_embd);
		goto done;
	}
	if (model_file_tensor(m, "rope_freqs.weight")) {
		/* Llama 3.1-style RoPE scaling stored as per-frequency factors; ignoring it would
		 * give wrong logits silently. */
		rc = diag_set(d, FT_EUNSUPP, path, 0, 0,
			      "tensor 'rope_freqs.weight' (RoPE frequency factors) is not supported");
		diag_hint(d, "load the Hugging Face directory instead; its config.json rope_scaling is supported");
		goto done;
	}
	if (!m->hp.n_vocab)
		m->hp.n_vocab = (int)te->shape[0];
	m->hp.tied_embeddings = model_file_tensor(m, "lm_head.weight") == NULL;
	char qb[64];
	snprintf(qb, sizeof qb, "model.layers.0.self_attn.q_proj.bias");
	m->hp.qkv_bias = m->hp.arch != ARCH_GPT2 && model_file_tensor(m, qb) != NULL;
done:
	free(r.by_key);
	for (size_t i = 0; i < r.n_kv; i++)
		free(r.kvs[i].key);
	free(r.kvs);
	for (size_t i = 0; i < r.n_ti; i++)
		free(r.ti[i].name);
	free(r.ti);
	return rc;
}

int gguf_load_buffer(struct model_file *m, const uint8_t *buf, size_t n, const char *path,
		     struct diag *d)
{
	return gguf_parse(m, buf, n, path, GGUF_WHOLE, d);
}

int gguf_load_metadata(struct model_file *m, const uint8_t *buf, size_t n, const char *path,
		       struct diag *d)
{
	return gguf_parse(m, buf, n, path, GGUF_METADATA, d);
}

int gguf_probe_buffer(struct model_file *m, const uint8_t *buf, size_t n, const char *path,
		      struct diag *d)
{
	return gguf_parse(m, buf, n, path, GGUF_HEADER, d);
}
