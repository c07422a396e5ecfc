//! One engine harness for both SFUs: a room around the public `Engine<S: SfuBackend>`, driven by
//! media events as the tutorial's client sends them, over the recording [`FakeSfu`] or the real
//! `Sfu` (which answers recorded Chromium and Firefox offers from `test/fixtures/sdp/`).
//!
//! - Peers get short names (`room.peer("a")`); track ids are written `"a:1"` in events and in
//!   expected values, and travel as `"<peer id of a>:1"` (the engine only accepts a peer's own
//!   namespace), so outputs are translated back before they are compared.
//! - Every output is appended, in order, to one log ([`Room::log`]) with its recipients, so
//!   orderings across peers (`peerJoined(X) < tracksAdded(X) < an sdpAnswer mapping X's tracks`)
//!   can be asserted; every input returns the outputs it caused.
//! - Offers come from a [`Browser`]: recorded Chromium and Firefox offers (both SFUs answer
//!   them) or generated bare m-lines of the same shapes (only the fake answers those).
//! - The sequences every room starts with ([`first_peer_publishes`], [`second_peer_joins`],
//!   [`second_peer_leaves`]) live here, asserted step by step, and `against_both_sfus!` runs a
//!   test's sequence once against each SFU.
//!
//! Shared by `test/engine_rounds.rs` and `test/media_events_sequences.rs` (`#[path]`-included).
#![allow(dead_code)]

#[path = "fake_sfu.rs"]
mod fake_sfu;

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::{Value, json};
use videoroom::rtc::engine::{Engine, EngineOutput, SfuBackend};
use videoroom::rtc::ids::PeerId;
use videoroom::rtc::sfu::{Sfu, SfuConfig};

pub use fake_sfu::{FakeSfu, LOCAL_CANDIDATE};

/// Each listed sequence (`fn name<S: SfuBackend>(&mut Room<S>, Browser)`, in the including
/// file) becomes a module with two tests: `with_the_fake` (generated offers) and
/// `with_the_real_sfu` (recorded Chromium offers).
macro_rules! against_both_sfus {
    ($($sequence:ident),* $(,)?) => {$(
        mod $sequence {
            use super::*;
            #[test]
            fn with_the_fake() {
                let _ = super::$sequence(&mut Room::with_fake(), Browser::Generated);
            }
            #[test]
            fn with_the_real_sfu() {
                let _ = super::$sequence(&mut Room::with_sfu(), Browser::Chromium);
            }
        }
    )*};
}

/// One engine output in a comparable shape (media events parsed, short track names).
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    /// `EngineOutput::JoinRequest` from this peer.
    JoinRequest(PeerId),
    /// A media event for one peer.
    Send(PeerId, Value),
    /// A media event for each of these peers.
    Broadcast(Vec<PeerId>, Value),
    /// `EngineOutput::IceUfrags` (the ufrags themselves are the SFU's business).
    IceUfrags,
    /// `EngineOutput::PeerRemoved`.
    PeerRemoved(PeerId),
    /// `EngineOutput::MediaNotConnected` with the cause's label.
    MediaNotConnected(PeerId, &'static str),
}

impl Out {
    /// The media event's `type`, or the name of the engine output.
    pub fn kind(&self) -> &str {
        match self {
            Out::Send(_, event) | Out::Broadcast(_, event) => event["type"].as_str().unwrap(),
            Out::JoinRequest(_) => "JoinRequest",
            Out::IceUfrags => "IceUfrags",
            Out::PeerRemoved(_) => "PeerRemoved",
            Out::MediaNotConnected(..) => "MediaNotConnected",
        }
    }

    /// The recipients of a media event (none for other outputs).
    pub fn to(&self) -> Vec<PeerId> {
        match self {
            Out::Send(to, _) => vec![*to],
            Out::Broadcast(to, _) => to.clone(),
            _ => Vec::new(),
        }
    }

    /// The media event (panics for other outputs).
    pub fn event(&self) -> &Value {
        match self {
            Out::Send(_, event) | Out::Broadcast(_, event) => event,
            other => panic!("{other:?} is not a media event"),
        }
    }

    /// The media event's `data`.
    pub fn data(&self) -> &Value {
        &self.event()["data"]
    }
}

/// A recorded browser whose offers the real SFU can answer, or offers generated for the fake.
#[derive(Debug, Clone, Copy)]
pub enum Browser {
    /// Chromium 156, recorded from the tutorial's client.
    Chromium,
    /// Firefox ESR, recorded from the tutorial's client.
    Firefox,
    /// Bare m-lines in the same shapes, which only the fake can answer.
    Generated,
}

