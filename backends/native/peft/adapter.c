/* adapter: PEFT adapter directories and llama.cpp adapter GGUFs (see adapter.h). The
 * reader treats the files as untrusted: header length bounded and inside the file, dtype
 * known, byte ranges matching shapes, inside the data section and not overlapping. */
#include "backends/native/peft/adapter.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/native/peft/gguf_write.h"
#include "backends/native/peft/st_write.h"
#include "common/util.h"
#include "common/banned.h"

/* "model.layers.<int>." at the start of name: the layer and the offset just past the
 * dot (what sscanf "%d.%n" matched, with out-of-range numbers refused). */
bool peft_layer_prefix(const char *name, int *out_layer, size_t *out_off)
{
	static const char pfx[] = "model.layers.";
	if (strncmp(name, pfx, sizeof pfx - 1) != 0)
		return false;
	const char *p = name + sizeof pfx - 1;
	char *end;
	errno = 0;
	long v = strtol(p, &end, 10);
	if (end == p || *end != '.' || errno == ERANGE || v < INT_MIN || v > INT_MAX)
		return false;
	*out_layer = (int)v;
	*out_off = (size_t)(end + 1 - name);
	return true;
}

#define PEFT_PREFIX "base_model.model."
#define ST_HEADER_MAX ((uint64_t)100 << 20)
#define ADAPTER_FILE_MAX ((size_t)4 << 30)

void rope_rows_permute(float *out, const float *in, int n_head, int head_dim, int64_t cols,
		       bool to_interleaved)
{
	const int half = head_dim / 2;
	for (int h = 0; h < n_head; h++)
		for (int j = 0; j < 2; j++)
			for (int i = 0; i < half; i++) {
				size_t hf = (size_t)h * head_dim + (size_t)j * half + (size_t)i;
				size_t il = (size_t)h * head_dim + 2 * (size_t)i + (size_t)j;
				size_t src = to_interleaved ? hf : il, dst = to_interleaved ? il : hf;
				memcpy(out + dst * (size_t)cols, in + src * (size_t)cols,
				       (size_t)cols * sizeof(float));
			}
}

/* buf (n bytes) = the text [s, e) with its NUL; false when it is empty or does not fit. */
static bool copy_span(char *buf, size_t n, const char *s, const char *e)
{
	size_t len = (size_t)(e - s);
	if (len == 0 || len + 1 > n)
		return false;
	memcpy(buf, s, len);
	buf[len] = 0;
	return true;
}

bool lora_module_name(char *buf, size_t n, const char *name)
{
	const char *e = strstr(name, ".lora_");
	if (!e)
		e = strstr(name, ".ia3_l");
	if (!e)
		return false;
	const char *s = e;
	while (s > name && s[-1] != '.')
		s--;
	return copy_span(buf, n, s, e);
}

static bool is_magnitude(const char *name)
{
	const char *p = strstr(name, ".lora_magnitude_vector");
	return p && p[22] == 0;
}

static bool is_ia3(const char *name)
{
	const char *p = strstr(name, ".ia3_l");
	return p && p[6] == 0;
}

/* The module of an IA3 tensor relative to its block: "mlp.down_proj" for
 * "model.layers.3.mlp.down_proj.ia3_l" (after the first all-digit component). */
static bool ia3_module(char *buf, size_t n, const char *name)
{
	const char *e = strstr(name, ".ia3_l"), *s = name;
	if (!e)
		return false;
	for (const char *p = name; p < e; p++) {
		if (*p != '.' || p[1] < '0' || p[1] > '9')
			continue;
		const char *q = p + 1;
		while (*q >= '0' && *q <= '9')
			q++;
		if (*q == '.') {
			s = q + 1;
			break;
		}
	}
	return copy_span(buf, n, s, e);
}

/* Prefix tuning's adapter_config.json, as PEFT writes it for a llama-family model (its
 * token_dim and num_attention_heads are the KV heads' under grouped-query attention). */
