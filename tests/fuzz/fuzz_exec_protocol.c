/* libFuzzer harness: arbitrary bytes as an exec trainer's stdout (JSON Lines protocol:
 * history, results, predictions, free text), parsed and scored into a sink that only
 * counts. Must never crash, leak or read out of bounds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "backends/exec/exec.h"
#include "common/banned.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int n_calls;

static int f_metric(void *ud, const char *split, const char *name, int64_t step, double v)
{
	(void)ud, (void)split, (void)name, (void)step, (void)v;
	n_calls++;
	return 0;
}

static int f_result(void *ud, const char *model, const char *split, const char *metric,
		    double v, double lo, double hi)
{
	(void)ud, (void)model, (void)split, (void)metric, (void)v, (void)lo, (void)hi;
	n_calls++;
	return 0;
}

static int f_pred(void *ud, const char *model, const char *split, int64_t ex, const char *p,
		  const char *r, const char *o, double s)
{
	(void)ud, (void)model, (void)split, (void)ex, (void)p, (void)r, (void)o, (void)s;
	n_calls++;
	return 0;
}

static int f_event(void *ud, const char *level, const char *kind, const char *msg)
{
	(void)ud, (void)level, (void)kind, (void)msg;
	return 0;
}

static int f_artifact(void *ud, const char *kind, const char *path)
{
	(void)ud, (void)kind, (void)path;
	return 0;
}

static void f_progress(void *ud, int64_t step, int64_t total, double loss)
{
	(void)ud, (void)step, (void)total, (void)loss;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char *metrics[] = {"exact_match", "f1", "bleu", "rouge_l", "chrf", "loss"};
	struct config cfg;
	memset(&cfg, 0, sizeof cfg);
	cfg.eval.metrics.items = metrics;
	cfg.eval.metrics.n = sizeof metrics / sizeof metrics[0];
	struct run_sink sink = {NULL, f_metric, f_result, f_pred, f_event, f_artifact, f_progress};
	volatile sig_atomic_t stop = 0;
	struct run_ctx ctx = {.cfg = &cfg, .experiment = "fuzz", .run_id = "000000000000",
			      .run_dir = "/nonexistent", .threads = 1, .stop = &stop, .sink = &sink};
	if (exec_parse_output(&ctx, (const char *)data, size, NULL) != 0)
		abort(); /* the sink never fails */
	return 0;
}
