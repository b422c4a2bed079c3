/* model_random: random weights in the shape of a model's hyperparameters (see
 * model_random.h). The tensor list mirrors what model/ looks up by name. */
#include "backends/native/io/model_random.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sys/stat.h>

#include "backends/native/io/io_internal.h"
#include "common/rng.h"
#include "common/util.h"
#include "common/banned.h"

enum init { INIT_RANDOM, INIT_ONE, INIT_ZERO };

struct builder {
	struct model_file *mf;
	size_t cap;
	uint64_t seed;
	float half_width; /* std * sqrt(3): uniform on [-w, w) */
	struct diag *d;
	int rc;
};

static void add(struct builder *b, enum init how, int64_t rows, int64_t cols, const char *fmt,
		...) FT_PRINTF(5, 6);

static void add(struct builder *b, enum init how, int64_t rows, int64_t cols, const char *fmt,
		...)
{
	if (b->rc)
		return;
	struct model_file *mf = b->mf;
	if (mf->n_tensors == b->cap) {
		size_t nc = b->cap ? 2 * b->cap : 64;
		struct mf_tensor *nt = realloc(mf->tensors, nc * sizeof *nt);
		if (!nt) {
			b->rc = diag_set(b->d, FT_ENOMEM, mf->path, 0, 0, "out of memory");
			return;
		}
		memset(nt + b->cap, 0, (nc - b->cap) * sizeof *nt);
		mf->tensors = nt;
		b->cap = nc;
	}
	char name[160];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(name, sizeof name, fmt, ap);
	va_end(ap);
	size_t numel = (size_t)rows * (size_t)(cols > 0 ? cols : 1);
	struct mf_tensor *t = &mf->tensors[mf->n_tensors];
	t->name = ft_strdup(name);
	t->data = malloc(numel * sizeof(float));
	if (!t->name || !t->data) {
		free(t->name);
		free(t->data);
		t->name = NULL;
		t->data = NULL;
		b->rc = diag_set(b->d, FT_ENOMEM, mf->path, 0, 0,
				 "out of memory: tensor %s needs %zu bytes", name,
				 numel * sizeof(float));
		return;
	}
	t->ndim = cols > 0 ? 2 : 1;
	t->shape[0] = rows;
	t->shape[1] = cols > 0 ? cols : 0;
	t->numel = numel;
	snprintf(t->src_type, sizeof t->src_type, "F32");
	if (how == INIT_RANDOM) {
		struct rng r;
		rng_seed(&r, b->seed, (uint64_t)mf->n_tensors);
		for (size_t i = 0; i < numel; i++)
			t->data[i] = b->half_width * (2.0f * rng_uniform_f(&r) - 1.0f);
	} else {
		float v = how == INIT_ONE ? 1.0f : 0.0f;
		for (size_t i = 0; i < numel; i++)
			t->data[i] = v;
	}
	mf->n_tensors++;
}

