//! Memory per connection of the real `videoroom` binary: opens N WebSockets (default 20,000 —
//! this machine allows about 20,000 descriptors per process), joins a room channel on each
//! (`room:mem-<i / 100>`, so 100 sockets per room and no media), and prints the server's RSS
//! (`VmRSS` of `/proc/<pid>/status`) before, after the upgrades and after the joins, per socket.
//!
//! `cargo run --release --example socket_memory -- [N]` (builds and runs the binary next to the
//! example, i.e. `target/<profile>/videoroom`). Traffic stays on loopback. The client side is
//! raw TCP with hand-written frames, so the client's own memory stays small.

use std::time::{Duration, Instant};

#[allow(dead_code)] // each benchmark uses part of it
#[path = "raw_ws.rs"]
mod raw_ws;
use raw_ws::{join, open};

#[allow(dead_code)]
#[path = "../kit/server_process.rs"]
mod server_process;
use server_process::ServerProcess;

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let binary = ServerProcess::binary_beside_example();
    let limit = (n + 100).to_string();
    let binary_text = binary.to_string_lossy();
    let server = ServerProcess::start(
        &binary_text,
        &[
            "--max-connections",
            &limit,
            "--max-connections-per-ip",
            &limit,
            "--idle-timeout",
            "3600",
        ],
        &[("RUST_LOG", "error")],
    );
    let addr = server.http;
    let rss_kib = || (server.rss_mib() * 1024.0) as u64;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let base = rss_kib();

    let started = Instant::now();
    let mut sockets = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(200) {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in chunk {
            tasks.spawn(open(addr));
        }
        while let Some(r) = tasks.join_next().await {
            match r.expect("task") {
                Ok(tcp) => sockets.push(tcp),
                Err(e) => panic!("upgrade {} failed: {e}", sockets.len()),
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let upgraded = rss_kib();
    let upgrade_time = started.elapsed();

    let started = Instant::now();
    let mut joined = Vec::with_capacity(n);
    let mut index = 0;
    while !sockets.is_empty() {
        let mut tasks = tokio::task::JoinSet::new();
        for mut tcp in sockets.drain(..sockets.len().min(200)) {
            let room = index / 100;
            index += 1;
            tasks.spawn(async move { join(&mut tcp, room).await.map(|()| tcp) });
        }
        while let Some(r) = tasks.join_next().await {
            joined.push(r.expect("task").expect("join"));
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after_join = rss_kib();

    let per = |kib: u64| kib as f64 * 1024.0 / n as f64 / 1024.0;
    println!("socket_memory: {n} WebSockets against {}", binary.display());
    println!("  server RSS idle:            {base:>9} KiB");
    println!(
        "  after {n} upgrades:      {upgraded:>9} KiB  ({:.1} KiB per bare WebSocket, {:.1?})",
        per(upgraded.saturating_sub(base)),
        upgrade_time
    );
    println!(
        "  after {n} joins:         {after_join:>9} KiB  ({:.1} KiB per joined WebSocket, {:.1?})",
        per(after_join.saturating_sub(base)),
        started.elapsed()
    );
    drop(joined);
}
