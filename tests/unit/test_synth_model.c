/* Random models in a config's shape (io/model_random.h) and `ftlab synth-model`: every
 * tensor the engine needs for llama, Qwen2-style biases and GPT-2 (model_create accepts
 * them and the untrained loss is near ln V), the weights' statistics (uniform, the
 * asked standard deviation, norms 1, biases 0), determinism (same seed, same bits; another
 * seed, other bits; a fixed sha256 for the tiny config, so another machine or compiler
 * that changed the bits would fail here), and the command: the written directory loads
 * back with the same hyperparameters and weights, the printed sha256 is the file's, and
 * bad input (missing config or tokenizer, a tokenizer larger than vocab_size, bad
 * options) is exit 2 naming the problem. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "backends/native/io/model_file.h"
#include "backends/native/io/model_random.h"
#include "backends/native/model/model.h"
#include "backends/native/ops/ops_quant.h"
#include "backends/native/tok/tokenizer.h"
#include "common/hash.h"
#include "common/util.h"
#include "tests/unit/scratch.h"
#include "common/banned.h"

/* The tiny config of the GPU check (bench/shapes/tiny-smollm2-vocab.json) and seed 1 give
 * this model.safetensors on every machine. */
#define TINY_SHA256 "a8d95f59b97ddc915405dcb9c327eb57423735f297de3d04cf881b889570485e"

static struct model_hparams small_llama(void)
{
	struct model_hparams hp;
	memset(&hp, 0, sizeof hp);
	hp.arch = ARCH_LLAMA;
	hp.n_layer = 2;
	hp.n_embd = 32;
	hp.n_head = 4;
	hp.n_head_kv = 2;
	hp.head_dim = 8;
	hp.n_ff = 48;
	hp.n_vocab = 300;
	hp.n_ctx_train = 64;
	hp.norm_eps = 1e-5f;
	hp.rope_theta = 10000.0f;
	hp.rope_style = ROPE_HALF;
	hp.tied_embeddings = true;
	return hp;
}

/* Builds the model on the CPU and returns the loss of one forward on fixed tokens. */
static float loss_of(const struct model_file *mf)
{
	struct model_opts o;
	memset(&o, 0, sizeof o);
	o.method = METHOD_FULL;
	o.layers_first = o.layers_last = -1;
	o.max_batch = 2;
	o.max_seq = 8;
	o.seed = 1;
	struct diag d;
	diag_init(&d);
	struct model *m = NULL;
	if (model_create(&m, mf, &o, &d) != 0)
		fail_msg("model_create: %s", d.text);
	int32_t tok[16], tgt[16];
	for (int i = 0; i < 16; i++) {
		tok[i] = (int32_t)((i * 37 + 5) % mf->hp.n_vocab);
		tgt[i] = (int32_t)((i * 53 + 11) % mf->hp.n_vocab);
	}
	float loss = 0;
	assert_int_equal(model_forward(m, tok, tgt, 2, 8, &loss, NULL), 0);
	model_free(m);
	return loss;
}

static void test_shapes_for_the_engine(void **state)
{
	(void)state;
	struct diag d;
	diag_init(&d);
	struct model_hparams hps[3] = {small_llama(), small_llama(), small_llama()};
	hps[1].qkv_bias = true; /* Qwen2 style, untied head */
	hps[1].tied_embeddings = false;
	hps[2].arch = ARCH_GPT2;
	hps[2].n_head_kv = 4;
	hps[2].rope_style = ROPE_NONE;
	hps[2].tied_embeddings = true;
	size_t want[3] = {1 + 2 * 9 + 1, 1 + 2 * 12 + 1 + 1, 2 + 2 * 12 + 2};
	for (int k = 0; k < 3; k++) {
		struct model_file *mf = NULL;
		assert_int_equal(model_file_random(&mf, &hps[k], 3, 0.02f, "synthetic", &d), 0);
		assert_int_equal(mf->n_tensors, want[k]);
		float l = loss_of(mf);
		/* random small weights: near-uniform predictions, loss near ln V */
		assert_true(fabsf(l - logf(300.0f)) < 0.05f);
		model_file_free(mf);
	}
	/* a shape the engine refuses is refused here too */
	struct model_hparams bad = small_llama();
	bad.n_head_kv = 3;
	struct model_file *mf = NULL;
	diag_init(&d);
	assert_int_equal(model_file_random(&mf, &bad, 1, 0.02f, "synthetic", &d), FT_EINVAL);
	assert_null(mf);
	assert_non_null(strstr(d.text, "cannot make a model of this shape"));
	diag_init(&d);
	struct model_hparams ok = small_llama();
	assert_int_equal(model_file_random(&mf, &ok, 1, 0.0f, "synthetic", &d), FT_EINVAL);
	assert_non_null(strstr(d.text, "standard deviation"));
}

