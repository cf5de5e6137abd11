#!/usr/bin/env bash
# Renders a sample daily report (a busy day at four vendors, with HTML in the
# vendors' text) in headless Chromium and saves a PNG, so its look can be
# checked; also checks that the browser found no <script>/<img> element in it.
# Then copies the phone (375 px) and desktop (1280 px) screenshots that
# tests/report_layout.rs takes of a hostile day's report into docs/.
#   ./scripts/screenshot-report.sh              # writes docs/report.png, docs/report-{phone,desktop}.png
#   ./scripts/screenshot-report.sh out.png
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/report.png}
bash scripts/install-chromium.sh

# The sample is written by this test (tests/report_content.rs).
cargo test --quiet --test report_content vendor_text_is_escaped_in_html >/dev/null
html="$(pwd)/${CARGO_TARGET_DIR:-target}/tmp/report-sample.html"
[ -s "$html" ] || { echo "sample report $html was not written" >&2; exit 1; }

profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
# Flags that work on a machine with no outside network (see the machine notes):
# without the background-networking ones Chromium keeps trying to reach Google.
chrome=(chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run
  --disable-background-networking --disable-component-update --disable-sync
  --user-data-dir="$profile" --hide-scrollbars --force-device-scale-factor=1)

dom=$("${chrome[@]}" --dump-dom "file://$html" 2>/dev/null)
if grep -qiE '<(script|img|iframe|object|embed|link)[ >]' <<<"$dom"; then
  echo "the rendered report contains an active element: vendor text was not escaped" >&2
  exit 1
fi
grep -q '&lt;script&gt;' <<<"$dom" || { echo "escaped vendor text missing from the DOM" >&2; exit 1; }

mkdir -p "$(dirname "$out")"
"${chrome[@]}" --window-size=880,1880 --screenshot="$out" "file://$html" 2>/dev/null
echo "wrote $out"

# The phone and desktop renderings (the test fails if either scrolls sideways).
cargo test --quiet --test report_layout the_html_report_fits >/dev/null
for shot in report-phone.png report-desktop.png; do
  cp "${CARGO_TARGET_DIR:-target}/tmp/$shot" "docs/$shot"
  echo "wrote docs/$shot"
done
