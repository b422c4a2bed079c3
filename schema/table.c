/* table: every key of the experiment file (docs/experiment-file.md) with type, default, range and
 * meaning. Order here is the order of `ftlab check` output and of the manual. Adding a
 * key: a row here, its reading in validate.c (config_fill), a field in config.h. */
#include "schema/table.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "common/banned.h"

#define NOB 0.0, 0.0
#define RANGE(lo, hi) (lo), (hi)
#define METRICS                                                                               \
	"loss|perplexity|token_accuracy|exact_match|f1|bleu|rouge_l|chrf|choice_accuracy|"         \
	"choice_accuracy_norm|preference_accuracy|preference_margin"

const struct key_desc schema_keys[] = {
	{"name", KT_NAME, KF_REQUIRED | KF_NOSWEEP, NULL, NOB, NULL,
	 "Identifies the experiment in the store: lower-case letters, digits, '.', '_' and '-'.", NULL},
	{"description", KT_STR, KF_NOSWEEP | KF_NOCANON, "''", NOB, NULL,
	 "Free text shown in reports. Not part of a run's identity.", NULL},
	{"extends", KT_PATH, KF_NOSWEEP | KF_NOCANON, NULL, NOB, NULL,
	 "Another experiment file this one builds on, relative to this file: maps merge deeply, "
	 "lists and values replace, `key: null` removes an inherited key.", NULL},
	{"seed", KT_INT, KF_LO | KF_HI, "0", RANGE(0, 9007199254740991.0), NULL,
	 "Seed for data order, initialisation, dropout and sampling. A sweep over `seed` repeats runs.", NULL},

	{"model", KT_MAP, 0, NULL, NOB, NULL, "The base model.", NULL},
	{"model.base", KT_PATH, KF_REQUIRED | KF_EXISTS, NULL, NOB, NULL,
	 "A .gguf file or a Hugging Face model directory (config.json, *.safetensors, tokenizer.json).", NULL},
	{"model.context", KT_INT, KF_LO | KF_HI, "512", RANGE(8, 1048576), NULL,
	 "Longest sequence (tokens) used in training and evaluation.", NULL},
	{"model.quantize", KT_ENUM, 0, "none", NOB, "none|q8_0|q4_0",
	 "Frozen weights (all of them in evaluation, the base under LoRA and freeze) that the "
	 "model stores as F32, F16 or BF16 (a Hugging Face directory, a float GGUF) are "
	 "quantized on load to Q8_0 (8.5 bits per weight) or Q4_0 (4.5 bits) blocks, as "
	 "llama.cpp rounds them; trainable weights stay fp32, quantized GGUF tensors stay as "
	 "stored. Saves memory at a small cost in accuracy (docs/engine.md).", NULL},

	{"data", KT_MAP, 0, NULL, NOB, NULL, "Training and evaluation data (JSON Lines).", NULL},
	{"data.format", KT_ENUM, 0, "text", NOB, "text|completion|instruction|chat|preference",
	 "Record layout: text {text}, completion {prompt, completion}, instruction (Alpaca) "
	 "{instruction, input, output}, chat {messages}, preference {prompt, chosen, rejected} "
	 "(strings or message lists, TRL's layout).", NULL},
	{"data.train", KT_PATH, KF_EXISTS, NULL, NOB, NULL,
	 "Training split. Absent: an evaluation-only experiment (method.type none), where it is "
	 "refused unless eval.splits evaluates it or another split is carved from it.", NULL},
	{"data.validation", KT_SPLIT, KF_EXISTS, NULL, NOB, NULL,
	 "Validation split: a path, or {from: SPLIT, fraction: F, seed: N} carved from another split.", NULL},
	{"data.validation.from", KT_ENUM, 0, "train", NOB, "train|validation|test",
	 "The split to carve from: train or test, declared as a file (the carved examples leave "
	 "it).", NULL},
	{"data.validation.fraction", KT_FLOAT, KF_REQUIRED | KF_LO | KF_HI | KF_LO_OPEN | KF_HI_OPEN,
	 NULL, RANGE(0, 1), NULL,
	 "Share of the source split's examples (chosen by content hash, so adding examples does "
	 "not reshuffle).", NULL},
	{"data.validation.seed", KT_INT, KF_LO | KF_HI, NULL, RANGE(0, 9007199254740991.0), NULL,
	 "Split seed.", "the experiment seed"},
	{"data.test", KT_SPLIT, KF_EXISTS, NULL, NOB, NULL,
	 "Test split: a path, or {from: SPLIT, fraction: F, seed: N}.", NULL},
	{"data.test.from", KT_ENUM, 0, "train", NOB, "train|validation|test",
	 "The split to carve from: train or validation, declared as a file (the carved examples "
	 "leave it).", NULL},
	{"data.test.fraction", KT_FLOAT, KF_REQUIRED | KF_LO | KF_HI | KF_LO_OPEN | KF_HI_OPEN, NULL,
	 RANGE(0, 1), NULL, "Share of the source split's examples.", NULL},
	{"data.test.seed", KT_INT, KF_LO | KF_HI, NULL, RANGE(0, 9007199254740991.0), NULL,
	 "Split seed.", "the experiment seed"},
	{"data.fields", KT_MAP, 0, NULL, NOB, NULL,
	 "Field mapping: the JSON key to read for each logical field of the format. A field "
	 "that data.format does not read is refused when it is set to anything but its own "
	 "name.", NULL},
	{"data.fields.text", KT_STR, 0, "text", NOB, NULL, "Key of the text (format text).", NULL},
	{"data.fields.prompt", KT_STR, 0, "prompt", NOB, NULL,
	 "Key of the prompt (completion); with instruction, an alias of instruction.", NULL},
	{"data.fields.completion", KT_STR, 0, "completion", NOB, NULL,
	 "Key of the completion (completion).", NULL},
	{"data.fields.response", KT_STR, 0, "response", NOB, NULL,
	 "Key of the response: an alias of completion (completion) and of output "
	 "(instruction); the resolved config shows it in that field. Giving both with different "
	 "keys is an error.", NULL},
	{"data.fields.instruction", KT_STR, 0, "instruction", NOB, NULL,
	 "Key of the instruction (instruction).", NULL},
	{"data.fields.input", KT_STR, 0, "input", NOB, NULL, "Key of the optional input (instruction).", NULL},
	{"data.fields.output", KT_STR, 0, "output", NOB, NULL, "Key of the output (instruction).", NULL},
	{"data.fields.messages", KT_STR, 0, "messages", NOB, NULL, "Key of the message list (chat).", NULL},
	{"data.fields.system", KT_STR, 0, "system", NOB, NULL,
	 "Key of a per-example system prompt, when present (completion, instruction, "
	 "preference; chat takes it from a system message).", NULL},
	{"data.fields.chosen", KT_STR, 0, "chosen", NOB, NULL,
	 "Key of the preferred completion (preference).", NULL},
	{"data.fields.rejected", KT_STR, 0, "rejected", NOB, NULL,
	 "Key of the dispreferred completion (preference).", NULL},
	{"data.fields.choices", KT_STR, 0, "choices", NOB, NULL,
	 "Key of an example's answer choices for likelihood scoring (completion, instruction, "
	 "chat).", NULL},
	{"data.fields.answer", KT_STR, 0, "answer", NOB, NULL,
	 "Key of the correct choice: its index or its text (default: the example's response).",
	 NULL},
	{"data.template", KT_TEMPLATE, 0, "auto", NOB, "auto|chatml|gemma|alpaca|plain",
	 "Prompt template: auto (the model's chat template when it has one, else plain), chatml, "
	 "gemma, alpaca, plain, or a custom string with {prompt} and optionally {response} and "
	 "{system}.", NULL},
	{"data.system", KT_STR, 0, NULL, NOB, NULL,
	 "System prompt added to every example (not with data.format text, which has no "
	 "prompt: refused there, as are data.template and data.train_on_inputs).", NULL},
	{"data.max_length", KT_INT, KF_LO | KF_HI, NULL, RANGE(1, 1048576), NULL,
	 "Longest example in tokens; longer ones are truncated (counted). At most model.context.",
	 "model.context"},
	{"data.train_on_inputs", KT_BOOL, 0, "false", NOB, NULL,
	 "Compute the loss on prompt tokens too (false: response tokens only).", NULL},
	{"data.packing", KT_BOOL, 0, "false", NOB, NULL,
	 "Pack several examples into one sequence of max_length tokens.", NULL},
	{"data.limit", KT_MAP, 0, NULL, NOB, NULL,
	 "Use only the first N examples of a split (0 = all); a limit of a split that is not "
	 "declared is refused.", NULL},
	{"data.limit.train", KT_INT, KF_LO, "0", RANGE(0, 0), NULL, "Examples of train.", NULL},
	{"data.limit.validation", KT_INT, KF_LO, "0", RANGE(0, 0), NULL, "Examples of validation.", NULL},
	{"data.limit.test", KT_INT, KF_LO, "0", RANGE(0, 0), NULL, "Examples of test.", NULL},
	{"data.on_bad_example", KT_ENUM, 0, "error", NOB, "error|skip",
	 "A malformed record stops the run (error) or is skipped and counted (skip).", NULL},

	{"method", KT_MAP, 0, NULL, NOB, NULL, "The fine-tuning method.", NULL},
	{"method.type", KT_ENUM, 0, "lora", NOB, "none|full|freeze|lora|dora|ia3|prefix|adapter",
	 "none (evaluate the base model only: train keys set to anything but their defaults, "
	 "and data.packing, are refused), full (all weights), freeze (only method.trainable "
	 "modules of method.layers), lora (low-rank adapters), dora (weight-decomposed LoRA: "
	 "a trained magnitude per output row times the normalised W + BA, as PEFT's "
	 "use_dora), ia3 (learned vectors scaling the outputs of the targets, or the inputs of "
	 "the feed-forward targets, as PEFT's IA3), prefix (trained key/value vectors before "
	 "every sequence in every layer, as PEFT's prefix tuning; llama-family models), adapter "
	 "(bottleneck adapters as AdapterHub's `adapters` library builds them: "
	 "method.placement, method.positions, method.reduction_factor, method.non_linearity).",
	 NULL},
	{"method.rank", KT_INT, KF_LO | KF_HI, "8", RANGE(1, 4096), NULL, "LoRA rank r (lora and dora).", NULL},
	{"method.alpha", KT_FLOAT, KF_LO | KF_LO_OPEN | KF_HI, "16", RANGE(0, 1e6), NULL,
	 "LoRA scaling numerator: updates are scaled by alpha/r (alpha/sqrt(r) with rslora).", NULL},
	{"method.dropout", KT_FLOAT, KF_LO | KF_HI | KF_HI_OPEN, "0.0", RANGE(0, 1), NULL,
	 "Dropout on the LoRA input (lora and dora).", NULL},
	{"method.targets", KT_TARGETS, 0, "[q_proj, v_proj]", NOB, NULL,
	 "Modules that get adapters, by Hugging Face name (llama family: q_proj, k_proj, v_proj, "
	 "o_proj, gate_proj, up_proj, down_proj; GPT-2: c_attn, c_proj, c_fc), a dotted part of "
	 "their names (self_attn, mlp, 3.mlp), or all-linear. Each must name at least one "
	 "linear module of the model: `ftlab check` reads the model's header and refuses one "
	 "that does not, naming the modules the model has and the nearest (as PEFT refuses). "
	 "ia3 without targets: PEFT's default for the architecture (llama: k_proj, v_proj, down_proj; Gemma 3: q_proj, v_proj, "
	 "down_proj; GPT-2: c_attn, mlp.c_proj).",
	 NULL},
	{"method.feedforward_targets", KT_STRLIST, 0, "[]", NOB, NULL,
	 "ia3 only: the targets whose input is scaled instead of their output (PEFT's "
	 "feedforward_modules); each must be among method.targets. Not given: PEFT's "
	 "feed-forward modules for the architecture (llama and Gemma 3: down_proj; GPT-2: "
	 "mlp.c_proj) that "
	 "are targets.", NULL},
	{"method.num_virtual_tokens", KT_INT, KF_LO | KF_HI, "20", RANGE(1, 4096), NULL,
	 "prefix only: the trained key/value positions per layer (PEFT's num_virtual_tokens).",
	 NULL},
	{"method.prefix_projection", KT_BOOL, 0, "false", NOB, NULL,
	 "prefix only: reparameterise the prefix as PEFT's prefix_projection does: a trained "
	 "embedding of num_virtual_tokens rows of the model's key/value width (n_head_kv * "
	 "head_dim, PEFT's token_dim) feeds Linear(token_dim, method.encoder_hidden_size) - "
	 "tanh - Linear(encoder_hidden_size, 2 * layers * token_dim), whose output is the "
	 "key/value table; the embedding and both linears (with biases) train. The exported "
	 "adapter holds the computed table, as PEFT saves it.", NULL},
	{"method.encoder_hidden_size", KT_INT, KF_LO | KF_HI, NULL, RANGE(1, 65536), NULL,
	 "prefix with prefix_projection true only: the width of the projection's hidden layer "
	 "(PEFT's encoder_hidden_size).", "the model's token_dim (n_head_kv * head_dim), as PEFT"},
	{"method.rslora", KT_BOOL, 0, "false", NOB, NULL, "Rank-stabilised scaling alpha/sqrt(r).", NULL},
	{"method.placement", KT_ENUM, 0, "pfeiffer", NOB, "pfeiffer|houlsby",
	 "adapter only: pfeiffer (AdapterHub's SeqBnConfig: the adapter reads the residual stream "
	 "after the sublayer's residual add and adds its output to it) or houlsby "
	 "(DoubleSeqBnConfig: the adapter reads the sublayer's output before the residual add "
	 "and adds to it).", NULL},
	{"method.positions", KT_ENUM, 0, "auto", NOB, "auto|attention|mlp|both",
	 "adapter only: which sublayers of every block get an adapter (AdapterHub's mh_adapter "
	 "and output_adapter); auto: the placement's own (pfeiffer mlp, houlsby both).", NULL},
	{"method.reduction_factor", KT_FLOAT, KF_LO | KF_LO_OPEN | KF_HI, "16", RANGE(0, 65536),
	 NULL,
	 "adapter only: the bottleneck is the hidden size divided by this, rounded down (at "
	 "least 1), as AdapterHub's reduction_factor.", NULL},
	{"method.non_linearity", KT_ENUM, 0, "auto", NOB, "auto|relu|swish|gelu|gelu_new|tanh",
	 "adapter only: the bottleneck's activation (gelu is the exact erf form, gelu_new the "
	 "tanh approximation); auto: the placement's own (pfeiffer relu, houlsby swish).", NULL},
	{"method.trainable", KT_STRLIST, 0, "[]", NOB, NULL,
	 "freeze only: parameters that train, by a dotted part of their names (mlp, q_proj, "
	 "input_layernorm, embed_tokens, lm_head, norm; empty: every parameter of the chosen "
	 "layers). Each must name at least one parameter of the model (checked by `ftlab "
	 "check`).", NULL},
	{"method.layers", KT_MAP, KF_OPTMAP, NULL, NOB, NULL,
	 "freeze only: the block range that trains, {first: N, last: N}, inside the model's "
	 "blocks (checked by `ftlab check`).", NULL},
	{"method.layers.first", KT_INT, KF_LO, "0", RANGE(0, 0), NULL, "First trainable block.", NULL},
	{"method.layers.last", KT_INT, KF_LO, "-1", RANGE(-1, 0), NULL,
	 "Last trainable block (-1: the last block of the model).", NULL},

	{"train", KT_MAP, 0, NULL, NOB, NULL, "The training loop.", NULL},
	{"train.epochs", KT_INT, KF_LO | KF_HI, NULL, RANGE(1, 100000), NULL,
	 "Passes over the training split. Give epochs or steps, not both.", "1 (when steps is absent)"},
	{"train.steps", KT_INT, KF_LO | KF_HI, NULL, RANGE(1, 1e12), NULL,
	 "Optimizer steps instead of epochs.", NULL},
	{"train.batch_size", KT_INT, KF_LO | KF_HI, "8", RANGE(1, 65536), NULL, "Sequences per micro-batch.", NULL},
	{"train.grad_accum", KT_INT, KF_LO | KF_HI, "1", RANGE(1, 65536), NULL,
	 "Micro-batches per optimizer step.", NULL},
	{"train.optimizer", KT_MAP, 0, NULL, NOB, NULL, "Optimizer.", NULL},
	{"train.optimizer.type", KT_ENUM, 0, "adamw", NOB, "adamw|sgd",
	 "adamw (torch.optim.AdamW) or sgd (torch.optim.SGD: momentum, dampening, nesterov, "
	 "weight_decay).", NULL},
	{"train.optimizer.lr", KT_FLOAT, KF_LO | KF_LO_OPEN | KF_HI, "2.0e-4", RANGE(0, 10), NULL,
	 "Peak learning rate.", NULL},
	{"train.optimizer.betas", KT_FLOATLIST, KF_LO | KF_HI | KF_HI_OPEN, "[0.9, 0.999]", RANGE(0, 1),
	 NULL, "adamw only: beta1 and beta2, each in [0, 1).", NULL},
	{"train.optimizer.eps", KT_FLOAT, KF_LO | KF_LO_OPEN | KF_HI, "1.0e-8", RANGE(0, 1), NULL,
	 "adamw only: epsilon.", NULL},
	{"train.optimizer.weight_decay", KT_FLOAT, KF_LO | KF_HI, "0.0", RANGE(0, 10), NULL,
	 "Weight decay of the matrices (not of norms and biases): decoupled (p -= lr*wd*p) with "
	 "adamw, an L2 term added to the gradient (g += wd*p) with sgd, as PyTorch defines "
	 "each.", NULL},
	{"train.optimizer.momentum", KT_FLOAT, KF_LO | KF_HI | KF_HI_OPEN, "0.0", RANGE(0, 1), NULL,
	 "sgd only: momentum factor (0: plain SGD). The buffer starts as the first step's "
	 "gradient.", NULL},
	{"train.optimizer.dampening", KT_FLOAT, KF_LO | KF_HI | KF_HI_OPEN, "0.0", RANGE(0, 1), NULL,
	 "sgd only: dampening of the gradient added to the momentum buffer (buf = momentum*buf + "
	 "(1 - dampening)*g).", NULL},
	{"train.optimizer.nesterov", KT_BOOL, 0, "false", NOB, NULL,
	 "sgd only: Nesterov momentum (needs momentum > 0 and dampening 0, as in PyTorch).",
	 NULL},
	{"train.schedule", KT_MAP, 0, NULL, NOB, NULL, "Learning-rate schedule.", NULL},
	{"train.schedule.type", KT_ENUM, 0, "cosine", NOB, "constant|linear|cosine",
	 "Shape after warmup: constant, linear decay or cosine decay to min_lr_ratio * lr.", NULL},
	{"train.schedule.warmup_steps", KT_INT, KF_LO, "0", RANGE(0, 0), NULL,
	 "Steps of linear warmup from 0.", NULL},
	{"train.schedule.min_lr_ratio", KT_FLOAT, KF_LO | KF_HI, "0.0", RANGE(0, 1), NULL,
	 "Final learning rate as a fraction of lr (linear and cosine; refused with constant).",
	 NULL},
	{"train.max_grad_norm", KT_FLOAT, KF_LO, "1.0", RANGE(0, 0), NULL,
	 "Clip the global gradient norm (0: no clipping).", NULL},
	{"train.precision", KT_ENUM, 0, "fp32", NOB, "fp32|bf16",
	 "fp32, or bf16 (matmuls and the training attention's products in bf16, fp32 master weights).", NULL},
	{"train.grad_checkpointing", KT_BOOL, 0, "false", NOB, NULL,
	 "Recompute activations in backward to save memory.", NULL},
	{"train.eval_every", KT_INT, KF_LO, "0", RANGE(0, 0), NULL,
	 "Evaluate the validation split every N steps during training, recorded as "
	 "validation.loss (and the early-stopping metric) at that step; needs data.validation "
	 "(0: no evaluation during training; the final evaluation is eval's).", NULL},
	{"train.checkpoint_every", KT_INT, KF_LO, "0", RANGE(0, 0), NULL,
	 "Write a resumable checkpoint every N steps (0: at the end only).", NULL},
	{"train.early_stopping", KT_MAP, KF_OPTMAP, NULL, NOB, NULL,
	 "Stop when a validation metric stops improving, checked at each train.eval_every "
	 "evaluation (so it needs train.eval_every > 0 and data.validation); absent: no early "
	 "stopping.", NULL},
	{"train.early_stopping.metric", KT_METRIC, 0, "validation.loss", NOB, NULL,
	 "The metric watched: validation.NAME with NAME any of eval.metrics' choices (the "
	 "generation metrics generate on the validation split at each evaluation, with "
	 "eval.generate's settings; they need references, so not with data.format text). Lower "
	 "is better for loss and perplexity, higher otherwise.", NULL},
	{"train.early_stopping.patience", KT_INT, KF_LO | KF_HI, "3", RANGE(1, 1e9), NULL,
	 "Evaluations without improvement before stopping.", NULL},
	{"train.early_stopping.min_delta", KT_FLOAT, KF_LO, "0.0", RANGE(0, 0), NULL,
	 "Smallest change that counts as an improvement.", NULL},
	{"train.nonfinite", KT_ENUM, 0, "abort", NOB, "abort|skip_step",
	 "On a NaN/Inf loss or gradient: abort the run, or skip the step (at most 3 in a row).", NULL},
	{"train.objective", KT_ENUM, 0, "sft", NOB, "sft|dpo|orpo|simpo",
	 "sft (cross-entropy on the responses), or a preference loss on data.format preference: "
	 "dpo (against the reference model), orpo (SFT plus an odds-ratio term), simpo "
	 "(length-normalised, reference-free).", NULL},
	{"train.preference", KT_MAP, 0, NULL, NOB, NULL,
	 "Preference loss settings (train.objective dpo, orpo or simpo only).", NULL},
	{"train.preference.beta", KT_FLOAT, KF_LO | KF_LO_OPEN | KF_HI, "0.1", RANGE(0, 1000), NULL,
	 "dpo, simpo: inverse temperature of the implicit reward (DPO: how far the policy may "
	 "move from the reference; IPO: the regulariser tau).", NULL},
	{"train.preference.loss_type", KT_ENUM, 0, "sigmoid", NOB, "sigmoid|ipo|hinge",
	 "dpo only: sigmoid (DPO), ipo (IPO on length-normalised log-ratios, as TRL), hinge "
	 "(SLiC).", NULL},
	{"train.preference.label_smoothing", KT_FLOAT, KF_LO | KF_HI | KF_HI_OPEN, "0.0",
	 RANGE(0, 0.5), NULL,
	 "dpo (loss_type sigmoid), simpo: the assumed share of flipped labels (conservative "
	 "DPO).", NULL},
	{"train.preference.lambda", KT_FLOAT, KF_LO | KF_HI, "0.1", RANGE(0, 1000), NULL,
	 "orpo only: weight of the odds-ratio term added to the SFT loss (TRL's beta).", NULL},
	{"train.preference.gamma", KT_FLOAT, KF_LO | KF_HI, "0.5", RANGE(0, 1000), NULL,
	 "simpo only: target reward margin.", NULL},

	{"eval", KT_MAP, 0, NULL, NOB, NULL,
	 "Evaluation of the base and fine-tuned models after training. With no split to "
	 "evaluate, setting eval.metrics, eval.bootstrap or eval.compare_base is refused.", NULL},
	{"eval.splits", KT_STRLIST, 0, NULL, NOB, "train|validation|test",
	 "Splits to evaluate; each must be declared.", "the declared ones of [validation, test]"},
	{"eval.metrics", KT_STRLIST, 0, "[loss]", NOB, METRICS,
	 "Metrics computed on each split: loss, perplexity, token_accuracy (teacher-forced), "
	 "exact_match, f1, bleu, rouge_l, chrf (on generated text), choice_accuracy, "
	 "choice_accuracy_norm (likelihood of each choice), preference_accuracy, "
	 "preference_margin (likelihood of chosen vs rejected).", NULL},
	{"eval.choices", KT_STRLIST, 0, NULL, NOB, NULL,
	 "The label set of completion, instruction or chat data: each example's response must be "
	 "one of them, and the choice metrics score every label by likelihood (examples with "
	 "their own choices keep them).", NULL},
	{"eval.generate", KT_MAP, 0, NULL, NOB, NULL,
	 "Decoding for generation metrics; set without one in eval.metrics (or as the "
	 "early-stopping metric) it is refused.", NULL},
	{"eval.generate.max_new_tokens", KT_INT, KF_LO | KF_HI, "64", RANGE(1, 65536), NULL,
	 "Tokens generated per example at most.", NULL},
	{"eval.generate.temperature", KT_FLOAT, KF_LO | KF_HI, "0.0", RANGE(0, 100), NULL,
	 "Sampling temperature; 0 is greedy.", NULL},
	{"eval.generate.top_k", KT_INT, KF_LO, "0", RANGE(0, 0), NULL, "Top-k sampling (0: off; refused with temperature 0, which is greedy).", NULL},
	{"eval.generate.top_p", KT_FLOAT, KF_LO | KF_LO_OPEN | KF_HI, "1.0", RANGE(0, 1), NULL,
	 "Nucleus sampling (1: off; refused with temperature 0, which is greedy).", NULL},
	{"eval.generate.stop", KT_STRLIST, 0, "[]", NOB, NULL, "Strings that end generation.", NULL},
	{"eval.compare_base", KT_BOOL, 0, "true", NOB, NULL,
	 "Also evaluate the untouched base model on the same splits, once per base model: later "
	 "runs of the workspace with the same base, examples and evaluation settings reuse that "
	 "evaluation (docs/store.md). With method.type none the base model is what is "
	 "evaluated: setting it is refused there.", NULL},
	{"eval.bootstrap", KT_INT, KF_LO | KF_HI, "1000", RANGE(0, 1000000), NULL,
	 "Bootstrap resamples for confidence intervals and paired differences (0: none).", NULL},
	{"eval.samples", KT_INT, KF_LO, "20", RANGE(0, 0), NULL,
	 "Predictions kept per split and model in the store for reports (generation metrics "
	 "only: without them there are no predictions, and a value is refused).", NULL},

	{"backend", KT_MAP, 0, NULL, NOB, NULL, "What executes a run.", NULL},
	{"backend.type", KT_ENUM, 0, "auto", NOB, "auto|cpu|cuda|exec",
	 "auto (cuda when available, else cpu), cpu, cuda, or exec (an external command).", NULL},
	{"backend.threads", KT_INT, KF_LO | KF_HI, "0", RANGE(0, 4096), NULL, "CPU threads (0: all cores).", NULL},
	{"backend.device", KT_INT, KF_LO | KF_HI, "0", RANGE(0, 255), NULL,
	 "CUDA device index among the visible ones (cuda and auto; refused with cpu and exec). "
	 "A device that does not exist fails the run naming it.", NULL},
	{"backend.command", KT_STRLIST, 0, NULL, NOB, NULL,
	 "exec only (required there): the trainer's argv, no shell; {dotted.path} placeholders are "
	 "replaced by resolved values.", NULL},
	{"backend.timeout", KT_DURATION, 0, NULL, NOB, NULL,
	 "exec only: kill the trainer after this long (90, 90s, 15m, 2h, 1d).", "none"},
	{"backend.metrics_file", KT_STR, 0, NULL, NOB, NULL,
	 "exec only: read JSON Lines from this file instead of stdout (relative to the run directory).",
	 NULL},
	{"backend.workdir", KT_PATH, 0, NULL, NOB, NULL,
	 "exec only: working directory of the trainer.", "the experiment file's directory"},

	{"sweep", KT_MAP, KF_OPTMAP | KF_NOCANON, NULL, NOB, NULL,
	 "Hyperparameter sweep (W&B syntax); absent: one run.", NULL},
	{"sweep.method", KT_ENUM, 0, "grid", NOB, "grid|random|bayes|tpe",
	 "grid: every combination, in declared order; random: `samples` draws; bayes: `samples` "
	 "runs, each chosen by a Gaussian process and expected improvement over the objective "
	 "from the results so far (W&B's bayes; needs sweep.objective); tpe: the same with "
	 "Optuna's tree-structured Parzen estimator.", NULL},
	{"sweep.samples", KT_INT, KF_LO | KF_HI, NULL, RANGE(1, 1e9), NULL,
	 "random, bayes and tpe (required there): number of runs.", NULL},
	{"sweep.run_cap", KT_INT, KF_LO | KF_HI, NULL, RANGE(1, 1e9), NULL,
	 "W&B's name for samples; give one of the two.", NULL},
	{"sweep.seed", KT_INT, KF_LO | KF_HI, NULL, RANGE(0, 9007199254740991.0), NULL,
	 "Seed of the random draws and of the bayes or tpe search (refused for grid, which draws "
	 "nothing).", "the experiment seed"},
	{"sweep.parameters", KT_PARAMS, 0, NULL, NOB, NULL,
	 "Dotted path -> a list of values, or {values: [...]}, {value: V}, {distribution: D, ...} "
	 "with D one of categorical, int_uniform, uniform, log_uniform_values, q_uniform, "
	 "q_log_uniform_values, normal.", NULL},
	{"sweep.zip", KT_ZIP, 0, NULL, NOB, NULL,
	 "Groups of parameters that vary together: a list of maps path -> list, lists of equal "
	 "length.", NULL},
	{"sweep.objective", KT_MAP, KF_OPTMAP, NULL, NOB, NULL,
	 "The metric the sweep optimises: bayes and tpe search for its best value, reports mark "
	 "the best run by it. Required by bayes and tpe.", NULL},
	{"sweep.objective.metric", KT_METRIC, KF_REQUIRED, NULL, NOB, NULL,
	 "split.metric: a final result (test.exact_match), else the best value the run logged "
	 "(validation.loss).", NULL},
	{"sweep.objective.goal", KT_ENUM, 0, "maximize", NOB, "maximize|minimize", "Direction.", NULL},
	{"sweep.early_terminate", KT_MAP, KF_OPTMAP, NULL, NOB, NULL,
	 "Stop runs that fall behind, by W&B's hyperband rule (docs/sweeps.md). Stopped runs end "
	 "with status stopped and skip the final evaluation.", NULL},
	{"sweep.early_terminate.type", KT_ENUM, 0, "hyperband", NOB, "hyperband",
	 "The policy: hyperband.", NULL},
	{"sweep.early_terminate.metric", KT_METRIC, 0, NULL, NOB, NULL,
	 "The metric compared; its n-th logged value is iteration n. It must be logged during "
	 "training: validation.loss (with train.eval_every) or train.loss for the native engine, a "
	 "train or validation metric an exec trainer logs.", "the objective's metric"},
	{"sweep.early_terminate.goal", KT_ENUM, 0, NULL, NOB, "maximize|minimize",
	 "Direction of the metric.", "the objective's goal for the objective's metric, else minimize"},
	{"sweep.early_terminate.min_iter", KT_INT, KF_LO | KF_HI, NULL, RANGE(1, 1e12), NULL,
	 "Bands at int(min_iter * eta^k) iterations, k = 0, 1, ... Give min_iter, or max_iter "
	 "and s.", NULL},
	{"sweep.early_terminate.max_iter", KT_INT, KF_LO | KF_HI, NULL, RANGE(1, 1e12), NULL,
	 "With s: bands at int(max_iter / eta^k) iterations, k = 1..s, those of at least 1.", NULL},
	{"sweep.early_terminate.s", KT_INT, KF_LO | KF_HI, NULL, RANGE(1, 100), NULL,
	 "With max_iter: how many bands.", NULL},
	{"sweep.early_terminate.eta", KT_FLOAT, KF_LO | KF_LO_OPEN | KF_HI, "3", RANGE(1, 1000), NULL,
	 "A run continues past a band while it is within the best 1/eta of the runs that reached "
	 "that band.", NULL},
	{"sweep.early_terminate.strict", KT_BOOL, 0, "true", NOB, NULL,
	 "true: compare the run's value at the band; false: its best value so far (stops fewer "
	 "runs).", NULL},

	{"launcher", KT_MAP, KF_OPTMAP | KF_NOCANON | KF_NOSWEEP, NULL, NOB, NULL,
	 "Where the runs execute: this machine (local), or a Slurm cluster, one job array per "
	 "`ftlab run` with one array task per run (docs/slurm.md). Not part of a run's identity.",
	 NULL},
	{"launcher.type", KT_ENUM, KF_NOSWEEP, "local", NOB, "local|slurm",
	 "local (runs in the `ftlab run` process and its workers) or slurm (`--launcher slurm` "
	 "on the command line sets it too).", NULL},
	{"launcher.partition", KT_STR, KF_NOSWEEP, NULL, NOB, NULL,
	 "slurm only: the partition (sbatch --partition).", "the cluster's default"},
	{"launcher.account", KT_STR, KF_NOSWEEP, NULL, NOB, NULL,
	 "slurm only: the account charged (sbatch --account).", "the user's default"},
	{"launcher.qos", KT_STR, KF_NOSWEEP, NULL, NOB, NULL,
	 "slurm only: the quality of service (sbatch --qos).", "the default"},
	{"launcher.time", KT_STR, KF_NOSWEEP, NULL, NOB, NULL,
	 "slurm only: time limit of each task, in Slurm's form ([D-]HH:MM:SS, MM:SS, or MM "
	 "minutes) or as 90m, 4h, 1d. A native run checkpoints before it and is requeued.",
	 "the partition's"},
	{"launcher.cpus_per_task", KT_INT, KF_NOSWEEP | KF_LO | KF_HI, NULL, RANGE(1, 4096), NULL,
	 "slurm only: CPUs per task (sbatch --cpus-per-task); backend.threads 0 uses them all.",
	 "the partition's"},
	{"launcher.mem", KT_STR, KF_NOSWEEP, NULL, NOB, NULL,
	 "slurm only: memory per task, Slurm's --mem (digits with K, M, G or T; no suffix: MB).",
	 "the partition's"},
	{"launcher.gpus_per_task", KT_INT, KF_NOSWEEP | KF_LO | KF_HI, "0", RANGE(0, 64), NULL,
	 "slurm only: GPUs per task (sbatch --gpus-per-task).", NULL},
	{"launcher.array_parallelism", KT_INT, KF_NOSWEEP | KF_LO | KF_HI, "0", RANGE(0, 1000000),
	 NULL, "slurm only: at most this many tasks of the array at once (0: no limit); a bayes "
	 "sweep keeps this many points out at once (0: 4).", NULL},
	{"launcher.sbatch_args", KT_STRLIST, KF_NOSWEEP, "[]", NOB, NULL,
	 "slurm only: more sbatch options, e.g. [--constraint=a100]; they come after ftlab's own "
	 "and win.", NULL},
	{"launcher.setup", KT_STRLIST, KF_NOSWEEP, "[]", NOB, NULL,
	 "slurm only: shell lines run on the node before ftlab starts, e.g. [module load "
	 "cuda/12.4].", NULL},

	{"gates", KT_GATES, KF_NOCANON, NULL, NOB, NULL,
	 "CI gates checked by `ftlab ci`: a list of {metric, min|max} or {metric, vs: base|baseline, "
	 "min_delta|max_regression}.", NULL},
	{"gates[].metric", KT_METRIC, KF_REQUIRED, NULL, NOB, NULL, "split.metric of the fine-tuned model.", NULL},
	{"gates[].vs", KT_ENUM, 0, NULL, NOB, "base|baseline",
	 "Compare against the base model or the baseline given to `ftlab ci --baseline`.", "absolute"},
	{"gates[].min", KT_FLOAT, 0, NULL, NOB, NULL, "Absolute gate: the metric must be at least this.", NULL},
	{"gates[].max", KT_FLOAT, 0, NULL, NOB, NULL, "Absolute gate: the metric must be at most this.", NULL},
	{"gates[].min_delta", KT_FLOAT, 0, NULL, NOB, NULL,
	 "With vs: the metric must beat the reference by at least this.", NULL},
	{"gates[].max_regression", KT_FLOAT, KF_LO, NULL, RANGE(0, 0), NULL,
	 "With vs: the metric may be worse than the reference by at most this.", NULL},
};
const size_t schema_n_keys = FT_ARRAY_LEN(schema_keys);

