#!/usr/bin/env bash
# Where a cache hit's CPU time goes, Sluice against the bare Go handler (the
# floor), sampled in real time rather than counted in instructions: on this
# VM (pti=on, no PCID: the TLB is emptied at every syscall) the two no longer
# agree (docs/BENCHMARKS.md §9), so a cut chosen by callgrind's counts can
# miss where the time is. Each server runs as bench/hit-cpu.sh starts it
# (GOMAXPROCS=1 on CPU 1, flag-mode defaults, --log-level error, one instant
# backend; wrk -t1 -c64 posting the hit from CPU 0); perf samples its
# task-clock every 250 us of CPU with call chains for DUR seconds, and every
# sample is charged to its owner: the first frame of the chain, from the
# leaf up, outside the runtime and the small helpers every package calls
# (map, string, context, sync, time). The sampling itself costs ~10-15% of
# the throughput; both servers pay it.
# Printed, per request (us): the total, split into kernel and user, with
# the process's CPU time from /proc (the share sampled below ~90%: perf
# lost samples, a loaded machine; run again); the
# owners whose time differs most between the two; and the time sampled on
# the instruction after an atomic one (lock-prefixed or xchg), where the
# core waits for earlier stores and misses to complete, per function.
# Needs perf (software events suffice), objdump, readelf, wrk, taskset,
# curl, go.
# Usage: [DUR=8] [TOP=30] [OUT=dir] bench/hit-profile.sh SLUICE_BIN
set -euo pipefail
cd "$(dirname "$0")/.."
bench/install-tools.sh wrk curl   # apt-get when missing (root, else sudo)
DUR=${DUR:-8} TOP=${TOP:-30} BIN=$1
W=$(mktemp -d); OUT=${OUT:-$W/out}; mkdir -p "$OUT"; PIDS=()
trap 'kill ${PIDS[@]} 2>/dev/null; rm -rf $W' EXIT
BACK=127.0.0.1:19611 SADDR=127.0.0.1:19622 FADDR=127.0.0.1:19640
BODY='{"model":"m","messages":[{"role":"user","content":"hello there"}],"max_tokens":4,"temperature":0}'
mkdir -p "$W/floor" && printf 'module floor\ngo 1.22\n' > "$W/floor/go.mod"
sed -n '/^package main/,/^GO$/p' bench/cache-hit.sh | grep -v '^GO$' > "$W/floor/main.go"
(cd "$W/floor" && GOWORK=off go build -o floor .)
taskset -c 0 "$BIN" sim --listen $BACK --instant --model m >/dev/null 2>&1 & PIDS+=($!)
GOMAXPROCS=1 taskset -c 1 "$BIN" serve --listen $SADDR --admin-listen 127.0.0.1:19623 --model m \
  --backend http://$BACK --log-level error --data-dir "$W/dd" 2>"$W/sluice.log" & PIDS+=($!)
declare -A PID=([sluice]=$! [floor]=) ADDR=([sluice]=$SADDR [floor]=$FADDR) EXE=([sluice]=$BIN [floor]=$W/floor/floor)
for _ in $(seq 100); do curl -sf -o /dev/null "http://$SADDR/healthz" && break; sleep 0.1; done
curl -sf -X POST -d "$BODY" "http://$SADDR/v1/chat/completions" > "$W/answer.json"
[ "$(curl -sf -D - -o /dev/null -X POST -d "$BODY" "http://$SADDR/v1/chat/completions" | tr -d '\r' |
  awk 'tolower($1)=="x-cache:" {print $2}')" = HIT ] || { echo "sluice: not a cache hit"; exit 1; }
