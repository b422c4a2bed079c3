/* sweep: `sweep:` -> run points. Dimensions are the parameters in declared order, then
 * the zip groups. grid: the product, first dimension slowest. random: `samples` draws from
 * one xoshiro stream seeded by sweep.seed, dimensions drawn in declared order; a `seed`
 * parameter given as a list repeats every draw once per seed. Every value is validated by
 * the schema as if written in the file. */
#include "runner/sweep.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/rng.h"
#include "common/util.h"
#include "schema/node.h"
#include "schema/table.h"
#include "common/banned.h"

enum dist {
	DIST_VALUES, DIST_VALUE, DIST_CATEGORICAL, DIST_INT_UNIFORM, DIST_UNIFORM,
	DIST_LOG_UNIFORM_VALUES, DIST_Q_UNIFORM, DIST_Q_LOG_UNIFORM_VALUES, DIST_NORMAL
};
static const char *const dist_names[] = {"values", "value", "categorical", "int_uniform",
					 "uniform", "log_uniform_values", "q_uniform",
					 "q_log_uniform_values", "normal"};

/* One sweep dimension: a parameter or a zip group (several paths, one index). */
struct dim {
	const struct node *spec;   /* the parameter's node (positions for generated values) */
	const char *paths[32];
	size_t n_paths;
	enum dist dist;
	const struct node *lists[32]; /* finite values, one list per path (zip: several) */
	size_t n_values;           /* length of the lists; 0 for continuous distributions */
	double *probs;             /* categorical probabilities or NULL */
	double min, max, q, mu, sigma;
	bool is_int;               /* int_uniform */
	bool seed_repeat;          /* random: `seed: [..]` repeats every draw */
};

struct sweep_spec {
	bool random, bayes; /* bayes: any adaptive method (bayes, tpe) */
	int method;         /* enum sweep_method */
	int64_t samples;
	uint64_t seed;
	struct dim dims[64];
	size_t n_dims;
};

static void spec_free(struct sweep_spec *s)
{
	for (size_t i = 0; i < s->n_dims; i++)
		free(s->dims[i].probs);
}

static int check_path(const struct node *key_node, const char *path, struct diag *d)
{
	if (schema_sweepable(path))
		return 0;
	int rc = node_key_error(d, key_node, NULL, "sweep entry '%.200s' is not a key a sweep can "
				"set", path);
	size_t n;
	const char *const *cands = schema_sweepable_paths(&n);
	const char *near = nearest_word(path, cands, n);
	if (near)
		diag_hint(d, "did you mean '%s'?", near);
	else
		diag_hint(d, "sweep keys are dotted paths of the file such as method.rank or "
			  "train.optimizer.lr");
	return rc;
}

static bool num(const struct node *n, double *out)
{
	return n && n->kind == NODE_SCALAR && n->plain && parse_f64(n->text, out) && isfinite(*out);
}

static bool is_integral_text(const struct node *n)
{
	int64_t v;
	return n && n->kind == NODE_SCALAR && n->plain && parse_i64(n->text, &v);
}

