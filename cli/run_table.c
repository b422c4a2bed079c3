/* run_table: column-aligned text output for the store's commands. */
#include "cli/run_table.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/util.h"
#include "common/banned.h"

struct run_table {
	size_t n_cols, n_rows, cap_rows;
	char **cells; /* (n_rows + 1) * n_cols, row 0 is the header */
	bool *right;
};

struct run_table *run_table_new(size_t n_cols, const char *const *header)
{
	struct run_table *t = calloc(1, sizeof *t);
	if (!t)
		return NULL;
	t->n_cols = n_cols;
	t->right = calloc(n_cols, sizeof *t->right);
	if (!t->right || run_table_add(t, header) != 0) {
		run_table_free(t);
		return NULL;
	}
	return t;
}

int run_table_add(struct run_table *t, const char *const *cells)
{
	if (t->n_rows == t->cap_rows) {
		size_t cap = t->cap_rows ? t->cap_rows * 2 : 16, bytes;
		if (!size_mul(cap, t->n_cols * sizeof(char *), &bytes))
			return FT_ENOMEM;
		char **g = realloc(t->cells, bytes);
		if (!g)
			return FT_ENOMEM;
		t->cells = g;
		t->cap_rows = cap;
	}
	char **row = t->cells + t->n_rows * t->n_cols;
	for (size_t c = 0; c < t->n_cols; c++) {
		row[c] = ft_strdup(cells[c] ? cells[c] : "-");
		if (!row[c]) {
			for (size_t k = 0; k < c; k++)
				free(row[k]);
			return FT_ENOMEM;
		}
		/* Control characters would break the alignment (and the terminal). */
		for (char *p = row[c]; *p; p++)
			if ((unsigned char)*p < 0x20)
				*p = ' ';
	}
	t->n_rows++;
	return 0;
}

void run_table_align_right(struct run_table *t, size_t col)
{
	if (col < t->n_cols)
		t->right[col] = true;
}

/* Display width: UTF-8 continuation bytes do not count. */
static size_t width(const char *s)
{
	size_t w = 0;
	for (; *s; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			w++;
	return w;
}

void run_table_print(const struct run_table *t, FILE *out)
{
	size_t *w = calloc(t->n_cols, sizeof *w);
	if (!w)
		return;
	for (size_t r = 0; r < t->n_rows; r++)
		for (size_t c = 0; c < t->n_cols; c++) {
			size_t x = width(t->cells[r * t->n_cols + c]);
			if (x > w[c])
				w[c] = x;
		}
	for (size_t r = 0; r < t->n_rows; r++) {
		struct strbuf line = {0};
		int e = 0;
		for (size_t c = 0; c < t->n_cols; c++) {
			const char *cell = t->cells[r * t->n_cols + c];
			size_t pad = w[c] - width(cell);
			if (c)
				e |= strbuf_puts(&line, "  ");
			if (t->right[c])
				e |= strbuf_printf(&line, "%*s%s", (int)pad, "", cell);
			else
				e |= strbuf_printf(&line, "%s%*s", cell, (int)pad, "");
		}
		if (!e) {
			while (line.len && line.buf[line.len - 1] == ' ')
				line.buf[--line.len] = '\0';
			fprintf(out, "%s\n", line.buf ? line.buf : "");
		}
		strbuf_free(&line);
	}
	free(w);
}

void run_table_free(struct run_table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n_rows * t->n_cols; i++)
		free(t->cells[i]);
	free(t->cells);
	free(t->right);
	free(t);
}

void run_format_number(char *buf, size_t n, double v)
{
	if (isnan(v))
		snprintf(buf, n, "-");
	else
		snprintf(buf, n, "%.4g", v);
}

void run_format_time(char *buf, size_t n, double t)
{
	if (t <= 0) {
		snprintf(buf, n, "-");
		return;
	}
	time_t tt = (time_t)t;
	struct tm tm;
	gmtime_r(&tt, &tm);
	strftime(buf, n, "%Y-%m-%d %H:%M:%S", &tm);
}

void run_format_duration(char *buf, size_t n, double s)
{
	if (!(s >= 0) || !isfinite(s))
		snprintf(buf, n, "-");
	else if (s < 60)
		snprintf(buf, n, "%.1fs", s);
	else if (s < 3600)
		snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
	else
		snprintf(buf, n, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
}
