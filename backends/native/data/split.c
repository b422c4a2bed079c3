/* split: builds the train/validation/test datasets of an experiment from files and
 * fraction splits (carved from any split that is a file), applies `limit`, and counts
 * exact duplicates across splits. An example's split is a function of its content hash
 * and the split seed only. */
#include "backends/native/data/dataset.h"

#include <stdlib.h>
#include <string.h>

#include "common/hash.h"
#include "common/util.h"
#include "common/banned.h"

bool data_split_takes(const uint8_t h[32], uint64_t seed, const char *split_name,
		      double fraction)
{
	struct sha256 s;
	uint8_t out[32], sb[8];
	for (int i = 0; i < 8; i++)
		sb[i] = (uint8_t)(seed >> (8 * i));
	sha256_init(&s);
	sha256_update(&s, "ftlab-split", 12);
	sha256_update(&s, sb, sizeof sb);
	sha256_update(&s, split_name, strlen(split_name) + 1);
	sha256_update(&s, h, 32);
	sha256_final(&s, out);
	uint64_t u = 0;
	for (int i = 0; i < 8; i++)
		u = (u << 8) | out[i];
	/* u / 2^64 < fraction, with 53-bit precision. */
	return (double)(u >> 11) * 0x1.0p-53 < fraction;
}

static int empty_like(struct dataset **out, const struct dataset *src, const char *suffix)
{
	struct dataset *ds = calloc(1, sizeof *ds);
	if (!ds)
		return FT_ENOMEM;
	struct strbuf sb = {0};
	if (strbuf_printf(&sb, "%s (%s)", src->path, suffix)) {
		free(ds);
		return FT_ENOMEM;
	}
	ds->path = strbuf_detach(&sb);
	memcpy(ds->file_hash, src->file_hash, sizeof ds->file_hash);
	ds->format = src->format;
	*out = ds;
	return 0;
}

static int push_record(struct dataset *ds, struct record *r)
{
	struct record *nr = realloc(ds->recs, (ds->n + 1) * sizeof *nr);
	if (!nr)
		return FT_ENOMEM;
	ds->recs = nr;
	ds->recs[ds->n++] = *r;
	memset(r, 0, sizeof *r);
	return 0;
}

/* Moves the records of src that `takes` selects into a new dataset *out. */
static int carve(struct dataset **out, struct dataset *src, const struct split_spec *sp,
		 const char *name, double fraction)
{
	int rc = empty_like(out, src, name);
	if (rc)
		return rc;
	size_t keep = 0, i = 0;
	for (; i < src->n && !rc; i++) {
		struct record *r = &src->recs[i];
		if (data_split_takes(r->hash, sp->seed, name, fraction))
			rc = push_record(*out, r);
		else
			src->recs[keep++] = *r;
	}
	/* On failure the records not looked at stay in src (each in one place). */
	if (rc)
		for (i--; i < src->n; i++)
			src->recs[keep++] = src->recs[i];
	src->n = keep;
	return rc;
}

static void free_recs_from(struct dataset *ds, size_t from)
{
	struct dataset tmp = {0};
	tmp.recs = ds->recs + from;
	tmp.n = ds->n - from;
	for (size_t i = 0; i < tmp.n; i++)
		record_clear(&tmp.recs[i]);
	ds->n = from;
}

static size_t apply_limit(struct dataset *ds, int64_t limit)
{
	if (!ds || limit <= 0 || (uint64_t)limit >= ds->n)
		return 0;
	size_t dropped = ds->n - (size_t)limit;
	free_recs_from(ds, (size_t)limit);
	return dropped;
}

static int cmp_hash(const void *a, const void *b)
{
	return memcmp(a, b, 32);
}

/* Examples of b whose content also occurs in a. */
static int count_dups(size_t *out, const struct dataset *a, const struct dataset *b)
{
	*out = 0;
	if (!a || !b || !a->n || !b->n)
		return 0;
	uint8_t(*h)[32] = malloc(a->n * sizeof *h);
	if (!h)
		return FT_ENOMEM;
	for (size_t i = 0; i < a->n; i++)
		memcpy(h[i], a->recs[i].hash, 32);
	qsort(h, a->n, sizeof *h, cmp_hash);
	for (size_t i = 0; i < b->n; i++)
		if (bsearch(b->recs[i].hash, h, a->n, sizeof *h, cmp_hash))
			(*out)++;
	free(h);
	return 0;
}

static int read_split(struct dataset **out, const char *path, const struct config_data *cfg,
		      struct diag *d)
{
	return dataset_read_file(out, path, cfg->format, &cfg->fields, cfg->on_bad_example, d);
}

