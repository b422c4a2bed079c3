/* hash: SHA-256 (a straightforward FIPS 180-4 implementation), hex encoding, and the
 * content hash of a file or a directory tree. Every hash ftlab records comes from here. */
#include "common/hash.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/util.h"
#include "common/banned.h"

static const uint32_t K[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
	0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
	0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
	0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
	0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
	0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
	0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
	0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
	0xc67178f2};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void compress(uint32_t h[8], const uint8_t b[64])
{
	uint32_t w[64];
	for (size_t i = 0; i < 16; i++)
		w[i] = (uint32_t)b[4 * i] << 24 | (uint32_t)b[4 * i + 1] << 16 |
		       (uint32_t)b[4 * i + 2] << 8 | (uint32_t)b[4 * i + 3];
	for (int i = 16; i < 64; i++) {
		uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
		uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
		w[i] = w[i - 16] + s0 + w[i - 7] + s1;
	}
	uint32_t a = h[0], bb = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
	for (int i = 0; i < 64; i++) {
		uint32_t t1 = hh + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) +
			      K[i] + w[i];
		uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & bb) ^ (a & c) ^ (bb & c));
		hh = g;
		g = f;
		f = e;
		e = d + t1;
		d = c;
		c = bb;
		bb = a;
		a = t1 + t2;
	}
	h[0] += a;
	h[1] += bb;
	h[2] += c;
	h[3] += d;
	h[4] += e;
	h[5] += f;
	h[6] += g;
	h[7] += hh;
}

void sha256_init(struct sha256 *s)
{
	static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
				       0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
	memcpy(s->h, iv, sizeof iv);
	s->total = 0;
	s->fill = 0;
}

void sha256_update(struct sha256 *s, const void *data, size_t n)
{
	const uint8_t *p = data;
	s->total += n;
	while (n > 0) {
		size_t take = 64 - s->fill;
		if (take > n)
			take = n;
		memcpy(s->block + s->fill, p, take);
		s->fill += take;
		p += take;
		n -= take;
		if (s->fill == 64) {
			compress(s->h, s->block);
			s->fill = 0;
		}
	}
}

