/* scratch: shared test support for tests that build small trees of files in one temporary
 * directory (test_schema, test_sweep). Uses cmocka assertions: call from tests only. */
#ifndef FTLAB_TEST_SCRATCH_H
#define FTLAB_TEST_SCRATCH_H

/* Creates /tmp/ftlab-test-NAME-XXXXXX and makes it the scratch directory; returns its path
 * (valid until scratch_close). */
const char *scratch_open(const char *name);
/* Removes the scratch directory and everything in it: 0 or an FT_E* code. */
int scratch_close(void);
/* Writes `text` to scratch/rel, creating the directories on the way. */
void scratch_put(const char *rel, const char *text);

#endif
