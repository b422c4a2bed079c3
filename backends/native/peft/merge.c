/* merge: LoRA merge and merged-model writers (see merge.h). Tensors are written in the
 * order the base file listed them; only q/k rows (llama), Conv1D layouts (GPT-2) and
 * Gemma's norm weights (1 + w in the engine and in GGUF, w in Hugging Face files) change
 * on the way out. */
#include "backends/native/peft/merge.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/native/ops/ops_math.h"
#include "backends/native/peft/adapter.h"
#include "backends/native/peft/gguf_write.h"
#include "backends/native/peft/st_write.h"
#include "common/util.h"
#include "common/banned.h"

static struct mf_tensor *find(struct model_file *mf, const char *name)
{
	for (size_t i = 0; i < mf->n_tensors; i++)
		if (strcmp(mf->tensors[i].name, name) == 0)
			return &mf->tensors[i];
	return NULL;
}

/* IA3: W's rows (and the bias) times l (out, 1), or W's columns times l (1, in) for a
 * feed-forward module, as PEFT's merge. */
static int merge_ia3(struct model_file *mf, const struct lora_adapter *a, struct diag *d)
{
	for (size_t i = 0; i < a->n; i++) {
		const struct lora_tensor *L = &a->t[i];
		const char *p = strstr(L->name, ".ia3_l");
		if (!p || p[6] != 0)
			continue;
		char wname[512], bname[512];
		if ((size_t)(p - L->name) + 8 > sizeof(wname))
			return diag_set(d, FT_EINVAL, "", 0, 0, "name too long: %s", L->name);
		snprintf(wname, sizeof(wname), "%.*s.weight", (int)(p - L->name), L->name);
		snprintf(bname, sizeof(bname), "%.*s.bias", (int)(p - L->name), L->name);
		struct mf_tensor *W = find(mf, wname), *Bt = find(mf, bname);
		if (!W || W->ndim != 2)
			return diag_set(d, FT_EINVAL, "", 0, 0,
					"adapter module %s does not match the base model", wname);
		if (!W->data || (Bt && !Bt->data))
			return diag_set(d, FT_EINVAL, "", 0, 0,
					"tensor '%s' has no fp32 copy (model_file_dequantize)",
					W->data ? bname : wname);
		const int64_t out = W->shape[0], inn = W->shape[1];
		bool rows = L->rows == out && L->cols == 1, cols = L->rows == 1 && L->cols == inn;
		if (!rows && !cols)
			return diag_set(d, FT_EINVAL, "", 0, 0,
					"%s is (%lld, %lld); %s is (%lld, %lld)", L->name,
					(long long)L->rows, (long long)L->cols, wname, (long long)out,
					(long long)inn);
		for (int64_t o = 0; o < out; o++)
			for (int64_t j = 0; j < inn; j++)
				W->data[o * inn + j] *= rows ? L->data[o] : L->data[j];
		if (rows && Bt && (int64_t)Bt->numel == out)
			for (int64_t o = 0; o < out; o++)
				Bt->data[o] *= L->data[o];
	}
	return 0;
}