/// The three offers recorded from one browser.
struct Recorded {
    publisher: &'static str,
    joiner: &'static str,
    viewer: &'static str,
}

const CHROMIUM: Recorded = Recorded {
    publisher: include_str!("../fixtures/sdp/chromium-156/publisher-first-offer.sdp"),
    joiner: include_str!("../fixtures/sdp/chromium-156/joiner-offer-1pub.sdp"),
    viewer: include_str!("../fixtures/sdp/chromium-156/viewer-offer-2pubs.sdp"),
};

const FIREFOX: Recorded = Recorded {
    publisher: include_str!("../fixtures/sdp/firefox-esr/publisher-first-offer.sdp"),
    joiner: include_str!("../fixtures/sdp/firefox-esr/joiner-offer-1pub.sdp"),
    viewer: include_str!("../fixtures/sdp/firefox-esr/viewer-offer-2pubs.sdp"),
};

impl Browser {
    fn recorded(self) -> Option<&'static Recorded> {
        match self {
            Browser::Chromium => Some(&CHROMIUM),
            Browser::Firefox => Some(&FIREFOX),
            Browser::Generated => None,
        }
    }

    /// First offer of a peer alone in the room: sendonly audio (mid 0) and video (mid 1).
    pub fn publisher(self) -> String {
        self.recorded().map_or_else(
            || generated_offer(&["audio", "video"], 0),
            |r| r.publisher.into(),
        )
    }

    /// A publisher that also receives one publisher: mids 0, 1 sendonly, 2 (audio) and 3
    /// (video) recvonly.
    pub fn joiner(self) -> String {
        self.recorded().map_or_else(
            || generated_offer(&["audio", "video"], 1),
            |r| r.joiner.into(),
        )
    }

    /// A viewer of two publishers: mids 0..=3 recvonly, audio and video alternating.
    pub fn viewer(self) -> String {
        self.recorded()
            .map_or_else(|| generated_offer(&[], 2), |r| r.viewer.into())
    }
}

/// An offer the fake can answer: one sendonly m-line per `publish` kind, then `receive`
/// recvonly audio and video pairs; mids count from 0.
pub fn generated_offer(publish: &[&str], receive: usize) -> String {
    let receive = std::iter::repeat_n(["audio", "video"], receive).flatten();
    let lines = publish.iter().map(|kind| (*kind, "sendonly"));
    let lines = lines.chain(receive.map(|kind| (kind, "recvonly")));
    let mut sdp = String::from("v=0\r\n");
    for (mid, (kind, direction)) in lines.enumerate() {
        sdp += &format!("m={kind} 9 UDP/TLS/RTP/SAVPF 96\r\na={direction}\r\na=mid:{mid}\r\n");
    }
    sdp
}

/// One room: the engine under test and everything it emitted (see the module docs).
pub struct Room<S: SfuBackend> {
    /// The engine, for inputs the helpers do not cover.
    pub engine: Engine<S>,
    /// Every output so far, in order.
    pub log: Vec<Out>,
    /// (peer, short name), for translating track ids.
    names: Vec<(PeerId, String)>,
    /// Offers sent so far (each gets fresh ICE credentials, as the client's `restartIce()`).
    offers: u32,
    now: Instant,
}

impl Room<FakeSfu> {
    /// A room whose engine drives the recording fake.
    pub fn with_fake() -> Self {
        Room::new(FakeSfu::default())
    }
}

impl Room<Sfu> {
    /// A room whose engine drives the real SFU, announcing 127.0.0.1:50000.
    pub fn with_sfu() -> Self {
        let _ = env_logger::builder().is_test(true).try_init();
        let config = SfuConfig {
            room: "seq".into(),
            local_addrs: vec!["127.0.0.1:50000".parse().unwrap()],
            ..SfuConfig::default()
        };
        Room::new(Sfu::new(config, Instant::now()))
    }
}

impl<S: SfuBackend> Room<S> {
    fn new(sfu: S) -> Self {
        Room {
            engine: Engine::new("seq", sfu),
            log: Vec::new(),
            names: Vec::new(),
            offers: 0,
            now: Instant::now(),
        }
    }

    /// A new peer called `name` in track ids (not yet joined).
    pub fn peer(&mut self, name: &str) -> PeerId {
        let peer = PeerId::new_v4();
        self.names.push((peer, name.to_owned()));
        peer
    }

