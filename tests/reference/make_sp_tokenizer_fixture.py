#!/usr/bin/env python3
"""SentencePiece tokenizer fixtures (tests/unit/test_tokenizer_spm.c).

Reference: Hugging Face's fast tokenizer as transformers builds it from the same GGUF file
(AutoTokenizer.from_pretrained(dir, gguf_file=...)), which is what a user of that model
gets from transformers. Made with transformers 5.25.0, tokenizers 0.23.3, sentencepiece
0.2.3, gguf 0.19.0 (Python 3.11); the versions used are written into the outputs.

1. Gemma 3 (models/gemma-3-270m-q4_k_m.gguf, `make model`): for each corpus text
   - ids: encode(text) with add_special_tokens=True (BOS) and special tokens parsed;
   - ids_text: the same without BOS and with special tokens treated as plain text
     (tokenizers' encode_special_tokens), what ftlab does with user text;
   - decoded: decode(ids_text) (byte-exact round trip expected).
   The merges transformers recovers from the vocabulary are not stored (514,906 of them);
   their SHA-256 (as "left right" lines) is, and the C test recomputes it. The pipeline
   parts of the tokenizer.json that save_pretrained writes (everything but vocab and
   merges) go to gemma3_tokenizer_skeleton.json so the C test can read exactly that form.
   Chat: a few conversations through Gemma 3's chat template (GEMMA3_CHAT_TEMPLATE below,
   the Jinja template of Google's instruction-tuned Gemma 3 checkpoints; the GGUF carries
   none) with apply_chat_template: the text and its ids (chat_gemma3.jsonl).
   As a cross-check the same texts are encoded with the sentencepiece library on a model
   proto rebuilt from the GGUF (pieces, scores, types; BPE, byte fallback, no dummy
   prefix) and the number of texts where it disagrees with HF is recorded ("spm_differs").
2. A tiny Llama-2-style tokenizer written here (tests/reference/fixtures/tiny-spm.gguf:
   <unk> <s> </s>, 256 byte tokens, a few hundred pieces learned by sentencepiece's BPE
   trainer on a small built-in text): ids and decode from transformers for the same corpus,
   and the tokenizer.json transformers saves for it (tiny_spm_tokenizer.json), which is
   the Metaspace form of Llama 2 and TinyLlama.

Run from the repository root:  python3 tests/reference/make_sp_tokenizer_fixture.py
"""
import hashlib
import io
import json
import os
import random
import sys
import tempfile

import gguf
import numpy as np
import sentencepiece as spm
import tokenizers
import transformers
from sentencepiece import sentencepiece_model_pb2 as pb
from transformers import AutoTokenizer

GEMMA = "models/gemma-3-270m-q4_k_m.gguf"
OUT_GEMMA = "tests/reference/tokenizer_gemma3.jsonl"
OUT_SKELETON = "tests/reference/gemma3_tokenizer_skeleton.json"
OUT_CHAT = "tests/reference/chat_gemma3.jsonl"

GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}{%- set first_user_prefix = \"\" -%}{%- set loop_messages = messages -%}"
    "{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{%- endif -%}"
    "{%- if (message['role'] == 'assistant') -%}{%- set role = \"model\" -%}"
    "{%- else -%}{%- set role = message['role'] -%}{%- endif -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else \"\") }}"
    "{{ message['content'] | trim }}"
    "{{ '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{'<start_of_turn>model\n'}}{%- endif -%}")

CHATS = [
    [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi there"},
     {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "  2+2?\n"},
     {"role": "assistant", "content": " Four, 4. \n\n"}],
    [{"role": "user", "content": "Write code:\n```c\nint main(void) { return 0; }\n```"},
     {"role": "assistant", "content": "It returns 0.\tDone 😀 漢字"}],
    [{"role": "user", "content": "Say <end_of_turn> and <start_of_turn>model"},
     {"role": "assistant", "content": "<bos> is just text here"}],
]
TINY_GGUF = "tests/reference/fixtures/tiny-spm.gguf"
OUT_TINY = "tests/reference/tokenizer_tiny_spm.jsonl"
OUT_TINY_JSON = "tests/reference/tiny_spm_tokenizer.json"

VERSIONS = {"transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
            "sentencepiece": spm.__version__, "gguf": "0.19.0"}


