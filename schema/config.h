/* config: the validated, typed experiment configuration (docs/experiment-file.md) that every layer
 * reads. Produced by schema_load_file(); plain values, all strings and arrays owned by
 * the struct and freed by config_free(). Paths are already resolved against the
 * experiment file's directory. */
#ifndef FTLAB_CONFIG_H
#define FTLAB_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Each enum numbers the choices of its key in the schema table's order (schema/table.c):
 * schema_enum_name() and schema_enum_index() convert, and test_schema checks the counts. */
enum data_format { DATA_TEXT, DATA_COMPLETION, DATA_INSTRUCTION, DATA_CHAT, DATA_PREFERENCE };
enum on_bad_example { BAD_EXAMPLE_ERROR, BAD_EXAMPLE_SKIP };
enum method_type { METHOD_NONE, METHOD_FULL, METHOD_FREEZE, METHOD_LORA, METHOD_DORA, METHOD_IA3,
		   METHOD_PREFIX, METHOD_ADAPTER };
enum optimizer_type { OPTIMIZER_ADAMW, OPTIMIZER_SGD };
enum schedule_type { SCHEDULE_CONSTANT, SCHEDULE_LINEAR, SCHEDULE_COSINE };
enum precision { PRECISION_FP32, PRECISION_BF16 };
enum quantize_type { QUANTIZE_NONE, QUANTIZE_Q8_0, QUANTIZE_Q4_0 }; /* model.quantize */
enum nonfinite_policy { NONFINITE_ABORT, NONFINITE_SKIP_STEP };
enum train_objective { OBJECTIVE_SFT, OBJECTIVE_DPO, OBJECTIVE_ORPO, OBJECTIVE_SIMPO };
enum pref_loss_type { PREF_LOSS_SIGMOID, PREF_LOSS_IPO, PREF_LOSS_HINGE }; /* train.preference.loss_type */
enum backend_type { BACKEND_AUTO, BACKEND_CPU, BACKEND_CUDA, BACKEND_EXEC };
enum goal { GOAL_MAXIMIZE, GOAL_MINIMIZE };
enum sweep_method { SWEEP_GRID, SWEEP_RANDOM, SWEEP_BAYES, SWEEP_TPE };
/* The named templates of data.template (any other text is a custom template). */
enum data_template {
	DATA_TEMPLATE_AUTO, DATA_TEMPLATE_CHATML, DATA_TEMPLATE_GEMMA, DATA_TEMPLATE_ALPACA,
	DATA_TEMPLATE_PLAIN
};
enum launcher_type { LAUNCHER_LOCAL, LAUNCHER_SLURM };

/* A list of owned strings. */
struct strlist {
	char **items;
	size_t n;
};

/* A validation or test split: a file, or a fraction carved from another split. */
struct split_spec {
	bool present;     /* false: the split is not declared */
	char *path;       /* resolved path, or NULL when carved */
	char *from;       /* "train" (or another declared split) when carved */
	double fraction;  /* (0, 1) when carved */
	uint64_t seed;    /* split seed (defaults to the experiment seed) */
};

/* Field mapping: the JSON key to read for each logical field ("" = default name). */
struct field_map {
	char *text, *prompt, *completion, *response, *instruction, *input, *output, *messages,
		*system, *chosen, *rejected, *choices, *answer;
};

struct config_model {
	char *base;       /* resolved path to a .gguf file or a Hugging Face directory */
	int context;      /* longest sequence used in training and evaluation */
	enum quantize_type quantize; /* frozen float-stored weights quantized on load */
};

struct config_data {
	enum data_format format;
	char *train;               /* resolved path, or NULL (evaluation-only experiments) */
	struct split_spec validation, test;
	struct field_map fields;
	char *template_name;       /* "chatml" | "gemma" | "alpaca" | "plain" | "auto" | NULL (custom) */
	char *template_custom;     /* custom template with {prompt} {response} {system}, or NULL */
	char *system;              /* system prompt or NULL */
	int max_length;
	bool train_on_inputs;
	bool packing;
	int64_t limit_train, limit_validation, limit_test; /* 0 = no limit */
	enum on_bad_example on_bad_example;
};

struct config_method {
	enum method_type type;
	/* lora */
	int rank;
	double alpha;
	double dropout;
	struct strlist targets;    /* HF module names (q_proj, ...); ia3: empty = PEFT's default
				    * for the architecture */
	bool all_linear;           /* targets: all-linear */
	bool rslora;
	/* adapter: bottleneck adapters (AdapterHub) */
	bool pfeiffer;             /* placement pfeiffer; false: houlsby */
	bool attn_adapter, mlp_adapter; /* positions, auto resolved by placement */
	double reduction_factor;
	int non_linearity;         /* enum ops_act: 0 relu, 1 swish, 2 gelu, 3 gelu_new, 4 tanh */
	/* ia3: the targets whose input (not output) is scaled; ff_default: not given, so
	 * PEFT's feed-forward modules for the architecture that are among the targets */
	struct strlist ff_targets;
	bool ff_default;
	int num_virtual_tokens;    /* prefix: trained key/value rows per layer */
	bool prefix_projection;    /* prefix: the table is the output of PEFT's MLP */
	int encoder_hidden_size;   /* prefix_projection: the MLP's width; 0 = token_dim */
	/* freeze: which modules and layers train ([first, last], -1 = all layers) */
	struct strlist trainable;
	int layers_first, layers_last;
};

