/* Unit tests for preference data and multiple-choice fields in data/: the layouts of
 * {prompt, chosen, rejected} (strings, message lists, TRL's implicit prompt), field
 * mapping, content hashes, templating each side, pair rows (chosen rows then rejected
 * rows, completion masks, the ORPO all-position targets), the loader's pair batches and
 * cursor, and the choice sequences of data_prepare_choices with lm-evaluation-harness's
 * whitespace rule (on the tiny model's byte-level tokenizer). Malformed lines are in
 * tests/unit/data_malformed/ (test_data). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/native/data/loader.h"
#include "backends/native/data/prepare.h"
#include "backends/native/data/template.h"
#include "backends/native/io/model_file.h"
#include "backends/native/tok/tokenizer.h"
#include "common/util.h"
#include "tests/unit/scratch.h"
#include "tests/unit/tiny_model.h"
#include "common/banned.h"

static struct dataset *read_ok(const char *text, enum data_format f, const struct field_map *fm)
{
	struct dataset *ds = NULL;
	struct diag d;
	diag_init(&d);
	int rc = dataset_read_buffer(&ds, "mem.jsonl", text, strlen(text), f, fm, BAD_EXAMPLE_ERROR,
				     &d);
	if (rc)
		print_error("unexpected error: %s:%d:%d: %s\n", d.file, d.line, d.col, d.text);
	assert_int_equal(rc, 0);
	return ds;
}

static const char PAIRS[] =
	"{\"prompt\": \"Say hi\", \"chosen\": \"hi\", \"rejected\": \"go away\", \"system\": \"S\"}\n"
	"{\"prompt\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", "
	"\"content\": \"2+2?\"}], \"chosen\": [{\"role\": \"assistant\", \"content\": \"4\"}], "
	"\"rejected\": \"five\"}\n"
	"{\"chosen\": [{\"role\": \"user\", \"content\": \"Capital?\"}, {\"role\": \"assistant\", "
	"\"content\": \"Paris\"}], \"rejected\": [{\"role\": \"user\", \"content\": \"Capital?\"}, "
	"{\"role\": \"assistant\", \"content\": \"Rome\"}]}\n";

/* keys: data.fields.chosen data.fields.rejected */
static void test_layouts(void **state)
{
	(void)state;
	struct dataset *ds = read_ok(PAIRS, DATA_PREFERENCE, NULL);
	assert_int_equal(ds->n, 3);
	const struct record *r = &ds->recs[0];
	assert_string_equal(r->prompt, "Say hi");
	assert_string_equal(r->system, "S");
	assert_string_equal(r->chosen, "hi");
	assert_string_equal(r->rejected, "go away");
	assert_null(r->msgs);
	r = &ds->recs[1];
	assert_null(r->prompt);
	assert_int_equal(r->n_msgs, 2);
	assert_int_equal(r->msgs[0].role, ROLE_SYSTEM);
	assert_string_equal(r->msgs[1].content, "2+2?");
	assert_string_equal(r->chosen, "4");
	assert_string_equal(r->rejected, "five");
	/* implicit prompt: the shared leading messages */
	r = &ds->recs[2];
	assert_int_equal(r->n_msgs, 1);
	assert_int_equal(r->msgs[0].role, ROLE_USER);
	assert_string_equal(r->msgs[0].content, "Capital?");
	assert_string_equal(r->chosen, "Paris");
	assert_string_equal(r->rejected, "Rome");
	assert_string_equal(record_reference(r, DATA_PREFERENCE), "Paris");
	/* the content hash covers both completions: swapping them is another example */
	struct dataset *sw = read_ok("{\"prompt\": \"Say hi\", \"chosen\": \"go away\", "
				     "\"rejected\": \"hi\", \"system\": \"S\"}\n",
				     DATA_PREFERENCE, NULL);
	assert_memory_not_equal(sw->recs[0].hash, ds->recs[0].hash, 32);
	/* key order and spacing do not change it */
	struct dataset *same = read_ok("{\"system\":\"S\",\"rejected\":\"go away\",\"chosen\":\"hi\","
				       "\"prompt\":\"Say hi\"}\n", DATA_PREFERENCE, NULL);
	assert_memory_equal(same->recs[0].hash, ds->recs[0].hash, 32);
	dataset_free(sw);
	dataset_free(same);
	dataset_free(ds);

	/* fields mapping */
	struct field_map fm;
	memset(&fm, 0, sizeof fm);
	fm.prompt = "question";
	fm.chosen = "good";
	fm.rejected = "bad";
	ds = read_ok("{\"question\": \"q\", \"good\": \"g\", \"bad\": \"b\"}\n", DATA_PREFERENCE, &fm);
	assert_string_equal(ds->recs[0].chosen, "g");
	assert_string_equal(ds->recs[0].rejected, "b");
	dataset_free(ds);
}

