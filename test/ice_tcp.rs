//! ICE-TCP end to end: a headless webrtc-rs peer with no UDP socket at all (active TCP
//! candidates only, like a browser on a network that drops UDP) exchanges media with a UDP peer
//! through the real server, on the shared web port and on a port of its own; and bad input on
//! the TCP port closes only its own connection, with one log line each.

#[allow(dead_code)]
mod peer;

#[allow(dead_code)]
#[path = "kit/server_process.rs"]
mod server_process;

use peer::client::PeerOptions;
use peer::scenario::{assert_delivery_over, join_accepted, wait_receiving};
use peer::server::{TestServer, test_config};
use server_process::{ServerProcess, sample};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use videoroom::config::Config;

const SERVER: &str = env!("CARGO_BIN_EXE_videoroom");
/// Every scenario runs under this bound, so a hung server fails the test instead of the run.
const BOUND: Duration = Duration::from_secs(120);

/// A TCP-only peer and a UDP peer join `room` on `server`; each must receive the other's audio
/// and video, with 95% delivered over 3 s. Prints how long each took from its join to
/// receiving the other's media.
async fn tcp_and_udp_peers_exchange_media(server: &TestServer, room: &str) {
    let started = Instant::now();
    let udp = join_accepted(server, room, PeerOptions::new("udp")).await;
    let tcp = join_accepted(server, room, PeerOptions::new("tcp").tcp_only()).await;
    wait_receiving(&tcp, &[&udp]).await;
    let tcp_receives = started.elapsed();
    wait_receiving(&udp, &[&tcp]).await;
    println!(
        "ice-tcp: both peers receiving {:?} after the first join (the TCP peer after {tcp_receives:?})",
        started.elapsed()
    );
    assert_delivery_over(&udp, &tcp, Duration::from_secs(3)).await;
    assert_delivery_over(&tcp, &udp, Duration::from_secs(3)).await;
}

/// The `videoroom_ice_tcp_connections` gauge of `server`.
async fn ice_tcp_connections(server: &TestServer) -> f64 {
    let text = reqwest::get(server.url("/metrics"))
        .await
        .expect("/metrics answers")
        .text()
        .await
        .expect("a body");
    sample(&text, "videoroom_ice_tcp_connections").expect("the gauge is exported")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_without_udp_gets_media_through_the_web_port_which_still_serves_http() {
    let run = async {
        let config = Config {
            ice_tcp_port: None,
            ..test_config()
        };
        let server = TestServer::start_with_config(config).await;
        assert_eq!(
            server.ice_tcp,
            Some(server.http),
            "shared with the web port"
        );
        tcp_and_udp_peers_exchange_media(&server, "shared").await;
        // At least the nominated one (webrtc-rs opens a new connection per ICE restart and
        // leaves the old one to time out).
        assert!(ice_tcp_connections(&server).await >= 1.0);
        // The same port answers HTTP while it carries media.
        let page = reqwest::get(server.url("/")).await.expect("GET /");
        assert_eq!(page.status().as_u16(), 200);
        server.stop().await;
    };
    tokio::time::timeout(BOUND, run)
        .await
        .expect("scenario timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_without_udp_gets_media_through_a_dedicated_ice_tcp_port() {
    let run = async {
        let config = Config {
            ice_tcp_port: Some(1),
            ..test_config()
        };
        let server = TestServer::start_with_config(config).await;
        let own = server.ice_tcp.expect("ICE-TCP is on");
        assert_ne!(own, server.http, "a port of its own");
        tcp_and_udp_peers_exchange_media(&server, "dedicated").await;
        // At least the nominated one (webrtc-rs opens a new connection per ICE restart and
        // leaves the old one to time out).
        assert!(ice_tcp_connections(&server).await >= 1.0);
        server.stop().await;
    };
    tokio::time::timeout(BOUND, run)
        .await
        .expect("scenario timed out");
}

/// A STUN binding request for the unknown ufrag `nobody:x`, RFC 4571-framed: 20-byte header,
/// one `USERNAME` attribute (8 bytes + 4 of header).
const FRAMED_CHECK_FOR_NOBODY: [u8; 34] = [
    0x00, 0x20, // frame length 32
    0x00, 0x01, 0x00, 0x0C, 0x21, 0x12, 0xA4, 0x42, // binding request, length 12, cookie
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, // transaction id
    0x00, 0x06, 0x00, 0x08, b'n', b'o', b'b', b'o', b'd', b'y', b':', b'x', // USERNAME
];

/// Reads until the server closes `tcp` (EOF or reset), at most `within`; the bytes it sent.
async fn closed_by_server(tcp: &mut TcpStream, within: Duration) -> Vec<u8> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut buf = [0u8; 1024];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the server did not close the connection within {within:?}"
    );
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_on_the_shared_port_closes_only_its_own_connection_with_one_log_line_each() {
    let server = ServerProcess::start(SERVER, &[], &[("RUST_LOG", "info")]);
    let addr: SocketAddr = server.http;
    let closing = |log: &str| log.matches("ice-tcp: closing the connection from").count();

    // A length above the frame limit (0xFFFF) in front of a STUN header: taken for ICE-TCP by
    // its first bytes, refused by the deframer before the 65535 bytes arrive.
    let mut oversized = TcpStream::connect(addr).await.unwrap();
    let mut frame = FRAMED_CHECK_FOR_NOBODY;
    frame[..2].copy_from_slice(&[0xFF, 0xFF]);
    oversized.write_all(&frame).await.unwrap();
    assert!(
        closed_by_server(&mut oversized, Duration::from_secs(5))
            .await
            .is_empty()
    );

    // A well-formed check for a session that does not exist.
    let mut stranger = TcpStream::connect(addr).await.unwrap();
    stranger.write_all(&FRAMED_CHECK_FOR_NOBODY).await.unwrap();
    assert!(
        closed_by_server(&mut stranger, Duration::from_secs(5))
            .await
            .is_empty()
    );

    // Slowloris: the first 11 bytes of a frame, then one more byte every 4 s: closed when the
    // first frame is not whole 10 s after the connection began, the trickle notwithstanding.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    let started = std::time::Instant::now();
    slow.write_all(&FRAMED_CHECK_FOR_NOBODY[..11])
        .await
        .unwrap();
    let trickle = async {
        for byte in &FRAMED_CHECK_FOR_NOBODY[11..] {
            tokio::time::sleep(Duration::from_secs(4)).await;
            if slow.write_all(&[*byte]).await.is_err() {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(15), trickle).await;
    assert!(
        closed_by_server(&mut slow, Duration::from_secs(5))
            .await
            .is_empty()
    );
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(16),
        "closed after {took:?}: the deadline held"
    );

    // Garbage that is not ICE-TCP goes to the web server, which answers it as before.
    let mut garbage = TcpStream::connect(addr).await.unwrap();
    garbage.write_all(b"\x00\x01garbage\r\n\r\n").await.unwrap();
    let answer = closed_by_server(&mut garbage, Duration::from_secs(15)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
        "{answer}"
    );

    let log = server.log();
    assert_eq!(closing(&log), 3, "one line per refused connection:\n{log}");
    assert!(log.contains("larger than 16384"), "{log}");
    assert!(
        log.contains("not a STUN check for a known session"),
        "{log}"
    );
    assert!(log.contains("no whole first frame within 10s"), "{log}");
    // Nothing died: the server still serves.
    let (status, _) = server.get("/").await.expect("the server answers");
    assert_eq!(status, 200);
    assert_eq!(server.metric("videoroom_ice_tcp_connections").await, 0.0);
}
