/* Out of memory at every allocation of a model load. This test is linked with
 * -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc (the Makefile does so for every
 * test_alloc_* program), so each allocation the library makes comes through __wrap_*
 * below, and the Nth can be made to fail. For every N a load makes, the load either
 * succeeds with the model it gives without faults or fails with FT_ENOMEM, and frees
 * everything exactly once (ASan in `make check`, glibc's own double-free checks here).
 * The GPT-2 directory has the mask buffers old checkpoints carry and names without
 * "transformer.", the case gpt2_fixup once freed twice on its out-of-memory path. */
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

#include "backends/native/io/model_file.h"
#include "common/util.h"
#include "common/banned.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t k, size_t n);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t k, size_t n);
void *__wrap_realloc(void *p, size_t n);

static long fail_at = -1, allocs, injected;

static bool fail_now(void)
{
	if (fail_at >= 0 && allocs++ == fail_at) {
		injected++;
		return true;
	}
	return false;
}

void *__wrap_malloc(size_t n)
{
	return fail_now() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t k, size_t n)
{
	return fail_now() ? NULL : __real_calloc(k, n);
}

void *__wrap_realloc(void *p, size_t n)
{
	return fail_now() ? NULL : __real_realloc(p, n);
}

static char *root_path(const char *rel)
{
	const char *root = getenv("FTLAB_ROOT");
	return path_join(root ? root : ".", rel);
}

/* tests/reference/fixtures/tiny-gpt2 rewritten as an older checkpoint: names without
 * "transformer." and per-layer attn.bias / attn.masked_bias buffers. */
static void write_old_gpt2(const char *dir)
{
	char *src = root_path("tests/reference/fixtures/tiny-gpt2/model.safetensors");
	char *cfg_src = root_path("tests/reference/fixtures/tiny-gpt2/config.json");
	char *buf = NULL, *cfg = NULL;
	size_t n = 0, cn = 0;
	struct diag d;
	diag_init(&d);
	assert_int_equal(file_read_all(&buf, &n, src, 1 << 26, &d), 0);
	assert_int_equal(file_read_all(&cfg, &cn, cfg_src, 1 << 20, &d), 0);
	uint64_t hl = 0;
	memcpy(&hl, buf, 8);
	json_error_t je;
	json_t *h = json_loadb(buf + 8, (size_t)hl, 0, &je);
	assert_non_null(h);
	const char *data = buf + 8 + hl;
	size_t data_len = n - 8 - (size_t)hl;
	/* New header: the buffers (4x4 fp32 each) first in the data, so they are met before
	 * the weights whose renaming and transposition allocate, then the same tensors
	 * renamed and moved behind them. */
	json_t *out = json_object();
	const char *key;
	json_t *v;
	const size_t shift = 4 * 64;
	json_object_foreach(h, key, v)
	{
		if (strcmp(key, "__metadata__") == 0)
			continue;
		const char *nk = strncmp(key, "transformer.", 12) == 0 ? key + 12 : key;
		json_t *c = json_deep_copy(v);
		json_t *offs = json_object_get(c, "data_offsets");
		for (size_t k = 0; k < 2; k++)
			json_array_set_new(offs, k,
					   json_integer(json_integer_value(json_array_get(offs, k)) +
							(json_int_t)shift));
		json_object_set_new(out, nk, c);
	}
	size_t off = 0;
	for (int l = 0; l < 2; l++)
		for (int b = 0; b < 2; b++) {
			char name[64];
			snprintf(name, sizeof name, "h.%d.attn.%s", l, b ? "masked_bias" : "bias");
			json_object_set_new(out, name,
					    json_pack("{s:s, s:[i,i,i,i], s:[I,I]}", "dtype", "F32",
						      "shape", 1, 1, 4, 4, "data_offsets",
						      (json_int_t)off, (json_int_t)(off + 64)));
			off += 64;
		}
	char *ht = json_dumps(out, JSON_COMPACT);
	assert_non_null(ht);
	size_t hlen = strlen(ht);
	size_t pad = (8 - hlen % 8) % 8;
	char *path = path_join(dir, "model.safetensors");
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	uint64_t nh = hlen + pad;
	fwrite(&nh, 8, 1, f);
	fwrite(ht, 1, hlen, f);
	for (size_t i = 0; i < pad; i++)
		fputc(' ', f);
	float ones[16];
	for (int i = 0; i < 16; i++)
		ones[i] = 1.0f;
	for (int k = 0; k < 4; k++)
		fwrite(ones, sizeof ones, 1, f);
	fwrite(data, 1, data_len, f);
	fclose(f);
	free(path);
	path = path_join(dir, "config.json");
	assert_int_equal(file_write_atomic(path, cfg, cn, &d), 0);
	free(path);
	free(ht);
	json_decref(out);
	json_decref(h);
	free(buf);
	free(cfg);
	free(src);
	free(cfg_src);
}

