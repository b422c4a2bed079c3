/* tiny_model: writers for tiny random llama / Gemma 3 / GPT-2 models in GGUF and Hugging
 * Face form.
 * Values depend only on (seed, tensor name), so both files hold the same weights and
 * tiny_model_tensor can regenerate any of them. */
#include "tests/unit/tiny_model.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/native/io/dequant.h"
#include "common/rng.h"
#include "common/util.h"
#include "common/banned.h"

static const char *const merges[TINY_N_MERGES][2] = {
	{"\xc4\xa0", "t"}, {"h", "e"}, {"\xc4\xa0t", "he"}, {"i", "n"}, {"e", "r"}, {"a", "n"},
	{"\xc4\xa0", "a"}, {"o", "n"}, {"r", "e"}, {"\xc4\xa0", "s"}, {"l", "l"}, {"in", "g"}};
static const char *const specials[3] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
static const char chatml[] =
	"{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
	"message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
	"{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

void tiny_model_spec_default(struct tiny_model_spec *s, enum model_arch arch)
{
	memset(s, 0, sizeof *s);
	s->arch = arch;
	s->n_layer = 2;
	s->n_embd = 64;
	s->n_head = 4;
	s->n_head_kv = arch == ARCH_GPT2 ? 4 : 2;
	s->n_ff = arch == ARCH_GPT2 ? 256 : 128;
	s->n_ctx = arch == ARCH_GPT2 ? 32 : 64;
	s->tied = arch == ARCH_GPT2;
	s->rope_theta = 10000.0f;
	s->norm_eps = 1e-5f;
	s->seed = 1;
	s->gguf_type = GGML_F32;
	s->hf_dtype = 0;
	s->hf_shards = 1;
	if (arch == ARCH_GEMMA3) {
		s->n_layer = 3;
		s->n_embd = 48;
		s->n_head_kv = 1;
		s->n_ff = 96;
		s->head_dim = 16;
		s->tied = true;
		s->rope_theta = 1e6f;
		s->rope_theta_local = 1e4f;
		s->norm_eps = 1e-6f;
		s->sliding_window = 5;
		s->swa_pattern = 2;
		s->query_pre_attn_scalar = 16.0f;
	}
}

static int64_t head_dim(const struct tiny_model_spec *s)
{
	return s->head_dim ? s->head_dim : s->n_embd / s->n_head;
}

/* ---- the tensor list (HF names, PyTorch (out, in) shapes) ---------------------------- */

enum kind { K_WEIGHT, K_NORM, K_BIAS, K_GNORM /* Gemma: HF w, multiplier 1 + w */ };
struct tdef {
	char name[96];
	int ndim;
	int64_t shape[2];
	enum kind kind;
};

static size_t add(struct tdef *v, size_t n, enum kind k, int64_t a, int64_t b, const char *fmt,
		  int layer) FT_PRINTF(6, 0);
static size_t add(struct tdef *v, size_t n, enum kind k, int64_t a, int64_t b, const char *fmt,
		  int layer)
{
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
	snprintf(v[n].name, sizeof v[n].name, fmt, layer);
#pragma GCC diagnostic pop
	v[n].ndim = b ? 2 : 1;
	v[n].shape[0] = a;
	v[n].shape[1] = b;
	v[n].kind = k;
	return n + 1;
}

