#!/usr/bin/env bash
# Instructions per operation of Go benchmarks, counted by callgrind: stable
# on a shared, busy machine where ns/op is not. Each benchmark runs twice
# under valgrind (N1 and N2 iterations, one P); the difference divided by
# N2-N1 cancels the set-up (servers, caches, warm-up). Needs valgrind
# (installed with apt-get when missing).
# Usage: bench/callgrind-ops.sh [package=./internal/gateway/] [benchmarks="BenchmarkCacheHitHandler BenchmarkProxiedHandler"] [N1=200] [N2=1200]
set -euo pipefail
cd "$(dirname "$0")/.."
PKG=${1:-./internal/gateway/}
BENCHES=${2:-"BenchmarkCacheHitHandler BenchmarkProxiedHandler"}
N1=${N1:-200} N2=${N2:-1200}
bench/install-tools.sh valgrind
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
go test -c -o "$WORK/bench.test" "$PKG"
ir() { # benchmark iterations -> total instructions
  # Go's asynchronous preemption signals upset callgrind: off. GOGC=off:
  # when a collection happens to fall is the main noise between runs (the
  # allocations themselves are still counted, and -benchmem reports them).
  # cpu.rdtscp=off: Go 1.26's runtime reads the clock with RDTSCP when a
  # lock sleeps, an instruction valgrind 3.19 does not know (SIGILL, and
  # the run's count is garbage); the fenced RDTSC path it falls back to is
  # the same work. A run that still dies is repeated, never counted.
  for _ in $(seq 20); do
    if GOGC=off GODEBUG=asyncpreemptoff=1,cpu.rdtscp=off valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.out" \
      "$WORK/bench.test" -test.run '^$' -test.bench "^$1\$" -test.benchtime "${2}x" -test.cpu 1 >/dev/null 2>&1; then
      awk '/^(summary|totals):/ {print $2; exit}' "$WORK/cg.out"
      return
    fi
  done
  echo "$1: every callgrind run failed" >&2
  return 1
}
echo "commit $(git rev-parse --short HEAD)$(git diff --quiet || echo '+dirty'); callgrind, $N1 and $N2 iterations, GOMAXPROCS 1, GOGC=off"
for b in $BENCHES; do
  a=$(ir "$b" "$N1"); c=$(ir "$b" "$N2")
  echo "$b $(( (c - a) / (N2 - N1) )) instructions/op"
done
