/* checkpoint: save/load of training state (see checkpoint.h). Saving writes
 * .tmp-step-N/{state.safetensors,meta.json}, fsyncs both and the directory, renames it to
 * step-N and fsyncs the parent. Loading verifies the sha256 recorded in meta.json before
 * it trusts a byte of the tensor file. */
#include "backends/native/train/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/native/ops/ops.h"
#include "backends/native/peft/st_write.h"
#include "common/hash.h"
#include "common/util.h"
#include "common/banned.h"

#define CKPT_VERSION 1
#define CKPT_MAX_BYTES ((size_t)64 << 30)

/* Allocated hex text of n bytes (caller frees), or NULL. */
static char *hex_dup(const unsigned char *p, size_t n)
{
	char *s = malloc(2 * n + 1);
	if (s)
		hex_encode(s, p, n);
	return s;
}

/* Allocated bytes of an even-length hex string (caller frees *out). */
static bool hex_undup(unsigned char **out, size_t *out_len, const char *s)
{
	size_t n = strlen(s);
	if (n % 2)
		return false;
	unsigned char *p = malloc(n / 2 + 1);
	if (!p)
		return false;
	if (!hex_decode(p, s, n / 2)) {
		free(p);
		return false;
	}
	*out = p;
	*out_len = n / 2;
	return true;
}

void ckpt_state_clear(struct ckpt_state *st)
{
	free(st->cursor);
	memset(st, 0, sizeof(*st));
}

static int write_meta(const char *path, const struct ckpt_state *st, const char *state_sha,
		      struct diag *d)
{
	json_t *j = json_object();
	json_object_set_new(j, "version", json_integer(CKPT_VERSION));
	json_object_set_new(j, "step", json_integer(st->step));
	json_object_set_new(j, "tokens", json_integer(st->tokens));
	json_object_set_new(j, "skipped", json_integer(st->skipped));
	char mr[24];
	snprintf(mr, sizeof(mr), "%016" PRIx64, st->model_rng);
	json_object_set_new(j, "model_rng", json_string(mr));
	json_t *rngs = json_array();
	for (int i = 0; i < st->n_rng; i++) {
		json_t *r = json_array();
		for (int k = 0; k < 4; k++) {
			char b[24];
			snprintf(b, sizeof(b), "%016" PRIx64, st->rng[i].s[k]);
			json_array_append_new(r, json_string(b));
		}
		json_array_append_new(rngs, r);
	}
	json_object_set_new(j, "rng", rngs);
	char *cur = hex_dup(st->cursor ? st->cursor : (const unsigned char *)"",
			       st->cursor_len);
	json_object_set_new(j, "data_cursor", json_string(cur ? cur : ""));
	free(cur);
	/* The metric is stored bit-exactly (as hex) so resumed early stopping decides alike. */
	uint64_t bits;
	memcpy(&bits, &st->best_metric, 8);
	char b[24];
	snprintf(b, sizeof(b), "%016" PRIx64, bits);
	json_object_set_new(j, "best_metric_bits", json_string(b));
	json_object_set_new(j, "bad_evals", json_integer(st->bad_evals));
	json_object_set_new(j, "nonfinite_streak", json_integer(st->nonfinite_streak));
	json_object_set_new(j, "config_hash", json_string(st->config_hash));
	json_object_set_new(j, "data_hash", json_string(st->data_hash));
	json_object_set_new(j, "state_sha256", json_string(state_sha));
	char *text = json_dumps(j, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
	json_decref(j);
	if (!text)
		return diag_set(d, FT_ENOMEM, path, 0, 0, "out of memory");
	int rc = file_write_atomic(path, text, strlen(text), d);
	free(text);
	return rc;
}

/* Names of step-N directories in ckpt_dir, newest first. */
static int list_steps(int64_t **out, size_t *out_n, const char *ckpt_dir)
{
	*out = NULL;
	*out_n = 0;
	DIR *dir = opendir(ckpt_dir);
	if (!dir)
		return errno == ENOENT ? 0 : FT_EIO;
	int64_t *v = NULL;
	size_t n = 0, cap = 0;
	struct dirent *e;
	while ((e = readdir(dir)) != NULL) {
		int64_t s;
		if (strncmp(e->d_name, "step-", 5) != 0 || !parse_i64(e->d_name + 5, &s) || s < 0)
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 8;
			int64_t *nv = realloc(v, cap * sizeof(*v));
			if (!nv) {
				free(v);
				closedir(dir);
				return FT_ENOMEM;
			}
			v = nv;
		}
		v[n++] = s;
	}
	closedir(dir);
	for (size_t i = 1; i < n; i++) /* insertion sort, descending */
		for (size_t k = i; k > 0 && v[k] > v[k - 1]; k--) {
			int64_t t = v[k];
			v[k] = v[k - 1];
			v[k - 1] = t;
		}
	*out = v;
	*out_n = n;
	return 0;
}

