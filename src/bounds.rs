//! How long and how much one client may hold: the idle timeout, the time a connection has to
//! sign in, and the output-buffer limits of the three client classes (Redis's `timeout` and
//! `client-output-buffer-limit`, with its format and defaults).
//!
//! A client that stops reading must not make the daemon hold unbounded memory, and a client
//! that connects and does nothing must not hold a connection slot forever. Requests are
//! bounded on the way in (`protocol::Limits`, the unauthenticated bounds); this module bounds
//! what waits on the way out and for how long a connection may sit idle.
//!
//! Every figure is an atomic, so CONFIG SET changes it for every connection at once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// The client classes of `client-output-buffer-limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputClass {
    /// Any client that is not one of the two below: its output is one batch of replies.
    Normal,
    /// A replica's stream: bytes the primary has queued for it.
    Replica,
    /// A subscribed client: messages waiting in its outbox.
    Pubsub,
}

impl OutputClass {
    const ALL: [OutputClass; 3] = [
        OutputClass::Normal,
        OutputClass::Replica,
        OutputClass::Pubsub,
    ];

    fn name(self) -> &'static str {
        match self {
            OutputClass::Normal => "normal",
            OutputClass::Replica => "replica",
            OutputClass::Pubsub => "pubsub",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    fn parse(word: &str) -> Option<OutputClass> {
        match word.to_ascii_lowercase().as_str() {
            "normal" => Some(OutputClass::Normal),
            // Redis still accepts the old name of the replica class.
            "replica" | "slave" => Some(OutputClass::Replica),
            "pubsub" => Some(OutputClass::Pubsub),
            _ => None,
        }
    }
}

/// One class's limit, in bytes and seconds; 0 turns a part off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutputLimit {
    /// Over this, the client is disconnected at once.
    pub hard: u64,
    /// Over this for `soft_secs` seconds without a break, the client is disconnected.
    pub soft: u64,
    pub soft_secs: u64,
}

/// Why a `client-output-buffer-limit` value is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoundsError {
    #[error("client-output-buffer-limit takes groups of four: <class> <hard> <soft> <seconds>")]
    Groups,
    #[error("unknown client class '{0}' (normal, replica or pubsub)")]
    Class(String),
    #[error("'{0}' is not a size (bytes, or with kb, mb or gb)")]
    Size(String),
    #[error("'{0}' is not a number of seconds")]
    Seconds(String),
}

#[derive(Debug, Default)]
struct ClassCell {
    hard: AtomicU64,
    soft: AtomicU64,
    soft_secs: AtomicU64,
}

/// Disconnections by cause (INFO stats).
#[derive(Debug, Default)]
pub struct Disconnections {
    /// Idle longer than `timeout`.
    pub idle: AtomicU64,
    /// Not signed in within `auth-timeout`.
    pub auth_timeout: AtomicU64,
    /// Over an output-buffer limit (Redis's `client_output_buffer_limit_disconnections`).
    pub output: AtomicU64,
}

/// The bounds every connection is held to; one per daemon, shared by the sub-states that
/// queue output (pub/sub, replication) and the connections.
#[derive(Debug)]
pub struct ClientBounds {
    /// Seconds a client may go without a complete request before it is closed; 0: never.
    /// Subscribers and replicas are exempt, as in Redis.
    pub timeout_secs: AtomicU64,
    /// Seconds a connection has to sign in when the daemon requires it; 0: no bound.
    pub auth_timeout_secs: AtomicU64,
    output: [ClassCell; 3],
    pub disconnected: Disconnections,
}

/// Redis's defaults: normal clients unbounded (their output is one batch of replies, and a
/// client that does not read stops being read), replicas 256 MB hard, 64 MB for 60 s, subscribers
/// 32 MB hard, 8 MB for 60 s.
pub const DEFAULT_OUTPUT_LIMITS: &str =
    "normal 0 0 0 replica 268435456 67108864 60 pubsub 33554432 8388608 60";

impl ClientBounds {
    /// Bounds with these timeouts and Redis's default output limits.
    pub fn new(timeout_secs: u64, auth_timeout_secs: u64) -> ClientBounds {
        let bounds = ClientBounds {
            timeout_secs: AtomicU64::new(timeout_secs),
            auth_timeout_secs: AtomicU64::new(auth_timeout_secs),
            output: Default::default(),
            disconnected: Disconnections::default(),
        };
        // A constant in the format the parser reads; it cannot fail.
        let _ = bounds.set_output_limits(DEFAULT_OUTPUT_LIMITS);
        bounds
    }

    /// One class's limit now.
    pub fn output_limit(&self, class: OutputClass) -> OutputLimit {
        let cell = &self.output[class.index()];
        OutputLimit {
            hard: cell.hard.load(Ordering::Relaxed),
            soft: cell.soft.load(Ordering::Relaxed),
            soft_secs: cell.soft_secs.load(Ordering::Relaxed),
        }
    }

