/* Dequantisers against the gguf Python package: tests/reference/dequant_fixture.json
 * (made by tests/reference/make_dequant_fixture.py from real SmolLM2 and Gemma 3 blocks and
 * generated blocks) holds bytes and gguf.quants.dequantize's values for every supported
 * type; ours must equal them bit for bit. */
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

#include "backends/native/io/dequant.h"
#include "common/util.h"
#include "common/banned.h"

static void test_fixture(void **state)
{
	(void)state;
	const char *root = getenv("FTLAB_ROOT");
	char *p = path_join(root ? root : ".", "tests/reference/dequant_fixture.json");
	json_error_t je;
	json_t *all = json_load_file(p, 0, &je);
	assert_non_null(all);
	bool seen[31] = {0};
	for (size_t c = 0; c < json_array_size(all); c++) {
		json_t *e = json_array_get(all, c);
		uint32_t id = (uint32_t)json_integer_value(json_object_get(e, "id"));
		const char *hex = json_string_value(json_object_get(e, "hex"));
		json_t *vals = json_object_get(e, "values");
		const struct ggml_type_desc *td = ggml_type_find(id);
		assert_non_null(td);
		assert_string_equal(td->name, json_string_value(json_object_get(e, "type")));
		size_t nbytes = strlen(hex) / 2, n = json_array_size(vals);
		assert_int_equal(nbytes % td->block_bytes, 0);
		assert_int_equal(n, nbytes / td->block_bytes * td->block_elems);
		uint8_t *raw = malloc(nbytes);
		for (size_t i = 0; i < nbytes; i++) {
			unsigned v;
			assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
			raw[i] = (uint8_t)v;
		}
		float *out = malloc(n * sizeof *out);
		dequant_to_f32(id, raw, out, n);
		for (size_t i = 0; i < n; i++) {
			/* the fixture's doubles are the float32 values exactly */
			float want = (float)json_number_value(json_array_get(vals, i));
			if (memcmp(&out[i], &want, sizeof want) != 0) {
				fprintf(stderr, "%s case %zu element %zu: got %.9g want %.9g\n", td->name, c,
					i, (double)out[i], (double)want);
				fail();
			}
		}
		seen[id] = true;
		free(raw);
		free(out);
	}
	static const uint32_t need[] = {GGML_F32, GGML_F16, GGML_BF16, GGML_Q4_0, GGML_Q4_1,
					GGML_Q5_0, GGML_Q5_1, GGML_Q8_0, GGML_Q4_K, GGML_Q5_K,
					GGML_Q6_K};
	for (size_t i = 0; i < FT_ARRAY_LEN(need); i++)
		assert_true(seen[need[i]]);
	json_decref(all);
	free(p);
}

static void test_half_conversions(void **state)
{
	(void)state;
	assert_true(fp16_to_f32(0x3c00) == 1.0f);
	assert_true(fp16_to_f32(0xc000) == -2.0f);
	assert_true(fp16_to_f32(0x0001) == 0x1p-24f); /* smallest subnormal */
	assert_true(fp16_to_f32(0x7bff) == 65504.0f);
	assert_true(isinf(fp16_to_f32(0x7c00)));
	assert_true(isnan(fp16_to_f32(0x7e00)));
	assert_true(bf16_to_f32(0x3f80) == 1.0f);
	for (uint32_t h = 0; h < 0x7c00; h++) /* round trip of every finite positive half */
		assert_int_equal(f32_to_fp16(fp16_to_f32((uint16_t)h)), h);
	assert_int_equal(f32_to_fp16(1.0f + 0x1p-11f), 0x3c00); /* tie to even */
	assert_string_equal(ggml_type_name(GGML_Q4_K), "Q4_K");
	assert_string_equal(ggml_type_name(GGML_Q5_0), "Q5_0");
	assert_null(ggml_type_find(10)); /* Q2_K: known to GGML, not supported here */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fixture),
		cmocka_unit_test(test_half_conversions),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
