/* bayes: Gaussian-process regression (Cholesky of K + sn2 I, analytic gradient of the log
 * marginal likelihood, BFGS over bounded log-parameters from three starts) and expected
 * improvement maximised over candidates: every unused point of a small finite space, else
 * seeded random points, perturbations of the best observations and a local refinement of
 * the best candidates. Single-threaded and in a fixed order, so results are repeatable. */
#include "runner/bayes.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "common/banned.h"

#define SQRT5 2.2360679774997896964
#define GP_MAX_OBS 200          /* larger histories: the best 100 and 100 others */
#define FINITE_ENUM_MAX 4096    /* finite spaces up to this size are scored point by point */
#define N_RANDOM 1000
#define N_TOP 5
#define N_PERTURB 100
#define N_REFINE 3
#define REFINE_STEPS 40
#define MAXIMIN_DRAWS 64

/* Bounds and weak log-normal priors of theta's parts (logs of the values). */
#define LS_LO (-4.605170185988091)  /* log 0.01 */
#define LS_HI (2.995732273553991)   /* log 20 */
#define LS_MU (-0.6931471805599453) /* log 0.5 */
#define LS_SD 1.0
#define SF_LO (-4.605170185988091)  /* log 0.01 */
#define SF_HI (4.605170185988091)   /* log 100 */
#define SF_MU 0.0
#define SF_SD 1.5
#define SN_LO (-18.420680743952367) /* log 1e-8 */
#define SN_HI 0.0                   /* log 1 */
#define SN_MU (-6.907755278982137)  /* log 1e-3 */
#define SN_SD 2.5

/* ---- linear algebra ---- */

/* In-place lower Cholesky factor of the n x n row-major matrix a; false when a is not
 * positive definite. */
static bool cholesky(double *a, size_t n)
{
	for (size_t j = 0; j < n; j++) {
		double s = a[j * n + j];
		for (size_t k = 0; k < j; k++)
			s -= a[j * n + k] * a[j * n + k];
		if (!(s > 0) || !isfinite(s))
			return false;
		double ljj = sqrt(s);
		a[j * n + j] = ljj;
		for (size_t i = j + 1; i < n; i++) {
			double t = a[i * n + j];
			for (size_t k = 0; k < j; k++)
				t -= a[i * n + k] * a[j * n + k];
			a[i * n + j] = t / ljj;
		}
		for (size_t i = 0; i < j; i++)
			a[i * n + j] = 0.0;
	}
	return true;
}

/* Solves L x = b in place (L lower, row-major). */
static void solve_lower(const double *L, double *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		double s = b[i];
		for (size_t k = 0; k < i; k++)
			s -= L[i * n + k] * b[k];
		b[i] = s / L[i * n + i];
	}
}

/* Solves L^T x = b in place. */
static void solve_upper_t(const double *L, double *b, size_t n)
{
	for (size_t i = n; i-- > 0;) {
		double s = b[i];
		for (size_t k = i + 1; k < n; k++)
			s -= L[k * n + i] * b[k];
		b[i] = s / L[i * n + i];
	}
}

/* ---- the kernel ---- */

static double dist2(const double *a, const double *b, const double *inv_ls, size_t de)
{
	double s = 0;
	for (size_t i = 0; i < de; i++) {
		double t = (a[i] - b[i]) * inv_ls[i];
		s += t * t;
	}
	return s;
}

static double matern52(double r2, double sf2)
{
	double r = sqrt(r2);
	return sf2 * (1.0 + SQRT5 * r + (5.0 / 3.0) * r2) * exp(-SQRT5 * r);
}

/* A process conditioned on data: the Cholesky factor and alpha = K^-1 y. */
struct gp {
	size_t n, de;
	const double *X;
	double *L, *alpha, *inv_ls;
	double sf2, sn2;
};

static void gp_clear(struct gp *g)
{
	free(g->L);
	free(g->alpha);
	free(g->inv_ls);
	memset(g, 0, sizeof *g);
}

