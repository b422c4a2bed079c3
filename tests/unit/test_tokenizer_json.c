/* tokenizer.json features and refusals: Split behaviours, Digits, ByteLevel prefix space,
 * ignore_merges, TemplateProcessing BOS/EOS, tokenizer_config tokens, and a table of
 * malformed or unsupported files with their messages; encode/decode edge cases. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/native/tok/tokenizer.h"
#include "common/util.h"
#include "common/banned.h"

/* A small byte-level vocabulary: every printable ASCII byte and Ġ (space), Ċ (newline),
 * plus "ab", "Ġab", "abc", specials <s> </s> <x>. */
static char *make_json(const char *extra_model, const char *pre, const char *post)
{
	struct strbuf sb = {0};
	int id = 0;
	assert_int_equal(strbuf_puts(&sb, "{\"added_tokens\":[{\"id\":0,\"content\":\"<s>\",\"special\":true},"
				     "{\"id\":1,\"content\":\"</s>\",\"special\":true},"
				     "{\"id\":2,\"content\":\"<x>\",\"special\":false}],"), 0);
	assert_int_equal(strbuf_printf(&sb, "\"pre_tokenizer\":%s,\"post_processor\":%s,", pre, post), 0);
	assert_int_equal(strbuf_puts(&sb, "\"decoder\":{\"type\":\"ByteLevel\"},\"model\":{\"type\":\"BPE\",\"vocab\":{"
				     "\"<s>\":0,\"</s>\":1,\"<x>\":2"), 0);
	id = 3;
	for (int c = 33; c < 127; c++) {
		if (c == '"' || c == '\\')
			assert_int_equal(strbuf_printf(&sb, ",\"\\%c\":%d", c, id++), 0);
		else
			assert_int_equal(strbuf_printf(&sb, ",\"%c\":%d", c, id++), 0);
	}
	assert_int_equal(strbuf_printf(&sb, ",\"\xc4\xa0\":%d,\"\xc4\x8a\":%d,\"ab\":%d,\"\xc4\xa0" "ab\":%d,\"abc\":%d,\"xyz\":%d}",
				       id, id + 1, id + 2, id + 3, id + 4, id + 5), 0);
	assert_int_equal(strbuf_printf(&sb, ",\"merges\":[\"a b\",[\"\xc4\xa0\",\"ab\"],\"ab c\"]%s}}",
				       extra_model ? extra_model : ""), 0);
	return strbuf_detach(&sb);
}

#define BL "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":true}"

static struct tokenizer *mk(const char *extra_model, const char *pre, const char *post,
			    const char *config)
{
	char *j = make_json(extra_model, pre, post);
	struct diag d;
	diag_init(&d);
	struct tokenizer *t = NULL;
	int rc = tokenizer_from_json(&t, j, strlen(j), config, "tokenizer.json", &d);
	if (rc)
		diag_print(&d, stderr);
	assert_int_equal(rc, 0);
	free(j);
	return t;
}

/* The pieces of text as the tokens' texts joined with '|'. */
static void expect(const struct tokenizer *t, const char *text, bool special, const char *want)
{
	struct diag d;
	diag_init(&d);
	int32_t *ids;
	size_t n;
	assert_int_equal(tokenizer_encode(t, text, strlen(text), special, &ids, &n, &d), 0);
	struct strbuf sb = {0};
	for (size_t i = 0; i < n; i++) {
		char *s;
		size_t l;
		assert_int_equal(tokenizer_decode(t, &ids[i], 1, false, &s, &l), 0);
		assert_int_equal(strbuf_printf(&sb, "%s%s", i ? "|" : "", s), 0);
		free(s);
	}
	char *got = strbuf_detach(&sb);
	if (strcmp(got, want) != 0) {
		fprintf(stderr, "encode '%s': got '%s', want '%s'\n", text, got, want);
		fail();
	}
	free(got);
	free(ids);
}

