#!/usr/bin/env python3
"""A synthetic exec trainer for sweep benchmarks and tests (plain Python, no packages).

It speaks ftlab's exec protocol (docs/exec-backend.md): one validation-loss line per
iteration, {"step": k, "total_steps": N, "split": "validation", "loss": v}, then the final
result {"metric": "loss", "split": "validation", "value": v}. The loss of iteration k
approaches the objective f(x) of the swept values: v_k = f(x) + (1 + |f(x) - f*|) * 3 /
(1 + k), plus a little seeded noise, so early values rank runs roughly as their final values
do. The objectives have known minima f*:

  branin     f* = 0.397887    x1 = 1.5 * a - 5 in [-5, 10], x2 = b in [0, 15]
  hartmann3  f* = -3.86278    x_i = a, b, c in [0, 1]
  finetune   f* = 1.0         a = learning rate (best 1e-3, on a log scale), rank (best 16),
                              optimizer (adamw best), c = warmup steps (best 30)

Usage: sweep_trainer.py FN STEPS A B C RANK OPTIMIZER [SEED]. bench/sweep_peers.py imports
the objectives. It exits at once on SIGTERM.
SWEEP_TRAINER_DELAY (seconds, default 0) is slept after each iteration, so that early
termination has iterations to save.
"""
import json
import math
import os
import random
import signal
import sys
import time

FSTAR = {"branin": 0.397887, "hartmann3": -3.86278, "finetune": 1.0}


def branin(a, b, c, rank, opt):
    x1, x2 = 1.5 * a - 5.0, b
    t = x2 - 5.1 / (4 * math.pi ** 2) * x1 ** 2 + 5 / math.pi * x1 - 6
    return t * t + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x1) + 10


def hartmann3(a, b, c, rank, opt):
    al = [1.0, 1.2, 3.0, 3.2]
    A = [[3.0, 10, 30], [0.1, 10, 35], [3.0, 10, 30], [0.1, 10, 35]]
    P = [[0.3689, 0.1170, 0.2673], [0.4699, 0.4387, 0.7470],
         [0.1091, 0.8732, 0.5547], [0.0381, 0.5743, 0.8828]]
    x = [a, b, c]
    return -sum(al[i] * math.exp(-sum(A[i][j] * (x[j] - P[i][j]) ** 2 for j in range(3)))
                for i in range(4))


def finetune(a, b, c, rank, opt):
    lr = a
    v = 1.0 + 0.5 * (math.log10(lr) + 3) ** 2 + 0.15 * (math.log2(rank) - 4) ** 2
    v += 0.0 if opt == "adamw" else 0.4
    v += 0.2 * ((c - 30) / 50.0) ** 2
    return v


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    fn, steps = sys.argv[1], int(sys.argv[2])
    a, b, c = float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
    rank, opt = int(sys.argv[6]), sys.argv[7]
    seed = int(sys.argv[8]) if len(sys.argv) > 8 else 0
    f = {"branin": branin, "hartmann3": hartmann3, "finetune": finetune}[fn](a, b, c, rank, opt)
    rng = random.Random(f"{fn}:{a!r}:{b!r}:{c!r}:{rank}:{opt}:{seed}")
    gap = 1 + abs(f - FSTAR[fn])
    delay = float(os.environ.get("SWEEP_TRAINER_DELAY", "0"))
    for k in range(1, steps + 1):
        v = f + gap * 3.0 / (1 + k) + rng.gauss(0, 0.02 * gap)
        print(json.dumps({"step": k, "total_steps": steps, "split": "validation", "loss": v}),
              flush=True)
        if delay > 0:
            time.sleep(delay)
    print(json.dumps({"metric": "loss", "split": "validation", "value": f}), flush=True)


if __name__ == "__main__":
    main()
