/* ops_cuda (C side): the public functions of ops_cuda.h. With FTLAB_HAVE_CUDA they wrap
 * ops_cuda.cu (caching the device probe, turning recorded errors into diags); without it
 * they say that this build has no CUDA support, so every caller links either way. */
#include "backends/native/ops/cuda/ops_cuda.h"

#include <stdio.h>
#include <string.h>

#include "backends/native/ops/cuda/ops_cuda_internal.h"
#include "backends/native/ops/ops.h"
#include "common/banned.h"

void ops_cuda_describe(char *out, size_t out_len, const struct ops_cuda_device *dev)
{
	const double gib = 1024.0 * 1024.0 * 1024.0;
	snprintf(out, out_len,
		 "%s, compute capability %d.%d, %d SMs, %.1f GiB (%.1f free), driver %d.%d, "
		 "runtime %d.%d",
		 dev->name, dev->cc_major, dev->cc_minor, dev->sm_count,
		 (double)dev->total_mem / gib, (double)dev->free_mem / gib,
		 dev->driver_version / 1000, dev->driver_version % 1000 / 10,
		 dev->runtime_version / 1000, dev->runtime_version % 1000 / 10);
}

void ops_cuda_mem_describe(char *out, size_t out_len, const struct ops_cuda_mem *m)
{
	const double gib = 1024.0 * 1024.0 * 1024.0;
	snprintf(out, out_len,
		 "peak %.2f GiB (allocations %.2f, scratch %.2f); device in use %.2f of %.1f GiB",
		 (double)m->peak_bytes / gib, (double)m->alloc_peak / gib,
		 (double)m->scratch_bytes / gib, (double)m->device_used / gib,
		 (double)m->device_total / gib);
}

#ifdef FTLAB_HAVE_CUDA

static int probe_state; /* 0 not probed, 1 ok, -1 none */
static int probe_index; /* the selected device */
static bool table_started;
static struct ops_cuda_device probe_dev;
static char probe_why[512];

bool ops_cuda_built(void)
{
	return true;
}

int ops_cuda_probe(struct ops_cuda_device *out, char *why, size_t why_len)
{
	if (!probe_state)
		probe_state = ops_cuda_impl_probe(&probe_dev, probe_index, probe_why,
						  sizeof probe_why) == 0
				      ? 1
				      : -1;
	if (out)
		*out = probe_dev;
	if (probe_state < 0) {
		if (why && why_len)
			snprintf(why, why_len, "%s", probe_why);
		return FT_EUNSUPP;
	}
	return 0;
}

int ops_cuda_select(int index, struct ops_cuda_device *out, char *why, size_t why_len)
{
	if (index != probe_index) {
		if (table_started) {
			if (why && why_len)
				snprintf(why, why_len,
					 "CUDA device %d was asked for, but this process already "
					 "runs on device %d (one device per ftlab process; start "
					 "another for the other device)",
					 index, probe_index);
			return FT_EUNSUPP;
		}
		probe_index = index;
		probe_state = 0;
	}
	return ops_cuda_probe(out, why, why_len);
}

const struct ops *ops_cuda(void)
{
	if (ops_cuda_probe(NULL, NULL, 0) != 0)
		return NULL;
	const struct ops *t = ops_cuda_impl_table(probe_index);
	if (t)
		table_started = true;
	return t;
}

int ops_cuda_check(struct diag *d)
{
	char msg[1024];
	int k = ops_cuda_impl_error(msg, sizeof msg);
	if (!k)
		return 0;
	return diag_set(d, k == 2 ? FT_ENOMEM : FT_EIO, NULL, 0, 0, "CUDA: %s", msg);
}

void ops_cuda_set_tf32(bool on)
{
	ops_cuda_impl_set_tf32(on);
}

struct ops_cuda_mem ops_cuda_mem(void)
{
	struct ops_cuda_mem m = {0, 0, 0, 0, 0, 0};
	ops_cuda_impl_mem(&m.alloc_bytes, &m.alloc_peak, &m.scratch_bytes);
	ops_cuda_impl_mem_peak(&m.peak_bytes, &m.device_used, &m.device_total);
	return m;
}

void ops_cuda_mem_reset_peak(void)
{
	ops_cuda_impl_mem_reset_peak();
}

int ops_cuda_measure_peaks(struct ops_cuda_peaks *out, struct diag *d)
{
	memset(out, 0, sizeof *out);
	char why[512] = "";
	if (ops_cuda_probe(NULL, why, sizeof why) != 0)
		return diag_set(d, FT_EUNSUPP, NULL, 0, 0, "%s", why);
	if (!ops_cuda()) {
		int rc = ops_cuda_check(d);
		return rc ? rc : diag_set(d, FT_EIO, NULL, 0, 0, "the CUDA backend did not start");
	}
	if (ops_cuda_impl_peaks(&out->bf16_tflops, &out->tf32_tflops, &out->copy_gbs, why,
				sizeof why) != 0) {
		int rc = ops_cuda_check(d);
		return rc ? rc : diag_set(d, FT_EIO, NULL, 0, 0, "CUDA: %s", why);
	}
	return 0;
}

#else /* no CUDA in this build */

bool ops_cuda_built(void)
{
	return false;
}

int ops_cuda_probe(struct ops_cuda_device *out, char *why, size_t why_len)
{
	if (out)
		memset(out, 0, sizeof *out);
	if (why && why_len)
		snprintf(why, why_len, "no CUDA device: this build has no CUDA support (nvcc was "
				       "not found when it was built)");
	return FT_EUNSUPP;
}

int ops_cuda_select(int index, struct ops_cuda_device *out, char *why, size_t why_len)
{
	(void)index;
	return ops_cuda_probe(out, why, why_len);
}

const struct ops *ops_cuda(void)
{
	return NULL;
}

int ops_cuda_check(struct diag *d)
{
	(void)d;
	return 0;
}

void ops_cuda_set_tf32(bool on)
{
	(void)on;
}

struct ops_cuda_mem ops_cuda_mem(void)
{
	struct ops_cuda_mem m = {0, 0, 0, 0, 0, 0};
	return m;
}

void ops_cuda_mem_reset_peak(void)
{
}

int ops_cuda_measure_peaks(struct ops_cuda_peaks *out, struct diag *d)
{
	memset(out, 0, sizeof *out);
	char why[512] = "";
	if (ops_cuda_probe(NULL, why, sizeof why) == 0) /* never without CUDA */
		snprintf(why, sizeof why, "no CUDA device: this build has no CUDA support");
	return diag_set(d, FT_EUNSUPP, NULL, 0, 0, "%s", why);
}

#endif
