#!/usr/bin/env bash
# Runs every unit test binary in BUILD/tests and every golden CLI case in tests/golden,
# then prints one closing line "N passed, N failed". Exit status 1 when anything failed.
# VALGRIND=1 runs the unit tests under valgrind. TESTS=pattern runs a subset.
# Tests named test_slurm_cluster* need a Slurm cluster: a throw-away one is started
# (scripts/slurm-cluster.sh, in a scratch directory of its own) before them and stopped at
# the end, also when a test fails or the script is interrupted. Slurm missing, or a cluster
# test that skips, is a failure; FTLAB_SKIP_SLURM=1 skips them on purpose.
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
export FTLAB_ROOT=$PWD FTLAB_BIN=$PWD/$build/ftlab NO_COLOR=1
passed=0 failed=0
failures=()
log_dir=$build/test-logs
mkdir -p "$log_dir"
skipped=0
cluster_dir=
cluster_stop() {
  [ -n "$cluster_dir" ] || return 0
  scripts/slurm-cluster.sh stop "$cluster_dir" >/dev/null 2>&1 || true
  rm -rf "$cluster_dir"
  cluster_dir=
}
trap cluster_stop EXIT
trap 'cluster_stop; exit 130' INT TERM
# Starts the cluster for the test_slurm_cluster* binaries (once); false when it cannot.
cluster_start() {
  [ -n "$cluster_dir" ] && return 0
  cluster_dir=$(mktemp -d "${TMPDIR:-/tmp}/ftlab-slurm.XXXXXX")
  local t0=$SECONDS out
  if out=$(scripts/slurm-cluster.sh start "$cluster_dir" 2>"$log_dir/slurm-cluster.log"); then
    eval "$out"
    export SLURM_CONF
    echo "slurm cluster up in $((SECONDS - t0)) s ($cluster_dir)"
    return 0
  fi
  return 1
}
for t in "$build"/tests/test_*; do
  [ -x "$t" ] || continue
  name=$(basename "$t")
  [ -n "${TESTS:-}" ] && [[ $name != *${TESTS}* ]] && continue
  log=$log_dir/$name.log
  if [[ $name == test_slurm_cluster* ]]; then
    if [ "${VALGRIND:-0}" = 1 ]; then
      skipped=$((skipped + 1)); echo "skip $name (not under valgrind)"; continue
    elif ! command -v slurmctld >/dev/null 2>&1; then
      # Missing Slurm is a failure (make test installs it); skipping needs asking for.
      if [ "${FTLAB_SKIP_SLURM:-0}" = 1 ]; then
        skipped=$((skipped + 1)); echo "skip $name (FTLAB_SKIP_SLURM=1)"
      else
        failed=$((failed + 1)); failures+=("$name: Slurm is not installed (scripts/deps.sh --test; FTLAB_SKIP_SLURM=1 skips)")
        echo "FAIL $name (Slurm not installed)"
      fi
      continue
    elif ! cluster_start; then
      failed=$((failed + 1)); failures+=("$name: the Slurm cluster did not start (see $log_dir/slurm-cluster.log)")
      echo "FAIL $name (cluster)"; tail -n 30 "$log_dir/slurm-cluster.log" | sed 's/^/    /'
      continue
    fi
  fi
  if [ "${VALGRIND:-0}" = 1 ]; then
    # valgrind's CPU has no AVX-512 BF16; ops_cpu_has_bf16 asks oneDNN, which sees that.
    valgrind --quiet --error-exitcode=99 --leak-check=full \
      --errors-for-leak-kinds=definite --suppressions=tests/valgrind.supp "$t" >"$log" 2>&1
  else
    "$t" >"$log" 2>&1
  fi
  rc=$?
  p=$(grep -E '^\[  PASSED  \] [0-9]+ test' "$log" | awk '{s+=$4} END {print s+0}')
  f=$(grep -E '^\[  FAILED  \] [0-9]+ test' "$log" | awk '{s+=$4} END {print s+0}')
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
  # With a cluster up, a Slurm test that skipped did not test anything: a failure.
  if [[ $name == test_slurm_cluster* ]] && grep -qE '^\[  SKIPPED \]' "$log"; then
    f=$((f + 1)); echo "    $name skipped tests although the cluster is up" >>"$log"
  fi
  # A binary that passed nothing and failed nothing tested nothing.
  if [[ $name == test_slurm_cluster* ]] && [ "$p" -eq 0 ] && [ "$f" -eq 0 ]; then f=1; fi
  passed=$((passed + p)); failed=$((failed + f))
  if [ "$f" -ne 0 ]; then
    failures+=("$name (see $log)")
    echo "FAIL $name"; tail -n 30 "$log" | sed 's/^/    /'
  else
    echo "ok   $name ($p)"
  fi
done
cluster_stop
# Golden CLI cases.
if [ -x "$FTLAB_BIN" ]; then
  out=$(scripts/golden.sh "$FTLAB_BIN" 2>&1)
  echo "$out" | grep -v '^golden-summary' || true
  gp=$(echo "$out" | awk '/^golden-summary/ {print $2}')
  gf=$(echo "$out" | awk '/^golden-summary/ {print $3}')
  passed=$((passed + ${gp:-0})); failed=$((failed + ${gf:-1}))
fi
# Headless-Chromium check of real HTML reports (scripts/test-browser.sh), in the default
# build only (not under sanitizers or valgrind). Without chromium it is skipped.
if [ "$build" = build ] && [ "${VALGRIND:-0}" != 1 ] && [ -z "${TESTS:-}" ]; then
  if command -v chromium >/dev/null 2>&1; then
    if scripts/test-browser.sh >"$log_dir/test-browser.log" 2>&1; then
      passed=$((passed + 1)); echo "ok   test-browser (1)"
    else
      failed=$((failed + 1)); failures+=("test-browser (see $log_dir/test-browser.log)")
      echo "FAIL test-browser"; tail -n 30 "$log_dir/test-browser.log" | sed 's/^/    /'
    fi
  else
    skipped=$((skipped + 1)); echo "skip test-browser (chromium not installed)"
  fi
fi
if [ ${#failures[@]} -gt 0 ]; then
  echo "failed suites:"; printf '  %s\n' "${failures[@]}"
fi
if [ "$skipped" -gt 0 ]; then
  echo "$passed passed, $failed failed, $skipped skipped"
else
  echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
