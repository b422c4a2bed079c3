#!/usr/bin/env python3
"""Reference forwards of bottleneck adapters (ftlab issue #20, `method.type: adapter`).

Run by hand from the repository root with the AdapterHub `adapters` library (1.3.0,
transformers 4.57, torch 2.15 CPU), e.g. from a venv with `pip install adapters`:
    /work/cache/adapters-env/bin/python tests/reference/make_adapter_fixture.py
For each case below it takes the tiny random llama of tests/reference/fixtures/tiny-llama,
adds one bottleneck adapter with adapters.init + add_adapter, draws its weights and
biases from a seeded normal (std 0.3, so every term moves the logits; the library's own
init is std 0.02 with zero biases), runs an fp32 forward on fixed token ids and writes
under tests/reference/fixtures/adapter_tiny/<case>/:
  adapter_config.json, adapter.safetensors   model.save_adapter(..., use_safetensors=True)
  logits.json                                 token ids and the full (T, V) logits
Cases: Pfeiffer (SeqBnConfig: after the MLP only, on the stream after the residual add)
and Houlsby (DoubleSeqBnConfig: after attention and after the MLP, on the sublayer's
output before the residual add), with several non-linearities and reduction factors.
"""
import json
import os
import shutil

import torch
import adapters
from adapters import DoubleSeqBnConfig, SeqBnConfig
from transformers import LlamaForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "fixtures")
OUT = os.path.join(FIX, "adapter_tiny")

TOKENS = [[1, 17, 5, 42, 9, 33, 60, 2, 11, 23, 7, 50],
          [1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]]

CASES = [
    ("pfeiffer_relu", SeqBnConfig(reduction_factor=8, non_linearity="relu")),
    ("houlsby_swish", DoubleSeqBnConfig(reduction_factor=16, non_linearity="swish")),
    ("houlsby_gelu", DoubleSeqBnConfig(reduction_factor=8, non_linearity="gelu")),
    ("pfeiffer_tanh_both", SeqBnConfig(reduction_factor=4, non_linearity="tanh",
                                       mh_adapter=True)),
]


def main():
    torch.manual_seed(0)
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    for ci, (name, cfg) in enumerate(CASES):
        model = LlamaForCausalLM.from_pretrained(os.path.join(FIX, "tiny-llama"),
                                                 torch_dtype=torch.float32)
        adapters.init(model)
        model.add_adapter("bn", config=cfg)
        model.set_active_adapters("bn")
        gen = torch.Generator().manual_seed(1000 + ci)
        with torch.no_grad():
            for pname, p in model.named_parameters():
                if ".adapters.bn." in pname:
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
        model.eval()
        with torch.no_grad():
            logits = model(torch.tensor(TOKENS)).logits
        d = os.path.join(OUT, name)
        model.save_adapter(d, "bn", with_head=False, use_safetensors=True)
        cpath = os.path.join(d, "adapter_config.json")
        with open(cpath) as f:
            conf = json.load(f)
        conf["model_name"] = "tests/reference/fixtures/tiny-llama"
        with open(cpath, "w") as f:
            json.dump(conf, f, indent=2, sort_keys=True)
            f.write("\n")
        for f in os.listdir(d):
            if f not in ("adapter_config.json", "adapter.safetensors"):
                os.remove(os.path.join(d, f))
        with open(os.path.join(d, "logits.json"), "w") as f:
            json.dump({"made_by": "tests/reference/make_adapter_fixture.py",
                       "versions": {"adapters": adapters.__version__,
                                    "torch": torch.__version__},
                       "tokens": TOKENS,
                       "logits": [[[round(float(v), 7) for v in row] for row in seq]
                                  for seq in logits]}, f)
            f.write("\n")
        print(name, [n for n, _ in model.named_parameters() if ".adapters.bn." in n][:4])


if __name__ == "__main__":
    main()