struct config_train {
	int epochs;                /* 0 when steps is used */
	int64_t steps;             /* 0 when epochs is used */
	int batch_size;
	int grad_accum;
	struct {
		enum optimizer_type type;
		double lr, beta1, beta2, eps, weight_decay;
		double momentum, dampening; /* sgd */
		bool nesterov;              /* sgd */
	} optimizer;
	struct {
		enum schedule_type type;
		int64_t warmup_steps;
		double min_lr_ratio;
	} schedule;
	double max_grad_norm;      /* 0 = no clipping */
	enum precision precision;
	bool grad_checkpointing;
	int64_t eval_every;        /* 0 = only at the end */
	int64_t checkpoint_every;  /* 0 = only at the end */
	struct {
		bool enabled;
		char *metric;          /* e.g. "validation.loss" */
		int patience;
		double min_delta;
	} early_stopping;
	enum nonfinite_policy nonfinite;
	/* What the step optimises: sft (cross-entropy on the targets) or a preference loss
	 * on {prompt, chosen, rejected} pairs (docs/engine.md, "Preference training"). */
	enum train_objective objective;
	struct {
		enum pref_loss_type loss_type; /* dpo */
		double beta;                   /* dpo, simpo */
		double label_smoothing;        /* dpo (sigmoid), simpo */
		double lambda;                 /* orpo: weight of the odds-ratio term */
		double gamma;                  /* simpo: target reward margin */
	} preference;
};

struct config_eval {
	struct strlist splits;     /* "validation", "test" */
	struct strlist metrics;    /* loss, perplexity, token_accuracy, exact_match, f1, bleu, rouge_l, chrf,
				    * choice_accuracy, choice_accuracy_norm, preference_accuracy,
				    * preference_margin */
	struct strlist choices;    /* the label set of completion/instruction/chat data (eval.choices) */
	struct {
		int max_new_tokens;
		double temperature;
		int top_k;
		double top_p;
		struct strlist stop;
	} generate;
	bool compare_base;
	int bootstrap;             /* resamples */
	int samples;               /* predictions kept per split for reports */
};

struct config_backend {
	enum backend_type type;
	int threads;               /* 0 = all cores */
	int device;
	struct strlist command;    /* exec: argv with {dotted.path} placeholders */
	double timeout_s;          /* exec: 0 = none */
	char *metrics_file;        /* exec: NULL = stdout */
	char *workdir;             /* exec: resolved working directory (experiment dir by default) */
};

/* Where runs execute (not part of a run's identity). Slurm fields are NULL/0 when unset. */
struct config_launcher {
	enum launcher_type type;
	char *partition, *account, *qos, *mem;
	double time_s;             /* time limit in seconds; 0 = the partition's */
	int cpus_per_task;         /* 0 = not given */
	int gpus_per_task;
	int array_parallelism;     /* 0 = no limit */
	struct strlist sbatch_args, setup;
};

struct config_gate {
	char *metric;              /* "test.exact_match" */
	enum { GATE_ABSOLUTE, GATE_VS_BASE, GATE_VS_BASELINE } vs;
	bool has_min, has_max, has_min_delta, has_max_regression;
	double min, max, min_delta, max_regression;
	int line;                  /* position in the experiment file, for messages */
};

struct config {
	char *name;
	char *description;
	char *source_path;         /* the experiment file as given */
	char *base_dir;            /* its directory */
	uint64_t seed;
	struct config_model model;
	struct config_data data;
	struct config_method method;
	struct config_train train;
	struct config_eval eval;
	struct config_backend backend;
	struct config_launcher launcher;
	struct config_gate *gates;
	size_t n_gates;
	/* Sweep objective (used by reports to mark the best run). */
	char *objective_metric;    /* NULL when not set */
	enum goal objective_goal;
	/* Canonical JSON of the resolved config without `sweep` and `gates`: sorted keys,
	 * normalised numbers. The runner hands it to exec trainers (FTLAB_CONFIG) and uses
	 * it for placeholders and config diffs. */
	char *canonical_json;
	/* sha256 hex of canonical_json (model and data content hashes are added by the
	 * runner to form the run identity). */
	char config_hash[65];
};

void config_free(struct config *c);

#endif
