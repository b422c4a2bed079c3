/* model: parameter table from a model_file (which parameters train, LoRA adapters; frozen
 * weight matrices keep the file's storage type), memory from size tables (one allocation
 * per group: params, grads, activations), the training forward (LM head and cross-entropy
 * in chunks, at positions with a target) and the backward, for llama, Gemma 3 and GPT-2.
 * KV-cache generation is in generate.c. All compute goes through struct ops. */
#include "backends/native/model/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/native/io/dequant.h"
#include "backends/native/model/model_internal.h"
#include "backends/native/ops/ops.h"
#include "backends/native/ops/ops_math.h"
#include "common/rng.h"
#include "common/util.h"
#include "common/banned.h"

/* ---- size tables ---- */

void mplan_add(struct mplan *p, void **ptr, size_t bytes)
{
	if (p->n == p->cap) {
		size_t nc = p->cap ? 2 * p->cap : 64;
		struct mplan_entry *ne = realloc(p->e, nc * sizeof *ne);
		if (!ne) {
			p->oom = true;
			return;
		}
		p->e = ne;
		p->cap = nc;
	}
	p->e[p->n].ptr = ptr;
	p->e[p->n].bytes = bytes;
	p->n++;
}


/* One allocation for the whole table, each piece 64-byte aligned. */
int mplan_alloc(struct mplan *p, const struct ops *ops, void **out_mem, size_t *out_bytes,
		      const char *what, struct diag *d)
{
	size_t total = 0;
	for (size_t i = 0; i < p->n; i++)
		total += (p->e[i].bytes + 63) / 64 * 64;
	*out_bytes = total;
	if (p->oom)
		return diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory planning the %s", what);
	char *mem = ops->alloc(total);
	if (!mem)
		return diag_set(d, FT_ENOMEM, NULL, 0, 0,
				"out of memory: the %s need %zu bytes", what, total);
	size_t off = 0;
	for (size_t i = 0; i < p->n; i++) {
		*p->e[i].ptr = p->e[i].bytes ? mem + off : NULL;
		off += (p->e[i].bytes + 63) / 64 * 64;
	}
	*out_mem = mem;
	return 0;
}

void mplan_free(struct mplan *p)
{
	free(p->e);
	memset(p, 0, sizeof *p);
}

/* ---- parameter table ---- */

float *model_pdata(const struct model *m, int idx)
{
	return idx >= 0 ? m->params[idx].pub.data : NULL;
}

const struct ops_w *model_pw(const struct model *m, int idx)
{
	return &m->params[idx].w;
}

static float *pgrad(const struct model *m, int idx)
{
	return idx >= 0 ? m->params[idx].pub.grad : NULL;
}

/* Adds a parameter row; returns its index. */
static int add_param(struct model *m, const char *name, int64_t d0, int64_t d1, int layer)
{
	struct mparam *p = &m->params[m->n_params];
	memset(p, 0, sizeof *p);
	snprintf(p->name, sizeof p->name, "%s", name);
	p->pub.name = p->name;
	p->pub.shape[0] = d0;
	p->pub.shape[1] = d1;
	p->pub.numel = (size_t)d0 * (size_t)d1;
	p->layer = layer;
	return (int)m->n_params++;
}

/* ("." name ".") contains ("." t ".") */
static bool name_has_component(const char *name, const char *t)
{
	size_t tl = strlen(t), nl = strlen(name);
	if (tl == 0 || tl > nl)
		return false;
	for (const char *s = strstr(name, t); s; s = strstr(s + 1, t)) {
		bool left = s == name || s[-1] == '.';
		bool right = s[tl] == '\0' || s[tl] == '.';
		if (left && right)
			return true;
	}
	return false;
}

static bool layer_selected(const struct model_opts *o, int layer)
{
	if (layer < 0)
		return false;
	if (o->layers_first >= 0 && layer < o->layers_first)
		return false;
	if (o->layers_last >= 0 && layer > o->layers_last)
		return false;
	return true;
}

/* One LoRA target names module `module` ("model.layers.3.self_attn.q_proj"): its last
 * component ("q_proj") or any dotted run of components ("self_attn", "3.self_attn"). */
static bool target_matches(const char *module, const char *target)
{
	const char *last = strrchr(module, '.');
	last = last ? last + 1 : module;
	return strcmp(last, target) == 0 || name_has_component(module, target);
}

/* One of the n names matches module (target_matches). */
static bool module_in(const char *const *names, size_t n, const char *module)
{
	for (size_t i = 0; i < n; i++)
		if (target_matches(module, names[i]))
			return true;
	return false;
}

static bool lora_targeted(const struct model_opts *o, const char *module)
{
	return o->all_linear || module_in(o->targets, o->n_targets, module);
}

/* PEFT's IA3 defaults (TRANSFORMERS_MODELS_TO_IA3_*_MODULES_MAPPING) */
static const char *const ia3_llama[] = {"k_proj", "v_proj", "down_proj"};
static const char *const ia3_llama_ff[] = {"down_proj"};
static const char *const ia3_gpt2[] = {"c_attn", "mlp.c_proj"};
static const char *const ia3_gemma3[] = {"q_proj", "v_proj", "down_proj"};
static const char *const ia3_gpt2_ff[] = {"mlp.c_proj"};

/* IA3's targets and feed-forward targets into m->o (borrowed for the table build). */
static void ia3_resolve(struct model *m, const struct model_opts *o, const char **ff_buf,
			size_t cap)
{
	bool gpt2 = m->hp.arch == ARCH_GPT2, g3 = m->hp.arch == ARCH_GEMMA3;
	if (o->n_targets == 0 && !o->all_linear) {
		m->o.targets = gpt2 ? ia3_gpt2 : g3 ? ia3_gemma3 : ia3_llama;
		m->o.n_targets = gpt2 ? FT_ARRAY_LEN(ia3_gpt2)
				 : g3 ? FT_ARRAY_LEN(ia3_gemma3)
				      : FT_ARRAY_LEN(ia3_llama);
	}
	if (!o->ff_auto)
		return;
	/* the architecture's feed-forward modules that are targets */
	const char *const *ff = gpt2 ? ia3_gpt2_ff : ia3_llama_ff;
	size_t nff = gpt2 ? FT_ARRAY_LEN(ia3_gpt2_ff) : FT_ARRAY_LEN(ia3_llama_ff), k = 0;
	for (size_t i = 0; i < nff && k < cap; i++) {
		bool in = m->o.all_linear;
		for (size_t t = 0; t < m->o.n_targets && !in; t++)
			in = strcmp(m->o.targets[t], ff[i]) == 0;
		if (in)
			ff_buf[k++] = ff[i];
	}
	m->o.ff_targets = ff_buf;
	m->o.n_ff_targets = k;
}

struct name_ctx {
	const struct model_file *mf;
	bool gpt2_prefix; /* GPT-2 tensors carry "transformer." */
};

/* Builds a linear: weight `prefix.weight` (out, in), optional bias, LoRA when targeted. */
static void make_lin(struct model *m, struct lin *l, const char *module, int out, int in,
		     bool bias, int layer, int slot)
{
	char nm[MODEL_NAME_MAX];
	l->in = in;
	l->out = out;
	l->slot = slot;
	snprintf(nm, sizeof nm, "%s.weight", module);
	l->w = add_param(m, nm, out, in, layer);
	m->params[l->w].matrix = true;
	l->b = -1;
	if (bias) {
		snprintf(nm, sizeof nm, "%s.bias", module);
		l->b = add_param(m, nm, out, 1, layer);
	}
	l->la = l->lb = l->mag = l->ia3 = -1;
	l->ia3_ff = false;
	if (m->o.method == METHOD_IA3 && layer_selected(&m->o, layer) &&
	    lora_targeted(&m->o, module)) {
		/* PEFT's shapes: (out, 1), or (1, in) for a feed-forward module */
		l->ia3_ff = module_in(m->o.ff_targets, m->o.n_ff_targets, module);
		snprintf(nm, sizeof nm, "%s.ia3_l", module);
		l->ia3 = add_param(m, nm, l->ia3_ff ? 1 : out, l->ia3_ff ? in : 1, layer);
		m->params[l->ia3].trainable = true;
	}
	if ((m->o.method == METHOD_LORA || m->o.method == METHOD_DORA) &&
	    layer_selected(&m->o, layer) && lora_targeted(&m->o, module)) {
		snprintf(nm, sizeof nm, "%s.lora_A.weight", module);
		l->la = add_param(m, nm, m->lora_r, in, layer);
		snprintf(nm, sizeof nm, "%s.lora_B.weight", module);
		l->lb = add_param(m, nm, out, m->lora_r, layer);
		m->params[l->la].trainable = true;
		m->params[l->lb].trainable = true;
		if (m->dora) {
			/* PEFT's name (the state-dict key without the adapter name) */
			snprintf(nm, sizeof nm, "%s.lora_magnitude_vector", module);
			l->mag = add_param(m, nm, out, 1, layer);
			m->params[l->mag].trainable = true;
		}
	}
}

/* The bottleneck adapters of layer l (AdapterHub's parameter names without the adapter's
 * name: "<layer>.attention_adapters.adapter_down.weight", "...output_adapters...").
 * GPT-2 blocks are "transformer.h.<l>". */
static void make_bottlenecks(struct model *m, int l, const char *layer_prefix)
{
	static const char *const pos[2] = {"attention_adapters", "output_adapters"};
	bool want[2] = {m->o.bn_attn, m->o.bn_mlp};
	int C = m->hp.n_embd;
	char nm[MODEL_NAME_MAX];
	for (int w = 0; w < 2; w++) {
		if (!m->bn || !want[w])
			continue;
		struct bneck *b = &m->layers[l].bn[w];
		snprintf(nm, sizeof nm, "%s.%d.%s.adapter_down.weight", layer_prefix, l, pos[w]);
		b->dw = add_param(m, nm, m->bn, C, l);
		snprintf(nm, sizeof nm, "%s.%d.%s.adapter_down.bias", layer_prefix, l, pos[w]);
		b->db = add_param(m, nm, m->bn, 1, l);
		snprintf(nm, sizeof nm, "%s.%d.%s.adapter_up.weight", layer_prefix, l, pos[w]);
		b->uw = add_param(m, nm, C, m->bn, l);
		snprintf(nm, sizeof nm, "%s.%d.%s.adapter_up.bias", layer_prefix, l, pos[w]);
		b->ub = add_param(m, nm, C, 1, l);
		m->params[b->dw].trainable = m->params[b->db].trainable = true;
		m->params[b->uw].trainable = m->params[b->ub].trainable = true;
	}
}

static void build_table(struct model *m)
{
	const struct model_hparams *hp = &m->hp;
	int C = hp->n_embd, F = hp->n_ff, V = hp->n_vocab;
	char nm[MODEL_NAME_MAX];
	m->wpe = m->lnf_b = -1;
	for (int l = 0; l < hp->n_layer; l++) {
		struct layer *y = &m->layers[l];
		struct lin *ls[] = {&y->q, &y->k, &y->v, &y->qkv, &y->o, &y->gate, &y->up, &y->down};
		for (size_t i = 0; i < FT_ARRAY_LEN(ls); i++)
			ls[i]->w = ls[i]->b = ls[i]->la = ls[i]->lb = ls[i]->mag = ls[i]->ia3 = -1;
		y->post_attn_w = y->post_ffn_w = y->q_norm_w = y->k_norm_w = -1;
		y->bn[0] = y->bn[1] = (struct bneck){-1, -1, -1, -1};
	}
	if (hp->arch != ARCH_GPT2) {
		bool g3 = hp->arch == ARCH_GEMMA3;
		m->wte = add_param(m, "model.embed_tokens.weight", V, C, -1);
		for (int l = 0; l < hp->n_layer; l++) {
			struct layer *y = &m->layers[l];
			char mod[MODEL_NAME_MAX];
			snprintf(nm, sizeof nm, "model.layers.%d.input_layernorm.weight", l);
			y->ln1_w = add_param(m, nm, C, 1, l);
			y->ln1_b = y->ln2_b = -1;
#define LIN(field, sub, out, in, bias, slot)                                                  \
	do {                                                                                \
		snprintf(mod, sizeof mod, "model.layers.%d.%s", l, sub);                    \
		make_lin(m, &y->field, mod, out, in, bias, l, slot);                        \
	} while (0)
#define NORM(field, sub, n)                                                                   \
	do {                                                                                \
		snprintf(nm, sizeof nm, "model.layers.%d.%s.weight", l, sub);               \
		y->field = add_param(m, nm, n, 1, l);                                       \
	} while (0)
			LIN(q, "self_attn.q_proj", m->qd, C, hp->qkv_bias, 0);
			LIN(k, "self_attn.k_proj", m->kvd, C, hp->qkv_bias, 1);
			LIN(v, "self_attn.v_proj", m->kvd, C, hp->qkv_bias, 2);
			if (g3) {
				NORM(q_norm_w, "self_attn.q_norm", hp->head_dim);
				NORM(k_norm_w, "self_attn.k_norm", hp->head_dim);
			}
			LIN(o, "self_attn.o_proj", C, m->qd, false, 3);
			if (g3) {
				NORM(post_attn_w, "post_attention_layernorm", C);
				NORM(ln2_w, "pre_feedforward_layernorm", C);
			} else {
				NORM(ln2_w, "post_attention_layernorm", C);
			}
#undef NORM
			LIN(gate, "mlp.gate_proj", F, C, false, 4);
			LIN(up, "mlp.up_proj", F, C, false, 5);
			LIN(down, "mlp.down_proj", C, F, false, 6);
			if (g3) {
				snprintf(nm, sizeof nm, "model.layers.%d.post_feedforward_layernorm.weight", l);
				y->post_ffn_w = add_param(m, nm, C, 1, l);
				y->local = hp->sliding_window > 0 &&
					   (hp->swa_pattern <= 0 || l % hp->swa_pattern < hp->swa_pattern - 1);
			}
			make_bottlenecks(m, l, "model.layers");
		}
		m->lnf_w = add_param(m, "model.norm.weight", C, 1, -1);
		m->head = hp->tied_embeddings ? m->wte : add_param(m, "lm_head.weight", V, C, -1);
		m->params[m->wte].matrix = m->params[m->head].matrix = true;
	} else {
		m->wte = add_param(m, "transformer.wte.weight", V, C, -1);
		m->wpe = add_param(m, "transformer.wpe.weight", hp->n_ctx_train, C, -1);
		for (int l = 0; l < hp->n_layer; l++) {
			struct layer *y = &m->layers[l];
			char mod[MODEL_NAME_MAX];
			snprintf(nm, sizeof nm, "transformer.h.%d.ln_1.weight", l);
			y->ln1_w = add_param(m, nm, C, 1, l);
			snprintf(nm, sizeof nm, "transformer.h.%d.ln_1.bias", l);
			y->ln1_b = add_param(m, nm, C, 1, l);
#undef LIN
#define LIN(field, sub, out, in, bias, slot)                                                  \
	do {                                                                                \
		snprintf(mod, sizeof mod, "transformer.h.%d.%s", l, sub);                   \
		make_lin(m, &y->field, mod, out, in, bias, l, slot);                        \
	} while (0)
			LIN(qkv, "attn.c_attn", 3 * C, C, true, 0);
			LIN(o, "attn.c_proj", C, C, true, 3);
			snprintf(nm, sizeof nm, "transformer.h.%d.ln_2.weight", l);
			y->ln2_w = add_param(m, nm, C, 1, l);
			snprintf(nm, sizeof nm, "transformer.h.%d.ln_2.bias", l);
			y->ln2_b = add_param(m, nm, C, 1, l);
			LIN(up, "mlp.c_fc", F, C, true, 5);
			LIN(down, "mlp.c_proj", C, F, true, 6);
#undef LIN
			make_bottlenecks(m, l, "transformer.h");
		}
		m->lnf_w = add_param(m, "transformer.ln_f.weight", C, 1, -1);
		m->lnf_b = add_param(m, "transformer.ln_f.bias", C, 1, -1);
		m->head = m->wte;
		m->params[m->wte].matrix = true;
	}
	m->prefix = -1;
	m->pe_emb = m->pe_w1 = m->pe_b1 = m->pe_w2 = m->pe_b2 = -1;
	if (m->o.method == METHOD_PREFIX) {
		/* PEFT's prompt encoder output: per virtual token, the keys and values of every
		 * layer, [K_0 V_0 K_1 V_1 ...] of kvd each */
		int64_t O = 2 * (int64_t)hp->n_layer * m->kvd;
		m->prefix = add_param(m, "prompt_embeddings", m->np, O, -1);
		if (!m->o.prefix_projection) {
			m->params[m->prefix].trainable = true;
			return;
		}
		/* PEFT's PrefixEncoder with prefix_projection (its parameter names without
		 * the adapter's): the table above is computed from these */
		m->ph = m->o.prefix_hidden > 0 ? m->o.prefix_hidden : m->kvd;
		m->pe_emb = add_param(m, "prompt_encoder.embedding.weight", m->np, m->kvd, -1);
		m->pe_w1 = add_param(m, "prompt_encoder.transform.0.weight", m->ph, m->kvd, -1);
		m->pe_b1 = add_param(m, "prompt_encoder.transform.0.bias", m->ph, 1, -1);
		m->pe_w2 = add_param(m, "prompt_encoder.transform.2.weight", O, m->ph, -1);
		m->pe_b2 = add_param(m, "prompt_encoder.transform.2.bias", O, 1, -1);
		int pe[] = {m->pe_emb, m->pe_w1, m->pe_b1, m->pe_w2, m->pe_b2};
		for (size_t i = 0; i < FT_ARRAY_LEN(pe); i++)
			m->params[pe[i]].trainable = true;
	}
}

