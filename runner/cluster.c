/* cluster: the submitting host's side of Slurm runs (see cluster.h): claims and frozen
 * configs, the submission directory and the job array, and the poll that merges journals,
 * follows the queue and settles runs whose task is gone. Slurm's memory of finished jobs
 * (MinJobAge, sacct) is used when it is there and never needed: a run's journal and its
 * task's output file decide. */
#include "runner/cluster.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "common/hash.h"
#include "common/util.h"
#include "runner/slurm.h"
#include "schema/table.h"
#include "store/store.h"
#include "common/banned.h"

#define QUEUE_MIN_S 1.0
#define QUEUE_MAX_S 10.0
#define LOG_TAIL (64u << 10)
#define TASK_MARKER "ftlab-task: attempt "

struct crun {
	char id[13];
	char *run_dir, *submission;
	char array_job[32];
	int64_t task;
	char status[16];
	char node[64];
	double gone_since;   /* monotonic; 0 = not gone */
	double ended_at;     /* monotonic time an end record was merged */
	bool settled, announced;
	int64_t step, total;
	double loss;
};

struct cluster {
	struct cluster_options o;
	char *workspace; /* absolute */
	struct store *s;
	struct crun *runs;
	size_t n, cap;
	struct slurm_task *queue;
	size_t nq;
	bool queue_ok, queue_warned;
	double queue_at, queue_due, interval;
	int submissions;
	size_t records;
	bool drawn;
};

static void clear_line(struct cluster *c);

static bool terminal(const char *st)
{
	return strcmp(st, "finished") == 0 || strcmp(st, "failed") == 0 ||
	       strcmp(st, "killed") == 0 || strcmp(st, "crashed") == 0 ||
	       strcmp(st, "cached") == 0 || strcmp(st, "stopped") == 0;
}

int cluster_open(struct cluster **out, const struct cluster_options *o, struct diag *d)
{
	*out = NULL;
	struct cluster *c = calloc(1, sizeof *c);
	if (!c)
		return diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
	c->o = *o;
	if (!(c->o.grace_s > 0))
		c->o.grace_s = 5.0;
	c->interval = QUEUE_MIN_S;
	c->workspace = realpath(o->workspace, NULL);
	if (!c->workspace) {
		int e = errno;
		free(c);
		return diag_set(d, FT_EIO, "", 0, 0, "workspace %s: %s", o->workspace, strerror(e));
	}
	int r = store_open(&c->s, c->workspace, false, d);
	if (r) {
		cluster_free(c);
		return r;
	}
	*out = c;
	return 0;
}

void cluster_free(struct cluster *c)
{
	if (!c)
		return;
	clear_line(c);
	for (size_t i = 0; i < c->n; i++) {
		free(c->runs[i].run_dir);
		free(c->runs[i].submission);
	}
	free(c->runs);
	free(c->queue);
	store_close(c->s);
	free(c->workspace);
	free(c);
}

static struct crun *find_run(struct cluster *c, const char *id)
{
	for (size_t i = 0; i < c->n; i++)
		if (strcmp(c->runs[i].id, id) == 0)
			return &c->runs[i];
	return NULL;
}

/* Follows a run (once). */
static int follow(struct cluster *c, const char *id, const char *run_dir, const char *submission,
		  const char *array_job, int64_t task, const char *status, struct diag *d)
{
	struct crun *r = find_run(c, id);
	if (!r) {
		if (c->n == c->cap) {
			size_t nc = c->cap ? c->cap * 2 : 16;
			struct crun *nr = realloc(c->runs, nc * sizeof *nr);
			if (!nr)
				return diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
			c->runs = nr;
			c->cap = nc;
		}
		r = &c->runs[c->n++];
		memset(r, 0, sizeof *r);
		snprintf(r->id, sizeof r->id, "%s", id);
		r->run_dir = ft_strdup(run_dir);
		r->loss = NAN;
		if (!r->run_dir) {
			c->n--;
			return diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
		}
	}
	r->settled = false;
	r->gone_since = 0;
	if (submission && (!r->submission || strcmp(r->submission, submission) != 0)) {
		free(r->submission);
		r->submission = ft_strdup(submission);
	}
	snprintf(r->array_job, sizeof r->array_job, "%s", array_job ? array_job : "");
	r->task = task;
	snprintf(r->status, sizeof r->status, "%s", status);
	return 0;
}

bool cluster_following(const struct cluster *c, const char *run_id)
{
	for (size_t i = 0; i < c->n; i++)
		if (strcmp(c->runs[i].id, run_id) == 0)
			return true;
	return false;
}

struct store *cluster_store(struct cluster *c)
{
	return c->s;
}

int cluster_stop_run(struct cluster *c, const char *run_id, struct diag *d)
{
	struct crun *r = find_run(c, run_id);
	if (!r || r->settled || !r->array_job[0] || strcmp(r->status, "running") != 0)
		return diag_set(d, FT_EINVAL, "", 0, 0, "run %s is not running under this session",
				run_id);
	char spec[64];
	snprintf(spec, sizeof spec, "%s_%lld", r->array_job, (long long)r->task);
	return slurm_signal_stop(spec, d);
}

/* ---- output ---- */

static void clear_line(struct cluster *c)
{
	if (c->drawn) {
		fputs("\r\033[K", stderr);
		c->drawn = false;
	}
}

