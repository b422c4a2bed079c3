/* Architecture checks over the source tree (FTLAB_ROOT): the include arrows and the
 * third-party header places of docs/design.md's `layers` block, common/banned.h as the
 * last include of every .c file, and no enum name of the experiment file spelled as a
 * string literal outside schema/. Each rule is also run on a planted violation, so the
 * checks are known to fire. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/util.h"
#include "schema/config.h"
#include "schema/table.h"
#include "common/banned.h"

#define MAX_LAYERS 64
#define MAX_ARROWS 32
#define MAX_PLACES 16

struct layer {
	char name[32];
	char dir[128];
	char allowed[MAX_ARROWS][128]; /* layer names, or paths (with '/') */
	int n_allowed;
};

struct place {
	char header[64];
	char where[MAX_PLACES][128];
	int n;
};

struct rules {
	struct layer layers[MAX_LAYERS];
	int n_layers;
	struct place places[MAX_LAYERS];
	int n_places;
};

static const char *root(void)
{
	const char *r = getenv("FTLAB_ROOT");
	return r ? r : ".";
}

static char *read_rel(const char *rel)
{
	char *p = path_join(root(), rel);
	char *text = NULL;
	size_t len = 0;
	struct diag d;
	diag_init(&d);
	if (!p || file_read_all(&text, &len, p, 1 << 24, &d) != 0)
		text = NULL;
	free(p);
	return text;
}

/* Parses the ```layers block of docs/design.md. */
static void parse_rules(struct rules *R, const char *md)
{
	memset(R, 0, sizeof *R);
	const char *b = strstr(md, "```layers\n");
	assert_non_null(b);
	b += strlen("```layers\n");
	const char *e = strstr(b, "\n```");
	assert_non_null(e);
	char *block = strndup(b, (size_t)(e - b));
	assert_non_null(block);
	enum { LAYERS, ARROWS, PLACES } sec = LAYERS;
	char *save = NULL;
	for (char *line = strtok_r(block, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "# arrows", 8) == 0) {
			sec = ARROWS;
			continue;
		}
		if (strncmp(line, "# third-party", 13) == 0) {
			sec = PLACES;
			continue;
		}
		if (line[0] == '#' || !line[strspn(line, " ")])
			continue;
		char *ws = NULL;
		char *first = strtok_r(line, " ", &ws);
		if (sec == LAYERS) {
			assert_true(R->n_layers < MAX_LAYERS);
			struct layer *L = &R->layers[R->n_layers++];
			snprintf(L->name, sizeof L->name, "%s", first);
			snprintf(L->dir, sizeof L->dir, "%s", strtok_r(NULL, " ", &ws));
		} else if (sec == ARROWS) {
			struct layer *L = NULL;
			for (int i = 0; i < R->n_layers; i++)
				if (strcmp(R->layers[i].name, first) == 0)
					L = &R->layers[i];
			assert_non_null(L);
			char *arrow = strtok_r(NULL, " ", &ws);
			assert_non_null(arrow);
			assert_string_equal(arrow, "->");
			for (char *t = strtok_r(NULL, " ", &ws); t; t = strtok_r(NULL, " ", &ws)) {
				assert_true(L->n_allowed < MAX_ARROWS);
				snprintf(L->allowed[L->n_allowed++], 128, "%s", t);
			}
		} else {
			assert_true(R->n_places < MAX_LAYERS);
			struct place *P = &R->places[R->n_places++];
			snprintf(P->header, sizeof P->header, "%s", first);
			for (char *t = strtok_r(NULL, " ", &ws); t && P->n < MAX_PLACES;
			     t = strtok_r(NULL, " ", &ws))
				snprintf(P->where[P->n++], 128, "%s", t);
		}
	}
	free(block);
}

/* The layer of a repository path: the longest matching directory (or file). */
static const struct layer *layer_of(const struct rules *R, const char *path)
{
	const struct layer *best = NULL;
	size_t best_len = 0;
	for (int i = 0; i < R->n_layers; i++) {
		size_t n = strlen(R->layers[i].dir);
		if (strncmp(path, R->layers[i].dir, n) == 0 && n > best_len) {
			best = &R->layers[i];
			best_len = n;
		}
	}
	return best;
}

static bool allowed(const struct rules *R, const struct layer *from, const char *inc)
{
	const struct layer *to = layer_of(R, inc);
	if (!to || to == from)
		return true;
	for (int i = 0; i < from->n_allowed; i++) {
		const char *a = from->allowed[i];
		if (strchr(a, '/') ? strncmp(inc, a, strlen(a)) == 0 : strcmp(a, to->name) == 0)
			return true;
	}
	return false;
}

