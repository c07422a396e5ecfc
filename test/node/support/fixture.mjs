// Spawns the Rust Phoenix fixture server (`cargo build --example phoenix_fixture_server`), whose
// path comes from env PHOENIX_FIXTURE_BIN, on a free loopback port; waits for its
// "listening on http://127.0.0.1:PORT" line; kills it when asked and when this process exits.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import net from "node:net";

const STARTUP_TIMEOUT_MS = 15_000;
const live = new Set();

function killAll() {
  for (const child of live) {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
}
process.on("exit", killAll);
// The test runner stops a test file that overruns with a signal; leave no server behind then either.
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.once(signal, () => {
    killAll();
    process.exit(128 + { SIGINT: 2, SIGTERM: 15, SIGHUP: 1 }[signal]);
  });
}

/** Path of the fixture binary, or throws with instructions. */
export function fixtureBinary() {
  const bin = process.env.PHOENIX_FIXTURE_BIN;
  if (!bin) {
    throw new Error(
      "PHOENIX_FIXTURE_BIN is not set: build the fixture with " +
        "`cargo build --example phoenix_fixture_server` and point PHOENIX_FIXTURE_BIN at the binary",
    );
  }
  if (!existsSync(bin)) throw new Error(`PHOENIX_FIXTURE_BIN=${bin} does not exist`);
  return bin;
}

/** A currently free TCP port on 127.0.0.1 (the OS picks it; we release it at once). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/**
 * A running fixture server. `stop()` kills it (SIGKILL: the process dies like a crashed
 * server, without closing sockets politely) and waits for it to exit; `start()` starts it again
 * on the same port.
 */
export class FixtureServer {
  constructor(port) {
    this.port = port;
    this.child = null;
    this.output = "";
  }

  /** http://127.0.0.1:PORT */
  get httpUrl() {
    return `http://127.0.0.1:${this.port}`;
  }

  /** ws://127.0.0.1:PORT */
  get wsUrl() {
    return `ws://127.0.0.1:${this.port}`;
  }

  static async start(port) {
    const server = new FixtureServer(port ?? (await freePort()));
    await server.start();
    return server;
  }

  async start() {
    if (this.child) throw new Error("fixture server already running");
    const bin = fixtureBinary();
    const child = spawn(bin, [String(this.port)], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, FIXTURE_PORT: String(this.port), RUST_LOG: process.env.RUST_LOG ?? "warn" },
    });
    this.child = child;
    live.add(child);
    const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
    this.exited = exited;
    exited.then(() => live.delete(child));
    const wanted = `listening on http://127.0.0.1:${this.port}`;
    await new Promise((resolve, reject) => {
      let settled = false;
      const finish = (error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        error ? reject(error) : resolve();
      };
      const timer = setTimeout(
        () => finish(new Error(`fixture server did not print "${wanted}" within ${STARTUP_TIMEOUT_MS} ms:\n${this.output}`)),
        STARTUP_TIMEOUT_MS,
      );
      const onData = (chunk) => {
        this.output += chunk.toString("utf8");
        if (this.output.includes(wanted)) finish();
      };
      child.stdout.on("data", onData);
      child.stderr.on("data", (chunk) => {
        this.output += chunk.toString("utf8");
      });
      child.once("error", (error) => finish(error));
      exited.then(({ code, signal }) =>
        finish(new Error(`fixture server exited (code ${code}, signal ${signal}) before listening:\n${this.output}`)),
      );
    });
  }

  /** Kills the server process and waits until it is gone. */
  async stop() {
    const child = this.child;
    if (!child) return;
    this.child = null;
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await this.exited;
  }

  /**
   * Sends SIGTERM (the server drains: closes every socket with 1012, then exits) and waits up to
   * 10 s for the process to exit; resolves with its `{code, signal}`.
   */
  async terminate() {
    const child = this.child;
    if (!child) throw new Error("fixture server not running");
    this.child = null;
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    const result = await this.exited;
    clearTimeout(timer);
    return result;
  }

  /** POST /test/broadcast/<topic>/<event> with a JSON body: a server-side PubSub broadcast. */
  async broadcast(topic, event, payload) {
    return this.#post(`/test/broadcast/${topic}/${event}`, JSON.stringify(payload), "application/json");
  }

  /** POST /test/broadcast_binary/<topic>/<event> with raw bytes: a binary PubSub broadcast. */
  async broadcastBinary(topic, event, data) {
    return this.#post(`/test/broadcast_binary/${topic}/${event}`, data, "application/octet-stream");
  }

  /** POST /test/disconnect/<socket id>: the "disconnect" broadcast on a socket id topic. */
  async disconnect(socketId) {
    return this.#post(`/test/disconnect/${socketId}`, "{}", "application/json");
  }

  async #post(path, body, contentType) {
    const response = await fetch(`${this.httpUrl}${path}`, {
      method: "POST",
      headers: { "content-type": contentType },
      body,
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`POST ${path} → HTTP ${response.status}: ${text}`);
    return text;
  }
}
