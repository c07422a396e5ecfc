//! Received RTP decrypted beside str0m: the direct receive path of a load peer.
//!
//! Why: str0m's receive path (stream lookup, NACK and TWCC registers, a timeout pass after every
//! datagram, an event with an owned payload) costs ~6 µs per packet, which caps one core near
//! 150,000 packets/s; the issue asks one core to take 1000 subscribed video streams (~250,000
//! packets/s with their audio). Once DTLS has exported the SRTP keys, the peer opens its media
//! packets here (RFC 3711 key derivation, RFC 7714 AES-GCM, the rollover counter of RFC 3711
//! §3.3.1) and accounts for them itself; str0m keeps ICE, DTLS, RTCP and everything it cannot
//! be bypassed for, and the peer sends the receiver's feedback itself ([`crate::feedback`]).
//!
//! Only the AEAD profiles (which str0m and browsers prefer) are opened here; with
//! AES-CM/HMAC-SHA1 every packet goes to str0m as before.
use std::sync::{Arc, Mutex};

use str0m::config::CryptoProvider;
use str0m::crypto::dtls::SrtpProfile;
use str0m::crypto::{
    AeadAes128Gcm, AeadAes128GcmCipher, AeadAes256Gcm, AeadAes256GcmCipher, SrtpProvider,
};
use videoroom::rtc::rtp_header::extension_elements;
pub use videoroom::rtc::rtp_header::is_rtp;

/// RFC 3711 §4.3.1 key derivation labels.
const LABEL_RTP_KEY: u8 = 0;
const LABEL_RTP_SALT: u8 = 2;
const LABEL_RTCP_KEY: u8 = 3;
const LABEL_RTCP_SALT: u8 = 5;
/// The AEAD profiles' salt and tag (RFC 7714 §8.1, §12).
const SALT_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// What a DTLS session exported for SRTP (RFC 5764 §4.2), and which side of it we were.
#[derive(Clone, Debug)]
pub struct SrtpKeys {
    /// client key ‖ server key ‖ client salt ‖ server salt.
    pub material: Vec<u8>,
    /// The protection profile DTLS negotiated.
    pub profile: SrtpProfile,
    /// We were the DTLS client.
    pub client: bool,
}

/// Where a DTLS session leaves its [`SrtpKeys`] for its peer to pick up.
pub type KeySink = Arc<Mutex<Option<SrtpKeys>>>;

/// One direction's AES-GCM cipher.
enum Gcm {
    Aes128(Box<dyn AeadAes128GcmCipher>),
    Aes256(Box<dyn AeadAes256GcmCipher>),
}

impl Gcm {
    fn open(&mut self, iv: &[u8; 12], aad: &[u8], input: &[u8], out: &mut [u8]) -> Option<usize> {
        match self {
            Gcm::Aes128(c) => c.decrypt(iv, &[aad], input, out).ok(),
            Gcm::Aes256(c) => c.decrypt(iv, &[aad], input, out).ok(),
        }
    }

    fn seal(&mut self, iv: &[u8; 12], aad: &[u8], input: &[u8], out: &mut [u8]) -> Option<()> {
        match self {
            Gcm::Aes128(c) => c.encrypt(iv, aad, input, out).ok(),
            Gcm::Aes256(c) => c.encrypt(iv, aad, input, out).ok(),
        }
    }
}

/// A session key and salt derived from one side's master key and salt.
struct SessionKeys {
    key: Vec<u8>,
    salt: [u8; SALT_LEN],
}

/// RFC 3711 §4.3.1 (key derivation rate 0) with AES-CM as the PRF, as RFC 7714 §12 keeps it:
/// the keystream of AES over `(master salt ⊕ label << 48) ‖ counter`.
fn derive(
    srtp: &dyn SrtpProvider,
    master_key: &[u8],
    master_salt: &[u8],
    label: u8,
    out: &mut [u8],
) {
    let mut input = [0u8; 16];
    input[..master_salt.len()].copy_from_slice(master_salt);
    input[7] ^= label;
    let mut block = [0u8; 32];
    for (counter, chunk) in out.chunks_mut(16).enumerate() {
        input[14..].copy_from_slice(&(counter as u16).to_be_bytes());
        match master_key.len() {
            16 => srtp.srtp_aes_128_ecb_round(master_key, &input, &mut block),
            _ => srtp.srtp_aes_256_ecb_round(master_key, &input, &mut block),
        }
        chunk.copy_from_slice(&block[..chunk.len()]);
    }
}

