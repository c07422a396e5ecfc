// The project's MembraneWebRTC client (the committed bundle, priv/static/assets/js/app.js) against
// a scripted server inside headless Chromium: the "server" is a test script that sends the flat
// dialect's events and answers the client's offers with a real second
// RTCPeerConnection, so real media flows both ways. No videoroom server is involved: this pins
// the client's side of every negotiation (offerData → sendonly/recvonly accounting → sdpOffer with
// midToTrackId, candidates, sdpAnswer → onTrackReady, ICE restart on every re-offer, peer/track
// bookkeeping, leave) independently of the SFU.

import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT, launchChromium, launchFirefox } from "./support.mjs";

let http;
let base;

before(async () => {
  const bundle = readFileSync(join(REPO_ROOT, "priv/static/assets/js/app.js"));
  http = createServer((req, res) => {
    if (req.url === "/assets/js/app.js") {
      res.writeHead(200, { "content-type": "text/javascript" });
      res.end(bundle);
    } else {
      res.writeHead(200, { "content-type": "text/html" });
      res.end('<!DOCTYPE html><html><body><script src="/assets/js/app.js"></script></body></html>');
    }
  });
  await new Promise((ok) => http.listen(0, "127.0.0.1", ok));
  base = `http://127.0.0.1:${http.address().port}`;
});

after(async () => {
  await new Promise((ok) => http?.close(ok));
});

