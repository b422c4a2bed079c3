/* gguf_keys: how long model_file_load takes to refuse (or load) a hostile GGUF file that
 * holds N unique metadata keys, or N tensor infos, with no model in it: duplicate
 * detection and every lookup must stay near O(N log N). Prints N, file size, wall and
 * process CPU seconds, and the seconds per million entries. Built by `make bench`
 * ($(BUILD)/bench/gguf_keys) and run by scripts/bench.sh; not a test (no time limit).
 * usage: gguf_keys [N...]   (default 100000 400000 1000000) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/native/io/model_file.h"
#include "common/util.h"
#include "common/banned.h"

static void put(FILE *f, const void *p, size_t n)
{
	if (fwrite(p, 1, n, f) != n) {
		perror("gguf_keys: write");
		exit(1);
	}
}

static void put_u32(FILE *f, uint32_t v) { put(f, &v, 4); }
static void put_u64(FILE *f, uint64_t v) { put(f, &v, 8); }

static void put_str(FILE *f, const char *s)
{
	put_u64(f, strlen(s));
	put(f, s, strlen(s));
}

/* A GGUF v3 file with n unique u8 keys (tensors = false) or n 1-element f32 tensor infos
 * (tensors = true, their data after the header). */
static long write_file(const char *path, long n, int tensors)
{
	FILE *f = fopen(path, "wb");
	if (!f) {
		perror(path);
		exit(1);
	}
	put_u32(f, 0x46554747u); /* "GGUF" */
	put_u32(f, 3);
	put_u64(f, tensors ? (uint64_t)n : 0);
	put_u64(f, tensors ? 1 : (uint64_t)n);
	char name[32];
	if (tensors) {
		put_str(f, "general.alignment");
		put_u32(f, 4); /* u32 */
		put_u32(f, 32);
		for (long i = 0; i < n; i++) {
			snprintf(name, sizeof name, "t.%09ld", (i * 7919) % n); /* unsorted order */
			put_str(f, name);
			put_u32(f, 1);  /* dims */
			put_u64(f, 8);  /* ne0: 8 floats, one 32-byte aligned slot each */
			put_u32(f, 0);  /* F32 */
			put_u64(f, (uint64_t)i * 32);
		}
		long pos = ftell(f);
		while (pos % 32) {
			fputc(0, f);
			pos++;
		}
		static const char zeros[32];
		for (long i = 0; i < n; i++)
			put(f, zeros, sizeof zeros);
	} else {
		for (long i = 0; i < n; i++) {
			snprintf(name, sizeof name, "k.%09ld", (i * 7919) % n);
			put_str(f, name);
			put_u32(f, 0); /* u8 */
			fputc(1, f);
		}
		/* An (empty) aligned data section, so the loader gets to its lookups. */
		long pos = ftell(f);
		while (pos % 32) {
			fputc(0, f);
			pos++;
		}
	}
	long size = ftell(f);
	fclose(f);
	return size;
}

int main(int argc, char **argv)
{
	long sizes[16] = {100000, 400000, 1000000};
	int ns = 3;
	if (argc > 1) {
		ns = 0;
		for (int i = 1; i < argc && ns < 16; i++) {
			int64_t v;
			if (!parse_i64(argv[i], &v) || v < 1) {
				fprintf(stderr, "usage: gguf_keys [N...]\n");
				return 2;
			}
			sizes[ns++] = (long)v;
		}
	}
	char path[64];
	snprintf(path, sizeof path, "/tmp/ftlab-gguf-keys-%ld.gguf", (long)getpid());
	printf("%-8s %10s %9s %9s %9s %12s  %s\n", "entries", "N", "MB", "wall_s", "cpu_s",
	       "cpu_s/1e6", "outcome");
	for (int t = 0; t < 2; t++)
		for (int i = 0; i < ns; i++) {
			long bytes = write_file(path, sizes[i], t);
			struct model_file *m = NULL;
			struct diag d;
			diag_init(&d);
			double w0 = time_monotonic(), c0 = time_process_cpu();
			int rc = model_file_load(&m, path, &d);
			double wall = time_monotonic() - w0, cpu = time_process_cpu() - c0;
			printf("%-8s %10ld %9.2f %9.3f %9.3f %12.3f  %s\n", t ? "tensors" : "keys",
			       sizes[i], (double)bytes / 1e6, wall, cpu, cpu / (double)sizes[i] * 1e6,
			       rc ? d.text : "loaded");
			fflush(stdout);
			model_file_free(m);
		}
	unlink(path);
	return 0;
}
