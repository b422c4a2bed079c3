/* journal: per-attempt JSON Lines records written by cluster tasks into their run
 * directory, and their reader. One write(2) per line (a killed task leaves whole lines and
 * at most one partial last line, which the reader leaves for later); fsync at most once a
 * second for metric and progress lines, at once for the rest. The merge into ftlab.db is
 * store_merge.c's. */
#include "store/journal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "common/hash.h"
#include "common/util.h"
#include "common/banned.h"

struct journal {
	pthread_mutex_t mu;
	int fd;
	int seq;
	char *dir;        /* run_dir/journal */
	double last_sync; /* monotonic seconds */
	bool dirty;       /* written since the last fsync */
	struct diag err;
};

void journal_file_name(char *buf, size_t n, int seq)
{
	snprintf(buf, n, "%04d.jsonl", seq);
}

/* "0012.jsonl" -> 12; -1 for any other name. */
static int seq_of(const char *name)
{
	if (strlen(name) != 10 || strcmp(name + 4, ".jsonl") != 0)
		return -1;
	int v = 0;
	for (int i = 0; i < 4; i++) {
		if (name[i] < '0' || name[i] > '9')
			return -1;
		v = v * 10 + (name[i] - '0');
	}
	return v >= 1 && v <= JOURNAL_MAX_SEQ ? v : -1;
}

static int cmp_int(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;
	return (x > y) - (x < y);
}

int journal_list(int **out, size_t *out_n, const char *run_dir, struct diag *d)
{
	*out = NULL;
	*out_n = 0;
	char *dir = path_join(run_dir, JOURNAL_DIR);
	if (!dir)
		return diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
	DIR *dh = opendir(dir);
	if (!dh) {
		int e = errno;
		free(dir);
		if (e == ENOENT)
			return 0;
		return diag_set(d, FT_EIO, "", 0, 0, "cannot list %s/%s: %s", run_dir, JOURNAL_DIR,
				strerror(e));
	}
	int *v = NULL;
	size_t n = 0, cap = 0;
	int r = 0;
	struct dirent *de;
	while ((de = readdir(dh)) != NULL) {
		int s = seq_of(de->d_name);
		if (s < 0)
			continue;
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 8;
			int *nv = realloc(v, nc * sizeof *nv);
			if (!nv) {
				r = diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
				break;
			}
			v = nv;
			cap = nc;
		}
		v[n++] = s;
	}
	closedir(dh);
	free(dir);
	if (r) {
		free(v);
		return r;
	}
	if (n)
		qsort(v, n, sizeof *v, cmp_int);
	*out = v;
	*out_n = n;
	return 0;
}

/* ---- writing ---- */

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int sync_locked(struct journal *j)
{
	if (j->err.code)
		return j->err.code;
	if (j->dirty && fsync(j->fd) != 0)
		return diag_set(&j->err, FT_EIO, "", 0, 0, "fsync of the run journal in %s: %s",
				j->dir, strerror(errno));
	j->dirty = false;
	j->last_sync = time_monotonic();
	return 0;
}

/* Adds kind and time, writes one line, syncs now (urgent) or when a second has passed.
 * Takes ownership of o. */
static int put(struct journal *j, const char *kind, json_t *o, bool urgent)
{
	if (!o)
		return diag_set(&j->err, FT_ENOMEM, "", 0, 0, "out of memory writing the run journal");
	json_t *k = json_string(kind), *t = json_real(time_wall());
	int r = 0;
	if (!k || !t || json_object_set_new(o, "k", k) || json_object_set_new(o, "t", t)) {
		json_decref(o);
		return diag_set(&j->err, FT_ENOMEM, "", 0, 0, "out of memory writing the run journal");
	}
	char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(17) | JSON_ENSURE_ASCII);
	json_decref(o);
	if (!s)
		return diag_set(&j->err, FT_ENOMEM, "", 0, 0, "out of memory writing the run journal");
	size_t n = strlen(s);
	s[n] = '\n'; /* replaces the NUL: one write for the line and its end */
	pthread_mutex_lock(&j->mu);
	if (j->err.code) {
		r = j->err.code;
	} else if (write_all(j->fd, s, n + 1) != 0) {
		r = diag_set(&j->err, FT_EIO, "", 0, 0, "writing the run journal in %s: %s", j->dir,
			     strerror(errno));
	} else {
		j->dirty = true;
		if (urgent || time_monotonic() - j->last_sync >= 1.0)
			r = sync_locked(j);
	}
	pthread_mutex_unlock(&j->mu);
	free(s);
	return r;
}

