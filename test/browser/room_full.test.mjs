// A room at its size limit (MAX_PEERS_PER_ROOM=1): the next person is refused with `peerDenied`
// and the page says so, while the one inside sees nobody new. Uses $VIDEOROOM_BIN (support.mjs).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { enterRoom, launchChromium, participantsText, readTiles, startServer, waitInPage } from "./support.mjs";

let server;
const browsers = [];

before(async () => {
  server = await startServer({ env: { MAX_PEERS_PER_ROOM: "1" } });
});

after(async () => {
  for (const b of browsers) await b.close();
  await server?.stop();
});

test("a participant refused by a full room sees why, and the one inside sees nobody new", async () => {
  const first = await launchChromium();
  browsers.push(first);
  const second = await launchChromium();
  browsers.push(second);
  await enterRoom(first, server.url, "tiny", "Inside");
  await waitInPage(first.page, () => document.getElementById("connection-state").dataset.state === "connected", 20_000);
  await enterRoom(second, server.url, "tiny", "Outside");
  await waitInPage(second.page, () => document.getElementById("connection-state").dataset.state === "failed", 20_000);
  const banner = await second.page.evaluate(() => {
    const el = document.getElementById("videochat-error");
    return el.style.display === "block" ? el.textContent : "";
  });
  assert.equal(banner, "The server did not let you into the room: room is full.");
  // Refused people stop their camera and microphone.
  assert.equal(
    await second.page.evaluate(() => window.videoroom.room.localStream.getTracks().every((t) => t.readyState === "ended")),
    true,
  );
  await new Promise((r) => setTimeout(r, 1000));
  assert.deepEqual(await readTiles(first.page), []);
  assert.equal(await participantsText(first.page), "Participants: Inside");
});
