//! Event order of every signalling sequence of `docs/media-events.md`, at engine level
//! (sans-IO, no sockets) with the REAL SFU answering real browser offers (Chromium 156 and
//! Firefox ESR, recorded from the tutorial's client), plus the bad-input cases.
//!
//! Every test keeps one global log of what the engine emitted, in order, so orderings across
//! peers (`peerJoined(X) < tracksAdded(X) < sdpAnswer mapping X's tracks`) can be asserted.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::{Value, json};
use videoroom::rtc::engine::{Engine, EngineOutput};
use videoroom::rtc::ids::PeerId;
use videoroom::rtc::sfu::{Sfu, SfuConfig};

struct Browser {
    publisher: &'static str,
    joiner: &'static str,
    viewer: &'static str,
}

const CHROMIUM: Browser = Browser {
    publisher: include_str!("fixtures/sdp/chromium-156/publisher-first-offer.sdp"),
    joiner: include_str!("fixtures/sdp/chromium-156/joiner-offer-1pub.sdp"),
    viewer: include_str!("fixtures/sdp/chromium-156/viewer-offer-2pubs.sdp"),
};

const FIREFOX: Browser = Browser {
    publisher: include_str!("fixtures/sdp/firefox-esr/publisher-first-offer.sdp"),
    joiner: include_str!("fixtures/sdp/firefox-esr/joiner-offer-1pub.sdp"),
    viewer: include_str!("fixtures/sdp/firefox-esr/viewer-offer-2pubs.sdp"),
};

/// One emitted media event: who gets it and what it is.
#[derive(Debug, Clone)]
struct Entry {
    to: Vec<PeerId>,
    event: Value,
}

impl Entry {
    fn kind(&self) -> &str {
        self.event["type"].as_str().unwrap()
    }
    fn data(&self) -> &Value {
        &self.event["data"]
    }
}

struct Room {
    engine: Engine<Sfu>,
    log: Vec<Entry>,
    /// ICE restarts so far (each re-offer gets fresh credentials, like `restartIce()`).
    restarts: u32,
}

impl Room {
    fn new() -> Self {
        let _ = env_logger::builder().is_test(true).try_init();
        let config = SfuConfig {
            room: "seq".into(),
            local_addrs: vec!["127.0.0.1:50000".parse().unwrap()],
            ..SfuConfig::default()
        };
        Room {
            engine: Engine::new("seq", Sfu::new(config, Instant::now())),
            log: Vec::new(),
            restarts: 0,
        }
    }

    /// Drains the engine; returns the media events of this step (also appended to the log).
    fn drain(&mut self) -> Vec<Entry> {
        let mut step = Vec::new();
        loop {
            match self.engine.poll_output() {
                EngineOutput::Timeout(_) => break,
                EngineOutput::JoinRequest { peer, .. } => {
                    self.engine.accept_peer(peer, Instant::now())
                }
                EngineOutput::Send { to, event } => step.push(Entry {
                    to: vec![to],
                    event: serde_json::from_str(&event).unwrap(),
                }),
                EngineOutput::Broadcast { to, event } => step.push(Entry {
                    to,
                    event: serde_json::from_str(&event).unwrap(),
                }),
                EngineOutput::IceUfrags(_)
                | EngineOutput::PeerRemoved(_)
                | EngineOutput::Transmit(_) => {}
            }
        }
        self.log.extend(step.iter().cloned());
        step
    }

    fn event(&mut self, from: PeerId, event: Value) -> Vec<Entry> {
        self.engine
            .handle_media_event(from, &event.to_string(), Instant::now());
        self.drain()
    }

    fn join(&mut self, peer: PeerId, receive_media: bool) -> Vec<Entry> {
        self.event(
            peer,
            json!({"type":"join","data":{"receiveMedia":receive_media,"metadata":{"displayName":peer.to_string()}}}),
        )
    }

    fn renegotiate(&mut self, peer: PeerId) -> Vec<Entry> {
        self.event(peer, json!({"type":"renegotiateTracks","data":{}}))
    }

