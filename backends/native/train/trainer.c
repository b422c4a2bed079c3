/* trainer: the step loop (see trainer.h). One optimizer step = grad_accum micro-batches of
 * batch_size rows (or pairs). All micro-batches of a step are fetched first so that the
 * loss scale (1/(unmasked tokens of the whole step); 1/(its examples) for a preference
 * loss) is known before the first backward. */
#include "backends/native/train/trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/native/model/model.h"
#include "backends/native/ops/ops.h"
#include "backends/native/train/checkpoint.h"
#include "backends/native/train/optim.h"
#include "backends/native/train/preference.h"
#include "common/util.h"
#include "common/banned.h"

#define NONFINITE_MAX_STREAK 3

struct tstate {
	const struct ops *ops;     /* the model's backend (weights, grads and moments are its memory) */
	struct optim_param *op;
	float *moments;            /* the optimizer's state of every parameter, one ops->alloc (zeroed) */
	struct ckpt_tensor *ct;    /* per parameter: param/ and the state (adam_m/, adam_v/ or momentum/) */
	char **names;
	size_t n;
	size_t per;                /* checkpoint tensors per parameter: 3 (AdamW) or 2 (SGD) */
};

static void tstate_free(struct tstate *s)
{
	for (size_t i = 0; s->names && i < s->per * s->n; i++)
		free(s->names[i]);
	free(s->names);
	free(s->ct);
	free(s->op);
	if (s->moments)
		s->ops->free(s->moments);
}

static int tstate_init(struct tstate *s, struct model *m, enum optimizer_type type,
		       struct diag *d)
{
	memset(s, 0, sizeof(*s));
	s->ops = model_ops(m);
	s->n = model_n_trainable(m);
	/* AdamW keeps two moments per weight, SGD one momentum buffer. */
	bool sgd = type == OPTIMIZER_SGD;
	size_t states = sgd ? 1 : 2;
	s->per = 1 + states;
	if (s->n == 0)
		return diag_set(d, FT_EINVAL, "", 0, 0, "nothing to train: no trainable parameters");
	size_t total = 0;
	for (size_t i = 0; i < s->n; i++)
		if (!size_add(total, model_trainable(m, i)->numel, &total))
			return diag_set(d, FT_ENOMEM, "", 0, 0, "parameter count overflows");
	size_t bytes;
	if (!size_mul(total, states * sizeof(float), &bytes))
		return diag_set(d, FT_ENOMEM, "", 0, 0, "parameter count overflows");
	s->moments = s->ops->alloc(bytes ? bytes : sizeof(float));
	s->op = calloc(s->n, sizeof(*s->op));
	s->ct = calloc(s->per * s->n, sizeof(*s->ct));
	s->names = calloc(s->per * s->n, sizeof(*s->names));
	if (!s->moments || !s->op || !s->ct || !s->names)
		return diag_set(d, FT_ENOMEM, "", 0, 0,
				"out of memory for optimizer state (%zu bytes)", bytes);
	float *mv = s->moments;
	for (size_t i = 0; i < s->n; i++) {
		const struct model_param *p = model_trainable(m, i);
		s->op[i] = (struct optim_param){.data = p->data, .grad = p->grad, .m = mv,
						.v = sgd ? NULL : mv + p->numel, .numel = p->numel,
						.decay = p->shape[0] > 1 && p->shape[1] > 1};
		mv += states * p->numel;
		static const char *const adam_pre[3] = {"param/", "adam_m/", "adam_v/"};
		static const char *const sgd_pre[2] = {"param/", "momentum/"};
		float *bufs[3] = {p->data, s->op[i].m, s->op[i].v};
		for (size_t k = 0; k < s->per; k++) {
			struct strbuf b = {0};
			if (strbuf_printf(&b, "%s%s", sgd ? sgd_pre[k] : adam_pre[k], p->name) != 0)
				return diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
			s->names[s->per * i + k] = strbuf_detach(&b);
			s->ct[s->per * i + k] = (struct ckpt_tensor){
				s->names[s->per * i + k], bufs[k], p->numel, s->ops};
		}
	}
	return 0;
}