GOMAXPROCS=1 taskset -c 1 "$W/floor/floor" $FADDR "$W/answer.json" & PIDS+=($!); PID[floor]=$!
sleep 0.5
printf 'wrk.method = "POST"\nwrk.body = [[%s]]\nwrk.headers["Content-Type"] = "application/json"\n' "$BODY" > "$W/post.lua"
for n in sluice floor; do
  taskset -c 0 wrk -t1 -c64 -d2s -s "$W/post.lua" "http://${ADDR[$n]}/v1/chat/completions" >/dev/null
  t0=$(awk '{print $14+$15}' "/proc/${PID[$n]}/stat")
  perf record -q -e task-clock -c 250000 -g -p "${PID[$n]}" -o "$W/$n.data" -- sleep "$DUR" 2>/dev/null & pp=$!
  taskset -c 0 wrk -t1 -c64 -d"${DUR}s" -s "$W/post.lua" "http://${ADDR[$n]}/v1/chat/completions" > "$W/$n.wrk"; wait $pp
  t1=$(awk '{print $14+$15}' "/proc/${PID[$n]}/stat")
  req=$(awk '/requests in/ {print $1}' "$W/$n.wrk")
  # The process's own CPU time per request (10 ms ticks), against which
  # the samples are checked: perf drops samples on a loaded machine.
  cpu=$(awk -v t="$((t1 - t0))" -v hz="$(getconf CLK_TCK)" -v r="$req" 'BEGIN {print t*1e6/hz/r}')
  perf script -i "$W/$n.data" -F ip,sym 2>/dev/null > "$W/$n.script"
  # Addresses right after an atomic instruction. perf prints a Go binary's
  # addresses relative to its text segment's file offset; objdump, virtual.
  delta=$(readelf -lW "${EXE[$n]}" | awk '$1=="LOAD" && / R E / {print strtonum($3) - strtonum($2); exit}')
  objdump -d --no-show-raw-insn "${EXE[$n]}" |
    awk -v d="$delta" '/^ *[0-9a-f]+:/ {a=strtonum("0x" substr($1, 1, length($1)-1));
      if (prev) printf "%x\n", a - d; prev=($2 ~ /^(lock|xchg)/)}' > "$W/$n.atomic"
  awk -v req="$req" -v n="$n" -v out="$OUT/$n" -v cpu="$cpu" '
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
    function flush(  o) {
      if (!depth) return
      total++
      if (kernel) kern++
      own[owner(1)]++
      if (atomic[leafip]) { after[frame[1]]++; atom++ }
      depth=0
    }
    /^[[:space:]]*$/ {flush(); next}
    { ip=$1; sym=$0; sub(/^[ \t]*[0-9a-f]+ /, "", sym); sub(/\+0x[0-9a-f]+$/, "", sym)
      if (!depth) { leafip=ip; kernel=(ip ~ /^ffff/) }
      frame[++depth]=sym; fip[depth]=ip }
    END { flush(); us=250/req; printf "" > out ".atomic"
      printf "%s total %.3f kernel %.3f user %.3f after_atomic %.3f | cpu %.3f (sampled %.0f%%) req/s %.0f\n", n,
        total*us, kern*us, (total-kern)*us, atom*us, cpu, 100*total*us/cpu, req/'"$DUR"' > out ".sum"
      for (o in own) printf "%.4f\t%s\n", own[o]*us, o > out ".own"
      for (f in after) printf "%.4f\t%s\n", after[f]*us, f > out ".atomic" }' "$W/$n.atomic" "$W/$n.script"
done
echo "# us per request, sampled (task-clock every 250 us, $DUR s each)"
cat "$OUT/sluice.sum" "$OUT/floor.sum"
echo "# owners: sluice floor difference (largest differences first, both ways)"
awk -F'\t' 'FNR==NR {s[$2]=$1; k[$2]=1; next} {f[$2]=$1; k[$2]=1}
  END {for (o in k) printf "%.3f %.3f %+.3f %s\n", s[o], f[o], s[o]-f[o], o}' "$OUT/sluice.own" "$OUT/floor.own" |
  sort -k3,3gr > "$W/diff"
head -n "$TOP" "$W/diff"; echo "..."; tail -n 8 "$W/diff"
echo "# after an atomic instruction: sluice floor difference, by function"
awk -F'\t' 'FNR==NR {s[$2]=$1; k[$2]=1; next} {f[$2]=$1; k[$2]=1}
  END {for (o in k) printf "%.3f %.3f %+.3f %s\n", s[o], f[o], s[o]-f[o], o}' "$OUT/sluice.atomic" "$OUT/floor.atomic" |
  sort -k3,3gr | head -n 15
