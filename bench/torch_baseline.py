#!/usr/bin/python3
"""PyTorch CPU baseline for `make bench`: one training step (or decode) of the same model
and batch.

torch is used ONLY for this benchmark; ftlab itself never calls Python. The models are
written directly in torch, so the script needs nothing but torch: it runs on Debian's
python3-torch 1.13 as well as on a newer pip torch. The weights are random (speed does
not depend on their values).
  --model smollm2: the SmolLM2-135M shape (llama: RMSNorm, rotate-half RoPE, grouped-query
                   attention, SwiGLU, tied LM head; vocabulary 49152).
  --model gemma3:  the Gemma 3 270M shape (embedding times sqrt(640), RMSNorm (1 + w)
                   before and after attention and MLP, RMSNorm on q and k per head, GeGLU
                   with tanh GELU, 4 query heads of 256 on 1 KV head, query scale 1/16,
                   local layers with a 512-token window and RoPE base 1e4 between every
                   sixth global one (base 1e6), tied LM head; vocabulary 262144).
LoRA wraps the chosen linears the way PEFT does (y = W x + (B (A dropout(x))) * alpha/r,
A and B trainable, the base frozen); full fine-tuning trains every parameter. Each timed
training step is forward + backward + global-norm clipping + AdamW on a random (B, T)
batch with torch.set_num_threads(threads); the loss is the mean cross-entropy of every
position (logits of the whole batch, as transformers computes them). --precision bf16
runs the forward under torch.autocast("cpu", dtype=torch.bfloat16), PyTorch's own mixed
precision (the backward follows the autocast casts). BLAS threads are set from outside
(OPENBLAS_NUM_THREADS for Debian's OpenBLAS build, MKL_NUM_THREADS for a pip wheel's MKL)
and printed as blas-threads.
Attention uses F.scaled_dot_product_attention where torch has it (2.0+), else the
explicit masked softmax (what transformers' eager attention does).
--mode generate: a prompt of --prompt-len random tokens is prefilled, then --new-tokens
tokens are decoded one at a time with a KV cache (greedy), for 1 and for 8 prompts.

Prints one line per measurement:
  "torch <method> fp32|bf16-autocast B=.. T=.. threads=.. blas-threads=..: N tokens/s,
   step S s, process CPU C s per step (torch V, blas)"
  "torch decode prompts=.. threads=..: N tokens/s (prefill P tokens/s) (torch V, blas)"

usage: /usr/bin/python3 bench/torch_baseline.py [--model smollm2|gemma3]
       [--mode train|generate] [--method lora|lora-all|full] [--batch 4] [--seq 256]
       [--steps 5] [--warmup 2] [--threads 2] [--precision fp32|bf16] [--prompt-len 64]
       [--new-tokens 64]
"""
import argparse
import math
import os
import time

import torch
import torch.nn.functional as F
from torch import nn

SHAPES = {
    "smollm2": dict(vocab=49152, dim=576, ffn=1536, layers=30, heads=9, kv_heads=3,
                    head_dim=64, eps=1e-5, theta=1e5, gemma=False),
    "gemma3": dict(vocab=262144, dim=640, ffn=2048, layers=18, heads=4, kv_heads=1,
                   head_dim=256, eps=1e-6, theta=1e6, theta_local=1e4, window=512,
                   pattern=6, scale=1.0 / 16.0, gemma=True),
}
S = SHAPES["smollm2"]


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
    """x / rms(x) * w (llama) or * (1 + w) (Gemma)."""

    def __init__(self, dim, train):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(dim) if S["gemma"] else torch.ones(dim),
                                   requires_grad=train)

    def forward(self, x):
        w = 1.0 + self.weight if S["gemma"] else self.weight
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + S["eps"]) * w


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def rope(theta, t0, t):
    hd = S["head_dim"]
    inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
    ang = torch.outer(torch.arange(t0, t0 + t, dtype=torch.float32), inv)
    ang = torch.cat((ang, ang), dim=-1)
    return ang.cos(), ang.sin()


