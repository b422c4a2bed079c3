/* Every key of the experiment file has a behavioural test that names it. A unit test names
 * the keys it shows acting (or refused) in a comment right above its function,
 *     /+ keys: train.optimizer.momentum train.optimizer.nesterov +/   (with '*' for '+')
 *     static void test_sgd_matches_torch(void **state)
 * and a golden CLI case in a file `keys` of its directory (one key a line). This test
 * reads them all and fails when a key of schema/table.c has no such test, when a test names
 * a key the table does not have, when the marked function is not run by its file's
 * cmocka list, or when the test's own text never mentions the key (a marker must sit on a
 * test about that key: its function body, or the case's exp.yaml, args and setup, contain
 * the key's last component). docs/development.md says how to register a test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/util.h"
#include "schema/table.h"
#include "common/banned.h"

#define MAX_CLAIMS 4096

struct claim {
	char key[128];
	char where[256]; /* "tests/unit/test_optim.c:test_sgd" or "tests/golden/schema/x" */
};

struct registry {
	struct claim c[MAX_CLAIMS];
	size_t n;
	int errors;
};

static const char *root(void)
{
	const char *r = getenv("FTLAB_ROOT");
	return r ? r : ".";
}

static char *read_rel(const char *rel)
{
	char *p = path_join(root(), rel), *buf = NULL;
	size_t n;
	struct diag d;
	diag_init(&d);
	if (p && file_read_all(&buf, &n, p, 1u << 24, &d) != 0)
		buf = NULL;
	free(p);
	return buf;
}

static void error(struct registry *R, const char *fmt, ...) FT_PRINTF(2, 3);
static void error(struct registry *R, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	R->errors++;
}

/* The last dotted component of a key ("gates[].min" -> "min"). */
static const char *leaf(const char *key)
{
	const char *dot = strrchr(key, '.');
	return dot ? dot + 1 : key;
}

static bool key_known(const char *key)
{
	return schema_find(key) != NULL;
}

static void add(struct registry *R, const char *key, const char *where, const char *body)
{
	if (!key_known(key)) {
		error(R, "%s names key '%s', which schema/table.c does not have", where, key);
		return;
	}
	if (!body || !strstr(body, leaf(key))) {
		error(R, "%s names key '%s' but never mentions '%s': register a key on the test "
			 "that shows it acting", where, key, leaf(key));
		return;
	}
	if (R->n < MAX_CLAIMS) {
		snprintf(R->c[R->n].key, sizeof R->c[R->n].key, "%s", key);
		snprintf(R->c[R->n].where, sizeof R->c[R->n].where, "%s", where);
		R->n++;
	}
}

/* The text of function `name` in `text`: from its definition to the next line that starts
 * a new top-level definition ("static " or "int main"). */
static char *function_body(const char *start)
{
	const char *end = start + 1;
	for (;;) {
		end = strchr(end, '\n');
		if (!end || strncmp(end + 1, "static ", 7) == 0 || strncmp(end + 1, "int main", 8) == 0 ||
		    strncmp(end + 1, "/*", 2) == 0)
			break;
		end++;
	}
	size_t n = end ? (size_t)(end - start) : strlen(start);
	return ft_strndup(start, n);
}

/* Markers of one unit test file's text (rel names it in messages). */
static void scan_unit(struct registry *R, const char *rel, const char *text)
{
	for (const char *p = strstr(text, "/* keys:"); p; p = strstr(p + 1, "/* keys:")) {
		const char *close = strstr(p, "*/");
		if (!close) {
			error(R, "%s: unterminated keys comment", rel);
			return;
		}
		/* The next line must define the test. */
		const char *def = close + 2;
		while (*def == ' ' || *def == '\n')
			def++;
		char name[128] = "";
		if (strncmp(def, "static void ", 12) != 0 ||
		    sscanf(def + 12, "%127[A-Za-z0-9_](void **state)", name) != 1 || !name[0]) {
			error(R, "%s: a keys comment must sit right above \"static void test_x(void "
				 "**state)\"", rel);
			continue;
		}
		char reg[160];
		snprintf(reg, sizeof reg, "cmocka_unit_test(%s)", name);
		char where[256];
		snprintf(where, sizeof where, "%s:%s", rel, name);
		if (!strstr(text, reg)) {
			error(R, "%s is not in its file's cmocka list: it never runs", where);
			continue;
		}
		char *body = function_body(def);
		char keys[4096];
		size_t kl = (size_t)(close - (p + 8));
		snprintf(keys, sizeof keys, "%.*s", (int)(kl < sizeof keys ? kl : sizeof keys - 1),
			 p + 8);
		char *save = NULL;
		for (char *k = strtok_r(keys, " \t\n*", &save); k; k = strtok_r(NULL, " \t\n*", &save))
			add(R, k, where, body);
		free(body);
	}
}

