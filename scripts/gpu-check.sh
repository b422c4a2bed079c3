#!/usr/bin/env bash
# gpu-check.sh: proves ftlab's CUDA backend on a GPU machine in one command, from the GPU
# bundle (`make gpu-bundle`; run build/gpu-bundle/gpu-check.sh, which unpacks the payload
# beside itself). Logs go to $OUT (or ./gpu-check-out): gpu-check.log (this console),
# summary.txt (the table, also printed last), results.json, logs.tar.gz (every log, the
# runs' metrics and predictions, bench JSON). docs/cuda.md explains each row.
#   0. the bundle: unpacked and verified, glibc new enough, every library resolves
#      inside the bundle, ftlab starts, cuBLAS found
#   CPU half (also without a GPU): ftlab selftest --backend cpu; the synthetic models
#      (ftlab synth-model) with the bytes MANIFEST expects; 20 training steps of each
#      configuration in exp/ (LoRA q,v with dropout, LoRA all-linear, full, both again
#      with bf16 matmuls) on this machine's CPU
#   Without a CUDA device: the table, then exit 2 with the device probe's reason.
#   1. ftlab selftest --backend cuda, the CUDA unit tests (test_cuda, test_cuda_kernels),
#      the kernels op by op on the device (cuda_kernels), compute-sanitizer memcheck and
#      racecheck over cuda_kernels where the machine allows
#   2. the same 20 steps on CUDA against the CPU: loss and gradient-norm traces within the
#      tolerances of docs/cuda.md, test loss, greedy generations of the tuned models
#   3. ftlab bench on CUDA (LoRA and full, bf16, at a batch that fills the GPU; decode for
#      1 and 64 prompts), peak device memory, and bench/torch_gpu_baseline.py (PyTorch +
#      PEFT) on the same model and batch: tokens/s ratios
# Exit 0 all passed, 1 a check failed, 2 no CUDA device (or no bundle).
# GPU_CHECK_REHEARSE=1 without a device runs sections 2 and 3 with the CPU backend standing
# in for CUDA (section 1 is skipped), to test this script's own plumbing where no GPU is;
# it says nothing about a GPU and still exits 2 when nothing failed.
# Environment: OUT; GPU_CHECK_QUICK=1 (a tiny model, 2 steps, 2 configurations: what make
# test runs); GPU_CHECK_CONFIGS (which of exp/*.yaml);
# GPU_CHECK_WORK (scratch folder; default a new one under /tmp); GPU_CHECK_BUDGET (seconds
# after which the optional steps are skipped; default 280); BENCH_BATCH, BENCH_SEQ (32,
# 512); GPU_CHECK_MODEL (a model directory or GGUF to use instead of the synthetic one).
set -uo pipefail
export LC_ALL=C NO_COLOR=1
# The tolerances of the CUDA-against-CPU training comparison (docs/cuda.md): the worst
# relative difference over the 20 steps of the loss and of the global gradient norm.
TOL_LOSS=3e-3 TOL_GN=3e-2        # fp32 (TF32 tensor cores on CUDA)
TOL_LOSS_BF16=1e-2 TOL_GN_BF16=1e-1  # bf16 matmuls
t_start=$(date +%s)
here=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-$PWD/gpu-check-out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
quick=${GPU_CHECK_QUICK:-0}
budget=${GPU_CHECK_BUDGET:-280}
work=${GPU_CHECK_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")}
mkdir -p "$work/logs"
work=$(cd "$work" && pwd)
logs=$work/logs
rows=$work/rows.tsv
: >"$rows"
console=$OUT/gpu-check.log
: >"$console"

say() { printf '%s\n' "$*" | tee -a "$console"; }
elapsed() { echo $(($(date +%s) - t_start)); }
# row CHECK STATUS DETAIL: one line of the summary (status ok, FAIL, skip, info, slow)
row() {
  printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$rows"
  say "  [$2] $1: $3"
}
over_budget() { [ "$(elapsed)" -ge "$budget" ]; }
# seconds a step may take: at most $1, and never past the budget (at least 10)
limit() { local l=$((budget - $(elapsed))); [ "$l" -gt "$1" ] && l=$1; [ "$l" -lt 10 ] && l=10; echo "$l"; }

finish() {
  local status=$1 reason=${2:-}
  cp "$rows" "$logs/rows.tsv" 2>/dev/null
  # the runs' records, not their checkpoints and weights (what comes back is small)
  (cd "$work" && tar -czf "$OUT/logs.tar.gz" --exclude=checkpoint --exclude=adapter \
    --exclude='*.safetensors' --exclude='*.gguf' logs $(ls -d ws-* 2>/dev/null | sed 's|$|/runs|') \
    2>/dev/null) || true
  python3 "$R/scripts/gpu_check_report.py" table "$rows" >"$OUT/summary.txt" 2>/dev/null ||
    column -t -s $'\t' "$rows" >"$OUT/summary.txt"
  python3 - "$rows" "$status" >"$OUT/results.json" 2>/dev/null <<'EOF' || true
import json, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.count("\t") == 2]
print(json.dumps({"exit": int(sys.argv[2]),
                  "rows": [{"check": c, "status": s, "detail": d} for c, s, d in rows]}))
EOF
  say ""
  say "gpu-check: $(elapsed) s; logs in $OUT (work folder $work)"
  say ""
  tee -a "$console" <"$OUT/summary.txt"
  [ -n "$reason" ] && say "$reason"
  exit "$status"
}

