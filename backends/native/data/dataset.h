/* dataset: JSON Lines datasets (docs/data.md) read into records with logical field
 * names, content hashes for deterministic splits, and the train/validation/test split
 * logic. Templating lives in template.h, tokenisation and batching in loader.h.
 * This directory is the only place that includes jansson for datasets. */
#ifndef FTLAB_DATASET_H
#define FTLAB_DATASET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/diag.h"
#include "schema/config.h"

/* Longest accepted line (bytes, without the newline) and largest file. */
#define DATA_LINE_MAX ((size_t)1 << 20)
#define DATA_FILE_MAX ((size_t)1 << 30)

enum chat_role { ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT };

struct chat_msg {
	enum chat_role role;
	char *content;
};

/* One example. Which fields are set depends on the format:
 * text: text; completion: prompt, response; instruction: instruction, input (may be ""),
 * response (the output); chat: msgs; preference: chosen, rejected and the prompt as a
 * string (prompt) or as messages (msgs, ending with a user message). system is the
 * optional per-example system field (any format but text; chat carries it as a system
 * message instead). Completion, instruction and chat examples may carry choices for
 * likelihood scoring, with the index of the right one. */
struct record {
	int line;                 /* 1-based line in the source file */
	char *text;
	char *prompt, *response;
	char *instruction, *input;
	char *system;
	struct chat_msg *msgs;
	size_t n_msgs;
	char *chosen, *rejected;  /* preference: the preferred and the dispreferred completion */
	char **choices;           /* (n_choices) distinct non-empty strings, or NULL */
	size_t n_choices;
	size_t answer;            /* index of the right choice (when choices is set) */
	uint8_t hash[32];         /* sha256 of the example's content (not of its JSON text) */
};

struct dataset {
	char *path;               /* source file */
	char file_hash[65];       /* sha256 hex of the file's bytes */
	enum data_format format;
	struct record *recs;
	size_t n;
	size_t n_lines;           /* lines read, empty ones included */
	size_t n_skipped;         /* bad examples skipped (on_bad_example: skip) */
	char first_skip[DIAG_TEXT_MAX + DIAG_PATH_MAX]; /* "file:line: message" of the first skip */
};

/* Reads a JSONL file. Errors (FT_EINVAL) name the file, line, column where known, and
 * the key; with BAD_EXAMPLE_SKIP a bad line is counted in n_skipped instead (unreadable
 * files and a file without any usable example are still errors). Caller frees. */
int dataset_read_file(struct dataset **out, const char *path, enum data_format format,
		      const struct field_map *fields, enum on_bad_example on_bad,
		      struct diag *d) FT_WUR;
/* The same from a buffer; `name` is used in messages. The buffer need not be
 * NUL-terminated. */
int dataset_read_buffer(struct dataset **out, const char *name, const char *buf, size_t len,
			enum data_format format, const struct field_map *fields,
			enum on_bad_example on_bad, struct diag *d) FT_WUR;
void dataset_free(struct dataset *ds);
/* Frees every field of one record and zeroes it (the record itself is not freed). */
void record_clear(struct record *r);

/* The reference text of a record: the response, or the last assistant message of a chat,
 * or the chosen completion of a preference pair; NULL for text. Borrowed. */
const char *record_reference(const struct record *r, enum data_format f);

/* "text" | "completion" | "instruction" | "chat" | "preference"; and back (-1 when
 * unknown). */
const char *data_format_name(enum data_format f);
int data_format_from_name(const char *name);

/* Splits as declared in the config: train, validation and test datasets (NULL when a
 * split is not declared). Fraction splits are carved from their source by
 * sha256(split seed, split name, example hash): an example's assignment never depends
 * on the other examples. `limit` keeps the first N of a split in file order. */
struct data_splits {
	struct dataset *train, *validation, *test;
	/* Exact duplicates (same content hash) between splits: examples of the second
	 * split that also occur in the first. */
	size_t dup_train_test, dup_train_validation, dup_validation_test;
	size_t limited_train, limited_validation, limited_test; /* dropped by `limit` */
};

int data_load_splits(struct data_splits *out, const struct config_data *cfg, uint64_t seed,
		     struct diag *d) FT_WUR;
void data_splits_free(struct data_splits *s);

/* One line per noteworthy fact (skips, duplicates, limits), for events and warnings.
 * Returns a malloc'd string ("" when there is nothing to say), NULL on no memory. */
char *data_splits_warnings(const struct data_splits *s);

/* The carving rule, exposed for tests: true when an example with content hash h goes to
 * a split of `fraction` carved with `seed` under `split_name`. */
bool data_split_takes(const uint8_t h[32], uint64_t seed, const char *split_name,
		      double fraction);

#endif
