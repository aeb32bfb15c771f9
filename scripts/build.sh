#!/usr/bin/env bash
# Builds the sluice binary with the commit it is built from stamped in, from
# a plain clone and from a git worktree alike, so `sluice version` names it.
# (go build stamps the commit itself only in a plain clone: it looks for a
# .git directory, and a worktree's .git is a file, golang/go#58218.)
#
#   scripts/build.sh [go build flags]     e.g. scripts/build.sh -o /usr/local/bin/sluice
#
# Environment: SLUICE_LDFLAGS, more -ldflags (e.g. "-s -w -X main.version=v1.2.3"),
# and whatever go build reads (GOOS, GOARCH, CGO_ENABLED). Outside a git
# checkout (a source archive) it builds with no commit.
set -euo pipefail
cd "$(dirname "$0")/.."

ldflags="${SLUICE_LDFLAGS:-}"
buildvcs=""
if rev="$(git rev-parse --verify --quiet HEAD 2>/dev/null)"; then
  modified=false
  [ -z "$(git status --porcelain)" ] || modified=true   # as go build's vcs.modified
  when="$(TZ=UTC0 git log -1 --format=%cd --date=format-local:%Y-%m-%dT%H:%M:%SZ)"
  ldflags="$ldflags -X main.commit=$rev -X main.commitTime=$when -X main.commitModified=$modified"
  # In a worktree go build finds no repository, or one enclosing the
  # worktree whose commit it would stamp: leave the stamping to -X.
  [ -d "$(git rev-parse --show-toplevel)/.git" ] || buildvcs="-buildvcs=false"
fi
exec go build $buildvcs -ldflags "${ldflags# }" "$@" ./cmd/sluice
