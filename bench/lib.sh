# Shared by the nginx-side-by-side benchmarks (proxy-overhead.sh,
# cache-hit.sh) and others; sourced, not run. Sets LOADCPU, SRVCPU and WORKERS from
# PIN and NCPU: with PIN=1 the load generator and the backend run on CPU 0
# and the server under test on CPU 1 with one worker, the same for every
# server; with PIN=0 nothing is pinned and servers use every core.

pin_cpus() {
  if [ "$PIN" = 1 ]; then
    command -v taskset >/dev/null || { echo "missing taskset (util-linux); or run with PIN=0"; exit 1; }
    LOADCPU=(taskset -c 0) SRVCPU=(taskset -c 1) WORKERS=1
  else
    LOADCPU=() SRVCPU=() WORKERS=$NCPU
  fi
}

# wait_up addr path: until http://addr/path answers 2xx (10 s), else exit.
wait_up() { for _ in $(seq 100); do curl -sf -o /dev/null "http://$1/$2" && return 0; sleep 0.1; done; echo "not up: $1"; exit 1; }

# cpu_ticks pids...: utime+stime of the given pids and their children.
cpu_ticks() {
  local t=0 p
  for p in "$@" $(for q in "$@"; do pgrep -P "$q"; done); do
    t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo $t
}

# header_names ADDR BODY: the sorted header names of the answer to BODY
# posted to ADDR's chat completions, on one line.
header_names() {
  curl -sf -D - -o /dev/null -X POST --data-binary "$2" "http://$1/v1/chat/completions" |
    tr -d '\r' | awk -F': ' 'NR > 1 && NF > 1 {print $1}' | sort | tr '\n' ' '
}

