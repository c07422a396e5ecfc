// A participant without camera and microphone still joins: it watches and listens, the others see
// it in the participants list with a tile of its own. Uses $VIDEOROOM_BIN (support.mjs).

import { test } from "node:test";
import assert from "node:assert/strict";
import { enterRoom, expectLiveTiles, participantsText, readTiles, serverAndBrowsers, waitInPage } from "./support.mjs";

const server = serverAndBrowsers();

test("a participant without camera and microphone joins as a viewer and sees the others", async () => {
  const speaker = await server.launchChromium();
  const viewer = await server.launchChromium({ withoutDevices: true });
  await enterRoom(speaker, server.url, "webinar", "Speaker");
  await enterRoom(viewer, server.url, "webinar", "Viewer");

  await expectLiveTiles(viewer.page, ["Speaker"], 45_000);
  const banner = await viewer.page.evaluate(() => document.getElementById("videochat-error").textContent);
  assert.match(banner, /No camera or microphone was found/);
  const toggles = await viewer.page.evaluate(() =>
    ["toggle-mic", "toggle-camera"].map((id) => document.getElementById(id).disabled),
  );
  assert.deepEqual(toggles, [true, true]);

  await waitInPage(speaker.page, () => document.getElementById("participants-list").textContent.includes("Viewer"), 15_000);
  assert.equal(await participantsText(speaker.page), "Participants: Speaker, Viewer");
  const tiles = await readTiles(speaker.page);
  assert.deepEqual(tiles.map((t) => t.label), ["Viewer"]);
  assert.equal(tiles[0].videoStats, null, "a viewer sends no media");
});
