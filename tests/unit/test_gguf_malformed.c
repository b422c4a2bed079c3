/* Every malformed-GGUF rule of docs/engine.md ("Untrusted model files"), table-driven: a valid tiny image is built
 * with one field broken per case and the loader must refuse it with the expected message
 * (never crash, never allocate what the file claims). Also every truncation of the file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/native/io/io_internal.h"
#include "common/util.h"
#include "common/banned.h"

/* Knobs of the tiny image; zero means "as in the valid file". */
struct spec {
	uint32_t magic, version;
	uint64_t n_tensors, n_kv;         /* header counts */
	uint64_t key0_len;                /* length claimed by the first key */
	uint32_t arch_vtype;              /* value type of general.architecture */
	const char *arch;
	uint64_t tokens_count;            /* claimed count of tokenizer.ggml.tokens */
	uint32_t tokens_elem;             /* element type of that array */
	uint32_t align_vtype;             /* type of general.alignment (4 = u32) */
	uint64_t align;
	bool dup_key, dup_tensor, no_arch, key_nul, scores_i32, type_u32, block_count_f32;
	uint32_t bos;                     /* tokenizer.ggml.bos_token_id (0 = absent) */
	uint32_t n_dims0;                 /* dims of token_embd */
	uint64_t ne0[4];                  /* its dims */
	uint32_t type0;                   /* its GGML type */
	uint64_t off1;                    /* offset of output_norm (valid: 512) */
	bool off1_set;
	uint64_t embd;                    /* llama.embedding_length (valid: 32) */
	const char *name1;                /* name of the second tensor */
};

struct wb {
	struct strbuf sb;
};
static void put(struct wb *w, const void *p, size_t n)
{
	assert_int_equal(strbuf_append(&w->sb, p, n), 0);
}
static void u32(struct wb *w, uint32_t v)
{
	uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
	put(w, b, 4);
}
static void u64(struct wb *w, uint64_t v)
{
	u32(w, (uint32_t)v);
	u32(w, (uint32_t)(v >> 32));
}
static void str(struct wb *w, const char *s)
{
	u64(w, strlen(s));
	put(w, s, strlen(s));
}
static void kv_u32(struct wb *w, const char *k, uint32_t v)
{
	str(w, k);
	u32(w, 4);
	u32(w, v);
}

