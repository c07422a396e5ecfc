//! The `web` module (under construction).