static void test_bpe_and_pretokenizers(void **state)
{
	(void)state;
	struct tokenizer *t = mk(NULL, BL, "null", NULL);
	expect(t, "ab abc", true, "ab| ab|c"); /* "Ġab" then c: merges by rank */
	expect(t, "abc", true, "abc");
	expect(t, "<s>ab</s>", true, "<s>|ab|</s>");
	expect(t, "<s>ab", false, "<|s|>|ab");  /* special tokens are text without parse_special */
	expect(t, "a<x>b", false, "a|<x>|b");   /* added, non-special: always matched */
	expect(t, "a  b", true, "a| | |b"); /* pieces "a", " ", " b"; no merge for Ġ b */
	assert_int_equal(tokenizer_eos(t), -1);
	tokenizer_free(t);
	/* Split on "b" with each behaviour; merges a+b and ab+c show where pieces end */
	const char *beh[][2] = {{"Isolated", "a|b|c"}, {"Removed", "a|c"},
				{"MergedWithPrevious", "ab|c"}, {"MergedWithNext", "a|b|c"},
				{"Contiguous", "a|b|c"}};
	for (size_t i = 0; i < FT_ARRAY_LEN(beh); i++) {
		char pre[256];
		snprintf(pre, sizeof pre, "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\","
			 "\"pattern\":{\"String\":\"b\"},\"behavior\":\"%s\",\"invert\":false},"
			 "{\"type\":\"ByteLevel\",\"use_regex\":false}]}", beh[i][0]);
		t = mk(NULL, pre, "null", NULL);
		expect(t, "abc", true, beh[i][1]);
		tokenizer_free(t);
	}
	/* Digits individually, then prefix space from ByteLevel */
	t = mk(NULL, "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Digits\","
		  "\"individual_digits\":true},{\"type\":\"ByteLevel\",\"add_prefix_space\":true}]}",
	       "null", NULL);
	expect(t, "ab", true, " ab");
	tokenizer_free(t);
	/* many pieces each get a prefix space: the arena grows while being copied from */
	t = mk(NULL, "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\","
		  "\"pattern\":{\"String\":\"-\"},\"behavior\":\"Removed\"},"
		  "{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"use_regex\":false}]}",
	       "null", NULL);
	{
		struct strbuf sb = {0};
		for (int i = 0; i < 2000; i++)
			assert_int_equal(strbuf_puts(&sb, "ab-"), 0);
		struct diag d;
		diag_init(&d);
		int32_t *ids;
		size_t n;
		assert_int_equal(tokenizer_encode(t, sb.buf, sb.len, true, &ids, &n, &d), 0);
		assert_int_equal(n, 2000);
		for (size_t i = 0; i < n; i++)
			assert_int_equal(ids[i], tokenizer_token_id(t, "\xc4\xa0" "ab"));
		free(ids);
		strbuf_free(&sb);
	}
	tokenizer_free(t);
	/* Split with invert: the regex matches the pieces to keep */
	t = mk(NULL, "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"ab\"},\"behavior\":\"Removed\",\"invert\":true}",
	       "null", NULL);
	expect(t, "abxab", true, "ab|ab");
	tokenizer_free(t);
	/* ignore_merges: a whole word in the vocabulary wins over merges ("xyz" has no merges) */
	t = mk(",\"ignore_merges\":true", BL, "null", NULL);
	expect(t, "xyz", true, "xyz");
	tokenizer_free(t);
	t = mk(NULL, BL, "null", NULL);
	expect(t, "xyz", true, "x|y|z");
	tokenizer_free(t);
}

static void test_bos_eos_rules(void **state)
{
	(void)state;
	struct tokenizer *t = mk(NULL, BL,
				 "{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},"
				 "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},{\"SpecialToken\":{\"id\":\"</s>\",\"type_id\":0}}]}",
				 NULL);
	assert_true(tokenizer_adds_bos(t));
	assert_true(tokenizer_adds_eos(t));
	expect(t, "ab", true, "<s>|ab|</s>");
	struct diag d;
	diag_init(&d);
	int32_t *ids;
	size_t n;
	assert_int_equal(tokenizer_encode_ex(t, "ab", 2, 0, &ids, &n, &d), 0);
	assert_int_equal(n, 1);
	free(ids);
	/* skip_special drops <s> and </s> but keeps the added <x> */
	int32_t seq[] = {0, tokenizer_token_id(t, "ab"), 2, 1};
	char *s;
	assert_int_equal(tokenizer_decode(t, seq, 4, true, &s, NULL), 0);
	assert_string_equal(s, "ab<x>");
	free(s);
	tokenizer_free(t);
	t = mk(NULL, BL, "null",
	       "{\"bos_token\": {\"content\": \"<s>\"}, \"eos_token\": \"</s>\", \"pad_token\": \"<x>\","
	       "\"chat_template\": [{\"name\": \"default\", \"template\": \"T\"}]}");
	assert_int_equal(tokenizer_bos(t), 0);
	assert_int_equal(tokenizer_eos(t), 1);
	assert_int_equal(tokenizer_pad(t), 2);
	assert_false(tokenizer_adds_bos(t));
	assert_string_equal(tokenizer_chat_template(t), "T");
	tokenizer_free(t);
}

