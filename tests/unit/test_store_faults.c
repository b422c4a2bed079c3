/* Fault injection into the store: SQLite's allocator fails at the Nth allocation, for
 * every N a call makes (sqlite3_config(SQLITE_CONFIG_MALLOC) wrapping the real one), and
 * a VFS shim over the default one fails the Nth page read (I/O error in the middle of a
 * row loop, as SQLITE_BUSY or a bad disk would). A failed step in a row loop, a failed
 * bind or a column SQLite cannot produce must end the call with an error and leave the
 * store as it was; a call that succeeds must give exactly the result it gives without
 * faults. Reaping, claiming, listing and the batched writer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/util.h"
#include "store/store.h"
#include "store/store_internal.h" /* the test's own SQL on the store's connection */
#include "common/banned.h"

static sqlite3_mem_methods real_mem;
static long fail_at = -1; /* the allocation (0-based) that fails; -1: none */
static long allocs, injected;

static void *f_malloc(int n)
{
	if (fail_at >= 0 && allocs++ == fail_at) {
		injected++;
		return NULL;
	}
	return real_mem.xMalloc(n);
}

static void *f_realloc(void *p, int n)
{
	if (fail_at >= 0 && allocs++ == fail_at) {
		injected++;
		return NULL;
	}
	return real_mem.xRealloc(p, n);
}

/* ---- the VFS shim: every file of the default VFS, reads counted and failed on demand ---- */

static sqlite3_vfs *real_vfs;
static long read_fail_at = -1, reads, reads_injected;

struct shim_file {
	sqlite3_file base;
	sqlite3_file *real; /* lives right after this struct */
	bool counted;       /* the database or its WAL */
};

#define REAL(f) (((struct shim_file *)(f))->real)

static int shim_close(sqlite3_file *f) { return REAL(f)->pMethods->xClose(REAL(f)); }
static int shim_read(sqlite3_file *f, void *b, int n, sqlite3_int64 off)
{
	if (((struct shim_file *)f)->counted && read_fail_at >= 0 && reads++ == read_fail_at) {
		reads_injected++;
		return SQLITE_IOERR_READ;
	}
	return REAL(f)->pMethods->xRead(REAL(f), b, n, off);
}
static int shim_write(sqlite3_file *f, const void *b, int n, sqlite3_int64 off)
{
	return REAL(f)->pMethods->xWrite(REAL(f), b, n, off);
}
static int shim_truncate(sqlite3_file *f, sqlite3_int64 n)
{
	return REAL(f)->pMethods->xTruncate(REAL(f), n);
}
static int shim_sync(sqlite3_file *f, int fl) { return REAL(f)->pMethods->xSync(REAL(f), fl); }
static int shim_size(sqlite3_file *f, sqlite3_int64 *n)
{
	return REAL(f)->pMethods->xFileSize(REAL(f), n);
}
static int shim_lock(sqlite3_file *f, int l) { return REAL(f)->pMethods->xLock(REAL(f), l); }
static int shim_unlock(sqlite3_file *f, int l) { return REAL(f)->pMethods->xUnlock(REAL(f), l); }
static int shim_check(sqlite3_file *f, int *o)
{
	return REAL(f)->pMethods->xCheckReservedLock(REAL(f), o);
}
static int shim_fcntl(sqlite3_file *f, int op, void *a)
{
	return REAL(f)->pMethods->xFileControl(REAL(f), op, a);
}
static int shim_sector(sqlite3_file *f) { return REAL(f)->pMethods->xSectorSize(REAL(f)); }
static int shim_devchar(sqlite3_file *f)
{
	return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}
static int shim_shmmap(sqlite3_file *f, int i, int sz, int ext, void volatile **pp)
{
	return REAL(f)->pMethods->xShmMap(REAL(f), i, sz, ext, pp);
}
static int shim_shmlock(sqlite3_file *f, int off, int n, int fl)
{
	return REAL(f)->pMethods->xShmLock(REAL(f), off, n, fl);
}
static void shim_shmbarrier(sqlite3_file *f) { REAL(f)->pMethods->xShmBarrier(REAL(f)); }
static int shim_shmunmap(sqlite3_file *f, int del)
{
	return REAL(f)->pMethods->xShmUnmap(REAL(f), del);
}
/* No memory-mapped reads: every page goes through xRead. */
static int shim_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **pp)
{
	(void)f;
	(void)off;
	(void)n;
	*pp = NULL;
	return SQLITE_OK;
}
static int shim_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
	(void)f;
	(void)off;
	(void)p;
	return SQLITE_OK;
}

