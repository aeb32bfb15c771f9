#!/usr/bin/env bash
# Regenerates the README's sample demo table from a real run: builds sluice,
# runs `sluice demo --markdown` (progress on stderr) and replaces what sits
# between the README's <!-- demo-table:start --> and <!-- demo-table:end -->
# markers with the table and a line saying when and on what it was measured.
# internal/demo's TestReadmeTableHasTheDemoRows checks that the rows there
# are the ones the demo prints. Arguments go to `sluice demo`.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
  export PATH="/usr/local/go/bin:$PATH"
fi
bin="$(mktemp -d)/sluice"
trap 'rm -rf "$(dirname "$bin")"' EXIT
echo "demo-readme.sh: building sluice" >&2
go build -o "$bin" ./cmd/sluice
table="$("$bin" demo --markdown "$@")"
load="$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)"
cores="$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo '?')"
stamp="$(date -u '+%Y-%m-%d %H:%M UTC')"
block="$(printf '%s\n\n%s\n' "$table" "Measured $stamp on $cores cores (load average $load after the run), \`sluice demo$( [ $# -gt 0 ] && printf ' %s' "$@")\`.")"

grep -q '<!-- demo-table:start -->' README.md && grep -q '<!-- demo-table:end -->' README.md ||
  { echo "demo-readme.sh: README.md has no demo-table markers" >&2; exit 1; }
tmp="$(dirname "$bin")/README.md"
BLOCK="$block" awk '
  /<!-- demo-table:start -->/ { print; print ENVIRON["BLOCK"]; skip = 1; next }
  /<!-- demo-table:end -->/   { skip = 0 }
  !skip { print }
' README.md > "$tmp"
cat "$tmp" > README.md
echo "demo-readme.sh: README.md updated; review with git diff README.md" >&2
