/* Unit tests for train/checkpoint: round trip of every field, only the newest two kept,
 * a truncated or corrupted newest checkpoint falls back to the previous one, a stale
 * temporary directory is ignored, and resume refuses a changed config or data hash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/native/train/checkpoint.h"
#include "common/util.h"
#include "common/banned.h"

#define NW 1000

struct fx {
	char *dir, *ckpt;
	float w[NW], m[NW], v[NW];
	struct ckpt_tensor t[3];
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	char tmpl[] = "/tmp/ftlab-ckpt-XXXXXX";
	f->dir = ft_strdup(mkdtemp(tmpl));
	f->ckpt = path_join(f->dir, "checkpoint");
	f->t[0] = (struct ckpt_tensor){"param/w", f->w, NW, NULL};
	f->t[1] = (struct ckpt_tensor){"adam_m/w", f->m, NW, NULL};
	f->t[2] = (struct ckpt_tensor){"adam_v/w", f->v, NW, NULL};
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	assert_int_equal(dir_remove_all(f->dir), 0);
	free(f->ckpt);
	free(f->dir);
	free(f);
	return 0;
}

static void fill(struct fx *f, int64_t step)
{
	for (int i = 0; i < NW; i++) {
		f->w[i] = (float)step + (float)i * 0.25f;
		f->m[i] = -(float)i;
		f->v[i] = (float)step * 1e-3f;
	}
}

static void save_step(struct fx *f, int64_t step)
{
	fill(f, step);
	struct ckpt_state st = {.step = step, .tokens = step * 100, .skipped = 3, .model_rng = 77, .n_rng = 2,
				.best_metric = 1.0 / 3.0, .bad_evals = 1, .nonfinite_streak = 2};
	rng_seed(&st.rng[0], 42, 1);
	rng_seed(&st.rng[1], 42, (uint64_t)step);
	unsigned char cur[5] = {0, 1, 2, 0xfe, (unsigned char)step};
	st.cursor = cur;
	st.cursor_len = sizeof(cur);
	snprintf(st.config_hash, sizeof(st.config_hash), "%s", "cfgA");
	snprintf(st.data_hash, sizeof(st.data_hash), "%s", "dataA");
	struct diag d;
	diag_init(&d);
	char *path = NULL;
	assert_int_equal(ckpt_save(&path, f->ckpt, &st, f->t, 3, &d), 0);
	assert_true(path_exists(path));
	free(path);
}

static char *state_file(struct fx *f, int64_t step)
{
	char rel[96];
	snprintf(rel, sizeof(rel), "step-%09lld/state.safetensors", (long long)step);
	return path_join(f->ckpt, rel);
}

static int64_t load(struct fx *f, char **notes, const char *cfg, int *rc_out)
{
	memset(f->w, 0, sizeof(f->w));
	struct ckpt_state st = {0};
	bool found = false;
	struct diag d;
	diag_init(&d);
	*rc_out = ckpt_load(&found, &st, notes, f->ckpt, cfg, "dataA", f->t, 3, &d);
	int64_t step = found ? st.step : -1;
	if (found) {
		/* every field survived */
		assert_int_equal(st.tokens, step * 100);
		assert_int_equal(st.skipped, 3);
		assert_int_equal(st.model_rng, 77);
		assert_int_equal(st.n_rng, 2);
		struct rng r;
		rng_seed(&r, 42, (uint64_t)step);
		assert_memory_equal(&r, &st.rng[1], sizeof(r));
		assert_true(st.best_metric == 1.0 / 3.0);
		assert_int_equal(st.bad_evals, 1);
		assert_int_equal(st.nonfinite_streak, 2);
		assert_int_equal(st.cursor_len, 5);
		assert_int_equal(st.cursor[3], 0xfe);
		assert_int_equal(st.cursor[4], (unsigned char)step);
		for (int i = 0; i < NW; i++) {
			assert_true(f->w[i] == (float)step + (float)i * 0.25f);
			assert_true(f->v[i] == (float)step * 1e-3f);
		}
	}
	ckpt_state_clear(&st);
	return step;
}

