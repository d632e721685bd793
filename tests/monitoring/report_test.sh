#!/usr/bin/env bash
# sparta-report end to end (ctest label monitoring): a 2-rank expert-parallel MoE run, its
# report rendered in headless Chromium; checks that every expected plot is in the page and has
# decoded (the page marks them once loaded; read back with --dump-dom), that the screenshot and
# every plot are not blank (pixel statistics), and the bad inputs' exit codes.
# usage: report_test.sh BIN_DIR SOURCE_DIR   (exit 77: no chromium / matplotlib / mpirun)
set -uo pipefail
bin=$1
src=$2
py=/usr/bin/python3
command -v chromium > /dev/null || { echo "SKIP: chromium not installed (scripts/test.sh installs it)"; exit 77; }
command -v mpirun > /dev/null || { echo "SKIP: no mpirun"; exit 77; }
$py -c "import matplotlib, PIL" 2> /dev/null || { echo "SKIP: python3-matplotlib not installed"; exit 77; }
work=$(mktemp -d /tmp/sparta-report.XXXXXX)
trap 'rm -rf "$work"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() {
  fail=$((fail + 1))
  echo "FAIL: $*"
}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1

"$src/tests/fixtures/fixture_data.sh" "$bin" "$work" "$src/tests/fixtures/v1/tokenizer.model" || exit 1
args=()
for s in $(cat "$src/tests/fixtures/fixture_common.txt"); do args+=(--set "$s"); done
run="$work/run"
mpirun -np 2 "$bin/sparta-train" "${args[@]}" --set "data.dir=$work/data" --set moe.experts=4 \
  --set parallel.ep=2 --set train.steps=400 --set train.log_every=10 --set train.eval_every=100 \
  --run-dir "$run" < /dev/null > "$work/run.log" 2>&1 || { bad "training run"; tail -5 "$work/run.log"; exit 1; }

"$bin/sparta-report" "$run" > "$work/report.log" 2>&1 && ok || { bad "sparta-report"; cat "$work/report.log"; }
page="$run/report.html"
want="loss lr grad_norm layer_grad_norms expert_load_moe_layer0 expert_load_moe_layer1 throughput phases communication"
for id in $want; do grep -q "id=\"$id\"" "$page" && ok || bad "the page has no plot '$id'"; done

# Rendered: every plot decoded (the page's load handler marks them).
timeout 120 chromium --headless --no-sandbox --disable-gpu --virtual-time-budget=5000 \
  --dump-dom "file://$page" > "$work/dom.html" 2> "$work/chromium.log" || bad "chromium --dump-dom"
n=$(echo $want | wc -w)
grep -q "data-plots=\"$n $n\"" "$work/dom.html" && ok || bad "rendered page: not all $n plots decoded ($(grep -o 'data-plots="[^"]*"' "$work/dom.html"))"
timeout 120 chromium --headless --no-sandbox --disable-gpu --window-size=1300,2600 \
  --screenshot="$work/shot.png" "file://$page" >> "$work/chromium.log" 2>&1 || bad "chromium --screenshot"

# Not blank: the screenshot and every embedded plot.
$py - "$work/shot.png" "$page" << 'PY' && ok || bad "blank screenshot or plot"
import base64, io, re, sys
from PIL import Image
def check(img, what, min_colors):
    img = img.convert("RGB")
    small = img.resize((200, max(1, 200 * img.height // img.width)))
    px = list(small.getdata())
    inked = sum(1 for p in px if sum(p) < 720) / len(px)
    # Axes, ticks and text are grey; data (lines, areas, heat maps) is coloured: an empty plot
    # with its axes drawn has none.
    coloured = sum(1 for p in px if max(p) - min(p) > 60) / len(px)
    colors = len(set(px))
    print(f"{what}: {img.width}x{img.height}, {100 * inked:.1f} % inked, "
          f"{100 * coloured:.1f} % coloured, {colors} colours")
    return inked > 0.03 and coloured > 0.003 and colors >= min_colors
good = check(Image.open(sys.argv[1]), "screenshot", 50)
html = open(sys.argv[2]).read()
for name, data in re.findall(r'id="([^"]+)" class="plot"[^>]*src="data:image/png;base64,([^"]+)"', html):
    img = Image.open(io.BytesIO(base64.b64decode(data)))
    good &= img.width > 300 and img.height > 150 and check(img, name, 20)
sys.exit(0 if good else 1)
PY

# Bad input.
out=$("$bin/sparta-report" "$work/nothing" 2>&1)
[ $? -eq 3 ] && grep -q "no $work/nothing/metrics.jsonl" <<< "$out" && ok || bad "missing metrics: $out"
out=$("$bin/sparta-report" 2>&1)
[ $? -eq 2 ] && grep -q "usage" <<< "$out" && ok || bad "no arguments: $out"

echo "monitoring (report): $pass passed, $fail failed"
[ $fail -eq 0 ]
