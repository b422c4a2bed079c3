/* doc: docs/experiment-file.md generated from the schema table, so the manual lists every
 * key with its type, default and meaning and cannot drift (tests/unit/test_schema_docs.c
 * compares the committed page with this output). */
#include <string.h>

#include "schema/internal.h"
#include "schema/schema.h"
#include "common/banned.h"

static const char *const intro =
	"# The experiment file\n"
	"\n"
	"<!-- Generated from the schema table in schema/table.c: do not edit by hand.\n"
	"     Regenerate: make tests-build && UPDATE_DOCS=1 build/tests/test_schema_docs -->\n"
	"\n"
	"One YAML file declares an experiment: base model, data, fine-tuning method, sweep,\n"
	"metrics and CI gates. `ftlab check EXP.yaml` validates it and prints the resolved\n"
	"configuration; `ftlab plan EXP.yaml` lists the runs its sweep expands to.\n"
	"\n"
	"## Rules\n"
	"\n"
	"- Keys are snake_case. Unknown keys are errors, with the nearest valid key suggested.\n"
	"- Paths are relative to the file that names them (a base file's paths to the base).\n"
	"- Booleans are `true` and `false` only. YAML 1.1 words (`yes`, `no`, `on`, `off`,\n"
	"  `y`, `n`) are rejected with a hint, also where a string is expected: quote them\n"
	"  (`'no'`) to mean the text.\n"
	"- Anchors, aliases, tags, duplicate keys and several documents in one file are errors.\n"
	"  Files are at most 1 MiB and nest at most 32 levels.\n"
	"- Numbers: integer keys take whole numbers only; a quoted number is a string.\n"
	"- `extends: base.yaml` builds on another file: maps merge deeply, lists and values\n"
	"  replace, `key: null` removes an inherited key. Chains are followed (at most 16\n"
	"  files); cycles are errors.\n"
	"- `-s KEY=VALUE` (or `--set`) on the command line sets a dotted key after `extends`\n"
	"  is merged. The value is typed by the schema: string keys take the text as it is,\n"
	"  other keys read it as YAML (`-s method.targets=[q_proj,v_proj]`), and `null`\n"
	"  removes the key whatever its type (its default applies; a string key cannot be\n"
	"  set to the text `null` from the command line). Keys under `sweep` are values like\n"
	"  any other (`-s sweep.samples=2 -s sweep.seed=8` for a quick CI run of a sweep),\n"
	"  validated as if the file said them; `-s sweep.parameters.PATH=VALUES` sets or\n"
	"  replaces one swept parameter (`-s 'sweep.parameters.method.rank=[4, 8]'`, `=null`\n"
	"  drops it). `gates`, `extends`, `sweep.zip` and the `sweep` section as a whole are\n"
	"  edited in the file.\n"
	"- Errors are printed as `file:line:col: error: message` with the source line, a caret\n"
	"  and a note; the exit status is 2.\n"
	"\n"
	"## Identity\n"
	"\n"
	"The resolved configuration (every key below with its default filled in, except\n"
	"`description`, `extends`, `sweep` and `gates`) is written as canonical JSON: sorted\n"
	"keys, integers as integers, other numbers in their shortest exact form (`2.0e-4` and\n"
	"`0.0002` are both `0.0002`), paths relative to the experiment file. Keys that do not\n"
	"apply are left out (`method.rank` unless `method.type` is `lora` or `dora`). A run's\n"
	"identity is the sha256 of that JSON plus the content sha256 of the model (every file\n"
	"of a Hugging Face directory) and of each data file; the run id is its first 12 hex\n"
	"digits.\n"
	"Editing whitespace, comments, key order or the description therefore reuses runs.\n"
	"\n";

