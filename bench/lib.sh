# Shared by the nginx-side-by-side benchmarks (proxy-overhead.sh,
# cache-hit.sh); sourced, not run. Sets LOADCPU, SRVCPU and WORKERS from
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

# start_hit_servers PORT FLOORPORT name=BIN...: the hit benchmarks'
# servers (hit-cpu.sh, hit-profile.sh). Each Sluice build serves on
# PORT+2, PORT+4, ... (admin one above) with GOMAXPROCS=1 on CPU 1,
# flag-mode defaults, --log-level error, in front of the instant backend
# at $BACK, and is checked to answer $BODY as a cache hit; then the floor,
# $W/floor/floor, serves the last build's answer on FLOORPORT. Sets the
# associative arrays PID, ADDR and EXE and the list names (the floor
# last); appends to PIDS. Needs W, BACK and BODY.
start_hit_servers() {
  local port=$1 fport=$2 b n bin
  shift 2
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
}
