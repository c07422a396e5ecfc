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

# start_janus PORT IFACE: starts Debian's Janus (package `janus`) with only its VideoRoom plugin
# and its WebSocket transport on 127.0.0.1:PORT, ICE on interface IFACE only (Janus never gathers
# loopback candidates: give it the interface of a local address, whose traffic the kernel delivers
# locally just the same), pinned to $SERVER_CPUS when set, its log in $SERVER_LOG; sets SERVER_PID
# and SERVER_ADDR once it listens.
start_janus() {
  local port=$1 iface=$2
  local lib=/usr/lib/x86_64-linux-gnu/janus
  local dir
  dir=$(mktemp -d)
  local all_plugins="" all_transports="" all_events="" all_loggers=""
  all_plugins=$(cd "$lib/plugins" && ls *.so | grep -v videoroom | paste -sd, -)
  all_transports=$(cd "$lib/transports" && ls *.so | grep -v websockets | paste -sd, -)
  all_events=$(cd "$lib/events" && ls *.so | paste -sd, -)
  all_loggers=$(cd "$lib/loggers" && ls *.so | paste -sd, -)
  cat >"$dir/janus.jcfg" <<JCFG
general: {
  configs_folder = "$dir"
  plugins_folder = "$lib/plugins"
  transports_folder = "$lib/transports"
  events_folder = "$lib/events"
  loggers_folder = "$lib/loggers"
  debug_level = 3
  session_timeout = 120
}
media: { rtp_port_range = "20000-60000" }
nat: { ice_enforce_list = "$iface" ignore_mdns = true nice_debug = false }
plugins: { disable = "$all_plugins" }
transports: { disable = "$all_transports" }
events: { broadcast = false disable = "$all_events" }
loggers: { disable = "$all_loggers" }
JCFG
  cat >"$dir/janus.transport.websockets.jcfg" <<JCFG
general: { json = "compact" ws = true ws_port = $port ws_ip = "127.0.0.1" wss = false }
admin: { admin_ws = false admin_wss = false }
JCFG
  echo 'general: { }' >"$dir/janus.plugin.videoroom.jcfg"
  local pin=()
  if [ -n "${SERVER_CPUS:-}" ]; then pin=(taskset -c "$SERVER_CPUS"); fi
  "${pin[@]}" janus -C "$dir/janus.jcfg" -F "$dir" >"${SERVER_LOG:-/dev/null}" 2>&1 </dev/null &
  SERVER_PID=$!
  SERVER_ADDR=""
  for _ in $(seq 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then SERVER_ADDR="127.0.0.1:$port"; break; fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
    sleep 0.05
  done
  if [ -z "$SERVER_ADDR" ]; then
    echo "janus did not start listening on $port" >&2
    stop_server
    return 1
  fi
}

# local_ipv4: the first IPv4 address of a non-loopback interface, and its interface ("ADDR IFACE").
local_ipv4() {
  ip -o -4 addr show scope global | awk '{split($4, a, "/"); print a[1], $2; exit}'
}
