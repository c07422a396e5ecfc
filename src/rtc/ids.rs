//! Identifiers shared by the media plane and the rooms.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

/// A peer of a room (the membrane client's `peerId`), a UUID v4 rendered in its hyphenated form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub Uuid);

impl PeerId {
    /// A fresh random (v4) peer id.
    pub fn new_v4() -> Self {
        PeerId(Uuid::new_v4())
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for PeerId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(PeerId)
    }
}

/// The kind of a media track (an m-line's media type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    /// `m=audio` (Opus).
    Audio,
    /// `m=video` (VP8 or H264).
    Video,
}

impl MediaKind {
    /// The SDP media type name, `"audio"` or `"video"`.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
        }
    }
}

impl fmt::Display for MediaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
