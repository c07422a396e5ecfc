//! Self-tests of the headless peer, before any server exists.

#[allow(dead_code)]
mod peer;