const struct method_key schema_method_keys[] = {
	{"method.rank", "lora|dora"},
	{"method.alpha", "lora|dora"},
	{"method.dropout", "lora|dora"},
	{"method.rslora", "lora|dora"},
	{"method.targets", "lora|dora|ia3"},
	{"method.feedforward_targets", "ia3"},
	{"method.num_virtual_tokens", "prefix"},
	{"method.prefix_projection", "prefix"},
	{"method.encoder_hidden_size", "prefix"},
	{"method.trainable", "freeze"},
	{"method.layers", "freeze"},
	{"method.placement", "adapter"},
	{"method.positions", "adapter"},
	{"method.reduction_factor", "adapter"},
	{"method.non_linearity", "adapter"},
};
const size_t schema_n_method_keys = FT_ARRAY_LEN(schema_method_keys);

const struct key_desc *schema_find(const char *path)
{
	for (size_t i = 0; i < schema_n_keys; i++)
		if (strcmp(schema_keys[i].path, path) == 0)
			return &schema_keys[i];
	return NULL;
}

const char *schema_type_name(const struct key_desc *k)
{
	switch (k->type) {
	case KT_MAP: return "map";
	case KT_INT: return "integer";
	case KT_FLOAT: return "number";
	case KT_BOOL: return "boolean";
	case KT_STR: return "string";
	case KT_NAME: return "name";
	case KT_ENUM: return "one of";
	case KT_PATH: return "path";
	case KT_DURATION: return "duration";
	case KT_STRLIST: return "list of strings";
	case KT_FLOATLIST: return "list of 2 numbers";
	case KT_SPLIT: return "path or map";
	case KT_TARGETS: return "list of strings or all-linear";
	case KT_TEMPLATE: return "template";
	case KT_METRIC: return "split.metric";
	case KT_GATES: return "list of maps";
	case KT_PARAMS: return "map";
	case KT_ZIP: return "list of maps";
	}
	return "value";
}

