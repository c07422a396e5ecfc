//! Every HTTP / WebSocket / LongPoll limit, tried against the real `videoroom` binary over real
//! loopback sockets: literal requests and frames, the exact answer asserted (status, close code,
//! `phx_reply`), and a second client or socket checked to be unaffected.

mod kit;
#[allow(dead_code)]
#[path = "kit/server_process.rs"]
mod server_process;

use kit::phoenix::{Client, Vsn, connect};
use server_process::ServerProcess;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The real binary on free loopback ports with `args`; its log (stderr) kept.
struct Server(ServerProcess);

impl Server {
    fn start(args: &[&str]) -> Server {
        Server(ServerProcess::start(
            env!("CARGO_BIN_EXE_videoroom"),
            args,
            &[],
        ))
    }

    fn addr(&self) -> SocketAddr {
        self.0.http
    }

    /// A V2 WebSocket on `/socket`.
    async fn ws(&self) -> Client {
        connect(self.addr(), "/socket/websocket", Vsn::V2).await
    }

    /// The log once it contains `needle` (the log is read from a pipe, a moment behind).
    async fn log_with(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = self.0.log();
            if log.contains(needle) || Instant::now() > deadline {
                return log;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Sends raw bytes and reads the whole answer until the server closes (or 5 s pass).
async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(request).await.expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// The status line of a raw HTTP answer.
fn status_line(answer: &str) -> &str {
    answer.lines().next().unwrap_or("")
}

async fn get(addr: SocketAddr, target: &str) -> String {
    raw(
        addr,
        format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
}

/// Whether the server closes `tcp` within `within` (EOF or reset on read).
async fn closed_within(tcp: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(within, tcp.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// Sends a heartbeat and expects its reply, byte for byte.
async fn heartbeat_answers(ws: &mut Client) {
    ws.send_text(r#"[null,"hb","phoenix","heartbeat",{}]"#)
        .await;
    ws.expect_text(r#"[null,"hb","phoenix","phx_reply",{"response":{},"status":"ok"}]"#)
        .await;
}

#[tokio::test]
async fn a_query_nested_nine_thousand_levels_is_answered_400_on_both_transports_and_the_server_lives()
 {
    let server = Server::start(&[]);
    let nested = format!("a{}=1", "[a]".repeat(9000));
    for transport in ["websocket", "longpoll"] {
        let answer = get(
            server.addr(),
            &format!("/socket/{transport}?vsn=2.0.0&{nested}"),
        )
        .await;
        assert_eq!(
            status_line(&answer),
            "HTTP/1.1 400 Bad Request",
            "{transport}"
        );
    }
    let deep = format!("a{}=1", "[a]".repeat(100));
    let answer = get(server.addr(), &format!("/socket/longpoll?vsn=2.0.0&{deep}")).await;
    assert_eq!(status_line(&answer), "HTTP/1.1 400 Bad Request");
    let answer = get(server.addr(), "/healthcheck").await;
    assert_eq!(status_line(&answer), "HTTP/1.1 200 OK");
}

#[tokio::test]
async fn a_longpoll_body_over_the_limit_is_refused_413_before_it_is_sent_or_while_it_streams() {
    let server = Server::start(&["--max-frame-size", "4096"]);
    let open = get(server.addr(), "/socket/longpoll?vsn=2.0.0").await;
    let token = open
        .split("\"token\":\"")
        .nth(1)
        .and_then(|t| t.split('"').next())
        .expect("a session token")
        .to_owned();
    let addr = server.addr();
    // The raw POST to the session with `headers` (each ending in CRLF) and `body`.
    let post = |headers: String, body: &str| {
        let request = format!(
            "POST /socket/longpoll?vsn=2.0.0&token={token} HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\n\r\n{body}"
        );
        async move { raw(addr, request.as_bytes()).await }
    };
    // Declared 200 MB: answered at once, without a byte of body.
    let headers = "Content-Type: application/x-ndjson\r\nContent-Length: 200000000\r\n";
    let answer = post(headers.to_owned(), "").await;
    assert_eq!(status_line(&answer), "HTTP/1.1 413 Payload Too Large");
    // Chunked, no length: refused once 4096 bytes have arrived.
    let chunk = format!("2000\r\n{}\r\n", "x".repeat(0x2000));
    let answer = post("Transfer-Encoding: chunked\r\n".to_owned(), &chunk).await;
    assert_eq!(status_line(&answer), "HTTP/1.1 413 Payload Too Large");
    // The session itself is fine: a small POST is processed.
    let body = r#"[null,"1","phoenix","heartbeat",{}]"#;
    let headers = format!(
        "Content-Type: application/x-ndjson\r\nContent-Length: {}\r\n",
        body.len()
    );
    let answer = post(headers, body).await;
    assert!(answer.ends_with(r#"{"status":200}"#), "{answer}");
}

#[tokio::test]
async fn five_hundred_half_sent_headers_are_closed_after_the_header_timeout_and_others_are_served()
{
    let server = Server::start(&[
        "--header-read-timeout",
        "1",
        "--max-connections-per-ip",
        "1000",
    ]);
    let mut slow = Vec::new();
    for _ in 0..500 {
        let mut tcp = TcpStream::connect(server.addr()).await.expect("connect");
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .expect("write");
        slow.push(tcp);
    }
    let answer = get(server.addr(), "/healthcheck").await;
    assert_eq!(status_line(&answer), "HTTP/1.1 200 OK");
    let started = Instant::now();
    for tcp in &mut slow {
        assert!(closed_within(tcp, Duration::from_secs(5)).await);
    }
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_silent_connection_is_closed_before_any_upgrade_after_the_header_timeout() {
    let server = Server::start(&["--header-read-timeout", "1"]);
    let mut silent = TcpStream::connect(server.addr()).await.expect("connect");
    let started = Instant::now();
    assert!(closed_within(&mut silent, Duration::from_secs(5)).await);
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn headers_larger_than_the_limit_are_answered_431() {
    let server = Server::start(&["--max-header-bytes", "8192"]);
    let answer = raw(
        server.addr(),
        format!(
            "GET /healthcheck HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "a".repeat(20_000)
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(
        status_line(&answer),
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
}

#[tokio::test]
async fn connections_over_the_per_ip_limit_are_closed_at_once_and_the_place_frees_on_close() {
    let server = Server::start(&["--max-connections-per-ip", "3"]);
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(server.addr()).await.expect("connect"));
    }
    // Let the server count them before the fourth arrives.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut fourth = TcpStream::connect(server.addr()).await.expect("connect");
    assert!(closed_within(&mut fourth, Duration::from_millis(500)).await);
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let answer = get(server.addr(), "/healthcheck").await;
    assert_eq!(status_line(&answer), "HTTP/1.1 200 OK");
    let log = server.log_with("refusing connections from 127.0.0.1").await;
    assert_eq!(
        log.matches("refusing connections from 127.0.0.1").count(),
        1,
        "{log}"
    );
}

#[tokio::test]
async fn connections_over_the_total_limit_are_closed_at_once() {
    let server = Server::start(&["--max-connections", "2"]);
    let _a = TcpStream::connect(server.addr()).await.expect("connect");
    let _b = TcpStream::connect(server.addr()).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut third = TcpStream::connect(server.addr()).await.expect("connect");
    assert!(closed_within(&mut third, Duration::from_millis(500)).await);
}

#[tokio::test]
async fn a_socket_sending_more_messages_per_second_than_allowed_is_closed_1008_and_others_are_not()
{
    let server = Server::start(&["--max-messages-per-sec", "10"]);
    let mut calm = server.ws().await;
    let mut flood = server.ws().await;
    for _ in 0..30 {
        flood
            .send_text(r#"[null,"1","phoenix","heartbeat",{}]"#)
            .await;
    }
    assert_eq!(flood.expect_close().await, Some(1008));
    heartbeat_answers(&mut calm).await;
    let log = server.log_with("messages per second").await;
    assert_eq!(log.matches("messages per second").count(), 1, "{log}");
}

#[tokio::test]
async fn a_topic_longer_than_the_limit_gets_a_join_error_and_the_socket_stays_usable() {
    let server = Server::start(&[]);
    let mut ws = server.ws().await;
    let topic = format!("room:{}", "x".repeat(300));
    ws.send_text(&format!(r#"["1","1","{topic}","phx_join",{{}}]"#))
        .await;
    ws.expect_text(&format!(
            r#"["1","1","{topic}","phx_reply",{{"response":{{"reason":"topic too long"}},"status":"error"}}]"#
        )).await;
    heartbeat_answers(&mut ws).await;
}

#[tokio::test]
async fn an_unmatched_topic_flood_is_answered_frame_by_frame_but_logged_once_and_clipped() {
    let server = Server::start(&[]);
    let mut ws = server.ws().await;
    let topic = format!("nowhere:{}", "y".repeat(100_000));
    for n in 0..100 {
        ws.send_text(&format!(r#"[null,"{n}","{topic}","ping",{{}}]"#))
            .await;
        ws.expect_text(&format!(
                r#"[null,"{n}","{topic}","phx_reply",{{"response":{{"reason":"unmatched topic"}},"status":"error"}}]"#
            )).await;
    }
    let log = server.log_with("unmatched topic").await;
    assert_eq!(log.matches("unmatched topic").count(), 1, "{log}");
    assert!(log.len() < 4096, "log of {} bytes", log.len());
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_with_1013_which_reaches_it() {
    let server = Server::start(&["--outbound-bytes", "65536"]);
    let mut calm = server.ws().await;
    let mut stuck = server.ws().await;
    // Each frame is answered with a 200 KB reply that the client does not read.
    let topic = format!("nowhere:{}", "z".repeat(200_000));
    for n in 0..150 {
        let frame = format!(r#"[null,"{n}","{topic}","ping",{{}}]"#);
        if !stuck.try_send_text(&frame).await {
            break;
        }
    }
    assert_eq!(stuck.expect_close().await, Some(1013));
    heartbeat_answers(&mut calm).await;
}

#[tokio::test]
async fn longpoll_sessions_over_the_total_limit_are_refused_403() {
    let server = Server::start(&["--max-longpoll-sessions", "2"]);
    for _ in 0..2 {
        let answer = get(server.addr(), "/socket/longpoll?vsn=2.0.0").await;
        assert!(answer.contains(r#""status":410"#), "{answer}");
    }
    let answer = get(server.addr(), "/socket/longpoll?vsn=2.0.0").await;
    assert!(answer.ends_with(r#"{"status":403}"#), "{answer}");
}

#[tokio::test]
async fn sigterm_exits_within_the_drain_timeout_plus_a_second_whatever_the_clients_do() {
    let mut server = Server::start(&["--drain-timeout", "1"]);
    // A WebSocket that never reads, a half-sent request, a LongPoll GET being held.
    let mut deaf = server.ws().await;
    deaf.send_text(r#"["1","1","nowhere:x","phx_join",{}]"#)
        .await;
    let mut half = TcpStream::connect(server.addr()).await.expect("connect");
    half.write_all(b"POST /socket/longpoll HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nab")
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let pid = server.0.pid().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let deadline = Duration::from_secs(2);
    loop {
        if let Some(status) = server.0.exit_status() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(
            started.elapsed() < deadline + Duration::from_millis(300),
            "still running after {:?}",
            started.elapsed()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(started.elapsed() <= deadline + Duration::from_millis(300));
}

#[tokio::test]
async fn a_keep_alive_connection_idle_after_its_response_is_closed_after_the_header_timeout() {
    let server = Server::start(&["--header-read-timeout", "1"]);
    let mut tcp = TcpStream::connect(server.addr()).await.expect("connect");
    tcp.write_all(b"GET /healthcheck HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 512];
    let n = tcp.read(&mut buf).await.expect("read");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200 OK"));
    let started = Instant::now();
    assert!(closed_within(&mut tcp, Duration::from_secs(5)).await);
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn a_frame_nested_a_hundred_thousand_levels_deep_is_closed_1011_and_others_are_not() {
    let server = Server::start(&[]);
    let mut calm = server.ws().await;
    let mut deep = server.ws().await;
    let payload = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    deep.send_text(&format!(r#"[null,"1","nowhere:x","ping",{payload}]"#))
        .await;
    assert_eq!(deep.expect_close().await, Some(1011));
    heartbeat_answers(&mut calm).await;
}

#[tokio::test]
async fn a_seven_megabyte_topic_is_refused_and_logged_in_one_short_line() {
    let server = Server::start(&[]);
    let mut ws = server.ws().await;
    let topic = format!("room:{}", "t".repeat(7 * 1024 * 1024));
    ws.send_text(&format!(r#"["1","1","{topic}","phx_join",{{}}]"#))
        .await;
    let reply = ws.recv_text().await;
    assert!(
        reply
            .ends_with(r#""phx_reply",{"response":{"reason":"topic too long"},"status":"error"}]"#),
        "{}",
        &reply[reply.len() - 100..]
    );
    heartbeat_answers(&mut ws).await;
    let log = server.log_with("\n").await;
    assert_eq!(log.lines().count(), 1, "{log}");
    assert!(log.len() < 1024, "log of {} bytes", log.len());
}

#[tokio::test]
async fn a_display_name_over_the_metadata_setting_is_denied_and_a_short_one_in_the_same_room_is_accepted()
 {
    let server = Server::start(&["--max-peer-metadata-bytes", "64"]);
    let join = |name: &str| {
        let event = format!(
            r#"{{"type":"join","data":{{"receiveMedia":true,"metadata":{{"displayName":"{name}"}}}}}}"#
        );
        let data = serde_json::to_string(&event).expect("json string");
        format!(r#"["1","2","room:limits","mediaEvent",{{"data":{data}}}]"#)
    };
    let mut big = server.ws().await;
    big.send_text(r#"["1","1","room:limits","phx_join",{}]"#)
        .await;
    big.expect_text(r#"["1","1","room:limits","phx_reply",{"response":{},"status":"ok"}]"#)
        .await;
    big.send_text(&join(&"B".repeat(100))).await;
    let denied = r#"{"type":"peerDenied","data":{"reason":"peer metadata too large"}}"#;
    big.expect_text(&format!(
        r#"["1",null,"room:limits","mediaEvent",{{"data":{}}}]"#,
        serde_json::to_string(denied).unwrap()
    ))
    .await;

    let mut small = server.ws().await;
    small
        .send_text(r#"["1","1","room:limits","phx_join",{}]"#)
        .await;
    small.recv_text().await;
    small.send_text(&join("Ann")).await;
    let accepted = small.recv_text().await;
    assert!(
        accepted.starts_with(
            r#"["1",null,"room:limits","mediaEvent",{"data":"{\"type\":\"peerAccepted\""#
        ),
        "{accepted}"
    );
}

#[tokio::test]
async fn the_demo_echo_channel_is_not_on_the_production_endpoint() {
    let server = Server::start(&[]);
    let mut ws = server.ws().await;
    ws.send_text(r#"["1","1","echo:x","phx_join",{}]"#).await;
    ws.expect_text(r#"[null,"1","echo:x","phx_reply",{"response":{"reason":"unmatched topic"},"status":"error"}]"#).await;
}
