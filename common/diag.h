/* diag: the one error channel. A caller-owned struct diag carries the first error's
 * code, position and text; the CLI prints it in GNU form with the source line and a caret.
 * Thread-safety: a diag belongs to one thread at a time. */
#ifndef FTLAB_DIAG_H
#define FTLAB_DIAG_H

#include <stdarg.h>
#include <stdio.h>

#define FT_WUR __attribute__((warn_unused_result))
#define FT_PRINTF(a, b) __attribute__((format(printf, a, b)))

/* Error codes: 0 or one of these negative values. */
enum ft_code {
	FT_OK = 0,
	FT_EINVAL = -1,   /* invalid user input: usage, config, data, model file (exit 2) */
	FT_EIO = -2,      /* operating-system or file-system failure */
	FT_ENOMEM = -3,   /* allocation failed; the message names the bytes asked for */
	FT_ESTORE = -4,   /* the SQLite store failed */
	FT_ERUN = -5,     /* a run or a gate failed (exit 1) */
	FT_EINTR = -6,    /* interrupted by a signal (exit 130) */
	FT_EUNSUPP = -7,  /* a feature this build or machine does not have (exit 2) */
	FT_ENEWER = -8,   /* the store was written by a newer ftlab (exit 2) */
	FT_EINTERNAL = -9 /* an internal inconsistency that is not a bug of the caller */
};

#define DIAG_TEXT_MAX 1024
#define DIAG_PATH_MAX 1024

struct diag {
	int code;                 /* 0 while no error was recorded */
	char file[DIAG_PATH_MAX]; /* "" when no file is involved */
	int line, col;            /* 1-based; 0 when unknown */
	char text[DIAG_TEXT_MAX]; /* the message, without "error: " */
	char hint[DIAG_TEXT_MAX]; /* optional note printed after the caret ("" for none) */
};

void diag_init(struct diag *d);

/* Records an error unless one is already recorded (the first error wins).
 * Returns the code that is now in d (so `return diag_set(...)` works). */
int diag_set(struct diag *d, int code, const char *file, int line, int col,
	     const char *fmt, ...) FT_PRINTF(6, 7);
int diag_vset(struct diag *d, int code, const char *file, int line, int col,
	      const char *fmt, va_list ap) FT_PRINTF(6, 0);
/* Adds a hint ("did you mean 'rank'?") to the recorded error; no-op without an error. */
void diag_hint(struct diag *d, const char *fmt, ...) FT_PRINTF(2, 3);

/* Prints the error: `file:line:col: error: text`, then the source line and a caret when
 * the file can be read and a position is known, then `note: hint`. Without a file:
 * `ftlab: error: text`. */
void diag_print(const struct diag *d, FILE *out);
/* Prints a warning in the same form (does not touch any diag). */
void diag_warn(FILE *out, const char *file, int line, int col, const char *fmt, ...)
	FT_PRINTF(5, 6);

/* The process exit status for an error code: 2 invalid input, 1 run failure,
 * 130 interrupted, 1 otherwise. */
int diag_exit_status(int code);
const char *diag_code_name(int code);

#endif
