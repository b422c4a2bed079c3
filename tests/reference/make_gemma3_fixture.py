#!/usr/bin/env python3
"""Reference fixtures for Gemma 3 (tests/unit/test_gemma3_reference.c).

Made with torch 2.15.0, transformers 5.25.0, peft 0.21.2, gguf 0.19.0, numpy (the venv
/work/refenv; transformers 5.25.0, tokenizers 0.23.3 and huggingface_hub 2.4.0 from an
overlay on PYTHONPATH where the venv's own copies are mixed) and llama.cpp (libllama from
a build of the llama.cpp source tree, for the `llamacpp` step). Run from the repository
root:

  python3 tests/reference/make_gemma3_fixture.py tiny
      fixtures/gemma3/tiny/ (config.json + model.safetensors): a random 7-layer
      Gemma3ForCausalLM (hidden 16, 2 heads of 256 and 1 KV head, vocabulary 64,
      sliding window 4, layers 0-4 and 6 local, 5
      global: transformers' and llama.cpp's default period of 6), saved by
      save_pretrained; tiny.gguf: the same weights as a gemma3 GGUF (norm weights stored
      as 1 + w, as llama.cpp's converter does), checked to load in transformers to the
      same logits; logits_tiny.json: transformers' logits on fixed ids; lora_tiny.json:
      peft LoRA on every linear (r 4, alpha 8, A and B from the formula below) on a
      prompt-masked batch: loss, each gradient's norm and 32 evenly spaced values, five
      AdamW steps, logits after.
  python3 tests/reference/make_gemma3_fixture.py real
      real.json: models/gemma-3-270m-q4_k_m.gguf loaded by transformers (gguf_file=,
      dequantised to fp32): five prompts (ids from the GGUF's own tokenizer in
      transformers) with logits summaries and 16-token greedy continuations; a ~600-token
      text's per-position losses and argmaxes (the sliding window of 512 acts); LoRA on
      every linear (r 4) on one masked batch: loss and each gradient's norm and first
      16 values.
  FTLAB_WRITE_FIXTURE=1 build/tests/test_gemma3_reference      (writes our exports)
  python3 tests/reference/make_gemma3_fixture.py exports
      export_check.json: our exports of the tiny LoRA run (/tmp/ftlab-gemma3-tiny-exports:
      PEFT adapter, merged safetensors directory) loaded by peft / transformers, and the
      merged GGUF by transformers, against our logits after training; with the real
      model's exports in /tmp/ftlab-gemma3-exports the same for Gemma 3 270M. (The
      exports are not committed: the C test reads its own exports back and checks that
      these records stay within tolerance.)
  python3 tests/reference/make_gemma3_fixture.py llamacpp LLAMA_CPP_DIR
      llamacpp_check.json: tests/reference/llama_cpp_logits.c compiled against
      LLAMA_CPP_DIR's libllama; the merged GGUF and the base GGUF plus our LoRA GGUF
      adapter evaluated by llama.cpp (fp32 KV cache, no flash attention) against our
      logits (tiny model; the real model's from /tmp/ftlab-gemma3-exports when present,
      the adapter applied to the base dequantised to F32 by ftlab: on the Q4_K_M file
      llama.cpp also quantises the activations of every product, which is not what is
      being checked).
      llama.cpp's CPU backend evaluates GELU through an fp16 table, so its logits agree
      to about 1e-3 of the largest, not 1e-6.

LoRA initial values (both sides compute them the same way, nothing is stored): for a
(rows, cols) matrix of layer l and module index k (q, k, v, o, gate, up, down = 0..6;
lora_A salt 0, lora_B salt 1), element i = r * cols + c gets
  ((i * 2654435761 + (l * 16 + k) * 97 + salt * 7919) % 2001 - 1000) * 1e-5 * scale
in float64, rounded to float32 (scale 1 for A, 2 for B).
"""
import json
import os
import subprocess
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "fixtures", "gemma3")
MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
REAL = "models/gemma-3-270m-q4_k_m.gguf"
TINY_EXPORTS = "/tmp/ftlab-gemma3-tiny-exports"


