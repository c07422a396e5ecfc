//! Event order of every signalling sequence of the media-event protocol, at engine level
//! (sans-IO, no sockets) with the REAL SFU answering real browser offers (Chromium 156 and
//! Firefox ESR, recorded from the tutorial's client), plus the bad-input cases: logged drops or
//! an `error` event, and the room keeps serving the others.
//!
//! The harness is the one of `test/kit/engine_room.rs`: one global log of what the engine
//! emitted, in order, so orderings across peers (`peerJoined(X) < tracksAdded(X) < sdpAnswer
//! mapping X's tracks`) can be asserted. The bad-input sequences run against the recording fake
//! too; the engine's negotiation rules are in `test/engine_rounds.rs`.

use serde_json::json;
use videoroom::rtc::engine::SfuBackend;
use videoroom::rtc::ids::PeerId;
use videoroom::rtc::sfu::Sfu;

#[macro_use]
#[path = "kit/engine_room.rs"]
mod engine_room;

use engine_room::*;

/// The answer of `step` (its SDP text) and the candidates that follow it, which have the flat
/// dialect's server shape.
fn answer_sdp_and_candidates(step: &[Out], peer: PeerId) -> String {
    let answer_at = step.iter().position(|o| o.kind() == "sdpAnswer").unwrap();
    let candidates: Vec<&Out> = step[answer_at..]
        .iter()
        .filter(|o| o.kind() == "candidate")
        .collect();
    assert_eq!(
        candidates.len(),
        step.iter().filter(|o| o.kind() == "candidate").count(),
        "every candidate after the answer"
    );
    assert_eq!(
        candidates,
        [&Out::Send(
            peer,
            json!({"type":"candidate","data":{"candidate":LOCAL_CANDIDATE,
                "sdpMLineIndex":0,"sdpMid":null,"usernameFragment":null}})
        )]
    );
    assert_eq!(step[answer_at].to(), [peer]);
    assert_eq!(step[answer_at].data()["type"], "answer");
    step[answer_at].data()["sdp"].as_str().unwrap().to_owned()
}

/// The first peer publishes in an empty room. Returns A.
fn first_peer_publishes(room: &mut Room<Sfu>, browser: Browser) -> PeerId {
    let a = room.peer("a");
    let step = room.join(a, true);
    assert_eq!(kinds(&step), ["peerAccepted", "peerJoined"]);
    assert_eq!(step[0].to(), [a]);
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
        step[0].data(),
        &json!({"peerId":a.to_string(),"trackIdToMetadata":{"a:1":{},"a:2":{}}})
    );
    assert_eq!(step[2].data()["midToTrackId"], json!({"0":"a:1","1":"a:2"}));
    let sdp = answer_sdp_and_candidates(&step, a);
    assert!(section(&sdp, "0").contains("a=recvonly"));
    a
}

/// B joins while A publishes; both end up receiving each other. Returns B.
fn second_peer_joins(room: &mut Room<Sfu>, browser: Browser, a: PeerId) -> PeerId {
    let b = room.peer("b");
    let step = room.join(b, true);
    assert_eq!(kinds(&step), ["peerAccepted", "peerJoined", "offerData"]);
    assert_eq!(
        step[0].data()["peersInRoom"],
        json!([{"id":a.to_string(),"metadata":{"displayName":a.to_string()},
                "trackIdToMetadata":{"a:1":{},"a:2":{}}}])
    );
    assert_eq!(step[1].to(), [a, b]);
    assert_eq!(
        step[2],
        Out::Send(b, json!({"type":"offerData","data":{"audio":1,"video":1}}))
    );
    assert_eq!(room.renegotiate(b), []);
    assert_eq!(room.renegotiate(b), []);

    let step = room.offer(b, &browser.joiner(), &[("0", "b:1"), ("1", "b:2")]);
    assert_eq!(
        kinds(&step),
        [
            "tracksAdded",
            "IceUfrags",
            "sdpAnswer",
            "candidate",
            "offerData"
        ]
    );
    assert_eq!(step[0].to(), [a, b]);
    assert_eq!(
        step[2].data()["midToTrackId"],
        json!({"0":"b:1","1":"b:2","2":"a:1","3":"a:2"})
    );
    let sdp = answer_sdp_and_candidates(&step, b);
    for mid in ["2", "3"] {
        let s = section(&sdp, mid);
        assert!(s.contains("a=sendonly"), "mid {mid}: {s}");
        // One msid stream per publisher (the track part is the SFU's business).
        assert!(s.contains(&format!("a=msid:{a} ")), "mid {mid}: {s}");
    }
    assert_eq!(
        step[4],
        Out::Send(a, json!({"type":"offerData","data":{"audio":1,"video":1}}))
    );

    let step = room.offer(a, &browser.joiner(), &[("0", "a:1"), ("1", "a:2")]);
    assert_eq!(kinds(&step), ["IceUfrags", "sdpAnswer", "candidate"]);
    assert_eq!(
        step[1].data()["midToTrackId"],
        json!({"0":"a:1","1":"a:2","2":"b:1","3":"b:2"})
    );
    answer_sdp_and_candidates(&step, a);

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
    b
}

