/* native backend: backend_cpu(), the C engine for one sweep point. Loads the model and its
 * tokenizer, prepares the data (data/prepare), trains in-process (train/trainer) with
 * validation and checkpoints under the run directory, writes the PEFT adapter for LoRA,
 * then evaluates the base and the tuned model on the configured splits (eval/evaluate).
 * native_engine_run takes the ops table: backend_cuda() (cuda_backend.c) runs this same
 * code on the CUDA table. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "backends/backend.h"
#include "backends/native/data/prepare.h"
#include "backends/native/eval/eval_cache.h"
#include "backends/native/eval/evaluate.h"
#include "backends/native/io/model_file.h"
#include "backends/native/model/model.h"
#include "backends/native/native_engine.h"
#include "backends/native/ops/ops.h"
#include "backends/native/peft/adapter.h"
#include "backends/native/peft/bottleneck.h"
#include "backends/native/train/preference.h"
#include "backends/native/train/trainer.h"
#include "common/hash.h"
#include "common/util.h"
#include "schema/table.h"
#include "common/banned.h"

/* ---- the data loader as the trainer's batch source ---- */

struct loader_src {
	struct loader *ld;
	const double *ref; /* (2n) reference log-probabilities of the training pairs, or NULL */
};

static int src_next(void *ud, int32_t *tok, int32_t *tgt, int max_rows, int *out_rows,
		    int *out_T, struct diag *d)
{
	struct loader_src *s = ud;
	struct batch b;
	int rc = loader_next(s->ld, &b);
	if (rc)
		return diag_set(d, rc, "", 0, 0, "the training data loader failed");
	int rows = b.rows > 0 ? b.rows : 1;
	if (rows > max_rows || b.T > *out_T)
		return diag_set(d, FT_EINTERNAL, "", 0, 0, "batch of %d x %d exceeds %d x %d", rows,
				b.T, max_rows, *out_T);
	memcpy(tok, b.tokens, (size_t)rows * (size_t)b.T * sizeof(int32_t));
	memcpy(tgt, b.targets, (size_t)rows * (size_t)b.T * sizeof(int32_t));
	*out_rows = rows;
	*out_T = b.T;
	return 0;
}

static int src_next_pairs(void *ud, int32_t *tok, int32_t *tgt, uint8_t *comp, double *ref,
			  int max_pairs, int *out_pairs, int *out_T, bool *out_have_ref,
			  struct diag *d)
{
	struct loader_src *s = ud;
	struct batch b;
	int rc = loader_next(s->ld, &b);
	if (rc)
		return diag_set(d, rc, "", 0, 0, "the training data loader failed");
	int P = b.examples;
	if (P < 1 || P > max_pairs || b.T > *out_T)
		return diag_set(d, FT_EINTERNAL, "", 0, 0, "batch of %d pairs x %d exceeds %d x %d", P,
				b.T, max_pairs, *out_T);
	size_t n = (size_t)2 * (size_t)P * (size_t)b.T;
	memcpy(tok, b.tokens, n * sizeof(int32_t));
	memcpy(tgt, b.targets, n * sizeof(int32_t));
	memcpy(comp, b.comp, n);
	*out_have_ref = s->ref != NULL;
	for (int q = 0; s->ref && q < P; q++) {
		ref[q] = s->ref[2 * b.idx[q]];
		ref[P + q] = s->ref[2 * b.idx[q] + 1];
	}
	*out_pairs = P;
	*out_T = b.T;
	return 0;
}

static int src_save(void *ud, unsigned char **out, size_t *out_len)
{
	struct loader_src *s = ud;
	struct data_cursor c;
	loader_get_cursor(s->ld, &c);
	*out = malloc(sizeof(c)); // NOLINT(clang-analyzer-unix.MallocSizeof): bytes of the cursor
	if (!*out)
		return FT_ENOMEM;
	memcpy(*out, &c, sizeof(c));
	*out_len = sizeof(c);
	return 0;
}

static int src_restore(void *ud, const unsigned char *p, size_t n, struct diag *d)
{
	struct loader_src *s = ud;
	struct data_cursor c;
	if (n != sizeof(c))
		return diag_set(d, FT_EINVAL, "", 0, 0,
				"the checkpoint's data cursor has %zu bytes, expected %zu", n, sizeof(c));
	memcpy(&c, p, sizeof(c));
	return loader_set_cursor(s->ld, &c, d);
}

/* ---- validation for eval_every and early stopping ---- */

struct val_ctx {
	const struct tokenizer *tok;
	const struct tok_set *set;
	struct eval_settings es;
	const char *metric; /* the metric early stopping watches ("loss" without it) */
	/* preference objectives: the mean preference loss of the validation pairs */
	const struct pref_params *pref;
	const double *ref;
	int max_pairs, T;
	int32_t pad;
	bool nll_all;
};