int data_load_splits(struct data_splits *out, const struct config_data *cfg, uint64_t seed,
		     struct diag *d)
{
	(void)seed;
	memset(out, 0, sizeof *out);
	int rc = 0;
	const struct split_spec *vs = &cfg->validation, *ts = &cfg->test;
	if (cfg->train) {
		rc = read_split(&out->train, cfg->train, cfg, d);
		if (rc)
			goto fail;
	}
	if (vs->present && vs->path) {
		rc = read_split(&out->validation, vs->path, cfg, d);
		if (rc)
			goto fail;
	}
	if (ts->present && ts->path) {
		rc = read_split(&out->test, ts->path, cfg, d);
		if (rc)
			goto fail;
	}
	/* Fraction splits, carved from any split that is a file (ftlab check refuses a
	 * chain): test first, then validation from what remains of its source with the
	 * conditional fraction, so each gets its declared share of the source. The carved
	 * examples leave the source. */
	double taken[3] = {0, 0, 0}; /* of train, validation, test */
	static const char *const names[3] = {"train", "validation", "test"};
	struct dataset **sets[3] = {&out->train, &out->validation, &out->test};
	const char *paths[3] = {cfg->train, vs->path, ts->path};
	const struct {
		const struct split_spec *sp;
		struct dataset **dst;
		const char *name;
	} carves[] = {{ts, &out->test, "test"}, {vs, &out->validation, "validation"}};
	for (size_t i = 0; i < FT_ARRAY_LEN(carves); i++) {
		const struct split_spec *sp = carves[i].sp;
		if (!sp->present || sp->path)
			continue;
		int from = -1;
		for (int k = 0; k < 3; k++)
			if (sp->from && strcmp(sp->from, names[k]) == 0)
				from = k;
		struct dataset *src = from >= 0 ? *sets[from] : NULL;
		if (!src || !paths[from] || sets[from] == carves[i].dst) {
			rc = diag_set(d, FT_EINVAL, NULL, 0, 0,
				      "data.%s: a fraction split must come from a declared split "
				      "that is a file (data.%s.from is '%s')", carves[i].name,
				      carves[i].name, sp->from ? sp->from : "");
			goto fail;
		}
		if (!(sp->fraction > 0 && sp->fraction < 1) || taken[from] + sp->fraction >= 1) {
			rc = diag_set(d, FT_EINVAL, NULL, 0, 0,
				      "data.%s.fraction must be in (0, 1) and the fractions taken from "
				      "%s must sum to less than 1", carves[i].name, names[from]);
			goto fail;
		}
		size_t before = src->n;
		rc = carve(carves[i].dst, src, sp, carves[i].name, sp->fraction / (1.0 - taken[from]));
		if (rc) {
			diag_set(d, rc, NULL, 0, 0, "out of memory splitting %s", paths[from]);
			goto fail;
		}
		taken[from] += sp->fraction;
		if ((*carves[i].dst)->n == 0) {
			rc = diag_set(d, FT_EINVAL, paths[from], 0, 0,
				      "the %s split (fraction %g of %zu examples of %s) is empty",
				      carves[i].name, sp->fraction, before, names[from]);
			diag_hint(d, "raise data.%s.fraction or add examples", carves[i].name);
			goto fail;
		}
		if (src->n == 0) {
			rc = diag_set(d, FT_EINVAL, paths[from], 0, 0,
				      "no %s examples are left after data.%s took its fraction",
				      names[from], carves[i].name);
			goto fail;
		}
	}
	if (out->train && out->train->n == 0) {
		rc = diag_set(d, FT_EINVAL, cfg->train, 0, 0,
			      "no training examples are left after the fraction splits");
		goto fail;
	}
	if ((rc = count_dups(&out->dup_train_test, out->train, out->test)) ||
	    (rc = count_dups(&out->dup_train_validation, out->train, out->validation)) ||
	    (rc = count_dups(&out->dup_validation_test, out->validation, out->test))) {
		diag_set(d, rc, NULL, 0, 0, "out of memory comparing splits");
		goto fail;
	}
	out->limited_train = apply_limit(out->train, cfg->limit_train);
	out->limited_validation = apply_limit(out->validation, cfg->limit_validation);
	out->limited_test = apply_limit(out->test, cfg->limit_test);
	return 0;
fail:
	data_splits_free(out);
	return rc;
}

void data_splits_free(struct data_splits *s)
{
	if (!s)
		return;
	dataset_free(s->train);
	dataset_free(s->validation);
	dataset_free(s->test);
	memset(s, 0, sizeof *s);
}

char *data_splits_warnings(const struct data_splits *s)
{
	struct strbuf sb = {0};
	int rc = strbuf_puts(&sb, "");
	const struct dataset *sets[] = {s->train, s->validation, s->test};
	const char *names[] = {"train", "validation", "test"};
	for (size_t i = 0; i < 3 && !rc; i++)
		if (sets[i] && sets[i]->n_skipped)
			rc = strbuf_printf(&sb, "%s: skipped %zu bad example(s) of %s; first: %s\n",
					   names[i], sets[i]->n_skipped, sets[i]->path, sets[i]->first_skip);
	if (!rc && s->dup_train_test)
		rc = strbuf_printf(&sb, "%zu test example(s) also occur in train (exact duplicates)\n",
				   s->dup_train_test);
	if (!rc && s->dup_train_validation)
		rc = strbuf_printf(&sb, "%zu validation example(s) also occur in train (exact duplicates)\n",
				   s->dup_train_validation);
	if (!rc && s->dup_validation_test)
		rc = strbuf_printf(&sb, "%zu test example(s) also occur in validation (exact duplicates)\n",
				   s->dup_validation_test);
	const size_t lim[] = {s->limited_train, s->limited_validation, s->limited_test};
	for (size_t i = 0; i < 3 && !rc; i++)
		if (lim[i])
			rc = strbuf_printf(&sb, "%s: data.limit dropped %zu example(s)\n", names[i], lim[i]);
	if (rc) {
		strbuf_free(&sb);
		return NULL;
	}
	return strbuf_detach(&sb);
}
