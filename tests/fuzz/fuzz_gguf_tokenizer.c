/* libFuzzer harness: arbitrary bytes as the metadata of a GGUF file (what `ftlab tokenize`
 * reads: any architecture, no tensors); when it loads, its tokenizer (byte-level or
 * SentencePiece, merges recovered from the scores) is built, a fixed text and a slice of
 * the input are encoded and decoded, and the tokenizer is written as Hugging Face files
 * and read back. Must never crash, leak, read out of bounds or take long. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/native/io/io_internal.h"
#include "backends/native/tok/tokenizer.h"
#include "common/util.h"
#include "common/banned.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void roundtrip(const struct tokenizer *t, const char *text, size_t len, int flags)
{
	struct diag d;
	diag_init(&d);
	int32_t *ids;
	size_t n;
	if (tokenizer_encode_ex(t, text, len, flags, &ids, &n, &d) != 0)
		return;
	char *back;
	if (tokenizer_decode(t, ids, n, flags == 0, &back, NULL) == 0)
		free(back);
	free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct model_file *m = calloc(1, sizeof *m);
	if (!m)
		return 0;
	m->path = ft_strdup("fuzz.gguf");
	m->tok.bos_id = m->tok.eos_id = m->tok.pad_id = m->tok.unk_id = -1;
	struct diag d;
	diag_init(&d);
	struct tokenizer *t = NULL;
	if (gguf_load_metadata(m, data, size, "fuzz.gguf", &d) == 0 &&
	    tokenizer_from_model_file(&t, m, &d) == 0) {
		static const char text[] = "<s>Hello  world\t\n\n123 ünï 😀 <start_of_turn>user\n"
					   "<|im_end|> ▁x <0x41>  ";
		roundtrip(t, text, sizeof text - 1, TOK_PARSE_SPECIAL | TOK_ADD_SPECIAL);
		roundtrip(t, text, sizeof text - 1, 0);
		roundtrip(t, (const char *)data + size / 2, size - size / 2 < 512 ? size - size / 2 : 512,
			  TOK_PARSE_SPECIAL);
		/* the HF files of a small tokenizer, read back */
		if (tokenizer_n_vocab(t) <= 4096) {
			char dir[64];
			snprintf(dir, sizeof dir, "/tmp/ftlab-fuzz-tok-%d", (int)getpid());
			if (tokenizer_write_hf(dir, t, 0, &d) == 0) {
				char *p = path_join(dir, "tokenizer.json"), *text2 = NULL;
				size_t len;
				struct tokenizer *t2 = NULL;
				if (p && file_read_all(&text2, &len, p, 64u << 20, &d) == 0 &&
				    tokenizer_from_json(&t2, text2, len, NULL, p, &d) == 0)
					tokenizer_free(t2);
				free(text2);
				free(p);
			}
			if (path_exists(dir) && dir_remove_all(dir) != 0)
				abort(); /* the harness cleans up after itself */
		}
		tokenizer_free(t);
	}
	model_file_free(m);
	return 0;
}