static void scan_golden(struct registry *R, const char *rel)
{
	char *abs = path_join(root(), rel);
	DIR *dir = abs ? opendir(abs) : NULL;
	free(abs);
	if (!dir)
		return;
	struct dirent *e;
	while ((e = readdir(dir)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		char *sub = path_join(rel, e->d_name);
		char *full = path_join(root(), sub);
		struct stat st;
		if (sub && full && stat(full, &st) == 0 && S_ISDIR(st.st_mode)) {
			scan_golden(R, sub);
		} else if (sub && strcmp(e->d_name, "keys") == 0) {
			char *keys = read_rel(sub);
			/* The case's own text: experiment files, arguments, setup. */
			struct strbuf all = {0};
			static const char *const parts[] = {"args", "setup", "exp.yaml", "base.yaml"};
			for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
				char *pp = path_join(rel, parts[i]), *t = pp ? read_rel(pp) : NULL;
				if (t && strbuf_puts(&all, t) != 0)
					fail();
				free(t);
				free(pp);
			}
			char *args = path_join(rel, "args"), *at = args ? read_rel(args) : NULL;
			if (!at)
				error(R, "%s: keys of a directory that is not a golden case (no args)", rel);
			free(at);
			free(args);
			char *save = NULL;
			for (char *k = keys ? strtok_r(keys, " \t\n", &save) : NULL; k;
			     k = strtok_r(NULL, " \t\n", &save))
				add(R, k, rel, all.buf);
			strbuf_free(&all);
			free(keys);
		}
		free(sub);
		free(full);
	}
	closedir(dir);
}

static void scan_units(struct registry *R)
{
	char *abs = path_join(root(), "tests/unit");
	DIR *dir = opendir(abs);
	free(abs);
	assert_non_null(dir);
	struct dirent *e;
	while ((e = readdir(dir)) != NULL) {
		size_t l = strlen(e->d_name);
		if (strncmp(e->d_name, "test_", 5) != 0 || l < 3 || strcmp(e->d_name + l - 2, ".c") != 0 ||
		    strcmp(e->d_name, "test_schema_keys.c") == 0) /* its planted markers */
			continue;
		char *rel = path_join("tests/unit", e->d_name);
		char *text = read_rel(rel);
		assert_non_null(text);
		scan_unit(R, rel, text);
		free(text);
		free(rel);
	}
	closedir(dir);
}

/* The keys that must have a test: every leaf, and every map that does something by being
 * there (sections that are absent unless written: early stopping, layers, objective...). */
static bool needs_test(const struct key_desc *k)
{
	return k->type != KT_MAP || (k->flags & KF_OPTMAP);
}

static void test_every_key_has_a_test(void **state)
{
	(void)state;
	static struct registry R;
	scan_units(&R);
	scan_golden(&R, "tests/golden");
	size_t missing = 0;
	for (size_t i = 0; i < schema_n_keys; i++) {
		const struct key_desc *k = &schema_keys[i];
		if (!needs_test(k))
			continue;
		bool found = false;
		for (size_t j = 0; j < R.n && !found; j++)
			found = strcmp(R.c[j].key, k->path) == 0;
		if (!found) {
			fprintf(stderr, "key '%s' has no behavioural test naming it\n", k->path);
			missing++;
		}
	}
	print_message("%zu registrations of %zu keys\n", R.n, schema_n_keys);
	assert_int_equal(R.errors, 0);
	assert_int_equal(missing, 0);
}

/* The reader on planted texts: a key the table lacks, a marker on a test that never
 * runs, a marker whose test never mentions the key, and a good one. */
static void test_planted_registrations(void **state)
{
	(void)state;
	static struct registry R;
	const char *good = "/* keys: train.optimizer.lr */\n"
			   "static void test_a(void **state)\n{\n\tlr = 1;\n}\n"
			   "int main(void) { cmocka_unit_test(test_a); }\n";
	scan_unit(&R, "good.c", good);
	assert_int_equal(R.errors, 0);
	assert_int_equal(R.n, 1);
	const char *unknown = "/* keys: train.optimiser.lr */\n"
			      "static void test_a(void **state)\n{\n\tlr = 1;\n}\n"
			      "int main(void) { cmocka_unit_test(test_a); }\n";
	scan_unit(&R, "unknown.c", unknown);
	assert_int_equal(R.errors, 1);
	const char *not_run = "/* keys: train.optimizer.lr */\n"
			      "static void test_b(void **state)\n{\n\tlr = 1;\n}\n"
			      "int main(void) { cmocka_unit_test(test_a); }\n";
	scan_unit(&R, "not_run.c", not_run);
	assert_int_equal(R.errors, 2);
	const char *vacuous = "/* keys: train.optimizer.eps */\n"
			      "static void test_a(void **state)\n{\n\tlr = 1;\n}\n"
			      "static void test_c(void **state)\n{\n\teps = 1;\n}\n"
			      "int main(void) { cmocka_unit_test(test_a); }\n";
	scan_unit(&R, "vacuous.c", vacuous);
	assert_int_equal(R.errors, 3);
	const char *floating = "/* keys: seed */\nint x;\n";
	scan_unit(&R, "floating.c", floating);
	assert_int_equal(R.errors, 4);
	assert_int_equal(R.n, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_key_has_a_test),
		cmocka_unit_test(test_planted_registrations),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