static void say(struct cluster *c, const char *id, const char *status, const char *detail)
{
	if (c->o.verbosity < 0 && strcmp(status, "failed") != 0 && strcmp(status, "crashed") != 0)
		return;
	clear_line(c);
	const char *col = "", *end = "";
	if (c->o.color) {
		end = "\033[0m";
		col = strcmp(status, "finished") == 0 ? "\033[32m"
		      : strcmp(status, "failed") == 0 || strcmp(status, "crashed") == 0 ? "\033[31m"
											   : "\033[33m";
	}
	fprintf(stderr, "ftlab: run %s %s%s%s%s%s\n", id, col, status, end,
		detail && detail[0] ? ": " : "", detail ? detail : "");
}

/* "test.exact_match=0.8 test.loss=0.41" from the store. */
static void results_text(struct cluster *c, const char *id, char *buf, size_t n)
{
	struct store_result_list *l = NULL;
	struct diag d;
	diag_init(&d);
	buf[0] = '\0';
	if (store_results(c->s, &l, id, &d) != 0)
		return;
	size_t used = 0;
	for (size_t i = 0; i < l->n && used + 1 < n; i++) {
		if (strcmp(l->items[i].model, "tuned") != 0)
			continue;
		int k = snprintf(buf + used, n - used, "%s%s.%s=%.4g", used ? " " : "",
				 l->items[i].split, l->items[i].metric, l->items[i].value);
		if (k < 0 || (size_t)k >= n - used)
			break;
		used += (size_t)k;
	}
	store_result_list_free(l);
}

static void progress(struct cluster *c)
{
	if (!c->o.tty || c->o.verbosity < 0)
		return;
	struct cluster_counts k;
	cluster_counts(c, &k);
	const struct crun *show = NULL;
	for (size_t i = 0; i < c->n; i++)
		if (!c->runs[i].settled && strcmp(c->runs[i].status, "running") == 0) {
			show = &c->runs[i];
			break;
		}
	fprintf(stderr, "\r\033[K[slurm] %zu/%zu done, %zu running, %zu queued", k.followed -
		k.queued - k.running, k.followed, k.running, k.queued);
	if (show) {
		fprintf(stderr, "  run %s on %s step %lld", show->id, show->node[0] ? show->node : "?",
			(long long)show->step);
		if (show->total > 0)
			fprintf(stderr, "/%lld", (long long)show->total);
		if (isfinite(show->loss))
			fprintf(stderr, " loss %.4f", show->loss);
	}
	fflush(stderr);
	c->drawn = true;
}

/* ---- submission ---- */

static char *self_exe(void)
{
	char *p = realpath("/proc/self/exe", NULL);
	return p;
}

/* The time-limit warning: long enough to write a checkpoint, short against the limit. */
static int warn_seconds(double time_s)
{
	if (!(time_s > 0))
		return 120;
	double w = time_s / 10;
	if (w < 10)
		w = 10;
	if (w > 300)
		w = 300;
	return (int)w;
}

static int write_json(const char *path, json_t *o, struct diag *d)
{
	char *s = json_dumps(o, JSON_INDENT(1) | JSON_SORT_KEYS);
	if (!s)
		return diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
	int r = file_write_atomic(path, s, strlen(s), d);
	free(s);
	return r;
}

/* A new submission directory WORKSPACE/slurm/i<invocation>-<k>[-<n>]/ with logs/. */
static int make_submission_dir(struct cluster *c, char **out_dir, char **out_name,
			       struct diag *d)
{
	*out_dir = *out_name = NULL;
	char *base = path_join(c->workspace, CLUSTER_SUBMISSIONS);
	if (!base)
		return diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
	int r = dir_make_all(base, d);
	for (int k = 0; !r && k < 1000; k++) {
		char name[64];
		c->submissions++;
		if (k == 0)
			snprintf(name, sizeof name, "i%lld-%d", (long long)c->o.invocation,
				 c->submissions);
		else
			snprintf(name, sizeof name, "i%lld-%d-%d", (long long)c->o.invocation,
				 c->submissions, k);
		char *dir = path_join(base, name);
		if (!dir) {
			r = diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
			break;
		}
		if (mkdir(dir, 0777) == 0) {
			char *logs = path_join(dir, "logs");
			r = logs ? dir_make_all(logs, d) : diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
			free(logs);
			if (!r) {
				*out_dir = dir;
				*out_name = ft_strdup(name);
				if (!*out_name)
					r = diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
			}
			if (r)
				free(dir);
			break;
		}
		int e = errno;
		free(dir);
		if (e != EEXIST)
			r = diag_set(d, FT_EIO, "", 0, 0, "cannot create %s/%s: %s", base, name,
				     strerror(e));
	}
	free(base);
	if (!r && !*out_dir)
		r = diag_set(d, FT_EIO, "", 0, 0, "no free submission directory name");
	return r;
}

/* Freezes one claimed run: a fresh run starts from an empty directory; the resolved
 * config (and the uncommitted diff) are written now, so that editing the experiment file
 * while the task waits changes nothing. */
static int freeze_run(struct cluster *c, const struct run_point *pt, bool resume,
		      char **out_dir, struct diag *d)
{
	*out_dir = NULL;
	char *runs = path_join(c->workspace, "runs");
	char *dir = runs ? path_join(runs, pt->id) : NULL;
	free(runs);
	if (!dir)
		return diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
	int r = 0;
	if (!resume && dir_remove_all(dir) != 0)
		r = diag_set(d, FT_EIO, "", 0, 0, "cannot clear run directory %s", dir);
	if (!r)
		r = dir_make_all(dir, d);
	if (!r)
		r = run_write_config(dir, pt->cfg, d);
	const struct provenance *p = c->o.prov;
	if (!r && p && p->is_repo && p->dirty && p->diff) {
		char *f = path_join(dir, "diff.patch");
		r = f ? file_write_atomic(f, p->diff, strlen(p->diff), d)
		      : diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
		free(f);
	}
	if (r) {
		free(dir);
		return r;
	}
	*out_dir = dir;
	return 0;
}

