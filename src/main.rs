//! The `videoroom` binary: parse settings, bind, serve until Ctrl-C, drain, exit.

use clap::Parser;
use videoroom::config::Config;

#[tokio::main]
async fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let config = Config::parse();
    let listener = match tokio::net::TcpListener::bind(config.listen_addr()).await {
        Ok(l) => l,
        Err(e) => {
            log::error!("cannot listen on {}: {e}", config.listen_addr());
            std::process::exit(1);
        }
    };
    let addr = listener.local_addr().unwrap_or(config.listen_addr());
    println!("videoroom listening on http://{addr}");
    let shutdown = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            log::error!("cannot wait for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    let udp = match tokio::net::UdpSocket::bind(config.udp_addr()).await {
        Ok(u) => u,
        Err(e) => {
            log::error!("cannot bind UDP {}: {e}", config.udp_addr());
            std::process::exit(1);
        }
    };
    videoroom::app::run(config, listener, Some(udp), shutdown).await;
}
