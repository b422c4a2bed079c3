#!/usr/bin/python3
"""Reference fixtures for the training engine (ftlab issue #5).

Run by hand with Debian's /usr/bin/python3 (torch, transformers 4.44, peft 0.12):
    /usr/bin/python3 tests/reference/make_train_fixture.py optim
writes tests/reference/fixtures/train_optim.json: five torch.optim.AdamW steps with
torch.nn.utils.clip_grad_norm_ and transformers' cosine-with-min-lr schedule on a small
parameter vector (fixed random gradients), plus transformers' schedule factors.
The C tests (tests/unit/test_optim.c) replay the same gradients and compare.
"""
import json
import math
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "fixtures")


def optim_fixture():
    from transformers.optimization import (
        get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup,
        get_cosine_with_min_lr_schedule_with_warmup, get_linear_schedule_with_warmup)
    g = torch.Generator().manual_seed(1234)
    w = torch.randn(4, 3, generator=g)
    b = torch.randn(5, generator=g)
    w0, b0 = w.clone(), b.clone()
    w.requires_grad_(True)
    b.requires_grad_(True)
    lr, betas, eps, wd, max_norm = 1e-2, (0.9, 0.99), 1e-8, 0.1, 1.0
    steps, total, warmup, min_ratio = 5, 6, 2, 0.1
    opt = torch.optim.AdamW([{"params": [w], "weight_decay": wd},
                             {"params": [b], "weight_decay": 0.0}],
                            lr=lr, betas=betas, eps=eps, foreach=False)
    sched = get_cosine_with_min_lr_schedule_with_warmup(
        opt, num_warmup_steps=warmup, num_training_steps=total, min_lr_rate=min_ratio)
    trace = []
    for s in range(steps):
        # Step 0 has lr 0 (warmup starts at 0) but still advances the moments.
        scale = 3.0 if s % 2 == 0 else 0.2   # clipping is active on even steps only
        gw = torch.randn(4, 3, generator=g) * scale
        gb = torch.randn(5, generator=g) * scale
        w.grad, b.grad = gw.clone(), gb.clone()
        lr_now = opt.param_groups[0]["lr"]
        norm = torch.nn.utils.clip_grad_norm_([w, b], max_norm).item()
        opt.step()
        sched.step()
        trace.append({"grad_w": gw.flatten().tolist(), "grad_b": gb.tolist(),
                      "lr": lr_now, "norm": norm,
                      "w": w.detach().flatten().tolist(), "b": b.detach().tolist()})
    fac = {}
    dummy = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)

    def factors(make):
        s = make(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0))
        return [s.lr_lambdas[0](i) for i in range(12)]
    fac["constant_w3"] = factors(lambda o: get_constant_schedule_with_warmup(o, 3))
    fac["linear_w3_t10"] = factors(lambda o: get_linear_schedule_with_warmup(o, 3, 10))
    fac["cosine_w2_t10"] = factors(lambda o: get_cosine_schedule_with_warmup(o, 2, 10))
    fac["cosine_min0.1_w2_t10"] = factors(
        lambda o: get_cosine_with_min_lr_schedule_with_warmup(o, 2, 10, min_lr_rate=0.1))
    del dummy
    out = {"made_by": "tests/reference/make_train_fixture.py optim (torch %s, transformers)"
           % torch.__version__,
           "lr": lr, "betas": betas, "eps": eps, "weight_decay": wd, "max_norm": max_norm,
           "total": total, "warmup": warmup, "min_ratio": min_ratio,
           "w0": w0.flatten().tolist(), "b0": b0.tolist(), "steps": trace,
           "schedules": fac}
    os.makedirs(FIX, exist_ok=True)
    with open(os.path.join(FIX, "train_optim.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print("wrote", os.path.join(FIX, "train_optim.json"))


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "optim"
    if what == "optim":
        optim_fixture()
    else:
        sys.exit("unknown fixture: " + what)