int merge_lora(struct model_file *mf, const struct lora_adapter *a, struct diag *d)
{
	const struct lora_info *in = &a->info;
	if (in->prefix)
		return diag_set(d, FT_EINVAL, "", 0, 0,
				"a prefix-tuning adapter does not merge into the weights (it adds "
				"attention positions); export --format peft");
	if (in->ia3)
		return merge_ia3(mf, a, d);
	double s = in->rslora ? in->alpha / sqrt((double)in->rank) : in->alpha / in->rank;
	for (size_t i = 0; i < a->n; i++) {
		const struct lora_tensor *A = &a->t[i];
		char *p = strstr(A->name, ".lora_A.weight");
		if (!p || p[14] != 0)
			continue;
		size_t base_len = (size_t)(p - A->name);
		char bname[512], wname[512];
		if (base_len + 16 > sizeof(bname))
			return diag_set(d, FT_EINVAL, "", 0, 0, "name too long: %s", A->name);
		snprintf(bname, sizeof(bname), "%.*s.lora_B.weight", (int)base_len, A->name);
		snprintf(wname, sizeof(wname), "%.*s.weight", (int)base_len, A->name);
		const struct lora_tensor *B = NULL;
		for (size_t k = 0; k < a->n; k++)
			if (strcmp(a->t[k].name, bname) == 0)
				B = &a->t[k];
		struct mf_tensor *W = find(mf, wname);
		if (!B || !W || W->ndim != 2 || W->shape[0] != B->rows || W->shape[1] != A->cols ||
		    B->cols != A->rows)
			return diag_set(d, FT_EINVAL, "", 0, 0,
					"adapter module %s does not match the base model "
					"(missing lora_B, missing weight or different shape)",
					wname);
		if (!W->data)
			return diag_set(d, FT_EINVAL, "", 0, 0,
					"tensor '%s' has no fp32 copy (model_file_dequantize)", wname);
		const int64_t out = B->rows, r = A->rows, inn = A->cols;
		const struct lora_tensor *M = NULL;
		if (in->use_dora) {
			char mname[512];
			snprintf(mname, sizeof(mname), "%.*s.lora_magnitude_vector", (int)base_len,
				 A->name);
			for (size_t k = 0; k < a->n; k++)
				if (strcmp(a->t[k].name, mname) == 0)
					M = &a->t[k];
			if (!M || M->rows != out || M->cols != 1)
				return diag_set(d, FT_EINVAL, "", 0, 0,
						"DoRA adapter module %s has no magnitude vector of %lld "
						"rows", wname, (long long)out);
		}
#pragma omp parallel for schedule(static)
		for (int64_t o = 0; o < out; o++) {
			float *w = W->data + (size_t)o * (size_t)inn;
			for (int64_t k = 0; k < r; k++) {
				float b = (float)(s * B->data[(size_t)o * (size_t)r + (size_t)k]);
				const float *ar = A->data + (size_t)k * (size_t)inn;
				for (int64_t j = 0; j < inn; j++)
					w[j] += b * ar[j];
			}
			if (M) {
				/* DoRA: W' = mag / ||W + s B A|| (W + s B A), per output row */
				float g, inv;
				ops_dora_row(&g, &inv, M->data[o], w, (int)inn);
				for (int64_t j = 0; j < inn; j++)
					w[j] *= g;
			}
		}
	}
	return 0;
}

static bool ends_with(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);
	return a >= b && strcmp(s + a - b, suf) == 0;
}

static bool is_conv1d(const char *name)
{
	return ends_with(name, ".attn.c_attn.weight") || ends_with(name, ".attn.c_proj.weight") ||
	       ends_with(name, ".mlp.c_fc.weight") || ends_with(name, ".mlp.c_proj.weight");
}

/* Heads of a q/k projection weight or bias (rows are permuted), else 0. */
static int qk_heads(const struct model_hparams *hp, const char *name)
{
	if (hp->arch != ARCH_LLAMA)
		return 0;
	if (strstr(name, ".self_attn.q_proj."))
		return hp->n_head;
	if (strstr(name, ".self_attn.k_proj."))
		return hp->n_head_kv;
	return 0;
}

/* The tensor's data as the target format wants it (a copy when it differs, else NULL).
 * to_interleaved: the target orders q/k rows like llama.cpp; hf: a Hugging Face file
 * (Conv1D weights transposed, Gemma norms as w). */