// Runs the whole conversation in the page and returns a transcript for the assertions below.
async function runScriptedSession(page) {
  await page.goto(`${base}/`);
  return page.evaluate(async () => {
    const within = (ms, what, promise) =>
      Promise.race([
        promise,
        new Promise((_, fail) => setTimeout(() => fail(new Error(`timeout: ${what}`)), ms)),
      ]);
    const until = (what, cond, ms = 10000) =>
      within(
        ms,
        what,
        new Promise((ok) => {
          const tick = () => {
            const v = cond();
            if (v) ok(v);
            else setTimeout(tick, 50);
          };
          tick();
        }),
      );

    const sent = [];
    const calls = [];
    const record = (name) => (...args) => calls.push({ name, args });
    const ready = [];
    const client = new window.videoroom.MembraneWebRTC({
      callbacks: {
        onSendMediaEvent: (s) => sent.push(JSON.parse(s)),
        onJoinSuccess: (id, peers) =>
          calls.push({ name: "joinSuccess", id, peers: peers.map((p) => ({ id: p.id, tracks: [...p.trackIdToMetadata.keys()] })) }),
        onJoinError: record("joinError"),
        onTrackReady: (ctx) => {
          ready.push(ctx);
          calls.push({ name: "trackReady", trackId: ctx.trackId, peer: ctx.peer.id, hasStream: !!ctx.stream, kind: ctx.track && ctx.track.kind });
        },
        onTrackAdded: (ctx) => calls.push({ name: "trackAdded", trackId: ctx.trackId, peer: ctx.peer.id, track: ctx.track }),
        onTrackRemoved: (ctx) => calls.push({ name: "trackRemoved", trackId: ctx.trackId, peer: ctx.peer.id }),
        onTrackUpdated: (ctx) => calls.push({ name: "trackUpdated", trackId: ctx.trackId, metadata: ctx.metadata }),
        onPeerJoined: (peer) => calls.push({ name: "peerJoined", id: peer.id, metadata: peer.metadata }),
        onPeerLeft: (peer) => calls.push({ name: "peerLeft", id: peer.id }),
        onPeerUpdated: (peer) => calls.push({ name: "peerUpdated", id: peer.id, metadata: peer.metadata }),
        onConnectionError: (message) => calls.push({ name: "connectionError", message }),
      },
    });
    const deliver = (type, data) => client.receiveMediaEvent(JSON.stringify(data === undefined ? { type } : { type, data }));
    const sentOf = (type) => sent.filter((e) => e.type === type);
    const out = { sent, calls };

    // join → peerAccepted (one peer already there, publishing video)
    client.join({ displayName: "A" });
    out.joinEvent = sent[0];
    out.addTrackBeforeAccepted = (() => {
      try {
        client.addTrack(new MediaStream().getTracks()[0], new MediaStream());
        return "accepted";
      } catch (e) {
        return "threw";
      }
    })();
    deliver("peerAccepted", {
      id: "peer-a",
      peersInRoom: [{ id: "peer-b", metadata: { displayName: "B" }, trackIdToMetadata: { "peer-b:v": { kind: "video" } } }],
    });
    await until("joinSuccess", () => calls.find((c) => c.name === "joinSuccess"));

    const local = await navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 240 } });
    const trackId = client.addTrack(local.getVideoTracks()[0], local, { kind: "video", active: true });
    out.trackId = trackId;
    out.renegotiateAfterAddTrack = sent[sent.length - 1];

    // The "server": a real peer connection answering the client's offers.
    const server = new RTCPeerConnection();
    const serverMedia = await navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 240 } });
    const serverStream = new MediaStream([serverMedia.getVideoTracks()[0]]);
    let serverReceived = null;
    server.ontrack = (ev) => (serverReceived = ev.receiver);
    let heldCandidates = null; // when an array, server candidates wait there
    server.onicecandidate = (ev) => {
      // libnice style "a=" prefix and null sdpMid, as the Elixir server sent them.
      if (ev.candidate && ev.candidate.candidate) {
        const data = { candidate: `a=${ev.candidate.candidate}`, sdpMLineIndex: 0, sdpMid: null, usernameFragment: null };
        if (heldCandidates) heldCandidates.push(data);
        else deliver("candidate", data);
      }
    };
    let candidatesApplied = 0;
    const applyClientCandidates = async () => {
      const cands = sentOf("candidate");
      for (; candidatesApplied < cands.length; candidatesApplied++) {
        const c = cands[candidatesApplied].data;
        await server.addIceCandidate({ candidate: c.candidate, sdpMLineIndex: c.sdpMLineIndex }).catch(() => {});
      }
    };
    // Paused while a test step wants the client to hear of the server only through signalling
    // (otherwise the server's connectivity checks would introduce it as peer-reflexive first).
    let pumpPaused = false;
    const candidatePump = setInterval(() => {
      if (server.remoteDescription && !pumpPaused) applyClientCandidates();
    }, 50);

    // candidatesFirst: the server's candidates reach the client before the answer does.
    const answer = async (offerEvent, midToTrackId, { candidatesFirst = false } = {}) => {
      if (candidatesFirst) {
        heldCandidates = [];
        pumpPaused = true;
      }
      await server.setRemoteDescription(offerEvent.data.sdpOffer);
      for (const t of server.getTransceivers()) {
        // The client's recvonly video m-line gets the "other peer's" video.
        if (t.mid === "1") {
          t.direction = "sendonly";
          await t.sender.replaceTrack(serverStream.getVideoTracks()[0]);
          t.sender.setStreams(serverStream);
        }
      }
      const sdp = await server.createAnswer();
      await server.setLocalDescription(sdp);
      if (candidatesFirst) {
        await until("server gathering", () => server.iceGatheringState === "complete", 5000).catch(() => {});
        out.earlyCandidates = heldCandidates.length;
        heldCandidates.forEach((c) => deliver("candidate", c));
        heldCandidates = null;
      }
      deliver("sdpAnswer", { type: "answer", sdp: sdp.sdp, midToTrackId });
      if (candidatesFirst) {
        // Let the client apply the answer and its kept candidates before the server checks.
        await new Promise((r) => setTimeout(r, 500));
        pumpPaused = false;
      }
    };

    // First negotiation: 0 audio, 1 video to receive.
    deliver("offerData", { audio: 0, video: 1 });
    const offer1 = await until("first sdpOffer", () => sentOf("sdpOffer")[0]);
    out.offer1 = offer1.data;
    await answer(offer1, { "0": trackId, "1": "peer-b:v" }, { candidatesFirst: true });
    await until("trackReady", () => ready.length > 0);
    const remoteVideo = document.createElement("video");
    remoteVideo.muted = true;
    remoteVideo.srcObject = ready[0].stream;
    document.body.appendChild(remoteVideo);
    await remoteVideo.play().catch(() => {});
    const framesIn = async () => {
      let n = 0;
      (await client.connection.getStats()).forEach((s) => {
        if (s.type === "inbound-rtp" && s.kind === "video") n = s.framesDecoded;
      });
      return n;
    };
    const framesAtServer = async () => {
      let n = 0;
      if (serverReceived) (await serverReceived.getStats()).forEach((s) => {
        if (s.type === "inbound-rtp") n = s.framesDecoded;
      });
      return n;
    };
    const f1 = await within(10000, "client decodes", (async () => { for (;;) { const n = await framesIn(); if (n > 5) return n; await new Promise((r) => setTimeout(r, 100)); } })());
    const s1 = await within(10000, "server decodes", (async () => { for (;;) { const n = await framesAtServer(); if (n > 5) return n; await new Promise((r) => setTimeout(r, 100)); } })());
    out.firstMedia = { clientFrames: f1, serverFrames: s1, videoWidth: remoteVideo.videoWidth };
    out.candidatesSent = sentOf("candidate").map((e) => e.data);
    // Remote candidates the client knows: "host" ones came from signalling, "prflx" ones only
    // from connectivity checks.
    out.remoteCandidateTypes = [];
    (await client.connection.getStats()).forEach((st) => {
      if (st.type === "remote-candidate") out.remoteCandidateTypes.push(st.candidateType);
    });

    // Renegotiation with the same counts: an ICE restart, no new m-lines, media keeps flowing.
    deliver("offerData", { audio: 0, video: 1 });
    const offer2 = await until("second sdpOffer", () => sentOf("sdpOffer")[1]);
    out.offer2 = offer2.data;
    await answer(offer2, { "0": trackId, "1": "peer-b:v" });
    const before = await framesIn();
    await new Promise((r) => setTimeout(r, 2000));
    out.afterRestart = { before, after: await framesIn(), state: client.connection.connectionState };

    // replaceTrack: other media on the same m-line, no renegotiation; new metadata sent.
    const offersBefore = sentOf("sdpOffer").length;
    const replacement = await navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 240 } });
    const replaced = await client.replaceTrack(trackId, replacement.getVideoTracks()[0], { kind: "video", active: true, replaced: true });
    const serverFramesBefore = await framesAtServer();
    await new Promise((r) => setTimeout(r, 1500));
    out.replace = {
      result: replaced,
      unknown: await client.replaceTrack("peer-a:nope", replacement.getVideoTracks()[0]),
      senderHasNewTrack: client.connection.getSenders().some((s) => s.track === replacement.getVideoTracks()[0]),
      metadataSent: sent.some((e) => e.type === "updateTrackMetadata" && e.data.trackMetadata.replaced === true),
      newOffers: sentOf("sdpOffer").length - offersBefore,
      serverFramesGrew: (await framesAtServer()) > serverFramesBefore,
    };

    // Bookkeeping events.
    deliver("trackUpdated", { peerId: "peer-b", trackId: "peer-b:v", metadata: { kind: "video", active: false } });
    deliver("tracksAdded", { peerId: "peer-a", trackIdToMetadata: { [trackId]: {} } });
    deliver("tracksAdded", { peerId: "peer-b", trackIdToMetadata: { "peer-b:v": { kind: "video" }, "peer-b:a": { kind: "audio" } } });
    deliver("peerJoined", { peer: { id: "peer-a", metadata: { displayName: "A" }, trackIdToMetadata: {} } });
    deliver("peerJoined", { peer: { id: "peer-c", metadata: { displayName: "C" }, trackIdToMetadata: {} } });
    deliver("peerUpdated", { peerId: "peer-c", metadata: { displayName: "Cee" } });
    deliver("tracksAdded", { peerId: "peer-c", trackIdToMetadata: { "peer-c:v": {} } });
    deliver("tracksRemoved", { peerId: "peer-c", trackIds: ["peer-c:v"] });
    deliver("peerLeft", { peerId: "peer-b" });
    deliver("someFutureEvent", { x: 1 });
    client.receiveMediaEvent("not json");
    client.updateTrackMetadata(trackId, { kind: "video", active: false });
    client.updatePeerMetadata({ displayName: "A2" });
    await until("peerLeft", () => calls.find((c) => c.name === "peerLeft"));

    // removeTrack → renegotiateTracks → the next offer no longer maps the track.
    client.removeTrack(trackId);
    out.renegotiateAfterRemove = sent[sent.length - 1];
    deliver("offerData", { audio: 0, video: 1 });
    const offer3 = await until("third sdpOffer", () => sentOf("sdpOffer")[2]);
    out.offer3 = offer3.data;

    // A server error: the app is told, the client leaves.
    deliver("error", { message: "boom" });
    await until("connectionError", () => calls.find((c) => c.name === "connectionError"));
    out.lastSent = sent[sent.length - 1];
    out.connectionAfterLeave = client.connection === undefined;

    clearInterval(candidatePump);
    server.close();
    serverMedia.getTracks().forEach((t) => t.stop());
    // Strip what cannot be cloned out of the page.
    out.calls = calls.map(({ track, ...rest }) => rest);
    // As JSON: Puppeteer over BiDi and Playwright clone objects differently.
    return JSON.stringify(out);
  }).then(JSON.parse);
}

