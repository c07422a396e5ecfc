//! videoroom: a drop-in Rust backend for the Membrane videoroom web client.
