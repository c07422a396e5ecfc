//! The Phoenix side of a load peer: one WebSocket speaking the V2 JSON serializer
//! (`[join_ref, ref, topic, event, payload]`), one joined `room:<id>` channel, and the flat media
//! events inside it (`mediaEvent {"data": "<JSON text>"}`), as phoenix.js and the tutorial's
//! client send them (docs/media-events.md, docs/phoenix-protocol.md).
use std::net::{IpAddr, SocketAddr};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use ws_stream::WebSocketStream;
use ws_stream::tungstenite::client::IntoClientRequest;
use ws_stream::tungstenite::{Error as WsError, Message};

/// A client WebSocket over plain TCP.
pub type Ws = WebSocketStream<TcpStream>;

/// The sending half of a signalling WebSocket, and the counter its protocol numbers requests by
/// (Phoenix's `ref`, Janus's `transaction`).
pub struct Outbox {
    sink: SplitSink<Ws, Message>,
    last_number: u64,
    /// Names the socket in send errors.
    what: &'static str,
}

impl Outbox {
    /// `sink`, whose next request number is `last_number + 1`.
    pub fn new(sink: SplitSink<Ws, Message>, last_number: u64, what: &'static str) -> Outbox {
        Outbox {
            sink,
            last_number,
            what,
        }
    }

    /// The next request number.
    pub fn next_number(&mut self) -> u64 {
        self.last_number += 1;
        self.last_number
    }

    /// Sends one text frame.
    pub async fn send(&mut self, text: String) -> Result<(), String> {
        self.sink
            .send(Message::text(text))
            .await
            .map_err(|e| format!("{} send: {e}", self.what))
    }
}

/// The next text frame of `stream` that is JSON (any other frame is skipped); `None` once the
/// socket has ended.
pub async fn next_json(stream: &mut SplitStream<Ws>) -> Option<Value> {
    loop {
        if let Ok(Message::Text(text)) = stream.next().await?
            && let Ok(value) = serde_json::from_str::<Value>(&text)
        {
            return Some(value);
        }
    }
}

/// The sending half of a joined channel.
pub struct Channel {
    outbox: Outbox,
    topic: String,
    join_ref: String,
}

/// What the server said on the socket, as far as a load peer cares.
pub enum Incoming {
    /// A media event (`{"type", "data"}`), parsed.
    MediaEvent(Value),
    /// A reply, close or anything else: nothing to do.
    Other,
    /// The socket ended.
    Closed(String),
}

/// The receiving half of the socket.
pub struct Inbox {
    stream: SplitStream<Ws>,
}

impl Inbox {
    /// The socket's frames from now on, each read with [`incoming_of`].
    pub fn into_stream(self) -> SplitStream<Ws> {
        self.stream
    }
}

/// What one read of the socket (`None`: it ended) means to a load peer.
pub fn incoming_of(frame: Option<Result<Message, WsError>>) -> Incoming {
    match frame {
        Some(Ok(Message::Text(text))) => parse_frame(&text),
        Some(Ok(Message::Close(_))) | None => Incoming::Closed("socket closed".into()),
        Some(Ok(_)) => Incoming::Other,
        Some(Err(e)) => Incoming::Closed(format!("socket error: {e}")),
    }
}

/// The media events a load peer acts on: any other frame is skipped unparsed. In a room of N
/// peers every join sends N `peerJoined` frames, so a thousand subscribers joining make a million
/// frames the load generator must not spend its time parsing.
const WANTED_EVENTS: [&str; 6] = [
    "peerAccepted",
    "peerDenied",
    "offerData",
    "sdpAnswer",
    "candidate",
    "\\\"error\\\"",
];

/// A media event out of a V2 server frame, if it carries one the peer acts on.
fn parse_frame(text: &str) -> Incoming {
    if !WANTED_EVENTS.iter().any(|e| text.contains(e)) {
        return Incoming::Other;
    }
    let Ok(frame) = serde_json::from_str::<Value>(text) else {
        return Incoming::Other;
    };
    if frame[3] != "mediaEvent" {
        return Incoming::Other;
    }
    frame[4]["data"]
        .as_str()
        .and_then(|data| serde_json::from_str(data).ok())
        .map_or(Incoming::Other, Incoming::MediaEvent)
}

