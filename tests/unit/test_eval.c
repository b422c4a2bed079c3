/* Unit tests for eval/evaluate: teacher-forced loss, perplexity and token accuracy equal a
 * direct computation from model_forward on a tiny random llama; results and paired deltas
 * through a run_sink; and, on SmolLM2-135M (models/), generation with stop strings scored
 * by the text metrics, the predictions file, and ChatML detection from the tokenizer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "backends/native/data/prepare.h"
#include "backends/native/engine.h"
#include "backends/native/eval/evaluate.h"
#include "common/util.h"
#include "backends/native/peft/adapter.h"
#include "common/rng.h"
#include "tests/unit/tiny_model.h"
#include "tests/unit/tiny_weights.h"
#include "common/banned.h"

struct rec {
	char model[8], metric[32];
	double v, lo, hi;
};
struct sink_log {
	struct rec r[64];
	size_t n, n_pred;
};

static int log_result(void *ud, const char *model, const char *split, const char *metric,
		      double v, double lo, double hi)
{
	(void)split;
	struct sink_log *l = ud;
	assert_true(l->n < 64);
	struct rec *r = &l->r[l->n++];
	snprintf(r->model, sizeof r->model, "%s", model);
	snprintf(r->metric, sizeof r->metric, "%s", metric);
	r->v = v;
	r->lo = lo;
	r->hi = hi;
	return 0;
}

static int log_pred(void *ud, const char *model, const char *split, int64_t ex, const char *p,
		    const char *ref, const char *out, double score)
{
	(void)model, (void)split, (void)ex, (void)p, (void)ref, (void)out, (void)score;
	((struct sink_log *)ud)->n_pred++;
	return 0;
}

static const struct rec *find(const struct sink_log *l, const char *model, const char *metric)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->r[i].model, model) == 0 && strcmp(l->r[i].metric, metric) == 0)
			return &l->r[i];
	return NULL;
}

/* 7 examples of varied length over vocab 37, loss on the second half. */
static struct tok_set *tiny_set(void)
{
	struct tok_set *s = calloc(1, sizeof *s);
	s->n = 7;
	s->ex = calloc(s->n, sizeof *s->ex);
	for (size_t i = 0; i < s->n; i++) {
		struct tok_example *e = &s->ex[i];
		e->n = 4 + 2 * i;
		e->ids = malloc(e->n * sizeof *e->ids);
		e->loss = malloc(e->n);
		for (size_t k = 0; k < e->n; k++) {
			e->ids[k] = (int32_t)((i * 7 + k * 5) % 37);
			e->loss[k] = k >= e->n / 2;
		}
	}
	return s;
}

/* full: every position's logits (model_logits), the reference for the head that the
 * evaluation runs only on scored positions */
static struct model *tiny_model_ex(int B, int T, bool full)
{
	struct model_file *mf = tiny_llama_mf(false, false, ROPE_HALF, 3);
	struct model_opts o;
	memset(&o, 0, sizeof o);
	o.method = METHOD_NONE;
	o.layers_first = o.layers_last = -1;
	o.max_batch = B;
	o.max_seq = T;
	o.full_logits = full;
	struct model *m = NULL;
	struct diag d;
	diag_init(&d);
	assert_int_equal(model_create(&m, mf, &o, &d), 0);
	model_file_free(mf);
	return m;
}

static struct model *tiny_model(int B, int T)
{
	return tiny_model_ex(B, T, false);
}

