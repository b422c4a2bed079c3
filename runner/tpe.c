/* tpe: Parzen estimators (mixtures of truncated normals and categoricals, one kernel per
 * observation plus a prior kernel) for the good and the bad runs, and the candidate of the
 * highest log l(x) - log g(x) among draws from the good density. Log masses of normal
 * intervals are computed in log space, so far tails stay finite. */
#include "runner/tpe.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "common/banned.h"

#define LOG_SQRT_2PI 0.91893853320467274178
#define FINITE_ENUM_MAX 4096 /* finite spaces up to this size are enumerated when draws repeat */
#define REDRAW_BATCHES 20    /* candidate batches drawn before enumerating a finite space */
#define WEIGHT_FLAT 25       /* Optuna's default_weights: the newest 25 have weight 1 */
#define GAMMA_MAX 25

struct pdim {
	enum bayes_kind kind;
	size_t levels;
	double lo, hi;      /* REAL and INT: bounds of the truncated normals */
	double *mu, *sigma; /* per kernel */
	double *lognorm;    /* per kernel: log mass of [lo, hi] */
	double *logp;       /* CAT: per kernel, levels log probabilities */
};

struct tpe_parzen {
	size_t n_dims, n_k;
	double *logw; /* per kernel, normalised */
	struct pdim *d;
};

/* log Phi(z), accurate in the far left tail. */
static double log_ndtr(double z)
{
	if (z > -30.0)
		return log(0.5 * erfc(-z * 0.70710678118654752440));
	/* Asymptotic series of the Mills ratio. */
	double r = 1.0 / (z * z), s = 1.0, t = 1.0;
	for (int k = 1; k <= 5; k++) {
		t *= -(2.0 * k - 1.0) * r;
		s += t;
	}
	return -0.5 * z * z - log(-z) - LOG_SQRT_2PI + log(s);
}

/* log (Phi(b) - Phi(a)) for a < b. */
static double log_gauss_mass(double a, double b)
{
	if (b <= 0) {
		double lb = log_ndtr(b), la = log_ndtr(a);
		return lb + log1p(-exp(la - lb));
	}
	if (a >= 0) {
		double la = log_ndtr(-a), lb = log_ndtr(-b);
		return la + log1p(-exp(lb - la));
	}
	return log1p(-0.5 * erfc(-a * 0.70710678118654752440) -
		     0.5 * erfc(b * 0.70710678118654752440));
}

static int check_dims(const struct bayes_dim *dims, size_t n, struct diag *d)
{
	if (n == 0)
		return diag_set(d, FT_EINVAL, "", 0, 0, "tpe needs at least one swept parameter");
	for (size_t i = 0; i < n; i++)
		if (dims[i].kind != BAYES_REAL && dims[i].levels < 2)
			return diag_set(d, FT_EINVAL, "", 0, 0, "a discrete tpe dimension needs at "
					"least two values");
	return 0;
}

void tpe_parzen_free(struct tpe_parzen *p)
{
	if (!p)
		return;
	for (size_t j = 0; p->d && j < p->n_dims; j++) {
		free(p->d[j].mu);
		free(p->d[j].sigma);
		free(p->d[j].lognorm);
		free(p->d[j].logp);
	}
	free(p->d);
	free(p->logw);
	free(p);
}

static int cmp_by_value(const void *a, const void *b, void *ctx)
{
	const double *v = ctx;
	size_t i = *(const size_t *)a, j = *(const size_t *)b;
	int c = (v[i] > v[j]) - (v[i] < v[j]);
	return c ? c : (i > j) - (i < j);
}

/* Optuna's spreads: the larger gap to a sorted neighbour (the bounds count as neighbours;
 * the outermost observations use their inner gap once there are two), clipped. */
static void spreads(struct pdim *pd, const double *v, size_t n, size_t *order)
{
	double range = pd->hi - pd->lo;
	double minsig = range / (n + 2.0 < 100.0 ? n + 2.0 : 100.0);
	for (size_t i = 0; i < n; i++)
		order[i] = i;
	qsort_r(order, n, sizeof *order, cmp_by_value, (void *)v);
	for (size_t r = 0; r < n; r++) {
		double x = v[order[r]];
		double prev = r ? v[order[r - 1]] : pd->lo;
		double next = r + 1 < n ? v[order[r + 1]] : pd->hi;
		double s = fmax(x - prev, next - x);
		if (n >= 2 && r == 0)
			s = v[order[1]] - x;
		else if (n >= 2 && r == n - 1)
			s = x - v[order[n - 2]];
		pd->sigma[order[r]] = s < minsig ? minsig : s > range ? range : s;
	}
}

