#!/usr/bin/python3
"""Reference logits for the model engine (ftlab issue #4, "Inference").

Run by hand from the repository root with Debian's /usr/bin/python3 (torch 1.13,
transformers 4.44, gguf 0.10, safetensors):
    /usr/bin/python3 tests/reference/make_logits_fixture.py
It writes, under tests/reference/fixtures/:
  logits_smollm2.json  SmolLM2-135M-Instruct: models/SmolLM2-135M-Instruct.Q4_1.gguf
                       dequantised to fp32 by gguf-py (transformers 4.44 has no Q4_1),
                       Q/K rows un-permuted to rotate-half, loaded into transformers'
                       LlamaForCausalLM; fp32 forward on several prompts tokenized by the
                       HF tokenizer of the same file (from_pretrained(gguf_file=...)).
  tiny-llama/          a tiny random LlamaForCausalLM (GQA, untied head) saved by
                       save_pretrained (config.json + model.safetensors) ...
  tiny-llama.gguf      ... and the same weights as a llama GGUF (F32, Q/K rows permuted
                       the way llama.cpp's converter does), written with gguf.GGUFWriter.
  tiny-gpt2/           a tiny random GPT2LMHeadModel (gelu_new, tied head) ...
  tiny-gpt2.gguf       ... and as a gpt2 GGUF (Conv1D weights transposed to (out, in)).
  logits_tiny.json     the PyTorch logits of both tiny models on fixed token ids.
For each prompt the fixture keeps the token ids, the last position's top-10 ids and
values, 256 evenly spaced values of the last position, and the first 16 vocabulary
entries of every position (not the whole vocabulary).
"""
import json
import os
import sys
import types

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import (AutoModelForCausalLM, AutoTokenizer, GPT2Config,  # noqa: E402
                          GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM)

# after transformers (which probes sentencepiece's import spec):
if "sentencepiece" not in sys.modules:
    try:
        import sentencepiece  # noqa: F401
    except ImportError:  # gguf 0.10 imports it for vocab helpers this script does not use
        stub = types.ModuleType("sentencepiece")
        stub.SentencePieceProcessor = object
        sys.modules["sentencepiece"] = stub
import gguf  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "fixtures")
GGUF_DIR = "models"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

PROMPTS = [
    "What is the capital of France?",
    "The quick brown fox jumps over the lazy dog. The quick brown fox",
    "def fibonacci(n):\n    if n < 2:\n        return n\n",
    "<|im_start|>user\nName three colors.<|im_end|>\n<|im_start|>assistant\n",
    "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20",
]


