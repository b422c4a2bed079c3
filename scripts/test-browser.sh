#!/usr/bin/env bash
# Headless-browser check of the HTML reports (`make test-browser`; needs Debian `chromium`,
# which is not in scripts/deps.sh because of its size: apt-get install chromium).
# 1. Renders three reports: experiments/exec-example run by `ftlab run` (a real Python
#    trainer) and reported by `ftlab report`; a store filled by a real SGD sweep with a
#    failed run and a baseline (tests/unit/test_report_store.c); and one full of injection
#    strings (tests/unit/test_report.c), the last two via FTLAB_KEEP_REPORT.
# 2. For each index.html: loads it in headless Chromium with a network log; fails on any
#    request the page makes that is not file:/data: (browser-internal update/time pings
#    have no page origin and are ignored), on any console message (the page has no
#    scripts, so any message is an error or a blocked load), on a DOM without the
#    sections and inline SVG charts, and on a screenshot that is blank or shows no chart
#    colours. A negative control (a page with an external image and a script error)
#    must be caught, so the check itself can fail.
# Screenshots are kept in build/browser/ for people to look at.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD:-build}
out=$PWD/$build/browser
chrome=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$chrome" ]; then
  echo "test-browser: chromium not found; install it: apt-get install chromium" >&2
  exit 2
fi
rm -rf "$out"
mkdir -p "$out"
make -s tests-build BUILD="$build" >/dev/null
export FTLAB_ROOT=$PWD FTLAB_BIN=$PWD/$build/ftlab FTLAB_KEEP_REPORT=$out NO_COLOR=1
"$build/tests/test_report_store" >"$out/test_report_store.log" 2>&1 ||
  { cat "$out/test_report_store.log"; exit 1; }
"$build/tests/test_report" >"$out/test_report.log" 2>&1 ||
  { cat "$out/test_report.log"; exit 1; }
# A real sweep through the CLI: experiments/exec-example (a Python trainer) run by ftlab,
# outside any repository, with injection strings in its description.
cp -r experiments/exec-example "$out/exec-src"
FTLAB_WORKSPACE=$out/ws "$FTLAB_BIN" run "$out/exec-src/exec-example.yaml" \
  "-sdescription=a'; system(\"touch x\"); ' \`touch x\` @x <x <b>bold</b>" \
  >"$out/exec-run.log" 2>&1 || { cat "$out/exec-run.log"; exit 1; }
(cd "$out" && FTLAB_WORKSPACE=$out/ws "$FTLAB_BIN" report exec-example -o exec-report \
  >>"$out/exec-run.log" 2>&1) || { cat "$out/exec-run.log"; exit 1; }
if [ -e "$out/x" ] || [ -e "$out/exec-src/x" ]; then
  echo "test-browser: FAIL an injection string ran a command" >&2; exit 1
fi

flags=(--headless=new --no-sandbox --disable-gpu --no-first-run --disable-extensions
       --disable-background-networking --disable-component-update --disable-sync
       --disable-default-apps --hide-scrollbars --enable-logging=stderr --v=0)

# Loads one page: DOM, console, network log and a full-height screenshot into $out/$name.*
load() {
  local page=$1 name=$2 height=${3:-2000}
  rm -rf "$out/profile"
  timeout 120 "$chrome" "${flags[@]}" --user-data-dir="$out/profile" \
    --log-net-log="$out/$name.netlog.json" --dump-dom "file://$page" \
    >"$out/$name.dom.html" 2>"$out/$name.stderr" || true
  rm -rf "$out/profile"
  timeout 120 "$chrome" "${flags[@]}" --user-data-dir="$out/profile" \
    --window-size=1280,"$height" --screenshot="$out/$name.png" "file://$page" \
    >/dev/null 2>>"$out/$name.stderr" || true
}

