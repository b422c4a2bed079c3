#!/usr/bin/env python3
"""A small real trainer for ftlab's exec backend: bag-of-words logistic regression on
short reviews, trained by minibatch SGD. Standard library only.

It speaks the protocol of docs/exec-backend.md: one JSON object per line on stdout for
the training loss history, final results (tuned and base) and test predictions; other
lines are free text. It checkpoints to $FTLAB_RUN_DIR/checkpoint.json every 10 steps and
on SIGTERM, and continues from there when FTLAB_RESUME=1."""
import argparse
import json
import math
import os
import random
import signal
import sys
import time

stop = False


def on_term(signum, frame):
    global stop
    stop = True


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def features(text, vocab):
    return [vocab[w] for w in text.split() if w in vocab]


def prob(feats, w, b):
    z = b + sum(w[i] for i in feats)
    return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))


def loss_of(data, vocab, w, b):
    total = 0.0
    for ex in data:
        p = prob(features(ex["prompt"], vocab), w, b)
        y = 1.0 if ex["completion"] == "positive" else 0.0
        total -= y * math.log(max(p, 1e-12)) + (1 - y) * math.log(max(1 - p, 1e-12))
    return total / len(data)


def emit(obj):
    print(json.dumps(obj), flush=True)


def evaluate(model, data, vocab, w, b):
    emit({"split": "test", "model": model, "metric": "loss", "value": loss_of(data, vocab, w, b)})
    for i, ex in enumerate(data):
        p = prob(features(ex["prompt"], vocab), w, b)
        emit({"split": "test", "model": model, "example": i, "prompt": ex["prompt"],
              "reference": ex["completion"], "output": "positive" if p >= 0.5 else "negative"})


def save(path, state):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--base", required=True)
    ap.add_argument("--lr", type=float, required=True)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--step-delay", type=float, default=0.01)
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, on_term)
    run_dir = os.environ.get("FTLAB_RUN_DIR", ".")
    ckpt = os.path.join(run_dir, "checkpoint.json")
    train, test = load(a.train), load(a.test)
    words = sorted({w for ex in train for w in ex["prompt"].split()})
    vocab = {word: i for i, word in enumerate(words)}
    base = json.load(open(a.base))
    # The base model's words keep their weights; new words start at 0.
    w = [0.0] * len(words)
    for word, x in zip(base["vocab"], base["weights"]):
        if word in vocab:
            w[vocab[word]] = x
    b, step = float(base["bias"]), 0
    base_w, base_b = list(w), b
    rng = random.Random(a.seed)
    if os.environ.get("FTLAB_RESUME") == "1" and os.path.exists(ckpt):
        state = json.load(open(ckpt))
        w, b, step = state["w"], state["b"], state["step"]
        rng.setstate((state["rng"][0], tuple(state["rng"][1]), state["rng"][2]))
        print(f"resuming from step {step}", flush=True)
    print(f"training on {len(train)} examples, vocabulary {len(words)}, lr {a.lr}", flush=True)
    while step < a.steps:
        batch = [train[rng.randrange(len(train))] for _ in range(a.batch)]
        gw, gb, loss = [0.0] * len(w), 0.0, 0.0
        for ex in batch:
            f = features(ex["prompt"], vocab)
            y = 1.0 if ex["completion"] == "positive" else 0.0
            p = prob(f, w, b)
            loss -= y * math.log(max(p, 1e-12)) + (1 - y) * math.log(max(1 - p, 1e-12))
            for i in f:
                gw[i] += p - y
            gb += p - y
        for i in range(len(w)):
            w[i] -= a.lr * gw[i] / len(batch)
        b -= a.lr * gb / len(batch)
        step += 1
        emit({"step": step, "split": "train", "loss": loss / len(batch), "lr": a.lr,
              "total_steps": a.steps})
        if step % 10 == 0 or stop:
            save(ckpt, {"w": w, "b": b, "step": step, "rng": rng.getstate()})
        if stop:
            print(f"stopped at step {step} (checkpoint written)", flush=True)
            return 143
        time.sleep(a.step_delay)
    emit({"step": step, "split": "validation", "loss": loss_of(train, vocab, w, b)})
    evaluate("base", test, vocab, base_w, base_b)
    evaluate("tuned", test, vocab, w, b)
    with open(os.path.join(run_dir, "model.json"), "w") as f:
        json.dump({"vocab": words, "weights": w, "bias": b}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
