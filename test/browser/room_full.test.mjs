// A room at its size limit (MAX_PEERS_PER_ROOM=1): the next person is refused with `peerDenied`
// and the page says so before it ever asks for the camera, while the one inside sees nobody new. Uses $VIDEOROOM_BIN (support.mjs).

import { test } from "node:test";
import assert from "node:assert/strict";
import { enterRoom, participantsText, readTiles, serverAndBrowsers, waitInPage } from "./support.mjs";

const server = serverAndBrowsers({ env: { MAX_PEERS_PER_ROOM: "1" } });

test("a participant refused by a full room sees why before any camera turns on, and the one inside sees nobody new", async () => {
  const first = await server.launchChromium();
  const second = await server.launchChromium();
  // Counts camera/microphone requests on every page of the refused participant.
  await second.page.addInitScript(() => {
    window.__getUserMediaCalls = 0;
    const original = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
    navigator.mediaDevices.getUserMedia = (constraints) => {
      window.__getUserMediaCalls++;
      return original(constraints);
    };
  });
  await enterRoom(first, server.url, "tiny", "Inside");
  await waitInPage(first.page, () => document.getElementById("connection-state").dataset.state === "connected", 20_000);
  await enterRoom(second, server.url, "tiny", "Outside");
  await waitInPage(second.page, () => document.getElementById("connection-state").dataset.state === "failed", 20_000);
  const banner = await second.page.evaluate(() => {
    const el = document.getElementById("videochat-error");
    return el.style.display === "block" ? el.textContent : "";
  });
  assert.equal(banner, "The server did not let you into the room: room is full.");
  // The refusal came before the camera and microphone were ever asked for.
  assert.equal(await second.page.evaluate(() => window.__getUserMediaCalls), 0);
  assert.equal(await second.page.evaluate(() => window.videoroom.room.localStream === undefined), true);
  // The page says so on its end screen, offers Rejoin, and its toggles no longer look active.
  await second.page.getByRole("heading", { name: "You could not join" }).waitFor();
  await second.page.getByRole("button", { name: "Rejoin" }).waitFor();
  for (const id of ["toggle-mic", "toggle-camera", "toggle-screen"]) {
    assert.equal(await second.page.locator(`#${id}`).isDisabled(), true, `${id} is disabled`);
  }
  assert.equal(await second.page.locator("#toggle-mic").getAttribute("aria-pressed"), "true");
  assert.equal(await second.page.locator("#toggle-camera").getAttribute("aria-pressed"), "true");
  await new Promise((r) => setTimeout(r, 1000));
  assert.deepEqual(await readTiles(first.page), []);
  assert.equal(await participantsText(first.page), "Participants: Inside");
});