const mediaSections = (sdp) =>
  sdp.split(/\r?\n(?=m=)/).slice(1).map((section) => ({
    kind: section.slice(2, 7),
    mid: /a=mid:(\S+)/.exec(section)?.[1],
    direction: /a=(sendonly|recvonly|sendrecv|inactive)/.exec(section)?.[1],
    ufrag: /a=ice-ufrag:(\S+)/.exec(section)?.[1],
  }));

for (const kind of ["chromium", "firefox"]) {
 describe(`MembraneWebRTC in ${kind}`, () => {
  let browser;
  let transcript;
  async function session() {
    transcript ??= await runScriptedSession(browser.page);
    return transcript;
  }

  before(async () => {
    browser = kind === "firefox" ? await launchFirefox() : await launchChromium();
  });

  after(async () => {
    await browser?.close();
  });

  test("join sends the flat join event with receiveMedia and the peer metadata", async () => {
    const t = await session();
    assert.deepEqual(t.joinEvent, { type: "join", data: { receiveMedia: true, metadata: { displayName: "A" } } });
    assert.equal(t.addTrackBeforeAccepted, "threw");
  });

  test("peerAccepted reports our id and the peers already in the room with their tracks", async () => {
    const t = await session();
    const join = t.calls.find((c) => c.name === "joinSuccess");
    assert.equal(join.id, "peer-a");
    assert.deepEqual(join.peers, [{ id: "peer-b", tracks: ["peer-b:v"] }]);
    assert.ok(t.calls.some((c) => c.name === "trackAdded" && c.trackId === "peer-b:v"));
  });

  test("addTrack returns peerId:uuid and asks for renegotiation", async () => {
    const t = await session();
    assert.match(t.trackId, /^peer-a:[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.deepEqual(t.renegotiateAfterAddTrack, { type: "renegotiateTracks", data: {} });
  });

  test("the first offer has our track sendonly, one recvonly per announced track, and maps mids to our track ids", async () => {
    const t = await session();
    assert.equal(t.offer1.sdpOffer.type, "offer");
    const sections = mediaSections(t.offer1.sdpOffer.sdp);
    assert.deepEqual(
      sections.map((s) => [s.kind, s.mid, s.direction]),
      [
        ["video", "0", "sendonly"],
        ["video", "1", "recvonly"],
      ],
    );
    assert.deepEqual(t.offer1.midToTrackId, { "0": t.trackId });
    assert.deepEqual(t.offer1.trackIdToTrackMetadata, { [t.trackId]: { kind: "video", active: true } });
  });

  test("candidates go out as {candidate, sdpMLineIndex} only", async () => {
    const t = await session();
    assert.ok(t.candidatesSent.length > 0);
    for (const c of t.candidatesSent) {
      assert.deepEqual(Object.keys(c).sort(), ["candidate", "sdpMLineIndex"]);
      assert.match(c.candidate, /^candidate:/);
      assert.equal(typeof c.sdpMLineIndex, "number");
    }
  });

  test("server candidates that arrive before the answer are kept and applied after it", async () => {
    const t = await session();
    assert.ok(t.earlyCandidates > 0);
    assert.ok(t.remoteCandidateTypes.includes("host"), JSON.stringify(t.remoteCandidateTypes));
  });

  test("the answer's midToTrackId drives onTrackReady and real video flows both ways", async () => {
    const t = await session();
    const readyCall = t.calls.find((c) => c.name === "trackReady");
    assert.deepEqual(readyCall, { name: "trackReady", trackId: "peer-b:v", peer: "peer-b", hasStream: true, kind: "video" });
    assert.ok(t.firstMedia.clientFrames > 5);
    assert.ok(t.firstMedia.serverFrames > 5);
    assert.ok(t.firstMedia.videoWidth > 0);
  });

  test("every later offerData restarts ICE without adding m-lines, and media keeps flowing", async () => {
    const t = await session();
    const first = mediaSections(t.offer1.sdpOffer.sdp);
    const second = mediaSections(t.offer2.sdpOffer.sdp);
    assert.equal(second.length, 2);
    assert.notEqual(second[0].ufrag, first[0].ufrag);
    assert.deepEqual(t.offer2.midToTrackId, { "0": t.trackId });
    assert.equal(t.afterRestart.state, "connected");
    assert.ok(t.afterRestart.after > t.afterRestart.before, JSON.stringify(t.afterRestart));
  });

  test("replaceTrack swaps the sent media without renegotiation and sends the new metadata", async () => {
    const t = await session();
    assert.deepEqual(t.replace, {
      result: true,
      unknown: false,
      senderHasNewTrack: true,
      metadataSent: true,
      newOffers: 0,
      serverFramesGrew: true,
    });
  });

  test("track and peer events update the app, ignoring our own echoes and unknown events", async () => {
    const t = await session();
    const names = t.calls.map((c) => c.name);
    assert.deepEqual(
      t.calls.find((c) => c.name === "trackUpdated"),
      { name: "trackUpdated", trackId: "peer-b:v", metadata: { kind: "video", active: false } },
    );
    const added = t.calls.filter((c) => c.name === "trackAdded").map((c) => c.trackId);
    assert.deepEqual(added, ["peer-b:v", "peer-b:a", "peer-c:v"]);
    assert.deepEqual(t.calls.filter((c) => c.name === "peerJoined").map((c) => c.id), ["peer-c"]);
    assert.deepEqual(t.calls.find((c) => c.name === "peerUpdated"), { name: "peerUpdated", id: "peer-c", metadata: { displayName: "Cee" } });
    const removed = t.calls.filter((c) => c.name === "trackRemoved").map((c) => c.trackId);
    assert.deepEqual(removed, ["peer-c:v", "peer-b:v", "peer-b:a"]);
    assert.ok(names.indexOf("peerLeft") > names.lastIndexOf("trackRemoved"));
  });

  test("metadata updates are sent in the flat shape", async () => {
    const t = await session();
    assert.ok(
      t.sent.some(
        (e) =>
          e.type === "updateTrackMetadata" &&
          JSON.stringify(e.data) === JSON.stringify({ trackId: t.trackId, trackMetadata: { kind: "video", active: false } }),
      ),
    );
    assert.ok(t.sent.some((e) => e.type === "updatePeerMetadata" && e.data.metadata.displayName === "A2"));
  });

  test("removeTrack renegotiates and the next offer no longer sends or maps the track", async () => {
    const t = await session();
    assert.deepEqual(t.renegotiateAfterRemove, { type: "renegotiateTracks", data: {} });
    assert.deepEqual(t.offer3.midToTrackId, {});
    assert.deepEqual(t.offer3.trackIdToTrackMetadata, {});
    const sections = mediaSections(t.offer3.sdpOffer.sdp);
    assert.equal(sections[0].direction, "inactive");
    assert.equal(sections.filter((s) => s.direction === "recvonly").length, 1);
  });

  test("a server error reaches onConnectionError and the client leaves", async () => {
    const t = await session();
    assert.deepEqual(t.calls.find((c) => c.name === "connectionError"), { name: "connectionError", message: "boom" });
    assert.deepEqual(t.lastSent, { type: "leave" });
    assert.equal(t.connectionAfterLeave, true);
  });
 });
}