static json_t *num(double x)
{
	return isfinite(x) ? json_real(x) : json_null();
}

static json_t *str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

/* json_pack with "s?" for optional strings gives null for NULL. */
int journal_open_next(struct journal **out, int *out_seq, const char *run_dir,
		      const struct journal_start *st, struct diag *d)
{
	*out = NULL;
	*out_seq = 0;
	struct journal *j = calloc(1, sizeof *j);
	if (!j || !(j->dir = path_join(run_dir, JOURNAL_DIR))) {
		free(j);
		return diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
	}
	j->fd = -1;
	diag_init(&j->err);
	pthread_mutex_init(&j->mu, NULL);
	int r = dir_make_all(j->dir, d);
	int *seqs = NULL;
	size_t n = 0;
	if (!r)
		r = journal_list(&seqs, &n, run_dir, d);
	if (r)
		goto fail;
	int seq = n ? seqs[n - 1] + 1 : 1;
	free(seqs);
	for (; seq <= JOURNAL_MAX_SEQ; seq++) {
		char name[32];
		journal_file_name(name, sizeof name, seq);
		char *p = path_join(j->dir, name);
		if (!p) {
			r = diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory");
			goto fail;
		}
		j->fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0644);
		int e = errno;
		free(p);
		if (j->fd >= 0)
			break;
		if (e != EEXIST) {
			r = diag_set(d, FT_EIO, "", 0, 0, "cannot create %s/%s: %s", j->dir, name,
				     strerror(e));
			goto fail;
		}
	}
	if (j->fd < 0) {
		r = diag_set(d, FT_EIO, "", 0, 0, "%s holds %d attempts already", j->dir,
			     JOURNAL_MAX_SEQ);
		goto fail;
	}
	j->seq = seq;
	/* The new file's name must survive a crash of the node too. */
	int dfd = open(j->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		(void)fsync(dfd);
		close(dfd);
	}
	json_t *o = json_pack("{s:o, s:o, s:I, s:I, s:o, s:o, s:I, s:o, s:o, s:I, s:b, s:o, s:I}",
			      "job", str_or_null(st->job_id), "array_job",
			      str_or_null(st->array_job), "array_task", (json_int_t)st->array_task,
			      "restart", (json_int_t)st->restart, "node", str_or_null(st->node),
			      "host", str_or_null(st->host), "pid", (json_int_t)st->pid, "backend",
			      str_or_null(st->backend), "device", str_or_null(st->device),
			      "threads", (json_int_t)st->threads, "resume", st->resume,
			      "submission", str_or_null(st->submission), "seq", (json_int_t)seq);
	r = put(j, "start", o, true);
	if (r) {
		r = diag_set(d, r, "", 0, 0, "%s", j->err.text);
		goto fail;
	}
	*out = j;
	*out_seq = seq;
	return 0;
fail:
	journal_close(j);
	return r;
}

int journal_metric(struct journal *j, const char *split, const char *name, int64_t step,
		   double value)
{
	return put(j, "metric",
		   json_pack("{s:s, s:s, s:I, s:o}", "split", split, "name", name, "step",
			     (json_int_t)step, "value", num(value)),
		   false);
}

int journal_result(struct journal *j, const char *model, const char *split,
		   const char *metric, double value, double ci_low, double ci_high)
{
	return put(j, "result",
		   json_pack("{s:s, s:s, s:s, s:o, s:o, s:o}", "model", model, "split", split,
			     "metric", metric, "value", num(value), "ci_low", num(ci_low),
			     "ci_high", num(ci_high)),
		   true);
}

