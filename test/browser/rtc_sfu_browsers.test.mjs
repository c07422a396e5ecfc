// Real Chromium and Firefox ESR against rtc::sfu (through examples/sfu_probe, which offers a bare
// HTTP offer/answer endpoint instead of the Phoenix/media-event layers): both browsers publish,
// both subscribe to both, video is decoded, audio+video of a publisher share one stream, and
// ICE restarts on re-offers keep media flowing.
// Run: cargo build --example sfu_probe && cp "$CARGO_TARGET_DIR/debug/examples/sfu_probe" /tmp/x &&
//      SFU_PROBE_BIN=/tmp/x node --test test/browser/rtc_sfu_browsers.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import puppeteer from 'puppeteer-core';

const BIN = process.env.SFU_PROBE_BIN;

function startProbe() {
  const child = spawn(BIN, [], { stdio: ['ignore', 'pipe', 'pipe'] });
  // "peer <name> is <id>" and "sfu event: PeerFailed(PeerId(<id>))" lines, with arrival times.
  const log = [];
  let err = '';
  child.stderr.on('data', (d) => {
    err += d;
    let i;
    while ((i = err.indexOf('\n')) >= 0) {
      log.push({ at: Date.now(), line: err.slice(0, i) });
      err = err.slice(i + 1);
    }
  });
  child.log = log;
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/listening on (http:\/\/\S+)/);
      if (m) resolve({ child, url: m[1] });
    });
    child.on('exit', (c) => reject(new Error(`sfu_probe exited ${c}`)));
  });
}

async function launchChromium() {
  return puppeteer.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    userDataDir: fs.mkdtempSync(path.join(os.tmpdir(), 'rtc-chr-')),
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
      '--disable-features=WebRtcHideLocalIpsWithMdns'],
  });
}

async function launchFirefox() {
  return puppeteer.launch({
    browser: 'firefox',
    executablePath: '/usr/bin/firefox-esr',
    headless: true,
    extraPrefsFirefox: {
      'media.navigator.streams.fake': true,
      'media.navigator.permission.disabled': true,
      'media.peerconnection.ice.obfuscate_host_addresses': false,
    },
  });
}

async function until(what, fn, ms = 20000) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    last = await fn();
    if (last.ok) return last;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out waiting for ${what}: ${JSON.stringify(last)}`);
}

test('chromium and firefox publish and subscribe through the sfu, across ice restarts', { skip: !BIN && 'SFU_PROBE_BIN not set', timeout: 120000 }, async () => {
  const probe = await startProbe();
  const chr = await launchChromium();
  const ff = await launchFirefox();
  try {
    const open = async (browser, query) => {
      const page = await browser.newPage();
      await page.goto(`${probe.url}/?${query}`);
      await page.evaluate(() => window.setup());
      return page;
    };
    const cp = await open(chr, 'role=pub&name=cp');
    const fp = await open(ff, 'role=pub&name=fp');
    await cp.evaluate(() => window.negotiate(false));
    await fp.evaluate(() => window.negotiate(false));
    const cs = await open(chr, 'role=sub&name=cs&pubs=2');
    const fs2 = await open(ff, 'role=sub&name=fs&pubs=2');
    for (const sub of [cs, fs2]) {
      const map = await sub.evaluate(() => window.negotiate(false));
      assert.equal(Object.keys(map).length, 4, JSON.stringify(map));
    }
    // Every received video track decodes at least `frames` more frames than in `before`, and
    // every audio track receives 50 more packets.
    const flowing = async (page, name, before) => until(`${name} decoding`, async () => {
      const s = await page.evaluate(() => window.stats());
      const grew = (now, then, n) => Object.keys(now).length === 2
        && Object.entries(now).every(([mid, v]) => v >= (then[mid] || 0) + n);
      return { ok: grew(s.frames, before.frames, 40) && grew(s.audio, before.audio, 50), ...s };
    });
    for (const [p, n] of [[cs, 'chromium subscriber'], [fs2, 'firefox subscriber']]) {
      await flowing(p, n, { frames: {}, audio: {} });
      const received = await p.evaluate(() => window.received);
      assert.equal(received.length, 4, JSON.stringify(received));
      const byStream = {};
      for (const r of received) (byStream[r.stream] ||= []).push(r.kind);
      const groups = Object.values(byStream).map((k) => k.sort().join('+'));
      assert.deepEqual(groups.sort(), ['audio+video', 'audio+video'], `one stream per publisher: ${JSON.stringify(received)}`);
    }
    // Every re-offer is an ICE restart (as the tutorial's client does); media must keep flowing.
    for (const page of [cs, fs2, cp, fp]) await page.evaluate(() => window.negotiate(true));
    for (const [p, n] of [[cs, 'chromium subscriber'], [fs2, 'firefox subscriber']]) {
      const before = await p.evaluate(() => window.stats());
      await flowing(p, `${n} after ICE restarts`, before);
    }
    // A browser that vanishes without a word (killed: no DTLS close, no ICE) is reported
    // failed within 5 s; one that closes cleanly (Firefox sends a DTLS close_notify) at once.
    const idOf = (name) => probe.child.log.map((l) => l.line.match(new RegExp(`peer ${name} is (\\S+)`))).find(Boolean)[1];
    const failedAt = (id) => probe.child.log.find((l) => l.line.includes(`PeerFailed(PeerId(${id}))`))?.at;
    const [cpId, csId, fpId, fsId] = ['cp', 'cs', 'fp', 'fs'].map(idOf);
    const killedAt = Date.now();
    chr.process().kill('SIGKILL');
    await until('chromium peers failed', async () => ({ ok: failedAt(cpId) && failedAt(csId) }), 8000);
    console.log('vanished chromium detected after', [cpId, csId].map((id) => failedAt(id) - killedAt), 'ms');
    for (const id of [cpId, csId]) assert.ok(failedAt(id) - killedAt <= 5000, `detected after ${failedAt(id) - killedAt} ms`);
    assert.ok(!failedAt(fpId) && !failedAt(fsId), 'firefox peers still fine');
    const closedAt = Date.now();
    await ff.close();
    await until('firefox peers failed', async () => ({ ok: failedAt(fpId) && failedAt(fsId) }), 8000);
    console.log('closed firefox detected after', [fpId, fsId].map((id) => failedAt(id) - closedAt), 'ms');
    for (const id of [fpId, fsId]) assert.ok(failedAt(id) - closedAt <= 5000, `detected after ${failedAt(id) - closedAt} ms`);
  } finally {
    await chr.close().catch(() => {});
    await ff.close().catch(() => {});
    probe.child.kill();
  }
});