    /// Drains the engine; returns this step's outputs (also appended to the log).
    pub fn drain(&mut self) -> Vec<Out> {
        let mut step = Vec::new();
        loop {
            step.push(match self.engine.poll_output() {
                EngineOutput::Timeout(_) => break,
                EngineOutput::Transmit(_) => continue,
                EngineOutput::JoinRequest { peer, .. } => Out::JoinRequest(peer),
                EngineOutput::Send { to, event } => Out::Send(to, self.short(&event)),
                EngineOutput::Broadcast { to, event } => Out::Broadcast(to, self.short(&event)),
                EngineOutput::IceUfrags(_) => Out::IceUfrags,
                EngineOutput::PeerRemoved(peer) => Out::PeerRemoved(peer),
                EngineOutput::MediaNotConnected { to, cause } => {
                    Out::MediaNotConnected(to, cause.label())
                }
            });
        }
        self.log.extend(step.iter().cloned());
        step
    }

    /// The event with every `"<peer id>:` written back as its short name.
    fn short(&self, event: &str) -> Value {
        serde_json::from_str(&self.shorten(event)).unwrap()
    }

    /// `text` with every `<peer id>:` written back as its short name (`"a:1"`).
    pub fn shorten(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for (peer, name) in &self.names {
            text = text.replace(&format!("{peer}:"), &format!("{name}:"));
        }
        text
    }

    /// `text` from `from` exactly as given (no translation); returns the outputs.
    pub fn send_text(&mut self, from: PeerId, text: &str) -> Vec<Out> {
        self.engine.handle_media_event(from, text, self.now);
        self.drain()
    }

    /// `event` from `from`, short track ids (`"a:1"`) translated; returns the outputs.
    pub fn event(&mut self, from: PeerId, event: Value) -> Vec<Out> {
        let mut text = event.to_string();
        for (peer, name) in &self.names {
            text = text.replace(&format!("\"{name}:"), &format!("\"{peer}:"));
        }
        self.send_text(from, &text)
    }

    /// `join` (displayName: the peer id) and the owner's accept; returns the accept's outputs.
    pub fn join(&mut self, peer: PeerId, receive_media: bool) -> Vec<Out> {
        let metadata = json!({"displayName": peer.to_string()});
        let step = self.event(
            peer,
            json!({"type":"join","data":{"receiveMedia":receive_media,"metadata":metadata}}),
        );
        assert_eq!(step, [Out::JoinRequest(peer)]);
        self.engine.accept_peer(peer, self.now);
        self.drain()
    }

    /// `renegotiateTracks`.
    pub fn renegotiate(&mut self, peer: PeerId) -> Vec<Out> {
        self.event(peer, json!({"type":"renegotiateTracks","data":{}}))
    }

    /// `sdp` as the peer's offer, publishing `mids` (mid → short track id, metadata `{}`). Each
    /// offer gets new ICE credentials (the client calls `restartIce()` before every re-offer).
    pub fn offer(&mut self, peer: PeerId, sdp: &str, mids: &[(&str, &str)]) -> Vec<Out> {
        let declared: Vec<&str> = mids.iter().map(|(_, track)| *track).collect();
        self.offer_declaring(peer, sdp, mids, &declared)
    }

    /// [`Room::offer`] whose `trackIdToTrackMetadata` declares `declared` (metadata `{}`),
    /// which may name tracks `mids` does not map yet.
    pub fn offer_declaring(
        &mut self,
        peer: PeerId,
        sdp: &str,
        mids: &[(&str, &str)],
        declared: &[&str],
    ) -> Vec<Out> {
        self.offers += 1;
        let sdp = sdp
            .replace("a=ice-ufrag:", &format!("a=ice-ufrag:r{}", self.offers))
            .replace("a=ice-pwd:", &format!("a=ice-pwd:r{}", self.offers));
        let mid_to_track_id: BTreeMap<&str, &str> = mids.iter().copied().collect();
        let metadata: BTreeMap<&str, Value> = declared.iter().map(|t| (*t, json!({}))).collect();
        self.event(
            peer,
            json!({"type":"sdpOffer","data":{"sdpOffer":{"type":"offer","sdp":sdp},
                "trackIdToTrackMetadata":metadata,"midToTrackId":mid_to_track_id}}),
        )
    }

    /// The room's clock.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Moves the clock on by `by` and hands the engine its timeout; returns the outputs.
    pub fn advance(&mut self, by: std::time::Duration) -> Vec<Out> {
        self.now += by;
        self.engine.handle_timeout(self.now);
        self.drain()
    }

    /// The peer's signalling connection is lost ([`Engine::detach_peer`]); returns whether it
    /// is held and the outputs.
    pub fn detach(&mut self, peer: PeerId) -> (bool, Vec<Out>) {
        let held = self.engine.detach_peer(peer, self.now);
        (held, self.drain())
    }

