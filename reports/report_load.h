/* report_load: builds a struct report from the store (store/store.h, read only).
 * A reference names what to load: an experiment name, a run id (or unique prefix of at
 * least 4 characters), or EXPERIMENT@COMMIT (the experiment's runs last executed at a
 * commit whose id starts with COMMIT). */
#ifndef FTLAB_REPORT_LOAD_H
#define FTLAB_REPORT_LOAD_H

#include "common/diag.h"
#include "reports/report.h"
#include "store/store.h"

/* Loads `ref`. *out belongs to the caller (report_free). Predictions are loaded for the
 * best run only. An unknown reference is FT_EINVAL with the known experiments in the hint
 * (and the nearest one suggested); store failures keep the store's code. */
int report_load(struct report **out, struct store *s, const char *ref, struct diag *d) FT_WUR;

/* The same, keeping only the runs whose ids are in ids[0..n_ids) (the current sweep plan of
 * `ftlab ci`; runs of earlier sweep definitions stay out). ids NULL keeps every run. */
int report_load_only(struct report **out, struct store *s, const char *ref,
		     const char *const *ids, size_t n_ids, struct diag *d) FT_WUR;

/* Loads ref as the baseline of r (r->baseline, r->baseline_label = ref). */
int report_load_baseline(struct report *r, struct store *s, const char *ref,
			 struct diag *d) FT_WUR;

#endif
