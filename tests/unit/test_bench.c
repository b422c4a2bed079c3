/* `ftlab bench` with the real binary on a tiny model: train (lora, lora-all, full) and
 * generate with --json (one object on stdout, the text on stderr; the fields the GPU check
 * reads), --backend auto/cpu/cuda (cuda without a device is exit 2 with the probe's
 * reason; with a device, the measured peaks and the peak device memory are reported), and
 * usage errors. Speed itself is never asserted. */
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

#include "backends/native/ops/cuda/ops_cuda.h"
#include "common/util.h"
#include "tests/unit/scratch.h"
#include "tests/unit/tiny_model.h"
#include "common/banned.h"

static char model[1200], sout[1 << 16], serr[1 << 16];

/* Runs ftlab with args; stdout and stderr separately. */
static int bench(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int bench(const char *fmt, ...)
{
	char args[2048], cmd[4096], errf[1300];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(args, sizeof args, fmt, ap);
	va_end(ap);
	snprintf(errf, sizeof errf, "%s.err", model);
	snprintf(cmd, sizeof cmd, "OMP_NUM_THREADS=2 '%s' %s 2>'%s'", getenv("FTLAB_BIN"), args,
		 errf);
	FILE *f = popen(cmd, "r");
	assert_non_null(f);
	size_t n = fread(sout, 1, sizeof sout - 1, f);
	sout[n] = '\0';
	int st = pclose(f);
	char *e = NULL;
	struct diag d;
	diag_init(&d);
	serr[0] = '\0';
	if (file_read_all(&e, NULL, errf, sizeof serr, &d) == 0) {
		snprintf(serr, sizeof serr, "%s", e);
		free(e);
	}
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int setup(void **state)
{
	(void)state;
	if (!getenv("FTLAB_BIN"))
		return 0;
	const char *dir = scratch_open("bench");
	snprintf(model, sizeof model, "%s/tiny.gguf", dir);
	struct tiny_model_spec s;
	tiny_model_spec_default(&s, ARCH_LLAMA);
	struct diag d;
	diag_init(&d);
	return tiny_model_write_gguf(model, &s, &d);
}

static int teardown(void **state)
{
	(void)state;
	return getenv("FTLAB_BIN") ? scratch_close() : 0;
}

static json_t *parse_stdout(void)
{
	json_error_t je;
	json_t *j = json_loads(sout, 0, &je);
	if (!j)
		fail_msg("stdout is not one JSON object (%s):\n%s", je.text, sout);
	return j;
}

static double num(json_t *j, const char *key)
{
	json_t *v = json_object_get(j, key);
	if (!json_is_number(v))
		fail_msg("no number '%s' in %s", key, sout);
	return json_number_value(v);
}

static void test_train_json(void **state)
{
	(void)state;
	if (!getenv("FTLAB_BIN"))
		skip();
	const char *methods[] = {"lora", "lora-all", "full"};
	for (int i = 0; i < 3; i++) {
		int rc = bench("--json bench --backend cpu --mode train --model '%s' --method %s "
			       "--batch 2 --seq 16 --steps 2 --precision fp32",
			       model, methods[i]);
		if (rc != 0)
			fail_msg("exit %d: %s", rc, serr);
		json_t *j = parse_stdout();
		assert_string_equal(json_string_value(json_object_get(j, "backend")), "cpu");
		assert_string_equal(json_string_value(json_object_get(j, "method")), methods[i]);
		assert_int_equal((int)num(j, "batch"), 2);
		assert_int_equal((int)num(j, "seq"), 16);
		assert_int_equal((int)num(j, "steps"), 2);
		double tps = num(j, "tokens_per_s"), step = num(j, "step_s");
		assert_true(tps > 0 && step > 0);
		assert_true(fabs(tps * step - 32.0) < 1e-3 * 32.0); /* B*T tokens per step */
		double mfu = num(j, "mfu");
		assert_true(mfu > 0); /* no upper bound: the peak is measured on a busy machine */
		/* MFU is model FLOPs at this rate over the measured peak */
		assert_true(fabs(mfu - num(j, "flops_per_token") * tps / 1e9 / num(j, "peak_gflops")) <
			    1e-3 * mfu);
		assert_true(isfinite(num(j, "loss")) && num(j, "loss") > 0);
		assert_true(num(j, "activations_bytes") > 0);
		if (strcmp(methods[i], "full") == 0)
			assert_true(num(j, "grads_bytes") >= num(j, "params_bytes"));
		assert_null(json_object_get(j, "peak_device_bytes")); /* CPU: none */
		/* the text went to stderr */
		assert_non_null(strstr(serr, "ftlab bench --mode train: model"));
		assert_non_null(strstr(serr, "backend cpu"));
		json_decref(j);
	}
}

static void test_generate_json(void **state)
{
	(void)state;
	if (!getenv("FTLAB_BIN"))
		skip();
	int rc = bench("bench --backend cpu --mode generate --model '%s' --batch 3 --prompt-len 5 "
		       "--new-tokens 4 --json",
		       model);
	if (rc != 0)
		fail_msg("exit %d: %s", rc, serr);
	json_t *j = parse_stdout();
	json_t *runs = json_object_get(j, "runs");
	assert_int_equal(json_array_size(runs), 2);
	json_t *one = json_array_get(runs, 0), *many = json_array_get(runs, 1);
	assert_int_equal(json_integer_value(json_object_get(one, "prompts")), 1);
	assert_int_equal(json_integer_value(json_object_get(many, "prompts")), 3);
	assert_int_equal(json_integer_value(json_object_get(one, "prefill_tokens")), 5);
	assert_int_equal(json_integer_value(json_object_get(many, "prefill_tokens")), 15);
	assert_int_equal(json_integer_value(json_object_get(one, "decode_tokens")), 3);
	assert_int_equal(json_integer_value(json_object_get(many, "decode_tokens")), 9);
	assert_true(num(j, "decode_bound_tokens_per_s") > 0);
	assert_true(num(j, "bandwidth_gbs") > 0);
	json_decref(j);
	/* without --json: text on stdout, as before */
	rc = bench("bench --backend cpu --mode generate --model '%s' --batch 2 --prompt-len 4 "
		   "--new-tokens 2",
		   model);
	assert_int_equal(rc, 0);
	assert_non_null(strstr(sout, "prompts 2: prefill 8 tokens"));
}

static void test_backends(void **state)
{
	(void)state;
	if (!getenv("FTLAB_BIN"))
		skip();
	char why[512] = "";
	bool dev = ops_cuda_probe(NULL, why, sizeof why) == 0;
	int rc = bench("--json bench --backend cuda --mode train --model '%s' --batch 2 --seq 8 "
		       "--steps 1 --precision bf16",
		       model);
	if (!dev) {
		assert_int_equal(rc, 2);
		char want[600];
		snprintf(want, sizeof want, "ftlab: error: %s\n", why);
		assert_string_equal(serr, want);
		assert_string_equal(sout, "");
	} else {
		if (rc != 0)
			fail_msg("bench on the CUDA device: exit %d: %s", rc, serr);
		json_t *j = parse_stdout();
		assert_string_equal(json_string_value(json_object_get(j, "backend")), "cuda");
		assert_true(num(j, "peak_bf16_tflops") > 0 && num(j, "peak_tf32_tflops") > 0);
		assert_true(num(j, "copy_gbs") > 0);
		assert_true(num(j, "peak_device_bytes") >= num(j, "activations_bytes"));
		assert_true(num(j, "mfu") > 0 && num(j, "mfu") < 1);
		assert_non_null(strstr(serr, "device memory: peak"));
		json_decref(j);
	}
	/* auto: the device when there is one, else the CPU */
	rc = bench("bench --mode train --model '%s' --batch 1 --seq 8 --steps 1", model);
	assert_int_equal(rc, 0);
	assert_non_null(strstr(sout, dev ? "backend cuda" : "backend cpu"));
	/* usage errors */
	rc = bench("bench --backend tpu --model '%s'", model);
	assert_int_equal(rc, 2);
	assert_non_null(strstr(serr, "--backend is auto, cpu or cuda, not 'tpu'"));
	rc = bench("bench --precision fp16 --model '%s'", model);
	assert_int_equal(rc, 2);
	assert_non_null(strstr(serr, "--precision is fp32 or bf16, not 'fp16'"));
	rc = bench("bench --mode train --method lokr --model '%s'", model);
	assert_int_equal(rc, 2);
	assert_non_null(strstr(serr, "--method is lora, lora-all, dora, ia3, prefix, full, adapter or "
				     "adapter-houlsby, not 'lokr'"));
	rc = bench("bench --batch 0 --model '%s'", model);
	assert_int_equal(rc, 2);
	assert_non_null(strstr(serr, "--batch expects a positive integer"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_train_json),
		cmocka_unit_test(test_generate_json),
		cmocka_unit_test(test_backends),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