    /// The peer's client is back with a valid token; `token` is the next one. Returns the
    /// outputs.
    pub fn resume(&mut self, peer: PeerId, token: &str) -> Vec<Out> {
        assert!(self.engine.resume_peer(peer, token.to_owned()), "a member");
        self.drain()
    }

    /// Index in the log of the first output matching `f`.
    pub fn position(&self, f: impl Fn(&Out) -> bool) -> usize {
        self.log
            .iter()
            .position(f)
            .expect("output present in the log")
    }
}

/// The kinds of a step, in order.
pub fn kinds(step: &[Out]) -> Vec<&str> {
    step.iter().map(Out::kind).collect()
}

/// The one output of `kind` in `step`.
pub fn only<'a>(step: &'a [Out], kind: &str) -> &'a Out {
    let found: Vec<&Out> = step.iter().filter(|o| o.kind() == kind).collect();
    assert_eq!(found.len(), 1, "one {kind} in {:?}", kinds(step));
    found[0]
}

/// The `data` of every `offerData` sent to `peer` in `step`.
pub fn offer_data_to(step: &[Out], peer: PeerId) -> Vec<Value> {
    step.iter()
        .filter(|o| o.kind() == "offerData" && o.to() == [peer])
        .map(|o| o.data().clone())
        .collect()
}

/// The m-line section of `sdp` with `a=mid:<mid>`.
pub fn section(sdp: &str, mid: &str) -> String {
    sdp.split("m=")
        .find(|s| s.lines().any(|l| l.trim_end() == format!("a=mid:{mid}")))
        .unwrap_or_else(|| panic!("no mid {mid}"))
        .to_owned()
}

// ---- the sequences every room starts with, asserted step by step ----

/// The first peer, `a`, joins an empty room and publishes audio `a:1` and video `a:2` with
/// `browser`'s first offer: one round for its two `renegotiateTracks`, `tracksAdded` before its
/// answer, the answer's candidates after it. Returns A and the step of its offer.
pub fn first_peer_publishes<S: SfuBackend>(
    room: &mut Room<S>,
    browser: Browser,
) -> (PeerId, Vec<Out>) {
    let a = room.peer("a");
    let step = room.join(a, true);
    assert_eq!(kinds(&step), ["peerAccepted", "peerJoined"]);
    assert_eq!(step[0].data()["peersInRoom"], json!([]));
    assert_eq!(step[1].to(), [a]);
    // The client adds two tracks: two renegotiateTracks, one round.
    assert_eq!(
        room.renegotiate(a),
        [Out::Send(
            a,
            json!({"type":"offerData","data":{"audio":0,"video":0}})
        )]
    );
    assert_eq!(room.renegotiate(a), [], "second request coalesced");
    let step = room.offer(a, &browser.publisher(), &[("0", "a:1"), ("1", "a:2")]);
    assert_eq!(
        kinds(&step),
        ["tracksAdded", "IceUfrags", "sdpAnswer", "candidate"]
    );
    assert_eq!(
        step[0],
        Out::Broadcast(
            vec![a],
            json!({"type":"tracksAdded","data":{"peerId":a.to_string(),
                "trackIdToMetadata":{"a:1":{},"a:2":{}}}})
        )
    );
    assert_eq!(step[2].to(), [a]);
    assert_eq!(step[2].data()["midToTrackId"], json!({"0":"a:1","1":"a:2"}));
    assert_eq!(
        step[3],
        Out::Send(
            a,
            json!({"type":"candidate","data":{"candidate":LOCAL_CANDIDATE,
                "sdpMLineIndex":0,"sdpMid":null,"usernameFragment":null}})
        )
    );
    (a, step)
}