impl SrtpKeys {
    /// Key and salt length of the profile, `None` for a profile not opened here.
    fn lengths(&self) -> Option<usize> {
        match self.profile {
            SrtpProfile::AEAD_AES_128_GCM => Some(AeadAes128Gcm::KEY_LEN),
            SrtpProfile::AEAD_AES_256_GCM => Some(AeadAes256Gcm::KEY_LEN),
            _ => None,
        }
    }

    /// The session keys of `label_key`/`label_salt` for what the remote side sends
    /// (`remote`) or what we send.
    fn session(
        &self,
        srtp: &dyn SrtpProvider,
        remote: bool,
        label_key: u8,
        label_salt: u8,
    ) -> Option<SessionKeys> {
        let key_len = self.lengths()?;
        if self.material.len() < 2 * (key_len + SALT_LEN) {
            return None;
        }
        // The client's half comes first (RFC 5764 §4.2).
        let client_half = remote != self.client;
        let side = usize::from(!client_half);
        let master_key = &self.material[side * key_len..(side + 1) * key_len];
        let salts = &self.material[2 * key_len..];
        let master_salt = &salts[side * SALT_LEN..(side + 1) * SALT_LEN];
        let mut key = vec![0u8; key_len];
        derive(srtp, master_key, master_salt, label_key, &mut key);
        let mut salt = [0u8; SALT_LEN];
        derive(srtp, master_key, master_salt, label_salt, &mut salt);
        Some(SessionKeys { key, salt })
    }

    fn cipher(&self, crypto: &CryptoProvider, keys: &SessionKeys, encrypt: bool) -> Option<Gcm> {
        let srtp = crypto.srtp_provider;
        Some(match self.profile {
            SrtpProfile::AEAD_AES_128_GCM => Gcm::Aes128(
                srtp.aead_aes_128_gcm()
                    .create_cipher(keys.key.as_slice().try_into().ok()?, encrypt),
            ),
            SrtpProfile::AEAD_AES_256_GCM => Gcm::Aes256(
                srtp.aead_aes_256_gcm()
                    .create_cipher(keys.key.as_slice().try_into().ok()?, encrypt),
            ),
            _ => return None,
        })
    }
}

/// The fields of an RTP header a receiver acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHead {
    /// Bytes of the header with its CSRCs and extensions (the AEAD's associated data).
    pub len: usize,
    /// Payload type (marker bit removed).
    pub payload_type: u8,
    /// Sequence number.
    pub seq: u16,
    /// RTP timestamp.
    pub timestamp: u32,
    /// Synchronization source.
    pub ssrc: u32,
    /// The transport-wide sequence number, when the header carries the extension asked for.
    pub transport_seq: Option<u16>,
    /// The payload ends in padding (RFC 3550 §5.1).
    pub padded: bool,
}

/// Reads an RTP header (`None` for anything that is not RTP); `twcc_id` is the header extension id of transport-wide-cc.
pub fn read_head(packet: &[u8], twcc_id: Option<u8>) -> Option<RtpHead> {
    if !is_rtp(packet) {
        return None;
    }
    let mut len = 12 + 4 * usize::from(packet[0] & 0x0f);
    if packet[0] & 0x10 != 0 {
        let ext = packet.get(len..len + 4)?;
        len += 4 + 4 * usize::from(u16::from_be_bytes([ext[2], ext[3]]));
    }
    if packet.len() < len {
        return None;
    }
    let transport_seq = twcc_id.and_then(|id| {
        extension_elements(packet)
            .find(|(element, value)| *element == id && value.len() == 2)
            .map(|(_, v)| u16::from_be_bytes([v[0], v[1]]))
    });
    Some(RtpHead {
        len,
        payload_type: packet[1] & 0x7f,
        seq: u16::from_be_bytes([packet[2], packet[3]]),
        timestamp: u32::from_be_bytes(packet[4..8].try_into().ok()?),
        ssrc: u32::from_be_bytes(packet[8..12].try_into().ok()?),
        transport_seq,
        padded: packet[0] & 0x20 != 0,
    })
}