    /// Sends `sdp` as the peer's offer with its published mids → track ids. Re-offers get new
    /// ICE credentials (the client always calls restartIce() before re-offering).
    fn offer(&mut self, peer: PeerId, sdp: &str, mids: &[(&str, &str)]) -> Vec<Entry> {
        self.restarts += 1;
        let sdp = sdp
            .replace("a=ice-ufrag:", &format!("a=ice-ufrag:r{}", self.restarts))
            .replace("a=ice-pwd:", &format!("a=ice-pwd:r{}", self.restarts));
        let mid_to_track_id: BTreeMap<&str, &str> = mids.iter().copied().collect();
        let metadata: BTreeMap<&str, Value> = mids.iter().map(|(_, t)| (*t, json!({}))).collect();
        self.event(
            peer,
            json!({"type":"sdpOffer","data":{"sdpOffer":{"type":"offer","sdp":sdp},
                "trackIdToTrackMetadata":metadata,"midToTrackId":mid_to_track_id}}),
        )
    }

    /// Index in the log of the first entry matching `f`.
    fn position(&self, f: impl Fn(&Entry) -> bool) -> usize {
        self.log
            .iter()
            .position(f)
            .expect("event present in the log")
    }
}

fn kinds(step: &[Entry]) -> Vec<&str> {
    step.iter().map(Entry::kind).collect()
}

fn only<'a>(step: &'a [Entry], kind: &str) -> &'a Entry {
    let found: Vec<&Entry> = step.iter().filter(|e| e.kind() == kind).collect();
    assert_eq!(found.len(), 1, "one {kind} in {:?}", kinds(step));
    found[0]
}

fn track(peer: PeerId, n: u32) -> String {
    format!("{peer}:0000000{n}-aaaa-4bbb-8ccc-dddddddddddd")
}

/// m-line section of `sdp` with `a=mid:<mid>`.
fn section(sdp: &str, mid: &str) -> String {
    sdp.split("m=")
        .find(|s| s.lines().any(|l| l.trim_end() == format!("a=mid:{mid}")))
        .unwrap_or_else(|| panic!("no mid {mid}"))
        .to_owned()
}

/// The answer's candidates follow it and have the flat dialect's server shape.
fn assert_candidates_follow_answer(step: &[Entry], peer: PeerId) {
    let answer_at = step.iter().position(|e| e.kind() == "sdpAnswer").unwrap();
    let candidates: Vec<&Entry> = step.iter().filter(|e| e.kind() == "candidate").collect();
    assert!(!candidates.is_empty(), "server candidates sent");
    for c in candidates {
        assert_eq!(c.to, [peer]);
        let at = step.iter().position(|e| std::ptr::eq(e, c)).unwrap();
        assert!(at > answer_at, "candidate after the answer");
        let d = c.data();
        assert!(
            d["candidate"].as_str().unwrap().starts_with("candidate:"),
            "{d}"
        );
        assert_eq!(d["sdpMLineIndex"], 0);
        assert_eq!(d["sdpMid"], Value::Null);
        assert_eq!(d["usernameFragment"], Value::Null);
        assert_eq!(d.as_object().unwrap().len(), 4);
    }
}

