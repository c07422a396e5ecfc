// Issue 12's network fault: one participant ("Lossy") sits behind a link with 5% UDP loss and
// 100 ms delay in each direction (so +200 ms round trip), the other ("Clean") does not. Both
// publish camera and microphone (Chromium's fake devices) and subscribe to each other through the
// real server ($VIDEOROOM_BIN). The same call is measured in phases, side by side in one run: a
// baseline through the same path with the impairment off, then the impairment on, then a 4 s
// outage of all RTP to Lossy (all else still 5%/100 ms), so that Lossy must ask for a keyframe. The video must keep decoding in both directions through NACK/RTX under the loss, and
// resume after the outage through the keyframe request the server passes on; the figures read from
// the browsers' getStats (frames decoded and dropped, freezes, NACKs, PLIs, losses, jitter,
// retransmissions) are printed as a table and written to $ARTIFACTS_DIR/network_loss.json.
//
// Topology (lossy_link.mjs): Lossy's Chromium runs in a network namespace created here, joined to
// the host by a veth pair (host 10.77.x.1, namespace 10.77.x.2). The server binds 127.0.0.1 and
// advertises 10.77.x.1 as its extra candidate (EXTERNAL_IP); a relay on 10.77.x.1 forwards the
// namespace's UDP to the server, dropping and delaying it in both directions (only media is
// impaired; HTTP and the WebSocket are proxied as they are). Clean's Chromium on the host reaches
// the server directly on 127.0.0.1 (the relay refuses datagrams not from the namespace).
// A relay, not `tc netem`: netem is a kernel module this project's CI kernel does not have.
//
// Needs root (network namespaces): skipped with the reason otherwise, unless
// VIDEOROOM_NETNS_REQUIRED=1, which turns the skip into a failure (set it where the test must run;
// run_all.sh does not, since some CI containers cannot make a namespace). NETWORK_LOSS_PHASE_SECS (default 25) is the length of each measured phase.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import {
  CHROMIUM,
  artifactsDir,
  enterRoom,
  expectLiveTiles,
  launchChromium,
  participantsText,
  startServer,
} from "./support.mjs";
import { linkedNamespaceOrReason, startLossyRelay } from "./lossy_link.mjs";

const LOSS_PERCENT = 5;
const DELAY_MS = 100;
const PHASE_MS = Number(process.env.NETWORK_LOSS_PHASE_SECS ?? 25) * 1000;
const WINDOW_MS = 5000;
const OUTAGE_MS = 4000;
const OUTAGE_PHASE_MS = 15_000;
const SEED = Number(process.env.NETWORK_LOSS_SEED ?? 12);

let link = null;
let unavailable = null;
let server;
let relay;
const browsers = [];

before(async () => {
  ({ link, unavailable } = linkedNamespaceOrReason(CHROMIUM));
});

after(async () => {
  for (const b of browsers) await b.close();
  await server?.stop();
  relay?.close();
  link?.remove();
});

/** The getStats counters compared between phases (read in the page, differenced here). */
const COUNTERS = {
  inbound: [
    "framesDecoded",
    "framesDropped",
    "keyFramesDecoded",
    "freezeCount",
    "totalFreezesDuration",
    "nackCount",
    "pliCount",
    "firCount",
    "packetsLost",
    "packetsReceived",
    "retransmittedPacketsReceived",
  ],
  outbound: ["framesEncoded", "keyFramesEncoded", "packetsSent", "retransmittedPacketsSent", "nackCount", "pliCount", "firCount"],
};

/** getStats of the page's connection: video inbound/outbound counters and the selected pair. */
function readStats(page) {
  return page.evaluate(async (counters) => {
    const pc = window.videoroom?.webrtc?.connection;
    if (!pc) return null;
    const report = await pc.getStats();
    const inbound = [];
    const outbound = [];
    let pair = null;
    report.forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") inbound.push(s);
      if (s.type === "outbound-rtp" && s.kind === "video") outbound.push(s);
      if (s.type === "transport" && s.selectedCandidatePairId) {
        const p = report.get(s.selectedCandidatePairId);
        const remote = p && report.get(p.remoteCandidateId);
        pair = p && {
          rtt: p.currentRoundTripTime ?? null,
          remote: remote ? `${remote.address ?? remote.ip}:${remote.port}` : null,
        };
      }
    });
    const sum = (list, key) => list.reduce((n, s) => n + (s[key] ?? 0), 0);
    const pick = (list, keys) => Object.fromEntries(keys.map((k) => [k, sum(list, k)]));
    return {
      pair,
      inboundCount: inbound.length,
      inbound: {
        ...pick(inbound, counters.inbound),
        jitter: inbound.length ? Math.max(...inbound.map((s) => s.jitter ?? 0)) : 0,
        retransmitStat: inbound.some((s) => "retransmittedPacketsReceived" in s),
      },
      outbound: {
        ...pick(outbound, counters.outbound),
        targetBitrate: sum(outbound, "targetBitrate"),
      },
    };
  }, COUNTERS);
}

