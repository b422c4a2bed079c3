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
# Environment: MODEL (smollm2, gemma3 or a path; default smollm2), STEPS (timed steps,
# default 5), THREADS (2), BATCH (4), SEQ (256), METHODS ("lora lora-all full"),
# PRECISION (fp32), TORCH_PYTHON (another python with torch, e.g. a venv's, measured as
# "other"). Example: make bench MODEL=gemma3 METHODS="lora full" SWEEPS=0
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
echo "bench: $(date -u +%Y-%m-%dT%H:%M:%SZ) $(uname -n), $(nproc) cores, model $model," \
  "load: $(cut -d' ' -f1-3 /proc/loadavg)"

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
  [ -n "$torch_model" ] || continue
  for which in "${torches[@]}"; do
    theirs=$(torch_best "$which" --method "$method" --batch "$batch" --seq "$seq" \
      --steps "$steps")
    echo "$theirs"
    a=$(echo "$ours" | sed -n 's/.*steps: \([0-9.]*\) tokens\/s.*/\1/p' | head -n 1)
    b=$(echo "$theirs" | sed -n 's/.*: \([0-9.]*\) tokens\/s.*/\1/p')
    if [ -n "$a" ] && [ -n "$b" ]; then
      awk -v a="$a" -v b="$b" -v m="$method" -v w="$which" \
        'BEGIN { printf "ratio %-8s ftlab/torch(%s) = %.2fx\n", m, w, a / b }'
    fi
  done
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
  echo "== generate"
  "$bin" bench --mode generate --model "$model" --threads "$threads"
  if [ -n "$torch_model" ]; then
    for which in "${torches[@]}"; do
      pp="" py=$other_py
      [ "$which" = debian ] && pp=/usr/lib/python3/dist-packages && py=/usr/bin/python3
      PYTHONPATH=$pp "$py" bench/torch_baseline.py --model "$torch_model" \
        --mode generate --threads "$threads" 2>/dev/null
    done
  fi
fi
if [ "${SWEEPS:-1}" = 1 ]; then
  echo "== sweeps"
  FTLAB_BIN=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin") bench/sweep_bench.sh
fi
echo "bench: done, load: $(cut -d' ' -f1-3 /proc/loadavg)"
