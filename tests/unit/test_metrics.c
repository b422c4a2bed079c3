/* Unit tests for scoring/metrics: parity with sacrebleu 2.4.3, rouge-score 0.1.2 and the
 * SQuAD normalisation on tests/reference/metrics_fixture.jsonl (to 1e-6), plus a few
 * hand-computed values. */
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

#include "scoring/metrics.h"
#include "common/util.h"
#include "common/banned.h"

static char *fixture_path(void)
{
	const char *root = getenv("FTLAB_ROOT");
	return path_join(root ? root : ".", "tests/reference/metrics_fixture.jsonl");
}

static void check_close(double got, double want, const char *what, const char *pred,
			const char *ref)
{
	if (fabs(got - want) > 1e-6) {
		print_error("%s: got %.12f want %.12f\n  pred=%s\n  ref=%s\n", what, got, want,
			    pred, ref);
		fail();
	}
}

static void test_fixture_parity(void **state)
{
	(void)state;
	char *path = fixture_path();
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	size_t n = 0, cap_pairs = 0;
	char **preds = NULL, **refs = NULL;
	int checked_corpus = 0;
	while ((len = getline(&line, &cap, f)) > 0) {
		json_error_t err;
		json_t *o = json_loadb(line, (size_t)len, 0, &err);
		assert_non_null(o);
		if (json_is_true(json_object_get(o, "corpus"))) {
			double v;
			assert_int_equal(json_integer_value(json_object_get(o, "n")), (json_int_t)n);
			assert_int_equal(metric_corpus(&v, METRIC_BLEU, (const char *const *)preds,
						       (const char *const *)refs, n), 0);
			check_close(v, json_real_value(json_object_get(o, "bleu")), "corpus bleu", "", "");
			assert_int_equal(metric_corpus(&v, METRIC_CHRF, (const char *const *)preds,
						       (const char *const *)refs, n), 0);
			check_close(v, json_real_value(json_object_get(o, "chrf")), "corpus chrf", "", "");
			size_t nt = (size_t)json_integer_value(json_object_get(o, "n_tail"));
			assert_true(nt > 0 && nt <= n);
			assert_int_equal(metric_corpus(&v, METRIC_BLEU, (const char *const *)preds + (n - nt),
						       (const char *const *)refs + (n - nt), nt), 0);
			check_close(v, json_real_value(json_object_get(o, "bleu_tail")), "tail bleu", "", "");
			assert_int_equal(metric_corpus(&v, METRIC_CHRF, (const char *const *)preds + (n - nt),
						       (const char *const *)refs + (n - nt), nt), 0);
			check_close(v, json_real_value(json_object_get(o, "chrf_tail")), "tail chrf", "", "");
			checked_corpus = 1;
			json_decref(o);
			continue;
		}
		const char *p = json_string_value(json_object_get(o, "pred"));
		const char *r = json_string_value(json_object_get(o, "ref"));
		assert_non_null(p);
		assert_non_null(r);
		if (n == cap_pairs) {
			cap_pairs = cap_pairs ? cap_pairs * 2 : 256;
			preds = realloc(preds, cap_pairs * sizeof *preds);
			refs = realloc(refs, cap_pairs * sizeof *refs);
			assert_non_null(preds);
			assert_non_null(refs);
		}
		preds[n] = ft_strdup(p);
		refs[n] = ft_strdup(r);
		n++;

		char *t = metric_tokenize_13a(p);
		assert_non_null(t);
		assert_string_equal(t, json_string_value(json_object_get(o, "tok13a")));
		free(t);
		t = metric_rouge_tokens(p);
		assert_string_equal(t, json_string_value(json_object_get(o, "rouge_tok")));
		free(t);
		t = metric_squad_normalize(p);
		assert_string_equal(t, json_string_value(json_object_get(o, "squad_norm")));
		free(t);

		static const struct {
			enum metric_kind k;
			const char *key;
		} cases[] = {{METRIC_EXACT_MATCH, "em"}, {METRIC_F1, "f1"}, {METRIC_ROUGE_L, "rouge_l"},
			     {METRIC_BLEU, "bleu_sent"}, {METRIC_CHRF, "chrf_sent"}};
		for (size_t i = 0; i < FT_ARRAY_LEN(cases); i++) {
			double v;
			assert_int_equal(metric_sentence(&v, cases[i].k, p, r), 0);
			check_close(v, json_number_value(json_object_get(o, cases[i].key)), cases[i].key, p, r);
		}
		json_decref(o);
	}
	assert_true(n >= 200);
	assert_true(checked_corpus);
	for (size_t i = 0; i < n; i++) {
		free(preds[i]);
		free(refs[i]);
	}
	free(preds);
	free(refs);
	free(line);
	fclose(f);
	free(path);
}

