#!/usr/bin/env python3
"""Checks that the AdapterHub `adapters` library loads ftlab's bottleneck adapter export
and reproduces ftlab's logits (ftlab issue #20).

The export, tests/reference/fixtures/adapter_tiny/ftlab_export/ (adapter_config.json,
adapter.safetensors, ftlab_logits.json), is written by tests/unit/test_bottleneck.c
(UPDATE_FIXTURES=1): Houlsby adapters trained for 5 steps on the tiny llama of
tests/reference/fixtures/tiny-llama, and the trained model's logits on fixed tokens.
Run from the repository root with the `adapters` library (1.3.0, transformers 4.57,
torch 2.15 CPU), e.g.:
    /work/cache/adapters-env/bin/python tests/reference/check_adapter_export.py
It writes tests/reference/fixtures/adapter_tiny/adapter_export_check.json (the largest
|adapters - ftlab| over every logit, divided by the largest |logit|), which the C test
requires to be <= 1e-5.
"""
import json
import os

import torch
import adapters
import transformers
from transformers import LlamaForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "fixtures")
EXPORT = os.path.join(FIX, "adapter_tiny", "ftlab_export")


def main():
    with open(os.path.join(EXPORT, "ftlab_logits.json")) as f:
        ours = json.load(f)
    model = LlamaForCausalLM.from_pretrained(os.path.join(FIX, "tiny-llama"),
                                             torch_dtype=torch.float32)
    adapters.init(model)
    name = model.load_adapter(EXPORT, set_active=True, use_safetensors=True)
    model.eval()
    with torch.no_grad():
        logits = model(torch.tensor(ours["tokens"])).logits.double()
    ref = torch.tensor(ours["logits"], dtype=torch.float64)
    diff = (logits - ref).abs().max().item()
    scale = ref.abs().max().item()
    # without the adapter the logits differ: the check is not vacuous
    model.set_active_adapters(None)
    with torch.no_grad():
        base = model(torch.tensor(ours["tokens"])).logits.double()
    moved = (base - ref).abs().max().item()
    out = {"made_by": "tests/reference/check_adapter_export.py",
           "versions": {"adapters": adapters.__version__, "torch": torch.__version__,
                        "transformers": transformers.__version__},
           "loaded_adapter": name,
           "max_abs_diff": diff,
           "max_abs_logit": scale,
           "max_abs_diff_over_max_abs_logit": diff / scale,
           "max_abs_diff_without_the_adapter": moved}
    with open(os.path.join(FIX, "adapter_tiny", "adapter_export_check.json"), "w") as f:
        json.dump(out, f, indent=2)
        f.write("\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