static void test_teacher_forced_matches_forward(void **state)
{
	(void)state;
	struct tok_set *set = tiny_set();
	struct model *m = tiny_model(3, 16);
	struct eval_settings s;
	memset(&s, 0, sizeof s);
	s.want_tf[TF_LOSS] = s.want_tf[TF_PERPLEXITY] = s.want_tf[TF_TOKEN_ACCURACY] = true;
	s.batch_size = 3;
	s.seq_len = 16;
	s.bootstrap = 200;
	s.level = 0.95;
	s.seed = 5;
	struct eval_result r;
	struct diag d;
	diag_init(&d);
	assert_int_equal(eval_split(&r, m, NULL, set, &s, &d), 0);
	/* Direct: one example at a time through model_forward with all logits. */
	struct model *full = tiny_model_ex(1, 16, true);
	double sum_loss = 0, ntok = 0, correct = 0;
	for (size_t i = 0; i < set->n; i++) {
		const struct tok_example *e = &set->ex[i];
		int32_t tg[32];
		data_targets(tg, e->ids, e->loss, e->n);
		float loss;
		long nt;
		assert_int_equal(model_forward(full, e->ids, tg, 1, (int)e->n, &loss, &nt), 0);
		const float *lg = model_logits(full);
		double c = 0;
		for (size_t t = 0; t < e->n; t++) {
			if (tg[t] < 0)
				continue;
			int best = 0;
			for (int v = 1; v < 37; v++)
				if (lg[t * 37 + (size_t)v] > lg[t * 37 + (size_t)best])
					best = v;
			c += best == tg[t];
		}
		assert_true(fabs(r.tf_rows[i * 3 + 0] - loss * nt) < 1e-4 * (1 + loss * nt));
		assert_true(r.tf_rows[i * 3 + 1] == nt);
		assert_true(r.tf_rows[i * 3 + 2] == c);
		sum_loss += loss * nt;
		ntok += nt;
		correct += c;
	}
	struct sink_log log = {0};
	struct run_sink sink = {&log, NULL, log_result, log_pred, NULL, NULL, NULL};
	assert_int_equal(eval_emit(&sink, "test", "base", NULL, &r, set, &s, NULL, &d), 0);
	const struct rec *l = find(&log, "base", "loss"), *p = find(&log, "base", "perplexity"),
			 *a = find(&log, "base", "token_accuracy");
	assert_non_null(l);
	assert_true(fabs(l->v - sum_loss / ntok) < 1e-5);
	assert_true(fabs(p->v - exp(sum_loss / ntok)) < 1e-4);
	assert_true(fabs(a->v - correct / ntok) < 1e-12);
	assert_true(l->lo <= l->v && l->v <= l->hi && l->lo < l->hi);
	/* Paired against itself: the delta is exactly zero with a zero-width interval. */
	log.n = 0;
	assert_int_equal(eval_emit(&sink, "test", NULL, &r, &r, set, &s, NULL, &d), 0);
	const struct rec *dl = find(&log, "delta", "loss");
	assert_non_null(dl);
	assert_true(dl->v == 0 && dl->lo == 0 && dl->hi == 0);
	assert_non_null(find(&log, "tuned", "token_accuracy"));
	assert_non_null(find(&log, "base", "token_accuracy"));
	eval_result_free(&r);
	model_free(m);
	model_free(full);
	tok_set_free(set);
}

static void test_unknown_metric(void **state)
{
	(void)state;
	struct eval_settings s;
	memset(&s, 0, sizeof s);
	const char *names[] = {"loss", "exact_mach"};
	struct diag d;
	diag_init(&d);
	assert_int_equal(eval_settings_metrics(&s, names, 2, &d), FT_EINVAL);
	assert_string_equal(d.text, "unknown metric 'exact_mach'");
	assert_string_equal(d.hint, "did you mean 'exact_match'?");
}

static char *smol_path(void)
{
	const char *root = getenv("FTLAB_ROOT");
	return path_join(root ? root : ".", "models/SmolLM2-135M-Instruct.Q4_1.gguf");
}