static int val_evaluate(void *ud, struct model *m, double *out_loss, double *out_metric,
			struct diag *d)
{
	struct val_ctx *v = ud;
	if (v->pref) {
		struct pref_stats st;
		int rc = pref_evaluate(&st, m, v->set, v->ref, v->pref, v->max_pairs, v->T, v->pad,
				       v->nll_all, d);
		model_set_training(m, true);
		/* early stopping on preference data watches the validation loss (check refuses
		 * other metrics): the mean preference loss of the pairs */
		*out_loss = *out_metric = pref_stats_loss(&st, v->pref);
		return rc;
	}
	struct eval_result r;
	int rc = eval_split(&r, m, v->tok, v->set, &v->es, d);
	model_set_training(m, true);
	if (rc)
		return rc;
	rc = eval_value(out_loss, &r, &v->es, "loss", d);
	if (!rc)
		rc = eval_value(out_metric, &r, &v->es, v->metric, d);
	eval_result_free(&r);
	return rc;
}

/* ---- helpers ---- */

static void event(const struct run_ctx *ctx, const char *level, const char *kind, const char *msg)
{
	if (ctx->sink && ctx->sink->event)
		(void)ctx->sink->event(ctx->sink->ud, level, kind, msg);
}

static void artifact(const struct run_ctx *ctx, const char *kind, const char *rel)
{
	if (ctx->sink && ctx->sink->artifact)
		(void)ctx->sink->artifact(ctx->sink->ud, kind, rel);
}

/* What a run cost, recorded as metrics of split "cost" when it finishes (docs/store.md):
 * wall and CPU seconds of training, training tokens per second, wall seconds of the base
 * and the tuned evaluation, and the peak resident memory of the run and of its training
 * (model load included; the base's evaluation, when it is not reused, adds a second model). */
struct run_cost {
	int64_t steps;
	bool trained;
	double train_s, train_cpu_s, tokens_per_s, base_eval_s, tuned_eval_s, train_peak;
};

static int emit_cost(const struct run_ctx *ctx, const struct run_cost *c, struct diag *d)
{
	if (!ctx->sink || !ctx->sink->metric)
		return 0;
	struct {
		const char *name;
		double v;
		bool on;
	} m[] = {
		{"train_seconds", c->train_s, c->trained},
		{"train_cpu_seconds", c->train_cpu_s, c->trained},
		{"tokens_per_s", c->tokens_per_s, c->trained},
		{"base_eval_seconds", c->base_eval_s, true},
		{"tuned_eval_seconds", c->tuned_eval_s, c->trained},
		{"train_peak_rss_bytes", c->train_peak, c->trained},
		{"peak_rss_bytes", (double)mem_peak_rss(), true},
	};
	for (size_t i = 0; i < FT_ARRAY_LEN(m); i++) {
		if (!m[i].on)
			continue;
		int rc = ctx->sink->metric(ctx->sink->ud, "cost", m[i].name, c->steps, m[i].v);
		if (rc)
			return diag_set(d, rc, NULL, 0, 0, "could not record the run's cost (%s)",
					m[i].name);
	}
	return 0;
}

static const char *method_name(enum method_type t)
{
	return schema_enum_name("method.type", (int)t);
}

void native_model_opts(struct model_opts *o, const struct config *cfg, int max_batch,
		       int max_seq, enum method_type method, const struct ops *ops)
{
	memset(o, 0, sizeof(*o));
	const struct config_method *cm = &cfg->method;
	o->method = method;
	o->lora_rank = cm->rank;
	o->lora_alpha = (float)cm->alpha;
	o->lora_dropout = (float)cm->dropout;
	o->rslora = cm->rslora;
	o->bn_pfeiffer = cm->pfeiffer;
	o->bn_attn = cm->attn_adapter;
	o->bn_mlp = cm->mlp_adapter;
	o->bn_reduction = cm->reduction_factor;
	o->bn_act = cm->non_linearity;
	o->targets = (const char *const *)cm->targets.items;
	o->n_targets = cm->targets.n;
	o->all_linear = cm->all_linear;
	o->ff_targets = (const char *const *)cm->ff_targets.items;
	o->n_ff_targets = cm->ff_targets.n;
	o->ff_auto = cm->ff_default;
	o->prefix_tokens = cm->num_virtual_tokens;
	o->prefix_projection = cm->prefix_projection;
	o->prefix_hidden = cm->encoder_hidden_size;
	o->trainable = (const char *const *)cm->trainable.items;
	o->n_trainable = cm->trainable.n;
	o->layers_first = cm->layers_first;
	o->layers_last = cm->layers_last;
	o->precision = cfg->train.precision;
	o->quantize = cfg->model.quantize;
	o->max_batch = max_batch;
	o->max_seq = max_seq;
	o->seed = cfg->seed;
	o->grad_checkpointing = cfg->train.grad_checkpointing;
	o->ops = ops;
}

