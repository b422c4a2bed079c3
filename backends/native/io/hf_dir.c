/* hf_dir: Hugging Face model directories: config.json (llama, qwen2, gpt2), weights in
 * model.safetensors or shards listed by model.safetensors.index.json, tokenizer.json,
 * tokenizer_config.json and chat_template.jinja. GPT-2 names get the "transformer." prefix and Conv1D weights are
 * transposed from (in, out) to (out, in); the content hash covers every weight file. */
#include "backends/native/io/io_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backends/native/io/dequant.h"
#include "common/hash.h"
#include "common/util.h"
#include "common/banned.h"

#define CONFIG_MAX (16u << 20)
#define TOKENIZER_MAX (256u << 20)

static int cfg_int(json_t *o, const char *key, bool required, int dflt, int *out,
		   const char *path, struct diag *d)
{
	json_t *v = json_object_get(o, key);
	if (!v || json_is_null(v)) {
		if (required)
			return diag_set(d, FT_EINVAL, path, 0, 0, "config.json: '%s' is missing", key);
		*out = dflt;
		return 0;
	}
	if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > (1 << 24))
		return diag_set(d, FT_EINVAL, path, 0, 0,
				"config.json: '%s' must be an integer in [1, 2^24]", key);
	*out = (int)json_integer_value(v);
	return 0;
}

static int cfg_float(json_t *o, const char *key, double dflt, float *out, const char *path,
		     struct diag *d)
{
	json_t *v = json_object_get(o, key);
	if (!v || json_is_null(v)) {
		*out = (float)dflt;
		return 0;
	}
	if (!json_is_number(v))
		return diag_set(d, FT_EINVAL, path, 0, 0, "config.json: '%s' must be a number", key);
	*out = (float)json_number_value(v);
	return 0;
}

/* Gemma 3 (gemma3_text) keys beyond llama's, with transformers' defaults. */
static int gemma3_config(struct model_hparams *hp, json_t *c, const char *path, struct diag *d)
{
	int rc;
	hp->arch = ARCH_GEMMA3;
	json_t *tw = json_object_get(c, "tie_word_embeddings");
	hp->tied_embeddings = !tw || json_is_null(tw) || json_is_true(tw);
	static const char *const refused[] = {"final_logit_softcapping", "attn_logit_softcapping"};
	for (size_t i = 0; i < FT_ARRAY_LEN(refused); i++) {
		json_t *v = json_object_get(c, refused[i]);
		if (v && !json_is_null(v))
			return diag_set(d, FT_EUNSUPP, path, 0, 0,
					"config.json: '%s' (logit softcapping) is not supported",
					refused[i]);
	}
	if (json_is_true(json_object_get(c, "use_bidirectional_attention")))
		return diag_set(d, FT_EUNSUPP, path, 0, 0,
				"config.json: 'use_bidirectional_attention' is not supported");
	const char *act = json_string_value(json_object_get(c, "hidden_activation"));
	if (!act)
		act = json_string_value(json_object_get(c, "hidden_act"));
	if (act && strcmp(act, "gelu_pytorch_tanh") != 0)
		return diag_set(d, FT_EUNSUPP, path, 0, 0,
				"config.json: activation '%s' is not supported (gelu_pytorch_tanh)",
				act);
	json_t *sw = json_object_get(c, "sliding_window");
	if ((rc = cfg_int(c, "sliding_window", false, 4096, &hp->sliding_window, path, d)))
		return rc;
	if (json_is_null(sw))
		hp->sliding_window = 0;
	/* rope_local_base_freq (transformers 4) or rope_parameters (5) */
	json_t *rp = json_object_get(c, "rope_parameters");
	json_t *loc = json_is_object(rp) ? json_object_get(rp, "sliding_attention") : NULL;
	json_t *glob = json_is_object(rp) ? json_object_get(rp, "full_attention") : NULL;
	if (json_is_object(loc)) {
		const char *ty = json_string_value(json_object_get(loc, "rope_type"));
		if (ty && strcmp(ty, "default") != 0)
			return diag_set(d, FT_EUNSUPP, path, 0, 0,
					"config.json: RoPE type '%s' of the sliding-window layers is "
					"not supported", ty);
		if ((rc = cfg_float(loc, "rope_theta", 10000.0, &hp->rope_theta_local, path, d)))
			return rc;
	} else if ((rc = cfg_float(c, "rope_local_base_freq", 10000.0, &hp->rope_theta_local,
				   path, d))) {
		return rc;
	}
	if (json_is_object(glob) && !json_object_get(c, "rope_theta") &&
	    (rc = cfg_float(glob, "rope_theta", 1e6, &hp->rope_theta, path, d)))
		return rc;
	if (!json_object_get(c, "rope_theta") && !json_is_object(glob))
		hp->rope_theta = 1e6f;
	/* which layers are local: layer_types, else the period (default 6) */
	json_t *lt = json_object_get(c, "layer_types");
	int pat = 6;
	if (json_is_array(lt)) {
		if (json_array_size(lt) != (size_t)hp->n_layer)
			return diag_set(d, FT_EINVAL, path, 0, 0,
					"config.json: 'layer_types' has %zu entries for %d layers",
					json_array_size(lt), hp->n_layer);
		bool *local = calloc((size_t)hp->n_layer, sizeof *local);
		if (!local)
			return diag_set(d, FT_ENOMEM, path, 0, 0, "out of memory");
		for (int l = 0; l < hp->n_layer && !rc; l++) {
			const char *t = json_string_value(json_array_get(lt, (size_t)l));
			if (t && strcmp(t, "sliding_attention") == 0)
				local[l] = true;
			else if (!t || strcmp(t, "full_attention") != 0)
				rc = diag_set(d, FT_EUNSUPP, path, 0, 0,
					      "config.json: layer_types[%d] is not 'sliding_attention' "
					      "or 'full_attention'", l);
		}
		pat = rc ? 0 : swa_pattern_of(local, hp->n_layer);
		free(local);
		if (rc)
			return rc;
		if (pat == -1)
			return diag_set(d, FT_EUNSUPP, path, 0, 0,
					"config.json: sliding-window layers that do not repeat with a "
					"period are not supported");
		if (pat == -2) {
			hp->sliding_window = 0;
			pat = 0;
		}
	} else if ((rc = cfg_int(c, "sliding_window_pattern", false, 6, &pat, path, d))) {
		return rc;
	} else if (pat == 1) {
		hp->sliding_window = 0;
	}
	hp->swa_pattern = pat;
	return 0;
}