static void test_smollm2_generation(void **state)
{
	(void)state;
	char *path = smol_path();
	if (!path_exists(path)) {
		free(path);
		skip();
	}
	struct diag d;
	diag_init(&d);
	struct model_file *mf = NULL;
	struct tokenizer *tok = NULL;
	assert_int_equal(model_file_load(&mf, path, &d), 0);
	assert_int_equal(tokenizer_from_model_file(&tok, mf, &d), 0);
	assert_true(data_tokenizer_has_chatml(tok));
	char *sys = template_chatml_default_system(tokenizer_chat_template(tok));
	assert_non_null(sys);
	assert_non_null(strstr(sys, "SmolLM"));
	free(sys);

	/* Stop strings cut the output; whitespace is trimmed; special tokens are dropped. */
	int32_t *ids = NULL;
	size_t n = 0;
	const char *gen_text = " Paris\n\nMore text<|im_end|>";
	assert_int_equal(tokenizer_encode_ex(tok, gen_text, strlen(gen_text), TOK_PARSE_SPECIAL, &ids,
					     &n, &d), 0);
	char *txt = NULL;
	const char *stops[] = {"\n\n"};
	assert_int_equal(eval_output_text(&txt, tok, ids, n, stops, 1), 0);
	assert_string_equal(txt, "Paris");
	free(txt);
	assert_int_equal(eval_output_text(&txt, tok, ids, n, NULL, 0), 0);
	assert_string_equal(txt, "Paris\n\nMore text");
	free(txt);
	free(ids);

	/* Four questions the instruct model answers; ChatML via template auto. */
	char tmpl[] = "/tmp/ftlab-eval-XXXXXX";
	int fd = mkstemp(tmpl);
	FILE *f = fdopen(fd, "w");
	fputs("{\"prompt\": \"What is the capital of France? Answer with one word.\", \"completion\": \"Paris\"}\n"
	      "{\"prompt\": \"What color is the sky on a clear day? Answer with one word.\", \"completion\": \"Blue\"}\n"
	      "{\"prompt\": \"How many legs does a spider have? Answer with a number.\", \"completion\": \"8\"}\n"
	      "{\"prompt\": \"Say hello.\", \"completion\": \"Hello\"}\n", f);
	fclose(f);
	struct config_data cd;
	memset(&cd, 0, sizeof cd);
	cd.format = DATA_COMPLETION;
	cd.test = (struct split_spec){true, tmpl, NULL, 0, 0};
	cd.template_name = "auto";
	cd.max_length = 128;
	struct data_prepared prep;
	assert_int_equal(data_prepare(&prep, &cd, 2048, tok, &d), 0);
	assert_int_equal(prep.tmpl.kind, TEMPLATE_CHATML);
	assert_int_equal(prep.test->n, 4);
	/* The prompt ends with "<|im_start|>assistant\n"; EOS is <|im_end|>. */
	const struct tok_example *e = &prep.test->ex[0];
	char *ptxt = NULL;
	size_t plen = 0;
	assert_int_equal(tokenizer_decode(tok, e->ids, e->n_prompt, false, &ptxt, &plen), 0);
	assert_string_equal(ptxt, "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
				  "Hugging Face<|im_end|>\n<|im_start|>user\nWhat is the capital of France? "
				  "Answer with one word.<|im_end|>\n<|im_start|>assistant\n");
	free(ptxt);
	assert_int_equal(e->ids[e->n - 2], tokenizer_token_id(tok, "<|im_end|>"));
	assert_int_equal(e->loss[e->n - 2], 1);
	assert_int_equal(e->loss[e->n - 1], 0);

	struct model_opts o;
	memset(&o, 0, sizeof o);
	o.method = METHOD_NONE;
	o.layers_first = o.layers_last = -1;
	o.max_batch = 4;
	o.max_seq = 128;
	struct model *m = NULL;
	assert_int_equal(model_create(&m, mf, &o, &d), 0);
	struct eval_settings s;
	memset(&s, 0, sizeof s);
	const char *names[] = {"loss", "exact_match", "f1", "chrf"};
	assert_int_equal(eval_settings_metrics(&s, names, 4, &d), 0);
	s.batch_size = 4;
	s.seq_len = 128;
	s.max_new_tokens = 8;
	s.top_p = 1;
	s.stop = stops;
	s.n_stop = 1;
	s.bootstrap = 100;
	s.level = 0.95;
	s.samples = 2;
	struct eval_result r;
	assert_int_equal(eval_split(&r, m, tok, prep.test, &s, &d), 0);
	size_t right = 0;
	for (size_t i = 0; i < 4; i++) {
		print_message("output %zu: '%s' (reference '%s')\n", i, r.outputs[i], prep.test->ex[i].reference);
		double em;
		assert_int_equal(metric_sentence(&em, METRIC_EXACT_MATCH, r.outputs[i],
						 prep.test->ex[i].reference), 0);
		assert_true(r.rows[METRIC_EXACT_MATCH][i] == em);
		right += em == 1.0;
	}
	/* The instruct model knows the capital of France (in a sentence: F1 > 0, EM may be 0). */
	assert_non_null(strstr(r.outputs[0], "Paris"));
	assert_true(r.rows[METRIC_F1][0] > 0 && r.rows[METRIC_F1][0] < 1);
	assert_true(r.rows[METRIC_CHRF] != NULL);
	char pred[] = "/tmp/ftlab-pred-XXXXXX";
	close(mkstemp(pred));
	struct sink_log log = {0};
	struct run_sink sink = {&log, NULL, log_result, log_pred, NULL, NULL, NULL};
	assert_int_equal(eval_emit(&sink, "test", "base", NULL, &r, prep.test, &s, pred, &d), 0);
	assert_int_equal(log.n_pred, 2);
	assert_true(fabs(find(&log, "base", "exact_match")->v - right / 4.0) < 1e-12);
	char *buf = NULL;
	size_t len = 0;
	assert_int_equal(file_read_all(&buf, &len, pred, 1 << 20, &d), 0);
	size_t lines = 0;
	for (size_t i = 0; i < len; i++)
		lines += buf[i] == '\n';
	assert_int_equal(lines, 4);
	assert_non_null(strstr(buf, "\"reference\": \"Paris\""));
	free(buf);
	unlink(pred);
	eval_result_free(&r);
	model_free(m);
	data_prepared_free(&prep);
	tokenizer_free(tok);
	model_file_free(mf);
	unlink(tmpl);
	free(path);
}


