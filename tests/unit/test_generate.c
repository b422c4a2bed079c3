/* Unit tests for model/generate.c: KV-cache decode equals recomputing the whole sequence
 * without a cache (llama both RoPE styles, GPT-2 learned positions, Gemma 3 with a
 * sliding window shorter than the sequences, LoRA, prefix tuning), batching does
 * not change a prompt's output, seeded sampling is reproducible, EOS/stop ids and the
 * stop callback end sequences. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backends/native/model/model.h"
#include "tests/unit/tiny_weights.h"
#include "common/banned.h"

static bool g_proj; /* prefix tuning through PEFT's prefix_projection MLP */

static struct model *make(const struct model_file *mf, enum method_type method, int max_seq)
{
	struct model_opts o = {0};
	o.method = method;
	o.layers_first = o.layers_last = -1;
	o.max_batch = 1;
	o.max_seq = max_seq;
	o.full_logits = true;
	o.seed = 3;
	o.lora_rank = 2;
	o.lora_alpha = 4;
	o.lora_dropout = 0.3f; /* must be off in generation */
	o.all_linear = true;
	o.prefix_tokens = 3;
	o.prefix_projection = g_proj;
	struct diag d;
	diag_init(&d);
	struct model *m = NULL;
	if (model_create(&m, mf, &o, &d))
		fail_msg("model_create: %s", d.text);
	/* make LoRA matter */
	for (size_t i = 0; i < model_n_trainable(m); i++) {
		const struct model_param *p = model_trainable(m, i);
		for (size_t j = 0; j < p->numel; j++)
			p->data[j] = 0.2f * sinf((float)(j * 7 + i));
	}
	model_set_training(m, false);
	return m;
}

/* Greedy continuation recomputed from scratch each step (no cache). */
static void greedy_nocache(struct model *m, const int32_t *prompt, int len, int steps,
			   int32_t *out)
{
	int32_t seq[64];
	memcpy(seq, prompt, (size_t)len * sizeof(int32_t));
	int V = model_hparams(m)->n_vocab;
	for (int s = 0; s < steps; s++) {
		int T = len + s;
		assert_int_equal(model_forward(m, seq, NULL, 1, T, NULL, NULL), 0);
		const float *lg = model_logits(m) + (size_t)(T - 1) * V;
		int32_t best = 0;
		for (int i = 1; i < V; i++)
			if (lg[i] > lg[best])
				best = i;
		out[s] = best;
		seq[T] = best;
	}
}

static void check_cache_matches(struct model_file *mf, enum method_type method)
{
	struct model *m = make(mf, method, 16);
	int32_t p0[] = {1, 5, 9, 2, 30}, p1[] = {7}, p2[] = {3, 3, 4, 36, 0, 12, 8};
	const int32_t *prompts[] = {p0, p1, p2};
	size_t lens[] = {5, 1, 7};
	struct gen_opts g = {.max_new_tokens = 6, .eos_id = -1, .top_p = 1.0f};
	int32_t **out;
	size_t *olen;
	struct diag d;
	diag_init(&d);
	assert_int_equal(model_generate_tokens(m, prompts, lens, 3, &g, &out, &olen, &d), 0);
	for (int i = 0; i < 3; i++) {
		int32_t ref[8];
		greedy_nocache(m, prompts[i], (int)lens[i], 6, ref);
		assert_int_equal(olen[i], 6);
		for (int s = 0; s < 6; s++)
			assert_int_equal(out[i][s], ref[s]);
		/* alone, the same output */
		int32_t **o1;
		size_t *l1;
		assert_int_equal(model_generate_tokens(m, &prompts[i], &lens[i], 1, &g, &o1, &l1, &d), 0);
		assert_int_equal(l1[0], 6);
		assert_memory_equal(o1[0], out[i], 6 * sizeof(int32_t));
		free(o1[0]);
		free(o1);
		free(l1);
		free(out[i]);
	}
	free(out);
	free(olen);
	struct gen_stats st = model_gen_stats(m);
	assert_int_equal(st.prefill_tokens, 7);
	model_free(m);
}

