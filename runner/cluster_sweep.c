/* cluster_sweep: an adaptive sweep on Slurm, with the waiting `ftlab run` as its controller.
 * Points the controller hands out go to Slurm as job arrays while slots are free; each
 * merged value of the early-termination metric goes to the controller, which may stop the
 * run (SIGUSR2 to its task); each settled run's outcome and objective go back to it, and
 * free slots take the next suggestions. */
#include "runner/cluster.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runner/sweep_ctl.h"
#include "store/store.h"
#include "common/banned.h"

/* A point this session submitted. */
struct cs_run {
	size_t index;
	char id[13];
	int64_t *steps;
	double *values;  /* the early-termination metric, by step */
	size_t n, cap;
	bool out;        /* submitted and not settled yet */
	bool stopping;   /* the controller stopped it */
	char stop_msg[512], stop_json[512];
};

struct cs {
	struct cluster *c;
	struct sweep_ctl *ctl;
	char split[32], name[64]; /* the early-termination metric; split "" when none */
	struct cs_run *runs;
	size_t n, cap;
	size_t out;
	cluster_record_fn fn;
	void *ud;
	int rc;
	struct diag err;
};

static struct cs_run *cs_find(struct cs *X, const char *id)
{
	for (size_t i = 0; i < X->n; i++)
		if (strcmp(X->runs[i].id, id) == 0)
			return &X->runs[i];
	return NULL;
}

static int cs_add(struct cs *X, const struct run_point *rp, struct diag *d)
{
	if (X->n == X->cap) {
		size_t nc = X->cap ? X->cap * 2 : 16;
		struct cs_run *nr = realloc(X->runs, nc * sizeof *nr);
		if (!nr)
			return diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
		X->runs = nr;
		X->cap = nc;
	}
	struct cs_run *R = &X->runs[X->n++];
	memset(R, 0, sizeof *R);
	R->index = rp->index;
	snprintf(R->id, sizeof R->id, "%s", rp->id);
	R->out = true;
	X->out++;
	return 0;
}

/* The value logged at `step` (a resumed attempt logs a step again: the later one wins). */
static int history_put(struct cs_run *R, int64_t step, double value)
{
	size_t i = R->n;
	while (i > 0 && R->steps[i - 1] > step)
		i--;
	if (i > 0 && R->steps[i - 1] == step) {
		R->values[i - 1] = value;
		return 0;
	}
	if (R->n == R->cap) {
		size_t nc = R->cap ? R->cap * 2 : 32;
		int64_t *ns = realloc(R->steps, nc * sizeof *ns);
		if (!ns)
			return FT_ENOMEM;
		R->steps = ns;
		double *nv = realloc(R->values, nc * sizeof *nv);
		if (!nv)
			return FT_ENOMEM;
		R->values = nv;
		R->cap = nc;
	}
	memmove(R->steps + i + 1, R->steps + i, (R->n - i) * sizeof *R->steps);
	memmove(R->values + i + 1, R->values + i, (R->n - i) * sizeof *R->values);
	R->steps[i] = step;
	R->values[i] = value;
	R->n++;
	return 0;
}

/* A settled run: its stop recorded when it ended stopped, then its outcome to the
 * controller. */
static int settled(struct cs *X, struct cs_run *R, const char *status)
{
	struct store *s = cluster_store(X->c);
	if (R->out) {
		R->out = false;
		X->out--;
	}
	int r = 0;
	if (status && strcmp(status, "stopped") == 0 && R->stopping) {
		r = store_cluster_event(s, R->id, "info", "stopped", R->stop_msg, &X->err);
		if (!r)
			r = store_sweep_point_stop(s, sweep_ctl_key(X->ctl), (int64_t)R->index,
						   R->stop_json, &X->err);
	}
	if (!r)
		r = run_sweep_feed(s, X->ctl, R->index, R->id, &X->err);
	return r;
}

