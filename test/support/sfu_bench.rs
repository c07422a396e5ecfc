//! Forwarding cost of the SFU behind the product's media driver, in process and in virtual
//! time: one publisher (Opus 50 packets/s of 120 bytes + VP8 60 packets/s of 1100 bytes) and N
//! subscribers, str0m peers of the tests' media world (`test/kit/media_world.rs`) passing
//! datagrams in memory. Only the time spent inside the room's driver is counted (the peers' own
//! SRTP work is not), and reported per forwarded packet; several subscriber counts in one run
//! show whether the cost per packet stays flat as the room grows.
//!
//! `cargo run --release --example sfu_bench -- [subscribers=20[,50,…]] [seconds=10]`
use std::time::Duration;

#[path = "../kit/media_world.rs"]
mod media_world;

use media_world::{Flavor, World, connected};

/// Measures one room of `subscribers` receivers for `seconds` of virtual time.
fn measure(subscribers: usize, seconds: u64) {
    let mut w = World::new(1);
    w.video_payload = 1100;
    let publisher = w.add_browser(0, Flavor::Chrome, true);
    w.negotiate(publisher, &[]);
    let tracks = w.tracks_of(publisher, true);
    for n in 0..subscribers {
        let flavor = if n % 2 == 0 {
            Flavor::Chrome
        } else {
            Flavor::Firefox
        };
        let sub = w.add_browser(0, flavor, false);
        w.negotiate(sub, &tracks);
    }
    w.run(Duration::from_secs(1));
    let connected_peers = (0..w.browsers.len()).filter(|&i| connected(&w, i)).count();
    let (rtp_in, rtp_out) = (w.sfu(0).stats().rtp_in, w.sfu(0).stats().rtp_out);
    w.room_time = Duration::ZERO;
    w.run(Duration::from_secs(seconds));
    let stats = w.sfu(0).stats();
    let (received, forwarded) = (stats.rtp_in - rtp_in, stats.rtp_out - rtp_out);
    let cpu = w.room_time.as_secs_f64();
    println!(
        "subscribers {subscribers:>4}  connected {connected_peers:>4}  virtual {seconds} s  \
         packets in {received:>6}  forwarded {forwarded:>8}  room cpu {cpu:.3} s  \
         {:.2} us per forwarded packet  (~{:.0} packets per cpu-second)",
        cpu * 1e6 / forwarded.max(1) as f64,
        forwarded as f64 / cpu.max(1e-9)
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let counts: Vec<usize> = args
        .next()
        .unwrap_or_else(|| "20".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    for subscribers in counts {
        measure(subscribers, seconds);
    }
}