static int parse_dist(struct dim *dm, const char *path, const struct node *v, struct diag *d)
{
	if (v->kind == NODE_SEQ) {
		if (v->n == 0)
			return node_error(d, v, NULL, "sweep entry '%s' has an empty list of values",
					  path);
		dm->dist = DIST_VALUES;
		dm->lists[0] = v;
		dm->n_values = v->n;
		return 0;
	}
	if (v->kind != NODE_MAP) {
		int rc = node_error(d, v, NULL, "sweep entry '%s' must be a list of values or a "
				    "distribution map, not a single value", path);
		diag_hint(d, "write [%.100s] or {value: %.100s}", v->text, v->text);
		return rc;
	}
	static const char *const keys[] = {"values", "value", "distribution", "min", "max",
					   "q", "mu", "sigma", "probabilities"};
	for (size_t i = 0; i < v->n; i++) {
		bool ok = false;
		for (size_t k = 0; k < FT_ARRAY_LEN(keys); k++)
			ok |= strcmp(v->items[i]->key, keys[k]) == 0;
		if (!ok) {
			int rc = node_key_error(d, v->items[i], NULL, "sweep entry '%s': unknown key "
						"'%.100s'", path, v->items[i]->key);
			const char *near = nearest_word(v->items[i]->key, keys, FT_ARRAY_LEN(keys));
			if (near)
				diag_hint(d, "did you mean '%s'?", near);
			return rc;
		}
	}
	const struct node *values = node_get(v, "values"), *value = node_get(v, "value");
	const struct node *dist = node_get(v, "distribution");
	const struct node *mn = node_get(v, "min"), *mx = node_get(v, "max");
	int idx = -1;
	if (dist) {
		for (size_t k = 0; dist->kind == NODE_SCALAR && k < FT_ARRAY_LEN(dist_names); k++)
			if (strcmp(dist->text, dist_names[k]) == 0)
				idx = (int)k;
		if (idx < 0) {
			int rc = node_error(d, dist, NULL, "sweep entry '%s': unknown distribution "
					    "'%.100s'", path, dist->kind == NODE_SCALAR ? dist->text : "");
			const char *near = NULL;
			/* A prefix ("log_uniform") names its longer form before edit distance. */
			for (size_t k = 0; dist->kind == NODE_SCALAR && dist->text[0] &&
					   k < FT_ARRAY_LEN(dist_names) && !near; k++)
				if (strncmp(dist_names[k], dist->text, strlen(dist->text)) == 0)
					near = dist_names[k];
			if (!near && dist->kind == NODE_SCALAR)
				near = nearest_word(dist->text, dist_names, FT_ARRAY_LEN(dist_names));
			if (near)
				diag_hint(d, "did you mean '%s'?", near);
			else
				diag_hint(d, "distributions: values, value, categorical, int_uniform, "
					  "uniform, log_uniform_values, q_uniform, "
					  "q_log_uniform_values, normal");
			return rc;
		}
	} else if (values) {
		idx = DIST_VALUES;
	} else if (value) {
		idx = DIST_VALUE;
	} else if (mn && mx) {
		idx = is_integral_text(mn) && is_integral_text(mx) ? DIST_INT_UNIFORM : DIST_UNIFORM;
	} else {
		return node_error(d, v, NULL, "sweep entry '%s' needs values, value, or a "
				  "distribution with its parameters", path);
	}
	dm->dist = (enum dist)idx;
	const char *dn = dist_names[idx];
	switch (dm->dist) {
	case DIST_VALUES:
	case DIST_CATEGORICAL: {
		if (!values || values->kind != NODE_SEQ || values->n == 0)
			return node_error(d, values ? values : v, NULL, "sweep entry '%s': %s needs "
					  "a non-empty list 'values'", path, dn);
		dm->lists[0] = values;
		dm->n_values = values->n;
		const struct node *pr = node_get(v, "probabilities");
		if (pr) {
			if (pr->kind != NODE_SEQ || pr->n != values->n)
				return node_error(d, pr, NULL, "sweep entry '%s': probabilities needs "
						  "one number per value (%zu)", path, values->n);
			dm->probs = calloc(pr->n, sizeof *dm->probs);
			if (!dm->probs)
				return diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
			double sum = 0;
			for (size_t i = 0; i < pr->n; i++) {
				if (!num(pr->items[i], &dm->probs[i]) || dm->probs[i] < 0)
					return node_error(d, pr->items[i], NULL, "sweep entry '%s': a "
							  "probability must be a number >= 0", path);
				sum += dm->probs[i];
			}
			if (fabs(sum - 1.0) > 1e-6)
				return node_error(d, pr, NULL, "sweep entry '%s': probabilities sum to "
						  "%g, not 1", path, sum);
		}
		return 0;
	}
	case DIST_VALUE:
		if (!value)
			return node_error(d, v, NULL, "sweep entry '%s': value needs 'value'", path);
		dm->lists[0] = value;
		dm->n_values = 1;
		return 0;
	default:
		break;
	}
	/* Numeric distributions. */
	const struct node *qn = node_get(v, "q");
	if (dm->dist == DIST_NORMAL) {
		const struct node *mu = node_get(v, "mu"), *sg = node_get(v, "sigma");
		dm->mu = 0;
		dm->sigma = 1;
		if ((mu && !num(mu, &dm->mu)) || (sg && !num(sg, &dm->sigma)) || !(dm->sigma > 0))
			return node_error(d, sg && !(dm->sigma > 0) ? sg : mu ? mu : v, NULL,
					  "sweep entry '%s': normal needs numbers mu and sigma > 0",
					  path);
		return 0;
	}
	if (!num(mn, &dm->min) || !num(mx, &dm->max))
		return node_error(d, mn && !num(mn, &dm->min) ? mn : mx ? mx : v, NULL,
				  "sweep entry '%s': %s needs numbers min and max", path, dn);
	if (dm->dist == DIST_INT_UNIFORM) {
		if (!is_integral_text(mn) || !is_integral_text(mx))
			return node_error(d, is_integral_text(mn) ? mx : mn, NULL, "sweep entry '%s': "
					  "int_uniform needs integer min and max", path);
		dm->is_int = true;
	}
	if (dm->dist == DIST_INT_UNIFORM ? !(dm->min <= dm->max) : !(dm->min < dm->max))
		return node_error(d, mx, NULL, "sweep entry '%s': max (%s) must be %s min (%s)", path,
				  mx->text, dm->dist == DIST_INT_UNIFORM ? "at least" : "more than",
				  mn->text);
	if ((dm->dist == DIST_LOG_UNIFORM_VALUES || dm->dist == DIST_Q_LOG_UNIFORM_VALUES) &&
	    !(dm->min > 0))
		return node_error(d, mn, NULL, "sweep entry '%s': %s needs min > 0", path, dn);
	if (dm->dist == DIST_Q_UNIFORM || dm->dist == DIST_Q_LOG_UNIFORM_VALUES) {
		dm->q = 1;
		if (qn && (!num(qn, &dm->q) || !(dm->q > 0)))
			return node_error(d, qn, NULL, "sweep entry '%s': q must be a number > 0", path);
	}
	if (dm->dist == DIST_INT_UNIFORM)
		dm->n_values = (dm->max - dm->min) < 1e9 ? (size_t)(dm->max - dm->min) + 1 : SIZE_MAX;
	return 0;
}

static bool path_used(const struct sweep_spec *s, const char *path)
{
	for (size_t i = 0; i < s->n_dims; i++)
		for (size_t j = 0; j < s->dims[i].n_paths; j++)
			if (strcmp(s->dims[i].paths[j], path) == 0)
				return true;
	return false;
}

/* A sweep over method.type drops, at each point, the file's keys of the other methods
 * (schema/experiment.c); each such key must still apply to one of the swept methods, or
 * it would act nowhere. */