# ---- 0. the bundle ------------------------------------------------------------------------
say "gpu-check: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -n): $(nproc) cores," \
    "$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2 | sed 's/^ //')"
R=""
manifest=""
if ls "$here"/payload.tar.xz* >/dev/null 2>&1; then
  manifest=$here/MANIFEST
  R=$here/ftlab-gpu
  if [ ! -x "$R/bin/ftlab" ] || [ "$manifest" -nt "$R/.unpacked" ]; then
    bad=$(cd "$here" && grep '^part ' MANIFEST | sed 's/^part //' | sha256sum -c --quiet - 2>&1)
    if [ -n "$bad" ]; then
      echo "gpu-check: the bundle's payload does not match its MANIFEST: $bad" >&2
      exit 2
    fi
    rm -rf "$R"
    if command -v xz >/dev/null 2>&1; then
      cat "$here"/payload.tar.xz* | xz -dc | tar -C "$here" -xf -
    else # python's lzma where xz is not installed
      cat "$here"/payload.tar.xz* | python3 -c \
        'import lzma,sys,tarfile; tarfile.open(fileobj=lzma.open(sys.stdin.buffer), mode="r|").extractall(sys.argv[1])' \
        "$here"
    fi || { echo "gpu-check: could not unpack the payload" >&2; exit 2; }
    touch "$R/.unpacked"
  fi
elif [ -x "$here/../bin/ftlab" ]; then
  R=$(cd "$here/.." && pwd)
  manifest=$R/../MANIFEST
else
  echo "gpu-check: no bundle here ($here): build one with 'make gpu-bundle' and run" \
       "build/gpu-bundle/gpu-check.sh" >&2
  exit 2
fi
mf() { sed -n "s/^$1 //p" "$manifest" 2>/dev/null | head -n 1; }
row "0 bundle" ok "commit $(mf commit)$( [ "$(mf dirty)" = yes ] && echo ' (dirty)'), built $(mf built); host code $(mf host_arch), CUDA $(mf cuda) (nvcc $(mf nvcc))"

# glibc: the bundle's programs need at least the version it was built against
need=$(mf glibc_min)
have=$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}')
if [ -n "$need" ] && [ -n "$have" ] &&
   [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n 1)" != "$need" ]; then
  row "0 glibc" FAIL "this machine has glibc $have; the bundle needs $need or newer"
  finish 1 "gpu-check: rebuild the bundle on a system with glibc $have or older"