/* Parameters of the method (LoRA, DoRA, IA3, prefix, bottleneck adapters): not in the model file. */
static bool is_adapter_param(const char *name)
{
	return strstr(name, ".lora_") != NULL || strstr(name, ".ia3_l") != NULL ||
	       strcmp(name, "prompt_embeddings") == 0 ||
	       strncmp(name, "prompt_encoder.", 15) == 0 ||
	       strstr(name, "_adapters.adapter_") != NULL;
}

/* Whether freeze name `t` selects base parameter i (a dotted component of its name; the
 * tied head is the embedding). */
static bool trainable_name_ok(const struct model *m, size_t i, const char *t)
{
	if (name_has_component(m->params[i].name, t))
		return true;
	return (int)i == m->wte && m->head == m->wte && strcmp(t, "lm_head") == 0;
}

/* The layers of freeze: base parameter i is in the chosen layers (parameters outside the
 * blocks only when names are given). */
static bool trainable_layer_ok(const struct model *m, size_t i)
{
	const struct mparam *p = &m->params[i];
	return p->layer < 0 ? m->o.n_trainable > 0 : layer_selected(&m->o, p->layer);
}

/* Which base parameters train. */
static void select_trainable(struct model *m)
{
	const struct model_opts *o = &m->o;
	for (size_t i = 0; i < m->n_params; i++) {
		struct mparam *p = &m->params[i];
		if (is_adapter_param(p->name))
			continue;
		if (o->method == METHOD_FULL) {
			p->trainable = true;
		} else if (o->method == METHOD_FREEZE) {
			bool name_ok = o->n_trainable == 0;
			for (size_t t = 0; t < o->n_trainable && !name_ok; t++)
				name_ok = trainable_name_ok(m, i, o->trainable[t]);
			if (p->layer < 0 && o->n_trainable == 0)
				name_ok = false;
			p->trainable = trainable_layer_ok(m, i) && name_ok;
		}
	}
}

/* Looks a tensor up under our name; GPT-2 files may lack the "transformer." prefix. */
static const struct mf_tensor *find_tensor(const struct model_file *mf, const char *name)
{
	const struct mf_tensor *t = model_file_tensor(mf, name);
	if (!t && strncmp(name, "transformer.", 12) == 0)
		t = model_file_tensor(mf, name + 12);
	return t;
}

static int check_hparams(const struct model_hparams *hp, const char *path, struct diag *d)
{
	if (hp->n_layer <= 0 || hp->n_embd <= 0 || hp->n_head <= 0 || hp->n_head_kv <= 0 ||
	    hp->head_dim <= 0 || hp->n_ff <= 0 || hp->n_vocab <= 0)
		return diag_set(d, FT_EINVAL, path, 0, 0,
				"model hyperparameters are incomplete (layers %d, embd %d, "
				"heads %d/%d, head_dim %d, ff %d, vocab %d)",
				hp->n_layer, hp->n_embd, hp->n_head, hp->n_head_kv, hp->head_dim,
				hp->n_ff, hp->n_vocab);
	if (hp->n_head % hp->n_head_kv != 0)
		return diag_set(d, FT_EINVAL, path, 0, 0,
				"n_head %d is not a multiple of n_head_kv %d", hp->n_head,
				hp->n_head_kv);
	if (hp->head_dim % 2 != 0)
		return diag_set(d, FT_EINVAL, path, 0, 0, "head_dim %d is odd", hp->head_dim);
	if (hp->arch == ARCH_GPT2 && (hp->n_head * hp->head_dim != hp->n_embd ||
				      hp->n_head_kv != hp->n_head || hp->n_ctx_train <= 0))
		return diag_set(d, FT_EINVAL, path, 0, 0,
				"GPT-2 needs n_head*head_dim == n_embd, no grouping and a context");
	if (hp->sliding_window < 0 || hp->swa_pattern < 0 || hp->attn_scale < 0.0f ||
	    (hp->arch == ARCH_GEMMA3 && hp->sliding_window > 0 && !(hp->rope_theta_local > 0.0f)))
		return diag_set(d, FT_EINVAL, path, 0, 0,
				"invalid sliding window %d (pattern %d, local RoPE base %g) or query "
				"scale %g", hp->sliding_window, hp->swa_pattern,
				(double)hp->rope_theta_local, (double)hp->attn_scale);
	return 0;
}

/* ---- storage ---- */

/* The type parameter p is kept in: fp32 unless it is a frozen matrix (see model_opts);
 * t is its tensor in the file (NULL for LoRA) stored as src. */
static uint32_t storage_type(const struct model *m, const struct mparam *p,
			     const struct mf_tensor *t, uint32_t src)
{
	if (!t || !p->matrix || p->trainable || m->o.frozen_f32 || t->ndim != 2)
		return GGML_F32;
	size_t k = (size_t)p->pub.shape[1];
	bool stored_float = src == GGML_F32 || src == GGML_F16 || src == GGML_BF16;
	if (stored_float && k % 32 == 0 && m->o.quantize != QUANTIZE_NONE)
		return m->o.quantize == QUANTIZE_Q8_0 ? GGML_Q8_0 : GGML_Q4_0;
	return ggml_row_bytes(src, k) ? src : GGML_F32;
}

static size_t param_bytes(const struct mparam *p)
{
	if (p->pub.type == GGML_F32)
		return p->pub.numel * sizeof(float);
	return (size_t)p->pub.shape[0] * ggml_row_bytes(p->pub.type, (size_t)p->pub.shape[1]);
}

/* Writes parameter p's initial values into its memory: LoRA A drawn like PEFT, LoRA B
 * zero, the file's tensor as it is stored, or converted (dequantized to fp32, or
 * quantized on load from its fp32 values). */
static int fill_param(struct model *m, const struct model_file *mf, struct mparam *pp,
		      struct rng *r, struct diag *d)
{
	void *dst = (void *)pp->w.data;
	size_t n = pp->pub.numel, bytes = param_bytes(pp);
	bool bn = strstr(pp->name, "_adapters.adapter_") != NULL;
	if (strstr(pp->name, ".lora_B") || strstr(pp->name, ".lora_magnitude_vector") ||
	    (bn && pp->pub.shape[1] == 1))
		return 0; /* zero, as ops->alloc gives it (also the bottleneck adapters' biases);
			   * magnitudes: init_magnitude */
	if (strstr(pp->name, ".ia3_l")) {
		/* PEFT's init_ia3_weights: ones */
		float *h = malloc(n * sizeof(float));
		if (!h)
			return diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
		for (size_t j = 0; j < n; j++)
			h[j] = 1.0f;
		m->ops->to_device(dst, h, n * sizeof(float));
		free(h);
		return 0;
	}
	if (strcmp(pp->name, "prompt_embeddings") == 0 && m->pe_emb >= 0)
		return 0; /* computed by the projection (model_prefix_update) */
	if (strncmp(pp->name, "prompt_encoder.transform.", 25) == 0) {
		/* torch.nn.Linear's init, weight and bias: U(-1/sqrt(in), 1/sqrt(in)) */
		bool first = strncmp(pp->name + 25, "0.", 2) == 0;
		float bound = 1.0f / sqrtf((float)(first ? m->kvd : m->ph));
		float *h = malloc(n * sizeof(float));
		if (!h)
			return diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
		for (size_t j = 0; j < n; j++)
			h[j] = (2.0f * rng_uniform_f(r) - 1.0f) * bound;
		m->ops->to_device(dst, h, n * sizeof(float));
		free(h);
		return 0;
	}
	if (strcmp(pp->name, "prompt_embeddings") == 0 ||
	    strcmp(pp->name, "prompt_encoder.embedding.weight") == 0 || bn) {
		/* PEFT's prompt encoder (and the projection's input) is an nn.Embedding: N(0, 1);
		 * bottleneck adapter weights:
		 * AdapterHub's default init ("bert"), N(0, 0.02^2) */
		double sd = bn ? 0.02 : 1.0;
		float *h = malloc(n * sizeof(float));
		if (!h)
			return diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
		for (size_t j = 0; j < n; j += 2) {
			double u1 = 1.0 - rng_uniform(r), u2 = rng_uniform(r);
			double rad = sd * sqrt(-2.0 * log(u1));
			h[j] = (float)(rad * cos(2.0 * M_PI * u2));
			if (j + 1 < n)
				h[j + 1] = (float)(rad * sin(2.0 * M_PI * u2));
		}
		m->ops->to_device(dst, h, n * sizeof(float));
		free(h);
		return 0;
	}
	if (strstr(pp->name, ".lora_A")) {
		/* PEFT: kaiming_uniform_(a=sqrt(5)) -> U(-1/sqrt(in), 1/sqrt(in)) */
		float *h = malloc(n * sizeof(float));
		if (!h)
			return diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
		float bound = 1.0f / sqrtf((float)pp->pub.shape[1]);
		for (size_t j = 0; j < n; j++)
			h[j] = (2.0f * rng_uniform_f(r) - 1.0f) * bound;
		m->ops->to_device(dst, h, n * sizeof(float));
		free(h);
		return 0;
	}
	const struct mf_tensor *t = find_tensor(mf, pp->name);
	uint32_t st;
	const void *src = mf_tensor_raw(t, &st);
	if (!src)
		return diag_set(d, FT_EINVAL, mf->path, 0, 0, "tensor '%s' has no data", pp->name);
	if (st == pp->pub.type) {
		m->ops->to_device(dst, src, bytes);
		mf_tensor_release(mf, t);
		return 0;
	}
	float *h = malloc(n * sizeof(float));
	void *q = pp->pub.type == GGML_F32 ? NULL : malloc(bytes ? bytes : 1);
	if (!h || (pp->pub.type != GGML_F32 && !q)) {
		free(h);
		free(q);
		return diag_set(d, FT_ENOMEM, NULL, 0, 0,
				"out of memory converting tensor '%s' (%zu bytes)", pp->name,
				n * sizeof(float));
	}
	dequant_to_f32(st, src, h, n);
	if (q)
		quantize_from_f32(pp->pub.type, h, q, n);
	m->ops->to_device(dst, q ? q : (void *)h, bytes);
	mf_tensor_release(mf, t);
	free(h);
	free(q);
	return 0;
}

/* ---- activation plan ---- */

/* Logits of one head chunk: rows = this / (V * 4 bytes), but at least HEAD_CHUNK_ROWS.
 * Every chunk streams the whole head weight twice (logits, then dlogits W), dequantizing
 * a quantized one each time; that cost per chunk does not shrink with the chunk, so its
 * share of the head's work goes as 1 / rows: Gemma 3's 262,144-token Q8_0 head in 64-row
 * chunks made a LoRA step with every position a target 1.14x the CPU time of one product
 * over all rows, in 256-row chunks 1.03x (docs/performance.md). */
#define HEAD_CHUNK_BYTES ((size_t)64 << 20)
#define HEAD_CHUNK_ROWS 256
/* A head product takes at least this many rows (the unused ones are ignored): with
 * fewer, the CPU backend's GEMM switches to kernels that sum a row's products in another
 * order, and a row's logits would not have the bits of the product over every position. */