static int method_keys_apply(const struct sweep_spec *s, const struct experiment *e,
			     struct diag *d)
{
	for (size_t i = 0; i < s->n_dims; i++) {
		const struct dim *dm = &s->dims[i];
		for (size_t j = 0; j < dm->n_paths && dm->n_values > 0; j++) {
			if (strcmp(dm->paths[j], "method.type") != 0 || !dm->lists[j] ||
			    dm->lists[j]->kind != NODE_SEQ)
				continue;
			const struct node *vals = dm->lists[j];
			for (size_t k = 0; k < schema_n_method_keys; k++) {
				const struct method_key *mk = &schema_method_keys[k];
				const struct node *at = experiment_node(e, mk->path);
				if (!at || path_used(s, mk->path))
					continue;
				bool any = false;
				for (size_t v = 0; v < vals->n && !any; v++)
					any = vals->items[v]->text &&
					      schema_choice_ok(mk->methods, vals->items[v]->text);
				if (any)
					continue;
				int rc = node_key_error(d, at, NULL, "'%s' applies only to method.type "
							"%s, and the sweep's method.type takes none of "
							"them", mk->path, mk->methods);
				diag_hint(d, "remove it, or add one of its methods to the sweep");
				return rc;
			}
		}
	}
	return 0;
}

static int parse_spec(struct sweep_spec *s, const struct experiment *e, struct diag *d)
{
	memset(s, 0, sizeof *s);
	const struct node *sw = experiment_sweep(e);
	if (!sw)
		return 0;
	const struct node *m = node_get(sw, "method");
	int mi = m ? schema_enum_index("sweep.method", m->text) : (int)SWEEP_GRID;
	s->random = mi == SWEEP_RANDOM;
	s->bayes = mi == SWEEP_BAYES || mi == SWEEP_TPE;
	s->method = mi;
	const struct node *smp = node_get(sw, "samples"), *sd = node_get(sw, "seed");
	if (smp)
		parse_i64(smp->text, &s->samples);
	int64_t seed = 0;
	if (sd)
		parse_i64(sd->text, &seed);
	s->seed = (uint64_t)seed;
	const struct node *params = node_get(sw, "parameters");
	int rc;
	for (size_t i = 0; params && i < params->n; i++) {
		const struct node *p = params->items[i];
		if (s->n_dims == FT_ARRAY_LEN(s->dims))
			return node_key_error(d, p, NULL, "a sweep has at most %zu dimensions",
					      FT_ARRAY_LEN(s->dims));
		if ((rc = check_path(p, p->key, d)) != 0)
			return rc;
		struct dim *dm = &s->dims[s->n_dims++];
		dm->spec = p;
		dm->paths[0] = p->key;
		dm->n_paths = 1;
		if ((rc = parse_dist(dm, p->key, p, d)) != 0)
			return rc;
		if (s->bayes && strcmp(p->key, "seed") == 0) {
			rc = node_key_error(d, p, NULL, "a %s sweep does not search over 'seed'",
					    schema_enum_name("sweep.method", mi));
			diag_hint(d, "set seed: N, or repeat seeds with method grid or random");
			return rc;
		}
		if (!s->random && !s->bayes && dm->n_values == 0) {
			rc = node_error(d, p, NULL, "sweep entry '%s': distribution %s is continuous "
					"and needs sweep.method random", p->key, dist_names[dm->dist]);
			diag_hint(d, "set sweep.method: random with samples: N, or list the values");
			return rc;
		}
		if (s->random && strcmp(p->key, "seed") == 0 &&
		    (dm->dist == DIST_VALUES || dm->dist == DIST_VALUE))
			dm->seed_repeat = true;
	}
	const struct node *zip = node_get(sw, "zip");
	for (size_t g = 0; zip && g < zip->n; g++) {
		const struct node *grp = zip->items[g];
		if (s->n_dims == FT_ARRAY_LEN(s->dims))
			return node_error(d, grp, NULL, "a sweep has at most %zu dimensions",
					  FT_ARRAY_LEN(s->dims));
		if (grp->n == 0)
			return node_error(d, grp, NULL, "a zip group needs at least one parameter");
		struct dim *dm = &s->dims[s->n_dims++];
		dm->spec = grp;
		dm->dist = DIST_VALUES;
		for (size_t j = 0; j < grp->n; j++) {
			const struct node *p = grp->items[j];
			if (j == FT_ARRAY_LEN(dm->paths))
				return node_key_error(d, p, NULL, "a zip group has at most %zu "
						      "parameters", FT_ARRAY_LEN(dm->paths));
			if ((rc = check_path(p, p->key, d)) != 0)
				return rc;
			if (path_used(s, p->key))
				return node_key_error(d, p, NULL, "sweep entry '%s' is swept twice "
						      "(in parameters or another zip group)", p->key);
			if (p->kind != NODE_SEQ || p->n == 0)
				return node_error(d, p, NULL, "zip entry '%s' must be a non-empty list "
						  "of values", p->key);
			if (j > 0 && p->n != dm->n_values)
				return node_error(d, p, NULL, "zip entry '%s' has %zu values, but '%s' "
						  "has %zu; zipped lists need the same length", p->key,
						  p->n, dm->paths[0], dm->n_values);
			dm->paths[dm->n_paths] = p->key;
			dm->lists[dm->n_paths++] = p;
			dm->n_values = p->n;
		}
	}
	return method_keys_apply(s, e, d);
}

