/* cmd_run: `ftlab run EXP.yaml ...`: load and expand the experiment, compute identities,
 * record provenance and the invocation, then hand the points to the run lifecycle
 * (runner/run.c) and report what happened. Exit 0, 1 when a run failed, 2 for bad input,
 * 130 when interrupted. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backends/backend.h"
#include "common/util.h"
#include "cli/cli.h"
#include "cli/exp_args.h"
#include "runner/cluster.h"
#include "runner/identity.h"
#include "runner/provenance.h"
#include "runner/run.h"
#include "cli/run_table.h"
#include "store/store.h"
#include "runner/sweep.h"
#include "runner/sweep_ctl.h"
#include "schema/schema.h"
#include "schema/table.h"
#include "common/banned.h"

struct run_flags {
	const char *only, *backend, *launcher;
	bool force, resume, require_clean, detach;
	int jobs;
	size_t max_runs;
};

static int parse_flags(struct run_flags *f, char **rest, int n)
{
	static const char *const known[] = {"--only",   "--force",         "--resume",
					    "--jobs",   "--backend",       "--require-clean",
					    "--max-runs", "--launcher",    "--detach", NULL};
	memset(f, 0, sizeof *f);
	f->jobs = 1;
	f->max_runs = SWEEP_DEFAULT_MAX_RUNS;
	for (int i = 0; i < n; i++) {
		const char *a = rest[i], *val = NULL;
		char name[32];
		const char *eq = strchr(a, '=');
		if (a[0] == '-' && eq && (size_t)(eq - a) < sizeof name) {
			snprintf(name, sizeof name, "%.*s", (int)(eq - a), a);
			val = eq + 1;
		} else {
			snprintf(name, sizeof name, "%s", a);
		}
		bool is_only = strcmp(name, "--only") == 0, is_jobs = strcmp(name, "--jobs") == 0,
		     is_backend = strcmp(name, "--backend") == 0,
		     is_max_runs = strcmp(name, "--max-runs") == 0,
		     is_launcher = strcmp(name, "--launcher") == 0;
		bool valued = is_only || is_jobs || is_backend || is_max_runs || is_launcher;
		if (valued && !val) {
			if (i + 1 >= n || !rest[i + 1])
				return cli_usage_error("run", NULL, "%s needs a value", name);
			val = rest[++i];
		}
		if (is_only) {
			if (strlen(val) < 4 || strspn(val, "0123456789abcdef") != strlen(val))
				return cli_usage_error("run", NULL,
						       "--only needs a run id (at least 4 hex digits), "
						       "not '%s'", val);
			f->only = val;
		} else if (is_backend) {
			if (schema_enum_index("backend.type", val) <= BACKEND_AUTO)
				return cli_usage_error("run", NULL,
						       "--backend must be cpu, cuda or exec, not '%s'", val);
			f->backend = val;
		} else if (is_launcher) {
			if (schema_enum_index("launcher.type", val) < 0)
				return cli_usage_error("run", NULL, "--launcher must be one of %s, not '%s'",
						       schema_find("launcher.type")->choices, val);
			f->launcher = val;
		} else if (is_jobs) {
			int64_t j;
			if (!parse_i64(val, &j) || j < 1 || j > 256)
				return cli_usage_error("run", NULL,
						       "--jobs must be a whole number from 1 to 256, not '%s'",
						       val);
			f->jobs = (int)j;
		} else if (is_max_runs) {
			int64_t m;
			if (!parse_i64(val, &m) || m < 1)
				return cli_usage_error("run", NULL,
						       "--max-runs must be a positive number, not '%s'", val);
			f->max_runs = (size_t)m;
		} else if (strcmp(a, "--force") == 0) {
			f->force = true;
		} else if (strcmp(a, "--resume") == 0) {
			f->resume = true;
		} else if (strcmp(a, "--require-clean") == 0) {
			f->require_clean = true;
		} else if (strcmp(a, "--detach") == 0) {
			f->detach = true;
		} else {
			const char *near = nearest_word(a, known, FT_ARRAY_LEN(known) - 1);
			fprintf(stderr, "ftlab run: error: unknown option '%s'\n", a);
			if (near)
				fprintf(stderr, "note: did you mean '%s'?\n", near);
			fputs("Try 'ftlab run --help'.\n", stderr);
			return 2;
		}
	}
	return 0;
}

static char *argv_json(int argc, char **argv)
{
	json_t *a = json_array();
	json_array_append_new(a, json_string("ftlab"));
	for (int i = 0; i < argc; i++)
		json_array_append_new(a, json_string(argv[i]));
	char *s = json_dumps(a, JSON_COMPACT);
	json_decref(a);
	return s;
}

/* The invocation's runs on stdout: a table, or JSON with --json. */
static void print_outcome(const struct cli *cli, const char *workspace, int64_t invocation)
{
	struct store *s = NULL;
	struct store_run_list *l = NULL;
	struct diag d;
	diag_init(&d);
	if (store_open(&s, workspace, false, &d) != 0 || store_invocation_runs(s, &l, invocation, &d) != 0) {
		store_close(s);
		return;
	}
	if (cli->json) {
		json_t *arr = json_array();
		for (size_t i = 0; i < l->n; i++) {
			json_error_t je;
			json_t *params = json_loads(l->items[i].params_json, 0, &je);
			json_array_append_new(arr, json_pack("{s:s, s:s, s:I, s:o, s:o}", "id",
							     l->items[i].id, "status",
							     l->items[i].status, "sweep_index",
							     (json_int_t)l->items[i].sweep_index, "params",
							     params ? params : json_object(), "run_dir",
							     l->items[i].run_dir
								     ? json_string(l->items[i].run_dir)
								     : json_null()));
		}
		json_t *o = json_pack("{s:I, s:o}", "invocation", (json_int_t)invocation, "runs", arr);
		json_dumpf(o, stdout, JSON_INDENT(2));
		fputc('\n', stdout);
		json_decref(o);
	} else if (cli->verbosity >= 0 && l->n) {
		static const char *const h[] = {"RUN", "STATUS", "PARAMS"};
		struct run_table *t = run_table_new(3, h);
		for (size_t i = 0; t && i < l->n; i++) {
			char *params = run_params_text(l->items[i].params_json);
			const char *cells[] = {l->items[i].id, l->items[i].status,
					       params && params[0] ? params : "-"};
			int e = run_table_add(t, cells);
			free(params);
			if (e)
				break;
		}
		if (t)
			run_table_print(t, stdout);
		run_table_free(t);
	}
	store_run_list_free(l);
	store_close(s);
}

