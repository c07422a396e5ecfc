// Issue 10 (ICE-TCP and connect diagnostics) with real browsers on locked-down networks. One
// participant's Chromium runs in a network namespace created here (lossy_link.mjs: a veth pair to
// the host, host end 10.77.x.1, namespace end 10.77.x.2) whose outgoing traffic is filtered with
// nftables inside the namespace; the other participant's browser runs on the host, unfiltered.
// The server binds 0.0.0.0, so the namespace reaches it at 10.77.x.1 directly (no relay).
//
// 1. UDP dropped in the namespace, ICE-TCP on a port of its own: both browsers decode each
//    other's video, and the namespace's nominated candidate pair (getStats) is TCP to that port.
//    Before the filter goes on, the same join over UDP: the pair is UDP (UDP is preferred when
//    it works), and the time to first video over UDP and over ICE-TCP is printed side by side.
//    The host participant is Firefox ESR when it can run, else Chromium. (Firefox cannot be the
//    namespace participant: puppeteer drives it over a WebSocket on its loopback, which in the
//    namespace is not the host's.)
// 2. Only TCP to the web port allowed: media still flows, over ICE-TCP on the shared web port.
// 3. Only TCP to the web port allowed and ICE-TCP off: media cannot connect; the client shows the
//    server's diagnosis in its banner (screenshot in $ARTIFACTS_DIR) and the server logs one line
//    with the cause.
//
// 4. Firefox ESR on the same machine as a server bound to 127.0.0.1 (no EXTERNAL_IP): Firefox
//    offers no loopback candidates, so its media cannot connect; the banner and the log say so.
//
// 1-3 need root (network namespaces) and nft (nftables): skipped with the reason otherwise, unless
// VIDEOROOM_NETNS_REQUIRED=1 turns the skip into a failure.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import {
  CHROMIUM,
  artifactsDir,
  enterRoom,
  eventually,
  expectLiveTiles,
  freeTcpPort,
  launchChromium,
  launchFirefox,
  readTiles,
  startServer,
} from "./support.mjs";
import { linkedNamespaceOrReason } from "./lossy_link.mjs";

let link = null;
let unavailable = null;
const servers = [];
const browsers = [];

before(() => {
  let noNft = null;
  try {
    execFileSync("nft", ["--version"], { stdio: "ignore" });
  } catch {
    noNft = "nft (nftables) is not installed";
  }
  ({ link, unavailable } = linkedNamespaceOrReason(CHROMIUM, noNft));
});

after(async () => {
  for (const b of browsers) await b.close();
  for (const s of servers) await s.stop();
  link?.remove();
});

/**
 * Replaces the namespace's output filter with `rules` (nft statements; loopback always passes),
 * or removes it when `rules` is null.
 */
function filterNamespace(rules) {
  const nft = (args, input) =>
    execFileSync("ip", ["netns", "exec", link.ns, "nft", ...args], { input, stdio: ["pipe", "ignore", "pipe"] });
  try {
    nft(["delete", "table", "inet", "vrfilter"]);
  } catch {
    // no filter yet
  }
  if (rules === null) return;
  nft(
    ["-f", "-"],
    `table inet vrfilter {\n chain output {\n  type filter hook output priority 0; policy accept;\n  oif "lo" accept\n  ${rules}\n }\n}\n`,
  );
}

const DROP_UDP = "meta l4proto udp drop";
const onlyWebPort = (port) => `tcp dport ${port} accept\n  drop`;

async function start(env) {
  const server = await startServer({ env });
  servers.push(server);
  return server;
}

/** A Chromium inside the namespace that may use the server at `url` as a secure origin. */
async function chromiumInNamespace(url) {
  const b = await launchChromium({
    executablePath: link.chromiumWrapper,
    // getUserMedia needs a secure context; the namespace reaches the server on a plain IP.
    args: [`--unsafely-treat-insecure-origin-as-secure=${url}`],
  });
  browsers.push(b);
  return b;
}

/** The host participant: Firefox ESR if it launches here, else Chromium. */
async function hostBrowser() {
  try {
    const firefox = await launchFirefox();
    browsers.push(firefox);
    return firefox;
  } catch (e) {
    console.log(`Firefox ESR could not start (${e.message}); the host participant is Chromium`);
    const chromium = await launchChromium();
    browsers.push(chromium);
    return chromium;
  }
}

