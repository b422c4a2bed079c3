#!/usr/bin/env bash
# Data-driven CLI cases. Each directory tests/golden/**/NAME/ that holds a file `args`
# is one case:
#   args      the command line after `ftlab`, one argument per line (no shell involved)
#   rc        expected exit status (default 0)
#   stdout    expected standard output (compared exactly when the file exists)
#   stderr    expected standard error  (compared exactly when the file exists)
#   setup     optional script run first in the case's scratch copy (e.g. to make a repo);
#             $FTLAB_ROOT is the repository (to copy a fixture such as a tiny model)
# The case runs in a scratch copy of its directory with FTLAB_WORKSPACE set inside it;
# the scratch directory's path reads {case} in the compared outputs.
# UPDATE=1 rewrites rc/stdout/stderr from the actual output.
set -uo pipefail
bin=$1
root=$(cd "$(dirname "$0")/.." && pwd)
export FTLAB_ROOT=${FTLAB_ROOT:-$root}
pass=0 fail=0
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
while IFS= read -r argsfile; do
  dir=$(dirname "$argsfile")
  rel=${dir#"$root"/tests/golden/}
  [ -n "${TESTS:-}" ] && [[ $rel != *${TESTS}* ]] && continue
  work=$scratch/$rel
  mkdir -p "$work"
  cp -r "$dir"/. "$work"/
  mapfile -t args < "$argsfile"
  (cd "$work" && [ ! -f setup ] || bash ./setup >/dev/null 2>&1)
  (cd "$work" && FTLAB_WORKSPACE="$work/.ws" NO_COLOR=1 "$bin" "${args[@]}" \
    >"$work/.out" 2>"$work/.err" </dev/null)
  rc=$?
  # The scratch directory differs on every run: outputs name it as {case}.
  W="$work" perl -pi -e 's/\Q$ENV{W}\E/{case}/g' "$work/.out" "$work/.err"
  want_rc=0; [ -f "$dir/rc" ] && want_rc=$(cat "$dir/rc")
  ok=1
  if [ "${UPDATE:-0}" = 1 ]; then
    echo "$rc" >"$dir/rc"; cp "$work/.out" "$dir/stdout"; cp "$work/.err" "$dir/stderr"
  else
    [ "$rc" = "$want_rc" ] || { ok=0; echo "  exit status $rc, expected $want_rc"; }
    if [ -f "$dir/stdout" ] && ! diff -u "$dir/stdout" "$work/.out" >"$work/.diff"; then
      ok=0; echo "  stdout differs:"; head -n 20 "$work/.diff" | sed 's/^/    /'; fi
    if [ -f "$dir/stderr" ] && ! diff -u "$dir/stderr" "$work/.err" >"$work/.diff"; then
      ok=0; echo "  stderr differs:"; head -n 20 "$work/.diff" | sed 's/^/    /'; fi
  fi
  if [ $ok = 1 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL golden/$rel"; fi
done < <(find "$root/tests/golden" -name args -type f | sort)
echo "ok   golden ($pass passed, $fail failed)"
echo "golden-summary $pass $fail"