bool schema_choice_ok(const char *choices, const char *choice)
{
	size_t n = strlen(choice);
	const char *p = choices;
	while (p && *p) {
		const char *bar = strchr(p, '|');
		size_t len = bar ? (size_t)(bar - p) : strlen(p);
		if (len == n && memcmp(p, choice, n) == 0)
			return true;
		p = bar ? bar + 1 : NULL;
	}
	return false;
}

bool schema_choice_nearest(const char *choices, const char *word, char *buf, size_t n)
{
	char words[512];
	const char *list[32];
	size_t k = 0;
	snprintf(words, sizeof words, "%s", choices);
	for (char *p = words; p && *p && k < FT_ARRAY_LEN(list);) {
		list[k++] = p;
		char *bar = strchr(p, '|');
		if (bar)
			*bar = '\0';
		p = bar ? bar + 1 : NULL;
	}
	const char *near = nearest_word(word, list, k);
	if (!near)
		return false;
	snprintf(buf, n, "%s", near);
	return true;
}

/* The choices of every key, split once into NUL-terminated names. */
#define MAX_CHOICES 32
struct choice_names {
	char *buf;
	const char *names[MAX_CHOICES];
	int n;
};

static struct choice_names *choice_table;
static pthread_once_t choice_once = PTHREAD_ONCE_INIT;

