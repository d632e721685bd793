#!/usr/bin/env bash
# Installs sparta's build and run dependencies from Debian 12's packages (only those missing),
# then configures and builds into build/ (Release). Idempotent: a second run only rebuilds what
# changed. CUDA is compiled when /usr/local/cuda/bin/nvcc exists (SPARTA_CUDA=AUTO).
# Extra CMake options can be passed through SPARTA_CMAKE_ARGS.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(build-essential cmake pkg-config python3 curl ca-certificates
  libopenblas-dev libopenmpi-dev openmpi-bin libgtest-dev
  libsentencepiece-dev libtomlplusplus-dev libcli11-dev nlohmann-json3-dev libspdlog-dev libfmt-dev
  libxxhash-dev prometheus-cpp-dev libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libncurses-dev
  bible-kjv bible-kjv-text)
. scripts/apt_install.sh
apt_install setup "${packages[@]}"

build=${SPARTA_BUILD_DIR:-build}
# shellcheck disable=SC2086
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release ${SPARTA_CMAKE_ARGS:-} > "$build.configure.log" 2>&1 ||
  { cat "$build.configure.log"; exit 1; }
grep '^-- sparta:' "$build.configure.log" || true
cmake --build "$build" -j"$(nproc)"
