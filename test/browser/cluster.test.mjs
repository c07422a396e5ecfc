// Several nodes as one service (issue 14), in real browsers: three server processes on one
// Redis (Debian's redis-server, started here on a free port), Chromium on one node and Firefox on
// another join one room, which the cluster places on the third; both decode each other's video
// (signalling relayed between nodes, media straight to the room's node). Then the room's node is
// killed (SIGKILL): both pages get back into the call by themselves, as new peers, on a surviving
// node. Prints what it measured. Uses $VIDEOROOM_BIN.

import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { setTimeout as sleep } from "node:timers/promises";
import { join } from "node:path";
import { artifactsDir, enterRoom, expectLiveTiles, freeTcpPort, launchChromium, launchFirefox, participantsText, startServer } from "./support.mjs";

const cleanups = [];
after(async () => {
  for (const undo of cleanups.splice(0).reverse()) await undo();
});

/** A redis-server without persistence on a free loopback port; resolves once it answers. */
async function startRedis() {
  const port = await freeTcpPort();
  const child = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], {
    stdio: "ignore",
  });
  cleanups.push(async () => child.kill("SIGKILL"));
  const net = await import("node:net");
  for (let i = 0; i < 100; i++) {
    const up = await new Promise((ok) => {
      const s = net.connect(port, "127.0.0.1", () => (s.destroy(), ok(true)));
      s.on("error", () => ok(false));
    });
    if (up) return `redis://127.0.0.1:${port}/`;
    await sleep(50);
  }
  throw new Error("redis-server did not start (test/run_all.sh installs it)");
}

async function clusterOf(node) {
  return (await fetch(`${node.url}/cluster`)).json();
}

test("Chromium and Firefox on two nodes meet in a room on a third, and get back by themselves when that node is killed", async () => {
  const redisUrl = await startRedis();
  const nodes = [];
  for (const id of ["n1", "n2", "n3"]) {
    const node = await startServer({ env: { REDIS_URL: redisUrl, NODE_ID: id, CLUSTER_LEASE_SECS: "1.5" } });
    cleanups.push(() => node.stop("SIGKILL"));
    nodes.push(node);
  }
  const [n1, n2, n3] = nodes;
  for (const node of nodes) {
    for (let i = 0; (await clusterOf(node)).nodes.length < 3; i++) {
      assert.ok(i < 100, "the nodes never saw each other");
      await sleep(100);
    }
  }
  const ann = await launchChromium();
  cleanups.push(() => ann.close());
  const ben = await launchFirefox();
  cleanups.push(() => ben.close());

  await enterRoom(ann, n2.url, "cluster-room", "Ann");
  await enterRoom(ben, n3.url, "cluster-room", "Ben");
  await expectLiveTiles(ann.page, ["Ben"], 45_000);
  await expectLiveTiles(ben.page, ["Ann"], 45_000);
  assert.equal((await clusterOf(n1)).node.rooms, 1, "the room runs on n1 (least loaded, ties by id)");
  assert.equal((await clusterOf(n2)).node.rooms, 0);
  assert.match(n2.log(), /room=cluster-room joined the channel, relayed to node n1/);

  const killedAt = Date.now();
  await n1.stop("SIGKILL");
  await Promise.all([expectLiveTiles(ann.page, ["Ben"], 45_000), expectLiveTiles(ben.page, ["Ann"], 45_000)]);
  const bothDecodeAt = Date.now();
  const rooms = (await clusterOf(n2)).node.rooms + (await clusterOf(n3)).node.rooms;
  assert.equal(rooms, 1, "the room runs again, once, on a survivor");
  const back = [];
  for (const page of [ann.page, ben.page]) {
    const r = await page.evaluate(() => JSON.stringify(window.videoroom.room.reconnections)).then(JSON.parse);
    assert.equal(r.length, 1);
    assert.equal(r[0].resumed, false, "a new room: joined again as a new peer");
    back.push(r[0].backAt - killedAt);
  }
  assert.match(await participantsText(ann.page), /Ann, Ben/);
  await ann.page.screenshot({ path: join(artifactsDir(), "cluster-after-node-killed.png") });
  console.log(`room's node killed: signalling back after ${back.join(" / ")} ms (Chromium / Firefox), both decoding each other after ${bothDecodeAt - killedAt} ms`);
});
