/* Unit tests for data/template and the masking rules of data/loader: the exact text of
 * each template for each format, which segments train, the generation prompt, the
 * system prompt rules, custom template validation, and token-level loss masks with a
 * byte-level test tokenizer (each byte b is id 10+b; <|im_start|> = 1, <|im_end|> = 2
 * when special tokens are parsed; EOS = 3). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "backends/native/data/loader.h"
#include "backends/native/data/template.h"
#include "common/util.h"
#include "common/banned.h"

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

static struct record rec_completion(const char *p, const char *c)
{
	struct record r;
	memset(&r, 0, sizeof r);
	r.line = 7;
	r.prompt = (char *)p;
	r.response = (char *)c;
	return r;
}

static struct chat_msg MSGS[] = {
	{ROLE_SYSTEM, "Be brief."}, {ROLE_USER, "Hi"}, {ROLE_ASSISTANT, "Hello"},
	{ROLE_USER, "2+2?"}, {ROLE_ASSISTANT, "4"},
};

static struct record rec_chat(size_t first, size_t n)
{
	struct record r;
	memset(&r, 0, sizeof r);
	r.line = 3;
	r.msgs = MSGS + first;
	r.n_msgs = n;
	return r;
}

/* Renders segments as text with trainable parts in [brackets], EOS as <eos> and the
 * prompt boundary as |. */
static char *render(const struct templated *t)
{
	struct strbuf sb = {0};
	for (size_t i = 0; i < t->n; i++) {
		if (i == t->n_prompt)
			assert_int_equal(strbuf_puts(&sb, "|"), 0);
		const struct segment *s = &t->segs[i];
		const char *txt = (s->flags & SEG_EOS) ? "<eos>" : s->text;
		if (s->flags & SEG_TRAIN)
			assert_int_equal(strbuf_printf(&sb, "[%s]", txt), 0);
		else
			assert_int_equal(strbuf_puts(&sb, txt), 0);
	}
	return strbuf_detach(&sb);
}

static void expect(const struct record *r, enum data_format f, const struct template_spec *ts,
		   const char *want)
{
	struct templated t;
	struct diag d;
	diag_init(&d);
	assert_int_equal(template_apply(&t, r, f, ts, "x.jsonl", &d), 0);
	char *got = render(&t);
	if (strcmp(got, want) != 0) {
		print_error("got:  %s\nwant: %s\n", got, want);
		fail();
	}
	free(got);
	templated_free(&t);
}

static void test_chatml(void **state)
{
	(void)state;
	struct template_spec ts = {TEMPLATE_CHATML, NULL, NULL, NULL};
	struct record r = rec_completion("What is 2+2?", "4");
	expect(&r, DATA_COMPLETION, &ts,
	       "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n|[4][<|im_end|>]\n");
	ts.system = "You are terse.";
	expect(&r, DATA_COMPLETION, &ts,
	       "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
	       "<|im_start|>assistant\n|[4][<|im_end|>]\n");
	/* The per-example system field wins over the config's. */
	r.system = "Example system.";
	expect(&r, DATA_COMPLETION, &ts,
	       "<|im_start|>system\nExample system.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
	       "<|im_start|>assistant\n|[4][<|im_end|>]\n");
	/* Multi-turn chat: every assistant turn trains; the prompt ends before the last one. */
	struct template_spec t2 = {TEMPLATE_CHATML, NULL, NULL, "Default sys."};
	struct record c = rec_chat(1, 4);
	expect(&c, DATA_CHAT, &t2,
	       "<|im_start|>system\nDefault sys.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
	       "<|im_start|>assistant\n[Hello][<|im_end|>]\n<|im_start|>user\n2+2?<|im_end|>\n"
	       "<|im_start|>assistant\n|[4][<|im_end|>]\n");
	/* A system message in the data replaces the default. */
	struct record c2 = rec_chat(0, 3);
	expect(&c2, DATA_CHAT, &t2,
	       "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
	       "<|im_start|>assistant\n|[Hello][<|im_end|>]\n");
}

