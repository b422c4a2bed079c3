/* table: the schema of the experiment file as data. One row per key (dotted path;
 * "gates[]." for the entries of the gates list) with its type, default, range or choices
 * and documentation. It drives validation, defaults, override typing, sweep path checks,
 * the reference manual and "did you mean" hints. */
#ifndef FTLAB_SCHEMA_TABLE_H
#define FTLAB_SCHEMA_TABLE_H

#include <stdbool.h>
#include <stddef.h>

enum key_type {
	KT_MAP,        /* a section with fixed keys */
	KT_INT,
	KT_FLOAT,
	KT_BOOL,
	KT_STR,
	KT_NAME,       /* [a-z0-9._-]+ */
	KT_ENUM,       /* one of choices */
	KT_PATH,       /* file path relative to the file that names it */
	KT_DURATION,   /* "90", "15m", "2h" -> seconds */
	KT_STRLIST,    /* list of strings (choices, when set, restrict the items) */
	KT_FLOATLIST,  /* list of numbers (fixed length in lo..hi of `count`) */
	KT_SPLIT,      /* a path, or a map {from, fraction, seed} */
	KT_TARGETS,    /* "all-linear" or a list of module names */
	KT_TEMPLATE,   /* a template name from choices or a custom string with {prompt} */
	KT_METRIC,     /* "split.metric" */
	KT_GATES,      /* list of maps with "gates[]." keys */
	KT_PARAMS,     /* sweep.parameters: dotted path -> values or distribution */
	KT_ZIP         /* sweep.zip: list of maps path -> list */
};

enum {
	KF_REQUIRED = 1 << 0,  /* must be present */
	KF_OPTMAP = 1 << 1,    /* a map that is absent unless written (no defaults inside) */
	KF_LO = 1 << 2,        /* lo is a lower bound (inclusive) */
	KF_HI = 1 << 3,        /* hi is an upper bound (inclusive) */
	KF_LO_OPEN = 1 << 4,   /* ... exclusive */
	KF_HI_OPEN = 1 << 5,
	KF_EXISTS = 1 << 6,    /* the path must exist */
	KF_NOSWEEP = 1 << 7,   /* not settable by sweeps */
	KF_NOCANON = 1 << 8    /* not part of the canonical config (identity) */
};

struct key_desc {
	const char *path;
	enum key_type type;
	unsigned flags;
	const char *def;      /* default as YAML flow text; NULL = absent unless written */
	double lo, hi;
	const char *choices;  /* "a|b|c" for KT_ENUM, KT_STRLIST items, KT_TEMPLATE names */
	const char *doc;      /* one or two sentences for the manual */
	const char *def_doc;  /* how the manual shows a computed default, or NULL */
};

extern const struct key_desc schema_keys[];
extern const size_t schema_n_keys;

/* The row for a dotted path, or NULL. */
const struct key_desc *schema_find(const char *path);
/* The type name the manual and messages use ("integer", "list of strings", ...). */
const char *schema_type_name(const struct key_desc *k);
/* True when choice is in the "a|b|c" list. */
bool schema_choice_ok(const char *choices, const char *choice);
/* The nearest word of a "a|b|c" list to word, copied into buf; false when none. */
bool schema_choice_nearest(const char *choices, const char *word, char *buf, size_t n);

/* The enums of struct config (config.h) number the choices of their key in table order,
 * so these are the one place their names live. The name of choice `value` of the key at
 * path ("method.type", 3 -> "lora"; a static string), or "?" out of range. Thread-safe. */
const char *schema_enum_name(const char *path, int value);
/* The index of name among the choices of path, or -1. */
int schema_enum_index(const char *path, const char *name);
/* How many choices path has (0 for a key without choices). */
int schema_enum_count(const char *path);

/* A key that applies to some values of method.type only (methods: "lora|dora"). The
 * validator refuses it with another method; a sweep point that sets method.type drops the
 * experiment file's keys that do not apply to the point's method (runner/sweep.c checks
 * that each applies to at least one swept method). A new method adds its keys here. */
struct method_key {
	const char *path, *methods;
};
extern const struct method_key schema_method_keys[];
extern const size_t schema_n_method_keys;
struct node;
/* true when tree's sweep sets method.type (in sweep.parameters or a sweep.zip group) */
bool schema_method_type_swept(const struct node *tree);

#endif