/* A LoRA model's weights written as a PEFT adapter and loaded back by eval_model_create
 * (GGUF base: q/k rows reordered both ways) give the same loss; the base model differs.
 * Then `ftlab eval` runs end to end on the tiny GGUF with that adapter. */
static void test_adapter_roundtrip(void **state)
{
	(void)state;
	char dir[] = "/tmp/ftlab-evad-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char *gguf = path_join(dir, "tiny.gguf"), *ad = path_join(dir, "adapter");
	struct tiny_model_spec spec;
	tiny_model_spec_default(&spec, ARCH_LLAMA);
	struct diag d;
	diag_init(&d);
	assert_int_equal(tiny_model_write_gguf(gguf, &spec, &d), 0);
	struct model_file *mf = NULL;
	assert_int_equal(model_file_load(&mf, gguf, &d), 0);
	const char *targets[] = {"q_proj", "v_proj"};
	struct model_opts o;
	memset(&o, 0, sizeof o);
	o.method = METHOD_LORA;
	o.lora_rank = 4;
	o.lora_alpha = 8;
	o.targets = targets;
	o.n_targets = 2;
	o.layers_first = o.layers_last = -1;
	o.max_batch = 2;
	o.max_seq = 16;
	o.seed = 9;
	struct model *lm = NULL;
	assert_int_equal(model_create(&lm, mf, &o, &d), 0);
	model_set_training(lm, false);
	size_t nt = model_n_trainable(lm);
	struct lora_tensor *t = calloc(nt, sizeof *t);
	struct rng r;
	rng_seed(&r, 4, 0);
	for (size_t i = 0; i < nt; i++) {
		const struct model_param *p = model_trainable(lm, i);
		if (strstr(p->name, "lora_B"))
			for (size_t k = 0; k < p->numel; k++)
				p->data[k] = (float)(rng_uniform(&r) - 0.5) * 0.5f;
		t[i] = (struct lora_tensor){(char *)p->name, p->data, p->shape[0], p->shape[1]};
	}
	struct lora_info info;
	memset(&info, 0, sizeof info);
	info.rank = 4;
	info.alpha = 8;
	info.targets = (char **)targets;
	info.n_targets = 2;
	info.interleaved = true;
	info.n_head = mf->hp.n_head;
	info.n_head_kv = mf->hp.n_head_kv;
	info.head_dim = mf->hp.head_dim;
	assert_int_equal(adapter_write_peft(ad, t, nt, &info, &d), 0);
	free(t);

	int32_t tok[2 * 16], tg[2 * 16];
	for (int i = 0; i < 32; i++) {
		tok[i] = (int32_t)((i * 13 + 5) % TINY_N_VOCAB);
		tg[i] = i % 16 == 15 ? -1 : (int32_t)(((i + 1) * 13 + 5) % TINY_N_VOCAB);
	}
	float l_ref, l_ad, l_base;
	assert_int_equal(model_forward(lm, tok, tg, 2, 16, &l_ref, NULL), 0);
	struct model *em = NULL, *bm = NULL;
	assert_int_equal(eval_model_create(&em, mf, ad, 2, 16, &d), 0);
	assert_int_equal(eval_model_create(&bm, mf, NULL, 2, 16, &d), 0);
	assert_int_equal(model_forward(em, tok, tg, 2, 16, &l_ad, NULL), 0);
	assert_int_equal(model_forward(bm, tok, tg, 2, 16, &l_base, NULL), 0);
	print_message("loss: lora %.6f, adapter reloaded %.6f, base %.6f\n", l_ref, l_ad, l_base);
	assert_true(fabsf(l_ref - l_ad) < 1e-5f);
	assert_true(fabsf(l_ref - l_base) > 1e-3f);
	model_free(em);
	model_free(bm);
	model_free(lm);
	model_file_free(mf);

	/* The CLI end to end on the tiny model (its tokenizer has the ChatML markers). */
	const char *bin = getenv("FTLAB_BIN");
	if (bin && path_exists(bin)) {
		char *data = path_join(dir, "d.jsonl");
		FILE *f = fopen(data, "w");
		fputs("{\"prompt\": \"ab\", \"completion\": \"cd\"}\n{\"prompt\": \"x\", \"completion\": \"yz\"}\n", f);
		fclose(f);
		char cmd[4096];
		snprintf(cmd, sizeof cmd,
			 "%s eval %s --adapter %s --data %s --metrics loss,exact_match,chrf --max-new-tokens 3 "
			 "--bootstrap 50 --json > %s/out.json 2>%s/err.txt", bin, gguf, ad, data, dir, dir);
		assert_int_equal(system(cmd), 0);
		char *out = path_join(dir, "out.json"), *buf = NULL;
		size_t len = 0;
		assert_int_equal(file_read_all(&buf, &len, out, 1 << 16, &d), 0);
		print_message("%s", buf);
		assert_non_null(strstr(buf, "\"format\": \"completion\", \"examples\": 2"));
		assert_non_null(strstr(buf, "\"loss\": {\"value\": "));
		assert_non_null(strstr(buf, "\"chrf\": {\"value\": "));
		free(buf);
		free(out);
		snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
		assert_int_equal(system(cmd), 0);
		free(data);
	}
	free(gguf);
	free(ad);
}

