// The meeting page as people use it, against the videoroom server binary ($VIDEOROOM_BIN): the
// pre-join screen of an invite link, a grid that fits at 1280×800, 1920×1080 and 390×844 with
// four people (one in Firefox), presence on tiles, pin and full screen, the people list, chat,
// the invite link, shortcuts, announcements, screen sharing (headless Chromium's fake capture),
// "You left" with Rejoin, and an axe-core scan of the lobby, pre-join and room pages.
// Chromium pages are driven through roles and accessible names (Playwright's getByRole).
// Screenshots go to $ARTIFACTS_DIR (support.mjs).

import { describe, test, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import {
  artifactsDir,
  enterRoom,
  eventually,
  launchChromium,
  launchFirefox,
  readTiles,
  startServer,
  waitInPage,
} from "./support.mjs";

const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");
const SIZES = [
  [1280, 800],
  [1920, 1080],
  [390, 844],
];
const ROOM = "design review";

/** Runs axe-core in the page; returns the serious and critical violations (id, impact, targets). */
async function seriousViolations(page) {
  await page.evaluate(AXE_SOURCE);
  const result = JSON.parse(
    await page.evaluate(async () => {
      const r = await window.axe.run(document, { resultTypes: ["violations"] });
      return JSON.stringify(r.violations);
    }),
  );
  return result
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target.join(" ")).slice(0, 5) }));
}

/**
 * Geometry of the stage: every visible tile's box, the stage's and the control bar's, and the
 * label boxes, in viewport pixels.
 */
function readGeometry(page) {
  return page
    .evaluate(() => {
      const box = (el) => {
        const r = el.getBoundingClientRect();
        return { left: r.left, top: r.top, right: r.right, bottom: r.bottom, width: r.width, height: r.height };
      };
      const tiles = Array.from(document.querySelectorAll("#videos-grid div[name='video-feed']"))
        .filter((t) => !t.hidden)
        .map((t) => ({
          id: t.id,
          box: box(t),
          label: box(t.querySelector("div[name='video-label']")),
          floating: t.classList.contains("tile-floating"),
        }));
      return JSON.stringify({
        viewport: { width: innerWidth, height: innerHeight },
        stage: box(document.getElementById("videochat")),
        controls: box(document.getElementById("controls")),
        tiles,
        total: document.querySelectorAll("#videos-grid div[name='video-feed']").length,
        layout: { ...document.getElementById("videos-grid").dataset },
      });
    })
    .then(JSON.parse);
}

/** Asserts that no tile is cut off, covered by the control bar or by another tile, and 16:9. */
function assertTilesFit(g, what) {
  const eps = 1;
  assert.ok(g.tiles.length > 0, `${what}: no visible tiles`);
  for (const t of g.tiles) {
    const b = t.box;
    assert.ok(b.left >= -eps && b.top >= -eps && b.right <= g.viewport.width + eps && b.bottom <= g.viewport.height + eps, `${what}: ${t.id} cut off by the window ${JSON.stringify(b)}`);
    assert.ok(b.bottom <= g.controls.top + eps, `${what}: ${t.id} under the control bar (${b.bottom} > ${g.controls.top})`);
    assert.ok(b.top >= g.stage.top - eps && b.bottom <= g.stage.bottom + eps, `${what}: ${t.id} outside the stage`);
    assert.ok(Math.abs(b.width / b.height - 16 / 9) < 0.05, `${what}: ${t.id} is ${b.width}×${b.height}, not 16:9`);
    // The name is inside its tile.
    assert.ok(t.label.left >= b.left - eps && t.label.bottom <= b.bottom + eps && t.label.right <= b.right + eps, `${what}: ${t.id}'s name is cut off`);
    for (const o of g.tiles) {
      if (o === t || o.floating || t.floating) continue;
      const overlap = Math.min(b.right, o.box.right) - Math.max(b.left, o.box.left) > eps &&
        Math.min(b.bottom, o.box.bottom) - Math.max(b.top, o.box.top) > eps;
      assert.ok(!overlap, `${what}: ${t.id} overlaps ${o.id}`);
    }
  }
}