/** The page's nominated candidate pair (getStats): protocols, types and the remote address. */
async function nominatedPair(page) {
  return JSON.parse(
    await page.evaluate(async () => {
      const pc = window.videoroom?.webrtc?.connection;
      if (!pc) return "null";
      const report = await pc.getStats();
      let pair = null;
      report.forEach((s) => {
        if (s.type === "transport" && s.selectedCandidatePairId) pair = report.get(s.selectedCandidatePairId);
      });
      if (!pair) {
        report.forEach((s) => {
          if (s.type === "candidate-pair" && (s.selected || (s.nominated && s.state === "succeeded"))) pair = s;
        });
      }
      if (!pair) return "null";
      const local = report.get(pair.localCandidateId);
      const remote = report.get(pair.remoteCandidateId);
      return JSON.stringify({
        local: `${local?.candidateType}/${local?.protocol}${local?.tcpType ? ` ${local.tcpType}` : ""}`,
        remote: `${remote?.candidateType}/${remote?.protocol} ${remote?.address ?? remote?.ip}:${remote?.port}`,
        remoteProtocol: remote?.protocol,
        remotePort: remote?.port,
      });
    }),
  );
}

/** Milliseconds from `since` until `page` decodes a frame of `name`'s video (polled every 100 ms). */
async function firstFrame(page, name, since, timeoutMs = 45_000) {
  await eventually(
    `a decoded frame from ${name}`,
    async () => (await readTiles(page)).some((t) => t.label === name && (t.videoStats?.framesDecoded ?? 0) > 0),
    { timeoutMs, intervalMs: 100 },
  );
  return Date.now() - since;
}

/** Both join `room`; resolves with each one's time to the other's first video frame (ms). */
async function joinPair(room, inside, insideUrl, outside, outsideUrl) {
  const since = Date.now();
  await enterRoom(outside, outsideUrl, room, "Outside");
  await enterRoom(inside, insideUrl, room, "Inside");
  const [insideMs, outsideMs] = await Promise.all([
    firstFrame(inside.page, "Outside", since),
    firstFrame(outside.page, "Inside", since),
  ]);
  await expectLiveTiles(inside.page, ["Outside"], 30_000);
  await expectLiveTiles(outside.page, ["Inside"], 30_000);
  return { insideMs, outsideMs };
}

/**
 * Waits for the diagnosis banner on `page` (matching `text`), screenshots it into
 * $ARTIFACTS_DIR/ice_tcp_diagnosis_<cause>.png, and checks the server's one log line for the
 * peer of `room` and the metric of `cause`.
 */
async function expectDiagnosis(server, page, room, cause, text) {
  const banner = await eventually(
    "the diagnosis banner",
    () =>
      page.evaluate(() => {
        const el = document.getElementById("videochat-error");
        return el && el.style.display !== "none" && el.textContent ? el.textContent : null;
      }),
    { timeoutMs: 20_000, intervalMs: 250 },
  );
  assert.match(banner, /^Media cannot connect: /);
  assert.match(banner, text);
  const shot = join(artifactsDir(), `ice_tcp_diagnosis_${cause}.png`);
  await page.screenshot({ path: shot });
  console.log(`banner: ${banner}\nscreenshot: ${shot}`);
  const lines = server.log().split("\n").filter((l) => l.includes("media not connected"));
  assert.equal(lines.length, 1, `one diagnosis line:\n${lines.join("\n")}`);
  assert.match(lines[0], new RegExp(`room=${room} peer=\\S+ media not connected`));
  assert.match(lines[0], /checks received: udp 0 tcp 0/);
  assert.match(lines[0], new RegExp(`likely cause: ${cause} `));
  console.log(`server: ${lines[0]}`);
  const metrics = await (await fetch(`${server.url}/metrics`)).text();
  assert.match(metrics, new RegExp(`videoroom_media_connect_diagnoses_total\\{cause="${cause}"\\} 1`));
}