static void on_record(void *ud, const char *run_id, const struct journal_rec *rec,
		      const char *status)
{
	struct cs *X = ud;
	if (X->fn)
		X->fn(X->ud, run_id, rec, status);
	struct cs_run *R = X->rc ? NULL : cs_find(X, run_id);
	if (!R)
		return;
	if (!rec) {
		X->rc = settled(X, R, status);
		return;
	}
	if (rec->kind != JREC_METRIC || !X->split[0] || strcmp(rec->split, X->split) != 0 ||
	    strcmp(rec->name, X->name) != 0)
		return;
	if (history_put(R, rec->step, rec->value) != 0) {
		X->rc = diag_set(&X->err, FT_ENOMEM, "", 0, 0, "out of memory");
		return;
	}
	if (R->stopping)
		return;
	struct sweep_verdict v;
	X->rc = sweep_ctl_observe(X->ctl, &v, R->index, R->values, R->n, true, &X->err);
	if (X->rc || !v.stop)
		return;
	run_stop_texts(R->stop_msg, sizeof R->stop_msg, R->stop_json, sizeof R->stop_json, &v,
		       X->split, X->name, R->steps[R->n - 1]);
	struct diag q;
	diag_init(&q);
	if (cluster_stop_run(X->c, R->id, &q) != 0) {
		/* it ended meanwhile, or scancel refused: the run ends as it will */
		fprintf(stderr, "ftlab: warning: run %s: could not stop it: %s\n", R->id, q.text);
		return;
	}
	R->stopping = true;
	fprintf(stderr, "ftlab: run %s stopping: %s\n", R->id, R->stop_msg);
}

static void split_metric(char *split, size_t sn, char *name, size_t nn, const char *metric)
{
	const char *dot = metric ? strchr(metric, '.') : NULL;
	split[0] = name[0] = '\0';
	if (dot && (size_t)(dot - metric) < sn) {
		snprintf(split, sn, "%.*s", (int)(dot - metric), metric);
		snprintf(name, nn, "%s", dot + 1);
	}
}

int cluster_run_sweep(struct cluster *c, struct sweep_ctl *ctl, const char *only, size_t slots,
		      enum backend_type backend_type, cluster_record_fn fn, void *ud,
		      struct diag *d)
{
	struct cs X = {.c = c, .ctl = ctl, .fn = fn, .ud = ud};
	diag_init(&X.err);
	split_metric(X.split, sizeof X.split, X.name, sizeof X.name, sweep_ctl_stop_metric(ctl));
	struct store *s = cluster_store(c);
	struct run_point *batch = NULL;
	size_t bcap = 0;
	int r = 0;
	if (sweep_ctl_adaptive(ctl))
		r = run_sweep_restore(s, ctl, d);
	/* Runs an earlier controller submitted that are still queued or running: followed,
	 * so that their points (busy for the claims below) wait for their outcome here. */
	if (!r)
		r = cluster_follow_unsettled(c, d);
	bool more = true;
	while (!r && !run_stop_flag) {
		/* Hand out points while slots are free. */
		size_t nb = 0;
		while (more && (slots == 0 || X.out + nb < slots)) {
			const struct sweep_point *pt = NULL;
			if ((r = sweep_ctl_next(ctl, &pt, d)) != 0)
				break;
			if (!pt) {
				more = false;
				break;
			}
			if (nb == bcap) {
				size_t nc = bcap ? bcap * 2 : 16;
				struct run_point *nbp = realloc(batch, nc * sizeof *nbp);
				if (!nbp) {
					r = diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
					break;
				}
				batch = nbp;
				bcap = nc;
			}
			/* the points' configs carry the experiment's name */
			r = run_sweep_point(&batch[nb], s, ctl, pt->cfg->name, pt, backend_type, d);
			if (r)
				break;
			if (only && strncmp(batch[nb].id, only, strlen(only)) != 0) {
				r = run_sweep_feed(s, ctl, pt->index, batch[nb].id, d);
				continue;
			}
			nb++;
		}
		if (!r && nb) {
			size_t sub = 0;
			r = cluster_submit(c, batch, nb, &sub, d);
			/* followed: submitted now, or left running by an earlier controller;
			 * cached or busy elsewhere: what the store knows */
			for (size_t i = 0; !r && i < nb; i++)
				r = cluster_following(c, batch[i].id)
					    ? cs_add(&X, &batch[i], d)
					    : run_sweep_feed(s, ctl, batch[i].index, batch[i].id, d);
		}
		if (r || (!more && X.out == 0))
			break;
		if (X.out == 0)
			continue; /* every point handed out was recorded already: more */
		r = cluster_poll(c, on_record, &X, d);
		if (!r && X.rc)
			r = diag_set(d, X.rc, "", 0, 0, "%s", X.err.text);
		if (!r && X.out > 0) {
			struct timespec ts = {0, 500000000L};
			nanosleep(&ts, NULL);
		}
	}
	if (!r && run_stop_flag)
		r = FT_EINTR;
	for (size_t i = 0; i < X.n; i++) {
		free(X.runs[i].steps);
		free(X.runs[i].values);
	}
	free(X.runs);
	free(batch);
	return r;
}