static void test_encode_decode_errors(void **state)
{
	(void)state;
	struct tokenizer *t = mk(NULL, BL, "null", NULL);
	struct diag d;
	diag_init(&d);
	int32_t *ids;
	size_t n;
	assert_int_equal(tokenizer_encode(t, "ab\xc3(", 4, true, &ids, &n, &d), FT_EINVAL);
	assert_non_null(strstr(d.text, "not valid UTF-8 (byte 2)"));
	diag_init(&d);
	assert_int_equal(tokenizer_encode(t, "\xed\xa0\x80", 3, true, &ids, &n, &d), FT_EINVAL); /* surrogate */
	assert_int_equal(tokenizer_encode(t, "", 0, true, &ids, &n, &d), 0);
	assert_int_equal(n, 0);
	free(ids);
	int32_t bad[] = {5, 100000};
	char *s;
	assert_int_equal(tokenizer_decode(t, bad, 2, false, &s, NULL), FT_EINVAL);
	int32_t neg = -1;
	assert_int_equal(tokenizer_decode(t, &neg, 1, false, &s, NULL), FT_EINVAL);
	tokenizer_free(t);
}

struct jcase {
	const char *name, *json, *want;
	int code;
};

static void test_malformed(void **state)
{
	(void)state;
	const struct jcase cases[] = {
		{"syntax", "{\"model\": {\n \"vocab\": {,}}}", "string or '}' expected", FT_EINVAL},
		{"not object", "[]", "expected model.vocab", FT_EINVAL},
		{"no merges", "{\"model\":{\"vocab\":{}}}", "expected model.vocab", FT_EINVAL},
		{"duplicate key", "{\"model\":{\"vocab\":{\"a\":0,\"a\":1},\"merges\":[]}}", "duplicate object key", FT_EINVAL},
		{"wordpiece", "{\"model\":{\"type\":\"WordPiece\",\"vocab\":{\"a\":0},\"merges\":[]}}", "model.type 'WordPiece' is not supported", FT_EUNSUPP},
		{"negative id", "{\"model\":{\"vocab\":{\"a\":-1},\"merges\":[]}}", "id is not an integer", FT_EINVAL},
		{"huge id", "{\"model\":{\"vocab\":{\"a\":99999999999},\"merges\":[]}}", "id is not an integer", FT_EINVAL},
		{"id twice", "{\"model\":{\"vocab\":{\"a\":0,\"b\":0},\"merges\":[]}}", "id 0 used twice", FT_EINVAL},
		{"unknown merge token", "{\"pre_tokenizer\":" BL ",\"model\":{\"vocab\":{\"a\":0},\"merges\":[\"a q\"]}}", "missing from the vocabulary", FT_EINVAL},
		{"merge result missing", "{\"pre_tokenizer\":" BL ",\"model\":{\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a b\"]}}", "merged token is missing", FT_EINVAL},
		{"merge shape", "{\"model\":{\"vocab\":{\"a\":0},\"merges\":[\"a\"]}}", "not two tokens", FT_EINVAL},
		{"merge pair shape", "{\"model\":{\"vocab\":{\"a\":0},\"merges\":[[\"a\"]]}}", "neither", FT_EINVAL},
		{"added not array", "{\"added_tokens\":{},\"model\":{\"vocab\":{\"a\":0},\"merges\":[]}}", "added_tokens must be an array", FT_EINVAL},
		{"added content", "{\"added_tokens\":[{\"id\":1,\"content\":5}],\"model\":{\"vocab\":{\"a\":0},\"merges\":[]}}", "content must be a string", FT_EINVAL},
		{"byte fallback alone", "{\"model\":{\"vocab\":{\"a\":0},\"merges\":[],\"byte_fallback\":true}}", "neither a byte-level BPE", FT_EUNSUPP},
		{"metaspace without replacement", "{\"pre_tokenizer\":{\"type\":\"Metaspace\"},\"model\":{\"vocab\":{\"a\":0},\"merges\":[]}}", "only the replacement", FT_EUNSUPP},
		{"metaspace other replacement", "{\"pre_tokenizer\":{\"type\":\"Metaspace\",\"replacement\":\"_\"},\"model\":{\"vocab\":{\"a\":0},\"merges\":[]}}", "only the replacement", FT_EUNSUPP},
		{"metaspace scheme", "{\"pre_tokenizer\":{\"type\":\"Metaspace\",\"replacement\":\"\u2581\",\"prepend_scheme\":\"sometimes\"},\"model\":{\"vocab\":{\"a\":0},\"merges\":[]}}", "unknown prepend_scheme 'sometimes'", FT_EINVAL},
		{"replace other", "{\"normalizer\":{\"type\":\"Replace\",\"pattern\":{\"String\":\"a\"},\"content\":\"b\"},\"model\":{\"vocab\":{\"a\":0},\"merges\":[]}}", "normalizer 'Replace' (with these settings) is not supported", FT_EUNSUPP},
		{"decoder unknown", "{\"normalizer\":{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\u2581\"},\"decoder\":{\"type\":\"WordPiece\"},\"model\":{\"vocab\":{\"a\":0},\"merges\":[]}}", "decoder 'WordPiece' (with these settings) is not supported", FT_EUNSUPP},
		{"decoder strip stop", "{\"normalizer\":{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\u2581\"},\"decoder\":{\"type\":\"Strip\",\"content\":\" \",\"start\":1,\"stop\":1},\"model\":{\"vocab\":{\"a\":0},\"merges\":[]}}", "decoder 'Strip'", FT_EUNSUPP},
		{"mixed", "{\"normalizer\":{\"type\":\"Prepend\",\"prepend\":\"\u2581\"},\"pre_tokenizer\":" BL ",\"model\":{\"vocab\":{\"a\":0},\"merges\":[]}}", "mixes byte-level and SentencePiece", FT_EUNSUPP},
		{"normalized added", "{\"normalizer\":{\"type\":\"Prepend\",\"prepend\":\"\u2581\"},\"added_tokens\":[{\"id\":1,\"content\":\"<x>\",\"normalized\":true}],\"model\":{\"vocab\":{\"a\":0},\"merges\":[]}}", "is normalized and the normalizer changes it", FT_EUNSUPP},
		{"bad regex", "{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(a\"},\"behavior\":\"Isolated\"},\"model\":{\"vocab\":{\"a\":0},\"merges\":[]}}", "regex does not compile", FT_EINVAL},
		{"bad behaviour", "{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"a\"},\"behavior\":\"Sideways\"},\"model\":{\"vocab\":{\"a\":0},\"merges\":[]}}", "unknown behavior 'Sideways'", FT_EINVAL},
		{"not byte level", "{\"model\":{\"vocab\":{\"a\":0},\"merges\":[]}}", "neither a byte-level BPE", FT_EUNSUPP},
		{"normalizer", "{\"normalizer\":{\"type\":\"Lowercase\"},\"pre_tokenizer\":" BL ",\"model\":{\"vocab\":{\"a\":0},\"merges\":[]}}", "normalizer 'Lowercase' (with these settings) is not supported", FT_EUNSUPP},
		{"deep nesting", "{\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Sequence\",\"pretokenizers\":[]}]}]}]}]}]}]}]}]}]},\"model\":{\"vocab\":{\"a\":0},\"merges\":[]}}", "nests too deeply", FT_EINVAL},
		{"empty token", "{\"model\":{\"vocab\":{\"\":0},\"merges\":[]}}", "token 0 is empty", FT_EINVAL},
	};
	for (size_t i = 0; i < FT_ARRAY_LEN(cases); i++) {
		struct diag d;
		diag_init(&d);
		struct tokenizer *t = NULL;
		int rc = tokenizer_from_json(&t, cases[i].json, strlen(cases[i].json), NULL,
					     "tokenizer.json", &d);
		if (rc != cases[i].code || !strstr(d.text, cases[i].want)) {
			fprintf(stderr, "case '%s': rc %d '%s', want %d '%s'\n", cases[i].name, rc,
				d.text, cases[i].code, cases[i].want);
			fail();
		}
		assert_null(t);
		assert_string_equal(d.file, "tokenizer.json");
	}
	struct diag d;
	diag_init(&d);
	struct tokenizer *t;
	/* an added token longer than TOK_MAX_ADDED_LEN (1024 bytes) is refused */
	char big[1200], doc[1400];
	memset(big, 'x', 1025);
	big[1025] = 0;
	snprintf(doc, sizeof doc,
		 "{\"added_tokens\":[{\"id\":1,\"content\":\"%s\"}],\"decoder\":{\"type\":"
		 "\"ByteLevel\"},\"model\":{\"vocab\":{\"a\":0},\"merges\":[]}}", big);
	assert_int_equal(tokenizer_from_json(&t, doc, strlen(doc), NULL, "tokenizer.json", &d),
			 FT_EUNSUPP);
	assert_non_null(strstr(d.text, "added token 1 is 1025 bytes long (at most 1024)"));
	diag_init(&d);
	const char *j = "{\"model\": {\n \"vocab\": {,}}}";
	assert_int_equal(tokenizer_from_json(&t, j, strlen(j), NULL, "tokenizer.json", &d), FT_EINVAL);
	assert_int_equal(d.line, 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bpe_and_pretokenizers),
		cmocka_unit_test(test_bos_eos_rules),
		cmocka_unit_test(test_encode_decode_errors),
		cmocka_unit_test(test_malformed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