static void test_hand_values(void **state)
{
	(void)state;
	double v;
	/* SQuAD: articles and punctuation vanish, case folds. */
	assert_int_equal(metric_sentence(&v, METRIC_EXACT_MATCH, "The Eiffel Tower!", "eiffel tower"), 0);
	assert_true(v == 1.0);
	assert_int_equal(metric_sentence(&v, METRIC_EXACT_MATCH, "Eiffel", "eiffel tower"), 0);
	assert_true(v == 0.0);
	/* F1: pred {eiffel}, ref {eiffel, tower}: p=1, r=0.5 -> 2/3. */
	assert_int_equal(metric_sentence(&v, METRIC_F1, "Eiffel", "the eiffel tower"), 0);
	assert_true(fabs(v - 2.0 / 3.0) < 1e-12);
	assert_int_equal(metric_sentence(&v, METRIC_F1, "", ""), 0);
	assert_true(v == 1.0);
	/* ROUGE-L: LCS("a b c d", "a c d e") = 3 -> p=r=3/4. */
	assert_int_equal(metric_sentence(&v, METRIC_ROUGE_L, "a c d e", "a b c d"), 0);
	assert_true(fabs(v - 0.75) < 1e-12);
	/* Identical sentence of >= 4 tokens: BLEU 100, chrF 100. */
	assert_int_equal(metric_sentence(&v, METRIC_BLEU, "one two three four", "one two three four"), 0);
	assert_true(fabs(v - 100.0) < 1e-9);
	assert_int_equal(metric_sentence(&v, METRIC_CHRF, "one two three four", "one two three four"), 0);
	assert_true(fabs(v - 100.0) < 1e-9);
	/* Corpus BLEU is not the mean of sentence BLEU: statistics are summed. */
	const char *p[] = {"a b c d", "x"}, *r[] = {"a b c d", "y"};
	double st[METRIC_STATS_MAX], sum[METRIC_STATS_MAX] = {0};
	for (int i = 0; i < 2; i++) {
		assert_int_equal(metric_pair_stats(st, METRIC_BLEU, p[i], r[i]), 0);
		for (size_t j = 0; j < metric_stats_dim(METRIC_BLEU); j++)
			sum[j] += st[j];
	}
	assert_true(sum[0] == 5 && sum[1] == 5 && sum[2] == 4 && sum[6] == 5);
	assert_int_equal(metric_corpus(&v, METRIC_BLEU, p, r, 2), 0);
	assert_true(fabs(v - metric_from_stats(METRIC_BLEU, sum, 2)) < 1e-12);
	/* precisions 4/5, 3/3, 2/2, 1/1 ("x" has no bigrams), bp 1. */
	assert_true(fabs(v - 100.0 * pow(0.8, 0.25)) < 1e-9);
	/* Names. */
	assert_int_equal(metric_from_name("rouge_l"), METRIC_ROUGE_L);
	assert_int_equal(metric_from_name("bleu4"), -1);
	assert_string_equal(metric_name(METRIC_CHRF), "chrf");
}

static void test_invalid_utf8_is_scored(void **state)
{
	(void)state;
	double v;
	/* Model output may be any bytes: scored, never a crash; a bad byte is a character. */
	assert_int_equal(metric_sentence(&v, METRIC_CHRF, "ab\xff\xfe", "ab"), 0);
	assert_true(v > 0 && v < 100);
	assert_int_equal(metric_sentence(&v, METRIC_BLEU, "\xc3", "\xc3"), 0);
	assert_int_equal(metric_sentence(&v, METRIC_EXACT_MATCH, "x\xe2\x82", "x\xe2\x82"), 0);
	assert_true(v == 1.0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fixture_parity),
		cmocka_unit_test(test_hand_values),
		cmocka_unit_test(test_invalid_utf8_is_scored),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
