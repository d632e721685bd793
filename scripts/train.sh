#!/usr/bin/env bash
# The main job: set up, build, make the built-in corpus, and train the default model
# (configs/default.toml, embedded in sparta-train) on CPU. Idempotent: what exists is reused.
# Extra arguments go to sparta-train, e.g.  scripts/train.sh --set train.steps=100
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
data/fetch-default-corpus.sh data/cache/corpus
build/bin/sparta-prep --out data/default --corpus-dir data/cache/corpus
run_dir=runs/$(date +%Y%m%d-%H%M%S)
echo "train: run directory $run_dir"
exec build/bin/sparta-train --run-dir "$run_dir" "$@"
