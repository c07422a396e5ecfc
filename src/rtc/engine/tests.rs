//! Unit tests of the engine's negotiation bookkeeping.
//!
//! These use `FakeSfu`, a RECORDING FAKE of the SFU: it answers every offer with a placeholder
//! SDP and remembers what the engine asked for. It exists only so the coalescing and ordering
//! rules can be checked in isolation (which outbound tracks are handed to the SFU, when rounds
//! start) without WebRTC. The same sequences run against the real `Sfu` with real browser offers
//! in `test/media_events_sequences.rs`.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::*;
use crate::rtc::ids::MediaKind;
use crate::rtc::sfu::{Answer, SfuError};

#[derive(Default)]
struct FakeSfu {
    peers: Vec<PeerId>,
    removed: Vec<PeerId>,
    /// Every `handle_offer` call: (peer, outbound tracks handed over).
    offers: Vec<(PeerId, Vec<ConsumerSpec>)>,
    events: VecDeque<SfuEvent>,
    ufrag_generation: u32,
}

impl SfuBackend for FakeSfu {
    fn add_peer(&mut self, peer: PeerId, _now: Instant) {
        self.peers.push(peer);
    }
    fn remove_peer(&mut self, peer: PeerId) {
        self.peers.retain(|p| *p != peer);
        self.removed.push(peer);
    }
    fn handle_offer(
        &mut self,
        peer: PeerId,
        offer_sdp: &str,
        inbound: &BTreeMap<Mid, TrackId>,
        outbound: &[ConsumerSpec],
        _now: Instant,
    ) -> Result<Answer, SfuError> {
        if !offer_sdp.starts_with("v=0") {
            return Err(SfuError::InvalidSdp("not SDP".into()));
        }
        self.offers.push((peer, outbound.to_vec()));
        self.ufrag_generation += 1;
        // The fake publishes every inbound mid whose m-line (by its `a=mid`) is audio or video.
        let mut kind = None;
        let mut producers = Vec::new();
        for line in offer_sdp.lines() {
            if let Some(m) = line.strip_prefix("m=") {
                kind = match m.split(' ').next() {
                    Some("audio") => Some(MediaKind::Audio),
                    Some("video") => Some(MediaKind::Video),
                    _ => None,
                };
            } else if let (Some(mid), Some(kind)) = (line.strip_prefix("a=mid:"), kind)
                && let Some(track_id) = inbound.get(&Mid::from(mid.trim()))
            {
                producers.push(ProducedTrack {
                    mid: Mid::from(mid.trim()),
                    track_id: track_id.clone(),
                    kind,
                });
            }
        }
        let mut mid_to_track_id: BTreeMap<Mid, TrackId> = producers
            .iter()
            .map(|p| (p.mid, p.track_id.clone()))
            .collect();
        for (i, t) in outbound.iter().enumerate() {
            mid_to_track_id.insert(Mid::from(format!("out{i}").as_str()), t.track_id.clone());
        }
        Ok(Answer {
            sdp: "v=0\r\n".into(),
            mid_to_track_id,
            producers,
        })
    }
    fn handle_remote_candidate(&mut self, _peer: PeerId, candidate: &str) -> Result<(), SfuError> {
        if candidate.starts_with("candidate:") {
            Ok(())
        } else {
            Err(SfuError::BadCandidate(candidate.into()))
        }
    }
    fn local_candidates(&self) -> Vec<String> {
        vec!["candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host".into()]
    }
    fn handle_datagram(&mut self, _: &Datagram) {}
    fn handle_timeout(&mut self, _: Instant) {}
    fn poll_output(&mut self) -> SfuOutput {
        match self.events.pop_front() {
            Some(e) => SfuOutput::Event(e),
            None => SfuOutput::Timeout(Instant::now() + Duration::from_secs(1)),
        }
    }
    fn ice_ufrags(&self) -> Vec<String> {
        vec![format!("u{}", self.ufrag_generation)]
    }
}

/// One drained output in a comparable shape.
#[derive(Debug, Clone, PartialEq)]
enum Out {
    Join(PeerId),
    To(PeerId, Value),
    All(Vec<PeerId>, Value),
    Ufrags,
    Removed(PeerId),
}