static json_t *prefix_config_json(const struct lora_info *info)
{
	int kvd = info->n_head_kv * info->head_dim, heads = info->n_head_kv;
	if (kvd <= 0) { /* a re-written adapter: as its config said */
		kvd = info->token_dim;
		heads = info->prefix_heads;
	}
	json_t *j = json_object();
	json_object_set_new(j, "peft_type", json_string("PREFIX_TUNING"));
	json_object_set_new(j, "task_type", json_string("CAUSAL_LM"));
	json_object_set_new(j, "base_model_name_or_path",
			    info->base_model ? json_string(info->base_model) : json_null());
	json_object_set_new(j, "num_virtual_tokens", json_integer(info->num_virtual_tokens));
	json_object_set_new(j, "token_dim", json_integer(kvd));
	json_object_set_new(j, "num_transformer_submodules", json_integer(1));
	json_object_set_new(j, "num_attention_heads", json_integer(heads));
	json_object_set_new(j, "num_layers", json_integer(info->num_layers));
	/* PEFT's default encoder_hidden_size is token_dim */
	json_object_set_new(j, "encoder_hidden_size",
			    json_integer(info->prefix_projection && info->encoder_hidden_size > 0
						 ? info->encoder_hidden_size
						 : kvd));
	json_object_set_new(j, "prefix_projection", json_boolean(info->prefix_projection));
	json_object_set_new(j, "inference_mode", json_true());
	json_object_set_new(j, "revision", json_null());
	return j;
}

/* Appends s to the JSON array when not already there. */
static void append_unique(json_t *arr, const char *s)
{
	for (size_t i = 0; i < json_array_size(arr); i++)
		if (strcmp(json_string_value(json_array_get(arr, i)), s) == 0)
			return;
	json_array_append_new(arr, json_string(s));
}

/* IA3's adapter_config.json, its module lists taken from the tensors. */
static json_t *ia3_config_json(const struct lora_tensor *t, size_t n,
			       const struct lora_info *info)
{
	json_t *j = json_object(), *tm = json_array(), *ff = json_array();
	json_object_set_new(j, "peft_type", json_string("IA3"));
	json_object_set_new(j, "task_type", json_string("CAUSAL_LM"));
	json_object_set_new(j, "base_model_name_or_path",
			    info->base_model ? json_string(info->base_model) : json_null());
	for (size_t i = 0; i < n; i++) {
		char mod[128];
		if (!ia3_module(mod, sizeof mod, t[i].name))
			continue;
		append_unique(tm, mod);
		if (t[i].rows == 1)
			append_unique(ff, mod);
	}
	json_object_set_new(j, "target_modules", tm);
	json_object_set_new(j, "feedforward_modules", ff);
	json_object_set_new(j, "fan_in_fan_out", json_boolean(info->fan_in_fan_out));
	json_object_set_new(j, "init_ia3_weights", json_true());
	json_object_set_new(j, "inference_mode", json_true());
	json_object_set_new(j, "modules_to_save", json_null());
	json_object_set_new(j, "revision", json_null());
	return j;
}

/* n_head for the rows of this tensor's output when it is a q/k lora_B or DoRA magnitude,
 * else 0. */
static int qk_heads(const char *name, const struct lora_info *info)
{
	if (!strstr(name, ".lora_B.") && !is_magnitude(name) && !is_ia3(name))
		return 0;
	char mod[64];
	if (!lora_module_name(mod, sizeof(mod), name))
		return 0;
	if (strcmp(mod, "q_proj") == 0)
		return info->n_head;
	if (strcmp(mod, "k_proj") == 0)
		return info->n_head_kv;
	return 0;
}

/* The prefix's key halves (every layer's first kvd of 2 kvd) with each head's dimensions
 * in the requested RoPE order; the value halves as they are. */
