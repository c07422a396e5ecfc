//! End-to-end: room lifecycle and admission with headless peers against the real server.

#[allow(dead_code)]
mod peer;

#[path = "kit/e2e_scenario.rs"]
mod e2e_scenario;

use e2e_scenario::{join_in_turn, on_fresh_server, receiving_pair};
use peer::client::{HeadlessPeer, PeerOptions};
use peer::scenario::{LONG, assert_clean, join_accepted, wait_receiving};
use std::time::Duration;

/// Every scenario runs under this bound, so a hung server fails the test instead of the run.
const BOUND: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_starts_afresh_after_its_last_peer_left() {
    on_fresh_server(BOUND, None, async |server| {
        let [a, b] = receiving_pair(server, "ephemeral").await;
        assert_eq!(server.room_ids(), ["ephemeral"]);
        let old_ids = [a.peer_id().unwrap(), b.peer_id().unwrap()];
        // One leaves cleanly, the other's tab dies.
        a.leave().await.unwrap();
        b.drop_socket().await.unwrap();
        // Past the room's grace period (0.5 s in tests) the room is gone from the registry...
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !server.room_ids().is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "room still registered: {:?}",
                server.room_ids()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // ...and a newcomer starts a fresh room with nobody in it.
        let c = join_accepted(server, "ephemeral", PeerOptions::new("c")).await;
        c.observe(|o| {
            let accepted = o.events_of("peerAccepted").next().unwrap();
            assert_eq!(
                accepted.data["peersInRoom"],
                serde_json::json!([]),
                "stale peers survived"
            );
            for event in &o.events {
                for id in &old_ids {
                    assert!(!event.data.to_string().contains(id.as_str()));
                }
            }
        });
        assert_clean(&[&c]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_beyond_the_maximum_gets_peer_denied_and_the_room_keeps_serving() {
    on_fresh_server(BOUND, Some(2), async |server| {
        let [a, b] = join_in_turn(server, "full", ["a", "b"].map(PeerOptions::new)).await;
        let c = HeadlessPeer::join(&server.socket_url(), "full", PeerOptions::new("c"))
            .await
            .expect("the channel join itself succeeds");
        c.wait_for("peerDenied", LONG, |o| o.denied.is_some())
            .await
            .unwrap();
        c.observe(|o| {
            assert!(o.peer_id.is_none(), "a denied peer is never accepted");
            assert!(o.denied.as_ref().unwrap().is_object(), "peerDenied data is a map");
            assert!(o.offers.is_empty() && o.remote.is_empty());
        });
        let c_events = c.observe(|o| o.events.len());
        // The members never hear of the denied peer and keep exchanging media.
        wait_receiving(&a, &[&b]).await;
        wait_receiving(&b, &[&a]).await;
        for member in [&a, &b] {
            member.observe(|o| {
                assert_eq!(o.peers.len(), 1, "{} knows {:?}", member.name, o.peers.keys());
                assert_eq!(o.events_of("peerJoined").filter(|e| e.data["peer"]["id"] != o.peer_id.as_deref().unwrap_or_default()).count(), usize::from(member.name == "a"));
            });
        }
        assert_eq!(c.observe(|o| o.events.len()), c_events, "the denied peer got more events");
        assert_clean(&[&a, &b]);
    })
    .await;
}
