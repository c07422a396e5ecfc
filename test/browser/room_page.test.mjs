// The committed bundle and stylesheet on a room page with the §5.1 DOM (membrane-protocol.md,
// as rendered by src/web/pages.rs), served by a plain static server with NO signalling behind
// /socket: the page must start cleanly, show the local tile and toggles, keep retrying the
// connection, treat user input as text, leave the camera off until a server accepts it, and on an
// invite link (no name) show the pre-join preview whose toggles carry into the call. Runs in
// Chromium and Firefox without the videoroom server.

import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT, launchChromium, launchFirefox, waitInPage } from "./support.mjs";

// The room page's DOM contract (ids, the tile template), nothing more.
const ROOM_PAGE = (roomId) => `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>room</title>
<link rel="stylesheet" href="/assets/css/app.css"></head>
<body class="bg-gray-800">
<div id="room" class="room" data-room-id="${roomId}">
<section>
<header class="room-header">
<h3 id="room-title">Room: ${roomId}</h3>
<div id="participants-list" class="participants-list"></div>
<span id="connection-state" class="connection-state" data-state="connecting">Connecting…</span>
</header>
<div id="videochat-error" class="videochat-error" style="display: none;"></div>
<div id="videochat">
<template id="video-feed-template">
<div name="video-feed" class="video-feed ratio-video">
<audio></audio>
<video class="video-feed-video"></video>
<div name="video-label" class="video-feed-label text-shadow-lg">Placeholder</div>
</div>
</template>
<div><div id="videos-grid" class="videos-grid grid grid-cols-2"></div></div>
</div>
</section>
<div id="controls" class="controls">
<button id="toggle-mic" type="button" class="controls-button" aria-pressed="false">Mute microphone</button>
<button id="toggle-camera" type="button" class="controls-button" aria-pressed="false">Turn camera off</button>
<button id="disconnect" type="button" class="controls-button">Disconnect</button>
</div>
</div>
<script defer src="/assets/js/app.js"></script>
</body></html>`;

let http;
let base;
let socketRequests = 0;

before(async () => {
  const js = readFileSync(join(REPO_ROOT, "priv/static/assets/js/app.js"));
  const css = readFileSync(join(REPO_ROOT, "priv/static/assets/css/app.css"));
  http = createServer((req, res) => {
    const url = new URL(req.url, "http://x");
    if (url.pathname === "/assets/js/app.js") {
      res.writeHead(200, { "content-type": "text/javascript" }).end(js);
    } else if (url.pathname === "/assets/css/app.css") {
      res.writeHead(200, { "content-type": "text/css" }).end(css);
    } else if (url.pathname.startsWith("/room/")) {
      // Room ids of this test are plain words: no escaping needed.
      const roomId = url.pathname.slice("/room/".length);
      assert.match(roomId, /^[a-z-]+$/);
      res.writeHead(200, { "content-type": "text/html" }).end(ROOM_PAGE(roomId));
    } else if (url.pathname.startsWith("/socket/")) {
      socketRequests++;
      res.writeHead(404).end();
    } else {
      res.writeHead(200, { "content-type": "text/html" }).end(
        '<!DOCTYPE html><html><body><form></form><script src="/assets/js/app.js"></script></body></html>',
      );
    }
  });
  // WebSocket upgrades are refused outright.
  http.on("upgrade", (_req, socket) => {
    socketRequests++;
    socket.destroy();
  });
  await new Promise((ok) => http.listen(0, "127.0.0.1", ok));
  base = `http://127.0.0.1:${http.address().port}`;
});

after(() => new Promise((ok) => http.close(ok)));

