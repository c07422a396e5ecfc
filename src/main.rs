//! The `videoroom` binary: parse settings, bind, serve until Ctrl-C or SIGTERM, drain, exit.

use clap::Parser;
use videoroom::app::{App, IceTcpSocket};
use videoroom::config::{Config, IceTcpPort};

#[tokio::main]
async fn main() {
    let config = Config::parse();
    videoroom::logs::init(config.log_format);
    let udp = match tokio::net::UdpSocket::bind(config.udp_addr()).await {
        Ok(u) => u,
        Err(e) => {
            log::error!("cannot bind UDP {}: {e}", config.udp_addr());
            std::process::exit(1);
        }
    };
    let listener = match tokio::net::TcpListener::bind(config.listen_addr()).await {
        Ok(l) => l,
        Err(e) => {
            log::error!("cannot listen on {}: {e}", config.listen_addr());
            std::process::exit(1);
        }
    };
    // `--port 0` picks a free port: the cluster registers the port actually bound.
    let mut config = config;
    if config.port == 0
        && let Ok(bound) = listener.local_addr()
    {
        config.port = bound.port();
    }
    let web_addr = listener.local_addr().unwrap_or(config.listen_addr());
    let ice_tcp = match config.ice_tcp(web_addr) {
        IceTcpPort::Off => IceTcpSocket::Off,
        IceTcpPort::Shared => IceTcpSocket::SharedWithWeb(web_addr),
        IceTcpPort::Own(addr) => match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => IceTcpSocket::Own(l),
            Err(e) => {
                log::error!("cannot listen on {addr} (ICE-TCP): {e}");
                std::process::exit(1);
            }
        },
    };
    let app = match App::start(config.clone(), Some(udp), ice_tcp).await {
        Ok(app) => app,
        Err(e) => {
            log::error!("cannot start: {e}");
            std::process::exit(1);
        }
    };
    let addr = listener.local_addr().unwrap_or(config.listen_addr());
    println!("videoroom listening on {}", app.url_for(addr));
    app.run(listener, shutdown_signal()).await;
    // The drain deadline is the deadline: tasks still running (sockets of clients that never
    // answered the close) do not keep the process alive.
    log::info!("stopped");
    std::process::exit(0);
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM: both drain the server (sockets closed with 1012).
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            log::error!("cannot wait for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(e) => {
                log::error!("cannot wait for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
