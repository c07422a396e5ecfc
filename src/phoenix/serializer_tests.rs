//! Serializer vectors: the frames Phoenix's own serializer tests (V1 JSON, V2 JSON and binary)
//! expect, written out literally.

use super::*;
use crate::phoenix::message::{Broadcast, Frame, Message, Outgoing, Payload, Reply};
use serde_json::{Value, json};

fn bin(parts: &[&[u8]]) -> Bytes {
    Bytes::from(parts.concat())
}

/// A server push of `event` on `topic` to the channel instance `join_ref` (a push has no ref).
fn push(join_ref: Value, topic: &str, event: &str, payload: Payload) -> Message {
    Message {
        join_ref,
        r#ref: Value::Null,
        topic: topic.into(),
        event: event.into(),
        payload,
    }
}

/// A reply to `r#ref` on `topic` for the channel instance `join_ref`.
fn reply(join_ref: Value, r#ref: Value, topic: &str, status: Option<&str>) -> Reply {
    Reply {
        join_ref,
        r#ref,
        topic: topic.into(),
        status: status.map(str::to_owned),
        payload: Payload::empty(),
    }
}

fn text_json(f: Frame) -> Value {
    match f {
        Frame::Text(t) => serde_json::from_str(&t).expect("valid JSON"),
        Frame::Binary(_) => panic!("expected a text frame"),
    }
}

#[test]
fn vsn_negotiation_follows_tilde_arrow_semver() {
    assert_eq!(Serializer::negotiate(None), Some(Serializer::V1));
    assert_eq!(Serializer::negotiate(Some("1.0.0")), Some(Serializer::V1));
    assert_eq!(Serializer::negotiate(Some("1.0.7")), Some(Serializer::V1));
    assert_eq!(Serializer::negotiate(Some("2.0.0")), Some(Serializer::V2));
    assert_eq!(
        Serializer::negotiate(Some("2.0.3+build")),
        Some(Serializer::V2)
    );
    for refused in [
        "123.1.1",
        "2.1.0",
        "1.1.0",
        "abc",
        "2.0",
        "2.0.0.0",
        "02.0.0",
        "2.0.0-rc.1",
        "",
    ] {
        assert_eq!(Serializer::negotiate(Some(refused)), None, "{refused}");
    }
}

#[test]
fn binary_push_is_encoded_with_a_four_byte_header_and_no_ref() {
    let efg = Payload::Binary(Bytes::from_static(&[101, 102, 103]));
    let m = push(json!("12"), "topic", "event", efg);
    let f = Serializer::V2
        .encode(&Outgoing::Message(m))
        .expect("encodes");
    let want = [
        0x00, 0x02, 0x05, 0x05, 0x31, 0x32, 0x74, 0x6f, 0x70, 0x69, 0x63, 0x65, 0x76, 0x65, 0x6e,
        0x74, 0x65, 0x66, 0x67,
    ];
    assert_eq!(f, Frame::Binary(Bytes::copy_from_slice(&want)));
}

#[test]
fn binary_reply_carries_the_status_in_the_fifth_length() {
    let r = Reply {
        payload: Payload::Binary(Bytes::from_static(&[101, 102, 103])),
        ..reply(json!("12"), json!("123"), "topic", Some("ok"))
    };
    let f = Serializer::V2.encode(&Outgoing::Reply(r)).expect("encodes");
    assert_eq!(
        f,
        Frame::Binary(bin(&[
            &[1, 2, 3, 5, 2],
            b"12",
            b"123",
            b"topic",
            b"ok",
            &[101, 102, 103]
        ]))
    );
}

#[test]
fn binary_broadcast_has_a_three_byte_header() {
    let b = Broadcast {
        topic: "topic".into(),
        event: "event".into(),
        payload: Payload::Binary(Bytes::from_static(b"efg")),
    };
    let f = Serializer::V2
        .encode(&Outgoing::Broadcast(b))
        .expect("encodes");
    assert_eq!(
        f,
        Frame::Binary(bin(&[&[2, 5, 5], b"topic", b"event", b"efg"]))
    );
}