static char *step_dir(const char *ckpt_dir, const char *prefix, int64_t step)
{
	char name[64];
	snprintf(name, sizeof(name), "%sstep-%09" PRId64, prefix, step);
	return path_join(ckpt_dir, name);
}

int ckpt_save(char **out_path, const char *ckpt_dir, const struct ckpt_state *st,
	      const struct ckpt_tensor *t, size_t n, struct diag *d)
{
	int rc = 0;
	if (out_path)
		*out_path = NULL;
	char *tmp = step_dir(ckpt_dir, ".tmp-", st->step);
	char *fin = step_dir(ckpt_dir, "", st->step);
	char *sp = NULL, *mp = NULL;
	struct st_tensor *stt = calloc(n ? n : 1, sizeof(*stt));
	int64_t *steps = NULL;
	size_t n_steps = 0;
	/* tensors in backend memory are copied to one host buffer for the writer */
	size_t staged = 0;
	for (size_t i = 0; i < n; i++)
		if (t[i].ops)
			staged += t[i].numel;
	float *stage = staged ? malloc(staged * sizeof(float)) : NULL;
	if (!tmp || !fin || !stt || (staged && !stage)) {
		rc = diag_set(d, FT_ENOMEM, ckpt_dir, 0, 0, "out of memory");
		goto done;
	}
	if ((rc = dir_make_all(ckpt_dir, d)) != 0)
		goto done;
	if (dir_remove_all(tmp) != 0) {
		rc = diag_set(d, FT_EIO, tmp, 0, 0, "cannot remove a stale temporary checkpoint");
		goto done;
	}
	if ((rc = dir_make_all(tmp, d)) != 0)
		goto done;
	sp = path_join(tmp, "state.safetensors");
	mp = path_join(tmp, "meta.json");
	if (!sp || !mp) {
		rc = diag_set(d, FT_ENOMEM, ckpt_dir, 0, 0, "out of memory");
		goto done;
	}
	size_t off = 0;
	for (size_t i = 0; i < n; i++) {
		stt[i].name = t[i].name;
		stt[i].dtype = "F32";
		stt[i].ndim = 1;
		stt[i].shape[0] = (int64_t)t[i].numel;
		stt[i].data = t[i].data;
		stt[i].nbytes = t[i].numel * sizeof(float);
		if (t[i].ops) {
			t[i].ops->to_host(stage + off, t[i].data, stt[i].nbytes);
			stt[i].data = stage + off;
			off += t[i].numel;
		}
	}
	if ((rc = st_write_file(sp, stt, n, NULL, d)) != 0)
		goto done;
	char sha[65];
	if ((rc = sha256_file_hex(sha, sp, d)) != 0)
		goto done;
	if ((rc = write_meta(mp, st, sha, d)) != 0)
		goto done;
	if ((rc = fsync_dir(tmp, d)) != 0)
		goto done;
	/* A checkpoint of the same step from an earlier attempt is replaced. */
	if (path_exists(fin) && dir_remove_all(fin) != 0) {
		rc = diag_set(d, FT_EIO, fin, 0, 0, "cannot replace an old checkpoint");
		goto done;
	}
	if (rename(tmp, fin) != 0) {
		rc = diag_set(d, FT_EIO, fin, 0, 0, "cannot rename checkpoint into place: %s",
			      strerror(errno));
		goto done;
	}
	if ((rc = fsync_dir(ckpt_dir, d)) != 0)
		goto done;
	if (list_steps(&steps, &n_steps, ckpt_dir) == 0)
		for (size_t i = CKPT_KEEP; i < n_steps; i++) {
			char *old = step_dir(ckpt_dir, "", steps[i]);
			if (old && dir_remove_all(old) != 0)
				diag_warn(stderr, old, 0, 0, "cannot remove an old checkpoint");
			free(old);
		}
	if (out_path) {
		*out_path = fin;
		fin = NULL;
	}
done:
	if (rc && tmp && dir_remove_all(tmp) != 0)
		diag_warn(stderr, tmp, 0, 0, "cannot remove a temporary checkpoint");
	free(steps);
	free(stt);
	free(stage);
	free(sp);
	free(mp);
	free(tmp);
	free(fin);
	return rc;
}

