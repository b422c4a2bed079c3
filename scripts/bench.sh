#!/usr/bin/env bash
# `make bench`: training speed of the native engine (batch 4 x 256 tokens, 2 threads) for
# LoRA q,v, LoRA all-linear and full fine-tuning, and LoRA with bf16 matmuls (BF16=0 skips
# it, and the ceiling of its MFU: the step's GEMMs alone, bench/gemm_ceiling.c), each against the PyTorch CPU baseline of the same model and step
# (bench/torch_baseline.py on Debian's python3-torch, and on a second torch when
# /usr/bin/python3 or TORCH_PYTHON has one; torch is used only here; the bf16 row against
# torch.autocast bf16). Every torch runs in its best setting: each combination of torch
# threads and BLAS threads (1 and THREADS each) is tried for PROBE_STEPS steps and the
# fastest kept. Then ROUNDS rounds alternate ftlab and each torch, and the medians, spreads
# and the ratio of medians are printed. Then the LM head computed at every position (the
# (B*T, V) logits kept, as before it was chunked) against chunked at the positions with a
# target, for every position and for instruction-like rows whose last 8 positions carry a
# target (HEAD=0 skips it); generation (prefill and decode for 1 and 8 prompts against the
# weight-read bound, and torch's decode; GENERATE=0 skips it); the time to refuse GGUF
# files with 10^5..10^6 metadata keys or tensor infos (bench/gguf_keys.c; GGUF_KEYS=0
# skips it); the preference steps (DPO with LoRA and with full fine-tuning, SimPO: BATCH
# pairs, 2 x BATCH rows) against the SFT step of BATCH rows of the same method (PREF=0
# skips them); every PEFT method (DoRA, IA3, prefix tuning, bottleneck adapters pfeiffer
# and houlsby) beside LoRA q,v: tokens/s and peak resident memory (ADAPTERS=0 skips it,
# PEFT_METHODS="lora ia3" picks methods); then the sweep benchmark
# (bench/sweep_bench.sh: bayes against random, hyperband; SWEEPS=0 skips it).
# LoRA q,v and generation also run with every weight dequantized to fp32 at load
# (--weights f32, the engine's layout before frozen weights kept the file's blocks):
# tokens/s and peak resident memory of both; generation is also compared with llama.cpp's
# llama-bench on the same GGUF file, same threads and token counts (prefill of 64 tokens;
# 63 tokens decoded after 64 in the cache), flash attention off and on, the better kept.
# Environment: MODEL (smollm2, gemma3 or a path; default smollm2), STEPS (timed steps,
# default 5), THREADS (2), BATCH (4), SEQ (256), METHODS ("lora lora-all full"),
# PRECISION (fp32), ROUNDS (3), PROBE_STEPS (2), TORCH_PYTHON (another python with torch,
# e.g. a venv's, measured as "other"), LLAMA_BENCH (a llama-bench to use instead of the one scripts/deps.sh --bench
# builds into .deps/llama.cpp). Example: make bench MODEL=gemma3 METHODS="lora full" SWEEPS=0
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
    out=$("$bin" bench --backend cpu --mode train --model "$model" --method "$method" --batch "$batch" \
      --seq "$seq" --steps "$steps" --threads "$threads" --precision "$prec")
    [ "$r" = 1 ] && echo "$out" && first_out=$out
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
  median_out=$m
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
  if [ "$method" = lora ]; then
    echo "== lora, every weight dequantized to fp32 at load (--weights f32)"
    f32=$("$bin" bench --backend cpu --mode train --model "$model" --method lora \
      --batch "$batch" --seq "$seq" --steps "$steps" --threads "$threads" \
      --precision "${PRECISION:-fp32}" --weights f32)
    echo "$f32"
    b=$(echo "$f32" | sed -n 's/.*steps: \([0-9.]*\) tokens\/s.*/\1/p' | head -n 1)
    ratio "lora tokens/s, frozen weights as stored (median) / fp32 weights" "$median_out" "$b"
    ra=$(echo "$first_out" | num "peak resident")
    rb=$(echo "$f32" | num "peak resident")
    ratio "lora peak resident memory, as stored / fp32 weights" "$ra" "$rb"
  fi