fi
row "0 glibc" ok "$have (the bundle needs ${need:-?})"

# cuBLAS is opened at run time: where is libcublas.so.13 if the loader does not know it?
cublas_dir=""
if ! ldconfig -p 2>/dev/null | grep -q 'libcublas\.so\.13 '; then
  for d in ${CUDA_HOME:+$CUDA_HOME/lib64} /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
           /usr/local/cuda-13*/lib64 /usr/lib/x86_64-linux-gnu; do
    [ -e "$d/libcublas.so.13" ] && { cublas_dir=$d; break; }
  done
  if [ -z "$cublas_dir" ] && command -v python3 >/dev/null 2>&1; then
    cublas_dir=$(python3 -c 'import glob, site, sys, os
for p in site.getsitepackages() + [site.getusersitepackages()] + sys.path:
    for f in glob.glob(os.path.join(p, "nvidia", "**", "libcublas.so.13"), recursive=True):
        print(os.path.dirname(f)); sys.exit(0)' 2>/dev/null)
  fi
fi
ldpath=$cublas_dir

# Libraries: every program's NEEDED entries resolve inside the bundle (or to glibc);
# libstdc++/libgcc_s come from the machine unless it lacks them (then lib/fallback).
check_libs() {
  local f out so path real rlib
  rlib=$(readlink -f "$R/lib")
  for f in "$R"/bin/* "$R"/tests/*; do
    out=$(LD_LIBRARY_PATH=$ldpath ldd "$f" 2>&1)
    echo "$out" | grep -E 'not found' | sed "s|^|$(basename "$f"): |"
    echo "$out" | awk '/=>/ && $3 ~ /^\// {print $1, $3}' | while read -r so path; do
      case "$so" in
        libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|libresolv.so*) continue ;;
        libstdc++.so*|libgcc_s.so*|libcuda.so*|libcublas*) continue ;;
      esac
      real=$(readlink -f "$path")
      case "$real" in "$rlib"/*) ;; *) echo "$(basename "$f"): $so from outside the bundle ($real)" ;; esac
    done
  done
}
bad=$(check_libs)
stdcxx=machine
if [ -n "$bad" ] && echo "$bad" | grep -qE 'libstdc\+\+|libgcc_s|GLIBCXX|GCC_'; then
  ldpath=${ldpath:+$ldpath:}$R/lib/fallback
  stdcxx=bundle
  bad=$(check_libs)
fi
need=$(mf glibc_min_fallback)
if [ "$stdcxx" = bundle ] && [ -n "$need" ] &&
   [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n 1)" != "$need" ]; then
  bad+="the bundle's libstdc++ (needed here) wants glibc $need, this machine has $have"
fi
nlibs=$(ls "$R/lib" | grep -c '\.so')
if [ -n "$bad" ]; then
  echo "$bad" >"$logs/libraries.log"
  row "0 libraries" FAIL "$(echo "$bad" | head -n 3 | tr '\n' ';') (all: logs/libraries.log)"
  finish 1
fi
row "0 libraries" ok "$nlibs bundled libraries resolve inside the bundle; libstdc++ from the $stdcxx; cuBLAS ${cublas_dir:-found by the loader}"

ft() { LD_LIBRARY_PATH=$ldpath "$R/bin/ftlab" "$@"; }
export FTLAB_BIN=$R/bin/ftlab
if ! ver=$(ft version 2>&1); then
  row "0 ftlab starts" FAIL "$ver"
  finish 1
fi
row "0 ftlab starts" ok "$ver"

# The device probe: selftest --backend cuda exits 2 at once without a device.
timeout 300 env LD_LIBRARY_PATH="$ldpath" "$R/bin/ftlab" selftest --backend cuda \
  >"$logs/selftest-cuda.log" 2>&1
st_rc=$?
device=yes
if [ "$st_rc" = 2 ] && grep -q 'no CUDA device\|cannot be loaded\|compute capability' "$logs/selftest-cuda.log"; then
  device=no
  why=$(grep -m1 'error' "$logs/selftest-cuda.log" | sed 's/^ftlab: error: //')
fi
dev=cuda # the backend sections 2 and 3 run on
if [ "$device" = no ] && [ "${GPU_CHECK_REHEARSE:-0}" = 1 ]; then
  device=rehearsal dev=cpu
  say "gpu-check: REHEARSAL without a CUDA device: the CPU backend stands in for CUDA"
fi
if [ "$device" = yes ]; then
  say "device: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -n 1)"
fi

# ---- CPU half -----------------------------------------------------------------------------
if timeout 300 env LD_LIBRARY_PATH="$ldpath" "$R/bin/ftlab" selftest --backend cpu \
     >"$logs/selftest-cpu.log" 2>&1; then
  row "0 selftest cpu" ok "gradients vs finite differences, AdamW vs double ($(grep -c ' ok' "$logs/selftest-cpu.log") cases)"
else
  row "0 selftest cpu" FAIL "$(tail -n 2 "$logs/selftest-cpu.log" | tr '\n' ' ')"
fi

shape=smollm2-135m
[ "$quick" = 1 ] && shape=tiny
model=${GPU_CHECK_MODEL:-}
if [ -z "$model" ]; then
  model=$work/models/$shape
  if ft synth-model "$R/models/$shape" -o "$model" >"$logs/synth-model.log" 2>&1; then
    got=$(awk '/sha256/ {print $3}' "$logs/synth-model.log")
    want=$(mf "synth_sha256_$shape")
    if [ -z "$want" ] || [ "$want" = unknown ]; then
      row "0 synthetic model" ok "$shape: $(head -n 1 "$logs/synth-model.log" | sed 's/.*: llama/llama/'); sha256 ${got:0:16} (not recorded at build time)"
    elif [ "$got" = "$want" ]; then
      row "0 synthetic model" ok "$shape, the same bytes as on the build machine (sha256 ${got:0:16})"
    else
      row "0 synthetic model" FAIL "$shape: sha256 $got, the build machine made $want"
    fi
  else
    row "0 synthetic model" FAIL "$(tail -n 2 "$logs/synth-model.log" | tr '\n' ' ')"
    finish 1
  fi
else
  row "0 model" info "$model (GPU_CHECK_MODEL)"
fi

configs=${GPU_CHECK_CONFIGS:-lora-qv lora-all full lora-all-bf16 full-bf16}
[ "$quick" = 1 ] && configs=${GPU_CHECK_CONFIGS:-lora-qv full-bf16}
run_args=(-s "model.base=$model")
[ "$quick" = 1 ] && run_args+=(-s train.steps=2 -s train.batch_size=2 -s data.limit.test=2
                                -s eval.generate.max_new_tokens=2)

# One training run: ws-BACKEND-CONFIG/runs/<id>/ under the work folder.
train_run() {
  local backend=$1 c=$2 threads=$3 lim flag=$1
  [ "$backend" = cuda ] && flag=$dev
  lim=$(limit "$4")
  rm -rf "$work/ws-$backend-$c"
  local t0
  t0=$(date +%s)
  if over_budget; then # not started: the budget is spent
    echo 0 >"$logs/run-$backend-$c.seconds"
    return 124
  fi
  timeout "$lim" env LD_LIBRARY_PATH="$ldpath" "$R/bin/ftlab" --workspace "$work/ws-$backend-$c" \
    run "$R/exp/$c.yaml" "${run_args[@]}" -s "backend.threads=$threads" --backend "$flag" \
    >"$logs/run-$backend-$c.log" 2>&1
  local rc=$?
  echo "$(($(date +%s) - t0))" >"$logs/run-$backend-$c.seconds"
  return $rc
}
run_dir() { ls -d "$work/ws-$1-$2"/runs/*/ 2>/dev/null | head -n 1 | sed 's|/$||'; }

cpu_runs() {
  local threads=$1 lim=$2 c
  for c in $configs; do
    train_run cpu "$c" "$threads" "$lim"
    echo "$?" >"$logs/run-cpu-$c.rc"
  done
}
# oneDNN multiplies in bf16 only on CPUs with AVX512-BF16 or AMX; elsewhere the CPU side
# of a bf16 configuration rounds the matmul inputs to bf16 and multiplies them in fp32.
bf16_note() {
  case "$1" in
    *bf16) grep -qwE 'avx512_bf16|amx_bf16' /proc/cpuinfo 2>/dev/null ||
             printf '; this CPU has no bf16 instructions: inputs rounded to bf16, fp32 products' ;;
  esac
}
cpu_rows() {
  local c d
  for c in $configs; do
    d=$(run_dir cpu "$c")
    if [ "$(cat "$logs/run-cpu-$c.rc" 2>/dev/null)" = 0 ] && [ -n "$d" ]; then
      row "2 cpu run $c" ok "$(python3 -c 'import json,sys
m=[json.loads(l) for l in open(sys.argv[1]+"/metrics.jsonl")]
l=[x["value"] for x in m if x.get("name")=="loss" and x.get("split")=="train"]
print("%d steps, loss %.4f -> %.4f" % (len(l), l[0], l[-1]))' "$d" 2>/dev/null), $(cat "$logs/run-cpu-$c.seconds") s$(bf16_note "$c")"
    elif [ "$(cat "$logs/run-cpu-$c.rc" 2>/dev/null)" = 124 ]; then
      row "2 cpu run $c" skip "stopped after $(cat "$logs/run-cpu-$c.seconds") s: the time budget (GPU_CHECK_BUDGET)"
    else
      row "2 cpu run $c" FAIL "$(grep -m1 -i 'error' "$logs/run-cpu-$c.log" || tail -n 1 "$logs/run-cpu-$c.log")"
    fi
  done
}

