/* identity: run identity hashes. Content hashes of model and data files are cached per
 * process by path (a sweep of 100 points hashes a 100 MB model once). */
#include "runner/identity.h"

#include <dirent.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/hash.h"
#include "common/util.h"
#include "common/banned.h"

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

int content_hash(char out_hex[65], const char *path, struct diag *d)
{
	if (cache_get(path, out_hex))
		return 0;
	int rc = hash_path_hex(out_hex, NULL, path, d);
	if (rc)
		return rc;
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
	sha256_final_hex(&s, out_hex);
	return 0;
}

void run_id_from_identity(char out[13], const char *identity_hex)
{
	memcpy(out, identity_hex, 12);
	out[12] = '\0';
}
