#!/usr/bin/env python3
"""Reference fixtures for the preference losses (ftlab issue 18), made with TRL.

Run by hand on a machine with PyPI, after the C test wrote its side:
    pip install torch==2.15.0 transformers==4.57.6 peft==0.21.2 trl==1.16.0 \
        accelerate==1.16.0 datasets==5.0.1 gguf==0.19.0
    FTLAB_WRITE_FIXTURE=1 FTLAB_ROOT=$PWD build/tests/test_pref_reference
    python3 tests/reference/make_pref_fixture.py [tiny] [smollm2]
Made with torch 2.15.0 (CPU), transformers 4.57.6, peft 0.21.2, trl 1.16.0 (transformers 5
changes the trainers' internals this script calls).

For each fixture directory (tests/reference/fixtures/pref_tiny, pref_smollm2) it reads
pairs.json (token ids of two preference pairs as TRL's collator takes them: prompt_ids,
chosen_ids, rejected_ids), adapter_init/ (our LoRA weights in PEFT layout, lora_B made
non-zero so the policy differs from its reference) and the base model (the tiny llama of
train_tiny/model; SmolLM2 as our dequantised F32 GGUF /tmp/ftlab-smollm2-f32.gguf, which
transformers reads with gguf_file=). For every case it builds TRL's own trainer on the
PEFT model and evaluates one batch of those pairs:
  dpo_sigmoid, dpo_ipo, dpo_hinge: DPOTrainer (loss_type sigmoid | ipo | hinge); the
      reference is the same model with its adapter disabled (TRL's path for a new adapter:
      the trainers get the base model and a LoraConfig, then our initial weights);
  dpo_cdpo: conservative DPO, -(1-e) log s(b h) - e log s(-b h) (Mitchell 2023; TRL
      before 1.0 smoothed its sigmoid loss this way, 1.x does not): TRL's DPOTrainer
      logps and statistics, the loss by the formula in torch;
  orpo: ORPOTrainer (its beta is ORPO's lambda; NLL over prompt and completion);
  simpo: CPOTrainer with loss_type simpo, cpo_alpha 0 (SimPO).
It writes reference.json: the loss, TRL's logged statistics, the LoRA gradients (all
values for the tiny model; norm and the first 16 values for SmolLM2), and for the tiny
model the losses of three torch AdamW steps (lr 1e-2, clip 1.0, no weight decay) on the
same batch. The C test compares ours.json-equivalent numbers with it.
"""
import importlib.machinery
import json
import os
import sys
import tempfile
import types
import warnings

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
warnings.filterwarnings("ignore")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "fixtures")
ROOT = os.path.dirname(os.path.dirname(HERE))

CASES = {
    "dpo_sigmoid": {"objective": "dpo", "loss_type": "sigmoid", "beta": 0.5},
    "dpo_cdpo": {"objective": "dpo", "loss_type": "sigmoid", "beta": 0.5, "label_smoothing": 0.2},
    "dpo_ipo": {"objective": "dpo", "loss_type": "ipo", "beta": 0.5},
    "dpo_hinge": {"objective": "dpo", "loss_type": "hinge", "beta": 0.05},
    "orpo": {"objective": "orpo", "lambda": 0.3},
    "simpo": {"objective": "simpo", "beta": 2.0, "gamma": 0.5},
}
STEPS = 3


def dummy_tokenizer(vocab_size):
    """A tokenizer object for the trainers' constructors (our pairs are already ids)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    vocab = {f"t{i}": i for i in range(vocab_size)}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="t0"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="t1", pad_token="t0",
                                   bos_token="t2")


def load_base(which):
    from transformers import AutoModelForCausalLM
    if which == "tiny":
        return AutoModelForCausalLM.from_pretrained(
            os.path.join(FIX, "train_tiny", "model"), torch_dtype=torch.float32,
            attn_implementation="eager")
    # gguf-py needs sentencepiece only for vocab helpers: stubbed
    sp = types.ModuleType("sentencepiece")
    sp.__spec__ = importlib.machinery.ModuleSpec("sentencepiece", None)
    sp.SentencePieceProcessor = object
    sys.modules.setdefault("sentencepiece", sp)
    base = AutoModelForCausalLM.from_pretrained("/tmp", gguf_file="ftlab-smollm2-f32.gguf",
                                                torch_dtype=torch.float32,
                                                attn_implementation="eager")
    # the GGUF has no output.weight (tied, llama.cpp's convention): tie by hand
    base.config.tie_word_embeddings = True
    base.lm_head.weight = base.model.embed_tokens.weight
    return base


def lora_config(d):
    from peft import LoraConfig
    c = json.load(open(os.path.join(d, "adapter_init", "adapter_config.json")))
    return LoraConfig(r=c["r"], lora_alpha=c["lora_alpha"], lora_dropout=0.0,
                      target_modules=c["target_modules"], bias="none", task_type="CAUSAL_LM")


def load_adapter_weights(model, d):
    """Our initial LoRA weights (lora_B non-zero) into the trainer's fresh adapter: the
    trainers then treat the model as a new adapter whose reference is the base model with
    the adapter disabled, which is ftlab's reference."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file
    sd = load_file(os.path.join(d, "adapter_init", "adapter_model.safetensors"))
    res = set_peft_model_state_dict(model, sd)
    assert not [k for k in res.unexpected_keys if "lora" in k], res.unexpected_keys


