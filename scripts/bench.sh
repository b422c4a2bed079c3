#!/usr/bin/env bash
# `make bench`: training speed of the native engine on the SmolLM2-135M shape (batch 4 x 256
# tokens, 2 threads) for LoRA q,v, LoRA all-linear and full fine-tuning, each followed by
# the PyTorch CPU baseline of the same model and step (bench/torch_baseline.py on Debian's
# python3-torch, and on a second torch when /usr/bin/python3 has one; torch is used only
# here), and the ratios; then LoRA with bf16 matmuls (BF16=0 skips it)
# and generation (prefill and decode for 1 and 8 prompts against the weight-read bound;
# GENERATE=0 skips it), then the sweep benchmark (bench/sweep_bench.sh: bayes against
# random, hyperband; SWEEPS=0 skips it). Environment: STEPS (timed steps, default 5), THREADS (2),
# BATCH (4), SEQ (256), METHODS ("lora lora-all full"), PRECISION (fp32).
set -uo pipefail
cd "$(dirname "$0")/.."
bin=${FTLAB_BIN:-build/ftlab}
steps=${STEPS:-5}
threads=${THREADS:-2}
batch=${BATCH:-4}
seq=${SEQ:-256}
model=${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
echo "bench: $(date -u +%Y-%m-%dT%H:%M:%SZ) $(uname -n), $(nproc) cores, load: $(cut -d' ' -f1-3 /proc/loadavg)"
for method in ${METHODS:-lora lora-all full}; do
  ours=$("$bin" bench --mode train --model "$model" --method "$method" --batch "$batch" \
    --seq "$seq" --steps "$steps" --threads "$threads" --precision "${PRECISION:-fp32}")
  echo "== $method"
  echo "$ours"
  # The baseline the issue names is Debian's python3-torch (1.13, OpenBLAS): run it with
  # Debian's dist-packages first on the path, so a pip-installed torch cannot shadow it.
  # When /usr/bin/python3 also imports a different torch (a pip wheel with MKL), run that
  # too and print its ratio as a second reference.
  for which in debian other; do
    if [ "$which" = debian ]; then
      [ -f /usr/lib/python3/dist-packages/torch/__init__.py ] || continue
      pp=/usr/lib/python3/dist-packages
    else
      pp=""
      loc=$(/usr/bin/python3 -c 'import torch; print(torch.__file__)' 2>/dev/null) || continue
      case "$loc" in /usr/lib/python3/dist-packages/*) continue ;; esac
    fi
    theirs=$(PYTHONPATH=$pp /usr/bin/python3 bench/torch_baseline.py --method "$method" \
      --batch "$batch" --seq "$seq" --steps "$steps" --threads "$threads" 2>/dev/null | tail -n 1)
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
if [ "${GENERATE:-1}" = 1 ]; then
  echo "== generate"
  "$bin" bench --mode generate --model "$model" --threads "$threads"
fi
if [ "${SWEEPS:-1}" = 1 ]; then
  echo "== sweeps"
  FTLAB_BIN=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin") bench/sweep_bench.sh
fi
echo "bench: done, load: $(cut -d' ' -f1-3 /proc/loadavg)"
