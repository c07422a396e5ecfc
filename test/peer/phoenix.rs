//! The headless peer's Phoenix socket: the test kit's phoenix.js-like [`PhoenixSocket`]
//! (`test/kit/phoenix.rs`), under the names the peer uses.

#[path = "../kit/phoenix.rs"]
mod kit_phoenix;

/// The literal-frame client, for tests that include the peer and speak frames too.
#[allow(unused_imports)] // used by some of the binaries that include the peer
pub use kit_phoenix::{Client, Received, Vsn, connect as connect_client};
pub use kit_phoenix::{Incoming, PhoenixSocket, connect_socket as connect};
