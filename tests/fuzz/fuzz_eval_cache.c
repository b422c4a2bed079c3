/* libFuzzer harness for the base-evaluation cache reader: arbitrary bytes read as a cache
 * file for a fixed two-example set with two choices each (key "k"); a result it accepts
 * must fit the set: n examples, choice picks inside each example's choices. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backends/native/eval/eval_cache.h"
#include "common/banned.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int32_t ids[3] = {1, 2, 3};
	static uint8_t loss[3] = {0, 1, 1};
	static size_t chars[2] = {3, 4};
	struct tok_example ex[2] = {{ids, loss, 3, 1, false, 0, "p", "r"},
				    {ids, loss, 2, 1, false, 1, "q", NULL}};
	struct tok_example seq[2] = {{ids, loss, 3, 1, false, 0, NULL, NULL},
				     {ids, loss, 2, 1, false, 0, NULL, NULL}};
	struct tok_choices ch[2] = {{seq, 2, 0, chars}, {seq, 2, 1, chars}};
	struct tok_set set;
	memset(&set, 0, sizeof set);
	set.ex = ex;
	set.n = 2;
	set.choices = ch;
	struct eval_result r;
	bool found = false;
	char origin[16];
	if (eval_cache_parse(&r, &found, origin, sizeof origin, (const char *)data, size, "k",
			     &set) != 0 || !found)
		return 0;
	if (r.n != set.n)
		abort();
	for (size_t i = 0; r.choice_pick && i < r.n; i++)
		if (r.choice_pick[i] >= ch[i].n)
			abort();
	for (size_t i = 0; r.outputs && i < r.n; i++)
		if (r.outputs[i] && strlen(r.outputs[i]) > size)
			abort();
	eval_result_free(&r);
	return 0;
}
