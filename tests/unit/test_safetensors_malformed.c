/* Every malformed-safetensors rule (header length, JSON, UTF-8, duplicate keys, dtypes,
 * sizes, holes and overlaps) and malformed Hugging Face directories, table-driven with the
 * expected message; plus every truncation of a valid file. */
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
#include "tests/unit/tiny_model.h"
#include "common/banned.h"

/* An image: 8-byte length, the header text, then data_len bytes; hlen_override when != 0. */
static uint8_t *image(const char *header, size_t header_len, size_t data_len,
		      uint64_t hlen_override, size_t *out_n)
{
	size_t n = 8 + header_len + data_len;
	uint8_t *b = calloc(1, n);
	uint64_t h = hlen_override ? hlen_override : header_len;
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(h >> (8 * i));
	memcpy(b + 8, header, header_len);
	*out_n = n;
	return b;
}

static int load(const uint8_t *buf, size_t n, struct diag *d)
{
	struct model_file *m = calloc(1, sizeof *m);
	diag_init(d);
	int rc = safetensors_load_buffer(m, buf, n, "m.safetensors", d);
	model_file_free(m);
	return rc;
}

#define GOOD "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}," \
	     "\"b\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[16,24]}}"

static void test_valid(void **state)
{
	(void)state;
	size_t n;
	uint8_t *b = image(GOOD, strlen(GOOD), 24, 0, &n);
	struct diag d;
	struct model_file *m = calloc(1, sizeof *m);
	diag_init(&d);
	assert_int_equal(safetensors_load_buffer(m, b, n, "m.safetensors", &d), 0);
	assert_int_equal(m->n_tensors, 2);
	model_file_free(m);
	for (size_t k = 0; k < n; k++) { /* every truncation is refused */
		uint8_t *cut = malloc(k ? k : 1);
		memcpy(cut, b, k);
		assert_int_equal(load(cut, k, &d), FT_EINVAL);
		free(cut);
	}
	free(b);
}

struct scase {
	const char *name, *header;
	size_t data_len;
	uint64_t hlen;
	const char *want;
};