static size_t sat_mul(size_t a, size_t b)
{
	size_t r;
	return size_mul(a, b, &r) ? r : SIZE_MAX;
}

static size_t spec_count(const struct sweep_spec *s)
{
	size_t n = 1;
	if (s->bayes)
		return (size_t)s->samples;
	if (s->random) {
		n = (size_t)s->samples;
		for (size_t i = 0; i < s->n_dims; i++)
			if (s->dims[i].seed_repeat)
				n = sat_mul(n, s->dims[i].n_values);
		return n;
	}
	for (size_t i = 0; i < s->n_dims; i++)
		n = sat_mul(n, s->dims[i].n_values);
	return n;
}

int sweep_count(size_t *out, const struct experiment *e, struct diag *d)
{
	struct sweep_spec s;
	int rc = parse_spec(&s, e, d);
	*out = rc ? 0 : spec_count(&s);
	spec_free(&s);
	return rc;
}

/* A generated number as a node at the parameter's position. */
static struct node *gen_node(const struct node *at, double v, bool as_int)
{
	char buf[40];
	if ((as_int || v == floor(v)) && fabs(v) < 9007199254740992.0)
		snprintf(buf, sizeof buf, "%lld", (long long)v);
	else
		schema_format_double(buf, sizeof buf, v);
	struct node *n = node_new_scalar(buf, true);
	if (n) {
		n->file = at->file;
		n->dir = NULL;
		n->origin = at->origin;
		n->line = at->key_line ? at->key_line : at->line;
		n->col = at->key_line ? at->key_col : at->col;
	}
	return n;
}

static void value_text(char *buf, size_t n, const struct node *v)
{
	if (v->kind == NODE_SCALAR)
		snprintf(buf, n, "%.60s", v->text);
	else
		snprintf(buf, n, "%s", v->kind == NODE_SEQ ? "[...]" : "{...}");
}

/* round(x / q) * q, then rounded to 15 significant digits so that 3 * 0.05 reads 0.15
 * and not 0.15000000000000002. */
static double quantize(double x, double q)
{
	char buf[40];
	snprintf(buf, sizeof buf, "%.15g", floor(x / q + 0.5) * q);
	return strtod(buf, NULL);
}

/* Draws one value of a continuous or integer distribution. */
static double draw(struct dim *dm, struct rng *r)
{
	switch (dm->dist) {
	case DIST_INT_UNIFORM:
		return dm->min + (double)rng_below(r, (uint64_t)(dm->max - dm->min) + 1);
	case DIST_UNIFORM:
		return dm->min + (dm->max - dm->min) * rng_uniform(r);
	case DIST_LOG_UNIFORM_VALUES:
		return exp(log(dm->min) + (log(dm->max) - log(dm->min)) * rng_uniform(r));
	case DIST_Q_UNIFORM: {
		double x = dm->min + (dm->max - dm->min) * rng_uniform(r);
		return quantize(x, dm->q);
	}
	case DIST_Q_LOG_UNIFORM_VALUES: {
		double x = exp(log(dm->min) + (log(dm->max) - log(dm->min)) * rng_uniform(r));
		return quantize(x, dm->q);
	}
	case DIST_NORMAL: {
		/* Marsaglia's polar method: only log and sqrt (both deterministic enough). */
		double u, v, s;
		do {
			u = 2.0 * rng_uniform(r) - 1.0;
			v = 2.0 * rng_uniform(r) - 1.0;
			s = u * u + v * v;
		} while (s >= 1.0 || s == 0.0);
		return dm->mu + dm->sigma * u * sqrt(-2.0 * log(s) / s);
	}
	default:
		return 0;
	}
}

/* Index into a finite list, honouring categorical probabilities. */
static size_t draw_index(const struct dim *dm, struct rng *r)
{
	if (!dm->probs)
		return (size_t)rng_below(r, dm->n_values);
	double u = rng_uniform(r), acc = 0;
	for (size_t i = 0; i < dm->n_values; i++) {
		acc += dm->probs[i];
		if (u < acc)
			return i;
	}
	return dm->n_values - 1;
}

/* The value node of finite dimension dm at index i for path j (int_uniform: generated). */
static const struct node *finite_value(const struct dim *dm, size_t j, size_t i,
				       struct node **made)
{
	if (dm->dist == DIST_INT_UNIFORM) {
		*made = gen_node(dm->spec, dm->min + (double)i, true);
		return *made;
	}
	const struct node *l = dm->lists[j];
	return dm->dist == DIST_VALUE ? l : l->items[i];
}

/* Validates each value of every finite dimension on its own, so an error names the sweep
 * entry and value (and its position). */
static int prevalidate(const struct experiment *e, const struct sweep_spec *s, struct diag *d)
{
	for (size_t k = 0; k < s->n_dims; k++) {
		const struct dim *dm = &s->dims[k];
		if (dm->n_values == 0 || dm->n_values > 1000)
			continue;
		for (size_t j = 0; j < dm->n_paths; j++) {
			for (size_t i = 0; i < dm->n_values; i++) {
				struct node *made = NULL;
				const struct node *v = finite_value(dm, j, i, &made);
				if (!v)
					return diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
				char vt[80], ctx[256];
				value_text(vt, sizeof vt, v);
				snprintf(ctx, sizeof ctx, "sweep entry '%s' value %s", dm->paths[j], vt);
				struct schema_assign a = {dm->paths[j], v};
				struct config *c = NULL;
				int rc = experiment_config_with(&c, NULL, e, &a, 1, ctx, d);
				node_free(made);
				if (c) {
					config_free(c);
					free(c);
				}
				if (rc)
					return rc;
			}
		}
	}
	return 0;
}