#define HEAD_MIN_ROWS 16

static void plan_lin_lora(struct model *m, struct mplan *p, struct lacts *a, const struct lin *l,
			  size_t N)
{
	struct lora_acts *la = &a->lora[l->slot];
	if (l->ia3 >= 0 && !l->ia3_ff)
		PLAN_F(p, la->z, N * l->out);
	if (l->la < 0)
		return;
	PLAN_F(p, la->h, N * m->lora_r);
	if (m->o.lora_dropout > 0.0f) {
		PLAN_F(p, la->xd, N * l->in);
		mplan_add(p, (void **)&la->mask, N * l->in);
	}
	if (l->mag >= 0) {
		PLAN_F(p, la->z, N * l->out);
		PLAN_F(p, la->g, l->out);
		PLAN_F(p, la->inv, l->out);
	}
}

void model_plan_layer(struct model *m, struct mplan *p, struct lacts *a, int l, size_t B,
		       size_t T, bool save_att, unsigned keep)
{
	const struct model_hparams *hp = &m->hp;
	size_t N = B * T, C = (size_t)hp->n_embd, F = (size_t)hp->n_ff;
	const struct layer *y = &m->layers[l];
	if (keep & KEEP_LN1)
		PLAN_F(p, a->ln1, N * C);
	PLAN_F(p, a->mean1, N);
	PLAN_F(p, a->rstd1, N);
	PLAN_F(p, a->q, N * m->qd);
	PLAN_F(p, a->k, N * m->kvd);
	PLAN_F(p, a->v, N * m->kvd);
	if (hp->arch == ARCH_GPT2 && (keep & KEEP_QKV))
		PLAN_F(p, a->qkv, N * 3 * C);
	if (save_att)
		PLAN_F(p, a->att, B * hp->n_head * T * T);
	if (keep & KEEP_ATTY)
		PLAN_F(p, a->atty, N * m->qd);
	PLAN_F(p, a->x2, N * C);
	if (keep & KEEP_LN2)
		PLAN_F(p, a->ln2, N * C);
	PLAN_F(p, a->mean2, N);
	PLAN_F(p, a->rstd2, N);
	if (hp->arch != ARCH_GPT2)
		PLAN_F(p, a->gate, N * F);
	if (hp->arch == ARCH_GEMMA3) {
		PLAN_F(p, a->qn, N * m->qd);
		PLAN_F(p, a->kn, N * m->kvd);
		PLAN_F(p, a->rstdq, N * hp->n_head);
		PLAN_F(p, a->rstdk, N * hp->n_head_kv);
		PLAN_F(p, a->ao, N * C);
		PLAN_F(p, a->mo, N * C);
		PLAN_F(p, a->rstd_ao, N);
		PLAN_F(p, a->rstd_mo, N);
	}
	PLAN_F(p, a->up, N * F);
	if (keep & KEEP_HM)
		PLAN_F(p, a->hm, N * F);
	const struct lin *ls[] = {&y->q, &y->k, &y->v, &y->qkv, &y->o, &y->gate, &y->up, &y->down};
	for (size_t i = 0; i < FT_ARRAY_LEN(ls); i++)
		if (ls[i]->w >= 0)
			plan_lin_lora(m, p, a, ls[i], N);
	for (int w = 0; w < 2; w++)
		if (y->bn[w].dw >= 0) {
			PLAN_F(p, a->bn_u[w], N * C);
			PLAN_F(p, a->bn_pre[w], N * (size_t)m->bn);
			PLAN_F(p, a->bn_hid[w], N * (size_t)m->bn);
		}
}

/* true when the backward reads the input of linear l: a trainable weight, LoRA or DoRA,
 * or IA3 on a feed-forward target (dl sums dy W times x; an output target keeps its own z) */
static bool lin_needs_input(const struct model *m, const struct lin *l)
{
	return l->la >= 0 || (l->ia3 >= 0 && l->ia3_ff) ||
	       (l->w >= 0 && m->params[l->w].trainable);
}

/* The activations layer l's backward reads (beyond those every layer keeps). */
static unsigned layer_keeps(const struct model *m, int l)
{
	const struct layer *y = &m->layers[l];
	unsigned k = 0;
	if (lin_needs_input(m, &y->q) || lin_needs_input(m, &y->k) || lin_needs_input(m, &y->v) ||
	    lin_needs_input(m, &y->qkv))
		k |= KEEP_LN1;
	if (lin_needs_input(m, &y->o))
		k |= KEEP_ATTY;
	if (lin_needs_input(m, &y->gate) || lin_needs_input(m, &y->up))
		k |= KEEP_LN2;
	if (lin_needs_input(m, &y->down))
		k |= KEEP_HM;
	return k; /* GPT-2's qkv is only copied into q, k, v: never kept */
}

int model_lora_rep_layer(const struct model *m)
{
	for (int l = 0; l < m->hp.n_layer; l++) {
		const struct layer *y = &m->layers[l];
		const struct lin *ls[] = {&y->q, &y->k, &y->v, &y->qkv, &y->o, &y->gate, &y->up, &y->down};
		for (size_t i = 0; i < FT_ARRAY_LEN(ls); i++)
			if (ls[i]->la >= 0 || ls[i]->ia3 >= 0)
				return l;
	}
	return 0;
}

static int plan_acts(struct model *m, int B, int T, struct diag *d)
{
	const struct model_hparams *hp = &m->hp;
	int L = hp->n_layer;
	size_t N = (size_t)B * T, C = (size_t)hp->n_embd, F = (size_t)hp->n_ff;
	bool train = m->o.method != METHOD_NONE;
	bool share = !train || m->o.grad_checkpointing;
	struct mplan p = {0};
	int rc;
	m->acts = calloc((size_t)L + 1, sizeof *m->acts);
	if (!m->acts)
		return diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
	for (int l = 0; l <= L; l++)
		PLAN_F(&p, m->acts[l].x, N * C);
	/* a shared set is planned with a layer that has LoRA (the same slots in every
	 * selected layer) and aliased after allocation */
	int rep = model_lora_rep_layer(m);
	/* Without sharing, each layer keeps what its backward reads; the inputs of its frozen
	 * linears live in one transient set that every layer's forward overwrites. Attention
	 * probabilities are never kept: the backward recomputes them from q and k (the same
	 * bits; B nh T^2 floats a layer saved, 283 MB for SmolLM2 at 4 x 256). */
	struct lacts tr = {0};
	unsigned keep_any = 0;
	for (int l = 0; l < L; l++)
		if (!share) {
			unsigned keep = layer_keeps(m, l);
			keep_any |= KEEP_ALL & ~keep;
			model_plan_layer(m, &p, &m->acts[l], l, (size_t)B, (size_t)T, false, keep);
		}
	if (share)
		model_plan_layer(m, &p, &m->acts[0], rep, (size_t)B, (size_t)T, false, KEEP_ALL);
	if (keep_any & KEEP_LN1)
		PLAN_F(&p, tr.ln1, N * C);
	if ((keep_any & KEEP_QKV) && hp->arch == ARCH_GPT2)
		PLAN_F(&p, tr.qkv, N * 3 * C);
	if (keep_any & KEEP_ATTY)
		PLAN_F(&p, tr.atty, N * m->qd);
	if (keep_any & KEEP_LN2)
		PLAN_F(&p, tr.ln2, N * C);
	if (keep_any & KEEP_HM)
		PLAN_F(&p, tr.hm, N * F);
	/* the LM head: head_rows rows of logits at a time */
	size_t R = N;
	if (!m->o.full_logits) {
		R = HEAD_CHUNK_BYTES / ((size_t)hp->n_vocab * sizeof(float));
		R = R < HEAD_CHUNK_ROWS ? HEAD_CHUNK_ROWS : R;
		if (m->o.head_chunk_rows > 0)
			R = (size_t)m->o.head_chunk_rows;
		R = R < 1 ? 1 : R > N ? N : R;
		PLAN_F(&p, m->hx, N * C);
	}
	m->head_rows = (int)R;
	size_t Rbuf = R < HEAD_MIN_ROWS ? (N < HEAD_MIN_ROWS ? N : HEAD_MIN_ROWS) : R;
	PLAN_F(&p, m->lnf, N * C);
	PLAN_F(&p, m->meanf, N);
	PLAN_F(&p, m->rstdf, N);
	PLAN_F(&p, m->logits, Rbuf * hp->n_vocab);
	PLAN_F(&p, m->hloss, N);
	PLAN_F(&p, m->hlse, N);
	mplan_add(&p, (void **)&m->hargmax, N * sizeof(int32_t));
	PLAN_F(&p, m->tmp, N * C);
	mplan_add(&p, (void **)&m->tok_dev, N * sizeof(int32_t));
	if (m->prefix >= 0)
		mplan_add(&p, (void **)&m->prefix_pos, (size_t)B * sizeof(int));
	mplan_add(&p, (void **)&m->tgt_dev, N * sizeof(int32_t));
	if (train) {
		struct gacts *g = &m->g;
		size_t maxin = C > F ? C : F; /* the widest linear input (o_proj: nh*hd) */
		maxin = (size_t)m->qd > maxin ? (size_t)m->qd : maxin;
		PLAN_F(&p, m->wrow, N);
		PLAN_F(&p, g->dres, N * C);
		PLAN_F(&p, g->dln, N * C);
		PLAN_F(&p, g->dtmp, N * C);
		PLAN_F(&p, g->dq, N * m->qd);
		PLAN_F(&p, g->dk, N * m->kvd);
		PLAN_F(&p, g->dv, N * m->kvd);
		PLAN_F(&p, g->datty, N * m->qd);
		if (hp->arch == ARCH_GPT2)
			PLAN_F(&p, g->dqkv, N * 3 * C);
		if (hp->arch == ARCH_GEMMA3) {
			PLAN_F(&p, g->dq2, N * m->qd);
			PLAN_F(&p, g->dk2, N * m->kvd);
		}
		PLAN_F(&p, g->dgate, N * F);
		PLAN_F(&p, g->dup, N * F);
		PLAN_F(&p, g->dh, N * (F > C ? F : C));
		if (m->lora_r > 0)
			PLAN_F(&p, g->dlh, N * m->lora_r);
		if (m->lora_r > 0 || m->o.method == METHOD_IA3)
			PLAN_F(&p, g->dxd, N * maxin);
		if (m->dora || m->o.method == METHOD_IA3) {
			size_t maxout = (size_t)(m->qd > m->kvd ? m->qd : m->kvd);
			maxout = maxout > maxin ? maxout : maxin;
			maxout = maxout > 3 * C ? maxout : 3 * C;
			PLAN_F(&p, g->ddy, N * maxout);
		}
		if (m->bn > 0) {
			PLAN_F(&p, g->dbn, N * C);
			PLAN_F(&p, g->dbh, N * (size_t)m->bn);
		}
	}
	rc = mplan_alloc(&p, m->ops, &m->act_mem, &m->act_bytes, "activations", d);
	mplan_free(&p);
	if (rc)
		return rc;
	if (m->prefix >= 0) {
		int *h = malloc((size_t)B * sizeof(int));
		if (!h)
			return diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
		for (int b = 0; b < B; b++)
			h[b] = m->np;
		m->ops->to_device(m->prefix_pos, h, (size_t)B * sizeof(int));
		free(h);
	}
	m->runs = malloc(2 * N * sizeof *m->runs);
	m->host_loss = malloc(N * sizeof *m->host_loss);
	m->host_argmax = malloc(N * sizeof *m->host_argmax);
	if (!m->runs || !m->host_loss || !m->host_argmax)
		return diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
	if (share)
		for (int l = 1; l < L; l++) {
			float *x = m->acts[l].x;
			m->acts[l] = m->acts[0];
			m->acts[l].x = x;
		}
	for (int l = 0; l < L && !share; l++) {
		struct lacts *a = &m->acts[l];
		unsigned keep = layer_keeps(m, l);
		if (!(keep & KEEP_LN1))
			a->ln1 = tr.ln1;
		if (!(keep & KEEP_QKV))
			a->qkv = tr.qkv;
		if (!(keep & KEEP_ATTY))
			a->atty = tr.atty;
		if (!(keep & KEEP_LN2))
			a->ln2 = tr.ln2;
		if (!(keep & KEEP_HM))
			a->hm = tr.hm;
	}
	m->max_b = B;
	m->max_t = T;
	return 0;
}

/* ---- the method against the architecture ---- */

/* The parameter table of hp with o (names, shapes, which train; no memory) in a zeroed m.
 * Option strings stay borrowed from o. */
static int table_make(struct model *m, const struct model_hparams *hp, const struct model_opts *o,
		      struct diag *d)
{
	m->hp = *hp;
	m->o = *o;
	m->qd = hp->n_head * hp->head_dim;
	m->kvd = hp->n_head_kv * hp->head_dim;
	m->lora_r = o->lora_rank > 0 ? o->lora_rank : 1;
	size_t maxp = 16 + (size_t)hp->n_layer * 40;
	m->params = calloc(maxp, sizeof *m->params);
	m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
	if (!m->params || !m->layers) {
		diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
		return FT_ENOMEM;
	}
	build_table(m);
	select_trainable(m);
	return 0;
}

/* Appends word to a ", "-separated list of distinct words (cap bytes). */
static void list_add(char *list, size_t cap, const char **seen, size_t *n_seen, size_t max_seen,
		     const char *word)
{
	for (size_t i = 0; i < *n_seen; i++)
		if (strcmp(seen[i], word) == 0)
			return;
	if (*n_seen < max_seen)
		seen[(*n_seen)++] = word;
	size_t len = strlen(list);
	snprintf(list + len, cap - len, "%s%s", len ? ", " : "", word);
}

static const char *arch_label(const struct model_hparams *hp)
{
	return hp->arch == ARCH_GPT2 ? "GPT-2" : "llama-family";
}