static void test_statistics_and_determinism(void **state)
{
	(void)state;
	struct diag d;
	diag_init(&d);
	struct model_hparams hp = small_llama();
	struct model_file *a = NULL, *b = NULL, *c = NULL;
	assert_int_equal(model_file_random(&a, &hp, 7, 0.05f, "synthetic", &d), 0);
	assert_int_equal(model_file_random(&b, &hp, 7, 0.05f, "synthetic", &d), 0);
	assert_int_equal(model_file_random(&c, &hp, 8, 0.05f, "synthetic", &d), 0);
	for (size_t i = 0; i < a->n_tensors; i++) {
		const struct mf_tensor *t = &a->tensors[i];
		assert_string_equal(t->name, b->tensors[i].name);
		assert_memory_equal(t->data, b->tensors[i].data, t->numel * sizeof(float));
		if (strstr(t->name, "norm")) {
			for (size_t j = 0; j < t->numel; j++)
				assert_true(t->data[j] == 1.0f);
			continue;
		}
		assert_memory_not_equal(t->data, c->tensors[i].data, t->numel * sizeof(float));
		double s = 0, s2 = 0, mx = 0;
		for (size_t j = 0; j < t->numel; j++) {
			s += t->data[j];
			s2 += (double)t->data[j] * t->data[j];
			mx = fmax(mx, fabs(t->data[j]));
		}
		double mean = s / (double)t->numel, sd = sqrt(s2 / (double)t->numel - mean * mean);
		if (t->numel >= 9000) { /* the embedding (300 x 32) */
			assert_true(fabs(mean) < 0.003);
			assert_true(fabs(sd - 0.05) < 0.002);
		}
		assert_true(mx <= 0.05 * sqrt(3.0) + 1e-6); /* uniform: bounded */
	}
	model_file_free(a);
	model_file_free(b);
	model_file_free(c);
}

