//! Just enough SDP reading for assertions: the m-lines of an offer or answer.

/// One m-line of a session description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSection {
    /// `audio`, `video` or `application`.
    pub kind: String,
    /// Port of the m-line (0 = rejected).
    pub port: u16,
    /// `a=mid`.
    pub mid: Option<String>,
    /// `sendrecv`, `sendonly`, `recvonly` or `inactive` (default `sendrecv`).
    pub direction: String,
    /// `a=extmap` entries: (id, uri).
    pub extmap: Vec<(u8, String)>,
    /// `a=msid` (stream id, track id).
    pub msid: Option<(String, String)>,
    /// SSRCs from `a=ssrc` lines.
    pub ssrcs: Vec<u32>,
    /// `a=rtpmap` entries: (payload type, encoding name).
    pub rtpmap: Vec<(u8, String)>,
    /// `a=ice-ufrag` of the section (or the session).
    pub ice_ufrag: Option<String>,
}

/// Parses the m-lines of `sdp`.
pub fn media_sections(sdp: &str) -> Vec<MediaSection> {
    let mut sections: Vec<MediaSection> = Vec::new();
    let mut session_ufrag = None;
    for line in sdp.lines().map(str::trim_end) {
        if let Some(rest) = line.strip_prefix("m=") {
            let mut parts = rest.split_whitespace();
            let kind = parts.next().unwrap_or_default().to_owned();
            let port = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
            sections.push(MediaSection {
                kind,
                port,
                mid: None,
                direction: "sendrecv".into(),
                extmap: Vec::new(),
                msid: None,
                ssrcs: Vec::new(),
                rtpmap: Vec::new(),
                ice_ufrag: session_ufrag.clone(),
            });
            continue;
        }
        let Some(attr) = line.strip_prefix("a=") else {
            continue;
        };
        let (name, value) = attr.split_once(':').unwrap_or((attr, ""));
        let Some(section) = sections.last_mut() else {
            if name == "ice-ufrag" {
                session_ufrag = Some(value.to_owned());
            }
            continue;
        };
        match name {
            "mid" => section.mid = Some(value.to_owned()),
            "sendrecv" | "sendonly" | "recvonly" | "inactive" => section.direction = name.into(),
            "ice-ufrag" => section.ice_ufrag = Some(value.to_owned()),
            "extmap" => {
                let mut parts = value.split_whitespace();
                let id = parts
                    .next()
                    .and_then(|id| id.split('/').next())
                    .and_then(|id| id.parse().ok());
                if let (Some(id), Some(uri)) = (id, parts.next()) {
                    section.extmap.push((id, uri.to_owned()));
                }
            }
            "msid" => {
                let mut parts = value.split_whitespace();
                if let (Some(stream), Some(track)) = (parts.next(), parts.next()) {
                    section.msid = Some((stream.to_owned(), track.to_owned()));
                }
            }
            "ssrc" => {
                if let Some(ssrc) = value.split_whitespace().next().and_then(|s| s.parse().ok())
                    && !section.ssrcs.contains(&ssrc)
                {
                    section.ssrcs.push(ssrc);
                }
            }
            "rtpmap" => {
                let mut parts = value.split_whitespace();
                let pt = parts.next().and_then(|p| p.parse().ok());
                let name = parts.next().and_then(|n| n.split('/').next());
                if let (Some(pt), Some(name)) = (pt, name) {
                    section.rtpmap.push((pt, name.to_owned()));
                }
            }
            _ => {}
        }
    }
    sections
}

/// The section with `mid`.
pub fn section<'a>(sections: &'a [MediaSection], mid: &str) -> Option<&'a MediaSection> {
    sections.iter().find(|s| s.mid.as_deref() == Some(mid))
}
