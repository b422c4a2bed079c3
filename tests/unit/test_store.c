/* Unit tests for the store against real SQLite files: schema creation, a newer store
 * refused, read-only and missing workspaces, the run claim decisions, stale-run reaping,
 * the batched writer (with a timing print for 100,000 metric points, not asserted), and
 * the readers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/util.h"
#include "store/store.h"
#include "store/store_internal.h" /* sqlite3 on the test's own connection, to plant states */
#include "common/banned.h"

static char *make_workspace(void)
{
	char tmpl[] = "/tmp/ftlab-store-XXXXXX";
	assert_non_null(mkdtemp(tmpl));
	return ft_strdup(tmpl);
}

static struct store *open_ok(const char *ws)
{
	struct store *s = NULL;
	struct diag d;
	diag_init(&d);
	int r = store_open(&s, ws, true, &d);
	if (r)
		fprintf(stderr, "store_open: %s\n", d.text);
	assert_int_equal(r, 0);
	return s;
}

static struct store_run_spec spec_for(const char *id, const char *commit, bool dirty)
{
	static char identity[65];
	memset(identity, 'a', 64);
	identity[64] = '\0';
	memcpy(identity, id, strlen(id));
	return (struct store_run_spec){.id = id, .experiment = "exp", .sweep_index = 0,
				       .params_json = "{\"method.rank\":8}",
				       .config_json = "{\"name\":\"exp\"}", .identity = identity,
				       .backend = "exec", .device = "exec", .threads = 1, .seed = 1,
				       .run_dir = "/tmp/x", .git_commit = commit, .git_dirty = dirty};
}

static int64_t begin_inv(struct store *s, const char *commit, bool dirty)
{
	struct store_provenance p = {.is_repo = commit != NULL, .commit = commit, .dirty = dirty};
	int64_t inv;
	struct diag d;
	diag_init(&d);
	assert_int_equal(store_invocation_begin(s, &inv, "exp", "[\"ftlab\",\"run\"]", &p, &d), 0);
	return inv;
}

static void test_open_create_and_reopen(void **state)
{
	(void)state;
	char *ws = make_workspace();
	struct store *s = open_ok(ws);
	struct diag d;
	diag_init(&d);
	assert_int_equal(store_experiment_put(s, "exp", "{}", "h", "e.yaml", &d), 0);
	store_close(s);
	s = NULL;
	assert_int_equal(store_open(&s, ws, false, &d), 0);
	struct store_experiment_list *l = NULL;
	assert_int_equal(store_experiments(s, &l, &d), 0);
	assert_int_equal(l->n, 1);
	assert_string_equal(l->items[0].name, "exp");
	store_experiment_list_free(l);
	bool ok = false;
	assert_int_equal(store_integrity_check(s, &ok, &d), 0);
	assert_true(ok);
	store_close(s);
	assert_int_equal(dir_remove_all(ws), 0);
	free(ws);
}

static void test_newer_store_refused(void **state)
{
	(void)state;
	char *ws = make_workspace();
	store_close(open_ok(ws));
	char cmd[256];
	snprintf(cmd, sizeof cmd, "sqlite3 %s/ftlab.db 'PRAGMA user_version = 99'", ws);
	assert_int_equal(system(cmd), 0);
	struct store *s = NULL;
	struct diag d;
	diag_init(&d);
	assert_int_equal(store_open(&s, ws, true, &d), FT_ENEWER);
	assert_null(s);
	assert_non_null(strstr(d.text, "schema version 99"));
	assert_int_equal(diag_exit_status(d.code), 2);
	assert_int_equal(dir_remove_all(ws), 0);
	free(ws);
}

/* A store of the first schema (tests/unit/data/store_v1.sql) is migrated in place: its
 * rows stay, runs may now end `stopped`, sweep points can be recorded, and the database
 * passes integrity and foreign-key checks. */
