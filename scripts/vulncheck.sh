#!/usr/bin/env bash
# Known vulnerabilities in what Sluice is built from: govulncheck over the
# module, against the Go vulnerability database read from the module proxy
# (golang.org/x/vulndb's OSV files, indexed locally), so it runs where
# vuln.go.dev cannot be reached. It reports the standard library of the Go
# that runs it, and the modules in go.mod; only findings in code Sluice
# calls are listed by default (-show verbose for the rest).
#
#   scripts/vulncheck.sh            # exit 0: none found; 3: some found
#   VULNDB=<pseudo-version> scripts/vulncheck.sh   # a newer database
#
# Not part of scripts/test.sh: its standard-library findings depend on the
# Go release of the machine, not on the code (docs/SECURITY.md).
set -euo pipefail
cd "$(dirname "$0")/.."

GOVULNCHECK=golang.org/x/vuln/cmd/govulncheck@v1.9.0
VULNDB="${VULNDB:-v0.0.0-20261105234957-e22db6528018}"

src=$(go mod download -json "golang.org/x/vulndb@$VULNDB" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -d "$src/data/osv" ] || { echo "vulncheck.sh: golang.org/x/vulndb@$VULNDB has no data/osv"; exit 1; }
db=$(mktemp -d)
trap 'rm -rf "$db"' EXIT
go run "golang.org/x/vulndb/cmd/indexdb@$VULNDB" -vulns "$src/data/osv" -out "$db/index"
# Built, not go run: go run turns govulncheck's exit code 3 into 1.
GOBIN="$db/bin" go install "$GOVULNCHECK"
echo "vulncheck.sh: $(go version), database golang.org/x/vulndb@$VULNDB ($(ls "$src/data/osv" | wc -l) reports)"
"$db/bin/govulncheck" -db "file://$db/index" "$@" ./...
