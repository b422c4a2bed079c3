#!/usr/bin/env python3
"""Do the tokenizer files ftlab writes for a GGUF base load in Hugging Face as they are?

For SmolLM2 (byte-level BPE), Gemma 3 and the tiny Llama-2-style tokenizer (SentencePiece),
`ftlab tokenize MODEL --write-hf DIR` writes tokenizer.json, tokenizer_config.json and
special_tokens_map.json (what `ftlab export --format merged-safetensors` puts beside the
weights); this script loads each DIR with transformers' AutoTokenizer.from_pretrained(DIR)
and with tokenizers' Tokenizer.from_file, encodes the tokenizer corpus of the fixtures
(tests/reference/tokenizer_smollm2.jsonl, tokenizer_gemma3.jsonl, tokenizer_tiny_spm.jsonl)
and counts the texts whose ids or decode differ from the reference ids there (for Gemma
also the conversations of chat_gemma3.jsonl rendered by the chat template written into
tokenizer_config.json, against Gemma 3's own template). The counts
go to tests/reference/exported_tokenizers_check.json (committed; all must be 0).

Run from the repository root after `make`:  python3 tests/reference/check_exported_tokenizers.py
(made with transformers 5.25.0, tokenizers 0.23.3)
"""
import json
import subprocess
import sys
import tempfile

import tokenizers
import transformers
from transformers import AutoTokenizer

CASES = [
    ("smollm2", "models/SmolLM2-135M-Instruct.Q4_1.gguf", "tests/reference/tokenizer_smollm2.jsonl"),
    ("gemma3", "models/gemma-3-270m-q4_k_m.gguf", "tests/reference/tokenizer_gemma3.jsonl"),
    ("tiny_spm", "tests/reference/fixtures/tiny-spm.gguf", "tests/reference/tokenizer_tiny_spm.jsonl"),
]
OUT = "tests/reference/exported_tokenizers_check.json"


def rows(path):
    with open(path, encoding="utf-8") as f:
        out = [json.loads(line) for line in f]
    return out[1:] if "made_by" in out[0] else out


def check(name, model, fixture):
    with tempfile.TemporaryDirectory() as d:
        subprocess.run(["build/ftlab", "tokenize", model, "--write-hf", d], check=True,
                       stdout=subprocess.DEVNULL)
        tok = AutoTokenizer.from_pretrained(d)
        raw = tokenizers.Tokenizer.from_file(d + "/tokenizer.json")
        with open(d + "/tokenizer_config.json", encoding="utf-8") as f:
            cfg = json.load(f)
    bad = {"ids": 0, "ids_text": 0, "decoded": 0, "tokenizers_ids": 0}
    items = rows(fixture)
    for r in items:
        t = r["text"]
        ids = tok(t)["input_ids"]
        bad["ids"] += ids != r["ids"]
        bad["tokenizers_ids"] += raw.encode(t).ids != r["ids"]
        if "ids_text" in r:
            bt = tok.backend_tokenizer
            bt.encode_special_tokens = True
            ids_text = bt.encode(t, add_special_tokens=False).ids
            bt.encode_special_tokens = False
            bad["ids_text"] += ids_text != r["ids_text"]
            bad["decoded"] += tok.decode(r["ids_text"]) != r["decoded"]
        else:
            bad["decoded"] += tok.decode(r["ids"]) != t
    if name == "gemma3":  # the chat template written for Gemma renders as Gemma 3's own
        bad["chat_text"] = 0
        for c in rows("tests/reference/chat_gemma3.jsonl"):
            bad["chat_text"] += tok.apply_chat_template(c["messages"], tokenize=False) != c["text"]
            p = tok.apply_chat_template(c["messages"][:-1], tokenize=False, add_generation_prompt=True)
            bad["chat_text"] += p != c["prompt"]
    return {"texts": len(items), "differ": bad, "tokenizer_class": type(tok).__name__,
            "chat_template": bool(cfg.get("chat_template")), "bos": tok.bos_token,
            "eos": tok.eos_token}


def main():
    res = {"made_by": "tests/reference/check_exported_tokenizers.py",
           "versions": {"transformers": transformers.__version__,
                        "tokenizers": tokenizers.__version__}}
    for name, model, fixture in CASES:
        res[name] = check(name, model, fixture)
        print(name, res[name])
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(res, f, indent=1)
        f.write("\n")
    if any(v for c in CASES for v in res[c[0]]["differ"].values()):
        sys.exit("some exported tokenizers differ from the reference")


if __name__ == "__main__":
    main()
