#!/usr/bin/env bash
# Smoke of the load generator (run by test/run_all.sh): one room, one publisher and three
# subscribers against the real server binary for a few seconds, through the real signalling and
# WebRTC. Passes when every peer joined and every subscriber received audio and video packets;
# no timing or rate is checked (figures are printed only). Received RTP is read on the direct
# path (`--check` also fails if that path opened nothing); then the same with str0m reading
# every packet (`--receive-path str0m`), then with every peer's media through the server's TURN
# relay over UDP (`--turn` on both).
#
#   bash test/bench/smoke.sh [BINARY_DIR]     (default: target/debug; needs videoroom and
#                                              videoroom-load built there)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BIN_DIR="${1:-$HERE/../../target/debug}"
# shellcheck source=test/bench/lib.sh
source "$HERE/lib.sh"
trap stop_server EXIT
start_server "$BIN_DIR/videoroom"
"$BIN_DIR/videoroom-load" --server "$SERVER_ADDR" --server-pid "$SERVER_PID" \
  --rooms 1 --publishers 1 --subscribers 3 --warmup 0.5 --duration 3 --setup-timeout 30 \
  --progress 1 --check
"$BIN_DIR/videoroom-load" --server "$SERVER_ADDR" --server-pid "$SERVER_PID" \
  --rooms 1 --publishers 1 --subscribers 3 --warmup 0.5 --duration 3 --setup-timeout 30 \
  --progress 1 --check --receive-path str0m
stop_server
start_server "$BIN_DIR/videoroom" --turn --turn-port 0
"$BIN_DIR/videoroom-load" --server "$SERVER_ADDR" --server-pid "$SERVER_PID" --turn \
  --rooms 1 --publishers 1 --subscribers 3 --warmup 0.5 --duration 3 --setup-timeout 30 \
  --progress 1 --check