def corpus(specials):
    rng = random.Random(20261204)
    words = ["the", "model", "Fine-tuning", "LoRA", "rank", "alpha", "dataset", "is", "was",
             "don't", "I'm", "we'll", "café", "naïve", "résumé", "Zürich", "São", "Paulo",
             "Ελληνικά", "русский", "العربية", "עברית", "हिन्दी", "東京", "你好", "世界",
             "こんにちは", "한국어", "😀", "🚀", "👍🏽", "🇫🇷", "👨‍👩‍👧", "x", "y_1", "__init__",
             "0x1F", "3.14159", "1e-5", "2026-12-04", "$100", "100%", "#tag", "@user",
             "https://example.com/a?b=c", "C++", "f(x)", "\u00a0", "\u200b", "ﬁ", "Å",
             "A\u030a", "ß", "ΣΑΣ", "¼", "²", "٣", "Ⅻ", "<table>", "<b>", "</s>", "<s>",
             "\x01", "\x7f", "\ufeff", "\U0001fae8", "\U000e0041"]
    seps = [" ", "  ", "   ", "\t", "\n", "\n\n", " \n", "\r\n", ", ", ". ", "! ", "? ",
            "; ", " - ", "\t\t", "    ", "\u3000", "", "\n\t", "  \n  "]
    out = [
        "", " ", "  ", "   ", "\n", "\t", "\n\n\n", " \t \n ", "a", "A", "0", "00",
        "0123456789", "12345678901234567890", "The quick brown fox jumps over the lazy dog.",
        "Hello, world!", "hello world", " hello world", "  hello world", "Hello  world",
        "Hello\tworld\n", "What is the capital of France?", "1 + 1 = 2", "3.14",
        "1,000,000", "x=10;y=20", "def f(x):\n    return x * 2\n",
        "int main(void) {\n\treturn 0;\n}\n", "for (int i = 0; i < n; i++) { sum += a[i]; }",
        "    \n    \n", "a\n\n\nb", "   leading", "trailing   ", "mixed \t\n whitespace",
        "tabs\t\t\tand  spaces", "émoji 😀😀😀 and CJK 漢字かなカナ", "Ünïcödé àccénts",
        "I'm sure they've said we'll go, don't you think?", "🙂", "🇺🇸🇯🇵", "👩‍💻 coding",
        "∀x∈ℝ: x² ≥ 0", "½ ⅓ ¼", "①②③", "\u00a0nbsp\u00a0", "zero\u200bwidth",
        "line\u2028sep", "\u0085next line", "{\"key\": [1, 2, 3], \"nested\": {\"a\": null}}",
        "SELECT * FROM runs WHERE id = 42;", "a" * 200, "ab" * 150, " " * 40, "\n" * 40,
        "\t" * 35, "9" * 30, "🚀" * 20, "x" + " " * 33 + "y", "<table><tr><td>1</td></tr></table>",
        "▁", "▁▁hello", "<0x41>", "<unk>",
    ]
    for s in specials:
        out += [s, s + s, "a" + s + "b", " " + s + " ", s[:-1], s[1:], "<" + s]
    out.append("".join(specials))
    while len(out) < 600:
        kind = rng.randrange(6)
        n = rng.randrange(1, 14)
        parts = []
        for _ in range(n):
            parts.append(rng.choice(words))
            parts.append(rng.choice(seps))
        s = "".join(parts)
        if kind == 0 and specials:
            s = rng.choice(specials) + s + rng.choice(specials)
        elif kind == 1:
            s = "".join(str(rng.randrange(10 ** rng.randrange(1, 12))) + rng.choice(seps)
                        for _ in range(n))
        elif kind == 2 and specials:
            s = specials[0] + "user\n" + s + specials[1] + "\n" + specials[0] + "model\n"
        elif kind == 3:
            s = "".join(chr(rng.choice([rng.randrange(0x20, 0x7f), rng.randrange(0xa0, 0x2000),
                                        rng.randrange(0x3000, 0xa000), rng.randrange(0x1f300, 0x1fa00)]))
                        for _ in range(rng.randrange(1, 40)))
        elif kind == 4:
            s = "    " * rng.randrange(0, 3) + "if (" + s.strip() + ") {\n\t" + s + "\n}"
        out.append(s)
    return out


def gguf_strings(r, key):
    f = r.fields[key]
    return [bytes(f.parts[i]).decode("utf-8") for i in f.data]


def gguf_numbers(r, key):
    f = r.fields[key]
    return [f.parts[i][0].item() for i in f.data]


def encode_text(tok, text):
    """ids with special tokens treated as text and no BOS/EOS."""
    bt = tok.backend_tokenizer
    old = bt.encode_special_tokens
    bt.encode_special_tokens = True
    try:
        return bt.encode(text, add_special_tokens=False).ids
    finally:
        bt.encode_special_tokens = old


