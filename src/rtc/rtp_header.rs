//! Reading an RTP datagram's header in the clear (SRTP does not encrypt it): telling RTP from
//! what shares its port, and its header extension elements. Used by the SFU's transport-wide
//! sequence guard and by the load generator's direct receive path.

/// Whether a datagram is RTP, as str0m demultiplexes (RFC 7983 §7, RFC 5761 §4): first byte
/// 128..192, a full fixed header, and a payload type outside 64..96 (the RTCP packet types with
/// the marker bit).
pub fn is_rtp(datagram: &[u8]) -> bool {
    datagram.len() >= 12
        && (128..192).contains(&datagram[0])
        && !(64..96).contains(&(datagram[1] & 0x7f))
}

/// The (id, value) header extension elements of an RTP datagram, read the way str0m reads them
/// (RFC 8285 one-byte and two-byte forms); nothing for a datagram that is not RTP ([`is_rtp`]) or
/// has no extension block.
pub fn extension_elements(datagram: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    let block = extension_block(datagram);
    let (two_byte, mut rest) = block.unwrap_or((false, &[]));
    std::iter::from_fn(move || {
        loop {
            let (&first, tail) = rest.split_first()?;
            if first == 0 {
                rest = tail; // padding between elements
                continue;
            }
            let (id, len, tail) = if two_byte {
                let (&len, tail) = tail.split_first()?;
                (first, len as usize, tail)
            } else if first >> 4 == 15 {
                return None; // id 15 ends the block
            } else {
                (first >> 4, (first & 0x0f) as usize + 1, tail)
            };
            if tail.len() < len {
                return None;
            }
            let (value, tail) = tail.split_at(len);
            rest = tail;
            return Some((id, value));
        }
    })
}

/// The header extension block of an RTP datagram and whether it uses the two-byte form.
fn extension_block(datagram: &[u8]) -> Option<(bool, &[u8])> {
    if !is_rtp(datagram) || datagram[0] & 0x10 == 0 {
        return None;
    }
    let byte0 = datagram[0];
    let csrcs = (byte0 & 0x0f) as usize * 4;
    let ext = datagram.get(12 + csrcs..)?;
    let [p0, p1, w0, w1, body @ ..] = ext else {
        return None;
    };
    let profile = u16::from_be_bytes([*p0, *p1]);
    let two_byte = match profile {
        0xBEDE => false,
        p if p & 0xFFF0 == 0x1000 => true,
        _ => return None,
    };
    let len = u16::from_be_bytes([*w0, *w1]) as usize * 4;
    Some((two_byte, body.get(..len)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtcp_stun_and_dtls_are_told_from_rtp() {
        let cases: [(&str, [u8; 12], bool); 6] = [
            ("RTP", [0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1], true),
            (
                "RTP, marker set",
                [0x80, 0xE0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1],
                true,
            ),
            (
                "receiver report",
                [0x81, 201, 0, 7, 0, 0, 0, 0, 0, 0, 0, 1],
                false,
            ),
            (
                "transport feedback",
                [0x8F, 205, 0, 7, 0, 0, 0, 0, 0, 0, 0, 1],
                false,
            ),
            ("DTLS", [22, 0xFE, 0xFD, 0, 0, 0, 0, 0, 0, 0, 0, 0], false),
            (
                "STUN",
                [0, 1, 0, 0, 0x21, 0x12, 0xA4, 0x42, 0, 0, 0, 0],
                false,
            ),
        ];
        for (what, datagram, rtp) in cases {
            assert_eq!(is_rtp(&datagram), rtp, "{what}");
        }
    }

    #[test]
    fn elements_are_read_past_csrcs_and_padding_and_stop_at_id_15() {
        // V=2 X=1 CC=1, then 0xBEDE with 2 words: padding, id 3 len 2, id 5 len 1, id 15.
        let mut p = vec![0x91, 0xE0, 0x12, 0x34, 0, 0, 0, 7, 0xAA, 0xBB, 0xCC, 0xDD];
        p.extend_from_slice(&[1, 2, 3, 4]);
        p.extend_from_slice(&[0xBE, 0xDE, 0, 2, 0, 0x31, 0x01, 0x02, 0x50, 0x09, 0xF0, 0]);
        let elements: Vec<(u8, Vec<u8>)> = extension_elements(&p)
            .map(|(id, v)| (id, v.to_vec()))
            .collect();
        assert_eq!(elements, vec![(3, vec![1, 2]), (5, vec![9])]);
        assert_eq!(
            extension_elements(&p[..20]).count(),
            0,
            "cut inside the block"
        );
    }
}