static const sqlite3_io_methods shim_io = {
	3, shim_close, shim_read, shim_write, shim_truncate, shim_sync, shim_size, shim_lock,
	shim_unlock, shim_check, shim_fcntl, shim_sector, shim_devchar, shim_shmmap,
	shim_shmlock, shim_shmbarrier, shim_shmunmap, shim_fetch, shim_unfetch,
};

static int shim_open(sqlite3_vfs *v, const char *name, sqlite3_file *f, int flags, int *out)
{
	(void)v;
	struct shim_file *sf = (struct shim_file *)f;
	sf->real = (sqlite3_file *)(sf + 1);
	sf->counted = (flags & (SQLITE_OPEN_MAIN_DB | SQLITE_OPEN_WAL)) != 0;
	int rc = real_vfs->xOpen(real_vfs, name, sf->real, flags, out);
	sf->base.pMethods = sf->real->pMethods ? &shim_io : NULL;
	return rc;
}
static int shim_delete(sqlite3_vfs *v, const char *n, int sync)
{
	(void)v;
	return real_vfs->xDelete(real_vfs, n, sync);
}
static int shim_access(sqlite3_vfs *v, const char *n, int fl, int *out)
{
	(void)v;
	return real_vfs->xAccess(real_vfs, n, fl, out);
}
static int shim_fullpath(sqlite3_vfs *v, const char *n, int len, char *out)
{
	(void)v;
	return real_vfs->xFullPathname(real_vfs, n, len, out);
}
static int shim_random(sqlite3_vfs *v, int n, char *out)
{
	(void)v;
	return real_vfs->xRandomness(real_vfs, n, out);
}
static int shim_sleep(sqlite3_vfs *v, int us)
{
	(void)v;
	return real_vfs->xSleep(real_vfs, us);
}
static int shim_time(sqlite3_vfs *v, double *t)
{
	(void)v;
	return real_vfs->xCurrentTime(real_vfs, t);
}
static int shim_lasterr(sqlite3_vfs *v, int n, char *b)
{
	(void)v;
	return real_vfs->xGetLastError(real_vfs, n, b);
}

static sqlite3_vfs shim_vfs;

static void vfs_install(void)
{
	real_vfs = sqlite3_vfs_find(NULL);
	shim_vfs = (sqlite3_vfs){
		.iVersion = 1,
		.szOsFile = (int)sizeof(struct shim_file) + real_vfs->szOsFile,
		.mxPathname = real_vfs->mxPathname,
		.zName = "ftlab-fault-shim",
		.xOpen = shim_open,
		.xDelete = shim_delete,
		.xAccess = shim_access,
		.xFullPathname = shim_fullpath,
		.xRandomness = shim_random,
		.xSleep = shim_sleep,
		.xCurrentTime = shim_time,
		.xGetLastError = shim_lasterr,
	};
	sqlite3_vfs_register(&shim_vfs, 1);
}

static int setup(void **state)
{
	(void)state;
	sqlite3_shutdown();
	if (sqlite3_config(SQLITE_CONFIG_GETMALLOC, &real_mem) != SQLITE_OK)
		return -1;
	sqlite3_mem_methods m = real_mem;
	m.xMalloc = f_malloc;
	m.xRealloc = f_realloc;
	if (sqlite3_config(SQLITE_CONFIG_MALLOC, &m) != SQLITE_OK)
		return -1;
	if (sqlite3_initialize() != SQLITE_OK)
		return -1;
	vfs_install();
	return 0;
}

static void faults_at(long n)
{
	allocs = 0;
	injected = 0;
	fail_at = n;
}

static void faults_off(void)
{
	fail_at = -1;
}