/* keys: data.fields.choices data.fields.answer */
static void test_choices_fields(void **state)
{
	(void)state;
	struct dataset *ds = read_ok(
		"{\"prompt\": \"q\", \"completion\": \"b\", \"choices\": [\"a\", \"b\"]}\n"
		"{\"prompt\": \"q\", \"completion\": \"x\", \"choices\": [\"a\", \"b\", \"c\"], "
		"\"answer\": 2}\n"
		"{\"prompt\": \"q\", \"completion\": \"x\", \"choices\": [\"a\", \"b\"], \"answer\": "
		"\"a\"}\n"
		"{\"prompt\": \"q\", \"completion\": \"x\", \"answer\": \"not read without choices\"}\n",
		DATA_COMPLETION, NULL);
	assert_int_equal(ds->recs[0].n_choices, 2);
	assert_int_equal(ds->recs[0].answer, 1); /* the completion */
	assert_int_equal(ds->recs[1].answer, 2);
	assert_int_equal(ds->recs[2].answer, 0);
	assert_null(ds->recs[3].choices);
	/* choices and answer are content: another answer is another example, while a line
	 * without choices hashes as before (the same as a plain completion) */
	struct dataset *other = read_ok("{\"prompt\": \"q\", \"completion\": \"x\", \"choices\": "
					"[\"a\", \"b\"], \"answer\": \"b\"}\n"
					"{\"prompt\": \"q\", \"completion\": \"x\"}\n",
					DATA_COMPLETION, NULL);
	assert_memory_not_equal(other->recs[0].hash, ds->recs[2].hash, 32);
	assert_memory_equal(other->recs[1].hash, ds->recs[3].hash, 32);
	dataset_free(other);
	dataset_free(ds);
	/* chat: the answer defaults to the last assistant message */
	ds = read_ok("{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}, {\"role\": "
		     "\"assistant\", \"content\": \"yes\"}], \"choices\": [\"no\", \"yes\"]}\n",
		     DATA_CHAT, NULL);
	assert_int_equal(ds->recs[0].answer, 1);
	dataset_free(ds);
}

/* Each byte b is id 10 + b; <|im_start|> 1, <|im_end|> 2 when special; EOS 3. */
static int byte_encode(void *ud, const char *text, size_t len, bool special, int32_t **out,
		       size_t *n, struct diag *d)
{
	(void)ud;
	(void)d;
	int32_t *ids = malloc((len + 1) * sizeof *ids);
	size_t k = 0;
	for (size_t i = 0; i < len;) {
		if (special && len - i >= 12 && memcmp(text + i, "<|im_start|>", 12) == 0) {
			ids[k++] = 1;
			i += 12;
		} else if (special && len - i >= 10 && memcmp(text + i, "<|im_end|>", 10) == 0) {
			ids[k++] = 2;
			i += 10;
		} else {
			ids[k++] = 10 + (unsigned char)text[i++];
		}
	}
	*out = ids;
	*n = k;
	return 0;
}

static const struct data_tok TOK = {NULL, byte_encode, 3, -1, false, NULL};

