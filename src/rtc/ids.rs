//! Identifiers shared by the media plane and the rooms.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

/// The text-backed id types' shared surface: `as_str`, conversions from text, and `Display`.
macro_rules! text_id {
    ($name:ident) => {
        impl $name {
            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(s.into())
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                $name(s.into())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

/// A peer of a room (the membrane client's `peerId`), a UUID v4 rendered in its hyphenated form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub Uuid);

impl PeerId {
    /// A fresh random (v4) peer id.
    pub fn new_v4() -> Self {
        PeerId(Uuid::new_v4())
    }
}

/// Hashes a [`PeerId`] by its random bits, for the maps the media plane looks up per packet
/// ([`PeerMap`]). The std `HashMap`'s SipHash defends against keys an attacker chooses; peer
/// ids are drawn by the server (UUID v4) and only ever inserted by it, so that defence buys
/// nothing there, while SipHash cost about 5% of the SFU's instructions per forwarded packet
/// (callgrind, BENCHMARKS.md).
#[derive(Debug, Default, Clone, Copy)]
pub struct PeerIdHasher(u64);

impl std::hash::Hasher for PeerIdHasher {
    fn write(&mut self, bytes: &[u8]) {
        // A UUID hashes as its 16 bytes (after their length): the first 8 are random but for
        // the version nibble, plenty for a hash table's index and tag.
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(word);
        }
    }

    fn write_usize(&mut self, _length: usize) {}

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A map keyed by server-drawn [`PeerId`]s, hashed cheaply ([`PeerIdHasher`]).
pub type PeerMap<V> =
    std::collections::HashMap<PeerId, V, std::hash::BuildHasherDefault<PeerIdHasher>>;

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

/// A room's name (the topic suffix of `room:<id>`), shared cheaply by every log line of the room.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct RoomId(std::sync::Arc<str>);

text_id!(RoomId);

/// A published track's id as the clients know it (`"<peerId>:<uuid>"` from the membrane client).
///
/// The server only accepts a track id from the peer it names (see [`TrackId::is_owned_by`]), so
/// one id never stands for two publishers' tracks.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrackId(std::sync::Arc<str>);

text_id!(TrackId);

impl TrackId {
    /// Whether the id is in `peer`'s namespace: `"<peer>:<anything non-empty>"`.
    pub fn is_owned_by(&self, peer: PeerId) -> bool {
        let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let prefix = peer.0.hyphenated().encode_lower(&mut buf);
        self.0
            .strip_prefix(&*prefix)
            .and_then(|rest| rest.strip_prefix(':'))
            .is_some_and(|rest| !rest.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEER: &str = "6f1c3c2e-5a4b-4c3d-9e8f-0a1b2c3d4e5f";

    #[test]
    fn a_track_id_belongs_to_the_peer_it_starts_with() {
        let peer: PeerId = PEER.parse().unwrap();
        assert!(TrackId::from(format!("{PEER}:a1")).is_owned_by(peer));
        assert!(!TrackId::from(format!("{PEER}:")).is_owned_by(peer));
        assert!(!TrackId::from(PEER).is_owned_by(peer));
        assert!(!TrackId::from("someone-else:a1").is_owned_by(peer));
        assert!(!TrackId::from(format!("x{PEER}:a1")).is_owned_by(peer));
    }

    #[test]
    fn peer_ids_hash_by_both_halves_of_their_bytes_and_a_peer_map_finds_them() {
        use std::hash::BuildHasher;
        let build = std::hash::BuildHasherDefault::<PeerIdHasher>::default();
        let a: PeerId = PEER.parse().unwrap();
        let b: PeerId = "6f1c3c2e-5a4b-4c3d-9e8f-0a1b2c3d4e60".parse().unwrap();
        assert_ne!(
            build.hash_one(a),
            build.hash_one(b),
            "differ in the last byte only"
        );
        let mut map = PeerMap::default();
        map.insert(a, 1);
        map.insert(b, 2);
        assert_eq!((map.get(&a), map.get(&b)), (Some(&1), Some(&2)));
    }
}