int model_check_method(const struct model_hparams *hp, const struct model_opts *o, int *out_bad,
		       struct diag *d)
{
	*out_bad = -1;
	/* (IA3 without targets takes PEFT's defaults for the architecture: nothing to check) */
	bool adapter = o->method == METHOD_LORA || o->method == METHOD_DORA ||
		       o->method == METHOD_IA3;
	if (!adapter && o->method != METHOD_FREEZE)
		return 0;
	int rc = check_hparams(hp, NULL, d);
	if (rc)
		return rc;
	const int L = hp->n_layer;
	if (o->method == METHOD_FREEZE) {
		if (o->layers_first >= L)
			return diag_set(d, FT_EINVAL, NULL, 0, 0,
					"method.layers.first is %d, but the model has %d blocks "
					"(0 to %d)", o->layers_first, L, L - 1);
		if (o->layers_last >= L)
			return diag_set(d, FT_EINVAL, NULL, 0, 0,
					"method.layers.last is %d, but the model has %d blocks "
					"(0 to %d; -1 is the last)", o->layers_last, L, L - 1);
		if (o->layers_last >= 0 && o->layers_last < o->layers_first)
			return diag_set(d, FT_EINVAL, NULL, 0, 0,
					"method.layers.last %d is before method.layers.first %d",
					o->layers_last, o->layers_first);
	}
	struct model *m = calloc(1, sizeof *m);
	if (!m)
		return diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
	if ((rc = table_make(m, hp, o, d)) != 0)
		goto done;
	/* The names a user can give: the last component of each linear (LoRA), or every
	 * component of every parameter name that is not a number, "weight" or "bias"
	 * (freeze). */
	char list[1024] = "";
	const char *seen[64];
	size_t n_seen = 0;
	char comp[64][MODEL_NAME_MAX];
	size_t n_comp = 0;
	if (adapter) {
		struct layer *y = &m->layers[0];
		const struct lin *ls[] = {&y->q, &y->k, &y->v, &y->qkv, &y->o, &y->gate, &y->up,
					  &y->down};
		for (size_t j = 0; j < FT_ARRAY_LEN(ls); j++) {
			if (ls[j]->w < 0)
				continue;
			const char *nm = m->params[ls[j]->w].name;
			size_t len = strlen(nm) - strlen(".weight");
			const char *dot = nm + len;
			while (dot > nm && dot[-1] != '.')
				dot--;
			if (n_comp < FT_ARRAY_LEN(comp)) {
				snprintf(comp[n_comp], MODEL_NAME_MAX, "%.*s", (int)(nm + len - dot), dot);
				list_add(list, sizeof list, seen, &n_seen, FT_ARRAY_LEN(seen), comp[n_comp]);
				n_comp++;
			}
		}
		for (size_t t = 0; t < o->n_targets && !o->all_linear; t++) {
			bool hit = false;
			for (int l = 0; l < L && !hit; l++) {
				if (!layer_selected(o, l))
					continue;
				struct layer *yl = &m->layers[l];
				const struct lin *ll[] = {&yl->q, &yl->k, &yl->v, &yl->qkv, &yl->o,
							  &yl->gate, &yl->up, &yl->down};
				for (size_t j = 0; j < FT_ARRAY_LEN(ll) && !hit; j++) {
					if (ll[j]->w < 0)
						continue;
					char mod[MODEL_NAME_MAX];
					snprintf(mod, sizeof mod, "%.*s",
						 (int)(strlen(m->params[ll[j]->w].name) - strlen(".weight")),
						 m->params[ll[j]->w].name);
					hit = target_matches(mod, o->targets[t]);
				}
			}
			if (!hit) {
				*out_bad = (int)t;
				rc = diag_set(d, FT_EINVAL, NULL, 0, 0,
					      "%s target '%s' matches no module of this %s model; its "
					      "linear modules are %s",
					      o->method == METHOD_IA3 ? "IA3" : "LoRA", o->targets[t],
					      arch_label(hp), list);
				const char *near = nearest_word(o->targets[t], seen, n_seen);
				if (near)
					diag_hint(d, "did you mean '%s'? (or all-linear for every one)",
						  near);
				else
					diag_hint(d, "name modules of this model, or all-linear");
				goto done;
			}
		}
	} else {
		for (size_t i = 0; i < m->n_params; i++) {
			char buf[MODEL_NAME_MAX];
			snprintf(buf, sizeof buf, "%s", m->params[i].name);
			char *save = NULL;
			for (char *c = strtok_r(buf, ".", &save); c; c = strtok_r(NULL, ".", &save)) {
				bool skip = strcmp(c, "weight") == 0 || strcmp(c, "bias") == 0 ||
					    strspn(c, "0123456789") == strlen(c);
				if (skip || n_comp >= FT_ARRAY_LEN(comp))
					continue;
				snprintf(comp[n_comp], MODEL_NAME_MAX, "%s", c);
				size_t before = n_seen;
				list_add(list, sizeof list, seen, &n_seen, FT_ARRAY_LEN(seen), comp[n_comp]);
				if (n_seen > before)
					n_comp++;
			}
		}
		if (m->head == m->wte && n_comp < FT_ARRAY_LEN(comp)) {
			snprintf(comp[n_comp], MODEL_NAME_MAX, "lm_head");
			list_add(list, sizeof list, seen, &n_seen, FT_ARRAY_LEN(seen), comp[n_comp++]);
		}
		for (size_t t = 0; t < o->n_trainable; t++) {
			bool hit = false;
			for (size_t i = 0; i < m->n_params && !hit; i++)
				hit = !strstr(m->params[i].name, ".lora_") && trainable_layer_ok(m, i) &&
				      trainable_name_ok(m, i, o->trainable[t]);
			if (!hit) {
				*out_bad = (int)t;
				rc = diag_set(d, FT_EINVAL, NULL, 0, 0,
					      "method.trainable '%s' matches no parameter of this %s "
					      "model%s; its modules are %s", o->trainable[t],
					      arch_label(hp), o->layers_first > 0 || o->layers_last >= 0
								      ? " in the chosen layers" : "",
					      list);
				const char *near = nearest_word(o->trainable[t], seen, n_seen);
				if (near)
					diag_hint(d, "did you mean '%s'?", near);
				goto done;
			}
		}
	}
done:
	free(m->params);
	free(m->layers);
	free(m);
	return rc;
}

/* ---- create / free ---- */

/* DoRA's magnitude starts as the row norms of the base weight (B = 0, so W + s B A = W),
 * as PEFT initialises it: the weight as the model keeps it (its stored type's values, the
 * values every product multiplies with). */
static int init_magnitude(struct model *m, struct mparam *pp, struct diag *d)
{
	char wn[MODEL_NAME_MAX];
	const char *suf = strstr(pp->name, ".lora_magnitude_vector");
	snprintf(wn, sizeof wn, "%.*s.weight", (int)(suf - pp->name), pp->name);
	const struct mparam *w = NULL;
	for (size_t i = 0; i < m->n_params && !w; i++)
		if (strcmp(m->params[i].name, wn) == 0)
			w = &m->params[i];
	size_t rows = (size_t)pp->pub.shape[0];
	if (!w || (size_t)w->pub.shape[0] != rows)
		return diag_set(d, FT_EINVAL, NULL, 0, 0, "model has no weight '%s'", wn);
	size_t cols = (size_t)w->pub.shape[1], bytes = param_bytes(w);
	if (!rows || !cols || !bytes)
		return diag_set(d, FT_EINVAL, NULL, 0, 0, "weight '%s' is empty", wn);
	size_t rb = bytes / rows;
	float *h = malloc(rows * sizeof(float)), *row = calloc(cols, sizeof(float));
	uint8_t *raw = malloc(bytes);
	int rc = 0;
	if (!h || !row || !raw) {
		rc = diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
		goto done;
	}
	m->ops->to_host(raw, w->w.data, bytes);
	for (size_t r = 0; r < rows; r++) {
		float g, inv;
		ops_dequant_row(w->pub.type, raw + r * rb, row, cols);
		ops_dora_row(&g, &inv, 1.0f, row, (int)cols);
		h[r] = 1.0f / inv;
	}
	m->ops->to_device(pp->pub.data, h, rows * sizeof(float));
done:
	free(h);
	free(row);
	free(raw);
	return rc;
}

int model_create(struct model **out, const struct model_file *mf, const struct model_opts *o,
		 struct diag *d)
{
	*out = NULL;
	const struct model_hparams *hp = &mf->hp;
	int rc = check_hparams(hp, mf->path, d);
	if (rc)
		return rc;
	struct model *m = calloc(1, sizeof *m);
	if (!m)
		return diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
	m->hp = *hp;
	m->o = *o;
	m->o.targets = NULL; /* not kept: borrowed strings */
	m->o.trainable = NULL;
	m->o.n_targets = m->o.n_trainable = 0;
	m->ops = o->ops ? o->ops : ops_cpu();
	m->mmflags = o->precision == PRECISION_BF16 ? OPS_BF16 : 0;
	m->training = o->method != METHOD_NONE;
	m->qd = hp->n_head * hp->head_dim;
	m->attn_scale = hp->attn_scale > 0.0f ? hp->attn_scale : 1.0f / sqrtf((float)hp->head_dim);
	if (hp->arch == ARCH_GEMMA3) /* as transformers: sqrt(hidden) rounded to float */
		m->embed_scale = (float)sqrt((double)hp->n_embd);
	m->kvd = hp->n_head_kv * hp->head_dim;
	if (o->method == METHOD_PREFIX) {
		m->np = o->prefix_tokens;
		const char *why = o->prefix_tokens <= 0 ? "num_virtual_tokens must be positive"
				  : hp->arch == ARCH_GPT2 ? "GPT-2 models are not supported yet"
				  : !m->ops->attention_prefix_forward
					  ? "this backend has no prefix attention kernels (use the cpu "
					    "backend)"
				  : o->prefix_projection &&
						  (o->prefix_hidden < 0 || o->prefix_hidden > 65536)
					  ? "encoder_hidden_size must be in [1, 65536]"
				  : o->prefix_projection && !m->ops->act_forward
					  ? "this backend has no kernels for the prefix projection"
					  : NULL;
		if (why) {
			rc = diag_set(d, FT_EUNSUPP, NULL, 0, 0, "prefix tuning: %s", why);
			goto fail;
		}
	}
	if (o->method == METHOD_LORA || o->method == METHOD_DORA) {
		m->dora = o->method == METHOD_DORA;
		if (o->lora_rank <= 0) {
			rc = diag_set(d, FT_EINVAL, NULL, 0, 0, "LoRA rank must be positive (got %d)",
				      o->lora_rank);
			goto fail;
		}
		if (o->lora_dropout < 0.0f || o->lora_dropout >= 1.0f) {
			rc = diag_set(d, FT_EINVAL, NULL, 0, 0,
				      "LoRA dropout must be in [0, 1) (got %g)", o->lora_dropout);
			goto fail;
		}
		m->lora_r = o->lora_rank;
		m->lora_s = o->rslora ? o->lora_alpha / sqrtf((float)o->lora_rank)
				      : o->lora_alpha / (float)o->lora_rank;
	}
	if (o->method == METHOD_ADAPTER) {
		const char *why = !(o->bn_reduction > 0.0)
					  ? "reduction_factor must be positive"
				  : !o->bn_attn && !o->bn_mlp
					  ? "no adapter position (after attention and/or after the MLP)"
				  : o->bn_act < OPS_ACT_RELU || o->bn_act > OPS_ACT_TANH
					  ? "unknown non-linearity"
				  : !m->ops->act_forward ? "this backend has no adapter kernels"
							 : NULL;
		if (why) {
			rc = diag_set(d, FT_EINVAL, NULL, 0, 0, "bottleneck adapters: %s", why);
			goto fail;
		}
		/* AdapterHub: int(hidden_size // reduction_factor), at least 1 */
		double w = floor((double)hp->n_embd / o->bn_reduction);
		m->bn = w < 1.0 ? 1 : w > (double)hp->n_embd * 64 ? hp->n_embd * 64 : (int)w;
	}
	/* Every LoRA target and freeze name must name something (PEFT refuses a target that
	 * matches no module; training a subset of what was asked for is a wrong result). */
	int bad;
	if ((rc = model_check_method(hp, o, &bad, d)) != 0)
		goto fail;
	/* the option strings are only needed while building the table */
	m->o.targets = o->targets;
	m->o.n_targets = o->n_targets;
	m->o.trainable = o->trainable;
	m->o.n_trainable = o->n_trainable;
	m->o.ff_targets = o->ff_targets;
	m->o.n_ff_targets = o->n_ff_targets;
	const char *ff_buf[8];
	if (o->method == METHOD_IA3)
		ia3_resolve(m, o, ff_buf, FT_ARRAY_LEN(ff_buf));

	size_t maxp = 16 + (size_t)hp->n_layer * 40;
	m->params = calloc(maxp, sizeof *m->params);
	m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
	if (!m->params || !m->layers) {
		rc = diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
		goto fail;
	}
	build_table(m);
	select_trainable(m);
	m->o.targets = NULL;
	m->o.trainable = NULL;
	m->o.ff_targets = NULL;
	m->o.n_targets = m->o.n_trainable = m->o.n_ff_targets = 0;

	/* every base tensor must exist with the right shape */
	for (size_t i = 0; i < m->n_params; i++) {
		struct mparam *p = &m->params[i];
		if (is_adapter_param(p->name))
			continue;
		const struct mf_tensor *t = find_tensor(mf, p->name);
		if (!t) {
			rc = diag_set(d, FT_EINVAL, mf->path, 0, 0, "model has no tensor '%s'",
				      p->name);
			goto fail;
		}
		if (t->numel != p->pub.numel || (t->ndim >= 1 && t->shape[0] != p->pub.shape[0])) {
			rc = diag_set(d, FT_EINVAL, mf->path, 0, 0,
				      "tensor '%s' has %zu elements (first dim %lld), expected "
				      "(%lld, %lld)",
				      p->name, t->numel, (long long)(t->ndim ? t->shape[0] : 0),
				      (long long)p->pub.shape[0], (long long)p->pub.shape[1]);
			goto fail;
		}
	}
	if (o->method == METHOD_LORA || o->method == METHOD_DORA || o->method == METHOD_IA3) {
		bool any = false; /* (prefix tuning always has its table) */
		for (size_t i = 0; i < m->n_params; i++)
			any |= is_adapter_param(m->params[i].name);
		if (!any) {
			rc = diag_set(d, FT_EINVAL, NULL, 0, 0,
				      "no linear layer matches the %s targets",
				      o->method == METHOD_IA3 ? "IA3" : "LoRA");
			goto fail;
		}
	}