test(
  "a Chromium whose UDP is dropped exchanges video with a browser outside over ICE-TCP, and over UDP while UDP works",
  { timeout: 180_000 },
  async (t) => {
    if (unavailable) return t.skip(`skipped: ${unavailable}`);
    const iceTcpPort = await freeTcpPort();
    const server = await start({ ICE_TCP_PORT: String(iceTcpPort) });
    const insideUrl = `http://${link.hostIp}:${server.port}`;
    const outside = await hostBrowser();

    filterNamespace(null);
    let inside = await chromiumInNamespace(insideUrl);
    const udp = await joinPair("icetcp-udp", inside, insideUrl, outside, server.url);
    const udpPair = await nominatedPair(inside.page);
    assert.equal(udpPair?.remoteProtocol, "udp", `UDP is nominated while it works: ${JSON.stringify(udpPair)}`);
    await inside.close();
    await outside.page.goto("about:blank");

    filterNamespace(DROP_UDP);
    inside = await chromiumInNamespace(insideUrl);
    const tcp = await joinPair("icetcp-tcp", inside, insideUrl, outside, server.url);
    const tcpPair = await nominatedPair(inside.page);
    assert.equal(tcpPair?.remoteProtocol, "tcp", `the nominated pair is TCP: ${JSON.stringify(tcpPair)}`);
    assert.equal(tcpPair.remotePort, iceTcpPort, "to the ICE-TCP port");
    const outsidePair = await nominatedPair(outside.page);

    console.log(`outside browser: ${outside.kind ?? "chromium"}`);
    console.log("time to first video (ms, from the outside participant's join)  | over UDP | over ICE-TCP");
    console.log(`inside (namespace Chromium) decodes Outside                     | ${udp.insideMs} | ${tcp.insideMs}`);
    console.log(`outside decodes Inside                                          | ${udp.outsideMs} | ${tcp.outsideMs}`);
    console.log(`nominated pair inside, UDP phase: ${udpPair.local} -> ${udpPair.remote}`);
    console.log(`nominated pair inside, UDP dropped: ${tcpPair.local} -> ${tcpPair.remote}`);
    console.log(`nominated pair outside: ${outsidePair?.local} -> ${outsidePair?.remote}`);
    await inside.close();
    await outside.page.goto("about:blank");
  },
);

test(
  "with only TCP to the web port allowed a Chromium gets media over ICE-TCP on the shared web port",
  { timeout: 120_000 },
  async (t) => {
    if (unavailable) return t.skip(`skipped: ${unavailable}`);
    const server = await start({});
    const insideUrl = `http://${link.hostIp}:${server.port}`;
    filterNamespace(onlyWebPort(server.port));
    const outside = await launchChromium();
    browsers.push(outside);
    const inside = await chromiumInNamespace(insideUrl);
    const times = await joinPair("icetcp-web-port", inside, insideUrl, outside, server.url);
    const pair = await nominatedPair(inside.page);
    assert.equal(pair?.remoteProtocol, "tcp", `the nominated pair is TCP: ${JSON.stringify(pair)}`);
    assert.equal(pair.remotePort, server.port, "to the web port");
    console.log(`web port only: ${pair.local} -> ${pair.remote}; first video inside ${times.insideMs} ms, outside ${times.outsideMs} ms`);
    await inside.close();
    await outside.close();
  },
);

test(
  "when media cannot connect the client shows the server's diagnosis and the server logs why",
  { timeout: 120_000 },
  async (t) => {
    if (unavailable) return t.skip(`skipped: ${unavailable}`);
    const server = await start({ ICE_TCP_PORT: "0" });
    const insideUrl = `http://${link.hostIp}:${server.port}`;
    filterNamespace(onlyWebPort(server.port));
    const outside = await launchChromium();
    browsers.push(outside);
    const inside = await chromiumInNamespace(insideUrl);
    await enterRoom(outside, server.url, "icetcp-blocked", "Outside");
    await enterRoom(inside, insideUrl, "icetcp-blocked", "Inside");
    await expectDiagnosis(server, inside.page, "icetcp-blocked", "blocked", /this network seems to block the media ports/);
    await inside.close();
    await outside.close();
  },
);

test(
  "Firefox against a server bound to 127.0.0.1 is told that the server listens only on loopback",
  { timeout: 90_000 },
  async (t) => {
    let firefox;
    try {
      firefox = await launchFirefox();
    } catch (e) {
      return t.skip(`skipped: Firefox ESR cannot start here (${e.message})`);
    }
    browsers.push(firefox);
    const server = await start({ BIND_ADDRESS: "127.0.0.1", EXTERNAL_IP: null });
    await enterRoom(firefox, server.url, "icetcp-loopback", "Firefox");
    await expectDiagnosis(server, firefox.page, "icetcp-loopback", "loopback_server", /listens only on a loopback address/);
    await firefox.close();
  },
);
