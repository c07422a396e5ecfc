// Chat next to the tutorial's client: the tutorial's room page (phoenix.js 1.6.0, the version the
// Elixir demo shipped) binds only `mediaEvent` on its `room:<id>` channel. When someone on our
// meeting page chats, the server pushes `chat` events to every member, the tutorial's client
// included: it must ignore them and keep working. Against the videoroom binary ($VIDEOROOM_BIN).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";

import { clients } from "./support/phoenix_clients.mjs";
import { Recorder, outcome, waitFor } from "./support/util.mjs";
import { startServer } from "../browser/support.mjs";

const tutorialPhoenix = clients.find((c) => c.version === "1.6.0");

let server;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server?.stop();
});

/** A socket and `room:<room>` channel as a room page opens them; media events are collected. */
async function member(Socket, room, displayName) {
  const rec = new Recorder();
  // A 1 s heartbeat (default 30 s) as in the conformance tests: phoenix.js 1.6.0 leaves its
  // heartbeat timer running after disconnect(), which would keep this process alive that long.
  const socket = new Socket(`${server.url.replace(/^http/, "ws")}/socket`, { logger: rec.logger, heartbeatIntervalMs: 1000 });
  rec.attach(socket);
  socket.connect();
  const channel = socket.channel(`room:${room}`, {});
  const media = [];
  // The tutorial's only binding.
  channel.on("mediaEvent", (event) => media.push(JSON.parse(event.data)));
  assert.equal((await outcome(channel.join())).status, "ok");
  channel.push("mediaEvent", {
    data: JSON.stringify({ type: "join", data: { receiveMedia: true, metadata: { displayName } } }),
  });
  await waitFor(() => media.some((e) => e.type === "peerAccepted"), { what: `${displayName} accepted` });
  return { socket, channel, media, rec };
}

test("the tutorial's client, which binds only mediaEvent, receives chat, ignores it and keeps working", async () => {
  const tutorial = await member(tutorialPhoenix.Socket, "mixed", "Tutorial");
  const ours = await member(clients[1].Socket, "mixed", "Ann");
  try {
    await waitFor(() => tutorial.media.some((e) => e.type === "peerJoined"), { what: "Ann's peerJoined" });
    assert.deepEqual(await outcome(ours.channel.push("chat", { text: "<b>hi</b> all" })), { status: "ok", response: {} });
    // The chat event reaches the tutorial's socket ...
    const chat = await waitFor(() => tutorial.rec.frames.find((f) => f[3] === "chat"), { what: "the chat frame" });
    assert.equal(chat[2], "room:mixed");
    assert.equal(chat[4].text, "<b>hi</b> all");
    assert.equal(chat[4].displayName, "Ann");
    // ... and changes nothing there: the channel stays joined on the same connection, and the
    // next media event (Ann leaving) arrives and is handled as before.
    assert.equal(tutorial.channel.state, "joined");
    assert.deepEqual(tutorial.rec.closes, []);
    assert.deepEqual(tutorial.rec.errors, []);
    ours.channel.leave();
    await waitFor(() => tutorial.media.some((e) => e.type === "peerLeft"), { what: "Ann's peerLeft" });
    assert.equal(tutorial.channel.state, "joined");
    assert.equal(tutorial.rec.opens, 1);
  } finally {
    // Closed before the server stops, each socket's close handshake completed.
    await Promise.all([ours.socket, tutorial.socket].map((socket) => new Promise((resolve) => socket.disconnect(resolve))));
  }
});
