/* export: the merged-safetensors writer of the engine's export (export.c), with the
 * tokenizer files of a GGUF base; declared apart from engine.h for the tests. */
#ifndef FTLAB_NATIVE_EXPORT_H
#define FTLAB_NATIVE_EXPORT_H

#include "backends/native/io/model_file.h"
#include "common/diag.h"

/* merged_write_hf, then for a GGUF base tokenizer.json, tokenizer_config.json (chat
 * template, model_max_length = the trained context) and special_tokens_map.json built
 * from its tokenizer metadata (tokenizer_write_hf). The tensors need their fp32 copies
 * (model_file_dequantize first). */
int export_merged_hf(const char *dir, const struct model_file *mf, struct diag *d) FT_WUR;

#endif
