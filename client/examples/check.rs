//! Rate-limit checks against running daemons, printed one per line.
//!
//! ```sh
//! cargo run -p ratelimitd-client --example check                      # 127.0.0.1:6379
//! cargo run -p ratelimitd-client --example check -- 127.0.0.1:7001 127.0.0.1:7002
//! RATELIMITD_ADDR=10.0.0.5:6379 cargo run -p ratelimitd-client --example check
//! ```
//!
//! Each argument is one node (a `host:port` or `redis://` URL); without arguments the node is
//! `$RATELIMITD_ADDR`, else `127.0.0.1:6379`. The example sets the limit `ENDPOINT /example RATE
//! 3/10s` on every node, checks one client key (`example:<pid>`, fresh on each run) five times
//! — three are admitted at once, the next two are denied with the time to wait — prints each
//! decision and the client's counters, and deletes the limit again. The key's rate state stays
//! on its daemon until it has refilled (10 s), as any key's does.

use std::time::Duration;

use ratelimitd_client::{Client, ClientError, Decision, Node, Scope, Source, Window};

const ENDPOINT: &str = "/example";

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("check: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), ClientError> {
    let mut addrs: Vec<String> = std::env::args().skip(1).collect();
    if addrs.is_empty() {
        addrs.push(std::env::var("RATELIMITD_ADDR").unwrap_or_else(|_| "127.0.0.1:6379".into()));
    }
    let client = Client::new(addrs.iter().map(Node::new).collect())?;
    println!("nodes: {}", addrs.join(", "));

    let scope = Scope::Endpoint(ENDPOINT.into());
    let window = Window::new(3, Duration::from_secs(10));
    client.set_limit(&scope, &[window]).await?;
    println!("limit: ENDPOINT {ENDPOINT} RATE 3/10s on every node");

    let key = format!("example:{}", std::process::id());
    for i in 1..=5 {
        let decision = client.check(&key, ENDPOINT, 1).await?;
        println!("check {i} {key} {ENDPOINT}: {}", describe(&decision));
    }

    client.del_limit(&scope).await?;
    println!("limit deleted");
    println!("{:?}", client.stats());
    Ok(())
}

/// `allowed, 2 left (node 127.0.0.1:6379)` or `denied, retry in 3.333s (...)`.
fn describe(d: &Decision) -> String {
    let verdict = match (d.allowed, d.remaining, d.retry_after) {
        (true, Some(left), _) => format!("allowed, {left} left"),
        (true, None, _) => "allowed (no limit applies)".to_string(),
        (false, _, Some(wait)) => format!("denied, retry in {wait:?}"),
        (false, _, None) => "denied (the cost never fits)".to_string(),
    };
    let by = match &d.source {
        Source::Daemon { node, address } if node == address => format!("node {node}"),
        Source::Daemon { node, address } => format!("node {node} at {address}"),
        Source::Degraded { node } => format!("decided locally: node {node} is unreachable"),
    };
    format!("{verdict} ({by})")
}