/* The files an exec trainer's command names (train.py in [python3, train.py, ...]),
 * relative to backend.workdir, with their content hashes: the run's identity covers the
 * config, model and data, and this pins the trainer's own code too, so that a task does not
 * run a script edited after submission. {} for the native backends. */
static int pin_trainer_files(json_t **out, const struct config *cfg, struct diag *d)
{
	*out = json_object();
	if (!*out)
		return diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
	if (cfg->backend.type != BACKEND_EXEC)
		return 0;
	for (size_t i = 0; i < cfg->backend.command.n; i++) {
		const char *a = cfg->backend.command.items[i];
		if (strchr(a, '{') || a[0] == '-')
			continue; /* placeholders and options name no file */
		char *p = a[0] == '/' || !cfg->backend.workdir ? ft_strdup(a)
							       : path_join(cfg->backend.workdir, a);
		struct stat sb;
		char hex[65];
		struct diag hd;
		diag_init(&hd);
		int r = 0;
		if (!p)
			r = diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
		else if (i > 0 && stat(p, &sb) == 0 && S_ISREG(sb.st_mode) &&
			 sha256_file_hex(hex, p, &hd) == 0)
			r = json_object_set_new(*out, p, json_string(hex))
				    ? diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory")
				    : 0;
		free(p);
		if (r)
			return r;
	}
	return 0;
}

/* Ends a claimed run that cannot reach Slurm; a store error here is reported, the
 * submission's own error is what the caller returns. */
static void end_failed(struct cluster *c, const char *id, const char *why)
{
	bool ch;
	struct diag d;
	diag_init(&d);
	if (store_cluster_end(c->s, id, "failed", why, &ch, &d) != 0)
		fprintf(stderr, "ftlab: warning: run %s: %s\n", id, d.text);
}

