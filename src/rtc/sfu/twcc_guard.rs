//! The transport-wide sequence guard: keeps RTP whose transport-wide congestion control number
//! (the `transport-wide-cc` header extension) str0m would misread away from str0m.
//!
//! Why: str0m 0.25 extends each received 16-bit transport-wide number to 64 bits relative to
//! the highest one it has registered. Early in a session (highest < 32768) a number more than
//! half the space ahead is taken as "behind", and the extension wraps below zero to nearly
//! 2^64. At its next feedback (every 50 ms) str0m fills the gap between that number and the
//! others with "missing" chunks, one per 8192 numbers, without bound: gigabytes within one
//! timeout, and the process is killed for memory. Any participant can send such a packet (it
//! only needs its own SRTP keys). So can an honest sender that str0m ignored for 32768 packets
//! (str0m returns before registering the number of a packet it cannot map to a stream, find a
//! payload type for, or authenticate).
//! The fuzz target `rtp_forward` found it.
//!
//! How: the registered highest `H` is str0m's, not visible; the guard keeps a lower bound `L`
//! of it and lets a packet pass only if its number `v` is at most `L + MAX_AHEAD`
//! (`MAX_AHEAD` < 32768), so str0m extends `v` forwards. `L` is the larger of
//! - the highest number seen on an authenticated packet (str0m reports every packet it
//!   accepted; while `H` < 32768 no number has wrapped, so each is at most `H`), and
//! - the lowest number passed to str0m (every registered number is one of those).
//!
//! Before anything passed there is no `H` and every number is safe. Once an authenticated
//! packet carried a number of at least 32768, `H` is past the danger and the guard stands down
//! for the rest of the session. Numbers are read from every header extension id that str0m could
//! be using for transport-wide-cc (str0m's default id and every id a peer's offers named);
//! a packet with any dangerous one is dropped. A session whose packets keep being dropped
//! ([`GIVE_UP_AFTER`] in a row: str0m registered numbers it did not report, such as those of
//! duplicates, or the sender jumped) is given up as failed media, as a silent peer is, so the
//! client reconnects with a fresh session instead of staying dark. The guard reads the header in the clear (SRTP
//! does not encrypt it), so it can only drop packets, never make str0m accept one.
use std::collections::BTreeSet;

use str0m::rtp::{Extension, ExtensionMap};

use crate::rtc::rtp_header;

/// How far ahead of the lower bound a number may be (below half the 16-bit space, with room for
/// packets reordered around the bound).
const MAX_AHEAD: u16 = 30_000;

/// Dropped packets in a row after which the session is given up (about a second of a call's
/// packets): its numbers have moved on without str0m, and everything it sends would be dropped.
const GIVE_UP_AFTER: u32 = 250;

/// Numbers from here on can no longer wrap below zero when str0m extends later ones.
const SAFE_FROM: u16 = 32_768;

/// The guard of one peer's str0m session (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct TwccGuard {
    /// Header extension ids that may carry the transport-wide number.
    ids: BTreeSet<u8>,
    /// Highest number on a packet str0m accepted, while the session is young.
    highest_accepted: Option<u16>,
    /// Lowest number passed to str0m, while the session is young.
    lowest_passed: Option<u16>,
    /// An accepted packet carried a number of at least [`SAFE_FROM`]: nothing to guard.
    settled: bool,
    /// Packets dropped so far.
    pub dropped: u64,
    /// Packets with a number dropped since the last one that passed.
    dropped_in_a_row: u32,
}

impl Default for TwccGuard {
    fn default() -> Self {
        let standard = ExtensionMap::standard().id_of(Extension::TransportSequenceNumber);
        Self {
            ids: standard.into_iter().collect(),
            highest_accepted: None,
            lowest_passed: None,
            settled: false,
            dropped: 0,
            dropped_in_a_row: 0,
        }
    }
}

impl TwccGuard {
    /// Adds the extension ids an offer maps to transport-wide-cc (`a=extmap:<id>[/<dir>] <uri>`,
    /// read as str0m reads them) to those the guard checks.
    pub fn learn_ids(&mut self, offer_sdp: &str) {
        let uri = Extension::TransportSequenceNumber.as_uri();
        for line in offer_sdp.lines() {
            let Some(rest) = line.trim_end().strip_prefix("a=extmap:") else {
                continue;
            };
            let mut fields = rest.split(' ');
            let id = fields
                .next()
                .and_then(|f| f.split('/').next()?.parse().ok());
            if let (Some(id), Some(u)) = (id, fields.next())
                && u == uri
            {
                self.ids.insert(id);
            }
        }
    }