/// The first peer publishes in an empty room. Returns A.
fn first_peer_publishes(room: &mut Room, browser: &Browser) -> PeerId {
    let a = PeerId::new_v4();
    let step = room.join(a, true);
    assert_eq!(kinds(&step), ["peerAccepted", "peerJoined"]);
    assert_eq!(step[0].to, [a]);
    assert_eq!(step[0].data()["peersInRoom"], json!([]));
    assert_eq!(step[1].to, [a]);
    // The client adds two tracks: two renegotiateTracks, one round.
    let step = room.renegotiate(a);
    assert_eq!(kinds(&step), ["offerData"]);
    assert_eq!(step[0].data(), &json!({"audio":0,"video":0}));
    assert!(room.renegotiate(a).is_empty(), "second request coalesced");
    let step = room.offer(
        a,
        browser.publisher,
        &[("0", &track(a, 1)), ("1", &track(a, 2))],
    );
    assert_eq!(kinds(&step)[..2], ["tracksAdded", "sdpAnswer"]);
    assert!(kinds(&step)[2..].iter().all(|k| *k == "candidate"));
    assert_eq!(
        step[0].data(),
        &json!({"peerId":a.to_string(),"trackIdToMetadata":{track(a,1):{},track(a,2):{}}})
    );
    let answer = step[1].data();
    assert_eq!(answer["type"], "answer");
    assert_eq!(
        answer["midToTrackId"],
        json!({"0":track(a,1),"1":track(a,2)})
    );
    assert!(section(answer["sdp"].as_str().unwrap(), "0").contains("a=recvonly"));
    assert_candidates_follow_answer(&step, a);
    a
}

/// B joins while A publishes; both end up receiving each other. Returns B.
fn second_peer_joins(room: &mut Room, browser: &Browser, a: PeerId) -> PeerId {
    let b = PeerId::new_v4();
    let step = room.join(b, true);
    assert_eq!(kinds(&step), ["peerAccepted", "peerJoined", "offerData"]);
    assert_eq!(
        step[0].data()["peersInRoom"],
        json!([{"id":a.to_string(),"metadata":{"displayName":a.to_string()},
                "trackIdToMetadata":{track(a,1):{},track(a,2):{}}}])
    );
    assert_eq!(step[1].to, [a, b]);
    assert_eq!(step[2].to, [b]);
    assert_eq!(step[2].data(), &json!({"audio":1,"video":1}));
    assert!(room.renegotiate(b).is_empty());
    assert!(room.renegotiate(b).is_empty());

    let step = room.offer(
        b,
        browser.joiner,
        &[("0", &track(b, 1)), ("1", &track(b, 2))],
    );
    let tracks_added = only(&step, "tracksAdded");
    assert_eq!(tracks_added.to, [a, b]);
    let answer = only(&step, "sdpAnswer");
    assert_eq!(answer.to, [b]);
    assert_eq!(
        answer.data()["midToTrackId"],
        json!({"0":track(b,1),"1":track(b,2),"2":track(a,1),"3":track(a,2)})
    );
    let sdp = answer.data()["sdp"].as_str().unwrap();
    for mid in ["2", "3"] {
        let s = section(sdp, mid);
        assert!(s.contains("a=sendonly"), "mid {mid}: {s}");
        // One msid stream per publisher (the track part is the SFU's business).
        assert!(s.contains(&format!("a=msid:{a} ")), "mid {mid}: {s}");
    }
    assert_candidates_follow_answer(&step, b);
    let offer_data = only(&step, "offerData");
    assert_eq!(offer_data.to, [a]);
    assert_eq!(offer_data.data(), &json!({"audio":1,"video":1}));

    let step = room.offer(
        a,
        browser.joiner,
        &[("0", &track(a, 1)), ("1", &track(a, 2))],
    );
    assert_eq!(kinds(&step)[0], "sdpAnswer");
    let answer = &step[0];
    assert_eq!(
        answer.data()["midToTrackId"],
        json!({"0":track(a,1),"1":track(a,2),"2":track(b,1),"3":track(b,2)})
    );
    assert_candidates_follow_answer(&step, a);

    // peerJoined(B) < tracksAdded(B) < A's answer that maps B's tracks.
    let joined =
        room.position(|e| e.kind() == "peerJoined" && e.data()["peer"]["id"] == b.to_string());
    let added = room.position(|e| e.kind() == "tracksAdded" && e.data()["peerId"] == b.to_string());
    let mapped = room.position(|e| {
        e.kind() == "sdpAnswer"
            && e.to == [a]
            && e.data()["midToTrackId"]
                .as_object()
                .unwrap()
                .values()
                .any(|t| *t == track(b, 1))
    });
    assert!(
        joined < added && added < mapped,
        "{joined} < {added} < {mapped}"
    );
    b
}