int cluster_submit(struct cluster *c, const struct run_point *pts, size_t n, size_t *out_n,
		   struct diag *d)
{
	*out_n = 0;
	const struct config_launcher *L = c->o.launcher;
	char *subdir = NULL, *subname = NULL, *exe = NULL, *exp_abs = NULL, *script = NULL;
	char *output = NULL;
	const char **ids = NULL;
	char **dirs = NULL;
	json_t *man = NULL, *mruns = NULL;
	size_t k = 0;
	int r = make_submission_dir(c, &subdir, &subname, d);
	if (r)
		return r;
	ids = calloc(n ? n : 1, sizeof *ids);
	dirs = calloc(n ? n : 1, sizeof *dirs);
	exe = self_exe();
	exp_abs = realpath(c->o.experiment_path, NULL);
	mruns = json_array();
	if (!ids || !dirs || !exe || !exp_abs || !mruns) {
		r = diag_set(d, FT_EIO, "", 0, 0, "cannot resolve ftlab's own path or %s: %s",
			     c->o.experiment_path, strerror(errno));
		goto done;
	}
	const struct provenance *p = c->o.prov;
	for (size_t i = 0; i < n; i++) {
		const struct run_point *pt = &pts[i];
		char *rdir = NULL;
		struct store_run_spec spec = {
			.id = pt->id,
			.experiment = c->o.experiment,
			.sweep_index = (int64_t)pt->index,
			.params_json = pt->params_json,
			.config_json = pt->cfg->canonical_json,
			.identity = pt->identity,
			.backend = c->o.backend,
			.device = c->o.device,
			.threads = pt->cfg->backend.threads,
			.seed = (int64_t)pt->cfg->seed,
			.git_commit = p && p->is_repo ? p->commit : NULL,
			.git_dirty = p && p->is_repo && p->dirty,
			.launcher = schema_enum_name("launcher.type", LAUNCHER_SLURM),
			.submission = subname,
		};
		char *runs = path_join(c->workspace, "runs");
		char *abs_run = runs ? path_join(runs, pt->id) : NULL;
		free(runs);
		spec.run_dir = abs_run;
		enum store_claim cl = STORE_CLAIM_BUSY;
		char token[STORE_TOKEN_SIZE]; /* "": a cluster run has no local claimer */
		r = abs_run ? store_run_claim(c->s, &cl, token, c->o.invocation, &spec,
					      (c->o.force ? STORE_FLAG_FORCE : 0) |
						      (c->o.resume ? STORE_FLAG_RESUME : 0),
					      d)
			    : diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
		free(abs_run);
		if (r)
			goto fail_claimed;
		if (cl == STORE_CLAIM_CACHED) {
			if (c->o.verbosity > 0 || !c->o.tty)
				say(c, pt->id, "cached", pt->params_json);
			continue;
		}
		if (cl == STORE_CLAIM_BUSY) {
			if (c->o.verbosity >= 0)
				say(c, pt->id, "queued or running elsewhere", "left to it");
			continue;
		}
		if (cl == STORE_CLAIM_DONE)
			continue;
		bool resume = cl == STORE_CLAIM_RESUME;
		r = freeze_run(c, pt, resume, &rdir, d);
		if (r) {
			end_failed(c, pt->id, d->text);
			goto fail_claimed;
		}
		ids[k] = pt->id;
		dirs[k] = rdir;
		json_t *params = json_loads(pt->params_json ? pt->params_json : "{}", 0, NULL);
		json_t *pinned = NULL;
		r = pin_trainer_files(&pinned, pt->cfg, d);
		if (r) {
			json_decref(params);
			goto fail_claimed;
		}
		json_array_append_new(mruns, json_pack("{s:I, s:s, s:s, s:I, s:b, s:o, s:o}",
						       "index", (json_int_t)k, "run", pt->id,
						       "identity", pt->identity, "sweep_index",
						       (json_int_t)pt->index, "resume", resume, "params",
						       params ? params : json_object(), "pinned",
						       pinned));
		k++;
	}
	if (k == 0) {
		/* nothing to submit: no empty submission directory left behind */
		if (dir_remove_all(subdir) != 0 && c->o.verbosity > 0)
			fprintf(stderr, "ftlab: warning: could not remove %s\n", subdir);
		goto done;
	}
	output = path_join(subdir, "logs/%A_%a.out");
	script = path_join(subdir, "job.sh");
	char jobname[160];
	snprintf(jobname, sizeof jobname, "ftlab-%s", c->o.experiment);
	struct slurm_array a = {
		.job_name = jobname,
		.partition = L->partition,
		.account = L->account,
		.qos = L->qos,
		.mem = L->mem,
		.time_s = L->time_s,
		.cpus_per_task = L->cpus_per_task,
		.gpus_per_task = L->gpus_per_task,
		.array_parallelism = L->array_parallelism,
		.n_tasks = k,
		.warn_s = warn_seconds(L->time_s),
		.sbatch_args = (const char *const *)L->sbatch_args.items,
		.n_sbatch_args = L->sbatch_args.n,
		.setup = (const char *const *)L->setup.items,
		.n_setup = L->setup.n,
		.ftlab_bin = exe,
		.workspace = c->workspace,
		.submission_dir = subdir,
		.output = output,
	};
	char **argv = NULL;
	json_t *jargv = json_array();
	if (!output || !script || !jargv) {
		json_decref(jargv);
		r = diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
		goto fail_claimed;
	}
	r = slurm_sbatch_argv(&argv, &a, script, d);
	for (size_t i = 0; !r && argv[i]; i++)
		json_array_append_new(jargv, json_string(argv[i]));
	slurm_argv_free(argv);
	man = json_pack("{s:i, s:s, s:s, s:s, s:s, s:I, s:f, s:o, s:o}", "version", 1,
			"experiment", c->o.experiment, "experiment_path", exp_abs, "workspace",
			c->workspace, "ftlab", exe, "invocation", (json_int_t)c->o.invocation,
			"created", time_wall(), "runs", json_incref(mruns), "sbatch", jargv);
	if (!r && !man)
		r = diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
	if (!r) {
		char *mp = path_join(subdir, "manifest.json");
		r = mp ? write_json(mp, man, d) : diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
		free(mp);
	}
	if (r)
		goto fail_claimed;
	char job[32];
	r = slurm_submit(job, &a, script, d);
	if (r)
		goto fail_claimed;
	/* The job id on disk first: a submitter killed right now leaves `ftlab sync` what it
	 * needs to find the array. */
	char *jp = path_join(subdir, "job_id");
	char line[40];
	snprintf(line, sizeof line, "%s\n", job);
	r = jp ? file_write_atomic(jp, line, strlen(line), d)
	       : diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
	free(jp);
	if (!r)
		r = store_cluster_submitted(c->s, ids, k, 0, job, d);
	for (size_t i = 0; !r && i < k; i++)
		r = follow(c, ids[i], dirs[i], subname, job, (int64_t)i, "queued", d);
	if (!r && c->o.verbosity >= 0) {
		clear_line(c);
		fprintf(stderr, "ftlab: submitted %zu run%s as Slurm job array %s (%s)\n", k,
			k == 1 ? "" : "s", job, subdir);
	}
	if (!r)
		*out_n = k;
	goto done;
fail_claimed:
	/* Runs claimed here that never reached Slurm end failed with the reason. */
	for (size_t i = 0; i < k; i++)
		end_failed(c, ids[i], d->text);
done:
	for (size_t i = 0; i < n && dirs; i++)
		free(dirs[i]);
	free(dirs);
	free(ids);
	free(subdir);
	free(subname);
	free(exe);
	free(exp_abs);
	free(script);
	free(output);
	json_decref(man);
	json_decref(mruns);
	return r;
}

/* ---- the queue ---- */

static int refresh_queue(struct cluster *c, bool force, struct diag *d)
{
	(void)d;
	double now = time_monotonic();
	if (!force && c->queue_at > 0 && now < c->queue_due)
		return 0;
	struct slurm_task *q = NULL;
	size_t nq = 0;
	struct diag qd;
	diag_init(&qd);
	if (slurm_queue(&q, &nq, &qd) != 0) {
		/* Without the queue nothing is settled as gone; say so once. */
		c->queue_ok = false;
		if (!c->queue_warned && c->o.verbosity >= 0) {
			clear_line(c);
			fprintf(stderr, "ftlab: warning: %s (runs are merged, none is settled as gone "
					"until squeue answers)\n", qd.text);
		}
		c->queue_warned = true;
		c->queue_due = now + QUEUE_MAX_S;
		return 0;
	}
	free(c->queue);
	c->queue = q;
	c->nq = nq;
	c->queue_ok = true;
	c->queue_at = now;
	c->queue_due = now + c->interval;
	return 0;
}

