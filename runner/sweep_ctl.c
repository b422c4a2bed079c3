/* sweep_ctl: one entry per sweep index (plan point, restored point or bayes/tpe
 * suggestion) with its state, its search vector, its objective and its early-termination
 * history. Suggestion k uses random stream k of sweep.seed, so the sequence depends only
 * on the seed and the outcomes known when each point is chosen. */
#include "runner/sweep_ctl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/hash.h"
#include "common/util.h"
#include "runner/bayes.h"
#include "runner/hyperband.h"
#include "runner/tpe.h"
#include "schema/node.h"
#include "schema/table.h"
#include "common/banned.h"

enum entry_state { E_NONE, E_WAITING, E_HANDED, E_DONE };

struct entry {
	enum entry_state state;
	struct sweep_point pt;   /* owned for bayes and restored points; else a plan copy */
	bool owned;
	double *x;               /* search vector (bayes) */
	bool located;            /* x is valid */
	enum sweep_outcome outcome;
	double objective;
	double *hist;            /* finite values of the early-termination metric */
	size_t n_hist;
	struct sweep_suggestion why;
};

struct sweep_ctl {
	const struct experiment *e;
	struct sweep_plan *plan;  /* grid / random */
	struct sweep_space *space; /* bayes and tpe */
	bool tpe;
	const struct bayes_dim *dims;
	size_t n_dims, n_init;
	uint64_t seed;
	size_t budget;
	struct entry *ent;        /* budget entries */
	size_t next_fresh;        /* next index to hand out fresh */
	bool exhausted;
	char *objective;
	bool maximize;
	bool stopping;
	struct hyperband hb;
	char *stop_metric;
	char key[17];
};

static const char *ntext(const struct node *m, const char *key)
{
	const struct node *n = m ? node_get(m, key) : NULL;
	return n && n->kind == NODE_SCALAR ? n->text : NULL;
}

/* The sweep section without samples and run_cap, and the base config (canonical, so
 * descriptions and gates do not count), hashed. */
static int make_key(struct sweep_ctl *c, struct diag *d)
{
	json_error_t je;
	json_t *spec = json_loads(experiment_spec_json(c->e), 0, &je);
	if (!spec)
		return diag_set(d, FT_EINTERNAL, NULL, 0, 0, "experiment spec is not JSON: %s",
				je.text);
	json_t *sw = json_object_get(spec, "sweep");
	if (json_is_object(sw)) {
		json_object_del(sw, "samples");
		json_object_del(sw, "run_cap");
	}
	char *text = json_dumps(sw ? sw : json_null(), JSON_COMPACT | JSON_SORT_KEYS |
						       JSON_ENCODE_ANY);
	json_decref(spec);
	if (!text)
		return diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
	const char *base = experiment_config(c->e)->canonical_json;
	struct sha256 h;
	sha256_init(&h);
	sha256_update(&h, text, strlen(text));
	sha256_update(&h, "\n", 1);
	if (base)
		sha256_update(&h, base, strlen(base));
	free(text);
	char hex[65];
	sha256_final_hex(&h, hex);
	memcpy(c->key, hex, 16);
	c->key[16] = '\0';
	return 0;
}

static int read_settings(struct sweep_ctl *c, struct diag *d)
{
	const struct node *sw = experiment_sweep(c->e);
	const struct node *obj = sw ? node_get(sw, "objective") : NULL;
	const char *om = ntext(obj, "metric");
	if (om) {
		c->objective = ft_strdup(om);
		const char *g = ntext(obj, "goal");
		c->maximize = !g || schema_enum_index("sweep.objective.goal", g) == GOAL_MAXIMIZE;
		if (!c->objective)
			return diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
	}
	const char *sd = ntext(sw, "seed");
	int64_t seed = 0;
	if (sd)
		(void)parse_i64(sd, &seed);
	c->seed = (uint64_t)seed;
	const struct node *et = sw ? node_get(sw, "early_terminate") : NULL;
	if (!et)
		return 0;
	struct hyperband_spec hs = {0};
	int64_t v;
	const char *t;
	if ((t = ntext(et, "min_iter")) && parse_i64(t, &v))
		hs.min_iter = v;
	if ((t = ntext(et, "max_iter")) && parse_i64(t, &v))
		hs.max_iter = v;
	if ((t = ntext(et, "s")) && parse_i64(t, &v))
		hs.s = v;
	hs.eta = 3;
	if ((t = ntext(et, "eta")))
		(void)parse_f64(t, &hs.eta);
	t = ntext(et, "strict");
	hs.strict = !t || strcmp(t, "true") == 0;
	t = ntext(et, "goal");
	hs.maximize = t && schema_enum_index("sweep.early_terminate.goal", t) == GOAL_MAXIMIZE;
	int rc = hyperband_init(&c->hb, &hs, d);
	if (rc) {
		/* The schema checked the keys; name the section anyway. */
		d->line = et->key_line ? et->key_line : et->line;
		d->col = et->key_line ? et->key_col : et->col;
		return rc;
	}
	t = ntext(et, "metric");
	c->stop_metric = ft_strdup(t ? t : om ? om : "validation.loss");
	if (!c->stop_metric)
		return diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
	c->stopping = true;
	return 0;
}

