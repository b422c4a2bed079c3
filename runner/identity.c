/* identity: run identity hashes. Content hashes of model and data files are cached per
 * process by path (a sweep of 100 points hashes a 100 MB model once). */
#include "runner/identity.h"

#include <dirent.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/sha256.h"
#include "common/util.h"

struct hash_entry {
	char *path;
	char hex[65];
};

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct hash_entry *cache;
static size_t cache_n, cache_cap;

static bool cache_get(const char *path, char out[65])
{
	bool hit = false;
	pthread_mutex_lock(&cache_lock);
	for (size_t i = 0; i < cache_n; i++)
		if (strcmp(cache[i].path, path) == 0) {
			memcpy(out, cache[i].hex, 65);
			hit = true;
			break;
		}
	pthread_mutex_unlock(&cache_lock);
	return hit;
}

static void cache_put(const char *path, const char hex[65])
{
	pthread_mutex_lock(&cache_lock);
	if (cache_n == cache_cap) {
		size_t cap = cache_cap ? cache_cap * 2 : 16;
		struct hash_entry *p = realloc(cache, cap * sizeof *p);
		if (!p)
			goto done;
		cache = p;
		cache_cap = cap;
	}
	char *copy = ft_strdup(path);
	if (copy) {
		cache[cache_n].path = copy;
		memcpy(cache[cache_n].hex, hex, 65);
		cache_n++;
	}
done:
	pthread_mutex_unlock(&cache_lock);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Collects regular files under dir (relative names, recursive, hidden entries skipped). */
static int list_files(const char *root, const char *rel, char ***names, size_t *n, size_t *cap,
		      int depth, struct diag *d)
{
	char *dirpath = rel[0] ? path_join(root, rel) : ft_strdup(root);
	if (!dirpath)
		return FT_ENOMEM;
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
			rc = FT_ENOMEM;
		} else if (stat(full, &st) == 0 && S_ISDIR(st.st_mode) && depth < 8) {
			rc = list_files(root, r, names, n, cap, depth + 1, d);
		} else if (stat(full, &st) == 0 && S_ISREG(st.st_mode)) {
			if (*n == *cap) {
				size_t nc = *cap ? *cap * 2 : 16;
				char **p = realloc(*names, nc * sizeof *p);
				if (!p) {
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

int content_hash(char out_hex[65], const char *path, struct diag *d)
{
	if (cache_get(path, out_hex))
		return 0;
	struct stat st;
	if (stat(path, &st) != 0)
		return diag_set(d, FT_EINVAL, path, 0, 0, "cannot read: no such file or directory");
	int rc = 0;
	if (!S_ISDIR(st.st_mode)) {
		if ((rc = sha256_file_hex(out_hex, path, d)) != 0)
			return rc;
	} else {
		/* A directory: sha256 over "name\0hash\n" for every file, names sorted. */
		char **names = NULL;
		size_t n = 0, cap = 0;
		rc = list_files(path, "", &names, &n, &cap, 0, d);
		if (!rc && n)
			qsort(names, n, sizeof *names, cmp_str);
		struct sha256 s;
		sha256_init(&s);
		for (size_t i = 0; i < n && !rc; i++) {
			char hex[65];
			char *full = path_join(path, names[i]);
			if (!full) {
				rc = FT_ENOMEM;
				break;
			}
			rc = sha256_file_hex(hex, full, d);
			free(full);
			sha256_update(&s, names[i], strlen(names[i]) + 1);
			sha256_update(&s, hex, 64);
			sha256_update(&s, "\n", 1);
		}
		for (size_t i = 0; i < n; i++)
			free(names[i]);
		free(names);
		if (rc)
			return rc == FT_ENOMEM ? diag_set(d, rc, path, 0, 0, "out of memory") : rc;
		uint8_t dig[32];
		sha256_final(&s, dig);
		for (int i = 0; i < 32; i++)
			snprintf(out_hex + 2 * i, 3, "%02x", dig[i]);
	}
	cache_put(path, out_hex);
	return 0;
}

static int add_file(struct sha256 *s, const char *label, const char *path, struct diag *d)
{
	if (!path)
		return 0;
	char hex[65];
	int rc = content_hash(hex, path, d);
	if (rc)
		return rc;
	sha256_update(s, label, strlen(label));
	sha256_update(s, "=", 1);
	sha256_update(s, hex, 64);
	sha256_update(s, "\n", 1);
	return 0;
}

int run_identity(char out_hex[65], const struct config *cfg, struct diag *d)
{
	struct sha256 s;
	sha256_init(&s);
	const char *cj = cfg->canonical_json ? cfg->canonical_json : "";
	sha256_update(&s, "ftlab-run-identity-v1\n", 22);
	sha256_update(&s, cj, strlen(cj));
	sha256_update(&s, "\n", 1);
	int rc;
	if ((rc = add_file(&s, "model.base", cfg->model.base, d)) != 0 ||
	    (rc = add_file(&s, "data.train", cfg->data.train, d)) != 0 ||
	    (rc = add_file(&s, "data.validation", cfg->data.validation.path, d)) != 0 ||
	    (rc = add_file(&s, "data.test", cfg->data.test.path, d)) != 0)
		return rc;
	uint8_t dig[32];
	sha256_final(&s, dig);
	for (int i = 0; i < 32; i++)
		snprintf(out_hex + 2 * i, 3, "%02x", dig[i]);
	return 0;
}

void run_id_from_identity(char out[13], const char *identity_hex)
{
	memcpy(out, identity_hex, 12);
	out[12] = '\0';
}
