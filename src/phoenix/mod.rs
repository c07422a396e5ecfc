//! A Phoenix Channels server, wire-compatible with the `phoenix` npm client (1.5 → 1.8).
//!
//! # The protocol
//!
//! A client opens one socket (WebSocket at `<mount>/websocket`, or LongPoll at
//! `<mount>/longpoll`) and multiplexes *channels* over it, one per topic. Every frame is
//! `[join_ref, ref, topic, event, payload]` (V2, `vsn=2.0.0`) or
//! `{"topic","event","payload","ref"}` (V1, the default). Raw-byte payloads use V2 binary frames.
//!
//! * `ref`: chosen by the client per message; the server echoes it in the `phx_reply`
//!   (`{"status": …, "response": …}`). Server pushes have `ref = null`.
//! * `join_ref`: the `ref` of the `phx_join` that created the channel instance. Every later frame
//!   of that instance carries it; frames with a stale join_ref are dropped on both sides.
//! * Reserved events: `phx_join`, `phx_leave`, `phx_reply`, `phx_close` (the channel ended
//!   normally, `ref = join_ref`), `phx_error` (it crashed, `{"reason":"channel_crash"}`), and
//!   `heartbeat` on topic `phoenix` (answered at once, no channel involved).
//! * Error replies: `{"reason":"unmatched topic"}` (no route or not joined; `join_ref` null),
//!   `{"reason":"too many channels joined"}`, `{"reason":"join crashed"}`.
//!
//! # Pieces
//!
//! * [`message`]: the data model; [`serializer`]: V1/V2/binary and `vsn` negotiation.
//! * [`socket`]: the sans-IO multiplexer enforcing the rules above (both transports use it).
//! * [`channel`]: the [`Channel`] trait, [`ChannelContext`], the [`Router`].
//! * [`pubsub`] and [`presence`]: fan-out and who-is-here, node-local behind a trait.
//! * [`transport`]: the warp shells (WebSocket, LongPoll), handshake checks, connect params,
//!   and the [`transport::SocketMount`] builder that turns a socket definition into routes.
//!
//! ```no_run
//! use videoroom::phoenix::{Channel, ChannelContext, HandleIn, JoinReply, Payload, Router};
//! use videoroom::phoenix::transport::SocketMount;
//! use serde_json::{json, Value};
//!
//! struct Echo;
//! impl Channel for Echo {
//!     type Info = ();
//!     fn join(&mut self, _t: &str, _p: Value, _c: &mut ChannelContext) -> JoinReply {
//!         Ok(json!({}))
//!     }
//!     fn handle_in(&mut self, _e: &str, p: Payload, _c: &mut ChannelContext) -> HandleIn {
//!         HandleIn::ok_with(p)
//!     }
//! }
//! let router = Router::new().channel("echo:*", || Echo);
//! let mount = SocketMount::new("/socket", router);
//! ```

pub mod channel;
pub mod echo;
pub mod mailbox;
pub mod message;
pub mod metrics;
pub mod presence;
pub mod pubsub;
pub mod serializer;
pub mod socket;
pub mod transport;

pub use channel::{
    Channel, ChannelContext, ChannelSender, Flow, HandleIn, JoinReply, ReplyRef, Router,
    StopReason, TerminateReason,
};
pub use echo::EchoChannel;
pub use mailbox::{Mailbox, MailboxError};
pub use message::{Broadcast, Frame, Message, Outgoing, Payload, Reply};
pub use presence::Presence;
pub use pubsub::{LocalPubSub, PubSub, Published, SubscriptionId};
pub use serializer::Serializer;
pub use socket::{Output, SocketEnv, SocketLimits, SocketState};

#[cfg(test)]
mod layering {
    /// `phoenix` is a reusable Channels server: it must not depend on the application.
    #[test]
    fn phoenix_never_imports_rooms_media_web_or_app() {
        fn scan(dir: &std::path::Path, hits: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).expect("src/phoenix is readable") {
                let path = entry.expect("dir entry").path();
                if path.is_dir() {
                    scan(&path, hits);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).expect("source is UTF-8");
                    // Built at run time so this file does not match itself.
                    for module in ["room", "rtc", "web", "app", "config"] {
                        let forbidden = format!("crate::{module}");
                        if text.contains(&forbidden) {
                            hits.push(format!("{} uses {forbidden}", path.display()));
                        }
                    }
                }
            }
        }
        let mut hits = Vec::new();
        scan(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/phoenix"),
            &mut hits,
        );
        assert!(hits.is_empty(), "{hits:#?}");
    }
}