static size_t tensor_list(const struct tiny_model_spec *s, struct tdef **out)
{
	struct tdef *v = calloc((size_t)(16 * s->n_layer + 8), sizeof *v);
	size_t n = 0;
	int64_t C = s->n_embd, F = s->n_ff, V = TINY_N_VOCAB, hd = head_dim(s);
	int64_t kv = hd * s->n_head_kv;
	if (s->arch == ARCH_GEMMA3) {
		n = add(v, n, K_WEIGHT, V, C, "model.embed_tokens.weight", 0);
		for (int l = 0; l < s->n_layer; l++) {
			n = add(v, n, K_GNORM, C, 0, "model.layers.%d.input_layernorm.weight", l);
			n = add(v, n, K_WEIGHT, hd * s->n_head, C, "model.layers.%d.self_attn.q_proj.weight", l);
			n = add(v, n, K_WEIGHT, kv, C, "model.layers.%d.self_attn.k_proj.weight", l);
			n = add(v, n, K_WEIGHT, kv, C, "model.layers.%d.self_attn.v_proj.weight", l);
			n = add(v, n, K_GNORM, hd, 0, "model.layers.%d.self_attn.q_norm.weight", l);
			n = add(v, n, K_GNORM, hd, 0, "model.layers.%d.self_attn.k_norm.weight", l);
			n = add(v, n, K_WEIGHT, C, hd * s->n_head, "model.layers.%d.self_attn.o_proj.weight", l);
			n = add(v, n, K_GNORM, C, 0, "model.layers.%d.post_attention_layernorm.weight", l);
			n = add(v, n, K_GNORM, C, 0, "model.layers.%d.pre_feedforward_layernorm.weight", l);
			n = add(v, n, K_WEIGHT, F, C, "model.layers.%d.mlp.gate_proj.weight", l);
			n = add(v, n, K_WEIGHT, F, C, "model.layers.%d.mlp.up_proj.weight", l);
			n = add(v, n, K_WEIGHT, C, F, "model.layers.%d.mlp.down_proj.weight", l);
			n = add(v, n, K_GNORM, C, 0, "model.layers.%d.post_feedforward_layernorm.weight", l);
		}
		n = add(v, n, K_GNORM, C, 0, "model.norm.weight", 0);
	} else if (s->arch == ARCH_GPT2) {
		n = add(v, n, K_WEIGHT, V, C, "transformer.wte.weight", 0);
		n = add(v, n, K_WEIGHT, s->n_ctx, C, "transformer.wpe.weight", 0);
		for (int l = 0; l < s->n_layer; l++) {
			n = add(v, n, K_NORM, C, 0, "transformer.h.%d.ln_1.weight", l);
			n = add(v, n, K_BIAS, C, 0, "transformer.h.%d.ln_1.bias", l);
			n = add(v, n, K_WEIGHT, 3 * C, C, "transformer.h.%d.attn.c_attn.weight", l);
			n = add(v, n, K_BIAS, 3 * C, 0, "transformer.h.%d.attn.c_attn.bias", l);
			n = add(v, n, K_WEIGHT, C, C, "transformer.h.%d.attn.c_proj.weight", l);
			n = add(v, n, K_BIAS, C, 0, "transformer.h.%d.attn.c_proj.bias", l);
			n = add(v, n, K_NORM, C, 0, "transformer.h.%d.ln_2.weight", l);
			n = add(v, n, K_BIAS, C, 0, "transformer.h.%d.ln_2.bias", l);
			n = add(v, n, K_WEIGHT, F, C, "transformer.h.%d.mlp.c_fc.weight", l);
			n = add(v, n, K_BIAS, F, 0, "transformer.h.%d.mlp.c_fc.bias", l);
			n = add(v, n, K_WEIGHT, C, F, "transformer.h.%d.mlp.c_proj.weight", l);
			n = add(v, n, K_BIAS, C, 0, "transformer.h.%d.mlp.c_proj.bias", l);
		}
		n = add(v, n, K_NORM, C, 0, "transformer.ln_f.weight", 0);
		n = add(v, n, K_BIAS, C, 0, "transformer.ln_f.bias", 0);
	} else {
		n = add(v, n, K_WEIGHT, V, C, "model.embed_tokens.weight", 0);
		for (int l = 0; l < s->n_layer; l++) {
			n = add(v, n, K_NORM, C, 0, "model.layers.%d.input_layernorm.weight", l);
			n = add(v, n, K_WEIGHT, hd * s->n_head, C, "model.layers.%d.self_attn.q_proj.weight", l);
			n = add(v, n, K_WEIGHT, kv, C, "model.layers.%d.self_attn.k_proj.weight", l);
			n = add(v, n, K_WEIGHT, kv, C, "model.layers.%d.self_attn.v_proj.weight", l);
			if (s->qkv_bias) {
				n = add(v, n, K_BIAS, hd * s->n_head, 0, "model.layers.%d.self_attn.q_proj.bias", l);
				n = add(v, n, K_BIAS, kv, 0, "model.layers.%d.self_attn.k_proj.bias", l);
				n = add(v, n, K_BIAS, kv, 0, "model.layers.%d.self_attn.v_proj.bias", l);
			}
			n = add(v, n, K_WEIGHT, C, hd * s->n_head, "model.layers.%d.self_attn.o_proj.weight", l);
			n = add(v, n, K_NORM, C, 0, "model.layers.%d.post_attention_layernorm.weight", l);
			n = add(v, n, K_WEIGHT, F, C, "model.layers.%d.mlp.gate_proj.weight", l);
			n = add(v, n, K_WEIGHT, F, C, "model.layers.%d.mlp.up_proj.weight", l);
			n = add(v, n, K_WEIGHT, C, F, "model.layers.%d.mlp.down_proj.weight", l);
		}
		n = add(v, n, K_NORM, C, 0, "model.norm.weight", 0);
		if (!s->tied)
			n = add(v, n, K_WEIGHT, V, C, "lm_head.weight", 0);
	}
	*out = v;
	return n;
}

