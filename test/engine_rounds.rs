//! The engine's negotiation rules: who hears what, in which order, how rounds coalesce, and
//! what bad input causes. Most sequences run twice with the one harness of
//! `test/kit/engine_room.rs`: against the recording fake (generated offers; it also shows which
//! outbound tracks the engine hands the SFU) and against the real SFU (recorded Chromium
//! offers). The few that need what only the fake can do (inject a failure, answer an offer no
//! browser recording has the shape of) run against the fake alone.

use serde_json::json;
use videoroom::rtc::engine::SfuBackend;
use videoroom::rtc::ids::{MediaKind, PeerId};

#[macro_use]
#[path = "kit/engine_room.rs"]
mod engine_room;

use engine_room::*;

against_both_sfus!(
    the_first_peer_is_accepted_into_an_empty_room,
    two_renegotiate_requests_at_join_give_one_round,
    a_joiner_and_the_publisher_renegotiate_for_each_other_in_order,
    a_leaving_peer_gives_peer_left_and_no_tracks_removed,
    removing_a_peer_twice_announces_it_once,
    a_dropped_track_is_announced_with_tracks_removed,
    a_receive_media_false_peer_is_offered_nothing,
    events_from_non_members_and_bad_json_are_dropped_silently,
    an_unanswerable_offer_gets_an_error_event_and_the_room_goes_on,
    a_denied_peer_gets_peer_denied_with_the_payload,
    metadata_updates_are_broadcast,
    a_track_under_another_peers_id_is_not_published_and_the_sender_gets_an_error,
    a_join_whose_metadata_is_too_big_is_denied,
    a_media_event_nested_deeper_than_serde_json_allows_is_dropped,
    a_track_added_while_the_client_built_its_offer_gets_one_follow_up_round,
);

fn the_first_peer_is_accepted_into_an_empty_room<S: SfuBackend>(room: &mut Room<S>, _: Browser) {
    let a = room.peer("a");
    assert_eq!(
        room.join(a, true),
        [
            Out::Send(
                a,
                json!({"type":"peerAccepted","data":{"id":a.to_string(),"peersInRoom":[]}})
            ),
            Out::Broadcast(
                vec![a],
                json!({"type":"peerJoined","data":{"peer":{"id":a.to_string(),
                    "metadata":{"displayName":a.to_string()},"trackIdToMetadata":{}}}})
            ),
        ]
    );
}

/// Asserted step by step by the kit's `first_peer_publishes`.
fn two_renegotiate_requests_at_join_give_one_round<S: SfuBackend>(
    room: &mut Room<S>,
    browser: Browser,
) {
    first_peer_publishes(room, browser);
}

/// Asserted step by step by the kit's `second_peer_joins`.
fn a_joiner_and_the_publisher_renegotiate_for_each_other_in_order<S: SfuBackend>(
    room: &mut Room<S>,
    browser: Browser,
) {
    let (a, _) = first_peer_publishes(room, browser);
    second_peer_joins(room, browser, a);
}

/// Asserted step by step by the kit's `second_peer_leaves`.
fn a_leaving_peer_gives_peer_left_and_no_tracks_removed<S: SfuBackend>(
    room: &mut Room<S>,
    browser: Browser,
) -> (PeerId, PeerId) {
    let (a, b) = publisher_and_joiner(room, browser);
    second_peer_leaves(room, browser, a, b);
    (a, b)
}

fn removing_a_peer_twice_announces_it_once<S: SfuBackend>(room: &mut Room<S>, browser: Browser) {
    let (a, b) = publisher_and_member(room, browser, true);
    room.engine.remove_peer(b);
    assert_eq!(
        room.drain(),
        [
            Out::Broadcast(
                vec![a],
                json!({"type":"peerLeft","data":{"peerId":b.to_string()}})
            ),
            Out::PeerRemoved(b),
        ]
    );
    room.engine.remove_peer(b);
    assert_eq!(room.drain(), []);
    assert!(!room.engine.is_member(b));
    assert!(room.engine.is_member(a));
}

