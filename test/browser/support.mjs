// Shared helpers of the browser tests: launching Debian's Chromium (playwright-core) and Firefox ESR
// (puppeteer-core over WebDriver BiDi) with fake camera/microphone, starting the videoroom server
// binary on free ports, and reading media state out of the room page.

import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync, mkdirSync } from "node:fs";
import { connect, createServer } from "node:net";
import { createSocket } from "node:dgram";
import { networkInterfaces, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { after, before } from "node:test";
import { get as httpsGet } from "node:https";
import { chromium } from "playwright-core";
import puppeteer from "puppeteer-core";

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const CHROMIUM = process.env.CHROMIUM_BIN ?? "/usr/bin/chromium";
export const FIREFOX = process.env.FIREFOX_BIN ?? "/usr/bin/firefox-esr";

/**
 * Flags of browser-e2e.md (headless, fake devices without a prompt, real IPs in candidates, the
 * two optional SFU flags), plus an autoplay policy so the tiles' <audio> elements play without a
 * user gesture, as they would after a real user clicked "Enter".
 */
export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--use-fake-device-for-media-stream",
  "--use-fake-ui-for-media-stream",
  "--disable-features=WebRtcHideLocalIpsWithMdns",
  "--allow-loopback-in-peer-connection",
  "--autoplay-policy=no-user-gesture-required",
];

/** Prefs of firefox-e2e.md (fake devices, no prompt, real host addresses in candidates), plus autoplay allowed. */
export const FIREFOX_PREFS = {
  "media.navigator.streams.fake": true,
  "media.navigator.permission.disabled": true,
  "media.peerconnection.ice.obfuscate_host_addresses": false,
  "media.peerconnection.ice.loopback": true,
  "media.autoplay.default": 0,
  "media.autoplay.blocking_policy": 0,
};

/** Where screenshots go: $ARTIFACTS_DIR, else `test-artifacts/` at the repository root. */
export function artifactsDir() {
  const dir = process.env.ARTIFACTS_DIR ?? join(REPO_ROOT, "test-artifacts");
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** A non-loopback IPv4 address of this host (Firefox cannot use a server that offers only 127.0.0.1). */
export function nonLoopbackAddress() {
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) {
      if (a.family === "IPv4" && !a.internal) return a.address;
    }
  }
  return undefined;
}

/** A TCP port that was free a moment ago. */
export function freeTcpPort() {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.on("error", fail);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => ok(port));
    });
  });
}

/**
 * A TCP proxy on `listenHost:port` (port 0: a free one) to `upstreamHost:upstreamPort`, each
 * connection piped as it is. `cut()` closes every proxied connection and refuses new ones
 * (accepted, then closed at once, as a dead path looks to a browser) until `restore()`;
 * `close()` stops listening and closes what is still proxied (server.close alone waits for it).
 */