if [ "$device" = no ]; then
  budget=$((budget + 3600)) # no device: nothing else is waiting
  cpu_runs 0 600
  cpu_rows
  row "1 cuda device" info "${why:-none (see logs/selftest-cuda.log)}"
  finish 2 "gpu-check: ${why:-no CUDA device (see $logs/selftest-cuda.log)}; the CPU half ran, the CUDA checks did not"
fi

# ---- 1. self-test, unit tests, kernels on the device -----------------------------------------
if [ "$device" = rehearsal ]; then
  row "1 cuda device" info "${why:-none}; REHEARSAL: sections 2 and 3 ran on the CPU backend"
  row "1 device checks" skip "rehearsal: selftest --backend cuda, test_cuda, test_cuda_kernels, cuda_kernels and compute-sanitizer need a device"
elif [ "$st_rc" = 0 ]; then
  row "1 selftest cuda" ok "$(head -n 1 "$logs/selftest-cuda.log" | sed 's/^selftest: //'); $(grep -c ': ok' "$logs/selftest-cuda.log") checks"
else
  row "1 selftest cuda" FAIL "exit $st_rc: $(grep -m2 'FAIL\|error' "$logs/selftest-cuda.log" | tr '\n' ' ')"
fi
cuobjdump=$(command -v cuobjdump || ls /usr/local/cuda/bin/cuobjdump 2>/dev/null || true)
for t in test_cuda test_cuda_kernels; do
  [ -x "$R/tests/$t" ] && [ "$device" = yes ] || continue
  timeout 300 env LD_LIBRARY_PATH="$ldpath" FTLAB_BIN="$R/bin/ftlab" CUOBJDUMP="$cuobjdump" \
    "$R/tests/$t" >"$logs/$t.log" 2>&1
  rc=$?
  p=$(grep -E '^\[  PASSED  \] [0-9]+' "$logs/$t.log" | awk '{print $4}')
  s=$(grep -c '^\[  SKIPPED \]' "$logs/$t.log")
  if [ "$rc" = 0 ]; then
    row "1 $t" ok "${p:-0} passed, $s skipped"
  else
    row "1 $t" FAIL "exit $rc: $(grep -m2 -E 'FAILED|error|Failure' "$logs/$t.log" | tr '\n' ' ')"
  fi