#[test]
fn first_peer_in_an_empty_room_negotiates_once_chromium() {
    first_peer_publishes(&mut Room::new(), &CHROMIUM);
}

#[test]
fn first_peer_in_an_empty_room_negotiates_once_firefox() {
    first_peer_publishes(&mut Room::new(), &FIREFOX);
}

#[test]
fn second_peer_joining_a_publisher_gets_its_tracks_in_protocol_order_chromium() {
    let mut room = Room::new();
    let a = first_peer_publishes(&mut room, &CHROMIUM);
    second_peer_joins(&mut room, &CHROMIUM, a);
}

#[test]
fn second_peer_joining_a_publisher_gets_its_tracks_in_protocol_order_firefox() {
    let mut room = Room::new();
    let a = first_peer_publishes(&mut room, &FIREFOX);
    second_peer_joins(&mut room, &FIREFOX, a);
}

#[test]
fn a_viewer_receives_two_publishers_without_publishing() {
    let mut room = Room::new();
    let a = first_peer_publishes(&mut room, &CHROMIUM);
    let b = second_peer_joins(&mut room, &CHROMIUM, a);
    let v = PeerId::new_v4();
    let step = room.join(v, true);
    assert_eq!(kinds(&step), ["peerAccepted", "peerJoined", "offerData"]);
    assert_eq!(step[2].data(), &json!({"audio":2,"video":2}));
    let step = room.offer(v, CHROMIUM.viewer, &[]);
    assert_eq!(kinds(&step)[0], "sdpAnswer", "no tracksAdded for a viewer");
    let answer = step[0].data();
    assert_eq!(
        answer["midToTrackId"],
        json!({"0":track(a,1),"1":track(a,2),"2":track(b,1),"3":track(b,2)})
    );
    let sdp = answer["sdp"].as_str().unwrap();
    // Audio and video of one publisher share one msid stream.
    assert!(section(sdp, "0").contains(&format!("a=msid:{a} ")));
    assert!(section(sdp, "1").contains(&format!("a=msid:{a} ")));
    assert!(section(sdp, "2").contains(&format!("a=msid:{b} ")));
    assert_candidates_follow_answer(&step, v);
    // Nobody else renegotiates for a viewer.
    assert!(step.iter().all(|e| e.kind() != "offerData"));
}

#[test]
fn a_leaving_peer_gives_peer_left_and_an_answer_with_inactive_m_lines() {
    let mut room = Room::new();
    let a = first_peer_publishes(&mut room, &CHROMIUM);
    let b = second_peer_joins(&mut room, &CHROMIUM, a);
    let step = room.event(b, json!({"type":"leave"}));
    assert_eq!(kinds(&step), ["peerLeft", "offerData"]);
    assert_eq!(step[0].to, [a]);
    assert_eq!(step[0].data(), &json!({"peerId":b.to_string()}));
    assert_eq!(
        step[1].data(),
        &json!({"audio":1,"video":1}),
        "counts unchanged"
    );
    let step = room.offer(
        a,
        CHROMIUM.joiner,
        &[("0", &track(a, 1)), ("1", &track(a, 2))],
    );
    let answer = only(&step, "sdpAnswer").data();
    assert_eq!(
        answer["midToTrackId"],
        json!({"0":track(a,1),"1":track(a,2),"2":track(b,1),"3":track(b,2)}),
        "midToTrackId still lists the disabled tracks"
    );
    let sdp = answer["sdp"].as_str().unwrap();
    assert!(section(sdp, "2").contains("a=inactive"));
    assert!(section(sdp, "3").contains("a=inactive"));
    assert!(room.log.iter().all(|e| e.kind() != "tracksRemoved"));
}