/* `ftlab eval --predictions FILE` (engine_eval's predictions_path) writes every example's
 * own loss and token counts, with or without generation, so a user can find the
 * examples where a tuned model does worse: the per-example numbers add up to the
 * reported loss and token accuracy. */
static void test_predictions_per_example_loss(void **state)
{
	(void)state;
	char dir[] = "/tmp/ftlab-evpred-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char *gguf = path_join(dir, "tiny.gguf"), *data = path_join(dir, "d.jsonl");
	char *pred = path_join(dir, "p.jsonl");
	struct tiny_model_spec spec;
	tiny_model_spec_default(&spec, ARCH_LLAMA);
	struct diag d;
	diag_init(&d);
	assert_int_equal(tiny_model_write_gguf(gguf, &spec, &d), 0);
	const char *text = "{\"prompt\": \"ab\", \"completion\": \"cd\"}\n"
			   "{\"prompt\": \"x\", \"completion\": \"yz w\"}\n"
			   "{\"prompt\": \"hello\", \"completion\": \"world\"}\n";
	assert_int_equal(file_write_atomic(data, text, strlen(text), &d), 0);
	for (int gen = 0; gen < 2; gen++) {
		const char *with_gen[] = {"loss", "token_accuracy", "exact_match"};
		struct engine_eval_opts o = {.model_path = gguf, .data = data,
					     .metrics = with_gen, .n_metrics = gen ? 3 : 2,
					     .template_name = "plain", .predictions_path = pred,
					     .max_new_tokens = 3, .batch = 2, .bootstrap = 0, .max_length = 32,
					     .seed = 1};
		struct sink_log log = {0};
		struct run_sink sink = {.ud = &log, .result = log_result, .prediction = log_pred};
		struct engine_eval_info info;
		diag_init(&d);
		if (engine_eval(&info, &o, &sink, &d))
			fail_msg("engine_eval: %s", d.text);
		char *buf = NULL;
		size_t len;
		assert_int_equal(file_read_all(&buf, &len, pred, 1 << 20, &d), 0);
		double loss_sum = 0, tokens = 0, correct = 0;
		int lines = 0;
		for (char *line = buf, *nl; line && *line; line = nl ? nl + 1 : NULL) {
			nl = strchr(line, '\n');
			json_error_t je;
			json_t *o2 = json_loadb(line, nl ? (size_t)(nl - line) : strlen(line), 0, &je);
			if (!o2)
				fail_msg("prediction line %d is not JSON (%s): %.200s", lines + 1, je.text,
					 line);
			json_t *t = json_object_get(o2, "tokens"), *l = json_object_get(o2, "loss");
			assert_true(json_is_integer(t) && json_integer_value(t) > 0);
			assert_true(json_is_number(l) && isfinite(json_number_value(l)));
			assert_int_equal(json_is_string(json_object_get(o2, "output")), gen);
			loss_sum += json_number_value(l) * (double)json_integer_value(t);
			tokens += (double)json_integer_value(t);
			correct += (double)json_integer_value(json_object_get(o2, "correct_tokens"));
			json_decref(o2);
			lines++;
		}
		free(buf);
		assert_int_equal(lines, 3);
		const struct rec *rl = find(&log, "base", "loss"), *ra = find(&log, "base",
										"token_accuracy");
		assert_non_null(rl);
		assert_non_null(ra);
		assert_float_equal(loss_sum / tokens, rl->v, 1e-9 * (1 + rl->v));
		assert_float_equal(correct / tokens, ra->v, 1e-12);
		unlink(pred);
	}
	assert_int_equal(dir_remove_all(dir), 0);
	free(gguf);
	free(data);
	free(pred);
}

