/* cmd_selftest: `ftlab selftest [--backend cpu|cuda]`: the options; the checks are the
 * native engine's (backends/native/selftest.c, through engine.h). Exit 0 passed, 1 a
 * check failed, 2 usage or no CUDA device. */
#include "cli/cli.h"

#include <stdio.h>
#include <string.h>

#include "backends/native/engine.h"
#include "common/util.h"
#include "common/banned.h"

int cmd_selftest(const struct cli *cli, int argc, char **argv)
{
	(void)cli;
	const char *want = NULL;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--backend") == 0 && i + 1 < argc) {
			want = argv[++i];
		} else if (strncmp(argv[i], "--backend=", 10) == 0) {
			want = argv[i] + 10;
		} else {
			fprintf(stderr, "ftlab: error: selftest: unexpected argument '%s'\n"
					"usage: ftlab selftest [--backend cpu|cuda]\n",
				argv[i]);
			return 2;
		}
	}
	if (want && strcmp(want, "cpu") != 0 && strcmp(want, "cuda") != 0) {
		fprintf(stderr, "ftlab: error: selftest: --backend must be cpu or cuda, not '%s'\n",
			want);
		return 2;
	}
	struct diag d;
	diag_init(&d);
	bool ok = true;
	int rc = engine_selftest(want, &ok, &d);
	if (rc) {
		diag_print(&d, stderr);
		return diag_exit_status(rc);
	}
	printf("selftest: %s\n", ok ? "passed" : "FAILED");
	return ok ? 0 : 1;
}
