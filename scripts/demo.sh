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

# writable DIR: DIR exists (made if need be) and takes files.
writable() { mkdir -p "$1" 2>/dev/null && [ -w "$1" ] && [ -x "$1" ]; }

# Where the binary goes: ~/.cache/sluice, else (no $HOME, or a cache
# directory that cannot be written: a read-only home, a container's
# nobody) a directory of this user's under the temporary directory, said
# out loud. Go's own build and module caches default under $HOME too:
# they get the same fallback, or the build fails on them.
fallback="${TMPDIR:-/tmp}/sluice-demo-$(id -u)"
cache="${XDG_CACHE_HOME:-${HOME:+$HOME/.cache}}"
bin="${SLUICE_BIN:-}"
if [ -z "$bin" ]; then
  if [ -n "$cache" ] && writable "$cache/sluice"; then
    bin="$cache/sluice/sluice"
  else
    bin="$fallback/sluice"
    if [ -n "$cache" ]; then where="$cache/sluice cannot be written"; else where="no \$HOME"; fi
    echo "demo.sh: $where; building into $fallback" >&2
  fi
fi
writable "$(dirname "$bin")" || { echo "demo.sh: cannot write $(dirname "$bin") (set SLUICE_BIN=PATH for the binary)" >&2; exit 1; }
gocache="$(go env GOCACHE 2>/dev/null || true)"
if [ -z "$gocache" ] || [ "$gocache" = off ] || ! writable "$gocache"; then
  export GOCACHE="$fallback/go-build"
  echo "demo.sh: Go's build cache (${gocache:-unset}) cannot be written; using $GOCACHE" >&2
fi
gomodcache="$(go env GOMODCACHE 2>/dev/null || true)"
if [ -z "$gomodcache" ] || ! writable "$gomodcache"; then
  export GOMODCACHE="$fallback/go-mod"
  echo "demo.sh: Go's module cache (${gomodcache:-unset}) cannot be written; using $GOMODCACHE" >&2
fi
echo "demo.sh: building sluice into $bin (first time: a few minutes while Go downloads modules and compiles; then seconds)" >&2
start=$(date +%s)
go build -o "$bin" ./cmd/sluice
echo "demo.sh: built in $(( $(date +%s) - start ))s; starting the demo" >&2
exec "$bin" demo "$@"