static int reorder_prefix(float **out, const struct lora_tensor *t, const struct lora_info *info,
			  bool want_interleaved, struct diag *d)
{
	int64_t kvd = (int64_t)info->n_head_kv * info->head_dim;
	if (info->head_dim <= 0 || info->head_dim % 2 || kvd <= 0 || t->cols % (2 * kvd))
		return diag_set(d, FT_EINVAL, "", 0, 0,
				"prompt_embeddings: %lld columns are not keys and values of %d heads "
				"of %d", (long long)t->cols, info->n_head_kv, info->head_dim);
	float *c = malloc((size_t)t->rows * (size_t)t->cols * sizeof(float));
	if (!c)
		return diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
	memcpy(c, t->data, (size_t)t->rows * (size_t)t->cols * sizeof(float));
	for (int64_t r = 0; r < t->rows; r++)
		for (int64_t k = 0; k < t->cols; k += 2 * kvd) {
			size_t off = (size_t)(r * t->cols + k);
			rope_rows_permute(c + off, t->data + off, info->n_head_kv, info->head_dim, 1,
					  want_interleaved);
		}
	*out = c;
	return 0;
}

/* A copy of t's data with q/k rows in the requested order (NULL = use t->data as is). */
static int reorder_copy(float **out, const struct lora_tensor *t, const struct lora_info *info,
			bool want_interleaved, struct diag *d)
{
	*out = NULL;
	if (strcmp(t->name, "prompt_embeddings") == 0 && info->interleaved != want_interleaved)
		return reorder_prefix(out, t, info, want_interleaved, d);
	int heads = qk_heads(t->name, info);
	if (heads == 0 || info->interleaved == want_interleaved)
		return 0;
	if (is_ia3(t->name) && t->cols != 1) {
		if (t->rows != 1)
			return diag_set(d, FT_EINVAL, "", 0, 0, "%s: expected (out, 1) or (1, in)",
					t->name);
		return 0; /* a feed-forward q/k vector scales inputs: no row order */
	}
	if (info->head_dim <= 0 || info->head_dim % 2 || (int64_t)heads * info->head_dim != t->rows)
		return diag_set(d, FT_EINVAL, "", 0, 0,
				"%s: %lld rows do not match %d heads of %d", t->name,
				(long long)t->rows, heads, info->head_dim);
	float *c = malloc((size_t)t->rows * (size_t)t->cols * sizeof(float));
	if (!c)
		return diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
	rope_rows_permute(c, t->data, heads, info->head_dim, t->cols, want_interleaved);
	*out = c;
	return 0;
}

static json_t *config_json(const struct lora_info *info)
{
	json_t *j = json_object();
	json_object_set_new(j, "peft_type", json_string("LORA"));
	json_object_set_new(j, "task_type", json_string("CAUSAL_LM"));
	json_object_set_new(j, "base_model_name_or_path",
			    info->base_model ? json_string(info->base_model) : json_null());
	json_object_set_new(j, "r", json_integer(info->rank));
	json_object_set_new(j, "lora_alpha", json_real(info->alpha));
	json_object_set_new(j, "lora_dropout", json_real(info->dropout));
	json_object_set_new(j, "use_rslora", json_boolean(info->rslora));
	json_object_set_new(j, "use_dora", json_boolean(info->use_dora));
	json_t *tm = json_array();
	for (size_t i = 0; i < info->n_targets; i++)
		json_array_append_new(tm, json_string(info->targets[i]));
	json_object_set_new(j, "target_modules", tm);
	json_object_set_new(j, "bias", json_string("none"));
	json_object_set_new(j, "fan_in_fan_out", json_boolean(info->fan_in_fan_out));
	json_object_set_new(j, "inference_mode", json_true());
	json_object_set_new(j, "init_lora_weights", json_true());
	json_object_set_new(j, "modules_to_save", json_null());
	json_object_set_new(j, "revision", json_null());
	return j;
}