static void llama_tensors(struct builder *b, const struct model_hparams *hp)
{
	int64_t C = hp->n_embd, F = hp->n_ff, V = hp->n_vocab;
	int64_t qd = (int64_t)hp->n_head * hp->head_dim, kvd = (int64_t)hp->n_head_kv * hp->head_dim;
	add(b, INIT_RANDOM, V, C, "model.embed_tokens.weight");
	for (int l = 0; l < hp->n_layer; l++) {
		add(b, INIT_ONE, C, 0, "model.layers.%d.input_layernorm.weight", l);
		add(b, INIT_RANDOM, qd, C, "model.layers.%d.self_attn.q_proj.weight", l);
		add(b, INIT_RANDOM, kvd, C, "model.layers.%d.self_attn.k_proj.weight", l);
		add(b, INIT_RANDOM, kvd, C, "model.layers.%d.self_attn.v_proj.weight", l);
		if (hp->qkv_bias) {
			add(b, INIT_ZERO, qd, 0, "model.layers.%d.self_attn.q_proj.bias", l);
			add(b, INIT_ZERO, kvd, 0, "model.layers.%d.self_attn.k_proj.bias", l);
			add(b, INIT_ZERO, kvd, 0, "model.layers.%d.self_attn.v_proj.bias", l);
		}
		add(b, INIT_RANDOM, C, qd, "model.layers.%d.self_attn.o_proj.weight", l);
		add(b, INIT_ONE, C, 0, "model.layers.%d.post_attention_layernorm.weight", l);
		add(b, INIT_RANDOM, F, C, "model.layers.%d.mlp.gate_proj.weight", l);
		add(b, INIT_RANDOM, F, C, "model.layers.%d.mlp.up_proj.weight", l);
		add(b, INIT_RANDOM, C, F, "model.layers.%d.mlp.down_proj.weight", l);
	}
	add(b, INIT_ONE, C, 0, "model.norm.weight");
	if (!hp->tied_embeddings)
		add(b, INIT_RANDOM, V, C, "lm_head.weight");
}

static void gpt2_tensors(struct builder *b, const struct model_hparams *hp)
{
	int64_t C = hp->n_embd, F = hp->n_ff;
	add(b, INIT_RANDOM, hp->n_vocab, C, "transformer.wte.weight");
	add(b, INIT_RANDOM, hp->n_ctx_train, C, "transformer.wpe.weight");
	for (int l = 0; l < hp->n_layer; l++) {
		add(b, INIT_ONE, C, 0, "transformer.h.%d.ln_1.weight", l);
		add(b, INIT_ZERO, C, 0, "transformer.h.%d.ln_1.bias", l);
		add(b, INIT_RANDOM, 3 * C, C, "transformer.h.%d.attn.c_attn.weight", l);
		add(b, INIT_ZERO, 3 * C, 0, "transformer.h.%d.attn.c_attn.bias", l);
		add(b, INIT_RANDOM, C, C, "transformer.h.%d.attn.c_proj.weight", l);
		add(b, INIT_ZERO, C, 0, "transformer.h.%d.attn.c_proj.bias", l);
		add(b, INIT_ONE, C, 0, "transformer.h.%d.ln_2.weight", l);
		add(b, INIT_ZERO, C, 0, "transformer.h.%d.ln_2.bias", l);
		add(b, INIT_RANDOM, F, C, "transformer.h.%d.mlp.c_fc.weight", l);
		add(b, INIT_ZERO, F, 0, "transformer.h.%d.mlp.c_fc.bias", l);
		add(b, INIT_RANDOM, C, F, "transformer.h.%d.mlp.c_proj.weight", l);
		add(b, INIT_ZERO, C, 0, "transformer.h.%d.mlp.c_proj.bias", l);
	}
	add(b, INIT_ONE, C, 0, "transformer.ln_f.weight");
	add(b, INIT_ZERO, C, 0, "transformer.ln_f.bias");
}

int model_file_random(struct model_file **out, const struct model_hparams *hp, uint64_t seed,
		      float std, const char *path, struct diag *d)
{
	*out = NULL;
	if (hp->n_layer <= 0 || hp->n_embd <= 0 || hp->n_head <= 0 || hp->n_head_kv <= 0 ||
	    hp->head_dim <= 0 || hp->n_ff <= 0 || hp->n_vocab <= 0 ||
	    hp->n_head % hp->n_head_kv != 0 ||
	    (hp->arch == ARCH_GPT2 && (hp->n_ctx_train <= 0 ||
				       (int64_t)hp->n_head * hp->head_dim != hp->n_embd)))
		return diag_set(d, FT_EINVAL, path, 0, 0,
				"cannot make a model of this shape (layers %d, embd %d, heads "
				"%d/%d, head_dim %d, ff %d, vocab %d)",
				hp->n_layer, hp->n_embd, hp->n_head, hp->n_head_kv, hp->head_dim,
				hp->n_ff, hp->n_vocab);
	if (!(std > 0.0f) || std > 1.0f)
		return diag_set(d, FT_EINVAL, path, 0, 0,
				"the weights' standard deviation must be in (0, 1], not %g",
				(double)std);
	struct model_file *mf = calloc(1, sizeof *mf);
	if (!mf || !(mf->path = ft_strdup(path))) {
		free(mf);
		return diag_set(d, FT_ENOMEM, path, 0, 0, "out of memory");
	}
	mf->hp = *hp;
	mf->tok.bos_id = mf->tok.eos_id = mf->tok.pad_id = mf->tok.unk_id = -1;
	struct builder b = {.mf = mf, .seed = seed, .half_width = std * 1.7320508f, .d = d};
	if (hp->arch == ARCH_GPT2)
		gpt2_tensors(&b, hp);
	else
		llama_tensors(&b, hp);
	if (b.rc) {
		model_file_free(mf);
		return b.rc;
	}
	*out = mf;
	return 0;
}

