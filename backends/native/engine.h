/* engine: the native engine as the command line uses it outside a run: generation,
 * evaluation of one data file, tokenization, export of a finished run's weights, the
 * speed benchmark and the self-test. The one engine header cli/ includes; runs go through backend.h.
 * Each call loads what it needs and frees it before returning. Not thread-safe (OpenMP
 * thread counts are process-wide). */
#ifndef FTLAB_ENGINE_H
#define FTLAB_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/diag.h"

struct run_sink;

/* ---- generate ---- */

struct engine_generate_opts {
	const char *model_path;           /* .gguf file or Hugging Face directory */
	const char *adapter;              /* PEFT LoRA adapter directory, or NULL */
	const char *const *prompts;
	size_t n_prompts;
	const char *const *stops;         /* stop strings */
	size_t n_stops;
	const char *system;               /* chat system message, or NULL */
	bool raw;                         /* no chat template */
	int max_new_tokens, top_k, threads; /* threads 0 = all cores */
	float temperature, top_p;         /* temperature 0 = greedy; top_p 1 = off */
	uint64_t seed;
};

/* Generates for all prompts in one batch. *out_texts[i] (caller frees each and the
 * array, n_prompts entries) is the continuation of prompt i. */
int engine_generate(char ***out_texts, const struct engine_generate_opts *o,
		    struct diag *d) FT_WUR;

/* ---- eval ---- */

struct engine_eval_opts {
	const char *model_path, *adapter; /* adapter NULL = the base model */
	const char *data;                 /* JSON Lines file */
	const char *format;               /* data.format name; NULL = from the first line */
	const char *const *metrics;       /* metric names, in the user's order */
	size_t n_metrics;
	const char *template_name, *system;
	const char *predictions_path;     /* every prediction as JSON Lines, or NULL */
	int64_t limit, max_length, max_new_tokens, batch, bootstrap, seed, samples;
	/* Progress of the phases ("loss", "generate"): done of total. May be NULL. */
	void (*progress)(void *ud, const char *phase, size_t done, size_t total);
	/* Data warnings (truncated or skipped examples), once, before evaluating. May be NULL. */
	void (*warning)(void *ud, const char *text);
	void *progress_ud;                /* the ud of both */
};

struct engine_eval_info {
	size_t examples;
	const char *format;               /* the data format used (static string) */
	long gen_tokens;                  /* tokens generated, and the seconds it took */
	double gen_seconds;
};

/* Evaluates the model (with the adapter: model "tuned", else "base") on split "test" of
 * the file. Metric values with bootstrap intervals go to sink->result, the first
 * o->samples predictions to sink->prediction (either may be NULL). FT_EINVAL for bad
 * input (unknown metric or format, unreadable data or model) with d set. */
int engine_eval(struct engine_eval_info *out, const struct engine_eval_opts *o,
		const struct run_sink *sink, struct diag *d) FT_WUR;

/* ---- tokenize ---- */

struct engine_tokenize_opts {
	const char *model_path;           /* .gguf (metadata only) or a directory with tokenizer.json */
	const char *const *texts;         /* encode these ... */
	size_t n_texts;
	bool special, no_bos;             /* special tokens in the texts parsed; no BOS/EOS */
	const char *data;                 /* ... or each example of this JSON Lines file, */
	const char *format, *template_name, *system; /* NULL: from the first line, auto, none */
	int64_t max_length, limit;        /* 0 = no truncation, all examples */
	bool train_on_inputs;
	const char *write_hf;             /* ... or write the tokenizer's HF files into this dir */
	bool json;
};

/* Prints to stdout, one token a line (or JSON): for each text its ids and pieces; for
 * each example its ids, pieces, loss mask and generation-prompt length; or the directory
 * written. Data warnings go to stderr. FT_EINVAL with d set for bad input. */
int engine_tokenize(const struct engine_tokenize_opts *o, struct diag *d) FT_WUR;

/* ---- export ---- */

/* Rebuilds the weights of the finished run in run_dir and writes them to out_dir in
 * `format` (peft | gguf-adapter | merged-safetensors | merged-gguf). *out_target (caller
 * frees) is what was written: the directory, or the .gguf file. base_model (may be NULL)
 * is the base_model_name_or_path of a peft export; without it the Hugging Face
 * repository named in the base GGUF's metadata, else the base path (a note on stderr
 * says when that is a .gguf file). merged-safetensors of a GGUF base includes its
 * tokenizer as tokenizer.json, tokenizer_config.json and special_tokens_map.json. */
int engine_export(char **out_target, const char *run_dir, const char *format,
		  const char *out_dir, const char *base_model, struct diag *d) FT_WUR;

/* ---- bench and selftest ---- */

enum engine_bench_method {
	ENGINE_BENCH_LORA,
	ENGINE_BENCH_LORA_ALL,
	ENGINE_BENCH_FULL,
	ENGINE_BENCH_DORA,
	ENGINE_BENCH_IA3,
	ENGINE_BENCH_PREFIX
};

struct engine_bench_opts {
	const char *model_path;
	bool generate;                    /* decode benchmark; false = training steps */
	enum engine_bench_method method;  /* training: LoRA r8 on q,v; on every linear; full */
	bool bf16;                        /* training matmuls in bf16 */
	int batch, seq, steps;            /* training shape and steps */
	int new_tokens, prompt_len;       /* generation */
	bool tokenize;                    /* tokenizer speed on text_path instead */
	const char *text_path;
	int threads;                      /* 0 = all cores */
	/* training: the LM head over every position at once (the (B*T, V) logits kept) instead
	 * of in chunks at positions with a target; targets > 0: only the last `targets`
	 * positions of each row carry a target (instruction data), 0 = every position */
	bool all_logits;
	int targets;
};

/* Runs the benchmark and prints its report to stdout. */
int engine_bench(const struct engine_bench_opts *o, struct diag *d) FT_WUR;

/* The self-test of a backend (want: "cpu", "cuda" or NULL = CUDA when a device is
 * present), printing one line per check to stdout; *ok false when a check missed its
 * tolerance. FT_EINVAL when "cuda" is asked for and no device is usable (the reason in
 * d); another code when the backend itself failed. */
int engine_selftest(const char *want, bool *ok, struct diag *d) FT_WUR;

#endif
