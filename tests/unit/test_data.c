/* Unit tests for data/: the JSONL reader (each format, fields mapping, BOM, empty lines,
 * UTF-8, line cap, on_bad_example), the malformed corpus in tests/unit/data_malformed/
 * with its expected messages, and the split rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/native/data/dataset.h"
#include "common/hash.h"
#include "common/util.h"
#include "schema/schema.h"
#include "common/banned.h"

static int sha256_file_hex_wrap(char hex[65], const char *path)
{
	struct diag d;
	diag_init(&d);
	return sha256_file_hex(hex, path, &d);
}

static struct dataset *read_ok(const char *text, enum data_format f, const struct field_map *fm)
{
	struct dataset *ds = NULL;
	struct diag d;
	diag_init(&d);
	int rc = dataset_read_buffer(&ds, "mem.jsonl", text, strlen(text), f, fm, BAD_EXAMPLE_ERROR, &d);
	if (rc)
		print_error("unexpected error: %s:%d:%d: %s\n", d.file, d.line, d.col, d.text);
	assert_int_equal(rc, 0);
	return ds;
}

static struct diag read_bad(const char *text, enum data_format f, const struct field_map *fm)
{
	struct dataset *ds = NULL;
	struct diag d;
	diag_init(&d);
	int rc = dataset_read_buffer(&ds, "mem.jsonl", text, strlen(text), f, fm, BAD_EXAMPLE_ERROR, &d);
	assert_int_equal(rc, FT_EINVAL);
	assert_null(ds);
	return d;
}

static void test_formats(void **state)
{
	(void)state;
	struct dataset *ds = read_ok("{\"text\": \"hello\"}\n", DATA_TEXT, NULL);
	assert_int_equal(ds->n, 1);
	assert_string_equal(ds->recs[0].text, "hello");
	dataset_free(ds);

	ds = read_ok("{\"prompt\": \"p\", \"completion\": \"c\", \"extra\": 1}\n", DATA_COMPLETION, NULL);
	assert_string_equal(ds->recs[0].prompt, "p");
	assert_string_equal(ds->recs[0].response, "c");
	assert_null(ds->recs[0].system);
	dataset_free(ds);

	ds = read_ok("{\"instruction\": \"i\", \"input\": \"x\", \"output\": \"o\"}\n"
		     "{\"instruction\": \"i2\", \"output\": \"o2\"}\n"
		     "{\"instruction\": \"i3\", \"input\": null, \"output\": \"o3\", \"system\": \"S\"}\n",
		     DATA_INSTRUCTION, NULL);
	assert_int_equal(ds->n, 3);
	assert_string_equal(ds->recs[0].input, "x");
	assert_null(ds->recs[1].input);
	assert_string_equal(ds->recs[2].system, "S");
	assert_int_equal(ds->recs[2].line, 3);
	dataset_free(ds);

	ds = read_ok("{\"messages\": [{\"role\": \"system\", \"content\": \"s\"}, {\"role\": \"user\", "
		     "\"content\": \"u\"}, {\"role\": \"assistant\", \"content\": \"a\"}]}\n",
		     DATA_CHAT, NULL);
	assert_int_equal(ds->recs[0].n_msgs, 3);
	assert_int_equal(ds->recs[0].msgs[0].role, ROLE_SYSTEM);
	assert_int_equal(ds->recs[0].msgs[2].role, ROLE_ASSISTANT);
	assert_string_equal(ds->recs[0].msgs[2].content, "a");
	dataset_free(ds);
}

/* The experiment's data.fields of `yaml_fields` (a flow map) for data.format `format`,
 * resolved by the schema as a run gets them; NULL and the message in d when refused. */
static struct experiment *fields_exp(const char *format, const char *yaml_fields,
				     struct diag *d)
{
	const char *root = getenv("FTLAB_ROOT");
	char yaml[1024];
	snprintf(yaml, sizeof yaml,
		 "name: f\nmodel: {base: %s/tests/reference/fixtures/tiny-llama.gguf}\n"
		 "data: {format: %s, fields: %s}\nmethod: {type: none}\n",
		 root ? root : ".", format, yaml_fields);
	struct experiment *e = NULL;
	diag_init(d);
	if (experiment_load_buffer(&e, "/tmp/fields.yaml", yaml, strlen(yaml), NULL, 0, d))
		return NULL;
	return e;
}