static void test_migrate_from_v1(void **state)
{
	(void)state;
	char *ws = make_workspace();
	const char *root = getenv("FTLAB_ROOT");
	char cmd[1024];
	snprintf(cmd, sizeof cmd, "sqlite3 %s/ftlab.db < %s/tests/unit/data/store_v1.sql", ws,
		 root ? root : ".");
	assert_int_equal(system(cmd), 0);
	struct store *s = open_ok(ws);
	struct diag d;
	diag_init(&d);
	struct store_run_list *runs = NULL;
	assert_int_equal(store_runs(s, &runs, "v1-store", NULL, &d), 0);
	assert_int_equal(runs->n, 2);
	assert_string_equal(runs->items[0].status, "finished");
	struct store_metric_list *ml = NULL;
	assert_int_equal(store_metrics(s, &ml, runs->items[1].id, "validation", "loss", &d), 0);
	assert_int_equal(ml->n, 2);
	assert_true(ml->items[1].value == 2.0);
	store_metric_list_free(ml);
	/* The new status and table. */
	int64_t inv;
	assert_int_equal(store_invocation_begin(s, &inv, "v1-store", "[]", NULL, &d), 0);
	const struct store_run *r1 = &runs->items[1];
	struct store_run_spec sp1 = {.id = r1->id, .experiment = r1->experiment,
				     .sweep_index = r1->sweep_index, .params_json = r1->params_json,
				     .config_json = r1->config_json, .identity = r1->identity,
				     .backend = "exec", .device = "exec", .threads = 1, .seed = 2,
				     .run_dir = "/tmp/x"};
	enum store_claim c;
	char tok[STORE_TOKEN_SIZE];
	assert_int_equal(store_run_claim(s, &c, tok, inv, &sp1, STORE_FLAG_FORCE, &d), 0);
	assert_int_equal(c, STORE_CLAIM_RUN);
	assert_int_equal(store_run_end(s, r1->id, tok, inv, "stopped", NULL, &d), 0);
	struct store_sweep_point p = {.sweep_key = "k", .experiment = "v1-store",
				      .run = runs->items[1].id, .params_json = "{\"seed\":2}",
				      .sweep_index = 1};
	assert_int_equal(store_sweep_point_put(s, &p, &d), 0);
	assert_int_equal(store_sweep_point_stop(s, "k", 1, "{\"band\":3}", &d), 0);
	struct store_sweep_point_list *pl = NULL;
	assert_int_equal(store_sweep_points(s, &pl, NULL, runs->items[1].id, &d), 0);
	assert_int_equal(pl->n, 1);
	assert_string_equal(pl->items[0].stopped_json, "{\"band\":3}");
	/* Recording the same point again keeps the verdict; another run clears it. */
	assert_int_equal(store_sweep_point_put(s, &p, &d), 0);
	store_sweep_point_list_free(pl);
	assert_int_equal(store_sweep_points(s, &pl, "k", NULL, &d), 0);
	assert_non_null(pl->items[0].stopped_json);
	store_sweep_point_list_free(pl);
	p.run = runs->items[0].id;
	assert_int_equal(store_sweep_point_put(s, &p, &d), 0);
	assert_int_equal(store_sweep_points(s, &pl, "k", NULL, &d), 0);
	assert_null(pl->items[0].stopped_json);
	store_sweep_point_list_free(pl);
	char other[16];
	snprintf(other, sizeof other, "%s", p.run);
	struct store_run_spec sp0 = sp1;
	sp0.id = runs->items[0].id;
	sp0.identity = runs->items[0].identity;
	sp0.sweep_index = runs->items[0].sweep_index;
	assert_int_equal(store_run_claim(s, &c, tok, inv, &sp0, STORE_FLAG_FORCE, &d), 0);
	assert_int_equal(c, STORE_CLAIM_RUN);
	store_run_list_free(runs);
	assert_int_equal(store_runs(s, &runs, NULL, "stopped", &d), 0);
	assert_int_equal(runs->n, 1);
	store_run_list_free(runs);
	bool ok = false;
	assert_int_equal(store_integrity_check(s, &ok, &d), 0);
	assert_true(ok);
	store_close(s);
	/* Foreign keys still point at the rebuilt runs table; the version is current. */
	snprintf(cmd, sizeof cmd, "test -z \"$(sqlite3 %s/ftlab.db 'PRAGMA foreign_key_check')\" && "
		 "test \"$(sqlite3 %s/ftlab.db 'PRAGMA user_version')\" = %d", ws, ws,
		 STORE_SCHEMA_VERSION);
	assert_int_equal(system(cmd), 0);
	/* A bad status is still refused, from the run's own claim. */
	s = open_ok(ws);
	diag_init(&d);
	assert_int_not_equal(store_run_end(s, other, tok, inv, "bogus", NULL, &d), 0);
	assert_null(strstr(d.text, "no longer owns"));
	struct store_run *still = NULL;
	assert_int_equal(store_run_get(s, &still, other, &d), 0);
	assert_string_equal(still->status, "running");
	store_run_free(still);
	store_close(s);
	assert_int_equal(dir_remove_all(ws), 0);
	free(ws);
}

static void test_missing_and_readonly_workspace(void **state)
{
	(void)state;
	struct store *s = NULL;
	struct diag d;
	diag_init(&d);
	assert_int_equal(store_open(&s, "/nonexistent/dir/ws", true, &d), FT_EINVAL);
	assert_non_null(strstr(d.text, "parent directory does not exist"));
	diag_init(&d);
	assert_int_equal(store_open(&s, "/tmp/ftlab-no-such-ws", false, &d), FT_EINVAL);
	assert_non_null(strstr(d.text, "does not exist"));
	if (geteuid() == 0)
		return; /* root writes anywhere: permissions cannot be tested */
	char *ws = make_workspace();
	assert_int_equal(chmod(ws, 0555), 0);
	diag_init(&d);
	assert_int_equal(store_open(&s, ws, true, &d), FT_EIO);
	assert_non_null(strstr(d.text, "not writable"));
	assert_int_equal(chmod(ws, 0755), 0);
	assert_int_equal(dir_remove_all(ws), 0);
	free(ws);
}

