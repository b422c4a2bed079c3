/* Unit tests for provenance: real repositories made with git in a temporary directory
 * (clean, dirty with a diff, detached HEAD, remote with credentials, no commits) and a
 * directory outside any repository. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"
#include "runner/provenance.h"
#include "common/banned.h"

static void sh(const char *dir, const char *cmd)
{
	char buf[2048];
	snprintf(buf, sizeof buf,
		 "cd '%s' && export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1 "
		 "GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@x GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@x"
		 " && (%s) >/dev/null 2>&1",
		 dir, cmd);
	assert_int_equal(system(buf), 0);
}

static char *make_dir(void)
{
	char tmpl[] = "/tmp/ftlab-prov-XXXXXX";
	assert_non_null(mkdtemp(tmpl));
	return ft_strdup(tmpl);
}

static char *exp_path(const char *dir)
{
	return path_join(dir, "exp.yaml");
}

static void test_clean_and_dirty(void **state)
{
	(void)state;
	char *dir = make_dir();
	sh(dir, "git init -q -b main . && printf 'name: x\\n' > exp.yaml && printf 'a\\n' > t.py"
		" && git add . && git commit -qm one"
		" && git remote add origin https://user:s3cret@example.com/org/repo.git");
	char *p = exp_path(dir);
	struct provenance pv;
	struct diag d;
	diag_init(&d);
	assert_int_equal(provenance_collect(&pv, p, &d), 0);
	assert_true(pv.is_repo);
	assert_non_null(pv.commit);
	assert_int_equal(strlen(pv.commit), 40);
	assert_string_equal(pv.branch, "main");
	assert_false(pv.dirty);
	assert_string_equal(pv.changed, "");
	assert_string_equal(pv.diff, "");
	assert_string_equal(pv.remote, "https://example.com/org/repo.git");
	char commit[41];
	snprintf(commit, sizeof commit, "%s", pv.commit);
	provenance_clear(&pv);

	/* Untracked files (a workspace in the tree) do not make it dirty. */
	sh(dir, "mkdir -p .ftlab && touch .ftlab/ftlab.db new.txt");
	assert_int_equal(provenance_collect(&pv, p, &d), 0);
	assert_false(pv.dirty);
	provenance_clear(&pv);

	/* A modified tracked file does; the diff holds the change. */
	sh(dir, "printf 'b\\n' >> t.py");
	assert_int_equal(provenance_collect(&pv, p, &d), 0);
	assert_true(pv.dirty);
	assert_string_equal(pv.commit, commit);
	assert_string_equal(pv.changed, "t.py\n");
	assert_non_null(strstr(pv.diff, "+++ b/t.py"));
	assert_non_null(strstr(pv.diff, "+b"));
	provenance_clear(&pv);

	/* Staged changes count too; detached HEAD has no branch. */
	sh(dir, "git add t.py && git commit -qm two && git checkout -q --detach HEAD"
		" && printf 'c\\n' > exp.yaml && git add exp.yaml");
	assert_int_equal(provenance_collect(&pv, p, &d), 0);
	assert_true(pv.dirty);
	assert_null(pv.branch);
	assert_string_equal(pv.changed, "exp.yaml\n");
	assert_non_null(strstr(pv.diff, "exp.yaml"));
	provenance_clear(&pv);
	free(p);
	assert_int_equal(dir_remove_all(dir), 0);
	free(dir);
}

static void test_not_a_repository(void **state)
{
	(void)state;
	char *dir = make_dir();
	char *p = exp_path(dir);
	struct provenance pv;
	struct diag d;
	diag_init(&d);
	assert_int_equal(provenance_collect(&pv, p, &d), 0);
	assert_false(pv.is_repo);
	assert_null(pv.commit);
	assert_int_equal(d.code, 0);
	provenance_clear(&pv);
	free(p);
	assert_int_equal(dir_remove_all(dir), 0);
	free(dir);
}

static void test_repository_without_commits(void **state)
{
	(void)state;
	char *dir = make_dir();
	sh(dir, "git init -q . && printf 'x\\n' > exp.yaml");
	char *p = exp_path(dir);
	struct provenance pv;
	struct diag d;
	diag_init(&d);
	assert_int_equal(provenance_collect(&pv, p, &d), 0);
	assert_true(pv.is_repo);
	assert_null(pv.commit);
	provenance_clear(&pv);
	free(p);
	assert_int_equal(dir_remove_all(dir), 0);
	free(dir);
}

static void test_strip_credentials(void **state)
{
	(void)state;
	char out[256];
	provenance_strip_credentials(out, sizeof out, "https://tok:x-oauth@github.com/a/b.git");
	assert_string_equal(out, "https://github.com/a/b.git");
	provenance_strip_credentials(out, sizeof out, "https://ghp_abc@github.com/a/b");
	assert_string_equal(out, "https://github.com/a/b");
	provenance_strip_credentials(out, sizeof out, "ssh://git@host:22/x/y");
	assert_string_equal(out, "ssh://host:22/x/y");
	provenance_strip_credentials(out, sizeof out, "https://a:b@c@host/p@q");
	assert_string_equal(out, "https://host/p@q");
	provenance_strip_credentials(out, sizeof out, "git@github.com:a/b.git");
	assert_string_equal(out, "git@github.com:a/b.git");
	provenance_strip_credentials(out, sizeof out, "/srv/git/repo");
	assert_string_equal(out, "/srv/git/repo");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_clean_and_dirty),
		cmocka_unit_test(test_not_a_repository),
		cmocka_unit_test(test_repository_without_commits),
		cmocka_unit_test(test_strip_credentials),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