int adapter_write_peft(const char *dir, const struct lora_tensor *t, size_t n,
		       const struct lora_info *info, struct diag *d)
{
	int rc = dir_make_all(dir, d);
	if (rc)
		return rc;
	struct st_tensor *st = calloc(n ? n : 1, sizeof(*st));
	char **names = calloc(n ? n : 1, sizeof(*names));
	float **copies = calloc(n ? n : 1, sizeof(*copies));
	char *stp = path_join(dir, "adapter_model.safetensors");
	char *cfp = path_join(dir, "adapter_config.json");
	char *text = NULL;
	if (!st || !names || !copies || !stp || !cfp) {
		rc = diag_set(d, FT_ENOMEM, dir, 0, 0, "out of memory");
		goto done;
	}
	for (size_t i = 0; i < n; i++) {
		struct strbuf b = {0};
		bool bare = strcmp(t[i].name, "prompt_embeddings") == 0; /* PEFT's key */
		if (strbuf_printf(&b, "%s%s", bare ? "" : PEFT_PREFIX, t[i].name) != 0) {
			rc = diag_set(d, FT_ENOMEM, dir, 0, 0, "out of memory");
			goto done;
		}
		names[i] = strbuf_detach(&b);
		if ((rc = reorder_copy(&copies[i], &t[i], info, false, d)) != 0)
			goto done;
		bool vec = is_magnitude(t[i].name) && t[i].cols == 1;
		st[i] = (struct st_tensor){.name = names[i], .dtype = "F32", .ndim = vec ? 1 : 2,
					   .shape = {t[i].rows, vec ? 0 : t[i].cols},
					   .data = copies[i] ? copies[i] : t[i].data,
					   .nbytes = (size_t)t[i].rows * (size_t)t[i].cols * 4};
	}
	if ((rc = st_write_file(stp, st, n, NULL, d)) != 0)
		goto done;
	json_t *j = info->prefix ? prefix_config_json(info)
		    : info->ia3  ? ia3_config_json(t, n, info)
				 : config_json(info);
	text = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(j);
	if (!text) {
		rc = diag_set(d, FT_ENOMEM, dir, 0, 0, "out of memory");
		goto done;
	}
	rc = file_write_atomic(cfp, text, strlen(text), d);
done:
	for (size_t i = 0; i < n && names; i++) {
		free(names[i]);
		if (copies)
			free(copies[i]);
	}
	free(text);
	free(names);
	free(copies);
	free(st);
	free(stp);
	free(cfp);
	return rc;
}

/* "model.layers.N.self_attn.q_proj.lora_A.weight" -> "blk.N.attn_q.weight.lora_a". */
static bool gguf_lora_name(char *buf, size_t n, const char *name)
{
	static const struct {
		const char *hf, *gg;
	} map[] = {{"self_attn.q_proj", "attn_q"},  {"self_attn.k_proj", "attn_k"},
		   {"self_attn.v_proj", "attn_v"},  {"self_attn.o_proj", "attn_output"},
		   {"mlp.gate_proj", "ffn_gate"},   {"mlp.up_proj", "ffn_up"},
		   {"mlp.down_proj", "ffn_down"}};
	int layer;
	size_t off;
	if (!peft_layer_prefix(name, &layer, &off) || layer < 0)
		return false;
	const char *rest = name + off;
	for (size_t i = 0; i < FT_ARRAY_LEN(map); i++) {
		size_t l = strlen(map[i].hf);
		if (strncmp(rest, map[i].hf, l) != 0)
			continue;
		const char *ab = rest + l;
		const char *suffix = strcmp(ab, ".lora_A.weight") == 0   ? "lora_a"
				     : strcmp(ab, ".lora_B.weight") == 0 ? "lora_b"
									 : NULL;
		if (!suffix)
			return false;
		int w = snprintf(buf, n, "blk.%d.%s.weight.%s", layer, map[i].gg, suffix);
		return w > 0 && (size_t)w < n;
	}
	return false;
}

