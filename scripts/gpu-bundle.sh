#!/usr/bin/env bash
# Assembles the GPU bundle (`make gpu-bundle`, docs/cuda.md) from the staged programs:
#   GPU_CUDA=0|1 NVCC=path GPU_XZ=-6 GPU_SYNTH_FULL=1 gpu-bundle.sh STAGE BUNDLE ARCH_FLAGS
# (GPU_XZ: xz's level; GPU_SYNTH_FULL=0 skips making the SmolLM2-shaped model here, whose
# sha256 MANIFEST records for the check: make test's bundle does.)
# STAGE holds bin/ftlab and tests/ (linked with the run path $ORIGIN/../lib). BUNDLE gets
# gpu-check.sh (the entry point: it unpacks the payload beside itself and runs the check),
# payload.tar.xz (split into parts when over 60 MiB), MANIFEST and README. The payload:
#   bin/ftlab, tests/{test_cuda,test_cuda_kernels,cuda_kernels}
#   lib/            every shared library the programs need except glibc's, the CUDA
#                   driver's and cuBLAS (ldd's closure, dereferenced, by soname)
#   lib/fallback/   libstdc++ and libgcc_s: used only where the machine lacks them
#   models/         config.json of the SmolLM2-135M shape and of a tiny model with the same
#                   vocabulary, and SmolLM2's tokenizer.json (ftlab synth-model makes the
#                   models on the machine; MANIFEST has the sha256 they must come out with)
#   exp/            bench/gpu-check/*.yaml with the topic data
#   scripts/        gpu-check.sh, gpu_check_report.py; bench/torch_gpu_baseline.py
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
stage=$1 bundle=$2 arch=${3:-}
part_max=$((60 * 1024 * 1024))