int sweep_ctl_create(struct sweep_ctl **out, const struct experiment *e, size_t max_runs,
		     struct diag *d)
{
	*out = NULL;
	struct sweep_ctl *c = calloc(1, sizeof *c);
	if (!c)
		return diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
	c->e = e;
	int rc = sweep_expand(&c->plan, e, max_runs, d);
	if (!rc)
		rc = read_settings(c, d);
	if (!rc)
		rc = make_key(c, d);
	if (rc)
		goto fail;
	c->budget = c->plan->budget;
	if (c->plan->adaptive) {
		if ((rc = sweep_space_create(&c->space, e, d)) != 0)
			goto fail;
		c->dims = sweep_space_dims(c->space, &c->n_dims);
		c->tpe = c->plan->method == SWEEP_TPE;
		/* A space-filling start of D + 1 points (3 to 10) before the process leads. */
		c->n_init = c->n_dims + 1 < 3 ? 3 : c->n_dims + 1 > 10 ? 10 : c->n_dims + 1;
	}
	c->ent = calloc(c->budget ? c->budget : 1, sizeof *c->ent);
	if (!c->ent) {
		rc = diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory for %zu sweep points",
			      c->budget);
		goto fail;
	}
	for (size_t i = 0; i < c->budget; i++) {
		c->ent[i].objective = NAN;
		if (!c->plan->adaptive)
			c->ent[i].pt = c->plan->points[i];
	}
	*out = c;
	return 0;
fail:
	sweep_ctl_free(c);
	return rc;
}

void sweep_ctl_free(struct sweep_ctl *c)
{
	if (!c)
		return;
	for (size_t i = 0; c->ent && i < c->budget; i++) {
		if (c->ent[i].owned)
			sweep_point_clear(&c->ent[i].pt);
		free(c->ent[i].x);
		free(c->ent[i].hist);
	}
	free(c->ent);
	sweep_space_free(c->space);
	sweep_plan_free(c->plan);
	free(c->objective);
	free(c->stop_metric);
	free(c);
}

const struct sweep_plan *sweep_ctl_plan(const struct sweep_ctl *c)
{
	return c->plan;
}

bool sweep_ctl_adaptive(const struct sweep_ctl *c)
{
	return c->space != NULL;
}

size_t sweep_ctl_budget(const struct sweep_ctl *c)
{
	return c->budget;
}

const char *sweep_ctl_stop_metric(const struct sweep_ctl *c)
{
	return c->stopping ? c->stop_metric : NULL;
}

const char *sweep_ctl_objective(const struct sweep_ctl *c, bool *maximize)
{
	if (maximize)
		*maximize = c->maximize;
	return c->objective;
}

const char *sweep_ctl_key(const struct sweep_ctl *c)
{
	return c->key;
}

static int locate(struct sweep_ctl *c, struct entry *en, struct diag *d)
{
	if (!c->space)
		return 0;
	if (!en->x && !(en->x = calloc(c->n_dims ? c->n_dims : 1, sizeof *en->x)))
		return diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
	en->located = sweep_space_locate(en->x, c->space, en->pt.params_json);
	return 0;
}

