//! Shared helpers of the room tests: an in-process server on 127.0.0.1:0 (real WebSocket, real
//! UDP socket, the real `room:*` channel and registry) and a raw Phoenix V2 client.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use videoroom::phoenix::Router;
use videoroom::phoenix::transport::{CheckOrigin, Endpoint, SocketMount};
use videoroom::room::{RoomRegistry, RoomsConfig};
use videoroom::rtc::driver::MediaPlane;
use videoroom::rtc::sfu::SfuConfig;

/// A running server.
pub struct Server {
    /// HTTP address.
    pub addr: SocketAddr,
    /// The server's rooms, to observe lifecycle.
    pub registry: RoomRegistry,
}

/// Starts the room server with `config` (its SFU host candidate is the loopback UDP socket).
pub async fn start(config: RoomsConfig) -> Server {
    let _ = env_logger::builder().is_test(true).try_init();
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let media = MediaPlane::on_socket(udp, None, SfuConfig::default());
    let registry = RoomRegistry::new(config, media);
    let endpoint = Endpoint::new();
    let mount = SocketMount::new(
        "/socket",
        videoroom::room::mount(Router::new(), registry.clone()),
    )
    .configure(|s| s.check_origin = CheckOrigin::Off);
    let filter = endpoint.mount(mount);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(warp::serve(filter).incoming(listener).run());
    Server { addr, registry }
}

/// Room settings for tests: short grace, and `max_peers` (else the default).
pub fn rooms_config(grace: Duration, max_peers: Option<usize>) -> RoomsConfig {
    RoomsConfig {
        empty_grace: grace,
        max_peers: max_peers.unwrap_or(RoomsConfig::DEFAULT_MAX_PEERS),
        ..RoomsConfig::default()
    }
}

/// A raw Phoenix V2 client joined to one topic.
pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_ref: u64,
    /// The topic joined.
    pub topic: String,
    join_ref: String,
    /// Frames read but not consumed yet.
    backlog: VecDeque<Value>,
}

const WAIT: Duration = Duration::from_secs(5);

impl Client {
    /// Connects and joins `topic`; returns the client and the join reply `{status, response}`.
    pub async fn join(addr: SocketAddr, topic: &str) -> (Client, Value) {
        let url = format!("ws://{addr}/socket/websocket?vsn=2.0.0");
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let mut c = Client {
            ws,
            next_ref: 1,
            topic: topic.to_owned(),
            join_ref: String::new(),
            backlog: VecDeque::new(),
        };
        let r = c.send("phx_join", json!({})).await;
        c.join_ref = r.clone();
        let reply = c.reply(&r).await;
        (c, reply)
    }

    /// Connects, joins, sends the media `join`, and returns the client and `peerAccepted` data
    /// (panics on anything else).
    pub async fn join_room(addr: SocketAddr, room: &str, name: &str) -> (Client, Value) {
        let (mut c, reply) = Client::join(addr, &format!("room:{room}")).await;
        assert_eq!(reply, json!({"status":"ok","response":{}}));
        c.media(
            json!({"type":"join","data":{"receiveMedia":true,"metadata":{"displayName":name}}}),
        )
        .await;
        let accepted = c.expect_media("peerAccepted").await;
        (c, accepted)
    }

    /// Sends `[join_ref, ref, topic, event, payload]`; returns the ref.
    pub async fn send(&mut self, event: &str, payload: Value) -> String {
        let r = self.next_ref.to_string();
        self.next_ref += 1;
        let join_ref = if event == "phx_join" {
            r.clone()
        } else {
            self.join_ref.clone()
        };
        let frame = json!([join_ref, r, self.topic, event, payload]);
        self.ws
            .send(Message::text(frame.to_string()))
            .await
            .unwrap();
        r
    }

    /// Pushes a media event (`mediaEvent {"data": JSON string}`).
    pub async fn media(&mut self, event: Value) {
        self.send("mediaEvent", json!({ "data": event.to_string() }))
            .await;
    }

    /// Pushes a raw `mediaEvent` data string.
    pub async fn media_raw(&mut self, data: &str) {
        self.send("mediaEvent", json!({ "data": data })).await;
    }

    async fn read(&mut self, wait: Duration) -> Option<Value> {
        if let Some(v) = self.backlog.pop_front() {
            return Some(v);
        }
        loop {
            let msg = tokio::time::timeout(wait, self.ws.next()).await.ok()??;
            match msg.ok()? {
                Message::Text(t) => return Some(serde_json::from_str(&t).unwrap()),
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// Waits for the `phx_reply` to `r`; returns its payload.
    pub async fn reply(&mut self, r: &str) -> Value {
        let mut skipped = VecDeque::new();
        let out = loop {
            let frame = self.read(WAIT).await.expect("reply");
            if frame[3] == "phx_reply" && frame[1] == r {
                break frame[4].clone();
            }
            skipped.push_back(frame);
        };
        skipped.extend(self.backlog.drain(..));
        self.backlog = skipped;
        out
    }

    /// The next media event (parsed `data`), within `wait`.
    pub async fn next_media(&mut self, wait: Duration) -> Option<Value> {
        loop {
            let frame = self.read(wait).await?;
            if frame[3] == "mediaEvent" {
                return Some(serde_json::from_str(frame[4]["data"].as_str().unwrap()).unwrap());
            }
        }
    }

    /// The next media event, which must be of `kind`; returns its `data`.
    pub async fn expect_media(&mut self, kind: &str) -> Value {
        let ev = self
            .next_media(WAIT)
            .await
            .unwrap_or_else(|| panic!("no media event, expected {kind}"));
        assert_eq!(ev["type"], kind, "{ev}");
        ev["data"].clone()
    }

    /// Waits for a frame whose event is `event` (skipping others); returns its payload.
    pub async fn expect_frame(&mut self, event: &str) -> Value {
        loop {
            let frame = self
                .read(WAIT)
                .await
                .unwrap_or_else(|| panic!("no {event} frame"));
            if frame[3] == event {
                return frame[4].clone();
            }
        }
    }

    /// Asserts that no media event arrives within `wait`.
    pub async fn expect_silence(&mut self, wait: Duration) {
        if let Some(ev) = self.next_media(wait).await {
            panic!("unexpected media event {ev}");
        }
    }

    /// Leaves the topic (`phx_leave`) and waits for the reply.
    pub async fn leave(&mut self) {
        let r = self.send("phx_leave", json!({})).await;
        self.reply(&r).await;
    }

    /// Drops the TCP connection without a close handshake (a vanished tab).
    pub fn vanish(self) {
        drop(self);
    }
}

/// Polls `f` until it is true or `within` passes.
pub async fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}