[ -x "$stage/bin/ftlab" ] || { echo "gpu-bundle: $stage/bin/ftlab missing" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
p=$tmp/ftlab-gpu
mkdir -p "$p"/{bin,lib/fallback,tests,models/smollm2-135m,models/tiny,exp/data,scripts,bench}

cp "$stage/bin/ftlab" "$p/bin/"
for t in test_cuda test_cuda_kernels cuda_kernels; do
  [ -x "$stage/tests/$t" ] && cp "$stage/tests/$t" "$p/tests/"
done

# Libraries: what ldd resolves for every program, minus what the GPU machine provides.
provided() {
  case "$1" in
    linux-vdso.so*|ld-linux*|libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*) return 0 ;;
    libresolv.so*|libutil.so*|libanl.so*|libnsl.so*|libmvec.so*) return 0 ;;
    libcuda.so*|libcudart.so*|libcublas.so*|libcublasLt.so*|libnvidia*) return 0 ;;
  esac
  return 1
}
for f in "$p"/bin/* "$p"/tests/*; do
  ldd "$f" | awk '/=>/ && $3 ~ /^\// {print $1, $3}'
done | sort -u | while read -r soname path; do
  provided "$soname" && continue
  case "$soname" in
    libstdc++.so*|libgcc_s.so*) cp -L "$path" "$p/lib/fallback/$soname" ;;
    *) cp -L "$path" "$p/lib/$soname" ;;
  esac
done
if ldd "$p/bin/ftlab" | grep -q 'not found'; then
  echo "gpu-bundle: ftlab has unresolved libraries:" >&2; ldd "$p/bin/ftlab" >&2; exit 1
fi

# The highest glibc symbol version the files need: the machine's glibc must be as new
# (the fallback libstdc++ counts only where it is used).
glibc_of() {
  for f in "$@"; do
    objdump -T "$f" 2>/dev/null | grep -o 'GLIBC_[0-9][0-9.]*' || true
  done | sed 's/GLIBC_//' | sort -V -u | tail -n 1
}
glibc_min=$(glibc_of "$p"/bin/* "$p"/tests/* "$p"/lib/*.so*)
glibc_fallback=$(glibc_of "$p"/lib/fallback/*)

cp bench/shapes/smollm2-135m.json "$p/models/smollm2-135m/config.json"
cp bench/shapes/tiny-smollm2-vocab.json "$p/models/tiny/config.json"
cp tests/reference/smollm2_tokenizer.json "$p/models/smollm2-135m/tokenizer.json"
cp tests/reference/smollm2_tokenizer.json "$p/models/tiny/tokenizer.json"
cp bench/gpu-check/*.yaml "$p/exp/"
cp experiments/data/topics/train.jsonl experiments/data/topics/test.jsonl "$p/exp/data/"
cp scripts/gpu-check.sh scripts/gpu_check_report.py "$p/scripts/"
cp bench/torch_gpu_baseline.py "$p/bench/"

# The synthetic models' expected bytes, made here by the same binary.
synth_sha() {
  "$p/bin/ftlab" synth-model "$p/models/$1" -o "$tmp/synth-$1" |
    awk '/sha256/ {print $3}'
  rm -rf "$tmp/synth-$1"
}
sha_tiny=$(synth_sha tiny)
sha_smol=unknown
[ "${GPU_SYNTH_FULL:-1}" = 1 ] && sha_smol=$(synth_sha smollm2-135m)

cuda=no nvcc_ver=none
if [ "${GPU_CUDA:-0}" = 1 ]; then
  cuda=yes
  nvcc_ver=$("${NVCC:-nvcc}" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')
fi

rm -rf "$bundle"
mkdir -p "$bundle"
tar -C "$tmp" -cf - ftlab-gpu | xz -T2 "${GPU_XZ:--6}" >"$bundle/payload.tar.xz"
size=$(stat -c %s "$bundle/payload.tar.xz")
if [ "$size" -gt "$part_max" ]; then
  split -b "$part_max" -d -a 2 "$bundle/payload.tar.xz" "$bundle/payload.tar.xz.part"
  rm "$bundle/payload.tar.xz"
fi
cp scripts/gpu-check.sh "$bundle/gpu-check.sh"
commit=$(git -C "$root" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
dirty=$(git -C "$root" status --porcelain 2>/dev/null | grep -q . && echo yes || echo no)
{
  echo "# ftlab GPU bundle (make gpu-bundle); scripts/gpu-check.sh reads the keys below"
  echo "commit $commit"
  echo "dirty $dirty"
  echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -n)"
  echo "host_arch ${arch:-unknown}"
  echo "cuda $cuda"
  echo "nvcc $nvcc_ver"
  echo "glibc_min $glibc_min"
  echo "glibc_min_fallback $glibc_fallback"
  echo "synth_sha256_tiny $sha_tiny"
  echo "synth_sha256_smollm2-135m $sha_smol"
  echo "libs $(cd "$p/lib" && ls -p | grep -v / | tr '\n' ' ')"
  echo "fallback_libs $(ls "$p/lib/fallback" | tr '\n' ' ')"
  (cd "$bundle" && sha256sum payload.tar.xz* | sed 's/^/part /')
} >"$bundle/MANIFEST"
cat >"$bundle/README" <<'EOF'
ftlab GPU bundle: run ./gpu-check.sh on a machine with an NVIDIA GPU (compute capability
8.0+, driver 580+, cuBLAS 13). It unpacks payload.tar.xz here, checks the libraries, runs
the CPU half, then the CUDA checks and benchmarks, and writes its logs into $OUT (or
./gpu-check-out); the summary table is printed last. docs/cuda.md says what each row means.
EOF
largest=$(find "$bundle" -type f -printf '%s\n' | sort -n | tail -n 1)
total=$(du -sb "$bundle" | cut -f1)
[ "$largest" -le "$part_max" ] || { echo "gpu-bundle: a part is over 60 MiB" >&2; exit 1; }
echo "gpu-bundle: $bundle: $((total / 1024 / 1024)) MiB in $(find "$bundle" -type f | wc -l) files" \
     "(largest $((largest / 1024 / 1024)) MiB); cuda $cuda, host code ${arch:-?}, glibc >= $glibc_min"
