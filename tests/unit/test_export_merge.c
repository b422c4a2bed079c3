/* Unit tests for peft/merge: W += s*B*A checked element-wise by hand, and the merged
 * writers' q/k row order (HF rotate-half in safetensors, llama.cpp interleaved in GGUF). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/native/peft/merge.h"
#include "common/util.h"
#include "common/banned.h"

/* One tensor "model.layers.0.self_attn.q_proj.weight" (4, 3) of 1 head x head_dim 4. */
static void make_mf(struct model_file *mf, struct mf_tensor *t, float *w)
{
	memset(mf, 0, sizeof(*mf));
	mf->hp.arch = ARCH_LLAMA;
	mf->hp.n_layer = 1;
	mf->hp.n_embd = 3;
	mf->hp.n_head = 1;
	mf->hp.n_head_kv = 1;
	mf->hp.head_dim = 4;
	mf->hp.rope_style = ROPE_HALF;
	mf->tok.bos_id = mf->tok.eos_id = mf->tok.pad_id = mf->tok.unk_id = -1;
	for (int i = 0; i < 12; i++)
		w[i] = (float)i;
	memset(t, 0, sizeof(*t));
	t->name = "model.layers.0.self_attn.q_proj.weight";
	t->ndim = 2;
	t->shape[0] = 4;
	t->shape[1] = 3;
	t->numel = 12;
	t->data = w;
	mf->tensors = t;
	mf->n_tensors = 1;
}

static void test_merge_values(void **state)
{
	(void)state;
	struct model_file mf;
	struct mf_tensor t;
	float w[12];
	make_mf(&mf, &t, w);
	/* rank 1: A = [1, 2, 3], B = [1, 0, -1, 2]^T, alpha 2 -> s = 2. */
	float a[3] = {1, 2, 3}, b[4] = {1, 0, -1, 2};
	struct lora_tensor lt[2] = {{"model.layers.0.self_attn.q_proj.lora_A.weight", a, 1, 3},
				    {"model.layers.0.self_attn.q_proj.lora_B.weight", b, 4, 1}};
	struct lora_adapter ad = {.info = {.rank = 1, .alpha = 2}, .t = lt, .n = 2};
	struct diag d;
	diag_init(&d);
	assert_int_equal(merge_lora(&mf, &ad, &d), 0);
	/* w[o][j] += 2 * b[o] * a[j] */
	assert_true(w[0] == 0 + 2 * 1 * 1);
	assert_true(w[2] == 2 + 2 * 1 * 3);
	assert_true(w[3] == 3);
	assert_true(w[7] == 7 - 2 * 2);
	assert_true(w[11] == 11 + 2 * 2 * 3);
	/* rsLoRA: s = alpha / sqrt(r) = 2 here too (r = 1); a module with no weight fails. */
	lt[0].name = "model.layers.0.self_attn.k_proj.lora_A.weight";
	lt[1].name = "model.layers.0.self_attn.k_proj.lora_B.weight";
	assert_int_equal(merge_lora(&mf, &ad, &d), FT_EINVAL);
	assert_non_null(strstr(d.text, "k_proj"));
}

static void test_writers_row_order(void **state)
{
	(void)state;
	struct model_file mf;
	struct mf_tensor t;
	float w[12];
	make_mf(&mf, &t, w);
	char tmpl[] = "/tmp/ftlab-merge-XXXXXX";
	char *dir = ft_strdup(mkdtemp(tmpl));
	struct diag d;
	diag_init(&d);
	static char jinja[] = "{% for m in messages %}{{ m.content }}{% endfor %}";
	mf.tok.chat_template_jinja = jinja; /* an HF base's chat_template.jinja is copied */
	assert_int_equal(merged_write_hf(dir, &mf, &d), 0);
	char *jp = path_join(dir, "chat_template.jinja"), *jt;
	assert_int_equal(file_read_all(&jt, NULL, jp, 1 << 20, &d), 0);
	assert_string_equal(jt, jinja);
	free(jt);
	free(jp);
	char *cfg = path_join(dir, "config.json");
	json_error_t err;
	json_t *j = json_load_file(cfg, 0, &err);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "model_type")), "llama");
	assert_int_equal(json_integer_value(json_object_get(j, "head_dim")), 4);
	json_decref(j);
	/* HF base -> HF safetensors: rows unchanged; -> GGUF: rows 1 and 2 swap. */
	char *st = path_join(dir, "model.safetensors");
	char *buf;
	size_t len;
	assert_int_equal(file_read_all(&buf, &len, st, 1 << 20, &d), 0);
	assert_memory_equal(buf + len - 48, w, 48);
	free(buf);
	char *gp = path_join(dir, "m.gguf");
	assert_int_equal(merged_write_gguf(gp, &mf, &d), 0);
	assert_int_equal(file_read_all(&buf, &len, gp, 1 << 20, &d), 0);
	assert_non_null(memmem(buf, len, "blk.0.attn_q.weight", 19));
	const float *data = (const float *)(const void *)(buf + len - 64); /* 48 bytes + 16 pad */
	float want[12] = {0, 1, 2, 6, 7, 8, 3, 4, 5, 9, 10, 11};
	assert_memory_equal(data, want, 48);
	free(buf);
	/* A GGUF (interleaved) base written to HF is un-permuted the same way. */
	mf.hp.rope_style = ROPE_INTERLEAVED;
	assert_int_equal(merged_write_hf(dir, &mf, &d), 0);
	assert_int_equal(file_read_all(&buf, &len, st, 1 << 20, &d), 0);
	assert_memory_equal(buf + len - 48, want, 48);
	free(buf);
	/* GPT-2 has no merged GGUF writer. */
	mf.hp.arch = ARCH_GPT2;
	diag_init(&d);
	assert_int_equal(merged_write_gguf(gp, &mf, &d), FT_EUNSUPP);
	free(gp);
	free(st);
	free(cfg);
	assert_int_equal(dir_remove_all(dir), 0);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_merge_values),
		cmocka_unit_test(test_writers_row_order),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
