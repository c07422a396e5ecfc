//! Rooms: the only module that knows both Phoenix channels and the media engine.
//!
//! # Lifecycle
//! - A browser joins the Phoenix topic `room:<id>`; [`PeerChannel`] asks the [`RoomRegistry`]
//!   for the room, starting it if needed (never two rooms for one id), assigns the peer a UUID v4
//!   id and attaches it to the room. The join reply is `{}`, or an error: `{"reason": "room is
//!   busy"}` (the room has [`RoomsConfig::max_attached`] channels), `{"reason": "too many
//!   rooms"}` (starting it would exceed [`RoomsConfig::max_rooms`]), `{"reason": "failed to
//!   start room"}` (anything else).
//! - The browser's `mediaEvent` pushes go to the room actor, which owns the room's
//!   [`crate::rtc::engine::Engine`]; the engine's events come back as `mediaEvent` pushes.
//! - A `join` media event is refused with `peerDenied {"reason": "room is full"}` when the room
//!   has [`RoomsConfig::max_peers`] members, else asks the room's [`Admission`] hook (default
//!   [`MaxPeers`]: everyone, up to an optional maximum → the same `peerDenied`).
//! - `chat` pushes from members go through the room actor, which fans them out to every
//!   member with the sender's display name and the server's time ([`chat`]); nothing is kept.
//! - When the channel ends the peer's lease says how ([`Departure`]): a `phx_leave` (or the
//!   channel stopping itself) removes the peer at once, `peerLeft` to the others, as does a
//!   `leave` media event. A lost socket *detaches* it: a member whose media is connected is
//!   held for [`RoomsConfig::reconnect_grace`] (nobody hears of it, its media keeps flowing),
//!   anyone else is removed at once. A held peer whose media dies is removed within the SFU's
//!   peer timeout (a few seconds), as before.
//! - Resume: `peerAccepted` carries a `resumeToken` ([`resume`]). A channel joining
//!   `room:<id>` with `{"resumeToken": …}` takes that peer back ([`RoomRegistry::resume`]): the
//!   old channel, if the server still had it, is closed, the new one gets `peerAccepted` again
//!   (the room as it is now, and the next token) and any `offerData` it missed. A token that is
//!   spent, dead, of another room or unknown is refused with a join error `{"reason": …}`
//!   ([`ResumeRefusal::reason`]) and the peer it names is not touched.
//! - A room with no peer for [`RoomsConfig::empty_grace`] leaves the registry and stops.
//!
//! # Ownership
//! The registry owns the map of room ids to [`RoomHandle`]s and hands each room it spawns its
//! settings and its media ([`crate::rtc::driver::MediaPlane::room`]: the media driver with the
//! engine, the SFU and the room's UDP route); each room task owns those; each channel owns its
//! peer's lease. `room` never touches the UDP socket or the SFU itself: the driver does. Nothing is
//! shared mutably across tasks except the registry's map (a short, never-awaited lock).
//!
//! # Queue policy: admission never evicts
//! A room's inbox is one channel, bounded by its senders rather than by a shared capacity, so
//! that nobody's burst can fill it for someone else:
//! - Attaches: each takes one of the room's [`RoomsConfig::max_attached`] slots (members plus as
//!   many joiners in flight), counted when queued and given back when the room has removed the
//!   peer. No slot: the channel join is refused `{"reason": "room is busy"}` and that joiner
//!   alone is told; nobody attached notices.
//! - Media events: each peer may have [`RoomsConfig::peer_queue`] of its own waiting. A peer
//!   that exceeds its share is the one flooding: it alone is disconnected (`error` media event
//!   `room overloaded`, channel closed), since silently dropping signalling would leave it
//!   half-negotiated. An admitted peer within its share is never refused, however many others
//!   join at once.
//!
//! So the inbox holds at most `max_attached` attaches and `max_attached × peer_queue` media
//! events; a 1,500-joiner burst gets `max_attached` channels in (each admitted or
//! `peerDenied`) and "room is busy" for the rest.
//!
//! Outbound, a media event to a peer whose channel is full or gone is dropped with one log line
//! per peer (not per event: a mass departure would otherwise log N²/2 lines); the Phoenix
//! layer closes a socket that stops reading, which ends its lease.
//!
//! Every log line carries `room=<id>` and, where a peer is concerned, `peer=<id>`.

mod actor;
mod admission;
pub mod chat;
pub mod metrics;
mod peer_channel;
pub mod placement;
mod registry;
pub mod relay;
pub mod resume;

