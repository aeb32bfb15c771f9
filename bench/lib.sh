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