int sweep_ctl_restore(struct sweep_ctl *c, size_t index, const char *params_json,
		      struct diag *d)
{
	if (index >= c->budget || !c->space || c->ent[index].state != E_NONE)
		return diag_set(d, FT_EINVAL, NULL, 0, 0, "sweep index %zu is not open", index);
	struct entry *en = &c->ent[index];
	int rc = sweep_space_restore(&en->pt, c->space, params_json, index, d);
	if (rc)
		return rc;
	en->owned = true;
	en->state = E_WAITING;
	return locate(c, en, d);
}

/* tpe's view, in index order: finished and cached runs complete, stopped ones pruned
 * (ranked by how many early-termination values they logged), failed and pending ones in
 * the bad group. */
static int suggest_tpe(struct sweep_ctl *c, double *x, struct sweep_suggestion *why,
		       bool *out_done, size_t k, struct diag *d)
{
	size_t nd = c->n_dims, n = 0;
	double *X = calloc((c->budget + 1) * nd, sizeof *X);
	double *y = calloc(c->budget + 1, sizeof *y);
	enum tpe_state *st = calloc(c->budget + 1, sizeof *st);
	int64_t *steps = calloc(c->budget + 1, sizeof *steps);
	int rc = 0;
	if (!X || !y || !st || !steps) {
		rc = diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory for the tpe search");
		goto done;
	}
	for (size_t i = 0; i < c->budget; i++) {
		const struct entry *en = &c->ent[i];
		if (!en->located || en->state == E_NONE)
			continue;
		memcpy(X + n * nd, en->x, nd * sizeof *X);
		if (en->state != E_DONE) {
			st[n] = TPE_RUNNING;
		} else if (en->outcome == SWEEP_RUN_FAILED) {
			st[n] = TPE_FAILED;
		} else {
			st[n] = en->outcome == SWEEP_RUN_STOPPED ? TPE_PRUNED : TPE_COMPLETE;
			y[n] = c->maximize ? -en->objective : en->objective;
			steps[n] = (int64_t)en->n_hist;
		}
		n++;
	}
	struct tpe_info info;
	rc = tpe_suggest(x, &info, c->dims, nd, X, st, y, steps, n, c->seed, k, d);
	if (rc)
		goto done;
	*out_done = info.exhausted;
	*why = (struct sweep_suggestion){
		.adaptive = true,
		.tpe = true,
		.random = info.random,
		.mean = NAN,
		.sd = NAN,
		.ei = NAN,
		.score = info.score,
		.n_good = info.n_good,
		.n_obs = info.n_good + info.n_bad,
	};
done:
	free(X);
	free(y);
	free(st);
	free(steps);
	return rc;
}

/* Suggests the point of fresh index k. */
static int suggest(struct sweep_ctl *c, size_t k, bool *out_done, struct diag *d)
{
	size_t nd = c->n_dims;
	double *X = calloc((c->budget + 1) * nd, sizeof *X);
	double *y = calloc(c->budget + 1, sizeof *y);
	double *P = calloc((c->budget + 1) * nd, sizeof *P);
	double *x = calloc(nd, sizeof *x);
	size_t n_obs = 0, n_p = 0;
	int rc = 0;
	*out_done = false;
	if (!X || !y || !P || !x) {
		rc = diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory for the bayes search");
		goto done;
	}
	/* In index order: the same outcomes give the same arrays. */
	for (size_t i = 0; i < c->budget; i++) {
		const struct entry *en = &c->ent[i];
		if (!en->located)
			continue;
		if (en->state == E_DONE) {
			memcpy(X + n_obs * nd, en->x, nd * sizeof *X);
			double v = en->outcome == SWEEP_RUN_FAILED ? NAN : en->objective;
			y[n_obs++] = c->maximize ? -v : v;
		} else if (en->state == E_HANDED || en->state == E_WAITING) {
			memcpy(P + n_p++ * nd, en->x, nd * sizeof *P);
		}
	}
	struct sweep_suggestion why;
	if (c->tpe) {
		rc = suggest_tpe(c, x, &why, out_done, k, d);
	} else {
		struct bayes_info info;
		rc = bayes_suggest(x, &info, c->dims, nd, X, y, n_obs, P, n_p, c->n_init, c->seed,
				   k, d);
		*out_done = info.exhausted;
		why = (struct sweep_suggestion){
			.adaptive = true,
			.random = info.random,
			.mean = c->maximize ? -info.mean : info.mean,
			.sd = info.sd,
			.ei = info.ei,
			.score = NAN,
			.n_obs = info.n_obs,
		};
	}
	if (rc || *out_done)
		goto done;
	struct entry *en = &c->ent[k];
	if ((rc = sweep_space_point(&en->pt, c->space, x, k, d)) != 0)
		goto done;
	en->owned = true;
	/* The search vector as a restored point would have it (from the point's values), so
	 * an interrupted sweep continues with exactly the same arrays. */
	if ((rc = locate(c, en, d)) != 0)
		goto done;
	en->why = why;
done:
	free(X);
	free(y);
	free(P);
	free(x);
	return rc;
}