def lora_init(rows, cols, layer, k, salt):
    i = np.arange(rows * cols, dtype=np.int64).astype(object)
    v = [((int(x) * 2654435761 + (layer * 16 + k) * 97 + salt * 7919) % 2001 - 1000)
         for x in i]
    a = np.array(v, dtype=np.float64) * 1e-5 * (1.0 if salt == 0 else 2.0)
    return torch.from_numpy(a.astype(np.float32).reshape(rows, cols))


def set_lora(model):
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_" not in n:
                continue
            layer = int(n.split(".layers.")[1].split(".")[0])
            k = [i for i, m in enumerate(MODULES) if "." + m + "." in n][0]
            salt = 0 if "lora_A" in n else 1
            p.copy_(lora_init(p.shape[0], p.shape[1], layer, k, salt))


def summarise(ids, logits, all_vals=False):
    logits = logits.double()
    last = logits[-1]
    v = last.shape[0]
    top = torch.topk(last, 10)
    step = max(1, v // 256)
    idx = list(range(0, v, step))[:256]
    r = {"ids": [int(i) for i in ids],
         "top_ids": [int(i) for i in top.indices],
         "top_vals": [float(x) for x in top.values],
         "last_idx": idx,
         "last_vals": [float(last[i]) for i in idx],
         "pos_vals": [[float(x) for x in row[:16]] for row in logits]}
    if all_vals:
        r["all_vals"] = [[float(x) for x in row] for row in logits]
    return r


def tiny_config():
    from transformers import Gemma3TextConfig
    return Gemma3TextConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=7,
        num_attention_heads=2, num_key_value_heads=1, head_dim=256,
        max_position_embeddings=64, rms_norm_eps=1e-6, sliding_window=4,
        query_pre_attn_scalar=256, rope_theta=1e6, rope_local_base_freq=1e4,
        tie_word_embeddings=True, final_logit_softcapping=None,
        attn_logit_softcapping=None, attn_implementation="eager", pad_token_id=0,
        bos_token_id=1, eos_token_id=2)


TINY_IDS = [[5, 17, 63, 0, 42, 42, 8, 30, 1, 2, 3, 60, 7, 7, 19], [9, 9, 9], [33]]
B, T = 2, 10


def tiny_batch():
    tok = [(i * 7 + 3) % 64 for i in range(B * T)]
    tgt = []
    for b in range(B):
        for t in range(T):
            i = b * T + t
            x = tok[i + 1] if t + 1 < T else -100
            tgt.append(-100 if t < 3 + 2 * b else x)
    return torch.tensor(tok).view(B, T), torch.tensor(tgt).view(B, T)