    /// Set limits from Redis's text, `<class> <hard> <soft> <seconds>` repeated; the classes
    /// not named keep theirs. All groups are checked before any is set.
    pub fn set_output_limits(&self, text: &str) -> Result<(), BoundsError> {
        let words: Vec<&str> = text.split_ascii_whitespace().collect();
        if words.is_empty() || !words.len().is_multiple_of(4) {
            return Err(BoundsError::Groups);
        }
        let mut parsed = Vec::new();
        for group in words.chunks(4) {
            let class =
                OutputClass::parse(group[0]).ok_or_else(|| BoundsError::Class(group[0].into()))?;
            let size = |w: &str| {
                crate::size::parse_memory(w)
                    .map(|m| m.0)
                    .map_err(|_| BoundsError::Size(w.into()))
            };
            let limit = OutputLimit {
                hard: size(group[1])?,
                soft: size(group[2])?,
                soft_secs: group[3]
                    .parse()
                    .map_err(|_| BoundsError::Seconds(group[3].into()))?,
            };
            parsed.push((class, limit));
        }
        for (class, limit) in parsed {
            let cell = &self.output[class.index()];
            cell.hard.store(limit.hard, Ordering::Relaxed);
            cell.soft.store(limit.soft, Ordering::Relaxed);
            cell.soft_secs.store(limit.soft_secs, Ordering::Relaxed);
        }
        Ok(())
    }

    /// The limits as CONFIG GET shows them (Redis's format, in bytes).
    pub fn describe_output_limits(&self) -> String {
        OutputClass::ALL
            .iter()
            .map(|&c| {
                let l = self.output_limit(c);
                format!("{} {} {} {}", c.name(), l.hard, l.soft, l.soft_secs)
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Bytes one client has waiting on the way out, and since when they have been over the soft
/// limit. Shared between whoever queues (a publisher, the replication stream) and the
/// connection that sends them.
#[derive(Debug)]
pub struct Queued {
    bytes: AtomicU64,
    /// Milliseconds after `base` when the queue went over the soft limit, plus one; 0: not over.
    over_soft_since: AtomicU64,
    base: Instant,
}

impl Default for Queued {
    fn default() -> Self {
        Queued {
            bytes: AtomicU64::new(0),
            over_soft_since: AtomicU64::new(0),
            base: Instant::now(),
        }
    }
}

impl Queued {
    /// Count `n` more bytes queued; true if the client is now over `limit` (hard at once, or
    /// soft for longer than its seconds) and must be disconnected.
    pub fn add(&self, n: u64, limit: OutputLimit, now: Instant) -> bool {
        let queued = self.bytes.fetch_add(n, Ordering::Relaxed).saturating_add(n);
        if limit.hard > 0 && queued > limit.hard {
            return true;
        }
        if limit.soft == 0 || queued <= limit.soft {
            self.over_soft_since.store(0, Ordering::Relaxed);
            return false;
        }
        let now_ms = now.saturating_duration_since(self.base).as_millis() as u64 + 1;
        let since = match self.over_soft_since.compare_exchange(
            0,
            now_ms,
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => now_ms,
            Err(earlier) => earlier,
        };
        now_ms.saturating_sub(since) > limit.soft_secs.saturating_mul(1000)
    }

    /// `n` bytes went out (or were dropped).
    pub fn sent(&self, n: u64) {
        // Never below zero, even if a caller subtracts what it did not add.
        let _ = self
            .bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some(b.saturating_sub(n))
            });
    }

    /// Bytes waiting now.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn limits_read_and_print_in_redis_format() {
        let b = ClientBounds::new(0, 10);
        assert_eq!(b.describe_output_limits(), DEFAULT_OUTPUT_LIMITS);
        b.set_output_limits("pubsub 1mb 64kb 5 slave 2gb 0 0")
            .unwrap();
        assert_eq!(
            b.output_limit(OutputClass::Pubsub),
            OutputLimit {
                hard: 1 << 20,
                soft: 64 << 10,
                soft_secs: 5
            }
        );
        assert_eq!(b.output_limit(OutputClass::Replica).hard, 2 << 30);
        assert_eq!(b.output_limit(OutputClass::Normal), OutputLimit::default());
        // A bad group changes nothing, even the good groups before it.
        for bad in [
            "pubsub 1mb 0",
            "bogus 0 0 0",
            "normal 1xb 0 0",
            "normal 0 0 -1",
            "pubsub",
        ] {
            assert!(
                b.set_output_limits(&format!("normal 5 5 5 {bad}")).is_err(),
                "{bad}"
            );
        }
        assert_eq!(b.output_limit(OutputClass::Normal), OutputLimit::default());
        assert_eq!(b.set_output_limits(""), Err(BoundsError::Groups));
    }

    #[test]
    fn a_queue_is_cut_over_hard_at_once_and_over_soft_after_its_seconds() {
        let limit = OutputLimit {
            hard: 100,
            soft: 50,
            soft_secs: 2,
        };
        let q = Queued::default();
        let t0 = Instant::now();
        assert!(!q.add(40, limit, t0));
        assert!(!q.add(20, limit, t0)); // 60: over soft, the clock starts
        assert!(!q.add(1, limit, t0 + Duration::from_secs(2)));
        assert!(q.add(1, limit, t0 + Duration::from_millis(2100)));
        // Back under soft resets the clock.
        q.sent(30);
        assert!(!q.add(1, limit, t0 + Duration::from_secs(3)));
        assert!(!q.add(20, limit, t0 + Duration::from_secs(4)));
        assert!(!q.add(0, limit, t0 + Duration::from_secs(5)));
        assert!(q.add(50, limit, t0 + Duration::from_secs(5)));
        q.sent(u64::MAX);
        assert_eq!(q.bytes(), 0);
    }
}