static int out_copy(float **out, const struct model_file *mf, const struct mf_tensor *t,
		    bool to_interleaved, bool hf, struct diag *d)
{
	*out = NULL;
	if (!t->data)
		return diag_set(d, FT_EINVAL, "", 0, 0,
				"tensor '%s' has no fp32 copy (model_file_dequantize)", t->name);
	int heads = qk_heads(&mf->hp, t->name);
	bool src_il = mf->hp.rope_style == ROPE_INTERLEAVED;
	bool permute = heads > 0 && src_il != to_interleaved;
	bool transpose = hf && mf->hp.arch == ARCH_GPT2 && t->ndim == 2 && is_conv1d(t->name);
	bool minus1 = hf && mf->hp.arch == ARCH_GEMMA3 && t->ndim == 1 &&
		      ends_with(t->name, "norm.weight");
	if (!permute && !transpose && !minus1)
		return 0;
	float *c = malloc(t->numel * sizeof(float));
	if (!c)
		return diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory (%zu bytes)",
				t->numel * sizeof(float));
	if (minus1) {
		for (size_t i = 0; i < t->numel; i++)
			c[i] = t->data[i] - 1.0f;
	} else if (permute) {
		int64_t cols = t->ndim == 2 ? t->shape[1] : 1;
		if ((int64_t)heads * mf->hp.head_dim != t->shape[0]) {
			free(c);
			return diag_set(d, FT_EINVAL, "", 0, 0, "%s: rows do not match heads", t->name);
		}
		rope_rows_permute(c, t->data, heads, mf->hp.head_dim, cols, to_interleaved);
	} else {
		int64_t R = t->shape[0], C = t->shape[1];
		for (int64_t i = 0; i < R; i++)
			for (int64_t j = 0; j < C; j++)
				c[(size_t)j * (size_t)R + (size_t)i] = t->data[(size_t)i * (size_t)C + (size_t)j];
	}
	*out = c;
	return 0;
}

/* A Gemma 3 config.json (gemma3_text) that transformers 4 and 5 read the same way. */
static void gemma3_config(json_t *j, const struct model_hparams *hp)
{
	json_object_set_new(j, "architectures", json_pack("[s]", "Gemma3ForCausalLM"));
	json_object_set_new(j, "model_type", json_string("gemma3_text"));
	json_object_set_new(j, "hidden_size", json_integer(hp->n_embd));
	json_object_set_new(j, "intermediate_size", json_integer(hp->n_ff));
	json_object_set_new(j, "num_hidden_layers", json_integer(hp->n_layer));
	json_object_set_new(j, "num_attention_heads", json_integer(hp->n_head));
	json_object_set_new(j, "num_key_value_heads", json_integer(hp->n_head_kv));
	json_object_set_new(j, "head_dim", json_integer(hp->head_dim));
	json_object_set_new(j, "vocab_size", json_integer(hp->n_vocab));
	json_object_set_new(j, "max_position_embeddings", json_integer(hp->n_ctx_train));
	json_object_set_new(j, "rms_norm_eps", json_real(hp->norm_eps));
	json_object_set_new(j, "rope_theta", json_real(hp->rope_theta));
	json_object_set_new(j, "rope_local_base_freq", json_real(hp->rope_theta_local));
	json_object_set_new(j, "hidden_activation", json_string("gelu_pytorch_tanh"));
	json_object_set_new(j, "attention_bias", json_boolean(hp->qkv_bias));
	float sc = hp->attn_scale > 0.0f ? hp->attn_scale : 1.0f / sqrtf((float)hp->head_dim);
	double qpas = 1.0 / ((double)sc * sc);
	json_object_set_new(j, "query_pre_attn_scalar", fabs(qpas - round(qpas)) < 1e-3
								? json_integer((json_int_t)round(qpas))
								: json_real(qpas));
	json_object_set_new(j, "sliding_window", hp->sliding_window > 0
						 ? json_integer(hp->sliding_window)
						 : json_null());
	json_t *lt = json_array();
	for (int l = 0; l < hp->n_layer; l++) {
		bool local = hp->sliding_window > 0 &&
			     (hp->swa_pattern <= 0 || l % hp->swa_pattern < hp->swa_pattern - 1);
		json_array_append_new(lt, json_string(local ? "sliding_attention" : "full_attention"));
	}
	json_object_set_new(j, "layer_types", lt);
	json_object_set_new(j, "final_logit_softcapping", json_null());
	json_object_set_new(j, "attn_logit_softcapping", json_null());
	if (hp->rope_scaling == ROPE_SCALING_LINEAR) /* the global layers' */
		json_object_set_new(j, "rope_scaling",
				    json_pack("{s:s,s:f}", "rope_type", "linear", "factor",
					      (double)hp->rope_scaling_factor));
}

