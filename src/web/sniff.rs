//! Telling the protocols on the web port apart by a connection's first bytes (sans-IO), so
//! ICE-TCP media can share the HTTP/HTTPS port: a network that lets only the web port through
//! still carries media.
//!
//! | first bytes | protocol |
//! |---|---|
//! | `0x16` | TLS ClientHello (HTTPS) |
//! | an uppercase ASCII letter | an HTTP request line (`GET /…`) |
//! | 2-byte length, then STUN type `0x0001` with the magic cookie `0x2112A442` at offset 6 | an RFC 4571-framed STUN binding request: ICE-TCP |
//!
//! Anything else is left to the web server, which answers it as it always did. A further
//! classifier (TURN over TLS on the same port would look inside the ClientHello, e.g. at its
//! ALPN) belongs in [`classify`] as one more row.

/// How many bytes [`classify`] needs at most to decide.
pub const SNIFF_LEN: usize = 10;

/// What a connection's first bytes say it speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstBytes {
    /// A TLS record (`0x16`, handshake): HTTPS.
    Tls,
    /// An HTTP request line.
    Http,
    /// An RFC 4571 frame holding a STUN binding request: ICE-TCP media.
    IceTcp,
    /// Not enough bytes yet to decide.
    NeedMore,
    /// None of the above: the web server answers it.
    Unknown,
}

/// Classifies a connection by its first bytes (`prefix`, at most [`SNIFF_LEN`] are looked at).
pub fn classify(prefix: &[u8]) -> FirstBytes {
    match prefix.first() {
        None => FirstBytes::NeedMore,
        Some(0x16) => FirstBytes::Tls,
        Some(b'A'..=b'Z') => FirstBytes::Http,
        Some(_) if prefix.len() < SNIFF_LEN => FirstBytes::NeedMore,
        Some(_) => {
            let frame_len = u16::from_be_bytes([prefix[0], prefix[1]]);
            // A binding request is at least the 20-byte STUN header.
            if frame_len >= 20
                && prefix[2..4] == [0x00, 0x01]
                && prefix[6..10] == [0x21, 0x12, 0xA4, 0x42]
            {
                FirstBytes::IceTcp
            } else {
                FirstBytes::Unknown
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_framed_stun_binding_request_is_ice_tcp() {
        // Length 0x0064, type 0x0001, STUN length 0x0050, magic cookie.
        let frame = [
            0x00, 0x64, 0x00, 0x01, 0x00, 0x50, 0x21, 0x12, 0xA4, 0x42, 0xAA,
        ];
        assert_eq!(classify(&frame), FirstBytes::IceTcp);
        assert_eq!(classify(&frame[..9]), FirstBytes::NeedMore);
        assert_eq!(classify(&[]), FirstBytes::NeedMore);
    }

    #[test]
    fn http_and_tls_are_known_from_the_first_byte() {
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), FirstBytes::Http);
        assert_eq!(classify(b"G"), FirstBytes::Http);
        assert_eq!(classify(&[0x16, 0x03, 0x01, 0x02, 0x00]), FirstBytes::Tls);
    }

    #[test]
    fn near_misses_are_left_to_the_web_server() {
        // A binding success response (0x0101), not a request.
        let response = [0x00, 0x64, 0x01, 0x01, 0x00, 0x50, 0x21, 0x12, 0xA4, 0x42];
        assert_eq!(classify(&response), FirstBytes::Unknown);
        // Wrong cookie.
        let no_cookie = [0x00, 0x64, 0x00, 0x01, 0x00, 0x50, 0x21, 0x12, 0xA4, 0x43];
        assert_eq!(classify(&no_cookie), FirstBytes::Unknown);
        // A frame too short to hold a STUN header.
        let short = [0x00, 0x13, 0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42];
        assert_eq!(classify(&short), FirstBytes::Unknown);
        assert_eq!(classify(b"\x00garbage!!"), FirstBytes::Unknown);
    }
}
