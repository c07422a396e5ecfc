//! The admission hook: decides whether a peer that sent `join` becomes a member.
//!
//! The Elixir room answered the engine's `{:new_peer, …}` with `{:accept_new_peer, …}` or
//! `{:deny_new_peer, id, data: …}`; here the room asks an [`Admission`] the same question,
//! synchronously, while it handles the `join`.

use serde_json::{Value, json};

use crate::rtc::ids::PeerId;

/// What a room asks before admitting a peer.
pub trait Admission: Send + Sync + 'static {
    /// `Ok(())` admits `peer` into `room` (which has `members` members now); `Err(data)` denies
    /// it and `data` becomes the `peerDenied` payload (e.g. `{"reason": "…"}`).
    fn admit(
        &self,
        room: &str,
        peer: PeerId,
        metadata: &Value,
        members: usize,
    ) -> Result<(), Value>;
}

/// The default policy: everyone is admitted unless the room already has `max_peers` members.
#[derive(Debug, Clone, Copy, Default)]
pub struct MaxPeers {
    /// The most members a room may have; `None` means no limit (the demo's behaviour).
    pub max_peers: Option<usize>,
}

impl Admission for MaxPeers {
    fn admit(
        &self,
        _room: &str,
        _peer: PeerId,
        _metadata: &Value,
        members: usize,
    ) -> Result<(), Value> {
        match self.max_peers {
            Some(max) if members >= max => Err(json!({ "reason": "room is full" })),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_peers_denies_the_peer_beyond_the_limit() {
        let policy = MaxPeers { max_peers: Some(2) };
        let p = PeerId::new_v4();
        assert!(policy.admit("r", p, &Value::Null, 1).is_ok());
        assert_eq!(
            policy.admit("r", p, &Value::Null, 2),
            Err(json!({"reason": "room is full"}))
        );
        assert!(
            MaxPeers::default()
                .admit("r", p, &Value::Null, 10_000)
                .is_ok()
        );
    }
}
