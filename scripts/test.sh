#!/usr/bin/env bash
# The whole test suite: set up and build (CUDA sources compiled when nvcc exists), install what
# the monitoring tests start (Prometheus, Chromium, matplotlib), run every ctest label (gpu tests
# skip without a GPU), then build an AddressSanitizer + UBSan
# configuration (build-asan/, CUDA off) and run the unit label under it, then the mpi label
# (memory errors and undefined behaviour in the distributed paths; leak checking off there:
# Open MPI's dlopen'ed components leave allocations LeakSanitizer cannot attribute).
# SPARTA_SKIP_ASAN=1 skips the sanitizer pass.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# What only the tests need: a Prometheus server and promtool (label monitoring), headless
# Chromium and matplotlib (the run report's rendering test).
test_packages=(prometheus chromium fonts-liberation python3-matplotlib)
missing=()
for p in "${test_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "test: installing ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd=sudo
  $sudo_cmd apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
(cd build && ctest --output-on-failure -j2 --timeout 600)
if [ "${SPARTA_SKIP_ASAN:-0}" != 1 ]; then
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSPARTA_SANITIZE=ON -DSPARTA_CUDA=OFF \
    > build-asan.configure.log 2>&1 || { cat build-asan.configure.log; exit 1; }
  cmake --build build-asan -j"$(nproc)"
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --output-on-failure -j2 -L unit --timeout 900)
  (cd build-asan && ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --output-on-failure -L mpi --timeout 900)
fi
