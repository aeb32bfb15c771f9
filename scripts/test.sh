#!/usr/bin/env bash
# The whole test suite: vet + race-enabled tests. README's test command and
# what CI runs (.ci/run). Installs what the tests need on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
  export PATH="/usr/local/go/bin:$PATH"
fi
command -v go >/dev/null 2>&1 || { echo "test.sh: Go 1.26+ is required (https://go.dev/dl)"; exit 1; }

# Tests start their own redis-server on a free loopback port.
if ! command -v redis-server >/dev/null 2>&1; then
  echo "test.sh: installing redis-server (tests start their own instance)"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq redis-server >/dev/null
fi

echo "== go vet"
go vet ./...
echo "== go test -race"
go test -race -count=1 -timeout 900s ./...
