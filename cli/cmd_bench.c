/* cmd_bench: `ftlab bench`: the options of the speed benchmark; the measuring is the
 * native engine's (backends/native/bench.c, through engine.h). --model takes a path or
 * the name of a model `make model` fetches (smollm2, gemma3).
 *   --mode generate: prefill and decode tokens/s for 1 and N prompts against the decode
 *                    bound (weight bytes per step over the measured bandwidth).
 *   --mode train:    tokens/s of training steps, MFU against the measured GEMM peak (CUDA:
 *                    cuBLAS's bf16 peak), process CPU time per step, peak resident (CPU)
 *                    or device (CUDA) memory; --objective dpo (orpo, simpo) times a
 *                    preference step of --batch pairs instead.
 *   --mode tokenize: tokenizer load time and encoding speed on --text FILE.
 * --weights f32 dequantizes every weight at load; --backend auto|cpu|cuda; --json: one
 * JSON object on stdout, the report on stderr. */
#include "cli/cli.h"

#include <stdio.h>
#include <string.h>

#include "backends/native/engine.h"
#include "common/util.h"
#include "schema/table.h"
#include "common/banned.h"

#define DEFAULT_MODEL "models/SmolLM2-135M-Instruct.Q4_1.gguf"

/* The models `make model` fetches, by short name. */
static const char *const model_names[][2] = {
	{"smollm2", DEFAULT_MODEL}, {"gemma3", "models/gemma-3-270m-q4_k_m.gguf"}};

static const char *const bench_opts_names[] = {
	"--model", "--mode", "--method", "--batch", "--seq", "--threads", "--steps",
	"--new-tokens", "--prompt-len", "--precision", "--backend", "--weights", "--logits",
	"--targets", "--objective",
	"--text", NULL};

int cmd_bench(const struct cli *cli, int argc, char **argv)
{
	const char *model_path = DEFAULT_MODEL, *mode = "generate", *method = "lora",
		   *objective = NULL, *text_path = "docs/engine.md";
	const char *backend = NULL; /* backend.type's default */
	int64_t batch = 0, seq = 256, threads = 0, steps = 0, new_tokens = 64, prompt_len = 64;
	int64_t targets = 0;
	bool bf16 = false, all_logits = false, weights_f32 = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (cli_is_help(a)) {
			cli_print_usage(cli_find("bench"), stdout);
			return 0;
		}
		if (i + 1 >= argc)
			return cli_usage_error("bench", bench_opts_names, "option '%s' needs a value", a);
		const char *v = argv[++i];
		int64_t *iv = NULL;
		if (strcmp(a, "--model") == 0) {
			model_path = v;
			for (size_t k = 0; k < FT_ARRAY_LEN(model_names); k++)
				if (strcmp(v, model_names[k][0]) == 0)
					model_path = model_names[k][1];
		} else if (strcmp(a, "--logits") == 0) {
			if (strcmp(v, "all") != 0 && strcmp(v, "chunked") != 0)
				return cli_usage_error("bench", NULL,
						       "--logits is chunked or all, not '%s'", v);
			all_logits = strcmp(v, "all") == 0;
		} else if (strcmp(a, "--targets") == 0) {
			iv = &targets;
		} else if (strcmp(a, "--mode") == 0) {
			mode = v;
		} else if (strcmp(a, "--text") == 0) {
			text_path = v;
		} else if (strcmp(a, "--method") == 0) {
			method = v;
		} else if (strcmp(a, "--backend") == 0) {
			backend = v;
		} else if (strcmp(a, "--precision") == 0) {
			int p = schema_enum_index("train.precision", v);
			if (p < 0)
				return cli_usage_error("bench", NULL,
						       "--precision is fp32 or bf16, not '%s'", v);
			bf16 = p == PRECISION_BF16;
		} else if (strcmp(a, "--weights") == 0 &&
			   (strcmp(v, "file") == 0 || strcmp(v, "f32") == 0)) {
			weights_f32 = strcmp(v, "f32") == 0;
		} else if (strcmp(a, "--weights") == 0) {
			return cli_usage_error("bench", NULL, "--weights is file or f32, not '%s'", v);
		} else if (strcmp(a, "--objective") == 0) {
			objective = v;
		} else if (strcmp(a, "--batch") == 0) {
			iv = &batch;
		} else if (strcmp(a, "--seq") == 0) {
			iv = &seq;
		} else if (strcmp(a, "--threads") == 0) {
			iv = &threads;
		} else if (strcmp(a, "--steps") == 0) {
			iv = &steps;
		} else if (strcmp(a, "--new-tokens") == 0) {
			iv = &new_tokens;
		} else if (strcmp(a, "--prompt-len") == 0) {
			iv = &prompt_len;
		} else {
			return cli_usage_error("bench", bench_opts_names, "unknown option '%s'", a);
		}
		if (iv && (!parse_i64(v, iv) || *iv < 0 || *iv > 1000000 ||
			   (*iv == 0 && iv != &threads && iv != &targets)))
			return cli_usage_error("bench", NULL, "%s expects a positive integer, got '%s'",
					       a, v);
	}
	int bt = backend ? schema_enum_index("backend.type", backend) : BACKEND_AUTO;
	if (bt < 0 || bt == BACKEND_EXEC)
		return cli_usage_error("bench", NULL, "--backend is auto, cpu or cuda, not '%s'",
				       backend);
	struct engine_bench_opts o = {
		.model_path = model_path,
		.backend = (enum backend_type)bt,
		.seq = (int)seq,
		.steps = (int)steps,
		.new_tokens = (int)new_tokens,
		.prompt_len = (int)prompt_len,
		.threads = (int)threads,
		.bf16 = bf16,
		.weights_f32 = weights_f32,
		.json = cli->json,
		.all_logits = all_logits,
		.targets = (int)targets,
	};
	o.generate = strcmp(mode, "generate") == 0;
	o.tokenize = strcmp(mode, "tokenize") == 0;
	o.text_path = text_path;
	if (!o.generate && !o.tokenize && strcmp(mode, "train") != 0)
		return cli_usage_error("bench", NULL, "--mode is train, generate or tokenize, not '%s'",
				       mode);
	if (o.tokenize && cli->json)
		return cli_usage_error("bench", NULL,
				       "--json is for --mode train and generate, not tokenize");
	o.batch = (int)(batch ? batch : o.generate ? 8 : 4);
	if (strcmp(method, "full") == 0)
		o.method = ENGINE_BENCH_FULL;
	else if (strcmp(method, "lora") == 0)
		o.method = ENGINE_BENCH_LORA;
	else if (strcmp(method, "lora-all") == 0)
		o.method = ENGINE_BENCH_LORA_ALL;
	else if (strcmp(method, "dora") == 0)
		o.method = ENGINE_BENCH_DORA;
	else if (strcmp(method, "ia3") == 0)
		o.method = ENGINE_BENCH_IA3;
	else if (strcmp(method, "prefix") == 0)
		o.method = ENGINE_BENCH_PREFIX;
	else if (!o.generate && !o.tokenize)
		return cli_usage_error("bench", NULL,
				       "--method is lora, lora-all, dora, ia3, prefix or full, not "
				       "'%s'", method);
	if (objective) {
		int k = schema_enum_index("train.objective", objective);
		if (k < 0 || o.generate || o.tokenize)
			return cli_usage_error("bench", NULL, "--objective (train mode) is sft, dpo, orpo "
					       "or simpo, not '%s'", objective);
		o.objective = (enum train_objective)k;
	}
	struct diag d;
	diag_init(&d);
	return engine_bench(&o, &d) ? cli_fail(&d) : 0;
}