static void emit_metric(struct run_sink *sink, int *err, const char *split, const char *name,
			int64_t step, double v)
{
	if (sink && sink->metric) {
		int r = sink->metric(sink->ud, split, name, step, v);
		if (r && !*err)
			*err = r;
	}
}

static void emit_event(struct run_sink *sink, const char *level, const char *kind,
		       const char *msg)
{
	if (sink && sink->event)
		(void)sink->event(sink->ud, level, kind, msg);
}

struct emit_ctx {
	struct run_sink *sink;
	int *err; /* the first sink error, as emit_metric keeps it */
	int64_t step;
};

static void emit_pref(void *ud, const char *name, double v)
{
	struct emit_ctx *e = ud;
	emit_metric(e->sink, e->err, "train", name, e->step, v);
}

/* The pair batches of one preference step. */
struct pair_bufs {
	int32_t *tok, *tgt;    /* (A, 2B, T) */
	uint8_t *comp;         /* (A, 2B, T) */
	double *ref;           /* (A, 2B) */
	bool *have_ref;        /* (A) */
};

static void pair_bufs_free(struct pair_bufs *p)
{
	free(p->tok);
	free(p->tgt);
	free(p->comp);
	free(p->ref);
	free(p->have_ref);
}

/* Fetches A micro-batches of pairs, then runs each (forward, the loss of the whole step
 * scaled by its usable examples, backward). Returns the step's loss in *out_loss and
 * sums its statistics into st; rows x length of the policy forwards in *processed. */
static int pref_step(double *out_loss, long *processed, long *examples, struct pref_stats *st,
		     struct model *m, const struct batch_source *src, const struct pref_params *pp,
		     struct pair_bufs *pb, int *pairs, int *lens, int A, int B, int T,
		     struct diag *d)
{
	size_t per = (size_t)2 * (size_t)B * (size_t)T;
	double usable = 0, nll_tokens = 0;
	*processed = 0;
	*examples = 0;
	for (int a = 0; a < A; a++) {
		lens[a] = T;
		int rc = src->next_pairs(src->ud, pb->tok + (size_t)a * per, pb->tgt + (size_t)a * per,
					 pb->comp + (size_t)a * per, pb->ref + (size_t)a * 2 * B, B,
					 &pairs[a], &lens[a], &pb->have_ref[a], d);
		if (rc)
			return rc;
		if (pairs[a] < 1 || pairs[a] > B || lens[a] < 1 || lens[a] > T)
			return diag_set(d, FT_EINTERNAL, "", 0, 0,
					"batch source returned %d pairs of %d tokens", pairs[a], lens[a]);
		double e, nt;
		pref_batch_counts(&e, &nt, pb->tgt + (size_t)a * per, pb->comp + (size_t)a * per,
				  pairs[a], lens[a]);
		usable += e;
		nll_tokens += nt;
		*processed += 2L * pairs[a] * lens[a];
		*examples += pairs[a];
	}
	model_zero_grad(m);
	memset(st, 0, sizeof *st);
	for (int a = 0; a < A && usable > 0; a++) {
		int rc = pref_micro_batch(m, pb->tok + (size_t)a * per, pb->tgt + (size_t)a * per,
					  pb->comp + (size_t)a * per, pairs[a], lens[a],
					  pb->have_ref[a] ? pb->ref + (size_t)a * 2 * B : NULL, pp,
					  usable, nll_tokens, true, st, d);
		if (rc)
			return rc;
	}
	*out_loss = pref_stats_loss(st, pp);
	return 0;
}

/* Fetches A micro-batches first, so that the loss scale 1/(unmasked tokens of the whole
 * step) is known before the first backward, then runs each. */