static void choice_init(void)
{
	choice_table = calloc(schema_n_keys, sizeof *choice_table);
	if (!choice_table)
		return;
	for (size_t i = 0; i < schema_n_keys; i++) {
		struct choice_names *c = &choice_table[i];
		if (!schema_keys[i].choices || !(c->buf = ft_strdup(schema_keys[i].choices)))
			continue;
		for (char *p = c->buf; p && *p && c->n < MAX_CHOICES;) {
			c->names[c->n++] = p;
			char *bar = strchr(p, '|');
			if (bar)
				*bar = '\0';
			p = bar ? bar + 1 : NULL;
		}
	}
}

static const struct choice_names *choices_of(const char *path)
{
	pthread_once(&choice_once, choice_init);
	const struct key_desc *k = schema_find(path);
	return k && choice_table ? &choice_table[k - schema_keys] : NULL;
}

const char *schema_enum_name(const char *path, int value)
{
	const struct choice_names *c = choices_of(path);
	return c && value >= 0 && value < c->n ? c->names[value] : "?";
}

int schema_enum_index(const char *path, const char *name)
{
	const struct choice_names *c = choices_of(path);
	for (int i = 0; c && name && i < c->n; i++)
		if (strcmp(c->names[i], name) == 0)
			return i;
	return -1;
}

int schema_enum_count(const char *path)
{
	const struct choice_names *c = choices_of(path);
	return c ? c->n : 0;
}