struct builder {
	const struct experiment *e;
	struct sweep_plan *plan;
	struct diag *d;
};

static int add_point(struct builder *B, struct schema_assign *as, size_t n)
{
	struct sweep_plan *p = B->plan;
	struct sweep_point *pt = &p->points[p->n];
	char ctx[512];
	size_t off = (size_t)snprintf(ctx, sizeof ctx, "sweep point %zu (", p->n);
	for (size_t i = 0; i < n && off < sizeof ctx; i++) {
		char vt[80];
		value_text(vt, sizeof vt, as[i].value);
		off += (size_t)snprintf(ctx + off, sizeof ctx - off, "%s%s=%s", i ? ", " : "",
					as[i].path, vt);
	}
	if (off < sizeof ctx)
		snprintf(ctx + off, sizeof ctx - off, ")");
	struct diag tmp;
	diag_init(&tmp);
	int rc = experiment_config_with(&pt->cfg, &pt->params_json, B->e, as, n, ctx, &tmp);
	if (rc) {
		/* Blame a single entry when one fails on its own (a drawn value out of range). */
		for (size_t i = 0; i < n; i++) {
			char vt[80], one[256];
			value_text(vt, sizeof vt, as[i].value);
			snprintf(one, sizeof one, "sweep entry '%s' value %s", as[i].path, vt);
			struct config *c = NULL;
			struct diag d1;
			diag_init(&d1);
			if (experiment_config_with(&c, NULL, B->e, &as[i], 1, one, &d1) != 0) {
				*B->d = d1;
				return d1.code;
			}
			config_free(c);
			free(c);
		}
		*B->d = tmp;
		return rc;
	}
	pt->index = p->n++;
	return 0;
}

int sweep_expand(struct sweep_plan **out, const struct experiment *e, size_t max_runs,
		 struct diag *d)
{
	*out = NULL;
	if (max_runs == 0)
		max_runs = SWEEP_DEFAULT_MAX_RUNS;
	struct sweep_spec s;
	struct sweep_plan *plan = NULL;
	struct node **made = NULL;
	size_t n_made = 0;
	int rc = parse_spec(&s, e, d);
	if (rc)
		goto done;
	size_t total = spec_count(&s);
	if (total > max_runs) {
		const struct node *sw = experiment_sweep(e);
		if (total == SIZE_MAX)
			rc = node_key_error(d, sw, NULL, "the sweep expands to more runs than can be "
					    "counted, more than the limit of %zu", max_runs);
		else
			rc = node_key_error(d, sw, NULL, "the sweep expands to %zu runs, more than "
					    "the limit of %zu", total, max_runs);
		diag_hint(d, "shrink the sweep, or raise the limit with --max-runs %zu",
			  total == SIZE_MAX ? max_runs * 10 : total);
		goto done;
	}
	if ((rc = prevalidate(e, &s, d)) != 0)
		goto done;
	if (s.bayes) {
		/* Points are chosen as results arrive (runner/sweep_ctl.h); the space is
		 * checked now. */
		struct sweep_space *sp = NULL;
		if ((rc = sweep_space_create(&sp, e, d)) != 0)
			goto done;
		sweep_space_free(sp);
		plan = calloc(1, sizeof *plan);
		if (!plan) {
			rc = diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
			goto done;
		}
		plan->adaptive = true;
		plan->method = (enum sweep_method)s.method;
		plan->budget = total;
		*out = plan;
		plan = NULL;
		goto done;
	}
	plan = calloc(1, sizeof *plan);
	if (!plan || !(plan->points = calloc(total ? total : 1, sizeof *plan->points))) {
		rc = diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory for %zu sweep points", total);
		goto done;
	}
	struct builder B = {.e = e, .plan = plan, .d = d};
	struct schema_assign as[64 * 32];
	size_t n_paths = 0;
	for (size_t k = 0; k < s.n_dims; k++)
		n_paths += s.dims[k].n_paths;
	made = calloc(n_paths + 1, sizeof *made);
	if (!made) {
		rc = diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
		goto done;
	}
	if (!s.random) {
		size_t idx[64] = {0};
		for (size_t pt = 0; pt < total; pt++) {
			/* Mixed-radix counter: the last dimension varies fastest. */
			size_t rem = pt;
			for (size_t k = s.n_dims; k-- > 0;) {
				idx[k] = rem % s.dims[k].n_values;
				rem /= s.dims[k].n_values;
			}
			size_t na = 0;
			for (size_t k = 0; k < s.n_dims && !rc; k++)
				for (size_t j = 0; j < s.dims[k].n_paths; j++) {
					const struct node *v =
						finite_value(&s.dims[k], j, idx[k], &made[n_made]);
					if (made[n_made])
						n_made++;
					if (!v) {
						rc = diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
						break;
					}
					as[na++] = (struct schema_assign){s.dims[k].paths[j], v};
				}
			if (!rc)
				rc = add_point(&B, as, na);
			while (n_made)
				node_free(made[--n_made]);
			if (rc)
				goto done;
		}
	} else {
		struct rng r;
		rng_seed(&r, s.seed, 0x5eed5eedULL);
		size_t repeats = 1;
		const struct dim *rep = NULL;
		for (size_t k = 0; k < s.n_dims; k++)
			if (s.dims[k].seed_repeat) {
				rep = &s.dims[k];
				repeats = rep->n_values;
			}
		for (int64_t smp = 0; smp < s.samples; smp++) {
			size_t na = 0;
			for (size_t k = 0; k < s.n_dims && !rc; k++) {
				struct dim *dm = &s.dims[k];
				if (dm->seed_repeat)
					continue;
				if (dm->n_values == 0 || dm->dist == DIST_INT_UNIFORM) {
					made[n_made] = gen_node(dm->spec, draw(dm, &r), dm->is_int);
					if (!made[n_made]) {
						rc = diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
						break;
					}
					as[na++] = (struct schema_assign){dm->paths[0], made[n_made++]};
					continue;
				}
				size_t i = dm->dist == DIST_VALUE ? 0 : draw_index(dm, &r);
				for (size_t j = 0; j < dm->n_paths; j++) {
					const struct node *l = dm->lists[j];
					as[na++] = (struct schema_assign){
						dm->paths[j], dm->dist == DIST_VALUE ? l : l->items[i]};
				}
			}
			for (size_t rpt = 0; rpt < repeats && !rc; rpt++) {
				size_t nb = na;
				if (rep)
					as[nb++] = (struct schema_assign){
						"seed", rep->dist == DIST_VALUE ? rep->lists[0]
										: rep->lists[0]->items[rpt]};
				rc = add_point(&B, as, nb);
			}
			while (n_made)
				node_free(made[--n_made]);
			if (rc)
				goto done;
		}
	}
	if (total == 0 || s.n_dims == 0) {
		/* No sweep (or an empty one): the base config as the only point. */
		if (plan->n == 0 && (rc = add_point(&B, as, 0)) != 0)
			goto done;
	}
	plan->budget = plan->n;
	*out = plan;
	plan = NULL;
done:
	while (made && n_made)
		node_free(made[--n_made]);
	free(made);
	sweep_plan_free(plan);
	spec_free(&s);
	return rc;
}

