//! The operations endpoints of the real binary: `/metrics` in the Prometheus text format with
//! gauges that follow peers in and out of a room, `/healthz` and `/readyz` while serving, and
//! `/readyz` answering 503 during a drain while the listener still answers.

mod room_common;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use room_common::Client;

/// The real server binary on free loopback ports; killed when dropped.
struct Binary {
    child: Child,
    addr: SocketAddr,
}

impl Binary {
    fn start(extra: &[&str]) -> Binary {
        let tcp = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let udp = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_videoroom"))
            .args(["--bind", "127.0.0.1", "--port", &tcp.port().to_string()])
            .args(["--udp-port", &udp.port().to_string()])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the server binary starts");
        Binary { child, addr: tcp }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `(status, body)` of a GET, or `None` while nothing listens.
async fn get(url: &str) -> Option<(u16, String)> {
    let response = reqwest::get(url).await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

/// Waits until the server answers `/healthcheck`.
async fn until_up(server: &Binary) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(&server.url("/healthcheck")).await.is_none() {
        assert!(Instant::now() < deadline, "the server never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of the unlabelled sample `name` in a Prometheus text exposition.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

async fn gauge(server: &Binary, name: &str) -> f64 {
    let (status, text) = get(&server.url("/metrics"))
        .await
        .expect("/metrics answers");
    assert_eq!(status, 200);
    sample(&text, name).unwrap_or_else(|| panic!("no sample {name} in:\n{text}"))
}

/// Polls `name` until it equals `want` (the gauges move when the room actor has handled the
/// join or the leave, a moment after the client saw its reply).
async fn gauge_becomes(server: &Binary, name: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let value = gauge(server, name).await;
        if value == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} is {value}, expected {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_gauges_count_rooms_peers_and_sockets_and_return_to_zero() {
    let server = Binary::start(&["--room-grace", "0"]);
    until_up(&server).await;
    let (status, text) = get(&server.url("/metrics")).await.unwrap();
    assert_eq!(status, 200);
    for name in [
        "videoroom_rooms",
        "videoroom_peers",
        "videoroom_published_tracks",
    ] {
        assert_eq!(sample(&text, name), Some(0.0), "{name} at start");
    }
    assert!(text.contains("# TYPE videoroom_join_duration_seconds histogram"));
    assert!(!text.contains("room="), "no room ids as label values");

    let (mut alice, _) = Client::join_room(server.addr, "ops", "Alice").await;
    let (mut bob, _) = Client::join_room(server.addr, "ops", "Bob").await;
    gauge_becomes(&server, "videoroom_rooms", 1.0).await;
    gauge_becomes(&server, "videoroom_peers", 2.0).await;
    let (_, text) = get(&server.url("/metrics")).await.unwrap();
    assert!(
        sample(&text, "videoroom_join_duration_seconds_count").unwrap_or(0.0) >= 2.0,
        "two joins timed:\n{text}"
    );

    alice.leave().await;
    bob.leave().await;
    gauge_becomes(&server, "videoroom_peers", 0.0).await;
    gauge_becomes(&server, "videoroom_rooms", 0.0).await;
}

#[tokio::test]
async fn readyz_answers_503_during_the_drain_while_healthz_and_the_listener_still_answer() {
    let server = Binary::start(&["--drain-delay", "3"]);
    until_up(&server).await;
    assert_eq!(get(&server.url("/readyz")).await.map(|r| r.0), Some(200));
    assert_eq!(get(&server.url("/healthz")).await.map(|r| r.0), Some(200));
    let pid = server.child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match get(&server.url("/readyz")).await {
            Some((503, _)) => break,
            Some((200, _)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            other => panic!("/readyz during the drain: {other:?}"),
        }
    }
    assert_eq!(
        get(&server.url("/healthcheck")).await.map(|r| r.0),
        Some(200)
    );
}