static void test_claim_decisions(void **state)
{
	(void)state;
	char *ws = make_workspace();
	struct store *s = open_ok(ws);
	struct diag d;
	diag_init(&d);
	const char *c1 = "1111111111111111111111111111111111111111";
	int64_t inv1 = begin_inv(s, c1, false);
	struct store_run_spec sp = spec_for("0000000000a1", c1, false);
	enum store_claim c;
	char tok[STORE_TOKEN_SIZE], other[STORE_TOKEN_SIZE];
	assert_int_equal(store_run_claim(s, &c, tok, inv1, &sp, 0, &d), 0);
	assert_int_equal(c, STORE_CLAIM_RUN);
	assert_int_equal(strlen(tok), STORE_TOKEN_SIZE - 1);
	/* Same invocation, another worker: already handled, and no token. */
	assert_int_equal(store_run_claim(s, &c, other, inv1, &sp, 0, &d), 0);
	assert_int_equal(c, STORE_CLAIM_DONE);
	assert_string_equal(other, "");
	assert_int_equal(store_run_end(s, sp.id, tok, inv1, "finished", NULL, &d), 0);
	/* A new invocation at the same clean commit reuses it; --force re-runs it. */
	int64_t inv2 = begin_inv(s, c1, false);
	assert_int_equal(store_run_claim(s, &c, other, inv2, &sp, 0, &d), 0);
	assert_int_equal(c, STORE_CLAIM_CACHED);
	int64_t inv3 = begin_inv(s, c1, false);
	assert_int_equal(store_run_claim(s, &c, tok, inv3, &sp, STORE_FLAG_FORCE, &d), 0);
	assert_int_equal(c, STORE_CLAIM_RUN);
	assert_int_equal(store_run_end(s, sp.id, tok, inv3, "finished", NULL, &d), 0);
	/* A dirty tree or another commit is not the same clean commit. */
	int64_t inv4 = begin_inv(s, c1, true);
	struct store_run_spec dirty = spec_for("0000000000a1", c1, true);
	assert_int_equal(store_run_claim(s, &c, tok, inv4, &dirty, 0, &d), 0);
	assert_int_equal(c, STORE_CLAIM_RUN);
	assert_int_equal(store_run_end(s, sp.id, tok, inv4, "killed", "stopped", &d), 0);
	/* Killed: --resume continues it, otherwise it starts over. */
	int64_t inv5 = begin_inv(s, c1, false);
	assert_int_equal(store_run_claim(s, &c, tok, inv5, &sp, STORE_FLAG_RESUME, &d), 0);
	assert_int_equal(c, STORE_CLAIM_RESUME);
	/* Running by this live process under another invocation: busy. */
	int64_t inv6 = begin_inv(s, c1, false);
	assert_int_equal(store_run_claim(s, &c, other, inv6, &sp, 0, &d), 0);
	assert_int_equal(c, STORE_CLAIM_BUSY);
	struct store_run *run = NULL;
	assert_int_equal(store_run_get(s, &run, "0000000000a1", &d), 0);
	assert_string_equal(run->status, "running");
	assert_int_equal(run->attempts, 4);
	assert_int_equal(run->git_dirty, 0);
	store_run_free(run);
	/* Invocation records: inv2 saw it cached. */
	struct store_run_list *l = NULL;
	assert_int_equal(store_invocation_runs(s, &l, inv2, &d), 0);
	assert_int_equal(l->n, 1);
	assert_string_equal(l->items[0].status, "cached");
	store_run_list_free(l);
	/* Prefix lookups. */
	assert_int_equal(store_run_get(s, &run, "0000", &d), 0);
	store_run_free(run);
	diag_init(&d);
	assert_int_equal(store_run_get(s, &run, "ffff", &d), FT_EINVAL);
	assert_non_null(strstr(d.text, "no run"));
	diag_init(&d);
	assert_int_equal(store_run_get(s, &run, "x;", &d), FT_EINVAL);
	store_close(s);
	assert_int_equal(dir_remove_all(ws), 0);
	free(ws);
}