static void test_templates_and_rows(void **state)
{
	(void)state;
	struct dataset *ds = read_ok(PAIRS, DATA_PREFERENCE, NULL);
	struct template_spec plain = {TEMPLATE_PLAIN, NULL, NULL, NULL};
	struct diag d;
	diag_init(&d);
	struct templated t;
	assert_int_equal(template_apply_pref(&t, &ds->recs[0], true, &plain, "m", &d), 0);
	char *text = templated_text(&t, 0, t.n, "<eos>");
	assert_string_equal(text, "S\n\nSay hi\ngo away<eos>");
	free(text);
	text = templated_text(&t, 0, t.n_prompt, "");
	assert_string_equal(text, "S\n\nSay hi\n");
	free(text);
	templated_free(&t);
	/* a message prompt is a chat ending with the completion */
	struct template_spec chatml = {TEMPLATE_CHATML, NULL, NULL, NULL};
	assert_int_equal(template_apply_pref(&t, &ds->recs[1], false, &chatml, "m", &d), 0);
	text = templated_text(&t, 0, t.n, "");
	assert_string_equal(text, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?"
				  "<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n");
	free(text);
	templated_free(&t);
	/* template_apply on preference data is the chosen side */
	assert_int_equal(template_apply(&t, &ds->recs[2], DATA_PREFERENCE, &chatml, "m", &d), 0);
	assert_string_equal(t.reference, "Paris");
	templated_free(&t);

	/* tokenised: ex is the chosen side as SFT sees it, pair holds both, loss on the
	 * completion even with train_on_inputs */
	struct tok_set *set = NULL;
	assert_int_equal(data_tokenize(&set, ds, &plain, &TOK, 64, true, &d), 0);
	assert_non_null(set->pair);
	const struct tok_example *c0 = &set->pair[0], *r0 = &set->pair[1];
	/* "S\n\nSay hi\n" is 10 prompt bytes, then "hi" + EOS / "go away" + EOS */
	assert_int_equal(c0->n, 13);
	assert_int_equal(r0->n, 18);
	for (size_t k = 0; k < r0->n; k++)
		assert_int_equal(r0->loss[k], k >= 10);
	for (size_t k = 0; k < set->ex[0].n; k++)
		assert_int_equal(set->ex[0].loss[k], 1); /* train_on_inputs */
	assert_int_equal(set->n_pair_empty, 0);

	/* rows: P chosen rows then P rejected rows; comp marks the completion's targets */
	size_t idx[2] = {2, 0};
	/* "User: Capital?\nAssistant: Paris" + EOS is the longest */
	int T = (int)data_pair_len(set, idx, 2);
	assert_int_equal(T, 32);
	int32_t tok[4 * 32], tgt[4 * 32];
	uint8_t comp[4 * 32];
	data_pair_rows(tok, tgt, comp, set, idx, 2, T, -7, false);
	const struct tok_example *rows[4] = {&set->pair[4], &set->pair[0], &set->pair[5],
					     &set->pair[1]};
	for (int r = 0; r < 4; r++) {
		const struct tok_example *e = rows[r];
		for (int k = 0; k < T; k++) {
			size_t i = (size_t)r * (size_t)T + (size_t)k;
			assert_int_equal(tok[i], (size_t)k < e->n ? e->ids[k] : -7);
			bool target = (size_t)k + 1 < e->n && e->loss[k + 1];
			assert_int_equal(tgt[i], target ? e->ids[k + 1] : -1);
			assert_int_equal(comp[i], target);
		}
	}
	/* ORPO with train_on_inputs: chosen rows predict every next token, comp unchanged */
	data_pair_rows(tok, tgt, comp, set, idx, 2, T, -7, true);
	for (int k = 0; k + 1 < (int)rows[1]->n; k++)
		assert_int_equal(tgt[T + k], rows[1]->ids[k + 1]);
	assert_int_equal(tgt[2 * T], -1); /* rejected rows keep the completion targets */
	assert_int_equal(comp[T], 0);

	/* the loader batches pairs: 2 examples -> 4 rows; a cursor restores the stream */
	struct loader_opts lo = {.batch_size = 2, .seq_len = 32, .shuffle = true, .seed = 5,
				 .pad_id = -7, .pairs = true};
	struct loader *l = NULL, *l2 = NULL;
	assert_int_equal(loader_create(&l, set, &lo, &d), 0);
	assert_int_equal(loader_batches_per_epoch(l), 2);
	struct batch b, b2;
	assert_int_equal(loader_next(l, &b), 0);
	assert_int_equal(b.examples, 2);
	assert_int_equal(b.rows, 4);
	assert_non_null(b.comp);
	int32_t first = b.tokens[0];
	size_t i0 = b.idx[0];
	assert_int_equal(first, set->pair[2 * i0].ids[0]);
	struct data_cursor cur;
	loader_get_cursor(l, &cur);
	assert_int_equal(loader_next(l, &b), 0);
	assert_int_equal(b.examples, 1);
	assert_int_equal(b.rows, 2);
	assert_true(b.last_of_epoch);
	int32_t keep[2 * 32];
	memcpy(keep, b.tokens, (size_t)b.rows * (size_t)b.T * sizeof *keep);
	assert_int_equal(loader_create(&l2, set, &lo, &d), 0);
	assert_int_equal(loader_set_cursor(l2, &cur, &d), 0);
	assert_int_equal(loader_next(l2, &b2), 0);
	assert_int_equal(b2.rows, b.rows);
	assert_memory_equal(b2.tokens, keep, (size_t)b.rows * (size_t)b.T * sizeof *keep);
	loader_free(l);
	loader_free(l2);
	/* pairs need pair data and refuse packing */
	struct tok_set *plain_set = NULL;
	struct dataset *cds = read_ok("{\"prompt\": \"q\", \"completion\": \"a\"}\n",
				      DATA_COMPLETION, NULL);
	assert_int_equal(data_tokenize(&plain_set, cds, &plain, &TOK, 64, false, &d), 0);
	diag_init(&d);
	assert_int_equal(loader_create(&l, plain_set, &lo, &d), FT_EINVAL);
	lo.packing = true;
	diag_init(&d);
	assert_int_equal(loader_create(&l, set, &lo, &d), FT_EINVAL);
	tok_set_free(plain_set);
	dataset_free(cds);
	tok_set_free(set);

	/* at 11 tokens the first pair keeps one completion token a side, the two chat ones
	 * lose their completions to truncation: counted */
	assert_int_equal(data_tokenize(&set, ds, &plain, &TOK, 11, false, &d), 0);
	assert_int_equal(set->n_pair_empty, 2);
	assert_int_equal(set->n_pair_truncated, 3);
	tok_set_free(set);
	dataset_free(ds);
}