done
if [ -x "$R/tests/cuda_kernels" ] && [ "$device" = yes ]; then
  (cd "$work" && timeout 300 env LD_LIBRARY_PATH="$ldpath" "$R/tests/cuda_kernels") \
    >"$logs/cuda_kernels.log" 2>&1
  rc=$?
  n_ok=$(grep -c ' ok$' "$logs/cuda_kernels.log")
  if [ "$rc" = 0 ] && grep -q '^kernels: passed' "$logs/cuda_kernels.log"; then
    row "1 kernels on the device" ok "$n_ok checks against the CPU (ops, a train + eval run, selftest)"
  else
    row "1 kernels on the device" FAIL "exit $rc: $(grep -m3 'FAIL' "$logs/cuda_kernels.log" | tr '\n' ' ')"
  fi
fi

# ---- 3. speed, while nothing else runs -------------------------------------------------------
bb=${BENCH_BATCH:-32} bs=${BENCH_SEQ:-512}
[ "$quick" = 1 ] && bb=2 bs=32
for m in lora full; do
  if over_budget; then row "3 bench $m" skip "time budget (${budget}s) spent"; continue; fi
  timeout "$(limit 120)" env LD_LIBRARY_PATH="$ldpath" "$R/bin/ftlab" --json bench --backend "$dev" \
    --mode train --model "$model" --method "$m" --precision bf16 --batch "$bb" --seq "$bs" \
    --steps 10 >"$logs/bench-$m.json" 2>"$logs/bench-$m.log"
  if [ $? != 0 ]; then
    row "3 bench $m" FAIL "$(tail -n 2 "$logs/bench-$m.log" | tr '\n' ' ')"
    continue
  fi
  prec=autocast
  [ "$m" = lora ] && prec=autocast,bf16
  if ! over_budget; then
    timeout "$(limit 150)" python3 "$R/bench/torch_gpu_baseline.py" --model "$model" --method "$m" \
      --precision "$prec" --batch "$bb" --seq "$bs" --steps 10 --device "$dev" \
      >"$logs/torch-$m.jsonl" 2>"$logs/torch-$m.log"
  fi
  python3 "$R/scripts/gpu_check_report.py" bench "$logs/bench-$m.json" "$logs/torch-$m.jsonl" \
    >"$logs/ratio-$m.json"
  IFS=$'\t' read -r status detail < <(python3 "$R/scripts/gpu_check_report.py" bench-row \
    "$logs/ratio-$m.json" "${bb}x$bs" 2>&1)
  row "3 bench $m" "${status:-FAIL}" "${detail:-could not read the results}"