	/* params group: one allocation; each parameter in its storage type */
	void **pmem = calloc(m->n_params, sizeof *pmem);
	if (!pmem) {
		rc = diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
		goto fail;
	}
	struct mplan p = {0};
	for (size_t i = 0; i < m->n_params; i++) {
		struct mparam *pp = &m->params[i];
		uint32_t st = GGML_F32;
		const struct mf_tensor *t = is_adapter_param(pp->name) ? NULL
								      : find_tensor(mf, pp->name);
		if (t)
			mf_tensor_raw(t, &st);
		pp->pub.type = storage_type(m, pp, t, st);
		mplan_add(&p, &pmem[i], param_bytes(pp));
	}
	rc = mplan_alloc(&p, m->ops, (void **)&m->param_mem, &m->param_bytes, "parameters", d);
	mplan_free(&p);
	if (rc) {
		free(pmem);
		goto fail;
	}
	for (size_t i = 0; i < m->n_params; i++) {
		struct mparam *pp = &m->params[i];
		pp->pub.data = pp->pub.type == GGML_F32 ? pmem[i] : NULL;
		pp->w = (struct ops_w){.data = pmem[i], .type = pp->pub.type,
				       .n = (int)pp->pub.shape[0], .k = (int)pp->pub.shape[1]};
	}
	free(pmem);
	struct rng r;
	rng_seed(&r, o->seed, 0x10a);
	for (size_t i = 0; i < m->n_params; i++)
		if ((rc = fill_param(m, mf, &m->params[i], &r, d)) != 0)
			goto fail;
	for (size_t i = 0; i < m->n_params; i++) /* once every frozen weight is in place */
		if (strstr(m->params[i].name, ".lora_magnitude_vector") &&
		    (rc = init_magnitude(m, &m->params[i], d)) != 0)
			goto fail;
	if (m->dora || o->method == METHOD_IA3) {
		/* scratch for W + s B A (DoRA) or W * l (IA3) of the largest such linear */
		size_t mx = 0;
		for (int l = 0; l < hp->n_layer; l++) {
			const struct layer *y = &m->layers[l];
			const struct lin *ls[] = {&y->q, &y->k,    &y->v,  &y->qkv,
						  &y->o, &y->gate, &y->up, &y->down};
			for (size_t i = 0; i < FT_ARRAY_LEN(ls); i++)
				if ((ls[i]->mag >= 0 || ls[i]->ia3_ff) &&
				    (size_t)ls[i]->out * ls[i]->in > mx)
					mx = (size_t)ls[i]->out * ls[i]->in;
		}
		m->peft_w = m->ops->alloc(mx * sizeof(float));
		if (!m->peft_w) {
			rc = diag_set(d, FT_ENOMEM, NULL, 0, 0,
				      "out of memory (%zu bytes of adapter scratch)", mx * sizeof(float));
			goto fail;
		}
	}

	/* grads group */
	p = (struct mplan){0};
	size_t nt = 0;
	for (size_t i = 0; i < m->n_params; i++)
		if (m->params[i].trainable) {
			PLAN_F(&p, m->params[i].pub.grad, m->params[i].pub.numel);
			nt++;
		}
	if (nt) {
		rc = mplan_alloc(&p, m->ops, (void **)&m->grad_mem, &m->grad_bytes, "gradients", d);
		mplan_free(&p);
		if (rc)
			goto fail;
	}
	mplan_free(&p);
	m->trainable = calloc(nt ? nt : 1, sizeof *m->trainable);
	if (!m->trainable) {
		rc = diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
		goto fail;
	}
	for (size_t i = 0; i < m->n_params; i++)
		if (m->params[i].trainable)
			m->trainable[m->n_trainable++] = i;
	if (o->method != METHOD_NONE && nt == 0) {
		rc = diag_set(d, FT_EINVAL, NULL, 0, 0,
			      "no parameter is selected for training by the method's settings");
		goto fail;
	}
	if (m->pe_emb >= 0) {
		/* the projection's activations and the table's gradient */
		size_t nh = (size_t)m->np * (size_t)m->ph;
		p = (struct mplan){0};
		PLAN_F(&p, m->pe_pre, nh);
		PLAN_F(&p, m->pe_hid, nh);
		PLAN_F(&p, m->pe_dh, nh);
		PLAN_F(&p, m->prefix_dtab, m->params[m->prefix].pub.numel);
		size_t pb;
		rc = mplan_alloc(&p, m->ops, &m->pe_mem, &pb, "prefix projection", d);
		mplan_free(&p);
		if (rc)
			goto fail;
		model_prefix_update(m);
	} else if (m->prefix >= 0) {
		m->prefix_dtab = pgrad(m, m->prefix);
	}
	/* how far the backward must go */
	m->embed_trains = m->params[m->wte].trainable || (m->wpe >= 0 && m->params[m->wpe].trainable);
	m->bw_stop_layer = hp->n_layer;
	for (size_t i = 0; i < m->n_params; i++)
		if (m->params[i].trainable && m->params[i].layer >= 0 &&
		    m->params[i].layer < m->bw_stop_layer)
			m->bw_stop_layer = m->params[i].layer;
	if (m->embed_trains || m->prefix >= 0)
		m->bw_stop_layer = 0;

	/* RoPE frequencies */
	int half = hp->head_dim / 2;
	m->inv_freq = calloc((size_t)half, sizeof(float));
	m->inv_freq_dev = m->ops->alloc((size_t)half * sizeof(float));
	if (!m->inv_freq || !m->inv_freq_dev) {
		rc = diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
		goto fail;
	}
	if (hp->arch != ARCH_GPT2) {
		ops_rope_inv_freq(m->inv_freq, hp->head_dim, hp->rope_theta > 0 ? hp->rope_theta : 10000.0f,
				  (int)hp->rope_scaling, hp->rope_scaling_factor,
				  hp->rope_low_freq_factor, hp->rope_high_freq_factor,
				  hp->rope_orig_ctx);
		m->ops->to_device(m->inv_freq_dev, m->inv_freq, (size_t)half * sizeof(float));
		if (m->hp.rope_style == ROPE_NONE)
			m->hp.rope_style = ROPE_HALF;
	}
	if (hp->arch == ARCH_GEMMA3 && hp->sliding_window > 0) {
		/* the local layers' own base, without the global layers' scaling (as both
		 * transformers and llama.cpp) */
		float *lf = malloc((size_t)half * sizeof(float));
		m->inv_freq_local_dev = m->ops->alloc((size_t)half * sizeof(float));
		if (!lf || !m->inv_freq_local_dev) {
			free(lf);
			rc = diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
			goto fail;
		}
		ops_rope_inv_freq(lf, hp->head_dim, hp->rope_theta_local, 0, 1.0f, 0, 0, 0);
		m->ops->to_device(m->inv_freq_local_dev, lf, (size_t)half * sizeof(float));
		free(lf);
	}

	if (o->max_batch > 0 && o->max_seq > 0) {
		if (hp->arch == ARCH_GPT2 && o->max_seq > hp->n_ctx_train) {
			rc = diag_set(d, FT_EINVAL, NULL, 0, 0,
				      "sequence length %d exceeds the model's %d positions",
				      o->max_seq, hp->n_ctx_train);
			goto fail;
		}
		rc = plan_acts(m, o->max_batch, o->max_seq, d);
		if (rc)
			goto fail;
	}
	*out = m;
	return 0;
fail:
	model_free(m);
	return rc;
}

void model_free(struct model *m)
{
	if (!m)
		return;
	if (m->ops) {
		if (m->param_mem)
			m->ops->free(m->param_mem);
		if (m->grad_mem)
			m->ops->free(m->grad_mem);
		if (m->act_mem)
			m->ops->free(m->act_mem);
		if (m->inv_freq_dev)
			m->ops->free(m->inv_freq_dev);
		if (m->peft_w)
			m->ops->free(m->peft_w);
		if (m->pe_mem)
			m->ops->free(m->pe_mem);
		if (m->inv_freq_local_dev)
			m->ops->free(m->inv_freq_local_dev);
	}
	free(m->inv_freq);
	free(m->runs);
	free(m->host_loss);
	free(m->host_argmax);
	free(m->acts);
	free(m->params);
	free(m->layers);
	free(m->trainable);
	free(m);
}

const struct model_hparams *model_hparams(const struct model *m)
{
	return &m->hp;
}

const struct ops *model_ops(const struct model *m)
{
	return m->ops;
}

size_t model_n_trainable(const struct model *m)
{
	return m->n_trainable;
}

const struct model_param *model_trainable(const struct model *m, size_t i)
{
	return i < m->n_trainable ? &m->params[m->trainable[i]].pub : NULL;
}

const struct model_param *model_param_find(const struct model *m, const char *name)
{
	for (size_t i = 0; i < m->n_params; i++)
		if (strcmp(m->params[i].name, name) == 0)
			return &m->params[i].pub;
	return NULL;
}

float model_lora_scale(const struct model *m)
{
	return m->lora_s;
}

double model_decode_weight_bytes(const struct model *m)
{
	double b = 0.0;
	for (size_t i = 0; i < m->n_params; i++) {
		const struct mparam *p = &m->params[i];
		bool lookup = (int)i == m->wpe || ((int)i == m->wte && m->head != m->wte);
		if (!lookup) /* a lookup reads one row per token: not counted */
			b += (double)param_bytes(p);
	}
	return b;
}

struct model_memory model_memory(const struct model *m)
{
	struct model_memory r = {m->param_bytes, m->grad_bytes, m->act_bytes, 0};
	return r;
}

void model_set_training(struct model *m, bool on)
{
	m->training = on && m->o.method != METHOD_NONE;
}

void model_set_adapter_enabled(struct model *m, bool on)
{
	m->adapter_off = !on;
}

uint64_t model_rng_counter(const struct model *m)
{
	return m->n_forward;
}

void model_set_rng_counter(struct model *m, uint64_t c)
{
	m->n_forward = c;
}

void model_zero_grad(struct model *m)
{
	if (m->grad_mem)
		m->ops->zero(m->grad_mem, m->grad_bytes / sizeof(float));
}

double model_flops_per_token(const struct model *m, int T)
{
	double n = 0.0, ntr = 0.0;
	for (size_t i = 0; i < m->n_params; i++) {
		const struct mparam *p = &m->params[i];
		if (p->pub.shape[0] <= 1 || p->pub.shape[1] <= 1 || (int)i == m->wpe)
			continue; /* vectors and position tables are not matmuls */
		if ((int)i == m->wte && m->head != m->wte)
			continue; /* an untied embedding is a lookup */
		n += (double)p->pub.numel;
		if (p->trainable)
			ntr += (double)p->pub.numel;
	}
	/* causal attention: QK^T and PV over T/2 keys on average, 2 flops each */
	double attn = 2.0 * 2.0 * m->hp.n_layer * (double)m->qd * (double)T / 2.0;
	double fwd = 2.0 * n + attn;
	if (m->o.method == METHOD_FULL)
		return 3.0 * fwd;
	return fwd + (2.0 * n + 2.0 * attn) + 2.0 * ntr;
}

/* ---- layers ---- */

/* Matmul flags for weight idx as the B operand: frozen weights are marked OPS_CONST_B so a
 * bf16 backend converts them once instead of on every call. */
static unsigned wflags(const struct model *m, int idx)
{
	return m->mmflags | ((m->mmflags & OPS_BF16) && !pgrad(m, idx) ? OPS_CONST_B : 0u);
}

/* DoRA's part of lin_forward (see struct lin): y holds x W^T, la->h = xin A^T.
 * The norm of W + s B A is computed in fp32 whatever the matmul precision. */
static void dora_forward(struct model *m, const struct lin *l, struct lora_acts *la, float *y,
			 const float *xin, int N)
{
	const struct ops *ops = m->ops;
	float *w = m->peft_w;
	if (m->dora_keep_norm) {
		ops->col_mul(la->g, model_pdata(m, l->mag), la->inv, 1, l->out, false);
	} else {
		ops->dequant_w(w, model_pw(m, l->w));
		ops->matmul(w, model_pdata(m, l->lb), model_pdata(m, l->la), l->out, l->in,
			    m->lora_r, 0, m->lora_s, 1.0f);
		ops->dora_scale(la->g, la->inv, model_pdata(m, l->mag), w, l->out, l->in);
	}
	if (la->xd) {
		/* y = x W^T - xd W^T + g * z, z = xd W^T + s h B^T */
		ops->matmul_w(la->z, xin, model_pw(m, l->w), N, OPS_TB | wflags(m, l->w), 1.0f,
			      0.0f);
		ops->axpy(y, -1.0f, la->z, (size_t)N * l->out);
	} else {
		/* y = g * z, z = x W^T + s h B^T */
		ops->copy_rows(la->z, (size_t)l->out, y, (size_t)l->out, N, l->out);
	}
	ops->matmul(la->z, la->h, model_pdata(m, l->lb), N, l->out, m->lora_r,
		    OPS_TB | m->mmflags, m->lora_s, 1.0f);
	ops->col_mul(y, la->z, la->g, N, l->out, la->xd != NULL);
	if (l->b >= 0)
		ops->bias_add(y, model_pdata(m, l->b), N, l->out);
}

/* IA3 (see struct lin). A feed-forward target multiplies W's columns (its fp32 values,
 * dequantized when W is kept in a block format) by l once per forward (an out x in
 * product) instead of scaling the (N, in) input. */
static void ia3_forward(struct model *m, const struct lin *l, struct lacts *a, float *y,
			const float *x, int N)
{
	const struct ops *ops = m->ops;
	const struct ops_w *w = model_pw(m, l->w);
	const float *lv = model_pdata(m, l->ia3);
	if (l->ia3_ff) {
		ops->dequant_w(m->peft_w, w);
		ops->col_mul(m->peft_w, m->peft_w, lv, l->out, l->in, false);
		ops->matmul(y, x, m->peft_w, N, l->out, l->in, OPS_TB | m->mmflags, 1.0f, 0.0f);
		if (l->b >= 0)
			ops->bias_add(y, model_pdata(m, l->b), N, l->out);
		return;
	}
	float *z = a->lora[l->slot].z;
	ops->matmul_w(z, x, w, N, OPS_TB | wflags(m, l->w), 1.0f, 0.0f);
	if (l->b >= 0)
		ops->bias_add(z, model_pdata(m, l->b), N, l->out);
	ops->col_mul(y, z, lv, N, l->out, false);
}