export async function startTcpProxy({ listenHost = "127.0.0.1", port = 0, upstreamHost = "127.0.0.1", upstreamPort }) {
  const open = new Set();
  let cut = false;
  const server = createServer((client) => {
    if (cut) {
      client.destroy();
      return;
    }
    const upstream = connect(upstreamPort, upstreamHost);
    const pair = [client, upstream];
    const end = () => {
      for (const s of pair) {
        s.destroy();
        open.delete(s);
      }
    };
    for (const s of pair) {
      open.add(s);
      s.on("error", end);
      s.on("close", end);
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((ok, fail) => {
    server.once("error", fail);
    server.listen(port, listenHost, ok);
  });
  const { port: listening } = server.address();
  return {
    port: listening,
    url: `http://${listenHost}:${listening}`,
    cut() {
      cut = true;
      for (const s of open) s.destroy();
      open.clear();
    },
    restore() {
      cut = false;
    },
    close() {
      this.cut();
      return new Promise((ok) => server.close(ok));
    },
  };
}

/** A UDP port that was free a moment ago. */
export function freeUdpPort() {
  return new Promise((ok, fail) => {
    const sock = createSocket("udp4");
    sock.on("error", fail);
    sock.bind(0, "0.0.0.0", () => {
      const { port } = sock.address();
      sock.close(() => ok(port));
    });
  });
}

/**
 * Starts the server binary ($VIDEOROOM_BIN) on a free TCP port (`SERVER_PORT`) and a free UDP
 * port (`UDP_PORT`), advertising a non-loopback address of this host (`EXTERNAL_IP`) so that
 * Firefox can reach the SFU (`port`/`udpPort` given: those, e.g. to restart a server where it
 * was). `env` adds (or overrides) variables, `$VIDEOROOM_ARGS` (space separated) adds flags; `https`:
 * the server serves HTTPS (e.g. `TLS_SELF_SIGNED` in `env`; its certificate is not checked). Resolves
 * once `/healthcheck` answers 200.
 */
export async function startServer({ env: extraEnv = {}, port: fixedPort, udpPort: fixedUdpPort, https = false } = {}) {
  const bin = process.env.VIDEOROOM_BIN;
  if (!bin) throw new Error("set VIDEOROOM_BIN to the videoroom server binary");
  const port = fixedPort ?? (await freeTcpPort());
  const udpPort = fixedUdpPort ?? (await freeUdpPort());
  const externalIp = process.env.VIDEOROOM_EXTERNAL_IP ?? nonLoopbackAddress();
  const env = {
    ...process.env,
    SERVER_PORT: String(port),
    UDP_PORT: String(udpPort),
    RUST_LOG: process.env.RUST_LOG ?? "info",
    ...(externalIp ? { EXTERNAL_IP: externalIp } : {}),
    ...extraEnv,
  };
  // A null in `env` removes the variable (e.g. `EXTERNAL_IP: null`: advertise no extra address).
  for (const [k, v] of Object.entries(env)) if (v === null) delete env[k];
  const args = (process.env.VIDEOROOM_ARGS ?? "").split(/\s+/).filter(Boolean);
  const child = spawn(bin, args, { env, stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  const keep = (chunk) => {
    log += chunk;
    if (log.length > 2_000_000) log = log.slice(-1_000_000);
    if (process.env.VIDEOROOM_LOG) process.stderr.write(chunk);
  };
  child.stdout.on("data", keep);
  child.stderr.on("data", keep);
  let exited = null;
  child.on("exit", (code, signal) => (exited = { code, signal }));

  const url = `${https ? "https" : "http"}://127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (exited) throw new Error(`server exited early (${JSON.stringify(exited)}):\n${log}`);
    try {
      const status = https ? (await httpsGetText(`${url}/healthcheck`)).status : (await fetch(`${url}/healthcheck`)).status;
      if (status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`server did not answer /healthcheck within 20 s:\n${log}`);
    }
    await sleep(100);
  }
  return {
    url,
    port,
    udpPort,
    externalIp: env.EXTERNAL_IP,
    log: () => log,
    /** Stops the server with `signal`: SIGTERM and SIGINT both drain it (sockets closed with 1012); SIGKILL after 5 s. */
    async stop(signal = "SIGTERM") {
      if (exited) return;
      child.kill(signal);
      for (let i = 0; i < 50 && !exited; i++) await sleep(100);
      if (!exited) child.kill("SIGKILL");
    },
  };
}

/** A GET over HTTPS, the server's certificate unchecked (a self-signed test server): `{status, body}`. */
export function httpsGetText(url) {
  return new Promise((ok, fail) => {
    const req = httpsGet(url, { rejectUnauthorized: false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk) => (body += chunk));
      res.on("end", () => ok({ status: res.statusCode, body }));
    });
    req.on("error", fail);
  });
}

/**
 * The server of a test file and the Chromiums its tests launch: registers the file's hooks that
 * start the server (`startServer` with `env`) before its tests, and close every browser and
 * then the server after them. `url` is the server's once started; `launchChromium` is
 * `launchChromium` whose browser is closed after the tests.
 */
export function serverAndBrowsers({ env, https } = {}) {
  let server;
  const browsers = [];
  before(async () => {
    server = await startServer({ env, https });
  });
  after(async () => {
    for (const b of browsers) await b.close();
    await server?.stop();
  });
  return {
    get url() {
      return server.url;
    },
    get server() {
      return server;
    },
    async launchChromium(options) {
      const browser = await launchChromium(options);
      browsers.push(browser);
      return browser;
    },
  };
}

/**
 * One participant's Chromium (`withoutDevices`: no camera or microphone at all; `executablePath`:
 * another executable, e.g. a wrapper that starts Chromium in a network namespace). Its `page`
 * and Firefox's share the API subset the tests use (goto, type, click, evaluate, screenshot);
 * `kill()` ends the browser abruptly (SIGKILL), `freeze()` stops it, `close()` ends it politely.
 */
export async function launchChromium({ args = [], withoutDevices = false, executablePath = CHROMIUM } = {}) {
  const profile = mkdtempSync(join(tmpdir(), "videoroom-chromium-"));
  const base = withoutDevices
    ? CHROMIUM_ARGS.filter((a) => a !== "--use-fake-device-for-media-stream")
    : CHROMIUM_ARGS;
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    args: [...base, ...args],
    ignoreDefaultArgs: ["--mute-audio"],
    viewport: { width: 1280, height: 800 },
  });
  const page = ctx.pages()[0] ?? (await ctx.newPage());
  // The browser's main process: the one started with this profile that is not a helper (`--type=`).
  const mainPid = () => {
    for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
      let cmdline;
      try {
        cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
      } catch {
        continue;
      }
      if (
        cmdline.some((a) => a === `--user-data-dir=${profile}`) &&
        !cmdline.some((a) => a.startsWith("--type="))
      ) {
        return Number(pid);
      }
    }
    throw new Error("chromium main process not found");
  };
  page.on("console", (msg) => {
    if (process.env.BROWSER_CONSOLE) console.log(`[chromium] ${msg.type()}: ${msg.text()}`);
  });
  page.on("pageerror", (err) => console.log(`[chromium] page error: ${err.message}`));
  return {
    kind: "chromium",
    ctx,
    page,
    /**
     * Freezes (SIGSTOP) or thaws (SIGCONT) the browser and all its child processes: its sockets
     * stay open but nothing is sent any more, like a machine that dropped off the network.
     */
    freeze(stop = true) {
      const root = mainPid();
      const children = new Map();
      for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
        try {
          const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
          const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
          if (!children.has(ppid)) children.set(ppid, []);
          children.get(ppid).push(Number(pid));
        } catch {
          // gone meanwhile
        }
      }
      const all = [];
      const walk = (pid) => {
        all.push(pid);
        for (const c of children.get(pid) ?? []) walk(c);
      };
      walk(root);
      for (const pid of all) {
        try {
          process.kill(pid, stop ? "SIGSTOP" : "SIGCONT");
        } catch {
          // gone meanwhile
        }
      }
      return all.length;
    },
    /** Ends the browser's main process abruptly (SIGKILL). */
    kill() {
      const pid = mainPid();
      process.kill(pid, "SIGKILL");
      return pid;
    },
    async close() {
      try {
        this.freeze(false); // a frozen browser cannot be closed
      } catch {
        // already gone (killed)
      }
      await ctx.close().catch(() => {});
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/**
 * Makes sure the browsers have a sound output, as on any user's machine: Firefox runs WebAudio
 * (the pre-join level meter's AudioContext) only with an audio device to drive it, and a
 * container has none. Without one reachable (`$PULSE_SERVER`, or PulseAudio's default socket),
 * starts a private PulseAudio server with a null sink for this test process (stopped when it
 * exits) and points `PULSE_SERVER` at it, so browsers launched afterwards inherit it. Throws if
 * no PulseAudio is installed (run_all.sh installs it).
 */
export function ensureAudioOutput() {
  if (process.env.PULSE_SERVER) return;
  const reachable = spawnSync("pactl", ["info"], { stdio: "ignore", timeout: 5000 });
  if (reachable.status === 0) return;
  const runtime = mkdtempSync(join(tmpdir(), "videoroom-pulse-"));
  const socket = join(runtime, "native");
  const daemon = spawn(
    "pulseaudio",
    [
      "-n",
      "--daemonize=no",
      "--exit-idle-time=-1",
      "--use-pid-file=no",
      "--disable-shm=yes",
      "-L",
      `module-native-protocol-unix socket=${socket} auth-anonymous=1`,
      "-L",
      "module-null-sink sink_name=videoroom_tests",
    ],
    { env: { ...process.env, HOME: runtime, PULSE_RUNTIME_PATH: runtime }, stdio: "ignore" },
  );
  let failed;
  daemon.on("error", (e) => (failed = e));
  // The daemon lives as long as this test process, but must not keep it alive: the process
  // exits when its tests are done, and the exit handler below stops the daemon.
  daemon.unref();
  process.on("exit", () => {
    daemon.kill("SIGTERM");
    rmSync(runtime, { recursive: true, force: true });
  });
  // The socket appears once the daemon listens (well under a second).
  for (let i = 0; i < 100; i++) {
    if (failed) throw new Error(`no sound output for the browsers: cannot start pulseaudio (${failed.message}); install pulseaudio`);
    if (spawnSync("pactl", ["--server", `unix:${socket}`, "info"], { stdio: "ignore", timeout: 5000 }).status === 0) {
      process.env.PULSE_SERVER = `unix:${socket}`;
      return;
    }
    spawnSync("sleep", ["0.1"]);
  }
  throw new Error("no sound output for the browsers: pulseaudio did not start within 10 s");
}

/**
 * One participant's Firefox ESR (puppeteer-core over WebDriver BiDi) with fake devices and a
 * sound output (ensureAudioOutput). `autoplayAllowed: false` leaves Firefox's default autoplay
 * blocking on, as for a real user: media and WebAudio may start only after a user gesture.
 */
export async function launchFirefox({ autoplayAllowed = true } = {}) {
  ensureAudioOutput();
  const prefs = autoplayAllowed
    ? FIREFOX_PREFS
    : Object.fromEntries(Object.entries(FIREFOX_PREFS).filter(([k]) => !k.startsWith("media.autoplay.")));
  const browser = await puppeteer.launch({
    browser: "firefox",
    executablePath: FIREFOX,
    headless: true,
    extraPrefsFirefox: prefs,
    defaultViewport: { width: 1280, height: 800 },
  });
  const page = await browser.newPage();
  page.on("console", (msg) => {
    if (process.env.BROWSER_CONSOLE) console.log(`[firefox] ${msg.type()}: ${msg.text()}`);
  });
  page.on("pageerror", (err) => {
    const message = String(err.message ?? err);
    // Refused connections show up as page errors in Firefox; only print them when asked.
    if (process.env.BROWSER_CONSOLE || !/can.t establish a connection|XML Parsing Error/.test(message)) {
      console.log(`[firefox] page error: ${message}`);
    }
  });
  return {
    kind: "firefox",
    browser,
    page,
    async close() {
      await browser.close().catch(() => {});
    },
  };
}

/** Polls `fn` until it returns a truthy value (returned) or `timeoutMs` passes (throws with `what`). */
export async function eventually(what, fn, { timeoutMs = 15_000, intervalMs = 250 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${describe(last)})`);
    }
    await sleep(intervalMs);
  }
}

function describe(value) {
  if (value instanceof Error) return value.message;
  try {
    return JSON.stringify(value);
  } catch {
    return String(value);
  }
}

/** Goes through the lobby form: room name and display name, then Enter; resolves on the room page. */
export async function enterRoom(participant, baseUrl, roomName, displayName) {
  const { page } = participant;
  await page.goto(`${baseUrl}/`);
  await page.waitForSelector("input[name='room_name']");
  // Clear and type (works the same on Playwright and Puppeteer).
  await page.evaluate(() => {
    document.querySelector("input[name='room_name']").value = "";
    document.querySelector("input[name='display_name']").value = "";
  });
  await page.type("input[name='room_name']", roomName);
  await page.type("input[name='display_name']", displayName);
  await page.click("button[type='submit']");
  await waitInPage(page, () => location.pathname.startsWith("/room/"), 15_000);
  await waitInPage(page, () => !!(window.videoroom && window.videoroom.room), 15_000);
}

/** waitForFunction with the same meaning on Playwright and Puppeteer. */
export async function waitInPage(page, fn, timeoutMs = 15_000, arg = null) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    // evaluate throws while the page navigates: just try again.
    if (await page.evaluate(fn, arg).catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`page condition not met within ${timeoutMs} ms: ${fn}`);
    await sleep(200);
  }
}

