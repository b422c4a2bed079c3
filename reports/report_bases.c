/* report_bases: which base model to pick (report_bases.h). Bases are told apart by the
 * text of model.base; the best run of each base carries that base's own untuned
 * evaluation, so every difference shown is paired within one base. */
#include "reports/report_bases.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/util.h"
#include "common/banned.h"

static const char *const COST_NAMES[COST_N] = {
	"train_seconds",  "train_cpu_seconds", "tokens_per_s",       "train_peak_rss_bytes",
	"peak_rss_bytes", "base_eval_seconds", "tuned_eval_seconds",
};

const char *report_cost_name(enum report_cost c)
{
	return c < COST_N ? COST_NAMES[c] : "";
}

const struct report_group_kind REPORT_GROUP_BASES = {"model.base", "bases", "Base models",
						     "base model"};
const struct report_group_kind REPORT_GROUP_METHODS = {"method.type", "methods", "Methods",
						       "method"};

char *report_run_key(const struct report *r, const struct report_run *run, const char *key)
{
	for (size_t p = 0; p < r->n_params; p++)
		if (strcmp(r->params[p], key) == 0 && run->param_values[p][0])
			return ft_strdup(run->param_values[p]);
	if (!run->config_json)
		return NULL;
	json_t *j = json_loads(run->config_json, 0, NULL), *at = j;
	const char *k = key;
	while (at && *k) {
		const char *dot = strchr(k, '.');
		size_t n = dot ? (size_t)(dot - k) : strlen(k);
		char part[64];
		if (n >= sizeof part) {
			at = NULL;
			break;
		}
		memcpy(part, k, n);
		part[n] = 0;
		at = json_object_get(at, part);
		k += n + (dot != NULL);
	}
	const char *b = json_string_value(at);
	char *out = b ? ft_strdup(b) : NULL;
	json_decref(j);
	return out;
}

char *report_run_base(const struct report *r, const struct report_run *run)
{
	return report_run_key(r, run, "model.base");
}

const char *report_base_short(const char *name)
{
	size_t n = strlen(name);
	while (n > 1 && name[n - 1] == '/')
		n--;
	const char *s = name;
	for (size_t i = 0; i + 1 < n; i++)
		if (name[i] == '/')
			s = name + i + 1;
	return s;
}

void report_bases_free(struct report_bases *b)
{
	if (!b)
		return;
	for (size_t i = 0; i < b->n; i++)
		free(b->items[i].name);
	free(b->items);
	const struct report_group_kind *kind = b->kind;
	memset(b, 0, sizeof *b);
	b->kind = kind;
}

static bool better(double a, double b, bool maximize)
{
	return maximize ? a > b : a < b;
}

static bool overlap(const struct report_value *a, const struct report_value *b)
{
	return a->lo <= b->hi && b->lo <= a->hi;
}

/* Adds run i to its base's entry (created when new). */
static int add_run(struct report_bases *b, const struct report *r, size_t i, size_t *cap)
{
	char *name = report_run_key(r, &r->runs[i], b->kind->key);
	if (!name)
		return 0; /* a run without a config (an old store): not comparable */
	size_t k = 0;
	while (k < b->n && strcmp(b->items[k].name, name) != 0)
		k++;
	if (k == b->n) {
		if (b->n == *cap) {
			size_t nc = *cap ? 2 * *cap : 4;
			struct report_base *p = realloc(b->items, nc * sizeof *p);
			if (!p) {
				free(name);
				return FT_ENOMEM;
			}
			b->items = p;
			*cap = nc;
		}
		b->items[k] = (struct report_base){.name = name, .run = -1, .gate_failed = -1};
		name = NULL;
		b->n++;
	}
	free(name);
	struct report_base *e = &b->items[k];
	e->n_runs++;
	const struct report_run *run = &r->runs[i];
	long m = b->metric;
	if (m < 0 || !report_run_ok(run) || !run->tuned[m].present || !isfinite(run->tuned[m].v))
		return 0;
	if (e->run < 0 || better(run->tuned[m].v, r->runs[e->run].tuned[m].v, b->maximize))
		e->run = (long)i;
	return 0;
}

/* What "cheaper to train" compares for bases a and c: process CPU seconds when both have
 * them (the work done, which a busy machine does not inflate), else wall seconds. */
static enum report_cost train_cost(const struct report_bases *b, long a, long c)
{
	return isfinite(b->items[a].cost[COST_TRAIN_CPU_S]) &&
			       isfinite(b->items[c].cost[COST_TRAIN_CPU_S])
		       ? COST_TRAIN_CPU_S
		       : COST_TRAIN_S;
}

