#!/usr/bin/python3
"""PyTorch CPU baseline for `make bench`: one training step of the same model and batch.

torch is used ONLY for this benchmark; ftlab itself never calls Python. The model is the
SmolLM2-135M shape (llama: RMSNorm, rotate-half RoPE, grouped-query attention, SwiGLU,
tied LM head) written directly in torch, so the script needs nothing but torch: it runs on
Debian's python3-torch 1.13 (the issue's baseline) as well as on a newer pip torch. The
weights are random (speed does not depend on their values). LoRA wraps the chosen linears
the way PEFT does (y = W x + (B (A dropout(x))) * alpha/r, A and B trainable, the base
frozen); full fine-tuning trains every parameter. Each timed step is forward + backward +
global-norm clipping + AdamW on a random (B, T) batch with torch.set_num_threads(threads).
Attention uses F.scaled_dot_product_attention (causal) where torch has it (2.0+), else
the explicit masked softmax (what transformers' eager attention does).

Prints one line: "torch <method> fp32 B=.. T=.. threads=..: N tokens/s, step S s (torch V, blas)".

usage: /usr/bin/python3 bench/torch_baseline.py --method lora|lora-all|full
       [--batch 4] [--seq 256] [--steps 5] [--warmup 2] [--threads 2]
"""
import argparse
import math
import time

import torch
import torch.nn.functional as F
from torch import nn

VOCAB, DIM, FFN, LAYERS, HEADS, KV_HEADS, EPS, THETA = 49152, 576, 1536, 30, 9, 3, 1e-5, 1e5


class Linear(nn.Module):
    """Frozen or trainable (out, in) weight, optionally with a LoRA pair."""

    def __init__(self, n_in, n_out, train_base, rank=0, alpha=16):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_out, n_in) * 0.02, requires_grad=train_base)
        self.rank = rank
        if rank:
            self.lora_a = nn.Parameter(torch.randn(rank, n_in) / math.sqrt(n_in))
            self.lora_b = nn.Parameter(torch.zeros(n_out, rank))
            self.scale = alpha / rank

    def forward(self, x):
        y = F.linear(x, self.weight)
        if self.rank:
            y = y + F.linear(F.linear(x, self.lora_a), self.lora_b) * self.scale
        return y


class RMSNorm(nn.Module):
    def __init__(self, dim, train):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim), requires_grad=train)

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * self.weight


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class Block(nn.Module):
    def __init__(self, train_base, targets):
        super().__init__()
        hd = DIM // HEADS

        def lin(name, n_in, n_out):
            return Linear(n_in, n_out, train_base, 8 if name in targets else 0)

        self.q = lin("q_proj", DIM, DIM)
        self.k = lin("k_proj", DIM, KV_HEADS * hd)
        self.v = lin("v_proj", DIM, KV_HEADS * hd)
        self.o = lin("o_proj", DIM, DIM)
        self.gate = lin("gate_proj", DIM, FFN)
        self.up = lin("up_proj", DIM, FFN)
        self.down = lin("down_proj", FFN, DIM)
        self.norm1 = RMSNorm(DIM, train_base)
        self.norm2 = RMSNorm(DIM, train_base)

    def forward(self, x, cos, sin, mask):
        b, t, _ = x.shape
        hd = DIM // HEADS
        h = self.norm1(x)
        q = self.q(h).view(b, t, HEADS, hd).transpose(1, 2)
        k = self.k(h).view(b, t, KV_HEADS, hd).transpose(1, 2)
        v = self.v(h).view(b, t, KV_HEADS, hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(HEADS // KV_HEADS, dim=1)
        v = v.repeat_interleave(HEADS // KV_HEADS, dim=1)
        if hasattr(F, "scaled_dot_product_attention"):
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            s = (q @ k.transpose(-1, -2)) / math.sqrt(hd) + mask
            a = torch.softmax(s, dim=-1) @ v
        x = x + self.o(a.transpose(1, 2).reshape(b, t, DIM))
        h = self.norm2(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class Llama(nn.Module):
    def __init__(self, train_base, targets):
        super().__init__()
        self.embed = nn.Parameter(torch.randn(VOCAB, DIM) * 0.02, requires_grad=train_base)
        self.layers = nn.ModuleList(Block(train_base, targets) for _ in range(LAYERS))
        self.norm = RMSNorm(DIM, train_base)

    def forward(self, ids):
        t = ids.shape[1]
        hd = DIM // HEADS
        inv = 1.0 / (THETA ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
        ang = torch.outer(torch.arange(t, dtype=torch.float32), inv)
        ang = torch.cat((ang, ang), dim=-1)
        cos, sin = ang.cos(), ang.sin()
        mask = torch.full((t, t), float("-inf")).triu(1)
        x = F.embedding(ids, self.embed)
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        logits = F.linear(self.norm(x), self.embed)  # tied head
        return F.cross_entropy(logits[:, :-1].reshape(-1, VOCAB), ids[:, 1:].reshape(-1))


def blas_name():
    cfg = torch.__config__.show()
    for key in ("BLAS_INFO=",):
        i = cfg.find(key)
        if i >= 0:
            return cfg[i + len(key):].split(",")[0]
    return "?"


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
    if a.method == "full":
        model = Llama(True, ())
    elif a.method == "lora":
        model = Llama(False, ("q_proj", "v_proj"))
    else:
        model = Llama(False, ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                              "down_proj"))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    ids = torch.randint(0, VOCAB, (a.batch, a.seq))
    total = 0.0
    for s in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=False)
        loss = model(ids)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        dt = time.perf_counter() - t0
        if s >= a.warmup:
            total += dt
    tps = a.batch * a.seq * a.steps / total
    print("torch %-8s fp32 B=%d T=%d threads=%d: %.0f tokens/s, step %.3f s (torch %s, blas %s)"
          % (a.method, a.batch, a.seq, a.threads, tps, total / a.steps, torch.__version__,
             blas_name()))


if __name__ == "__main__":
    main()
