/* schema: experiment files. Loads YAML (with `extends:` and `-s KEY=VALUE` overrides),
 * validates it against the schema table, fills struct config and computes the canonical
 * JSON and hashes. Sweep expansion lives in runner/sweep.c; it uses the node-level entry
 * points at the end of this header. Thread-safety: an experiment is read-only after load
 * and may be shared between threads. */
#ifndef FTLAB_SCHEMA_H
#define FTLAB_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "common/diag.h"
#include "schema/config.h"

/* Caps on untrusted input (stated at the top of docs/experiment-file.md). */
#define SCHEMA_MAX_FILE_BYTES (1u << 20) /* one experiment file */
#define SCHEMA_MAX_DEPTH 32              /* nesting of maps and lists */
#define SCHEMA_MAX_EXTENDS 16            /* length of an `extends:` chain */

struct experiment; /* opaque */

/* Loads and validates the experiment at `path`, applying `overrides` ("a.b.c=value",
 * typed by the schema, in order, after `extends:` is merged). On success *out belongs to
 * the caller (experiment_free). Errors: FT_EINVAL (position or override named in d),
 * FT_EIO, FT_ENOMEM. */
int experiment_load(struct experiment **out, const char *path, const char *const *overrides,
		    size_t n_overrides, struct diag *d) FT_WUR;
/* The same from bytes in memory; `name` is the file name used in messages and as the
 * base for relative paths (the fuzzer's entry point). `extends:` is resolved from disk. */
int experiment_load_buffer(struct experiment **out, const char *name, const char *data,
			   size_t len, const char *const *overrides, size_t n_overrides,
			   struct diag *d) FT_WUR;
void experiment_free(struct experiment *e);

/* Borrowed views, valid until experiment_free. */
const struct config *experiment_config(const struct experiment *e); /* no sweep applied */
const char *experiment_name(const struct experiment *e);
const char *experiment_path(const struct experiment *e);
/* Canonical JSON (sorted keys, normalised numbers) of the whole resolved experiment
 * including `sweep` and `gates`, and its sha256 hex. For the store's experiments table. */
const char *experiment_spec_json(const struct experiment *e);
const char *experiment_spec_hash(const struct experiment *e);

/* Writes the resolved config (defaults filled, keys in schema order) as YAML, from its
 * canonical JSON. Returns 0 or FT_EIO. */
int config_write_yaml(FILE *out, const struct config *c) FT_WUR;
/* Any JSON text as YAML, keys of the experiment file in schema order, other keys after
 * them in their order; the one YAML emitter (config.yaml, `ftlab show`, `ftlab check`).
 * *out is owned by the caller. FT_EINVAL (JSON not readable) or FT_ENOMEM with d set. */
int schema_json_to_yaml(char **out, const char *json, struct diag *d) FT_WUR;

/* Writes the whole resolved experiment (config, sweep, gates) as YAML in schema order. */
int experiment_write_yaml(FILE *out, const struct experiment *e) FT_WUR;

/* Writes docs/experiment-file.md's text (every key: type, default, meaning) generated
 * from the schema table. */
int schema_write_markdown(FILE *out) FT_WUR;

/* launcher.time: seconds from a Slurm time ("MM", "MM:SS", "HH:MM:SS", "D-HH", "D-HH:MM",
 * "D-HH:MM:SS") or an ftlab duration ("90s", "15m", "2h", "1d"); false when it is neither
 * or not positive. */
bool schema_slurm_time(const char *s, double *out_s);
/* launcher.mem: digits with an optional K, M, G or T suffix (Slurm's --mem). */
bool schema_slurm_mem_ok(const char *s);

/* ---- For runner/sweep.c ---------------------------------------------------------- */

/* The `sweep:` section of the merged file, or NULL when there is none. Borrowed. */
struct node;
/* The value the merged file (overrides applied, defaults not filled) gives the dotted
 * schema path, or NULL; borrowed. For messages that point at a value (node_error). */
const struct node *experiment_node(const struct experiment *e, const char *path);
const struct node *experiment_sweep(const struct experiment *e);

/* One assignment of a sweep point: a dotted schema path and the value node to put there
 * (borrowed; a node from the file, or one made with node_new_scalar). */
struct schema_assign {
	const char *path;
	const struct node *value;
};
/* Builds and validates a config from the experiment's merged tree with `assign` applied
 * (each path must be a sweepable schema leaf: schema_sweepable). Errors are prefixed
 * with `ctx` (e.g. "sweep entry 'method.rank' value 0"). *out is the caller's
 * (config_free then free). When params_json is not NULL it receives the canonical JSON
 * object of the assigned paths' resolved values ({"method.rank":8}, sorted keys; caller
 * frees). */
int experiment_config_with(struct config **out, char **params_json,
			   const struct experiment *e, const struct schema_assign *assign,
			   size_t n, const char *ctx, struct diag *d) FT_WUR;
/* True when `path` names a leaf of the schema that a sweep may set. */
bool schema_sweepable(const char *path);
/* The sweepable dotted paths (static array), for "did you mean" hints. */
const char *const *schema_sweepable_paths(size_t *n);

/* Formats a double in the canonical form: shortest text that reads back exactly,
 * "1.0" for integral values, exponent without '+' or leading zeros ("2e-4").
 * buf needs 32 bytes. Non-finite values give "null". */
void schema_format_double(char *buf, size_t n, double v);

#endif