#define CONFIG_MAX (16u << 20)
#define TOKENIZER_MAX (256u << 20)

static bool is_dir(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* path itself, or path/name when path is a directory (caller frees). */
static char *file_in(const char *path, const char *name)
{
	return is_dir(path) ? path_join(path, name) : ft_strdup(path);
}

int model_file_random_from_config(struct model_file **out, const char *config,
				  const char *tokenizer, uint64_t seed, float std,
				  struct diag *d)
{
	*out = NULL;
	struct model_file *mf = NULL;
	struct model_hparams hp;
	char *cfg_path = file_in(config, "config.json");
	char *cfg_dir = is_dir(config) ? ft_strdup(config) : path_dirname(config);
	char *tok_path = tokenizer ? file_in(tokenizer, "tokenizer.json")
				   : cfg_dir ? path_join(cfg_dir, "tokenizer.json") : NULL;
	char *tok_dir = tok_path ? path_dirname(tok_path) : NULL;
	char *tc_path = tok_dir ? path_join(tok_dir, "tokenizer_config.json") : NULL;
	char *text = NULL;
	size_t len = 0;
	int rc = 0;
	if (!cfg_path || !tok_path || !tok_dir || !tc_path) {
		rc = diag_set(d, FT_ENOMEM, config, 0, 0, "out of memory");
		goto done;
	}
	if (!path_exists(cfg_path)) {
		rc = diag_set(d, FT_EINVAL, cfg_path, 0, 0, "no such file");
		goto done;
	}
	if ((rc = file_read_all(&text, &len, cfg_path, CONFIG_MAX, d)) != 0 ||
	    (rc = hf_config_parse(&hp, text, len, cfg_path, d)) != 0)
		goto done;
	if (std <= 0.0f) {
		json_t *c = json_loadb(text, len, 0, NULL);
		json_t *ir = c ? json_object_get(c, "initializer_range") : NULL;
		std = json_is_number(ir) ? (float)json_number_value(ir) : 0.02f;
		json_decref(c);
	}
	if (!path_exists(tok_path)) {
		rc = diag_set(d, FT_EINVAL, tok_path, 0, 0,
			      "no tokenizer.json (a model needs a tokenizer: name one)");
		goto done;
	}
	if ((rc = model_file_random(&mf, &hp, seed, std, config, d)) != 0)
		goto done;
	if ((rc = file_read_all(&mf->tok.tokenizer_json, NULL, tok_path, TOKENIZER_MAX, d)) != 0)
		goto done;
	if (path_exists(tc_path) && (rc = file_read_all(&mf->tok.tokenizer_config_json, NULL,
							tc_path, CONFIG_MAX, d)) != 0)
		goto done;
	*out = mf;
	mf = NULL;
done:
	model_file_free(mf);
	free(text);
	free(cfg_path);
	free(cfg_dir);
	free(tok_path);
	free(tok_dir);
	free(tc_path);
	return rc;
}
