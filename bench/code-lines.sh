#!/usr/bin/env bash
# What a line of code costs a request on this machine, apart from its
# instructions: the bare handler of bench/cache-hit.sh (same headers, same
# answer), built once with N extra small functions packed one after
# another (each 33-64 bytes: one 64-byte line of its own, not a page as in
# bench/code-pages.sh). One binary runs twice, pinned like the hit
# benchmarks (server CPU 1, GOMAXPROCS=1, wrk -c64 on CPU 0): "same"
# calls the first of them N times per request, "spread" calls each once,
# in a shuffled order.
# Both run the same instructions from a caller of the same size; spread
# runs them from ~N more code lines, which, as a hit's lines, are fetched
# again on every request (net/http, the runtime and the kernel pass through
# the 32 KiB L1i in between: bench/server-callgrind.sh CACHESIM=1 counts a
# hit's I1 misses against the bare handler's). Rounds alternate the order;
# each prints the server's CPU per request (perf task-clock / answers); the
# end prints the median of the paired differences per line. CG=1 first
# counts both variants' instructions, I1 misses and D1 read misses per
# request under callgrind (CG_DUR s each), so the difference can be put
# per miss (docs/BENCHMARKS.md §9 Step 4h).
# KIND=data does the same for data: one function reads N words, each on
# a 64-byte line of its own (spread, shuffled) or all on one (same): what
# a D1 miss costs. Those reads do not wait for each other; KIND=chase
# makes each read's address the word the one before read (a pointer
# chase, as from a request to its objects).
# Needs go, wrk, perf, taskset (and valgrind for CG=1).
# Usage: [KIND=code|data|chase] [N=600] [ROUNDS=14] [DUR=3] [PORT_BASE=19621] [CG=0] [CG_DUR=5] bench/code-lines.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bench/install-tools.sh wrk
KIND=${KIND:-code} N=${N:-600} ROUNDS=${ROUNDS:-14} DUR=${DUR:-3} P=${PORT_BASE:-19621}
W=$(mktemp -d); PIDS=()
. bench/lib.sh
trap 'kill ${PIDS[@]} 2>/dev/null; rm -rf $W' EXIT
printf 'module lines\ngo 1.22\n' > "$W/go.mod"
# bench/cache-hit.sh's own bare handler, with the calls put in its handler
sed -n '/^package main/,/^GO$/p' bench/cache-hit.sh | grep -v '^GO$' | awk '
  /http.ListenAndServe/ {print "\tcalls := os.Getenv(\"SPREAD\") == \"1\""}
  {print}
  /io.Copy\(io.Discard, r.Body\)/ {print "\t\tif calls {\n\t\t\tsink += spread(uint64(len(body)))\n\t\t} else {\n\t\t\tsink += same(uint64(len(body)))\n\t\t}"}' > "$W/main.go"
{
  echo 'var sink uint64'
  if [ "$KIND" = chase ]; then
    # each read's address is the word read before (a pointer chase, as
    # through a request's objects): over a shuffled cycle of N lines
    # (spread) or on one line (same)
    echo "var next = cycle($N)"
    echo "var self [8]uint64"
    echo "func cycle(n int) []uint64 {"
    echo "	p, s := make([]uint64, n), uint64(1)"
    echo "	for i := range p {"
    echo "		p[i] = uint64(i)"
    echo "	}"
    echo "	for i := n - 1; i > 0; i-- {"
    echo "		s = s*6364136223846793005 + 1442695040888963407"
    echo "		j := int(s>>33) % (i + 1)"
    echo "		p[i], p[j] = p[j], p[i]"
    echo "	}"
    echo "	t := make([]uint64, n*8)"
    echo "	for i := range p {"
    echo "		t[p[i]*8] = p[(i+1)%n] * 8"
    echo "	}"
    echo "	return t"
    echo "}"
    echo "//go:noinline"; echo "func step(t []uint64, i uint64) uint64 { return t[i] }"
    echo 'func spread(x uint64) uint64 {'; echo '	i := uint64(0)'; for i in $(seq 0 $((N - 1))); do echo "	i = step(next, i)"; done; echo '	return x + i'; echo '}'
    echo 'func same(x uint64) uint64 {'; echo '	i := uint64(0)'; for i in $(seq 0 $((N - 1))); do echo "	i = step(self[:], i)"; done; echo '	return x + i'; echo '}'
  elif [ "$KIND" = data ]; then
    # one function, N reads: of one line (same) or of N distinct lines (spread)
    echo "var table [$((N * 8))]uint64"
    echo "//go:noinline"; echo "func ld(x uint64, i int) uint64 { return x*31 + table[i] }"
    echo 'func spread(x uint64) uint64 {'
    seq 0 $((N - 1)) | awk 'BEGIN {srand(1)} {print rand() "\t" $1}' | sort -n | cut -f2 | awk '{print "\tx = ld(x, " $1 * 8 ")"}'
    echo '	return x'; echo '}'
    echo 'func same(x uint64) uint64 {'; for i in $(seq 0 $((N - 1))); do echo "	x = ld(x, 0)"; done; echo '	return x'; echo '}'
  else
    for i in $(seq 0 $((N - 1))); do
      echo "//go:noinline"; echo "func hot$i(x uint64) uint64 { return (x*31+$((i + 1)))^(x>>7) + (x<<3)*$((2 * i + 3)) + (x>>11)*$((i + 5)) }"
    done
    # in a shuffled order: called in address order, the next-line prefetch
    # would fetch most lines ahead; a hit's functions lie all over the text
    echo 'func spread(x uint64) uint64 {'
    seq 0 $((N - 1)) | awk 'BEGIN {srand(1)} {print rand() "\t" $1}' | sort -n | cut -f2 | awk '{print "\tx = hot" $1 "(x)"}'
    echo '	return x'; echo '}'
    echo 'func same(x uint64) uint64 {'; for i in $(seq 0 $((N - 1))); do echo "	x = hot0(x)"; done; echo '	return x'; echo '}'
  fi
} >> "$W/main.go"
(cd "$W" && gofmt -w main.go && GOWORK=off go build -o lines .)
[ "$KIND" = code ] && go tool nm -size -sort address "$W/lines" | awk '$4 ~ /^main\.hot[0-9]+$/ {a = strtonum("0x" $1); n++; s += $2
    for (l = int(a / 64); l <= int((a + $2 - 1) / 64); l++) ln[l] = 1}
  END {k = 0; for (l in ln) k++; printf "%d hot functions, %.0f bytes each on average, on %d distinct 64-byte lines\n", n, s / n, k}'