impl Out {
    fn kind(&self) -> &str {
        match self {
            Out::To(_, v) | Out::All(_, v) => v["type"].as_str().unwrap(),
            Out::Join(_) => "JoinRequest",
            Out::Ufrags => "IceUfrags",
            Out::Removed(_) => "PeerRemoved",
        }
    }
}

struct Harness {
    engine: Engine<FakeSfu>,
    now: Instant,
    /// Track ids are written `"a:1"` in the tests; on the wire they are `"<peer a>:1"` (the
    /// engine only accepts a peer's own namespace). (peer, short name) for the translation.
    names: Vec<(PeerId, String)>,
}

impl Harness {
    fn new() -> Self {
        Harness {
            engine: Engine::new("test", FakeSfu::default()),
            now: Instant::now(),
            names: Vec::new(),
        }
    }

    /// The event with every `"<peer>:` written back as its short name.
    fn short(&self, event: &str) -> Value {
        let mut text = event.to_owned();
        for (peer, name) in &self.names {
            text = text.replace(&format!("{peer}:"), &format!("{name}:"));
        }
        serde_json::from_str(&text).unwrap()
    }

    fn drain(&mut self) -> Vec<Out> {
        let mut outs = Vec::new();
        loop {
            match self.engine.poll_output() {
                EngineOutput::Timeout(_) => return outs,
                EngineOutput::JoinRequest { peer, .. } => outs.push(Out::Join(peer)),
                EngineOutput::Send { to, event } => outs.push(Out::To(to, self.short(&event))),
                EngineOutput::Broadcast { to, event } => {
                    outs.push(Out::All(to, self.short(&event)))
                }
                EngineOutput::IceUfrags(_) => outs.push(Out::Ufrags),
                EngineOutput::PeerRemoved(p) => outs.push(Out::Removed(p)),
                EngineOutput::Transmit(_) => {}
            }
        }
    }

    fn event(&mut self, from: PeerId, event: Value) -> Vec<Out> {
        let mut text = event.to_string();
        // A sender's first short track id (`"a:…`) names it.
        if !self.names.iter().any(|(p, _)| *p == from)
            && let Some(name) = (b'a'..=b'z')
                .map(|c| (c as char).to_string())
                .find(|c| text.contains(&format!("\"{c}:")))
        {
            self.names.push((from, name));
        }
        for (peer, name) in &self.names {
            text = text.replace(&format!("\"{name}:"), &format!("\"{peer}:"));
        }
        self.engine.handle_media_event(from, &text, self.now);
        self.drain()
    }

    /// join + accept; returns the outputs of the accept.
    fn join(&mut self, peer: PeerId, receive_media: bool) -> Vec<Out> {
        let outs = self.event(
            peer,
            json!({"type":"join","data":{"receiveMedia":receive_media,"metadata":{"displayName":peer.to_string()}}}),
        );
        assert_eq!(outs, vec![Out::Join(peer)]);
        self.engine.accept_peer(peer, self.now);
        self.drain()
    }

    /// An offer publishing `tracks` as (mid, kind, track id) plus `recv` recvonly m-lines.
    fn offer(&mut self, peer: PeerId, tracks: &[(&str, &str)], recv: (u32, u32)) -> Vec<Out> {
        let mut sdp = String::from("v=0\r\n");
        let mut mid_to_track_id = serde_json::Map::new();
        let mut metadata = serde_json::Map::new();
        let mut mid = 0;
        for (kind, track) in tracks {
            let (name, n) = track.split_once(':').unwrap();
            if !self.names.iter().any(|(p, _)| *p == peer) {
                self.names.push((peer, name.to_owned()));
            }
            let track = &format!("{peer}:{n}");
            sdp += &format!("m={kind} 9 UDP/TLS/RTP/SAVPF 96\r\na=sendonly\r\na=mid:{mid}\r\n");
            mid_to_track_id.insert(mid.to_string(), json!(track));
            metadata.insert((*track).to_owned(), json!({}));
            mid += 1;
        }
        for (kind, n) in [("audio", recv.0), ("video", recv.1)] {
            for _ in 0..n {
                sdp += &format!("m={kind} 9 UDP/TLS/RTP/SAVPF 96\r\na=recvonly\r\na=mid:{mid}\r\n");
                mid += 1;
            }
        }
        self.event(
            peer,
            json!({"type":"sdpOffer","data":{"sdpOffer":{"type":"offer","sdp":sdp},
                "trackIdToTrackMetadata":metadata,"midToTrackId":mid_to_track_id}}),
        )
    }