/* 0, FT_ENOMEM, or FT_ERUN when K + sn2 I is not positive definite. */
static int gp_build(struct gp *g, const double *X, const double *y, size_t n, size_t de,
		    const double *theta)
{
	memset(g, 0, sizeof *g);
	g->n = n;
	g->de = de;
	g->X = X;
	g->sf2 = exp(theta[de]);
	g->sn2 = exp(theta[de + 1]);
	g->L = malloc((n ? n * n : 1) * sizeof *g->L);
	g->alpha = malloc((n ? n : 1) * sizeof *g->alpha);
	g->inv_ls = malloc((de ? de : 1) * sizeof *g->inv_ls);
	if (!g->L || !g->alpha || !g->inv_ls) {
		gp_clear(g);
		return FT_ENOMEM;
	}
	for (size_t i = 0; i < de; i++)
		g->inv_ls[i] = exp(-theta[i]);
	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; j <= i; j++) {
			double k = matern52(dist2(X + i * de, X + j * de, g->inv_ls, de), g->sf2);
			g->L[i * n + j] = k;
			g->L[j * n + i] = k;
		}
		/* The noise, and a jitter relative to the signal for repeated points. */
		g->L[i * n + i] += g->sn2 + 1e-10 * g->sf2;
	}
	if (!cholesky(g->L, n)) {
		gp_clear(g);
		return FT_ERUN;
	}
	memcpy(g->alpha, y, n * sizeof *y);
	solve_lower(g->L, g->alpha, n);
	solve_upper_t(g->L, g->alpha, n);
	return 0;
}

/* Mean and latent variance at one point; kv is scratch of n doubles. */
static void gp_point(const struct gp *g, const double *x, double *kv, double *mean, double *var)
{
	double m = 0;
	for (size_t i = 0; i < g->n; i++) {
		kv[i] = matern52(dist2(x, g->X + i * g->de, g->inv_ls, g->de), g->sf2);
		m += kv[i] * g->alpha[i];
	}
	solve_lower(g->L, kv, g->n);
	double v = g->sf2;
	for (size_t i = 0; i < g->n; i++)
		v -= kv[i] * kv[i];
	*mean = m;
	*var = v > 0 ? v : 0;
}

int bayes_gp_predict(double *mean, double *var, const double *X, const double *y, size_t n,
		     size_t de, const double *theta, const double *Xs, size_t m, struct diag *d)
{
	struct gp g;
	int rc = gp_build(&g, X, y, n, de, theta);
	if (rc)
		return diag_set(d, rc, "", 0, 0, rc == FT_ENOMEM ? "out of memory for the Gaussian "
				"process" : "the kernel matrix is not positive definite");
	double *kv = malloc((n ? n : 1) * sizeof *kv);
	if (!kv) {
		gp_clear(&g);
		return diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory for the Gaussian process");
	}
	for (size_t i = 0; i < m; i++)
		gp_point(&g, Xs + i * de, kv, &mean[i], &var[i]);
	free(kv);
	gp_clear(&g);
	return 0;
}

