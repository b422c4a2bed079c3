/* gguf_write: a GGUF (version 3) writer. Metadata key/values are serialised as they are
 * added; tensors are borrowed until gguf_out_write, which lays them out at the declared
 * alignment (32) and writes the file durably (temporary file, fsync, rename).
 * ne[] is GGML order: a PyTorch (out, in) matrix is ne = {in, out} with the same bytes. */
#ifndef FTLAB_PEFT_GGUF_WRITE_H
#define FTLAB_PEFT_GGUF_WRITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backends/native/io/dequant.h" /* tensor types: GGML_F32, GGML_F16 */
#include "common/diag.h"


struct gguf_out;

int gguf_out_create(struct gguf_out **out) FT_WUR;
void gguf_out_free(struct gguf_out *g);

/* Metadata. Errors (out of memory) are sticky and reported by gguf_out_write. */
void gguf_out_u32(struct gguf_out *g, const char *key, uint32_t v);
void gguf_out_i32(struct gguf_out *g, const char *key, int32_t v);
void gguf_out_f32(struct gguf_out *g, const char *key, float v);
void gguf_out_bool(struct gguf_out *g, const char *key, bool v);
void gguf_out_str(struct gguf_out *g, const char *key, const char *v);
void gguf_out_arr_str(struct gguf_out *g, const char *key, char *const *v, size_t n);
void gguf_out_arr_i32(struct gguf_out *g, const char *key, const int32_t *v, size_t n);
void gguf_out_arr_f32(struct gguf_out *g, const char *key, const float *v, size_t n);

/* A tensor of type GGML_F32 or GGML_F16 (data is fp32 for F32, IEEE half
 * bits for F16). ndim 1..4. data is borrowed until gguf_out_write returns. */
void gguf_out_tensor(struct gguf_out *g, const char *name, int type, int ndim,
		     const int64_t *ne, const void *data);

int gguf_out_write(struct gguf_out *g, const char *path, struct diag *d) FT_WUR;

#endif
