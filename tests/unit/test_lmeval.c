/* Likelihood scoring against lm-evaluation-harness (fixture:
 * tests/reference/make_lmeval_fixture.py, task tests/reference/fixtures/lmeval/): the
 * twelve multiple-choice questions of mc.jsonl as completion data with the custom
 * template "{prompt} {response}" (lm-eval's context "{{prompt}}" and target delimiter
 * " "), scored by data_prepare_choices + eval_split on the tiny llama that
 * tests/unit/tiny_model.c writes as a Hugging Face directory, and on SmolLM2-135M (GGUF,
 * skipped without models/): every choice's summed log-probability equals lm-eval's
 * log-likelihood, and choice_accuracy and choice_accuracy_norm equal its acc and acc_norm.
 * FTLAB_WRITE_FIXTURE=1 writes the tiny model (/tmp/ftlab-lmeval-tiny) and SmolLM2's F32
 * GGUF (/tmp/ftlab-smollm2-f32.gguf) that the script loads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/native/data/prepare.h"
#include "backends/native/eval/evaluate.h"
#include "backends/native/io/model_file.h"
#include "backends/native/peft/merge.h"
#include "backends/native/tok/tokenizer.h"
#include "common/util.h"
#include "tests/unit/scratch.h"
#include "tests/unit/tiny_model.h"
#include "common/banned.h"

static char *root_path(const char *rel)
{
	const char *root = getenv("FTLAB_ROOT");
	return path_join(root ? root : ".", rel);
}

/* Scores mc.jsonl with the model and compares with the fixture's entry `which`. tol:
 * absolute tolerance of a log-likelihood. */
static void check(const char *model_path, const char *which, double tol)
{
	struct diag d;
	diag_init(&d);
	struct model_file *mf = NULL;
	struct tokenizer *tok = NULL;
	if (model_file_load(&mf, model_path, &d) || tokenizer_from_model_file(&tok, mf, &d))
		fail_msg("%s", d.text);
	char *data = root_path("tests/reference/fixtures/lmeval/mc.jsonl");
	struct config_data cd;
	memset(&cd, 0, sizeof cd);
	cd.format = DATA_COMPLETION;
	cd.test.present = true;
	cd.test.path = data;
	cd.template_custom = "{prompt} {response}";
	cd.max_length = 64;
	struct data_prepared p;
	if (data_prepare(&p, &cd, 64, tok, &d) || data_prepare_choices(&p, tok, NULL, 0, NULL, 0, &d))
		fail_msg("%s", d.text);
	struct model *m = NULL;
	if (eval_model_create(&m, mf, NULL, 4, 64, &d))
		fail_msg("%s", d.text);
	struct eval_settings s;
	memset(&s, 0, sizeof s);
	const char *names[] = {"choice_accuracy", "choice_accuracy_norm"};
	assert_int_equal(eval_settings_metrics(&s, names, 2, &d), 0);
	s.batch_size = 4;
	s.seq_len = 64;
	struct eval_result r;
	if (eval_split(&r, m, tok, p.test, &s, &d))
		fail_msg("%s", d.text);

	char *rp = root_path("tests/reference/fixtures/lmeval/reference.json");
	json_error_t err;
	json_t *ref = json_load_file(rp, 0, &err);
	if (!ref)
		fail_msg("%s: %s (run tests/reference/make_lmeval_fixture.py)", rp, err.text);
	json_t *mr = json_object_get(ref, which);
	assert_non_null(mr);
	json_t *docs = json_object_get(mr, "docs");
	assert_int_equal(json_array_size(docs), p.test->n);
	double acc = 0, accn = 0, worst = 0;
	size_t off = 0;
	for (size_t i = 0; i < p.test->n; i++) {
		json_t *lls = json_object_get(json_array_get(docs, i), "lls");
		const struct tok_choices *c = &p.test->choices[i];
		assert_int_equal(json_array_size(lls), c->n);
		for (size_t j = 0; j < c->n; j++) {
			double want = json_number_value(json_array_get(lls, j));
			double got = r.choice_lp[off + j];
			worst = fmax(worst, fabs(got - want));
			if (fabs(got - want) > tol)
				fail_msg("%s doc %zu choice %zu: ours %.7f, lm-eval %.7f", which, i, j, got,
					 want);
		}
		off += c->n;
		acc += r.choice_rows[2 * i];
		accn += r.choice_rows[2 * i + 1];
	}
	print_message("%s: max |log-likelihood difference| %.3g; acc %.4f acc_norm %.4f\n", which,
		      worst, acc / (double)p.test->n, accn / (double)p.test->n);
	assert_float_equal(acc / (double)p.test->n,
			   json_number_value(json_object_get(mr, "acc")), 1e-12);
	assert_float_equal(accn / (double)p.test->n,
			   json_number_value(json_object_get(mr, "acc_norm")), 1e-12);
	json_decref(ref);
	free(rp);
	eval_result_free(&r);
	model_free(m);
	data_prepared_free(&p);
	free(data);
	tokenizer_free(tok);
	model_file_free(mf);
}

static void test_tiny(void **state)
{
	(void)state;
	const char *dir = scratch_open("lmeval");
	char *hf = path_join(dir, "tiny");
	struct tiny_model_spec spec;
	tiny_model_spec_default(&spec, ARCH_LLAMA);
	struct diag d;
	diag_init(&d);
	assert_int_equal(tiny_model_write_hf(hf, &spec, &d), 0);
	if (getenv("FTLAB_WRITE_FIXTURE"))
		assert_int_equal(tiny_model_write_hf("/tmp/ftlab-lmeval-tiny", &spec, &d), 0);
	check(hf, "tiny", 1e-4);
	free(hf);
	assert_int_equal(scratch_close(), 0);
}

static void test_smollm2(void **state)
{
	(void)state;
	char *mp = root_path("models/SmolLM2-135M-Instruct.Q4_1.gguf");
	if (!path_exists(mp)) {
		free(mp);
		skip(); /* `make model` fetches it */
	}
	if (getenv("FTLAB_WRITE_FIXTURE")) {
		struct diag d;
		diag_init(&d);
		struct model_file *mf = NULL;
		if (model_file_load(&mf, mp, &d) ||
		    merged_write_gguf("/tmp/ftlab-smollm2-f32.gguf", mf, &d))
			fail_msg("%s", d.text);
		model_file_free(mf);
	}
	check(mp, "smollm2", 2e-3);
	free(mp);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tiny),
		cmocka_unit_test(test_smollm2),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