/* Log marginal likelihood and its gradient (grad may be NULL). 0, FT_ENOMEM, FT_ERUN. */
static int lml_raw(double *out, double *grad, const double *X, const double *y, size_t n,
		   size_t de, const double *theta)
{
	struct gp g;
	int rc = gp_build(&g, X, y, n, de, theta);
	if (rc)
		return rc;
	double quad = 0, logdet = 0;
	for (size_t i = 0; i < n; i++) {
		quad += y[i] * g.alpha[i];
		logdet += log(g.L[i * n + i]);
	}
	*out = -0.5 * quad - logdet - 0.5 * (double)n * log(2.0 * M_PI);
	if (!grad) {
		gp_clear(&g);
		return 0;
	}
	/* W = alpha alpha^T - K^-1; dlml/dtheta_j = 1/2 tr(W dK/dtheta_j). */
	double *W = malloc((n ? n * n : 1) * sizeof *W);
	if (!W) {
		gp_clear(&g);
		return FT_ENOMEM;
	}
	for (size_t c = 0; c < n; c++) {
		double *col = W + c * n; /* K^-1 e_c, symmetric so rows = columns */
		memset(col, 0, n * sizeof *col);
		col[c] = 1.0;
		solve_lower(g.L, col, n);
		solve_upper_t(g.L, col, n);
	}
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < n; j++)
			W[i * n + j] = g.alpha[i] * g.alpha[j] - W[i * n + j];
	memset(grad, 0, (de + 2) * sizeof *grad);
	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; j <= i; j++) {
			double w = (i == j ? 1.0 : 2.0) * W[i * n + j];
			const double *a = X + i * de, *b = X + j * de;
			double r2 = dist2(a, b, g.inv_ls, de), r = sqrt(r2);
			double e = exp(-SQRT5 * r);
			grad[de] += 0.5 * w * g.sf2 * (1.0 + SQRT5 * r + (5.0 / 3.0) * r2) * e;
			/* dk/dlog l_i = 5/3 sf2 (1 + sqrt5 r) exp(-sqrt5 r) ((a_i - b_i) / l_i)^2 */
			double c = 0.5 * w * (5.0 / 3.0) * g.sf2 * (1.0 + SQRT5 * r) * e;
			for (size_t k = 0; k < de && i != j; k++) {
				double t = (a[k] - b[k]) * g.inv_ls[k];
				grad[k] += c * t * t;
			}
		}
		grad[de + 1] += 0.5 * W[i * n + i] * g.sn2;
	}
	free(W);
	gp_clear(&g);
	return 0;
}

int bayes_gp_lml(double *out, double *grad, const double *X, const double *y, size_t n,
		 size_t de, const double *theta, struct diag *d)
{
	int rc = lml_raw(out, grad, X, y, n, de, theta);
	if (rc == FT_ENOMEM)
		return diag_set(d, rc, "", 0, 0, "out of memory for the Gaussian process");
	if (rc)
		return diag_set(d, rc, "", 0, 0, "the kernel matrix is not positive definite");
	return 0;
}

/* ---- fitting the hyperparameters ---- */

struct fit_ctx {
	const double *X, *y;
	size_t n, de;
	double *lo, *hi, *mu, *sd; /* per component of theta */
	double *theta, *gtheta;    /* scratch */
};

static double sigmoid(double z)
{
	return z >= 0 ? 1.0 / (1.0 + exp(-z)) : exp(z) / (1.0 + exp(z));
}

/* f(z) = -(lml + log prior) at theta = lo + (hi - lo) sigmoid(z), and df/dz. */
static int fit_eval(struct fit_ctx *c, const double *z, double *f, double *g)
{
	size_t p = c->de + 2;
	for (size_t i = 0; i < p; i++)
		c->theta[i] = c->lo[i] + (c->hi[i] - c->lo[i]) * sigmoid(z[i]);
	double lml;
	int rc = lml_raw(&lml, c->gtheta, c->X, c->y, c->n, c->de, c->theta);
	if (rc == FT_ERUN) {
		*f = INFINITY;
		return 0;
	}
	if (rc)
		return rc;
	double v = lml;
	for (size_t i = 0; i < p; i++) {
		double t = (c->theta[i] - c->mu[i]) / c->sd[i];
		v -= 0.5 * t * t;
		double dtheta = c->gtheta[i] - t / c->sd[i];
		double s = sigmoid(z[i]);
		g[i] = -dtheta * (c->hi[i] - c->lo[i]) * s * (1.0 - s);
	}
	*f = -v;
	return isfinite(*f) ? 0 : (*f = INFINITY, 0);
}

static double dot(const double *a, const double *b, size_t n)
{
	double s = 0;
	for (size_t i = 0; i < n; i++)
		s += a[i] * b[i];
	return s;
}