void sweep_plan_free(struct sweep_plan *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n; i++) {
		free(p->points[i].params_json);
		config_free(p->points[i].cfg);
		free(p->points[i].cfg);
	}
	free(p->points);
	free(p);
}

/* ---- the search space of an adaptive sweep ---- */

/* How one sweep dimension maps to a search dimension. */
struct space_dim {
	int bayes;         /* index into the search dimensions, or -1 for a constant */
	size_t *order;     /* ordered numeric lists: level -> list index (by value) */
	json_t **items;    /* lists: the resolved JSON value of each item, per path (n_paths rows) */
};

struct sweep_space {
	const struct experiment *e;
	struct sweep_spec s;
	struct space_dim sd[64];
	struct bayes_dim dims[64];
	size_t n_bayes;
};

static bool all_numeric(const struct node *l)
{
	double v;
	for (size_t i = 0; i < l->n; i++)
		if (!num(l->items[i], &v))
			return false;
	return true;
}

static const struct node *list_item(const struct dim *dm, size_t j, size_t i)
{
	return dm->dist == DIST_VALUE ? dm->lists[j] : dm->lists[j]->items[i];
}

/* The resolved JSON value of `v` at `path` (as a params_json would hold it). */
static int resolved_value(json_t **out, const struct experiment *e, const char *path,
			  const struct node *v, struct diag *d)
{
	struct schema_assign a = {path, v};
	struct config *c = NULL;
	char *pj = NULL;
	*out = NULL;
	int rc = experiment_config_with(&c, &pj, e, &a, 1, "sweep entry", d);
	if (c) {
		config_free(c);
		free(c);
	}
	if (rc)
		return rc;
	json_error_t je;
	json_t *o = json_loads(pj, 0, &je);
	free(pj);
	json_t *val = json_object_get(o, path);
	*out = val ? json_incref(val) : NULL;
	json_decref(o);
	return *out ? 0 : diag_set(d, FT_EINTERNAL, NULL, 0, 0, "no resolved value for '%s'", path);
}

void sweep_space_free(struct sweep_space *sp)
{
	if (!sp)
		return;
	for (size_t k = 0; k < sp->s.n_dims; k++) {
		free(sp->sd[k].order);
		if (sp->sd[k].items) {
			size_t rows = sp->s.dims[k].n_paths * sp->s.dims[k].n_values;
			for (size_t i = 0; i < rows; i++)
				json_decref(sp->sd[k].items[i]);
			free(sp->sd[k].items);
		}
	}
	spec_free(&sp->s);
	free(sp);
}

struct order_ctx {
	const struct node *l;
};

static int cmp_by_value(const void *a, const void *b, void *ctx)
{
	const struct node *l = ((const struct order_ctx *)ctx)->l;
	size_t i = *(const size_t *)a, j = *(const size_t *)b;
	double x = 0, y = 0;
	(void)num(l->items[i], &x);
	(void)num(l->items[j], &y);
	if (x != y)
		return x < y ? -1 : 1;
	return (i > j) - (i < j);
}