spread_inputs
if [ "${CG:-0}" = 1 ]; then
  echo "variant requests instr_per_request I1_miss_per_request D1_read_miss_per_request"
  for v in 0 1; do
    SPREAD=$v GOMAXPROCS=1 GODEBUG=asyncpreemptoff=1,cpu.rdtscp=off taskset -c 1 valgrind --tool=callgrind \
      --cache-sim=yes --I1=32768,8,64 --D1=32768,8,64 --LL=524288,8,64 --callgrind-out-file="$W/cg.$v" \
      "$W/lines" 127.0.0.1:$((P + 5)) "$W/answer.json" 2>/dev/null & pid=$! PIDS+=($!)
    for _ in $(seq 600); do curl -sf -o /dev/null -X POST -d "$BODY" http://127.0.0.1:$((P + 5))/ && break; sleep 0.1; done
    taskset -c 0 wrk -t1 -c64 -d3s -s "$W/post.lua" http://127.0.0.1:$((P + 5))/ >/dev/null
    callgrind_control -z $pid >/dev/null
    taskset -c 0 wrk -t1 -c64 --timeout 60s -d"${CG_DUR:-5}s" -s "$W/post.lua" http://127.0.0.1:$((P + 5))/ > "$W/wrk.txt"
    callgrind_control -d $pid >/dev/null; kill $pid; wait $pid 2>/dev/null || true
    req=$(awk '/requests in/ {print $1}' "$W/wrk.txt")
    f=$W/cg.$v.1 # the dump of the window (cg.$v is the rest, at exit)
    awk -v n="$req" -v name="$([ $v = 1 ] && echo spread || echo same)" '/^events:/ {for (i = 2; i <= NF; i++) e[i] = $i}
      /^(summary|totals):/ {for (i = 2; i <= NF; i++) x[e[i]] = $i; printf "%s %d %.0f %.0f %.0f\n", name, n, x["Ir"] / n, x["I1mr"] / n, x["D1mr"] / n; exit}' "$f"
    rm -f "$W"/cg.$v*
  done
fi
spread_rounds "$W/lines" "$P" same "$KIND line"