/* sha256 over the content hashes of the declared data files. */
static void data_hash(char out[65], const struct data_prepared *p)
{
	struct sha256 s;
	sha256_init(&s);
	const struct dataset *ds[3] = {p->splits.train, p->splits.validation, p->splits.test};
	for (int i = 0; i < 3; i++)
		sha256_update(&s, ds[i] ? ds[i]->file_hash : "-", ds[i] ? 64 : 1);
	sha256_final_hex(&s, out);
}

/* ---- DPO's reference for full and freeze: log-probabilities computed once ---- */

#define REF_FILE "reference_logps.json"

/* Reads run_dir/reference_logps.json when it was made for this config and data and has
 * the expected counts; *ok false otherwise (the caller recomputes). */
static int ref_load(bool *ok, double *train, size_t n_train, double *val, size_t n_val,
		    const char *path, const char *config_hash, const char *data_hash)
{
	*ok = false;
	json_error_t err;
	json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
	if (!j)
		return 0;
	const char *ch = json_string_value(json_object_get(j, "config_hash"));
	const char *dh = json_string_value(json_object_get(j, "data_hash"));
	json_t *jt = json_object_get(j, "train"), *jv = json_object_get(j, "validation");
	bool good = ch && dh && strcmp(ch, config_hash) == 0 && strcmp(dh, data_hash) == 0 &&
		    json_is_array(jt) && json_array_size(jt) == 2 * n_train &&
		    (!val || (json_is_array(jv) && json_array_size(jv) == 2 * n_val));
	for (size_t i = 0; good && i < 2 * n_train; i++) {
		json_t *x = json_array_get(jt, i);
		good = json_is_number(x);
		train[i] = json_number_value(x);
	}
	for (size_t i = 0; good && val && i < 2 * n_val; i++) {
		json_t *x = json_array_get(jv, i);
		good = json_is_number(x);
		val[i] = json_number_value(x);
	}
	json_decref(j);
	*ok = good;
	return 0;
}

static int ref_save(const char *path, const double *train, size_t n_train, const double *val,
		    size_t n_val, const char *config_hash, const char *data_hash, struct diag *d)
{
	json_t *j = json_pack("{s:i,s:s,s:s,s:o,s:o}", "version", 1, "config_hash", config_hash,
			      "data_hash", data_hash, "train", json_array(), "validation",
			      json_array());
	int rc = j ? 0 : FT_ENOMEM;
	json_t *jt = j ? json_object_get(j, "train") : NULL;
	json_t *jv = j ? json_object_get(j, "validation") : NULL;
	for (size_t i = 0; !rc && i < 2 * n_train; i++)
		rc = json_array_append_new(jt, json_real(train[i])) ? FT_ENOMEM : 0;
	for (size_t i = 0; !rc && val && i < 2 * n_val; i++)
		rc = json_array_append_new(jv, json_real(val[i])) ? FT_ENOMEM : 0;
	char *text = rc ? NULL : json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(17));
	json_decref(j);
	if (!text)
		return diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory writing %s", path);
	rc = file_write_atomic(path, text, strlen(text), d);
	free(text);
	return rc;
}

/* The reference log-probabilities of the training and validation pairs under the model
 * before any update: loaded from the run directory when a resumed run saved them (the
 * weights have moved since), else computed and saved there. */
static int reference_logps(double **out_train, double **out_val, const struct run_ctx *ctx,
			   struct model *m, const struct data_prepared *prep, int max_pairs, int T,
			   int32_t pad, const char *data_hash, struct diag *d)
{
	const struct tok_set *tr = prep->train, *va = prep->validation;
	size_t nt = tr->n, nv = va && va->pair ? va->n : 0;
	double *rt = malloc((2 * nt + 1) * sizeof *rt), *rv = nv ? malloc(2 * nv * sizeof *rv) : NULL;
	char *path = path_join(ctx->run_dir, REF_FILE);
	int rc = 0;
	bool ok = false;
	if (!rt || (nv && !rv) || !path) {
		rc = diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
		goto done;
	}
	if (ctx->resume && (rc = ref_load(&ok, rt, nt, rv, nv, path, ctx->cfg->config_hash,
					  data_hash)) != 0)
		goto done;
	if (ok) {
		event(ctx, "info", "reference",
		      "reference log-probabilities loaded from " REF_FILE " (made before step 1)");
	} else {
		if ((rc = pref_set_logps(rt, m, tr, max_pairs, T, pad, d)) != 0 ||
		    (nv && (rc = pref_set_logps(rv, m, va, max_pairs, T, pad, d)) != 0) ||
		    (rc = ref_save(path, rt, nt, rv, nv, ctx->cfg->config_hash, data_hash, d)) != 0)
			goto done;
		artifact(ctx, "reference", REF_FILE);
	}
	model_set_training(m, true);
	*out_train = rt;
	*out_val = rv;
	rt = rv = NULL;
done:
	free(rt);
	free(rv);
	free(path);
	return rc;
}

/* Tensor i of the PEFT adapter: the trainable parameters, or (tab non-NULL) the one table
 * PEFT saves for prefix_projection. */
