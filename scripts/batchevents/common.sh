# Sourced by the batch-event scripts (pending.sh, reload.sh, removed.sh):
# the processes they start, stopped when the script exits. Needs BIN, W,
# SIM, HOOK, SECRET and here set.
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# start_sim_and_receiver MODE: `sluice sim` on $SIM and receiver.py on
# $HOOK answering as MODE says (up, down, hang; the script rewrites
# $W/mode to change it), its events appended to $W/events.jsonl.
start_sim_and_receiver() {
  echo "$1" >"$W/mode"
  touch "$W/events.jsonl"
  "$BIN" sim --listen 127.0.0.1:$SIM --model m --instant >/dev/null 2>&1 & pids+=($!)
  python3 "$here/receiver.py" $HOOK "$SECRET" "$W/mode" "$W/events.jsonl" & pids+=($!)
}
