#!/usr/bin/env bash
# Where a cache hit's CPU time goes, Sluice builds against the bare Go
# handler (the floor), sampled in real time rather than counted in
# instructions: here the two no longer agree (docs/BENCHMARKS.md §9), so a
# cut chosen by callgrind's counts can miss where the time is. Each server runs as
# bench/hit-cpu.sh starts it (GOMAXPROCS=1 on CPU 1, flag-mode defaults,
# --log-level error, one instant backend; wrk -t1 -c64 posting the hit from
# CPU 0); perf, on CPU 0 with a 4 MiB buffer (else it loses samples),
# samples its task-clock every 250 us of CPU with call chains for DUR
# seconds, ROUNDS times, the order rotated each round. Every sample is
# charged to its owner: the first frame of the chain, from the leaf up,
# outside the runtime and the small helpers every package calls (map,
# string, context, sync, time). Sampling costs each server ~15% of its
# throughput.
# Printed, per request (us), summed over the rounds:
#   - per server: the total, kernel and user time, the time sampled on the
#     instruction after an atomic one (lock-prefixed or xchg: where the
#     core waits for earlier stores and misses), and the process's own CPU
#     time from /proc as a check (sampled below ~90%: samples were lost);
#   - per server, by kind of owner: own code (the server's module and its
#     third-party packages; the floor's handler), the standard library
#     (net/http, net, bufio, ...), the runtime, and syscall.Syscall (the
#     kernel's time in read and write, with their entry);
#   - per owner, the first build against the floor (largest differences
#     first, both ways), and the same for the time after atomics.
# Kinds are precise to a few hundredths of a us per request over 8 s;
# compare builds by their own-code row, and check that what was cut did not
# move to another row or to another function (a cache miss a cut function
# no longer takes is taken by the next one that touches the line).
# Needs perf (software events suffice), objdump, readelf, wrk, taskset,
# curl, go.
# Usage: [DUR=8] [ROUNDS=1] [TOP=30] [OUT=dir] bench/hit-profile.sh name=SLUICE_BIN [name=SLUICE_BIN ...]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
bench/install-tools.sh wrk curl   # apt-get when missing (root, else sudo)
DUR=${DUR:-8} ROUNDS=${ROUNDS:-1} TOP=${TOP:-30}
W=$(mktemp -d); OUT=${OUT:-$W/out}; mkdir -p "$OUT"; PIDS=()
trap 'kill ${PIDS[@]} 2>/dev/null; rm -rf $W' EXIT
start_hit_bench 19611 19620 19660 "$@"
for n in "${names[@]}"; do
  # Addresses right after an atomic instruction. perf prints a Go binary's
  # addresses relative to its text segment's file offset; objdump, virtual.
  delta=$(readelf -lW "${EXE[$n]}" | awk '$1=="LOAD" && / R E / {print strtonum($3) - strtonum($2); exit}')
  objdump -d --no-show-raw-insn "${EXE[$n]}" |
    awk -v d="$delta" '/^ *[0-9a-f]+:/ {a=strtonum("0x" substr($1, 1, length($1)-1));
      if (prev) printf "%x\n", a - d; prev=($2 ~ /^(lock|xchg)/)}' > "$W/$n.atomic"
  taskset -c 0 wrk -t1 -c64 -d2s -s "$W/post.lua" "http://${ADDR[$n]}/v1/chat/completions" >/dev/null
  : > "$W/$n.script"; echo 0 > "$W/$n.req"; echo 0 > "$W/$n.ticks"