static const struct model_param *adapter_param(const struct model *m,
					       const struct model_param *tab, size_t i)
{
	return tab ? tab : model_trainable(m, i);
}

/* The LoRA/DoRA/IA3/prefix adapter in PEFT layout under run_dir/adapter/ (the weights copied
 * to the host). prefix_projection: the computed prompt_embeddings, as PEFT saves them. */
static int write_adapter(const struct run_ctx *ctx, struct model *m, const struct model_file *mf,
			 struct diag *d)
{
	const struct ops *ops = model_ops(m);
	const struct model_param *tab = NULL;
	if (ctx->cfg->method.type == METHOD_PREFIX && ctx->cfg->method.prefix_projection) {
		model_prefix_update(m);
		tab = model_param_find(m, "prompt_embeddings");
	}
	size_t n = tab ? 1 : model_n_trainable(m), total = 0;
	for (size_t i = 0; i < n; i++)
		total += adapter_param(m, tab, i)->numel;
	struct lora_tensor *lt = calloc(n ? n : 1, sizeof(*lt));
	char **mods = calloc(n ? n : 1, sizeof(*mods));
	float *host = malloc((total ? total : 1) * sizeof(float));
	char *dir = path_join(ctx->run_dir, "adapter");
	int rc = 0;
	size_t n_mods = 0, off = 0;
	if (!lt || !mods || !host || !dir) {
		rc = diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
		goto done;
	}
	for (size_t i = 0; i < n; i++) {
		const struct model_param *p = adapter_param(m, tab, i);
		ops->to_host(host + off, p->data, p->numel * sizeof(float));
		lt[i] = (struct lora_tensor){(char *)p->name, host + off, p->shape[0], p->shape[1]};
		off += p->numel;
		char mod[64];
		if (!lora_module_name(mod, sizeof(mod), p->name))
			continue;
		bool seen = false;
		for (size_t k = 0; k < n_mods; k++)
			seen |= strcmp(mods[k], mod) == 0;
		if (!seen && !(mods[n_mods++] = ft_strdup(mod))) {
			rc = diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
			goto done;
		}
	}
	const struct config_method *cm = &ctx->cfg->method;
	const struct model_hparams *hp = &mf->hp;
	struct lora_info info = {.rank = cm->rank, .alpha = cm->alpha, .dropout = cm->dropout,
				 .rslora = cm->rslora, .use_dora = cm->type == METHOD_DORA,
				 .ia3 = cm->type == METHOD_IA3, .prefix = cm->type == METHOD_PREFIX,
				 .num_virtual_tokens = cm->num_virtual_tokens,
				 .num_layers = hp->n_layer,
				 .prefix_projection = cm->prefix_projection,
				 .encoder_hidden_size = cm->encoder_hidden_size,
				 .targets = mods, .n_targets = n_mods,
				 .fan_in_fan_out = hp->arch == ARCH_GPT2,
				 .base_model = mf->hf_repo ? mf->hf_repo : ctx->cfg->model.base,
				 .interleaved = hp->rope_style == ROPE_INTERLEAVED,
				 .n_head = hp->n_head, .n_head_kv = hp->n_head_kv,
				 .head_dim = hp->head_dim};
	rc = adapter_write_peft(dir, lt, n, &info, d);
	if (rc == 0) {
		artifact(ctx, "adapter", "adapter/adapter_model.safetensors");
		artifact(ctx, "adapter", "adapter/adapter_config.json");
	}
done:
	for (size_t k = 0; mods && k < n_mods; k++)
		free(mods[k]);
	free(mods);
	free(lt);
	free(host);
	free(dir);
	return rc;
}

/* The bottleneck adapters in AdapterHub's layout under run_dir/adapter/ (adapter.safetensors,
 * adapter_config.json), the weights copied to the host. */
static int write_bottleneck(const struct run_ctx *ctx, struct model *m,
			    const struct model_file *mf, struct diag *d)
{
	const struct ops *ops = model_ops(m);
	size_t n = model_n_trainable(m), total = 0;
	for (size_t i = 0; i < n; i++)
		total += model_trainable(m, i)->numel;
	struct lora_tensor *lt = calloc(n ? n : 1, sizeof(*lt));
	float *host = malloc((total ? total : 1) * sizeof(float));
	char *dir = path_join(ctx->run_dir, "adapter");
	int rc = 0;
	if (!lt || !host || !dir) {
		rc = diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
		goto done;
	}
	size_t off = 0;
	for (size_t i = 0; i < n; i++) {
		const struct model_param *p = model_trainable(m, i);
		ops->to_host(host + off, p->data, p->numel * sizeof(float));
		lt[i] = (struct lora_tensor){(char *)p->name, host + off, p->shape[0], p->shape[1]};
		off += p->numel;
	}
	const struct config_method *cm = &ctx->cfg->method;
	const struct model_hparams *hp = &mf->hp;
	struct bn_info info = {.attn = cm->attn_adapter, .mlp = cm->mlp_adapter,
			       .pfeiffer = cm->pfeiffer, .reduction = cm->reduction_factor,
			       .act = cm->non_linearity, .hidden_size = hp->n_embd,
			       .model_type = hp->arch == ARCH_GEMMA3 ? "gemma3"
					     : hp->arch == ARCH_GPT2 ? "gpt2"
								     : "llama"};
	rc = bottleneck_write(dir, lt, n, &info, d);
	if (rc == 0) {
		artifact(ctx, "adapter", "adapter/adapter.safetensors");
		artifact(ctx, "adapter", "adapter/adapter_config.json");
	}
done:
	free(lt);
	free(host);
	free(dir);
	return rc;
}