/* Counts the runs that ended failed or crashed, as they are settled. */
static void count_bad(void *ud, const char *run_id, const struct journal_rec *rec,
		      const char *status)
{
	(void)run_id;
	size_t *bad = ud;
	if (!rec && status && (strcmp(status, "failed") == 0 || strcmp(status, "crashed") == 0))
		(*bad)++;
}

/* --launcher slurm: settle what earlier submissions left, submit one job array, then wait
 * (merging each run as it ends) unless --detach. Ends the invocation; returns the exit
 * status. */
static int run_slurm(const struct cli *cli, const struct run_flags *fl, struct experiment *e,
		     const char *path, const struct run_point *points, size_t n, int64_t invocation,
		     const struct provenance *prov, struct sweep_ctl *ctl)
{
	struct diag d;
	diag_init(&d);
	struct cluster *pre = NULL, *c = NULL;
	const struct config *cfg = experiment_config(e);
	/* A bayes sweep or early termination needs this process as the sweep's controller. */
	bool controlled = sweep_ctl_adaptive(ctl) || sweep_ctl_stop_metric(ctl);
	enum backend_type btype = n && !sweep_ctl_adaptive(ctl) ? points[0].cfg->backend.type
								 : cfg->backend.type;
	const char *bname = schema_enum_name("backend.type", (int)btype);
	/* Earlier runs of this experiment that are still queued or running under Slurm:
	 * merge and settle them first, so that the claims below see their real state. */
	struct cluster_options po = {.workspace = cli->workspace, .experiment = experiment_name(e),
				     .verbosity = cli->verbosity > 0 ? 0 : -1,
				     .color = cli->color};
	int r = cluster_open(&pre, &po, &d);
	if (!r)
		r = cluster_follow_unsettled(pre, &d);
	if (!r)
		r = cluster_sync(pre, NULL, NULL, 30, &d);
	cluster_free(pre);
	struct cluster_options o = {
		.workspace = cli->workspace,
		.invocation = invocation,
		.experiment = experiment_name(e),
		.experiment_path = path,
		.launcher = &cfg->launcher,
		.prov = prov,
		.backend = bname,
		.device = bname,
		.force = fl->force,
		.resume = fl->resume,
		.verbosity = cli->verbosity,
		.tty = cli->tty,
		.color = cli->color,
	};
	size_t submitted = 0, bad = 0;
	if (!r)
		r = cluster_open(&c, &o, &d);
	if (!r && n && !controlled)
		r = cluster_submit(c, points, n, &submitted, &d);
	if (!r && n && controlled) {
		/* a bayes sweep keeps array_parallelism (else 4) points out at once, so that
		 * each later one is chosen from more results; a fixed plan goes out whole */
		size_t slots = !sweep_ctl_adaptive(ctl)		  ? 0
			       : cfg->launcher.array_parallelism > 0 ? (size_t)cfg->launcher.array_parallelism
								     : 4;
		r = cluster_run_sweep(c, ctl, fl->only, slots, btype, count_bad, &bad, &d);
		struct cluster_counts k;
		cluster_counts(c, &k);
		submitted = k.followed;
		if (r == FT_EINTR)
			r = 0; /* run_stop_flag says so below */
	}
	const char *inv_status = "finished";
	int rc = 0;
	if (r) {
		rc = cli_fail(&d);
		inv_status = "failed";
	} else if ((fl->detach || submitted == 0) && !run_stop_flag) {
		if (submitted && cli->verbosity >= 0)
			fprintf(stderr, "ftlab: detached: the runs go on under Slurm; 'ftlab sync %s' "
					"merges their results, 'ftlab cancel %s' stops them\n",
				experiment_name(e), experiment_name(e));
	} else {
		while (!r && !run_stop_flag && !cluster_settled(c)) {
			r = cluster_poll(c, count_bad, &bad, &d);
			struct timespec ts = {0, 500000000L};
			if (!r && !cluster_settled(c))
				nanosleep(&ts, NULL);
		}
		if (r) {
			rc = cli_fail(&d);
			inv_status = "failed";
		} else if (run_stop_flag) {
			struct cluster_counts k;
			cluster_counts(c, &k);
			fprintf(stderr, "\nftlab: stopped waiting; %zu run%s go on under Slurm ('ftlab "
					"sync %s' merges them, 'ftlab cancel %s' stops them)\n",
				k.queued + k.running, k.queued + k.running == 1 ? "" : "s",
				experiment_name(e), experiment_name(e));
			inv_status = "killed";
			rc = 130;
		} else {
			inv_status = bad ? "failed" : "finished";
			rc = bad ? 1 : 0;
		}
	}
	cluster_free(c);
	struct store *s = NULL;
	struct diag d2;
	diag_init(&d2);
	if (store_open(&s, cli->workspace, false, &d2) != 0 ||
	    store_invocation_end(s, invocation, inv_status, &d2) != 0)
		fprintf(stderr, "ftlab: warning: %s\n", d2.text);
	store_close(s);
	if (rc == 0 || rc == 1) {
		print_outcome(cli, cli->workspace, invocation);
		if (cli->verbosity >= 0 && !fl->detach && submitted)
			fprintf(stderr, "ftlab: %zu submitted to Slurm, %zu failed or crashed "
					"(workspace %s)\n",
				submitted, bad, cli->workspace);
	}
	return rc;
}