function delta(end, start, side) {
  return Object.fromEntries(COUNTERS[side].map((k) => [k, Number((end[side][k] - start[side][k]).toFixed(3))]));
}

/**
 * Measures one phase of `ms`: both pages' stats at the start and end, framesDecoded of each
 * direction every WINDOW_MS, jitter and Lossy's round trip at each sample. The two directions:
 * `uplink` is Lossy's video as Clean decodes it (the loss is on the publisher's leg), `downlink`
 * Clean's video as Lossy decodes it (the loss is on the subscriber's leg).
 */
async function measurePhase(label, name, lossy, clean, ms) {
  const impairment = relay.settings();
  const relayBefore = JSON.parse(JSON.stringify(relay.counters));
  const start = { lossy: await readStats(lossy.page), clean: await readStats(clean.page) };
  const began = Date.now();
  const windows = { uplink: [], downlink: [] };
  const jitter = { uplink: [], downlink: [] };
  const rtt = [];
  let prev = start;
  let last = start;
  while (Date.now() - began < ms) {
    await sleep(Math.min(WINDOW_MS, ms - (Date.now() - began)));
    last = { lossy: await readStats(lossy.page), clean: await readStats(clean.page) };
    windows.uplink.push(last.clean.inbound.framesDecoded - prev.clean.inbound.framesDecoded);
    windows.downlink.push(last.lossy.inbound.framesDecoded - prev.lossy.inbound.framesDecoded);
    jitter.uplink.push(last.clean.inbound.jitter);
    jitter.downlink.push(last.lossy.inbound.jitter);
    if (last.lossy.pair?.rtt != null) rtt.push(last.lossy.pair.rtt);
    prev = last;
  }
  const secs = (Date.now() - began) / 1000;
  const direction = (receiver, sender, dir) => {
    const inbound = delta(last[receiver], start[receiver], "inbound");
    return {
      receiver: { ...inbound, fps: Number((inbound.framesDecoded / secs).toFixed(1)) },
      sender: delta(last[sender], start[sender], "outbound"),
      jitterMeanMs: Number(((1000 * jitter[dir].reduce((a, b) => a + b, 0)) / Math.max(1, jitter[dir].length)).toFixed(1)),
      jitterMaxMs: Number((1000 * Math.max(0, ...jitter[dir])).toFixed(1)),
      framesDecodedPerWindow: windows[dir],
      senderTargetBitrateEnd: last[sender].outbound.targetBitrate,
    };
  };
  const relayDelta = (dir) => ({
    forwarded: relay.counters[dir].forwarded - relayBefore[dir].forwarded,
    dropped: relay.counters[dir].dropped - relayBefore[dir].dropped,
  });
  return {
    label,
    phase: name,
    impairment,
    seconds: Number(secs.toFixed(1)),
    uplink: direction("clean", "lossy", "uplink"),
    downlink: direction("lossy", "clean", "downlink"),
    lossyRttMeanMs: rtt.length ? Number(((1000 * rtt.reduce((a, b) => a + b, 0)) / rtt.length).toFixed(0)) : null,
    relay: { up: relayDelta("up"), down: relayDelta("down") },
    pairs: { lossy: last.lossy.pair, clean: last.clean.pair },
    retransmitStat: last.lossy.inbound.retransmitStat,
  };
}

