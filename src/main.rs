//! # ratelimitd
//!
//! The daemon: flags ([`config`]), the listener and shutdown ([`server`]), one task per client
//! connection ([`connection`]), command dispatch with one file per command family ([`cmd`]),
//! and counters for INFO ([`stats`]). Protocol bytes are the `ratelimitd-protocol` crate's
//! business and rate-limit state the `ratelimitd-engine` crate's; this crate wires them to
//! sockets. docs/DESIGN.md has the whole map.

mod cmd;
mod config;
mod connection;
mod server;
mod stats;

use clap::Parser;
pub use config::Config;
use std::sync::Arc;

fn main() -> std::process::ExitCode {
    let config = Config::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all().thread_name("ratelimitd-worker");
    if let Some(threads) = config.threads {
        runtime.worker_threads(threads.max(1));
    }
    let runtime = match runtime.build() {
        Ok(rt) => rt,
        Err(e) => {
            server::log(&format!("cannot start the runtime: {e}"));
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let addr = std::net::SocketAddr::new(config.bind, config.port);
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                server::log(&format!("cannot listen on {addr}: {e}"));
                return std::process::ExitCode::FAILURE;
            }
        };
        let port = listener
            .local_addr()
            .map(|a| a.port())
            .unwrap_or(config.port);
        server::log(&format!(
            "ratelimitd {} ready to accept connections on {}:{port}",
            env!("CARGO_PKG_VERSION"),
            config.bind
        ));
        let shared = Arc::new(server::Shared::new(config, port));
        match server::run(listener, shared).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                server::log(&format!("server error: {e}"));
                std::process::ExitCode::FAILURE
            }
        }
    })
}