pub(crate) use actor::{Credit, RoomCommand};
pub use admission::{Admission, MaxPeers};
pub use peer_channel::{PeerChannel, RESUME_TOKEN_PARAM, RoomSocket, TOPIC_PREFIX};
pub use placement::{Place, PlaceError, PlaceFuture, Placement};
pub use registry::{RoomHandle, RoomRegistry, RoomsConfig};
pub use relay::RelayEnd;
pub use resume::ResumeRefusal;

/// How a peer's channel ended, as its lease tells the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Departure {
    /// The client left the channel (`phx_leave`) or the channel stopped itself: remove the
    /// peer now.
    Left,
    /// The connection was lost (the lease was dropped without a word): hold the peer for its
    /// reconnect grace if its media lives.
    Lost,
}

/// A peer's presence in its room: the channel keeps the sender; sending [`Departure::Left`] or
/// dropping it ([`Departure::Lost`]) ends the attachment exactly once.
pub type Lease = tokio::sync::oneshot::Receiver<Departure>;

use crate::phoenix::Router;

/// What a room sends to one peer's channel.
#[derive(Debug, Clone)]
pub enum PeerMessage {
    /// Push this serialized media event as `mediaEvent {"data": …}`.
    MediaEvent(String),
    /// Push this chat message (the JSON object of [`chat`]) as a `chat` event.
    Chat(std::sync::Arc<serde_json::Value>),
    /// Answer the peer's own `chat` push: `ok {}`, or `error {"reason"}` when refused.
    ChatAnswer {
        /// The push being answered.
        reply: crate::phoenix::ReplyRef,
        /// Why the room refused it, if it did.
        refusal: Option<chat::ChatRefusal>,
    },
    /// The peer's media is not connected yet: push a `mediaDiagnosis {"cause", "message"}`
    /// event (a channel event of its own, which clients that do not know it never see).
    MediaNotConnected(crate::rtc::sfu::diagnosis::ConnectCause),
    /// The room is gone: push this `error` media event, then close the channel.
    Closed {
        /// The serialized `error` media event.
        error_event: String,
    },
    /// Clustered: where the room of a deferred join lives ([`placement`]).
    Placed(Result<Place, PlaceError>),
    /// Clustered: the room's node answered the relayed join ([`relay`]).
    RelayJoined(crate::phoenix::JoinReply),
    /// Clustered: the room's node answered a relayed push of the client's.
    RelayReply {
        /// The client's push being answered.
        reply: crate::phoenix::ReplyRef,
        /// The node's status (`ok`, `error`).
        status: String,
        /// The node's response.
        response: serde_json::Value,
    },
    /// Clustered: push this event of the room's node's channel to the client unchanged.
    RelayPush {
        /// The event (`mediaDiagnosis`, …).
        event: String,
        /// Its payload.
        payload: serde_json::Value,
    },
    /// Clustered: the relay link to the room's node ended.
    RelayEnded(RelayEnd),
}

/// Where a room delivers a peer's messages (its channel); never waits.
pub trait PeerSink: Send + 'static {
    /// Queues `msg`; `false` if it could not be queued (full or gone).
    fn deliver(&self, msg: PeerMessage) -> bool;
}

/// A plain bounded channel as a sink (for embedders and tests): never waits, `false` when full.
impl PeerSink for tokio::sync::mpsc::Sender<PeerMessage> {
    fn deliver(&self, msg: PeerMessage) -> bool {
        self.try_send(msg).is_ok()
    }
}

/// Why a peer could not reach its room.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomError {
    /// The peer has its whole share of the room's inbox waiting (it floods its room).
    #[error("peer's share of the room inbox used up")]
    Overloaded,
    /// The room has [`RoomsConfig::max_attached`] channels already.
    #[error("room is busy")]
    Busy,
    /// The server runs [`RoomsConfig::max_rooms`] rooms already.
    #[error("too many rooms")]
    TooManyRooms,
    /// The room task has stopped.
    #[error("room stopped")]
    Stopped,
    /// Called outside a tokio runtime, so no room task can be started.
    #[error("no tokio runtime to start the room on")]
    NoRuntime,
    /// A resume token was refused.
    #[error("resume refused: {}", .0.reason())]
    Resume(ResumeRefusal),
}

impl From<ResumeRefusal> for RoomError {
    fn from(why: ResumeRefusal) -> Self {
        RoomError::Resume(why)
    }
}

/// Adds the `room:*` channel to `router`, with rooms from `registry`.
pub fn mount(router: Router, registry: RoomRegistry) -> Router {
    router.channel("room:*", move || PeerChannel::new(registry.clone()))
}
