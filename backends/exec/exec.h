/* exec backend extras: what the runner needs beyond backend_exec() (backends/backend.h).
 * The protocol itself is documented in docs/exec-backend.md. */
#ifndef FTLAB_EXEC_H
#define FTLAB_EXEC_H

#include <stddef.h>
#include <stdio.h>

#include "common/diag.h"

struct run_ctx;

/* Replaces every {dotted.path} in `arg` with the value at that path in the JSON config
 * (strings verbatim, numbers in shortest round-trip form, booleans true/false, lists and
 * maps as compact JSON); "{{" and "}}" are literal braces. *out is owned by the caller.
 * FT_EINVAL (naming the placeholder) for an unknown path or an unclosed brace. */
int exec_substitute(char **out, const char *arg, const char *config_json, struct diag *d) FT_WUR;

/* Feeds trainer output (the JSON Lines protocol of docs/exec-backend.md) from a buffer
 * through the same parser a running trainer's stdout goes through, then scores the
 * eval.metrics it did not report; non-protocol lines go to `log` (may be NULL). Returns
 * the first sink error or 0. For tests and the fuzzer. */
int exec_parse_output(const struct run_ctx *ctx, const char *data, size_t n, FILE *log) FT_WUR;

#endif