int adapter_write_gguf(const char *path, const struct lora_tensor *t, size_t n,
		       const struct lora_info *info, struct diag *d)
{
	struct gguf_out *g = NULL;
	float **copies = calloc(n ? n : 1, sizeof(*copies));
	int rc = gguf_out_create(&g);
	if (rc || !copies) {
		rc = diag_set(d, FT_ENOMEM, path, 0, 0, "out of memory");
		goto done;
	}
	if (info->prefix) {
		rc = diag_set(d, FT_EINVAL, path, 0, 0,
			      "a prefix-tuning adapter cannot be written as a llama.cpp LoRA "
			      "adapter; export --format peft");
		goto done;
	}
	if (info->use_dora || info->ia3) {
		rc = diag_set(d, FT_EINVAL, path, 0, 0,
			      "a %s adapter cannot be written as a llama.cpp LoRA adapter (%s); "
			      "export merged-gguf instead",
			      info->ia3 ? "IA3" : "DoRA",
			      info->ia3 ? "llama.cpp's adapters are LoRA only"
					: "it has no magnitude vectors");
		goto done;
	}
	const char *arch = info->gguf_arch ? info->gguf_arch : "llama";
	bool want_il = strcmp(arch, "llama") == 0; /* llama.cpp permutes q/k for llama only */
	gguf_out_str(g, "general.architecture", arch);
	gguf_out_str(g, "general.type", "adapter");
	gguf_out_str(g, "adapter.type", "lora");
	/* llama.cpp scales by alpha/r; rsLoRA's alpha/sqrt(r) is expressed as an alpha. */
	double alpha = info->rslora ? info->alpha * sqrt((double)info->rank) : info->alpha;
	gguf_out_f32(g, "adapter.lora.alpha", (float)alpha);
	for (size_t i = 0; i < n; i++) {
		char name[160];
		if (!gguf_lora_name(name, sizeof(name), t[i].name)) {
			rc = diag_set(d, FT_EUNSUPP, path, 0, 0,
				      "'%s' has no llama.cpp adapter name (llama family and Gemma 3 only)",
				      t[i].name);
			goto done;
		}
		if ((rc = reorder_copy(&copies[i], &t[i], info, want_il, d)) != 0)
			goto done;
		int64_t ne[2] = {t[i].cols, t[i].rows};
		gguf_out_tensor(g, name, GGML_F32, 2, ne, copies[i] ? copies[i] : t[i].data);
	}
	rc = gguf_out_write(g, path, d);
done:
	for (size_t i = 0; copies && i < n; i++)
		free(copies[i]);
	free(copies);
	gguf_out_free(g);
	return rc;
}

void adapter_free(struct lora_adapter *a)
{
	if (!a)
		return;
	for (size_t i = 0; i < a->n; i++) {
		free(a->t[i].name);
		free(a->t[i].data);
	}
	free(a->t);
	for (size_t i = 0; i < a->info.n_targets; i++)
		free(a->info.targets[i]);
	free(a->info.targets);
	for (size_t i = 0; i < a->info.n_ff_targets; i++)
		free(a->info.ff_targets[i]);
	free(a->info.ff_targets);
	free(a);
}

static float half_to_float(uint16_t h)
{
	uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, f;
	if (exp == 0) {
		float v = ldexpf((float)man, -24);
		return sign ? -v : v;
	}
	if (exp == 31)
		f = sign | 0x7f800000u | (man << 13);
	else
		f = sign | ((exp + 112) << 23) | (man << 13);
	float v;
	memcpy(&v, &f, 4);
	return v;
}

/* A list of strings of the config (absent or null: none). */
static int read_names(char ***out, size_t *n, json_t *j, const char *key, const char *path,
		      struct diag *d)
{
	json_t *a = json_object_get(j, key);
	if (!a || json_is_null(a))
		return 0;
	if (!json_is_array(a))
		return diag_set(d, FT_EINVAL, path, 0, 0, "%s must be a list of strings", key);
	*out = calloc(json_array_size(a) + 1, sizeof(char *));
	if (!*out)
		return diag_set(d, FT_ENOMEM, path, 0, 0, "out of memory");
	for (size_t i = 0; i < json_array_size(a); i++) {
		const char *s = json_string_value(json_array_get(a, i));
		if (!s)
			return diag_set(d, FT_EINVAL, path, 0, 0, "%s must be strings", key);
		if (!((*out)[(*n)++] = ft_strdup(s)))
			return diag_set(d, FT_ENOMEM, path, 0, 0, "out of memory");
	}
	return 0;
}

