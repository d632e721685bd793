#!/usr/bin/env bash
# The main job: set up, build, make the built-in corpus, and train the default model of the main
# command, RMoE + Mix-LN (configs/rmoe.toml), on CPU. Idempotent: what exists is reused.
# Extra arguments go to sparta-train, e.g.  scripts/train.sh --set train.steps=100; a --config
# of your own replaces configs/rmoe.toml (sparta-train alone defaults to the dense
# configs/default.toml, embedded in the binary).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
data/fetch-default-corpus.sh data/cache/corpus
build/bin/sparta-prep --out data/default --corpus-dir data/cache/corpus
config=(--config configs/rmoe.toml)
for a in "$@"; do
  case $a in --config | --config=*) config=() ;; esac
done
run_dir=runs/$(date +%Y%m%d-%H%M%S)
echo "train: run directory $run_dir"
exec build/bin/sparta-train "${config[@]}" --run-dir "$run_dir" "$@"
