//! Shared drivers of the fuzz targets: each feeds bytes into the server's real parsers through
//! their public API (see README.md for the list of targets and how to run them).

use std::sync::Arc;
use std::time::{Duration, Instant};

use videoroom::phoenix::{
    EchoChannel, Frame, LocalPubSub, Mailbox, Output, Presence, PubSub, Router, Serializer,
    SocketEnv, SocketLimits, SocketState,
};

/// Frames one fuzz input may feed into one socket (keeps every run short).
const MAX_FRAMES: usize = 64;

/// A fresh Phoenix socket with an `echo:*` channel (the same state machine both transports use)
/// and the receiving end of its mailbox (kept alive so internal deliveries succeed).
pub fn phoenix_socket(
    serializer: Serializer,
    now: Instant,
) -> (
    SocketState,
    tokio::sync::mpsc::Receiver<videoroom::phoenix::mailbox::SocketEvent>,
) {
    let pubsub = LocalPubSub::new();
    let env = SocketEnv {
        pubsub: pubsub.clone() as Arc<dyn PubSub>,
        presence: Presence::new(pubsub),
        metrics: Default::default(),
    };
    let (mailbox, inbox, _overflow) = Mailbox::new(64);
    let router = Router::new().channel("echo:*", || EchoChannel);
    let socket = SocketState::new(
        serializer,
        Arc::new(router),
        SocketLimits::default(),
        env,
        serde_json::json!({}),
        None,
        mailbox,
        now,
    );
    (socket, inbox)
}

/// Feeds `frames` to a fresh socket, then checks what it sent: every text frame the server
/// writes is JSON of the serializer's shape, and nothing follows a close.
pub fn drive_phoenix_socket(serializer: Serializer, frames: &[Frame]) {
    let now = Instant::now();
    let (mut socket, _inbox) = phoenix_socket(serializer, now);
    for (i, frame) in frames.iter().take(MAX_FRAMES).enumerate() {
        // Direct decode first: it must never panic, and must agree with the socket on validity.
        let decoded = serializer.decode(frame);
        socket.handle_frame(now + Duration::from_millis(i as u64), frame);
        if decoded.is_err() {
            assert!(
                socket.is_closed(),
                "an undecodable frame must close the socket"
            );
        }
        drain(serializer, &mut socket);
    }
    socket.handle_timeout(now + Duration::from_secs(3600));
    drain(serializer, &mut socket);
    assert!(socket.is_closed(), "the idle timeout closes every socket");
}

fn drain(serializer: Serializer, socket: &mut SocketState) {
    let mut closed = false;
    while let Some(out) = socket.poll_output() {
        assert!(!closed, "nothing is sent after a close");
        match out {
            Output::Frame(Frame::Text(text)) => {
                let v: serde_json::Value =
                    serde_json::from_str(&text).expect("the server only writes JSON text frames");
                match serializer {
                    Serializer::V1 => assert!(v.is_object(), "V1 frames are objects: {text}"),
                    Serializer::V2 => assert!(
                        v.as_array().is_some_and(|a| a.len() == 5),
                        "V2 frames are 5-arrays: {text}"
                    ),
                }
            }
            Output::Frame(Frame::Binary(b)) => {
                assert_eq!(serializer, Serializer::V2, "only V2 writes binary frames");
                assert!(matches!(b.first(), Some(0..=2)), "binary kind is 0, 1 or 2");
            }
            Output::Close { .. } => closed = true,
        }
    }
}

/// Splits a fuzz input into text frames, one per line (lossy UTF-8, as the WebSocket layer
/// would refuse invalid UTF-8 text anyway).
pub fn text_frames(data: &[u8]) -> Vec<Frame> {
    String::from_utf8_lossy(data)
        .split('\n')
        .filter(|l| !l.is_empty())
        .map(|l| Frame::Text(l.to_owned()))
        .collect()
}