static int run_ftlab(char *out, size_t out_len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int run_ftlab(char *out, size_t out_len, const char *fmt, ...)
{
	char args[4096], cmd[5000];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(args, sizeof args, fmt, ap);
	va_end(ap);
	snprintf(cmd, sizeof cmd, "'%s' %s 2>&1", getenv("FTLAB_BIN"), args);
	FILE *f = popen(cmd, "r");
	assert_non_null(f);
	size_t n = fread(out, 1, out_len - 1, f);
	out[n] = '\0';
	int st = pclose(f);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_command(void **state)
{
	(void)state;
	const char *root = getenv("FTLAB_ROOT");
	if (!root || !getenv("FTLAB_BIN"))
		skip();
	const char *sd = scratch_open("synth");
	char cfg[1200], tok[1200], dir[1200], out[8192];
	snprintf(cfg, sizeof cfg, "%s/bench/shapes/tiny-smollm2-vocab.json", root);
	snprintf(tok, sizeof tok, "%s/tests/reference/smollm2_tokenizer.json", root);
	snprintf(dir, sizeof dir, "%s/m", sd);
	int rc = run_ftlab(out, sizeof out, "synth-model '%s' --tokenizer '%s' -o '%s'", cfg, tok,
			   dir);
	if (rc != 0)
		fail_msg("synth-model: exit %d: %s", rc, out);
	assert_non_null(strstr(out, "llama, 2 layers, hidden 64, heads 4/2, ff 128, vocab 49152"));
	char want[128];
	snprintf(want, sizeof want, "model.safetensors sha256 %s\n", TINY_SHA256);
	assert_non_null(strstr(out, want));
	char hex[65], *st = path_join(dir, "model.safetensors");
	struct diag d;
	diag_init(&d);
	assert_int_equal(sha256_file_hex(hex, st, &d), 0);
	assert_string_equal(hex, TINY_SHA256);
	free(st);
	/* loads back: the config's hyperparameters, the random weights bit for bit */
	struct model_file *mf = NULL, *ref = NULL;
	assert_int_equal(model_file_load(&mf, dir, &d), 0);
	assert_int_equal(mf->hp.n_layer, 2);
	assert_int_equal(mf->hp.n_embd, 64);
	assert_int_equal(mf->hp.n_head_kv, 2);
	assert_int_equal(mf->hp.n_vocab, 49152);
	assert_true(mf->hp.tied_embeddings);
	assert_true(fabsf(mf->hp.rope_theta - 100000.0f) < 1e-2f);
	assert_int_equal(model_file_random(&ref, &mf->hp, 1, 0.02f, "ref", &d), 0);
	assert_int_equal(mf->n_tensors, ref->n_tensors);
	for (size_t i = 0; i < ref->n_tensors; i++) {
		const struct mf_tensor *t = model_file_tensor(mf, ref->tensors[i].name);
		assert_non_null(t);
		assert_int_equal(t->numel, ref->tensors[i].numel);
		/* loaded tensors keep the file's bytes (F32 here) unless converted */
		const void *got = t->data ? (const void *)t->data : t->raw;
		const struct mf_tensor *rt = &ref->tensors[i];
		const void *want_v = rt->data ? (const void *)rt->data : rt->raw;
		assert_true(t->data || t->type == GGML_F32);
		assert_memory_equal(got, want_v, t->numel * sizeof(float));
	}
	/* the tokenizer came along and works */
	struct tokenizer *tk = NULL;
	assert_int_equal(tokenizer_from_model_file(&tk, mf, &d), 0);
	int32_t *ids = NULL;
	size_t n = 0;
	assert_int_equal(tokenizer_encode(tk, "Hello world", 11, false, &ids, &n, &d), 0);
	assert_int_equal(n, 2);
	free(ids);
	tokenizer_free(tk);
	model_file_free(mf);
	model_file_free(ref);
	/* another seed: another model; a directory as CONFIG (its tokenizer.json beside) */
	rc = run_ftlab(out, sizeof out, "synth-model '%s' -o '%s/m2' --seed 2 --std 0.1", dir,
		       sd);
	if (rc != 0)
		fail_msg("synth-model from a directory: exit %d: %s", rc, out);
	assert_null(strstr(out, TINY_SHA256));
	/* bad input */
	rc = run_ftlab(out, sizeof out, "synth-model '%s/nope.json' --tokenizer '%s' -o '%s/x'",
		       sd, tok, sd);
	assert_int_equal(rc, 2);
	assert_non_null(strstr(out, "nope.json: error: no such file"));
	rc = run_ftlab(out, sizeof out, "synth-model '%s' -o '%s/x'", cfg, sd);
	assert_int_equal(rc, 2); /* bench/shapes has no tokenizer.json */
	assert_non_null(strstr(out, "no tokenizer.json"));
	scratch_put("small.json",
		    "{\"model_type\": \"llama\", \"hidden_size\": 16, \"intermediate_size\": 32,"
		    " \"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"vocab_size\": 1000}");
	rc = run_ftlab(out, sizeof out, "synth-model '%s/small.json' --tokenizer '%s' -o '%s/x'",
		       sd, tok, sd);
	assert_int_equal(rc, 2);
	assert_non_null(strstr(out, "the tokenizer has 49152 tokens but the config's vocab_size "
				    "is 1000"));
	rc = run_ftlab(out, sizeof out, "synth-model '%s' -o '%s/x' --std 2", cfg, sd);
	assert_int_equal(rc, 2);
	assert_non_null(strstr(out, "--std expects a number in (0, 1]"));
	rc = run_ftlab(out, sizeof out, "synth-model '%s' --tokenizer '%s'", cfg, tok);
	assert_int_equal(rc, 2);
	assert_non_null(strstr(out, "missing -o DIR"));
	rc = run_ftlab(out, sizeof out, "synth-model '%s' -o x --layers 3", cfg);
	assert_int_equal(rc, 2);
	assert_non_null(strstr(out, "unknown option '--layers'"));
	assert_int_equal(scratch_close(), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_shapes_for_the_engine),
		cmocka_unit_test(test_statistics_and_determinism),
		cmocka_unit_test(test_command),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