/* BFGS with a backtracking line search; z is updated to the best point found. */
static int bfgs(struct fit_ctx *c, double *z, double *fbest)
{
	size_t p = c->de + 2;
	double *mem = calloc(p * p + 6 * p, sizeof *mem);
	if (!mem)
		return FT_ENOMEM;
	double *H = mem, *g = H + p * p, *zn = g + p, *gn = zn + p, *dir = gn + p, *s = dir + p,
	       *yv = s + p;
	double f = INFINITY;
	int rc = fit_eval(c, z, &f, g);
	for (size_t i = 0; i < p; i++)
		H[i * p + i] = 1.0;
	for (int it = 0; it < 100 && !rc && isfinite(f); it++) {
		for (size_t i = 0; i < p; i++) {
			dir[i] = 0;
			for (size_t j = 0; j < p; j++)
				dir[i] -= H[i * p + j] * g[j];
		}
		double slope = dot(dir, g, p);
		if (!(slope < 0)) {
			memset(H, 0, p * p * sizeof *H);
			for (size_t i = 0; i < p; i++) {
				H[i * p + i] = 1.0;
				dir[i] = -g[i];
			}
			slope = dot(dir, g, p);
		}
		double norm = sqrt(dot(dir, dir, p));
		double step = norm > 4.0 ? 4.0 / norm : 1.0;
		double fn = INFINITY;
		bool moved = false;
		while (step > 1e-10) {
			for (size_t i = 0; i < p; i++)
				zn[i] = z[i] + step * dir[i];
			if ((rc = fit_eval(c, zn, &fn, gn)) != 0)
				break;
			if (fn <= f + 1e-4 * step * slope) {
				moved = true;
				break;
			}
			step *= 0.5;
		}
		if (rc || !moved)
			break;
		double sy = 0;
		for (size_t i = 0; i < p; i++) {
			s[i] = zn[i] - z[i];
			yv[i] = gn[i] - g[i];
			sy += s[i] * yv[i];
		}
		bool done = f - fn < 1e-10 * (1.0 + fabs(f));
		memcpy(z, zn, p * sizeof *z);
		memcpy(g, gn, p * sizeof *g);
		f = fn;
		if (done || sqrt(dot(g, g, p)) < 1e-7)
			break;
		if (sy > 1e-12) {
			/* H <- (I - rho s y^T) H (I - rho y s^T) + rho s s^T */
			double rho = 1.0 / sy;
			double *hy = dir; /* H y */
			for (size_t i = 0; i < p; i++)
				hy[i] = dot(H + i * p, yv, p);
			double yhy = dot(yv, hy, p);
			for (size_t i = 0; i < p; i++)
				for (size_t j = 0; j < p; j++)
					H[i * p + j] += rho * ((1.0 + rho * yhy) * s[i] * s[j] -
							       hy[i] * s[j] - s[i] * hy[j]);
		}
	}
	*fbest = f;
	free(mem);
	return rc;
}

static double logit(double u)
{
	if (u < 1e-9)
		u = 1e-9;
	if (u > 1 - 1e-9)
		u = 1 - 1e-9;
	return log(u / (1.0 - u));
}

int bayes_gp_fit(double *theta, const double *X, const double *y, size_t n, size_t de,
		 uint64_t seed, struct diag *d)
{
	size_t p = de + 2;
	double *mem = calloc(9 * p, sizeof *mem);
	if (!mem)
		return diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory for the Gaussian process");
	struct fit_ctx c = {.X = X, .y = y, .n = n, .de = de};
	c.lo = mem;
	c.hi = c.lo + p;
	c.mu = c.hi + p;
	c.sd = c.mu + p;
	c.theta = c.sd + p;
	c.gtheta = c.theta + p;
	double *z = c.gtheta + p, *zbest = z + p, *start = zbest + p;
	for (size_t i = 0; i < p; i++) {
		bool ls = i < de, sf = i == de;
		c.lo[i] = ls ? LS_LO : sf ? SF_LO : SN_LO;
		c.hi[i] = ls ? LS_HI : sf ? SF_HI : SN_HI;
		c.mu[i] = ls ? LS_MU : sf ? SF_MU : SN_MU;
		c.sd[i] = ls ? LS_SD : sf ? SF_SD : SN_SD;
	}
	struct rng r;
	rng_seed(&r, seed, 0x6a7e5ULL);
	double best = INFINITY;
	int rc = 0;
	for (int s = 0; s < 3 && !rc; s++) {
		for (size_t i = 0; i < p; i++) {
			/* The prior means first, then draws within 1.5 prior sd of them. */
			start[i] = c.mu[i] + (s == 0 ? 0.0 : c.sd[i] * 1.5 * (2.0 * rng_uniform(&r) - 1.0));
			if (start[i] < c.lo[i])
				start[i] = c.lo[i];
			if (start[i] > c.hi[i])
				start[i] = c.hi[i];
			z[i] = logit((start[i] - c.lo[i]) / (c.hi[i] - c.lo[i]));
		}
		double f;
		rc = bfgs(&c, z, &f);
		if (!rc && f < best) {
			best = f;
			memcpy(zbest, z, p * sizeof *z);
		}
	}
	if (!rc && !isfinite(best))
		rc = FT_ERUN;
	if (!rc)
		for (size_t i = 0; i < p; i++)
			theta[i] = c.lo[i] + (c.hi[i] - c.lo[i]) * sigmoid(zbest[i]);
	free(mem);
	if (rc == FT_ENOMEM)
		return diag_set(d, rc, "", 0, 0, "out of memory for the Gaussian process");
	if (rc)
		return diag_set(d, rc, "", 0, 0, "no Gaussian process fits the observations");
	return 0;
}