static const struct slurm_task *queue_find(const struct cluster *c, const char *array_job,
					   int64_t task)
{
	if (!array_job[0])
		return NULL;
	for (size_t i = 0; i < c->nq; i++)
		if (c->queue[i].task == task && strcmp(c->queue[i].array_job, array_job) == 0)
			return &c->queue[i];
	return NULL;
}

/* ---- merging ---- */

static int journal_path(char **out, const char *run_dir, int seq)
{
	char name[32];
	journal_file_name(name, sizeof name, seq);
	char *jd = path_join(run_dir, JOURNAL_DIR);
	*out = jd ? path_join(jd, name) : NULL;
	free(jd);
	return *out ? 0 : FT_ENOMEM;
}

/* Merges what is new in the run's journals; *out_changed when any record was merged. */
static int merge_run(struct cluster *c, struct crun *r, cluster_record_fn fn, void *ud,
		     bool *out_changed, struct diag *d)
{
	*out_changed = false;
	int *seqs = NULL;
	size_t ns = 0;
	int rc = journal_list(&seqs, &ns, r->run_dir, d);
	if (rc || ns == 0)
		return rc;
	struct journal_batch **b = calloc(ns, sizeof *b);
	double *start = calloc(ns, sizeof *start);
	if (!b || !start) {
		rc = diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
		goto done;
	}
	for (size_t i = 0; i < ns && !rc; i++) {
		int64_t off;
		bool ended;
		char *path = NULL;
		rc = store_journal_position(c->s, r->id, seqs[i], &off, &ended, &start[i], d);
		if (!rc)
			rc = journal_path(&path, r->run_dir, seqs[i]) ? diag_set(d, FT_ENOMEM, "", 0, 0,
										 "out of memory")
								      : 0;
		if (!rc)
			rc = journal_read(&b[i], path, off, d);
		free(path);
		if (!rc && isnan(start[i]) && b[i]->n && b[i]->recs[0].kind == JREC_START)
			start[i] = b[i]->recs[0].time;
	}
	for (size_t i = 0; i < ns && !rc; i++) {
		if (b[i]->n == 0 && b[i]->bad_lines == 0)
			continue;
		double taken = i + 1 < ns && !isnan(start[i + 1]) ? start[i + 1] : INFINITY;
		struct store_merge_info info;
		rc = store_journal_merge(c->s, r->id, seqs[i], b[i], taken, &info, d);
		if (rc || info.applied == 0)
			continue;
		*out_changed = true;
		c->records += info.applied;
		if (info.status)
			snprintf(r->status, sizeof r->status, "%s", info.status);
		for (size_t j = 0; j < b[i]->n; j++) {
			const struct journal_rec *rec = &b[i]->recs[j];
			if (rec->time >= taken)
				continue;
			if (rec->kind == JREC_START) {
				snprintf(r->node, sizeof r->node, "%s", rec->node ? rec->node : "");
				r->ended_at = 0;
				if (c->o.verbosity > 0 || !c->o.tty || !r->announced) {
					char det[160];
					snprintf(det, sizeof det, "on node %s (Slurm job %s_%lld, attempt %d)",
						 r->node[0] ? r->node : "?", r->array_job,
						 (long long)r->task, seqs[i]);
					say(c, r->id, seqs[i] > 1 ? "resumed" : "running", det);
				}
				r->announced = true;
			} else if (rec->kind == JREC_PROGRESS) {
				r->step = rec->step;
				r->total = rec->total;
			} else if (rec->kind == JREC_METRIC && strcmp(rec->split, "train") == 0 &&
				   strcmp(rec->name, "loss") == 0) {
				r->loss = rec->value;
				if (rec->step > r->step)
					r->step = rec->step;
			} else if (rec->kind == JREC_END) {
				r->ended_at = time_monotonic();
			}
			if (fn)
				fn(ud, r->id, rec, NULL);
		}
	}
done:
	for (size_t i = 0; b && i < ns; i++)
		journal_batch_free(b[i]);
	free(b);
	free(start);
	free(seqs);
	return rc;
}

/* ---- settling ---- */

/* The tail of the task's output file (caller frees), or NULL. */
static char *read_log_tail(const struct cluster *c, const struct crun *r, size_t *out_n,
			   char *path_out, size_t path_n)
{
	*out_n = 0;
	path_out[0] = '\0';
	if (!r->submission || !r->array_job[0])
		return NULL;
	snprintf(path_out, path_n, "%s/%s/%s/logs/%s_%lld.out", c->workspace, CLUSTER_SUBMISSIONS,
		 r->submission, r->array_job, (long long)r->task);
	FILE *f = fopen(path_out, "rb");
	if (!f)
		return NULL;
	long size = 0;
	if (fseek(f, 0, SEEK_END) == 0)
		size = ftell(f);
	long from = size > (long)LOG_TAIL ? size - (long)LOG_TAIL : 0;
	char *buf = malloc(LOG_TAIL + 1);
	size_t n = 0;
	if (buf && fseek(f, from, SEEK_SET) == 0)
		n = fread(buf, 1, LOG_TAIL, f);
	fclose(f);
	if (buf)
		buf[n] = '\0';
	*out_n = n;
	return buf;
}

/* Slurm's verdict on the task: its state while Slurm remembers it, else its last words
 * in the task's output. NULL when neither says. */