static void test_roundtrip_and_keep(void **state)
{
	struct fx *f = *state;
	int rc;
	assert_int_equal(load(f, NULL, "cfgA", &rc), -1); /* nothing yet */
	assert_int_equal(rc, 0);
	save_step(f, 10);
	save_step(f, 20);
	save_step(f, 30);
	char *s10 = state_file(f, 10);
	assert_false(path_exists(s10)); /* only the newest two are kept */
	free(s10);
	assert_int_equal(load(f, NULL, "cfgA", &rc), 30);
	assert_int_equal(rc, 0);
}

static void test_truncated_newest_falls_back(void **state)
{
	struct fx *f = *state;
	save_step(f, 10);
	save_step(f, 20);
	char *p = state_file(f, 20);
	assert_int_equal(truncate(p, 100), 0);
	char *notes = NULL;
	int rc;
	assert_int_equal(load(f, &notes, "cfgA", &rc), 10);
	assert_int_equal(rc, 0);
	assert_non_null(notes);
	assert_non_null(strstr(notes, "step-000000020"));
	assert_non_null(strstr(notes, "truncated or corrupted"));
	free(notes);
	free(p);
}

static void test_corrupt_byte_falls_back(void **state)
{
	struct fx *f = *state;
	save_step(f, 10);
	save_step(f, 20);
	char *p = state_file(f, 20);
	FILE *fp = fopen(p, "r+b");
	assert_non_null(fp);
	fseek(fp, -7, SEEK_END);
	int c = fgetc(fp);
	fseek(fp, -7, SEEK_END);
	fputc(c ^ 0x10, fp);
	fclose(fp);
	int rc;
	assert_int_equal(load(f, NULL, "cfgA", &rc), 10);
	/* Both broken: nothing found, not an error (the run starts over). */
	char *p10 = state_file(f, 10);
	assert_int_equal(truncate(p10, 0), 0);
	char *notes = NULL;
	assert_int_equal(load(f, &notes, "cfgA", &rc), -1);
	assert_int_equal(rc, 0);
	assert_non_null(strstr(notes, "step-000000010"));
	free(notes);
	free(p10);
	free(p);
}

static void test_stale_tmp_and_meta_damage(void **state)
{
	struct fx *f = *state;
	save_step(f, 10);
	/* A crash mid-save leaves .tmp-step-N behind: ignored, then replaced by a save. */
	char *tmp = path_join(f->ckpt, ".tmp-step-000000020");
	struct diag d;
	diag_init(&d);
	assert_int_equal(dir_make_all(tmp, &d), 0);
	int rc;
	assert_int_equal(load(f, NULL, "cfgA", &rc), 10);
	save_step(f, 20);
	assert_false(path_exists(tmp));
	/* A newest checkpoint whose meta.json is garbage falls back. */
	char *meta = path_join(f->ckpt, "step-000000020/meta.json");
	assert_int_equal(file_write_atomic(meta, "{\"version\": ", 12, &d), 0);
	assert_int_equal(load(f, NULL, "cfgA", &rc), 10);
	free(meta);
	free(tmp);
}

static void test_refuses_mismatch(void **state)
{
	struct fx *f = *state;
	save_step(f, 10);
	int rc;
	f->w[0] = 123.0f;
	struct ckpt_state st = {0};
	bool found = true;
	struct diag d;
	diag_init(&d);
	rc = ckpt_load(&found, &st, NULL, f->ckpt, "cfgB", "dataA", f->t, 3, &d);
	assert_int_equal(rc, FT_EINVAL);
	assert_false(found);
	assert_non_null(strstr(d.text, "different config"));
	assert_true(f->w[0] == 123.0f); /* untouched */
	diag_init(&d);
	rc = ckpt_load(&found, &st, NULL, f->ckpt, "cfgA", "dataB", f->t, 3, &d);
	assert_int_equal(rc, FT_EINVAL);
	assert_non_null(strstr(d.text, "different data"));
	/* A model whose trainable set changed does not load the tensors. */
	struct ckpt_tensor other[1] = {{"param/x", f->w, 10, NULL}};
	char *notes = NULL;
	diag_init(&d);
	rc = ckpt_load(&found, &st, &notes, f->ckpt, "cfgA", "dataA", other, 1, &d);
	assert_int_equal(rc, 0);
	assert_false(found);
	assert_non_null(strstr(notes, "do not match"));
	free(notes);
	ckpt_state_clear(&st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_roundtrip_and_keep, setup, teardown),
		cmocka_unit_test_setup_teardown(test_truncated_newest_falls_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_byte_falls_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stale_tmp_and_meta_damage, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refuses_mismatch, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