done
k=${#names[@]}
for r in $(seq "$ROUNDS"); do
  o=$(( (r - 1) % k ))
  for n in "${names[@]:o}" "${names[@]:0:o}"; do
    t0=$(awk '{print $14+$15}' "/proc/${PID[$n]}/stat")
    taskset -c 0 perf record -q -m 1024 -e task-clock -c 250000 -g -p "${PID[$n]}" -o "$W/$n.data" -- sleep "$DUR" 2>/dev/null & pp=$!
    taskset -c 0 wrk -t1 -c64 -d"${DUR}s" -s "$W/post.lua" "http://${ADDR[$n]}/v1/chat/completions" > "$W/$n.wrk"; wait $pp
    t1=$(awk '{print $14+$15}' "/proc/${PID[$n]}/stat")
    perf script -i "$W/$n.data" -F ip,sym 2>/dev/null >> "$W/$n.script"
    echo $(( $(cat "$W/$n.req") + $(awk '/requests in/ {print $1}' "$W/$n.wrk") )) > "$W/$n.req"
    echo $(( $(cat "$W/$n.ticks") + t1 - t0 )) > "$W/$n.ticks"
  done
done
for n in "${names[@]}"; do
  req=$(cat "$W/$n.req")
  # The process's own CPU time per request (10 ms ticks), against which
  # the samples are checked: perf drops samples when it cannot keep up.
  cpu=$(awk -v t="$(cat "$W/$n.ticks")" -v hz="$(getconf CLK_TCK)" -v r="$req" 'BEGIN {print t*1e6/hz/r}')
  awk -v req="$req" -v n="$n" -v out="$OUT/$n" -v cpu="$cpu" -v secs="$((DUR * ROUNDS))" '
    FNR==NR {atomic[$1]=1; next}
    function owner(i,  f) {
      for (; i <= depth; i++) {
        f = frame[i]
        if (fip[i] ~ /^ffff/ || f ~ /^__vdso/) continue   # kernel, vDSO
        if (f ~ /^(runtime\.|internal\/|sync\.|sync\/atomic\.|context\.|strings\.|bytes\.|strconv\.|unicode|errors\.|time\.(now|Now|runtimeNow|runtimeNano)|indexbyte|memeqbody|aeshash|cmpbody|gogo|\[)/) continue
        return f
      }
      return "(runtime)"
    }
    function kind(o) {
      if (o == "(runtime)") return "runtime"
      if (o == "syscall.Syscall") return "syscalls"
      if (o ~ /^main\./ || o ~ /^[a-z0-9-]+\.[a-z0-9.-]+\//) return "own code"   # a module path: not the standard library
      return "std library"
    }
    function flush(  o) {
      if (!depth) return
      total++
      if (kernel) kern++
      o = owner(1); own[o]++; kinds[kind(o)]++
      if (atomic[leafip]) { after[frame[1]]++; atom++ }
      depth=0
    }
    /^[[:space:]]*$/ {flush(); next}
    { ip=$1; sym=$0; sub(/^[ \t]*[0-9a-f]+ /, "", sym); sub(/\+0x[0-9a-f]+$/, "", sym)
      if (!depth) { leafip=ip; kernel=(ip ~ /^ffff/) }
      frame[++depth]=sym; fip[depth]=ip }
    END { flush(); us=250/req; printf "" > out ".atomic"
      printf "%-8s total %.3f kernel %.3f user %.3f after_atomic %.3f | cpu %.3f (sampled %.0f%%) req/s %.0f\n", n,
        total*us, kern*us, (total-kern)*us, atom*us, cpu, 100*total*us/cpu, req/secs > out ".sum"
      sc = cpu / (total*us)   # samples lost evenly: the kinds scaled to the CPU time
      printf "%-8s own code %.3f, std library %.3f, runtime %.3f, syscalls %.3f\n", n,
        kinds["own code"]*us*sc, kinds["std library"]*us*sc, kinds["runtime"]*us*sc, kinds["syscalls"]*us*sc > out ".kinds"
      for (o in own) printf "%.4f\t%s\n", own[o]*us, o > out ".own"
      for (f in after) printf "%.4f\t%s\n", after[f]*us, f > out ".atomic" }' "$W/$n.atomic" "$W/$n.script"
done
echo "# machine: $(nproc) cores,$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), Linux $(uname -r), page-table isolation (Meltdown): $(cat /sys/devices/system/cpu/vulnerabilities/meltdown 2>/dev/null), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# us per request, sampled (task-clock every 250 us, $ROUNDS x $DUR s each)"
for n in "${names[@]}"; do cat "$OUT/$n.sum"; done
echo "# by kind of owner, scaled to the process's CPU time (samples lost evenly)"
for n in "${names[@]}"; do cat "$OUT/$n.kinds"; done
first=${names[0]}
echo "# owners: $first floor difference (largest differences first, both ways)"
awk -F'\t' 'FNR==NR {s[$2]=$1; k[$2]=1; next} {f[$2]=$1; k[$2]=1}
  END {for (o in k) printf "%.3f %.3f %+.3f %s\n", s[o], f[o], s[o]-f[o], o}' "$OUT/$first.own" "$OUT/floor.own" |
  sort -k3,3gr > "$W/diff"
head -n "$TOP" "$W/diff"; echo "..."; tail -n 8 "$W/diff"
echo "# after an atomic instruction: $first floor difference, by function"
awk -F'\t' 'FNR==NR {s[$2]=$1; k[$2]=1; next} {f[$2]=$1; k[$2]=1}
  END {for (o in k) printf "%.3f %.3f %+.3f %s\n", s[o], f[o], s[o]-f[o], o}' "$OUT/$first.atomic" "$OUT/floor.atomic" |
  sort -k3,3gr | head -n 15
