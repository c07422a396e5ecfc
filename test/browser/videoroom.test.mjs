// End to end: the videoroom server binary ($VIDEOROOM_BIN) with real browsers — headless Chromium
// (playwright-core) and Firefox ESR (puppeteer-core over WebDriver BiDi) with fake cameras and
// microphones — entering rooms through the lobby form and exchanging real media through the SFU.
//
// The server gets SERVER_PORT and UDP_PORT (free ports) and EXTERNAL_IP (a non-loopback address of
// this host: Firefox cannot pair with a loopback-only server candidate). See support.mjs.
//
// The steps share one server and run in order: the three-person room is built once and then
// exercised (toggles, a second room, a killed browser, leaving the call); the LongPoll participant gets
// a room of its own at the end.

import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { statSync } from "node:fs";
import { join } from "node:path";
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

describe("the videoroom in real browsers", { timeout: 300_000 }, () => {
  let server;
  const browsers = [];
  let alice, bob, carol;

  const launch = async (which, opts) => {
    const b = which === "firefox" ? await launchFirefox() : await launchChromium(opts);
    browsers.push(b);
    return b;
  };

  before(async () => {
    server = await startServer();
  });

  after(async () => {
    for (const b of browsers) await b.close();
    await server?.stop();
    if (process.env.VIDEOROOM_LOG_ON_EXIT) console.log(server?.log());
  });

  test("three participants (one in Firefox) enter through the lobby and see and hear each other", async () => {
    [alice, bob, carol] = await Promise.all([launch("chromium"), launch("firefox"), launch("chromium")]);
    // One after the other, as people arrive; every join renegotiates everybody.
    await enterRoom(alice, server.url, "standup", "Alice");
    await enterRoom(bob, server.url, "standup", "Bob");
    await enterRoom(carol, server.url, "standup", "Carol");

    const expected = [
      [alice, ["Bob", "Carol"]],
      [bob, ["Alice", "Carol"]],
      [carol, ["Alice", "Bob"]],
    ];
    for (const [p, others] of expected) {
      const tiles = await expectLiveTiles(p.page, others, 45_000);
      assert.equal(tiles.length, 2);
    }
    for (const [p] of expected) {
      const list = await participantsText(p.page);
      for (const name of ["Alice", "Bob", "Carol"]) assert.ok(list.includes(name), `${p.kind}: ${list}`);
      assert.match(list, /^Participants: /);
      const state = await p.page.evaluate(() => document.getElementById("connection-state").dataset.state);
      assert.equal(state, "connected");
      // The display name was taken from the address and removed from it.
      const search = await p.page.evaluate(() => location.search);
      assert.ok(!search.includes("display_name"), search);
    }
  });

  test("a screenshot of the three-person room is written to the artifacts folder", async () => {
    const path = join(artifactsDir(), "three-person-room.png");
    await alice.page.screenshot({ path });
    assert.ok(statSync(path).size > 10_000, "screenshot written");
  });

  test("microphone and camera toggles reach the others", async () => {
    await alice.page.click("#toggle-mic");
    await alice.page.click("#toggle-camera");
    assert.equal(await alice.page.evaluate(() => document.getElementById("toggle-mic").getAttribute("aria-pressed")), "true");
    for (const p of [bob, carol]) {
      await eventually(`${p.kind} sees Alice muted with her camera off`, async () => {
        const tile = (await readTiles(p.page)).find((t) => t.label === "Alice");
        return tile && tile.audio === "off" && tile.video === "off" && tile.status.includes("Microphone off");
      });
    }
    await alice.page.click("#toggle-mic");
    await alice.page.click("#toggle-camera");
    for (const p of [bob, carol]) {
      await eventually(`${p.kind} sees Alice unmuted with her camera on`, async () => {
        const tile = (await readTiles(p.page)).find((t) => t.label === "Alice");
        return tile && tile.audio === "on" && tile.video === "on" && tile.status === "";
      });
    }
    // Bob (Firefox) mutes too: Chromium pages see it.
    await bob.page.click("#toggle-mic");
    for (const p of [alice, carol]) {
      await eventually(`${p.kind} sees Bob muted`, async () => {
        const tile = (await readTiles(p.page)).find((t) => t.label === "Bob");
        return tile && tile.audio === "off" && tile.video === "on";
      });
    }
    await bob.page.click("#toggle-mic");
  });

  test("a participant in a second room sees only that room", async () => {
    const dave = await launch("chromium");
    await enterRoom(dave, server.url, "other-room", "Dave");
    await waitInPage(dave.page, () => document.getElementById("connection-state").dataset.state === "connected", 20_000);
    // Give the server time to (wrongly) announce anybody.
    await new Promise((r) => setTimeout(r, 3000));
    assert.deepEqual(await readTiles(dave.page), []);
    assert.equal(await participantsText(dave.page), "Participants: Dave");
    for (const p of [alice, bob, carol]) {
      const labels = (await readTiles(p.page)).map((t) => t.label);
      assert.ok(!labels.includes("Dave"), `${p.kind} sees ${labels}`);
      assert.ok(!(await participantsText(p.page)).includes("Dave"));
    }
    await dave.close();
  });

  test("when a participant's browser process is killed the others drop its tile within 10 s", async () => {
    const killedAt = Date.now();
    carol.kill();
    for (const p of [alice, bob]) {
      await eventually(
        `${p.kind} drops Carol's tile`,
        async () => !(await readTiles(p.page)).some((t) => t.label === "Carol"),
        { timeoutMs: 10_000 - (Date.now() - killedAt), intervalMs: 100 },
      );
      assert.ok(!(await participantsText(p.page)).includes("Carol"));
    }
    console.log(`tile dropped ${Date.now() - killedAt} ms after the kill`);
  });

  test("when a participant leaves the call the others drop its tile within 2 s, and it sees You left with Rejoin", async () => {
    const clickedAt = Date.now();
    await bob.page.click("#disconnect");
    await eventually(
      "Alice drops Bob's tile",
      async () => !(await readTiles(alice.page)).some((t) => t.label === "Bob"),
      { timeoutMs: 2_000 - (Date.now() - clickedAt), intervalMs: 100 },
    );
    console.log(`tile dropped ${Date.now() - clickedAt} ms after the click`);
    assert.equal(await participantsText(alice.page), "Participants: Alice");
    // Bob sees "You left" with Rejoin; his toggles no longer look active.
    await waitInPage(bob.page, () => document.getElementById("end-title")?.textContent === "You left the meeting", 10_000);
    const left = JSON.parse(
      await bob.page.evaluate(() =>
        JSON.stringify({
          state: document.getElementById("connection-state").dataset.state,
          rejoin: document.getElementById("rejoin")?.textContent,
          focused: document.activeElement?.id,
          mic: [document.getElementById("toggle-mic").disabled, document.getElementById("toggle-mic").getAttribute("aria-pressed")],
          camera: [document.getElementById("toggle-camera").disabled, document.getElementById("toggle-camera").getAttribute("aria-pressed")],
          tiles: Array.from(document.querySelectorAll("#videos-grid div[name='video-feed']")).map((t) => t.id),
          cameraLive: window.videoroom.room.localStream.getTracks().some((t) => t.readyState === "live"),
        }),
      ),
    );
    assert.deepEqual(left, {
      state: "disconnected",
      rejoin: "Rejoin",
      focused: "rejoin",
      mic: [true, "true"],
      camera: [true, "true"],
      tiles: ["feed-local-peer"],
      cameraLive: false,
    });
    // Its other way out leads to the lobby with the room prefilled.
    await bob.page.click("#end-screen a");
    await waitInPage(bob.page, () => location.pathname === "/" && !!document.querySelector("input[name='room_name']"), 10_000);
    assert.equal(await bob.page.evaluate(() => document.querySelector("input[name='room_name']").value), "standup");
  });

  test("a participant whose WebSocket is blocked joins over LongPoll and still sees and is seen", async () => {
    for (const b of [alice, bob]) await b.close();
    const erin = await launch("chromium");
    const frank = await launch("chromium");
    // The WebSocket upgrade is refused (closed before it opens), as by a proxy that blocks
    // WebSockets; plain HTTP (LongPoll) still goes through.
    await erin.page.routeWebSocket(/\/socket\/websocket/, (ws) => ws.close({ code: 1011, reason: "blocked by the test" }));
    await enterRoom(frank, server.url, "longpoll-room", "Frank");
    await enterRoom(erin, server.url, "longpoll-room", "Erin");
    await expectLiveTiles(erin.page, ["Frank"], 45_000);
    await expectLiveTiles(frank.page, ["Erin"], 45_000);
    assert.equal(await erin.page.evaluate(() => window.videoroom.room.transport), "longpoll");
    assert.equal(await frank.page.evaluate(() => window.videoroom.room.transport), "websocket");
    assert.match(await participantsText(erin.page), /Erin, Frank/);
  });

  test("when the server goes away the pages say the connection was lost", async () => {
    const [erin, frank] = browsers.slice(-2);
    await server.stop("SIGINT");
    for (const p of [frank, erin]) {
      await waitInPage(
        p.page,
        () =>
          document.getElementById("connection-state").dataset.state === "disconnected" &&
          document.getElementById("videochat-error").style.display === "block" &&
          document.querySelectorAll("#videos-grid div[name='video-feed']").length === 1,
        20_000,
      );
    }
    assert.match(
      await frank.page.evaluate(() => document.getElementById("videochat-error").textContent),
      /connection to the server was lost/,
    );
  });
});