/// The rollover counter of one received SSRC (RFC 3711 §3.3.1, Appendix A).
#[derive(Clone, Copy)]
struct Rollover {
    ssrc: u32,
    roc: u32,
    highest: u16,
}

impl Rollover {
    /// The counter a packet of sequence number `seq` was sent under.
    fn guess(&self, seq: u16) -> u32 {
        let (s, h) = (i32::from(seq), i32::from(self.highest));
        if h < 32768 {
            if s - h > 32768 {
                self.roc.wrapping_sub(1)
            } else {
                self.roc
            }
        } else if h - 32768 > s {
            self.roc.wrapping_add(1)
        } else {
            self.roc
        }
    }

    /// Moves forward after an authenticated packet.
    fn advance(&mut self, roc: u32, seq: u16) {
        if roc == self.roc.wrapping_add(1) || (roc == self.roc && seq > self.highest) {
            self.roc = roc;
            self.highest = seq;
        }
    }
}

/// An opened packet: its extended sequence number and where its payload lies.
#[derive(Debug, Clone, Copy)]
pub struct Opened {
    /// Sequence number extended by its rollover counter.
    pub index: u64,
    /// Payload bytes at the start of the output buffer (padding removed).
    pub payload_len: usize,
}

/// Opens the SRTP the remote side sends (see the module docs).
pub struct RtpOpener {
    cipher: Gcm,
    salt: [u8; SALT_LEN],
    /// Per SSRC; a peer receives a handful, so a scan beats a hash.
    rollovers: Vec<Rollover>,
}

impl RtpOpener {
    /// The opener for what the remote side of `keys` sends; `None` for a profile not opened
    /// here (AES-CM/HMAC-SHA1: str0m keeps every packet).
    pub fn new(crypto: &CryptoProvider, keys: &SrtpKeys) -> Option<RtpOpener> {
        let session = keys.session(crypto.srtp_provider, true, LABEL_RTP_KEY, LABEL_RTP_SALT)?;
        Some(RtpOpener {
            cipher: keys.cipher(crypto, &session, false)?,
            salt: session.salt,
            rollovers: Vec::new(),
        })
    }

    /// The sequence number `seq` of `ssrc` extended by that stream's rollover counter (for the
    /// original sequence number a retransmission carries).
    pub fn extend(&self, ssrc: u32, seq: u16) -> u64 {
        let roc = self
            .rollovers
            .iter()
            .find(|r| r.ssrc == ssrc)
            .map_or(0, |r| r.guess(seq));
        (u64::from(roc) << 16) | u64::from(seq)
    }

    /// Authenticates and decrypts `packet` (whose header is `head`) into `out`; `None` if it
    /// does not authenticate (or `out` is too small).
    pub fn open(&mut self, packet: &[u8], head: RtpHead, out: &mut [u8]) -> Option<Opened> {
        let sealed = packet.get(head.len..)?;
        if sealed.len() < TAG_LEN || out.len() < sealed.len() - TAG_LEN {
            return None;
        }
        let at = self.rollovers.iter().position(|r| r.ssrc == head.ssrc);
        let roc = at.map_or(0, |i| self.rollovers[i].guess(head.seq));
        let iv = AeadAes256Gcm::rtp_iv(self.salt, head.ssrc, roc, head.seq);
        let mut len = self.cipher.open(&iv, &packet[..head.len], sealed, out)?;
        match at {
            Some(i) => self.rollovers[i].advance(roc, head.seq),
            None => self.rollovers.push(Rollover {
                ssrc: head.ssrc,
                roc,
                highest: head.seq,
            }),
        }
        if head.padded && len > 0 {
            len = len.saturating_sub(usize::from(out[len - 1]));
        }
        Some(Opened {
            index: (u64::from(roc) << 16) | u64::from(head.seq),
            payload_len: len,
        })
    }
}

/// Seals the RTCP we send (RFC 7714 §9): the peer's own feedback.
pub struct RtcpSealer {
    cipher: Gcm,
    salt: [u8; SALT_LEN],
    /// SRTCP index of the next packet (31 bits).
    index: u32,
}