/* One file's text: include rules and banned.h; each violation is printed and counted. */
static int check_text(const struct rules *R, const char *path, const char *text)
{
	int bad = 0;
	const struct layer *from = layer_of(R, path);
	size_t plen = strlen(path);
	bool is_c = plen > 2 && strcmp(path + plen - 2, ".c") == 0;
	const char *last_inc = NULL;
	int lineno = 0;
	for (const char *p = text; *p;) {
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) : strlen(p);
		lineno++;
		if (n > 9 && strncmp(p, "#include ", 9) == 0) {
			char inc[256];
			const char *q = p + 9;
			char close = *q == '"' ? '"' : '>';
			const char *end = memchr(q + 1, close, n - 10);
			size_t il = end ? (size_t)(end - q - 1) : 0;
			snprintf(inc, sizeof inc, "%.*s", (int)il, q + 1);
			last_inc = inc[0] ? p : last_inc;
			if (close == '"' && from && !allowed(R, from, inc)) {
				const struct layer *to = layer_of(R, inc);
				fprintf(stderr, "%s:%d: layer %s includes %s (layer %s)\n", path, lineno,
					from->name, inc, to ? to->name : "?");
				bad++;
			}
			for (int i = 0; i < R->n_places; i++) {
				const struct place *P = &R->places[i];
				if (strcmp(inc, P->header) != 0)
					continue;
				bool ok = false;
				for (int k = 0; k < P->n; k++)
					ok |= strncmp(path, P->where[k], strlen(P->where[k])) == 0;
				if (!ok) {
					fprintf(stderr, "%s:%d: %s belongs in %s only\n", path, lineno, inc,
						P->where[0]);
					bad++;
				}
			}
		}
		p = nl ? nl + 1 : p + n;
	}
	if (is_c && (!last_inc || strncmp(last_inc, "#include \"common/banned.h\"", 26) != 0)) {
		fprintf(stderr, "%s: the last #include must be \"common/banned.h\"\n", path);
		bad++;
	}
	return bad;
}

/* String literals of the text outside comments, one callback per literal. */
static int each_literal(const char *text, int (*fn)(void *ud, const char *lit, size_t n, int line),
			void *ud)
{
	int bad = 0, line = 1;
	for (const char *p = text; *p; p++) {
		if (*p == '\n') {
			line++;
		} else if (p[0] == '/' && p[1] == '*') {
			const char *e = strstr(p + 2, "*/");
			for (const char *q = p; q < (e ? e : p + strlen(p)); q++)
				line += *q == '\n';
			p = e ? e + 1 : p + strlen(p) - 1;
		} else if (p[0] == '/' && p[1] == '/') {
			while (p[1] && p[1] != '\n')
				p++;
		} else if (*p == '\'') {
			p++;
			while (*p && *p != '\'') {
				if (*p == '\\' && p[1])
					p++;
				p++;
			}
			if (!*p)
				break;
		} else if (*p == '"') {
			const char *s = ++p;
			while (*p && *p != '"') {
				if (*p == '\\' && p[1])
					p++;
				p++;
			}
			bad += fn(ud, s, (size_t)(p - s), line);
			if (!*p)
				break;
		}
	}
	return bad;
}

/* Literals that equal an enum name of the experiment file but mean something else, each
 * with the reason. Keep this list short and specific. */
static const struct {
	const char *path, *literal, *why;
} enum_exceptions[] = {
	{"backends/native/io/gguf.c", "linear", "GGUF rope.scaling.type value"},
	{"backends/native/io/hf_dir.c", "linear", "config.json rope_scaling type"},
	{"backends/native/peft/merge.c", "linear", "config.json rope_scaling type"},
	{"backends/native/peft/adapter.c", "lora", "GGUF adapter.type of llama.cpp"},
	{"backends/native/ops/cpu/ops_cpu.c", "cuda", "ops table name (ops_get)"},
	{"backends/native/ops/cpu/ops_cpu.c", "cpu", "ops table name (ops_get)"},
	{"backends/native/ops/cuda/ops_cuda.cu", "cuda", "ops table name"},
	{"backends/native/ops/cpu/ops_cpu.c", "auto", "ops table name (ops_get)"},
	{"backends/native/data/jsonl.c", "text", "the JSON value type name in messages"},
	{"backends/native/data/jsonl.c", "completion", "record field in hashing and messages"},
	{"backends/native/data/jsonl.c", "instruction", "record field in hashing and messages"},
	{"cli/cmd_bench.c", "lora", "ftlab bench --method value"},
	{"cli/cmd_bench.c", "full", "ftlab bench --method value"},
	{"cli/cmd_bench.c", "dora", "ftlab bench --method value"},
	{"cli/cmd_bench.c", "ia3", "ftlab bench --method value"},
	{"cli/cmd_bench.c", "prefix", "ftlab bench --method value"},
	{"cli/cmd_bench.c", "adapter", "ftlab bench --method value"},
	{"backends/native/bench.c", "adapter", "ftlab bench --method value in its report"},
	{"backends/native/native_backend.c", "adapter", "the artifact kind of a run's adapter"},
	{"backends/native/peft/adapter.c", "adapter", "GGUF general.type of llama.cpp"},
	{"backends/native/export.c", "adapter", "the run directory's adapter folder"},
	{"cli/cmd_bench.c", "bf16", "ftlab bench --precision value"},
	{"cli/cmd_selftest.c", "cpu", "ftlab selftest --backend value"},
	{"cli/cmd_selftest.c", "cuda", "ftlab selftest --backend value"},
	{"backends/native/selftest.c", "cuda", "ftlab selftest --backend value"},
	{"backends/native/peft/adapter.c", "none", "adapter_config.json bias value of PEFT"},
	{"backends/native/io/gguf.c", "none", "GGUF rope.scaling.type value"},
	{"backends/native/tok/spm.c", "gemma", "GGUF general.architecture value"},
	{"runner/cluster.h", "slurm", "the workspace's directory of Slurm submissions"},
};