done
if over_budget; then
  row "3 bench decode" skip "time budget spent"
else
  np=64
  [ "$quick" = 1 ] && np=4
  if timeout "$(limit 120)" env LD_LIBRARY_PATH="$ldpath" "$R/bin/ftlab" --json bench --backend "$dev" \
       --mode generate --model "$model" --batch "$np" --prompt-len 128 --new-tokens 128 \
       >"$logs/bench-generate.json" 2>"$logs/bench-generate.log"; then
    IFS=$'\t' read -r status detail < <(python3 "$R/scripts/gpu_check_report.py" decode-row \
      "$logs/bench-generate.json" 2>&1)
    row "3 bench decode" "${status:-FAIL}" "${detail:-could not read the results}"
  else
    row "3 bench decode" FAIL "$(tail -n 2 "$logs/bench-generate.log" | tr '\n' ' ')"
  fi
fi

# ---- CPU half in the background (all cores but two) while the device trains --------------------
ncpu=$(nproc)
cpu_threads=$((ncpu > 4 ? ncpu - 2 : ncpu))
cpu_runs "$cpu_threads" 240 &
cpu_pid=$!

# ---- 2. the same steps on CUDA ----------------------------------------------------------------
for c in $configs; do
  train_run cuda "$c" 2 240
  echo "$?" >"$logs/run-cuda-$c.rc"
