//! Taking turns: how a connection that always has input lets the worker's other connections
//! run. RESP and memcached connections both count their requests in a [`FairShare`].

/// Requests a connection runs before it lets the worker serve its other connections.
///
/// Why: a client that pipelines without pause (`redis-cli --pipe`, a flood of distinct keys)
/// always has input ready, so its reads never wait, and its task keeps the worker until
/// tokio's cooperative budget runs out or its replies fill the socket. The other connections'
/// sockets wait meanwhile. During a flood of 10M new keys at the memory bound
/// (`benches/flood.sh`), a PING from another connection waited up to 78 ms while new keys were
/// refused, and up to 0.64 s while they evicted others (docs/PERFORMANCE.md, "Flood"). Redis
/// serves one read's worth of a client per turn; 512 requests are about one 16 KiB read of
/// small commands.
const FAIR_SHARE: usize = 512;

/// A connection's requests since it last let the worker's other connections in (RESP and
/// memcached connections alike; see [`FAIR_SHARE`]).
#[derive(Default)]
pub struct FairShare(usize);

impl FairShare {
    /// Count one request run.
    pub fn ran(&mut self) {
        self.0 += 1;
    }

    /// Yield to the worker's other tasks if this connection has had its share; call it between
    /// reads, never while a request is half done.
    pub async fn take_turns(&mut self) {
        if self.0 >= FAIR_SHARE {
            self.0 = 0;
            // Tokio runs a task that yields only after its next poll of the sockets'
            // readiness (tokio-rs/tokio#5223; observed, not promised by the docs), so the
            // connections that became readable meanwhile run before this one goes on.
            // `a_client_that_never_stops_pipelining_does_not_hold_the_worker` checks it.
            tokio::task::yield_now().await;
        }
    }
}