int sweep_space_create(struct sweep_space **out, const struct experiment *e, struct diag *d)
{
	*out = NULL;
	struct sweep_space *sp = calloc(1, sizeof *sp);
	if (!sp)
		return diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
	sp->e = e;
	int rc = parse_spec(&sp->s, e, d);
	if (rc)
		goto done;
	for (size_t k = 0; k < sp->s.n_dims; k++) {
		struct dim *dm = &sp->s.dims[k];
		struct space_dim *sd = &sp->sd[k];
		sd->bayes = -1;
		bool list = dm->dist == DIST_VALUES || dm->dist == DIST_CATEGORICAL ||
			    dm->dist == DIST_VALUE;
		if (list) {
			size_t rows = dm->n_paths * dm->n_values;
			sd->items = calloc(rows ? rows : 1, sizeof *sd->items);
			if (!sd->items) {
				rc = diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
				goto done;
			}
			for (size_t j = 0; j < dm->n_paths; j++)
				for (size_t i = 0; i < dm->n_values; i++)
					if ((rc = resolved_value(&sd->items[j * dm->n_values + i], e,
								 dm->paths[j], list_item(dm, j, i),
								 d)) != 0)
						goto done;
		}
		if (dm->dist == DIST_VALUE || (list && dm->n_values < 2) ||
		    (dm->dist == DIST_INT_UNIFORM && dm->n_values < 2))
			continue; /* a constant */
		struct bayes_dim *bd = &sp->dims[sp->n_bayes];
		sd->bayes = (int)sp->n_bayes++;
		if (list) {
			/* A list of numbers is ordered (levels by value); other lists, explicit
			 * categoricals and zip groups are categories. */
			bool ordered = dm->dist == DIST_VALUES && dm->n_paths == 1 &&
				       all_numeric(dm->lists[0]);
			bd->kind = ordered ? BAYES_INT : BAYES_CAT;
			bd->levels = dm->n_values;
			if (ordered) {
				sd->order = calloc(dm->n_values, sizeof *sd->order);
				if (!sd->order) {
					rc = diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
					goto done;
				}
				for (size_t i = 0; i < dm->n_values; i++)
					sd->order[i] = i;
				struct order_ctx oc = {dm->lists[0]};
				qsort_r(sd->order, dm->n_values, sizeof *sd->order, cmp_by_value, &oc);
			}
		} else if (dm->dist == DIST_INT_UNIFORM) {
			bd->kind = BAYES_INT;
			bd->levels = dm->n_values;
		} else {
			bd->kind = BAYES_REAL;
			bd->levels = 0;
		}
	}
	if (sp->n_bayes == 0) {
		const struct node *sw = experiment_sweep(e);
		rc = node_key_error(d, sw, NULL, "a bayes sweep needs at least one parameter with "
				    "more than one value");
		goto done;
	}
	*out = sp;
	sp = NULL;
done:
	sweep_space_free(sp);
	return rc;
}

const struct bayes_dim *sweep_space_dims(const struct sweep_space *sp, size_t *n)
{
	*n = sp->n_bayes;
	return sp->dims;
}

/* The standard normal quantile by bisection on its CDF (exact to the last bits, and the
 * same on every machine that has the same erfc). */
static double normal_quantile(double u)
{
	double lo = -40, hi = 40;
	for (int i = 0; i < 200 && hi - lo > 0; i++) {
		double mid = 0.5 * (lo + hi);
		if (mid == lo || mid == hi)
			break;
		if (0.5 * erfc(-mid / 1.4142135623730951) < u)
			lo = mid;
		else
			hi = mid;
	}
	return 0.5 * (lo + hi);
}

