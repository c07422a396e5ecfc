// A participant whose machine drops off the network: its browser is frozen (SIGSTOP on every
// process), so its WebSocket stays open but no media, no ICE consent answers and no heartbeats
// arrive. The others must drop its tile through the media plane's failure detection, long before
// the signalling would notice (heartbeat 30 s, idle timeout 60 s). Uses $VIDEOROOM_BIN.

import { test } from "node:test";
import assert from "node:assert/strict";
import { enterRoom, eventually, expectLiveTiles, participantsText, readTiles, serverAndBrowsers } from "./support.mjs";

const server = serverAndBrowsers();

test("when a participant's browser freezes the others drop its tile within 10 s", async () => {
  const stays = await server.launchChromium();
  const freezes = await server.launchChromium();
  await enterRoom(stays, server.url, "flaky-wifi", "Stays");
  await enterRoom(freezes, server.url, "flaky-wifi", "Freezes");
  await expectLiveTiles(stays.page, ["Freezes"], 45_000);

  const frozenAt = Date.now();
  assert.ok(freezes.freeze() > 1, "browser processes frozen");
  await eventually(
    "the frozen participant's tile to go",
    async () => !(await readTiles(stays.page)).some((t) => t.label === "Freezes"),
    { timeoutMs: 10_000, intervalMs: 200 },
  );
  console.log(`tile dropped ${Date.now() - frozenAt} ms after the freeze`);
  assert.equal(await participantsText(stays.page), "Participants: Stays");
});