impl RtcpSealer {
    /// The sealer for what we send with `keys`; `None` for a profile not handled here.
    pub fn new(crypto: &CryptoProvider, keys: &SrtpKeys) -> Option<RtcpSealer> {
        let session = keys.session(crypto.srtp_provider, false, LABEL_RTCP_KEY, LABEL_RTCP_SALT)?;
        Some(RtcpSealer {
            cipher: keys.cipher(crypto, &session, true)?,
            salt: session.salt,
            // From 0 like str0m's own: the peer's feedback goes out under a sender SSRC of its
            // own, which is part of the IV (RFC 7714 §9.1) and keys the receiver's replay
            // window, so the two never meet.
            index: 0,
        })
    }

    /// Encrypts the compound RTCP packet `rtcp` into `out` (its length, `None` if `out` is too
    /// small): the first 8 bytes in the clear, the rest encrypted, the tag, then E ‖ index.
    pub fn seal(&mut self, rtcp: &[u8], out: &mut [u8]) -> Option<usize> {
        let total = rtcp.len() + TAG_LEN + 4;
        if rtcp.len() < 8 || out.len() < total {
            return None;
        }
        let index = self.index;
        self.index = (self.index + 1) & 0x7fff_ffff;
        let ssrc = u32::from_be_bytes(rtcp[4..8].try_into().ok()?);
        let e_index = (index | 0x8000_0000).to_be_bytes();
        let mut aad = [0u8; 12];
        aad[..8].copy_from_slice(&rtcp[..8]);
        aad[8..].copy_from_slice(&e_index);
        let iv = AeadAes256Gcm::rtcp_iv(self.salt, ssrc, index);
        out[..8].copy_from_slice(&rtcp[..8]);
        self.cipher.seal(&iv, &aad, &rtcp[8..], &mut out[8..])?;
        out[total - 4..total].copy_from_slice(&e_index);
        Some(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn the_session_key_and_salt_are_those_of_rfc_3711_appendix_b3() {
        let crypto = str0m::crypto::from_feature_flags();
        let master = hex("E1F97A0D3E018BE0D64FA32C06DE4139");
        let salt = hex("0EC675AD498AFEEBB6960B3AABE6");
        let mut key = [0u8; 16];
        derive(
            crypto.srtp_provider,
            &master,
            &salt,
            LABEL_RTP_KEY,
            &mut key,
        );
        assert_eq!(key.to_vec(), hex("C61E7A93744F39EE10734AFE3FF7A087"));
        let mut session_salt = [0u8; 14];
        derive(
            crypto.srtp_provider,
            &master,
            &salt,
            LABEL_RTP_SALT,
            &mut session_salt,
        );
        assert_eq!(session_salt.to_vec(), hex("30CBBC08863D8C85D49DB34A9AE1"));
    }

    #[test]
    fn a_header_with_csrcs_and_an_extension_block_reads_its_length_and_transport_number() {
        // V=2 X=1 CC=1, M=1 PT=96, seq 0x1234, ts 7, ssrc 0xAABBCCDD, one CSRC, then 0xBEDE with
        // 2 words: padding, id 3 len 2 (transport-wide 0x0102), id 5 len 1.
        let mut p = vec![0x91, 0xE0, 0x12, 0x34, 0, 0, 0, 7, 0xAA, 0xBB, 0xCC, 0xDD];
        p.extend_from_slice(&[1, 2, 3, 4]);
        p.extend_from_slice(&[0xBE, 0xDE, 0, 2, 0, 0x31, 0x01, 0x02, 0x50, 0x09, 0, 0]);
        p.extend_from_slice(b"payload");
        let head = read_head(&p, Some(3)).expect("header");
        assert_eq!(head.len, 12 + 4 + 12);
        assert_eq!(
            (head.payload_type, head.seq, head.ssrc),
            (96, 0x1234, 0xAABB_CCDD)
        );
        assert_eq!(head.timestamp, 7);
        assert_eq!(head.transport_seq, Some(0x0102));
        assert_eq!(read_head(&p, Some(4)).expect("header").transport_seq, None);
        assert!(
            read_head(&p[..20], Some(3)).is_none(),
            "cut inside the extension"
        );
    }

    #[test]
    fn the_rollover_counter_moves_on_when_the_sequence_number_wraps_and_not_for_a_late_packet() {
        let mut r = Rollover {
            ssrc: 1,
            roc: 0,
            highest: 65_534,
        };
        assert_eq!(r.guess(65_535), 0);
        r.advance(0, 65_535);
        assert_eq!(r.guess(2), 1, "wrapped");
        r.advance(1, 2);
        assert_eq!((r.roc, r.highest), (1, 2));
        assert_eq!(r.guess(65_530), 0, "a late packet from before the wrap");
        r.advance(0, 65_530);
        assert_eq!((r.roc, r.highest), (1, 2), "a late packet moves nothing");
    }

    /// Runs two sessions against each other in virtual time, moving every datagram, until
    /// `until` holds; `tap` sees (and may keep back) each datagram from `a` to `b`.
    fn run_pair(
        a: &mut str0m::Rtc,
        b: &mut str0m::Rtc,
        now: &mut std::time::Instant,
        mut tap: impl FnMut(&[u8]) -> bool,
        mut on_a_event: impl FnMut(str0m::Event),
        mut until: impl FnMut(&str0m::Rtc, &str0m::Rtc) -> bool,
    ) {
        use str0m::net::{Protocol, Receive};
        use str0m::{Input, Output};
        for _ in 0..5000 {
            if until(a, b) {
                return;
            }
            for forward in [true, false] {
                let (from, to) = if forward {
                    (&mut *a, &mut *b)
                } else {
                    (&mut *b, &mut *a)
                };
                let mut moved = Vec::new();
                loop {
                    match from.poll_output().expect("poll") {
                        Output::Transmit(t) => moved.push(t),
                        Output::Timeout(_) => break,
                        Output::Event(e) if forward => on_a_event(e),
                        Output::Event(_) => {}
                    }
                }
                for t in moved {
                    if forward && !tap(&t.contents) {
                        continue;
                    }
                    let r = Receive::new(Protocol::Udp, t.source, t.destination, &t.contents)
                        .expect("datagram");
                    to.handle_input(Input::Receive(*now, r)).expect("receive");
                }
            }
            *now += std::time::Duration::from_millis(1);
            a.handle_input(Input::Timeout(*now)).expect("timeout");
            b.handle_input(Input::Timeout(*now)).expect("timeout");
        }
        panic!("the sessions never got there");
    }

    #[test]
    fn rtp_from_str0m_opens_here_and_feedback_sealed_here_is_read_by_str0m() {
        use std::cell::RefCell;
        use std::time::{Duration, Instant};
        use str0m::media::{Direction, MediaKind};
        use str0m::rtp::rtcp::Rtcp;
        use str0m::rtp::{RawPacket, RtpWrite};
        use str0m::{Candidate, Event, RtcConfig};

        use crate::feedback::Feedback;

        let mut now = Instant::now();
        // `a` sends as the server does; `b` is a load peer whose DTLS leaves its keys in `sink`.
        let mut a = RtcConfig::new()
            .set_rtp_mode(true)
            .enable_raw_packets(true)
            .build(now);
        let sink = KeySink::default();
        crate::dtls::KEY_SINK.with(|s| *s.borrow_mut() = Some(sink.clone()));
        let crypto = crate::dtls::crypto_provider();
        let mut b = RtcConfig::new()
            .set_rtp_mode(true)
            .set_crypto_provider(crypto.clone())
            .build(now);
        a.add_local_candidate(Candidate::host("127.0.0.1:1000".parse().unwrap(), "udp").unwrap());
        b.add_local_candidate(Candidate::host("127.0.0.1:2000".parse().unwrap(), "udp").unwrap());
        let mut api = a.sdp_api();
        let mid = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
        let (offer, pending) = api.apply().expect("offer");
        let answer = b.sdp_api().accept_offer(offer).expect("answer");
        a.sdp_api()
            .accept_answer(pending, answer)
            .expect("accepted");
        run_pair(
            &mut a,
            &mut b,
            &mut now,
            |_| true,
            |_| {},
            |a, b| a.is_connected() && b.is_connected(),
        );
        let keys = sink.lock().unwrap().clone().expect("DTLS left its keys");
        let mut opener = RtpOpener::new(&crypto, &keys).expect("an AES-GCM profile");
        let mut sealer = RtcpSealer::new(&crypto, &keys).expect("an AES-GCM profile");

        // `a` sends packets 0..20; packet 7 is lost on the way.
        let pt = a
            .codec_config()
            .iter()
            .find(|p| p.spec().codec == str0m::format::Codec::Vp8)
            .expect("VP8")
            .pt();
        for seq in 0u64..20 {
            let payload = format!("packet {seq}").into_bytes();
            let mut api = a.direct_api();
            let tx = api.stream_tx_by_mid(mid, None).expect("a send stream");
            tx.write_rtp(
                RtpWrite::new(pt, seq.into(), 90 * seq as u32, now, payload).nackable(true),
            );
        }
        let opened = RefCell::new(Vec::new());
        let mut plain = vec![0u8; 2048];
        let mut feedback = Feedback::new(0x5eed, now);
        let mut seen = 0;
        run_pair(
            &mut a,
            &mut b,
            &mut now,
            |d| {
                if !is_rtp(d) {
                    return true;
                }
                let head = read_head(d, Some(3)).expect("an RTP header");
                if head.payload_type != *pt {
                    return false; // padding or RTX: not this test's business
                }
                let o = opener.open(d, head, &mut plain).expect("opens");
                if o.index == 7 {
                    return false;
                }
                opened
                    .borrow_mut()
                    .push((o.index, plain[..o.payload_len].to_vec(), head));
                false
            },
            |_| {},
            |_, _| {
                seen = opened.borrow().len();
                seen == 19
            },
        );
        let opened = opened.into_inner();
        assert_eq!(opened[0].0, 0);
        assert_eq!(opened[0].1, b"packet 0");
        assert_eq!(opened[18].1, b"packet 19");
        assert!(
            opened.iter().all(|(_, _, h)| h.transport_seq.is_some()),
            "TWCC numbers read"
        );

        // Our feedback about them, sealed here, is read by `a`.
        for (index, _, head) in &opened {
            feedback.on_packet(
                head.ssrc,
                90_000,
                *index,
                head.timestamp,
                head.transport_seq,
                now,
            );
        }
        let mut rtcp = Vec::new();
        let mut sealed = vec![0u8; 1500];
        let mut send = Vec::new();
        for at in [Duration::from_millis(50), Duration::from_secs(1)] {
            while feedback.poll(now + at, &mut rtcp) {
                let len = sealer.seal(&rtcp, &mut sealed).expect("sealed");
                send.push(sealed[..len].to_vec());
            }
        }
        let received = RefCell::new(Vec::new());
        let from: std::net::SocketAddr = "127.0.0.1:2000".parse().unwrap();
        let to: std::net::SocketAddr = "127.0.0.1:1000".parse().unwrap();
        for datagram in &send {
            let r = str0m::net::Receive::new(str0m::net::Protocol::Udp, from, to, datagram)
                .expect("datagram");
            a.handle_input(str0m::Input::Receive(now, r))
                .expect("receive");
        }
        run_pair(
            &mut a,
            &mut b,
            &mut now,
            |_| false,
            |e| {
                if let Event::RawPacket(raw) = e
                    && let RawPacket::RtcpRx(rtcp) = *raw
                {
                    received.borrow_mut().push(rtcp);
                }
            },
            |_, _| received.borrow().len() >= 3,
        );
        let received = received.into_inner();
        assert!(
            received.iter().any(|r| matches!(r, Rtcp::Twcc(_))),
            "{received:?}"
        );
        assert!(
            received.iter().any(|r| matches!(r, Rtcp::ReceiverReport(rr)
                if rr.reports.iter().any(|b| b.max_seq == 19 && b.packets_lost == 1))),
            "{received:?}"
        );
        assert!(
            received.iter().any(|r| matches!(r, Rtcp::Nack(n)
                if n.reports.iter().any(|e| e.pid == 7))),
            "{received:?}"
        );
    }
}