function printTable(phases) {
  const rows = [];
  const row = (label, get) => {
    rows.push([label, ...phases.flatMap((p) => [get(p, "uplink"), get(p, "downlink")]).map(String)]);
  };
  row("receiver framesDecoded", (p, d) => p[d].receiver.framesDecoded);
  row("receiver fps", (p, d) => p[d].receiver.fps);
  row("receiver framesDropped", (p, d) => p[d].receiver.framesDropped);
  row("receiver keyFramesDecoded", (p, d) => p[d].receiver.keyFramesDecoded);
  row("receiver freezeCount", (p, d) => p[d].receiver.freezeCount);
  row("receiver totalFreezesDuration s", (p, d) => p[d].receiver.totalFreezesDuration);
  row("receiver nackCount (sent)", (p, d) => p[d].receiver.nackCount);
  row("receiver pliCount (sent)", (p, d) => p[d].receiver.pliCount);
  row("receiver packetsReceived", (p, d) => p[d].receiver.packetsReceived);
  row("receiver packetsLost", (p, d) => p[d].receiver.packetsLost);
  row("receiver retransmittedPacketsReceived", (p, d) => p[d].receiver.retransmittedPacketsReceived);
  row("receiver jitter mean/max ms", (p, d) => `${p[d].jitterMeanMs}/${p[d].jitterMaxMs}`);
  row("sender packetsSent", (p, d) => p[d].sender.packetsSent);
  row("sender retransmittedPacketsSent", (p, d) => p[d].sender.retransmittedPacketsSent);
  row("sender nackCount (received)", (p, d) => p[d].sender.nackCount);
  row("sender pliCount (received)", (p, d) => p[d].sender.pliCount);
  row("sender keyFramesEncoded", (p, d) => p[d].sender.keyFramesEncoded);
  row("sender targetBitrate at end", (p, d) => p[d].senderTargetBitrateEnd);
  row("relay dropped/forwarded (up)", (p) => `${p.relay.up.dropped}/${p.relay.up.forwarded}`);
  row("relay dropped/forwarded (down)", (p) => `${p.relay.down.dropped}/${p.relay.down.forwarded}`);
  row("Lossy's RTT to the server ms", (p) => p.lossyRttMeanMs);
  const head = ["", ...phases.flatMap((p) => [`${p.label} Lossy→Clean`, `${p.label} Clean→Lossy`])];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(" | ");
  console.log([line(head), widths.map((w) => "-".repeat(w)).join("-|-"), ...rows.map(line)].join("\n"));
}

