//! Replication ids: 40 hex characters naming one history of the stream.
//!
//! A primary takes a new id at start and at promotion. A replica adopts its primary's id, so
//! after a failover the promoted replica still knows the old history as `master_replid2` up to
//! `second_repl_offset`, and the other replicas of the old primary can continue from it.

use std::fmt;
use std::hash::{BuildHasher, Hasher};

/// A 40-character lowercase hex replication id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReplId(String);

impl ReplId {
    /// A fresh random id (std's randomly seeded hasher, the time and the pid: ids must differ
    /// between histories, they are not secrets).
    pub fn random() -> ReplId {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let state = std::collections::hash_map::RandomState::new();
        let mut out = String::with_capacity(48);
        for i in 0..3u64 {
            let mut h = state.build_hasher();
            h.write_u128(nanos);
            h.write_u32(std::process::id());
            h.write_u64(i);
            out.push_str(&format!("{:016x}", h.finish()));
        }
        out.truncate(40);
        ReplId(out)
    }

    /// The all-zero id Redis shows as `master_replid2` when there is no previous history.
    pub fn zero() -> ReplId {
        ReplId("0".repeat(40))
    }

    /// Parse an id a peer sent: exactly 40 hex characters (lowercased).
    pub fn parse(text: &[u8]) -> Option<ReplId> {
        (text.len() == 40 && text.iter().all(u8::is_ascii_hexdigit))
            .then(|| ReplId(String::from_utf8_lossy(text).to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ReplId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The ids of this node's history: INFO's `master_replid`, `master_replid2` and
/// `second_repl_offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplIds {
    pub replid: ReplId,
    pub replid2: ReplId,
    /// As in Redis: the offset just after the last byte of the old history
    /// (`master_repl_offset + 1` at the shift); -1 when there is no old history.
    pub second_offset: i64,
}

impl ReplIds {
    /// A new history with no predecessor.
    pub fn fresh() -> ReplIds {
        ReplIds {
            replid: ReplId::random(),
            replid2: ReplId::zero(),
            second_offset: -1,
        }
    }

    /// Start a new history at `offset` (promotion): the current id becomes `replid2`, valid for
    /// partial resyncs up to and including byte `offset`.
    pub fn shift(&mut self, new: ReplId, offset: u64) {
        self.replid2 = std::mem::replace(&mut self.replid, new);
        self.second_offset = offset as i64 + 1;
    }

    /// Forget the previous history (a full resync from a primary replaces everything).
    pub fn clear_second(&mut self) {
        self.replid2 = ReplId::zero();
        self.second_offset = -1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_40_hex_and_differ() {
        let a = ReplId::random();
        let b = ReplId::random();
        assert_eq!(a.as_str().len(), 40);
        assert!(a.as_str().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert_eq!(ReplId::parse(a.as_str().as_bytes()), Some(a.clone()));
        assert_eq!(ReplId::parse(b"?"), None);
        assert_eq!(ReplId::parse(&[b'g'; 40]), None);
    }

    #[test]
    fn shift_keeps_the_old_history() {
        let mut ids = ReplIds::fresh();
        let old = ids.replid.clone();
        ids.shift(ReplId::random(), 1000);
        assert_eq!(ids.replid2, old);
        assert_eq!(ids.second_offset, 1001);
        assert_ne!(ids.replid, old);
    }
}