static uint64_t le64(const unsigned char *p)
{
	uint64_t v = 0;
	for (int k = 7; k >= 0; k--)
		v = (v << 8) | p[k];
	return v;
}

static void note(char **notes, const char *a, const char *b)
{
	if (!notes)
		return;
	struct strbuf s = {0};
	if (*notes && strbuf_puts(&s, *notes) != 0)
		return;
	if (strbuf_printf(&s, "skipped checkpoint %s: %s\n", a, b) != 0) {
		strbuf_free(&s);
		return;
	}
	free(*notes);
	*notes = strbuf_detach(&s);
}

/* Reads one checkpoint directory. Returns 0, or non-zero with *why set (static text). */
static int load_one(struct ckpt_state *st, const char *dir, struct ckpt_tensor *t, size_t n,
		    bool tensors, const char **why)
{
	int rc = -1;
	char *sp = path_join(dir, "state.safetensors"), *mp = path_join(dir, "meta.json");
	char *meta = NULL, *buf = NULL;
	size_t mlen, blen;
	json_t *j = NULL, *h = NULL;
	struct diag d;
	diag_init(&d);
	float **dst = calloc(n ? n : 1, sizeof(*dst));
	*why = "out of memory";
	if (!sp || !mp || !dst)
		goto done;
	*why = "meta.json is missing or unreadable";
	if (file_read_all(&meta, &mlen, mp, 1 << 24, &d) != 0)
		goto done;
	json_error_t err;
	*why = "meta.json is not valid JSON";
	if (!(j = json_loadb(meta, mlen, 0, &err)))
		goto done;
	*why = "meta.json has a different version or missing fields";
	if (json_integer_value(json_object_get(j, "version")) != CKPT_VERSION)
		goto done;
	const char *sha_want = json_string_value(json_object_get(j, "state_sha256"));
	const char *ch = json_string_value(json_object_get(j, "config_hash"));
	const char *dh = json_string_value(json_object_get(j, "data_hash"));
	const char *cur = json_string_value(json_object_get(j, "data_cursor"));
	const char *bm = json_string_value(json_object_get(j, "best_metric_bits"));
	const char *mr = json_string_value(json_object_get(j, "model_rng"));
	json_t *rngs = json_object_get(j, "rng");
	if (!sha_want || !ch || !dh || !cur || !bm || !mr || !json_is_array(rngs) ||
	    json_array_size(rngs) > CKPT_MAX_RNG || strlen(ch) > 64 || strlen(dh) > 64)
		goto done;
	*why = "state.safetensors is missing or unreadable";
	if (file_read_all(&buf, &blen, sp, CKPT_MAX_BYTES, &d) != 0)
		goto done;
	char sha[65];
	sha256_hex(sha, buf, blen);
	*why = "state.safetensors does not match its recorded sha256 (truncated or corrupted)";
	if (strcmp(sha, sha_want) != 0)
		goto done;
	*why = "state.safetensors is malformed";
	if (blen < 8)
		goto done;
	uint64_t hl = le64((unsigned char *)buf);
	if (hl > blen - 8 || !(h = json_loadb(buf + 8, (size_t)hl, 0, &err)))
		goto done;
	size_t data_len = blen - 8 - (size_t)hl;
	*why = "the checkpoint's tensors do not match this model's trainable parameters";
	if (tensors && json_object_size(h) != n + 1)
		goto done;
	for (size_t i = 0; tensors && i < n; i++) {
		json_t *e = json_object_get(h, t[i].name);
		json_t *offs = json_object_get(e, "data_offsets");
		if (!e || !json_is_array(offs))
			goto done;
		json_int_t lo = json_integer_value(json_array_get(offs, 0));
		json_int_t hi = json_integer_value(json_array_get(offs, 1));
		if (lo < 0 || hi < lo || (uint64_t)hi > data_len ||
		    (size_t)(hi - lo) != t[i].numel * sizeof(float) ||
		    strcmp(json_string_value(json_object_get(e, "dtype")) ?: "", "F32") != 0)
			goto done;
		dst[i] = (float *)(void *)(buf + 8 + hl + lo);
	}
	/* Everything verified: fill the state and the tensors. */
	memset(st, 0, sizeof(*st));
	*why = "meta.json has a malformed field";
	if (!hex_undup(&st->cursor, &st->cursor_len, cur))
		goto done;
	st->model_rng = strtoull(mr, NULL, 16);
	uint64_t bits = strtoull(bm, NULL, 16);
	memcpy(&st->best_metric, &bits, 8);
	st->n_rng = (int)json_array_size(rngs);
	for (int i = 0; i < st->n_rng; i++)
		for (int k = 0; k < 4; k++) {
			const char *s = json_string_value(json_array_get(json_array_get(rngs, (size_t)i),
									 (size_t)k));
			st->rng[i].s[k] = s ? strtoull(s, NULL, 16) : 0;
		}
	st->step = json_integer_value(json_object_get(j, "step"));
	st->tokens = json_integer_value(json_object_get(j, "tokens"));
	st->skipped = json_integer_value(json_object_get(j, "skipped"));
	st->bad_evals = json_integer_value(json_object_get(j, "bad_evals"));
	st->nonfinite_streak = json_integer_value(json_object_get(j, "nonfinite_streak"));
	snprintf(st->config_hash, sizeof(st->config_hash), "%s", ch);
	snprintf(st->data_hash, sizeof(st->data_hash), "%s", dh);
	for (size_t i = 0; tensors && i < n; i++) {
		if (t[i].ops)
			t[i].ops->to_device(t[i].data, dst[i], t[i].numel * sizeof(float));
		else
			memcpy(t[i].data, dst[i], t[i].numel * sizeof(float));
	}
	rc = 0;
done:
	json_decref(h);
	json_decref(j);
	free(dst);
	free(buf);
	free(meta);
	free(sp);
	free(mp);
	return rc;
}

