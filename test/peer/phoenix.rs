//! The headless peer's Phoenix socket: the test kit's phoenix.js-like [`PhoenixSocket`]
//! (`test/kit/phoenix.rs`), under the names the peer uses.

#[path = "../kit/phoenix.rs"]
mod kit_phoenix;

pub use kit_phoenix::{Incoming, PhoenixSocket, connect_socket as connect};
