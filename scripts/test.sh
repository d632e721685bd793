#!/usr/bin/env bash
# The whole test suite: set up and build (CUDA sources compiled when nvcc exists), install what
# the monitoring, Slurm and control tests start, run every ctest label (gpu tests
# skip without a GPU), then build an AddressSanitizer + UBSan
# configuration (build-asan/, CUDA off) and run the unit label under it, then the mpi label
# (memory errors and undefined behaviour in the distributed paths; leak checking off there:
# Open MPI's dlopen'ed components leave allocations LeakSanitizer cannot attribute).
# SPARTA_SKIP_ASAN=1 skips the sanitizer pass.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# What only the tests need: a Prometheus server and promtool (label monitoring), headless
# Chromium and matplotlib (the run report's rendering test), a private Slurm with munge (labels
# mpi and slurm: srun, sbatch, preemption and requeue), the Python gRPC client and tmux (the
# control API and sparta-top tests).
. scripts/apt_install.sh
apt_install test prometheus chromium fonts-liberation python3-matplotlib \
  slurmctld slurmd slurm-client munge python3-grpcio python3-protobuf tmux
# As root nothing stops the Slurm tests, so a skip there would hide a broken setup.
[ "$(id -u)" -ne 0 ] || export SPARTA_REQUIRE_SLURM=1
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
