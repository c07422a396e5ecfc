//! The frame of the end-to-end scenarios with headless peers (`e2e_media.rs`, `e2e_rooms.rs`):
//! a fresh in-process server per scenario under a time bound, and peers joined one after
//! another. Included by `#[path]` next to `mod peer;` (it uses the headless peer).

use crate::peer::client::{HeadlessPeer, PeerOptions};
use crate::peer::scenario::{join_accepted, wait_receiving};
use crate::peer::server::TestServer;
use std::time::Duration;

/// Runs `scenario` against a fresh server whose rooms admit at most `max_peers` (None: the
/// default), then stops the server; all within `bound`, so a hung server fails the test
/// instead of the run.
pub async fn on_fresh_server(
    bound: Duration,
    max_peers: Option<usize>,
    scenario: impl AsyncFnOnce(&TestServer),
) {
    let run = async {
        let server = TestServer::start_with(max_peers).await;
        scenario(&server).await;
        server.stop().await;
    };
    tokio::time::timeout(bound, run)
        .await
        .expect("scenario timed out");
}

/// Joins `room` once per entry of `options`, in order, each accepted (`peerAccepted`) before
/// the next one joins.
pub async fn join_in_turn<const N: usize>(
    server: &TestServer,
    room: &str,
    options: [PeerOptions; N],
) -> [HeadlessPeer; N] {
    let mut peers = Vec::with_capacity(N);
    for o in options {
        peers.push(join_accepted(server, room, o).await);
    }
    match peers.try_into() {
        Ok(peers) => peers,
        Err(_) => unreachable!("one peer per option"),
    }
}

/// Peers `a` and `b` joined to `room` in turn, each receiving the other's media.
pub async fn receiving_pair(server: &TestServer, room: &str) -> [HeadlessPeer; 2] {
    let [a, b] = join_in_turn(server, room, ["a", "b"].map(PeerOptions::new)).await;
    wait_receiving(&a, &[&b]).await;
    wait_receiving(&b, &[&a]).await;
    [a, b]
}
