/* cmd_synth: `ftlab synth-model CONFIG -o DIR`: writes a Hugging Face model directory of
 * random weights in the shape a config.json describes, with a real tokenizer, so speed and
 * device checks can run on a model's shape where its weights cannot travel (the GPU
 * check builds its SmolLM2-135M-shaped model this way). Deterministic across machines. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/native/io/model_random.h"
#include "backends/native/peft/merge.h"
#include "backends/native/tok/tokenizer.h"
#include "common/sha256.h"
#include "common/util.h"
#include "runner/cli.h"

static const char *const synth_opts[] = {"-o", "--output", "--tokenizer", "--seed", "--std",
					 NULL};

int cmd_synth_model(const struct cli *cli, int argc, char **argv)
{
	(void)cli;
	const char *config = NULL, *outdir = NULL, *tok_src = NULL;
	int64_t seed = 1;
	double std = 0.0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (cli_is_help(a)) {
			cli_print_usage(cli_find("synth-model"), stdout);
			return 0;
		}
		if (a[0] != '-') {
			if (config)
				return cli_usage_error("synth-model", NULL,
						       "one CONFIG only, got '%s' and '%s'", config,
						       a);
			config = a;
			continue;
		}
		if (i + 1 >= argc)
			return cli_usage_error("synth-model", synth_opts,
					       "option '%s' needs a value", a);
		const char *v = argv[++i];
		if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) {
			outdir = v;
		} else if (strcmp(a, "--tokenizer") == 0) {
			tok_src = v;
		} else if (strcmp(a, "--seed") == 0) {
			if (!parse_i64(v, &seed) || seed < 0)
				return cli_usage_error("synth-model", NULL,
						       "--seed expects a non-negative integer, got "
						       "'%s'", v);
		} else if (strcmp(a, "--std") == 0) {
			if (!parse_f64(v, &std) || !(std > 0.0) || std > 1.0)
				return cli_usage_error("synth-model", NULL,
						       "--std expects a number in (0, 1], got '%s'",
						       v);
		} else {
			return cli_usage_error("synth-model", synth_opts, "unknown option '%s'", a);
		}
	}
	if (!config)
		return cli_usage_error("synth-model", NULL, "missing CONFIG (a config.json or a "
							    "directory holding one)");
	if (!outdir)
		return cli_usage_error("synth-model", NULL, "missing -o DIR");
	struct diag d;
	diag_init(&d);
	struct model_file *mf = NULL;
	struct tokenizer *tok = NULL;
	char *st_path = NULL;
	int rc = model_file_random_from_config(&mf, config, tok_src, (uint64_t)seed, (float)std,
					       &d);
	if (rc)
		goto done;
	/* the tokenizer must build, and every id it makes must be a row of the embedding */
	if ((rc = tokenizer_from_model_file(&tok, mf, &d)) != 0)
		goto done;
	if (tokenizer_n_vocab(tok) > mf->hp.n_vocab) {
		rc = diag_set(&d, FT_EINVAL, tok_src ? tok_src : config, 0, 0,
			      "the tokenizer has %d tokens but the config's vocab_size is %d",
			      tokenizer_n_vocab(tok), mf->hp.n_vocab);
		goto done;
	}
	if ((rc = merged_write_hf(outdir, mf, &d)) != 0)
		goto done;
	st_path = path_join(outdir, "model.safetensors");
	char hex[65];
	if (!st_path) {
		rc = diag_set(&d, FT_ENOMEM, outdir, 0, 0, "out of memory");
		goto done;
	}
	if ((rc = sha256_file_hex(hex, st_path, &d)) != 0)
		goto done;
	size_t n = 0;
	for (size_t i = 0; i < mf->n_tensors; i++)
		n += mf->tensors[i].numel;
	const struct model_hparams *hp = &mf->hp;
	printf("synth-model: wrote %s: %s, %d layers, hidden %d, heads %d/%d, ff %d, vocab %d, "
	       "%.1fM parameters (fp32, %.0f MB), seed %lld\n",
	       outdir, hp->arch == ARCH_GPT2 ? "gpt2" : hp->qkv_bias ? "qwen2" : "llama",
	       hp->n_layer, hp->n_embd, hp->n_head, hp->n_head_kv, hp->n_ff, hp->n_vocab,
	       (double)n / 1e6, (double)n * 4 / 1e6, (long long)seed);
	printf("model.safetensors sha256 %s\n", hex);
done:
	tokenizer_free(tok);
	model_file_free(mf);
	free(st_path);
	return rc ? cli_fail(&d) : 0;
}