/* IA3's backward (W and b frozen): output scaling dl += colsum(dy * z), dx = (l * dy) W;
 * feed-forward dh = dy W, dl += colsum(dh * x), dx = l * dh. dx as in lin_backward. */
static void ia3_backward(struct model *m, const struct lin *l, struct lacts *a, float *dx,
			 bool acc, const float *dy, const float *x, int N)
{
	const struct ops *ops = m->ops;
	const struct ops_w *w = model_pw(m, l->w);
	const float *lv = model_pdata(m, l->ia3);
	float *dl = pgrad(m, l->ia3);
	if (l->ia3_ff) {
		float *dh = m->g.dxd;
		ops->matmul_w(dh, dy, w, N, wflags(m, l->w), 1.0f, 0.0f);
		ops->col_mul_backward(dl, dh, x, NULL, N, l->in);
		if (dx)
			ops->col_mul(dx, dh, lv, N, l->in, acc);
		return;
	}
	ops->col_mul_backward(dl, dy, a->lora[l->slot].z, NULL, N, l->out);
	if (!dx)
		return;
	ops->col_mul(m->g.ddy, dy, lv, N, l->out, false);
	ops->matmul_w(dx, m->g.ddy, w, N, wflags(m, l->w), 1.0f, acc ? 1.0f : 0.0f);
}

/* y (N, out) = x W^T + b + s B(A drop(x)) */
static void lin_forward(struct model *m, const struct lin *l, struct lacts *a, float *y,
			const float *x, int N, int layer, bool dropout)
{
	const struct ops *ops = m->ops;
	if (l->ia3 >= 0 && !m->adapter_off) {
		ia3_forward(m, l, a, y, x, N);
		return;
	}
	ops->matmul_w(y, x, model_pw(m, l->w), N, OPS_TB | wflags(m, l->w), 1.0f, 0.0f);
	/* DoRA adds the bias after the magnitude */
	if (l->b >= 0 && (l->mag < 0 || m->adapter_off))
		ops->bias_add(y, model_pdata(m, l->b), N, l->out);
	if (l->la < 0 || m->adapter_off)
		return;
	struct lora_acts *la = &a->lora[l->slot];
	const float *xin = x;
	if (la->xd) {
		float p = dropout ? m->o.lora_dropout : 0.0f;
		uint64_t stream = (m->fwd_stream << 16) | (uint64_t)(layer * LIN_SLOTS + l->slot);
		ops->dropout_forward(la->xd, la->mask, x, (size_t)N * l->in, p, m->o.seed, stream);
		xin = la->xd;
	}
	ops->matmul(la->h, xin, model_pdata(m, l->la), N, m->lora_r, l->in, OPS_TB | m->mmflags,
		    1.0f, 0.0f);
	if (l->mag >= 0) {
		dora_forward(m, l, la, y, xin, N);
		return;
	}
	ops->matmul(y, la->h, model_pdata(m, l->lb), N, l->out, m->lora_r, OPS_TB | m->mmflags,
		    m->lora_s, 1.0f);
}

/* DoRA's backward (W frozen; the norm a constant): dmag += inv * colsum(dy * z), and with
 * dg = g * dy the LoRA backward of dg; dx = dg W + dh A, or under dropout
 * dx = dy W + drop'(dg W - dy W + dh A). dx as in lin_backward. */
static void dora_backward(struct model *m, const struct lin *l, struct lora_acts *la, float *dx,
			  bool acc, const float *dy, const float *xin, int N)
{
	const struct ops *ops = m->ops;
	unsigned f = m->mmflags, wf = wflags(m, l->w);
	float *dg = m->g.ddy, *dlh = m->g.dlh;
	const struct ops_w *w = model_pw(m, l->w);
	ops->col_mul_backward(pgrad(m, l->mag), dy, la->z, la->inv, N, l->out);
	ops->col_mul(dg, dy, la->g, N, l->out, false);
	ops->matmul(pgrad(m, l->lb), dg, la->h, l->out, m->lora_r, N, OPS_TA | f, m->lora_s, 1.0f);
	ops->matmul(dlh, dg, model_pdata(m, l->lb), N, m->lora_r, l->out, f, m->lora_s, 0.0f);
	ops->matmul(pgrad(m, l->la), dlh, xin, m->lora_r, l->in, N, OPS_TA | f, 1.0f, 1.0f);
	if (!dx)
		return;
	const float *la_w = model_pdata(m, l->la);
	if (la->xd) {
		ops->matmul_w(dx, dy, w, N, wf, 1.0f, acc ? 1.0f : 0.0f);
		ops->matmul_w(m->g.dxd, dg, w, N, wf, 1.0f, 0.0f);
		ops->matmul_w(m->g.dxd, dy, w, N, wf, -1.0f, 1.0f);
		ops->matmul(m->g.dxd, dlh, la_w, N, l->in, m->lora_r, f, 1.0f, 1.0f);
		ops->dropout_backward(dx, m->g.dxd, la->mask, (size_t)N * l->in,
				      m->o.lora_dropout);
	} else {
		ops->matmul_w(dx, dg, w, N, wf, 1.0f, acc ? 1.0f : 0.0f);
		ops->matmul(dx, dlh, la_w, N, l->in, m->lora_r, f, 1.0f, 1.0f);
	}
}

/* dx (N, in) = dy W (+= when acc; dx NULL: not needed); dW += dy^T x; db += sum dy;
 * LoRA: dB += s dy^T h, dh = s dy B, dA += dh^T drop(x), dx += drop'(dh A). */
static void lin_backward(struct model *m, const struct lin *l, struct lacts *a, float *dx,
			 bool acc, const float *dy, const float *x, int N)
{
	const struct ops *ops = m->ops;
	unsigned f = m->mmflags;
	if (l->ia3 >= 0) {
		ia3_backward(m, l, a, dx, acc, dy, x, N);
		return;
	}
	float *dw = pgrad(m, l->w);
	if (dw)
		ops->matmul(dw, dy, x, l->out, l->in, N, OPS_TA | f, 1.0f, 1.0f);
	float *db = pgrad(m, l->b);
	if (db)
		ops->bias_backward(db, dy, N, l->out);
	if (dx && l->mag < 0)
		ops->matmul_w(dx, dy, model_pw(m, l->w), N, wflags(m, l->w), 1.0f, acc ? 1.0f : 0.0f);
	if (l->la < 0)
		return;
	struct lora_acts *la = &a->lora[l->slot];
	const float *xin = la->xd ? la->xd : x;
	float *dlh = m->g.dlh;
	if (l->mag >= 0) {
		dora_backward(m, l, la, dx, acc, dy, xin, N);
		return;
	}
	ops->matmul(pgrad(m, l->lb), dy, la->h, l->out, m->lora_r, N, OPS_TA | f, m->lora_s, 1.0f);
	ops->matmul(dlh, dy, model_pdata(m, l->lb), N, m->lora_r, l->out, f, m->lora_s, 0.0f);
	ops->matmul(pgrad(m, l->la), dlh, xin, m->lora_r, l->in, N, OPS_TA | f, 1.0f, 1.0f);
	if (!dx)
		return;
	if (la->xd) {
		ops->matmul(m->g.dxd, dlh, model_pdata(m, l->la), N, l->in, m->lora_r, f, 1.0f, 0.0f);
		ops->dropout_backward(dx, m->g.dxd, la->mask, (size_t)N * l->in,
				      m->o.lora_dropout);
	} else {
		ops->matmul(dx, dlh, model_pdata(m, l->la), N, l->in, m->lora_r, f, 1.0f, 1.0f);
	}
}

/* ---- bottleneck adapters ---- */

/* y (N, C) += up(act(down(u))) with the adapter's biases; keeps down(u) + b and its
 * activation for the backward. */
static void bn_forward(struct model *m, const struct bneck *b, struct lacts *a, int w, float *y,
		       const float *u, int N)
{
	const struct ops *ops = m->ops;
	int C = m->hp.n_embd, H = m->bn;
	ops->matmul(a->bn_pre[w], u, model_pdata(m, b->dw), N, H, C, OPS_TB | m->mmflags, 1.0f,
		    0.0f);
	ops->bias_add(a->bn_pre[w], model_pdata(m, b->db), N, H);
	ops->act_forward(a->bn_hid[w], a->bn_pre[w], (size_t)N * H, m->o.bn_act);
	ops->matmul(y, a->bn_hid[w], model_pdata(m, b->uw), N, C, H, OPS_TB | m->mmflags, 1.0f,
		    1.0f);
	ops->bias_add(y, model_pdata(m, b->ub), N, C);
}

/* The residual add out = x + s of sublayer w (0 attention, 1 MLP) of layer y, with its
 * bottleneck adapter A when it has one: Houlsby out = x + s + A(s); Pfeiffer u = x + s,
 * out = u + A(u). s may be overwritten; out may not alias x or s. */
static void bn_residual(struct model *m, const struct layer *y, struct lacts *a, int w,
			float *out, const float *x, float *s, int N)
{
	const struct ops *ops = m->ops;
	size_t NC = (size_t)N * m->hp.n_embd;
	const struct bneck *b = &y->bn[w];
	if (b->dw < 0 || m->adapter_off) {
		ops->add(out, x, s, NC);
		return;
	}
	if (m->o.bn_pfeiffer) {
		ops->add(a->bn_u[w], x, s, NC);
		ops->add(out, x, s, NC);
		bn_forward(m, b, a, w, out, a->bn_u[w], N);
	} else {
		ops->copy_rows(a->bn_u[w], (size_t)m->hp.n_embd, s, (size_t)m->hp.n_embd, N,
			       m->hp.n_embd);
		bn_forward(m, b, a, w, s, a->bn_u[w], N);
		ops->add(out, x, s, NC);
	}
}

/* The backward of bn_residual for sublayer w: dres holds dL/d(out) on entry and
 * dL/d(x) on exit; returns dL/d(s) (dres itself, or the scratch g->dbn for Houlsby).
 * Adapter gradients accumulate. */
static float *bn_residual_backward(struct model *m, const struct layer *y, struct lacts *a,
				   int w, float *dres, int N)
{
	const struct ops *ops = m->ops;
	const struct bneck *b = &y->bn[w];
	if (b->dw < 0)
		return dres;
	int C = m->hp.n_embd, H = m->bn;
	unsigned f = m->mmflags;
	float *du = dres; /* Pfeiffer: dL/du = dL/dout + A'(u)^T dL/dout = dL/ds = dL/dx */
	if (!m->o.bn_pfeiffer) {
		du = m->g.dbn; /* Houlsby: dL/ds = dL/dout + A'(s)^T dL/dout; dL/dx = dL/dout */
		ops->copy_rows(du, (size_t)C, dres, (size_t)C, N, C);
	}
	const float *dy = dres;
	ops->bias_backward(pgrad(m, b->ub), dy, N, C);
	ops->matmul(pgrad(m, b->uw), dy, a->bn_hid[w], C, H, N, OPS_TA | f, 1.0f, 1.0f);
	ops->matmul(m->g.dbh, dy, model_pdata(m, b->uw), N, H, C, f, 1.0f, 0.0f);
	ops->act_backward(m->g.dbh, m->g.dbh, a->bn_pre[w], (size_t)N * H, m->o.bn_act);
	ops->bias_backward(pgrad(m, b->db), m->g.dbh, N, H);
	ops->matmul(pgrad(m, b->dw), m->g.dbh, a->bn_u[w], H, C, N, OPS_TA | f, 1.0f, 1.0f);
	ops->matmul(du, m->g.dbh, model_pdata(m, b->dw), N, C, H, f, 1.0f, 1.0f);
	return du;
}

/* ---- prefix projection (PEFT's PrefixEncoder with prefix_projection) ---- */

void model_prefix_update(struct model *m)
{
	if (m->pe_emb < 0)
		return;
	const struct ops *ops = m->ops;
	int np = m->np, H = m->ph, K = m->kvd;
	int O = (int)m->params[m->prefix].pub.shape[1];
	float *tab = model_pdata(m, m->prefix);
	/* table (np, O) = tanh(E W1^T + b1) W2^T + b2 */
	ops->matmul(m->pe_pre, model_pdata(m, m->pe_emb), model_pdata(m, m->pe_w1), np, H, K,
		    OPS_TB | m->mmflags, 1.0f, 0.0f);
	ops->bias_add(m->pe_pre, model_pdata(m, m->pe_b1), np, H);
	ops->act_forward(m->pe_hid, m->pe_pre, (size_t)np * H, OPS_ACT_TANH);
	ops->matmul(tab, m->pe_hid, model_pdata(m, m->pe_w2), np, O, H, OPS_TB | m->mmflags, 1.0f,
		    0.0f);
	ops->bias_add(tab, model_pdata(m, m->pe_b2), np, O);
}

/* The projection's backward: prefix_dtab (this backward's dL/d(table)) through the MLP;
 * the gradients of its parameters accumulate. The activations are those of the last
 * model_prefix_update (the parameters have not changed since the forward). */
static void prefix_backward(struct model *m)
{
	if (m->pe_emb < 0)
		return;
	const struct ops *ops = m->ops;
	int np = m->np, H = m->ph, K = m->kvd;
	int O = (int)m->params[m->prefix].pub.shape[1];
	unsigned f = m->mmflags;
	const float *dt = m->prefix_dtab;
	ops->bias_backward(pgrad(m, m->pe_b2), dt, np, O);
	ops->matmul(pgrad(m, m->pe_w2), dt, m->pe_hid, O, H, np, OPS_TA | f, 1.0f, 1.0f);
	ops->matmul(m->pe_dh, dt, model_pdata(m, m->pe_w2), np, H, O, f, 1.0f, 0.0f);
	ops->act_backward(m->pe_dh, m->pe_dh, m->pe_pre, (size_t)np * H, OPS_ACT_TANH);
	ops->bias_backward(pgrad(m, m->pe_b1), m->pe_dh, np, H);
	ops->matmul(pgrad(m, m->pe_w1), m->pe_dh, model_pdata(m, m->pe_emb), H, K, np,
		    OPS_TA | f, 1.0f, 1.0f);
	ops->matmul(pgrad(m, m->pe_emb), m->pe_dh, model_pdata(m, m->pe_w1), np, K, H, f, 1.0f,
		    1.0f);
}

/* Attention without a KV cache in bf16: train.precision bf16 where the backend has it. */
static bool attn_bf16(const struct model *m)
{
	return (m->mmflags & OPS_BF16) && m->ops->attention_forward_bf16 &&
	       m->ops->attention_backward_bf16;
}

