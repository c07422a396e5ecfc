// Calls survive the network (issue 9, the page's side): a participant whose connections to the
// server are cut for a few seconds (a TCP proxy in the test between its browser and the server;
// its media goes straight to the SFU's UDP port and keeps flowing) resumes as the same peer; a
// server restart (SIGTERM, then a new process on the same ports) brings both browsers back as new
// peers without a click; a reload goes back into the same room with the same name. Each prints
// what it measured. Uses $VIDEOROOM_BIN.

import { test, afterEach } from "node:test";
import assert from "node:assert/strict";
import { createServer, connect } from "node:net";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import {
  artifactsDir,
  enterRoom,
  eventually,
  expectLiveTiles,
  launchChromium,
  launchFirefox,
  participantsText,
  readTiles,
  startServer,
  waitInPage,
} from "./support.mjs";

const browsers = [];
const servers = [];

async function browser(kind = "chromium") {
  const b = kind === "firefox" ? await launchFirefox() : await launchChromium();
  browsers.push(b);
  return b;
}

// Each test's browsers and servers go when it ends (several idle calls would starve the next).
afterEach(async () => {
  for (const b of browsers.splice(0)) await b.close();
  for (const s of servers.splice(0)) await s.stop();
});

/**
 * A TCP proxy on 127.0.0.1 in front of `targetPort`. `cut()` closes every proxied connection
 * and refuses new ones (accepted, then closed at once) until `restore()`.
 */