/* Builds the image: 2 tensors (token_embd 32x4 F32 at 0, output_norm 32 F32 at 512). */
static uint8_t *build(const struct spec *s, size_t *out_n)
{
	struct wb w = {0};
	uint64_t nkv = 11 + (s->dup_key ? 1 : 0) - (s->no_arch ? 1 : 0) + (s->scores_i32 ? 1 : 0) +
		       (s->type_u32 ? 1 : 0) + (s->bos ? 1 : 0);
	u32(&w, s->magic ? s->magic : 0x46554747u);
	u32(&w, s->version ? s->version : 3);
	u64(&w, s->n_tensors ? s->n_tensors : 2);
	u64(&w, s->n_kv ? s->n_kv : nkv);
	if (!s->no_arch) {
		const char *k = s->key_nul ? "general.arch\0tecture" : "general.architecture";
		u64(&w, s->key0_len ? s->key0_len : 20);
		put(&w, k, 20);
		u32(&w, s->arch_vtype ? s->arch_vtype : 8);
		if (s->arch_vtype == 4)
			u32(&w, 7);
		else
			str(&w, s->arch ? s->arch : "llama");
	}
	kv_u32(&w, "llama.block_count", 1);
	kv_u32(&w, "llama.context_length", 8);
	kv_u32(&w, "llama.embedding_length", s->embd ? (uint32_t)s->embd : 32);
	if (s->block_count_f32) {
		str(&w, "llama.feed_forward_length");
		u32(&w, 6);
		u32(&w, 0x42000000u); /* 32.0f */
	} else {
		kv_u32(&w, "llama.feed_forward_length", 32);
	}
	kv_u32(&w, "llama.attention.head_count", 2);
	str(&w, "general.alignment");
	u32(&w, s->align_vtype ? s->align_vtype : 4);
	if ((s->align_vtype ? s->align_vtype : 4) == 8)
		str(&w, "32");
	else
		u32(&w, (uint32_t)(s->align ? s->align : 32));
	str(&w, "tokenizer.ggml.model");
	u32(&w, 8);
	str(&w, "gpt2");
	str(&w, "tokenizer.ggml.tokens");
	u32(&w, 9);
	u32(&w, s->tokens_elem ? s->tokens_elem : 8);
	u64(&w, s->tokens_count ? s->tokens_count : 4);
	str(&w, "a");
	str(&w, "b");
	str(&w, "c");
	str(&w, "ab");
	str(&w, "tokenizer.ggml.merges");
	u32(&w, 9);
	u32(&w, 8);
	u64(&w, 1);
	str(&w, "a b");
	if (s->dup_key)
		kv_u32(&w, "llama.block_count", 2);
	if (s->scores_i32) {
		str(&w, "tokenizer.ggml.scores");
		u32(&w, 9);
		u32(&w, 5); /* i32: a score array must be f32 */
		u64(&w, 4);
		for (int i = 0; i < 4; i++)
			u32(&w, 0);
	}
	if (s->type_u32) {
		str(&w, "tokenizer.ggml.token_type");
		u32(&w, 9);
		u32(&w, 4); /* u32 instead of i32 */
		u64(&w, 4);
		for (int i = 0; i < 4; i++)
			u32(&w, 1);
	}
	if (s->bos)
		kv_u32(&w, "tokenizer.ggml.bos_token_id", s->bos);
	kv_u32(&w, "tokenizer.ggml.eos_token_id", 3);
	/* tensor infos */
	str(&w, "token_embd.weight");
	uint32_t nd = s->n_dims0 ? s->n_dims0 : 2;
	u32(&w, nd);
	for (uint32_t i = 0; i < nd && i < 8; i++)
		u64(&w, !s->n_dims0 ? (i == 0 ? 32 : 4) : i < 4 ? s->ne0[i] : 1);
	u32(&w, s->type0);
	u64(&w, 0);
	str(&w, s->dup_tensor ? "token_embd.weight" : s->name1 ? s->name1 : "output_norm.weight");
	u32(&w, 1);
	u64(&w, 32);
	u32(&w, 0);
	u64(&w, s->off1_set ? s->off1 : 512);
	static const uint8_t zero[64];
	put(&w, zero, (32 - w.sb.len % 32) % 32);
	float vals[160];
	for (int i = 0; i < 160; i++)
		vals[i] = (float)i * 0.25f;
	put(&w, vals, sizeof vals);
	*out_n = w.sb.len;
	return (uint8_t *)strbuf_detach(&w.sb);
}

static int load(const uint8_t *buf, size_t n, struct diag *d)
{
	struct model_file *m = calloc(1, sizeof *m);
	m->path = ft_strdup("t.gguf");
	diag_init(d);
	int rc = gguf_load_buffer(m, buf, n, "t.gguf", d);
	model_file_free(m);
	return rc;
}

static void test_valid_baseline(void **state)
{
	(void)state;
	struct spec s = {0};
	size_t n;
	uint8_t *buf = build(&s, &n);
	struct diag d;
	int rc = load(buf, n, &d);
	if (rc)
		diag_print(&d, stderr);
	assert_int_equal(rc, 0);
	free(buf);
}

struct mcase {
	const char *name;
	struct spec s;
	const char *want; /* substring of the message */
};

