// A lossy link for one participant of a browser test: a network namespace with a veth pair to the
// host (the participant's browser runs inside it), and a UDP relay on the host end of the veth
// that drops and delays datagrams in both directions, as `tc netem loss P% delay D ms` on both
// ends of the veth would. A relay rather than netem because netem (sch_netem) is a kernel module
// that many CI kernels and microVMs do not ship (this project's CI machine: "Specified qdisc kind
// is unknown"); network namespaces and veth pairs they all have. The loss is drawn from a seeded
// generator, so a run's loss pattern is reproducible.

import { execFileSync } from "node:child_process";
import { createSocket } from "node:dgram";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startTcpProxy } from "./support.mjs";

const NS_PREFIX = "vrloss";

function ip(...args) {
  return execFileSync("ip", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code === "EPERM";
  }
}

/**
 * Why this machine cannot build the lossy link (not root, no `ip`), or null if it may: the
 * namespace itself is only tried by `createLinkedNamespace`.
 */
export function namespaceUnavailableReason() {
  if (process.getuid?.() !== 0) return "needs root to create a network namespace (ip netns add)";
  try {
    ip("-V");
  } catch {
    return "iproute2 (`ip`) is not installed";
  }
  return null;
}

/** Deletes namespaces (and their veths) left by earlier runs whose process is gone (killed runs). */
function removeStale() {
  for (const line of ip("netns", "list").split("\n")) {
    const m = line.match(new RegExp(`^(${NS_PREFIX}(\\d+))\\b`));
    if (m && !alive(Number(m[2]))) {
      try {
        ip("netns", "del", m[1]);
      } catch {
        // deleted meanwhile
      }
    }
  }
  for (const line of ip("-o", "link", "show").split("\n")) {
    const m = line.match(/^\d+:\s+(vrl(\d+)h)[@:]/);
    if (m && !alive(Number(m[2]))) {
      try {
        ip("link", "del", m[1]);
      } catch {
        // deleted meanwhile
      }
    }
  }
}

/**
 * Creates namespace `vrloss<pid>` joined to the host by a veth pair on a /24 of 10.77.x.0 that no
 * host interface uses: host end `.1`, namespace end `.2` (plus `lo` up). Returns the addresses,
 * a Chromium wrapper that runs Chromium inside the namespace, and `remove()` (idempotent; also
 * run at process exit so a failed test leaves nothing behind). Throws if the kernel refuses.
 */
