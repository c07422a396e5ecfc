// Conformance of the Rust Phoenix server with the real, unchanged phoenix.js clients 1.6.0 and
// 1.8.x under Node. The server is the fixture `phoenix_fixture_server` (env PHOENIX_FIXTURE_BIN),
// serving its conformance endpoint at /socket (no origin check):
//   room:*   RoomChannel: join → reply {} then broadcast user_entered {user} and push joined
//            {status: "connected", user_id}; new_msg → broadcast (intercepted: pushed to every
//            member with "transport"), reply ok {}; boom → crash; binary_event D → push binary
//            <<0,1>>, reply ok binary D ++ <<3,4>>; terminate → push you_left {message: "bye!"}
//   custom:* CustomChannel: join action ok → ok {action}, ignore → error {action}, error → crash;
//            event close → the channel stops normally
//            (over LongPoll: new_msg gets no reply and the push says transport ":longpoll");
//            whoami → reply {params, auth_token} as the socket handler saw them; later → reply
//            later from server-side code, with an info push; join payload presence_key → tracked
//            in Presence (presence_state to the joiner, presence_diff broadcasts)
//   echo:*   every event's payload is pushed back under the same event and replied ok with it
//   POST /test/broadcast/<topic>/<event> (JSON body), /test/broadcast_binary/<topic>/<event>
//   (raw body) and POST /test/disconnect/<socket id>; /lponly: LongPoll only (WebSocket 404)
// Frames are observed as the client itself decodes them (Socket#onMessage), as
// [join_ref, ref, topic, event, payload]; what the client sends is taken from its logger.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";

import { WebSocket as WsWebSocket } from "ws";

import { clients } from "./support/phoenix_clients.mjs";
import { FixtureServer } from "./support/fixture.mjs";
import { Recorder, arrayBuffer, bytes, outcome, sleep, waitFor } from "./support/util.mjs";
import { WebSocketBlockingProxy } from "./support/websocket_blocking_proxy.mjs";

const TEST_TIMEOUT_MS = 30_000;
const OK_EMPTY = { status: "ok", response: {} };

let server;
before(async () => {
  server = await FixtureServer.start();
});
after(async () => {
  await server?.stop();
});

let topicCounter = 0;
/** A topic no other test uses: `<prefix>:<client version>-<label>-<n>`. */
function uniqueTopic(prefix, client, label) {
  topicCounter += 1;
  return `${prefix}:v${client.version.replaceAll(".", "")}-${label}-${topicCounter}`;
}

/**
 * Creates a phoenix.js Socket for `client` against `target` (default: the shared fixture's
 * /socket), records it, connects it, and disconnects it when the test ends.
 * heartbeatIntervalMs is 1 s instead of 30 s: every test then also exercises heartbeats, and
 * phoenix.js 1.6.0 (which leaks its heartbeat timer) cannot keep the test process alive for
 * a minute after the last test.
 */
function openSocket(t, client, { target, path = "/socket", ...opts } = {}) {
  const rec = new Recorder();
  const base = target ?? `${server.wsUrl}${path}`;
  const socket = new client.Socket(base, { heartbeatIntervalMs: 1000, logger: rec.logger, ...opts });
  rec.attach(socket);
  socket.connect();
  t.after(() => closeSocket(socket));
  return { socket, rec };
}

