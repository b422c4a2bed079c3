/* Hugging Face directories and GGUF files written by tests/unit/tiny_model.c hold the same
 * weights: both loaders must give the same HF-named fp32 tensors (GGUF llama q/k rows in
 * llama.cpp's permuted order), the same hyperparameters and identical tokenization. */
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

#include "backends/native/io/dequant.h"
#include "backends/native/io/model_file.h"
#include "backends/native/tok/tokenizer.h"
#include "common/util.h"
#include "tests/unit/tiny_model.h"
#include "common/banned.h"

static char tmpdir[64];

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof tmpdir, "/tmp/ftlab-st-XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	return dir_remove_all(tmpdir);
}

static void write_both(const struct tiny_model_spec *s, const char *tag, struct model_file **g,
		       struct model_file **h)
{
	struct diag d;
	diag_init(&d);
	char gp[128], hp[128];
	snprintf(gp, sizeof gp, "%s/%s.gguf", tmpdir, tag);
	snprintf(hp, sizeof hp, "%s/%s-hf", tmpdir, tag);
	assert_int_equal(tiny_model_write_gguf(gp, s, &d), 0);
	assert_int_equal(tiny_model_write_hf(hp, s, &d), 0);
	int rc = model_file_load(g, gp, &d);
	if (rc)
		diag_print(&d, stderr);
	assert_int_equal(rc, 0);
	rc = model_file_load(h, hp, &d);
	if (rc)
		diag_print(&d, stderr);
	assert_int_equal(rc, 0);
	/* loaded as stored: the file's bytes, no fp32 copy until asked for */
	struct model_file *both[2] = {*g, *h};
	for (int f = 0; f < 2; f++)
		for (size_t i = 0; i < both[f]->n_tensors; i++) {
			const struct mf_tensor *t = &both[f]->tensors[i];
			const struct ggml_type_desc *td = ggml_type_by_name(t->src_type);
			assert_non_null(td);
			assert_int_equal(t->type, td->id);
			assert_int_equal(t->raw_bytes, t->numel / td->block_elems * td->block_bytes);
			assert_null(t->data);
		}
	assert_int_equal(model_file_dequantize(*g, &d), 0);
	assert_int_equal(model_file_dequantize(*h, &d), 0);
}

static void same_hparams(const struct model_hparams *a, const struct model_hparams *b)
{
	assert_int_equal(a->arch, b->arch);
	assert_int_equal(a->n_layer, b->n_layer);
	assert_int_equal(a->n_embd, b->n_embd);
	assert_int_equal(a->n_head, b->n_head);
	assert_int_equal(a->n_head_kv, b->n_head_kv);
	assert_int_equal(a->head_dim, b->head_dim);
	assert_int_equal(a->n_ff, b->n_ff);
	assert_int_equal(a->n_vocab, b->n_vocab);
	assert_int_equal(a->n_ctx_train, b->n_ctx_train);
	assert_true(fabsf(a->norm_eps - b->norm_eps) < 1e-9f);
	assert_int_equal(a->tied_embeddings, b->tied_embeddings);
	assert_int_equal(a->qkv_bias, b->qkv_bias);
}

/* Un-permutes GGUF q/k rows back to HF order (the inverse of llama.cpp's permutation). */
static void unpermute(float *dst, const float *src, int64_t rows, int64_t cols, int heads)
{
	int64_t hd = rows / heads;
	for (int h = 0; h < heads; h++)
		for (int64_t i = 0; i < hd / 2; i++)
			for (int j = 0; j < 2; j++)
				memcpy(dst + (h * hd + j * (hd / 2) + i) * cols,
				       src + (h * hd + 2 * i + j) * cols, (size_t)cols * sizeof *dst);
}

static void compare_all(const struct tiny_model_spec *s, const struct model_file *g,
			const struct model_file *h, float tol_g, float tol_h)
{
	assert_int_equal(g->n_tensors, h->n_tensors);
	for (size_t i = 0; i < h->n_tensors; i++) {
		const struct mf_tensor *th = &h->tensors[i];
		const struct mf_tensor *tg = model_file_tensor(g, th->name);
		assert_non_null(tg);
		assert_int_equal(tg->ndim, th->ndim);
		for (int k = 0; k < th->ndim; k++)
			assert_int_equal(tg->shape[k], th->shape[k]);
		size_t n;
		float *want = tiny_model_tensor(s, th->name, &n);
		assert_non_null(want);
		assert_int_equal(n, th->numel);
		float *gv = malloc(n * sizeof *gv);
		bool q = strstr(th->name, "q_proj") != NULL, k = strstr(th->name, "k_proj") != NULL;
		if (s->arch == ARCH_LLAMA && (q || k))
			unpermute(gv, tg->data, th->shape[0], th->ndim == 2 ? th->shape[1] : 1,
				  q ? s->n_head : s->n_head_kv);
		else
			memcpy(gv, tg->data, n * sizeof *gv);
		for (size_t j = 0; j < n; j++) {
			if (fabsf(th->data[j] - want[j]) > tol_h || fabsf(gv[j] - want[j]) > tol_g) {
				fprintf(stderr, "%s[%zu]: hf %g gguf %g want %g\n", th->name, j,
					th->data[j], gv[j], want[j]);
				fail();
			}
		}
		free(gv);
		free(want);
	}
}