    /// Whether a datagram may go to str0m: anything that is not RTP with a transport-wide
    /// number passes; RTP passes if none of its numbers could make str0m's extension wrap.
    pub fn admit(&mut self, datagram: &[u8]) -> bool {
        if self.settled {
            return true;
        }
        let bound = match (self.highest_accepted, self.lowest_passed) {
            (None, None) => None,
            (a, p) => a.max(p),
        };
        let mut lowest = None::<u16>;
        for v in transport_numbers(datagram, &self.ids) {
            if bound.is_some_and(|l| v as u32 > l as u32 + MAX_AHEAD as u32) {
                self.dropped += 1;
                self.dropped_in_a_row += 1;
                return false;
            }
            lowest = Some(lowest.map_or(v, |l| l.min(v)));
        }
        if let Some(v) = lowest {
            self.dropped_in_a_row = 0;
            self.lowest_passed = Some(self.lowest_passed.map_or(v, |l| l.min(v)));
        }
        true
    }

    /// Whether the session's numbers have moved on too far for str0m to follow: the peer's media
    /// has failed (a new session, after an ICE restart or a reconnect, starts afresh).
    pub fn hopeless(&self) -> bool {
        self.dropped_in_a_row >= GIVE_UP_AFTER
    }

    /// Records the transport-wide number of a packet str0m accepted (decrypted and reported).
    pub fn accepted(&mut self, number: Option<u16>) {
        let Some(v) = number else { return };
        if v >= SAFE_FROM {
            self.settled = true;
        }
        self.highest_accepted = Some(self.highest_accepted.map_or(v, |h| h.max(v)));
    }
}