/// Opens `ws://<server>/socket/websocket?vsn=2.0.0` from `local_ip` and joins `room:<room>`;
/// returns once the join was answered `ok`.
pub async fn join(
    server: SocketAddr,
    local_ip: IpAddr,
    room: &str,
) -> Result<(Channel, Inbox, Value), String> {
    let url = format!("ws://{server}/socket/websocket?vsn=2.0.0");
    let ws = connect_websocket(server, local_ip, url).await?;
    let (sink, stream) = ws.split();
    let mut channel = Channel {
        outbox: Outbox::new(sink, 2, "websocket"),
        topic: format!("room:{room}"),
        join_ref: "1".into(),
    };
    let mut inbox = Inbox { stream };
    let join = json!(["1", "1", channel.topic, "phx_join", {}]);
    channel.outbox.send(join.to_string()).await?;
    loop {
        let Some(frame) = next_json(&mut inbox.stream).await else {
            return Err("socket closed before the join reply".into());
        };
        if frame[1] == "1" && frame[3] == "phx_reply" {
            return if frame[4]["status"] == "ok" {
                let reply = frame[4]["response"].clone();
                Ok((channel, inbox, reply))
            } else {
                Err(format!("join refused: {}", frame[4]))
            };
        }
    }
}

/// A TCP connection to `server` from `local_ip`, without Nagle's delay (signalling and
/// ICE-TCP media both want each write sent at once).
pub async fn connect_tcp(server: SocketAddr, local_ip: IpAddr) -> Result<TcpStream, String> {
    let tcp = match local_ip {
        IpAddr::V4(_) => TcpSocket::new_v4(),
        IpAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|e| format!("tcp socket: {e}"))?;
    tcp.bind(SocketAddr::new(local_ip, 0))
        .map_err(|e| format!("bind {local_ip}: {e}"))?;
    let stream = tcp
        .connect(server)
        .await
        .map_err(|e| format!("connect {server}: {e}"))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// A WebSocket client connection to `server` from `local_ip` for `request` (a URL or a request
/// with extra headers); shared by both signallings.
pub async fn connect_websocket(
    server: SocketAddr,
    local_ip: IpAddr,
    request: impl IntoClientRequest + Unpin,
) -> Result<Ws, String> {
    let stream = connect_tcp(server, local_ip).await?;
    let (ws, _) = ws_stream::client_async_with_config(request, stream, Some(ws_config()))
        .await
        .map_err(|e| format!("websocket handshake: {e}"))?;
    Ok(ws)
}

/// The client sockets' buffers. tungstenite zeroes `read_buffer_size` bytes of its read buffer
/// every time the stream is polled; when a peer's loop polled its socket at every wake (every
/// datagram), the default 128 KiB made that `memset` a quarter of the load generator's CPU.
fn ws_config() -> ws_stream::tungstenite::protocol::WebSocketConfig {
    ws_stream::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
}

impl Channel {
    /// Pushes a media event (`{"type": …, "data": …}`).
    pub async fn media_event(&mut self, event: Value) -> Result<(), String> {
        let r = self.take_ref();
        let frame = json!([
            self.join_ref,
            r,
            self.topic,
            "mediaEvent",
            {"data": event.to_string()}
        ]);
        self.outbox.send(frame.to_string()).await
    }

    /// A Phoenix heartbeat, as phoenix.js sends every 30 s.
    pub async fn heartbeat(&mut self) -> Result<(), String> {
        let r = self.take_ref();
        let frame = json!([null, r, "phoenix", "heartbeat", {}]);
        self.outbox.send(frame.to_string()).await
    }

    fn take_ref(&mut self) -> String {
        self.outbox.next_number().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_media_event_frame_yields_the_event_inside_its_data_text() {
        let frame = r#"["1",null,"room:a","mediaEvent",{"data":"{\"type\":\"offerData\",\"data\":{\"audio\":1,\"video\":1}}"}]"#;
        let Incoming::MediaEvent(event) = parse_frame(frame) else {
            panic!("not read as a media event");
        };
        assert_eq!(
            event,
            json!({"type": "offerData", "data": {"audio": 1, "video": 1}})
        );
    }

    #[test]
    fn an_error_event_is_read_and_a_peer_joined_is_skipped_unparsed() {
        let error = r#"["1",null,"room:a","mediaEvent",{"data":"{\"type\":\"error\",\"data\":{\"message\":\"x\"}}"}]"#;
        assert!(matches!(parse_frame(error), Incoming::MediaEvent(e) if e["type"] == "error"));
        let joined =
            r#"["1",null,"room:a","mediaEvent",{"data":"{\"type\":\"peerJoined\",\"data\":{}}"}]"#;
        assert!(matches!(parse_frame(joined), Incoming::Other));
    }

    #[test]
    fn replies_and_garbage_are_nothing_to_do() {
        let reply = r#"["1","3","room:a","phx_reply",{"status":"ok","response":{}}]"#;
        assert!(matches!(parse_frame(reply), Incoming::Other));
        assert!(matches!(parse_frame("not json"), Incoming::Other));
    }
}
