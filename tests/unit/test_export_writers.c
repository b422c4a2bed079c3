/* Unit tests for the safetensors and GGUF writers: files are read back byte by byte
 * (header JSON, offsets, alignment, data) and bad input is refused. The same files were
 * also read with the Python `safetensors` and `gguf` packages
 * (tests/reference/make_train_fixture.py readback PATH...). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/native/peft/gguf_write.h"
#include "backends/native/peft/st_write.h"
#include "common/util.h"
#include "common/banned.h"

static char *tmpdir(void)
{
	char tmpl[] = "/tmp/ftlab-writers-XXXXXX";
	char *p = mkdtemp(tmpl);
	assert_non_null(p);
	return ft_strdup(p);
}

static uint64_t le64(const unsigned char *p)
{
	uint64_t v = 0;
	for (int k = 7; k >= 0; k--)
		v = (v << 8) | p[k];
	return v;
}

static void test_safetensors_roundtrip(void **state)
{
	(void)state;
	char *dir = tmpdir();
	char *path = path_join(dir, "a.safetensors");
	float a[6] = {1, 2, 3, 4, 5, 6}, b[3] = {-1, 0.5f, 7};
	struct st_tensor t[2] = {
		{.name = "base_model.model.x.lora_A.weight", .dtype = "F32", .ndim = 2,
		 .shape = {2, 3}, .data = a, .nbytes = sizeof(a)},
		{.name = "b\"quoted", .dtype = "F32", .ndim = 1, .shape = {3}, .data = b,
		 .nbytes = sizeof(b)},
	};
	const char *meta[] = {"made_by", "ftlab", NULL};
	struct diag d;
	diag_init(&d);
	assert_int_equal(st_write_file(path, t, 2, meta, &d), 0);
	char *buf;
	size_t len;
	assert_int_equal(file_read_all(&buf, &len, path, 1 << 20, &d), 0);
	uint64_t hl = le64((unsigned char *)buf);
	assert_int_equal(hl % 8, 0);
	assert_int_equal(len, 8 + hl + sizeof(a) + sizeof(b));
	json_error_t err;
	json_t *h = json_loadb(buf + 8, hl, 0, &err);
	assert_non_null(h);
	assert_string_equal(json_string_value(json_object_get(
				    json_object_get(h, "__metadata__"), "format")), "pt");
	json_t *e = json_object_get(h, "b\"quoted");
	assert_non_null(e);
	json_t *offs = json_object_get(e, "data_offsets");
	size_t lo = (size_t)json_integer_value(json_array_get(offs, 0));
	size_t hi = (size_t)json_integer_value(json_array_get(offs, 1));
	assert_int_equal(hi - lo, sizeof(b));
	assert_memory_equal(buf + 8 + hl + lo, b, sizeof(b));
	e = json_object_get(h, "base_model.model.x.lora_A.weight");
	assert_int_equal(json_integer_value(json_array_get(json_object_get(e, "shape"), 1)), 3);
	json_decref(h);
	free(buf);

	/* A byte count that does not match the shape is refused and nothing is written. */
	char *bad = path_join(dir, "bad.safetensors");
	t[1].nbytes = 8;
	diag_init(&d);
	assert_int_equal(st_write_file(bad, t, 2, NULL, &d), FT_EINVAL);
	assert_non_null(strstr(d.text, "bytes given"));
	assert_false(path_exists(bad));
	/* Duplicate names are refused. */
	t[1] = t[0];
	diag_init(&d);
	assert_int_equal(st_write_file(bad, t, 2, NULL, &d), FT_EINVAL);
	assert_false(path_exists(bad));
	free(bad);
	free(path);
	assert_int_equal(dir_remove_all(dir), 0);
	free(dir);
}

static void test_gguf_layout(void **state)
{
	(void)state;
	char *dir = tmpdir();
	char *path = path_join(dir, "a.gguf");
	struct gguf_out *g;
	assert_int_equal(gguf_out_create(&g), 0);
	gguf_out_str(g, "general.architecture", "llama");
	gguf_out_u32(g, "llama.block_count", 2);
	gguf_out_f32(g, "adapter.lora.alpha", 16.0f);
	char *toks[] = {"a", "bc"};
	gguf_out_arr_str(g, "tokenizer.ggml.tokens", toks, 2);
	float w[15];
	for (int i = 0; i < 15; i++)
		w[i] = (float)i;
	int64_t ne[2] = {5, 3};
	gguf_out_tensor(g, "blk.0.attn_q.weight", GGML_F32, 2, ne, w);
	int64_t ne1[1] = {3};
	gguf_out_tensor(g, "output_norm.weight", GGML_F32, 1, ne1, w + 1);
	struct diag d;
	diag_init(&d);
	assert_int_equal(gguf_out_write(g, path, &d), 0);
	gguf_out_free(g);

	char *buf;
	size_t len;
	assert_int_equal(file_read_all(&buf, &len, path, 1 << 20, &d), 0);
	const unsigned char *p = (const unsigned char *)buf;
	assert_memory_equal(p, "GGUF", 4);
	assert_int_equal(p[4], 3);
	assert_int_equal(le64(p + 8), 2);  /* tensors */
	assert_int_equal(le64(p + 16), 4); /* kv */
	/* The data section is aligned to 32; the second tensor starts 32-aligned after the
	 * first (60 bytes -> offset 64); total = data start + 64 + 12 + 20 padding. */
	assert_int_equal(len % 32, 0);
	size_t data_start = len - 96;
	assert_int_equal(data_start % 32, 0);
	assert_memory_equal(p + data_start, w, 60);
	assert_memory_equal(p + data_start + 64, w + 1, 12);
	free(buf);

	/* A rank-5 tensor fails the whole write. */
	assert_int_equal(gguf_out_create(&g), 0);
	int64_t ne5[5] = {1, 1, 1, 1, 1};
	gguf_out_tensor(g, "x", GGML_F32, 5, ne5, w);
	char *bad = path_join(dir, "bad.gguf");
	diag_init(&d);
	assert_int_equal(gguf_out_write(g, bad, &d), FT_EINVAL);
	assert_false(path_exists(bad));
	gguf_out_free(g);
	free(bad);
	free(path);
	assert_int_equal(dir_remove_all(dir), 0);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_safetensors_roundtrip),
		cmocka_unit_test(test_gguf_layout),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
