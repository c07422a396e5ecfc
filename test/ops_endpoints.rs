//! The operations endpoints of the real binary: `/metrics` in the Prometheus text format with
//! gauges that follow peers in and out of a room, `/healthz` and `/readyz` while serving, and
//! `/readyz` answering 503 during a drain while the listener still answers.

mod kit;
#[allow(dead_code)]
#[path = "kit/server_process.rs"]
mod server_process;

use std::process::Command;
use std::time::{Duration, Instant};

use kit::phoenix::Client;
use server_process::{ServerProcess, sample};

const SERVER: &str = env!("CARGO_BIN_EXE_videoroom");

#[tokio::test]
async fn the_gauges_count_rooms_peers_and_sockets_and_return_to_zero() {
    let server = ServerProcess::start(SERVER, &["--room-grace", "0"], &[]);
    let (status, text) = server.get("/metrics").await.unwrap();
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

    let (mut alice, _) = Client::join_room(server.http, "ops", "Alice").await;
    let (mut bob, _) = Client::join_room(server.http, "ops", "Bob").await;
    server.metric_becomes("videoroom_rooms", 1.0).await;
    server.metric_becomes("videoroom_peers", 2.0).await;
    let (_, text) = server.get("/metrics").await.unwrap();
    assert!(
        sample(&text, "videoroom_join_duration_seconds_count").unwrap_or(0.0) >= 2.0,
        "two joins timed:\n{text}"
    );

    alice.leave().await;
    bob.leave().await;
    server.metric_becomes("videoroom_peers", 0.0).await;
    server.metric_becomes("videoroom_rooms", 0.0).await;
}

#[tokio::test]
async fn readyz_answers_503_during_the_drain_while_healthz_and_the_listener_still_answer() {
    let server = ServerProcess::start(SERVER, &["--drain-delay", "3"], &[]);
    assert_eq!(server.get("/readyz").await.map(|r| r.0), Some(200));
    assert_eq!(server.get("/healthz").await.map(|r| r.0), Some(200));
    let pid = server.pid().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match server.get("/readyz").await {
            Some((503, _)) => break,
            Some((200, _)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            other => panic!("/readyz during the drain: {other:?}"),
        }
    }
    assert_eq!(server.get("/healthcheck").await.map(|r| r.0), Some(200));
}
