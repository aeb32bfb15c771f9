#!/usr/bin/env bash
# The README's first command: build sluice, then run its demo (arguments go
# to `sluice demo`, e.g. --duration 10s). It says it is building first: the
# first build downloads modules and compiles for a few minutes, and nothing
# in the program can speak before it exists.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
  export PATH="/usr/local/go/bin:$PATH"
fi
command -v go >/dev/null 2>&1 || { echo "demo.sh: Go 1.26+ is required (https://go.dev/dl)" >&2; exit 1; }

bin="${SLUICE_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice/sluice}"
mkdir -p "$(dirname "$bin")"
echo "demo.sh: building sluice into $bin (first time: a few minutes while Go downloads modules and compiles; then seconds)" >&2
start=$(date +%s)
go build -o "$bin" ./cmd/sluice
echo "demo.sh: built in $(( $(date +%s) - start ))s; starting the demo" >&2
exec "$bin" demo "$@"
