/* Unit tests for the run journal that cluster tasks write instead of the store: records
 * round-trip with their types, attempts get their own files in order (O_EXCL), a partial
 * last line is left for the next read, reads resume from an offset, malformed lines are
 * counted and skipped, and a later attempt's file marks the earlier one superseded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"
#include "store/journal.h"
#include "tests/unit/scratch.h"
#include "common/banned.h"

static struct journal *open_attempt(const char *dir, int expect_seq, bool resume)
{
	struct journal *j = NULL;
	int seq = 0;
	struct diag d;
	diag_init(&d);
	struct journal_start st = {.job_id = "101", .array_job = "100", .array_task = 1,
				   .restart = 0, .node = "n2", .host = "h", .pid = 42,
				   .backend = "exec", .device = "exec", .threads = 2,
				   .resume = resume, .submission = "s1"};
	int r = journal_open_next(&j, &seq, dir, &st, &d);
	if (r)
		fprintf(stderr, "journal_open_next: %s\n", d.text);
	assert_int_equal(r, 0);
	assert_int_equal(seq, expect_seq);
	return j;
}

static struct journal_batch *read_seq(const char *dir, int seq, int64_t off)
{
	char name[32], *p, *jd = path_join(dir, JOURNAL_DIR);
	journal_file_name(name, sizeof name, seq);
	p = path_join(jd, name);
	struct journal_batch *b = NULL;
	struct diag d;
	diag_init(&d);
	assert_int_equal(journal_read(&b, p, off, &d), 0);
	free(p);
	free(jd);
	return b;
}

static void test_roundtrip(void **state)
{
	(void)state;
	const char *dir = scratch_open("journal");
	scratch_put("adapter/x.bin", "weights");
	struct journal *j = open_attempt(dir, 1, false);
	assert_int_equal(journal_metric(j, "train", "loss", 10, 1.25), 0);
	assert_int_equal(journal_metric(j, "train", "loss", 11, NAN), 0);
	assert_int_equal(journal_result(j, "tuned", "test", "exact_match", 0.8, 0.7, 0.9), 0);
	assert_int_equal(journal_prediction(j, "base", "test", 3, "p\n\"q\"", "r", "o\xc3\xa9",
					    NAN), 0);
	assert_int_equal(journal_event(j, "warning", "truncated", "2 examples"), 0);
	assert_int_equal(journal_artifact(j, "adapter", "adapter/x.bin", dir), 0);
	assert_int_equal(journal_progress(j, 11, 60), 0);
	assert_int_equal(journal_end(j, "finished", NULL), 0);
	assert_null(journal_error(j));
	journal_close(j);

	struct journal_batch *b = read_seq(dir, 1, 0);
	assert_int_equal(b->bad_lines, 0);
	assert_int_equal(b->n, 9);
	const struct journal_rec *r = b->recs;
	assert_int_equal(r[0].kind, JREC_START);
	assert_string_equal(r[0].job_id, "101");
	assert_string_equal(r[0].array_job, "100");
	assert_int_equal(r[0].array_task, 1);
	assert_string_equal(r[0].node, "n2");
	assert_int_equal(r[0].threads, 2);
	assert_false(r[0].resume);
	assert_int_equal(r[1].kind, JREC_METRIC);
	assert_string_equal(r[1].split, "train");
	assert_int_equal(r[1].step, 10);
	assert_true(r[1].value == 1.25);
	assert_true(isnan(r[2].value));
	assert_int_equal(r[3].kind, JREC_RESULT);
	assert_string_equal(r[3].name, "exact_match");
	assert_true(r[3].ci_low == 0.7 && r[3].ci_high == 0.9);
	assert_int_equal(r[4].kind, JREC_PREDICTION);
	assert_string_equal(r[4].prompt, "p\n\"q\"");
	assert_string_equal(r[4].output, "o\xc3\xa9");
	assert_true(isnan(r[4].score));
	assert_int_equal(r[5].kind, JREC_EVENT);
	assert_string_equal(r[5].tag, "truncated");
	assert_int_equal(r[6].kind, JREC_ARTIFACT);
	assert_int_equal(r[6].bytes, 7);
	/* sha256("weights") */
	assert_string_equal(r[6].sha256,
			    "9a129038d9a00aed0cf6a7ea059ca50a813449061ab87848cf1a13eafdf33b2c");
	assert_int_equal(r[7].kind, JREC_PROGRESS);
	assert_int_equal(r[7].total, 60);
	assert_int_equal(r[8].kind, JREC_END);
	assert_string_equal(r[8].status, "finished");
	assert_null(r[8].error);
	for (size_t i = 0; i < b->n; i++)
		assert_int_equal(r[i].line, (int64_t)i + 1);
	/* Reading again from the end finds nothing new. */
	int64_t end = b->end_offset;
	journal_batch_free(b);
	b = read_seq(dir, 1, end);
	assert_int_equal(b->n, 0);
	assert_int_equal(b->end_offset, end);
	journal_batch_free(b);
	assert_int_equal(scratch_close(), 0);
}