static void test_rules(void **state)
{
	(void)state;
	const struct mcase cases[] = {
		{"bad magic", {.magic = 0x46554746u}, "not a GGUF file (bad magic)"},
		{"version 1", {.version = 1}, "GGUF version 1 is not supported"},
		{"version 4", {.version = 4}, "GGUF version 4 is not supported"},
		{"huge tensor count", {.n_tensors = 1ull << 60}, "tensor count 1152921504606846976"},
		{"huge kv count", {.n_kv = 1ull << 62}, "exceeds what the"},
		{"kv count beyond data", {.n_kv = 40}, "metadata key at offset"},
		{"huge string length", {.key0_len = 1ull << 62}, "string length 4611686018427387904 exceeds"},
		{"string length past end", {.key0_len = 100000}, "exceeds the"},
		{"NUL in key", {.key_nul = true}, "containing NUL"},
		{"unknown value type", {.arch_vtype = 13}, "unknown value type 13"},
		{"huge array count", {.tokens_count = 1ull << 40}, "array count 1099511627776 exceeds"},
		{"array count past end", {.tokens_count = 1000}, "array count 1000 exceeds the"},
		{"array walks past end", {.tokens_count = 60}, "tokenizer.ggml.tokens at offset"},
		{"invalid array type", {.tokens_elem = 77}, "invalid array element type 77"},
		{"nested array", {.tokens_elem = 9}, "invalid array element type 9"},
		{"alignment zero", {.align = 0xffffffffu}, "general.alignment' = 4294967295 is outside"},
		{"alignment not power of 2", {.align = 48}, "general.alignment 48 is not a power of two"},
		{"alignment too large", {.align = 1u << 30}, "is outside [1, 1048576]"},
		{"alignment wrong type", {.align_vtype = 8}, "'general.alignment' has type string, expected an integer"},
		{"five dims", {.n_dims0 = 5, .ne0 = {32, 1, 1, 1}}, "5 dimensions (1 to 4 allowed)"},
		{"zero dims", {.n_dims0 = 0xffffffffu}, "dimensions (1 to 4 allowed)"},
		{"zero dim", {.n_dims0 = 2, .ne0 = {32, 0}}, "dimension 1 is 0"},
		{"element count overflow", {.n_dims0 = 3, .ne0 = {1ull << 32, 1ull << 32, 1ull << 8}},
		 "element count overflows"},
		{"byte size overflow", {.n_dims0 = 2, .ne0 = {1ull << 32, 1ull << 30}}, "overflows"},
		{"unknown type", {.type0 = 99}, "unsupported type 99 (?)"},
		{"unsupported type", {.type0 = 10}, "unsupported type 10 (Q2_K)"},
		{"row not multiple of block", {.type0 = 8, .n_dims0 = 2, .ne0 = {33, 4}},
		 "row length 33 is not a multiple of the Q8_0 block size 32"},
		{"unaligned offset", {.off1 = 516, .off1_set = true}, "offset 516 is not aligned to 32"},
		{"data outside file", {.off1 = 1u << 20, .off1_set = true}, "lies outside the 640 data bytes"},
		{"offset overflow", {.off1 = UINT64_MAX - 31, .off1_set = true}, "lies outside"},
		{"overlap", {.off1 = 256, .off1_set = true}, "overlap"},
		{"tensor past end", {.n_dims0 = 2, .ne0 = {32, 6}}, "data [0, +768) lies outside"},
		{"duplicate key", {.dup_key = true}, "duplicate metadata key 'llama.block_count'"},
		{"duplicate tensor", {.dup_tensor = true}, "duplicate tensor 'token_embd.weight'"},
		{"scores not f32", {.scores_i32 = true}, "'tokenizer.ggml.scores' has type array of i32, expected array of f32"},
		{"token_type not i32", {.type_u32 = true}, "expected array of i32"},
		{"int metadata as float", {.block_count_f32 = true}, "'llama.feed_forward_length' has type f32, expected an integer"},
		{"no architecture", {.no_arch = true}, "'general.architecture' is missing"},
		{"architecture wrong type", {.arch_vtype = 4}, "has type u32, expected string"},
		{"unsupported architecture", {.arch = "mamba"}, "general.architecture 'mamba' is not supported"},
		{"bos outside vocabulary", {.bos = 4}, "bos_token_id' = 4 is not a token id"},
		{"rope_freqs", {.name1 = "rope_freqs.weight"}, "'rope_freqs.weight' (RoPE frequency factors) is not supported"},
		{"embedding width mismatch", {.embd = 64}, "token_embd.weight has width 32, embedding_length is 64"},
	};
	for (size_t i = 0; i < FT_ARRAY_LEN(cases); i++) {
		size_t n;
		uint8_t *buf = build(&cases[i].s, &n);
		struct diag d;
		int rc = load(buf, n, &d);
		if (rc == 0 || !strstr(d.text, cases[i].want)) {
			fprintf(stderr, "case '%s': rc %d, message '%s', want '%s'\n", cases[i].name, rc,
				d.text, cases[i].want);
			fail();
		}
		assert_true(rc == FT_EINVAL || rc == FT_EUNSUPP);
		assert_string_equal(d.file, "t.gguf");
		free(buf);
	}
}

