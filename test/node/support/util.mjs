// Small helpers shared by the Node conformance tests: waiting with a deadline, and a recorder
// of what one phoenix.js Socket received (decoded by the client's own serializer) and pushed.

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Resolves with the first truthy value of `probe()` (polled every 5 ms); rejects after
 * `timeout` ms with `what` and the optional `dump()` in the message.
 */
export async function waitFor(probe, { timeout = 5000, what = "condition", dump } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = probe();
    if (value) return value;
    if (Date.now() > deadline) {
      const extra = dump ? `\n${dump()}` : "";
      throw new Error(`timed out after ${timeout} ms waiting for ${what}${extra}`);
    }
    await sleep(5);
  }
}

/** Wraps a phoenix Push in a promise of `{status, response}` for whichever of ok/error/timeout comes first. */
export function outcome(push, statuses = ["ok", "error", "timeout"]) {
  return new Promise((resolve) => {
    for (const status of statuses) push.receive(status, (response) => resolve({ status, response }));
  });
}

/** Copies the bytes of an ArrayBuffer (or view) into a plain array, for deepEqual. */
export function bytes(buffer) {
  if (!(buffer instanceof ArrayBuffer)) throw new TypeError(`expected an ArrayBuffer, got ${showValue(buffer)}`);
  return Array.from(new Uint8Array(buffer));
}

/** An ArrayBuffer holding exactly `values`. */
export function arrayBuffer(values) {
  return new Uint8Array(values).buffer;
}

export function showValue(value) {
  if (value instanceof ArrayBuffer) return `ArrayBuffer[${Array.from(new Uint8Array(value)).join(",")}]`;
  if (value === null) return "null";
  if (typeof value === "object") return `${value.constructor?.name ?? "Object"} ${JSON.stringify(value)}`;
  return `${typeof value} ${JSON.stringify(value)}`;
}

/**
 * Records, for one phoenix.js Socket:
 * - `frames`: every message the client decoded, as `[join_ref, ref, topic, event, payload]`
 *   (in arrival order; heartbeat replies on topic "phoenix" are kept separately in `heartbeats`);
 * - `pushes`: every message the client pushed, as `{topic, event, join_ref, ref}` (from the
 *   client's logger, which logs "push" entries as "topic event (join_ref, ref)");
 * - `opens`, `closes` (close events, with their `code`), `errors`.
 */
export class Recorder {
  constructor() {
    this.frames = [];
    this.heartbeats = [];
    this.pushes = [];
    this.opens = 0;
    this.closes = [];
    this.errors = [];
  }

  /** phoenix.js `logger` option. */
  logger = (kind, msg, _data) => {
    if (kind !== "push") return;
    const match = /^(.*) (\S+) \((.*), (.*)\)$/.exec(msg);
    if (!match) return;
    const [, topic, event, joinRef, ref] = match;
    this.pushes.push({ topic, event, join_ref: joinRef, ref });
  };

  /** Registers the socket callbacks; call before `socket.connect()`. */
  attach(socket) {
    socket.onOpen(() => {
      this.opens += 1;
    });
    socket.onClose((event) => {
      this.closes.push({ code: event?.code, reason: event?.reason });
    });
    socket.onError((error) => {
      this.errors.push(error);
    });
    socket.onMessage((msg) => {
      const frame = [msg.join_ref, msg.ref, msg.topic, msg.event, msg.payload];
      if (msg.topic === "phoenix") this.heartbeats.push(frame);
      else this.frames.push(frame);
    });
    return this;
  }

  /** Frames on `topic` (optionally only `event`). */
  on(topic, event) {
    return this.frames.filter((f) => f[2] === topic && (event === undefined || f[3] === event));
  }

  /** Index of the first frame matching `pred` at or after `from`, or -1. */
  indexOf(pred, from = 0) {
    for (let i = from; i < this.frames.length; i++) if (pred(this.frames[i])) return i;
    return -1;
  }

  /** Pushes on `topic` (optionally only `event`). */
  pushed(topic, event) {
    return this.pushes.filter((p) => p.topic === topic && (event === undefined || p.event === event));
  }

  dump() {
    const show = (f) => JSON.stringify(f, (_k, v) => (v instanceof ArrayBuffer ? `<ArrayBuffer ${bytes(v).join(",")}>` : v));
    return [
      `opens=${this.opens} closes=${JSON.stringify(this.closes)} errors=${this.errors.length}`,
      "received:",
      ...this.frames.map((f) => `  ${show(f)}`),
      "pushed:",
      ...this.pushes.map((p) => `  ${JSON.stringify(p)}`),
    ].join("\n");
  }
}
