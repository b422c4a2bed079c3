/* cli: the command table, help texts and shared option helpers. */
#include "cli/cli.h"

#include <stdarg.h>
#include <string.h>

#include "common/util.h"
#include "common/banned.h"

const struct cli_command cli_commands[] = {
	{"check", "validate an experiment; print the resolved config and sweep size",
	 "usage: ftlab check EXP.yaml [-s KEY=VALUE]... [--max-runs N] [--json]\n"
	 "\n"
	 "Validates the experiment file (and the files it extends), applies -s overrides\n"
	 "(also --set KEY=VALUE, sweep.* included), validates every sweep point, and prints\n"
	 "the resolved experiment as YAML followed by the number of runs. For the native\n"
	 "backends it reads the model file's header (not its weights) and refuses a file that\n"
	 "is not a model, a LoRA target that names no linear module of the model, a freeze\n"
	 "name that names no parameter, and a freeze layer range outside the model, in\n"
	 "every sweep point (a bayes sweep: every value each parameter can take); `ftlab\n"
	 "run` refuses the same before it records anything. --json prints one object with\n"
	 "the canonical config, the whole spec, their hashes and the number of runs.\n",
	 cmd_check},
	{"plan", "list the runs a sweep expands to, and which are cached",
	 "usage: ftlab plan EXP.yaml [-s KEY=VALUE]... [--max-runs N] [--json]\n"
	 "\n"
	 "Prints one row per run: index, run id, status and swept values. The status is\n"
	 "what `ftlab run` would do now, decided as run decides: new, cached (reused at\n"
	 "this clean commit), running (another live process has it), outdated (finished at\n"
	 "another commit or with uncommitted changes: run repeats it), stopped (stopped by\n"
	 "early termination, reused as it is), or the recorded failed, killed, crashed or\n"
	 "queued. A bayes or tpe sweep has no fixed plan: it says so and lists the points it has\n"
	 "handed out so far. Sweeps of more than 10000 runs are refused unless --max-runs\n"
	 "raises the limit. --json prints {experiment, spec_hash, adaptive, budget, runs:\n"
	 "[{index, run_id, identity, status, params}]}.\n",
	 cmd_plan},
	{"run", "run an experiment: train and evaluate every sweep point",
	 "usage: ftlab run EXP.yaml [-s KEY=VALUE]... [--only RUN] [--force] [--resume]\n"
	 "                 [--jobs N] [--backend cpu|cuda|exec] [--require-clean]\n"
	 "                 [--max-runs N] [--launcher local|slurm] [--detach]\n"
	 "\n"
	 "Expands the sweep and runs every point that is not already finished at the same\n"
	 "clean git commit (those are reused as 'cached'); a bayes or tpe sweep chooses\n"
	 "each point from the results before it, and early_terminate stops runs that fall behind\n"
	 "(status stopped). Records config, metrics, results, predictions and provenance in\n"
	 "the workspace's store and runs/<run-id>/.\n"
	 "\n"
	 "  --only RUN         run only the point with this run id (prefix, 4+ hex digits;\n"
	 "                     not for bayes or tpe sweeps)\n"
	 "  --force            run again even when an identical finished run exists\n"
	 "  --resume           continue killed and crashed runs from their checkpoints\n"
	 "  --jobs N           run N points at a time in worker processes (this process\n"
	 "                     still makes every sweep decision)\n"
	 "  --backend B        override backend.type (cpu, cuda or exec)\n"
	 "  --require-clean    refuse to run from a git tree with uncommitted changes\n"
	 "  --max-runs N       allow sweeps larger than 10000 runs\n"
	 "  --launcher L       slurm: one job array, one array task per run (docs/slurm.md);\n"
	 "                     local: run here whatever launcher.type says\n"
	 "  --detach           slurm: submit and return; 'ftlab sync' merges the results\n"
	 "                     (not for bayes or early_terminate: they need the controller)\n"
	 "\n"
	 "Ctrl-C stops the running point after a checkpoint (status killed); a second\n"
	 "Ctrl-C exits at once. With --launcher slurm the command waits, merging each run\n"
	 "as it ends; Ctrl-C stops the waiting only (the tasks go on). Exit status 1 when\n"
	 "any run failed.\n",
	 cmd_run},
	{"sync", "merge the results of Slurm runs into the store",
	 "usage: ftlab sync [EXPERIMENT]\n"
	 "\n"
	 "Merges what the array tasks of Slurm runs have written into their run directories\n"
	 "(their journals) into the store, once each, and settles runs whose task has left\n"
	 "Slurm's queue: from their own end record, else from Slurm's verdict (state and job\n"
	 "id in the error). Safe to run at any time and as often as wanted (a cron line, a\n"
	 "dependent job). Exit status 1 when a run it settled failed or crashed.\n",
	 cmd_sync},
	{"cancel", "cancel queued and running Slurm runs",
	 "usage: ftlab cancel EXPERIMENT|RUN\n"
	 "\n"
	 "Cancels (scancel) the array tasks of the experiment's queued and running Slurm\n"
	 "runs, or of one run. A queued run ends killed at once; a running one checkpoints,\n"
	 "records itself killed and is merged (ftlab run --resume continues it).\n",
	 cmd_cancel},
	{"ls", "list experiments and runs in the store",
	 "usage: ftlab ls [EXPERIMENT] [--status S] [--json]\n"
	 "\n"
	 "One row per run: id, experiment, status (queued, running, finished, failed,\n"
	 "killed, crashed, stopped), progress, swept values, tuned results, start and\n"
	 "duration.\n",
	 cmd_ls},
	{"show", "show one run: config, provenance, metrics, artifacts",
	 "usage: ftlab show RUN [--json]\n"
	 "\n"
	 "A run's status, provenance (git commit, branch, dirty flag, remote), swept values,\n"
	 "results (base, tuned, delta with intervals), metric histories, artifacts, events\n"
	 "and resolved config. RUN is a run id or a unique prefix of one.\n",
	 cmd_show},
	{"compare", "compare runs or experiments: config diff and metric table",
	 "usage: ftlab compare RUN|EXPERIMENT... [--metric M] [--json]\n"
	 "\n"
	 "The config keys whose values differ between the runs, then one row per run with\n"
	 "its final results. An experiment name stands for all its runs; --metric M keeps\n"
	 "only metric M (a name such as exact_match, or split.metric) for every model.\n",
	 cmd_compare},
	{"report", "write an HTML and Markdown report with charts",
	 "usage: ftlab report EXPERIMENT|RUN|EXPERIMENT@COMMIT [-o DIR] [--baseline REF]\n"
	 "                    [--timeout DURATION]\n", cmd_report},
	{"ci", "run an experiment as a pass/fail gate",
	 "usage: ftlab ci EXP.yaml [-s KEY=VALUE]... [--baseline REF] [--junit FILE] [--markdown FILE]\n"
	 "                [--no-run] [--jobs N] [--backend B] [--force] [--require-clean]\n"
	 "                [--launcher local|slurm]\n", cmd_ci},
	{"eval", "evaluate a model (and adapter) on a data file",
	 "usage: ftlab eval MODEL [--adapter DIR] --data FILE [--format F] [--metrics M,...]\n"
	 "                  [--template T] [--system S] [--limit N] [--max-length N]\n"
	 "                  [--max-new-tokens N] [--batch N] [--bootstrap N] [--seed N]\n"
	 "                  [--samples N] [--predictions FILE] [--choices A,B,...] [--json]\n",
	 cmd_eval},
	{"generate", "generate text from a model",
	 "usage: ftlab generate MODEL [--adapter DIR] [--max-new-tokens N] [--temperature T]\n"
	 "                      [--top-k K] [--top-p P] [--seed S] [--stop STR]... [--system S]\n"
	 "                      [--threads N] [--raw] PROMPT...\n",
	 cmd_generate},
	{"tokenize", "show the tokens of a text, or of each example with its loss mask",
	 "usage: ftlab tokenize MODEL [--special] [--no-bos] [--json] TEXT...\n"
	 "       ftlab tokenize MODEL --data FILE [--format F] [--template T] [--system S]\n"
	 "                      [--max-length N] [--limit N] [--train-on-inputs] [--json]\n"
	 "       ftlab tokenize MODEL --write-hf DIR\n"
	 "\n"
	 "Prints the ids and pieces (the vocabulary's spelling: \"\u2581\" is a SentencePiece\n"
	 "space, \"\u0120\" a byte-level one, <0x0A> a byte) that MODEL's tokenizer gives each\n"
	 "TEXT, one token a line. BOS/EOS are added when the model asks for them (Gemma\n"
	 "adds <bos>); --no-bos adds none. Special tokens written in TEXT (<|im_end|>,\n"
	 "<start_of_turn>) are plain text, as in training data, unless --special.\n"
	 "\n"
	 "With --data FILE (JSON Lines) each example is templated and tokenized exactly as\n"
	 "training does, and each token is marked 'loss' when it is a training target; a\n"
	 "line shows where the generation prompt ends. --format (default: from the first\n"
	 "line's keys), --template (default auto: the model's own template), --system,\n"
	 "--max-length (truncation; default none), --limit (first N examples) and\n"
	 "--train-on-inputs act as the data section of an experiment file does.\n"
	 "\n"
	 "--write-hf DIR writes MODEL's tokenizer as Hugging Face files (tokenizer.json,\n"
	 "tokenizer_config.json, special_tokens_map.json), as merged exports do.\n"
	 "\n"
	 "MODEL is a .gguf file (only its metadata is read) or a directory with\n"
	 "tokenizer.json. --json prints the ids, pieces, loss masks and prompt lengths.\n",
	 cmd_tokenize},
	{"export", "export a run's weights (PEFT adapter, merged model, GGUF)",
	 "usage: ftlab export RUN --format peft|gguf-adapter|adapters|merged-safetensors|\n"
	 "                    merged-gguf -o DIR [--base-model NAME]\n"
	 "\n"
	 "peft: adapter_model.safetensors and adapter_config.json. Its\n"
	 "base_model_name_or_path is --base-model NAME when given, else the Hugging Face\n"
	 "repository the base GGUF's metadata names (general.source.*), else the base\n"
	 "model's path (a note says when that is a .gguf file, which PEFT cannot load).\n"
	 "merged-safetensors: model.safetensors, config.json and the tokenizer files\n"
	 "(tokenizer.json, tokenizer_config.json with the chat template,\n"
	 "special_tokens_map.json; from the GGUF metadata for a GGUF base).\n"
	 "merged-gguf: model.gguf (F32). gguf-adapter: adapter.gguf for llama.cpp.\n"
	 "peft takes LoRA, DoRA, IA3 and prefix-tuning runs; the merged formats every\n"
	 "method but prefix tuning and bottleneck adapters; gguf-adapter LoRA only.\n"
	 "adapters (method adapter runs, which do not merge): adapter.safetensors and\n"
	 "adapter_config.json for the AdapterHub `adapters` library's load_adapter.\n",
	 cmd_export},
	{"bench", "measure training, generation and tokenizer speed",
	 "usage: ftlab bench [--model smollm2|gemma3|PATH] [--mode train|generate|tokenize]\n"
	 "                   [--backend auto|cpu|cuda] [--threads N] [--json]\n"
	 "                   [--weights file|f32]\n"
	 "                   train:    [--method lora|lora-all|dora|ia3|prefix|full|adapter|\n"
	 "                             adapter-houlsby]\n"
	 "                             [--precision fp32|bf16]\n"
	 "                             [--batch B] [--seq T] [--steps N] [--logits chunked|all]\n"
	 "                             [--targets N] [--objective sft|dpo|orpo|simpo]\n"
	 "                   generate: [--prompt-len N] [--new-tokens N] [--batch N]\n"
	 "                   tokenize: [--text FILE]   (default docs/engine.md: its lines,\n"
	 "                             then the whole file as one text; CPU time)\n"
	 "\n"
	 "Measures the native engine on a model file (default: the SmolLM2-135M-Instruct\n"
	 "GGUF of `make model`) together with the machine's limits, measured on the spot:\n"
	 "the GEMM peak (CPU: the best of 15 calls on each of three training shapes, before\n"
	 "and after the steps, the higher kept; CUDA: cuBLAS bf16 and TF32 on 8192^3 random\n"
	 "matrices) and the memory bandwidth. train: tokens/s of forward + backward + AdamW on random tokens (batch B\n"
	 "x T, default 4 x 256; 3 timed steps on the CPU, 10 on CUDA, after one untimed),\n"
	 "MFU (CUDA: against the bf16 peak), memory. generate: prefill and decode tokens/s\n"
	 "for 1 prompt and for N prompts together (default 8) against the bound of reading\n"
	 "the weights once per step. --logits all computes the LM head over every position\n"
	 "at once (default chunked: only at positions with a target); --targets N gives only\n"
	 "the last N positions of each row a target (default every position).\n"
	 "--backend auto (the default) uses CUDA when a device\n"
	 "is present; cuda without one is an error (exit 2). On CUDA the peak device memory\n"
	 "is reported. --json (train, generate) prints one JSON object on stdout and the text\n"
	 "on stderr.\n",
	 cmd_bench},
	{"selftest", "compare backends on a tiny model",
	 "usage: ftlab selftest [--backend cpu|cuda]\n", cmd_selftest},
	{"synth-model", "write a model of random weights in a config's shape",
	 "usage: ftlab synth-model CONFIG -o DIR [--tokenizer FILE] [--seed N] [--std X]\n"
	 "\n"
	 "Writes a Hugging Face model directory (config.json, model.safetensors in fp32 and\n"
	 "the tokenizer files) with random weights in the shape CONFIG describes: a\n"
	 "config.json of a llama, qwen2 or gpt2 model, or a directory holding one. For\n"
	 "benchmarks and device checks on a model's shape without its weights: the model\n"
	 "knows nothing about text. The tokenizer is --tokenizer FILE (a tokenizer.json or a\n"
	 "directory holding one), else CONFIG's directory's tokenizer.json; a\n"
	 "tokenizer_config.json beside it is copied too. Its vocabulary must fit the\n"
	 "config's vocab_size. Matrices and embeddings are uniform with standard deviation\n"
	 "--std (default: the config's initializer_range, else 0.02), norm weights 1,\n"
	 "biases 0. The same CONFIG and --seed (default 1) give the same bytes on every\n"
	 "machine; the sha256 of model.safetensors is printed.\n",
	 cmd_synth_model},
	{"task", "run one Slurm array task (the batch script's command)",
	 "usage: ftlab task SUBMISSION_DIR INDEX\n"
	 "\n"
	 "What the batch script of a Slurm submission runs on the node: the run at array\n"
	 "index INDEX of SUBMISSION_DIR/manifest.json, from its frozen config, writing its\n"
	 "journal into the run directory (never the store). Not for use by hand.\n",
	 cmd_task},
};
const size_t cli_n_commands = FT_ARRAY_LEN(cli_commands);

const struct cli_command *cli_find(const char *name)
{
	for (size_t i = 0; i < cli_n_commands; i++)
		if (strcmp(cli_commands[i].name, name) == 0)
			return &cli_commands[i];
	return NULL;
}

void cli_print_usage(const struct cli_command *c, FILE *out)
{
	fputs(c->usage, out);
	fputs("\nGlobal options: --workspace DIR, --quiet, --verbose, --json, --help\n", out);
}

int cli_usage_error(const char *cmd, const char *const *valid, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "ftlab %s: error: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fprintf(stderr, "Try 'ftlab %s --help'.\n", cmd);
	(void)valid;
	return 2;
}

int cli_fail(const struct diag *d)
{
	diag_print(d, stderr);
	return diag_exit_status(d->code);
}

bool cli_is_help(const char *arg)
{
	return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0;
}