static json_t *hf_config(const struct model_hparams *hp, const struct mf_tokenizer_src *tok)
{
	json_t *j = json_object();
	if (hp->arch == ARCH_GEMMA3) {
		gemma3_config(j, hp);
		if (tok->pad_id >= 0)
			json_object_set_new(j, "pad_token_id", json_integer(tok->pad_id));
	} else if (hp->arch == ARCH_GPT2) {
		json_object_set_new(j, "architectures", json_pack("[s]", "GPT2LMHeadModel"));
		json_object_set_new(j, "model_type", json_string("gpt2"));
		json_object_set_new(j, "n_embd", json_integer(hp->n_embd));
		json_object_set_new(j, "n_layer", json_integer(hp->n_layer));
		json_object_set_new(j, "n_head", json_integer(hp->n_head));
		json_object_set_new(j, "n_inner", json_integer(hp->n_ff));
		json_object_set_new(j, "n_positions", json_integer(hp->n_ctx_train));
		json_object_set_new(j, "n_ctx", json_integer(hp->n_ctx_train));
		json_object_set_new(j, "vocab_size", json_integer(hp->n_vocab));
		json_object_set_new(j, "layer_norm_epsilon", json_real(hp->norm_eps));
	} else {
		const char *arch = hp->qkv_bias ? "Qwen2ForCausalLM" : "LlamaForCausalLM";
		json_object_set_new(j, "architectures", json_pack("[s]", arch));
		json_object_set_new(j, "model_type", json_string(hp->qkv_bias ? "qwen2" : "llama"));
		json_object_set_new(j, "hidden_size", json_integer(hp->n_embd));
		json_object_set_new(j, "intermediate_size", json_integer(hp->n_ff));
		json_object_set_new(j, "num_hidden_layers", json_integer(hp->n_layer));
		json_object_set_new(j, "num_attention_heads", json_integer(hp->n_head));
		json_object_set_new(j, "num_key_value_heads", json_integer(hp->n_head_kv));
		json_object_set_new(j, "head_dim", json_integer(hp->head_dim));
		json_object_set_new(j, "vocab_size", json_integer(hp->n_vocab));
		json_object_set_new(j, "max_position_embeddings", json_integer(hp->n_ctx_train));
		json_object_set_new(j, "rms_norm_eps", json_real(hp->norm_eps));
		json_object_set_new(j, "rope_theta", json_real(hp->rope_theta));
		json_object_set_new(j, "hidden_act", json_string("silu"));
		json_object_set_new(j, "attention_bias", json_boolean(hp->qkv_bias));
		if (hp->rope_scaling == ROPE_SCALING_LINEAR)
			json_object_set_new(j, "rope_scaling",
					    json_pack("{s:s,s:f}", "rope_type", "linear", "factor",
						      (double)hp->rope_scaling_factor));
		else if (hp->rope_scaling == ROPE_SCALING_LLAMA3)
			json_object_set_new(
				j, "rope_scaling",
				json_pack("{s:s,s:f,s:f,s:f,s:i}", "rope_type", "llama3", "factor",
					  (double)hp->rope_scaling_factor, "low_freq_factor",
					  (double)hp->rope_low_freq_factor, "high_freq_factor",
					  (double)hp->rope_high_freq_factor,
					  "original_max_position_embeddings", hp->rope_orig_ctx));
	}
	json_object_set_new(j, "tie_word_embeddings", json_boolean(hp->tied_embeddings));
	if (tok->bos_id >= 0)
		json_object_set_new(j, "bos_token_id", json_integer(tok->bos_id));
	if (tok->eos_id >= 0)
		json_object_set_new(j, "eos_token_id", json_integer(tok->eos_id));
	json_object_set_new(j, "torch_dtype", json_string("float32"));
	return j;
}