#[test]
fn binary_client_push_decodes_all_four_strings_and_the_payload() {
    let frame = Frame::Binary(bin(&[
        &[0, 2, 3, 5, 5],
        b"12",
        b"123",
        b"topic",
        b"event",
        &[101, 102, 103],
    ]));
    let m = Serializer::V2.decode(&frame).expect("decodes");
    assert_eq!(m.join_ref, json!("12"));
    assert_eq!(m.r#ref, json!("123"));
    assert_eq!(m.topic, "topic");
    assert_eq!(m.event, "event");
    assert_eq!(
        m.payload,
        Payload::Binary(Bytes::from_static(&[101, 102, 103]))
    );
    // phoenix.js's own vector.
    let js = Frame::Binary(Bytes::from_static(&[
        0x00, 0x01, 0x01, 0x01, 0x01, 0x30, 0x31, 0x74, 0x65, 0x01,
    ]));
    let m = Serializer::V2.decode(&js).expect("decodes");
    assert_eq!(
        (m.join_ref, m.r#ref, m.topic.as_str(), m.event.as_str()),
        (json!("0"), json!("1"), "t", "e")
    );
}

#[test]
fn header_strings_longer_than_255_bytes_do_not_encode() {
    let long = "x".repeat(256);
    let m = push(json!("1"), &long, "e", Payload::Binary(Bytes::new()));
    assert_eq!(
        Serializer::V2.encode(&Outgoing::Message(m)),
        Err(EncodeError::FieldTooLong("topic"))
    );
}

#[test]
fn truncated_or_unknown_binary_frames_are_decode_errors() {
    for bad in [
        &[5u8, 0, 0, 0, 0][..],
        &[0, 2, 3][..],
        &[0, 9, 0, 0, 0, b'1'][..],
        &[][..],
        &[1, 0, 0, 0, 0][..],
    ] {
        assert!(
            Serializer::V2
                .decode(&Frame::Binary(Bytes::copy_from_slice(bad)))
                .is_err(),
            "{bad:?}"
        );
    }
}

#[test]
fn v2_json_vectors_match_phoenix() {
    let m = push(Value::Null, "t", "e", Payload::Json(json!({"m":1})));
    assert_eq!(
        text_json(Serializer::V2.encode(&Outgoing::Message(m)).unwrap()),
        json!([null, null, "t", "e", {"m":1}])
    );
    let r = Reply {
        payload: Payload::Json(json!({"m":1})),
        ..reply(Value::Null, Value::Null, "t", None)
    };
    assert_eq!(
        text_json(Serializer::V2.encode(&Outgoing::Reply(r)).unwrap()),
        json!([null, null, "t", "phx_reply", {"response": {"m":1}, "status": null}])
    );
}

#[test]
fn v1_output_never_contains_join_ref() {
    let m = push(json!("9"), "t", "e", Payload::Json(json!("m")));
    assert_eq!(
        text_json(Serializer::V1.encode(&Outgoing::Message(m)).unwrap()),
        json!({"event":"e","payload":"m","ref":null,"topic":"t"})
    );
    let r = Reply::ok(json!("9"), json!("1"), "room:x");
    assert_eq!(
        text_json(Serializer::V1.encode(&Outgoing::Reply(r)).unwrap()),
        json!({"topic":"room:x","event":"phx_reply","payload":{"status":"ok","response":{}},"ref":"1"})
    );
}

#[test]
fn v1_cannot_carry_binary() {
    let b = Broadcast {
        topic: "t".into(),
        event: "e".into(),
        payload: Payload::Binary(Bytes::new()),
    };
    assert_eq!(
        Serializer::V1.encode(&Outgoing::Broadcast(b)),
        Err(EncodeError::BinaryUnsupported)
    );
}

#[test]
fn v1_decode_requires_an_object_with_the_four_keys() {
    assert!(
        Serializer::V1
            .decode(&Frame::Text("[1,2,3,4,5]".into()))
            .is_err()
    );
    assert!(
        Serializer::V1
            .decode(&Frame::Text(
                r#"{"topic":"t","event":"e","payload":{}}"#.into()
            ))
            .is_err()
    );
    let m = Serializer::V1
        .decode(&Frame::Text(
            r#"{"topic":"t","event":"e","payload":{},"ref":"1","join_ref":"11"}"#.into(),
        ))
        .expect("decodes");
    assert_eq!((m.join_ref, m.r#ref), (json!("11"), json!("1")));
}

#[test]
fn v2_decode_ignores_extra_elements_and_rejects_short_arrays() {
    let m = Serializer::V2
        .decode(&Frame::Text(r#"["1","2","t","e",{},"extra"]"#.into()))
        .expect("decodes");
    assert_eq!(m.topic, "t");
    for bad in [
        r#"{"topic":"x"}"#,
        "[1,2]",
        "not json",
        r#"[null,null,1,"e",{}]"#,
    ] {
        assert!(
            Serializer::V2.decode(&Frame::Text(bad.into())).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn refs_are_echoed_verbatim_in_json_and_stringified_in_binary() {
    let r = reply(json!(7), json!(8), "t", Some("ok"));
    assert_eq!(
        text_json(Serializer::V2.encode(&Outgoing::Reply(r.clone())).unwrap())[1],
        json!(8)
    );
    let rb = Reply {
        payload: Payload::Binary(Bytes::new()),
        ..r
    };
    assert_eq!(
        Serializer::V2.encode(&Outgoing::Reply(rb)).unwrap(),
        Frame::Binary(bin(&[&[1, 1, 1, 1, 2], b"7", b"8", b"t", b"ok"]))
    );
}