static void judge(struct report_bases *b, const struct report *r)
{
	long m = b->metric;
	for (size_t k = 0; k < b->n; k++) {
		struct report_base *e = &b->items[k];
		for (int c = 0; c < COST_N; c++)
			e->cost[c] = e->run >= 0 ? report_run_last(&r->runs[e->run], "cost",
								   COST_NAMES[c])
						 : NAN;
		for (size_t g = 0; e->run >= 0 && g < r->n_gates; g++) {
			int ok = report_gate_check(r, &r->runs[e->run], &r->gates[g]);
			if (ok < 0)
				continue;
			e->gates_judged++;
			e->gates_passed += (size_t)ok;
			if (!ok && e->gate_failed < 0)
				e->gate_failed = (long)g;
		}
		b->gated = b->gated || e->gates_judged > 0;
	}
	/* candidates: a result, and every judged gate passed when any base passes them all */
	bool any_pass = false;
	for (size_t k = 0; k < b->n; k++)
		any_pass = any_pass || (b->items[k].run >= 0 && b->items[k].gate_failed < 0);
	size_t n_cand = 0;
	for (size_t k = 0; k < b->n && k < FT_ARRAY_LEN(b->candidate); k++) {
		const struct report_base *e = &b->items[k];
		b->candidate[k] = e->run >= 0 && (!any_pass || e->gate_failed < 0);
		n_cand += b->candidate[k];
		if (b->candidate[k] && (b->best < 0 ||
					better(r->runs[e->run].tuned[m].v,
					       r->runs[b->items[b->best].run].tuned[m].v, b->maximize)))
			b->best = (long)k;
	}
	if (b->best < 0) {
		b->verdict = BASES_NO_RESULT;
		return;
	}
	b->pick = b->cheapest = b->best;
	if (n_cand == 1) {
		b->verdict = BASES_ONE_LEFT;
		return;
	}
	const struct report_value *bv = &r->runs[b->items[b->best].run].tuned[m];
	b->verdict = BASES_CLEAR;
	for (size_t k = 0; k < b->n && k < FT_ARRAY_LEN(b->candidate); k++) {
		if (!b->candidate[k] || (long)k == b->best)
			continue;
		const struct report_value *v = &r->runs[b->items[k].run].tuned[m];
		if (!bv->has_ci || !v->has_ci) {
			b->verdict = BASES_NO_INTERVAL;
			return;
		}
		if (!overlap(bv, v))
			continue;
		b->verdict = BASES_OVERLAP;
		/* not distinguishable: the cheaper to train of the two is as good a pick */
		enum report_cost c = train_cost(b, (long)k, b->cheapest);
		double ct = b->items[k].cost[c], cb = b->items[b->cheapest].cost[c];
		if (isfinite(ct) && (!isfinite(cb) || ct < cb))
			b->cheapest = (long)k;
	}
	if (b->verdict == BASES_OVERLAP)
		b->pick = b->cheapest;
}

int report_bases_make(struct report_bases *out, const struct report *r)
{
	return report_groups_make(out, r, &REPORT_GROUP_BASES);
}

int report_groups_make(struct report_bases *out, const struct report *r,
		       const struct report_group_kind *kind)
{
	memset(out, 0, sizeof *out);
	out->kind = kind;
	out->pick = out->best = out->cheapest = -1;
	out->metric = report_rank_metric(r, &out->maximize);
	size_t cap = 0;
	for (size_t i = 0; i < r->n_runs; i++)
		if (add_run(out, r, i, &cap)) {
			report_bases_free(out);
			out->pick = out->best = out->cheapest = -1;
			return FT_ENOMEM;
		}
	if (out->n < 2) {
		report_bases_free(out);
		out->pick = out->best = out->cheapest = -1;
		out->metric = report_rank_metric(r, &out->maximize);
		return 0;
	}
	judge(out, r);
	return 0;
}

/* "name: v [lo, hi]" (or without the name) of base k's fine-tuned rank metric. */
static int value_text(struct strbuf *s, const struct report_bases *b, const struct report *r,
		      long k, bool name)
{
	const struct report_value *v = &r->runs[b->items[k].run].tuned[b->metric];
	char a[32], lo[32], hi[32];
	report_fmt_num(a, sizeof a, v->v);
	report_fmt_num(lo, sizeof lo, v->lo);
	report_fmt_num(hi, sizeof hi, v->hi);
	int rc = name ? strbuf_printf(s, "%s: ", report_base_short(b->items[k].name)) : 0;
	if (!rc)
		rc = v->has_ci ? strbuf_printf(s, "%s [%s, %s]", a, lo, hi) : strbuf_puts(s, a);
	return rc;
}

/* "training 12 s and 1.2 GiB peak against 30 s and 3.1 GiB" for bases a and c. */
static int cost_text(struct strbuf *s, const struct report_bases *b, long a, long c)
{
	const double *x = b->items[a].cost, *y = b->items[c].cost;
	enum report_cost t = train_cost(b, a, c);
	if (!isfinite(x[t]) || !isfinite(y[t]))
		return strbuf_puts(s, "training cost not recorded");
	int rc = strbuf_printf(s, "training %.0f %s against %.0f", x[t],
			       t == COST_TRAIN_CPU_S ? "CPU s" : "s", y[t]);
	if (!rc && isfinite(x[COST_TRAIN_PEAK]) && isfinite(y[COST_TRAIN_PEAK]))
		rc = strbuf_printf(s, ", peak memory in training %.2f GiB against %.2f GiB",
				   x[COST_TRAIN_PEAK] / 1073741824.0, y[COST_TRAIN_PEAK] / 1073741824.0);
	return rc;
}

