//! The per-room signalling engine (under construction).