done
if [ "${ADAPTERS:-1}" = 1 ]; then
  # every PEFT method beside LoRA q,v (r 8), alternating for ROUNDS rounds: tokens/s and
  # peak resident memory. DoRA r 8 on q,v; IA3 with PEFT's llama default (k, v, down);
  # prefix tuning with 20 virtual tokens; bottleneck adapters with AdapterHub's defaults
  # (pfeiffer = seq_bn after the MLP, relu; houlsby = double_seq_bn after attention and
  # MLP, swish; reduction factor 16)
  echo "== peft methods beside lora (tokens/s, peak resident memory)"
  declare -A ad_v=() ad_mem=()
  peft_methods="${PEFT_METHODS:-lora dora ia3 prefix adapter adapter-houlsby}"
  for r in $(seq "$rounds"); do
    for method in $peft_methods; do
      out=$("$bin" bench --backend cpu --mode train --model "$model" --method "$method" \
        --batch "$batch" --seq "$seq" --steps "$steps" --threads "$threads" \
        --precision "${PRECISION:-fp32}")
      [ "$r" = 1 ] && echo "$out" | grep -E 'trainable|tokens/s|peak resident'
      v=$(echo "$out" | sed -n 's/.*steps: \([0-9.]*\) tokens\/s.*/\1/p' | head -n 1)
      ad_v[$method]+="${v:-0} "
      ad_mem[$method]=$(echo "$out" | num "peak resident")
      echo "  round $r: $method ${v:-failed} tokens/s"
    done
  done
  for method in $peft_methods; do
    # shellcheck disable=SC2086 # the values split on purpose
    read -r m lo hi < <(stats ${ad_v[$method]})
    echo "$method: median $m tokens/s (spread $lo-$hi, $rounds runs), peak resident ${ad_mem[$method]}"
    [ "$method" = lora ] && lora_m=$m
    [ "$method" != lora ] && ratio "$method tokens/s / lora (medians)" "$m" "$lora_m"
  done
fi
if [ "${BF16:-1}" = 1 ]; then
  compare "lora, bf16 matmuls (torch: autocast bf16)" lora bf16
  # the MFU a bf16 step could reach if it were only its GEMMs (bench/gemm_ceiling.c)
  shape=bench/shapes/smollm2-135m.json
  if [ "$model" = smollm2 ] && [ -x "${BUILD:-build}/bench/gemm_ceiling" ]; then
    echo "== the bf16 step's GEMMs alone (oneDNN, operands already bf16): the MFU ceiling"
    OMP_NUM_THREADS=$threads "${BUILD:-build}/bench/gemm_ceiling" "$shape" "$batch" "$seq"
  fi
fi
if [ "${HEAD:-1}" = 1 ]; then
  for targets in 0 8; do
    for logits in all chunked; do
      echo "== lora, LM head: $logits, targets: $([ "$targets" = 0 ] && echo every position || echo "the last $targets of each row")"
      "$bin" bench --backend cpu --mode train --model "$model" --method lora --batch "$batch" --seq "$seq" \
        --steps "$steps" --threads "$threads" --logits "$logits" --targets "$targets" |
        grep -E 'tokens/s|CPU time|peak resident'
    done
  done
fi
if [ "${PREF:-1}" = 1 ]; then
  # examples/s: pairs per second for a preference step, rows per second for SFT
  exs() { sed -n 's/.* \([0-9.]*\) examples\/s.*/\1/p' | head -n 1; }
  for spec in "lora dpo" "full dpo" "lora simpo"; do
    # shellcheck disable=SC2086 # "METHOD OBJECTIVE" splits on purpose
    set -- $spec
    echo "== $2, method $1 (batch $batch pairs against SFT on $batch rows)"
    sft=$("$bin" bench --backend cpu --mode train --model "$model" --method "$1" --batch "$batch" \
      --seq "$seq" --steps "$steps" --threads "$threads" | exs)
    pref=$("$bin" bench --backend cpu --mode train --model "$model" --method "$1" --batch "$batch" \
      --seq "$seq" --steps "$steps" --threads "$threads" --objective "$2")
    echo "$pref"
    a=$(echo "$pref" | exs)
    if [ -n "$a" ] && [ -n "$sft" ]; then
      awk -v a="$a" -v b="$sft" -v o="$2" -v m="$1" \
        'BEGIN { printf "ratio %s/sft (%s) examples/s = %.2fx (sft %.2f examples/s)\n", o, m, a / b, b }'
    fi
  done
fi
if [ "${GENERATE:-1}" = 1 ]; then
  echo "== generate, frozen weights as stored"
  g=$("$bin" bench --backend cpu --mode generate --model "$model" --threads "$threads" \
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
  gf=$("$bin" bench --backend cpu --mode generate --model "$model" --threads "$threads" \
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
if [ "${GGUF_KEYS:-1}" = 1 ] && [ -x "${BUILD:-build}/bench/gguf_keys" ]; then
  # Hostile GGUF files: N unique metadata keys or N tensor infos, refused (no model).
  echo "== gguf: refusing files with many keys or tensors"
  "${BUILD:-build}/bench/gguf_keys"
fi
if [ "${SWEEPS:-1}" = 1 ]; then
  echo "== sweeps"
  FTLAB_BIN=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin") bench/sweep_bench.sh
fi
echo "bench: done, load: $(cut -d' ' -f1-3 /proc/loadavg)"