double bayes_expected_improvement(double mean, double sd, double best)
{
	double imp = best - mean;
	if (!(sd > 1e-12))
		return imp > 0 ? imp : 0.0;
	double z = imp / sd;
	double cdf = 0.5 * erfc(-z / 1.4142135623730951);
	double pdf = exp(-0.5 * z * z) / 2.5066282746310002;
	double ei = imp * cdf + sd * pdf;
	return ei > 0 ? ei : 0.0;
}

/* ---- the search space ---- */

struct space {
	const struct bayes_dim *dims;
	size_t n, de;
	bool finite;
	size_t total; /* points of a finite space (saturating at SIZE_MAX) */
};

static int space_init(struct space *sp, const struct bayes_dim *dims, size_t n, struct diag *d)
{
	memset(sp, 0, sizeof *sp);
	sp->dims = dims;
	sp->n = n;
	sp->finite = true;
	sp->total = 1;
	if (n == 0)
		return diag_set(d, FT_EINVAL, "", 0, 0, "bayes needs at least one swept parameter");
	for (size_t i = 0; i < n; i++) {
		if (dims[i].kind != BAYES_REAL && dims[i].levels < 2)
			return diag_set(d, FT_EINVAL, "", 0, 0, "a discrete bayes dimension needs at "
					"least two values");
		sp->de += dims[i].kind == BAYES_CAT ? dims[i].levels : 1;
		if (dims[i].kind == BAYES_REAL) {
			sp->finite = false;
		} else if (sp->total != SIZE_MAX) {
			size_t t;
			sp->total = __builtin_mul_overflow(sp->total, dims[i].levels, &t) ? SIZE_MAX : t;
		}
	}
	return 0;
}

static void encode(const struct space *sp, const double *x, double *e)
{
	for (size_t i = 0; i < sp->n; i++) {
		const struct bayes_dim *dm = &sp->dims[i];
		if (dm->kind == BAYES_REAL) {
			*e++ = x[i];
		} else if (dm->kind == BAYES_INT) {
			*e++ = x[i] / (double)(dm->levels - 1);
		} else {
			for (size_t k = 0; k < dm->levels; k++)
				*e++ = (size_t)x[i] == k ? 1.0 : 0.0;
		}
	}
}

static double clamp01(double u)
{
	return u < 0 ? 0 : u > 1 ? 1 : u;
}

/* Rounds a point to feasible values. */
static void feasible(const struct space *sp, double *x)
{
	for (size_t i = 0; i < sp->n; i++) {
		const struct bayes_dim *dm = &sp->dims[i];
		if (dm->kind == BAYES_REAL) {
			x[i] = clamp01(x[i]);
		} else {
			double v = floor(x[i] + 0.5);
			x[i] = v < 0 ? 0 : v > (double)(dm->levels - 1) ? (double)(dm->levels - 1) : v;
		}
	}
}

