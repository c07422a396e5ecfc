//! Resume tokens: what lets a client whose socket was lost take its peer back.
//!
//! A sans-IO table (time and randomness come in as arguments). Every admitted peer gets one
//! live token, told to it in `peerAccepted` (`resumeToken`). A client rejoining `room:<id>` with
//! `{"resumeToken": …}` in its join params redeems it: the token is spent and a fresh one is
//! issued in the same step, so a token works once. A token is bound to its room and peer, and
//! dies with the peer (left, media failed, reconnect grace over): [`ResumeTokens::revoke`].
//!
//! Refusals say why ([`ResumeRefusal`]), so spent and dead tokens are remembered for one grace
//! period after they stop working; after that they are forgotten and read as unknown. The table
//! holds at most one live token per peer plus the tombstones of the last grace period.
//!
//! Tokens are secrets: this module never logs one, and [`ResumeTokens`]'s `Debug` shows counts.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::rtc::ids::PeerId;

/// Random bytes in a token: 192 bits, far beyond guessing.
pub const TOKEN_BYTES: usize = 24;
/// The longest string read as a token (anything longer is refused unread).
const MAX_TOKEN_LEN: usize = 64;

/// Why a resume token was refused; [`ResumeRefusal::reason`] is the join error's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeRefusal {
    /// Not a token this server issued (or one forgotten long ago), or not a string.
    Invalid,
    /// Spent by an earlier resume.
    Used,
    /// Its peer is gone (left, failed, or the reconnect grace ran out).
    Expired,
    /// Issued in another room.
    OtherRoom,
}

impl ResumeRefusal {
    /// The `outcome` label of the reconnects counter.
    pub fn label(self) -> &'static str {
        match self {
            ResumeRefusal::Invalid => "invalid",
            ResumeRefusal::Used => "used",
            ResumeRefusal::Expired => "expired",
            ResumeRefusal::OtherRoom => "other_room",
        }
    }

    /// The client-facing text (`{"reason": …}` of the join error).
    pub fn reason(self) -> &'static str {
        match self {
            ResumeRefusal::Invalid => "invalid resume token",
            ResumeRefusal::Used => "resume token already used",
            ResumeRefusal::Expired => "resume token expired",
            ResumeRefusal::OtherRoom => "resume token is for another room",
        }
    }
}

#[derive(Debug)]
enum State {
    Live,
    /// Refused with this until the instant, then forgotten.
    Dead(ResumeRefusal, Instant),
}

#[derive(Debug)]
struct Entry {
    room: String,
    peer: PeerId,
    state: State,
}

/// The table of resume tokens of every room (see the module docs).
pub struct ResumeTokens {
    entries: HashMap<String, Entry>,
    /// Each peer's live token.
    live: HashMap<PeerId, String>,
    /// How long a spent or dead token is remembered (the reconnect grace).
    remember: Duration,
    next_sweep: Option<Instant>,
}

impl std::fmt::Debug for ResumeTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResumeTokens")
            .field("entries", &self.entries.len())
            .field("live", &self.live.len())
            .finish()
    }
}

impl ResumeTokens {
    /// An empty table remembering spent and dead tokens for `remember`.
    pub fn new(remember: Duration) -> Self {
        ResumeTokens {
            entries: HashMap::new(),
            live: HashMap::new(),
            remember,
            next_sweep: None,
        }
    }