int journal_prediction(struct journal *j, const char *model, const char *split,
		       int64_t example, const char *prompt, const char *reference,
		       const char *output, double score)
{
	return put(j, "prediction",
		   json_pack("{s:s, s:s, s:I, s:o, s:o, s:o, s:o}", "model", model, "split", split,
			     "example", (json_int_t)example, "prompt", str_or_null(prompt),
			     "reference", str_or_null(reference), "output", str_or_null(output),
			     "score", num(score)),
		   false);
}

int journal_event(struct journal *j, const char *level, const char *kind, const char *message)
{
	return put(j, "event",
		   json_pack("{s:s, s:s, s:s}", "level", level, "kind", kind, "message",
			     message ? message : ""),
		   true);
}

int journal_artifact(struct journal *j, const char *kind, const char *path, const char *run_dir)
{
	char *full = path_join(run_dir, path);
	if (!full)
		return diag_set(&j->err, FT_ENOMEM, "", 0, 0, "out of memory");
	struct stat sb;
	char hex[65];
	struct diag hd;
	diag_init(&hd);
	int r = 0;
	if (stat(full, &sb) != 0)
		r = diag_set(&j->err, FT_EIO, "", 0, 0, "cannot read artifact %s: %s", full,
			     strerror(errno));
	else if (sha256_file_hex(hex, full, &hd) != 0)
		r = diag_set(&j->err, hd.code, "", 0, 0, "%s", hd.text);
	free(full);
	if (r)
		return r;
	return put(j, "artifact",
		   json_pack("{s:s, s:s, s:I, s:s}", "kind", kind, "path", path, "bytes",
			     (json_int_t)sb.st_size, "sha256", hex),
		   true);
}

int journal_progress(struct journal *j, int64_t step, int64_t total)
{
	return put(j, "progress",
		   json_pack("{s:I, s:I}", "step", (json_int_t)step, "total", (json_int_t)total),
		   false);
}

int journal_end(struct journal *j, const char *status, const char *error)
{
	return put(j, "end", json_pack("{s:s, s:o}", "status", status, "error", str_or_null(error)),
		   true);
}

int journal_sync(struct journal *j)
{
	pthread_mutex_lock(&j->mu);
	int r = sync_locked(j);
	pthread_mutex_unlock(&j->mu);
	return r;
}

bool journal_superseded(const struct journal *j)
{
	char name[32];
	journal_file_name(name, sizeof name, j->seq + 1);
	char *p = path_join(j->dir, name);
	bool later = p && path_exists(p);
	free(p);
	return later;
}

const struct diag *journal_error(const struct journal *j)
{
	return j->err.code ? &j->err : NULL;
}

void journal_close(struct journal *j)
{
	if (!j)
		return;
	if (j->fd >= 0) {
		pthread_mutex_lock(&j->mu);
		(void)sync_locked(j);
		pthread_mutex_unlock(&j->mu);
		close(j->fd);
	}
	pthread_mutex_destroy(&j->mu);
	free(j->dir);
	free(j);
}

/* ---- reading ---- */

struct owner {
	json_t **docs;
	size_t n, cap;
};

void journal_batch_free(struct journal_batch *b)
{
	if (!b)
		return;
	struct owner *o = b->owner;
	if (o) {
		for (size_t i = 0; i < o->n; i++)
			json_decref(o->docs[i]);
		free(o->docs);
		free(o);
	}
	free(b->recs);
	free(b);
}

/* Field readers: false when the field has the wrong type (absent optional fields are
 * fine and leave the default). */
static bool get_str(const json_t *o, const char *key, bool required, const char **out)
{
	const json_t *v = json_object_get(o, key);
	if (!v || json_is_null(v))
		return !required;
	if (!json_is_string(v))
		return false;
	*out = json_string_value(v);
	return true;
}

static bool get_int(const json_t *o, const char *key, bool required, int64_t *out)
{
	const json_t *v = json_object_get(o, key);
	if (!v || json_is_null(v))
		return !required;
	if (!json_is_integer(v))
		return false;
	*out = (int64_t)json_integer_value(v);
	return true;
}

