//! Server settings: flags and environment variables with documented defaults.