char *report_bases_sentence(const struct report_bases *b, const struct report *r)
{
	struct strbuf s = {0};
	int rc = 0;
	const char *metric = b->metric >= 0 ? r->metrics[b->metric] : "the rank metric";
	const char *goal = b->maximize ? "higher is better" : "lower is better";
	switch (b->verdict) {
	case BASES_NO_RESULT:
		rc = strbuf_printf(&s, "No %s has a fine-tuned %s yet: nothing to pick.",
				   b->kind->noun, metric);
		break;
	case BASES_ONE_LEFT:
		rc = strbuf_printf(&s, "Pick %s: it is the only %s with a fine-tuned %s%s (",
				   report_base_short(b->items[b->pick].name), b->kind->noun, metric,
				   b->gated ? " that passes the experiment's gates" : "");
		if (!rc)
			rc = value_text(&s, b, r, b->pick, false);
		if (!rc)
			rc = strbuf_puts(&s, ").");
		break;
	case BASES_CLEAR:
		rc = strbuf_printf(&s, "Pick %s: its fine-tuned %s (%s), ",
				   report_base_short(b->items[b->pick].name), metric, goal);
		if (!rc)
			rc = value_text(&s, b, r, b->pick, false);
		if (!rc)
			rc = strbuf_printf(&s, ", is the best, and its interval does not overlap "
					   "any other %s's (", b->kind->noun);
		for (size_t k = 0, first = 1; k < b->n && !rc; k++)
			if (b->candidate[k] && (long)k != b->pick) {
				rc = strbuf_puts(&s, first ? "" : "; ");
				if (!rc)
					rc = value_text(&s, b, r, (long)k, true);
				first = 0;
			}
		if (!rc)
			rc = strbuf_puts(&s, ").");
		break;
	case BASES_OVERLAP:
		rc = strbuf_printf(&s, "Not distinguishable on %s (%s): the intervals overlap (",
				   metric, goal);
		if (!rc)
			rc = value_text(&s, b, r, b->best, true);
		for (size_t k = 0; k < b->n && !rc; k++)
			if (b->candidate[k] && (long)k != b->best &&
			    overlap(&r->runs[b->items[b->best].run].tuned[b->metric],
				    &r->runs[b->items[k].run].tuned[b->metric])) {
				rc = strbuf_puts(&s, "; ");
				if (!rc)
					rc = value_text(&s, b, r, (long)k, true);
			}
		bool tie = false;
		for (size_t k = 0; k < b->n; k++)
			tie = tie || (b->candidate[k] && (long)k != b->best &&
				      r->runs[b->items[k].run].tuned[b->metric].v ==
					      r->runs[b->items[b->best].run].tuned[b->metric].v);
		if (!rc && tie)
			rc = strbuf_puts(&s, "), with equal point estimates");
		else if (!rc)
			rc = strbuf_printf(&s, "). %s has the better point estimate",
					   report_base_short(b->items[b->best].name));
		if (!rc && b->cheapest != b->best) {
			rc = strbuf_printf(&s, "; pick %s, the cheaper to train (",
					   report_base_short(b->items[b->cheapest].name));
			if (!rc)
				rc = cost_text(&s, b, b->cheapest, b->best);
			if (!rc)
				rc = strbuf_puts(&s, "), or evaluate on more examples to separate them.");
		} else if (!rc) {
			rc = strbuf_printf(&s, "; %s is no dearer to train: pick it, knowing that "
					   "more test examples may still reverse the order.",
					   report_base_short(b->items[b->best].name));
		}
		break;
	case BASES_NO_INTERVAL:
		rc = strbuf_printf(&s, "%s has the better fine-tuned %s (",
				   report_base_short(b->items[b->best].name), metric);
		if (!rc)
			rc = value_text(&s, b, r, b->best, false);
		if (!rc)
			rc = strbuf_puts(&s, "), but no confidence intervals were recorded "
					 "(eval.bootstrap), so whether the difference is more than "
					 "noise is unknown.");
		break;
	}
	/* gates: bases left out for failing one, or all failing (then the pick ignores them) */
	bool all_fail = true;
	for (size_t k = 0; k < b->n; k++)
		all_fail = all_fail && (b->items[k].run < 0 || b->items[k].gate_failed >= 0);
	if (!rc && b->gated && all_fail && b->verdict != BASES_NO_RESULT)
		rc = strbuf_printf(&s, " No %s passes the experiment's gates; the above ranks "
				   "them by the objective alone:", b->kind->noun);
	for (size_t k = 0; k < b->n && !rc; k++) {
		const struct report_base *e = &b->items[k];
		if (e->run >= 0 && e->gate_failed >= 0) {
			const struct report_gate *g = &r->gates[e->gate_failed];
			rc = strbuf_printf(&s, " %s fails the gate on %s%s%s.",
					   report_base_short(e->name), g->metric,
					   g->vs == REPORT_GATE_BASE ? " (vs base)" : "",
					   all_fail ? "" : " and is not a candidate");
		}
	}
	if (rc) {
		strbuf_free(&s);
		return NULL;
	}
	return s.buf ? s.buf : ft_strdup("");
}
