/* diag: first-error-wins recording and GNU-style printing with a source excerpt. */
#include "diag.h"

#include <string.h>
#include <stdlib.h>
#include "common/banned.h"

void diag_init(struct diag *d)
{
	memset(d, 0, sizeof *d);
}

int diag_vset(struct diag *d, int code, const char *file, int line, int col,
	      const char *fmt, va_list ap)
{
	if (!d)
		return code;
	if (d->code != 0)
		return d->code;
	d->code = code;
	snprintf(d->file, sizeof d->file, "%s", file ? file : "");
	d->line = line;
	d->col = col;
	vsnprintf(d->text, sizeof d->text, fmt, ap);
	d->hint[0] = '\0';
	return code;
}

int diag_set(struct diag *d, int code, const char *file, int line, int col,
	     const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = diag_vset(d, code, file, line, col, fmt, ap);
	va_end(ap);
	return r;
}

void diag_hint(struct diag *d, const char *fmt, ...)
{
	if (!d || d->code == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(d->hint, sizeof d->hint, fmt, ap);
	va_end(ap);
}

/* Copies line `line` (1-based) of `path` into buf; returns 0 on success. Lines longer
 * than the buffer are cut. Control characters become spaces so the caret lines up. */
static int read_source_line(const char *path, int line, char *buf, size_t n)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return -1;
	int cur = 1, c;
	size_t k = 0;
	while (cur < line && (c = fgetc(f)) != EOF)
		if (c == '\n')
			cur++;
	if (cur != line) {
		fclose(f);
		return -1;
	}
	while ((c = fgetc(f)) != EOF && c != '\n' && c != '\r') {
		if (k + 1 < n)
			buf[k++] = (c == '\t' || (unsigned char)c >= 0x20) ? (char)c : ' ';
	}
	buf[k] = '\0';
	fclose(f);
	return 0;
}

static void print_excerpt(FILE *out, const char *file, int line, int col)
{
	char src[512];
	if (!file[0] || line <= 0 || read_source_line(file, line, src, sizeof src) != 0)
		return;
	fprintf(out, "%5d | %s\n      | ", line, src);
	/* The caret sits under column col counted in bytes; tabs are kept so it lines up. */
	for (int i = 1; i < col && (size_t)(i - 1) < strlen(src); i++)
		fputc(src[i - 1] == '\t' ? '\t' : ' ', out);
	fputs("^\n", out);
}

static void print_head(FILE *out, const char *file, int line, int col, const char *kind)
{
	if (file && file[0]) {
		if (line > 0 && col > 0)
			fprintf(out, "%s:%d:%d: %s: ", file, line, col, kind);
		else if (line > 0)
			fprintf(out, "%s:%d: %s: ", file, line, kind);
		else
			fprintf(out, "%s: %s: ", file, kind);
	} else {
		fprintf(out, "ftlab: %s: ", kind);
	}
}

void diag_print(const struct diag *d, FILE *out)
{
	if (!d || d->code == 0)
		return;
	print_head(out, d->file, d->line, d->col, "error");
	fprintf(out, "%s\n", d->text);
	print_excerpt(out, d->file, d->line, d->col);
	if (d->hint[0])
		fprintf(out, "note: %s\n", d->hint);
}

void diag_warn(FILE *out, const char *file, int line, int col, const char *fmt, ...)
{
	va_list ap;
	print_head(out, file, line, col, "warning");
	va_start(ap, fmt);
	vfprintf(out, fmt, ap);
	va_end(ap);
	fputc('\n', out);
}

int diag_exit_status(int code)
{
	switch (code) {
	case FT_OK: return 0;
	case FT_EINVAL:
	case FT_EUNSUPP:
	case FT_ENEWER: return 2;
	case FT_EINTR: return 130;
	default: return 1;
	}
}

const char *diag_code_name(int code)
{
	switch (code) {
	case FT_OK: return "ok";
	case FT_EINVAL: return "invalid input";
	case FT_EIO: return "i/o error";
	case FT_ENOMEM: return "out of memory";
	case FT_ESTORE: return "store error";
	case FT_ERUN: return "run failed";
	case FT_EINTR: return "interrupted";
	case FT_EUNSUPP: return "unsupported";
	case FT_ENEWER: return "newer store";
	case FT_EINTERNAL: return "internal error";
	default: return "error";
	}
}
