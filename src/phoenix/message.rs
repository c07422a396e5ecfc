//! The wire model: the three kinds of frames Phoenix exchanges, as plain data.
//!
//! Serializers turn bytes into these values and back; nothing here knows about sockets or
//! channels. `ref` and `join_ref` are opaque to the server and kept as raw JSON values so they
//! are echoed verbatim (phoenix.js sends decimal strings, other clients may send numbers).

use bytes::Bytes;
use serde_json::Value;

/// Event name of a reply frame.
pub const PHX_REPLY: &str = "phx_reply";
/// Event a client sends to join a topic.
pub const PHX_JOIN: &str = "phx_join";
/// Event a client sends to leave a topic.
pub const PHX_LEAVE: &str = "phx_leave";
/// Event the server sends when a channel instance closed normally.
pub const PHX_CLOSE: &str = "phx_close";
/// Event the server sends when a channel instance crashed.
pub const PHX_ERROR: &str = "phx_error";
/// Topic of heartbeats.
pub const HEARTBEAT_TOPIC: &str = "phoenix";
/// Event of heartbeats.
pub const HEARTBEAT_EVENT: &str = "heartbeat";

/// A message payload: JSON, or raw bytes (sent as a V2 binary frame).
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// A JSON value (outgoing pushes and broadcasts should be objects).
    Json(Value),
    /// Raw bytes; only the V2 serializer can carry them.
    Binary(Bytes),
}

impl Payload {
    /// The empty JSON object `{}`.
    pub fn empty() -> Self {
        Payload::Json(Value::Object(Default::default()))
    }

    /// The JSON value, or `None` for a binary payload.
    pub fn as_json(&self) -> Option<&Value> {
        match self {
            Payload::Json(v) => Some(v),
            Payload::Binary(_) => None,
        }
    }

    /// The JSON value; a binary payload becomes `null`.
    pub fn into_json(self) -> Value {
        match self {
            Payload::Json(v) => v,
            Payload::Binary(_) => Value::Null,
        }
    }
}

impl From<Value> for Payload {
    fn from(v: Value) -> Self {
        Payload::Json(v)
    }
}

impl From<Bytes> for Payload {
    fn from(b: Bytes) -> Self {
        Payload::Binary(b)
    }
}

impl From<Vec<u8>> for Payload {
    fn from(b: Vec<u8>) -> Self {
        Payload::Binary(Bytes::from(b))
    }
}

/// A message: what clients send, and what channels push (`[join_ref, ref, topic, event, payload]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Identity of the channel instance (`null` when absent).
    pub join_ref: Value,
    /// Client reference to match a reply (`null` for server pushes).
    pub r#ref: Value,
    /// Topic, e.g. `room:lobby`.
    pub topic: String,
    /// Event name.
    pub event: String,
    /// Payload.
    pub payload: Payload,
}

/// A reply to a client message, encoded as event `phx_reply` with `{"status","response"}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// join_ref of the channel instance (`null` for heartbeat and "unmatched topic").
    pub join_ref: Value,
    /// The ref of the message being answered.
    pub r#ref: Value,
    /// Topic.
    pub topic: String,
    /// Status: `"ok"`, `"error"` or app-defined; `None` encodes as JSON `null`.
    pub status: Option<String>,
    /// The `response` field.
    pub payload: Payload,
}

/// A PubSub fan-out frame: no refs.
#[derive(Debug, Clone, PartialEq)]
pub struct Broadcast {
    /// Topic.
    pub topic: String,
    /// Event name.
    pub event: String,
    /// Payload.
    pub payload: Payload,
}

/// Any frame the server sends.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    /// A push (or phx_close / phx_error).
    Message(Message),
    /// A phx_reply.
    Reply(Reply),
    /// A broadcast.
    Broadcast(Broadcast),
}

/// One WebSocket frame (or one LongPoll message).
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// Text frame holding JSON.
    Text(String),
    /// Binary frame (V2 binary encoding).
    Binary(Bytes),
}

impl Reply {
    /// An `ok` reply with an empty response.
    pub fn ok(join_ref: Value, r#ref: Value, topic: &str) -> Self {
        Reply {
            join_ref,
            r#ref,
            topic: topic.to_owned(),
            status: Some("ok".into()),
            payload: Payload::empty(),
        }
    }

    /// An `error` reply with `{"reason": reason}`.
    pub fn error_reason(join_ref: Value, r#ref: Value, topic: &str, reason: &str) -> Self {
        Reply {
            join_ref,
            r#ref,
            topic: topic.to_owned(),
            status: Some("error".into()),
            payload: Payload::Json(serde_json::json!({ "reason": reason })),
        }
    }
}
