#!/usr/bin/env python3
"""Writes data/train.jsonl and data/test.jsonl for the exec example: short product
reviews labelled positive/negative, generated from word lists with a fixed seed (how the
committed files were made: `python3 make_data.py`)."""
import json
import random

POS = ["great", "excellent", "love", "perfect", "fantastic", "works", "happy", "recommend",
       "solid", "fast"]
NEG = ["broken", "terrible", "hate", "slow", "refund", "useless", "awful", "returned",
       "disappointed", "cheap"]
NEUTRAL = ["the", "product", "it", "this", "was", "and", "very", "after", "a", "week",
           "delivery", "box", "price"]


def example(rng, label):
    words = rng.sample(POS if label == "positive" else NEG, 2)
    words += rng.sample(NEUTRAL, 4)
    # Some noise: one word of the other class.
    if rng.random() < 0.25:
        words.append(rng.choice(NEG if label == "positive" else POS))
    rng.shuffle(words)
    return {"prompt": " ".join(words), "completion": label}


def main():
    rng = random.Random(7)
    for name, n in (("train", 80), ("test", 24)):
        with open(f"data/{name}.jsonl", "w") as f:
            for i in range(n):
                label = "positive" if i % 2 == 0 else "negative"
                f.write(json.dumps(example(rng, label)) + "\n")


if __name__ == "__main__":
    main()
