#!/usr/bin/env python3
"""PyTorch + PEFT baseline for ftlab's CUDA training speed (scripts/gpu-check.sh).

Trains the same model as `ftlab bench --backend cuda` (a Hugging Face directory, e.g. the
SmolLM2-135M-shaped model `ftlab synth-model` writes) with transformers and peft, the
way a PyTorch user would: AutoModelForCausalLM with SDPA attention, LoRA through
peft.get_peft_model (r 8, alpha 16, q_proj/v_proj or all-linear), or every parameter for
full fine-tuning. One timed step = forward with labels (mean cross-entropy) + backward +
clip_grad_norm_(1.0) + AdamW (fused) + zero_grad, on a random (B, T) batch; steps are
timed with CUDA synchronisation after warm-up steps. Precisions:
  autocast  fp32 weights and optimizer, matmuls in bf16 under torch.autocast (what ftlab's
            precision: bf16 does)
  bf16      the model stored in bf16 (a frozen bf16 base for LoRA, the usual PEFT setup;
            LoRA weights stay fp32), under autocast
  tf32      fp32 with TF32 tensor-core matmuls (what ftlab's precision: fp32 does on CUDA)
Needs only torch, transformers and peft (as on the GPU machine); never used by ftlab itself.
Prints one JSON line per precision: {"method", "precision", "batch", "seq", "tokens_per_s",
"step_s", "peak_memory_bytes", "loss", "torch", "transformers", "peft", "device"}.

usage: python3 bench/torch_gpu_baseline.py --model DIR --method lora|lora-all|full
       [--precision autocast,bf16,tf32] [--batch 32] [--seq 512] [--steps 10] [--warmup 3]
       [--device cuda]
"""
import argparse
import json
import sys
import time

import torch


def build(args, precision):
    import transformers
    from transformers import AutoModelForCausalLM

    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    try:
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype,
                                                     attn_implementation="sdpa")
    except TypeError:  # transformers before dtype= replaced torch_dtype=
        model = AutoModelForCausalLM.from_pretrained(args.model, torch_dtype=dtype,
                                                     attn_implementation="sdpa")
    model.config.use_cache = False
    if args.method != "full":
        import peft

        targets = "all-linear" if args.method == "lora-all" else ["q_proj", "v_proj"]
        cfg = peft.LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=targets,
                              task_type="CAUSAL_LM")
        model = peft.get_peft_model(model, cfg)
        for n, p in model.named_parameters():  # adapters train in fp32, as in ftlab
            if p.requires_grad and p.dtype != torch.float32:
                p.data = p.data.float()
    model.to(args.device)
    model.train()
    del transformers
    return model


def run(args, precision):
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    torch.backends.cudnn.allow_tf32 = precision == "tf32"
    model = build(args, precision)
    params = [p for p in model.parameters() if p.requires_grad]
    fused = args.device == "cuda"
    opt = torch.optim.AdamW(params, lr=1e-5, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                            fused=fused)
    vocab = model.config.vocab_size
    g = torch.Generator(device="cpu").manual_seed(99)
    ids = torch.randint(0, vocab, (args.batch, args.seq), generator=g).to(args.device)
    labels = torch.randint(0, vocab, (args.batch, args.seq), generator=g).to(args.device)
    use_autocast = precision in ("autocast", "bf16")

    def step():
        with torch.autocast(device_type=args.device, dtype=torch.bfloat16,
                            enabled=use_autocast):
            loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    def sync():
        if args.device == "cuda":
            torch.cuda.synchronize()

    for _ in range(args.warmup):
        step()
    sync()
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    sync()
    dt = (time.perf_counter() - t0) / args.steps
    import peft
    import transformers

    out = {
        "method": args.method, "precision": precision, "batch": args.batch, "seq": args.seq,
        "steps": args.steps, "tokens_per_s": args.batch * args.seq / dt, "step_s": dt,
        "peak_memory_bytes": (torch.cuda.max_memory_allocated()
                              if args.device == "cuda" else None),
        "loss": float(loss.detach()), "torch": torch.__version__,
        "transformers": transformers.__version__, "peft": peft.__version__,
        "device": (torch.cuda.get_device_name() if args.device == "cuda" else "cpu"),
    }
    del model, opt
    if args.device == "cuda":
        torch.cuda.empty_cache()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--method", choices=["lora", "lora-all", "full"], default="lora")
    ap.add_argument("--precision", default="autocast,bf16")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("torch_gpu_baseline: torch sees no CUDA device", file=sys.stderr)
        return 2
    for precision in args.precision.split(","):
        if precision not in ("autocast", "bf16", "tf32"):
            print(f"torch_gpu_baseline: unknown precision '{precision}'", file=sys.stderr)
            return 2
        print(json.dumps(run(args, precision)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
