/* cmd_report: `ftlab report EXPERIMENT|RUN|EXPERIMENT@COMMIT [-o DIR] [--baseline REF]
 * [--timeout SECONDS]`: loads the report from the store and writes index.html, report.md,
 * data/ and charts/ into DIR (default ./report-<experiment>). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "reports/report_load.h"
#include "reports/report_write.h"
#include "cli/cli.h"
#include "store/store.h"
#include "common/banned.h"

#define DEFAULT_GNUPLOT_TIMEOUT_S 60.0

int cmd_report(const struct cli *cli, int argc, char **argv)
{
	static const char *const opts[] = {"--output", "--baseline", "--timeout", "--help", NULL};
	const char *ref = NULL, *outdir = NULL, *baseline = NULL;
	double timeout_s = DEFAULT_GNUPLOT_TIMEOUT_S;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (cli_is_help(a)) {
			cli_print_usage(cli_find("report"), stdout);
			return 0;
		}
		bool has_next = i + 1 < argc;
		if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) {
			if (!has_next)
				return cli_usage_error("report", NULL, "%s needs a directory", a);
			outdir = argv[++i];
		} else if (strncmp(a, "--output=", 9) == 0) {
			outdir = a + 9;
		} else if (strcmp(a, "--baseline") == 0) {
			if (!has_next)
				return cli_usage_error("report", NULL, "--baseline needs EXPERIMENT, RUN "
						       "or EXPERIMENT@COMMIT");
			baseline = argv[++i];
		} else if (strncmp(a, "--baseline=", 11) == 0) {
			baseline = a + 11;
		} else if (strcmp(a, "--timeout") == 0 || strncmp(a, "--timeout=", 10) == 0) {
			const char *v = a[9] == '=' ? a + 10 : (has_next ? argv[++i] : NULL);
			if (!v || !parse_duration(v, &timeout_s) || timeout_s <= 0)
				return cli_usage_error("report", NULL, "--timeout needs a duration such as "
						       "60 or 2m (each gnuplot run)");
		} else if (a[0] == '-' && a[1] != '\0') {
			const char *near = nearest_word(a, opts, FT_ARRAY_LEN(opts) - 1);
			if (near)
				return cli_usage_error("report", opts, "unknown option '%s' (did you mean "
						       "'%s'?)", a, near);
			return cli_usage_error("report", opts, "unknown option '%s'", a);
		} else if (!ref) {
			ref = a;
		} else {
			return cli_usage_error("report", NULL, "one experiment or run at a time "
					       "(got '%s' and '%s')", ref, a);
		}
	}
	if (!ref)
		return cli_usage_error("report", NULL, "which experiment? (ftlab ls lists them)");

	struct diag d;
	diag_init(&d);
	struct store *s = NULL;
	struct report *r = NULL;
	char *dflt = NULL;
	int rc = store_open(&s, cli->workspace, false, &d);
	if (!rc)
		rc = report_load(&r, s, ref, &d);
	if (!rc && baseline)
		rc = report_load_baseline(r, s, baseline, &d);
	if (rc)
		goto done;
	if (!outdir) {
		/* ./report-<experiment>: experiment names are [a-z0-9._-]; anything else maps to _ */
		struct strbuf b = {0};
		rc = strbuf_puts(&b, "report-") ? FT_ENOMEM : 0;
		for (const char *p = r->experiment; !rc && *p; p++) {
			char c = *p;
			bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
				  (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
			char out = ok ? c : '_';
			rc = strbuf_append(&b, &out, 1) ? FT_ENOMEM : 0;
		}
		dflt = strbuf_detach(&b);
		outdir = dflt;
		if (rc) {
			rc = diag_set(&d, FT_ENOMEM, NULL, 0, 0, "out of memory");
			goto done;
		}
	}
	rc = report_write(r, outdir, timeout_s, &d);
	if (!rc && cli->verbosity >= 0)
		printf("%s/index.html\n%s/report.md\n", outdir, outdir);
done:
	report_free(r);
	store_close(s);
	free(dflt);
	return rc ? cli_fail(&d) : 0;
}