static int read_config(struct lora_info *info, const char *path, struct diag *d)
{
	json_t *j = NULL;
	int rc = adapter_config_read(&j, path, d);
	if (rc)
		return rc;
	const char *pt = json_string_value(json_object_get(j, "peft_type"));
	json_t *r = json_object_get(j, "r"), *al = json_object_get(j, "lora_alpha");
	if (!pt || (strcmp(pt, "LORA") != 0 && strcmp(pt, "IA3") != 0 &&
		    strcmp(pt, "PREFIX_TUNING") != 0)) {
		rc = diag_set(d, FT_EINVAL, path, 0, 0,
			      "peft_type: expected \"LORA\", \"IA3\" or \"PREFIX_TUNING\"");
		goto done;
	}
	info->ia3 = strcmp(pt, "IA3") == 0;
	info->prefix = strcmp(pt, "PREFIX_TUNING") == 0;
	if (info->prefix) {
		json_t *nv = json_object_get(j, "num_virtual_tokens");
		json_t *nl = json_object_get(j, "num_layers");
		if (!json_is_integer(nv) || json_integer_value(nv) < 1 ||
		    json_integer_value(nv) > 65536 || !json_is_integer(nl) ||
		    json_integer_value(nl) < 1 || json_integer_value(nl) > 4096) {
			rc = diag_set(d, FT_EINVAL, path, 0, 0,
				      "num_virtual_tokens and num_layers must be positive integers");
			goto done;
		}
		if (json_is_true(json_object_get(j, "prefix_projection")) &&
		    !json_is_true(json_object_get(j, "inference_mode"))) {
			rc = diag_set(d, FT_EUNSUPP, path, 0, 0,
				      "a training-mode prefix_projection adapter is not supported "
				      "(PEFT saves the projected prompt_embeddings in inference mode)");
			goto done;
		}
		info->num_virtual_tokens = (int)json_integer_value(nv);
		info->num_layers = (int)json_integer_value(nl);
		info->prefix_projection = json_is_true(json_object_get(j, "prefix_projection"));
		json_t *eh = json_object_get(j, "encoder_hidden_size");
		json_t *td = json_object_get(j, "token_dim");
		json_t *na = json_object_get(j, "num_attention_heads");
		info->encoder_hidden_size = json_is_integer(eh) && json_integer_value(eh) > 0 &&
						    json_integer_value(eh) <= 1 << 20
					    ? (int)json_integer_value(eh)
					    : 0;
		info->token_dim = json_is_integer(td) && json_integer_value(td) > 0 &&
					  json_integer_value(td) <= 1 << 20
				  ? (int)json_integer_value(td)
				  : 0;
		info->prefix_heads = json_is_integer(na) && json_integer_value(na) > 0 &&
					     json_integer_value(na) <= 1 << 16
				     ? (int)json_integer_value(na)
				     : 0;
		goto done;
	}
	if (info->ia3) {
		info->fan_in_fan_out = json_is_true(json_object_get(j, "fan_in_fan_out"));
		if ((rc = read_names(&info->targets, &info->n_targets, j, "target_modules",
				     path, d)) == 0)
			rc = read_names(&info->ff_targets, &info->n_ff_targets, j,
					"feedforward_modules", path, d);
		goto done;
	}
	if (!json_is_integer(r) || json_integer_value(r) < 1 || json_integer_value(r) > 65536 ||
	    !json_is_number(al)) {
		rc = diag_set(d, FT_EINVAL, path, 0, 0,
			      "r must be a positive integer and lora_alpha a number");
		goto done;
	}
	info->rank = (int)json_integer_value(r);
	info->alpha = json_number_value(al);
	info->dropout = json_number_value(json_object_get(j, "lora_dropout"));
	info->rslora = json_is_true(json_object_get(j, "use_rslora"));
	info->use_dora = json_is_true(json_object_get(j, "use_dora"));
	info->fan_in_fan_out = json_is_true(json_object_get(j, "fan_in_fan_out"));
	json_t *tm = json_object_get(j, "target_modules");
	if (json_is_array(tm)) {
		info->targets = calloc(json_array_size(tm) + 1, sizeof(char *));
		if (!info->targets) {
			rc = diag_set(d, FT_ENOMEM, path, 0, 0, "out of memory");
			goto done;
		}
		for (size_t i = 0; i < json_array_size(tm); i++) {
			const char *s = json_string_value(json_array_get(tm, i));
			if (!s) {
				rc = diag_set(d, FT_EINVAL, path, 0, 0,
					      "target_modules must be strings");
				goto done;
			}
			info->targets[info->n_targets++] = ft_strdup(s);
		}
	}
done:
	json_decref(j);
	return rc;
}

