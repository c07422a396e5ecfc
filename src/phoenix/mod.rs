//! The `phoenix` module (under construction).