static const char *verdict_of(const struct cluster *c, const struct crun *r,
			      const struct slurm_task *qt, char *log_path, size_t log_n)
{
	const char *st = NULL;
	if (qt && slurm_state_phase(qt->state, NULL) == SLURM_ENDED)
		st = qt->state;
	size_t n;
	char *tail = read_log_tail(c, r, &n, log_path, log_n);
	if (!st && tail) {
		const char *v = slurm_log_verdict(tail, n, TASK_MARKER);
		static const char *const known[] = {"TIMEOUT",   "PREEMPTED", "NODE_FAIL",
						    "CANCELLED", "REQUEUED",  "OUT_OF_MEMORY"};
		for (size_t i = 0; v && i < FT_ARRAY_LEN(known); i++)
			if (strcmp(v, known[i]) == 0)
				st = known[i];
	}
	free(tail);
	if (st) {
		/* a static string for the caller */
		static const char *const all[] = {
			"COMPLETED", "FAILED",   "OUT_OF_MEMORY", "SPECIAL_EXIT", "TIMEOUT",
			"CANCELLED", "PREEMPTED", "DEADLINE",     "REVOKED",      "NODE_FAIL",
			"BOOT_FAIL", "REQUEUED"};
		for (size_t i = 0; i < FT_ARRAY_LEN(all); i++)
			if (strncmp(st, all[i], strlen(all[i])) == 0)
				return all[i];
	}
	return NULL;
}

static void settle(struct cluster *c, struct crun *r, cluster_record_fn fn, void *ud)
{
	r->settled = true;
	char det[512] = "";
	if (strcmp(r->status, "finished") == 0) {
		results_text(c, r->id, det, sizeof det);
	} else {
		struct store_run *row = NULL;
		struct diag d;
		diag_init(&d);
		if (store_run_get(c->s, &row, r->id, &d) == 0 && row->error)
			snprintf(det, sizeof det, "%s", row->error);
		store_run_free(row);
	}
	say(c, r->id, r->status, det);
	if (fn)
		fn(ud, r->id, NULL, r->status);
}

static int settle_run(struct cluster *c, struct crun *r, cluster_record_fn fn, void *ud,
		      struct diag *d)
{
	if (!c->queue_ok)
		return 0;
	double now = time_monotonic();
	const struct slurm_task *qt = queue_find(c, r->array_job, r->task);
	const char *qstatus = NULL;
	enum slurm_phase ph = qt ? slurm_state_phase(qt->state, &qstatus) : SLURM_ENDED;
	char job[80];
	snprintf(job, sizeof job, "%s_%lld", r->array_job[0] ? r->array_job : "?",
		 (long long)r->task);
	if (qt && ph == SLURM_QUEUED) {
		r->gone_since = 0;
		if (terminal(r->status) && strcmp(r->status, "finished") != 0 &&
		    strcmp(r->status, "cached") != 0) {
			char why[256];
			snprintf(why, sizeof why, "Slurm put job %s back in its queue (%s, reason %s)",
				 job, qt->state, qt->reason);
			bool ch;
			int rc = store_cluster_requeued(c->s, r->id, why, &ch, d);
			if (rc)
				return rc;
			if (ch) {
				snprintf(r->status, sizeof r->status, "queued");
				say(c, r->id, "requeued", why);
			}
		}
		return 0;
	}
	if (qt && (ph == SLURM_RUNNING || ph == SLURM_UNKNOWN)) {
		r->gone_since = 0;
		return 0;
	}
	/* Ended, or no longer in the queue. */
	if (terminal(r->status)) {
		if (r->ended_at > 0 && c->queue_at <= r->ended_at) {
			/* The end was merged after this queue was read: Slurm may be requeueing
			 * the task right now. Decide on the next, fresh queue. */
			c->queue_due = now;
			return 0;
		}
		if (strcmp(r->status, "finished") != 0 && strcmp(r->status, "stopped") != 0) {
			char log[PATH_MAX];
			const char *v = verdict_of(c, r, qt, log, sizeof log);
			/* A task whose run failed exits 1 by itself: Slurm's verdict is FAILED
			 * (also once Slurm has forgotten the job). */
			if (!v && strcmp(r->status, "failed") == 0)
				v = "FAILED";
			char note[256];
			snprintf(note, sizeof note, " [Slurm %s, job %s%s%s%s%s]",
				 v ? v : "gave no verdict", job, qt && qt->job_id[0] ? ", job id " : "",
				 qt ? qt->job_id : "", r->node[0] ? " on node " : "", r->node);
			/* Slurm ended the task: a trainer that died of its signal before the
			 * task saw the stop is killed, not failed. */
			bool killed = v && (strcmp(v, "TIMEOUT") == 0 || strcmp(v, "CANCELLED") == 0 ||
					    strcmp(v, "PREEMPTED") == 0 || strcmp(v, "DEADLINE") == 0);
			int rc = store_cluster_note(c->s, r->id, note, killed, d);
			if (rc)
				return rc;
			if (killed && strcmp(r->status, "failed") == 0)
				snprintf(r->status, sizeof r->status, "killed");
		}
		settle(c, r, fn, ud);
		return 0;
	}
	/* queued or running without an end record: wait for the journal a little (a shared
	 * file system may show it late), then settle from Slurm's verdict. */
	if (r->gone_since == 0) {
		r->gone_since = now;
		return 0;
	}
	if (now - r->gone_since < c->o.grace_s)
		return 0;
	char log[PATH_MAX];
	const char *v = verdict_of(c, r, qt, log, sizeof log);
	const char *status = NULL;
	if (v && strcmp(v, "REQUEUED") != 0)
		slurm_state_phase(v, &status);
	if (!status || strcmp(status, "finished") == 0)
		status = "crashed";
	char err[PATH_MAX + 1024];
	if (!r->array_job[0])
		snprintf(err, sizeof err, "the submission of this run never reached Slurm (the "
					  "submitting ftlab stopped before sbatch answered)");
	else if (v)
		snprintf(err, sizeof err,
			 "Slurm %s (job %s%s%s%s%s): the task ended without writing its end record; "
			 "its output is %s",
			 v, job, qt && qt->job_id[0] ? ", job id " : "", qt ? qt->job_id : "",
			 r->node[0] ? " on node " : "", r->node, log[0] ? log : "missing");
	else
		snprintf(err, sizeof err,
			 "the array task %s%s%s left Slurm's queue without writing its end record "
			 "(killed, or its node failed; Slurm keeps no verdict): its output is %s",
			 job, r->node[0] ? " on node " : "", r->node, log[0] ? log : "missing");
	bool ch;
	int rc = store_cluster_end(c->s, r->id, status, err, &ch, d);
	if (rc)
		return rc;
	if (ch)
		snprintf(r->status, sizeof r->status, "%s", status);
	else {
		/* Someone else settled it (or its journal ended meanwhile): read what it is. */
		struct store_run *row = NULL;
		if (store_run_get(c->s, &row, r->id, d) == 0)
			snprintf(r->status, sizeof r->status, "%s", row->status);
		store_run_free(row);
	}
	settle(c, r, fn, ud);
	return 0;
}