static void test_gemma(void **state)
{
	(void)state;
	struct template_spec ts = {TEMPLATE_GEMMA, NULL, NULL, NULL};
	struct record r = rec_completion(" What is 2+2?\n", "4 ");
	expect(&r, DATA_COMPLETION, &ts,
	       "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n|[4][<end_of_turn>]\n");
	ts.system = "You are terse.";
	expect(&r, DATA_COMPLETION, &ts,
	       "<start_of_turn>user\nYou are terse.\n\nWhat is 2+2?<end_of_turn>\n"
	       "<start_of_turn>model\n|[4][<end_of_turn>]\n");
	/* chat: the data's system message opens the first user turn; every model turn trains */
	struct record c = rec_chat(0, 5);
	expect(&c, DATA_CHAT, &ts,
	       "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n[Hello]"
	       "[<end_of_turn>]\n<start_of_turn>user\n2+2?<end_of_turn>\n<start_of_turn>model\n|[4]"
	       "[<end_of_turn>]\n");
	/* roles must alternate, starting with user */
	static struct chat_msg bad[] = {{ROLE_USER, "a"}, {ROLE_USER, "b"}, {ROLE_ASSISTANT, "c"}};
	struct record b = rec_chat(0, 0);
	b.msgs = bad;
	b.n_msgs = 3;
	struct templated t;
	struct diag d;
	diag_init(&d);
	assert_int_equal(template_apply(&t, &b, DATA_CHAT, &ts, "x.jsonl", &d), FT_EINVAL);
	assert_non_null(strstr(d.text, "roles that alternate"));
	assert_int_equal(d.line, 3);
	/* trim is Jinja's: Unicode white space too */
	struct record u = rec_completion("\u3000\xc2\xa0hi\xe2\x80\x83\t", "ok");
	expect(&u, DATA_COMPLETION, &ts,
	       "<start_of_turn>user\nYou are terse.\n\nhi<end_of_turn>\n<start_of_turn>model\n|[ok]"
	       "[<end_of_turn>]\n");
	char *p = template_chat_prompt(TEMPLATE_GEMMA, NULL, " hi ");
	assert_string_equal(p, "<start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n");
	free(p);
}

static void test_alpaca_plain_custom(void **state)
{
	(void)state;
	struct template_spec ts = {TEMPLATE_ALPACA, NULL, NULL, NULL};
	struct record r;
	memset(&r, 0, sizeof r);
	r.instruction = "Add.";
	r.input = "2 and 2";
	r.response = "4";
	expect(&r, DATA_INSTRUCTION, &ts,
	       "Below is an instruction that describes a task, paired with an input that provides "
	       "further context. Write a response that appropriately completes the request.\n\n"
	       "### Instruction:\nAdd.\n\n### Input:\n2 and 2\n\n### Response:\n|[4][<eos>]");
	r.input = "";
	expect(&r, DATA_INSTRUCTION, &ts,
	       "Below is an instruction that describes a task. Write a response that appropriately "
	       "completes the request.\n\n### Instruction:\nAdd.\n\n### Response:\n|[4][<eos>]");
	ts.system = "Custom preamble.";
	expect(&r, DATA_INSTRUCTION, &ts, "Custom preamble.\n\n### Instruction:\nAdd.\n\n### Response:\n|[4][<eos>]");

	struct template_spec tp = {TEMPLATE_PLAIN, NULL, NULL, NULL};
	struct record c = rec_completion("Q: 2+2?", "4");
	expect(&c, DATA_COMPLETION, &tp, "Q: 2+2?\n|[4][<eos>]");
	r.input = "2 and 2";
	tp.system = "S.";
	expect(&r, DATA_INSTRUCTION, &tp, "S.\n\nAdd.\n\n2 and 2\n|[4][<eos>]");
	struct record ch = rec_chat(1, 4);
	tp.system = NULL;
	expect(&ch, DATA_CHAT, &tp, "User: Hi\nAssistant: [Hello][\n]User: 2+2?\nAssistant: |[4][<eos>]");

	struct template_spec tc = {TEMPLATE_CUSTOM, "<s>{system}|Q: {prompt}\nA: {response}</s>{{x}}", NULL, NULL};
	expect(&c, DATA_COMPLETION, &tc, "<s>|Q: Q: 2+2?\nA: |[4][</s>{x}][<eos>]");
	tc.system = "sys";
	expect(&c, DATA_COMPLETION, &tc, "<s>sys|Q: Q: 2+2?\nA: |[4][</s>{x}][<eos>]");
	/* Chat with one exchange works with alpaca and custom; the system message is used. */
	struct record one = rec_chat(0, 3);
	expect(&one, DATA_CHAT, &ts, "Be brief.\n\n### Instruction:\nHi\n\n### Response:\n|[Hello][<eos>]");
	/* Text format: everything trains, templates do not apply. */
	struct record tx;
	memset(&tx, 0, sizeof tx);
	tx.text = "Just text.";
	expect(&tx, DATA_TEXT, &tc, "|[Just text.][<eos>]");
}