/* A run claimed by a process that then dies becomes crashed on the next reap. */
static void test_reap_dead_pid(void **state)
{
	(void)state;
	char *ws = make_workspace();
	store_close(open_ok(ws));
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct store *cs = NULL;
		struct diag cd;
		diag_init(&cd);
		if (store_open(&cs, ws, false, &cd))
			_exit(1);
		struct store_provenance p = {0};
		int64_t inv;
		struct store_run_spec sp = spec_for("0000000000b2", NULL, false);
		enum store_claim c;
		char ctok[STORE_TOKEN_SIZE];
		if (store_invocation_begin(cs, &inv, "exp", "[]", &p, &cd) ||
		    store_run_claim(cs, &c, ctok, inv, &sp, 0, &cd) || c != STORE_CLAIM_RUN)
			_exit(1);
		free(ws); /* the child's copy: valgrind checks a forked child's leaks too */
		_exit(0); /* dies with the run still "running" */
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	struct store *s = open_ok(ws);
	struct diag d;
	diag_init(&d);
	int n = 0;
	assert_int_equal(store_reap_stale(s, 60, &n, &d), 0);
	assert_int_equal(n, 1);
	struct store_run *run = NULL;
	assert_int_equal(store_run_get(s, &run, "0000000000b2", &d), 0);
	assert_string_equal(run->status, "crashed");
	store_run_free(run);
	struct store_event_list *ev = NULL;
	assert_int_equal(store_events(s, &ev, "0000000000b2", &d), 0);
	assert_int_equal(ev->n, 1);
	assert_string_equal(ev->items[0].kind, "crashed");
	store_event_list_free(ev);
	store_close(s);
	assert_int_equal(dir_remove_all(ws), 0);
	free(ws);
}

/* 100,000 metric points through the batched writer; prints the time (docs/performance.md)
 * and checks every point arrived. */