# start_hit_bench BACKPORT PORT FLOORPORT name=BIN...: the hit benchmarks'
# servers (hit-cpu.sh, hit-profile.sh). One instant backend (`sim` of the
# first build) on CPU 0 at 127.0.0.1:BACKPORT; each Sluice build on PORT+2,
# PORT+4, ... (admin one above) with GOMAXPROCS=1 on CPU 1, flag-mode
# defaults, --log-level error, checked to answer BODY (the hit) as a cache
# hit; then the floor, bench/cache-hit.sh's own bare handler built into
# $W/floor, serving the last build's answer on FLOORPORT. Sets BACK, BODY,
# the associative arrays PID, ADDR and EXE, the list names (the floor
# last) and $W/post.lua (wrk posting BODY); appends to PIDS. Needs W.
start_hit_bench() {
  local port=$2 fport=$3 b n bin
  BACK=127.0.0.1:$1
  shift 3
  BODY='{"model":"m","messages":[{"role":"user","content":"hello there"}],"max_tokens":4,"temperature":0}'
  mkdir -p "$W/floor" && printf 'module floor\ngo 1.22\n' > "$W/floor/go.mod"
  sed -n '/^package main/,/^GO$/p' bench/cache-hit.sh | grep -v '^GO$' > "$W/floor/main.go"
  (cd "$W/floor" && GOWORK=off go build -o floor .)
  taskset -c 0 "${1#*=}" sim --listen "$BACK" --instant --model m >/dev/null 2>&1 & PIDS+=($!)
  declare -gA PID ADDR EXE
  names=()
  for b in "$@"; do
    n=${b%%=*} bin=${b#*=}; port=$((port+2))
    GOMAXPROCS=1 taskset -c 1 "$bin" serve --listen 127.0.0.1:$port --admin-listen 127.0.0.1:$((port+1)) --model m \
      --backend "http://$BACK" --log-level error --data-dir "$W/dd-$n" 2>"$W/$n.log" & PIDS+=($!)
    PID[$n]=$! ADDR[$n]=127.0.0.1:$port EXE[$n]=$bin names+=("$n")
  done
  for n in "${names[@]}"; do
    wait_up "${ADDR[$n]}" healthz
    curl -sf -X POST -d "$BODY" "http://${ADDR[$n]}/v1/chat/completions" > "$W/answer.json"
    [ "$(curl -sf -D - -o /dev/null -X POST -d "$BODY" "http://${ADDR[$n]}/v1/chat/completions" | tr -d '\r' |
      awk 'tolower($1)=="x-cache:" {print $2}')" = HIT ] || { echo "$n: not a cache hit"; exit 1; }
  done
  GOMAXPROCS=1 taskset -c 1 "$W/floor/floor" "127.0.0.1:$fport" "$W/answer.json" & PIDS+=($!)
  PID[floor]=$! ADDR[floor]=127.0.0.1:$fport EXE[floor]=$W/floor/floor
  names+=(floor)
  sleep 0.5
  # The floor must send a hit's header names (cache-hit.sh checks the same):
  # a header hits gained and the floor lacked (X-Sluice-Model, a09a7a8)
  # went unnoticed here for a day and flattered the floor.
  local want got
  want=$(header_names "${ADDR[${names[0]}]}" "$BODY") got=$(header_names "${ADDR[floor]}" "$BODY")
  [ "$want" = "$got" ] || { echo "FAIL the floor's header names: want $want, got '$got'" >&2; exit 1; }
  printf 'wrk.method = "POST"\nwrk.body = [[%s]]\nwrk.headers["Content-Type"] = "application/json"\n' "$BODY" > "$W/post.lua"
}

# spread_inputs: the code-cost benchmarks' request and answer (code-pages.sh,
# code-lines.sh): sets BODY (a chat completion), writes $W/post.lua (wrk
# posting BODY) and $W/answer.json (an instant simulator's answer to it, what
# their bare handler sends). Needs W.
spread_inputs() {
  printf '{"id":"chatcmpl-sim-instant","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"the sluice gate opens "},"logprobs":null,"finish_reason":"length"}],"usage":{"prompt_tokens":1,"completion_tokens":4,"total_tokens":5}}' > "$W/answer.json"
  BODY='{"model":"m","messages":[{"role":"user","content":"hello there"}],"max_tokens":4,"temperature":0}'
  printf 'wrk.method = "POST"\nwrk.body = [[%s]]\nwrk.headers["Content-Type"] = "application/json"\n' "$BODY" > "$W/post.lua"
}

# spread_rounds BIN PORT BASE UNIT: the paired rounds of the code-cost
# benchmarks. BIN (a bare handler serving $W/answer.json) runs twice with
# GOMAXPROCS=1 on CPU 1: SPREAD=0, named BASE, on 127.0.0.1:PORT and
# SPREAD=1, named spread, on PORT+1. After a 2 s warm-up each, ROUNDS rounds
# alternate the order; each prints the server's CPU per request (perf
# task-clock over DUR s of wrk -c64 from CPU 0 posting $W/post.lua, divided
# by the answers), the end the median of the paired differences spread -
# BASE, also per UNIT (the difference over N). Appends to PIDS. Needs W,
# ROUNDS, DUR, N.
spread_rounds() {
  local bin=$1 port=$2 base=$3 unit=$4 r k v pp req tc
  local -A pid
  for v in 0 1; do
    SPREAD=$v GOMAXPROCS=1 taskset -c 1 "$bin" 127.0.0.1:$((port + v)) "$W/answer.json" & pid[$v]=$! PIDS+=($!)
  done
  sleep 0.5
  for v in 0 1; do taskset -c 0 wrk -t1 -c64 -d2s -s "$W/post.lua" http://127.0.0.1:$((port + v))/ >/dev/null; done
  echo "round variant cpu_us_per_req"
  for r in $(seq "$ROUNDS"); do
    for k in 0 1; do
      v=$(( (r + k) % 2 ))
      perf stat -e task-clock -p "${pid[$v]}" -o "$W/ps.txt" -- sleep "$DUR" 2>/dev/null & pp=$!
      taskset -c 0 wrk -t1 -c64 -d"${DUR}s" -s "$W/post.lua" http://127.0.0.1:$((port + v))/ > "$W/wrk.txt"; wait $pp
      req=$(awk '/requests in/ {print $1}' "$W/wrk.txt")
      tc=$(awk '/task-clock/ {gsub(/,/,"",$1); print $1}' "$W/ps.txt")
      awk -v r="$r" -v n="$([ $v = 1 ] && echo spread || echo "$base")" -v req="$req" -v tc="$tc" \
        'BEGIN {printf "%d %s %.2f\n", r, n, tc * 1000 / req}'
    done
  done | tee "$W/rounds.txt"
  awk -v base="$base" -v unit="$unit" -v n_units="$N" '{v[$1, $2] = $3; r[$1] = 1}
    END {n = 0; for (k in r) {d[++n] = v[k, "spread"] - v[k, base]; p[n] = v[k, base]}
      asort(d); asort(p); m = (n % 2) ? d[(n + 1) / 2] : (d[n / 2] + d[n / 2 + 1]) / 2
      mp = (n % 2) ? p[(n + 1) / 2] : (p[n / 2] + p[n / 2 + 1]) / 2
      printf "median of %d pairs: spread - %s = %+.2f us per request (%s %.2f us), %.2f ns per %s\n", n, base, m, base, mp, 1000 * m / n_units, unit}' "$W/rounds.txt"
}
