/* The store's side of cluster runs, without Slurm: a cluster claim is queued and busy for
 * every other claimer and never reaped as stale; journals merge exactly once (again, or a
 * stale batch, changes nothing); a later attempt's start marks the earlier one's records
 * written after it as superseded; a fresh attempt clears what earlier ones measured, a
 * resumed one keeps it; an attempt that ended without a record is named; requeue, end and
 * Slurm's note only apply in the states they are meant for. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "store/journal.h"
#include "store/store.h"
#include "tests/unit/scratch.h"
#include "common/banned.h"

static const char *g_dir;
static char g_run_dir[512];

static struct store *open_store(void)
{
	struct store *s = NULL;
	struct diag d;
	diag_init(&d);
	if (store_open(&s, g_dir, true, &d))
		fail_msg("%s", d.text);
	return s;
}

static struct store_run_spec spec(const char *launcher)
{
	static char identity[65];
	memset(identity, 'c', 64);
	identity[64] = '\0';
	memcpy(identity, "0123456789ab", 12);
	return (struct store_run_spec){.id = "0123456789ab", .experiment = "exp",
				       .params_json = "{}", .config_json = "{}",
				       .identity = identity, .backend = "exec", .device = "exec",
				       .threads = 1, .seed = 1, .run_dir = g_run_dir,
				       .launcher = launcher, .submission = "i1-1"};
}

static int64_t invocation(struct store *s)
{
	int64_t inv;
	struct diag d;
	diag_init(&d);
	assert_int_equal(store_invocation_begin(s, &inv, "exp", "[]", NULL, &d), 0);
	return inv;
}

static struct store_run *get(struct store *s)
{
	struct store_run *r = NULL;
	struct diag d;
	diag_init(&d);
	assert_int_equal(store_run_get(s, &r, "0123456789ab", &d), 0);
	return r;
}

static size_t n_metrics(struct store *s)
{
	struct store_metric_list *l = NULL;
	struct diag d;
	diag_init(&d);
	assert_int_equal(store_metrics(s, &l, "0123456789ab", NULL, NULL, &d), 0);
	size_t n = l->n;
	store_metric_list_free(l);
	return n;
}

static int n_events(struct store *s, const char *kind)
{
	struct store_event_list *l = NULL;
	struct diag d;
	diag_init(&d);
	assert_int_equal(store_events(s, &l, "0123456789ab", &d), 0);
	int n = 0;
	for (size_t i = 0; i < l->n; i++)
		n += strcmp(l->items[i].kind, kind) == 0;
	store_event_list_free(l);
	return n;
}

static struct journal *attempt(bool resume, int expect_seq)
{
	struct journal_start st = {.job_id = "7", .array_job = "5", .array_task = 0,
				   .node = expect_seq == 1 ? "n1" : "n2", .pid = 1,
				   .backend = "exec", .device = "exec", .threads = 1,
				   .resume = resume};
	struct journal *j = NULL;
	int seq;
	struct diag d;
	diag_init(&d);
	assert_int_equal(journal_open_next(&j, &seq, g_run_dir, &st, &d), 0);
	assert_int_equal(seq, expect_seq);
	return j;
}

/* Reads attempt seq from the merged position and merges it; returns records applied. */
static size_t merge(struct store *s, int seq, double taken_over)
{
	int64_t off;
	bool ended;
	struct diag d;
	diag_init(&d);
	assert_int_equal(store_journal_position(s, "0123456789ab", seq, &off, &ended, NULL, &d), 0);
	char name[32], path[600];
	journal_file_name(name, sizeof name, seq);
	snprintf(path, sizeof path, "%s/journal/%s", g_run_dir, name);
	struct journal_batch *b = NULL;
	assert_int_equal(journal_read(&b, path, off, &d), 0);
	struct store_merge_info info;
	if (store_journal_merge(s, "0123456789ab", seq, b, taken_over, &info, &d))
		fail_msg("%s", d.text);
	journal_batch_free(b);
	return info.applied;
}

