//! Short-lived TURN credentials, the TURN REST API convention (draft-uberti-behave-turn-rest):
//! username `"<expiry unix seconds>:<peer id>"`, password `base64(HMAC-SHA1(secret, username))`.
//!
//! The server hands them out with the channel join and checks them without storing anything:
//! the password is recomputed from the username, and the expiry is read from it.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use stun::crypto::{HashAlgorithm, HmacAlgorithm, RTCCryptoProvider};

/// A username and password for the TURN server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `"<expiry unix seconds>:<peer id>"`.
    pub username: String,
    /// `base64(HMAC-SHA1(secret, username))`.
    pub password: String,
}

/// Why a username is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsernameRefusal {
    /// Not `"<unix seconds>:<user>"`.
    Malformed,
    /// Its expiry has passed.
    Expired,
}

/// The shared secret that signs credentials, with the crypto provider computing the MACs.
#[derive(Clone)]
pub struct TurnSecret {
    secret: Vec<u8>,
    crypto: Arc<dyn RTCCryptoProvider>,
}

impl std::fmt::Debug for TurnSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TurnSecret([REDACTED; {} bytes])", self.secret.len())
    }
}

impl TurnSecret {
    /// A secret of these bytes; `None` when no crypto provider is built in (never in this
    /// build: rtc-stun's default features include one).
    pub fn new(secret: impl Into<Vec<u8>>) -> Option<Self> {
        let crypto = stun::crypto::default_provider().ok()?;
        Some(TurnSecret {
            secret: secret.into(),
            crypto,
        })
    }

    /// The crypto provider (for MESSAGE-INTEGRITY).
    pub fn crypto(&self) -> &dyn RTCCryptoProvider {
        self.crypto.as_ref()
    }

    /// Credentials for `user` valid until `now_unix + ttl`.
    pub fn issue(&self, user: &str, now_unix: u64, ttl: Duration) -> Credentials {
        let username = format!("{}:{user}", now_unix.saturating_add(ttl.as_secs()));
        let password = self.password_for(&username);
        Credentials { username, password }
    }

    /// `base64(HMAC-SHA1(secret, username))`.
    pub fn password_for(&self, username: &str) -> String {
        let mut tag = [0u8; 20];
        let signed = self
            .crypto
            .crypto()
            .new_hmac(HmacAlgorithm::Sha1, &self.secret)
            .and_then(|mut mac| mac.sign(&[username.as_bytes()], &mut tag));
        if let Err(e) = signed {
            // An HMAC-SHA1 of a built-in provider does not fail; an empty tag authenticates nobody.
            log::error!("turn: HMAC-SHA1 failed: {e}");
            return String::new();
        }
        base64::engine::general_purpose::STANDARD.encode(tag)
    }

    /// The long-term key of RFC 8489 §9.2.2, `MD5(username ":" realm ":" password)`, with the
    /// password recomputed from `username`.
    pub fn long_term_key(&self, username: &str, realm: &str) -> Vec<u8> {
        let text = format!("{username}:{realm}:{}", self.password_for(username));
        self.crypto
            .crypto()
            .hash(HashAlgorithm::Md5, text.as_bytes())
            .unwrap_or_default()
    }
}

/// The user (peer id) of a REST-API username, if it has not expired at `now_unix`.
pub fn user_of(username: &str, now_unix: u64) -> Result<&str, UsernameRefusal> {
    let (expiry, user) = username.split_once(':').ok_or(UsernameRefusal::Malformed)?;
    let expiry: u64 = expiry.parse().map_err(|_| UsernameRefusal::Malformed)?;
    if user.is_empty() {
        return Err(UsernameRefusal::Malformed);
    }
    if expiry <= now_unix {
        return Err(UsernameRefusal::Expired);
    }
    Ok(user)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_the_base64_hmac_sha1_of_the_username_under_the_secret() {
        // RFC 2202 test case 2: HMAC-SHA1("Jefe", "what do ya want for nothing?").
        let secret = TurnSecret::new("Jefe").expect("provider");
        assert_eq!(
            secret.password_for("what do ya want for nothing?"),
            base64::engine::general_purpose::STANDARD
                .encode(hex("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"))
        );
    }

    #[test]
    fn issued_credentials_name_their_expiry_and_user_and_expire_then() {
        let secret = TurnSecret::new("s").expect("provider");
        let c = secret.issue("peer-1", 1000, Duration::from_secs(60));
        assert_eq!(c.username, "1060:peer-1");
        assert_eq!(c.password, secret.password_for("1060:peer-1"));
        assert_eq!(user_of(&c.username, 1059), Ok("peer-1"));
        assert_eq!(user_of(&c.username, 1060), Err(UsernameRefusal::Expired));
        assert_eq!(user_of("peer-1", 0), Err(UsernameRefusal::Malformed));
        assert_eq!(user_of("x:peer-1", 0), Err(UsernameRefusal::Malformed));
        assert_eq!(user_of("99:", 0), Err(UsernameRefusal::Malformed));
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }
}
