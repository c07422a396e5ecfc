//! Serializers: V1 JSON (`vsn` 1.0.x), V2 JSON (2.0.x) and V2 binary frames, plus `vsn`
//! negotiation.
//!
//! * V1: a JSON object `{"topic","event","payload","ref"}` (inbound may carry `join_ref`;
//!   outbound never does). Text only.
//! * V2: a JSON array `[join_ref, ref, topic, event, payload]` in text frames; raw-byte payloads
//!   travel in binary frames whose first byte is the kind: 0 push, 1 reply, 2 broadcast. Every
//!   header string is at most 255 bytes.
//!
//! Decoding never panics: bad input is a [`DecodeError`] and the socket closes with 1011.

use super::message::{Broadcast, Frame, Message, Outgoing, PHX_REPLY, Payload};
use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{Map, Value, json};

/// Why an inbound frame could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    /// The text was not JSON.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// The JSON did not have the serializer's shape.
    #[error("invalid message shape: {0}")]
    Shape(&'static str),
    /// A binary frame was truncated or of an unknown kind.
    #[error("invalid binary frame: {0}")]
    Binary(&'static str),
}

/// Why an outgoing frame could not be encoded.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum EncodeError {
    /// V1 cannot carry raw bytes.
    #[error("the V1 serializer cannot carry binary payloads")]
    BinaryUnsupported,
    /// A binary header field is longer than 255 bytes.
    #[error("binary header field {0} is longer than 255 bytes")]
    FieldTooLong(&'static str),
    /// A ref in a binary frame is neither a string, a number nor null.
    #[error("binary header field {0} must be a string")]
    FieldNotString(&'static str),
}

/// The wire format negotiated for one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Serializer {
    /// `vsn` 1.0.x (and the default when no `vsn` is given).
    V1,
    /// `vsn` 2.0.x.
    V2,
}

impl Serializer {
    /// Picks the serializer for a `vsn` query value: missing → V1, `~> 1.0.0` → V1,
    /// `~> 2.0.0` → V2, anything else (other versions, non-semver) → `None` (refuse with 403).
    pub fn negotiate(vsn: Option<&str>) -> Option<Serializer> {
        let Some(vsn) = vsn else {
            return Some(Serializer::V1);
        };
        let v = parse_semver(vsn)?;
        // `~> X.Y.Z` means >= X.Y.Z and < X.(Y+1).0; a pre-release of X.Y.0 sorts below X.Y.0.
        let within = |major: u64| v.major == major && v.minor == 0 && !(v.patch == 0 && v.pre);
        if within(1) {
            Some(Serializer::V1)
        } else if within(2) {
            Some(Serializer::V2)
        } else {
            None
        }
    }

    /// Index of this serializer (for per-serializer caches).
    pub fn index(self) -> usize {
        match self {
            Serializer::V1 => 0,
            Serializer::V2 => 1,
        }
    }

    /// Decodes one inbound frame.
    pub fn decode(self, frame: &Frame) -> Result<Message, DecodeError> {
        match (self, frame) {
            (Serializer::V1, Frame::Text(t)) => decode_v1(t.as_bytes()),
            (Serializer::V1, Frame::Binary(b)) => decode_v1(b),
            (Serializer::V2, Frame::Text(t)) => decode_v2_json(t),
            (Serializer::V2, Frame::Binary(b)) => decode_v2_binary(b),
        }
    }

    /// Encodes one outgoing frame (binary iff the payload is raw bytes).
    pub fn encode(self, out: &Outgoing) -> Result<Frame, EncodeError> {
        match self {
            Serializer::V1 => encode_v1(out).map(Frame::Text),
            Serializer::V2 => encode_v2(out),
        }
    }
}

struct SemVer {
    major: u64,
    minor: u64,
    patch: u64,
    pre: bool,
}

fn parse_semver(s: &str) -> Option<SemVer> {
    let s = s.split_once('+').map_or(s, |(v, _build)| v);
    let (core, pre) = match s.split_once('-') {
        Some((core, pre)) if !pre.is_empty() => (core, true),
        Some(_) => return None,
        None => (s, false),
    };
    let mut parts = core.split('.');
    let num = |p: Option<&str>| -> Option<u64> {
        let p = p?;
        if p.is_empty()
            || !p.bytes().all(|b| b.is_ascii_digit())
            || (p.len() > 1 && p.starts_with('0'))
        {
            return None;
        }
        p.parse().ok()
    };
    let v = SemVer {
        major: num(parts.next())?,
        minor: num(parts.next())?,
        patch: num(parts.next())?,
        pre,
    };
    parts.next().is_none().then_some(v)
}

fn string_field(v: &Value, what: &'static str) -> Result<String, DecodeError> {
    v.as_str()
        .map(str::to_owned)
        .ok_or(DecodeError::Shape(what))
}

fn decode_v1(bytes: &[u8]) -> Result<Message, DecodeError> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| DecodeError::Json(e.to_string()))?;
    let Value::Object(mut map) = v else {
        return Err(DecodeError::Shape("V1 message must be a JSON object"));
    };
    for key in ["topic", "event", "payload", "ref"] {
        if !map.contains_key(key) {
            return Err(DecodeError::Shape(
                "V1 message lacks topic, event, payload or ref",
            ));
        }
    }
    Ok(Message {
        topic: string_field(&map["topic"], "topic must be a string")?,
        event: string_field(&map["event"], "event must be a string")?,
        payload: Payload::Json(map.remove("payload").unwrap_or(Value::Null)),
        r#ref: map.remove("ref").unwrap_or(Value::Null),
        join_ref: map.remove("join_ref").unwrap_or(Value::Null),
    })
}