/* A number or null (NAN); absent is NAN unless required. */
static bool get_num(const json_t *o, const char *key, bool required, double *out)
{
	const json_t *v = json_object_get(o, key);
	*out = NAN;
	if (!v)
		return !required;
	if (json_is_null(v))
		return true;
	if (!json_is_number(v))
		return false;
	*out = json_number_value(v);
	return true;
}

static bool one_of(const char *s, const char *const *set)
{
	for (; *set; set++)
		if (strcmp(s, *set) == 0)
			return true;
	return false;
}

/* Fills r from the object; false when it is not a valid record. */
static bool rec_from(struct journal_rec *r, const json_t *o)
{
	static const char *const models[] = {"base", "tuned", "delta", NULL};
	static const char *const levels[] = {"info", "warning", "error", NULL};
	static const char *const statuses[] = {"finished", "failed", "killed", "stopped", NULL};
	const char *k = NULL;
	memset(r, 0, sizeof *r);
	r->value = r->ci_low = r->ci_high = r->score = NAN;
	r->array_task = -1;
	if (!json_is_object(o) || !get_str(o, "k", true, &k) || !get_num(o, "t", true, &r->time) ||
	    !isfinite(r->time))
		return false;
	if (strcmp(k, "start") == 0) {
		const json_t *res = json_object_get(o, "resume");
		r->kind = JREC_START;
		return get_str(o, "job", false, &r->job_id) &&
		       get_str(o, "array_job", false, &r->array_job) &&
		       get_int(o, "array_task", false, &r->array_task) &&
		       get_int(o, "restart", false, &r->restart) &&
		       get_str(o, "node", false, &r->node) && get_str(o, "host", false, &r->host) &&
		       get_int(o, "pid", false, &r->pid) &&
		       get_str(o, "backend", false, &r->backend) &&
		       get_str(o, "device", false, &r->device) &&
		       get_int(o, "threads", false, &r->threads) &&
		       get_str(o, "submission", false, &r->submission) &&
		       (!res || json_is_boolean(res)) && ((r->resume = json_is_true(res)), true);
	}
	if (strcmp(k, "metric") == 0) {
		r->kind = JREC_METRIC;
		return get_str(o, "split", true, &r->split) && get_str(o, "name", true, &r->name) &&
		       get_int(o, "step", true, &r->step) && get_num(o, "value", true, &r->value);
	}
	if (strcmp(k, "result") == 0) {
		r->kind = JREC_RESULT;
		return get_str(o, "model", true, &r->model) && one_of(r->model, models) &&
		       get_str(o, "split", true, &r->split) &&
		       get_str(o, "metric", true, &r->name) &&
		       get_num(o, "value", true, &r->value) &&
		       get_num(o, "ci_low", false, &r->ci_low) &&
		       get_num(o, "ci_high", false, &r->ci_high);
	}
	if (strcmp(k, "prediction") == 0) {
		r->kind = JREC_PREDICTION;
		return get_str(o, "model", true, &r->model) && one_of(r->model, models) &&
		       get_str(o, "split", true, &r->split) &&
		       get_int(o, "example", true, &r->example) &&
		       get_str(o, "prompt", false, &r->prompt) &&
		       get_str(o, "reference", false, &r->reference) &&
		       get_str(o, "output", false, &r->output) &&
		       get_num(o, "score", false, &r->score);
	}
	if (strcmp(k, "event") == 0) {
		r->kind = JREC_EVENT;
		return get_str(o, "level", true, &r->level) && one_of(r->level, levels) &&
		       get_str(o, "kind", true, &r->tag) && get_str(o, "message", true, &r->message);
	}
	if (strcmp(k, "artifact") == 0) {
		r->kind = JREC_ARTIFACT;
		return get_str(o, "kind", true, &r->tag) && get_str(o, "path", true, &r->path) &&
		       r->path[0] && get_int(o, "bytes", true, &r->bytes) && r->bytes >= 0 &&
		       get_str(o, "sha256", true, &r->sha256) && strlen(r->sha256) == 64;
	}
	if (strcmp(k, "progress") == 0) {
		r->kind = JREC_PROGRESS;
		return get_int(o, "step", true, &r->step) && get_int(o, "total", true, &r->total);
	}
	if (strcmp(k, "end") == 0) {
		r->kind = JREC_END;
		return get_str(o, "status", true, &r->status) && one_of(r->status, statuses) &&
		       get_str(o, "error", false, &r->error);
	}
	return false;
}