async function tcpProxy(targetPort) {
  const open = new Set();
  let cut = false;
  const server = createServer((client) => {
    if (cut) {
      client.destroy();
      return;
    }
    const upstream = connect(targetPort, "127.0.0.1");
    const pair = [client, upstream];
    for (const s of pair) open.add(s);
    const end = () => {
      for (const s of pair) {
        s.destroy();
        open.delete(s);
      }
    };
    for (const s of pair) {
      s.on("error", end);
      s.on("close", end);
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    cut() {
      cut = true;
      for (const s of open) s.destroy();
      open.clear();
    },
    restore() {
      cut = false;
    },
    /** Stops listening and closes what is still proxied (server.close alone waits for it). */
    close() {
      this.cut();
      return new Promise((ok) => server.close(ok));
    },
  };
}

/** The page's recoveries so far (window.videoroom.room.reconnections). */
function reconnections(page) {
  return page.evaluate(() => JSON.stringify(window.videoroom.room.reconnections)).then(JSON.parse);
}

const ownPeerId = (page) => page.evaluate(() => window.videoroom.webrtc.localPeer.id);

/** Frames decoded so far of the remote tile labelled `label`. */
async function framesOf(page, label) {
  const tile = (await readTiles(page)).find((t) => t.label === label);
  return tile?.videoStats?.framesDecoded ?? 0;
}

test("a participant whose signalling is cut for 4 s resumes as the same peer while media keeps flowing, and renegotiates afterwards", async () => {
  const server = await startServer();
  servers.push(server);
  const proxy = await tcpProxy(server.port);
  const cutOff = await browser();
  const stays = await browser();
  await enterRoom(cutOff, proxy.url, "wifi-blip", "Cut");
  await enterRoom(stays, server.url, "wifi-blip", "Stays");
  await expectLiveTiles(stays.page, ["Cut"], 45_000);
  await expectLiveTiles(cutOff.page, ["Stays"], 45_000);
  const cutId = await ownPeerId(cutOff.page);
  const stayId = await ownPeerId(stays.page);

  const framesBefore = await framesOf(stays.page, "Cut");
  const cutAt = Date.now();
  proxy.cut();
  await waitInPage(cutOff.page, () => document.getElementById("connection-state").dataset.state === "reconnecting", 10_000);
  // Four seconds without signalling: the other keeps the tile (no peerLeft) and keeps decoding.
  while (Date.now() - cutAt < 4000) {
    const tiles = await readTiles(stays.page);
    assert.deepEqual(tiles.map((t) => t.peerId), [cutId], "the cut-off participant's tile stays");
    assert.equal(await cutOff.page.evaluate(() => document.querySelectorAll("#videos-grid div[name='video-feed']").length), 2, "the cut-off page keeps its tiles");
    await sleep(250);
  }
  const framesDuringCut = await framesOf(stays.page, "Cut");
  assert.ok(framesDuringCut > framesBefore, `video kept decoding during the cut (${framesBefore} → ${framesDuringCut})`);
  const restoredAt = Date.now();
  proxy.restore();

  const [back] = await eventually("the cut-off page to be back", async () => {
    const r = await reconnections(cutOff.page);
    return r.length && r[r.length - 1].backAt ? r : false;
  }, { timeoutMs: 15_000, intervalMs: 100 });
  assert.equal(back.resumed, true, `resumed as the same peer (refusals: ${back.refusals})`);
  assert.deepEqual(back.refusals, []);
  assert.equal(await ownPeerId(cutOff.page), cutId, "same peer id");
  await waitInPage(cutOff.page, () => document.getElementById("connection-state").dataset.state === "connected", 15_000);
  await expectLiveTiles(stays.page, ["Cut"], 20_000);
  await expectLiveTiles(cutOff.page, ["Stays"], 20_000);
  assert.deepEqual((await readTiles(stays.page)).map((t) => t.peerId), [cutId], "no peerLeft/peerJoined at the other");
  assert.deepEqual((await readTiles(cutOff.page)).map((t) => t.peerId), [stayId]);
  assert.equal(await stays.page.evaluate(() => window.videoroom.room.reconnections.length), 0);
  console.log(
    `signalling cut for ${restoredAt - cutAt} ms: resumed ${back.backAt - restoredAt} ms after the link came back ` +
      `(${back.backAt - back.lostAt} ms after the page noticed the loss); video decoded during the cut: ${framesDuringCut - framesBefore} frames`,
  );

  // Renegotiation works on the resumed session: a third participant is seen both ways.
  const third = await browser();
  const joinedAt = Date.now();
  await enterRoom(third, server.url, "wifi-blip", "Third");
  await expectLiveTiles(cutOff.page, ["Stays", "Third"], 45_000);
  await expectLiveTiles(third.page, ["Cut", "Stays"], 45_000);
  await expectLiveTiles(stays.page, ["Cut", "Third"], 45_000);
  console.log(`third participant decoded by the resumed one ${Date.now() - joinedAt} ms after it joined`);
  assert.match(await participantsText(cutOff.page), /Cut, Stays, Third/);
  await proxy.close();
});

test("after a server restart on the same ports both browsers are back in the call by themselves, names kept", async () => {
  let server = await startServer();
  servers.push(server);
  const ann = await browser("chromium");
  const ben = await browser("firefox");
  await enterRoom(ann, server.url, "restart-room", "Ann");
  await enterRoom(ben, server.url, "restart-room", "Ben");
  await expectLiveTiles(ann.page, ["Ben"], 45_000);
  await expectLiveTiles(ben.page, ["Ann"], 45_000);
  const oldIds = [await ownPeerId(ann.page), await ownPeerId(ben.page)];

  const { port, udpPort } = server;
  const stoppedAt = Date.now();
  await server.stop("SIGTERM");
  // While the server is gone: "Reconnecting…", the other's tile stays and is marked frozen.
  for (const [p, other] of [[ann.page, "Ben"], [ben.page, "Ann"]]) {
    await waitInPage(
      p,
      () =>
        document.getElementById("connection-state").dataset.state === "reconnecting" &&
        document.querySelector("#videos-grid div[data-local='false'][data-frozen='true']") !== null,
      15_000,
    );
    assert.deepEqual((await readTiles(p)).map((t) => t.label), [other], "the tile stays while reconnecting");
  }
  await ann.page.screenshot({ path: join(artifactsDir(), "reconnecting.png") });

  server = await startServer({ port, udpPort });
  servers.push(server);
  const listeningAt = Date.now();
  await Promise.all([expectLiveTiles(ann.page, ["Ben"], 30_000), expectLiveTiles(ben.page, ["Ann"], 30_000)]);
  const bothDecodeAt = Date.now();
  for (const [p, name] of [[ann.page, "Ann"], [ben.page, "Ben"]]) {
    const r = await reconnections(p);
    assert.equal(r.length, 1);
    assert.equal(r[0].resumed, false, "joined again as a new peer (the server's state is gone)");
    assert.deepEqual(r[0].refusals, ["invalid resume token"]);
    assert.equal(await p.evaluate(() => document.querySelector("#feed-local-peer div[name='video-label']").innerText), `${name} (you)`);
    assert.equal(await p.evaluate(() => document.getElementById("connection-state").dataset.state), "connected");
    assert.equal(
      await p.evaluate(() => JSON.stringify([...document.querySelectorAll("[data-frozen='true']")].map((f) => [f.id, f.dataset.frames, f.querySelector("video").getVideoPlaybackQuality?.().totalVideoFrames]))),
      "[]",
      `no tile of ${name}'s page is marked frozen`,
    );
  }
  const newIds = [await ownPeerId(ann.page), await ownPeerId(ben.page)];
  assert.ok(newIds.every((id, i) => id && id !== oldIds[i]), "new peer ids");
  assert.match(await participantsText(ann.page), /Ann, Ben/);
  const back = await Promise.all([ann.page, ben.page].map(reconnections));
  console.log(
    `server down ${listeningAt - stoppedAt} ms; after it listened again: signalling back in ` +
      `${back.map((r) => r[0].backAt - listeningAt).join(" / ")} ms (Chromium / Firefox), both decoding each other after ${bothDecodeAt - listeningAt} ms`,
  );
});

test("a reload goes back into the same room with the same name", async () => {
  const server = await startServer();
  servers.push(server);
  const rita = await browser();
  const sam = await browser();
  await enterRoom(rita, server.url, "reload-room", "Rita");
  await enterRoom(sam, server.url, "reload-room", "Sam");
  await expectLiveTiles(sam.page, ["Rita"], 45_000);
  const reloadedAt = Date.now();
  await rita.page.reload();
  await waitInPage(rita.page, () => !!(window.videoroom && window.videoroom.room), 15_000);
  assert.equal(await rita.page.evaluate(() => location.pathname), "/room/reload-room");
  assert.equal(await rita.page.evaluate(() => document.querySelector("#feed-local-peer div[name='video-label']").innerText), "Rita (you)");
  await expectLiveTiles(sam.page, ["Rita"], 30_000).catch(async (e) => {
    throw new Error(`${e.message}; Sam's tiles: ${JSON.stringify(await readTiles(sam.page))}`);
  });
  await expectLiveTiles(rita.page, ["Sam"], 30_000);
  console.log(`after the reload the other decodes Rita again within ${Date.now() - reloadedAt} ms`);
});
