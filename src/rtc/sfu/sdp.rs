//! SDP text helpers: what str0m's offer/answer API does not cover.
//!
//! How this works: [`OfferSummary::parse`] splits an offer into its media sections (kind, mid,
//! direction, usable codec). Before str0m sees an offer, [`set_inactive`] turns the recvonly
//! m-lines that carry no active outbound track into `a=inactive`, so str0m answers them inactive.
//! After str0m answered, [`rewrite_msids`] puts our msid (publisher stream id + track id) into the
//! sendonly m-lines, because str0m gives media created from a remote offer a random msid and has
//! no public setter for it.
use std::collections::BTreeMap;

use crate::rtc::ids::MediaKind;

/// Direction attribute of one m-line, as written by the offerer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

/// One media section of an offer.
#[derive(Debug, Clone)]
pub(crate) struct Section {
    /// `None` for m-lines other than audio/video (e.g. `application`).
    pub kind: Option<MediaKind>,
    pub mid: Option<String>,
    pub dir: Dir,
    /// Port 0 without `a=bundle-only`: the offerer rejected the m-line.
    pub rejected: bool,
    /// Opus (audio) or VP8 / H264 profile 42e01f (video) is offered.
    pub usable_codec: bool,
    /// Line index range (into the offer's lines) of this section.
    lines: std::ops::Range<usize>,
}

/// The media sections of an offer.
#[derive(Debug, Clone)]
pub(crate) struct OfferSummary {
    pub sections: Vec<Section>,
}

/// Refuses an offer in which one payload type number names two codecs (RFC 8843 §9.1: within a
/// BUNDLE group a payload type means one codec on every m-line). str0m asserts this while it
/// applies an offer, so such an offer must never reach it (found by the `sdp_offer` fuzz target:
/// 109 as Opus on the audio m-line and as RTX on a video one).
fn check_payload_types(lines: &[&str]) -> Result<(), String> {
    let mut codecs: std::collections::HashMap<&str, (String, &str)> = Default::default();
    for line in lines {
        let Some(rtpmap) = line.trim_end().strip_prefix("a=rtpmap:") else {
            continue;
        };
        let Some((pt, encoding)) = rtpmap.split_once(' ') else {
            continue;
        };
        let mut parts = encoding.split('/');
        let name = parts.next().unwrap_or("").to_ascii_lowercase();
        let clock = parts.next().unwrap_or("");
        match codecs.get(pt) {
            Some((n, c)) if *n != name || *c != clock => {
                return Err(format!("payload type {pt} names two codecs"));
            }
            Some(_) => {}
            None => {
                codecs.insert(pt, (name, clock));
            }
        }
    }
    Ok(())
}

impl OfferSummary {
    /// Splits an offer into sections; fails when it has no `v=` line or no m-line.
    pub fn parse(sdp: &str) -> Result<Self, String> {
        let lines: Vec<&str> = sdp.lines().collect();
        if !lines
            .first()
            .is_some_and(|l| l.trim_start().starts_with("v="))
        {
            return Err("the SDP does not start with v=".into());
        }
        let starts: Vec<usize> = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| l.starts_with("m="))
            .map(|(i, _)| i)
            .collect();
        if starts.is_empty() {
            return Err("the SDP has no m-line".into());
        }
        check_payload_types(&lines)?;
        let mut sections = Vec::with_capacity(starts.len());
        for (n, &start) in starts.iter().enumerate() {
            let end = starts.get(n + 1).copied().unwrap_or(lines.len());
            sections.push(parse_section(&lines[start..end], start..end)?);
        }
        Ok(OfferSummary { sections })
    }

    /// The non-rejected recvonly sections of a kind, in offer order.
    pub fn recvonly(&self, kind: MediaKind) -> impl Iterator<Item = &Section> {
        self.sections
            .iter()
            .filter(move |s| s.kind == Some(kind) && !s.rejected && s.dir == Dir::RecvOnly)
    }
}

