/* cli_doc: the command-line reference page from the command table. */
#include "cli/cli_doc.h"

#include "common/util.h"
#include "cli/cli.h"
#include "common/banned.h"

int cli_write_markdown(FILE *out)
{
	struct strbuf sb = {0};
	int rc = strbuf_puts(
		&sb,
		"# Command line\n"
		"\n"
		"<!-- Generated from the command table in cli/cli.c: do not edit by hand.\n"
		"     Regenerate: make tests-build && UPDATE_DOCS=1 build/tests/test_schema_docs -->\n"
		"\n"
		"```\n"
		"ftlab [--workspace DIR] [--quiet|--verbose] [--json] COMMAND [ARGS]\n"
		"```\n"
		"\n"
		"- `--workspace DIR` (environment `FTLAB_WORKSPACE`, default `.ftlab` in the current\n"
		"  directory) holds the store `ftlab.db` and `runs/<run-id>/`.\n"
		"- `--quiet`, `--verbose`; `--json` prints machine-readable output where a command\n"
		"  prints data. Global options may also follow the command name.\n"
		"- `ftlab help COMMAND` and `ftlab COMMAND --help` print a command's usage;\n"
		"  `ftlab version` the version.\n"
		"- Exit status: 0 success, 1 a run or gate failed, 2 invalid input (usage, config,\n"
		"  data, model file, a store from a newer ftlab), 130 interrupted.\n"
		"- Errors go to standard error as `path:line:col: error: message` with the source\n"
		"  line and a caret when a position is known, else `ftlab: error: message`; a\n"
		"  `note:` line suggests the fix (the nearest valid key, command or option).\n"
		"- Commands that read an experiment file (check, plan, run, ci) take `-s KEY=VALUE`\n"
		"  or `--set KEY=VALUE` (repeatable) to override a key; see\n"
		"  [the experiment file](experiment-file.md).\n"
		"\n"
		"## Commands\n"
		"\n");
	for (size_t i = 0; i < cli_n_commands && !rc; i++)
		rc = strbuf_printf(&sb, "- [`%s`](#ftlab-%s): %s\n", cli_commands[i].name,
				   cli_commands[i].name, cli_commands[i].summary);
	for (size_t i = 0; i < cli_n_commands && !rc; i++) {
		const struct cli_command *c = &cli_commands[i];
		rc = strbuf_printf(&sb, "\n## ftlab %s\n\n%s.\n\n```\n%s```\n", c->name, c->summary,
				   c->usage);
	}
	if (!rc && fputs(sb.buf, out) == EOF)
		rc = FT_EIO;
	strbuf_free(&sb);
	return rc ? (rc == FT_EIO ? FT_EIO : FT_ENOMEM) : 0;
}
