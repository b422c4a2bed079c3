/* io_internal: entry points shared by the io/ loaders, the tests and the fuzz harnesses.
 * Each parses untrusted bytes already in memory and fills a zeroed model_file; on error
 * d names `path` and the offending field, and the caller frees m with model_file_free. */
#ifndef FTLAB_IO_INTERNAL_H
#define FTLAB_IO_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backends/native/io/model_file.h"

#define GGUF_MAX_ALIGNMENT (1u << 20) /* general.alignment upper bound */
#define GGUF_MAX_NAME 1024            /* keys and tensor names */
#define ST_MAX_HEADER ((size_t)100 * 1000 * 1000) /* safetensors JSON header, bytes */

/* Parses a whole GGUF file image (metadata, tokenizer source, tensors). The tensors' raw
 * point into buf, which must outlive m. */
int gguf_load_buffer(struct model_file *m, const uint8_t *buf, size_t n, const char *path,
		     struct diag *d) FT_WUR;
/* The same checks of the header, then only m->hp (and is_gguf): no tokenizer, no tensors. */
int gguf_probe_buffer(struct model_file *m, const uint8_t *buf, size_t n, const char *path,
		      struct diag *d) FT_WUR;

/* Only the metadata of a GGUF image: general.* and the tokenizer source; tensors are
 * neither read nor checked and the architecture may be one the engine lacks. */
int gguf_load_metadata(struct model_file *m, const uint8_t *buf, size_t n, const char *path,
		       struct diag *d) FT_WUR;

/* One safetensors file image: appends its tensors (F32, F16 or BF16 as stored, copied into
 * raw_owned; names as stored) to m. Shapes as stored; no renaming or transposition (that
 * is the HF directory's job). */
int safetensors_load_buffer(struct model_file *m, const uint8_t *buf, size_t n,
			    const char *path, struct diag *d) FT_WUR;

/* Hugging Face config.json text -> m->hp. */
int hf_config_parse(struct model_hparams *hp, const char *json, size_t len, const char *path,
		    struct diag *d) FT_WUR;

/* The model_hparams.swa_pattern that gives these per-layer flags (true = sliding-window
 * layer): 0 when every layer is local, -2 when none is, -1 when no period fits. */
int swa_pattern_of(const bool *local, int n_layer);

/* A Hugging Face model directory (config.json, safetensors, tokenizer files). */
int hf_dir_load(struct model_file *m, const char *dir, struct diag *d) FT_WUR;
/* Only a directory's tokenizer.json (required) and tokenizer_config.json. */
int hf_dir_load_tokenizer(struct model_file *m, const char *dir, struct diag *d) FT_WUR;

#endif
