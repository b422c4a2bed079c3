/* synth: the native engine's side of `ftlab synth-model`: a model of random weights in a
 * config's shape (io/model_random.h) with a real tokenizer, checked to build and to fit
 * the embedding, written as a Hugging Face directory by the merged-weights writer. */
#include "backends/native/engine.h"

#include <stdio.h>
#include <stdlib.h>

#include "backends/native/io/model_random.h"
#include "backends/native/peft/merge.h"
#include "backends/native/tok/tokenizer.h"
#include "common/hash.h"
#include "common/util.h"
#include "common/banned.h"

int engine_synth_model(char **out_summary, char out_sha256[65], const char *config,
		       const char *tokenizer, uint64_t seed, double std, const char *out_dir,
		       struct diag *d)
{
	*out_summary = NULL;
	out_sha256[0] = '\0';
	struct model_file *mf = NULL;
	struct tokenizer *tok = NULL;
	char *st_path = NULL;
	int rc = model_file_random_from_config(&mf, config, tokenizer, seed, (float)std, d);
	if (rc)
		goto done;
	/* the tokenizer must build, and every id it makes must be a row of the embedding */
	if ((rc = tokenizer_from_model_file(&tok, mf, d)) != 0)
		goto done;
	if (tokenizer_n_vocab(tok) > mf->hp.n_vocab) {
		rc = diag_set(d, FT_EINVAL, tokenizer ? tokenizer : config, 0, 0,
			      "the tokenizer has %d tokens but the config's vocab_size is %d",
			      tokenizer_n_vocab(tok), mf->hp.n_vocab);
		goto done;
	}
	if ((rc = merged_write_hf(out_dir, mf, d)) != 0)
		goto done;
	if (!(st_path = path_join(out_dir, "model.safetensors"))) {
		rc = diag_set(d, FT_ENOMEM, out_dir, 0, 0, "out of memory");
		goto done;
	}
	if ((rc = sha256_file_hex(out_sha256, st_path, d)) != 0)
		goto done;
	size_t n = 0;
	for (size_t i = 0; i < mf->n_tensors; i++)
		n += mf->tensors[i].numel;
	const struct model_hparams *hp = &mf->hp;
	struct strbuf sb = {0};
	rc = strbuf_printf(&sb,
			   "%s, %d layers, hidden %d, heads %d/%d, ff %d, vocab %d, %.1fM "
			   "parameters (fp32, %.0f MB), seed %llu",
			   hp->arch == ARCH_GPT2 ? "gpt2" : hp->qkv_bias ? "qwen2" : "llama",
			   hp->n_layer, hp->n_embd, hp->n_head, hp->n_head_kv, hp->n_ff,
			   hp->n_vocab, (double)n / 1e6, (double)n * 4 / 1e6,
			   (unsigned long long)seed);
	if (rc) {
		strbuf_free(&sb);
		rc = diag_set(d, FT_ENOMEM, out_dir, 0, 0, "out of memory");
		goto done;
	}
	*out_summary = strbuf_detach(&sb);
done:
	tokenizer_free(tok);
	model_file_free(mf);
	free(st_path);
	return rc;
}
