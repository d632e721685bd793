#!/usr/bin/env bash
# Copies the Debian 12 packages that the GPU machine's image lacks (headers, CMake and pkg-config
# files, shared libraries) into .device-deps/, mirroring /usr, for tests/gpu/run-on-device.sh.
# The copies are never committed (.device-deps/ is ignored); they are the dev machine's own
# installed packages (scripts/setup.sh), so the device build uses exactly the versions CI uses.
set -euo pipefail
cd "$(dirname "$0")/.."
lib=/usr/lib/x86_64-linux-gnu
d=.device-deps/usr
rm -rf .device-deps
mkdir -p "$d/include" "$d/lib/x86_64-linux-gnu/cmake" "$d/lib/x86_64-linux-gnu/pkgconfig" \
  "$d/share/cmake" "$d/share/pkgconfig" .device-deps/bin
cp -r /usr/include/{fmt,spdlog,toml++,CLI,nlohmann} "$d/include/"
cp /usr/include/{sentencepiece_processor.h,sentencepiece_trainer.h,xxh3.h,xxhash.h,xxh_x86dispatch.h} \
  "$d/include/"
cp -a "$lib"/{libfmt,libspdlog,libsentencepiece,libsentencepiece_train,libxxhash,libtomlplusplus,libpkgconf}.so* \
  "$d/lib/x86_64-linux-gnu/"
cp -r "$lib"/cmake/{fmt,spdlog,tomlplusplus} "$d/lib/x86_64-linux-gnu/cmake/"
cp "$lib"/pkgconfig/{fmt,spdlog,tomlplusplus,sentencepiece,libxxhash}.pc "$d/lib/x86_64-linux-gnu/pkgconfig/"
cp -r /usr/share/cmake/{CLI11,nlohmann_json} "$d/share/cmake/"
cp /usr/share/pkgconfig/{CLI11,nlohmann_json}.pc "$d/share/pkgconfig/"
cp /usr/bin/pkgconf .device-deps/bin/pkg-config
grep -qx '/.device-deps/' "$(git rev-parse --git-dir)/info/exclude" 2>/dev/null ||
  echo '/.device-deps/' >> "$(git rev-parse --git-dir)/info/exclude"
du -sh .device-deps
