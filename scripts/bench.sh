#!/usr/bin/env bash
# `make bench`: training speed of the native engine (batch 4 x 256 tokens, 2 threads) for
# LoRA q,v, LoRA all-linear and full fine-tuning, each followed by the PyTorch CPU baseline
# of the same model and step (bench/torch_baseline.py on Debian's python3-torch, and on a
# second torch when /usr/bin/python3 has one; torch is used only here) in its best thread
# setting (torch threads 1 and THREADS, the faster kept), and the ratios; then LoRA with
# bf16 matmuls (BF16=0 skips it); the LM head computed at every position (the (B*T, V)
# logits kept, as before it was chunked) against chunked at the positions with a target,
# for every position and for instruction-like rows whose last 8 positions carry a target
# (HEAD=0 skips it); generation (prefill and decode for 1 and 8 prompts against the
# weight-read bound, and torch's decode; GENERATE=0 skips it); then the sweep benchmark
# (bench/sweep_bench.sh: bayes against random, hyperband; SWEEPS=0 skips it).
# LoRA q,v and generation also run with every weight dequantized to fp32 at load
# (--weights f32, the engine's layout before frozen weights kept the file's blocks):
# tokens/s and peak resident memory of both; generation is also compared with llama.cpp's
# llama-bench on the same GGUF file, same threads and token counts (prefill of 64 tokens;
# 63 tokens decoded after 64 in the cache), flash attention off and on, the better kept.
# Environment: MODEL (smollm2, gemma3 or a path; default smollm2), STEPS (timed steps,
# default 5), THREADS (2), BATCH (4), SEQ (256), METHODS ("lora lora-all full"),
# PRECISION (fp32), TORCH_PYTHON (another python with torch, e.g. a venv's, measured as
# "other"), LLAMA_BENCH (a llama-bench to use instead of the one scripts/deps.sh --bench
# builds into .deps/llama.cpp). Example: make bench MODEL=gemma3 METHODS="lora full" SWEEPS=0
set -uo pipefail
cd "$(dirname "$0")/.."
bin=${FTLAB_BIN:-build/ftlab}
steps=${STEPS:-5}
threads=${THREADS:-2}
batch=${BATCH:-4}
seq=${SEQ:-256}
model=${MODEL:-smollm2}
case "$model" in
  smollm2 | *SmolLM2*) torch_model=smollm2 ;;
  gemma3 | *gemma-3*) torch_model=gemma3 ;;
  *) torch_model="" ;; # no PyTorch twin of other models
esac
case "$model" in # the file, for llama-bench
  smollm2) model_file=models/SmolLM2-135M-Instruct.Q4_1.gguf ;;
  gemma3) model_file=models/gemma-3-270m-q4_k_m.gguf ;;
  *) model_file=$model ;;
esac
prompt_len=64
new_tokens=64 # the first comes from the prefill: 63 decode steps
echo "bench: $(date -u +%Y-%m-%dT%H:%M:%SZ) $(uname -n), $(nproc) cores, model $model," \
  "load: $(cut -d' ' -f1-3 /proc/loadavg)"

# the number after a label in ftlab's output
num() { sed -n "s/.*$1 \([0-9.]*\).*/\1/p" | head -n 1; }
ratio() { # label a b
  if [ -n "$2" ] && [ -n "$3" ]; then
    awk -v l="$1" -v a="$2" -v b="$3" 'BEGIN { printf "ratio %s = %.2fx\n", l, a / b }'
  fi
}

# The torches to compare with: "debian" (python3-torch, OpenBLAS) and "other" (a pip torch
# that /usr/bin/python3 imports, e.g. with MKL, or TORCH_PYTHON's).
torches=()
other_py=/usr/bin/python3
[ -f /usr/lib/python3/dist-packages/torch/__init__.py ] && torches+=("debian")
if [ -n "${TORCH_PYTHON:-}" ]; then
  other_py=$TORCH_PYTHON
  torches+=("other")