    fn renegotiate(&mut self, peer: PeerId) -> Vec<Out> {
        self.event(peer, json!({"type":"renegotiateTracks","data":{}}))
    }
}

fn kinds(outs: &[Out]) -> Vec<&str> {
    outs.iter().map(Out::kind).collect()
}

fn offer_data_to(outs: &[Out], peer: PeerId) -> Vec<Value> {
    outs.iter()
        .filter_map(|o| match o {
            Out::To(p, v) if *p == peer && v["type"] == "offerData" => Some(v["data"].clone()),
            _ => None,
        })
        .collect()
}

/// A publisher that joined an empty room and negotiated its two tracks.
fn first_publisher(h: &mut Harness) -> PeerId {
    let a = PeerId::new_v4();
    h.join(a, true);
    h.renegotiate(a);
    h.renegotiate(a);
    h.offer(a, &[("audio", "a:1"), ("video", "a:2")], (0, 0));
    a
}

#[test]
fn first_peer_gets_accepted_with_nobody_in_the_room_and_no_offer_data() {
    let mut h = Harness::new();
    let a = PeerId::new_v4();
    let outs = h.join(a, true);
    assert_eq!(kinds(&outs), ["peerAccepted", "peerJoined"]);
    assert_eq!(
        outs[0],
        Out::To(
            a,
            json!({"type":"peerAccepted","data":{"id":a.to_string(),"peersInRoom":[]}})
        )
    );
    assert_eq!(
        outs[1],
        Out::All(
            vec![a],
            json!({"type":"peerJoined","data":{"peer":{"id":a.to_string(),"metadata":{"displayName":a.to_string()},"trackIdToMetadata":{}}}})
        )
    );
}

#[test]
fn two_renegotiate_requests_at_join_give_one_round() {
    let mut h = Harness::new();
    let a = PeerId::new_v4();
    h.join(a, true);
    let first = h.renegotiate(a);
    let second = h.renegotiate(a);
    assert_eq!(offer_data_to(&first, a), [json!({"audio":0,"video":0})]);
    assert!(second.is_empty(), "{second:?}");
    let outs = h.offer(a, &[("audio", "a:1"), ("video", "a:2")], (0, 0));
    assert_eq!(
        kinds(&outs),
        ["tracksAdded", "IceUfrags", "sdpAnswer", "candidate"]
    );
    assert_eq!(
        outs[0],
        Out::All(
            vec![a],
            json!({"type":"tracksAdded","data":{"peerId":a.to_string(),"trackIdToMetadata":{"a:1":{},"a:2":{}}}})
        )
    );
    assert_eq!(
        outs[3],
        Out::To(
            a,
            json!({"type":"candidate","data":{"candidate":"candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host","sdpMLineIndex":0,"sdpMid":null,"usernameFragment":null}})
        )
    );
}

#[test]
fn joiner_sees_publisher_tracks_and_both_sides_renegotiate_in_protocol_order() {
    let mut h = Harness::new();
    let a = first_publisher(&mut h);
    let b = PeerId::new_v4();
    let outs = h.join(b, true);
    assert_eq!(kinds(&outs), ["peerAccepted", "peerJoined", "offerData"]);
    assert_eq!(
        outs[0],
        Out::To(
            b,
            json!({"type":"peerAccepted","data":{"id":b.to_string(),"peersInRoom":[
                {"id":a.to_string(),"metadata":{"displayName":a.to_string()},"trackIdToMetadata":{"a:1":{},"a:2":{}}}]}})
        )
    );
    assert_eq!(outs[1], Out::All(vec![a, b], outs[1].value().clone()));
    assert_eq!(offer_data_to(&outs, b), [json!({"audio":1,"video":1})]);
    // B's own two renegotiateTracks are absorbed by the outstanding round.
    assert!(h.renegotiate(b).is_empty());
    assert!(h.renegotiate(b).is_empty());

    let outs = h.offer(b, &[("audio", "b:1"), ("video", "b:2")], (1, 1));
    assert_eq!(
        kinds(&outs),
        [
            "tracksAdded",
            "IceUfrags",
            "sdpAnswer",
            "candidate",
            "offerData"
        ]
    );
    let Out::To(to, answer) = &outs[2] else {
        panic!()
    };
    assert_eq!(*to, b);
    assert_eq!(
        answer["data"]["midToTrackId"],
        json!({"0":"b:1","1":"b:2","out0":"a:1","out1":"a:2"})
    );
    assert_eq!(offer_data_to(&outs, a), [json!({"audio":1,"video":1})]);
    let (_, handed) = h.engine.sfu().offers.last().unwrap().clone();
    assert_eq!(handed.len(), 2);
    assert!(
        handed
            .iter()
            .all(|t| t.publisher == a && t.active && t.stream_id == a.to_string())
    );

    let outs = h.offer(a, &[("audio", "a:1"), ("video", "a:2")], (1, 1));
    assert_eq!(kinds(&outs), ["IceUfrags", "sdpAnswer", "candidate"]);
}

