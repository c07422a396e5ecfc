//! A room's whole media plane below Phoenix, in virtual time: the engine and the SFU behind the
//! product's media driver, with in-process str0m browsers that join and negotiate through media
//! events as the tutorial's client does, then send and receive real SRTP. No sockets, no sleeps:
//! negotiation and media together, every run the same.
use std::time::Duration;

use videoroom::rtc::ids::MediaKind;
use videoroom::rtc::media_event::MediaEventOut;

#[path = "kit/media_world.rs"]
mod media_world;

use media_world::*;

/// `n` publishing browsers (alternately Chrome- and Firefox-flavoured) in one engine room, run
/// until every round has settled.
fn room_of(n: usize) -> World {
    let mut w = World::with_engines(1);
    for i in 0..n {
        let flavor = if i % 2 == 0 {
            Flavor::Chrome
        } else {
            Flavor::Firefox
        };
        w.add_browser(0, flavor, true);
        w.run(Duration::from_millis(300));
    }
    w.run(Duration::from_secs(1));
    w
}

/// Where each browser's publishers' sequence numbers stand now: [browser][kind].
fn marks(w: &World) -> Vec<[u64; 2]> {
    (0..w.browsers.len())
        .map(|i| {
            if w.browsers[i].send.is_empty() {
                return [0, 0];
            }
            [
                w.sent_seq(i, MediaKind::Audio),
                w.sent_seq(i, MediaKind::Video),
            ]
        })
        .collect()
}

/// Every browser in `subscribers` received at least 95% of what each publisher in `publishers`
/// sent since `from`, with continuous sequence numbers.
fn assert_everyone_receives(
    w: &World,
    from: &[[u64; 2]],
    publishers: &[usize],
    subscribers: &[usize],
) {
    for &sub in subscribers {
        for &publ in publishers.iter().filter(|p| **p != sub) {
            for (k, kind) in [MediaKind::Audio, MediaKind::Video].into_iter().enumerate() {
                let got = w.got_from(sub, publ, kind);
                let what = format!("{kind} of browser {publ} at browser {sub}");
                let sent = w.sent_seq(publ, kind) - from[publ][k];
                assert!(sent >= 40, "{what}: the publisher sent only {sent} packets");
                assert_received(&got, from[publ][k], w.sent_seq(publ, kind), &what);
            }
        }
    }
}

/// Indexes of the events that match.
fn positions(events: &[MediaEventOut], matches: impl Fn(&MediaEventOut) -> bool) -> Vec<usize> {
    (0..events.len()).filter(|&i| matches(&events[i])).collect()
}

fn kinds(events: &[MediaEventOut]) -> Vec<&'static str> {
    events.iter().map(MediaEventOut::kind).collect()
}

#[test]
fn three_browsers_negotiate_by_media_events_and_each_receives_the_others_media_gapless() {
    let mut w = room_of(3);
    for i in 0..3 {
        assert!(connected(&w, i), "browser {i} connected");
    }
    let from = marks(&w);
    w.run(Duration::from_secs(3));
    assert_everyone_receives(&w, &from, &[0, 1, 2], &[0, 1, 2]);
    assert_eq!(w.engine(0).member_count(), 3);
    // The first browser saw the room fill: accepted alone, then each newcomer once, before
    // that newcomer's tracks (`peerJoined` goes to everyone, the joiner too, as in the original).
    let first = &w.browsers[0].media_events;
    assert_eq!(first[0].kind(), "peerAccepted");
    for newcomer in [1, 2] {
        let id = w.browsers[newcomer].peer.to_string();
        let joined: Vec<usize> = positions(
            first,
            |e| matches!(e, MediaEventOut::PeerJoined(d) if d.peer.id == id),
        );
        let tracks: Vec<usize> = positions(
            first,
            |e| matches!(e, MediaEventOut::TracksAdded(d) if d.peer_id == id),
        );
        assert_eq!(
            joined.len(),
            1,
            "peerJoined of browser {newcomer}: {:?}",
            kinds(first)
        );
        assert!(
            !tracks.is_empty() && joined[0] < tracks[0],
            "tracksAdded of browser {newcomer} follows its peerJoined: {:?}",
            kinds(first)
        );
    }
    for (i, b) in w.browsers.iter().enumerate() {
        let offers = kinds(&b.media_events)
            .iter()
            .filter(|k| **k == "offerData")
            .count();
        let answers = kinds(&b.media_events)
            .iter()
            .filter(|k| **k == "sdpAnswer")
            .count();
        assert_eq!(
            offers, answers,
            "browser {i}: every offerData round was answered"
        );
        assert!(b.pending.is_none(), "browser {i} waits for no answer");
    }
}

