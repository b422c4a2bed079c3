#!/usr/bin/env bash
# `make demo`: runs experiments/quickstart.yaml (LoRA, two learning rates, base model
# evaluated on the same test set), writes its report and prints where index.html is.
# The build and the model download are done by make before this script runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${FTLAB_BIN:-build/ftlab}
out=${DEMO_OUT:-reports-out/quickstart}
start=$(date +%s)
"$bin" run experiments/quickstart.yaml
"$bin" report quickstart -o "$out"
echo "demo: finished in $(( $(date +%s) - start ))s"
echo "demo: report at $PWD/$out/index.html"