/* keys: data.fields.prompt data.fields.completion data.fields.response data.fields.instruction data.fields.input data.fields.output data.fields.messages data.fields.text data.fields.system */
static void test_fields_mapping(void **state)
{
	(void)state;
	struct diag d;
	/* completion: prompt and the response alias (the product's own example). */
	struct experiment *e = fields_exp("completion", "{prompt: question, response: answer, "
					  "system: sys}", &d);
	assert_non_null(e);
	const struct field_map *fm = &experiment_config(e)->data.fields;
	assert_string_equal(fm->completion, "answer");
	struct dataset *ds = read_ok("{\"question\": \"q\", \"answer\": \"a\", \"sys\": "
				     "\"s\"}\n", DATA_COMPLETION, fm);
	assert_string_equal(ds->recs[0].prompt, "q");
	assert_string_equal(ds->recs[0].response, "a");
	assert_string_equal(ds->recs[0].system, "s");
	dataset_free(ds);
	/* The error names the mapped key. */
	d = read_bad("{\"prompt\": \"q\", \"answer\": \"a\"}\n", DATA_COMPLETION, fm);
	assert_string_equal(d.text, "missing key 'question' (the prompt)");
	assert_int_equal(d.line, 1);
	experiment_free(e);
	e = fields_exp("completion", "{completion: answer}", &d);
	ds = read_ok("{\"prompt\": \"q\", \"answer\": \"a\"}\n", DATA_COMPLETION,
		     &experiment_config(e)->data.fields);
	assert_string_equal(ds->recs[0].response, "a");
	dataset_free(ds);
	experiment_free(e);
	/* instruction: prompt names the instruction, response the output. */
	e = fields_exp("instruction", "{prompt: question, response: answer, input: ctx}", &d);
	assert_non_null(e);
	ds = read_ok("{\"question\": \"q\", \"ctx\": \"c\", \"answer\": \"a\"}\n",
		     DATA_INSTRUCTION, &experiment_config(e)->data.fields);
	assert_string_equal(ds->recs[0].instruction, "q");
	assert_string_equal(ds->recs[0].input, "c");
	assert_string_equal(ds->recs[0].response, "a");
	dataset_free(ds);
	experiment_free(e);
	e = fields_exp("instruction", "{instruction: task, output: out}", &d);
	ds = read_ok("{\"task\": \"t\", \"out\": \"o\"}\n", DATA_INSTRUCTION,
		     &experiment_config(e)->data.fields);
	assert_string_equal(ds->recs[0].instruction, "t");
	assert_string_equal(ds->recs[0].response, "o");
	dataset_free(ds);
	experiment_free(e);
	/* text and chat */
	e = fields_exp("text", "{text: body}", &d);
	ds = read_ok("{\"body\": \"b\"}\n", DATA_TEXT, &experiment_config(e)->data.fields);
	assert_string_equal(ds->recs[0].text, "b");
	dataset_free(ds);
	experiment_free(e);
	e = fields_exp("chat", "{messages: conversation}", &d);
	ds = read_ok("{\"conversation\": [{\"role\": \"user\", \"content\": \"u\"}, {\"role\": "
		     "\"assistant\", \"content\": \"a\"}]}\n", DATA_CHAT,
		     &experiment_config(e)->data.fields);
	assert_int_equal(ds->recs[0].n_msgs, 2);
	dataset_free(ds);
	experiment_free(e);
	/* A key no reader of the format reads is refused, and so are two names for one
	 * field that disagree. */
	assert_null(fields_exp("chat", "{prompt: question, response: answer}", &d));
	assert_non_null(strstr(d.text, "data.fields.prompt is read by data.format "
				       "completion, instruction or preference only, but data.format "
				       "is chat"));
	assert_null(fields_exp("text", "{messages: m}", &d));
	assert_null(fields_exp("completion", "{completion: a, response: b}", &d));
	assert_non_null(strstr(d.text, "name the same field"));
}