/* A run whose submission was never recorded: the job id file, when sbatch did answer. */
static void find_job_id(struct cluster *c, struct crun *r)
{
	if (r->array_job[0] || !r->submission)
		return;
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/%s/%s/job_id", c->workspace, CLUSTER_SUBMISSIONS,
		 r->submission);
	char *text = NULL;
	size_t n = 0;
	struct diag d;
	diag_init(&d);
	if (file_read_all(&text, &n, path, 64, &d) != 0)
		return;
	size_t k = strspn(text, "0123456789");
	if (k > 0 && k < sizeof r->array_job) {
		/* the index: the run's position in the manifest */
		char mpath[PATH_MAX];
		snprintf(mpath, sizeof mpath, "%s/%s/%s/manifest.json", c->workspace,
			 CLUSTER_SUBMISSIONS, r->submission);
		json_t *m = json_load_file(mpath, 0, NULL);
		const json_t *runs = json_object_get(m, "runs");
		for (size_t i = 0; i < json_array_size(runs); i++) {
			const json_t *e = json_array_get(runs, i);
			const char *id = json_string_value(json_object_get(e, "run"));
			if (id && strcmp(id, r->id) == 0) {
				memcpy(r->array_job, text, k);
				r->array_job[k] = '\0';
				r->task = (int64_t)json_integer_value(json_object_get(e, "index"));
				const char *one[] = {r->id};
				if (store_cluster_submitted(c->s, one, 1, r->task, r->array_job, &d) != 0 &&
				    c->o.verbosity > 0)
					fprintf(stderr, "ftlab: warning: %s\n", d.text);
				break;
			}
		}
		json_decref(m);
	}
	free(text);
}

int cluster_poll(struct cluster *c, cluster_record_fn fn, void *ud, struct diag *d)
{
	int rc = refresh_queue(c, false, d);
	bool changed_any = false;
	for (size_t i = 0; !rc && i < c->n; i++) {
		struct crun *r = &c->runs[i];
		if (r->settled)
			continue;
		find_job_id(c, r);
		bool ch = false;
		rc = merge_run(c, r, fn, ud, &ch, d);
		changed_any |= ch;
		if (!rc)
			rc = settle_run(c, r, fn, ud, d);
	}
	/* Poll Slurm often while things happen, less often while they do not. */
	if (changed_any)
		c->interval = QUEUE_MIN_S;
	else if (c->interval < QUEUE_MAX_S)
		c->interval *= 1.25;
	if (!rc && cluster_settled(c))
		clear_line(c);
	else if (!rc)
		progress(c);
	return rc;
}

int cluster_sync(struct cluster *c, cluster_record_fn fn, void *ud, double max_s,
		 struct diag *d)
{
	double t0 = time_monotonic();
	int r = cluster_poll(c, fn, ud, d);
	while (!r && !run_stop_flag && cluster_waiting(c) && time_monotonic() - t0 < max_s) {
		struct timespec ts = {0, 250000000L};
		nanosleep(&ts, NULL);
		r = cluster_poll(c, fn, ud, d);
	}
	return r;
}

bool cluster_settled(const struct cluster *c)
{
	for (size_t i = 0; i < c->n; i++)
		if (!c->runs[i].settled)
			return false;
	return true;
}

bool cluster_waiting(const struct cluster *c)
{
	for (size_t i = 0; i < c->n; i++) {
		const struct crun *r = &c->runs[i];
		/* gone without an end record (grace), or ended and waiting for a queue read
		 * taken after the end (a requeue would show there) */
		if (!r->settled && (r->gone_since > 0 || terminal(r->status)))
			return true;
	}
	return false;
}

