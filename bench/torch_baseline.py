#!/usr/bin/python3
"""PyTorch CPU baseline for `make bench` (training step of the same model and batch).

torch is used ONLY for this benchmark (Debian's python3-torch / /usr/bin/python3); ftlab
itself never calls Python. Builds a LlamaForCausalLM with SmolLM2-135M's shape (random
weights: speed does not depend on their values), optionally wraps it with peft LoRA
(r=8, alpha=16, q,v or all-linear), and times forward + backward + clip + AdamW on a
random (B, T) batch with torch.set_num_threads(threads). Prints one line with tokens/s.

usage: /usr/bin/python3 bench/torch_baseline.py --method lora|lora-all|full
       [--batch 4] [--seq 256] [--steps 5] [--warmup 2] [--threads 2]
"""
import argparse
import time

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--method", default="lora", choices=["lora", "lora-all", "full"])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536,
                      num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                      max_position_embeddings=8192, rms_norm_eps=1e-5, rope_theta=100000.0,
                      tie_word_embeddings=True)
    model = LlamaForCausalLM(cfg)
    model.config._attn_implementation = "sdpa"
    if a.method != "full":
        from peft import LoraConfig, get_peft_model
        targets = ["q_proj", "v_proj"] if a.method == "lora" else "all-linear"
        model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                                                 target_modules=targets,
                                                 task_type="CAUSAL_LM"))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    ids = torch.randint(0, cfg.vocab_size, (a.batch, a.seq))
    total = 0.0
    for s in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=False)
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        dt = time.perf_counter() - t0
        if s >= a.warmup:
            total += dt
    tps = a.batch * a.seq * a.steps / total
    print("torch %-8s fp32 B=%d T=%d threads=%d: %.0f tokens/s, step %.3f s (torch %s)"
          % (a.method, a.batch, a.seq, a.threads, tps, total / a.steps, torch.__version__))


if __name__ == "__main__":
    main()
