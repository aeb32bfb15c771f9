# Sourced by the checks here, after their own `set -euo pipefail`: the
# repository root as the working directory, a temporary $WORK removed on
# exit (the simulators and gateway started in the background stopped
# first), and sluice built into it as $WORK/sluice.
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null; rm -rf "$WORK"' EXIT
go build -o "$WORK/sluice" ./cmd/sluice

# node_sdk CHECK.mjs ADDR installs the official OpenAI Node SDK (latest,
# from npm) into $WORK beside scripts/sdk-check/CHECK.mjs, waits for the
# gateway at ADDR to be ready and prints the SDK's version. The caller
# then runs: node "$WORK/CHECK.mjs" ...
node_sdk() {
  (cd "$WORK" && npm init -y >/dev/null && npm install --silent openai@latest >/dev/null)
  cp "scripts/sdk-check/$1" "$WORK/"
  for _ in $(seq 50); do curl -sf "http://$2/readyz" >/dev/null && break; sleep 0.1; done
  echo "openai SDK $(node -p "require('$WORK/node_modules/openai/package.json').version")"
}
