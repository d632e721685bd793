#!/usr/bin/env bash
# Lays out the built-in corpus in DIR (default data/cache/corpus) from Debian packages:
#   DIR/web/*.usfm  World English Bible, extracted from bibledit-data's .deb (not installed: the
#                   package is 227 MB installed, we need 5.8 MB of it)
#   DIR/kjv.txt     King James Version, printed by the `bible` program (bible-kjv, bible-kjv-text)
# Both texts are in the public domain. Idempotent: does nothing when both are present.
set -euo pipefail
dir=${1:-data/cache/corpus}
mkdir -p "$dir"
if [ -s "$dir/kjv.txt" ] && ls "$dir"/web/*.usfm >/dev/null 2>&1; then
  echo "corpus: $dir is up to date"
  exit 0
fi
if ! command -v bible >/dev/null; then
  echo "corpus: the 'bible' program is missing: apt-get install -y bible-kjv bible-kjv-text" >&2
  exit 3
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && (apt-get download -q bibledit-data >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get download -q bibledit-data; }))
dpkg-deb --fsys-tarfile "$tmp"/bibledit-data_*.deb | tar -x -C "$tmp" --wildcards './usr/share/bibledit/demo/*eng-web.usfm'
mkdir -p "$dir/web"
mv "$tmp"/usr/share/bibledit/demo/*eng-web.usfm "$dir/web/"
bible -f gen1:1-rev22:21 > "$dir/kjv.txt.tmp" && mv "$dir/kjv.txt.tmp" "$dir/kjv.txt"
echo "corpus: $dir ready ($(ls "$dir"/web | wc -l) WEB books, $(wc -c < "$dir/kjv.txt") bytes of KJV)"
