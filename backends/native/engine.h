/* engine: the native engine as the command line uses it outside a run: generation,
 * evaluation of one data file, tokenization, export of a finished run's weights, the
 * speed benchmark, the self-test and synthetic models. The one engine header cli/
 * includes; runs go through backend.h.
 * Each call loads what it needs and frees it before returning. Not thread-safe (OpenMP
 * thread counts are process-wide). */
#ifndef FTLAB_ENGINE_H
#define FTLAB_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/diag.h"
#include "schema/config.h"

struct run_sink;

/* ---- check ---- */

struct config;
/* What `ftlab check` (and `ftlab run` before it claims anything) can tell about cfg from
 * its model's header alone (model_file_probe, no weights read): the model file is
 * readable, and the method's names and layers fit the architecture (model_check_method:
 * every LoRA target names a linear module, every freeze name a parameter, the layer range
 * lies inside the model). An exec backend's model is the trainer's business: nothing is
 * checked. FT_EINVAL with d set; *out_field ("method.targets", "method.trainable",
 * "method.layers" or "model.base") and *out_index (the offending list item, or -1) say
 * which value to point at. */
int engine_check_config(const struct config *cfg, const char **out_field, int *out_index,
			struct diag *d) FT_WUR;

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
	const char *const *choices;       /* label set for the choice metrics (eval.choices) */
	size_t n_choices;
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
 * `format` (peft | gguf-adapter | adapters | merged-safetensors | merged-gguf). *out_target (caller
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
	ENGINE_BENCH_PREFIX,
	ENGINE_BENCH_ADAPTER,
	ENGINE_BENCH_ADAPTER_HOULSBY
};

struct engine_bench_opts {
	const char *model_path;
	enum backend_type backend;        /* BACKEND_AUTO, BACKEND_CPU or BACKEND_CUDA */
	bool generate;                    /* decode benchmark; false = training steps */
	enum engine_bench_method method;  /* training: LoRA r8 on q,v; on every linear; full */
	bool bf16;                        /* training matmuls in bf16 */
	int batch, seq, steps;            /* training shape and steps (0: 3 on the CPU, 10 on
					   * CUDA); generate: batch = prompts of the batched run */
	/* training: OBJECTIVE_SFT, or a preference step of `batch` pairs (2 batch rows; dpo
	 * with LoRA adds the reference pass with the adapter off) */
	enum train_objective objective;
	int new_tokens, prompt_len;       /* generation */
	bool tokenize;                    /* tokenizer speed on text_path instead */
	const char *text_path;
	int threads;                      /* 0 = all cores */
	bool weights_f32;                 /* every weight dequantized to fp32 at load */
	bool json;                        /* one JSON object on stdout, the report on stderr */
	/* training: the LM head over every position at once (the (B*T, V) logits kept) instead
	 * of in chunks at positions with a target; targets > 0: only the last `targets`
	 * positions of each row carry a target (instruction data), 0 = every position */
	bool all_logits;
	int targets;
};

/* Runs the benchmark and prints its report to stdout (with json: the JSON object; the
 * report goes to stderr). "cuda" without a usable device is FT_EUNSUPP with the probe's
 * reason in d; a failed CUDA call ends it with the call's message. */
int engine_bench(const struct engine_bench_opts *o, struct diag *d) FT_WUR;

/* The CPU GEMM peak as `ftlab bench` measures it, in GFLOP/s: the best of 15 timed calls of
 * the CPU ops' matmul (bf16: with OPS_BF16, fp32 operands rounded on the way in) on each of
 * 1024x1536x576, 1024x576x1536 and 2048^3; 0 when the buffers cannot be had. */
double engine_bench_cpu_peak(bool bf16);

/* ---- synth-model ---- */

/* Writes out_dir (a Hugging Face directory: config.json, model.safetensors in fp32, the
 * tokenizer files) with random weights in the shape of a config.json (config: the file or
 * its directory; llama, qwen2 or gpt2), the tokenizer from `tokenizer` (a tokenizer.json
 * or its directory; NULL: beside the config), seed and std (<= 0: the config's
 * initializer_range, else 0.02). Its vocabulary must fit vocab_size (FT_EINVAL). The same
 * inputs give the same bytes on every machine; *out_sha256 is model.safetensors' digest
 * and *out_summary (caller frees) one line describing the model. */
int engine_synth_model(char **out_summary, char out_sha256[65], const char *config,
		       const char *tokenizer, uint64_t seed, double std, const char *out_dir,
		       struct diag *d) FT_WUR;

/* The self-test of a backend (want: "cpu", "cuda" or NULL = CUDA when a device is
 * present), printing one line per check to stdout; *ok false when a check missed its
 * tolerance. FT_EINVAL when "cuda" is asked for and no device is usable (the reason in
 * d); another code when the backend itself failed. */
int engine_selftest(const char *want, bool *ok, struct diag *d) FT_WUR;

#endif