static void append_raw(const char *dir, int seq, const char *text)
{
	char name[32], *jd = path_join(dir, JOURNAL_DIR), *p;
	journal_file_name(name, sizeof name, seq);
	p = path_join(jd, name);
	int fd = open(p, O_WRONLY | O_APPEND);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	free(p);
	free(jd);
}

static void test_partial_and_bad_lines(void **state)
{
	(void)state;
	const char *dir = scratch_open("journal");
	struct journal *j = open_attempt(dir, 1, true);
	assert_int_equal(journal_metric(j, "train", "loss", 1, 2.0), 0);
	journal_close(j);
	struct journal_batch *b = read_seq(dir, 1, 0);
	assert_int_equal(b->n, 2);
	assert_true(b->recs[0].resume);
	int64_t off = b->end_offset;
	journal_batch_free(b);
	/* A killed writer's half line is not a record yet ... */
	append_raw(dir, 1, "{\"k\":\"metric\",\"t\":1,\"split\":\"train\",\"name\":\"loss\",\"st");
	b = read_seq(dir, 1, off);
	assert_int_equal(b->n, 0);
	assert_int_equal(b->bad_lines, 0);
	assert_int_equal(b->end_offset, off);
	journal_batch_free(b);
	/* ... and once completed it is read from the same offset. Malformed complete lines
	 * (wrong types, unknown kinds, duplicate keys, bad status, not JSON) are skipped. */
	append_raw(dir, 1, "ep\":2,\"value\":3}\n"
			   "{\"k\":\"metric\",\"t\":1,\"split\":\"train\",\"name\":\"loss\",\"step\":\"3\",\"value\":1}\n"
			   "{\"k\":\"bogus\",\"t\":1}\n"
			   "{\"k\":\"end\",\"t\":1,\"status\":\"done\"}\n"
			   "{\"k\":\"end\",\"k\":\"end\",\"t\":1,\"status\":\"failed\"}\n"
			   "not json\n"
			   "\n"
			   "{\"k\":\"end\",\"t\":2,\"status\":\"failed\",\"error\":\"exit status 1\"}\n");
	b = read_seq(dir, 1, off);
	assert_int_equal(b->n, 2);
	assert_int_equal(b->bad_lines, 5);
	assert_int_equal(b->recs[0].step, 2);
	assert_string_equal(b->recs[1].error, "exit status 1");
	int64_t off2 = b->end_offset;
	journal_batch_free(b);
	/* a run the sweep's controller stopped early ends `stopped` */
	append_raw(dir, 1, "{\"k\":\"end\",\"t\":3,\"status\":\"stopped\",\"error\":null}\n");
	b = read_seq(dir, 1, off2);
	assert_int_equal(b->n, 1);
	assert_int_equal(b->bad_lines, 0);
	assert_int_equal(b->recs[0].kind, JREC_END);
	assert_string_equal(b->recs[0].status, "stopped");
	journal_batch_free(b);
	assert_int_equal(scratch_close(), 0);
}

static void test_attempts_and_superseded(void **state)
{
	(void)state;
	const char *dir = scratch_open("journal");
	struct journal *a = open_attempt(dir, 1, false);
	assert_false(journal_superseded(a));
	struct journal *b = open_attempt(dir, 2, true);
	assert_true(journal_superseded(a));
	assert_false(journal_superseded(b));
	/* A file someone else created in the way is skipped, never shared. */
	scratch_put("journal/0003.jsonl", "");
	struct journal *c = open_attempt(dir, 4, true);
	journal_close(a);
	journal_close(b);
	journal_close(c);
	scratch_put("journal/notes.txt", "x");
	scratch_put("journal/12.jsonl", "x");
	int *seqs = NULL;
	size_t n = 0;
	struct diag d;
	diag_init(&d);
	assert_int_equal(journal_list(&seqs, &n, dir, &d), 0);
	assert_int_equal(n, 4);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(seqs[i], (int)i + 1);
	free(seqs);
	assert_int_equal(scratch_close(), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_partial_and_bad_lines),
		cmocka_unit_test(test_attempts_and_superseded),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