def write_tiny_gguf(sd, path, cfg):
    import gguf
    w = gguf.GGUFWriter(path, "gemma3")
    w.add_name("tiny-gemma3")
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_key_length(cfg.head_dim)
    w.add_value_length(cfg.head_dim)
    w.add_rope_freq_base(1e6)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_sliding_window(cfg.sliding_window)
    w.add_vocab_size(cfg.vocab_size)
    w.add_tokenizer_model("gpt2")
    # llama.cpp wants at least one merge, and a merge's result must be a token of the
    # vocabulary (ftlab writes the tokenizer of a merged export): the last one is "<t1><t2>"
    w.add_token_list(["<t%d>" % i for i in range(cfg.vocab_size - 1)] + ["<t1><t2>"])
    w.add_token_types([1] * cfg.vocab_size)
    w.add_token_merges(["<t1> <t2>"])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    names = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q",
             "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm",
             "self_attn.o_proj": "attn_output",
             "post_attention_layernorm": "post_attention_norm",
             "pre_feedforward_layernorm": "ffn_norm",
             "post_feedforward_layernorm": "post_ffw_norm", "mlp.gate_proj": "ffn_gate",
             "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}

    def put(name, arr):
        if name.endswith("norm.weight"):  # llama.cpp's converter: 1 + w
            arr = (arr.astype(np.float32) + np.float32(1.0)).astype(np.float32)
        w.add_tensor(name, np.ascontiguousarray(arr))
    put("token_embd.weight", sd["model.embed_tokens.weight"])
    for i in range(cfg.num_hidden_layers):
        p = "model.layers.%d." % i
        for hf, gg in names.items():
            put("blk.%d.%s.weight" % (i, gg), sd[p + hf + ".weight"])
    put("output_norm.weight", sd["model.norm.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def tiny():
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, Gemma3ForCausalLM
    os.makedirs(FIX, exist_ok=True)
    cfg = tiny_config()
    torch.manual_seed(0)
    model = Gemma3ForCausalLM(cfg)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "norm" in n:
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.25 * torch.randn(p.shape, generator=g))
    model.eval()
    d = os.path.join(FIX, "tiny")
    model.save_pretrained(d, safe_serialization=True)
    sd = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    write_tiny_gguf(sd, os.path.join(FIX, "tiny.gguf"), cfg)
    out = []
    with torch.no_grad():
        for seq in TINY_IDS:
            out.append(summarise(seq, model(torch.tensor([seq])).logits[0], True))
    # transformers reading the GGUF (norms - 1, its default layer pattern and scalars)
    # gives the same logits: the GGUF holds what llama.cpp's converter would write
    m2 = AutoModelForCausalLM.from_pretrained(FIX, gguf_file="tiny.gguf",
                                              dtype=torch.float32,
                                              attn_implementation="eager")
    with torch.no_grad():
        a = m2(torch.tensor([TINY_IDS[0]])).logits[0].double()
    b = torch.tensor(out[0]["all_vals"], dtype=torch.float64)
    gguf_diff = (a - b).abs().max().item()
    assert gguf_diff < 1e-5, gguf_diff
    with open(os.path.join(FIX, "logits_tiny.json"), "w") as f:
        json.dump({"made_by": "make_gemma3_fixture.py tiny (torch %s, transformers %s)"
                   % (torch.__version__, __import__("transformers").__version__),
                   "gguf_in_transformers_max_abs_diff": gguf_diff, "prompts": out}, f)

    # LoRA on every linear, peft, from the formula's A and B
    lc = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=MODULES,
                    task_type="CAUSAL_LM")
    base = Gemma3ForCausalLM.from_pretrained(d, dtype=torch.float32,
                                             attn_implementation="eager")
    pm = get_peft_model(base, lc)
    set_lora(pm)
    pm.train()
    tok, tgt = tiny_batch()
    params = [(n, p) for n, p in pm.named_parameters() if p.requires_grad]

    def loss_of():
        logits = pm(input_ids=tok).logits
        return torch.nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]),
                                                 tgt.view(-1), ignore_index=-100)
    loss0 = loss_of()
    loss0.backward()
    grads = {}
    for n, p in params:
        gv = p.grad.detach().flatten()
        step = max(1, gv.numel() // 32)
        grads[n.replace("base_model.model.", "", 1).replace(".default", "")] = {
            "norm": gv.norm().item(), "step": step, "vals": gv[::step][:32].tolist()}
    pm.zero_grad()
    opt = torch.optim.AdamW([p for _, p in params], lr=1e-2, betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=0.01, foreach=False)
    trace = []
    for _ in range(5):
        opt.zero_grad()
        loss = loss_of()
        trace.append(loss.item())
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for _, p in params], 1.0)
        opt.step()
    pm.eval()
    with torch.no_grad():
        after = pm(input_ids=tok).logits.flatten().tolist()
    with open(os.path.join(FIX, "lora_tiny.json"), "w") as f:
        json.dump({"made_by": "make_gemma3_fixture.py tiny (torch %s, transformers %s, "
                   "peft %s)" % (torch.__version__, __import__("transformers").__version__,
                                 __import__("peft").__version__),
                   "B": B, "T": T, "tokens": tok.flatten().tolist(),
                   "targets": [int(x) if x >= 0 else -1 for x in tgt.flatten().tolist()],
                   "loss0": loss0.item(), "grads": grads, "trace": trace,
                   "logits_after": after}, f)
    print("tiny: GGUF in transformers max |diff| %.3g, LoRA loss0 %.7f" %
          (gguf_diff, loss0.item()))


PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    if n < 2:\n        return n\n",
    "<start_of_turn>user\nName three colors.<end_of_turn>\n<start_of_turn>model\n",
    "1 2 3 4 5 6 7 8 9 10 11 12",
    "Gemma is a family of lightweight, state-of-the-art open models",
]