function closeSocket(socket) {
  for (const channel of [...socket.channels]) {
    if (channel.state !== "closed") channel.leave(200);
  }
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, 3000);
    socket.disconnect(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

async function join(channel) {
  return outcome(channel.join());
}

/**
 * Joins a fresh `<prefix>:` topic (see uniqueTopic) on `socket` with `payload` and asserts that
 * the join is answered with `reply`; returns the channel, its topic and its join_ref.
 */
async function joinFresh(socket, client, prefix, label, { payload = {}, reply = OK_EMPTY } = {}) {
  const topic = uniqueTopic(prefix, client, label);
  const channel = socket.channel(topic, payload);
  assert.deepEqual(await join(channel), reply);
  return { channel, topic, jr: channel.joinRef() };
}

/**
 * openSocket with the socket `options`, then joinFresh on it (`payload`, `reply`): returns the
 * socket, its recorder, the channel, its topic and its join_ref.
 */
async function openJoined(t, client, prefix, label, { payload, reply, ...options } = {}) {
  const { socket, rec } = openSocket(t, client, options);
  return { socket, rec, ...(await joinFresh(socket, client, prefix, label, { payload, reply })) };
}

/** Records every payload delivered to `channel` for `event` (through the channel's own bindings). */
function collect(channel, event) {
  const seen = [];
  channel.on(event, (payload) => seen.push(payload));
  return seen;
}

/**
 * Two sockets of `client`, one after the other joined to the same fresh `room:` topic, each
 * member's channel collecting `event`: returns the topic and the members `{ rec, channel, got }`.
 */
async function twoMembers(t, client, label, event) {
  const topic = uniqueTopic("room", client, label);
  const members = [];
  for (let i = 0; i < 2; i += 1) {
    const { socket, rec } = openSocket(t, client);
    const channel = socket.channel(topic, {});
    assert.deepEqual(await join(channel), OK_EMPTY);
    members.push({ rec, channel, got: collect(channel, event) });
  }
  return { topic, members };
}

/** A window.sessionStorage stand-in (phoenix.js 1.8 remembers a LongPoll fallback there). */
function memoryStorage() {
  const map = new Map();
  return { map, getItem: (k) => map.get(k) ?? null, setItem: (k, v) => map.set(k, String(v)), removeItem: (k) => map.delete(k) };
}

/** A WebSocket class that sends `Origin: origin`, as a browser page on that origin would. */
function pageOn(origin) {
  return class PageWebSocket extends WsWebSocket {
    constructor(url, protocols) {
      super(url, protocols, { origin });
    }
  };
}

const waitOpts = (rec, what, timeout = 5000) => ({ what, timeout, dump: () => rec.dump() });

for (const client of clients) {
  describe(`${client.name} over WebSocket`, () => {
    test("connects and gets a reply to every heartbeat, so the connection stays open", { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const { socket, rec } = openSocket(t, client, { heartbeatIntervalMs: 100 });
      await waitFor(() => rec.heartbeats.length >= 3, waitOpts(rec, "three heartbeat replies"));
      const sent = rec.pushed("phoenix", "heartbeat").map((p) => p.ref);
      for (const frame of rec.heartbeats) {
        const [joinRef, ref, topic, event, payload] = frame;
        assert.equal(joinRef, null);
        assert.ok(sent.includes(ref), `heartbeat reply ref ${ref} answers a heartbeat the client sent (${sent})`);
        assert.deepEqual([topic, event, payload], ["phoenix", "phx_reply", OK_EMPTY]);
      }
      assert.equal(socket.isConnected(), true);
      assert.equal(rec.opens, 1);
      assert.deepEqual(rec.closes, []);
    });

    test("joining a room replies ok first, then the user_entered broadcast, then the joined push with the connect params", { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const { rec, socket } = openSocket(t, client, { params: { user_id: "u-join" } });
      const topic = uniqueTopic("room", client, "join");
      const channel = socket.channel(topic, { user: "alice" });
      const entered = collect(channel, "user_entered");
      const joinedPushes = collect(channel, "joined");
      const reply = await join(channel);
      assert.deepEqual(reply, { status: "ok", response: {} });
      const jr = channel.joinRef();
      await waitFor(() => rec.on(topic).length >= 3, waitOpts(rec, "reply, user_entered and joined"));
      await sleep(100);
      assert.deepEqual(rec.on(topic), [
        [jr, jr, topic, "phx_reply", OK_EMPTY],
        [null, null, topic, "user_entered", { user: "alice" }],
        [jr, null, topic, "joined", { status: "connected", user_id: "u-join" }],
      ]);
      assert.deepEqual(rec.pushed(topic, "phx_join"), [{ topic, event: "phx_join", join_ref: jr, ref: jr }]);
      assert.deepEqual(entered, [{ user: "alice" }]);
      assert.deepEqual(joinedPushes, [{ status: "connected", user_id: "u-join" }]);
      assert.equal(channel.state, "joined");
    });

    test("a push is answered by its reply and the server's push of the same event", { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const { rec, channel, topic, jr } = await openJoined(t, client, "echo", "push");
      const payload = { text: "héllo ✓", n: 42, list: [1, "two", null, true], nested: { a: { b: [] } } };
      const echoed = collect(channel, "say");
      const reply = await outcome(channel.push("say", payload));
      assert.deepEqual(reply, { status: "ok", response: payload });
      await waitFor(() => echoed.length === 1, waitOpts(rec, "the echoed push"));
      assert.deepEqual(echoed, [payload]);
      const [sent] = rec.pushed(topic, "say");
      assert.deepEqual(sent, { topic, event: "say", join_ref: jr, ref: sent.ref });
      const frames = rec.on(topic).filter((f) => f[3] !== "phx_reply" || f[1] !== jr);
      assert.deepEqual(
        frames.sort((a, b) => a[3].localeCompare(b[3])),
        [
          [jr, sent.ref, topic, "phx_reply", { status: "ok", response: payload }],
          [jr, null, topic, "say", payload],
        ].sort((a, b) => a[3].localeCompare(b[3])),
      );
    });

    test("pushes on one channel are answered in the order they were sent", { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const { rec, channel, topic } = await openJoined(t, client, "echo", "order");
      const echoed = collect(channel, "seq");
      const replies = await Promise.all(Array.from({ length: 50 }, (_, i) => outcome(channel.push("seq", { i }))));
      assert.deepEqual(replies, Array.from({ length: 50 }, (_, i) => ({ status: "ok", response: { i } })));
      await waitFor(() => echoed.length === 50, waitOpts(rec, "50 echoed pushes"));
      assert.deepEqual(echoed, Array.from({ length: 50 }, (_, i) => ({ i })));
      const replyRefs = rec.on(topic, "phx_reply").slice(1).map((f) => f[1]);
      assert.deepEqual(replyRefs, rec.pushed(topic, "seq").map((p) => p.ref));
    });

    test("new_msg is broadcast to every member of the room, each getting it with its own join_ref", { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const { topic, members } = await twoMembers(t, client, "new-msg", "new_msg");
      const reply = await outcome(members[0].channel.push("new_msg", { body: "hi!" }));
      assert.deepEqual(reply, { status: "ok", response: {} });
      const expected = { body: "hi!", transport: ":websocket" };
      await waitFor(() => members.every((m) => m.got.length === 1), waitOpts(members[0].rec, "new_msg on both sockets"));
      await sleep(100);
      for (const { rec, channel, got } of members) {
        assert.deepEqual(rec.on(topic, "new_msg"), [[channel.joinRef(), null, topic, "new_msg", expected]]);
        assert.deepEqual(got, [expected]);
      }
    });

    test("a server-side broadcast reaches every member with null join_ref and ref", { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const { topic, members } = await twoMembers(t, client, "broadcast", "announcement");
      const payload = { text: "server says hi", count: 3, tags: ["a", "b"] };
      await server.broadcast(topic, "announcement", payload);
      await waitFor(() => members.every((m) => m.got.length === 1), waitOpts(members[0].rec, "the broadcast on both sockets"));
      for (const { rec, got } of members) {
        assert.deepEqual(rec.on(topic, "announcement"), [[null, null, topic, "announcement", payload]]);
        assert.deepEqual(got, [payload]);
      }
    });

    test("an ArrayBuffer push goes out as a binary frame and comes back as a binary reply and a binary push", { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const { rec, channel, topic, jr } = await openJoined(t, client, "room", "bin");
      const pushed = collect(channel, "binary_event");
      const reply = await outcome(channel.push("binary_event", arrayBuffer([1, 2])));
      assert.equal(reply.status, "ok");
      assert.deepEqual(bytes(reply.response), [1, 2, 3, 4]);
      await waitFor(() => pushed.length === 1, waitOpts(rec, "the binary push"));
      assert.deepEqual(bytes(pushed[0]), [0, 1]);
      const [sent] = rec.pushed(topic, "binary_event");
      const replyFrame = rec.frames.find((f) => f[2] === topic && f[3] === "phx_reply" && f[1] === sent.ref);
      assert.ok(replyFrame, `reply to ref ${sent.ref}\n${rec.dump()}`);
      assert.deepEqual(replyFrame.slice(0, 4), [jr, sent.ref, topic, "phx_reply"]);
      assert.equal(replyFrame[4].status, "ok");
      // An ArrayBuffer payload can only come out of the client's binary decoder.
      assert.ok(replyFrame[4].response instanceof ArrayBuffer);
      const pushFrame = rec.on(topic, "binary_event")[0];
      assert.deepEqual(pushFrame.slice(0, 4), [jr, null, topic, "binary_event"]);
      assert.ok(pushFrame[4] instanceof ArrayBuffer);
    });

    test("a 100 KiB binary payload with every byte value round-trips unchanged", { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const { rec, channel } = await openJoined(t, client, "echo", "bigbin");
      const data = new Uint8Array(100 * 1024);
      data.set(Array.from({ length: 256 }, (_, i) => i));
      data.set(randomBytes(data.length - 256), 256);
      const pushed = collect(channel, "blob");
      const reply = await outcome(channel.push("blob", data.buffer.slice(0)));
      assert.equal(reply.status, "ok");
      assert.deepEqual(bytes(reply.response), Array.from(data));
      await waitFor(() => pushed.length === 1, waitOpts(rec, "the echoed binary push"));
      assert.deepEqual(bytes(pushed[0]), Array.from(data));
    });

    test("leaving replies ok, then closes the channel with phx_close, and the room says you_left", { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const { socket, rec, channel, topic, jr } = await openJoined(t, client, "room", "leave");
      let closed = 0;
      channel.onClose(() => {
        closed += 1;
      });
      const reply = await outcome(channel.leave());
      assert.deepEqual(reply, { status: "ok", response: {} });
      await waitFor(() => rec.on(topic, "phx_close").length === 1 && rec.on(topic, "you_left").length === 1, waitOpts(rec, "phx_close and you_left"));
      await sleep(100);
      const [leave] = rec.pushed(topic, "phx_leave");
      assert.deepEqual(leave, { topic, event: "phx_leave", join_ref: jr, ref: leave.ref });
      const replyAt = rec.indexOf((f) => f[2] === topic && f[3] === "phx_reply" && f[1] === leave.ref);
      const closeAt = rec.indexOf((f) => f[2] === topic && f[3] === "phx_close");
      assert.deepEqual(rec.frames[replyAt], [jr, leave.ref, topic, "phx_reply", OK_EMPTY]);
      assert.deepEqual(rec.frames[closeAt], [jr, jr, topic, "phx_close", {}]);
      assert.ok(replyAt < closeAt, "the leave reply precedes phx_close");
      assert.deepEqual(
        rec.on(topic, "you_left"),
        [[jr, null, topic, "you_left", { message: "bye!" }]],
        "the push from terminate carries the instance's join_ref",
      );
      assert.equal(closed, 1);
      assert.equal(channel.state, "closed");
      assert.equal(socket.channels.includes(channel), false);
    });

    test("a refused join gets the channel's error reply, no phx_close, and the client's retries are refused the same way", { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const { rec, socket } = openSocket(t, client, { rejoinAfterMs: () => 100 });
      const topic = uniqueTopic("custom", client, "ignore");
      const channel = socket.channel(topic, { action: "ignore" });
      const errors = [];
      channel.join().receive("error", (response) => errors.push(response));
      await waitFor(() => errors.length >= 2, waitOpts(rec, "the first join and one retry refused"));
      channel.leave();
      assert.deepEqual(errors.slice(0, 2), [{ action: "ignore" }, { action: "ignore" }]);
      const joins = rec.pushed(topic, "phx_join").slice(0, 2);
      assert.equal(joins.length, 2);
      assert.notEqual(joins[0].join_ref, joins[1].join_ref, "a retry is a new join with a new join_ref");
      const replies = rec.on(topic, "phx_reply").slice(0, 2);
      assert.deepEqual(
        replies,
        joins.map((j) => [j.join_ref, j.ref, topic, "phx_reply", { status: "error", response: { action: "ignore" } }]),
      );
      assert.deepEqual(rec.on(topic, "phx_close"), []);
    });

    test("a join that crashes on the server is answered with reason \"join crashed\"", { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const { rec, socket } = openSocket(t, client);
      const topic = uniqueTopic("custom", client, "crash");
      const channel = socket.channel(topic, { action: "error" });
      const reply = await join(channel);
      channel.leave();
      assert.deepEqual(reply, { status: "error", response: { reason: "join crashed" } });
      const [sent] = rec.pushed(topic, "phx_join");
      assert.deepEqual(rec.on(topic)[0], [sent.join_ref, sent.ref, topic, "phx_reply", { status: "error", response: { reason: "join crashed" } }]);
      assert.equal(socket.isConnected(), true, "the socket survives a crashing join");
      const other = socket.channel(uniqueTopic("custom", client, "after-crash"), { action: "ok" });
      assert.deepEqual(await join(other), { status: "ok", response: { action: "ok" } });
    });

    test("joining a topic no channel serves is answered \"unmatched topic\" with a null join_ref", { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const { rec, socket } = openSocket(t, client);
      const topic = uniqueTopic("nowhere", client, "unmatched");
      const channel = socket.channel(topic, {});
      const reply = await join(channel);
      channel.leave();
      assert.deepEqual(reply, { status: "error", response: { reason: "unmatched topic" } });
      const [sent] = rec.pushed(topic, "phx_join");
      assert.deepEqual(rec.on(topic)[0], [null, sent.ref, topic, "phx_reply", { status: "error", response: { reason: "unmatched topic" } }]);
    });

    test("a second channel object on a joined topic replaces the first: the old instance is closed and exactly one remains", { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const { socket, rec, channel: first, topic, jr: jr1 } = await openJoined(t, client, "room", "dup");
      let firstClosed = 0;
      first.onClose(() => {
        firstClosed += 1;
      });
      const second = socket.channel(topic, {});
      assert.deepEqual(await join(second), { status: "ok", response: {} });
      const jr2 = second.joinRef();
      assert.notEqual(jr1, jr2);
      await waitFor(() => firstClosed === 1, waitOpts(rec, "the first channel object to close"));
      assert.equal(first.state, "closed");
      assert.equal(second.state, "joined");
      // The client left the first instance before joining again (leaveOpenTopic).
      const [leave] = rec.pushed(topic, "phx_leave");
      assert.equal(leave.join_ref, jr1);
      await waitFor(() => rec.on(topic, "phx_close").length >= 1, waitOpts(rec, "phx_close for the first instance"));
      assert.deepEqual(
        rec.on(topic, "phx_close").map((f) => f.slice(0, 5)),
        [[jr1, jr1, topic, "phx_close", {}]],
      );
      // Exactly one server-side instance is subscribed now: one new_msg push, for the new join_ref.
      const got = collect(second, "new_msg");
      assert.deepEqual(await outcome(second.push("new_msg", { body: "once" })), { status: "ok", response: {} });
      await waitFor(() => got.length === 1, waitOpts(rec, "new_msg on the second channel"));
      await sleep(200);
      assert.deepEqual(rec.on(topic, "new_msg"), [[jr2, null, topic, "new_msg", { body: "once", transport: ":websocket" }]]);
    });

    test("a join that times out on the client is left and retried, and ends up joined exactly once", { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const { rec, socket } = openSocket(t, client, { rejoinAfterMs: () => 100 });
      const busy = socket.channel(uniqueTopic("room", client, "busy"), {});
      assert.equal((await join(busy)).status, "ok");
      // The fixture's `slow` handler holds the socket for 800 ms: frames queue up behind it.
      const slow = outcome(busy.push("slow", { ms: 800 }, 5000));
      const topic = uniqueTopic("echo", client, "join-timeout");
      const channel = socket.channel(topic, {});
      const statuses = [];
      const joinPush = channel.join(300);
      for (const status of ["ok", "error", "timeout"]) joinPush.receive(status, () => statuses.push(status));
      await waitFor(() => statuses.includes("timeout"), waitOpts(rec, "the join timeout"));
      const jr1 = rec.pushed(topic, "phx_join")[0].join_ref;
      assert.deepEqual(await slow, OK_EMPTY);
      await waitFor(() => channel.state === "joined", waitOpts(rec, "the retried join"));
      const jr2 = channel.joinRef();
      assert.notEqual(jr2, jr1);
      // What the client sent: (join JRn, leave JRn on its timeout)+ — as many as timed out while
      // the socket was held — then the join that succeeded.
      const sent = rec.pushed(topic).map((p) => [p.event, p.join_ref]);
      const left = [];
      for (let i = 0; i + 1 < sent.length; i += 2) {
        assert.deepEqual([sent[i], sent[i + 1]], [["phx_join", sent[i][1]], ["phx_leave", sent[i][1]]], JSON.stringify(sent));
        left.push(sent[i][1]);
      }
      assert.deepEqual(sent.at(-1), ["phx_join", jr2]);
      assert.equal(left[0], jr1);
      assert.equal(new Set([...left, jr2]).size, left.length + 1, "every join has its own join_ref");
      // The server joined and then closed every timed-out instance, in order.
      await waitFor(() => rec.on(topic, "phx_close").length === left.length, waitOpts(rec, "phx_close of every timed-out instance"));
      assert.deepEqual(rec.on(topic, "phx_close"), left.map((jr) => [jr, jr, topic, "phx_close", {}]));
      const echoed = collect(channel, "once");
      assert.deepEqual(await outcome(channel.push("once", { n: 1 })), { status: "ok", response: { n: 1 } });
      await sleep(200);
      assert.deepEqual(rec.on(topic, "once"), [[jr2, null, topic, "once", { n: 1 }]], "one server-side instance answers");
      assert.deepEqual(echoed, [{ n: 1 }]);
    });

    test("after the channel crashes (phx_error) the client rejoins with a new join_ref and the channel works again", { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const { rec, channel, topic, jr: jr1 } = await openJoined(t, client, "room", "crash", { rejoinAfterMs: () => 100, payload: { user: "bob" } });
      const errors = [];
      channel.onError((reason) => errors.push(reason));
      const boom = channel.push("boom", {}, 3000);
      await waitFor(() => rec.on(topic, "phx_error").length === 1, waitOpts(rec, "phx_error"));
      assert.deepEqual(rec.on(topic, "phx_error"), [[jr1, jr1, topic, "phx_error", { reason: "channel_crash" }]]);
      assert.equal(errors.length, 1);
      await waitFor(() => channel.state === "joined" && channel.joinRef() !== jr1, waitOpts(rec, "the rejoin"));
      const jr2 = channel.joinRef();
      await waitFor(() => rec.on(topic, "joined").length === 2, waitOpts(rec, "the second joined push"));
      const afterError = rec.frames
        .slice(rec.indexOf((f) => f[2] === topic && f[3] === "phx_error") + 1)
        .filter((f) => f[2] === topic && f[0] !== jr1 && f[3] !== "you_left");
      assert.deepEqual(afterError.slice(0, 3), [
        [jr2, jr2, topic, "phx_reply", OK_EMPTY],
        [null, null, topic, "user_entered", { user: "bob" }],
        [jr2, null, topic, "joined", { status: "connected", user_id: null }],
      ]);
      // The crashed instance's terminate push, if any, must carry its join_ref so that phoenix.js
      // drops it as outdated instead of handing it to the rejoined channel.
      for (const frame of rec.on(topic, "you_left")) {
        assert.deepEqual(frame, [jr1, null, topic, "you_left", { message: "bye!" }], "a push from terminate carries the ended instance's join_ref");
      }
      const [boomPush] = rec.pushed(topic, "boom");
      assert.equal(rec.frames.some((f) => f[3] === "phx_reply" && f[1] === boomPush.ref), false, "the crashing event gets no reply");
      assert.deepEqual(await outcome(channel.push("new_msg", { body: "back" })), { status: "ok", response: {} });
      assert.deepEqual(await outcome(boom), { status: "timeout", response: {} });
    });

    test("a channel the server stops normally gets phx_close and is not rejoined", { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const { socket, rec, channel, topic, jr } = await openJoined(t, client, "custom", "close", { rejoinAfterMs: () => 50, payload: { action: "ok" }, reply: { status: "ok", response: { action: "ok" } } });
      let closed = 0;
      channel.onClose(() => {
        closed += 1;
      });
      channel.push("close", { body: "bye!" }, 1000);
      await waitFor(() => closed === 1, waitOpts(rec, "phx_close"));
      assert.deepEqual(rec.on(topic, "phx_close"), [[jr, jr, topic, "phx_close", {}]]);
      assert.equal(channel.state, "closed");
      await sleep(500);
      assert.equal(rec.pushed(topic, "phx_join").length, 1, "no rejoin after phx_close");
      assert.equal(socket.isConnected(), true);
    });

    test("a binary server-side broadcast arrives as an ArrayBuffer with null join_ref and ref", { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const { rec, channel, topic } = await openJoined(t, client, "room", "binbroadcast");
      const got = collect(channel, "frame");
      await server.broadcastBinary(topic, "frame", Uint8Array.from([9, 0, 255, 7]));
      await waitFor(() => got.length === 1, waitOpts(rec, "the binary broadcast"));
      assert.deepEqual(bytes(got[0]), [9, 0, 255, 7]);
      const [frame] = rec.on(topic, "frame");
      assert.deepEqual(frame.slice(0, 4), [null, null, topic, "frame"]);
    });

    test("a reply sent later from server-side code reaches the waiting push, after the channel's own push", { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const { rec, channel, topic, jr } = await openJoined(t, client, "room", "later");
      const infos = collect(channel, "info");
      const reply = await outcome(channel.push("later", { x: [1, 2] }));
      assert.deepEqual(reply, { status: "ok", response: { later: { x: [1, 2] } } });
      assert.deepEqual(infos, [{ value: { x: [1, 2] } }]);
      const [sent] = rec.pushed(topic, "later");
      const infoAt = rec.indexOf((f) => f[2] === topic && f[3] === "info");
      const replyAt = rec.indexOf((f) => f[2] === topic && f[3] === "phx_reply" && f[1] === sent.ref);
      assert.deepEqual(rec.frames[infoAt], [jr, null, topic, "info", { value: { x: [1, 2] } }]);
      assert.deepEqual(rec.frames[replyAt], [jr, sent.ref, topic, "phx_reply", { status: "ok", response: { later: { x: [1, 2] } } }]);
      assert.ok(infoAt < replyAt, "frames of one channel keep the order it produced them in");
    });

    test("presence: each joiner gets presence_state, everyone gets presence_diff, and phoenix.js Presence lists both users until one leaves", { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const a = openSocket(t, client);
      const b = openSocket(t, client);
      const topic = uniqueTopic("room", client, "presence");
      const chanA = a.socket.channel(topic, { presence_key: "alice" });
      const chanB = b.socket.channel(topic, { presence_key: "bob" });
      const presA = new client.Presence(chanA);
      const presB = new client.Presence(chanB);
      const listed = (presence) => presence.list((key, { metas }) => ({ key, metas })).sort((x, y) => x.key.localeCompare(y.key));
      assert.equal((await join(chanA)).status, "ok");
      await waitFor(() => listed(presA).length === 1, waitOpts(a.rec, "alice in her own presence list"));
      assert.equal((await join(chanB)).status, "ok");
      await waitFor(() => listed(presA).length === 2 && listed(presB).length === 2, waitOpts(b.rec, "both users in both lists"));
      const fromA = listed(presA);
      assert.deepEqual(fromA, listed(presB), "both clients see the same presences, phx_refs included");
      assert.deepEqual(fromA.map((p) => p.key), ["alice", "bob"]);
      for (const { key, metas } of fromA) {
        assert.equal(metas.length, 1);
        assert.equal(metas[0].name, key);
        assert.equal(typeof metas[0].phx_ref, "string");
        assert.ok(metas[0].phx_ref.length > 0);
      }
      const bobMeta = fromA[1].metas[0];
      const stateB = b.rec.on(topic, "presence_state");
      assert.ok(stateB.length >= 1, b.rec.dump());
      assert.deepEqual(stateB[0].slice(0, 4), [chanB.joinRef(), null, topic, "presence_state"]);
      const diffsA = a.rec.on(topic, "presence_diff").filter((f) => "bob" in f[4].joins);
      assert.deepEqual(diffsA, [[null, null, topic, "presence_diff", { joins: { bob: { metas: [bobMeta] } }, leaves: {} }]]);
      assert.deepEqual(await outcome(chanB.leave()), OK_EMPTY);
      await waitFor(() => listed(presA).length === 1, waitOpts(a.rec, "bob gone from alice's list"));
      assert.deepEqual(listed(presA).map((p) => p.key), ["alice"]);
      const leaves = a.rec.on(topic, "presence_diff").filter((f) => "bob" in f[4].leaves);
      assert.deepEqual(leaves, [[null, null, topic, "presence_diff", { joins: {}, leaves: { bob: { metas: [bobMeta] } } }]]);
    });

    test("the 101st channel joined on one socket is refused with \"too many channels joined\"", { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const { rec, socket } = openSocket(t, client);
      const prefix = uniqueTopic("echo", client, "limit");
      const channels = Array.from({ length: 100 }, (_, i) => socket.channel(`${prefix}-${i}`, {}));
      const replies = await Promise.all(channels.map((c) => join(c)));
      assert.deepEqual(new Set(replies.map((r) => r.status)), new Set(["ok"]));
      const extraTopic = `${prefix}-100`;
      const extra = socket.channel(extraTopic, {});
      const reply = await join(extra);
      extra.leave();
      assert.deepEqual(reply, { status: "error", response: { reason: "too many channels joined" } });
      const [sent] = rec.pushed(extraTopic, "phx_join");
      assert.deepEqual(rec.on(extraTopic)[0], [sent.join_ref, sent.ref, extraTopic, "phx_reply", { status: "error", response: { reason: "too many channels joined" } }]);
      // Leaving one frees a slot.
      assert.deepEqual(await outcome(channels[0].leave()), OK_EMPTY);
      const again = socket.channel(`${prefix}-101`, {});
      assert.equal((await join(again)).status, "ok");
    });

    test("the \"disconnect\" broadcast on the socket id closes the socket with 1001; the client reconnects and rejoins every channel", { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const userId = `dc-${client.version}-${Date.now()}`;
      const { rec, socket } = openSocket(t, client, { params: { user_id: userId } });
      const topics = [uniqueTopic("room", client, "dc1"), uniqueTopic("room", client, "dc2")];
      const channels = topics.map((topic) => socket.channel(topic, {}));
      for (const channel of channels) assert.equal((await join(channel)).status, "ok");
      const before = channels.map((c) => c.joinRef());
      await waitFor(() => rec.opens === 1, waitOpts(rec, "open"));
      await server.disconnect(`user_sockets:${userId}`);
      await waitFor(() => rec.closes.length === 1, waitOpts(rec, "the server's close"));
      assert.equal(rec.closes[0].code, 1001);
      await waitFor(() => rec.opens === 2, waitOpts(rec, "the reconnect"));
      await waitFor(() => channels.every((c, i) => c.state === "joined" && c.joinRef() !== before[i]), waitOpts(rec, "both rejoins"));
      for (const [i, topic] of topics.entries()) {
        const jr = channels[i].joinRef();
        await waitFor(() => rec.on(topic, "joined").length === 2, waitOpts(rec, `joined again on ${topic}`));
        assert.deepEqual(rec.on(topic, "joined")[1], [jr, null, topic, "joined", { status: "connected", user_id: userId }]);
      }
    });
  });

  describe(`${client.name} connect params and auth token`, () => {
    for (const kind of ["WebSocket", "LongPoll"]) {
      test(`over ${kind} the socket handler gets the params, nested ones decoded, plus vsn${client.hasAuthToken ? ", and the authToken" : ""}`, { timeout: TEST_TIMEOUT_MS }, async (t) => {
        const transport = kind === "LongPoll" ? { transport: client.LongPoll } : {};
        const token = "s3cret.token+/with=chars";
        const auth = client.hasAuthToken ? { authToken: token } : {};
        const params = { user_id: "7", user: { name: "Zoë & co", role: "a=b" } };
        const { rec, channel, topic } = await openJoined(t, client, "room", `whoami-${kind}`, { ...transport, ...auth, params });
        await waitFor(() => rec.on(topic, "joined").length === 1, waitOpts(rec, "joined"));
        assert.deepEqual(rec.on(topic, "joined")[0][4], { status: "connected", user_id: "7" });
        const reply = await outcome(channel.push("whoami", {}));
        assert.deepEqual(reply, {
          status: "ok",
          response: { params: { ...params, vsn: "2.0.0" }, auth_token: client.hasAuthToken ? token : null },
        });
      });
    }
  });

  describe(`${client.name} at /ws (check_origin ["//example.com"], idle timeout 200 ms)`, () => {
    test("a page on an allowed origin connects, joins and gets replies", { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const { rec, channel } = await openJoined(t, client, "echo", "origin-ok", { path: "/ws", transport: pageOn("https://example.com"), heartbeatIntervalMs: 50 });
      assert.deepEqual(await outcome(channel.push("hello", { from: "example.com" })), { status: "ok", response: { from: "example.com" } });
      assert.equal(rec.opens, 1);
    });

    test("a page on another origin is refused and never opens", { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const { rec, socket } = openSocket(t, client, { path: "/ws", transport: pageOn("http://notallowed.com"), reconnectAfterMs: () => 50 });
      await waitFor(() => rec.errors.length >= 2, waitOpts(rec, "two refused attempts"));
      assert.equal(rec.opens, 0);
      assert.equal(socket.isConnected(), false);
    });

    test("a connection silent for longer than the idle timeout is closed with a code that makes phoenix.js reconnect, and its channels rejoin", { timeout: TEST_TIMEOUT_MS }, async (t) => {
      // Heartbeats every 2 s cannot keep a connection with a 200 ms idle timeout alive.
      const { rec, channel, jr: jr1 } = await openJoined(t, client, "echo", "idle", { path: "/ws", heartbeatIntervalMs: 2000 });
      const joinedAt = Date.now();
      await waitFor(() => rec.closes.length >= 1, waitOpts(rec, "the idle close"));
      assert.ok(Date.now() - joinedAt >= 150, "not closed before the idle timeout");
      assert.equal(rec.closes[0].code, 1001, "idle close code 1001 (going away), never 1000");
      await waitFor(() => rec.opens >= 2 && channel.joinRef() !== jr1, waitOpts(rec, "reconnect and rejoin"));
    });
  });

  describe(`${client.name} against a refusing socket handler`, () => {
    for (const kind of ["WebSocket", "LongPoll"]) {
      test(`a ${kind} connection the socket handler refuses never opens, and the client keeps retrying`, { timeout: TEST_TIMEOUT_MS }, async (t) => {
        const transport = kind === "LongPoll" ? { transport: client.LongPoll } : {};
        const { rec, socket } = openSocket(t, client, { ...transport, params: { reject: "true" }, reconnectAfterMs: () => 50 });
        const channel = socket.channel(uniqueTopic("room", client, "refused"), {});
        const replies = [];
        channel.join().receive("ok", () => replies.push("ok"));
        await waitFor(() => rec.errors.length >= 3, waitOpts(rec, "three refused connection attempts"));
        assert.equal(rec.opens, 0);
        assert.deepEqual(replies, []);
        assert.equal(socket.isConnected(), false);
        if (kind === "WebSocket") {
          for (const close of rec.closes) assert.equal(close.code, 1006, "a refused upgrade looks like an abnormal close to the client");
        }
      });
    }
  });

  describe(`${client.name} across a server restart`, () => {
    test("when the server dies and comes back on the same port the client reconnects and its channels rejoin", { timeout: 45_000 }, async (t) => {
      const own = await FixtureServer.start();
      t.after(() => own.stop());
      const { rec, socket } = openSocket(t, client, { target: `${own.wsUrl}/socket`, params: { user_id: "phoenix" } });
      const roomTopic = uniqueTopic("room", client, "restart");
      const echoTopic = uniqueTopic("echo", client, "restart");
      const room = socket.channel(roomTopic, { user: "carol" });
      const echo = socket.channel(echoTopic, {});
      assert.equal((await join(room)).status, "ok");
      assert.equal((await join(echo)).status, "ok");
      const before = [room.joinRef(), echo.joinRef()];
      await own.stop();
      await waitFor(() => rec.closes.length >= 1, waitOpts(rec, "the client to notice the dead server"));
      assert.notEqual(rec.closes[0].code, 1000);
      await waitFor(() => room.state === "errored" && echo.state === "errored", waitOpts(rec, "channels errored"));
      await own.start();
      await waitFor(() => rec.opens === 2, waitOpts(rec, "the reconnect", 20_000));
      await waitFor(
        () => room.state === "joined" && echo.state === "joined" && room.joinRef() !== before[0] && echo.joinRef() !== before[1],
        waitOpts(rec, "both channels rejoined"),
      );
      await waitFor(() => rec.on(roomTopic, "joined").length === 2, waitOpts(rec, "joined again"));
      assert.deepEqual(rec.on(roomTopic, "joined")[1], [room.joinRef(), null, roomTopic, "joined", { status: "connected", user_id: "phoenix" }]);
      assert.deepEqual(await outcome(echo.push("again", { after: "restart" })), { status: "ok", response: { after: "restart" } });
    });
  });

  describe(`${client.name} across a graceful server restart`, () => {
    test("when the server drains on SIGTERM the client sees close code 1012, reconnects to the new server and rejoins", { timeout: 45_000 }, async (t) => {
      const own = await FixtureServer.start();
      t.after(() => own.stop());
      const { rec, channel, jr: jr1 } = await openJoined(t, client, "echo", "drain", { target: `${own.wsUrl}/socket` });
      const exit = await own.terminate();
      assert.deepEqual(exit, { code: 0, signal: null }, `the fixture exits cleanly after draining:\n${own.output}`);
      await waitFor(() => rec.closes.length >= 1, waitOpts(rec, "the drain close"));
      assert.equal(rec.closes[0].code, 1012);
      await own.start();
      await waitFor(() => channel.state === "joined" && channel.joinRef() !== jr1, waitOpts(rec, "the rejoin", 20_000));
      // (The client may also have reached the old server while it was still draining; not asserted.)
      assert.ok(rec.opens >= 2);
      assert.deepEqual(await outcome(channel.push("again", { after: "drain" })), { status: "ok", response: { after: "drain" } });
    });
  });

  describe(`${client.name} over LongPoll (LongPoll via ${client.longPollHttp})`, () => {
    test("joins, gets reply, broadcast and push in order, pushes with replies, receives broadcasts and leaves", { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const { rec, socket } = openSocket(t, client, { transport: client.LongPoll, params: { user_id: "lp-user" } });
      await waitFor(() => rec.opens === 1, waitOpts(rec, "the LongPoll session"));
      assert.ok(socket.conn instanceof client.LongPoll);
      const { channel: room, topic, jr } = await joinFresh(socket, client, "room", "lp", { payload: { user: "dave" } });
      await waitFor(() => rec.on(topic).length >= 3, waitOpts(rec, "reply, user_entered, joined"));
      assert.deepEqual(rec.on(topic).slice(0, 3), [
        [jr, jr, topic, "phx_reply", OK_EMPTY],
        [null, null, topic, "user_entered", { user: "dave" }],
        [jr, null, topic, "joined", { status: "connected", user_id: "lp-user" }],
      ]);

      const { channel: echo } = await joinFresh(socket, client, "echo", "lp");
      const echoed = collect(echo, "ask");
      const replies = await Promise.all([1, 2, 3].map((i) => outcome(echo.push("ask", { i, text: "über" }))));
      assert.deepEqual(replies, [1, 2, 3].map((i) => ({ status: "ok", response: { i, text: "über" } })));
      await waitFor(() => echoed.length === 3, waitOpts(rec, "three echoed pushes"));
      // phoenix.js 1.6 has up to three POSTs in flight here, so only ≥1.7 clients guarantee the order.
      const order = client.longPollKeepsPushOrder ? echoed : [...echoed].sort((a, b) => a.i - b.i);
      assert.deepEqual(order, [1, 2, 3].map((i) => ({ i, text: "über" })));

      const announced = collect(room, "announcement");
      await server.broadcast(topic, "announcement", { over: "longpoll" });
      await waitFor(() => announced.length === 1, waitOpts(rec, "the broadcast"));
      assert.deepEqual(rec.on(topic, "announcement"), [[null, null, topic, "announcement", { over: "longpoll" }]]);

      assert.deepEqual(await outcome(room.leave()), { status: "ok", response: {} });
      await waitFor(() => rec.on(topic, "phx_close").length === 1, waitOpts(rec, "phx_close"));
      assert.deepEqual(rec.on(topic, "phx_close"), [[jr, jr, topic, "phx_close", {}]]);
      assert.deepEqual(rec.heartbeats, [], "LongPoll sends no heartbeats");
    });

    test("150 pushes issued at once over LongPoll are all answered, each with its own payload", { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const { rec, channel } = await openJoined(t, client, "echo", "lp-burst", { transport: client.LongPoll });
      const echoed = collect(channel, "burst");
      // phoenix.js 1.8 sends these as ndjson POSTs of at most 100 lines each; 1.6 as 150 POSTs.
      const replies = await Promise.all(Array.from({ length: 150 }, (_, i) => outcome(channel.push("burst", { i }))));
      assert.deepEqual(replies, Array.from({ length: 150 }, (_, i) => ({ status: "ok", response: { i } })));
      await waitFor(() => echoed.length === 150, waitOpts(rec, "150 echoed pushes"));
      const order = client.longPollKeepsPushOrder ? echoed : [...echoed].sort((a, b) => a.i - b.i);
      assert.deepEqual(order, Array.from({ length: 150 }, (_, i) => ({ i })));
    });

    test("a channel crash over LongPoll gives phx_error and the client rejoins", { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const { rec, channel, topic, jr: jr1 } = await openJoined(t, client, "room", "lp-crash", { transport: client.LongPoll, rejoinAfterMs: () => 100 });
      channel.push("boom", {}, 2000);
      await waitFor(() => rec.on(topic, "phx_error").length === 1, waitOpts(rec, "phx_error"));
      assert.deepEqual(rec.on(topic, "phx_error"), [[jr1, jr1, topic, "phx_error", { reason: "channel_crash" }]]);
      await waitFor(() => channel.state === "joined" && channel.joinRef() !== jr1, waitOpts(rec, "the rejoin"));
      assert.equal(rec.opens, 1, "the LongPoll session itself survived");
    });

    if (client.hasLongPollFallback) {
      test("an ArrayBuffer push over LongPoll (a base64 ndjson line) reaches the channel as binary", { timeout: TEST_TIMEOUT_MS }, async (t) => {
        const { rec, channel, topic } = await openJoined(t, client, "room", "lp-bin", { transport: client.LongPoll });
        const acks = collect(channel, "bin_ack");
        const msgs = collect(channel, "new_msg");
        // Same tick: phoenix.js batches both into one ndjson POST, binary line first.
        channel.push("bin", arrayBuffer([1, 2, 3]), 2000);
        channel.push("new_msg", { body: "after bin" }, 2000);
        await waitFor(() => acks.length === 1 && msgs.length === 1, waitOpts(rec, "bin_ack and new_msg"));
        const jr = channel.joinRef();
        const relevant = rec.on(topic).filter((f) => f[3] === "bin_ack" || f[3] === "new_msg");
        assert.deepEqual(relevant, [
          [jr, null, topic, "bin_ack", { transport: ":longpoll" }],
          [jr, null, topic, "new_msg", { body: "after bin", transport: ":longpoll" }],
        ]);
      });

      test("the \"disconnect\" broadcast ends the LongPoll session; the client sees 410, reconnects and rejoins", { timeout: 45_000 }, async (t) => {
        const userId = `lpdc-${Date.now()}`;
        const { socket, rec, channel, jr: jr1 } = await openJoined(t, client, "room", "lp-dc", { transport: client.LongPoll, params: { user_id: userId } });
        await server.disconnect(`user_sockets:${userId}`);
        await waitFor(() => rec.closes.length >= 1, waitOpts(rec, "the session to end", 30_000));
        assert.equal(rec.closes[0].code, 3410, "phoenix.js ≥1.8.2 closes with 3410 session_gone on a 410 for a known token");
        await waitFor(() => channel.state === "joined" && channel.joinRef() !== jr1, waitOpts(rec, "the rejoin", 10_000));
        assert.equal(rec.opens, 2);
        assert.equal(socket.isConnected(), true);
      });
    }
  });

  describe(`${client.name} longPollFallbackMs`, () => {
    const skip = client.hasLongPollFallback ? false : `${client.name} has no longPollFallbackMs (added in phoenix.js 1.7.11)`;

    test("a refused WebSocket upgrade makes the client fall back to LongPoll at once and remember it", { timeout: TEST_TIMEOUT_MS, skip }, async (t) => {
      const proxy = await WebSocketBlockingProxy.start(server.port, "refuse");
      t.after(() => proxy.close());
      const sessionStorage = memoryStorage();
      const store = sessionStorage.map;
      const started = Date.now();
      const fallbackMs = 5000;
      const { rec, socket } = openSocket(t, client, {
        target: `ws://127.0.0.1:${proxy.port}/socket`,
        longPollFallbackMs: fallbackMs,
        sessionStorage,
        params: { user_id: "fallback" },
      });
      await waitFor(() => rec.opens === 1, waitOpts(rec, "an open connection", 10_000));
      assert.ok(Date.now() - started < fallbackMs, "the fallback followed the error, not the timer");
      assert.equal(socket.transport, client.LongPoll);
      assert.ok(socket.conn instanceof client.LongPoll);
      assert.equal(proxy.seen.upgrades.length, 1);
      assert.match(proxy.seen.upgrades[0], /^\/socket\/websocket\?user_id=fallback&vsn=2\.0\.0$/);
      assert.ok(proxy.seen.requests.some((r) => /^GET \/socket\/longpoll\?user_id=fallback&vsn=2\.0\.0/.test(r)), proxy.seen.requests.join("\n"));
      const { channel, topic, jr } = await joinFresh(socket, client, "room", "fallback", { payload: { user: "erin" } });
      await waitFor(() => rec.on(topic).length >= 3, waitOpts(rec, "reply, user_entered, joined"));
      assert.deepEqual(rec.on(topic).slice(0, 3), [
        [jr, jr, topic, "phx_reply", OK_EMPTY],
        [null, null, topic, "user_entered", { user: "erin" }],
        [jr, null, topic, "joined", { status: "connected", user_id: "fallback" }],
      ]);
      // Over LongPoll the fixture's room answers new_msg with no reply, only the intercepted push.
      const got = collect(channel, "new_msg");
      channel.push("new_msg", { body: "via longpoll" }, 1000);
      await waitFor(() => got.length === 1, waitOpts(rec, "new_msg"));
      assert.deepEqual(rec.on(topic, "new_msg"), [[jr, null, topic, "new_msg", { body: "via longpoll", transport: ":longpoll" }]]);
      assert.equal(store.get("phx:fallback:LongPoll"), "true");
    });

    test("a socket whose WebSocket transport is off (404) is reached over LongPoll at once", { timeout: TEST_TIMEOUT_MS, skip }, async (t) => {
      const fallbackMs = 5000;
      const started = Date.now();
      const { rec, socket } = openSocket(t, client, { path: "/lponly", longPollFallbackMs: fallbackMs, sessionStorage: memoryStorage() });
      await waitFor(() => rec.opens === 1, waitOpts(rec, "an open connection", 10_000));
      assert.ok(Date.now() - started < fallbackMs, "the fallback followed the error, not the timer");
      assert.ok(socket.conn instanceof client.LongPoll);
      const { channel } = await joinFresh(socket, client, "echo", "lponly");
      assert.deepEqual(await outcome(channel.push("hi", { there: 1 })), { status: "ok", response: { there: 1 } });
    });

    test("with a working WebSocket the health-check heartbeat is answered and the client stays on WebSocket", { timeout: TEST_TIMEOUT_MS, skip }, async (t) => {
      const sessionStorage = memoryStorage();
      const store = sessionStorage.map;
      const fallbackMs = 400;
      const { rec, socket } = openSocket(t, client, { longPollFallbackMs: fallbackMs, sessionStorage });
      await waitFor(() => rec.opens === 1, waitOpts(rec, "the WebSocket to open"));
      await waitFor(() => rec.heartbeats.length >= 1, waitOpts(rec, "the health-check heartbeat reply"));
      await sleep(fallbackMs * 2);
      assert.equal(socket.transport, globalThis.WebSocket);
      assert.ok(socket.conn instanceof globalThis.WebSocket);
      assert.equal(rec.opens, 1);
      assert.deepEqual(rec.closes, []);
      assert.equal(store.size, 0, "nothing remembered");
      await joinFresh(socket, client, "echo", "healthy");
    });

    test("a WebSocket upgrade that never completes makes the client switch to LongPoll after longPollFallbackMs", { timeout: TEST_TIMEOUT_MS, skip }, async (t) => {
      const proxy = await WebSocketBlockingProxy.start(server.port, "hang");
      t.after(() => proxy.close());
      const fallbackMs = 600;
      const started = Date.now();
      const { rec, socket } = openSocket(t, client, {
        target: `ws://127.0.0.1:${proxy.port}/socket`,
        longPollFallbackMs: fallbackMs,
        sessionStorage: memoryStorage(),
      });
      await waitFor(() => rec.opens === 1, waitOpts(rec, "an open connection", 10_000));
      assert.ok(Date.now() - started >= fallbackMs, "LongPoll only after the fallback timer");
      assert.equal(proxy.seen.upgrades.length, 1);
      assert.ok(socket.conn instanceof client.LongPoll);
      const { channel } = await joinFresh(socket, client, "echo", "hang");
      assert.deepEqual(await outcome(channel.push("still", { here: true })), { status: "ok", response: { here: true } });
    });
  });
}

describe("clients of both versions together", () => {
  test("one broadcast reaches phoenix 1.6 and 1.8 members over WebSocket and LongPoll alike", { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const topic = `room:mixed-${Date.now()}`;
    const members = [];
    for (const client of clients) {
      for (const transport of [undefined, client.LongPoll]) {
        const { rec, socket } = openSocket(t, client, transport ? { transport } : {});
        const channel = socket.channel(topic, {});
        assert.equal((await join(channel)).status, "ok", `${client.name} ${transport ? "LongPoll" : "WebSocket"} joined`);
        members.push({ rec, got: collect(channel, "news"), label: `${client.name} ${transport ? "LongPoll" : "WebSocket"}` });
      }
    }
    await server.broadcast(topic, "news", { headline: "all four" });
    for (const m of members) {
      await waitFor(() => m.got.length === 1, waitOpts(m.rec, `the broadcast at ${m.label}`));
      assert.deepEqual(m.rec.on(topic, "news"), [[null, null, topic, "news", { headline: "all four" }]], m.label);
    }
  });
});
