#!/usr/bin/python3
"""Quantize-on-load fixture for backends/native/io/dequant.c quantize_from_f32
(tests/unit/test_qmatmul.c, test_quantize_fixture).

How it is made: float32 inputs (random normal blocks at several scales, a block of zeros,
blocks whose value of largest magnitude is negative, blocks of exact .5 ties after
scaling, blocks whose scale is an fp16 subnormal) quantized to Q8_0 and Q4_0 by the `gguf`
package's quantize() (gguf 0.19, written to match llama.cpp's reference quantizers
quantize_row_q8_0_ref / quantize_row_q4_0_ref bit for bit).

Output (committed): tests/reference/quantize_fixture.json
  [{"type": "Q8_0", "input": [...], "hex": "..."}, ...]
Run: /work/refenv/bin/python tests/reference/make_quantize_fixture.py   (from the repo root)
"""
import json

import numpy as np
from gguf import GGMLQuantizationType as Q
from gguf.quants import quantize

OUT = "tests/reference/quantize_fixture.json"


def blocks():
    rng = np.random.default_rng(19)
    out = []
    for scale in (1.0, 0.02, 30.0):
        out.append(rng.standard_normal(32 * 4).astype(np.float32) * np.float32(scale))
    out.append(np.zeros(32, np.float32))
    neg = rng.standard_normal(32).astype(np.float32)
    neg[7] = -4.0 * np.abs(neg).max()
    out.append(neg)
    ties = np.array([(i % 16) - 7.5 for i in range(31)] + [127.0], np.float32)
    out.append(ties)  # Q8_0: d = 1, every x / d a tie
    out.append((rng.standard_normal(32) * 1e-6).astype(np.float32))  # subnormal fp16 d
    return np.concatenate(out)


def main():
    x = blocks()
    res = []
    for qt in (Q.Q8_0, Q.Q4_0):
        q = quantize(x.reshape(1, -1), qt)
        res.append({"type": qt.name, "input": [float(v) for v in x],
                    "hex": q.tobytes().hex()})
    with open(OUT, "w") as f:
        json.dump(res, f)
        f.write("\n")
    print("wrote", OUT, x.size, "values")


if __name__ == "__main__":
    main()