def long_text():
    words = ("the model reads a long document about rivers mountains and the weather of "
             "small towns, counting every bridge and every stone along the way").split()
    out, i = [], 0
    while len(out) < 560:
        out.append(words[(i * 7) % len(words)])
        i += 1
    return " ".join(out)


def real():
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    gdir, gfile = os.path.split(REAL)
    model = AutoModelForCausalLM.from_pretrained(gdir, gguf_file=gfile, dtype=torch.float32,
                                                 attn_implementation="eager")
    model.eval()
    tk = AutoTokenizer.from_pretrained(gdir, gguf_file=gfile)
    prompts = []
    with torch.no_grad():
        for p in PROMPTS:
            ids = tk(p).input_ids
            r = summarise(ids, model(torch.tensor([ids])).logits[0])
            g = model.generate(torch.tensor([ids]), max_new_tokens=16, do_sample=False)
            r["greedy"] = [int(x) for x in g[0][len(ids):]]
            r["prompt"] = p
            prompts.append(r)
        ids = tk(long_text()).input_ids
        lg = model(torch.tensor([ids])).logits[0]
        tg = torch.tensor(ids[1:])
        losses = torch.nn.functional.cross_entropy(lg[:-1], tg, reduction="none")
        long = {"ids": ids, "losses": losses.tolist(),
                "argmax": lg[:-1].argmax(-1).tolist()}
    # LoRA on every linear (r 4) on one batch: 24 tokens of the first prompts, targets on
    # the last 10
    ids = (prompts[4]["ids"] + prompts[1]["ids"])[:24]
    tok = torch.tensor([ids])
    tgt = torch.tensor([[ids[t + 1] if 13 <= t < 23 else -100 for t in range(24)]])
    lc = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=MODULES,
                    task_type="CAUSAL_LM")
    pm = get_peft_model(model, lc)
    set_lora(pm)
    pm.train()
    logits = pm(input_ids=tok).logits
    loss = torch.nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), tgt.view(-1),
                                             ignore_index=-100)
    loss.backward()
    grads = {}
    for n, p in pm.named_parameters():
        if p.requires_grad:
            gv = p.grad.detach().flatten()
            grads[n.replace("base_model.model.", "", 1).replace(".default", "")] = {
                "norm": gv.norm().item(), "head": gv[:16].tolist()}
    with open(os.path.join(FIX, "real.json"), "w") as f:
        json.dump({"made_by": "make_gemma3_fixture.py real (torch %s, transformers %s "
                   "gguf_file= dequantised to fp32, eager attention; peft %s)"
                   % (torch.__version__, __import__("transformers").__version__,
                      __import__("peft").__version__),
                   "model": REAL, "prompts": prompts, "long": long,
                   "lora": {"tokens": ids, "targets": [int(x) if x >= 0 else -1
                                                       for x in tgt[0].tolist()],
                            "loss": loss.item(), "grads": grads}}, f)
    print("real: %d prompts, long text of %d tokens, LoRA loss %.6f" %
          (len(prompts), len(long["ids"]), loss.item()))


def max_diff(a, b):
    a = torch.tensor(a, dtype=torch.float64).flatten()
    b = torch.tensor(b, dtype=torch.float64).flatten()
    return (a - b).abs().max().item()