// A bound for the whole call of thirteen steps with five browsers on a loaded two-core machine
// (about 5 minutes there); each step waits for its own conditions with its own bounds.
describe("the meeting page", { timeout: 600_000 }, () => {
  let server;
  const browsers = [];
  let alice; // Chromium, through the invite link and the pre-join screen
  let others; // Bob's Chromium
  let bob, carol;
  let dave; // Firefox ESR
  const webSockets = [];

  before(async () => {
    server = await startServer();
  });

  // A failed step leaves what each participant's page showed (connection state, error banner,
  // end screen, screenshot) and the server's log in the artifacts, to find out why.
  afterEach(async (t) => {
    if (t.passed) return;
    const dir = artifactsDir();
    for (const [i, b] of browsers.entries()) {
      const state = await b.page
        .evaluate(() => JSON.stringify({
          url: location.href,
          connection: document.getElementById("connection-state")?.textContent,
          error: document.getElementById("videochat-error")?.textContent,
          end: document.getElementById("end-title")?.textContent,
          tiles: Array.from(document.querySelectorAll("#videos-grid div[name='video-feed']")).map((f) => f.getAttribute("aria-label")),
          announced: document.getElementById("announcer")?.textContent,
        }))
        .catch((e) => String(e));
      console.log(`failed step "${t.name}": ${b.kind} #${i}: ${state}`);
      await b.page.screenshot({ path: join(dir, `meeting-failed-${i}-${b.kind}.png`) }).catch(() => {});
    }
    if (server) writeFileSync(join(dir, "meeting_page-server.log"), server.log());
  });

  after(async () => {
    for (const b of browsers) await b.close();
    await server?.stop();
  });

  test("the lobby has no serious or critical accessibility violations", async () => {
    alice = await launchChromium();
    browsers.push(alice);
    alice.page.on("websocket", (ws) => webSockets.push(ws.url()));
    await alice.page.goto(`${server.url}/?room_id=x`);
    assert.deepEqual(await seriousViolations(alice.page), []);
  });

  test("an invite link shows the pre-join screen: preview, level meter, devices, toggles; nothing connects before Join", async () => {
    const { page } = alice;
    await page.goto(`${server.url}/room/${encodeURIComponent(ROOM)}`);
    await page.getByRole("heading", { name: "Ready to join?" }).waitFor();
    assert.equal(await page.title(), `${ROOM} · Videoroom`);
    await waitInPage(page, () => {
      const v = document.querySelector("video[aria-label='Camera preview']");
      return v && v.videoWidth > 0;
    });
    // The fake microphone beeps: the meter moves.
    await eventually("the microphone level meter moves", async () =>
      Number(await page.getByRole("meter", { name: "Microphone level" }).getAttribute("aria-valuenow")) > 0,
    );
    for (const name of ["Camera", "Microphone", "Speaker"]) {
      const options = await page.getByRole("combobox", { name }).locator("option").count();
      assert.ok(options >= 1, `${name} picker has ${options} options`);
    }
    assert.equal(await page.getByRole("textbox", { name: "Your name" }).inputValue(), "");
    for (const size of SIZES) {
      await page.setViewportSize({ width: size[0], height: size[1] });
      await page.screenshot({ path: join(artifactsDir(), `prejoin-${size[0]}x${size[1]}.png`) });
    }
    await page.setViewportSize({ width: 1280, height: 800 });
    assert.deepEqual(await seriousViolations(page), []);
    // Join muted: the toggle carries into the call.
    await page.getByRole("button", { name: "Mute microphone" }).click();
    assert.equal(await page.getByRole("button", { name: "Unmute microphone" }).getAttribute("aria-pressed"), "true");
    assert.deepEqual(webSockets, [], "no connection before Join");
    assert.equal(await page.evaluate(() => window.videoroom.room === undefined), true);
    await page.getByRole("textbox", { name: "Your name" }).fill("Alice Smith");
    await page.getByRole("button", { name: "Join now" }).click();
    await waitInPage(page, () => document.getElementById("connection-state").dataset.state === "connected", 20_000);
    assert.equal(webSockets.length, 1);
    assert.equal(await page.locator("#toggle-mic").getAttribute("aria-pressed"), "true");
    assert.equal(await page.locator("#feed-local-peer").getAttribute("data-audio"), "off");
    assert.equal(
      await page.evaluate(() => window.videoroom.room.localStream.getAudioTracks()[0].enabled),
      false,
    );
  });

  test("three more people join (one in Firefox); joins are announced and counted", async () => {
    others = await launchChromium();
    browsers.push(others);
    bob = others;
    // Carol has a browser of her own: a call in a hidden tab of Bob's browser would be
    // throttled by Chromium, and she is the one who leaves and rejoins later.
    carol = await launchChromium();
    browsers.push(carol);
    // Dave's Firefox keeps its default autoplay blocking, as a real user's does: the page must
    // start its audio (the level meter) from his gestures, not from a browser setting.
    dave = await launchFirefox({ autoplayAllowed: false });
    browsers.push(dave);
    await enterRoom(bob, server.url, ROOM, "Bob");
    await waitInPage(alice.page, () => document.getElementById("announcer").textContent === "Bob joined");
    assert.equal(await alice.page.getByRole("status").filter({ hasText: "Bob joined" }).getAttribute("aria-live"), "polite");
    await enterRoom(carol, server.url, ROOM, "Carol");
    // Dave comes through the invite link too, in Firefox: its pre-join screen shows the preview,
    // the level meter and the device pickers.
    await dave.page.goto(`${server.url}/room/${encodeURIComponent(ROOM)}`);
    await waitInPage(dave.page, () => {
      const v = document.querySelector("video[aria-label='Camera preview']");
      return document.getElementById("prejoin-title")?.textContent === "Ready to join?" && v && v.videoWidth > 0;
    });
    assert.equal(await dave.page.title(), `${ROOM} · Videoroom`);
    const daveDevices = JSON.parse(await dave.page.evaluate(() => JSON.stringify({
      camera: document.getElementById("prejoin-camera-select").options.length,
      microphone: document.getElementById("prejoin-mic-select").options.length,
      cameraLabel: document.querySelector("label[for='prejoin-camera-select']").textContent,
      joinedBefore: window.videoroom.room !== undefined,
    })));
    assert.ok(daveDevices.camera >= 1 && daveDevices.microphone >= 1, JSON.stringify(daveDevices));
    assert.equal(daveDevices.cameraLabel, "Camera");
    assert.equal(daveDevices.joinedBefore, false, "no room before Join");
    await dave.page.screenshot({ path: join(artifactsDir(), "prejoin-firefox-1280x800.png") });
    assert.deepEqual(await seriousViolations(dave.page), [], "Firefox pre-join screen");
    // Clicking into the name field and typing it are Dave's first gestures: from then on Firefox
    // lets the level meter's audio context run.
    await dave.page.click("#prejoin-name");
    await dave.page.type("#prejoin-name", "Dave");
    await waitInPage(dave.page, () => Number(document.querySelector("[role='meter'][aria-label='Microphone level']").getAttribute("aria-valuenow")) > 0);
    await dave.page.click("#prejoin button[type='submit']");
    await waitInPage(dave.page, () => document.getElementById("connection-state")?.dataset.state === "connected", 20_000);
    for (const p of [alice, bob, carol, dave]) {
      await eventually(`${p.kind} sees three live remote tiles`, async () => {
        const tiles = await readTiles(p.page);
        return tiles.length === 3 && tiles.every((t) => t.videoWidth > 0 || t.video === "off");
      }, { timeoutMs: 45_000 });
    }
    const { page } = alice;
    await page.getByRole("button", { name: "People (4)" }).click();
    const people = await page.getByRole("list", { name: "People (4)" }).getByRole("listitem").allTextContents();
    assert.deepEqual(people.map((p) => p.replace(/ · microphone off$/, "")), ["Alice Smith (you)", "Bob", "Carol", "Dave"]);
    await page.getByRole("button", { name: "Close panel" }).click();
  });

  test("the grid fits at 1280×800, 1920×1080 and 390×844: no tile cut off or under the controls", async () => {
    const { page } = alice;
    for (const [width, height] of SIZES) {
      await page.setViewportSize({ width, height });
      await eventually(`layout at ${width}×${height}`, async () => {
        const g = await readGeometry(page);
        return g.viewport.width === width && g.tiles.length > 0;
      });
      await new Promise((r) => setTimeout(r, 400)); // the 150 ms tile transition
      const g = await readGeometry(page);
      assertTilesFit(g, `${width}×${height}`);
      await page.screenshot({ path: join(artifactsDir(), `room-4-${width}x${height}.png`) });
      if (g.layout.pages === "1") {
        assert.equal(g.tiles.length, 4, `${width}×${height}: all four tiles on one page`);
      } else {
        // Beyond what fits, the rest is on the next page.
        await page.getByRole("button", { name: "Next page" }).click();
        await new Promise((r) => setTimeout(r, 400));
        const next = await readGeometry(page);
        assertTilesFit(next, `${width}×${height} page 2`);
        assert.equal(g.tiles.length + next.tiles.length, 4);
        await page.screenshot({ path: join(artifactsDir(), `room-4-${width}x${height}-page2.png`) });
        await page.getByRole("button", { name: "Previous page" }).click();
      }
      if (width === 1920) {
        // Large screens get large tiles: together they cover most of the stage.
        const area = g.tiles.reduce((s, t) => s + t.box.width * t.box.height, 0);
        assert.ok(area > 0.5 * g.stage.width * g.stage.height, `tiles cover ${Math.round((100 * area) / (g.stage.width * g.stage.height))} % of the stage`);
      }
    }
    // A small phone (360×640): four tiles at a readable size do not fit, so the rest pages.
    await page.setViewportSize({ width: 360, height: 640 });
    await eventually("layout at 360×640", async () => (await readGeometry(page)).viewport.width === 360);
    await new Promise((r) => setTimeout(r, 400));
    const first = await readGeometry(page);
    assert.ok(Number(first.layout.pages) > 1, `360×640: ${first.tiles.length} tiles on ${first.layout.pages} page(s)`);
    assertTilesFit(first, "360×640");
    const pager = await page.getByRole("navigation", { name: "Pages of participants" }).boundingBox();
    for (const t of first.tiles) assert.ok(t.box.bottom <= pager.y + 1, `360×640: ${t.id} under the pager`);
    // The pager is one line inside the stage, clear of the control bar.
    assert.ok(pager.height <= 44 && pager.x >= 0 && pager.x + pager.width <= 360, `360×640: pager ${JSON.stringify(pager)}`);
    assert.ok(pager.y + pager.height <= first.controls.top + 1, `360×640: pager under the control bar`);
    await page.screenshot({ path: join(artifactsDir(), "room-4-360x640.png") });
    await page.getByRole("button", { name: "Next page" }).click();
    await new Promise((r) => setTimeout(r, 400));
    const second = await readGeometry(page);
    assertTilesFit(second, "360×640 page 2");
    assert.equal(first.tiles.length + second.tiles.length, 4, "every tile is on one of the pages");
    assert.deepEqual(first.tiles.filter((t) => second.tiles.some((o) => o.id === t.id)), [], "no tile on both pages");
    await page.screenshot({ path: join(artifactsDir(), "room-4-360x640-page2.png") });
    await page.getByRole("button", { name: "Previous page" }).click();
    await page.setViewportSize({ width: 1280, height: 800 });
  });

  test("tiles show presence: initials when the camera is off, speaking, network quality", async () => {
    await bob.page.bringToFront();
    await bob.page.getByRole("button", { name: "Turn camera off" }).click();
    const { page } = alice;
    const bobTile = page.getByRole("group", { name: "Bob", exact: true });
    await eventually("Bob's tile shows his initial", async () =>
      (await bobTile.getAttribute("data-video")) === "off" && (await bobTile.locator(".tile-initials").isVisible()),
    );
    assert.equal(await bobTile.locator(".tile-initials").textContent(), "B");
    assert.equal(await bobTile.locator("[name='video-status']").textContent(), "Camera off");
    // Fake microphones beep: someone's speaking ring lights up.
    await eventually("a remote tile shows speaking", () =>
      page.evaluate(() => document.querySelectorAll("#videos-grid [data-speaking='true']:not(#feed-local-peer)").length > 0),
    );
    await eventually("network quality on the remote tiles", async () => {
      const q = await page.evaluate(() =>
        Array.from(document.querySelectorAll("#videos-grid div[name='video-feed']:not(#feed-local-peer) .tile-network"))
          .map((b) => !b.hidden && b.getAttribute("aria-label")),
      );
      return q.length === 3 && q.every((l) => /^Network: (good|fair|poor)$/.test(l));
    });
    await page.screenshot({ path: join(artifactsDir(), "room-presence-1280x800.png") });
    // The same in Firefox (its receivers' audio levels and stats).
    await eventually("Firefox shows Bob's initial, someone speaking and network quality", async () => {
      const seen = JSON.parse(await dave.page.evaluate(() => {
        const bobTile = Array.from(document.querySelectorAll("#videos-grid div[name='video-feed']")).find((t) => t.getAttribute("aria-label") === "Bob");
        const badges = Array.from(document.querySelectorAll("#videos-grid div[name='video-feed']:not(#feed-local-peer) .tile-network"));
        return JSON.stringify({
          bob: bobTile ? [bobTile.dataset.video, bobTile.querySelector(".tile-initials").textContent, getComputedStyle(bobTile.querySelector(".tile-placeholder")).display !== "none"] : null,
          speaking: document.querySelectorAll("#videos-grid [data-speaking='true']:not(#feed-local-peer)").length,
          network: badges.map((b) => !b.hidden && b.getAttribute("aria-label")),
        });
      }));
      return (
        JSON.stringify(seen.bob) === JSON.stringify(["off", "B", true]) &&
        seen.speaking > 0 &&
        seen.network.length === 3 &&
        seen.network.every((l) => /^Network: (good|fair|poor)$/.test(l))
      );
    }, { timeoutMs: 20_000 });
    await dave.page.screenshot({ path: join(artifactsDir(), "room-presence-firefox-1280x800.png") });
    await bob.page.getByRole("button", { name: "Turn camera on" }).click();
  });

  test("a tile can be pinned (shown large) and shown full screen", async () => {
    const { page } = alice;
    const carolTile = page.getByRole("group", { name: "Carol", exact: true });
    await carolTile.hover();
    await page.getByRole("button", { name: "Pin Carol" }).click();
    await new Promise((r) => setTimeout(r, 400));
    const g = await readGeometry(page);
    assert.equal(g.layout.mode, "spotlight");
    assertTilesFit(g, "spotlight");
    const widths = g.tiles.map((t) => t.box.width);
    const carolBox = (await carolTile.boundingBox());
    assert.equal(carolBox.width, Math.max(...widths), "the pinned tile is the largest");
    await page.screenshot({ path: join(artifactsDir(), "room-pinned-1280x800.png") });
    assert.equal(await page.getByRole("button", { name: "Pin Carol" }).getAttribute("aria-pressed"), "true");
    await page.getByRole("button", { name: "Pin Carol" }).click();
    assert.equal((await readGeometry(page)).layout.mode, "grid");

    await carolTile.hover();
    await page.getByRole("button", { name: "Show Carol full screen" }).click();
    await waitInPage(page, () => document.fullscreenElement?.getAttribute("aria-label") === "Carol", 5000);
    await page.evaluate(() => document.exitFullscreen());
  });

  test("the self-view floats small over the stage and can be moved within it, or sits in the grid", async () => {
    const { page } = alice;
    const float = page.getByRole("button", { name: "Float self-view" });
    await float.click();
    assert.equal(await float.getAttribute("aria-pressed"), "true");
    await new Promise((r) => setTimeout(r, 400));
    const g = await readGeometry(page);
    const self = g.tiles.find((t) => t.id === "feed-local-peer");
    assert.ok(self?.floating, "our tile floats");
    assertTilesFit(g, "floating self-view");
    const others = g.tiles.filter((t) => !t.floating);
    assert.equal(others.length, 3, "the others share the stage");
    assert.ok(self.box.width < Math.min(...others.map((t) => t.box.width)), "the self-view is smaller than the others' tiles");
    const gridBox = await page.locator("#videos-grid").boundingBox();
    const selfBox = () => page.locator("#feed-local-peer").boundingBox();
    const drag = async (dx, dy) => {
      const b = await selfBox();
      const [x, y] = [b.x + b.width / 2, b.y + b.height / 2];
      await page.mouse.move(x, y);
      await page.mouse.down();
      await page.mouse.move(x + dx, y + dy, { steps: 5 });
      await page.mouse.up();
    };
    await drag(-300, -150);
    const moved = await selfBox();
    assert.ok(Math.abs(moved.x - (self.box.left - 300)) <= 1 && Math.abs(moved.y - (self.box.top - 150)) <= 1, `moved to ${JSON.stringify(moved)} from ${JSON.stringify(self.box)}`);
    // Dragged far beyond the stage's corner, it stops at the corner.
    await drag(-5000, -5000);
    const cornered = await selfBox();
    assert.ok(Math.abs(cornered.x - gridBox.x) <= 1 && Math.abs(cornered.y - gridBox.y) <= 1, `${JSON.stringify(cornered)} vs the stage ${JSON.stringify(gridBox)}`);
    assertTilesFit(await readGeometry(page), "self-view moved");
    await page.screenshot({ path: join(artifactsDir(), "room-selfview-1280x800.png") });
    // Back into the grid.
    await float.click();
    assert.equal(await float.getAttribute("aria-pressed"), "false");
    await new Promise((r) => setTimeout(r, 400));
    const back = await readGeometry(page);
    assert.equal(back.tiles.filter((t) => !t.floating).length, 4);
    assertTilesFit(back, "self-view back in the grid");
  });

  test("chat reaches everyone with the sender's name and time, as text; a flood is refused", async () => {
    const { page } = alice;
    await page.getByRole("button", { name: "Chat" }).click();
    const text = "<b>hello</b> & welcome";
    await page.getByRole("textbox", { name: "Message" }).fill(text);
    await page.getByRole("button", { name: "Send" }).click();
    for (const p of [bob, dave]) {
      await waitInPage(p.page, (t) => Array.from(document.querySelectorAll(".chat-text")).some((e) => e.textContent === t), 10_000, text);
      const meta = JSON.parse(await p.page.evaluate(() => {
        const li = document.querySelector(".chat-message");
        return JSON.stringify({ sender: li.querySelector(".chat-sender").textContent, time: li.querySelector("time").getAttribute("datetime"), bold: document.querySelectorAll(".chat-log b").length });
      }));
      assert.equal(meta.sender, "Alice Smith");
      assert.ok(Math.abs(Date.parse(meta.time) - Date.now()) < 60_000, meta.time);
      assert.equal(meta.bold, 0, "markup is shown as text");
    }
    // Bob's closed panel counts it as unread.
    await bob.page.bringToFront();
    await bob.page.getByRole("button", { name: "Chat (1 new)" }).waitFor();
    await page.bringToFront();
    assert.equal(await page.getByRole("log", { name: "Chat messages" }).getByRole("listitem").count(), 1);
    assert.equal(await page.getByRole("alert").filter({ hasText: "Not sent" }).count(), 0);
    // Twelve messages at once: more than the server's burst (5) plus what it refills (one a
    // second) even on a slow machine, so its rate limit refuses some, and the page says so.
    await page.evaluate(() => {
      const input = document.getElementById("chat-input");
      const form = input.form;
      for (let i = 0; i < 12; i++) {
        input.value = `burst ${i}`;
        form.requestSubmit();
      }
    });
    await page.getByRole("alert").filter({ hasText: "Not sent: too many messages." }).waitFor();
    await page.screenshot({ path: join(artifactsDir(), "room-chat-1280x800.png") });
    await page.getByRole("button", { name: "Close panel" }).click();
  });

  test("the invite link has the room and no name; Ctrl+D and Ctrl+E toggle microphone and camera", async () => {
    const { page, ctx } = alice;
    await ctx.grantPermissions(["clipboard-read", "clipboard-write", "camera", "microphone"], { origin: server.url });
    await page.getByRole("button", { name: "Copy invite link" }).click();
    await page.getByRole("button", { name: "Link copied" }).waitFor();
    const link = await page.evaluate(() => navigator.clipboard.readText());
    assert.equal(link, `${server.url}/room/${encodeURIComponent(ROOM)}`);
    assert.equal(await page.locator("#announcer").textContent(), "Invite link copied");

    assert.equal(await page.locator("#toggle-mic").getAttribute("aria-pressed"), "true");
    await page.keyboard.press("Control+d");
    assert.equal(await page.locator("#toggle-mic").getAttribute("aria-pressed"), "false");
    await page.keyboard.press("Control+e");
    assert.equal(await page.locator("#toggle-camera").getAttribute("aria-pressed"), "true");
    await eventually("Bob sees Alice's camera off", () =>
      bob.page.evaluate(() => Array.from(document.querySelectorAll("#videos-grid div[name='video-feed']")).some((t) => t.getAttribute("aria-label") === "Alice Smith" && t.dataset.video === "off")),
    );
    await page.keyboard.press("Control+e");
    assert.equal(await page.locator("#toggle-camera").getAttribute("aria-pressed"), "false");
  });

  test("the room page has no serious or critical accessibility violations", async () => {
    const { page } = alice;
    assert.deepEqual(await seriousViolations(page), []);
    await page.getByRole("button", { name: "Chat" }).click();
    assert.deepEqual(await seriousViolations(page), [], "with the chat panel open");
    await page.getByRole("button", { name: "Close panel" }).click();
  });

  test("a screen share is an extra tile shown large for the others, and stops from our button or the browser's", async () => {
    const sharer = await launchChromium({ args: ["--auto-select-desktop-capture-source=Entire screen"] });
    browsers.push(sharer);
    // Alice's page notes which tiles ever showed "connecting…": a new tile shows it from its
    // camera's announcement until the first frame is decoded.
    await alice.page.evaluate(() => {
      window.connectingSeen = {};
      const grid = document.getElementById("videos-grid");
      new MutationObserver(() => {
        for (const t of grid.querySelectorAll("div[name='video-feed']")) {
          const note = t.querySelector(".tile-connecting");
          if (note && getComputedStyle(note).display !== "none") window.connectingSeen[t.getAttribute("aria-label")] = note.textContent;
        }
      }).observe(grid, { subtree: true, childList: true, attributes: true, attributeFilter: ["data-video", "data-frames"] });
    });
    await enterRoom(sharer, server.url, ROOM, "Sam");
    await waitInPage(sharer.page, () => document.getElementById("connection-state").dataset.state === "connected", 20_000);
    await sharer.page.getByRole("button", { name: "Share screen" }).click();
    await sharer.page.getByRole("button", { name: "Stop sharing" }).waitFor();
    const { page } = alice;
    // The others learn from the track metadata (source "screen") that it is a screen share:
    // it gets a tile of its own, next to Sam's camera.
    const screenTile = page.getByRole("group", { name: "Sam (screen)" });
    await eventually("Alice sees Sam's screen, large", async () => {
      if ((await screenTile.count()) === 0) return false;
      const ok = await screenTile.evaluate((t) => t.dataset.kind === "screen" && t.querySelector("video").videoWidth > 0 && t.dataset.spotlight === "true");
      return ok;
    }, { timeoutMs: 30_000 });
    await new Promise((r) => setTimeout(r, 400));
    const g = await readGeometry(page);
    assertTilesFit(g, "screen share");
    const widest = g.tiles.reduce((a, b) => (b.box.width > a.box.width ? b : a));
    assert.equal(widest.id, await screenTile.getAttribute("id"));
    await page.screenshot({ path: join(artifactsDir(), "room-screenshare-1280x800.png") });
    // Sam's camera tile is still there too; it said "connecting…" until its first frame.
    const samTile = page.getByRole("group", { name: "Sam", exact: true });
    assert.equal(await samTile.count(), 1);
    await eventually("Sam's camera is decoded", () => samTile.evaluate((t) => t.dataset.frames === "yes"));
    assert.equal(await page.evaluate(() => window.connectingSeen.Sam), "connecting…");
    assert.equal(await samTile.locator(".tile-connecting").isVisible(), false);
    // Firefox shows it large as well.
    await waitInPage(dave.page, () => {
      const t = Array.from(document.querySelectorAll("#videos-grid div[name='video-feed']")).find((e) => e.getAttribute("aria-label") === "Sam (screen)");
      return !!t && t.dataset.kind === "screen" && t.dataset.spotlight === "true" && t.querySelector("video").videoWidth > 0;
    }, 30_000);
    await dave.page.screenshot({ path: join(artifactsDir(), "room-screenshare-firefox-1280x800.png") });

    await sharer.page.getByRole("button", { name: "Stop sharing" }).click();
    await eventually("the screen tile goes away", async () => (await screenTile.count()) === 0);
    assert.equal((await readGeometry(page)).layout.mode, "grid");

    // Again, ended by the browser (its "Stop sharing" ends the track).
    await sharer.page.getByRole("button", { name: "Share screen" }).click();
    await eventually("Alice sees the second share", async () => (await screenTile.count()) === 1, { timeoutMs: 30_000 });
    await sharer.page.evaluate(() => {
      const v = document.getElementById("video-local-screen");
      const track = v.srcObject.getVideoTracks()[0];
      track.stop();
      track.dispatchEvent(new Event("ended"));
    });
    await sharer.page.getByRole("button", { name: "Share screen" }).waitFor();
    await eventually("the screen tile goes away again", async () => (await screenTile.count()) === 0);
    await sharer.page.getByRole("button", { name: "Leave call" }).click();
    await waitInPage(page, () => document.getElementById("announcer").textContent === "Sam left");
  });

  test("Leave shows 'You left' with Rejoin, which goes straight back into the call", async () => {
    const { page } = carol;
    await carol.page.bringToFront();
    await page.getByRole("button", { name: "Leave call" }).click();
    await page.getByRole("heading", { name: "You left the meeting" }).waitFor();
    assert.equal(await page.locator("#toggle-mic").isDisabled(), true, "toggles are off after leaving");
    await page.screenshot({ path: join(artifactsDir(), "left-1280x800.png") });
    await waitInPage(alice.page, () => document.getElementById("announcer").textContent === "Carol left");
    await page.getByRole("button", { name: "Rejoin" }).click();
    await waitInPage(page, () => !!window.videoroom?.room && document.getElementById("connection-state").dataset.state === "connected", 20_000);
    assert.equal(await page.locator("#prejoin").count(), 0, "no pre-join screen on Rejoin");
    assert.equal(await page.locator("#feed-local-peer div[name='video-label']").textContent(), "Carol (you)");
    await waitInPage(alice.page, () => document.getElementById("announcer").textContent === "Carol joined");
  });

  test("a second visit prefills the name from the last one", async () => {
    const page = await alice.ctx.newPage();
    await page.goto(`${server.url}/room/${encodeURIComponent(ROOM)}`);
    await page.getByRole("heading", { name: "Ready to join?" }).waitFor();
    assert.equal(await page.getByRole("textbox", { name: "Your name" }).inputValue(), "Alice Smith");
    await page.close();
  });
});
