# Shared by test/bench/smoke.sh and test/bench/run.sh (sourced): starts and stops the real server
# binary on free loopback ports, optionally pinned to CPUs with taskset.

# start_server BINARY [FLAGS…]: starts BINARY on 127.0.0.1 (HTTP and UDP ports chosen by the
# kernel) with FLAGS, pinned to $SERVER_CPUS when set, its log in $SERVER_LOG (default: none);
# sets SERVER_PID and SERVER_ADDR (host:port of HTTP) once it listens.
start_server() {
  local bin=$1
  shift
  local out
  out=$(mktemp)
  local pin=()
  if [ -n "${SERVER_CPUS:-}" ]; then pin=(taskset -c "$SERVER_CPUS"); fi
  RUST_LOG="${SERVER_RUST_LOG:-warn}" "${pin[@]}" "$bin" --bind 127.0.0.1 --port 0 --udp-port 0 "$@" \
    >"$out" 2>"${SERVER_LOG:-/dev/null}" </dev/null &
  SERVER_PID=$!
  SERVER_ADDR=""
  for _ in $(seq 200); do
    SERVER_ADDR=$(sed -n 's|^videoroom listening on http://||p' "$out" | head -n 1)
    if [ -n "$SERVER_ADDR" ]; then break; fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
    sleep 0.05
  done
  rm -f "$out"
  if [ -z "$SERVER_ADDR" ]; then
    echo "the server ($bin) did not start listening" >&2
    stop_server
    return 1
  fi
}

# stop_server: stops the server start_server started (if any) and waits for it.
stop_server() {
  if [ -n "${SERVER_PID:-}" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
  fi
}