else
  loc=$(/usr/bin/python3 -c 'import torch; print(torch.__file__)' 2>/dev/null) &&
    case "$loc" in /usr/lib/python3/dist-packages/*) ;; *) torches+=("other") ;; esac
fi

# torch_best WHICH ARGS...: the baseline at torch threads 1 and $threads; prints the
# faster line with its thread setting.
torch_best() {
  local which=$1 pp="" py=$other_py best="" bv=0 t line v
  shift
  [ "$which" = debian ] && pp=/usr/lib/python3/dist-packages && py=/usr/bin/python3
  for t in $(printf '%s\n' 1 "$threads" | sort -un); do
    line=$(PYTHONPATH=$pp "$py" bench/torch_baseline.py --model "$torch_model" \
      --threads "$t" "$@" 2>/dev/null | tail -n 1)
    v=$(echo "$line" | sed -n 's/.*: \([0-9.]*\) tokens\/s.*/\1/p')
    if [ -n "$v" ] && awk -v a="$v" -v b="$bv" 'BEGIN { exit !(a > b) }'; then
      bv=$v
      best=$line
    fi
  done
  echo "$best"
}

for method in ${METHODS:-lora lora-all full}; do
  ours=$("$bin" bench --mode train --model "$model" --method "$method" --batch "$batch" \
    --seq "$seq" --steps "$steps" --threads "$threads" --precision "${PRECISION:-fp32}")
  echo "== $method"
  echo "$ours"
  a=$(echo "$ours" | sed -n 's/.*steps: \([0-9.]*\) tokens\/s.*/\1/p' | head -n 1)
  for which in "${torches[@]}"; do
    [ -n "$torch_model" ] || break
    theirs=$(torch_best "$which" --method "$method" --batch "$batch" --seq "$seq" \
      --steps "$steps")
    echo "$theirs"
    b=$(echo "$theirs" | sed -n 's/.*: \([0-9.]*\) tokens\/s.*/\1/p')
    if [ -n "$a" ] && [ -n "$b" ]; then
      awk -v a="$a" -v b="$b" -v m="$method" -v w="$which" \
        'BEGIN { printf "ratio %-8s ftlab/torch(%s) = %.2fx\n", m, w, a / b }'
    fi
  done
  if [ "$method" = lora ]; then
    echo "== lora, every weight dequantized to fp32 at load (--weights f32)"
    f32=$("$bin" bench --mode train --model "$model" --method lora --batch "$batch" \
      --seq "$seq" --steps "$steps" --threads "$threads" --precision "${PRECISION:-fp32}" \
      --weights f32)
    echo "$f32"
    b=$(echo "$f32" | sed -n 's/.*steps: \([0-9.]*\) tokens\/s.*/\1/p' | head -n 1)
    ratio "lora tokens/s, frozen weights as stored / fp32 weights" "$a" "$b"
    ra=$(echo "$ours" | num "peak resident")
    rb=$(echo "$f32" | num "peak resident")
    ratio "lora peak resident memory, as stored / fp32 weights" "$ra" "$rb"
  fi
done
if [ "${BF16:-1}" = 1 ]; then
  echo "== lora, bf16 matmuls"
  "$bin" bench --mode train --model "$model" --method lora --batch "$batch" --seq "$seq" \
    --steps "$steps" --threads "$threads" --precision bf16
fi
if [ "${HEAD:-1}" = 1 ]; then
  for targets in 0 8; do
    for logits in all chunked; do
      echo "== lora, LM head: $logits, targets: $([ "$targets" = 0 ] && echo every position || echo "the last $targets of each row")"
      "$bin" bench --mode train --model "$model" --method lora --batch "$batch" --seq "$seq" \
        --steps "$steps" --threads "$threads" --logits "$logits" --targets "$targets" |
        grep -E 'tokens/s|CPU time|peak resident'
    done
  done
