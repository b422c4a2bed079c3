#!/usr/bin/env bash
# Installs the Debian packages ftlab needs when any is missing; does nothing when all are
# present. Called by `make` (target deps); `make test` calls it with --test, which adds
# what only the tests need (headless Chromium for the report check; Slurm and munge for the
# throw-away cluster of the launcher tests, scripts/slurm-cluster.sh; cuobjdump, below), and
# `make bench` with --bench, which adds the PyTorch CPU baseline (Debian's python3-torch
# with OpenBLAS, the BLAS it recommends) and builds llama.cpp's llama-bench (below) for the
# decoding comparison. Set FTLAB_NO_DEPS=1 to skip entirely.
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
[ "${1:-}" = --test ] && pkgs+=(slurmctld slurmd slurm-client munge)  # Slurm launcher tests
[ "${1:-}" = --bench ] && pkgs+=(python3-torch libopenblas0-pthread cmake)  # torch baseline, llama.cpp

# test_cuda_kernels needs cuobjdump, which the CUDA toolkit here lacks: with --test and
# nvcc present, NVIDIA's cuobjdump wheel (pinned, sha256-checked) is downloaded without
# dependencies and only its binary unpacked into .deps/cuobjdump/bin (no Python runs).
cuobjdump_fetch() {
  local root dir whl tmp ver=13.2.51
  local sha=95c69d3ddf0c2c1f535ec44c3433a66aeee19f588d9d22f73356e20b25f12b50
  root="$(cd "$(dirname "$0")/.." && pwd)"
  dir="$root/.deps/cuobjdump"
  [ -x "$dir/bin/cuobjdump" ] && return 0
  command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ] || return 0
  command -v cuobjdump >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/cuobjdump ] && return 0
  [ "$(uname -m)" = x86_64 ] || return 0
  tmp="$(mktemp -d)"
  whl="$tmp/nvidia_cuda_cuobjdump-$ver-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl"
  if python3 -m pip download -q --no-deps --only-binary=:all: --platform manylinux2014_x86_64 \
       --python-version 3.11 -d "$tmp" "nvidia-cuda-cuobjdump==$ver" >&2 &&
     echo "$sha  $whl" | sha256sum -c --quiet - &&
     mkdir -p "$dir/bin" && unzip -q -o -j "$whl" nvidia/cu13/bin/cuobjdump -d "$dir/bin"; then
    chmod +x "$dir/bin/cuobjdump"
    echo "deps: cuobjdump $ver in $dir/bin" >&2
  else
    echo "deps: could not fetch cuobjdump $ver (test_cuda_kernels will skip)" >&2
  fi
  rm -rf "$tmp"
}
[ "${1:-}" = --test ] && cuobjdump_fetch

# make bench compares decoding with llama.cpp on the same GGUF file. llama.cpp is built
# from the tree llama-cpp-python 0.3.36 vendors (llama.cpp commit 0c1e57098, ggml 0.25.3):
# the sdist is fetched from PyPI (URL and sha256 pinned; none of its Python runs), only
# vendor/llama.cpp is unpacked, and llama-bench is built for this CPU (GGML_NATIVE, static)
# into .deps/llama.cpp/ (ignored by git). LLAMA_BENCH=path uses an existing llama-bench.
llamacpp_fetch() {
  local root dir tmp ver=0.3.36
  local sha=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
  local url=https://files.pythonhosted.org/packages/ec/e9/e7de2b0463ea3ffbf0ede6cb21b58c1258a8f6521aae45ca773a59fe7cf3/llama_cpp_python-$ver.tar.gz
  root="$(cd "$(dirname "$0")/.." && pwd)"
  dir="$root/.deps/llama.cpp"
  [ -n "${LLAMA_BENCH:-}" ] && return 0
  [ -x "$dir/bin/llama-bench" ] && return 0
  command -v cmake >/dev/null 2>&1 || { echo "deps: cmake missing, llama.cpp not built" >&2; return 0; }
  tmp="$(mktemp -d)"
  echo "deps: building llama.cpp (llama-cpp-python $ver's tree) into $dir (a few minutes)" >&2
  if curl -fsSL -o "$tmp/src.tar.gz" "$url" &&
     echo "$sha  $tmp/src.tar.gz" | sha256sum -c --quiet - &&
     tar -xzf "$tmp/src.tar.gz" -C "$tmp" "llama_cpp_python-$ver/vendor/llama.cpp" &&
     cmake -S "$tmp/llama_cpp_python-$ver/vendor/llama.cpp" -B "$tmp/build" \
       -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=OFF \
       -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF >"$tmp/cmake.log" 2>&1 &&
     cmake --build "$tmp/build" -j "$(nproc)" --target llama-bench >>"$tmp/cmake.log" 2>&1; then
    mkdir -p "$dir/bin"
    cp "$tmp/build/bin/llama-bench" "$dir/bin/"
    echo "llama-cpp-python $ver vendored llama.cpp 0c1e57098 (ggml 0.25.3), GGML_NATIVE" >"$dir/VERSION"
    echo "deps: llama-bench in $dir/bin" >&2
  else
    echo "deps: could not build llama.cpp (make bench runs without the comparison); log:" >&2
    tail -n 20 "$tmp/cmake.log" >&2 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
if [ "${1:-}" = --bench ]; then llamacpp_fetch; fi
