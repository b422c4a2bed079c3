/* export: the native engine's side of `ftlab export`. Rebuilds a finished run's weights
 * from its run directory (export.json names the base model and method; adapter/ holds a
 * LoRA run's PEFT adapter; checkpoint/ the trained weights of full and freeze runs) and
 * writes them in the asked format. Finding the run directory is the command line's job. */
#include "backends/native/engine.h"
#include "backends/native/export.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backends/native/io/model_file.h"
#include "backends/native/peft/adapter.h"
#include "backends/native/peft/merge.h"
#include "backends/native/tok/tokenizer.h"
#include "backends/native/train/checkpoint.h"
#include "common/util.h"
#include "schema/config.h"
#include "schema/table.h"
#include "common/banned.h"

struct param_sink {
	struct model_file *mf;
	size_t replaced;
	const char *path;
	struct diag *d;
};

static int put_param(void *ud, const char *name, const float *data, size_t numel)
{
	struct param_sink *ps = ud;
	const struct mf_tensor *ct = model_file_tensor(ps->mf, name);
	if (!ct)
		return 0; /* e.g. a tied lm_head the file does not store */
	if (ct->numel != numel)
		return diag_set(ps->d, FT_EINVAL, ps->path, 0, 0,
				"checkpoint tensor %s has %zu values, the base model %zu", name, numel,
				ct->numel);
	memcpy(((struct mf_tensor *)ct)->data, data, numel * sizeof(float));
	ps->replaced++;
	return 0;
}

int export_merged_hf(const char *dir, const struct model_file *mf, struct diag *d)
{
	int rc = merged_write_hf(dir, mf, d);
	if (rc || mf->tok.tokenizer_json || !mf->is_gguf || !mf->tok.tokens)
		return rc;
	/* A GGUF base carries its tokenizer as metadata: written as Hugging Face files so the
	 * directory loads as it is (AutoTokenizer.from_pretrained, ftlab generate DIR). */
	struct tokenizer *tok = NULL;
	if ((rc = tokenizer_from_model_file(&tok, mf, d)) == 0)
		rc = tokenizer_write_hf(dir, tok, mf->hp.n_ctx_train, d);
	tokenizer_free(tok);
	return rc;
}

/* base_model_name_or_path for adapter_config.json: the override, else the Hugging Face
 * repository named in the base GGUF's metadata, else the base path as the run recorded it
 * (a HF directory loads as it is; a .gguf path does not, which the note says). */
