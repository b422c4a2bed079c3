/* merge: folds a LoRA adapter into base weights (W += s * B A) and writes the merged
 * model as a Hugging Face safetensors directory (model.safetensors, config.json and the
 * tokenizer files when the base had them) or as a GGUF file (F32, llama family). Row
 * order of q/k follows each format's convention whatever the base was loaded from. */
#ifndef FTLAB_PEFT_MERGE_H
#define FTLAB_PEFT_MERGE_H

#include "backends/native/io/model_file.h"
#include "backends/native/peft/adapter.h"
#include "common/diag.h"

/* Adds s * B A to every targeted weight of mf in place (DoRA: then scales each row to its
 * magnitude; IA3: scales rows and bias, or columns for feed-forward modules), on its fp32
 * copies: mf has been through model_file_dequantize. The adapter's q/k row order
 * must match mf's (read it with want_interleaved = mf->hp.rope_style == ROPE_INTERLEAVED).
 * FT_EINVAL when a module is missing or shapes disagree. */
int merge_lora(struct model_file *mf, const struct lora_adapter *a, struct diag *d) FT_WUR;

/* Writes dir/model.safetensors and dir/config.json (+ tokenizer.json,
 * tokenizer_config.json, chat_template.jinja when mf carries them: a HF directory base),
 * F32, from the fp32 copies of the tensors (model_file_dequantize first; FT_EINVAL naming
 * a tensor without one). The tokenizer files of a GGUF base are written by the engine's export
 * (export_merged_hf), which can reach the tokenizer. */
int merged_write_hf(const char *dir, const struct model_file *mf, struct diag *d) FT_WUR;

/* Writes a GGUF file with llama.cpp names and metadata (llama family; the tokenizer
 * metadata is copied when the base was a GGUF file), F32 from the fp32 copies as above. */
int merged_write_gguf(const char *path, const struct model_file *mf, struct diag *d) FT_WUR;

#endif