test(
  "with 5% loss and 100 ms delay on one participant's link the video keeps decoding both ways through NACK and RTX, and a downlink outage ends with a keyframe request passed to the publisher",
  { timeout: 150_000 },
  async (t) => {
    if (unavailable) {
      t.skip(`skipped: ${unavailable}`);
      return;
    }
    server = await startServer({ env: { BIND_ADDRESS: "127.0.0.1", EXTERNAL_IP: link.hostIp } });
    relay = await startLossyRelay({
      listenHost: link.hostIp,
      upstreamHost: "127.0.0.1",
      udpPort: server.udpPort,
      tcpPort: server.port,
      allowFrom: link.nsIp,
      seed: SEED,
    });
    const lossyUrl = `http://${link.hostIp}:${server.port}`;
    const clean = await launchChromium();
    browsers.push(clean);
    const lossy = await launchChromium({
      executablePath: link.chromiumWrapper,
      // getUserMedia needs a secure context; the namespace reaches the server on a plain IP.
      args: [`--unsafely-treat-insecure-origin-as-secure=${lossyUrl}`],
    });
    browsers.push(lossy);
    await enterRoom(clean, server.url, "lossy-link", "Clean");
    await enterRoom(lossy, lossyUrl, "lossy-link", "Lossy");
    await expectLiveTiles(clean.page, ["Lossy"], 45_000);
    await expectLiveTiles(lossy.page, ["Clean"], 45_000);

    // The topology is what the test claims: Lossy's media goes through the relay, Clean's not.
    const relayAddr = `${link.hostIp}:${server.udpPort}`;
    const lossyStats = await readStats(lossy.page);
    const cleanStats = await readStats(clean.page);
    assert.equal(lossyStats.pair?.remote, relayAddr, "Lossy's selected candidate pair goes through the relay");
    assert.notEqual(cleanStats.pair?.remote, relayAddr, "Clean's selected candidate pair bypasses the relay");
    assert.equal(lossyStats.inboundCount, 1, "Lossy receives one video");
    assert.equal(cleanStats.inboundCount, 1, "Clean receives one video");

    const lossySettings = { lossPercent: LOSS_PERCENT, delayMs: DELAY_MS };
    const baseline = await measurePhase("baseline", "no loss, no delay (same relayed path)", lossy, clean, PHASE_MS);
    relay.impair(lossySettings);
    const impaired = await measurePhase("5%/100ms", `loss ${LOSS_PERCENT}% delay ${DELAY_MS} ms each way`, lossy, clean, PHASE_MS);
    // Then every RTP packet to Lossy is lost for OUTAGE_MS: longer than Chromium waits for a
    // frame before it asks for a keyframe, so recovery needs the server to pass that request on
    // to Clean. RTCP, STUN and Lossy's own sending stay at 5%/100 ms: a total outage would also
    // starve Lossy's congestion control of feedback and stall its publishing (seen: 5-10 s),
    // which is the browser's doing, not the server's, and would blur what is measured here.
    relay.impair({ up: lossySettings, down: { ...lossySettings, dropMedia: true } });
    const restore = setTimeout(() => relay.impair(lossySettings), OUTAGE_MS);
    let outage;
    try {
      outage = await measurePhase(
        "outage",
        `all RTP to Lossy lost for ${OUTAGE_MS / 1000} s (RTCP, STUN and Lossy's sending at 5%/100 ms), then 5%/100 ms again`,
        lossy,
        clean,
        OUTAGE_PHASE_MS,
      );
    } finally {
      clearTimeout(restore);
    }
    relay.impair({ lossPercent: 0, delayMs: 0 });
    const phases = [baseline, impaired, outage];

    printTable(phases);
    const out = join(artifactsDir(), "network_loss.json");
    writeFileSync(
      out,
      JSON.stringify(
        {
          description:
            "uplink = Lossy's video as Clean decodes it (loss on the publisher's leg); downlink = Clean's video as Lossy decodes it (loss on the subscriber's leg); receiver = inbound-rtp deltas, sender = outbound-rtp deltas over the phase",
          lossPercent: LOSS_PERCENT,
          delayMsEachWay: DELAY_MS,
          seed: SEED,
          chromium: await lossy.ctx.browser()?.version?.(),
          outageMs: OUTAGE_MS,
          phases,
        },
        null,
        2,
      ),
    );
    console.log(`figures written to ${out}`);

    // The impairment really applied: datagrams were dropped both ways, the round trip grew.
    for (const dir of ["up", "down"]) assert.ok(impaired.relay[dir].dropped > 0, `relay dropped ${dir}stream datagrams`);
    assert.ok(impaired.lossyRttMeanMs >= 150, `Lossy's round trip includes the 2 × ${DELAY_MS} ms delay (${impaired.lossyRttMeanMs} ms)`);
    assert.equal(impaired.pairs.lossy?.remote, relayAddr, "Lossy stayed on the relayed path");

    // Media keeps decoding both ways, in every window of the lossy phase, at a usable rate.
    for (const dir of ["uplink", "downlink"]) {
      const p = impaired[dir];
      assert.ok(
        p.framesDecodedPerWindow.every((n) => n > 0),
        `${dir}: frames decoded in every ${WINDOW_MS / 1000} s window (${p.framesDecodedPerWindow})`,
      );
      assert.ok(p.receiver.fps >= 5, `${dir}: at least 5 frames/s decoded under loss (${p.receiver.fps})`);
    }
    // Publisher's leg: the server NACKed the lost packets and Lossy's browser retransmitted them.
    assert.ok(impaired.uplink.sender.nackCount > 0, "the server sent NACKs to the lossy publisher");
    assert.ok(impaired.uplink.sender.retransmittedPacketsSent > 0, "the lossy publisher retransmitted (RTX)");
    // Subscriber's leg: Lossy NACKed, and the server answered with retransmissions.
    assert.ok(impaired.downlink.receiver.nackCount > 0, "the lossy subscriber sent NACKs");
    assert.ok(impaired.retransmitStat, "Chromium reports retransmittedPacketsReceived");
    assert.ok(impaired.downlink.receiver.retransmittedPacketsReceived > 0, "the server answered the lossy subscriber's NACKs with retransmissions");

    // The downlink outage: Lossy asked for a keyframe, the server passed the request on to Clean,
    // Clean's keyframe reached Lossy, and decoding resumed (every window after the outage's).
    const down = outage.downlink;
    assert.ok(down.receiver.pliCount + down.receiver.firCount > 0, "Lossy asked for a keyframe during the outage");
    assert.ok(down.sender.pliCount + down.sender.firCount > 0, "the server passed the keyframe request on to Clean");
    assert.ok(down.sender.keyFramesEncoded > 0, "Clean encoded a keyframe");
    assert.ok(down.receiver.keyFramesDecoded > 0, "Lossy decoded a keyframe after the outage");
    const w = down.framesDecodedPerWindow;
    assert.ok(
      w.slice(1).every((n) => n > 0) && w.at(-1) >= (5 * WINDOW_MS) / 1000,
      `downlink: decoding resumed after the outage, at least 5 frames/s in the last window (${w})`,
    );
    // Lossy's publishing is not touched by its downlink outage.
    assert.ok(
      outage.uplink.framesDecodedPerWindow.every((n) => n > 0) && outage.uplink.receiver.fps >= 5,
      `uplink: Lossy's video kept decoding at Clean through the outage (${outage.uplink.framesDecodedPerWindow})`,
    );

    // The call did not end: both are still in the room with live media after the loss.
    await expectLiveTiles(clean.page, ["Lossy"], 20_000);
    await expectLiveTiles(lossy.page, ["Clean"], 20_000);
    for (const page of [clean.page, lossy.page]) {
      const list = await participantsText(page);
      assert.ok(list.includes("Clean") && list.includes("Lossy"), `both still listed: ${list}`);
    }
  },
);
