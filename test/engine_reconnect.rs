//! The engine's side of reconnecting: a member whose signalling connection is lost is held
//! while its media lives (nobody hears of it), removed when the reconnect grace runs out or its
//! media fails, and a resumed member hears the room as it is now and what it missed. Literal
//! media events, with the kit's engine harness (`test/kit/engine_room.rs`); the fake SFU's media
//! is connected once a peer's offer was answered, the real SFU's only over a real network (so
//! there a detached member is never held).

use std::time::Duration;

use serde_json::json;
use videoroom::rtc::engine::{EngineLimits, SfuBackend};
use videoroom::rtc::ids::PeerId;

#[macro_use]
#[path = "kit/engine_room.rs"]
mod engine_room;

use engine_room::*;

/// The default reconnect grace, which the harness's engine has.
fn grace() -> Duration {
    EngineLimits::default().reconnect_grace
}

against_both_sfus!(a_peer_whose_media_never_connected_is_removed_at_once_when_its_channel_is_lost);

/// A and B publish and receive each other (both answered: the fake's media is up). (A, B).
fn two_publishers(room: &mut Room<FakeSfu>) -> (PeerId, PeerId) {
    publisher_and_joiner(room, Browser::Generated)
}

/// What the others hear when B is gone: `peerLeft`, then A renegotiates with unchanged counts.
fn b_is_removed(a: PeerId, b: PeerId) -> Vec<Out> {
    vec![
        Out::Broadcast(
            vec![a],
            json!({"type":"peerLeft","data":{"peerId":b.to_string()}}),
        ),
        Out::PeerRemoved(b),
        Out::IceUfrags,
        Out::Send(a, json!({"type":"offerData","data":{"audio":1,"video":1}})),
    ]
}

fn a_peer_whose_media_never_connected_is_removed_at_once_when_its_channel_is_lost<S: SfuBackend>(
    room: &mut Room<S>,
    browser: Browser,
) {
    let (a, b) = publisher_and_member(room, browser, true);
    let (held, step) = room.detach(b);
    assert!(!held);
    assert_eq!(
        step,
        [
            Out::Broadcast(
                vec![a],
                json!({"type":"peerLeft","data":{"peerId":b.to_string()}})
            ),
            Out::PeerRemoved(b),
        ]
    );
    assert!(!room.engine.is_member(b));
}

#[test]
fn a_member_with_live_media_is_held_silently_for_the_grace_and_then_removed() {
    let mut room = Room::with_fake();
    let (a, b) = two_publishers(&mut room);
    let (held, step) = room.detach(b);
    assert!(held);
    assert_eq!(step, [], "nobody hears of a held peer");
    assert!(room.engine.is_held(b) && room.engine.is_member(b));
    assert_eq!(room.advance(grace() - Duration::from_millis(1)), []);
    assert_eq!(room.advance(Duration::from_millis(1)), b_is_removed(a, b));
    assert!(!room.engine.is_member(b) && !room.engine.is_held(b));
}

#[test]
fn a_held_member_whose_media_fails_is_removed_without_waiting_for_the_grace() {
    let mut room = Room::with_fake();
    let (a, b) = two_publishers(&mut room);
    assert!(room.detach(b).0);
    room.engine.sfu().fail_peer(b);
    let step = room.drain();
    assert_eq!(
        step[0],
        Out::Send(
            b,
            json!({"type":"error","data":{"message":"media connection failed"}})
        )
    );
    assert_eq!(step[1..], b_is_removed(a, b));
    assert!(!room.engine.is_held(b));
    assert_eq!(room.advance(grace()), [], "removed once");
}

#[test]
fn a_held_member_that_says_leave_or_is_removed_goes_at_once() {
    let mut room = Room::with_fake();
    let (a, b) = two_publishers(&mut room);
    assert!(room.detach(b).0);
    room.engine.remove_peer(b);
    assert_eq!(room.drain(), b_is_removed(a, b));
    assert_eq!(room.advance(grace()), []);
}

#[test]
fn a_zero_grace_removes_a_member_at_once_whatever_its_media() {
    let mut room = Room::with_fake();
    let limits = EngineLimits {
        reconnect_grace: Duration::ZERO,
        ..EngineLimits::default()
    };
    room.engine = videoroom::rtc::engine::Engine::with_limits("seq", FakeSfu::default(), limits);
    let (a, b) = two_publishers(&mut room);
    let (held, step) = room.detach(b);
    assert!(!held);
    assert_eq!(step, b_is_removed(a, b));
}

#[test]
fn a_resumed_member_hears_the_room_as_it_is_now_and_nothing_else_when_nothing_changed() {
    let mut room = Room::with_fake();
    let (a, b) = two_publishers(&mut room);
    assert!(room.detach(b).0);
    assert_eq!(
        room.resume(b, "next-token"),
        [Out::Send(
            b,
            json!({"type":"peerAccepted","data":{"id":b.to_string(),"peersInRoom":[
                {"id":a.to_string(),"metadata":{"displayName":a.to_string()},
                 "trackIdToMetadata":{"a:1":{},"a:2":{}}}],
                "resumeToken":"next-token"}})
        )]
    );
    assert!(!room.engine.is_held(b));
    assert_eq!(
        room.advance(grace() * 2),
        [],
        "a resumed member is not removed"
    );
    assert!(room.engine.is_member(b));
}

#[test]
fn a_resumed_member_gets_the_offer_data_it_missed_and_sees_who_joined_meanwhile() {
    let mut room = Room::with_fake();
    let (a, b) = two_publishers(&mut room);
    assert!(room.detach(b).0);
    // C joins and publishes while B is away: B's round starts, its offerData is undeliverable.
    let c = room.peer("c");
    assert_eq!(
        kinds(&room.join(c, true)),
        ["peerAccepted", "peerJoined", "offerData"]
    );
    let step = room.offer(
        c,
        &generated_offer(&["audio", "video"], 2),
        &[("0", "c:1"), ("1", "c:2")],
    );
    assert!(step.contains(&Out::Send(
        b,
        json!({"type":"offerData","data":{"audio":2,"video":2}})
    )));
    assert_eq!(
        room.resume(b, "t2"),
        [
            Out::Send(
                b,
                json!({"type":"peerAccepted","data":{"id":b.to_string(),"peersInRoom":[
                    {"id":a.to_string(),"metadata":{"displayName":a.to_string()},
                     "trackIdToMetadata":{"a:1":{},"a:2":{}}},
                    {"id":c.to_string(),"metadata":{"displayName":c.to_string()},
                     "trackIdToMetadata":{"c:1":{},"c:2":{}}}],
                    "resumeToken":"t2"}})
            ),
            Out::Send(b, json!({"type":"offerData","data":{"audio":2,"video":2}})),
        ]
    );
    // B's answer to the replayed offerData completes the round as usual.
    let step = room.offer(
        b,
        &generated_offer(&["audio", "video"], 2),
        &[("0", "b:1"), ("1", "b:2")],
    );
    assert_eq!(kinds(&step), ["IceUfrags", "sdpAnswer", "candidate"]);
    assert_eq!(
        step[1].data()["midToTrackId"],
        json!({"0":"b:1","1":"b:2","2":"a:1","3":"a:2","4":"c:1","5":"c:2"})
    );
}

#[test]
fn resuming_a_peer_that_is_gone_sends_nothing() {
    let mut room = Room::with_fake();
    let (_, b) = two_publishers(&mut room);
    room.engine.remove_peer(b);
    room.drain();
    assert!(!room.engine.resume_peer(b, "t".into()));
    assert_eq!(room.drain(), []);
}