struct enum_ctx {
	const char *path;
	const char *const *names;
	size_t n;
};

static int check_literal(void *ud, const char *lit, size_t n, int line)
{
	const struct enum_ctx *c = ud;
	for (size_t i = 0; i < c->n; i++) {
		if (strlen(c->names[i]) != n || strncmp(lit, c->names[i], n) != 0)
			continue;
		for (size_t k = 0; k < FT_ARRAY_LEN(enum_exceptions); k++)
			if (strcmp(enum_exceptions[k].path, c->path) == 0 &&
			    strcmp(enum_exceptions[k].literal, c->names[i]) == 0)
				return 0;
		fprintf(stderr, "%s:%d: spells \"%s\", an enum name of the experiment file "
				"(use schema_enum_name/schema_enum_index)\n",
			c->path, line, c->names[i]);
		return 1;
	}
	return 0;
}

/* The enum keys whose names are the experiment file's own vocabulary. Keys whose values
 * are also ordinary words of other vocabularies (split names "train|validation|test",
 * model names "base", "error" for a level) are left out: their literals elsewhere mean
 * those other things. */
static const char *const enum_keys[] = {
	"method.type", "data.format", "data.template", "train.optimizer.type",
	"train.schedule.type", "train.precision", "train.nonfinite", "backend.type",
	"sweep.method", "sweep.objective.goal", "launcher.type", "train.objective",
	"train.preference.loss_type",
};

/* Every choice of those keys, de-duplicated. */
static size_t enum_names(const char **out, size_t cap)
{
	size_t n = 0;
	for (size_t i = 0; i < FT_ARRAY_LEN(enum_keys); i++) {
		assert_non_null(schema_find(enum_keys[i]));
		for (int v = 0; v < schema_enum_count(enum_keys[i]); v++) {
			const char *name = schema_enum_name(enum_keys[i], v);
			bool dup = false;
			for (size_t j = 0; j < n; j++)
				dup |= strcmp(out[j], name) == 0;
			if (!dup && n < cap)
				out[n++] = name;
		}
	}
	return n;
}

static int check_enums(const char *path, const char *text)
{
	if (strncmp(path, "schema/", 7) == 0 || strncmp(path, "tests/", 6) == 0)
		return 0;
	const char *names[256];
	struct enum_ctx c = {path, names, enum_names(names, FT_ARRAY_LEN(names))};
	return each_literal(text, check_literal, &c);
}

static const char *const scanned[] = {"common", "schema", "store", "scoring", "backends",
				      "runner", "reports", "cli", "tests/unit", "tests/fuzz",
				      "tests/cuda_emu"};

static bool source_name(const char *n)
{
	size_t l = strlen(n);
	return (l > 2 && (strcmp(n + l - 2, ".c") == 0 || strcmp(n + l - 2, ".h") == 0)) ||
	       (l > 3 && strcmp(n + l - 3, ".cu") == 0);
}

