/* engine: generation and one-file evaluation for the command line (engine.h): loads the
 * model (GGUF or Hugging Face directory) and its tokenizer, puts an optional PEFT LoRA
 * adapter on it, and drives model/ and eval/. Option parsing and printing are cli/'s. */
#include "backends/native/engine.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "backends/native/data/prepare.h"
#include "backends/native/eval/evaluate.h"
#include "backends/native/io/model_file.h"
#include "backends/native/model/generate_text.h"
#include "backends/native/model/model.h"
#include "backends/native/native_engine.h"
#include "backends/native/tok/tokenizer.h"
#include "common/util.h"
#include "common/banned.h"

int engine_check_config(const struct config *cfg, const char **out_field, int *out_index,
			struct diag *d)
{
	*out_field = NULL;
	*out_index = -1;
	if (cfg->backend.type == BACKEND_EXEC)
		return 0;
	/* A sweep checks many points of one model: the header is read once. */
	static char *probed;
	static struct model_hparams hp;
	if (!probed || strcmp(probed, cfg->model.base) != 0) {
		free(probed);
		probed = NULL;
		int rc = model_file_probe(&hp, cfg->model.base, d);
		if (rc) {
			*out_field = "model.base";
			return rc;
		}
		probed = ft_strdup(cfg->model.base);
	}
	struct model_opts o;
	native_model_opts(&o, cfg, 1, 1, cfg->method.type, NULL);
	int bad = -1;
	int rc = model_check_method(&hp, &o, &bad, d);
	if (rc) {
		*out_index = bad;
		*out_field = bad < 0 ? (cfg->method.type == METHOD_FREEZE ? "method.layers"
									  : "model.base")
			     : cfg->method.type == METHOD_LORA ? "method.targets"
							       : "method.trainable";
	}
	return rc;
}

int engine_generate(char ***out_texts, const struct engine_generate_opts *o, struct diag *d)
{
	*out_texts = NULL;
	struct model_file *mf = NULL;
	struct tokenizer *tok = NULL;
	struct model *m = NULL;
	if (o->threads > 0)
		omp_set_num_threads(o->threads);
	int rc = model_file_load(&mf, o->model_path, d);
	if (!rc)
		rc = tokenizer_from_model_file(&tok, mf, d);
	if (!rc) /* no activation plan: generation sizes its KV cache itself */
		rc = eval_model_create(&m, mf, o->adapter, 0, 0, d);
	model_file_free(mf);
	if (!rc) {
		model_set_training(m, false);
		struct gen_text_opts go;
		memset(&go, 0, sizeof go);
		go.g.max_new_tokens = o->max_new_tokens;
		go.g.temperature = o->temperature;
		go.g.top_k = o->top_k;
		go.g.top_p = o->top_p;
		go.g.seed = o->seed;
		go.g.eos_id = -1;
		go.chat = !o->raw;
		go.system = o->system;
		go.stop_strings = o->stops;
		go.n_stop_strings = o->n_stops;
		rc = model_generate_text(m, tok, o->prompts, o->n_prompts, &go, out_texts, d);
	}
	model_free(m);
	tokenizer_free(tok);
	return rc;
}

/* The format from the first non-empty line's keys. */
static int sniff_format(const char *path, struct diag *d)
{
	char *buf = NULL;
	size_t len = 0;
	if (file_read_all(&buf, &len, path, DATA_FILE_MAX, d))
		return -1;
	int f = -1;
	const char *keys[] = {"\"rejected\"", "\"messages\"", "\"instruction\"", "\"prompt\"",
			      "\"text\""};
	const int fmts[] = {DATA_PREFERENCE, DATA_CHAT, DATA_INSTRUCTION, DATA_COMPLETION,
			    DATA_TEXT};
	char *nl = strchr(buf, '\n');
	if (nl)
		*nl = 0;
	for (size_t i = 0; i < FT_ARRAY_LEN(keys) && f < 0; i++)
		if (strstr(buf, keys[i]))
			f = fmts[i];
	free(buf);
	if (f < 0) {
		diag_set(d, FT_EINVAL, path, 1, 0,
			 "cannot tell the data format from the first line (no rejected, messages, instruction, prompt or text key)");
		diag_hint(d, "pass --format text|completion|instruction|chat|preference");
	}
	return f;
}

int engine_eval(struct engine_eval_info *out, const struct engine_eval_opts *o,
		const struct run_sink *sink, struct diag *d)
{
	memset(out, 0, sizeof *out);
	struct model_file *mf = NULL;
	struct tokenizer *tok = NULL;
	struct model *m = NULL;
	struct data_prepared prep;
	memset(&prep, 0, sizeof prep);
	struct eval_result res;
	memset(&res, 0, sizeof res);
	struct eval_settings s;
	memset(&s, 0, sizeof s);
	int rc = eval_settings_metrics(&s, o->metrics, o->n_metrics, d);
	if (rc)
		return rc;
	int f = o->format ? data_format_from_name(o->format) : sniff_format(o->data, d);
	if (f < 0)
		return d->code ? d->code
			       : diag_set(d, FT_EINVAL, "", 0, 0, "unknown data format '%s'", o->format);
	struct config_data cd;
	memset(&cd, 0, sizeof cd);
	cd.format = (enum data_format)f;
	cd.test.present = true;
	cd.test.path = (char *)o->data;
	cd.template_name = (char *)o->template_name;
	cd.system = (char *)o->system;
	cd.max_length = (int)o->max_length;
	cd.limit_test = o->limit;
	cd.on_bad_example = BAD_EXAMPLE_ERROR;

	s.batch_size = (int)o->batch;
	s.seq_len = (int)o->max_length;
	s.max_new_tokens = (int)o->max_new_tokens;
	s.temperature = 0;
	s.top_p = 1.0;
	static const char *const stop_nl[] = {"\n\n"};
	s.stop = stop_nl;
	s.n_stop = 1;
	s.seed = (uint64_t)o->seed;
	s.bootstrap = (int)o->bootstrap;
	s.level = 0.95;
	s.samples = (int)o->samples;
	s.progress = o->progress;
	s.progress_ud = o->progress_ud;

	if ((rc = model_file_load(&mf, o->model_path, d)) ||
	    (rc = tokenizer_from_model_file(&tok, mf, d)))
		goto done;
	if ((rc = data_prepare(&prep, &cd, 0, tok, d)) != 0)
		goto done;
	if (eval_wants_choices(&s) &&
	    (rc = data_prepare_choices(&prep, tok, o->choices, o->n_choices, NULL, 0, d)) != 0)
		goto done;
	if (o->warning) {
		char *warn = data_prepared_warnings(&prep);
		if (warn && *warn)
			o->warning(o->progress_ud, warn);
		free(warn);
	}
	if ((rc = eval_model_create(&m, mf, o->adapter, (int)o->batch, (int)o->max_length, d)) ||
	    (rc = eval_split(&res, m, tok, prep.test, &s, d)))
		goto done;
	struct run_sink snk;
	memset(&snk, 0, sizeof snk);
	if (sink)
		snk = *sink;
	rc = eval_emit(&snk, "test", o->adapter ? "tuned" : "base", NULL, &res, prep.test, &s,
		       o->predictions_path, d);
	out->examples = prep.test->n;
	out->format = data_format_name(cd.format);
	out->gen_tokens = res.gen_tokens;
	out->gen_seconds = res.gen_seconds;
done:
	eval_result_free(&res);
	model_free(m);
	data_prepared_free(&prep);
	tokenizer_free(tok);
	model_file_free(mf);
	return rc;
}
