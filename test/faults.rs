//! Fault tests against the real server binary, each bounded:
//! - a client killed (SIGKILL of a child process) or cut off (WebSocket closed) in the middle
//!   of a negotiation leaves the room consistent: the others get `peerLeft` for it exactly once,
//!   none of its tracks is left published or forwarded, and a newcomer joins and receives the
//!   others' media;
//! - a panic injected into one room closes only that room (its peers get an `error` event and
//!   `phx_close`), they can rejoin a fresh room, and another room's media flows on throughout;
//! - a room's media loop stalled on purpose makes `/healthz` fail while `/healthcheck` answers.
//!
//! The faults are the server's test-only hooks (`VIDEOROOM_FAULT_INJECTION=1`, the
//! `faultInjection` media event) and real process kills. The killed client is this very test
//! binary started again as a child process running the ignored helper at the bottom.

#[allow(dead_code)]
mod peer;
#[allow(dead_code)]
#[path = "kit/server_process.rs"]
mod server_process;

use peer::client::{HeadlessPeer, Hold, Observations, PeerOptions};
use peer::scenario::{
    LONG, answer_directions, assert_clean, assert_delivery, join_accepted_at, packets_from,
    wait_receiving,
};
use serde_json::json;
use server_process::ServerProcess;
use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};

const SERVER: &str = env!("CARGO_BIN_EXE_videoroom");

/// The environment variable that hands the child-process helper its job:
/// `<socket url> <room> <before-offer|before-answer>`.
const CHILD_JOB: &str = "VIDEOROOM_FAULTS_CHILD_PEER";

async fn bounded(test: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(Duration::from_secs(120), test)
        .await
        .expect("scenario timed out");
}

/// Asserts the published-track, subscription and peer gauges all at once.
async fn gauges_become(server: &ServerProcess, peers: f64, tracks: f64, subscriptions: f64) {
    server.metric_becomes("videoroom_peers", peers).await;
    server
        .metric_becomes("videoroom_published_tracks", tracks)
        .await;
    server
        .metric_becomes("videoroom_subscriptions", subscriptions)
        .await;
}

/// How many `kind` events `o` got that name `peer_id` (as `peerId` or `peer.id`).
fn events_about(o: &Observations, kind: &str, peer_id: &str) -> usize {
    o.events_of(kind)
        .filter(|e| e.data["peerId"] == peer_id || e.data["peer"]["id"] == peer_id)
        .count()
}

/// A headless peer in a child process (this test binary running the helper below), frozen at
/// its hold point until it is killed.
struct ChildPeer {
    child: tokio::process::Child,
    peer_id: String,
}

