/* libFuzzer harness: arbitrary bytes as user text (experiment names, predictions, errors)
 * through every escaper the reports use, and as a run's resolved config for the config
 * diff. Checks the escapers' promises, not only memory safety: gnuplot strings stay one
 * single-quoted string without control characters, HTML and XML output hold no raw markup
 * characters, XML output is valid UTF-8. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "reports/gates.h"
#include "reports/gnuplot.h"
#include "reports/report.h"
#include "reports/report_write.h"
#include "common/banned.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_gnuplot(const char *s)
{
	struct strbuf b = {0};
	if (gnuplot_quote(&b, s, 80) != 0)
		abort();
	size_t n = b.len;
	if (n < 2 || b.buf[0] != '\'' || b.buf[n - 1] != '\'')
		abort();
	/* inside: quotes come in pairs, no control characters */
	for (size_t i = 1; i + 1 < n; i++) {
		unsigned char c = (unsigned char)b.buf[i];
		if (c < 0x20 || c == 0x7f)
			abort();
		if (c == '\'') {
			if (b.buf[i + 1] != '\'' || i + 2 >= n)
				abort();
			i++;
		}
	}
	strbuf_free(&b);
}

static void check_markup(const char *s)
{
	struct strbuf b = {0};
	if (html_escape(&b, s) != 0 || strpbrk(b.buf ? b.buf : "", "<>\"'"))
		abort();
	strbuf_free(&b);
	if (md_escape(&b, s, 64) != 0 || strpbrk(b.buf ? b.buf : "", "\n|") != NULL) {
		/* '|' only escaped: every '|' must follow a backslash */
		for (const char *p = b.buf; p && (p = strchr(p, '|')); p++)
			if (p == b.buf || p[-1] != '\\')
				abort();
		if (b.buf && strchr(b.buf, '\n'))
			abort();
	}
	strbuf_free(&b);
	if (xml_escape(&b, s) != 0 || strpbrk(b.buf ? b.buf : "", "<>\"'"))
		abort();
	const unsigned char *p = (const unsigned char *)(b.buf ? b.buf : "");
	while (*p) { /* valid UTF-8, no control characters */
		size_t k = *p < 0x80 ? 1 : (*p & 0xE0) == 0xC0 ? 2 : (*p & 0xF0) == 0xE0 ? 3 : 4;
		if (*p < 0x20 || (*p >= 0x80 && *p < 0xC2) || *p > 0xF4)
			abort();
		for (size_t i = 1; i < k; i++)
			if ((p[i] & 0xC0) != 0x80)
				abort();
		p += k;
	}
	strbuf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = ft_strndup((const char *)data, size);
	if (!s)
		return 0;
	check_gnuplot(s);
	check_markup(s);
	const char *cfgs[2] = {s, "{\"a\":{\"b\":1}}"};
	struct report_diff diff;
	struct diag d;
	diag_init(&d);
	if (report_config_diff(&diff, cfgs, 2, &d) == 0)
		report_diff_free(&diff);
	free(s);
	return 0;
}