static void test_bom_empty_lines_crlf(void **state)
{
	(void)state;
	struct dataset *ds = read_ok("\xEF\xBB\xBF{\"text\": \"a\"}\r\n\r\n   \n{\"text\": \"b\"}", DATA_TEXT, NULL);
	assert_int_equal(ds->n, 2);
	assert_string_equal(ds->recs[0].text, "a");
	assert_int_equal(ds->recs[1].line, 4);
	assert_int_equal(ds->n_lines, 4);
	dataset_free(ds);
	/* A BOM anywhere but the start is not accepted. */
	struct diag d = read_bad("{\"text\": \"a\"}\n\xEF\xBB\xBF{\"text\": \"b\"}\n", DATA_TEXT, NULL);
	assert_int_equal(d.line, 2);
}

static void test_utf8_and_line_cap(void **state)
{
	(void)state;
	struct diag d = read_bad("{\"text\": \"ok\"}\n{\"text\": \"\xC0\xAF\"}\n", DATA_TEXT, NULL);
	assert_int_equal(d.line, 2);
	assert_int_equal(d.col, 11);
	assert_string_equal(d.text, "invalid UTF-8 (the file must be UTF-8 text)");
	d = read_bad("{\"text\": \"\xED\xA0\x80\"}\n", DATA_TEXT, NULL); /* surrogate */
	assert_int_equal(d.col, 11);
	/* Valid multi-byte text is fine. */
	struct dataset *ds = read_ok("{\"text\": \"caf\xC3\xA9 \xF0\x9F\x98\x80\"}\n", DATA_TEXT, NULL);
	dataset_free(ds);
	/* The line cap. */
	size_t n = DATA_LINE_MAX + 100;
	char *big = malloc(n + 1);
	assert_non_null(big);
	memcpy(big, "{\"text\": \"", 10);
	memset(big + 10, 'x', n - 12);
	memcpy(big + n - 2, "\"}", 2);
	big[n] = 0;
	d = read_bad(big, DATA_TEXT, NULL);
	assert_non_null(strstr(d.text, "the limit is 1048576 bytes"));
	/* Exactly at the cap is accepted. */
	n = DATA_LINE_MAX;
	memset(big + 10, 'x', n - 12);
	memcpy(big + n - 2, "\"}", 2);
	big[n] = 0;
	ds = read_ok(big, DATA_TEXT, NULL);
	assert_int_equal(strlen(ds->recs[0].text), DATA_LINE_MAX - 12);
	dataset_free(ds);
	free(big);
}

static void test_on_bad_example_skip(void **state)
{
	(void)state;
	const char *text = "{\"prompt\": \"a\", \"completion\": \"b\"}\n"
			   "{\"prompt\": 1, \"completion\": \"b\"}\n"
			   "not json\n"
			   "{\"prompt\": \"c\", \"completion\": \"d\"}\n";
	struct dataset *ds = NULL;
	struct diag d;
	diag_init(&d);
	assert_int_equal(dataset_read_buffer(&ds, "s.jsonl", text, strlen(text), DATA_COMPLETION, NULL,
					     BAD_EXAMPLE_SKIP, &d), 0);
	assert_int_equal(ds->n, 2);
	assert_int_equal(ds->n_skipped, 2);
	assert_string_equal(ds->first_skip, "s.jsonl:2: key 'prompt' must be a string, got a number");
	assert_int_equal(ds->recs[1].line, 4);
	dataset_free(ds);
	/* Everything bad is still an error. */
	const char *all_bad = "x\ny\n";
	assert_int_equal(dataset_read_buffer(&ds, "s.jsonl", all_bad, strlen(all_bad), DATA_TEXT, NULL,
					     BAD_EXAMPLE_SKIP, &d), FT_EINVAL);
	assert_non_null(strstr(d.text, "every example was skipped"));
	assert_non_null(strstr(d.hint, "s.jsonl:1:"));
}