export function createLinkedNamespace(chromium) {
  removeStale();
  const used = ip("-4", "-o", "addr", "show");
  let subnet = null;
  for (let i = 0; i < 256 && !subnet; i++) {
    const x = (process.pid + i) % 256;
    if (!used.includes(` 10.77.${x}.`)) subnet = `10.77.${x}`;
  }
  if (!subnet) throw new Error("no free 10.77.x.0/24 subnet");
  const ns = `${NS_PREFIX}${process.pid}`;
  const hostIf = `vrl${process.pid}h`;
  const nsIf = `vrl${process.pid}n`;
  const hostIp = `${subnet}.1`;
  const nsIp = `${subnet}.2`;
  const dir = mkdtempSync(join(tmpdir(), "videoroom-netns-"));
  let removed = false;
  const remove = () => {
    if (removed) return;
    removed = true;
    process.off("exit", remove);
    // Deleting the namespace destroys its veth end, and with it the host end.
    for (const args of [["netns", "del", ns], ["link", "del", hostIf]]) {
      try {
        ip(...args);
      } catch {
        // not created, or already gone with the namespace
      }
    }
    rmSync(dir, { recursive: true, force: true });
  };
  process.on("exit", remove);
  try {
    ip("netns", "add", ns);
    ip("link", "add", hostIf, "type", "veth", "peer", "name", nsIf);
    ip("link", "set", nsIf, "netns", ns);
    ip("addr", "add", `${hostIp}/24`, "dev", hostIf);
    ip("link", "set", hostIf, "up");
    ip("-n", ns, "addr", "add", `${nsIp}/24`, "dev", nsIf);
    ip("-n", ns, "link", "set", nsIf, "up");
    ip("-n", ns, "link", "set", "lo", "up");
  } catch (e) {
    remove();
    throw new Error(`cannot create network namespace ${ns}: ${String(e.stderr || e.message).trim()}`);
  }
  const wrapper = join(dir, "chromium-in-netns");
  writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec '${ns}' '${chromium}' "$@"\n`);
  chmodSync(wrapper, 0o755);
  return { ns, hostIf, nsIf, hostIp, nsIp, chromiumWrapper: wrapper, remove };
}

/**
 * The linked namespace of a test file (`createLinkedNamespace`), or why there is none:
 * `{ link, unavailable }`, one of them null. `otherReason` (e.g. a missing tool) counts as a
 * reason too. With VIDEOROOM_NETNS_REQUIRED=1 a missing namespace throws instead.
 */
export function linkedNamespaceOrReason(chromium, otherReason = null) {
  let unavailable = namespaceUnavailableReason() ?? otherReason;
  let link = null;
  if (!unavailable) {
    try {
      link = createLinkedNamespace(chromium);
    } catch (e) {
      unavailable = e.message;
    }
  }
  if (unavailable && process.env.VIDEOROOM_NETNS_REQUIRED === "1") {
    throw new Error(`VIDEOROOM_NETNS_REQUIRED=1 but the namespace cannot be built: ${unavailable}`);
  }
  return { link, unavailable };
}

/** mulberry32: a small seeded generator of floats in [0, 1). */
function seeded(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Whether a datagram is (S)RTP: version 2 in the first byte, and a second byte outside RTCP's
 * packet types 192-223 (RFC 5761's demultiplexing; STUN starts with 0-3, DTLS with 20-63).
 */
function isRtp(msg) {
  return msg.length >= 12 && msg[0] >> 6 === 2 && !(msg[1] >= 192 && msg[1] <= 223);
}

/** Most client flows the relay keeps (each is one upstream socket); more are dropped. */
const MAX_FLOWS = 64;

/**
 * The impaired link between the namespace and the server: listens on `listenHost:udpPort` (the
 * address the server advertises as its extra candidate) and `listenHost:tcpPort`, accepts
 * datagrams only from `allowFrom` (the namespace's address, so a browser on the host cannot take
 * this path), and forwards each client flow from its own socket to `upstreamHost:udpPort`, where
 * the server listens. TCP (HTTP, WebSocket) is proxied unimpaired: the fault is on the media.
 * `impair({ lossPercent, delayMs })` applies to both directions from then on; `impair({ up, down })`
 * sets each direction (`up`: namespace to server) on its own, where `dropMedia: true` also drops
 * every RTP packet (audio and video) while RTCP, STUN and DTLS still pass at `lossPercent`.
 * `rebind()` moves every flow to a new source port (a NAT rebinding); `tcp.cut()` cuts the TCP path.
 */
export async function startLossyRelay({ listenHost, upstreamHost, udpPort, tcpPort, allowFrom, seed = 1 }) {
  const random = seeded(seed);
  const none = { lossPercent: 0, delayMs: 0, dropMedia: false };
  const impairment = { up: none, down: none };
  const counters = {
    up: { forwarded: 0, dropped: 0 }, // namespace -> server
    down: { forwarded: 0, dropped: 0 }, // server -> namespace
    refused: 0, // datagrams from elsewhere, or beyond MAX_FLOWS
  };
  const pending = new Set();
  const pass = (dir, msg, send) => {
    const { lossPercent, delayMs, dropMedia } = impairment[dir];
    if ((dropMedia && isRtp(msg)) || (lossPercent > 0 && random() * 100 < lossPercent)) {
      counters[dir].dropped++;
      return;
    }
    counters[dir].forwarded++;
    if (delayMs <= 0) return send();
    const timer = setTimeout(() => {
      pending.delete(timer);
      send();
    }, delayMs);
    pending.add(timer);
  };

  const front = createSocket("udp4");
  /** Client address:port -> { from, up }: `up` is the flow's own socket towards the server. */
  const flows = new Map();
  /** A new socket on a new port towards the server for the client at `from`. */
  const openUpstream = (from) => {
    const up = createSocket("udp4");
    up.on("message", (reply) => pass("down", reply, () => front.send(reply, from.port, from.address, () => {})));
    up.on("error", () => {});
    up.bind(0, upstreamHost);
    return up;
  };
  front.on("message", (msg, from) => {
    if (from.address !== allowFrom) {
      counters.refused++;
      return;
    }
    const key = `${from.address}:${from.port}`;
    let flow = flows.get(key);
    if (!flow) {
      if (flows.size >= MAX_FLOWS) {
        counters.refused++;
        return;
      }
      flow = { from, up: openUpstream(from) };
      flows.set(key, flow);
    }
    pass("up", msg, () => flow.up.send(msg, udpPort, upstreamHost, () => {}));
  });
  front.on("error", () => {});
  await new Promise((ok, fail) => {
    front.once("error", fail);
    front.bind(udpPort, listenHost, ok);
  });

  const tcp = await startTcpProxy({ listenHost, port: tcpPort, upstreamHost, upstreamPort: tcpPort });

  return {
    counters,
    seed,
    impair(settings) {
      const one = (d) => ({ lossPercent: d?.lossPercent ?? 0, delayMs: d?.delayMs ?? 0, dropMedia: !!d?.dropMedia });
      const perDirection = "up" in settings || "down" in settings;
      impairment.up = one(perDirection ? settings.up : settings);
      impairment.down = one(perDirection ? settings.down : settings);
    },
    settings: () => JSON.parse(JSON.stringify(impairment)),
    flows: () => flows.size,
    /** The ports the flows' sockets towards the server send from (null: not bound yet). */
    upstreamPorts: () =>
      [...flows.values()].map((f) => {
        try {
          return f.up.address().port;
        } catch {
          return null;
        }
      }),
    /**
     * Moves every flow to a new socket, hence a new source port, as a NAT that lost its mapping
     * would: the server sees the same client from a new address. The old sockets are closed.
     */
    rebind() {
      for (const flow of flows.values()) {
        flow.up.close();
        flow.up = openUpstream(flow.from);
      }
    },
    /** The TCP path (HTTP, WebSocket): `tcp.cut()` / `tcp.restore()` as startTcpProxy's. */
    tcp,
    close() {
      for (const t of pending) clearTimeout(t);
      pending.clear();
      for (const f of flows.values()) f.up.close();
      flows.clear();
      try {
        front.close();
      } catch {
        // already closed
      }
      tcp.close();
    },
  };
}