def summarise(ids, logits):
    logits = logits.double()
    last = logits[-1]
    v = last.shape[0]
    top = torch.topk(last, 10)
    step = max(1, v // 256)
    idx = list(range(0, v, step))[:256]
    return {
        "ids": [int(i) for i in ids],
        "top_ids": [int(i) for i in top.indices],
        "top_vals": [float(x) for x in top.values],
        "last_idx": idx,
        "last_vals": [float(last[i]) for i in idx],
        "pos_vals": [[float(x) for x in row[:16]] for row in logits],
    }


def unpermute_rows(w, n_head):
    # inverse of llama.cpp's Q/K row permutation: interleaved pairs -> rotate-half order
    return (w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def smollm2():
    # transformers 4.44 cannot dequantise Q4_1 (ggml type 3), so the tensors are
    # dequantised with gguf-py (llama.cpp's reference Python package), Q/K rows are
    # un-permuted, and the fp32 weights go into transformers' LlamaForCausalLM.
    path = os.path.join(GGUF_DIR, GGUF_FILE)
    r = gguf.GGUFReader(path)

    def meta(k):
        f = r.fields[k]
        return f.parts[f.data[0]][0]
    nh, nkv = int(meta("llama.attention.head_count")), int(meta("llama.attention.head_count_kv"))
    n_layer = int(meta("llama.block_count"))
    cfg = LlamaConfig(vocab_size=int(meta("llama.vocab_size")),
                      hidden_size=int(meta("llama.embedding_length")),
                      intermediate_size=int(meta("llama.feed_forward_length")),
                      num_hidden_layers=n_layer, num_attention_heads=nh,
                      num_key_value_heads=nkv,
                      max_position_embeddings=int(meta("llama.context_length")),
                      rms_norm_eps=float(meta("llama.attention.layer_norm_rms_epsilon")),
                      rope_theta=float(meta("llama.rope.freq_base")),
                      tie_word_embeddings=True, attn_implementation="eager")
    names = {"token_embd": "model.embed_tokens", "output_norm": "model.norm",
             "attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj",
             "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
             "attn_output": "self_attn.o_proj", "ffn_norm": "post_attention_layernorm",
             "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
    sd = {}
    for t in r.tensors:
        w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        w = w.reshape([int(x) for x in reversed(t.shape)])
        parts = t.name.split(".")
        if parts[0] == "blk":
            kind = parts[2]
            if kind == "attn_q":
                w = unpermute_rows(w, nh)
            elif kind == "attn_k":
                w = unpermute_rows(w, nkv)
            hf = "model.layers.%s.%s.weight" % (parts[1], names[kind])
        else:
            hf = names[parts[0]] + ".weight"
        sd[hf] = torch.from_numpy(np.ascontiguousarray(w))
    model = LlamaForCausalLM(cfg)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert not unexpected and all("lm_head" in k for k in missing), (missing, unexpected)
    model.tie_weights()
    model.eval()
    tok = AutoTokenizer.from_pretrained(GGUF_DIR, gguf_file=GGUF_FILE)
    out = []
    with torch.no_grad():
        for p in PROMPTS:
            ids = tok(p).input_ids
            logits = model(torch.tensor([ids])).logits[0]
            out.append(dict(prompt=p, **summarise(ids, logits)))
    return {"model": path,
            "how": "gguf %s dequantize + transformers %s LlamaForCausalLM (eager, fp32); "
                   "ids from AutoTokenizer.from_pretrained(gguf_file=...)"
                   % (getattr(gguf, "__version__", "0.10"),
                      __import__("transformers").__version__),
            "prompts": out}


def randomise(model, seed, std):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or "ln_" in name:
                if name.endswith("bias"):
                    p.copy_(0.1 * torch.randn(p.shape, generator=g))
                else:
                    p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(std * torch.randn(p.shape, generator=g))


def permute_rows(w, n_head):
    # llama.cpp's convert_hf_to_gguf: rotate-half row order -> interleaved pairs
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def gguf_tokenizer(w, vocab):
    w.add_tokenizer_model("gpt2")
    w.add_token_list(["<t%d>" % i for i in range(vocab)])
    w.add_token_types([1] * vocab)
    w.add_token_merges([])


def tiny_llama():
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=64, rms_norm_eps=1e-5, rope_theta=10000.0,
                      tie_word_embeddings=False, attn_implementation="eager")
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    randomise(model, 1, 0.25)
    model.eval()
    d = os.path.join(FIX, "tiny-llama")
    model.save_pretrained(d, safe_serialization=True)
    sd = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    w = gguf.GGUFWriter(os.path.join(FIX, "tiny-llama.gguf"), "llama")
    w.add_name("tiny-llama")
    w.add_block_count(2)
    w.add_context_length(64)
    w.add_embedding_length(32)
    w.add_feed_forward_length(48)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(64)
    gguf_tokenizer(w, 64)
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    for i in range(2):
        p = "model.layers.%d." % i
        w.add_tensor("blk.%d.attn_norm.weight" % i, sd[p + "input_layernorm.weight"])
        w.add_tensor("blk.%d.attn_q.weight" % i,
                     np.ascontiguousarray(permute_rows(sd[p + "self_attn.q_proj.weight"], 4)))
        w.add_tensor("blk.%d.attn_k.weight" % i,
                     np.ascontiguousarray(permute_rows(sd[p + "self_attn.k_proj.weight"], 2)))
        w.add_tensor("blk.%d.attn_v.weight" % i, sd[p + "self_attn.v_proj.weight"])
        w.add_tensor("blk.%d.attn_output.weight" % i, sd[p + "self_attn.o_proj.weight"])
        w.add_tensor("blk.%d.ffn_norm.weight" % i, sd[p + "post_attention_layernorm.weight"])
        w.add_tensor("blk.%d.ffn_gate.weight" % i, sd[p + "mlp.gate_proj.weight"])
        w.add_tensor("blk.%d.ffn_up.weight" % i, sd[p + "mlp.up_proj.weight"])
        w.add_tensor("blk.%d.ffn_down.weight" % i, sd[p + "mlp.down_proj.weight"])
    w.add_tensor("output_norm.weight", sd["model.norm.weight"])
    w.add_tensor("output.weight", sd["lm_head.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return model


def tiny_gpt2():
    cfg = GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=4, n_positions=32,
                     activation_function="gelu_new", layer_norm_epsilon=1e-5,
                     attn_implementation="eager")
    torch.manual_seed(0)
    model = GPT2LMHeadModel(cfg)
    randomise(model, 2, 0.25)
    model.eval()
    d = os.path.join(FIX, "tiny-gpt2")
    model.save_pretrained(d, safe_serialization=True)
    sd = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    w = gguf.GGUFWriter(os.path.join(FIX, "tiny-gpt2.gguf"), "gpt2")
    w.add_name("tiny-gpt2")
    w.add_block_count(2)
    w.add_context_length(32)
    w.add_embedding_length(32)
    w.add_feed_forward_length(128)
    w.add_head_count(4)
    w.add_layer_norm_eps(1e-5)
    w.add_vocab_size(64)
    gguf_tokenizer(w, 64)
    t = lambda a: np.ascontiguousarray(a.T)  # Conv1D (in, out) -> (out, in)
    w.add_tensor("token_embd.weight", sd["transformer.wte.weight"])
    w.add_tensor("position_embd.weight", sd["transformer.wpe.weight"])
    for i in range(2):
        p = "transformer.h.%d." % i
        w.add_tensor("blk.%d.attn_norm.weight" % i, sd[p + "ln_1.weight"])
        w.add_tensor("blk.%d.attn_norm.bias" % i, sd[p + "ln_1.bias"])
        w.add_tensor("blk.%d.attn_qkv.weight" % i, t(sd[p + "attn.c_attn.weight"]))
        w.add_tensor("blk.%d.attn_qkv.bias" % i, sd[p + "attn.c_attn.bias"])
        w.add_tensor("blk.%d.attn_output.weight" % i, t(sd[p + "attn.c_proj.weight"]))
        w.add_tensor("blk.%d.attn_output.bias" % i, sd[p + "attn.c_proj.bias"])
        w.add_tensor("blk.%d.ffn_norm.weight" % i, sd[p + "ln_2.weight"])
        w.add_tensor("blk.%d.ffn_norm.bias" % i, sd[p + "ln_2.bias"])
        w.add_tensor("blk.%d.ffn_up.weight" % i, t(sd[p + "mlp.c_fc.weight"]))
        w.add_tensor("blk.%d.ffn_up.bias" % i, sd[p + "mlp.c_fc.bias"])
        w.add_tensor("blk.%d.ffn_down.weight" % i, t(sd[p + "mlp.c_proj.weight"]))
        w.add_tensor("blk.%d.ffn_down.bias" % i, sd[p + "mlp.c_proj.bias"])
    w.add_tensor("output_norm.weight", sd["transformer.ln_f.weight"])
    w.add_tensor("output_norm.bias", sd["transformer.ln_f.bias"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return model


def tiny_logits():
    ids = [[5, 17, 63, 0, 42, 42, 8, 30, 1, 2, 3, 60], [9, 9, 9], [33]]
    out = {}
    for name, model in (("tiny-llama", tiny_llama()), ("tiny-gpt2", tiny_gpt2())):
        res = []
        with torch.no_grad():
            for seq in ids:
                logits = model(torch.tensor([seq])).logits[0]
                r = summarise(seq, logits)
                r["all_vals"] = [[float(x) for x in row] for row in logits.double()]
                res.append(r)
        out[name] = res
    # the GGUF copy of the llama loads in transformers to the same logits
    m2 = AutoModelForCausalLM.from_pretrained(FIX, gguf_file="tiny-llama.gguf",
                                              torch_dtype=torch.float32)
    with torch.no_grad():
        a = m2(torch.tensor([ids[0]])).logits[0].double()
    b = torch.tensor(out["tiny-llama"][0]["all_vals"], dtype=torch.float64)
    assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()
    return {"how": "PyTorch forward of the models in tiny-llama/ and tiny-gpt2/ (fp32); "
                   "tiny-llama.gguf checked to load in transformers to the same logits",
            "models": out}


def main():
    os.makedirs(FIX, exist_ok=True)
    with open(os.path.join(FIX, "logits_tiny.json"), "w") as f:
        json.dump(tiny_logits(), f)
    with open(os.path.join(FIX, "logits_smollm2.json"), "w") as f:
        json.dump(smollm2(), f)


if __name__ == "__main__":
    main()
