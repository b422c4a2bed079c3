/* fuzz_schema: libFuzzer harness for the experiment loader: YAML bytes -> node tree ->
 * validation -> canonical JSON -> YAML dump -> sweep expansion. Inputs are loaded as
 * /tmp/ftlab-fuzz-schema/work/exp.yaml, a directory set up with the small files the seed
 * corpus names (m.gguf, train.jsonl, ...) so that inputs get past path checks. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/diag.h"
#include "common/util.h"
#include "runner/sweep.h"
#include "runner/sweep_ctl.h"
#include "schema/schema.h"
#include "common/banned.h"

#define FUZZ_DIR "/tmp/ftlab-fuzz-schema"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void put(const char *path, const char *text)
{
	FILE *f = fopen(path, "wb");
	if (f) {
		fputs(text, f);
		fclose(f);
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	mkdir(FUZZ_DIR, 0755);
	mkdir(FUZZ_DIR "/work", 0755);
	mkdir(FUZZ_DIR "/models", 0755);
	mkdir(FUZZ_DIR "/work/data", 0755);
	mkdir(FUZZ_DIR "/work/data/support", 0755);
	mkdir(FUZZ_DIR "/work/base", 0755);
	put(FUZZ_DIR "/work/m.gguf", "GGUF");
	put(FUZZ_DIR "/m.gguf", "GGUF");
	put(FUZZ_DIR "/models/SmolLM2-135M-Instruct.Q4_1.gguf", "GGUF");
	put(FUZZ_DIR "/work/train.jsonl", "{\"text\": \"a\"}\n");
	put(FUZZ_DIR "/train.jsonl", "{\"text\": \"a\"}\n");
	put(FUZZ_DIR "/work/data/support/train.jsonl", "{\"text\": \"a\"}\n");
	put(FUZZ_DIR "/work/data/support/test.jsonl", "{\"text\": \"a\"}\n");
	put(FUZZ_DIR "/work/base.yaml", "seed: 1\nmodel:\n  base: m.gguf\n");
	put(FUZZ_DIR "/work/b.yaml", "extends: exp.yaml\n");
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct diag d;
	diag_init(&d);
	struct experiment *e = NULL;
	if (experiment_load_buffer(&e, FUZZ_DIR "/work/exp.yaml", (const char *)data, size, NULL,
				   0, &d) == 0) {
		FILE *devnull = fopen("/dev/null", "w");
		if (devnull) {
			if (experiment_write_yaml(devnull, e) != 0 ||
			    config_write_yaml(devnull, experiment_config(e)) != 0)
				abort(); /* a valid experiment must always print */
			fclose(devnull);
		}
		struct sweep_plan *plan = NULL;
		if (sweep_expand(&plan, e, 64, &d) == 0 && plan->n == 0 && !plan->adaptive)
			abort(); /* a valid sweep has at least one point (bayes: chosen later) */
		sweep_plan_free(plan);
		/* The controller of the sweep: a bayes sweep's first points and their configs. */
		struct sweep_ctl *ctl = NULL;
		diag_init(&d);
		if (sweep_ctl_create(&ctl, e, 64, &d) == 0) {
			for (int i = 0; i < 3; i++) {
				const struct sweep_point *pt = NULL;
				if (sweep_ctl_next(ctl, &pt, &d) != 0 || !pt)
					break;
				if (!pt->cfg)
					abort();
				sweep_ctl_result(ctl, pt->index, SWEEP_RUN_FINISHED, (double)i);
			}
		} else if (d.code == 0 || !d.text[0]) {
			abort();
		}
		sweep_ctl_free(ctl);
	} else if (d.code == 0 || !d.text[0]) {
		abort(); /* every failure carries a message */
	}
	experiment_free(e);
	return 0;
}