static float *values(const struct tiny_model_spec *s, const struct tdef *t)
{
	size_t n = (size_t)t->shape[0] * (size_t)(t->ndim == 2 ? t->shape[1] : 1);
	float *v = malloc(n * sizeof *v);
	struct rng r;
	uint64_t h = 1469598103934665603ull;
	for (const char *p = t->name; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ull;
	rng_seed(&r, s->seed, h);
	for (size_t i = 0; i < n; i++) {
		double u = rng_uniform(&r) - 0.5;
		v[i] = (float)(t->kind == K_NORM    ? 1.0 + 0.2 * u
			       : t->kind == K_GNORM ? 0.6 * u
			       : t->kind == K_BIAS  ? 0.1 * u
						    : 0.2 * u);
	}
	return v;
}

float *tiny_model_tensor(const struct tiny_model_spec *s, const char *hf_name, size_t *out_numel)
{
	struct tdef *list;
	size_t n = tensor_list(s, &list);
	float *v = NULL;
	for (size_t i = 0; i < n; i++)
		if (strcmp(list[i].name, hf_name) == 0) {
			v = values(s, &list[i]);
			*out_numel = (size_t)list[i].shape[0] * (size_t)(list[i].ndim == 2 ? list[i].shape[1] : 1);
		}
	free(list);
	return v;
}

/* ---- vocabulary ---------------------------------------------------------------------- */

/* Token text of every id (byte-level form), caller frees each and the array. */
static char **vocab(void)
{
	char **t = calloc(TINY_N_VOCAB, sizeof *t);
	for (int i = 0; i < 3; i++)
		t[i] = ft_strdup(specials[i]);
	int extra = 0;
	for (int b = 0; b < 256; b++) {
		bool keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
		unsigned cp = keep ? (unsigned)b : 256u + (unsigned)extra++;
		char buf[4] = {0};
		if (cp < 0x80) {
			buf[0] = (char)cp;
		} else {
			buf[0] = (char)(0xc0 | (cp >> 6));
			buf[1] = (char)(0x80 | (cp & 0x3f));
		}
		t[3 + b] = ft_strdup(buf);
	}
	for (int i = 0; i < TINY_N_MERGES; i++) {
		size_t a = strlen(merges[i][0]), b = strlen(merges[i][1]);
		t[259 + i] = malloc(a + b + 1);
		memcpy(t[259 + i], merges[i][0], a);
		memcpy(t[259 + i] + a, merges[i][1], b + 1);
	}
	return t;
}

static void free_vocab(char **t)
{
	for (int i = 0; i < TINY_N_VOCAB; i++)
		free(t[i]);
	free(t);
}

/* ---- GGUF ---------------------------------------------------------------------------- */

struct wb {
	struct strbuf sb;
	int err;
	uint64_t nkv; /* key-value pairs written (patched into the header) */
};

static void put(struct wb *w, const void *p, size_t n)
{
	if (!w->err)
		w->err = strbuf_append(&w->sb, p, n);
}
static void put_u32(struct wb *w, uint32_t v)
{
	uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
	put(w, b, 4);
}
static void put_u64(struct wb *w, uint64_t v)
{
	put_u32(w, (uint32_t)v);
	put_u32(w, (uint32_t)(v >> 32));
}
static void put_str(struct wb *w, const char *s)
{
	put_u64(w, strlen(s));
	put(w, s, strlen(s));
}
static void kv_u32(struct wb *w, const char *k, uint32_t v)
{
	w->nkv++;
	put_str(w, k);
	put_u32(w, 4);
	put_u32(w, v);
}
static void kv_f32(struct wb *w, const char *k, float v)
{
	w->nkv++;
	uint32_t b;
	memcpy(&b, &v, 4);
	put_str(w, k);
	put_u32(w, 6);
	put_u32(w, b);
}
static void kv_str(struct wb *w, const char *k, const char *v)
{
	w->nkv++;
	put_str(w, k);
	put_u32(w, 8);
	put_str(w, v);
}
static void kv_bool(struct wb *w, const char *k, bool v)
{
	w->nkv++;
	uint8_t b = v;
	put_str(w, k);
	put_u32(w, 7);
	put(w, &b, 1);
}

/* GGUF name of an HF name; llama.cpp's tensor naming. */
static void gguf_name(char *out, size_t n, const char *hf, enum model_arch arch)
{
	static const char *const llama[][2] = {
		{"input_layernorm", "attn_norm"}, {"self_attn.q_proj", "attn_q"},
		{"self_attn.k_proj", "attn_k"}, {"self_attn.v_proj", "attn_v"},
		{"self_attn.o_proj", "attn_output"}, {"post_attention_layernorm", "ffn_norm"},
		{"mlp.gate_proj", "ffn_gate"}, {"mlp.up_proj", "ffn_up"}, {"mlp.down_proj", "ffn_down"}};
	static const char *const gemma3[][2] = {
		{"input_layernorm", "attn_norm"}, {"self_attn.q_proj", "attn_q"},
		{"self_attn.k_proj", "attn_k"}, {"self_attn.v_proj", "attn_v"},
		{"self_attn.q_norm", "attn_q_norm"}, {"self_attn.k_norm", "attn_k_norm"},
		{"self_attn.o_proj", "attn_output"}, {"post_attention_layernorm", "post_attention_norm"},
		{"pre_feedforward_layernorm", "ffn_norm"}, {"post_feedforward_layernorm", "post_ffw_norm"},
		{"mlp.gate_proj", "ffn_gate"}, {"mlp.up_proj", "ffn_up"}, {"mlp.down_proj", "ffn_down"}};
	static const char *const gpt2[][2] = {
		{"ln_1", "attn_norm"}, {"attn.c_attn", "attn_qkv"}, {"attn.c_proj", "attn_output"},
		{"ln_2", "ffn_norm"}, {"mlp.c_fc", "ffn_up"}, {"mlp.c_proj", "ffn_down"}};
	static const char *const top[][2] = {
		{"model.embed_tokens", "token_embd"}, {"model.norm", "output_norm"}, {"lm_head", "output"},
		{"transformer.wte", "token_embd"}, {"transformer.wpe", "position_embd"},
		{"transformer.ln_f", "output_norm"}};
	const char *suffix = strrchr(hf, '.');
	size_t stem = (size_t)(suffix - hf);
	for (size_t i = 0; i < FT_ARRAY_LEN(top); i++)
		if (strlen(top[i][0]) == stem && strncmp(hf, top[i][0], stem) == 0) {
			snprintf(out, n, "%s%s", top[i][1], suffix);
			return;
		}
	const char *prefix = arch == ARCH_GPT2 ? "transformer.h." : "model.layers.";
	char *end;
	long layer = strtol(hf + strlen(prefix), &end, 10);
	const char *part = end + 1;
	size_t plen = (size_t)(suffix - part);
	size_t nm = arch == ARCH_GPT2     ? FT_ARRAY_LEN(gpt2)
		    : arch == ARCH_GEMMA3 ? FT_ARRAY_LEN(gemma3)
					  : FT_ARRAY_LEN(llama);
	for (size_t i = 0; i < nm; i++) {
		const char *const *m = arch == ARCH_GPT2 ? gpt2[i] : arch == ARCH_GEMMA3 ? gemma3[i] : llama[i];
		if (strlen(m[0]) == plen && strncmp(part, m[0], plen) == 0) {
			snprintf(out, n, "blk.%ld.%s%s", layer, m[1], suffix);
			return;
		}
	}
	snprintf(out, n, "%s", hf);
}

/* llama.cpp's permutation of q/k rows: per head, rows (half j, index i) -> (i, j). */
static void permute_rows(float *v, int64_t rows, int64_t cols, int heads)
{
	int64_t hd = rows / heads;
	float *tmp = malloc((size_t)(rows * cols) * sizeof *tmp);
	for (int h = 0; h < heads; h++)
		for (int64_t i = 0; i < hd / 2; i++)
			for (int j = 0; j < 2; j++)
				memcpy(tmp + (h * hd + 2 * i + j) * cols, v + (h * hd + j * (hd / 2) + i) * cols,
				       (size_t)cols * sizeof *v);
	memcpy(v, tmp, (size_t)(rows * cols) * sizeof *v);
	free(tmp);
}

/* Encodes n fp32 values as GGML type; returns bytes written into out (sized by caller). */
static size_t encode(uint32_t type, const float *v, size_t n, uint8_t *out)
{
	if (type == GGML_F32) {
		memcpy(out, v, n * 4);
		return n * 4;
	}
	if (type == GGML_F16 || type == GGML_BF16) {
		for (size_t i = 0; i < n; i++) {
			uint16_t h;
			if (type == GGML_F16) {
				h = f32_to_fp16(v[i]);
			} else {
				uint32_t b;
				memcpy(&b, &v[i], 4);
				h = (uint16_t)((b + 0x7fff + ((b >> 16) & 1)) >> 16);
			}
			out[2 * i] = (uint8_t)h;
			out[2 * i + 1] = (uint8_t)(h >> 8);
		}
		return n * 2;
	}
	/* Q8_0: per 32 values, scale = max|x| / 127 */
	size_t o = 0;
	for (size_t b = 0; b < n / 32; b++) {
		float amax = 0;
		for (int j = 0; j < 32; j++)
			amax = fabsf(v[b * 32 + j]) > amax ? fabsf(v[b * 32 + j]) : amax;
		float dsc = amax / 127.0f, id = dsc ? 1.0f / dsc : 0;
		uint16_t h = f32_to_fp16(dsc);
		out[o++] = (uint8_t)h;
		out[o++] = (uint8_t)(h >> 8);
		for (int j = 0; j < 32; j++)
			out[o++] = (uint8_t)(int8_t)lrintf(v[b * 32 + j] * id);
	}
	return o;
}

int tiny_model_write_gguf(const char *path, const struct tiny_model_spec *s, struct diag *d)
{
	struct tdef *list;
	size_t nt = tensor_list(s, &list);
	const char *arch = s->arch == ARCH_GPT2 ? "gpt2" : s->arch == ARCH_GEMMA3 ? "gemma3" : "llama";
	struct wb w = {0};
	char key[128];
	char **toks = vocab();
	put_u32(&w, 0x46554747u);
	put_u32(&w, 3);
	put_u64(&w, nt);
	put_u64(&w, 0); /* key-value count, patched below */
	kv_str(&w, "general.architecture", arch);
	kv_str(&w, "general.name", "tiny");
	kv_u32(&w, "general.alignment", 32);
#define KA(suffix) (snprintf(key, sizeof key, "%s.%s", arch, suffix), key)
	kv_u32(&w, KA("block_count"), (uint32_t)s->n_layer);
	kv_u32(&w, KA("context_length"), (uint32_t)s->n_ctx);
	kv_u32(&w, KA("embedding_length"), (uint32_t)s->n_embd);
	kv_u32(&w, KA("feed_forward_length"), (uint32_t)s->n_ff);
	kv_u32(&w, KA("attention.head_count"), (uint32_t)s->n_head);
	kv_u32(&w, KA("vocab_size"), TINY_N_VOCAB);
	if (s->arch == ARCH_GPT2) {
		kv_f32(&w, KA("attention.layer_norm_epsilon"), s->norm_eps);
	} else {
		kv_u32(&w, KA("attention.head_count_kv"), (uint32_t)s->n_head_kv);
		kv_f32(&w, KA("attention.layer_norm_rms_epsilon"), s->norm_eps);
		kv_f32(&w, KA("rope.freq_base"), s->rope_theta);
		kv_u32(&w, KA("rope.dimension_count"), (uint32_t)head_dim(s));
	}
	if (s->arch == ARCH_GEMMA3) {
		kv_u32(&w, KA("attention.key_length"), (uint32_t)head_dim(s));
		kv_u32(&w, KA("attention.value_length"),
		       (uint32_t)(s->value_length ? s->value_length : head_dim(s)));
		if (s->sliding_window > 0)
			kv_u32(&w, KA("attention.sliding_window"), (uint32_t)s->sliding_window);
		if (s->swa_layers) {
			w.nkv++;
			put_str(&w, KA("attention.sliding_window_pattern"));
			put_u32(&w, 9);
			put_u32(&w, 7);
			put_u64(&w, (uint64_t)s->n_layer);
			for (int l = 0; l < s->n_layer; l++) {
				uint8_t b = s->swa_layers[l];
				put(&w, &b, 1);
			}
		} else if (s->swa_pattern != 6) { /* llama.cpp's default period */
			kv_u32(&w, KA("attention.sliding_window_pattern"), (uint32_t)s->swa_pattern);
		}
		if (s->final_softcap > 0)
			kv_f32(&w, KA("final_logit_softcapping"), s->final_softcap);
		if (s->rope_theta_local != 10000.0f)
			kv_f32(&w, KA("rope.freq_base_swa"), s->rope_theta_local);
	}
#undef KA
	kv_str(&w, "tokenizer.ggml.model", "gpt2");
	kv_str(&w, "tokenizer.ggml.pre", "gpt2");
	w.nkv += 3; /* the three arrays written by hand */
	put_str(&w, "tokenizer.ggml.tokens");
	put_u32(&w, 9);
	put_u32(&w, 8);
	put_u64(&w, TINY_N_VOCAB);
	for (int i = 0; i < TINY_N_VOCAB; i++)
		put_str(&w, toks[i]);
	put_str(&w, "tokenizer.ggml.token_type");
	put_u32(&w, 9);
	put_u32(&w, 5);
	put_u64(&w, TINY_N_VOCAB);
	for (int i = 0; i < TINY_N_VOCAB; i++)
		put_u32(&w, i < 3 ? 3 : 1);
	put_str(&w, "tokenizer.ggml.merges");
	put_u32(&w, 9);
	put_u32(&w, 8);
	put_u64(&w, TINY_N_MERGES);
	for (int i = 0; i < TINY_N_MERGES; i++) {
		char m[32];
		snprintf(m, sizeof m, "%s %s", merges[i][0], merges[i][1]);
		put_str(&w, m);
	}
	kv_u32(&w, "tokenizer.ggml.bos_token_id", 1);
	kv_u32(&w, "tokenizer.ggml.eos_token_id", 2);
	kv_u32(&w, "tokenizer.ggml.padding_token_id", 0);
	kv_bool(&w, "tokenizer.ggml.add_bos_token", false);
	kv_str(&w, "tokenizer.chat_template", chatml);
	for (int i = 0; i < 8 && !w.err; i++)
		w.sb.buf[16 + i] = (char)(w.nkv >> (8 * i));
	/* tensor infos, then aligned data */
	size_t *sizes = calloc(nt, sizeof *sizes);
	uint64_t off = 0;
	for (size_t i = 0; i < nt; i++) {
		char gn[128];
		gguf_name(gn, sizeof gn, list[i].name, s->arch);
		put_str(&w, gn);
		put_u32(&w, (uint32_t)list[i].ndim);
		for (int j = list[i].ndim - 1; j >= 0; j--)
			put_u64(&w, (uint64_t)list[i].shape[j]);
		uint32_t type = list[i].ndim == 2 ? s->gguf_type : GGML_F32;
		const struct ggml_type_desc *td = ggml_type_find(type);
		size_t numel = (size_t)list[i].shape[0] * (size_t)(list[i].ndim == 2 ? list[i].shape[1] : 1);
		sizes[i] = numel / td->block_elems * td->block_bytes;
		put_u32(&w, type);
		put_u64(&w, off);
		off += (sizes[i] + 31) / 32 * 32;
	}
	static const uint8_t zero[32];
	put(&w, zero, (32 - w.sb.len % 32) % 32);
	for (size_t i = 0; i < nt && !w.err; i++) {
		float *v = values(s, &list[i]);
		int64_t rows = list[i].shape[0], cols = list[i].ndim == 2 ? list[i].shape[1] : 1;
		bool q = strstr(list[i].name, "q_proj") != NULL, k = strstr(list[i].name, "k_proj") != NULL;
		if (s->arch == ARCH_LLAMA && (q || k))
			permute_rows(v, rows, cols, q ? s->n_head : s->n_head_kv);
		if (list[i].kind == K_GNORM) /* llama.cpp's converter stores 1 + w */
			for (int64_t j = 0; j < rows; j++)
				v[j] += 1.0f;
		uint8_t *buf = malloc(sizes[i] + 32);
		uint32_t type = list[i].ndim == 2 ? s->gguf_type : GGML_F32;
		size_t nb = encode(type, v, (size_t)(rows * cols), buf);
		put(&w, buf, nb);
		put(&w, zero, (32 - nb % 32) % 32);
		free(buf);
		free(v);
	}
	int rc = w.err ? diag_set(d, FT_ENOMEM, path, 0, 0, "out of memory")
		       : file_write_atomic(path, w.sb.buf, w.sb.len, d);
	strbuf_free(&w.sb);
	free(sizes);
	free(list);
	free_vocab(toks);
	return rc;
}

/* ---- Hugging Face directory ---------------------------------------------------------- */

static bool is_conv1d(const char *name)
{
	static const char *const sfx[] = {"attn.c_attn.weight", "attn.c_proj.weight",
					  "mlp.c_fc.weight", "mlp.c_proj.weight"};
	size_t n = strlen(name);
	for (size_t i = 0; i < FT_ARRAY_LEN(sfx); i++)
		if (n >= strlen(sfx[i]) && strcmp(name + n - strlen(sfx[i]), sfx[i]) == 0)
			return true;
	return false;
}

static int write_json(const char *dir, const char *name, json_t *j, struct diag *d)
{
	char *text = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
	char *p = path_join(dir, name);
	int rc = text && p ? file_write_atomic(p, text, strlen(text), d)
			   : diag_set(d, FT_ENOMEM, dir, 0, 0, "out of memory");
	free(text);
	free(p);
	json_decref(j);
	return rc;
}

static int write_safetensors(const char *path, const struct tiny_model_spec *s,
			     const struct tdef *list, size_t lo, size_t hi, struct diag *d)
{
	static const char *const dt[] = {"F32", "F16", "BF16"};
	static const uint32_t gt[] = {GGML_F32, GGML_F16, GGML_BF16};
	size_t esz = s->hf_dtype == 0 ? 4 : 2;
	json_t *hdr = json_object();
	json_object_set_new(hdr, "__metadata__", json_pack("{s:s}", "format", "pt"));
	size_t off = 0;
	for (size_t i = lo; i < hi; i++) {
		size_t numel = (size_t)list[i].shape[0] * (size_t)(list[i].ndim == 2 ? list[i].shape[1] : 1);
		json_t *shape = json_array();
		bool tr = s->arch == ARCH_GPT2 && is_conv1d(list[i].name);
		for (int j = 0; j < list[i].ndim; j++)
			json_array_append_new(shape, json_integer(list[i].shape[tr ? 1 - j : j]));
		/* GPT-2 HF checkpoints name tensors without "transformer." */
		const char *name = s->arch == ARCH_GPT2 && strncmp(list[i].name, "transformer.", 12) == 0
					   ? list[i].name + 12 : list[i].name;
		json_object_set_new(hdr, name, json_pack("{s:s,s:o,s:[I,I]}", "dtype", dt[s->hf_dtype],
							 "shape", shape, "data_offsets", (json_int_t)off,
							 (json_int_t)(off + numel * esz)));
		off += numel * esz;
	}
	char *htext = json_dumps(hdr, JSON_COMPACT);
	json_decref(hdr);
	size_t hlen = (strlen(htext) + 7) / 8 * 8;
	struct wb w = {0};
	put_u64(&w, hlen);
	put(&w, htext, strlen(htext));
	put(&w, "        ", hlen - strlen(htext));
	free(htext);
	for (size_t i = lo; i < hi && !w.err; i++) {
		float *v = values(s, &list[i]);
		int64_t rows = list[i].shape[0], cols = list[i].ndim == 2 ? list[i].shape[1] : 1;
		size_t numel = (size_t)(rows * cols);
		if (s->arch == ARCH_GPT2 && is_conv1d(list[i].name)) { /* store (in, out) */
			float *t = malloc(numel * sizeof *t);
			for (int64_t r = 0; r < rows; r++)
				for (int64_t c = 0; c < cols; c++)
					t[c * rows + r] = v[r * cols + c];
			free(v);
			v = t;
		}
		uint8_t *buf = malloc(numel * 4);
		size_t nb = encode(gt[s->hf_dtype], v, numel, buf);
		put(&w, buf, nb);
		free(buf);
		free(v);
	}
	int rc = w.err ? diag_set(d, FT_ENOMEM, path, 0, 0, "out of memory")
		       : file_write_atomic(path, w.sb.buf, w.sb.len, d);
	strbuf_free(&w.sb);
	return rc;
}

int tiny_model_write_hf(const char *dir, const struct tiny_model_spec *s, struct diag *d)
{
	int rc = dir_make_all(dir, d);
	if (rc)
		return rc;
	json_t *cfg;
	if (s->arch == ARCH_GPT2)
		cfg = json_pack("{s:s,s:[s],s:i,s:i,s:i,s:i,s:i,s:n,s:f,s:s}", "model_type", "gpt2",
				"architectures", "GPT2LMHeadModel", "n_layer", s->n_layer, "n_embd",
				s->n_embd, "n_head", s->n_head, "vocab_size", TINY_N_VOCAB,
				"n_positions", s->n_ctx, "n_inner", "layer_norm_epsilon",
				(double)s->norm_eps, "_name_or_path", "tiny-gpt2");
	else if (s->arch == ARCH_GEMMA3)
		cfg = json_pack("{s:s,s:[s],s:i,s:i,s:i,s:i,s:I,s:i,s:i,s:i,s:f,s:f,s:f,s:b,s:b,s:s,"
				"s:i,s:i,s:i,s:i,s:i,s:f,s:s,s:n,s:n}",
				"model_type", "gemma3_text", "architectures", "Gemma3ForCausalLM",
				"num_hidden_layers", s->n_layer, "hidden_size", s->n_embd,
				"num_attention_heads", s->n_head, "num_key_value_heads", s->n_head_kv,
				"head_dim", (json_int_t)head_dim(s), "intermediate_size", s->n_ff,
				"vocab_size", TINY_N_VOCAB, "max_position_embeddings", s->n_ctx,
				"rms_norm_eps", (double)s->norm_eps, "rope_theta", (double)s->rope_theta,
				"rope_local_base_freq", (double)s->rope_theta_local,
				"tie_word_embeddings", 1, "attention_bias", 0, "_name_or_path",
				"tiny-gemma3", "bos_token_id", 1, "eos_token_id", 2, "pad_token_id", 0,
				"sliding_window", s->sliding_window, "sliding_window_pattern",
				s->swa_pattern, "query_pre_attn_scalar",
				(double)s->query_pre_attn_scalar, "hidden_activation",
				"gelu_pytorch_tanh", "final_logit_softcapping", "attn_logit_softcapping");
	else
		cfg = json_pack("{s:s,s:[s],s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:f,s:f,s:b,s:b,s:s,s:i,s:i}",
				"model_type", "llama", "architectures", "LlamaForCausalLM",
				"num_hidden_layers", s->n_layer, "hidden_size", s->n_embd,
				"num_attention_heads", s->n_head, "num_key_value_heads", s->n_head_kv,
				"intermediate_size", s->n_ff, "vocab_size", TINY_N_VOCAB,
				"max_position_embeddings", s->n_ctx, "rms_norm_eps", (double)s->norm_eps,
				"rope_theta", (double)s->rope_theta, "tie_word_embeddings", s->tied,
				"attention_bias", s->qkv_bias, "_name_or_path", "tiny-llama",
				"bos_token_id", 1, "eos_token_id", 2);
	if (!cfg)
		return diag_set(d, FT_ENOMEM, dir, 0, 0, "cannot build config.json");
	if (s->arch == ARCH_GPT2)
		json_object_set_new(cfg, "n_inner", json_integer(s->n_ff));
	if ((rc = write_json(dir, "config.json", cfg, d)) != 0)
		return rc;
	/* weights */
	struct tdef *list;
	size_t nt = tensor_list(s, &list);
	int shards = s->hf_shards < 1 ? 1 : s->hf_shards;
	if (shards == 1) {
		char *p = path_join(dir, "model.safetensors");
		rc = write_safetensors(p, s, list, 0, nt, d);
		free(p);
	} else {
		json_t *wm = json_object();
		for (int k = 0; k < shards && !rc; k++) {
			size_t lo = nt * (size_t)k / (size_t)shards, hi = nt * (size_t)(k + 1) / (size_t)shards;
			char name[64];
			snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", k + 1, shards);
			char *p = path_join(dir, name);
			rc = write_safetensors(p, s, list, lo, hi, d);
			free(p);
			for (size_t i = lo; i < hi; i++) {
				const char *n = s->arch == ARCH_GPT2 ? list[i].name + 12 : list[i].name;
				json_object_set_new(wm, n, json_string(name));
			}
		}
		json_t *idx = json_pack("{s:{},s:o}", "metadata", "weight_map", wm);
		if (!rc)
			rc = write_json(dir, "model.safetensors.index.json", idx, d);
		else
			json_decref(idx);
	}
	free(list);
	if (rc)
		return rc;
	/* tokenizer.json and tokenizer_config.json */
	char **toks = vocab();
	json_t *vj = json_object(), *mj = json_array(), *added = json_array();
	for (int i = 0; i < TINY_N_VOCAB; i++)
		json_object_set_new(vj, toks[i], json_integer(i));
	for (int i = 0; i < TINY_N_MERGES; i++)
		json_array_append_new(mj, json_pack("[s,s]", merges[i][0], merges[i][1]));
	for (int i = 0; i < 3; i++)
		json_array_append_new(added, json_pack("{s:i,s:s,s:b,s:b,s:b,s:b,s:b}", "id", i,
						       "content", specials[i], "single_word", 0, "lstrip", 0,
						       "rstrip", 0, "normalized", 0, "special", 1));
	json_t *tj = json_pack("{s:s,s:n,s:o,s:n,s:{s:s,s:b,s:b,s:b},s:n,s:{s:s,s:b,s:b,s:b},"
			       "s:{s:s,s:n,s:n,s:n,s:n,s:b,s:b,s:b,s:o,s:o}}",
			       "version", "1.0", "truncation", "added_tokens", added, "normalizer",
			       "pre_tokenizer", "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 1,
			       "use_regex", 1, "post_processor", "decoder", "type", "ByteLevel",
			       "add_prefix_space", 1, "trim_offsets", 1, "use_regex", 1, "model", "type", "BPE",
			       "dropout", "unk_token", "continuing_subword_prefix", "end_of_word_suffix",
			       "fuse_unk", 0, "byte_fallback", 0, "ignore_merges", 0, "vocab", vj,
			       "merges", mj);
	free_vocab(toks);
	if (!tj)
		return diag_set(d, FT_ENOMEM, dir, 0, 0, "cannot build tokenizer.json");
	if ((rc = write_json(dir, "tokenizer.json", tj, d)) != 0)
		return rc;
	json_t *tc = json_pack("{s:s,s:s,s:s,s:s,s:b}", "bos_token", "<|im_start|>", "eos_token",
			       "<|im_end|>", "pad_token", "<|endoftext|>", "chat_template", chatml,
			       "add_bos_token", 0);
	return write_json(dir, "tokenizer_config.json", tc, d);
}