fn decode_v2_json(text: &str) -> Result<Message, DecodeError> {
    let v: Value = serde_json::from_str(text).map_err(|e| DecodeError::Json(e.to_string()))?;
    let Value::Array(items) = v else {
        return Err(DecodeError::Shape("V2 message must be a JSON array"));
    };
    if items.len() < 5 {
        return Err(DecodeError::Shape("V2 message must have five elements"));
    }
    // Elements beyond the fifth are ignored, as Phoenix does.
    let mut it = items.into_iter();
    let mut next = || it.next().unwrap_or(Value::Null);
    let join_ref = next();
    let r#ref = next();
    let topic = string_field(&next(), "topic must be a string")?;
    let event = string_field(&next(), "event must be a string")?;
    Ok(Message {
        join_ref,
        r#ref,
        topic,
        event,
        payload: Payload::Json(next()),
    })
}

fn decode_v2_binary(b: &[u8]) -> Result<Message, DecodeError> {
    if b.first() != Some(&0) {
        return Err(DecodeError::Binary(
            "unknown kind (clients may only send pushes)",
        ));
    }
    if b.len() < 5 {
        return Err(DecodeError::Binary("truncated header"));
    }
    let lens = [b[1] as usize, b[2] as usize, b[3] as usize, b[4] as usize];
    let mut pos = 5;
    let mut fields = Vec::with_capacity(4);
    for len in lens {
        let end = pos + len;
        let raw = b
            .get(pos..end)
            .ok_or(DecodeError::Binary("truncated header"))?;
        let s = std::str::from_utf8(raw).map_err(|_| DecodeError::Binary("header is not UTF-8"))?;
        fields.push(s.to_owned());
        pos = end;
    }
    let event = fields.pop().unwrap_or_default();
    let topic = fields.pop().unwrap_or_default();
    let r#ref = fields.pop().unwrap_or_default();
    let join_ref = fields.pop().unwrap_or_default();
    // An empty ref string is how binary frames spell null.
    let opt = |s: String| {
        if s.is_empty() {
            Value::Null
        } else {
            Value::String(s)
        }
    };
    Ok(Message {
        join_ref: opt(join_ref),
        r#ref: opt(r#ref),
        topic,
        event,
        payload: Payload::Binary(Bytes::copy_from_slice(&b[pos..])),
    })
}

fn reply_envelope(status: &Option<String>, response: Value) -> Value {
    json!({ "status": status, "response": response })
}