    /// Makes `random` the live token of `peer` in `room` (its previous one is spent) and
    /// returns it, base64url-encoded.
    pub fn issue(
        &mut self,
        room: &str,
        peer: PeerId,
        random: [u8; TOKEN_BYTES],
        now: Instant,
    ) -> String {
        self.sweep(now);
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random);
        if let Some(old) = self.live.insert(peer, token.clone()) {
            self.kill(&old, ResumeRefusal::Used, now);
        }
        self.entries.insert(
            token.clone(),
            Entry {
                room: room.to_owned(),
                peer,
                state: State::Live,
            },
        );
        token
    }

    /// Spends `token` for `room`: its peer, or why not. A refused token is left as it was.
    pub fn redeem(
        &mut self,
        room: &str,
        token: &str,
        now: Instant,
    ) -> Result<PeerId, ResumeRefusal> {
        self.sweep(now);
        if token.len() > MAX_TOKEN_LEN {
            return Err(ResumeRefusal::Invalid);
        }
        let entry = self.entries.get(token).ok_or(ResumeRefusal::Invalid)?;
        match entry.state {
            State::Dead(why, _) => Err(why),
            State::Live if entry.room != room => Err(ResumeRefusal::OtherRoom),
            State::Live => {
                let peer = entry.peer;
                self.live.remove(&peer);
                self.kill(token, ResumeRefusal::Used, now);
                Ok(peer)
            }
        }
    }

    /// `peer` is gone: its live token expires.
    pub fn revoke(&mut self, peer: PeerId, now: Instant) {
        if let Some(token) = self.live.remove(&peer) {
            self.kill(&token, ResumeRefusal::Expired, now);
        }
    }

    /// Every live token of `room` expires (the room crashed: its peers are gone).
    pub fn revoke_room(&mut self, room: &str, now: Instant) {
        let peers: Vec<PeerId> = self
            .entries
            .values()
            .filter(|e| e.room == room && matches!(e.state, State::Live))
            .map(|e| e.peer)
            .collect();
        for peer in peers {
            self.revoke(peer, now);
        }
    }

    /// How many tokens are remembered, live or dead.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no token is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn kill(&mut self, token: &str, why: ResumeRefusal, now: Instant) {
        if let Some(entry) = self.entries.get_mut(token) {
            entry.state = State::Dead(why, now + self.remember);
        }
    }

    /// Forgets dead tokens past their time; runs at most once per tenth of `remember`.
    fn sweep(&mut self, now: Instant) {
        if self.next_sweep.is_some_and(|t| now < t) {
            return;
        }
        self.next_sweep = Some(now + self.remember / 10);
        self.entries
            .retain(|_, e| !matches!(e.state, State::Dead(_, until) if until <= now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(30);

    fn bytes(n: u8) -> [u8; TOKEN_BYTES] {
        [n; TOKEN_BYTES]
    }

    /// A table with one token, issued now to a new peer of `room`: the table, the time, the
    /// peer and its token.
    fn one_token(room: &str) -> (ResumeTokens, Instant, PeerId, String) {
        let mut tokens = ResumeTokens::new(GRACE);
        let (t0, peer) = (Instant::now(), PeerId::new_v4());
        let token = tokens.issue(room, peer, bytes(1), t0);
        (tokens, t0, peer, token)
    }

    #[test]
    fn a_token_is_192_random_bits_in_base64url_without_padding() {
        let mut tokens = ResumeTokens::new(GRACE);
        let t0 = Instant::now();
        let token = tokens.issue("r", PeerId::new_v4(), [0xfb; TOKEN_BYTES], t0);
        assert_eq!(token, "-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7");
    }

    #[test]
    fn a_token_resumes_its_peer_once_and_the_next_token_works_after_it() {
        let (mut tokens, t0, peer, first) = one_token("r");
        assert_eq!(tokens.redeem("r", &first, t0), Ok(peer));
        assert_eq!(
            tokens.redeem("r", &first, t0),
            Err(ResumeRefusal::Used),
            "spent"
        );
        let second = tokens.issue("r", peer, bytes(2), t0);
        assert_eq!(tokens.redeem("r", &second, t0), Ok(peer));
    }

    #[test]
    fn issuing_a_new_token_spends_the_previous_one() {
        let (mut tokens, t0, peer, first) = one_token("r");
        let second = tokens.issue("r", peer, bytes(2), t0);
        assert_eq!(tokens.redeem("r", &first, t0), Err(ResumeRefusal::Used));
        assert_eq!(tokens.redeem("r", &second, t0), Ok(peer));
    }

    #[test]
    fn another_rooms_token_is_refused_and_stays_good_in_its_own_room() {
        let (mut tokens, t0, peer, token) = one_token("a");
        assert_eq!(
            tokens.redeem("b", &token, t0),
            Err(ResumeRefusal::OtherRoom)
        );
        assert_eq!(tokens.redeem("a", &token, t0), Ok(peer));
    }

    #[test]
    fn a_gone_peers_token_is_expired_then_forgotten_after_the_grace() {
        let (mut tokens, t0, peer, token) = one_token("r");
        tokens.revoke(peer, t0);
        assert_eq!(tokens.redeem("r", &token, t0), Err(ResumeRefusal::Expired));
        let later = t0 + GRACE + GRACE / 10;
        assert_eq!(
            tokens.redeem("r", &token, later),
            Err(ResumeRefusal::Invalid)
        );
        assert!(tokens.is_empty());
    }

    #[test]
    fn a_crashed_rooms_tokens_expire_and_other_rooms_keep_theirs() {
        let mut tokens = ResumeTokens::new(GRACE);
        let t0 = Instant::now();
        let (a, b, c) = (PeerId::new_v4(), PeerId::new_v4(), PeerId::new_v4());
        let crashed = [
            tokens.issue("r", a, bytes(1), t0),
            tokens.issue("r", b, bytes(2), t0),
        ];
        let other = tokens.issue("s", c, bytes(3), t0);
        tokens.revoke_room("r", t0);
        for token in crashed {
            assert_eq!(tokens.redeem("r", &token, t0), Err(ResumeRefusal::Expired));
        }
        assert_eq!(tokens.redeem("s", &other, t0), Ok(c));
    }

    #[test]
    fn garbage_and_oversized_tokens_are_invalid_and_change_nothing() {
        let (mut tokens, t0, peer, token) = one_token("r");
        for garbage in ["", "garbage", &"A".repeat(10_000), &token[1..]] {
            assert_eq!(tokens.redeem("r", garbage, t0), Err(ResumeRefusal::Invalid));
        }
        assert_eq!(tokens.redeem("r", &token, t0), Ok(peer));
    }

    #[test]
    fn the_table_debug_output_shows_no_token() {
        let mut tokens = ResumeTokens::new(GRACE);
        let token = tokens.issue("r", PeerId::new_v4(), bytes(7), Instant::now());
        let shown = format!("{tokens:?}");
        assert!(!shown.contains(&token), "{shown}");
        assert_eq!(shown, "ResumeTokens { entries: 1, live: 1 }");
    }
}
