#!/usr/bin/env bash
# The benchmark suite behind BENCHMARKS.md: the real server binary (release build) pinned to one
# CPU, the load generator (videoroom-load) pinned to another, one fresh server per scenario:
#   fanout   1 publisher × N subscribers                 (N in $FANOUT)
#   meeting  N × N, everyone publishes and receives       (N in $MEETING)
#   rooms    R rooms of 1 publisher + (K-1) subscribers   (RxK in $ROOMS)
#   ice-tcp-fanout  the fan-out with every peer on ICE-TCP (load generator `--ice-tcp`; the
#                server's passive TCP candidate on its web port)   (N in $ICE_TCP_FANOUT)
#   turn-fanout  the fan-out with every peer's media through the server's TURN relay over UDP
#                (server `--turn`, load generator `--turn`)    (N in $TURN_FANOUT)
# and the fan-out and rooms scenarios again against Janus's VideoRoom plugin (Debian's `janus`
# package, when installed; JANUS=0 skips it), same load, same pinning. Then the load generator's
# own capacity:
#   loadgen  1 publisher × N subscribers against videoroom with a busy loop at nice -5 sharing the
#            load generator's CPU, so the load generator gets about a quarter of it; once per
#            receive path (`--receive-path direct`, `str0m`): packets received per CPU-second
#            it got is what one whole core takes        (N in $LOADGEN, 300)
# Each scenario appends one JSON line to $OUT/results.jsonl and keeps its report in
# $OUT/<label>.txt; at the end bench_report writes $OUT/tables.md and the PNG curves.
#
#   bash test/bench/run.sh [OUT_DIR]        (default: bench-results/<UTC date and time>)
#
# Settings (environment): BENCH_SECONDS (measured seconds per scenario, 20), FANOUT
# ("10 100 300 1000"), TURN_FANOUT ("10 100"), ICE_TCP_FANOUT ("10 100"), MEETING ("2 5 10 15 20 25"), ROOMS ("50x4 100x4 200x4"), LOADGEN ("300"), SERVER_CPUS (0),
# LOAD_CPUS (1), JOIN_RATE (peers started per second, 50), SERVER_BIN (the server binary to
# measure; default: this tree's release build, e.g. an older build for a before/after).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
# shellcheck source=test/bench/lib.sh
source test/bench/lib.sh
OUT="${1:-bench-results/$(date -u +%Y%m%d-%H%M%S)}"
SECONDS_EACH="${BENCH_SECONDS:-20}"
FANOUT="${FANOUT-10 100 300 1000}"
MEETING="${MEETING-2 5 10 15 20 25}"
TURN_FANOUT="${TURN_FANOUT-10 100}"
ICE_TCP_FANOUT="${ICE_TCP_FANOUT-10 100}"
ROOMS="${ROOMS-50x4 100x4 200x4}"
LOADGEN="${LOADGEN-300}"
export SERVER_CPUS="${SERVER_CPUS:-0}"
LOAD_CPUS="${LOAD_CPUS:-1}"
JOIN_RATE="${JOIN_RATE:-50}"
JANUS="${JANUS:-$(command -v janus >/dev/null && echo 1 || echo 0)}"
JANUS_PORT="${JANUS_PORT:-18188}"
mkdir -p "$OUT"

cargo build --release --quiet --bin videoroom --bin videoroom-load
# The report needs no speed: built with the test profile, whose dependencies are already built.
cargo build --quiet --example bench_report
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
BIN="$TARGET_DIR/release"
SERVER_BIN="${SERVER_BIN:-$BIN/videoroom}"

{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "commit: $(git rev-parse --short HEAD)"
  echo "nproc: $(nproc)"
  echo "cpu: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
  echo "kernel: $(uname -r)"
  echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "server: $SERVER_BIN"
  echo "server cpus: $SERVER_CPUS, load generator cpus: $LOAD_CPUS, $SECONDS_EACH s per scenario"
} | tee "$OUT/machine.txt"

trap stop_server EXIT
# run_scenario SERVER LABEL ROOMS PUBLISHERS SUBSCRIBERS [turn|ice-tcp|direct|str0m]: one scenario
# against a fresh videoroom or janus (`turn`: every peer through videoroom's TURN relay;
# `ice-tcp`: every peer over ICE-TCP; `direct`, `str0m`: that receive path, with a busy loop at
# nice -5 on the load generator's CPU for the scenario's length).
run_scenario() {
  local server=$1 label=$2 rooms=$3 publishers=$4 subscribers=$5 relay=${6:-}
  local flags=() server_flags=() hog=""
  if [ "$relay" = turn ]; then flags=(--turn); server_flags=(--turn --turn-port 0); fi
  if [ "$relay" = ice-tcp ]; then flags=(--ice-tcp); fi
  if [ "$relay" = direct ] || [ "$relay" = str0m ]; then
    flags=(--receive-path "$relay")
    taskset -c "$LOAD_CPUS" nice -n -5 sh -c 'while :; do :; done' &
    hog=$!
  fi
  echo "== $server $label: $rooms room(s) × ($publishers publishers + $subscribers subscribers)"
  if [ "$server" = janus ]; then
    local ip iface
    read -r ip iface < <(local_ipv4)
    SERVER_LOG="$OUT/janus-$label.server.log" start_janus "$JANUS_PORT" "$iface"
    flags=(--janus --local-ip "$ip")
  else
    SERVER_LOG="$OUT/$label.server.log" start_server "$SERVER_BIN" --max-peers-per-room 5000 \
      --max-rooms 10000 --max-connections 100000 --max-connections-per-ip 100000 \
      --turn-max-allocations 100000 "${server_flags[@]}"
  fi
  taskset -c "$LOAD_CPUS" "$BIN/videoroom-load" --server "$SERVER_ADDR" --server-pid "$SERVER_PID" \
    --rooms "$rooms" --publishers "$publishers" --subscribers "$subscribers" "${flags[@]}" \
    --duration "$SECONDS_EACH" --join-rate "$JOIN_RATE" --label "$label" --progress 5 \
    --json "$OUT/results.jsonl" | tee "$OUT/$server-$label.txt" || echo "$label: the load generator failed"
  if [ -n "$hog" ]; then kill "$hog"; wait "$hog" 2>/dev/null || true; fi
  stop_server
  echo "load average after $server $label: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"
}

servers=(videoroom)
if [ "$JANUS" = 1 ]; then servers+=(janus); fi
for server in "${servers[@]}"; do
  for n in $FANOUT; do run_scenario "$server" "fanout-$n" 1 1 "$n"; done
  for rk in $ROOMS; do run_scenario "$server" "rooms-$rk" "${rk%x*}" 1 "$((${rk#*x} - 1))"; done
done
for n in $ICE_TCP_FANOUT; do run_scenario videoroom "ice-tcp-fanout-$n" 1 1 "$n" ice-tcp; done
for n in $TURN_FANOUT; do run_scenario videoroom "turn-fanout-$n" 1 1 "$n" turn; done
for n in $MEETING; do run_scenario videoroom "meeting-$n" 1 "$n" 0; done
for n in $LOADGEN; do
  for path in direct str0m; do run_scenario videoroom "loadgen-$path-$n" 1 1 "$n" "$path"; done
done

"$TARGET_DIR/debug/examples/bench_report" "$OUT/results.jsonl" "$OUT"
echo "results: $OUT (tables.md, *.png, one report per scenario)"