fn encode_v1(out: &Outgoing) -> Result<String, EncodeError> {
    let json_of = |p: &Payload| p.as_json().cloned().ok_or(EncodeError::BinaryUnsupported);
    let (topic, event, payload, r#ref) = match out {
        Outgoing::Message(m) => (
            &m.topic,
            m.event.as_str(),
            json_of(&m.payload)?,
            m.r#ref.clone(),
        ),
        Outgoing::Reply(r) => (
            &r.topic,
            PHX_REPLY,
            reply_envelope(&r.status, json_of(&r.payload)?),
            r.r#ref.clone(),
        ),
        Outgoing::Broadcast(b) => (
            &b.topic,
            b.event.as_str(),
            json_of(&b.payload)?,
            Value::Null,
        ),
    };
    let mut map = Map::new();
    map.insert("topic".into(), Value::String(topic.clone()));
    map.insert("event".into(), Value::String(event.to_owned()));
    map.insert("payload".into(), payload);
    map.insert("ref".into(), r#ref);
    Ok(Value::Object(map).to_string())
}

fn encode_v2(out: &Outgoing) -> Result<Frame, EncodeError> {
    let array = |jr: &Value, r: &Value, topic: &str, event: &str, payload: Value| {
        Frame::Text(
            Value::Array(vec![
                jr.clone(),
                r.clone(),
                topic.into(),
                event.into(),
                payload,
            ])
            .to_string(),
        )
    };
    match out {
        Outgoing::Message(m) => match &m.payload {
            Payload::Json(p) => Ok(array(&m.join_ref, &m.r#ref, &m.topic, &m.event, p.clone())),
            Payload::Binary(data) => {
                let jr = ref_string(&m.join_ref, "join_ref")?;
                binary(
                    0,
                    &[(&jr, "join_ref"), (&m.topic, "topic"), (&m.event, "event")],
                    data,
                )
            }
        },
        Outgoing::Reply(r) => match &r.payload {
            Payload::Json(p) => Ok(array(
                &r.join_ref,
                &r.r#ref,
                &r.topic,
                PHX_REPLY,
                reply_envelope(&r.status, p.clone()),
            )),
            Payload::Binary(data) => {
                let jr = ref_string(&r.join_ref, "join_ref")?;
                let rf = ref_string(&r.r#ref, "ref")?;
                let status = r.status.clone().unwrap_or_default();
                let fields = [
                    (&jr, "join_ref"),
                    (&rf, "ref"),
                    (&r.topic, "topic"),
                    (&status, "status"),
                ];
                binary(1, &fields, data)
            }
        },
        Outgoing::Broadcast(b) => match &b.payload {
            Payload::Json(p) => Ok(array(
                &Value::Null,
                &Value::Null,
                &b.topic,
                &b.event,
                p.clone(),
            )),
            Payload::Binary(data) => binary(2, &[(&b.topic, "topic"), (&b.event, "event")], data),
        },
    }
}

fn ref_string(v: &Value, what: &'static str) -> Result<String, EncodeError> {
    match v {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(EncodeError::FieldNotString(what)),
    }
}

fn binary(
    kind: u8,
    fields: &[(&String, &'static str)],
    data: &Bytes,
) -> Result<Frame, EncodeError> {
    let header: usize = fields.iter().map(|(s, _)| s.len()).sum();
    let mut buf = BytesMut::with_capacity(1 + fields.len() + header + data.len());
    buf.put_u8(kind);
    for (s, what) in fields {
        let len = u8::try_from(s.len()).map_err(|_| EncodeError::FieldTooLong(what))?;
        buf.put_u8(len);
    }
    for (s, _) in fields {
        buf.put_slice(s.as_bytes());
    }
    buf.put_slice(data);
    Ok(Frame::Binary(buf.freeze()))
}

/// Convenience: encodes a broadcast (used by PubSub's per-serializer cache).
pub fn encode_broadcast(serializer: Serializer, b: &Broadcast) -> Result<Frame, EncodeError> {
    serializer.encode(&Outgoing::Broadcast(b.clone()))
}

#[cfg(test)]
#[path = "serializer_tests.rs"]
mod tests;
