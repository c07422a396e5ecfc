//! Entry points for the fuzz targets in `test/fuzz/` to the few network parsers that are private.
//!
//! Only compiled with the `fuzzing` feature, which the server build never enables. Everything
//! else the fuzz targets drive through the crate's ordinary public API.

/// The local ICE ufrag by which the UDP demux routes a datagram (the part of a STUN
/// `USERNAME` before the `:`), or `None` when it is not such a STUN message.
pub fn stun_local_ufrag(datagram: &[u8]) -> Option<&str> {
    crate::rtc::udp::stun_local_ufrag(datagram)
}