class Block(nn.Module):
    def __init__(self, train_base, targets, local):
        super().__init__()
        dim, hd, g = S["dim"], S["head_dim"], S["gemma"]
        self.local = local

        def lin(name, n_in, n_out):
            return Linear(n_in, n_out, train_base, 8 if name in targets else 0)

        self.q = lin("q_proj", dim, S["heads"] * hd)
        self.k = lin("k_proj", dim, S["kv_heads"] * hd)
        self.v = lin("v_proj", dim, S["kv_heads"] * hd)
        self.o = lin("o_proj", S["heads"] * hd, dim)
        self.gate = lin("gate_proj", dim, S["ffn"])
        self.up = lin("up_proj", dim, S["ffn"])
        self.down = lin("down_proj", S["ffn"], dim)
        self.norm1 = RMSNorm(dim, train_base)
        self.norm2 = RMSNorm(dim, train_base)
        if g:
            self.post_attn = RMSNorm(dim, train_base)
            self.post_ffn = RMSNorm(dim, train_base)
            self.q_norm = RMSNorm(hd, train_base)
            self.k_norm = RMSNorm(hd, train_base)

    def forward(self, x, cos, sin, cache=None):
        """x (b, t, dim); cache: [k, v] of earlier positions (decode), updated in place."""
        b, t, _ = x.shape
        hd, nh, nkv, g = S["head_dim"], S["heads"], S["kv_heads"], S["gemma"]
        h = self.norm1(x)
        q = self.q(h).view(b, t, nh, hd).transpose(1, 2)
        k = self.k(h).view(b, t, nkv, hd).transpose(1, 2)
        v = self.v(h).view(b, t, nkv, hd).transpose(1, 2)
        if g:
            q, k = self.q_norm(q), self.k_norm(k)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if cache is not None:
            if cache[0] is not None:
                k = torch.cat((cache[0], k), dim=2)
                v = torch.cat((cache[1], v), dim=2)
            cache[0], cache[1] = k, v
        tk = k.shape[2]
        k = k.repeat_interleave(nh // nkv, dim=1)
        v = v.repeat_interleave(nh // nkv, dim=1)
        scale = S["scale"] if g else 1.0 / math.sqrt(hd)
        # causal, and for local layers only the last `window` keys
        qpos = torch.arange(tk - t, tk).view(t, 1)
        kpos = torch.arange(tk).view(1, tk)
        allowed = kpos <= qpos
        if g and self.local:
            allowed = allowed & (qpos - kpos < S["window"])
        if hasattr(F, "scaled_dot_product_attention"):
            if cache is None and not (g and self.local and t > S["window"]):
                a = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
            else:
                a = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=scale)
        else:
            mask = torch.zeros(t, tk).masked_fill(~allowed, float("-inf"))
            s = (q @ k.transpose(-1, -2)) * scale + mask
            a = torch.softmax(s, dim=-1) @ v
        a = self.o(a.transpose(1, 2).reshape(b, t, nh * hd))
        x = x + (self.post_attn(a) if g else a)
        h = self.norm2(x)
        act = F.gelu(self.gate(h), approximate="tanh") if g else F.silu(self.gate(h))
        m = self.down(act * self.up(h))
        return x + (self.post_ffn(m) if g else m)


class Model(nn.Module):
    def __init__(self, train_base, targets):
        super().__init__()
        self.embed = nn.Parameter(torch.randn(S["vocab"], S["dim"]) * 0.02,
                                  requires_grad=train_base)
        p = S.get("pattern", 0)
        self.layers = nn.ModuleList(
            Block(train_base, targets, S["gemma"] and i % p < p - 1)
            for i in range(S["layers"]))
        self.norm = RMSNorm(S["dim"], train_base)

    def hidden(self, ids, t0=0, caches=None):
        t = ids.shape[1]
        cg = rope(S["theta"], t0, t)
        cl = rope(S["theta_local"], t0, t) if S["gemma"] else cg
        x = F.embedding(ids, self.embed)
        if S["gemma"]:
            x = x * torch.tensor(S["dim"] ** 0.5, dtype=x.dtype)
        for i, layer in enumerate(self.layers):
            cos, sin = cl if layer.local else cg
            x = layer(x, cos, sin, caches[i] if caches is not None else None)
        return self.norm(x)

    def forward(self, ids):
        logits = F.linear(self.hidden(ids), self.embed)  # tied head
        return F.cross_entropy(logits[:, :-1].reshape(-1, S["vocab"]), ids[:, 1:].reshape(-1))


def blas_name():
    cfg = torch.__config__.show()
    for key in ("BLAS_INFO=",):
        i = cfg.find(key)
        if i >= 0:
            return cfg[i + len(key):].split(",")[0]
    return "?"


def train(a):
    if a.method == "full":
        model = Model(True, ())
    elif a.method == "lora":
        model = Model(False, ("q_proj", "v_proj"))
    else:
        model = Model(False, ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                              "down_proj"))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    ids = torch.randint(0, S["vocab"], (a.batch, a.seq))
    total = cpu = 0.0
    for s in range(a.warmup + a.steps):
        t0, c0 = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=False)
        if a.precision == "bf16":
            # PyTorch's own mixed precision on the CPU: matmuls in bf16, the rest in fp32.
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = model(ids)
        else:
            loss = model(ids)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        dt = time.perf_counter() - t0
        if s >= a.warmup:
            total += dt
            cpu += time.process_time() - c0
    tps = a.batch * a.seq * a.steps / total
    blas_threads = os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("MKL_NUM_THREADS")
    print("torch %-8s %s B=%d T=%d threads=%d blas-threads=%s: %.0f tokens/s, step %.3f s, "
          "process CPU %.3f s per step (torch %s, blas %s)"
          % (a.method, "bf16-autocast" if a.precision == "bf16" else "fp32", a.batch, a.seq,
             a.threads, blas_threads or "default", tps, total / a.steps, cpu / a.steps,
             torch.__version__, blas_name()))


def generate(a):
    model = Model(False, ())
    model.eval()
    for n in (1, 8):
        ids = torch.randint(0, S["vocab"], (n, a.prompt_len))
        with torch.no_grad():
            caches = [[None, None] for _ in model.layers]
            t0 = time.perf_counter()
            h = model.hidden(ids, 0, caches)
            nxt = F.linear(h[:, -1], model.embed).argmax(-1, keepdim=True)
            t1, c1 = time.perf_counter(), time.process_time()
            for s in range(a.new_tokens):
                h = model.hidden(nxt, a.prompt_len + s, caches)
                nxt = F.linear(h[:, -1], model.embed).argmax(-1, keepdim=True)
            t2, c2 = time.perf_counter(), time.process_time()
        print("torch decode prompts=%d threads=%d: %.1f tokens/s (prefill %.0f tokens/s), "
              "process CPU %.3f s per step (torch %s, blas %s)"
              % (n, a.threads, n * a.new_tokens / (t2 - t1), n * a.prompt_len / (t1 - t0),
                 (c2 - c1) / a.new_tokens, torch.__version__, blas_name()))


def main():
    global S
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2", choices=sorted(SHAPES))
    ap.add_argument("--mode", default="train", choices=["train", "generate"])
    ap.add_argument("--method", default="lora", choices=["lora", "lora-all", "full"])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=64)
    a = ap.parse_args()
    S = SHAPES[a.model]
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.mode == "train":
        train(a)
    else:
        generate(a)


if __name__ == "__main__":
    main()