int ckpt_load(bool *found, struct ckpt_state *st, char **notes, const char *ckpt_dir,
	      const char *expect_config_hash, const char *expect_data_hash,
	      struct ckpt_tensor *t, size_t n, struct diag *d)
{
	*found = false;
	int64_t *steps = NULL;
	size_t n_steps = 0;
	int rc = list_steps(&steps, &n_steps, ckpt_dir);
	if (rc)
		return diag_set(d, rc, ckpt_dir, 0, 0, "cannot list checkpoints");
	for (size_t i = 0; i < n_steps && !*found; i++) {
		char *dir = step_dir(ckpt_dir, "", steps[i]);
		if (!dir) {
			rc = diag_set(d, FT_ENOMEM, ckpt_dir, 0, 0, "out of memory");
			break;
		}
		/* Check the identity before touching the tensors. */
		struct ckpt_state probe = {0};
		const char *why = NULL;
		if (load_one(&probe, dir, t, n, false, &why) != 0) {
			note(notes, dir, why);
			free(dir);
			continue;
		}
		if (expect_config_hash && strcmp(probe.config_hash, expect_config_hash) != 0) {
			rc = diag_set(d, FT_EINVAL, dir, 0, 0,
				      "the checkpoint was made with a different config "
				      "(hash %.12s, now %.12s); refusing to resume",
				      probe.config_hash, expect_config_hash);
		} else if (expect_data_hash && strcmp(probe.data_hash, expect_data_hash) != 0) {
			rc = diag_set(d, FT_EINVAL, dir, 0, 0,
				      "the checkpoint was made with different data "
				      "(hash %.12s, now %.12s); refusing to resume",
				      probe.data_hash, expect_data_hash);
		}
		ckpt_state_clear(&probe);
		if (rc) {
			free(dir);
			break;
		}
		if (load_one(st, dir, t, n, true, &why) != 0) {
			note(notes, dir, why);
			free(dir);
			continue;
		}
		*found = true;
		free(dir);
	}
	free(steps);
	return rc;
}

