#!/usr/bin/env bash
# `make bench`: training speed of the native engine (batch 4 x 256 tokens, 2 threads) for
# LoRA q,v, LoRA all-linear and full fine-tuning, and LoRA with bf16 matmuls (BF16=0 skips
# it), each against the PyTorch CPU baseline of the same model and step
# (bench/torch_baseline.py on Debian's python3-torch, and on a second torch when
# /usr/bin/python3 or TORCH_PYTHON has one; torch is used only here; the bf16 row against
# torch.autocast bf16). Every torch runs in its best setting: each combination of torch
# threads and BLAS threads (1 and THREADS each) is tried for PROBE_STEPS steps and the
# fastest kept. Then ROUNDS rounds alternate ftlab and each torch, and the medians, spreads
# and the ratio of medians are printed. Then the LM head computed at every position (the
# (B*T, V) logits kept, as before it was chunked) against chunked at the positions with a
# target, for every position and for instruction-like rows whose last 8 positions carry a
# target (HEAD=0 skips it); generation (prefill and decode for 1 and 8 prompts against the
# weight-read bound, and torch's decode; GENERATE=0 skips it); then the sweep benchmark
# (bench/sweep_bench.sh: bayes against random, hyperband; SWEEPS=0 skips it).
# Environment: MODEL (smollm2, gemma3 or a path; default smollm2), STEPS (timed steps,
# default 5), THREADS (2), BATCH (4), SEQ (256), METHODS ("lora lora-all full"),
# PRECISION (fp32), ROUNDS (3), PROBE_STEPS (2), TORCH_PYTHON (another python with torch,
# e.g. a venv's, measured as "other").
# Example: make bench MODEL=gemma3 METHODS="lora full" SWEEPS=0
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
bin=${FTLAB_BIN:-build/ftlab}
steps=${STEPS:-5}
threads=${THREADS:-2}
batch=${BATCH:-4}
seq=${SEQ:-256}
rounds=${ROUNDS:-3}
probe_steps=${PROBE_STEPS:-2}
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

# torch_run WHICH TORCH_THREADS BLAS_THREADS ARGS...: one baseline run, its result line.
torch_run() {
  local which=$1 t=$2 b=$3 pp="" py=$other_py
  shift 3
  [ "$which" = debian ] && pp=/usr/lib/python3/dist-packages && py=/usr/bin/python3
  PYTHONPATH=$pp OPENBLAS_NUM_THREADS=$b MKL_NUM_THREADS=$b "$py" bench/torch_baseline.py \
    --model "$torch_model" --threads "$t" "$@" 2>/dev/null | tail -n 1
}
tokens_per_s() { sed -n 's/.*: \([0-9.]*\) tokens\/s.*/\1/p' | head -n 1; }

# torch_best WHICH ARGS...: every setting of torch threads x BLAS threads (1 and $threads
# each; more threads than cores in all is a setting too, and usually the slowest) with
# PROBE_STEPS timed steps; prints "TORCH_THREADS BLAS_THREADS" of the fastest.
torch_best() {
  local which=$1 best="" bv=0 t b v
  shift
  for t in $(printf '%s\n' 1 "$threads" | sort -un); do
    for b in $(printf '%s\n' 1 "$threads" | sort -un); do
      v=$(torch_run "$which" "$t" "$b" "$@" --steps "$probe_steps" --warmup 1 | tokens_per_s)
      echo "  torch($which) setting torch threads $t, BLAS threads $b: ${v:-failed} tokens/s" >&2
      if [ -n "$v" ] && awk -v a="$v" -v b="$bv" 'BEGIN { exit !(a > b) }'; then
        bv=$v
        best="$t $b"
      fi
    done
  done
  echo "$best"
}

# stats V...: "MEDIAN MIN MAX" of the values.
stats() {
  printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
    m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    printf "%.0f %.0f %.0f\n", m, v[1], v[NR] }'
}

# compare TITLE METHOD PRECISION: each torch's best setting first, then ROUNDS rounds of
# ftlab followed by every torch in its best setting (alternating, so a change of machine
# load hits both), then the medians, spreads and the ratio of medians.
compare() {
  local title=$1 method=$2 prec=$3 which r out v m lo hi tm tlo thi
  local -a ours=()
  local -A best=() seen=()
  echo "== $title"
  if [ -n "$torch_model" ]; then
    for which in "${torches[@]}"; do
      # the probe lines (stderr of torch_best) go to the output with the rest
      { best[$which]=$(torch_best "$which" --method "$method" --batch "$batch" \
        --seq "$seq" --precision "$prec"); } 2>&1
    done
  fi
  for r in $(seq "$rounds"); do
    out=$("$bin" bench --mode train --model "$model" --method "$method" --batch "$batch" \
      --seq "$seq" --steps "$steps" --threads "$threads" --precision "$prec")
    [ "$r" = 1 ] && echo "$out"
    v=$(echo "$out" | sed -n 's/.*steps: \([0-9.]*\) tokens\/s.*/\1/p' | head -n 1)
    ours+=("${v:-0}")
    echo "  round $r: ftlab ${v:-failed} tokens/s"
    for which in "${!best[@]}"; do
      [ -n "${best[$which]}" ] || continue
      # shellcheck disable=SC2086 # "T B" splits into two arguments
      out=$(torch_run "$which" ${best[$which]} --method "$method" --batch "$batch" \
        --seq "$seq" --steps "$steps" --precision "$prec")
      echo "  round $r: $out"
      seen[$which]+="$(echo "$out" | tokens_per_s) "
    done
  done
  read -r m lo hi < <(stats "${ours[@]}")
  echo "ftlab   $method $prec: median $m tokens/s (spread $lo-$hi, $rounds runs)"
  for which in "${!seen[@]}"; do
    # shellcheck disable=SC2086 # the values and "T B" split on purpose
    read -r tm tlo thi < <(stats ${seen[$which]})
    # shellcheck disable=SC2086
    set -- ${best[$which]}
    echo "torch($which) $method $prec, torch threads $1, BLAS threads $2: median $tm" \
      "tokens/s (spread $tlo-$thi, $rounds runs)"
    awk -v a="$m" -v b="$tm" -v m="$method" -v p="$prec" -v w="$which" \
      'BEGIN { if (b > 0) printf "ratio %-8s %s ftlab/torch(%s) = %.2fx (medians)\n", m, p, w, a / b }'
  done
}

for method in ${METHODS:-lora lora-all full}; do
  compare "$method" "$method" "${PRECISION:-fp32}"
done
if [ "${BF16:-1}" = 1 ]; then
  compare "lora, bf16 matmuls (torch: autocast bf16)" lora bf16
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
