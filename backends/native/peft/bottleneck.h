/* bottleneck: AdapterHub bottleneck adapters on disk, in the layout the `adapters`
 * library's save_adapter(..., use_safetensors=True) writes and load_adapter reads:
 * adapter_config.json ({"config": {...SeqBn/DoubleSeqBn fields...}, "hidden_size",
 * "model_type", "name", ...}) and adapter.safetensors with keys
 * "<layer>.attention_adapters.adapters.<name>.adapter_down.0.weight" (bn, C), ".bias"
 * (bn), "...adapter_up.weight" (C, bn), ".bias" (C), likewise "output_adapters". Tensors
 * carry ftlab's names, the same without "adapters.<name>." and the ".0". */
#ifndef FTLAB_PEFT_BOTTLENECK_H
#define FTLAB_PEFT_BOTTLENECK_H

#include <stdbool.h>
#include <stddef.h>

#include "backends/native/peft/adapter.h" /* struct lora_tensor: name, data, rows, cols */
#include "common/diag.h"

struct bn_info {
	bool attn, mlp;      /* mh_adapter, output_adapter */
	bool pfeiffer;       /* original_ln_before (SeqBn); false: Houlsby (DoubleSeqBn) */
	double reduction;    /* reduction_factor */
	int act;             /* enum ops_act */
	int hidden_size;
	const char *model_type; /* "llama", "gemma3", "gpt2" (written; NULL on read) */
	const char *name;       /* the adapter's name (written; "ftlab" when NULL) */
};

/* AdapterHub's non_linearity names: "relu", "swish" (or "silu"), "gelu", "gelu_new",
 * "tanh" -> enum ops_act; -1 for others. bottleneck_act_name: the name written. */
int bottleneck_act_parse(const char *s);
const char *bottleneck_act_name(int act);

/* Writes dir/adapter_config.json and dir/adapter.safetensors (dir is created); t are
 * the adapter's tensors under ftlab's names (vectors as (n, 1)). */
int bottleneck_write(const char *dir, const struct lora_tensor *t, size_t n,
		     const struct bn_info *info, struct diag *d) FT_WUR;

/* Reads such a directory: tensors under ftlab's names (vectors (n, 1)), info from the
 * config. Configurations ftlab does not build (layer norms inside the adapter, gating,
 * parallel adapters, PHM layers, scaling other than 1, residual_before_ln other than
 * true, leave_out, invertible adapters) and malformed files are FT_EINVAL naming the
 * file. */
struct bn_adapter {
	struct bn_info info;
	struct lora_tensor *t;
	size_t n;
};
int bottleneck_read(struct bn_adapter **out, const char *dir, struct diag *d) FT_WUR;
void bottleneck_free(struct bn_adapter *a);

#endif