void cluster_counts(const struct cluster *c, struct cluster_counts *out)
{
	memset(out, 0, sizeof *out);
	out->followed = c->n;
	out->records = c->records;
	for (size_t i = 0; i < c->n; i++) {
		const char *st = c->runs[i].status;
		if (strcmp(st, "queued") == 0)
			out->queued++;
		else if (strcmp(st, "running") == 0)
			out->running++;
		else if (strcmp(st, "finished") == 0 || strcmp(st, "cached") == 0)
			out->finished++;
		else if (strcmp(st, "failed") == 0)
			out->failed++;
		else if (strcmp(st, "killed") == 0)
			out->killed++;
		else if (strcmp(st, "stopped") == 0)
			out->stopped++;
		else
			out->crashed++;
	}
	/* a settled run counts as what it ended as; an unsettled ended one as running */
	for (size_t i = 0; i < c->n; i++)
		if (!c->runs[i].settled && terminal(c->runs[i].status)) {
			const char *st = c->runs[i].status;
			if (strcmp(st, "finished") == 0)
				out->finished--;
			else if (strcmp(st, "failed") == 0)
				out->failed--;
			else if (strcmp(st, "killed") == 0)
				out->killed--;
			else if (strcmp(st, "crashed") == 0)
				out->crashed--;
			else if (strcmp(st, "stopped") == 0)
				out->stopped--;
			out->running++;
		}
}

/* True when the run has journal bytes the store has not merged. */
static bool has_unmerged(struct cluster *c, const char *id, const char *run_dir)
{
	int *seqs = NULL;
	size_t ns = 0;
	struct diag d;
	diag_init(&d);
	bool more = false;
	if (journal_list(&seqs, &ns, run_dir, &d) != 0)
		return false;
	for (size_t i = 0; i < ns && !more; i++) {
		int64_t off;
		bool ended;
		char *path = NULL;
		struct stat sb;
		if (store_journal_position(c->s, id, seqs[i], &off, &ended, NULL, &d) == 0 &&
		    journal_path(&path, run_dir, seqs[i]) == 0 && stat(path, &sb) == 0 &&
		    (int64_t)sb.st_size > off)
			more = true;
		free(path);
	}
	free(seqs);
	return more;
}

int cluster_follow_unsettled(struct cluster *c, struct diag *d)
{
	struct store_run_list *l = NULL;
	int rc = refresh_queue(c, true, d);
	if (!rc)
		rc = store_runs(c->s, &l, c->o.experiment, NULL, d);
	for (size_t i = 0; !rc && i < l->n; i++) {
		const struct store_run *sr = &l->items[i];
		if (!sr->launcher || !sr->run_dir ||
		    schema_enum_index("launcher.type", sr->launcher) != LAUNCHER_SLURM)
			continue;
		bool active = strcmp(sr->status, "queued") == 0 || strcmp(sr->status, "running") == 0;
		bool queued_again = false;
		if (!active && sr->slurm_job && c->queue_ok) {
			const struct slurm_task *qt = queue_find(c, sr->slurm_job, sr->slurm_task);
			enum slurm_phase ph = qt ? slurm_state_phase(qt->state, NULL) : SLURM_ENDED;
			queued_again = qt && (ph == SLURM_QUEUED || ph == SLURM_RUNNING);
		}
		if (!active && !queued_again && !has_unmerged(c, sr->id, sr->run_dir))
			continue;
		rc = follow(c, sr->id, sr->run_dir, sr->submission, sr->slurm_job, sr->slurm_task,
			    sr->status, d);
		if (!rc && !active) /* a run that ended is announced only when it starts again */
			find_run(c, sr->id)->announced = true;
		if (!rc && sr->node)
			snprintf(find_run(c, sr->id)->node, sizeof find_run(c, sr->id)->node, "%s",
				 sr->node);
	}
	store_run_list_free(l);
	return rc;
}

int cluster_cancel(struct cluster *c, const char *run_id, size_t *out_n, struct diag *d)
{
	*out_n = 0;
	const char **specs = calloc(c->n ? c->n : 1, sizeof *specs);
	char (*buf)[80] = calloc(c->n ? c->n : 1, sizeof *buf);
	size_t k = 0;
	int rc = 0;
	if (!specs || !buf) {
		rc = diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
		goto done;
	}
	for (size_t i = 0; i < c->n; i++) {
		struct crun *r = &c->runs[i];
		if (r->settled || (run_id && strcmp(r->id, run_id) != 0) || !r->array_job[0])
			continue;
		snprintf(buf[k], sizeof buf[k], "%s_%lld", r->array_job, (long long)r->task);
		specs[k] = buf[k];
		k++;
	}
	rc = slurm_cancel(specs, k, d);
	if (rc)
		goto done;
	/* A task that never started writes nothing: its run ends here. A running one records
	 * its own end (SIGTERM: it checkpoints and stops). */
	for (size_t i = 0; i < c->n; i++) {
		struct crun *r = &c->runs[i];
		if (r->settled || (run_id && strcmp(r->id, run_id) != 0))
			continue;
		if (strcmp(r->status, "queued") == 0) {
			char err[160];
			snprintf(err, sizeof err, "cancelled (ftlab cancel) before it started [Slurm "
						  "CANCELLED, job %s_%lld]",
				 r->array_job[0] ? r->array_job : "?", (long long)r->task);
			bool ch;
			rc = store_cluster_end(c->s, r->id, "killed", err, &ch, d);
			if (rc)
				break;
			if (ch)
				snprintf(r->status, sizeof r->status, "killed");
		}
	}
	*out_n = k;
done:
	free(specs);
	free(buf);
	return rc;
}