# Python (standard library only) checks the logs, the DOM and the screenshot's pixels.
check() {
  python3 - "$out" "$@" <<'PY'
import json, struct, sys, zlib
out, name, mode = sys.argv[1], sys.argv[2], sys.argv[3]
problems = []

# 1. requests made by the page (browser-internal requests have no page origin)
try:
    log = json.load(open(f"{out}/{name}.netlog.json"))
    types = {v: k for k, v in log["constants"]["logEventTypes"].items()}
    for e in log["events"]:
        p = e.get("params", {})
        if types.get(e["type"]) == "URL_REQUEST_START_JOB" and "url" in p:
            url = p["url"]
            if p.get("initiator") == "not an origin" or url.startswith(("file:", "data:")):
                continue
            problems.append(f"network request: {url}")
except (OSError, ValueError, KeyError) as e:
    problems.append(f"no usable network log ({e})")

# 2. console messages (errors, blocked loads)
for line in open(f"{out}/{name}.stderr", errors="replace"):
    if ":CONSOLE" in line:
        problems.append("console: " + line.strip()[:200])

# 3. the DOM
dom = open(f"{out}/{name}.dom.html", errors="replace").read()
n_svg = dom.count("<svg")
if mode == "report":
    for sec in ["provenance", "runs", "base-vs-tuned", "curves", "params", "predictions",
                "config-diff", "failed"]:
        if f'id="{sec}"' not in dom:
            problems.append(f"section #{sec} missing from the DOM")
    if n_svg < 4:
        problems.append(f"only {n_svg} inline SVG charts in the DOM")
    if "<script" in dom:
        problems.append("a <script> element made it into the DOM")

# 4. the screenshot: decode the PNG (8-bit RGB/RGBA, not interlaced, as Chromium writes)
def read_png(path):
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, w = 8, b"", 0
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", chunk)
            assert depth == 8 and ctype in (2, 6) and interlace == 0, "unsupported PNG"
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + n
    raw, stride = zlib.decompress(idat), w * bpp
    rows, prev, i = [], bytearray(stride), 0
    for _ in range(h):
        f, line = raw[i], bytearray(raw[i + 1:i + 1 + stride])
        i += 1 + stride
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b, c = prev[x], prev[x - bpp] if x >= bpp else 0
            if f == 1: line[x] = (line[x] + a) & 255
            elif f == 2: line[x] = (line[x] + b) & 255
            elif f == 3: line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return w, h, bpp, rows

try:
    w, h, bpp, rows = read_png(f"{out}/{name}.png")
    total = nonwhite = chart_blue = 0
    colours = set()
    for row in rows[::2]:
        for x in range(0, w * bpp, bpp * 2):
            r, g, b = row[x], row[x + 1], row[x + 2]
            total += 1
            if r < 245 or g < 245 or b < 245:
                nonwhite += 1
            if abs(r - 31) < 25 and abs(g - 119) < 25 and abs(b - 180) < 25:
                chart_blue += 1  # the fine-tuned series colour (#1f77b4)
            colours.add((r >> 4, g >> 4, b >> 4))
    share = nonwhite / max(total, 1)
    print(f"{name}: {w}x{h} screenshot, {share:.1%} non-white, {len(colours)} colours, "
          f"{chart_blue} chart-blue samples, {n_svg} inline SVGs")
    if mode == "report":
        if share < 0.02 or len(colours) < 20:
            problems.append("the screenshot is (nearly) blank")
        if chart_blue < 10:
            problems.append("no chart colours in the screenshot")
except (OSError, AssertionError, zlib.error) as e:
    problems.append(f"screenshot unusable: {e}")

if mode == "negative":
    want = ["network request", "console"]
    missing = [w for w in want if not any(p.startswith(w) for p in problems)]
    if missing:
        print(f"{name}: the check failed to catch: {', '.join(missing)}")
        sys.exit(1)
    print(f"{name}: negative control caught ({len(problems)} problems)")
    sys.exit(0)
for p in problems:
    print(f"{name}: FAIL {p}")
sys.exit(1 if problems else 0)
PY
}

cat >"$out/negative.html" <<'EOF'
<!DOCTYPE html><html><body><p>negative control</p>
<img src="http://example.invalid/x.png"><script>notDefined();</script></body></html>
EOF
load "$out/negative.html" negative 600
check negative negative

status=0
for r in exec-report store-report injection-report; do
  load "$out/$r/index.html" "$r" 6000
  check "$r" report || status=1
done
[ $status = 0 ] && echo "test-browser: ok (screenshots in $out)"
exit $status
