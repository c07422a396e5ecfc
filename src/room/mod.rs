//! The `room` module (under construction).