static const char *const sweep_text =
	"## Sweeps\n"
	"\n"
	"`sweep.parameters` maps dotted keys of this page to values, in W&B syntax:\n"
	"\n"
	"| Form | Meaning | grid | random | bayes and tpe search it as |\n"
	"|---|---|---|---|---|\n"
	"| `[a, b, c]` or `{values: [a, b, c]}` | each value | yes | drawn uniformly | ordered by value (numbers), else categories |\n"
	"| `{value: a}` | a constant | yes | yes | a constant |\n"
	"| `{distribution: categorical, values: [...], probabilities: [...]}` | weighted choice | yes (each value) | yes | categories |\n"
	"| `{distribution: int_uniform, min: 1, max: 8}` | integers min..max | yes (each integer) | yes | integers |\n"
	"| `{distribution: uniform, min: A, max: B}` | real in [A, B) | no | yes | real, linear |\n"
	"| `{distribution: log_uniform_values, min: A, max: B}` | log-uniform in [A, B] | no | yes | real, log scale |\n"
	"| `{distribution: q_uniform, min: A, max: B, q: Q}` | uniform rounded to a multiple of Q | no | yes | real, rounded |\n"
	"| `{distribution: q_log_uniform_values, min: A, max: B, q: Q}` | log-uniform rounded to Q | no | yes | real, log scale, rounded |\n"
	"| `{distribution: normal, mu: M, sigma: S}` | normal (defaults 0, 1) | no | yes | real, through the normal CDF |\n"
	"\n"
	"`{min, max}` without `distribution` is `int_uniform` when both are integers, else\n"
	"`uniform`. `sweep.zip` is a list of groups `{key: [...], key: [...]}` whose lists\n"
	"have the same length and vary together.\n"
	"\n"
	"- grid: the product of the parameters in declared order (the first varies slowest),\n"
	"  then the zip groups.\n"
	"- random: `samples` draws from one deterministic stream seeded by `sweep.seed`\n"
	"  (xoshiro256**), parameters drawn in declared order. A `seed: [1, 2, 3]` list repeats\n"
	"  every draw once per seed, so reports can aggregate over seeds.\n"
	"- bayes: `samples` runs (W&B's `run_cap` is the same), each chosen by a Gaussian\n"
	"  process and expected improvement from the objective values of the runs before it;\n"
	"  it needs `sweep.objective`. Zip groups are categories; `seed` is not searched.\n"
	"  See [Sweeps that search and stop](sweeps.md).\n"
	"- tpe: the same budget and search space, each run chosen by Optuna's tree-structured\n"
	"  Parzen estimator (its default settings: 10 random runs first, then the best of 24\n"
	"  draws from the density of the best tenth of the runs against the density of the\n"
	"  others).\n"
	"- `early_terminate` stops runs that fall behind (W&B's hyperband rule, same keys and\n"
	"  decisions); stopped runs end with status `stopped`. See [sweeps.md](sweeps.md).\n"
	"- Every swept key must be a key of this page (not `name`, `sweep.*` or `gates`), and\n"
	"  every value is validated as if written in the file; errors name the sweep entry and\n"
	"  the value.\n"
	"- More than 10,000 runs are refused unless `--max-runs N` raises the limit.\n"
	"\n"
	"## Keys\n"
	"\n";

/* Appends text with '|' escaped for a table cell. */
static int cell(struct strbuf *sb, const char *s)
{
	int rc = 0;
	for (; *s && !rc; s++)
		rc = *s == '|' ? strbuf_puts(sb, "\\|") : strbuf_append(sb, s, 1);
	return rc;
}

static int choices_list(struct strbuf *sb, const char *choices)
{
	int rc = 0;
	bool first = true;
	for (const char *p = choices; p && *p && !rc;) {
		const char *bar = strchr(p, '|');
		size_t len = bar ? (size_t)(bar - p) : strlen(p);
		rc = strbuf_printf(sb, "%s`%.*s`", first ? "" : ", ", (int)len, p);
		first = false;
		p = bar ? bar + 1 : NULL;
	}
	return rc;
}

static int bound(struct strbuf *sb, const struct key_desc *k, double v)
{
	char buf[40];
	if (k->type == KT_INT) {
		if (v >= 9007199254740991.0)
			return strbuf_puts(sb, "2^53-1");
		if (v >= 1e12)
			return strbuf_puts(sb, "10^12");
		return strbuf_printf(sb, "%.0f", v);
	}
	schema_format_double(buf, sizeof buf, v);
	return strbuf_puts(sb, buf);
}

