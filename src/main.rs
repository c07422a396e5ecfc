//! The `videoroom` binary: parse settings, bind, serve until Ctrl-C, drain, exit.

use clap::Parser;
use videoroom::config::Config;

#[tokio::main]
async fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let config = Config::parse();
    let app = match videoroom::app::App::new(config.clone()) {
        Ok(app) => app,
        Err(e) => {
            log::error!("cannot start: {e}");
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
    let addr = listener.local_addr().unwrap_or(config.listen_addr());
    println!("videoroom listening on {}", app.url_for(addr));
    let shutdown = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            log::error!("cannot wait for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    app.run(listener, None, shutdown).await;
}