static int sft_step(double *out_loss, long *processed, long *unmasked, struct model *m,
		    const struct batch_source *src, int32_t *tok, int32_t *tgt, int *rows, int *lens,
		    int A, int B, int T, struct diag *d)
{
	size_t per = (size_t)B * (size_t)T;
	*processed = *unmasked = 0;
	for (int a = 0; a < A; a++) {
		lens[a] = T;
		int rc = src->next(src->ud, tok + (size_t)a * per, tgt + (size_t)a * per, B, &rows[a],
				   &lens[a], d);
		if (rc)
			return rc;
		if (rows[a] < 1 || rows[a] > B || lens[a] < 1 || lens[a] > T)
			return diag_set(d, FT_EINTERNAL, "", 0, 0,
					"batch source returned %d rows of %d tokens", rows[a], lens[a]);
		*processed += (long)rows[a] * lens[a];
		for (size_t i = 0; i < (size_t)rows[a] * (size_t)lens[a]; i++)
			*unmasked += tgt[(size_t)a * per + i] >= 0;
	}
	model_zero_grad(m);
	double loss_sum = 0.0;
	float scale = *unmasked > 0 ? 1.0f / (float)*unmasked : 0.0f;
	for (int a = 0; a < A && *unmasked > 0; a++) {
		float loss = 0.0f;
		long nt = 0;
		int rc = model_forward_train(m, tok + (size_t)a * per, tgt + (size_t)a * per,
					     rows[a], lens[a], scale, &loss, &nt);
		if (rc == 0 && nt > 0)
			rc = model_backward(m, scale);
		if (rc)
			return rc;
		loss_sum += (double)loss * (double)nt;
	}
	*out_loss = *unmasked > 0 ? loss_sum / (double)*unmasked : 0.0;
	return 0;
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
	int rc = ckpt_save(&path, o->ckpt_dir, cs, s->ct, s->per * s->n, d);
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
	struct pair_bufs pb = {0};
	const struct pref_params *pp = o->pref && o->pref->objective != OBJECTIVE_SFT ? o->pref : NULL;
	int rc = tstate_init(&s, m, tc->optimizer.type, d);
	if (rc)
		goto done;
	const int B = tc->batch_size, T = src->T, A = tc->grad_accum > 0 ? tc->grad_accum : 1;
	size_t per = (size_t)B * (size_t)T;
	rows = calloc((size_t)A, sizeof(int));
	lens = calloc((size_t)A, sizeof(int));
	if (pp) {
		if (!src->next_pairs) {
			rc = diag_set(d, FT_EINTERNAL, "", 0, 0, "a preference objective needs pairs");
			goto done;
		}
		pb.tok = malloc((size_t)A * 2 * per * sizeof(int32_t));
		pb.tgt = malloc((size_t)A * 2 * per * sizeof(int32_t));
		pb.comp = malloc((size_t)A * 2 * per);
		pb.ref = malloc((size_t)A * 2 * (size_t)B * sizeof(double));
		pb.have_ref = calloc((size_t)A, sizeof(bool));
		if (!pb.tok || !pb.tgt || !pb.comp || !pb.ref || !pb.have_ref) {
			rc = diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory for batches");
			goto done;
		}
	} else {
		tok = malloc((size_t)A * per * sizeof(int32_t));
		tgt = malloc((size_t)A * per * sizeof(int32_t));
	}
	if ((!pp && (!tok || !tgt)) || !rows || !lens) {
		rc = diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory for batches");
		goto done;
	}
	cs.best_metric = INFINITY;
	/* The metric early stopping watches: "validation.NAME" (the schema allows nothing
	 * else); lower is better for loss and perplexity, higher for the others. */
	const char *es_metric = tc->early_stopping.metric ? tc->early_stopping.metric : "";
	const char *es_name = strchr(es_metric, '.') ? strchr(es_metric, '.') + 1 : "loss";
	bool es_higher = strcmp(es_name, "loss") != 0 && strcmp(es_name, "perplexity") != 0;
	snprintf(cs.config_hash, sizeof(cs.config_hash), "%s", o->config_hash ? o->config_hash : "");
	snprintf(cs.data_hash, sizeof(cs.data_hash), "%s", o->data_hash ? o->data_hash : "");
	if (o->resume && o->ckpt_dir) {
		bool found = false;
		struct ckpt_state ls = {0};
		rc = ckpt_load(&found, &ls, &notes, o->ckpt_dir, o->config_hash, o->data_hash, s.ct,
			       s.per * s.n, d);
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
	int sink_err = 0;
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
		double loss = 0.0;
		struct pref_stats pst;
		if (pp) {
			long ex = 0;
			rc = pref_step(&loss, &processed, &ex, &pst, m, src, pp, &pb, rows, lens, A, B, T,
				       d);
			/* tokens trained: the completions' */
			for (int a = 0; rc == 0 && a < A; a++)
				for (size_t i = 0; i < (size_t)2 * (size_t)rows[a] * (size_t)lens[a]; i++)
					unmasked += pb.comp[(size_t)a * 2 * per + i];
		} else {
			rc = sft_step(&loss, &processed, &unmasked, m, src, tok, tgt, rows, lens, A, B, T,
				      d);
		}
		if (rc) {
			if (!d->code)
				diag_set(d, rc, "", 0, 0, "forward/backward failed at step %lld",
					 (long long)cs.step);
			goto done;
		}
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
			/* t counts applied updates: skipped steps do not advance the moments. */
			int64_t t = cs.step + 1 - cs.skipped;
			if (tc->optimizer.type == OPTIMIZER_SGD) {
				struct sgd_hp hp = {.lr = lr, .momentum = tc->optimizer.momentum,
						    .dampening = tc->optimizer.dampening,
						    .weight_decay = tc->optimizer.weight_decay,
						    .nesterov = tc->optimizer.nesterov};
				sgd_step_ops(s.ops, s.op, s.n, &hp, t);
			} else {
				struct adamw_hp hp = {.lr = lr, .beta1 = tc->optimizer.beta1,
						      .beta2 = tc->optimizer.beta2,
						      .eps = tc->optimizer.eps,
						      .weight_decay = tc->optimizer.weight_decay};
				adamw_step_ops(s.ops, s.op, s.n, &hp, t);
			}
		}
		if (o->check && (rc = o->check(d)) != 0)
			goto done;
		cs.step++;
		cs.tokens += (int64_t)unmasked;
		tokens_here += (int64_t)processed;
		double dt = time_monotonic() - t0;
		out->last_loss = loss;
		emit_metric(o->sink, &sink_err, "train", "loss", cs.step, loss);
		emit_metric(o->sink, &sink_err, "train", "lr", cs.step, lr);
		emit_metric(o->sink, &sink_err, "train", "grad_norm", cs.step, norm);
		emit_metric(o->sink, &sink_err, "train", "tokens_per_s", cs.step,
			    dt > 0 ? (double)processed / dt : 0.0);
		if (pp) {
			struct emit_ctx ec = {o->sink, &sink_err, cs.step};
			pref_stats_each(&pst, pp, emit_pref, &ec);
		}
		if (o->sink && o->sink->progress)
			o->sink->progress(o->sink->ud, cs.step, o->total_steps, loss);
		bool last = cs.step == o->total_steps;
		if (val && val->evaluate && tc->eval_every > 0 && (cs.step % tc->eval_every == 0)) {
			double vl, vm;
			if ((rc = val->evaluate(val->ud, m, &vl, &vm, d)) != 0)
				goto done;
			emit_metric(o->sink, &sink_err, "validation", "loss", cs.step, vl);
			if (strcmp(es_name, "loss") != 0)
				emit_metric(o->sink, &sink_err, "validation", es_name, cs.step, vm);
			if (tc->early_stopping.enabled) {
				/* Compared as "lower is better": higher-is-better metrics negated. */
				double v = es_higher ? -vm : vm;
				if (v < cs.best_metric - tc->early_stopping.min_delta) {
					cs.best_metric = v;
					cs.bad_evals = 0;
				} else if (++cs.bad_evals >= tc->early_stopping.patience) {
					char msg[256];
					snprintf(msg, sizeof(msg),
						 "early stopping at step %lld: validation.%s did not "
						 "improve by more than %g for %lld evaluations (best %g)",
						 (long long)cs.step, es_name, tc->early_stopping.min_delta,
						 (long long)cs.bad_evals,
						 es_higher ? -cs.best_metric : cs.best_metric);
					emit_event(o->sink, "info", "early_stop", msg);
					out->early_stopped = true;
					last = true;
				}
			}
		}
		if (sink_err) {
			rc = diag_set(d, sink_err, "", 0, 0,
				      "step %lld: the run's metrics could not be recorded",
				      (long long)cs.step);
			goto done;
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
	pair_bufs_free(&pb);
	tstate_free(&s);
	return rc;
}
