/* Gemma 3 files: every hyperparameter the loaders read from a GGUF (llama.cpp's keys and
 * defaults) or a config.json (transformers 4 and 5 forms), and the refusals of what the
 * engine does not implement (softcapping, non-periodic layer patterns, a value length of
 * its own, the multimodal model type, other activations). */
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

#include "backends/native/io/io_internal.h"
#include "backends/native/io/model_file.h"
#include "common/util.h"
#include "tests/unit/tiny_model.h"
#include "common/banned.h"

static char tmpdir[64];

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof tmpdir, "/tmp/ftlab-g3-XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	return dir_remove_all(tmpdir);
}

/* Writes the spec as GGUF and loads it: rc, and the hparams when it loaded. */
static int load_gguf(const struct tiny_model_spec *s, struct model_hparams *hp, struct diag *d)
{
	char p[128];
	snprintf(p, sizeof p, "%s/m.gguf", tmpdir);
	diag_init(d);
	assert_int_equal(tiny_model_write_gguf(p, s, d), 0);
	struct model_file *mf = NULL;
	int rc = model_file_load(&mf, p, d);
	if (rc == 0)
		*hp = mf->hp;
	model_file_free(mf);
	return rc;
}

static void test_gguf_keys(void **state)
{
	(void)state;
	struct tiny_model_spec s;
	struct model_hparams hp;
	struct diag d;
	tiny_model_spec_default(&s, ARCH_GEMMA3);
	/* llama.cpp's default period 6 when the key is absent */
	s.swa_pattern = 6;
	assert_int_equal(load_gguf(&s, &hp, &d), 0);
	assert_int_equal(hp.swa_pattern, 6);
	assert_true(hp.rope_theta_local == 10000.0f); /* the default local base */
	/* the pattern as one flag per layer: local, global, local is the period 2 */
	static const bool per2[3] = {true, false, true}, odd[3] = {false, true, true};
	static const bool none[3] = {false, false, false};
	s.swa_layers = per2;
	assert_int_equal(load_gguf(&s, &hp, &d), 0);
	assert_int_equal(hp.swa_pattern, 2);
	assert_int_equal(hp.sliding_window, 5);
	s.swa_layers = none; /* no local layer: no window */
	assert_int_equal(load_gguf(&s, &hp, &d), 0);
	assert_int_equal(hp.sliding_window, 0);
	s.swa_layers = odd;
	assert_int_equal(load_gguf(&s, &hp, &d), FT_EUNSUPP);
	assert_non_null(strstr(d.text, "do not repeat with a period"));
	s.swa_layers = NULL;
	s.rope_theta_local = 5e4f;
	assert_int_equal(load_gguf(&s, &hp, &d), 0);
	assert_true(hp.rope_theta_local == 5e4f);
	s.final_softcap = 30.0f;
	assert_int_equal(load_gguf(&s, &hp, &d), FT_EUNSUPP);
	assert_non_null(strstr(d.text, "gemma3.final_logit_softcapping"));
	s.final_softcap = 0;
	s.value_length = 8;
	assert_int_equal(load_gguf(&s, &hp, &d), FT_EUNSUPP);
	assert_non_null(strstr(d.text, "gemma3.attention.value_length"));
}

static int parse(const char *json, struct model_hparams *hp, struct diag *d)
{
	diag_init(d);
	return hf_config_parse(hp, json, strlen(json), "config.json", d);
}

#define BASE                                                                                  \
	"\"model_type\": \"gemma3_text\", \"num_hidden_layers\": 6, \"hidden_size\": 640, "    \
	"\"num_attention_heads\": 4, \"num_key_value_heads\": 1, \"head_dim\": 256, "          \
	"\"intermediate_size\": 2048, \"vocab_size\": 262144"

static void test_config_json(void **state)
{
	(void)state;
	struct model_hparams hp;
	struct diag d;
	/* transformers' defaults: window 4096, period 6, bases 1e6 / 1e4, scalar 256, tied */
	assert_int_equal(parse("{" BASE "}", &hp, &d), 0);
	assert_int_equal(hp.arch, ARCH_GEMMA3);
	assert_int_equal(hp.sliding_window, 4096);
	assert_int_equal(hp.swa_pattern, 6);
	assert_true(hp.rope_theta == 1e6f && hp.rope_theta_local == 1e4f);
	assert_true(hp.attn_scale == 0.0625f);
	assert_true(hp.tied_embeddings);
	assert_int_equal(hp.rope_style, ROPE_HALF);
	/* transformers 4: rope_local_base_freq, sliding_window_pattern; layer_types */
	assert_int_equal(parse("{" BASE ", \"rope_theta\": 5e5, \"rope_local_base_freq\": 2e4, "
			       "\"sliding_window\": 512, \"query_pre_attn_scalar\": 168, "
			       "\"layer_types\": [\"sliding_attention\", \"sliding_attention\", "
			       "\"full_attention\", \"sliding_attention\", \"sliding_attention\", "
			       "\"full_attention\"]}", &hp, &d), 0);
	assert_true(hp.rope_theta == 5e5f && hp.rope_theta_local == 2e4f);
	assert_int_equal(hp.swa_pattern, 3);
	assert_int_equal(hp.sliding_window, 512);
	assert_true(hp.attn_scale == 1.0f / sqrtf(168.0f));
	/* transformers 5: rope_parameters per layer type, linear scaling on the global layers */
	assert_int_equal(parse("{" BASE ", \"rope_parameters\": {\"full_attention\": "
			       "{\"rope_type\": \"linear\", \"factor\": 8.0, \"rope_theta\": 1e6}, "
			       "\"sliding_attention\": {\"rope_type\": \"default\", "
			       "\"rope_theta\": 1e4}}}", &hp, &d), 0);
	assert_int_equal(hp.rope_scaling, ROPE_SCALING_LINEAR);
	assert_true(hp.rope_scaling_factor == 8.0f && hp.rope_theta == 1e6f);
	/* refused */
	struct {
		const char *json, *msg;
	} bad[] = {
		{"{\"model_type\": \"gemma3\", \"text_config\": {}}", "vision tower"},
		{"{" BASE ", \"final_logit_softcapping\": 30.0}", "final_logit_softcapping"},
		{"{" BASE ", \"attn_logit_softcapping\": 50.0}", "attn_logit_softcapping"},
		{"{" BASE ", \"hidden_activation\": \"gelu\"}", "activation 'gelu'"},
		{"{" BASE ", \"use_bidirectional_attention\": true}", "bidirectional"},
		{"{" BASE ", \"layer_types\": [\"full_attention\", \"sliding_attention\", "
		 "\"sliding_attention\", \"full_attention\", \"full_attention\", "
		 "\"sliding_attention\"]}", "period"},
		{"{" BASE ", \"layer_types\": [\"sliding_attention\"]}", "6 layers"},
		{"{" BASE ", \"query_pre_attn_scalar\": 0}", "query_pre_attn_scalar"},
		{"{" BASE ", \"rope_parameters\": {\"sliding_attention\": {\"rope_type\": "
		 "\"yarn\"}}}", "RoPE type 'yarn'"},
	};
	for (size_t i = 0; i < FT_ARRAY_LEN(bad); i++) {
		int rc = parse(bad[i].json, &hp, &d);
		if (rc == 0 || !strstr(d.text, bad[i].msg))
			fail_msg("case %zu: rc %d, message '%s' (want '%s')", i, rc, d.text,
				 bad[i].msg);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gguf_keys),
		cmocka_unit_test(test_config_json),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