/* ftlab eval scores by likelihood: preference data recognised by its `rejected` key
 * (preference_accuracy and preference_margin), and completion data with --choices as the
 * label set of choice_accuracy; without --choices those examples have no choices, which
 * is an error naming the file. */
static void test_cli_likelihood(void **state)
{
	(void)state;
	const char *bin = getenv("FTLAB_BIN");
	if (!bin || !path_exists(bin))
		skip();
	char dir[] = "/tmp/ftlab-evlik-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char *gguf = path_join(dir, "tiny.gguf");
	struct tiny_model_spec spec;
	tiny_model_spec_default(&spec, ARCH_LLAMA);
	struct diag d;
	diag_init(&d);
	assert_int_equal(tiny_model_write_gguf(gguf, &spec, &d), 0);
	char *pref = path_join(dir, "p.jsonl"), *cls = path_join(dir, "c.jsonl");
	FILE *f = fopen(pref, "w");
	fputs("{\"prompt\": \"ab\", \"chosen\": \"cd\", \"rejected\": \"zz\"}\n"
	      "{\"prompt\": \"x\", \"chosen\": \"yz\", \"rejected\": \"q\"}\n", f);
	fclose(f);
	f = fopen(cls, "w");
	fputs("{\"prompt\": \"ab\", \"completion\": \"cd\"}\n"
	      "{\"prompt\": \"x\", \"completion\": \"yz\"}\n"
	      "{\"prompt\": \"k\", \"completion\": \"cd\"}\n", f);
	fclose(f);
	char cmd[4096], *out = path_join(dir, "out.json"), *buf = NULL;
	size_t len = 0;
	snprintf(cmd, sizeof cmd,
		 "%s eval %s --data %s --metrics preference_accuracy,preference_margin "
		 "--bootstrap 20 --json > %s 2>%s/err.txt", bin, gguf, pref, out, dir);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(file_read_all(&buf, &len, out, 1 << 16, &d), 0);
	print_message("%s", buf);
	assert_non_null(strstr(buf, "\"format\": \"preference\", \"examples\": 2"));
	assert_non_null(strstr(buf, "\"preference_accuracy\": {\"value\": "));
	assert_non_null(strstr(buf, "\"preference_margin\": {\"value\": "));
	free(buf);
	buf = NULL;
	snprintf(cmd, sizeof cmd,
		 "%s eval %s --data %s --metrics choice_accuracy,choice_accuracy_norm "
		 "--choices cd,yz,q --bootstrap 20 --json > %s 2>%s/err.txt", bin, gguf, cls, out, dir);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(file_read_all(&buf, &len, out, 1 << 16, &d), 0);
	print_message("%s", buf);
	assert_non_null(strstr(buf, "\"examples\": 3"));
	assert_non_null(strstr(buf, "\"choice_accuracy\": {\"value\": "));
	assert_non_null(strstr(buf, "\"choice_accuracy_norm\": {\"value\": "));
	free(buf);
	buf = NULL;
	snprintf(cmd, sizeof cmd,
		 "%s eval %s --data %s --metrics choice_accuracy --json > %s 2>%s/err.txt", bin, gguf,
		 cls, out, dir);
	int rc = system(cmd);
	assert_true(WIFEXITED(rc) && WEXITSTATUS(rc) == 2);
	char *err = path_join(dir, "err.txt");
	assert_int_equal(file_read_all(&buf, &len, err, 1 << 16, &d), 0);
	print_message("%s", buf);
	assert_non_null(strstr(buf, "c.jsonl"));
	free(buf);
	free(err);
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
	free(out);
	free(pref);
	free(cls);
	free(gguf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_teacher_forced_matches_forward),
		cmocka_unit_test(test_unknown_metric),
		cmocka_unit_test(test_smollm2_generation),
		cmocka_unit_test(test_adapter_roundtrip),
		cmocka_unit_test(test_predictions_per_example_loss),
		cmocka_unit_test(test_cli_likelihood),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