def spm_model_from_gguf(r, add_dummy_prefix):
    """A sentencepiece ModelProto with the GGUF's pieces, scores and types."""
    m = pb.ModelProto()
    tokens = gguf_strings(r, "tokenizer.ggml.tokens")
    scores = gguf_numbers(r, "tokenizer.ggml.scores")
    types = gguf_numbers(r, "tokenizer.ggml.token_type")
    kinds = {1: pb.ModelProto.SentencePiece.NORMAL, 2: pb.ModelProto.SentencePiece.UNKNOWN,
             3: pb.ModelProto.SentencePiece.CONTROL, 4: pb.ModelProto.SentencePiece.USER_DEFINED,
             5: pb.ModelProto.SentencePiece.UNUSED, 6: pb.ModelProto.SentencePiece.BYTE}
    seen_unk = False
    for t, s, ty in zip(tokens, scores, types):
        p = m.pieces.add()
        p.piece = t.replace(" ", "\u2581") if ty != 4 or not t.strip() else t
        p.score = s
        k = kinds.get(ty, pb.ModelProto.SentencePiece.NORMAL)
        if t == "<unk>" and not seen_unk:
            k = pb.ModelProto.SentencePiece.UNKNOWN
            seen_unk = True
        elif k == pb.ModelProto.SentencePiece.UNKNOWN:
            k = pb.ModelProto.SentencePiece.CONTROL
        p.type = k
    m.trainer_spec.model_type = pb.TrainerSpec.BPE
    m.trainer_spec.byte_fallback = True
    m.trainer_spec.vocab_size = len(tokens)
    m.normalizer_spec.name = "identity"
    m.normalizer_spec.add_dummy_prefix = add_dummy_prefix
    m.normalizer_spec.escape_whitespaces = True
    m.normalizer_spec.remove_extra_whitespaces = False
    sp = spm.SentencePieceProcessor()
    sp.LoadFromSerializedProto(m.SerializeToString())
    return sp


def write_jsonl(path, header, rows):
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(header, ensure_ascii=False) + "\n")
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def gemma():
    d, name = os.path.split(os.path.abspath(GEMMA))
    tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
    specials = ["<start_of_turn>", "<end_of_turn>", "<bos>", "<eos>", "<pad>", "<mask>"]
    texts = corpus(specials)
    rows, spm_differs = [], 0
    sp = spm_model_from_gguf(gguf.GGUFReader(GEMMA), add_dummy_prefix=False)
    for t in texts:
        ids = tok(t)["input_ids"]
        ids_text = encode_text(tok, t)
        dec = tok.decode(ids_text)
        rows.append({"text": t, "ids": ids, "ids_text": ids_text, "decoded": dec,
                     "decoded_ids": tok.decode(ids)})
        spm_differs += sp.encode(t) != ids_text
    j = json.loads(tok.backend_tokenizer.to_str())
    merges = j["model"]["merges"]
    lines = "\n".join((m if isinstance(m, str) else m[0] + " " + m[1]) for m in merges)
    header = {"made_by": "tests/reference/make_sp_tokenizer_fixture.py", "model": GEMMA,
              "versions": VERSIONS, "texts": len(rows), "n_merges": len(merges),
              "merges_sha256": hashlib.sha256(lines.encode("utf-8")).hexdigest(),
              "spm_differs": int(spm_differs), "bos": tok.bos_token_id, "eos": tok.eos_token_id}
    write_jsonl(OUT_GEMMA, header, rows)
    tok.chat_template = GEMMA3_CHAT_TEMPLATE
    chat_rows = []
    for msgs in CHATS:
        text = tok.apply_chat_template(msgs, tokenize=False)
        prompt = tok.apply_chat_template(msgs[:-1], tokenize=False, add_generation_prompt=True)
        # the template writes <bos>; user text must not become special tokens: encode the
        # markup with specials and the contents as text, as ftlab's loader does
        ids = tok.apply_chat_template(msgs, tokenize=True, return_dict=False)
        # HF's template parses special tokens inside message contents; ftlab keeps them as
        # text (a user cannot inject control tokens), so ids are compared only without them
        inject = any(sp in m["content"] for m in msgs for sp in specials)
        chat_rows.append({"messages": msgs, "text": text, "prompt": prompt, "ids": list(ids),
                          "specials_in_content": inject})
    write_jsonl(OUT_CHAT, {"made_by": "tests/reference/make_sp_tokenizer_fixture.py",
                           "versions": VERSIONS, "template": GEMMA3_CHAT_TEMPLATE}, chat_rows)
    j["model"]["vocab"] = {}
    j["model"]["merges"] = []
    with open(OUT_SKELETON, "w", encoding="utf-8") as f:
        json.dump(j, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"gemma: {len(rows)} texts, {len(merges)} merges, sentencepiece differs on "
          f"{spm_differs}")


