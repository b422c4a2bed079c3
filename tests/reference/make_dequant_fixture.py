#!/usr/bin/python3
"""Dequantisation fixture for backends/native/io/dequant.c (tests/unit/test_gguf_dequant.c).

How it is made: for each GGML type, blocks of bytes are taken from the real SmolLM2 GGUF
(models/SmolLM2-135M-Instruct.Q4_1.gguf: its Q4_1, Q8_0 and F32 tensors) or, for types
that file does not contain, made by quantising random normal values with the `gguf`
package's own quantize() where it has one (Q4_0/Q4_1/Q8_0/BF16), and otherwise as random
bytes with valid fp16 scales (Q4_K, Q5_K, Q6_K, F16). Q5_0 (and again Q4_K, Q6_K, Q8_0)
also come from the real Gemma 3 270M GGUF (models/gemma-3-270m-q4_k_m.gguf, `make model`),
Q5_0 and Q5_1 also from quantize(). The expected values are gguf.quants.dequantize() of
those bytes (gguf 0.10 for the first cases; gguf 0.19, numpy 2, venv /work/refenv, for the
Q5_0/Q5_1/Gemma cases appended after them: the earlier cases come out the same with 0.19).

Output (committed): tests/reference/dequant_fixture.json
  [{"type": "Q4_K", "id": 12, "source": ..., "hex": "...", "values": [...]}, ...]
Run: python3 tests/reference/make_dequant_fixture.py   (from the repo root; needs gguf, numpy)
"""
import json
import sys
import types

if "sentencepiece" not in sys.modules:
    stub = types.ModuleType("sentencepiece")
    stub.SentencePieceProcessor = object
    sys.modules["sentencepiece"] = stub
import numpy as np  # noqa: E402
import gguf  # noqa: E402
from gguf import GGMLQuantizationType as Q  # noqa: E402
from gguf.quants import dequantize  # noqa: E402

GGUF = "models/SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA = "models/gemma-3-270m-q4_k_m.gguf"
OUT = "tests/reference/dequant_fixture.json"
N_BLOCKS = 4


def entry(qt, raw, source):
    raw = np.frombuffer(bytes(raw), dtype=np.uint8)
    bs, ts = gguf.GGML_QUANT_SIZES[qt]
    vals = dequantize(raw.reshape(-1, ts * (raw.size // ts)), qt).astype(np.float32).ravel()
    assert vals.size == raw.size // ts * bs
    return {"type": qt.name, "id": int(qt), "source": source, "hex": raw.tobytes().hex(),
            "values": [float(v) for v in vals]}


def main():
    rng = np.random.default_rng(7)
    out = []
    r = gguf.GGUFReader(GGUF)
    seen = set()
    for t in r.tensors:
        qt = t.tensor_type
        if qt in seen or qt not in (Q.Q4_1, Q.Q8_0, Q.F32):
            continue
        seen.add(qt)
        bs, ts = gguf.GGML_QUANT_SIZES[qt]
        raw = np.asarray(t.data).view(np.uint8).ravel()[: N_BLOCKS * ts * (64 if qt == Q.F32 else 1)]
        out.append(entry(qt, raw, f"SmolLM2 tensor {t.name}"))
    for qt in (Q.Q4_0, Q.Q4_1, Q.Q8_0, Q.BF16):
        bs, ts = gguf.GGML_QUANT_SIZES[qt]
        x = rng.normal(0, 0.05, size=N_BLOCKS * (bs if bs > 1 else 64)).astype(np.float32)
        raw = gguf.quants.quantize(x.reshape(1, -1), qt).view(np.uint8).ravel()
        out.append(entry(qt, raw, "gguf.quants.quantize of normal(0, 0.05)"))
    for qt in (Q.Q4_K, Q.Q5_K, Q.Q6_K, Q.F16):
        bs, ts = gguf.GGML_QUANT_SIZES[qt]
        nb = N_BLOCKS if bs > 1 else 64
        raw = rng.integers(0, 256, size=(nb, ts), dtype=np.uint8)
        def scale():
            return np.frombuffer(np.float16(rng.uniform(-0.01, 0.01)).tobytes(), np.uint8)
        for b in range(nb):
            if qt in (Q.Q4_K, Q.Q5_K):  # d, dmin at the start
                raw[b, 0:2] = scale()
                raw[b, 2:4] = scale()
            elif qt == Q.Q6_K:  # d at the end
                raw[b, 208:210] = scale()
            else:  # F16: every element a finite half
                raw[b, 0:2] = np.frombuffer(np.float16(rng.normal()).tobytes(), np.uint8)
        out.append(entry(qt, raw.ravel(), "random bytes with finite fp16 scales"))
    # Appended later (the cases above are unchanged): the Gemma 3 file's types.
    rng = np.random.default_rng(17)
    for qt in (Q.Q5_0, Q.Q5_1):
        bs, ts = gguf.GGML_QUANT_SIZES[qt]
        x = rng.normal(0, 0.05, size=N_BLOCKS * bs).astype(np.float32)
        raw = gguf.quants.quantize(x.reshape(1, -1), qt).view(np.uint8).ravel()
        out.append(entry(qt, raw, "gguf.quants.quantize of normal(0, 0.05)"))
    r = gguf.GGUFReader(GEMMA)
    seen = set()
    for t in r.tensors:
        qt = t.tensor_type
        if qt in seen or qt not in (Q.Q5_0, Q.Q4_K, Q.Q6_K, Q.Q8_0):
            continue
        seen.add(qt)
        bs, ts = gguf.GGML_QUANT_SIZES[qt]
        raw = np.asarray(t.data).view(np.uint8).ravel()[: N_BLOCKS * ts]
        out.append(entry(qt, raw, f"Gemma 3 270M tensor {t.name}"))
    with open(OUT, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {len(out)} cases to {OUT}: " + ", ".join(e["type"] for e in out))


if __name__ == "__main__":
    main()