fn a_dropped_track_is_announced_with_tracks_removed<S: SfuBackend>(
    room: &mut Room<S>,
    browser: Browser,
) {
    let (a, b) = publisher_and_member(room, browser, false);
    // B receives nothing, so it never needs a round.
    assert_eq!(
        room.renegotiate(a),
        [Out::Send(
            a,
            json!({"type":"offerData","data":{"audio":0,"video":0}})
        )]
    );
    // The client keeps the video transceiver; its offer no longer maps mid 1.
    let step = room.offer(a, &browser.publisher(), &[("0", "a:1")]);
    assert_eq!(
        kinds(&step),
        ["tracksRemoved", "IceUfrags", "sdpAnswer", "candidate"]
    );
    assert_eq!(
        step[0],
        Out::Broadcast(
            vec![a, b],
            json!({"type":"tracksRemoved","data":{"peerId":a.to_string(),"trackIds":["a:2"]}})
        )
    );
}

fn a_receive_media_false_peer_is_offered_nothing<S: SfuBackend>(
    room: &mut Room<S>,
    browser: Browser,
) {
    let a = first_peer_publishes(room, browser).0;
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

fn events_from_non_members_and_bad_json_are_dropped_silently<S: SfuBackend>(
    room: &mut Room<S>,
    browser: Browser,
) {
    let a = first_peer_publishes(room, browser).0;
    let stranger = room.peer("s");
    for text in [
        r#"{"type":"renegotiateTracks","data":{}}"#,
        r#"{"type":"leave"}"#,
        r#"{"type":"updatePeerMetadata","data":{"metadata":{}}}"#,
    ] {
        assert_eq!(room.send_text(stranger, text), [], "{text}");
    }
    for text in [
        "{",
        r#"{"type":"custom","data":{}}"#,
        r#"{"type":"join","data":7}"#,
    ] {
        assert_eq!(room.send_text(a, text), [], "{text}");
    }
    assert!(room.engine.is_member(a));
}

fn an_unanswerable_offer_gets_an_error_event_and_the_room_goes_on<S: SfuBackend>(
    room: &mut Room<S>,
    browser: Browser,
) {
    let (a, b) = publisher_and_member(room, browser, true);
    let step = room.offer(b, "garbage", &[]);
    assert_eq!(kinds(&step), ["error"]);
    assert_eq!(step[0].to(), [b]);
    // A is unaffected and can still renegotiate.
    assert_eq!(
        room.renegotiate(a),
        [Out::Send(
            a,
            json!({"type":"offerData","data":{"audio":0,"video":0}})
        )]
    );
}

fn a_denied_peer_gets_peer_denied_with_the_payload<S: SfuBackend>(room: &mut Room<S>, _: Browser) {
    let a = room.peer("a");
    let step = room.event(
        a,
        json!({"type":"join","data":{"receiveMedia":true,"metadata":{}}}),
    );
    assert_eq!(step, [Out::JoinRequest(a)]);
    room.engine.deny_peer(a, json!({"reason":"full"}));
    assert_eq!(
        room.drain(),
        [Out::Send(
            a,
            json!({"type":"peerDenied","data":{"reason":"full"}})
        )]
    );
    assert!(!room.engine.is_member(a));
}

fn metadata_updates_are_broadcast<S: SfuBackend>(room: &mut Room<S>, browser: Browser) {
    let a = first_peer_publishes(room, browser).0;
    assert_eq!(
        room.event(
            a,
            json!({"type":"updatePeerMetadata","data":{"metadata":{"displayName":"x"}}})
        ),
        [Out::Broadcast(
            vec![a],
            json!({"type":"peerUpdated","data":{"peerId":a.to_string(),"metadata":{"displayName":"x"}}})
        )]
    );
    assert_eq!(
        room.event(
            a,
            json!({"type":"updateTrackMetadata","data":{"trackId":"a:2","trackMetadata":{"m":1}}})
        ),
        [Out::Broadcast(
            vec![a],
            json!({"type":"trackUpdated","data":{"peerId":a.to_string(),"trackId":"a:2","metadata":{"m":1}}})
        )]
    );
    let unknown_track =
        json!({"type":"updateTrackMetadata","data":{"trackId":"zz","trackMetadata":{}}});
    assert_eq!(room.event(a, unknown_track), []);
}

fn a_track_under_another_peers_id_is_not_published_and_the_sender_gets_an_error<S: SfuBackend>(
    room: &mut Room<S>,
    browser: Browser,
) {
    let a = room.peer("a");
    let b = room.peer("b");
    room.join(a, true);
    room.join(b, true);
    let step = room.offer(b, &browser.publisher(), &[("0", "a:1")]);
    assert!(
        step.contains(&Out::Send(
            b,
            json!({"type":"error","data":{"message":"track ids must be \"<your peer id>:<id>\" and unique"}})
        )),
        "{step:?}"
    );
    assert!(!kinds(&step).contains(&"tracksAdded"), "{step:?}");
}

fn a_join_whose_metadata_is_too_big_is_denied<S: SfuBackend>(room: &mut Room<S>, _: Browser) {
    let a = room.peer("a");
    let big = "x".repeat(5000);
    let join = json!({"type":"join","data":{"receiveMedia":true,"metadata":{"displayName":big}}});
    assert_eq!(
        room.event(a, join),
        [Out::Send(
            a,
            json!({"type":"peerDenied","data":{"reason":"peer metadata too large"}})
        )]
    );
}

fn a_media_event_nested_deeper_than_serde_json_allows_is_dropped<S: SfuBackend>(
    room: &mut Room<S>,
    _: Browser,
) {
    // serde_json stops at 128 levels (its default recursion limit): no stack overflow.
    let a = room.peer("a");
    let frame = format!(
        r#"{{"type":"join","data":{{"receiveMedia":true,"metadata":{}1{}}}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert_eq!(room.send_text(a, &frame), []);
}

fn a_track_added_while_the_client_built_its_offer_gets_one_follow_up_round<S: SfuBackend>(
    room: &mut Room<S>,
    browser: Browser,
) {
    let a = room.peer("a");
    room.join(a, true);
    room.renegotiate(a);
    // The client added a:2 while building the offer: declared, but no mid carries it yet.
    let declared = ["a:1", "a:2"];
    let step = room.offer_declaring(a, &browser.publisher(), &[("0", "a:1")], &declared);
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
    assert_eq!(offer_data_to(&step, a), [json!({"audio":0,"video":0})]);
    let step = room.offer(a, &browser.publisher(), &[("0", "a:1"), ("1", "a:2")]);
    assert_eq!(
        kinds(&step),
        ["tracksAdded", "IceUfrags", "sdpAnswer", "candidate"]
    );
}

// ---- what only the fake shows ----

/// Per answered offer: the peer and the outbound tracks the engine handed the fake, written
/// `"a:1 audio active"`. Every handed track's msid stream is its publisher's id.
fn handed(room: &Room<FakeSfu>) -> Vec<(PeerId, Vec<String>)> {
    let offers = &room.engine.sfu().offers;
    let describe = |spec: &videoroom::rtc::sfu::ConsumerSpec| {
        assert_eq!(spec.stream_id, spec.publisher.to_string());
        assert!(spec.track_id.is_owned_by(spec.publisher));
        let kind = match spec.kind {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
        };
        let state = if spec.active { "active" } else { "inactive" };
        format!("{} {kind} {state}", room.shorten(spec.track_id.as_str()))
    };
    let handed = offers
        .iter()
        .map(|(peer, specs)| (*peer, specs.iter().map(describe).collect()));
    handed.collect()
}

#[test]
fn a_joiner_and_the_publisher_are_handed_each_others_tracks() {
    let mut room = Room::with_fake();
    let (a, b) = publisher_and_joiner(&mut room, Browser::Generated);
    assert_eq!(
        handed(&room),
        [
            (a, vec![]),
            (
                b,
                vec!["a:1 audio active".into(), "a:2 video active".into()]
            ),
            (
                a,
                vec!["b:1 audio active".into(), "b:2 video active".into()]
            ),
        ]
    );
}

#[test]
fn a_left_peers_tracks_are_handed_inactive_and_the_peer_is_removed_from_the_sfu() {
    let mut room = Room::with_fake();
    let (a, b) =
        a_leaving_peer_gives_peer_left_and_no_tracks_removed(&mut room, Browser::Generated);
    assert_eq!(
        handed(&room).last().unwrap(),
        &(
            a,
            vec!["b:1 audio inactive".into(), "b:2 video inactive".into()]
        )
    );
    assert_eq!(room.engine.sfu().removed, [b]);
}

#[test]
fn changes_during_an_outstanding_round_queue_exactly_one_follow_up() {
    let mut room = Room::with_fake();
    let viewer = room.peer("v");
    room.join(viewer, true);
    // The viewer is asked to negotiate A's tracks; while it builds its offer B publishes too.
    let a = room.peer("a");
    room.join(a, true);
    room.renegotiate(a);
    let offer = Browser::Generated;
    room.offer(a, &offer.publisher(), &[("0", "a:1"), ("1", "a:2")]);
    let b = room.peer("b");
    room.join(b, true);
    room.offer(b, &offer.joiner(), &[("0", "b:1"), ("1", "b:2")]);
    room.offer(a, &offer.joiner(), &[("0", "a:1"), ("1", "a:2")]);
    // The viewer answers the first offerData ({1,1}); exactly one follow-up with {2,2} comes.
    let step = room.offer(viewer, &generated_offer(&[], 1), &[]);
    assert_eq!(
        kinds(&step),
        ["IceUfrags", "sdpAnswer", "candidate", "offerData"]
    );
    assert_eq!(offer_data_to(&step, viewer), [json!({"audio":2,"video":2})]);
    assert_eq!(
        handed(&room).last().unwrap(),
        &(
            viewer,
            vec!["a:1 audio active".into(), "a:2 video active".into()]
        )
    );
    let step = room.offer(viewer, &generated_offer(&[], 2), &[]);
    assert_eq!(kinds(&step), ["IceUfrags", "sdpAnswer", "candidate"]);
    assert_eq!(
        step[1].data()["midToTrackId"],
        json!({"0":"a:1","1":"a:2","2":"b:1","3":"b:2"})
    );
    assert!(room.engine.is_member(a));
}

#[test]
fn a_failed_peer_is_told_and_removed_and_the_others_get_peer_left() {
    let mut room = Room::with_fake();
    let (a, b) = publisher_and_member(&mut room, Browser::Generated, true);
    room.engine.sfu().fail_peer(b);
    let step = room.drain();
    assert_eq!(kinds(&step), ["error", "peerLeft", "PeerRemoved"]);
    assert_eq!(step[0].to(), [b]);
    assert_eq!(
        step[1],
        Out::Broadcast(
            vec![a],
            json!({"type":"peerLeft","data":{"peerId":b.to_string()}})
        )
    );
    assert_eq!(step[2], Out::PeerRemoved(b));
}

/// A trickled host candidate numbered `n`, as the tutorial's client sends it.
fn candidate(n: u16) -> serde_json::Value {
    let line = format!(
        "candidate:{n} 1 udp 2122260223 192.0.2.1 {} typ host",
        40000 + n
    );
    json!({"type": "candidate", "data": {"candidate": line, "sdpMLineIndex": 0}})
}

/// On a fresh connection Chromium gathers candidates for every m-line, so a joiner's first offer
/// in a big room brings many: the budget is per m-line of the latest offer, and only a peer
/// that goes past it gets `error`.
#[test]
fn candidates_are_budgeted_per_m_line_of_the_latest_offer() {
    let mut room = Room::with_fake();
    let viewer = room.peer("v");
    room.join(viewer, true);
    // Five audio+video pairs: ten m-lines, 32 candidates each by default.
    room.offer(viewer, &generated_offer(&[], 5), &[]);
    for n in 0..320 {
        let step = room.event(viewer, candidate(n));
        assert!(
            step.iter().all(|o| o.kind() != "error"),
            "candidate {n} of 320 refused: {:?}",
            kinds(&step)
        );
    }
    let step = room.event(viewer, candidate(320));
    assert_eq!(kinds(&step), ["error"]);
    assert_eq!(
        only(&step, "error").data(),
        &json!({"message": "too many ICE candidates"})
    );
    // The next offer (no m-line at all counts as one) starts a new, smaller budget.
    room.offer(viewer, &generated_offer(&[], 0), &[]);
    for n in 0..32 {
        assert!(
            room.event(viewer, candidate(n))
                .iter()
                .all(|o| o.kind() != "error")
        );
    }
    assert_eq!(kinds(&room.event(viewer, candidate(32))), ["error"]);
}
