#!/usr/bin/python3
"""Reference fixtures for the training engine (ftlab issue #5).

Run by hand with Debian's /usr/bin/python3 (torch, transformers 4.44, peft 0.12):
    /usr/bin/python3 tests/reference/make_train_fixture.py optim
writes tests/reference/fixtures/train_optim.json: five torch.optim.AdamW steps with
torch.nn.utils.clip_grad_norm_ and transformers' cosine-with-min-lr schedule on a small
parameter vector (fixed random gradients), plus transformers' schedule factors.
    /work/refenv/bin/python tests/reference/make_train_fixture.py sgd
(torch only) writes tests/reference/fixtures/train_sgd.json: a tiny two-layer MLP trained
with torch.optim.SGD for eight steps in several settings (momentum, dampening, Nesterov,
weight decay on the matrices only, gradient clipping), with each step's gradients and the
weights after it.
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


def sgd_fixture():
    """torch.optim.SGD on a tiny model: Linear(4, 8) - tanh - Linear(8, 3), cross-entropy on
    a fixed batch, eight steps per setting. Weight decay applies to the weight matrices
    only (biases in a group without it), as ftlab's trainer does; gradients are clipped
    to max_norm before each step like the trainer."""
    settings = [
        {"momentum": 0.0, "dampening": 0.0, "nesterov": False, "weight_decay": 0.0},
        {"momentum": 0.9, "dampening": 0.0, "nesterov": False, "weight_decay": 0.0},
        {"momentum": 0.9, "dampening": 0.25, "nesterov": False, "weight_decay": 0.01},
        {"momentum": 0.8, "dampening": 0.0, "nesterov": True, "weight_decay": 0.05},
        {"momentum": 0.0, "dampening": 0.0, "nesterov": False, "weight_decay": 0.1},
    ]
    lr, max_norm, steps = 0.3, 0.5, 8
    out = {"made_by": "tests/reference/make_train_fixture.py sgd (torch %s)" % torch.__version__,
           "lr": lr, "max_norm": max_norm, "runs": []}
    for st in settings:
        g = torch.Generator().manual_seed(99)
        l1, l2 = torch.nn.Linear(4, 8), torch.nn.Linear(8, 3)
        with torch.no_grad():
            for p in (l1.weight, l1.bias, l2.weight, l2.bias):
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        x = torch.randn(6, 4, generator=g)
        y = torch.tensor([0, 2, 1, 1, 0, 2])
        params = [l1.weight, l1.bias, l2.weight, l2.bias]
        init = [p.detach().flatten().tolist() for p in params]
        opt = torch.optim.SGD([{"params": [l1.weight, l2.weight],
                                "weight_decay": st["weight_decay"]},
                               {"params": [l1.bias, l2.bias], "weight_decay": 0.0}],
                              lr=lr, momentum=st["momentum"], dampening=st["dampening"],
                              nesterov=st["nesterov"], foreach=False)
        trace = []
        for s in range(steps):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(l2(torch.tanh(l1(x))), y)
            loss.backward()
            grads = [p.grad.detach().flatten().tolist() for p in params]
            norm = torch.nn.utils.clip_grad_norm_(params, max_norm).item()
            opt.step()
            trace.append({"loss": loss.item(), "grads": grads, "norm": norm,
                          "params": [p.detach().flatten().tolist() for p in params]})
        out["runs"].append(dict(st, init=init, shapes=[list(p.shape) for p in params],
                                steps=trace))
    os.makedirs(FIX, exist_ok=True)
    with open(os.path.join(FIX, "train_sgd.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print("wrote", os.path.join(FIX, "train_sgd.json"))


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "optim"
    if what == "optim":
        optim_fixture()
    elif what == "sgd":
        sgd_fixture()
    elif what not in ("peft-tiny", "peft-smollm2", "peft-tiny-dora", "peft-tiny-ia3",
                      "peft-tiny-prefix", "peft-tiny-prefix-proj"):
        sys.exit("unknown fixture: " + what)


def peft_tiny_fixture():
    """LoRA on the tiny llama exported by tests/unit/test_train_reference.c
    (FTLAB_WRITE_FIXTURE=1): loss and LoRA grads of one step, five AdamW steps, and our
    exported final adapter loaded into peft must reproduce our logits."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    d = os.path.join(FIX, "train_tiny")
    ours = json.load(open(os.path.join(d, "ours.json")))
    B, T = ours["B"], ours["T"]
    tok = torch.tensor(ours["tokens"]).view(B, T)
    tgt = torch.tensor(ours["targets"]).view(B, T)
    tgt = torch.where(tgt < 0, torch.full_like(tgt, -100), tgt)

    def load(adapter, trainable):
        base = AutoModelForCausalLM.from_pretrained(os.path.join(d, "model"),
                                                    torch_dtype=torch.float32,
                                                    attn_implementation="eager")
        return PeftModel.from_pretrained(base, os.path.join(d, adapter), is_trainable=trainable)

    def loss_of(model):
        logits = model(input_ids=tok).logits
        return torch.nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]),
                                                 tgt.view(-1), ignore_index=-100)

    torch.manual_seed(0)
    model = load("adapter_init", True)
    model.train()
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    loss0 = loss_of(model)
    loss0.backward()
    grads = {}
    for n, p in params:
        # base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight -> ours
        key = n.replace("base_model.model.", "", 1).replace(".default", "")
        grads[key] = p.grad.detach().flatten().tolist()
    model.zero_grad()
    opt = torch.optim.AdamW([p for _, p in params], lr=1e-2, betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=0.01, foreach=False)
    trace = []
    for _ in range(5):
        opt.zero_grad()
        loss = loss_of(model)
        trace.append(loss.item())
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for _, p in params], 1.0)
        opt.step()
    # Export check: peft with OUR final adapter reproduces OUR logits.
    final = load("adapter_final", False)
    final.eval()
    with torch.no_grad():
        lg = final(input_ids=tok).logits.flatten()
    mine = torch.tensor(ours["logits_after"])
    diff = (lg - mine).abs().max().item()
    # GGUF-base round trip: the adapter trained on the tiny model loaded from GGUF
    # (interleaved q/k), exported with lora_B un-permuted, on the HF model.
    final_g = load("adapter_final_gguf", False)
    final_g.eval()
    with torch.no_grad():
        lg_g = final_g(input_ids=tok).logits.flatten()
    diff_g = (lg_g - mine).abs().max().item()
    ref = {"made_by": "tests/reference/make_train_fixture.py peft-tiny (torch %s, "
           "transformers, peft)" % torch.__version__,
           "loss0": loss0.item(), "grads": grads, "trace": trace,
           "export_logits_max_abs_diff": diff,
           "export_gguf_logits_max_abs_diff": diff_g}
    with open(os.path.join(d, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")
    print("loss0 ours %.8f peft %.8f" % (ours["loss0"], loss0.item()))
    print("trace ours", ours["trace"])
    print("trace peft", trace)
    print("export logits max abs diff %.3g" % diff)
    print("GGUF-base export logits max abs diff %.3g" % diff_g)


def peft_smollm2_fixture():
    """LoRA on SmolLM2-135M: run tests/unit/test_train_smollm2 with FTLAB_WRITE_FIXTURE=1
    first. transformers 4.44 cannot dequantise Q4_1, so it loads OUR dequantised F32 GGUF
    (/tmp/ftlab-smollm2-f32.gguf, written by our merged-GGUF writer); it de-permutes q/k
    itself. The gguf package needs sentencepiece only for vocab helpers: stubbed."""
    import importlib.machinery
    import types
    sp = types.ModuleType("sentencepiece")
    sp.__spec__ = importlib.machinery.ModuleSpec("sentencepiece", None)
    sp.SentencePieceProcessor = object
    sys.modules.setdefault("sentencepiece", sp)
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    d = os.path.join(FIX, "train_smollm2")
    ours = json.load(open(os.path.join(d, "ours.json")))
    B, T = ours["B"], ours["T"]
    tok = torch.tensor(ours["tokens"]).view(B, T)
    tgt = torch.tensor(ours["targets"]).view(B, T)
    tgt = torch.where(tgt < 0, torch.full_like(tgt, -100), tgt)
    base = AutoModelForCausalLM.from_pretrained("/tmp", gguf_file="ftlab-smollm2-f32.gguf",
                                                torch_dtype=torch.float32,
                                                attn_implementation="eager")
    # The GGUF has no output.weight (tied embeddings, llama.cpp convention) and
    # transformers 4.44 does not tie from GGUF metadata: tie by hand.
    base.config.tie_word_embeddings = True
    base.lm_head.weight = base.model.embed_tokens.weight
    model = PeftModel.from_pretrained(base, os.path.join(d, "adapter_init"), is_trainable=True)
    model.train()
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]

    def loss_of():
        logits = model(input_ids=tok).logits
        return torch.nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]),
                                                 tgt.view(-1), ignore_index=-100)
    loss0 = loss_of()
    loss0.backward()
    grads = {}
    for n, p in params:
        key = n.replace("base_model.model.", "", 1).replace(".default", "")
        g = p.grad.detach().flatten()
        grads[key] = {"norm": g.norm().item(), "head": g[:16].tolist()}
    model.zero_grad()
    opt = torch.optim.AdamW([p for _, p in params], lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=0.01, foreach=False)
    trace = []
    for _ in range(5):
        opt.zero_grad()
        loss = loss_of()
        trace.append(loss.item())
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for _, p in params], 1.0)
        opt.step()
    ref = {"made_by": "tests/reference/make_train_fixture.py peft-smollm2 (torch %s, "
           "transformers gguf_file=, peft)" % torch.__version__,
           "loss0": loss0.item(), "grads": grads, "trace": trace}
    with open(os.path.join(d, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")
    print("loss0 ours %.7f peft %.7f" % (ours["loss0"], loss0.item()))
    print("trace ours", ours["trace"])
    print("trace peft", trace)
    worst = max(abs(grads[k]["norm"] - ours["grads"][k]["norm"]) / max(grads[k]["norm"], 1e-30)
                for k in grads)
    print("worst relative grad-norm difference %.3g" % worst)


def peft_tiny_dora_fixture(sub="train_tiny_dora", what="peft-tiny-dora"):
    """DoRA (use_dora=True) on the same tiny llama, targets q_proj, v_proj, down_proj,
    written by tests/unit/test_train_reference.c (FTLAB_WRITE_FIXTURE=dora) into
    fixtures/train_tiny_dora/: loss and gradients of A, B and the magnitude vector (PEFT
    detaches the weight norm), five AdamW steps, our exported final adapter loaded by
    PeftModel.from_pretrained and our merged model loaded by transformers, both
    reproducing our logits. Made with /work/cache/sptok-env's python (torch, transformers
    5, peft 0.21; versions recorded in made_by). IA3 the same way (peft-tiny-ia3,
    fixtures/train_tiny_ia3/: PEFT's default llama targets k_proj, v_proj, down_proj with
    down_proj feed-forward; the vectors are the ia3_l parameters) and prefix tuning
    (peft-tiny-prefix, fixtures/train_tiny_prefix/: 3 virtual tokens, no projection; the
    adapter's prompt_embeddings; no merged model), and prefix tuning with PEFT's
    prefix_projection (peft-tiny-prefix-proj, fixtures/train_tiny_prefix_proj/:
    encoder_hidden_size 6; PEFT's PrefixEncoder starts from our initial embedding and
    linears (ours.json "init"); the gradients are those of its five tensors; AdamW decays
    the matrices only, as our trainer; the exported adapter is the computed table, which
    PEFT loads in inference mode)."""
    import peft
    import transformers
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    d = os.path.join(FIX, sub)
    ours = json.load(open(os.path.join(d, "ours.json")))
    B, T = ours["B"], ours["T"]
    tok = torch.tensor(ours["tokens"]).view(B, T)
    tgt = torch.tensor(ours["targets"]).view(B, T)
    tgt = torch.where(tgt < 0, torch.full_like(tgt, -100), tgt)

    def base(sub):
        return AutoModelForCausalLM.from_pretrained(os.path.join(d, sub), dtype=torch.float32,
                                                    attn_implementation="eager")

    proj = what == "peft-tiny-prefix-proj"

    def load(adapter, trainable):
        path = os.path.join(d, adapter)
        if trainable and proj:
            # the MLP is not in a saved adapter (PEFT saves its output): build it from the
            # config in training mode and copy our initial parameters in
            from peft import PeftConfig, get_peft_model
            cfg = PeftConfig.from_pretrained(path)
            cfg.inference_mode = False
            model = get_peft_model(base("model"), cfg)
            enc = model.prompt_encoder["default"]
            mine = {"prompt_encoder.embedding.weight": enc.embedding.weight,
                    "prompt_encoder.transform.0.weight": enc.transform[0].weight,
                    "prompt_encoder.transform.0.bias": enc.transform[0].bias,
                    "prompt_encoder.transform.2.weight": enc.transform[2].weight,
                    "prompt_encoder.transform.2.bias": enc.transform[2].bias}
            with torch.no_grad():
                for k, p in mine.items():
                    p.copy_(torch.tensor(ours["init"][k]).view_as(p))
            return model
        if trainable and what == "peft-tiny-prefix":
            # PEFT refuses to load a prompt-learning adapter as trainable: build the
            # prefix model from the saved config and copy our initial prompt_embeddings in
            from peft import PeftConfig, get_peft_model
            from safetensors.torch import load_file
            cfg = PeftConfig.from_pretrained(path)
            cfg.inference_mode = False
            model = get_peft_model(base("model"), cfg)
            w = load_file(os.path.join(path, "adapter_model.safetensors"))["prompt_embeddings"]
            with torch.no_grad():
                model.prompt_encoder["default"].embedding.weight.copy_(w)
            return model
        return PeftModel.from_pretrained(base("model"), path, is_trainable=trainable)

    def loss_of(model):
        logits = model(input_ids=tok).logits
        return torch.nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]),
                                                 tgt.view(-1), ignore_index=-100)

    torch.manual_seed(0)
    model = load("adapter_init", True)
    model.train()
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    loss0 = loss_of(model)
    loss0.backward()
    grads = {}
    for n, p in params:
        # ...q_proj.lora_magnitude_vector.default.weight -> ...q_proj.lora_magnitude_vector
        key = n.replace("base_model.model.", "", 1).replace(".default", "")
        key = key.replace("lora_magnitude_vector.weight", "lora_magnitude_vector")
        # prefix tuning: prompt_encoder.embedding.weight -> prompt_embeddings (PEFT's key)
        if not proj:
            key = key.replace("prompt_encoder.embedding.weight", "prompt_embeddings")
        grads[key] = p.grad.detach().flatten().tolist()
    model.zero_grad()
    if proj:
        # our trainer decays the matrices only (not the biases)
        groups = [{"params": [p for _, p in params if p.dim() == 2], "weight_decay": 0.01},
                  {"params": [p for _, p in params if p.dim() < 2], "weight_decay": 0.0}]
    else:
        groups = [{"params": [p for _, p in params], "weight_decay": 0.01}]
    opt = torch.optim.AdamW(groups, lr=1e-2, betas=(0.9, 0.999), eps=1e-8, foreach=False)
    trace = []
    for _ in range(5):
        opt.zero_grad()
        loss = loss_of(model)
        trace.append(loss.item())
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for _, p in params], 1.0)
        opt.step()
    mine = torch.tensor(ours["logits_after"])
    final = load("adapter_final", False)
    final.eval()
    with torch.no_grad():
        lg = final(input_ids=tok).logits.flatten()
    diff = (lg - mine).abs().max().item()
    diff_m = None  # prefix tuning does not merge
    if os.path.isdir(os.path.join(d, "merged")):
        merged = base("merged")
        merged.eval()
        with torch.no_grad():
            lm = merged(input_ids=tok).logits.flatten()
        diff_m = (lm - mine).abs().max().item()
    ref = {"made_by": "tests/reference/make_train_fixture.py %s (torch %s, "
           "transformers %s, peft %s)" % (what, torch.__version__, transformers.__version__,
                                          peft.__version__),
           "loss0": loss0.item(), "grads": grads, "trace": trace,
           "export_logits_max_abs_diff": diff, "merged_logits_max_abs_diff": diff_m}
    with open(os.path.join(d, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")
    print("loss0 ours %.8f peft %.8f" % (ours["loss0"], loss0.item()))
    print("trace ours", ours["trace"])
    print("trace peft", trace)
    print("export logits max abs diff %.3g, merged %s" % (diff, diff_m))


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "peft-tiny":
    peft_tiny_fixture()
if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "peft-smollm2":
    peft_smollm2_fixture()
if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "peft-tiny-dora":
    peft_tiny_dora_fixture()
if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "peft-tiny-ia3":
    peft_tiny_dora_fixture("train_tiny_ia3", "peft-tiny-ia3")
if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "peft-tiny-prefix":
    peft_tiny_dora_fixture("train_tiny_prefix", "peft-tiny-prefix")
if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "peft-tiny-prefix-proj":
    peft_tiny_dora_fixture("train_tiny_prefix_proj", "peft-tiny-prefix-proj")
