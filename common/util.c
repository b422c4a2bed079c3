/* util: implementations of the shared helpers declared in util.h. */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "common/banned.h"

int strbuf_append(struct strbuf *s, const char *data, size_t n)
{
	size_t need;
	if (!size_add(s->len, n, &need) || !size_add(need, 1, &need))
		return FT_ENOMEM;
	if (need > s->cap || !s->buf) {
		size_t cap = s->cap ? s->cap : 64;
		while (cap < need) {
			if (!size_mul(cap, 2, &cap))
				return FT_ENOMEM;
		}
		char *p = realloc(s->buf, cap);
		if (!p)
			return FT_ENOMEM;
		s->buf = p;
		s->cap = cap;
	}
	if (n)
		memcpy(s->buf + s->len, data, n);
	s->len += n;
	s->buf[s->len] = '\0';
	return 0;
}

int strbuf_puts(struct strbuf *s, const char *str)
{
	return strbuf_append(s, str, strlen(str));
}

int strbuf_printf(struct strbuf *s, const char *fmt, ...)
{
	va_list ap;
	char small[256];
	va_start(ap, fmt);
	int n = vsnprintf(small, sizeof small, fmt, ap);
	va_end(ap);
	if (n < 0)
		return FT_EINTERNAL;
	if ((size_t)n < sizeof small)
		return strbuf_append(s, small, (size_t)n);
	char *big = malloc((size_t)n + 1);
	if (!big)
		return FT_ENOMEM;
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	int r = strbuf_append(s, big, (size_t)n);
	free(big);
	return r;
}

char *strbuf_detach(struct strbuf *s)
{
	char *b = s->buf;
	if (!b)
		b = ft_strdup("");
	s->buf = NULL;
	s->len = s->cap = 0;
	return b;
}

void strbuf_free(struct strbuf *s)
{
	free(s->buf);
	s->buf = NULL;
	s->len = s->cap = 0;
}

char *ft_strdup(const char *s)
{
	return ft_strndup(s, strlen(s));
}

char *ft_strndup(const char *s, size_t n)
{
	char *p = malloc(n + 1);
	if (!p)
		return NULL;
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

int file_read_all(char **out, size_t *out_len, const char *path, size_t max_bytes,
		  struct diag *d)
{
	*out = NULL;
	if (out_len)
		*out_len = 0;
	FILE *f = fopen(path, "rb");
	if (!f)
		return diag_set(d, errno == ENOENT ? FT_EINVAL : FT_EIO, path, 0, 0,
				"cannot open: %s", strerror(errno));
	struct strbuf sb = {0};
	char chunk[65536];
	size_t n;
	int rc = 0;
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
		if (sb.len + n > max_bytes) {
			rc = diag_set(d, FT_EINVAL, path, 0, 0,
				      "file is larger than the limit of %zu bytes", max_bytes);
			goto done;
		}
		if ((rc = strbuf_append(&sb, chunk, n)) != 0) {
			diag_set(d, rc, path, 0, 0, "out of memory reading %zu bytes", sb.len + n);
			goto done;
		}
	}
	if (ferror(f)) {
		rc = diag_set(d, FT_EIO, path, 0, 0, "read error: %s", strerror(errno));
		goto done;
	}
	if (out_len)
		*out_len = sb.len;
	*out = strbuf_detach(&sb);
	if (!*out)
		rc = diag_set(d, FT_ENOMEM, path, 0, 0, "out of memory");
done:
	strbuf_free(&sb);
	fclose(f);
	return rc;
}

int file_write_atomic(const char *path, const void *data, size_t n, struct diag *d)
{
	size_t plen = strlen(path) + 32;
	char *tmp = malloc(plen);
	if (!tmp)
		return diag_set(d, FT_ENOMEM, path, 0, 0, "out of memory");
	snprintf(tmp, plen, "%s.tmp.%ld", path, (long)getpid());
	int rc = 0;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = diag_set(d, FT_EIO, path, 0, 0, "cannot write: %s", strerror(errno));
		goto done;
	}
	const char *p = data;
	size_t left = n;
	while (left > 0) {
		ssize_t w = write(fd, p, left);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			rc = diag_set(d, FT_EIO, path, 0, 0, "cannot write: %s", strerror(errno));
			close(fd);
			unlink(tmp);
			goto done;
		}
		p += w;
		left -= (size_t)w;
	}
	/* The descriptor is closed whatever fsync says (and the first error is the one
	 * reported). */
	int e = fsync(fd) != 0 ? errno : 0;
	if (close(fd) != 0 && !e)
		e = errno;
	if (e) {
		rc = diag_set(d, FT_EIO, path, 0, 0, "cannot write: %s", strerror(e));
		unlink(tmp);
		goto done;
	}
	if (rename(tmp, path) != 0) {
		rc = diag_set(d, FT_EIO, path, 0, 0, "cannot rename into place: %s",
			      strerror(errno));
		unlink(tmp);
	}
done:
	free(tmp);
	return rc;
}

