//! The headless browser-like peer used by the end-to-end tests: a Phoenix V2 client, the
//! tutorial's `MembraneWebRTC` client logic on webrtc-rs, synthetic Opus/VP8 media and
//! per-track recorders.

pub mod client;
pub mod media;
pub mod phoenix;
pub mod scenario;
pub mod sdp;
pub mod server;