#[test]
fn first_peer_in_an_empty_room_negotiates_once_chromium() {
    first_peer_publishes(&mut Room::with_sfu(), Browser::Chromium);
}

#[test]
fn first_peer_in_an_empty_room_negotiates_once_firefox() {
    first_peer_publishes(&mut Room::with_sfu(), Browser::Firefox);
}

#[test]
fn second_peer_joining_a_publisher_gets_its_tracks_in_protocol_order_chromium() {
    let mut room = Room::with_sfu();
    let a = first_peer_publishes(&mut room, Browser::Chromium);
    second_peer_joins(&mut room, Browser::Chromium, a);
}

#[test]
fn second_peer_joining_a_publisher_gets_its_tracks_in_protocol_order_firefox() {
    let mut room = Room::with_sfu();
    let a = first_peer_publishes(&mut room, Browser::Firefox);
    second_peer_joins(&mut room, Browser::Firefox, a);
}

/// A room where A and B publish and receive each other (Chromium offers). Returns (A, B).
fn two_publishers() -> (Room<Sfu>, PeerId, PeerId) {
    let mut room = Room::with_sfu();
    let a = first_peer_publishes(&mut room, Browser::Chromium);
    let b = second_peer_joins(&mut room, Browser::Chromium, a);
    (room, a, b)
}

#[test]
fn a_viewer_receives_two_publishers_without_publishing() {
    let (mut room, a, b) = two_publishers();
    let v = room.peer("v");
    let step = room.join(v, true);
    assert_eq!(kinds(&step), ["peerAccepted", "peerJoined", "offerData"]);
    assert_eq!(step[2].data(), &json!({"audio":2,"video":2}));
    let step = room.offer(v, &Browser::Chromium.viewer(), &[]);
    // No tracksAdded for a viewer, and nobody else renegotiates for it.
    assert_eq!(kinds(&step), ["IceUfrags", "sdpAnswer", "candidate"]);
    assert_eq!(
        step[1].data()["midToTrackId"],
        json!({"0":"a:1","1":"a:2","2":"b:1","3":"b:2"})
    );
    let sdp = answer_sdp_and_candidates(&step, v);
    // Audio and video of one publisher share one msid stream.
    assert!(section(&sdp, "0").contains(&format!("a=msid:{a} ")));
    assert!(section(&sdp, "1").contains(&format!("a=msid:{a} ")));
    assert!(section(&sdp, "2").contains(&format!("a=msid:{b} ")));
}

#[test]
fn a_leaving_peer_gives_peer_left_and_an_answer_with_inactive_m_lines() {
    let (mut room, a, b) = two_publishers();
    assert_eq!(
        room.event(b, json!({"type":"leave"})),
        [
            Out::Broadcast(
                vec![a],
                json!({"type":"peerLeft","data":{"peerId":b.to_string()}})
            ),
            Out::PeerRemoved(b),
            Out::IceUfrags,
            // Counts unchanged: the left peer's m-lines stay, inactive.
            Out::Send(a, json!({"type":"offerData","data":{"audio":1,"video":1}})),
        ]
    );
    let step = room.offer(
        a,
        &Browser::Chromium.joiner(),
        &[("0", "a:1"), ("1", "a:2")],
    );
    assert_eq!(
        only(&step, "sdpAnswer").data()["midToTrackId"],
        json!({"0":"a:1","1":"a:2","2":"b:1","3":"b:2"}),
        "midToTrackId still lists the disabled tracks"
    );
    let sdp = answer_sdp_and_candidates(&step, a);
    assert!(section(&sdp, "2").contains("a=inactive"));
    assert!(section(&sdp, "3").contains("a=inactive"));
    assert!(room.log.iter().all(|o| o.kind() != "tracksRemoved"));
}