static void random_point(const struct space *sp, struct rng *r, double *x)
{
	for (size_t i = 0; i < sp->n; i++)
		x[i] = sp->dims[i].kind == BAYES_REAL ? rng_uniform(r)
						      : (double)rng_below(r, sp->dims[i].levels);
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

/* A neighbour of x at relative scale `scale`. */
static void perturb(const struct space *sp, struct rng *r, const double *x, double scale,
		    double *out)
{
	for (size_t i = 0; i < sp->n; i++) {
		const struct bayes_dim *dm = &sp->dims[i];
		if (dm->kind == BAYES_REAL)
			out[i] = x[i] + scale * normal(r);
		else if (dm->kind == BAYES_INT)
			out[i] = x[i] + scale * (double)(dm->levels - 1) * normal(r);
		else
			out[i] = rng_uniform(r) < scale ? (double)rng_below(r, dm->levels) : x[i];
	}
	feasible(sp, out);
}

static bool same_point(const double *a, const double *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (a[i] != b[i])
			return false;
	return true;
}

/* Whether x equals one of the observed or pending points. */
static bool used(const struct space *sp, const double *x, const double *X, size_t n_obs,
		 const double *P, size_t n_p)
{
	for (size_t i = 0; i < n_obs; i++)
		if (same_point(x, X + i * sp->n, sp->n))
			return true;
	for (size_t i = 0; i < n_p; i++)
		if (same_point(x, P + i * sp->n, sp->n))
			return true;
	return false;
}

/* The k-th point of a finite space (mixed radix, last dimension fastest). */
static void finite_point(const struct space *sp, size_t k, double *x)
{
	for (size_t i = sp->n; i-- > 0;) {
		x[i] = (double)(k % sp->dims[i].levels);
		k /= sp->dims[i].levels;
	}
}

static size_t distinct_used(const struct space *sp, const double *X, size_t n_obs,
			    const double *P, size_t n_p)
{
	size_t n = 0;
	for (size_t i = 0; i < n_obs + n_p; i++) {
		const double *x = i < n_obs ? X + i * sp->n : P + (i - n_obs) * sp->n;
		bool dup = false;
		for (size_t j = 0; j < i && !dup; j++)
			dup = same_point(x, j < n_obs ? X + j * sp->n : P + (j - n_obs) * sp->n,
					 sp->n);
		n += !dup;
	}
	return n;
}

/* ---- suggestion ---- */

struct search {
	const struct space *sp;
	const struct gp *g;
	double *e, *kv;     /* scratch: encoded point (de), kernel vector (gp n) */
	double best;
	double ymean, ystd;
	const double *X, *P;
	size_t n_obs, n_p;
	/* the incumbent */
	double *x_best;
	double ei_best, mean_best, sd_best;
	bool have;
};

/* Scores a feasible candidate; keeps it when its EI is the best so far. */
static void consider(struct search *s, const double *x)
{
	if (used(s->sp, x, s->X, s->n_obs, s->P, s->n_p))
		return;
	encode(s->sp, x, s->e);
	double m, v;
	gp_point(s->g, s->e, s->kv, &m, &v);
	double sd = sqrt(v);
	double ei = bayes_expected_improvement(m, sd, s->best);
	if (!s->have || ei > s->ei_best) {
		s->have = true;
		s->ei_best = ei;
		s->mean_best = m;
		s->sd_best = sd;
		memcpy(s->x_best, x, s->sp->n * sizeof *x);
	}
}

/* The farthest of MAXIMIN_DRAWS random points from every used point (encoded distance). */
static void maximin(const struct space *sp, struct rng *r, const double *X, size_t n_obs,
		    const double *P, size_t n_p, double *out, double *x, double *e, double *eu,
		    bool *found)
{
	double best = -1;
	*found = false;
	for (int t = 0; t < MAXIMIN_DRAWS; t++) {
		random_point(sp, r, x);
		if (used(sp, x, X, n_obs, P, n_p))
			continue;
		encode(sp, x, e);
		double dmin = INFINITY;
		for (size_t i = 0; i < n_obs + n_p; i++) {
			encode(sp, i < n_obs ? X + i * sp->n : P + (i - n_obs) * sp->n, eu);
			double s = 0;
			for (size_t k = 0; k < sp->de; k++)
				s += (e[k] - eu[k]) * (e[k] - eu[k]);
			if (s < dmin)
				dmin = s;
		}
		if (dmin > best) {
			best = dmin;
			memcpy(out, x, sp->n * sizeof *x);
			*found = true;
		}
	}
}

static int cmp_idx_y(const void *a, const void *b, void *ctx)
{
	const double *y = ctx;
	size_t i = *(const size_t *)a, j = *(const size_t *)b;
	int by_y = (y[i] > y[j]) - (y[i] < y[j]);
	return by_y ? by_y : (i > j) - (i < j);
}

int bayes_suggest(double *out, struct bayes_info *info, const struct bayes_dim *dims,
		  size_t n_dims, const double *X, const double *y, size_t n_obs,
		  const double *pending, size_t n_pending, size_t n_init, uint64_t seed,
		  uint64_t stream, struct diag *d)
{
	struct space sp;
	memset(info, 0, sizeof *info);
	info->mean = info->sd = info->ei = info->best = NAN;
	int rc = space_init(&sp, dims, n_dims, d);
	if (rc)
		return rc;
	struct rng r;
	rng_seed(&r, seed, 0xba7e5000ULL + stream);
	if (sp.finite && sp.total != SIZE_MAX &&
	    distinct_used(&sp, X, n_obs, pending, n_pending) >= sp.total) {
		info->exhausted = true;
		return 0;
	}
	/* Observations: failed runs count as the worst finite value. */
	size_t n_fin = 0;
	double worst = -INFINITY;
	for (size_t i = 0; i < n_obs; i++)
		if (isfinite(y[i])) {
			n_fin++;
			if (y[i] > worst)
				worst = y[i];
		}
	size_t de = sp.de;
	double *mem = NULL, *theta = NULL;
	size_t *order = NULL, *rank = NULL;
	struct gp g = {0};
	/* Scratch: x, x2, e, eu (n_dims / de each), kernel vector, GP data. */
	size_t n_gp = n_obs < GP_MAX_OBS ? n_obs : GP_MAX_OBS;
	size_t rows = n_gp + n_pending;
	mem = calloc(3 * n_dims + 2 * de + rows + rows * de + rows, sizeof *mem);
	theta = calloc(de + 2, sizeof *theta);
	order = calloc(n_obs ? n_obs : 1, sizeof *order);
	rank = calloc(n_obs ? n_obs : 1, sizeof *rank);
	if (!mem || !theta || !order || !rank) {
		rc = diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory for the bayes search");
		goto done;
	}
	double *x = mem, *x2 = x + n_dims, *e = x2 + n_dims, *eu = e + de, *kv = eu + de;
	double *GX = kv + rows, *Gy = GX + rows * de, *xb = Gy + rows;
	if (n_fin < (n_init > 2 ? n_init : 2)) {
		bool found = false;
		maximin(&sp, &r, X, n_obs, pending, n_pending, out, x, e, eu, &found);
		if (!found && sp.finite) {
			/* A nearly full finite space: the first unused point. */
			for (size_t k = 0; k < sp.total && !found; k++) {
				finite_point(&sp, k, out);
				found = !used(&sp, out, X, n_obs, pending, n_pending);
			}
		}
		if (!found)
			random_point(&sp, &r, out);
		info->random = true;
		goto done;
	}
	/* The observations the process sees: all of them, or the best half of GP_MAX_OBS
	 * and a seeded draw of the others. */
	for (size_t i = 0; i < n_obs; i++)
		order[i] = i;
	double *yi = malloc((n_obs ? n_obs : 1) * sizeof *yi);
	if (!yi) {
		rc = diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory for the bayes search");
		goto done;
	}
	for (size_t i = 0; i < n_obs; i++)
		yi[i] = isfinite(y[i]) ? y[i] : worst;
	if (n_obs > GP_MAX_OBS) {
		qsort_r(order, n_obs, sizeof *order, cmp_idx_y, yi);
		for (size_t k = GP_MAX_OBS / 2; k < GP_MAX_OBS; k++) {
			size_t j = k + (size_t)rng_below(&r, n_obs - k);
			size_t t = order[k];
			order[k] = order[j];
			order[j] = t;
		}
	}
	double ymean = 0, yvar = 0;
	for (size_t k = 0; k < n_gp; k++)
		ymean += yi[order[k]];
	ymean /= (double)n_gp;
	for (size_t k = 0; k < n_gp; k++)
		yvar += (yi[order[k]] - ymean) * (yi[order[k]] - ymean);
	double ystd = sqrt(yvar / (double)n_gp);
	if (!(ystd > 1e-12 * (1.0 + fabs(ymean))))
		ystd = 1.0;
	double best = INFINITY;
	for (size_t k = 0; k < n_gp; k++) {
		encode(&sp, X + order[k] * n_dims, GX + k * de);
		Gy[k] = (yi[order[k]] - ymean) / ystd;
		if (Gy[k] < best)
			best = Gy[k];
	}
	free(yi);
	rc = bayes_gp_fit(theta, GX, Gy, n_gp, de, seed ^ (stream * 0x9e3779b97f4a7c15ULL), d);
	if (rc)
		goto done;
	/* Pending points: constant liar at the mean observation (0 once standardised). */
	for (size_t k = 0; k < n_pending; k++) {
		encode(&sp, pending + k * n_dims, GX + (n_gp + k) * de);
		Gy[n_gp + k] = 0.0;
	}
	rc = gp_build(&g, GX, Gy, rows, de, theta);
	if (rc) {
		rc = diag_set(d, rc, "", 0, 0, rc == FT_ENOMEM ? "out of memory for the Gaussian "
			      "process" : "the kernel matrix is not positive definite");
		goto done;
	}
	struct search s = {.sp = &sp, .g = &g, .e = e, .kv = kv, .best = best, .X = X,
			   .P = pending, .n_obs = n_obs, .n_p = n_pending, .x_best = xb};
	if (sp.finite && sp.total <= FINITE_ENUM_MAX) {
		for (size_t k = 0; k < sp.total; k++) {
			finite_point(&sp, k, x);
			consider(&s, x);
		}
	} else {
		for (int t = 0; t < N_RANDOM; t++) {
			random_point(&sp, &r, x);
			consider(&s, x);
		}
		/* Around the best observations (GP row k is observation order[k]). */
		size_t top = n_gp < N_TOP ? n_gp : N_TOP;
		for (size_t k = 0; k < n_gp; k++)
			rank[k] = k;
		qsort_r(rank, n_gp, sizeof *rank, cmp_idx_y, Gy);
		for (size_t a = 0; a < top; a++) {
			const double *base = X + order[rank[a]] * n_dims;
			for (int t = 0; t < N_PERTURB; t++) {
				perturb(&sp, &r, base, t < N_PERTURB / 2 ? 0.05 : 0.15, x);
				consider(&s, x);
			}
		}
		/* Local refinement of the incumbent with shrinking steps. */
		for (int t = 0; t < N_REFINE * REFINE_STEPS && s.have; t++) {
			double scale = 0.1 * pow(0.9, (double)(t % REFINE_STEPS));
			memcpy(x2, s.x_best, n_dims * sizeof *x2);
			perturb(&sp, &r, x2, scale, x);
			consider(&s, x);
		}
	}
	if (!s.have) {
		info->exhausted = true;
		goto done;
	}
	memcpy(out, s.x_best, n_dims * sizeof *out);
	info->ei = s.ei_best * ystd;
	info->mean = s.mean_best * ystd + ymean;
	info->sd = s.sd_best * ystd;
	info->best = best * ystd + ymean;
	info->n_obs = n_gp;
done:
	gp_clear(&g);
	free(mem);
	free(theta);
	free(order);
	free(rank);
	return rc;
}