#[test]
fn a_receive_only_browser_joining_late_gets_every_track_and_the_publishers_keep_flowing() {
    let mut w = room_of(2);
    let viewer = w.add_browser(0, Flavor::Firefox, false);
    w.run(Duration::from_secs(1));
    assert!(connected(&w, viewer));
    let from = marks(&w);
    w.run(Duration::from_secs(2));
    assert_everyone_receives(&w, &from, &[0, 1], &[0, 1, viewer]);
    let accepted = &w.browsers[viewer].media_events[0];
    let MediaEventOut::PeerAccepted(accepted) = accepted else {
        panic!("first event of the viewer: {accepted:?}");
    };
    assert_eq!(accepted.peers_in_room.len(), 2);
    assert!(
        accepted
            .peers_in_room
            .iter()
            .all(|p| p.track_id_to_metadata.len() == 2),
        "the viewer learns both publishers' two tracks on joining"
    );
}

#[test]
fn a_leaving_browser_is_announced_its_tracks_stop_and_the_others_keep_receiving_each_other() {
    let mut w = room_of(3);
    let leaver = 2;
    let leaver_peer = w.browsers[leaver].peer;
    w.leave(leaver);
    w.run(Duration::from_millis(500));
    assert_eq!(w.removed, vec![leaver_peer]);
    assert_eq!(w.engine(0).member_count(), 2);
    for i in [0, 1] {
        let events = &w.browsers[i].media_events;
        assert!(
            events.iter().any(|e| matches!(e,
                MediaEventOut::PeerLeft(d) if d.peer_id == leaver_peer.to_string())),
            "browser {i} told that the leaver left: {:?}",
            kinds(events)
        );
    }
    let from = marks(&w);
    let before: Vec<usize> = [0, 1]
        .iter()
        .map(|&i| w.got_from(i, leaver, MediaKind::Video).len())
        .collect();
    w.run(Duration::from_secs(2));
    assert_everyone_receives(&w, &from, &[0, 1], &[0, 1]);
    for (n, &i) in [0, 1].iter().enumerate() {
        assert_eq!(
            w.got_from(i, leaver, MediaKind::Video).len(),
            before[n],
            "nothing of the leaver reaches browser {i} after it left"
        );
    }
}

#[test]
fn the_driver_publishes_one_ufrag_per_peer_and_withdraws_a_leavers() {
    let mut w = room_of(3);
    assert_eq!(w.rooms[0].ufrags.len(), 3, "{:?}", w.rooms[0].ufrags);
    assert_eq!(w.rooms[0].ufrags, w.sfu(0).ice_ufrags());
    w.leave(1);
    w.run(Duration::from_millis(100));
    // The two who stay may have restarted ICE (new ufrags); the leaver's is gone either way.
    assert_eq!(w.rooms[0].ufrags.len(), 2, "{:?}", w.rooms[0].ufrags);
    assert_eq!(w.rooms[0].ufrags, w.sfu(0).ice_ufrags());
}

#[test]
fn two_engine_rooms_never_cross_media_or_media_events() {
    let mut w = World::with_engines(2);
    for room in [0, 1, 0, 1] {
        w.add_browser(room, Flavor::Chrome, true);
        w.run(Duration::from_millis(300));
    }
    w.run(Duration::from_secs(2));
    for (sub, other) in [(0, 1), (0, 3), (1, 0), (1, 2), (2, 1), (3, 0)] {
        assert!(
            w.got_from(sub, other, MediaKind::Video).is_empty(),
            "browser {sub} received media of browser {other} from another room"
        );
    }
    // Browsers 0 and 2 share room 0, 1 and 3 room 1: nobody hears of the other room's peers.
    for (i, strangers) in [(0, [1, 3]), (1, [0, 2]), (2, [1, 3]), (3, [0, 2])] {
        let ids: Vec<String> = strangers
            .iter()
            .map(|&j| w.browsers[j].peer.to_string())
            .collect();
        let heard = positions(&w.browsers[i].media_events, |e| {
            matches!(e, MediaEventOut::PeerJoined(d) if ids.contains(&d.peer.id))
                || matches!(e, MediaEventOut::TracksAdded(d) if ids.contains(&d.peer_id))
        });
        assert!(
            heard.is_empty(),
            "browser {i} heard of another room's peers"
        );
    }
    let from = marks(&w);
    w.run(Duration::from_secs(1));
    assert_everyone_receives(&w, &from, &[0, 2], &[0, 2]);
    assert_everyone_receives(&w, &from, &[1, 3], &[1, 3]);
}