/* Every file of the malformed corpus fails with exactly the expected message. */
static void test_malformed_corpus(void **state)
{
	(void)state;
	const char *root = getenv("FTLAB_ROOT");
	char *dir = path_join(root ? root : ".", "tests/unit/data_malformed");
	char *man = path_join(dir, "expected.tsv");
	FILE *f = fopen(man, "r");
	assert_non_null(f);
	char line[1024];
	int cases = 0;
	while (fgets(line, sizeof line, f)) {
		if (line[0] == '#' || line[0] == '\n')
			continue;
		line[strcspn(line, "\n")] = 0;
		char *save = NULL;
		char *file = strtok_r(line, "\t", &save), *fmt = strtok_r(NULL, "\t", &save),
		     *want = strtok_r(NULL, "\t", &save);
		assert_non_null(want);
		char *path = path_join(dir, file);
		struct dataset *ds = NULL;
		struct diag d;
		diag_init(&d);
		int rc = dataset_read_file(&ds, path, (enum data_format)data_format_from_name(fmt), NULL,
					   BAD_EXAMPLE_ERROR, &d);
		assert_int_equal(rc, FT_EINVAL);
		char got[4096];
		const char *base = strrchr(d.file, '/') ? strrchr(d.file, '/') + 1 : d.file;
		if (d.hint[0])
			snprintf(got, sizeof got, "%s:%d:%d: %s [%s]", base, d.line, d.col, d.text, d.hint);
		else
			snprintf(got, sizeof got, "%s:%d:%d: %s", base, d.line, d.col, d.text);
		print_message("%s\n", got);
		if (strncmp(got, want, strlen(want)) != 0) {
			print_error("%s:\n  got  %s\n  want %s\n", file, got, want);
			fail();
		}
		/* With skip, a file with one bad line among good ones loads the good ones. */
		free(path);
		cases++;
	}
	fclose(f);
	assert_true(cases >= 15);
	free(man);
	free(dir);
}

static uint8_t *hash_of(struct dataset *ds, size_t i)
{
	return ds->recs[i].hash;
}

static void test_content_hash(void **state)
{
	(void)state;
	/* Key order and whitespace do not change the hash; content does. */
	struct dataset *a = read_ok("{\"prompt\": \"p\", \"completion\": \"c\"}\n"
				    "{ \"completion\":\"c\",\"prompt\":\"p\" }\n"
				    "{\"prompt\": \"p\", \"completion\": \"c \"}\n"
				    "{\"prompt\": \"pc\", \"completion\": \"\"}\n",
				    DATA_COMPLETION, NULL);
	assert_memory_equal(hash_of(a, 0), hash_of(a, 1), 32);
	assert_memory_not_equal(hash_of(a, 0), hash_of(a, 2), 32);
	assert_memory_not_equal(hash_of(a, 0), hash_of(a, 3), 32);
	dataset_free(a);
}

/* Writes n completion examples "q<i>" -> "a<i>" (starting at `from`) to a temp file. */
static char *write_examples(int from, int n, const char *extra)
{
	char tmpl[] = "/tmp/ftlab-data-XXXXXX";
	int fd = mkstemp(tmpl);
	assert_true(fd >= 0);
	FILE *f = fdopen(fd, "w");
	for (int i = from; i < from + n; i++)
		fprintf(f, "{\"prompt\": \"q%d\", \"completion\": \"a%d\"}\n", i, i);
	if (extra)
		fputs(extra, f);
	fclose(f);
	return ft_strdup(tmpl);
}

static struct config_data base_cfg(char *train)
{
	struct config_data c;
	memset(&c, 0, sizeof c);
	c.format = DATA_COMPLETION;
	c.train = train;
	c.on_bad_example = BAD_EXAMPLE_ERROR;
	return c;
}