int dir_make_all(const char *path, struct diag *d)
{
	char *p = ft_strdup(path);
	if (!p)
		return diag_set(d, FT_ENOMEM, path, 0, 0, "out of memory");
	int rc = 0;
	for (char *s = p + 1;; s++) {
		if (*s == '/' || *s == '\0') {
			char c = *s;
			*s = '\0';
			if (mkdir(p, 0755) != 0 && errno != EEXIST) {
				rc = diag_set(d, FT_EIO, p, 0, 0, "cannot create directory: %s",
					      strerror(errno));
				break;
			}
			*s = c;
			if (c == '\0')
				break;
		}
	}
	if (rc == 0) {
		struct stat st;
		if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
			rc = diag_set(d, FT_EIO, path, 0, 0, "not a directory");
	}
	free(p);
	return rc;
}

static int remove_cb(const char *fpath, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(fpath);
}

int dir_remove_all(const char *path)
{
	if (!path_exists(path))
		return 0;
	return nftw(path, remove_cb, 16, FTW_DEPTH | FTW_PHYS) == 0 ? 0 : FT_EIO;
}

char *path_join(const char *dir, const char *rel)
{
	if (rel[0] == '/' || !dir || !dir[0] || strcmp(dir, ".") == 0)
		return ft_strdup(rel);
	struct strbuf sb = {0};
	size_t dl = strlen(dir);
	if (strbuf_append(&sb, dir, dl) || (dir[dl - 1] != '/' && strbuf_puts(&sb, "/")) ||
	    strbuf_puts(&sb, rel)) {
		strbuf_free(&sb);
		return NULL;
	}
	return strbuf_detach(&sb);
}

char *path_dirname(const char *path)
{
	const char *slash = strrchr(path, '/');
	if (!slash)
		return ft_strdup(".");
	if (slash == path)
		return ft_strdup("/");
	return ft_strndup(path, (size_t)(slash - path));
}

bool path_exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

bool parse_i64(const char *s, int64_t *out)
{
	if (!s || !*s)
		return false;
	errno = 0;
	char *end;
	long long v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return false;
	*out = v;
	return true;
}

bool parse_f64(const char *s, double *out)
{
	if (!s || !*s)
		return false;
	errno = 0;
	char *end;
	double v = strtod(s, &end);
	if (errno == ERANGE || *end != '\0' || end == s)
		return false;
	*out = v;
	return true;
}

bool parse_duration(const char *s, double *out_seconds)
{
	if (!s || !*s)
		return false;
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno != 0 || end == s || !(v >= 0) || isinf(v))
		return false;
	double mul = 1;
	if (*end == '\0' || strcmp(end, "s") == 0)
		mul = 1;
	else if (strcmp(end, "m") == 0)
		mul = 60;
	else if (strcmp(end, "h") == 0)
		mul = 3600;
	else if (strcmp(end, "d") == 0)
		mul = 86400;
	else
		return false;
	*out_seconds = v * mul;
	return true;
}

size_t edit_distance(const char *a, const char *b, size_t cap)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la > 256 || lb > 256)
		return cap + 1;
	size_t prev[257], cur[257];
	for (size_t j = 0; j <= lb; j++)
		prev[j] = j;
	for (size_t i = 1; i <= la; i++) {
		cur[0] = i;
		size_t rowmin = cur[0];
		for (size_t j = 1; j <= lb; j++) {
			size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
			size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
			size_t m = sub < del ? sub : del;
			cur[j] = m < ins ? m : ins;
			if (cur[j] < rowmin)
				rowmin = cur[j];
		}
		if (rowmin > cap)
			return cap + 1;
		memcpy(prev, cur, (lb + 1) * sizeof *prev);
	}
	return prev[lb] > cap ? cap + 1 : prev[lb];
}

const char *nearest_word(const char *word, const char *const *candidates, size_t n)
{
	size_t limit = strlen(word) / 3;
	if (limit < 2)
		limit = 2;
	const char *best = NULL;
	size_t bestd = limit + 1;
	for (size_t i = 0; i < n; i++) {
		size_t dist = edit_distance(word, candidates[i], limit);
		if (dist < bestd) {
			bestd = dist;
			best = candidates[i];
		}
	}
	return best;
}

double time_monotonic(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double time_process_cpu(void)
{
	struct timespec ts;
	if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0)
		return 0.0;
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

size_t mem_peak_rss(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	unsigned long long kb = 0;
	bool found = false;
	while (f && !found && fgets(line, sizeof line, f)) {
		if (strncmp(line, "VmHWM:", 6) != 0)
			continue;
		char *end = NULL;
		errno = 0;
		kb = strtoull(line + 6, &end, 10);
		found = errno == 0 && end != line + 6;
	}
	if (f)
		fclose(f);
	if (found)
		return (size_t)kb * 1024u;
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) != 0)
		return 0;
	return (size_t)ru.ru_maxrss * 1024u;
}

bool mem_peak_reset(void)
{
	int fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	bool ok = write(fd, "5", 1) == 1;
	close(fd);
	return ok;
}

double time_wall(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void time_iso8601(char *buf, size_t n, double wall_seconds)
{
	time_t t = (time_t)wall_seconds;
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void fmt_shortest(char *buf, size_t n, double v)
{
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(buf, n, "%.*g", prec, v);
		if (strtod(buf, NULL) == v)
			return;
	}
}
