/* Unit tests for peft/adapter: RoPE row permutation against the hand-worked order,
 * PEFT adapter write/read round trip (with the GGUF-base un-permutation), the llama.cpp
 * adapter GGUF names, and rejection of malformed adapter directories. That peft itself
 * loads what we write is checked in tests/reference/make_train_fixture.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/native/peft/adapter.h"
#include "backends/native/peft/st_write.h"
#include "common/util.h"
#include "common/banned.h"

static void test_rope_permute(void **state)
{
	(void)state;
	/* 2 heads of head_dim 4, one column: HF rows h*4 + j*2 + i go to h*4 + 2i + j. */
	float hf[8] = {0, 1, 2, 3, 4, 5, 6, 7}, il[8], back[8];
	rope_rows_permute(il, hf, 2, 4, 1, true);
	float want[8] = {0, 2, 1, 3, 4, 6, 5, 7};
	assert_memory_equal(il, want, sizeof(want));
	rope_rows_permute(back, il, 2, 4, 1, false);
	assert_memory_equal(back, hf, sizeof(hf));
	char mod[32];
	assert_true(lora_module_name(mod, sizeof(mod), "model.layers.3.mlp.up_proj.lora_B.weight"));
	assert_string_equal(mod, "up_proj");
	assert_false(lora_module_name(mod, sizeof(mod), "model.norm.weight"));
}

static char *tmpdir(void)
{
	char tmpl[] = "/tmp/ftlab-adapter-XXXXXX";
	return ft_strdup(mkdtemp(tmpl));
}

/* q_proj with 2 heads x 4 (8 out), k_proj with 1 kv head x 4, rank 2, in 6. */
static void make(struct lora_tensor *t, float *qa, float *qb, float *kb)
{
	for (int i = 0; i < 12; i++)
		qa[i] = (float)i * 0.1f;
	for (int i = 0; i < 16; i++)
		qb[i] = (float)i;
	for (int i = 0; i < 8; i++)
		kb[i] = 100.0f + (float)i;
	t[0] = (struct lora_tensor){"model.layers.0.self_attn.q_proj.lora_A.weight", qa, 2, 6};
	t[1] = (struct lora_tensor){"model.layers.0.self_attn.q_proj.lora_B.weight", qb, 8, 2};
	t[2] = (struct lora_tensor){"model.layers.0.self_attn.k_proj.lora_B.weight", kb, 4, 2};
}

static void test_peft_roundtrip_unpermutes(void **state)
{
	(void)state;
	char *dir = tmpdir();
	float qa[12], qb[16], kb[8];
	struct lora_tensor t[3];
	make(t, qa, qb, kb);
	char *targets[] = {"q_proj", "k_proj"};
	struct lora_info info = {.rank = 2, .alpha = 4, .targets = targets, .n_targets = 2,
				 .interleaved = true, .n_head = 2, .n_head_kv = 1, .head_dim = 4};
	struct diag d;
	diag_init(&d);
	assert_int_equal(adapter_write_peft(dir, t, 3, &info, &d), 0);
	/* Inputs untouched. */
	assert_true(qb[2] == 2.0f);

	struct lora_adapter *a = NULL;
	assert_int_equal(adapter_read_peft(&a, dir, false, 2, 1, 4, &d), 0);
	assert_int_equal(a->n, 3);
	assert_int_equal(a->info.rank, 2);
	assert_true(a->info.alpha == 4.0);
	assert_int_equal(a->info.n_targets, 2);
	assert_string_equal(a->t[1].name, "model.layers.0.self_attn.q_proj.lora_B.weight");
	/* On disk (HF order) q_proj lora_B row 1 (h0, j0, i1) was interleaved row 2. */
	assert_true(a->t[1].data[1 * 2 + 0] == qb[2 * 2 + 0]);
	assert_true(a->t[1].data[2 * 2 + 1] == qb[1 * 2 + 1]);
	assert_true(a->t[2].data[1 * 2] == kb[2 * 2]);
	assert_memory_equal(a->t[0].data, qa, sizeof(qa)); /* lora_A is never permuted */
	adapter_free(a);
	/* Read back for a GGUF base: the original interleaved rows. */
	assert_int_equal(adapter_read_peft(&a, dir, true, 2, 1, 4, &d), 0);
	assert_memory_equal(a->t[1].data, qb, sizeof(qb));
	assert_memory_equal(a->t[2].data, kb, sizeof(kb));
	adapter_free(a);

	/* llama.cpp adapter GGUF: names and alpha present. */
	char *gp = path_join(dir, "a.gguf");
	assert_int_equal(adapter_write_gguf(gp, t, 3, &info, &d), 0);
	char *buf;
	size_t len;
	assert_int_equal(file_read_all(&buf, &len, gp, 1 << 20, &d), 0);
	assert_non_null(memmem(buf, len, "blk.0.attn_q.weight.lora_a", 26));
	assert_non_null(memmem(buf, len, "blk.0.attn_k.weight.lora_b", 26));
	assert_non_null(memmem(buf, len, "adapter.lora.alpha", 18));
	free(buf);
	free(gp);
	assert_int_equal(dir_remove_all(dir), 0);
	free(dir);
}