static bool in_set(const struct dataset *ds, const char *prompt)
{
	for (size_t i = 0; ds && i < ds->n; i++)
		if (strcmp(ds->recs[i].prompt, prompt) == 0)
			return true;
	return false;
}

static void test_fraction_split_stable(void **state)
{
	(void)state;
	char *f1 = write_examples(0, 1000, NULL);
	struct config_data c = base_cfg(f1);
	c.test = (struct split_spec){true, NULL, "train", 0.2, 11};
	c.validation = (struct split_spec){true, NULL, "train", 0.1, 11};
	struct data_splits s;
	struct diag d;
	diag_init(&d);
	assert_int_equal(data_load_splits(&s, &c, 1, &d), 0);
	size_t nt = s.test->n, nv = s.validation->n, ntr = s.train->n;
	assert_int_equal(nt + nv + ntr, 1000);
	/* Shares near the declared fractions (binomial sd ~13 and ~9.5). */
	assert_true(nt > 150 && nt < 250);
	assert_true(nv > 60 && nv < 140);
	assert_int_equal(s.dup_train_test, 0);
	/* Adding 500 examples does not move any existing one. */
	char *f2 = write_examples(0, 1500, NULL);
	struct config_data c2 = base_cfg(f2);
	c2.test = c.test;
	c2.validation = c.validation;
	struct data_splits s2;
	assert_int_equal(data_load_splits(&s2, &c2, 1, &d), 0);
	for (size_t i = 0; i < s.test->n; i++)
		assert_true(in_set(s2.test, s.test->recs[i].prompt));
	for (size_t i = 0; i < s.validation->n; i++)
		assert_true(in_set(s2.validation, s.validation->recs[i].prompt));
	for (size_t i = 0; i < s.train->n; i++)
		assert_true(in_set(s2.train, s.train->recs[i].prompt));
	/* A different split seed gives a different test set. */
	c.test.seed = 12;
	struct data_splits s3;
	assert_int_equal(data_load_splits(&s3, &c, 1, &d), 0);
	size_t same = 0;
	for (size_t i = 0; i < s3.test->n; i++)
		same += in_set(s.test, s3.test->recs[i].prompt);
	assert_true(same < s3.test->n / 2);
	/* File order is kept inside each split. */
	for (size_t i = 1; i < s.train->n; i++)
		assert_true(s.train->recs[i - 1].line < s.train->recs[i].line);
	data_splits_free(&s);
	data_splits_free(&s2);
	data_splits_free(&s3);
	unlink(f1);
	unlink(f2);
	free(f1);
	free(f2);
}

static void test_split_files_duplicates_limit(void **state)
{
	(void)state;
	char *tr = write_examples(0, 50, NULL);
	char *te = write_examples(45, 10, NULL); /* q45..q49 also in train */
	struct config_data c = base_cfg(tr);
	c.test = (struct split_spec){true, te, NULL, 0, 0};
	c.limit_train = 20;
	struct data_splits s;
	struct diag d;
	diag_init(&d);
	assert_int_equal(data_load_splits(&s, &c, 1, &d), 0);
	assert_int_equal(s.dup_train_test, 5);
	assert_int_equal(s.train->n, 20);
	assert_int_equal(s.limited_train, 30);
	assert_string_equal(s.train->recs[19].prompt, "q19");
	char *w = data_splits_warnings(&s);
	assert_non_null(strstr(w, "5 test example(s) also occur in train (exact duplicates)"));
	assert_non_null(strstr(w, "train: data.limit dropped 30 example(s)"));
	free(w);
	/* The file hash is the sha256 of the bytes. */
	char hex[65];
	assert_int_equal(sha256_file_hex_wrap(hex, tr), 0);
	assert_string_equal(hex, s.train->file_hash);
	data_splits_free(&s);
	unlink(tr);
	unlink(te);
	free(tr);
	free(te);
}

