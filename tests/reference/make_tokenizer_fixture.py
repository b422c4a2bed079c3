#!/usr/bin/python3
"""Token-id fixture for the C tokenizer (tests/unit/test_tokenizer_fixture.c).

How it is made: the vocabulary, merges and token types are read from the GGUF file
models/SmolLM2-135M-Instruct.Q4_1.gguf with the `gguf` package; a Hugging Face
`tokenizers.Tokenizer` is constructed from them with SmolLM2's own pre-tokenizer
(Sequence[Digits(individual_digits=True), ByteLevel(add_prefix_space=False)], as in the
published SmolLM2 tokenizer.json) and ByteLevel decoder; the 17 control tokens become
special added tokens. Each text is encoded with encode(text, add_special_tokens=True)
(SmolLM2 adds no BOS). As a cross-check, transformers' own GGUF tokenizer loader
(AutoTokenizer.from_pretrained(dir, gguf_file=...)) is run on the same texts without
special tokens and the number of disagreements is printed (it is not used for the
fixture: transformers 4.44 rebuilds this tokenizer with a plain ByteLevel pre-tokenizer,
without SmolLM2's digit split, and prepends BOS; when last run, 182 of 560 texts differed,
all containing numbers, and 0 differed once the digit split was added to it).

Outputs (committed):
  tests/reference/tokenizer_smollm2.jsonl   {"text": ..., "ids": [...]} per line
  tests/reference/smollm2_tokenizer.json    that Tokenizer saved as tokenizer.json

Run: /usr/bin/python3 tests/reference/make_tokenizer_fixture.py   (from the repo root)
"""
import importlib.machinery
import json
import os
import random
import sys
import types

# gguf 0.10 imports sentencepiece for its vocab helpers, which this script does not use.
if "sentencepiece" not in sys.modules:
    try:
        import sentencepiece  # noqa: F401
    except ImportError:
        stub = types.ModuleType("sentencepiece")
        stub.SentencePieceProcessor = object
        stub.__spec__ = importlib.machinery.ModuleSpec("sentencepiece", None)
        sys.modules["sentencepiece"] = stub
import gguf  # noqa: E402
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers  # noqa: E402

GGUF = "models/SmolLM2-135M-Instruct.Q4_1.gguf"
OUT_JSONL = "tests/reference/tokenizer_smollm2.jsonl"
OUT_TOKJSON = "tests/reference/smollm2_tokenizer.json"


def field_strings(r, key):
    f = r.fields[key]
    return [bytes(f.parts[i]).decode("utf-8") for i in f.data]


def field_ints(r, key):
    f = r.fields[key]
    return [int(f.parts[i][0]) for i in f.data]


def build_tokenizer():
    r = gguf.GGUFReader(GGUF)
    tokens = field_strings(r, "tokenizer.ggml.tokens")
    types_ = field_ints(r, "tokenizer.ggml.token_type")
    merges = [tuple(m.split(" ", 1)) for m in field_strings(r, "tokenizer.ggml.merges")]
    assert bytes(r.fields["tokenizer.ggml.pre"].parts[-1]).decode() == "smollm"
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    specials = [AddedToken(t, special=True, normalized=False)
                for t, ty in zip(tokens, types_) if ty == 3]
    tok.add_special_tokens(specials)
    return tok