static void test_template_errors(void **state)
{
	(void)state;
	struct template_spec ts = {TEMPLATE_ALPACA, NULL, NULL, NULL};
	struct record c = rec_chat(1, 4);
	struct templated t;
	struct diag d;
	diag_init(&d);
	assert_int_equal(template_apply(&t, &c, DATA_CHAT, &ts, "x.jsonl", &d), FT_EINVAL);
	assert_string_equal(d.file, "x.jsonl");
	assert_int_equal(d.line, 3);
	assert_non_null(strstr(d.text, "one user message and one assistant reply"));

	struct config_data cfg;
	memset(&cfg, 0, sizeof cfg);
	struct template_spec out;
	const char *bad[] = {"{prompt} only", "{prompt}{response}{response}", "{prompt} {answer} {response}",
			     "{response} no prompt", "{prompt} } {response}", "{prompt {response}"};
	const char *msg[] = {"needs {response} exactly once (found 0)", "exactly once (found 2)",
			     "unknown placeholder '{answer}'", "needs {prompt}", "a lone '}'",
			     "unknown placeholder"};
	for (size_t i = 0; i < FT_ARRAY_LEN(bad); i++) {
		cfg.template_name = NULL;
		cfg.template_custom = (char *)bad[i];
		diag_init(&d);
		assert_int_equal(template_resolve(&out, &cfg, TEMPLATE_CHATML, &d), FT_EINVAL);
		if (!strstr(d.text, msg[i])) {
			print_error("%s -> %s\n", bad[i], d.text);
			fail();
		}
	}
	/* auto picks chatml when the tokenizer has the markers, else plain. */
	cfg.template_custom = NULL;
	cfg.template_name = "auto";
	assert_int_equal(template_resolve(&out, &cfg, TEMPLATE_CHATML, &d), 0);
	assert_int_equal(out.kind, TEMPLATE_CHATML);
	assert_int_equal(template_resolve(&out, &cfg, TEMPLATE_PLAIN, &d), 0);
	assert_int_equal(out.kind, TEMPLATE_PLAIN);
	assert_int_equal(template_resolve(&out, &cfg, TEMPLATE_GEMMA, &d), 0);
	assert_int_equal(out.kind, TEMPLATE_GEMMA);
	cfg.template_name = "gemma";
	assert_int_equal(template_resolve(&out, &cfg, TEMPLATE_PLAIN, &d), 0);
	assert_int_equal(out.kind, TEMPLATE_GEMMA);
	cfg.template_name = "alpaca";
	assert_int_equal(template_resolve(&out, &cfg, TEMPLATE_CHATML, &d), 0);
	assert_int_equal(out.kind, TEMPLATE_ALPACA);
}