/* The choice sequences on the tiny model's real tokenizer: prompt + choice, the choice's
 * tokens scored, the prompt's trailing whitespace moved into the choice. */
static void test_prepare_choices(void **state)
{
	(void)state;
	const char *dir = scratch_open("datapref");
	char *gguf = path_join(dir, "tiny.gguf");
	struct tiny_model_spec spec;
	tiny_model_spec_default(&spec, ARCH_LLAMA);
	struct diag d;
	diag_init(&d);
	assert_int_equal(tiny_model_write_gguf(gguf, &spec, &d), 0);
	struct model_file *mf = NULL;
	struct tokenizer *tok = NULL;
	assert_int_equal(model_file_load(&mf, gguf, &d), 0);
	assert_int_equal(tokenizer_from_model_file(&tok, mf, &d), 0);
	scratch_put("test.jsonl",
		    "{\"prompt\": \"Topic: ball\", \"completion\": \"sports\"}\n"
		    "{\"prompt\": \"Topic: rain\", \"completion\": \"weather\", \"choices\": "
		    "[\"weather\", \"sun\"]}\n");
	char *test = path_join(dir, "test.jsonl");
	struct config_data cd;
	memset(&cd, 0, sizeof cd);
	cd.format = DATA_COMPLETION;
	cd.test.present = true;
	cd.test.path = test;
	cd.template_custom = "{prompt} {response}";
	cd.max_length = 64;
	struct data_prepared p;
	assert_int_equal(data_prepare(&p, &cd, 64, tok, &d), 0);
	const char *labels[] = {"sports", "weather", "science"};
	assert_int_equal(data_prepare_choices(&p, tok, labels, 3, NULL, 0, &d), 0);
	const struct tok_set *s = p.test;
	assert_non_null(s->choices);
	assert_int_equal(s->choices[0].n, 3);
	assert_int_equal(s->choices[0].answer, 0);
	assert_int_equal(s->choices[0].chars[1], 7);
	assert_int_equal(s->choices[1].n, 2); /* its own choices */
	assert_int_equal(s->choices[1].answer, 0);
	for (size_t j = 0; j < 3; j++) {
		/* the prompt "Topic: ball" without the template's space, then " sports" etc. */
		const struct tok_example *e = &s->choices[0].seq[j];
		int32_t *pid = NULL, *cid = NULL;
		size_t np = 0, nc = 0;
		char cont[32];
		snprintf(cont, sizeof cont, " %s", labels[j]);
		assert_int_equal(tokenizer_encode_ex(tok, "Topic: ball", 11, 0, &pid, &np, &d), 0);
		assert_int_equal(tokenizer_encode_ex(tok, cont, strlen(cont), 0, &cid, &nc, &d), 0);
		assert_int_equal(e->n, np + nc);
		assert_memory_equal(e->ids, pid, np * sizeof *pid);
		assert_memory_equal(e->ids + np, cid, nc * sizeof *cid);
		for (size_t k = 0; k < e->n; k++)
			assert_int_equal(e->loss[k], k >= np);
		free(pid);
		free(cid);
	}
	/* a response outside the label set is an error with file:line */
	data_prepared_free(&p);
	scratch_put("test.jsonl", "{\"prompt\": \"a\", \"completion\": \"sports\"}\n"
				  "{\"prompt\": \"b\", \"completion\": \"cooking\"}\n");
	assert_int_equal(data_prepare(&p, &cd, 64, tok, &d), 0);
	diag_init(&d);
	assert_int_equal(data_prepare_choices(&p, tok, labels, 3, NULL, 0, &d), FT_EINVAL);
	assert_int_equal(d.line, 2);
	assert_non_null(strstr(d.text, "'cooking' is not one of eval.choices"));
	/* only the named splits are prepared */
	diag_init(&d);
	const char *only[] = {"validation"};
	assert_int_equal(data_prepare_choices(&p, tok, labels, 3, only, 1, &d), 0);
	assert_null(p.test->choices);
	data_prepared_free(&p);
	free(test);
	free(gguf);
	tokenizer_free(tok);
	model_file_free(mf);
	assert_int_equal(scratch_close(), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_layouts),
		cmocka_unit_test(test_choices_fields),
		cmocka_unit_test(test_templates_and_rows),
		cmocka_unit_test(test_prepare_choices),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