static void test_claim_busy_and_not_reaped(void **state)
{
	(void)state;
	g_dir = scratch_open("cluster-store");
	snprintf(g_run_dir, sizeof g_run_dir, "%s/runs/0123456789ab", g_dir);
	struct store *s = open_store();
	struct diag d;
	diag_init(&d);
	enum store_claim c;
	struct store_run_spec sp = spec("slurm");
	int64_t inv = invocation(s);
	char tok[STORE_TOKEN_SIZE];
	assert_int_equal(store_run_claim(s, &c, tok, inv, &sp, 0, &d), 0);
	assert_int_equal(c, STORE_CLAIM_RUN);
	assert_string_equal(tok, ""); /* no process here holds a cluster run */
	struct store_run *r = get(s);
	assert_string_equal(r->status, "queued");
	assert_string_equal(r->launcher, "slurm");
	assert_string_equal(r->submission, "i1-1");
	assert_int_equal(r->pid, 0);
	assert_int_equal(r->attempts, 0);
	store_run_free(r);
	const char *ids[] = {"0123456789ab"};
	assert_int_equal(store_cluster_submitted(s, ids, 1, 3, "5", &d), 0);
	r = get(s);
	assert_string_equal(r->slurm_job, "5");
	assert_int_equal(r->slurm_task, 3);
	store_run_free(r);
	/* another invocation, local or Slurm, --force or not: busy */
	struct store_run_spec lo = spec(NULL);
	int64_t inv2 = invocation(s);
	assert_int_equal(store_run_claim(s, &c, tok, inv2, &lo, STORE_FLAG_FORCE, &d), 0);
	assert_int_equal(c, STORE_CLAIM_BUSY);
	assert_int_equal(store_run_claim(s, &c, tok, inv2, &sp, STORE_FLAG_RESUME, &d), 0);
	assert_int_equal(c, STORE_CLAIM_BUSY);
	/* no pid, no heartbeat on this host: still never reaped */
	int n = -1;
	assert_int_equal(store_reap_stale(s, 0.0001, &n, &d), 0);
	assert_int_equal(n, 0);
	/* ending applies to queued/running runs only */
	bool ch;
	assert_int_equal(store_cluster_end(s, "0123456789ab", "crashed", "gone", &ch, &d), 0);
	assert_true(ch);
	assert_int_equal(store_cluster_end(s, "0123456789ab", "failed", "again", &ch, &d), 0);
	assert_false(ch);
	r = get(s);
	assert_string_equal(r->status, "crashed");
	assert_string_equal(r->error, "gone");
	store_run_free(r);
	/* now another claim may resume it */
	assert_int_equal(store_run_claim(s, &c, tok, inv2, &sp, STORE_FLAG_RESUME, &d), 0);
	assert_int_equal(c, STORE_CLAIM_RESUME);
	store_close(s);
	assert_int_equal(scratch_close(), 0);
}

