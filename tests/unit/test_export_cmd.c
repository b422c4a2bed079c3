/* `ftlab export` end to end on a tiny llama (tests/unit/tiny_weights.c) stored as GGUF:
 * a LoRA run and a full run are trained with the trainer into a workspace's run
 * directories, then exported with the real binary ($FTLAB_BIN) in every format. The merged
 * models (GGUF and HF safetensors, read back with io/) give the trained model's logits; the
 * PEFT adapter round-trips and names the base model as PEFT can load it; usage errors
 * exit 2. */
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
#include <sys/wait.h>

#include "backends/native/model/model.h"
#include "backends/native/peft/adapter.h"
#include "backends/native/peft/gguf_write.h"
#include "backends/native/peft/merge.h"
#include "backends/native/train/trainer.h"
#include "common/util.h"
#include "schema/table.h"
#include "tests/unit/tiny_weights.h"
#include "common/banned.h"

#define B 2
#define SEQ 8
#define V 37

static int32_t tokens[B * SEQ], targets[B * SEQ];

static int batch(void *ud, int32_t *tok, int32_t *tgt, int max_rows, int *rows, int *out_T,
		 struct diag *d)
{
	(void)ud, (void)d, (void)max_rows;
	memcpy(tok, tokens, sizeof(tokens));
	memcpy(tgt, targets, sizeof(targets));
	*rows = B;
	*out_T = SEQ;
	return 0;
}

static char *ws, *base_gguf;

