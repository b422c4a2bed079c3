/* Unit tests for data/loader batching: padding and masks, packing (no example split
 * across rows, boundary targets masked), per-epoch shuffling from the seed, and cursor
 * save/restore giving the identical batch stream. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "backends/native/data/loader.h"
#include "common/banned.h"

/* n examples; example i has length 3 + i % 5, ids 1000*i + k, loss on its second half. */
static struct tok_set *make_set(size_t n)
{
	struct tok_set *s = calloc(1, sizeof *s);
	s->ex = calloc(n, sizeof *s->ex);
	s->n = n;
	for (size_t i = 0; i < n; i++) {
		struct tok_example *e = &s->ex[i];
		e->n = 3 + i % 5;
		e->ids = malloc(e->n * sizeof *e->ids);
		e->loss = malloc(e->n);
		for (size_t k = 0; k < e->n; k++) {
			e->ids[k] = (int32_t)(1000 * i + k);
			e->loss[k] = k >= e->n / 2;
		}
		e->record = i;
	}
	return s;
}

static struct loader *make_loader(struct tok_set *s, int B, int T, bool packing, bool shuffle,
				  bool fixed)
{
	struct loader_opts o = {B, T, packing, shuffle, fixed, 42, -7, false, false};
	struct loader *l = NULL;
	struct diag d;
	diag_init(&d);
	assert_int_equal(loader_create(&l, s, &o, &d), 0);
	return l;
}

static void test_padding(void **state)
{
	(void)state;
	struct tok_set *s = make_set(5);
	struct loader *l = make_loader(s, 2, 16, false, false, false);
	assert_int_equal(loader_batches_per_epoch(l), 3);
	struct batch b;
	assert_int_equal(loader_next(l, &b), 0);
	/* Examples 0 (len 3) and 1 (len 4); T = longest rounded up to 8. */
	assert_int_equal(b.B, 2);
	assert_int_equal(b.T, 8);
	assert_int_equal(b.rows, 2);
	int32_t row0[8] = {0, 1, 2, -7, -7, -7, -7, -7};
	int32_t tg0[8] = {1, 2, -1, -1, -1, -1, -1, -1}; /* loss on k >= 1 */
	assert_memory_equal(b.tokens, row0, sizeof row0);
	assert_memory_equal(b.targets, tg0, sizeof tg0);
	int32_t tg1[8] = {-1, 1002, 1003, -1, -1, -1, -1, -1}; /* len 4: loss on k >= 2 */
	assert_memory_equal(b.targets + 8, tg1, sizeof tg1);
	assert_int_equal(b.n_targets, 4);
	assert_int_equal(loader_next(l, &b), 0);
	assert_int_equal(loader_next(l, &b), 0);
	/* Last batch of the epoch: one example, the second row is padding. */
	assert_int_equal(b.rows, 1);
	assert_true(b.last_of_epoch);
	for (int t = 0; t < b.T; t++)
		assert_int_equal(b.targets[b.T + t], -1);
	assert_int_equal(loader_next(l, &b), 0);
	assert_int_equal(b.epoch, 1);
	loader_free(l);
	/* fixed_len: T is always seq_len. */
	l = make_loader(s, 2, 16, false, false, true);
	assert_int_equal(loader_next(l, &b), 0);
	assert_int_equal(b.T, 16);
	loader_free(l);
	tok_set_free(s);
}