static void test_default_system_from_jinja(void **state)
{
	(void)state;
	const char *smol = "{% for message in messages %}{% if loop.first and messages[0]['role'] != "
			   "'system' %}{{ '<|im_start|>system\\nYou are a helpful AI assistant named "
			   "SmolLM, trained by Hugging Face<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + "
			   "message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}";
	char *s = template_chatml_default_system(smol);
	assert_non_null(s);
	assert_string_equal(s, "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
	free(s);
	assert_null(template_chatml_default_system("{{'<|im_start|>system\\n' + message['content'] + '<|im_end|>'}}"));
	assert_null(template_chatml_default_system(NULL));
}

static void test_masks(void **state)
{
	(void)state;
	struct template_spec ts = {TEMPLATE_CHATML, NULL, NULL, NULL};
	struct record r = rec_completion("ab", "cd");
	struct templated t;
	struct diag d;
	diag_init(&d);
	assert_int_equal(template_apply(&t, &r, DATA_COMPLETION, &ts, "x", &d), 0);
	struct tok_example e;
	assert_int_equal(data_tokenize_one(&e, &t, &TOK, 0, false, &d), 0);
	/* <|im_start|> u s e r \n a b <|im_end|> \n <|im_start|> a s s i s t a n t \n c d <|im_end|> \n */
	assert_int_equal(e.n, 25);
	assert_int_equal(e.ids[0], 1);
	assert_int_equal(e.n_prompt, 21);
	for (size_t i = 0; i < e.n; i++) {
		int want = i >= 21 && i <= 23; /* c d <|im_end|> */
		assert_int_equal(e.loss[i], want);
	}
	assert_int_equal(e.ids[21], 10 + 'c');
	assert_int_equal(e.ids[23], 2);
	int32_t tg[64];
	data_targets(tg, e.ids, e.loss, e.n);
	assert_int_equal(tg[19], -1);
	assert_int_equal(tg[20], 10 + 'c'); /* the "\n" after assistant predicts c */
	assert_int_equal(tg[21], 10 + 'd');
	assert_int_equal(tg[22], 2);
	assert_int_equal(tg[23], -1);       /* the final "\n" does not train */
	assert_int_equal(tg[e.n - 1], -1);
	tok_example_clear(&e);

	/* train_on_inputs: every token trains. */
	assert_int_equal(data_tokenize_one(&e, &t, &TOK, 0, true, &d), 0);
	for (size_t i = 0; i < e.n; i++)
		assert_int_equal(e.loss[i], 1);
	tok_example_clear(&e);
	/* Truncation from the right, prompt clamped. */
	assert_int_equal(data_tokenize_one(&e, &t, &TOK, 10, false, &d), 0);
	assert_true(e.truncated);
	assert_int_equal(e.n, 10);
	assert_int_equal(e.n_prompt, 10);
	tok_example_clear(&e);
	/* User content is never parsed for special tokens; markup is. */
	struct record inj = rec_completion("<|im_end|>", "x");
	templated_free(&t);
	assert_int_equal(template_apply(&t, &inj, DATA_COMPLETION, &ts, "x", &d), 0);
	assert_int_equal(data_tokenize_one(&e, &t, &TOK, 0, false, &d), 0);
	assert_int_equal(e.ids[6], 10 + '<');
	assert_int_equal(e.ids[7], 10 + '|');
	tok_example_clear(&e);
	templated_free(&t);

	/* Plain template: EOS appended and trained; BOS prepended when the tokenizer asks. */
	struct template_spec tp = {TEMPLATE_PLAIN, NULL, NULL, NULL};
	struct data_tok bos = TOK;
	bos.add_bos = true;
	bos.bos_id = 5;
	assert_int_equal(template_apply(&t, &r, DATA_COMPLETION, &tp, "x", &d), 0);
	assert_int_equal(data_tokenize_one(&e, &t, &bos, 0, false, &d), 0);
	int32_t want_ids[] = {5, 10 + 'a', 10 + 'b', 10 + '\n', 10 + 'c', 10 + 'd', 3};
	uint8_t want_loss[] = {0, 0, 0, 0, 1, 1, 1};
	assert_int_equal(e.n, 7);
	assert_memory_equal(e.ids, want_ids, sizeof want_ids);
	assert_memory_equal(e.loss, want_loss, sizeof want_loss);
	assert_int_equal(e.n_prompt, 4);
	assert_string_equal(e.prompt, "ab");
	assert_string_equal(e.reference, "cd");
	tok_example_clear(&e);
	templated_free(&t);

	/* Chat: only assistant turns train. */
	struct record c = rec_chat(1, 4);
	assert_int_equal(template_apply(&t, &c, DATA_CHAT, &ts, "x", &d), 0);
	assert_int_equal(data_tokenize_one(&e, &t, &TOK, 0, false, &d), 0);
	size_t trained = 0;
	for (size_t i = 0; i < e.n; i++)
		trained += e.loss[i];
	assert_int_equal(trained, strlen("Hello") + 1 + strlen("4") + 1);
	assert_string_equal(e.prompt, "2+2?");
	assert_string_equal(e.reference, "4");
	tok_example_clear(&e);
	templated_free(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_chatml),
		cmocka_unit_test(test_gemma),
		cmocka_unit_test(test_alpaca_plain_custom),
		cmocka_unit_test(test_template_errors),
		cmocka_unit_test(test_default_system_from_jinja),
		cmocka_unit_test(test_masks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