int journal_parse(struct journal_batch **out, const char *name, const char *data, size_t len,
		  int64_t base_offset, struct diag *d)
{
	*out = NULL;
	struct journal_batch *b = calloc(1, sizeof *b);
	struct owner *ow = calloc(1, sizeof *ow);
	if (!b || !ow) {
		free(b);
		free(ow);
		return diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory reading %s", name);
	}
	b->owner = ow;
	size_t cap = 0, pos = 0;
	int64_t line = 0;
	/* Line numbers count from the start of the file only when reading from offset 0;
	 * later reads number from their own start (messages name the offset). */
	while (pos < len) {
		const char *nl = memchr(data + pos, '\n', len - pos);
		if (!nl)
			break; /* a partial last line: the writer may still be on it */
		size_t n = (size_t)(nl - (data + pos));
		line++;
		json_t *o = NULL;
		if (n > 0 && n <= JOURNAL_MAX_LINE) {
			json_error_t je;
			o = json_loadb(data + pos, n, JSON_REJECT_DUPLICATES, &je);
		}
		pos += n + 1;
		if (n == 0) {
			json_decref(o);
			continue;
		}
		struct journal_rec r;
		if (!o || !rec_from(&r, o)) {
			json_decref(o);
			b->bad_lines++;
			continue;
		}
		r.line = line;
		if (b->n == cap) {
			size_t nc = cap ? cap * 2 : 64;
			struct journal_rec *nr = realloc(b->recs, nc * sizeof *nr);
			json_t **nd = realloc(ow->docs, nc * sizeof *nd);
			if (nr)
				b->recs = nr;
			if (nd)
				ow->docs = nd;
			if (!nr || !nd) {
				json_decref(o);
				journal_batch_free(b);
				return diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory reading %s", name);
			}
			cap = nc;
			ow->cap = nc;
		}
		b->recs[b->n++] = r;
		ow->docs[ow->n++] = o;
	}
	b->start_offset = base_offset;
	b->end_offset = base_offset + (int64_t)pos;
	*out = b;
	return 0;
}

int journal_read(struct journal_batch **out, const char *path, int64_t offset, struct diag *d)
{
	*out = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return journal_parse(out, path, "", 0, offset, d);
		return diag_set(d, FT_EIO, "", 0, 0, "cannot read %s: %s", path, strerror(errno));
	}
	struct stat sb;
	int r = 0;
	char *buf = NULL;
	if (fstat(fd, &sb) != 0) {
		r = diag_set(d, FT_EIO, "", 0, 0, "cannot read %s: %s", path, strerror(errno));
		goto done;
	}
	if (offset < 0 || offset > (int64_t)sb.st_size) {
		/* Shorter than what was merged: the file was replaced. Nothing new to read. */
		r = journal_parse(out, path, "", 0, offset, d);
		goto done;
	}
	size_t want = (size_t)((int64_t)sb.st_size - offset), got = 0;
	buf = malloc(want ? want : 1);
	if (!buf) {
		r = diag_set(d, FT_ENOMEM, "", 0, 0, "out of memory reading %s (%zu bytes)", path,
			     want);
		goto done;
	}
	while (got < want) {
		ssize_t k = pread(fd, buf + got, want - got, (off_t)(offset + (int64_t)got));
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			r = diag_set(d, FT_EIO, "", 0, 0, "cannot read %s: %s", path, strerror(errno));
			goto done;
		}
		if (k == 0)
			break;
		got += (size_t)k;
	}
	r = journal_parse(out, path, buf, got, offset, d);
done:
	free(buf);
	close(fd);
	return r;
}