int cmd_run(const struct cli *cli, int argc, char **argv)
{
	static const char *const valued[] = {"--only",     "--jobs",     "--backend",
					     "--max-runs", "--launcher", NULL};
	struct exp_args args;
	int rc = exp_args_parse(&args, "run", argc, argv, valued);
	if (rc)
		return rc;
	struct run_flags fl;
	if ((rc = parse_flags(&fl, args.rest, args.n_rest)) != 0) {
		exp_args_free(&args);
		return rc;
	}
	if (fl.force && fl.resume) {
		exp_args_free(&args);
		return cli_usage_error("run", NULL, "--force and --resume exclude each other");
	}
	struct diag d;
	diag_init(&d);
	struct experiment *e = NULL;
	struct sweep_ctl *ctl = NULL;
	const struct sweep_plan *plan = NULL;
	struct run_point *points = NULL;
	struct provenance prov = {0};
	struct store *s = NULL;
	char *av = NULL;
	const char **overrides = NULL;
	size_t n_points = 0;
	int64_t invocation = 0;
	bool inv_open = false;
	char backend_override[32], launcher_override[32];

	/* --backend X is -s backend.type=X after every other override. */
	overrides = calloc(args.n_overrides + 2, sizeof *overrides);
	if (!overrides) {
		rc = 1;
		goto done;
	}
	for (size_t i = 0; i < args.n_overrides; i++)
		overrides[i] = args.overrides[i];
	size_t n_over = args.n_overrides;
	if (fl.backend) {
		snprintf(backend_override, sizeof backend_override, "backend.type=%s", fl.backend);
		overrides[n_over++] = backend_override;
	}
	/* --launcher slurm likewise is -s launcher.type=slurm; --launcher local runs here
	 * whatever the file's launcher says (its Slurm options stay valid and unused). */
	if (fl.launcher && schema_enum_index("launcher.type", fl.launcher) == LAUNCHER_SLURM) {
		snprintf(launcher_override, sizeof launcher_override, "launcher.type=%s",
			 fl.launcher);
		overrides[n_over++] = launcher_override;
	}
	if (experiment_load(&e, args.path, overrides, n_over, &d) != 0 ||
	    sweep_ctl_create(&ctl, e, fl.max_runs, &d) != 0) {
		rc = cli_fail(&d);
		goto done;
	}
	plan = sweep_ctl_plan(ctl);
	if (fl.only && plan->adaptive) {
		rc = cli_usage_error("run", NULL, "--only needs a fixed plan; a %s sweep chooses "
				     "its points as results arrive",
				     schema_enum_name("sweep.method", (int)plan->method));
		goto done;
	}
	/* What check refuses, run refuses before it records anything. */
	if ((rc = exp_args_check_model(e, plan)) != 0)
		goto done;
	/* Provenance first: --require-clean refuses before anything runs. */
	if (provenance_collect(&prov, args.path, &d) != 0) {
		rc = cli_fail(&d);
		goto done;
	}
	if (!prov.is_repo) {
		if (fl.require_clean) {
			diag_set(&d, FT_EINVAL, "", 0, 0,
				 "--require-clean: %s is not inside a git repository", args.path);
			rc = cli_fail(&d);
			goto done;
		}
		if (cli->verbosity >= 0)
			fprintf(stderr, "ftlab: warning: %s is not in a git repository; runs are "
					"recorded without provenance\n", args.path);
	} else if (fl.require_clean && prov.dirty) {
		fprintf(stderr, "ftlab: error: --require-clean: the working tree of %s has "
				"uncommitted changes:\n", prov.root ? prov.root : "the repository");
		for (char *p = prov.changed, *nl; p && *p; p = nl + 1) {
			nl = strchr(p, '\n');
			if (!nl) {
				fprintf(stderr, "  %s\n", p);
				break;
			}
			fprintf(stderr, "  %.*s\n", (int)(nl - p), p);
		}
		fputs("note: commit or stash them, or run without --require-clean\n", stderr);
		rc = 2;
		goto done;
	}
	points = calloc(plan->n ? plan->n : 1, sizeof *points);
	if (!points) {
		rc = 1;
		goto done;
	}
	for (size_t i = 0; i < plan->n; i++) {
		struct run_point *pt = &points[n_points];
		pt->index = plan->points[i].index;
		pt->params_json = plan->points[i].params_json;
		pt->cfg = plan->points[i].cfg;
		if (run_identity(pt->identity, pt->cfg, &d) != 0) {
			rc = cli_fail(&d);
			goto done;
		}
		run_id_from_identity(pt->id, pt->identity);
		if (fl.only && strncmp(pt->id, fl.only, strlen(fl.only)) != 0)
			continue;
		n_points++;
	}
	if (fl.only && n_points != 1) {
		diag_set(&d, FT_EINVAL, "", 0, 0, "--only %s %s", fl.only,
			 n_points == 0 ? "matches no run of this sweep"
				       : "matches more than one run (give more digits)");
		diag_hint(&d, "'ftlab plan %s' lists the run ids", args.path);
		rc = cli_fail(&d);
		goto done;
	}
	bool slurm = experiment_config(e)->launcher.type == LAUNCHER_SLURM &&
		     !(fl.launcher &&
		       schema_enum_index("launcher.type", fl.launcher) == LAUNCHER_LOCAL);
	if (fl.detach && !slurm) {
		rc = cli_usage_error("run", NULL, "--detach needs --launcher slurm (or "
						  "launcher.type: slurm)");
		goto done;
	}
	if (slurm && fl.jobs > 1) {
		rc = cli_usage_error("run", NULL, "--jobs is for the local launcher; with Slurm, "
						  "launcher.array_parallelism limits the tasks at once");
		goto done;
	}
	if (slurm && fl.detach && (plan->adaptive || sweep_ctl_stop_metric(ctl))) {
		rc = cli_usage_error("run", NULL, "%s%s%s needs its controller to stay: without "
				     "--detach, this ftlab run submits new points as results arrive "
				     "and stops the runs early termination judges behind",
				     plan->adaptive ? "an adaptive (" : "a sweep with early_terminate",
				     plan->adaptive ? schema_enum_name("sweep.method", (int)plan->method)
						    : "",
				     plan->adaptive ? ") sweep" : "");
		goto done;
	}
	/* The backend of the base config (every point must have the same; a bayes point
	 * that differs fails when it comes). */
	enum backend_type btype = n_points ? points[0].cfg->backend.type
					   : experiment_config(e)->backend.type;
	const struct backend *be = NULL;
	/* With Slurm the node picks the backend (the submitting host may have no GPU). */
	if ((n_points || plan->adaptive) && !slurm && run_backend_pick(&be, btype, &d) != 0) {
		rc = cli_fail(&d);
		goto done;
	}
	for (size_t i = 1; i < n_points; i++)
		if (points[i].cfg->backend.type != points[0].cfg->backend.type) {
			diag_set(&d, FT_EINVAL, args.path, 0, 0,
				 "all runs of one invocation must use the same backend.type");
			rc = cli_fail(&d);
			goto done;
		}
	if (plan->adaptive)
		n_points = plan->budget;
	if (run_store_open(&s, cli->workspace, true, &d) != 0 ||
	    store_experiment_put(s, experiment_name(e), experiment_spec_json(e),
				 experiment_spec_hash(e), args.path, &d) != 0) {
		rc = cli_fail(&d);
		goto done;
	}
	av = argv_json(argc, argv);
	struct store_provenance sp = {.is_repo = prov.is_repo, .commit = prov.commit,
				      .branch = prov.branch, .remote = prov.remote,
				      .root = prov.root, .dirty = prov.dirty,
				      .changed = prov.changed};
	if (store_invocation_begin(s, &invocation, experiment_name(e), av ? av : "[]", &sp, &d) != 0) {
		rc = cli_fail(&d);
		goto done;
	}
	inv_open = true;
	/* The workers open their own connections; this one is closed across the fork. */
	store_close(s);
	s = NULL;
	if (cli->verbosity >= 0)
		fprintf(stderr, "ftlab: %s: %zu run%s%s%s%s%s%s\n", experiment_name(e), n_points,
			n_points == 1 ? "" : "s", plan->adaptive ? " (" : "",
			plan->adaptive ? schema_enum_name("sweep.method", (int)plan->method) : "",
			plan->adaptive ? ": each chosen from the results so far)" : "",
			prov.is_repo && prov.dirty ? " (dirty tree)" : "",
			slurm ? ", on Slurm" : fl.jobs > 1 ? ", parallel workers" : "");
	run_signals_install();
	if (slurm) {
		rc = run_slurm(cli, &fl, e, args.path, points, n_points, invocation, &prov, ctl);
		inv_open = false;
		goto done;
	}
	struct run_options opt = {
		.force = fl.force,
		.resume = fl.resume,
		.jobs = fl.jobs,
		.backend = be,
		.backend_type = btype,
		.device = be ? (be->type == BACKEND_CUDA ? "cuda:0" : backend_name(be)) : "-",
		.verbosity = cli->verbosity,
		.tty = cli->tty,
		.color = cli->color,
	};
	if (n_points && be && be->type == BACKEND_CUDA) {
		static char dev[32];
		snprintf(dev, sizeof dev, "cuda:%d", experiment_config(e)->backend.device);
		opt.device = dev;
	}
	struct run_summary sum = {0};
	int r = n_points ? run_execute_sweep(&sum, cli->workspace, invocation, experiment_name(e),
					     ctl, fl.only, &opt, &prov, &d)
			 : 0;
	const char *inv_status = r == FT_EINTR || sum.interrupted ? "killed"
				 : r != 0 || sum.failed ? "failed"
							: "finished";
	if (store_open(&s, cli->workspace, false, &d) == 0 &&
	    store_invocation_end(s, invocation, inv_status, &d) == 0)
		inv_open = false;
	store_close(s);
	s = NULL;
	if (r && r != FT_EINTR) {
		rc = cli_fail(&d);
		goto done;
	}
	print_outcome(cli, cli->workspace, invocation);
	if (cli->verbosity >= 0 || sum.failed) {
		fprintf(stderr, "ftlab: %zu finished, %zu cached, %zu failed", sum.finished,
			sum.cached, sum.failed);
		if (sum.stopped)
			fprintf(stderr, ", %zu stopped early", sum.stopped);
		if (sum.killed)
			fprintf(stderr, ", %zu killed", sum.killed);
		/* A run this process handed out but did not record is held by another one; after
		 * an interrupt the points it did not reach were never started. */
		size_t seen = sum.finished + sum.cached + sum.failed + sum.stopped + sum.killed +
			      sum.crashed + sum.other + sum.busy;
		if (sum.busy)
			fprintf(stderr, ", %zu running in another process", sum.busy);
		if ((r == FT_EINTR || sum.interrupted) && n_points > seen)
			fprintf(stderr, ", %zu not started", n_points - seen);
		fprintf(stderr, " (workspace %s)\n", cli->workspace);
		if (sum.stopped && sum.steps_saved > 0)
			fprintf(stderr, "ftlab: early termination saved %lld training steps\n",
				(long long)sum.steps_saved);
	}
	rc = r == FT_EINTR || sum.interrupted ? 130 : sum.failed ? 1 : 0;
done:
	if (inv_open) {
		struct diag d2;
		diag_init(&d2);
		struct store *s2 = NULL;
		if (store_open(&s2, cli->workspace, false, &d2) == 0 &&
		    store_invocation_end(s2, invocation, "failed", &d2) != 0) {
		}
		store_close(s2);
	}
	store_close(s);
	free(av);
	free(points);
	free(overrides);
	provenance_clear(&prov);
	sweep_ctl_free(ctl);
	experiment_free(e);
	exp_args_free(&args);
	return rc;
}
