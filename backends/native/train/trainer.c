/* trainer: the step loop (see trainer.h). One optimizer step = grad_accum micro-batches of
 * batch_size rows. All micro-batches of a step are fetched first so that the loss scale
 * 1/(unmasked tokens of the whole step) is known before the first backward. */
#include "backends/native/train/trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/native/model/model.h"
#include "backends/native/ops/ops.h"
#include "backends/native/train/checkpoint.h"
#include "backends/native/train/optim.h"
#include "common/util.h"
#include "common/banned.h"

#define NONFINITE_MAX_STREAK 3

struct tstate {
	const struct ops *ops;     /* the model's backend (weights, grads and moments are its memory) */
	struct optim_param *op;
	float *moments;            /* m and v of every parameter, one ops->alloc (zeroed) */
	struct ckpt_tensor *ct;    /* param/, adam_m/, adam_v/ per parameter */
	char **names;
	size_t n;
};

static void tstate_free(struct tstate *s)
{
	for (size_t i = 0; s->names && i < 3 * s->n; i++)
		free(s->names[i]);
	free(s->names);
	free(s->ct);
	free(s->op);
	if (s->moments)
		s->ops->free(s->moments);
}

static int tstate_init(struct tstate *s, struct model *m, struct diag *d)
{
	memset(s, 0, sizeof(*s));
	s->ops = model_ops(m);
	s->n = model_n_trainable(m);
	if (s->n == 0)
		return diag_set(d, FT_EINVAL, "", 0, 0, "nothing to train: no trainable parameters");
	size_t total = 0;
	for (size_t i = 0; i < s->n; i++)
		if (!size_add(total, model_trainable(m, i)->numel, &total))
			return diag_set(d, FT_ENOMEM, "", 0, 0, "parameter count overflows");
	size_t bytes;
	if (!size_mul(total, 2 * sizeof(float), &bytes))
		return diag_set(d, FT_ENOMEM, "", 0, 0, "parameter count overflows");
	s->moments = s->ops->alloc(bytes ? bytes : sizeof(float));
	s->op = calloc(s->n, sizeof(*s->op));
	s->ct = calloc(3 * s->n, sizeof(*s->ct));
	s->names = calloc(3 * s->n, sizeof(*s->names));
	if (!s->moments || !s->op || !s->ct || !s->names)
		return diag_set(d, FT_ENOMEM, "", 0, 0,
				"out of memory for optimizer state (%zu bytes)", bytes);
	float *mv = s->moments;
	for (size_t i = 0; i < s->n; i++) {
		const struct model_param *p = model_trainable(m, i);
		s->op[i] = (struct optim_param){.data = p->data, .grad = p->grad, .m = mv,
						.v = mv + p->numel, .numel = p->numel,
						.decay = p->shape[0] > 1 && p->shape[1] > 1};
		mv += 2 * p->numel;
		static const char *const pre[3] = {"param/", "adam_m/", "adam_v/"};
		float *bufs[3] = {p->data, s->op[i].m, s->op[i].v};
		for (int k = 0; k < 3; k++) {
			struct strbuf b = {0};
			if (strbuf_printf(&b, "%s%s", pre[k], p->name) != 0)
				return diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
			s->names[3 * i + (size_t)k] = strbuf_detach(&b);
			s->ct[3 * i + (size_t)k] = (struct ckpt_tensor){
				s->names[3 * i + (size_t)k], bufs[k], p->numel, s->ops};
		}
	}
	return 0;
}

static void emit_metric(struct run_sink *sink, const char *split, const char *name,
			int64_t step, double v)
{
	if (sink && sink->metric)
		(void)sink->metric(sink->ud, split, name, step, v);
}

static void emit_event(struct run_sink *sink, const char *level, const char *kind,
		       const char *msg)
{
	if (sink && sink->event)
		(void)sink->event(sink->ud, level, kind, msg);
}

static int save(struct model *m, const struct tstate *s, const struct trainer_opts *o,
		const struct batch_source *src, struct ckpt_state *cs, struct diag *d)
{
	if (!o->ckpt_dir)
		return 0;
	cs->model_rng = model_rng_counter(m);
	free(cs->cursor);
	cs->cursor = NULL;
	cs->cursor_len = 0;
	if (src->save && src->save(src->ud, &cs->cursor, &cs->cursor_len) != 0)
		return diag_set(d, FT_ENOMEM, "", 0, 0, "cannot save the data cursor");
	char *path = NULL;
	int rc = ckpt_save(&path, o->ckpt_dir, cs, s->ct, 3 * s->n, d);
	if (rc == 0 && o->sink && o->sink->artifact) {
		/* Recorded relative to the run directory (the checkpoint directory's parent):
		 * "checkpoint/step-N/state.safetensors". */
		const char *cdir = strrchr(o->ckpt_dir, '/') ? strrchr(o->ckpt_dir, '/') + 1
							       : o->ckpt_dir;
		const char *sdir = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
		char rel[512];
		snprintf(rel, sizeof(rel), "%s/%s/state.safetensors", cdir, sdir);
		rc = o->sink->artifact(o->sink->ud, "checkpoint", rel);
		if (rc)
			diag_set(d, rc, "", 0, 0, "recording the checkpoint %s failed", rel);
	}
	free(path);
	return rc;
}