/* Gemma 3: the GGUF holds 1 + w for the norms (llama.cpp's converter), the HF files w; both
 * loaders give the multiplier, the same bits, and the same Gemma hyperparameters. */
static void test_gemma3_gguf_equals_hf(void **state)
{
	(void)state;
	struct tiny_model_spec s;
	tiny_model_spec_default(&s, ARCH_GEMMA3);
	struct model_file *g = NULL, *h = NULL;
	write_both(&s, "gemma3", &g, &h);
	same_hparams(&g->hp, &h->hp);
	const struct model_hparams *a = &g->hp, *b = &h->hp;
	assert_int_equal(a->arch, ARCH_GEMMA3);
	assert_int_equal(a->rope_style, ROPE_HALF);
	assert_int_equal(b->rope_style, ROPE_HALF);
	assert_int_equal(a->head_dim, 16);
	assert_int_equal(a->sliding_window, 5);
	assert_int_equal(b->sliding_window, 5);
	assert_int_equal(a->swa_pattern, 2);
	assert_int_equal(b->swa_pattern, 2);
	assert_true(a->rope_theta == 1e6f && b->rope_theta == 1e6f);
	assert_true(a->rope_theta_local == 1e4f && b->rope_theta_local == 1e4f);
	assert_true(a->attn_scale == 0.25f && b->attn_scale == 0.25f);
	assert_int_equal(g->n_tensors, h->n_tensors);
	size_t norms = 0;
	for (size_t i = 0; i < h->n_tensors; i++) {
		const struct mf_tensor *th = &h->tensors[i];
		const struct mf_tensor *tg = model_file_tensor(g, th->name);
		assert_non_null(tg);
		assert_int_equal(tg->numel, th->numel);
		assert_memory_equal(tg->data, th->data, th->numel * sizeof(float));
		size_t n;
		float *w = tiny_model_tensor(&s, th->name, &n);
		assert_non_null(w);
		bool norm = strstr(th->name, "norm.weight") != NULL;
		norms += norm;
		for (size_t j = 0; j < n; j++)
			assert_true(th->data[j] == (norm ? 1.0f + w[j] : w[j]));
		free(w);
	}
	assert_int_equal(norms, 3 * 6 + 1);
	model_file_free(g);
	model_file_free(h);
}

static void test_llama_gguf_equals_hf(void **state)
{
	(void)state;
	struct tiny_model_spec s;
	tiny_model_spec_default(&s, ARCH_LLAMA);
	struct model_file *g, *h;
	write_both(&s, "llama", &g, &h);
	same_hparams(&g->hp, &h->hp);
	assert_int_equal(g->hp.rope_style, ROPE_INTERLEAVED);
	assert_int_equal(h->hp.rope_style, ROPE_HALF);
	assert_false(h->hp.tied_embeddings);
	assert_non_null(model_file_tensor(h, "lm_head.weight"));
	assert_string_equal(model_file_tensor(h, "model.norm.weight")->src_type, "F32");
	compare_all(&s, g, h, 0.0f, 0.0f);
	/* q rows really are permuted in the GGUF: row 1 of head 0 is HF row hd/2 */
	const struct mf_tensor *qg = model_file_tensor(g, "model.layers.0.self_attn.q_proj.weight");
	const struct mf_tensor *qh = model_file_tensor(h, "model.layers.0.self_attn.q_proj.weight");
	size_t hd = (size_t)(s.n_embd / s.n_head), C = (size_t)s.n_embd;
	assert_memory_equal(qg->data + 1 * C, qh->data + (hd / 2) * C, C * sizeof(float));
	assert_memory_not_equal(qg->data + 1 * C, qh->data + 1 * C, C * sizeof(float));
	assert_int_equal(strlen(h->content_hash), 64);
	assert_string_not_equal(h->content_hash, g->content_hash);
	model_file_free(g);
	model_file_free(h);
}

static void test_llama_tied_bias_sharded_bf16(void **state)
{
	(void)state;
	struct tiny_model_spec s;
	tiny_model_spec_default(&s, ARCH_LLAMA);
	s.tied = true;
	s.qkv_bias = true;
	s.hf_shards = 3;
	s.hf_dtype = 2;
	s.gguf_type = GGML_F16;
	struct model_file *g, *h;
	write_both(&s, "llama2", &g, &h);
	same_hparams(&g->hp, &h->hp);
	assert_true(h->hp.tied_embeddings);
	assert_true(h->hp.qkv_bias);
	assert_null(model_file_tensor(h, "lm_head.weight"));
	assert_string_equal(model_file_tensor(h, "model.embed_tokens.weight")->src_type, "BF16");
	assert_string_equal(model_file_tensor(g, "model.embed_tokens.weight")->src_type, "F16");
	/* |w| <= 0.1 for matrices (bf16: 2^-9 relative; fp16: 2^-11), norms near 1 */
	compare_all(&s, g, h, 1e-3f, 5e-3f);
	model_file_free(g);
	model_file_free(h);
}