/* run_dir/export.json: what `ftlab export` needs to rebuild the weights. */
static int write_export_meta(const struct run_ctx *ctx, struct diag *d)
{
	json_t *j = json_pack("{s:s,s:s,s:i}", "base_model", ctx->cfg->model.base, "method",
			      method_name(ctx->cfg->method.type), "version", 1);
	char *text = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
	json_decref(j);
	char *p = path_join(ctx->run_dir, "export.json");
	int rc = text && p ? file_write_atomic(p, text, strlen(text), d)
			   : diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
	free(text);
	free(p);
	return rc;
}

/* An info event with the time an evaluation took (the run's time split into training,
 * base and tuned evaluation). */
static void eval_time_event(const struct run_ctx *ctx, const char *model, const char *split,
			    size_t n, const struct eval_result *r, double cpu)
{
	char msg[224];
	snprintf(msg, sizeof(msg),
		 "evaluated %s on %s (%zu examples) in %.1f s (process CPU %.1f s): teacher-forced "
		 "%.1f s, generation %.1f s", model, split, n, r->tf_seconds + r->gen_seconds, cpu,
		 r->tf_seconds, r->gen_seconds);
	event(ctx, "info", "eval", msg);
}

/* ---- the base model's evaluation, once per base model ---- */

/* What a base model's evaluation depends on besides its examples (eval_cache_key adds
 * those): the model file's content, model.* but the path, the evaluation settings that
 * change numbers (not samples, bootstrap or the split list: eval_emit uses those), the
 * numerics (precision, batch plan, ops table) and, only where sampling uses it, the seed.
 * The binary's version too, so an upgrade re-evaluates. */