int trainer_run(struct trainer_result *out, struct model *m, const struct batch_source *src,
		const struct validator *val, const struct trainer_opts *o, struct diag *d)
{
	const struct config_train *tc = o->train;
	memset(out, 0, sizeof(*out));
	out->resumed_from = -1;
	struct tstate s;
	struct ckpt_state cs = {0};
	int32_t *tok = NULL, *tgt = NULL;
	int *rows = NULL, *lens = NULL;
	char *notes = NULL;
	int rc = tstate_init(&s, m, d);
	if (rc)
		goto done;
	const int B = tc->batch_size, T = src->T, A = tc->grad_accum > 0 ? tc->grad_accum : 1;
	size_t per = (size_t)B * (size_t)T;
	tok = malloc((size_t)A * per * sizeof(int32_t));
	tgt = malloc((size_t)A * per * sizeof(int32_t));
	rows = calloc((size_t)A, sizeof(int));
	lens = calloc((size_t)A, sizeof(int));
	if (!tok || !tgt || !rows || !lens) {
		rc = diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory for batches");
		goto done;
	}
	cs.best_metric = INFINITY;
	snprintf(cs.config_hash, sizeof(cs.config_hash), "%s", o->config_hash ? o->config_hash : "");
	snprintf(cs.data_hash, sizeof(cs.data_hash), "%s", o->data_hash ? o->data_hash : "");
	if (o->resume && o->ckpt_dir) {
		bool found = false;
		struct ckpt_state ls = {0};
		rc = ckpt_load(&found, &ls, &notes, o->ckpt_dir, o->config_hash, o->data_hash, s.ct,
			       3 * s.n, d);
		if (notes)
			emit_event(o->sink, "warning", "checkpoint", notes);
		if (rc)
			goto done;
		if (found) {
			if (src->restore &&
			    (rc = src->restore(src->ud, ls.cursor, ls.cursor_len, d)) != 0) {
				ckpt_state_clear(&ls);
				goto done;
			}
			ckpt_state_clear(&cs);
			cs = ls;
			model_set_rng_counter(m, cs.model_rng);
			out->resumed_from = cs.step;
			char msg[128];
			snprintf(msg, sizeof(msg), "resumed from the checkpoint of step %lld",
				 (long long)cs.step);
			emit_event(o->sink, "info", "resume", msg);
		}
	}
	double t_start = time_monotonic();
	int64_t tokens_here = 0;
	while (cs.step < o->total_steps) {
		if (o->stop && *o->stop) {
			rc = save(m, &s, o, src, &cs, d);
			if (rc == 0)
				rc = diag_set(d, FT_EINTR, "", 0, 0, "interrupted at step %lld",
					      (long long)cs.step);
			goto done;
		}
		double t0 = time_monotonic();
		long unmasked = 0, processed = 0;
		for (int a = 0; a < A; a++) {
			lens[a] = T;
			rc = src->next(src->ud, tok + (size_t)a * per, tgt + (size_t)a * per, B,
				       &rows[a], &lens[a], d);
			if (rc)
				goto done;
			if (rows[a] < 1 || rows[a] > B || lens[a] < 1 || lens[a] > T) {
				rc = diag_set(d, FT_EINTERNAL, "", 0, 0,
					      "batch source returned %d rows of %d tokens", rows[a],
					      lens[a]);
				goto done;
			}
			processed += (long)rows[a] * lens[a];
			for (size_t i = 0; i < (size_t)rows[a] * (size_t)lens[a]; i++)
				unmasked += tgt[(size_t)a * per + i] >= 0;
		}
		model_zero_grad(m);
		double loss_sum = 0.0;
		float scale = unmasked > 0 ? 1.0f / (float)unmasked : 0.0f;
		for (int a = 0; a < A && unmasked > 0; a++) {
			float loss = 0.0f;
			long nt = 0;
			rc = model_forward_train(m, tok + (size_t)a * per, tgt + (size_t)a * per,
						 rows[a], lens[a], scale, &loss, &nt);
			if (rc == 0 && nt > 0)
				rc = model_backward(m, scale);
			if (rc) {
				diag_set(d, rc, "", 0, 0, "forward/backward failed at step %lld",
					 (long long)cs.step);
				goto done;
			}
			loss_sum += (double)loss * (double)nt;
		}
		double loss = unmasked > 0 ? loss_sum / (double)unmasked : 0.0;
		double norm = grad_global_norm_ops(s.ops, s.op, s.n);
		double lr = tc->optimizer.lr *
			    lr_schedule_factor(tc->schedule.type, cs.step, o->total_steps,
					       tc->schedule.warmup_steps, tc->schedule.min_lr_ratio);
		if (!isfinite(loss) || !isfinite(norm)) {
			char msg[192];
			snprintf(msg, sizeof(msg), "step %lld: non-finite %s (loss %g, grad norm %g)",
				 (long long)cs.step + 1, isfinite(loss) ? "gradient" : "loss", loss,
				 norm);
			if (tc->nonfinite == NONFINITE_ABORT) {
				emit_event(o->sink, "error", "nonfinite", msg);
				rc = diag_set(d, FT_ERUN, "", 0, 0, "%s; nonfinite: abort", msg);
				goto done;
			}
			cs.nonfinite_streak++;
			cs.skipped++;
			emit_event(o->sink, "warning", "nonfinite", msg);
			if (cs.nonfinite_streak > NONFINITE_MAX_STREAK) {
				rc = diag_set(d, FT_ERUN, "", 0, 0,
					      "%s; more than %d non-finite steps in a row", msg,
					      NONFINITE_MAX_STREAK);
				goto done;
			}
		} else {
			cs.nonfinite_streak = 0;
			grad_clip_ops(s.ops, s.op, s.n, norm, tc->max_grad_norm);
			struct adamw_hp hp = {.lr = lr, .beta1 = tc->optimizer.beta1,
					      .beta2 = tc->optimizer.beta2, .eps = tc->optimizer.eps,
					      .weight_decay = tc->optimizer.weight_decay};
			/* t counts applied updates: skipped steps do not advance the moments. */
			adamw_step_ops(s.ops, s.op, s.n, &hp, cs.step + 1 - cs.skipped);
		}
		if (o->check && (rc = o->check(d)) != 0)
			goto done;
		cs.step++;
		cs.tokens += (int64_t)unmasked;
		tokens_here += (int64_t)processed;
		double dt = time_monotonic() - t0;
		out->last_loss = loss;
		emit_metric(o->sink, "train", "loss", cs.step, loss);
		emit_metric(o->sink, "train", "lr", cs.step, lr);
		emit_metric(o->sink, "train", "grad_norm", cs.step, norm);
		emit_metric(o->sink, "train", "tokens_per_s", cs.step,
			    dt > 0 ? (double)processed / dt : 0.0);
		if (o->sink && o->sink->progress)
			o->sink->progress(o->sink->ud, cs.step, o->total_steps, loss);
		bool last = cs.step == o->total_steps;
		if (val && val->loss && tc->eval_every > 0 && (cs.step % tc->eval_every == 0)) {
			double vl;
			if ((rc = val->loss(val->ud, m, &vl, d)) != 0)
				goto done;
			emit_metric(o->sink, "validation", "loss", cs.step, vl);
			if (tc->early_stopping.enabled) {
				if (vl < cs.best_metric - tc->early_stopping.min_delta) {
					cs.best_metric = vl;
					cs.bad_evals = 0;
				} else if (++cs.bad_evals >= tc->early_stopping.patience) {
					char msg[160];
					snprintf(msg, sizeof(msg),
						 "early stopping at step %lld: validation loss did not "
						 "improve for %lld evaluations (best %g)",
						 (long long)cs.step, (long long)cs.bad_evals,
						 cs.best_metric);
					emit_event(o->sink, "info", "early_stop", msg);
					out->early_stopped = true;
					last = true;
				}
			}
		}
		if (o->ckpt_dir && !last && tc->checkpoint_every > 0 &&
		    cs.step % tc->checkpoint_every == 0 && (rc = save(m, &s, o, src, &cs, d)) != 0)
			goto done;
		if (last) {
			if (o->ckpt_dir && (rc = save(m, &s, o, src, &cs, d)) != 0)
				goto done;
			break;
		}
	}
	double el = time_monotonic() - t_start;
	out->tokens_per_s = el > 0 ? (double)tokens_here / el : 0.0;
	rc = 0;
done:
	out->steps_done = cs.step;
	out->skipped_steps = cs.skipped;
	ckpt_state_clear(&cs);
	free(notes);
	free(tok);
	free(tgt);
	free(rows);
	free(lens);
	tstate_free(&s);
	return rc;
}
