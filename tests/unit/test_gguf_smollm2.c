/* Smoke test of loading and tokenization on the real default model
 * (models/SmolLM2-135M-Instruct.Q4_1.gguf): hyperparameters, tensor names and shapes, every
 * stored type, and the ChatML prompt's ids from the Hugging Face fixture. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backends/native/io/model_file.h"
#include "backends/native/tok/tokenizer.h"
#include "common/util.h"
#include "common/banned.h"

static struct model_file *mf;

static int setup(void **state)
{
	(void)state;
	const char *root = getenv("FTLAB_ROOT");
	char *p = path_join(root ? root : ".", "models/SmolLM2-135M-Instruct.Q4_1.gguf");
	struct diag d;
	diag_init(&d);
	int rc = model_file_load(&mf, p, &d);
	if (!rc)
		rc = model_file_dequantize(mf, &d);
	if (rc)
		diag_print(&d, stderr);
	free(p);
	return rc;
}

static int teardown(void **state)
{
	(void)state;
	model_file_free(mf);
	return 0;
}

static void test_hparams(void **state)
{
	(void)state;
	const struct model_hparams *hp = &mf->hp;
	assert_int_equal(hp->arch, ARCH_LLAMA);
	assert_int_equal(hp->n_layer, 30);
	assert_int_equal(hp->n_embd, 576);
	assert_int_equal(hp->n_head, 9);
	assert_int_equal(hp->n_head_kv, 3);
	assert_int_equal(hp->head_dim, 64);
	assert_int_equal(hp->n_ff, 1536);
	assert_int_equal(hp->n_vocab, 49152);
	assert_int_equal(hp->n_ctx_train, 8192);
	assert_int_equal(hp->rope_style, ROPE_INTERLEAVED);
	assert_true(fabsf(hp->rope_theta - 100000.0f) < 1e-3f);
	assert_true(fabsf(hp->norm_eps - 1e-5f) < 1e-12f);
	assert_true(hp->tied_embeddings);
	assert_false(hp->qkv_bias);
	assert_true(mf->is_gguf);
	assert_int_equal(strlen(mf->content_hash), 64);
}

static void test_tensors(void **state)
{
	(void)state;
	assert_int_equal(mf->n_tensors, 272);
	const struct mf_tensor *e = model_file_tensor(mf, "model.embed_tokens.weight");
	assert_non_null(e);
	assert_string_equal(e->src_type, "Q8_0");
	assert_int_equal(e->shape[0], 49152);
	assert_int_equal(e->shape[1], 576);
	const struct mf_tensor *k = model_file_tensor(mf, "model.layers.29.self_attn.k_proj.weight");
	assert_non_null(k);
	assert_string_equal(k->src_type, "Q4_1");
	assert_int_equal(k->shape[0], 192);
	assert_int_equal(k->shape[1], 576);
	assert_non_null(model_file_tensor(mf, "model.norm.weight"));
	assert_non_null(model_file_tensor(mf, "model.layers.0.mlp.gate_proj.weight"));
	assert_null(model_file_tensor(mf, "lm_head.weight"));
	for (size_t i = 0; i < mf->n_tensors; i++) { /* every value finite and not all zero */
		const struct mf_tensor *t = &mf->tensors[i];
		double s = 0;
		for (size_t j = 0; j < t->numel; j++) {
			assert_true(isfinite(t->data[j]));
			s += fabs(t->data[j]);
		}
		assert_true(s > 0);
	}
}

static void test_chatml_ids(void **state)
{
	(void)state;
	struct diag d;
	diag_init(&d);
	struct tokenizer *t;
	assert_int_equal(tokenizer_from_model_file(&t, mf, &d), 0);
	assert_int_equal(tokenizer_n_vocab(t), 49152);
	assert_int_equal(tokenizer_bos(t), 1);
	assert_int_equal(tokenizer_eos(t), 2);
	assert_false(tokenizer_adds_bos(t));
	assert_int_equal(tokenizer_token_id(t, "<|im_end|>"), 2);
	assert_int_equal(tokenizer_token_id(t, "no such token"), -1);
	assert_non_null(tokenizer_chat_template(t));
	assert_non_null(strstr(tokenizer_chat_template(t), "<|im_start|>"));
	/* ids from tests/reference/tokenizer_smollm2.jsonl (Hugging Face tokenizers) */
	const char *prompt = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
			     "<|im_start|>assistant\n";
	static const int32_t want[] = {1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1,
				       520, 9531, 198};
	int32_t *ids;
	size_t n;
	assert_int_equal(tokenizer_encode(t, prompt, strlen(prompt), true, &ids, &n, &d), 0);
	assert_int_equal(n, FT_ARRAY_LEN(want));
	assert_memory_equal(ids, want, sizeof want);
	free(ids);
	/* without parse_special the markers are plain text */
	assert_int_equal(tokenizer_encode(t, prompt, strlen(prompt), false, &ids, &n, &d), 0);
	for (size_t i = 0; i < n; i++)
		assert_false(tokenizer_is_special(t, ids[i]));
	free(ids);
	tokenizer_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hparams),
		cmocka_unit_test(test_tensors),
		cmocka_unit_test(test_chatml_ids),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
