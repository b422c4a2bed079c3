/* gnuplot: quoting user text for gnuplot scripts and running gnuplot on a script file.
 * gnuplot is started with posix_spawn (no shell), the script path as its only argument,
 * in the report directory, with a timeout; its stderr is captured for the error message.
 * Thread-safe (no shared state) apart from the environment read at spawn time. */
#ifndef FTLAB_GNUPLOT_H
#define FTLAB_GNUPLOT_H

#include "common/diag.h"
#include "common/util.h"

/* Appends text as a single-quoted gnuplot string: quotes doubled, control characters
 * (bytes < 0x20 and 0x7f) dropped, at most max_bytes of input used (0 = no limit;
 * a cut never splits a UTF-8 sequence). Inside single quotes gnuplot expands neither
 * backquotes, macros (@x) nor escapes. */
int gnuplot_quote(struct strbuf *out, const char *text, size_t max_bytes) FT_WUR;

/* The gnuplot program: $FTLAB_GNUPLOT when set, else "gnuplot" looked up on PATH. */
const char *gnuplot_program(void);

/* Runs `gnuplot SCRIPT` with working directory dir; SCRIPT is relative to dir.
 * stdin and stdout are /dev/null, LC_ALL=C. Errors: FT_EUNSUPP when gnuplot is missing
 * (the message names the Debian package gnuplot-nox), FT_EIO when it fails or exceeds
 * timeout_s (killed), with its stderr in the message. */
int gnuplot_run(const char *dir, const char *script, double timeout_s, struct diag *d) FT_WUR;

#endif
