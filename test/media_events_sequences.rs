//! Event order of every signalling sequence of the media-event protocol, at engine level
//! (sans-IO, no sockets) with the REAL SFU answering real browser offers (Chromium 156 and
//! Firefox ESR, recorded from the tutorial's client), plus the bad-input cases: logged drops or
//! an `error` event, and the room keeps serving the others.
//!
//! The harness is the one of `test/kit/engine_room.rs`: one global log of what the engine
//! emitted, in order, so orderings across peers (`peerJoined(X) < tracksAdded(X) < sdpAnswer
//! mapping X's tracks`) can be asserted. The bad-input sequences run against the recording fake
//! too; the engine's negotiation rules are in `test/engine_rounds.rs` (with the real SFU as well:
//! e.g. a `receiveMedia: false` peer is offered nothing).

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

/// The kit's first sequence, and the answer's SDP: A's m-lines are received. Returns A.
fn publisher_is_answered_recvonly(room: &mut Room<Sfu>, browser: Browser) -> PeerId {
    let (a, step) = first_peer_publishes(room, browser);
    let sdp = answer_sdp_and_candidates(&step, a);
    assert!(section(&sdp, "0").contains("a=recvonly"));
    assert!(section(&sdp, "1").contains("a=recvonly"));
    a
}

/// The kit's joiner sequence, and the answers' SDP: B is sent A's tracks in one msid stream.
/// Returns B.
fn joiner_is_answered_sendonly(room: &mut Room<Sfu>, browser: Browser, a: PeerId) -> PeerId {
    let (b, joiner_step, publisher_step) = second_peer_joins(room, browser, a);
    let sdp = answer_sdp_and_candidates(&joiner_step, b);
    for mid in ["2", "3"] {
        let s = section(&sdp, mid);
        assert!(s.contains("a=sendonly"), "mid {mid}: {s}");
        // One msid stream per publisher (the track part is the SFU's business).
        assert!(s.contains(&format!("a=msid:{a} ")), "mid {mid}: {s}");
    }
    let sdp = answer_sdp_and_candidates(&publisher_step, a);
    assert!(section(&sdp, "2").contains(&format!("a=msid:{b} ")));
    b
}

#[test]
fn first_peer_in_an_empty_room_negotiates_once_chromium() {
    publisher_is_answered_recvonly(&mut Room::with_sfu(), Browser::Chromium);
}

#[test]
fn first_peer_in_an_empty_room_negotiates_once_firefox() {
    publisher_is_answered_recvonly(&mut Room::with_sfu(), Browser::Firefox);
}

#[test]
fn second_peer_joining_a_publisher_gets_its_tracks_in_protocol_order_chromium() {
    let mut room = Room::with_sfu();
    let a = publisher_is_answered_recvonly(&mut room, Browser::Chromium);
    joiner_is_answered_sendonly(&mut room, Browser::Chromium, a);
}

#[test]
fn second_peer_joining_a_publisher_gets_its_tracks_in_protocol_order_firefox() {
    let mut room = Room::with_sfu();
    let a = publisher_is_answered_recvonly(&mut room, Browser::Firefox);
    joiner_is_answered_sendonly(&mut room, Browser::Firefox, a);
}

/// A room where A and B publish and receive each other (Chromium offers). Returns (A, B).
fn two_publishers() -> (Room<Sfu>, PeerId, PeerId) {
    let mut room = Room::with_sfu();
    let a = publisher_is_answered_recvonly(&mut room, Browser::Chromium);
    let b = joiner_is_answered_sendonly(&mut room, Browser::Chromium, a);
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
    let step = second_peer_leaves(&mut room, Browser::Chromium, a, b);
    let sdp = answer_sdp_and_candidates(&step, a);
    assert!(section(&sdp, "2").contains("a=inactive"));
    assert!(section(&sdp, "3").contains("a=inactive"));
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
    let (a, _) = first_peer_publishes(room, browser);
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
    let (a, _) = first_peer_publishes(room, browser);
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
    let (a, b) = publisher_and_member(room, browser, true);
    let step = room.offer(b, "this is not SDP", &[("0", "b:1")]);
    assert_eq!(kinds(&step), ["error"]);
    assert_eq!(step[0].to(), [b]);
    let message = step[0].data()["message"].as_str().unwrap();
    assert!(message.len() > 3, "{message}");
    assert_eq!(step[0].data().as_object().unwrap().len(), 1);
    room_still_serves(room, browser, a);
}

fn candidates_that_cannot_be_used_are_dropped<S: SfuBackend>(room: &mut Room<S>, browser: Browser) {
    let (a, _) = first_peer_publishes(room, browser);
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
    let (a, b) = publisher_and_member(&mut room, Browser::Chromium, true);
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