/// The values of the header extension elements with one of `ids` in an RTP datagram, read the
/// way str0m reads them (RFC 8285 one-byte and two-byte forms; a value is its first two bytes).
/// Not RTP (str0m's demultiplexing: first byte 128..192, payload type outside 64..96, the RTCP
/// range) or no extension block: nothing.
fn transport_numbers<'a>(
    datagram: &'a [u8],
    ids: &'a BTreeSet<u8>,
) -> impl Iterator<Item = u16> + 'a {
    rtp_header::extension_elements(datagram)
        .filter(|(id, value)| ids.contains(id) && value.len() >= 2)
        .map(|(_, value)| u16::from_be_bytes([value[0], value[1]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An RTP packet (VP8, payload type 96) whose one-byte extension block holds the
    /// transport-wide number `twcc` under id 3 (Chrome's id, and str0m's default).
    fn rtp_with_twcc(twcc: u16) -> Vec<u8> {
        let [hi, lo] = twcc.to_be_bytes();
        let mut p = vec![0x90, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 7];
        p.extend([0xBE, 0xDE, 0, 1]); // one-byte form, one word
        p.extend([0x31, hi, lo, 0]); // id 3, length 2, value, padding
        p.extend([0xAA; 20]); // (encrypted) payload
        p
    }

    #[test]
    fn the_number_is_read_from_one_byte_and_two_byte_extension_blocks() {
        let ids = BTreeSet::from([3, 5]);
        let one_byte = rtp_with_twcc(0x1234);
        assert_eq!(
            transport_numbers(&one_byte, &ids).collect::<Vec<_>>(),
            [0x1234]
        );

        let mut two_byte = vec![0x90, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 7];
        two_byte.extend([0x10, 0x00, 0, 2]); // two-byte form, two words
        two_byte.extend([1, 1, 0xEE, 0]); // id 1 (audio level), length 1, padding
        two_byte.extend([5, 2, 0xAB, 0xCD]); // id 5, length 2
        assert_eq!(
            transport_numbers(&two_byte, &ids).collect::<Vec<_>>(),
            [0xABCD]
        );
    }

    #[test]
    fn rtcp_stun_dtls_and_truncated_headers_carry_no_number() {
        let ids = BTreeSet::from([3]);
        let mut rtcp = rtp_with_twcc(40_000);
        rtcp[1] = 200; // sender report: payload type 72 after the marker bit
        let truncated = &rtp_with_twcc(40_000)[..17];
        let stun = [
            0u8, 1, 0, 0, 0x21, 0x12, 0xA4, 0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        for datagram in [
            &rtcp[..],
            truncated,
            &stun,
            &[22, 254, 253][..],
            &[],
            &[0x90],
        ] {
            assert_eq!(transport_numbers(datagram, &ids).count(), 0, "{datagram:?}");
        }
    }

    #[test]
    fn a_number_far_ahead_of_everything_str0m_has_seen_is_dropped_early_in_a_session() {
        let mut guard = TwccGuard::default();
        assert!(guard.admit(&rtp_with_twcc(1)));
        guard.accepted(Some(1));
        assert!(guard.admit(&rtp_with_twcc(2)));
        guard.accepted(Some(2));
        // 40000 is more than half the space ahead of 2: str0m would place it near 2^64.
        assert!(!guard.admit(&rtp_with_twcc(40_000)));
        assert!(guard.admit(&rtp_with_twcc(3)));
        assert!(
            guard.admit(&rtp_with_twcc(30_002)),
            "up to 30000 ahead passes"
        );
        assert!(!guard.admit(&rtp_with_twcc(30_003)));
        assert_eq!(guard.dropped, 2);
    }

    #[test]
    fn numbers_str0m_did_not_accept_do_not_move_the_bound_up() {
        let mut guard = TwccGuard::default();
        // A sender first passes packets that fail authentication (never reported as accepted):
        // only the lowest of them counts, since str0m may have registered just that one.
        assert!(guard.admit(&rtp_with_twcc(20_000)));
        assert!(guard.admit(&rtp_with_twcc(10)));
        assert!(guard.admit(&rtp_with_twcc(25_000)));
        assert!(!guard.admit(&rtp_with_twcc(45_000)));
    }

    #[test]
    fn the_first_number_of_a_session_may_be_anything_and_a_high_one_settles_it() {
        let mut guard = TwccGuard::default();
        // Senders may start anywhere: str0m has nothing to extend from yet.
        assert!(guard.admit(&rtp_with_twcc(50_000)));
        guard.accepted(Some(50_000));
        // From here str0m's highest is past 32767: wrapping around 65535 is ordinary.
        for v in [60_000, 65_535, 0, 5, 20_000] {
            assert!(guard.admit(&rtp_with_twcc(v)), "{v}");
        }
        assert_eq!(guard.dropped, 0);
    }

    #[test]
    fn an_honest_sender_counting_up_from_one_is_never_dropped() {
        let mut guard = TwccGuard::default();
        for v in (1..=u16::MAX).chain(0..1000) {
            assert!(guard.admit(&rtp_with_twcc(v)), "{v}");
            guard.accepted(Some(v));
        }
        assert_eq!(guard.dropped, 0);
    }

    #[test]
    fn a_session_whose_packets_keep_being_dropped_is_given_up() {
        let mut guard = TwccGuard::default();
        guard.admit(&rtp_with_twcc(1));
        guard.accepted(Some(1));
        for _ in 0..GIVE_UP_AFTER - 1 {
            assert!(!guard.admit(&rtp_with_twcc(40_000)));
        }
        assert!(!guard.hopeless());
        assert!(
            guard.admit(&rtp_with_twcc(2)),
            "one that passes resets the count"
        );
        for _ in 0..GIVE_UP_AFTER {
            assert!(!guard.admit(&rtp_with_twcc(40_000)));
        }
        assert!(guard.hopeless());
    }

    #[test]
    fn every_id_an_offer_named_is_checked() {
        let mut guard = TwccGuard::default();
        guard.learn_ids(
            "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
             a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
             a=extmap:7/sendrecv http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n",
        );
        assert_eq!(guard.ids, BTreeSet::from([3, 7]));
        guard.admit(&rtp_with_twcc(1));
        guard.accepted(Some(1));
        let mut p = rtp_with_twcc(1);
        p[16] = 0x71; // the same element under id 7
        p[17..19].copy_from_slice(&40_000u16.to_be_bytes());
        assert!(!guard.admit(&p));
    }
}
