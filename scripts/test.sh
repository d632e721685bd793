#!/usr/bin/env bash
# The whole test suite: set up and build (CUDA sources compiled when nvcc exists), run every
# ctest label (gpu tests skip without a GPU), then build an AddressSanitizer + UBSan
# configuration (build-asan/, CUDA off) and run the unit label under it, then the mpi label
# (memory errors and undefined behaviour in the distributed paths; leak checking off there:
# Open MPI's dlopen'ed components leave allocations LeakSanitizer cannot attribute).
# SPARTA_SKIP_ASAN=1 skips the sanitizer pass.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
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
