//! The slice of the SFU the engine drives, as a trait.
//!
//! Production code uses [`Sfu`] (the only implementation outside tests). The trait exists so the
//! engine's negotiation logic (coalescing, event order) can also be checked against a recording
//! fake that needs no WebRTC: the tests' one engine harness (`test/kit/engine_room.rs`) runs the
//! same sequences with the fake and with the real [`Sfu`] answering recorded browser offers.

use std::time::Instant;

use crate::rtc::ids::PeerId;
use crate::rtc::net::Datagram;
use crate::rtc::sfu::{Answer, Offer, Sfu, SfuError, SfuOutput, SfuResult};

/// What [`super::Engine`] needs from an SFU; mirrors [`Sfu`]'s inherent methods one to one.
pub trait SfuBackend {
    /// See [`Sfu::add_peer`].
    fn add_peer(&mut self, peer: PeerId, now: Instant);
    /// See [`Sfu::remove_peer`].
    fn remove_peer(&mut self, peer: PeerId);
    /// See [`Sfu::handle_offer`].
    fn handle_offer(&mut self, peer: PeerId, offer: Offer<'_>, now: Instant) -> SfuResult<Answer>;
    /// See [`Sfu::handle_remote_candidate`].
    fn handle_remote_candidate(&mut self, peer: PeerId, candidate: &str) -> Result<(), SfuError>;
    /// See [`Sfu::local_candidates`].
    fn local_candidates(&self) -> Vec<String>;
    /// See [`Sfu::handle_datagram`].
    fn handle_datagram(&mut self, datagram: &Datagram);
    /// See [`Sfu::handle_timeout`].
    fn handle_timeout(&mut self, now: Instant);
    /// See [`Sfu::poll_output`].
    fn poll_output(&mut self) -> SfuOutput;
    /// See [`Sfu::ice_ufrags`].
    fn ice_ufrags(&self) -> Vec<String>;
    /// See [`Sfu::media_connected`].
    fn media_connected(&self, peer: PeerId) -> bool;
}

impl SfuBackend for Sfu {
    fn add_peer(&mut self, peer: PeerId, now: Instant) {
        Sfu::add_peer(self, peer, now)
    }
    fn remove_peer(&mut self, peer: PeerId) {
        Sfu::remove_peer(self, peer)
    }
    fn handle_offer(&mut self, peer: PeerId, offer: Offer<'_>, now: Instant) -> SfuResult<Answer> {
        Sfu::handle_offer(self, peer, offer, now)
    }
    fn handle_remote_candidate(&mut self, peer: PeerId, candidate: &str) -> Result<(), SfuError> {
        Sfu::handle_remote_candidate(self, peer, candidate)
    }
    fn local_candidates(&self) -> Vec<String> {
        Sfu::local_candidates(self)
    }
    fn handle_datagram(&mut self, datagram: &Datagram) {
        Sfu::handle_datagram(self, datagram)
    }
    fn handle_timeout(&mut self, now: Instant) {
        Sfu::handle_timeout(self, now)
    }
    fn poll_output(&mut self) -> SfuOutput {
        Sfu::poll_output(self)
    }
    fn ice_ufrags(&self) -> Vec<String> {
        Sfu::ice_ufrags(self)
    }
    fn media_connected(&self, peer: PeerId) -> bool {
        Sfu::media_connected(self, peer)
    }
}