def lora_params(model):
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def grads_of(model, full):
    out = {}
    for n, p in lora_params(model):
        key = n.replace("base_model.model.", "", 1).replace(".default", "")
        g = p.grad.detach().flatten()
        vals = g.tolist() if full else g[:16].tolist()
        out[key] = {"norm": g.norm().item(), "values": vals}
    return out


def trainer_args(cls, out, **kw):
    return cls(output_dir=out, report_to=[], per_device_train_batch_size=2, use_cpu=True,
               bf16=False, fp16=False, remove_unused_columns=False, **kw)


def dummy_dataset():
    from datasets import Dataset
    return Dataset.from_list([{"prompt": "t3 t4", "chosen": "t5", "rejected": "t6"},
                              {"prompt": "t7", "chosen": "t8 t9", "rejected": "t10"}])


class Case:
    """One case: its trainer and a closure that gives (loss, statistics) of the batch."""

    def __init__(self, which, d, name, spec, pairs, vocab, tmp):
        from trl import DPOConfig, DPOTrainer
        from trl.experimental.cpo import CPOConfig, CPOTrainer
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer
        base = load_base(which)
        peft_config = lora_config(d)
        tok = dummy_tokenizer(vocab)
        obj = spec["objective"]
        if obj == "dpo":
            args = trainer_args(DPOConfig, tmp, beta=spec["beta"], loss_type=[spec["loss_type"]],
                                max_length=None)
            self.trainer = DPOTrainer(model=base, args=args, train_dataset=dummy_dataset(),
                                      processing_class=tok, peft_config=peft_config)
            self.batch = self.trainer.data_collator(pairs)
            self.ls = spec.get("label_smoothing", 0.0)
            self.beta = spec["beta"]
        else:
            if obj == "orpo":
                args = trainer_args(ORPOConfig, tmp, beta=spec["lambda"], max_length=None)
                self.trainer = ORPOTrainer(model=base, args=args, train_dataset=dummy_dataset(),
                                           processing_class=tok, peft_config=peft_config)
            else:
                args = trainer_args(CPOConfig, tmp, beta=spec["beta"], loss_type="simpo",
                                    cpo_alpha=0.0, simpo_gamma=spec["gamma"], max_length=None)
                self.trainer = CPOTrainer(model=base, args=args, train_dataset=dummy_dataset(),
                                          processing_class=tok, peft_config=peft_config)
            self.batch = self.pair_batch(pairs)
        self.model = self.trainer.model
        assert not any(".ref." in n for n, _ in self.model.named_parameters())
        load_adapter_weights(self.model, d)
        self.model.train()  # no dropout in this adapter; train mode as the trainers run
        self.obj = obj

    @staticmethod
    def pair_batch(pairs):
        """ORPO's and CPO's batch layout: chosen_/rejected_ input_ids, attention_mask and
        labels (-100 on the prompt and the padding), right-padded to one length."""
        L = max(len(p["prompt_ids"]) + max(len(p["chosen_ids"]), len(p["rejected_ids"]))
                for p in pairs)
        b = {}
        for side in ("chosen", "rejected"):
            ids, att, lab = [], [], []
            for p in pairs:
                seq = p["prompt_ids"] + p[side + "_ids"]
                pad = L - len(seq)
                ids.append(seq + [0] * pad)
                att.append([1] * len(seq) + [0] * pad)
                lab.append([-100] * len(p["prompt_ids"]) + p[side + "_ids"] + [-100] * pad)
            b[side + "_input_ids"] = torch.tensor(ids)
            b[side + "_attention_mask"] = torch.tensor(att)
            b[side + "_labels"] = torch.tensor(lab)
        return b

    def loss_and_stats(self):
        tr = self.trainer
        if self.obj == "dpo":
            tr._metrics["train"].clear()
            loss = tr.compute_loss(self.model, dict(self.batch))
            stats = {k: v[-1] for k, v in tr._metrics["train"].items()
                     if k.startswith(("rewards/", "logps/"))}
            if self.ls > 0:
                # conservative DPO from TRL's logged rewards: beta h = margins per example;
                # recompute per example from the per-sequence log-ratios
                loss = self.cdpo_loss()
            return loss, stats
        loss, metrics = tr.get_batch_loss_metrics(self.model, self.batch, train_eval="train")
        keep = ("rewards/", "logps/")
        if self.obj == "orpo":  # CPO's nll_loss is its cpo_alpha term, 0 for SimPO
            keep += ("nll_loss", "log_odds_ratio", "log_odds_chosen")
        return loss, {k: v for k, v in metrics.items() if k.startswith(keep)}

    def cdpo_loss(self):
        """-(1-e) log s(b h) - e log s(-b h), h from the same forward TRL makes."""
        b = self.batch
        ids, mask = b["input_ids"], b["completion_mask"]

        def seq_logps(model):
            logits = model(input_ids=ids, attention_mask=b["attention_mask"]).logits[:, :-1]
            lp = torch.log_softmax(logits.float(), -1).gather(-1, ids[:, 1:, None])[..., 0]
            return (lp * mask[:, 1:]).sum(-1)
        pol = seq_logps(self.model)
        with torch.no_grad(), self.model.disable_adapter():
            ref = seq_logps(self.model)
        n = ids.shape[0] // 2
        h = (pol[:n] - ref[:n]) - (pol[n:] - ref[n:])
        z = self.beta * h
        return (-(1 - self.ls) * F.logsigmoid(z) - self.ls * F.logsigmoid(-z)).mean()


