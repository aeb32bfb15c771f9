#!/bin/bash
# Runs a benchmark binary while stopping it (SIGSTOP) for a random
# STOP_MIN..STOP_MAX ms every RUN_MIN..RUN_MAX ms, SIGCONT between: a CPU
# stall of the whole process (load generator, gateway and simulators),
# as a higher-priority job on every core makes one, without adding load.
# SEED fixes the sequence, so two builds can be run under the same stalls
# (docs/BENCHMARKS.md §11, "Start-up refusals").
#
#   go build -o /tmp/scaling ./bench/scaling
#   bench/stall.sh 1001 200 800 300 1500 /tmp/scaling --until 30s --out s.md
#
# usage: bench/stall.sh SEED STOP_MIN STOP_MAX RUN_MIN RUN_MAX BINARY [ARGS...]
set -u
if [ $# -lt 6 ]; then
	sed -n '2,12p' "$0" >&2
	exit 2
fi
RANDOM=$1
smin=$2 smax=$3 rmin=$4 rmax=$5
shift 5
"$@" &
pid=$!
trap 'kill -CONT $pid 2>/dev/null; kill $pid 2>/dev/null' INT TERM
sleep 3 # the trace load and the rig's start, unstalled
while kill -0 "$pid" 2>/dev/null; do
	r=$((rmin + RANDOM % (rmax - rmin + 1)))
	s=$((smin + RANDOM % (smax - smin + 1)))
	sleep "$(awk "BEGIN{print $r/1000}")"
	kill -STOP "$pid" 2>/dev/null || break
	sleep "$(awk "BEGIN{print $s/1000}")"
	kill -CONT "$pid" 2>/dev/null
done
wait "$pid"