static int walk(const struct rules *R, const char *rel, int *files)
{
	char *abs = path_join(root(), rel);
	DIR *dir = abs ? opendir(abs) : NULL;
	free(abs);
	if (!dir)
		return 0;
	int bad = 0;
	struct dirent *e;
	while ((e = readdir(dir)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		char *sub = path_join(rel, e->d_name);
		char *full = path_join(root(), sub);
		struct stat st;
		if (sub && full && stat(full, &st) == 0) {
			if (S_ISDIR(st.st_mode)) {
				bad += walk(R, sub, files);
			} else if (source_name(e->d_name)) {
				char *text = read_rel(sub);
				assert_non_null(text);
				bad += check_text(R, sub, text) + check_enums(sub, text);
				(*files)++;
				free(text);
			}
		}
		free(sub);
		free(full);
	}
	closedir(dir);
	return bad;
}

static void load_rules(struct rules *R)
{
	char *md = read_rel("docs/design.md");
	assert_non_null(md);
	parse_rules(R, md);
	free(md);
	assert_true(R->n_layers >= 8);
	assert_true(R->n_places >= 4);
}

static void test_tree_follows_the_rules(void **state)
{
	(void)state;
	static struct rules R;
	load_rules(&R);
	int files = 0, bad = 0;
	for (size_t i = 0; i < FT_ARRAY_LEN(scanned); i++)
		bad += walk(&R, scanned[i], &files);
	assert_true(files > 100);
	assert_int_equal(bad, 0);
}

/* The same checks on planted violations: each must be found. */
static void test_planted_violations_are_found(void **state)
{
	(void)state;
	static struct rules R;
	load_rules(&R);
	/* an arrow back up the tree, and the exec backend reaching into the engine */
	assert_int_equal(check_text(&R, "reports/x.h", "#include \"runner/run.h\"\n"), 1);
	assert_int_equal(check_text(&R, "backends/exec/x.h",
				    "#include \"backends/native/model/model.h\"\n"),
			 1);
	assert_int_equal(check_text(&R, "store/x.h", "#include \"schema/config.h\"\n"), 1);
	assert_int_equal(check_text(&R, "cli/x.h", "#include \"backends/native/model/model.h\"\n"), 1);
	assert_int_equal(check_text(&R, "backends/native/ops/x.h",
				    "#include \"backends/native/model/model.h\"\n"),
			 1);
	/* allowed ones */
	assert_int_equal(check_text(&R, "cli/x.h", "#include \"backends/native/engine.h\"\n"), 0);
	assert_int_equal(check_text(&R, "backends/native/eval/x.h", "#include \"scoring/metrics.h\"\n"), 0);
	/* a third-party header out of its place */
	assert_int_equal(check_text(&R, "reports/x.h", "#include <sqlite3.h>\n"), 1);
	assert_int_equal(check_text(&R, "store/x.h", "#include <sqlite3.h>\n"), 0);
	/* banned.h missing or not last */
	assert_int_equal(check_text(&R, "common/x.c", "#include <stdio.h>\n"), 1);
	assert_int_equal(check_text(&R, "common/x.c",
				    "#include \"common/banned.h\"\n#include <stdio.h>\n"),
			 1);
	assert_int_equal(check_text(&R, "common/x.c",
				    "#include <stdio.h>\n#include \"common/banned.h\"\n"),
			 0);
	/* an enum name outside schema/; not in comments or in schema/ itself */
	assert_int_equal(check_enums("runner/x.c", "if (strcmp(m, \"freeze\") == 0) {}\n"), 1);
	assert_int_equal(check_enums("runner/x.c", "/* \"freeze\" */ x = \"frozen\";\n"), 0);
	assert_int_equal(check_enums("schema/x.c", "x = \"freeze\";\n"), 0);
}

/* The enums of config.h have as many values as their key has choices. */
static void test_enums_match_the_table(void **state)
{
	(void)state;
	static const struct {
		const char *path;
		int n;
	} enums[] = {
		{"data.format", DATA_PREFERENCE + 1},
		{"train.objective", OBJECTIVE_SIMPO + 1},
		{"train.preference.loss_type", PREF_LOSS_HINGE + 1},
		{"data.on_bad_example", BAD_EXAMPLE_SKIP + 1},
		{"method.type", METHOD_ADAPTER + 1},
		{"train.optimizer.type", OPTIMIZER_SGD + 1},
		{"train.schedule.type", SCHEDULE_COSINE + 1},
		{"train.precision", PRECISION_BF16 + 1},
		{"train.nonfinite", NONFINITE_SKIP_STEP + 1},
		{"backend.type", BACKEND_EXEC + 1},
		{"sweep.objective.goal", GOAL_MINIMIZE + 1},
		{"data.template", DATA_TEMPLATE_PLAIN + 1},
		{"launcher.type", LAUNCHER_SLURM + 1},
	};
	for (size_t i = 0; i < FT_ARRAY_LEN(enums); i++)
		assert_int_equal(schema_enum_count(enums[i].path), enums[i].n);
	assert_string_equal(schema_enum_name("method.type", METHOD_LORA), "lora");
	assert_int_equal(schema_enum_index("backend.type", "exec"), BACKEND_EXEC);
	assert_string_equal(schema_enum_name("method.type", 99), "?");
	assert_int_equal(schema_enum_index("method.type", "loraa"), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tree_follows_the_rules),
		cmocka_unit_test(test_planted_violations_are_found),
		cmocka_unit_test(test_enums_match_the_table),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
