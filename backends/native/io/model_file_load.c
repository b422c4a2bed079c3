/* model_file_load: decides between a GGUF file and a Hugging Face directory, maps the
 * GGUF file read-only, hashes it and hands the bytes to the parser. The mapping stays with
 * the model_file: its tensors are the file's blocks. model_file_load_tokenizer reads only
 * the metadata (what `ftlab tokenize` needs) and unmaps the file at once. */
#include "backends/native/io/io_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/hash.h"
#include "common/util.h"
#include "common/banned.h"

/* What load_gguf_file reads: the whole file, the metadata (tokenizer) or the header. */
enum gguf_read { READ_WHOLE, READ_METADATA, READ_HEADER };

static int load_gguf_file(struct model_file *m, const char *path, enum gguf_read what,
			  struct diag *d)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return diag_set(d, errno == ENOENT ? FT_EINVAL : FT_EIO, path, 0, 0,
				"cannot open model: %s", strerror(errno));
	struct stat st;
	if (fstat(fd, &st) != 0) {
		int e = errno;
		close(fd);
		return diag_set(d, FT_EIO, path, 0, 0, "cannot stat: %s", strerror(e));
	}
	size_t n = (size_t)st.st_size;
	if (n == 0) {
		close(fd);
		return diag_set(d, FT_EINVAL, path, 0, 0, "empty file");
	}
	void *map = mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (map == MAP_FAILED)
		return diag_set(d, FT_EIO, path, 0, 0, "cannot map %zu bytes: %s", n, strerror(errno));
	if (what != READ_WHOLE) {
		int rc = what == READ_METADATA ? gguf_load_metadata(m, map, n, path, d)
					       : gguf_probe_buffer(m, map, n, path, d);
		munmap(map, n);
		return rc;
	}
	madvise(map, n, MADV_SEQUENTIAL);
	sha256_hex(m->content_hash, map, n);
	/* the hash read every page: drop them from resident memory (read-only, so nothing is
	 * lost; the parser and the model read back what they need from the page cache) */
	madvise(map, n, MADV_DONTNEED);
	m->map = map;
	m->map_bytes = n;
	return gguf_load_buffer(m, map, n, path, d);
}

int swa_pattern_of(const bool *local, int n_layer)
{
	int n_local = 0;
	for (int l = 0; l < n_layer; l++)
		n_local += local[l];
	if (n_local == n_layer)
		return 0;
	if (n_local == 0)
		return -2;
	for (int p = 2; p <= n_layer; p++) {
		bool fits = true;
		for (int l = 0; l < n_layer && fits; l++)
			fits = local[l] == (l % p < p - 1);
		if (fits)
			return p;
	}
	return -1;
}

static int load(struct model_file **out, const char *path, bool tensors, struct diag *d)
{
	*out = NULL;
	struct stat st;
	if (stat(path, &st) != 0)
		return diag_set(d, errno == ENOENT ? FT_EINVAL : FT_EIO, path, 0, 0,
				"cannot open model: %s", strerror(errno));
	struct model_file *m = calloc(1, sizeof *m);
	if (!m)
		return diag_set(d, FT_ENOMEM, path, 0, 0, "out of memory");
	m->tok.bos_id = m->tok.eos_id = m->tok.pad_id = m->tok.unk_id = -1;
	m->path = ft_strdup(path);
	int rc;
	if (!m->path) {
		rc = diag_set(d, FT_ENOMEM, path, 0, 0, "out of memory");
	} else if (S_ISDIR(st.st_mode)) {
		rc = tensors ? hf_dir_load(m, path, d) : hf_dir_load_tokenizer(m, path, d);
	} else {
		size_t len = strlen(path);
		if (len > 12 && strcmp(path + len - 12, ".safetensors") == 0) {
			rc = diag_set(d, FT_EINVAL, path, 0, 0,
				      "a safetensors file alone has no config; pass its directory");
			diag_hint(d, "a Hugging Face model directory holds config.json, "
				     "model.safetensors and tokenizer.json");
		} else {
			rc = load_gguf_file(m, path, tensors ? READ_WHOLE : READ_METADATA, d);
		}
	}
	if (rc) {
		model_file_free(m);
		return rc;
	}
	*out = m;
	return 0;
}

int model_file_load(struct model_file **out, const char *path, struct diag *d)
{
	return load(out, path, true, d);
}

int model_file_load_tokenizer(struct model_file **out, const char *path, struct diag *d)
{
	return load(out, path, false, d);
}

int model_file_probe(struct model_hparams *out, const char *path, struct diag *d)
{
	memset(out, 0, sizeof *out);
	struct stat st;
	if (stat(path, &st) != 0)
		return diag_set(d, errno == ENOENT ? FT_EINVAL : FT_EIO, path, 0, 0,
				"cannot open model: %s", strerror(errno));
	int rc;
	if (S_ISDIR(st.st_mode)) {
		char *cfg = path_join(path, "config.json"), *text = NULL;
		size_t len = 0;
		if (!cfg)
			return diag_set(d, FT_ENOMEM, path, 0, 0, "out of memory");
		if (!path_exists(cfg))
			rc = diag_set(d, FT_EINVAL, path, 0, 0, "not a model directory: no config.json");
		else if ((rc = file_read_all(&text, &len, cfg, 1u << 20, d)) == 0)
			rc = hf_config_parse(out, text, len, cfg, d);
		free(text);
		free(cfg);
		/* Which optional tensors exist is only known from the weights: assume the
		 * names they would add (model_create checks again with the real ones). */
		out->qkv_bias = out->arch == ARCH_LLAMA;
		return rc;
	}
	size_t len = strlen(path);
	if (len > 12 && strcmp(path + len - 12, ".safetensors") == 0)
		return diag_set(d, FT_EINVAL, path, 0, 0,
				"a safetensors file alone has no config; pass its directory");
	struct model_file *m = calloc(1, sizeof *m);
	if (!m)
		return diag_set(d, FT_ENOMEM, path, 0, 0, "out of memory");
	m->tok.bos_id = m->tok.eos_id = m->tok.pad_id = m->tok.unk_id = -1;
	rc = load_gguf_file(m, path, READ_HEADER, d);
	if (!rc)
		*out = m->hp;
	model_file_free(m);
	return rc;
}
