#!/usr/bin/env bash
# Shared by the mpi test scripts: a small generated text prepared into DIR/data (96-token
# vocabulary), the corpus the tiny model trains on. usage: tests/mpi/tiny_data.sh BIN_DIR DIR
set -euo pipefail
bin=$1
dir=$2
python3 -c "
import random
r = random.Random(5)
w = 'in the beginning god created heaven and earth and the earth was without form and void'.split()
print('\n'.join(' '.join(r.choice(w) for _ in range(12)) for _ in range(3000)))" > "$dir/text.txt"
"$bin/sparta-prep" --out "$dir/data" --input "$dir/text.txt" --vocab-size 96 --val-fraction 0.05 \
  > "$dir/prep.log" 2>&1 || { cat "$dir/prep.log"; exit 1; }
