/* Unit tests for common/: diag, util, sha256, rng. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/diag.h"
#include "common/rng.h"
#include "common/hash.h"
#include "common/util.h"
#include "common/banned.h"

static void test_diag_first_error_wins(void **state)
{
	(void)state;
	struct diag d;
	diag_init(&d);
	assert_int_equal(diag_set(&d, FT_EINVAL, "a.yaml", 3, 4, "bad %s", "key"), FT_EINVAL);
	assert_int_equal(diag_set(&d, FT_EIO, "b.yaml", 1, 1, "later"), FT_EINVAL);
	assert_string_equal(d.file, "a.yaml");
	assert_string_equal(d.text, "bad key");
	assert_int_equal(d.line, 3);
	assert_int_equal(diag_exit_status(FT_EINVAL), 2);
	assert_int_equal(diag_exit_status(FT_ERUN), 1);
	assert_int_equal(diag_exit_status(FT_EINTR), 130);
}

static void test_diag_prints_caret(void **state)
{
	(void)state;
	char path[] = "/tmp/ftlab-diag-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	const char *src = "name: x\nmodel:\n  bse: y\n";
	assert_int_equal(write(fd, src, strlen(src)), (ssize_t)strlen(src));
	close(fd);
	struct diag d;
	diag_init(&d);
	diag_set(&d, FT_EINVAL, path, 3, 3, "unknown key 'bse'");
	diag_hint(&d, "did you mean '%s'?", "base");
	char *buf = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&buf, &len);
	diag_print(&d, mem);
	fclose(mem);
	char want[512];
	snprintf(want, sizeof want,
		 "%s:3:3: error: unknown key 'bse'\n    3 |   bse: y\n      |   ^\nnote: did you mean 'base'?\n",
		 path);
	assert_string_equal(buf, want);
	free(buf);
	unlink(path);
}

static void test_sha256_vectors(void **state)
{
	(void)state;
	char hex[65];
	sha256_hex(hex, "", 0);
	assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	sha256_hex(hex, "abc", 3);
	assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
	sha256_hex(hex, two, strlen(two));
	assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
	/* One million 'a', streamed in uneven pieces. */
	struct sha256 s;
	sha256_init(&s);
	char a[997];
	memset(a, 'a', sizeof a);
	size_t left = 1000000;
	while (left) {
		size_t n = left < sizeof a ? left : sizeof a;
		sha256_update(&s, a, n);
		left -= n;
	}
	uint8_t dig[32];
	sha256_final(&s, dig);
	assert_int_equal(dig[0], 0xcd);
	assert_int_equal(dig[1], 0xc7);
	assert_int_equal(dig[31], 0xd0);
}

static void test_rng_deterministic(void **state)
{
	(void)state;
	struct rng a, b, c;
	rng_seed(&a, 42, 0);
	rng_seed(&b, 42, 0);
	rng_seed(&c, 42, 1);
	int same_c = 0;
	for (int i = 0; i < 1000; i++) {
		uint64_t x = rng_next(&a), y = rng_next(&b), z = rng_next(&c);
		assert_true(x == y);
		same_c += x == z;
	}
	assert_true(same_c < 2);
	/* Uniform mean close to 1/2 and rng_below stays in range. */
	double sum = 0;
	for (int i = 0; i < 100000; i++) {
		double u = rng_uniform(&a);
		assert_true(u >= 0 && u < 1);
		sum += u;
		assert_true(rng_below(&a, 7) < 7);
	}
	assert_true(sum / 100000 > 0.49 && sum / 100000 < 0.51);
}

static void test_util_parsing_and_words(void **state)
{
	(void)state;
	int64_t i;
	double f;
	assert_true(parse_i64("-12", &i) && i == -12);
	assert_false(parse_i64("12x", &i));
	assert_false(parse_i64("", &i));
	assert_true(parse_f64("2.0e-4", &f) && f == 2.0e-4);
	assert_false(parse_f64("1e999", &f));
	assert_true(parse_duration("2h", &f) && f == 7200);
	assert_true(parse_duration("90", &f) && f == 90);
	assert_false(parse_duration("2w", &f));
	assert_int_equal(edit_distance("rank", "rnak", 5), 2);
	const char *keys[] = {"rank", "alpha", "dropout", "targets"};
	assert_string_equal(nearest_word("rnak", keys, 4), "rank");
	assert_string_equal(nearest_word("dropot", keys, 4), "dropout");
	assert_null(nearest_word("zzzzzzzz", keys, 4));
	size_t out;
	assert_false(size_mul(SIZE_MAX / 2, 3, &out));
	assert_true(size_mul(3, 4, &out) && out == 12);
}

static void test_util_files(void **state)
{
	(void)state;
	struct diag d;
	diag_init(&d);
	char dir[] = "/tmp/ftlab-util-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char *sub = path_join(dir, "a/b/c");
	assert_int_equal(dir_make_all(sub, &d), 0);
	char *file = path_join(sub, "f.txt");
	assert_int_equal(file_write_atomic(file, "hello", 5, &d), 0);
	char *data;
	size_t n;
	assert_int_equal(file_read_all(&data, &n, file, 100, &d), 0);
	assert_int_equal(n, 5);
	assert_string_equal(data, "hello");
	free(data);
	assert_int_equal(file_read_all(&data, &n, file, 3, &d), FT_EINVAL);
	assert_non_null(strstr(d.text, "limit"));
	char *dn = path_dirname(file);
	assert_string_equal(dn, sub);
	free(dn);
	assert_int_equal(dir_remove_all(dir), 0);
	assert_false(path_exists(dir));
	free(file);
	free(sub);
}

static int open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	assert_non_null(d);
	int n = 0;
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

/* fsync failing (here: the temporary file is a FIFO, on which fsync is EINVAL) is an error
 * naming the file, the temporary is removed, the target untouched, and the descriptor is
 * closed all the same (it leaked before: one per failed write). */
static void test_write_atomic_fsync_failure(void **state)
{
	(void)state;
	char dir[] = "/tmp/ftlab-atomic-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char *path = path_join(dir, "out.json"), tmp[256];
	snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
	int before = open_fds();
	for (int i = 0; i < 3; i++) {
		assert_int_equal(mkfifo(tmp, 0600), 0);
		int reader = open(tmp, O_RDONLY | O_NONBLOCK); /* lets the writer's open succeed */
		assert_true(reader >= 0);
		struct diag d;
		diag_init(&d);
		assert_int_equal(file_write_atomic(path, "{}", 2, &d), FT_EIO);
		assert_non_null(strstr(d.text, "cannot write"));
		assert_false(path_exists(path));
		assert_false(path_exists(tmp)); /* the temporary is removed */
		close(reader);
	}
	assert_int_equal(open_fds(), before);
	unlink(tmp);
	free(path);
	assert_int_equal(dir_remove_all(dir), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_diag_first_error_wins),
		cmocka_unit_test(test_diag_prints_caret),
		cmocka_unit_test(test_sha256_vectors),
		cmocka_unit_test(test_rng_deterministic),
		cmocka_unit_test(test_util_parsing_and_words),
		cmocka_unit_test(test_util_files),
		cmocka_unit_test(test_write_atomic_fsync_failure),
	};
	return cmocka_run_group_tests_name("common", tests, NULL, NULL);
}