int sweep_ctl_next(struct sweep_ctl *c, const struct sweep_point **out, struct diag *d)
{
	*out = NULL;
	/* Restored points first, in index order. */
	for (size_t i = 0; i < c->budget; i++)
		if (c->ent[i].state == E_WAITING) {
			c->ent[i].state = E_HANDED;
			*out = &c->ent[i].pt;
			return 0;
		}
	while (c->next_fresh < c->budget && c->ent[c->next_fresh].state != E_NONE)
		c->next_fresh++;
	if (c->next_fresh >= c->budget || c->exhausted)
		return 0;
	size_t k = c->next_fresh;
	if (c->space) {
		bool done;
		int rc = suggest(c, k, &done, d);
		if (rc)
			return rc;
		if (done) {
			c->exhausted = true;
			return 0;
		}
	}
	c->ent[k].state = E_HANDED;
	*out = &c->ent[k].pt;
	return 0;
}

int sweep_ctl_suggest(struct sweep_ctl *c, const struct sweep_point **out, size_t n,
		      size_t *out_n, struct diag *d)
{
	*out_n = 0;
	for (size_t i = 0; i < n; i++) {
		int rc = sweep_ctl_next(c, &out[i], d);
		if (rc)
			return rc;
		if (!out[i])
			break;
		(*out_n)++;
	}
	return 0;
}

struct sweep_suggestion sweep_ctl_suggestion(const struct sweep_ctl *c, size_t index)
{
	struct sweep_suggestion none = {.mean = NAN, .sd = NAN, .ei = NAN, .score = NAN};
	return index < c->budget && c->ent[index].why.adaptive ? c->ent[index].why : none;
}

void sweep_ctl_result(struct sweep_ctl *c, size_t index, enum sweep_outcome outcome,
		      double objective)
{
	if (index >= c->budget)
		return;
	struct entry *en = &c->ent[index];
	en->state = E_DONE;
	en->outcome = outcome;
	en->objective = objective;
}

int sweep_ctl_observe(struct sweep_ctl *c, struct sweep_verdict *out, size_t index,
		      const double *history, size_t n, bool running, struct diag *d)
{
	*out = (struct sweep_verdict){0};
	if (!c->stopping || index >= c->budget)
		return 0;
	struct entry *en = &c->ent[index];
	double *h = realloc(en->hist, (n ? n : 1) * sizeof *h);
	if (!h)
		return diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
	en->hist = h;
	en->n_hist = 0;
	for (size_t i = 0; i < n; i++)
		if (isfinite(history[i]))
			h[en->n_hist++] = history[i];
	if (!running)
		return 0;
	/* Every run with a history, in index order; `self` is this one's position. */
	struct hyperband_history *runs = calloc(c->budget, sizeof *runs);
	if (!runs)
		return diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
	size_t m = 0, self = 0;
	for (size_t i = 0; i < c->budget; i++) {
		if (c->ent[i].n_hist == 0 && i != index)
			continue;
		if (i == index)
			self = m;
		runs[m++] = (struct hyperband_history){c->ent[i].hist, c->ent[i].n_hist};
	}
	struct hyperband_decision hd;
	int rc = hyperband_decide(&hd, &c->hb, runs, m, self, d);
	free(runs);
	if (rc)
		return rc;
	*out = (struct sweep_verdict){.checked = hd.checked, .stop = hd.stop, .band = hd.band,
				      .threshold = hd.threshold, .value = hd.value,
				      .n_at_band = hd.n_at_band};
	return 0;
}
