#!/usr/bin/env bash
# The GEMM library by measurement (bench/README.md): Debian's OpenBLAS (pthreads, what sparta
# links today, and OpenMP), BLIS 0.9 (OpenMP) and oneDNN 2.6 on the training step's own SGEMM
# shapes, each in its own process, ROUNDS alternating rounds; prints per-shape medians and each
# library's GEMM time for one step. Installs the libraries' Debian packages if absent.
# usage: bench/gemm_libs.sh [ROUNDS] [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
threads=${2:-$(nproc)}
. scripts/apt_install.sh
apt_install bench libopenblas0-pthread libopenblas0-openmp libblis4-openmp libdnnl2
lib=/usr/lib/x86_64-linux-gnu
libs=("openblas-pthread $lib/openblas-pthread/libopenblas.so.0"
      "openblas-openmp $lib/openblas-openmp/libopenblas.so.0"
      "blis-openmp $lib/blis-openmp/libblis.so.4"
      "onednn $lib/libdnnl.so.2")
out=$(mktemp /tmp/gemm-libs.XXXXXX)
trap 'rm -f "$out"' EXIT
for r in $(seq "$rounds"); do
  # Each round in another order, so that no library always runs first.
  for i in $(seq 0 $((${#libs[@]} - 1))); do
    read -r name path <<<"${libs[$(((i + r) % ${#libs[@]}))]}"
    OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads BLIS_NUM_THREADS=$threads \
      build/bin/gemm_libs_bench "$name" "$path" "$threads" | grep '^bench_json: ' |
      sed 's/^bench_json: //' >> "$out"
  done
done
python3 - "$out" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
libs = list(dict.fromkeys(r["lib"] for r in runs))
shapes = [row["shape"] for row in runs[0]["rows"]]
med = {(l, s): statistics.median(row["gflops"] for r in runs if r["lib"] == l
                                 for row in r["rows"] if row["shape"] == s)
       for l in libs for s in shapes}
dims = {row["shape"]: (row["M"], row["N"], row["K"]) for row in runs[0]["rows"]}
print(f"SGEMM GFLOP/s, median of {len(runs) // len(libs)} alternating rounds, {runs[0]['threads']} threads\n")
print("| shape | M × N × K | " + " | ".join(libs) + " |")
print("|---|---|" + "---|" * len(libs))
for s in shapes:
    best = max(med[(l, s)] for l in libs)
    cells = [f"**{med[(l, s)]:.0f}**" if med[(l, s)] == best else f"{med[(l, s)]:.0f}" for l in libs]
    print(f"| {s} | {'×'.join(map(str, dims[s]))} | " + " | ".join(cells) + " |")
step = {l: statistics.median(r["step_gemm_s"] for r in runs if r["lib"] == l) for l in libs}
print("| **one step's GEMMs (ms)** | | " + " | ".join(f"{step[l] * 1e3:.1f}" for l in libs) + " |")
PY
