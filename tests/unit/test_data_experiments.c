/* The shipped experiments (experiments/NAME.yaml) load through the schema, their data files
 * read and split without errors or train/test duplicates, and with SmolLM2's tokenizer
 * nothing is truncated (the sizes the quickstart's time budget assumes). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/native/data/prepare.h"
#include "backends/native/io/model_file.h"
#include "common/util.h"
#include "schema/schema.h"
#include "common/banned.h"

static char *root_path(const char *rel)
{
	const char *root = getenv("FTLAB_ROOT");
	return path_join(root ? root : ".", rel);
}

static void check_one(const char *rel, const struct tokenizer *tok, size_t want_train, size_t want_test)
{
	char *path = root_path(rel);
	struct experiment *e = NULL;
	struct diag d;
	diag_init(&d);
	int rc = experiment_load(&e, path, NULL, 0, &d);
	if (rc)
		print_error("%s:%d:%d: %s\n", d.file, d.line, d.col, d.text);
	assert_int_equal(rc, 0);
	const struct config *c = experiment_config(e);
	assert_true(path_exists(c->model.base) || !tok);
	struct data_splits s;
	rc = data_load_splits(&s, &c->data, c->seed, &d);
	if (rc)
		print_error("%s: %s:%d: %s\n", rel, d.file, d.line, d.text);
	assert_int_equal(rc, 0);
	print_message("%s: train %zu, validation %zu, test %zu\n", rel, s.train->n,
		      s.validation ? s.validation->n : 0, s.test->n);
	if (want_train)
		assert_int_equal(s.train->n + (s.validation ? s.validation->n : 0), want_train);
	assert_int_equal(s.test->n, want_test);
	assert_int_equal(s.dup_train_test, 0);
	assert_int_equal(s.dup_train_validation, 0);
	data_splits_free(&s);
	if (tok) {
		struct data_prepared p;
		assert_int_equal(data_prepare(&p, &c->data, c->model.context, tok, &d), 0);
		size_t longest = 0, tokens = 0;
		for (size_t i = 0; i < p.train->n; i++) {
			longest = p.train->ex[i].n > longest ? p.train->ex[i].n : longest;
			tokens += p.train->ex[i].n;
		}
		print_message("  template %d, longest %zu tokens, %zu train tokens per epoch\n",
			      (int)p.tmpl.kind, longest, tokens);
		assert_int_equal(p.train->n_truncated, 0);
		assert_int_equal(p.test->n_truncated, 0);
		assert_int_equal(p.train->n_no_loss, 0);
		assert_int_equal(p.train->n_pair_truncated, 0); /* preference pairs: both sides */
		assert_int_equal(p.test->n_pair_truncated, 0);
		data_prepared_free(&p);
	}
	experiment_free(e);
	free(path);
}

static void test_experiments(void **state)
{
	(void)state;
	char *mpath = root_path("models/SmolLM2-135M-Instruct.Q4_1.gguf");
	struct model_file *mf = NULL;
	struct tokenizer *tok = NULL;
	struct diag d;
	diag_init(&d);
	if (path_exists(mpath)) {
		assert_int_equal(model_file_load(&mf, mpath, &d), 0);
		assert_int_equal(tokenizer_from_model_file(&tok, mf, &d), 0);
	}
	check_one("experiments/topics.yaml", tok, 240, 80);
	check_one("experiments/extract.yaml", tok, 300, 80);
	check_one("experiments/qa.yaml", tok, 300, 80);
	check_one("experiments/quickstart.yaml", tok, 160, 60);
	check_one("experiments/dpo.yaml", tok, 160, 60);
	tokenizer_free(tok);
	model_file_free(mf);
	free(mpath);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_experiments),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
