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
#include "backends/native/eval/evaluate.h"
#include "backends/native/io/model_file.h"
#include "backends/native/model/model.h"
#include "backends/native/native_engine.h"
#include "backends/native/ops/ops.h"
#include "backends/native/peft/adapter.h"
#include "backends/native/train/trainer.h"
#include "common/hash.h"
#include "common/util.h"
#include "schema/table.h"
#include "common/banned.h"

/* ---- the data loader as the trainer's batch source ---- */

struct loader_src {
	struct loader *ld;
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

/* ---- validation loss for eval_every and early stopping ---- */

struct val_ctx {
	const struct tokenizer *tok;
	const struct tok_set *set;
	struct eval_settings es;
};

static int val_loss(void *ud, struct model *m, double *out, struct diag *d)
{
	struct val_ctx *v = ud;
	struct eval_result r;
	int rc = eval_split(&r, m, v->tok, v->set, &v->es, d);
	model_set_training(m, true);
	if (rc)
		return rc;
	double sum = 0, n = 0;
	for (size_t i = 0; i < r.n; i++) {
		sum += r.tf_rows[3 * i];
		n += r.tf_rows[3 * i + 1];
	}
	eval_result_free(&r);
	*out = n > 0 ? sum / n : 0.0;
	return 0;
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

static const char *method_name(enum method_type t)
{
	return schema_enum_name("method.type", (int)t);
}

static void fill_model_opts(struct model_opts *o, const struct config *cfg, int max_batch,
			    int max_seq, enum method_type method, const struct ops *ops)
{
	memset(o, 0, sizeof(*o));
	const struct config_method *cm = &cfg->method;
	o->method = method;
	o->lora_rank = cm->rank;
	o->lora_alpha = (float)cm->alpha;
	o->lora_dropout = (float)cm->dropout;
	o->rslora = cm->rslora;
	o->targets = (const char *const *)cm->targets.items;
	o->n_targets = cm->targets.n;
	o->all_linear = cm->all_linear;
	o->ff_targets = (const char *const *)cm->ff_targets.items;
	o->n_ff_targets = cm->ff_targets.n;
	o->ff_auto = cm->ff_default;
	o->prefix_tokens = cm->num_virtual_tokens;
	o->trainable = (const char *const *)cm->trainable.items;
	o->n_trainable = cm->trainable.n;
	o->layers_first = cm->layers_first;
	o->layers_last = cm->layers_last;
	o->precision = cfg->train.precision;
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

/* The LoRA/DoRA/IA3 adapter in PEFT layout under run_dir/adapter/ (the weights copied to the
 * host). */
static int write_adapter(const struct run_ctx *ctx, struct model *m, const struct model_file *mf,
			 struct diag *d)
{
	const struct ops *ops = model_ops(m);
	size_t n = model_n_trainable(m), total = 0;
	for (size_t i = 0; i < n; i++)
		total += model_trainable(m, i)->numel;
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
		const struct model_param *p = model_trainable(m, i);
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

/* Evaluates base and/or tuned on every configured split. */
static int evaluate_all(const struct run_ctx *ctx, const struct model_file *mf, struct model *tuned,
			const struct tokenizer *tok, const struct data_prepared *prep, int max_batch,
			int T, const struct ops *ops, int (*check)(struct diag *d), struct diag *d)
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
	char *pdir = path_join(ctx->run_dir, "predictions");
	if (!pdir || (rc = dir_make_all(pdir, d)) != 0) {
		rc = rc ? rc : diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
		goto done;
	}
	if (want_base) {
		struct model_opts o;
		fill_model_opts(&o, cfg, max_batch, T, METHOD_NONE, ops);
		if ((rc = model_create(&base, mf, &o, d)) != 0)
			goto done;
	}
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
		double c0 = time_process_cpu();
		if (base && (rc = eval_split(&rb, base, tok, set, &es, d)) == 0) {
			have_b = true;
			eval_time_event(ctx, "base", split, set->n, &rb, time_process_cpu() - c0);
		}
		c0 = time_process_cpu();
		if (rc == 0 && trained && (rc = eval_split(&rt, tuned, tok, set, &es, d)) == 0) {
			have_t = true;
			eval_time_event(ctx, "tuned", split, set->n, &rt, time_process_cpu() - c0);
		}
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
	int rc = 0;
	omp_set_num_threads(ctx->threads > 0 ? ctx->threads : 1);
	if ((rc = model_file_load(&mf, cfg->model.base, d)) != 0)
		goto done;
	if ((rc = tokenizer_from_model_file(&tok, mf, d)) != 0)
		goto done;
	if ((rc = data_prepare(&prep, &cfg->data, cfg->model.context, tok, d)) != 0)
		goto done;
	prep_ok = true;
	char *warn = data_prepared_warnings(&prep);
	if (warn && warn[0])
		event(ctx, "warning", "data", warn);
	free(warn);
	const int T = prep.max_length > 0 ? prep.max_length : cfg->model.context;
	const int Btrain = cfg->train.batch_size > 0 ? cfg->train.batch_size : 1;
	const int max_batch = Btrain > 8 ? Btrain : 8;
	bool train = cfg->method.type != METHOD_NONE && prep.train && prep.train->n > 0;
	if (cfg->method.type != METHOD_NONE && !train) {
		rc = diag_set(d, FT_EINVAL, cfg->source_path, 0, 0,
			      "method %s needs training data (data.train)",
			      method_name(cfg->method.type));
		goto done;
	}
	struct model_opts o;
	fill_model_opts(&o, cfg, max_batch, T, train ? cfg->method.type : METHOD_NONE, ops);
	if ((rc = model_create(&m, mf, &o, d)) != 0)
		goto done;
	if (train) {
		struct loader_opts lo = {.batch_size = Btrain, .seq_len = T,
					 .packing = cfg->data.packing, .shuffle = true,
					 .fixed_len = false, .seed = cfg->seed,
					 .pad_id = tokenizer_pad(tok) >= 0 ? tokenizer_pad(tok)
					 : tokenizer_eos(tok) >= 0 ? tokenizer_eos(tok) : 0};
		if ((rc = loader_create(&ld, prep.train, &lo, d)) != 0)
			goto done;
		int64_t total = cfg->train.steps;
		if (total <= 0) {
			int64_t A = cfg->train.grad_accum > 0 ? cfg->train.grad_accum : 1;
			int64_t per = ((int64_t)loader_batches_per_epoch(ld) + A - 1) / A;
			total = (int64_t)(cfg->train.epochs > 0 ? cfg->train.epochs : 1) * (per > 0 ? per : 1);
		}
		struct loader_src ls = {.ld = ld};
		struct batch_source src = {.ud = &ls, .T = T, .next = src_next, .save = src_save,
					   .restore = src_restore};
		struct val_ctx vc = {.tok = tok, .set = prep.validation};
		struct validator val = {.ud = &vc, .loss = val_loss};
		bool have_val = prep.validation && prep.validation->n > 0;
		if (have_val) {
			const char *loss_only[] = {"loss"};
			if ((rc = eval_settings_metrics(&vc.es, loss_only, 1, d)) != 0)
				goto done;
			vc.es.batch_size = max_batch;
			vc.es.seq_len = T;
			vc.es.samples = 0;
			vc.es.stop_flag = ctx->stop;
		}
		if (cfg->train.early_stopping.enabled && cfg->train.early_stopping.metric &&
		    strcmp(cfg->train.early_stopping.metric, "validation.loss") != 0 &&
		    strcmp(cfg->train.early_stopping.metric, "validation.perplexity") != 0)
			event(ctx, "warning", "early_stop",
			      "early stopping during training watches validation.loss (lower is "
			      "better); other metrics are evaluated only at the end");
		char dh[65];
		data_hash(dh, &prep);
		ckpt = path_join(ctx->run_dir, "checkpoint");
		if (!ckpt) {
			rc = diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
			goto done;
		}
		struct trainer_opts to = {.train = &cfg->train, .total_steps = total,
					  .ckpt_dir = ckpt, .resume = ctx->resume,
					  .config_hash = cfg->config_hash, .data_hash = dh,
					  .stop = ctx->stop, .sink = ctx->sink, .check = check};
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
		if ((cfg->method.type == METHOD_LORA || cfg->method.type == METHOD_DORA ||
		     cfg->method.type == METHOD_IA3 || cfg->method.type == METHOD_PREFIX) &&
		    (rc = write_adapter(ctx, m, mf, d)) != 0)
			goto done;
		if ((rc = write_export_meta(ctx, d)) != 0)
			goto done;
	}
	rc = evaluate_all(ctx, mf, train ? m : NULL, tok, &prep, max_batch, T, ops, check, d);
	if (rc == FT_EINTR && d->code == 0)
		diag_set(d, FT_EINTR, "", 0, 0, "interrupted during evaluation");
done:
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