int tpe_parzen_create(struct tpe_parzen **out, const struct bayes_dim *dims, size_t n_dims,
		      const double *X, size_t n, struct diag *d)
{
	*out = NULL;
	int rc = check_dims(dims, n_dims, d);
	if (rc)
		return rc;
	struct tpe_parzen *p = calloc(1, sizeof *p);
	size_t nk = n + 1;
	double *v = calloc(nk, sizeof *v);
	size_t *order = calloc(nk, sizeof *order);
	if (!p || !v || !order)
		goto oom;
	p->n_dims = n_dims;
	p->n_k = nk;
	p->logw = calloc(nk, sizeof *p->logw);
	p->d = calloc(n_dims, sizeof *p->d);
	if (!p->logw || !p->d)
		goto oom;
	/* Weights: 1 each (the oldest ramped from 1/n when there are more than 25), the prior
	 * 1; with no observation the prior alone. */
	double wsum = 0;
	for (size_t i = 0; i < n; i++) {
		double w = 1.0;
		if (n > WEIGHT_FLAT && i < n - WEIGHT_FLAT) {
			size_t m = n - WEIGHT_FLAT;
			w = m == 1 ? 1.0 / (double)n
				   : 1.0 / (double)n + (double)i * (1.0 - 1.0 / (double)n) /
							 (double)(m - 1);
		}
		p->logw[i] = w;
		wsum += w;
	}
	p->logw[n] = 1.0;
	wsum += 1.0;
	for (size_t k = 0; k < nk; k++)
		p->logw[k] = log(p->logw[k] / wsum);
	for (size_t j = 0; j < n_dims; j++) {
		struct pdim *pd = &p->d[j];
		pd->kind = dims[j].kind;
		pd->levels = dims[j].levels;
		for (size_t i = 0; i < n; i++)
			v[i] = X[i * n_dims + j];
		if (pd->kind == BAYES_CAT) {
			size_t L = pd->levels;
			pd->logp = calloc(nk * L, sizeof *pd->logp);
			if (!pd->logp)
				goto oom;
			double base = 1.0 / (double)nk;
			for (size_t k = 0; k < nk; k++) {
				double tot = base * (double)L + (k < n ? 1.0 : 0.0);
				for (size_t c = 0; c < L; c++) {
					double w = base + (k < n && (size_t)v[k] == c ? 1.0 : 0.0);
					pd->logp[k * L + c] = log(w / tot);
				}
			}
			continue;
		}
		pd->lo = pd->kind == BAYES_REAL ? 0.0 : -0.5;
		pd->hi = pd->kind == BAYES_REAL ? 1.0 : (double)pd->levels - 0.5;
		pd->mu = calloc(nk, sizeof *pd->mu);
		pd->sigma = calloc(nk, sizeof *pd->sigma);
		pd->lognorm = calloc(nk, sizeof *pd->lognorm);
		if (!pd->mu || !pd->sigma || !pd->lognorm)
			goto oom;
		memcpy(pd->mu, v, n * sizeof *v);
		spreads(pd, v, n, order);
		pd->mu[n] = 0.5 * (pd->lo + pd->hi);
		pd->sigma[n] = pd->hi - pd->lo;
		for (size_t k = 0; k < nk; k++)
			pd->lognorm[k] = log_gauss_mass((pd->lo - pd->mu[k]) / pd->sigma[k],
							(pd->hi - pd->mu[k]) / pd->sigma[k]);
	}
	free(v);
	free(order);
	*out = p;
	return 0;
oom:
	free(v);
	free(order);
	tpe_parzen_free(p);
	return diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory for the tpe search");
}

double tpe_parzen_log_pdf(const struct tpe_parzen *p, const double *x)
{
	double mx = -INFINITY, s = 0;
	/* Two passes over the kernels: their log terms, then a stable log-sum-exp. */
	for (int pass = 0; pass < 2; pass++) {
		for (size_t k = 0; k < p->n_k; k++) {
			double lp = p->logw[k];
			for (size_t j = 0; j < p->n_dims; j++) {
				const struct pdim *pd = &p->d[j];
				if (pd->kind == BAYES_CAT) {
					lp += pd->logp[k * pd->levels + (size_t)x[j]];
				} else if (pd->kind == BAYES_REAL) {
					double z = (x[j] - pd->mu[k]) / pd->sigma[k];
					lp += -0.5 * z * z - log(pd->sigma[k]) - LOG_SQRT_2PI -
					      pd->lognorm[k];
				} else {
					double a = (x[j] - 0.5 - pd->mu[k]) / pd->sigma[k];
					double b = (x[j] + 0.5 - pd->mu[k]) / pd->sigma[k];
					lp += log_gauss_mass(a, b) - pd->lognorm[k];
				}
			}
			if (pass == 0)
				mx = lp > mx ? lp : mx;
			else
				s += exp(lp - mx);
		}
		if (pass == 0 && mx == -INFINITY)
			return -INFINITY;
	}
	return mx + log(s);
}

