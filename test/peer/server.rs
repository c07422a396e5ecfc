//! The real videoroom server in-process for the end-to-end tests: the test kit's server
//! (`test/kit/server.rs`: the app's own `App` on 127.0.0.1 with free HTTP and media UDP ports,
//! so host candidates are loopback only), under the names the peer tests use.

#[path = "../kit/server.rs"]
mod kit_server;

/// The in-process server shell, for tests that include the peer and serve other routes too.
#[allow(unused_imports)] // used by some of the binaries that include the peer
pub use kit_server::{Served, serve};

pub use kit_server::Server as TestServer;
use kit_server::start_server;
pub use kit_server::test_config;
use videoroom::config::Config;
use videoroom::room::RoomsConfig;

impl TestServer {
    /// Starts a server with the kit's test settings.
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// Starts a server whose rooms admit at most `max_peers` peers.
    pub async fn start_with(max_peers: Option<usize>) -> Self {
        let config = videoroom::config::Config {
            max_peers_per_room: max_peers.unwrap_or(RoomsConfig::default().max_peers),
            ..test_config()
        };
        start_server(config).await
    }

    /// Starts a server with `config` (its addresses are ignored: loopback, free ports).
    pub async fn start_with_config(config: Config) -> Self {
        start_server(config).await
    }
}
