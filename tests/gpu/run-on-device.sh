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
cmake --build build-gpu -j16 --target sparta-train test_ops_cuda test_model_cuda test_moe_cuda \
  test_uoe_cuda > "$OUT/build.log" 2>&1 || { stamp "build FAILED"; grep -m20 -B2 -A8 error "$OUT/build.log"; exit 1; }
stamp "built ($(grep -c 'warning:' "$OUT/build.log") warnings)"
grep -m10 -A3 'warning:' "$OUT/build.log"

(cd build-gpu && ctest -L gpu --output-on-failure --timeout 300) > "$OUT/ctest-gpu.log" 2>&1
stamp "ctest -L gpu: $(grep -E 'tests passed|tests failed' "$OUT/ctest-gpu.log")"
grep -E "Failure|FAILED|rel_err|Expected|Which is|evaluates" "$OUT/ctest-gpu.log" | head -40

steps=${SPARTA_DEVICE_STEPS:-300}
for model in dense rmoe uoe; do
  cfg=(); [ "$model" != dense ] && cfg=(--config "configs/$model.toml")
  timeout 150 build-gpu/bin/sparta-train "${cfg[@]}" --set train.device=cuda --set train.steps="$steps" \
    --set train.eval_every=0 --set train.log_every=50 --run-dir "/tmp/run-$model" \
    --metrics-out "$OUT/metrics-$model.jsonl" > "$OUT/train-$model.log" 2>&1
  stamp "train $model (rc $?): $(grep -E '^done:|error' "$OUT/train-$model.log" | head -2)"
done

if [ -d data/default ]; then
  PYTHONUNBUFFERED=1 timeout 120 python3 bench/pytorch_same_model.py > "$OUT/peer.log" 2>&1
  stamp "pytorch peer (rc $?): $(tail -3 "$OUT/peer.log" | tr '\n' ' ')"
fi
stamp "done"