fn parse_section(lines: &[&str], range: std::ops::Range<usize>) -> Result<Section, String> {
    let mline = lines[0];
    let mut fields = mline[2..].split_whitespace();
    let kind = match fields.next() {
        Some("audio") => Some(MediaKind::Audio),
        Some("video") => Some(MediaKind::Video),
        Some(_) => None,
        None => return Err(format!("malformed m-line: {mline}")),
    };
    let port: u32 = fields
        .next()
        .and_then(|p| p.split('/').next())
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("malformed m-line: {mline}"))?;
    let mut mid = None;
    let mut dir = Dir::SendRecv;
    let mut bundle_only = false;
    // PT → (codec name, clock rate) and PT → fmtp parameters.
    let mut rtpmap: Vec<(&str, &str, &str)> = Vec::new();
    let mut fmtp: Vec<(&str, &str)> = Vec::new();
    for l in &lines[1..] {
        let l = l.trim_end();
        let Some(attr) = l.strip_prefix("a=") else {
            continue;
        };
        match attr {
            "sendrecv" => dir = Dir::SendRecv,
            "sendonly" => dir = Dir::SendOnly,
            "recvonly" => dir = Dir::RecvOnly,
            "inactive" => dir = Dir::Inactive,
            "bundle-only" => bundle_only = true,
            _ => {
                if let Some(m) = attr.strip_prefix("mid:") {
                    mid = Some(m.trim().to_string());
                } else if let Some(r) = attr.strip_prefix("rtpmap:") {
                    if let Some((pt, rest)) = r.split_once(' ') {
                        let mut enc = rest.split('/');
                        let name = enc.next().unwrap_or("");
                        let clock = enc.next().unwrap_or("");
                        rtpmap.push((pt, name, clock));
                    }
                } else if let Some(f) = attr.strip_prefix("fmtp:")
                    && let Some((pt, params)) = f.split_once(' ')
                {
                    fmtp.push((pt, params));
                }
            }
        }
    }
    let usable_codec = match kind {
        Some(MediaKind::Audio) => rtpmap
            .iter()
            .any(|(_, n, c)| n.eq_ignore_ascii_case("opus") && *c == "48000"),
        Some(MediaKind::Video) => rtpmap.iter().any(|(pt, n, c)| {
            *c == "90000"
                && (n.eq_ignore_ascii_case("vp8")
                    || (n.eq_ignore_ascii_case("h264")
                        && fmtp
                            .iter()
                            .any(|(p, params)| p == pt && is_h264_42e01f(params))))
        }),
        None => true,
    };
    Ok(Section {
        kind,
        mid,
        dir,
        rejected: port == 0 && !bundle_only,
        usable_codec,
        lines: range,
    })
}

fn is_h264_42e01f(params: &str) -> bool {
    params.split(';').any(|kv| {
        kv.split_once('=').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("profile-level-id")
                && v.trim().eq_ignore_ascii_case("42e01f")
        })
    })
}

/// The offer with the direction of the given sections replaced by `a=inactive`.
pub(crate) fn set_inactive(sdp: &str, summary: &OfferSummary, mids: &[impl AsRef<str>]) -> String {
    let mut out = String::with_capacity(sdp.len() + 16);
    let targets: Vec<&std::ops::Range<usize>> = summary
        .sections
        .iter()
        .filter(|s| {
            s.mid
                .as_deref()
                .is_some_and(|m| mids.iter().any(|x| x.as_ref() == m))
        })
        .map(|s| &s.lines)
        .collect();
    for (i, line) in sdp.lines().enumerate() {
        let in_target = targets.iter().any(|r| r.contains(&i));
        let t = line.trim_end();
        if in_target && matches!(t, "a=recvonly" | "a=sendrecv" | "a=sendonly") {
            out.push_str("a=inactive");
        } else {
            out.push_str(t);
        }
        out.push_str("\r\n");
    }
    out
}