static void test_split_errors(void **state)
{
	(void)state;
	char *tr = write_examples(0, 3, NULL);
	struct config_data c = base_cfg(tr);
	c.test = (struct split_spec){true, NULL, "train", 0.01, 1};
	struct data_splits s;
	struct diag d;
	diag_init(&d);
	/* 1% of 3 examples is very likely empty: a clear error rather than an empty test set. */
	int rc = data_load_splits(&s, &c, 1, &d);
	if (rc) {
		assert_int_equal(rc, FT_EINVAL);
		assert_non_null(strstr(d.text, "split (fraction 0.01 of 3 examples of train) is empty"));
	} else {
		data_splits_free(&s);
	}
	c.test = (struct split_spec){true, NULL, "validation", 0.5, 1};
	diag_init(&d);
	assert_int_equal(data_load_splits(&s, &c, 1, &d), FT_EINVAL); /* no validation file */
	assert_non_null(strstr(d.text, "must come from a declared split that is a file"));
	c.test = (struct split_spec){true, NULL, "train", 0.6, 1};
	c.validation = (struct split_spec){true, NULL, "train", 0.6, 1};
	diag_init(&d);
	assert_int_equal(data_load_splits(&s, &c, 1, &d), FT_EINVAL);
	unlink(tr);
	free(tr);
}

/* A fraction split comes from any declared split that is a file: validation carved out of
 * the test file (and test out of the validation file) takes its share there, leaves the
 * rest to the source, and train is untouched. The split seed decides which examples. */
/* keys: data.validation data.validation.from data.validation.fraction data.validation.seed data.test data.test.from data.test.fraction data.test.seed */
static void test_split_from_any_split(void **state)
{
	(void)state;
	char *tr = write_examples(0, 50, NULL), *te = write_examples(1000, 400, NULL);
	struct config_data c = base_cfg(tr);
	c.test = (struct split_spec){true, te, NULL, 0, 0};
	c.validation = (struct split_spec){true, NULL, "test", 0.25, 7};
	struct data_splits s;
	struct diag d;
	diag_init(&d);
	int rc = data_load_splits(&s, &c, 1, &d);
	if (rc)
		fail_msg("%s", d.text);
	assert_int_equal(s.train->n, 50);
	assert_int_equal(s.validation->n + s.test->n, 400);
	assert_true(s.validation->n > 60 && s.validation->n < 140); /* about 100 */
	/* split_spec: {present, path, from, fraction, seed} */
	for (size_t i = 0; i < s.validation->n; i++) {
		assert_false(in_set(s.test, s.validation->recs[i].prompt));
		assert_true(strtol(s.validation->recs[i].prompt + 1, NULL, 10) >= 1000); /* test's */
	}
	size_t first_n = s.validation->n;
	char first[32];
	snprintf(first, sizeof first, "%s", s.validation->recs[0].prompt);
	data_splits_free(&s);
	/* Another split seed takes other examples. */
	c.validation.seed = 8;
	assert_int_equal(data_load_splits(&s, &c, 1, &d), 0);
	assert_true(s.validation->n != first_n || !in_set(s.validation, first));
	data_splits_free(&s);
	/* test carved out of a validation file */
	c.validation = (struct split_spec){true, te, NULL, 0, 0};
	c.test = (struct split_spec){true, NULL, "validation", 0.5, 3};
	assert_int_equal(data_load_splits(&s, &c, 1, &d), 0);
	assert_int_equal(s.validation->n + s.test->n, 400);
	assert_true(s.test->n > 150 && s.test->n < 250);
	assert_int_equal(s.train->n, 50);
	data_splits_free(&s);
	unlink(tr);
	unlink(te);
	free(tr);
	free(te);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_formats),
		cmocka_unit_test(test_split_from_any_split),
		cmocka_unit_test(test_fields_mapping),
		cmocka_unit_test(test_bom_empty_lines_crlf),
		cmocka_unit_test(test_utf8_and_line_cap),
		cmocka_unit_test(test_on_bad_example_skip),
		cmocka_unit_test(test_malformed_corpus),
		cmocka_unit_test(test_content_hash),
		cmocka_unit_test(test_fraction_split_stable),
		cmocka_unit_test(test_split_files_duplicates_limit),
		cmocka_unit_test(test_split_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