static void test_rules(void **state)
{
	(void)state;
	const struct scase cases[] = {
		{"header too long", GOOD, 24, 100000001ull, "exceeds the limit of 100000000 bytes"},
		{"header beyond file", GOOD, 24, 100000, "is beyond the end of the file"},
		{"not an object", "[1,2]", 0, 0, "does not start with '{'"},
		{"leading space", " {}", 0, 0, "does not start with '{'"},
		{"bad json", "{\"a\":", 0, 0, "safetensors header:"},
		{"invalid utf-8", "{\"a\xff\":{}}", 0, 0, "safetensors header:"},
		{"duplicate keys",
		 "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
		 "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, 0, "duplicate object key"},
		{"unknown dtype", "{\"a\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8, 0,
		 "dtype 'I64' is not supported"},
		{"missing dtype", "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, 0, "needs \"dtype\""},
		{"size mismatch", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, 0,
		 "data_offsets span 4 bytes, shape and dtype need 8"},
		{"negative dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, 0,
		 "shape[0] is not a non-negative integer"},
		{"five dims", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, 0,
		 "5 dimensions (at most 4)"},
		{"numel overflow",
		 "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,4]}}",
		 4, 0, "element count overflows"},
		{"reversed offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8, 0,
		 "are not [begin, end]"},
		{"hole", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, 0,
		 "hole in the data before offset 4"},
		{"overlap",
		 "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
		 "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, 0, "overlaps the previous tensor"},
		{"data past end", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, 0,
		 "covers 16 bytes but the file holds 8"},
		{"trailing bytes", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 12, 0,
		 "covers 4 bytes but the file holds 12"},
		{"metadata not object", "{\"__metadata__\":[1]}", 0, 0, "__metadata__ is not an object"},
		{"entry not object", "{\"a\":3}", 0, 0, "needs \"dtype\""},
	};
	for (size_t i = 0; i < FT_ARRAY_LEN(cases); i++) {
		size_t n;
		uint8_t *b = image(cases[i].header, strlen(cases[i].header), cases[i].data_len,
				   cases[i].hlen, &n);
		struct diag d;
		int rc = load(b, n, &d);
		if (rc != FT_EINVAL || !strstr(d.text, cases[i].want)) {
			fprintf(stderr, "case '%s': rc %d '%s', want '%s'\n", cases[i].name, rc, d.text,
				cases[i].want);
			fail();
		}
		assert_string_equal(d.file, "m.safetensors");
		free(b);
	}
	struct diag d;
	assert_int_equal(load((const uint8_t *)"1234", 4, &d), FT_EINVAL);
	assert_non_null(strstr(d.text, "no header length"));
}

/* Malformed HF directories, built from a valid tiny one. */
static void write_text(const char *dir, const char *name, const char *text)
{
	struct diag d;
	diag_init(&d);
	char *p = path_join(dir, name);
	assert_int_equal(file_write_atomic(p, text, strlen(text), &d), 0);
	free(p);
}

static void expect_dir_error(const char *dir, int code, const char *want)
{
	struct diag d;
	diag_init(&d);
	struct model_file *m;
	int rc = model_file_load(&m, dir, &d);
	if (rc != code || !strstr(d.text, want)) {
		fprintf(stderr, "dir %s: rc %d '%s' (%s:%d:%d), want '%s'\n", dir, rc, d.text, d.file,
			d.line, d.col, want);
		fail();
	}
	assert_null(m);
}

static void test_hf_dirs(void **state)
{
	(void)state;
	char tmp[] = "/tmp/ftlab-hfbad-XXXXXX";
	assert_non_null(mkdtemp(tmp));
	struct tiny_model_spec s;
	tiny_model_spec_default(&s, ARCH_LLAMA);
	s.hf_shards = 2;
	struct diag d;
	diag_init(&d);
	assert_int_equal(tiny_model_write_hf(tmp, &s, &d), 0);
	char *idx = path_join(tmp, "model.safetensors.index.json");
	char *text;
	assert_int_equal(file_read_all(&text, NULL, idx, 1 << 20, &d), 0);
	/* config errors, with line and column for syntax */
	write_text(tmp, "config.json", "{\n  \"model_type\": \"llama\",\n  oops\n}");
	expect_dir_error(tmp, FT_EINVAL, "expected near 'oops'");
	diag_init(&d);
	struct model_file *m;
	assert_int_equal(model_file_load(&m, tmp, &d), FT_EINVAL);
	assert_int_equal(d.line, 3);
	assert_int_equal(d.col, 6);
	assert_non_null(strstr(d.file, "config.json"));
	write_text(tmp, "config.json", "{\"model_type\": \"bert\"}");
	expect_dir_error(tmp, FT_EUNSUPP, "model_type 'bert' is not supported");
	write_text(tmp, "config.json", "{\"model_type\": \"llama\", \"model_type\": \"gpt2\"}");
	expect_dir_error(tmp, FT_EINVAL, "duplicate object key");
	write_text(tmp, "config.json", "{\"model_type\": \"llama\", \"hidden_size\": 64}");
	expect_dir_error(tmp, FT_EINVAL, "'num_hidden_layers' is missing");
	write_text(tmp, "config.json",
		   "{\"model_type\": \"llama\", \"num_hidden_layers\": 2, \"hidden_size\": 64, "
		   "\"num_attention_heads\": 5, \"intermediate_size\": 128, \"vocab_size\": 271}");
	expect_dir_error(tmp, FT_EINVAL, "inconsistent heads");
	write_text(tmp, "config.json",
		   "{\"model_type\": \"llama\", \"num_hidden_layers\": 2, \"hidden_size\": 64, "
		   "\"num_attention_heads\": 4, \"intermediate_size\": 128, \"vocab_size\": 271, "
		   "\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4}}");
	expect_dir_error(tmp, FT_EUNSUPP, "rope_scaling type 'yarn' is not supported");
	write_text(tmp, "config.json",
		   "{\"model_type\": \"llama\", \"num_hidden_layers\": 2, \"hidden_size\": 64, "
		   "\"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"intermediate_size\": 128, "
		   "\"vocab_size\": 271}");
	assert_int_equal(model_file_load(&m, tmp, &d), 0); /* valid again */
	model_file_free(m);
	/* index errors */
	write_text(tmp, "model.safetensors.index.json",
		   "{\"weight_map\": {\"model.norm.weight\": \"../evil.safetensors\"}}");
	expect_dir_error(tmp, FT_EINVAL, "shard must be a plain *.safetensors file name");
	write_text(tmp, "model.safetensors.index.json",
		   "{\"weight_map\": {\"model.layers.0.input_layernorm.weight\": \"model-00001-of-00002.safetensors\", "
		   "\"model.extra.weight\": \"model-00001-of-00002.safetensors\"}}");
	expect_dir_error(tmp, FT_EINVAL, "weight_map lists 'model.extra.weight'");
	write_text(tmp, "model.safetensors.index.json", "{\"weight_map\": {}}");
	expect_dir_error(tmp, FT_EINVAL, "'weight_map' is missing or empty");
	write_text(tmp, "model.safetensors.index.json",
		   "{\"weight_map\": {\"model.norm.weight\": \"missing.safetensors\"}}");
	expect_dir_error(tmp, FT_EINVAL, "cannot open weights");
	/* a shard twice under two names holds the same tensors twice */
	char *s1 = path_join(tmp, "model-00001-of-00002.safetensors");
	char *s3 = path_join(tmp, "copy.safetensors");
	char *data;
	size_t len;
	assert_int_equal(file_read_all(&data, &len, s1, 1 << 24, &d), 0);
	assert_int_equal(file_write_atomic(s3, data, len, &d), 0);
	write_text(tmp, "model.safetensors.index.json",
		   "{\"weight_map\": {\"model.layers.0.input_layernorm.weight\": \"model-00001-of-00002.safetensors\", "
		   "\"model.embed_tokens.weight\": \"copy.safetensors\"}}");
	expect_dir_error(tmp, FT_EINVAL, "is stored twice");
	write_text(tmp, "model.safetensors.index.json", text);
	assert_int_equal(model_file_load(&m, tmp, &d), 0);
	model_file_free(m);
	/* no weights at all */
	unlink(idx);
	expect_dir_error(tmp, FT_EINVAL, "no model.safetensors or model.safetensors.index.json");
	/* a lone safetensors file */
	expect_dir_error(s1, FT_EINVAL, "a safetensors file alone has no config");
	free(data);
	free(s1);
	free(s3);
	free(text);
	free(idx);
	assert_int_equal(dir_remove_all(tmp), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid),
		cmocka_unit_test(test_rules),
		cmocka_unit_test(test_hf_dirs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
