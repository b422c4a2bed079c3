/* scratch: one temporary directory per test group and a writer for the small experiment
 * trees (YAML files, tiny datasets, fake model files) that the schema and sweep tests load.
 * Any error fails the calling test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>

#include "tests/unit/scratch.h"

#include "common/diag.h"
#include "common/util.h"
#include "common/banned.h"

static char scratch_dir[256];

const char *scratch_open(const char *name)
{
	int n = snprintf(scratch_dir, sizeof scratch_dir, "/tmp/ftlab-test-%s-XXXXXX", name);
	assert_true(n > 0 && (size_t)n < sizeof scratch_dir);
	assert_non_null(mkdtemp(scratch_dir));
	return scratch_dir;
}

int scratch_close(void)
{
	int r = dir_remove_all(scratch_dir);
	scratch_dir[0] = '\0';
	return r;
}

void scratch_put(const char *rel, const char *text)
{
	char path[512];
	int n = snprintf(path, sizeof path, "%s/%s", scratch_dir, rel);
	assert_true(scratch_dir[0] && n > 0 && (size_t)n < sizeof path);
	char *parent = path_dirname(path);
	assert_non_null(parent);
	struct diag d;
	diag_init(&d);
	assert_int_equal(dir_make_all(parent, &d), 0);
	free(parent);
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_true(fputs(text, f) >= 0);
	assert_int_equal(fclose(f), 0);
}
