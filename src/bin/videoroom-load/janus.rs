//! The Janus side of a load peer, for running the same load against Janus's VideoRoom plugin:
//! the Janus WebSocket API (`janus-protocol` subprotocol, JSON requests matched to replies by
//! `transaction`). A publisher creates the room if needed, joins as a publisher and sends its
//! offer with `configure`; a subscriber waits for a publisher in `listparticipants`, joins as a
//! subscriber of its feed, and answers Janus's offer with `start`. Only one publisher per room is
//! supported (the fan-out and many-rooms scenarios).
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::SplitStream;
use serde_json::{Value, json};
use ws_stream::tungstenite::client::IntoClientRequest;
use ws_stream::tungstenite::{Error as WsError, Message};

use crate::phoenix::{Incoming, Outbox, Ws, connect_websocket, next_json};

/// How long a Janus request may take to be answered.
const REPLY_TIMEOUT: Duration = Duration::from_secs(20);

/// One Janus session with one VideoRoom plugin handle.
pub struct JanusSession {
    outbox: Outbox,
    /// The receiving half, until [`JanusSession::take_frames`] hands it to a reader.
    stream: Option<SplitStream<Ws>>,
    session: u64,
    handle: u64,
}

/// What one read of the socket (`None`: it ended) means to a load peer: events and acks are
/// nothing it acts on once it publishes or subscribes.
pub fn incoming_of(frame: Option<Result<Message, WsError>>) -> Incoming {
    match frame {
        Some(Ok(_)) => Incoming::Other,
        Some(Err(e)) => Incoming::Closed(format!("janus socket: {e}")),
        None => Incoming::Closed("janus socket closed".into()),
    }
}

/// The numeric room id Janus uses for our room name (stable for a name).
pub fn room_number(room: &str) -> u64 {
    // FNV-1a: a stable hash without a dependency; Janus room ids are positive integers.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in room.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h % 1_000_000_000_000 + 1
}