static double normal(struct rng *r)
{
	double u, v, s;
	do {
		u = 2.0 * rng_uniform(r) - 1.0;
		v = 2.0 * rng_uniform(r) - 1.0;
		s = u * u + v * v;
	} while (s >= 1.0 || s == 0.0);
	return u * sqrt(-2.0 * log(s) / s);
}

/* A draw from the mixture: a kernel by weight, then each dimension from that kernel. Every
 * kernel's centre lies within its bounds, so rejection accepts at least a third of the
 * normal draws. */
static void parzen_sample(const struct tpe_parzen *p, struct rng *r, double *x)
{
	double u = rng_uniform(r), c = 0;
	size_t k = p->n_k - 1;
	for (size_t i = 0; i < p->n_k; i++) {
		c += exp(p->logw[i]);
		if (u < c) {
			k = i;
			break;
		}
	}
	for (size_t j = 0; j < p->n_dims; j++) {
		const struct pdim *pd = &p->d[j];
		if (pd->kind == BAYES_CAT) {
			double v = rng_uniform(r), cc = 0;
			x[j] = (double)(pd->levels - 1);
			for (size_t l = 0; l < pd->levels; l++) {
				cc += exp(pd->logp[k * pd->levels + l]);
				if (v < cc) {
					x[j] = (double)l;
					break;
				}
			}
			continue;
		}
		double t;
		do
			t = pd->mu[k] + pd->sigma[k] * normal(r);
		while (!(t >= pd->lo && t <= pd->hi));
		if (pd->kind == BAYES_INT) {
			t = floor(t + 0.5);
			t = t < 0 ? 0 : t > (double)(pd->levels - 1) ? (double)(pd->levels - 1) : t;
		}
		x[j] = t;
	}
}

/* ---- suggestion ---- */

struct finite {
	bool finite;
	size_t total; /* saturating at SIZE_MAX */
};

static struct finite space_size(const struct bayes_dim *dims, size_t n)
{
	struct finite f = {true, 1};
	for (size_t i = 0; i < n; i++) {
		if (dims[i].kind == BAYES_REAL) {
			f.finite = false;
		} else if (f.total != SIZE_MAX) {
			size_t t;
			f.total = __builtin_mul_overflow(f.total, dims[i].levels, &t) ? SIZE_MAX : t;
		}
	}
	return f;
}

static bool same_point(const double *a, const double *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (a[i] != b[i])
			return false;
	return true;
}

static bool used(const double *x, const double *X, size_t n, size_t nd)
{
	for (size_t i = 0; i < n; i++)
		if (same_point(x, X + i * nd, nd))
			return true;
	return false;
}

static size_t distinct(const double *X, size_t n, size_t nd)
{
	size_t c = 0;
	for (size_t i = 0; i < n; i++)
		c += !used(X + i * nd, X, i, nd);
	return c;
}

static void finite_point(const struct bayes_dim *dims, size_t nd, size_t k, double *x)
{
	for (size_t i = nd; i-- > 0;) {
		x[i] = (double)(k % dims[i].levels);
		k /= dims[i].levels;
	}
}

static void random_point(const struct bayes_dim *dims, size_t nd, struct rng *r, double *x)
{
	for (size_t i = 0; i < nd; i++)
		x[i] = dims[i].kind == BAYES_REAL ? rng_uniform(r)
						  : (double)rng_below(r, dims[i].levels);
}

struct rank_ctx {
	const enum tpe_state *state;
	const double *y;
	const int64_t *steps;
};

static double rank_y(double v)
{
	return isfinite(v) ? v : INFINITY;
}

/* Finished runs by objective, then stopped runs by steps (more first) and objective;
 * ties by index. Running points last. */
static int cmp_rank(const void *a, const void *b, void *ctx)
{
	const struct rank_ctx *c = ctx;
	size_t i = *(const size_t *)a, j = *(const size_t *)b;
	int si = (int)c->state[i], sj = (int)c->state[j];
	if (si != sj)
		return (si > sj) - (si < sj);
	if (c->state[i] == TPE_PRUNED && c->steps[i] != c->steps[j])
		return c->steps[i] > c->steps[j] ? -1 : 1;
	double yi = rank_y(c->y[i]), yj = rank_y(c->y[j]);
	int by = (yi > yj) - (yi < yj);
	return by ? by : (i > j) - (i < j);
}