static int sh(const char *fmt, ...) FT_PRINTF(1, 2);
static int sh(const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	int st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static const char *bin(void)
{
	const char *b = getenv("FTLAB_BIN");
	return b ? b : "build/ftlab";
}

static bool g_proj; /* prefix runs with prefix_projection (encoder_hidden_size 5) */

static struct model *train_run(const char *run, enum method_type method)
{
	struct diag d;
	diag_init(&d);
	struct model_file *mf = NULL;
	if (model_file_load(&mf, base_gguf, &d))
		fail_msg("%s", d.text);
	static const char *const tg[] = {"q_proj", "v_proj"};
	struct model_opts o = {.method = method, .lora_rank = 4, .lora_alpha = 8, .targets = tg,
			       .prefix_tokens = 2, .prefix_projection = g_proj,
			       .prefix_hidden = g_proj ? 5 : 0,
			       .n_targets = 2, .layers_first = -1, .layers_last = -1,
			       .max_batch = B, .max_seq = SEQ, .seed = 5, .full_logits = true};
	struct model *m = NULL;
	if (model_create(&m, mf, &o, &d))
		fail_msg("%s", d.text);
	char rel[64];
	snprintf(rel, sizeof(rel), "runs/%s", run);
	char *rd = path_join(ws, rel);
	char *ck = path_join(rd, "checkpoint");
	assert_int_equal(dir_make_all(rd, &d), 0);
	struct config_train c = {.steps = 3, .batch_size = B, .grad_accum = 1,
				 .nonfinite = NONFINITE_ABORT};
	c.optimizer.lr = 5e-2;
	c.optimizer.beta1 = 0.9;
	c.optimizer.beta2 = 0.999;
	c.optimizer.eps = 1e-8;
	c.schedule.type = SCHEDULE_CONSTANT;
	struct batch_source src = {.T = SEQ, .next = batch};
	struct trainer_opts to = {.train = &c, .total_steps = 3, .ckpt_dir = ck};
	struct trainer_result res;
	if (trainer_run(&res, m, &src, NULL, &to, &d))
		fail_msg("%s", d.text);
	if (method == METHOD_LORA || method == METHOD_DORA || method == METHOD_IA3 ||
	    method == METHOD_PREFIX) {
		/* as the native backend writes it: prefix_projection saves the computed table */
		model_prefix_update(m);
		const struct model_param *tab = model_param_find(m, "prompt_embeddings");
		size_t n = g_proj ? 1 : model_n_trainable(m);
		struct lora_tensor lt[16];
		for (size_t i = 0; i < n; i++) {
			const struct model_param *p = g_proj ? tab : model_trainable(m, i);
			lt[i] = (struct lora_tensor){(char *)p->name, p->data, p->shape[0], p->shape[1]};
		}
		char *t2[] = {"q_proj", "v_proj"};
		struct lora_info info = {.rank = 4, .alpha = 8, .targets = t2, .n_targets = 2,
					 .use_dora = method == METHOD_DORA,
					 .ia3 = method == METHOD_IA3,
					 .prefix = method == METHOD_PREFIX, .num_virtual_tokens = 2,
					 .num_layers = 2, .interleaved = true,
					 .prefix_projection = g_proj,
					 .encoder_hidden_size = g_proj ? 5 : 0,
					 .n_head = 4, .n_head_kv = 2, .head_dim = 4};
		char *ad = path_join(rd, "adapter");
		if (adapter_write_peft(ad, lt, n, &info, &d))
			fail_msg("%s", d.text);
		free(ad);
	}
	char meta[1024];
	snprintf(meta, sizeof(meta), "{\"base_model\": \"%s\", \"method\": \"%s\", \"version\": 1}",
		 base_gguf, schema_enum_name("method.type", (int)method));
	char *mp = path_join(rd, "export.json");
	assert_int_equal(file_write_atomic(mp, meta, strlen(meta), &d), 0);
	free(mp);
	free(ck);
	free(rd);
	model_file_free(mf);
	model_set_training(m, false);
	return m;
}

/* Logits of a model file built with no method vs the trained model's. */
static void same_logits(struct model *trained, const char *path)
{
	struct diag d;
	diag_init(&d);
	struct model_file *mf = NULL;
	if (model_file_load(&mf, path, &d))
		fail_msg("%s: %s", path, d.text);
	struct model_opts o = {.method = METHOD_NONE, .layers_first = -1, .layers_last = -1,
			       .max_batch = B, .max_seq = SEQ, .full_logits = true};
	struct model *m = NULL;
	if (model_create(&m, mf, &o, &d))
		fail_msg("%s", d.text);
	assert_int_equal(model_forward(m, tokens, NULL, B, SEQ, NULL, NULL), 0);
	assert_int_equal(model_forward(trained, tokens, NULL, B, SEQ, NULL, NULL), 0);
	const float *a = model_logits(m), *b = model_logits(trained);
	for (int i = 0; i < B * SEQ * V; i++)
		if (fabsf(a[i] - b[i]) > 1e-4f)
			fail_msg("%s: logit %d exported %g, trained %g", path, i, a[i], b[i]);
	model_free(m);
	model_file_free(mf);
}

static void expect_base(const char *dir, const char *sub, const char *want)
{
	char rel[64];
	snprintf(rel, sizeof(rel), "%s/adapter_config.json", sub);
	char *p = path_join(dir, rel);
	json_t *j = json_load_file(p, 0, NULL);
	assert_non_null(j);
	const char *got = json_string_value(json_object_get(j, "base_model_name_or_path"));
	if (!got || strcmp(got, want) != 0)
		fail_msg("%s: base_model_name_or_path %s, expected %s", p, got ? got : "null", want);
	json_decref(j);
	free(p);
}

static void test_export_formats(void **state)
{
	(void)state;
	for (int i = 0; i < B * SEQ; i++)
		tokens[i] = (int32_t)((i * 5 + 1) % V);
	for (int i = 0; i < B * SEQ; i++)
		targets[i] = (i + 1) % SEQ ? tokens[i + 1] : -1;
	char tmpl[] = "/tmp/ftlab-exportcmd-XXXXXX";
	ws = ft_strdup(mkdtemp(tmpl));
	base_gguf = path_join(ws, "tiny.gguf");
	struct model_file *hf = tiny_llama_mf(false, false, ROPE_HALF, 3);
	struct diag d;
	diag_init(&d);
	assert_int_equal(merged_write_gguf(base_gguf, hf, &d), 0);
	model_file_free(hf);

	struct model *lora = train_run("lora-run-1", METHOD_LORA);
	struct model *full = train_run("full-run-1", METHOD_FULL);
	const char *b = bin();
	assert_int_equal(sh("'%s' --workspace '%s' export lora-run --format merged-gguf -o '%s/mg' >/dev/null",
			    b, ws, ws), 0);
	char *p = path_join(ws, "mg/model.gguf");
	same_logits(lora, p);
	free(p);
	assert_int_equal(sh("'%s' --workspace '%s' export lora-run-1 --format merged-safetensors -o '%s/ms' >/dev/null",
			    b, ws, ws), 0);
	p = path_join(ws, "ms");
	same_logits(lora, p);
	free(p);
	assert_int_equal(sh("'%s' --workspace '%s' export full-run-1 --format merged-gguf -o '%s/fg' >/dev/null",
			    b, ws, ws), 0);
	p = path_join(ws, "fg/model.gguf");
	same_logits(full, p);
	free(p);
	/* The PEFT adapter and the llama.cpp adapter. */
	assert_int_equal(sh("'%s' --workspace '%s' export lora-run-1 --format peft -o '%s/pe' >/dev/null",
			    b, ws, ws), 0);
	p = path_join(ws, "pe");
	struct lora_adapter *a = NULL;
	if (adapter_read_peft(&a, p, true, 4, 2, 4, &d))
		fail_msg("%s", d.text);
	for (size_t i = 0; i < a->n; i++) {
		const struct model_param *mp = model_param_find(lora, a->t[i].name);
		assert_non_null(mp);
		assert_memory_equal(mp->data, a->t[i].data, mp->numel * sizeof(float));
	}
	adapter_free(a);
	free(p);
	/* adapter_config.json's base_model_name_or_path: the Hugging Face repository the base
	 * GGUF names (general.source.huggingface.repository), else --base-model, else the path */
	char *named = path_join(ws, "named.gguf");
	struct gguf_out *g = NULL;
	assert_int_equal(gguf_out_create(&g), 0);
	gguf_out_str(g, "general.architecture", "llama");
	gguf_out_str(g, "general.source.huggingface.repository", "org/tiny-model");
	assert_int_equal(gguf_out_write(g, named, &d), 0);
	gguf_out_free(g);
	assert_int_equal(sh("cp -r '%s/runs/lora-run-1' '%s/runs/lora-run-2'", ws, ws), 0);
	char meta[1024];
	snprintf(meta, sizeof(meta), "{\"base_model\": \"%s\", \"method\": \"lora\", \"version\": 1}",
		 named);
	char *mp = path_join(ws, "runs/lora-run-2/export.json");
	assert_int_equal(file_write_atomic(mp, meta, strlen(meta), &d), 0);
	free(mp);
	assert_int_equal(sh("'%s' --workspace '%s' export lora-run-2 --format peft -o '%s/pn' >/dev/null",
			    b, ws, ws), 0);
	expect_base(ws, "pn", "org/tiny-model");
	assert_int_equal(sh("'%s' --workspace '%s' export lora-run-2 --format peft --base-model me/x -o '%s/po' >/dev/null",
			    b, ws, ws), 0);
	expect_base(ws, "po", "me/x");
	assert_int_equal(sh("'%s' --workspace '%s' export lora-run-1 --format peft -o '%s/pp' >/dev/null 2>'%s/note'",
			    b, ws, ws, ws), 0);
	expect_base(ws, "pp", base_gguf);
	char *note_p = path_join(ws, "note"), *note = NULL;
	size_t note_len;
	assert_int_equal(file_read_all(&note, &note_len, note_p, 1 << 16, &d), 0);
	assert_non_null(strstr(note, "--base-model"));
	free(note);
	free(note_p);
	free(named);
	assert_int_equal(sh("'%s' --workspace '%s' export lora-run-1 --format gguf-adapter -o '%s/ga' >/dev/null",
			    b, ws, ws), 0);
	p = path_join(ws, "ga/adapter.gguf");
	assert_true(path_exists(p));
	free(p);
	/* Errors: exit 2 with a message. */
	assert_int_equal(sh("'%s' --workspace '%s' export full-run-1 --format peft -o '%s/x' 2>/dev/null",
			    b, ws, ws), 2);
	assert_int_equal(sh("'%s' --workspace '%s' export nope --format peft -o '%s/x' 2>/dev/null",
			    b, ws, ws), 2);
	assert_int_equal(sh("'%s' --workspace '%s' export run --format peft -o '%s/x' 2>/dev/null",
			    b, ws, ws), 2); /* ambiguous prefix */
	assert_int_equal(sh("'%s' --workspace '%s' export lora-run-1 --format onnx -o '%s/x' 2>/dev/null",
			    b, ws, ws), 2);
	/* DoRA: merged exports give the trained logits, the PEFT adapter round-trips with its
	 * magnitude vectors, llama.cpp's adapter format is refused. */
	struct model *dora = train_run("dora-run-1", METHOD_DORA);
	assert_int_equal(sh("'%s' --workspace '%s' export dora-run-1 --format merged-gguf -o '%s/dg' >/dev/null",
			    b, ws, ws), 0);
	p = path_join(ws, "dg/model.gguf");
	same_logits(dora, p);
	free(p);
	assert_int_equal(sh("'%s' --workspace '%s' export dora-run-1 --format merged-safetensors -o '%s/ds' >/dev/null",
			    b, ws, ws), 0);
	p = path_join(ws, "ds");
	same_logits(dora, p);
	free(p);
	assert_int_equal(sh("'%s' --workspace '%s' export dora-run-1 --format peft -o '%s/dp' >/dev/null 2>&1",
			    b, ws, ws), 0);
	p = path_join(ws, "dp");
	if (adapter_read_peft(&a, p, true, 4, 2, 4, &d))
		fail_msg("%s", d.text);
	assert_true(a->info.use_dora);
	size_t n_mag = 0;
	for (size_t i = 0; i < a->n; i++) {
		const struct model_param *dp = model_param_find(dora, a->t[i].name);
		assert_non_null(dp);
		assert_memory_equal(dp->data, a->t[i].data, dp->numel * sizeof(float));
		n_mag += strstr(a->t[i].name, "lora_magnitude_vector") != NULL;
	}
	assert_int_equal(n_mag, 2 * 2);
	adapter_free(a);
	free(p);
	assert_int_equal(sh("'%s' --workspace '%s' export dora-run-1 --format gguf-adapter -o '%s/dx' 2>/dev/null",
			    b, ws, ws), 2);
	/* IA3 (q and v given as targets): the same */
	struct model *ia3 = train_run("ia3-run-1", METHOD_IA3);
	assert_int_equal(sh("'%s' --workspace '%s' export ia3-run-1 --format merged-gguf -o '%s/ig' >/dev/null",
			    b, ws, ws), 0);
	p = path_join(ws, "ig/model.gguf");
	same_logits(ia3, p);
	free(p);
	assert_int_equal(sh("'%s' --workspace '%s' export ia3-run-1 --format merged-safetensors -o '%s/is' >/dev/null",
			    b, ws, ws), 0);
	p = path_join(ws, "is");
	same_logits(ia3, p);
	free(p);
	assert_int_equal(sh("'%s' --workspace '%s' export ia3-run-1 --format peft -o '%s/ip' >/dev/null 2>&1",
			    b, ws, ws), 0);
	p = path_join(ws, "ip");
	if (adapter_read_peft(&a, p, true, 4, 2, 4, &d))
		fail_msg("%s", d.text);
	assert_true(a->info.ia3);
	assert_int_equal(a->n, model_n_trainable(ia3));
	for (size_t i = 0; i < a->n; i++) {
		const struct model_param *ip = model_param_find(ia3, a->t[i].name);
		assert_non_null(ip);
		assert_memory_equal(ip->data, a->t[i].data, ip->numel * sizeof(float));
	}
	adapter_free(a);
	free(p);
	assert_int_equal(sh("'%s' --workspace '%s' export ia3-run-1 --format gguf-adapter -o '%s/ix' 2>/dev/null",
			    b, ws, ws), 2);
	/* prefix tuning: the PEFT adapter round-trips; merged and llama.cpp formats refused */
	struct model *pfx = train_run("prefix-run-1", METHOD_PREFIX);
	assert_int_equal(sh("'%s' --workspace '%s' export prefix-run-1 --format peft -o '%s/pp2' >/dev/null 2>&1",
			    b, ws, ws), 0);
	p = path_join(ws, "pp2");
	if (adapter_read_peft(&a, p, true, 4, 2, 4, &d))
		fail_msg("%s", d.text);
	assert_true(a->info.prefix);
	assert_int_equal(a->n, 1);
	/* the config re-written by export keeps PEFT's token_dim (the KV width) and heads */
	assert_int_equal(a->info.token_dim, 2 * 4);
	assert_int_equal(a->info.prefix_heads, 2);
	assert_false(a->info.prefix_projection);
	const struct model_param *pe = model_param_find(pfx, "prompt_embeddings");
	assert_non_null(pe);
	assert_memory_equal(pe->data, a->t[0].data, pe->numel * sizeof(float));
	adapter_free(a);
	free(p);
	/* prefix_projection: the computed table, and the config says how it was trained */
	g_proj = true;
	struct model *pj = train_run("prefix-proj-run-1", METHOD_PREFIX);
	g_proj = false;
	assert_int_equal(sh("'%s' --workspace '%s' export prefix-proj-run-1 --format peft -o '%s/pj2' >/dev/null 2>&1",
			    b, ws, ws), 0);
	p = path_join(ws, "pj2");
	if (adapter_read_peft(&a, p, true, 4, 2, 4, &d))
		fail_msg("%s", d.text);
	assert_true(a->info.prefix && a->info.prefix_projection);
	assert_int_equal(a->info.encoder_hidden_size, 5);
	assert_int_equal(a->info.token_dim, 2 * 4);
	assert_int_equal(a->n, 1);
	assert_string_equal(a->t[0].name, "prompt_embeddings");
	pe = model_param_find(pj, "prompt_embeddings");
	assert_memory_equal(pe->data, a->t[0].data, pe->numel * sizeof(float));
	adapter_free(a);
	free(p);
	model_free(pj);
	const char *nofmt[] = {"merged-gguf", "merged-safetensors", "gguf-adapter"};
	for (size_t i = 0; i < 3; i++)
		assert_int_equal(sh("'%s' --workspace '%s' export prefix-run-1 --format %s -o '%s/px' 2>/dev/null",
				    b, ws, nofmt[i], ws), 2);
	model_free(pfx);
	model_free(ia3);
	model_free(dora);
	model_free(lora);
	model_free(full);
	assert_int_equal(dir_remove_all(ws), 0);
	free(ws);
	free(base_gguf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_export_formats),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