#[test]
fn a_leaving_peer_gives_peer_left_and_inactive_copies_without_tracks_removed() {
    let mut h = Harness::new();
    let a = first_publisher(&mut h);
    let b = PeerId::new_v4();
    h.join(b, true);
    h.offer(b, &[("audio", "b:1"), ("video", "b:2")], (1, 1));
    h.offer(a, &[("audio", "a:1"), ("video", "a:2")], (1, 1));

    let outs = h.event(b, json!({"type":"leave"}));
    assert_eq!(kinds(&outs), ["peerLeft", "PeerRemoved", "offerData"]);
    assert_eq!(
        outs[0],
        Out::All(
            vec![a],
            json!({"type":"peerLeft","data":{"peerId":b.to_string()}})
        )
    );
    // Counts unchanged: disabled tracks still count.
    assert_eq!(offer_data_to(&outs, a), [json!({"audio":1,"video":1})]);
    h.offer(a, &[("audio", "a:1"), ("video", "a:2")], (1, 1));
    let (_, handed) = h.engine.sfu().offers.last().unwrap().clone();
    assert_eq!(handed.len(), 2);
    assert!(handed.iter().all(|t| !t.active), "{handed:?}");
    assert_eq!(h.engine.sfu().removed, [b]);
}

#[test]
fn removing_a_peer_twice_announces_it_once() {
    let mut h = Harness::new();
    let a = first_publisher(&mut h);
    let b = PeerId::new_v4();
    h.join(b, true);
    h.engine.remove_peer(b);
    let first = h.drain();
    h.engine.remove_peer(b);
    let second = h.drain();
    assert_eq!(kinds(&first), ["peerLeft", "PeerRemoved"]);
    assert!(second.is_empty());
    assert!(!h.engine.is_member(b));
    assert!(h.engine.is_member(a));
}

#[test]
fn a_dropped_track_is_announced_with_tracks_removed_and_disabled_for_subscribers() {
    let mut h = Harness::new();
    let a = first_publisher(&mut h);
    let b = PeerId::new_v4();
    h.join(b, false);
    // B receives nothing, so it never needs a round.
    let outs = h.renegotiate(a);
    assert_eq!(offer_data_to(&outs, a), [json!({"audio":0,"video":0})]);
    let outs = h.offer(a, &[("audio", "a:1")], (0, 0));
    assert_eq!(
        kinds(&outs),
        ["tracksRemoved", "IceUfrags", "sdpAnswer", "candidate"]
    );
    assert_eq!(
        outs[0],
        Out::All(
            vec![a, b],
            json!({"type":"tracksRemoved","data":{"peerId":a.to_string(),"trackIds":["a:2"]}})
        )
    );
}