/**
 * What a page shows of every remote tile: for each `feed-<peerId>` in `#videos-grid` other than
 * our own, its label, `data-audio`/`data-video`, the <video>'s size and the receive stats of the
 * tracks attached to it (framesDecoded, audio packets), found by matching the tile's stream tracks
 * against the connection's receivers.
 */
export async function readTiles(page) {
  // As JSON: Puppeteer over BiDi and Playwright clone objects differently.
  return JSON.parse(await page.evaluate(async () => {
    const webrtc = window.videoroom && window.videoroom.webrtc;
    const pc = webrtc && webrtc.connection;
    const receivers = pc ? pc.getReceivers() : [];
    const statsOf = async (track) => {
      const receiver = receivers.find((r) => r.track === track);
      if (!receiver) return null;
      const report = await receiver.getStats();
      let out = null;
      report.forEach((s) => {
        if (s.type === "inbound-rtp") {
          out = {
            packetsReceived: s.packetsReceived ?? 0,
            bytesReceived: s.bytesReceived ?? 0,
            framesDecoded: s.framesDecoded ?? 0,
          };
        }
      });
      return out;
    };
    const tiles = [];
    for (const feed of document.querySelectorAll("#videos-grid div[name='video-feed']")) {
      if (feed.id === "feed-local-peer") continue;
      const video = feed.querySelector("video");
      const stream = video && video.srcObject;
      const videoTrack = stream ? stream.getVideoTracks()[0] : undefined;
      const audioTrack = stream ? stream.getAudioTracks()[0] : undefined;
      tiles.push({
        peerId: feed.id.replace(/^feed-/, ""),
        label: feed.querySelector("div[name='video-label']")?.innerText ?? "",
        audio: feed.dataset.audio ?? null,
        video: feed.dataset.video ?? null,
        status: feed.querySelector("[name='video-status']")?.textContent ?? "",
        videoWidth: video ? video.videoWidth : 0,
        videoStats: videoTrack ? await statsOf(videoTrack) : null,
        audioStats: audioTrack ? await statsOf(audioTrack) : null,
      });
    }
    return JSON.stringify(tiles);
  }));
}

