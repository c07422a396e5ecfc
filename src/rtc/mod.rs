//! The `rtc` module (under construction).