#[test]
fn a_removed_track_gives_tracks_removed_and_an_inactive_m_line_for_subscribers() {
    let mut room = Room::new();
    let a = first_peer_publishes(&mut room, &CHROMIUM);
    let b = second_peer_joins(&mut room, &CHROMIUM, a);
    // A removes its video: renegotiateTracks, then an offer whose midToTrackId lacks mid 1.
    let step = room.renegotiate(a);
    assert_eq!(kinds(&step), ["offerData"]);
    let step = room.offer(a, CHROMIUM.joiner, &[("0", &track(a, 1))]);
    let removed = only(&step, "tracksRemoved");
    assert_eq!(removed.to, [a, b]);
    assert_eq!(
        removed.data(),
        &json!({"peerId":a.to_string(),"trackIds":[track(a,2)]})
    );
    let removed_at = step
        .iter()
        .position(|e| e.kind() == "tracksRemoved")
        .unwrap();
    let answer_at = step.iter().position(|e| e.kind() == "sdpAnswer").unwrap();
    assert!(removed_at < answer_at);
    let offer_data = only(&step, "offerData");
    assert_eq!(offer_data.to, [b]);
    assert_eq!(offer_data.data(), &json!({"audio":1,"video":1}));
    let step = room.offer(
        b,
        CHROMIUM.joiner,
        &[("0", &track(b, 1)), ("1", &track(b, 2))],
    );
    let answer = only(&step, "sdpAnswer").data();
    let sdp = answer["sdp"].as_str().unwrap();
    assert!(
        section(sdp, "2").contains("a=sendonly"),
        "audio still flows"
    );
    assert!(
        section(sdp, "3").contains("a=inactive"),
        "removed video inactive"
    );
}

#[test]
fn a_receive_media_false_peer_is_offered_nothing() {
    let mut room = Room::new();
    let a = first_peer_publishes(&mut room, &CHROMIUM);
    let v = PeerId::new_v4();
    let step = room.join(v, false);
    assert_eq!(kinds(&step), ["peerAccepted", "peerJoined"]);
    assert_eq!(step[0].data()["peersInRoom"][0]["id"], a.to_string());
    let step = room.renegotiate(v);
    assert_eq!(step[0].data(), &json!({"audio":0,"video":0}));
}

#[test]
fn metadata_updates_are_broadcast_as_peer_updated_and_track_updated() {
    let mut room = Room::new();
    let a = first_peer_publishes(&mut room, &CHROMIUM);
    let b = second_peer_joins(&mut room, &CHROMIUM, a);
    let step = room.event(
        a,
        json!({"type":"updatePeerMetadata","data":{"metadata":{"displayName":"Zed"}}}),
    );
    assert_eq!(step.len(), 1);
    assert_eq!(step[0].to, [a, b]);
    assert_eq!(
        step[0].event,
        json!({"type":"peerUpdated","data":{"peerId":a.to_string(),"metadata":{"displayName":"Zed"}}})
    );
    let step = room.event(
        a,
        json!({"type":"updateTrackMetadata","data":{"trackId":track(a,2),"trackMetadata":{"active":false}}}),
    );
    assert_eq!(
        step[0].event,
        json!({"type":"trackUpdated","data":{"peerId":a.to_string(),"trackId":track(a,2),"metadata":{"active":false}}})
    );
}

// ---- bad input: logged drops or an `error` event; the room keeps serving the others ----

/// After bad input from `bad`, a newcomer still gets the full sequence with A.
fn room_still_serves(room: &mut Room, a: PeerId) {
    let c = PeerId::new_v4();
    let step = room.join(c, true);
    assert_eq!(kinds(&step), ["peerAccepted", "peerJoined", "offerData"]);
    let step = room.offer(
        c,
        CHROMIUM.joiner,
        &[("0", &track(c, 1)), ("1", &track(c, 2))],
    );
    assert!(kinds(&step).contains(&"sdpAnswer"));
    assert!(
        step.iter().any(|e| e.kind() == "offerData" && e.to == [a]),
        "A renegotiates for the newcomer's tracks: {:?}",
        kinds(&step)
    );
}