/** The text of `#participants-list`. */
export function participantsText(page) {
  return page.evaluate(() => document.getElementById("participants-list")?.textContent ?? "");
}

/**
 * Waits until `page` shows exactly the remote tiles labelled `names`, each with video decoding
 * (framesDecoded grows between two samples, videoWidth > 0) and audio packets growing.
 */
export async function expectLiveTiles(page, names, timeoutMs = 30_000) {
  const want = [...names].sort();
  let before = null;
  return eventually(
    `live tiles ${want.join(", ")}`,
    async () => {
      const tiles = await readTiles(page);
      const labels = tiles.map((t) => t.label).sort();
      if (JSON.stringify(labels) !== JSON.stringify(want)) {
        before = null;
        return false;
      }
      const prev = before;
      before = tiles;
      if (!prev) return false;
      const ok = tiles.every((t) => {
        const p = prev.find((x) => x.peerId === t.peerId);
        return (
          p &&
          t.videoWidth > 0 &&
          t.videoStats &&
          p.videoStats &&
          t.videoStats.framesDecoded > p.videoStats.framesDecoded &&
          t.audioStats &&
          p.audioStats &&
          t.audioStats.packetsReceived > p.audioStats.packetsReceived
        );
      });
      return ok ? tiles : false;
    },
    { timeoutMs, intervalMs: 1000 },
  );
}