static double clamp_range(double v, double lo, double hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

/* A continuous distribution's value at u in [0, 1] (inside min..max despite rounding),
 * and back. */
static double from_unit(const struct dim *dm, double u)
{
	switch (dm->dist) {
	case DIST_UNIFORM:
		return clamp_range(dm->min + (dm->max - dm->min) * u, dm->min, dm->max);
	case DIST_LOG_UNIFORM_VALUES:
		return clamp_range(exp(log(dm->min) + (log(dm->max) - log(dm->min)) * u), dm->min,
				   dm->max);
	case DIST_Q_UNIFORM:
		return quantize(clamp_range(dm->min + (dm->max - dm->min) * u, dm->min, dm->max),
				dm->q);
	case DIST_Q_LOG_UNIFORM_VALUES:
		return quantize(clamp_range(exp(log(dm->min) + (log(dm->max) - log(dm->min)) * u),
					    dm->min, dm->max), dm->q);
	case DIST_NORMAL: {
		double c = u < 1e-12 ? 1e-12 : u > 1 - 1e-12 ? 1 - 1e-12 : u;
		return dm->mu + dm->sigma * normal_quantile(c);
	}
	default:
		return 0;
	}
}

static double to_unit(const struct dim *dm, double v)
{
	switch (dm->dist) {
	case DIST_UNIFORM:
	case DIST_Q_UNIFORM:
		return (v - dm->min) / (dm->max - dm->min);
	case DIST_LOG_UNIFORM_VALUES:
	case DIST_Q_LOG_UNIFORM_VALUES:
		return v > 0 ? (log(v) - log(dm->min)) / (log(dm->max) - log(dm->min)) : NAN;
	case DIST_NORMAL:
		return 0.5 * erfc(-((v - dm->mu) / dm->sigma) / 1.4142135623730951);
	default:
		return NAN;
	}
}

/* Builds the point whose sweep dimension k takes list item level[k] (lists) or value[k]
 * (generated numbers). */
static int build_point(struct sweep_point *out, const struct sweep_space *sp,
		       const size_t *item, const double *value, size_t index, struct diag *d)
{
	memset(out, 0, sizeof *out);
	struct schema_assign as[64 * 32];
	struct node *made[64];
	size_t na = 0, n_made = 0;
	int rc = 0;
	for (size_t k = 0; k < sp->s.n_dims && !rc; k++) {
		const struct dim *dm = &sp->s.dims[k];
		if (sp->sd[k].items) {
			for (size_t j = 0; j < dm->n_paths; j++)
				as[na++] = (struct schema_assign){dm->paths[j],
								  list_item(dm, j, item[k])};
			continue;
		}
		struct node *n = gen_node(dm->spec, value[k], dm->dist == DIST_INT_UNIFORM);
		if (!n) {
			rc = diag_set(d, FT_ENOMEM, NULL, 0, 0, "out of memory");
			break;
		}
		made[n_made++] = n;
		as[na++] = (struct schema_assign){dm->paths[0], n};
	}
	if (!rc) {
		struct sweep_plan tmp = {.points = out};
		struct builder B = {.e = sp->e, .plan = &tmp, .d = d};
		rc = add_point(&B, as, na);
		out->index = index;
	}
	while (n_made)
		node_free(made[--n_made]);
	return rc;
}

int sweep_space_point(struct sweep_point *out, const struct sweep_space *sp, const double *x,
		      size_t index, struct diag *d)
{
	size_t item[64] = {0};
	double value[64] = {0};
	for (size_t k = 0; k < sp->s.n_dims; k++) {
		const struct dim *dm = &sp->s.dims[k];
		const struct space_dim *sd = &sp->sd[k];
		double v = sd->bayes >= 0 ? x[sd->bayes] : 0;
		if (sd->items)
			item[k] = sd->bayes < 0 ? 0 : sd->order ? sd->order[(size_t)v] : (size_t)v;
		else if (dm->dist == DIST_INT_UNIFORM)
			value[k] = dm->min + v;
		else
			value[k] = from_unit(dm, v);
	}
	return build_point(out, sp, item, value, index, d);
}

int sweep_space_restore(struct sweep_point *out, const struct sweep_space *sp,
			const char *params_json, size_t index, struct diag *d)
{
	size_t item[64] = {0};
	double value[64] = {0};
	json_error_t je;
	json_t *o = json_loads(params_json ? params_json : "{}", 0, &je);
	bool ok = json_is_object(o);
	for (size_t k = 0; k < sp->s.n_dims && ok; k++) {
		const struct dim *dm = &sp->s.dims[k];
		const struct space_dim *sd = &sp->sd[k];
		if (sd->items) {
			ok = false;
			for (size_t i = 0; i < dm->n_values && !ok; i++) {
				bool all = true;
				for (size_t j = 0; j < dm->n_paths && all; j++)
					all = json_equal(json_object_get(o, dm->paths[j]),
							 sd->items[j * dm->n_values + i]);
				if (all) {
					ok = true;
					item[k] = i;
				}
			}
			continue;
		}
		const json_t *v = json_object_get(o, dm->paths[0]);
		ok = json_is_number(v);
		value[k] = ok ? json_number_value(v) : 0;
	}
	json_decref(o);
	if (!ok)
		return diag_set(d, FT_EINVAL, NULL, 0, 0, "the recorded point %s is not in this "
				"sweep", params_json ? params_json : "{}");
	return build_point(out, sp, item, value, index, d);
}

bool sweep_space_locate(double *x, const struct sweep_space *sp, const char *params_json)
{
	json_error_t je;
	json_t *o = json_loads(params_json ? params_json : "{}", 0, &je);
	bool ok = json_is_object(o);
	for (size_t k = 0; k < sp->s.n_dims && ok; k++) {
		const struct dim *dm = &sp->s.dims[k];
		const struct space_dim *sd = &sp->sd[k];
		if (sd->bayes < 0)
			continue;
		if (sd->items) {
			size_t found = SIZE_MAX;
			for (size_t i = 0; i < dm->n_values && found == SIZE_MAX; i++) {
				bool all = true;
				for (size_t j = 0; j < dm->n_paths && all; j++)
					all = json_equal(json_object_get(o, dm->paths[j]),
							 sd->items[j * dm->n_values + i]);
				if (all)
					found = i;
			}
			ok = found != SIZE_MAX;
			for (size_t l = 0; ok && sd->order && l < dm->n_values; l++)
				if (sd->order[l] == found) {
					found = l; /* the level of that item */
					break;
				}
			x[sd->bayes] = (double)found;
			continue;
		}
		const json_t *v = json_object_get(o, dm->paths[0]);
		ok = json_is_number(v);
		if (!ok)
			break;
		double val = json_number_value(v);
		if (dm->dist == DIST_INT_UNIFORM) {
			double lv = val - dm->min;
			ok = lv == floor(lv) && lv >= 0 && lv < (double)dm->n_values;
			x[sd->bayes] = lv;
			continue;
		}
		/* Quantised values may lie a little outside min..max: clamp those. */
		double u = to_unit(dm, val);
		ok = u >= -0.02 && u <= 1.02;
		x[sd->bayes] = u < 0 ? 0 : u > 1 ? 1 : u;
	}
	json_decref(o);
	return ok;
}

void sweep_point_clear(struct sweep_point *p)
{
	if (!p)
		return;
	free(p->params_json);
	config_free(p->cfg);
	free(p->cfg);
	memset(p, 0, sizeof *p);
}
