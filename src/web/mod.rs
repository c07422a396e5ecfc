//! The web app: lobby and room pages, static files, healthcheck and HTTPS serving.
pub mod pages;
