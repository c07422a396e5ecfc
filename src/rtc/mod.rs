//! The media plane: WebRTC peers, SDP negotiation and RTP forwarding.
//!
//! This module knows nothing about Phoenix or rooms. [`sfu::Sfu`] is the sans-IO forwarding core
//! (one per room, one `str0m::Rtc` per peer); [`udp`] is the thin I/O shell that shares one UDP
//! socket between every room; [`ids`] holds the identifiers both sides use.
pub mod ids;
pub mod sfu;
pub mod udp;