static void test_every_truncation(void **state)
{
	(void)state;
	struct spec s = {0};
	size_t n;
	uint8_t *buf = build(&s, &n);
	for (size_t k = 0; k < n; k++) {
		uint8_t *cut = malloc(k ? k : 1); /* exact size, so ASan sees any over-read */
		memcpy(cut, buf, k);
		struct diag d;
		int rc = load(cut, k, &d);
		if (rc != FT_EINVAL || !d.text[0]) {
			fprintf(stderr, "truncation at %zu of %zu: rc %d '%s'\n", k, n, rc, d.text);
			fail();
		}
		free(cut);
	}
	free(buf);
}

static void test_file_errors_name_the_file(void **state)
{
	(void)state;
	char path[] = "/tmp/ftlab-gguf-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "GGUF\x03\x00\x00", 7), 7);
	close(fd);
	struct diag d;
	diag_init(&d);
	struct model_file *m;
	assert_int_equal(model_file_load(&m, path, &d), FT_EINVAL);
	assert_null(m);
	assert_string_equal(d.file, path);
	assert_non_null(strstr(d.text, "truncated GGUF: version at offset 4"));
	assert_int_equal(diag_exit_status(d.code), 2);
	unlink(path);
	diag_init(&d);
	assert_int_equal(model_file_load(&m, "/nonexistent/model.gguf", &d), FT_EINVAL);
	assert_non_null(strstr(d.text, "cannot open model"));
}

/* model_file_probe (what `ftlab check` reads) gives the hyperparameters model_file_load
 * gives, from GGUF files and Hugging Face directories, and refuses what load refuses in
 * the header (every rule case of the image above that fails before the tensors' data). */
static void test_probe_matches_load(void **state)
{
	(void)state;
	static const char *const models[] = {
		"tests/reference/fixtures/tiny-llama.gguf", "tests/reference/fixtures/tiny-gpt2.gguf",
		"tests/reference/fixtures/tiny-llama", "tests/reference/fixtures/tiny-gpt2"};
	const char *root = getenv("FTLAB_ROOT");
	for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
		char *p = path_join(root ? root : ".", models[i]);
		struct diag d;
		diag_init(&d);
		struct model_file *m = NULL;
		struct model_hparams hp;
		assert_int_equal(model_file_load(&m, p, &d), 0);
		assert_int_equal(model_file_probe(&hp, p, &d), 0);
		const struct model_hparams *w = &m->hp;
		assert_int_equal(hp.arch, w->arch);
		assert_int_equal(hp.n_layer, w->n_layer);
		assert_int_equal(hp.n_embd, w->n_embd);
		assert_int_equal(hp.n_head, w->n_head);
		assert_int_equal(hp.n_head_kv, w->n_head_kv);
		assert_int_equal(hp.head_dim, w->head_dim);
		assert_int_equal(hp.n_ff, w->n_ff);
		assert_int_equal(hp.n_vocab, w->n_vocab);
		assert_int_equal(hp.tied_embeddings, w->tied_embeddings);
		if (m->is_gguf)
			assert_int_equal(hp.qkv_bias, w->qkv_bias);
		model_file_free(m);
		free(p);
	}
	/* A file that is not a model is refused by the probe as by the load. */
	char path[] = "/tmp/ftlab-probe-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "GGUF", 4), 4);
	close(fd);
	struct diag d;
	diag_init(&d);
	struct model_hparams hp;
	assert_int_equal(model_file_probe(&hp, path, &d), FT_EINVAL);
	assert_string_equal(d.file, path);
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_baseline),
		cmocka_unit_test(test_rules),
		cmocka_unit_test(test_every_truncation),
		cmocka_unit_test(test_file_errors_name_the_file),
		cmocka_unit_test(test_probe_matches_load),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
