#!/usr/bin/env bash
# Instructions the SFU spends per forwarded RTP packet, by audience size: repeatable on a shared
# machine, where timings are not (valgrind's callgrind counts instructions, whatever else runs).
#
#   bash test/bench/instructions.sh [subscriber counts, default "10 30 100 300 1000"]
#   SFU_BENCH=<another build of examples/sfu_bench> bash test/bench/instructions.sh 10 300   # compare
#
# Runs `sfu_bench` (one publisher, N subscribers, the product's media driver in virtual time,
# test/support/sfu_bench.rs) under callgrind, counting only the room's own work
# (`--toggle-collect` of `room_work` in test/kit/media_world.rs: datagrams, timeouts, deadlines,
# outputs; not the simulated browsers). Each count runs for 1 and for 3 virtual seconds: the
# difference is 2 s of steady forwarding, setup (DTLS handshakes, negotiation) cancels out.
# Needs valgrind (apt-get install valgrind). 1000 subscribers take ~15 minutes.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
if [ -z "${SFU_BENCH:-}" ]; then
  cargo build --release --quiet --example sfu_bench
  SFU_BENCH="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release/examples/sfu_bench"
fi
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
printf '%-12s %-10s %-14s %s\n' subscribers forwarded instructions "instructions per forwarded packet"
for n in ${*:-10 30 100 300 1000}; do
  for s in 1 3; do
    valgrind --tool=callgrind --toggle-collect='*room_work*' --callgrind-out-file="$out/cg.$n.$s" \
      "$SFU_BENCH" "$n" "$s" > "$out/log.$n.$s" 2>&1
  done
  i1=$(grep -oP 'Collected : \K[0-9]+' "$out/log.$n.1"); i3=$(grep -oP 'Collected : \K[0-9]+' "$out/log.$n.3")
  f1=$(grep -oP 'forwarded +\K[0-9]+' "$out/log.$n.1"); f3=$(grep -oP 'forwarded +\K[0-9]+' "$out/log.$n.3")
  printf '%-12s %-10s %-14s %s\n' "$n" "$((f3 - f1))" "$((i3 - i1))" "$(( (i3 - i1) / (f3 - f1) ))"
done