static void exec_sql(struct store *s, const char *sql)
{
	char *err = NULL;
	if (sqlite3_exec(s->db, sql, NULL, NULL, &err) != SQLITE_OK)
		fail_msg("%s: %s", sql, err ? err : "?");
}

static int64_t count(struct store *s, const char *sql)
{
	sqlite3_stmt *st = NULL;
	assert_int_equal(sqlite3_prepare_v2(s->db, sql, -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	int64_t v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

struct fixture {
	char ws[64];
	struct store *s;
	int64_t inv;
	int64_t dead_pid;
};

static struct store_run_spec spec_for(const char *id)
{
	static char identity[65];
	memset(identity, 'b', 64);
	identity[64] = '\0';
	return (struct store_run_spec){.id = id, .experiment = "exp", .sweep_index = 0,
				       .params_json = "{\"method.rank\":8}",
				       .config_json = "{\"name\":\"exp\"}", .identity = identity,
				       .backend = "exec", .device = "exec", .threads = 1, .seed = 1,
				       .run_dir = "/tmp/x"};
}

static void fixture_init(struct fixture *f)
{
	snprintf(f->ws, sizeof f->ws, "/tmp/ftlab-faults-XXXXXX");
	assert_non_null(mkdtemp(f->ws));
	struct diag d;
	diag_init(&d);
	assert_int_equal(store_open(&f->s, f->ws, true, &d), 0);
	exec_sql(f->s, "PRAGMA synchronous=OFF"); /* thousands of commits; durability is not tested here */
	struct store_provenance p = {0};
	assert_int_equal(store_invocation_begin(f->s, &f->inv, "exp", "[]", &p, &d), 0);
	/* A pid that no process has: a child that has exited and been waited for. */
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(0);
	assert_int_equal(waitpid(pid, NULL, 0), pid);
	f->dead_pid = pid;
	for (int i = 0; i < 3; i++) {
		char id[13];
		snprintf(id, sizeof id, "00000000000%d", i);
		struct store_run_spec sp = spec_for(id);
		sp.identity = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";
		enum store_claim c;
		char tok[STORE_TOKEN_SIZE];
		assert_int_equal(store_run_claim(f->s, &c, tok, f->inv, &sp, 0, &d), 0);
		assert_int_equal(c, STORE_CLAIM_RUN);
	}
}

static void fixture_done(struct fixture *f)
{
	faults_off();
	store_close(f->s);
	assert_int_equal(dir_remove_all(f->ws), 0);
}

/* Three running rows of a dead process: a reap either marks all three crashed (and says
 * 3) or fails and leaves all three running. On a main branch whose row loop took a failed
 * step for the end of the rows, it reported success with fewer. */
static void test_reap_under_faults(void **state)
{
	(void)state;
	struct fixture f;
	fixture_init(&f);
	char plant[256];
	snprintf(plant, sizeof plant, "UPDATE runs SET status = 'running', pid = %lld;"
		 " UPDATE run_claims SET pid = %lld; DELETE FROM events",
		 (long long)f.dead_pid, (long long)f.dead_pid);
	long fails = 0, oks = 0;
	for (long n = 0;; n++) {
		exec_sql(f.s, plant);
		struct diag d;
		diag_init(&d);
		int reaped = -1;
		faults_at(n);
		int r = store_reap_stale(f.s, 60, &reaped, &d);
		faults_off();
		int64_t running = count(f.s, "SELECT count(*) FROM runs WHERE status = 'running'");
		if (r == 0) {
			assert_int_equal(reaped, 3);
			assert_int_equal(running, 0);
			assert_int_equal(count(f.s, "SELECT count(*) FROM events"), 3);
			oks++;
		} else {
			assert_int_equal(running, 3);
			assert_int_equal(count(f.s, "SELECT count(*) FROM events"), 0);
			fails++;
		}
		if (!injected)
			break;
	}
	print_message("reap: %ld failed allocations, each an error or the full result\n", fails);
	assert_true(fails > 0 && oks > 0);
	fixture_done(&f);
}

/* Two hundred running rows of a dead process spread over many pages, read by a fresh
 * connection (cold cache) whose Nth page read fails: the reap is all or nothing. A row
 * loop that took the failed step for the end of the rows marked some crashed and said
 * success. */
static void test_reap_under_read_errors(void **state)
{
	(void)state;
	struct fixture f;
	fixture_init(&f);
	char pad[1200];
	memset(pad, 'p', sizeof pad - 1);
	pad[sizeof pad - 1] = '\0';
	exec_sql(f.s, "BEGIN");
	for (int i = 0; i < 200; i++) {
		char q[1600];
		snprintf(q, sizeof q, "INSERT INTO runs(id, experiment, sweep_index, params, config,"
			 " identity, status, pid, host, heartbeat, created) VALUES ('%012d', 'exp',"
			 " %d, '{\"pad\":\"%s\"}', '{}', 'x', 'running', %lld, '%s', 0, 0)",
			 900000 + i, i, pad, (long long)f.dead_pid, store_host());
		exec_sql(f.s, q);
	}
	exec_sql(f.s, "COMMIT");
	long fails = 0, oks = 0;
	for (long n = 0;; n++) {
		exec_sql(f.s, "UPDATE runs SET status = 'running' WHERE id >= '000000900000';"
			      " DELETE FROM events");
		store_close(f.s);
		struct diag d;
		diag_init(&d);
		assert_int_equal(store_open(&f.s, f.ws, false, &d), 0);
		int reaped = -1;
		reads = reads_injected = 0;
		read_fail_at = n;
		int r = store_reap_stale(f.s, 60, &reaped, &d);
		read_fail_at = -1;
		int64_t running = count(f.s, "SELECT count(*) FROM runs WHERE status = 'running'"
					     " AND id >= '000000900000'");
		if (r == 0) {
			assert_int_equal(reaped, 200);
			assert_int_equal(running, 0);
			oks++;
		} else {
			assert_int_equal(running, 200);
			assert_int_equal(count(f.s, "SELECT count(*) FROM events"), 0);
			fails++;
		}
		if (!reads_injected)
			break;
	}
	print_message("reap: %ld failed page reads, each an error or the full result\n", fails);
	assert_true(fails > 5 && oks > 0);
	fixture_done(&f);
}

/* A claim either records everything (row, claim token, invocation record) or nothing. */
static void test_claim_under_faults(void **state)
{
	(void)state;
	struct fixture f;
	fixture_init(&f);
	long fails = 0;
	for (long n = 0;; n++) {
		char id[13];
		snprintf(id, sizeof id, "%012ld", (100 + n) % 1000000);
		struct store_run_spec sp = spec_for(id);
		struct diag d;
		diag_init(&d);
		enum store_claim c;
		char tok[STORE_TOKEN_SIZE];
		faults_at(n);
		int r = store_run_claim(f.s, &c, tok, f.inv, &sp, 0, &d);
		faults_off();
		char q[160];
		snprintf(q, sizeof q, "SELECT count(*) FROM runs r JOIN run_claims c ON c.run = r.id"
			 " JOIN invocation_runs i ON i.run = r.id WHERE r.id = '%s'", id);
		int64_t complete = count(f.s, q);
		snprintf(q, sizeof q, "SELECT count(*) FROM runs WHERE id = '%s'", id);
		int64_t rows = count(f.s, q);
		if (r == 0) {
			assert_int_equal(c, STORE_CLAIM_RUN);
			assert_int_equal(complete, 1);
			assert_int_equal(strlen(tok), STORE_TOKEN_SIZE - 1);
		} else {
			assert_int_equal(rows, 0);
			assert_string_equal(tok, "");
			fails++;
		}
		if (!injected)
			break;
	}
	assert_true(fails > 0);
	fixture_done(&f);
}

/* Reading the runs: the whole list with every text column, or an error (never a run whose
 * host or params silently became NULL). */
static void test_list_under_faults(void **state)
{
	(void)state;
	struct fixture f;
	fixture_init(&f);
	long fails = 0;
	for (long n = 0;; n++) {
		struct diag d;
		diag_init(&d);
		struct store_run_list *l = NULL;
		faults_at(n);
		int r = store_runs(f.s, &l, "exp", NULL, &d);
		faults_off();
		if (r == 0) {
			assert_int_equal(l->n, 3);
			for (size_t i = 0; i < l->n; i++) {
				assert_non_null(l->items[i].host);
				assert_non_null(l->items[i].params_json);
				assert_non_null(l->items[i].backend);
				assert_string_equal(l->items[i].params_json, "{\"method.rank\":8}");
			}
		} else {
			assert_null(l);
			fails++;
		}
		store_run_list_free(l);
		if (!injected)
			break;
	}
	assert_true(fails > 0);
	fixture_done(&f);
}

/* A batch of metrics and predictions: written whole with every text, or not at all with
 * the writer's error set. */
static void test_writer_under_faults(void **state)
{
	(void)state;
	struct fixture f;
	fixture_init(&f);
	long fails = 0;
	for (long n = 0;; n++) {
		char id[13];
		snprintf(id, sizeof id, "%012ld", (500000 + n) % 1000000);
		struct store_run_spec sp = spec_for(id);
		struct diag d;
		diag_init(&d);
		enum store_claim c;
		char tok[STORE_TOKEN_SIZE];
		assert_int_equal(store_run_claim(f.s, &c, tok, f.inv, &sp, 0, &d), 0);
		struct store_writer *w = NULL;
		assert_int_equal(store_writer_open(&w, f.s, id, tok, 1000.0, &d), 0);
		faults_at(n);
		int r = 0;
		for (int i = 0; i < 20 && !r; i++)
			r = store_writer_metric(w, "train", "loss", i, 1.0 / (i + 1));
		for (int i = 0; i < 4 && !r; i++)
			r = store_writer_prediction(w, "tuned", "test", i, "a prompt", "the reference",
						    "an output of some length", 1.0);
		if (!r)
			r = store_writer_flush(w);
		faults_off();
		bool failed = r != 0 || store_writer_error(w) != NULL;
		store_writer_free(w);
		char q[200];
		snprintf(q, sizeof q, "SELECT count(*) FROM metrics WHERE run = '%s'", id);
		int64_t nm = count(f.s, q);
		snprintf(q, sizeof q, "SELECT count(*) FROM predictions WHERE run = '%s' AND prompt ="
			 " 'a prompt' AND reference = 'the reference' AND output IS NOT NULL", id);
		int64_t np = count(f.s, q);
		if (!failed) {
			assert_int_equal(nm, 20);
			assert_int_equal(np, 4);
		} else {
			assert_int_equal(nm, 0);
			fails++;
		}
		if (!injected)
			break;
	}
	assert_true(fails > 0);
	fixture_done(&f);
}

/* A text longer than SQLite's length limit cannot be bound: the write is an error, not a
 * prediction stored with its output NULL. */
static void test_bind_too_big(void **state)
{
	(void)state;
	struct fixture f;
	fixture_init(&f);
	struct store_run_spec sp = spec_for("0000000000ff");
	struct diag d;
	diag_init(&d);
	enum store_claim c;
	char tok[STORE_TOKEN_SIZE];
	assert_int_equal(store_run_claim(f.s, &c, tok, f.inv, &sp, 0, &d), 0);
	struct store_writer *w = NULL;
	assert_int_equal(store_writer_open(&w, f.s, sp.id, tok, 1000.0, &d), 0);
	sqlite3_limit(f.s->db, SQLITE_LIMIT_LENGTH, 1000);
	char big[2001];
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	assert_int_equal(store_writer_prediction(w, "tuned", "test", 0, "p", "r", big, 1.0), 0);
	assert_int_not_equal(store_writer_flush(w), 0);
	assert_non_null(store_writer_error(w));
	assert_non_null(strstr(store_writer_error(w)->text, "parameter 7"));
	store_writer_free(w);
	sqlite3_limit(f.s->db, SQLITE_LIMIT_LENGTH, 1000000000);
	assert_int_equal(count(f.s, "SELECT count(*) FROM predictions"), 0);
	fixture_done(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reap_under_faults),
		cmocka_unit_test(test_reap_under_read_errors),
		cmocka_unit_test(test_claim_under_faults),
		cmocka_unit_test(test_list_under_faults),
		cmocka_unit_test(test_writer_under_faults),
		cmocka_unit_test(test_bind_too_big),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