static int type_text(struct strbuf *sb, const struct key_desc *k)
{
	int rc = 0;
	if (k->type == KT_ENUM)
		return (rc = strbuf_puts(sb, "one of ")) ? rc : choices_list(sb, k->choices);
	rc = strbuf_puts(sb, schema_type_name(k));
	if (!rc && k->type == KT_STRLIST && k->choices) {
		rc = strbuf_puts(sb, " from ");
		if (!rc)
			rc = choices_list(sb, k->choices);
	}
	if (!rc && (k->flags & KF_LO) && (k->flags & KF_HI)) {
		rc = strbuf_puts(sb, (k->flags & KF_LO_OPEN) ? " in (" : " in [");
		rc |= bound(sb, k, k->lo);
		rc |= strbuf_puts(sb, ", ");
		rc |= bound(sb, k, k->hi);
		rc |= strbuf_puts(sb, (k->flags & KF_HI_OPEN) ? ")" : "]");
	} else if (!rc && (k->flags & KF_LO)) {
		rc = strbuf_puts(sb, (k->flags & KF_LO_OPEN) ? " > " : " >= ");
		rc |= bound(sb, k, k->lo);
	}
	if (!rc && (k->flags & KF_EXISTS))
		rc = strbuf_puts(sb, ", must exist");
	return rc;
}

static int default_text(struct strbuf *sb, const struct key_desc *k)
{
	if (k->flags & KF_REQUIRED)
		return strbuf_puts(sb, "required");
	if (k->def) {
		if (strcmp(k->def, "''") == 0)
			return strbuf_puts(sb, "`\"\"`");
		int rc = strbuf_puts(sb, "`");
		return rc ? rc : (rc = cell(sb, k->def)) ? rc : strbuf_puts(sb, "`");
	}
	if (k->def_doc)
		return cell(sb, k->def_doc);
	if (k->type == KT_MAP)
		return strbuf_puts(sb, (k->flags & KF_OPTMAP) ? "absent" : "");
	return strbuf_puts(sb, "absent");
}

int schema_write_markdown(FILE *out)
{
	struct strbuf sb = {0};
	int rc = strbuf_puts(&sb, intro);
	if (!rc)
		rc = strbuf_puts(&sb, sweep_text);
	const char *section = "";
	for (size_t i = 0; i < schema_n_keys && !rc; i++) {
		const struct key_desc *k = &schema_keys[i];
		bool top = !strchr(k->path, '.') && !strstr(k->path, "[]");
		if (top && k->type == KT_MAP) {
			section = k->path;
			rc = strbuf_printf(&sb, "\n### %s\n\n%s\n\n| Key | Type | Default | Meaning |\n"
					   "|---|---|---|---|\n", k->path, k->doc);
			continue;
		}
		if (top && k->type != KT_MAP && k->type != KT_GATES && section[0]) {
			section = "";
		}
		if (top && k->type == KT_GATES) {
			section = "gates";
			rc = strbuf_printf(&sb, "\n### gates\n\n%s\n\n| Key | Type | Default | "
					   "Meaning |\n|---|---|---|---|\n", k->doc);
			continue;
		}
		if (i == 0)
			rc = strbuf_puts(&sb, "### Top level\n\n| Key | Type | Default | Meaning |\n"
					      "|---|---|---|---|\n");
		rc |= strbuf_printf(&sb, "| `%s` | ", k->path);
		rc |= type_text(&sb, k);
		rc |= strbuf_puts(&sb, " | ");
		rc |= default_text(&sb, k);
		rc |= strbuf_puts(&sb, " | ");
		rc |= cell(&sb, k->doc);
		rc |= strbuf_puts(&sb, " |\n");
	}
	if (!rc && fputs(sb.buf, out) == EOF)
		rc = FT_EIO;
	strbuf_free(&sb);
	return rc ? (rc == FT_EIO ? FT_EIO : FT_ENOMEM) : 0;
}