impl ChildPeer {
    /// Starts the child, which joins `room` and freezes at `hold`; returns once it says so.
    async fn spawn(socket_url: &str, room: &str, hold: Hold) -> ChildPeer {
        let hold = match hold {
            Hold::BeforeOffer => "before-offer",
            Hold::BeforeAnswer => "before-answer",
            Hold::Never => unreachable!("a child peer always holds"),
        };
        let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "helper_a_peer_in_its_own_process_freezes_mid_negotiation_until_it_is_killed",
                "--ignored",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD_JOB, format!("{socket_url} {room} {hold}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("the child peer starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let peer_id = tokio::time::timeout(LONG, async {
            while let Some(line) = lines.next_line().await.unwrap() {
                // libtest's "test … ... " has no line break before the helper's output.
                if let Some((_, id)) = line.split_once("HELD ") {
                    return id.trim().to_owned();
                }
            }
            panic!("the child peer ended before its hold point");
        })
        .await
        .expect("the child peer reaches its hold point");
        ChildPeer { child, peer_id }
    }

    /// SIGKILL: the kernel closes its sockets; no close frame, no `leave`, no goodbye at all.
    async fn kill(mut self) {
        self.child.kill().await.expect("SIGKILL the child peer");
    }
}

/// How the doomed peer goes away.
#[derive(Debug, Clone, Copy)]
enum Departure {
    /// Its process is SIGKILLed at the hold point.
    Killed(Hold),
    /// Its WebSocket is closed (with a close frame, without `leave`) at the hold point.
    SocketClosed(Hold),
}

/// Two publishers negotiate and exchange media, a third peer freezes at a point of its
/// negotiation and departs (`departure`); then the room must be exactly as if it never came,
/// and a newcomer must get everything.
async fn a_peer_departing_mid_negotiation(departure: Departure) {
    let server = ServerProcess::start(SERVER, &["--room-grace", "0"], &[]);
    let url = server.socket_url();
    let alice = join_accepted_at(&url, "mid", PeerOptions::new("alice")).await;
    let bob = join_accepted_at(&url, "mid", PeerOptions::new("bob")).await;
    wait_receiving(&alice, &[&bob]).await;
    wait_receiving(&bob, &[&alice]).await;
    gauges_become(&server, 2.0, 4.0, 4.0).await;

    let hold = match departure {
        Departure::Killed(hold) | Departure::SocketClosed(hold) => hold,
    };
    let (doomed_id, child, in_process) = match departure {
        Departure::Killed(hold) => {
            let child = ChildPeer::spawn(&url, "mid", hold).await;
            (child.peer_id.clone(), Some(child), None)
        }
        Departure::SocketClosed(hold) => {
            let peer =
                join_accepted_at(&url, "mid", PeerOptions::new("doomed").holding(hold)).await;
            peer.wait_for("the hold point", LONG, |o| o.held)
                .await
                .unwrap();
            (peer.peer_id().unwrap(), None, Some(peer))
        }
    };
    for p in [&alice, &bob] {
        p.wait_for("peerJoined of the doomed peer", LONG, |o| {
            o.peers.contains_key(&doomed_id)
        })
        .await
        .unwrap();
    }
    server.metric_becomes("videoroom_peers", 3.0).await;
    if hold == Hold::BeforeOffer {
        // It never offered: nothing of it is published, it receives nothing.
        server
            .metric_becomes("videoroom_published_tracks", 4.0)
            .await;
        server.metric_becomes("videoroom_subscriptions", 4.0).await;
    } else {
        server
            .metric_becomes("videoroom_published_tracks", 6.0)
            .await;
        // Its offer was answered (the answer never applied): its tracks are published and
        // announced, so the others are negotiating to receive them when it goes.
        for p in [&alice, &bob] {
            p.wait_for("tracksAdded of the doomed peer", LONG, |o| {
                o.peers[&doomed_id].track_id_to_metadata.len() == 2
            })
            .await
            .unwrap();
        }
    }
    let doomed_tracks: Vec<String> = alice.observe(|o| {
        o.peers[&doomed_id]
            .track_id_to_metadata
            .keys()
            .cloned()
            .collect()
    });

    let gone = Instant::now();
    match (child, &in_process) {
        (Some(child), _) => child.kill().await,
        (None, Some(peer)) => peer.close_socket().await.unwrap(),
        (None, None) => unreachable!(),
    }
    for p in [&alice, &bob] {
        p.wait_for("peerLeft of the doomed peer", LONG, |o| {
            events_about(o, "peerLeft", &doomed_id) > 0
        })
        .await
        .unwrap();
    }
    eprintln!("{departure:?}: peerLeft after {:?}", gone.elapsed());
    // Removed because its socket ended, not later because its ICE consent ran out.
    let failed = format!("peer={doomed_id} connection failed");
    assert!(
        !server.log().contains(&failed),
        "{failed}:\n{}",
        server.log()
    );
    gauges_become(&server, 2.0, 4.0, 4.0).await;

    // A newcomer: the room still works and shows nothing of the doomed peer.
    let carol = join_accepted_at(&url, "mid", PeerOptions::new("carol")).await;
    let others: BTreeSet<String> = [&alice, &bob].map(|p| p.peer_id().unwrap()).into();
    // offerData follows peerAccepted in a later frame: wait for it rather than race it.
    carol
        .wait_for("carol's first offerData", LONG, |o| {
            o.events_of("offerData").next().is_some()
        })
        .await
        .unwrap();
    carol.observe(|o| {
        let in_room: BTreeSet<String> = o.peers.keys().cloned().collect();
        assert_eq!(in_room, others, "carol's peersInRoom");
        let first = o.events_of("offerData").next().expect("an offerData");
        assert_eq!(
            (first.data["audio"].as_u64(), first.data["video"].as_u64()),
            (Some(2), Some(2)),
            "carol is offered exactly alice's and bob's tracks"
        );
    });
    wait_receiving(&carol, &[&alice, &bob]).await;
    wait_receiving(&alice, &[&bob, &carol]).await;
    wait_receiving(&bob, &[&alice, &carol]).await;
    gauges_become(&server, 3.0, 6.0, 12.0).await;

    for p in [&alice, &bob] {
        // Their last answer (after carol's tracks came) keeps none of the doomed tracks active.
        p.observe(|o| {
            assert_eq!(
                events_about(o, "peerLeft", &doomed_id),
                1,
                "{}: peerLeft once",
                p.name
            );
            assert!(!o.peers.contains_key(&doomed_id));
            for t in &doomed_tracks {
                assert!(o.removed.contains(t), "{}: track {t} not removed", p.name);
            }
            let left_at = o
                .events_of("peerLeft")
                .find(|e| e.data["peerId"] == doomed_id.as_str())
                .unwrap()
                .at;
            let late = o
                .events_of("tracksAdded")
                .filter(|e| e.at > left_at && e.data["peerId"] == doomed_id.as_str())
                .count();
            assert_eq!(late, 0, "{}: tracksAdded of the departed peer", p.name);
            let active: Vec<_> = answer_directions(o, &doomed_tracks)
                .into_iter()
                .filter(|(_, d)| d != "inactive")
                .collect();
            assert!(
                active.is_empty(),
                "{}: departed tracks still negotiated {active:?}",
                p.name
            );
        });
    }
    carol.observe(|o| {
        let about: usize = ["peerJoined", "peerLeft", "tracksAdded", "tracksRemoved"]
            .iter()
            .map(|k| events_about(o, k, &doomed_id))
            .sum();
        assert_eq!(about, 0, "carol heard of the departed peer");
    });
    assert_clean(&[&alice, &bob, &carol]);
    assert!(
        !server.log().contains("panicked"),
        "the server panicked:\n{}",
        server.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_killed_after_joining_before_its_offer_leaves_once_and_the_room_keeps_working() {
    bounded(a_peer_departing_mid_negotiation(Departure::Killed(
        Hold::BeforeOffer,
    )))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_killed_between_its_offer_and_the_answer_leaves_no_orphaned_track() {
    bounded(a_peer_departing_mid_negotiation(Departure::Killed(
        Hold::BeforeAnswer,
    )))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_closed_between_offer_and_answer_leaves_no_orphaned_track() {
    bounded(a_peer_departing_mid_negotiation(Departure::SocketClosed(
        Hold::BeforeAnswer,
    )))
    .await;
}

/// Two peers in `room`, each receiving the other.
async fn pair(url: &str, room: &str) -> (HeadlessPeer, HeadlessPeer) {
    let a = join_accepted_at(url, room, PeerOptions::new(&format!("{room}-1"))).await;
    let b = join_accepted_at(url, room, PeerOptions::new(&format!("{room}-2"))).await;
    wait_receiving(&a, &[&b]).await;
    wait_receiving(&b, &[&a]).await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_one_room_closes_only_that_room_its_peers_can_rejoin_and_other_rooms_keep_their_media()
 {
    bounded(async {
        let mut server = ServerProcess::start(
            SERVER,
            &["--room-grace", "0"],
            &[("VIDEOROOM_FAULT_INJECTION", "1")],
        );
        let url = server.socket_url();
        let (a1, a2) = pair(&url, "crashing").await;
        let (b1, b2) = pair(&url, "steady").await;
        server.metric_becomes("videoroom_rooms", 2.0).await;
        gauges_become(&server, 4.0, 8.0, 8.0).await;

        let from = Instant::now();
        let before = [packets_from(&b1, &b2), packets_from(&b2, &b1)];
        a1.push_media_event(json!({"type": "faultInjection", "data": {"fault": "panic"}}))
            .await
            .unwrap();
        for a in [&a1, &a2] {
            a.wait_for("the room's error and the channel's close", LONG, |o| {
                o.events_of("error")
                    .any(|e| e.data["message"] == "room crashed")
                    && o.channel_ends.iter().any(|e| e == "phx_close")
            })
            .await
            .unwrap();
            a.observe(|o| {
                // phx_close, not phx_error: phoenix.js would silently rejoin a channel that
                // errored, into a fresh room that never got this client's `join`.
                assert_eq!(o.channel_ends, ["phx_close"], "{}", a.name);
            });
        }
        // The crashed room is gone with everything in it; the other one is untouched.
        server.metric_becomes("videoroom_rooms", 1.0).await;
        gauges_become(&server, 2.0, 4.0, 4.0).await;
        assert_eq!(
            server
                .metric("videoroom_errors_total{kind=\"room_crashed\"}")
                .await,
            1.0
        );
        assert_eq!(server.get("/healthz").await.map(|r| r.0), Some(200));
        assert_eq!(server.get("/healthcheck").await.map(|r| r.0), Some(200));
        assert!(server.is_running(), "the server process is up");

        // The crashed room's people come back: a fresh room, media again.
        drop((a1, a2));
        let (c1, c2) = pair(&url, "crashing").await;
        for c in [&c1, &c2] {
            c.observe(|o| {
                assert!(o.events_of("error").next().is_none(), "{}", c.name);
            });
        }
        server.metric_becomes("videoroom_rooms", 2.0).await;
        gauges_become(&server, 4.0, 8.0, 8.0).await;

        // The steady room's media flowed throughout, without a gap.
        let after = [packets_from(&b1, &b2), packets_from(&b2, &b1)];
        for (was, now) in before.iter().zip(&after) {
            assert!(
                was.iter().zip(now).all(|(w, n)| n > w),
                "steady room packets {was:?} -> {now:?}"
            );
        }
        let until = Instant::now() - Duration::from_millis(500);
        assert_delivery(&b1, &b2, from, until, 95);
        assert_delivery(&b2, &b1, from, until, 95);
        assert_clean(&[&b1, &b2, &c1, &c2]);

        // One report of the panic, not a stream of them.
        let log = server.log();
        let count = |needle: &str| log.matches(needle).count();
        assert_eq!(count("panicked at"), 1, "panic reports:\n{log}");
        assert_eq!(count("media core crashed: injected fault"), 1, "{log}");
        assert!(server.is_running(), "the server process is up");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_room_media_loop_makes_healthz_fail_while_healthcheck_answers() {
    bounded(async {
        let server = ServerProcess::start(
            SERVER,
            &["--stall-timeout", "1"],
            &[("VIDEOROOM_FAULT_INJECTION", "1")],
        );
        let url = server.socket_url();
        let stuck = join_accepted_at(&url, "stuck", PeerOptions::receive_only("stuck")).await;
        server.metric_becomes("videoroom_watched_loops", 2.0).await;
        // An idle room beats: past the stall time, liveness still holds.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(server.get("/healthz").await.map(|r| r.0), Some(200));

        stuck
            .push_media_event(json!({"type": "faultInjection", "data": {"fault": "stall"}}))
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        let body = loop {
            match server.get("/healthz").await {
                Some((200, _)) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Some((503, body)) => break body,
                other => panic!("/healthz after the stall: {other:?}"),
            }
        };
        assert!(
            body.contains("room=stuck"),
            "/healthz names the loop: {body}"
        );
        assert_eq!(server.get("/healthcheck").await.map(|r| r.0), Some(200));
        assert_eq!(server.metric("videoroom_stalled_loops").await, 1.0);
    })
    .await;
}

/// Not a test of its own: [`ChildPeer::spawn`] runs it in a child process (this binary again,
/// `--ignored --exact`), where it joins as told by [`CHILD_JOB`], freezes at the hold point,
/// says `HELD <peer id>` on stdout and waits to be killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a helper the fault tests run in a child process and kill"]
async fn helper_a_peer_in_its_own_process_freezes_mid_negotiation_until_it_is_killed() {
    let job = std::env::var(CHILD_JOB).expect("started by ChildPeer::spawn");
    let [url, room, hold]: [&str; 3] = job
        .split(' ')
        .collect::<Vec<_>>()
        .try_into()
        .expect("<url> <room> <hold>");
    let hold = match hold {
        "before-offer" => Hold::BeforeOffer,
        "before-answer" => Hold::BeforeAnswer,
        other => panic!("unknown hold point {other}"),
    };
    let peer = join_accepted_at(url, room, PeerOptions::new("doomed").holding(hold)).await;
    peer.wait_for("the hold point", LONG, |o| o.held)
        .await
        .unwrap();
    println!("HELD {}", peer.peer_id().unwrap());
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    // Killed long before this; bounded in case the parent died first.
    tokio::time::sleep(Duration::from_secs(120)).await;
}