#[test]
fn changes_during_an_outstanding_round_queue_exactly_one_follow_up() {
    let mut h = Harness::new();
    let viewer = PeerId::new_v4();
    h.join(viewer, true);
    let a = first_publisher(&mut h);
    // The viewer was asked to negotiate A's tracks; while it builds its offer B publishes too.
    let b = PeerId::new_v4();
    h.join(b, true);
    h.offer(b, &[("audio", "b:1"), ("video", "b:2")], (1, 1));
    h.offer(a, &[("audio", "a:1"), ("video", "a:2")], (1, 1));
    // Viewer answers the first offerData ({1,1}); exactly one follow-up with {2,2} comes after.
    let outs = h.offer(viewer, &[], (1, 1));
    assert_eq!(
        kinds(&outs),
        ["IceUfrags", "sdpAnswer", "candidate", "offerData"]
    );
    assert_eq!(offer_data_to(&outs, viewer), [json!({"audio":2,"video":2})]);
    let (_, handed) = h.engine.sfu().offers.last().unwrap().clone();
    assert_eq!(
        handed
            .iter()
            .map(|t| t.track_id.to_string())
            .collect::<Vec<_>>(),
        [format!("{a}:1"), format!("{a}:2")]
    );
    let outs = h.offer(viewer, &[], (2, 2));
    assert_eq!(kinds(&outs), ["IceUfrags", "sdpAnswer", "candidate"]);
}

#[test]
fn a_receive_media_false_peer_gets_no_outbound_tracks() {
    let mut h = Harness::new();
    first_publisher(&mut h);
    let v = PeerId::new_v4();
    let outs = h.join(v, false);
    assert_eq!(kinds(&outs), ["peerAccepted", "peerJoined"]);
    let outs = h.renegotiate(v);
    assert_eq!(offer_data_to(&outs, v), [json!({"audio":0,"video":0})]);
}

#[test]
fn events_from_non_members_and_bad_json_are_dropped_silently() {
    let mut h = Harness::new();
    let a = first_publisher(&mut h);
    let stranger = PeerId::new_v4();
    for text in [
        r#"{"type":"renegotiateTracks","data":{}}"#,
        r#"{"type":"leave"}"#,
        r#"{"type":"updatePeerMetadata","data":{"metadata":{}}}"#,
    ] {
        h.engine.handle_media_event(stranger, text, h.now);
        assert!(h.drain().is_empty());
    }
    for text in [
        "{",
        r#"{"type":"custom","data":{}}"#,
        r#"{"type":"join","data":7}"#,
    ] {
        h.engine.handle_media_event(a, text, h.now);
        assert!(h.drain().is_empty(), "{text}");
    }
    assert!(h.engine.is_member(a));
}

#[test]
fn an_unanswerable_offer_gets_an_error_event_and_the_room_goes_on() {
    let mut h = Harness::new();
    let a = first_publisher(&mut h);
    let b = PeerId::new_v4();
    h.join(b, true);
    let outs = h.event(
        b,
        json!({"type":"sdpOffer","data":{"sdpOffer":{"type":"offer","sdp":"garbage"},"trackIdToTrackMetadata":{},"midToTrackId":{}}}),
    );
    assert_eq!(kinds(&outs), ["error"]);
    assert!(matches!(&outs[0], Out::To(p, _) if *p == b));
    // A is unaffected and can still renegotiate.
    let outs = h.renegotiate(a);
    assert_eq!(offer_data_to(&outs, a).len(), 1);
}

#[test]
fn a_failed_peer_is_told_and_removed_and_the_others_get_peer_left() {
    let mut h = Harness::new();
    let a = first_publisher(&mut h);
    let b = PeerId::new_v4();
    h.join(b, true);
    h.engine.sfu.events.push_back(SfuEvent::PeerFailed(b));
    let outs = h.drain();
    assert_eq!(kinds(&outs), ["error", "peerLeft", "PeerRemoved"]);
    assert_eq!(outs[2], Out::Removed(b));
    assert!(matches!(&outs[1], Out::All(to, _) if *to == vec![a]));
}

#[test]
fn denied_peers_get_peer_denied_with_the_payload() {
    let mut h = Harness::new();
    let a = PeerId::new_v4();
    h.event(
        a,
        json!({"type":"join","data":{"receiveMedia":true,"metadata":{}}}),
    );
    h.engine.deny_peer(a, json!({"reason":"full"}));
    assert_eq!(
        h.drain(),
        [Out::To(
            a,
            json!({"type":"peerDenied","data":{"reason":"full"}})
        )]
    );
    assert!(!h.engine.is_member(a));
}