void tpe_split(bool *good, const enum tpe_state *state, const double *y,
	       const int64_t *steps, size_t n, size_t *order)
{
	size_t n_fin = 0;
	for (size_t i = 0; i < n; i++) {
		n_fin += state[i] == TPE_COMPLETE || state[i] == TPE_PRUNED;
		good[i] = false;
		order[i] = i;
	}
	size_t n_good = (n_fin + 9) / 10;
	n_good = n_good < GAMMA_MAX ? n_good : GAMMA_MAX;
	struct rank_ctx c = {state, y, steps};
	qsort_r(order, n, sizeof *order, cmp_rank, &c);
	for (size_t k = 0; k < n_good; k++)
		good[order[k]] = true;
}

int tpe_suggest(double *out, struct tpe_info *info, const struct bayes_dim *dims,
		size_t n_dims, const double *X, const enum tpe_state *state, const double *y,
		const int64_t *steps, size_t n, uint64_t seed, uint64_t stream,
		struct diag *d)
{
	memset(info, 0, sizeof *info);
	info->score = NAN;
	int rc = check_dims(dims, n_dims, d);
	if (rc)
		return rc;
	struct finite f = space_size(dims, n_dims);
	if (f.finite && f.total != SIZE_MAX && distinct(X, n, n_dims) >= f.total) {
		info->exhausted = true;
		return 0;
	}
	struct rng r;
	rng_seed(&r, seed, 0x7be00000ULL + stream);
	size_t *order = calloc(n ? n : 1, sizeof *order);
	bool *good = calloc(n ? n : 1, sizeof *good);
	double *G = calloc((n ? n : 1) * n_dims, sizeof *G);
	double *B = calloc((n ? n : 1) * n_dims, sizeof *B);
	double *x = calloc(n_dims, sizeof *x);
	struct tpe_parzen *pl = NULL, *pg = NULL;
	if (!order || !good || !G || !B || !x) {
		rc = diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory for the tpe search");
		goto done;
	}
	size_t n_fin = 0;
	for (size_t i = 0; i < n; i++)
		n_fin += state[i] == TPE_COMPLETE || state[i] == TPE_PRUNED;
	bool found = false;
	if (n_fin < TPE_N_STARTUP) {
		/* Random start: uniform draws, an unused one in a finite space. */
		info->random = true;
		for (int t = 0; t < 64 && !found; t++) {
			random_point(dims, n_dims, &r, out);
			found = !f.finite || !used(out, X, n, n_dims);
		}
		for (size_t k = 0; !found && f.finite && k < f.total && k < FINITE_ENUM_MAX; k++) {
			finite_point(dims, n_dims, k, out);
			found = !used(out, X, n, n_dims);
		}
		info->exhausted = !found;
		goto done;
	}
	/* Both groups keep the sweep-index order (the weights ramp by age). */
	tpe_split(good, state, y, steps, n, order);
	size_t ng = 0, nb = 0;
	for (size_t i = 0; i < n; i++) {
		double *dst = good[i] ? G + ng++ * n_dims : B + nb++ * n_dims;
		memcpy(dst, X + i * n_dims, n_dims * sizeof *dst);
	}
	info->n_good = ng;
	info->n_bad = nb;
	if ((rc = tpe_parzen_create(&pl, dims, n_dims, G, ng, d)) != 0 ||
	    (rc = tpe_parzen_create(&pg, dims, n_dims, B, nb, d)) != 0)
		goto done;
	double best = -INFINITY;
	for (int batch = 0; batch <= REDRAW_BATCHES && !found; batch++) {
		for (int t = 0; t < TPE_N_CANDIDATES; t++) {
			parzen_sample(pl, &r, x);
			if (f.finite && used(x, X, n, n_dims))
				continue;
			double s = tpe_parzen_log_pdf(pl, x) - tpe_parzen_log_pdf(pg, x);
			if (!found || s > best) {
				found = true;
				best = s;
				memcpy(out, x, n_dims * sizeof *x);
			}
		}
	}
	/* A finite space whose good region is used up: score every unused point. */
	bool scan = !found && f.finite && f.total <= FINITE_ENUM_MAX;
	for (size_t k = 0; scan && k < f.total; k++) {
		finite_point(dims, n_dims, k, x);
		if (used(x, X, n, n_dims))
			continue;
		double s = tpe_parzen_log_pdf(pl, x) - tpe_parzen_log_pdf(pg, x);
		if (!found || s > best) {
			found = true;
			best = s;
			memcpy(out, x, n_dims * sizeof *x);
		}
	}
	if (!found) {
		info->exhausted = true;
		goto done;
	}
	info->score = best;
done:
	tpe_parzen_free(pl);
	tpe_parzen_free(pg);
	free(order);
	free(good);
	free(G);
	free(B);
	free(x);
	return rc;
}