int ckpt_read_params(const char *ckpt_dir,
		     int (*fn)(void *ud, const char *name, const float *data, size_t numel),
		     void *ud, struct diag *d)
{
	int64_t *steps = NULL;
	size_t n_steps = 0;
	if (list_steps(&steps, &n_steps, ckpt_dir) != 0)
		return diag_set(d, FT_EIO, ckpt_dir, 0, 0, "cannot list checkpoints");
	int rc = FT_EINVAL;
	for (size_t i = 0; i < n_steps && rc == FT_EINVAL; i++) {
		char *dir = step_dir(ckpt_dir, "", steps[i]);
		struct ckpt_state probe = {0};
		const char *why;
		if (!dir || load_one(&probe, dir, NULL, 0, false, &why) != 0) {
			ckpt_state_clear(&probe);
			free(dir);
			continue;
		}
		ckpt_state_clear(&probe);
		/* Verified: walk the tensors. */
		char *sp = path_join(dir, "state.safetensors");
		char *buf = NULL;
		size_t blen = 0;
		json_t *h = NULL;
		struct diag dd;
		diag_init(&dd);
		if (sp && file_read_all(&buf, &blen, sp, CKPT_MAX_BYTES, &dd) == 0 && blen >= 8) {
			uint64_t hl = le64((unsigned char *)buf);
			json_error_t err;
			if (hl <= blen - 8 && (h = json_loadb(buf + 8, (size_t)hl, 0, &err)) != NULL) {
				const char *key;
				json_t *e;
				size_t data_len = blen - 8 - (size_t)hl;
				rc = 0;
				json_object_foreach(h, key, e) {
					if (strncmp(key, "param/", 6) != 0)
						continue;
					json_t *offs = json_object_get(e, "data_offsets");
					json_int_t lo = json_integer_value(json_array_get(offs, 0));
					json_int_t hi = json_integer_value(json_array_get(offs, 1));
					if (lo < 0 || hi < lo || (uint64_t)hi > data_len || (hi - lo) % 4) {
						rc = diag_set(d, FT_EINVAL, sp, 0, 0, "bad tensor %s", key);
						break;
					}
					rc = fn(ud, key + 6, (const float *)(const void *)(buf + 8 + hl + lo),
						(size_t)(hi - lo) / 4);
					if (rc)
						break;
				}
			}
		}
		json_decref(h);
		free(buf);
		free(sp);
		free(dir);
	}
	free(steps);
	if (rc == FT_EINVAL && d->code == 0)
		diag_set(d, FT_EINVAL, ckpt_dir, 0, 0, "no valid checkpoint to read weights from");
	return rc;
}
