/* ops_guard: test support. An ops table around another (ops_cpu, or the emulated CUDA
 * table) that keeps its memory away from the host, the way a GPU's is: ops->alloc returns
 * whole pages that stay PROT_NONE except while one of the table's own calls runs, so any
 * host dereference of backend memory faults (a SIGSEGV handler names the allocation and
 * prints a backtrace before the process dies). Every pointer an op takes as backend memory
 * must lie inside one of the table's allocations, and to_device/to_host must copy between
 * host and backend memory in the right direction; violations are counted and the first
 * is kept as text. One guard per process; calls from one thread (ops use OpenMP inside). */
#ifndef FTLAB_OPS_GUARD_H
#define FTLAB_OPS_GUARD_H

#include <stddef.h>

struct ops;

/* The guarded table over inner (its name is inner's). Installs the SIGSEGV handler. */
const struct ops *ops_guard(const struct ops *inner);

struct ops_guard_stats {
	long calls;          /* op calls through the table (alloc/free and copies included) */
	long live_allocs;    /* allocations not yet freed */
	size_t live_bytes;
	long violations;     /* pointer-kind violations */
	char first[512];     /* the first violation, "" when none */
};
struct ops_guard_stats ops_guard_stats(void);
/* Resets the counters (not the allocations). */
void ops_guard_reset(void);

#endif
