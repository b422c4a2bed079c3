/* exec backend extras: what the runner needs beyond backend_exec() (backends/backend.h).
 * The protocol itself is documented in docs/exec-backend.md. */
#ifndef FTLAB_EXEC_H
#define FTLAB_EXEC_H

#include <stddef.h>

#include "common/diag.h"

/* Kills (SIGKILL) the process group of the trainer this process is running, if any.
 * Async-signal-safe: the runner calls it from its second-SIGINT handler before _exit. */
void exec_kill_children(void);

/* Replaces every {dotted.path} in `arg` with the value at that path in the JSON config
 * (strings verbatim, numbers in shortest round-trip form, booleans true/false, lists and
 * maps as compact JSON); "{{" and "}}" are literal braces. *out is owned by the caller.
 * FT_EINVAL (naming the placeholder) for an unknown path or an unclosed brace. */
int exec_substitute(char **out, const char *arg, const char *config_json, struct diag *d) FT_WUR;

#endif