def texts():
    rng = random.Random(20261124)
    words = ["the", "model", "Fine-tuning", "LoRA", "rank", "alpha", "dataset", "is", "was",
             "don't", "I'm", "we'll", "they've", "she'd", "It's", "café", "naïve", "résumé",
             "Zürich", "São", "Paulo", "Ελληνικά", "русский", "العربية", "עברית", "हिन्दी",
             "東京", "你好", "世界", "こんにちは", "한국어", "😀", "🚀", "👍🏽", "🇫🇷", "👨‍👩‍👧",
             "x", "y_1", "__init__", "0x1F", "3.14159", "1e-5", "2026-11-24", "$100",
             "100%", "#tag", "@user", "https://example.com/a?b=c", "e-mail", "C++", "f(x)",
             "\u00a0", "\u200b", "ﬁ", "Å", "A\u030a", "ǅ", "ß", "ΣΑΣ", "¼", "²", "٣", "Ⅻ"]
    seps = [" ", "  ", "   ", "\t", "\n", "\n\n", " \n", "\r\n", ", ", ". ", "! ", "? ",
            "; ", " - ", "\t\t", "    ", "\u3000", ""]
    specials = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<file_sep>", "<repo_name>"]
    out = [
        "", " ", "  ", "\n", "\t", "\n\n\n", " \t \n ", "a", "A", "0", "00", "0123456789",
        "12345678901234567890", "The quick brown fox jumps over the lazy dog.",
        "Hello, world!", "hello world", " hello world", "Hello  world", "Hello\tworld\n",
        "What is the capital of France?", "1 + 1 = 2", "3.14", "1,000,000", "x=10;y=20",
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
        "<|im_start|>user\nhi<|im_end|>", "<|endoftext|>", "<|im_end|><|im_end|>",
        "<|im_start", "im_start|>", "< |im_start|>", "<|IM_START|>",
        "def f(x):\n    return x * 2\n", "int main(void) {\n\treturn 0;\n}\n",
        "for (int i = 0; i < n; i++) { sum += a[i]; }", "    \n    \n", "a\n\n\nb",
        "   leading", "trailing   ", "mixed \t\n whitespace", "tabs\t\t\tand  spaces",
        "émoji 😀😀😀 and CJK 漢字かなカナ", "Ünïcödé àccénts", "naïve café résumé",
        "I'm sure they've said we'll go, don't you think? She'd know. It's 'quoted'.",
        "I'M SURE THEY'VE", "'s 't 're 've 'm 'll 'd", "''''", "\"double\" 'single'",
        "🙂", "🇺🇸🇯🇵", "👩‍💻 coding", "∀x∈ℝ: x² ≥ 0", "½ ⅓ ¼", "①②③", "٠١٢٣٤٥٦٧٨٩",
        "\u00a0nbsp\u00a0", "zero\u200bwidth", "line\u2028sep", "\u0085next line",
        "https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct",
        "{\"key\": [1, 2, 3], \"nested\": {\"a\": null}}", "SELECT * FROM runs WHERE id = 42;",
        "$ ftlab run experiments/lora.yaml --set lr=2e-4", "a" * 200, "ab" * 150,
        " " * 40, "\n" * 12, "9" * 30, "🚀" * 20,
    ]
    while len(out) < 560:
        kind = rng.randrange(6)
        n = rng.randrange(1, 14)
        parts = []
        for _ in range(n):
            parts.append(rng.choice(words))
            parts.append(rng.choice(seps))
        s = "".join(parts)
        if kind == 0:
            s = rng.choice(specials) + s + rng.choice(specials)
        elif kind == 1:
            s = "".join(str(rng.randrange(10 ** rng.randrange(1, 12))) + rng.choice(seps)
                        for _ in range(n))
        elif kind == 2:
            s = "<|im_start|>user\n" + s + "<|im_end|>\n<|im_start|>assistant\n"
        elif kind == 3:
            s = "".join(chr(rng.choice([rng.randrange(0x20, 0x7f), rng.randrange(0xa0, 0x2000),
                                        rng.randrange(0x3000, 0xa000), rng.randrange(0x1f300, 0x1fa00)]))
                        for _ in range(rng.randrange(1, 40)))
        elif kind == 4:
            s = "    " * rng.randrange(0, 3) + "if (" + s.strip() + ") {\n\t" + s + "\n}"
        out.append(s)
    return out


def main():
    tok = build_tokenizer()
    items = texts()
    with open(OUT_JSONL, "w", encoding="utf-8") as f:
        for t in items:
            ids = tok.encode(t, add_special_tokens=True).ids
            assert tok.decode(ids, skip_special_tokens=False) == t, repr(t)
            f.write(json.dumps({"text": t, "ids": ids}, ensure_ascii=False) + "\n")
    tok.save(OUT_TOKJSON)
    print(f"wrote {len(items)} texts to {OUT_JSONL} and {OUT_TOKJSON}")
    try:
        from transformers import AutoTokenizer
        d, name = os.path.split(os.path.abspath(GGUF))
        hf = AutoTokenizer.from_pretrained(d, gguf_file=name)
        bad = sum(hf(t, add_special_tokens=False)["input_ids"] != tok.encode(t).ids for t in items)
        print(f"cross-check with transformers' GGUF loader: {bad} of {len(items)} differ")
        bt = hf.backend_tokenizer
        bt.pre_tokenizer = tok.pre_tokenizer
        bad = sum(bt.encode(t, add_special_tokens=False).ids != tok.encode(t).ids for t in items)
        print(f"  ... with SmolLM2's digit split added to it: {bad} differ")
    except Exception as e:  # informational only
        print(f"cross-check with transformers' GGUF loader skipped: {e}")


if __name__ == "__main__":
    main()