static void test_gguf_q8_0_weights(void **state)
{
	(void)state;
	struct tiny_model_spec s;
	tiny_model_spec_default(&s, ARCH_LLAMA);
	s.gguf_type = GGML_Q8_0;
	struct model_file *g, *h;
	write_both(&s, "llama-q8", &g, &h);
	assert_string_equal(model_file_tensor(g, "model.layers.1.mlp.up_proj.weight")->src_type, "Q8_0");
	compare_all(&s, g, h, 0.1f / 127 + 1e-4f, 0.0f); /* half a quantisation step, plus fp16 scale */
	model_file_free(g);
	model_file_free(h);
}

static void test_gpt2_conv1d_transposed(void **state)
{
	(void)state;
	struct tiny_model_spec s;
	tiny_model_spec_default(&s, ARCH_GPT2);
	s.hf_shards = 2;
	struct model_file *g, *h;
	write_both(&s, "gpt2", &g, &h);
	same_hparams(&g->hp, &h->hp);
	assert_int_equal(h->hp.arch, ARCH_GPT2);
	assert_true(h->hp.tied_embeddings);
	const struct mf_tensor *ca = model_file_tensor(h, "transformer.h.0.attn.c_attn.weight");
	assert_non_null(ca);
	assert_int_equal(ca->shape[0], 3 * s.n_embd); /* (out, in) after transposition */
	assert_int_equal(ca->shape[1], s.n_embd);
	const struct mf_tensor *fc = model_file_tensor(h, "transformer.h.1.mlp.c_fc.weight");
	assert_int_equal(fc->shape[0], s.n_ff);
	assert_non_null(model_file_tensor(h, "transformer.wpe.weight"));
	assert_non_null(model_file_tensor(g, "transformer.ln_f.bias"));
	compare_all(&s, g, h, 0.0f, 0.0f);
	model_file_free(g);
	model_file_free(h);
}

static void test_tokenizers_agree(void **state)
{
	(void)state;
	struct tiny_model_spec s;
	tiny_model_spec_default(&s, ARCH_LLAMA);
	struct model_file *g, *h;
	write_both(&s, "tok", &g, &h);
	struct diag d;
	diag_init(&d);
	struct tokenizer *tg, *th;
	assert_int_equal(tokenizer_from_model_file(&tg, g, &d), 0);
	assert_int_equal(tokenizer_from_model_file(&th, h, &d), 0);
	assert_int_equal(tokenizer_n_vocab(tg), TINY_N_VOCAB);
	assert_int_equal(tokenizer_n_vocab(th), TINY_N_VOCAB);
	assert_int_equal(tokenizer_bos(th), 1);
	assert_int_equal(tokenizer_eos(th), 2);
	assert_int_equal(tokenizer_pad(th), 0);
	assert_int_equal(tokenizer_eos(tg), 2);
	assert_string_equal(tokenizer_chat_template(tg), tokenizer_chat_template(th));
	const char *texts[] = {"the thing is singing in the rain", "<|im_start|>user\nhello<|im_end|>",
			       " the  the\tthe\n", "ünïcode 😀 12345", ""};
	for (size_t i = 0; i < FT_ARRAY_LEN(texts); i++) {
		int32_t *a, *b;
		size_t na, nb;
		assert_int_equal(tokenizer_encode(tg, texts[i], strlen(texts[i]), true, &a, &na, &d), 0);
		assert_int_equal(tokenizer_encode(th, texts[i], strlen(texts[i]), true, &b, &nb, &d), 0);
		assert_int_equal(na, nb);
		assert_memory_equal(a, b, na * sizeof *a);
		char *back;
		size_t bl;
		assert_int_equal(tokenizer_decode(th, b, nb, false, &back, &bl), 0);
		assert_string_equal(back, texts[i]);
		free(back);
		free(a);
		free(b);
	}
	/* " the" is one merged token (Ġ t, h e, Ġt he) */
	int32_t *ids;
	size_t n;
	assert_int_equal(tokenizer_encode(tg, " the", 4, false, &ids, &n, &d), 0);
	assert_int_equal(n, 1);
	assert_int_equal(ids[0], tokenizer_token_id(tg, "\xc4\xa0the"));
	free(ids);
	tokenizer_free(tg);
	tokenizer_free(th);
	model_file_free(g);
	model_file_free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_llama_gguf_equals_hf),
		cmocka_unit_test(test_gemma3_gguf_equals_hf),
		cmocka_unit_test(test_llama_tied_bias_sharded_bf16),
		cmocka_unit_test(test_gguf_q8_0_weights),
		cmocka_unit_test(test_gpt2_conv1d_transposed),
		cmocka_unit_test(test_tokenizers_agree),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
