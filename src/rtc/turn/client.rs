//! What a TURN client sends, built with the same wire-format crates as the server: requests
//! and indications, signed with long-term credentials once challenged. For the tests, the
//! fuzz target and tools; the server itself never calls it.

use stun::attributes::{ATTR_NONCE, ATTR_REALM, ATTR_USERNAME};
use stun::integrity::MessageIntegrity;
use stun::message::{Message, MessageClass, MessageType, Method, Setter, TransactionId};
use stun::textattrs::TextAttribute;

use super::credentials::Credentials;

/// Long-term credentials with the REALM and NONCE of the server's 401 challenge.
#[derive(Debug, Clone)]
pub struct LongTermAuth {
    /// Username and password.
    pub credentials: Credentials,
    /// REALM of the challenge.
    pub realm: String,
    /// NONCE of the challenge.
    pub nonce: String,
}

/// The setters of a message's attributes.
pub type Attributes<'a> = Vec<Box<dyn Setter + 'a>>;

/// A message of `method` and `class` with `transaction`, `attributes`, and with `auth` the
/// USERNAME, REALM, NONCE and MESSAGE-INTEGRITY (`None` when an attribute cannot be encoded).
pub fn message(
    method: Method,
    class: MessageClass,
    transaction: [u8; 12],
    attributes: Attributes<'_>,
    auth: Option<&LongTermAuth>,
) -> Option<Vec<u8>> {
    let provider = stun::crypto::default_provider().ok()?;
    let mut setters: Attributes<'_> = vec![
        Box::new(MessageType::new(method, class)),
        Box::new(TransactionId(transaction)),
    ];
    setters.extend(attributes);
    if let Some(auth) = auth {
        let Credentials { username, password } = auth.credentials.clone();
        setters.push(Box::new(TextAttribute::new(
            ATTR_USERNAME,
            username.clone(),
        )));
        setters.push(Box::new(TextAttribute::new(ATTR_REALM, auth.realm.clone())));
        setters.push(Box::new(TextAttribute::new(ATTR_NONCE, auth.nonce.clone())));
        let integrity = MessageIntegrity::new_long_term_integrity_with_provider(
            username,
            auth.realm.clone(),
            password,
            provider.crypto(),
        )
        .ok()?;
        setters.push(Box::new(integrity));
    }
    let mut msg = Message::new();
    msg.build(&setters).ok()?;
    Some(msg.raw)
}