int merged_write_hf(const char *dir, const struct model_file *mf, struct diag *d)
{
	int rc = dir_make_all(dir, d);
	if (rc)
		return rc;
	size_t n = mf->n_tensors;
	struct st_tensor *st = calloc(n ? n : 1, sizeof(*st));
	float **copies = calloc(n ? n : 1, sizeof(*copies));
	char *p = NULL, *text = NULL;
	if (!st || !copies) {
		rc = diag_set(d, FT_ENOMEM, dir, 0, 0, "out of memory");
		goto done;
	}
	for (size_t i = 0; i < n; i++) {
		const struct mf_tensor *t = &mf->tensors[i];
		if ((rc = out_copy(&copies[i], mf, t, false, true, d)) != 0)
			goto done;
		st[i] = (struct st_tensor){.name = t->name, .dtype = "F32", .ndim = t->ndim,
					   .data = copies[i] ? copies[i] : t->data,
					   .nbytes = t->numel * sizeof(float)};
		for (int k = 0; k < t->ndim; k++)
			st[i].shape[k] = t->shape[k];
		if (copies[i] && t->ndim == 2 && mf->hp.arch == ARCH_GPT2) {
			st[i].shape[0] = t->shape[1];
			st[i].shape[1] = t->shape[0];
		}
	}
	p = path_join(dir, "model.safetensors");
	if (!p || (rc = st_write_file(p, st, n, NULL, d)) != 0) {
		if (!p)
			rc = diag_set(d, FT_ENOMEM, dir, 0, 0, "out of memory");
		goto done;
	}
	free(p);
	json_t *j = hf_config(&mf->hp, &mf->tok);
	text = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(j);
	p = path_join(dir, "config.json");
	if (!text || !p) {
		rc = diag_set(d, FT_ENOMEM, dir, 0, 0, "out of memory");
		goto done;
	}
	if ((rc = file_write_atomic(p, text, strlen(text), d)) != 0)
		goto done;
	const char *files[3] = {"tokenizer.json", "tokenizer_config.json", "chat_template.jinja"};
	const char *texts[3] = {mf->tok.tokenizer_json, mf->tok.tokenizer_config_json,
				mf->tok.chat_template_jinja};
	for (int k = 0; k < 3; k++) {
		if (!texts[k])
			continue;
		free(p);
		p = path_join(dir, files[k]);
		if (!p) {
			rc = diag_set(d, FT_ENOMEM, dir, 0, 0, "out of memory");
			goto done;
		}
		if ((rc = file_write_atomic(p, texts[k], strlen(texts[k]), d)) != 0)
			goto done;
	}
done:
	for (size_t i = 0; copies && i < n; i++)
		free(copies[i]);
	free(copies);
	free(st);
	free(p);
	free(text);
	return rc;
}

/* HF llama / gemma3 name -> llama.cpp name, into buf. */
static bool gguf_name(char *buf, size_t n, const char *name, enum model_arch arch)
{
	static const struct {
		const char *hf, *gg;
	} top[] = {{"model.embed_tokens.weight", "token_embd.weight"},
		   {"model.norm.weight", "output_norm.weight"},
		   {"lm_head.weight", "output.weight"}},
	  blk[] = {{"input_layernorm.weight", "attn_norm.weight"},
		   {"post_attention_layernorm.weight", "ffn_norm.weight"},
		   {"self_attn.q_proj.weight", "attn_q.weight"},
		   {"self_attn.k_proj.weight", "attn_k.weight"},
		   {"self_attn.v_proj.weight", "attn_v.weight"},
		   {"self_attn.q_proj.bias", "attn_q.bias"},
		   {"self_attn.k_proj.bias", "attn_k.bias"},
		   {"self_attn.v_proj.bias", "attn_v.bias"},
		   {"self_attn.o_proj.weight", "attn_output.weight"},
		   {"mlp.gate_proj.weight", "ffn_gate.weight"},
		   {"mlp.up_proj.weight", "ffn_up.weight"},
		   {"mlp.down_proj.weight", "ffn_down.weight"}},
	  gemma3[] = {{"post_attention_layernorm.weight", "post_attention_norm.weight"},
		      {"pre_feedforward_layernorm.weight", "ffn_norm.weight"},
		      {"post_feedforward_layernorm.weight", "post_ffw_norm.weight"},
		      {"self_attn.q_norm.weight", "attn_q_norm.weight"},
		      {"self_attn.k_norm.weight", "attn_k_norm.weight"}};
	for (size_t i = 0; i < FT_ARRAY_LEN(top); i++)
		if (strcmp(name, top[i].hf) == 0)
			return snprintf(buf, n, "%s", top[i].gg) < (int)n;
	int layer;
	size_t off;
	if (!peft_layer_prefix(name, &layer, &off))
		return false;
	for (size_t i = 0; arch == ARCH_GEMMA3 && i < FT_ARRAY_LEN(gemma3); i++)
		if (strcmp(name + off, gemma3[i].hf) == 0)
			return snprintf(buf, n, "blk.%d.%s", layer, gemma3[i].gg) < (int)n;
	for (size_t i = 0; i < FT_ARRAY_LEN(blk); i++)
		if (strcmp(name + off, blk[i].hf) == 0)
			return snprintf(buf, n, "blk.%d.%s", layer, blk[i].gg) < (int)n;
	return false;
}

