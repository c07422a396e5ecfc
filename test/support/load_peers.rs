//! Load generator: headless peers (audio + video) in several rooms against an in-process server,
//! printing what each subscriber received. Figures only; it asserts nothing.
//!
//! `cargo run --release --example load_peers -- [rooms] [peers_per_room] [seconds]`
//! (defaults 2 rooms × 3 peers × 10 s).

#[allow(dead_code)]
#[path = "../peer/mod.rs"]
mod peer;

use peer::client::PeerOptions;
use peer::media;
use peer::scenario::{active_tracks, join_accepted, wait_receiving};
use peer::server::TestServer;
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let rooms = args.first().copied().unwrap_or(2);
    let per_room = args.get(1).copied().unwrap_or(3);
    let seconds = args.get(2).copied().unwrap_or(10) as u64;
    let server = TestServer::start().await;
    let mut all = Vec::new();
    let setup = Instant::now();
    for r in 0..rooms {
        let mut room = Vec::new();
        for p in 0..per_room {
            room.push(
                join_accepted(
                    &server,
                    &format!("load{r}"),
                    // Like the web client: a lost socket is reconnected and the peer resumed.
                    PeerOptions::new(&format!("r{r}p{p}"))
                        .reconnecting(std::time::Duration::from_secs(60)),
                )
                .await,
            );
        }
        all.push(room);
    }
    for room in &all {
        for sub in room {
            let pubs: Vec<_> = room.iter().filter(|p| p.name != sub.name).collect();
            wait_receiving(sub, &pubs).await;
        }
    }
    println!(
        "{} peers in {rooms} rooms connected in {:?}",
        rooms * per_room,
        setup.elapsed()
    );
    let from = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let until = Instant::now() - Duration::from_millis(500);
    let (mut expected, mut delivered, mut missing) = (0usize, 0usize, 0u64);
    for room in &all {
        for sub in room {
            for publisher in room.iter().filter(|p| p.name != sub.name) {
                for sent in active_tracks(publisher) {
                    sub.observe(|o| {
                        if let Some(received) = o.remote.get(&sent.track_id) {
                            let (e, d) = media::delivery(&sent, received, from, until);
                            expected += e;
                            delivered += d;
                            missing += received.missing_since(from);
                        }
                    });
                }
            }
        }
    }
    let secs = (until - from).as_secs_f64();
    println!(
        "forwarded packets: {delivered}/{expected} delivered ({:.2}%), {:.0} packets/s received in total, {missing} sequence numbers missing",
        100.0 * delivered as f64 / expected.max(1) as f64,
        delivered as f64 / secs
    );
    server.stop().await;
}
