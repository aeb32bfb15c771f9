#!/usr/bin/env bash
# The raw HTTP answers of two Sluice binaries to the same requests, side by
# side: status line, every header in the order sent, the framing
# (Content-Length or chunked, as curl --raw shows it) and the body. For
# checking that a change to how answers are written (e.g. sending them
# before the bookkeeping) changes nothing a client sees.
#
# Each binary serves in flag mode (cache on, its defaults) in front of
# `sluice sim --instant`; the same requests go to each over HTTP/1.1 (and a
# few over HTTP/1.0): proxied JSON, cache miss then hits (JSON, replayed as
# SSE), a streamed answer,
# refusals (unknown model, bad JSON, GET). Values that differ per run are
# masked: Date, the simulator's ids and timestamps, Age. Prints two diffs,
# as sent and with each head's fields sorted ("identical" when there is
# none), and keeps the transcripts in OUT (default a temp dir, printed).
#
# Usage: [PORT_BASE=19301] [OUT=dir] bench/wire-diff.sh OLD_BIN NEW_BIN
set -euo pipefail
cd "$(dirname "$0")/.."
OLD=$(realpath "$1") NEW=$(realpath "$2")
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
. bench/lib.sh
P=${PORT_BASE:-19301}
BACK=127.0.0.1:$P GW=127.0.0.1:$((P + 1))
PIDS=
trap 'for p in $PIDS; do kill $p 2>/dev/null; done' EXIT
"$OLD" sim --listen $BACK --instant --model m >/dev/null 2>&1 &
PIDS="$PIDS $!"
wait_up $BACK health

# one name method proto body: the raw answer, per-run values masked.
one() {
  local name=$1 method=$2 proto=$3 body=$4
  echo "### $name"
  curl -s -i --raw "$proto" -X "$method" -H 'Content-Type: application/json' -H "X-Request-Id: wire-$name" \
    ${body:+--data-binary "$body"} "http://$GW/v1/chat/completions" |
    sed -E -e 's/^(Date: ).*/\1<date>/' -e 's/^(Age: ).*/\1<age>/' \
      -e 's/"(id|system_fingerprint)":"[^"]*"/"\1":"<x>"/g' -e 's/"created":[0-9]+/"created":<t>/g'
  echo
}

for bin in "$OLD" "$NEW"; do
  side=$([ "$bin" = "$OLD" ] && echo old || echo new)
  # its own data dir: the default one may be held by another sluice here
  "$bin" serve --listen $GW --admin-listen off --model m --backend "http://$BACK" --log-level error \
    --data-dir "$OUT/data-$side" 2>/dev/null &
  pid=$!
  PIDS="$PIDS $pid"
  wait_up $GW healthz
  det='{"model":"m","temperature":0,"messages":[{"role":"user","content":"hello"}],"max_tokens":4}'
  {
    one proxied POST --http1.1 '{"model":"m","messages":[{"role":"user","content":"hello"}],"max_tokens":4}'
    one proxied-http1.0 POST --http1.0 '{"model":"m","messages":[{"role":"user","content":"hello"}],"max_tokens":4}'
    one miss POST --http1.1 "$det"
    one hit POST --http1.1 "$det"
    one hit-http1.0 POST --http1.0 "$det"
    one hit-as-sse POST --http1.1 '{"model":"m","temperature":0,"messages":[{"role":"user","content":"hello"}],"max_tokens":4,"stream":true}'
    one stream POST --http1.1 '{"model":"m","messages":[{"role":"user","content":"hello"}],"max_tokens":4,"stream":true}'
    one unknown-model POST --http1.1 '{"model":"nope","messages":[]}'
    one bad-json POST --http1.1 '{"model":'
    one get GET --http1.1 ''
  } > "$OUT/$side.txt"
  kill $pid
  wait $pid 2>/dev/null || true
done
# Each answer's head with its lines sorted: the same fields and values,
# whatever their order.
sorted() {
  awk '/^### / {print; head = 1; n = 0; next}
    head && /^\r?$/ {cmd = "LC_ALL=C sort"; for (i = 1; i <= n; i++) print h[i] | cmd; close(cmd); print; head = 0; next}
    head {h[++n] = $0; next}
    {print}' "$1"
}
sorted "$OUT/old.txt" > "$OUT/old.sorted.txt"
sorted "$OUT/new.txt" > "$OUT/new.sorted.txt"
echo "transcripts: $OUT/old.txt $OUT/new.txt"
echo "== as sent (field order included):"
diff "$OUT/old.txt" "$OUT/new.txt" && echo "identical"
echo "== each head's fields sorted:"
diff "$OUT/old.sorted.txt" "$OUT/new.sorted.txt" && echo "identical"