/* Loads path with the Nth allocation failing, for every N until a load makes no failing
 * allocation; returns how many loads failed. ref_tensors: the fault-free tensor count. */
static long sweep(const char *path, size_t *ref_tensors)
{
	long failed = 0;
	for (long n = 0;; n++) {
		struct model_file *m = NULL;
		struct diag d;
		diag_init(&d);
		allocs = injected = 0;
		fail_at = n;
		int rc = model_file_load(&m, path, &d);
		fail_at = -1;
		if (rc == 0) {
			if (*ref_tensors == 0)
				*ref_tensors = m->n_tensors;
			assert_int_equal(m->n_tensors, *ref_tensors);
			for (size_t i = 0; i < m->n_tensors; i++) {
				assert_non_null(m->tensors[i].name);
				assert_true(m->tensors[i].data || m->tensors[i].raw);
			}
		} else {
			if (rc != FT_ENOMEM)
				fail_msg("%s, allocation %ld failing: code %d (%s), expected FT_ENOMEM",
					 path, n, rc, d.text);
			failed++;
		}
		model_file_free(m);
		if (!injected)
			break;
	}
	return failed;
}

static void test_old_gpt2_dir(void **state)
{
	(void)state;
	char dir[] = "/tmp/ftlab-oomgpt2-XXXXXX";
	assert_non_null(mkdtemp(dir));
	write_old_gpt2(dir);
	size_t ref = 0;
	/* Fault-free first: the buffers are dropped and the names complete. */
	struct model_file *m = NULL;
	struct diag d;
	diag_init(&d);
	assert_int_equal(model_file_load(&m, dir, &d), 0);
	assert_non_null(model_file_tensor(m, "transformer.h.1.attn.c_attn.weight"));
	for (size_t i = 0; i < m->n_tensors; i++) {
		const char *nm = m->tensors[i].name;
		size_t l = strlen(nm);
		assert_false(l > 10 && strcmp(nm + l - 10, ".attn.bias") == 0);
		assert_null(strstr(nm, "masked_bias"));
	}
	ref = m->n_tensors;
	model_file_free(m);
	long failed = sweep(dir, &ref);
	print_message("old GPT-2 directory: %ld loads out of memory, none freed twice\n", failed);
	assert_true(failed > 20);
	assert_int_equal(dir_remove_all(dir), 0);
}

static void test_gguf_files(void **state)
{
	(void)state;
	static const char *const files[] = {"tests/reference/fixtures/tiny-gpt2.gguf",
					    "tests/reference/fixtures/tiny-llama.gguf"};
	for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
		char *p = root_path(files[i]);
		size_t ref = 0;
		long failed = sweep(p, &ref);
		print_message("%s: %ld loads out of memory\n", files[i], failed);
		assert_true(failed > 20);
		free(p);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_old_gpt2_dir),
		cmocka_unit_test(test_gguf_files),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
