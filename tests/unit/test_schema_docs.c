/* The manual pages generated from tables: docs/experiment-file.md must equal the schema
 * table's rendering, docs/cli.md the command table's. UPDATE_DOCS=1 rewrites them. Also
 * checks that every key of the table is documented and reachable. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "cli/cli.h"
#include "cli/cli_doc.h"
#include "schema/schema.h"
#include "schema/table.h"
#include "common/banned.h"

static char *render(int (*fn)(FILE *))
{
	char *buf = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&buf, &len);
	assert_non_null(mem);
	assert_int_equal(fn(mem), 0);
	fclose(mem);
	return buf;
}

static void check_page(const char *rel, int (*fn)(FILE *))
{
	const char *root = getenv("FTLAB_ROOT");
	char path[1024];
	snprintf(path, sizeof path, "%s/%s", root && root[0] ? root : ".", rel);
	char *want = render(fn);
	struct diag d;
	diag_init(&d);
	if (getenv("UPDATE_DOCS") && getenv("UPDATE_DOCS")[0] == '1') {
		assert_int_equal(file_write_atomic(path, want, strlen(want), &d), 0);
		printf("wrote %s\n", path);
	}
	char *have = NULL;
	size_t n = 0;
	if (file_read_all(&have, &n, path, 1u << 22, &d) != 0)
		fail_msg("%s: %s (regenerate with UPDATE_DOCS=1)", path, d.text);
	if (strcmp(have, want) != 0) {
		/* Name the first line that differs. */
		int line = 1;
		size_t i = 0;
		for (; have[i] && have[i] == want[i]; i++)
			if (have[i] == '\n')
				line++;
		fail_msg("%s differs from its table at line %d; regenerate with UPDATE_DOCS=1 "
			 "build/tests/test_schema_docs", rel, line);
	}
	free(have);
	free(want);
}

static int write_cli(FILE *f) { return cli_write_markdown(f); }

static void test_experiment_file_page(void **state)
{
	(void)state;
	check_page("docs/experiment-file.md", schema_write_markdown);
	/* Every key is on the page, with a meaning. */
	char *page = render(schema_write_markdown);
	for (size_t i = 0; i < schema_n_keys; i++) {
		char want[256];
		snprintf(want, sizeof want, "| `%s` |", schema_keys[i].path);
		const struct key_desc *k = &schema_keys[i];
		bool heading = (!strchr(k->path, '.') && (k->type == KT_MAP || k->type == KT_GATES));
		if (!heading && !strstr(page, want))
			fail_msg("key %s is not documented", k->path);
		assert_true(k->doc && k->doc[0]);
	}
	free(page);
}

static void test_cli_page(void **state)
{
	(void)state;
	check_page("docs/cli.md", write_cli);
	char *page = render(write_cli);
	for (size_t i = 0; i < cli_n_commands; i++) {
		assert_non_null(strstr(page, cli_commands[i].usage));
		char h[64];
		snprintf(h, sizeof h, "## ftlab %s\n", cli_commands[i].name);
		assert_non_null(strstr(page, h));
	}
	free(page);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_experiment_file_page),
		cmocka_unit_test(test_cli_page),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