static bool path_is_dir(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static char *adapter_base_name(const char *base, const char *override)
{
	if (override)
		return ft_strdup(override);
	struct model_file *mf = NULL;
	struct diag d;
	diag_init(&d);
	char *name = NULL;
	bool dir = path_is_dir(base);
	if (!dir && model_file_load_tokenizer(&mf, base, &d) == 0 && mf->hf_repo)
		name = ft_strdup(mf->hf_repo);
	model_file_free(mf);
	if (name)
		return name;
	if (!dir)
		fprintf(stderr,
			"ftlab: note: adapter_config.json names the local file %s as its base model, "
			"which PEFT cannot load; pass --base-model with the Hugging Face repository "
			"(for example HuggingFaceTB/SmolLM2-135M-Instruct) or a model directory\n",
			base);
	return ft_strdup(base);
}

int engine_export(char **out_target, const char *run_dir, const char *format,
		  const char *out_dir, const char *base_model, struct diag *d)
{
	*out_target = NULL;
	int rc = 0;
	char *meta_p = path_join(run_dir, "export.json");
	char *ad_p = path_join(run_dir, "adapter");
	char *ck_p = path_join(run_dir, "checkpoint");
	char *text = NULL, *target = NULL, *base_name = NULL;
	size_t len;
	json_t *meta = NULL;
	struct model_file *mf = NULL;
	struct lora_adapter *ad = NULL;
	if (!meta_p || !ad_p || !ck_p) {
		rc = diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
		goto done;
	}
	if (!path_exists(meta_p)) {
		rc = diag_set(d, FT_EINVAL, run_dir, 0, 0,
			      "this run has no trained weights to export (not finished by the native "
			      "engine, or method none)");
		goto done;
	}
	if ((rc = file_read_all(&text, &len, meta_p, 1 << 20, d)) != 0)
		goto done;
	json_error_t err;
	meta = json_loadb(text, len, 0, &err);
	const char *base = json_string_value(json_object_get(meta, "base_model"));
	const char *method = json_string_value(json_object_get(meta, "method"));
	if (!base || !method) {
		rc = diag_set(d, FT_EINVAL, meta_p, 0, 0, "expected base_model and method");
		goto done;
	}
	int mi = schema_enum_index("method.type", method);
	bool lora = mi == METHOD_LORA || mi == METHOD_DORA || mi == METHOD_IA3 ||
		    mi == METHOD_PREFIX;
	if (mi == METHOD_PREFIX && strcmp(format, "peft") != 0) {
		rc = diag_set(d, FT_EINVAL, "", 0, 0,
			      "--format %s: a prefix-tuning run exports only as --format peft (its "
			      "key/value prefix does not merge into the weights, and llama.cpp's "
			      "adapters are LoRA only)", format);
		goto done;
	}
	bool adapter_fmt = strcmp(format, "peft") == 0 || strcmp(format, "gguf-adapter") == 0;
	if (adapter_fmt && !lora) {
		rc = diag_set(d, FT_EINVAL, "", 0, 0,
			      "--format %s needs a LoRA or DoRA run (this run used method %s); use "
			      "merged-safetensors or merged-gguf", format, method);
		goto done;
	}
	if ((rc = dir_make_all(out_dir, d)) != 0)
		goto done;
	if (strcmp(format, "peft") == 0) {
		if ((rc = adapter_read_peft(&ad, ad_p, false, 0, 0, 0, d)) != 0)
			goto done;
		if (!(base_name = adapter_base_name(base, base_model))) {
			rc = diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
			goto done;
		}
		ad->info.base_model = base_name;
		rc = adapter_write_peft(out_dir, ad->t, ad->n, &ad->info, d);
		target = ft_strdup(out_dir);
		goto done;
	}
	/* merges and the writers work on fp32 copies of every tensor */
	if ((rc = model_file_load(&mf, base, d)) != 0 || (rc = model_file_dequantize(mf, d)) != 0)
		goto done;
	const struct model_hparams *hp = &mf->hp;
	if (strcmp(format, "gguf-adapter") == 0) {
		if ((rc = adapter_read_peft(&ad, ad_p, false, hp->n_head, hp->n_head_kv,
					    hp->head_dim, d)) != 0)
			goto done;
		ad->info.gguf_arch = hp->arch == ARCH_GEMMA3 ? "gemma3" : "llama";
		if (hp->arch == ARCH_GPT2) {
			rc = diag_set(d, FT_EUNSUPP, "", 0, 0,
				      "--format gguf-adapter supports the llama family and Gemma 3");
			goto done;
		}
		target = path_join(out_dir, "adapter.gguf");
		rc = target ? adapter_write_gguf(target, ad->t, ad->n, &ad->info, d)
			    : diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
		goto done;
	}
	if (lora) {
		if ((rc = adapter_read_peft(&ad, ad_p, hp->rope_style == ROPE_INTERLEAVED, hp->n_head,
					    hp->n_head_kv, hp->head_dim, d)) != 0 ||
		    (rc = merge_lora(mf, ad, d)) != 0)
			goto done;
	} else {
		struct param_sink ps = {.mf = mf, .path = ck_p, .d = d};
		if ((rc = ckpt_read_params(ck_p, put_param, &ps, d)) != 0)
			goto done;
	}
	if (strcmp(format, "merged-safetensors") == 0) {
		target = ft_strdup(out_dir);
		rc = export_merged_hf(out_dir, mf, d);
	} else {
		target = path_join(out_dir, "model.gguf");
		rc = target ? merged_write_gguf(target, mf, d)
			    : diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
	}
done:
	if (rc == 0)
		*out_target = target;
	else
		free(target);
	free(base_name);
	adapter_free(ad);
	model_file_free(mf);
	json_decref(meta);
	free(text);
	free(meta_p);
	free(ad_p);
	free(ck_p);
	return rc;
}

