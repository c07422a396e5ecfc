//! The little SDP reading the engine needs: which media kind each mid of an offer has.
//!
//! Everything else about SDP (codecs, ICE, DTLS) is the SFU's business; the engine only needs the
//! kind of each published track to build its subscribers' `offerData` counts.

use std::collections::BTreeMap;

use crate::rtc::ids::MediaKind;

/// mid → kind for every audio/video m-line of `sdp` that has an `a=mid`; other media
/// (data channels) are skipped. Returns an empty map for text that is not SDP.
pub fn mid_kinds(sdp: &str) -> BTreeMap<String, MediaKind> {
    let mut out = BTreeMap::new();
    let mut current: Option<MediaKind> = None;
    for line in sdp.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(media) = line.strip_prefix("m=") {
            current = match media.split(' ').next() {
                Some("audio") => Some(MediaKind::Audio),
                Some("video") => Some(MediaKind::Video),
                _ => None,
            };
        } else if let (Some(mid), Some(kind)) = (line.strip_prefix("a=mid:"), current) {
            out.insert(mid.trim().to_owned(), kind);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mids_are_mapped_to_their_m_line_kind() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=sendonly\r\na=mid:1\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:2\r\n";
        let kinds = mid_kinds(sdp);
        assert_eq!(kinds.len(), 2);
        assert_eq!(kinds["0"], MediaKind::Audio);
        assert_eq!(kinds["1"], MediaKind::Video);
    }

    #[test]
    fn garbage_yields_no_mids() {
        assert!(mid_kinds("hello\nworld").is_empty());
    }
}