/// `b` joins publisher A: it learns A's tracks, its own requests are absorbed by the round the
/// engine started, its offer publishes `b:1`/`b:2` and maps A's tracks, then A renegotiates and
/// maps B's. Returns B, the step of B's offer and the step of A's re-offer.
pub fn second_peer_joins<S: SfuBackend>(
    room: &mut Room<S>,
    browser: Browser,
    a: PeerId,
) -> (PeerId, Vec<Out>, Vec<Out>) {
    let b = room.peer("b");
    assert_eq!(
        room.join(b, true),
        [
            Out::Send(
                b,
                json!({"type":"peerAccepted","data":{"id":b.to_string(),"peersInRoom":[
                    {"id":a.to_string(),"metadata":{"displayName":a.to_string()},
                     "trackIdToMetadata":{"a:1":{},"a:2":{}}}]}})
            ),
            Out::Broadcast(
                vec![a, b],
                json!({"type":"peerJoined","data":{"peer":{"id":b.to_string(),
                    "metadata":{"displayName":b.to_string()},"trackIdToMetadata":{}}}})
            ),
            Out::Send(b, json!({"type":"offerData","data":{"audio":1,"video":1}})),
        ]
    );
    // B's own two renegotiateTracks are absorbed by the outstanding round.
    assert_eq!(room.renegotiate(b), []);
    assert_eq!(room.renegotiate(b), []);

    let joiner_step = room.offer(b, &browser.joiner(), &[("0", "b:1"), ("1", "b:2")]);
    assert_eq!(
        kinds(&joiner_step),
        [
            "tracksAdded",
            "IceUfrags",
            "sdpAnswer",
            "candidate",
            "offerData"
        ]
    );
    assert_eq!(joiner_step[0].to(), [a, b]);
    assert_eq!(joiner_step[2].to(), [b]);
    assert_eq!(
        joiner_step[2].data()["midToTrackId"],
        json!({"0":"b:1","1":"b:2","2":"a:1","3":"a:2"})
    );
    assert_eq!(
        joiner_step[4],
        Out::Send(a, json!({"type":"offerData","data":{"audio":1,"video":1}}))
    );

    let publisher_step = room.offer(a, &browser.joiner(), &[("0", "a:1"), ("1", "a:2")]);
    assert_eq!(
        kinds(&publisher_step),
        ["IceUfrags", "sdpAnswer", "candidate"]
    );
    assert_eq!(
        publisher_step[1].data()["midToTrackId"],
        json!({"0":"a:1","1":"a:2","2":"b:1","3":"b:2"})
    );

    // peerJoined(B) < tracksAdded(B) < A's answer that maps B's tracks.
    let joined =
        room.position(|o| o.kind() == "peerJoined" && o.data()["peer"]["id"] == b.to_string());
    let added = room.position(|o| o.kind() == "tracksAdded" && o.data()["peerId"] == b.to_string());
    let mapped = room.position(|o| {
        o.kind() == "sdpAnswer" && o.to() == [a] && o.data()["midToTrackId"]["2"] == "b:1"
    });
    assert!(
        joined < added && added < mapped,
        "{joined} < {added} < {mapped}"
    );
    (b, joiner_step, publisher_step)
}

/// Publisher A and a joined, not yet negotiated B. Returns (A, B).
pub fn publisher_and_member<S: SfuBackend>(
    room: &mut Room<S>,
    browser: Browser,
    receive_media: bool,
) -> (PeerId, PeerId) {
    let (a, _) = first_peer_publishes(room, browser);
    let b = room.peer("b");
    room.join(b, receive_media);
    (a, b)
}

/// A and B publish and receive each other. Returns (A, B).
pub fn publisher_and_joiner<S: SfuBackend>(
    room: &mut Room<S>,
    browser: Browser,
) -> (PeerId, PeerId) {
    let (a, _) = first_peer_publishes(room, browser);
    let (b, _, _) = second_peer_joins(room, browser, a);
    (a, b)
}

/// B leaves the room it shares with publisher A: A hears `peerLeft`, B's ufrag goes, and A
/// renegotiates with unchanged counts (B's tracks stay as inactive m-lines, no
/// `tracksRemoved`). Returns the step of A's re-offer.
pub fn second_peer_leaves<S: SfuBackend>(
    room: &mut Room<S>,
    browser: Browser,
    a: PeerId,
    b: PeerId,
) -> Vec<Out> {
    assert_eq!(
        room.event(b, json!({"type":"leave"})),
        [
            Out::Broadcast(
                vec![a],
                json!({"type":"peerLeft","data":{"peerId":b.to_string()}})
            ),
            Out::PeerRemoved(b),
            Out::IceUfrags,
            Out::Send(a, json!({"type":"offerData","data":{"audio":1,"video":1}})),
        ]
    );
    let step = room.offer(a, &browser.joiner(), &[("0", "a:1"), ("1", "a:2")]);
    assert_eq!(kinds(&step), ["IceUfrags", "sdpAnswer", "candidate"]);
    assert_eq!(
        step[1].data()["midToTrackId"],
        json!({"0":"a:1","1":"a:2","2":"b:1","3":"b:2"}),
        "midToTrackId still lists the left peer's tracks"
    );
    assert!(room.log.iter().all(|o| o.kind() != "tracksRemoved"));
    step
}