/* RoPE frequencies and window of layer l (Gemma 3's local layers have their own). */
static const float *layer_inv_freq(const struct model *m, int l)
{
	return m->layers[l].local && m->inv_freq_local_dev ? m->inv_freq_local_dev
							    : m->inv_freq_dev;
}

static int layer_window(const struct model *m, int l)
{
	return m->layers[l].local ? m->hp.sliding_window : 0;
}

static enum ops_rope_style rope_style(const struct model *m)
{
	return m->hp.rope_style == ROPE_INTERLEAVED ? OPS_ROPE_INTERLEAVED : OPS_ROPE_HALF;
}

void model_layer_forward(struct model *m, int l, struct lacts *a, float *out, float *tmp,
			 int B, int T, const int *pos0, const int *pos0_host, float *kc,
			 float *vc, int tk, bool dropout)
{
	const struct ops *ops = m->ops;
	const struct model_hparams *hp = &m->hp;
	const struct layer *y = &m->layers[l];
	int N = B * T, C = hp->n_embd;
	/* prefix tuning: the sequence starts at position np (the cache path's pos0 has it) */
	bool pfx = m->prefix >= 0 && !kc && !m->adapter_off;
	if (pfx)
		pos0 = m->prefix_pos;
	bool g3 = hp->arch == ARCH_GEMMA3;
	if (hp->arch != ARCH_GPT2) {
		ops->rmsnorm_forward(a->ln1, a->rstd1, a->x, model_pdata(m, y->ln1_w), N, C,
				     hp->norm_eps);
		/* gemma3: q and k are normalised per head (rows of head_dim) before RoPE */
		lin_forward(m, &y->q, a, g3 ? a->qn : a->q, a->ln1, N, l, dropout);
		lin_forward(m, &y->k, a, g3 ? a->kn : a->k, a->ln1, N, l, dropout);
		lin_forward(m, &y->v, a, a->v, a->ln1, N, l, dropout);
		if (g3) {
			ops->rmsnorm_forward(a->q, a->rstdq, a->qn, model_pdata(m, y->q_norm_w),
					     N * hp->n_head, hp->head_dim, hp->norm_eps);
			ops->rmsnorm_forward(a->k, a->rstdk, a->kn, model_pdata(m, y->k_norm_w),
					     N * hp->n_head_kv, hp->head_dim, hp->norm_eps);
		}
		const float *fr = layer_inv_freq(m, l);
		ops->rope_forward(a->q, B, T, hp->n_head, hp->head_dim, pos0, fr, rope_style(m));
		ops->rope_forward(a->k, B, T, hp->n_head_kv, hp->head_dim, pos0, fr, rope_style(m));
	} else {
		ops->layernorm_forward(a->ln1, a->mean1, a->rstd1, a->x, model_pdata(m, y->ln1_w),
				       model_pdata(m, y->ln1_b), N, C, hp->norm_eps);
		lin_forward(m, &y->qkv, a, a->qkv, a->ln1, N, l, dropout);
		ops->copy_rows(a->q, (size_t)C, a->qkv, 3 * (size_t)C, N, C);
		ops->copy_rows(a->k, (size_t)C, a->qkv + C, 3 * (size_t)C, N, C);
		ops->copy_rows(a->v, (size_t)C, a->qkv + 2 * (size_t)C, 3 * (size_t)C, N, C);
	}
	int win = layer_window(m, l);
	if (kc) {
		for (int b = 0; b < B; b++) {
			int p0 = pos0_host ? pos0_host[b] : 0;
			size_t off = ((size_t)b * tk + p0) * m->kvd;
			ops->copy_rows(kc + off, m->kvd, a->k + (size_t)b * T * m->kvd, m->kvd, T, m->kvd);
			ops->copy_rows(vc + off, m->kvd, a->v + (size_t)b * T * m->kvd, m->kvd, T, m->kvd);
		}
		ops->attention_forward(a->atty, NULL, a->q, kc, vc, B, T, tk, hp->n_head,
				       hp->n_head_kv, hp->head_dim, pos0, m->attn_scale, win);
	} else if (pfx) {
		const float *pk = model_pdata(m, m->prefix) + (size_t)2 * l * m->kvd;
		ops->attention_prefix_forward(a->atty, a->q, a->k, a->v, pk, pk + m->kvd,
					      (size_t)2 * hp->n_layer * m->kvd, B, T, m->np,
					      hp->n_head, hp->n_head_kv, hp->head_dim, m->attn_scale,
					      win);
	} else if (attn_bf16(m)) {
		ops->attention_forward_bf16(a->atty, a->att, a->q, a->k, a->v, B, T, hp->n_head,
					    hp->n_head_kv, hp->head_dim, m->attn_scale, win);
	} else {
		ops->attention_forward(a->atty, a->att, a->q, a->k, a->v, B, T, T, hp->n_head,
				       hp->n_head_kv, hp->head_dim, NULL, m->attn_scale, win);
	}
	if (g3) { /* x2 = x + norm(attention output) */
		lin_forward(m, &y->o, a, a->ao, a->atty, N, l, dropout);
		ops->rmsnorm_forward(tmp, a->rstd_ao, a->ao, model_pdata(m, y->post_attn_w), N, C,
				     hp->norm_eps);
	} else {
		lin_forward(m, &y->o, a, tmp, a->atty, N, l, dropout);
	}
	bn_residual(m, y, a, 0, a->x2, a->x, tmp, N);
	if (hp->arch != ARCH_GPT2) {
		ops->rmsnorm_forward(a->ln2, a->rstd2, a->x2, model_pdata(m, y->ln2_w), N, C,
				     hp->norm_eps);
		lin_forward(m, &y->gate, a, a->gate, a->ln2, N, l, dropout);
		lin_forward(m, &y->up, a, a->up, a->ln2, N, l, dropout);
		if (g3)
			ops->geglu_forward(a->hm, a->gate, a->up, (size_t)N * hp->n_ff);
		else
			ops->swiglu_forward(a->hm, a->gate, a->up, (size_t)N * hp->n_ff);
	} else {
		ops->layernorm_forward(a->ln2, a->mean2, a->rstd2, a->x2, model_pdata(m, y->ln2_w),
				       model_pdata(m, y->ln2_b), N, C, hp->norm_eps);
		lin_forward(m, &y->up, a, a->up, a->ln2, N, l, dropout);
		ops->gelu_forward(a->hm, a->up, (size_t)N * hp->n_ff);
	}
	if (g3) { /* out = x2 + norm(MLP output) */
		lin_forward(m, &y->down, a, a->mo, a->hm, N, l, dropout);
		ops->rmsnorm_forward(tmp, a->rstd_mo, a->mo, model_pdata(m, y->post_ffn_w), N, C,
				     hp->norm_eps);
	} else {
		lin_forward(m, &y->down, a, tmp, a->hm, N, l, dropout);
	}
	bn_residual(m, y, a, 1, out, a->x2, tmp, N);
}

void model_embed(struct model *m, float *out, const int32_t *tok, const int *pos, int n, int t)
{
	int C = m->hp.n_embd;
	m->ops->embedding_forward(out, tok, pos, model_pw(m, m->wte), model_pdata(m, m->wpe), n,
				  t, C);
	if (m->embed_scale > 0.0f)
		m->ops->scale(out, m->embed_scale, (size_t)n * C);
}

/* Final norm over n rows of x. */
static void final_norm(struct model *m, float *lnf, float *meanf, float *rstdf, const float *x,
		       int n)
{
	const struct model_hparams *hp = &m->hp;
	if (hp->arch != ARCH_GPT2)
		m->ops->rmsnorm_forward(lnf, rstdf, x, model_pdata(m, m->lnf_w), n, hp->n_embd,
					hp->norm_eps);
	else
		m->ops->layernorm_forward(lnf, meanf, rstdf, x, model_pdata(m, m->lnf_w),
					  model_pdata(m, m->lnf_b), n, hp->n_embd, hp->norm_eps);
}

static void head_matmul(struct model *m, float *logits, const float *lnf, int n)
{
	m->ops->matmul_w(logits, lnf, model_pw(m, m->head), n, OPS_TB | wflags(m, m->head), 1.0f,
			 0.0f);
}

void model_head_forward(struct model *m, float *logits, float *lnf, float *meanf, float *rstdf,
			const float *x, int n)
{
	final_norm(m, lnf, meanf, rstdf, x, n);
	head_matmul(m, logits, lnf, n);
}

/* ---- the LM head over the rows with a target ---- */

/* The head rows of this forward, as runs of consecutive positions: rows whose target is a
 * token (all rows with full_logits or without targets). Their targets go to the device in
 * head-row order. */
static int head_rows_plan(struct model *m, const int32_t *targets, int N)
{
	int V = m->hp.n_vocab;
	bool all = m->o.full_logits || !targets;
	m->n_runs = m->n_head = 0;
	int32_t *ht = targets ? malloc((size_t)N * sizeof *ht) : NULL;
	if (targets && !ht)
		return FT_ENOMEM;
	for (int i = 0; i < N; i++) {
		bool has = targets && targets[i] >= 0 && targets[i] < V;
		if (!all && !has)
			continue;
		int *last = m->n_runs ? m->runs + 2 * (size_t)(m->n_runs - 1) : NULL;
		if (last && last[0] + last[1] == i) {
			last[1]++;
		} else {
			int *run = m->runs + 2 * (size_t)m->n_runs;
			run[0] = i;
			run[1] = 1;
			m->n_runs++;
		}
		if (ht)
			ht[m->n_head] = has ? targets[i] : -1;
		m->n_head++;
	}
	if (ht && m->n_head)
		m->ops->to_device(m->tgt_dev, ht, (size_t)m->n_head * sizeof *ht);
	free(ht);
	return 0;
}

/* The head's input: the last layer's output at the head rows (no copy when they are
 * every row). */
static const float *head_input(struct model *m, int N)
{
	const float *x = m->acts[m->hp.n_layer].x;
	int C = m->hp.n_embd;
	if (m->n_head == N)
		return x;
	size_t off = 0;
	for (int r = 0; r < m->n_runs; r++) {
		int p = m->runs[2 * (size_t)r], n = m->runs[2 * (size_t)r + 1];
		m->ops->copy_rows(m->hx + off * C, (size_t)C, x + (size_t)p * C, (size_t)C, n, C);
		off += (size_t)n;
	}
	return m->hx;
}

/* Logits and cross-entropy of the head rows, head_rows at a time; with grad the chunk's
 * logits become scale * dlogits (times row_scale[row], device memory, when not NULL) at
 * once: g.dln (head rows, C) = dlogits W and the head's
 * gradient += dlogits^T lnf. stats: write loss, lse and argmax per row (the forward);
 * without, the forward's lse is used (a backward after model_forward recomputes the
 * logits, except a single chunk, which is still in the buffer). */
static long head_pass(struct model *m, bool stats, bool grad, float scale,
		      const float *row_scale)
{
	const struct ops *ops = m->ops;
	int V = m->hp.n_vocab, C = m->hp.n_embd, R = m->head_rows;
	float *dhead = grad ? pgrad(m, m->head) : NULL;
	long cnt = 0;
	int cap = m->max_b * m->max_t; /* rows of the lnf buffer */
	for (int c0 = 0; c0 < m->n_head; c0 += R) {
		int r = m->n_head - c0 < R ? m->n_head - c0 : R;
		const float *lnf = m->lnf + (size_t)c0 * C;
		int rm = r; /* rows multiplied: at least HEAD_MIN_ROWS where the buffer has them */
		if (!m->o.full_logits && rm < HEAD_MIN_ROWS)
			rm = cap - c0 < HEAD_MIN_ROWS ? cap - c0 : HEAD_MIN_ROWS;
		if (stats || m->n_head > R)
			head_matmul(m, m->logits, lnf, rm);
		if (stats) /* the argmax (a pass over the row) only for evaluation */
			cnt += ops->crossentropy_forward(m->hloss + c0, m->hlse + c0,
							 grad ? NULL : m->hargmax + c0, m->logits,
							 m->tgt_dev + c0, r, V);
		if (!grad)
			continue;
		ops->crossentropy_backward(m->logits, m->hlse + c0, m->tgt_dev + c0, r, V, scale,
					   row_scale ? row_scale + c0 : NULL);
		if (dhead)
			ops->matmul(dhead, m->logits, lnf, V, C, r, OPS_TA | m->mmflags, 1.0f, 1.0f);
		ops->matmul_w(m->g.dln + (size_t)c0 * C, m->logits, model_pw(m, m->head), r,
			      wflags(m, m->head), 1.0f, 0.0f);
	}
	return cnt;
}

/* Per-position losses and argmaxes (not computed by a fused forward: -1) on the host
 * from the head rows'. */
static int head_results(struct model *m, int N, bool have_argmax)
{
	float *hl = calloc((size_t)m->n_head + 1, sizeof *hl);
	int32_t *ha = calloc((size_t)m->n_head + 1, sizeof *ha);
	if (!hl || !ha) {
		free(hl);
		free(ha);
		return FT_ENOMEM;
	}
	m->ops->to_host(hl, m->hloss, (size_t)m->n_head * sizeof *hl);
	if (have_argmax)
		m->ops->to_host(ha, m->hargmax, (size_t)m->n_head * sizeof *ha);
	else
		for (int i = 0; i < m->n_head; i++)
			ha[i] = -1;
	for (int i = 0; i < N; i++) {
		m->host_loss[i] = 0.0f;
		m->host_argmax[i] = -1;
	}
	size_t off = 0;
	for (int r = 0; r < m->n_runs; r++) {
		const int *run = m->runs + 2 * (size_t)r;
		for (int j = 0; j < run[1]; j++, off++) {
			m->host_loss[run[0] + j] = hl[off];
			m->host_argmax[run[0] + j] = ha[off];
		}
	}
	free(hl);
	free(ha);
	return 0;
}

/* Per-position loss weights (host, B*T) into m->wrow in head-row order. */
static int head_weights(struct model *m, const float *weights)
{
	float *hw = malloc(((size_t)m->n_head + 1) * sizeof *hw);
	if (!hw)
		return FT_ENOMEM;
	size_t off = 0;
	for (int r = 0; r < m->n_runs; r++) {
		const int *run = m->runs + 2 * (size_t)r;
		for (int j = 0; j < run[1]; j++)
			hw[off++] = weights[run[0] + j];
	}
	if (m->n_head)
		m->ops->to_device(m->wrow, hw, (size_t)m->n_head * sizeof *hw);
	free(hw);
	return 0;
}

