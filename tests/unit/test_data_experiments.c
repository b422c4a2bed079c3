/* The shipped experiments (experiments/NAME.yaml) load through the schema, their data files
 * read and split without errors or train/test duplicates, and with SmolLM2's tokenizer
 * nothing is truncated (the sizes the quickstart's time budget assumes). The base-model
 * sweep (choose-base.yaml) gives each run its own base's identity, chat template,
 * tokenizer and end-of-turn token; the method comparison (compare-methods.yaml) gives each
 * point its own method's keys and learning rate. */
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
#include "runner/identity.h"
#include "runner/sweep.h"
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

/* Each point of a model.base sweep is prepared with its own base: SmolLM2's chatml
 * template ending in <|im_end|>, Gemma's turns ending in <end_of_turn>, each tokenizer's
 * own ids; and the run identities differ by base (the model file's content is part of
 * them), while points of the same base share the base's file. */
/* keys: model.base */
static void test_choose_base_sweep(void **state)
{
	(void)state;
	char *path = root_path("experiments/choose-base.yaml");
	struct experiment *e = NULL;
	struct sweep_plan *plan = NULL;
	struct diag d;
	diag_init(&d);
	assert_int_equal(experiment_load(&e, path, NULL, 0, &d), 0);
	assert_int_equal(sweep_expand(&plan, e, 100, &d), 0);
	assert_int_equal(plan->n, 4); /* 2 bases x 2 learning rates */
	char ids[4][65];
	int kinds[4];
	for (size_t i = 0; i < plan->n; i++) {
		const struct config *c = plan->points[i].cfg;
		bool gemma = strstr(c->model.base, "gemma-3-270m") != NULL;
		assert_true(gemma || strstr(c->model.base, "SmolLM2-135M") != NULL);
		assert_true(path_exists(c->model.base)); /* `make model` fetches both */
		assert_int_equal(run_identity(ids[i], c, &d), 0);
		for (size_t j = 0; j < i; j++)
			assert_string_not_equal(ids[i], ids[j]);
		struct model_file *mf = NULL;
		struct tokenizer *tok = NULL;
		assert_int_equal(model_file_load(&mf, c->model.base, &d), 0);
		assert_int_equal(tokenizer_from_model_file(&tok, mf, &d), 0);
		struct data_prepared p;
		assert_int_equal(data_prepare(&p, &c->data, c->model.context, tok, &d), 0);
		kinds[i] = (int)p.tmpl.kind;
		assert_int_equal(p.tmpl.kind, gemma ? TEMPLATE_GEMMA : TEMPLATE_CHATML);
		int32_t eot = tokenizer_token_id(tok, gemma ? "<end_of_turn>" : "<|im_end|>");
		int32_t other = tokenizer_token_id(tok, gemma ? "<|im_end|>" : "<end_of_turn>");
		assert_true(eot >= 0);
		assert_true(other < 0); /* the other family's marker is not even a token here */
		for (size_t k = 0; k < p.test->n; k++) {
			const struct tok_example *x = &p.test->ex[k];
			/* the last trained token ends the model's turn */
			size_t last = x->n;
			for (size_t t = 0; t < x->n; t++)
				if (x->loss[t])
					last = t;
			assert_true(last < x->n);
			assert_int_equal(x->ids[last], eot);
			for (size_t t = 0; t < x->n; t++)
				assert_true(x->ids[t] >= 0 && x->ids[t] < mf->hp.n_vocab);
		}
		print_message("%s: template %d, %zu test examples\n", c->model.base, kinds[i],
			      p.test->n);
		data_prepared_free(&p);
		tokenizer_free(tok);
		model_file_free(mf);
	}
	assert_int_not_equal(kinds[0], kinds[plan->n - 1]);
	sweep_plan_free(plan);
	experiment_free(e);
	free(path);
}


/* The method comparison (compare-methods.yaml) expands to one point per method, each with
 * its own learning rate and only its own method's keys, and five different run ids. */
static void test_compare_methods_sweep(void **state)
{
	(void)state;
	char *path = root_path("experiments/compare-methods.yaml");
	struct experiment *e = NULL;
	struct sweep_plan *plan = NULL;
	struct diag d;
	diag_init(&d);
	assert_int_equal(experiment_load(&e, path, NULL, 0, &d), 0);
	assert_int_equal(sweep_expand(&plan, e, 100, &d), 0);
	assert_int_equal(plan->n, 5);
	static const struct {
		enum method_type m;
		double lr;
		const char *own, *other;
	} want[] = {
		{METHOD_LORA, 2e-3, "\"rank\":8", "num_virtual_tokens"},
		{METHOD_DORA, 2e-3, "\"rank\":8", "reduction_factor"},
		{METHOD_IA3, 2e-2, "\"targets\"", "\"rank\""},
		{METHOD_PREFIX, 2e-2, "\"num_virtual_tokens\":10", "\"alpha\""},
		{METHOD_ADAPTER, 2e-3, "\"reduction_factor\":16", "\"rank\""},
	};
	char ids[5][65];
	for (size_t i = 0; i < plan->n; i++) {
		const struct config *c = plan->points[i].cfg;
		assert_int_equal(c->method.type, want[i].m);
		assert_true(c->train.optimizer.lr == want[i].lr);
		assert_non_null(strstr(c->canonical_json, want[i].own));
		assert_null(strstr(c->canonical_json, want[i].other));
		assert_int_equal(run_identity(ids[i], c, &d), 0);
		for (size_t j = 0; j < i; j++)
			assert_string_not_equal(ids[i], ids[j]);
	}
	sweep_plan_free(plan);
	experiment_free(e);
	free(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_experiments),
		cmocka_unit_test(test_choose_base_sweep),
		cmocka_unit_test(test_compare_methods_sweep),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