def exports():
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    res = {"made_by": "make_gemma3_fixture.py exports (torch %s, transformers %s, peft %s)"
           % (torch.__version__, __import__("transformers").__version__,
              __import__("peft").__version__)}
    for tag, root, base_dir in (("tiny", TINY_EXPORTS, os.path.join(FIX, "tiny")),
                                ("real", "/tmp/ftlab-gemma3-exports", None)):
        if not os.path.isdir(root):
            continue
        ours = json.load(open(os.path.join(root, "ours.json")))
        tok = torch.tensor(ours["tokens"]).view(ours["B"], ours["T"])
        want = ours["logits_after"]
        r = {}
        if base_dir is None:
            gdir, gfile = os.path.split(REAL)
            base = AutoModelForCausalLM.from_pretrained(gdir, gguf_file=gfile,
                                                        dtype=torch.float32,
                                                        attn_implementation="eager")
        else:
            base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32,
                                                        attn_implementation="eager")
        pm = PeftModel.from_pretrained(base, os.path.join(root, "peft"))
        pm.eval()
        with torch.no_grad():
            r["peft_logits_max_abs_diff"] = max_diff(pm(input_ids=tok).logits, want)
        merged = AutoModelForCausalLM.from_pretrained(os.path.join(root, "merged"),
                                                      dtype=torch.float32,
                                                      attn_implementation="eager")
        with torch.no_grad():
            r["merged_safetensors_logits_max_abs_diff"] = max_diff(
                merged(input_ids=tok).logits, want)
        mg = AutoModelForCausalLM.from_pretrained(os.path.join(root, "merged_gguf"),
                                                  gguf_file="model.gguf",
                                                  dtype=torch.float32,
                                                  attn_implementation="eager")
        with torch.no_grad():
            r["merged_gguf_logits_max_abs_diff"] = max_diff(mg(input_ids=tok).logits, want)
        r["max_abs_logit"] = max(abs(x) for x in want)
        res[tag] = r
        print(tag, r)
    with open(os.path.join(FIX, "export_check.json"), "w") as f:
        json.dump(res, f, indent=1)
        f.write("\n")


def llamacpp(lcpp):
    src = os.path.join(HERE, "llama_cpp_logits.c")
    exe = "/tmp/ftlab-llama-cpp-logits"
    inc = [os.path.join(lcpp, "include"), os.path.join(lcpp, "ggml", "include")]
    lib = os.path.join(lcpp, "build", "bin")
    subprocess.check_call(["cc", "-O2", "-o", exe, src] + ["-I" + i for i in inc] +
                          ["-L" + lib, "-Wl,-rpath," + lib, "-lllama", "-lggml", "-lggml-base"])
    res = {"made_by": "make_gemma3_fixture.py llamacpp (llama.cpp %s, tests/reference/"
           "llama_cpp_logits.c)" % subprocess.run(
               ["git", "-C", lcpp, "rev-parse", "--short", "HEAD"], capture_output=True,
               text=True).stdout.strip()}
    for tag, root, base in (("tiny", TINY_EXPORTS, os.path.join(FIX, "tiny.gguf")),
                            ("real", "/tmp/ftlab-gemma3-exports",
                             "/tmp/ftlab-gemma3-exports/base_f32/model.gguf")):
        if not os.path.isdir(root):
            continue
        ours = json.load(open(os.path.join(root, "ours.json")))
        Bn, Tn = ours["B"], ours["T"]
        want = torch.tensor(ours["logits_after"], dtype=torch.float64).view(Bn, Tn, -1)
        r = {}
        for what, args in (("merged_gguf", [os.path.join(root, "merged_gguf", "model.gguf")]),
                           ("base_plus_adapter_gguf",
                            [base, os.path.join(root, "adapter_gguf", "adapter.gguf")])):
            worst, agree = 0.0, 0
            for b in range(Bn):
                ids = [str(x) for x in ours["tokens"][b * Tn:(b + 1) * Tn]]
                out = subprocess.run([exe] + args[:1] + (["--lora", args[1]] if len(args) > 1
                                                         else []) + ids,
                                     capture_output=True, text=True, check=True).stdout
                got = torch.tensor(json.loads(out), dtype=torch.float64)
                worst = max(worst, (got - want[b]).abs().max().item())
                agree += int((got.argmax(-1) == want[b].argmax(-1)).sum().item())
            r[what + "_logits_max_abs_diff"] = worst
            r[what + "_argmax_equal"] = "%d of %d" % (agree, Bn * Tn)
        r["max_abs_logit"] = want.abs().max().item()
        res[tag] = r
        print(tag, r)
    with open(os.path.join(FIX, "llamacpp_check.json"), "w") as f:
        json.dump(res, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else ""
    if what == "tiny":
        tiny()
    elif what == "real":
        real()
    elif what == "exports":
        exports()
    elif what == "llamacpp" and len(sys.argv) > 2:
        llamacpp(sys.argv[2])
    else:
        sys.exit(__doc__)
