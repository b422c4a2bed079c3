/* run_table: aligned text tables for ls, show and compare (columns padded to the widest
 * cell, numbers right-aligned), plus small formatting helpers shared by those commands. */
#ifndef FTLAB_RUN_TABLE_H
#define FTLAB_RUN_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "common/diag.h"

struct run_table;

/* A table with n_cols columns and the given header cells. NULL when memory runs out. */
struct run_table *run_table_new(size_t n_cols, const char *const *header);
/* Appends a row of n_cols cells (copied; NULL prints as "-"). */
int run_table_add(struct run_table *t, const char *const *cells) FT_WUR;
/* Right-aligns a column (numbers). */
void run_table_align_right(struct run_table *t, size_t col);
/* Prints with two spaces between columns; trailing spaces trimmed. */
void run_table_print(const struct run_table *t, FILE *out);
void run_table_free(struct run_table *t);


/* "%.4g"-style number for tables ("-" for NaN). buf needs 32 bytes. */
void run_format_number(char *buf, size_t n, double v);
/* "2026-11-24 04:01:22" in UTC, or "-" for 0. buf needs 24 bytes. */
void run_format_time(char *buf, size_t n, double unix_seconds);
/* "1m05s" / "2h03m" / "-" */
void run_format_duration(char *buf, size_t n, double seconds);

#endif
