#!/usr/bin/env bash
# What a code page costs a request on this machine, apart from its
# instructions: the bare handler of bench/cache-hit.sh (same headers, same
# answer), built once with N extra tiny functions, each alone on its own
# 4 KiB page of text. One binary runs twice, pinned like the hit benchmarks
# (server CPU 1, GOMAXPROCS=1, wrk -c64 on CPU 0): "plain" skips the
# functions, "spread" calls each once per request (~5 instructions each).
# Rounds alternate the order; each prints the server's CPU per request
# (perf task-clock / answers), and the end the median of the paired
# differences. On the project's VM (pti=on and no PCID: every syscall
# empties the TLB) a page touched costs a page walk per request, so CPU
# per request follows the pages a request's code spans
# (bench/server-callgrind.sh's code_pages), not only its instructions.
# Needs go, wrk, perf, taskset.
# Usage: [N=80] [ROUNDS=14] [DUR=3] [PORT_BASE=19601] bench/code-pages.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bench/install-tools.sh wrk
N=${N:-80} ROUNDS=${ROUNDS:-14} DUR=${DUR:-3} P=${PORT_BASE:-19601}
W=$(mktemp -d); PIDS=()
. bench/lib.sh
trap 'kill ${PIDS[@]} 2>/dev/null; rm -rf $W' EXIT
printf 'module spread\ngo 1.22\n' > "$W/go.mod"
# bench/cache-hit.sh's own bare handler, with the calls put in its handler
sed -n '/^package main/,/^GO$/p' bench/cache-hit.sh | grep -v '^GO$' | awk '
  /http.ListenAndServe/ {print "\tcalls := os.Getenv(\"SPREAD\") == \"1\""; print "\tif len(os.Args) > 99 {\n\t\tcolds[0]()\n\t}"}
  {print}
  /io.Copy\(io.Discard, r.Body\)/ {print "\t\tif calls {\n\t\t\tsink[0] += spread(uint64(len(body)))\n\t\t}"}' > "$W/main.go"
{
  echo 'var sink [8]uint64'
  for i in $(seq 0 $((N - 1))); do
    echo "//go:noinline"; echo "func hot$i(x uint64) uint64 { return x*31 + $i }"
    # a never-called filler of ~4 KiB of code after each: one hot function per page
    echo "//go:noinline"; echo "func cold$i() {"
    for j in $(seq 0 299); do echo "	sink[$((j % 8))] += sink[$((j * 3 % 8))] ^ $((j * 7919 + i))"; done
    echo "}"
  done
  printf 'var colds = []func(){'; for i in $(seq 0 $((N - 1))); do printf 'cold%d,' "$i"; done; echo '}'
  echo 'func spread(x uint64) uint64 {'; for i in $(seq 0 $((N - 1))); do echo "	x = hot$i(x)"; done; echo '	return x'; echo '}'
} >> "$W/main.go"
(cd "$W" && gofmt -w main.go && GOWORK=off go build -o spread .)
pages=$(go tool nm "$W/spread" | awk '$3 ~ /^main\.hot[0-9]+$/ {print int(strtonum("0x" $1) / 4096)}' | sort -u | wc -l)
echo "$N hot functions on $pages distinct pages"
spread_inputs
spread_rounds "$W/spread" "$P" plain page
