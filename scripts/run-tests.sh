#!/usr/bin/env bash
# Runs every unit test binary in BUILD/tests and every golden CLI case in tests/golden,
# then prints one closing line "N passed, N failed". Exit status 1 when anything failed.
# VALGRIND=1 runs the unit tests under valgrind. TESTS=pattern runs a subset.
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
export FTLAB_ROOT=$PWD FTLAB_BIN=$PWD/$build/ftlab NO_COLOR=1
passed=0 failed=0
failures=()
log_dir=$build/test-logs
mkdir -p "$log_dir"
for t in "$build"/tests/test_*; do
  [ -x "$t" ] || continue
  name=$(basename "$t")
  [ -n "${TESTS:-}" ] && [[ $name != *${TESTS}* ]] && continue
  log=$log_dir/$name.log
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
  passed=$((passed + p)); failed=$((failed + f))
  if [ "$f" -ne 0 ]; then
    failures+=("$name (see $log)")
    echo "FAIL $name"; tail -n 30 "$log" | sed 's/^/    /'
  else
    echo "ok   $name ($p)"
  fi
done
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
skipped=0
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