impl JanusSession {
    /// Connects to `ws://<server>/` from `local_ip`, creates a session and attaches the
    /// VideoRoom plugin.
    pub async fn open(server: SocketAddr, local_ip: IpAddr) -> Result<JanusSession, String> {
        let mut request = format!("ws://{server}/")
            .into_client_request()
            .map_err(|e| format!("request: {e}"))?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            "janus-protocol".parse().expect("a header value"),
        );
        let ws = connect_websocket(server, local_ip, request).await?;
        let (sink, stream) = ws.split();
        let mut j = JanusSession {
            outbox: Outbox::new(sink, 0, "janus"),
            stream: Some(stream),
            session: 0,
            handle: 0,
        };
        let created = j.request(json!({"janus": "create"})).await?;
        j.session = created["data"]["id"].as_u64().ok_or("no session id")?;
        let attached = j
            .request(json!({"janus": "attach", "plugin": "janus.plugin.videoroom"}))
            .await?;
        j.handle = attached["data"]["id"].as_u64().ok_or("no handle id")?;
        Ok(j)
    }

    /// A keepalive (Janus drops sessions silent for 60 s).
    pub async fn keepalive(&mut self) -> Result<(), String> {
        let t = self.transaction();
        let frame = json!({"janus": "keepalive", "session_id": self.session, "transaction": t});
        self.send(frame).await
    }

    /// Creates room `room` if it does not exist yet.
    pub async fn ensure_room(&mut self, room: u64) -> Result<(), String> {
        let body = json!({"request": "create", "room": room, "publishers": 16,
            "audiocodec": "opus", "videocodec": "vp8", "bitrate": 0});
        let reply = self.message(body, None).await?;
        let data = &reply["plugindata"]["data"];
        // 427: the room exists already (another publisher made it).
        if data["videoroom"] == "created" || data["error_code"] == 427 {
            Ok(())
        } else {
            Err(format!("room create: {data}"))
        }
    }

    /// Joins `room` as a publisher and sends `offer` (SDP); returns Janus's answer SDP.
    pub async fn publish(
        &mut self,
        room: u64,
        name: &str,
        offer: String,
    ) -> Result<String, String> {
        let join = json!({"request": "join", "ptype": "publisher", "room": room, "display": name});
        self.message_event(join, None).await?;
        let jsep = json!({"type": "offer", "sdp": offer});
        let answer = self
            .message_event(
                json!({"request": "configure", "audio": true, "video": true}),
                Some(jsep),
            )
            .await?;
        answer["jsep"]["sdp"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("configure gave no answer: {answer}"))
    }

    /// Waits for a publisher in `room`, joins as its subscriber; returns Janus's offer SDP.
    pub async fn subscribe(&mut self, room: u64) -> Result<String, String> {
        let feed = loop {
            let list = self
                .message(json!({"request": "listparticipants", "room": room}), None)
                .await?;
            let participants = list["plugindata"]["data"]["participants"]
                .as_array()
                .cloned();
            let publisher = participants
                .unwrap_or_default()
                .into_iter()
                .find(|p| p["publisher"] == true)
                .and_then(|p| p["id"].as_u64());
            if let Some(id) = publisher {
                break id;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let join = json!({"request": "join", "ptype": "subscriber", "room": room,
            "streams": [{"feed": feed}]});
        let attached = self.message_event(join, None).await?;
        attached["jsep"]["sdp"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("subscriber join gave no offer: {attached}"))
    }

    /// Answers the subscription offer with `answer` (SDP).
    pub async fn start(&mut self, answer: String) -> Result<(), String> {
        let jsep = json!({"type": "answer", "sdp": answer});
        self.message_event(json!({"request": "start"}), Some(jsep))
            .await?;
        Ok(())
    }

    /// Tells Janus our candidates are all in the SDP.
    pub async fn candidates_done(&mut self) -> Result<(), String> {
        let t = self.transaction();
        let frame = json!({"janus": "trickle", "session_id": self.session,
            "handle_id": self.handle, "transaction": t, "candidate": {"completed": true}});
        self.send(frame).await
    }

    /// The socket's frames from now on, each read with [`incoming_of`]; requests that wait for
    /// a reply fail after this. `None` if already taken.
    pub fn take_stream(&mut self) -> Option<SplitStream<Ws>> {
        self.stream.take()
    }

    /// A plugin message answered synchronously (`success`): the reply.
    async fn message(&mut self, body: Value, jsep: Option<Value>) -> Result<Value, String> {
        let mut frame = json!({"janus": "message", "handle_id": self.handle, "body": body});
        if let Some(j) = jsep {
            frame["jsep"] = j;
        }
        self.request(frame).await
    }

    /// A plugin message answered asynchronously (`ack`, then an `event` of the same
    /// transaction): the event; an error event is an `Err`.
    async fn message_event(&mut self, body: Value, jsep: Option<Value>) -> Result<Value, String> {
        let event = self.message(body, jsep).await?;
        let data = &event["plugindata"]["data"];
        if data.get("error").is_some() {
            return Err(format!("janus: {data}"));
        }
        Ok(event)
    }

    /// Sends `frame` with a new transaction and waits for its reply, skipping acks.
    async fn request(&mut self, mut frame: Value) -> Result<Value, String> {
        let t = self.transaction();
        frame["transaction"] = json!(t);
        if self.session != 0 {
            frame["session_id"] = json!(self.session);
        }
        self.send(frame).await?;
        let wait = async {
            loop {
                let Some(stream) = self.stream.as_mut() else {
                    return Err("janus socket handed to its reader".to_string());
                };
                let Some(reply) = next_json(stream).await else {
                    return Err("janus socket closed".to_string());
                };
                if reply["transaction"] != json!(t) || reply["janus"] == "ack" {
                    continue;
                }
                if reply["janus"] == "error" {
                    return Err(format!("janus error: {}", reply["error"]));
                }
                return Ok(reply);
            }
        };
        tokio::time::timeout(REPLY_TIMEOUT, wait)
            .await
            .map_err(|_| "janus did not answer".to_string())?
    }

    fn transaction(&mut self) -> String {
        format!("t{}", self.outbox.next_number())
    }

    async fn send(&mut self, frame: Value) -> Result<(), String> {
        self.outbox.send(frame.to_string()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_room_name_always_maps_to_the_same_positive_janus_room_number() {
        let a = room_number("load-abc-0");
        assert_eq!(a, room_number("load-abc-0"));
        assert_ne!(a, room_number("load-abc-1"));
        assert!(a > 0);
    }
}