static void test_cache_llama(void **state)
{
	(void)state;
	struct model_file *mf = tiny_llama_mf(false, true, ROPE_HALF, 21);
	check_cache_matches(mf, METHOD_NONE);
	model_file_free(mf);
	mf = tiny_llama_mf(true, false, ROPE_INTERLEAVED, 22);
	check_cache_matches(mf, METHOD_LORA);
	/* prefix tuning: the prefix rows lead every sequence's cache */
	check_cache_matches(mf, METHOD_PREFIX);
	/* prefix_projection: generation first computes the table from the MLP's parameters
	 * (set after the model was made; generation runs before any forward here) */
	g_proj = true;
	check_cache_matches(mf, METHOD_PREFIX);
	g_proj = false;
	model_file_free(mf);
}

static void test_cache_gemma3(void **state)
{
	(void)state;
	struct model_file *mf = tiny_gemma3_mf(24, 3); /* prompts of up to 7 + 6 new > 3 */
	check_cache_matches(mf, METHOD_NONE);
	check_cache_matches(mf, METHOD_LORA);
	model_file_free(mf);
}

static void test_cache_gpt2(void **state)
{
	(void)state;
	struct model_file *mf = tiny_gpt2_mf(23);
	check_cache_matches(mf, METHOD_NONE);
	check_cache_matches(mf, METHOD_LORA);
	model_file_free(mf);
}

static bool stop_after_three(void *ud, size_t i, const int32_t *gen, size_t n)
{
	(void)gen;
	int *calls = ud;
	(*calls)++;
	return i == 1 && n == 3;
}

static void test_sampling_and_stops(void **state)
{
	(void)state;
	struct model_file *mf = tiny_llama_mf(true, false, ROPE_HALF, 24);
	struct model *m = make(mf, METHOD_NONE, 8);
	int32_t p0[] = {1, 2, 3}, p1[] = {4, 5};
	const int32_t *prompts[] = {p0, p1};
	size_t lens[] = {3, 2};
	struct gen_opts g = {.max_new_tokens = 10, .temperature = 1.5f, .top_k = 20,
			     .top_p = 0.9f, .seed = 77, .eos_id = -1};
	int32_t **a, **b;
	size_t *la, *lb;
	struct diag d;
	diag_init(&d);
	assert_int_equal(model_generate_tokens(m, prompts, lens, 2, &g, &a, &la, &d), 0);
	assert_int_equal(model_generate_tokens(m, prompts, lens, 2, &g, &b, &lb, &d), 0);
	assert_int_equal(la[0], 10);
	assert_memory_equal(a[0], b[0], 10 * sizeof(int32_t));
	assert_memory_equal(a[1], b[1], 10 * sizeof(int32_t));
	/* a different seed gives a different sample (37-token vocabulary, T = 1.5) */
	g.seed = 78;
	int32_t **c;
	size_t *lc;
	assert_int_equal(model_generate_tokens(m, prompts, lens, 2, &g, &c, &lc, &d), 0);
	assert_true(memcmp(a[0], c[0], 10 * sizeof(int32_t)) != 0 ||
		    memcmp(a[1], c[1], 10 * sizeof(int32_t)) != 0);
	/* EOS = the 4th sampled token of sequence 0 ends it before that token */
	g.seed = 77;
	g.eos_id = a[0][3];
	int first = 0;
	while (a[0][first] != g.eos_id)
		first++;
	int calls = 0;
	g.stop = stop_after_three;
	g.stop_ud = &calls;
	int32_t **e;
	size_t *le;
	assert_int_equal(model_generate_tokens(m, prompts, lens, 2, &g, &e, &le, &d), 0);
	assert_int_equal(le[0], first);
	assert_true(le[1] <= 3);
	assert_true(calls > 0);
	for (int i = 0; i < 2; i++) {
		free(a[i]);
		free(b[i]);
		free(c[i]);
		free(e[i]);
	}
	free(a);
	free(b);
	free(c);
	free(e);
	free(la);
	free(lb);
	free(lc);
	free(le);
	/* bad prompts */
	int32_t bad[] = {99};
	const int32_t *bp[] = {bad};
	size_t bl[] = {1};
	assert_int_equal(model_generate_tokens(m, bp, bl, 1, &g, &e, &le, &d), FT_EINVAL);
	model_free(m);
	model_file_free(mf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cache_llama),
		cmocka_unit_test(test_cache_gpt2),
		cmocka_unit_test(test_cache_gemma3),
		cmocka_unit_test(test_sampling_and_stops),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
