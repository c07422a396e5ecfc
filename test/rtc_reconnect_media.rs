//! Media across network trouble, in virtual time (the kit's media world: the engine and SFU
//! behind the product's media driver, str0m browsers, datagrams in memory): a browser whose
//! signalling is lost keeps its media while it is held, and a browser whose address changes
//! (a NAT rebinding, Wi-Fi to cellular) is followed to its new address after a STUN check.
use std::time::Duration;

use videoroom::rtc::engine::EngineLimits;
use videoroom::rtc::ids::MediaKind;

#[path = "kit/media_world.rs"]
mod media_world;

use media_world::*;

/// Two publishing browsers (Chrome- and Firefox-flavoured) in one engine room whose held peers
/// are kept for `grace`, run until negotiation settled.
fn two_browsers(grace: Duration) -> World {
    let limits = EngineLimits {
        reconnect_grace: grace,
        ..EngineLimits::default()
    };
    let mut w = World::with_engine_limits(1, limits);
    w.add_browser(0, Flavor::Chrome, true);
    w.run(Duration::from_millis(300));
    w.add_browser(0, Flavor::Firefox, true);
    w.run(Duration::from_secs(1));
    assert!(connected(&w, 0) && connected(&w, 1));
    w
}

/// Packets `sub` got so far from `publ`'s audio and video.
fn received(w: &World, sub: usize, publ: usize) -> [usize; 2] {
    [MediaKind::Audio, MediaKind::Video].map(|kind| w.got_from(sub, publ, kind).len())
}

/// Runs in 20 ms steps until each browser got new audio and video from the other since
/// `before`; returns how long that took (virtual time), or `None` within `limit`.
fn until_both_receive(w: &mut World, limit: Duration) -> Option<Duration> {
    let before = [received(w, 0, 1), received(w, 1, 0)];
    let start = w.now;
    while w.now - start < limit {
        w.run(Duration::from_millis(20));
        let now = [received(w, 0, 1), received(w, 1, 0)];
        if (0..2).all(|b| (0..2).all(|k| now[b][k] > before[b][k])) {
            return Some(w.now - start);
        }
    }
    None
}

#[test]
fn a_held_browser_keeps_sending_and_receiving_until_its_grace_runs_out() {
    let grace = Duration::from_secs(3);
    let mut w = two_browsers(grace);
    let held = w.browsers[1].peer;
    assert!(w.detach(1), "media is connected: held");
    let from = [
        w.sent_seq(0, MediaKind::Audio),
        w.sent_seq(1, MediaKind::Audio),
    ];
    w.run(grace - Duration::from_millis(100));
    assert!(w.engine(0).is_held(held) && w.removed.is_empty());
    let to = [
        w.sent_seq(0, MediaKind::Audio),
        w.sent_seq(1, MediaKind::Audio),
    ];
    assert!(
        to[0] - from[0] >= 100 && to[1] - from[1] >= 100,
        "{from:?} {to:?}"
    );
    assert_received(
        &w.got_from(1, 0, MediaKind::Audio),
        from[0],
        to[0],
        "to the held browser",
    );
    assert_received(
        &w.got_from(0, 1, MediaKind::Audio),
        from[1],
        to[1],
        "from the held browser",
    );
    w.run(Duration::from_millis(200));
    assert_eq!(w.removed, [held], "removed when the grace ran out");
    assert_eq!(w.engine(0).member_count(), 1);
}

#[test]
fn a_held_browser_whose_media_dies_too_is_removed_within_the_peer_timeout() {
    let mut w = two_browsers(Duration::from_secs(30));
    let held = w.browsers[1].peer;
    assert!(w.detach(1));
    w.run(Duration::from_secs(1));
    // The tab is gone: nothing more from it, not even a DTLS close.
    w.browsers[1].vanished = true;
    let died = w.now;
    while w.removed.is_empty() && w.now - died < Duration::from_secs(10) {
        w.run(Duration::from_millis(100));
    }
    eprintln!(
        "FIGURE a held peer whose media died was removed {:?} later (virtual time)",
        w.now - died
    );
    assert_eq!(w.removed, [held]);
    let peer_left = w.browsers[0].media_events.iter().any(|e| {
        matches!(e, videoroom::rtc::media_event::MediaEventOut::PeerLeft(d) if d.peer_id == held.to_string())
    });
    assert!(peer_left, "the other browser hears peerLeft");
}

#[test]
fn a_browser_whose_address_changes_is_followed_to_the_new_one_after_a_stun_check() {
    let mut w = two_browsers(Duration::from_secs(30));
    w.rebind(1, "192.0.2.77:61000".parse().unwrap());
    // The browser's ICE agent keeps checking its pair; the first check from the new address
    // moves the SFU (and the mux's learnt address) there.
    let took = until_both_receive(&mut w, Duration::from_secs(10));
    eprintln!("FIGURE media both ways again {took:?} (virtual time) after the address changed");
    assert!(took.is_some(), "media did not follow the new address");
    let from = [
        w.sent_seq(0, MediaKind::Audio),
        w.sent_seq(1, MediaKind::Video),
    ];
    w.run(Duration::from_secs(2));
    let to = [
        w.sent_seq(0, MediaKind::Audio),
        w.sent_seq(1, MediaKind::Video),
    ];
    // Packets sent to the old address before the SFU moved are lost: no gaplessness here.
    let to_moved = w.got_from(1, 0, MediaKind::Audio);
    assert_mostly_received(&to_moved, from[0], to[0], "to the moved browser");
    let from_moved = w.got_from(0, 1, MediaKind::Video);
    assert_mostly_received(&from_moved, from[1], to[1], "from the moved browser");
    assert!(w.removed.is_empty(), "nobody was removed");
}

#[test]
fn after_an_outage_ending_on_a_new_address_keyframes_are_asked_both_ways_as_soon_as_the_path_moves()
{
    let mut w = two_browsers(Duration::from_secs(30));
    // Both directions are lost for 2 s (under the 4 s peer timeout), then the browser comes
    // back through a new NAT mapping.
    w.browsers[1].vanished = true;
    w.run(Duration::from_secs(2));
    let asked_before = [0, 1].map(|b| w.browsers[b].keyframe_requests.len());
    w.rebind(1, "192.0.2.77:61000".parse().unwrap());
    w.browsers[1].vanished = false;
    let back = w.now;
    let took = until_both_receive(&mut w, Duration::from_secs(10));
    assert!(took.is_some(), "media did not follow the new address");
    w.run(Duration::from_millis(500));
    // The kit's browsers never ask for keyframes themselves: these come from the SFU.
    for (b, whose) in [
        (1, "the moved browser's own video"),
        (0, "the video the moved browser receives"),
    ] {
        let asked = &w.browsers[b].keyframe_requests[asked_before[b]..];
        assert!(!asked.is_empty(), "no keyframe request for {whose}");
        eprintln!(
            "FIGURE keyframe asked for {whose} {:?} (virtual time) after the path came back",
            asked[0] - back
        );
    }
    assert!(w.removed.is_empty(), "nobody was removed");
}