int merged_write_gguf(const char *path, const struct model_file *mf, struct diag *d)
{
	if (mf->hp.arch == ARCH_GPT2)
		return diag_set(d, FT_EUNSUPP, path, 0, 0,
				"merged GGUF export supports the llama family and Gemma 3; "
				"use --format merged-safetensors for GPT-2");
	const struct model_hparams *hp = &mf->hp;
	const struct mf_tokenizer_src *tok = &mf->tok;
	struct gguf_out *g = NULL;
	size_t n = mf->n_tensors;
	float **copies = calloc(n ? n : 1, sizeof(*copies));
	int rc = gguf_out_create(&g);
	if (rc || !copies) {
		rc = diag_set(d, FT_ENOMEM, path, 0, 0, "out of memory");
		goto done;
	}
	bool g3 = hp->arch == ARCH_GEMMA3;
	const char *an = g3 ? "gemma3" : "llama";
	char key[96];
#define K(suffix) (snprintf(key, sizeof key, "%s.%s", an, suffix), key)
	gguf_out_str(g, "general.architecture", an);
	gguf_out_str(g, "general.name", hp->name[0] ? hp->name : "ftlab-merged");
	gguf_out_u32(g, "general.file_type", 0);
	gguf_out_u32(g, K("context_length"), (uint32_t)hp->n_ctx_train);
	gguf_out_u32(g, K("embedding_length"), (uint32_t)hp->n_embd);
	gguf_out_u32(g, K("block_count"), (uint32_t)hp->n_layer);
	gguf_out_u32(g, K("feed_forward_length"), (uint32_t)hp->n_ff);
	gguf_out_u32(g, K("attention.head_count"), (uint32_t)hp->n_head);
	gguf_out_u32(g, K("attention.head_count_kv"), (uint32_t)hp->n_head_kv);
	gguf_out_u32(g, K("rope.dimension_count"), (uint32_t)hp->head_dim);
	gguf_out_u32(g, K("vocab_size"), (uint32_t)hp->n_vocab);
	gguf_out_f32(g, K("rope.freq_base"), hp->rope_theta);
	gguf_out_f32(g, K("attention.layer_norm_rms_epsilon"), hp->norm_eps);
	if (g3) {
		/* the keys llama.cpp reads for gemma3; its query scale is 1/sqrt(key_length)
		 * (the 62-layer model aside), which the engine's own scale must be */
		float want = hp->n_layer == 62 ? 1.0f / sqrtf((float)hp->n_embd / (float)hp->n_head)
					       : 1.0f / sqrtf((float)hp->head_dim);
		if (hp->attn_scale > 0.0f && fabsf(hp->attn_scale - want) > 1e-6f * want) {
			rc = diag_set(d, FT_EUNSUPP, path, 0, 0,
				      "this Gemma 3 model's query scale %g is not the one a GGUF "
				      "implies (%g); use --format merged-safetensors",
				      (double)hp->attn_scale, (double)want);
			goto done;
		}
		gguf_out_u32(g, K("attention.key_length"), (uint32_t)hp->head_dim);
		gguf_out_u32(g, K("attention.value_length"), (uint32_t)hp->head_dim);
		if (hp->sliding_window > 0) {
			gguf_out_u32(g, K("attention.sliding_window"), (uint32_t)hp->sliding_window);
			gguf_out_u32(g, K("attention.sliding_window_pattern"),
				     (uint32_t)hp->swa_pattern);
			gguf_out_f32(g, K("rope.freq_base_swa"), hp->rope_theta_local);
		}
	}
	if (hp->rope_scaling == ROPE_SCALING_LINEAR) {
		gguf_out_str(g, K("rope.scaling.type"), "linear");
		gguf_out_f32(g, K("rope.scaling.factor"), hp->rope_scaling_factor);
	}
#undef K
	if (tok->tokens && tok->model) {
		gguf_out_str(g, "tokenizer.ggml.model", tok->model);
		if (tok->pre)
			gguf_out_str(g, "tokenizer.ggml.pre", tok->pre);
		gguf_out_arr_str(g, "tokenizer.ggml.tokens", tok->tokens, tok->n_tokens);
		if (tok->token_type)
			gguf_out_arr_i32(g, "tokenizer.ggml.token_type", tok->token_type,
					 tok->n_tokens);
		if (tok->merges || strcmp(tok->model, "gpt2") == 0) /* llama.cpp wants the key */
			gguf_out_arr_str(g, "tokenizer.ggml.merges", tok->merges, tok->n_merges);
		const struct {
			const char *k;
			int64_t v;
		} ids[] = {{"tokenizer.ggml.bos_token_id", tok->bos_id},
			   {"tokenizer.ggml.eos_token_id", tok->eos_id},
			   {"tokenizer.ggml.padding_token_id", tok->pad_id},
			   {"tokenizer.ggml.unknown_token_id", tok->unk_id}};
		for (size_t i = 0; i < FT_ARRAY_LEN(ids); i++)
			if (ids[i].v >= 0)
				gguf_out_u32(g, ids[i].k, (uint32_t)ids[i].v);
		gguf_out_bool(g, "tokenizer.ggml.add_bos_token", tok->add_bos);
		gguf_out_bool(g, "tokenizer.ggml.add_eos_token", tok->add_eos);
		/* SentencePiece vocabularies (Gemma): llama.cpp reads the scores, and assumes a
		 * space prefix unless told otherwise */
		if (tok->scores)
			gguf_out_arr_f32(g, "tokenizer.ggml.scores", tok->scores, tok->n_tokens);
		if (tok->add_space_prefix_set)
			gguf_out_bool(g, "tokenizer.ggml.add_space_prefix", tok->add_space_prefix);
		if (tok->chat_template)
			gguf_out_str(g, "tokenizer.chat_template", tok->chat_template);
	}
	for (size_t i = 0; i < n; i++) {
		const struct mf_tensor *t = &mf->tensors[i];
		char name[160];
		if (!gguf_name(name, sizeof(name), t->name, hp->arch)) {
			rc = diag_set(d, FT_EUNSUPP, path, 0, 0, "tensor '%s' has no llama.cpp name",
				      t->name);
			goto done;
		}
		if ((rc = out_copy(&copies[i], mf, t, true, false, d)) != 0)
			goto done;
		int64_t ne[4];
		for (int k = 0; k < t->ndim; k++)
			ne[k] = t->shape[t->ndim - 1 - k];
		gguf_out_tensor(g, name, GGML_F32, t->ndim, ne,
				copies[i] ? copies[i] : t->data);
	}
	rc = gguf_out_write(g, path, d);
done:
	for (size_t i = 0; copies && i < n; i++)
		free(copies[i]);
	free(copies);
	gguf_out_free(g);
	return rc;
}