static void test_writer_batches_100k(void **state)
{
	(void)state;
	char *ws = make_workspace();
	struct store *s = open_ok(ws);
	struct diag d;
	diag_init(&d);
	int64_t inv = begin_inv(s, NULL, false);
	struct store_run_spec sp = spec_for("0000000000c3", NULL, false);
	enum store_claim c;
	char tok[STORE_TOKEN_SIZE];
	assert_int_equal(store_run_claim(s, &c, tok, inv, &sp, 0, &d), 0);
	struct store_writer *w = NULL;
	assert_int_equal(store_writer_open(&w, s, sp.id, tok, 1.0, &d), 0);
	double t0 = time_monotonic();
	for (int i = 0; i < 100000; i++)
		assert_int_equal(store_writer_metric(w, "train", i % 2 ? "loss" : "lr", i / 2,
						     1.0 / (i + 1)), 0);
	assert_int_equal(store_writer_flush(w), 0);
	double el = time_monotonic() - t0;
	printf("store: 100000 metric points written in %.3f s (%.0f points/s)\n", el, 1e5 / el);
	assert_int_equal(store_writer_result(w, "tuned", "test", "exact_match", 0.8, 0.7, 0.9), 0);
	assert_int_equal(store_writer_result(w, "base", "test", "exact_match", 0.4, NAN, NAN), 0);
	assert_int_equal(store_writer_prediction(w, "tuned", "test", 3, "p", "r", "o", 1.0), 0);
	assert_int_equal(store_writer_event(w, "info", "note", "hello"), 0);
	/* An artifact named by an absolute path inside the run directory is stored relative. */
	char art[160];
	snprintf(art, sizeof art, "%s/model.bin", ws);
	FILE *af = fopen(art, "w");
	assert_non_null(af);
	fputs("abc", af);
	fclose(af);
	assert_int_equal(store_writer_artifact(w, "model", art, ws), 0);
	/* Re-logging a step (after a resume) replaces it. */
	assert_int_equal(store_writer_metric(w, "train", "loss", 0, 42.0), 0);
	store_writer_free(w);
	struct store_metric_list *ml = NULL;
	assert_int_equal(store_metrics(s, &ml, sp.id, "train", "loss", &d), 0);
	assert_int_equal(ml->n, 50000);
	assert_true(ml->items[0].value == 42.0);
	assert_int_equal(ml->items[49999].step, 49999);
	store_metric_list_free(ml);
	struct store_result_list *rl = NULL;
	assert_int_equal(store_results(s, &rl, sp.id, &d), 0);
	assert_int_equal(rl->n, 2);
	assert_string_equal(rl->items[0].model, "base");
	assert_true(isnan(rl->items[0].ci_low));
	assert_true(rl->items[1].ci_high == 0.9);
	store_result_list_free(rl);
	struct store_prediction_list *pl = NULL;
	assert_int_equal(store_predictions(s, &pl, sp.id, &d), 0);
	assert_int_equal(pl->n, 1);
	assert_string_equal(pl->items[0].output, "o");
	store_prediction_list_free(pl);
	struct store_artifact_list *al = NULL;
	assert_int_equal(store_artifacts(s, &al, sp.id, &d), 0);
	assert_int_equal(al->n, 1);
	assert_string_equal(al->items[0].path, "model.bin");
	assert_int_equal(al->items[0].bytes, 3);
	assert_string_equal(al->items[0].sha256,
			    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	store_artifact_list_free(al);
	store_close(s);
	assert_int_equal(dir_remove_all(ws), 0);
	free(ws);
}

/* A directory artifact (a checkpoint) is recorded with its total size and a digest that
 * changes when any file inside it changes. */
static void test_writer_directory_artifact(void **state)
{
	(void)state;
	char *ws = make_workspace();
	struct store *s = open_ok(ws);
	struct diag d;
	diag_init(&d);
	int64_t inv = begin_inv(s, NULL, false);
	struct store_run_spec sp = spec_for("0000000000d4", NULL, false);
	enum store_claim c;
	char tok[STORE_TOKEN_SIZE];
	assert_int_equal(store_run_claim(s, &c, tok, inv, &sp, 0, &d), 0);
	char *ck = path_join(ws, "ck/sub");
	assert_int_equal(dir_make_all(ck, &d), 0);
	char *f1 = path_join(ws, "ck/a.bin"), *f2 = path_join(ws, "ck/sub/b.bin");
	assert_int_equal(file_write_atomic(f1, "hello", 5, &d), 0);
	assert_int_equal(file_write_atomic(f2, "world!", 6, &d), 0);
	struct store_writer *w = NULL;
	assert_int_equal(store_writer_open(&w, s, sp.id, tok, 1.0, &d), 0);
	assert_int_equal(store_writer_artifact(w, "checkpoint", "ck", ws), 0);
	assert_null(store_writer_error(w));
	struct store_artifact_list *al = NULL;
	assert_int_equal(store_artifacts(s, &al, sp.id, &d), 0);
	assert_int_equal(al->n, 1);
	assert_int_equal(al->items[0].bytes, 11);
	assert_int_equal(strlen(al->items[0].sha256), 64);
	char first[65];
	snprintf(first, sizeof first, "%s", al->items[0].sha256);
	store_artifact_list_free(al);
	/* Re-recording the same path replaces the row; a changed file changes the digest. */
	assert_int_equal(file_write_atomic(f2, "World!", 6, &d), 0);
	assert_int_equal(store_writer_artifact(w, "checkpoint", "ck", ws), 0);
	store_writer_free(w);
	assert_int_equal(store_artifacts(s, &al, sp.id, &d), 0);
	assert_int_equal(al->n, 1);
	assert_string_not_equal(al->items[0].sha256, first);
	store_artifact_list_free(al);
	store_close(s);
	assert_int_equal(dir_remove_all(ws), 0);
	free(f1);
	free(f2);
	free(ck);
	free(ws);
}

/* Several processes create the same new store at the same moment (two `ftlab run` started
 * together on an empty workspace): every open succeeds, none sees SQLITE_BUSY. */
static void test_concurrent_create(void **state)
{
	(void)state;
	enum { ROUNDS = 15, PROCS = 6 };
	for (int round = 0; round < ROUNDS; round++) {
		char *ws = make_workspace();
		int go[2];
		assert_int_equal(pipe(go), 0);
		pid_t pids[PROCS];
		for (int i = 0; i < PROCS; i++) {
			pids[i] = fork();
			assert_true(pids[i] >= 0);
			if (pids[i] == 0) {
				close(go[1]);
				char c;
				/* Wait for the start signal so the opens overlap. */
				if (read(go[0], &c, 1) < 0)
					_exit(3);
				struct store *cs = NULL;
				struct diag cd;
				diag_init(&cd);
				int r = store_open(&cs, ws, true, &cd);
				if (r)
					fprintf(stderr, "child %d: %s\n", i, cd.text);
				store_close(cs);
				_exit(r ? 1 : 0);
			}
		}
		close(go[0]);
		close(go[1]); /* EOF releases every child at once */
		for (int i = 0; i < PROCS; i++) {
			int st = 0;
			assert_int_equal(waitpid(pids[i], &st, 0), pids[i]);
			assert_true(WIFEXITED(st));
			assert_int_equal(WEXITSTATUS(st), 0);
		}
		assert_int_equal(dir_remove_all(ws), 0);
		free(ws);
	}
}

/* Four processes claim the same 40 runs: each run is claimed exactly once. */
static void test_concurrent_claims(void **state)
{
	(void)state;
	char *ws = make_workspace();
	struct store *s = open_ok(ws);
	struct diag d;
	diag_init(&d);
	int64_t inv = begin_inv(s, NULL, false);
	store_close(s);
	enum { NPROC = 4, NRUN = 40 };
	int fds[NPROC][2], release[2];
	pid_t pids[NPROC];
	/* Claimers stay alive until all have claimed, as a runner does while it runs. */
	assert_int_equal(pipe(release), 0);
	for (int p = 0; p < NPROC; p++) {
		assert_int_equal(pipe(fds[p]), 0);
		pids[p] = fork();
		assert_true(pids[p] >= 0);
		if (pids[p] == 0) {
			close(fds[p][0]);
			struct store *cs = NULL;
			struct diag cd;
			diag_init(&cd);
			if (store_open(&cs, ws, false, &cd))
				_exit(1);
			int claimed = 0;
			for (int i = 0; i < NRUN; i++) {
				char id[13];
				snprintf(id, sizeof id, "%012d", i);
				struct store_run_spec sp = spec_for(id, NULL, false);
				enum store_claim c;
				char ctok[STORE_TOKEN_SIZE];
				if (store_run_claim(cs, &c, ctok, inv, &sp, 0, &cd))
					_exit(2);
				if (c == STORE_CLAIM_RUN)
					claimed++;
			}
			store_close(cs);
			if (write(fds[p][1], &claimed, sizeof claimed) != sizeof claimed)
				_exit(3);
			close(release[1]);
			char b;
			while (read(release[0], &b, 1) > 0)
				;
			free(ws);
			_exit(0);
		}
		close(fds[p][1]);
	}
	close(release[0]);
	int total = 0, counts[NPROC];
	for (int p = 0; p < NPROC; p++) {
		counts[p] = 0;
		assert_int_equal(read(fds[p][0], &counts[p], sizeof counts[p]),
				 (ssize_t)sizeof counts[p]);
		close(fds[p][0]);
	}
	close(release[1]);
	for (int p = 0; p < NPROC; p++) {
		int n = counts[p], status;
		assert_int_equal(waitpid(pids[p], &status, 0), pids[p]);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
		total += n;
	}
	assert_int_equal(total, NRUN);
	s = open_ok(ws);
	struct store_run_list *l = NULL;
	assert_int_equal(store_runs(s, &l, "exp", NULL, &d), 0);
	assert_int_equal(l->n, NRUN);
	for (size_t i = 0; i < l->n; i++)
		assert_int_equal(l->items[i].attempts, 1);
	store_run_list_free(l);
	store_close(s);
	assert_int_equal(dir_remove_all(ws), 0);
	free(ws);
}

/* Runs SQL on the store's own connection (to plant a state another host or a crash left). */
static void exec_sql(struct store *s, const char *sql)
{
	char *err = NULL;
	if (sqlite3_exec(s->db, sql, NULL, NULL, &err) != SQLITE_OK)
		fail_msg("%s: %s", sql, err ? err : "?");
}

/* A claim carries a token: once another process has taken the run over (here: the row
 * marked crashed by a reaper on another host, then resumed), every write of the first
 * owner is refused and nothing it sends lands in the store. */
static void test_claim_token_refuses_writes(void **state)
{
	(void)state;
	char *ws = make_workspace();
	struct store *s = open_ok(ws);
	struct diag d;
	diag_init(&d);
	int64_t inv = begin_inv(s, NULL, false);
	struct store_run_spec sp = spec_for("0000000000e5", NULL, false);
	enum store_claim c;
	char first[STORE_TOKEN_SIZE], second[STORE_TOKEN_SIZE];
	assert_int_equal(store_run_claim(s, &c, first, inv, &sp, 0, &d), 0);
	assert_int_equal(c, STORE_CLAIM_RUN);
	struct store_writer *w1 = NULL;
	assert_int_equal(store_writer_open(&w1, s, sp.id, first, 1.0, &d), 0);
	assert_int_equal(store_writer_metric(w1, "train", "loss", 1, 1.0), 0);
	assert_int_equal(store_writer_flush(w1), 0);
	/* Without the token, or with a wrong one, nothing is accepted. */
	assert_int_equal(store_run_heartbeat(s, sp.id, NULL, 1, 2, &d), FT_ESTORE);
	diag_init(&d);
	assert_int_equal(store_run_end(s, sp.id, "00000000000000000000000000000000", inv,
				       "finished", NULL, &d), FT_ESTORE);
	assert_non_null(strstr(d.text, "no longer owns"));
	diag_init(&d);
	assert_int_equal(store_run_heartbeat(s, sp.id, first, 1, 2, &d), 0);
	/* The row looks like another host's with a stale heartbeat: the reaper takes it, and
	 * a second process resumes it under a new token. */
	exec_sql(s, "UPDATE runs SET host = 'elsewhere.example', heartbeat = 1000");
	int n = 0;
	assert_int_equal(store_reap_stale(s, 60, &n, &d), 0);
	assert_int_equal(n, 1);
	int64_t inv2 = begin_inv(s, NULL, false);
	assert_int_equal(store_run_claim(s, &c, second, inv2, &sp, STORE_FLAG_RESUME, &d), 0);
	assert_int_equal(c, STORE_CLAIM_RESUME);
	assert_string_not_equal(first, second);
	/* The first owner's writes: all refused, with the reason. */
	assert_int_equal(store_writer_metric(w1, "train", "loss", 2, 2.0), 0); /* buffered */
	assert_int_equal(store_writer_flush(w1), FT_ESTORE);
	assert_non_null(store_writer_error(w1));
	assert_non_null(strstr(store_writer_error(w1)->text, "no longer owns"));
	store_writer_free(w1);
	struct store_writer *w1b = NULL;
	assert_int_equal(store_writer_open(&w1b, s, sp.id, first, 1.0, &d), 0);
	assert_int_equal(store_writer_result(w1b, "tuned", "test", "loss", 0.5, NAN, NAN), FT_ESTORE);
	assert_int_equal(store_writer_event(w1b, "info", "x", "y"), FT_ESTORE);
	store_writer_free(w1b);
	diag_init(&d);
	assert_int_equal(store_run_heartbeat(s, sp.id, first, 9, 9, &d), FT_ESTORE);
	diag_init(&d);
	assert_int_equal(store_run_end(s, sp.id, first, inv, "finished", NULL, &d), FT_ESTORE);
	/* The new owner writes and ends the run. */
	struct store_writer *w2 = NULL;
	diag_init(&d);
	assert_int_equal(store_writer_open(&w2, s, sp.id, second, 1.0, &d), 0);
	assert_int_equal(store_writer_metric(w2, "train", "loss", 3, 3.0), 0);
	assert_int_equal(store_writer_result(w2, "tuned", "test", "loss", 0.25, NAN, NAN), 0);
	store_writer_free(w2);
	struct store_run *run = NULL;
	assert_int_equal(store_run_get(s, &run, sp.id, &d), 0);
	assert_string_equal(run->status, "running");
	assert_int_equal(run->attempts, 2);
	store_run_free(run);
	assert_int_equal(store_run_end(s, sp.id, second, inv2, "finished", NULL, &d), 0);
	struct store_metric_list *ml = NULL;
	assert_int_equal(store_metrics(s, &ml, sp.id, "train", "loss", &d), 0);
	assert_int_equal(ml->n, 2); /* steps 1 (before the take-over, kept by resume) and 3 */
	assert_int_equal(ml->items[0].step, 1);
	assert_int_equal(ml->items[1].step, 3);
	store_metric_list_free(ml);
	struct store_result_list *rl = NULL;
	assert_int_equal(store_results(s, &rl, sp.id, &d), 0);
	assert_int_equal(rl->n, 1);
	assert_true(rl->items[0].value == 0.25);
	store_result_list_free(rl);
	/* Ended: even the owner's token no longer writes. */
	assert_int_equal(store_run_heartbeat(s, sp.id, second, 9, 9, &d), FT_ESTORE);
	store_close(s);
	assert_int_equal(dir_remove_all(ws), 0);
	free(ws);
}

/* The reaping rule: a running row of this host is crashed only when its process is gone
 * (or its pid belongs to another process now), whatever the heartbeat's age; a row of
 * another host only when its heartbeat is older than the window. */
static void test_reap_rule(void **state)
{
	(void)state;
	char *ws = make_workspace();
	store_close(open_ok(ws));
	int ready[2];
	assert_int_equal(pipe(ready), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(ready[0]);
		struct store *cs = NULL;
		struct diag cd;
		diag_init(&cd);
		struct store_provenance p = {0};
		int64_t inv;
		struct store_run_spec sp = spec_for("0000000000f6", NULL, false);
		enum store_claim c;
		char tok[STORE_TOKEN_SIZE];
		if (store_open(&cs, ws, false, &cd) ||
		    store_invocation_begin(cs, &inv, "exp", "[]", &p, &cd) ||
		    store_run_claim(cs, &c, tok, inv, &sp, 0, &cd) || c != STORE_CLAIM_RUN)
			_exit(1);
		store_close(cs);
		free(ws);
		if (write(ready[1], "x", 1) != 1)
			_exit(2);
		raise(SIGSTOP); /* alive, but silent: no heartbeat */
		_exit(0);
	}
	close(ready[1]);
	char b;
	assert_int_equal(read(ready[0], &b, 1), 1);
	close(ready[0]);
	struct store *s = open_ok(ws);
	struct diag d;
	diag_init(&d);
	/* A heartbeat from long ago, but the process lives (stopped): not reaped. */
	exec_sql(s, "UPDATE runs SET heartbeat = 1000 WHERE id = '0000000000f6'");
	int n = -1;
	assert_int_equal(store_reap_stale(s, 60, &n, &d), 0);
	assert_int_equal(n, 0);
	/* Nor taken over by a claim from this host. */
	int64_t inv = begin_inv(s, NULL, false);
	struct store_run_spec sp = spec_for("0000000000f6", NULL, false);
	enum store_claim c;
	char tok[STORE_TOKEN_SIZE];
	assert_int_equal(store_run_claim(s, &c, tok, inv, &sp, STORE_FLAG_RESUME, &d), 0);
	assert_int_equal(c, STORE_CLAIM_BUSY);
	/* Its pid taken by another process (another start time): the claimer is gone. */
	exec_sql(s, "UPDATE run_claims SET proc_start = proc_start + 1");
	assert_int_equal(store_reap_stale(s, 60, &n, &d), 0);
	assert_int_equal(n, 1);
	struct store_run *run = NULL;
	assert_int_equal(store_run_get(s, &run, sp.id, &d), 0);
	assert_string_equal(run->status, "crashed");
	store_run_free(run);
	/* Another host: its heartbeat decides (window 60 s). */
	exec_sql(s, "UPDATE runs SET status = 'running', host = 'elsewhere.example',"
		    " heartbeat = strftime('%s', 'now') - 30");
	assert_int_equal(store_reap_stale(s, 60, &n, &d), 0);
	assert_int_equal(n, 0);
	assert_int_equal(store_run_claim(s, &c, tok, inv, &sp, STORE_FLAG_RESUME, &d), 0);
	assert_int_equal(c, STORE_CLAIM_BUSY);
	exec_sql(s, "UPDATE runs SET heartbeat = strftime('%s', 'now') - 90");
	assert_int_equal(store_reap_stale(s, 60, &n, &d), 0);
	assert_int_equal(n, 1);
	kill(pid, SIGKILL);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	store_close(s);
	assert_int_equal(dir_remove_all(ws), 0);
	free(ws);
}

/* `ftlab plan` asks the store what `ftlab run` would do: store_run_preview gives the claim's
 * own decision (cached only at the same clean commit) and records nothing. */
static void test_preview_is_the_claim_decision(void **state)
{
	(void)state;
	char *ws = make_workspace();
	struct store *s = open_ok(ws);
	struct diag d;
	diag_init(&d);
	const char *c1 = "1111111111111111111111111111111111111111";
	const char *c2 = "2222222222222222222222222222222222222222";
	int64_t inv = begin_inv(s, c1, false);
	struct store_run_spec sp = spec_for("0000000000a7", c1, false);
	enum store_claim c, p;
	char tok[STORE_TOKEN_SIZE], st[16];
	assert_int_equal(store_run_preview(s, &p, st, &sp, 0, &d), 0);
	assert_int_equal(p, STORE_CLAIM_RUN);
	assert_string_equal(st, "");
	assert_int_equal(store_run_claim(s, &c, tok, inv, &sp, 0, &d), 0);
	assert_int_equal(store_run_preview(s, &p, st, &sp, 0, &d), 0);
	assert_int_equal(p, STORE_CLAIM_BUSY); /* running, this live process */
	assert_string_equal(st, "running");
	assert_int_equal(store_run_end(s, sp.id, tok, inv, "finished", NULL, &d), 0);
	struct {
		const char *commit;
		bool dirty;
		unsigned flags;
	} cases[] = {{c1, false, 0}, {c2, false, 0}, {c1, true, 0}, {NULL, false, 0},
		     {c1, false, STORE_FLAG_FORCE}};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct store_run_spec q = spec_for("0000000000a7", cases[i].commit, cases[i].dirty);
		assert_int_equal(store_run_preview(s, &p, st, &q, cases[i].flags, &d), 0);
		assert_string_equal(st, "finished");
		int64_t invq = begin_inv(s, cases[i].commit, cases[i].dirty);
		assert_int_equal(store_run_claim(s, &c, tok, invq, &q, cases[i].flags, &d), 0);
		assert_int_equal(p, c);
		assert_int_equal(p, i == 0 ? STORE_CLAIM_CACHED : STORE_CLAIM_RUN);
		if (c == STORE_CLAIM_RUN)
			assert_int_equal(store_run_end(s, sp.id, tok, invq, "finished", NULL, &d), 0);
		/* back to a finished run at c1, clean */
		struct store_run_spec back = spec_for("0000000000a7", c1, false);
		int64_t invb = begin_inv(s, c1, false);
		if (c == STORE_CLAIM_RUN) {
			assert_int_equal(store_run_claim(s, &c, tok, invb, &back, STORE_FLAG_FORCE, &d), 0);
			assert_int_equal(store_run_end(s, sp.id, tok, invb, "finished", NULL, &d), 0);
		}
	}
	store_close(s);
	assert_int_equal(dir_remove_all(ws), 0);
	free(ws);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open_create_and_reopen),
		cmocka_unit_test(test_newer_store_refused),
		cmocka_unit_test(test_migrate_from_v1),
		cmocka_unit_test(test_writer_directory_artifact),
		cmocka_unit_test(test_concurrent_create),
		cmocka_unit_test(test_missing_and_readonly_workspace),
		cmocka_unit_test(test_claim_decisions),
		cmocka_unit_test(test_reap_dead_pid),
		cmocka_unit_test(test_writer_batches_100k),
		cmocka_unit_test(test_concurrent_claims),
		cmocka_unit_test(test_claim_token_refuses_writes),
		cmocka_unit_test(test_reap_rule),
		cmocka_unit_test(test_preview_is_the_claim_decision),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
