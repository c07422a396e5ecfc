//! Wiring: builds the routes and runs the server until shutdown.
