//! Where a room lives when several nodes serve as one ([`Placement`]); the Redis-backed
//! implementation is [`crate::cluster`]. Without one (a single node) every room is here and the
//! channel joins at once, exactly as before clustering existed.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// The join param a node sets on a join it relays: the receiving node places the room on
/// itself or refuses, never relays again (no chains, no loops).
pub const RELAYED_PARAM: &str = "relayedBy";

/// Where a room lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// On this node: attach to the local registry.
    Here,
    /// On another node: relay the peer's signalling there.
    Node {
        /// The node's id.
        id: Arc<str>,
        /// The base URL of its signalling (`ws://host:port`).
        url: Arc<str>,
    },
}

/// Why a room could not be placed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaceError {
    /// The registry (Redis) cannot be reached or answered an error.
    #[error("cluster registry unavailable: {0}")]
    Unavailable(String),
    /// The room's owner stayed unreachable and its lease did not expire in time.
    #[error("no node could take the room in time")]
    TimedOut,
    /// A relayed join reached a node that does not own the room (the registry moved on).
    #[error("relayed join reached a node that does not own the room")]
    Misrouted,
}

/// What [`Placement::place`] returns.
pub type PlaceFuture = Pin<Box<dyn Future<Output = Result<Place, PlaceError>> + Send>>;

/// Decides which node runs each room (implemented by [`crate::cluster::Cluster`]).
pub trait Placement: Send + Sync + 'static {
    /// Where room `room` lives, claiming it for the least-loaded node if nobody owns it;
    /// `relayed` joins came through another node and are only ever placed here.
    fn place(&self, room: &str, relayed: bool) -> PlaceFuture;

    /// This node's id (relayed joins carry it, logs name it).
    fn node_id(&self) -> &str;

    /// Node `node`, owner of `room`, refused our connection: nothing listens there, so its
    /// registrations are dropped now instead of waiting for their leases to run out.
    fn refused(&self, room: &str, node: &str);
}