static int base_eval_settings(char **out, const struct config *cfg, int max_batch, int T,
			      const struct ops *ops, struct diag *d)
{
	*out = NULL;
	char sha[65];
	int rc = hash_path_hex(sha, NULL, cfg->model.base, d);
	if (rc)
		return rc;
	json_t *c = json_loads(cfg->canonical_json ? cfg->canonical_json : "{}", 0, NULL);
	json_t *model = json_deep_copy(json_object_get(c, "model"));
	json_t *ev = json_deep_copy(json_object_get(c, "eval"));
	json_t *train = json_object_get(c, "train");
	if (json_is_object(model))
		json_object_del(model, "base");
	const char *drop[] = {"samples", "bootstrap", "splits", "compare_base"};
	for (size_t i = 0; json_is_object(ev) && i < FT_ARRAY_LEN(drop); i++)
		json_object_del(ev, drop[i]);
	json_t *k = json_pack("{s:s,s:s,s:o*,s:o*,s:O?,s:i,s:i,s:s,s:I}", "version", FTLAB_VERSION,
			      "model_sha256", sha, "model", model, "eval", ev, "precision",
			      json_object_get(train, "precision"), "max_batch", max_batch, "seq", T,
			      "ops", ops->name, "seed",
			      (json_int_t)(cfg->eval.generate.temperature > 0 ? cfg->seed : 0));
	*out = k ? json_dumps(k, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(k);
	json_decref(c);
	return *out ? 0 : diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
}

/* The base model's evaluation of one split into *out: reused from the workspace's
 * base-eval directory when an earlier run of this base made it with the same examples and
 * settings, else computed (creating *base on first use) and saved there. */
static int base_eval(struct eval_result *out, bool *have, struct model **base,
		     const struct run_ctx *ctx, const struct model_file *mf,
		     const struct tokenizer *tok, const struct tok_set *set,
		     const struct eval_settings *es, const char *settings, const char *split,
		     int max_batch, int T, const struct ops *ops, struct diag *d)
{
	char key[65], origin[128] = "", file[80];
	char *path = NULL;
	int rc = 0;
	*have = false;
	if (settings) {
		eval_cache_key(key, settings, set);
		snprintf(file, sizeof file, "%s.json", key);
		if (!(path = path_join(ctx->base_eval_dir, file)))
			return diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
		if ((rc = eval_cache_load(out, have, origin, sizeof origin, path, key, set)) != 0)
			goto done;
		if (*have) {
			char msg[320];
			snprintf(msg, sizeof msg, "base model on %s (%zu examples): evaluation reused from "
				 "run %s (same model file, examples and evaluation settings)", split,
				 set->n, origin[0] ? origin : "?");
			event(ctx, "info", "base_eval", msg);
			goto done;
		}
	}
	if (!*base) {
		struct model_opts o;
		native_model_opts(&o, ctx->cfg, max_batch, T, METHOD_NONE, ops);
		if ((rc = model_create(base, mf, &o, d)) != 0)
			goto done;
	}
	double c0 = time_process_cpu();
	if ((rc = eval_split(out, *base, tok, set, es, d)) != 0)
		goto done;
	*have = true;
	eval_time_event(ctx, "base", split, set->n, out, time_process_cpu() - c0);
	if (path) {
		struct diag sd;
		diag_init(&sd);
		if (dir_make_all(ctx->base_eval_dir, &sd) != 0 ||
		    eval_cache_save(path, key, ctx->run_id, out, set, &sd) != 0) {
			char msg[1300];
			snprintf(msg, sizeof msg, "the base model's evaluation of %s was not kept for "
				 "later runs: %s", split, sd.text);
			event(ctx, "warning", "base_eval", msg);
		}
	}
done:
	free(path);
	return rc;
}

/* Evaluates base and/or tuned on every configured split. */
static int evaluate_all(const struct run_ctx *ctx, const struct model_file *mf, struct model *tuned,
			const struct tokenizer *tok, const struct data_prepared *prep, int max_batch,
			int T, const struct ops *ops, int (*check)(struct diag *d),
			struct run_cost *cost, struct diag *d)
{
	const struct config *cfg = ctx->cfg;
	struct eval_settings es;
	int rc = eval_settings_from_config(&es, &cfg->eval, cfg->seed, max_batch, T, d);
	if (rc)
		return rc;
	es.stop_flag = ctx->stop;
	bool trained = cfg->method.type != METHOD_NONE && tuned;
	bool want_base = !trained || cfg->eval.compare_base;
	struct model *base = NULL;
	char *settings = NULL;
	char *pdir = path_join(ctx->run_dir, "predictions");
	if (!pdir || (rc = dir_make_all(pdir, d)) != 0) {
		rc = rc ? rc : diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
		goto done;
	}
	if (want_base && ctx->base_eval_dir &&
	    (rc = base_eval_settings(&settings, cfg, max_batch, T, ops, d)) != 0)
		goto done;
	for (size_t i = 0; i < cfg->eval.splits.n; i++) {
		const char *split = cfg->eval.splits.items[i];
		const struct tok_set *set = data_prepared_split(prep, split);
		if (!set || set->n == 0) {
			char msg[160];
			snprintf(msg, sizeof(msg), "eval split '%s' has no examples; skipped", split);
			event(ctx, "warning", "eval", msg);
			continue;
		}
		struct eval_result rb = {0}, rt = {0};
		bool have_b = false, have_t = false;
		char rel[192];
		snprintf(rel, sizeof(rel), "predictions/%s.jsonl", split);
		char *pp = path_join(ctx->run_dir, rel);
		if (!pp) {
			rc = diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
			goto done;
		}
		double w0 = time_monotonic();
		if (want_base)
			rc = base_eval(&rb, &have_b, &base, ctx, mf, tok, set, &es, settings, split,
				       max_batch, T, ops, d);
		cost->base_eval_s += time_monotonic() - w0;
		double c0 = time_process_cpu();
		w0 = time_monotonic();
		if (rc == 0 && trained && (rc = eval_split(&rt, tuned, tok, set, &es, d)) == 0) {
			have_t = true;
			eval_time_event(ctx, "tuned", split, set->n, &rt, time_process_cpu() - c0);
		}
		cost->tuned_eval_s += time_monotonic() - w0;
		if (rc == 0 && check)
			rc = check(d);
		if (rc == 0) {
			if (have_t)
				rc = eval_emit(ctx->sink, split, "tuned", have_b ? &rb : NULL, &rt, set, &es,
					       pp, d);
			else
				rc = eval_emit(ctx->sink, split, "base", NULL, &rb, set, &es, pp, d);
		}
		if (rc == 0 && path_exists(pp)) /* only written when predictions were made */
			artifact(ctx, "predictions", rel);
		if (have_b)
			eval_result_free(&rb);
		if (have_t)
			eval_result_free(&rt);
		free(pp);
		if (rc)
			goto done;
	}
done:
	model_free(base);
	free(settings);
	free(pdir);
	return rc;
}

int native_engine_run(const struct run_ctx *ctx, const struct ops *ops,
		      int (*check)(struct diag *d), struct diag *d)
{
	const struct config *cfg = ctx->cfg;
	struct model_file *mf = NULL;
	struct tokenizer *tok = NULL;
	struct data_prepared prep;
	bool prep_ok = false;
	struct model *m = NULL;
	struct loader *ld = NULL;
	char *ckpt = NULL;
	double *ref_train = NULL, *ref_val = NULL;
	int rc = 0;
	struct run_cost cost = {0};
	(void)mem_peak_reset(); /* the run's own peak, not an earlier run's in this process */
	omp_set_num_threads(ctx->threads > 0 ? ctx->threads : 1);
	if ((rc = model_file_load(&mf, cfg->model.base, d)) != 0)
		goto done;
	if ((rc = tokenizer_from_model_file(&tok, mf, d)) != 0)
		goto done;
	if ((rc = data_prepare(&prep, &cfg->data, cfg->model.context, tok, d)) != 0)
		goto done;
	prep_ok = true;
	{
		struct eval_settings es;
		if ((rc = eval_settings_metrics(&es, (const char *const *)cfg->eval.metrics.items,
						cfg->eval.metrics.n, d)) != 0)
			goto done;
		if (eval_wants_choices(&es) &&
		    (rc = data_prepare_choices(&prep, tok, (const char *const *)cfg->eval.choices.items,
					       cfg->eval.choices.n,
					       (const char *const *)cfg->eval.splits.items,
					       cfg->eval.splits.n, d)) != 0)
			goto done;
	}
	char *warn = data_prepared_warnings(&prep);
	if (warn && warn[0])
		event(ctx, "warning", "data", warn);
	free(warn);
	const int T = prep.max_length > 0 ? prep.max_length : cfg->model.context;
	const int Btrain = cfg->train.batch_size > 0 ? cfg->train.batch_size : 1;
	struct pref_params pp;
	pref_params_from_config(&pp, &cfg->train);
	const bool pref = cfg->train.objective != OBJECTIVE_SFT;
	/* a preference micro-batch is batch_size pairs: twice as many rows */
	const int rows = pref ? 2 * Btrain : Btrain;
	const int max_batch = rows > 8 ? rows : 8;
	const int max_pairs = max_batch / 2;
	const int32_t pad = tokenizer_pad(tok) >= 0 ? tokenizer_pad(tok)
			    : tokenizer_eos(tok) >= 0 ? tokenizer_eos(tok) : 0;
	bool train = cfg->method.type != METHOD_NONE && prep.train && prep.train->n > 0;
	if (pref && train && !prep.train->pair) {
		rc = diag_set(d, FT_EINVAL, cfg->source_path, 0, 0,
			      "train.objective %s needs preference data",
			      schema_enum_name("train.objective", (int)cfg->train.objective));
		goto done;
	}
	if (cfg->method.type != METHOD_NONE && !train) {
		rc = diag_set(d, FT_EINVAL, cfg->source_path, 0, 0,
			      "method %s needs training data (data.train)",
			      method_name(cfg->method.type));
		goto done;
	}
	struct model_opts o;
	native_model_opts(&o, cfg, max_batch, T, train ? cfg->method.type : METHOD_NONE, ops);
	if ((rc = model_create(&m, mf, &o, d)) != 0)
		goto done;
	{
		/* What the plan allocated: train.grad_checkpointing shows here (activations of
		 * each layer's input only). */
		struct model_memory mm = model_memory(m);
		char msg[192];
		snprintf(msg, sizeof(msg),
			 "memory: parameters %zu bytes, gradients %zu, activations %zu (batch %d x "
			 "%d tokens%s)", mm.params, mm.grads, mm.acts, max_batch, T,
			 cfg->train.grad_checkpointing ? ", gradient checkpointing" : "");
		event(ctx, "info", "memory", msg);
	}
	if (train) {
		bool nll_all = cfg->train.objective == OBJECTIVE_ORPO && cfg->data.train_on_inputs;
		struct loader_opts lo = {.batch_size = Btrain, .seq_len = T,
					 .packing = cfg->data.packing, .pairs = pref,
					 .nll_all = nll_all, .shuffle = true,
					 .fixed_len = false, .seed = cfg->seed, .pad_id = pad};
		if ((rc = loader_create(&ld, prep.train, &lo, d)) != 0)
			goto done;
		int64_t total = cfg->train.steps;
		if (total <= 0) {
			int64_t A = cfg->train.grad_accum > 0 ? cfg->train.grad_accum : 1;
			int64_t per = ((int64_t)loader_batches_per_epoch(ld) + A - 1) / A;
			total = (int64_t)(cfg->train.epochs > 0 ? cfg->train.epochs : 1) * (per > 0 ? per : 1);
		}
		char dh[65];
		data_hash(dh, &prep);
		/* DPO's reference: the adapter methods (LoRA, DoRA, IA3, prefix) switch their
		 * adapter off in every step; full and freeze change the weights themselves, so
		 * their reference is computed now, once */
		if (pref && pref_needs_reference(&pp) &&
		    (cfg->method.type == METHOD_FULL || cfg->method.type == METHOD_FREEZE) &&
		    (rc = reference_logps(&ref_train, &ref_val, ctx, m, &prep, max_pairs, T, pad, dh,
					  d)) != 0)
			goto done;
		struct loader_src ls = {.ld = ld, .ref = ref_train};
		struct batch_source src = {.ud = &ls, .T = T, .next = src_next, .save = src_save,
					   .restore = src_restore,
					   .next_pairs = pref ? src_next_pairs : NULL};
		/* Validation every eval_every steps: the loss, and the metric early stopping
		 * watches (generation settings from eval.generate when it is a text metric). */
		const struct config_train *tc = &cfg->train;
		const char *es_metric = tc->early_stopping.enabled && tc->early_stopping.metric &&
						strchr(tc->early_stopping.metric, '.')
					? strchr(tc->early_stopping.metric, '.') + 1
					: "loss";
		struct val_ctx vc = {.tok = tok, .set = prep.validation, .metric = es_metric,
				     .pref = pref ? &pp : NULL, .ref = ref_val,
				     .max_pairs = max_pairs, .T = T, .pad = pad, .nll_all = nll_all};
		struct validator val = {.ud = &vc, .evaluate = val_evaluate};
		bool have_val = prep.validation && prep.validation->n > 0;
		if ((tc->eval_every > 0 || tc->early_stopping.enabled) && !have_val) {
			rc = diag_set(d, FT_EINVAL, cfg->source_path, 0, 0,
				      "train.eval_every%s evaluates the validation split, which has "
				      "no examples", tc->early_stopping.enabled
							     ? " (and train.early_stopping)" : "");
			goto done;
		}
		if (have_val && !pref) {
			if ((rc = eval_settings_from_config(&vc.es, &cfg->eval, cfg->seed, max_batch, T,
							    d)) != 0)
				goto done;
			const char *names[] = {"loss", es_metric};
			if ((rc = eval_settings_metrics(&vc.es, names, 2, d)) != 0)
				goto done;
			vc.es.samples = 0;
			vc.es.bootstrap = 0;
			vc.es.stop_flag = ctx->stop;
		}
		ckpt = path_join(ctx->run_dir, "checkpoint");
		if (!ckpt) {
			rc = diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
			goto done;
		}
		struct trainer_opts to = {.train = &cfg->train, .total_steps = total,
					  .ckpt_dir = ckpt, .resume = ctx->resume,
					  .config_hash = cfg->config_hash, .data_hash = dh,
					  .stop = ctx->stop, .sink = ctx->sink, .check = check,
					  .pref = pref ? &pp : NULL};
		struct trainer_result res;
		double t_train = time_monotonic(), c_train = time_process_cpu();
		rc = trainer_run(&res, m, &src, have_val ? &val : NULL, &to, d);
		if (rc)
			goto done;
		t_train = time_monotonic() - t_train;
		c_train = time_process_cpu() - c_train;
		char msg[256];
		snprintf(msg, sizeof(msg),
			 "trained %lld steps (%s) in %.1f s (process CPU %.1f s), %.0f tokens/s, last "
			 "loss %.4f%s",
			 (long long)res.steps_done, method_name(cfg->method.type), t_train, c_train,
			 res.tokens_per_s, res.last_loss, res.early_stopped ? ", early-stopped" : "");
		event(ctx, "info", "train", msg);
		cost = (struct run_cost){.steps = res.steps_done, .trained = true, .train_s = t_train,
					 .train_cpu_s = c_train, .tokens_per_s = res.tokens_per_s,
					 .train_peak = (double)mem_peak_rss()};
		if ((cfg->method.type == METHOD_LORA || cfg->method.type == METHOD_DORA ||
		     cfg->method.type == METHOD_IA3 || cfg->method.type == METHOD_PREFIX) &&
		    (rc = write_adapter(ctx, m, mf, d)) != 0)
			goto done;
		if (cfg->method.type == METHOD_ADAPTER &&
		    (rc = write_bottleneck(ctx, m, mf, d)) != 0)
			goto done;
		if ((rc = write_export_meta(ctx, d)) != 0)
			goto done;
	}
	rc = evaluate_all(ctx, mf, train ? m : NULL, tok, &prep, max_batch, T, ops, check, &cost,
			  d);
	if (rc == 0)
		rc = emit_cost(ctx, &cost, d);
	if (rc == FT_EINTR && d->code == 0)
		diag_set(d, FT_EINTR, "", 0, 0, "interrupted during evaluation");
done:
	free(ref_train);
	free(ref_val);
	loader_free(ld);
	model_free(m);
	if (prep_ok)
		data_prepared_free(&prep);
	tokenizer_free(tok);
	model_file_free(mf);
	free(ckpt);
	return rc;
}

static int native_run(const struct run_ctx *ctx, struct diag *d)
{
	return native_engine_run(ctx, ops_cpu(), NULL, d);
}

static bool native_available(char *why, size_t why_len)
{
	(void)why;
	(void)why_len;
	return true;
}

static const struct backend cpu_backend = {BACKEND_CPU, native_available, native_run};

const struct backend *backend_cpu(void)
{
	return &cpu_backend;
}