def run(which):
    d = os.path.join(FIX, "pref_" + which)
    pairs = json.load(open(os.path.join(d, "pairs.json")))["pairs"]
    full = which == "tiny"
    vocab = 37 if which == "tiny" else 49152
    ref = {}
    for name, spec in CASES.items():
        with tempfile.TemporaryDirectory() as tmp:
            torch.manual_seed(0)
            c = Case(which, d, name, spec, pairs, vocab, tmp)
            params = [p for _, p in lora_params(c.model)]
            for p in params:
                p.grad = None
            loss, stats = c.loss_and_stats()
            loss.backward()
            out = {"loss": loss.item(), "metrics": {k: float(v) for k, v in stats.items()},
                   "grads": grads_of(c.model, full)}
            if full:
                opt = torch.optim.AdamW(params, lr=1e-2, betas=(0.9, 0.999), eps=1e-8,
                                        weight_decay=0.0, foreach=False)
                trace = []
                for _ in range(STEPS):
                    opt.zero_grad()
                    loss, _ = c.loss_and_stats()
                    trace.append(loss.item())
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(params, 1.0)
                    opt.step()
                out["trace"] = trace
            ref[name] = out
            print(f"{which} {name}: loss {out['loss']:.8f}", file=sys.stderr)
    import peft
    import transformers
    import trl
    doc = {"made_by": "tests/reference/make_pref_fixture.py %s (torch %s, transformers %s, "
                      "peft %s, trl %s)" % (which, torch.__version__, transformers.__version__,
                                            peft.__version__, trl.__version__),
           "cases": ref}
    with open(os.path.join(d, "reference.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    ours_p = os.path.join(d, "ours.json")
    if os.path.exists(ours_p):
        ours = json.load(open(ours_p))
        for name in ref:
            a, b = ours[name]["loss"], ref[name]["loss"]
            print(f"{which} {name}: ours {a:.8f} TRL {b:.8f} (rel {abs(a - b) / max(abs(b), 1e-30):.2g})")


if __name__ == "__main__":
    for w in sys.argv[1:] or ["tiny", "smollm2"]:
        if w not in ("tiny", "smollm2"):
            sys.exit("unknown fixture: " + w)
        run(w)