#[test]
fn metadata_updates_are_broadcast() {
    let mut h = Harness::new();
    let a = first_publisher(&mut h);
    let outs = h.event(
        a,
        json!({"type":"updatePeerMetadata","data":{"metadata":{"displayName":"x"}}}),
    );
    assert_eq!(
        outs,
        [Out::All(
            vec![a],
            json!({"type":"peerUpdated","data":{"peerId":a.to_string(),"metadata":{"displayName":"x"}}})
        )]
    );
    let outs = h.event(
        a,
        json!({"type":"updateTrackMetadata","data":{"trackId":"a:2","trackMetadata":{"m":1}}}),
    );
    assert_eq!(
        outs,
        [Out::All(
            vec![a],
            json!({"type":"trackUpdated","data":{"peerId":a.to_string(),"trackId":"a:2","metadata":{"m":1}}})
        )]
    );
    let outs = h.event(
        a,
        json!({"type":"updateTrackMetadata","data":{"trackId":"zz","trackMetadata":{}}}),
    );
    assert!(outs.is_empty());
}

#[test]
fn a_track_added_while_the_client_built_its_offer_gets_one_follow_up_round() {
    let mut h = Harness::new();
    let a = PeerId::new_v4();
    h.join(a, true);
    h.renegotiate(a);
    // The offer declares a:2 but has no transceiver for it yet.
    let mut sdp = String::from("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n");
    let outs = h.event(
        a,
        json!({"type":"sdpOffer","data":{"sdpOffer":{"type":"offer","sdp":sdp},
            "trackIdToTrackMetadata":{"a:1":{},"a:2":{}},"midToTrackId":{"0":"a:1"}}}),
    );
    assert_eq!(offer_data_to(&outs, a).len(), 1);
    sdp += "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\n";
    let outs = h.event(
        a,
        json!({"type":"sdpOffer","data":{"sdpOffer":{"type":"offer","sdp":sdp},
            "trackIdToTrackMetadata":{"a:1":{},"a:2":{}},"midToTrackId":{"0":"a:1","1":"a:2"}}}),
    );
    assert_eq!(
        kinds(&outs),
        ["tracksAdded", "IceUfrags", "sdpAnswer", "candidate"]
    );
}

impl Out {
    fn value(&self) -> &Value {
        match self {
            Out::To(_, v) | Out::All(_, v) => v,
            _ => panic!("no value"),
        }
    }
}

#[test]
fn a_track_under_another_peers_id_is_not_published_and_the_sender_gets_an_error() {
    let mut h = Harness::new();
    let a = PeerId::new_v4();
    let b = PeerId::new_v4();
    h.join(a, true);
    h.join(b, true);
    let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendonly\r\na=mid:0\r\n";
    let frame = format!(
        r#"{{"type":"sdpOffer","data":{{"sdpOffer":{{"type":"offer","sdp":"{}"}},"trackIdToTrackMetadata":{{"{a}:1":{{}}}},"midToTrackId":{{"0":"{a}:1"}}}}}}"#,
        sdp.replace("\r\n", "\\r\\n")
    );
    h.engine.handle_media_event(b, &frame, h.now);
    let outs = h.drain();
    assert!(outs.contains(&Out::To(
        b,
        json!({"type":"error","data":{"message":"track ids must be \"<your peer id>:<id>\" and unique"}})
    )));
    assert!(!kinds(&outs).contains(&"tracksAdded"), "{outs:?}");
}

#[test]
fn a_join_whose_metadata_is_too_big_is_denied() {
    let mut h = Harness::new();
    let a = PeerId::new_v4();
    let big = "x".repeat(5000);
    let frame = format!(
        r#"{{"type":"join","data":{{"receiveMedia":true,"metadata":{{"displayName":"{big}"}}}}}}"#
    );
    h.engine.handle_media_event(a, &frame, h.now);
    assert_eq!(
        h.drain(),
        [Out::To(
            a,
            json!({"type":"peerDenied","data":{"reason":"peer metadata too large"}})
        )]
    );
}

#[test]
fn a_media_event_nested_deeper_than_serde_json_allows_is_dropped_not_a_crash() {
    // serde_json stops at 128 levels (its default recursion limit): no stack overflow.
    let mut h = Harness::new();
    let a = PeerId::new_v4();
    let frame = format!(
        r#"{{"type":"join","data":{{"receiveMedia":true,"metadata":{}1{}}}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    h.engine.handle_media_event(a, &frame, h.now);
    assert!(h.drain().is_empty());
}
