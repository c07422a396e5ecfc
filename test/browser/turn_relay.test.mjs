// Media through the embedded TURN server, as a browser on a locked-down network gets it: two
// Chromiums join a room with `?relay=udp|tcp|tls` (our client then uses only that TURN transport
// of the join reply, with `iceTransportPolicy: "relay"`), both decode each other's video, and
// getStats shows that the selected candidate pair's local candidate is a relay candidate of
// that protocol. One server (HTTPS with a self-signed certificate, `--turn`) serves all four
// runs, the first without TURN (UDP straight to the SFU); the time from opening the room to the
// first decoded frame of the other is printed side by side (no timing is asserted).
// Uses $VIDEOROOM_BIN (support.mjs).

import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { artifactsDir, expectLiveTiles, httpsGetText, freeTcpPort, readTiles, serverAndBrowsers, waitInPage } from "./support.mjs";
import { setTimeout as sleep } from "node:timers/promises";
import { connect as tlsConnect } from "node:tls";
import { createHash } from "node:crypto";

// TURN over UDP and over TCP share this port number (a free TCP port; UDP ports are rarely taken).
const turnPort = await freeTcpPort();
const tlsPort = await freeTcpPort();
const server = serverAndBrowsers({
  https: true,
  env: {
    TLS_SELF_SIGNED: "true",
    TURN: "true",
    TURN_PORT: String(turnPort),
    TURN_TLS_PORT: String(tlsPort),
  },
});
/**
 * Chromium flags that trust the server's self-signed certificate for the page and for TURN over
 * TLS. `--ignore-certificate-errors` alone lets the page load but not TURN/TLS (Chromium's TURN
 * client verifies the certificate and closes the handshake); `--ignore-certificate-errors-spki-list`
 * with the certificate's public key hash is honoured by the network service's verifier, which
 * TURN/TLS sockets use too.
 */
async function trustingArgs(port) {
  const cert = await new Promise((ok, fail) => {
    const socket = tlsConnect({ host: "127.0.0.1", port, rejectUnauthorized: false }, () => {
      ok(socket.getPeerX509Certificate());
      socket.end();
    });
    socket.on("error", fail);
  });
  const spki = cert.publicKey.export({ type: "spki", format: "der" });
  const hash = createHash("sha256").update(spki).digest("base64");
  return ["--ignore-certificate-errors", `--ignore-certificate-errors-spki-list=${hash}`];
}

/** The selected candidate pair of the page's connection: local candidate type and relay protocol. */
async function selectedPair(page) {
  return JSON.parse(
    await page.evaluate(async () => {
      const pc = window.videoroom.webrtc.connection;
      const stats = await pc.getStats();
      let pairId = null;
      stats.forEach((s) => {
        if (s.type === "transport" && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
      });
      const pair = pairId && stats.get(pairId);
      const local = pair && stats.get(pair.localCandidateId);
      const remote = pair && stats.get(pair.remoteCandidateId);
      return JSON.stringify({
        state: pair?.state ?? null,
        localType: local?.candidateType ?? null,
        localProtocol: local?.protocol ?? null,
        relayProtocol: local?.relayProtocol ?? null,
        remoteType: remote?.candidateType ?? null,
      });
    }),
  );
}

/**
 * The selected pair once it has succeeded (within 10 s). The client's renegotiations restart ICE,
 * so right after a join the selected pair can be a new generation's, still `in-progress`.
 */
async function succeededPair(page) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const pair = await selectedPair(page);
    if (pair.state === "succeeded" || Date.now() > deadline) return pair;
    await sleep(100);
  }
}

/** Milliseconds from `start` until the page decodes a frame of a remote tile. */
async function firstVideoAfter(page, start) {
  for (;;) {
    const tiles = await readTiles(page).catch(() => []);
    if (tiles.some((t) => (t.videoStats?.framesDecoded ?? 0) > 0)) return Date.now() - start;
    if (Date.now() - start > 60_000) throw new Error("no video within 60 s");
    await sleep(50);
  }
}

const RUNS = [
  { relay: null, want: { localType: "host", localProtocol: "udp", relayProtocol: null } },
  { relay: "udp", want: { localType: "relay", localProtocol: "udp", relayProtocol: "udp" } },
  { relay: "tcp", want: { localType: "relay", localProtocol: "udp", relayProtocol: "tcp" } },
  { relay: "tls", want: { localType: "relay", localProtocol: "udp", relayProtocol: "tls" } },
];

test("media flows over the embedded TURN server for UDP, TCP and TLS, each forced with relay only", async () => {
  const args = await trustingArgs(tlsPort);
  const alice = await server.launchChromium({ args });
  const bob = await server.launchChromium({ args });
  const figures = [];
  // Two rounds, so the first path measured does not alone pay for the browsers' cold start.
  for (const [round, { relay, want }] of [1, 2].flatMap((r) => RUNS.map((run) => [r, run]))) {
    const label = relay ? `TURN/${relay.toUpperCase()}` : "UDP (no TURN)";
    const room = `turn-${relay ?? "none"}-${round}`;
    const flag = relay ? `&relay=${relay}` : "";
    await alice.page.goto(`${server.url}/room/${room}?display_name=Alice${flag}`);
    await waitInPage(alice.page, () => !!window.videoroom?.room, 15_000);
    const start = Date.now();
    await bob.page.goto(`${server.url}/room/${room}?display_name=Bob${flag}`);
    const bobFirstVideo = await firstVideoAfter(bob.page, start);
    const aliceFirstVideo = await firstVideoAfter(alice.page, start);
    await expectLiveTiles(alice.page, ["Bob"], 30_000);
    await expectLiveTiles(bob.page, ["Alice"], 30_000);
    for (const [who, page] of [["Alice", alice.page], ["Bob", bob.page]]) {
      const pair = await succeededPair(page);
      assert.equal(pair.state, "succeeded", `${label}: ${who}'s pair ${JSON.stringify(pair)}`);
      assert.deepEqual(
        { localType: pair.localType, localProtocol: pair.localProtocol, relayProtocol: pair.relayProtocol ?? null },
        want,
        `${label}: ${who}'s selected pair ${JSON.stringify(pair)}`,
      );
    }
    const metrics = (await httpsGetText(`${server.url}/metrics`)).body;
    const allocations = Number(/^videoroom_turn_allocations (\d+)/m.exec(metrics)?.[1]);
    console.log(`# ${label} round ${round}: ${allocations} TURN allocations open`);
    figures.push({ round, path: label, bobFirstVideoMs: bobFirstVideo, aliceFirstVideoMs: aliceFirstVideo });
    if (relay === "tls" && round === 2) {
      await bob.page.screenshot({ path: join(artifactsDir(), "turn_tls_relay.png") });
    }
  }
  console.log("time from Bob opening the room to the first decoded frame of the other (ms), Bob's and Alice's:");
  console.table(figures);
  const refusals = server.server.log().split("\n").filter((line) => line.includes("turn: refused"));
  assert.deepEqual(refusals, [], "no TURN refusal in the server log");
});
