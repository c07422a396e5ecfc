//! Signalling figures of the real `videoroom` binary, no media (BENCHMARKS.md, "Signalling"):
//!
//! 1. **join latency** at a steady rate: every `1/rate` s a new WebSocket connects, joins
//!    `room:join-<i/10>` (rooms of 10) and pushes the tutorial client's `join` media event; the
//!    latency is `phx_join` sent → `peerAccepted` received (p50/p95/p99), and connect → accepted
//!    is printed beside it. The joined sockets stay open through phase 2.
//! 2. **media-event round trips**: `sockets` peers, each alone in its room, push
//!    `updatePeerMetadata` and wait for the `peerUpdated` the room broadcasts back (through the
//!    channel, the room actor and the engine, as every media event), in a closed loop for
//!    `seconds`; printed as round trips per second and per second of server CPU (utime + stime
//!    from `/proc/<pid>/stat`), i.e. per core, each round trip being two signalling messages.
//!
//! `cargo run --release --example signalling_bench -- [join_rate=1000] [join_seconds=3]
//! [sockets=200] [seconds=5]`; `SERVER_CPUS=0` pins the server's threads to CPU 0 (`taskset`),
//! run the bench itself on another (`taskset -c 1 …`). Runs `target/<profile>/videoroom` next to
//! the example. Nothing is asserted: it prints figures. Traffic stays on loopback.

use std::time::{Duration, Instant};

#[allow(dead_code)]
#[path = "../kit/server_process.rs"]
mod server_process;
use server_process::ServerProcess;

#[allow(dead_code)] // each benchmark uses part of it
#[path = "raw_ws.rs"]
mod raw_ws;
use raw_ws::{join_topic, open, push_media_event, read_until};

/// The server's CPU time so far (utime + stime), from `/proc/<pid>/stat` (clock ticks of 10 ms,
/// the Linux default `USER_HZ`).
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) are counted from its closing ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the ')'.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// `p`-th percentile of sorted `v`.
fn percentile(v: &[Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// A media event's JSON text.
fn media_event(kind: &str, data: serde_json::Value) -> String {
    serde_json::json!({ "type": kind, "data": data }).to_string()
}

/// Opens a socket, joins `topic` and is accepted as a peer; returns the socket and the times
/// connect → joined and `phx_join` → `peerAccepted`.
async fn join_peer(
    addr: std::net::SocketAddr,
    topic: String,
    name: String,
) -> std::io::Result<(tokio::net::TcpStream, Duration, Duration)> {
    let started = Instant::now();
    let mut tcp = open(addr).await?;
    let join_sent = Instant::now();
    join_topic(&mut tcp, &topic).await?;
    let join = media_event(
        "join",
        serde_json::json!({ "receiveMedia": true, "metadata": { "displayName": name } }),
    );
    push_media_event(&mut tcp, &topic, &join).await?;
    read_until(&mut tcp, "peerAccepted").await?;
    Ok((tcp, started.elapsed(), join_sent.elapsed()))
}

/// Phase 1: joins at `rate` per second for `seconds`; prints the latencies, returns the sockets.
async fn join_latency(
    addr: std::net::SocketAddr,
    rate: u64,
    seconds: u64,
) -> Vec<tokio::net::TcpStream> {
    let total = rate * seconds;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = tokio::task::JoinSet::new();
    let started = Instant::now();
    for i in 0..total {
        tick.tick().await;
        let topic = format!("room:join-{}", i / 10);
        tasks.spawn(join_peer(addr, topic, format!("p{i}")));
    }
    let paced = started.elapsed();
    let (mut sockets, mut whole, mut join) = (Vec::new(), Vec::new(), Vec::new());
    let mut failed = 0;
    while let Some(done) = tasks.join_next().await {
        match done.expect("task") {
            Ok((tcp, w, j)) => {
                sockets.push(tcp);
                whole.push(w);
                join.push(j);
            }
            Err(_) => failed += 1,
        }
    }
    whole.sort();
    join.sort();
    println!(
        "join latency: {total} joins started over {paced:.2?} ({:.0}/s), {failed} failed",
        total as f64 / paced.as_secs_f64()
    );
    println!(
        "  phx_join → peerAccepted: p50 {:.1?}  p95 {:.1?}  p99 {:.1?}",
        percentile(&join, 0.5),
        percentile(&join, 0.95),
        percentile(&join, 0.99)
    );
    println!(
        "  connect → peerAccepted:  p50 {:.1?}  p95 {:.1?}  p99 {:.1?}",
        percentile(&whole, 0.5),
        percentile(&whole, 0.95),
        percentile(&whole, 0.99)
    );
    sockets
}

/// Phase 2: `sockets` peers in closed loops of `updatePeerMetadata` → `peerUpdated`.
async fn round_trips(server: &ServerProcess, sockets: usize, seconds: u64) {
    let mut peers = Vec::new();
    for i in 0..sockets {
        let topic = format!("room:rt-{i}");
        let (tcp, ..) = join_peer(server.http, topic.clone(), format!("r{i}"))
            .await
            .expect("round-trip peer joins");
        peers.push((tcp, topic));
    }
    let window = Duration::from_secs(seconds);
    let cpu_before = cpu_time(server.pid());
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (mut tcp, topic) in peers {
        tasks.spawn(async move {
            let mut count = 0u64;
            let update = media_event(
                "updatePeerMetadata",
                serde_json::json!({"metadata": {"n": 1}}),
            );
            while started.elapsed() < window {
                push_media_event(&mut tcp, &topic, &update).await?;
                read_until(&mut tcp, "peerUpdated").await?;
                count += 1;
            }
            std::io::Result::Ok(count)
        });
    }
    let mut total = 0;
    while let Some(done) = tasks.join_next().await {
        total += done.expect("task").expect("round trips");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = (cpu_time(server.pid()) - cpu_before).as_secs_f64();
    println!(
        "media-event round trips: {sockets} sockets, {total} in {elapsed:.1} s = {:.0}/s; server CPU {:.0}% of a core; {:.0} round trips ({:.0} messages) per server CPU-second",
        total as f64 / elapsed,
        cpu / elapsed * 100.0,
        total as f64 / cpu.max(1e-9),
        2.0 * total as f64 / cpu.max(1e-9)
    );
}

#[tokio::main]
async fn main() {
    let arg = |i: usize, default: u64| {
        std::env::args()
            .nth(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or(default)
    };
    let (rate, join_seconds, sockets, seconds) = (arg(1, 1000), arg(2, 3), arg(3, 200), arg(4, 5));
    let binary = ServerProcess::binary_beside_example();
    let limit = (rate * join_seconds + sockets + 100).to_string();
    let server = ServerProcess::start(
        &binary.to_string_lossy(),
        &[
            "--max-connections",
            &limit,
            "--max-connections-per-ip",
            &limit,
            "--max-rooms",
            &limit,
            "--idle-timeout",
            "3600",
            "--max-messages-per-sec",
            "1000000",
        ],
        &[("RUST_LOG", "error")],
    );
    if let Ok(cpus) = std::env::var("SERVER_CPUS") {
        let pinned = std::process::Command::new("taskset")
            .args(["-a", "-c", "-p", &cpus, &server.pid().to_string()])
            .stdout(std::process::Stdio::null())
            .status();
        println!(
            "server pinned to CPU {cpus}: {:?}",
            pinned.map(|s| s.success())
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let joined = join_latency(server.http, rate, join_seconds).await;
    round_trips(&server, sockets as usize, seconds).await;
    drop(joined);
}