static void expect_bad(const char *dir, const char *needle)
{
	struct lora_adapter *a = NULL;
	struct diag d;
	diag_init(&d);
	assert_int_equal(adapter_read_peft(&a, dir, false, 2, 1, 4, &d), FT_EINVAL);
	assert_null(a);
	if (!strstr(d.text, needle))
		fail_msg("expected '%s' in: %s", needle, d.text);
}

static void test_bad_adapters(void **state)
{
	(void)state;
	char *dir = tmpdir();
	float qa[12], qb[16], kb[8];
	struct lora_tensor t[3];
	make(t, qa, qb, kb);
	char *targets[] = {"q_proj"};
	struct lora_info info = {.rank = 2, .alpha = 4, .targets = targets, .n_targets = 1};
	struct diag d;
	diag_init(&d);
	assert_int_equal(adapter_write_peft(dir, t, 3, &info, &d), 0);
	char *cfg = path_join(dir, "adapter_config.json");
	char *stp = path_join(dir, "adapter_model.safetensors");

	const char *wrong_r = "{\"peft_type\": \"LORA\", \"r\": 3, \"lora_alpha\": 4}";
	assert_int_equal(file_write_atomic(cfg, wrong_r, strlen(wrong_r), &d), 0);
	expect_bad(dir, "rank 2");
	const char *not_lora = "{\"peft_type\": \"ADALORA\", \"r\": 2, \"lora_alpha\": 4}";
	assert_int_equal(file_write_atomic(cfg, not_lora, strlen(not_lora), &d), 0);
	expect_bad(dir, "peft_type");
	/* an IA3 config over LoRA tensors, a prefix config without its fields */
	const char *ia3 = "{\"peft_type\": \"IA3\", \"target_modules\": [\"q_proj\"]}";
	assert_int_equal(file_write_atomic(cfg, ia3, strlen(ia3), &d), 0);
	expect_bad(dir, "not a PEFT IA3 weight");
	const char *pfx = "{\"peft_type\": \"PREFIX_TUNING\", \"num_virtual_tokens\": 0}";
	assert_int_equal(file_write_atomic(cfg, pfx, strlen(pfx), &d), 0);
	expect_bad(dir, "num_virtual_tokens");
	const char *dup = "{\"peft_type\": \"LORA\", \"r\": 2, \"r\": 2, \"lora_alpha\": 4}";
	assert_int_equal(file_write_atomic(cfg, dup, strlen(dup), &d), 0);
	expect_bad(dir, "invalid JSON");
	const char *ok = "{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 4}";
	assert_int_equal(file_write_atomic(cfg, ok, strlen(ok), &d), 0);

	/* Byte range that does not match the shape, a header longer than the file, and a
	 * tensor without the PEFT prefix. */
	float z[4] = {0};
	struct st_tensor bad = {.name = "base_model.model.x.lora_A.weight", .dtype = "F32",
				.ndim = 2, .shape = {2, 2}, .data = z, .nbytes = 16};
	assert_int_equal(st_write_file(stp, &bad, 1, NULL, &d), 0);
	char *buf;
	size_t len;
	assert_int_equal(file_read_all(&buf, &len, stp, 1 << 20, &d), 0);
	char *p = strstr(buf + 8, "[0,16]");
	assert_non_null(p);
	memcpy(p, "[0,12]", 6);
	assert_int_equal(file_write_atomic(stp, buf, len, &d), 0);
	expect_bad(dir, "disagree");
	buf[0] = (char)0xff;
	buf[1] = (char)0xff;
	assert_int_equal(file_write_atomic(stp, buf, len, &d), 0);
	expect_bad(dir, "not a safetensors file");
	free(buf);
	bad.name = "model.x.lora_A.weight";
	assert_int_equal(st_write_file(stp, &bad, 1, NULL, &d), 0);
	expect_bad(dir, "not a PEFT LoRA weight");
	assert_int_equal(st_write_file(stp, &bad, 0, NULL, &d), 0); /* only __metadata__ */
	expect_bad(dir, "no adapter tensors");
	bad.name = "base_model.model.x.lora_A.weight";
	bad.dtype = "I32";
	assert_int_equal(st_write_file(stp, &bad, 1, NULL, &d), 0);
	expect_bad(dir, "dtype");
	free(cfg);
	free(stp);
	assert_int_equal(dir_remove_all(dir), 0);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rope_permute),
		cmocka_unit_test(test_peft_roundtrip_unpermutes),
		cmocka_unit_test(test_bad_adapters),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