static void test_packing(void **state)
{
	(void)state;
	struct tok_set *s = make_set(10); /* lengths 3 4 5 6 7 3 4 5 6 7 = 50 tokens */
	struct loader *l = make_loader(s, 2, 12, true, false, true);
	struct batch b;
	size_t seen = 0, batches = loader_batches_per_epoch(l);
	int64_t targets = 0;
	for (size_t k = 0; k < batches; k++) {
		assert_int_equal(loader_next(l, &b), 0);
		assert_int_equal(b.T, 12);
		seen += (size_t)b.examples;
		targets += b.n_targets;
		/* Every example starts where its tokens are whole: find example starts (k = 0
		 * tokens) and check the token before it has target -1 (no loss across examples). */
		for (int r = 0; r < b.B; r++)
			for (int t = 1; t < b.T; t++) {
				int32_t tok = b.tokens[r * b.T + t];
				if (tok >= 0 && tok % 1000 == 0)
					assert_int_equal(b.targets[r * b.T + t - 1], -1);
			}
	}
	assert_int_equal(seen, 10);
	assert_true(b.last_of_epoch);
	/* Targets equal the per-example count: sum over examples of (n - n/2) minus nothing. */
	int64_t want = 0;
	for (size_t i = 0; i < 10; i++) {
		size_t n = s->ex[i].n;
		want += (int64_t)(n - n / 2);
		if (n / 2 == 0)
			want--; /* position 0 is never predicted */
	}
	assert_int_equal(targets, want);
	/* 50 tokens in rows of 12 without splitting examples: first batch holds 0..4? */
	loader_free(l);
	tok_set_free(s);
}

static void collect(struct loader *l, int nb, int32_t *out, size_t per)
{
	struct batch b;
	for (int k = 0; k < nb; k++) {
		assert_int_equal(loader_next(l, &b), 0);
		memset(out + (size_t)k * per, 0, per * sizeof *out);
		memcpy(out + (size_t)k * per, b.tokens, (size_t)b.B * (size_t)b.T * sizeof *out);
	}
}

static void test_shuffle_and_cursor(void **state)
{
	(void)state;
	struct tok_set *s = make_set(23);
	const int B = 4, T = 8, NB = 20; /* 6 batches per epoch: crosses three epochs */
	size_t per = (size_t)B * T;
	int32_t *a = calloc(NB * per, sizeof *a), *c = calloc(NB * per, sizeof *c);
	struct loader *l = make_loader(s, B, T, false, true, true);
	collect(l, NB, a, per);
	loader_free(l);
	/* Same seed, same stream. */
	l = make_loader(s, B, T, false, true, true);
	collect(l, NB, c, per);
	assert_memory_equal(a, c, NB * per * sizeof *a);
	loader_free(l);
	/* Epochs differ from each other and from file order. */
	assert_memory_not_equal(a, a + 6 * per, 6 * per * sizeof *a);
	/* Save after 9 batches, restore in a new loader: the rest is identical. */
	l = make_loader(s, B, T, false, true, true);
	collect(l, 9, c, per);
	struct data_cursor cur;
	loader_get_cursor(l, &cur);
	loader_free(l);
	assert_int_equal(cur.epoch, 1);
	assert_int_equal(cur.position, 12);
	l = make_loader(s, B, T, false, true, true);
	struct diag d;
	diag_init(&d);
	assert_int_equal(loader_set_cursor(l, &cur, &d), 0);
	collect(l, NB - 9, c + 9 * per, per);
	assert_memory_equal(a, c, NB * per * sizeof *a);
	/* A cursor from other data is refused. */
	cur.n_examples = 99;
	assert_int_equal(loader_set_cursor(l, &cur, &d), FT_EINVAL);
	loader_free(l);
	/* Each epoch is a permutation: every example exactly once. */
	l = make_loader(s, B, T, false, true, true);
	int count[23] = {0};
	struct batch b;
	for (int k = 0; k < 6; k++) {
		assert_int_equal(loader_next(l, &b), 0);
		for (int r = 0; r < b.rows; r++)
			count[b.tokens[r * b.T] / 1000]++;
	}
	for (int i = 0; i < 23; i++)
		assert_int_equal(count[i], 1);
	loader_free(l);
	free(a);
	free(c);
	tok_set_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_padding),
		cmocka_unit_test(test_packing),
		cmocka_unit_test(test_shuffle_and_cursor),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