static void test_merge_once_and_attempts(void **state)
{
	(void)state;
	g_dir = scratch_open("cluster-store");
	snprintf(g_run_dir, sizeof g_run_dir, "%s/runs/0123456789ab", g_dir);
	struct store *s = open_store();
	struct diag d;
	diag_init(&d);
	enum store_claim c;
	struct store_run_spec sp = spec("slurm");
	int64_t inv = invocation(s);
	char tok[STORE_TOKEN_SIZE];
	assert_int_equal(store_run_claim(s, &c, tok, inv, &sp, 0, &d), 0);

	/* attempt 1: three steps, then killed */
	struct journal *j1 = attempt(false, 1);
	for (int i = 1; i <= 3; i++)
		assert_int_equal(journal_metric(j1, "train", "loss", i, 10.0 - i), 0);
	assert_int_equal(journal_end(j1, "killed", "stopped by a signal"), 0);
	assert_int_equal(journal_sync(j1), 0);
	assert_int_equal(merge(s, 1, INFINITY), 5);
	struct store_run *r = get(s);
	assert_string_equal(r->status, "killed");
	assert_string_equal(r->node, "n1");
	assert_string_equal(r->slurm_job_id, "7");
	assert_int_equal(r->attempts, 1);
	store_run_free(r);
	assert_int_equal(n_metrics(s), 3);
	int ev = n_events(s, "attempt");
	assert_int_equal(ev, 1);
	/* merged once: nothing new on a second read, and a stale batch is not applied */
	assert_int_equal(merge(s, 1, INFINITY), 0);
	char path[600];
	snprintf(path, sizeof path, "%s/journal/0001.jsonl", g_run_dir);
	struct journal_batch *stale = NULL;
	assert_int_equal(journal_read(&stale, path, 0, &d), 0);
	struct store_merge_info info;
	assert_int_equal(store_journal_merge(s, "0123456789ab", 1, stale, INFINITY, &info, &d), 0);
	assert_int_equal(info.applied, 0);
	journal_batch_free(stale);
	assert_int_equal(n_events(s, "attempt"), 1);
	assert_int_equal(n_metrics(s), 3);

	/* Slurm put it back in the queue: queued again; not from finished */
	bool ch;
	assert_int_equal(store_cluster_requeued(s, "0123456789ab", "PREEMPTED", &ch, &d), 0);
	assert_true(ch);
	r = get(s);
	assert_string_equal(r->status, "queued");
	store_run_free(r);

	/* attempt 2 resumes on n2; attempt 1, left running on its node, writes two more
	 * records after attempt 2 started: they are superseded */
	struct journal *j2 = attempt(true, 2);
	struct journal_batch *b2 = NULL;
	snprintf(path, sizeof path, "%s/journal/0002.jsonl", g_run_dir);
	assert_int_equal(journal_read(&b2, path, 0, &d), 0);
	double t2 = b2->recs[0].time;
	journal_batch_free(b2);
	assert_int_equal(journal_metric(j1, "train", "loss", 4, -1.0), 0);
	assert_int_equal(journal_end(j1, "finished", NULL), 0);
	journal_close(j1);
	for (int i = 4; i <= 5; i++)
		assert_int_equal(journal_metric(j2, "train", "loss", i, 10.0 - i), 0);
	assert_int_equal(journal_end(j2, "finished", NULL), 0);
	journal_close(j2);
	assert_int_equal(merge(s, 1, t2), 0);
	assert_int_equal(n_events(s, "superseded"), 1);
	assert_int_equal(merge(s, 2, INFINITY), 4);
	r = get(s);
	assert_string_equal(r->status, "finished");
	assert_string_equal(r->node, "n2");
	assert_int_equal(r->attempts, 2);
	assert_null(r->error);
	store_run_free(r);
	assert_int_equal(n_metrics(s), 5); /* 1..3 from attempt 1, 4..5 from attempt 2 */
	struct store_metric_list *ml = NULL;
	assert_int_equal(store_metrics(s, &ml, "0123456789ab", "train", "loss", &d), 0);
	assert_true(ml->items[3].value == 6.0); /* not attempt 1's superseded -1 */
	store_metric_list_free(ml);
	/* attempt 1 had ended (killed) before attempt 2: no "without a record" warning */
	assert_int_equal(n_events(s, "requeued"), 1); /* the one store_cluster_requeued wrote */
	assert_int_equal(store_cluster_requeued(s, "0123456789ab", "x", &ch, &d), 0);
	assert_false(ch);

	/* attempt 3 starts over (not resumed) without attempt 2... having ended? it had:
	 * so make attempt 3 end nothing, and attempt 4 find it without an end record */
	struct journal *j3 = attempt(false, 3);
	assert_int_equal(journal_metric(j3, "train", "loss", 1, 42.0), 0);
	journal_close(j3);
	assert_int_equal(merge(s, 3, INFINITY), 2);
	assert_int_equal(n_metrics(s), 1); /* a fresh attempt clears earlier measurements */
	struct journal *j4 = attempt(true, 4);
	journal_close(j4);
	assert_int_equal(merge(s, 4, INFINITY), 1);
	struct store_event_list *el = NULL;
	assert_int_equal(store_events(s, &el, "0123456789ab", &d), 0);
	bool named = false;
	for (size_t i = 0; i < el->n; i++)
		named |= strcmp(el->items[i].kind, "requeued") == 0 &&
			 strstr(el->items[i].message, "attempt 3 (Slurm job 7 on node n2) ended "
						      "without a record") != NULL;
	store_event_list_free(el);
	assert_true(named);

	/* Slurm's note goes on an ended run's error once */
	assert_int_equal(store_cluster_end(s, "0123456789ab", "killed", "stopped", &ch, &d), 0);
	assert_int_equal(store_cluster_note(s, "0123456789ab", " [Slurm TIMEOUT, job 5_0]", false, &d), 0);
	assert_int_equal(store_cluster_note(s, "0123456789ab", " [Slurm TIMEOUT, job 5_0]", false, &d), 0);
	r = get(s);
	assert_string_equal(r->error, "stopped [Slurm TIMEOUT, job 5_0]");
	store_run_free(r);
	/* a run that failed because Slurm ended its task is killed */
	struct journal *j5 = attempt(true, 5);
	assert_int_equal(journal_end(j5, "failed", "trainer exited with status 143"), 0);
	journal_close(j5);
	assert_int_equal(merge(s, 5, INFINITY), 2);
	r = get(s);
	assert_string_equal(r->status, "failed");
	store_run_free(r);
	assert_int_equal(store_cluster_note(s, "0123456789ab", " [Slurm CANCELLED, job 5_0]", true, &d), 0);
	r = get(s);
	assert_string_equal(r->status, "killed");
	assert_string_equal(r->error, "trainer exited with status 143 [Slurm CANCELLED, job 5_0]");
	store_run_free(r);
	bool ok;
	assert_int_equal(store_integrity_check(s, &ok, &d), 0);
	assert_true(ok);
	store_close(s);
	assert_int_equal(scratch_close(), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_claim_busy_and_not_reaped),
		cmocka_unit_test(test_merge_once_and_attempts),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