TRAIN_TEXT = """The quick brown fox jumps over the lazy dog. Fine-tuning a small language model
needs a tokenizer, a dataset and patience. the theory of the thing: then there were three.
Hello world! hello again, world. 12345 67890 3.14159 and 2.71828 are numbers.
def main():\n    return 0\nfor i in range(10): print(i)
café naïve résumé Zürich 東京 你好 世界 こんにちは 한국어
"""


def tiny():
    with tempfile.TemporaryDirectory() as tmp:
        model = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(TRAIN_TEXT.split("\n") * 20), model_writer=model,
            model_type="bpe", vocab_size=600, byte_fallback=True, character_coverage=1.0,
            add_dummy_prefix=True, remove_extra_whitespaces=False, normalization_rule_name="identity",
            unk_id=0, bos_id=1, eos_id=2, pad_id=-1, split_digits=False, hard_vocab_limit=False)
        mp = pb.ModelProto()
        mp.ParseFromString(model.getvalue())
        tokens = [p.piece for p in mp.pieces]
        scores = [p.score for p in mp.pieces]
        tmap = {pb.ModelProto.SentencePiece.NORMAL: 1, pb.ModelProto.SentencePiece.UNKNOWN: 2,
                pb.ModelProto.SentencePiece.CONTROL: 3, pb.ModelProto.SentencePiece.USER_DEFINED: 4,
                pb.ModelProto.SentencePiece.UNUSED: 5, pb.ModelProto.SentencePiece.BYTE: 6}
        types = [tmap[p.type] for p in mp.pieces]
        w = gguf.GGUFWriter(TINY_GGUF, "llama")
        w.add_name("tiny-spm")
        w.add_context_length(64)
        w.add_embedding_length(8)
        w.add_block_count(1)
        w.add_feed_forward_length(16)
        w.add_head_count(2)
        w.add_tokenizer_model("llama")
        w.add_tokenizer_pre("default")
        w.add_token_list(tokens)
        w.add_token_scores(scores)
        w.add_token_types(types)
        w.add_bos_token_id(1)
        w.add_eos_token_id(2)
        w.add_unk_token_id(0)
        w.add_add_bos_token(True)
        w.add_add_eos_token(False)
        w.add_add_space_prefix(True)
        w.add_tensor("token_embd.weight", np.zeros((len(tokens), 8), dtype=np.float32))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        d, name = os.path.split(os.path.abspath(TINY_GGUF))
        tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
        texts = corpus(["<s>", "</s>", "<unk>"])
        sp = spm.SentencePieceProcessor()
        sp.LoadFromSerializedProto(mp.SerializeToString())
        rows, spm_differs = [], 0
        for t in texts:
            ids_text = encode_text(tok, t)
            rows.append({"text": t, "ids": tok(t)["input_ids"], "ids_text": ids_text,
                         "decoded": tok.decode(ids_text), "decoded_ids": tok.decode(tok(t)["input_ids"])})
            spm_differs += sp.encode(t) != ids_text
        tok.save_pretrained(tmp)
        with open(os.path.join(tmp, "tokenizer.json"), encoding="utf-8") as f:
            j = json.load(f)
        with open(OUT_TINY_JSON, "w", encoding="utf-8") as f:
            json.dump(j, f, ensure_ascii=False, indent=1)
            f.write("\n")
        header = {"made_by": "tests/reference/make_sp_tokenizer_fixture.py", "model": TINY_GGUF,
                  "versions": VERSIONS, "texts": len(rows), "n_vocab": len(tokens),
                  "spm_differs": int(spm_differs), "bos": tok.bos_token_id, "eos": tok.eos_token_id}
        write_jsonl(OUT_TINY, header, rows)
        print(f"tiny: {len(tokens)} tokens, {len(rows)} texts, sentencepiece differs on {spm_differs}")


if __name__ == "__main__":
    if not os.path.exists(GEMMA):
        sys.exit(f"{GEMMA} is missing: run `make model` first")
    tiny()
    gemma()
