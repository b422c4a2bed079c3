#!/usr/bin/env bash
# `make lint`: cppcheck over the library directories, then clang-tidy on every library
# source and cli/main.c, one job per core. Both remember what already passed, so a second
# run looks only at what changed: cppcheck through its build folder (build/lint/cppcheck),
# clang-tidy through a stamp per file named by the hash of the clang-tidy version, the
# .clang-tidy file, the flags and the file's preprocessed text (every header it includes).
# Delete build/lint to analyse everything again.
set -euo pipefail
cd "$(dirname "$0")/.."
dirs=(common schema store scoring runner backends reports cli)
flags=(-std=c11 -D_GNU_SOURCE -fopenmp -I. -I/usr/local/cuda/include)
state=build/lint
mkdir -p "$state/cppcheck" "$state/tidy"

cppcheck --quiet --error-exitcode=1 --enable=warning,portability --inline-suppr \
  --suppress=missingIncludeSystem --cppcheck-build-dir="$state/cppcheck" -j "$(nproc)" \
  -I. -D__GNUC__ "${dirs[@]}"

cpp=clang
command -v clang >/dev/null || cpp=cc
version=$(clang-tidy --version)
tidy_one() {
  local f=$1 key
  key=$({ printf '%s\n' "$version" "${flags[*]}"; cat .clang-tidy; "$cpp" -E "${flags[@]}" "$f"; } |
    sha256sum | cut -c1-64)
  [ -e "$state/tidy/$key" ] && return 0
  clang-tidy --quiet "$f" -- "${flags[@]}" 2>/dev/null || return 1
  : >"$state/tidy/$key"
}
export -f tidy_one
export cpp version state
export flags_str="${flags[*]}"
files=$( (find "${dirs[@]}" -name '*.c' ! -path cli/main.c; echo cli/main.c) | sort)
# xargs cannot pass an array: the flags travel as one string and split again in the child.
printf '%s\n' $files | xargs -P "$(nproc)" -n 1 bash -c \
  'read -r -a flags <<<"$flags_str"; tidy_one "$1"' _ || {
  echo "lint: clang-tidy found problems (above)" >&2
  exit 1
}
