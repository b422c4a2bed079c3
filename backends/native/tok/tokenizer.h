/* tokenizer: BPE, byte-level (GPT-2 family: SmolLM2, Llama 3, Qwen2, GPT-2) or SentencePiece
 * style (Gemma, Llama 2, TinyLlama, Mistral), built from GGUF metadata or a Hugging Face
 * tokenizer.json. Ids match Hugging Face `tokenizers` (fixtures in tests/reference/). A
 * tokenizer is immutable after creation; encode/decode may be called from several threads
 * at once (the word cache is locked internally). */
#ifndef FTLAB_TOKENIZER_H
#define FTLAB_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backends/native/io/model_file.h"
#include "common/diag.h"

struct tokenizer;

/* From a loaded model: tokenizer.json when the model is a HF directory, else the GGUF
 * tokenizer.ggml.* metadata (model "gpt2" or "llama"). FT_EINVAL for malformed data or a
 * directory without tokenizer.json, FT_EUNSUPP for other tokenizer kinds. Caller frees
 * with tokenizer_free. */
int tokenizer_from_model_file(struct tokenizer **out, const struct model_file *mf,
			      struct diag *d) FT_WUR;
/* From tokenizer.json text (len bytes) and optional tokenizer_config.json text (NULL when
 * absent: BOS/EOS are then taken from the post-processor or "<|endoftext|>"). path names
 * the file in messages. */
int tokenizer_from_json(struct tokenizer **out, const char *json, size_t len,
			const char *config_json, const char *path, struct diag *d) FT_WUR;

/* Flags for tokenizer_encode_ex. */
enum {
	TOK_PARSE_SPECIAL = 1, /* special (control) tokens in the text become their ids */
	TOK_ADD_SPECIAL = 2,   /* add BOS/EOS where the model's rules say so */
	TOK_CONTINUATION = 4   /* the text continues an earlier one (the next segment of an
				* example): no SentencePiece "▁" prefix at its start */
};

/* UTF-8 text -> ids. Added (non-special) tokens are always matched; special tokens
 * ("<|im_start|>") only with parse_special, otherwise they are tokenized as plain text.
 * Adds BOS/EOS when the model asks for them (add_bos_token / post-processor), like HF
 * encode(add_special_tokens=True). Invalid UTF-8 is FT_EINVAL. *out_ids is caller-owned. */
int tokenizer_encode(const struct tokenizer *t, const char *text, size_t len, bool parse_special,
		     int32_t **out_ids, size_t *out_n, struct diag *d) FT_WUR;
int tokenizer_encode_ex(const struct tokenizer *t, const char *text, size_t len, int flags,
			int32_t **out_ids, size_t *out_n, struct diag *d) FT_WUR;
/* ids -> bytes (NUL-terminated, *out_len without the NUL; caller frees). Ids outside the
 * vocabulary are FT_EINVAL. Special tokens are written as their text unless skip_special.
 * decode(encode(s)) == s for every valid UTF-8 s (with parse_special and no BOS/EOS added). */
int tokenizer_decode(const struct tokenizer *t, const int32_t *ids, size_t n, bool skip_special,
		     char **out, size_t *out_len) FT_WUR;

/* The id of a token given its text as stored in the vocabulary ("<|im_end|>", "Ġthe"),
 * -1 if absent. */
int32_t tokenizer_token_id(const struct tokenizer *t, const char *token_text);
/* The text of token id as stored in the vocabulary ("▁the", "<0x0A>", "Ġthe"; borrowed,
 * not NUL-terminated: *len bytes), NULL for an id outside the vocabulary or unused. */
const char *tokenizer_token_text(const struct tokenizer *t, int32_t id, size_t *len);
/* True for a SentencePiece-style tokenizer (pieces use "▁" and <0xNN> byte tokens). */
bool tokenizer_is_sentencepiece(const struct tokenizer *t);
/* BOS/EOS ids (-1 when the model has none), vocabulary size, whether encode adds BOS/EOS. */
int32_t tokenizer_bos(const struct tokenizer *t);
int32_t tokenizer_eos(const struct tokenizer *t);
int32_t tokenizer_pad(const struct tokenizer *t);
int tokenizer_n_vocab(const struct tokenizer *t);
bool tokenizer_adds_bos(const struct tokenizer *t);
bool tokenizer_adds_eos(const struct tokenizer *t);
/* True for special (control) tokens such as <|im_end|>. */
bool tokenizer_is_special(const struct tokenizer *t, int32_t id);
/* Writes dir/tokenizer.json, tokenizer_config.json (special tokens, add_bos/eos_token,
 * the model's chat template, or Gemma's for a Gemma vocabulary without one;
 * model_max_length when > 0) and special_tokens_map.json, so that Hugging Face
 * AutoTokenizer.from_pretrained(dir) and tokenizer_from_json give the same ids as t.
 * Creates dir. FT_EIO/FT_ENOMEM with d set. */
int tokenizer_write_hf(const char *dir, const struct tokenizer *t, int model_max_length,
		       struct diag *d) FT_WUR;
/* The Jinja chat template from the model, borrowed; NULL when the model has none. */
const char *tokenizer_chat_template(const struct tokenizer *t);
void tokenizer_free(struct tokenizer *t);

#endif