#[test]
fn a_removed_track_gives_tracks_removed_and_an_inactive_m_line_for_subscribers() {
    let (mut room, a, b) = two_publishers();
    // A removes its video: renegotiateTracks, then an offer whose midToTrackId lacks mid 1.
    assert_eq!(kinds(&room.renegotiate(a)), ["offerData"]);
    let step = room.offer(a, &Browser::Chromium.joiner(), &[("0", "a:1")]);
    assert_eq!(
        kinds(&step),
        [
            "tracksRemoved",
            "IceUfrags",
            "sdpAnswer",
            "candidate",
            "offerData"
        ]
    );
    assert_eq!(
        step[0],
        Out::Broadcast(
            vec![a, b],
            json!({"type":"tracksRemoved","data":{"peerId":a.to_string(),"trackIds":["a:2"]}})
        )
    );
    assert_eq!(
        step[4],
        Out::Send(b, json!({"type":"offerData","data":{"audio":1,"video":1}}))
    );
    let step = room.offer(
        b,
        &Browser::Chromium.joiner(),
        &[("0", "b:1"), ("1", "b:2")],
    );
    let sdp = answer_sdp_and_candidates(&step, b);
    assert!(
        section(&sdp, "2").contains("a=sendonly"),
        "audio still flows"
    );
    assert!(
        section(&sdp, "3").contains("a=inactive"),
        "removed video inactive"
    );
}

#[test]
fn metadata_updates_are_broadcast_as_peer_updated_and_track_updated() {
    let (mut room, a, b) = two_publishers();
    assert_eq!(
        room.event(
            a,
            json!({"type":"updatePeerMetadata","data":{"metadata":{"displayName":"Zed"}}})
        ),
        [Out::Broadcast(
            vec![a, b],
            json!({"type":"peerUpdated","data":{"peerId":a.to_string(),"metadata":{"displayName":"Zed"}}})
        )]
    );
    let update = json!({"type":"updateTrackMetadata","data":{"trackId":"a:2","trackMetadata":{"active":false}}});
    assert_eq!(
        room.event(a, update),
        [Out::Broadcast(
            vec![a, b],
            json!({"type":"trackUpdated","data":{"peerId":a.to_string(),"trackId":"a:2","metadata":{"active":false}}})
        )]
    );
}

// ---- bad input: logged drops or an `error` event; the room keeps serving the others ----

against_both_sfus!(
    invalid_json_unknown_types_and_ill_shaped_data_are_dropped,
    events_before_join_are_dropped,
    garbage_sdp_gets_an_error_event_for_that_peer_only,
    candidates_that_cannot_be_used_are_dropped,
);

/// A peer that joined an empty room and published `a:1` and `a:2`.
fn publisher<S: SfuBackend>(room: &mut Room<S>, browser: Browser) -> PeerId {
    let a = room.peer("a");
    room.join(a, true);
    room.renegotiate(a);
    room.offer(a, &browser.publisher(), &[("0", "a:1"), ("1", "a:2")]);
    a
}

/// After bad input, a newcomer still gets the full sequence with A.
fn room_still_serves<S: SfuBackend>(room: &mut Room<S>, browser: Browser, a: PeerId) {
    let c = room.peer("c");
    let step = room.join(c, true);
    assert_eq!(kinds(&step), ["peerAccepted", "peerJoined", "offerData"]);
    let step = room.offer(c, &browser.joiner(), &[("0", "c:1"), ("1", "c:2")]);
    assert_eq!(
        kinds(&step)[..4],
        ["tracksAdded", "IceUfrags", "sdpAnswer", "candidate"]
    );
    assert_eq!(
        offer_data_to(&step, a),
        [json!({"audio":1,"video":1})],
        "A renegotiates for the newcomer's tracks: {:?}",
        kinds(&step)
    );
}

