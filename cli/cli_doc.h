/* cli_doc: docs/cli.md generated from the command table in cli/cli.c (every command
 * with its summary and usage), so the manual cannot drift from `ftlab help`. */
#ifndef FTLAB_CLI_DOC_H
#define FTLAB_CLI_DOC_H

#include <stdio.h>

#include "common/diag.h"

/* Writes the page; 0 or FT_EIO / FT_ENOMEM. */
int cli_write_markdown(FILE *out) FT_WUR;

#endif
