/* util: small helpers shared by every layer: growable strings, whole-file I/O,
 * directories, overflow-checked sizes, edit distance for "did you mean" hints.
 * Everything returns 0 / FT_E* codes and reports through struct diag where a file is named. */
#ifndef FTLAB_UTIL_H
#define FTLAB_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#include "diag.h"

/* The program version: `ftlab version`, and the store's message for a newer schema. */
#define FTLAB_VERSION "0.1.0"
#define FT_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* The shortest "%g" text of v that reads back as exactly v ("0.0001", "2", "1e-05"). */
void fmt_shortest(char *buf, size_t n, double v);

/* A growable NUL-terminated byte string. Zero-initialised is empty and valid. */
struct strbuf {
	char *buf;
	size_t len, cap;
};
int strbuf_append(struct strbuf *s, const char *data, size_t n) FT_WUR;
int strbuf_puts(struct strbuf *s, const char *str) FT_WUR;
int strbuf_printf(struct strbuf *s, const char *fmt, ...) FT_WUR FT_PRINTF(2, 3);
/* Returns the buffer (caller owns it, free()) and resets s. Never NULL: "" when empty. */
char *strbuf_detach(struct strbuf *s);
void strbuf_free(struct strbuf *s);

/* Duplicates; returns NULL only when memory runs out. */
char *ft_strdup(const char *s);
char *ft_strndup(const char *s, size_t n);

/* a*b and a+b with overflow detection: return false on overflow. */
static inline bool size_mul(size_t a, size_t b, size_t *out)
{
	return !__builtin_mul_overflow(a, b, out);
}
static inline bool size_add(size_t a, size_t b, size_t *out)
{
	return !__builtin_add_overflow(a, b, out);
}

/* Reads a whole file (at most max_bytes; larger is FT_EINVAL naming the limit).
 * *out is NUL-terminated, owned by the caller. */
int file_read_all(char **out, size_t *out_len, const char *path, size_t max_bytes,
		  struct diag *d) FT_WUR;
/* Writes data to path via a temporary file in the same directory, fsync and rename. */
int file_write_atomic(const char *path, const void *data, size_t n, struct diag *d) FT_WUR;
/* mkdir -p; existing directories are fine. */
int dir_make_all(const char *path, struct diag *d) FT_WUR;
/* Removes a directory tree (no error if absent). */
int dir_remove_all(const char *path) FT_WUR;
/* Joins a directory and a relative path ("a/b" + "c" -> "a/b/c"; an absolute rel is kept).
 * Caller frees. NULL on allocation failure. */
char *path_join(const char *dir, const char *rel);
/* The directory part of path ("." when none). Caller frees. */
char *path_dirname(const char *path);
bool path_exists(const char *path);

/* Parses a whole string as a number; false unless all of s is consumed and in range. */
bool parse_i64(const char *s, int64_t *out);
bool parse_f64(const char *s, double *out);
/* Parses a duration such as "90", "90s", "15m", "2h", "1d" into seconds. */
bool parse_duration(const char *s, double *out_seconds);

/* Levenshtein distance (bytes), capped: returns cap+1 when larger. */
size_t edit_distance(const char *a, const char *b, size_t cap);
/* The candidate nearest to word within distance max(2, len/3), or NULL. */
const char *nearest_word(const char *word, const char *const *candidates, size_t n);

/* Monotonic and wall clocks, in seconds; time_process_cpu: CPU time of the whole process
 * (all threads), which counts work rather than waiting on a shared machine. */
double time_monotonic(void);
double time_wall(void);
double time_process_cpu(void);
/* Peak resident memory of this process in bytes since the last mem_peak_reset (Linux
 * VmHWM; getrusage's maxrss where /proc is missing). mem_peak_reset lowers the mark to the
 * current resident size (/proc/self/clear_refs); false when the kernel refused, and the
 * peak then covers the process's whole life. */
size_t mem_peak_rss(void);
bool mem_peak_reset(void);
/* ISO-8601 UTC ("2026-11-24T03:50:24Z") into buf (at least 21 bytes). */
void time_iso8601(char *buf, size_t n, double wall_seconds);

#endif
