#!/usr/bin/env python3
"""Reference fixture for likelihood scoring (choice_accuracy, choice_accuracy_norm), made
with lm-evaluation-harness.

Run by hand on a machine with PyPI, after the C test wrote the models:
    pip install lm-eval==0.4.13 torch==2.15.0 transformers==4.57.6 gguf==0.19.0
    FTLAB_WRITE_FIXTURE=1 FTLAB_ROOT=$PWD build/tests/test_lmeval
    python3 tests/reference/make_lmeval_fixture.py
Made with lm-eval 0.4.13, torch 2.15.0 (CPU), transformers 4.57.6.

The task is tests/reference/fixtures/lmeval/ftlab_mc.yaml: twelve questions of
mc.jsonl, the context "{{prompt}}", each choice after the target delimiter " ", metrics
acc and acc_norm. Two models, each as a Hugging Face model instance given to lm-eval's
HFLM (batch size 1, no BOS, float32):
  tiny     the tiny llama with its byte-level tokenizer that tests/unit/tiny_model.c
           writes (seed 1), from /tmp/ftlab-lmeval-tiny;
  smollm2  SmolLM2-135M-Instruct as our dequantised F32 GGUF /tmp/ftlab-smollm2-f32.gguf
           (transformers' gguf_file=, embeddings tied by hand as in make_train_fixture.py)
           with tests/reference/smollm2_tokenizer.json.
It writes fixtures/lmeval/reference.json: per model, acc and acc_norm and, per document,
the log-likelihood lm-eval gave each choice.
"""
import importlib.machinery
import json
import os
import sys
import types
import warnings

warnings.filterwarnings("ignore")

import torch  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
D = os.path.join(HERE, "fixtures", "lmeval")


def load(which):
    from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast
    if which == "tiny":
        m = AutoModelForCausalLM.from_pretrained("/tmp/ftlab-lmeval-tiny", dtype=torch.float32,
                                                 attn_implementation="eager")
        t = AutoTokenizer.from_pretrained("/tmp/ftlab-lmeval-tiny")
        return m, t
    sp = types.ModuleType("sentencepiece")
    sp.__spec__ = importlib.machinery.ModuleSpec("sentencepiece", None)
    sp.SentencePieceProcessor = object
    sys.modules.setdefault("sentencepiece", sp)
    m = AutoModelForCausalLM.from_pretrained("/tmp", gguf_file="ftlab-smollm2-f32.gguf",
                                             dtype=torch.float32, attn_implementation="eager")
    m.config.tie_word_embeddings = True
    m.lm_head.weight = m.model.embed_tokens.weight
    t = PreTrainedTokenizerFast(tokenizer_file=os.path.join(HERE, "smollm2_tokenizer.json"),
                                eos_token="<|im_end|>", pad_token="<|im_end|>")
    return m, t


def run(which):
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    m, t = load(which)
    m.eval()
    lm = HFLM(pretrained=m, tokenizer=t, batch_size=1, add_bos_token=False)
    cwd = os.getcwd()
    os.chdir(D)  # the task's data_files are relative
    try:
        res = lm_eval.simple_evaluate(model=lm, tasks=["ftlab_mc"],
                                      task_manager=TaskManager(include_path=D),
                                      log_samples=True, num_fewshot=0, bootstrap_iters=0)
    finally:
        os.chdir(cwd)
    r = res["results"]["ftlab_mc"]
    docs = []
    for s in sorted(res["samples"]["ftlab_mc"], key=lambda s: s["doc_id"]):
        docs.append({"doc_id": s["doc_id"], "lls": [float(x[0][0]) for x in s["resps"]],
                     "target": s["target"]})
    return {"acc": r["acc,none"], "acc_norm": r["acc_norm,none"], "docs": docs,
            "lm_eval": lm_eval.__version__}


def main():
    import transformers
    which = sys.argv[1:] or ["tiny", "smollm2"]
    out = {}
    for w in which:
        out[w] = run(w)
        print(w, "acc", out[w]["acc"], "acc_norm", out[w]["acc_norm"])
    out["made_by"] = ("tests/reference/make_lmeval_fixture.py (lm-eval %s, torch %s, "
                      "transformers %s)" % (out[which[0]]["lm_eval"], torch.__version__,
                                            transformers.__version__))
    with open(os.path.join(D, "reference.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
