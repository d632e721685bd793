#!/usr/bin/env bash
# One call on the GPU machine (Ubuntu 24.04, H100; no network, no Debian dev packages): configure
# and build the CUDA targets, run `ctest -L gpu`, train the dense, RMoE and UoE configs for a few
# hundred steps on the GPU (tokens/s, loss) and the same dense model in PyTorch (bench/
# pytorch_same_model.py), writing every log to $OUT.
#
# Prepare on the dev machine (once): scripts/device-deps.sh builds .device-deps/ (the Debian
# headers, CMake/pkg-config files and shared libraries of fmt, spdlog, toml++, CLI11,
# nlohmann-json, SentencePiece, xxHash, plus pkgconf) — none of which the GPU image has — and
# data/default must exist (scripts/train.sh). Then call the device tool with
#   carry: [".device-deps", "data/default"]   command: tests/gpu/run-on-device.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/sparta-device-out}
mkdir -p "$OUT"
t0=$(date +%s)
stamp() { echo "[$(($(date +%s) - t0)) s] $*" | tee -a "$OUT/summary.txt"; }

deps=$PWD/.device-deps
if [ -d "$deps" ]; then
  for pc in "$deps"/usr/lib/x86_64-linux-gnu/pkgconfig/*.pc "$deps"/usr/share/pkgconfig/*.pc; do
    sed -i "s#^prefix=.*#prefix=$deps/usr#" "$pc"
  done
  export CMAKE_PREFIX_PATH=$deps/usr
  export PKG_CONFIG_PATH=$deps/usr/lib/x86_64-linux-gnu/pkgconfig:$deps/usr/share/pkgconfig
  export LD_LIBRARY_PATH=$deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  command -v pkg-config >/dev/null || export PATH=$deps/bin:$PATH
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
stamp "gpu: $(tail -1 "$OUT/gpu.txt")"

gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
cmake -S . -B build-gpu "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DSPARTA_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES=90 -DSPARTA_GRPC=OFF -DSPARTA_PROMETHEUS=OFF -DSPARTA_WERROR=OFF \
  > "$OUT/configure.log" 2>&1 \
  || { stamp "configure FAILED"; tail -30 "$OUT/configure.log"; exit 1; }
stamp "configured"
cmake --build build-gpu -j16 > "$OUT/build.log" 2>&1 ||
  { stamp "build FAILED"; grep -m20 -B2 -A8 error "$OUT/build.log"; exit 1; }
stamp "built ($(grep -c 'warning:' "$OUT/build.log") warnings)"
grep -m10 -A3 'warning:' "$OUT/build.log"

(cd build-gpu && ctest -L gpu --output-on-failure --timeout 300) > "$OUT/ctest-gpu.log" 2>&1
stamp "ctest -L gpu: $(grep -E 'tests passed|tests failed' "$OUT/ctest-gpu.log")"
grep -E "Failure|FAILED|rel_err|Expected|Which is|evaluates" "$OUT/ctest-gpu.log" | head -40

# Distributed runtime on the one GPU: the MPI tests (several ranks, device tensors staged through
# the host), the NCCL-vs-raw and MPI-vs-raw collective benchmark, and 2 ranks sharing the GPU
# (backend mpi) against one process on it.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
(cd build-gpu && ctest -L mpi --output-on-failure --timeout 300) > "$OUT/ctest-mpi.log" 2>&1
stamp "ctest -L mpi: $(grep -E 'tests passed|tests failed' "$OUT/ctest-mpi.log")"
grep -E " vs |FAIL" "$OUT/ctest-mpi.log" | head -20
timeout 60 mpirun -np 1 build-gpu/bin/comm_bench --max-mib 256 > "$OUT/comm-bench-np1.txt" 2>&1
timeout 60 mpirun -np 2 build-gpu/bin/comm_bench --max-mib 64 > "$OUT/comm-bench-np2.txt" 2>&1
stamp "comm_bench: $(grep -c '^| nccl' "$OUT/comm-bench-np1.txt") nccl rows, $(grep -c '^| mpi' "$OUT/comm-bench-np2.txt") mpi rows (np 2)"
if [ -d data/default ]; then
  common=(--set train.device=cuda --set train.steps=20 --set train.log_every=1 --set train.eval_every=0 --set train.eval_batches=4)
  same() {  # same NAME REF RUN: per-step losses of two metrics files
    python3 - "$OUT/$2.jsonl" "$OUT/$3.jsonl" "$1" <<'PY' | tee -a "$OUT/summary.txt"
import json, sys
a, b = ([l["loss"] for l in map(json.loads, open(p)) if "loss" in l] for p in sys.argv[1:3])
print(f"GPU {sys.argv[3]} vs one process: {len(a)}/{len(b)} steps, max rel loss diff "
      f"{max([abs(x - y) / abs(x) for x, y in zip(a, b)] or [float('nan')]):.2e}")
PY
  }
  one() { timeout 120 build-gpu/bin/sparta-train "${common[@]}" "$@" > "$OUT/$name.log" 2>&1; }
  two() { timeout 180 mpirun -np 2 build-gpu/bin/sparta-train "${common[@]}" --set parallel.backend=mpi "$@" > "$OUT/$name.log" 2>&1; }
  name=dp1 one --set train.batch_size=16 --metrics-out "$OUT/dp1.jsonl"
  name=dp2 two --set train.batch_size=8 --set parallel.zero=1 --metrics-out "$OUT/dp2.jsonl"
  same "dp2 (mpi, zero1)" dp1 dp2
  # Tensor, context (d_ff divisible by 2) and expert parallel (RMoE), 2 ranks sharing the GPU.
  name=tp1 one --set train.batch_size=16 --set model.d_ff=684 --metrics-out "$OUT/tp1.jsonl"
  name=tp2 two --set train.batch_size=16 --set model.d_ff=684 --set parallel.tp=2 --metrics-out "$OUT/tp2.jsonl"
  same "tp2 (mpi)" tp1 tp2
  name=cp2 two --set train.batch_size=16 --set model.d_ff=684 --set parallel.cp=2 --metrics-out "$OUT/cp2.jsonl"
  same "cp2 (mpi)" tp1 cp2
  name=ep1 one --config configs/rmoe.toml --set train.batch_size=16 --metrics-out "$OUT/ep1.jsonl"
  name=ep2 two --config configs/rmoe.toml --set train.batch_size=8 --set parallel.ep=2 --metrics-out "$OUT/ep2.jsonl"
  same "RMoE ep2 (mpi)" ep1 ep2
fi

# Model throughput and the PyTorch peer (SPARTA_DEVICE_STEPS=0 skips them).
steps=${SPARTA_DEVICE_STEPS:-300}
[ "$steps" -gt 0 ] && for model in dense rmoe uoe; do
  cfg=(); [ "$model" != dense ] && cfg=(--config "configs/$model.toml")
  timeout 150 build-gpu/bin/sparta-train "${cfg[@]}" --set train.device=cuda --set train.steps="$steps" \
    --set train.eval_every=0 --set train.log_every=50 --run-dir "/tmp/run-$model" \
    --metrics-out "$OUT/metrics-$model.jsonl" > "$OUT/train-$model.log" 2>&1
  stamp "train $model (rc $?): $(grep -E '^done:|error' "$OUT/train-$model.log" | head -2)"
done

if [ -d data/default ] && [ "$steps" -gt 0 ]; then
  PYTHONUNBUFFERED=1 timeout 120 python3 bench/pytorch_same_model.py > "$OUT/peer.log" 2>&1
  stamp "pytorch peer (rc $?): $(tail -3 "$OUT/peer.log" | tr '\n' ' ')"
fi
stamp "done"