#[test]
fn invalid_json_unknown_types_and_ill_shaped_data_are_dropped() {
    let mut room = Room::new();
    let a = first_peer_publishes(&mut room, &CHROMIUM);
    for data in [
        "",
        "{",
        "[]",
        r#"{"type":"custom","data":{"type":"sdpOffer"}}"#,
        r#"{"type":"selectEncoding","data":{}}"#,
        r#"{"type":"sdpOffer","data":{"sdpOffer":"v=0"}}"#,
        r#"{"type":"candidate","data":{"candidate":7}}"#,
        r#"{"type":"join","data":{"metadata":{}}}"#,
    ] {
        room.engine.handle_media_event(a, data, Instant::now());
        assert!(room.drain().is_empty(), "{data:?} is dropped silently");
    }
    room_still_serves(&mut room, a);
}

#[test]
fn events_before_join_are_dropped() {
    let mut room = Room::new();
    let a = first_peer_publishes(&mut room, &CHROMIUM);
    let stranger = PeerId::new_v4();
    for event in [
        json!({"type":"renegotiateTracks","data":{}}),
        json!({"type":"candidate","data":{"candidate":"candidate:1 1 udp 1 1.2.3.4 5 typ host","sdpMLineIndex":0}}),
        json!({"type":"updatePeerMetadata","data":{"metadata":{}}}),
        json!({"type":"leave"}),
    ] {
        assert!(room.event(stranger, event).is_empty());
    }
    let step = room.offer(stranger, CHROMIUM.publisher, &[("0", "x"), ("1", "y")]);
    assert!(step.is_empty());
    assert!(!room.engine.is_member(stranger));
    room_still_serves(&mut room, a);
}

#[test]
fn garbage_sdp_gets_an_error_event_for_that_peer_only() {
    let mut room = Room::new();
    let a = first_peer_publishes(&mut room, &CHROMIUM);
    let b = PeerId::new_v4();
    room.join(b, true);
    let step = room.offer(b, "this is not SDP", &[("0", &track(b, 1))]);
    assert_eq!(kinds(&step), ["error"]);
    assert_eq!(step[0].to, [b]);
    assert!(step[0].data()["message"].as_str().unwrap().len() > 3);
    assert_eq!(step[0].data().as_object().unwrap().len(), 1);
    room_still_serves(&mut room, a);
}

#[test]
fn an_offer_with_no_usable_codec_gets_an_error_event() {
    let mut room = Room::new();
    let a = first_peer_publishes(&mut room, &CHROMIUM);
    let b = PeerId::new_v4();
    room.join(b, true);
    // Only G722/PCMU/PCMA audio and AV1/VP9 video: nothing the SFU forwards.
    let offer = CHROMIUM
        .joiner
        .replace("opus/48000/2", "X-NOPE/48000/2")
        .replace("VP8/90000", "X-NOPE/90000")
        .replace("H264/90000", "X-NOPE/90000");
    let step = room.offer(b, &offer, &[("0", &track(b, 1)), ("1", &track(b, 2))]);
    assert_eq!(kinds(&step), ["error"], "{step:?}");
    assert_eq!(step[0].to, [b]);
    assert!(
        room.log
            .iter()
            .all(|e| !(e.kind() == "tracksAdded" && e.data()["peerId"] == b.to_string())),
        "tracks of a rejected offer are never announced"
    );
    room_still_serves(&mut room, a);
}

#[test]
fn candidates_that_cannot_be_used_are_dropped() {
    let mut room = Room::new();
    let a = first_peer_publishes(&mut room, &CHROMIUM);
    for data in [
        json!({"candidate":"candidate:1 1 udp 2122260223 192.0.2.7 54321 typ host","sdpMLineIndex":9}),
        json!({"candidate":"not a candidate","sdpMLineIndex":0}),
        json!({"candidate":"","sdpMLineIndex":null}),
    ] {
        let step = room.event(a, json!({"type":"candidate","data":data}));
        assert!(step.is_empty(), "{data}");
    }
    room_still_serves(&mut room, a);
}
