//! videoroom: a drop-in Rust backend for the Membrane videoroom web client.
//!
//! Three protocols meet here:
//!
//! 1. **Phoenix Channels** ([`phoenix`]): the wire protocol the unchanged `phoenix` npm client
//!    speaks over WebSocket or LongPoll at `/socket`. This module knows nothing about rooms.
//! 2. **Membrane media events** ([`rtc`]): the JSON "flat" dialect of membrane_rtc_engine that the
//!    tutorial's `MembraneWebRTC` client speaks inside `mediaEvent` pushes, plus the media plane
//!    (an SFU on str0m, one UDP socket for every peer). This module knows nothing about Phoenix.
//! 3. **Rooms** ([`room`]): the only module that knows both. A room is an actor that owns one
//!    media engine; the `room:*` channel relays media events between a browser and its room.
//!
//! [`web`] mounts pages, static files and the socket on warp; [`metrics`] exports the metrics
//! and answers the health probes; [`app`] wires everything together and [`config`] holds the
//! settings.
//!
//! Reading order: `phoenix` → `rtc` → `room` → `web` → `app`.
#![warn(missing_docs)]

pub mod app;
pub mod cluster;
pub mod config;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod logs;
pub mod metrics;
pub mod phoenix;
pub mod room;
pub mod rtc;
pub mod web;