int hf_config_parse(struct model_hparams *hp, const char *json, size_t len, const char *path,
		    struct diag *d)
{
	json_error_t je;
	json_t *c = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
	if (!c)
		return diag_set(d, FT_EINVAL, path, je.line > 0 ? je.line : 0,
				je.column > 0 ? je.column : 0, "%s", je.text);
	int rc = 0;
	const char *mt = json_string_value(json_object_get(c, "model_type"));
	if (!json_is_object(c) || !mt) {
		rc = diag_set(d, FT_EINVAL, path, 0, 0, "config.json: 'model_type' is missing");
		goto done;
	}
	bool gpt2 = strcmp(mt, "gpt2") == 0, qwen2 = strcmp(mt, "qwen2") == 0;
	bool gemma3 = strcmp(mt, "gemma3_text") == 0;
	if (strcmp(mt, "gemma3") == 0) {
		rc = diag_set(d, FT_EUNSUPP, path, 0, 0,
			      "config.json: model_type 'gemma3' (Gemma 3 with its vision tower) is "
			      "not supported; text-only Gemma 3 ('gemma3_text') is");
		goto done;
	}
	if (!gpt2 && !qwen2 && !gemma3 && strcmp(mt, "llama") != 0) {
		rc = diag_set(d, FT_EUNSUPP, path, 0, 0,
			      "config.json: model_type '%s' is not supported (llama, qwen2, "
			      "gemma3_text, gpt2)", mt);
		goto done;
	}
	memset(hp, 0, sizeof *hp);
	hp->rope_scaling = ROPE_SCALING_NONE;
	hp->rope_scaling_factor = 1.0f;
	if (gpt2) {
		hp->arch = ARCH_GPT2;
		hp->rope_style = ROPE_NONE;
		if ((rc = cfg_int(c, "n_layer", true, 0, &hp->n_layer, path, d)) ||
		    (rc = cfg_int(c, "n_embd", true, 0, &hp->n_embd, path, d)) ||
		    (rc = cfg_int(c, "n_head", true, 0, &hp->n_head, path, d)) ||
		    (rc = cfg_int(c, "vocab_size", true, 0, &hp->n_vocab, path, d)) ||
		    (rc = cfg_int(c, "n_positions", false, 1024, &hp->n_ctx_train, path, d)) ||
		    (rc = cfg_float(c, "layer_norm_epsilon", 1e-5, &hp->norm_eps, path, d)))
			goto done;
		if ((rc = cfg_int(c, "n_inner", false, 4 * hp->n_embd, &hp->n_ff, path, d)))
			goto done;
		hp->n_head_kv = hp->n_head;
		hp->tied_embeddings = true;
	} else {
		hp->arch = ARCH_LLAMA;
		hp->rope_style = ROPE_HALF;
		if ((rc = cfg_int(c, "num_hidden_layers", true, 0, &hp->n_layer, path, d)) ||
		    (rc = cfg_int(c, "hidden_size", true, 0, &hp->n_embd, path, d)) ||
		    (rc = cfg_int(c, "num_attention_heads", true, 0, &hp->n_head, path, d)) ||
		    (rc = cfg_int(c, "intermediate_size", true, 0, &hp->n_ff, path, d)) ||
		    (rc = cfg_int(c, "vocab_size", true, 0, &hp->n_vocab, path, d)) ||
		    (rc = cfg_int(c, "max_position_embeddings", false, 2048, &hp->n_ctx_train, path, d)) ||
		    (rc = cfg_float(c, "rms_norm_eps", 1e-6, &hp->norm_eps, path, d)) ||
		    (rc = cfg_float(c, "rope_theta", 10000.0, &hp->rope_theta, path, d)))
			goto done;
		if ((rc = cfg_int(c, "num_key_value_heads", false, hp->n_head, &hp->n_head_kv, path, d)))
			goto done;
		hp->tied_embeddings = json_is_true(json_object_get(c, "tie_word_embeddings"));
		hp->qkv_bias = qwen2 || json_is_true(json_object_get(c, "attention_bias"));
		if (gemma3 && (rc = gemma3_config(hp, c, path, d)) != 0)
			goto done;
		json_t *rs = json_object_get(c, "rope_scaling");
		json_t *rp = json_object_get(c, "rope_parameters");
		if (gemma3 && !json_is_object(rs) && json_is_object(rp)) /* transformers 5 */
			rs = json_object_get(rp, "full_attention");
		if (json_is_object(rs)) {
			const char *ty = json_string_value(json_object_get(rs, "rope_type"));
			if (!ty)
				ty = json_string_value(json_object_get(rs, "type"));
			if (!ty || strcmp(ty, "default") == 0) {
				/* none */
			} else if (strcmp(ty, "linear") == 0 || strcmp(ty, "llama3") == 0) {
				hp->rope_scaling = ty[1] == 'i' ? ROPE_SCALING_LINEAR : ROPE_SCALING_LLAMA3;
				if ((rc = cfg_float(rs, "factor", 1.0, &hp->rope_scaling_factor, path, d)) ||
				    (rc = cfg_float(rs, "low_freq_factor", 1.0, &hp->rope_low_freq_factor,
						    path, d)) ||
				    (rc = cfg_float(rs, "high_freq_factor", 4.0, &hp->rope_high_freq_factor,
						    path, d)) ||
				    (rc = cfg_int(rs, "original_max_position_embeddings", false, 8192,
						  &hp->rope_orig_ctx, path, d)))
					goto done;
			} else {
				rc = diag_set(d, FT_EUNSUPP, path, 0, 0,
					      "config.json: rope_scaling type '%s' is not supported "
					      "(linear, llama3)", ty);
				goto done;
			}
		}
	}
	if (hp->n_embd % hp->n_head != 0 || hp->n_head % hp->n_head_kv != 0) {
		rc = diag_set(d, FT_EINVAL, path, 0, 0,
			      "config.json: inconsistent heads: hidden %d, heads %d, kv heads %d",
			      hp->n_embd, hp->n_head, hp->n_head_kv);
		goto done;
	}
	if ((rc = cfg_int(c, "head_dim", false, gemma3 ? 256 : hp->n_embd / hp->n_head,
			  &hp->head_dim, path, d)))
		goto done;
	if (gemma3) {
		float qpas = 256.0f;
		if ((rc = cfg_float(c, "query_pre_attn_scalar", 256.0, &qpas, path, d)))
			goto done;
		if (!(qpas > 0.0f)) {
			rc = diag_set(d, FT_EINVAL, path, 0, 0,
				      "config.json: 'query_pre_attn_scalar' must be positive");
			goto done;
		}
		hp->attn_scale = 1.0f / sqrtf(qpas);
	}
	const char *name = json_string_value(json_object_get(c, "_name_or_path"));
	snprintf(hp->name, sizeof hp->name, "%s", name && *name ? name : mt);
done:
	json_decref(c);
	return rc;
}

