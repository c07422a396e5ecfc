//! Room chat: text messages to everyone in the room, carried as `chat` events on the `room:*`
//! channel (the tutorial client registers no handler for them, so it ignores them).
//!
//! - In: `chat {"text": "<string>"}` from a member. The reply is `ok {}`, or `error {"reason":
//!   …}`: `"not in the room"` (no `peerAccepted` yet), `"empty message"`, `"message too long"`
//!   (over [`MAX_CHAT_CHARS`] characters), `"too many messages"` (over the per-peer rate, see
//!   [`ChatRate`]).
//! - Out, to every member including the sender: `chat {"peerId", "displayName", "text",
//!   "sentAt"}` with the display name from the sender's `join` metadata and the server's time
//!   (milliseconds since the Unix epoch).
//!
//! The server stores nothing: a message is fanned out and forgotten, so nothing outlives the
//! room. Text goes out as it came in (JSON strings need no escaping for HTML; the client writes
//! it as text, never as markup).

use std::time::{Duration, Instant};

/// The longest chat message, in characters (a long paragraph; links and pasted snippets fit).
pub const MAX_CHAT_CHARS: usize = 2000;

/// Messages a peer may send in a burst before the rate applies.
pub const CHAT_BURST: u32 = 5;

/// One more message is allowed per this interval once the burst is used up (a person typing
/// fast sends about one a second; a script flooding the room is cut to that).
pub const CHAT_REFILL: Duration = Duration::from_secs(1);

/// A per-peer token bucket: [`CHAT_BURST`] tokens, one back per [`CHAT_REFILL`].
#[derive(Debug, Clone)]
pub struct ChatRate {
    tokens: u32,
    last_refill: Instant,
}

impl ChatRate {
    /// A full bucket at `now`.
    pub fn new(now: Instant) -> Self {
        ChatRate {
            tokens: CHAT_BURST,
            last_refill: now,
        }
    }

    /// Takes one token at `now`; `false` when the peer is over its rate.
    pub fn allow(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last_refill);
        let refills = (elapsed.as_nanos() / CHAT_REFILL.as_nanos()) as u32;
        if refills > 0 {
            self.tokens = self.tokens.saturating_add(refills).min(CHAT_BURST);
            self.last_refill += CHAT_REFILL * refills;
            if self.tokens == CHAT_BURST {
                self.last_refill = now;
            }
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

/// Why a chat message was refused (the `reason` of the error reply).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatRefusal {
    /// The payload has no string `text`, or it is only whitespace.
    Empty,
    /// More than [`MAX_CHAT_CHARS`] characters.
    TooLong,
    /// Over the per-peer rate.
    TooMany,
    /// The sender is not an accepted member of the room.
    NotInRoom,
}

impl ChatRefusal {
    /// The reason string sent in the error reply.
    pub fn reason(self) -> &'static str {
        match self {
            ChatRefusal::Empty => "empty message",
            ChatRefusal::TooLong => "message too long",
            ChatRefusal::TooMany => "too many messages",
            ChatRefusal::NotInRoom => "not in the room",
        }
    }
}

/// Checks a message's text: non-blank and at most [`MAX_CHAT_CHARS`] characters.
pub fn check_text(text: Option<&str>) -> Result<&str, ChatRefusal> {
    let text = text.ok_or(ChatRefusal::Empty)?;
    if text.trim().is_empty() {
        return Err(ChatRefusal::Empty);
    }
    // Counting stops one past the limit: a huge frame is not walked to its end.
    if text.chars().take(MAX_CHAT_CHARS + 1).count() > MAX_CHAT_CHARS {
        return Err(ChatRefusal::TooLong);
    }
    Ok(text)
}

/// The display name in a peer's `join` metadata (`{"displayName": "…"}`), else "Unknown".
pub fn display_name_of(metadata: &serde_json::Value) -> String {
    match metadata
        .get("displayName")
        .and_then(serde_json::Value::as_str)
    {
        Some(name) if !name.trim().is_empty() => name.to_owned(),
        _ => "Unknown".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_one_message_per_refill_interval() {
        let t0 = Instant::now();
        let mut rate = ChatRate::new(t0);
        for _ in 0..CHAT_BURST {
            assert!(rate.allow(t0));
        }
        assert!(!rate.allow(t0));
        assert!(!rate.allow(t0 + CHAT_REFILL / 2));
        assert!(rate.allow(t0 + CHAT_REFILL));
        assert!(!rate.allow(t0 + CHAT_REFILL));
        // A long pause refills the bucket to the burst, no further.
        let later = t0 + CHAT_REFILL * 100;
        for _ in 0..CHAT_BURST {
            assert!(rate.allow(later));
        }
        assert!(!rate.allow(later));
    }

    #[test]
    fn text_must_be_non_blank_and_at_most_the_limit_in_characters() {
        assert_eq!(check_text(None), Err(ChatRefusal::Empty));
        assert_eq!(check_text(Some(" \n\t")), Err(ChatRefusal::Empty));
        let at_limit = "ż".repeat(MAX_CHAT_CHARS);
        assert_eq!(check_text(Some(&at_limit)), Ok(at_limit.as_str()));
        let over = "a".repeat(MAX_CHAT_CHARS + 1);
        assert_eq!(check_text(Some(&over)), Err(ChatRefusal::TooLong));
        assert_eq!(check_text(Some("<b>hi</b>")), Ok("<b>hi</b>"));
    }

    #[test]
    fn the_display_name_comes_from_the_join_metadata() {
        assert_eq!(
            display_name_of(&serde_json::json!({"displayName": "Zoë"})),
            "Zoë"
        );
        assert_eq!(display_name_of(&serde_json::json!({})), "Unknown");
        assert_eq!(
            display_name_of(&serde_json::json!({"displayName": 5})),
            "Unknown"
        );
    }
}