void sha256_final(struct sha256 *s, uint8_t out[32])
{
	uint64_t bits = s->total * 8;
	uint8_t pad = 0x80;
	sha256_update(s, &pad, 1);
	uint8_t zero = 0;
	while (s->fill != 56)
		sha256_update(s, &zero, 1);
	uint8_t len[8];
	for (int i = 0; i < 8; i++)
		len[i] = (uint8_t)(bits >> (56 - 8 * i));
	sha256_update(s, len, 8);
	for (size_t i = 0; i < 8; i++) {
		out[4 * i] = (uint8_t)(s->h[i] >> 24);
		out[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
		out[4 * i + 2] = (uint8_t)(s->h[i] >> 8);
		out[4 * i + 3] = (uint8_t)s->h[i];
	}
}

void hex_encode(char *out, const void *bytes, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	const uint8_t *p = bytes;
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
	out[2 * n] = '\0';
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

bool hex_decode(void *out, const char *hex, size_t n)
{
	uint8_t *p = out;
	for (size_t i = 0; i < n; i++) {
		int hi = hex_digit(hex[2 * i]), lo = hi < 0 ? -1 : hex_digit(hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return false;
		p[i] = (uint8_t)(hi << 4 | lo);
	}
	return true;
}

void sha256_final_hex(struct sha256 *s, char hex[65])
{
	uint8_t dig[32];
	sha256_final(s, dig);
	hex_encode(hex, dig, 32);
}

void sha256_hex(char hex[65], const void *data, size_t n)
{
	struct sha256 s;
	uint8_t dig[32];
	sha256_init(&s);
	sha256_update(&s, data, n);
	sha256_final(&s, dig);
	hex_encode(hex, dig, 32);
}

static int file_hex(char hex[65], int64_t *out_bytes, const char *path, struct diag *d)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return diag_set(d, errno == ENOENT ? FT_EINVAL : FT_EIO, path, 0, 0,
				"cannot open: %s", strerror(errno));
	struct sha256 s;
	sha256_init(&s);
	uint8_t buf[1 << 16];
	size_t n;
	int64_t total = 0;
	while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
		sha256_update(&s, buf, n);
		total += (int64_t)n;
	}
	int bad = ferror(f);
	fclose(f);
	if (bad)
		return diag_set(d, FT_EIO, path, 0, 0, "read error");
	sha256_final_hex(&s, hex);
	if (out_bytes)
		*out_bytes = total;
	return 0;
}

int sha256_file_hex(char hex[65], const char *path, struct diag *d)
{
	return file_hex(hex, NULL, path, d);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Collects regular files under root/rel (relative names, recursive, hidden entries
 * skipped, at most 8 levels deep). */
static int list_files(const char *root, const char *rel, char ***names, size_t *n, size_t *cap,
		      int depth, struct diag *d)
{
	char *dirpath = rel[0] ? path_join(root, rel) : ft_strdup(root);
	if (!dirpath)
		return diag_set(d, FT_ENOMEM, root, 0, 0, "out of memory");
	DIR *dir = opendir(dirpath);
	int rc = 0;
	if (!dir) {
		rc = diag_set(d, FT_EIO, dirpath, 0, 0, "cannot read the directory");
		free(dirpath);
		return rc;
	}
	struct dirent *de;
	while (!rc && (de = readdir(dir)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		char *r = rel[0] ? path_join(rel, de->d_name) : ft_strdup(de->d_name);
		char *full = r ? path_join(root, r) : NULL;
		struct stat st;
		if (!r || !full) {
			rc = diag_set(d, FT_ENOMEM, root, 0, 0, "out of memory");
		} else if (stat(full, &st) == 0 && S_ISDIR(st.st_mode) && depth < 8) {
			rc = list_files(root, r, names, n, cap, depth + 1, d);
		} else if (stat(full, &st) == 0 && S_ISREG(st.st_mode)) {
			if (*n == *cap) {
				size_t nc = *cap ? *cap * 2 : 16;
				char **p = realloc(*names, nc * sizeof *p);
				if (!p) {
					diag_set(d, FT_ENOMEM, root, 0, 0, "out of memory");
					rc = FT_ENOMEM;
				} else {
					*names = p;
					*cap = nc;
				}
			}
			if (!rc) {
				(*names)[(*n)++] = r;
				r = NULL;
			}
		}
		free(r);
		free(full);
	}
	closedir(dir);
	free(dirpath);
	return rc;
}

int hash_path_hex(char hex[65], int64_t *out_bytes, const char *path, struct diag *d)
{
	struct stat st;
	if (stat(path, &st) != 0)
		return diag_set(d, FT_EINVAL, path, 0, 0, "cannot read: no such file or directory");
	if (!S_ISDIR(st.st_mode))
		return file_hex(hex, out_bytes, path, d);
	char **names = NULL;
	size_t n = 0, cap = 0;
	int64_t total = 0;
	int rc = list_files(path, "", &names, &n, &cap, 0, d);
	if (!rc && n)
		qsort(names, n, sizeof *names, cmp_str);
	struct sha256 s;
	sha256_init(&s);
	for (size_t i = 0; i < n && !rc; i++) {
		char sub[65];
		int64_t bytes = 0;
		char *full = path_join(path, names[i]);
		if (!full) {
			rc = diag_set(d, FT_ENOMEM, path, 0, 0, "out of memory");
			break;
		}
		rc = file_hex(sub, &bytes, full, d);
		free(full);
		sha256_update(&s, names[i], strlen(names[i]) + 1);
		sha256_update(&s, sub, 64);
		sha256_update(&s, "\n", 1);
		total += bytes;
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	if (rc)
		return rc;
	sha256_final_hex(&s, hex);
	if (out_bytes)
		*out_bytes = total;
	return 0;
}