/// Restricts an msid part to RFC 8830 token characters and 64 characters, as browsers expect.
pub(crate) fn msid_token(s: &str) -> String {
    let token = |c: &char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`{|}~".contains(*c);
    let t: String = s.chars().filter(token).take(64).collect();
    if t.is_empty() { "-".to_string() } else { t }
}

/// Puts `a=msid:<stream> <track>` (and the matching `a=ssrc:<n> msid:` lines) into the answer's
/// m-lines listed in `msids` (mid → (stream id, track id), already token-safe), and lists those
/// stream ids in the session's `a=msid-semantic` line.
pub(crate) fn rewrite_msids(answer: &str, msids: &BTreeMap<String, (String, String)>) -> String {
    let mut out = String::with_capacity(answer.len() + 256);
    let lines: Vec<&str> = answer.lines().map(str::trim_end).collect();
    // Find each section's mid first: a=msid may precede a=mid.
    let mut section_mid: Vec<Option<&str>> = vec![None; lines.len()];
    let mut start = None;
    for (i, l) in lines.iter().enumerate() {
        if l.starts_with("m=") {
            start = Some(i);
        }
        if let (Some(s), Some(m)) = (start, l.strip_prefix("a=mid:")) {
            for slot in section_mid.iter_mut().take(lines.len()).skip(s) {
                *slot = Some(m.trim());
            }
        }
    }
    // A section's later lines inherit the mid found anywhere in it; reset at the next m-line.
    let mut current: Option<&str> = None;
    let mut streams: Vec<&str> = msids.values().map(|(s, _)| s.as_str()).collect();
    streams.sort_unstable();
    streams.dedup();
    for (i, l) in lines.iter().enumerate() {
        if l.starts_with("m=") {
            current = section_mid[i];
        }
        if current.is_none() && l.starts_with("a=msid-semantic") {
            out.push_str("a=msid-semantic: WMS");
            for s in &streams {
                out.push(' ');
                out.push_str(s);
            }
            out.push_str("\r\n");
            continue;
        }
        let target = current.and_then(|m| msids.get(m));
        match target {
            Some((stream, track)) if l.starts_with("a=msid:") => {
                out.push_str(&format!("a=msid:{stream} {track}\r\n"));
            }
            Some((stream, track)) if l.starts_with("a=ssrc:") && l.contains(" msid:") => {
                let head = l.split(" msid:").next().unwrap_or(l);
                out.push_str(&format!("{head} msid:{stream} {track}\r\n"));
            }
            _ => {
                out.push_str(l);
                out.push_str("\r\n");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1 2\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=sendonly\r\na=rtpmap:111 opus/48000/2\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=recvonly\r\na=rtpmap:96 VP8/90000\r\n\
m=video 0 UDP/TLS/RTP/SAVPF 98\r\na=mid:2\r\na=recvonly\r\na=rtpmap:98 VP9/90000\r\n";

    #[test]
    fn sections_carry_kind_mid_direction_and_codec_usability() {
        let s = OfferSummary::parse(OFFER).unwrap();
        assert_eq!(s.sections.len(), 3);
        assert_eq!(s.sections[0].kind, Some(MediaKind::Audio));
        assert_eq!(s.sections[0].dir, Dir::SendOnly);
        assert!(s.sections[1].usable_codec);
        assert!(!s.sections[2].usable_codec);
        assert!(s.sections[2].rejected);
        assert_eq!(s.recvonly(MediaKind::Video).count(), 1);
    }

    #[test]
    fn one_payload_type_naming_two_codecs_is_refused_before_str0m_sees_it() {
        // The fuzzer's input as the fuzz target hands it over (lossy UTF-8).
        let crash = include_bytes!("../../../test/fixtures/sdp/fuzz-pt-109-opus-and-rtx.sdp");
        let crash = String::from_utf8_lossy(crash);
        assert_eq!(
            OfferSummary::parse(&crash).err().as_deref(),
            Some("payload type 109 names two codecs")
        );
        // The same payload type for the same codec on two m-lines is fine (bundled audio).
        let twice = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=rtpmap:111 opus/48000/2\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\na=rtpmap:111 OPUS/48000/2\r\n";
        assert_eq!(OfferSummary::parse(twice).map(|o| o.sections.len()), Ok(2));
    }

    #[test]
    fn garbage_is_not_an_offer() {
        assert!(OfferSummary::parse("hello").is_err());
        assert!(OfferSummary::parse("v=0\r\ns=-\r\n").is_err());
    }

    #[test]
    fn set_inactive_changes_only_the_listed_mids() {
        let s = OfferSummary::parse(OFFER).unwrap();
        let out = set_inactive(OFFER, &s, &["1"]);
        let again = OfferSummary::parse(&out).unwrap();
        assert_eq!(again.sections[0].dir, Dir::SendOnly);
        assert_eq!(again.sections[1].dir, Dir::Inactive);
        assert_eq!(again.sections[2].dir, Dir::RecvOnly);
    }

    #[test]
    fn rewrite_msids_replaces_msid_and_ssrc_msid_lines() {
        let answer = "v=0\r\na=msid-semantic: WMS abc\r\nm=audio 9 X 111\r\na=mid:0\r\na=msid:abc def\r\n\
a=ssrc:5 cname:x\r\na=ssrc:5 msid:abc def\r\nm=video 9 X 96\r\na=msid:zz yy\r\na=mid:1\r\n";
        let mut m = BTreeMap::new();
        m.insert("1".to_string(), ("S".to_string(), "T".to_string()));
        m.insert("0".to_string(), ("S".to_string(), "U".to_string()));
        let out = rewrite_msids(answer, &m);
        assert!(out.contains("a=msid-semantic: WMS S\r\n"), "{out}");
        assert!(out.contains("a=msid:S U\r\n"));
        assert!(out.contains("a=ssrc:5 msid:S U\r\n"));
        assert!(out.contains("a=msid:S T\r\n"));
        assert!(!out.contains("abc"));
    }

    #[test]
    fn msid_tokens_drop_colons_and_cap_the_length() {
        assert_eq!(msid_token("a:b"), "ab");
        assert_eq!(msid_token(&"x".repeat(80)).len(), 64);
        assert_eq!(msid_token(":"), "-");
    }
}
