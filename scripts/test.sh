#!/usr/bin/env bash
# The whole test suite: vet, staticcheck, race-enabled tests, the quick
# chaos run. README's test command and what CI runs (.ci/run). Installs what
# the tests need on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
  export PATH="/usr/local/go/bin:$PATH"
fi
command -v go >/dev/null 2>&1 || { echo "test.sh: Go 1.26+ is required (https://go.dev/dl)"; exit 1; }

# apt_install PKG...: installs with no question asked, as CI (no stdin, no
# terminal) needs: debconf non-interactive, and sudo -n, which fails at
# once where a password would be asked rather than wait for one. The
# package lists are updated once per run, before the first install (a
# fresh container has none).
apt_updated=""
apt_install() {
  local as=(env DEBIAN_FRONTEND=noninteractive)
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "test.sh: installing $* needs root or sudo" >&2; return 1; }
    as=(sudo -n env DEBIAN_FRONTEND=noninteractive)
  fi
  if [ -z "$apt_updated" ]; then
    "${as[@]}" apt-get update -qq || return 1
    apt_updated=1
  fi
  "${as[@]}" apt-get install -y -qq "$@" >/dev/null
}

# Tests start their own redis-server on a free loopback port.
if ! command -v redis-server >/dev/null 2>&1; then
  echo "test.sh: installing redis-server (tests start their own instance)"
  apt_install redis-server
fi

# deploy.TestImage builds and runs the container image with podman; it is
# not installed here (48 s of apt plus the test, docs/DEPLOY.md) and the
# test skips saying so. `apt-get install podman runc` to run it.
# The dashboard's browser tests (internal/dashboard) drive Debian's chromium
# headless; with CI set they fail rather than skip when it is missing.
# Cost on a fresh Debian 12 runner: about 155 MB of packages (115 of them,
# ~500 MB installed), once per machine. chromium-driver is the WebDriver
# server for anyone driving it that way; the tests use the DevTools pipe.
if ! command -v chromium >/dev/null 2>&1; then
  echo "test.sh: installing chromium (the dashboard's browser tests; ~155 MB, once)"
  apt_install chromium chromium-driver
fi

echo "== go vet"
go vet ./...
# Linux is where the tests run; the binary is also built for Windows and
# macOS (unix-only calls sit behind build tags: the data directory's lock,
# fd limits, rusage), so check those still compile.
echo "== go build for windows, darwin"
GOOS=windows go build ./...
GOOS=darwin go build ./...
# staticcheck at a pinned version (go run fetches it once into the module
# cache): dead code, identical operands, values assigned and never read.
# Its settings are in staticcheck.conf.
echo "== staticcheck"
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
echo "== go test -race"
go test -race -count=1 -timeout 900s ./...

# The chaos suite in its short form: the table goes to the log. Targets are
# enforced except p99, which --quick measures on ~65 samples per phase: reported.
# nats-restart needs nats-server; it is skipped with a reason when missing.
if ! command -v nats-server >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  apt_install nats-server 2>/dev/null || echo "test.sh: nats-server not installed; nats-restart will be skipped"
fi
echo "== sluice chaos --quick"
chaos_bin="$(mktemp -d)/sluice"
go build -o "$chaos_bin" ./cmd/sluice
# A run whose targets fail is run once more before CI fails: a scenario
# that fails twice is a finding, one that fails once is printed for a look.
if ! "$chaos_bin" chaos --quick --quiet --enforce fail,jobs,leak,rss; then
  echo "== sluice chaos --quick: targets failed; running the suite once more"
  "$chaos_bin" chaos --quick --quiet --enforce fail,jobs,leak,rss
fi
rm -rf "$(dirname "$chaos_bin")"