for (const kind of ["chromium", "firefox"]) {
  describe(`the room page bundle in ${kind}, with no signalling server`, () => {
    let browser;
    const errors = [];

    before(async () => {
      browser = kind === "firefox" ? await launchFirefox() : await launchChromium();
      browser.page.on("pageerror", (e) => {
        const message = String(e.message ?? e);
        // Firefox reports the refused connections themselves as page errors: expected here.
        if (!/can.t establish a connection|XML Parsing Error/.test(message)) errors.push(message);
      });
    });
    after(() => browser?.close());

    test("the bundle loads on a page without a room and does nothing", async () => {
      await browser.page.goto(`${base}/`);
      await waitInPage(browser.page, () => !!window.videoroom);
      assert.equal(await browser.page.evaluate(() => typeof window.videoroom.MembraneWebRTC), "function");
      assert.equal(await browser.page.evaluate(() => window.videoroom.room === undefined), true);
      assert.deepEqual(errors, []);
    });

    test("a link with a name joins at once: the local tile has the name (as text), the address loses it, the camera stays off until a server accepts", async () => {
      const name = "<img src=x onerror=window.pwned=1>Zoë";
      await browser.page.goto(`${base}/room/static-room?display_name=${encodeURIComponent(name)}&keep=1`);
      await waitInPage(browser.page, () => !!document.getElementById("feed-local-peer") && !!window.videoroom?.room);
      // Long enough for a camera that was opened to deliver frames.
      await new Promise((r) => setTimeout(r, 1500));
      const page = await browser.page.evaluate(() =>
        JSON.stringify({
          search: location.search,
          title: document.title,
          label: document.querySelector("#feed-local-peer div[name='video-label']").innerText,
          participants: document.getElementById("participants-list").textContent,
          pwned: window.pwned === 1,
          images: document.querySelectorAll("#room img").length,
          videoMuted: document.getElementById("video-local-peer").muted,
          audioMuted: document.getElementById("audio-local-peer").muted,
          flipped: document.getElementById("video-local-peer").classList.contains("flip-horizontally"),
          state: document.getElementById("connection-state").dataset.state,
          cameraOpened: window.videoroom.room.localStream !== undefined,
          videoWidth: document.getElementById("video-local-peer").videoWidth,
          frames: document.getElementById("feed-local-peer").dataset.frames,
        }),
      );
      assert.deepEqual(JSON.parse(page), {
        search: "?keep=1",
        title: "static-room · Videoroom",
        label: `${name} (you)`,
        participants: `Participants: ${name}`,
        pwned: false,
        images: 0,
        videoMuted: true,
        audioMuted: true,
        flipped: true,
        state: "connecting",
        cameraOpened: false,
        videoWidth: 0,
        frames: "none",
      });
    });

    test("without a server the page keeps trying to connect and says so", async () => {
      const before = socketRequests;
      await new Promise((r) => setTimeout(r, 4000));
      assert.ok(socketRequests > before, `socket attempts: ${before} then ${socketRequests}`);
      const state = await browser.page.evaluate(() => document.getElementById("connection-state").dataset.state);
      assert.equal(state, "connecting");
    });

    test("the toggles before the camera is open record what the user wants, for when it opens", async () => {
      const read = () =>
        browser.page.evaluate(() =>
          JSON.stringify({
            mic: document.getElementById("toggle-mic").getAttribute("aria-pressed"),
            micText: document.getElementById("toggle-mic").textContent,
            camera: document.getElementById("toggle-camera").getAttribute("aria-pressed"),
            tile: [document.getElementById("feed-local-peer").dataset.audio, document.getElementById("feed-local-peer").dataset.video],
            saved: JSON.parse(sessionStorage.getItem("videoroom:inCall:static-room")),
          }),
        ).then(JSON.parse);
      const name = "<img src=x onerror=window.pwned=1>Zoë";
      assert.deepEqual(await read(), {
        mic: "false",
        micText: "Mute microphone",
        camera: "false",
        tile: ["on", "on"],
        saved: { displayName: name, audio: true, video: true },
      });
      await browser.page.click("#toggle-mic");
      await browser.page.click("#toggle-camera");
      assert.deepEqual(await read(), {
        mic: "true",
        micText: "Unmute microphone",
        camera: "true",
        tile: ["off", "off"],
        saved: { displayName: name, audio: false, video: false },
      });
      await browser.page.click("#toggle-mic");
      assert.deepEqual((await read()).saved, { displayName: name, audio: true, video: false });
      assert.deepEqual(errors, []);
    });

    test("an invite link shows the pre-join preview; its toggles switch the real camera and microphone and carry into the call", async () => {
      const { page } = browser;
      await page.goto(`${base}/room/invite-room`);
      await waitInPage(page, () => {
        const v = document.querySelector("video[aria-label='Camera preview']");
        return document.getElementById("prejoin-title")?.textContent === "Ready to join?" && v && v.videoWidth > 0;
      });
      assert.equal(await page.evaluate(() => window.videoroom.room === undefined), true, "no room before Join");
      const preview = () =>
        page.evaluate(() => {
          const s = document.querySelector("video[aria-label='Camera preview']").srcObject;
          return JSON.stringify({
            audio: s.getAudioTracks().map((t) => t.enabled),
            video: s.getVideoTracks().map((t) => t.enabled),
            mic: document.getElementById("prejoin-mic").getAttribute("aria-pressed"),
            camera: document.getElementById("prejoin-camera").getAttribute("aria-pressed"),
          });
        }).then(JSON.parse);
      assert.deepEqual(await preview(), { audio: [true], video: [true], mic: "false", camera: "false" });
      await page.click("#prejoin-mic");
      await page.click("#prejoin-camera");
      assert.deepEqual(await preview(), { audio: [false], video: [false], mic: "true", camera: "true" });
      await page.type("#prejoin-name", "Zoë");
      await page.click("#prejoin button[type='submit']");
      await waitInPage(page, () => !!window.videoroom?.room && !document.getElementById("prejoin"));
      const inCall = () =>
        page.evaluate(() =>
          JSON.stringify({
            audioEnabled: window.videoroom.room.localStream.getAudioTracks()[0].enabled,
            videoEnabled: window.videoroom.room.localStream.getVideoTracks()[0].enabled,
            sameStream: document.getElementById("video-local-peer").srcObject === window.videoroom.room.localStream,
            mic: document.getElementById("toggle-mic").getAttribute("aria-pressed"),
            camera: document.getElementById("toggle-camera").getAttribute("aria-pressed"),
            tile: [document.getElementById("feed-local-peer").dataset.audio, document.getElementById("feed-local-peer").dataset.video],
            label: document.querySelector("#feed-local-peer div[name='video-label']").innerText,
          }),
        ).then(JSON.parse);
      assert.deepEqual(await inCall(), {
        audioEnabled: false,
        videoEnabled: false,
        sameStream: true,
        mic: "true",
        camera: "true",
        tile: ["off", "off"],
        label: "Zoë (you)",
      });
      // The call's toggles switch the same tracks.
      await page.click("#toggle-mic");
      await page.click("#toggle-camera");
      const after = await inCall();
      assert.deepEqual(
        [after.audioEnabled, after.videoEnabled, after.mic, after.camera, after.tile],
        [true, true, "false", "false", ["on", "on"]],
      );
      assert.deepEqual(errors, []);
    });
  });
}