/* Maps a weight file, feeds the hash and parses it. */
static int load_shard(struct model_file *m, const char *file, struct sha256 *h, struct diag *d)
{
	int fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return diag_set(d, errno == ENOENT ? FT_EINVAL : FT_EIO, file, 0, 0,
				"cannot open weights: %s", strerror(errno));
	struct stat st;
	if (fstat(fd, &st) != 0 || st.st_size == 0) {
		close(fd);
		return diag_set(d, FT_EINVAL, file, 0, 0, "empty or unreadable weight file");
	}
	size_t n = (size_t)st.st_size;
	void *map = mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (map == MAP_FAILED)
		return diag_set(d, FT_EIO, file, 0, 0, "cannot map %zu bytes: %s", n, strerror(errno));
	sha256_update(h, map, n);
	int rc = safetensors_load_buffer(m, map, n, file, d);
	munmap(map, n);
	return rc;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && strcmp(s + a - b, suffix) == 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int load_index(struct model_file *m, const char *dir, const char *index, struct sha256 *h,
		      struct diag *d)
{
	char *text = NULL;
	size_t len;
	int rc = file_read_all(&text, &len, index, CONFIG_MAX, d);
	if (rc)
		return rc;
	json_error_t je;
	json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
	free(text);
	if (!root)
		return diag_set(d, FT_EINVAL, index, je.line > 0 ? je.line : 0,
				je.column > 0 ? je.column : 0, "%s", je.text);
	json_t *wm = json_object_get(root, "weight_map");
	const char **files = NULL;
	size_t nf = 0;
	if (!json_is_object(wm) || json_object_size(wm) == 0) {
		rc = diag_set(d, FT_EINVAL, index, 0, 0, "'weight_map' is missing or empty");
		goto done;
	}
	files = calloc(json_object_size(wm), sizeof *files);
	if (!files) {
		rc = diag_set(d, FT_ENOMEM, index, 0, 0, "out of memory");
		goto done;
	}
	const char *key;
	json_t *v;
	json_object_foreach(wm, key, v) {
		const char *f = json_string_value(v);
		if (!f || !*f || strchr(f, '/') || strstr(f, "..") || !ends_with(f, ".safetensors")) {
			rc = diag_set(d, FT_EINVAL, index, 0, 0,
				      "weight_map['%s']: shard must be a plain *.safetensors file name "
				      "in the same directory", key);
			goto done;
		}
		files[nf++] = f;
	}
	qsort(files, nf, sizeof *files, cmp_str);
	for (size_t i = 0; i < nf; i++) {
		if (i > 0 && strcmp(files[i], files[i - 1]) == 0)
			continue;
		char *p = path_join(dir, files[i]);
		if (!p) {
			rc = diag_set(d, FT_ENOMEM, index, 0, 0, "out of memory");
			goto done;
		}
		rc = load_shard(m, p, h, d);
		free(p);
		if (rc)
			goto done;
	}
	json_object_foreach(wm, key, v) {
		if (!model_file_tensor(m, key)) {
			rc = diag_set(d, FT_EINVAL, index, 0, 0,
				      "weight_map lists '%s' but shard '%s' does not hold it", key,
				      json_string_value(v));
			goto done;
		}
	}
done:
	free(files);
	json_decref(root);
	return rc;
}

static bool gpt2_mask_buffer(const char *name)
{
	return ends_with(name, ".attn.bias") || ends_with(name, ".attn.masked_bias");
}

/* GPT-2 checkpoints store names with or without "transformer."; mask buffers are dropped
 * and Conv1D weights transposed to (out, in). Two passes so that running out of memory
 * leaves m whole (every tensor once, each freed once by model_file_free): the first
 * replaces names and data in place (each replacement complete or not done), the second,
 * which cannot fail, drops the buffers. */
static int gpt2_fixup(struct model_file *m, const char *dir, struct diag *d)
{
	for (size_t i = 0; i < m->n_tensors; i++) {
		struct mf_tensor *t = &m->tensors[i];
		if (gpt2_mask_buffer(t->name))
			continue;
		if (strncmp(t->name, "transformer.", 12) != 0 && strcmp(t->name, "lm_head.weight") != 0) {
			size_t n = strlen(t->name) + 13;
			char *nn = malloc(n);
			if (!nn)
				return diag_set(d, FT_ENOMEM, dir, 0, 0, "out of memory");
			snprintf(nn, n, "transformer.%s", t->name);
			free(t->name);
			t->name = nn;
		}
		if (t->ndim == 2 && (ends_with(t->name, "attn.c_attn.weight") ||
				     ends_with(t->name, "attn.c_proj.weight") ||
				     ends_with(t->name, "mlp.c_fc.weight") ||
				     ends_with(t->name, "mlp.c_proj.weight"))) {
			/* elements of 4 (F32) or 2 (F16, BF16) bytes, moved as they are */
			size_t rows = (size_t)t->shape[0], cols = (size_t)t->shape[1];
			size_t es = t->numel ? t->raw_bytes / t->numel : 0;
			uint8_t *tr = malloc(t->raw_bytes ? t->raw_bytes : 1);
			if (!tr)
				return diag_set(d, FT_ENOMEM, dir, 0, 0, "out of memory");
			const uint8_t *src = t->raw;
			for (size_t r = 0; r < rows; r++)
				for (size_t c = 0; c < cols; c++)
					memcpy(tr + (c * rows + r) * es, src + (r * cols + c) * es, es);
			free(t->raw_owned);
			t->raw_owned = tr;
			t->raw = tr;
			t->shape[0] = (int64_t)cols;
			t->shape[1] = (int64_t)rows;
		}
	}
	size_t w = 0;
	for (size_t i = 0; i < m->n_tensors; i++) {
		struct mf_tensor *t = &m->tensors[i];
		if (gpt2_mask_buffer(t->name)) {
			free(t->name);
			free(t->data);
			free(t->raw_owned);
			continue;
		}
		m->tensors[w++] = *t;
	}
	m->n_tensors = w;
	return 0;
}

/* Gemma's RMSNorm multiplies by 1 + w; the engine holds the multiplier (as GGUF does), in
 * fp32 whatever the file's type. */
static int gemma3_fixup(struct model_file *m, const char *dir, struct diag *d)
{
	for (size_t i = 0; i < m->n_tensors; i++) {
		struct mf_tensor *t = &m->tensors[i];
		if (t->ndim != 1 || !ends_with(t->name, "norm.weight"))
			continue;
		float *f = malloc((t->numel ? t->numel : 1) * sizeof(float));
		if (!f)
			return diag_set(d, FT_ENOMEM, dir, 0, 0, "out of memory");
		dequant_to_f32(t->type, t->raw, f, t->numel);
		for (size_t j = 0; j < t->numel; j++)
			f[j] += 1.0f;
		free(t->raw_owned);
		t->raw_owned = f;
		t->raw = f;
		t->raw_bytes = t->numel * sizeof(float);
		t->type = GGML_F32;
	}
	return 0;
}

static int read_optional(char **out, const char *dir, const char *name, size_t max,
			 struct diag *d)
{
	*out = NULL;
	char *p = path_join(dir, name);
	if (!p)
		return diag_set(d, FT_ENOMEM, dir, 0, 0, "out of memory");
	int rc = 0;
	if (path_exists(p))
		rc = file_read_all(out, NULL, p, max, d);
	free(p);
	return rc;
}

/* chat_template.jinja is the template when tokenizer_config.json names none */
static int template_from_jinja(struct model_file *m, const char *dir, struct diag *d)
{
	if (m->tok.chat_template || !m->tok.chat_template_jinja)
		return 0;
	if (!(m->tok.chat_template = ft_strdup(m->tok.chat_template_jinja)))
		return diag_set(d, FT_ENOMEM, dir, 0, 0, "out of memory");
	return 0;
}

static int read_tokenizer_files(struct model_file *m, const char *dir, struct diag *d)
{
	int rc;
	if ((rc = read_optional(&m->tok.tokenizer_json, dir, "tokenizer.json", TOKENIZER_MAX, d)) ||
	    (rc = read_optional(&m->tok.tokenizer_config_json, dir, "tokenizer_config.json",
				CONFIG_MAX, d)) ||
	    (rc = read_optional(&m->tok.chat_template_jinja, dir, "chat_template.jinja",
				CONFIG_MAX, d)))
		return rc;
	if (!m->tok.tokenizer_config_json)
		return template_from_jinja(m, dir, d);
	/* integers as reals: transformers writes model_max_length as int(1e30) */
	json_error_t je;
	json_t *tc = json_loads(m->tok.tokenizer_config_json,
			       JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, &je);
	if (!tc) {
		char *p = path_join(dir, "tokenizer_config.json");
		rc = diag_set(d, FT_EINVAL, p ? p : dir, je.line > 0 ? je.line : 0,
			      je.column > 0 ? je.column : 0, "%s", je.text);
		free(p);
		return rc;
	}
	const char *ct = json_string_value(json_object_get(tc, "chat_template"));
	if (ct && !(m->tok.chat_template = ft_strdup(ct)))
		rc = diag_set(d, FT_ENOMEM, dir, 0, 0, "out of memory");
	json_decref(tc);
	return rc ? rc : template_from_jinja(m, dir, d);
}

int hf_dir_load_tokenizer(struct model_file *m, const char *dir, struct diag *d)
{
	m->is_gguf = false;
	int rc = read_tokenizer_files(m, dir, d);
	if (rc == 0 && !m->tok.tokenizer_json)
		rc = diag_set(d, FT_EINVAL, dir, 0, 0, "%s", TOKENIZER_FILES_MISSING);
	return rc;
}

int hf_dir_load(struct model_file *m, const char *dir, struct diag *d)
{
	char *cfg_path = path_join(dir, "config.json");
	char *single = path_join(dir, "model.safetensors");
	char *index = path_join(dir, "model.safetensors.index.json");
	char *text = NULL;
	size_t len;
	int rc = 0;
	m->is_gguf = false;
	if (!cfg_path || !single || !index) {
		rc = diag_set(d, FT_ENOMEM, dir, 0, 0, "out of memory");
		goto done;
	}
	if (!path_exists(cfg_path)) {
		rc = diag_set(d, FT_EINVAL, dir, 0, 0, "not a model directory: no config.json");
		goto done;
	}
	if ((rc = file_read_all(&text, &len, cfg_path, CONFIG_MAX, d)) != 0 ||
	    (rc = hf_config_parse(&m->hp, text, len, cfg_path, d)) != 0)
		goto done;
	struct sha256 h;
	sha256_init(&h);
	if (path_exists(single))
		rc = load_shard(m, single, &h, d);
	else if (path_exists(index))
		rc = load_index(m, dir, index, &h, d);
	else
		rc = diag_set(d, FT_EINVAL, dir, 0, 0,
			      "no model.safetensors or model.safetensors.index.json");
	if (rc)
		goto done;
	sha256_final_hex(&h, m->content_hash);
	/* duplicate names across shards */
	const char **names = malloc((m->n_tensors + 1) * sizeof *names);
	if (!names) {
		rc = diag_set(d, FT_ENOMEM, dir, 0, 0, "out of memory");
		goto done;
	}
	for (size_t i = 0; i < m->n_tensors; i++)
		names[i] = m->tensors[i].name;
	qsort(names, m->n_tensors, sizeof *names, cmp_str);
	for (size_t i = 1; i < m->n_tensors && !rc; i++)
		if (strcmp(names[i], names[i - 1]) == 0)
			rc = diag_set(d, FT_EINVAL, dir, 0, 0, "tensor '%s' is stored twice", names[i]);
	free(names);
	if (rc)
		goto done;
	if (m->hp.arch == ARCH_GPT2 && (rc = gpt2_fixup(m, dir, d)) != 0)
		goto done;
	if (m->hp.arch == ARCH_GEMMA3 && (rc = gemma3_fixup(m, dir, d)) != 0)
		goto done;
	const char *embd = m->hp.arch == ARCH_GPT2 ? "transformer.wte.weight" : "model.embed_tokens.weight";
	const struct mf_tensor *te = model_file_tensor(m, embd);
	if (!te || te->ndim != 2 || te->shape[1] != m->hp.n_embd) {
		rc = diag_set(d, FT_EINVAL, dir, 0, 0, "'%s' is missing or not (vocab, %d)", embd,
			      m->hp.n_embd);
		goto done;
	}
	if (!model_file_tensor(m, "lm_head.weight"))
		m->hp.tied_embeddings = true;
	if (m->hp.arch != ARCH_GPT2)
		m->hp.qkv_bias = m->hp.qkv_bias ||
				 model_file_tensor(m, "model.layers.0.self_attn.q_proj.bias") != NULL;
	rc = read_tokenizer_files(m, dir, d);
done:
	free(text);
	free(cfg_path);
	free(single);
	free(index);
	return rc;
}