int adapter_read_peft(struct lora_adapter **out, const char *dir, bool want_interleaved,
		      int n_head, int n_head_kv, int head_dim, struct diag *d)
{
	*out = NULL;
	struct lora_adapter *a = calloc(1, sizeof(*a));
	char *stp = path_join(dir, "adapter_model.safetensors");
	char *cfp = path_join(dir, "adapter_config.json");
	struct st_file sf = {0};
	struct st_range *ranges = NULL;
	int rc = 0;
	if (!a || !stp || !cfp) {
		rc = diag_set(d, FT_ENOMEM, dir, 0, 0, "out of memory");
		goto done;
	}
	if ((rc = read_config(&a->info, cfp, d)) != 0)
		goto done;
	if ((rc = st_read_whole(&sf, stp, ADAPTER_FILE_MAX, ST_HEADER_MAX, d)) != 0)
		goto done;
	json_t *h = sf.header;
	const size_t data_len = sf.data_len;
	const unsigned char *data = sf.data;
	size_t cap = json_object_size(h);
	a->t = calloc(cap ? cap : 1, sizeof(*a->t));
	ranges = calloc(cap ? cap : 1, sizeof(*ranges));
	if (!a->t || !ranges) {
		rc = diag_set(d, FT_ENOMEM, stp, 0, 0, "out of memory");
		goto done;
	}
	const char *key;
	json_t *e;
	size_t nr = 0;
	json_object_foreach(h, key, e) {
		if (strcmp(key, "__metadata__") == 0)
			continue;
		const char *dt = json_string_value(json_object_get(e, "dtype"));
		json_t *shape = json_object_get(e, "shape"), *offs = json_object_get(e, "data_offsets");
		size_t es = dt ? st_dtype_size(dt) : 0;
		if (!dt || (strcmp(dt, "F32") && strcmp(dt, "F16") && strcmp(dt, "BF16"))) {
			rc = diag_set(d, FT_EINVAL, stp, 0, 0,
				      "tensor '%s': dtype must be F32, F16 or BF16", key);
			goto done;
		}
		/* DoRA's magnitude is 1-D, every other tensor 2-D */
		size_t want_dims = is_magnitude(key) ? 1 : 2;
		if (!json_is_array(shape) || json_array_size(shape) != want_dims ||
		    !json_is_array(offs) || json_array_size(offs) != 2) {
			rc = diag_set(d, FT_EINVAL, stp, 0, 0,
				      "tensor '%s': expected a %zu-D shape and data_offsets", key,
				      want_dims);
			goto done;
		}
		if (want_dims == 1 && !a->info.use_dora) {
			rc = diag_set(d, FT_EINVAL, stp, 0, 0,
				      "tensor '%s' is a DoRA magnitude but adapter_config.json has "
				      "no use_dora: true", key);
			goto done;
		}
		json_int_t r = json_integer_value(json_array_get(shape, 0));
		json_int_t c = want_dims == 1 ? 1 : json_integer_value(json_array_get(shape, 1));
		json_int_t lo = json_integer_value(json_array_get(offs, 0));
		json_int_t hi = json_integer_value(json_array_get(offs, 1));
		size_t numel, bytes;
		if (r <= 0 || c <= 0 || lo < 0 || hi < lo ||
		    !size_mul((size_t)r, (size_t)c, &numel) || !size_mul(numel, es, &bytes) ||
		    (uint64_t)(hi - lo) != bytes || (uint64_t)hi > data_len) {
			rc = diag_set(d, FT_EINVAL, stp, 0, 0,
				      "tensor '%s': shape, dtype and byte range disagree or lie "
				      "outside the file", key);
			goto done;
		}
		bool key_ok = a->info.ia3 ? is_ia3(key) : strstr(key, ".lora_") != NULL;
		if (a->info.prefix) {
			if (strcmp(key, "prompt_embeddings") != 0 || r != a->info.num_virtual_tokens ||
			    c % (2 * (json_int_t)a->info.num_layers) != 0) {
				rc = diag_set(d, FT_EINVAL, stp, 0, 0,
					      "tensor '%s': expected prompt_embeddings of %d rows "
					      "and 2 x %d layers of keys and values",
					      key, a->info.num_virtual_tokens, a->info.num_layers);
				goto done;
			}
		} else if (strncmp(key, PEFT_PREFIX, strlen(PEFT_PREFIX)) != 0 || !key_ok) {
			rc = diag_set(d, FT_EINVAL, stp, 0, 0,
				      "tensor '%s' is not a PEFT %s weight (expected "
				      "base_model.model.<module>.%s)", key,
				      a->info.ia3 ? "IA3" : "LoRA",
				      a->info.ia3 ? "ia3_l" : "lora_A/B.weight");
			goto done;
		}
		ranges[nr++] = (struct st_range){(uint64_t)lo, (uint64_t)hi};
		struct lora_tensor *t = &a->t[a->n];
		t->name = ft_strdup(a->info.prefix ? key : key + strlen(PEFT_PREFIX));
		t->data = malloc(numel * sizeof(float));
		t->rows = r;
		t->cols = c;
		a->n++;
		if (!t->name || !t->data) {
			rc = diag_set(d, FT_ENOMEM, stp, 0, 0, "out of memory (%zu bytes)",
				      numel * sizeof(float));
			goto done;
		}
		const unsigned char *p = data + lo;
		for (size_t i = 0; i < numel; i++) {
			if (es == 4) {
				memcpy(&t->data[i], p + 4 * i, 4);
			} else {
				uint16_t u = (uint16_t)(p[2 * i] | (p[2 * i + 1] << 8));
				if (dt[0] == 'B') {
					uint32_t f = (uint32_t)u << 16;
					memcpy(&t->data[i], &f, 4);
				} else {
					t->data[i] = half_to_float(u);
				}
			}
		}
		/* Rank must match the config; A is (r, in), B is (out, r). */
		bool is_a = strstr(t->name, ".lora_A.") != NULL;
		if (want_dims == 2 && !a->info.ia3 && !a->info.prefix &&
		    (is_a ? r : c) != a->info.rank) {
			rc = diag_set(d, FT_EINVAL, stp, 0, 0,
				      "tensor '%s' has rank %lld but adapter_config.json says r=%d",
				      key, (long long)(is_a ? r : c), a->info.rank);
			goto done;
		}
	}
	if (nr == 0) {
		rc = diag_set(d, FT_EINVAL, stp, 0, 0, "no adapter tensors");
		goto done;
	}
	if ((rc = st_ranges_check(ranges, nr, stp, d)) != 0)
		goto done;
	a->info.interleaved = false;
	a->info.n_head = n_head;
	a->info.n_head_kv = n_head_kv;
	a->info.head_dim = head_dim;
	if (want_interleaved)
		for (size_t i = 0; i < a->n; i++) {
			float *c = NULL;
			if ((rc = reorder_copy(&c, &a->t[i], &a->info, true, d)) != 0)
				goto done;
			if (c) {
				free(a->t[i].data);
				a->t[i].data = c;
			}
		}
	a->info.interleaved = want_interleaved;
	*out = a;
	a = NULL;
done:
	adapter_free(a);
	st_file_free(&sf);
	free(ranges);
	free(stp);
	free(cfp);
	return rc;
}