/* The backward through the final norm from g.dln (head rows, C) into g.dres (N, C),
 * zero at rows without a target. */
static void head_backward_input(struct model *m, int N)
{
	const struct ops *ops = m->ops;
	int C = m->hp.n_embd;
	bool all = m->n_head == N;
	const float *x = all ? m->acts[m->hp.n_layer].x : m->hx;
	float *dx = all ? m->g.dres : m->g.dtmp;
	if (m->hp.arch != ARCH_GPT2)
		ops->rmsnorm_backward(dx, pgrad(m, m->lnf_w), m->g.dln, x, model_pdata(m, m->lnf_w),
				      m->rstdf, m->n_head, C);
	else
		ops->layernorm_backward(dx, pgrad(m, m->lnf_w), pgrad(m, m->lnf_b), m->g.dln, x,
					model_pdata(m, m->lnf_w), m->meanf, m->rstdf, m->n_head, C);
	if (all)
		return;
	ops->zero(m->g.dres, (size_t)N * C);
	size_t off = 0;
	for (int r = 0; r < m->n_runs; r++) {
		int p = m->runs[2 * (size_t)r], n = m->runs[2 * (size_t)r + 1];
		ops->copy_rows(m->g.dres + (size_t)p * C, (size_t)C, m->g.dtmp + off * C, (size_t)C, n,
			       C);
		off += (size_t)n;
	}
}

static int forward(struct model *m, const int32_t *tokens, const int32_t *targets, int B, int T,
		   bool fuse, float loss_scale, float *out_loss, long *out_ntokens)
{
	const struct model_hparams *hp = &m->hp;
	if (!m->act_mem || B <= 0 || T <= 0 || B > m->max_b || T > m->max_t ||
	    (!targets && !m->o.full_logits) || (fuse && (!targets || !m->g.dres)))
		return FT_EINVAL;
	int N = B * T;
	for (int i = 0; i < N; i++)
		if (tokens[i] < 0 || tokens[i] >= hp->n_vocab)
			return FT_EINVAL;
	m->cur_b = B;
	m->cur_t = T;
	m->fwd_stream = m->n_forward++;
	m->have_targets = false;
	m->head_fused = false;
	m->fwd_adapter_off = m->adapter_off;
	model_prefix_update(m);
	m->ops->to_device(m->tok_dev, tokens, (size_t)N * sizeof(int32_t));
	model_embed(m, m->acts[0].x, m->tok_dev, NULL, N, T);
	for (int l = 0; l < hp->n_layer; l++)
		model_layer_forward(m, l, &m->acts[l], m->acts[l + 1].x, m->tmp, B, T, NULL, NULL,
				    NULL, NULL, 0, m->training);
	if (head_rows_plan(m, targets, N) != 0)
		return FT_ENOMEM;
	final_norm(m, m->lnf, m->meanf, m->rstdf, head_input(m, N), m->n_head);
	long cnt = 0;
	float loss = 0.0f;
	if (!targets) {
		head_matmul(m, m->logits, m->lnf, N);
	} else {
		long want = 0;
		for (int i = 0; i < N; i++)
			want += targets[i] >= 0 && targets[i] < hp->n_vocab;
		float scale = loss_scale > 0.0f ? loss_scale : want ? 1.0f / (float)want : 0.0f;
		cnt = head_pass(m, true, fuse, scale, NULL);
		if (head_results(m, N, !fuse) != 0)
			return FT_ENOMEM;
		/* the mean in double, in position order */
		double s = 0.0;
		for (int i = 0; i < N; i++)
			s += m->host_loss[i];
		loss = cnt ? (float)(s / (double)cnt) : 0.0f;
		m->have_targets = true;
		m->head_fused = fuse;
		m->fused_scale = scale;
	}
	m->cur_ntok = cnt;
	if (out_loss)
		*out_loss = loss;
	if (out_ntokens)
		*out_ntokens = cnt;
	return 0;
}

int model_forward(struct model *m, const int32_t *tokens, const int32_t *targets, int B, int T,
		  float *out_loss, long *out_ntokens)
{
	return forward(m, tokens, targets, B, T, false, 0.0f, out_loss, out_ntokens);
}

int model_forward_train(struct model *m, const int32_t *tokens, const int32_t *targets, int B,
			int T, float loss_scale, float *out_loss, long *out_ntokens)
{
	return forward(m, tokens, targets, B, T, true, loss_scale, out_loss, out_ntokens);
}

const float *model_logits(const struct model *m)
{
	return m->o.full_logits ? m->logits : NULL;
}

const float *model_token_losses(const struct model *m)
{
	return m->host_loss;
}

const int32_t *model_token_argmax(const struct model *m)
{
	return m->host_argmax;
}

int model_row_logprobs(const struct model *m, double *out, const uint8_t *mask)
{
	if (!m->have_targets || m->cur_b <= 0)
		return FT_EINVAL;
	const float *tl = m->host_loss;
	for (int b = 0; b < m->cur_b; b++) {
		double s = 0.0;
		for (int t = 0; t < m->cur_t; t++) {
			size_t i = (size_t)b * (size_t)m->cur_t + (size_t)t;
			if (!mask || mask[i])
				s += (double)tl[i]; /* 0 where the forward had no target */
		}
		out[b] = -s;
	}
	return 0;
}

static void layer_backward(struct model *m, int l, struct lacts *a, int B, int T, bool need_dx)
{
	const struct ops *ops = m->ops;
	const struct model_hparams *hp = &m->hp;
	const struct layer *y = &m->layers[l];
	struct gacts *g = &m->g;
	int N = B * T, C = hp->n_embd, F = hp->n_ff;
	size_t NC = (size_t)N * C;
	bool g3 = hp->arch == ARCH_GEMMA3;
	/* g->dres holds dL/d(out) on entry and dL/d(x) on exit */
	float *ds = bn_residual_backward(m, y, a, 1, g->dres, N); /* dL/d(MLP output) */
	if (g3) { /* through the post-MLP norm: dtmp = dL/d(down output) */
		ops->rmsnorm_backward(g->dtmp, pgrad(m, y->post_ffn_w), ds, a->mo,
				      model_pdata(m, y->post_ffn_w), a->rstd_mo, N, C);
		lin_backward(m, &y->down, a, g->dh, false, g->dtmp, a->hm, N);
	} else {
		lin_backward(m, &y->down, a, g->dh, false, ds, a->hm, N);
	}
	if (hp->arch != ARCH_GPT2) {
		if (g3)
			ops->geglu_backward(g->dgate, g->dup, g->dh, a->gate, a->up, (size_t)N * F);
		else
			ops->swiglu_backward(g->dgate, g->dup, g->dh, a->gate, a->up, (size_t)N * F);
		lin_backward(m, &y->gate, a, g->dln, false, g->dgate, a->ln2, N);
		lin_backward(m, &y->up, a, g->dln, true, g->dup, a->ln2, N);
		ops->rmsnorm_backward(g->dtmp, pgrad(m, y->ln2_w), g->dln, a->x2,
				      model_pdata(m, y->ln2_w), a->rstd2, N, C);
	} else {
		ops->gelu_backward(g->dup, g->dh, a->up, (size_t)N * F);
		lin_backward(m, &y->up, a, g->dln, false, g->dup, a->ln2, N);
		ops->layernorm_backward(g->dtmp, pgrad(m, y->ln2_w), pgrad(m, y->ln2_b), g->dln,
					a->x2, model_pdata(m, y->ln2_w), a->mean2, a->rstd2, N, C);
	}
	ops->axpy(g->dres, 1.0f, g->dtmp, NC); /* dres is now dL/d(x2) */
	ds = bn_residual_backward(m, y, a, 0, g->dres, N); /* dL/d(attention output) */
	if (g3) { /* through the post-attention norm */
		ops->rmsnorm_backward(g->dtmp, pgrad(m, y->post_attn_w), ds, a->ao,
				      model_pdata(m, y->post_attn_w), a->rstd_ao, N, C);
		lin_backward(m, &y->o, a, g->datty, false, g->dtmp, a->atty, N);
	} else {
		lin_backward(m, &y->o, a, g->datty, false, ds, a->atty, N);
	}
	const int *pos0 = NULL;
	if (m->prefix >= 0) {
		size_t off = (size_t)2 * l * m->kvd;
		const float *pk = model_pdata(m, m->prefix) + off;
		float *dpk = m->prefix_dtab + off;
		ops->attention_prefix_backward(g->dq, g->dk, g->dv, dpk, dpk + m->kvd, g->datty,
					       a->q, a->k, a->v, pk, pk + m->kvd,
					       (size_t)2 * hp->n_layer * m->kvd, B, T, m->np,
					       hp->n_head, hp->n_head_kv, hp->head_dim, m->attn_scale,
					       layer_window(m, l));
		pos0 = m->prefix_pos;
	} else if (attn_bf16(m)) {
		ops->attention_backward_bf16(g->dq, g->dk, g->dv, g->datty, a->att, a->q, a->k,
					     a->v, B, T, hp->n_head, hp->n_head_kv, hp->head_dim,
					     m->attn_scale, layer_window(m, l));
	} else {
		ops->attention_backward(g->dq, g->dk, g->dv, g->datty, a->att, a->q, a->k, a->v,
					B, T, hp->n_head, hp->n_head_kv, hp->head_dim,
					m->attn_scale, layer_window(m, l));
	}
	if (hp->arch != ARCH_GPT2) {
		const float *fr = layer_inv_freq(m, l);
		ops->rope_backward(g->dq, B, T, hp->n_head, hp->head_dim, pos0, fr, rope_style(m));
		ops->rope_backward(g->dk, B, T, hp->n_head_kv, hp->head_dim, pos0, fr, rope_style(m));
		float *dq = g->dq, *dk = g->dk;
		if (g3) { /* through the per-head q/k norms */
			ops->rmsnorm_backward(g->dq2, pgrad(m, y->q_norm_w), g->dq, a->qn,
					      model_pdata(m, y->q_norm_w), a->rstdq, N * hp->n_head,
					      hp->head_dim);
			ops->rmsnorm_backward(g->dk2, pgrad(m, y->k_norm_w), g->dk, a->kn,
					      model_pdata(m, y->k_norm_w), a->rstdk,
					      N * hp->n_head_kv, hp->head_dim);
			dq = g->dq2;
			dk = g->dk2;
		}
		lin_backward(m, &y->q, a, g->dln, false, dq, a->ln1, N);
		lin_backward(m, &y->k, a, g->dln, true, dk, a->ln1, N);
		lin_backward(m, &y->v, a, g->dln, true, g->dv, a->ln1, N);
		if (need_dx || pgrad(m, y->ln1_w))
			ops->rmsnorm_backward(g->dtmp, pgrad(m, y->ln1_w), g->dln, a->x,
					      model_pdata(m, y->ln1_w), a->rstd1, N, C);
	} else {
		ops->copy_rows(g->dqkv, 3 * (size_t)C, g->dq, (size_t)C, N, C);
		ops->copy_rows(g->dqkv + C, 3 * (size_t)C, g->dk, (size_t)C, N, C);
		ops->copy_rows(g->dqkv + 2 * (size_t)C, 3 * (size_t)C, g->dv, (size_t)C, N, C);
		lin_backward(m, &y->qkv, a, g->dln, false, g->dqkv, a->ln1, N);
		ops->layernorm_backward(g->dtmp, pgrad(m, y->ln1_w), pgrad(m, y->ln1_b), g->dln,
					a->x, model_pdata(m, y->ln1_w), a->mean1, a->rstd1, N, C);
	}
	if (need_dx)
		ops->axpy(g->dres, 1.0f, g->dtmp, NC);
}

/* The backward of the last forward with one scale per unmasked token, or (weights
 * non-NULL, host memory) one weight per position. */
static int backward(struct model *m, float loss_scale, const float *weights)
{
	const struct ops *ops = m->ops;
	const struct model_hparams *hp = &m->hp;
	if (m->n_trainable == 0 || !m->have_targets || !m->g.dres ||
	    m->fwd_adapter_off || m->adapter_off)
		return FT_EINVAL;
	int B = m->cur_b, T = m->cur_t, N = B * T, C = hp->n_embd, L = hp->n_layer;
	float scale = loss_scale > 0.0f ? loss_scale
					: (m->cur_ntok ? 1.0f / (float)m->cur_ntok : 0.0f);
	if (m->head_fused && (weights || scale != m->fused_scale))
		return FT_EINVAL; /* model_forward_train applied its one scale already */
	m->have_targets = false; /* logits become dlogits: a second backward is an error */
	if (weights) {
		if (head_weights(m, weights) != 0)
			return FT_ENOMEM;
		head_pass(m, false, true, 1.0f, m->wrow);
	} else if (!m->head_fused) {
		head_pass(m, false, true, scale, NULL);
	}
	head_backward_input(m, N);
	if (m->pe_emb >= 0) /* this backward's gradient of the table, then through the MLP */
		ops->zero(m->prefix_dtab, m->params[m->prefix].pub.numel);
	bool shared = m->o.grad_checkpointing && L > 1;
	for (int l = L - 1; l >= m->bw_stop_layer; l--) {
		if (shared && l != L - 1) /* recompute this layer's activations from its input */
			model_layer_forward(m, l, &m->acts[l], m->tmp, m->g.dtmp, B, T, NULL,
					    NULL, NULL, NULL, 0, m->training);
		bool need_dx = l > m->bw_stop_layer || m->embed_trains;
		layer_backward(m, l, &m->acts[l], B, T, need_dx);
	}
	prefix_backward(m);
	if (m->embed_trains) {
		if (m->embed_scale > 0.0f) /* d(s e)/de = s */
			ops->scale(m->g.dres, m->embed_scale, (size_t)N * C);
		ops->embedding_backward(pgrad(m, m->wte), pgrad(m, m->wpe), m->g.dres, m->tok_dev,
					NULL, N, T, C);
	}
	return 0;
}

int model_backward(struct model *m, float loss_scale)
{
	return backward(m, loss_scale, NULL);
}

int model_backward_weighted(struct model *m, const float *weights)
{
	return weights ? backward(m, 0.0f, weights) : FT_EINVAL;
}
