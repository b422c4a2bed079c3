#!/usr/bin/env bash
# The sweep benchmark (part of `make bench`; run alone: bench/sweep_bench.sh). Two tables:
# 1. bayes and tpe against random with the same budget on synthetic objectives with known minima
#    (bench/sweep/*.yaml through the exec trainer bench/sweep_trainer.py): the median over
#    seeds of the best value found and of the regret (best - f*), the worst regret, and the
#    CPU seconds per run (ftlab and the trainer: the children this script waited for).
# 2. hyperband early termination on the finetune objective with random search: training
#    steps run, steps saved and the best value, with and without early_terminate.
# Environment: SEEDS (default 5), BUDGET (runs per sweep, 20), OBJECTIVES ("branin hartmann3
# finetune"), METHODS ("bayes tpe random"), HB_RUNS (30; 0 skips part 2), HB_SEEDS (3), HB_DELAY (seconds per trainer
# iteration in part 2, 0.002).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bin=${FTLAB_BIN:-$root/build/ftlab}
seeds=${SEEDS:-5}
budget=${BUDGET:-20}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp bench/sweep/*.yaml bench/sweep/data.jsonl "$tmp"/
sed -i "s#\.\./sweep_trainer\.py#$root/bench/sweep_trainer.py#" "$tmp"/*.yaml
echo "sweep bench: $(date -u +%Y-%m-%dT%H:%M:%SZ) $(uname -n), $(nproc) cores, load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "budget $budget runs per sweep, seeds 1..$seeds (sweep.seed), ftlab $("$bin" version | cut -d' ' -f2)"

# variant FILE METHOD SEED [EXTRA_SWEEP_LINE] -> path of a copy with that method and seed
variant() {
  local f=$1 method=$2 seed=$3 extra=${4:-} out
  out="$tmp/${f%.yaml}-$method-$seed-${5:-x}.yaml"
  sed -e "s/^  method: bayes/  method: $method\n  seed: $seed/" \
      -e "s/^  samples: [0-9]*/  samples: ${6:-$budget}/" "$tmp/$f" > "$out"
  [ -n "$extra" ] && printf '%s\n' "$extra" >> "$out"
  echo "$out"
}

# best WORKSPACE -> the lowest validation.loss result of any run
best() {
  sqlite3 "$1/ftlab.db" "SELECT min(value) FROM results WHERE model='tuned' AND split='validation' AND metric='loss'"
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

declare -A fstar=([branin]=0.397887 [hartmann3]=-3.86278 [finetune]=1.0)
printf '\n%-10s %-7s %12s %12s %12s %10s\n' objective method "median best" "median regret" "worst regret" "cpu s/run"
for obj in ${OBJECTIVES:-branin hartmann3 finetune}; do
  for method in ${METHODS:-bayes tpe random}; do
    bests=() regrets=()
    t0=$(awk '{print $14+$15+$16+$17}' /proc/$$/stat)
    cpu0=$(cut -d' ' -f1 /proc/uptime)
    for seed in $(seq 1 "$seeds"); do
      f=$(variant "$obj.yaml" "$method" "$seed")
      ws="$tmp/ws-$obj-$method-$seed"
      (cd "$tmp" && "$bin" -q --workspace "$ws" run "$f" >/dev/null 2>"$ws.err") || {
        echo "sweep bench: $obj $method seed $seed failed:"; cat "$ws.err"; exit 1; }
      b=$(best "$ws")
      bests+=("$b")
      regrets+=("$(awk -v b="$b" -v s="${fstar[$obj]}" 'BEGIN {printf "%.6g", b - s}')")
    done
    cpu=$(awk -v a="$(awk '{print $14+$15+$16+$17}' /proc/$$/stat)" -v b="$t0" \
      -v n=$((seeds * budget)) -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.3f", (a - b) / hz / n}')
    mb=$(printf '%s\n' "${bests[@]}" | median)
    mr=$(printf '%s\n' "${regrets[@]}" | median)
    wr=$(printf '%s\n' "${regrets[@]}" | sort -g | tail -n 1)
    printf '%-10s %-7s %12.5g %12.5g %12.5g %10s\n' "$obj" "$method" "$mb" "$mr" "$wr" "$cpu"
  done
done

# Part 2: hyperband on random search.
hb_runs=${HB_RUNS:-30}
hb_seeds=${HB_SEEDS:-3}
[ "$hb_runs" -gt 0 ] || exit 0
export SWEEP_TRAINER_DELAY=${HB_DELAY:-0.002}
printf '\nhyperband (min_iter 3, eta 3) on random search, finetune objective, %s runs of 100 iterations, seeds 1..%s\n' "$hb_runs" "$hb_seeds"
printf '%-22s %12s %12s %12s %12s %10s\n' variant "steps run" "steps saved" "stopped" "median best" "wall s"
for variant_name in "no early stop" "hyperband"; do
  steps=() saved=() stopped=() bests=()
  t0=$(date +%s.%N)
  for seed in $(seq 1 "$hb_seeds"); do
    extra=""
    [ "$variant_name" = hyperband ] && extra="  early_terminate: {type: hyperband, metric: validation.loss, min_iter: 3, eta: 3}"
    f=$(variant finetune.yaml random "$seed" "$extra" "hb${#extra}" "$hb_runs")
    ws="$tmp/hb-${#extra}-$seed"
    (cd "$tmp" && "$bin" -q --workspace "$ws" run "$f" >/dev/null 2>"$ws.err") || {
      echo "sweep bench: hyperband $seed failed:"; cat "$ws.err"; exit 1; }
    steps+=("$(sqlite3 "$ws/ftlab.db" "SELECT sum(step) FROM runs")")
    saved+=("$(sqlite3 "$ws/ftlab.db" "SELECT coalesce(sum(total_steps - step), 0) FROM runs WHERE status = 'stopped'")")
    stopped+=("$(sqlite3 "$ws/ftlab.db" "SELECT count(*) FROM runs WHERE status = 'stopped'")")
    bests+=("$(best "$ws")")
  done
  wall=$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN {printf "%.1f", a - b}')
  printf '%-22s %12s %12s %12s %12.5g %10s\n' "$variant_name" \
    "$(printf '%s\n' "${steps[@]}" | median)" "$(printf '%s\n' "${saved[@]}" | median)" \
    "$(printf '%s\n' "${stopped[@]}" | median)" "$(printf '%s\n' "${bests[@]}" | median)" "$wall"
done
