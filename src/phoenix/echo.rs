//! A small example channel: echoes every event back to its sender.
//!
//! `join` answers `{}`; every event is pushed back with the same name and payload, and
//! replied `{"status":"ok","response":payload}`. Binary payloads come back binary. It shows the
//! whole [`Channel`] surface a real channel needs and serves conformance tests (`echo:*`).

use super::channel::{Channel, ChannelContext, HandleIn, JoinReply};
use super::message::Payload;
use serde_json::{Value, json};

/// Echoes every event (see the module docs).
#[derive(Debug, Default, Clone, Copy)]
pub struct EchoChannel;

impl Channel for EchoChannel {
    type Info = ();

    fn join(&mut self, _topic: &str, _payload: Value, _ctx: &mut ChannelContext) -> JoinReply {
        Ok(json!({}))
    }

    fn handle_in(&mut self, event: &str, payload: Payload, ctx: &mut ChannelContext) -> HandleIn {
        ctx.push(event, payload.clone());
        HandleIn::ok_with(payload)
    }
}