fi
if [ "${GENERATE:-1}" = 1 ]; then
  echo "== generate, frozen weights as stored"
  g=$("$bin" bench --mode generate --model "$model" --threads "$threads" \
    --prompt-len "$prompt_len" --new-tokens "$new_tokens")
  echo "$g"
  if [ -n "$torch_model" ]; then
    for which in "${torches[@]}"; do
      pp="" py=$other_py
      [ "$which" = debian ] && pp=/usr/lib/python3/dist-packages && py=/usr/bin/python3
      PYTHONPATH=$pp "$py" bench/torch_baseline.py --model "$torch_model" \
        --mode generate --threads "$threads" 2>/dev/null
    done
  fi
  echo "== generate, every weight dequantized to fp32 at load (--weights f32)"
  gf=$("$bin" bench --mode generate --model "$model" --threads "$threads" \
    --prompt-len "$prompt_len" --new-tokens "$new_tokens" --weights f32)
  echo "$gf"
  # prompts N: prefill 64 tokens P tokens/s; decode 63 tokens D tokens/s
  p1=$(echo "$g" | sed -n 's/^prompts 1: prefill [0-9]* tokens \([0-9.]*\) tokens\/s; decode [0-9]* tokens \([0-9.]*\).*/\1 \2/p')
  p8=$(echo "$g" | sed -n 's/^prompts 8: prefill [0-9]* tokens \([0-9.]*\) tokens\/s; decode [0-9]* tokens \([0-9.]*\).*/\1 \2/p')
  f1=$(echo "$gf" | sed -n 's/^prompts 1: prefill [0-9]* tokens \([0-9.]*\) tokens\/s; decode [0-9]* tokens \([0-9.]*\).*/\1 \2/p')
  f8=$(echo "$gf" | sed -n 's/^prompts 8: prefill [0-9]* tokens \([0-9.]*\) tokens\/s; decode [0-9]* tokens \([0-9.]*\).*/\1 \2/p')
  ratio "decode 1 prompt, as stored / fp32 weights" "${p1#* }" "${f1#* }"
  ratio "decode 8 prompts, as stored / fp32 weights" "${p8#* }" "${f8#* }"
  ratio "prefill, as stored / fp32 weights" "${p1% *}" "${f1% *}"
  lb=${LLAMA_BENCH:-.deps/llama.cpp/bin/llama-bench}
  if [ -x "$lb" ]; then
    echo "== llama.cpp $(cat "$(dirname "$lb")/../VERSION" 2>/dev/null || echo "($lb)"): llama-bench, $threads threads, flash attention off and on"
    # pp64: a 64-token prompt; tg63 @ d64: 63 tokens decoded after 64 in the KV cache
    pp=$("$lb" -m "$model_file" -t "$threads" -p "$prompt_len" -n 0 -fa 0,1 -r 3 -o csv 2>/dev/null)
    tg=$("$lb" -m "$model_file" -t "$threads" -p 0 -n $((new_tokens - 1)) -d "$prompt_len" -fa 0,1 \
      -r 3 -o csv 2>/dev/null)
    # csv: the last two columns are avg_ts and stddev_ts; take the better of -fa 0 and 1
    best() { awk -F, 'NR > 1 { gsub(/"/, ""); v = $(NF - 1) + 0; if (v > m) m = v } END { if (m) print m }'; }
    lpp=$(echo "$pp" | best)
    ltg=$(echo "$tg" | best)
    echo "llama.cpp: prefill $prompt_len tokens ${lpp:-?} tokens/s; decode $((new_tokens - 1)) tokens after $prompt_len: ${ltg:-?} tokens/s (1 prompt)"
    ratio "decode 1 prompt, ftlab / llama.cpp" "${p1#* }" "$ltg"
    ratio "prefill, ftlab / llama.cpp" "${p1% *}" "$lpp"
  else
    echo "llama.cpp: no llama-bench at $lb (scripts/deps.sh --bench builds it), no comparison"
  fi
fi
if [ "${SWEEPS:-1}" = 1 ]; then
  echo "== sweeps"
  FTLAB_BIN=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin") bench/sweep_bench.sh
fi
echo "bench: done, load: $(cut -d' ' -f1-3 /proc/loadavg)"