fn invalid_json_unknown_types_and_ill_shaped_data_are_dropped<S: SfuBackend>(
    room: &mut Room<S>,
    browser: Browser,
) {
    let a = publisher(room, browser);
    for text in [
        "",
        "{",
        "[]",
        r#"{"type":"custom","data":{"type":"sdpOffer"}}"#,
        r#"{"type":"selectEncoding","data":{}}"#,
        r#"{"type":"sdpOffer","data":{"sdpOffer":"v=0"}}"#,
        r#"{"type":"candidate","data":{"candidate":7}}"#,
        r#"{"type":"join","data":{"metadata":{}}}"#,
    ] {
        assert_eq!(room.send_text(a, text), [], "{text:?} is dropped silently");
    }
    room_still_serves(room, browser, a);
}

fn events_before_join_are_dropped<S: SfuBackend>(room: &mut Room<S>, browser: Browser) {
    let a = publisher(room, browser);
    let stranger = room.peer("s");
    for event in [
        json!({"type":"renegotiateTracks","data":{}}),
        json!({"type":"candidate","data":{"candidate":"candidate:1 1 udp 1 1.2.3.4 5 typ host","sdpMLineIndex":0}}),
        json!({"type":"updatePeerMetadata","data":{"metadata":{}}}),
        json!({"type":"leave"}),
    ] {
        assert_eq!(room.event(stranger, event.clone()), [], "{event}");
    }
    let step = room.offer(
        stranger,
        &browser.publisher(),
        &[("0", "s:1"), ("1", "s:2")],
    );
    assert_eq!(step, []);
    assert!(!room.engine.is_member(stranger));
    room_still_serves(room, browser, a);
}

fn garbage_sdp_gets_an_error_event_for_that_peer_only<S: SfuBackend>(
    room: &mut Room<S>,
    browser: Browser,
) {
    let a = publisher(room, browser);
    let b = room.peer("b");
    room.join(b, true);
    let step = room.offer(b, "this is not SDP", &[("0", "b:1")]);
    assert_eq!(kinds(&step), ["error"]);
    assert_eq!(step[0].to(), [b]);
    let message = step[0].data()["message"].as_str().unwrap();
    assert!(message.len() > 3, "{message}");
    assert_eq!(step[0].data().as_object().unwrap().len(), 1);
    room_still_serves(room, browser, a);
}

fn candidates_that_cannot_be_used_are_dropped<S: SfuBackend>(room: &mut Room<S>, browser: Browser) {
    let a = publisher(room, browser);
    for data in [
        json!({"candidate":"candidate:1 1 udp 2122260223 192.0.2.7 54321 typ host","sdpMLineIndex":9}),
        json!({"candidate":"not a candidate","sdpMLineIndex":0}),
        json!({"candidate":"","sdpMLineIndex":null}),
    ] {
        let step = room.event(a, json!({"type":"candidate","data":data}));
        assert_eq!(step, [], "{data}");
    }
    room_still_serves(room, browser, a);
}

#[test]
fn an_offer_with_no_usable_codec_gets_an_error_event() {
    let mut room = Room::with_sfu();
    let a = publisher(&mut room, Browser::Chromium);
    let b = room.peer("b");
    room.join(b, true);
    // Only G722/PCMU/PCMA audio and AV1/VP9 video: nothing the SFU forwards.
    let offer = Browser::Chromium
        .joiner()
        .replace("opus/48000/2", "X-NOPE/48000/2")
        .replace("VP8/90000", "X-NOPE/90000")
        .replace("H264/90000", "X-NOPE/90000");
    let step = room.offer(b, &offer, &[("0", "b:1"), ("1", "b:2")]);
    assert_eq!(kinds(&step), ["error"], "{step:?}");
    assert_eq!(step[0].to(), [b]);
    assert!(
        room.log
            .iter()
            .all(|o| !(o.kind() == "tracksAdded" && o.data()["peerId"] == b.to_string())),
        "tracks of a rejected offer are never announced"
    );
    room_still_serves(&mut room, Browser::Chromium, a);
}

#[test]
fn a_receive_media_false_peer_is_offered_nothing() {
    let mut room = Room::with_sfu();
    let a = first_peer_publishes(&mut room, Browser::Chromium);
    let v = room.peer("v");
    let step = room.join(v, false);
    assert_eq!(kinds(&step), ["peerAccepted", "peerJoined"]);
    assert_eq!(step[0].data()["peersInRoom"][0]["id"], a.to_string());
    assert_eq!(
        room.renegotiate(v),
        [Out::Send(
            v,
            json!({"type":"offerData","data":{"audio":0,"video":0}})
        )]
    );
}
