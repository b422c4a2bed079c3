/* llama_cpp_logits: the logits llama.cpp computes for token ids, for the Gemma 3 fixtures
 * (make_gemma3_fixture.py llamacpp compiles it against a llama.cpp build; never part of
 * ftlab's build). Usage: llama_cpp_logits MODEL.gguf [--lora ADAPTER.gguf] ID...
 * Prints a JSON array with one array of n_vocab logits per position. fp32 KV cache, so
 * that only the arithmetic differs from ftlab's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ggml.h"
#include "llama.h"

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s MODEL.gguf [--lora ADAPTER.gguf] ID...\n", argv[0]);
		return 2;
	}
	const char *model_path = argv[1], *lora_path = NULL;
	int first = 2;
	if (argc > 3 && strcmp(argv[2], "--lora") == 0) {
		lora_path = argv[3];
		first = 4;
	}
	int n = argc - first;
	llama_backend_init();
	struct llama_model_params mp = llama_model_default_params();
	struct llama_model *model = llama_model_load_from_file(model_path, mp);
	if (!model)
		return 1;
	struct llama_context_params cp = llama_context_default_params();
	cp.n_ctx = n < 64 ? 64 : (uint32_t)n;
	cp.n_batch = cp.n_ubatch = cp.n_ctx;
	cp.n_threads = cp.n_threads_batch = 2;
	cp.type_k = GGML_TYPE_F32;
	cp.type_v = GGML_TYPE_F32;
	cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
	struct llama_context *ctx = llama_init_from_model(model, cp);
	if (!ctx)
		return 1;
	if (lora_path) {
		struct llama_adapter_lora *a = llama_adapter_lora_init(model, lora_path);
		float scale = 1.0f;
		if (!a || llama_set_adapters_lora(ctx, &a, 1, &scale) != 0)
			return 1;
	}
	struct llama_batch b = llama_batch_init(n, 0, 1);
	for (int i = 0; i < n; i++) {
		b.token[i] = (llama_token)strtol(argv[first + i], NULL, 10);
		b.pos[i] = i;
		b.n_seq_id[i] = 1;
		b.seq_id[i][0] = 0;
		b.logits[i] = 1;
	}
	b.n_tokens = n;
	if (llama_decode(ctx, b) != 0)
		return 1;
	int V = llama_vocab_n_tokens(llama_model_get_vocab(model));
	printf("[");
	for (int i = 0; i < n; i++) {
		const float *lg = llama_get_logits_ith(ctx, i);
		printf("%s[", i ? "," : "");
		for (int v = 0; v < V; v++)
			printf("%s%.9g", v ? "," : "", (double)lg[v]);
		printf("]");
	}
	printf("]\n");
	llama_batch_free(b);
	llama_free(ctx);
	llama_model_free(model);
	return 0;
}
