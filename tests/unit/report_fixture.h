/* report_fixture: shared test support for tests/unit/test_report*.c, test_gates*.c and
 * test_junit*.c (see report_fixture.c). Uses cmocka assertions: call from tests only. */
#ifndef FTLAB_REPORT_FIXTURE_H
#define FTLAB_REPORT_FIXTURE_H

#include <stdbool.h>

#include "reports/report.h"

/* Strings that try to run `touch x` through gnuplot, or inject HTML. */
extern const char *const FIXTURE_INJECT[6];

/* A mkdtemp directory under /tmp; caller frees the path. */
char *fixture_tmpdir(void);
/* The whole file dir/rel, NUL-terminated; caller frees. */
char *fixture_slurp(const char *dir, const char *rel);
/* A 2 x 2 x 2 sweep (method.rank, train.optimizer.lr, seed), run 5 failed, with loss curves,
 * base/tuned/delta results with CIs on test, predictions and configs. evil: injection
 * strings in every user-controlled field. Best run by test.exact_match: index 7. */
struct report *fixture_report(bool evil);

/* Records experiment `exp` in s as the runner would: a real SGD fit of y = 2x + 1 per
 * (lr in {0.01, 0.05, 0.2}) x (seed in {1, 2}), FIXTURE_STEPS steps each, train and
 * validation loss history, test loss and exact_match (one-decimal answers) for the base
 * (w = b = 0) and tuned models with paired bootstrap intervals, 5 predictions per run.
 * Run ids are <id_prefix>0000000000<k>; with_failure: run k = 5 fails at step 30. The
 * spec's objective is test.loss (minimize). */
#define FIXTURE_STEPS 60
struct store;
void fixture_store_experiment(struct store *s, const char *exp, const char *description,
			      const char *commit, char id_prefix, bool with_failure);
/* The same with the 6 run ids given (in the order lr-major, seed-minor), e.g. the ids of
 * an experiment file's sweep plan so `ftlab ci --no-run` finds them. */
void fixture_store_experiment_ids(struct store *s, const char *exp, const char *description,
				  const char *commit, char id_prefix, const char *const *ids,
				  bool with_failure);

#endif