done

# ---- 1b. compute-sanitizer over the kernel tests (correctness only: runs beside the CPU half) ---
san=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
for tool in memcheck racecheck; do
  [ "$device" = yes ] || break
  if [ -z "$san" ] || [ ! -x "$R/tests/cuda_kernels" ]; then
    row "1 sanitizer $tool" skip "no compute-sanitizer on this machine"
    continue
  fi
  if over_budget; then row "1 sanitizer $tool" skip "time budget spent"; continue; fi
  mode=--train
  [ "$tool" = racecheck ] && mode=--ops-only
  lim=$(limit 120)
  (cd "$work" && timeout "$lim" env LD_LIBRARY_PATH="$ldpath" "$san" --tool "$tool" \
     --error-exitcode 99 "$R/tests/cuda_kernels" "$mode") >"$logs/sanitizer-$tool.log" 2>&1
  rc=$?
  summary=$(grep -m1 'ERROR SUMMARY\|RACECHECK SUMMARY' "$logs/sanitizer-$tool.log")
  if grep -q 'Device not supported\|Unable to find injection\|error 999' "$logs/sanitizer-$tool.log"; then
    row "1 sanitizer $tool" skip "not available here: $(grep -m1 'not supported\|Unable\|999' "$logs/sanitizer-$tool.log")"
  elif [ "$rc" = 124 ]; then
    row "1 sanitizer $tool" skip "stopped after $lim s (cuda_kernels $mode; the time budget)"
  elif [ "$rc" = 0 ]; then
    row "1 sanitizer $tool" ok "cuda_kernels $mode: ${summary:-no errors}"
  else
    row "1 sanitizer $tool" FAIL "exit $rc: ${summary:-see logs/sanitizer-$tool.log}"
  fi
done

wait "$cpu_pid"
cpu_rows
# Tolerances (docs/cuda.md, "What the check compares"): the worst per-step relative
# difference of the loss and of the global gradient norm, CUDA against this machine's CPU.
tol() {
  case "$1" in
    *bf16) echo "--loss-tol $TOL_LOSS_BF16 --gn-tol $TOL_GN_BF16" ;;
    *) echo "--loss-tol $TOL_LOSS --gn-tol $TOL_GN" ;;
  esac
}
for c in $configs; do
  dc=$(run_dir cpu "$c") dg=$(run_dir cuda "$c")
  if [ "$(cat "$logs/run-cuda-$c.rc")" != 0 ] || [ -z "$dg" ]; then
    row "2 cuda vs cpu $c" FAIL "the CUDA run failed: $(grep -m1 -i 'error' "$logs/run-cuda-$c.log" || tail -n 1 "$logs/run-cuda-$c.log")"
    continue
  fi
  [ -z "$dc" ] && { row "2 cuda vs cpu $c" skip "no CPU run to compare with"; continue; }
  ft --workspace "$work/ws-cuda-$c" show "$(basename "$dg")" --json >"$logs/show-cuda-$c.json" 2>/dev/null
  # shellcheck disable=SC2046
  python3 "$R/scripts/gpu_check_report.py" runs "$dc" "$dg" $(tol "$c") \
    --show "$logs/show-cuda-$c.json" >"$logs/compare-$c.json"
  crc=$?
  IFS=$'\t' read -r status detail < <(python3 "$R/scripts/gpu_check_report.py" runs-row \
    "$logs/compare-$c.json" "$(cat "$logs/run-cuda-$c.seconds")" 2>&1)
  [ "$crc" = 0 ] || status=FAIL
  row "2 cuda vs cpu $c" "${status:-FAIL}" "${detail:-could not compare}"
done

if grep -q $'\tFAIL\t' "$rows"; then finish 1; fi
[ "$device" = rehearsal ] && finish 2 "gpu-check: REHEARSAL passed (the CPU backend stood in for CUDA); ${why:-no CUDA device}"
finish 0
